-- 015: the outbox's webhook events (docs/design.md §4.5 and §4.14): kinds that
-- make webhook events only, and the columns they need. lib/outbox_event.c is the
-- only module that inserts outbox rows. (Idempotent: MODIFY states the whole
-- column, ADD COLUMN IF NOT EXISTS is MariaDB's.)
--   order_sent     the factory took the order (quantity: ordered)
--   order_failed   its message died (quantity: ordered; reason: why)
--   order_overdue  its callback did not come in time, reported once
--                  (quantity: ordered)
--   hold_expired   a hold expired, its units back on the shelf (quantity: the
--                  hold's units; hold_id; no order nor product: a hold has
--                  several lines). Written only while an enabled endpoint
--                  subscribes to hold.expired: expiries are many.
--   order_id, product_id: NULL for a hold_expired.
--   reason: why, where an event has one (order_failed), as it was then: the
--     order's last_error changes with its next attempts.
ALTER TABLE outbox
  MODIFY kind ENUM('stock_empty', 'stock_arrived', 'delivery_refused', 'reorder', 'sold_out',
                   'order_sent', 'order_failed', 'order_overdue', 'hold_expired') NOT NULL
  COMMENT 'delivery_refused: quantity is what the callback claimed',
  MODIFY order_id BINARY(16) NULL,
  MODIFY product_id BINARY(16) NULL,
  ADD COLUMN IF NOT EXISTS hold_id BINARY(16) NULL AFTER product_id,
  ADD COLUMN IF NOT EXISTS reason VARCHAR(500) NULL AFTER quantity;
