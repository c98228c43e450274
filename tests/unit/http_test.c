/* Unit test of http against the factory simulator (tests/factory_sim.py), started on
 * a free port: answers of every kind, kept-alive connections, the body cap, and the
 * failures (timeout, refused connection, bad URL) named without the URL's query. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "http.h"
#include "tap.h"

#define ORDER_FMT                                                                                  \
    "{\"MessageGroupId\":\"stock-arrival-group\",\"MessageAttributeProductId\":\"CP-502101\","     \
    "\"MessageAttributeProductCnt\":10,\"MessageAttributeFactoryId\":\"FF-500293\","               \
    "\"MessageAttributeRequester\":\"%s\",\"CallbackUrl\":"                                        \
    "\"http://127.0.0.1:9/callbacks/factory/x?token=secret\"}"

static char sim_dir[] = "/tmp/http_test.XXXXXX";
static char base[64];

/* Starts the simulator (no callbacks) and waits until it says which port it took;
 * -1 when it did not within 15 seconds. */
static pid_t
sim_start(void)
{
    const char *srcdir = getenv("RESTOCK_SRCDIR") ? getenv("RESTOCK_SRCDIR") : "..";
    char script[4096], portfile[64];
    pid_t pid;

    snprintf(script, sizeof(script), "%s/tests/factory_sim.py", srcdir);
    snprintf(portfile, sizeof(portfile), "%s/port", sim_dir);
    pid = fork();
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", script, "--port", "0", "--port-file", portfile,
              "--silent", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; pid > 0 && i < 300; i++) {
        FILE *f = fopen(portfile, "r");
        int port = 0;

        if (f != NULL) {
            int n = fscanf(f, "%d", &port);
            fclose(f);
            if (n == 1 && port > 0) {
                snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
                return pid;
            }
        }
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

struct buffer {
    char *data;
    size_t len;
};

static size_t
collect(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct buffer *b = userdata;
    char *grown = realloc(b->data, b->len + size * nmemb + 1);

    if (grown == NULL)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, data, size * nmemb);
    b->len += size * nmemb;
    b->data[b->len] = '\0';
    return size * nmemb;
}

/* What the simulator received, from its GET /_sim/requests (plain libcurl: the
 * module under test only POSTs). */
static cJSON *
sim_requests(void)
{
    char url[128];
    struct buffer b = {NULL, 0};
    cJSON *list = NULL;
    CURL *c = curl_easy_init();

    snprintf(url, sizeof(url), "%s/_sim/requests", base);
    if (c != NULL && curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b) == CURLE_OK &&
        curl_easy_perform(c) == CURLE_OK && b.data != NULL)
        list = cJSON_Parse(b.data);
    curl_easy_cleanup(c);
    free(b.data);
    return list;
}

static const char *
json_str(const cJSON *obj, const char *path1, const char *path2)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, path1);

    if (path2 != NULL)
        item = cJSON_GetObjectItemCaseSensitive(item, path2);
    return cJSON_GetStringValue(item);
}

static void
sim_config(http *h, const char *json)
{
    char url[128];
    long status = 0;
    errbuf err = {""};

    snprintf(url, sizeof(url), "%s/_sim/config", base);
    if (http_post_json(h, url, NULL, json, 5, &status, NULL, &err) != RS_OK || status != 200)
        diag("configuring the simulator with %s: status %ld %s", json, status, err.msg);
}

static void
test_answers(http *h)
{
    const char *const headers[] = {"Idempotency-Key: 5f0c8d9e-0000-4000-8000-000000000001", NULL};
    char url[128], order[512];
    const char *answer = NULL;
    long status = 0;
    errbuf err = {""};
    cJSON *json, *reqs, *last;
    const char *peer1 = NULL;

    snprintf(url, sizeof(url), "%s/api/manufactures", base);
    snprintf(order, sizeof(order), ORDER_FMT, "restock-test");
    ok(http_post_json(h, url, headers, order, 5, &status, &answer, &err) == RS_OK,
       "an order gets an answer");
    is_int(status, 201, "status 201");
    is_int(http_last_failure(h), HTTP_FAIL_NONE, "no failure");
    json = cJSON_Parse(answer ? answer : "");
    ok(json_str(json, "data", "id") != NULL && strlen(json_str(json, "data", "id")) == 36,
       "the answer's data.id is a UUID");
    is_str(json_str(json, "data", "reqestor"), "restock-test", "data.reqestor is the requester");
    is_int(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(
               cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(json, "data"),
                                                "data"),
               "MessageAttributeProductCnt")),
           10, "data.data echoes the request");
    cJSON_Delete(json);

    reqs = sim_requests();
    last = cJSON_GetArrayItem(reqs, cJSON_GetArraySize(reqs) - 1);
    is_str(json_str(last, "headers", "Idempotency-Key"), "5f0c8d9e-0000-4000-8000-000000000001",
           "the extra header reached the factory");
    is_str(json_str(last, "headers", "Content-Type"), "application/json",
           "Content-Type is application/json");
    is_str(json_str(last, "body", "MessageAttributeRequester"), "restock-test",
           "the body reached the factory");
    peer1 = json_str(last, "peer", NULL);

    ok(http_post_json(h, url, headers, order, 5, &status, &answer, &err) == RS_OK && status == 201,
       "a second order gets 201");
    json = sim_requests();
    last = cJSON_GetArrayItem(json, cJSON_GetArraySize(json) - 1);
    ok(peer1 != NULL && json_str(last, "peer", NULL) != NULL &&
           strcmp(peer1, json_str(last, "peer", NULL)) == 0,
       "the second request came over the same (kept-alive) connection");
    cJSON_Delete(json);
    cJSON_Delete(reqs);

    sim_config(h, "{\"fail_first\":1}");
    ok(http_post_json(h, url, headers, order, 5, &status, &answer, &err) == RS_OK,
       "a failing factory still gives an answer");
    is_int(status, 500, "status 500");
    is_int(http_last_failure(h), HTTP_FAIL_NONE, "a 500 is not a transport failure");
    ok(http_post_json(h, url, headers, order, 5, &status, &answer, &err) == RS_OK && status == 201,
       "the next order after the failure gets 201");

    ok(http_post_json(h, url, NULL, "{\"MessageGroupId\":1}", 5, &status, &answer, &err) == RS_OK,
       "a bad order gets an answer");
    is_int(status, 400, "status 400 for a body that is not an order");
    ok(answer != NULL && strstr(answer, "missing") != NULL, "the 400 answer says what is missing");
}

static void
test_body_cap(http *h)
{
    size_t big = 100 * 1024;
    char *requester = malloc(big + 1), *order = malloc(big + 512), url[128];
    const char *answer = NULL;
    long status = 0;
    errbuf err = {""};

    if (requester == NULL || order == NULL) {
        ok(0, "memory for a big order");
        goto done;
    }
    memset(requester, 'r', big);
    requester[big] = '\0';
    snprintf(order, big + 512, ORDER_FMT, requester);
    snprintf(url, sizeof(url), "%s/api/manufactures", base);
    ok(http_post_json(h, url, NULL, order, 10, &status, &answer, &err) == RS_OK && status == 201,
       "an answer longer than the cap still succeeds (%s)", err.msg);
    is_int(answer ? strlen(answer) : 0, HTTP_BODY_MAX, "the body is cut at HTTP_BODY_MAX");
done:
    free(requester);
    free(order);
}

static void
test_failures(http *h)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof(addr);
    char url[256], shown[256];
    long status = -1;
    errbuf err = {""};
    int fd;

    sim_config(h, "{\"slow\":3}");
    snprintf(url, sizeof(url), "%s/api/manufactures?token=secret", base);
    ok(http_post_json(h, url, NULL, "{}", 1, &status, NULL, &err) == RS_ERR,
       "a slow factory fails the request");
    is_int(http_last_failure(h), HTTP_FAIL_TIMEOUT, "classified as timeout");
    ok(strstr(err.msg, "timed out") != NULL, "the message says it timed out: %s", err.msg);
    snprintf(shown, sizeof(shown), "%s/api/manufactures", base);
    ok(strstr(err.msg, shown) != NULL, "the message names the URL");
    ok(strstr(err.msg, "secret") == NULL && strstr(err.msg, "token") == NULL,
       "the message hides the query string");
    sim_config(h, "{\"slow\":0}");

    /* A socket bound but not listening: connecting to its port is refused, and no
     * other program can take the port meanwhile. */
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &alen) != 0) {
        ok(0, "a closed port to connect to");
        if (fd >= 0)
            close(fd);
        return;
    }
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/manufactures?token=secret",
             ntohs(addr.sin_port));
    ok(http_post_json(h, url, NULL, "{}", 5, &status, NULL, &err) == RS_ERR,
       "a closed port fails the request");
    is_int(http_last_failure(h), HTTP_FAIL_REFUSED, "classified as refused");
    is_int(status, 0, "no status without an answer");
    ok(strstr(err.msg, "secret") == NULL && strstr(err.msg, "127.0.0.1") != NULL,
       "the message names the host, not the query: %s", err.msg);
    close(fd);

    ok(http_post_json(h, "ftp://127.0.0.1/x", NULL, "{}", 5, &status, NULL, &err) == RS_ERR,
       "an ftp URL fails");
    is_int(http_last_failure(h), HTTP_FAIL_URL, "classified as a bad URL");
    ok(http_post_json(h, "http://", NULL, "{}", 5, &status, NULL, &err) == RS_ERR &&
           http_last_failure(h) == HTTP_FAIL_URL,
       "a malformed URL is a bad URL");
}

/* A guarded http (a webhook delivery's): the simulator on 127.0.0.1 is refused under
 * the default policy, with the guard's reason, and reached when loopback is allowed. */
static void
test_egress(void)
{
    egress_policy *none = egress_policy_new("", NULL), *lo = egress_policy_new("loopback", NULL);
    http *guarded = http_new(NULL), *allowed = http_new(NULL);
    char url[128], order[1024];
    errbuf err = {""};
    long status = -1;

    snprintf(url, sizeof(url), "%s/api/manufactures?token=secret", base);
    http_set_egress(guarded, none);
    ok(http_post_json(guarded, url, NULL, "{}", 5, &status, NULL, &err) == RS_ERR,
       "egress guard, default policy: a POST to 127.0.0.1 fails");
    is_int(http_last_failure(guarded), HTTP_FAIL_EGRESS, "classified as refused by the guard");
    ok(strstr(err.msg, "refused by the egress guard: 127.0.0.1 resolved to 127.0.0.1 (loopback)") !=
               NULL &&
           strstr(err.msg, "secret") == NULL,
       "the message names the address and its class, not the query: %s", err.msg);
    http_set_egress(allowed, lo);
    snprintf(url, sizeof(url), "%s/api/manufactures", base);
    snprintf(order, sizeof(order), ORDER_FMT, "egress-allowed");
    ok(http_post_json(allowed, url, NULL, order, 5, &status, NULL, &err) == RS_OK && status == 201,
       "with loopback allowed the POST is answered 201");
    http_destroy(&guarded);
    http_destroy(&allowed);
    egress_policy_destroy(&none);
    egress_policy_destroy(&lo);
}

static void
test_redact(void)
{
    char out[128];

    http_redact_url("http://user:pw@example.com:8080/callbacks/factory/1?token=abc#frag", out,
                    sizeof(out));
    is_str(out, "http://example.com:8080/callbacks/factory/1",
           "redacted URL has no user, password, query or fragment");
    http_redact_url("127.0.0.1:80/x?token=abc", out, sizeof(out));
    is_str(out, "http://127.0.0.1:80/x", "a URL without scheme is shown as libcurl reads it");
    http_redact_url("http://[::1", out, sizeof(out));
    is_str(out, "(malformed URL)", "a malformed URL is not shown");
    http_redact_url("http://example.com/a-very-long-path", out, 10);
    is_str(out, "http://ex", "the redacted URL is cut to the buffer");
}

int
main(void)
{
    errbuf err = {""};
    http *h = NULL;
    pid_t sim;
    int wstatus = 0;

    test_redact();
    if (http_global_init(&err) != RS_OK || mkdtemp(sim_dir) == NULL) {
        ok(0, "setting up: %s", err.msg);
        return done_testing();
    }
    sim = sim_start();
    if (!ok(sim > 0, "the factory simulator started"))
        goto done;
    h = http_new(&err);
    if (!ok(h != NULL, "http_new (%s)", h ? "" : err.msg))
        goto done;
    test_answers(h);
    test_body_cap(h);
    test_failures(h);
    test_egress();
done:
    http_destroy(&h);
    ok(h == NULL, "http_destroy clears the pointer");
    if (sim > 0) {
        kill(sim, SIGTERM);
        ok(waitpid(sim, &wstatus, 0) == sim && WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
           "the simulator stops cleanly on SIGTERM");
    }
    {
        char portfile[64];
        snprintf(portfile, sizeof(portfile), "%s/port", sim_dir);
        unlink(portfile);
        rmdir(sim_dir);
    }
    http_global_cleanup();
    return done_testing();
}
