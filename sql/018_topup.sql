-- 018: top-up orders (issue 23; docs/design.md §3.7). (Idempotent.)
--
-- A product with a service level may have, besides the order its crossing opened,
-- one unfinished top-up: opened by the worker's sweep when the point rose above the
-- stock plus what is on order while that order is on its way, for the difference
-- to the order-up-to level. The crossing's order keeps its slot (open_product_id,
-- one per product: one order per crossing); a top-up has a slot of its own
-- (open_topup_product_id, one at a time).
ALTER TABLE replenishment_order
  ADD COLUMN IF NOT EXISTS topup BOOLEAN NOT NULL DEFAULT FALSE
    COMMENT 'opened by the sweep for a risen point, beside the crossing''s order';

ALTER TABLE replenishment_order
  MODIFY open_product_id BINARY(16) AS (IF(status = 'fulfilled' OR topup, NULL, product_id)) STORED;

ALTER TABLE replenishment_order
  ADD COLUMN IF NOT EXISTS open_topup_product_id BINARY(16)
    AS (IF(status <> 'fulfilled' AND topup, product_id, NULL)) STORED,
  ADD UNIQUE KEY IF NOT EXISTS uq_order_open_topup (open_topup_product_id);
