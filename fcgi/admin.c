/* restock-admin: the admin API (/admin/api/…, docs/design.md "The admin API")
 * behind its own nginx site, loopback by default. This file is the frame: the
 * route table, the checks every request passes in this order (route, origin,
 * session, CSRF token, role, body), the session routes (login, who am I,
 * logout) and the answers' common parts; the routes themselves are in
 * fcgi/admin_routes.c. Every answer carries Cache-Control: no-store (the
 * program's reply_headers), a body over body_limit answers 413. Nothing secret
 * (a password, a cookie's token, a CSRF token) is ever logged; a failed login
 * is logged with its reason, the name and the client's address. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "admin.h"
#include "dlq.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "timetext.h"
#include "utf8.h"

#define ADMIN_PREFIX "/admin/api/"
#define ADMIN_COOKIE "restock_admin"

/* Who may use a route. */
enum admin_need {
    ADMIN_NEED_VIEWER,   /* any session */
    ADMIN_NEED_OPERATOR, /* an operator's session */
};

struct admin_route {
    const char *method;
    const char *pattern; /* segments after /admin/api/, "*" for the id */
    admin_route_fn fn;
    enum admin_need need;
    int body;           /* 1: a JSON object body is required; 2: optional */
    const char *fields; /* the body's fields, space-separated; NULL: the route checks */
    const char *query;  /* its query parameters, space-separated; NULL: none */
};

static const struct admin_route admin_routes[] = {
    {"GET", "status", admin_routes_status, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"GET", "orders", admin_routes_orders, ADMIN_NEED_VIEWER, 0, NULL, "limit"},
    {"GET", "orders/*", admin_routes_order, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"POST", "orders/*/fulfil", admin_routes_order_fulfil, ADMIN_NEED_OPERATOR, 1, "quantity over",
     NULL},
    {"GET", "products", admin_routes_products, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"GET", "products/*", admin_routes_product, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"PATCH", "products/*", admin_routes_product_set, ADMIN_NEED_OPERATOR, 1, NULL, NULL},
    {"GET", "holds", admin_routes_holds, ADMIN_NEED_VIEWER, 0, NULL, "limit"},
    {"GET", "dead", admin_routes_dead, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"GET", "messages/*", admin_routes_message, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"POST", "dead/*/redrive", admin_routes_redrive, ADMIN_NEED_OPERATOR, 2, "", NULL},
    {"GET", "clients", admin_routes_clients, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"POST", "clients", admin_routes_client_add, ADMIN_NEED_OPERATOR, 1, "name", NULL},
    {"POST", "clients/*/revoke", admin_routes_client_revoke, ADMIN_NEED_OPERATOR, 2, "", NULL},
    {"GET", "webhooks", admin_routes_webhooks, ADMIN_NEED_VIEWER, 0, NULL, NULL},
    {"POST", "webhooks", admin_routes_webhook_add, ADMIN_NEED_OPERATOR, 1, "url events", NULL},
    {"POST", "webhooks/*/disable", admin_routes_webhook_disable, ADMIN_NEED_OPERATOR, 2, "reason",
     NULL},
    {"POST", "webhooks/*/enable", admin_routes_webhook_enable, ADMIN_NEED_OPERATOR, 2, "", NULL},
    {"POST", "webhooks/*/rotate", admin_routes_webhook_rotate, ADMIN_NEED_OPERATOR, 2, "", NULL},
    {"POST", "webhooks/*/ping", admin_routes_webhook_ping, ADMIN_NEED_OPERATOR, 2, "", NULL},
    {"GET", "accounts", admin_routes_accounts, ADMIN_NEED_OPERATOR, 0, NULL, NULL},
    {"GET", "audit", admin_routes_audit, ADMIN_NEED_VIEWER, 0, NULL, "limit before"},
};

#define ADMIN_NROUTES (sizeof(admin_routes) / sizeof(admin_routes[0]))

/* 1 when word is one of the space-separated words of list. */
static int
admin_word_in(const char *word, size_t len, const char *list)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, " ");
        if (n == len && strncmp(p, word, n) == 0)
            return 1;
        p += n;
        p += strspn(p, " ");
    }
    return 0;
}

/* A query parameter or a body field the route does not take is refused, never
 * ignored: RS_ERR when it was answered 400. */
static int
admin_known_query(responder_request *rq, const struct admin_route *route)
{
    const char *q = responder_param(rq, "QUERY_STRING");

    for (const char *p = q; p != NULL && *p != '\0';) {
        size_t n = strcspn(p, "=&");
        if (!admin_word_in(p, n, route->query)) {
            responder_reply_error(rq, 400, "unknown query parameter \"%.*s\"",
                                  (int)utf8_cut(p, n, 64), p);
            return RS_ERR;
        }
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return RS_OK;
}

static int
admin_known_fields(responder_request *rq, const cJSON *body, const char *fields)
{
    for (const cJSON *f = body ? body->child : NULL; f != NULL && fields != NULL; f = f->next)
        if (!admin_word_in(f->string, strlen(f->string), fields)) {
            responder_reply_error(rq, 400, "unknown field \"%.*s\"",
                                  (int)utf8_cut(f->string, strlen(f->string), 64), f->string);
            return RS_ERR;
        }
    return RS_OK;
}

/* -- answers ----------------------------------------------------------------------- */

void
admin_reply(responder_request *rq, int status, cJSON *json)
{
    if (json != NULL)
        responder_reply_json(rq, status, json);
    else
        responder_reply_error(rq, 500, "out of memory");
    cJSON_Delete(json);
}

void
admin_fail(struct admin_thread *t, responder_request *rq, int status, const errbuf *err)
{
    if (db_failed_connection(t->conn)) {
        metrics_count(METRICS_DATABASE_ERRORS);
        if (!t->db_down)
            log_error("event=database_unavailable error=\"%s\"", err->msg);
        t->db_down = 1;
        responder_header(rq, "Retry-After", "5");
        responder_reply_error(rq, 503, "service unavailable: the database is not answering");
        return;
    }
    if (status >= 500)
        log_error("event=admin_failed path=%s error=\"%s\"", responder_path(rq), err->msg);
    responder_reply_error(rq, status, "%s", err->msg);
}

void
admin_db_answered(struct admin_thread *t)
{
    if (t->db_down)
        log_info("event=database_back");
    t->db_down = 0;
}

void
admin_reply_read(struct admin_thread *t, responder_request *rq, cJSON *json, int rc,
                 const errbuf *err)
{
    if (rc != RS_OK) {
        cJSON_Delete(json);
        admin_fail(t, rq, 500, err);
        return;
    }
    admin_db_answered(t);
    admin_reply(rq, 200, json);
}

int
admin_query_int(responder_request *rq, const char *name, long long min, long long max,
                long long def, long long *out)
{
    const char *q = responder_param(rq, "QUERY_STRING");
    size_t n = strlen(name);

    *out = def;
    for (const char *p = q; p != NULL && *p != '\0';) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, "&");
            char *end;
            long long x = strtoll(v, &end, 10);
            if (len == 0 || len > 18 || end != v + len || *v == '-' || *v == '+' || x < min ||
                x > max) {
                responder_reply_error(rq, 400, "%s: expected a whole number from %lld to %lld",
                                      name, min, max);
                return RS_ERR;
            }
            *out = x;
        }
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return RS_OK;
}

void
admin_add_time(cJSON *obj, const char *name, long long us)
{
    char text[TIMETEXT_SIZE];

    if (us == 0) {
        cJSON_AddNullToObject(obj, name);
        return;
    }
    timetext_utc_us(us, text, sizeof(text));
    cJSON_AddStringToObject(obj, name, text);
}

void
admin_add_str(cJSON *obj, const char *name, const char *value)
{
    if (value == NULL)
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddStringToObject(obj, name, value);
}

/* -- sessions ---------------------------------------------------------------------- */

/* The request's session token from its Cookie header, into token; RS_ERR when
 * it has none of the right form. */
static int
admin_cookie_token(responder_request *rq, char token[ADMIN_SESSION_TOKEN_LEN + 1])
{
    const char *cookie = responder_param(rq, "HTTP_COOKIE");
    size_t n = strlen(ADMIN_COOKIE);

    token[0] = '\0';
    for (const char *p = cookie; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ';')
            p++;
        if (strncmp(p, ADMIN_COOKIE, n) == 0 && p[n] == '=')
            return admin_session_token_parse(p + n + 1, strcspn(p + n + 1, ";"), token);
        p = strchr(p, ';');
    }
    return RS_ERR;
}

/* What the frame learns of a session's account. */
struct admin_caller {
    char name[ADMIN_ACCOUNT_NAME_MAX * 4 + 1];
    int role;
    int disabled;
};

static void
admin_caller_keep(void *arg, const struct admin_account_line *line)
{
    struct admin_caller *c = arg;
    errbuf ignored = {{0}};

    snprintf(c->name, sizeof(c->name), "%s", line->name ? line->name : "");
    c->role = line->role ? admin_account_role_parse(line->role, &ignored) : RS_ERR;
    c->disabled = line->disabled;
}

/* The session body: {"name","role","csrf_token","expires_at"}. */
static cJSON *
admin_session_body(const struct admin_caller *c, const struct admin_session_info *s)
{
    cJSON *json = cJSON_CreateObject();

    if (json == NULL)
        return NULL;
    cJSON_AddStringToObject(json, "name", c->name);
    cJSON_AddStringToObject(json, "role", admin_account_role_name(c->role));
    cJSON_AddStringToObject(json, "csrf_token", s->csrf);
    cJSON_AddStringToObject(json, "expires_at", s->expires_at);
    return json;
}

/* Sets the caller of a request with a session: 1, or 0 when it was answered
 * (401 login required or session expired, 503). */
static int
admin_session_of(struct admin_thread *t, responder_request *rq, struct admin_caller *caller,
                 struct admin_session_info *info)
{
    char token[ADMIN_SESSION_TOKEN_LEN + 1];
    errbuf err = {{0}};
    int state, found;

    if (admin_cookie_token(rq, token) != RS_OK) {
        responder_reply_error(rq, 401, "login required");
        return 0;
    }
    state = admin_session_lookup(t->sessions, token, info, &err);
    if (state == ADMIN_SESSION_VALID)
        found = admin_account_get(t->accounts, info->account_id, admin_caller_keep, caller, &err);
    else
        found = state < 0 ? RS_ERR : 0;
    if (found < 0) {
        admin_fail(t, rq, 500, &err);
        return 0;
    }
    admin_db_answered(t);
    if (state == ADMIN_SESSION_EXPIRED) {
        responder_reply_error(rq, 401, "session expired");
        return 0;
    }
    if (found == 0 || caller->disabled || caller->role < 0) {
        responder_reply_error(rq, 401, "login required");
        return 0;
    }
    return 1;
}

/* The cookie of a new session, or the one that ends it (token NULL). */
static void
admin_set_cookie(struct admin_thread *t, responder_request *rq, const char *token)
{
    char cookie[256];

    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/admin; HttpOnly; SameSite=Strict%s%s",
             ADMIN_COOKIE, token ? token : "", token ? "" : "; Max-Age=0",
             t->app->cookie_secure ? "; Secure" : "");
    responder_header(rq, "Set-Cookie", cookie);
}

/* A name as the log may show it: valid UTF-8, no control characters, cut. */
static const char *
admin_log_name(const char *name, char *out, size_t size)
{
    if (name == NULL)
        return "-";
    utf8_sanitize(name, utf8_cut(name, strlen(name), 64), out, size);
    return out;
}

/* POST /admin/api/session {"name","password"}. */
static void
admin_login(struct admin_thread *t, responder_request *rq)
{
    const char *from = responder_param(rq, "REMOTE_ADDR"), *name = NULL, *password = NULL, *body;
    char shown[UTF8_SANITIZED_SIZE(64)], token[ADMIN_SESSION_TOKEN_LEN + 1];
    struct admin_session_info info;
    struct admin_caller caller = {.role = 0};
    enum admin_login_result result;
    long long account = 0;
    size_t len;
    cJSON *json = NULL;
    errbuf err = {{0}};

    if (from == NULL)
        from = "-";
    body = responder_body(rq, &len);
    if (json_parse_object(body, len, &json, &err) != RS_OK ||
        json_opt_str(json, "name", 1, ADMIN_ACCOUNT_NAME_MAX, &name, &err) != RS_OK ||
        json_opt_str(json, "password", 1, ADMIN_PASSWORD_MAX, &password, &err) != RS_OK) {
        responder_reply_error(rq, 400, "%s", err.msg);
        goto done;
    }
    if (admin_known_fields(rq, json, "name password") != RS_OK)
        goto done;
    if (name == NULL || password == NULL) {
        responder_reply_error(rq, 400, "the body must be {\"name\":…,\"password\":…}");
        goto done;
    }
    if (admin_account_login(t->accounts, name, password, &result, &account, &err) != RS_OK) {
        admin_fail(t, rq, 500, &err);
        goto done;
    }
    admin_db_answered(t);
    if (result != ADMIN_LOGIN_OK) {
        log_warn("event=admin_login result=%s name=\"%s\" from=%s",
                 admin_account_login_result_name(result),
                 admin_log_name(name, shown, sizeof(shown)), from);
        responder_reply_error(rq, 401, "wrong name or password");
        goto done;
    }
    if (admin_session_create(t->sessions, account, from, token, &info, &err) != RS_OK ||
        admin_account_get(t->accounts, account, admin_caller_keep, &caller, &err) != 1) {
        admin_fail(t, rq, 500, &err);
        goto done;
    }
    log_info("event=admin_login result=ok name=\"%s\" from=%s",
             admin_log_name(name, shown, sizeof(shown)), from);
    admin_set_cookie(t, rq, token);
    admin_reply(rq, 200, admin_session_body(&caller, &info));
done:
    sodium_memzero(token, sizeof(token));
    cJSON_Delete(json);
}

/* -- the checks -------------------------------------------------------------------- */

/* A cross-site request: an Origin other than the site's, or Sec-Fetch-Site:
 * cross-site. A browser sends them and a page cannot forge them. */
static int
admin_cross_site(struct admin_thread *t, responder_request *rq)
{
    const char *origin = responder_param(rq, "HTTP_ORIGIN");
    const char *site = responder_param(rq, "HTTP_SEC_FETCH_SITE");

    if (origin != NULL && strcmp(origin, t->app->origin) != 0)
        return 1;
    return site != NULL && strcmp(site, "cross-site") == 0;
}

/* The route of path (after the prefix) and method: the route, or NULL with
 * *status 404 (no such path) or 405 (allow lists the methods it has). */
static const struct admin_route *
admin_route_of(const char *rest, const char *method, char *id, size_t id_size, int *status,
               char *allow, size_t allow_size)
{
    const struct admin_route *found = NULL;

    *status = 404;
    allow[0] = '\0';
    for (size_t i = 0; i < ADMIN_NROUTES; i++) {
        const char *p = admin_routes[i].pattern, *r = rest;
        char seg[256] = "";
        int match = 1;

        while (match && *p != '\0') {
            if (*p == '*') {
                size_t n = strcspn(r, "/");
                if (n == 0 || n >= sizeof(seg))
                    match = 0;
                else
                    memcpy(seg, r, n), seg[n] = '\0';
                r += n;
                p++;
            } else if (*p++ != *r++) {
                match = 0;
            }
        }
        if (!match || *r != '\0')
            continue;
        *status = 405;
        if (strlen(allow) + strlen(admin_routes[i].method) + 8 < allow_size)
            snprintf(allow + strlen(allow), allow_size - strlen(allow), "%s%s%s",
                     allow[0] ? ", " : "", admin_routes[i].method,
                     strcmp(admin_routes[i].method, "GET") == 0 ? ", HEAD" : "");
        if (found == NULL &&
            (strcmp(method, admin_routes[i].method) == 0 ||
             (strcmp(method, "HEAD") == 0 && strcmp(admin_routes[i].method, "GET") == 0))) {
            found = &admin_routes[i];
            snprintf(id, id_size, "%s", seg);
        }
    }
    return found;
}

static void
admin_handle(responder_request *rq, void *state)
{
    struct admin_thread *t = state;
    const char *path = responder_path(rq), *method = responder_method(rq), *csrf, *body, *rest;
    const struct admin_route *route;
    struct admin_session_info info;
    struct admin_caller caller = {.role = 0};
    char id[256], allow[128];
    int status, safe = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    cJSON *json = NULL;
    size_t len;
    errbuf err = {{0}};

    if (strncmp(path, ADMIN_PREFIX, strlen(ADMIN_PREFIX)) != 0) {
        responder_reply_error(rq, 404, "not found");
        return;
    }
    rest = path + strlen(ADMIN_PREFIX);
    if (strcmp(rest, "session") == 0) {
        route = NULL;
        if (!safe && strcmp(method, "POST") != 0 && strcmp(method, "DELETE") != 0) {
            responder_header(rq, "Allow", "GET, HEAD, POST, DELETE");
            responder_reply_error(rq, 405, "method not allowed: use GET, POST or DELETE");
            return;
        }
    } else {
        route = admin_route_of(rest, method, id, sizeof(id), &status, allow, sizeof(allow));
        if (route == NULL) {
            if (status == 405)
                responder_header(rq, "Allow", allow);
            responder_reply_error(rq, status, status == 404 ? "not found" : "method not allowed");
            return;
        }
    }
    if (admin_cross_site(t, rq)) {
        log_warn("event=admin_refused reason=cross_site path=%s from=%s", path,
                 responder_param(rq, "REMOTE_ADDR") ? responder_param(rq, "REMOTE_ADDR") : "-");
        responder_reply_error(rq, 403, "cross-site request refused");
        return;
    }
    if (route == NULL && strcmp(method, "POST") == 0) {
        admin_login(t, rq);
        return;
    }
    if (!admin_session_of(t, rq, &caller, &info))
        return;
    if (!safe) {
        if (responder_header_once(rq, "X-Restock-CSRF", &csrf, &err) != RS_OK ||
            !admin_session_csrf_ok(info.csrf, csrf)) {
            log_warn("event=admin_refused reason=csrf path=%s name=\"%s\"", path, caller.name);
            responder_reply_error(rq, 403, "cross-site request refused");
            return;
        }
    }
    if (route == NULL) {
        char token[ADMIN_SESSION_TOKEN_LEN + 1];
        if (safe) {
            admin_reply(rq, 200, admin_session_body(&caller, &info));
            return;
        }
        admin_cookie_token(rq, token);
        if (admin_session_delete(t->sessions, token, &err) < 0) {
            admin_fail(t, rq, 500, &err);
            return;
        }
        log_info("event=admin_logout name=\"%s\"", caller.name);
        admin_set_cookie(t, rq, NULL);
        json = cJSON_CreateObject();
        if (json != NULL)
            cJSON_AddStringToObject(json, "status", "logged_out");
        admin_reply(rq, 200, json);
        return;
    }
    if (route->need == ADMIN_NEED_OPERATOR && caller.role != ADMIN_ROLE_OPERATOR) {
        responder_reply_error(rq, 403, "operator role required");
        return;
    }
    if (admin_known_query(rq, route) != RS_OK)
        return;
    body = responder_body(rq, &len);
    if (route->body == 1 || (route->body == 2 && len > 0)) {
        if (json_parse_object(body, len, &json, &err) != RS_OK) {
            responder_reply_error(rq, 400, "%s", err.msg);
            return;
        }
        if (admin_known_fields(rq, json, route->fields) != RS_OK) {
            cJSON_Delete(json);
            return;
        }
    } else if (len > 0) {
        responder_reply_error(rq, 400, "this request takes no body");
        return;
    }
    snprintf(t->actor, sizeof(t->actor), "admin:%s", caller.name);
    snprintf(t->source, sizeof(t->source), "%s",
             responder_param(rq, "REMOTE_ADDR") ? responder_param(rq, "REMOTE_ADDR") : "-");
    t->who.actor = t->actor;
    t->who.source = t->source;
    t->role = caller.role;
    route->fn(t, rq, id[0] ? id : NULL, json);
    cJSON_Delete(json);
}

/* -- the program ------------------------------------------------------------------- */

static int
admin_app_init(const conf *cf, void **app_out, errbuf *err)
{
    struct admin_app *app = calloc(1, sizeof(*app));
    const char *origin = conf_str(cf, "admin_origin");

    if (app == NULL)
        return errbuf_set(err, "out of memory");
    if (db_library_init(err) != RS_OK || api_client_init(err) != RS_OK ||
        webhook_endpoint_init(err) != RS_OK) {
        free(app);
        return RS_ERR;
    }
    app->cf = cf;
    if (*origin != '\0')
        snprintf(app->origin, sizeof(app->origin), "%s", origin);
    else
        snprintf(app->origin, sizeof(app->origin), "http://%s", conf_str(cf, "admin_listen"));
    app->cookie_secure = strcmp(conf_str(cf, "admin_cookie_secure"), "yes") == 0;
    log_info("event=admin_origin origin=%s cookie_secure=%s", app->origin,
             app->cookie_secure ? "yes" : "no");
    *app_out = app;
    return RS_OK;
}

static void
admin_app_fini(void *app)
{
    free(app);
    db_library_end();
}

static void
admin_thread_fini(void *state)
{
    struct admin_thread *t = state;

    if (t != NULL) {
        dlq_close(t->queues);
        admin_session_destroy(&t->sessions);
        admin_account_destroy(&t->accounts);
        audit_destroy(&t->trail);
        webhook_endpoint_destroy(&t->hooks);
        api_client_destroy(&t->clients);
        hold_report_destroy(&t->holds);
        product_destroy(&t->products);
        reorder_destroy(&t->policy);
        order_destroy(&t->orders);
        db_destroy(&t->conn);
        free(t);
    }
    db_thread_end();
}

static int
admin_thread_init(void *app_ptr, void **state, errbuf *err)
{
    struct admin_app *app = app_ptr;
    struct admin_thread *t = NULL;

    *state = NULL;
    if (db_thread_init(err) != RS_OK)
        goto fail;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    t->app = app;
    /* Connects at the first request, and again whenever the database was gone. */
    t->conn = db_new(app->cf, 0);
    if (t->conn == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    if ((t->orders = order_new(t->conn, err)) == NULL ||
        (t->policy = reorder_new(app->cf, t->conn, t->orders, err)) == NULL ||
        (t->products = product_new(t->conn, err)) == NULL ||
        (t->holds = hold_report_new(t->conn, err)) == NULL ||
        (t->clients = api_client_new(t->conn, err)) == NULL ||
        (t->hooks = webhook_endpoint_new(t->conn, err)) == NULL ||
        (t->trail = audit_new(t->conn, err)) == NULL ||
        (t->accounts = admin_account_new(app->cf, t->conn, err)) == NULL ||
        (t->sessions = admin_session_new(app->cf, t->conn, err)) == NULL ||
        dlq_open(conf_str(app->cf, "spool_dir"), t->queues, err) != RS_OK)
        goto fail;
    *state = t;
    return RS_OK;

fail:
    admin_thread_fini(t);
    return RS_ERR;
}

int
main(int argc, char **argv)
{
    static const struct responder_program admin = {
        .name = "restock-admin",
        .socket_key = "admin_socket",
        .threads_key = "admin_threads",
        .app_init = admin_app_init,
        .app_fini = admin_app_fini,
        .thread_init = admin_thread_init,
        .thread_fini = admin_thread_fini,
        .handle = admin_handle,
        .reply_headers = "Cache-Control: no-store\r\n",
        .too_large_status = 413,
    };

    return responder_main(argc, argv, &admin);
}
