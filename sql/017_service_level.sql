-- 017: reorder points from a cycle service level the operator states (issue 23;
-- docs/design.md §3.7). (Idempotent.)
--
-- product.service_level  the target: the probability of an order cycle without a
--                        stock-out (0.5 < x < 0.9999); NULL: none, the product keeps
--                        the fixed-margin automatic mode or its manual point
-- product.surge_factor,  a drop the operator announces: the measured demand is
-- product.surge_until    multiplied by the factor until that time (UTC)
-- product_demand.demand_mean, demand_var, demand_seconds
--                        units asked for per second and their variance per second,
--                        exponential averages over demand_window, and how many
--                        seconds they have seen (lib/reorder)
-- product_demand.fill_asked, fill_turned, fill_seconds
--                        the fill rate's: units asked for and turned away per
--                        second over service_window
ALTER TABLE product
  ADD COLUMN IF NOT EXISTS service_level DECIMAL(6,4) NULL DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS surge_factor DECIMAL(9,3) NULL DEFAULT NULL,
  ADD COLUMN IF NOT EXISTS surge_until DATETIME(6) NULL DEFAULT NULL;

ALTER TABLE product
  DROP CONSTRAINT IF EXISTS ck_product_service_level;
ALTER TABLE product
  ADD CONSTRAINT ck_product_service_level
    CHECK (service_level IS NULL OR (service_level > 0.5 AND service_level < 0.9999));
ALTER TABLE product
  DROP CONSTRAINT IF EXISTS ck_product_surge;
ALTER TABLE product
  ADD CONSTRAINT ck_product_surge
    CHECK (surge_factor IS NULL OR (surge_factor > 0 AND surge_factor <= 1000));

ALTER TABLE product_demand
  ADD COLUMN IF NOT EXISTS demand_mean DOUBLE NOT NULL DEFAULT 0
    COMMENT 'units asked for per second, averaged over demand_window',
  ADD COLUMN IF NOT EXISTS demand_var DOUBLE NOT NULL DEFAULT 0
    COMMENT 'their variance per second',
  ADD COLUMN IF NOT EXISTS demand_seconds DOUBLE NOT NULL DEFAULT 0
    COMMENT 'seconds the averages have seen, up to demand_window',
  ADD COLUMN IF NOT EXISTS fill_asked DOUBLE NOT NULL DEFAULT 0
    COMMENT 'units asked for per second, averaged over service_window',
  ADD COLUMN IF NOT EXISTS fill_turned DOUBLE NOT NULL DEFAULT 0
    COMMENT 'of them, turned away from an empty shelf',
  ADD COLUMN IF NOT EXISTS fill_seconds DOUBLE NOT NULL DEFAULT 0
    COMMENT 'seconds those have seen, up to service_window';
