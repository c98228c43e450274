/* checkout_key: the Idempotency-Key of POST /checkout (docs/design.md §4.1): the
 * header's value parsed, the request's fingerprint, and the stored answers of
 * keyed checkouts, the one module with SQL on the checkout_key table. A checkout
 * with a key runs in one transaction that claims the key's row, sells, and
 * stores its answer; a request with the same key is answered that, byte for
 * byte, without selling again. Keys are scoped: each API client's are its own
 * (lib/api_client), anonymous requests share scope 0. */
#ifndef RESTOCK_CHECKOUT_KEY_H
#define RESTOCK_CHECKOUT_KEY_H

#include <stddef.h>

#include "db.h"
#include "errbuf.h"

#define CHECKOUT_KEY_MAX         255 /* characters of a key (checkout_key.idem_key) */
#define CHECKOUT_KEY_FINGERPRINT 32  /* SHA-256 */
#define CHECKOUT_KEY_BODY_MAX                                                                      \
    16384                         /* a checkout's answer is shorter: a cart's of 50 lines          \
                                     with the longest skus ~13 KB, one line's ~100 B */
#define CHECKOUT_KEY_ANONYMOUS 0  /* the scope of requests without a client key */
#define CHECKOUT_KEY_ANON_MIN  16 /* characters of an anonymous key at least */

/* The value of an Idempotency-Key header, a Structured Field string (draft-ietf-
 * httpapi-idempotency-key-header): "abc" in quotes, with \" and \\ escaped, or abc
 * bare (as Stripe's clients send it), 1 to CHECKOUT_KEY_MAX characters of visible
 * ASCII (a quoted one may hold spaces). The key, unquoted, into out; RS_ERR with
 * err saying what is wrong (the client's 400). */
int checkout_key_parse(const char *value, char out[CHECKOUT_KEY_MAX + 1], errbuf *err);

/* An anonymous key shares its scope with every anonymous client: one too short
 * to be unique (a counter, an order number) would meet another client's and be
 * answered that client's sale. RS_ERR with err saying why (the client's 400)
 * when it is shorter than CHECKOUT_KEY_ANON_MIN. A client's own keys have no
 * such minimum. */
int checkout_key_check_anonymous(const char *key, errbuf *err);

/* The request as parsed, hashed, with its scope: another sku, quantity or
 * client is another request, however its JSON was spelled. (Anonymous: the
 * hash of the sku and quantity alone, as before scopes.) */
void checkout_key_fingerprint(long long client, const char *sku, long long quantity,
                              unsigned char out[CHECKOUT_KEY_FINGERPRINT]);

/* A line of a cart as parsed (lib/sale). */
struct checkout_key_line {
    const char *sku;
    long long quantity;
};

/* A cart's fingerprint: what (a cart: ""; a hold's route and settings, as
 * "POST /holds ttl=600") with its NUL, which no one-line fingerprint starts with
 * (a sku is never empty: a cart of one line is not the one-line checkout of it),
 * then the lines taken in the order order[0..n-1] gives (the caller's: by sku, so
 * that the same lines in another order are the same request), each sku with a
 * NUL and its quantity's digits and another NUL, then the client's id. */
void checkout_key_cart_fingerprint(long long client, const char *what,
                                   const struct checkout_key_line *lines, const size_t *order,
                                   size_t n, unsigned char out[CHECKOUT_KEY_FINGERPRINT]);

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

/* In the caller's open transaction: inserts the key's row, in client's scope,
 * with its fingerprint.
 * A request with the same key in flight holds that row: this waits for its
 * commit (then replays its answer) or its rollback (then the row is ours). A row
 * older than retention seconds is deleted first: the key is new again. Returns
 * an enum checkout_key_claim_result (REPLAY and MISMATCH: roll back, nothing was
 * written), or RS_ERR. */
int checkout_key_claim(checkout_key *self, long long client, const char *key,
                       const unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT], long retention,
                       struct checkout_key_answer *stored, errbuf *err);

/* The answer of the checkout that claimed key, in the same transaction. */
int checkout_key_store(checkout_key *self, long long client, const char *key, int status,
                       const char *body, size_t len, errbuf *err);

/* The keys of a combined batch (lib/sale), each with its answer: their rows,
 * in one round trip (a bulk execution of one INSERT), in the caller's open
 * transaction with the batch's other statements. A key whose row is there
 * already (a retry; a copy in flight, whose transaction InnoDB makes it wait for)
 * fails it with a duplicate key (1062): the caller rolls back and runs those
 * requests one by one (checkout_key_claim). */
struct checkout_key_entry {
    long long client;
    const char *key;
    unsigned char fingerprint[CHECKOUT_KEY_FINGERPRINT];
    int status;
    const char *body;
    size_t len;
};
int checkout_key_insert_batch(checkout_key *self, const struct checkout_key_entry *entries,
                              size_t n, errbuf *err);

/* Deletes a small batch of the keys older than retention seconds, oldest first
 * (the worker's watch; call again while it returns CHECKOUT_KEY_PRUNE_BATCH).
 * Returns how many, or RS_ERR. */
#define CHECKOUT_KEY_PRUNE_BATCH 500
long long checkout_key_prune(checkout_key *self, long retention, errbuf *err);

#endif
