/* http: JSON POSTs over libcurl (see http.h). */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "http.h"

struct http {
    CURL *curl; /* one easy handle, reused: it keeps the connections alive */
    char curl_error[CURL_ERROR_SIZE];
    char *body; /* the last answer's body, NUL-terminated, at most HTTP_BODY_MAX */
    size_t len, cap;
    enum http_failure failure;
    char retry_after[HTTP_RETRY_AFTER_MAX]; /* the last answer's Retry-After, "" for none */
    const egress_policy *egress;            /* NULL: requests are not guarded */
    struct egress_verdict verdict;
};

int
http_global_init(errbuf *err)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

    if (rc != CURLE_OK)
        return errbuf_set(err, "initialising libcurl: %s", curl_easy_strerror(rc));
    return RS_OK;
}

void
http_global_cleanup(void)
{
    curl_global_cleanup();
}

http *
http_new(errbuf *err)
{
    http *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->curl = curl_easy_init();
    if (self->curl == NULL) {
        errbuf_set(err, "libcurl cannot make a handle (out of memory, or curl_global_init "
                        "failed)");
        free(self);
        return NULL;
    }
    return self;
}

void
http_destroy(http **self_p)
{
    http *self = *self_p;

    if (self == NULL)
        return;
    curl_easy_cleanup(self->curl);
    free(self->body);
    free(self);
    *self_p = NULL;
}

void
http_set_egress(http *self, const egress_policy *policy)
{
    self->egress = policy;
}

enum http_failure
http_last_failure(const http *self)
{
    return self->failure;
}

void
http_redact_url(const char *url, char *out, size_t size)
{
    CURLU *u = curl_url();
    char *shown = NULL;

    /* The same guess libcurl makes for a URL without scheme, so that the message
     * names what was really requested. */
    if (u != NULL && url != NULL &&
        curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) ==
            CURLUE_OK &&
        curl_url_set(u, CURLUPART_USER, NULL, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_QUERY, NULL, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &shown, 0) == CURLUE_OK)
        snprintf(out, size, "%s", shown);
    else
        snprintf(out, size, "(malformed URL)");
    curl_free(shown);
    curl_url_cleanup(u);
}

/* Keeps the first HTTP_BODY_MAX bytes and reads the rest into the void: refusing it
 * would fail a transfer whose status (say 201: order taken) already came. */
static size_t
http_write(char *data, size_t size, size_t nmemb, void *userdata)
{
    http *self = userdata;
    size_t n = size * nmemb, keep = n;

    if (self->len + keep > HTTP_BODY_MAX)
        keep = HTTP_BODY_MAX - self->len;
    if (keep == 0)
        return n;
    if (self->len + keep + 1 > self->cap) {
        size_t cap = self->cap ? self->cap : 1024;
        char *grown;

        while (cap < self->len + keep + 1)
            cap *= 2;
        if (cap > HTTP_BODY_MAX + 1)
            cap = HTTP_BODY_MAX + 1;
        grown = realloc(self->body, cap);
        if (grown == NULL)
            return 0; /* out of memory: libcurl fails the transfer */
        self->body = grown;
        self->cap = cap;
    }
    memcpy(self->body + self->len, data, keep);
    self->len += keep;
    self->body[self->len] = '\0';
    return n;
}

/* Keeps the value of a Retry-After header (trimmed; one too long is dropped). A
 * header is handed over whole, one per call; a redirect is never followed, so
 * the headers are those of the one answer. */
static size_t
http_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    static const char name[] = "retry-after:";
    http *self = userdata;
    size_t n = size * nmemb, len;
    const char *v = data + sizeof(name) - 1;

    if (n < sizeof(name) - 1 || strncasecmp(data, name, sizeof(name) - 1) != 0)
        return n;
    len = n - (sizeof(name) - 1);
    while (len > 0 && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len > 0 && isspace((unsigned char)v[len - 1]))
        len--;
    if (len < sizeof(self->retry_after)) {
        memcpy(self->retry_after, v, len);
        self->retry_after[len] = '\0';
    }
    return n;
}

const char *
http_retry_after(const http *self)
{
    return self->retry_after;
}

static enum http_failure
http_classify(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return HTTP_FAIL_REFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return HTTP_FAIL_DNS;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_FAIL_TIMEOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return HTTP_FAIL_URL;
    default:
        return HTTP_FAIL_TRANSPORT;
    }
}

static const char *
http_failure_name(enum http_failure failure)
{
    switch (failure) {
    case HTTP_FAIL_REFUSED:
        return "connection failed";
    case HTTP_FAIL_DNS:
        return "host name not resolved";
    case HTTP_FAIL_TIMEOUT:
        return "timed out";
    case HTTP_FAIL_URL:
        return "bad URL";
    default:
        return "transfer failed";
    }
}

/* Sets the options of one request; libcurl's reset keeps the live connections. */
static CURLcode
http_setup(http *self, const char *url, struct curl_slist *headers, const char *body,
           long timeout_seconds)
{
    CURLcode rc;

    curl_easy_reset(self->curl);
    self->curl_error[0] = '\0';
    if ((rc = curl_easy_setopt(self->curl, CURLOPT_ERRORBUFFER, self->curl_error)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_URL, url)) != CURLE_OK
#if LIBCURL_VERSION_NUM >= 0x075500
        || (rc = curl_easy_setopt(self->curl, CURLOPT_PROTOCOLS_STR, "http,https")) != CURLE_OK
#else
        || (rc = curl_easy_setopt(self->curl, CURLOPT_PROTOCOLS,
                                  CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK
#endif
        || (rc = curl_easy_setopt(self->curl, CURLOPT_POST, 1L)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_POSTFIELDS, body)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body))) !=
            CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_HTTPHEADER, headers)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION)) !=
            CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_TIMEOUT, timeout_seconds)) != CURLE_OK
        /* Signals (alarm for DNS timeouts) are not safe in a threaded program. */
        || (rc = curl_easy_setopt(self->curl, CURLOPT_NOSIGNAL, 1L)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_TCP_KEEPALIVE, 1L)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_WRITEFUNCTION, http_write)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_WRITEDATA, self)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_HEADERFUNCTION, http_header)) != CURLE_OK ||
        (rc = curl_easy_setopt(self->curl, CURLOPT_HEADERDATA, self)) != CURLE_OK)
        return rc;
    return CURLE_OK;
}

int
http_post_json(http *self, const char *url, const char *const headers[], const char *body,
               long timeout_seconds, long *status, const char **response, errbuf *err)
{
    struct curl_slist *list = NULL, *more;
    char shown[512];
    CURLcode rc;
    int ret = RS_ERR;

    *status = 0;
    if (response != NULL)
        *response = NULL;
    self->failure = HTTP_FAIL_TRANSPORT;
    self->len = 0;
    self->retry_after[0] = '\0';
    if (self->body != NULL)
        self->body[0] = '\0';
    http_redact_url(url, shown, sizeof(shown));

    /* "Expect:" stops libcurl from waiting for a 100 Continue on larger bodies. */
    list = curl_slist_append(NULL, "Content-Type: application/json");
    if (list == NULL || (more = curl_slist_append(list, "Expect:")) == NULL) {
        errbuf_set(err, "POST %s: out of memory", shown);
        goto done;
    }
    list = more;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        more = curl_slist_append(list, headers[i]);
        if (more == NULL) {
            errbuf_set(err, "POST %s: out of memory", shown);
            goto done;
        }
        list = more;
    }
    rc = http_setup(self, url, list, body, timeout_seconds);
    if (rc != CURLE_OK) {
        errbuf_set(err, "POST %s: setting up the request: %s", shown, curl_easy_strerror(rc));
        goto done;
    }
    if (self->egress != NULL &&
        egress_curl_setup(self->curl, self->egress, &self->verdict, err) != RS_OK) {
        errbuf_prefix(err, "POST %s", shown);
        goto done;
    }
    rc = curl_easy_perform(self->curl);
    if (rc != CURLE_OK && self->egress != NULL &&
        egress_curl_verdict(self->curl, &self->verdict, err) != RS_OK) {
        self->failure = HTTP_FAIL_EGRESS;
        errbuf_prefix(err, "POST %s", shown);
        goto done;
    }
    if (rc != CURLE_OK) {
        self->failure = http_classify(rc);
        /* libcurl's own text names host and port at most, never the path or query. */
        errbuf_set(err, "POST %s: %s (%s)", shown, http_failure_name(self->failure),
                   self->curl_error[0] ? self->curl_error : curl_easy_strerror(rc));
        goto done;
    }
    rc = curl_easy_getinfo(self->curl, CURLINFO_RESPONSE_CODE, status);
    if (rc != CURLE_OK) {
        errbuf_set(err, "POST %s: reading the status: %s", shown, curl_easy_strerror(rc));
        goto done;
    }
    self->failure = HTTP_FAIL_NONE;
    if (response != NULL)
        *response = self->body != NULL ? self->body : "";
    ret = RS_OK;
done:
    curl_slist_free_all(list);
    return ret;
}
