-- 002: the "Donut States" shop: factory FF-500293, its donuts, one advertisement
-- each. Fixed ids so that documentation and tests can name them. INSERT IGNORE:
-- an operator who already has these rows keeps them as they are.

INSERT IGNORE INTO factory (factory_id, identifier, name, manager_email, api) VALUES
  (UNHEX('5f1c0d2e8a3b4c6d9e0f112233445501'), 'FF-500293', '부산도너츠 공장',
   'factory-manager@example.com', NULL);

INSERT IGNORE INTO advertisement (ad_id, status, manager_email) VALUES
  (UNHEX('a0d5e7c4b2f14e8a9c3d2b1a0f9e8d01'), TRUE, 'ad-manager@example.com'),
  (UNHEX('a0d5e7c4b2f14e8a9c3d2b1a0f9e8d02'), TRUE, 'ad-manager@example.com'),
  (UNHEX('a0d5e7c4b2f14e8a9c3d2b1a0f9e8d03'), TRUE, 'ad-manager@example.com');

INSERT IGNORE INTO product (product_id, sku, name, price, stock, factory_id, ad_id) VALUES
  (UNHEX('c9a4f1e2d3b54a6f8e7d6c5b4a392801'), 'CP-502101', '부산도너츠', 19900, 3,
   UNHEX('5f1c0d2e8a3b4c6d9e0f112233445501'), UNHEX('a0d5e7c4b2f14e8a9c3d2b1a0f9e8d01')),
  (UNHEX('c9a4f1e2d3b54a6f8e7d6c5b4a392802'), 'CP-502102', '부산도너츠 초코', 21900, 3,
   UNHEX('5f1c0d2e8a3b4c6d9e0f112233445501'), UNHEX('a0d5e7c4b2f14e8a9c3d2b1a0f9e8d02')),
  (UNHEX('c9a4f1e2d3b54a6f8e7d6c5b4a392803'), 'CP-502103', '부산도너츠 말차', 21900, 3,
   UNHEX('5f1c0d2e8a3b4c6d9e0f112233445501'), UNHEX('a0d5e7c4b2f14e8a9c3d2b1a0f9e8d03'));
