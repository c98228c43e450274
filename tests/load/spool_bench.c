/* spool_bench: how fast the spool makes messages durable, next to what this disk
 * can do at all (issue 3: batched enqueue within 2x of the disk's fsync rate).
 *
 *     tests/load/spool_bench [FOLDER [SECONDS [ROUNDS]]]
 *
 * Works in a fresh folder made inside FOLDER (default: the current directory, so
 * that it measures the disk the build is on) and removes it at the end. Each
 * figure is the median of ROUNDS (3) runs of SECONDS (1) each, so that a burst of
 * other activity on the machine does not decide it. Not a test: it asserts nothing. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"

#define MEASURES 5

static const char *const names[MEASURES] = {
    "raw fsync of one file (overwrite + fsync)",
    "raw new file (write + fsync + rename + fsync dir)",
    "spool_put, one at a time",
    "spool_put_batch, 16 per batch",
    "spool_put_batch, 64 per batch",
};

/* A factory-queue message of realistic size. */
static const char body[] =
    "{\"event_id\":\"0d4b6a52-6f3e-4c9e-9a53-2b9f8e7c1d20\",\"order_id\":"
    "\"5b1e9c47-2a8d-4f63-b0e4-7c3d91a2f856\",\"product_id\":\"c9a4f1e2-d3b5-4a6f-8e7d-"
    "6c5b4a392801\",\"sku\":\"CP-502101\",\"quantity\":100,\"factory\":\"FF-500293\","
    "\"api\":\"http://127.0.0.1:9000\"}";

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "spool_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double
raw_fsync(const char *dir, double secs)
{
    char file[4200];
    double start = now(), t;
    long n = 0;
    int fd;

    snprintf(file, sizeof(file), "%s/raw-fsync", dir);
    if ((fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0)
        die(file);
    do {
        if (pwrite(fd, body, sizeof(body) - 1, 0) < 0 || fsync(fd) < 0)
            die("fsync");
        n++;
    } while ((t = now() - start) < secs);
    close(fd);
    return (double)n / t;
}

/* What one spool_put does, by hand, without the spool's checks and format. */
static double
raw_new_file(const char *dir, int round, double secs)
{
    char tmp[4200], dst[4200], a[4200], b[4200];
    double start = now(), t;
    long n = 0;
    int dfd;

    snprintf(tmp, sizeof(tmp), "%s/raw-tmp-%d", dir, round);
    snprintf(dst, sizeof(dst), "%s/raw-new-%d", dir, round);
    if (mkdir(tmp, 0700) < 0 || mkdir(dst, 0700) < 0 ||
        (dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        die(dst);
    do {
        int fd;
        snprintf(a, sizeof(a), "%s/%ld", tmp, n);
        snprintf(b, sizeof(b), "%s/%ld", dst, n);
        if ((fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
            write(fd, body, sizeof(body) - 1) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
            rename(a, b) < 0 || fsync(dfd) < 0)
            die(a);
        n++;
    } while ((t = now() - start) < secs);
    close(dfd);
    return (double)n / t;
}

static double
spool_rate(const char *dir, int round, int batch, double secs)
{
    char queue[32], ids[64][32];
    spool_item items[64];
    errbuf err;
    spool *sp;
    double start, t;
    long n = 0;

    snprintf(queue, sizeof(queue), "b%d-%d", batch, round);
    if ((sp = spool_new(dir, queue, &err)) == NULL) {
        fprintf(stderr, "spool_bench: %s\n", err.msg);
        exit(1);
    }
    start = now();
    do {
        int i, rc;
        for (i = 0; i < batch; i++) {
            snprintf(ids[i], sizeof(ids[i]), "m%ld", n + i);
            items[i] = (spool_item){ids[i], "CP-502101", body, sizeof(body) - 1, 0, 0};
        }
        rc = batch == 1 ? spool_put(sp, ids[0], "CP-502101", body, sizeof(body) - 1, &err)
                        : spool_put_batch(sp, items, (size_t)batch, &err);
        if (rc != batch) {
            fprintf(stderr, "spool_bench: put answered %d: %s\n", rc, rc < 0 ? err.msg : "");
            exit(1);
        }
        n += batch;
    } while ((t = now() - start) < secs);
    spool_destroy(&sp);
    return (double)n / t;
}

static int
dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

int
main(int argc, char **argv)
{
    const char *parent = argc > 1 ? argv[1] : ".";
    double secs = argc > 2 ? atof(argv[2]) : 1.0;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    double rate[MEASURES][16], median[MEASURES];
    char dir[4096];

    if (secs <= 0 || rounds < 1 || rounds > 16) {
        fprintf(stderr, "usage: spool_bench [FOLDER [SECONDS [ROUNDS (1..16)]]]\n");
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/spool_bench.XXXXXX", parent);
    if (mkdtemp(dir) == NULL)
        die(dir);
    printf("folder %s, %d round(s) of %.1f s per figure, median shown\n", dir, rounds, secs);
    for (int r = 0; r < rounds; r++) {
        rate[0][r] = raw_fsync(dir, secs);
        rate[1][r] = raw_new_file(dir, r, secs);
        rate[2][r] = spool_rate(dir, r, 1, secs);
        rate[3][r] = spool_rate(dir, r, 16, secs);
        rate[4][r] = spool_rate(dir, r, 64, secs);
    }
    for (int i = 0; i < MEASURES; i++) {
        qsort(rate[i], (size_t)rounds, sizeof(double), dbl_cmp);
        median[i] = rate[i][rounds / 2];
        printf("%-52s %8.0f /s  (%.2f x raw fsync; rounds %.0f..%.0f)\n", names[i], median[i],
               median[i] / median[0], rate[i][0], rate[i][rounds - 1]);
    }
    printf("goal (issue 3): batched put within 2x of raw fsync, i.e. ratio >= 0.50: "
           "batch 16 %.2f, batch 64 %.2f\n",
           median[3] / median[0], median[4] / median[0]);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
