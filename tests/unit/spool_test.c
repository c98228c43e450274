/* Unit test of spool: every state change is checked as the file an operator would
 * see (the folder it is in, its headers), plus idempotence, ordering, corruption
 * and recovery. Works in a fresh folder under the current directory. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"
#include "tap.h"

static char root[256];

/* ---- helpers: what an operator sees on disk ---- */

static const char *
path(const char *queue, const char *state, const char *name)
{
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];

    snprintf(p, sizeof(buf[0]), "%s/%s/%s/%s", root, queue, state, name);
    return p;
}

static int
exists(const char *queue, const char *state, const char *name)
{
    struct stat st;

    return stat(path(queue, state, name), &st) == 0;
}

/* 1 when the file in queue/state/name has the line `line` (without newline). */
static int
has_line(const char *queue, const char *state, const char *name, const char *line)
{
    char *text = tap_slurp(path(queue, state, name)), want[1200];
    int found;

    if (text == NULL)
        return 0;
    snprintf(want, sizeof(want), "\n%s\n", line);
    found = strstr(text, want) != NULL;
    free(text);
    return found;
}

/* 1 when the file in queue/state/name contains `text`. */
static int
has_text(const char *queue, const char *state, const char *name, const char *text)
{
    char *all = tap_slurp(path(queue, state, name));
    int found = all != NULL && strstr(all, text) != NULL;

    free(all);
    return found;
}

/* Files in a folder, as `ls | wc -l` would say. */
static long
count_files(const char *queue, const char *state)
{
    char dir[512];
    struct dirent *de;
    long n = 0;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s/%s/%s", root, queue, state);
    if ((d = opendir(dir)) == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

/* Corrupt files reported by the spool. */
struct reports {
    int n;
    char from[8][512], problem[8][256];
};

static void
on_corrupt(void *arg, const char *from, const char *to, const char *problem)
{
    struct reports *r = arg;

    if (r->n < 8) {
        snprintf(r->from[r->n], sizeof(r->from[0]), "%s", from);
        snprintf(r->problem[r->n], sizeof(r->problem[0]), "%s", problem);
    }
    r->n++;
}

static int
take_id(spool *sp, char *id, size_t size)
{
    errbuf err;
    spool_msg *m = NULL;
    int rc = spool_take(sp, NULL, 0, &m, &err);

    id[0] = '\0';
    if (rc == 1) {
        snprintf(id, size, "%s", spool_msg_id(m));
        spool_msg_destroy(&m);
    }
    return rc;
}

/* ---- the tests ---- */

static void
test_new(void)
{
    errbuf err;
    spool *sp = spool_new(root, "factory", &err);
    const char *states[] = {"tmp", "incoming", "active", "deferred", "dead", "done", "corrupt"};
    int all = 1;

    ok(sp != NULL, "spool_new creates a queue");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        struct stat st;
        char p[512];
        snprintf(p, sizeof(p), "%s/factory/%s", root, states[i]);
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 0777) != 0700) {
            diag("%s missing or not 0700", p);
            all = 0;
        }
    }
    ok(all, "every state folder exists with mode 0700");
    spool_destroy(&sp);
    ok(sp == NULL, "spool_destroy clears the pointer");
    sp = spool_new(root, "factory", &err);
    ok(sp != NULL, "opening an existing queue works");
    spool_destroy(&sp);

    {
        char file[300];
        FILE *f;
        snprintf(file, sizeof(file), "%s/plainfile", root);
        f = fopen(file, "w");
        fclose(f);
        sp = spool_new(file, "q", &err);
        ok(sp == NULL && strstr(err.msg, file) != NULL, "an unusable root fails naming it: %s",
           err.msg);
        ok(spool_new(root, "../escape", &err) == NULL, "a queue name with / is refused");
    }

    {
        /* A state folder replaced by a symlink (planted by the spool's owner for a
         * root restockctl) is refused, not followed. */
        char dead[300], elsewhere[300];
        snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", root);
        snprintf(dead, sizeof(dead), "%s/linked/dead", root);
        sp = spool_new(root, "linked", &err);
        spool_destroy(&sp);
        ok(mkdir(elsewhere, 0700) == 0 && rmdir(dead) == 0 && symlink(elsewhere, dead) == 0,
           "dead/ of queue linked replaced by a symlink");
        sp = spool_new(root, "linked", &err);
        ok(sp == NULL && strstr(err.msg, dead) != NULL, "spool_new refuses it, naming it: %s",
           err.msg);
        spool_destroy(&sp);
    }
}

static void
test_put(void)
{
    errbuf err;
    spool *sp = spool_new(root, "put", &err);
    const char body[] = "{\"order\":1}";
    char *text;
    struct stat st;

    is_int(spool_put(sp, "m1", "P1", body, strlen(body), &err), 1, "put of a new id answers 1");
    ok(exists("put", "incoming", "m1"), "the message is a file in incoming/");
    ok(stat(path("put", "incoming", "m1"), &st) == 0 && (st.st_mode & 0777) == 0600,
       "its mode is 0600");
    text = tap_slurp(path("put", "incoming", "m1"));
    ok(text && strncmp(text, "restock-spool 1\nid: m1\nqueue: put\nkey: P1\ncreated: ", 50) == 0,
       "it starts with the format line, id, queue, key, created");
    ok(has_line("put", "incoming", "m1", "attempts: 0"), "attempts: 0");
    ok(has_line("put", "incoming", "m1", "length: 11"), "length: is the body's");
    ok(text && strstr(text, "\n\n{\"order\":1}\nend ") != NULL, "the body follows a blank line");
    ok(text && strlen(strstr(text, "\nend ")) == 1 + 4 + 64 + 1,
       "the last line is end and 64 hex digits");
    free(text);
    is_int(count_files("put", "tmp"), 0, "nothing is left in tmp/");

    is_int(spool_put(sp, "m1", "P1", body, strlen(body), &err), 0,
           "put of the same id again answers 0");
    is_int(count_files("put", "incoming"), 1, "and there is still one message");

    ok(spool_put(sp, "a/b", NULL, "x", 1, &err) < 0 && strstr(err.msg, "a/b"),
       "an id with / is refused, naming it: %s", err.msg);
    ok(spool_put(sp, "..", NULL, "x", 1, &err) < 0, "the id .. is refused");
    ok(spool_put(sp, ".hidden", NULL, "x", 1, &err) < 0, "an id with a leading dot is refused");
    ok(spool_put(sp, "", NULL, "x", 1, &err) < 0, "an empty id is refused");
    ok(spool_put(sp, "a b", NULL, "x", 1, &err) < 0, "an id with a space is refused");
    {
        char long_id[200];
        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        ok(spool_put(sp, long_id, NULL, "x", 1, &err) < 0, "an id of 199 characters is refused");
        long_id[SPOOL_ID_MAX] = '\0';
        is_int(spool_put(sp, long_id, NULL, "x", 1, &err), 1, "an id of 128 characters is fine");
    }
    ok(spool_put(sp, "k1", "bad/key", "x", 1, &err) < 0, "a key with / is refused");
    ok(spool_put(sp, "alert-dead-1.x_y", NULL, "", 0, &err) == 1,
       "ids like alert-dead-… and an empty body are fine");

    {
        /* Arbitrary bytes: NUL, newlines, a fake end line. */
        const char bin[] = "a\0b\nend 00\n\n\xff";
        spool_msg *m = NULL;
        is_int(spool_put(sp, "bin", NULL, bin, sizeof(bin), &err), 1, "a binary body is put");
        is_int(spool_get(sp, "bin", &m, &err), 1, "and read back by id");
        ok(m && spool_msg_len(m) == sizeof(bin) && memcmp(spool_msg_body(m), bin, sizeof(bin)) == 0,
           "byte for byte");
        ok(m && spool_msg_key(m) == NULL, "a message without key has none");
        ok(m && spool_msg_state(m) == SPOOL_INCOMING, "spool_get tells the state");
        spool_msg_destroy(&m);
        ok(m == NULL, "spool_msg_destroy clears the pointer");
    }
    spool_destroy(&sp);
}

static void
test_batch(void)
{
    errbuf err;
    spool *sp = spool_new(root, "batch", &err);
    spool_item items[5] = {
        {"b1", "K1", "one", 3, 9, 0},  {"b2", "K2", "two", 3, 9, 0},   {"b1", "K1", "dup", 3, 9, 0},
        {"old", NULL, "old", 3, 9, 0}, {"b3", NULL, "three", 5, 9, 0},
    };
    char id[200];

    is_int(spool_put(sp, "old", NULL, "old", 3, &err), 1, "a message put before the batch");
    is_int(spool_put_batch(sp, items, 5, &err), 3, "the batch adds three of five");
    ok(items[0].added == 1 && items[1].added == 1 && items[2].added == 0 && items[3].added == 0 &&
           items[4].added == 1,
       "added says which: the duplicate within the batch and the old one were not");
    ok(exists("batch", "incoming", "b1") && exists("batch", "incoming", "b2") &&
           exists("batch", "incoming", "b3"),
       "the new ones are files in incoming/");
    ok(has_line("batch", "incoming", "b1", "length: 3") &&
           has_text("batch", "incoming", "b1", "\none\n"),
       "the first copy of b1 won");
    is_int(count_files("batch", "tmp"), 0, "nothing is left in tmp/");
    is_int(spool_put_batch(sp, items, 5, &err), 0, "the same batch again adds nothing");
    /* FIFO: the order of the batch is the order of taking. */
    take_id(sp, id, sizeof(id));
    is_str(id, "old", "the message put first is taken first");
    take_id(sp, id, sizeof(id));
    is_str(id, "b1", "then the batch in its order: b1");
    take_id(sp, id, sizeof(id));
    is_str(id, "b2", "b2");
    take_id(sp, id, sizeof(id));
    is_str(id, "b3", "b3");
    items[0].id = "ok";
    items[1].id = "no/pe";
    ok(spool_put_batch(sp, items, 2, &err) < 0 && !exists("batch", "incoming", "ok"),
       "a batch with an invalid id writes nothing");
    spool_destroy(&sp);
}

static void
test_fifo_and_keys(void)
{
    errbuf err;
    spool *sp = spool_new(root, "order", &err);
    spool_msg *a = NULL, *m = NULL;
    char id[200];
    const char *busy[] = {"R"};

    /* Names in reverse alphabetical order: FIFO is by time, not by name. */
    spool_put(sp, "zz", NULL, "1", 1, &err);
    spool_put(sp, "mm", NULL, "2", 1, &err);
    spool_put(sp, "aa", NULL, "3", 1, &err);
    take_id(sp, id, sizeof(id));
    is_str(id, "zz", "FIFO: first put, first taken");
    ok(exists("order", "active", "zz") && !exists("order", "incoming", "zz"),
       "take moves the file to active/");
    take_id(sp, id, sizeof(id));
    is_str(id, "mm", "FIFO: second");
    take_id(sp, id, sizeof(id));
    is_str(id, "aa", "FIFO: third");
    is_int(take_id(sp, id, sizeof(id)), 0, "an empty queue answers 0");

    spool_put(sp, "p1", "P", "1", 1, &err);
    spool_put(sp, "p2", "P", "2", 1, &err);
    spool_put(sp, "q1", "Q", "3", 1, &err);
    is_int(spool_take(sp, NULL, 0, &a, &err), 1, "take the first of key P");
    is_str(a ? spool_msg_id(a) : "", "p1", "it is p1");
    is_str(a ? spool_msg_key(a) : "", "P", "with its key");
    take_id(sp, id, sizeof(id));
    is_str(id, "q1", "P is busy (p1 active): q1 goes before p2");
    is_int(take_id(sp, id, sizeof(id)), 0, "p2 waits while p1 is active");
    ok(exists("order", "incoming", "p2"), "p2 is still in incoming/");
    is_int(spool_done(sp, a, &err), 0, "p1 done");
    ok(exists("order", "done", "p1") && !exists("order", "active", "p1"), "p1 is in done/");
    ok(spool_msg_state(a) == SPOOL_DONE, "the message knows it is done");
    ok(spool_done(sp, a, &err) < 0 && strstr(err.msg, "not active"), "done twice is refused: %s",
       err.msg);
    spool_msg_destroy(&a);
    take_id(sp, id, sizeof(id));
    is_str(id, "p2", "now p2 goes");

    spool_put(sp, "r1", "R", "1", 1, &err);
    is_int(spool_take(sp, busy, 1, &m, &err), 0, "a key the caller names busy is skipped");
    is_int(spool_take(sp, NULL, 0, &m, &err), 1, "and taken when it is free");
    spool_msg_destroy(&m);
    spool_destroy(&sp);
}

static void
test_defer_wake_kill(void)
{
    errbuf err;
    spool *sp = spool_new(root, "retry", &err);
    spool_msg *m = NULL, *n = NULL;
    time_t now = time(NULL), next = -1;
    char line[200], id[200];

    spool_put(sp, "d1", "P", "body", 4, &err);
    spool_take(sp, NULL, 0, &m, &err);
    is_int(spool_defer(sp, m, now + 100, "HTTP 500\nfrom factory", &err), 0, "defer");
    ok(exists("retry", "deferred", "d1") && !exists("retry", "active", "d1"),
       "the file moved from active/ to deferred/");
    ok(has_line("retry", "deferred", "d1", "attempts: 1"), "attempts: 1");
    snprintf(line, sizeof(line), "due: %lld ", (long long)(now + 100));
    ok(has_text("retry", "deferred", "d1", line), "due: is the due time");
    ok(has_line("retry", "deferred", "d1", "last-error: HTTP 500 from factory"),
       "last-error: on one line (the newline became a space)");
    ok(spool_msg_attempts(m) == 1 && spool_msg_due(m) == now + 100 &&
           strcmp(spool_msg_last_error(m), "HTTP 500 from factory") == 0,
       "the message object says the same");
    spool_msg_destroy(&m);

    spool_put(sp, "d2", "P", "later", 5, &err);
    is_int(take_id(sp, id, sizeof(id)), 0, "a deferred message holds its key: d2 waits");
    is_int(spool_wake(sp, now, &next, &err), 0, "wake before the due time moves nothing");
    ok(next == now + 100, "and says when the next one is due");
    is_int(spool_wake(sp, now + 100, &next, &err), 1, "wake at the due time moves one");
    ok(exists("retry", "incoming", "d1") && !exists("retry", "deferred", "d1"),
       "d1 is back in incoming/");
    is_int(next, 0, "nothing else is deferred");
    is_int(spool_take(sp, NULL, 0, &m, &err), 1, "take again");
    is_str(m ? spool_msg_id(m) : "", "d1", "the older message d1 goes before d2");
    is_int(m ? spool_msg_attempts(m) : -1, 1, "with its attempt count");

    is_int(spool_kill(sp, m, "HTTP 503", "max_attempts (2) reached", &err), 0, "kill");
    ok(exists("retry", "dead", "d1") && !exists("retry", "active", "d1"), "d1 is in dead/");
    ok(has_line("retry", "dead", "d1", "death-reason: max_attempts (2) reached"),
       "death-reason: says why");
    ok(has_line("retry", "dead", "d1", "attempts: 2"), "the last attempt is counted");
    ok(has_line("retry", "dead", "d1", "last-error: HTTP 503"), "last-error: is the last one");
    ok(has_text("retry", "dead", "d1", "\ndied-at: "), "died-at: is written");
    ok(spool_msg_died_at(m) >= now && spool_msg_state(m) == SPOOL_DEAD,
       "the message knows when it died");
    spool_msg_destroy(&m);
    is_int(spool_take(sp, NULL, 0, &n, &err), 1, "a dead message does not hold its key");
    is_str(n ? spool_msg_id(n) : "", "d2", "d2 goes");
    is_int(spool_kill(sp, n, NULL, "malformed body", &err), 0, "kill without an attempt");
    ok(has_line("retry", "dead", "d2", "attempts: 0"), "attempts stay 0");
    spool_msg_destroy(&n);

    is_int(spool_put(sp, "d1", "P", "again", 5, &err), 0, "a put of a dead id is a no-op");
    ok(!exists("retry", "incoming", "d1"), "nothing new in incoming/");
    spool_destroy(&sp);
}

static int
list_dead(void *arg, const char *name, const spool_msg *m, const char *problem)
{
    char *out = arg;

    strcat(out, name);
    strcat(out, m && spool_msg_death_reason(m) ? "(" : "(?");
    strcat(out, m && spool_msg_death_reason(m) ? spool_msg_death_reason(m) : problem);
    strcat(out, ")");
    return 0;
}

static void
test_redrive_and_listing(void)
{
    errbuf err;
    spool *sp = spool_new(root, "dlq", &err);
    spool_msg *m = NULL;
    char listing[1000] = "";
    time_t oldest = -1;

    is_int(spool_oldest_waiting(sp, &oldest, &err), 0, "oldest waiting of an empty queue");
    is_int(oldest, 0, "is 0");
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "x%d", i);
        spool_put(sp, id, NULL, "b", 1, &err);
        spool_take(sp, NULL, 0, &m, &err);
        spool_kill(sp, m, "boom", i == 0 ? "first" : "other", &err);
        spool_msg_destroy(&m);
    }
    is_int(spool_count(sp, SPOOL_DEAD, &err), 3, "three dead");
    spool_each(sp, SPOOL_DEAD, list_dead, listing, &err);
    is_str(listing, "x0(first)x1(other)x2(other)", "spool_each lists them oldest first");
    {
        struct spool_names names;

        ok(spool_names_of(sp, SPOOL_DEAD, &names, &err) == RS_OK && names.n == 3 &&
               strcmp(names.v[0], "x0") == 0 && strcmp(names.v[1], "x1") == 0 &&
               strcmp(names.v[2], "x2") == 0,
           "spool_names_of collects their names in the same order");
        spool_names_clear(&names);
        ok(names.v == NULL && names.n == 0, "and spool_names_clear lets them go");
        ok(spool_names_of(sp, SPOOL_DONE, &names, &err) == RS_OK && names.n == 0,
           "an empty state has no names");
        spool_names_clear(&names);
    }

    is_int(spool_redrive(sp, "x0", &err), 1, "redrive one");
    ok(exists("dlq", "incoming", "x0") && !exists("dlq", "dead", "x0"), "x0 is in incoming/");
    ok(has_line("dlq", "incoming", "x0", "attempts: 0"), "with attempts reset");
    ok(has_text("dlq", "incoming", "x0", "\nhistory: died ") &&
           has_text("dlq", "incoming", "x0",
                    "after 1 attempts: first (last error: boom); redriven "),
       "and a history line of its death");
    ok(!has_text("dlq", "incoming", "x0", "death-reason:"), "no death-reason any more");
    ok(spool_redrive(sp, "x0", &err) < 0 && strstr(err.msg, "x0"),
       "redrive of an id not in dead/ fails naming it: %s", err.msg);
    is_int(spool_redrive(sp, NULL, &err), 2, "redrive all moves the other two");
    is_int(spool_count(sp, SPOOL_DEAD, &err), 0, "dead/ is empty");
    is_int(spool_count(sp, SPOOL_INCOMING, &err), 3, "incoming/ has three");
    ok(spool_oldest_waiting(sp, &oldest, &err) == 0 && oldest > 0 && oldest <= time(NULL),
       "oldest waiting is the created time of x0");
    ok(spool_oldest_waiting_except(sp, "x", &oldest, &err) == 0 && oldest == 0,
       "none waits when ids beginning with x are left out");
    ok(spool_oldest_waiting_except(sp, "y", &oldest, &err) == 0 && oldest > 0,
       "leaving out ids beginning with y leaves them");

    is_int(spool_get(sp, "x1", &m, &err), 1, "get finds x1");
    is_int(m ? (int)spool_msg_state(m) : -1, SPOOL_INCOMING, "in incoming");
    is_int(m ? (int)spool_msg_history_count(m) : -1, 1, "with one history line");
    spool_msg_destroy(&m);
    is_int(spool_get(sp, "nope", &m, &err), 0, "get of an unknown id answers 0");
    for (int i = 0; i < 3; i++) {
        spool_take(sp, NULL, 0, &m, &err);
        spool_msg_destroy(&m);
    }
    ok(spool_count(sp, SPOOL_ACTIVE, &err) == 3 && spool_oldest_waiting(sp, &oldest, &err) == 0 &&
           oldest > 0,
       "messages in flight (active/) still count as waiting");
    spool_destroy(&sp);
}

/* Callers read a message's id before a state change and log it after (the
 * worker's queue does): id, key and body stay valid across defer, postpone and kill. */
static void
test_msg_kept(void)
{
    errbuf err;
    spool *sp = spool_new(root, "kept", &err);
    spool_msg *m = NULL;
    const char *id, *key;
    const void *body;
    int same = 1;

    spool_put(sp, "k1", "P", "body", 4, &err);
    spool_take(sp, NULL, 0, &m, &err);
    id = spool_msg_id(m);
    key = spool_msg_key(m);
    body = spool_msg_body(m);
    same &= spool_postpone(sp, m, time(NULL) - 1, "db down", &err) == 0;
    same &= spool_msg_id(m) == id && spool_msg_key(m) == key && spool_msg_body(m) == body;
    spool_msg_destroy(&m);
    spool_wake(sp, time(NULL), NULL, &err);
    spool_take(sp, NULL, 0, &m, &err);
    id = spool_msg_id(m);
    body = spool_msg_body(m);
    same &= spool_defer(sp, m, time(NULL) - 1, "HTTP 500", &err) == 0;
    same &= spool_msg_id(m) == id && spool_msg_body(m) == body;
    spool_msg_destroy(&m);
    spool_wake(sp, time(NULL), NULL, &err);
    spool_take(sp, NULL, 0, &m, &err);
    id = spool_msg_id(m);
    same &= spool_kill(sp, m, "HTTP 400", "permanent", &err) == 0;
    same &= spool_msg_id(m) == id && strcmp(id, "k1") == 0;
    ok(same, "id, key and body of a message stay where they are across its state changes");
    spool_msg_destroy(&m);
    spool_destroy(&sp);
}

static void
test_done_prune(void)
{
    errbuf err;
    spool *sp = spool_new(root, "prune", &err);
    spool_msg *m = NULL;
    struct timespec old[2] = {{0, UTIME_OMIT}, {time(NULL) - 1000, 0}};

    for (int i = 0; i < 2; i++) {
        spool_put(sp, i ? "new" : "old", NULL, "b", 1, &err);
        spool_take(sp, NULL, 0, &m, &err);
        spool_done(sp, m, &err);
        spool_msg_destroy(&m);
    }
    is_int(spool_put(sp, "old", NULL, "b", 1, &err), 0, "a put of a done id is a no-op");
    ok(!exists("prune", "incoming", "old"), "nothing in incoming/");
    utimensat(AT_FDCWD, path("prune", "done", "old"), old, 0);
    is_int(spool_prune_done(sp, 500, &err), 1, "prune removes what was done 1000 s ago");
    ok(!exists("prune", "done", "old") && exists("prune", "done", "new"),
       "old is gone, new is kept");
    is_int(spool_put(sp, "old", NULL, "b", 1, &err), 1, "once pruned, the id can be put again");
    spool_destroy(&sp);
}

static void
test_corruption(void)
{
    errbuf err;
    spool *sp = spool_new(root, "torn", &err);
    struct reports rep = {0};
    char id[200];
    FILE *f;

    spool_set_corrupt_handler(sp, on_corrupt, &rep);
    spool_put(sp, "t1", NULL, "first", 5, &err);
    spool_put(sp, "t2", NULL, "second", 6, &err);
    spool_put(sp, "t3", NULL, "third", 5, &err);
    spool_put(sp, "t4", NULL, "fourth", 6, &err);
    /* t2: torn (cut in the middle); t3: one byte of the body flipped. */
    ok(truncate(path("torn", "incoming", "t2"), 60) == 0, "t2 cut to 60 bytes");
    {
        char *text = tap_slurp(path("torn", "incoming", "t3"));
        char *b = strstr(text, "\nthird\n");
        b[1] = 'T';
        f = fopen(path("torn", "incoming", "t3"), "wb");
        fwrite(text, 1, strlen(text), f);
        fclose(f);
        free(text);
    }
    take_id(sp, id, sizeof(id));
    is_str(id, "t1", "t1 is taken");
    take_id(sp, id, sizeof(id));
    is_str(id, "t4", "the torn t2 and the damaged t3 are skipped: t4 is taken");
    ok(exists("torn", "corrupt", "t2") && exists("torn", "corrupt", "t3"), "both are in corrupt/");
    is_int(rep.n, 2, "both were reported");
    ok(strstr(rep.from[0], "/torn/incoming/t2") && strstr(rep.problem[0], "torn"),
       "the report names the file and says torn: %s", rep.problem[0]);
    ok(strstr(rep.problem[1], "checksum"), "the flipped byte is a checksum mismatch: %s",
       rep.problem[1]);

    /* Garbage, and a file whose name is not an id, in incoming/. */
    f = fopen(path("torn", "incoming", "garbage"), "w");
    fputs("hello, I am not a message\n", f);
    fclose(f);
    f = fopen(path("torn", "incoming", "bad name"), "w");
    fclose(f);
    spool_put(sp, "t5", NULL, "fifth", 5, &err);
    take_id(sp, id, sizeof(id));
    is_str(id, "t5", "garbage does not stop the queue");
    ok(exists("torn", "corrupt", "garbage") && exists("torn", "corrupt", "bad name"),
       "garbage and the bad name went to corrupt/");
    is_int(rep.n, 4, "and were reported");
    spool_destroy(&sp);
}

static void
test_recover(void)
{
    errbuf err;
    spool *sp = spool_new(root, "crash", &err);
    spool_msg *m = NULL;
    spool_recovery r;
    struct reports rep = {0};
    char id[200];
    FILE *f;

    spool_put(sp, "c1", "K", "one", 3, &err);
    spool_put(sp, "c2", "K", "two", 3, &err);
    spool_put(sp, "c3", NULL, "three", 5, &err);
    spool_put(sp, "c4", NULL, "four", 4, &err);
    spool_take(sp, NULL, 0, &m, &err); /* c1 in flight when the "crash" comes */
    spool_msg_destroy(&m);
    spool_take(sp, NULL, 0, &m, &err); /* c3: deferred */
    spool_defer(sp, m, time(NULL) + 1000, "slow", &err);
    spool_msg_destroy(&m);
    spool_destroy(&sp);
    /* Leftovers: a half-written file of a dead process in tmp/, a damaged done/ file. */
    f = fopen(path("crash", "tmp", "999999999.1.c9"), "w");
    fputs("restock-spool 1\nid: c9\n", f);
    fclose(f);
    f = fopen(path("crash", "done", "c0"), "w");
    fputs("restock-spool 1\nid: c0\n", f);
    fclose(f);

    sp = spool_new(root, "crash", &err);
    spool_set_corrupt_handler(sp, on_corrupt, &rep);
    is_int(spool_recover(sp, &r, &err), 0, "recover");
    is_int(r.requeued, 1, "one message was in flight");
    ok(exists("crash", "incoming", "c1") && !exists("crash", "active", "c1"),
       "c1 is back in incoming/");
    is_int(r.tmp_removed, 1, "one leftover removed from tmp/");
    is_int(count_files("crash", "tmp"), 0, "tmp/ is empty");
    is_int(r.corrupt, 1, "one bad file");
    ok(exists("crash", "corrupt", "c0") && rep.n == 1 && strstr(rep.from[0], "/done/c0"),
       "the damaged done/ file went to corrupt/ and was reported");
    is_int(r.verified, 4, "four good files verified (c1 c2 c3 c4)");
    ok(exists("crash", "deferred", "c3"), "the deferred message stays deferred");
    take_id(sp, id, sizeof(id));
    is_str(id, "c1", "c1 goes first again, key order kept");
    spool_destroy(&sp);
}

/* A second name of one message, as a power cut on a file system that does not
 * order renames leaves it: the file in `from` linked into `to`. */
static void
copy_into(const char *queue, const char *from, const char *to, const char *name)
{
    char src[512];

    snprintf(src, sizeof(src), "%s", path(queue, from, name));
    ok(link(src, path(queue, to, name)) == 0, "a copy of %s in %s/ made", src, to);
}

/* After a cut, one message in two or three state folders: recovery keeps one,
 * by the rule of spool_recover_copies, and the rest of the spool is untouched. */
static void
test_recover_copies(void)
{
    errbuf err;
    spool *sp = spool_new(root, "copies", &err);
    spool_msg *m = NULL;
    spool_recovery r;

    /* The messages' last states, as the worker left them. */
    spool_put(sp, "d1", NULL, "one", 3, &err);
    spool_take(sp, NULL, 0, &m, &err);
    spool_done(sp, m, &err);
    spool_msg_destroy(&m);
    spool_put(sp, "w1", NULL, "two", 3, &err);
    spool_take(sp, NULL, 0, &m, &err);
    spool_defer(sp, m, time(NULL) + 1000, "slow", &err);
    spool_msg_destroy(&m);
    spool_put(sp, "k1", NULL, "three", 5, &err);
    spool_take(sp, NULL, 0, &m, &err);
    spool_kill(sp, m, "boom", "permanent failure: boom", &err);
    spool_msg_destroy(&m);
    spool_put(sp, "a1", NULL, "four", 4, &err);
    spool_take(sp, NULL, 0, &m, &err);
    spool_defer(sp, m, time(NULL) + 1000, "slow", &err);
    spool_msg_destroy(&m);
    spool_put(sp, "s1", NULL, "five", 4, &err); /* one name only, waiting: left alone */
    spool_destroy(&sp);
    /* What the cut left: d1 delivered, its old names in incoming/ and active/ back;
     * w1 deferred, its name in incoming/ from before its take back; k1 dead and in
     * incoming/ (a redrive whose removal from dead/ was undone); a1 in active/ and
     * deferred/. */
    copy_into("copies", "done", "incoming", "d1");
    copy_into("copies", "done", "active", "d1");
    copy_into("copies", "deferred", "incoming", "w1");
    copy_into("copies", "dead", "incoming", "k1");
    copy_into("copies", "deferred", "active", "a1");

    sp = spool_new(root, "copies", &err);
    is_int(spool_recover(sp, &r, &err), 0, "recover a spool with copies");
    is_int(r.copies_removed, 5, "five second names removed");
    ok(exists("copies", "done", "d1") && !exists("copies", "incoming", "d1") &&
           !exists("copies", "active", "d1"),
       "delivered: only the copy in done/ stays (it is not sent again)");
    ok(exists("copies", "incoming", "w1") && !exists("copies", "deferred", "w1"),
       "waiting in two folders: the copy in incoming/ stays (sent soonest)");
    ok(exists("copies", "incoming", "k1") && !exists("copies", "dead", "k1"),
       "dead and waiting: the waiting copy stays (it may be a redrive)");
    ok(exists("copies", "incoming", "a1") && !exists("copies", "deferred", "a1") &&
           !exists("copies", "active", "a1"),
       "active and deferred: the active copy stays, back in incoming/");
    is_int(r.requeued, 1, "a1 requeued from active/");
    ok(exists("copies", "incoming", "s1"), "a message with one name is untouched");
    is_int(r.corrupt, 0, "no copy taken for corruption");
    is_int(count_files("copies", "corrupt"), 0, "corrupt/ is empty");
    spool_destroy(&sp);
}

/* Two threads take and finish while the main thread puts: every message is
 * delivered once. */
struct worker {
    spool *sp;
    int taken;
    int failed;
};

static void *
worker_run(void *arg)
{
    struct worker *w = arg;
    errbuf err;
    int idle = 0;

    while (idle < 2000) {
        spool_msg *m = NULL;
        int rc = spool_take(w->sp, NULL, 0, &m, &err);
        if (rc < 0) {
            w->failed++;
            break;
        }
        if (rc == 0) {
            idle++;
            usleep(1000);
            continue;
        }
        idle = 0;
        if (spool_done(w->sp, m, &err) < 0)
            w->failed++;
        w->taken++;
        spool_msg_destroy(&m);
    }
    return NULL;
}

static void
test_threads(void)
{
    errbuf err;
    spool *sp = spool_new(root, "threads", &err);
    struct worker w[2] = {{sp, 0, 0}, {sp, 0, 0}};
    pthread_t t[2];
    int put = 0;

    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker_run, &w[i]);
    for (int i = 0; i < 100; i++) {
        char id[16];
        spool_item items[2];
        snprintf(id, sizeof(id), "t%03d", i);
        if (i % 2 == 0) {
            put += spool_put(sp, id, i % 3 ? "K" : NULL, "x", 1, &err) == 1;
        } else {
            char id2[20];
            snprintf(id2, sizeof(id2), "%s-b", id);
            items[0] = (spool_item){id, NULL, "x", 1, 0, 0};
            items[1] = (spool_item){id2, "K", "y", 1, 0, 0};
            put += spool_put_batch(sp, items, 2, &err);
        }
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    is_int(put, 150, "150 messages put");
    is_int(w[0].failed + w[1].failed, 0, "no thread failed");
    is_int(w[0].taken + w[1].taken, 150, "150 taken in all, none twice");
    is_int(count_files("threads", "done"), 150, "150 in done/");
    is_int(count_files("threads", "incoming") + count_files("threads", "active"), 0,
           "nothing left behind");
    spool_destroy(&sp);
}

int
main(void)
{
    snprintf(root, sizeof(root), "%s/spool_test.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : ".");
    if (mkdtemp(root) == NULL) {
        perror(root);
        return 1;
    }
    test_new();
    test_put();
    test_batch();
    test_fifo_and_keys();
    test_defer_wake_kill();
    test_redrive_and_listing();
    test_msg_kept();
    test_done_prune();
    test_corruption();
    test_recover();
    test_recover_copies();
    test_threads();
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
