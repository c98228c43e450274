/* bus: the doorbells of restock on ZeroMQ PUB/SUB. A responder rings (topic
 * "stock_empty" or "stock_arrived") after it committed an outbox event; the worker
 * listens and sweeps the outbox at once instead of at its next timed sweep. A
 * doorbell carries no data and may be lost (PUB drops when nobody listens): the
 * outbox row is what counts, the doorbell only saves time. */
#ifndef RESTOCK_BUS_H
#define RESTOCK_BUS_H

#include <stddef.h>

#include "errbuf.h"

#define BUS_STOCK_EMPTY   "stock_empty"
#define BUS_STOCK_ARRIVED "stock_arrived"

typedef struct bus_pub bus_pub;
typedef struct bus_sub bus_sub;

/* Largest frame the listener takes (ZMQ_MAXMSGSIZE): a doorbell is a topic and
 * an event id; a peer that sends more is disconnected before its message is read
 * into memory (ZeroMQ reconnects a publisher by itself). */
#define BUS_MESSAGE_MAX 256
/* Most doorbells one bus_wait takes (counted in frames, two a doorbell, so that
 * a message of countless frames is cut too): the rest wait for the next call, so
 * that a flood on a tcp endpoint cannot keep the worker's loop from its timed
 * work. */
#define BUS_DRAIN_MAX 100

/* Longest endpoint ("tcp://host:port", "ipc:///path") of a list. */
#define BUS_ENDPOINT_MAX 256

/* A publisher connected to every endpoint of a comma-separated list (one per
 * worker: each gets every doorbell); one per thread (ZeroMQ sockets are not
 * thread-safe). Connecting succeeds whether or not the workers are up. */
bus_pub *bus_pub_new(const char *endpoints, errbuf *err);
void bus_pub_destroy(bus_pub **self_p);

/* Rings topic with an optional text (an event id, for the logs); never blocks.
 * Returns -1 only when ZeroMQ refused the message (it is then dropped). */
int bus_ring(bus_pub *self, const char *topic, const char *text);

/* The listener: binds endpoint (of a list: its first) and subscribes to every
 * doorbell. */
bus_sub *bus_sub_new(const char *endpoints, errbuf *err);
void bus_sub_destroy(bus_sub **self_p);

/* Copies the first endpoint of a comma-separated list into out (of size bytes):
 * what a worker binds when bus_listen is empty. */
int bus_first(const char *endpoints, char *out, size_t size, errbuf *err);

/* Ends ZeroMQ in this process (its I/O threads), once every bus object is
 * destroyed, at the very end of a program; a later bus_*_new starts it again. */
void bus_shutdown(void);

/* Waits up to timeout_ms for doorbells; returns how many rang (all those waiting
 * are consumed, up to BUS_DRAIN_MAX), 0 on timeout, -1 when interrupted by a
 * signal or on error. */
int bus_wait(bus_sub *self, long timeout_ms);

#endif
