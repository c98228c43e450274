/* responder: threaded FastCGI server on libfcgi (see responder.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "json.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "responder.h"
#include "utf8.h"

/* Room for the JSON of one answer without an allocation; larger ones allocate. */
#define RESPONDER_PRINT_BUF 16384
/* What is read and dropped of a body that is refused, so that nginx is not cut
 * off while it still sends (nginx itself caps bodies far below this). */
#define RESPONDER_DRAIN_MAX (1024 * 1024)

struct responder_request {
    responder *owner;
    FCGX_Request fcgx;
    char *body; /* body_limit + 2: the limit, one byte to see it exceeded, a NUL */
    size_t body_len;
    char headers[512];
    size_t headers_len;
    char print[RESPONDER_PRINT_BUF];
    int replied;
};

struct responder_thread {
    responder *owner;
    pthread_t id;
    int running;
    void *state;
    responder_request rq;
};

/* A first-in first-out queue of connections (descriptors). */
struct responder_fdq {
    int *fd;
    size_t head, len, cap;
};

struct responder {
    const struct responder_program *prog;
    void *app;
    char *socket_path;
    size_t body_limit;
    int nthreads;
    int listen_fd;
    pthread_t main_thread;
    atomic_int stopping;
    atomic_int failed;
    /* Start-up: each thread reports whether its thread_init worked. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int reported;
    int init_failed;
    errbuf init_err;
    struct responder_thread *threads;
    /* The dispatcher waits (epoll) on the listening socket and the idle
     * connections, and queues a connection with a request ready for the
     * serving threads; a thread serves one request and puts a kept connection
     * back into the epoll set itself (one-shot: it fires once per request).
     * Under lock: the queue, which connections are idle, and closing (the
     * dispatcher has ended: no more work). */
    pthread_t dispatcher;
    int dispatcher_running;
    int epfd;
    int wake[2]; /* a pipe: wakes the dispatcher for the stop */
    pthread_cond_t work;
    struct responder_fdq ready; /* a request waits on each: for the threads */
    unsigned char *idle;        /* idle[fd]: fd is an idle connection in the epoll set */
    size_t idle_cap;
    int closing;
};

static const struct {
    int status;
    const char *reason;
} responder_reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {204, "No Content"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {409, "Conflict"},
    {413, "Payload Too Large"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {500, "Internal Server Error"},
    {503, "Service Unavailable"},
};

static const char *
responder_reason(int status)
{
    for (size_t i = 0; i < sizeof(responder_reasons) / sizeof(responder_reasons[0]); i++)
        if (responder_reasons[i].status == status)
            return responder_reasons[i].reason;
    return "Unknown";
}

/* Opens the listening socket. Not FCGX_OpenSocket: it unlinks whatever file is at
 * the path, another running responder's socket included, and calls exit() when
 * bind fails. Here a stale socket (nobody answers) is replaced, a live one or
 * another file is an error, and every failure returns to the caller. The socket
 * is bound and listening under a name of its own (path.PID) and then renamed to
 * path: the file at path is always one that accepts, never one bound and not yet
 * listening, which refused nginx's connections (a 503 for each request sent in
 * between, seen at restarts under load). */
static int
responder_listen(const char *path, unsigned mode, int backlog, errbuf *err)
{
    struct sockaddr_un sa;
    struct stat st;
    char fresh[sizeof(sa.sun_path)];
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (snprintf(fresh, sizeof(fresh), "%s.%ld", path, (long)getpid()) >= (int)sizeof(fresh))
        return errbuf_set(err, "socket path %s is longer than %zu bytes", path,
                          sizeof(sa.sun_path) - 12);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return errbuf_set(err, "%s exists and is not a socket", path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            return errbuf_set(err, "socket: %s", strerror(errno));
        /* Refused: left behind by a responder that died. Accepted or queued
         * (EAGAIN: its backlog is full): somebody serves it. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN) {
            close(fd);
            return errbuf_set(err, "another program is listening on %s", path);
        }
        close(fd);
        /* Left for the rename below to replace: checked, not removed, so that
         * there is no moment without a file at path. */
    }
    /* Non-blocking: the dispatcher accepts what poll saw, until EAGAIN. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return errbuf_set(err, "socket: %s", strerror(errno));
    memcpy(sa.sun_path, fresh, strlen(fresh) + 1);
    (void)unlink(fresh); /* an earlier responder's of this pid, killed before its rename */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        errbuf_set(err, "cannot bind %s: %s", fresh, strerror(errno));
        goto fail;
    }
    /* Before listen(), so that no client ever sees the umask's permissions. */
    if (chmod(fresh, mode) != 0) {
        errbuf_set(err, "cannot chmod %s to %04o: %s", fresh, mode, strerror(errno));
        goto fail_unlink;
    }
    if (listen(fd, backlog) != 0) {
        errbuf_set(err, "cannot listen on %s: %s", fresh, strerror(errno));
        goto fail_unlink;
    }
    if (rename(fresh, path) != 0) {
        errbuf_set(err, "cannot rename %s to %s: %s", fresh, path, strerror(errno));
        goto fail_unlink;
    }
    return fd;

fail_unlink:
    unlink(fresh);
fail:
    close(fd);
    return RS_ERR;
}

/* -- connection queues ----------------------------------------------------------- */

/* Doubles an array of descriptors (64 at first). */
static int
responder_fds_grow(int **fds, size_t *cap)
{
    size_t more = *cap ? *cap * 2 : 64;
    int *grown = realloc(*fds, more * sizeof(**fds));

    if (grown == NULL)
        return RS_ERR;
    *fds = grown;
    *cap = more;
    return RS_OK;
}

static int
responder_fdq_push(struct responder_fdq *q, int fd)
{
    if (q->head + q->len == q->cap) {
        if (q->head > 0) {
            memmove(q->fd, q->fd + q->head, q->len * sizeof(*q->fd));
            q->head = 0;
        } else if (responder_fds_grow(&q->fd, &q->cap) != RS_OK) {
            return RS_ERR;
        }
    }
    q->fd[q->head + q->len++] = fd;
    return RS_OK;
}

static int
responder_fdq_pop(struct responder_fdq *q)
{
    int fd;

    if (q->len == 0)
        return -1;
    fd = q->fd[q->head++];
    if (--q->len == 0)
        q->head = 0;
    return fd;
}

static void
responder_fdq_close(struct responder_fdq *q)
{
    int fd;

    while ((fd = responder_fdq_pop(q)) >= 0)
        close(fd);
    free(q->fd);
    memset(q, 0, sizeof(*q));
}

responder *
responder_new(const struct responder_settings *settings, const struct responder_program *prog,
              void *app, errbuf *err)
{
    responder *self;
    struct sigaction ignore;

    if (settings->threads < 1) {
        errbuf_set(err, "responder: %d threads", settings->threads);
        return NULL;
    }
    self = calloc(1, sizeof(*self));
    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    self->prog = prog;
    self->app = app;
    self->body_limit = settings->body_limit;
    self->nthreads = settings->threads;
    self->listen_fd = -1;
    self->wake[0] = self->wake[1] = -1;
    self->epfd = -1;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->cond, NULL);
    pthread_cond_init(&self->work, NULL);
    self->socket_path = strdup(settings->socket_path);
    self->threads = calloc((size_t)settings->threads, sizeof(*self->threads));
    if (self->socket_path == NULL || self->threads == NULL) {
        errbuf_set(err, "out of memory");
        goto fail;
    }
    /* A client that went away must cost a failed write, not the process. */
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ignore, NULL);
    if (FCGX_Init() != 0) {
        errbuf_set(err, "libfcgi: FCGX_Init failed");
        goto fail;
    }
    self->listen_fd =
        responder_listen(settings->socket_path, settings->socket_mode, settings->backlog, err);
    if (self->listen_fd < 0)
        goto fail;
    if (pipe2(self->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        errbuf_set(err, "pipe: %s", strerror(errno));
        goto fail;
    }
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0 ||
        epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->wake[0],
                  &(struct epoll_event){.events = EPOLLIN, .data.fd = self->wake[0]}) != 0 ||
        epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->listen_fd,
                  &(struct epoll_event){.events = EPOLLIN, .data.fd = self->listen_fd}) != 0) {
        errbuf_set(err, "epoll: %s", strerror(errno));
        goto fail;
    }
    for (int i = 0; i < self->nthreads; i++) {
        struct responder_thread *th = &self->threads[i];
        th->owner = self;
        th->rq.owner = self;
        th->rq.body = malloc(self->body_limit + 2);
        if (th->rq.body == NULL) {
            errbuf_set(err, "out of memory");
            goto fail;
        }
        /* No listening socket (-1): a thread is given its connections and
         * never accepts. When libfcgi finds a kept connection closed it
         * tries accept() on it, which then fails at once (EBADF) instead of
         * taking a connection from under the dispatcher. */
        if (FCGX_InitRequest(&th->rq.fcgx, -1, 0) != 0) {
            errbuf_set(err, "libfcgi: FCGX_InitRequest failed");
            goto fail;
        }
    }
    return self;

fail:
    responder_destroy(&self);
    return NULL;
}

void
responder_destroy(responder **self_p)
{
    responder *self = *self_p;

    if (self == NULL)
        return;
    if (self->listen_fd >= 0) {
        close(self->listen_fd);
        unlink(self->socket_path);
    }
    /* Each thread finished (and so freed) its FCGX_Request when it ended. */
    if (self->threads != NULL)
        for (int i = 0; i < self->nthreads; i++)
            free(self->threads[i].rq.body);
    free(self->threads);
    free(self->socket_path);
    /* The dispatcher closed every connection when it ended; a responder that
     * never ran has none. */
    responder_fdq_close(&self->ready);
    for (size_t fd = 0; fd < self->idle_cap; fd++)
        if (self->idle[fd])
            close((int)fd);
    free(self->idle);
    if (self->epfd >= 0)
        close(self->epfd);
    for (int i = 0; i < 2; i++)
        if (self->wake[i] >= 0)
            close(self->wake[i]);
    pthread_mutex_destroy(&self->lock);
    pthread_cond_destroy(&self->cond);
    pthread_cond_destroy(&self->work);
    free(self);
    *self_p = NULL;
}

/* -- the request --------------------------------------------------------------- */

const char *
responder_param(const responder_request *rq, const char *name)
{
    return FCGX_GetParam(name, rq->fcgx.envp);
}

int
responder_header_once(const responder_request *rq, const char *header, const char **value,
                      errbuf *err)
{
    char param[128] = "HTTP_";
    size_t n = 5;
    int seen = 0;

    *value = NULL;
    /* The CGI name of the header: HTTP_ and the name in upper case, - as _. */
    for (const char *h = header; *h != '\0' && n < sizeof(param) - 1; h++)
        param[n++] = *h == '-' ? '_' : (char)toupper((unsigned char)*h);
    param[n] = '\0';
    /* FCGX_GetParam answers the first of repeated names, and nginx before 1.23
     * passes each line of a repeated header as a parameter of its own. */
    for (char **env = rq->fcgx.envp; env != NULL && *env != NULL; env++)
        if (strncmp(*env, param, n) == 0 && (*env)[n] == '=') {
            if (seen++)
                return errbuf_set(err, "%s: the header was sent more than once; send it once",
                                  header);
            *value = *env + n + 1;
        }
    return RS_OK;
}

const char *
responder_method(const responder_request *rq)
{
    const char *m = responder_param(rq, "REQUEST_METHOD");
    return m ? m : "";
}

const char *
responder_path(const responder_request *rq)
{
    const char *p = responder_param(rq, "DOCUMENT_URI");
    return p ? p : "";
}

const char *
responder_body(const responder_request *rq, size_t *len)
{
    if (len != NULL)
        *len = rq->body_len;
    return rq->body;
}

int
responder_header(responder_request *rq, const char *name, const char *value)
{
    size_t room = sizeof(rq->headers) - rq->headers_len;
    int n;

    /* A CR or LF would let a value start a header of its own. */
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL)
        return RS_ERR;
    n = snprintf(rq->headers + rq->headers_len, room, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= room) {
        rq->headers[rq->headers_len] = '\0';
        return RS_ERR;
    }
    rq->headers_len += (size_t)n;
    return RS_OK;
}

int
responder_reply_raw(responder_request *rq, int status, const char *body, size_t len)
{
    FCGX_Stream *out = rq->fcgx.out;
    char head[sizeof(rq->headers) + 512]; /* + the status, type, length, reply_headers */
    int n;

    if (rq->replied) {
        log_error("event=bug what=\"second answer to one request\" path=%s", responder_path(rq));
        return RS_ERR;
    }
    rq->replied = 1;
    /* The JSON and a newline, so that curl's output ends its line. */
    n = snprintf(head, sizeof(head),
                 "Status: %d %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                 "Content-Length: %zu\r\n%s%.*s\r\n",
                 status, responder_reason(status), len + 1,
                 rq->owner->prog->reply_headers ? rq->owner->prog->reply_headers : "",
                 (int)rq->headers_len, rq->headers);
    if (n < 0 || (size_t)n >= sizeof(head))
        return RS_ERR;
    if (FCGX_PutStr(head, n, out) != n || FCGX_PutStr(body, (int)len, out) != (int)len ||
        FCGX_PutChar('\n', out) != '\n')
        return RS_ERR; /* the client is gone: nothing to tell anybody */
    return RS_OK;
}

int
responder_reply_json(responder_request *rq, int status, const cJSON *json)
{
    char *text = json_print(json, rq->print, sizeof(rq->print));
    int rc;

    if (text == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        log_error("event=reply_failed error=\"out of memory\" path=%s", responder_path(rq));
        return responder_reply_raw(rq, 500, oom, sizeof(oom) - 1);
    }
    rc = responder_reply_raw(rq, status, text, strlen(text));
    json_print_free(text, rq->print);
    return rc;
}

int
responder_reply_error(responder_request *rq, int status, const char *fmt, ...)
{
    char msg[600];
    cJSON *json;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json = cJSON_CreateObject();
    if (json == NULL || cJSON_AddStringToObject(json, "error", msg) == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        cJSON_Delete(json);
        return responder_reply_raw(rq, 500, oom, sizeof(oom) - 1);
    }
    rc = responder_reply_json(rq, status, json);
    cJSON_Delete(json);
    return rc;
}

/* -- serving ------------------------------------------------------------------- */

static void
responder_drain(responder_request *rq)
{
    char scratch[4096];
    size_t total = 0;
    int got;

    while (total < RESPONDER_DRAIN_MAX &&
           (got = FCGX_GetStr(scratch, (int)sizeof(scratch), rq->fcgx.in)) > 0)
        total += (size_t)got;
}

/* Reads the whole body into rq->body, or answers 400 and returns RS_ERR. */
static int
responder_read_body(responder_request *rq)
{
    size_t limit = rq->owner->body_limit;
    const char *cl = responder_param(rq, "CONTENT_LENGTH");
    long long declared = -1;
    int got;

    rq->body_len = 0;
    rq->body[0] = '\0';
    if (cl != NULL && *cl != '\0') {
        char *end;
        errno = 0;
        declared = strtoll(cl, &end, 10);
        if (errno != 0 || *end != '\0' || declared < 0 || *cl < '0' || *cl > '9') {
            responder_drain(rq);
            responder_reply_error(rq, 400, "invalid Content-Length \"%.32s\"", cl);
            return RS_ERR;
        }
    }
    if (declared > (long long)limit) {
        responder_drain(rq);
        goto too_large;
    }
    /* Read to the end of the stream, whatever was declared: nginx may pass a
     * chunked body without a length. One byte more than the limit shows excess. */
    got = FCGX_GetStr(rq->body, (int)limit + 1, rq->fcgx.in);
    if (got < 0 || FCGX_GetError(rq->fcgx.in) != 0) {
        responder_reply_error(rq, 400, "the request body could not be read");
        return RS_ERR;
    }
    if ((size_t)got > limit) {
        responder_drain(rq);
        goto too_large;
    }
    if (declared >= 0 && got != declared) {
        responder_reply_error(
            rq, 400, "the request body has %d bytes, its Content-Length says %lld", got, declared);
        return RS_ERR;
    }
    rq->body_len = (size_t)got;
    rq->body[got] = '\0';
    return RS_OK;

too_large:
    responder_reply_error(
        rq, rq->owner->prog->too_large_status ? rq->owner->prog->too_large_status : 400,
        "request body larger than %zu bytes", limit);
    return RS_ERR;
}

static void
responder_serve(struct responder_thread *th)
{
    responder_request *rq = &th->rq;

    rq->replied = 0;
    rq->headers_len = 0;
    rq->headers[0] = '\0';
    if (responder_read_body(rq) != RS_OK)
        return;
    /* nginx decodes %XX in the path: any bytes may arrive. A handler may echo the
     * path, and a JSON answer must be UTF-8, so a path that is not is refused
     * here, once for every program. */
    if (!utf8_valid(responder_path(rq), strlen(responder_path(rq)))) {
        responder_reply_error(rq, 400, "the request path is not valid UTF-8 (after %%XX decoding)");
        return;
    }
    th->owner->prog->handle(rq, th->state);
    if (!rq->replied) {
        log_error("event=bug what=\"request left unanswered\" method=%s path=%s",
                  responder_method(rq), responder_path(rq));
        responder_reply_error(rq, 500, "internal error: the request was left unanswered");
    }
}

/* Accept errors that pass (a descriptor or memory shortage): wait, try again. */
static int
responder_transient(int code)
{
    return code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM || code == EINTR ||
           code == ECONNABORTED || code == EPROTO;
}

/* Tells the main thread to stop serving, as SIGTERM would, marked as a failure. */
static void
responder_fail(responder *self)
{
    atomic_store(&self->failed, 1);
    pthread_kill(self->main_thread, SIGTERM);
}

/* Wakes the dispatcher from its wait. A full pipe means it is due to wake anyway. */
static void
responder_wake(responder *self)
{
    char b = 1;

    while (write(self->wake[1], &b, 1) < 0 && errno == EINTR)
        ;
}

/* Serves the request waiting on the connection fd. Returns fd when the
 * connection stays open for the next request (nginx asked for it,
 * fastcgi_keep_conn), -1 when it was closed. */
static int
responder_serve_connection(struct responder_thread *th, int fd)
{
    FCGX_Request *r = &th->rq.fcgx;

    r->ipcFd = fd;
    /* FCGX_Accept_r begins by finishing the request before, which closes the
     * connection unless it is kept; the request read next says whether it is.
     * With ipcFd set it reads that request instead of accepting one. */
    r->keepConnection = 1;
    /* Detached, libfcgi closes a connection plainly instead of lingering
     * (shutdown, then waiting for nginx to close its end), which would hold
     * this thread for one more round trip. Lingering guards against unread
     * input; the body was read to its end (or drained). */
    FCGX_Detach(r);
    if (FCGX_Accept_r(r) < 0)
        return -1; /* nginx closed it while idle (or spoke no FastCGI): closed */
    responder_serve(th);
    FCGX_Detach(r);
    FCGX_Finish_r(r);
    return r->ipcFd;
}

/* Marks fd idle and arms it in the epoll set for its next request (one-shot:
 * it fires once, then waits to be armed again). Under the lock. */
static int
responder_arm(responder *self, int fd, int op)
{
    if ((size_t)fd >= self->idle_cap) {
        size_t cap = self->idle_cap ? self->idle_cap : 64;
        unsigned char *grown;

        while (cap <= (size_t)fd)
            cap *= 2;
        grown = realloc(self->idle, cap);
        if (grown == NULL)
            return RS_ERR;
        memset(grown + self->idle_cap, 0, cap - self->idle_cap);
        self->idle = grown;
        self->idle_cap = cap;
    }
    if (epoll_ctl(self->epfd, op, fd,
                  &(struct epoll_event){.events = EPOLLIN | EPOLLONESHOT, .data.fd = fd}) != 0)
        return RS_ERR;
    self->idle[fd] = 1;
    return RS_OK;
}

/* A kept connection goes back into the epoll set; at the stop it is closed. */
static void
responder_give_back(responder *self, struct responder_thread *th, int fd)
{
    int kept;

    th->rq.fcgx.ipcFd = -1; /* back in the epoll set, or closed */
    pthread_mutex_lock(&self->lock);
    kept = !self->closing && !atomic_load(&self->stopping) &&
           responder_arm(self, fd, EPOLL_CTL_MOD) == RS_OK;
    pthread_mutex_unlock(&self->lock);
    if (!kept)
        close(fd);
}

static void *
responder_thread_main(void *arg)
{
    struct responder_thread *th = arg;
    responder *self = th->owner;
    errbuf err = {{0}};
    int rc = RS_OK, fd;

    if (self->prog->thread_init != NULL)
        rc = self->prog->thread_init(self->app, &th->state, &err);
    pthread_mutex_lock(&self->lock);
    if (rc != RS_OK && !self->init_failed) {
        self->init_failed = 1;
        self->init_err = err;
    }
    self->reported++;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->lock);
    if (rc != RS_OK)
        return NULL;

    /* One request at a time, from a connection that has one waiting: a thread
     * never waits on an idle connection, so a kept connection holds no thread. */
    for (;;) {
        pthread_mutex_lock(&self->lock);
        while (self->ready.len == 0 && !self->closing)
            pthread_cond_wait(&self->work, &self->lock);
        fd = responder_fdq_pop(&self->ready);
        pthread_mutex_unlock(&self->lock);
        if (fd < 0)
            break; /* the dispatcher has ended and nothing is left to serve */
        fd = responder_serve_connection(th, fd);
        if (fd >= 0)
            responder_give_back(self, th, fd);
    }
    FCGX_Finish_r(&th->rq.fcgx);
    if (self->prog->thread_fini != NULL)
        self->prog->thread_fini(th->state);
    th->state = NULL;
    return NULL;
}

/* -- the dispatcher ---------------------------------------------------------------- */

/* An idle connection with a request waiting goes to the threads (under the
 * lock). When the queue cannot grow it is closed: nginx answers 503. */
static void
responder_hand_over(responder *self, int fd)
{
    if ((size_t)fd < self->idle_cap)
        self->idle[fd] = 0;
    if (responder_fdq_push(&self->ready, fd) == RS_OK) {
        pthread_cond_signal(&self->work);
    } else {
        log_warn("event=request_dropped error=\"out of memory\"");
        close(fd);
    }
}

/* Takes every connection the listening socket has waiting, as idle ones: each
 * goes to a thread once its first request is there. RS_ERR: a fatal error. */
static int
responder_accept(responder *self)
{
    for (;;) {
        int fd = accept4(self->listen_fd, NULL, NULL, SOCK_CLOEXEC), rc;

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || atomic_load(&self->stopping))
                return RS_OK;
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (responder_transient(errno)) {
                /* Out of descriptors, say: epoll would report the same
                 * connection at once again; a pause lets requests in flight end. */
                struct timespec pause = {0, 100 * 1000 * 1000};
                log_warn("event=accept_failed error=\"%s\" action=retry", strerror(errno));
                nanosleep(&pause, NULL);
                return RS_OK;
            }
            log_error("event=accept_failed error=\"%s\"", strerror(errno));
            return RS_ERR;
        }
        pthread_mutex_lock(&self->lock);
        rc = responder_arm(self, fd, EPOLL_CTL_ADD);
        pthread_mutex_unlock(&self->lock);
        if (rc != RS_OK) {
            log_warn("event=accept_failed error=\"%s\" action=close", strerror(errno));
            close(fd);
        }
    }
}

/* No more work: the threads end once the queued requests are served. At the
 * stop a request nginx already sent on an idle connection is still served; the
 * other idle connections are closed (nginx opens a new one for its next
 * request, which the shut-down socket refuses: 503). */
static void
responder_close_work(responder *self)
{
    pthread_mutex_lock(&self->lock);
    for (size_t fd = 0; fd < self->idle_cap; fd++) {
        struct pollfd p = {.fd = (int)fd, .events = POLLIN};

        if (!self->idle[fd])
            continue;
        if (poll(&p, 1, 0) == 1 && !(p.revents & (POLLERR | POLLNVAL))) {
            responder_hand_over(self, (int)fd);
        } else {
            self->idle[fd] = 0;
            close((int)fd);
        }
    }
    self->closing = 1;
    pthread_cond_broadcast(&self->work);
    pthread_mutex_unlock(&self->lock);
}

static void *
responder_dispatch_main(void *arg)
{
    responder *self = arg;
    struct epoll_event ev[64];
    char drain[64];
    int n;

    while (!atomic_load(&self->stopping)) {
        n = epoll_wait(self->epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("event=dispatch_failed error=\"epoll_wait: %s\"", strerror(errno));
            responder_fail(self);
            break;
        }
        pthread_mutex_lock(&self->lock);
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd != self->wake[0] && fd != self->listen_fd)
                responder_hand_over(self, fd);
        }
        pthread_mutex_unlock(&self->lock);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == self->wake[0])
                while (read(self->wake[0], drain, sizeof(drain)) > 0)
                    ;
            else if (ev[i].data.fd == self->listen_fd && !atomic_load(&self->stopping) &&
                     responder_accept(self) != RS_OK)
                responder_fail(self);
        }
        if (atomic_load(&self->failed))
            break;
    }
    responder_close_work(self);
    return NULL;
}

static void
responder_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

/* Stops accepting: a shutdown of the listening socket, which refuses new
 * connections, and the dispatcher woken to end (see responder_dispatch_end).
 * Requests in flight are not touched. */
static void
responder_stop_accepting(responder *self)
{
    atomic_store(&self->stopping, 1);
    shutdown(self->listen_fd, SHUT_RDWR);
    responder_wake(self);
}

/* The dispatcher first: it hands over what is already sent, then the threads
 * end as the last requests are answered. */
static void
responder_join(responder *self)
{
    if (self->dispatcher_running) {
        pthread_join(self->dispatcher, NULL);
        self->dispatcher_running = 0;
    } else {
        responder_close_work(self);
    }
    for (int i = 0; i < self->nthreads; i++)
        if (self->threads[i].running) {
            pthread_join(self->threads[i].id, NULL);
            self->threads[i].running = 0;
        }
}

int
responder_run(responder *self, errbuf *err)
{
    sigset_t set;
    int sig = 0, rc;

    /* Blocked here, inherited by every thread started below: only sigwait sees
     * them, so no thread is ever interrupted in the middle of a request. */
    responder_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    self->main_thread = pthread_self();
    for (int i = 0; i < self->nthreads; i++) {
        rc = pthread_create(&self->threads[i].id, NULL, responder_thread_main, &self->threads[i]);
        if (rc != 0) {
            errbuf_set(err, "cannot start thread %d of %d: %s", i + 1, self->nthreads,
                       strerror(rc));
            pthread_mutex_lock(&self->lock);
            self->init_failed = 1;
            self->init_err = *err;
            self->reported += self->nthreads - i;
            pthread_mutex_unlock(&self->lock);
            break;
        }
        self->threads[i].running = 1;
    }
    pthread_mutex_lock(&self->lock);
    while (self->reported < self->nthreads)
        pthread_cond_wait(&self->cond, &self->lock);
    rc = self->init_failed;
    if (rc)
        *err = self->init_err;
    pthread_mutex_unlock(&self->lock);
    if (!rc) {
        rc = pthread_create(&self->dispatcher, NULL, responder_dispatch_main, self);
        if (rc != 0)
            errbuf_set(err, "cannot start the dispatcher thread: %s", strerror(rc));
        self->dispatcher_running = rc == 0;
    }
    if (rc) {
        responder_stop_accepting(self);
        responder_join(self);
        return RS_ERR;
    }

    log_info("event=listening socket=%s threads=%d body_limit=%zu", self->socket_path,
             self->nthreads, self->body_limit);
    /* Ready once every thread has its state: a database that is down is not a
     * failed start (each request answers 503 until it is back, /healthz says so),
     * or a responder started before its database would crash-loop. */
    notify_ready("serving");
    for (;;) {
        if (sigwait(&set, &sig) != 0)
            sig = SIGTERM;
        if (sig != SIGHUP)
            break;
        /* In this thread, while the others go on serving: nothing waits. */
        if (self->prog->reload != NULL)
            self->prog->reload(self->app);
    }
    notify_stopping();
    responder_stop_accepting(self);
    /* Logged once no new connection is accepted (tests rely on that order). */
    if (atomic_load(&self->failed))
        errbuf_set(err, "a serving thread failed (see the lines above)");
    else
        log_info("event=stopping signal=%s what=\"finishing requests in flight\"",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    responder_join(self);
    return atomic_load(&self->failed) ? RS_ERR : RS_OK;
}

/* -- the program --------------------------------------------------------------- */

/* The program whose usage conf_from_args prints (one per process). */
static const struct responder_program *responder_usage_prog;

static void
responder_usage(FILE *out)
{
    const struct responder_program *prog = responder_usage_prog;

    fprintf(out,
            "usage: %s [-c FILE]\n\n"
            "Serves its FastCGI routes on the unix socket named by %s, with %s threads,\n"
            "until SIGTERM or SIGINT (requests in flight are finished, exit status 0).\n\n"
            "  -c FILE   configuration file (default: $RESTOCK_CONFIG, else %s);\n"
            "            RESTOCK_<KEY> environment variables override single keys\n"
            "  -h        this help\n",
            prog->name, prog->socket_key, prog->threads_key, CONF_DEFAULT_PATH);
}

/* What a responder applies at run time; the rest is kept (sockets, threads, the
 * database, the bus, the spool). */
static const char *const responder_changeable[] = {"log_level", NULL};

static void
responder_reload(void *app)
{
    conf *cf;

    notify_reloading();
    cf = conf_reload_current(responder_changeable);
    conf_destroy(&cf);
    notify_ready("serving");
}

int
responder_main(int argc, char **argv, const struct responder_program *prog)
{
    struct responder_settings settings;
    struct responder_program with_reload = *prog;
    responder *server = NULL;
    metrics *counters = NULL;
    conf *cf = NULL;
    void *app = NULL;
    int app_ready = 0, status = 1;
    errbuf err = {{0}};
    sigset_t set;

    /* Before anything could start a thread (app_init may), so that every
     * thread of the process leaves SIGTERM and SIGINT to sigwait. */
    responder_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    responder_usage_prog = prog;
    cf = conf_from_args(argc, argv, prog->name, responder_usage, &status);
    if (cf == NULL)
        return status;
    status = 1;
    conf_set_current(cf);
    if (prog->reload == NULL)
        with_reload.reload = responder_reload;
    prog = &with_reload;
    /* Without its counters a responder still serves: metrics are not worth an
     * outage. */
    counters = metrics_new(conf_str(cf, "metrics_dir"), prog->name, &err);
    if (counters == NULL)
        log_warn("event=metrics_unavailable error=\"%s\"", err.msg);
    settings.socket_path = conf_str(cf, prog->socket_key);
    settings.socket_mode = (unsigned)conf_int(cf, "socket_mode");
    settings.backlog = (int)conf_int(cf, "socket_backlog");
    settings.threads = (int)conf_int(cf, prog->threads_key);
    settings.body_limit = (size_t)conf_int(cf, "body_limit");
    if (prog->app_init != NULL && prog->app_init(cf, &app, &err) != RS_OK) {
        log_error("event=start_failed error=\"%s\"", err.msg);
        goto done;
    }
    app_ready = 1;
    server = responder_new(&settings, prog, app, &err);
    if (server == NULL || responder_run(server, &err) != RS_OK) {
        log_error("event=%s error=\"%s\"", server ? "stopped_on_error" : "start_failed", err.msg);
        goto done;
    }
    log_info("event=stopped");
    status = 0;

done:
    responder_destroy(&server);
    if (app_ready && prog->app_fini != NULL)
        prog->app_fini(app);
    metrics_destroy(&counters);
    conf_set_current(NULL);
    conf_destroy(&cf);
    return status;
}
