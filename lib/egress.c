/* egress: the addresses a webhook delivery may connect to (see egress.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "egress.h"

/* Indexed by enum egress_class; also the words of webhook_allow. */
static const char *const egress_names[] = {
    [EGRESS_PUBLIC] = "public",
    [EGRESS_LOOPBACK] = "loopback",
    [EGRESS_UNSPECIFIED] = "unspecified",
    [EGRESS_PRIVATE] = "private",
    [EGRESS_LINK_LOCAL] = "link-local",
    [EGRESS_METADATA] = "metadata",
    [EGRESS_CGNAT] = "cgnat",
    [EGRESS_BENCHMARKING] = "benchmarking",
    [EGRESS_DOCUMENTATION] = "documentation",
    [EGRESS_MULTICAST] = "multicast",
    [EGRESS_BROADCAST] = "broadcast",
    [EGRESS_RESERVED] = "reserved",
    [EGRESS_NOT_IP] = "not an IP address",
};

#define EGRESS_NCLASSES (sizeof(egress_names) / sizeof(egress_names[0]))

const char *
egress_class_name(enum egress_class cls)
{
    return (size_t)cls < EGRESS_NCLASSES ? egress_names[cls] : "unknown";
}

/* -- classification ---------------------------------------------------------------- */

/* The special IPv4 ranges (IANA's special-purpose registry, RFC 6890 and after),
 * the more specific first: the first that holds an address gives its class. */
static const struct {
    uint8_t base[4];
    int bits;
    enum egress_class cls;
} egress_v4[] = {
    {{255, 255, 255, 255}, 32, EGRESS_BROADCAST},
    {{169, 254, 169, 254}, 32, EGRESS_METADATA}, /* AWS, GCP, Azure, OpenStack, ... */
    {{168, 63, 129, 16}, 32, EGRESS_METADATA},   /* Azure's wire server (a public range) */
    {{100, 100, 100, 200}, 32, EGRESS_METADATA}, /* Alibaba Cloud */
    {{0, 0, 0, 0}, 8, EGRESS_UNSPECIFIED},
    {{10, 0, 0, 0}, 8, EGRESS_PRIVATE},
    {{100, 64, 0, 0}, 10, EGRESS_CGNAT},
    {{127, 0, 0, 0}, 8, EGRESS_LOOPBACK},
    {{169, 254, 0, 0}, 16, EGRESS_LINK_LOCAL},
    {{172, 16, 0, 0}, 12, EGRESS_PRIVATE},
    {{192, 0, 0, 0}, 24, EGRESS_RESERVED}, /* IETF protocol assignments */
    {{192, 0, 2, 0}, 24, EGRESS_DOCUMENTATION},
    {{192, 88, 99, 0}, 24, EGRESS_RESERVED}, /* the old 6to4 relay anycast */
    {{192, 168, 0, 0}, 16, EGRESS_PRIVATE},
    {{198, 18, 0, 0}, 15, EGRESS_BENCHMARKING},
    {{198, 51, 100, 0}, 24, EGRESS_DOCUMENTATION},
    {{203, 0, 113, 0}, 24, EGRESS_DOCUMENTATION},
    {{224, 0, 0, 0}, 4, EGRESS_MULTICAST},
    {{240, 0, 0, 0}, 4, EGRESS_RESERVED},
};

/* The special IPv6 ranges, the more specific first. An entry with v4_at > 0 holds an
 * IPv4 address at that byte, classified instead: the packet goes to that IPv4 host
 * (through the kernel's mapping, a NAT64 gateway, a 6to4 relay). Teredo (2001::/32)
 * is not unwrapped but refused with the rest of 2001::/23: its IPv4 part is a relay
 * server's, a consumer does not live behind Teredo, and refusing is the safe side. */
static const struct {
    uint8_t base[16];
    int bits;
    enum egress_class cls;
    int v4_at;
} egress_v6[] = {
    {{0}, 128, EGRESS_UNSPECIFIED, 0},
    {{[15] = 1}, 128, EGRESS_LOOPBACK, 0},
    {{[10] = 0xff, [11] = 0xff}, 96, EGRESS_PUBLIC, 12},  /* mapped ::ffff:a.b.c.d */
    {{[8] = 0xff, [9] = 0xff}, 96, EGRESS_PUBLIC, 12},    /* translated ::ffff:0:a.b.c.d */
    {{0}, 96, EGRESS_PUBLIC, 12},                         /* compatible ::a.b.c.d */
    {{0, 0x64, 0xff, 0x9b}, 96, EGRESS_PUBLIC, 12},       /* NAT64 64:ff9b::/96 */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, EGRESS_PRIVATE, 0}, /* NAT64 for local use */
    {{1, 0}, 64, EGRESS_RESERVED, 0},                     /* discard-only */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, EGRESS_DOCUMENTATION, 0},
    {{0x20, 0x01}, 23, EGRESS_RESERVED, 0}, /* IETF protocol assignments, Teredo */
    {{0x20, 0x02}, 16, EGRESS_PUBLIC, 2},   /* 6to4 */
    {{0x3f, 0xff}, 20, EGRESS_DOCUMENTATION, 0},
    {{0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54},
     128,
     EGRESS_METADATA,
     0},                            /* AWS fd00:ec2::254 */
    {{0xfc}, 7, EGRESS_PRIVATE, 0}, /* unique local */
    {{0xfe, 0x80}, 10, EGRESS_LINK_LOCAL, 0},
    {{0xfe, 0xc0}, 10, EGRESS_PRIVATE, 0}, /* the deprecated site-local */
    {{0xff}, 8, EGRESS_MULTICAST, 0},
};

/* 1 when the first bits of a and base are equal. */
static int
egress_prefix_match(const uint8_t *a, const uint8_t *base, int bits)
{
    int bytes = bits / 8, rest = bits % 8;

    if (memcmp(a, base, (size_t)bytes) != 0)
        return 0;
    return rest == 0 || ((a[bytes] ^ base[bytes]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* An address taken apart: its family and bytes, the IPv4 address it carries (its
 * own, or the one inside an IPv6 form), and its class. */
struct egress_addr {
    int family; /* AF_INET, AF_INET6, or 0: not IP */
    uint8_t raw[16];
    int has_v4;
    uint8_t v4[4];
    enum egress_class cls;
};

static enum egress_class
egress_v4_class(const uint8_t a[4])
{
    for (size_t i = 0; i < sizeof(egress_v4) / sizeof(egress_v4[0]); i++)
        if (egress_prefix_match(a, egress_v4[i].base, egress_v4[i].bits))
            return egress_v4[i].cls;
    return EGRESS_PUBLIC;
}

static void
egress_inspect(const struct sockaddr *sa, size_t len, struct egress_addr *out)
{
    memset(out, 0, sizeof(*out));
    out->cls = EGRESS_NOT_IP;
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;

        memcpy(&in, sa, sizeof(in));
        out->family = AF_INET;
        memcpy(out->raw, &in.sin_addr, 4);
        memcpy(out->v4, out->raw, 4);
        out->has_v4 = 1;
        out->cls = egress_v4_class(out->v4);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;

        memcpy(&in6, sa, sizeof(in6));
        out->family = AF_INET6;
        memcpy(out->raw, &in6.sin6_addr, 16);
        /* Global unicast is 2000::/3; what lies outside it and in no entry is
         * unassigned. */
        out->cls = (out->raw[0] & 0xe0) == 0x20 ? EGRESS_PUBLIC : EGRESS_RESERVED;
        for (size_t i = 0; i < sizeof(egress_v6) / sizeof(egress_v6[0]); i++) {
            if (!egress_prefix_match(out->raw, egress_v6[i].base, egress_v6[i].bits))
                continue;
            if (egress_v6[i].v4_at > 0) {
                memcpy(out->v4, out->raw + egress_v6[i].v4_at, 4);
                out->has_v4 = 1;
                out->cls = egress_v4_class(out->v4);
            } else
                out->cls = egress_v6[i].cls;
            break;
        }
    }
}

enum egress_class
egress_classify(const struct sockaddr *sa, size_t len)
{
    struct egress_addr a;

    egress_inspect(sa, len, &a);
    return a.cls;
}

/* -- the policy -------------------------------------------------------------------- */

struct egress_rule {
    int family; /* AF_INET: the first 4 bytes of addr */
    uint8_t addr[16];
    int bits;
};

struct egress_policy {
    unsigned classes; /* bit (1 << class) for each class allowed */
    size_t nrules;
    struct egress_rule rules[]; /* the CIDRs allowed */
};

/* Parses one CIDR or address (item, NUL-terminated) into r. */
static int
egress_rule_parse(const char *item, struct egress_rule *r, errbuf *err)
{
    char addr[64];
    const char *slash = strchr(item, '/');
    size_t n = slash ? (size_t)(slash - item) : strlen(item);
    int max;

    if (n >= sizeof(addr))
        return errbuf_set(err, "\"%s\": not an address", item);
    memcpy(addr, item, n);
    addr[n] = '\0';
    memset(r, 0, sizeof(*r));
    if (inet_pton(AF_INET, addr, r->addr) == 1)
        r->family = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, addr, r->addr) == 1)
        r->family = AF_INET6, max = 128;
    else
        return errbuf_set(err, "\"%s\": \"%s\" is not an IPv4 or IPv6 address", item, addr);
    r->bits = max;
    if (slash != NULL) {
        char *end;
        long bits;

        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (errno != 0 || end == slash + 1 || *end != '\0' || !isdigit((unsigned char)slash[1]) ||
            bits < 0 || bits > max)
            return errbuf_set(err, "\"%s\": the prefix length must be a number from 0 to %d", item,
                              max);
        r->bits = (int)bits;
    }
    /* Bits set beyond the prefix are most likely a typo (10.0.0.1/8 for 10.0.0.0/8,
     * or /8 for /28): refused rather than guessed. */
    for (int bit = r->bits; bit < max; bit++)
        if (r->addr[bit / 8] & (0x80 >> (bit % 8)))
            return errbuf_set(err, "\"%s\": bits are set beyond the /%d prefix", item, r->bits);
    return RS_OK;
}

/* Adds one item (a CIDR, an address or a class name) to self. */
static int
egress_policy_add(egress_policy *self, const char *item, errbuf *err)
{
    if (strchr(item, ':') != NULL || strchr(item, '.') != NULL || strchr(item, '/') != NULL ||
        isdigit((unsigned char)item[0]))
        return egress_rule_parse(item, &self->rules[self->nrules++], err);
    for (size_t c = 0; c < EGRESS_NCLASSES; c++)
        if (c != EGRESS_PUBLIC && c != EGRESS_NOT_IP && strcmp(item, egress_names[c]) == 0) {
            self->classes |= 1u << c;
            return RS_OK;
        }
    if (strcmp(item, "public") == 0)
        return errbuf_set(err, "\"public\": public addresses are always allowed");
    return errbuf_set(err,
                      "\"%s\": expected a CIDR (10.0.0.0/8), an address or one of loopback, "
                      "private, link-local, metadata, cgnat, benchmarking, documentation, "
                      "multicast, broadcast, reserved, unspecified",
                      item);
}

egress_policy *
egress_policy_new(const char *allow, errbuf *err)
{
    size_t items = 1;
    egress_policy *self;
    char *copy = NULL, *p;

    for (const char *c = allow; *c != '\0'; c++)
        items += *c == ',';
    self = calloc(1, sizeof(*self) + items * sizeof(self->rules[0]));
    copy = strdup(allow);
    if (self == NULL || copy == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    p = copy;
    for (int nth = 0;; nth++) {
        char *comma = strchr(p, ','), *end;

        if (comma != NULL)
            *comma = '\0';
        while (isspace((unsigned char)*p))
            p++;
        end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1]))
            *--end = '\0';
        /* Only an empty list may be empty: ",," or a trailing comma is a slip. */
        if (*p == '\0' && (comma != NULL || nth > 0)) {
            errbuf_set(err, "an empty item in the list (two commas, or one at an end)");
            goto fail;
        }
        if (*p != '\0' && egress_policy_add(self, p, err) != RS_OK)
            goto fail;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    free(copy);
    return self;
fail:
    free(copy);
    free(self);
    return NULL;
}

void
egress_policy_destroy(egress_policy **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

static int
egress_rule_match(const struct egress_rule *r, const struct egress_addr *a)
{
    if (r->family == AF_INET)
        return a->has_v4 && egress_prefix_match(a->v4, r->addr, r->bits);
    return a->family == AF_INET6 && egress_prefix_match(a->raw, r->addr, r->bits);
}

int
egress_policy_allows(const egress_policy *self, const struct sockaddr *sa, size_t len,
                     enum egress_class *cls)
{
    struct egress_addr a;

    egress_inspect(sa, len, &a);
    if (cls != NULL)
        *cls = a.cls;
    if (a.cls == EGRESS_PUBLIC)
        return 1;
    if (a.cls == EGRESS_NOT_IP || self == NULL)
        return 0;
    if (self->classes & (1u << a.cls))
        return 1;
    for (size_t i = 0; i < self->nrules; i++)
        if (egress_rule_match(&self->rules[i], &a))
            return 1;
    return 0;
}

/* -- libcurl ----------------------------------------------------------------------- */

/* libcurl calls this instead of socket(2) for every connection it opens, with the
 * address it is about to connect to: refusing here refuses that address only, and
 * libcurl tries the name's next address, if any. */
static curl_socket_t
egress_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
    struct egress_verdict *v = clientp;
    struct sockaddr_storage ss;
    size_t len = address->addrlen;
    enum egress_class cls = EGRESS_NOT_IP;
    curl_socket_t fd;

    memset(&ss, 0, sizeof(ss));
    /* libcurl's address lives in a sockaddr_storage; addrlen says how much of it. */
    if (len <= sizeof(ss))
        memcpy(&ss, &address->addr, len);
    /* An unknown purpose (a later libcurl's) is refused: the guard fails closed. */
    if (purpose != CURLSOCKTYPE_IPCXN || len > sizeof(ss) ||
        !egress_policy_allows(v->policy, (const struct sockaddr *)&ss, len, &cls)) {
        if (v->refused++ == 0) {
            v->cls = cls;
            if (ss.ss_family == AF_INET)
                inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, v->address,
                          sizeof(v->address));
            else if (ss.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, v->address,
                          sizeof(v->address));
            else
                snprintf(v->address, sizeof(v->address), "(family %d)", ss.ss_family);
        }
        return CURL_SOCKET_BAD;
    }
    fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd >= 0)
        v->opened++;
    return fd >= 0 ? fd : CURL_SOCKET_BAD;
}

int
egress_curl_setup(CURL *h, const egress_policy *policy, struct egress_verdict *v, errbuf *err)
{
    CURLcode rc;

    memset(v, 0, sizeof(*v));
    v->policy = policy;
    if ((rc = curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, egress_opensocket)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, v)) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L)) != CURLE_OK
        /* "" disables proxies, also those of the environment; "*" in NOPROXY too,
         * should a later libcurl read the environment's proxy regardless. */
        || (rc = curl_easy_setopt(h, CURLOPT_PROXY, "")) != CURLE_OK ||
        (rc = curl_easy_setopt(h, CURLOPT_NOPROXY, "*")) != CURLE_OK
#if LIBCURL_VERSION_NUM >= 0x075500
        || (rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https")) != CURLE_OK
#else
        ||
        (rc = curl_easy_setopt(h, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK
#endif
    )
        return errbuf_set(err, "setting up the egress guard: %s", curl_easy_strerror(rc));
    return RS_OK;
}

int
egress_curl_verdict(CURL *h, const struct egress_verdict *v, errbuf *err)
{
    char *url = NULL, *host = NULL;
    CURLU *u;

    if (v->refused == 0 || v->opened > 0)
        return RS_OK;
    /* The host as the transfer named it, never the rest of the URL (a query may
     * carry a secret). */
    u = curl_url();
    if (u != NULL && curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK &&
        url != NULL && curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME) == CURLUE_OK)
        curl_url_get(u, CURLUPART_HOST, &host, 0);
    errbuf_set(err, "refused by the egress guard: %s resolved to %s (%s)%s",
               host != NULL ? host : "the endpoint", v->address, egress_class_name(v->cls),
               v->refused > 1 ? ", and its other addresses too" : "");
    curl_free(host);
    curl_url_cleanup(u);
    return RS_ERR;
}
