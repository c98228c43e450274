-- 005: deliveries checked against the order (docs/design.md §4.3).

-- A callback that claims more than was ordered changes nothing; its refusal is an
-- event like the others, so that the worker tells operators (an alert email)
-- exactly once it is on disk.
ALTER TABLE outbox
  MODIFY kind ENUM('stock_empty', 'stock_arrived', 'delivery_refused') NOT NULL
  COMMENT 'delivery_refused: quantity is what the callback claimed';

-- What a fulfilled order's delivery was against its quantity: short (less was
-- delivered, and applied), full, or over (an operator recorded more on purpose:
-- restockctl orders fulfil --over). NULL until fulfilled.
ALTER TABLE replenishment_order
  ADD COLUMN delivery VARCHAR(5) AS
    (CASE WHEN delivered_quantity IS NULL THEN NULL
          WHEN delivered_quantity < quantity THEN 'short'
          WHEN delivered_quantity > quantity THEN 'over'
          ELSE 'full' END) VIRTUAL
  AFTER delivered_quantity;

-- Orders made from now on carry keyed tokens (the HMAC of the order id under
-- callback_key): their callbacks are checked by the key alone, so that a token of
-- a key rotated out is refused. Orders made before may carry a random token whose
-- hash alone is stored: for them (0) the stored hash is checked as well. The
-- column is added with default 0 (the existing rows), then new rows get 1.
ALTER TABLE replenishment_order
  ADD COLUMN token_keyed TINYINT(1) NOT NULL DEFAULT 0
  COMMENT '1: the callback token is keyed (HMAC of the order id); 0: random, hash in token_hash'
  AFTER token_hash;
ALTER TABLE replenishment_order ALTER COLUMN token_keyed SET DEFAULT 1;
