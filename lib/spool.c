/* spool: durable on-disk queues, one text file per message and one folder per
 * state: the folders, their descriptors and locks, and the moves between them (see
 * spool.h for the layout and the rules; spool_msg.c holds the file format). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "spool.h"

#define SPOOL_TMP SPOOL_NSTATES /* tmp/ is not a state, but has a descriptor */
#define SPOOL_NS  1000000000LL

static const char *const spool_folder_names[SPOOL_NSTATES + 1] = {
    "incoming", "active", "deferred", "dead", "done", "corrupt", "tmp"};

/* Results of reading one message file. */
enum { SPOOL_LOAD_GONE = 0, SPOOL_LOAD_OK = 1, SPOOL_LOAD_BAD = 2 };

/* What spool_take needs to know of a file without reading it again: the cache of
 * one folder, refreshed from readdir at each take (so that files another process
 * renamed in are seen) but reading only files it has not seen (name and inode). */
struct spool_entry {
    char *name, *key;
    ino_t ino;
    int64_t created;
    time_t due;
    int moved; /* handed over to the new cache */
};

struct spool_scan {
    struct spool_entry *v; /* sorted by name */
    size_t n;
};

/* A directory entry: name and inode. */
struct spool_name {
    char *s;
    ino_t ino;
};

struct spool {
    char *queue, *qdir;
    int qfd, dfd[SPOOL_NSTATES + 1];
    pthread_mutex_t lock; /* guards last_created, scans, and take/put/wake decisions */
    int64_t last_created;
    atomic_ulong tmp_seq;
    int chown_files; /* running as root: give what we create to the spool's owner */
    uid_t uid;
    gid_t gid;
    int use_syncfs; /* a batch may sync with one syncfs (spool_syncfs_works) */
    spool_corrupt_fn *on_corrupt;
    void *on_corrupt_arg;
    struct spool_scan scans[SPOOL_NSTATES];
};

/* ---- small helpers ---- */

static int64_t
spool_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SPOOL_NS + ts.tv_nsec;
}

static const char *
spool_path_of(const spool *self, int folder, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s/%s", self->qdir, spool_folder_names[folder], name);
    return buf;
}

/* Errors that say the process, not the file, is in trouble: never a reason to call
 * a file corrupt. */
static int
spool_resource_errno(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS;
}

static int
spool_kernel_at_least(int major, int minor)
{
    struct utsname u;
    int a = 0, b = 0;

    if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &a, &b) != 2)
        return 0;
    return a > major || (a == major && b >= minor);
}

#define SPOOL_FUSE_MAGIC 0x65735546 /* FUSE_SUPER_MAGIC of <linux/magic.h> */

/* Whether one syncfs(2) of the folder fd's file system makes our files durable and
 * reports their writeback errors: Linux >= 5.8 reports them, and the file system is
 * not FUSE, where syncfs never reaches the daemon that stores the data (the kernel
 * sends FUSE_SYNCFS to virtiofs only) while each file's fsync does. Found by the
 * power-cut test (tests/fault/powercut.py): on its FUSE mount every batch's messages
 * came back empty after a cut, their events already marked taken. */
static int
spool_syncfs_works(int fd)
{
    struct statfs sf;

    if (!spool_kernel_at_least(5, 8))
        return 0;
    return fstatfs(fd, &sf) == 0 && sf.f_type != SPOOL_FUSE_MAGIC;
}

/* ---- files ---- */

/* Reads and parses file `name` of a folder. Returns SPOOL_LOAD_OK with *out, SPOOL_LOAD_GONE
 * when it vanished (another thread or process moved it), SPOOL_LOAD_BAD when it cannot
 * be read or is not a sound message (why), RS_ERR when the process is short of
 * something (descriptors, memory). */
static int
spool_load(spool *self, int folder, const char *name, spool_msg **out, char *why, size_t whylen,
           errbuf *err)
{
    char path[PATH_MAX], *buf = NULL;
    struct stat st;
    size_t len = 0;
    int fd, rc;

    *out = NULL;
    spool_path_of(self, folder, name, path, sizeof(path));
    /* O_NONBLOCK: a FIFO left in a folder must not hang the worker. */
    fd = openat(self->dfd[folder], name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return SPOOL_LOAD_GONE;
        if (spool_resource_errno(errno))
            return errbuf_set(err, "opening %s: %s", path, strerror(errno));
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return SPOOL_LOAD_BAD;
    }
    if (fstat(fd, &st) < 0) {
        rc = errbuf_set(err, "looking at %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        rc = SPOOL_LOAD_BAD;
        goto done;
    }
    if (st.st_size > SPOOL_MSG_FILE_MAX) {
        snprintf(why, whylen, "too large (%lld bytes)", (long long)st.st_size);
        rc = SPOOL_LOAD_BAD;
        goto done;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        rc = errbuf_set(err, "reading %s: out of memory", path);
        goto done;
    }
    while (len < (size_t)st.st_size) {
        ssize_t got = read(fd, buf + len, (size_t)st.st_size - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(why, whylen, "cannot read: %s", strerror(errno));
            rc = SPOOL_LOAD_BAD;
            goto done;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    rc = spool_msg_parse(buf, len, name, self->queue, out, why, whylen, err);
    if (rc == 1) {
        spool_msg_set_state(*out, (enum spool_state)folder);
        rc = SPOOL_LOAD_OK;
    } else if (rc == 0) {
        rc = SPOOL_LOAD_BAD;
    }
done:
    free(buf);
    close(fd);
    return rc;
}

static int
spool_folder_sync(spool *self, int folder, errbuf *err)
{
    if (fsync(self->dfd[folder]) < 0)
        return errbuf_set(err, "fsync of folder %s/%s: %s", self->qdir, spool_folder_names[folder],
                          strerror(errno));
    return RS_OK;
}

/* Writes a new file into tmp/, named PID.SEQ.ID so that spool_recover can tell a
 * dead process's leftover from a file another process is writing now. fsync'd
 * when `sync` (spool_put_batch syncs a whole batch at once instead). */
static int
spool_tmp_write(spool *self, const char *id, const char *data, size_t len, int sync, char *tmp,
                size_t tmpsize, errbuf *err)
{
    char path[PATH_MAX];
    const char *what = "creating";
    size_t off = 0;
    int fd, e, made = 0;

    snprintf(tmp, tmpsize, "%ld.%lu.%s", (long)getpid(), atomic_fetch_add(&self->tmp_seq, 1) + 1,
             id);
    fd = openat(self->dfd[SPOOL_TMP], tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                0600);
    if (fd < 0)
        goto fail;
    made = 1;
    what = "changing the owner of";
    if (self->chown_files && fchown(fd, self->uid, self->gid) < 0)
        goto fail;
    what = "writing";
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    what = "fsync of";
    if (sync && fsync(fd) < 0)
        goto fail;
    what = "closing";
    e = close(fd);
    fd = -1;
    if (e < 0)
        goto fail;
    return RS_OK;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    if (made)
        unlinkat(self->dfd[SPOOL_TMP], tmp, 0);
    return errbuf_set(err, "%s %s: %s", what,
                      spool_path_of(self, SPOOL_TMP, tmp, path, sizeof(path)), strerror(e));
}

/* Moves a bad file out of the way, so that the queue keeps flowing, and reports it.
 * Never replaces an earlier corrupt file of the same name. */
static int
spool_corrupt_move(spool *self, int folder, const char *name, const char *problem, errbuf *err)
{
    char target[NAME_MAX + 1], from[PATH_MAX], to[PATH_MAX];
    int i;

    spool_path_of(self, folder, name, from, sizeof(from));
    for (i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(target, sizeof(target), "%.240s", name);
        else
            snprintf(target, sizeof(target), "%.240s.%d", name, i);
        if (renameat2(self->dfd[folder], name, self->dfd[SPOOL_CORRUPT], target,
                      RENAME_NOREPLACE) == 0)
            break;
        if (errno == ENOENT)
            return RS_OK; /* moved by someone else meanwhile */
        if (errno != EEXIST)
            return errbuf_set(err, "moving %s to corrupt/: %s", from, strerror(errno));
    }
    if (i == 1000)
        return errbuf_set(err, "moving %s to corrupt/: too many files of that name", from);
    if (spool_folder_sync(self, SPOOL_CORRUPT, err) < 0)
        return RS_ERR;
    spool_path_of(self, SPOOL_CORRUPT, target, to, sizeof(to));
    if (self->on_corrupt != NULL)
        self->on_corrupt(self->on_corrupt_arg, from, to, problem);
    else
        log_warn("event=spool_corrupt queue=%s from=%s to=%s problem=\"%s\"", self->queue, from, to,
                 problem);
    return RS_OK;
}

static int
spool_name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct spool_name *)a)->s, ((const struct spool_name *)b)->s);
}

static void
spool_names_free(struct spool_name *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].s);
    free(v);
}

/* The files of a folder, sorted by name. Names starting with a dot are not
 * messages (an operator's or editor's files) and are left alone. */
static int
spool_folder_list(spool *self, int folder, struct spool_name **out, size_t *count, errbuf *err)
{
    struct spool_name *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *dir;
    int fd;

    *out = NULL;
    *count = 0;
    if ((fd = openat(self->dfd[folder], ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
            0 ||
        (dir = fdopendir(fd)) == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return errbuf_set(err, "reading folder %s/%s: %s", self->qdir, spool_folder_names[folder],
                          strerror(e));
    }
    for (errno = 0; (de = readdir(dir)) != NULL; errno = 0) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            struct spool_name *grown = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
            if (grown == NULL)
                goto nomem;
            v = grown;
        }
        if ((v[n].s = strdup(de->d_name)) == NULL)
            goto nomem;
        v[n++].ino = de->d_ino;
    }
    if (errno != 0) {
        int e = errno;
        closedir(dir);
        spool_names_free(v, n);
        return errbuf_set(err, "reading folder %s/%s: %s", self->qdir, spool_folder_names[folder],
                          strerror(e));
    }
    closedir(dir);
    if (n > 1)
        qsort(v, n, sizeof(*v), spool_name_cmp);
    *out = v;
    *count = n;
    return RS_OK;
nomem:
    closedir(dir);
    spool_names_free(v, n);
    return errbuf_set(err, "reading folder %s/%s: out of memory", self->qdir,
                      spool_folder_names[folder]);
}

/* ---- the cache of spool_take ---- */

static int
spool_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct spool_entry *)a)->name, ((const struct spool_entry *)b)->name);
}

static void
spool_scan_clear(struct spool_scan *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (!s->v[i].moved) {
            free(s->v[i].name);
            free(s->v[i].key);
        }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* Brings the cache of one folder up to date. With `repair`, bad files are moved to
 * corrupt/ (and reported); without, they are only left out. Lock held. */
static int
spool_scan_refresh(spool *self, int folder, int repair, errbuf *err)
{
    struct spool_scan *old = &self->scans[folder], fresh = {NULL, 0};
    struct spool_name *names;
    size_t n, i;
    char why[256];
    int rc = RS_ERR;

    if (spool_folder_list(self, folder, &names, &n, err) < 0)
        return RS_ERR;
    if (n > 0 && (fresh.v = calloc(n, sizeof(*fresh.v))) == NULL) {
        errbuf_set(err, "reading folder %s/%s: out of memory", self->qdir,
                   spool_folder_names[folder]);
        goto done;
    }
    for (i = 0; i < n; i++) {
        struct spool_entry probe = {.name = names[i].s}, *e;
        spool_msg *m;
        int got;

        if (!spool_msg_valid_id(names[i].s)) {
            if (repair && spool_corrupt_move(self, folder, names[i].s,
                                             "file name is not a message id", err) < 0)
                goto done;
            continue;
        }
        e = old->n ? bsearch(&probe, old->v, old->n, sizeof(*old->v), spool_entry_cmp) : NULL;
        if (e != NULL && !e->moved && e->ino == names[i].ino) {
            fresh.v[fresh.n++] = *e;
            e->moved = 1;
            continue;
        }
        if ((got = spool_load(self, folder, names[i].s, &m, why, sizeof(why), err)) < 0)
            goto done;
        if (got == SPOOL_LOAD_BAD && repair &&
            spool_corrupt_move(self, folder, names[i].s, why, err) < 0)
            goto done;
        if (got != SPOOL_LOAD_OK)
            continue;
        e = &fresh.v[fresh.n];
        e->key = spool_msg_key(m) != NULL ? strdup(spool_msg_key(m)) : NULL;
        e->created = spool_msg_created_ns(m);
        e->due = spool_msg_due(m);
        if (spool_msg_key(m) != NULL && e->key == NULL) {
            spool_msg_destroy(&m);
            errbuf_set(err, "reading folder %s/%s: out of memory", self->qdir,
                       spool_folder_names[folder]);
            goto done;
        }
        spool_msg_destroy(&m);
        e->name = names[i].s;
        names[i].s = NULL;
        e->ino = names[i].ino;
        fresh.n++;
    }
    rc = RS_OK;
done:
    /* Entries kept sorted by name: the names come sorted from spool_folder_list. */
    spool_scan_clear(old);
    for (i = 0; i < fresh.n; i++)
        fresh.v[i].moved = 0;
    *old = fresh;
    spool_names_free(names, n);
    return rc;
}

/* ---- opening ---- */

/* mkdir that is fine when the folder exists; sets *made when it made it. */
static int
spool_make_folder(spool *self, int at, const char *name, const char *path, int *made, errbuf *err)
{
    if (mkdirat(at, name, 0700) == 0) {
        *made = 1;
        if (self->chown_files && fchownat(at, name, self->uid, self->gid, AT_SYMLINK_NOFOLLOW) < 0)
            return errbuf_set(err, "changing the owner of %s: %s", path, strerror(errno));
        return RS_OK;
    }
    if (errno != EEXIST)
        return errbuf_set(err, "creating folder %s: %s", path, strerror(errno));
    return RS_OK;
}

/* Never through a symlink: the spool's owner may be less trusted than who opens
 * it (restockctl run by root), and a state folder replaced by a link to another
 * folder must not send messages there. */
static int
spool_open_folder(int at, const char *name, const char *path, errbuf *err)
{
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        errbuf_set(err, "opening folder %s: %s", path, strerror(errno));
    return fd;
}

spool *
spool_new(const char *root, const char *queue, errbuf *err)
{
    char path[PATH_MAX];
    struct stat st;
    spool *self;
    int rootfd = -1, made_root = 0, made_queue = 0, made_state = 0;

    if (root == NULL || root[0] == '\0') {
        errbuf_set(err, "spool: no spool folder given");
        return NULL;
    }
    if (!spool_msg_valid_id(queue)) {
        errbuf_set(err, "spool: invalid queue name \"%.40s\"", queue ? queue : "(null)");
        return NULL;
    }
    if (sodium_init() < 0) {
        errbuf_set(err, "spool: libsodium failed to initialise");
        return NULL;
    }
    if ((self = calloc(1, sizeof(*self))) == NULL) {
        errbuf_set(err, "spool: out of memory");
        return NULL;
    }
    self->qfd = -1;
    for (int i = 0; i <= SPOOL_NSTATES; i++)
        self->dfd[i] = -1;
    pthread_mutex_init(&self->lock, NULL);
    if ((self->queue = strdup(queue)) == NULL || asprintf(&self->qdir, "%s/%s", root, queue) < 0) {
        self->qdir = NULL;
        errbuf_set(err, "spool: out of memory");
        goto fail;
    }
    if (spool_make_folder(self, AT_FDCWD, root, root, &made_root, err) < 0 ||
        (rootfd = spool_open_folder(AT_FDCWD, root, root, err)) < 0)
        goto fail;
    if (geteuid() == 0 && fstat(rootfd, &st) == 0 && (st.st_uid != 0 || st.st_gid != 0)) {
        self->chown_files = 1;
        self->uid = st.st_uid;
        self->gid = st.st_gid;
    }
    if (spool_make_folder(self, rootfd, queue, self->qdir, &made_queue, err) < 0 ||
        (self->qfd = spool_open_folder(rootfd, queue, self->qdir, err)) < 0)
        goto fail;
    self->use_syncfs = spool_syncfs_works(self->qfd);
    for (int i = 0; i <= SPOOL_NSTATES; i++) {
        snprintf(path, sizeof(path), "%s/%s", self->qdir, spool_folder_names[i]);
        if (spool_make_folder(self, self->qfd, spool_folder_names[i], path, &made_state, err) < 0 ||
            (self->dfd[i] = spool_open_folder(self->qfd, spool_folder_names[i], path, err)) < 0)
            goto fail;
    }
    /* New folders are names in their parents: make them durable too. */
    if ((made_state && fsync(self->qfd) < 0) || (made_queue && fsync(rootfd) < 0)) {
        errbuf_set(err, "fsync of folder %s: %s", made_state ? self->qdir : root, strerror(errno));
        goto fail;
    }
    if (made_root) {
        char *copy = strdup(root);
        int pfd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        int bad = pfd < 0 || fsync(pfd) < 0;
        if (pfd >= 0)
            close(pfd);
        free(copy);
        if (bad) {
            errbuf_set(err, "fsync of the folder holding %s: %s", root, strerror(errno));
            goto fail;
        }
    }
    close(rootfd);
    return self;
fail:
    if (rootfd >= 0)
        close(rootfd);
    spool_destroy(&self);
    return NULL;
}

void
spool_destroy(spool **self_p)
{
    spool *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (int i = 0; i <= SPOOL_NSTATES; i++)
        if (self->dfd[i] >= 0)
            close(self->dfd[i]);
    if (self->qfd >= 0)
        close(self->qfd);
    for (int i = 0; i < SPOOL_NSTATES; i++)
        spool_scan_clear(&self->scans[i]);
    pthread_mutex_destroy(&self->lock);
    free(self->queue);
    free(self->qdir);
    free(self);
    *self_p = NULL;
}

void
spool_set_corrupt_handler(spool *self, spool_corrupt_fn *fn, void *arg)
{
    pthread_mutex_lock(&self->lock);
    self->on_corrupt = fn;
    self->on_corrupt_arg = arg;
    pthread_mutex_unlock(&self->lock);
}

const char *
spool_queue(const spool *self)
{
    return self->queue;
}

const char *
spool_state_name(enum spool_state state)
{
    return (unsigned)state < SPOOL_NSTATES ? spool_folder_names[state] : "?";
}

int
spool_state_parse(const char *name)
{
    for (int i = 0; name != NULL && i < SPOOL_NSTATES; i++)
        if (strcmp(name, spool_folder_names[i]) == 0)
            return i;
    return -1;
}

/* ---- putting ---- */

/* 1 when a message `id` is in any state folder that makes a put a no-op. Found is
 * not yet durable: the file may be what an earlier put left after its fsync or
 * rename failed (or a crashed process before its fsync), so its file and its
 * folder are fsync'd again before the caller may count it; a failure is RS_ERR,
 * like a failed put. `synced` (bit per folder) saves a batch fsyncing a folder
 * twice. Lock held: nothing of this process moves the file meanwhile. */
static int
spool_id_present(spool *self, const char *id, unsigned *synced, errbuf *err)
{
    static const int where[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED, SPOOL_DEAD,
                                SPOOL_DONE};
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        int f = where[i], fd, bad;

        fd = openat(self->dfd[f], id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
            continue;
        spool_path_of(self, f, id, path, sizeof(path));
        if (fd < 0)
            return errbuf_set(err, "looking for %s: %s", path, strerror(errno));
        bad = fsync(fd) < 0;
        if (bad)
            errbuf_set(err, "fsync of %s, found already there: %s", path, strerror(errno));
        close(fd);
        if (bad)
            return RS_ERR;
        if (!(*synced & (1u << f))) {
            if (spool_folder_sync(self, f, err) < 0)
                return RS_ERR;
            *synced |= 1u << f;
        }
        return 1;
    }
    return 0;
}

/* Creation times are unique and increasing within the process, so that messages
 * put one after the other are taken in that order even within one clock tick. */
static int64_t
spool_next_created(spool *self)
{
    int64_t t = spool_now_ns();

    if (t <= self->last_created)
        t = self->last_created + 1;
    self->last_created = t;
    return t;
}

int
spool_put(spool *self, const char *id, const char *key, const void *body, size_t len, errbuf *err)
{
    spool_item item = {id, key, body, len, 0, 0};

    if (spool_put_batch(self, &item, 1, err) < 0)
        return RS_ERR;
    return item.added;
}

/* Why a batch is as durable as single puts. A single put makes each message
 * durable in the order: content (fsync of the file) → name (rename) → name
 * durable (fsync of incoming/). The batch keeps that order for every message and
 * only shares the barriers: all contents are written into tmp/, then ONE
 * syncfs(2) of the file system, which returns after every dirty page and inode of
 * the file system — our closed tmp/ files among them — is on stable storage (on
 * ext4 and xfs it commits the journal and flushes the disk cache, as fsync does);
 * since Linux 5.8 it also returns the writeback errors of the file system that
 * happened since the descriptor was opened, so a lost write of any of our files
 * fails the batch as a failed fsync would fail a single put (on older kernels,
 * which do not report them, and on FUSE, where syncfs does not reach the daemon,
 * each file is fsync'd instead: spool_syncfs_works). Only then are the files
 * renamed into incoming/, and ONE fsync of incoming/ makes all the new names
 * durable. The caller is told "added" only after that last fsync, so nothing it
 * acknowledges (the outbox row) can be lost; a crash before leaves complete
 * messages in incoming/ (a repeated put finds them) or files in tmp/ (removed by
 * spool_recover), never a torn file under a message name. The price: syncfs
 * also writes back other programs' dirty data on the same file system, which is
 * why a batch of one uses fsync of its file. */
int
spool_put_batch(spool *self, spool_item *items, size_t n, errbuf *err)
{
    struct pending {
        size_t item;
        int64_t created;
        char tmp[NAME_MAX + 1];
        int written;
    } *pend = NULL;
    size_t np = 0, i;
    int added = 0, rc = RS_ERR, sync_each, present;
    unsigned synced = 0;
    char path[PATH_MAX];

    for (i = 0; i < n; i++) {
        items[i].added = 0;
        if (!spool_msg_valid_id(items[i].id))
            return errbuf_set(err, "spool %s: invalid message id \"%.140s\"", self->qdir,
                              items[i].id ? items[i].id : "(null)");
        if (items[i].key != NULL && items[i].key[0] != '\0' && !spool_msg_valid_id(items[i].key))
            return errbuf_set(err, "spool %s: invalid key \"%.140s\" of message %s", self->qdir,
                              items[i].key, items[i].id);
        if (items[i].len > SPOOL_BODY_MAX || (items[i].body == NULL && items[i].len > 0))
            return errbuf_set(err, "spool %s: message %s: body of %zu bytes refused", self->qdir,
                              items[i].id, items[i].len);
    }
    if (n == 0)
        return 0;
    if ((pend = calloc(n, sizeof(*pend))) == NULL)
        return errbuf_set(err, "spool %s: out of memory", self->qdir);

    /* Most repeated puts are caught here, before anything is written. */
    pthread_mutex_lock(&self->lock);
    for (i = 0; i < n; i++) {
        if ((present = spool_id_present(self, items[i].id, &synced, err)) < 0) {
            pthread_mutex_unlock(&self->lock);
            goto done;
        }
        if (present)
            continue;
        pend[np].item = i;
        pend[np++].created = spool_next_created(self);
    }
    pthread_mutex_unlock(&self->lock);

    sync_each = np == 1 || !self->use_syncfs;
    for (i = 0; i < np; i++) {
        const spool_item *it = &items[pend[i].item];
        char *data;
        size_t len;
        int w;

        if (spool_msg_render_claimed(it->id, self->queue, it->key, it->claim, pend[i].created,
                                     it->body, it->len, &data, &len, err) < 0)
            goto done;
        w = spool_tmp_write(self, it->id, data, len, sync_each, pend[i].tmp, sizeof(pend[i].tmp),
                            err);
        free(data);
        if (w < 0)
            goto done;
        pend[i].written = 1;
    }
    if (np > 0 && !sync_each && syncfs(self->qfd) < 0) {
        errbuf_set(err, "syncfs of the file system of %s: %s", self->qdir, strerror(errno));
        goto done;
    }

    /* Checked again under the lock: another thread may have put, taken and finished
     * the same id while we were writing. RENAME_NOREPLACE covers incoming/ itself. */
    pthread_mutex_lock(&self->lock);
    for (i = 0; i < np; i++) {
        spool_item *it = &items[pend[i].item];

        if ((present = spool_id_present(self, it->id, &synced, err)) < 0)
            break;
        if (present)
            continue;
        if (renameat2(self->dfd[SPOOL_TMP], pend[i].tmp, self->dfd[SPOOL_INCOMING], it->id,
                      RENAME_NOREPLACE) == 0) {
            pend[i].written = 0;
            it->added = 1;
            added++;
        } else if (errno != EEXIST) {
            errbuf_set(err, "renaming %s into incoming/: %s",
                       spool_path_of(self, SPOOL_TMP, pend[i].tmp, path, sizeof(path)),
                       strerror(errno));
            break;
        }
    }
    pthread_mutex_unlock(&self->lock);
    if (i < np)
        goto done;
    if (added > 0 && spool_folder_sync(self, SPOOL_INCOMING, err) < 0)
        goto done;
    rc = added;
done:
    for (i = 0; i < np; i++)
        if (pend[i].written)
            unlinkat(self->dfd[SPOOL_TMP], pend[i].tmp, 0);
    if (rc < 0) {
        /* What this batch renamed into incoming/ is not known to be durable (its
         * folder's fsync failed, or a later rename did): removed while still
         * there, so that the caller's retry writes it anew instead of finding a
         * file whose lost write the kernel has reported once and will not again.
         * What a thread took meanwhile is found by the retry, fsync'd again. */
        pthread_mutex_lock(&self->lock);
        for (i = 0; i < n; i++)
            if (items[i].added)
                unlinkat(self->dfd[SPOOL_INCOMING], items[i].id, 0);
        pthread_mutex_unlock(&self->lock);
        for (i = 0; i < n; i++)
            items[i].added = 0;
    }
    free(pend);
    return rc;
}

/* ---- taking and finishing ---- */

static int
spool_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct spool_candidate {
    const struct spool_entry *e;
};

static int
spool_candidate_cmp(const void *a, const void *b)
{
    const struct spool_entry *x = ((const struct spool_candidate *)a)->e,
                             *y = ((const struct spool_candidate *)b)->e;

    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return strcmp(x->name, y->name);
}

int
spool_take(spool *self, const char *const *busy, size_t n_busy, spool_msg **msg, errbuf *err)
{
    struct spool_candidate *cand = NULL;
    const char **keys = NULL;
    size_t nkeys = 0, i;
    char why[256], path[PATH_MAX];
    struct spool_scan *in;
    int rc = RS_ERR;

    *msg = NULL;
    pthread_mutex_lock(&self->lock);
    /* The folders are read in the order a message moves through them: active/,
     * then deferred/, then incoming/. A message that a delivery thread or wake
     * moves while we look is therefore seen at least once, in a place that makes
     * its key busy or makes it the oldest candidate; never missed, so that a
     * younger message of the same key cannot overtake it. active/ is not repaired:
     * its files are in the hands of delivery threads. */
    if (spool_scan_refresh(self, SPOOL_ACTIVE, 0, err) < 0 ||
        spool_scan_refresh(self, SPOOL_DEFERRED, 1, err) < 0 ||
        spool_scan_refresh(self, SPOOL_INCOMING, 1, err) < 0)
        goto done;
    in = &self->scans[SPOOL_INCOMING];
    if (in->n == 0) {
        rc = 0;
        goto done;
    }
    nkeys = self->scans[SPOOL_ACTIVE].n + self->scans[SPOOL_DEFERRED].n + n_busy;
    if ((cand = calloc(in->n, sizeof(*cand))) == NULL ||
        (nkeys > 0 && (keys = calloc(nkeys, sizeof(*keys))) == NULL)) {
        errbuf_set(err, "spool %s: out of memory", self->qdir);
        goto done;
    }
    nkeys = 0;
    for (int f = SPOOL_ACTIVE; f <= SPOOL_DEFERRED; f++)
        for (i = 0; i < self->scans[f].n; i++)
            if (self->scans[f].v[i].key != NULL)
                keys[nkeys++] = self->scans[f].v[i].key;
    for (i = 0; i < n_busy && busy != NULL; i++)
        if (busy[i] != NULL)
            keys[nkeys++] = busy[i];
    if (nkeys > 1)
        qsort(keys, nkeys, sizeof(*keys), spool_key_cmp);
    for (i = 0; i < in->n; i++)
        cand[i].e = &in->v[i];
    qsort(cand, in->n, sizeof(*cand), spool_candidate_cmp);

    rc = 0;
    for (i = 0; i < in->n && rc == 0; i++) {
        const struct spool_entry *e = cand[i].e;
        spool_msg *m;
        int got;

        if (e->key != NULL && nkeys > 0 &&
            bsearch(&e->key, keys, nkeys, sizeof(*keys), spool_key_cmp))
            continue;
        if ((got = spool_load(self, SPOOL_INCOMING, e->name, &m, why, sizeof(why), err)) < 0) {
            rc = RS_ERR;
            break;
        }
        if (got == SPOOL_LOAD_BAD &&
            spool_corrupt_move(self, SPOOL_INCOMING, e->name, why, err) < 0) {
            rc = RS_ERR;
            break;
        }
        if (got != SPOOL_LOAD_OK)
            continue;
        if (renameat2(self->dfd[SPOOL_INCOMING], e->name, self->dfd[SPOOL_ACTIVE], e->name,
                      RENAME_NOREPLACE) < 0) {
            int gone = errno == ENOENT;
            if (!gone)
                errbuf_set(err, "moving %s to active/: %s",
                           spool_path_of(self, SPOOL_INCOMING, e->name, path, sizeof(path)),
                           strerror(errno));
            spool_msg_destroy(&m);
            if (!gone)
                rc = RS_ERR;
            continue;
        }
        spool_msg_set_state(m, SPOOL_ACTIVE);
        *msg = m;
        rc = 1;
    }
done:
    pthread_mutex_unlock(&self->lock);
    free(cand);
    free(keys);
    return rc;
}

static int
spool_must_be(spool *self, const spool_msg *m, enum spool_state state, errbuf *err)
{
    if (m == NULL)
        return errbuf_set(err, "spool %s: no message", self->qdir);
    if (spool_msg_state(m) != state)
        return errbuf_set(err, "spool %s: message %s is %s, not %s", self->qdir, spool_msg_id(m),
                          spool_folder_names[spool_msg_state(m)], spool_folder_names[state]);
    return RS_OK;
}

/* Rewrites m, which is in folder `from`, and moves it to `to`. The new content is
 * written and fsync'd in tmp/, renamed over from/ID (so the message keeps its one
 * name: a crash leaves the old or the new content, never two copies), renamed to
 * to/ID, and to/ is fsync'd. */
static int
spool_rewrite_move(spool *self, spool_msg *m, int from, int to, errbuf *err)
{
    const char *id = spool_msg_id(m);
    char tmp[NAME_MAX + 1], path[PATH_MAX], *data;
    struct stat st;
    size_t len;
    int w;

    if (spool_msg_render(m, &data, &len, err) < 0)
        return RS_ERR;
    w = spool_tmp_write(self, id, data, len, 1, tmp, sizeof(tmp), err);
    free(data);
    if (w < 0)
        return RS_ERR;
    spool_path_of(self, from, id, path, sizeof(path));
    /* Renaming over a name that has gone would make a second copy. */
    if (fstatat(self->dfd[from], id, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        errbuf_set(err, "rewriting %s: %s", path, strerror(errno));
        goto fail;
    }
    if (renameat(self->dfd[SPOOL_TMP], tmp, self->dfd[from], id) < 0) {
        errbuf_set(err, "replacing %s: %s", path, strerror(errno));
        goto fail;
    }
    if (renameat2(self->dfd[from], id, self->dfd[to], id, RENAME_NOREPLACE) < 0)
        return errbuf_set(err, "moving %s to %s/: %s", path, spool_folder_names[to],
                          strerror(errno));
    if (spool_folder_sync(self, to, err) < 0)
        return RS_ERR;
    spool_msg_set_state(m, (enum spool_state)to);
    return RS_OK;
fail:
    unlinkat(self->dfd[SPOOL_TMP], tmp, 0);
    return RS_ERR;
}

int
spool_done(spool *self, spool_msg *m, errbuf *err)
{
    /* mtime = time of delivery: what spool_prune_done and `ls -lt done/` go by. */
    const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    char path[PATH_MAX];
    const char *id;

    if (spool_must_be(self, m, SPOOL_ACTIVE, err) < 0)
        return RS_ERR;
    id = spool_msg_id(m);
    spool_path_of(self, SPOOL_ACTIVE, id, path, sizeof(path));
    if (utimensat(self->dfd[SPOOL_ACTIVE], id, times, AT_SYMLINK_NOFOLLOW) < 0)
        return errbuf_set(err, "setting the time of %s: %s", path, strerror(errno));
    if (renameat2(self->dfd[SPOOL_ACTIVE], id, self->dfd[SPOOL_DONE], id, RENAME_NOREPLACE) < 0)
        return errbuf_set(err, "moving %s to done/: %s", path, strerror(errno));
    if (spool_folder_sync(self, SPOOL_DONE, err) < 0)
        return RS_ERR;
    spool_msg_set_state(m, SPOOL_DONE);
    return RS_OK;
}

/* Rewrites active message m with what a deferral (to deferred/) or a death (to
 * dead/) records, and moves it there. The change is made to a copy, written, and
 * only then swapped into m: when the write fails, m is still what its file in
 * active/ says. */
static int
spool_rewrite_active(spool *self, spool_msg *m, int to, int counted, time_t due, const char *error,
                     const char *reason, errbuf *err)
{
    spool_msg *next = NULL;
    int rc = RS_ERR;

    if (spool_must_be(self, m, SPOOL_ACTIVE, err) < 0 || (next = spool_msg_copy(m, err)) == NULL)
        return RS_ERR;
    if (to == SPOOL_DEFERRED ? spool_msg_mark_deferred(next, counted, due, error, err) < 0
                             : spool_msg_mark_dead(next, error, reason, time(NULL), err) < 0)
        goto done;
    if (spool_rewrite_move(self, next, SPOOL_ACTIVE, to, err) < 0)
        goto done;
    spool_msg_swap_record(m, next);
    rc = RS_OK;
done:
    spool_msg_destroy(&next);
    return rc;
}

int
spool_defer(spool *self, spool_msg *m, time_t due, const char *error, errbuf *err)
{
    return spool_rewrite_active(self, m, SPOOL_DEFERRED, 1, due, error, NULL, err);
}

int
spool_postpone(spool *self, spool_msg *m, time_t due, const char *error, errbuf *err)
{
    return spool_rewrite_active(self, m, SPOOL_DEFERRED, 0, due, error, NULL, err);
}

int
spool_kill(spool *self, spool_msg *m, const char *error, const char *reason, errbuf *err)
{
    return spool_rewrite_active(self, m, SPOOL_DEAD, 0, 0, error, reason, err);
}

int
spool_wake(spool *self, time_t now, time_t *next_due, errbuf *err)
{
    struct spool_scan *s = &self->scans[SPOOL_DEFERRED];
    char path[PATH_MAX];
    time_t next = 0;
    int woken = 0, rc = RS_ERR;

    pthread_mutex_lock(&self->lock);
    if (spool_scan_refresh(self, SPOOL_DEFERRED, 1, err) < 0)
        goto done;
    for (size_t i = 0; i < s->n; i++) {
        const struct spool_entry *e = &s->v[i];

        if (e->due > now) {
            if (next == 0 || e->due < next)
                next = e->due;
            continue;
        }
        if (renameat2(self->dfd[SPOOL_DEFERRED], e->name, self->dfd[SPOOL_INCOMING], e->name,
                      RENAME_NOREPLACE) == 0)
            woken++;
        else if (errno != ENOENT) {
            errbuf_set(err, "moving %s to incoming/: %s",
                       spool_path_of(self, SPOOL_DEFERRED, e->name, path, sizeof(path)),
                       strerror(errno));
            goto done;
        }
    }
    rc = RS_OK;
done:
    pthread_mutex_unlock(&self->lock);
    if (rc == RS_OK && woken > 0 && spool_folder_sync(self, SPOOL_INCOMING, err) < 0)
        rc = RS_ERR;
    if (next_due != NULL)
        *next_due = next;
    return rc < 0 ? RS_ERR : woken;
}

/* ---- recovery, redrive, pruning ---- */

/* Removes tmp/ files whose writer is gone. The name starts with the writer's pid;
 * files of live processes (restockctl redriving now) are left alone. */
static int
spool_recover_tmp(spool *self, spool_recovery *r, errbuf *err)
{
    struct spool_name *names;
    size_t n;
    char path[PATH_MAX];

    if (spool_folder_list(self, SPOOL_TMP, &names, &n, err) < 0)
        return RS_ERR;
    for (size_t i = 0; i < n; i++) {
        long pid = strtol(names[i].s, NULL, 10);

        if (pid > 0 && pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            continue;
        if (unlinkat(self->dfd[SPOOL_TMP], names[i].s, 0) < 0 && errno != ENOENT) {
            errbuf_set(err, "removing %s: %s",
                       spool_path_of(self, SPOOL_TMP, names[i].s, path, sizeof(path)),
                       strerror(errno));
            spool_names_free(names, n);
            return RS_ERR;
        }
        r->tmp_removed++;
    }
    spool_names_free(names, n);
    return RS_OK;
}

/* Verifies every file of a folder; bad ones go to corrupt/. From active/, good ones
 * go back to incoming/: their delivery was cut by the crash. */
static int
spool_recover_folder(spool *self, int folder, spool_recovery *r, errbuf *err)
{
    struct spool_name *names;
    size_t n, i;
    char why[256], path[PATH_MAX];
    int rc = RS_ERR;

    if (spool_folder_list(self, folder, &names, &n, err) < 0)
        return RS_ERR;
    for (i = 0; i < n; i++) {
        spool_msg *m = NULL;
        int got = SPOOL_LOAD_BAD;

        if (!spool_msg_valid_id(names[i].s))
            snprintf(why, sizeof(why), "file name is not a message id");
        else if ((got = spool_load(self, folder, names[i].s, &m, why, sizeof(why), err)) < 0)
            goto done;
        spool_msg_destroy(&m);
        if (got == SPOOL_LOAD_GONE)
            continue;
        if (got == SPOOL_LOAD_BAD) {
            if (spool_corrupt_move(self, folder, names[i].s, why, err) < 0)
                goto done;
            r->corrupt++;
            continue;
        }
        r->verified++;
        if (folder != SPOOL_ACTIVE)
            continue;
        if (renameat2(self->dfd[SPOOL_ACTIVE], names[i].s, self->dfd[SPOOL_INCOMING], names[i].s,
                      RENAME_NOREPLACE) == 0) {
            r->requeued++;
        } else if (errno == EEXIST) {
            /* Cannot happen while each message has one name; keep both for a human. */
            if (spool_corrupt_move(self, folder, names[i].s, "a copy is also in incoming/", err) <
                0)
                goto done;
            r->corrupt++;
        } else if (errno != ENOENT) {
            errbuf_set(err, "moving %s to incoming/: %s",
                       spool_path_of(self, folder, names[i].s, path, sizeof(path)),
                       strerror(errno));
            goto done;
        }
    }
    rc = RS_OK;
done:
    spool_names_free(names, n);
    return rc;
}

/* One message in two state folders: a power cut kept the rename that moved it
 * (the new folder was fsync'd) but undid the removal of its old name (the old
 * folder was not). A journalling file system orders the two; a file system that
 * does not (tests/fault/powercut.py --strict-spool) leaves both. One copy is kept,
 * by the first rule that applies: a delivered one (done/: no message is put again
 * under a delivered id), else a waiting one (incoming/, active/, deferred/: it may
 * be a redrive newer than its copy in dead/, and a message sent once more is at
 * least once; a deferral's attempt count may be lost with it), preferring the
 * folder it would be sent from soonest; else the copy in dead/. */
static int
spool_recover_copies(spool *self, spool_recovery *r, errbuf *err)
{
    static const int keep_order[] = {SPOOL_DONE, SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED,
                                     SPOOL_DEAD};
    enum { N = sizeof(keep_order) / sizeof(keep_order[0]) };
    struct spool_name *names[N] = {NULL};
    size_t n[N] = {0};
    int changed[N] = {0}, rc = RS_ERR;
    char path[PATH_MAX];

    for (int f = 0; f < N; f++)
        if (spool_folder_list(self, keep_order[f], &names[f], &n[f], err) < 0)
            goto done;
    /* Each name against the folders before its own: the first that has it keeps it. */
    for (int f = 1; f < N; f++)
        for (size_t i = 0; i < n[f]; i++)
            for (int kept = 0; kept < f; kept++) {
                if (n[kept] == 0 || bsearch(&names[f][i], names[kept], n[kept],
                                            sizeof(*names[kept]), spool_name_cmp) == NULL)
                    continue;
                if (unlinkat(self->dfd[keep_order[f]], names[f][i].s, 0) < 0 && errno != ENOENT) {
                    errbuf_set(
                        err, "removing %s (a copy is in %s/): %s",
                        spool_path_of(self, keep_order[f], names[f][i].s, path, sizeof(path)),
                        spool_folder_names[keep_order[kept]], strerror(errno));
                    goto done;
                }
                log_warn("event=spool_copy_removed queue=%s id=%s kept=%s removed=%s", self->queue,
                         names[f][i].s, spool_folder_names[keep_order[kept]],
                         spool_folder_names[keep_order[f]]);
                changed[f] = 1;
                r->copies_removed++;
                break;
            }
    for (int f = 0; f < N; f++)
        if (changed[f] && spool_folder_sync(self, keep_order[f], err) < 0)
            goto done;
    rc = RS_OK;
done:
    for (int f = 0; f < N; f++)
        spool_names_free(names[f], n[f]);
    return rc;
}

int
spool_recover(spool *self, spool_recovery *report, errbuf *err)
{
    /* active/ last, so that what it moves to incoming/ is not verified twice. */
    static const int order[] = {SPOOL_INCOMING, SPOOL_DEFERRED, SPOOL_DEAD, SPOOL_DONE,
                                SPOOL_ACTIVE};
    spool_recovery r = {0};
    int rc = RS_ERR;

    pthread_mutex_lock(&self->lock);
    if (spool_recover_tmp(self, &r, err) < 0 || spool_recover_copies(self, &r, err) < 0)
        goto done;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (spool_recover_folder(self, order[i], &r, err) < 0)
            goto done;
    if (r.requeued > 0 && spool_folder_sync(self, SPOOL_INCOMING, err) < 0)
        goto done;
    rc = RS_OK;
done:
    for (int i = 0; i < SPOOL_NSTATES; i++)
        spool_scan_clear(&self->scans[i]);
    pthread_mutex_unlock(&self->lock);
    if (report != NULL)
        *report = r;
    return rc;
}

/* Redrives one dead message. Returns 1, 0 when it is not there (or corrupt, then
 * moved, when !must_exist), RS_ERR. */
static int
spool_redrive_one(spool *self, const char *id, int must_exist, errbuf *err)
{
    char why[256], path[PATH_MAX];
    spool_msg *m;
    int got, rc = RS_ERR;

    spool_path_of(self, SPOOL_DEAD, id, path, sizeof(path));
    if ((got = spool_load(self, SPOOL_DEAD, id, &m, why, sizeof(why), err)) < 0)
        return RS_ERR;
    if (got == SPOOL_LOAD_GONE)
        return must_exist ? errbuf_set(err, "no dead message %s (%s)", id, path) : 0;
    if (got == SPOOL_LOAD_BAD) {
        if (must_exist)
            return errbuf_set(err, "dead message %s is corrupt: %s", path, why);
        return spool_corrupt_move(self, SPOOL_DEAD, id, why, err) < 0 ? RS_ERR : 0;
    }
    if (spool_msg_mark_redriven(m, time(NULL), err) < 0 ||
        spool_rewrite_move(self, m, SPOOL_DEAD, SPOOL_INCOMING, err) < 0)
        goto done;
    rc = 1;
done:
    spool_msg_destroy(&m);
    return rc;
}

int
spool_redrive(spool *self, const char *id, errbuf *err)
{
    struct spool_name *names = NULL;
    size_t n = 0;
    int count = 0, rc = RS_ERR, one;

    if (id != NULL && !spool_msg_valid_id(id))
        return errbuf_set(err, "spool %s: invalid message id \"%.140s\"", self->qdir, id);
    /* Two operators redriving at once must not both rewrite one message. */
    if (flock(self->qfd, LOCK_EX) < 0)
        return errbuf_set(err, "locking %s: %s", self->qdir, strerror(errno));
    if (id != NULL) {
        rc = spool_redrive_one(self, id, 1, err);
        goto done;
    }
    if (spool_folder_list(self, SPOOL_DEAD, &names, &n, err) < 0)
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (!spool_msg_valid_id(names[i].s))
            continue;
        if ((one = spool_redrive_one(self, names[i].s, 0, err)) < 0)
            goto done;
        count += one;
    }
    rc = count;
done:
    flock(self->qfd, LOCK_UN);
    spool_names_free(names, n);
    return rc;
}

int
spool_prune_done(spool *self, time_t age, errbuf *err)
{
    struct spool_name *names;
    size_t n;
    time_t limit = time(NULL) - age;
    char path[PATH_MAX];
    int count = 0;

    if (spool_folder_list(self, SPOOL_DONE, &names, &n, err) < 0)
        return RS_ERR;
    for (size_t i = 0; i < n; i++) {
        struct stat st;

        spool_path_of(self, SPOOL_DONE, names[i].s, path, sizeof(path));
        if (fstatat(self->dfd[SPOOL_DONE], names[i].s, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            errbuf_set(err, "looking at %s: %s", path, strerror(errno));
            goto fail;
        }
        if (st.st_mtime > limit)
            continue;
        if (unlinkat(self->dfd[SPOOL_DONE], names[i].s, 0) < 0 && errno != ENOENT) {
            errbuf_set(err, "removing %s: %s", path, strerror(errno));
            goto fail;
        }
        count++;
    }
    spool_names_free(names, n);
    return count;
fail:
    spool_names_free(names, n);
    return RS_ERR;
}

/* ---- inspection ---- */

long
spool_count(spool *self, enum spool_state state, errbuf *err)
{
    struct spool_name *names;
    size_t n;

    if ((unsigned)state >= SPOOL_NSTATES)
        return errbuf_set(err, "spool %s: no state %d", self->qdir, (int)state);
    if (spool_folder_list(self, state, &names, &n, err) < 0)
        return RS_ERR;
    spool_names_free(names, n);
    return (long)n;
}

struct spool_listed {
    const char *name;
    spool_msg *m;
    char why[256];
};

static int
spool_listed_cmp(const void *a, const void *b)
{
    const struct spool_listed *x = a, *y = b;

    if ((x->m == NULL) != (y->m == NULL))
        return x->m == NULL ? 1 : -1; /* unreadable files last */
    if (x->m != NULL && spool_msg_created_ns(x->m) != spool_msg_created_ns(y->m))
        return spool_msg_created_ns(x->m) < spool_msg_created_ns(y->m) ? -1 : 1;
    return strcmp(x->name, y->name);
}

int
spool_each(spool *self, enum spool_state state, spool_each_fn *fn, void *arg, errbuf *err)
{
    struct spool_name *names;
    struct spool_listed *v = NULL;
    size_t n, k = 0, i;
    int rc = RS_ERR;

    if ((unsigned)state >= SPOOL_NSTATES)
        return errbuf_set(err, "spool %s: no state %d", self->qdir, (int)state);
    if (spool_folder_list(self, state, &names, &n, err) < 0)
        return RS_ERR;
    if (n > 0 && (v = calloc(n, sizeof(*v))) == NULL) {
        errbuf_set(err, "spool %s: out of memory", self->qdir);
        goto done;
    }
    for (i = 0; i < n; i++) {
        int got = SPOOL_LOAD_BAD;

        v[k].name = names[i].s;
        if (!spool_msg_valid_id(names[i].s))
            snprintf(v[k].why, sizeof(v[k].why), "file name is not a message id");
        else if ((got = spool_load(self, state, names[i].s, &v[k].m, v[k].why, sizeof(v[k].why),
                                   err)) < 0)
            goto done;
        if (got != SPOOL_LOAD_GONE)
            k++;
    }
    if (k > 1)
        qsort(v, k, sizeof(*v), spool_listed_cmp);
    rc = RS_OK;
    for (i = 0; i < k && rc == RS_OK; i++)
        rc = fn(arg, v[i].name, v[i].m, v[i].m ? NULL : v[i].why);
done:
    for (i = 0; i < n && v != NULL; i++)
        spool_msg_destroy(&v[i].m);
    free(v);
    spool_names_free(names, n);
    return rc;
}

int
spool_get(spool *self, const char *id, spool_msg **msg, errbuf *err)
{
    /* In the order messages move, twice: a message moving while we look (forward,
     * or back to incoming by wake or redrive) is found on the second pass. */
    static const int order[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED, SPOOL_DEAD,
                                SPOOL_DONE};
    char why[256], path[PATH_MAX];

    *msg = NULL;
    if (!spool_msg_valid_id(id))
        return errbuf_set(err, "spool %s: invalid message id \"%.140s\"", self->qdir,
                          id ? id : "(null)");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            int got = spool_load(self, order[i], id, msg, why, sizeof(why), err);
            if (got < 0)
                return RS_ERR;
            if (got == SPOOL_LOAD_OK)
                return 1;
            if (got == SPOOL_LOAD_BAD)
                return errbuf_set(err, "message %s is corrupt: %s",
                                  spool_path_of(self, order[i], id, path, sizeof(path)), why);
        }
    return 0;
}

int
spool_oldest_waiting(spool *self, time_t *created, errbuf *err)
{
    return spool_oldest_waiting_except(self, NULL, created, err);
}

int
spool_oldest_waiting_except(spool *self, const char *except, time_t *created, errbuf *err)
{
    /* In flight counts: a message retried often is in active/ at many a look, and
     * is no less late for it. In the order a message moves, so that one moving
     * meanwhile is seen once at least. */
    static const int folders[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED};
    int64_t oldest = 0;
    int rc = RS_ERR;

    *created = 0;
    pthread_mutex_lock(&self->lock);
    for (size_t k = 0; k < sizeof(folders) / sizeof(folders[0]); k++) {
        int f = folders[k];
        if (spool_scan_refresh(self, f, 0, err) < 0)
            goto done;
        for (size_t i = 0; i < self->scans[f].n; i++) {
            const struct spool_entry *e = &self->scans[f].v[i];
            if (except != NULL && strncmp(e->name, except, strlen(except)) == 0)
                continue;
            if (oldest == 0 || e->created < oldest)
                oldest = e->created;
        }
    }
    *created = (time_t)(oldest / SPOOL_NS);
    rc = RS_OK;
done:
    pthread_mutex_unlock(&self->lock);
    return rc;
}

/* A spool_each_fn adding each name to a struct spool_names; 1 when out of memory. */
static int
spool_names_add(void *arg, const char *name, const spool_msg *m, const char *problem)
{
    struct spool_names *names = arg;

    (void)m;
    (void)problem;
    if (names->n == names->cap) {
        size_t cap = names->cap ? 2 * names->cap : 64;
        char **grown = realloc(names->v, cap * sizeof(*grown));
        if (grown == NULL)
            return 1;
        names->v = grown;
        names->cap = cap;
    }
    if ((names->v[names->n] = strdup(name)) == NULL)
        return 1;
    names->n++;
    return 0;
}

int
spool_names_of(spool *self, enum spool_state state, struct spool_names *names, errbuf *err)
{
    int rc;

    *names = (struct spool_names){0};
    rc = spool_each(self, state, spool_names_add, names, err);
    if (rc > 0)
        return errbuf_set(err, "spool %s: out of memory", self->qdir);
    return rc;
}

void
spool_names_clear(struct spool_names *names)
{
    for (size_t i = 0; i < names->n; i++)
        free(names->v[i]);
    free(names->v);
    *names = (struct spool_names){0};
}
