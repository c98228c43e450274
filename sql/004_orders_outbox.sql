-- 004: replenishment orders and the outbox of events (docs/design.md §1 and §3).

-- One order per stock-out. open_product_id is the product's id while the order is
-- not fulfilled and NULL after, so that its unique key allows one unfinished order
-- per product: the 10,000 checkouts after a sell-out find it taken and open none.
-- A failed order (its message is dead) keeps the product's slot: the operator
-- redrives it, rather than the next checkout silently ordering again.
CREATE TABLE IF NOT EXISTS replenishment_order (
  order_id            BINARY(16)   NOT NULL,
  product_id          BINARY(16)   NOT NULL,
  factory_id          BINARY(16)   NOT NULL,
  quantity            INT          NOT NULL,
  status              ENUM('open', 'sent', 'fulfilled', 'failed') NOT NULL DEFAULT 'open',
  open_product_id     BINARY(16)   AS (IF(status = 'fulfilled', NULL, product_id)) STORED,
  token_hash          BINARY(32)   NULL COMMENT 'SHA-256 of the callback token; the token is never stored',
  attempts            INT          NOT NULL DEFAULT 0,
  last_error          VARCHAR(500) NULL,
  factory_ref         VARCHAR(64)  NULL COMMENT 'the factory''s own id from its 201 answer',
  delivered_quantity  INT          NULL,
  created_at          DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  sent_at             DATETIME(6)  NULL,
  fulfilled_at        DATETIME(6)  NULL,
  failed_at           DATETIME(6)  NULL,
  overdue_reported_at DATETIME(6)  NULL,
  PRIMARY KEY (order_id),
  UNIQUE KEY uq_order_open_product (open_product_id),
  KEY ix_order_product (product_id, created_at),
  KEY ix_order_status (status, sent_at),
  CONSTRAINT fk_order_product FOREIGN KEY (product_id) REFERENCES product (product_id),
  CONSTRAINT fk_order_factory FOREIGN KEY (factory_id) REFERENCES factory (factory_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Events written in the same transaction as the change they announce; the worker
-- fans each out into its spool queues and only then sets taken_at.
CREATE TABLE IF NOT EXISTS outbox (
  seq        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  event_id   BINARY(16)  NOT NULL,
  kind       ENUM('stock_empty', 'stock_arrived') NOT NULL,
  order_id   BINARY(16)  NOT NULL,
  product_id BINARY(16)  NOT NULL,
  quantity   INT         NOT NULL COMMENT 'ordered (stock_empty) or delivered (stock_arrived)',
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  taken_at   DATETIME(6) NULL,
  PRIMARY KEY (seq),
  UNIQUE KEY uq_outbox_event (event_id),
  KEY ix_outbox_pending (taken_at, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
