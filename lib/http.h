/* http: JSON POSTs over libcurl for the drivers of the queue worker. One http object
 * per thread keeps one connection per host alive between requests; failures say
 * whether the peer refused, the name did not resolve or time ran out, and never
 * show a URL's query string (a callback URL there carries a secret token). */
#ifndef RESTOCK_HTTP_H
#define RESTOCK_HTTP_H

#include <stddef.h>

#include "egress.h"
#include "errbuf.h"

/* Largest response body kept; the rest is read and dropped, so that a verbose
 * peer can neither exhaust memory nor turn an accepted request into a failure. */
#define HTTP_BODY_MAX (64 * 1024)

typedef struct http http;

/* What made the last request fail (HTTP_FAIL_NONE when it got an answer, whatever
 * its status). */
enum http_failure {
    HTTP_FAIL_NONE = 0,
    HTTP_FAIL_REFUSED,   /* no connection: refused, or the host unreachable */
    HTTP_FAIL_DNS,       /* the host name did not resolve */
    HTTP_FAIL_TIMEOUT,   /* no complete answer within the timeout */
    HTTP_FAIL_URL,       /* the URL is malformed or not http(s): a configuration error */
    HTTP_FAIL_TRANSPORT, /* any other transfer error (reset, bad answer, TLS, ...) */
    HTTP_FAIL_EGRESS,    /* the egress guard refused every address of the host */
};

/* Calls curl_global_init. Every program that uses http calls it once in main(),
 * before it starts a thread (libcurl's global init is not thread-safe), and
 * http_global_cleanup() once at exit, after the last http_destroy. */
int http_global_init(errbuf *err);
void http_global_cleanup(void);

/* An object for one thread at a time. NULL, with err saying why, when libcurl
 * cannot make a handle (out of memory, or its global init failed). */
http *http_new(errbuf *err);
void http_destroy(http **self_p);

/* Guards every later request of self with the egress policy (lib/egress: public
 * addresses only unless allowed, no redirects, no proxies): a webhook delivery's.
 * Call it once, before the first request; a new policy (a reload) takes a new
 * http, since the connections kept alive were checked under the old one. Without
 * it (the factory) requests are not guarded. policy must outlive self. */
void http_set_egress(http *self, const egress_policy *policy);

/* POSTs body (NUL-terminated) to url with `Content-Type: application/json` and the
 * extra headers (a NULL-terminated array of "Name: value" strings, or NULL), waiting
 * at most timeout_seconds for the whole exchange. RS_OK when an answer came,
 * whatever its status: *status holds it and *response (when response is not NULL)
 * its body, NUL-terminated, at most HTTP_BODY_MAX bytes, owned by self and valid
 * until the next request. RS_ERR otherwise, with http_last_failure saying why and
 * err naming the URL without its query string. */
int http_post_json(http *self, const char *url, const char *const headers[], const char *body,
                   long timeout_seconds, long *status, const char **response, errbuf *err);

enum http_failure http_last_failure(const http *self);

/* The last answer's Retry-After header as it came (seconds or an HTTP-date,
 * trimmed), "" when it had none or the request got no answer. Owned by self,
 * valid until the next request. */
#define HTTP_RETRY_AFTER_MAX 64
const char *http_retry_after(const http *self);

/* Writes url without user, password, query and fragment into out (for messages);
 * "(malformed URL)" when it does not parse. */
void http_redact_url(const char *url, char *out, size_t size);

#endif
