/* delivery: a factory callback's delivery, read, checked against its order and
 * applied, in one place for both who apply it: restock-callback at once, and the
 * worker's callback queue for one accepted while the database was down (stored
 * in the spool queue `callback`, DELIVERY_QUEUE).
 *
 * The legacy factory's callback body is its original request (lib/factory_msg);
 * only FACTORY_MSG_QUANTITY (MessageAttributeProductCnt: the quantity, a number or
 * a decimal string) and FACTORY_MSG_SKU (MessageAttributeProductId: the sku,
 * optional) matter. A stored delivery is our
 * own small JSON ({"order_id", "quantity", "sku"}), never the factory's body (it
 * carries the callback URL and its token). */
#ifndef RESTOCK_DELIVERY_H
#define RESTOCK_DELIVERY_H

#include <stddef.h>

#include "bus.h"
#include "conf.h"
#include "errbuf.h"
#include "order.h"
#include "queues.h"

/* The spool queue of callbacks accepted while the database was down (and the
 * doorbell topic of a delivery applied). */
#define DELIVERY_QUEUE QUEUES_CALLBACK

/* One delivery: the order, the quantity claimed, the product named (or ""). */
struct delivery {
    char order_id[IDENT_TEXT];
    long long quantity;
    char sku[ORDER_SKU_SIZE];
};

/* Reads a callback body (len bytes) for order_id into out. RS_ERR with the
 * client's 400 message (input quoted cut to whole characters) when it is not a
 * JSON object, the quantity is missing (a key of another case is named as such),
 * not an integer from 1 to quantity_max, or the sku is not 1 to PRODUCT_SKU_MAX
 * characters. */
int delivery_from_callback(const char *order_id, const char *body, size_t len,
                           long long quantity_max, struct delivery *out, errbuf *err);

/* The stored form of d, malloc'ed (free it), NULL when out of memory; and back.
 * delivery_parse: RS_ERR naming what is wrong. */
char *delivery_format(const struct delivery *d);
int delivery_parse(const char *text, size_t len, struct delivery *out, errbuf *err);

enum delivery_result {
    DELIVERY_APPLIED,       /* stock added, order fulfilled, doorbell rung */
    DELIVERY_REPEATED,      /* fulfilled before: nothing changed */
    DELIVERY_REFUSED,       /* more than ordered: nothing changed, operators are told
                               (a delivery_refused event, doorbell rung) */
    DELIVERY_WRONG_PRODUCT, /* the callback names another product: err says so */
};

/* What applies deliveries on one thread: its own database connection, its
 * orders (on it) and a doorbell publisher (bus_endpoint). Made and destroyed on
 * the thread that uses it (it starts and ends the client library's thread). */
typedef struct delivery_agent delivery_agent;

delivery_agent *delivery_agent_new(const conf *cf, errbuf *err);
void delivery_agent_destroy(delivery_agent **self_p);

/* The agent's orders, for order_get before a delivery, and its doorbell. */
order *delivery_agent_orders(delivery_agent *self);
bus_pub *delivery_agent_bell(delivery_agent *self);

/* Applies d to its order (view: that order, read by the caller with
 * delivery_agent_orders) through order_fulfil, after checking the product; logs
 * what happened (stock_arrived, callback_repeated, delivery_refused; `stored`
 * marks a delivery from the queue) and rings the doorbell for a new event.
 * Returns an enum delivery_result with *out filled, or RS_ERR when the database
 * failed (nothing changed: try again). */
int delivery_agent_apply(delivery_agent *self, const struct order_view *view,
                         const struct delivery *d, int stored, struct order_fulfil_outcome *out,
                         errbuf *err);

#endif
