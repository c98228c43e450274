/* conf: the parameter table and the loader (see conf.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "conf.h"
#include "egress.h"
#include "hostlist.h"
#include "log.h"
#include "metrics.h"

/* CONF_HOSTS: a host list (lib/hostlist); CONF_EGRESS: a webhook_allow policy (lib/egress). */
enum conf_type { CONF_STR, CONF_INT, CONF_MODE, CONF_ENUM, CONF_HOSTS, CONF_EGRESS };

struct conf_param {
    const char *key;
    enum conf_type type;
    const char *def;
    long min, max;       /* CONF_INT */
    const char *choices; /* CONF_ENUM: "a|b|c" */
    int secret;          /* never printed */
    const char *section; /* heading in the generated file */
    const char *doc;
};

/* Every parameter of every program, in one place. Durations are in seconds. */
static const struct conf_param conf_params[] = {
    {"log_level", CONF_ENUM, "info", 0, 0, "debug|info|warn|error", 0, "General",
     "Lowest level of the event lines written to stderr (journald)."},

    {"db_host", CONF_HOSTS, "localhost", 0, 0, NULL, 0, "Database (MySQL 8 or MariaDB 10.11)",
     "Database host, or a comma-separated list host[:port],... tried in order (a port left out "
     "is db_port): the first that answers is used until its connection fails, then the next; "
     "\"localhost\" means the unix socket below."},
    {"db_port", CONF_INT, "3306", 1, 65535, NULL, 0, NULL, "Database TCP port."},
    {"db_socket", CONF_STR, "", 0, 0, NULL, 0, NULL,
     "Database unix socket; empty means the client library's default."},
    {"db_user", CONF_STR, "restock", 0, 0, NULL, 0, NULL, "Database user."},
    {"db_password", CONF_STR, "", 0, 0, NULL, 1, NULL, "Database password (secret)."},
    {"db_name", CONF_STR, "restock", 0, 0, NULL, 0, NULL, "Database name."},
    {"db_timeout", CONF_INT, "30", 1, 600, NULL, 0, NULL,
     "Seconds a read or write may wait before the database counts as unreachable; longer than "
     "the cluster's failure detection and reconfiguration (Galera: evs.inactive_timeout plus "
     "the view change), so that a statement that commits is answered."},
    {"db_connect_timeout", CONF_INT, "2", 1, 600, NULL, 0, NULL,
     "Seconds to connect to one database host before the next one is tried."},
    {"db_idle_check", CONF_INT, "1", 0, 3600, NULL, 0, NULL,
     "Seconds a database connection may stay idle before it is checked (ping) ahead of its next "
     "statement outside a transaction, so that a connection that died while idle (proxy or "
     "server restart) is replaced before a statement is lost on it; 0 checks every time."},
    {"db_retries", CONF_INT, "10", 0, 100, NULL, 0, NULL,
     "Times a statement or transaction that the database rolled back as a deadlock or a "
     "cluster certification failure is run again before it fails, each after a "
     "random pause of up to 2^attempt ms (at most 64 ms)."},

    {"sales_socket", CONF_STR, "/run/restock/sales.sock", 0, 0, NULL, 0,
     "FastCGI responders (nginx connects to these sockets)",
     "Unix socket of the sales responder (restock-sales)."},
    {"sales_threads", CONF_INT, "32", 1, 256, NULL, 0, NULL,
     "Threads of the sales responder, each with its own database connection; also the most "
     "checkouts of one product one statement takes."},
    {"callback_socket", CONF_STR, "/run/restock/callback.sock", 0, 0, NULL, 0, NULL,
     "Unix socket of the factory callback responder (restock-callback)."},
    {"callback_threads", CONF_INT, "2", 1, 256, NULL, 0, NULL,
     "Threads of the callback responder."},
    {"admin_socket", CONF_STR, "/run/restock/admin.sock", 0, 0, NULL, 0, NULL,
     "Unix socket of the admin API responder (restock-admin), behind its own nginx site."},
    {"admin_threads", CONF_INT, "4", 1, 256, NULL, 0, NULL,
     "Threads of the admin API responder, each with its own database connection."},
    {"admin_listen", CONF_STR, "127.0.0.1:8081", 0, 0, NULL, 0, NULL,
     "Address of the admin site (nginx/restock-admin-site.conf listens there: keep the two "
     "the same); loopback by default, docs/operations.md says how to serve it on a public "
     "address with TLS. Its origin, http://<admin_listen>, is the only one the admin API "
     "accepts in an Origin header unless admin_origin names another."},
    {"admin_origin", CONF_STR, "", 0, 0, NULL, 0, NULL,
     "The admin site's origin as browsers send it (\"https://admin.shop.example\"), for a site "
     "behind TLS or a name; empty: http://<admin_listen>. A request whose Origin is another "
     "is refused (403)."},
    {"admin_cookie_secure", CONF_ENUM, "no", 0, 0, "yes|no", 0, NULL,
     "yes: the admin session cookie is marked Secure (browsers send it over HTTPS only); set "
     "it when the admin site is served over TLS. no by default: loopback is plain HTTP."},
    {"socket_mode", CONF_MODE, "0660", 0, 0777, NULL, 0, NULL,
     "Permissions of the responders' sockets (octal); nginx's user must be able to connect."},
    {"socket_backlog", CONF_INT, "1024", 1, 65535, NULL, 0, NULL,
     "Listen backlog of the responders' sockets: new connections not yet accepted."},
    {"body_limit", CONF_INT, "8192", 64, 1048576, NULL, 0, NULL,
     "Largest request body accepted, in bytes; larger ones answer 400 (the admin API: 413)."},
    {"default_sku", CONF_STR, "CP-502101", 0, 0, NULL, 0, NULL,
     "Product of GET /product/donut and of a POST /checkout without a sku."},
    {"idempotency_retention", CONF_INT, "86400", 60, 31536000, NULL, 0, NULL,
     "Seconds a checkout's Idempotency-Key is kept with its answer: a retry with the key "
     "within them is answered the same, a key reused after them is a new checkout "
     "(restock-worker deletes older keys)."},
    {"limit_window", CONF_INT, "86400", 1, 31536000, NULL, 0, NULL,
     "Seconds over which a product's max_per_customer counts the units sold to one "
     "customer (an API client's Restock-Customer): a sliding window ending at the sale."},
    {"hold_ttl", CONF_INT, "600", 30, 86400, NULL, 0, NULL,
     "Seconds a hold (POST /holds) keeps its units when the request names no ttl; a "
     "request's own ttl may be 30 to 86400."},
    {"hold_retention", CONF_INT, "604800", 60, 31536000, NULL, 0, NULL,
     "Seconds an ended hold (confirmed, released, expired) is kept, counted from its "
     "expires_at, for GET /holds/{id}; restock-worker deletes older ones."},
    {"checkout_require_client", CONF_ENUM, "no", 0, 0, "yes|no", 0, NULL,
     "yes: POST /checkout needs an API client's key (Authorization: Bearer, made by "
     "`restockctl client add`), and an anonymous checkout answers 401; no: anonymous "
     "checkouts are taken as before."},

    {"bus_endpoint", CONF_STR, "ipc:///run/restock/bus.sock", 0, 0, NULL, 0,
     "Doorbell bus (ZeroMQ)",
     "ZeroMQ endpoints the responders publish doorbells to, comma-separated, one per worker "
     "(tcp://host:port for workers on other hosts); each worker gets every doorbell."},
    {"bus_listen", CONF_STR, "", 0, 0, NULL, 0, NULL,
     "ZeroMQ endpoint this worker binds (SUB), e.g. tcp://10.0.0.2:5560 or tcp://*:5560; "
     "empty: the first of bus_endpoint."},

    {"spool_dir", CONF_STR, "/var/spool/restock", 0, 0, NULL, 0, "Queue worker and spool",
     "Directory of the on-disk queues (one folder per queue and state)."},
    {"max_attempts", CONF_INT, "0", 0, 1000000, NULL, 0, NULL,
     "Attempts at delivering a message before it moves to dead/; 0 means no limit: a "
     "transient failure is retried until the queue's lifetime has passed."},
    {"factory_lifetime", CONF_INT, "259200", 1, 31536000, NULL, 0, NULL,
     "Seconds a factory order is retried after transient failures (connection refused, "
     "timeout, 408, 429, 5xx), counted from its creation, before it moves to dead/."},
    {"mail_lifetime", CONF_INT, "432000", 1, 31536000, NULL, 0, NULL,
     "Seconds an email is retried after transient failures (no connection, 4xx), counted "
     "from its creation, before it moves to dead/ (Postfix's maximal_queue_lifetime)."},
    {"attempt_timeout", CONF_INT, "10", 1, 600, NULL, 0, NULL,
     "Seconds one delivery attempt (factory request, SMTP session) may take."},
    {"backoff_min", CONF_INT, "5", 0, 86400, NULL, 0, NULL,
     "Seconds before the first retry; doubles each attempt, with jitter."},
    {"backoff_max", CONF_INT, "300", 0, 86400, NULL, 0, NULL, "Longest wait between retries."},
    {"delay_warning", CONF_INT, "900", 1, 604800, NULL, 0, NULL,
     "Operators are warned when the oldest waiting message is older than this, and again "
     "once per this period while it keeps waiting."},
    {"watch_interval", CONF_INT, "10", 1, 3600, NULL, 0, NULL,
     "Seconds between the worker's watch passes: orders whose callback is overdue, delay "
     "warnings, pruning of done/ and of expired idempotency keys."},
    {"sweep_interval", CONF_INT, "5", 1, 3600, NULL, 0, NULL,
     "Seconds between sweeps of the outbox (doorbells make most sweeps unnecessary)."},
    {"factory_concurrency", CONF_INT, "4", 1, 64, NULL, 0, NULL,
     "Factory requests in flight at once (one product's orders always go out in order)."},
    {"mail_concurrency", CONF_INT, "1", 1, 16, NULL, 0, NULL, "SMTP sessions at once."},
    {"done_retention", CONF_INT, "604800", 0, 31536000, NULL, 0, NULL,
     "Seconds a delivered message is kept in done/ (it makes a repeated event a no-op)."},
    {"worker_id", CONF_STR, "", 0, 0, NULL, 0, NULL,
     "Name of this worker in the claims of outbox work (table outbox_claim) when several "
     "workers share the database; empty: the host name, a hash of /etc/machine-id and "
     "spool_dir (host#3f2a9c1b77d0:/var/spool/restock; without a machine id, host:spool_dir). "
     "Unique per worker: a second live worker with the same worker_id is refused at start. "
     "Keep it across restarts: a restarted worker takes back, under the same message ids, the "
     "claims nobody took over meanwhile."},
    {"lease_time", CONF_INT, "30", 3, 3600, NULL, 0, NULL,
     "Seconds a worker's registration and claims last without renewal, on the database's UTC "
     "clock: a thread of the worker renews them every third of it, on a connection of its own "
     "whose statements time out after a sixth of it (at most db_timeout), so that no slow "
     "statement of the sweeps can starve them. After a worker host died, another worker takes "
     "its undelivered outbox work over this long after, and a restart of the dead worker "
     "waits at most this long for its registration."},

    {"metrics_listen", CONF_STR, "127.0.0.1:9464", 0, 0, NULL, 0, "Metrics (Prometheus)",
     "Address (host:port, [v6]:port) where restock-worker serves the Prometheus metrics of "
     "every program at /metrics; empty: no endpoint. Keep it off the public network."},
    {"metrics_dir", CONF_STR, "/run/restock/metrics", 0, 0, NULL, 0, NULL,
     "Folder of the programs' counter files (one small shared file per process), which the "
     "worker sums at each scrape."},
    {"metrics_max_connections", CONF_INT, "16", 1, 256, NULL, 0, NULL,
     "Connections the metrics endpoint holds at once, all clients together; more wait in the "
     "listen backlog. Every one is a descriptor the deliveries may need: at most a quarter of "
     "the worker's descriptor limit (RLIMIT_NOFILE) is used, whatever is set."},
    {"metrics_max_per_address", CONF_INT, "4", 1, 256, NULL, 0, NULL,
     "Connections one client address may hold on the metrics endpoint at once; more are "
     "closed as soon as they are accepted."},
    {"metrics_request_timeout", CONF_INT, "10", 1, 300, NULL, 0, NULL,
     "Seconds a metrics connection has, from its start or its last answer, to send a whole "
     "request and read the answer, however slowly it sends (and seconds it may stay idle); "
     "then it is closed."},

    {"rate_window", CONF_INT, "300", 1, 86400, NULL, 0, "Reorder points",
     "Seconds of the moving average of each product's sales rate (the worker samples the "
     "units sold at every sweep; a sale's weight halves every 0.69 of this)."},
    {"lead_time_orders", CONF_INT, "20", 1, 1000, NULL, 0, NULL,
     "A factory's lead time (order sent to its callback) is measured over its newest this "
     "many fulfilled orders: median and p90."},
    {"lead_time_assumed", CONF_INT, "40", 1, 2592000, NULL, 0, NULL,
     "Lead time in seconds assumed for a factory before any of its orders was fulfilled "
     "(the legacy factory calls back after about 40 s)."},
    {"reorder_safety", CONF_INT, "50", 0, 1000, NULL, 0, NULL,
     "Safety margin of the suggested reorder point, in percent of the demand expected "
     "during the lead time (sales rate x p90 lead time)."},
    {"demand_window", CONF_INT, "604800", 60, 31536000, NULL, 0, NULL,
     "Seconds of the moving average of each product's demand (units asked for per second) "
     "and its variance, which a product with a service_level orders from: long, so that a "
     "surge does not wash out what a normal week sells (announce a drop with `restockctl "
     "product set SKU surge=FACTOR surge_until=TIME`)."},
    {"service_window", CONF_INT, "2592000", 60, 31536000, NULL, 0, NULL,
     "Seconds over which the level achieved is measured: the order cycles that ended in "
     "them (with and without a stock-out) and the fill rate (units served / units asked "
     "for, an exponential average), shown by `restockctl products` and the metrics."},
    {"reorder_cover", CONF_INT, "0", 0, 31536000, NULL, 0, NULL,
     "Seconds of demand an order of a product with a service_level covers beyond its "
     "reorder point (its order-up-to level is the point plus that demand, at least "
     "reorder_quantity); 0: one mean lead time."},

    {"factory_api", CONF_STR, "", 0, 0, NULL, 0, "Factory",
     "Factory API base URL for factories whose factory.api column is empty."},
    {"requester", CONF_STR, "restock", 0, 0, NULL, 0, NULL,
     "MessageAttributeRequester sent to the factory."},
    {"public_url", CONF_STR, "http://127.0.0.1:8080", 0, 0, NULL, 0, NULL,
     "Public base URL of this shop; the factory calls back under /callbacks/factory/."},
    {"callback_timeout", CONF_INT, "900", 1, 2592000, NULL, 0, NULL,
     "Seconds after which a sent order without callback is reported to operators."},
    {"callback_key", CONF_STR, "", 0, 0, NULL, 1, NULL,
     "Key of the callback tokens (secret; required by restock-callback and restock-worker): "
     "64 lower-case hex digits (openssl rand -hex 32). A token is the HMAC-SHA256 of the "
     "order id under it, so callbacks are verified without the database."},
    {"callback_key_previous", CONF_STR, "", 0, 0, NULL, 1, NULL,
     "The key before the last rotation (secret): its tokens are still accepted; empty: none."},
    {"callback_quantity_max", CONF_INT, "100000", 1, 1000000000, NULL, 0, NULL,
     "Largest quantity a factory callback may deliver."},

    {"smtp_host", CONF_STR, "localhost", 0, 0, NULL, 0, "Email (SMTP relay)", "SMTP relay host."},
    {"smtp_port", CONF_INT, "25", 1, 65535, NULL, 0, NULL, "SMTP relay port."},
    {"smtp_starttls", CONF_ENUM, "opportunistic", 0, 0, "required|opportunistic|off", 0, NULL,
     "STARTTLS: required (fail without it), opportunistic (use when offered) or off."},
    {"smtp_ca_file", CONF_STR, "", 0, 0, NULL, 0, NULL,
     "CA certificates (PEM) that verify the relay when smtp_starttls = required; the "
     "certificate must also name smtp_host. Empty means the system's CAs. Opportunistic "
     "STARTTLS encrypts without verifying (RFC 7435)."},
    {"smtp_user", CONF_STR, "", 0, 0, NULL, 0, NULL, "SMTP AUTH user; empty means no AUTH."},
    {"smtp_password", CONF_STR, "", 0, 0, NULL, 1, NULL, "SMTP AUTH password (secret)."},
    {"smtp_timeout", CONF_INT, "30", 1, 600, NULL, 0, NULL, "Seconds an SMTP exchange may take."},
    {"mail_from", CONF_STR, "restock@localhost", 0, 0, NULL, 0, NULL,
     "Sender address of every email."},
    {"operator_email", CONF_STR, "root@localhost", 0, 0, NULL, 0, NULL,
     "Where operator alerts go (dead letters, missing callbacks, corrupt files, delays)."},

    {"webhook_allow", CONF_EGRESS, "", 0, 0, NULL, 0, "Webhooks (events to other systems)",
     "Addresses a webhook delivery may connect to besides public ones, comma-separated: "
     "CIDRs (10.0.0.0/8, fd00::/8), single addresses, and class names (loopback, private, "
     "link-local, metadata, cgnat, benchmarking, documentation, multicast, broadcast, "
     "reserved, unspecified). Empty: public addresses only. Checked on the address each "
     "connection goes to, after DNS; redirects are not followed and proxies not used "
     "(operations.md, \"Webhook egress\")."},
    {"webhook_key", CONF_STR, "", 0, 0, NULL, 1, NULL,
     "The worker's private key that opens the endpoints' signing secrets (secret; a "
     "credential of restock-worker alone): 64 lower-case hex digits (openssl rand -hex 32). "
     "restockctl seals each secret to its public half, webhook_public_key, and cannot open "
     "them."},
    {"webhook_public_key", CONF_STR, "/etc/restock/webhook_key.pub", 0, 0, NULL, 0, NULL,
     "File of the public half of webhook_key (64 hex digits, readable by all), written by "
     "`restockctl webhook key` (root) and read by `restockctl webhook add` and `rotate`."},
    {"webhook_rotation_overlap", CONF_INT, "86400", 0, 31536000, NULL, 0, NULL,
     "Seconds an endpoint's previous secret still signs after `restockctl webhook rotate` "
     "(each delivery then carries both signatures), unless it is rotated again sooner; 0: "
     "the old secret stops at once."},
    {"webhook_lifetime", CONF_INT, "259200", 1, 31536000, NULL, 0, NULL,
     "Seconds a webhook event is retried (failures, Retry-After, a disabled endpoint), "
     "counted from its creation, before it moves to dead/ and operators are told."},
    {"webhook_disable_after", CONF_INT, "432000", 1, 31536000, NULL, 0, NULL,
     "Seconds an endpoint may keep failing (no 2xx since its first failure) before the "
     "worker disables it (status failing) and operators are told."},
    {"webhook_threads", CONF_INT, "4", 1, 64, NULL, 0, NULL,
     "Webhook deliveries in flight at once (each endpoint has at most one: its events go "
     "out in order)."},
    {"webhook_timeout", CONF_INT, "10", 1, 600, NULL, 0, NULL,
     "Seconds one webhook delivery (connection, request and answer) may take."},

    {"admin_lockout_failures", CONF_INT, "5", 1, 1000, NULL, 0, "Admin API: accounts and sessions",
     "Failed logins in a row (wrong password) that lock an admin account for "
     "admin_lockout_seconds; while locked even the right password is refused. `restockctl "
     "admin unlock NAME` ends it sooner."},
    {"admin_lockout_seconds", CONF_INT, "900", 1, 31536000, NULL, 0, NULL,
     "Seconds an admin account stays locked after admin_lockout_failures failed logins."},
    {"admin_session_idle", CONF_INT, "1800", 10, 86400, NULL, 0, NULL,
     "Seconds without a request after which an admin session ends (401 \"session expired\")."},
    {"admin_session_lifetime", CONF_INT, "43200", 10, 2592000, NULL, 0, NULL,
     "Seconds after its login at which an admin session ends, however busy it is."},
};

#define CONF_NPARAMS (sizeof(conf_params) / sizeof(conf_params[0]))

struct conf {
    atomic_int refs; /* conf_ref; conf_destroy frees at the last */
    unsigned long generation;
    char *path;
    char *values[CONF_NPARAMS];
    const char *origins[CONF_NPARAMS]; /* "default", "environment" or the path */
    long ints[CONF_NPARAMS];
};

static int conf_index_or_abort(const char *key);

static int
conf_index(const char *key)
{
    for (size_t i = 0; i < CONF_NPARAMS; i++)
        if (strcmp(conf_params[i].key, key) == 0)
            return (int)i;
    return -1;
}

static int
conf_enum_has(const char *choices, const char *value)
{
    size_t len = strlen(value);
    const char *p = choices;

    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Checks a value that its own module parses (the module's message in err). */
static int
conf_check_list(enum conf_type type, const char *value, errbuf *err)
{
    if (type == CONF_HOSTS) {
        hostlist *hl = hostlist_new(value, 1, err);
        if (hl == NULL)
            return RS_ERR;
        hostlist_destroy(&hl);
    } else {
        egress_policy *ep = egress_policy_new(value, err);
        if (ep == NULL)
            return RS_ERR;
        egress_policy_destroy(&ep);
    }
    return RS_OK;
}

/* Checks value against parameter i and stores it. */
static int
conf_set(conf *self, size_t i, const char *value, const char *origin, errbuf *err)
{
    const struct conf_param *p = &conf_params[i];
    long n = 0;
    char *end;
    char *copy;

    switch (p->type) {
    case CONF_INT:
    case CONF_MODE:
        errno = 0;
        n = strtol(value, &end, p->type == CONF_MODE ? 8 : 10);
        if (errno != 0 || end == value || *end != '\0' || n < p->min || n > p->max)
            return errbuf_set(err, "%s: %s = \"%s\": expected %s from %ld to %ld", origin, p->key,
                              value, p->type == CONF_MODE ? "an octal mode" : "an integer", p->min,
                              p->max);
        break;
    case CONF_ENUM:
        if (!conf_enum_has(p->choices, value))
            return errbuf_set(err, "%s: %s = \"%s\": expected one of %s", origin, p->key, value,
                              p->choices);
        break;
    case CONF_HOSTS:
    case CONF_EGRESS:
        if (conf_check_list(p->type, value, err) != RS_OK) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "%s", err->msg);
            return errbuf_set(err, "%s: %s = \"%s\": %s", origin, p->key, value, msg);
        }
        break;
    case CONF_STR:
        break;
    }
    copy = strdup(value);
    if (copy == NULL)
        return errbuf_set(err, "out of memory");
    free(self->values[i]);
    self->values[i] = copy;
    self->ints[i] = n;
    self->origins[i] = origin;
    return RS_OK;
}

static char *
conf_trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* The value of a line, after its '=': the syntax of restock.conf(5), stated once.
 * A '#' at the start of the value or after whitespace starts a comment (so that
 * "smtp_starttls = required   # or opportunistic" means "required"), and one inside
 * a word does not ("pa#ss" stays whole). A value in double quotes is taken as it
 * stands, '#' and spaces included, with \" and \\ for a quote and a backslash;
 * after the closing quote only a comment may follow. Cuts s in place. */
static char *
conf_value(char *s, const char *where, errbuf *err)
{
    char *out, *p;

    while (isspace((unsigned char)*s))
        s++;
    if (*s != '"') {
        for (p = s; *p != '\0'; p++)
            if (*p == '#' && (p == s || isspace((unsigned char)p[-1]))) {
                *p = '\0';
                break;
            }
        return conf_trim(s);
    }
    out = s;
    for (p = s + 1; *p != '"'; p++) {
        if (*p == '\0' || (*p == '\\' && p[1] == '\0')) {
            errbuf_set(err, "%s: the value's opening quote has no closing quote", where);
            return NULL;
        }
        if (*p == '\\') {
            if (p[1] != '"' && p[1] != '\\') {
                errbuf_set(err,
                           "%s: unknown escape \"\\%c\" in a quoted value (only \\\" and \\\\)",
                           where, p[1]);
                return NULL;
            }
            p++;
        }
        *out++ = *p;
    }
    *out = '\0';
    for (p++; isspace((unsigned char)*p); p++)
        ;
    if (*p != '\0' && *p != '#') {
        errbuf_set(err, "%s: unexpected text after the quoted value: \"%s\"", where, conf_trim(p));
        return NULL;
    }
    return s;
}

static int
conf_load_file(conf *self, FILE *f, errbuf *err)
{
    char line[4096], where[PATH_MAX + 32];
    int lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        char *key, *value, *eq;
        int i;

        lineno++;
        snprintf(where, sizeof(where), "%s:%d", self->path, lineno);
        if (strchr(line, '\n') == NULL && !feof(f))
            return errbuf_set(err, "%s: line longer than %zu bytes", where, sizeof(line) - 2);
        key = conf_trim(line);
        if (*key == '\0' || *key == '#')
            continue;
        eq = strchr(key, '=');
        if (eq == NULL)
            return errbuf_set(err, "%s: expected \"key = value\"", where);
        *eq = '\0';
        key = conf_trim(key);
        value = conf_value(eq + 1, where, err);
        if (value == NULL)
            return RS_ERR;
        i = conf_index(key);
        if (i < 0)
            return errbuf_set(err, "%s: unknown key \"%s\"", where, key);
        /* The origin must outlive the parse: point at the stored path, the line
         * number is in errors only. */
        if (conf_set(self, (size_t)i, value, self->path, err) != RS_OK) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "%s", err->msg + strlen(self->path));
            return errbuf_set(err, "%s%s", where, msg);
        }
    }
    if (ferror(f))
        return errbuf_set(err, "%s: read error", self->path);
    return RS_OK;
}

/* Secrets (the table's secret keys) from files of their own, one per key and named
 * after it: $CREDENTIALS_DIRECTORY (systemd's LoadCredential=, which gives each unit
 * only the secrets it uses) when the program runs under systemd, else the folder
 * "credentials" beside the configuration file (/etc/restock/credentials/, made by the
 * package: restockctl run by root reads it there). The configuration file is a
 * conffile that an upgrade may replace; these files are not. A file that is missing
 * or that this user may not read is skipped (the program does not use that secret);
 * an empty one too, so that the package's empty placeholders leave a value set in
 * the configuration file in force. */
#define CONF_SECRET_MAX 1024

static char *
conf_secret_dir(const char *config_path)
{
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    const char *slash;
    char *dir;

    if (creds != NULL && *creds != '\0')
        return strdup(creds);
    slash = strrchr(config_path, '/');
    if (slash == NULL)
        return strdup("credentials");
    dir = malloc((size_t)(slash - config_path) + sizeof("/credentials"));
    if (dir != NULL)
        sprintf(dir, "%.*s/credentials", (int)(slash - config_path), config_path);
    return dir;
}

/* Reads dir/key into value (NUL-terminated, one final newline dropped). 1 when it
 * holds a value, 0 when there is none to take, RS_ERR when it is unusable. */
static int
conf_secret_read(const char *dir, const char *key, char value[CONF_SECRET_MAX + 1], errbuf *err)
{
    char path[PATH_MAX];
    ssize_t n, len = 0;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT || errno == EACCES || errno == ENOTDIR
                   ? 0
                   : errbuf_set(err, "secret %s: %s", path, strerror(errno));
    while (len <= CONF_SECRET_MAX &&
           (n = read(fd, value + len, (size_t)(CONF_SECRET_MAX + 1 - len))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return errbuf_set(err, "secret %s: %s", path, strerror(errno));
        }
        len += n;
    }
    close(fd);
    if (len > CONF_SECRET_MAX)
        return errbuf_set(err, "secret %s: longer than %d bytes", path, CONF_SECRET_MAX);
    if (len > 0 && value[len - 1] == '\n')
        len--;
    value[len] = '\0';
    /* The value is never in the message: it is a secret. */
    if (memchr(value, '\n', (size_t)len) != NULL || strlen(value) != (size_t)len)
        return errbuf_set(err, "secret %s: more than one line, or a NUL byte", path);
    return len > 0;
}

static int
conf_load_secrets(conf *self, const char *config_path, errbuf *err)
{
    char value[CONF_SECRET_MAX + 1];
    char *dir = conf_secret_dir(config_path);
    int rc = RS_OK;

    if (dir == NULL)
        return errbuf_set(err, "out of memory");
    for (size_t i = 0; i < CONF_NPARAMS && rc == RS_OK; i++) {
        int got;
        if (!conf_params[i].secret)
            continue;
        /* Under systemd a secret in the shared file is readable by every program,
         * also those that do not use it: the operator is told, by key only. */
        if (self->origins[i] == self->path && *self->values[i] != '\0' &&
            getenv("CREDENTIALS_DIRECTORY") != NULL)
            log_warn("event=secret_in_config key=%s config=%s action=\"move it into a file "
                     "of its own (restock.conf(5), SECRETS)\"",
                     conf_params[i].key, self->path);
        got = conf_secret_read(dir, conf_params[i].key, value, err);
        if (got < 0)
            rc = RS_ERR;
        else if (got > 0)
            rc = conf_set(self, i, value, "credential", err);
    }
    explicit_bzero(value, sizeof(value));
    free(dir);
    return rc;
}

static atomic_ulong conf_generations;

conf *
conf_new(const char *path, errbuf *err)
{
    conf *self = calloc(1, sizeof(*self));
    int explicit = 1;
    FILE *f = NULL;

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    atomic_init(&self->refs, 1);
    self->generation = atomic_fetch_add(&conf_generations, 1) + 1;
    for (size_t i = 0; i < CONF_NPARAMS; i++)
        if (conf_set(self, i, conf_params[i].def, "default", err) != RS_OK)
            goto fail; /* a bad default is a bug the unit test catches */

    if (path == NULL)
        path = getenv("RESTOCK_CONFIG");
    if (path == NULL || *path == '\0') {
        path = CONF_DEFAULT_PATH;
        explicit = 0;
    }
    f = fopen(path, "r");
    if (f == NULL && (explicit || errno != ENOENT)) {
        errbuf_set(err, "cannot open configuration %s: %s", path, strerror(errno));
        goto fail;
    }
    if (f != NULL) {
        self->path = strdup(path);
        if (self->path == NULL) {
            errbuf_set(err, "out of memory");
            goto fail;
        }
        if (conf_load_file(self, f, err) != RS_OK)
            goto fail;
        fclose(f);
        f = NULL;
    }
    if (conf_load_secrets(self, path, err) != RS_OK)
        goto fail;

    for (size_t i = 0; i < CONF_NPARAMS; i++) {
        char name[128];
        const char *value;
        size_t k;

        k = (size_t)snprintf(name, sizeof(name), "RESTOCK_");
        for (const char *c = conf_params[i].key; *c && k < sizeof(name) - 1; c++)
            name[k++] = (char)toupper((unsigned char)*c);
        name[k] = '\0';
        value = getenv(name);
        if (value != NULL && conf_set(self, i, value, "environment", err) != RS_OK)
            goto fail;
    }
    return self;

fail:
    if (f != NULL)
        fclose(f);
    conf_destroy(&self);
    return NULL;
}

void
conf_destroy(conf **self_p)
{
    conf *self = *self_p;

    if (self == NULL)
        return;
    *self_p = NULL;
    if (atomic_fetch_sub(&self->refs, 1) > 1)
        return; /* another holder still reads it */
    for (size_t i = 0; i < CONF_NPARAMS; i++)
        free(self->values[i]);
    free(self->path);
    free(self);
}

conf *
conf_ref(conf *self)
{
    atomic_fetch_add(&self->refs, 1);
    return self;
}

unsigned long
conf_generation(const conf *self)
{
    return self->generation;
}

/* The process's current snapshot: swapped whole under the lock, so that a reader
 * gets either the old or the new one, never a mix, and keeps it as long as it
 * holds its reference. */
static pthread_mutex_t conf_current_lock = PTHREAD_MUTEX_INITIALIZER;
static conf *conf_current_cf;

conf *
conf_current(void)
{
    conf *cf;

    pthread_mutex_lock(&conf_current_lock);
    cf = conf_current_cf ? conf_ref(conf_current_cf) : NULL;
    pthread_mutex_unlock(&conf_current_lock);
    return cf;
}

void
conf_set_current(conf *cf)
{
    conf *old;

    pthread_mutex_lock(&conf_current_lock);
    old = conf_current_cf;
    conf_current_cf = cf ? conf_ref(cf) : NULL;
    pthread_mutex_unlock(&conf_current_lock);
    conf_destroy(&old);
}

int
conf_differs(const conf *a, const conf *b, const char *key)
{
    int i = conf_index_or_abort(key);

    return strcmp(a->values[i], b->values[i]) != 0;
}

int
conf_each_changed(const conf *old, const conf *new_cf, void (*fn)(void *arg, const char *key),
                  void *arg)
{
    int n = 0;

    for (size_t i = 0; i < CONF_NPARAMS; i++)
        if (strcmp(old->values[i], new_cf->values[i]) != 0) {
            fn(arg, conf_params[i].key);
            n++;
        }
    return n;
}

static int
conf_index_or_abort(const char *key)
{
    int i = conf_index(key);

    if (i < 0) {
        fprintf(stderr, "error conf bug: unknown configuration key \"%s\"\n", key);
        abort();
    }
    return i;
}

const char *
conf_str(const conf *self, const char *key)
{
    return self->values[conf_index_or_abort(key)];
}

long
conf_int(const conf *self, const char *key)
{
    return self->ints[conf_index_or_abort(key)];
}

const char *
conf_path(const conf *self)
{
    return self->path;
}

conf *
conf_from_args(int argc, char **argv, const char *program, void (*usage)(FILE *out),
               int *exit_status)
{
    const char *path = NULL;
    errbuf err = {{0}};
    conf *cf;
    int opt;

    log_init(program, LOG_LEVEL_INFO);
    while ((opt = getopt(argc, argv, "c:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            usage(stdout);
            *exit_status = 0;
            return NULL;
        default:
            usage(stderr);
            *exit_status = 2;
            return NULL;
        }
    }
    if (optind != argc) {
        usage(stderr);
        *exit_status = 2;
        return NULL;
    }
    cf = conf_new(path, &err);
    if (cf == NULL) {
        log_error("event=config_failed error=\"%s\"", err.msg);
        *exit_status = 1;
        return NULL;
    }
    log_init(program, (enum log_level)log_level_parse(conf_str(cf, "log_level")));
    /* The daemons hold secrets and all run as one user: not dumpable, so that
     * another process of that user cannot read their memory, nor their
     * credentials through /proc/PID/root (restock.conf(5), SECRETS). It also
     * turns core dumps off, as ssh-agent does for its keys. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        log_error("event=config_failed error=\"prctl(PR_SET_DUMPABLE): %s\"", strerror(errno));
        conf_destroy(&cf);
        *exit_status = 1;
        return NULL;
    }
    return cf;
}

void
conf_write_defaults(FILE *out)
{
    fprintf(out, "# restock configuration: `key = value`, one per line. A '#' at the start of a\n"
                 "# line or after a space starts a comment; a value with \" #\" in it is written\n"
                 "# in double quotes (\\\" and \\\\ inside them for a quote and a backslash).\n"
                 "# Every key can be overridden by an environment variable RESTOCK_<KEY>\n"
                 "# (for example RESTOCK_DB_HOST). Durations are in seconds.\n"
                 "# Every key is shown at its default, commented out.\n");
    for (size_t i = 0; i < CONF_NPARAMS; i++) {
        const struct conf_param *p = &conf_params[i];
        if (p->section != NULL)
            fprintf(out, "\n## %s\n", p->section);
        fprintf(out, "\n# %s", p->doc);
        if (p->type == CONF_ENUM)
            fprintf(out, " One of: %s.", p->choices);
        else if (p->type == CONF_INT)
            fprintf(out, " (%ld..%ld)", p->min, p->max);
        fprintf(out, "\n#%s = %s\n", p->key, p->def);
    }
}

void
conf_write_effective(const conf *self, FILE *out)
{
    for (size_t i = 0; i < CONF_NPARAMS; i++) {
        const char *v = self->values[i];
        if (conf_params[i].secret && *v != '\0')
            v = "********";
        fprintf(out, "%s = %s\t# %s\n", conf_params[i].key, v, self->origins[i]);
    }
}

struct conf_reload_note {
    const char *const *changeable;
    int kept;
};

static void
conf_reload_note(void *arg, const char *key)
{
    struct conf_reload_note *n = arg;

    for (const char *const *k = n->changeable; *k != NULL; k++)
        if (strcmp(*k, key) == 0) {
            /* The key, never its value: it may be a secret. */
            log_info("event=config_changed key=%s", key);
            return;
        }
    log_warn("event=config_kept key=%s reason=\"cannot change while running: the old value "
             "stays until a restart\"",
             key);
    n->kept++;
}

conf *
conf_reload(const conf *old, const char *const *changeable, errbuf *err)
{
    struct conf_reload_note note = {changeable, 0};
    conf *cf = conf_new(conf_path(old), err);
    int changed;

    if (cf == NULL)
        return NULL;
    /* A key that cannot change keeps its old value in the new snapshot, so that
     * whoever reads the current configuration never sees it half-applied. */
    changed = conf_each_changed(old, cf, conf_reload_note, &note);
    for (size_t i = 0; i < CONF_NPARAMS; i++) {
        int can = 0;
        for (const char *const *k = changeable; *k != NULL; k++)
            can = can || strcmp(*k, conf_params[i].key) == 0;
        /* An origin that is old's path must not outlive old: the same file's. */
        const char *origin =
            old->origins[i] == old->path && cf->path != NULL ? cf->path : old->origins[i];
        if (!can && strcmp(old->values[i], cf->values[i]) != 0 &&
            conf_set(cf, i, old->values[i], origin, err) != RS_OK) {
            conf_destroy(&cf);
            return NULL;
        }
    }
    log_info("event=reloaded config=%s changed=%d kept=%d", cf->path ? cf->path : "(defaults)",
             changed - note.kept, note.kept);
    return cf;
}

conf *
conf_reload_current(const char *const *changeable)
{
    errbuf err = {{0}};
    conf *now = conf_current(), *cf = NULL;

    if (now != NULL)
        cf = conf_reload(now, changeable, &err);
    conf_destroy(&now);
    if (cf == NULL) {
        log_error("event=reload_failed error=\"%s\" action=\"the old configuration is kept\"",
                  err.msg);
        metrics_count(METRICS_RELOADS_FAILED);
        return NULL;
    }
    log_set_level((enum log_level)log_level_parse(conf_str(cf, "log_level")));
    conf_set_current(cf);
    metrics_count(METRICS_RELOADS_OK);
    return cf;
}
