-- 011: the workers' leases in UTC, and a registration per worker_id
-- (docs/design.md §4.10). (Idempotent.)
--
-- Before 011 the lease columns of outbox_claim held the session's local time
-- (CURRENT_TIMESTAMP with @@time_zone = SYSTEM): two database nodes in other
-- time zones, or a change to or from daylight saving time, moved every lease by
-- hours. From 011 on every time of outbox_claim and worker_registration is UTC,
-- written and compared with UTC_TIMESTAMP(6) of the database (one clock for every
-- worker; the workers' own clocks are never used). The claims open now are
-- moved from local time to UTC by the offset of this moment; done ones are
-- moved too, for the record. The move runs once: only while
-- worker_registration, which this migration makes next, does not exist yet.
UPDATE outbox_claim
   SET lease_until = TIMESTAMPADD(MICROSECOND, TIMESTAMPDIFF(MICROSECOND, NOW(6), UTC_TIMESTAMP(6)),
                                  lease_until),
       claimed_at = TIMESTAMPADD(MICROSECOND, TIMESTAMPDIFF(MICROSECOND, NOW(6), UTC_TIMESTAMP(6)),
                                 claimed_at),
       done_at = TIMESTAMPADD(MICROSECOND, TIMESTAMPDIFF(MICROSECOND, NOW(6), UTC_TIMESTAMP(6)),
                              done_at)
 WHERE NOT EXISTS (SELECT 1 FROM information_schema.tables
                    WHERE table_schema = DATABASE() AND table_name = 'worker_registration');

-- One row per worker_id: the live worker that holds it (workers/lease.c). A
-- worker starts only if it can claim its row: a new one, one whose lease passed
-- (its last holder stopped or died), or its own. It renews the lease every
-- third of lease_time on a thread of its own, and gives it back at a clean stop.
-- Every delivery's claim check (outbox_claim) requires this row to be held, by
-- this process (instance), unexpired: two processes with one worker_id, which
-- the claims' owner alone could not tell apart, never both deliver. A row, not
-- GET_LOCK(): user locks are not replicated by Galera, a row is certified.
--   instance     random per process: which process holds it
--   host, pid    for the operator, and for the error of a refused start
--   boot         the holder's boot id and pid namespace: a start on the same
--                machine, same boot, same namespace, that finds the holder's pid
--                gone takes the row at once instead of waiting for its lease
--   lease_until  UTC; once passed, another process may register the id
CREATE TABLE IF NOT EXISTS worker_registration (
  worker_id   VARCHAR(255)  NOT NULL,
  instance    BINARY(16)    NOT NULL,
  host        VARCHAR(255)  NOT NULL,
  pid         INT UNSIGNED  NOT NULL,
  boot        VARCHAR(100)  NOT NULL DEFAULT '',
  started_at  DATETIME(6)   NOT NULL,
  lease_until DATETIME(6)   NOT NULL,
  PRIMARY KEY (worker_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
