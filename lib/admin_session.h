/* admin_session: the sessions of the admin API (admin_session, sql/019_admin.sql),
 * the one module with SQL on that table. A login makes a session: its token (32
 * random bytes in base64url, the restock_admin cookie) is given once and only
 * its SHA-256 is stored, so that a copy of the database opens no session; a
 * CSRF token (also random) is stored as is, since the session's holder is given
 * it again (GET /admin/api/session). A session ends admin_session_idle seconds
 * after its last request or admin_session_lifetime seconds after the login,
 * whichever comes first; when its account's password or role changes or the
 * account is disabled (admin_account deletes them); or at logout. */
#ifndef RESTOCK_ADMIN_SESSION_H
#define RESTOCK_ADMIN_SESSION_H

#include <stddef.h>

#include "conf.h"
#include "db.h"
#include "errbuf.h"

#define ADMIN_SESSION_TOKEN_BYTES 32 /* random */
#define ADMIN_SESSION_TOKEN_LEN   43 /* base64url of them, no padding */
#define ADMIN_SESSION_HASH_BYTES  32 /* SHA-256 */
#define ADMIN_SESSION_ADDR_MAX    64 /* admin_session.remote_addr */
#define ADMIN_SESSION_TIME_SIZE   32 /* "2026-12-07T10:25:00Z" and its NUL */

/* A new token (the cookie's, or a CSRF token), NUL-terminated, from libsodium's
 * random generator (admin_session_new, or api_client_init, starts it). */
void admin_session_token_make(char out[ADMIN_SESSION_TOKEN_LEN + 1]);

/* RS_OK, with the token copied NUL-terminated into out, when the len bytes of
 * text (no NUL needed: a cookie's value) are a token's form: exactly
 * ADMIN_SESSION_TOKEN_LEN characters of base64url. RS_ERR (out "") otherwise:
 * what is not a token costs no query. */
int admin_session_token_parse(const char *text, size_t len, char out[ADMIN_SESSION_TOKEN_LEN + 1]);

/* What is stored of a token. */
void admin_session_token_hash(const char *token, unsigned char out[ADMIN_SESSION_HASH_BYTES]);

/* 1 when given (NULL: no header) is the session's CSRF token; the comparison
 * takes the same time wherever the first difference is. */
int admin_session_csrf_ok(const char *expected, const char *given);

/* A session as looked up or made: its account (admin_account_get gives the
 * account's name, role and state), its CSRF token, and when it ends if no
 * request comes before (the earlier of the idle and the absolute end), in UTC. */
struct admin_session_info {
    long long account_id;
    char csrf[ADMIN_SESSION_TOKEN_LEN + 1];
    char expires_at[ADMIN_SESSION_TIME_SIZE];
};

/* What admin_session_lookup found. */
enum admin_session_state {
    ADMIN_SESSION_NONE = 0,    /* no such session (never, logged out, purged): "login required" */
    ADMIN_SESSION_VALID = 1,   /* touched: its idle end starts again */
    ADMIN_SESSION_EXPIRED = 2, /* idle or lifetime over: "session expired" */
};

typedef struct admin_session admin_session;

/* Reads admin_session_idle and admin_session_lifetime from cf; its statements
 * live on conn. NULL when out of memory or libsodium does not start. */
admin_session *admin_session_new(const conf *cf, db *conn, errbuf *err);
void admin_session_destroy(admin_session **self_p);

/* A new session of account_id for a client at remote_addr (its first
 * ADMIN_SESSION_ADDR_MAX bytes are kept): its token into token (for the cookie,
 * given once), the rest into *out. Sessions ended more than a day ago are
 * purged on the way. RS_OK or RS_ERR. */
int admin_session_create(admin_session *self, long long account_id, const char *remote_addr,
                         char token[ADMIN_SESSION_TOKEN_LEN + 1], struct admin_session_info *out,
                         errbuf *err);

/* The session of token (parsed): an admin_session_state (*out filled when
 * VALID), or RS_ERR when the database failed. A valid one is touched
 * (last_seen_at = now): its idle end moves on. */
int admin_session_lookup(admin_session *self, const char *token, struct admin_session_info *out,
                         errbuf *err);

/* Logout: 1 when the session was there, 0 when not, RS_ERR. */
int admin_session_delete(admin_session *self, const char *token, errbuf *err);

/* Every session of an account (its password or role changed, it was
 * disabled): how many, or RS_ERR. Joins the caller's transaction. */
long long admin_session_delete_account(admin_session *self, long long account_id, errbuf *err);

#endif
