/* utf8: the one definition of UTF-8 in restock (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), for checking text, cutting it without splitting
 * a character, and making any bytes (a factory's answer, a relay's reply) safe to
 * show in alerts, logs and terminals. Every function takes a length, so that bodies
 * with NUL bytes and unterminated buffers work as well as C strings. */
#ifndef RESTOCK_UTF8_H
#define RESTOCK_UTF8_H

#include <stddef.h>

/* Room utf8_sanitize needs to keep all of len bytes, with the NUL: an escape is at
 * most 4 bytes per input byte ("\xff" for one, "\u202e" for three). */
#define UTF8_SANITIZED_SIZE(len) (4 * (size_t)(len) + 1)

/* Bytes (1 to 4) of the valid character at s, of which at most avail bytes may be
 * read; 0 when s does not start with one (a stray or missing continuation byte, an
 * overlong form, a surrogate, a value past U+10FFFF, avail 0). */
size_t utf8_char_len(const char *s, size_t avail);

/* 1 when the len bytes at s are valid UTF-8, 0 otherwise. */
int utf8_valid(const char *s, size_t len);

/* Characters in the len bytes at s, or -1 when they are not valid UTF-8. */
long utf8_chars(const char *s, size_t len);

/* Length of the longest start of s (len bytes) that has at most max bytes and does
 * not end inside a multi-byte sequence: a character the cut would split is left out
 * whole. Bytes that are not UTF-8 are cut like single bytes. */
size_t utf8_cut(const char *s, size_t len, size_t max);

/* Length in bytes of the first max_chars characters of s (len bytes), for limits
 * counted in characters (a VARCHAR column). A byte that is not UTF-8 counts as one
 * character. */
size_t utf8_cut_chars(const char *s, size_t len, size_t max_chars);

/* Writes the len bytes at s into out (size bytes, at least 1; always NUL-terminated)
 * as valid UTF-8 on one line that a terminal shows as it is written:
 *   - valid characters are copied, except those below, which become escapes;
 *   - line feed, carriage return and tab: \n \r \t;
 *   - other C0 controls and DEL: \xHH (ESC is \x1b, NUL is \x00);
 *   - C1 controls (U+0080 to U+009F, which some terminals obey like ESC sequences),
 *     the line and paragraph separators and the bidirectional marks, embeddings,
 *     overrides and isolates (which reorder what a reader sees): \uHHHH;
 *   - each byte that is not part of a valid character (text in EUC-KR, say): \xHH.
 * Hex digits are lower case. A backslash stays as it is, so that a JSON answer
 * reads as it was sent: the escapes are for people to read, not to decode back.
 * Stops before a character or an escape that would not fit, never inside one.
 * Returns how many bytes of s were written out: len when all of them. */
size_t utf8_sanitize(const char *s, size_t len, char *out, size_t size);

#endif
