/* Unit test of egress: the class of addresses of every kind in both families and
 * their IPv6 forms, at the edges of the ranges; webhook_allow's parsing and rules;
 * and real libcurl transfers on loopback: refused before a connection is made (a
 * listener that accepts nothing sees none), let through when allowed, a name that
 * resolves to loopback refused at connect time, a 302 not followed, the
 * environment's proxy not used. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "egress.h"
#include "tap.h"

/* An address given as text (IPv4 or IPv6) as a socket address; its length, 0 when
 * the text is not an address. */
static size_t
sockaddr_of(const char *text, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        return sizeof(*in);
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return sizeof(*in6);
    }
    return 0;
}

static const char *
class_of(const char *text)
{
    struct sockaddr_storage ss;
    size_t len = sockaddr_of(text, &ss);

    return len ? egress_class_name(egress_classify((struct sockaddr *)&ss, len)) : "(not IP)";
}

static void
test_classes(void)
{
    static const char *const cases[][2] = {
        /* IPv4, at the edges of each range */
        {"8.8.8.8", "public"},
        {"1.1.1.1", "public"},
        {"0.0.0.0", "unspecified"},
        {"0.255.255.255", "unspecified"},
        {"1.0.0.0", "public"},
        {"9.255.255.255", "public"},
        {"10.0.0.0", "private"},
        {"10.255.255.255", "private"},
        {"11.0.0.0", "public"},
        {"100.63.255.255", "public"},
        {"100.64.0.0", "cgnat"},
        {"100.127.255.255", "cgnat"},
        {"100.128.0.0", "public"},
        {"126.255.255.255", "public"},
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"128.0.0.0", "public"},
        {"169.253.255.255", "public"},
        {"169.254.0.1", "link-local"},
        {"169.254.169.253", "link-local"},
        {"169.254.169.254", "metadata"},
        {"169.254.169.255", "link-local"},
        {"169.254.255.255", "link-local"},
        {"169.255.0.0", "public"},
        {"168.63.129.16", "metadata"},
        {"100.100.100.200", "metadata"},
        {"172.15.255.255", "public"},
        {"172.16.0.0", "private"},
        {"172.31.255.255", "private"},
        {"172.32.0.0", "public"},
        {"192.0.0.8", "reserved"},
        {"192.0.1.255", "public"},
        {"192.0.2.1", "documentation"},
        {"192.0.3.0", "public"},
        {"192.88.99.1", "reserved"},
        {"192.167.255.255", "public"},
        {"192.168.0.0", "private"},
        {"192.168.255.255", "private"},
        {"192.169.0.0", "public"},
        {"198.17.255.255", "public"},
        {"198.18.0.0", "benchmarking"},
        {"198.19.255.255", "benchmarking"},
        {"198.20.0.0", "public"},
        {"198.51.100.7", "documentation"},
        {"203.0.113.9", "documentation"},
        {"223.255.255.255", "public"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.255", "multicast"},
        {"240.0.0.1", "reserved"},
        {"255.255.255.254", "reserved"},
        {"255.255.255.255", "broadcast"},
        /* IPv6 */
        {"2606:4700::1111", "public"},
        {"2a00:1450:4001::200e", "public"},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"::2", "unspecified"}, /* compatible ::0.0.0.2, in 0/8 */
        {"fc00::1", "private"},
        {"fd12:3456::1", "private"},
        {"fbff:ffff::1", "reserved"},
        {"fd00:ec2::254", "metadata"},
        {"fd00:ec2::253", "private"},
        {"fe80::1", "link-local"},
        {"febf:ffff::1", "link-local"},
        {"fec0::1", "private"},
        {"ff02::1", "multicast"},
        {"2001:db8::1", "documentation"},
        {"3fff::1", "documentation"},
        {"2001::1", "reserved"},          /* Teredo */
        {"2001:1ff:ffff::1", "reserved"}, /* the end of 2001::/23 */
        {"2001:200::1", "public"},        /* just after it */
        {"100::1", "reserved"},           /* discard-only */
        {"4000::1", "reserved"},          /* outside 2000::/3 */
        {"1fff:ffff::1", "reserved"},
        {"3fff:1000::1", "public"},  /* after 3fff::/20 */
        {"64:ff9b:1::1", "private"}, /* NAT64 for local use */
        /* IPv4 inside IPv6: the IPv4 address's class */
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.0.0.5", "private"},
        {"::ffff:169.254.169.254", "metadata"},
        {"::ffff:8.8.8.8", "public"},
        {"::ffff:0:192.168.1.1", "private"}, /* translated */
        {"::127.0.0.1", "loopback"},         /* compatible */
        {"::172.16.0.1", "private"},
        {"::8.8.8.8", "public"},
        {"64:ff9b::10.0.0.1", "private"}, /* NAT64 */
        {"64:ff9b::7f00:1", "loopback"},
        {"64:ff9b::8.8.8.8", "public"},
        {"2002:a00:5::1", "private"}, /* 6to4 of 10.0.0.5 */
        {"2002:7f00:1::1", "loopback"},
        {"2002:808:808::1", "public"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[96];

        snprintf(name, sizeof(name), "%s is %s", cases[i][0], cases[i][1]);
        is_str(class_of(cases[i][0]), cases[i][1], name);
    }
    {
        struct sockaddr_un_like {
            sa_family_t family;
            char path[32];
        } un = {.family = AF_UNIX, .path = "/run/x.sock"};
        struct sockaddr_in short_in = {.sin_family = AF_INET};
        egress_policy *all = egress_policy_new("0.0.0.0/0, ::/0", NULL);

        is_int(egress_classify((struct sockaddr *)&un, sizeof(un)), EGRESS_NOT_IP,
               "a unix socket address is not IP");
        is_int(egress_classify((struct sockaddr *)&short_in, 4), EGRESS_NOT_IP,
               "a truncated sockaddr_in is not taken as IP");
        ok(!egress_policy_allows(all, (struct sockaddr *)&un, sizeof(un), NULL),
           "no policy allows what is not IP");
        egress_policy_destroy(&all);
    }
}

static void
test_policy_parsing(void)
{
    static const char *const good[] = {
        "",
        "  ",
        "loopback",
        "10.0.0.0/8",
        "10.0.0.0/8, 192.168.1.5 ,fd00::/8,loopback,private",
        "link-local,metadata,cgnat,benchmarking,documentation,multicast,broadcast,reserved,"
        "unspecified",
        "0.0.0.0/0",
        "::/0",
        "::ffff:10.0.0.0/104",
        "2001:db8::1/128",
    };
    static const char *const bad[][2] = {
        {"privat", "\"privat\": expected a CIDR"},
        {"public", "always allowed"},
        {"Loopback", "\"Loopback\": expected"},
        {"10.0.0.1/8", "bits are set beyond the /8 prefix"},
        {"10.0.0.0/33", "prefix length must be a number from 0 to 32"},
        {"fd00::/129", "from 0 to 128"},
        {"10.0.0.0/", "prefix length"},
        {"10.0.0.0/+8", "prefix length"},
        {"10.0.0.0/8x", "prefix length"},
        {"10.0.0/8", "\"10.0.0\" is not an IPv4 or IPv6 address"},
        {"300.1.1.1", "not an IPv4 or IPv6 address"},
        {"example.com", "not an IPv4 or IPv6 address"},
        {"10.0.0.0/8,,loopback", "an empty item"},
        {"loopback,", "an empty item"},
        {",loopback", "an empty item"},
        {"fe80::1%eth0", "not an IPv4 or IPv6 address"},
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        errbuf err = {{0}};
        egress_policy *p = egress_policy_new(good[i], &err);

        if (!ok(p != NULL, "webhook_allow \"%s\" parses", good[i]))
            diag("%s", err.msg);
        egress_policy_destroy(&p);
        ok(p == NULL, "destroy clears the pointer");
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errbuf err = {{0}};
        egress_policy *p = egress_policy_new(bad[i][0], &err);

        ok(p == NULL, "webhook_allow \"%s\" is refused", bad[i][0]);
        if (!ok(strstr(err.msg, bad[i][1]) != NULL, "... saying \"%s\"", bad[i][1]))
            diag("got: %s", err.msg);
        egress_policy_destroy(&p);
    }
}

/* What a policy allows: {webhook_allow, address, 1 allowed / 0 refused}. */
static void
test_rules(void)
{
    static const struct {
        const char *allow, *addr;
        int want;
    } cases[] = {
        /* The default: public only. */
        {"", "8.8.8.8", 1},
        {"", "2606:4700::1111", 1},
        {"", "127.0.0.1", 0},
        {"", "::1", 0},
        {"", "::ffff:127.0.0.1", 0},
        {"", "10.0.0.5", 0},
        {"", "169.254.169.254", 0},
        {"", "100.64.0.1", 0},
        {"", "198.18.0.1", 0},
        {"", "224.0.0.1", 0},
        {"", "0.0.0.0", 0},
        {"", "255.255.255.255", 0},
        /* CIDRs, single addresses and classes. */
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "10.1.2.3", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "::ffff:10.1.2.3", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "64:ff9b::a01:203", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "172.16.0.1", 0},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "192.168.1.5", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "192.168.1.6", 0},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "127.0.0.1", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "::1", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "::ffff:127.0.0.2", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "fd12::1", 1},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "fc00::1", 0},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "169.254.169.254", 0},
        {"10.0.0.0/8, loopback, fd00::/8, 192.168.1.5", "8.8.8.8", 1},
        /* link-local does not open the metadata address inside it; metadata only it. */
        {"link-local", "169.254.1.1", 1},
        {"link-local", "fe80::1", 1},
        {"link-local", "169.254.169.254", 0},
        {"metadata", "169.254.169.254", 1},
        {"metadata", "fd00:ec2::254", 1},
        {"metadata", "169.254.1.1", 0},
        {"private", "10.0.0.5", 1},
        {"private", "172.31.0.1", 1},
        {"private", "fd00::1", 1},
        {"private", "127.0.0.1", 0},
        {"private", "100.64.0.1", 0},
    };
    struct sockaddr_storage ss;
    enum egress_class cls = EGRESS_PUBLIC;
    egress_policy *p;
    char name[160];
    size_t len;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        p = egress_policy_new(cases[i].allow, NULL);
        len = sockaddr_of(cases[i].addr, &ss);
        snprintf(name, sizeof(name), "webhook_allow = \"%s\": %s %s", cases[i].allow, cases[i].addr,
                 cases[i].want ? "allowed" : "refused");
        is_int(egress_policy_allows(p, (struct sockaddr *)&ss, len, NULL), cases[i].want, name);
        egress_policy_destroy(&p);
    }
    len = sockaddr_of("127.0.0.1", &ss);
    ok(!egress_policy_allows(NULL, (struct sockaddr *)&ss, len, NULL), "no policy: not loopback");
    len = sockaddr_of("8.8.8.8", &ss);
    ok(egress_policy_allows(NULL, (struct sockaddr *)&ss, len, NULL), "no policy: public");
    p = egress_policy_new("loopback", NULL);
    len = sockaddr_of("172.16.9.9", &ss);
    ok(!egress_policy_allows(p, (struct sockaddr *)&ss, len, &cls) && cls == EGRESS_PRIVATE,
       "the refused address's class is given");
    egress_policy_destroy(&p);
}

/* -- real transfers on loopback ----------------------------------------------------- */

/* A listener on 127.0.0.1 whose connections nobody accepts: a connection made to it
 * waits in its backlog, where bare_accepts finds it (the kernel completes a loopback
 * handshake within connect(2), before libcurl goes on). */
static int bare_fd = -1, bare_port;

/* A listener on 127.0.0.1 with a thread that answers each request: /redirect with
 * a 302 to /target, anything else with 200 "hello"; it records the paths asked. */
static struct {
    int fd, port, stop[2];
    pthread_t thread;
    pthread_mutex_t lock;
    char paths[16][64];
    int npaths;
} served = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
listen_loopback(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Connections waiting on the bare listener, accepted and closed. */
static int
bare_accepts(void)
{
    int n = 0, fd;

    while ((fd = accept4(bare_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        close(fd);
        n++;
    }
    return n;
}

static void
served_answer(int fd)
{
    char req[2048], path[64] = "", reply[512];
    size_t len = 0;
    ssize_t n;

    while (len < sizeof(req) - 1 && (n = read(fd, req + len, sizeof(req) - 1 - len)) > 0) {
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL)
            break;
    }
    req[len] = '\0';
    if (sscanf(req, "%*s %63s", path) != 1)
        return;
    pthread_mutex_lock(&served.lock);
    if (served.npaths < 16)
        snprintf(served.paths[served.npaths++], sizeof(served.paths[0]), "%s", path);
    pthread_mutex_unlock(&served.lock);
    if (strcmp(path, "/redirect") == 0)
        snprintf(reply, sizeof(reply),
                 "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/target\r\n"
                 "Content-Length: 0\r\nConnection: close\r\n\r\n",
                 served.port);
    else
        snprintf(reply, sizeof(reply),
                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                 "Connection: close\r\n\r\nhello");
    if (write(fd, reply, strlen(reply)) < 0)
        diag("served: write: %s", strerror(errno));
}

static void *
served_run(void *arg)
{
    struct pollfd pf[2] = {{.fd = served.fd, .events = POLLIN},
                           {.fd = served.stop[0], .events = POLLIN}};

    (void)arg;
    while (poll(pf, 2, -1) >= 0 && !(pf[1].revents & POLLIN)) {
        int fd = accept4(served.fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd >= 0) {
            served_answer(fd);
            close(fd);
        }
    }
    return NULL;
}

/* 1 when the served listener was asked for path. */
static int
served_saw(const char *path)
{
    int seen = 0;

    pthread_mutex_lock(&served.lock);
    for (int i = 0; i < served.npaths; i++)
        seen |= strcmp(served.paths[i], path) == 0;
    pthread_mutex_unlock(&served.lock);
    return seen;
}

struct result {
    CURLcode rc;
    long status;
    int guard_rc; /* egress_curl_verdict's */
    char msg[512];
    char body[64];
    struct egress_verdict v;
};

static size_t
keep_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct result *r = userdata;
    size_t have = strlen(r->body), n = size * nmemb;

    if (have + n < sizeof(r->body))
        memcpy(r->body + have, data, n), r->body[have + n] = '\0';
    return n;
}

/* One guarded GET of url under policy p; resolve (or NULL) pins a name as
 * CURLOPT_RESOLVE does ("name:port:address,..."), standing in for DNS. */
static void
fetch(const char *url, const egress_policy *p, const char *resolve, long connect_only,
      struct result *r)
{
    CURL *h = curl_easy_init();
    struct curl_slist *pins = resolve ? curl_slist_append(NULL, resolve) : NULL;
    errbuf err = {{0}};

    memset(r, 0, sizeof(*r));
    r->rc = CURLE_FAILED_INIT;
    if (h == NULL || egress_curl_setup(h, p, &r->v, &err) != RS_OK) {
        diag("setup: %s", err.msg);
        goto done;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_RESOLVE, pins);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, connect_only);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    r->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    r->guard_rc = egress_curl_verdict(h, &r->v, &err);
    snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
done:
    curl_slist_free_all(pins);
    curl_easy_cleanup(h);
}

static void
test_transfers(void)
{
    egress_policy *none = egress_policy_new("", NULL);
    egress_policy *lo = egress_policy_new("loopback", NULL);
    char url[128], pin[128];
    struct result r;

    bare_fd = listen_loopback(&bare_port);
    served.fd = listen_loopback(&served.port);
    if (bare_fd < 0 || served.fd < 0 || fcntl(bare_fd, F_SETFL, O_NONBLOCK) != 0 ||
        pipe(served.stop) != 0 || pthread_create(&served.thread, NULL, served_run, NULL) != 0) {
        ok(0, "loopback listeners: %s", strerror(errno));
        return;
    }

    /* The probe sees a connection when one is made (so that its 0 below means none). */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", bare_port);
    fetch(url, lo, NULL, 1L, &r);
    is_int(r.rc, CURLE_OK, "loopback allowed: a connection to the bare listener is made");
    is_int(bare_accepts(), 1, "... and the listener sees it");

    /* The default policy: refused before connect(2). */
    fetch(url, none, NULL, 0L, &r);
    is_int(r.rc, CURLE_COULDNT_CONNECT, "default policy: http://127.0.0.1 fails to connect");
    is_int(bare_accepts(), 0, "... the listener sees no connection");
    is_int(r.guard_rc, RS_ERR, "... and the guard says it refused");
    is_str(r.msg, "refused by the egress guard: 127.0.0.1 resolved to 127.0.0.1 (loopback)",
           "... naming the host, the address and its class");
    ok(r.v.refused == 1 && r.v.opened == 0 && r.v.cls == EGRESS_LOOPBACK, "... in the verdict too");

    /* A name that resolves to loopback at delivery time. */
    snprintf(url, sizeof(url), "http://hook.example:%d/events", bare_port);
    snprintf(pin, sizeof(pin), "hook.example:%d:127.0.0.1", bare_port);
    fetch(url, none, pin, 0L, &r);
    is_int(bare_accepts(), 0, "hook.example resolving to 127.0.0.1: no connection");
    is_str(r.msg, "refused by the egress guard: hook.example resolved to 127.0.0.1 (loopback)",
           "... refused, naming the name and the address");
    snprintf(url, sizeof(url), "http://localhost:%d/", bare_port);
    fetch(url, none, NULL, 0L, &r);
    is_int(bare_accepts(), 0, "localhost: no connection");
    ok(r.guard_rc == RS_ERR && strstr(r.msg, "localhost resolved to ") != NULL &&
           strstr(r.msg, "(loopback)") != NULL,
       "... refused as loopback: %s", r.msg);

    /* IPv6 forms of loopback: refused before any socket exists. */
    snprintf(url, sizeof(url), "http://[::1]:%d/", bare_port);
    fetch(url, none, NULL, 0L, &r);
    is_str(r.msg, "refused by the egress guard: [::1] resolved to ::1 (loopback)", "::1 refused");
    snprintf(url, sizeof(url), "http://[::ffff:127.0.0.1]:%d/", bare_port);
    fetch(url, none, NULL, 0L, &r);
    is_int(bare_accepts(), 0, "::ffff:127.0.0.1: no connection");
    ok(r.guard_rc == RS_ERR && strstr(r.msg, "resolved to ::ffff:127.0.0.1 (loopback)") != NULL,
       "... refused as loopback: %s", r.msg);

    /* Allowed: the request is answered. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", served.port);
    fetch(url, lo, NULL, 0L, &r);
    ok(r.rc == CURLE_OK && r.status == 200 && strcmp(r.body, "hello") == 0,
       "loopback allowed: 200 hello (%s)", curl_easy_strerror(r.rc));
    ok(served_saw("/hello") && r.guard_rc == RS_OK && r.v.opened == 1, "... the listener saw it");

    /* Every address of a name is checked: the private one refused, the next taken. */
    snprintf(url, sizeof(url), "http://two.example:%d/two", served.port);
    snprintf(pin, sizeof(pin), "two.example:%d:10.0.0.5,127.0.0.1", served.port);
    fetch(url, lo, pin, 0L, &r);
    ok(r.rc == CURLE_OK && r.status == 200 && served_saw("/two"),
       "a name with a private and a loopback address: delivered to loopback (%s)",
       curl_easy_strerror(r.rc));
    ok(r.v.refused == 1 && strcmp(r.v.address, "10.0.0.5") == 0 && r.v.cls == EGRESS_PRIVATE &&
           r.guard_rc == RS_OK,
       "... after 10.0.0.5 was refused as private (not the transfer's failure)");
    fetch(url, none, pin, 0L, &r);
    ok(r.guard_rc == RS_ERR && r.v.refused == 2 &&
           strcmp(r.msg, "refused by the egress guard: two.example resolved to 10.0.0.5 "
                         "(private), and its other addresses too") == 0,
       "default policy: both refused: %s", r.msg);

    /* A redirect is an answer, never followed. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/redirect", served.port);
    fetch(url, lo, NULL, 0L, &r);
    ok(r.rc == CURLE_OK && r.status == 302, "a 302 is the answer (status %ld)", r.status);
    ok(served_saw("/redirect") && !served_saw("/target"), "... its Location is not requested");

    /* The environment's proxy is not used: if it were, the guard would have to pass
     * 192.0.2.1 (documentation), and refuses it. */
    setenv("http_proxy", "http://192.0.2.1:3128/", 1);
    setenv("HTTP_PROXY", "http://192.0.2.1:3128/", 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/direct", served.port);
    fetch(url, lo, NULL, 0L, &r);
    ok(r.rc == CURLE_OK && r.status == 200 && served_saw("/direct"),
       "with http_proxy set, the request still goes straight to its address (%s)", r.msg);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");

    /* Only http and https: file:// would reach no socket the guard sees. */
    fetch("file:///etc/hostname", lo, NULL, 0L, &r);
    is_int(r.rc, CURLE_UNSUPPORTED_PROTOCOL, "file:// is refused");

    if (write(served.stop[1], "x", 1) == 1)
        pthread_join(served.thread, NULL);
    close(served.stop[0]);
    close(served.stop[1]);
    close(served.fd);
    close(bare_fd);
    egress_policy_destroy(&none);
    egress_policy_destroy(&lo);
}

int
main(void)
{
    test_classes();
    test_policy_parsing();
    test_rules();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        ok(0, "curl_global_init");
    else {
        test_transfers();
        curl_global_cleanup();
    }
    return done_testing();
}
