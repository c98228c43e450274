-- 007: what a stock-out cost, measured on its order, and the sales rate the
-- worker measures (docs/design.md §3). One ALTER of replenishment_order (not
-- idempotent: alone), then idempotent statements.
--   sold_out_at: when the stock reached 0 while the order was unfinished (its
--     event paused the ad); NULL: the shelf never emptied, the ad ran on. Orders
--     made before were all opened by a sell-out: added with the time of the
--     migration as their value, then the default is NULL (below).
--   turned_away, turned_away_units: checkouts refused while sold out, and what
--     they asked for.
ALTER TABLE replenishment_order
  ADD COLUMN sold_out_at DATETIME(6) NULL DEFAULT CURRENT_TIMESTAMP(6) AFTER sent_at,
  ADD COLUMN turned_away INT NOT NULL DEFAULT 0,
  ADD COLUMN turned_away_units BIGINT NOT NULL DEFAULT 0;

-- (Idempotent.)
ALTER TABLE replenishment_order ALTER COLUMN sold_out_at SET DEFAULT NULL;

-- stock_empty stays what it was, the order opened by the sale that emptied the
-- shelf (factory message and ad pause); reorder is an order opened at a point
-- above 0 while the product is on sale (factory message only), and sold_out the
-- shelf emptying later under that order (ad pause only). (Idempotent.)
ALTER TABLE outbox
  MODIFY kind ENUM('stock_empty', 'stock_arrived', 'delivery_refused', 'reorder', 'sold_out')
  NOT NULL
  COMMENT 'delivery_refused: quantity is what the callback claimed';

-- The worker's sample of each product's demand: sold_total at sampled_at, the
-- unfinished order then and the units turned away on it, and the moving average
-- of units asked for per minute (sold, and turned away while sold out) up to
-- then (rate_window in restock.conf).
CREATE TABLE IF NOT EXISTS product_demand (
  product_id  BINARY(16)  NOT NULL,
  sold_total  BIGINT      NOT NULL,
  order_id    BINARY(16)  NULL,
  order_turned_away_units BIGINT NOT NULL DEFAULT 0,
  sampled_at  DATETIME(6) NOT NULL,
  rate        DOUBLE      NOT NULL DEFAULT 0 COMMENT 'units asked for per minute',
  PRIMARY KEY (product_id),
  CONSTRAINT fk_demand_product FOREIGN KEY (product_id) REFERENCES product (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
