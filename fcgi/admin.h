/* restock-admin's parts: fcgi/admin.c is the frame (routing, sessions, CSRF and
 * origin checks, roles, answers), fcgi/admin_routes.c the routes. Each serving
 * thread has its own database connection and the lib objects on it; a route
 * reads or changes through the same lib functions restockctl calls (a change
 * through lib/change: its audit row in its transaction). */
#ifndef RESTOCK_ADMIN_H
#define RESTOCK_ADMIN_H

#include <cjson/cJSON.h>

#include "admin_account.h"
#include "admin_session.h"
#include "api_client.h"
#include "audit.h"
#include "conf.h"
#include "db.h"
#include "errbuf.h"
#include "hold.h"
#include "order.h"
#include "product.h"
#include "queues.h"
#include "reorder.h"
#include "responder.h"
#include "spool.h"
#include "webhook_endpoint.h"

struct admin_app {
    const conf *cf;
    char origin[512]; /* the one Origin accepted (admin_origin, or http://<admin_listen>) */
    int cookie_secure;
};

struct admin_thread {
    struct admin_app *app;
    db *conn;
    order *orders;
    reorder *policy;
    product *products;
    hold_report *holds;
    api_client *clients;
    webhook_endpoint *hooks;
    audit *trail;
    admin_account *accounts;
    admin_session *sessions;
    spool *queues[QUEUES_COUNT];
    int db_down; /* the last request found the database down: said once in the log */
    /* The request's caller, set by the frame before a route runs. */
    struct audit_who who;
    char actor[AUDIT_ACTOR_MAX + 1];
    char source[AUDIT_SOURCE_MAX + 1];
    int role;
};

/* A route: the id segment of its path ({id}, {sku}) or NULL; the body parsed
 * for routes that take one (NULL otherwise). */
typedef void (*admin_route_fn)(struct admin_thread *t, responder_request *rq, const char *id,
                               const cJSON *body);

/* The routes, in fcgi/admin_routes.c. */
void admin_routes_status(struct admin_thread *t, responder_request *rq, const char *id,
                         const cJSON *body);
void admin_routes_orders(struct admin_thread *t, responder_request *rq, const char *id,
                         const cJSON *body);
void admin_routes_order(struct admin_thread *t, responder_request *rq, const char *id,
                        const cJSON *body);
void admin_routes_order_fulfil(struct admin_thread *t, responder_request *rq, const char *id,
                               const cJSON *body);
void admin_routes_products(struct admin_thread *t, responder_request *rq, const char *id,
                           const cJSON *body);
void admin_routes_product(struct admin_thread *t, responder_request *rq, const char *id,
                          const cJSON *body);
void admin_routes_product_set(struct admin_thread *t, responder_request *rq, const char *id,
                              const cJSON *body);
void admin_routes_holds(struct admin_thread *t, responder_request *rq, const char *id,
                        const cJSON *body);
void admin_routes_dead(struct admin_thread *t, responder_request *rq, const char *id,
                       const cJSON *body);
void admin_routes_message(struct admin_thread *t, responder_request *rq, const char *id,
                          const cJSON *body);
void admin_routes_redrive(struct admin_thread *t, responder_request *rq, const char *id,
                          const cJSON *body);
void admin_routes_clients(struct admin_thread *t, responder_request *rq, const char *id,
                          const cJSON *body);
void admin_routes_client_add(struct admin_thread *t, responder_request *rq, const char *id,
                             const cJSON *body);
void admin_routes_client_revoke(struct admin_thread *t, responder_request *rq, const char *id,
                                const cJSON *body);
void admin_routes_webhooks(struct admin_thread *t, responder_request *rq, const char *id,
                           const cJSON *body);
void admin_routes_webhook_add(struct admin_thread *t, responder_request *rq, const char *id,
                              const cJSON *body);
void admin_routes_webhook_disable(struct admin_thread *t, responder_request *rq, const char *id,
                                  const cJSON *body);
void admin_routes_webhook_enable(struct admin_thread *t, responder_request *rq, const char *id,
                                 const cJSON *body);
void admin_routes_webhook_rotate(struct admin_thread *t, responder_request *rq, const char *id,
                                 const cJSON *body);
void admin_routes_webhook_ping(struct admin_thread *t, responder_request *rq, const char *id,
                               const cJSON *body);
void admin_routes_accounts(struct admin_thread *t, responder_request *rq, const char *id,
                           const cJSON *body);
void admin_routes_audit(struct admin_thread *t, responder_request *rq, const char *id,
                        const cJSON *body);

/* Answers json (and frees it); NULL was out of memory: 500. */
void admin_reply(responder_request *rq, int status, cJSON *json);

/* Answers a failure of a lib call: 503 when the database is down (what it said
 * goes to the log, once per outage), else status with err's message. */
void admin_fail(struct admin_thread *t, responder_request *rq, int status, const errbuf *err);

/* The database answered: an outage is over. */
void admin_db_answered(struct admin_thread *t);

/* Answers a read whose lib call returned rc: json with 200 after the database
 * answered (an outage is over), else the failure as admin_fail's 500 (json freed). */
void admin_reply_read(struct admin_thread *t, responder_request *rq, cJSON *json, int rc,
                      const errbuf *err);

/* A query parameter's value as a number from min to max (def when absent):
 * RS_ERR when it was answered 400. */
int admin_query_int(responder_request *rq, const char *name, long long min, long long max,
                    long long def, long long *out);

/* Microseconds since the epoch as RFC 3339 UTC into a cJSON string field;
 * null for 0. */
void admin_add_time(cJSON *obj, const char *name, long long us);
/* A text field, null for NULL. */
void admin_add_str(cJSON *obj, const char *name, const char *value);

#endif
