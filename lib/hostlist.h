/* hostlist: the database hosts of db_host, "host[:port],…", in the order they are
 * tried. A port left out is the caller's default (db_port); an IPv6 address with
 * a port is written in brackets ("[::1]:3306"). */
#ifndef RESTOCK_HOSTLIST_H
#define RESTOCK_HOSTLIST_H

#include <stddef.h>

#include "errbuf.h"

#define HOSTLIST_MAX 16

typedef struct hostlist hostlist;

/* Parses text; NULL with err saying which item is wrong (empty, bad port, too
 * many) or out of memory. An empty text is "localhost", as the client library
 * takes an empty host. */
hostlist *hostlist_new(const char *text, unsigned default_port, errbuf *err);
void hostlist_destroy(hostlist **self_p);

size_t hostlist_count(const hostlist *self);
/* The i-th host without its port, and its port. */
const char *hostlist_host(const hostlist *self, size_t i);
unsigned hostlist_port(const hostlist *self, size_t i);
/* "host:port" of the i-th host, for logs and errors. */
const char *hostlist_name(const hostlist *self, size_t i);

#endif
