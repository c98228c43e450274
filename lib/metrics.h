/* metrics: the counters of one restock process, in a small file of fixed layout
 * that the process maps shared (one per process, in metrics_dir, named
 * <program>.<pid>), and the reading of all of them, summed, for the worker's
 * Prometheus endpoint. Counting is one relaxed atomic add on mapped memory: no
 * lock, no system call, nothing a request waits for. */
#ifndef RESTOCK_METRICS_H
#define RESTOCK_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "errbuf.h"

/* Raised whenever the slots below change, so that a reader never sums files of
 * another layout (a worker of the new version beside responders of the old one
 * skips theirs until they restart). */
#define METRICS_VERSION 4

/* Every counter slot. A family (restock_checkouts_total) owns a run of slots,
 * one per label value; the table in metrics.c names them in this order. */
enum metrics_id {
    METRICS_CHECKOUT_SOLD,
    METRICS_CHECKOUT_REFUSED,
    METRICS_CHECKOUT_BAD_REQUEST,
    METRICS_CHECKOUT_NOT_FOUND,
    METRICS_CHECKOUT_UNAVAILABLE,
    METRICS_CHECKOUT_REPLAYED,     /* a keyed checkout answered its stored answer */
    METRICS_CHECKOUT_KEY_MISMATCH, /* 422: the key was used for another request */
    METRICS_CHECKOUT_UNAUTHORIZED, /* 401: a bad client key, or none where one is required */
    METRICS_CHECKOUT_LIMIT,        /* 409 reason limit: the customer's max_per_customer */
    METRICS_HOLD_CREATED,          /* restock_holds_total{result}: POST /holds 201 */
    METRICS_HOLD_CONFIRMED,
    METRICS_HOLD_RELEASED,
    METRICS_HOLD_EXPIRED, /* by the worker, or by a confirm that found it past its time */
    METRICS_HOLD_REFUSED, /* POST /holds 409: short, or over a customer's limit */
    METRICS_SELLOUTS,
    METRICS_DOORBELLS_DROPPED,
    METRICS_DATABASE_ERRORS,
    METRICS_CALLBACK_OK,
    METRICS_CALLBACK_REPEATED,
    METRICS_CALLBACK_FORBIDDEN,
    METRICS_CALLBACK_BAD_REQUEST,
    METRICS_CALLBACK_NOT_FOUND,
    METRICS_CALLBACK_REFUSED,
    METRICS_CALLBACK_STORED,
    METRICS_CALLBACK_UNAVAILABLE,
    METRICS_MAIL_SENT,
    METRICS_MAIL_TEMPORARY,
    METRICS_MAIL_PERMANENT,
    METRICS_QUEUE_DELIVERED_FACTORY,
    METRICS_QUEUE_DELIVERED_MAIL,
    METRICS_QUEUE_DELIVERED_CALLBACK,
    METRICS_QUEUE_DELIVERED_WEBHOOK,
    METRICS_QUEUE_DEFERRED_FACTORY,
    METRICS_QUEUE_DEFERRED_MAIL,
    METRICS_QUEUE_DEFERRED_CALLBACK,
    METRICS_QUEUE_DEFERRED_WEBHOOK,
    METRICS_QUEUE_DEAD_FACTORY,
    METRICS_QUEUE_DEAD_MAIL,
    METRICS_QUEUE_DEAD_CALLBACK,
    METRICS_QUEUE_DEAD_WEBHOOK,
    METRICS_RELOADS_OK,
    METRICS_RELOADS_FAILED,
    /* restock_factory_requests_total{code}: the codes operators tell apart, then
     * one per class, then "none" (no answer: refused, timeout, DNS, transfer). */
    METRICS_FACTORY_CODE_FIRST,
    METRICS_FACTORY_CODE_NONE = METRICS_FACTORY_CODE_FIRST + 20,
    /* restock_factory_request_duration_seconds: buckets, then sum (µs), count. */
    METRICS_FACTORY_LATENCY_FIRST,
    METRICS_FACTORY_LATENCY_SUM = METRICS_FACTORY_LATENCY_FIRST + 12,
    METRICS_FACTORY_LATENCY_COUNT,
    /* restock_hold_expiry_lag_seconds: buckets, then sum (µs), count. */
    METRICS_HOLD_LAG_FIRST,
    METRICS_HOLD_LAG_SUM = METRICS_HOLD_LAG_FIRST + 12,
    METRICS_HOLD_LAG_COUNT,
    METRICS_NSLOTS
};

typedef struct metrics metrics;

/* Makes this process's file in dir (created 0750 when missing), and makes it the
 * process's: metrics_count and friends write to it from then on. NULL with err
 * on failure (the caller may run on without metrics). */
metrics *metrics_new(const char *dir, const char *program, errbuf *err);
/* Removes the file (a clean stop), and stops counting. */
void metrics_destroy(metrics **self_p);

/* Counts one (or n) into the process's file; nothing when it has none. Safe
 * from any thread. */
void metrics_count(enum metrics_id id);
void metrics_add(enum metrics_id id, uint64_t n);
/* One factory request: its status (0: no answer) and how long it took. */
void metrics_factory_request(long status, double seconds);
/* One hold expired, lag seconds after its expires_at. */
void metrics_hold_expired(double lag);

/* The programs whose "up" the endpoint reports, in this order. */
#define METRICS_NPROGRAMS 3
extern const char *const metrics_programs[METRICS_NPROGRAMS];

/* Every live process's counters, summed; a program is up when a live process
 * of it has a file. Files of processes that are gone are removed. */
struct metrics_totals {
    uint64_t slots[METRICS_NSLOTS];
    int up[METRICS_NPROGRAMS];
    double started[METRICS_NPROGRAMS]; /* start time of its newest process, Unix s */
    int processes, skipped;            /* files summed; files of another layout */
};

int metrics_collect(const char *dir, struct metrics_totals *out, errbuf *err);

/* Writes the counters, restock_up, process start times and restock_build_info in
 * the text exposition format (0.0.4). */
void metrics_write(const struct metrics_totals *t, FILE *out);

#endif
