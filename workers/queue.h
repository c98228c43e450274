/* queue: the delivery side of one spool queue. A pool of threads takes waiting
 * messages and hands each to the queue's driver (factory, mail); the outcome
 * decides the message's next state: done, deferred with capped exponential
 * backoff and jitter until the queue lifetime (counted from the message's
 * creation) has passed or max_attempts (when not 0) are used, or dead at once when
 * retrying cannot help. A message of outbox work is delivered only while this
 * worker holds its claim (the driver's owns hook, before every attempt). */
#ifndef RESTOCK_QUEUE_H
#define RESTOCK_QUEUE_H

#include "conf.h"
#include "errbuf.h"
#include "spool.h"

enum queue_outcome {
    QUEUE_DONE,      /* delivered (or nothing left to deliver) */
    QUEUE_RETRY,     /* failed for now: try again after a backoff */
    QUEUE_PERMANENT, /* retrying cannot help: dead at once */
    QUEUE_BLOCKED,   /* not tried: what it needs (the database) is down; try again
                        after the shortest backoff, without counting an attempt */
};

/* What a driver brings: per-thread state (its own database connection, HTTP or
 * SMTP client) and the delivery of one message. */
struct queue_driver {
    const char *name; /* "factory", "mail": the spool queue and the log's word */
    int (*thread_init)(const conf *cf, void **state, errbuf *err);
    void (*thread_fini)(void *state);
    enum queue_outcome (*deliver)(void *state, const spool_msg *msg, errbuf *err);
    /* The message went to dead/ (may be NULL): mark what it was for as failed,
     * tell operators. reason says why it died, the last error included
     * ("permanent failure: …", "queue lifetime of N s passed; last error: …"). */
    void (*dead)(void *state, const spool_msg *msg, const char *reason);
    /* Configuration key of the queue lifetime in seconds ("factory_lifetime"); NULL:
     * retried without a time limit. */
    const char *lifetime_key;
    /* Outbox claims (workers/claim.h; NULL: the queue has none). Before every
     * delivery attempt of a message carrying a claim epoch (spool_msg_claim):
     * 1 when this worker still holds its claim, 0 when it does not (err says
     * who does: the message is dropped to done/ unsent, event=lease_lost), RS_ERR
     * when that cannot be known (the database: postponed, never sent
     * unchecked). ended: its delivery ended (done/ or dead/). */
    int (*owns)(void *state, const spool_msg *msg, errbuf *err);
    void (*ended)(void *state, const spool_msg *msg);
    /* The wait the driver names for the outcome deliver just gave (NULL: none):
     * seconds before the next attempt of a QUEUE_RETRY (a peer's Retry-After)
     * or QUEUE_BLOCKED (what it needs is not the database: no database error
     * is counted), still never past the queue lifetime; 0: the queue's own
     * backoff. Asked once after each deliver, in the same thread. */
    long (*retry_in)(void *state);
};

typedef struct queue queue;

/* Starts threads delivering from sp (which stays the caller's), and returns once
 * every thread's thread_init has answered: NULL with err set when one of them
 * failed (the others are stopped), so that a worker that cannot deliver does not
 * start. */
queue *queue_new(const conf *cf, spool *sp, const struct queue_driver *driver, int threads,
                 errbuf *err);

/* Stops taking messages, lets the deliveries in flight finish, joins the threads. */
void queue_destroy(queue **self_p);

/* New messages are waiting: wakes idle threads at once. */
void queue_kick(queue *self);

/* Seconds before attempt number `attempts` + 1, given the backoff bounds: doubles
 * from min to max, then a random part of up to half is taken off ("equal jitter"),
 * so that retries of a burst spread out instead of hitting the peer together. */
long queue_backoff(long attempts, long min, long max);

#endif
