/* responder: the frame of restock's FastCGI programs (restock-sales,
 * restock-callback) on libfcgi. It listens on a unix socket; a dispatcher thread
 * waits on it and on the connections nginx keeps open, and hands a connection
 * whose request has arrived to one of N serving threads, each with its own
 * FCGX_Request and its own state made by the program (a database connection
 * with prepared statements, say), so that an idle connection never holds a
 * thread. It reads the body up to a limit, calls the program's handler, and
 * offers the JSON replies. SIGTERM or SIGINT: it stops accepting, finishes the
 * requests in flight, and returns (the program exits 0). SIGHUP re-reads the
 * configuration; like the other two it is taken by sigwait in the main thread,
 * so that no serving thread is ever interrupted. */
#ifndef RESTOCK_RESPONDER_H
#define RESTOCK_RESPONDER_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "conf.h"
#include "errbuf.h"

typedef struct responder responder;
typedef struct responder_request responder_request;

struct responder_settings {
    const char *socket_path;
    unsigned socket_mode; /* chmod of the socket, so that nginx's user may connect */
    int backlog;          /* new connections not yet accepted by the dispatcher */
    int threads;
    size_t body_limit; /* larger bodies answer 400 before the handler sees them */
};

/* What a program brings. Hooks other than handle may be NULL. */
struct responder_program {
    const char *name;        /* "restock-sales": usage and log lines */
    const char *socket_key;  /* configuration key of its socket ("sales_socket") */
    const char *threads_key; /* configuration key of its thread count */
    /* Once, in the main thread before any serving thread starts (process-wide
     * library set-up such as mysql_library_init); *app goes to thread_init. */
    int (*app_init)(const conf *cf, void **app, errbuf *err);
    void (*app_fini)(void *app);
    /* In each serving thread, before its first request and after its last, so
     * that thread-bound libraries are set up and torn down in that thread. */
    int (*thread_init)(void *app, void **state, errbuf *err);
    void (*thread_fini)(void *state);
    /* One request; must answer it with exactly one responder_reply*. An
     * unanswered request answers 500. */
    void (*handle)(responder_request *rq, void *state);
    /* SIGHUP, in the main thread while the serving threads go on; NULL: the
     * frame's own (log_level is applied, other changed keys are kept with a
     * warning, a file that does not load is refused and the old one kept). */
    void (*reload)(void *app);
    /* Header lines sent with every answer of the program, the frame's own
     * refusals included ("Cache-Control: no-store\r\n"); NULL: none. */
    const char *reply_headers;
    /* The status of a body over body_limit; 0: 400, as the public API says. */
    int too_large_status;
};

/* The whole program: options (-c FILE, -h), configuration, log, the server until
 * SIGTERM/SIGINT. Returns the exit status: 0 after a clean stop, 1 on failure,
 * 2 for bad usage. */
int responder_main(int argc, char **argv, const struct responder_program *prog);

/* The parts responder_main is made of (tests use them directly). responder_new
 * opens the socket; responder_run serves until SIGTERM or SIGINT arrives, with
 * both signals blocked in every thread (sigwait takes them), and returns RS_OK
 * after a clean stop. */
responder *responder_new(const struct responder_settings *settings,
                         const struct responder_program *prog, void *app, errbuf *err);
int responder_run(responder *self, errbuf *err);
void responder_destroy(responder **self_p);

/* The request. Strings stay valid until the reply. */
const char *responder_method(const responder_request *rq); /* "GET"; "" when missing */
const char *responder_path(const responder_request *rq);   /* DOCUMENT_URI, decoded; UTF-8 */
const char *responder_param(const responder_request *rq, const char *name); /* or NULL */
/* The value of a request header that may be sent once ("Idempotency-Key"): RS_OK
 * with *value NULL when absent; RS_ERR with err saying so when it came twice. */
int responder_header_once(const responder_request *rq, const char *header, const char **value,
                          errbuf *err);
/* The body (NUL-terminated, may hold NULs itself) and its length; "" when empty. */
const char *responder_body(const responder_request *rq, size_t *len);

/* Adds a response header to the coming reply ("Allow", "GET, HEAD"). */
int responder_header(responder_request *rq, const char *name, const char *value);

/* Answers with status and json as the body (Content-Type: application/json;
 * charset=utf-8; UTF-8 text unescaped). RS_ERR when the client is gone. */
int responder_reply_json(responder_request *rq, int status, const cJSON *json);

/* Answers with status and body, JSON text the caller made (len bytes), as
 * responder_reply_json would have sent it: a stored answer replayed byte for
 * byte. */
int responder_reply_raw(responder_request *rq, int status, const char *body, size_t len);

/* Answers {"error":"<formatted message>"}. */
int responder_reply_error(responder_request *rq, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
