/* Unit test of stock_policy: the normal quantile, the safety-stock formula
 * against published worked examples (each fixture names its source), the discrete
 * quantiles for small counts against sums done by hand, and the policy's bounds,
 * cover and refusals. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "stock_policy.h"
#include "tap.h"

static int
near(double got, double want, double tolerance)
{
    return fabs(got - want) <= tolerance;
}

static void
test_z(void)
{
    /* Φ⁻¹ to 9 decimals, as tables and NORM.S.INV give it. */
    ok(near(stock_policy_z(0.5), 0.0, 1e-9), "z(0.5) = 0");
    ok(near(stock_policy_z(0.90), 1.281551566, 1e-9), "z(0.90) = 1.281551566");
    ok(near(stock_policy_z(0.95), 1.644853627, 1e-9), "z(0.95) = 1.644853627");
    ok(near(stock_policy_z(0.99), 2.326347874, 1e-9), "z(0.99) = 2.326347874");
    ok(near(stock_policy_z(0.05), -1.644853627, 1e-9), "z(0.05) = -z(0.95)");
    ok(near(stock_policy_phi(stock_policy_z(0.97)), 0.97, 1e-12), "Φ(z(p)) = p");
    ok(isnan(stock_policy_z(0.0)) && isnan(stock_policy_z(1.0)) && isnan(stock_policy_z(NAN)),
       "no quantile at 0, 1 or NaN");
}

/* Chopra & Meindl, Supply Chain Management: Strategy, Planning, and Operation,
 * chapter "Managing Uncertainty in a Supply Chain: Safety Inventory", the example
 * "Impact of lead time uncertainty on safety inventory" (Dell): daily demand D =
 * 2,500, σ_D = 500, mean lead time L = 7 days, CSL = 0.90; its table gives σ of
 * the lead time's demand and the safety inventory for s_L = 6 down to 0 days. */
static void
test_chopra_meindl(void)
{
    static const struct {
        double s_l, sigma, safety;
    } table[] = {
        {6, 15058, 19298}, {5, 12570, 16109}, {4, 10087, 12927}, {3, 7616, 9760},
        {2, 5172, 6628},   {1, 2828, 3625},   {0, 1323, 1695},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        double sd, ss = stock_policy_safety(0.90, 2500, 500.0 * 500.0, 7,
                                            table[i].s_l * table[i].s_l, &sd);

        ok(near(sd, table[i].sigma, 0.5) && near(ss, table[i].safety, 0.5),
           "Chopra & Meindl (Dell), s_L = %g days: σ_L %.0f, ss %.0f (the book: %.0f, %.0f)",
           table[i].s_l, sd, ss, table[i].sigma, table[i].safety);
    }
}

/* Stevenson, Operations Management, chapter "Inventory Management", the reorder
 * point example with variable demand: a restaurant uses 50 jars of a sauce a week
 * on average, σ 3 jars a week, lead time 2 weeks, a 10% risk of a stock-out
 * during lead time: ROP = 50·2 + 1.28·√2·3 = 105.43, 106 jars. The book's z is
 * the table's 1.28; the exact one moves the point by 0.007. */
static void
test_stevenson(void)
{
    double sd, ss = stock_policy_safety(0.90, 50, 9, 2, 0, &sd);

    ok(near(100 + ss, 105.43, 0.01), "Stevenson (sauce jars): ROP %.2f (the book: 105.43)",
       100 + ss);
    ok(ceil(100 + ss) == 106, "and rounded up, 106 jars");
}

/* Heizer & Render, Operations Management, the problem of the Hardware Warehouse
 * (SKU M4389): demand constant at 5 units a day, lead time normal with mean 3 days
 * and σ 2 days, 95% service level: σ of the lead time's demand = 5·2 = 10, safety
 * stock 1.65·10 = 16.5, ROP 15 + 16.5 = 31.5 (the table's z 1.65 for 1.6449: within
 * 0.006·σ). */
static void
test_heizer_render(void)
{
    double sd, ss = stock_policy_safety(0.95, 5, 0, 3, 4, &sd);

    ok(near(sd, 10, 1e-9), "Heizer & Render (M4389): σ of lead time demand 10");
    ok(near(ss, 16.5, 10 * 0.006), "safety stock %.2f (the book, z 1.65: 16.5)", ss);
    ok(near(15 + ss, 31.5, 10 * 0.006), "ROP %.2f (the book: 31.5)", 15 + ss);
}

static void
test_discrete(void)
{
    enum stock_policy_law law;

    /* Poisson(2): cumulative 0.135, 0.406, 0.677, 0.857, 0.947, 0.983. */
    is_int(stock_policy_discrete_quantile(2, 2, 0.95, &law), 5, "Poisson(2) at 0.95: 5");
    ok(law == STOCK_POLICY_POISSON, "Poisson when the variance is the mean");
    is_int(stock_policy_discrete_quantile(2, 2, 0.94, &law), 4, "Poisson(2) at 0.94: 4");
    is_int(stock_policy_discrete_quantile(2, 1, 0.95, &law), 5,
           "under-dispersed counts use Poisson too");
    /* Negative binomial of mean 2, variance 4: r = 2, q = 1/2, P(k) = (k+1)/2^(k+2):
     * cumulative 0.25, 0.5, 0.6875, 0.8125, 0.8906, 0.9375, 0.9648. */
    is_int(stock_policy_discrete_quantile(2, 4, 0.95, &law), 6, "NB(mean 2, var 4) at 0.95: 6");
    ok(law == STOCK_POLICY_NEGBIN, "negative binomial when the variance is larger");
    is_int(stock_policy_discrete_quantile(2, 4, 0.9375, &law), 5, "at 0.9375 exactly: 5");
    is_int(stock_policy_discrete_quantile(0, 0, 0.99, &law), 0, "nothing sells: point 0");
}

static struct stock_policy_input
input(double csl, double rate, double var, double lead, double lead_var)
{
    return (struct stock_policy_input){.csl = csl,
                                       .demand_mean = rate,
                                       .demand_var = var,
                                       .lead_mean = lead,
                                       .lead_var = lead_var,
                                       .cover = 0,
                                       .quantity = 10,
                                       .point_min = 0,
                                       .point_max = 1000000};
}

static void
test_compute(void)
{
    struct stock_policy p;
    struct stock_policy_input in;
    errbuf err;

    /* 10 units/s, Poisson per second, 100 s lead time, no lead variance: μ = 1000,
     * σ = √1000 = 31.623, the normal law with the continuity correction: the
     * smallest k with Φ((k + ½ − 1000)/σ) ≥ 0.95 is ⌈1000 + 52.015 − ½⌉ = 1052
     * (0.951562; 1051 gives 0.948298, farther). */
    in = input(0.95, 10, 10, 100, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_OK, "a policy is computed");
    ok(p.law == STOCK_POLICY_NORMAL, "many units per lead time: the normal law");
    is_int(p.point, 1052, "s = the smallest k with Phi((k + 1/2 - mu) / sigma) >= CSL");
    ok(near(p.safety, 52, 1e-9), "its safety stock is s - mu");
    is_int(p.level, 1062, "S = s + the smallest order when the cover is shorter");
    in.cover = 60;
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.level == 1652,
       "S = s + a minute of demand with a 60 s cover");
    /* At 0.9 the smallest is 1041, Φ((1041.5 − 1000)/σ) = 0.905298, and 1040's
     * Φ((1040.5 − 1000)/σ) = 0.899854 is nearer. */
    in = input(0.90, 10, 10, 100, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.point == 1040,
       "at 90%%: 1040, the nearer of 1040 and 1041");
    /* A count of 300 a lead time is still a discrete law's. */
    in = input(0.95, 3, 3, 100, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.law == STOCK_POLICY_POISSON,
       "300 units per lead time: Poisson's");

    /* 0.02 unit/s over 100 s: μ = 2, Poisson: P(X ≤ 3) = 0.857, P(X ≤ 4) = 0.947,
     * P(X ≤ 5) = 0.983. At 0.95, 4 is nearer than 5 (the smallest meeting it). */
    in = input(0.95, 0.02, 0.02, 100, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.law == STOCK_POLICY_POISSON &&
           p.point == 4,
       "few units per lead time: Poisson's, the point whose level is nearest: 4 (94.7%%)");
    in.csl = 0.90;
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.point == 3,
       "at 90%%: 3 (85.7%%, nearer than 4's 94.7%%)");
    in.csl = 0.95;
    in.point_min = 8;
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.point == 8, "raised to the minimum");
    in.point_min = 0;
    in.point_max = 3;
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.point == 3 && p.level == 13,
       "lowered to the maximum, and S follows it");

    in = input(0.99, 0, 0, 40, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_OK && p.point == 0 && p.level == 10,
       "a product that does not sell: point 0, the smallest order");

    /* A higher target never lowers the point, in either law. */
    for (double rate = 0.3; rate < 100; rate *= 100) {
        long long last = -1;
        int rising = 1;

        for (double csl = 0.6; csl < 0.999; csl += 0.01) {
            in = input(csl, rate, 3 * rate, 120, 400);
            rising &= stock_policy_compute(&in, &p, &err) == RS_OK && p.point >= last;
            last = p.point;
        }
        ok(rising, "the point rises with the target (%s law)", stock_policy_law_name(p.law));
    }

    in = input(1.0, 1, 1, 1, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_ERR && strstr(err.msg, "service level"),
       "a target of 100%% is refused: %s", err.msg);
    in = input(0.95, -1, 1, 1, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_ERR, "a negative demand is refused");
    in = input(0.95, 1, NAN, 1, 0);
    ok(stock_policy_compute(&in, &p, &err) == RS_ERR, "a NaN variance is refused");
    in = input(0.95, 1, 1, 1, 0);
    in.point_min = 5;
    in.point_max = 4;
    ok(stock_policy_compute(&in, &p, &err) == RS_ERR && strstr(err.msg, "bounds"),
       "crossed bounds are refused");
    in = input(0.95, 1, 1, 1, 0);
    in.quantity = 0;
    ok(stock_policy_compute(&in, &p, &err) == RS_ERR, "an order of 0 is refused");
    is_str(stock_policy_law_name(STOCK_POLICY_NEGBIN), "negative_binomial", "the laws' names");
}

int
main(void)
{
    test_z();
    test_chopra_meindl();
    test_stevenson();
    test_heizer_render();
    test_discrete();
    test_compute();
    return done_testing();
}
