/* admin_session: the admin API's sessions, stored as their token's hash (see admin_session.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "admin_session.h"
#include "token.h"

_Static_assert(ADMIN_SESSION_HASH_BYTES == crypto_hash_sha256_BYTES, "a token's hash is SHA-256");
_Static_assert(ADMIN_SESSION_TOKEN_LEN + 1 ==
                   sodium_base64_ENCODED_LEN(ADMIN_SESSION_TOKEN_BYTES,
                                             sodium_base64_VARIANT_URLSAFE_NO_PADDING),
               "a token is its random bytes in base64url");

void
admin_session_token_make(char out[ADMIN_SESSION_TOKEN_LEN + 1])
{
    unsigned char secret[ADMIN_SESSION_TOKEN_BYTES];

    randombytes_buf(secret, sizeof(secret));
    sodium_bin2base64(out, ADMIN_SESSION_TOKEN_LEN + 1, secret, sizeof(secret),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret, sizeof(secret));
}

int
admin_session_token_parse(const char *text, size_t len, char out[ADMIN_SESSION_TOKEN_LEN + 1])
{
    static const char base64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    out[0] = '\0';
    if (text == NULL || len != ADMIN_SESSION_TOKEN_LEN)
        return RS_ERR;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\0' || strchr(base64url, text[i]) == NULL)
            return RS_ERR;
    memcpy(out, text, len);
    out[len] = '\0';
    return RS_OK;
}

void
admin_session_token_hash(const char *token, unsigned char out[ADMIN_SESSION_HASH_BYTES])
{
    crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}

int
admin_session_csrf_ok(const char *expected, const char *given)
{
    /* Lengths are no secret (every token has the same); the bytes are. */
    if (expected == NULL || given == NULL || strlen(expected) != ADMIN_SESSION_TOKEN_LEN ||
        strlen(given) != ADMIN_SESSION_TOKEN_LEN)
        return 0;
    return sodium_memcmp(expected, given, ADMIN_SESSION_TOKEN_LEN) == 0;
}

/* -- the table ------------------------------------------------------------------- */

/* A session's end, as the API shows it. */
#define ADMIN_SESSION_SQL_TIME(expr) "DATE_FORMAT(" expr ", '%Y-%m-%dT%H:%i:%sZ')"

enum { ST_CREATE, ST_PURGE, ST_FIND, ST_TOUCH, ST_DELETE, ST_DELETE_ACCOUNT, ST_COUNT };

static const struct db_stmt_def admin_session_sql[ST_COUNT] = {
    [ST_CREATE] = {"INSERT INTO admin_session (token_hash, account_id, csrf_token, created_at,"
                   " last_seen_at, expires_at, remote_addr) VALUES (?, ?, ?, UTC_TIMESTAMP(6),"
                   " UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ? SECOND, ?)",
                   0},
    /* Kept a day after their end, so that a late request hears "session
     * expired" rather than "login required". */
    [ST_PURGE] = {"DELETE FROM admin_session WHERE expires_at < UTC_TIMESTAMP(6) - INTERVAL 1 DAY"
                  " OR last_seen_at < UTC_TIMESTAMP(6) - INTERVAL ? SECOND - INTERVAL 1 DAY",
                  DB_IDEMPOTENT},
    [ST_FIND] = {"SELECT account_id, csrf_token, expires_at > UTC_TIMESTAMP(6) AND"
                 " last_seen_at > UTC_TIMESTAMP(6) - INTERVAL ? SECOND,"
                 " " ADMIN_SESSION_SQL_TIME("LEAST(expires_at, UTC_TIMESTAMP(6) + INTERVAL ? "
                                            "SECOND)") " FROM admin_session WHERE token_hash = ?",
                 DB_IDEMPOTENT},
    [ST_TOUCH] = {"UPDATE admin_session SET last_seen_at = UTC_TIMESTAMP(6) WHERE token_hash = ?",
                  DB_IDEMPOTENT},
    [ST_DELETE] = {"DELETE FROM admin_session WHERE token_hash = ?", DB_IDEMPOTENT},
    [ST_DELETE_ACCOUNT] = {"DELETE FROM admin_session WHERE account_id = ?", DB_IDEMPOTENT},
};

struct admin_session {
    db_stmt *st[ST_COUNT]; /* they belong to the caller's db and go with it */
    long idle, lifetime;
};

admin_session *
admin_session_new(const conf *cf, db *conn, errbuf *err)
{
    admin_session *self;

    if (token_init(err) != RS_OK) /* libsodium's start-up */
        return NULL;
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->idle = conf_int(cf, "admin_session_idle");
    self->lifetime = conf_int(cf, "admin_session_lifetime");
    if (db_stmt_table(conn, admin_session_sql, ST_COUNT, self->st, err) != RS_OK) {
        admin_session_destroy(&self);
        return NULL;
    }
    return self;
}

void
admin_session_destroy(admin_session **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

/* Reads the session of hash into *out (when out is not NULL): its state. */
static int
admin_session_find(admin_session *self, const unsigned char hash[ADMIN_SESSION_HASH_BYTES],
                   struct admin_session_info *out, errbuf *err)
{
    db_stmt *find = self->st[ST_FIND];
    const char *csrf, *ends;
    long long rows = db_stmt_exec(find, err, "iib", (long long)self->idle, (long long)self->idle,
                                  hash, (size_t)ADMIN_SESSION_HASH_BYTES);

    if (rows < 0)
        return RS_ERR;
    if (rows == 0 || !db_stmt_next(find))
        return ADMIN_SESSION_NONE;
    if (db_stmt_col_int(find, 2) == 0)
        return ADMIN_SESSION_EXPIRED;
    csrf = db_stmt_col(find, 1, NULL);
    ends = db_stmt_col(find, 3, NULL);
    if (out != NULL) {
        out->account_id = db_stmt_col_int(find, 0);
        snprintf(out->csrf, sizeof(out->csrf), "%s", csrf ? csrf : "");
        snprintf(out->expires_at, sizeof(out->expires_at), "%s", ends ? ends : "");
    }
    return ADMIN_SESSION_VALID;
}

int
admin_session_create(admin_session *self, long long account_id, const char *remote_addr,
                     char token[ADMIN_SESSION_TOKEN_LEN + 1], struct admin_session_info *out,
                     errbuf *err)
{
    unsigned char hash[ADMIN_SESSION_HASH_BYTES];
    char csrf[ADMIN_SESSION_TOKEN_LEN + 1], addr[ADMIN_SESSION_ADDR_MAX + 1];
    int found;

    if (db_stmt_exec(self->st[ST_PURGE], err, "i", (long long)self->idle) < 0)
        return RS_ERR;
    snprintf(addr, sizeof(addr), "%s", remote_addr ? remote_addr : "");
    admin_session_token_make(token);
    admin_session_token_make(csrf);
    admin_session_token_hash(token, hash);
    if (db_stmt_exec(self->st[ST_CREATE], err, "bisis", hash, sizeof(hash), account_id, csrf,
                     (long long)self->lifetime, addr) < 0) {
        sodium_memzero(token, ADMIN_SESSION_TOKEN_LEN + 1);
        return RS_ERR;
    }
    /* Read back as a lookup reads it, so that login and GET answer alike. */
    found = admin_session_find(self, hash, out, err);
    if (found != ADMIN_SESSION_VALID) {
        sodium_memzero(token, ADMIN_SESSION_TOKEN_LEN + 1);
        return found < 0 ? RS_ERR : errbuf_set(err, "the new session was not found");
    }
    return RS_OK;
}

int
admin_session_lookup(admin_session *self, const char *token, struct admin_session_info *out,
                     errbuf *err)
{
    unsigned char hash[ADMIN_SESSION_HASH_BYTES];
    int state;

    admin_session_token_hash(token, hash);
    /* Found by its hash's index: the time the lookup takes depends on the hash
     * of a 256-bit random token, which tells nothing about another token. */
    state = admin_session_find(self, hash, out, err);
    if (state != ADMIN_SESSION_VALID)
        return state;
    if (db_stmt_exec(self->st[ST_TOUCH], err, "b", hash, sizeof(hash)) < 0)
        return RS_ERR;
    return ADMIN_SESSION_VALID;
}

int
admin_session_delete(admin_session *self, const char *token, errbuf *err)
{
    unsigned char hash[ADMIN_SESSION_HASH_BYTES];
    long long rows;

    admin_session_token_hash(token, hash);
    rows = db_stmt_exec(self->st[ST_DELETE], err, "b", hash, sizeof(hash));
    return rows < 0 ? RS_ERR : rows > 0;
}

long long
admin_session_delete_account(admin_session *self, long long account_id, errbuf *err)
{
    return db_stmt_exec(self->st[ST_DELETE_ACCOUNT], err, "i", account_id);
}
