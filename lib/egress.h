/* egress: which addresses a webhook delivery may connect to. Whoever registers a
 * webhook endpoint chooses its URL; without a guard the worker would POST wherever
 * the name points: the database on 127.0.0.1, a router's page on 192.168.1.1, the
 * cloud's metadata service at 169.254.169.254 (server-side request forgery). The
 * guard classifies the address libcurl is about to connect to, after DNS, for every
 * connection of a transfer, and refuses any that is not public unless the
 * operator's policy (webhook_allow) allows it. Checking the URL's host before the
 * transfer would not do: a name can resolve elsewhere at delivery time (DNS
 * rebinding). Redirects are never followed and proxies never used, so that the
 * address checked is the address the request goes to. */
#ifndef RESTOCK_EGRESS_H
#define RESTOCK_EGRESS_H

#include <stddef.h>

#include <curl/curl.h>
#include <sys/socket.h>

#include "errbuf.h"

/* What an address is, for the guard. Everything but EGRESS_PUBLIC is refused unless
 * the policy allows it. IPv4 inside IPv6 (mapped ::ffff:a.b.c.d, compatible
 * ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16) is classified by its IPv4 address. */
enum egress_class {
    EGRESS_PUBLIC = 0,
    EGRESS_LOOPBACK,      /* 127/8, ::1 */
    EGRESS_UNSPECIFIED,   /* 0/8 ("this network"), :: */
    EGRESS_PRIVATE,       /* 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, 64:ff9b:1::/48 */
    EGRESS_LINK_LOCAL,    /* 169.254/16, fe80::/10 */
    EGRESS_METADATA,      /* the clouds' instance metadata services (a class of its own, so
                           * that allowing link-local or private does not open them) */
    EGRESS_CGNAT,         /* 100.64/10, carrier-grade NAT (RFC 6598) */
    EGRESS_BENCHMARKING,  /* 198.18/15 */
    EGRESS_DOCUMENTATION, /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20 */
    EGRESS_MULTICAST,     /* 224/4, ff00::/8 */
    EGRESS_BROADCAST,     /* 255.255.255.255 */
    EGRESS_RESERVED,      /* 240/4, 192.0.0/24, 192.88.99/24, 100::/64, 2001::/23 (Teredo
                           * among them), IPv6 outside 2000::/3 */
    EGRESS_NOT_IP,        /* not an IPv4 or IPv6 address (a unix socket): never allowed */
};

/* The class's name for messages and for webhook_allow ("loopback", "link-local"). */
const char *egress_class_name(enum egress_class cls);

/* The class of an address of len bytes (a sockaddr_in or sockaddr_in6). */
enum egress_class egress_classify(const struct sockaddr *sa, size_t len);

/* What the operator allows besides public addresses: webhook_allow, a comma list of
 * CIDRs (10.0.0.0/8, fd00::/8), single addresses (192.168.1.5) and class names
 * (loopback, private, link-local, metadata, cgnat, benchmarking, documentation,
 * multicast, broadcast, reserved, unspecified). Immutable once made: the delivery
 * threads may share one. */
typedef struct egress_policy egress_policy;

/* NULL with err naming the item when allow does not parse; "" allows nothing. */
egress_policy *egress_policy_new(const char *allow, errbuf *err);
void egress_policy_destroy(egress_policy **self_p);

/* 1 when a connection to the address may be made, 0 when not; *cls (when not NULL)
 * gets its class. A CIDR matches an IPv4 address also in its IPv6 forms. */
int egress_policy_allows(const egress_policy *self, const struct sockaddr *sa, size_t len,
                         enum egress_class *cls);

/* The longest address as text (an IPv6 address with an IPv4 tail). */
#define EGRESS_ADDR_MAX 46

/* What the guard did during one transfer: filled by libcurl's socket callback. */
struct egress_verdict {
    const egress_policy *policy;
    int opened;                    /* connections let through */
    int refused;                   /* connections refused */
    enum egress_class cls;         /* the first refused address's class */
    char address[EGRESS_ADDR_MAX]; /* the first refused address, as text */
};

/* Sets up handle h for one guarded transfer (call it after curl_easy_reset and
 * before curl_easy_perform; policy and verdict must outlive the transfer): every
 * socket libcurl opens goes through the policy (CURLOPT_OPENSOCKETFUNCTION, after
 * DNS, CURLOPT_RESOLVE included), redirects are not followed (a 3xx is the
 * answer), proxies are not used (not even from http_proxy or https_proxy: a proxy
 * would hide the address) and only http and https are spoken (file:// would reach
 * no socket at all). Connections that libcurl keeps alive were checked when they
 * were opened: a driver that changes the policy (reload) takes a new handle. */
int egress_curl_setup(CURL *h, const egress_policy *policy, struct egress_verdict *v, errbuf *err);

/* After a failed curl_easy_perform: RS_ERR with err saying "refused by the egress
 * guard: <host> resolved to <address> (<class>)" when the guard is why the
 * transfer failed (it refused an address and let none through), so that the
 * delivery round tells it from a network failure; RS_OK otherwise. */
int egress_curl_verdict(CURL *h, const struct egress_verdict *v, errbuf *err);

#endif
