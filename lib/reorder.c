/* reorder: the reorder policy of each product (see reorder.h). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ident.h"
#include "log.h"
#include "reorder.h"
#include "timetext.h"
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
    COL_HELD,          /* units in active holds */
    COL_TARGET,        /* service_level, NULL: none */
    COL_SURGE,         /* the surge factor while it lasts, NULL: none */
    COL_SURGE_LEFT,    /* seconds until it ends */
    COL_DEMAND_MEAN,   /* units asked for per second over demand_window */
    COL_DEMAND_VAR,
    COL_DEMAND_SECONDS, /* seconds those have seen, up to demand_window */
    COL_FILL_ASKED,     /* units asked for per second over service_window */
    COL_FILL_TURNED,    /* of which turned away from an empty shelf */
    COL_FILL_SECONDS,
    COL_SPAN_DEV,     /* the open variance span (sql/020) */
    COL_SPAN_SECONDS, /* its length so far */
    COL_NOW           /* the statement's time: a sample is sold_total at that moment */
};

#define REORDER_COLUMNS                                                                            \
    "SELECT p.product_id, p.sku, p.stock, p.reorder_point, p.reorder_level,"                       \
    " p.reorder_quantity, p.reorder_auto, p.reorder_point_min, p.reorder_point_max,"               \
    " p.factory_id, p.sold_total + p.held, d.sold_total,"                                          \
    " TIMESTAMPDIFF(MICROSECOND, d.sampled_at, CURRENT_TIMESTAMP(6)), d.rate,"                     \
    " d.order_id, d.order_turned_away_units, p.max_per_customer, p.held, p.service_level,"         \
    " IF(p.surge_until > UTC_TIMESTAMP(6), p.surge_factor, NULL),"                                 \
    " TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), p.surge_until),"                                     \
    " d.demand_mean, d.demand_var, d.demand_seconds, d.fill_asked, d.fill_turned,"                 \
    " d.fill_seconds, d.span_dev, d.span_seconds, CURRENT_TIMESTAMP(6)"                            \
    " FROM product p LEFT JOIN product_demand d ON d.product_id = p.product_id"

static const struct db_stmt_def reorder_sql[ST_COUNT] = {
    [ST_PRODUCTS] = {REORDER_COLUMNS " ORDER BY p.sku", DB_IDEMPOTENT},
    [ST_ONE] = {REORDER_COLUMNS " WHERE p.sku = ?", DB_IDEMPOTENT},
    /* A separate table: sampling never locks the hot product row. */
    [ST_SAMPLE] = {"INSERT INTO product_demand (product_id, sold_total, order_id,"
                   " order_turned_away_units, sampled_at, rate, demand_mean, demand_var,"
                   " demand_seconds, fill_asked, fill_turned, fill_seconds, span_dev,"
                   " span_seconds)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                   " ON DUPLICATE KEY UPDATE"
                   " sold_total = VALUES(sold_total), order_id = VALUES(order_id),"
                   " order_turned_away_units = VALUES(order_turned_away_units),"
                   " sampled_at = VALUES(sampled_at), rate = VALUES(rate),"
                   " demand_mean = VALUES(demand_mean), demand_var = VALUES(demand_var),"
                   " demand_seconds = VALUES(demand_seconds), fill_asked = VALUES(fill_asked),"
                   " fill_turned = VALUES(fill_turned), fill_seconds = VALUES(fill_seconds),"
                   " span_dev = VALUES(span_dev), span_seconds = VALUES(span_seconds)",
                   DB_IDEMPOTENT},
    /* Only while the switch is on: an operator who turned it off meanwhile keeps
     * the point. */
    [ST_AUTO] = {"UPDATE product SET reorder_point = ?, reorder_level = ?"
                 " WHERE product_id = ? AND reorder_auto",
                 DB_IDEMPOTENT},
    [ST_SET] = {"UPDATE product SET reorder_point = ?, reorder_level = ?, reorder_quantity = ?,"
                " reorder_auto = ?, reorder_point_min = ?, reorder_point_max = ?,"
                " max_per_customer = ?, service_level = ?, surge_factor = ?,"
                " surge_until = CASE ? WHEN 'keep' THEN surge_until WHEN 'clear' THEN NULL"
                " ELSE TIMESTAMPADD(SECOND, ?, UTC_TIMESTAMP(6)) END WHERE sku = ?",
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

/* The policy of a product with a service level (stock_policy), from what *line
 * holds: its demand (times the surge while one lasts), its factory's lead time,
 * its bounds; the suggestion becomes the policy's point. */
static int
reorder_policy(reorder *self, struct reorder_line *line, errbuf *err)
{
    double factor = line->surge > 0 ? line->surge : 1.0;
    long cover = conf_int(self->cf, "reorder_cover");
    struct stock_policy_input in = {
        .csl = line->target,
        .demand_mean = line->demand_mean * factor,
        .demand_var = line->demand_var * factor,
        .lead_mean = line->lead_mean,
        .lead_var = line->lead_var,
        .cover = cover > 0 ? (double)cover : line->lead_mean,
        .quantity = line->quantity > 0 ? line->quantity : 1,
        .point_min = line->point_min,
        .point_max = line->point_max,
    };

    if (stock_policy_compute(&in, &line->policy, err) != RS_OK)
        return errbuf_prefix(err, "the policy of %s", line->sku ? line->sku : "?");
    if (line->policy.level > REORDER_MAX)
        line->policy.level = REORDER_MAX;
    line->suggested = line->policy.point;
    return RS_OK;
}

/* Fills the measured parts of *line from the current row of st: rate, lead
 * time, suggestion (the policy's point for a product with a service level),
 * projection. */
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
    line->lead_mean = line->lead_p50;
    line->lead_var = 0;
    if (n > 0) {
        double sum = 0, squares = 0;

        qsort(lead, (size_t)n, sizeof(lead[0]), reorder_cmp_double);
        line->lead_p50 = reorder_percentile(lead, n, 50);
        line->lead_p90 = reorder_percentile(lead, n, 90);
        for (int i = 0; i < n; i++)
            sum += lead[i];
        line->lead_mean = sum / n;
        for (int i = 0; i < n; i++)
            squares += (lead[i] - line->lead_mean) * (lead[i] - line->lead_mean);
        /* The sample variance; one order tells no spread. */
        line->lead_var = n > 1 ? squares / (n - 1) : 0;
    }
    line->lead_orders = n;
    line->suggested =
        reorder_suggest(line->rate, line->lead_p90, conf_int(self->cf, "reorder_safety"));
    if (line->target > 0 && reorder_policy(self, line, err) != RS_OK)
        return RS_ERR;
    line->sellout = line->rate > 0 ? (double)line->stock * 60.0 / line->rate : -1;
    line->on_order = 0;
    bytes = db_stmt_col(st, COL_ID, &len);
    if (bytes != NULL && len == IDENT_BYTES) {
        memcpy(product_id, bytes, IDENT_BYTES);
        struct order_unfinished open;
        if (order_on_order(self->orders, product_id, &open, err) != RS_OK)
            return RS_ERR;
        line->on_order = open.quantity + open.topup_quantity;
    }
    return RS_OK;
}

/* A column of st as a double, 0 when NULL. */
static double
reorder_col_double(db_stmt *st, int col)
{
    const char *text = db_stmt_col(st, col, NULL);

    return text != NULL ? strtod(text, NULL) : 0;
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
    line->target = reorder_col_double(st, COL_TARGET);
    line->surge = reorder_col_double(st, COL_SURGE);
    line->surge_left = line->surge > 0 ? (double)db_stmt_col_int(st, COL_SURGE_LEFT) : 0;
    line->demand_mean = reorder_col_double(st, COL_DEMAND_MEAN);
    line->demand_var = reorder_col_double(st, COL_DEMAND_VAR);
    line->fill_rate = -1;
    if (reorder_col_double(st, COL_FILL_ASKED) > 0)
        line->fill_rate =
            1.0 - reorder_col_double(st, COL_FILL_TURNED) / reorder_col_double(st, COL_FILL_ASKED);
    line->cycles = line->stockouts = 0;
}

/* --- the worker's sweep ------------------------------------------------------- */

/* What one product's sample decided, kept until the result set is done with. */
struct reorder_step {
    unsigned char product_id[IDENT_BYTES];
    char sku[ORDER_SKU_SIZE];
    /* When sold was read (COL_NOW), not when the sample is written: the rows are
     * written after every product is read, and a sample dated at its write made
     * the next one's units those of a longer time than its age (the demand's mean
     * and variance overestimated, the later products' the more). */
    char sampled_at[32];
    long long sold;
    struct order_unfinished open; /* the unfinished order now, for the next sample */
    double rate;
    struct reorder_demand demand;                 /* over demand_window */
    double fill_asked, fill_turned, fill_seconds; /* over service_window */
    int sample;                                   /* write the sample */
    int move;                                     /* automatic: write point and level */
    long long point, level, old_point, old_level;
    double lead;
    int lead_orders;
    struct reorder_line line; /* as decided, for the log (sku not kept) */
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

/* The demand's mean and variance per second after a sample of units asked for
 * over age seconds: exponential averages over window, each sample weighing what
 * its time was, and while they have seen less than a window at least its share of
 * what they have seen (a new product's first sample is its mean, not a tenth of
 * it). The variance per second is that of units per sample divided by its length:
 * for demand independent from second to second it does not depend on how often
 * the worker samples. */
static double
reorder_weight(double seen, double age, long window)
{
    double weight = 1.0 - exp(-age / (double)window);

    if (seen + age > 0 && age / (seen + age) > weight)
        weight = age / (seen + age);
    return weight;
}

/* While an announced surge of factor f lasts, a sample is the baseline's times f:
 * its units count as units / f in the mean, and its deviation from f times the
 * mean as dev / √f in the variance (a Poisson demand f times as fast has f times
 * the variance), so that the averages stay what a normal period sells and the
 * policy's mean × f and variance × f are not the surge counted twice.
 *
 * The variance is measured over spans of at least span seconds (a product with a
 * service level: its mean lead time; else 0, each sample): the deviations of the
 * samples add up until the span is that long, and the span's squared deviation
 * over its length is one sample of the variance per second. A lead time's demand
 * is what the policy needs; for seconds that are not independent (bursts, and the
 * lulls that follow) the variance of one second times a lead time is not it: the
 * simulator's load made it 50 a second for 30 (the 90 % target served 95.5 %). */
void
reorder_demand_sample(struct reorder_demand *d, long long units, double age, long window,
                      double surge, double span)
{
    double weight = reorder_weight(d->seconds, age, window), dev;
    double seen = d->seconds - d->span_seconds;
    double f = surge > 0 ? surge : 1.0;

    if (units < 0)
        units = 0;
    dev = ((double)units - f * d->mean * age) / sqrt(f);
    d->mean += weight * ((double)units / f / age - d->mean);
    d->seconds = fmin(d->seconds + age, (double)window);
    d->span_dev += dev;
    d->span_seconds += age;
    if (d->span_seconds < span)
        return;
    weight = reorder_weight(seen > 0 ? seen : 0, d->span_seconds, window);
    d->var += weight * (d->span_dev * d->span_dev / d->span_seconds - d->var);
    d->span_dev = d->span_seconds = 0;
}

/* The fill rate's two averages after a sample: units asked for and, of them,
 * turned away, per second over service_window (weighted as the demand's). */
static void
reorder_fill(struct reorder_step *step, long long units, long long turned, double age, long window)
{
    double weight = reorder_weight(step->fill_seconds, age, window);

    step->fill_asked += weight * ((double)(units > 0 ? units : 0) / age - step->fill_asked);
    step->fill_turned += weight * ((double)(turned > 0 ? turned : 0) / age - step->fill_turned);
    step->fill_seconds = fmin(step->fill_seconds + age, (double)window);
}

/* Decides the automatic point and level of a product; 1 when they move. A
 * product with a service level takes its policy's; the others the fixed
 * margin's suggestion and a lead time's demand. */
static int
reorder_decide(reorder *self, const struct reorder_line *line, struct reorder_step *step)
{
    long long point = line->suggested, level, threshold;

    if (point < line->point_min)
        point = line->point_min;
    if (point > line->point_max)
        point = line->point_max;
    if (line->target > 0)
        level = line->policy.level;
    else
        level = point + reorder_auto_size(line->rate, line->lead_p90, line->quantity);
    if (level > REORDER_MAX)
        level = REORDER_MAX;
    /* Hysteresis, at least 1: the average moves a little at every sweep, and a
     * point that follows each wiggle fills the log. The fixed margin's is a tenth
     * of the point. A target's is a tenth of the lead time's demand's σ: each unit
     * of the point is a share of the service (at 90 %, with σ 12, one unit is 1.5
     * points of it), and a tenth of the point (6 units there) left the points where
     * the estimates of the warm-up put them, over-serving the target by 3 points
     * (tests/sim/service_level). */
    if (line->target > 0)
        threshold = (long long)(line->policy.lead_sd / 10.0);
    else
        threshold = line->point / 10;
    if (threshold < 1)
        threshold = 1;
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
    step->line = *line;
    step->line.sku = NULL;
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
    long demand_window = conf_int(self->cf, "demand_window");
    long service_window = conf_int(self->cf, "service_window");
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
        snprintf(step.sampled_at, sizeof(step.sampled_at), "%s",
                 db_stmt_col(st, COL_NOW, NULL) ? db_stmt_col(st, COL_NOW, NULL) : "");
        step.sold = db_stmt_col_int(st, COL_SOLD);
        step.rate = rate ? strtod(rate, NULL) : 0;
        step.demand.mean = line.demand_mean;
        step.demand.var = line.demand_var;
        step.demand.seconds = reorder_col_double(st, COL_DEMAND_SECONDS);
        step.fill_asked = reorder_col_double(st, COL_FILL_ASKED);
        step.fill_turned = reorder_col_double(st, COL_FILL_TURNED);
        step.fill_seconds = reorder_col_double(st, COL_FILL_SECONDS);
        step.demand.span_dev = reorder_col_double(st, COL_SPAN_DEV);
        step.demand.span_seconds = reorder_col_double(st, COL_SPAN_SECONDS);
        /* A product that sold nothing, had no order and has no rate left to
         * decay costs no statement: a large quiet catalogue stays cheap. */
        quiet = !db_stmt_col_is_null(st, COL_SAMPLE_SOLD) &&
                step.sold == db_stmt_col_int(st, COL_SAMPLE_SOLD) &&
                db_stmt_col_is_null(st, COL_SAMPLE_ORDER) && step.rate < REORDER_RATE_ZERO;
        /* The lead time and the on-order read other statements: the result set of
         * this one is stored, and stays. Measured first: a target's variance spans
         * its mean lead time (reorder_demand_sample). */
        if (line.automatic && line.has_factory && reorder_measure(self, st, &line, err) != RS_OK)
            goto done;
        if (!quiet && (db_stmt_col_is_null(st, COL_SAMPLE_SOLD) || age >= REORDER_SAMPLE_MIN)) {
            long long asked = 0;
            if (reorder_turned_since(self, st, step.product_id, &step.open, &asked, err) != RS_OK)
                goto done;
            /* The first sample only starts the count: the rate starts at 0. */
            if (!db_stmt_col_is_null(st, COL_SAMPLE_SOLD)) {
                long long units = step.sold - db_stmt_col_int(st, COL_SAMPLE_SOLD) + asked;

                step.rate = reorder_rate(step.rate, units, age, window);
                reorder_demand_sample(
                    &step.demand, units, age, demand_window, line.surge,
                    line.automatic && line.has_factory && line.target > 0 ? line.lead_mean : 0);
                reorder_fill(&step, units, asked, age, service_window);
            }
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
                line.rate = step.rate;
                line.demand_mean = step.demand.mean;
                line.demand_var = step.demand.var;
                line.suggested =
                    reorder_suggest(line.rate, line.lead_p90, conf_int(self->cf, "reorder_safety"));
                if (line.target > 0 && reorder_policy(self, &line, err) != RS_OK)
                    goto done;
                step.move = reorder_decide(self, &line, &step);
            }
            steps[n++] = step;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct reorder_step *s = &steps[i];
        char rate[64], mean[64], var[64], seen[64], fill_asked[64], fill_turned[64], fill_seen[64];
        char span_dev[64], span_seconds[64];

        snprintf(rate, sizeof(rate), "%.6f", s->rate);
        snprintf(mean, sizeof(mean), "%.9g", s->demand.mean);
        snprintf(var, sizeof(var), "%.9g", s->demand.var);
        snprintf(seen, sizeof(seen), "%.9g", s->demand.seconds);
        snprintf(fill_asked, sizeof(fill_asked), "%.9g", s->fill_asked);
        snprintf(fill_turned, sizeof(fill_turned), "%.9g", s->fill_turned);
        snprintf(fill_seen, sizeof(fill_seen), "%.9g", s->fill_seconds);
        snprintf(span_dev, sizeof(span_dev), "%.9g", s->demand.span_dev);
        snprintf(span_seconds, sizeof(span_seconds), "%.9g", s->demand.span_seconds);
        if (s->sample &&
            db_stmt_exec(self->st[ST_SAMPLE], err, "bibissssssssss", s->product_id,
                         (size_t)IDENT_BYTES, s->sold, s->open.exists ? s->open.order_id : NULL,
                         (size_t)IDENT_BYTES, s->open.turned_away_units, s->sampled_at, rate, mean,
                         var, seen, fill_asked, fill_turned, fill_seen, span_dev, span_seconds) < 0)
            goto done;
        if (!s->move)
            continue;
        rows = db_stmt_exec(self->st[ST_AUTO], err, "iib", s->point, s->level, s->product_id,
                            (size_t)IDENT_BYTES);
        if (rows < 0)
            goto done;
        if (rows == 1 && s->line.target > 0)
            log_info(
                "event=reorder_policy sku=%s reorder_point=%lld->%lld reorder_level=%lld->%lld "
                "service_level=%.4f law=%s z=%.4f lead_demand=%.2f lead_demand_sd=%.2f "
                "safety=%.2f demand_per_s=%.6f demand_var_per_s=%.6f surge=%.3f "
                "lead_mean=%.1fs lead_sd=%.1fs lead_orders=%d demand_window=%lds",
                s->sku, s->old_point, s->point, s->old_level, s->level, s->line.target,
                stock_policy_law_name(s->line.policy.law), s->line.policy.z,
                s->line.policy.lead_demand, s->line.policy.lead_sd, s->line.policy.safety,
                s->demand.mean, s->demand.var, s->line.surge > 0 ? s->line.surge : 1.0,
                s->line.lead_mean, sqrt(s->line.lead_var), s->lead_orders, demand_window);
        else if (rows == 1)
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
    /* Top-ups of products with a service level (order.h): after the points moved. */
    memset(skus, 0, (ORDER_DUE_MAX + 1) * sizeof(*skus));
    due = order_each_topup_due(self->orders, reorder_due, skus, err);
    if (due < 0)
        goto done;
    for (int i = 0; i < ORDER_DUE_MAX && skus[i][0] != '\0'; i++) {
        struct order_open_outcome out;
        int written = order_topup(self->orders, skus[i], &out, err);
        if (written < 0)
            goto done;
        events += written;
    }
    rc = events;
done:
    free(skus);
    free(steps);
    return rc;
}

/* --- the level achieved --------------------------------------------------------- */

/* The order cycles of the service window, per sku, sorted for bsearch. */
struct reorder_cycles {
    struct reorder_cycle {
        char *sku;
        long long cycles, stockouts;
    } * v;
    size_t n, cap;
    int failed;
};

static void
reorder_cycles_add(void *arg, const char *sku, long long cycles, long long stockouts)
{
    struct reorder_cycles *l = arg;

    if (l->failed || sku == NULL)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct reorder_cycle *more = realloc(l->v, cap * sizeof(*more));

        if (more == NULL) {
            l->failed = 1;
            return;
        }
        l->v = more, l->cap = cap;
    }
    l->v[l->n].sku = strdup(sku);
    if (l->v[l->n].sku == NULL) {
        l->failed = 1;
        return;
    }
    l->v[l->n].cycles = cycles;
    l->v[l->n++].stockouts = stockouts;
}

static int
reorder_cycles_cmp(const void *a, const void *b)
{
    return strcmp(((const struct reorder_cycle *)a)->sku, ((const struct reorder_cycle *)b)->sku);
}

static void
reorder_cycles_free(struct reorder_cycles *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].sku);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int
reorder_cycles_load(reorder *self, struct reorder_cycles *l, errbuf *err)
{
    memset(l, 0, sizeof(*l));
    if (order_cycles_each(self->orders, conf_int(self->cf, "service_window"), reorder_cycles_add, l,
                          err) < 0 ||
        (l->failed && errbuf_set(err, "out of memory"))) {
        reorder_cycles_free(l);
        return RS_ERR;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(l->v[0]), reorder_cycles_cmp);
    return RS_OK;
}

/* The cycles of line's sku into it (none: 0 and 0). */
static void
reorder_cycles_of(const struct reorder_cycles *l, struct reorder_line *line)
{
    struct reorder_cycle key = {.sku = (char *)(line->sku ? line->sku : "")}, *hit;

    hit = l->n > 0 ? bsearch(&key, l->v, l->n, sizeof(l->v[0]), reorder_cycles_cmp) : NULL;
    line->cycles = hit ? hit->cycles : 0;
    line->stockouts = hit ? hit->stockouts : 0;
}

/* Every product's line, with its cycles: measured (lead times, the policy, on
 * order: restockctl) or not (the metrics), and all of them or only those with a
 * target, a fill rate or cycles. */
static int
reorder_walk(reorder *self, int measured, int service_only,
             void (*fn)(void *arg, const struct reorder_line *line), void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_PRODUCTS];
    struct reorder_cycles cycles;
    int rc = RS_ERR;

    if (reorder_cycles_load(self, &cycles, err) != RS_OK)
        return RS_ERR;
    if (db_stmt_exec(st, err, "") < 0)
        goto done;
    while (db_stmt_next(st)) {
        struct reorder_line line;

        reorder_settings(st, &line);
        if (measured && reorder_measure(self, st, &line, err) != RS_OK)
            goto done;
        reorder_cycles_of(&cycles, &line);
        if (!service_only || line.target > 0 || line.fill_rate >= 0 || line.cycles > 0)
            fn(arg, &line);
    }
    rc = RS_OK;
done:
    reorder_cycles_free(&cycles);
    return rc;
}

int
reorder_report_service(reorder *self, reorder_service_fn fn, void *arg, errbuf *err)
{
    return reorder_walk(self, 0, 1, fn, arg, err);
}

/* --- restockctl --------------------------------------------------------------- */

int
reorder_each(reorder *self, void (*fn)(void *arg, const struct reorder_line *line), void *arg,
             errbuf *err)
{
    return reorder_walk(self, 1, 0, fn, arg, err);
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
#define REORDER_KEY_NAMES                                                                          \
    "reorder_point, reorder_level, reorder_quantity, reorder_auto, reorder_point_min, "            \
    "reorder_point_max, max_per_customer, service_level, surge, surge_until"

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

/* The settings of a service level policy as reorder_set takes them: text for the
 * statement (NULL: none), and what surge_until becomes. */
struct reorder_target_words {
    char level[16], surge[24];
    int has_level, has_surge, auto_given;
    const char *until_mode; /* "keep", "clear" or "set" */
    long long until_in;     /* seconds from now, with "set" */
};

/* service_level=95, 95%, 0.95 or off. */
static int
reorder_word_level(const char *text, struct reorder_target_words *w, errbuf *err)
{
    char *end;
    double v;

    w->has_level = 1;
    if (strcmp(text, "off") == 0) {
        w->level[0] = '\0';
        return RS_OK;
    }
    errno = 0;
    v = strtod(text, &end);
    if (end != text && strcmp(end, "%") == 0)
        v /= 100.0;
    else if (end == text || *end != '\0')
        v = NAN;
    else if (v >= 1.0)
        v /= 100.0; /* "95": a percentage */
    if (errno != 0 || !(v > STOCK_POLICY_CSL_MIN && v < STOCK_POLICY_CSL_MAX))
        return errbuf_set(err,
                          "service_level \"%.*s\": expected a percentage above 50 and below "
                          "99.99 (95, 95%%, 0.95) or off",
                          (int)utf8_cut(text, strlen(text), 40), text);
    snprintf(w->level, sizeof(w->level), "%.4f", v);
    return RS_OK;
}

/* surge=FACTOR or off. */
static int
reorder_word_surge(const char *text, struct reorder_target_words *w, errbuf *err)
{
    char *end;
    double v;

    w->has_surge = 1;
    if (strcmp(text, "off") == 0) {
        w->surge[0] = '\0';
        w->until_mode = "clear";
        return RS_OK;
    }
    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v > 0 && v <= 1000))
        return errbuf_set(err, "surge \"%.*s\": expected a factor above 0 and up to 1000, or off",
                          (int)utf8_cut(text, strlen(text), 40), text);
    snprintf(w->surge, sizeof(w->surge), "%.3f", v);
    return RS_OK;
}

/* surge_until=+N[smhd] or an RFC 3339 UTC time (2026-12-24T18:00:00Z), in the
 * future. */
static int
reorder_word_until(const char *text, struct reorder_target_words *w, errbuf *err)
{
    struct tm tm = {0};
    long long n = 0;
    char unit = 's', z = 0, extra = 0;
    int used = 0;

    if (text[0] == '+' && sscanf(text + 1, "%lld%c%c", &n, &unit, &extra) >= 1 && extra == 0 &&
        n > 0 && n <= 10LL * 366 * 86400) {
        n *= unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : unit == 's' ? 1 : 0;
    } else if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z, &used) == 7 &&
               z == 'Z' && text[used] == '\0') {
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        n = (long long)timegm(&tm) - (long long)time(NULL);
    } else {
        n = 0;
    }
    if (n <= 0)
        return errbuf_set(err,
                          "surge_until \"%.*s\": expected a time to come, as +N with s, m, h "
                          "or d (+2h) or in UTC (2026-12-24T18:00:00Z)",
                          (int)utf8_cut(text, strlen(text), 40), text);
    w->until_mode = "set";
    w->until_in = n;
    return RS_OK;
}

/* One word of the service level policy: 1 when it was one (parsed into *w), 0
 * when it is another key's, RS_ERR when its value is refused. */
static int
reorder_target_word(const char *word, struct reorder_target_words *w, errbuf *err)
{
    if (strncmp(word, "service_level=", 14) == 0)
        return reorder_word_level(word + 14, w, err) == RS_OK ? 1 : RS_ERR;
    if (strncmp(word, "surge=", 6) == 0)
        return reorder_word_surge(word + 6, w, err) == RS_OK ? 1 : RS_ERR;
    if (strncmp(word, "surge_until=", 12) == 0)
        return reorder_word_until(word + 12, w, err) == RS_OK ? 1 : RS_ERR;
    if (strncmp(word, "reorder_auto=", 13) == 0)
        w->auto_given = 1;
    return 0;
}

int
reorder_get(reorder *self, const char *sku, struct reorder_line *out, errbuf *err)
{
    db_stmt *one = self->st[ST_ONE];
    long long rows = db_stmt_exec(one, err, "s", sku);

    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(one))
        return 0;
    reorder_settings(one, out);
    out->sku = NULL; /* the row's text is gone with the statement's next run */
    return 1;
}

int
reorder_set(reorder *self, const char *sku, int argc, char **argv, struct reorder_line *out,
            errbuf *err)
{
    db_stmt *one = self->st[ST_ONE];
    long long v[REORDER_NKEYS];
    long long rows;
    struct reorder_target_words w = {.until_mode = "keep"};
    char until[48];

    if (argc < 1)
        return errbuf_set(err, "nothing to set: give key=value (keys: " REORDER_KEY_NAMES ")");
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
    if (out->target > 0)
        snprintf(w.level, sizeof(w.level), "%.4f", out->target);
    if (!db_stmt_col_is_null(one, COL_SURGE))
        snprintf(w.surge, sizeof(w.surge), "%.3f", out->surge);
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        size_t klen = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        size_t k;
        int special = reorder_target_word(argv[i], &w, err);

        if (special < 0)
            return RS_ERR;
        if (special > 0)
            continue;

        for (k = 0; k < REORDER_NKEYS; k++)
            if (strlen(reorder_keys[k].name) == klen &&
                strncmp(reorder_keys[k].name, argv[i], klen) == 0)
                break;
        if (k == REORDER_NKEYS)
            return errbuf_set(err, "unknown key \"%.*s\" (keys: " REORDER_KEY_NAMES ")",
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
    if (w.has_surge && w.surge[0] != '\0' && strcmp(w.until_mode, "set") != 0)
        return errbuf_set(err,
                          "surge=%s: say until when with surge_until (+2h, or a UTC time "
                          "such as 2026-12-24T18:00:00Z)",
                          w.surge);
    if (!w.has_surge && strcmp(w.until_mode, "set") == 0 && w.surge[0] == '\0')
        return errbuf_set(err, "surge_until without a surge: give surge=FACTOR too");
    /* A target is the automatic mode's: set with one, it turns the mode on. */
    if (w.has_level && w.level[0] != '\0' && !w.auto_given)
        v[3] = 1;
    if (db_stmt_exec(self->st[ST_SET], err, "iiiiiiisssis", v[0], v[1], v[2], v[3], v[4], v[5],
                     v[6], w.level[0] ? w.level : NULL, w.surge[0] ? w.surge : NULL, w.until_mode,
                     w.until_in, sku) < 0)
        return RS_ERR;
    out->point = v[0];
    out->level = v[1];
    out->quantity = v[2];
    out->automatic = (int)v[3];
    out->point_min = v[4];
    out->point_max = v[5];
    out->max_per_customer = v[6];
    out->sku = NULL; /* the row's text is gone with the statement's next run */
    out->target = w.level[0] ? strtod(w.level, NULL) : 0;
    out->surge = w.surge[0] ? strtod(w.surge, NULL) : 0;
    if (strcmp(w.until_mode, "set") == 0)
        out->surge_left = (double)w.until_in;
    if (strcmp(w.until_mode, "set") == 0)
        snprintf(until, sizeof(until), "+%llds", w.until_in);
    else
        snprintf(until, sizeof(until), "%s", w.until_mode);
    log_info("event=reorder_set sku=%s reorder_point=%lld reorder_level=%lld "
             "reorder_quantity=%lld reorder_auto=%lld reorder_point_min=%lld "
             "reorder_point_max=%lld max_per_customer=%lld service_level=%s surge=%s "
             "surge_until=%s",
             sku, v[0], v[1], v[2], v[3], v[4], v[5], v[6], w.level[0] ? w.level : "off",
             w.surge[0] ? w.surge : "off", until);
    return RS_OK;
}
