/* dlq: the spool queues as operators see them, every queue at once: opened
 * together, a message found by its id in whichever queue holds it, and a dead
 * one put back to waiting (redrive). restockctl dlq and the admin API
 * (restock-admin) both act through it. */
#ifndef RESTOCK_DLQ_H
#define RESTOCK_DLQ_H

#include "errbuf.h"
#include "queues.h"
#include "spool.h"

/* Opens every queue of queues_names under root (spool_dir), in that order.
 * RS_OK, or RS_ERR with nothing left open. */
int dlq_open(const char *root, spool *queues[QUEUES_COUNT], errbuf *err);
void dlq_close(spool *queues[QUEUES_COUNT]);

/* Finds message id in the queues: returns the queue's index with *m set (the
 * caller destroys it), or -1 with err saying why (not a message id, not found,
 * or the spool could not be read: *missing tells the first two from the last,
 * when missing is not NULL). */
int dlq_find(spool *queues[QUEUES_COUNT], const char *id, spool_msg **m, int *missing, errbuf *err);

/* Called by dlq_redrive before the message moves: order_id is the order a dead
 * factory message was for (NULL in other queues, or when it names none). It
 * reopens the failed order (and may record who redrove it); RS_ERR leaves the
 * message dead. */
typedef int dlq_before_fn(void *arg, const char *queue, const char *id, const char *order_id,
                          errbuf *err);

/* Puts dead message id of sp back to waiting, after before() (which must
 * reopen a factory message's order: the other way round, the worker could
 * deliver it while the order still says failed). Returns 1 when redriven; 0
 * when sp has no message id, or has it but not dead (err then says so: an
 * event's factory order and its email share the event's id, and another queue
 * may hold it dead); RS_ERR on failure. */
int dlq_redrive(spool *sp, const char *id, dlq_before_fn *before, void *arg, errbuf *err);

#endif
