/* ident: the UUIDs that identify products, factories, ads, orders and events.
 * Stored as BINARY(16) (MariaDB has no UUID_TO_BIN), shown as canonical text. */
#ifndef RESTOCK_IDENT_H
#define RESTOCK_IDENT_H

#include <stddef.h>

#define IDENT_BYTES 16
#define IDENT_TEXT  37 /* 36 characters and the NUL */

/* A new random (version 4) UUID. */
void ident_new(unsigned char out[IDENT_BYTES]);

/* A new time-ordered (version 7, RFC 9562) UUID: the Unix time in milliseconds,
 * then 74 random bits. The primary key of rows made by the thousand a second
 * (holds): each goes in at the index's end, not at a random page of it. */
void ident_new_ordered(unsigned char out[IDENT_BYTES]);

/* Canonical lower-case text of 16 bytes; text of anything else is "" (a NULL
 * column, say) so that a bad row never reads past its buffer. */
void ident_format(const void *bytes, size_t len, char out[IDENT_TEXT]);

/* Parses canonical text; -1 when it is not a UUID. */
int ident_parse(const char *text, unsigned char out[IDENT_BYTES]);

#endif
