/* reorder: each product's reorder policy (docs/design.md §3.6): its settings
 * (product.reorder_*), the sales rate measured from the units the checkouts count
 * and the holds keep (product.sold_total + held: a hold is demand until it ends
 * unsold; sampled by the worker into product_demand), its factory's
 * lead time (order.c), the suggested point, and the automatic mode that moves the
 * point and the level within the operator's bounds. A reorder object keeps its
 * statements on the caller's db: one per connection, used by its thread only. */
#ifndef RESTOCK_REORDER_H
#define RESTOCK_REORDER_H

#include "conf.h"
#include "db.h"
#include "errbuf.h"
#include "order.h"
#include "stock_policy.h"

typedef struct reorder reorder;

/* cf, conn and orders stay the caller's (orders on conn). */
reorder *reorder_new(const conf *cf, db *conn, order *orders, errbuf *err);
void reorder_destroy(reorder **self_p);

/* The worker's sweep: samples every product's units sold into its moving
 * average (at most once a second), moves the point and level of automatic
 * products (each change logged, event=reorder_auto, with its inputs), then opens
 * the orders due (order_each_due, order_reorder). Returns how many outbox events
 * it wrote (the caller sweeps the outbox after it), or RS_ERR. */
int reorder_sweep(reorder *self, errbuf *err);

/* A product as `restockctl products` shows it; sku valid during the call. */
struct reorder_line {
    const char *sku;
    long long stock, point, level, quantity, point_min, point_max;
    long long held;             /* units in active holds, off the shelf (not in stock) */
    long long max_per_customer; /* units per customer over limit_window; 0: no limit */
    int automatic;
    int has_factory;
    long long on_order;        /* the unfinished order's quantity, 0: none */
    double rate;               /* units per minute (moving average); 0 until measured */
    double lead_p50, lead_p90; /* seconds from sending to callback */
    int lead_orders;           /* how many orders measured them; 0: lead_time_assumed */
    long long suggested;
    double sellout; /* seconds until the stock runs out at this rate; -1: never */
    /* The service level policy (docs/design.md §3.7). */
    double target;                  /* service_level; 0: none */
    double surge, surge_left;       /* the announced surge's factor and seconds left; 0: none */
    double demand_mean, demand_var; /* units asked for per second, over demand_window */
    double lead_mean, lead_var;     /* seconds, seconds² (0 with fewer than two orders) */
    struct stock_policy policy;     /* computed when target is set: suggested = its point */
    /* The level achieved over service_window (docs/design.md §3.7). */
    double fill_rate;            /* units served / units asked for; -1: none asked */
    long long cycles, stockouts; /* order cycles ended, and those with a stock-out */
};

/* Calls fn for every product, by sku. RS_OK or RS_ERR. */
int reorder_each(reorder *self, void (*fn)(void *arg, const struct reorder_line *line), void *arg,
                 errbuf *err);

/* Calls fn for every product with a service level target, a fill rate (units
 * were asked for) or order cycles in service_window: the metrics' view, one
 * query for the products and one for the cycles (no lead times, no policy).
 * RS_OK or RS_ERR. */
typedef void (*reorder_service_fn)(void *arg, const struct reorder_line *line);
int reorder_report_service(reorder *self, reorder_service_fn fn, void *arg, errbuf *err);

/* Sets the reorder settings of sku from "key=value" words (reorder_point,
 * reorder_level, reorder_quantity, reorder_auto, reorder_point_min,
 * reorder_point_max, max_per_customer; service_level as a percentage or a
 * fraction, "off" for none: setting one turns reorder_auto on unless the words
 * say otherwise; surge=FACTOR with surge_until=TIME, an RFC 3339 UTC time or
 * +N[smhd] from now, "surge=off" ends it), all or none, after checking each value and the whole.
 * The new settings are copied to *out. RS_ERR with a one-line reason for an
 * unknown sku, an unknown key, a value out of range, or a database failure. */
int reorder_set(reorder *self, const char *sku, int argc, char **argv, struct reorder_line *out,
                errbuf *err);

/* The settings of sku as reorder_set copies them (no rates, no lead times):
 * 1 and *out filled (sku NULL), 0 when there is no such product, RS_ERR. */
int reorder_get(reorder *self, const char *sku, struct reorder_line *out, errbuf *err);

/* The suggested reorder point: the units expected to sell during the lead time
 * (rate per minute x lead seconds / 60), plus safety percent of them, rounded
 * up; 0 when nothing sells. */
long long reorder_suggest(double rate_per_min, double lead_seconds, long safety_pct);

/* A product's demand as measured (product_demand's columns): units asked for per
 * second and their variance per second, exponential averages over demand_window;
 * the seconds they have seen (up to the window); the variance's open span. */
struct reorder_demand {
    double mean, var, seconds;
    double span_dev, span_seconds;
};

/* Adds a sample, units asked for over age seconds, to d: the mean at once, the
 * variance when the open span reaches span seconds (0: each sample closes it);
 * surge: the announced factor while it lasts (0 or 1: none). Pure arithmetic. */
void reorder_demand_sample(struct reorder_demand *d, long long units, double age, long window,
                           double surge, double span);

/* The size of an automatic order: what sells during the lead time, and at
 * least quantity (the product's reorder_quantity), so that a delivery lifts the
 * stock back above the point. */
long long reorder_auto_size(double rate_per_min, double lead_seconds, long long quantity);

#endif
