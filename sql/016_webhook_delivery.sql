-- 016: what the worker's webhook delivery keeps per endpoint (docs/design.md
-- §4.14 "Webhook events and their delivery").
--   failing_since: when the endpoint's current failing streak began (its first
--     failed delivery since the last one that succeeded), NULL while it is not
--     failing. Set by the delivery driver on a failure, cleared on a 2xx and on
--     `restockctl webhook enable`; a streak older than webhook_disable_after
--     disables the endpoint (status 3, failing). UTC. One statement, one
--     column: MySQL 8 has no ADD COLUMN IF NOT EXISTS, and its DDL is atomic.
ALTER TABLE webhook_endpoint ADD COLUMN failing_since DATETIME(6) NULL;
