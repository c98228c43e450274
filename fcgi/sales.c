/* restock-sales: the Sales API behind nginx (docs/design.md §4.1), HTTP only:
 * the routes, the requests parsed, the API client authenticated from its
 * Authorization header (lib/api_client), the answers and their status codes,
 * and the health check. The products are read by lib/product; the sale, its
 * statements and its answer are lib/sale's. Each responder thread has its own
 * database connection, on which its product reads, client checks and sale run. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "checkout_key.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "product.h"
#include "responder.h"
#include "sale.h"
#include "sales.h"

/* -- database failures ----------------------------------------------------------- */

/* Answers 503 for a failed statement: the database is down or failing. The
 * client, anonymous, is told the service is unavailable; what the database
 * said (its server, user, socket, name, SQL) goes to the log, once per outage. */
void
sales_unavailable(struct sales_thread *th, responder_request *rq, const errbuf *err)
{
    metrics_count(METRICS_DATABASE_ERRORS);
    if (!th->db_down)
        log_error("event=database_unavailable error=\"%s\"", err->msg);
    th->db_down = 1;
    responder_header(rq, "Retry-After", "5");
    responder_reply_error(rq, 503, "service unavailable: try again shortly");
}

void
sales_db_answered(struct sales_thread *th)
{
    if (th->db_down)
        log_info("event=database_back");
    th->db_down = 0;
}

/* -- products ---------------------------------------------------------------------- */

/* Answers json (and frees it); NULL was out of memory. */
static void
sales_reply_answer(responder_request *rq, int status, cJSON *json)
{
    if (json != NULL)
        responder_reply_json(rq, status, json);
    else
        responder_reply_error(rq, 500, "out of memory");
    cJSON_Delete(json);
}

static void
sales_reply_product(struct sales_thread *th, responder_request *rq, const char *sku)
{
    errbuf err = {{0}};
    cJSON *json;
    int found = product_get_json(th->products, sku, &json, &err);

    if (found < 0) {
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    if (found == 0) {
        static const char none[] = "{\"message\":\"상품 없음\"}";
        responder_reply_raw(rq, 404, none, sizeof(none) - 1);
        return;
    }
    sales_reply_answer(rq, 200, json);
}

static void
sales_donut(struct sales_thread *th, responder_request *rq)
{
    sales_reply_product(th, rq, th->app->default_sku);
}

static void
sales_product(struct sales_thread *th, responder_request *rq)
{
    sales_reply_product(th, rq, responder_path(rq) + strlen("/products/"));
}

static void
sales_products(struct sales_thread *th, responder_request *rq)
{
    errbuf err = {{0}};
    cJSON *list;

    if (product_list_json(th->products, &list, &err) != RS_OK) {
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    sales_reply_answer(rq, 200, list);
}

/* -- checkout ---------------------------------------------------------------------- */

/* 401 with the challenge of RFC 6750: error="invalid_token" when a key was
 * sent and is no good, none when a key is required and none was sent. The
 * message never quotes the header (it holds a key, maybe a real one). */
static void
sales_unauthorized(responder_request *rq, int sent, const char *message)
{
    metrics_count(METRICS_CHECKOUT_UNAUTHORIZED);
    responder_header(rq, "WWW-Authenticate",
                     sent ? "Bearer realm=\"restock\", error=\"invalid_token\""
                          : "Bearer realm=\"restock\"");
    responder_reply_error(rq, 401, "%s", message);
}

/* The request's API client from its Authorization header: *client is its id,
 * or CHECKOUT_KEY_ANONYMOUS when none was sent and none is required. RS_ERR
 * when it was answered: 401 for a key that is malformed, unknown or revoked
 * (whatever else the request holds: nothing is sold on a bad key), or for no
 * key where checkout_require_client is yes; 503 when the database failed. */
static int
sales_authenticate(struct sales_thread *th, responder_request *rq, long long *client)
{
    const char *header;
    char key[API_CLIENT_KEY_LEN + 1];
    errbuf err = {{0}};
    long long id;

    *client = CHECKOUT_KEY_ANONYMOUS;
    /* Two would make the client the proxy's choice (responder_header_once). */
    if (responder_header_once(rq, "Authorization", &header, &err) != RS_OK) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return RS_ERR;
    }
    if (header == NULL) {
        if (!th->app->require_client)
            return RS_OK;
        sales_unauthorized(rq, 0,
                           "Authorization: this shop takes checkouts from its API clients only: "
                           "send \"Authorization: Bearer <client key>\"");
        return RS_ERR;
    }
    if (api_client_parse_authorization(header, key, &err) != RS_OK) {
        sales_unauthorized(rq, 1, err.msg);
        return RS_ERR;
    }
    id = api_client_authenticate(th->clients, key, &err);
    if (id < 0) {
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        sales_unavailable(th, rq, &err);
        return RS_ERR;
    }
    sales_db_answered(th);
    if (id == 0) {
        sales_unauthorized(rq, 1, "Authorization: the client key is unknown or revoked");
        return RS_ERR;
    }
    *client = id;
    return RS_OK;
}

void
sales_reply_sale(struct sales_thread *th, responder_request *rq, int rc,
                 const struct sale_answer *answer, const errbuf *err)
{
    if (rc == SALE_IN_DOUBT) {
        /* Not 503, whose promise is that nothing was done: the commit was sent and
         * its answer lost. The key's stored answer tells a retry what happened. */
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        metrics_count(METRICS_DATABASE_ERRORS);
        log_error("event=sale_in_doubt error=\"%s\"", err->msg);
        th->db_down = 1;
        responder_reply_error(rq, 504,
                              "the database went away while this request was being committed: it "
                              "may or may not have been made; send it again with the same "
                              "Idempotency-Key to learn which");
        return;
    }
    if (rc != RS_OK) {
        metrics_count(METRICS_CHECKOUT_UNAVAILABLE);
        sales_unavailable(th, rq, err);
        return;
    }
    sales_db_answered(th);
    if (answer->outcome == SALE_KEY_MISMATCH) {
        responder_reply_error(rq, 422,
                              "Idempotency-Key: this key was used for another checkout (another "
                              "sku or quantity, or another request); a new request needs a new "
                              "key");
        return;
    }
    if (answer->outcome == SALE_REPLAYED)
        responder_header(rq, "Idempotent-Replayed", "true");
    responder_reply_raw(rq, answer->status, answer->body, answer->len);
}

int
sales_parties(struct sales_thread *th, responder_request *rq, long long *client, const char **key,
              char key_buf[CHECKOUT_KEY_MAX + 1], const char **customer)
{
    const char *key_header;
    errbuf err = {{0}};

    if (sales_authenticate(th, rq, client) != RS_OK)
        return RS_ERR;
    /* A bad key is the client's mistake like a bad body: 400, nothing sold. Two
     * keys would make the checkout's identity the proxy's choice. */
    if (responder_header_once(rq, "Idempotency-Key", &key_header, &err) != RS_OK ||
        (key_header != NULL && (checkout_key_parse(key_header, key_buf, &err) != RS_OK ||
                                (*client == CHECKOUT_KEY_ANONYMOUS &&
                                 checkout_key_check_anonymous(key_buf, &err) != RS_OK)))) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return RS_ERR;
    }
    *key = key_header != NULL ? key_buf : NULL;
    /* A customer is an authenticated client's: without a key anyone could name
     * any customer, and a limit would limit nobody. */
    if (responder_header_once(rq, "Restock-Customer", customer, &err) != RS_OK ||
        (*customer != NULL && *client == CHECKOUT_KEY_ANONYMOUS &&
         errbuf_set(&err, "Restock-Customer: only an authenticated API client (Authorization: "
                          "Bearer) may name its customer") != RS_OK) ||
        (*customer != NULL && sale_customer_check(*customer, &err) != RS_OK)) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        return RS_ERR;
    }
    return RS_OK;
}

/* A cart ({"lines":[…]}): its lines parsed and sold by lib/sale. */
static void
sales_cart(struct sales_thread *th, responder_request *rq, const struct sale_request *req,
           const cJSON *json)
{
    struct sale_cart *cart = malloc(sizeof(*cart));
    struct sale_answer *answer = malloc(sizeof(*answer));
    errbuf err = {{0}};

    if (cart == NULL || answer == NULL) {
        responder_reply_error(rq, 500, "out of memory");
    } else if (sale_cart_parse(json, cart, &err) != RS_OK) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
    } else {
        cart->client = req->client;
        cart->key = req->key;
        cart->customer = req->customer;
        sales_reply_sale(th, rq, sale_cart_checkout(th->sale, cart, answer, &err), answer, &err);
    }
    free(answer);
    free(cart);
}

/* The checkout: the client, the key and the body parsed here, the sale and its
 * answer made by lib/sale. A body with lines is a cart. */
static void
sales_checkout(struct sales_thread *th, responder_request *rq)
{
    struct sale_request req = {.sku = th->app->default_sku, .quantity = 1};
    struct sale_answer answer;
    errbuf err = {{0}};
    cJSON *json = NULL;
    size_t len;
    const char *body = responder_body(rq, &len);
    char key[CHECKOUT_KEY_MAX + 1];

    if (sales_parties(th, rq, &req.client, &req.key, key, &req.customer) != RS_OK)
        return;
    if (len > 0 && json_parse_object(body, len, &json, &err) == RS_OK &&
        cJSON_GetObjectItemCaseSensitive(json, "lines") != NULL) {
        sales_cart(th, rq, &req, json);
        goto done;
    }
    /* An empty body buys one of the default product, as the first version's
     * scripts expect; fields other than sku and quantity are ignored. (json is
     * NULL after a body that did not parse: err says why.) */
    if (len > 0 &&
        (json == NULL || json_opt_str(json, "sku", 1, PRODUCT_SKU_MAX, &req.sku, &err) != RS_OK ||
         json_opt_int(json, "quantity", 1, SALE_QUANTITY_MAX, 0, &req.quantity, &err) != RS_OK)) {
        metrics_count(METRICS_CHECKOUT_BAD_REQUEST);
        responder_reply_error(rq, 400, "%s", err.msg);
        goto done;
    }
    sales_reply_sale(th, rq, sale_checkout(th->sale, &req, &answer, &err), &answer, &err);

done:
    cJSON_Delete(json); /* after the reply: sku may point into it */
}

/* -- health ------------------------------------------------------------------------ */

static void
sales_healthz(struct sales_thread *th, responder_request *rq)
{
    errbuf err = {{0}};
    cJSON *json;

    /* A connection that died while idle fails its first ping; the second one
     * connects again, so that a database that is back answers 200 at once. */
    if (db_ping(th->conn, &err) != RS_OK &&
        (!db_failed_connection(th->conn) || db_ping(th->conn, &err) != RS_OK)) {
        sales_unavailable(th, rq, &err);
        return;
    }
    sales_db_answered(th);
    json = cJSON_CreateObject();
    if (json == NULL || cJSON_AddStringToObject(json, "status", "ok") == NULL)
        responder_reply_error(rq, 500, "out of memory");
    else
        responder_reply_json(rq, 200, json);
    cJSON_Delete(json);
}

/* -- routes ------------------------------------------------------------------------ */

typedef void (*sales_fn)(struct sales_thread *th, responder_request *rq);

static const struct sales_route {
    const char *path;   /* exact; a trailing '/' takes one more path segment (any,
                           when method is NULL) */
    const char *method; /* NULL: the handler answers every method */
    const char *allow;
    sales_fn fn;
} sales_routes[] = {
    {"/product/donut", "GET", "GET, HEAD", sales_donut},
    {"/products", "GET", "GET, HEAD", sales_products},
    {"/products/", "GET", "GET, HEAD", sales_product},
    {"/checkout", "POST", "POST", sales_checkout},
    {"/holds", "POST", "POST", holds_create},
    {"/holds/", NULL, NULL, holds_one}, /* its own methods, and deeper paths */
    {"/healthz", "GET", "GET, HEAD", sales_healthz},
};

static const struct sales_route *
sales_route_of(const char *path)
{
    for (size_t i = 0; i < sizeof(sales_routes) / sizeof(sales_routes[0]); i++) {
        const struct sales_route *r = &sales_routes[i];
        size_t n = strlen(r->path);

        if (r->path[n - 1] != '/') {
            if (strcmp(path, r->path) == 0)
                return r;
        } else if (strncmp(path, r->path, n) == 0 && path[n] != '\0' &&
                   (r->method == NULL || strchr(path + n, '/') == NULL)) {
            return r;
        }
    }
    return NULL;
}

static void
sales_handle(responder_request *rq, void *state)
{
    const char *method = responder_method(rq), *path = responder_path(rq);
    const struct sales_route *route = sales_route_of(path);

    if (route == NULL) {
        responder_reply_error(rq, 404, "not found");
        return;
    }
    /* HEAD is GET without the body, which nginx drops. */
    if (route->method != NULL && strcmp(method, route->method) != 0 &&
        !(strcmp(method, "HEAD") == 0 && strcmp(route->method, "GET") == 0)) {
        responder_header(rq, "Allow", route->allow);
        responder_reply_error(rq, 405, "method %.16s is not allowed on %s; allowed: %s", method,
                              route->path, route->allow);
        return;
    }
    route->fn(state, rq);
}

/* -- program ----------------------------------------------------------------------- */

static int
sales_app_init(const conf *cf, void **app_p, errbuf *err)
{
    static struct sales_app app;

    /* Once, before the threads: the client library's set-up is not thread-safe. */
    if (db_library_init(err) != RS_OK)
        return RS_ERR;
    app.cf = cf;
    app.default_sku = conf_str(cf, "default_sku");
    app.hold_ttl = conf_int(cf, "hold_ttl");
    app.require_client = strcmp(conf_str(cf, "checkout_require_client"), "yes") == 0;
    app.shop = sale_shop_new(cf, (size_t)conf_int(cf, "sales_threads"), err);
    if (app.shop == NULL) {
        db_library_end();
        return RS_ERR;
    }
    *app_p = &app;
    return RS_OK;
}

static void
sales_app_fini(void *app_p)
{
    struct sales_app *app = app_p;

    sale_shop_destroy(&app->shop); /* after every thread's sale */
    db_library_end();
}

static void
sales_thread_fini(void *state)
{
    struct sales_thread *th = state;

    if (th != NULL) {
        sale_destroy(&th->sale);
        api_client_destroy(&th->clients);
        product_destroy(&th->products);
        db_destroy(&th->conn); /* statements go with it */
        free(th);
    }
    db_thread_end();
}

static int
sales_thread_init(void *app, void **state, errbuf *err)
{
    struct sales_thread *th = NULL;

    *state = NULL;
    if (db_thread_init(err) != RS_OK)
        goto fail;
    th = calloc(1, sizeof(*th));
    if (th == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    th->app = app;
    /* Connects at the first request, and again whenever the database was gone. */
    th->conn = db_new(th->app->cf, 0);
    if (th->conn == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    th->products = product_new(th->conn, err);
    if (th->products == NULL)
        goto fail;
    th->clients = api_client_new(th->conn, err);
    if (th->clients == NULL)
        goto fail;
    th->sale = sale_new(th->app->shop, th->conn, err);
    if (th->sale == NULL)
        goto fail;
    *state = th;
    return RS_OK;

fail:
    sales_thread_fini(th);
    return RS_ERR;
}

int
main(int argc, char **argv)
{
    static const struct responder_program sales = {
        .name = "restock-sales",
        .socket_key = "sales_socket",
        .threads_key = "sales_threads",
        .app_init = sales_app_init,
        .app_fini = sales_app_fini,
        .thread_init = sales_thread_init,
        .thread_fini = sales_thread_fini,
        .handle = sales_handle,
    };

    return responder_main(argc, argv, &sales);
}
