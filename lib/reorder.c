/* reorder: the reorder policy of each product (see reorder.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "log.h"
#include "reorder.h"
#include "utf8.h"

#define REORDER_MAX        1000000 /* the columns' CHECK bounds */
#define REORDER_LEAD_MAX   1000    /* lead_time_orders' bound */
#define REORDER_SAMPLE_MIN 1.0     /* seconds between two samples of a product */
#define REORDER_RATE_ZERO  0.001   /* units a minute: nothing sells */

enum reorder_stmt { ST_PRODUCTS, ST_ONE, ST_SAMPLE, ST_AUTO, ST_SET, ST_COUNT };

/* Columns of ST_PRODUCTS and ST_ONE, in order. */
enum {
    COL_ID,
    COL_SKU,
    COL_STOCK,
    COL_POINT,
    COL_LEVEL,
    COL_QUANTITY,
    COL_AUTO,
    COL_MIN,
    COL_MAX,
    COL_FACTORY,
    COL_SOLD,
    COL_SAMPLE_SOLD, /* product_demand's, NULL before the first sample */
    COL_SAMPLE_AGE,  /* microseconds since that sample */
    COL_RATE,
    COL_SAMPLE_ORDER,  /* the unfinished order at that sample, NULL: none */
    COL_SAMPLE_TURNED, /* the units turned away on it then */
    COL_LIMIT,         /* max_per_customer (lib/sale enforces it) */
    COL_HELD           /* units in active holds */
};

#define REORDER_COLUMNS                                                                            \
    "SELECT p.product_id, p.sku, p.stock, p.reorder_point, p.reorder_level,"                       \
    " p.reorder_quantity, p.reorder_auto, p.reorder_point_min, p.reorder_point_max,"               \
    " p.factory_id, p.sold_total + p.held, d.sold_total,"                                          \
    " TIMESTAMPDIFF(MICROSECOND, d.sampled_at, CURRENT_TIMESTAMP(6)), d.rate,"                     \
    " d.order_id, d.order_turned_away_units, p.max_per_customer, p.held"                           \
    " FROM product p LEFT JOIN product_demand d ON d.product_id = p.product_id"

static const struct db_stmt_def reorder_sql[ST_COUNT] = {
    [ST_PRODUCTS] = {REORDER_COLUMNS " ORDER BY p.sku", DB_IDEMPOTENT},
    [ST_ONE] = {REORDER_COLUMNS " WHERE p.sku = ?", DB_IDEMPOTENT},
    /* A separate table: sampling never locks the hot product row. */
    [ST_SAMPLE] = {"INSERT INTO product_demand (product_id, sold_total, order_id,"
                   " order_turned_away_units, sampled_at, rate)"
                   " VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP(6), ?) ON DUPLICATE KEY UPDATE"
                   " sold_total = VALUES(sold_total), order_id = VALUES(order_id),"
                   " order_turned_away_units = VALUES(order_turned_away_units),"
                   " sampled_at = VALUES(sampled_at), rate = VALUES(rate)",
                   DB_IDEMPOTENT},
    /* Only while the switch is on: an operator who turned it off meanwhile keeps
     * the point. */
    [ST_AUTO] = {"UPDATE product SET reorder_point = ?, reorder_level = ?"
                 " WHERE product_id = ? AND reorder_auto",
                 DB_IDEMPOTENT},
    [ST_SET] = {"UPDATE product SET reorder_point = ?, reorder_level = ?, reorder_quantity = ?,"
                " reorder_auto = ?, reorder_point_min = ?, reorder_point_max = ?,"
                " max_per_customer = ? WHERE sku = ?",
                DB_IDEMPOTENT},
};

struct reorder {
    const conf *cf;
    db *conn;
    order *orders;
    db_stmt *st[ST_COUNT]; /* they belong to conn and go with it */
};

reorder *
reorder_new(const conf *cf, db *conn, order *orders, errbuf *err)
{
    reorder *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->cf = cf;
    self->conn = conn;
    self->orders = orders;
    if (db_stmt_table(conn, reorder_sql, ST_COUNT, self->st, err) != RS_OK) {
        reorder_destroy(&self);
        return NULL;
    }
    return self;
}

void
reorder_destroy(reorder **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

long long
reorder_suggest(double rate_per_min, double lead_seconds, long safety_pct)
{
    double demand = rate_per_min * lead_seconds / 60.0;

    if (!(demand > 0))
        return 0;
    demand *= 1.0 + (double)safety_pct / 100.0;
    return demand >= REORDER_MAX ? REORDER_MAX : (long long)ceil(demand - 1e-9);
}

long long
reorder_auto_size(double rate_per_min, double lead_seconds, long long quantity)
{
    double demand = rate_per_min * lead_seconds / 60.0;
    long long size = demand > 0 ? (long long)ceil(demand - 1e-9) : 0;

    if (demand >= REORDER_MAX)
        size = REORDER_MAX;
    return size > quantity ? size : quantity;
}

static int
reorder_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The nearest-rank percentile p (0..100) of n sorted values. */
static double
reorder_percentile(const double *sorted, int n, int p)
{
    int rank = (int)ceil((double)p / 100.0 * n);

    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

/* Fills the measured parts of *line from the current row of st: rate, lead
 * time, suggestion, projection. */
static int
reorder_measure(reorder *self, db_stmt *st, struct reorder_line *line, errbuf *err)
{
    unsigned char factory[IDENT_BYTES], product_id[IDENT_BYTES];
    double lead[REORDER_LEAD_MAX];
    long max = conf_int(self->cf, "lead_time_orders");
    size_t len;
    const char *bytes;
    const char *rate = db_stmt_col(st, COL_RATE, NULL);
    int n = 0;

    line->rate = rate ? strtod(rate, NULL) : 0;
    line->lead_p50 = line->lead_p90 = (double)conf_int(self->cf, "lead_time_assumed");
    bytes = db_stmt_col(st, COL_FACTORY, &len);
    if (bytes != NULL && len == IDENT_BYTES) {
        memcpy(factory, bytes, IDENT_BYTES);
        n = order_lead_times(self->orders, factory, lead,
                             max > REORDER_LEAD_MAX ? REORDER_LEAD_MAX : (int)max, err);
        if (n < 0)
            return RS_ERR;
    }
    if (n > 0) {
        qsort(lead, (size_t)n, sizeof(lead[0]), reorder_cmp_double);
        line->lead_p50 = reorder_percentile(lead, n, 50);
        line->lead_p90 = reorder_percentile(lead, n, 90);
    }
    line->lead_orders = n;
    line->suggested =
        reorder_suggest(line->rate, line->lead_p90, conf_int(self->cf, "reorder_safety"));
    line->sellout = line->rate > 0 ? (double)line->stock * 60.0 / line->rate : -1;
    line->on_order = 0;
    bytes = db_stmt_col(st, COL_ID, &len);
    if (bytes != NULL && len == IDENT_BYTES) {
        memcpy(product_id, bytes, IDENT_BYTES);
        struct order_unfinished open;
        if (order_on_order(self->orders, product_id, &open, err) != RS_OK)
            return RS_ERR;
        line->on_order = open.quantity;
    }
    return RS_OK;
}

/* The settings of the current row of st into *line. */
static void
reorder_settings(db_stmt *st, struct reorder_line *line)
{
    memset(line, 0, sizeof(*line));
    line->sku = db_stmt_col(st, COL_SKU, NULL);
    line->stock = db_stmt_col_int(st, COL_STOCK);
    line->point = db_stmt_col_int(st, COL_POINT);
    line->level = db_stmt_col_int(st, COL_LEVEL);
    line->quantity = db_stmt_col_int(st, COL_QUANTITY);
    line->automatic = db_stmt_col_int(st, COL_AUTO) != 0;
    line->point_min = db_stmt_col_int(st, COL_MIN);
    line->point_max = db_stmt_col_int(st, COL_MAX);
    line->has_factory = !db_stmt_col_is_null(st, COL_FACTORY);
    line->max_per_customer = db_stmt_col_int(st, COL_LIMIT);
    line->held = db_stmt_col_int(st, COL_HELD);
}

/* --- the worker's sweep ------------------------------------------------------- */

/* What one product's sample decided, kept until the result set is done with. */
struct reorder_step {
    unsigned char product_id[IDENT_BYTES];
    char sku[ORDER_SKU_SIZE];
    long long sold;
    struct order_unfinished open; /* the unfinished order now, for the next sample */
    double rate;
    int sample; /* write the sample */
    int move;   /* automatic: write point and level */
    long long point, level, old_point, old_level;
    double lead;
    int lead_orders;
};

/* The moving average of units per minute after a sample of units asked for
 * (sold, and turned away while sold out) at age seconds since the previous one: an exponential
 * average over rate_window whose weight follows the time that passed, so that irregular sweeps
 * (doorbells) weigh what they measured. */
static double
reorder_rate(double rate, long long sold, double age, long window)
{
    double alpha = 1.0 - exp(-age / (double)window);

    if (sold < 0)
        sold = 0; /* sold_total never goes down; a restored backup might */
    return rate + alpha * ((double)sold * 60.0 / age - rate);
}

/* Decides the automatic point and level of a product; 1 when they move. */
static int
reorder_decide(reorder *self, const struct reorder_line *line, struct reorder_step *step)
{
    long long point = line->suggested, level, threshold;

    if (point < line->point_min)
        point = line->point_min;
    if (point > line->point_max)
        point = line->point_max;
    level = point + reorder_auto_size(line->rate, line->lead_p90, line->quantity);
    if (level > REORDER_MAX)
        level = REORDER_MAX;
    /* A tenth of the point (at least 1) of hysteresis: the average moves a
     * little at every sweep, and a point that follows each wiggle fills the log. */
    threshold = line->point / 10 > 1 ? line->point / 10 : 1;
    if (llabs(point - line->point) < threshold && line->level != 0)
        return 0;
    if (point == line->point && level == line->level)
        return 0;
    step->point = point;
    step->level = level <= point ? point + 1 : level;
    step->old_point = line->point;
    step->old_level = line->level;
    step->lead = line->lead_p90;
    step->lead_orders = line->lead_orders;
    (void)self;
    return 1;
}

/* The units turned away since the product's last sample (st's current row):
 * what its unfinished order gained, and what the one of the last sample gained
 * until it was fulfilled. *open is the unfinished order now. The checkouts count
 * them on the order (one statement each while sold out), so that a stock-out
 * does not read as a fall of the demand. */
static int
reorder_turned_since(reorder *self, db_stmt *st, const unsigned char product_id[IDENT_BYTES],
                     struct order_unfinished *open, long long *asked, errbuf *err)
{
    size_t len;
    const char *before = db_stmt_col(st, COL_SAMPLE_ORDER, &len);
    long long then = db_stmt_col_int(st, COL_SAMPLE_TURNED), final;
    int same;

    *asked = 0;
    if (order_on_order(self->orders, product_id, open, err) != RS_OK)
        return RS_ERR;
    if (before == NULL || len != IDENT_BYTES)
        before = NULL;
    same = before != NULL && open->exists && memcmp(before, open->order_id, IDENT_BYTES) == 0;
    if (same) {
        *asked = open->turned_away_units - then;
    } else {
        if (before != NULL) {
            if (order_turned_away_units(self->orders, (const unsigned char *)before, &final, err) !=
                RS_OK)
                return RS_ERR;
            *asked += final - then;
        }
        if (open->exists)
            *asked += open->turned_away_units;
    }
    if (*asked < 0)
        *asked = 0;
    return RS_OK;
}

static void
reorder_due(void *arg, const char *sku)
{
    char(*skus)[ORDER_SKU_SIZE] = arg;
    int i = 0;

    while (skus[i][0] != '\0')
        i++;
    if (i < ORDER_DUE_MAX)
        snprintf(skus[i], sizeof(skus[i]), "%s", sku);
}

int
reorder_sweep(reorder *self, errbuf *err)
{
    db_stmt *st = self->st[ST_PRODUCTS];
    struct reorder_step *steps = NULL;
    char(*skus)[ORDER_SKU_SIZE] = NULL;
    long window = conf_int(self->cf, "rate_window");
    long long rows;
    size_t n = 0, cap = 0;
    int events = 0, rc = RS_ERR, due;

    rows = db_stmt_exec(st, err, "");
    if (rows < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        struct reorder_line line;
        struct reorder_step step = {0};
        size_t len;
        const char *id = db_stmt_col(st, COL_ID, &len);
        double age = (double)db_stmt_col_int(st, COL_SAMPLE_AGE) / 1e6;
        const char *rate = db_stmt_col(st, COL_RATE, NULL);
        int quiet;

        if (id == NULL || len != IDENT_BYTES)
            continue;
        reorder_settings(st, &line);
        memcpy(step.product_id, id, IDENT_BYTES);
        snprintf(step.sku, sizeof(step.sku), "%s", line.sku ? line.sku : "");
        step.sold = db_stmt_col_int(st, COL_SOLD);
        step.rate = rate ? strtod(rate, NULL) : 0;
        /* A product that sold nothing, had no order and has no rate left to
         * decay costs no statement: a large quiet catalogue stays cheap. */
        quiet = !db_stmt_col_is_null(st, COL_SAMPLE_SOLD) &&
                step.sold == db_stmt_col_int(st, COL_SAMPLE_SOLD) &&
                db_stmt_col_is_null(st, COL_SAMPLE_ORDER) && step.rate < REORDER_RATE_ZERO;
        if (!quiet && (db_stmt_col_is_null(st, COL_SAMPLE_SOLD) || age >= REORDER_SAMPLE_MIN)) {
            long long asked = 0;
            if (reorder_turned_since(self, st, step.product_id, &step.open, &asked, err) != RS_OK)
                goto done;
            /* The first sample only starts the count: the rate starts at 0. */
            if (!db_stmt_col_is_null(st, COL_SAMPLE_SOLD))
                step.rate = reorder_rate(step.rate,
                                         step.sold - db_stmt_col_int(st, COL_SAMPLE_SOLD) + asked,
                                         age, window);
            step.sample = 1;
        }
        if (step.sample || line.automatic) {
            if (n == cap) {
                struct reorder_step *more = realloc(steps, (cap ? cap * 2 : 16) * sizeof(*steps));
                if (more == NULL) {
                    errbuf_set(err, "out of memory");
                    goto done;
                }
                steps = more;
                cap = cap ? cap * 2 : 16;
            }
            if (line.automatic && line.has_factory) {
                /* The lead time and the on-order read other statements: the
                 * result set of this one is stored, and stays. */
                if (reorder_measure(self, st, &line, err) != RS_OK)
                    goto done;
                line.rate = step.rate;
                line.suggested =
                    reorder_suggest(line.rate, line.lead_p90, conf_int(self->cf, "reorder_safety"));
                step.move = reorder_decide(self, &line, &step);
            }
            steps[n++] = step;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct reorder_step *s = &steps[i];
        char rate[64];

        snprintf(rate, sizeof(rate), "%.6f", s->rate);
        if (s->sample &&
            db_stmt_exec(self->st[ST_SAMPLE], err, "bibis", s->product_id, (size_t)IDENT_BYTES,
                         s->sold, s->open.exists ? s->open.order_id : NULL, (size_t)IDENT_BYTES,
                         s->open.turned_away_units, rate) < 0)
            goto done;
        if (!s->move)
            continue;
        rows = db_stmt_exec(self->st[ST_AUTO], err, "iib", s->point, s->level, s->product_id,
                            (size_t)IDENT_BYTES);
        if (rows < 0)
            goto done;
        if (rows == 1)
            log_info("event=reorder_auto sku=%s reorder_point=%lld->%lld reorder_level=%lld->%lld "
                     "rate_per_min=%.2f lead_time_p90=%.1fs lead_orders=%d safety_pct=%ld "
                     "rate_window=%lds",
                     s->sku, s->old_point, s->point, s->old_level, s->level, s->rate, s->lead,
                     s->lead_orders, conf_int(self->cf, "reorder_safety"), window);
    }

    /* A point raised above the stock, a delivery that left the stock at or
     * below it, a crash between a sale and its order: what no sale will cross
     * again is ordered here. */
    skus = calloc(ORDER_DUE_MAX + 1, sizeof(*skus));
    if (skus == NULL) {
        errbuf_set(err, "out of memory");
        goto done;
    }
    due = order_each_due(self->orders, reorder_due, skus, err);
    if (due < 0)
        goto done;
    for (int i = 0; i < ORDER_DUE_MAX && skus[i][0] != '\0'; i++) {
        struct order_open_outcome out;
        int written = order_reorder(self->orders, skus[i], &out, err);
        if (written < 0)
            goto done;
        if (written > 0)
            log_info("event=reorder_swept sku=%s stock=%lld outbox_event=%s", skus[i],
                     out.remaining, out.event);
        events += written;
    }
    rc = events;
done:
    free(skus);
    free(steps);
    return rc;
}

/* --- restockctl --------------------------------------------------------------- */

int
reorder_each(reorder *self, void (*fn)(void *arg, const struct reorder_line *line), void *arg,
             errbuf *err)
{
    db_stmt *st = self->st[ST_PRODUCTS];

    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        struct reorder_line line;

        reorder_settings(st, &line);
        if (reorder_measure(self, st, &line, err) != RS_OK)
            return RS_ERR;
        fn(arg, &line);
    }
    return RS_OK;
}

static const struct reorder_key {
    const char *name;
    long long min, max;
} reorder_keys[] = {
    {"reorder_point", -1, REORDER_MAX},    {"reorder_level", 0, REORDER_MAX},
    {"reorder_quantity", 1, REORDER_MAX},  {"reorder_auto", 0, 1},
    {"reorder_point_min", 0, REORDER_MAX}, {"reorder_point_max", 0, REORDER_MAX},
    {"max_per_customer", 0, REORDER_MAX},
};
#define REORDER_NKEYS (sizeof(reorder_keys) / sizeof(reorder_keys[0]))

/* One value: an integer in the key's range (reorder_auto also on/off). */
static int
reorder_value(const struct reorder_key *k, const char *text, long long *out, errbuf *err)
{
    char *end;

    if (strcmp(k->name, "reorder_auto") == 0) {
        if (strcmp(text, "on") == 0 || strcmp(text, "1") == 0) {
            *out = 1;
            return RS_OK;
        }
        if (strcmp(text, "off") == 0 || strcmp(text, "0") == 0) {
            *out = 0;
            return RS_OK;
        }
        return errbuf_set(err, "reorder_auto \"%.*s\": expected on or off",
                          (int)utf8_cut(text, strlen(text), 40), text);
    }
    errno = 0;
    *out = strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno != 0 || *out < k->min || *out > k->max)
        return errbuf_set(err, "%s \"%.*s\": expected an integer from %lld to %lld", k->name,
                          (int)utf8_cut(text, strlen(text), 40), text, k->min, k->max);
    return RS_OK;
}

int
reorder_set(reorder *self, const char *sku, int argc, char **argv, struct reorder_line *out,
            errbuf *err)
{
    db_stmt *one = self->st[ST_ONE];
    long long v[REORDER_NKEYS];
    long long rows;

    if (argc < 1)
        return errbuf_set(err, "nothing to set: give key=value (keys: reorder_point, "
                               "reorder_level, reorder_quantity, reorder_auto, "
                               "reorder_point_min, reorder_point_max, max_per_customer)");
    rows = db_stmt_exec(one, err, "s", sku);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(one))
        return errbuf_set(err, "unknown sku \"%.*s\"", (int)utf8_cut(sku, strlen(sku), 40), sku);
    reorder_settings(one, out);
    v[0] = out->point;
    v[1] = out->level;
    v[2] = out->quantity;
    v[3] = out->automatic;
    v[4] = out->point_min;
    v[5] = out->point_max;
    v[6] = out->max_per_customer;
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        size_t klen = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        size_t k;

        for (k = 0; k < REORDER_NKEYS; k++)
            if (strlen(reorder_keys[k].name) == klen &&
                strncmp(reorder_keys[k].name, argv[i], klen) == 0)
                break;
        if (k == REORDER_NKEYS)
            return errbuf_set(err,
                              "unknown key \"%.*s\" (keys: reorder_point, reorder_level, "
                              "reorder_quantity, reorder_auto, reorder_point_min, "
                              "reorder_point_max)",
                              (int)utf8_cut(argv[i], klen, 40), argv[i]);
        if (eq == NULL)
            return errbuf_set(err, "%s: expected %s=VALUE", reorder_keys[k].name,
                              reorder_keys[k].name);
        if (reorder_value(&reorder_keys[k], eq + 1, &v[k], err) != RS_OK)
            return RS_ERR;
    }
    if (v[1] != 0 && v[1] <= v[0])
        return errbuf_set(err,
                          "reorder_level %lld must be above reorder_point %lld (or 0: order "
                          "reorder_quantity)",
                          v[1], v[0]);
    if (v[4] > v[5])
        return errbuf_set(err, "reorder_point_min %lld is above reorder_point_max %lld", v[4],
                          v[5]);
    if (db_stmt_exec(self->st[ST_SET], err, "iiiiiiis", v[0], v[1], v[2], v[3], v[4], v[5], v[6],
                     sku) < 0)
        return RS_ERR;
    out->point = v[0];
    out->level = v[1];
    out->quantity = v[2];
    out->automatic = (int)v[3];
    out->point_min = v[4];
    out->point_max = v[5];
    out->max_per_customer = v[6];
    out->sku = NULL; /* the row's text is gone with the statement's next run */
    log_info("event=reorder_set sku=%s reorder_point=%lld reorder_level=%lld "
             "reorder_quantity=%lld reorder_auto=%lld reorder_point_min=%lld "
             "reorder_point_max=%lld max_per_customer=%lld",
             sku, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    return RS_OK;
}
