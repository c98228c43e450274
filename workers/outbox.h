/* outbox: the worker's side of the outbox table. A sweep claims the events not
 * yet claimed, and claims other workers let expire (claim.h: one worker at a time
 * holds the work of an (event, queue)), fans each out into its spool queues (like
 * SNS into SQS: stock_empty into `factory` and, for the ad manager, into `mail`;
 * reorder into `factory`; sold_out and stock_arrived into `mail`), and marks them
 * taken only once their messages are on disk. Taking an event twice (a crash
 * between the disk and the mark) yields one message: messages are named by the
 * event (and the claim's epoch after a takeover), and the spool keeps one message
 * per name. */
#ifndef RESTOCK_OUTBOX_H
#define RESTOCK_OUTBOX_H

#include "conf.h"
#include "db.h"
#include "errbuf.h"
#include "order.h"
#include "spool.h"

typedef struct outbox outbox;

/* conn, orders (on conn: it reads each event's order) and the spools stay the
 * caller's; webhook_queue takes the webhook events (one message per type of an
 * event and endpoint subscribed to it, docs/design.md §4.14). */
outbox *outbox_new(const conf *cf, db *conn, order *orders, spool *factory_queue, spool *mail_queue,
                   spool *webhook_queue, errbuf *err);
void outbox_destroy(outbox **self_p);

/* Takes every waiting event and expired claim, in batches. Returns the number of
 * events claimed, or -1 (what was taken before the failure stays taken; the
 * claims of the failed batch are given back). */
int outbox_sweep(outbox *self, errbuf *err);

/* After a sweep that failed: the queue ("factory", "mail", "webhook") whose spool put failed
 * (a disk fault: its events stay untaken until a later put succeeds), or NULL
 * when the failure was elsewhere (the database). */
const char *outbox_spool_fault(const outbox *self);

/* This worker's name in the claims (worker_id). */
const char *outbox_owner(const outbox *self);

#endif
