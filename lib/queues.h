/* queues: the names of restock's spool queues, stated once. A name is a folder of
 * the spool (spool_new), the word of the worker's logs and alerts, a claim's
 * queue column (workers/claim.c), a label value of the metrics and a queue
 * restockctl lists; all of them take it from here. */
#ifndef RESTOCK_QUEUES_H
#define RESTOCK_QUEUES_H

/* Factory orders (the outbox's stock_empty and reorder events). */
#define QUEUES_FACTORY "factory"
/* Emails: the ad manager's and the operators' alerts. */
#define QUEUES_MAIL "mail"
/* Factory callbacks restock-callback accepted while the database was down. */
#define QUEUES_CALLBACK "callback"
/* Outbound webhooks: one message per webhook event and endpoint (docs/design.md
 * §4.14). */
#define QUEUES_WEBHOOK "webhook"

/* Every queue, in this order: restockctl lists them so, and each metrics
 * family of a queue has its slots so (metrics.h). A literal list, for static
 * tables; queues_names is the same as an array. */
#define QUEUES_ALL   QUEUES_FACTORY, QUEUES_MAIL, QUEUES_CALLBACK, QUEUES_WEBHOOK
#define QUEUES_COUNT 4

extern const char *const queues_names[QUEUES_COUNT];

/* The place of queue `name` in queues_names, or -1. */
int queues_index(const char *name);

#endif
