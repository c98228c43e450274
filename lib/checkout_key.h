/* checkout_key: the Idempotency-Key of POST /checkout (docs/design.md §4.1): the
 * header's value parsed, the request's fingerprint, and the stored answers of
 * keyed checkouts, the one module with SQL on the checkout_key table. A checkout
 * with a key runs in one transaction that claims the key's row, sells, and
 * stores its answer; a request with the same key is answered that, byte for
 * byte, without selling again. */
#ifndef RESTOCK_CHECKOUT_KEY_H
#define RESTOCK_CHECKOUT_KEY_H

#include <stddef.h>

#include "db.h"
#include "errbuf.h"

#define CHECKOUT_KEY_MAX         255  /* characters of a key (checkout_key.idem_key) */
#define CHECKOUT_KEY_FINGERPRINT 32   /* SHA-256 */
#define CHECKOUT_KEY_BODY_MAX    1024 /* a checkout's answer is far shorter */

/* The value of an Idempotency-Key header, a Structured Field string (draft-ietf-
 * httpapi-idempotency-key-header): "abc" in quotes, with \" and \\ escaped, or abc
 * bare (as Stripe's clients send it), 1 to CHECKOUT_KEY_MAX characters of visible
 * ASCII (a quoted one may hold spaces). The key, unquoted, into out; RS_ERR with
 * err saying what is wrong (the client's 400). */
int checkout_key_parse(const char *value, char out[CHECKOUT_KEY_MAX + 1], errbuf *err);

/* The request as parsed, hashed: another sku or quantity is another request,
 * however its JSON was spelled. */
void checkout_key_fingerprint(const char *sku, long long quantity,
                              unsigned char out[CHECKOUT_KEY_FINGERPRINT]);

typedef struct checkout_key checkout_key;

/* Its statements live on conn (the caller's, used by one thread). NULL when out
 * of memory or libsodium does not start. */
checkout_key *checkout_key_new(db *conn, errbuf *err);
void checkout_key_destroy(checkout_key **self_p);

enum checkout_key_claim_result {
    CHECKOUT_KEY_NEW,      /* the key's row is this transaction's: run the checkout,
                              checkout_key_store its answer, commit */
    CHECKOUT_KEY_REPLAY,   /* answered before: *stored is that answer */
    CHECKOUT_KEY_MISMATCH, /* the key was used for another request */
};

struct checkout_key_answer {
    int status;
    size_t len;
    char body[CHECKOUT_KEY_BODY_MAX];
};

/* In the caller's open transaction: inserts the key's row with its fingerprint.
 * A request with the same key in flight holds that row: this waits for its
 * commit (then replays its answer) or its rollback (then the row is ours). A row
 * older than retention seconds is deleted first: the key is new again. Returns
 * an enum checkout_key_claim_result (REPLAY and MISMATCH: roll back, nothing was
 * written), or RS_ERR. */
int checkout_key_claim(checkout_key *self, const char *key,
                       const unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT], long retention,
                       struct checkout_key_answer *stored, errbuf *err);

/* The answer of the checkout that claimed key, in the same transaction. */
int checkout_key_store(checkout_key *self, const char *key, int status, const char *body,
                       size_t len, errbuf *err);

/* Deletes a small batch of the keys older than retention seconds, oldest first
 * (the worker's watch; call again while it returns CHECKOUT_KEY_PRUNE_BATCH).
 * Returns how many, or RS_ERR. */
#define CHECKOUT_KEY_PRUNE_BATCH 500
long long checkout_key_prune(checkout_key *self, long retention, errbuf *err);

#endif
