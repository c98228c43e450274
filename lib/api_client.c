/* api_client: API client keys, made, checked and stored hashed (see api_client.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "api_client.h"

_Static_assert(API_CLIENT_HASH_BYTES == crypto_hash_sha256_BYTES, "a key's hash is SHA-256");
_Static_assert(API_CLIENT_KEY_LEN - (sizeof(API_CLIENT_PREFIX) - 1) + 1 ==
                   sodium_base64_ENCODED_LEN(API_CLIENT_KEY_BYTES,
                                             sodium_base64_VARIANT_URLSAFE_NO_PADDING),
               "a key is the prefix and its random bytes in base64url");

/* -- keys and names -------------------------------------------------------------- */

int
api_client_init(errbuf *err)
{
    if (sodium_init() < 0)
        return errbuf_set(err, "libsodium cannot initialise");
    return RS_OK;
}

void
api_client_key_make(char out[API_CLIENT_KEY_LEN + 1])
{
    unsigned char secret[API_CLIENT_KEY_BYTES];
    size_t prefix = sizeof(API_CLIENT_PREFIX) - 1;

    randombytes_buf(secret, sizeof(secret));
    memcpy(out, API_CLIENT_PREFIX, prefix);
    sodium_bin2base64(out + prefix, API_CLIENT_KEY_LEN + 1 - prefix, secret, sizeof(secret),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret, sizeof(secret));
}

static int
api_client_is_base64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int
api_client_parse_authorization(const char *value, char out[API_CLIENT_KEY_LEN + 1], errbuf *err)
{
    const char *p = value, *end = value + strlen(value);
    size_t prefix = sizeof(API_CLIENT_PREFIX) - 1;

    out[0] = '\0';
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - p) < 7 || strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return errbuf_set(err, "Authorization: expected \"Bearer <client key>\"");
    for (p += 7; p < end && (*p == ' ' || *p == '\t'); p++)
        ;
    /* The key's own form, checked before any lookup: what is not a key of ours
     * costs no query. */
    if ((size_t)(end - p) != API_CLIENT_KEY_LEN || strncmp(p, API_CLIENT_PREFIX, prefix) != 0)
        return errbuf_set(err,
                          "Authorization: the bearer key is not a restock client key (%s and "
                          "%zu characters of base64url)",
                          API_CLIENT_PREFIX, API_CLIENT_KEY_LEN - prefix);
    for (const char *c = p + prefix; c < end; c++)
        if (!api_client_is_base64url(*c))
            return errbuf_set(err, "Authorization: the bearer key is not a restock client key "
                                   "(a character outside base64url)");
    memcpy(out, p, API_CLIENT_KEY_LEN);
    out[API_CLIENT_KEY_LEN] = '\0';
    return RS_OK;
}

void
api_client_key_hash(const char *key, unsigned char out[API_CLIENT_HASH_BYTES])
{
    crypto_hash_sha256(out, (const unsigned char *)key, strlen(key));
}

int
api_client_name_check(const char *name, errbuf *err)
{
    size_t n = strlen(name);
    int digits = 1;

    if (n == 0 || n > API_CLIENT_NAME_MAX)
        return errbuf_set(err, "a client's name is 1 to %d characters", API_CLIENT_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return errbuf_set(err, "a client's name is made of letters, digits, '.', '_' and "
                                   "'-'");
        digits = digits && c >= '0' && c <= '9';
    }
    if (digits)
        return errbuf_set(err, "a client's name is not all digits (those are its id)");
    return RS_OK;
}

/* -- the table ------------------------------------------------------------------- */

/* Seconds between two notes of a client's last use: one write a minute per
 * client and thread at most, not one per request on one hot row. */
#define API_CLIENT_USE_PRECISION "60"

enum { ST_FIND, ST_USED, ST_ADD, ST_LIST, ST_BY_ID, ST_BY_NAME, ST_REVOKE, ST_COUNT };

static const struct db_stmt_def api_client_sql[ST_COUNT] = {
    [ST_FIND] = {"SELECT client_id, key_hash, revoked_at IS NULL, last_used_at IS NULL OR"
                 " last_used_at < CURRENT_TIMESTAMP(6) - INTERVAL " API_CLIENT_USE_PRECISION
                 " SECOND FROM api_client WHERE key_hash = ?",
                 DB_IDEMPOTENT},
    [ST_USED] = {"UPDATE api_client SET last_used_at = CURRENT_TIMESTAMP(6) WHERE client_id = ?",
                 DB_IDEMPOTENT},
    /* IGNORE: an active client of the same name makes it a no-op (0 rows). */
    [ST_ADD] = {"INSERT IGNORE INTO api_client (name, key_hash) VALUES (?, ?)", 0},
    [ST_LIST] = {"SELECT client_id, name,"
                 " DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'),"
                 " DATE_FORMAT(last_used_at, '%Y-%m-%d %H:%i:%s'),"
                 " DATE_FORMAT(revoked_at, '%Y-%m-%d %H:%i:%s')"
                 " FROM api_client ORDER BY client_id",
                 DB_IDEMPOTENT},
    [ST_BY_ID] = {"SELECT client_id, revoked_at IS NOT NULL FROM api_client WHERE client_id = ?",
                  DB_IDEMPOTENT},
    [ST_BY_NAME] = {"SELECT client_id, 0 FROM api_client WHERE active_name = ?", DB_IDEMPOTENT},
    [ST_REVOKE] = {"UPDATE api_client SET revoked_at = CURRENT_TIMESTAMP(6)"
                   " WHERE client_id = ? AND revoked_at IS NULL",
                   DB_IDEMPOTENT},
};

struct api_client {
    db_stmt *st[ST_COUNT]; /* they belong to the caller's db and go with it */
};

api_client *
api_client_new(db *conn, errbuf *err)
{
    api_client *self;

    if (api_client_init(err) != RS_OK)
        return NULL;
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (db_stmt_table(conn, api_client_sql, ST_COUNT, self->st, err) != RS_OK) {
        api_client_destroy(&self);
        return NULL;
    }
    return self;
}

void
api_client_destroy(api_client **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

long long
api_client_authenticate(api_client *self, const char *key, errbuf *err)
{
    unsigned char hash[API_CLIENT_HASH_BYTES];
    db_stmt *find = self->st[ST_FIND];
    const char *stored;
    size_t stored_len;
    long long rows, id;
    int same;

    api_client_key_hash(key, hash);
    /* Found by its hash's index: the time the lookup takes depends on the hash
     * of a 256-bit random key, which tells nothing about another key. */
    rows = db_stmt_exec(find, err, "b", hash, sizeof(hash));
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(find))
        return 0;
    stored = db_stmt_col(find, 1, &stored_len);
    same = stored != NULL && stored_len == sizeof(hash) &&
           sodium_memcmp(stored, hash, sizeof(hash)) == 0;
    if (!same || db_stmt_col_int(find, 2) == 0)
        return 0; /* revoked */
    id = db_stmt_col_int(find, 0);
    if (db_stmt_col_int(find, 3) != 0 && db_stmt_exec(self->st[ST_USED], err, "i", id) < 0)
        return RS_ERR;
    return id;
}

long long
api_client_add(api_client *self, const char *name, char key[API_CLIENT_KEY_LEN + 1], errbuf *err)
{
    unsigned char hash[API_CLIENT_HASH_BYTES];
    long long rows;

    if (api_client_name_check(name, err) != RS_OK)
        return RS_ERR;
    api_client_key_make(key);
    api_client_key_hash(key, hash);
    rows = db_stmt_exec(self->st[ST_ADD], err, "sb", name, hash, sizeof(hash));
    if (rows < 0 || rows != 1) {
        sodium_memzero(key, API_CLIENT_KEY_LEN + 1);
        return rows < 0 ? RS_ERR
                        : errbuf_set(err,
                                     "a client named %s exists (revoke it first, or choose "
                                     "another name)",
                                     name);
    }
    return (long long)db_stmt_insert_id(self->st[ST_ADD]);
}

int
api_client_each(api_client *self, api_client_line_fn fn, void *arg, errbuf *err)
{
    db_stmt *list = self->st[ST_LIST];

    if (db_stmt_exec(list, err, "") < 0)
        return RS_ERR;
    while (db_stmt_next(list)) {
        struct api_client_line line = {
            .id = db_stmt_col_int(list, 0),
            .name = db_stmt_col(list, 1, NULL),
            .created = db_stmt_col(list, 2, NULL),
            .last_used = db_stmt_col(list, 3, NULL),
            .revoked = db_stmt_col(list, 4, NULL),
        };
        fn(arg, &line);
    }
    return RS_OK;
}

int
api_client_revoke(api_client *self, const char *id_or_name, long long *id, errbuf *err)
{
    int by_id = *id_or_name != '\0' && strspn(id_or_name, "0123456789") == strlen(id_or_name);
    db_stmt *find = self->st[by_id ? ST_BY_ID : ST_BY_NAME];
    long long rows;

    *id = 0;
    if (by_id && strlen(id_or_name) > 10)
        return errbuf_set(err, "no client %s", id_or_name);
    rows = by_id ? db_stmt_exec(find, err, "i", strtoll(id_or_name, NULL, 10))
                 : db_stmt_exec(find, err, "s", id_or_name);
    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(find))
        return errbuf_set(err, "no %sclient %s", by_id ? "" : "active ", id_or_name);
    *id = db_stmt_col_int(find, 0);
    if (db_stmt_col_int(find, 1) != 0)
        return 0;
    rows = db_stmt_exec(self->st[ST_REVOKE], err, "i", *id);
    if (rows < 0)
        return RS_ERR;
    return rows == 1; /* 0: revoked by another restockctl meanwhile */
}
