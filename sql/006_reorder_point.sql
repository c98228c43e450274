-- 006: reorder points (docs/design.md §1 and §3). One statement, so that a crash
-- cannot leave it half-applied (MySQL 8 has no ADD COLUMN IF NOT EXISTS).
--   reorder_point: the sale that takes the stock to or below it opens the order;
--     0 (the default) is the sale of the last unit; -1 orders only when a checkout
--     is turned away with the shelf empty (the first version's policy).
--   reorder_level: the order brings stock plus what is on order up to it; 0 (the
--     default) orders reorder_quantity (10), as the first version did.
--   reorder_auto: the worker moves reorder_point (and reorder_level with it) from
--     the measured sales rate and lead time, within reorder_point_min..max.
--   sold_total: units ever sold, counted by the checkout's own UPDATE, so that the
--     worker measures the sales rate without a second statement per sale.
ALTER TABLE product
  ADD COLUMN reorder_point INT NOT NULL DEFAULT 0,
  ADD COLUMN reorder_level INT NOT NULL DEFAULT 0,
  ADD COLUMN reorder_auto BOOLEAN NOT NULL DEFAULT FALSE,
  ADD COLUMN reorder_point_min INT NOT NULL DEFAULT 0,
  ADD COLUMN reorder_point_max INT NOT NULL DEFAULT 1000,
  ADD COLUMN sold_total BIGINT NOT NULL DEFAULT 0,
  ADD CONSTRAINT ck_product_reorder_point CHECK (reorder_point BETWEEN -1 AND 1000000),
  ADD CONSTRAINT ck_product_reorder_level CHECK (reorder_level = 0 OR reorder_level > reorder_point),
  ADD CONSTRAINT ck_product_reorder_bounds
    CHECK (reorder_point_min BETWEEN 0 AND reorder_point_max AND reorder_point_max <= 1000000);
