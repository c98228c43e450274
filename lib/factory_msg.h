/* factory_msg: the factory message, written and read in this one place. It is
 * the message of the spool queue `factory`, made by the worker's outbox fan-out
 * from an order's rows, delivered by the factory driver, and read for what it
 * names by the drivers' dead hook and restockctl; and the request the driver
 * POSTs from it to the legacy factory API, in the exact JSON of docs/design.md
 * §4.2, whose fields the factory's callback sends back (lib/delivery reads them
 * by the names below). The message carries the order's callback token: never
 * logged, shown hidden, zeroed when a parsed message is cleared. */
#ifndef RESTOCK_FACTORY_MSG_H
#define RESTOCK_FACTORY_MSG_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "errbuf.h"
#include "ident.h"
#include "token.h"

/* The legacy factory API's fields: the request's, and the callback's body. */
#define FACTORY_MSG_GROUP        "MessageGroupId"
#define FACTORY_MSG_GROUP_VALUE  "stock-arrival-group"
#define FACTORY_MSG_SKU          "MessageAttributeProductId"
#define FACTORY_MSG_QUANTITY     "MessageAttributeProductCnt"
#define FACTORY_MSG_FACTORY      "MessageAttributeFactoryId"
#define FACTORY_MSG_REQUESTER    "MessageAttributeRequester"
#define FACTORY_MSG_CALLBACK_URL "CallbackUrl"

#define FACTORY_MSG_QUANTITY_MAX 1000000 /* product.reorder_quantity's upper bound */

/* What the outbox puts into a message. A string NULL is written as JSON null
 * (factory_api NULL: the factory has no API of its own, the configured
 * factory_api applies). */
struct factory_msg_order {
    const char *event_id, *order_id, *product_id, *sku, *product_name, *factory_id,
        *factory_identifier, *factory_name, *factory_api, *token, *created_at;
    long long quantity;
};

/* The message of an order, as JSON for the caller to print and delete; NULL when
 * out of memory. Its kind is stock_empty whatever opened the order (the
 * driver's one kind). */
cJSON *factory_msg_new(const struct factory_msg_order *order);

/* A message read and checked for its delivery; strings point into json. */
struct factory_msg {
    cJSON *json;
    const char *sku, *factory_identifier, *factory_api;
    char token[TOKEN_HEX + 1]; /* a secret: zeroed by factory_msg_clear */
    long long quantity;
    unsigned char id[IDENT_BYTES];
    char order_id[IDENT_TEXT]; /* canonical, as the callback responder reads it */
};

/* Parses and checks a message (len bytes); RS_ERR naming the field, never
 * quoting the token. On RS_OK the caller clears it (factory_msg_clear). */
int factory_msg_parse(const char *msg, size_t len, struct factory_msg *m, errbuf *err);
/* Deletes what factory_msg_parse made, the token zeroed. */
void factory_msg_clear(struct factory_msg *m);

/* The factory request of a parsed message, without I/O: *url the address to POST
 * to (the message's factory_api, else default_api, with /api/manufactures
 * appended) and *body the JSON of docs/design.md with the callback URL
 * {public_url}/callbacks/factory/{order id}?token={token}. Both malloc'ed, for the
 * caller to free (the body holds the token: zero it first). RS_ERR, naming the
 * factory, when no factory URL is known or public_url is empty. */
int factory_msg_request(const struct factory_msg *m, const char *requester, const char *public_url,
                        const char *default_api, char **url, char **body, errbuf *err);
/* factory_msg_parse and factory_msg_request of a message's text in one. */
int factory_msg_request_body(const char *msg, size_t len, const char *requester,
                             const char *public_url, const char *default_api, char **url,
                             char **body, errbuf *err);

/* What can be read of a message that may be malformed (a dead one, told to the
 * operators): each field NULL (has_quantity 0) when missing or of another type;
 * strings point into json, which is NULL when the text is not JSON. Clear it with
 * factory_msg_glance_clear. */
struct factory_msg_glance {
    cJSON *json;
    const char *order_id, *sku, *factory_identifier;
    int has_quantity;
    int quantity;
};

void factory_msg_glance(const char *msg, size_t len, struct factory_msg_glance *g);
void factory_msg_glance_clear(struct factory_msg_glance *g);

/* A message (of any queue) as an operator is shown it: indented JSON, a token
 * hidden; NULL when the text is not JSON or memory ran out. Free it. */
char *factory_msg_shown(const char *msg, size_t len);

#endif
