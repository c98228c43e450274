/* bus: ZeroMQ doorbells (see bus.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "bus.h"

struct bus_pub {
    void *socket;
};

struct bus_sub {
    void *socket;
    char *ipc_path; /* the socket file to remove at destroy, for ipc:// endpoints */
};

/* One ZeroMQ context per process, made on first use and shared by every thread
 * (contexts are thread-safe). bus_shutdown terminates it; zmq_ctx_term would
 * block on a socket still open, hence "once every bus object is destroyed". */
static void *bus_context;
static pthread_mutex_t bus_lock = PTHREAD_MUTEX_INITIALIZER;

static void *
bus_context_get(void)
{
    void *ctx;

    pthread_mutex_lock(&bus_lock);
    if (bus_context == NULL)
        bus_context = zmq_ctx_new();
    ctx = bus_context;
    pthread_mutex_unlock(&bus_lock);
    return ctx;
}

void
bus_shutdown(void)
{
    pthread_mutex_lock(&bus_lock);
    if (bus_context != NULL)
        zmq_ctx_term(bus_context);
    bus_context = NULL;
    pthread_mutex_unlock(&bus_lock);
}

static void *
bus_socket(int type, errbuf *err)
{
    void *s, *ctx = bus_context_get();
    int linger = 0;

    if (ctx == NULL) {
        errbuf_set(err, "bus: cannot create a ZeroMQ context: %s", zmq_strerror(errno));
        return NULL;
    }
    s = zmq_socket(ctx, type);
    if (s == NULL) {
        errbuf_set(err, "bus: cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        return NULL;
    }
    /* Doorbells are worthless once late: never hold the process at close. */
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    return s;
}

/* Copies the n-th (from 0) item of a comma-separated list into out, without the
 * blanks around it. Returns 1 with an item, 0 past the last one, -1 with an
 * empty item or one longer than size (err says which). */
static int
bus_item(const char *list, int n, char *out, size_t size, errbuf *err)
{
    const char *p = list, *end;
    size_t len;

    for (int i = 0; i < n; i++) {
        p = strchr(p, ',');
        if (p == NULL)
            return 0;
        p++;
    }
    end = strchr(p, ',');
    if (end == NULL)
        end = p + strlen(p);
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    len = (size_t)(end - p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= size) {
        errbuf_set(err, "bus: endpoint %d of \"%s\" is %s", n + 1, list,
                   len == 0 ? "empty" : "too long");
        return -1;
    }
    memcpy(out, p, len);
    out[len] = '\0';
    return 1;
}

int
bus_first(const char *endpoints, char *out, size_t size, errbuf *err)
{
    return bus_item(endpoints, 0, out, size, err) == 1 ? RS_OK : RS_ERR;
}

bus_pub *
bus_pub_new(const char *endpoints, errbuf *err)
{
    bus_pub *self = calloc(1, sizeof(*self));
    int hwm = 1000, immediate = 1, got;
    char endpoint[BUS_ENDPOINT_MAX];

    if (self == NULL) {
        errbuf_set(err, "bus: out of memory");
        return NULL;
    }
    self->socket = bus_socket(ZMQ_PUB, err);
    if (self->socket == NULL)
        goto fail;
    zmq_setsockopt(self->socket, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    /* Queue only to workers whose connection is up: one that is down would
     * otherwise hoard up to the high-water mark of stale doorbells and get them
     * all at once when it comes back (its start-up sweep makes them worthless). */
    zmq_setsockopt(self->socket, ZMQ_IMMEDIATE, &immediate, sizeof(immediate));
    /* One socket connected to every worker: PUB copies each doorbell to all of
     * them, and ZeroMQ retries each connection on its own, so that a worker
     * that is down costs nothing here. */
    for (int i = 0; (got = bus_item(endpoints, i, endpoint, sizeof(endpoint), err)) == 1; i++) {
        if (zmq_connect(self->socket, endpoint) != 0) {
            errbuf_set(err, "bus: cannot connect to %s: %s", endpoint, zmq_strerror(errno));
            goto fail;
        }
    }
    if (got < 0)
        goto fail;
    return self;
fail:
    bus_pub_destroy(&self);
    return NULL;
}

void
bus_pub_destroy(bus_pub **self_p)
{
    bus_pub *self = *self_p;

    if (self == NULL)
        return;
    if (self->socket != NULL)
        zmq_close(self->socket);
    free(self);
    *self_p = NULL;
}

int
bus_ring(bus_pub *self, const char *topic, const char *text)
{
    const char *payload = text ? text : "";

    if (zmq_send(self->socket, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return RS_ERR;
    if (zmq_send(self->socket, payload, strlen(payload), ZMQ_DONTWAIT) < 0)
        return RS_ERR;
    return RS_OK;
}

bus_sub *
bus_sub_new(const char *endpoints, errbuf *err)
{
    bus_sub *self = calloc(1, sizeof(*self));
    char endpoint[BUS_ENDPOINT_MAX];
    int64_t max_size = BUS_MESSAGE_MAX;

    if (self == NULL) {
        errbuf_set(err, "bus: out of memory");
        return NULL;
    }
    if (bus_first(endpoints, endpoint, sizeof(endpoint), err) != RS_OK)
        goto fail;
    self->socket = bus_socket(ZMQ_SUB, err);
    if (self->socket == NULL)
        goto fail;
    if (zmq_setsockopt(self->socket, ZMQ_MAXMSGSIZE, &max_size, sizeof(max_size)) != 0 ||
        zmq_setsockopt(self->socket, ZMQ_SUBSCRIBE, "", 0) != 0) {
        errbuf_set(err, "bus: cannot set up the listener: %s", zmq_strerror(errno));
        goto fail;
    }
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        /* A socket file left by a killed worker would make bind fail: only one
         * worker runs per spool, so the file is ours to replace. */
        self->ipc_path = strdup(endpoint + 6);
        if (self->ipc_path == NULL) {
            errbuf_set(err, "bus: out of memory");
            goto fail;
        }
        unlink(self->ipc_path);
    }
    if (zmq_bind(self->socket, endpoint) != 0) {
        errbuf_set(err, "bus: cannot bind %s: %s", endpoint, zmq_strerror(errno));
        goto fail;
    }
    return self;
fail:
    bus_sub_destroy(&self);
    return NULL;
}

void
bus_sub_destroy(bus_sub **self_p)
{
    bus_sub *self = *self_p;

    if (self == NULL)
        return;
    if (self->socket != NULL)
        zmq_close(self->socket);
    if (self->ipc_path != NULL) {
        unlink(self->ipc_path);
        free(self->ipc_path);
    }
    free(self);
    *self_p = NULL;
}

int
bus_wait(bus_sub *self, long timeout_ms)
{
    zmq_pollitem_t item = {self->socket, 0, ZMQ_POLLIN, 0};
    int rang = 0;
    char buf[BUS_MESSAGE_MAX];

    if (zmq_poll(&item, 1, timeout_ms) < 0)
        return RS_ERR;
    /* Drain what is waiting, up to a bound: ten doorbells mean one sweep, not
     * ten, and a flood still lets the caller go on to its other work. */
    for (int frames = 0; frames < 2 * BUS_DRAIN_MAX; frames++) { /* a doorbell is 2 */
        int more = 0;
        size_t size = sizeof(more);
        if (zmq_recv(self->socket, buf, sizeof(buf), ZMQ_DONTWAIT) < 0)
            break;
        if (zmq_getsockopt(self->socket, ZMQ_RCVMORE, &more, &size) == 0 && !more)
            rang++;
    }
    return rang;
}
