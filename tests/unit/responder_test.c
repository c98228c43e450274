/* Unit test of responder: a responder in this process, spoken to over its unix
 * socket as nginx would (a small FastCGI client below): the request reaches the
 * handler, the body limit, the replies, kept connections, and SIGTERM finishing a
 * request in flight. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fastcgi.h>

#include "responder.h"
#include "tap.h"

static char test_dir[64], test_socket[128];

/* -- the handler ------------------------------------------------------------------- */

static atomic_int handled, inits, finis, fail_init;
static pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slow_cond = PTHREAD_COND_INITIALIZER;
static int slow_entered, slow_released;

static int
thread_init(void *app, void **state, errbuf *err)
{
    if (atomic_load(&fail_init))
        return errbuf_set(err, "thread_init refused on purpose");
    *state = (void *)(long)(atomic_fetch_add(&inits, 1) + 1);
    return RS_OK;
}

static void
thread_fini(void *state)
{
    atomic_fetch_add(&finis, 1);
}

static void
handle(responder_request *rq, void *state)
{
    const char *path = responder_path(rq);
    size_t len;
    const char *body = responder_body(rq, &len);
    cJSON *json;

    atomic_fetch_add(&handled, 1);
    if (strcmp(path, "/silent") == 0)
        return;
    if (strcmp(path, "/allow") == 0) {
        responder_header(rq, "Allow", "GET, HEAD");
        responder_reply_error(rq, 405, "method %s is not allowed", responder_method(rq));
        return;
    }
    if (strcmp(path, "/slow") == 0) {
        pthread_mutex_lock(&slow_lock);
        slow_entered = 1;
        pthread_cond_broadcast(&slow_cond);
        while (!slow_released)
            pthread_cond_wait(&slow_cond, &slow_lock);
        pthread_mutex_unlock(&slow_lock);
    }
    json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "method", responder_method(rq));
    cJSON_AddStringToObject(json, "path", path);
    cJSON_AddStringToObject(json, "body", body);
    cJSON_AddNumberToObject(json, "len", (double)len);
    cJSON_AddBoolToObject(json, "state", state != NULL);
    responder_reply_json(rq, 200, json);
    if (strcmp(path, "/twice") == 0)
        ok(responder_reply_json(rq, 200, json) == RS_ERR, "a second answer is refused");
    cJSON_Delete(json);
}

static const struct responder_program program = {
    .name = "responder_test",
    .thread_init = thread_init,
    .thread_fini = thread_fini,
    .handle = handle,
};

/* -- a FastCGI client, as nginx ---------------------------------------------------- */

struct reply {
    char raw[8192];
    size_t len;
    int status;
    const char *body; /* into raw */
};

/* Writes or reads all of len bytes; -1 when the connection ends first. */
static int
transfer_all(int fd, void *data, size_t len, int writing)
{
    char *p = data;

    while (len > 0) {
        ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#define write_all(fd, data, len) transfer_all(fd, (void *)(data), len, 1)
#define read_all(fd, data, len)  transfer_all(fd, data, len, 0)

static int
put_record(int fd, int type, const void *data, size_t len)
{
    FCGI_Header h = {FCGI_VERSION_1,
                     (unsigned char)type,
                     0,
                     1,
                     (unsigned char)(len >> 8),
                     (unsigned char)(len & 0xff),
                     0,
                     0};

    if (write_all(fd, &h, sizeof(h)) != 0)
        return -1;
    return len > 0 ? write_all(fd, data, len) : 0;
}

/* Name-value pair with one-byte lengths (the test's names and values are short). */
static size_t
put_pair(char *buf, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);

    buf[0] = (char)n;
    buf[1] = (char)v;
    memcpy(buf + 2, name, n);
    memcpy(buf + 2 + n, value, v);
    return 2 + n + v;
}

static int
connect_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request on the connection fd, kept open after it (FCGI_KEEP_CONN, as nginx's
 * fastcgi_keep_conn) when keep; content_length NULL sends no CONTENT_LENGTH (a
 * chunked body). */
static int
fcgi_on(int fd, int keep, const char *method, const char *path, const char *content_length,
        const char *body, size_t body_len, struct reply *r)
{
    FCGI_BeginRequestBody begin = {0, FCGI_RESPONDER, keep ? FCGI_KEEP_CONN : 0, {0}};
    char params[512];
    size_t n = 0;

    memset(r, 0, sizeof(*r));
    n += put_pair(params + n, "REQUEST_METHOD", method);
    n += put_pair(params + n, "DOCUMENT_URI", path);
    if (content_length != NULL)
        n += put_pair(params + n, "CONTENT_LENGTH", content_length);
    if (put_record(fd, FCGI_BEGIN_REQUEST, &begin, sizeof(begin)) != 0 ||
        put_record(fd, FCGI_PARAMS, params, n) != 0 || put_record(fd, FCGI_PARAMS, NULL, 0) != 0)
        goto fail;
    for (size_t off = 0; off < body_len; off += 60000) {
        size_t chunk = body_len - off < 60000 ? body_len - off : 60000;
        if (put_record(fd, FCGI_STDIN, body + off, chunk) != 0)
            goto fail;
    }
    if (put_record(fd, FCGI_STDIN, NULL, 0) != 0)
        goto fail;
    for (;;) {
        FCGI_Header h;
        char content[65536 + 256];
        size_t clen, plen;

        if (read_all(fd, &h, sizeof(h)) != 0)
            goto fail;
        clen = ((size_t)h.contentLengthB1 << 8) | h.contentLengthB0;
        plen = h.paddingLength;
        if (read_all(fd, content, clen + plen) != 0)
            goto fail;
        if (h.type == FCGI_END_REQUEST)
            break;
        if (h.type == FCGI_STDOUT && r->len + clen < sizeof(r->raw)) {
            memcpy(r->raw + r->len, content, clen);
            r->len += clen;
        }
    }
    r->raw[r->len] = '\0';
    sscanf(r->raw, "Status: %d", &r->status);
    r->body = strstr(r->raw, "\r\n\r\n");
    r->body = r->body ? r->body + 4 : "";
    return 0;

fail:
    return -1;
}

/* One request on a connection of its own, closed by the responder after it. */
static int
fcgi_call(const char *method, const char *path, const char *content_length, const char *body,
          size_t body_len, struct reply *r)
{
    int fd = connect_socket(test_socket), rc;

    memset(r, 0, sizeof(*r));
    if (fd < 0)
        return -1;
    rc = fcgi_on(fd, 0, method, path, content_length, body, body_len, r);
    close(fd);
    return rc;
}

/* -- the server in a thread -------------------------------------------------------- */

struct server {
    responder *r;
    pthread_t thread;
    int rc;
    errbuf err;
    atomic_int returned;
};

static void *
server_main(void *arg)
{
    struct server *s = arg;

    s->rc = responder_run(s->r, &s->err);
    atomic_store(&s->returned, 1);
    return NULL;
}

static struct responder_settings settings = {
    .socket_path = test_socket,
    .socket_mode = 0600,
    .backlog = 16,
    .threads = 3,
    .body_limit = 64,
};

static void
test_requests(void)
{
    struct reply r;
    char body[2000];
    int before;

    memset(body, 'x', sizeof(body));
    ok(fcgi_call("GET", "/echo", "", NULL, 0, &r) == 0 && r.status == 200, "GET answers 200");
    ok(strstr(r.raw, "Content-Type: application/json; charset=utf-8\r\n") != NULL,
       "the content type is JSON in UTF-8");
    ok(strstr(r.raw, "Content-Length: ") != NULL, "the length is given");
    is_str(r.body,
           "{\"method\":\"GET\",\"path\":\"/echo\",\"body\":\"\",\"len\":0,\"state\":true}\n",
           "the handler saw the method, the path, no body and its thread's state");

    ok(fcgi_call("POST", "/echo", "64", body, 64, &r) == 0 && r.status == 200,
       "a body of exactly the limit is accepted");
    ok(strstr(r.body, "\"len\":64") != NULL, "and reaches the handler whole");

    ok(fcgi_call("POST", "/echo", NULL, "{\"a\":\"부산도너츠\"}", strlen("{\"a\":\"부산도너츠\"}"),
                 &r) == 0 &&
           r.status == 200,
       "a body without CONTENT_LENGTH (chunked through nginx) is read to its end");
    ok(strstr(r.body, "\"body\":\"{\\\"a\\\":\\\"부산도너츠\\\"}\"") != NULL,
       "Korean text goes out unescaped");

    before = atomic_load(&handled);
    ok(fcgi_call("POST", "/echo", "65", body, 65, &r) == 0 && r.status == 400,
       "one byte over the limit answers 400");
    is_str(r.body, "{\"error\":\"request body larger than 64 bytes\"}\n", "saying the limit");
    ok(fcgi_call("POST", "/echo", NULL, body, 65, &r) == 0 && r.status == 400,
       "over the limit without CONTENT_LENGTH answers 400 too");
    ok(fcgi_call("POST", "/echo", "2000", body, 2000, &r) == 0 && r.status == 400,
       "a large body is refused, and read off so that the answer still arrives");
    ok(fcgi_call("POST", "/echo", "10", body, 5, &r) == 0 && r.status == 400,
       "a body shorter than its CONTENT_LENGTH answers 400");
    is_str(r.body, "{\"error\":\"the request body has 5 bytes, its Content-Length says 10\"}\n",
           "saying so");
    ok(fcgi_call("POST", "/echo", "ten", body, 3, &r) == 0 && r.status == 400,
       "a CONTENT_LENGTH that is no number answers 400");
    is_int(atomic_load(&handled), before, "the handler saw none of the refused requests");

    ok(fcgi_call("GET", "/silent", "", NULL, 0, &r) == 0 && r.status == 500,
       "a request the handler left unanswered answers 500");
    ok(strstr(r.body, "left unanswered") != NULL, "saying so");
    ok(fcgi_call("DELETE", "/allow", "", NULL, 0, &r) == 0 && r.status == 405,
       "the handler's status goes out");
    ok(strstr(r.raw, "\r\nAllow: GET, HEAD\r\n") != NULL, "with the handler's header");
    is_str(r.body, "{\"error\":\"method DELETE is not allowed\"}\n", "and its error message");
    ok(fcgi_call("GET", "/twice", "", NULL, 0, &r) == 0 && r.status == 200,
       "the first answer is the one sent");
}

/* Kept connections (nginx's fastcgi_keep_conn): several requests on one; more
 * idle kept connections than threads hold no thread, so that a request on
 * another connection is still served; one that nginx closes is dropped. */
static void
test_kept(void)
{
    enum { KEPT = 7 }; /* more than settings.threads */
    int fd[KEPT], all = 1, again = 1;
    struct reply r;

    fd[0] = connect_socket(test_socket);
    for (int i = 0; i < 3; i++)
        all = all && fcgi_on(fd[0], 1, "GET", "/echo", "", NULL, 0, &r) == 0 && r.status == 200;
    ok(all, "three requests in a row on one kept connection are answered");
    for (int i = 1; i < KEPT; i++) {
        fd[i] = connect_socket(test_socket);
        all = all && fcgi_on(fd[i], 1, "GET", "/echo", "", NULL, 0, &r) == 0 && r.status == 200;
    }
    ok(all, "%d kept connections, each answered once, now idle (%d threads)", KEPT,
       settings.threads);
    ok(fcgi_call("GET", "/echo", "", NULL, 0, &r) == 0 && r.status == 200,
       "a request on a new connection is served: idle kept connections hold no thread");
    close(fd[3]);
    for (int i = KEPT - 1; i >= 0; i--)
        if (i != 3)
            again = again && fcgi_on(fd[i], 1, "POST", "/echo", "2", "ok", 2, &r) == 0 &&
                    r.status == 200 && strstr(r.body, "\"body\":\"ok\"") != NULL;
    ok(again, "each idle kept connection serves its next request, in any order");
    ok(fcgi_call("GET", "/echo", "", NULL, 0, &r) == 0 && r.status == 200,
       "a kept connection closed by the client is dropped, the others go on");
    for (int i = 0; i < KEPT; i++)
        if (i != 3)
            close(fd[i]);
}

static void *
slow_client(void *arg)
{
    struct reply *r = arg;

    if (fcgi_call("GET", "/slow", "", NULL, 0, r) != 0)
        r->status = -1;
    return NULL;
}

/* SIGTERM while a request is in flight: no new connections, the request is
 * answered in full, then responder_run returns RS_OK and the threads end. */
static void
test_shutdown(struct server *s)
{
    struct reply slow, r;
    pthread_t client;
    int refused = 0, fd, idle = connect_socket(test_socket);
    char c;

    ok(fcgi_on(idle, 1, "GET", "/echo", "", NULL, 0, &r) == 0 && r.status == 200,
       "a kept connection, idle at the stop");
    pthread_create(&client, NULL, slow_client, &slow);
    pthread_mutex_lock(&slow_lock);
    while (!slow_entered)
        pthread_cond_wait(&slow_cond, &slow_lock);
    pthread_mutex_unlock(&slow_lock);

    kill(getpid(), SIGTERM);
    for (int i = 0; i < 1000 && !refused; i++) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        fd = connect_socket(test_socket);
        if (fd < 0)
            refused = 1;
        else
            close(fd);
        nanosleep(&pause, NULL);
    }
    ok(refused, "after SIGTERM new connections are refused");
    ok(!atomic_load(&s->returned), "the responder waits for the request in flight");
    ok(read(idle, &c, 1) == 0, "and has closed the idle kept connection");
    close(idle);

    pthread_mutex_lock(&slow_lock);
    slow_released = 1;
    pthread_cond_broadcast(&slow_cond);
    pthread_mutex_unlock(&slow_lock);
    pthread_join(client, NULL);
    is_int(slow.status, 200, "the request in flight is answered 200");
    ok(strstr(slow.body, "\"path\":\"/slow\"") != NULL, "with its whole body");
    pthread_join(s->thread, NULL);
    is_int(s->rc, RS_OK, "responder_run returns RS_OK after SIGTERM");
    /* Read after the join: responder_run returns only once every thread has
     * reported its thread_init, whatever the scheduler did meanwhile. */
    is_int(atomic_load(&inits), settings.threads, "each thread made its own state");
    is_int(atomic_load(&finis), settings.threads, "every thread ran its thread_fini");
}

static void
test_socket_guard(void)
{
    errbuf err = {{0}};
    char file[160];
    responder *r;
    FILE *f;

    r = responder_new(&settings, &program, NULL, &err);
    ok(r == NULL, "a socket another responder listens on is not taken over");
    ok(strstr(err.msg, "another program is listening") != NULL, "saying so: %s", err.msg);

    snprintf(file, sizeof(file), "%s/file", test_dir);
    f = fopen(file, "w");
    fclose(f);
    settings.socket_path = file;
    ok(responder_new(&settings, &program, NULL, &err) == NULL, "a regular file is not removed");
    ok(strstr(err.msg, "is not a socket") != NULL, "saying so: %s", err.msg);
    ok(access(file, F_OK) == 0, "the file is still there");
    unlink(file);
    settings.socket_path = test_socket;
}

int
main(void)
{
    struct server s = {0};
    struct stat st;
    sigset_t set;
    responder *r;

    /* As a program's main would: SIGTERM is for the responder's sigwait. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    snprintf(test_dir, sizeof(test_dir), "/tmp/responder_test.XXXXXX");
    if (mkdtemp(test_dir) == NULL)
        return 1;
    snprintf(test_socket, sizeof(test_socket), "%s/s.sock", test_dir);

    s.r = responder_new(&settings, &program, NULL, &s.err);
    if (!ok(s.r != NULL, "responder_new opens the socket"))
        diag("%s", s.err.msg);
    if (s.r == NULL)
        return done_testing();
    ok(stat(test_socket, &st) == 0 && (st.st_mode & 0777) == 0600, "with the configured mode");
    pthread_create(&s.thread, NULL, server_main, &s);

    test_requests();
    test_kept();
    test_socket_guard();
    test_shutdown(&s);
    responder_destroy(&s.r);
    ok(s.r == NULL && access(test_socket, F_OK) != 0,
       "responder_destroy clears the pointer and removes the socket");

    /* A stale socket (its responder died) is replaced; a failed thread_init
     * makes responder_run fail with its message. */
    atomic_store(&fail_init, 1);
    r = responder_new(&settings, &program, NULL, &s.err);
    ok(r != NULL, "a fresh socket again");
    responder_destroy(&r);
    {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", test_socket);
        bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd); /* bound, never listened: what a crash leaves */
    }
    r = responder_new(&settings, &program, NULL, &s.err);
    if (!ok(r != NULL, "a stale socket is replaced"))
        diag("%s", s.err.msg);
    {
        /* Bound and listening under a name of its own, then renamed into place:
         * that name is gone, and the socket at the path accepts. */
        char fresh[160];
        int fd;

        snprintf(fresh, sizeof(fresh), "%s.%ld", test_socket, (long)getpid());
        ok(access(fresh, F_OK) != 0, "the socket's name while it began to listen is gone");
        fd = connect_socket(test_socket);
        ok(fd >= 0, "the socket at the path accepts");
        if (fd >= 0)
            close(fd);
    }
    if (r != NULL) {
        ok(responder_run(r, &s.err) == RS_ERR, "a failed thread_init fails responder_run");
        is_str(s.err.msg, "thread_init refused on purpose", "with its message");
    }
    responder_destroy(&r);
    rmdir(test_dir);
    return done_testing();
}
