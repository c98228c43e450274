/* delivery: a factory callback's delivery (see delivery.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "bus.h"
#include "db.h"
#include "delivery.h"
#include "factory_msg.h"
#include "json.h"
#include "log.h"
#include "utf8.h"

/* A key that is the quantity's in another case ("messageattributeproductcnt"):
 * the factory's field names are case-sensitive, and saying so beats "missing". */
static const char *
delivery_other_case(const cJSON *json)
{
    const cJSON *item;

    cJSON_ArrayForEach(item, json)
    {
        if (item->string != NULL && strcasecmp(item->string, FACTORY_MSG_QUANTITY) == 0)
            return item->string;
    }
    return NULL;
}

int
delivery_from_callback(const char *order_id, const char *body, size_t len, long long quantity_max,
                       struct delivery *out, errbuf *err)
{
    cJSON *json = NULL;
    const char *sku = NULL, *other;
    int rc = RS_ERR;

    memset(out, 0, sizeof(*out));
    snprintf(out->order_id, sizeof(out->order_id), "%s", order_id);
    if (json_parse_object(body, len, &json, err) != RS_OK)
        return RS_ERR;
    /* Case-sensitive: cJSON_HasObjectItem is not, and took the other case for
     * the key and then found no quantity under it. */
    if (cJSON_GetObjectItemCaseSensitive(json, FACTORY_MSG_QUANTITY) == NULL) {
        other = delivery_other_case(json);
        if (other != NULL)
            errbuf_set(err,
                       FACTORY_MSG_QUANTITY " is missing (\"%.*s\" is not it: the key is "
                                            "case-sensitive)",
                       (int)utf8_cut(other, strlen(other), 40), other);
        else
            errbuf_set(err, FACTORY_MSG_QUANTITY " is missing");
        goto done;
    }
    if (json_opt_int(json, FACTORY_MSG_QUANTITY, 1, quantity_max, JSON_NUMERIC_STRING,
                     &out->quantity, err) != RS_OK)
        goto done;
    if (json_opt_str(json, FACTORY_MSG_SKU, 1, PRODUCT_SKU_MAX, &sku, err) != RS_OK)
        goto done;
    if (sku != NULL)
        snprintf(out->sku, sizeof(out->sku), "%s", sku); /* PRODUCT_SKU_MAX characters fit whole */
    rc = RS_OK;
done:
    cJSON_Delete(json);
    return rc;
}

char *
delivery_format(const struct delivery *d)
{
    cJSON *m = cJSON_CreateObject();
    char *text;

    if (m == NULL)
        return NULL;
    cJSON_AddStringToObject(m, "order_id", d->order_id);
    cJSON_AddNumberToObject(m, "quantity", (double)d->quantity);
    cJSON_AddStringToObject(m, "sku", d->sku);
    text = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    return text;
}

int
delivery_parse(const char *text, size_t len, struct delivery *out, errbuf *err)
{
    cJSON *m = NULL;
    const char *order_id = NULL, *sku = NULL;
    int rc = RS_ERR;

    memset(out, 0, sizeof(*out));
    if (json_parse_object(text, len, &m, err) != RS_OK)
        return RS_ERR;
    if (json_opt_str(m, "order_id", IDENT_TEXT - 1, IDENT_TEXT - 1, &order_id, err) != RS_OK ||
        json_opt_int(m, "quantity", 1, 1000000000, 0, &out->quantity, err) != RS_OK ||
        json_opt_str(m, "sku", 0, PRODUCT_SKU_MAX, &sku, err) != RS_OK)
        goto done;
    if (order_id == NULL || out->quantity == 0 || sku == NULL) {
        errbuf_set(err, "a stored delivery wants order_id, quantity and sku");
        goto done;
    }
    snprintf(out->order_id, sizeof(out->order_id), "%s", order_id);
    snprintf(out->sku, sizeof(out->sku), "%s", sku);
    rc = RS_OK;
done:
    cJSON_Delete(m);
    return rc;
}

struct delivery_agent {
    db *conn;
    order *orders;
    bus_pub *bell;
};

void
delivery_agent_destroy(delivery_agent **self_p)
{
    delivery_agent *self = *self_p;

    if (self != NULL) {
        order_destroy(&self->orders);
        bus_pub_destroy(&self->bell);
        db_destroy(&self->conn);
        free(self);
        *self_p = NULL;
    }
    db_thread_end();
}

delivery_agent *
delivery_agent_new(const conf *cf, errbuf *err)
{
    delivery_agent *self = NULL;

    if (db_thread_init(err) != RS_OK)
        goto fail;
    self = calloc(1, sizeof(*self));
    if (self == NULL || (self->conn = db_new(cf, 0)) == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    self->bell = bus_pub_new(conf_str(cf, "bus_endpoint"), err);
    if (self->bell == NULL)
        goto fail;
    self->orders = order_new(self->conn, err);
    if (self->orders == NULL)
        goto fail;
    return self;
fail:
    delivery_agent_destroy(&self);
    return NULL;
}

order *
delivery_agent_orders(delivery_agent *self)
{
    return self->orders;
}

bus_pub *
delivery_agent_bell(delivery_agent *self)
{
    return self->bell;
}

int
delivery_agent_apply(delivery_agent *self, const struct order_view *view, const struct delivery *d,
                     int stored, struct order_fulfil_outcome *out, errbuf *err)
{
    memset(out, 0, sizeof(*out));
    /* The factory echoes the order: a callback naming another product is not one
     * of ours, whatever its token says. */
    if (d->sku[0] != '\0' && strcmp(d->sku, view->sku) != 0) {
        errbuf_set(err, FACTORY_MSG_SKU " %s is not the product %s of order %s", d->sku, view->sku,
                   d->order_id);
        return DELIVERY_WRONG_PRODUCT;
    }
    if (order_fulfil(self->orders, d->order_id, d->quantity, 0, out, err) != RS_OK)
        return RS_ERR;
    if (out->repeated) {
        log_info("event=callback_repeated order=%s stored=%d", d->order_id, stored);
        return DELIVERY_REPEATED;
    }
    if (out->refused)
        log_error("event=delivery_refused order=%s sku=%s ordered=%lld claimed=%lld "
                  "outbox_event=%s stored=%d",
                  d->order_id, view->sku, out->ordered, d->quantity, out->event, stored);
    else
        log_info("event=stock_arrived order=%s sku=%s quantity=%lld ordered=%lld stock=%lld "
                 "outbox_event=%s stored=%d",
                 d->order_id, view->sku, d->quantity, out->ordered, out->stock, out->event, stored);
    /* After the commit: the worker sweeps the new event at once. */
    if (bus_ring(self->bell, BUS_STOCK_ARRIVED, out->event) != RS_OK)
        log_warn("event=doorbell_dropped topic=%s outbox_event=%s", BUS_STOCK_ARRIVED, out->event);
    return out->refused ? DELIVERY_REFUSED : DELIVERY_APPLIED;
}
