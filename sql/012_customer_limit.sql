-- 012: customer limits (docs/design.md §4.1 "Limits"): an authenticated API
-- client's Restock-Customer may buy at most product.max_per_customer units of a
-- product (0: no limit) over limit_window seconds. lib/sale.c is the only module
-- with SQL on customer_purchase, and the only one that reads max_per_customer
-- (restockctl's product set writes it, lib/reorder.c).
--   customer_purchase: one row per limited sale (a checkout, or a cart's line)
--     to a customer: the client that named it, its Restock-Customer (VARBINARY:
--     compared byte for byte), the product, the units, when (UTC). The sale
--     that writes it holds the product's row lock (FOR UPDATE) from the sum of
--     the customer's window to its commit, so that two sales of one product to
--     one customer never both see room for one more; each such sale deletes the
--     customer's rows of the product older than the window, so that the table
--     holds the windows of active customers only.
ALTER TABLE product ADD COLUMN IF NOT EXISTS max_per_customer INT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS customer_purchase (
  purchase_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  client_id   INT UNSIGNED    NOT NULL,
  customer    VARBINARY(64)   NOT NULL,
  product_id  BINARY(16)      NOT NULL,
  units       INT             NOT NULL,
  created_at  DATETIME(6)     NOT NULL,
  PRIMARY KEY (purchase_id),
  KEY ix_customer_purchase (product_id, client_id, customer, created_at)
) ENGINE=InnoDB;
