/* dlq: every spool queue at once, and the redrive of a dead message (see dlq.h). */
#include "config.h"

#include <string.h>

#include "dlq.h"
#include "factory_msg.h"
#include "spool_msg.h"

int
dlq_open(const char *root, spool *queues[QUEUES_COUNT], errbuf *err)
{
    for (int i = 0; i < QUEUES_COUNT; i++) {
        queues[i] = spool_new(root, queues_names[i], err);
        if (queues[i] == NULL) {
            while (i-- > 0)
                spool_destroy(&queues[i]);
            return RS_ERR;
        }
    }
    return RS_OK;
}

void
dlq_close(spool *queues[QUEUES_COUNT])
{
    for (int i = 0; i < QUEUES_COUNT; i++)
        spool_destroy(&queues[i]);
}

int
dlq_find(spool *queues[QUEUES_COUNT], const char *id, spool_msg **m, int *missing, errbuf *err)
{
    if (missing != NULL)
        *missing = 1;
    if (!spool_msg_valid_id(id)) {
        errbuf_set(err, "\"%s\" is not a message id", id);
        return -1;
    }
    for (int i = 0; i < QUEUES_COUNT; i++) {
        int found = spool_get(queues[i], id, m, err);
        if (found < 0) {
            if (missing != NULL)
                *missing = 0;
            return -1;
        }
        if (found == 1)
            return i;
    }
    errbuf_set(err, "no message %s in any queue", id);
    return -1;
}

int
dlq_redrive(spool *sp, const char *id, dlq_before_fn *before, void *arg, errbuf *err)
{
    struct factory_msg_glance g = {0};
    spool_msg *m = NULL;
    int found = spool_get(sp, id, &m, err), rc = RS_OK;

    if (found <= 0)
        return found;
    if (spool_msg_state(m) != SPOOL_DEAD) {
        errbuf_set(err, "message %s is %s, not dead", id, spool_state_name(spool_msg_state(m)));
        spool_msg_destroy(&m);
        return 0;
    }
    if (strcmp(spool_queue(sp), QUEUES_FACTORY) == 0)
        factory_msg_glance(spool_msg_body(m), spool_msg_len(m), &g);
    if (before != NULL)
        rc = before(arg, spool_queue(sp), id, g.order_id, err);
    factory_msg_glance_clear(&g);
    spool_msg_destroy(&m);
    if (rc != RS_OK)
        return RS_ERR;
    if (spool_redrive(sp, id, err) < 0)
        return RS_ERR;
    return 1;
}
