/* bell_flood: floods a worker's doorbell endpoint, as a hostile or broken peer on
 * the tcp doorbell port would (tests/integration/doorbell_flood.py runs it; not
 * a unit test). Each of THREADS threads connects a PUB socket of its own and
 * sends doorbells as fast as ZeroMQ takes them; with OVERSIZE, one more thread
 * sends a message of that many bytes again and again, and says "hung up" on
 * stdout each time the worker closed that connection (ZeroMQ reconnects it).
 * Runs until killed; says "flooding" on stdout once every socket is connecting.
 *
 *   bell_flood ENDPOINT THREADS [OVERSIZE] */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

static void *flood_context;

static void *
flood_socket(const char *endpoint)
{
    void *s = zmq_socket(flood_context, ZMQ_PUB);
    int hwm = 100000;

    if (s == NULL || zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm)) != 0 ||
        zmq_connect(s, endpoint) != 0) {
        fprintf(stderr, "bell_flood: %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        exit(1);
    }
    return s;
}

static void *
flood_bells(void *arg)
{
    void *s = flood_socket(arg);

    for (;;) {
        zmq_send(s, "stock_empty", 11, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(s, "flood", 5, ZMQ_DONTWAIT);
    }
    return NULL;
}

static size_t flood_oversize;

static void *
flood_big(void *arg)
{
    void *s = flood_socket(arg), *events = zmq_socket(flood_context, ZMQ_PAIR);
    char *big = calloc(1, flood_oversize);
    struct timespec pause = {0, 50 * 1000 * 1000};

    if (big == NULL || events == NULL ||
        zmq_socket_monitor(s, "inproc://flood-big", ZMQ_EVENT_DISCONNECTED) != 0 ||
        zmq_connect(events, "inproc://flood-big") != 0)
        exit(1);
    memcpy(big, "stock_empty", 11 < flood_oversize ? 11 : flood_oversize);
    /* Paced: ZeroMQ reconnects 100 ms after the worker hung up, and a queue of
     * copies would only fill this process's memory. */
    for (;;) {
        char event[64];
        zmq_send(s, big, flood_oversize, ZMQ_DONTWAIT);
        nanosleep(&pause, NULL);
        /* An event is two frames: (event, value), then the peer's address. */
        while (zmq_recv(events, event, sizeof(event), ZMQ_DONTWAIT) >= 0) {
            zmq_recv(events, event, sizeof(event), 0);
            printf("hung up\n");
            fflush(stdout);
        }
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    pthread_t thread;
    int threads;

    if (argc < 3 || (threads = atoi(argv[2])) < 1) {
        fprintf(stderr, "usage: bell_flood ENDPOINT THREADS [OVERSIZE]\n");
        return 2;
    }
    flood_context = zmq_ctx_new();
    if (flood_context == NULL)
        return 1;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&thread, NULL, flood_bells, argv[1]) != 0)
            return 1;
    if (argc > 3 && (flood_oversize = strtoul(argv[3], NULL, 10)) > 0 &&
        pthread_create(&thread, NULL, flood_big, argv[1]) != 0)
        return 1;
    printf("flooding\n");
    fflush(stdout);
    pthread_join(thread, NULL); /* never returns: killed by the test */
    return 0;
}
