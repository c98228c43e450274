/* scrape: the worker's Prometheus endpoint (see scrape.h). */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "db.h"
#include "hold.h"
#include "log.h"
#include "metrics.h"
#include "order.h"
#include "reorder.h"
#include "queues.h"
#include "scrape.h"
#include "webhook.h"

#define SCRAPE_MAX_QUEUES 8
#define SCRAPE_CONTENT    "text/plain; version=0.0.4; charset=utf-8"

/* A connection of the endpoint, timed from its start or its last answer. */
struct scrape_conn {
    struct MHD_Connection *c;
    long long since; /* ms, CLOCK_MONOTONIC */
    int cut;         /* shut down, libmicrohttpd closes it at its next turn */
    struct scrape_conn *prev, *next;
};

struct scrape {
    struct MHD_Daemon *daemon;
    /* The connections open, for the whole-request deadline; used by the scrape
     * thread only (libmicrohttpd calls back in the thread that runs it), and at
     * MHD_stop_daemon once that thread has ended. */
    struct scrape_conn *conns;
    long long deadline_ms;
    pthread_t thread;
    int started;
    atomic_int stop;
    atomic_long delay_warning, callback_timeout;
    char *dir;
    spool *queues[SCRAPE_MAX_QUEUES];
    int nqueues;
    /* Made and used in the scrape thread only (db objects are thread-bound). */
    db *conn;
    order *orders;
    hold_report *holds;
    reorder *policy; /* the service levels' view (reorder_report_service) */
    int db_down;
};

/* Orders by status (order.h's), every status shown, 0 when it has none. */
struct scrape_counts {
    long long n[ORDER_NSTATUS];
};

static void
scrape_note_status(void *arg, const char *status, long long count)
{
    struct scrape_counts *c = arg;
    int i = order_status_parse(status);

    if (i >= 0)
        c->n[i] = count;
}

/* A label value in the exposition format: backslash, double quote and line feed
 * escaped. A sku is whatever the catalogue holds, quotes included. */
static void
scrape_label(FILE *out, const char *value)
{
    for (const char *c = value; *c != '\0'; c++) {
        if (*c == '\\' || *c == '"')
            fputc('\\', out);
        if (*c == '\n')
            fputs("\\n", out);
        else
            fputc(*c, out);
    }
}

static void
scrape_units_held(void *arg, const char *sku, long long held)
{
    FILE *out = arg;

    fputs("restock_units_held{sku=\"", out);
    scrape_label(out, sku != NULL ? sku : "");
    fprintf(out, "\"} %lld\n", held);
}

/* The holds, read at scrape time: units held per product (product.held), the
 * active holds, and the wait of the oldest one past its expires_at, which the
 * lag histogram counts only once the worker expired it. */
static void
scrape_write_holds(scrape *self, const struct hold_report_totals *totals, FILE *out)
{
    errbuf err = {{0}};

    fprintf(out,
            "# HELP restock_holds_active Holds whose units are held (status held).\n"
            "# TYPE restock_holds_active gauge\n"
            "restock_holds_active %lld\n"
            "# HELP restock_hold_expiry_overdue_seconds How long the oldest active hold has been "
            "past its expires_at without being expired; 0 when none is.\n"
            "# TYPE restock_hold_expiry_overdue_seconds gauge\n"
            "restock_hold_expiry_overdue_seconds %.3f\n"
            "# HELP restock_units_held Units of each product in active holds, off the shelf while "
            "buyers pay (product.held).\n"
            "# TYPE restock_units_held gauge\n",
            totals->holds, totals->overdue);
    if (hold_report_units_held(self->holds, scrape_units_held, out, &err) != RS_OK)
        log_warn("event=metrics_db_failed error=\"%s\"", err.msg);
}

/* One product's service level samples, buffered per family: the exposition
 * format wants each family's samples together. */
struct scrape_service {
    FILE *family[4];
};

static void
scrape_service_line(void *arg, const struct reorder_line *p)
{
    struct scrape_service *sv = arg;
    const char *sku = p->sku != NULL ? p->sku : "";

    if (p->target > 0) {
        fputs("restock_service_level_target{sku=\"", sv->family[0]);
        scrape_label(sv->family[0], sku);
        fprintf(sv->family[0], "\"} %.4f\n", p->target);
    }
    if (p->cycles > 0) {
        fputs("restock_service_level_achieved{sku=\"", sv->family[1]);
        scrape_label(sv->family[1], sku);
        fprintf(sv->family[1], "\"} %.6f\n",
                (double)(p->cycles - p->stockouts) / (double)p->cycles);
        for (int out = 0; out < 2; out++) {
            fputs("restock_order_cycles{sku=\"", sv->family[2]);
            scrape_label(sv->family[2], sku);
            fprintf(sv->family[2], "\",stockout=\"%s\"} %lld\n", out ? "yes" : "no",
                    out ? p->stockouts : p->cycles - p->stockouts);
        }
    }
    if (p->fill_rate >= 0) {
        fputs("restock_fill_rate{sku=\"", sv->family[3]);
        scrape_label(sv->family[3], sku);
        fprintf(sv->family[3], "\"} %.6f\n", p->fill_rate);
    }
}

/* The level achieved beside the target (docs/design.md §3.7), per product that
 * has a target, a fill rate or order cycles in service_window. */
static void
scrape_write_service(scrape *self, FILE *out)
{
    static const char *const help[4] = {
        "# HELP restock_service_level_target The cycle service level the operator states "
        "(product.service_level).\n# TYPE restock_service_level_target gauge\n",
        "# HELP restock_service_level_achieved Order cycles ended in service_window without a "
        "stock-out, of all that ended.\n# TYPE restock_service_level_achieved gauge\n",
        "# HELP restock_order_cycles Order cycles ended in service_window, with and without a "
        "stock-out.\n# TYPE restock_order_cycles gauge\n",
        "# HELP restock_fill_rate Units served of units asked for, averaged over "
        "service_window.\n# TYPE restock_fill_rate gauge\n"};
    struct scrape_service sv = {{NULL}};
    char *text[4] = {NULL};
    size_t len[4] = {0};
    errbuf err = {{0}};
    int ok = 1, rc;

    for (int i = 0; i < 4; i++)
        ok &= (sv.family[i] = open_memstream(&text[i], &len[i])) != NULL;
    rc = ok ? reorder_report_service(self->policy, scrape_service_line, &sv, &err) : RS_ERR;
    for (int i = 0; i < 4; i++)
        if (sv.family[i] != NULL)
            fclose(sv.family[i]);
    if (rc != RS_OK)
        log_warn("event=metrics_db_failed error=\"%s\"", ok ? err.msg : "out of memory");
    for (int i = 0; i < 4 && rc == RS_OK; i++) {
        fputs(help[i], out);
        fwrite(text[i], 1, len[i], out);
    }
    for (int i = 0; i < 4; i++)
        free(text[i]);
}

/* The worker's own view: spool folders and orders. */
static void
scrape_write_state(scrape *self, FILE *out)
{
    struct scrape_counts counts = {{0}};
    struct hold_report_totals holds = {0};
    time_t now = time(NULL);
    errbuf err = {{0}};
    long long overdue = 0;
    int db_ok;

    fprintf(out, "# HELP restock_queue_messages Spool messages per queue and state folder.\n"
                 "# TYPE restock_queue_messages gauge\n");
    for (int q = 0; q < self->nqueues; q++)
        for (int s = 0; s < SPOOL_NSTATES; s++) {
            long n = spool_count(self->queues[q], (enum spool_state)s, &err);
            if (n < 0) {
                log_warn("event=metrics_spool_failed queue=%s error=\"%s\"",
                         spool_queue(self->queues[q]), err.msg);
                continue;
            }
            fprintf(out, "restock_queue_messages{queue=\"%s\",state=\"%s\"} %ld\n",
                    spool_queue(self->queues[q]), spool_state_name((enum spool_state)s), n);
        }
    fprintf(out, "# HELP restock_queue_oldest_waiting_seconds Age of the oldest message not yet "
                 "delivered (incoming, active or deferred); 0 when none waits.\n"
                 "# TYPE restock_queue_oldest_waiting_seconds gauge\n");
    for (int q = 0; q < self->nqueues; q++) {
        time_t oldest = 0;
        if (spool_oldest_waiting(self->queues[q], &oldest, &err) != RS_OK) {
            log_warn("event=metrics_spool_failed queue=%s error=\"%s\"",
                     spool_queue(self->queues[q]), err.msg);
            continue;
        }
        fprintf(out, "restock_queue_oldest_waiting_seconds{queue=\"%s\"} %ld\n",
                spool_queue(self->queues[q]),
                oldest > 0 && now > oldest ? (long)(now - oldest) : 0L);
    }
    for (int q = 0; q < self->nqueues; q++)
        if (strcmp(spool_queue(self->queues[q]), QUEUES_WEBHOOK) == 0)
            webhook_metrics_write(self->queues[q], out);

    db_ok = order_count_by_status(self->orders, scrape_note_status, &counts, &err) >= 0;
    if (db_ok) {
        overdue = order_count_overdue(self->orders, atomic_load(&self->callback_timeout), &err);
        db_ok = overdue >= 0;
    }
    if (db_ok)
        db_ok = hold_report_totals(self->holds, &holds, &err) == RS_OK;
    if (!db_ok) {
        if (!self->db_down)
            log_warn("event=metrics_db_failed error=\"%s\"", err.msg);
        self->db_down = 1;
        metrics_count(METRICS_DATABASE_ERRORS);
    } else {
        if (self->db_down)
            log_info("event=metrics_db_back");
        self->db_down = 0;
        fprintf(out, "# HELP restock_orders Replenishment orders by status.\n"
                     "# TYPE restock_orders gauge\n");
        for (int i = 0; i < ORDER_NSTATUS; i++)
            fprintf(out, "restock_orders{status=\"%s\"} %lld\n",
                    order_status_name((enum order_status)i), counts.n[i]);
        fprintf(out,
                "# HELP restock_orders_overdue Orders sent longer than callback_timeout ago "
                "whose callback has not come.\n"
                "# TYPE restock_orders_overdue gauge\n"
                "restock_orders_overdue %lld\n",
                overdue);
        scrape_write_holds(self, &holds, out);
        scrape_write_service(self, out);
    }
    fprintf(out,
            "# HELP restock_database_up 1 when the worker's scrape could read the orders.\n"
            "# TYPE restock_database_up gauge\n"
            "restock_database_up %d\n",
            db_ok);
    fprintf(out,
            "# HELP restock_config_delay_warning_seconds The delay_warning setting.\n"
            "# TYPE restock_config_delay_warning_seconds gauge\n"
            "restock_config_delay_warning_seconds %ld\n"
            "# HELP restock_config_callback_timeout_seconds The callback_timeout setting.\n"
            "# TYPE restock_config_callback_timeout_seconds gauge\n"
            "restock_config_callback_timeout_seconds %ld\n",
            atomic_load(&self->delay_warning), atomic_load(&self->callback_timeout));
}

static char *
scrape_text(scrape *self, size_t *len)
{
    struct metrics_totals totals;
    errbuf err = {{0}};
    char *text = NULL;
    FILE *out = open_memstream(&text, len);

    if (out == NULL)
        return NULL;
    if (metrics_collect(self->dir, &totals, &err) != RS_OK) {
        log_warn("event=metrics_collect_failed error=\"%s\"", err.msg);
        memset(&totals, 0, sizeof(totals));
    }
    metrics_write(&totals, out);
    scrape_write_state(self, out);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static enum MHD_Result
scrape_reply(struct MHD_Connection *c, unsigned status, char *body, size_t len, int owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;

    if (r == NULL) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            status == 200 ? SCRAPE_CONTENT : "text/plain; charset=utf-8");
    if (status == 405)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result
scrape_answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
              const char *version, const char *upload, size_t *upload_len, void **req)
{
    static char not_found[] = "not found: the metrics are at /metrics\n";
    static char not_allowed[] = "method not allowed: GET or HEAD\n";
    scrape *self = cls;
    size_t len = 0;
    char *text;

    if (strcmp(url, "/metrics") != 0)
        return scrape_reply(c, 404, not_found, sizeof(not_found) - 1, 0);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return scrape_reply(c, 405, not_allowed, sizeof(not_allowed) - 1, 0);
    text = scrape_text(self, &len);
    if (text == NULL)
        return MHD_NO;
    return scrape_reply(c, 200, text, len, 1);
}

static long long
scrape_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
scrape_notify(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    scrape *self = cls;
    struct scrape_conn *sc = *socket_context;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        sc = calloc(1, sizeof(*sc));
        if (sc == NULL) {
            /* Untimed, it could be held for ever: refused instead. */
            const union MHD_ConnectionInfo *info =
                MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (info != NULL)
                shutdown(info->connect_fd, SHUT_RDWR);
            return;
        }
        sc->c = c;
        sc->since = scrape_now_ms();
        sc->next = self->conns;
        if (self->conns != NULL)
            self->conns->prev = sc;
        self->conns = sc;
        *socket_context = sc;
        return;
    }
    if (sc == NULL)
        return;
    if (sc->prev != NULL)
        sc->prev->next = sc->next;
    else
        self->conns = sc->next;
    if (sc->next != NULL)
        sc->next->prev = sc->prev;
    free(sc);
    *socket_context = NULL;
}

/* An answer sent: a kept-alive connection's next request has the whole
 * deadline again. */
static void
scrape_completed(void *cls, struct MHD_Connection *c, void **req,
                 enum MHD_RequestTerminationCode toe)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    (void)cls;
    (void)req;
    (void)toe;
    if (info != NULL && info->socket_context != NULL)
        ((struct scrape_conn *)info->socket_context)->since = scrape_now_ms();
}

/* The whole-request deadline. libmicrohttpd's own timeout counts from a
 * connection's last byte, so that a client sending one byte every few seconds
 * would hold its connection for ever; a connection older than the deadline is
 * shut down here, and libmicrohttpd, reading its end, closes it and frees its
 * slot. */
static void
scrape_expire(scrape *self)
{
    long long now = scrape_now_ms();
    int cut = 0;

    for (struct scrape_conn *sc = self->conns; sc != NULL; sc = sc->next) {
        const union MHD_ConnectionInfo *info;
        if (sc->cut || now - sc->since < self->deadline_ms)
            continue;
        info = MHD_get_connection_info(sc->c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info != NULL)
            shutdown(info->connect_fd, SHUT_RDWR);
        sc->cut = 1;
        cut++;
    }
    if (cut > 0)
        log_info("event=metrics_connections_closed count=%d reason=\"no whole request within "
                 "metrics_request_timeout (%llds)\"",
                 cut, self->deadline_ms / 1000);
}

static void *
scrape_thread(void *arg)
{
    scrape *self = arg;
    errbuf err = {{0}};

    /* The connection was made (not connected) in scrape_new; it connects here. */
    if (db_thread_init(&err) != RS_OK) {
        log_error("event=metrics_failed error=\"%s\"", err.msg);
        return NULL;
    }
    while (!atomic_load(&self->stop)) {
        if (MHD_run_wait(self->daemon, 250) != MHD_YES)
            break;
        scrape_expire(self);
    }
    reorder_destroy(&self->policy);
    hold_report_destroy(&self->holds);
    order_destroy(&self->orders);
    db_destroy(&self->conn);
    db_thread_end();
    return NULL;
}

/* Binds "host:port", "[v6]:port" or ":port" (every address). */
static int
scrape_listen(const char *where, int *ipv6, errbuf *err)
{
    char host[256] = "", port[16] = "";
    const char *colon;
    struct addrinfo hints = {0}, *ai = NULL;
    int fd = -1, one = 1, rc;

    if (where[0] == '[') {
        const char *end = strchr(where, ']');
        if (end == NULL || end[1] != ':')
            return errbuf_set(err, "metrics_listen = \"%s\": expected [address]:port", where);
        snprintf(host, sizeof(host), "%.*s", (int)(end - where - 1), where + 1);
        colon = end + 1;
    } else {
        colon = strrchr(where, ':');
        if (colon == NULL)
            return errbuf_set(err, "metrics_listen = \"%s\": expected host:port", where);
        snprintf(host, sizeof(host), "%.*s", (int)(colon - where), where);
    }
    snprintf(port, sizeof(port), "%s", colon + 1);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (rc != 0)
        return errbuf_set(err, "metrics_listen = \"%s\": %s", where, gai_strerror(rc));
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errbuf_set(err, "metrics_listen: socket: %s", strerror(errno));
        goto done;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        errbuf_set(err, "cannot listen on metrics_listen = %s: %s", where, strerror(errno));
        close(fd);
        fd = -1;
        goto done;
    }
    *ipv6 = ai->ai_family == AF_INET6;
done:
    freeaddrinfo(ai);
    return fd < 0 ? RS_ERR : fd;
}

scrape *
scrape_new(const conf *cf, spool *const *queues, int nqueues, errbuf *err)
{
    scrape *self = calloc(1, sizeof(*self));
    int fd = -1, ipv6 = 0, rc;
    unsigned most = (unsigned)conf_int(cf, "metrics_max_connections"),
             per_address = (unsigned)conf_int(cf, "metrics_max_per_address"),
             timeout = (unsigned)conf_int(cf, "metrics_request_timeout");
    unsigned flags = MHD_NO_FLAG;
    struct rlimit files = {0};

    if (self == NULL || nqueues > SCRAPE_MAX_QUEUES) {
        errbuf_set(err, "out of memory");
        free(self);
        return NULL;
    }
    self->dir = strdup(conf_str(cf, "metrics_dir"));
    self->conn = db_new(cf, 0);
    if (self->dir == NULL || self->conn == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    self->orders = order_new(self->conn, err);
    if (self->orders == NULL)
        goto fail;
    self->holds = hold_report_new(self->conn, err);
    if (self->holds == NULL)
        goto fail;
    self->policy = reorder_new(cf, self->conn, self->orders, err);
    if (self->policy == NULL)
        goto fail;
    for (int i = 0; i < nqueues; i++)
        self->queues[i] = queues[i];
    self->nqueues = nqueues;
    scrape_set_limits(self, conf_int(cf, "delay_warning"), conf_int(cf, "callback_timeout"));
    fd = scrape_listen(conf_str(cf, "metrics_listen"), &ipv6, err);
    if (fd < 0)
        goto fail;
    /* Every connection is a descriptor the deliveries (spool files, database,
     * factory and SMTP connections) may need: the endpoint holds a quarter of the
     * worker's limit at most, whatever was configured. */
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
        most > files.rlim_cur / 4) {
        log_warn("event=metrics_limit_lowered metrics_max_connections=%u to=%lu "
                 "reason=\"a quarter of the worker's %lu descriptors\"",
                 most, (unsigned long)(files.rlim_cur / 4), (unsigned long)files.rlim_cur);
        most = files.rlim_cur / 4 > 0 ? (unsigned)(files.rlim_cur / 4) : 1;
    }
    /* epoll, not select: the unit lets the worker have many descriptors
     * (LimitNOFILE), and select() cannot watch one numbered 1024 or more. */
    flags |= MHD_USE_EPOLL;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    self->deadline_ms = (long long)timeout * 1000;
    /* No thread of its own: scrape_thread drives it, so that the database
     * connection it uses stays in one thread. */
    self->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, scrape_answer, self, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, most, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_address,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_NOTIFY_CONNECTION, scrape_notify, self,
        MHD_OPTION_NOTIFY_COMPLETED, scrape_completed, self, MHD_OPTION_END);
    if (self->daemon == NULL) {
        close(fd);
        errbuf_set(err, "libmicrohttpd could not serve metrics_listen = %s",
                   conf_str(cf, "metrics_listen"));
        goto fail;
    }
    rc = pthread_create(&self->thread, NULL, scrape_thread, self);
    if (rc != 0) {
        errbuf_set(err, "cannot start the metrics thread: %s", strerror(rc));
        goto fail;
    }
    self->started = 1;
    log_info("event=metrics_listening address=%s path=/metrics max_connections=%u "
             "max_per_address=%u request_timeout=%u descriptors=%lu",
             conf_str(cf, "metrics_listen"), most, per_address, timeout,
             (unsigned long)files.rlim_cur);
    return self;

fail:
    scrape_destroy(&self);
    return NULL;
}

void
scrape_destroy(scrape **self_p)
{
    scrape *self = *self_p;

    if (self == NULL)
        return;
    if (self->started) {
        atomic_store(&self->stop, 1);
        pthread_join(self->thread, NULL);
    } else {
        hold_report_destroy(&self->holds);
        order_destroy(&self->orders);
        db_destroy(&self->conn);
    }
    if (self->daemon != NULL)
        MHD_stop_daemon(self->daemon);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

void
scrape_set_limits(scrape *self, long delay_warning, long callback_timeout)
{
    atomic_store(&self->delay_warning, delay_warning);
    atomic_store(&self->callback_timeout, callback_timeout);
}
