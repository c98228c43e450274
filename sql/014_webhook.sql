-- 014: webhook endpoints (docs/design.md §4.11 "Webhook endpoints"): where
-- restock's events go (../shared/DESIGN.md "Events to other systems").
-- lib/webhook_endpoint.c is the only module with SQL on webhook_endpoint; rows
-- are made and changed by `restockctl webhook …`, read by the worker (later:
-- its fan-out and delivery, which also disable an endpoint).
--   endpoint_id: a time-ordered UUID (version 7), the id restockctl shows.
--   url: http or https, checked by lib/webhook_endpoint (no credentials in it).
--   events: NULL for every type, else the subscribed types, comma-separated in
--     the module's order (FIND_IN_SET finds them); `ping` is never in it.
--   secret_sealed: the signing secret ("whsec_" + base64 of 32 random bytes)
--     sealed with crypto_box_seal to the worker's public key (webhook_key.pub):
--     restockctl seals without being able to open; only the holder of the
--     credential webhook_key (restock-worker) opens it. A copy of the database
--     signs nothing.
--   previous_sealed, rotated_at: the secret before the last rotation and when
--     it was rotated; still signed with until webhook_rotation_overlap has
--     passed or the next rotation (NULL: never rotated).
--   status: 0 enabled; disabled 1 by an operator, 2 by a 410 from the endpoint,
--     3 for failing too long (lib/webhook_endpoint.h names them), with
--     disabled_reason (text, NULL when enabled) and disabled_at. Times in UTC.
CREATE TABLE IF NOT EXISTS webhook_endpoint (
  endpoint_id     BINARY(16)     NOT NULL,
  url             VARCHAR(2048)  NOT NULL,
  events          VARCHAR(512)   NULL,
  secret_sealed   VARBINARY(255) NOT NULL,
  previous_sealed VARBINARY(255) NULL,
  rotated_at      DATETIME(6)    NULL,
  status          TINYINT        NOT NULL DEFAULT 0,
  disabled_reason VARCHAR(255)   NULL,
  disabled_at     DATETIME(6)    NULL,
  created_at      DATETIME(6)    NOT NULL,
  PRIMARY KEY (endpoint_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
