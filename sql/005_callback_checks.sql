-- 005: deliveries checked against the order, keyed callback tokens (docs/design.md
-- §3 and §4.3).

-- A callback that claims more than was ordered changes nothing; its refusal is an
-- event like the others, so that the worker tells operators (an alert email)
-- exactly once it is on disk. (Idempotent: it may run again.)
ALTER TABLE outbox
  MODIFY kind ENUM('stock_empty', 'stock_arrived', 'delivery_refused') NOT NULL
  COMMENT 'delivery_refused: quantity is what the callback claimed';

-- One statement for both columns (MySQL 8 has no ADD COLUMN IF NOT EXISTS):
--   delivery: what a fulfilled order's delivery was against its quantity, short
--     (less was delivered, and applied), full, or over (an operator recorded more
--     on purpose: restockctl orders fulfil --over); NULL until fulfilled.
--   token_keyed: 1 when the order's callback token is keyed (the HMAC of its id
--     under callback_key), checked by the key alone, so that a token of a key
--     rotated out is refused; 0 for orders made before, which may carry a random
--     token whose hash alone is stored: for them the stored hash is checked as
--     well. Added with default 0 (the existing rows); new rows get 1 below.
ALTER TABLE replenishment_order
  ADD COLUMN delivery VARCHAR(5) AS
    (CASE WHEN delivered_quantity IS NULL THEN NULL
          WHEN delivered_quantity < quantity THEN 'short'
          WHEN delivered_quantity > quantity THEN 'over'
          ELSE 'full' END) VIRTUAL
  AFTER delivered_quantity,
  ADD COLUMN token_keyed TINYINT(1) NOT NULL DEFAULT 0
  COMMENT '1: the callback token is keyed (HMAC of the order id); 0: random, hash in token_hash'
  AFTER token_hash;
-- (Idempotent.)
ALTER TABLE replenishment_order ALTER COLUMN token_keyed SET DEFAULT 1;
