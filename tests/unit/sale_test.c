/* Unit test of the sale's allocation (lib/sale: sale_allocate), without a
 * database: each checkout of a batch, in arrival order, takes its whole quantity
 * or nothing; each sold one is told the stock its own sale left; the one whose
 * sale crossed the reorder point, and only it, is marked; and the reorder-point
 * rule's SQL text is the C expression's (order.h). The statements around it are
 * tested on the real stack (tests/integration/sales.py, checkout_batch.py,
 * reorder.py, idempotency.py). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "order.h"
#include "sale.h"
#include "tap.h"

#define MEMBERS_MAX 8

/* A batch of n members asking quantities q, linked in arrival order. */
static struct sale_member *
batch(struct sale_member m[MEMBERS_MAX], const long long *q, size_t n)
{
    memset(m, 0, MEMBERS_MAX * sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        m[i].quantity = q[i];
        m[i].next = i + 1 < n ? &m[i + 1] : NULL;
    }
    return &m[0];
}

/* Checks every member against want: sold, remaining (when sold), crossed, as
 * "s<remaining>" or "s<remaining>x" (sold, crossed) or "-" (not sold). */
static void
check(const char *name, const struct sale_member *m, size_t n, const char *const *want)
{
    for (size_t i = 0; i < n; i++) {
        char got[32];

        if (m[i].sold)
            snprintf(got, sizeof(got), "s%lld%s", m[i].remaining, m[i].crossed ? "x" : "");
        else
            snprintf(got, sizeof(got), "-%s", m[i].crossed ? "x" : "");
        if (!tap_ok(strcmp(got, want[i]) == 0, "%s: member %zu is %s", name, i + 1, want[i]))
            diag("got %s", got);
    }
}

static void
test_all_fit(void)
{
    struct sale_member m[MEMBERS_MAX];
    const long long q[] = {3, 2, 1};
    const char *want[] = {"s7", "s5", "s4"};

    is_int(sale_allocate(batch(m, q, 3), 10, 0), 6, "all fit: the total is given");
    check("all fit, stock 10", m, 3, want);
}

static void
test_whole_or_nothing(void)
{
    struct sale_member m[MEMBERS_MAX];
    const long long q[] = {3, 3, 2, 1};
    /* 5: the first takes 3, the second's 3 does not fit in 2, the third's 2
     * does (a later, smaller quantity takes what a larger one could not), the
     * fourth finds 0. The third emptied the shelf: it crossed point 0. */
    const char *want[] = {"s2", "-", "s0x", "-"};

    is_int(sale_allocate(batch(m, q, 4), 5, 0), 5, "short: the whole stock is given");
    check("whole or nothing, stock 5", m, 4, want);
}

static void
test_crossing(void)
{
    struct sale_member m[MEMBERS_MAX];
    const long long q1[] = {3, 3, 3};
    const char *want1[] = {"s7", "s4x", "s1"};
    const long long q2[] = {3};
    const char *want2[] = {"s5x"};
    const long long q3[] = {1, 1};
    const char *want3[] = {"s2", "s1"};
    const long long q4[] = {2};
    const char *want4[] = {"s0"};
    const long long q5[] = {2, 5, 1};
    const char *want5[] = {"s2", "-", "s1x"};
    const long long q6[] = {5, 3, 1};
    const char *want6[] = {"s1x", "-", "s0"};

    /* Point 5: 10 -> 7 -> 4 -> 1: the second took it from above 5 to at or below. */
    sale_allocate(batch(m, q1, 3), 10, 5);
    check("point 5, stock 10", m, 3, want1);
    sale_allocate(batch(m, q2, 1), 8, 5);
    check("landing on the point is crossing it", m, 1, want2);
    sale_allocate(batch(m, q3, 2), 3, 5);
    check("already at or below the point: nobody crosses", m, 2, want3);
    sale_allocate(batch(m, q4, 1), 2, -1);
    check("point -1: emptying the shelf crosses nothing", m, 1, want4);
    sale_allocate(batch(m, q5, 3), 4, 1);
    check("the crossing member comes after one not sold", m, 3, want5);
    sale_allocate(batch(m, q6, 3), 6, 2);
    check("the crossing member is the first, not the last sold", m, 3, want6);
}

static void
test_nothing_to_give(void)
{
    struct sale_member m[MEMBERS_MAX];
    const long long q[] = {1, 2};
    const char *want[] = {"-", "-"};

    batch(m, q, 2);
    /* What an earlier attempt (rolled back) set is set again. */
    m[0].sold = m[1].sold = m[0].crossed = 1;
    m[0].remaining = 4;
    is_int(sale_allocate(&m[0], 0, 0), 0, "stock 0: nothing is given");
    check("stock 0", m, 2, want);
    is_int(m[0].remaining, 0, "an unsold member's remaining is 0");
}

static void
test_rule_text(void)
{
    is_str(ORDER_SQL(ORDER_AT_POINT(p.stock, p.reorder_point)), "((p.stock) <= (p.reorder_point))",
           "the reorder-point rule as SQL is the C expression");
    ok(ORDER_AT_POINT(5, 5) && ORDER_AT_POINT(4, 5) && !ORDER_AT_POINT(6, 5),
       "at or below the point, not above it");
}

/* Parses text as a checkout body and its lines: RS_OK or RS_ERR, err. */
static int
parse(const char *text, struct sale_cart *cart, cJSON **json, errbuf *err)
{
    *json = NULL;
    if (json_parse_object(text, strlen(text), json, err) != RS_OK)
        return RS_ERR;
    return sale_cart_parse(*json, cart, err);
}

static void
refused(const char *name, const char *text, const char *says)
{
    struct sale_cart cart;
    cJSON *json;
    errbuf err = {""};

    if (!ok(parse(text, &cart, &json, &err) == RS_ERR && strstr(err.msg, says) != NULL,
            "%s: refused, saying \"%s\"", name, says))
        diag("got: %s", err.msg);
    cJSON_Delete(json);
}

static void
test_cart_parse(void)
{
    struct sale_cart cart;
    cJSON *json;
    errbuf err = {""};
    char many[4096];
    size_t n = 0;

    ok(parse("{\"lines\":[{\"sku\":\"C\",\"quantity\":3},{\"sku\":\"A\",\"quantity\":1},"
             "{\"sku\":\"B\",\"quantity\":1000,\"x\":1}]}",
             &cart, &json, &err) == RS_OK,
       "a cart of three lines parses (%s)", err.msg);
    is_int(cart.n, 3, "three lines");
    ok(strcmp(cart.lines[0].sku, "C") == 0 && cart.lines[0].quantity == 3 &&
           cart.lines[2].quantity == 1000,
       "in the request's order");
    ok(cart.order[0] == 1 && cart.order[1] == 2 && cart.order[2] == 0,
       "order: the lines by sku (A, B, C), the lock order");
    cJSON_Delete(json);

    n += (size_t)snprintf(many, sizeof(many), "{\"lines\":[");
    for (int i = 0; i < SALE_LINES_MAX; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "%s{\"sku\":\"S%02d\",\"quantity\":1}",
                              i ? "," : "", SALE_LINES_MAX - i);
    snprintf(many + n, sizeof(many) - n, "]}");
    ok(parse(many, &cart, &json, &err) == RS_OK && cart.n == SALE_LINES_MAX &&
           strcmp(cart.lines[cart.order[0]].sku, "S01") == 0,
       "50 lines parse, sorted by sku (%s)", err.msg);
    cJSON_Delete(json);
    /* The lock order is the column's (case ignored): "b" between "A" and "C", as
     * another cart naming "B" would have it; bytes would put it last. */
    ok(parse("{\"lines\":[{\"sku\":\"C\",\"quantity\":1},{\"sku\":\"b\",\"quantity\":1},"
             "{\"sku\":\"A\",\"quantity\":1}]}",
             &cart, &json, &err) == RS_OK &&
           strcmp(cart.lines[cart.order[0]].sku, "A") == 0 &&
           strcmp(cart.lines[cart.order[1]].sku, "b") == 0 &&
           strcmp(cart.lines[cart.order[2]].sku, "C") == 0,
       "lines are locked in the sku column's order, case ignored");
    cJSON_Delete(json);
    snprintf(many + n, sizeof(many) - n, ",{\"sku\":\"S99\",\"quantity\":1}]}");
    refused("51 lines", many, "more than 50 lines");

    refused("no lines", "{\"lines\":[]}", "empty");
    refused("a sku twice",
            "{\"lines\":[{\"sku\":\"A\",\"quantity\":1},{\"sku\":\"B\",\"quantity\":1},"
            "{\"sku\":\"A\",\"quantity\":2}]}",
            "named twice");
    refused("quantity 0", "{\"lines\":[{\"sku\":\"A\",\"quantity\":0}]}",
            "lines[0]: quantity must be an integer from 1 to 1000, not 0");
    refused("quantity 1001",
            "{\"lines\":[{\"sku\":\"A\",\"quantity\":1},{\"sku\":\"B\",\"quantity\":1001}]}",
            "lines[1]: quantity must be");
    refused("quantity 1.5", "{\"lines\":[{\"sku\":\"A\",\"quantity\":1.5}]}", "not 1.5");
    refused("no quantity", "{\"lines\":[{\"sku\":\"A\"}]}", "must have sku and quantity");
    refused("no sku", "{\"lines\":[{\"quantity\":1}]}", "must have sku and quantity");
    refused("an empty sku", "{\"lines\":[{\"sku\":\"\",\"quantity\":1}]}",
            "sku must be a string of 1 to 32");
    refused("a line not an object", "{\"lines\":[\"A\"]}", "lines[0] must be an object");
    refused("lines an object", "{\"lines\":{\"sku\":\"A\",\"quantity\":1}}",
            "lines must be an array");
    refused("lines null", "{\"lines\":null}", "lines must be an array");
    refused("lines and sku", "{\"lines\":[{\"sku\":\"A\",\"quantity\":1}],\"sku\":\"A\"}",
            "not both");
    refused("lines and quantity", "{\"lines\":[{\"sku\":\"A\",\"quantity\":1}],\"quantity\":1}",
            "not both");
}

/* The Restock-Customer header's text: 1..64 visible ASCII characters. */
static void
test_customer_check(void)
{
    static const char *const bad[] = {"", "al ice", "tab\there", "caf\xc3\xa9", "del\x7f"};
    char longest[SALE_CUSTOMER_MAX + 2];
    errbuf err = {{0}};

    is_int(sale_customer_check("alice", &err), RS_OK, "customer: a plain id");
    is_int(sale_customer_check("~!#$%&'*+-.^_`|", &err), RS_OK,
           "customer: any visible ASCII punctuation");
    memset(longest, 'x', SALE_CUSTOMER_MAX);
    longest[SALE_CUSTOMER_MAX] = '\0';
    is_int(sale_customer_check(longest, &err), RS_OK, "customer: 64 characters");
    longest[SALE_CUSTOMER_MAX] = 'x', longest[SALE_CUSTOMER_MAX + 1] = '\0';
    is_int(sale_customer_check(longest, &err), RS_ERR, "customer: 65 characters refused");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err.msg[0] = '\0';
        is_int(sale_customer_check(bad[i], &err), RS_ERR, "customer: a bad one refused");
        ok(strstr(err.msg, "Restock-Customer") != NULL, "and the error names the header");
    }
}

int
main(void)
{
    test_all_fit();
    test_whole_or_nothing();
    test_crossing();
    test_nothing_to_give();
    test_rule_text();
    test_cart_parse();
    test_customer_check();
    return done_testing();
}
