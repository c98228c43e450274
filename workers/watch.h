/* watch: the worker's watch over what operators must hear of. Every watch_interval
 * seconds a pass tells operators of the orders whose callback never came, of the
 * oldest messages waiting too long (delay warnings), prunes done/ and deletes the
 * checkouts' idempotency keys past their retention; between passes it alerts the
 * corrupt files the spools found and the disk faults of the sweep. Each pass is
 * logged (event=watch_pass, at debug level), so that a test can wait for a count of
 * passes instead of a time. Used by the main loop's thread only, except
 * watch_note_corrupt, which any thread's spool call may run. */
#ifndef RESTOCK_WATCH_H
#define RESTOCK_WATCH_H

#include <stddef.h>
#include <time.h>

#include "alert.h"
#include "checkout_key.h"
#include "conf.h"
#include "order.h"
#include "spool.h"

typedef struct watch watch;

/* A watch over queues[0..n) (at most 4), borrowing alerts: it sets the queues'
 * corrupt handler, so that the files the spools' recovery finds corrupt are told
 * too. Reads watch_interval, callback_timeout, delay_warning, done_retention and
 * idempotency_retention. NULL when out of memory. */
watch *watch_new(const conf *cf, alert *alerts, spool **queues, size_t n);
/* Resets the queues' corrupt handler: before the queues are destroyed. */
void watch_destroy(watch **self_p);

/* The database's parts, borrowed once they exist (before the first watch_turn). */
void watch_use(watch *self, order *orders, checkout_key *keys);

/* Takes the changeable settings of a reloaded configuration. */
void watch_reload(watch *self, const conf *cf);

/* One turn of the main loop at `now`: a pass when one is due, else the rest of a
 * backlog of expired keys; the corrupt files noted since the last turn alerted. */
void watch_turn(watch *self, time_t now);

/* Whether the last prune left expired keys: the main loop turns again at once. */
int watch_keys_behind(const watch *self);

/* A disk fault of the sweep's spool: called with the failing queue and error at
 * each failed sweep of a fault, and with NULLs once a sweep succeeds again. */
void watch_spool_fault(watch *self, const char *queue_name, const char *error);

/* Pure: whether a pass is due at `now`, the last one at `last` (0: none yet). */
int watch_pass_due(time_t now, time_t last, long interval);

/* Pure: whether the oldest waiting message, created at `oldest` (0: none waits),
 * is to be warned of at `now`; if so, writes the alert's cause, which names the
 * queue, the message and the delay_warning period it is in (so that it is told once
 * per period). */
int watch_delay_cause(const char *queue_name, time_t oldest, time_t now, long delay_warning,
                      char *cause, size_t size);

#endif
