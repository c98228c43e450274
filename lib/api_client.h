/* api_client: the API clients of the Sales API (docs/design.md §4.1): their
 * keys, made by restockctl, sent as "Authorization: Bearer <key>", stored only
 * as SHA-256, and the one module with SQL on the api_client table. A key is
 * "rsk_" and 32 random bytes in base64url: recognisable in a leaked file, and
 * too long to guess, so that a hash without salt or stretching is enough. */
#ifndef RESTOCK_API_CLIENT_H
#define RESTOCK_API_CLIENT_H

#include <stddef.h>

#include "db.h"
#include "errbuf.h"

#define API_CLIENT_PREFIX     "rsk_"
#define API_CLIENT_KEY_BYTES  32                                   /* random */
#define API_CLIENT_KEY_LEN    (sizeof(API_CLIENT_PREFIX) - 1 + 43) /* base64url, no padding */
#define API_CLIENT_HASH_BYTES 32                                   /* SHA-256 */
#define API_CLIENT_NAME_MAX   64                                   /* api_client.name */

/* A new key, NUL-terminated, from libsodium's random generator. Call
 * api_client_init (or api_client_new) first. */
void api_client_key_make(char out[API_CLIENT_KEY_LEN + 1]);

/* The key of an Authorization header's value: "Bearer <key>" (the scheme in any
 * case, RFC 9110 §11.1), the key in the form api_client_key_make makes. RS_ERR
 * with err saying what is wrong, never quoting the value (a client's 401). */
int api_client_parse_authorization(const char *value, char out[API_CLIENT_KEY_LEN + 1],
                                   errbuf *err);

/* What is stored of a key. */
void api_client_key_hash(const char *key, unsigned char out[API_CLIENT_HASH_BYTES]);

/* A client's name: 1 to API_CLIENT_NAME_MAX of [A-Za-z0-9._-], not all digits
 * (restockctl takes an id or a name). RS_ERR with err saying why. */
int api_client_name_check(const char *name, errbuf *err);

/* libsodium's start-up; idempotent and thread-safe. */
int api_client_init(errbuf *err);

typedef struct api_client api_client;

/* Its statements live on conn (the caller's, used by one thread). NULL when out
 * of memory (err says so) or libsodium does not start. */
api_client *api_client_new(db *conn, errbuf *err);
void api_client_destroy(api_client **self_p);

/* The id (> 0) of the client whose key (parsed) this is, 0 when it is no
 * client's or the client is revoked, RS_ERR when the database failed. Notes the
 * client's last use at most once a minute. */
long long api_client_authenticate(api_client *self, const char *key, errbuf *err);

/* A new client named name with a new key (into key, shown once by the caller):
 * its id, or RS_ERR (another active client of that name, or the database). */
long long api_client_add(api_client *self, const char *name, char key[API_CLIENT_KEY_LEN + 1],
                         errbuf *err);

/* One client as listed: times as "YYYY-MM-DD HH:MM:SS" (database time), NULL
 * when it has none (never used, not revoked). Never the key, which nobody has. */
struct api_client_line {
    long long id;
    const char *name, *created, *last_used, *revoked;
};

typedef void (*api_client_line_fn)(void *arg, const struct api_client_line *line);

/* Every client, by id. RS_OK or RS_ERR. */
int api_client_each(api_client *self, api_client_line_fn fn, void *arg, errbuf *err);

/* Revokes the client with that id (digits) or the active client of that name:
 * 1 when it is revoked now, 0 when it was already, RS_ERR when there is none
 * (err says so) or the database failed. *id is the client's id. */
int api_client_revoke(api_client *self, const char *id_or_name, long long *id, errbuf *err);

#endif
