/* Unit test of claim's pure parts: the worker's name in the claims (worker_id, or
 * host and spool), the spool id of a message under an epoch and the event read back
 * from it, the queue names. The claims themselves (SQL) are tested on the real
 * database by tests/integration/workers_lease.py. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "claim.h"
#include "tap.h"

#define EVENT "3f0c2a9e-1b2c-4d5e-8f90-0123456789ab"

int
main(void)
{
    errbuf err = {{0}};
    char id[IDENT_TEXT + 24], event[IDENT_TEXT], owner[CLAIM_OWNER_MAX], host[256] = "", want[600];
    conf *cf;

    claim_message_id(EVENT, 1, id, sizeof(id));
    is_str(id, EVENT, "epoch 1: the message is named by its event, as before claims");
    claim_message_id(EVENT, 7, id, sizeof(id));
    is_str(id, EVENT ".7", "a takeover's epoch: the event and the epoch");
    ok(claim_event_of_id(id, event) == RS_OK && strcmp(event, EVENT) == 0,
       "the event read back from a taken-over message's id");
    ok(claim_event_of_id(EVENT, event) == RS_OK && strcmp(event, EVENT) == 0,
       "and from an epoch-1 id");
    ok(claim_event_of_id("alert-delay-factory-1", event) == RS_ERR, "an alert's id names no event");
    ok(claim_event_of_id("3f0c2a9e-1b2c-4d5e-8f90-0123456789zz.2", event) == RS_ERR,
       "nor does an id that is not a UUID");

    is_int(claim_queue_parse("factory"), CLAIM_FACTORY, "queue factory");
    is_int(claim_queue_parse("mail"), CLAIM_MAIL, "queue mail");
    is_int(claim_queue_parse("callback"), -1, "stored callbacks have no claims");

    unsetenv("RESTOCK_WORKER_ID");
    setenv("RESTOCK_SPOOL_DIR", "/var/spool/restock-b", 1);
    cf = conf_new("/dev/null", &err);
    ok(cf != NULL, "configuration");
    claim_owner_of(cf, owner);
    gethostname(host, sizeof(host) - 1);
    snprintf(want, sizeof(want), "%s:/var/spool/restock-b", host);
    is_str(owner, want, "no worker_id: the host name and spool_dir");
    conf_destroy(&cf);
    setenv("RESTOCK_WORKER_ID", "shop-worker-2", 1);
    cf = conf_new("/dev/null", &err);
    claim_owner_of(cf, owner);
    is_str(owner, "shop-worker-2", "worker_id names the worker");
    conf_destroy(&cf);
    return done_testing();
}
