/* Unit tests of lib/combiner: a lone caller runs at once in its own thread; the
 * callers who arrive while a batch is in flight go together into the next batch,
 * in arrival order, led by the first of them; other keys are not held up; every
 * caller returns after its own batch; the batch sizes are counted; the first
 * caller to queue gets ready ahead (combiner_submit_ahead), and a wake-up while it
 * does is not lost. */
#include "config.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "combiner.h"
#include "tap.h"

#define CALLERS 6

struct job {
    combiner_item item; /* first: the batch's items are jobs */
    int id;
    int done;         /* set by the batch that ran it */
    int position;     /* its place in that batch */
    int batch_no;     /* which batch (1, 2, …) */
    pthread_t leader; /* the thread that ran it */
};

/* The run function's world: a gate the first batch waits at, what was seen. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open = 1, at_gate;
static int batches_run;
static size_t sizes_run[16];

static void
run_batch(void *ctx, combiner_item *batch, size_t n)
{
    int no;
    int pos = 0;

    (void)ctx;
    pthread_mutex_lock(&gate_lock);
    no = ++batches_run;
    if (no <= 16)
        sizes_run[no - 1] = n;
    at_gate++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    at_gate--;
    pthread_mutex_unlock(&gate_lock);
    for (combiner_item *it = batch; it != NULL; it = it->next) {
        struct job *j = (struct job *)it;
        j->done = 1;
        j->position = pos++;
        j->batch_no = no;
        j->leader = pthread_self();
    }
}

static combiner *shared;

struct caller {
    pthread_t id;
    struct job job;
    const char *key;
    int returned_done; /* the job was done when submit returned */
};

static void *
caller_main(void *arg)
{
    struct caller *c = arg;

    combiner_submit(shared, &c->job.item, c->key, run_batch, NULL);
    c->returned_done = c->job.done;
    return NULL;
}

static void
wait_at_gate(int n)
{
    pthread_mutex_lock(&gate_lock);
    while (at_gate < n)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void
set_gate(int open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void
wait_waiting(const char *key, size_t n)
{
    struct timespec pause = {0, 1000 * 1000};

    while (combiner_waiting(shared, key) < n)
        nanosleep(&pause, NULL);
}

static void
test_alone(void)
{
    struct job j;
    struct combiner_stats st;

    memset(&j, 0, sizeof(j));
    batches_run = 0;
    combiner_submit(shared, &j.item, "A", run_batch, NULL);
    ok(j.done, "a lone caller's work has run when submit returns");
    ok(pthread_equal(j.leader, pthread_self()), "in the caller's own thread");
    is_int(sizes_run[0], 1, "as a batch of one");
    is_int(combiner_waiting(shared, "A"), 0, "nothing is left waiting");
    combiner_stats(shared, &st);
    is_int(st.batches, 1, "one batch counted");
    is_int(st.sizes[0], 1, "of size 1");
}

static void
test_batch(void)
{
    struct caller c[CALLERS], other;
    struct combiner_stats st;
    char text[128];
    int in_order = 1, same_leader = 1, all_done = 1;

    memset(c, 0, sizeof(c));
    memset(&other, 0, sizeof(other));
    memset(sizes_run, 0, sizeof(sizes_run));
    batches_run = 0;
    set_gate(0);
    /* The first caller's batch runs and is held at the gate... */
    c[0].key = "A";
    c[0].job.id = 0;
    pthread_create(&c[0].id, NULL, caller_main, &c[0]);
    wait_at_gate(1);
    /* ... while the others arrive one after the other and queue. */
    for (int i = 1; i < CALLERS; i++) {
        c[i].key = "A";
        c[i].job.id = i;
        pthread_create(&c[i].id, NULL, caller_main, &c[i]);
        wait_waiting("A", (size_t)i);
    }
    is_int(combiner_waiting(shared, "A"), CALLERS - 1, "the callers who came meanwhile wait");
    /* Another key is not held up by A's batch in flight. */
    other.key = "B";
    pthread_create(&other.id, NULL, caller_main, &other);
    wait_at_gate(2);
    ok(1, "a caller of another key runs its batch while A's is in flight");
    set_gate(1);
    for (int i = 0; i < CALLERS; i++)
        pthread_join(c[i].id, NULL);
    pthread_join(other.id, NULL);

    is_int(batches_run, 3, "three batches: A's first, B's, then A's waiting callers together");
    for (int i = 1; i < CALLERS; i++) {
        in_order = in_order && c[i].job.position == i - 1 && c[i].job.batch_no == 3;
        same_leader = same_leader && pthread_equal(c[i].job.leader, c[1].id);
        all_done = all_done && c[i].returned_done;
    }
    ok(c[0].returned_done && c[0].job.batch_no == 1, "the first caller ran alone");
    ok(in_order, "the waiting callers ran in one batch, in arrival order");
    ok(same_leader, "led by the first of them, in its thread");
    ok(all_done, "each caller returned after its batch had run");
    combiner_stats(shared, &st);
    is_int(st.max, CALLERS - 1, "the largest batch is counted");
    combiner_sizes_text(&st, text, sizeof(text));
    is_str(text, "1:3 2:0 3-4:0 5-8:1 9-16:0 17-32:0 33-64:0 65+:0",
           "the sizes as text (with the test before)");
    is_int(combiner_waiting(shared, "A"), 0, "nothing is left waiting");
}

/* combiner_submit_ahead: what the ahead function saw, and a hold on it. */
static int ahead_calls, ahead_id = -1, ahead_job_done = -1, ahead_hold, in_ahead;
static pthread_t ahead_thread;

static void
ahead_fn(void *ctx, combiner_item *item)
{
    struct job *j = (struct job *)item;

    (void)ctx;
    pthread_mutex_lock(&gate_lock);
    ahead_calls++;
    ahead_id = j->id;
    ahead_job_done = j->done;
    ahead_thread = pthread_self();
    in_ahead = 1;
    pthread_cond_broadcast(&gate_cond);
    while (ahead_hold)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void *
caller_ahead_main(void *arg)
{
    struct caller *c = arg;

    combiner_submit_ahead(shared, &c->job.item, c->key, run_batch, ahead_fn, NULL);
    c->returned_done = c->job.done;
    return NULL;
}

static void
test_ahead(void)
{
    struct caller c[4];
    int led = 1;

    memset(c, 0, sizeof(c));
    batches_run = 0;
    set_gate(0);
    pthread_mutex_lock(&gate_lock);
    ahead_hold = 1;
    pthread_mutex_unlock(&gate_lock);
    for (int i = 0; i < 4; i++) {
        c[i].key = "A";
        c[i].job.id = i;
        pthread_create(&c[i].id, NULL, caller_ahead_main, &c[i]);
        if (i == 0)
            wait_at_gate(1); /* nothing in flight: it runs at once, no ahead */
        else if (i == 1) {
            pthread_mutex_lock(&gate_lock); /* the first to queue: ahead */
            while (!in_ahead)
                pthread_cond_wait(&gate_cond, &gate_lock);
            pthread_mutex_unlock(&gate_lock);
        } else
            wait_waiting("A", (size_t)i);
    }
    /* The batch in flight ends, and wakes its next leader, while that one is still
     * in its ahead function. */
    set_gate(1);
    pthread_join(c[0].id, NULL);
    pthread_mutex_lock(&gate_lock);
    ahead_hold = 0;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    for (int i = 1; i < 4; i++) {
        pthread_join(c[i].id, NULL);
        led = led && c[i].returned_done && c[i].job.batch_no == 2 &&
              pthread_equal(c[i].job.leader, c[1].id);
    }
    is_int(ahead_calls, 1, "ahead: called once, for the first caller to queue only");
    is_int(ahead_id, 1, "ahead: that caller's item");
    ok(pthread_equal(ahead_thread, c[1].id), "ahead: in its own thread");
    is_int(ahead_job_done, 0, "ahead: before its batch ran");
    ok(led, "ahead: woken while in it, it still led the next batch, the others in it");
}

/* More keys in flight than slots: the extra caller runs alone, at once. */
static void
test_no_slot(void)
{
    combiner *small = combiner_new(1);
    struct caller first;
    struct job j;

    memset(&first, 0, sizeof(first));
    memset(&j, 0, sizeof(j));
    shared = small;
    batches_run = 0;
    set_gate(0);
    first.key = "A";
    pthread_create(&first.id, NULL, caller_main, &first);
    wait_at_gate(1);
    set_gate(1);
    /* The gate is open again: this one's batch passes while A's may still hold
     * the only slot (if A's left already, B takes it: both run at once). */
    combiner_submit(small, &j.item, "B", run_batch, NULL);
    ok(j.done, "a key beyond the slots still runs");
    pthread_join(first.id, NULL);
    ok(first.returned_done, "and the key in flight finished");
    combiner_destroy(&small);
    ok(small == NULL, "combiner_destroy clears the pointer");
}

int
main(void)
{
    shared = combiner_new(4);
    ok(shared != NULL, "combiner_new");
    test_alone();
    test_batch();
    test_ahead();
    combiner_destroy(&shared);
    test_no_slot();
    return done_testing();
}
