/* stock_policy: reorder point and order-up-to level from a service level (see
 * stock_policy.h). */
#include "config.h"

#include <math.h>

#include "stock_policy.h"

/* The discrete quantile walks the law's terms one by one: this many at most. */
#define STOCK_POLICY_TERMS_MAX 10000000LL

double
stock_policy_phi(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

/* Bisection rather than a rational approximation: no table of magic constants to
 * get wrong, exact to the last bits erfc gives, and fast enough for a sweep (a
 * hundred halvings of [-40, 40]). */
double
stock_policy_z(double p)
{
    double lo = -40.0, hi = 40.0;

    if (!(p > 0.0 && p < 1.0))
        return NAN;
    for (int i = 0; i < 200 && hi - lo > 1e-13; i++) {
        double mid = 0.5 * (lo + hi);

        if (stock_policy_phi(mid) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

double
stock_policy_safety(double csl, double demand_mean, double demand_var, double lead_mean,
                    double lead_var, double *lead_sd)
{
    double sd = sqrt(lead_mean * demand_var + demand_mean * demand_mean * lead_var);

    if (lead_sd != NULL)
        *lead_sd = sd;
    return stock_policy_z(csl) * sd;
}

/* Walks the discrete law of that mean and variance (Poisson when var <= mean,
 * else the negative binomial) to the smallest k with P(X <= k) >= p: k, with
 * P(X <= k) in *at and P(X <= k - 1) in *below (0 for k = 0); -1 when the law's
 * tail is too long to walk. */
static long long
stock_policy_discrete_walk(double mean, double var, double p, enum stock_policy_law *law,
                           double *at, double *below)
{
    double term, cdf;
    double q = 0.0, r = 0.0; /* the negative binomial's */
    long long k;

    *at = 1.0;
    *below = 0.0;
    if (mean <= 0.0) {
        *law = STOCK_POLICY_POISSON;
        return 0;
    }
    if (var > mean * (1.0 + 1e-9)) {
        /* Mean r·q/(1−q), variance r·q/(1−q)²: 1−q = mean/var, r = mean²/(var−mean).
         * P(0) = (1−q)^r, P(k+1) = P(k)·q·(k+r)/(k+1). */
        *law = STOCK_POLICY_NEGBIN;
        q = 1.0 - mean / var;
        r = mean * mean / (var - mean);
        term = exp(r * log1p(-q));
    } else {
        /* P(0) = e^−μ, P(k+1) = P(k)·μ/(k+1). */
        *law = STOCK_POLICY_POISSON;
        term = exp(-mean);
    }
    /* A term that underflows to 0 would never add up to p. */
    if (!(term > 0.0))
        return -1;
    cdf = term;
    for (k = 0; cdf < p; k++) {
        if (k >= STOCK_POLICY_TERMS_MAX)
            return -1;
        if (*law == STOCK_POLICY_NEGBIN)
            term *= q * ((double)k + r) / ((double)k + 1.0);
        else
            term *= mean / ((double)k + 1.0);
        *below = cdf;
        cdf += term;
        /* Rounding may leave the sum a hair under p forever once the terms
         * vanish: the quantile is then where they vanished. */
        if (term < 1e-300)
            break;
    }
    *at = cdf;
    return k;
}

long long
stock_policy_discrete_quantile(double mean, double var, double p, enum stock_policy_law *law)
{
    double at, below;

    return stock_policy_discrete_walk(mean, var, p, law, &at, &below);
}

/* Of k - 1 and k, the one whose probability of a cycle served is nearer p
 * (k, the smallest meeting p, on a tie): at is k's, below k - 1's. */
static long long
stock_policy_nearest(long long k, double p, double at, double below)
{
    return k > 0 && p - below < at - p ? k - 1 : k;
}

int
stock_policy_compute(const struct stock_policy_input *in, struct stock_policy *out, errbuf *err)
{
    double mu, sd, cover_units;
    long long point, extra;

    if (!(in->csl > STOCK_POLICY_CSL_MIN && in->csl < STOCK_POLICY_CSL_MAX))
        return errbuf_set(err, "the service level must be above %g and below %g (got %g)",
                          STOCK_POLICY_CSL_MIN, STOCK_POLICY_CSL_MAX, in->csl);
    if (!(isfinite(in->demand_mean) && in->demand_mean >= 0.0 && isfinite(in->demand_var) &&
          in->demand_var >= 0.0))
        return errbuf_set(err, "the demand's mean and variance must be finite and not negative");
    if (!(isfinite(in->lead_mean) && in->lead_mean >= 0.0 && isfinite(in->lead_var) &&
          in->lead_var >= 0.0))
        return errbuf_set(err, "the lead time's mean and variance must be finite and not negative");
    if (!(isfinite(in->cover) && in->cover >= 0.0))
        return errbuf_set(err, "the cover must be finite and not negative");
    if (in->quantity < 1)
        return errbuf_set(err, "the smallest order must be at least 1 unit");
    if (in->point_min < 0 || in->point_max < in->point_min)
        return errbuf_set(err, "the point's bounds must satisfy 0 <= min <= max");

    mu = in->demand_mean * in->lead_mean;
    out->z = stock_policy_z(in->csl);
    out->lead_demand = mu;
    (void)stock_policy_safety(in->csl, in->demand_mean, in->demand_var, in->lead_mean, in->lead_var,
                              &sd);
    out->lead_sd = sd;
    point = -1;
    if (mu < STOCK_POLICY_NORMAL_MIN) {
        double at, below;

        point = stock_policy_discrete_walk(mu, sd * sd, in->csl, &out->law, &at, &below);
        if (point >= 0)
            point = stock_policy_nearest(point, in->csl, at, below);
    }
    if (point < 0 && sd > 0.0) {
        /* Large counts (or a tail too long to walk): the normal law, with the
         * continuity correction of a count, P(D_L <= k) = Φ((k + ½ − μ)/σ). */
        double k = ceil(mu + out->z * sd - 0.5 - 1e-9);

        out->law = STOCK_POLICY_NORMAL;
        point = stock_policy_nearest((long long)k, in->csl, stock_policy_phi((k + 0.5 - mu) / sd),
                                     stock_policy_phi((k - 0.5 - mu) / sd));
    } else if (point < 0) {
        out->law = STOCK_POLICY_NORMAL; /* no spread: what one lead time sells */
        point = (long long)ceil(mu - 1e-9);
    }
    if (point < 0)
        point = 0;
    out->safety = (double)point - mu;
    if (point < in->point_min)
        point = in->point_min;
    if (point > in->point_max)
        point = in->point_max;
    out->point = point;
    /* A cover beyond any stock a shop holds is clamped rather than overflowed. */
    cover_units = fmin(ceil(in->demand_mean * in->cover - 1e-9), 1e12);
    extra = cover_units > (double)in->quantity ? (long long)cover_units : in->quantity;
    out->level = point + extra;
    return RS_OK;
}

const char *
stock_policy_law_name(enum stock_policy_law law)
{
    switch (law) {
    case STOCK_POLICY_NORMAL:
        return "normal";
    case STOCK_POLICY_POISSON:
        return "poisson";
    case STOCK_POLICY_NEGBIN:
        return "negative_binomial";
    }
    return "unknown";
}
