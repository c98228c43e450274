/* expiry: the worker's thread that ends holds at their time (docs/design.md
 * §4.1 "Holds"): on a database connection of its own, it sleeps until the next
 * held hold's expires_at (at most a second: a hold made meanwhile expires 30 s
 * or more later), expires every hold then due (lib/sale: their units back on
 * the shelf, exactly once whoever races it), and deletes the holds that ended
 * more than hold_retention ago. Its state is the database's: a restart, of it
 * or of any program, expires what came due meanwhile at once. Several workers
 * may run it side by side: each hold ends once under its row lock. */
#ifndef RESTOCK_EXPIRY_H
#define RESTOCK_EXPIRY_H

#include "conf.h"
#include "errbuf.h"

typedef struct expiry expiry;

/* Starts the thread. NULL with err when it cannot start. cf must outlive it. */
expiry *expiry_new(const conf *cf, errbuf *err);
/* Stops the thread at once (a transaction in flight ends first). */
void expiry_destroy(expiry **self_p);

#endif
