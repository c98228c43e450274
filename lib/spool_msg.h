/* spool_msg: one message of the spool (spool.h) and its file format: rendering a
 * message into the bytes of its file, parsing and checking those bytes, and what a
 * message records (attempts, due time, errors, death, redrives). It knows nothing
 * of folders, locks or disks; spool.c moves the files.
 *
 * File format (text; the body is bytes, length given by its header):
 *
 *     restock-spool 1
 *     id: 3f0c…                      (the file name)
 *     queue: factory
 *     key: 9a41…                     (ordering key, optional)
 *     created: 1712345678.123456789 2024-04-05T19:34:38Z
 *     attempts: 2                    (failed attempts so far)
 *     claim: 3                       (the claim epoch of its outbox work, optional)
 *     due: 1712345700 2024-04-05T19:35:00Z        (deferred: when it is due)
 *     last-error: HTTP 500 from …    (optional)
 *     died-at: 1712349999 2024-04-05T20:46:39Z   (dead only)
 *     death-reason: max_attempts (5) reached      (dead only)
 *     history: died … after 5 attempts: …; redriven …   (one line per redrive)
 *     length: 123
 *
 *     <123 bytes of body>
 *     end <64 hex digits: BLAKE2b-256 of every byte before this line>
 *
 * Header texts are one line each: control characters become spaces, and they are
 * cut to SPOOL_TEXT_MAX bytes without splitting a UTF-8 character; other bytes are
 * kept as they came. Unknown headers are skipped when parsing, so that a later
 * version may add some. The times after the numbers are for people; the numbers
 * are what is read back.
 *
 * Errors follow errbuf.h. Call sodium_init() before rendering or parsing (spool_new
 * does). */
#ifndef RESTOCK_SPOOL_MSG_H
#define RESTOCK_SPOOL_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "errbuf.h"

#define SPOOL_ID_MAX   128       /* ids and keys: [A-Za-z0-9._-], 1..128, no leading dot */
#define SPOOL_BODY_MAX (8 << 20) /* largest body accepted, in bytes */
#define SPOOL_TEXT_MAX 1000      /* header texts (errors, reasons) are cut to this */
/* Largest file that can be a message: the body and room for every header. */
#define SPOOL_MSG_FILE_MAX    (SPOOL_BODY_MAX + 65536)
#define SPOOL_MSG_HISTORY_MAX 20 /* redrives remembered per message; older ones are dropped */

/* Where a message is: the state folders of its queue (spool.h). The message
 * carries the state it was read in; the file does not record it. */
enum spool_state {
    SPOOL_INCOMING, /* waiting */
    SPOOL_ACTIVE,   /* taken, in delivery */
    SPOOL_DEFERRED, /* failed, waiting until its due time */
    SPOOL_DEAD,     /* gave up; waits for an operator (redrive) */
    SPOOL_DONE,     /* delivered; kept so that a repeated put stays a no-op */
    SPOOL_CORRUPT,  /* unreadable files, kept for an operator */
    SPOOL_NSTATES
};

typedef struct spool_msg spool_msg;

/* 1 when `id` is a valid message id (or key), 0 otherwise: it is a file name. */
int spool_msg_valid_id(const char *id);

/* The message. Strings are NUL-terminated; NULL where the header is absent. The
 * body is followed by a NUL byte (not counted in its length), for parsers. */
void spool_msg_destroy(spool_msg **self_p);
const char *spool_msg_id(const spool_msg *self);
const char *spool_msg_queue(const spool_msg *self);
const char *spool_msg_key(const spool_msg *self);
const void *spool_msg_body(const spool_msg *self);
size_t spool_msg_len(const spool_msg *self);
enum spool_state spool_msg_state(const spool_msg *self);
time_t spool_msg_created(const spool_msg *self);
int64_t spool_msg_created_ns(const spool_msg *self); /* nanoseconds: the queue's order */
int spool_msg_attempts(const spool_msg *self);
/* The epoch of the outbox claim (workers/claim.h) the message was made under,
 * which every delivery attempt checks; 0: none (alerts, stored callbacks). */
long long spool_msg_claim(const spool_msg *self);
time_t spool_msg_due(const spool_msg *self); /* 0: none */
const char *spool_msg_last_error(const spool_msg *self);
time_t spool_msg_died_at(const spool_msg *self); /* 0: not dead */
const char *spool_msg_death_reason(const spool_msg *self);
size_t spool_msg_history_count(const spool_msg *self);
const char *spool_msg_history(const spool_msg *self, size_t i);

/* ---- for the spool: files, and what a state change records ---- */

/* The bytes of the file of a new message (attempts 0; key NULL or "" for none;
 * created in nanoseconds since the epoch), malloc'd into *out. Checks nothing of
 * the spool's rules but the body's size. */
int spool_msg_render_new(const char *id, const char *queue, const char *key, int64_t created_ns,
                         const void *body, size_t len, char **out, size_t *outlen, errbuf *err);

/* The same, for a message made under claim epoch `claim` (0: none). */
int spool_msg_render_claimed(const char *id, const char *queue, const char *key, long long claim,
                             int64_t created_ns, const void *body, size_t len, char **out,
                             size_t *outlen, errbuf *err);

/* The bytes of self's file, malloc'd into *out. */
int spool_msg_render(const spool_msg *self, char **out, size_t *outlen, errbuf *err);

/* Checks and reads a file's bytes. `name` (the file name) and `queue` must match
 * the headers. Returns 1 with *out (state SPOOL_INCOMING until set), 0 when the
 * bytes are not a sound message (why, whylen bytes, says what is wrong: "torn",
 * "checksum mismatch", …), RS_ERR when out of memory. */
int spool_msg_parse(const char *buf, size_t len, const char *name, const char *queue,
                    spool_msg **out, char *why, size_t whylen, errbuf *err);

/* A deep copy, so that a state change can be made to the copy and written before
 * the caller's message takes it (spool_msg_swap_record): when the write fails, the
 * message is still what its file says. NULL when out of memory. */
spool_msg *spool_msg_copy(const spool_msg *self, errbuf *err);

/* Exchanges what two messages record (state, attempts, due time, errors, death,
 * history). Id, queue, key and body stay where they are: callers keep pointers to
 * them across a state change. */
void spool_msg_swap_record(spool_msg *a, spool_msg *b);

void spool_msg_set_state(spool_msg *self, enum spool_state state);

/* A failed attempt (counted) or one that could not be made (not counted): attempts
 * + counted, due (0 is written as 1: 0 means none), last-error. */
int spool_msg_mark_deferred(spool_msg *self, int counted, time_t due, const char *error,
                            errbuf *err);

/* Death at `when`: the reason ("killed" when NULL) and, when error is not NULL, the
 * attempt just made (attempts + 1, last-error); no due time. */
int spool_msg_mark_dead(spool_msg *self, const char *error, const char *reason, time_t when,
                        errbuf *err);

/* Redriven at `when`: a history line records the death (the oldest is dropped
 * beyond SPOOL_MSG_HISTORY_MAX), and attempts, due time, errors and death are reset. */
int spool_msg_mark_redriven(spool_msg *self, time_t when, errbuf *err);

#endif
