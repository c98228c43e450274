/* restockctl: the operator's command line. It reads the configuration, the spool
 * and the database directly, so that it works while the worker is stopped. Exit
 * status 0 on success; otherwise a one-line reason on stderr. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <time.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "admin_account.h"
#include "api_client.h"
#include "audit.h"
#include "change.h"
#include "conf.h"
#include "factory_msg.h"
#include "db.h"
#include "dlq.h"
#include "errbuf.h"
#include "hold.h"
#include "ident.h"
#include "migrate.h"
#include "order.h"
#include "queues.h"
#include "reorder.h"
#include "spool.h"
#include "timetext.h"
#include "utf8.h"
#include "webhook_endpoint.h"
#include "webhook_msg.h"

/* Who runs this restockctl, for the audit trail: the real user, read at start
 * (before any drop to the spool's owner, which changes the real uid), and
 * where from ("local", with the terminal). */
static char ctl_actor[AUDIT_ACTOR_MAX + 1], ctl_source[AUDIT_SOURCE_MAX + 1];
static const struct audit_who ctl_who = {ctl_actor, ctl_source};

struct ctl_command {
    const char *words; /* the command as typed, e.g. "db migrate" */
    const char *usage; /* its arguments */
    const char *doc;
    int (*run)(conf *cf, int argc, char **argv, errbuf *err);
};

static int
ctl_config_defaults(conf *cf, int argc, char **argv, errbuf *err)
{
    conf_write_defaults(stdout);
    return RS_OK;
}

static int
ctl_config_show(conf *cf, int argc, char **argv, errbuf *err)
{
    printf("# configuration file: %s\n", conf_path(cf) ? conf_path(cf) : "(none: defaults)");
    conf_write_effective(cf, stdout);
    return RS_OK;
}

static int
ctl_db_migrate(conf *cf, int argc, char **argv, errbuf *err)
{
    const char *dir = RESTOCK_SQLDIR;
    db *conn;
    int applied;

    if (argc == 2 && strcmp(argv[0], "--dir") == 0)
        dir = argv[1];
    else if (argc != 0)
        return errbuf_set(err, "usage: restockctl db migrate [--dir FOLDER]");
    conn = db_new(cf, DB_MULTI_STATEMENTS);
    if (conn == NULL)
        return errbuf_set(err, "out of memory");
    applied = migrate_apply(conn, dir, stdout, err);
    db_destroy(&conn);
    if (applied < 0)
        return RS_ERR;
    printf("%d migration%s applied, schema up to date\n", applied, applied == 1 ? "" : "s");
    return RS_OK;
}

static void
ctl_time(time_t t, char *out, size_t size)
{
    if (t == 0)
        snprintf(out, size, "-"); /* no such time (never sent, not dead) */
    else
        timetext_local(t, out, size);
}

/* Run as root, restockctl acts on the spool as the spool's owner, as Postfix's
 * postsuper does: the owner (the worker's user) can plant symlinks and files in
 * the spool, and root following them would write wherever they point. It
 * switches groups and user for good (setgid, initgroups, setuid), after the
 * configuration has been read (root:restock 0640). A spool owned by root that
 * nobody else may write is used as root (nobody could plant anything there); one
 * owned by root but writable by a group or others is refused. Not root: nothing
 * to do, the kernel checks what the user may. */
static int
ctl_drop_to_spool_owner(conf *cf, errbuf *err)
{
    const char *dir = conf_str(cf, "spool_dir");
    struct passwd *pw;
    struct stat st;
    int fd, rc;

    if (geteuid() != 0)
        return RS_OK;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errbuf_set(err,
                          "spool %s: %s (run as root, restockctl acts only on an existing "
                          "spool, as its owner)",
                          dir, strerror(errno));
    rc = fstat(fd, &st);
    close(fd);
    if (rc < 0)
        return errbuf_set(err, "spool %s: %s", dir, strerror(errno));
    if (st.st_uid == 0) {
        if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
            return errbuf_set(err,
                              "spool %s belongs to root but others may write it: refusing to "
                              "act as root on it (give it to the worker's user)",
                              dir);
        return RS_OK;
    }
    pw = getpwuid(st.st_uid);
    errno = 0;
    if (setgid(st.st_gid) < 0 ||
        (pw != NULL ? initgroups(pw->pw_name, st.st_gid) : setgroups(1, &st.st_gid)) < 0 ||
        setuid(st.st_uid) < 0)
        return errbuf_set(err, "spool %s: cannot become its owner (uid %ld, gid %ld): %s", dir,
                          (long)st.st_uid, (long)st.st_gid, strerror(errno));
    /* For good: a process that could become root again could be made to. */
    if (setuid(0) == 0 || geteuid() == 0)
        return errbuf_set(err, "spool %s: the switch to its owner did not hold", dir);
    return RS_OK;
}

/* Opens the spool queues, which restockctl reads directly (the worker may be
 * stopped); as root, as the spool's owner. */
static int
ctl_open_queues(conf *cf, spool *queues[QUEUES_COUNT], errbuf *err)
{
    if (ctl_drop_to_spool_owner(cf, err) != RS_OK)
        return RS_ERR;
    return dlq_open(conf_str(cf, "spool_dir"), queues, err);
}

/* Opens the database and the orders on it; ctl_close_orders closes both. */
static int
ctl_open_orders(conf *cf, db **conn, order **orders, errbuf *err)
{
    *orders = NULL;
    *conn = db_new(cf, 0);
    if (*conn == NULL)
        return errbuf_set(err, "out of memory");
    *orders = order_new(*conn, err);
    if (*orders == NULL) {
        db_destroy(conn);
        return RS_ERR;
    }
    return RS_OK;
}

static void
ctl_close_orders(db **conn, order **orders)
{
    order_destroy(orders);
    db_destroy(conn);
}

/* " open 2" after "orders:", which only a status with orders prints. */
static void
ctl_status_line(void *arg, const char *status, long long count)
{
    int *printed = arg;

    printf("%s %s %lld", *printed ? "" : "orders:", status, count);
    *printed = 1;
}

/* Text that came from outside (a factory's answer, a relay's reply) as the
 * terminal may show it: valid UTF-8, control characters as escapes. Rows and
 * files written before restock sanitized such text may still hold raw bytes.
 * "-" for NULL. */
static const char *
ctl_safe(const char *s, char *out, size_t size)
{
    if (s == NULL)
        return "-";
    utf8_sanitize(s, strlen(s), out, size);
    return out;
}

#define CTL_SAFE_SIZE UTF8_SANITIZED_SIZE(4000)

/* The first deferred message's last error, for status (the walk stops there). */
static int
ctl_status_waiting(void *arg, const char *name, const spool_msg *m, const char *problem)
{
    char *out = arg;

    (void)name;
    (void)problem;
    if (m == NULL || spool_msg_last_error(m) == NULL || *spool_msg_last_error(m) == '\0')
        return 0;
    ctl_safe(spool_msg_last_error(m), out, CTL_SAFE_SIZE);
    return 1;
}

static int
ctl_status(conf *cf, int argc, char **argv, errbuf *err)
{
    spool *queues[QUEUES_COUNT];
    db *conn;
    order *orders;
    int rc = RS_OK, statuses, printed = 0;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl status");
    if (ctl_open_queues(cf, queues, err) != RS_OK)
        return RS_ERR;
    printf("%-8s", "queue");
    for (int s = 0; s < SPOOL_NSTATES; s++)
        printf(" %9s", spool_state_name((enum spool_state)s));
    printf("  oldest waiting\n");
    for (int i = 0; i < QUEUES_COUNT && rc == RS_OK; i++) {
        time_t oldest = 0;
        char when[32];
        printf("%-8s", queues_names[i]);
        for (int s = 0; s < SPOOL_NSTATES; s++) {
            long n = spool_count(queues[i], (enum spool_state)s, err);
            if (n < 0) {
                rc = RS_ERR;
                break;
            }
            printf(" %9ld", n);
        }
        if (rc == RS_OK && spool_oldest_waiting(queues[i], &oldest, err) != RS_OK)
            rc = RS_ERR;
        ctl_time(oldest, when, sizeof(when));
        printf("  %s\n", oldest ? when : "none");
    }
    for (int i = 0; i < QUEUES_COUNT && rc == RS_OK; i++) {
        /* Webhooks wait for what the operator must fix (no webhook_key, a
         * disabled or failing endpoint): the oldest deferred one says why. */
        char last[CTL_SAFE_SIZE];
        if (strcmp(queues_names[i], QUEUES_WEBHOOK) == 0 &&
            spool_each(queues[i], SPOOL_DEFERRED, ctl_status_waiting, last, err) == 1)
            printf("webhook deliveries waiting; the oldest deferred one's last error: %s\n", last);
    }
    dlq_close(queues);
    if (rc != RS_OK)
        return RS_ERR;

    if (ctl_open_orders(cf, &conn, &orders, err) != RS_OK)
        return errbuf_prefix(err, "orders");
    statuses = order_count_by_status(orders, ctl_status_line, &printed, err);
    if (statuses >= 0)
        printf("%s\n", statuses == 0 ? "orders: none" : "");
    if (statuses >= 0) {
        /* The worker says it once at start; an operator asking for the state hears it too. */
        char why[256];
        errbuf derr = {{0}};
        int durable = db_durability(conn, why, sizeof(why), &derr);
        if (durable > 0)
            printf("database: durable (a commit is on disk when it returns)\n");
        else if (durable == 0)
            printf("database: NOT DURABLE: %s\n", why);
        else
            printf("database: durability unchecked: %s\n", derr.msg);
    }
    ctl_close_orders(&conn, &orders);
    return statuses < 0 ? errbuf_prefix(err, "orders") : RS_OK;
}

#define CTL_ORDER_FORMAT "%-36s %-10s %5s %-9s %3s %-19s %-19s %-19s %9s %-8s %s\n"

/* The header of `orders`, once, and only when the orders could be read. */
static void
ctl_orders_header(int *printed)
{
    if (*printed)
        return;
    printf(CTL_ORDER_FORMAT, "order", "sku", "qty", "status", "try", "created", "sent", "fulfilled",
           "delivered", "delivery", "last error");
    *printed = 1;
}

static void
ctl_order_line(void *arg, const struct order_line *o)
{
    static char last[CTL_SAFE_SIZE]; /* one thread */
    const char *c[] = {o->sku,  o->quantity,  o->status,    o->attempts, o->created,
                       o->sent, o->fulfilled, o->delivered, o->delivery, NULL};

    c[9] = o->last_error ? ctl_safe(o->last_error, last, sizeof(last)) : NULL;

    ctl_orders_header(arg);
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
        if (c[i] == NULL)
            c[i] = "-";
    printf(CTL_ORDER_FORMAT, o->order_id, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
           c[9]);
}

static int
ctl_orders(conf *cf, int argc, char **argv, errbuf *err)
{
    long long limit = 50;
    db *conn;
    order *orders;
    int rc, printed = 0;

    if (argc == 2 && strcmp(argv[0], "--limit") == 0)
        limit = strtoll(argv[1], NULL, 10);
    else if (argc != 0)
        return errbuf_set(err, "usage: restockctl orders [--limit N]");
    if (limit < 1)
        return errbuf_set(err, "--limit wants a positive number");
    if (ctl_open_orders(cf, &conn, &orders, err) != RS_OK)
        return RS_ERR;
    rc = order_each(orders, limit, ctl_order_line, &printed, err);
    if (rc == RS_OK)
        ctl_orders_header(&printed); /* no orders: the header alone */
    ctl_close_orders(&conn, &orders);
    return rc;
}

/* --- products: reorder points ----------------------------------------------- */

#define CTL_PRODUCT_FORMAT "%-12s %6s %6s %6s %6s %-4s %8s %9s %9s %9s %9s %10s %5s %-10s %9s %7s\n"

/* A duration in seconds as "3d4h", "12m30s", "40s"; "-" when negative. */
static void
ctl_duration(double secs, char *out, size_t size)
{
    long long s = (long long)(secs + 0.5);

    if (secs < 0)
        snprintf(out, size, "-");
    else if (s >= 86400)
        snprintf(out, size, "%lldd%lldh", s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(out, size, "%lldh%lldm", s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, size, "%lldm%llds", s / 60, s % 60);
    else
        snprintf(out, size, "%.1fs", secs);
}

/* A product's service level target, "-" for none: "95%", with an announced surge
 * "95%x3(2h)" (its factor and the time left). One word, as every column. */
static void
ctl_target(const struct reorder_line *p, char *out, size_t size)
{
    char left[32];

    if (!(p->target > 0)) {
        snprintf(out, size, "-");
        return;
    }
    if (p->surge > 0) {
        ctl_duration(p->surge_left, left, sizeof(left));
        snprintf(out, size, "%g%%x%g(%s)", p->target * 100.0, p->surge, left);
    } else {
        snprintf(out, size, "%g%%", p->target * 100.0);
    }
}

static void
ctl_product_line(void *arg, const struct reorder_line *p)
{
    char stock[24], held[24], point[24], level[24], on_order[24], rate[32], p50[32], p90[32],
        lead[48], suggested[24], sellout[32], limit[24], target[96], achieved[48], fill[24];
    int *printed = arg;

    if (!*printed)
        printf(CTL_PRODUCT_FORMAT, "sku", "stock", "held", "point", "level", "auto", "on_order",
               "rate/min", "lead_p50", "lead_p90", "suggested", "sells_out", "limit", "target",
               "achieved", "fill");
    *printed = 1;
    snprintf(stock, sizeof(stock), "%lld", p->stock);
    snprintf(held, sizeof(held), "%lld", p->held);
    snprintf(point, sizeof(point), "%lld", p->point);
    if (p->level > 0)
        snprintf(level, sizeof(level), "%lld", p->level);
    else
        snprintf(level, sizeof(level), "+%lld", p->quantity); /* a fixed order size */
    snprintf(on_order, sizeof(on_order), "%lld", p->on_order);
    snprintf(rate, sizeof(rate), "%.2f", p->rate);
    ctl_duration(p->lead_p50, p50, sizeof(p50));
    ctl_duration(p->lead_p90, p90, sizeof(p90));
    /* (n): measured over n orders; (assumed): none yet, lead_time_assumed. */
    if (p->lead_orders > 0)
        snprintf(lead, sizeof(lead), "%s(%d)", p90, p->lead_orders);
    else
        snprintf(lead, sizeof(lead), "%s(a)", p90);
    snprintf(suggested, sizeof(suggested), "%lld", p->suggested);
    ctl_duration(p->sellout, sellout, sizeof(sellout));
    /* max_per_customer; "-": none. */
    if (p->max_per_customer > 0)
        snprintf(limit, sizeof(limit), "%lld", p->max_per_customer);
    else
        snprintf(limit, sizeof(limit), "-");
    ctl_target(p, target, sizeof(target));
    /* The level achieved over service_window: cycles without a stock-out of the
     * cycles ended, "93.3%/15"; units served of those asked for, "99.1%". */
    if (p->cycles > 0)
        snprintf(achieved, sizeof(achieved), "%.1f%%/%lld",
                 100.0 * (double)(p->cycles - p->stockouts) / (double)p->cycles, p->cycles);
    else
        snprintf(achieved, sizeof(achieved), "-");
    if (p->fill_rate >= 0)
        snprintf(fill, sizeof(fill), "%.1f%%", 100.0 * p->fill_rate);
    else
        snprintf(fill, sizeof(fill), "-");
    printf(CTL_PRODUCT_FORMAT, p->sku ? p->sku : "-", stock, held, point, level,
           p->automatic ? "on" : "off", on_order, rate, p->has_factory ? p50 : "-",
           p->has_factory ? lead : "-", suggested, sellout, limit, target, achieved, fill);
}

/* Opens the database, its orders and the reorder policy on them. */
static int
ctl_open_policy(conf *cf, db **conn, order **orders, reorder **policy, errbuf *err)
{
    if (ctl_open_orders(cf, conn, orders, err) != RS_OK)
        return RS_ERR;
    *policy = reorder_new(cf, *conn, *orders, err);
    if (*policy == NULL) {
        ctl_close_orders(conn, orders);
        return RS_ERR;
    }
    return RS_OK;
}

static int
ctl_products(conf *cf, int argc, char **argv, errbuf *err)
{
    db *conn;
    order *orders;
    reorder *policy;
    int rc, printed = 0;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl products");
    if (ctl_open_policy(cf, &conn, &orders, &policy, err) != RS_OK)
        return RS_ERR;
    rc = reorder_each(policy, ctl_product_line, &printed, err);
    reorder_destroy(&policy);
    ctl_close_orders(&conn, &orders);
    return rc;
}

/* --- holds: units held while buyers pay ------------------------------------------ */

/* Seconds until a time, as ctl_duration, "-" and the duration when past it. */
static void
ctl_until(double secs, char *out, size_t size)
{
    char d[32];

    ctl_duration(secs < 0 ? -secs : secs, d, sizeof(d));
    snprintf(out, size, "%s%s", secs < 0 ? "-" : "", d);
}

#define CTL_HOLDS_FORMAT "%-12s %6s %6s  %-20s %8s  %-20s %8s\n"

struct ctl_holds_seen {
    long long products, units;
};

static void
ctl_holds_product(void *arg, const struct hold_report_product *p)
{
    struct ctl_holds_seen *seen = arg;
    char holds[24], units[24], age[32], in[32];

    if (seen->products++ == 0)
        printf(CTL_HOLDS_FORMAT, "sku", "holds", "units", "oldest", "age", "next_expiry", "in");
    seen->units += p->units;
    snprintf(holds, sizeof(holds), "%lld", p->holds);
    snprintf(units, sizeof(units), "%lld", p->units);
    ctl_duration(p->oldest_age, age, sizeof(age));
    ctl_until(p->next_in, in, sizeof(in));
    printf(CTL_HOLDS_FORMAT, p->sku ? p->sku : "-", holds, units, p->oldest ? p->oldest : "-", age,
           p->next_expiry ? p->next_expiry : "-", in);
}

#define CTL_HOLD_FORMAT "%-36s  %-16s %-16s %-20s %-20s %8s  %s\n"

static void
ctl_holds_hold(void *arg, const struct hold_report_hold *h)
{
    static char customer[UTF8_SANITIZED_SIZE(64)]; /* one thread; customer is VARBINARY(64) */
    int *printed = arg;
    char client[32], in[32];

    if (!*printed)
        printf(CTL_HOLD_FORMAT, "hold", "client", "customer", "created", "expires_at", "in",
               "lines");
    *printed = 1;
    if (h->client != NULL)
        snprintf(client, sizeof(client), "%s", h->client);
    else
        snprintf(client, sizeof(client), h->client_id == 0 ? "anonymous" : "#%lld", h->client_id);
    /* Restock-Customer is the client's text: shown as the terminal may show it. */
    if (h->customer != NULL)
        utf8_sanitize(h->customer, h->customer_len, customer, sizeof(customer));
    ctl_until(h->expires_in, in, sizeof(in));
    printf(CTL_HOLD_FORMAT, h->id, client, h->customer ? customer : "-",
           h->created ? h->created : "-", h->expires ? h->expires : "-", in,
           h->lines ? h->lines : "-");
}

/* The active holds: by product, then the oldest ones. Read only. */
static int
ctl_holds(conf *cf, int argc, char **argv, errbuf *err)
{
    struct ctl_holds_seen seen = {0};
    struct hold_report_totals totals;
    long long limit = 20;
    hold_report *report = NULL;
    db *conn;
    char *end = NULL, overdue[32];
    int rc, printed = 0;

    if (argc == 2 && strcmp(argv[0], "--limit") == 0)
        limit = strtoll(argv[1], &end, 10);
    else if (argc != 0)
        return errbuf_set(err, "usage: restockctl holds [--limit N]");
    if (end != NULL && (*argv[1] == '\0' || *end != '\0' || limit < 1))
        return errbuf_set(err, "--limit \"%s\": expected a positive number", argv[1]);
    conn = db_new(cf, 0);
    if (conn == NULL)
        return errbuf_set(err, "out of memory");
    report = hold_report_new(conn, err);
    rc = report != NULL ? hold_report_totals(report, &totals, err) : RS_ERR;
    if (rc == RS_OK && totals.holds == 0)
        printf("active holds: none\n");
    else if (rc == RS_OK)
        rc = hold_report_by_product(report, ctl_holds_product, &seen, err);
    if (rc == RS_OK && totals.holds > 0) {
        printf("\nactive holds: %lld, holding %lld unit%s of %lld product%s\n", totals.holds,
               seen.units, seen.units == 1 ? "" : "s", seen.products,
               seen.products == 1 ? "" : "s");
        if (totals.overdue > 0) {
            ctl_duration(totals.overdue, overdue, sizeof(overdue));
            printf("past expires_at, not expired yet: the oldest by %s\n", overdue);
        }
        printf("\noldest %lld:\n", limit);
        rc = hold_report_oldest(report, limit, ctl_holds_hold, &printed, err);
    }
    hold_report_destroy(&report);
    db_destroy(&conn);
    return rc;
}

/* The worker's next sweep acts on the new settings: a point raised to or above
 * the stock opens the order then. */
static int
ctl_product_set(conf *cf, int argc, char **argv, errbuf *err)
{
    struct reorder_line p;
    db *conn;
    order *orders;
    reorder *policy;
    int rc;

    if (argc < 2)
        return errbuf_set(err, "usage: restockctl product set SKU key=value...");
    if (ctl_open_policy(cf, &conn, &orders, &policy, err) != RS_OK)
        return RS_ERR;
    rc = change_product_set(conn, policy, &ctl_who, argv[0], argc - 1, argv + 1, &p, err);
    if (rc == RS_OK) {
        char target[96];

        ctl_target(&p, target, sizeof(target));
        printf("%s: reorder_point=%lld reorder_level=%lld reorder_quantity=%lld reorder_auto=%s "
               "reorder_point_min=%lld reorder_point_max=%lld max_per_customer=%lld "
               "service_level=%s\n",
               argv[0], p.point, p.level, p.quantity, p.automatic ? "on" : "off", p.point_min,
               p.point_max, p.max_per_customer, target);
    }
    reorder_destroy(&policy);
    ctl_close_orders(&conn, &orders);
    return rc;
}

/* A delivery whose callback was lost (nginx could not reach restock-callback,
 * and the factory never calls twice), or one refused as more than ordered: the
 * operator records it by hand, exactly as the callback would have; more than
 * ordered only with --over, a deliberate decision. The worker's next sweep sends
 * the ad resume email. */
static int
ctl_orders_fulfil(conf *cf, int argc, char **argv, errbuf *err)
{
    unsigned char order_id[IDENT_BYTES];
    struct order_fulfil_outcome out;
    long long quantity, max = conf_int(cf, "callback_quantity_max");
    char *end;
    db *conn;
    order *orders;
    int rc, flags = 0;

    if (argc == 3 && strcmp(argv[0], "--over") == 0) {
        flags = ORDER_FULFIL_OVER;
        argv++;
        argc--;
    }
    if (argc != 2)
        return errbuf_set(err, "usage: restockctl orders fulfil [--over] ORDER_ID QUANTITY");
    if (ident_parse(argv[0], order_id) != 0)
        return errbuf_set(err, "\"%s\" is not an order id", argv[0]);
    quantity = strtoll(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || quantity < 1 || quantity > max)
        return errbuf_set(err, "quantity \"%s\": expected an integer from 1 to %lld", argv[1], max);
    if (ctl_open_orders(cf, &conn, &orders, err) != RS_OK)
        return RS_ERR;
    rc = change_order_fulfil(conn, orders, &ctl_who, argv[0], quantity, flags, &out, err);
    if (rc == RS_OK && out.repeated)
        printf("order %s was fulfilled already: nothing changed\n", argv[0]);
    else if (rc == RS_OK && out.refused)
        rc = errbuf_set(err,
                        "order %s: %lld is more than the %lld ordered; nothing changed (to record "
                        "a real over-delivery: restockctl orders fulfil --over %s %lld)",
                        argv[0], quantity, out.ordered, argv[0], quantity);
    else if (rc == RS_OK)
        printf("order %s fulfilled: %lld delivered, stock now %lld\n", argv[0], quantity,
               out.stock);
    ctl_close_orders(&conn, &orders);
    return rc;
}

static int
ctl_dlq_line(void *arg, const char *name, const spool_msg *m, const char *problem)
{
    const char *queue_name = arg;
    static char reason[CTL_SAFE_SIZE], last[CTL_SAFE_SIZE]; /* one thread */
    char died[32];

    if (m == NULL) {
        printf("%-8s %-44s (unreadable: %s)\n", queue_name, name, problem);
        return 0;
    }
    ctl_time(spool_msg_died_at(m), died, sizeof(died));
    printf("%-8s %-44s %-19s %8d  %s: %s\n", queue_name, name, died, spool_msg_attempts(m),
           ctl_safe(spool_msg_death_reason(m), reason, sizeof(reason)),
           ctl_safe(spool_msg_last_error(m), last, sizeof(last)));
    return 0;
}

static int
ctl_dlq_list(conf *cf, int argc, char **argv, errbuf *err)
{
    spool *queues[QUEUES_COUNT];
    int rc = RS_OK;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl dlq list");
    if (ctl_open_queues(cf, queues, err) != RS_OK)
        return RS_ERR;
    printf("%-8s %-44s %-19s %8s  %s\n", "queue", "id", "died", "attempts", "reason: last error");
    for (int i = 0; i < QUEUES_COUNT && rc == RS_OK; i++)
        rc = spool_each(queues[i], SPOOL_DEAD, ctl_dlq_line, (void *)queues_names[i], err);
    dlq_close(queues);
    return rc == RS_ERR ? RS_ERR : RS_OK;
}

static int
ctl_dlq_show(conf *cf, int argc, char **argv, errbuf *err)
{
    spool *queues[QUEUES_COUNT];
    spool_msg *m = NULL;
    static char shown[CTL_SAFE_SIZE]; /* one thread */
    char when[32];
    char *body;
    int q;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl dlq show ID");
    if (ctl_open_queues(cf, queues, err) != RS_OK)
        return RS_ERR;
    q = dlq_find(queues, argv[0], &m, NULL, err);
    if (q < 0) {
        dlq_close(queues);
        return RS_ERR;
    }
    printf("id:           %s\nqueue:        %s\nstate:        %s\n", spool_msg_id(m),
           queues_names[q], spool_state_name(spool_msg_state(m)));
    printf("key:          %s\n", spool_msg_key(m) ? spool_msg_key(m) : "-");
    ctl_time(spool_msg_created(m), when, sizeof(when));
    printf("created:      %s\nattempts:     %d\n", when, spool_msg_attempts(m));
    ctl_time(spool_msg_due(m), when, sizeof(when));
    printf("due:          %s\n", when);
    printf("last error:   %s\n", ctl_safe(spool_msg_last_error(m), shown, sizeof(shown)));
    ctl_time(spool_msg_died_at(m), when, sizeof(when));
    printf("died:         %s\n", when);
    printf("death reason: %s\n", ctl_safe(spool_msg_death_reason(m), shown, sizeof(shown)));
    for (size_t i = 0; i < spool_msg_history_count(m); i++)
        printf("history:      %s\n", spool_msg_history(m, i));
    /* The callback token is a secret: shown as hidden even to the operator's
     * terminal, which may be shared or logged. */
    body = factory_msg_shown(spool_msg_body(m), spool_msg_len(m));
    if (body != NULL)
        printf("body:\n%s\n", body);
    else
        printf("body:\n%.*s\n", (int)spool_msg_len(m), (const char *)spool_msg_body(m));
    free(body);
    spool_msg_destroy(&m);
    dlq_close(queues);
    return RS_OK;
}

/* The database connection a redrive records on (opened before root drops to
 * the spool's owner). */
struct ctl_redrive_db {
    db *conn;
    order *orders;
};

/* dlq_redrive's hook: writes the redrive's audit row, with the reopening of
 * the failed order of a dead factory message (so that its delivery counts), and
 * commits both before the rename, which no transaction holds (docs/design.md).
 * If the database is down, the message stays dead and the operator can try
 * again; the other way round, the worker could deliver it while the order still
 * says failed, and a redrive could go unrecorded. */
static int
ctl_redrive_record(void *arg, const char *queue, const char *id, const char *order_id, errbuf *err)
{
    struct ctl_redrive_db *d = arg;

    return change_redrive(d->conn, d->orders, &ctl_who, queue, id, order_id, err);
}

static int
ctl_redrive_one(db *conn, order *orders, spool *sp, const char *id, errbuf *err)
{
    struct ctl_redrive_db d = {conn, orders};
    int n = dlq_redrive(sp, id, ctl_redrive_record, &d, err);

    if (n == 1)
        printf("redriven %s/%s\n", spool_queue(sp), id);
    return n;
}

static int
ctl_dlq_redrive(conf *cf, int argc, char **argv, errbuf *err)
{
    spool *queues[QUEUES_COUNT];
    db *conn;
    order *orders;
    int total = 0, rc = RS_OK;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl dlq redrive ID|--all");
    /* Connected first, as the user who ran it: the spool's owner, which root
     * becomes next, may not reach the database's socket. */
    if (ctl_open_orders(cf, &conn, &orders, err) != RS_OK)
        return RS_ERR;
    if (db_ping(conn, err) != RS_OK || ctl_open_queues(cf, queues, err) != RS_OK) {
        ctl_close_orders(&conn, &orders);
        return RS_ERR;
    }
    for (int i = 0; i < QUEUES_COUNT && rc == RS_OK; i++) {
        if (strcmp(argv[0], "--all") == 0) {
            /* Collected first: the walk reads the folder, the redrive changes it. */
            struct spool_names names;
            rc = spool_names_of(queues[i], SPOOL_DEAD, &names, err);
            for (size_t k = 0; k < names.n && rc == RS_OK; k++) {
                int n = ctl_redrive_one(conn, orders, queues[i], names.v[k], err);
                if (n < 0)
                    rc = RS_ERR;
                total += n > 0;
            }
            spool_names_clear(&names);
        } else {
            int n = spool_msg_valid_id(argv[0])
                        ? ctl_redrive_one(conn, orders, queues[i], argv[0], err)
                        : errbuf_set(err, "\"%s\" is not a message id", argv[0]);
            if (n < 0)
                rc = RS_ERR;
            total += n > 0;
        }
    }
    dlq_close(queues);
    ctl_close_orders(&conn, &orders);
    if (rc != RS_OK)
        return RS_ERR;
    if (total == 0 && strcmp(argv[0], "--all") != 0)
        return err->msg[0] != '\0'
                   ? RS_ERR /* found, but not dead */
                   : errbuf_set(err, "no dead message %s in the factory or mail queue", argv[0]);
    printf("%d message%s redriven\n", total, total == 1 ? "" : "s");
    return RS_OK;
}

/* --- API clients ---------------------------------------------------------------- */

/* Opens the database and the API clients on it; the caller destroys both. */
static int
ctl_open_clients(conf *cf, db **conn, api_client **clients, errbuf *err)
{
    *clients = NULL;
    *conn = db_new(cf, 0);
    if (*conn == NULL)
        return errbuf_set(err, "out of memory");
    *clients = api_client_new(*conn, err);
    if (*clients == NULL) {
        db_destroy(conn);
        return RS_ERR;
    }
    return RS_OK;
}

/* The key is printed here and nowhere else, ever: restock keeps its hash only. */
static int
ctl_client_add(conf *cf, int argc, char **argv, errbuf *err)
{
    char key[API_CLIENT_KEY_LEN + 1];
    api_client *clients;
    db *conn;
    long long id;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl client add NAME");
    if (api_client_name_check(argv[0], err) != RS_OK ||
        ctl_open_clients(cf, &conn, &clients, err) != RS_OK)
        return RS_ERR;
    id = change_client_add(conn, clients, &ctl_who, argv[0], key, err);
    api_client_destroy(&clients);
    db_destroy(&conn);
    if (id < 0)
        return RS_ERR;
    printf("client %lld %s added; its key, shown only now (restock keeps only its SHA-256):\n"
           "%s\n"
           "The client sends it as \"Authorization: Bearer <key>\".\n",
           id, argv[0], key);
    sodium_memzero(key, sizeof(key));
    return RS_OK;
}

#define CTL_CLIENT_FORMAT "%6s  %-24s %-19s  %-19s  %s\n"

static void
ctl_client_line(void *arg, const struct api_client_line *c)
{
    char id[24];

    (void)arg;
    snprintf(id, sizeof(id), "%lld", c->id);
    printf(CTL_CLIENT_FORMAT, id, c->name ? c->name : "-", c->created ? c->created : "-",
           c->last_used ? c->last_used : "never", c->revoked ? c->revoked : "-");
}

static int
ctl_client_list(conf *cf, int argc, char **argv, errbuf *err)
{
    api_client *clients;
    db *conn;
    int rc;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl client list");
    if (ctl_open_clients(cf, &conn, &clients, err) != RS_OK)
        return RS_ERR;
    printf(CTL_CLIENT_FORMAT, "id", "name", "created", "last used", "revoked");
    rc = api_client_each(clients, ctl_client_line, NULL, err);
    api_client_destroy(&clients);
    db_destroy(&conn);
    return rc;
}

/* Its next request answers 401; its idempotency keys stay until their retention. */
static int
ctl_client_revoke(conf *cf, int argc, char **argv, errbuf *err)
{
    api_client *clients;
    db *conn;
    long long id;
    int rc;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl client revoke ID|NAME");
    if (ctl_open_clients(cf, &conn, &clients, err) != RS_OK)
        return RS_ERR;
    rc = change_client_revoke(conn, clients, &ctl_who, argv[0], &id, err);
    api_client_destroy(&clients);
    db_destroy(&conn);
    if (rc < 0)
        return RS_ERR;
    printf("client %lld %s\n", id,
           rc == 1 ? "revoked: its key answers 401 from now on"
                   : "was revoked already: nothing changed");
    return RS_OK;
}

/* --- webhook endpoints ---------------------------------------------------------- */

/* Opens the database and the webhook endpoints on it; the caller destroys both. */
static int
ctl_open_webhooks(conf *cf, db **conn, webhook_endpoint **hooks, errbuf *err)
{
    *hooks = NULL;
    *conn = db_new(cf, 0);
    if (*conn == NULL)
        return errbuf_set(err, "out of memory");
    *hooks = webhook_endpoint_new(*conn, err);
    if (*hooks == NULL) {
        db_destroy(conn);
        return RS_ERR;
    }
    return RS_OK;
}

static void
ctl_close_webhooks(db **conn, webhook_endpoint **hooks)
{
    webhook_endpoint_destroy(hooks);
    db_destroy(conn);
}

/* The secret is printed here and nowhere else, ever: restock keeps it sealed to
 * the worker's key, which restockctl does not have. */
static void
ctl_webhook_secret(const char *what, char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1])
{
    printf("%s, shown only now (restock keeps it sealed, for the worker alone):\n%s\n", what,
           secret);
    fflush(stdout);
    sodium_memzero(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1);
}

static int
ctl_webhook_add(conf *cf, int argc, char **argv, errbuf *err)
{
    struct webhook_endpoint_key key;
    char id[IDENT_TEXT], secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
    char list[WEBHOOK_ENDPOINT_EVENTS_MAX + 1];
    const char *url = NULL, *events = NULL;
    unsigned set = 0;
    webhook_endpoint *hooks;
    db *conn;
    int rc;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--events") == 0 && i + 1 < argc && events == NULL)
            events = argv[++i];
        else if (argv[i][0] != '-' && url == NULL)
            url = argv[i];
        else
            return errbuf_set(err, "usage: restockctl webhook add URL [--events TYPE,...]");
    }
    if (url == NULL)
        return errbuf_set(err, "usage: restockctl webhook add URL [--events TYPE,...]");
    /* Everything checked before the database is touched: a bad input changes nothing. */
    if (webhook_endpoint_url_check(url, err) != RS_OK ||
        (events != NULL && webhook_endpoint_events_parse(events, &set, err) != RS_OK) ||
        webhook_endpoint_key_public_read(conf_str(cf, "webhook_public_key"), &key, err) != RS_OK ||
        ctl_open_webhooks(cf, &conn, &hooks, err) != RS_OK)
        return RS_ERR;
    rc = change_webhook_add(conn, hooks, &ctl_who, url, set, &key, id, secret, err);
    ctl_close_webhooks(&conn, &hooks);
    if (rc != RS_OK)
        return RS_ERR;
    webhook_endpoint_events_format(set, list, sizeof(list));
    printf("webhook endpoint %s added: %s, events: %s\n", id, url, set ? list : "all");
    ctl_webhook_secret("Its secret", secret);
    printf("The endpoint checks each delivery's webhook-signature with it (Standard Webhooks).\n");
    return RS_OK;
}

#define CTL_WEBHOOK_FORMAT "%-36s  %-8s  %-19s  %-19s  %-20s  %s  %s\n"

static void
ctl_webhook_line(void *arg, const struct webhook_endpoint_line *w)
{
    static char reason[CTL_SAFE_SIZE], disabled[CTL_SAFE_SIZE + 32]; /* one thread */

    (void)arg;
    if (w->status != WEBHOOK_ENABLED)
        snprintf(disabled, sizeof(disabled), "%s: %s", w->disabled_at ? w->disabled_at : "-",
                 ctl_safe(w->reason, reason, sizeof(reason)));
    printf(CTL_WEBHOOK_FORMAT, w->id, webhook_endpoint_status_name(w->status),
           w->created ? w->created : "-", w->rotating && w->rotated_at ? w->rotated_at : "-",
           w->events ? w->events : "all", w->url ? w->url : "-",
           w->status != WEBHOOK_ENABLED ? disabled : "-");
}

static int
ctl_webhook_list(conf *cf, int argc, char **argv, errbuf *err)
{
    webhook_endpoint *hooks;
    db *conn;
    int rc;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl webhook list");
    if (ctl_open_webhooks(cf, &conn, &hooks, err) != RS_OK)
        return RS_ERR;
    printf(CTL_WEBHOOK_FORMAT, "id", "status", "created (UTC)", "rotating since", "events", "url",
           "disabled: reason");
    rc = webhook_endpoint_each(hooks, conf_int(cf, "webhook_rotation_overlap"), ctl_webhook_line,
                               NULL, err);
    ctl_close_webhooks(&conn, &hooks);
    return rc;
}

static int
ctl_webhook_disable(conf *cf, int argc, char **argv, errbuf *err)
{
    const char *reason = NULL;
    webhook_endpoint *hooks;
    db *conn;
    int rc;

    if (argc == 3 && strcmp(argv[1], "--reason") == 0)
        reason = argv[2];
    else if (argc != 1)
        return errbuf_set(err, "usage: restockctl webhook disable ID [--reason TEXT]");
    if (ctl_open_webhooks(cf, &conn, &hooks, err) != RS_OK)
        return RS_ERR;
    rc = change_webhook_disable(conn, hooks, &ctl_who, argv[0], reason, err);
    ctl_close_webhooks(&conn, &hooks);
    if (rc < 0)
        return RS_ERR;
    printf("webhook endpoint %s %s\n", argv[0],
           rc == 1 ? "disabled: nothing more is sent to it"
                   : "was disabled already: nothing changed");
    return RS_OK;
}

static int
ctl_webhook_enable(conf *cf, int argc, char **argv, errbuf *err)
{
    webhook_endpoint *hooks;
    db *conn;
    int rc;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl webhook enable ID");
    if (ctl_open_webhooks(cf, &conn, &hooks, err) != RS_OK)
        return RS_ERR;
    rc = change_webhook_enable(conn, hooks, &ctl_who, argv[0], err);
    ctl_close_webhooks(&conn, &hooks);
    if (rc < 0)
        return RS_ERR;
    printf("webhook endpoint %s %s\n", argv[0],
           rc == 1 ? "enabled: events from now on are sent to it"
                   : "was enabled already: nothing changed");
    return RS_OK;
}

static int
ctl_webhook_rotate(conf *cf, int argc, char **argv, errbuf *err)
{
    struct webhook_endpoint_key key;
    char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
    webhook_endpoint *hooks;
    db *conn;
    int rc;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl webhook rotate ID");
    if (webhook_endpoint_key_public_read(conf_str(cf, "webhook_public_key"), &key, err) != RS_OK ||
        ctl_open_webhooks(cf, &conn, &hooks, err) != RS_OK)
        return RS_ERR;
    rc = change_webhook_rotate(conn, hooks, &ctl_who, argv[0], &key, secret, err);
    ctl_close_webhooks(&conn, &hooks);
    if (rc != RS_OK)
        return RS_ERR;
    printf("webhook endpoint %s rotated\n", argv[0]);
    ctl_webhook_secret("Its new secret", secret);
    printf("The previous secret still signs, as a second signature, for %ld s "
           "(webhook_rotation_overlap) or until the next rotation: give the endpoint the new "
           "one before then.\n",
           conf_int(cf, "webhook_rotation_overlap"));
    return RS_OK;
}

static void
ctl_webhook_keep(void *arg, const struct webhook_endpoint_line *w)
{
    struct webhook_endpoint_line *out = arg;

    *out = *w;
    out->id = out->url = out->events = out->created = out->reason = NULL;
    out->disabled_at = out->rotated_at = NULL; /* the row's text goes with the next query */
}

/* Puts a ping into the webhook queue, as the spool's owner; the worker's
 * delivery threads look for new messages at least once a second. */
static int
ctl_webhook_ping_put(conf *cf, const char *endpoint, spool **sp, char wid[WEBHOOK_SIG_ID_SIZE],
                     errbuf *err)
{
    if (ctl_drop_to_spool_owner(cf, err) != RS_OK)
        return RS_ERR;
    *sp = spool_new(conf_str(cf, "spool_dir"), QUEUES_WEBHOOK, err);
    if (*sp == NULL)
        return RS_ERR;
    return webhook_msg_ping_put(*sp, endpoint, wid, err);
}

static int
ctl_webhook_ping(conf *cf, int argc, char **argv, errbuf *err)
{
    struct webhook_endpoint_line w = {0};
    webhook_endpoint *hooks;
    char wid[WEBHOOK_SIG_ID_SIZE], id[IDENT_TEXT];
    unsigned char bin[IDENT_BYTES];
    spool *sp = NULL;
    db *conn;
    long long wait = 10;
    char *end = NULL;
    struct timespec pause = {0, 100 * 1000 * 1000};
    time_t deadline;
    int rc;

    if (argc == 3 && strcmp(argv[1], "--wait") == 0)
        wait = strtoll(argv[2], &end, 10);
    else if (argc != 1)
        return errbuf_set(err, "usage: restockctl webhook ping ID [--wait SECONDS]");
    if (end != NULL && (*argv[2] == '\0' || *end != '\0' || wait < 0 || wait > 86400))
        return errbuf_set(err, "--wait \"%s\": expected seconds, 0 to 86400", argv[2]);
    if (ident_parse(argv[0], bin) != 0)
        return errbuf_set(err, "\"%s\" is not an endpoint id (a UUID, as webhook list shows)",
                          argv[0]);
    ident_format(bin, sizeof(bin), id); /* canonical: the spool key of its events */
    if (ctl_open_webhooks(cf, &conn, &hooks, err) != RS_OK)
        return RS_ERR;
    rc = webhook_endpoint_get(hooks, id, 0, ctl_webhook_keep, &w, err);
    ctl_close_webhooks(&conn, &hooks);
    if (rc < 0)
        return RS_ERR;
    if (w.status != WEBHOOK_ENABLED)
        return errbuf_set(err, "webhook endpoint %s is %s: nothing sent (enable it first)", id,
                          webhook_endpoint_status_name(w.status));
    if (ctl_webhook_ping_put(cf, id, &sp, wid, err) != RS_OK) {
        spool_destroy(&sp);
        return RS_ERR;
    }
    printf("ping %s queued for webhook endpoint %s\n", wid, id);
    fflush(stdout);
    rc = RS_OK;
    for (deadline = time(NULL) + (time_t)wait; wait > 0;) {
        spool_msg *m = NULL;
        int found = spool_get(sp, wid, &m, err);
        enum spool_state state = found == 1 ? spool_msg_state(m) : SPOOL_INCOMING;
        char last[CTL_SAFE_SIZE];

        if (found < 0) {
            rc = RS_ERR;
            break;
        }
        ctl_safe(found == 1 ? spool_msg_last_error(m) : NULL, last, sizeof(last));
        if (state == SPOOL_DONE) {
            printf("delivered\n");
        } else if (state == SPOOL_DEAD) {
            rc = errbuf_set(err, "ping %s dead: %s", wid, last);
        } else if (time(NULL) >= deadline) {
            rc = found == 1 && spool_msg_last_error(m) != NULL
                     ? errbuf_set(err, "ping %s not delivered in %lld s (%s); last error: %s", wid,
                                  wait, spool_state_name(state), last)
                     : errbuf_set(err,
                                  "ping %s not delivered in %lld s (%s, not tried yet: is "
                                  "restock-worker running?)",
                                  wid, wait, spool_state_name(state));
        } else {
            spool_msg_destroy(&m);
            nanosleep(&pause, NULL);
            continue;
        }
        spool_msg_destroy(&m);
        break;
    }
    spool_destroy(&sp);
    return rc;
}

/* Root's: publishes the public half of the worker's webhook_key, which restockctl
 * seals the secrets to. */
static int
ctl_webhook_key(conf *cf, int argc, char **argv, errbuf *err)
{
    const char *path = conf_str(cf, "webhook_public_key");
    struct webhook_endpoint_key key, before;
    char hex[WEBHOOK_ENDPOINT_KEY_HEX + 1];
    int had;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl webhook key");
    if (webhook_endpoint_key_private(conf_str(cf, "webhook_key"), &key, err) != RS_OK)
        return errbuf_prefix(err, "run as root, with the credential webhook_key: ");
    had = webhook_endpoint_key_public_read(path, &before, err) == RS_OK;
    if (webhook_endpoint_key_public_write(path, &key, err) != RS_OK) {
        sodium_memzero(&key, sizeof(key));
        return RS_ERR;
    }
    webhook_endpoint_key_hex(&key, hex);
    had = had && memcmp(before.pk, key.pk, sizeof(key.pk)) == 0 ? 2 : had;
    sodium_memzero(&key, sizeof(key));
    printf("webhook public key %s: %s%s\n", path, hex,
           had == 0   ? " (new)"
           : had == 2 ? " (unchanged)"
                      : " (replaced: secrets sealed to the old key do not open with this one; "
                        "rotate every endpoint)");
    return RS_OK;
}

/* --- admin accounts and the audit trail ------------------------------------------ */

/* Opens the database and the admin accounts on it; ctl_close_accounts closes both. */
static int
ctl_open_accounts(conf *cf, db **conn, admin_account **accounts, errbuf *err)
{
    *accounts = NULL;
    *conn = db_new(cf, 0);
    if (*conn == NULL)
        return errbuf_set(err, "out of memory");
    *accounts = admin_account_new(cf, *conn, err);
    if (*accounts == NULL) {
        db_destroy(conn);
        return RS_ERR;
    }
    return RS_OK;
}

static void
ctl_close_accounts(db **conn, admin_account **accounts)
{
    admin_account_destroy(accounts);
    db_destroy(conn);
}

/* One line of f into out, without its line end: RS_ERR when there is none or
 * it is longer than ADMIN_PASSWORD_MAX bytes. */
static int
ctl_read_line(FILE *f, char *out, size_t size, errbuf *err)
{
    size_t n;

    if (fgets(out, (int)size, f) == NULL)
        return errbuf_set(err, "no password given");
    n = strlen(out);
    if (n == size - 1 && out[n - 1] != '\n' && !feof(f))
        return errbuf_set(err, "the password is longer than %d bytes", ADMIN_PASSWORD_MAX);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return RS_OK;
}

/* One line from the terminal with its echo off (prompt on stderr). */
static int
ctl_read_hidden(const char *prompt, char *out, size_t size, errbuf *err)
{
    struct termios before, quiet;
    int rc;

    if (tcgetattr(STDIN_FILENO, &before) != 0)
        return errbuf_set(err, "cannot read the terminal: %s", strerror(errno));
    quiet = before;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
        return errbuf_set(err, "cannot turn the terminal's echo off: %s", strerror(errno));
    rc = ctl_read_line(stdin, out, size, err);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &before);
    fputs("\n", stderr);
    return rc;
}

#define CTL_PASSWORD_SIZE (ADMIN_PASSWORD_MAX + 2)

/* The new password of an account, never from argv (which every user of the
 * machine may read): one line of stdin with --password-stdin, else typed twice
 * on the terminal without echo. Checked before the database is touched. */
static int
ctl_password(int from_stdin, char out[CTL_PASSWORD_SIZE], errbuf *err)
{
    char again[CTL_PASSWORD_SIZE];
    int rc;

    if (from_stdin)
        rc = ctl_read_line(stdin, out, CTL_PASSWORD_SIZE, err);
    else if (!isatty(STDIN_FILENO))
        rc = errbuf_set(err, "no terminal to read the password from: give it on stdin with "
                             "--password-stdin");
    else if ((rc = ctl_read_hidden("password: ", out, CTL_PASSWORD_SIZE, err)) == RS_OK &&
             admin_password_check(out, err) == RS_OK &&
             (rc = ctl_read_hidden("again: ", again, sizeof(again), err)) == RS_OK &&
             strcmp(out, again) != 0)
        rc = errbuf_set(err, "the two passwords differ: nothing changed");
    sodium_memzero(again, sizeof(again));
    if (rc == RS_OK)
        rc = admin_password_check(out, err);
    if (rc != RS_OK)
        sodium_memzero(out, CTL_PASSWORD_SIZE);
    return rc;
}

static int
ctl_admin_add(conf *cf, int argc, char **argv, errbuf *err)
{
    const char *usage =
        "usage: restockctl admin add NAME --role viewer|operator [--password-stdin]";
    char password[CTL_PASSWORD_SIZE];
    const char *name = NULL, *role_name = NULL;
    admin_account *accounts;
    db *conn;
    long long id;
    int role, from_stdin = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--role") == 0 && i + 1 < argc && role_name == NULL)
            role_name = argv[++i];
        else if (strcmp(argv[i], "--password-stdin") == 0)
            from_stdin = 1;
        else if (argv[i][0] != '-' && name == NULL)
            name = argv[i];
        else
            return errbuf_set(err, "%s", usage);
    }
    if (name == NULL || role_name == NULL)
        return errbuf_set(err, "%s", usage);
    if (admin_account_name_check(name, err) != RS_OK ||
        (role = admin_role_parse(role_name, err)) < 0 ||
        ctl_password(from_stdin, password, err) != RS_OK)
        return RS_ERR;
    if (ctl_open_accounts(cf, &conn, &accounts, err) != RS_OK) {
        sodium_memzero(password, sizeof(password));
        return RS_ERR;
    }
    id = admin_account_add(accounts, &ctl_who, name, role, password, err);
    sodium_memzero(password, sizeof(password));
    ctl_close_accounts(&conn, &accounts);
    if (id < 0)
        return RS_ERR;
    printf("admin account %s added (%s)\n", name, admin_role_name(role));
    return RS_OK;
}

#define CTL_ACCOUNT_FORMAT "%-24s %-8s %-8s %-20s %-20s %s\n"

static void
ctl_account_line(void *arg, const struct admin_account_line *a)
{
    char state[64];

    (void)arg;
    if (a->disabled)
        snprintf(state, sizeof(state), "disabled");
    else if (a->locked_until != NULL)
        snprintf(state, sizeof(state), "locked until %s", a->locked_until);
    else
        snprintf(state, sizeof(state), "active (%lld failed)", a->failures);
    printf(CTL_ACCOUNT_FORMAT, a->name ? a->name : "-", a->role ? a->role : "-",
           a->disabled ? "disabled" : "enabled", a->created ? a->created : "-",
           a->last_login ? a->last_login : "never", state);
}

/* Never a password or a hash: nobody has the one, the other is nobody's business. */
static int
ctl_admin_list(conf *cf, int argc, char **argv, errbuf *err)
{
    admin_account *accounts;
    db *conn;
    int rc;

    if (argc != 0)
        return errbuf_set(err, "usage: restockctl admin list");
    if (ctl_open_accounts(cf, &conn, &accounts, err) != RS_OK)
        return RS_ERR;
    printf(CTL_ACCOUNT_FORMAT, "name", "role", "status", "created (UTC)", "last login (UTC)",
           "login");
    rc = admin_account_each(accounts, ctl_account_line, NULL, err);
    ctl_close_accounts(&conn, &accounts);
    return rc;
}

static int
ctl_admin_passwd(conf *cf, int argc, char **argv, errbuf *err)
{
    char password[CTL_PASSWORD_SIZE];
    admin_account *accounts;
    db *conn;
    int rc, from_stdin = argc == 2 && strcmp(argv[1], "--password-stdin") == 0;

    if (argc != 1 && !from_stdin)
        return errbuf_set(err, "usage: restockctl admin passwd NAME [--password-stdin]");
    if (admin_account_name_check(argv[0], err) != RS_OK ||
        ctl_password(from_stdin, password, err) != RS_OK)
        return RS_ERR;
    rc = ctl_open_accounts(cf, &conn, &accounts, err);
    if (rc == RS_OK)
        rc = admin_account_passwd(accounts, &ctl_who, argv[0], password, err);
    sodium_memzero(password, sizeof(password));
    ctl_close_accounts(&conn, &accounts);
    if (rc < 0)
        return RS_ERR;
    printf("admin account %s: password changed, its sessions ended\n", argv[0]);
    return RS_OK;
}

static int
ctl_admin_role(conf *cf, int argc, char **argv, errbuf *err)
{
    admin_account *accounts;
    db *conn;
    int rc, role;

    if (argc != 2)
        return errbuf_set(err, "usage: restockctl admin role NAME viewer|operator");
    if ((role = admin_role_parse(argv[1], err)) < 0 ||
        ctl_open_accounts(cf, &conn, &accounts, err) != RS_OK)
        return RS_ERR;
    rc = admin_account_role(accounts, &ctl_who, argv[0], role, err);
    ctl_close_accounts(&conn, &accounts);
    if (rc < 0)
        return RS_ERR;
    printf("admin account %s %s %s\n", argv[0], rc == 1 ? "is now" : "was already",
           admin_role_name(role));
    return RS_OK;
}

/* disable, enable and unlock: one account's state. */
static int
ctl_admin_state(conf *cf, int argc, char **argv, const char *what,
                int (*change)(admin_account *, const struct audit_who *, const char *, errbuf *),
                const char *done, const char *already, errbuf *err)
{
    admin_account *accounts;
    db *conn;
    int rc;

    if (argc != 1)
        return errbuf_set(err, "usage: restockctl admin %s NAME", what);
    if (ctl_open_accounts(cf, &conn, &accounts, err) != RS_OK)
        return RS_ERR;
    rc = change(accounts, &ctl_who, argv[0], err);
    ctl_close_accounts(&conn, &accounts);
    if (rc < 0)
        return RS_ERR;
    printf("admin account %s %s\n", argv[0], rc == 1 ? done : already);
    return RS_OK;
}

static int
ctl_admin_disable(conf *cf, int argc, char **argv, errbuf *err)
{
    return ctl_admin_state(cf, argc, argv, "disable", admin_account_disable,
                           "disabled: no login, its sessions ended",
                           "was disabled already: nothing changed", err);
}

static int
ctl_admin_enable(conf *cf, int argc, char **argv, errbuf *err)
{
    return ctl_admin_state(cf, argc, argv, "enable", admin_account_enable, "enabled",
                           "was enabled already: nothing changed", err);
}

static int
ctl_admin_unlock(conf *cf, int argc, char **argv, errbuf *err)
{
    return ctl_admin_state(cf, argc, argv, "unlock", admin_account_unlock,
                           "unlocked: its failed logins forgotten",
                           "was not locked: nothing changed", err);
}

static void
ctl_audit_line(void *arg, const struct audit_line *a)
{
    static char before[CTL_SAFE_SIZE], after[CTL_SAFE_SIZE], target[CTL_SAFE_SIZE]; /* one thread */

    (void)arg;
    printf("%lld %s %s %s %s %s %s -> %s\n", a->id, a->at ? a->at : "-", a->actor ? a->actor : "-",
           a->source ? a->source : "-", a->action ? a->action : "-",
           ctl_safe(a->target, target, sizeof(target)), ctl_safe(a->before, before, sizeof(before)),
           ctl_safe(a->after, after, sizeof(after)));
}

/* The audit trail, newest first. Read only. */
static int
ctl_audit(conf *cf, int argc, char **argv, errbuf *err)
{
    long long limit = 50, before = 0;
    char *end = NULL;
    audit *trail;
    db *conn;
    int rc;

    for (int i = 0; i < argc; i++) {
        long long *v = strcmp(argv[i], "--limit") == 0    ? &limit
                       : strcmp(argv[i], "--before") == 0 ? &before
                                                          : NULL;
        if (v == NULL || i + 1 == argc)
            return errbuf_set(err, "usage: restockctl audit [--limit N] [--before ID]");
        *v = strtoll(argv[++i], &end, 10);
        if (*argv[i] == '\0' || *end != '\0')
            return errbuf_set(err, "%s \"%s\": expected a number", argv[i - 1], argv[i]);
    }
    if (audit_check_page(limit, before, err) != RS_OK)
        return RS_ERR;
    conn = db_new(cf, 0);
    if (conn == NULL)
        return errbuf_set(err, "out of memory");
    trail = audit_new(conn, err);
    printf("id at (UTC) actor source action target before -> after\n");
    rc = trail != NULL ? audit_each(trail, limit, before, ctl_audit_line, NULL, err) : RS_ERR;
    audit_destroy(&trail);
    db_destroy(&conn);
    return rc;
}

static const struct ctl_command ctl_commands[] = {
    {"status", "", "depth of each queue and state, orders by status", ctl_status},
    {"orders fulfil", "[--over] ORDER QUANTITY",
     "record a delivery whose callback was lost (--over: more than ordered)", ctl_orders_fulfil},
    {"orders", "[--limit N]", "replenishment orders, newest first", ctl_orders},
    {"products", "", "stock, reorder point and level, rate, lead time, suggestion", ctl_products},
    {"product set", "SKU key=value...", "reorder settings and max_per_customer of a product",
     ctl_product_set},
    {"holds", "[--limit N]", "active holds by product, and the oldest (20)", ctl_holds},
    {"client add", "NAME", "a new API client; prints its key, once", ctl_client_add},
    {"client list", "", "API clients: id, name, created, last used, revoked", ctl_client_list},
    {"client revoke", "ID|NAME", "revoke a client's key (401 from then on)", ctl_client_revoke},
    {"webhook add", "URL [--events T,...]",
     "a new webhook endpoint (all types, or those); prints its id and secret, once",
     ctl_webhook_add},
    {"webhook list", "", "webhook endpoints: id, status, created, rotation, events, url",
     ctl_webhook_list},
    {"webhook disable", "ID [--reason TEXT]", "stop sending to an endpoint", ctl_webhook_disable},
    {"webhook enable", "ID", "send to a disabled endpoint again", ctl_webhook_enable},
    {"webhook rotate", "ID", "a new secret, printed once; the old one signs for a while",
     ctl_webhook_rotate},
    {"webhook ping", "ID [--wait S]",
     "send a ping event; waits S s (10; 0: not) for delivered, or says the last error",
     ctl_webhook_ping},
    {"webhook key", "", "publish the public half of webhook_key (root)", ctl_webhook_key},
    {"admin add", "NAME --role R [--password-stdin]",
     "an admin API account (viewer|operator); the password from the terminal, twice",
     ctl_admin_add},
    {"admin list", "", "admin accounts: name, role, created, last login, locked", ctl_admin_list},
    {"admin passwd", "NAME [--password-stdin]", "a new password; ends its sessions",
     ctl_admin_passwd},
    {"admin role", "NAME ROLE", "viewer or operator; ends its sessions", ctl_admin_role},
    {"admin disable", "NAME", "no more logins; ends its sessions", ctl_admin_disable},
    {"admin enable", "NAME", "allow logins again", ctl_admin_enable},
    {"admin unlock", "NAME", "end a lock-out after failed logins", ctl_admin_unlock},
    {"audit", "[--limit N] [--before ID]", "the audit trail of changes, newest first (50)",
     ctl_audit},
    {"dlq list", "", "dead messages of every queue", ctl_dlq_list},
    {"dlq show", "ID", "one message (any state) with its history", ctl_dlq_show},
    {"dlq redrive", "ID|--all", "put dead messages back to waiting", ctl_dlq_redrive},
    {"config defaults", "", "print a documented configuration file with every default",
     ctl_config_defaults},
    {"config show", "", "print the effective configuration (secrets masked)", ctl_config_show},
    {"db migrate", "[--dir FOLDER]", "apply pending SQL migrations", ctl_db_migrate},
};

#define CTL_NCOMMANDS (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

static void
ctl_usage(FILE *out)
{
    fprintf(out, "usage: restockctl [-c FILE] COMMAND\n\ncommands:\n");
    for (size_t i = 0; i < CTL_NCOMMANDS; i++)
        fprintf(out, "  %-18s %-16s %s\n", ctl_commands[i].words, ctl_commands[i].usage,
                ctl_commands[i].doc);
    fprintf(out,
            "\nThe configuration is %s unless -c or RESTOCK_CONFIG names another;\n"
            "RESTOCK_<KEY> environment variables override single keys.\n",
            CONF_DEFAULT_PATH);
}

/* Matches the command words against argv; returns how many argv entries they took. */
static int
ctl_match(const char *words, int argc, char **argv)
{
    char buf[64];
    int used = 0;

    snprintf(buf, sizeof(buf), "%s", words);
    for (char *w = strtok(buf, " "); w != NULL; w = strtok(NULL, " ")) {
        if (used >= argc || strcmp(argv[used], w) != 0)
            return 0;
        used++;
    }
    return used;
}

int
main(int argc, char **argv)
{
    const char *path = NULL;
    conf *cf = NULL;
    errbuf err = {{0}};
    int opt;

    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            ctl_usage(stderr);
            return 2;
        }
    }
    argc -= optind;
    argv += optind;
    audit_local_who(ctl_actor, ctl_source);
    for (size_t i = 0; i < CTL_NCOMMANDS; i++) {
        int used = ctl_match(ctl_commands[i].words, argc, argv);
        int rc;
        if (used == 0)
            continue;
        cf = conf_new(path, &err);
        if (cf == NULL) {
            fprintf(stderr, "restockctl: %s\n", err.msg);
            return 1;
        }
        rc = ctl_commands[i].run(cf, argc - used, argv + used, &err);
        conf_destroy(&cf);
        if (rc != RS_OK) {
            fprintf(stderr, "restockctl: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    if (argc > 0)
        fprintf(stderr, "restockctl: unknown command \"%s\"; restockctl -h lists them\n", argv[0]);
    else
        ctl_usage(stderr);
    return 2;
}
