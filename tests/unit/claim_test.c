/* Unit test of claim's pure parts: the worker's name in the claims (worker_id, or
 * the default made of the machine's id, the host and the spool), the spool id of a message under an
 * epoch and the event read back from it, the queue names. The claims themselves (SQL) are tested on
 * the real database by tests/integration/workers_lease.py. */
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

    /* Two machines cloned from one image keep one host name: their default
     * names must still differ, by their machine ids (issue 18, item 7). */
    {
        char a[CLAIM_OWNER_MAX], b[CLAIM_OWNER_MAX], again[CLAIM_OWNER_MAX];
        claim_owner_derive("3d1219c7c4c5404aaa1f6d2a48adfda4", "shop", "/var/spool/restock", a);
        claim_owner_derive("9b0e5f1c2d3a4b5c6d7e8f9012345678", "shop", "/var/spool/restock", b);
        claim_owner_derive("3d1219c7c4c5404aaa1f6d2a48adfda4", "shop", "/var/spool/restock", again);
        ok(strcmp(a, b) != 0, "one host name, two machine ids: two default worker_ids (%s, %s)", a,
           b);
        is_str(a, again, "the same machine: the same default worker_id at every start");
        ok(strncmp(a, "shop#", 5) == 0 &&
               strlen(a) == strlen("shop#:/var/spool/restock") + 2 * CLAIM_MACHINE_HASH,
           "it reads host#hash:spool_dir (%s)", a);
        ok(strstr(a, "3d1219c7") == NULL, "the machine id itself is not shown");
        claim_owner_derive(NULL, "shop", "/var/spool/restock", a);
        is_str(a, "shop:/var/spool/restock", "no machine id: the host name and spool_dir");
    }

    unsetenv("RESTOCK_WORKER_ID");
    setenv("RESTOCK_SPOOL_DIR", "/var/spool/restock-b", 1);
    cf = conf_new("/dev/null", &err);
    ok(cf != NULL, "configuration");
    {
        int unique = claim_owner_of(cf, owner);
        gethostname(host, sizeof(host) - 1);
        snprintf(want, sizeof(want), "%s%s", host, unique ? "#" : ":");
        ok(strncmp(owner, want, strlen(want)) == 0 &&
               strcmp(owner + strlen(owner) - strlen(":/var/spool/restock-b"),
                      ":/var/spool/restock-b") == 0,
           "no worker_id: the host name, the machine's hash (when it has an id) and spool_dir "
           "(%s)",
           owner);
    }
    conf_destroy(&cf);
    setenv("RESTOCK_WORKER_ID", "shop-worker-2", 1);
    cf = conf_new("/dev/null", &err);
    claim_owner_of(cf, owner);
    is_str(owner, "shop-worker-2", "worker_id names the worker");
    conf_destroy(&cf);
    return done_testing();
}
