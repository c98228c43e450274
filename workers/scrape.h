/* scrape: the worker's Prometheus endpoint (metrics_listen, GET /metrics, text
 * exposition format 0.0.4) on libmicrohttpd, in a thread of its own with its own
 * database connection. Each scrape sums every program's counter files
 * (metrics.h) and adds what the worker sees itself: each queue's messages per
 * state and the age of its oldest waiting one, orders by status, overdue
 * orders, and the limits the alert rules compare against. It can never take
 * the descriptors the deliveries need: at most metrics_max_connections
 * connections at once (and a quarter of RLIMIT_NOFILE), metrics_max_per_address
 * from one address, each closed once it has taken metrics_request_timeout
 * seconds since its start or its last answer, however slowly it sends. */
#ifndef RESTOCK_SCRAPE_H
#define RESTOCK_SCRAPE_H

#include "conf.h"
#include "errbuf.h"
#include "spool.h"

typedef struct scrape scrape;

/* Listens on conf's metrics_listen (which must not be empty) and serves the
 * queues given (they stay the caller's, and must outlive the scrape). */
scrape *scrape_new(const conf *cf, spool *const *queues, int nqueues, errbuf *err);
/* Stops serving (a scrape in progress finishes) and joins the thread. */
void scrape_destroy(scrape **self_p);

/* The limits shown as restock_config_*_seconds (a reload changes them). */
void scrape_set_limits(scrape *self, long delay_warning, long callback_timeout);

#endif
