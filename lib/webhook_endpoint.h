/* webhook_endpoint: the endpoints of restock's outbound webhooks (docs/design.md
 * §4.12), the one module with SQL on the webhook_endpoint table, and their
 * signing secrets: made here ("whsec_" + base64 of 32 random bytes), shown once
 * by restockctl, stored only sealed (libsodium's crypto_box_seal) to the
 * worker's public key, so that restockctl seals without being able to open and
 * only the holder of the credential webhook_key, restock-worker, reads them.
 * Also the pure parts restockctl checks its input with: the URL of an
 * endpoint, the event types and a list of them. (The secret's making may move
 * to lib/webhook_sig, which signs with it.) */
#ifndef RESTOCK_WEBHOOK_ENDPOINT_H
#define RESTOCK_WEBHOOK_ENDPOINT_H

#include <stddef.h>

#include "db.h"
#include "errbuf.h"
#include "ident.h"
#include "webhook_sig.h"

#define WEBHOOK_ENDPOINT_SECRET_PREFIX "whsec_"
/* A secret webhook_sig_secret_new makes: the prefix and base64 (original
 * alphabet, padded) of WEBHOOK_SIG_KEY_NEW random bytes. */
#define WEBHOOK_ENDPOINT_SECRET_LEN                                                                \
    (sizeof(WEBHOOK_ENDPOINT_SECRET_PREFIX) - 1 + 4 * ((WEBHOOK_SIG_KEY_NEW + 2) / 3))
#define WEBHOOK_ENDPOINT_KEY_BYTES  32   /* X25519 private and public keys */
#define WEBHOOK_ENDPOINT_KEY_HEX    64   /* a key as lower-case hex */
#define WEBHOOK_ENDPOINT_SEAL_BYTES 48   /* crypto_box_SEALBYTES: what sealing adds */
#define WEBHOOK_ENDPOINT_URL_MAX    2048 /* webhook_endpoint.url */
#define WEBHOOK_ENDPOINT_REASON_MAX 255  /* webhook_endpoint.disabled_reason */

/* The event types (../shared/DESIGN.md "Events to other systems"), in the order
 * the events column lists them. WEBHOOK_PING is sent by `restockctl webhook
 * ping` to one endpoint, whatever it subscribed to: it cannot be subscribed. */
enum webhook_type {
    WEBHOOK_STOCK_REORDER_POINT,
    WEBHOOK_STOCK_SOLD_OUT,
    WEBHOOK_STOCK_ARRIVED,
    WEBHOOK_ORDER_OPENED,
    WEBHOOK_ORDER_SENT,
    WEBHOOK_ORDER_FULFILLED,
    WEBHOOK_ORDER_FAILED,
    WEBHOOK_ORDER_OVERDUE,
    WEBHOOK_DELIVERY_REFUSED,
    WEBHOOK_HOLD_EXPIRED,
    WEBHOOK_PING,
    WEBHOOK_NTYPES
};

/* "stock.reorder_point", …, "ping". */
const char *webhook_endpoint_type_name(enum webhook_type type);

/* The type of a name, -1 when it is none. */
int webhook_endpoint_type_parse(const char *name);

/* A comma-separated list of subscribable types ("order.sent,stock.sold_out";
 * blanks around names and repeats allowed) as a set: bit 1 << type. RS_ERR with
 * err naming the unknown type and every known one. */
int webhook_endpoint_events_parse(const char *list, unsigned *events, errbuf *err);

/* A set as the events column holds it (the types in enum order, comma-separated),
 * "" for none. out holds WEBHOOK_ENDPOINT_EVENTS_MAX + 1 bytes. */
#define WEBHOOK_ENDPOINT_EVENTS_MAX 512
void webhook_endpoint_events_format(unsigned events, char *out, size_t size);

/* An endpoint's URL: http:// or https://, a host (name, IPv4, [IPv6]), an
 * optional port 1..65535, a path and query of printable ASCII; no user or
 * password in it (they would be shown by `webhook list`), no fragment, at most
 * WEBHOOK_ENDPOINT_URL_MAX bytes. RS_ERR with err saying what is wrong. Which
 * addresses a delivery may reach is lib/egress's to say, at delivery time. */
int webhook_endpoint_url_check(const char *url, errbuf *err);

/* -- secrets and the sealing key ------------------------------------------------- */

/* libsodium's start-up; idempotent and thread-safe. */
int webhook_endpoint_init(errbuf *err);

/* The worker's key pair: the private half is the credential webhook_key (64 hex
 * digits), the public half derived from it (crypto_scalarmult_base) and
 * published in the file webhook_public_key names. */
struct webhook_endpoint_key {
    unsigned char pk[WEBHOOK_ENDPOINT_KEY_BYTES];
    unsigned char sk[WEBHOOK_ENDPOINT_KEY_BYTES]; /* zero in a public key */
};

/* The key pair of a private key in hex. RS_ERR, never quoting the value. */
int webhook_endpoint_key_private(const char *hex, struct webhook_endpoint_key *key, errbuf *err);

/* A public key from its file (64 hex digits on one line). RS_ERR naming the file. */
int webhook_endpoint_key_public_read(const char *path, struct webhook_endpoint_key *key,
                                     errbuf *err);

/* Writes the public half to path (mode 0644, replaced whole by a rename). */
int webhook_endpoint_key_public_write(const char *path, const struct webhook_endpoint_key *key,
                                      errbuf *err);

/* The public key as hex, NUL-terminated. */
void webhook_endpoint_key_hex(const struct webhook_endpoint_key *key,
                              char out[WEBHOOK_ENDPOINT_KEY_HEX + 1]);

/* Seals secret (up to 255 - SEAL_BYTES bytes) to key's public half: out holds
 * strlen(secret) + WEBHOOK_ENDPOINT_SEAL_BYTES bytes, *len says how many. */
int webhook_endpoint_seal(const char *secret, const struct webhook_endpoint_key *key,
                          unsigned char *out, size_t size, size_t *len, errbuf *err);

/* Opens a sealed secret with key's private half into out (NUL-terminated).
 * RS_ERR when the box is not one of this key's (another key sealed it, or it
 * was changed) or holds no secret. */
int webhook_endpoint_unseal(const unsigned char *box, size_t len,
                            const struct webhook_endpoint_key *key,
                            char out[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err);

/* -- the table ------------------------------------------------------------------- */

/* Statuses (webhook_endpoint.status): enabled, or disabled by whom. */
enum webhook_status {
    WEBHOOK_ENABLED = 0,
    WEBHOOK_DISABLED_OPERATOR = 1,
    WEBHOOK_DISABLED_GONE = 2,    /* the endpoint answered 410 */
    WEBHOOK_DISABLED_FAILING = 3, /* it failed for too long */
};

/* "enabled", "disabled", "gone", "failing"; "unknown" for another value. */
const char *webhook_endpoint_status_name(int status);

typedef struct webhook_endpoint webhook_endpoint;

/* Its statements live on conn (the caller's, used by one thread). NULL when out
 * of memory (err says so) or libsodium does not start. */
webhook_endpoint *webhook_endpoint_new(db *conn, errbuf *err);
void webhook_endpoint_destroy(webhook_endpoint **self_p);

/* A new enabled endpoint for url (checked), subscribed to events (a set of
 * webhook_endpoint_events_parse; 0: every type), with a new secret sealed to
 * key: its id into id, the secret into secret (shown once by the caller). */
int webhook_endpoint_add(webhook_endpoint *self, const char *url, unsigned events,
                         const struct webhook_endpoint_key *key, char id[IDENT_TEXT],
                         char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err);

/* One endpoint as listed: times as "YYYY-MM-DD HH:MM:SS" UTC, NULL when it has
 * none; events NULL for every type. rotating: the previous secret is still
 * signed with (rotated less than overlap seconds ago). Never a secret. */
struct webhook_endpoint_line {
    const char *id, *url, *events, *created, *reason, *disabled_at, *rotated_at;
    int status, rotating;
};

typedef void (*webhook_endpoint_line_fn)(void *arg, const struct webhook_endpoint_line *line);

/* Every endpoint, oldest first. RS_OK or RS_ERR. */
int webhook_endpoint_each(webhook_endpoint *self, long overlap, webhook_endpoint_line_fn fn,
                          void *arg, errbuf *err);

/* The endpoint with that id (canonical text): 1 and fn called once, RS_ERR when
 * there is none (err says so, also for a malformed id) or the database failed. */
int webhook_endpoint_get(webhook_endpoint *self, const char *id, long overlap,
                         webhook_endpoint_line_fn fn, void *arg, errbuf *err);

/* Disables it (status one of the disabled ones) for reason (NULL: none; else
 * 1 to WEBHOOK_ENDPOINT_REASON_MAX bytes of UTF-8 without control characters):
 * 1 when disabled now, 0 when it was already (nothing changed), RS_ERR when
 * there is none or the reason is refused. */
int webhook_endpoint_disable(webhook_endpoint *self, const char *id, int status, const char *reason,
                             errbuf *err);

/* Enables it again: 1 when enabled now, 0 when it was, RS_ERR when there is none. */
int webhook_endpoint_enable(webhook_endpoint *self, const char *id, errbuf *err);

/* A new secret (into secret) sealed to key; the current one becomes the
 * previous one, signed with until the next rotation or the overlap. RS_ERR when
 * there is no such endpoint. */
int webhook_endpoint_rotate(webhook_endpoint *self, const char *id,
                            const struct webhook_endpoint_key *key,
                            char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err);

/* The condition "an enabled endpoint subscribes to the type named type_sql" (an
 * SQL string expression, a literal or a placeholder) as SQL text, for a
 * statement of another module that must decide in its own statement, in its own
 * transaction (lib/outbox_event: a hold_expired event only while one is wanted);
 * the text of the table stays here. */
#define WEBHOOK_ENDPOINT_SQL_WANTED_WHERE(type_sql)                                                \
    "status = 0 AND (events IS NULL OR FIND_IN_SET(" type_sql ", events) > 0)"
#define WEBHOOK_ENDPOINT_SQL_WANTED(type_sql)                                                      \
    "EXISTS (SELECT 1 FROM webhook_endpoint WHERE " WEBHOOK_ENDPOINT_SQL_WANTED_WHERE(type_sql) ")"

typedef void (*webhook_endpoint_id_fn)(void *arg, const unsigned char id[IDENT_BYTES]);

/* The enabled endpoints subscribed to type (those of every type with them), by
 * id: the fan-out of an event. RS_OK or RS_ERR. */
int webhook_endpoint_subscribed(webhook_endpoint *self, enum webhook_type type,
                                webhook_endpoint_id_fn fn, void *arg, errbuf *err);

/* An endpoint's secrets, opened with key's private half (the worker's): the
 * current one, and the previous one while its rotation is less than overlap
 * seconds old ("" otherwise). 1 when found, 0 when there is no such endpoint,
 * RS_ERR when the database failed or a box does not open with this key. */
int webhook_endpoint_secrets(webhook_endpoint *self, const unsigned char id[IDENT_BYTES],
                             long overlap, const struct webhook_endpoint_key *key,
                             char current[WEBHOOK_ENDPOINT_SECRET_LEN + 1],
                             char previous[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err);

/* -- delivery (restock-worker) ---------------------------------------------------- */

/* What a delivery needs of its endpoint, read at delivery time in one query:
 * where it goes, whether it may go, how long the endpoint has been failing, and
 * the secrets it is signed with. Wipe it with webhook_endpoint_target_wipe. */
struct webhook_endpoint_target {
    char url[WEBHOOK_ENDPOINT_URL_MAX + 1];
    int status;       /* enum webhook_status */
    long failing_for; /* seconds since its failing streak began; -1 when not failing */
    char current[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
    char previous[WEBHOOK_ENDPOINT_SECRET_LEN + 1]; /* "" unless rotated < overlap s ago */
    int opened; /* 0: a secret does not open with the key (err says so); both are "" */
};

/* The target of endpoint id, its secrets opened with key's private half (as
 * webhook_endpoint_secrets): 1 when found (t->opened 0 and err set when a secret
 * does not open with this key), 0 when there is no such endpoint, RS_ERR when the
 * database failed. */
int webhook_endpoint_target(webhook_endpoint *self, const unsigned char id[IDENT_BYTES],
                            long overlap, const struct webhook_endpoint_key *key,
                            struct webhook_endpoint_target *t, errbuf *err);
void webhook_endpoint_target_wipe(struct webhook_endpoint_target *t);

/* A delivery to it failed: its failing streak begins now unless one is running
 * (webhook_endpoint_failing), or it succeeded: the streak ends. RS_OK or RS_ERR.
 * (`webhook enable` ends the streak too.) */
int webhook_endpoint_failing(webhook_endpoint *self, const unsigned char id[IDENT_BYTES],
                             errbuf *err);
int webhook_endpoint_succeeded(webhook_endpoint *self, const unsigned char id[IDENT_BYTES],
                               errbuf *err);

#endif
