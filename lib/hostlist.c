/* hostlist: parsing db_host (see hostlist.h). */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostlist.h"

struct hostlist_item {
    char *host;
    char *name; /* host:port */
    unsigned port;
};

struct hostlist {
    size_t n;
    struct hostlist_item items[HOSTLIST_MAX];
};

void
hostlist_destroy(hostlist **self_p)
{
    hostlist *self = *self_p;

    if (self == NULL)
        return;
    for (size_t i = 0; i < self->n; i++) {
        free(self->items[i].host);
        free(self->items[i].name);
    }
    free(self);
    *self_p = NULL;
}

/* One item, trimmed, of len bytes at s (not NUL-terminated); position counts from 1. */
static int
hostlist_add(hostlist *self, const char *s, size_t len, unsigned default_port, size_t position,
             errbuf *err)
{
    struct hostlist_item *it;
    const char *host = s, *colon = NULL;
    size_t host_len = len;
    unsigned long port = default_port;
    char *name;

    while (len > 0 && isspace((unsigned char)*s))
        s++, len--;
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0)
        return errbuf_set(err, "item %zu of the host list is empty", position);
    if (self->n == HOSTLIST_MAX)
        return errbuf_set(err, "more than %d hosts", HOSTLIST_MAX);
    host = s;
    host_len = len;
    if (*s == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close == s + 1 || (close + 1 != s + len && close[1] != ':'))
            return errbuf_set(err, "item %zu: \"%.*s\": expected [address] or [address]:port",
                              position, (int)len, s);
        host = s + 1;
        host_len = (size_t)(close - host);
        if (close + 1 != s + len)
            colon = close + 1;
    } else {
        const char *first = memchr(s, ':', len);
        /* More than one colon and no brackets: an IPv6 address without a port. */
        if (first != NULL && memchr(first + 1, ':', (size_t)(s + len - first - 1)) == NULL) {
            colon = first;
            host_len = (size_t)(colon - s);
        }
    }
    for (size_t i = 0; i < host_len; i++)
        if (isspace((unsigned char)host[i]) || host[i] == '/')
            return errbuf_set(err, "item %zu: \"%.*s\": not a host name", position, (int)len, s);
    if (host_len == 0)
        return errbuf_set(err, "item %zu: \"%.*s\": no host before the port", position, (int)len,
                          s);
    if (colon != NULL) {
        const char *p = colon + 1, *end = s + len;
        port = 0;
        if (p == end)
            return errbuf_set(err, "item %zu: \"%.*s\": no port after ':'", position, (int)len, s);
        for (; p < end; p++) {
            if (!isdigit((unsigned char)*p) || (port = port * 10 + (unsigned)(*p - '0')) > 65535)
                return errbuf_set(err,
                                  "item %zu: \"%.*s\": the port must be a number from 1 to "
                                  "65535",
                                  position, (int)len, s);
        }
        if (port == 0)
            return errbuf_set(err, "item %zu: \"%.*s\": the port must be a number from 1 to 65535",
                              position, (int)len, s);
    }
    it = &self->items[self->n];
    it->host = strndup(host, host_len);
    name = malloc(host_len + 16);
    if (it->host == NULL || name == NULL) {
        free(it->host);
        free(name);
        return errbuf_set(err, "out of memory");
    }
    snprintf(name, host_len + 16, *s == '[' ? "[%s]:%lu" : "%s:%lu", it->host, port);
    it->name = name;
    it->port = (unsigned)port;
    self->n++;
    return RS_OK;
}

hostlist *
hostlist_new(const char *text, unsigned default_port, errbuf *err)
{
    hostlist *self = calloc(1, sizeof(*self));
    const char *p = text;
    size_t position = 1;

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0')
        p = "localhost"; /* what the client library makes of an empty host */
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (hostlist_add(self, p, len, default_port, position, err) != RS_OK) {
            hostlist_destroy(&self);
            return NULL;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
        position++;
    }
    return self;
}

size_t
hostlist_count(const hostlist *self)
{
    return self->n;
}

const char *
hostlist_host(const hostlist *self, size_t i)
{
    return self->items[i].host;
}

unsigned
hostlist_port(const hostlist *self, size_t i)
{
    return self->items[i].port;
}

const char *
hostlist_name(const hostlist *self, size_t i)
{
    return self->items[i].name;
}
