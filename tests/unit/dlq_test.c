/* Unit test of dlq: every queue opened at once, a message found in whichever queue
 * holds it, and the redrive: only a dead message, only after its hook said yes,
 * with the factory message's order handed to the hook. Works in a fresh folder. */
#include "config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlq.h"
#include "spool_msg.h"
#include "tap.h"

#define ORDER "373519da-9635-4c48-804d-851e9e8f05d9"

static char root[256];

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* What the hook saw, and what it answers. */
struct seen {
    int calls, fail;
    char queue[32], id[64], order[64];
};

static int
hook(void *arg, const char *queue, const char *id, const char *order_id, errbuf *err)
{
    struct seen *s = arg;

    s->calls++;
    snprintf(s->queue, sizeof(s->queue), "%s", queue);
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->order, sizeof(s->order), "%s", order_id ? order_id : "(none)");
    return s->fail ? errbuf_set(err, "the database is down") : RS_OK;
}

/* Puts message id into q and kills it: dead/. */
static void
dead_message(spool *q, const char *id, const char *body)
{
    spool_msg *m = NULL;
    errbuf err = {{0}};

    if (spool_put(q, id, NULL, body, strlen(body), &err) < 0 ||
        spool_take(q, NULL, 0, &m, &err) != 1 || spool_kill(q, m, "refused", "permanent", &err) < 0)
        diag("making dead message %s: %s", id, err.msg);
    spool_msg_destroy(&m);
}

static enum spool_state
state_of(spool *q, const char *id)
{
    spool_msg *m = NULL;
    errbuf err = {{0}};
    enum spool_state st = spool_get(q, id, &m, &err) == 1 ? spool_msg_state(m) : SPOOL_NSTATES;

    spool_msg_destroy(&m);
    return st;
}

int
main(void)
{
    spool *queues[QUEUES_COUNT];
    spool_msg *m = NULL;
    struct seen seen = {0};
    errbuf err = {{0}};
    int missing = -1, q, factory = queues_index(QUEUES_FACTORY), mail = queues_index(QUEUES_MAIL);
    const char *fid = "2f0c9c1c-e7ed-4bf2-b1e8-7c19567e26dc", *mid = "mail-message-1";

    snprintf(root, sizeof(root), "%s/dlq_test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : ".");
    if (mkdtemp(root) == NULL) {
        perror(root);
        return 1;
    }
    ok(dlq_open(root, queues, &err) == RS_OK, "dlq_open opens every queue (%s)", err.msg);
    for (int i = 0; i < QUEUES_COUNT; i++)
        ok(queues[i] != NULL && strcmp(spool_queue(queues[i]), queues_names[i]) == 0,
           "queue %d is %s", i, queues_names[i]);

    dead_message(queues[factory], fid, "{\"order_id\":\"" ORDER "\",\"sku\":\"CP-502101\"}");
    dead_message(queues[mail], mid, "{\"template\":\"ad_pause\"}");

    q = dlq_find(queues, mid, &m, &missing, &err);
    ok(q == mail && m != NULL && strcmp(spool_msg_id(m), mid) == 0,
       "dlq_find finds the mail message in the mail queue");
    spool_msg_destroy(&m);
    q = dlq_find(queues, "no-such-message", &m, &missing, &err);
    ok(q == -1 && missing == 1 && strstr(err.msg, "no message") != NULL,
       "dlq_find: an unknown id is missing (%s)", err.msg);
    q = dlq_find(queues, "../etc/passwd", &m, &missing, &err);
    ok(q == -1 && missing == 1 && strstr(err.msg, "not a message id") != NULL,
       "dlq_find: a path is not a message id (%s)", err.msg);

    /* The hook refuses (the database is down): the message stays dead. */
    seen.fail = 1;
    err.msg[0] = '\0';
    is_int(dlq_redrive(queues[factory], fid, hook, &seen, &err), RS_ERR,
           "a refused hook fails the redrive");
    ok(seen.calls == 1 && strcmp(seen.order, ORDER) == 0 && strcmp(seen.queue, "factory") == 0 &&
           strcmp(seen.id, fid) == 0,
       "the hook was given the factory message's queue, id and order (%s)", seen.order);
    is_int(state_of(queues[factory], fid), SPOOL_DEAD, "and the message is still dead");

    seen.fail = 0;
    is_int(dlq_redrive(queues[factory], fid, hook, &seen, &err), 1, "the hook says yes: redriven");
    is_int(state_of(queues[factory], fid), SPOOL_INCOMING, "the message waits again (incoming/)");
    seen.calls = 0;
    err.msg[0] = '\0';
    is_int(dlq_redrive(queues[factory], fid, hook, &seen, &err), 0,
           "a second redrive finds it not dead");
    ok(seen.calls == 0 && strstr(err.msg, "not dead") != NULL,
       "without calling the hook, saying so (%s)", err.msg);
    err.msg[0] = '\0';
    is_int(dlq_redrive(queues[factory], mid, hook, &seen, &err), 0,
           "the factory queue does not hold the mail message");
    ok(err.msg[0] == '\0', "which is no error there");

    is_int(dlq_redrive(queues[mail], mid, hook, &seen, &err), 1, "the mail message is redriven");
    ok(strcmp(seen.order, "(none)") == 0, "its hook is given no order");

    dlq_close(queues);
    ok(queues[0] == NULL && queues[QUEUES_COUNT - 1] == NULL, "dlq_close clears them");
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
