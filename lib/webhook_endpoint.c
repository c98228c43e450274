/* webhook_endpoint: webhook endpoints, their sealed secrets and the checks of
 * what restockctl is given (see webhook_endpoint.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "utf8.h"
#include "webhook_endpoint.h"

_Static_assert(WEBHOOK_ENDPOINT_SECRET_LEN - (sizeof(WEBHOOK_ENDPOINT_SECRET_PREFIX) - 1) + 1 ==
                   sodium_base64_ENCODED_LEN(WEBHOOK_SIG_KEY_NEW, sodium_base64_VARIANT_ORIGINAL),
               "a secret is the prefix and its random bytes in base64");
_Static_assert(WEBHOOK_ENDPOINT_KEY_BYTES == crypto_box_PUBLICKEYBYTES &&
                   WEBHOOK_ENDPOINT_KEY_BYTES == crypto_box_SECRETKEYBYTES &&
                   WEBHOOK_ENDPOINT_KEY_BYTES == crypto_scalarmult_BYTES,
               "the keys are crypto_box's (X25519)");
_Static_assert(WEBHOOK_ENDPOINT_SEAL_BYTES == crypto_box_SEALBYTES, "a sealed box's overhead");
_Static_assert(WEBHOOK_NTYPES <= 32, "a set of types is an unsigned");

/* -- types and lists ------------------------------------------------------------- */

static const char *const webhook_endpoint_types[WEBHOOK_NTYPES] = {
    [WEBHOOK_STOCK_REORDER_POINT] = "stock.reorder_point",
    [WEBHOOK_STOCK_SOLD_OUT] = "stock.sold_out",
    [WEBHOOK_STOCK_ARRIVED] = "stock.arrived",
    [WEBHOOK_ORDER_OPENED] = "order.opened",
    [WEBHOOK_ORDER_SENT] = "order.sent",
    [WEBHOOK_ORDER_FULFILLED] = "order.fulfilled",
    [WEBHOOK_ORDER_FAILED] = "order.failed",
    [WEBHOOK_ORDER_OVERDUE] = "order.overdue",
    [WEBHOOK_DELIVERY_REFUSED] = "delivery.refused",
    [WEBHOOK_HOLD_EXPIRED] = "hold.expired",
    [WEBHOOK_PING] = "ping",
};

const char *
webhook_endpoint_type_name(enum webhook_type type)
{
    return (unsigned)type < WEBHOOK_NTYPES ? webhook_endpoint_types[type] : "unknown";
}

int
webhook_endpoint_type_parse(const char *name)
{
    for (int i = 0; i < WEBHOOK_NTYPES; i++)
        if (strcmp(webhook_endpoint_types[i], name) == 0)
            return i;
    return -1;
}

void
webhook_endpoint_events_format(unsigned events, char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; i < WEBHOOK_NTYPES && used < size; i++)
        if (events & (1u << i))
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "",
                                     webhook_endpoint_types[i]);
}

int
webhook_endpoint_events_parse(const char *list, unsigned *events, errbuf *err)
{
    char known[WEBHOOK_ENDPOINT_EVENTS_MAX + 1], name[64];
    const char *p = list;

    *events = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int type;

        while (n > 0 && (*p == ' ' || *p == '\t'))
            p++, n--;
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        snprintf(name, sizeof(name), "%.*s", (int)n, p);
        type = n < sizeof(name) ? webhook_endpoint_type_parse(name) : -1;
        if (type < 0 || type == WEBHOOK_PING) {
            webhook_endpoint_events_format((1u << WEBHOOK_PING) - 1, known, sizeof(known));
            *events = 0;
            if (n == 0)
                return errbuf_set(err, "--events: an empty type in \"%s\"; the types are: %s", list,
                                  known);
            if (type == WEBHOOK_PING)
                return errbuf_set(err,
                                  "--events: ping is not subscribed to (restockctl webhook ping "
                                  "sends it to any endpoint); the types are: %s",
                                  known);
            return errbuf_set(err, "--events: unknown type \"%s\"; the types are: %s", name, known);
        }
        *events |= 1u << type;
        if (comma == NULL)
            return RS_OK;
        p = comma + 1;
    }
}

/* -- URLs ------------------------------------------------------------------------ */

static int
webhook_endpoint_is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

int
webhook_endpoint_url_check(const char *url, errbuf *err)
{
    size_t len = strlen(url), scheme, host_len;
    const char *host, *end, *port = NULL;

    if (len > WEBHOOK_ENDPOINT_URL_MAX)
        return errbuf_set(err, "the URL is longer than %d bytes", WEBHOOK_ENDPOINT_URL_MAX);
    /* Printable ASCII only: a blank or a control character would be a different
     * request line, and a name outside ASCII is written in punycode. */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return errbuf_set(err,
                              "the URL has a blank, a control or a non-ASCII character at "
                              "byte %zu (percent-encode it; a host in punycode)",
                              i + 1);
    if (strncasecmp(url, "https://", 8) == 0)
        scheme = 8;
    else if (strncasecmp(url, "http://", 7) == 0)
        scheme = 7;
    else
        return errbuf_set(err, "the URL must start with https:// or http://");
    host = url + scheme;
    end = host + strcspn(host, "/?#");
    /* The authority: no user or password, which `webhook list` would show and
     * every log of the delivery could quote; the secret signs the request. */
    if (memchr(host, '@', (size_t)(end - host)) != NULL)
        return errbuf_set(err, "the URL has a user or password in it (user@host): give the "
                               "endpoint a URL without them; restock signs each request");
    if (strchr(url, '#') != NULL)
        return errbuf_set(err, "the URL has a fragment (#…), which is never sent");
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (close == NULL)
            return errbuf_set(err, "the URL's IPv6 address has no closing ']'");
        host_len = (size_t)(close - host) + 1;
        for (const char *c = host + 1; c < close; c++)
            if (!(strchr("0123456789abcdefABCDEF:.", *c) != NULL))
                return errbuf_set(err, "the URL's IPv6 address is not one");
        if (close == host + 1)
            return errbuf_set(err, "the URL has no host");
        if (close + 1 < end && close[1] != ':')
            return errbuf_set(err, "the URL has text after its IPv6 address");
        if (close + 1 < end)
            port = close + 2;
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        host_len = (size_t)((colon ? colon : end) - host);
        if (colon != NULL)
            port = colon + 1;
        for (size_t i = 0; i < host_len; i++)
            if (!webhook_endpoint_is_host_char(host[i]))
                return errbuf_set(err, "the URL's host has a character that no host name has "
                                       "(letters, digits, '-', '.')");
    }
    if (host_len == 0)
        return errbuf_set(err, "the URL has no host");
    if (port != NULL) {
        long value = 0;
        if (port == end)
            return errbuf_set(err, "the URL has an empty port");
        for (const char *c = port; c < end; c++) {
            if (*c < '0' || *c > '9' || value > 65535)
                return errbuf_set(err, "the URL's port is not a number from 1 to 65535");
            value = value * 10 + (*c - '0');
        }
        if (value < 1 || value > 65535)
            return errbuf_set(err, "the URL's port is not a number from 1 to 65535");
    }
    return RS_OK;
}

/* -- secrets and keys ------------------------------------------------------------ */

int
webhook_endpoint_init(errbuf *err)
{
    if (sodium_init() < 0)
        return errbuf_set(err, "libsodium cannot initialise");
    return RS_OK;
}

/* 64 hex digits into 32 bytes; RS_ERR saying what, never the value. */
static int
webhook_endpoint_hex_key(const char *hex, unsigned char out[WEBHOOK_ENDPOINT_KEY_BYTES],
                         const char *what, errbuf *err)
{
    size_t used = 0;

    if (strlen(hex) != WEBHOOK_ENDPOINT_KEY_HEX ||
        sodium_hex2bin(out, WEBHOOK_ENDPOINT_KEY_BYTES, hex, WEBHOOK_ENDPOINT_KEY_HEX, NULL, &used,
                       NULL) != 0 ||
        used != WEBHOOK_ENDPOINT_KEY_BYTES) {
        sodium_memzero(out, WEBHOOK_ENDPOINT_KEY_BYTES);
        return errbuf_set(err, "%s is malformed: expected %d hex digits", what,
                          WEBHOOK_ENDPOINT_KEY_HEX);
    }
    return RS_OK;
}

int
webhook_endpoint_key_private(const char *hex, struct webhook_endpoint_key *key, errbuf *err)
{
    memset(key, 0, sizeof(*key));
    if (*hex == '\0')
        return errbuf_set(err,
                          "webhook_key is not set (the worker's credential: %d hex "
                          "digits, e.g. openssl rand -hex 32)",
                          WEBHOOK_ENDPOINT_KEY_HEX);
    if (webhook_endpoint_init(err) != RS_OK ||
        webhook_endpoint_hex_key(hex, key->sk, "webhook_key", err) != RS_OK)
        return RS_ERR;
    crypto_scalarmult_base(key->pk, key->sk);
    return RS_OK;
}

int
webhook_endpoint_key_public_read(const char *path, struct webhook_endpoint_key *key, errbuf *err)
{
    char line[WEBHOOK_ENDPOINT_KEY_HEX + 3], what[512];
    size_t n;
    FILE *f;

    memset(key, 0, sizeof(*key));
    f = fopen(path, "re");
    if (f == NULL)
        return errbuf_set(err,
                          "webhook public key %s: %s (made from the worker's webhook_key by "
                          "`restockctl webhook key`, run as root)",
                          path, strerror(errno));
    n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    snprintf(what, sizeof(what), "webhook public key %s", path);
    return webhook_endpoint_hex_key(line, key->pk, what, err);
}

void
webhook_endpoint_key_hex(const struct webhook_endpoint_key *key,
                         char out[WEBHOOK_ENDPOINT_KEY_HEX + 1])
{
    sodium_bin2hex(out, WEBHOOK_ENDPOINT_KEY_HEX + 1, key->pk, sizeof(key->pk));
}

int
webhook_endpoint_key_public_write(const char *path, const struct webhook_endpoint_key *key,
                                  errbuf *err)
{
    char hex[WEBHOOK_ENDPOINT_KEY_HEX + 2], tmp[4096];
    size_t len;
    int fd, rc = RS_OK;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return errbuf_set(err, "webhook public key %s: the name is too long", path);
    webhook_endpoint_key_hex(key, hex);
    len = strlen(hex);
    hex[len++] = '\n';
    /* Public: readable by all, so that restockctl run as any user seals. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return errbuf_set(err, "webhook public key %s: %s", tmp, strerror(errno));
    if (fchmod(fd, 0644) != 0 || write(fd, hex, len) != (ssize_t)len || fsync(fd) != 0)
        rc = errbuf_set(err, "webhook public key %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == RS_OK)
        rc = errbuf_set(err, "webhook public key %s: %s", tmp, strerror(errno));
    if (rc == RS_OK && rename(tmp, path) != 0)
        rc = errbuf_set(err, "webhook public key %s: %s", path, strerror(errno));
    if (rc != RS_OK)
        unlink(tmp);
    return rc;
}

int
webhook_endpoint_seal(const char *secret, const struct webhook_endpoint_key *key,
                      unsigned char *out, size_t size, size_t *len, errbuf *err)
{
    size_t n = strlen(secret);

    *len = 0;
    if (n + WEBHOOK_ENDPOINT_SEAL_BYTES > size)
        return errbuf_set(err, "a webhook secret of %zu bytes does not fit its box", n);
    if (crypto_box_seal(out, (const unsigned char *)secret, n, key->pk) != 0)
        return errbuf_set(err, "the webhook secret cannot be sealed");
    *len = n + WEBHOOK_ENDPOINT_SEAL_BYTES;
    return RS_OK;
}

int
webhook_endpoint_unseal(const unsigned char *box, size_t len,
                        const struct webhook_endpoint_key *key,
                        char out[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    size_t n = len > WEBHOOK_ENDPOINT_SEAL_BYTES ? len - WEBHOOK_ENDPOINT_SEAL_BYTES : 0;
    size_t prefix = sizeof(WEBHOOK_ENDPOINT_SECRET_PREFIX) - 1;

    out[0] = '\0';
    if (n == 0 || n > WEBHOOK_ENDPOINT_SECRET_LEN ||
        crypto_box_seal_open((unsigned char *)out, box, len, key->pk, key->sk) != 0)
        return errbuf_set(err, "a webhook secret does not open with this webhook_key (sealed "
                               "to another key, or changed)");
    out[n] = '\0';
    if (n <= prefix || strncmp(out, WEBHOOK_ENDPOINT_SECRET_PREFIX, prefix) != 0 ||
        strlen(out) != n) {
        sodium_memzero(out, WEBHOOK_ENDPOINT_SECRET_LEN + 1);
        return errbuf_set(err, "a sealed webhook secret holds no whsec_ secret");
    }
    return RS_OK;
}

/* -- the table ------------------------------------------------------------------- */

/* What the list shows of a row; the overlap (seconds) decides "rotating". */
#define WEBHOOK_ENDPOINT_COLUMNS                                                                   \
    "endpoint_id, url, events, status, disabled_reason,"                                           \
    " DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'),"                                               \
    " DATE_FORMAT(disabled_at, '%Y-%m-%d %H:%i:%s'),"                                              \
    " DATE_FORMAT(rotated_at, '%Y-%m-%d %H:%i:%s'),"                                               \
    " previous_sealed IS NOT NULL AND rotated_at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND"

enum {
    ST_ADD,
    ST_LIST,
    ST_GET,
    ST_DISABLE,
    ST_ENABLE,
    ST_ROTATE,
    ST_SUBSCRIBED,
    ST_SECRETS,
    ST_TARGET,
    ST_FAILING,
    ST_SUCCEEDED,
    ST_COUNT
};

static const struct db_stmt_def webhook_endpoint_sql[ST_COUNT] = {
    [ST_ADD] = {"INSERT INTO webhook_endpoint (endpoint_id, url, events, secret_sealed,"
                " created_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))",
                0},
    [ST_LIST] = {"SELECT " WEBHOOK_ENDPOINT_COLUMNS " FROM webhook_endpoint ORDER BY endpoint_id",
                 DB_IDEMPOTENT},
    [ST_GET] = {"SELECT " WEBHOOK_ENDPOINT_COLUMNS " FROM webhook_endpoint WHERE endpoint_id = ?",
                DB_IDEMPOTENT},
    /* Only while enabled: a second disable keeps the first one's who, why and when. */
    [ST_DISABLE] = {"UPDATE webhook_endpoint SET status = ?, disabled_reason = ?,"
                    " disabled_at = UTC_TIMESTAMP(6) WHERE endpoint_id = ? AND status = 0",
                    DB_IDEMPOTENT},
    /* A new start: the failing streak that may have disabled it is forgotten. */
    [ST_ENABLE] =
        {"UPDATE webhook_endpoint SET status = 0, disabled_reason = NULL,"
         " disabled_at = NULL, failing_since = NULL WHERE endpoint_id = ? AND status <> 0",
         DB_IDEMPOTENT},
    /* One statement: the current secret becomes the previous one as the new one
     * comes in, so that two rotations at once leave a pair that was current and
     * previous together, never a lost current secret. Not idempotent: run twice
     * it would make the new secret the previous one. */
    [ST_ROTATE] = {"UPDATE webhook_endpoint SET previous_sealed = secret_sealed,"
                   " secret_sealed = ?, rotated_at = UTC_TIMESTAMP(6) WHERE endpoint_id = ?",
                   0},
    [ST_SUBSCRIBED] =
        {"SELECT endpoint_id FROM webhook_endpoint WHERE " WEBHOOK_ENDPOINT_SQL_WANTED_WHERE(
             "?") " ORDER BY endpoint_id",
         DB_IDEMPOTENT},
    [ST_SECRETS] = {"SELECT secret_sealed, IF(rotated_at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND,"
                    " previous_sealed, NULL) FROM webhook_endpoint WHERE endpoint_id = ?",
                    DB_IDEMPOTENT},
    /* A delivery's one read: the secrets in ST_SECRETS's columns, then the rest. */
    [ST_TARGET] = {"SELECT secret_sealed, IF(rotated_at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND,"
                   " previous_sealed, NULL), url, status,"
                   " IFNULL(TIMESTAMPDIFF(SECOND, failing_since, UTC_TIMESTAMP(6)), -1)"
                   " FROM webhook_endpoint WHERE endpoint_id = ?",
                   DB_IDEMPOTENT},
    /* The streak's start is kept: only the first failure after a success sets it. */
    [ST_FAILING] = {"UPDATE webhook_endpoint SET failing_since = UTC_TIMESTAMP(6)"
                    " WHERE endpoint_id = ? AND failing_since IS NULL",
                    DB_IDEMPOTENT},
    [ST_SUCCEEDED] = {"UPDATE webhook_endpoint SET failing_since = NULL"
                      " WHERE endpoint_id = ? AND failing_since IS NOT NULL",
                      DB_IDEMPOTENT},
};

struct webhook_endpoint {
    db_stmt *st[ST_COUNT]; /* they belong to the caller's db and go with it */
};

webhook_endpoint *
webhook_endpoint_new(db *conn, errbuf *err)
{
    webhook_endpoint *self;

    if (webhook_endpoint_init(err) != RS_OK)
        return NULL;
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (db_stmt_table(conn, webhook_endpoint_sql, ST_COUNT, self->st, err) != RS_OK) {
        webhook_endpoint_destroy(&self);
        return NULL;
    }
    return self;
}

void
webhook_endpoint_destroy(webhook_endpoint **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

const char *
webhook_endpoint_status_name(int status)
{
    switch (status) {
    case WEBHOOK_ENABLED:
        return "enabled";
    case WEBHOOK_DISABLED_OPERATOR:
        return "disabled";
    case WEBHOOK_DISABLED_GONE:
        return "gone";
    case WEBHOOK_DISABLED_FAILING:
        return "failing";
    default:
        return "unknown";
    }
}

static int
webhook_endpoint_id(const char *text, unsigned char id[IDENT_BYTES], errbuf *err)
{
    if (ident_parse(text, id) != 0)
        return errbuf_set(err, "\"%s\" is not an endpoint id (a UUID, as webhook list shows)",
                          text);
    return RS_OK;
}

/* A new secret sealed to key, into box; the secret into secret. */
static int
webhook_endpoint_new_secret(const struct webhook_endpoint_key *key,
                            char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], unsigned char *box,
                            size_t size, size_t *len, errbuf *err)
{
    if (webhook_sig_secret_new(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1, err) != RS_OK ||
        webhook_endpoint_seal(secret, key, box, size, len, err) != RS_OK) {
        sodium_memzero(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1);
        return RS_ERR;
    }
    return RS_OK;
}

int
webhook_endpoint_add(webhook_endpoint *self, const char *url, unsigned events,
                     const struct webhook_endpoint_key *key, char id[IDENT_TEXT],
                     char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    unsigned char bin[IDENT_BYTES], box[WEBHOOK_ENDPOINT_SECRET_LEN + WEBHOOK_ENDPOINT_SEAL_BYTES];
    char list[WEBHOOK_ENDPOINT_EVENTS_MAX + 1];
    size_t len;

    id[0] = '\0';
    if (webhook_endpoint_url_check(url, err) != RS_OK)
        return RS_ERR;
    if ((events & (1u << WEBHOOK_PING)) != 0 || events >= (1u << WEBHOOK_NTYPES))
        return errbuf_set(err, "ping and unknown types are not subscribed to");
    webhook_endpoint_events_format(events, list, sizeof(list));
    if (webhook_endpoint_new_secret(key, secret, box, sizeof(box), &len, err) != RS_OK)
        return RS_ERR;
    ident_new_ordered(bin);
    if (db_stmt_exec(self->st[ST_ADD], err, "bssb", bin, sizeof(bin), url, events ? list : NULL,
                     box, len) < 0) {
        sodium_memzero(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1);
        return RS_ERR;
    }
    ident_format(bin, sizeof(bin), id);
    return RS_OK;
}

static void
webhook_endpoint_line_of(db_stmt *st, webhook_endpoint_line_fn fn, void *arg)
{
    char id[IDENT_TEXT];
    size_t len;
    const char *bin = db_stmt_col(st, 0, &len);
    struct webhook_endpoint_line line;

    ident_format(bin, bin ? len : 0, id);
    line = (struct webhook_endpoint_line){
        .id = id,
        .url = db_stmt_col(st, 1, NULL),
        .events = db_stmt_col(st, 2, NULL),
        .status = (int)db_stmt_col_int(st, 3),
        .reason = db_stmt_col(st, 4, NULL),
        .created = db_stmt_col(st, 5, NULL),
        .disabled_at = db_stmt_col(st, 6, NULL),
        .rotated_at = db_stmt_col(st, 7, NULL),
        .rotating = db_stmt_col_int(st, 8) != 0,
    };
    fn(arg, &line);
}

int
webhook_endpoint_each(webhook_endpoint *self, long overlap, webhook_endpoint_line_fn fn, void *arg,
                      errbuf *err)
{
    db_stmt *list = self->st[ST_LIST];

    if (db_stmt_exec(list, err, "i", (long long)overlap) < 0)
        return RS_ERR;
    while (db_stmt_next(list))
        webhook_endpoint_line_of(list, fn, arg);
    return RS_OK;
}

int
webhook_endpoint_get(webhook_endpoint *self, const char *id, long overlap,
                     webhook_endpoint_line_fn fn, void *arg, errbuf *err)
{
    db_stmt *get = self->st[ST_GET];
    unsigned char bin[IDENT_BYTES];
    long long rows;

    if (webhook_endpoint_id(id, bin, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(get, err, "ib", (long long)overlap, bin, sizeof(bin));
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(get))
        return errbuf_set(err, "no webhook endpoint %s", id);
    webhook_endpoint_line_of(get, fn, arg);
    return 1;
}

static void
webhook_endpoint_ignore(void *arg, const struct webhook_endpoint_line *line)
{
    (void)arg;
    (void)line;
}

/* 1 when an update found nothing to change because the row is already so, RS_ERR
 * when there is no such row. */
static int
webhook_endpoint_unchanged(webhook_endpoint *self, const char *id, errbuf *err)
{
    return webhook_endpoint_get(self, id, 0, webhook_endpoint_ignore, NULL, err) == 1 ? 0 : RS_ERR;
}

int
webhook_endpoint_disable(webhook_endpoint *self, const char *id, int status, const char *reason,
                         errbuf *err)
{
    unsigned char bin[IDENT_BYTES];
    long long rows;

    if (status != WEBHOOK_DISABLED_OPERATOR && status != WEBHOOK_DISABLED_GONE &&
        status != WEBHOOK_DISABLED_FAILING)
        return errbuf_set(err, "status %d is not a disabled one", status);
    if (reason != NULL) {
        size_t n = strlen(reason);
        if (n == 0 || n > WEBHOOK_ENDPOINT_REASON_MAX || !utf8_valid(reason, n))
            return errbuf_set(err, "a reason is 1 to %d bytes of UTF-8",
                              WEBHOOK_ENDPOINT_REASON_MAX);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
                return errbuf_set(err, "a reason has no control characters (one line)");
    }
    if (webhook_endpoint_id(id, bin, err) != RS_OK)
        return RS_ERR;
    rows =
        db_stmt_exec(self->st[ST_DISABLE], err, "isb", (long long)status, reason, bin, sizeof(bin));
    if (rows < 0)
        return RS_ERR;
    return rows == 1 ? 1 : webhook_endpoint_unchanged(self, id, err);
}

int
webhook_endpoint_enable(webhook_endpoint *self, const char *id, errbuf *err)
{
    unsigned char bin[IDENT_BYTES];
    long long rows;

    if (webhook_endpoint_id(id, bin, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(self->st[ST_ENABLE], err, "b", bin, sizeof(bin));
    if (rows < 0)
        return RS_ERR;
    return rows == 1 ? 1 : webhook_endpoint_unchanged(self, id, err);
}

int
webhook_endpoint_rotate(webhook_endpoint *self, const char *id,
                        const struct webhook_endpoint_key *key,
                        char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    unsigned char bin[IDENT_BYTES], box[WEBHOOK_ENDPOINT_SECRET_LEN + WEBHOOK_ENDPOINT_SEAL_BYTES];
    size_t len;
    long long rows;

    secret[0] = '\0';
    if (webhook_endpoint_id(id, bin, err) != RS_OK ||
        webhook_endpoint_new_secret(key, secret, box, sizeof(box), &len, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(self->st[ST_ROTATE], err, "bb", box, len, bin, sizeof(bin));
    if (rows != 1) {
        sodium_memzero(secret, WEBHOOK_ENDPOINT_SECRET_LEN + 1);
        return rows < 0 ? RS_ERR : errbuf_set(err, "no webhook endpoint %s", id);
    }
    return RS_OK;
}

int
webhook_endpoint_subscribed(webhook_endpoint *self, enum webhook_type type,
                            webhook_endpoint_id_fn fn, void *arg, errbuf *err)
{
    db_stmt *st = self->st[ST_SUBSCRIBED];

    if ((int)type < 0 || type >= WEBHOOK_PING)
        return errbuf_set(err, "type %d is not subscribed to", (int)type);
    if (db_stmt_exec(st, err, "s", webhook_endpoint_types[type]) < 0)
        return RS_ERR;
    while (db_stmt_next(st)) {
        size_t len;
        const char *id = db_stmt_col(st, 0, &len);
        if (id != NULL && len == IDENT_BYTES)
            fn(arg, (const unsigned char *)id);
    }
    return RS_OK;
}

/* Opens the sealed secrets in columns 0 (current) and 1 (previous, may be NULL)
 * of st's row. */
static int
webhook_endpoint_open_row(db_stmt *st, const struct webhook_endpoint_key *key,
                          char current[WEBHOOK_ENDPOINT_SECRET_LEN + 1],
                          char previous[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    const char *box;
    size_t len;

    box = db_stmt_col(st, 0, &len);
    if (box == NULL ||
        webhook_endpoint_unseal((const unsigned char *)box, len, key, current, err) != RS_OK)
        return box == NULL ? errbuf_set(err, "an endpoint without a secret") : RS_ERR;
    box = db_stmt_col(st, 1, &len);
    if (box != NULL &&
        webhook_endpoint_unseal((const unsigned char *)box, len, key, previous, err) != RS_OK) {
        sodium_memzero(current, WEBHOOK_ENDPOINT_SECRET_LEN + 1);
        return RS_ERR;
    }
    return RS_OK;
}

int
webhook_endpoint_secrets(webhook_endpoint *self, const unsigned char id[IDENT_BYTES], long overlap,
                         const struct webhook_endpoint_key *key,
                         char current[WEBHOOK_ENDPOINT_SECRET_LEN + 1],
                         char previous[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err)
{
    db_stmt *st = self->st[ST_SECRETS];
    long long rows;

    current[0] = previous[0] = '\0';
    rows = db_stmt_exec(st, err, "ib", (long long)overlap, id, (size_t)IDENT_BYTES);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(st))
        return 0;
    return webhook_endpoint_open_row(st, key, current, previous, err) == RS_OK ? 1 : RS_ERR;
}

int
webhook_endpoint_target(webhook_endpoint *self, const unsigned char id[IDENT_BYTES], long overlap,
                        const struct webhook_endpoint_key *key, struct webhook_endpoint_target *t,
                        errbuf *err)
{
    db_stmt *st = self->st[ST_TARGET];
    const char *url;
    long long rows;

    memset(t, 0, sizeof(*t));
    rows = db_stmt_exec(st, err, "ib", (long long)overlap, id, (size_t)IDENT_BYTES);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(st))
        return 0;
    url = db_stmt_col(st, 2, NULL);
    snprintf(t->url, sizeof(t->url), "%s", url ? url : "");
    t->status = (int)db_stmt_col_int(st, 3);
    t->failing_for = db_stmt_col_int(st, 4);
    t->opened = webhook_endpoint_open_row(st, key, t->current, t->previous, err) == RS_OK;
    if (!t->opened)
        webhook_endpoint_target_wipe(t);
    return 1;
}

void
webhook_endpoint_target_wipe(struct webhook_endpoint_target *t)
{
    sodium_memzero(t->current, sizeof(t->current));
    sodium_memzero(t->previous, sizeof(t->previous));
}

int
webhook_endpoint_failing(webhook_endpoint *self, const unsigned char id[IDENT_BYTES], errbuf *err)
{
    return db_stmt_exec(self->st[ST_FAILING], err, "b", id, (size_t)IDENT_BYTES) < 0 ? RS_ERR
                                                                                     : RS_OK;
}

int
webhook_endpoint_succeeded(webhook_endpoint *self, const unsigned char id[IDENT_BYTES], errbuf *err)
{
    return db_stmt_exec(self->st[ST_SUCCEEDED], err, "b", id, (size_t)IDENT_BYTES) < 0 ? RS_ERR
                                                                                       : RS_OK;
}
