/* product: the Sales API's product reads (see product.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "product.h"
#include "row.h"
#include "utf8.h"

#define PRODUCT_COLUMNS "product_id, sku, name, price, stock, factory_id, ad_id, held"

struct product {
    db_stmt *one; /* by sku; the statements belong to the caller's db */
    db_stmt *all; /* by sku */
};

product *
product_new(db *conn, errbuf *err)
{
    product *self = calloc(1, sizeof(*self));

    if (self != NULL) {
        self->one = db_stmt_new(conn, "SELECT " PRODUCT_COLUMNS " FROM product WHERE sku = ?",
                                DB_IDEMPOTENT);
        self->all = db_stmt_new(conn, "SELECT " PRODUCT_COLUMNS " FROM product ORDER BY sku",
                                DB_IDEMPOTENT);
    }
    if (self == NULL || self->one == NULL || self->all == NULL) {
        product_destroy(&self);
        errbuf_set(err, "out of memory");
        return NULL;
    }
    return self;
}

void
product_destroy(product **self_p)
{
    free(*self_p); /* the statements go with their db */
    *self_p = NULL;
}

/* The product JSON of the current row of a PRODUCT_COLUMNS statement, or NULL
 * when out of memory. */
static cJSON *
product_json(db_stmt *st)
{
    cJSON *obj = cJSON_CreateObject();
    const char *sku = db_stmt_col(st, 1, NULL), *name = db_stmt_col(st, 2, NULL);
    int ok = obj != NULL;

    ok = ok && row_add_ident(obj, "product_id", st, 0);
    ok = ok && cJSON_AddStringToObject(obj, "sku", sku ? sku : "") != NULL;
    ok = ok && cJSON_AddStringToObject(obj, "name", name ? name : "") != NULL;
    ok = ok && cJSON_AddNumberToObject(obj, "price", (double)db_stmt_col_int(st, 3)) != NULL;
    ok = ok && cJSON_AddNumberToObject(obj, "stock", (double)db_stmt_col_int(st, 4)) != NULL;
    ok = ok && cJSON_AddNumberToObject(obj, "held", (double)db_stmt_col_int(st, 7)) != NULL;
    ok = ok && row_add_ident(obj, "factory_id", st, 5);
    ok = ok && row_add_ident(obj, "ad_id", st, 6);
    if (!ok) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

int
product_get_json(product *self, const char *sku, cJSON **json, errbuf *err)
{
    long long rows, chars = utf8_chars(sku, strlen(sku));

    *json = NULL;
    /* No sku longer than the column can exist: no need to ask. */
    if (chars < 1 || chars > PRODUCT_SKU_MAX)
        return 0;
    rows = db_stmt_exec(self->one, err, "s", sku);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(self->one))
        return 0;
    *json = product_json(self->one);
    return 1;
}

int
product_list_json(product *self, cJSON **json, errbuf *err)
{
    cJSON *list;

    *json = NULL;
    if (db_stmt_exec(self->all, err, "") < 0)
        return RS_ERR;
    list = cJSON_CreateArray();
    while (list != NULL && db_stmt_next(self->all)) {
        cJSON *item = product_json(self->all);
        if (item == NULL || !cJSON_AddItemToArray(list, item)) {
            cJSON_Delete(item);
            cJSON_Delete(list);
            list = NULL;
        }
    }
    *json = list;
    return RS_OK;
}
