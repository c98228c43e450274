/* factory: the factory driver of the queue worker. It delivers one message of the
 * `factory` queue: the replenishment order POSTed to the legacy factory API in the
 * exact JSON of docs/design.md, at most once per order as far as restock can tell (an
 * order already sent or fulfilled is not sent again), its outcome recorded in the
 * order's row. Never logs the callback token or the callback URL. */
#ifndef RESTOCK_FACTORY_H
#define RESTOCK_FACTORY_H

#include <stddef.h>

#include "conf.h"
#include "errbuf.h"
#include "http.h"
#include "order.h"

typedef struct factory factory;

/* What the worker does with the message after factory_deliver. */
enum factory_result {
    FACTORY_SENT,      /* done: the factory took the order, or it had been sent already */
    FACTORY_RETRY,     /* try again later (backoff); err says why */
    FACTORY_PERMANENT, /* trying again cannot help: move it to dead/; err says why */
    FACTORY_BLOCKED,   /* nothing was sent: the order's row could not be read or
                          claimed (database down); try again, not an attempt */
};

/* A driver for one delivery thread. It borrows that thread's orders (on its db)
 * and http client, so make one per thread and reuse it. Reads factory_api,
 * requester, public_url and attempt_timeout from cf. */
factory *factory_new(const conf *cf, order *orders, http *client, errbuf *err);
void factory_destroy(factory **self_p);

/* Delivers one message: the JSON the outbox fan-out wrote (event_id, kind, order_id,
 * product_id, sku, product_name, quantity, factory_id, factory_identifier,
 * factory_name, factory_api, token, created_at). Claims the order with the token
 * (order_claim), POSTs to {factory_api}/api/manufactures with
 * `Idempotency-Key: <order id>` and on 2xx marks the order sent. A transport error,
 * timeout, 408, 429 or 5xx counts an attempt in the row and answers FACTORY_RETRY, as
 * does a database failure; a malformed message, an unknown order, a token other than
 * the stored one, no factory URL or another 4xx answer FACTORY_PERMANENT. (A dead
 * message's order is the caller's to mark failed: order_failed.) The message and
 * the request are lib/factory_msg's. */
enum factory_result factory_deliver(factory *self, const char *msg, size_t len, errbuf *err);

#endif
