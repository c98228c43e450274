/* sale: the sale's one home (docs/design.md §4.1). Every statement that takes
 * stock is here: a checkout alone, the checkouts of one sku combined into one
 * statement (lib/combiner), their allocation under the row lock at the sell-out
 * boundary, a checkout with an Idempotency-Key in a transaction of its own that
 * stores its answer (lib/checkout_key); the checkout's answer (status and JSON
 * text); the retries of what the database rolled back; and what a sale
 * triggers: the order at the reorder point and the sell-out (lib/order), the
 * doorbell (lib/bus), the checkout counters (lib/metrics). product.stock is
 * taken here only; a delivery adds to it in lib/order (order_fulfil), which
 * says why. restock-sales keeps HTTP: it parses, authenticates, and sends the
 * answer this module made.
 *
 * Two objects: a sale_shop, shared by every thread (the combiner of each sku's
 * checkouts and the settings), and a sale per thread, on that thread's db. */
#ifndef RESTOCK_SALE_H
#define RESTOCK_SALE_H

#include <stddef.h>

#include "checkout_key.h"
#include "conf.h"
#include "db.h"
#include "errbuf.h"
#include "hold.h"
#include "json.h"

/* --- the allocation: pure, no database -------------------------------------- */

/* One checkout of a batch as the allocation sees it. */
struct sale_member {
    struct sale_member *next; /* the next in arrival order; NULL: the last */
    long long quantity;       /* asked for, 1 or more */
    int sold;                 /* set: it took its whole quantity */
    long long remaining;      /* set, when sold: the stock its own sale left */
    int crossed;              /* set: its own sale took the stock from above the
                                 reorder point to at or below it (ORDER_AT_POINT) */
};

/* Gives stock to the members, in arrival order: each takes its whole quantity
 * if what is left covers it, or nothing (a later, smaller quantity may still
 * take what an earlier, larger one could not). Each member sold is told the
 * stock after the members before it and itself, so that no two are told the
 * same remaining; the one whose sale crossed the reorder point (point) is marked
 * crossed (at most one: the stock only falls). Sets every member's results.
 * Returns the units given. */
long long sale_allocate(struct sale_member *first, long long stock, long long point);

/* --- the shop: what every thread's sale shares -------------------------------- */

typedef struct sale_shop sale_shop;

/* threads: how many threads sell (each has one checkout in flight at most). cf
 * stays the caller's. NULL with err when out of memory. */
sale_shop *sale_shop_new(const conf *cf, size_t threads, errbuf *err);
/* After every thread's sale is destroyed: logs how the checkouts were combined
 * (event=checkout_batches), and ends ZeroMQ in the process (bus_shutdown). */
void sale_shop_destroy(sale_shop **self_p);

/* --- a thread's sale ------------------------------------------------------------ */

typedef struct sale sale;

/* Its statements live on conn (the caller's, used by this thread only); it
 * rings its own doorbell (ZeroMQ sockets are not thread-safe). NULL with err. */
sale *sale_new(sale_shop *shop, db *conn, errbuf *err);
void sale_destroy(sale **self_p);

#define SALE_QUANTITY_MAX 1000           /* units of one checkout, or of one line of a cart */
#define SALE_LINES_MAX    HOLD_LINES_MAX /* lines of a cart, as of a hold */
#define SALE_CUSTOMER_MAX 64             /* characters of a Restock-Customer */

/* A checkout as parsed: sku and key (NULL: none) stay the caller's. */
struct sale_request {
    long long client; /* the API client, or CHECKOUT_KEY_ANONYMOUS */
    const char *key;  /* the Idempotency-Key, unquoted; NULL: no key */
    /* The client's Restock-Customer (1 to SALE_CUSTOMER_MAX visible ASCII
     * characters, an authenticated client's only); NULL: none, no limit. */
    const char *customer;
    const char *sku;
    long long quantity;
};

enum sale_outcome {
    SALE_SOLD,         /* 200 */
    SALE_DUPLICATE,    /* 400: two lines of a cart name one product (by the column's
                          collation: skus that differ in case only); nothing done */
    SALE_REFUSED,      /* 409: fewer units left than asked for */
    SALE_LIMITED,      /* 409 "reason":"limit": over the customer's max_per_customer */
    SALE_NO_PRODUCT,   /* 404: no such sku */
    SALE_REPLAYED,     /* the key's stored answer, byte for byte; nothing sold */
    SALE_KEY_MISMATCH, /* the key was used for another request: nothing done, no body */
    SALE_HELD,         /* 201: a hold made */
    SALE_NO_HOLD,      /* 404: no such hold (of this client), or an id that is not one */
    SALE_HOLD_STATUS   /* a hold's answer as its status has it: 200, or 409 when it can
                          no longer be confirmed, extended or released */
};

/* The checkout's answer. body is its JSON text (not NUL-terminated), len bytes;
 * status is 200, 404, 409, a replayed answer's own, or 500 when the answer could
 * not be made (out of memory) after a sale that stands. */
struct sale_answer {
    enum sale_outcome outcome;
    int status;
    size_t len;
    char body[CHECKOUT_KEY_BODY_MAX];
};

/* Sells req: without a key, in the next statement of req->sku's checkouts
 * (combined with those of the other threads that arrive meanwhile); with one, or
 * with a customer of a product with a limit (below), in a transaction that claims
 * the key if any, checks the limit, sells and stores the answer (a 404 is not
 * stored). What the database rolled back is run again (db_retry). After the
 * commit, what the sale or the refusal triggers: the order at the reorder point,
 * the sell-out, the doorbell; the result is counted (restock_checkouts_total).
 * RS_OK with *out; RS_ERR with err when the database failed: nothing was sold,
 * nothing stored (the caller answers 503 and counts it); SALE_IN_DOUBT with err
 * when the database went away while the sale's commit was in flight: it may have
 * been made (the caller answers 504; a retry with the same Idempotency-Key learns
 * which). The same holds for every entry below that changes stock. */
#define SALE_IN_DOUBT (-2)
int sale_checkout(sale *self, const struct sale_request *req, struct sale_answer *out, errbuf *err);

/* Customer limits: a request with a customer, of a product whose
 * max_per_customer is above 0, is not combined: in a transaction (with its key,
 * if any) it locks the product's row, sums what the customer (of this client)
 * bought of it over limit_window seconds (customer_purchase), and either sells
 * and records the units, or answers 409 SALE_LIMITED and sells nothing:
 * {"message","sku","remaining" (the stock, as any 409's),"reason":"limit",
 * "limit":N,"allowed" (the units the customer may still buy in the window)}.
 * A cart over the limit on any line is refused whole, with the same top-level
 * "reason" and "limit" (its first such line's) and "limit" on each such line.
 * Checked before the stock: a customer over the limit is told so even when the
 * shelf is short. A limit refusal is not unmet demand (no order_refused). */
int sale_customer_check(const char *customer, errbuf *err);

/* --- a cart: several lines, every one sold or none ------------------------------ */

/* A cart as sale_cart_parse made it: the lines in the request's order (their
 * skus point into the parsed body), and order, their indexes by sku (bytes): the
 * order in which their rows are locked, and their fingerprint is made. */
struct sale_cart {
    long long ttl;        /* a hold's seconds (POST /holds); 0: a checkout */
    long long client;     /* the API client, or CHECKOUT_KEY_ANONYMOUS */
    const char *key;      /* the Idempotency-Key, unquoted; NULL: no key */
    const char *customer; /* as sale_request's */
    size_t n;
    struct checkout_key_line lines[SALE_LINES_MAX];
    size_t order[SALE_LINES_MAX];
};

/* The lines of a checkout's body {"lines":[{"sku":…,"quantity":…},…]}: an array
 * of 1 to SALE_LINES_MAX objects, each with sku (a string of 1 to PRODUCT_SKU_MAX
 * characters) and quantity (1 to SALE_QUANTITY_MAX), each sku once; a body with
 * sku or quantity beside lines is refused (which would it buy?). Pure: no
 * database. Fills cart's n, lines and order (client and key are the caller's);
 * RS_ERR with err saying what is wrong and where (the client's 400). */
int sale_cart_parse(const cJSON *body, struct sale_cart *cart, errbuf *err);

/* Sells cart in one transaction: the products' rows locked in cart->order, every
 * line checked against its stock, then every line taken with the one-line sale's
 * statement (or none: each short line goes through the refusal's decision,
 * order_refused); with a key, the key claimed first and the answer stored before
 * the commit. After the commit, what each line's sale triggers, as for a one-line
 * sale; the cart is counted once in restock_checkouts_total. Answers: 200 every
 * line sold, 409 none (each line with what remains, "short":true on those that
 * did not fit), 404 an unknown sku (nothing sold, not stored), SALE_DUPLICATE,
 * and the keyed outcomes of sale_checkout. RS_ERR as sale_checkout's. */
int sale_cart_checkout(sale *self, const struct sale_cart *cart, struct sale_answer *out,
                       errbuf *err);

/* --- holds: units kept off the shelf while the buyer pays ------------------------- */

/* A hold's body {"lines":[…],"ttl":S}: the lines as sale_cart_parse's, ttl
 * HOLD_TTL_MIN to HOLD_TTL_MAX seconds (none: default_ttl). Pure. */
int sale_hold_parse(const cJSON *body, long long default_ttl, struct sale_cart *cart, errbuf *err);

/* Holds cart (cart->ttl > 0): every line's units go from stock to held, or none
 * (409, as a cart's, each short line with "short":true; the refusal's decision as
 * a cart's), with the hold's row, expiring ttl seconds from now by the database's
 * clock. 201 {"hold","status":"held","expires_at","lines":[{"sku","quantity",
 * "remaining"}]}. A hold of one line of a product without a customer's limit is
 * combined with the checkouts of its sku (one statement, one transaction for
 * the batch, its rows and keys written in it); others, in a transaction of
 * their own, as a cart's. Keys, limits, 404, SALE_DUPLICATE, RS_ERR: as
 * sale_cart_checkout. A customer's limit counts held units. */
int sale_hold(sale *self, const struct sale_cart *cart, struct sale_answer *out, errbuf *err);

enum sale_hold_action { SALE_HOLD_GET, SALE_HOLD_CONFIRM, SALE_HOLD_EXTEND, SALE_HOLD_RELEASE };

/* A request about one hold: GET /holds/{id}, POST …/confirm, …/extend, DELETE. */
struct sale_hold_ref {
    enum sale_hold_action action;
    long long client; /* holds are their client's: another's is not found */
    const char *key;  /* Idempotency-Key; NULL: none (never on GET) */
    const char *id;   /* as the path has it: a hold is found only by its UUID */
    long long ttl;    /* extend: seconds from now (HOLD_TTL_MIN to HOLD_TTL_MAX) */
};

/* Answers ref with the hold's JSON {"hold","status","expires_at","lines":[{"sku",
 * "quantity"}]}: GET 200 (a held hold past its expires_at shows "expired": its
 * units are back on the shelf or about to be); confirm: 200 "confirmed", the units
 * sold (again: the same 200), 409 "expired"/"released"; extend: 200 with the new
 * expires_at, 409 when not held; release: 200 "released", the units back on the
 * shelf (again: the same 200; an expired hold: 200 "expired"), 409 "confirmed".
 * A held hold past its expires_at is expired by whichever comes first, the
 * worker or this request. SALE_NO_HOLD (404) for no such hold; keys as
 * sale_checkout's. A confirm of a one-line hold is combined with its sku's
 * checkouts. RS_ERR when the database failed: nothing changed. */
int sale_hold_act(sale *self, const struct sale_hold_ref *ref, struct sale_answer *out,
                  errbuf *err);

/* --- the worker's expiry ------------------------------------------------------------ */

typedef struct sale_expiry sale_expiry;

/* Its statements live on conn, the caller's. NULL with err. */
sale_expiry *sale_expiry_new(db *conn, errbuf *err);
void sale_expiry_destroy(sale_expiry **self_p);

/* Expires up to max held holds whose expires_at is past: in one transaction,
 * each still held (a confirm or a release may have ended it first) goes to
 * expired and its units from held back to stock, its customer's limit rows
 * deleted; each counted with its lag (restock_hold_expiry_lag_seconds). How many
 * it expired, or RS_ERR (nothing changed). */
long long sale_expiry_run(sale_expiry *self, size_t max, errbuf *err);

/* Microseconds until the next held hold is due into *wait_us: 1; 0 when no hold
 * is held; RS_ERR. */
int sale_expiry_next(sale_expiry *self, long long *wait_us, errbuf *err);

#endif
