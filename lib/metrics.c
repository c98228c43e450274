/* metrics: shared counter files and their exposition (see metrics.h). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "queues.h"

#define METRICS_MAGIC       "RSMETRC"
#define METRICS_PROGRAM_MAX 32

/* The file: written by its process, read by the worker. The magic is stored last
 * (release), so that a reader that sees it sees the rest of the header. */
struct metrics_file {
    char magic[8];
    uint32_t version;
    uint32_t nslots;
    int64_t pid;
    int64_t started; /* Unix seconds */
    char program[METRICS_PROGRAM_MAX];
    _Atomic uint64_t slots[METRICS_NSLOTS];
};

struct metrics {
    char *path;
    struct metrics_file *file;
};

const char *const metrics_programs[METRICS_NPROGRAMS] = {"restock-sales", "restock-callback",
                                                         "restock-worker"};

/* The process's file; NULL: counting does nothing. */
static struct metrics_file *_Atomic metrics_current;

static const long metrics_codes[] = {200, 201, 202, 400, 401, 403, 404, 408,
                                     409, 422, 429, 500, 502, 503, 504};
static const char *const metrics_classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
static const double metrics_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* The labelled families: name, help, label, and the label value of each slot. */
static const struct metrics_family {
    const char *name, *help, *label;
    enum metrics_id first;
    const char *const values[10]; /* NULL-terminated; none: an unlabelled counter */
} metrics_families[] = {
    {"restock_checkouts_total",
     "Checkouts by result (sold 200, refused 409, bad_request 400, not_found 404, unavailable "
     "503, replayed: a keyed retry answered what its first request was, key_mismatch 422, "
     "unauthorized 401, limit: 409 over the customer's max_per_customer).",
     "result",
     METRICS_CHECKOUT_SOLD,
     {"sold", "refused", "bad_request", "not_found", "unavailable", "replayed", "key_mismatch",
      "unauthorized", "limit", NULL}},
    {"restock_holds_total",
     "Holds by result (created 201, confirmed, released, expired: by the worker or by a "
     "confirm past expires_at, refused: POST /holds answered 409).",
     "result",
     METRICS_HOLD_CREATED,
     {"created", "confirmed", "released", "expired", "refused", NULL}},
    {"restock_sellouts_total",
     "Checkouts that found the shelf short and opened a replenishment order.",
     NULL,
     METRICS_SELLOUTS,
     {NULL}},
    {"restock_doorbells_dropped_total",
     "Doorbells (ZeroMQ) that could not be sent; the outbox sweep still finds their events.",
     NULL,
     METRICS_DOORBELLS_DROPPED,
     {NULL}},
    {"restock_database_errors_total",
     "Requests answered 503 or deliveries postponed because the database failed.",
     NULL,
     METRICS_DATABASE_ERRORS,
     {NULL}},
    {"restock_callbacks_total",
     "Factory callbacks by result (ok 200, repeated 200, forbidden 403, bad_request 400, "
     "not_found 404, refused 422, stored 202, unavailable 503).",
     "result",
     METRICS_CALLBACK_OK,
     {"ok", "repeated", "forbidden", "bad_request", "not_found", "refused", "stored", "unavailable",
      NULL}},
    {"restock_mail_total",
     "SMTP sessions by result (sent, temporary: retried, permanent: dead).",
     "result",
     METRICS_MAIL_SENT,
     {"sent", "temporary", "permanent", NULL}},
    {"restock_queue_delivered_total",
     "Spool messages delivered (moved to done/).",
     "queue",
     METRICS_QUEUE_DELIVERED_FACTORY,
     {QUEUES_ALL, NULL}},
    {"restock_queue_deferred_total",
     "Spool messages deferred (moved to deferred/: a retry or a postponement).",
     "queue",
     METRICS_QUEUE_DEFERRED_FACTORY,
     {QUEUES_ALL, NULL}},
    {"restock_queue_dead_total",
     "Spool messages given up (moved to dead/).",
     "queue",
     METRICS_QUEUE_DEAD_FACTORY,
     {QUEUES_ALL, NULL}},
    {"restock_config_reloads_total",
     "Configuration reloads (SIGHUP) by result; a failed one keeps the old settings.",
     "result",
     METRICS_RELOADS_OK,
     {"ok", "failed", NULL}},
};

_Static_assert(sizeof(metrics_codes) / sizeof(metrics_codes[0]) +
                       sizeof(metrics_classes) / sizeof(metrics_classes[0]) ==
                   METRICS_FACTORY_CODE_NONE - METRICS_FACTORY_CODE_FIRST,
               "factory code slots");
_Static_assert(sizeof(metrics_buckets) / sizeof(metrics_buckets[0]) + 1 ==
                   METRICS_FACTORY_LATENCY_SUM - METRICS_FACTORY_LATENCY_FIRST,
               "latency bucket slots");
_Static_assert(sizeof(metrics_buckets) / sizeof(metrics_buckets[0]) + 1 ==
                   METRICS_HOLD_LAG_SUM - METRICS_HOLD_LAG_FIRST,
               "hold lag bucket slots");
_Static_assert(METRICS_RELOADS_FAILED + 1 == METRICS_FACTORY_CODE_FIRST, "slot runs");
_Static_assert(METRICS_QUEUE_DEFERRED_FACTORY - METRICS_QUEUE_DELIVERED_FACTORY == QUEUES_COUNT &&
                   METRICS_QUEUE_DEAD_FACTORY - METRICS_QUEUE_DEFERRED_FACTORY == QUEUES_COUNT &&
                   METRICS_RELOADS_OK - METRICS_QUEUE_DEAD_FACTORY == QUEUES_COUNT,
               "a slot per queue (queues.h)");

metrics *
metrics_new(const char *dir, const char *program, errbuf *err)
{
    metrics *self = calloc(1, sizeof(*self));
    struct metrics_file *f;
    void *map;
    int fd = -1;

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        errbuf_set(err, "cannot create the metrics folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (asprintf(&self->path, "%s/%s.%ld", dir, program, (long)getpid()) < 0) {
        self->path = NULL;
        errbuf_set(err, "out of memory");
        goto fail;
    }
    /* O_TRUNC: a file of a process that had this pid before is this one's now. */
    fd = open(self->path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        errbuf_set(err, "cannot create %s: %s", self->path, strerror(errno));
        goto fail;
    }
    if (ftruncate(fd, sizeof(struct metrics_file)) != 0) {
        errbuf_set(err, "cannot size %s: %s", self->path, strerror(errno));
        goto fail_unlink;
    }
    map = mmap(NULL, sizeof(struct metrics_file), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        errbuf_set(err, "cannot map %s: %s", self->path, strerror(errno));
        goto fail_unlink;
    }
    close(fd);
    f = map;
    f->version = METRICS_VERSION;
    f->nslots = METRICS_NSLOTS;
    f->pid = getpid();
    f->started = time(NULL);
    snprintf(f->program, sizeof(f->program), "%s", program);
    atomic_thread_fence(memory_order_release);
    memcpy(f->magic, METRICS_MAGIC, sizeof(f->magic));
    self->file = f;
    atomic_store(&metrics_current, f);
    return self;

fail_unlink:
    unlink(self->path);
fail:
    if (fd >= 0)
        close(fd);
    free(self->path);
    free(self);
    return NULL;
}

void
metrics_destroy(metrics **self_p)
{
    metrics *self = *self_p;

    if (self == NULL)
        return;
    if (self->file != NULL) {
        struct metrics_file *mine = self->file;
        atomic_compare_exchange_strong(&metrics_current, &mine, NULL);
        unlink(self->path);
        munmap(self->file, sizeof(struct metrics_file));
    }
    free(self->path);
    free(self);
    *self_p = NULL;
}

void
metrics_add(enum metrics_id id, uint64_t n)
{
    struct metrics_file *f = atomic_load_explicit(&metrics_current, memory_order_acquire);

    if (f != NULL && (unsigned)id < METRICS_NSLOTS)
        atomic_fetch_add_explicit(&f->slots[id], n, memory_order_relaxed);
}

void
metrics_count(enum metrics_id id)
{
    metrics_add(id, 1);
}

/* One observation of the histogram whose slots start at first: its bucket (the
 * cumulative counts are made when written: one slot per bucket here), then its
 * sum in microseconds and its count, in the slots after the buckets. */
static void
metrics_observe(enum metrics_id first, double seconds)
{
    size_t i, nbuckets = sizeof(metrics_buckets) / sizeof(metrics_buckets[0]);

    for (i = 0; i < nbuckets; i++)
        if (seconds <= metrics_buckets[i])
            break;
    metrics_count((enum metrics_id)(first + (int)i));
    metrics_add((enum metrics_id)(first + (int)nbuckets + 1),
                seconds > 0 ? (uint64_t)(seconds * 1e6) : 0);
    metrics_count((enum metrics_id)(first + (int)nbuckets + 2));
}

void
metrics_factory_request(long status, double seconds)
{
    size_t ncodes = sizeof(metrics_codes) / sizeof(metrics_codes[0]), i;
    int slot = METRICS_FACTORY_CODE_NONE;

    if (status > 0) {
        for (i = 0; i < ncodes && metrics_codes[i] != status; i++)
            ;
        if (i < ncodes)
            slot = METRICS_FACTORY_CODE_FIRST + (int)i;
        else if (status >= 100 && status <= 599)
            slot = METRICS_FACTORY_CODE_FIRST + (int)ncodes + (int)(status / 100 - 1);
    }
    metrics_count((enum metrics_id)slot);
    metrics_observe(METRICS_FACTORY_LATENCY_FIRST, seconds);
}

void
metrics_hold_expired(double lag)
{
    metrics_count(METRICS_HOLD_EXPIRED);
    metrics_observe(METRICS_HOLD_LAG_FIRST, lag);
}

/* -- reading -------------------------------------------------------------------- */

static int
metrics_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static int
metrics_program_index(const char *program)
{
    for (int i = 0; i < METRICS_NPROGRAMS; i++)
        if (strcmp(program, metrics_programs[i]) == 0)
            return i;
    return -1;
}

/* Adds one file to the totals: 1 summed, 0 skipped (another layout, not ready,
 * or its process is gone: then removed). */
static int
metrics_read_one(int dfd, const char *name, struct metrics_totals *t)
{
    struct metrics_file *f;
    struct stat st;
    void *map;
    int fd, summed = 0, p;

    fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size != (off_t)sizeof(struct metrics_file)) {
        close(fd);
        t->skipped++;
        return 0;
    }
    map = mmap(NULL, sizeof(struct metrics_file), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return 0;
    f = map;
    if (memcmp(f->magic, METRICS_MAGIC, sizeof(f->magic)) != 0)
        goto done; /* being made */
    atomic_thread_fence(memory_order_acquire);
    if (f->version != METRICS_VERSION || f->nslots != METRICS_NSLOTS) {
        t->skipped++;
        goto done;
    }
    if (!metrics_alive((pid_t)f->pid)) {
        unlinkat(dfd, name, 0); /* a process that died without cleaning up */
        goto done;
    }
    for (int i = 0; i < METRICS_NSLOTS; i++)
        t->slots[i] += atomic_load_explicit(&f->slots[i], memory_order_relaxed);
    p = metrics_program_index(f->program);
    if (p >= 0) {
        t->up[p] = 1;
        if ((double)f->started > t->started[p])
            t->started[p] = (double)f->started;
    }
    t->processes++;
    summed = 1;
done:
    munmap(map, sizeof(struct metrics_file));
    return summed;
}

int
metrics_collect(const char *dir, struct metrics_totals *out, errbuf *err)
{
    struct dirent *de;
    DIR *d;

    memset(out, 0, sizeof(*out));
    d = opendir(dir);
    if (d == NULL)
        return errbuf_set(err, "cannot open the metrics folder %s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            metrics_read_one(dirfd(d), de->d_name, out);
    closedir(d);
    return RS_OK;
}

/* -- exposition ------------------------------------------------------------------ */

static void
metrics_write_family(const struct metrics_family *fam, const uint64_t *slots, FILE *out)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s counter\n", fam->name, fam->help, fam->name);
    if (fam->label == NULL) {
        fprintf(out, "%s %llu\n", fam->name, (unsigned long long)slots[fam->first]);
        return;
    }
    for (int i = 0; fam->values[i] != NULL; i++)
        fprintf(out, "%s{%s=\"%s\"} %llu\n", fam->name, fam->label, fam->values[i],
                (unsigned long long)slots[fam->first + i]);
}

/* A histogram whose slots start at first (metrics_observe's layout). */
static void
metrics_write_histogram(const char *name, const char *help, enum metrics_id first,
                        const uint64_t *slots, FILE *out)
{
    size_t nbuckets = sizeof(metrics_buckets) / sizeof(metrics_buckets[0]);
    uint64_t cumulative = 0;

    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (size_t i = 0; i <= nbuckets; i++) {
        cumulative += slots[first + i];
        if (i < nbuckets)
            fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, metrics_buckets[i],
                    (unsigned long long)cumulative);
        else
            fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    }
    fprintf(out, "%s_sum %.6f\n", name, (double)slots[first + nbuckets + 1] / 1e6);
    fprintf(out, "%s_count %llu\n", name, (unsigned long long)slots[first + nbuckets + 2]);
}

void
metrics_write(const struct metrics_totals *t, FILE *out)
{
    size_t ncodes = sizeof(metrics_codes) / sizeof(metrics_codes[0]);

    for (size_t i = 0; i < sizeof(metrics_families) / sizeof(metrics_families[0]); i++)
        metrics_write_family(&metrics_families[i], t->slots, out);

    fprintf(out, "# HELP restock_factory_requests_total Requests to the factory API by HTTP "
                 "status code (none: no answer).\n"
                 "# TYPE restock_factory_requests_total counter\n");
    for (size_t i = 0; i < ncodes; i++)
        fprintf(out, "restock_factory_requests_total{code=\"%ld\"} %llu\n", metrics_codes[i],
                (unsigned long long)t->slots[METRICS_FACTORY_CODE_FIRST + i]);
    for (size_t i = 0; i < 5; i++)
        fprintf(out, "restock_factory_requests_total{code=\"%s\"} %llu\n", metrics_classes[i],
                (unsigned long long)t->slots[METRICS_FACTORY_CODE_FIRST + ncodes + i]);
    fprintf(out, "restock_factory_requests_total{code=\"none\"} %llu\n",
            (unsigned long long)t->slots[METRICS_FACTORY_CODE_NONE]);

    metrics_write_histogram("restock_factory_request_duration_seconds",
                            "Time of one factory request, answered or not.",
                            METRICS_FACTORY_LATENCY_FIRST, t->slots, out);
    metrics_write_histogram("restock_hold_expiry_lag_seconds",
                            "Time from a hold's expires_at to the expiry that put its units "
                            "back on the shelf.",
                            METRICS_HOLD_LAG_FIRST, t->slots, out);

    fprintf(out, "# HELP restock_up 1 when a live process of the program has its counters in "
                 "metrics_dir.\n# TYPE restock_up gauge\n");
    for (int i = 0; i < METRICS_NPROGRAMS; i++)
        fprintf(out, "restock_up{program=\"%s\"} %d\n", metrics_programs[i], t->up[i]);
    fprintf(out, "# HELP restock_process_start_time_seconds Start time of the program's newest "
                 "process, Unix seconds.\n# TYPE restock_process_start_time_seconds gauge\n");
    for (int i = 0; i < METRICS_NPROGRAMS; i++)
        if (t->up[i])
            fprintf(out, "restock_process_start_time_seconds{program=\"%s\"} %.0f\n",
                    metrics_programs[i], t->started[i]);
    fprintf(out,
            "# HELP restock_build_info The version of restock serving these metrics.\n"
            "# TYPE restock_build_info gauge\n"
            "restock_build_info{version=\"%s\"} 1\n",
            PACKAGE_VERSION);
}
