/* claim: the claims of outbox work (table outbox_claim, sql/009), so that several
 * workers, each with its own spool, share one database and never both deliver
 * the same message (docs/design.md §4.10).
 *
 * The unit of a claim is (event, queue): a stock_empty event is two claims, its
 * factory order and its ad-pause email. A claim has an owner (the worker's
 * worker_id), a fencing epoch and a lease:
 *
 *   - the sweep claims events not yet claimed (SELECT … FOR UPDATE SKIP LOCKED on
 *     outbox, then INSERT IGNORE of the claim rows: the row is the claim, so two
 *     sweeps racing, on one server or on two Galera nodes, cannot both win), and
 *     claims whose lease passed (FOR UPDATE SKIP LOCKED on outbox_claim, then an
 *     UPDATE guarded by the epoch it read). Taking over another owner's claim
 *     increments the epoch; an owner taking back its own expired claim keeps it,
 *     since its spool message is the same message;
 *   - the message carries the epoch (spool_msg_claim); before every delivery
 *     attempt claim_check renews the lease under `owner = ? AND epoch = ?` (1 row:
 *     still ours), and the delivery's end is claim_done under the same guard;
 *   - the worker renews the leases of what it holds (claim_renew), every third of
 *     lease_time, on a thread and a connection of its own (lease.h); a lease
 *     already passed is not renewed: that claim is taken again by a sweep (its
 *     own, or another worker's), which re-derives its message;
 *   - every time is UTC from the database's clock (UTC_TIMESTAMP), never a
 *     session's local time nor the worker's clock (sql/011);
 *   - a delivery's check also requires the worker_id to be registered to this
 *     process, unexpired (table worker_registration, lease.h): two processes
 *     with one worker_id, whom the owner column cannot tell apart, never both
 *     deliver.
 *
 * A claim object keeps prepared statements on the caller's db: one per
 * connection, used by that connection's thread. */
#ifndef RESTOCK_CLAIM_H
#define RESTOCK_CLAIM_H

#include <stddef.h>

#include "conf.h"
#include "db.h"
#include "errbuf.h"
#include "ident.h"

#define CLAIM_OWNER_MAX 256 /* worker_id, NUL included (the column is VARCHAR(255)) */

/* The queues an event fans out into, as claimed. */
enum claim_queue { CLAIM_FACTORY, CLAIM_MAIL, CLAIM_NQUEUES };

/* The queue called `name` ("factory", "mail"), or -1. */
int claim_queue_parse(const char *name);

/* This worker's name in the claims: worker_id, or when empty the default
 * claim_owner_derive makes of this machine's id (/etc/machine-id, else
 * /var/lib/dbus/machine-id), its host name and spool_dir. Returns 1 when the
 * name is worker_id or carries the machine's id, 0 when no machine id could be
 * read (the name is then the host name and spool_dir only: two hosts of one
 * name would share it, and the second is refused at start, lease.h). */
int claim_owner_of(const conf *cf, char out[CLAIM_OWNER_MAX]);

/* The default worker_id of a machine: "<host>#<hash>:<spool_dir>", hash 12 hex
 * digits of a keyed BLAKE2b of machine_id (the id itself is not shown), so that
 * two machines with one host name differ; machine_id NULL or empty:
 * "<host>:<spool_dir>". Cut to CLAIM_OWNER_MAX - 1 bytes. */
#define CLAIM_MACHINE_HASH 6
void claim_owner_derive(const char *machine_id, const char *host, const char *spool_dir,
                        char out[CLAIM_OWNER_MAX]);

/* This process's instance (IDENT_BYTES random bytes, the same for every thread
 * and for the process's life): which process holds the worker_id's
 * registration. libsodium must be initialised. */
const unsigned char *claim_instance(void);

/* The spool id of the message of an event made under `epoch`: the event id at
 * epoch 1 (as before claims existed), "<event id>.<epoch>" after a takeover, so
 * that a message re-derived by a new owner is never mistaken for an older copy
 * its spool may still hold. claim_event_of_id: the event id back (the id up to
 * its first '.'), into out (IDENT_TEXT bytes); RS_ERR when it is not one. */
void claim_message_id(const char *event_text, long long epoch, char *out, size_t size);
int claim_event_of_id(const char *id, char out[IDENT_TEXT]);

typedef struct claim claim;

/* conn stays the caller's; owner is copied; lease_time in seconds. */
claim *claim_new(db *conn, const char *owner, long lease_time, errbuf *err);
void claim_destroy(claim **self_p);
const char *claim_owner(const claim *self);

/* One event claimed by a sweep: the queues claimed (epoch > 0) and, for each, the
 * epoch its message carries. fresh: the event was not claimed before (this sweep
 * inserted its claims); else these are claims taken over, or taken back.
 * untaken: every claim of the event has ended (its messages were delivered) but
 * the event was never marked taken: the sweep that claimed it was cut off between
 * its put and its take (a crash, a power cut), or is still between them. No queue
 * is claimed (epochs 0): only the take, and the ad's status with it, is left. */
struct claim_work {
    unsigned char event[IDENT_BYTES];
    char event_text[IDENT_TEXT];
    long long epoch[CLAIM_NQUEUES];
    int fresh;
    int untaken;
};

/* One short transaction: claims up to max events not yet claimed (oldest first)
 * and, in the room left, claims whose lease has passed. Returns how many events
 * it filled in, or RS_ERR (nothing was claimed). A transaction that lost to
 * another claimer (a deadlock, or at commit Galera's certification failure:
 * rolled back by the database, db_retryable) claims nothing and returns 0: the winner has that
 * work, the next sweep claims the rest. */
int claim_take(claim *self, struct claim_work *out, size_t max, errbuf *err);

/* Gives back a claim this worker holds (its lease ends now): the next sweep, its
 * own or another worker's, takes it again and re-derives its message. For a
 * message that could not be written to the spool. */
int claim_release(claim *self, const unsigned char *event, enum claim_queue q, long long epoch,
                  errbuf *err);

/* Forgets this worker's open claims of an event (an event whose order cannot be
 * found is left waiting, as before claims: it is claimed again as new). */
int claim_forget(claim *self, const unsigned char *event, errbuf *err);

/* One open claim this worker holds. */
struct claim_held {
    unsigned char event[IDENT_BYTES];
    char event_text[IDENT_TEXT];
    enum claim_queue queue;
    long long epoch;
};

/* Every open claim this worker holds (at start: those whose message its spool
 * no longer has are given back with claim_release), malloc'd (free it), *n of
 * them; NULL with err set on failure. */
struct claim_held *claim_held_list(claim *self, size_t *n, errbuf *err);

/* Renews the lease of every unexpired claim this worker holds, but for those
 * another transaction holds locked (a sweep of this worker in progress, a
 * delivery's check: they cannot be taken over meanwhile), in one transaction.
 * Returns how many, or RS_ERR. */
long long claim_renew(claim *self, errbuf *err);

/* Before a delivery attempt of the message of (event_text, queue) made under
 * epoch: renews its lease if this worker still holds that claim (a redriven
 * message opens its claim again) and its worker_id is registered to this
 * process, unexpired. Returns 1 (still ours: deliver), 0 (lost: *now says who
 * holds it, "owner epoch N", or "none"), or RS_ERR (the database failed, or the
 * claim is ours but the registration is not held now: nothing may be sent, the
 * delivery waits). */
int claim_check(claim *self, const char *event_text, enum claim_queue q, long long epoch, char *now,
                size_t now_size, errbuf *err);

/* The delivery ended (sent, or dead): nobody takes the claim over. 1, 0 (not
 * ours any more), or RS_ERR. */
int claim_done(claim *self, const char *event_text, enum claim_queue q, long long epoch,
               errbuf *err);

#endif
