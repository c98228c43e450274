/* Unit test of queue: backoff bounds, and delivery threads over a real spool with
 * a driver whose outcomes the test chooses: done, deferred with attempts and
 * error, dead after max_attempts with the dead hook called, dead at once, dead
 * when the queue lifetime has passed; a wait the driver names (a Retry-After)
 * honoured within the lifetime; claims checked before each attempt (held:
 * delivered, lost: dropped unsent, unknown: postponed); and queue_new failing
 * when a thread cannot start. */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "queue.h"
#include "tap.h"

static int dead_calls;

static int
fake_init(const conf *cf, void **state, errbuf *err)
{
    *state = NULL;
    return RS_OK;
}

static void
fake_fini(void *state)
{
}

/* The body says what to answer: "done", "retry" or "permanent". */
static enum queue_outcome
fake_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    const char *body = spool_msg_body(msg);

    if (strcmp(body, "done") == 0)
        return QUEUE_DONE;
    if (strcmp(body, "blocked") == 0) {
        errbuf_set(err, "database down");
        return QUEUE_BLOCKED;
    }
    if (strcmp(body, "retry") == 0) {
        errbuf_set(err, "peer said 500");
        return QUEUE_RETRY;
    }
    errbuf_set(err, "peer said 400");
    return QUEUE_PERMANENT;
}

static void
fake_dead(void *state, const spool_msg *msg, const char *reason)
{
    __atomic_add_fetch(&dead_calls, 1, __ATOMIC_SEQ_CST);
}

/* The dead hook's count once it reaches want (or after 10 s): the queue moves a
 * message to dead/ before it calls the hook, so that a test that saw the file
 * there waits for the call. */
static int
dead_calls_reach(int want)
{
    for (int i = 0; i < 1000 && __atomic_load_n(&dead_calls, __ATOMIC_SEQ_CST) < want; i++)
        usleep(10000);
    return __atomic_load_n(&dead_calls, __ATOMIC_SEQ_CST);
}

static const struct queue_driver fake = {"fake", fake_init, fake_fini, fake_deliver, fake_dead,
                                         NULL,   NULL,      NULL,      NULL};

/* Every second thread cannot start (its SMTP client, say). */
static int
failing_init(const conf *cf, void **state, errbuf *err)
{
    static int calls;

    *state = NULL;
    if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) % 2 == 0)
        return errbuf_set(err, "no SMTP client today");
    return RS_OK;
}

static const struct queue_driver failing = {
    "failing", failing_init, fake_fini, fake_deliver, fake_dead, NULL, NULL, NULL, NULL};

/* Retried until its lifetime (factory_lifetime, set by the test) has passed. */
static const struct queue_driver mortal = {
    "mortal", fake_init, fake_fini, fake_deliver, fake_dead, "factory_lifetime", NULL, NULL, NULL};

/* A driver that names its wait (a peer's Retry-After): 1234 s. */
static long
named_retry_in(void *state)
{
    return 1234;
}

static const struct queue_driver named = {"named", fake_init, fake_fini, fake_deliver,  fake_dead,
                                          NULL,    NULL,      NULL,      named_retry_in};
static const struct queue_driver named_mortal = {"named_mortal", fake_init, fake_fini,
                                                 fake_deliver,   fake_dead, "factory_lifetime",
                                                 NULL,           NULL,      named_retry_in};

/* Claims (workers/claim.h) as the test decides: a message's claim epoch 1 is
 * still ours, 2 is lost to another worker, 3 cannot be checked (the database). */
static int delivered_calls, ended_calls;

static enum queue_outcome
fenced_deliver(void *state, const spool_msg *msg, errbuf *err)
{
    __atomic_add_fetch(&delivered_calls, 1, __ATOMIC_SEQ_CST);
    return fake_deliver(state, msg, err);
}

static int
fenced_owns(void *state, const spool_msg *msg, errbuf *err)
{
    if (spool_msg_claim(msg) == 1)
        return 1;
    if (spool_msg_claim(msg) == 2) {
        errbuf_set(err, "claim=\"other epoch 3\"");
        return 0;
    }
    return errbuf_set(err, "database: down");
}

static void
fenced_ended(void *state, const spool_msg *msg)
{
    __atomic_add_fetch(&ended_calls, 1, __ATOMIC_SEQ_CST);
}

static const struct queue_driver fenced = {"fenced",       fake_init,    fake_fini,
                                           fenced_deliver, fake_dead,    NULL,
                                           fenced_owns,    fenced_ended, NULL};

/* Waits up to 10 s for the state of id; returns the message or NULL. */
static spool_msg *
wait_state(spool *sp, const char *id, enum spool_state want)
{
    errbuf err;
    for (int i = 0; i < 1000; i++) {
        spool_msg *m = NULL;
        if (spool_get(sp, id, &m, &err) == 1) {
            if (spool_msg_state(m) == want)
                return m;
            spool_msg_destroy(&m);
        }
        usleep(10000);
    }
    return NULL;
}

int
main(void)
{
    char dir[] = "/tmp/queue_test.XXXXXX";
    errbuf err = {{0}};
    spool *sp;
    queue *q;
    conf *cf;
    spool_msg *m;
    int in_range = 1;

    for (int i = 0; i < 1000; i++) {
        long b1 = queue_backoff(1, 5, 300), b3 = queue_backoff(3, 5, 300);
        long b9 = queue_backoff(9, 5, 300);
        in_range = in_range && b1 >= 2 && b1 <= 5 && b3 >= 10 && b3 <= 20 && b9 >= 150 && b9 <= 300;
    }
    ok(in_range, "backoff doubles from min, capped at max, jitter takes off at most half");
    is_int(queue_backoff(4, 0, 300), 0, "no backoff when min is 0");

    ok(mkdtemp(dir) != NULL, "temporary spool folder");
    setenv("RESTOCK_MAX_ATTEMPTS", "3", 1);
    setenv("RESTOCK_BACKOFF_MIN", "0", 1);
    setenv("RESTOCK_BACKOFF_MAX", "0", 1);
    cf = conf_new("/dev/null", &err);
    sp = spool_new(dir, "fake", &err);
    ok(cf != NULL && sp != NULL, "configuration and spool");
    q = queue_new(cf, sp, &fake, 3, &err);
    ok(q != NULL, "three delivery threads start");

    spool_put(sp, "m-done", NULL, "done", 4, &err);
    spool_put(sp, "m-retry", NULL, "retry", 5, &err);
    spool_put(sp, "m-perm", NULL, "permanent", 9, &err);
    spool_put(sp, "m-blocked", NULL, "blocked", 7, &err);
    queue_kick(q);

    for (int round = 0; round < 5; round++) {
        time_t next;
        m = wait_state(sp, "m-blocked", SPOOL_DEFERRED);
        if (m == NULL)
            break;
        if (round == 4)
            ok(spool_msg_attempts(m) == 0 && spool_msg_last_error(m) &&
                   strstr(spool_msg_last_error(m), "database down"),
               "blocked 5 times (more than max_attempts): still deferred, 0 attempts counted");
        spool_msg_destroy(&m);
        spool_wake(sp, time(NULL) + 2, &next, &err);
        queue_kick(q);
    }

    m = wait_state(sp, "m-done", SPOOL_DONE);
    ok(m != NULL, "a delivered message is in done/");
    spool_msg_destroy(&m);

    m = wait_state(sp, "m-perm", SPOOL_DEAD);
    ok(m != NULL && spool_msg_attempts(m) == 1, "a permanent failure is dead at once, 1 attempt");
    ok(m && spool_msg_death_reason(m) && strstr(spool_msg_death_reason(m), "permanent"),
       "its death reason says permanent");
    spool_msg_destroy(&m);

    /* Deferred with backoff 0: due at once; the worker's main loop wakes deferred
     * messages, here the test does. */
    for (int round = 0; round < 3; round++) {
        time_t next;
        m = wait_state(sp, "m-retry", round < 2 ? SPOOL_DEFERRED : SPOOL_DEAD);
        if (m == NULL)
            break;
        if (round < 2) {
            ok(spool_msg_attempts(m) == round + 1 && spool_msg_last_error(m) &&
                   strstr(spool_msg_last_error(m), "peer said 500"),
               "retry %d: deferred with its attempt count and last error", round + 1);
            spool_wake(sp, time(NULL) + 1, &next, &err);
            queue_kick(q);
        } else {
            ok(spool_msg_attempts(m) == 3, "after max_attempts (3) the message is dead");
            ok(spool_msg_death_reason(m) && strstr(spool_msg_death_reason(m), "max_attempts"),
               "its death reason names max_attempts: %s",
               spool_msg_death_reason(m) ? spool_msg_death_reason(m) : "(none)");
        }
        spool_msg_destroy(&m);
    }
    is_int(dead_calls_reach(2), 2, "the dead hook ran for both deaths");

    queue_destroy(&q);
    ok(q == NULL, "destroy stops the threads and clears the pointer");
    conf_destroy(&cf);

    /* No attempt limit (the default): within its lifetime a message is retried
     * past the old limit of 5 attempts. */
    setenv("RESTOCK_MAX_ATTEMPTS", "0", 1);
    setenv("RESTOCK_FACTORY_LIFETIME", "3600", 1);
    cf = conf_new("/dev/null", &err);
    q = cf ? queue_new(cf, sp, &mortal, 1, &err) : NULL;
    ok(q != NULL, "a queue with a lifetime starts");
    spool_put(sp, "m-long", NULL, "retry", 5, &err);
    queue_kick(q);
    for (int round = 0; round < 8; round++) {
        time_t next;
        m = wait_state(sp, "m-long", SPOOL_DEFERRED);
        if (m == NULL || spool_msg_attempts(m) != round + 1)
            break;
        spool_msg_destroy(&m);
        if (round < 7) {
            spool_wake(sp, time(NULL) + 1, &next, &err);
            queue_kick(q);
        }
    }
    m = NULL;
    ok(spool_get(sp, "m-long", &m, &err) == 1 && spool_msg_state(m) == SPOOL_DEFERRED &&
           spool_msg_attempts(m) == 8,
       "8 transient failures within the lifetime: still deferred, not dead");
    spool_msg_destroy(&m);
    queue_destroy(&q);
    conf_destroy(&cf);

    /* A lifetime of 1 s: retried until it has passed, then dead. */
    setenv("RESTOCK_FACTORY_LIFETIME", "1", 1);
    cf = conf_new("/dev/null", &err);
    q = cf ? queue_new(cf, sp, &mortal, 1, &err) : NULL;
    spool_put(sp, "m-mortal", NULL, "retry", 5, &err);
    queue_kick(q);
    /* Both messages are older than 1 s in the end: wake them until both are dead
     * (m-long, woken too, is older than the new lifetime). */
    m = NULL;
    for (int i = 0; i < 1000; i++) {
        spool_msg *other = NULL;
        time_t next;
        int both =
            spool_get(sp, "m-long", &other, &err) == 1 && spool_msg_state(other) == SPOOL_DEAD;
        spool_msg_destroy(&other);
        if (m == NULL && spool_get(sp, "m-mortal", &m, &err) == 1 &&
            spool_msg_state(m) != SPOOL_DEAD)
            spool_msg_destroy(&m);
        if (both && m != NULL)
            break;
        spool_wake(sp, time(NULL) + 1, &next, &err);
        queue_kick(q);
        usleep(20000);
    }
    ok(m != NULL, "a lifetime of 1 s: the message is dead");
    ok(m && spool_msg_death_reason(m) &&
           strstr(spool_msg_death_reason(m),
                  "queue lifetime of 1 s passed; last error: peer said 500"),
       "its death reason names the lifetime and the last error: %s",
       m && spool_msg_death_reason(m) ? spool_msg_death_reason(m) : "(none)");
    ok(m && spool_msg_created(m) + 1 <= spool_msg_died_at(m),
       "it died once the lifetime had passed");
    spool_msg_destroy(&m);
    is_int(dead_calls_reach(4), 4, "the dead hook ran for both");
    queue_destroy(&q);

    /* Claims: checked before each attempt; a lost one is dropped to done/ unsent,
     * one that cannot be checked waits (not counted), a held one is delivered and
     * its end marked; a message without a claim is delivered unchecked. */
    {
        spool_item items[4] = {{"c-held", NULL, "done", 4, 0, 1},
                               {"c-lost", NULL, "done", 4, 0, 2},
                               {"c-down", NULL, "done", 4, 0, 3},
                               {"c-none", NULL, "permanent", 9, 0, 0}};
        dead_calls = 0;
        is_int(spool_put_batch(sp, items, 4, &err), 4, "four messages, three with a claim epoch");
        q = queue_new(cf, sp, &fenced, 2, &err);
        ok(q != NULL, "a queue whose driver checks claims");
        queue_kick(q);
        m = wait_state(sp, "c-held", SPOOL_DONE);
        ok(m && spool_msg_claim(m) == 1, "a claim still held: delivered, the epoch kept");
        spool_msg_destroy(&m);
        m = wait_state(sp, "c-lost", SPOOL_DONE);
        ok(m != NULL && spool_msg_attempts(m) == 0, "a claim lost: dropped to done/, no attempt");
        spool_msg_destroy(&m);
        m = wait_state(sp, "c-down", SPOOL_DEFERRED);
        ok(m && spool_msg_attempts(m) == 0 && spool_msg_last_error(m) &&
               strstr(spool_msg_last_error(m), "database"),
           "a claim that cannot be checked: postponed, not counted, saying why");
        spool_msg_destroy(&m);
        m = wait_state(sp, "c-none", SPOOL_DEAD);
        ok(m != NULL, "a message without a claim: delivered unchecked (here: dead at once)");
        spool_msg_destroy(&m);
        queue_destroy(&q);
        is_int(__atomic_load_n(&delivered_calls, __ATOMIC_SEQ_CST), 2,
               "delivered: the held claim and the unclaimed message, never the others");
        is_int(__atomic_load_n(&ended_calls, __ATOMIC_SEQ_CST), 1,
               "the end is marked for the held claim only (the unclaimed one has none)");
    }

    /* A wait the driver names (retry_in): a retry and a postponement are due
     * then, not after the backoff (0 here); never past the lifetime. */
    {
        time_t before = time(NULL);
        q = queue_new(cf, sp, &named, 1, &err);
        spool_put(sp, "n-retry", NULL, "retry", 5, &err);
        spool_put(sp, "n-blocked", NULL, "blocked", 7, &err);
        queue_kick(q);
        m = wait_state(sp, "n-retry", SPOOL_DEFERRED);
        ok(m && spool_msg_attempts(m) == 1 && spool_msg_due(m) >= before + 1234 &&
               spool_msg_due(m) <= time(NULL) + 1234,
           "a retry whose wait the driver names (1234 s) is due then, one attempt counted");
        spool_msg_destroy(&m);
        m = wait_state(sp, "n-blocked", SPOOL_DEFERRED);
        ok(m && spool_msg_attempts(m) == 0 && spool_msg_due(m) >= before + 1234 &&
               spool_msg_due(m) <= time(NULL) + 1234,
           "a postponement whose wait the driver names is due then, not counted");
        spool_msg_destroy(&m);
        queue_destroy(&q);
        setenv("RESTOCK_FACTORY_LIFETIME", "600", 1);
        conf_destroy(&cf);
        cf = conf_new("/dev/null", &err);
        q = cf ? queue_new(cf, sp, &named_mortal, 1, &err) : NULL;
        spool_put(sp, "n-mortal", NULL, "retry", 5, &err);
        queue_kick(q);
        m = wait_state(sp, "n-mortal", SPOOL_DEFERRED);
        ok(m && spool_msg_due(m) == spool_msg_created(m) + 600,
           "a named wait past the lifetime (600 s) is cut to the lifetime's end");
        spool_msg_destroy(&m);
        queue_destroy(&q);
    }

    /* A thread whose thread_init fails: queue_new fails with its error, and stops
     * the threads that did start. */
    err.msg[0] = '\0';
    q = queue_new(cf, sp, &failing, 4, &err);
    ok(q == NULL, "queue_new fails when a thread cannot start");
    ok(strstr(err.msg, "failing queue") && strstr(err.msg, "no SMTP client today"),
       "its error names the queue and the thread's error: %s", err.msg);

    spool_destroy(&sp);
    conf_destroy(&cf);
    {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        ok(system(cmd) == 0, "clean up");
    }
    return done_testing();
}
