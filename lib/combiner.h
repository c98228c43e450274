/* combiner: per-key flat combining for threads that each serve one request. The
 * first caller of a key with nothing in flight runs its work at once, alone; the
 * callers of that key who arrive meanwhile queue, and when the work in flight
 * ends the first of them runs one batch for all who queued, in arrival order
 * (restock-sales: one UPDATE for the checkouts of one product, docs/design.md
 * §4.1). Nobody waits for more than the batch in flight and their own. */
#ifndef RESTOCK_COMBINER_H
#define RESTOCK_COMBINER_H

#include <pthread.h>
#include <stddef.h>

typedef struct combiner combiner;
typedef struct combiner_item combiner_item;

/* One caller's part of a batch, usually the first member of the caller's own
 * struct (its arguments and results), on the caller's stack. The fields are the
 * combiner's; next links the batch in arrival order. */
struct combiner_item {
    combiner_item *next;
    const char *key;
    int state;
    pthread_cond_t wake;
};

/* Runs one batch of n items (batch, batch->next, …) in the thread of its leader,
 * with the leader's ctx: sets each item's results. Called without the combiner's
 * lock; the items stay valid until it returns. */
typedef void (*combiner_fn)(void *ctx, combiner_item *batch, size_t n);

/* Batch sizes counted in buckets 1, 2, 3-4, 5-8, 9-16, 17-32, 33-64, 65+. */
#define COMBINER_BUCKETS 8

struct combiner_stats {
    unsigned long long batches; /* runs of fn */
    unsigned long long items;   /* items in them */
    unsigned long long max;     /* largest batch */
    unsigned long long sizes[COMBINER_BUCKETS];
};

/* keys: how many keys may have work in flight at once (the number of threads
 * that submit); a submit beyond that runs alone. NULL when out of memory. */
combiner *combiner_new(size_t keys);
void combiner_destroy(combiner **self_p);

/* Returns once item's batch has run (by this thread or by another one). key
 * (NUL-terminated, compared byte for byte) must stay valid until then. */
void combiner_submit(combiner *self, combiner_item *item, const char *key, combiner_fn fn,
                     void *ctx);

/* Called, without the combiner's lock, in the thread of an item that queued
 * first behind a batch in flight: it will lead the next batch, and may get its
 * work ready while it waits (restock-sales: its transaction begun). */
typedef void (*combiner_ahead_fn)(void *ctx, combiner_item *item);

/* combiner_submit, with ahead (NULL: none) called as above. */
void combiner_submit_ahead(combiner *self, combiner_item *item, const char *key, combiner_fn fn,
                           combiner_ahead_fn ahead, void *ctx);

/* Items of key waiting for the batch in flight (tests and diagnostics). */
size_t combiner_waiting(combiner *self, const char *key);

void combiner_stats(combiner *self, struct combiner_stats *out);
/* "1:5 2:3 3-4:0 …": the buckets as text, into buf of size n. */
void combiner_sizes_text(const struct combiner_stats *stats, char *buf, size_t n);

#endif
