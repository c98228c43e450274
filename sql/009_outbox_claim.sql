-- 009: claims of outbox work by the workers, so that several workers (one per
-- host, each with its own spool) share one database (docs/design.md §4.10).
-- (Idempotent.)
--
-- One row per (event, queue) that an event fans out into: a stock_empty event is
-- claimed twice, its factory order and its ad-pause email, so that each goes to
-- whichever worker claims it and a takeover moves each alone. The sweep that
-- first takes an event inserts both rows (INSERT IGNORE: the row is the claim; a
-- queue the event does not fan into is marked done at once).
--   owner        worker_id of the worker holding it
--   epoch        the fencing epoch: 1 at the first claim, one more each time
--                another owner takes it over; its spool message carries it, and
--                every check and mark of the message is made under
--                `owner = ? AND epoch = ?`
--   lease_until  the owner renews it while it holds the message; once passed,
--                another worker's sweep may take it over
--   done_at      the delivery ended (sent, or dead): nobody takes it over; a
--                redrive of the message on its owner's spool opens it again
CREATE TABLE IF NOT EXISTS outbox_claim (
  event_id    BINARY(16)      NOT NULL,
  queue       ENUM('factory', 'mail') NOT NULL,
  owner       VARCHAR(255)    NOT NULL,
  epoch       BIGINT UNSIGNED NOT NULL,
  lease_until DATETIME(6)     NOT NULL,
  claimed_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  done_at     DATETIME(6)     NULL,
  PRIMARY KEY (event_id, queue),
  KEY ix_claim_expiry (done_at, lease_until),
  KEY ix_claim_owner (owner, done_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
