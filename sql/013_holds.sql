-- 013: holds (docs/design.md §4.1 "Holds"): units taken off the shelf while a
-- buyer pays, for a time, then sold (confirmed), put back (released), or put
-- back by the worker when the time is up (expired). lib/hold.c is the only
-- module with SQL on hold and hold_line; product.held is changed by lib/sale.c
-- only, in the transaction that changes the hold's status, so that for every
-- product at every moment: initial stock + delivered = stock + held + sold_total.
--   product.held: units in holds whose status is held.
--   hold: one per hold. status 0 held, 1 confirmed, 2 released, 3 expired
--     (lib/hold.c names them); a hold leaves held once, by a statement that
--     changes it only WHERE status = 0, so that a confirm and an expiry that
--     race give the units back or sell them exactly once. client_id and
--     customer: who held it (customer NULL: none); expires_at, created_at and
--     ended_at (when it left held) in UTC. Ended holds are deleted by the
--     worker once their expires_at is hold_retention seconds past (found by
--     ix_hold_due: no index of its own, one less to write per hold). hold_id is
--     a time-ordered UUID (version 7): holds made by the thousand a second go in
--     at the end of the primary key, not at random pages of it.
--   hold_line: its products and units, line numbered in the request's order.
--   customer_purchase.hold_id: a limited product's units held for a customer
--     count toward the limit while held or once confirmed; a release or an
--     expiry deletes them.
ALTER TABLE product ADD COLUMN IF NOT EXISTS held INT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS hold (
  hold_id    BINARY(16)    NOT NULL,
  client_id  INT UNSIGNED  NOT NULL,
  customer   VARBINARY(64) NULL,
  status     TINYINT       NOT NULL DEFAULT 0,
  expires_at DATETIME(6)   NOT NULL,
  created_at DATETIME(6)   NOT NULL,
  ended_at   DATETIME(6)   NULL,
  PRIMARY KEY (hold_id),
  KEY ix_hold_due (status, expires_at)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS hold_line (
  hold_id    BINARY(16)       NOT NULL,
  line       TINYINT UNSIGNED NOT NULL,
  product_id BINARY(16)       NOT NULL,
  quantity   INT              NOT NULL,
  PRIMARY KEY (hold_id, line)
) ENGINE=InnoDB;

ALTER TABLE customer_purchase ADD COLUMN IF NOT EXISTS hold_id BINARY(16) NULL,
  ADD KEY IF NOT EXISTS ix_customer_purchase_hold (hold_id);
