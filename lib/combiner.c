/* combiner: per-key flat combining (see combiner.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"

enum { COMBINER_WAITING, COMBINER_LEADER, COMBINER_DONE };

/* A key with work in flight: its leader runs, the others queue behind it. */
struct combiner_slot {
    const char *key; /* the current leader's: valid while it runs */
    int busy;
    combiner_item *head, *tail; /* waiting, in arrival order */
    size_t waiting;
};

struct combiner {
    pthread_mutex_t lock;
    size_t nslots;
    struct combiner_slot *slots;
    struct combiner_stats stats;
};

static const char *const combiner_bucket_names[COMBINER_BUCKETS] = {
    "1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65+"};

combiner *
combiner_new(size_t keys)
{
    combiner *self = calloc(1, sizeof(*self));

    if (self == NULL)
        return NULL;
    self->nslots = keys > 0 ? keys : 1;
    self->slots = calloc(self->nslots, sizeof(*self->slots));
    if (self->slots == NULL) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

void
combiner_destroy(combiner **self_p)
{
    combiner *self = *self_p;

    if (self == NULL)
        return;
    pthread_mutex_destroy(&self->lock);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

static struct combiner_slot *
combiner_find(combiner *self, const char *key)
{
    for (size_t i = 0; i < self->nslots; i++)
        if (self->slots[i].busy && strcmp(self->slots[i].key, key) == 0)
            return &self->slots[i];
    return NULL;
}

static struct combiner_slot *
combiner_free_slot(combiner *self)
{
    for (size_t i = 0; i < self->nslots; i++)
        if (!self->slots[i].busy)
            return &self->slots[i];
    return NULL;
}

static void
combiner_count(combiner *self, size_t n)
{
    size_t bucket = 0;

    while (bucket < COMBINER_BUCKETS - 1 && n > ((size_t)1 << bucket))
        bucket++;
    self->stats.batches++;
    self->stats.items += n;
    self->stats.sizes[bucket]++;
    if (n > self->stats.max)
        self->stats.max = n;
}

void
combiner_submit(combiner *self, combiner_item *item, const char *key, combiner_fn fn, void *ctx)
{
    combiner_submit_ahead(self, item, key, fn, NULL, ctx);
}

void
combiner_submit_ahead(combiner *self, combiner_item *item, const char *key, combiner_fn fn,
                      combiner_ahead_fn ahead, void *ctx)
{
    struct combiner_slot *slot;
    combiner_item *batch = item, *it, *next;
    size_t n = 1;

    item->next = NULL;
    item->key = key;
    item->state = COMBINER_WAITING;
    pthread_mutex_lock(&self->lock);
    slot = combiner_find(self, key);
    if (slot != NULL) {
        /* Work of this key is in flight: queue for the next batch. Whoever
         * ends the batch in flight wakes us, as a member (done) or as the next
         * leader, always under the lock, so that the item (on our stack) is
         * not touched after we return. */
        pthread_cond_init(&item->wake, NULL);
        if (slot->tail != NULL)
            slot->tail->next = item;
        else
            slot->head = item;
        slot->tail = item;
        slot->waiting++;
        if (ahead != NULL && slot->head == item) {
            /* The next leader, whatever happens: it gets ready while the batch in
             * flight runs. A wake-up meanwhile is not lost: it sets our state,
             * read under the lock below. */
            pthread_mutex_unlock(&self->lock);
            ahead(ctx, item);
            pthread_mutex_lock(&self->lock);
        }
        while (item->state == COMBINER_WAITING)
            pthread_cond_wait(&item->wake, &self->lock);
        pthread_cond_destroy(&item->wake);
        if (item->state == COMBINER_DONE) {
            pthread_mutex_unlock(&self->lock);
            return;
        }
        /* The leader now: the batch is everybody who queued, us first. */
        batch = slot->head;
        n = slot->waiting;
        slot->head = slot->tail = NULL;
        slot->waiting = 0;
        slot->key = key;
    } else {
        slot = combiner_free_slot(self);
        if (slot == NULL) {
            /* More keys in flight than foreseen: run alone, unbatched. The
             * database still serialises the work of one key. */
            combiner_count(self, 1);
            pthread_mutex_unlock(&self->lock);
            fn(ctx, item, 1);
            return;
        }
        slot->busy = 1;
        slot->key = key;
    }
    combiner_count(self, n);
    pthread_mutex_unlock(&self->lock);

    fn(ctx, batch, n);

    pthread_mutex_lock(&self->lock);
    for (it = batch; it != NULL; it = next) {
        next = it->next; /* before the wake-up: the item may go once we unlock */
        if (it != item) {
            it->state = COMBINER_DONE;
            pthread_cond_signal(&it->wake);
        }
    }
    if (slot->head != NULL) {
        /* Those who came during this batch: the first of them leads the next. */
        slot->key = slot->head->key;
        slot->head->state = COMBINER_LEADER;
        pthread_cond_signal(&slot->head->wake);
    } else {
        slot->busy = 0;
        slot->key = NULL;
    }
    pthread_mutex_unlock(&self->lock);
}

size_t
combiner_waiting(combiner *self, const char *key)
{
    struct combiner_slot *slot;
    size_t n;

    pthread_mutex_lock(&self->lock);
    slot = combiner_find(self, key);
    n = slot != NULL ? slot->waiting : 0;
    pthread_mutex_unlock(&self->lock);
    return n;
}

void
combiner_stats(combiner *self, struct combiner_stats *out)
{
    pthread_mutex_lock(&self->lock);
    *out = self->stats;
    pthread_mutex_unlock(&self->lock);
}

void
combiner_sizes_text(const struct combiner_stats *stats, char *buf, size_t n)
{
    size_t used = 0;

    if (n == 0)
        return;
    buf[0] = '\0';
    for (int i = 0; i < COMBINER_BUCKETS && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s:%llu", i ? " " : "", combiner_bucket_names[i],
                         stats->sizes[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}
