/* spool: the on-disk durable queues of the queue worker (Postfix style). One
 * folder per queue, one folder per state in it, one text file per message named by
 * its id, so that `ls` and `cat` show an operator what is waiting, in flight,
 * deferred, dead or corrupt.
 *
 * Layout: {root}/{queue}/{tmp,incoming,active,deferred,dead,done,corrupt}/ID
 *
 * One file is one message; its format (headers, body, checksum) and what it
 * records are in spool_msg.h, which this header includes.
 *
 * A message enters a state folder only by write → fsync(file) → rename →
 * fsync(folder), and has exactly one name in the state folders at every moment
 * (a rewrite replaces the file in place before it is renamed on), so that after a
 * crash there is nothing to reconcile but active/ (back to incoming/) and tmp/
 * (removed). A file whose checksum, format, id or queue is wrong, or that cannot be
 * read, is moved to corrupt/ and reported (spool_set_corrupt_handler), and the
 * queue goes on with the others.
 *
 * Ordering: spool_take gives the oldest waiting message (created time, then id)
 * whose key is free. A key is busy while a message with that key is in active/ or
 * deferred/ (so one product's orders go out in order, even across retries), or
 * when the caller names it busy. Messages without a key are never held back. A
 * dead message does not hold its key: one bad order must not block a product.
 *
 * Threads: a spool object may be used from several threads at once (the worker
 * takes in its main thread and finishes messages in delivery threads); a mutex
 * guards its state and the choice of the message to take, and it is not held
 * during fsync of a finished message. Another process (restockctl) may read and
 * redrive the same spool at the same time: renames are atomic and readers skip
 * files that vanish between readdir and open. Only one worker process may own a
 * queue (spool_recover moves everything in active/ back).
 *
 * The spool wants a local journalling file system (ext4, xfs, btrfs; tmpfs for
 * tests): renames must be atomic across a crash and support RENAME_NOREPLACE.
 *
 * Every folder is opened without following symlinks (O_NOFOLLOW), the spool
 * folder itself included: a folder replaced by a link is an error, never a way to
 * write elsewhere.
 *
 * Errors follow errbuf.h; messages name the file or folder. RS_ERR from a write
 * (in particular an fsync error, or ENOSPC) means the disk may have lost data:
 * nothing the failed call wrote counts as durable. A failed put removes what it
 * renamed into incoming/, and a later put of the same id finds a message already
 * there only after fsync'ing its file and folder again, so the caller may retry a
 * put until it succeeds and then count the message as on disk; spool_recover at
 * the next start verifies every file. */
#ifndef RESTOCK_SPOOL_H
#define RESTOCK_SPOOL_H

#include <stddef.h>
#include <time.h>

#include "errbuf.h"
#include "spool_msg.h" /* the message, its states, SPOOL_ID_MAX, SPOOL_BODY_MAX */

typedef struct spool spool;

/* One message of a batch put. `added` is set by spool_put_batch: 1 when the message
 * was written, 0 when its id was already in the queue. */
typedef struct spool_item {
    const char *id;
    const char *key; /* NULL or "" for none */
    const void *body;
    size_t len;
    int added;
    long long claim; /* claim epoch written into the message (spool_msg_claim); 0: none */
} spool_item;

/* Called for every file moved to corrupt/: where it was, where it went, why. It may
 * be called with the spool's lock held: it must not call spool functions. */
typedef void spool_corrupt_fn(void *arg, const char *from, const char *to, const char *problem);

/* Called by spool_each for every file of a state, oldest first. m is NULL when the
 * file cannot be read or parsed (problem says why; the file is left where it is).
 * A non-zero return stops the walk and is returned by spool_each. m belongs to the
 * walk: do not keep it. */
typedef int spool_each_fn(void *arg, const char *name, const spool_msg *m, const char *problem);

/* What spool_recover did. */
typedef struct spool_recovery {
    size_t requeued;       /* active/ → incoming/ */
    size_t tmp_removed;    /* half-written files of dead processes */
    size_t corrupt;        /* files moved to corrupt/ */
    size_t verified;       /* good files in all states */
    size_t copies_removed; /* second names of one message a power cut left */
} spool_recovery;

/* Opens queue `queue` under `root`, creating root, the queue folder and its state
 * folders (mode 0700) where missing. When run as root, what it creates belongs to
 * the owner of `root`, so that restockctl run by root cannot lock the worker out. */
spool *spool_new(const char *root, const char *queue, errbuf *err);
void spool_destroy(spool **self_p);

/* Replaces the default report of corrupt files (a log_warn line). */
void spool_set_corrupt_handler(spool *self, spool_corrupt_fn *fn, void *arg);

const char *spool_queue(const spool *self);
const char *spool_state_name(enum spool_state state);
/* The state called `name` ("dead", …), or -1. */
int spool_state_parse(const char *name);

/* Writes a message into incoming/. Returns 1 when it was written, 0 when a message
 * with this id is already in incoming, active, deferred, dead or done (a repeated
 * put is a no-op; a copy in corrupt/ does not count; the file found and its folder
 * are fsync'd before 0 is returned), RS_ERR on error. Durable when it returns 0 or
 * 1. */
int spool_put(spool *self, const char *id, const char *key, const void *body, size_t len,
              errbuf *err);

/* Writes several messages with a constant number of disk syncs (one syncfs(2) of
 * the file system and one fsync of incoming/) instead of two per message. Sets each
 * item's `added`; returns how many were written, or RS_ERR (none acknowledged; what
 * it renamed into incoming/ is removed again where it still is). All, those found
 * already there included, are durable when it returns. */
int spool_put_batch(spool *self, spool_item *items, size_t n, errbuf *err);

/* Takes the oldest waiting message whose key is free (see Ordering above; `busy`
 * lists further keys to skip, n_busy of them, may be NULL) and moves it to active/.
 * Returns 1 with *msg set (the caller destroys it), 0 when nothing can be taken,
 * RS_ERR on error. Corrupt files met on the way are moved and reported. The move to
 * active/ is not fsync'd: after a crash, active/ goes back to incoming/ anyway. */
int spool_take(spool *self, const char *const *busy, size_t n_busy, spool_msg **msg, errbuf *err);

/* The moves of a taken message (done, defer, postpone, kill) change m as they
 * change its file, and leave it as it was when they fail. Its id, key and body
 * stay where they are either way: callers log them after the move. */

/* active/ → done/ (its mtime is the time of delivery, for spool_prune_done). */
int spool_done(spool *self, spool_msg *m, errbuf *err);

/* active/ → deferred/, rewritten with attempts+1, due time and last error. */
int spool_defer(spool *self, spool_msg *m, time_t due, const char *error, errbuf *err);

/* active/ → deferred/ like spool_defer, but without counting an attempt: the
 * delivery could not even be tried (what it needs, such as the database, is
 * down), so that an outage does not use up max_attempts. */
int spool_postpone(spool *self, spool_msg *m, time_t due, const char *error, errbuf *err);

/* active/ → dead/, rewritten with died-at and the reason. `error` is the failure of
 * the attempt just made (counted: attempts+1, last-error), or NULL when the message
 * dies without a new attempt (malformed body, say). */
int spool_kill(spool *self, spool_msg *m, const char *error, const char *reason, errbuf *err);

/* Moves deferred messages due at `now` or before back to incoming/. Returns how many
 * (RS_ERR on error); *next_due (may be NULL) is the earliest due time still
 * deferred, 0 when none is. */
int spool_wake(spool *self, time_t now, time_t *next_due, errbuf *err);

/* Start-up after a crash: removes half-written files of dead processes from tmp/,
 * keeps one copy of a message a power cut left in two state folders, moves active/ back to
 * incoming/, verifies every file of every state and moves bad ones to corrupt/. Call it before the
 * worker's threads use the spool. `report` may be NULL. Returns RS_OK or RS_ERR. */
int spool_recover(spool *self, spool_recovery *report, errbuf *err);

/* dead/ → incoming/ with attempts reset to 0 and a history line recording the
 * death; id NULL redrives all. Returns how many, or RS_ERR (an id that is not in
 * dead/ is an error). */
int spool_redrive(spool *self, const char *id, errbuf *err);

/* Deletes messages delivered (moved to done/) more than `age` seconds ago.
 * Returns how many, or RS_ERR. */
int spool_prune_done(spool *self, time_t age, errbuf *err);

/* Inspection (restockctl; safe while the worker runs). */

/* Number of files in a state folder, or RS_ERR. */
long spool_count(spool *self, enum spool_state state, errbuf *err);

/* Calls fn for every file of a state, oldest first (created, then id). Returns
 * RS_OK, RS_ERR, or what a callback returned to stop. */
int spool_each(spool *self, enum spool_state state, spool_each_fn *fn, void *arg, errbuf *err);

/* The file names of a state, in spool_each's order, collected before the caller
 * acts on them (a redrive or a move changes the folder a walk reads). */
struct spool_names {
    char **v;
    size_t n, cap;
};

/* Collects them into *names (zeroed first); RS_ERR with err. The caller clears it
 * with spool_names_clear, either way. */
int spool_names_of(spool *self, enum spool_state state, struct spool_names *names, errbuf *err);
void spool_names_clear(struct spool_names *names);

/* Reads message `id` from whatever state it is in (spool_msg_state tells).
 * Returns 1 with *msg set, 0 when there is no such message, RS_ERR on error (a
 * corrupt file is an error here; it is not moved). */
int spool_get(spool *self, const char *id, spool_msg **msg, errbuf *err);

/* Created time of the oldest message waiting (incoming/, deferred/, or in flight in
 * active/: not delivered yet), 0 when none is; RS_ERR on error. */
int spool_oldest_waiting(spool *self, time_t *created, errbuf *err);
/* The same, leaving out messages whose id begins with `except` (NULL: none). */
int spool_oldest_waiting_except(spool *self, const char *except, time_t *created, errbuf *err);

#endif
