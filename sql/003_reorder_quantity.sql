-- 003: how much to reorder when a product sells out. One statement, so that a
-- crash cannot leave it half-applied (MySQL 8 has no ADD COLUMN IF NOT EXISTS).
ALTER TABLE product
  ADD COLUMN reorder_quantity INT NOT NULL DEFAULT 10,
  ADD CONSTRAINT ck_product_reorder CHECK (reorder_quantity BETWEEN 1 AND 1000000);
