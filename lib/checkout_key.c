/* checkout_key: keyed checkouts' stored answers (see checkout_key.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "checkout_key.h"

/* CHECKOUT_KEY_PRUNE_BATCH, rows one prune deletes: small enough that it holds
 * few locks for little time beside the checkouts. */
#define CHECKOUT_KEY_STR_(x) #x
#define CHECKOUT_KEY_STR(x)  CHECKOUT_KEY_STR_(x)

_Static_assert(CHECKOUT_KEY_FINGERPRINT == crypto_hash_sha256_BYTES, "the fingerprint is SHA-256");

/* -- the header ------------------------------------------------------------------ */

static int
checkout_key_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One character of the key: from lowest (0x20 quoted, 0x21 bare) to '~'. */
static int
checkout_key_put(char *out, size_t *n, unsigned char c, unsigned char lowest, errbuf *err)
{
    if (c < lowest || c > 0x7e)
        return errbuf_set(err,
                          "Idempotency-Key: byte 0x%02x is not %s ASCII (a key is 1 to %d "
                          "characters of it%s)",
                          c, lowest == 0x20 ? "printable" : "visible", CHECKOUT_KEY_MAX,
                          lowest == 0x20 ? "" : ", or a quoted string");
    if (*n == CHECKOUT_KEY_MAX)
        return errbuf_set(err, "Idempotency-Key: longer than %d characters", CHECKOUT_KEY_MAX);
    out[(*n)++] = (char)c;
    return RS_OK;
}

int
checkout_key_parse(const char *value, char out[CHECKOUT_KEY_MAX + 1], errbuf *err)
{
    const char *p = value, *end = value + strlen(value);
    size_t n = 0;

    /* Spaces around a field value are not part of it (RFC 9110 §5.5). */
    while (p < end && checkout_key_is_ows(*p))
        p++;
    while (end > p && checkout_key_is_ows(end[-1]))
        end--;
    if (p < end && *p == '"') {
        /* A Structured Field string (RFC 8941 §3.3.3): printable ASCII, with
         * only \" and \\ as escapes, and nothing after the closing quote. */
        for (p++;; p++) {
            unsigned char c;

            if (p == end)
                return errbuf_set(err, "Idempotency-Key: the opening quote has no closing quote");
            c = (unsigned char)*p;
            if (c == '"')
                break;
            if (c == '\\') {
                if (p + 1 == end || (p[1] != '"' && p[1] != '\\'))
                    return errbuf_set(err, "Idempotency-Key: only \\\" and \\\\ may be escaped");
                c = (unsigned char)*++p;
            }
            if (checkout_key_put(out, &n, c, 0x20, err) != RS_OK)
                return RS_ERR;
        }
        if (p + 1 != end)
            return errbuf_set(err, "Idempotency-Key: unexpected text after the closing quote");
    } else {
        /* Bare, as Stripe's clients send it: visible ASCII, no spaces. */
        for (; p < end; p++)
            if (checkout_key_put(out, &n, (unsigned char)*p, 0x21, err) != RS_OK)
                return RS_ERR;
    }
    out[n] = '\0';
    if (n == 0)
        return errbuf_set(err, "Idempotency-Key: empty (a key is 1 to %d characters)",
                          CHECKOUT_KEY_MAX);
    return RS_OK;
}

int
checkout_key_check_anonymous(const char *key, errbuf *err)
{
    if (strlen(key) < CHECKOUT_KEY_ANON_MIN)
        return errbuf_set(err,
                          "Idempotency-Key: an anonymous key must be at least %d characters (a "
                          "UUID is 36): a shorter one may be another client's; or send your "
                          "client key (Authorization: Bearer), whose keys are your own",
                          CHECKOUT_KEY_ANON_MIN);
    return RS_OK;
}

void
checkout_key_fingerprint(long long client, const char *sku, long long quantity,
                         unsigned char out[CHECKOUT_KEY_FINGERPRINT])
{
    crypto_hash_sha256_state st;
    char text[32];
    int n = snprintf(text, sizeof(text), "%lld", quantity);

    /* The NUL ends the sku: no two (sku, quantity) pairs hash the same text. A
     * client's id follows a second NUL, which no quantity's digits hold; the
     * anonymous fingerprint is what it was before scopes, so that the keys
     * stored then still replay. */
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)sku, strlen(sku) + 1);
    crypto_hash_sha256_update(&st, (const unsigned char *)text, (unsigned long long)n);
    if (client != CHECKOUT_KEY_ANONYMOUS) {
        n = snprintf(text, sizeof(text), "%lld", client);
        crypto_hash_sha256_update(&st, (const unsigned char *)"", 1);
        crypto_hash_sha256_update(&st, (const unsigned char *)text, (unsigned long long)n);
    }
    crypto_hash_sha256_final(&st, out);
}

void
checkout_key_cart_fingerprint(long long client, const char *what,
                              const struct checkout_key_line *lines, const size_t *order, size_t n,
                              unsigned char out[CHECKOUT_KEY_FINGERPRINT])
{
    crypto_hash_sha256_state st;
    char text[32];
    int len;

    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)what, strlen(what) + 1);
    for (size_t i = 0; i < n; i++) {
        const struct checkout_key_line *l = &lines[order[i]];

        /* The NULs end each sku and each quantity: no two carts hash the same text. */
        len = snprintf(text, sizeof(text), "%lld", l->quantity);
        crypto_hash_sha256_update(&st, (const unsigned char *)l->sku, strlen(l->sku) + 1);
        crypto_hash_sha256_update(&st, (const unsigned char *)text, (unsigned long long)len + 1);
    }
    len = snprintf(text, sizeof(text), "%lld", client);
    crypto_hash_sha256_update(&st, (const unsigned char *)text, (unsigned long long)len);
    crypto_hash_sha256_final(&st, out);
}

/* -- the table ------------------------------------------------------------------- */

enum { ST_INSERT, ST_GET, ST_EXPIRE, ST_STORE, ST_PRUNE, ST_INSERT_ROWS, ST_COUNT };

/* DB_IDEMPOTENT: reads, and deletes of what is expired (a second run deletes
 * nothing more than the first would have). */
static const struct db_stmt_def checkout_key_sql[ST_COUNT] = {
    /* IGNORE: a row of the same key makes it a no-op (0 rows), after waiting for
     * the transaction that holds it, if any, to end. */
    [ST_INSERT] = {"INSERT IGNORE INTO checkout_key (client_id, idem_key, fingerprint)"
                   " VALUES (?, ?, ?)",
                   0},
    [ST_GET] = {"SELECT fingerprint, status, body,"
                " created_at < CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND"
                " FROM checkout_key WHERE client_id = ? AND idem_key = ?",
                DB_IDEMPOTENT},
    [ST_EXPIRE] = {"DELETE FROM checkout_key WHERE client_id = ? AND idem_key = ?"
                   " AND created_at < CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND",
                   DB_IDEMPOTENT},
    [ST_STORE] = {"UPDATE checkout_key SET status = ?, body = ?"
                  " WHERE client_id = ? AND idem_key = ?",
                  0},
    [ST_PRUNE] = {"DELETE FROM checkout_key"
                  " WHERE created_at < CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND"
                  " ORDER BY created_at LIMIT " CHECKOUT_KEY_STR(CHECKOUT_KEY_PRUNE_BATCH),
                  DB_IDEMPOTENT},
    /* A batch's keys with their answers, all rows in one bulk execution. */
    [ST_INSERT_ROWS] = {"INSERT INTO checkout_key (client_id, idem_key, fingerprint, status, body)"
                        " VALUES (?, ?, ?, ?, ?)",
                        0},
};

struct checkout_key {
    db_stmt *st[ST_COUNT]; /* they belong to the caller's db and go with it */
};

checkout_key *
checkout_key_new(db *conn, errbuf *err)
{
    checkout_key *self;

    if (sodium_init() < 0) {
        errbuf_set(err, "libsodium cannot initialise");
        return NULL;
    }
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (db_stmt_table(conn, checkout_key_sql, ST_COUNT, self->st, err) != RS_OK) {
        checkout_key_destroy(&self);
        return NULL;
    }
    return self;
}

void
checkout_key_destroy(checkout_key **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

int
checkout_key_claim(checkout_key *self, long long client, const char *key,
                   const unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT], long retention,
                   struct checkout_key_answer *stored, errbuf *err)
{
    db_stmt *get = self->st[ST_GET];
    size_t klen = strlen(key);

    memset(stored, 0, sizeof(*stored));
    /* Twice at most: once more after deleting an expired row of the key (or
     * after the worker pruned it between the insert and the read). */
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *fp, *body;
        size_t fp_len, body_len;
        long long rows;

        rows = db_stmt_exec(self->st[ST_INSERT], err, "ibb", client, key, klen, fingerprint,
                            (size_t)CHECKOUT_KEY_FINGERPRINT);
        if (rows < 0)
            return RS_ERR;
        if (rows == 1)
            return CHECKOUT_KEY_NEW;
        /* READ COMMITTED: this sees the row the other transaction committed. */
        rows = db_stmt_exec(get, err, "iib", (long long)retention, client, key, klen);
        if (rows < 0)
            return RS_ERR;
        if (rows == 0 || !db_stmt_next(get))
            continue;
        if (db_stmt_col_int(get, 3) != 0) {
            if (db_stmt_exec(self->st[ST_EXPIRE], err, "ibi", client, key, klen,
                             (long long)retention) < 0)
                return RS_ERR;
            continue;
        }
        fp = db_stmt_col(get, 0, &fp_len);
        body = db_stmt_col(get, 2, &body_len);
        stored->status = (int)db_stmt_col_int(get, 1);
        if (stored->status == 0 || body == NULL || body_len > sizeof(stored->body))
            return errbuf_set(err, "database: a checkout key's stored answer is missing or too "
                                   "long");
        if (fp == NULL || fp_len != CHECKOUT_KEY_FINGERPRINT ||
            memcmp(fp, fingerprint, CHECKOUT_KEY_FINGERPRINT) != 0)
            return CHECKOUT_KEY_MISMATCH;
        memcpy(stored->body, body, body_len);
        stored->len = body_len;
        return CHECKOUT_KEY_REPLAY;
    }
    return errbuf_set(err, "database: a checkout key's row came and went twice under its claim");
}

int
checkout_key_store(checkout_key *self, long long client, const char *key, int status,
                   const char *body, size_t len, errbuf *err)
{
    long long rows;

    if (len > CHECKOUT_KEY_BODY_MAX)
        return errbuf_set(err, "a checkout answer of %zu bytes is longer than %d", len,
                          CHECKOUT_KEY_BODY_MAX);
    rows = db_stmt_exec(self->st[ST_STORE], err, "ibib", (long long)status, body, len, client, key,
                        strlen(key));
    if (rows < 0)
        return RS_ERR;
    if (rows != 1)
        return errbuf_set(err, "database: a claimed checkout key's row is not there to store "
                               "its answer");
    return RS_OK;
}

int
checkout_key_insert_batch(checkout_key *self, const struct checkout_key_entry *entries, size_t n,
                          errbuf *err)
{
    /* The columns as db_stmt_bulk takes them: an array of each. */
    long long *clients = calloc(n, sizeof(*clients)), *statuses = calloc(n, sizeof(*statuses));
    const char **keys = calloc(n, sizeof(*keys));
    const void **prints = calloc(n, sizeof(*prints)), **bodies = calloc(n, sizeof(*bodies));
    unsigned long *print_lens = calloc(n, sizeof(*print_lens));
    unsigned long *body_lens = calloc(n, sizeof(*body_lens));
    long long rows = RS_ERR;

    if (clients == NULL || statuses == NULL || keys == NULL || prints == NULL || bodies == NULL ||
        print_lens == NULL || body_lens == NULL) {
        errbuf_set(err, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        clients[i] = entries[i].client;
        keys[i] = entries[i].key;
        prints[i] = entries[i].fingerprint;
        print_lens[i] = CHECKOUT_KEY_FINGERPRINT;
        statuses[i] = entries[i].status;
        bodies[i] = entries[i].body;
        body_lens[i] = (unsigned long)entries[i].len;
    }
    rows = db_stmt_bulk(self->st[ST_INSERT_ROWS], n, err, "isbib", clients, keys, prints,
                        print_lens, statuses, bodies, body_lens);
done:
    free(clients), free(statuses), free(keys), free(prints), free(bodies);
    free(print_lens), free(body_lens);
    return rows < 0 ? RS_ERR : RS_OK;
}

long long
checkout_key_prune(checkout_key *self, long retention, errbuf *err)
{
    return db_stmt_exec(self->st[ST_PRUNE], err, "i", (long long)retention);
}
