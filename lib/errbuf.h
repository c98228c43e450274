/* errbuf: the one error-return convention of restock. A function that can fail
 * returns int (0 = ok, -1 = failed) and writes what failed, with which input, into
 * the caller's errbuf; the caller that handles the failure logs it once. */
#ifndef RESTOCK_ERRBUF_H
#define RESTOCK_ERRBUF_H

#include <stddef.h>

#define RS_OK  0
#define RS_ERR (-1)

typedef struct errbuf {
    char msg[512];
} errbuf;

/* Formats the message into err (which may be NULL) and returns RS_ERR, so that
 * `return errbuf_set(err, "...")` reads as the error return. */
int errbuf_set(errbuf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message with context ("loading x: <old message>"). */
int errbuf_prefix(errbuf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
