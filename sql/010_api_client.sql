-- 010: API clients (Authorization: Bearer <key>, docs/design.md §4.1) and the
-- scope of idempotency keys. lib/api_client.c is the only module with SQL on
-- api_client; lib/checkout_key.c the only one on checkout_key.
--   api_client: one row per client key that `restockctl client add` made.
--     key_hash: SHA-256 of the key's text; the key itself (rsk_ + 32 random
--       bytes, base64url) is shown once by restockctl and stored nowhere, so a
--       copy of the database cannot authenticate.
--     name: the operator's name for the client; unique among the clients not
--       revoked (active_name), so that a revoked name can be given again.
--     last_used_at: noted at most once a minute per client (no write per request).
--     revoked_at: NULL while the key is accepted; a revoked key answers 401.
CREATE TABLE IF NOT EXISTS api_client (
  client_id    INT UNSIGNED   NOT NULL AUTO_INCREMENT,
  name         VARCHAR(64)    NOT NULL,
  key_hash     BINARY(32)     NOT NULL,
  created_at   DATETIME(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  last_used_at DATETIME(6)    NULL,
  revoked_at   DATETIME(6)    NULL,
  active_name  VARCHAR(64) GENERATED ALWAYS AS (IF(revoked_at IS NULL, name, NULL)) STORED,
  PRIMARY KEY (client_id),
  UNIQUE KEY uq_api_client_key (key_hash),
  UNIQUE KEY uq_api_client_active_name (active_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- An authenticated client's idempotency keys are its own: the client is part of
-- the key's row (0: anonymous requests, their own scope), so that two clients'
-- "order-1001" are two keys. The rows kept so far were all anonymous. (One
-- ALTER, not idempotent: alone.)
ALTER TABLE checkout_key
  ADD COLUMN client_id INT UNSIGNED NOT NULL DEFAULT 0 FIRST,
  DROP PRIMARY KEY,
  ADD PRIMARY KEY (client_id, idem_key);
