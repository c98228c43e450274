/* stock_policy: a product's reorder point and order-up-to level from the cycle
 * service level the operator states (issue 23; docs/design.md §3.7). Pure
 * arithmetic, no I/O: the worker feeds it what it measured (the demand's mean and
 * variance per second, the lead time's mean and variance) and the target.
 *
 * The textbook (s, S) policy under continuous review: demand over a lead time has
 * mean μ = d̄·L̄ and variance σ² = L̄·σ_d² + d̄²·σ_L² (demand per second
 * independent from second to second, lead times independent of demand); the
 * reorder point s is the stock at which an order leaves the probability nearest
 * the target that the lead time's demand is served from it, P(D_L ≤ s) ≈ CSL.
 * With a normal D_L that is s = μ + SS, SS = z·σ, z the standard normal quantile
 * of the target (the formula of Silver, Pyke & Thomas and of Chopra & Meindl).
 * A normal law is a poor fit for a product that sells a few dozen units per lead
 * time (it is symmetric and continuous; the demand is neither: its quantile was
 * 1 to 4 units low for a bursty demand of 60), so below STOCK_POLICY_NORMAL_MIN
 * units per lead time the point comes from a discrete law of the same mean and
 * variance: Poisson when σ² ≤ μ, else the negative binomial (the usual choice for
 * overdispersed counts, and the exact law of Poisson demand over a gamma lead
 * time). Above it, the normal law with a count's continuity correction,
 * P(D_L ≤ k) = Φ((k + ½ − μ)/σ).
 *
 * The point is a whole number, so P(D_L ≤ s) moves in steps (1.2 points of
 * service a unit at 60 units a lead time and 90 %): of the two points either side
 * of the target, the one whose probability is nearer it. Always the one above
 * would serve more than asked by half a step on average (a stated 90 % served
 * 91 to 93 % in tests/sim/service_level); so a target is met on average, not as a
 * floor. */
#ifndef RESTOCK_STOCK_POLICY_H
#define RESTOCK_STOCK_POLICY_H

#include "errbuf.h"

/* Mean units per lead time from which the normal law is used (below it the
 * discrete law's first term, e^−μ at most, is far from underflowing). */
#define STOCK_POLICY_NORMAL_MIN 500.0

/* The targets accepted: a cycle service level strictly between these. */
#define STOCK_POLICY_CSL_MIN 0.5
#define STOCK_POLICY_CSL_MAX 0.9999

enum stock_policy_law { STOCK_POLICY_NORMAL, STOCK_POLICY_POISSON, STOCK_POLICY_NEGBIN };

/* What the policy is computed from. Times in seconds. */
struct stock_policy_input {
    double csl;          /* the target: probability of a cycle without a stock-out */
    double demand_mean;  /* units per second */
    double demand_var;   /* variance of the units sold in one second */
    double lead_mean;    /* seconds from the order to the delivery */
    double lead_var;     /* their variance, seconds² */
    double cover;        /* seconds of demand an order covers beyond the point */
    long long quantity;  /* the smallest order (reorder_quantity), at least 1 */
    long long point_min; /* the operator's bounds of the point */
    long long point_max;
};

/* The policy, with what it came from, for the log and restockctl. */
struct stock_policy {
    enum stock_policy_law law;
    double z;           /* the target's standard normal quantile */
    double lead_demand; /* μ */
    double lead_sd;     /* σ */
    double safety;      /* s − μ before the bounds: about z·σ */
    long long point;    /* s, within point_min..point_max */
    long long level;    /* S: s + max(quantity, ⌈d̄·cover⌉) */
};

/* The standard normal quantile of p (0 < p < 1): Φ⁻¹(p), to about 1e-12, found
 * on libm's erfc by bisection. NAN outside (0, 1). */
double stock_policy_z(double p);

/* The standard normal distribution function Φ(x). */
double stock_policy_phi(double x);

/* The normal formula alone: SS = z·√(L̄·σ_d² + d̄²·σ_L²) for the target csl, in
 * the units of the inputs (any one time unit); *lead_sd gets the root. The
 * reorder point of the textbook is d̄·L̄ + SS. */
double stock_policy_safety(double csl, double demand_mean, double demand_var, double lead_mean,
                           double lead_var, double *lead_sd);

/* The smallest k with P(X ≤ k) ≥ p for X Poisson (var ≤ mean) or negative
 * binomial (var > mean) of that mean and variance; -1 when the law's tail is too
 * long to walk (more than ten million terms). */
long long stock_policy_discrete_quantile(double mean, double var, double p,
                                         enum stock_policy_law *law);

/* The policy of in into *out. RS_ERR naming the input that is out of range
 * (a target outside the bounds above, a negative or non-finite mean, variance
 * or cover, a quantity below 1, bounds that cross). */
int stock_policy_compute(const struct stock_policy_input *in, struct stock_policy *out,
                         errbuf *err);

/* "normal", "poisson", "negative_binomial": one word, for key=value logs. */
const char *stock_policy_law_name(enum stock_policy_law law);

#endif
