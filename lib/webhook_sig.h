/* webhook_sig: the signature of an outbound webhook, per the Standard Webhooks
 * specification (../shared/DESIGN.md, "Events to other systems"): an endpoint's
 * secret is `whsec_` + standard base64 of 24 to 64 random bytes; a delivery's
 * `webhook-signature` header is `v1,<base64 of HMAC-SHA256(key,
 * "<webhook-id>.<webhook-timestamp>.<body>")>`, two of them separated by a space
 * while a secret is being rotated (the current and the previous), so that a
 * consumer holding either secret accepts it. The `webhook-id` of one event to one
 * endpoint is the same on every retry (webhook_sig_id). The verifier is for
 * restock's own tests and tools; consumers verify with their own library (the
 * tests prove the npm reference library `standardwebhooks` accepts these
 * signatures). HMAC, randomness and comparisons are libsodium's; key material is
 * wiped with sodium_memzero and never quoted in an error. */
#ifndef RESTOCK_WEBHOOK_SIG_H
#define RESTOCK_WEBHOOK_SIG_H

#include <stddef.h>
#include <stdint.h>

#include "errbuf.h"

/* A secret's key: this many bytes at least and at most (the specification's
 * range); webhook_sig_secret_new makes keys of WEBHOOK_SIG_KEY_NEW bytes. */
#define WEBHOOK_SIG_KEY_MIN 24
#define WEBHOOK_SIG_KEY_MAX 64
#define WEBHOOK_SIG_KEY_NEW 32

/* A secret's text: "whsec_" and the padded base64 of at most WEBHOOK_SIG_KEY_MAX
 * bytes (88 characters), and the NUL. */
#define WEBHOOK_SIG_SECRET_SIZE 96

/* A webhook-signature header: at most two "v1,<44 base64 characters>"
 * separated by a space, and the NUL. */
#define WEBHOOK_SIG_HEADER_SIZE 96

/* A webhook-id: "msg_" and 44 base64url characters, and the NUL (see
 * webhook_sig_id). */
#define WEBHOOK_SIG_ID_SIZE 49

/* How far a delivery's timestamp may be from the verifier's clock, in seconds:
 * 5 minutes, the reference libraries' tolerance. */
#define WEBHOOK_SIG_TOLERANCE 300

/* One secret's key, as webhook_sig_secret_parse reads it. Wipe it with
 * webhook_sig_key_wipe when done. */
typedef struct webhook_sig_key {
    unsigned char bytes[WEBHOOK_SIG_KEY_MAX];
    size_t len;
} webhook_sig_key;

/* A new secret: WEBHOOK_SIG_KEY_NEW random bytes (libsodium's randombytes) as
 * "whsec_<base64>" into out (n bytes; WEBHOOK_SIG_SECRET_SIZE is enough). RS_ERR
 * when out is too small or libsodium cannot start. */
int webhook_sig_secret_new(char *out, size_t n, errbuf *err);

/* The key of a secret's text into key_out, its length into *key_len. Accepts
 * exactly "whsec_" followed by canonical padded standard base64 (RFC 4648 §4) of
 * WEBHOOK_SIG_KEY_MIN to WEBHOOK_SIG_KEY_MAX bytes and nothing after it; RS_ERR
 * with a message that says which rule failed, never quoting the text, and
 * *key_len 0 otherwise. */
int webhook_sig_secret_parse(const char *text, unsigned char key_out[WEBHOOK_SIG_KEY_MAX],
                             size_t *key_len, errbuf *err);

void webhook_sig_key_wipe(webhook_sig_key *key);

/* The webhook-signature header of a delivery, into out: one "v1,<base64>" for
 * each of the nkeys keys (1: the current; 2: the current, then the previous
 * during a rotation), separated by a space. id is the webhook-id (1 to 64 of
 * [A-Za-z0-9_-]: no '.' that would make "id.timestamp.body" ambiguous, nothing a
 * header cannot carry); timestamp the webhook-timestamp (Unix seconds, not
 * negative); body the body's len bytes exactly as sent. RS_ERR when an argument
 * breaks these rules. */
int webhook_sig_sign(const webhook_sig_key *keys, size_t nkeys, const char *id, int64_t timestamp,
                     const void *body, size_t len, char out[WEBHOOK_SIG_HEADER_SIZE], errbuf *err);

/* RS_OK when header (a webhook-signature value: signatures separated by spaces)
 * holds a "v1," signature of id, timestamp and body by any of the nkeys keys and
 * timestamp is within tolerance seconds of now (both ways); RS_ERR with the
 * reason otherwise (too old, too new, no matching signature). Signatures of
 * other versions are ignored, as the specification says. The comparisons take
 * constant time (sodium_memcmp). */
int webhook_sig_verify(const webhook_sig_key *keys, size_t nkeys, const char *id, int64_t timestamp,
                       const void *body, size_t len, const char *header, int64_t now,
                       int64_t tolerance, errbuf *err);

/* The webhook-id of one webhook event to one endpoint: outbox event event_id,
 * endpoint endpoint_id (both UUIDs as canonical text) and the event's type (enum
 * webhook_type of webhook_endpoint.h, 0..255: one outbox event may make several
 * webhook events, a stock_empty both stock.sold_out and order.opened). "msg_" and
 * the unpadded base64url (RFC 4648 §5) of the event's 16 bytes, the endpoint's 16
 * bytes and the type's byte: 48 characters. The same on every retry of one event
 * to one endpoint, different for any other triple (no hash: the ids are in it,
 * and tools can read them back), in characters a header, a URL and a spool file
 * name carry as they are. RS_ERR when either id is not a UUID. */
int webhook_sig_id(const char *event_id, const char *endpoint_id, unsigned type,
                   char out[WEBHOOK_SIG_ID_SIZE], errbuf *err);

#endif
