/* sales.h: what the parts of restock-sales share (fcgi/sales.c: the program,
 * its routes, products and checkout; fcgi/holds.c: the hold routes): the
 * application and thread state, and the replies and request headers that every
 * sale route answers and reads alike. Not a library: lib/ never includes it. */
#ifndef RESTOCK_FCGI_SALES_H
#define RESTOCK_FCGI_SALES_H

#include "api_client.h"
#include "checkout_key.h"
#include "conf.h"
#include "db.h"
#include "product.h"
#include "responder.h"
#include "sale.h"

/* Shared by all threads, read-only once they run. */
struct sales_app {
    const conf *cf;
    const char *default_sku;
    long long hold_ttl; /* a hold's seconds when its request names none */
    sale_shop *shop;    /* what the threads' sales share: the combined checkouts */
    int require_client; /* checkout_require_client: no anonymous checkout */
};

struct sales_thread {
    const struct sales_app *app;
    db *conn;
    product *products;   /* the product reads */
    api_client *clients; /* the API clients' keys */
    sale *sale;          /* the checkout, and the holds */
    int db_down;         /* to log the database going away and coming back once */
};

/* 503 for a failed statement (the database is down or failing), logged once per
 * outage; sales_db_answered notes that it answers again. */
void sales_unavailable(struct sales_thread *th, responder_request *rq, const errbuf *err);
void sales_db_answered(struct sales_thread *th);

/* Sends lib/sale's answer: 503 when the database failed (rc), 422 on a key used
 * for another request, a replay with its header. */
void sales_reply_sale(struct sales_thread *th, responder_request *rq, int rc,
                      const struct sale_answer *answer, const errbuf *err);

/* Who asks, from the request's headers: the API client (Authorization), its
 * Idempotency-Key (*key points into key_buf; NULL: none) and its
 * Restock-Customer (NULL: none). RS_ERR when it was answered (400, 401, 503). */
int sales_parties(struct sales_thread *th, responder_request *rq, long long *client,
                  const char **key, char key_buf[CHECKOUT_KEY_MAX + 1], const char **customer);

/* The hold routes (fcgi/holds.c): POST /holds, and /holds/{id}[/confirm|/extend]. */
void holds_create(struct sales_thread *th, responder_request *rq);
void holds_one(struct sales_thread *th, responder_request *rq);

#endif
