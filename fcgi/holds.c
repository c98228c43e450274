/* restock-sales: the hold routes (docs/design.md §4.1 "Holds"), HTTP only: POST
 * /holds, GET and DELETE /holds/{id}, POST /holds/{id}/confirm and /extend; the
 * bodies and paths parsed, the methods told apart. The holds themselves, their
 * statements and answers are lib/sale's. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "sales.h"

/* Answers 400 with err's reason. */
static void
holds_bad(responder_request *rq, const errbuf *err)
{
    responder_reply_error(rq, 400, "%s", err->msg);
}

void
holds_create(struct sales_thread *th, responder_request *rq)
{
    struct sale_cart cart_buf, *cart = &cart_buf; /* on the stack, as the checkout's */
    struct sale_answer answer_buf, *answer = &answer_buf;
    char key_buf[CHECKOUT_KEY_MAX + 1], location[64];
    errbuf err = {{0}};
    cJSON *json = NULL;
    size_t len;
    const char *body = responder_body(rq, &len), *key, *customer;
    long long client;
    int rc;

    if (sales_parties(th, rq, &client, &key, key_buf, &customer) != RS_OK)
        goto done;
    if (json_parse_object(body, len, &json, &err) != RS_OK ||
        sale_hold_parse(json, th->app->hold_ttl, cart, &err) != RS_OK) {
        holds_bad(rq, &err);
        goto done;
    }
    cart->client = client, cart->key = key, cart->customer = customer;
    rc = sale_hold(th->sale, cart, answer, &err);
    /* A hold made, or its replay: where it lives (the answer starts with its id). */
    if (rc == RS_OK && answer->status == 201 && answer->len > 46 &&
        strncmp(answer->body, "{\"hold\":\"", 9) == 0) {
        snprintf(location, sizeof(location), "/holds/%.36s", answer->body + 9);
        responder_header(rq, "Location", location);
    }
    sales_reply_sale(th, rq, rc, answer, &err);
done:
    cJSON_Delete(json); /* after the reply: the cart's skus point into it */
}

/* What the path after /holds/ and the method ask: RS_OK with ref's action and
 * id (into id_buf); RS_ERR when it was answered (404, 405). */
static int
holds_route(responder_request *rq, struct sale_hold_ref *ref, char *id_buf, size_t id_size)
{
    const char *method = responder_method(rq), *path = responder_path(rq) + strlen("/holds/");
    const char *slash = strchr(path, '/'), *rest = slash != NULL ? slash : "";
    size_t n = slash != NULL ? (size_t)(slash - path) : strlen(path);
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;
    const char *allow;

    if (strcmp(rest, "") == 0) {
        if (get || strcmp(method, "DELETE") == 0) {
            ref->action = get ? SALE_HOLD_GET : SALE_HOLD_RELEASE;
            goto found;
        }
        allow = "GET, HEAD, DELETE";
    } else if (strcmp(rest, "/confirm") == 0 || strcmp(rest, "/extend") == 0) {
        if (post) {
            ref->action = rest[1] == 'c' ? SALE_HOLD_CONFIRM : SALE_HOLD_EXTEND;
            goto found;
        }
        allow = "POST";
    } else {
        responder_reply_error(rq, 404, "not found");
        return RS_ERR;
    }
    responder_header(rq, "Allow", allow);
    responder_reply_error(rq, 405, "method %.16s is not allowed on /holds/{id}%s; allowed: %s",
                          method, rest, allow);
    return RS_ERR;

found:
    /* Longer than any id: no such hold, as a malformed one is (lib/sale). */
    snprintf(id_buf, id_size, "%.*s", n < id_size ? (int)n : 0, path);
    ref->id = id_buf;
    return RS_OK;
}

void
holds_one(struct sales_thread *th, responder_request *rq)
{
    struct sale_hold_ref ref = {.ttl = th->app->hold_ttl};
    struct sale_answer answer_buf, *answer = &answer_buf;
    char key_buf[CHECKOUT_KEY_MAX + 1], id[64];
    errbuf err = {{0}};
    cJSON *json = NULL;
    size_t len;
    const char *body = responder_body(rq, &len), *customer;

    if (holds_route(rq, &ref, id, sizeof(id)) != RS_OK ||
        sales_parties(th, rq, &ref.client, &ref.key, key_buf, &customer) != RS_OK)
        goto done;
    if (ref.action == SALE_HOLD_GET)
        ref.key = NULL; /* a read is safe to repeat: nothing to store */
    /* extend {"ttl":S}: none, or an empty body, is hold_ttl. */
    if (ref.action == SALE_HOLD_EXTEND && len > 0 &&
        (json_parse_object(body, len, &json, &err) != RS_OK ||
         json_opt_int(json, "ttl", HOLD_TTL_MIN, HOLD_TTL_MAX, 0, &ref.ttl, &err) != RS_OK)) {
        holds_bad(rq, &err);
        goto done;
    }
    sales_reply_sale(th, rq, sale_hold_act(th->sale, &ref, answer, &err), answer, &err);
done:
    cJSON_Delete(json);
}
