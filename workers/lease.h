/* lease: this worker's hold on its worker_id and on the leases of its claims
 * (docs/design.md §4.10), kept by a thread of its own on a database connection
 * of its own, so that no slow statement of the sweeps (the main loop's
 * connection) can starve it:
 *
 *   - at start it registers the worker_id (table worker_registration, sql/011):
 *     a new row, or one whose lease passed (its last holder stopped or died); a
 *     row a live worker keeps renewing refuses the start;
 *   - every third of lease_time it renews the registration, then its claims'
 *     leases (claim_renew); its statements time out after lease_time / 6 (at
 *     most db_timeout), so that a hung one is given up and tried again on a new
 *     connection well before the lease passes;
 *   - at a clean stop it gives the registration back: a restart is not kept
 *     waiting. After a crash the next start waits until the lease passes.
 *
 * Every time is the database's UTC clock. The deliveries' claim checks require
 * the registration (claim.h); the sweep asks lease_held. */
#ifndef RESTOCK_LEASE_H
#define RESTOCK_LEASE_H

#include <signal.h>

#include "claim.h"
#include "conf.h"
#include "errbuf.h"

typedef struct lease lease;

/* Starts the thread, which registers owner (the worker's claim_owner_of).
 * NULL with err when the thread cannot start. cf must outlive the lease. */
lease *lease_new(const conf *cf, const char *owner, errbuf *err);
/* Stops the thread (a registration held is given back). */
void lease_destroy(lease **self_p);

/* Waits for the registration at start: RS_OK once it is held, or at once when
 * the database does not answer (the thread registers once it does: until then
 * nothing is claimed or delivered); RS_ERR with err when a live worker holds the
 * worker_id, or when *stop is set meanwhile. A worker that crashed is waited
 * for until its lease passes (at most lease_time). */
int lease_start_wait(lease *self, const volatile sig_atomic_t *stop, errbuf *err);

/* 1 while the registration is surely this process's: renewed less than
 * lease_time ago, counted from when the renewal was sent (the database's lease
 * ends lease_time after it ran, which is later). The sweep claims nothing
 * otherwise. */
int lease_held(const lease *self);

/* 1 (err says why) when the worker must stop: another process registered the
 * worker_id (this one's lease had lapsed), or found a live holder after a start
 * made while the database was down. */
int lease_lost(lease *self, errbuf *err);

/* The renewal's period and statement timeout, in milliseconds and seconds, of
 * a lease_time and a db_timeout (seconds): lease_time / 3, and lease_time / 6
 * (at least 1, at most db_timeout). */
long lease_period_ms(long lease_time);
unsigned lease_statement_timeout(long lease_time, long db_timeout);

#endif
