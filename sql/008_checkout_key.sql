-- 008: the answers of keyed checkouts (POST /checkout with an Idempotency-Key,
-- docs/design.md §4.1), so that a retried checkout is answered what the first
-- one was instead of buying again. lib/checkout_key.c is the only module with
-- SQL on it. (Idempotent: it may run again.)
--   idem_key: the client's key as it sent it (unquoted), compared byte for byte
--     (VARBINARY: "Abc" and "abc" are two keys).
--   fingerprint: SHA-256 of the request as parsed (sku and quantity), so that the
--     same key with another request is told apart (422) whatever its JSON spacing.
--   status, body: the stored answer (200, 409 or 404) and its JSON, byte for byte;
--     status 0 only inside the transaction that runs the checkout (others wait on
--     the row's lock and never see it).
--   created_at: the worker deletes rows older than idempotency_retention seconds.
CREATE TABLE IF NOT EXISTS checkout_key (
  idem_key    VARBINARY(255) NOT NULL,
  fingerprint BINARY(32)     NOT NULL,
  status      SMALLINT       NOT NULL DEFAULT 0,
  body        BLOB           NULL,
  created_at  DATETIME(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (idem_key),
  KEY ix_checkout_key_created (created_at)
) ENGINE=InnoDB;
