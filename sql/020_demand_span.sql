-- 020: the demand's variance measured over a lead time's span (issue 23; docs/design.md
-- §3.7). (Idempotent.)
--
-- For a product with a service level, the demand's variance per second is measured
-- from spans of samples at least one mean lead time long, not from each sample (a
-- second or so): demand whose seconds are not independent (bursts and catch-ups)
-- has a per-second variance that is not a lead time's variance over its length.
--   span_dev: the open span's deviation from the mean so far (units, each sample's
--     units less the mean times its length; under an announced surge divided by √F)
--   span_seconds: the open span's length so far (0: none open)
ALTER TABLE product_demand
  ADD COLUMN IF NOT EXISTS span_dev DOUBLE NOT NULL DEFAULT 0
    COMMENT 'the open variance span: units less the mean over its samples',
  ADD COLUMN IF NOT EXISTS span_seconds DOUBLE NOT NULL DEFAULT 0
    COMMENT 'the open variance span: its length so far';
