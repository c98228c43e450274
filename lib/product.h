/* product: the products as the Sales API shows them (docs/design.md §4.1), the
 * reads of restock-sales: one product by sku, all of them by sku, as JSON. It
 * reads only; the stock is changed by lib/sale (and a delivery, lib/order). A
 * product object keeps its statements on the caller's db: one per connection,
 * used by its thread only. */
#ifndef RESTOCK_PRODUCT_H
#define RESTOCK_PRODUCT_H

#include <cjson/cJSON.h>

#include "db.h"
#include "errbuf.h"

#define PRODUCT_SKU_MAX  32                        /* characters of product.sku, VARCHAR(32) */
#define PRODUCT_SKU_SIZE (PRODUCT_SKU_MAX * 4 + 1) /* its bytes in utf8mb4, and the NUL */

typedef struct product product;

/* conn stays the caller's. NULL when out of memory. */
product *product_new(db *conn, errbuf *err);
void product_destroy(product **self_p);

/* The product JSON of sku ({"product_id","sku","name","price","stock","held",
 * "factory_id","ad_id"}: stock is what can be bought now, held what holds keep) into *json, the
 * caller's to free: 1, with *json NULL when out of memory; 0 when there is no such product (a sku
 * that is not 1 to PRODUCT_SKU_MAX characters of UTF-8 is not asked for: none can exist); RS_ERR
 * when the database failed. */
int product_get_json(product *self, const char *sku, cJSON **json, errbuf *err);

/* Every product, by sku, as a JSON array into *json (NULL when out of memory),
 * the caller's to free. RS_OK or RS_ERR (the database failed). */
int product_list_json(product *self, cJSON **json, errbuf *err);

#endif
