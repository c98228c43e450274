/* webhook: the driver of the spool queue `webhook` (docs/design.md §4.14). It
 * POSTs a message's payload to its endpoint, signed per Standard Webhooks with
 * the endpoint's secrets (opened with the worker's webhook_key), through lib/http
 * with the egress guard (webhook_allow), the endpoint read at delivery time.
 * Outcomes: 2xx delivered (the endpoint's failing streak ends); 410 disables the
 * endpoint (gone) and tells operators once; a disabled endpoint's messages wait
 * (retried every backoff_max, never sent) until it is enabled or their lifetime
 * ends; 429 and 503 with Retry-After wait that long (1 s to backoff_max × 12);
 * anything else is retried with the queue's backoff until webhook_lifetime, then
 * dead (operators told); an endpoint failing longer than webhook_disable_after
 * is disabled (failing), operators told once; an endpoint no longer in the
 * database: dead at once. Its counters by endpoint and result, and the oldest
 * waiting message per endpoint, are written into the worker's metrics. */
#ifndef RESTOCK_WEBHOOK_H
#define RESTOCK_WEBHOOK_H

#include <stdio.h>

#include "alert.h"
#include "conf.h"
#include "errbuf.h"
#include "queue.h"
#include "spool.h"
#include "webhook_endpoint.h"

/* What the driver reads: set before the queue starts, read-only after. key is
 * NULL when the worker has no webhook_key: its messages then wait (postponed by
 * backoff_max, not counted as attempts) with an error saying so. */
struct webhook_context {
    alert *alerts;
    const struct webhook_endpoint_key *key;
};

void webhook_init(const struct webhook_context *ctx);

/* The worker's key pair from its webhook_key: 1 when loaded, 0 when webhook_key
 * is not set (logged: deliveries wait), RS_ERR when it is malformed (the worker
 * does not start). */
int webhook_key_load(const conf *cf, struct webhook_endpoint_key *key, errbuf *err);

extern const struct queue_driver webhook_driver;

/* restock_webhook_deliveries_total{endpoint,result} (since the worker's start)
 * and restock_webhook_oldest_waiting_seconds{endpoint} of the messages in q (the
 * webhook spool), in Prometheus text format. */
void webhook_metrics_write(spool *q, FILE *out);

#endif
