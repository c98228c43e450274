-- 001: the catalogue of the first version: factories, advertisements, products.
-- Ids are UUIDs stored as BINARY(16) (MariaDB 10.11 has no UUID_TO_BIN: the
-- programs convert). Runs on MariaDB 10.11 and MySQL 8.

CREATE TABLE IF NOT EXISTS factory (
  factory_id    BINARY(16)   NOT NULL,
  identifier    VARCHAR(32)  NOT NULL,
  name          VARCHAR(100) NOT NULL,
  manager_email VARCHAR(255) NULL,
  api           VARCHAR(255) NULL COMMENT 'API base URL; NULL: the configured factory_api',
  PRIMARY KEY (factory_id),
  UNIQUE KEY uq_factory_identifier (identifier)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS advertisement (
  ad_id         BINARY(16)   NOT NULL,
  status        BOOLEAN      NOT NULL DEFAULT TRUE COMMENT 'TRUE: running; FALSE: paused while sold out',
  manager_email VARCHAR(255) NULL,
  PRIMARY KEY (ad_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS product (
  product_id BINARY(16)   NOT NULL,
  sku        VARCHAR(32)  NOT NULL,
  name       VARCHAR(100) NOT NULL,
  price      INT          NOT NULL,
  stock      INT          NOT NULL DEFAULT 0,
  factory_id BINARY(16)   NULL,
  ad_id      BINARY(16)   NULL,
  PRIMARY KEY (product_id),
  UNIQUE KEY uq_product_sku (sku),
  UNIQUE KEY uq_product_name (name),
  CONSTRAINT fk_product_factory FOREIGN KEY (factory_id) REFERENCES factory (factory_id),
  CONSTRAINT fk_product_ad      FOREIGN KEY (ad_id)      REFERENCES advertisement (ad_id),
  CONSTRAINT ck_product_stock   CHECK (stock >= 0),
  CONSTRAINT ck_product_price   CHECK (price >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
