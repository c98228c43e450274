/* spool: durable on-disk queues, one text file per message and one folder per
 * state (see spool.h for the layout, the file format and the rules). */
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
#include <sys/utsname.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "spool.h"

#define MAGIC       "restock-spool 1\n"
#define TMP         SPOOL_NSTATES /* tmp/ is not a state, but has a descriptor */
#define HASH_BYTES  crypto_generichash_BYTES
#define HASH_HEX    (2 * HASH_BYTES)
#define END_LINE    (4 + HASH_HEX + 1) /* "end " hex "\n" */
#define FILE_MAX    (SPOOL_BODY_MAX + 65536)
#define HISTORY_MAX 20 /* redrives remembered per message; older ones are dropped */
#define NS          1000000000LL

static const char *const folder_names[SPOOL_NSTATES + 1] = {
    "incoming", "active", "deferred", "dead", "done", "corrupt", "tmp"};

/* Results of reading one message file. */
enum { LOAD_GONE = 0, LOAD_OK = 1, LOAD_BAD = 2 };

struct spool_msg {
    enum spool_state state;
    char *id, *queue, *key;
    int64_t created; /* nanoseconds since the epoch: FIFO order within a second */
    int attempts;
    time_t due, died_at;
    char *last_error, *death_reason;
    char **history;
    size_t nhistory;
    char *body;
    size_t len;
};

/* What spool_take needs to know of a file without reading it again: the cache of
 * one folder, refreshed from readdir at each take (so that files another process
 * renamed in are seen) but reading only files it has not seen (name and inode). */
struct entry {
    char *name, *key;
    ino_t ino;
    int64_t created;
    time_t due;
    int moved; /* handed over to the new cache */
};

struct scan {
    struct entry *v; /* sorted by name */
    size_t n;
};

/* A directory entry: name and inode. */
struct name {
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
    int syncfs_reports; /* the kernel reports writeback errors through syncfs */
    spool_corrupt_fn *on_corrupt;
    void *on_corrupt_arg;
    struct scan scans[SPOOL_NSTATES];
};

/* ---- small helpers ---- */

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void
iso_time(time_t t, char out[32])
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(out, "?");
}

static const char *
path_of(const spool *sp, int folder, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s/%s", sp->qdir, folder_names[folder], name);
    return buf;
}

/* Errors that say the process, not the file, is in trouble: never a reason to call
 * a file corrupt. */
static int
resource_errno(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS;
}

int
spool_valid_id(const char *id)
{
    size_t i;

    if (id == NULL || id[0] == '\0' || id[0] == '.')
        return 0;
    for (i = 0; id[i] != '\0'; i++) {
        char c = id[i];
        if (i >= SPOOL_ID_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A header value: one line (control characters become spaces), at most
 * SPOOL_TEXT_MAX bytes, not cut inside a UTF-8 sequence. NULL for NULL or "". */
static int
text_clean(const char *s, char **out)
{
    size_t n, i;

    *out = NULL;
    if (s == NULL || s[0] == '\0')
        return RS_OK;
    n = strlen(s);
    if (n > SPOOL_TEXT_MAX) {
        n = SPOOL_TEXT_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    if ((*out = malloc(n + 1)) == NULL)
        return RS_ERR;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        (*out)[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    (*out)[n] = '\0';
    return RS_OK;
}

static int
kernel_at_least(int major, int minor)
{
    struct utsname u;
    int a = 0, b = 0;

    if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &a, &b) != 2)
        return 0;
    return a > major || (a == major && b >= minor);
}

/* ---- messages: text form ---- */

static void
msg_free_fields(spool_msg *m)
{
    free(m->id);
    free(m->queue);
    free(m->key);
    free(m->last_error);
    free(m->death_reason);
    for (size_t i = 0; i < m->nhistory; i++)
        free(m->history[i]);
    free(m->history);
    free(m->body);
}

void
spool_msg_destroy(spool_msg **m)
{
    if (m == NULL || *m == NULL)
        return;
    msg_free_fields(*m);
    free(*m);
    *m = NULL;
}

/* The file's bytes: headers, body, and the end line with the checksum of all
 * that precedes it. */
static int
msg_render(const spool_msg *m, char **out, size_t *outlen, errbuf *err)
{
    char *buf = NULL, iso[32];
    size_t len = 0;
    unsigned char hash[HASH_BYTES];
    char hex[HASH_HEX + 1];
    FILE *f;
    int bad;

    if ((f = open_memstream(&buf, &len)) == NULL)
        return errbuf_set(err, "rendering message %s: %s", m->id, strerror(errno));
    fputs(MAGIC, f);
    fprintf(f, "id: %s\nqueue: %s\n", m->id, m->queue);
    if (m->key != NULL)
        fprintf(f, "key: %s\n", m->key);
    iso_time((time_t)(m->created / NS), iso);
    fprintf(f, "created: %lld.%09lld %s\n", (long long)(m->created / NS),
            (long long)(m->created % NS), iso);
    fprintf(f, "attempts: %d\n", m->attempts);
    if (m->due != 0) {
        iso_time(m->due, iso);
        fprintf(f, "due: %lld %s\n", (long long)m->due, iso);
    }
    if (m->last_error != NULL)
        fprintf(f, "last-error: %s\n", m->last_error);
    if (m->died_at != 0) {
        iso_time(m->died_at, iso);
        fprintf(f, "died-at: %lld %s\n", (long long)m->died_at, iso);
    }
    if (m->death_reason != NULL)
        fprintf(f, "death-reason: %s\n", m->death_reason);
    for (size_t i = 0; i < m->nhistory; i++)
        fprintf(f, "history: %s\n", m->history[i]);
    fprintf(f, "length: %zu\n\n", m->len);
    if (m->len > 0)
        fwrite(m->body, 1, m->len, f);
    fputc('\n', f);
    bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return errbuf_set(err, "rendering message %s: out of memory", m->id);
    }
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)buf, len, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    {
        char *grown = realloc(buf, len + END_LINE + 1);
        if (grown == NULL) {
            free(buf);
            return errbuf_set(err, "rendering message %s: out of memory", m->id);
        }
        buf = grown;
    }
    snprintf(buf + len, END_LINE + 1, "end %s\n", hex);
    *out = buf;
    *outlen = len + END_LINE;
    return RS_OK;
}

/* Parses a whole decimal number in [min, max] ending at the end of v or a space. */
static int
parse_num(const char *v, long long min, long long max, long long *out, const char **rest)
{
    char *end;
    long long x;

    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (errno != 0 || x < min || x > max || (*end != '\0' && *end != ' ' && *end != '.'))
        return -1;
    *out = x;
    if (rest != NULL)
        *rest = end;
    return 0;
}

#define BAD(...) (snprintf(why, whylen, __VA_ARGS__), 0)

/* Applies one header line to m. Returns 1, or 0 with why filled. Unknown headers
 * are skipped, so that a later version may add some. */
static int
msg_header(spool_msg *m, const char *name, const char *v, int *seen_length, char *why,
           size_t whylen)
{
    long long x;
    const char *rest;

    if (strcmp(name, "id") == 0) {
        free(m->id);
        if ((m->id = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "queue") == 0) {
        free(m->queue);
        if ((m->queue = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "key") == 0) {
        if (!spool_valid_id(v))
            return BAD("invalid key \"%.40s\"", v);
        free(m->key);
        if ((m->key = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "created") == 0) {
        long long ns = 0;
        if (parse_num(v, 0, INT64_MAX / NS - 1, &x, &rest) < 0 ||
            (*rest == '.' && (parse_num(rest + 1, 0, NS - 1, &ns, NULL) < 0)))
            return BAD("bad created time \"%.40s\"", v);
        m->created = x * NS + ns;
    } else if (strcmp(name, "attempts") == 0) {
        if (parse_num(v, 0, INT_MAX, &x, NULL) < 0)
            return BAD("bad attempts \"%.40s\"", v);
        m->attempts = (int)x;
    } else if (strcmp(name, "due") == 0) {
        if (parse_num(v, 0, INT64_MAX / NS, &x, NULL) < 0)
            return BAD("bad due time \"%.40s\"", v);
        m->due = (time_t)x;
    } else if (strcmp(name, "died-at") == 0) {
        if (parse_num(v, 0, INT64_MAX / NS, &x, NULL) < 0)
            return BAD("bad died-at time \"%.40s\"", v);
        m->died_at = (time_t)x;
    } else if (strcmp(name, "last-error") == 0 || strcmp(name, "death-reason") == 0) {
        char **slot = name[0] == 'l' ? &m->last_error : &m->death_reason;
        free(*slot);
        if ((*slot = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "history") == 0) {
        char **grown = realloc(m->history, (m->nhistory + 1) * sizeof(*grown));
        if (grown == NULL)
            return -1;
        m->history = grown;
        if ((m->history[m->nhistory] = strdup(v)) == NULL)
            return -1;
        m->nhistory++;
    } else if (strcmp(name, "length") == 0) {
        if (parse_num(v, 0, SPOOL_BODY_MAX, &x, NULL) < 0)
            return BAD("bad length \"%.40s\"", v);
        m->len = (size_t)x;
        *seen_length = 1;
    }
    return 1;
}

/* Checks and reads a file's bytes. `name` (the file name) and `queue` must match
 * the headers. Returns 1 with *out, 0 when the bytes are not a sound message (why
 * says what is wrong), RS_ERR when out of memory. */
static int
msg_parse(const char *buf, size_t len, const char *name, const char *queue, spool_msg **out,
          char *why, size_t whylen, errbuf *err)
{
    unsigned char want[HASH_BYTES], got[HASH_BYTES];
    size_t end, binlen;
    const char *p, *nl, *body;
    spool_msg *m;
    int seen_length = 0, seen_created = 0, seen_attempts = 0, rc = 0;

    *out = NULL;
    if (len < sizeof(MAGIC) - 1 + END_LINE)
        return BAD("too short (%zu bytes): torn or not a message", len);
    end = len - END_LINE;
    if (buf[len - 1] != '\n' || memcmp(buf + end, "end ", 4) != 0 ||
        (end > 0 && buf[end - 1] != '\n'))
        return BAD("no end line: torn or not a message");
    if (sodium_hex2bin(want, sizeof(want), buf + end + 4, HASH_HEX, NULL, &binlen, NULL) != 0 ||
        binlen != sizeof(want))
        return BAD("end line has no checksum");
    crypto_generichash(got, sizeof(got), (const unsigned char *)buf, end, NULL, 0);
    if (sodium_memcmp(want, got, sizeof(got)) != 0)
        return BAD("checksum mismatch: the file was damaged");
    if (memcmp(buf, MAGIC, sizeof(MAGIC) - 1) != 0)
        return BAD("first line is not \"restock-spool 1\"");
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return errbuf_set(err, "reading message %s: out of memory", name);
    /* Headers: "name: value" lines up to an empty line. */
    for (p = buf + sizeof(MAGIC) - 1;; p = nl + 1) {
        char line[SPOOL_TEXT_MAX * 3], *colon;
        size_t n;

        if ((nl = memchr(p, '\n', (size_t)(buf + end - p))) == NULL) {
            rc = BAD("headers do not end");
            goto fail;
        }
        n = (size_t)(nl - p);
        if (n == 0)
            break;
        if (n >= sizeof(line) || memchr(p, '\0', n) != NULL) {
            rc = BAD("header line too long or with a NUL byte");
            goto fail;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        if ((colon = strstr(line, ": ")) == NULL) {
            rc = BAD("header line without \": \": \"%.40s\"", line);
            goto fail;
        }
        *colon = '\0';
        seen_created |= strcmp(line, "created") == 0;
        seen_attempts |= strcmp(line, "attempts") == 0;
        if ((rc = msg_header(m, line, colon + 2, &seen_length, why, whylen)) <= 0)
            goto fail;
    }
    body = nl + 1;
    if (m->id == NULL || m->queue == NULL || !seen_created || !seen_attempts || !seen_length) {
        rc = BAD("a header is missing (id, queue, created, attempts, length)");
        goto fail;
    }
    if (strcmp(m->id, name) != 0) {
        rc = BAD("id \"%.40s\" is not the file name", m->id);
        goto fail;
    }
    if (strcmp(m->queue, queue) != 0) {
        rc = BAD("message of queue \"%.40s\", not of this one", m->queue);
        goto fail;
    }
    if ((size_t)(buf + end - body) != m->len + 1 || body[m->len] != '\n') {
        rc = BAD("length %zu does not match the body: torn", m->len);
        goto fail;
    }
    if ((m->body = malloc(m->len + 1)) == NULL) {
        rc = -1;
        goto fail;
    }
    memcpy(m->body, body, m->len);
    m->body[m->len] = '\0';
    *out = m;
    return 1;
fail:
    spool_msg_destroy(&m);
    if (rc < 0)
        return errbuf_set(err, "reading message %s: out of memory", name);
    return 0;
}

#undef BAD

/* ---- files ---- */

/* Reads and parses file `name` of a folder. Returns LOAD_OK with *out, LOAD_GONE
 * when it vanished (another thread or process moved it), LOAD_BAD when it cannot
 * be read or is not a sound message (why), RS_ERR when the process is short of
 * something (descriptors, memory). */
static int
msg_load(spool *sp, int folder, const char *name, spool_msg **out, char *why, size_t whylen,
         errbuf *err)
{
    char path[PATH_MAX], *buf = NULL;
    struct stat st;
    size_t len = 0;
    int fd, rc;

    *out = NULL;
    path_of(sp, folder, name, path, sizeof(path));
    /* O_NONBLOCK: a FIFO left in a folder must not hang the worker. */
    fd = openat(sp->dfd[folder], name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return LOAD_GONE;
        if (resource_errno(errno))
            return errbuf_set(err, "opening %s: %s", path, strerror(errno));
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return LOAD_BAD;
    }
    if (fstat(fd, &st) < 0) {
        rc = errbuf_set(err, "looking at %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        rc = LOAD_BAD;
        goto done;
    }
    if (st.st_size > FILE_MAX) {
        snprintf(why, whylen, "too large (%lld bytes)", (long long)st.st_size);
        rc = LOAD_BAD;
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
            rc = LOAD_BAD;
            goto done;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    rc = msg_parse(buf, len, name, sp->queue, out, why, whylen, err);
    if (rc == 1) {
        (*out)->state = (enum spool_state)folder;
        rc = LOAD_OK;
    } else if (rc == 0) {
        rc = LOAD_BAD;
    }
done:
    free(buf);
    close(fd);
    return rc;
}

static int
folder_sync(spool *sp, int folder, errbuf *err)
{
    if (fsync(sp->dfd[folder]) < 0)
        return errbuf_set(err, "fsync of folder %s/%s: %s", sp->qdir, folder_names[folder],
                          strerror(errno));
    return RS_OK;
}

/* Writes a new file into tmp/, named PID.SEQ.ID so that spool_recover can tell a
 * dead process's leftover from a file another process is writing now. fsync'd
 * when `sync` (spool_put_batch syncs a whole batch at once instead). */
static int
tmp_write(spool *sp, const char *id, const char *data, size_t len, int sync, char *tmp,
          size_t tmpsize, errbuf *err)
{
    char path[PATH_MAX];
    const char *what = "creating";
    size_t off = 0;
    int fd, e, made = 0;

    snprintf(tmp, tmpsize, "%ld.%lu.%s", (long)getpid(), atomic_fetch_add(&sp->tmp_seq, 1) + 1, id);
    fd = openat(sp->dfd[TMP], tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto fail;
    made = 1;
    what = "changing the owner of";
    if (sp->chown_files && fchown(fd, sp->uid, sp->gid) < 0)
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
        unlinkat(sp->dfd[TMP], tmp, 0);
    return errbuf_set(err, "%s %s: %s", what, path_of(sp, TMP, tmp, path, sizeof(path)),
                      strerror(e));
}

/* Moves a bad file out of the way, so that the queue keeps flowing, and reports it.
 * Never replaces an earlier corrupt file of the same name. */
static int
corrupt_move(spool *sp, int folder, const char *name, const char *problem, errbuf *err)
{
    char target[NAME_MAX + 1], from[PATH_MAX], to[PATH_MAX];
    int i;

    path_of(sp, folder, name, from, sizeof(from));
    for (i = 0; i < 1000; i++) {
        if (i == 0)
            snprintf(target, sizeof(target), "%.240s", name);
        else
            snprintf(target, sizeof(target), "%.240s.%d", name, i);
        if (renameat2(sp->dfd[folder], name, sp->dfd[SPOOL_CORRUPT], target, RENAME_NOREPLACE) == 0)
            break;
        if (errno == ENOENT)
            return RS_OK; /* moved by someone else meanwhile */
        if (errno != EEXIST)
            return errbuf_set(err, "moving %s to corrupt/: %s", from, strerror(errno));
    }
    if (i == 1000)
        return errbuf_set(err, "moving %s to corrupt/: too many files of that name", from);
    if (folder_sync(sp, SPOOL_CORRUPT, err) < 0)
        return RS_ERR;
    path_of(sp, SPOOL_CORRUPT, target, to, sizeof(to));
    if (sp->on_corrupt != NULL)
        sp->on_corrupt(sp->on_corrupt_arg, from, to, problem);
    else
        log_warn("event=spool_corrupt queue=%s from=%s to=%s problem=\"%s\"", sp->queue, from, to,
                 problem);
    return RS_OK;
}

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct name *)a)->s, ((const struct name *)b)->s);
}

static void
names_free(struct name *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].s);
    free(v);
}

/* The files of a folder, sorted by name. Names starting with a dot are not
 * messages (an operator's or editor's files) and are left alone. */
static int
folder_list(spool *sp, int folder, struct name **out, size_t *count, errbuf *err)
{
    struct name *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *dir;
    int fd;

    *out = NULL;
    *count = 0;
    if ((fd = openat(sp->dfd[folder], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        (dir = fdopendir(fd)) == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return errbuf_set(err, "reading folder %s/%s: %s", sp->qdir, folder_names[folder],
                          strerror(e));
    }
    for (errno = 0; (de = readdir(dir)) != NULL; errno = 0) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            struct name *grown = realloc(v, (cap = cap ? 2 * cap : 64) * sizeof(*v));
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
        names_free(v, n);
        return errbuf_set(err, "reading folder %s/%s: %s", sp->qdir, folder_names[folder],
                          strerror(e));
    }
    closedir(dir);
    if (n > 1)
        qsort(v, n, sizeof(*v), name_cmp);
    *out = v;
    *count = n;
    return RS_OK;
nomem:
    closedir(dir);
    names_free(v, n);
    return errbuf_set(err, "reading folder %s/%s: out of memory", sp->qdir, folder_names[folder]);
}

/* ---- the cache of spool_take ---- */

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static void
scan_clear(struct scan *s)
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
scan_refresh(spool *sp, int folder, int repair, errbuf *err)
{
    struct scan *old = &sp->scans[folder], fresh = {NULL, 0};
    struct name *names;
    size_t n, i;
    char why[256];
    int rc = RS_ERR;

    if (folder_list(sp, folder, &names, &n, err) < 0)
        return RS_ERR;
    if (n > 0 && (fresh.v = calloc(n, sizeof(*fresh.v))) == NULL) {
        errbuf_set(err, "reading folder %s/%s: out of memory", sp->qdir, folder_names[folder]);
        goto done;
    }
    for (i = 0; i < n; i++) {
        struct entry probe = {.name = names[i].s}, *e;
        spool_msg *m;
        int got;

        if (!spool_valid_id(names[i].s)) {
            if (repair &&
                corrupt_move(sp, folder, names[i].s, "file name is not a message id", err) < 0)
                goto done;
            continue;
        }
        e = old->n ? bsearch(&probe, old->v, old->n, sizeof(*old->v), entry_cmp) : NULL;
        if (e != NULL && !e->moved && e->ino == names[i].ino) {
            fresh.v[fresh.n++] = *e;
            e->moved = 1;
            continue;
        }
        if ((got = msg_load(sp, folder, names[i].s, &m, why, sizeof(why), err)) < 0)
            goto done;
        if (got == LOAD_BAD && repair && corrupt_move(sp, folder, names[i].s, why, err) < 0)
            goto done;
        if (got != LOAD_OK)
            continue;
        e = &fresh.v[fresh.n];
        e->name = names[i].s;
        names[i].s = NULL;
        e->key = m->key;
        m->key = NULL;
        e->ino = names[i].ino;
        e->created = m->created;
        e->due = m->due;
        fresh.n++;
        spool_msg_destroy(&m);
    }
    rc = RS_OK;
done:
    /* Entries kept sorted by name: the names come sorted from folder_list. */
    scan_clear(old);
    for (i = 0; i < fresh.n; i++)
        fresh.v[i].moved = 0;
    *old = fresh;
    names_free(names, n);
    return rc;
}

/* ---- opening ---- */

/* mkdir that is fine when the folder exists; sets *made when it made it. */
static int
make_folder(spool *sp, int at, const char *name, const char *path, int *made, errbuf *err)
{
    if (mkdirat(at, name, 0700) == 0) {
        *made = 1;
        if (sp->chown_files && fchownat(at, name, sp->uid, sp->gid, AT_SYMLINK_NOFOLLOW) < 0)
            return errbuf_set(err, "changing the owner of %s: %s", path, strerror(errno));
        return RS_OK;
    }
    if (errno != EEXIST)
        return errbuf_set(err, "creating folder %s: %s", path, strerror(errno));
    return RS_OK;
}

static int
open_folder(int at, const char *name, const char *path, errbuf *err)
{
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        errbuf_set(err, "opening folder %s: %s", path, strerror(errno));
    return fd;
}

spool *
spool_new(const char *root, const char *queue, errbuf *err)
{
    char path[PATH_MAX];
    struct stat st;
    spool *sp;
    int rootfd = -1, made_root = 0, made_queue = 0, made_state = 0;

    if (root == NULL || root[0] == '\0') {
        errbuf_set(err, "spool: no spool folder given");
        return NULL;
    }
    if (!spool_valid_id(queue)) {
        errbuf_set(err, "spool: invalid queue name \"%.40s\"", queue ? queue : "(null)");
        return NULL;
    }
    if (sodium_init() < 0) {
        errbuf_set(err, "spool: libsodium failed to initialise");
        return NULL;
    }
    if ((sp = calloc(1, sizeof(*sp))) == NULL) {
        errbuf_set(err, "spool: out of memory");
        return NULL;
    }
    sp->qfd = -1;
    for (int i = 0; i <= SPOOL_NSTATES; i++)
        sp->dfd[i] = -1;
    pthread_mutex_init(&sp->lock, NULL);
    sp->syncfs_reports = kernel_at_least(5, 8);
    if ((sp->queue = strdup(queue)) == NULL || asprintf(&sp->qdir, "%s/%s", root, queue) < 0) {
        sp->qdir = NULL;
        errbuf_set(err, "spool: out of memory");
        goto fail;
    }
    if (make_folder(sp, AT_FDCWD, root, root, &made_root, err) < 0 ||
        (rootfd = open_folder(AT_FDCWD, root, root, err)) < 0)
        goto fail;
    if (geteuid() == 0 && fstat(rootfd, &st) == 0 && (st.st_uid != 0 || st.st_gid != 0)) {
        sp->chown_files = 1;
        sp->uid = st.st_uid;
        sp->gid = st.st_gid;
    }
    if (make_folder(sp, rootfd, queue, sp->qdir, &made_queue, err) < 0 ||
        (sp->qfd = open_folder(rootfd, queue, sp->qdir, err)) < 0)
        goto fail;
    for (int i = 0; i <= SPOOL_NSTATES; i++) {
        snprintf(path, sizeof(path), "%s/%s", sp->qdir, folder_names[i]);
        if (make_folder(sp, sp->qfd, folder_names[i], path, &made_state, err) < 0 ||
            (sp->dfd[i] = open_folder(sp->qfd, folder_names[i], path, err)) < 0)
            goto fail;
    }
    /* New folders are names in their parents: make them durable too. */
    if ((made_state && fsync(sp->qfd) < 0) || (made_queue && fsync(rootfd) < 0)) {
        errbuf_set(err, "fsync of folder %s: %s", made_state ? sp->qdir : root, strerror(errno));
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
    return sp;
fail:
    if (rootfd >= 0)
        close(rootfd);
    spool_destroy(&sp);
    return NULL;
}

void
spool_destroy(spool **spp)
{
    spool *sp;

    if (spp == NULL || (sp = *spp) == NULL)
        return;
    for (int i = 0; i <= SPOOL_NSTATES; i++)
        if (sp->dfd[i] >= 0)
            close(sp->dfd[i]);
    if (sp->qfd >= 0)
        close(sp->qfd);
    for (int i = 0; i < SPOOL_NSTATES; i++)
        scan_clear(&sp->scans[i]);
    pthread_mutex_destroy(&sp->lock);
    free(sp->queue);
    free(sp->qdir);
    free(sp);
    *spp = NULL;
}

void
spool_set_corrupt_handler(spool *sp, spool_corrupt_fn *fn, void *arg)
{
    pthread_mutex_lock(&sp->lock);
    sp->on_corrupt = fn;
    sp->on_corrupt_arg = arg;
    pthread_mutex_unlock(&sp->lock);
}

const char *
spool_queue(const spool *sp)
{
    return sp->queue;
}

const char *
spool_state_name(enum spool_state state)
{
    return (unsigned)state < SPOOL_NSTATES ? folder_names[state] : "?";
}

int
spool_state_parse(const char *name)
{
    for (int i = 0; name != NULL && i < SPOOL_NSTATES; i++)
        if (strcmp(name, folder_names[i]) == 0)
            return i;
    return -1;
}

/* ---- putting ---- */

/* 1 when a message `id` is in any state folder that makes a put a no-op. */
static int
id_present(spool *sp, const char *id, errbuf *err)
{
    static const int where[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED, SPOOL_DEAD,
                                SPOOL_DONE};
    char path[PATH_MAX];
    struct stat st;

    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        if (fstatat(sp->dfd[where[i]], id, &st, AT_SYMLINK_NOFOLLOW) == 0)
            return 1;
        if (errno != ENOENT)
            return errbuf_set(err, "looking for %s: %s",
                              path_of(sp, where[i], id, path, sizeof(path)), strerror(errno));
    }
    return 0;
}

/* Creation times are unique and increasing within the process, so that messages
 * put one after the other are taken in that order even within one clock tick. */
static int64_t
next_created(spool *sp)
{
    int64_t t = now_ns();

    if (t <= sp->last_created)
        t = sp->last_created + 1;
    sp->last_created = t;
    return t;
}

int
spool_put(spool *sp, const char *id, const char *key, const void *body, size_t len, errbuf *err)
{
    spool_item item = {id, key, body, len, 0};

    if (spool_put_batch(sp, &item, 1, err) < 0)
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
 * which do not report them, each file is fsync'd instead). Only then are the files
 * renamed into incoming/, and ONE fsync of incoming/ makes all the new names
 * durable. The caller is told "added" only after that last fsync, so nothing it
 * acknowledges (the outbox row) can be lost; a crash before leaves complete
 * messages in incoming/ (a repeated put finds them) or files in tmp/ (removed by
 * spool_recover), never a torn file under a message name. The price: syncfs
 * also writes back other programs' dirty data on the same file system, which is
 * why a batch of one uses fsync of its file. */
int
spool_put_batch(spool *sp, spool_item *items, size_t n, errbuf *err)
{
    struct pending {
        size_t item;
        int64_t created;
        char tmp[NAME_MAX + 1];
        int written;
    } *pend = NULL;
    size_t np = 0, i;
    int added = 0, rc = RS_ERR, sync_each, present;
    char path[PATH_MAX];

    for (i = 0; i < n; i++) {
        items[i].added = 0;
        if (!spool_valid_id(items[i].id))
            return errbuf_set(err, "spool %s: invalid message id \"%.140s\"", sp->qdir,
                              items[i].id ? items[i].id : "(null)");
        if (items[i].key != NULL && items[i].key[0] != '\0' && !spool_valid_id(items[i].key))
            return errbuf_set(err, "spool %s: invalid key \"%.140s\" of message %s", sp->qdir,
                              items[i].key, items[i].id);
        if (items[i].len > SPOOL_BODY_MAX || (items[i].body == NULL && items[i].len > 0))
            return errbuf_set(err, "spool %s: message %s: body of %zu bytes refused", sp->qdir,
                              items[i].id, items[i].len);
    }
    if (n == 0)
        return 0;
    if ((pend = calloc(n, sizeof(*pend))) == NULL)
        return errbuf_set(err, "spool %s: out of memory", sp->qdir);

    /* Most repeated puts are caught here, before anything is written. */
    pthread_mutex_lock(&sp->lock);
    for (i = 0; i < n; i++) {
        if ((present = id_present(sp, items[i].id, err)) < 0) {
            pthread_mutex_unlock(&sp->lock);
            goto done;
        }
        if (present)
            continue;
        pend[np].item = i;
        pend[np++].created = next_created(sp);
    }
    pthread_mutex_unlock(&sp->lock);

    sync_each = np == 1 || !sp->syncfs_reports;
    for (i = 0; i < np; i++) {
        const spool_item *it = &items[pend[i].item];
        spool_msg m = {0};
        char *data;
        size_t len;
        int w;

        m.id = (char *)it->id;
        m.queue = sp->queue;
        m.key = it->key != NULL && it->key[0] != '\0' ? (char *)it->key : NULL;
        m.created = pend[i].created;
        m.body = (char *)it->body;
        m.len = it->len;
        if (msg_render(&m, &data, &len, err) < 0)
            goto done;
        w = tmp_write(sp, it->id, data, len, sync_each, pend[i].tmp, sizeof(pend[i].tmp), err);
        free(data);
        if (w < 0)
            goto done;
        pend[i].written = 1;
    }
    if (np > 0 && !sync_each && syncfs(sp->qfd) < 0) {
        errbuf_set(err, "syncfs of the file system of %s: %s", sp->qdir, strerror(errno));
        goto done;
    }

    /* Checked again under the lock: another thread may have put, taken and finished
     * the same id while we were writing. RENAME_NOREPLACE covers incoming/ itself. */
    pthread_mutex_lock(&sp->lock);
    for (i = 0; i < np; i++) {
        spool_item *it = &items[pend[i].item];

        if ((present = id_present(sp, it->id, err)) < 0)
            break;
        if (present)
            continue;
        if (renameat2(sp->dfd[TMP], pend[i].tmp, sp->dfd[SPOOL_INCOMING], it->id,
                      RENAME_NOREPLACE) == 0) {
            pend[i].written = 0;
            it->added = 1;
            added++;
        } else if (errno != EEXIST) {
            errbuf_set(err, "renaming %s into incoming/: %s",
                       path_of(sp, TMP, pend[i].tmp, path, sizeof(path)), strerror(errno));
            break;
        }
    }
    pthread_mutex_unlock(&sp->lock);
    if (i < np)
        goto done;
    if (added > 0 && folder_sync(sp, SPOOL_INCOMING, err) < 0)
        goto done;
    rc = added;
done:
    for (i = 0; i < np; i++)
        if (pend[i].written)
            unlinkat(sp->dfd[TMP], pend[i].tmp, 0);
    if (rc < 0)
        for (i = 0; i < n; i++)
            items[i].added = 0;
    free(pend);
    return rc;
}

/* ---- taking and finishing ---- */

static int
key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct candidate {
    const struct entry *e;
};

static int
candidate_cmp(const void *a, const void *b)
{
    const struct entry *x = ((const struct candidate *)a)->e, *y = ((const struct candidate *)b)->e;

    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return strcmp(x->name, y->name);
}

int
spool_take(spool *sp, const char *const *busy, size_t n_busy, spool_msg **msg, errbuf *err)
{
    struct candidate *cand = NULL;
    const char **keys = NULL;
    size_t nkeys = 0, i;
    char why[256], path[PATH_MAX];
    struct scan *in;
    int rc = RS_ERR;

    *msg = NULL;
    pthread_mutex_lock(&sp->lock);
    /* The folders are read in the order a message moves through them: active/,
     * then deferred/, then incoming/. A message that a delivery thread or wake
     * moves while we look is therefore seen at least once, in a place that makes
     * its key busy or makes it the oldest candidate; never missed, so that a
     * younger message of the same key cannot overtake it. active/ is not repaired:
     * its files are in the hands of delivery threads. */
    if (scan_refresh(sp, SPOOL_ACTIVE, 0, err) < 0 ||
        scan_refresh(sp, SPOOL_DEFERRED, 1, err) < 0 ||
        scan_refresh(sp, SPOOL_INCOMING, 1, err) < 0)
        goto done;
    in = &sp->scans[SPOOL_INCOMING];
    if (in->n == 0) {
        rc = 0;
        goto done;
    }
    nkeys = sp->scans[SPOOL_ACTIVE].n + sp->scans[SPOOL_DEFERRED].n + n_busy;
    if ((cand = calloc(in->n, sizeof(*cand))) == NULL ||
        (nkeys > 0 && (keys = calloc(nkeys, sizeof(*keys))) == NULL)) {
        errbuf_set(err, "spool %s: out of memory", sp->qdir);
        goto done;
    }
    nkeys = 0;
    for (int f = SPOOL_ACTIVE; f <= SPOOL_DEFERRED; f++)
        for (i = 0; i < sp->scans[f].n; i++)
            if (sp->scans[f].v[i].key != NULL)
                keys[nkeys++] = sp->scans[f].v[i].key;
    for (i = 0; i < n_busy && busy != NULL; i++)
        if (busy[i] != NULL)
            keys[nkeys++] = busy[i];
    if (nkeys > 1)
        qsort(keys, nkeys, sizeof(*keys), key_cmp);
    for (i = 0; i < in->n; i++)
        cand[i].e = &in->v[i];
    qsort(cand, in->n, sizeof(*cand), candidate_cmp);

    rc = 0;
    for (i = 0; i < in->n && rc == 0; i++) {
        const struct entry *e = cand[i].e;
        spool_msg *m;
        int got;

        if (e->key != NULL && nkeys > 0 && bsearch(&e->key, keys, nkeys, sizeof(*keys), key_cmp))
            continue;
        if ((got = msg_load(sp, SPOOL_INCOMING, e->name, &m, why, sizeof(why), err)) < 0) {
            rc = RS_ERR;
            break;
        }
        if (got == LOAD_BAD && corrupt_move(sp, SPOOL_INCOMING, e->name, why, err) < 0) {
            rc = RS_ERR;
            break;
        }
        if (got != LOAD_OK)
            continue;
        if (renameat2(sp->dfd[SPOOL_INCOMING], e->name, sp->dfd[SPOOL_ACTIVE], e->name,
                      RENAME_NOREPLACE) < 0) {
            int gone = errno == ENOENT;
            if (!gone)
                errbuf_set(err, "moving %s to active/: %s",
                           path_of(sp, SPOOL_INCOMING, e->name, path, sizeof(path)),
                           strerror(errno));
            spool_msg_destroy(&m);
            if (!gone)
                rc = RS_ERR;
            continue;
        }
        m->state = SPOOL_ACTIVE;
        *msg = m;
        rc = 1;
    }
done:
    pthread_mutex_unlock(&sp->lock);
    free(cand);
    free(keys);
    return rc;
}

static int
must_be(spool *sp, const spool_msg *m, enum spool_state state, errbuf *err)
{
    if (m == NULL)
        return errbuf_set(err, "spool %s: no message", sp->qdir);
    if (m->state != state)
        return errbuf_set(err, "spool %s: message %s is %s, not %s", sp->qdir, m->id,
                          folder_names[m->state], folder_names[state]);
    return RS_OK;
}

/* Rewrites m, which is in folder `from`, and moves it to `to`. The new content is
 * written and fsync'd in tmp/, renamed over from/ID (so the message keeps its one
 * name: a crash leaves the old or the new content, never two copies), renamed to
 * to/ID, and to/ is fsync'd. */
static int
msg_rewrite_move(spool *sp, spool_msg *m, int from, int to, errbuf *err)
{
    char tmp[NAME_MAX + 1], path[PATH_MAX], *data;
    struct stat st;
    size_t len;
    int w;

    if (msg_render(m, &data, &len, err) < 0)
        return RS_ERR;
    w = tmp_write(sp, m->id, data, len, 1, tmp, sizeof(tmp), err);
    free(data);
    if (w < 0)
        return RS_ERR;
    path_of(sp, from, m->id, path, sizeof(path));
    /* Renaming over a name that has gone would make a second copy. */
    if (fstatat(sp->dfd[from], m->id, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        errbuf_set(err, "rewriting %s: %s", path, strerror(errno));
        goto fail;
    }
    if (renameat(sp->dfd[TMP], tmp, sp->dfd[from], m->id) < 0) {
        errbuf_set(err, "replacing %s: %s", path, strerror(errno));
        goto fail;
    }
    if (renameat2(sp->dfd[from], m->id, sp->dfd[to], m->id, RENAME_NOREPLACE) < 0)
        return errbuf_set(err, "moving %s to %s/: %s", path, folder_names[to], strerror(errno));
    if (folder_sync(sp, to, err) < 0)
        return RS_ERR;
    m->state = (enum spool_state)to;
    return RS_OK;
fail:
    unlinkat(sp->dfd[TMP], tmp, 0);
    return RS_ERR;
}

int
spool_done(spool *sp, spool_msg *m, errbuf *err)
{
    /* mtime = time of delivery: what spool_prune_done and `ls -lt done/` go by. */
    const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    char path[PATH_MAX];

    if (must_be(sp, m, SPOOL_ACTIVE, err) < 0)
        return RS_ERR;
    path_of(sp, SPOOL_ACTIVE, m->id, path, sizeof(path));
    if (utimensat(sp->dfd[SPOOL_ACTIVE], m->id, times, AT_SYMLINK_NOFOLLOW) < 0)
        return errbuf_set(err, "setting the time of %s: %s", path, strerror(errno));
    if (renameat2(sp->dfd[SPOOL_ACTIVE], m->id, sp->dfd[SPOOL_DONE], m->id, RENAME_NOREPLACE) < 0)
        return errbuf_set(err, "moving %s to done/: %s", path, strerror(errno));
    if (folder_sync(sp, SPOOL_DONE, err) < 0)
        return RS_ERR;
    m->state = SPOOL_DONE;
    return RS_OK;
}

static int
spool_defer_counting(spool *sp, spool_msg *m, time_t due, const char *error, int counted,
                     errbuf *err)
{
    spool_msg saved;
    char *text;

    if (must_be(sp, m, SPOOL_ACTIVE, err) < 0)
        return RS_ERR;
    if (text_clean(error, &text) < 0)
        return errbuf_set(err, "spool %s: out of memory", sp->qdir);
    saved = *m;
    m->attempts += counted;
    m->due = due > 0 ? due : 1; /* 0 means "no due time" in the file */
    m->last_error = text;
    if (msg_rewrite_move(sp, m, SPOOL_ACTIVE, SPOOL_DEFERRED, err) < 0) {
        free(text);
        *m = saved;
        return RS_ERR;
    }
    free(saved.last_error);
    return RS_OK;
}

int
spool_defer(spool *sp, spool_msg *m, time_t due, const char *error, errbuf *err)
{
    return spool_defer_counting(sp, m, due, error, 1, err);
}

int
spool_postpone(spool *sp, spool_msg *m, time_t due, const char *error, errbuf *err)
{
    return spool_defer_counting(sp, m, due, error, 0, err);
}

int
spool_kill(spool *sp, spool_msg *m, const char *error, const char *reason, errbuf *err)
{
    spool_msg saved;
    char *text = NULL, *why = NULL;

    if (must_be(sp, m, SPOOL_ACTIVE, err) < 0)
        return RS_ERR;
    if (text_clean(error, &text) < 0 || text_clean(reason ? reason : "killed", &why) < 0) {
        free(text);
        return errbuf_set(err, "spool %s: out of memory", sp->qdir);
    }
    saved = *m;
    if (error != NULL) {
        m->attempts++;
        m->last_error = text;
    }
    m->due = 0;
    m->died_at = time(NULL);
    m->death_reason = why;
    if (msg_rewrite_move(sp, m, SPOOL_ACTIVE, SPOOL_DEAD, err) < 0) {
        free(text);
        free(why);
        *m = saved;
        return RS_ERR;
    }
    if (error != NULL)
        free(saved.last_error);
    else
        free(text);
    free(saved.death_reason);
    return RS_OK;
}

int
spool_wake(spool *sp, time_t now, time_t *next_due, errbuf *err)
{
    struct scan *s = &sp->scans[SPOOL_DEFERRED];
    char path[PATH_MAX];
    time_t next = 0;
    int woken = 0, rc = RS_ERR;

    pthread_mutex_lock(&sp->lock);
    if (scan_refresh(sp, SPOOL_DEFERRED, 1, err) < 0)
        goto done;
    for (size_t i = 0; i < s->n; i++) {
        const struct entry *e = &s->v[i];

        if (e->due > now) {
            if (next == 0 || e->due < next)
                next = e->due;
            continue;
        }
        if (renameat2(sp->dfd[SPOOL_DEFERRED], e->name, sp->dfd[SPOOL_INCOMING], e->name,
                      RENAME_NOREPLACE) == 0)
            woken++;
        else if (errno != ENOENT) {
            errbuf_set(err, "moving %s to incoming/: %s",
                       path_of(sp, SPOOL_DEFERRED, e->name, path, sizeof(path)), strerror(errno));
            goto done;
        }
    }
    rc = RS_OK;
done:
    pthread_mutex_unlock(&sp->lock);
    if (rc == RS_OK && woken > 0 && folder_sync(sp, SPOOL_INCOMING, err) < 0)
        rc = RS_ERR;
    if (next_due != NULL)
        *next_due = next;
    return rc < 0 ? RS_ERR : woken;
}

/* ---- recovery, redrive, pruning ---- */

/* Removes tmp/ files whose writer is gone. The name starts with the writer's pid;
 * files of live processes (restockctl redriving now) are left alone. */
static int
recover_tmp(spool *sp, spool_recovery *r, errbuf *err)
{
    struct name *names;
    size_t n;
    char path[PATH_MAX];

    if (folder_list(sp, TMP, &names, &n, err) < 0)
        return RS_ERR;
    for (size_t i = 0; i < n; i++) {
        long pid = strtol(names[i].s, NULL, 10);

        if (pid > 0 && pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            continue;
        if (unlinkat(sp->dfd[TMP], names[i].s, 0) < 0 && errno != ENOENT) {
            errbuf_set(err, "removing %s: %s", path_of(sp, TMP, names[i].s, path, sizeof(path)),
                       strerror(errno));
            names_free(names, n);
            return RS_ERR;
        }
        r->tmp_removed++;
    }
    names_free(names, n);
    return RS_OK;
}

/* Verifies every file of a folder; bad ones go to corrupt/. From active/, good ones
 * go back to incoming/: their delivery was cut by the crash. */
static int
recover_folder(spool *sp, int folder, spool_recovery *r, errbuf *err)
{
    struct name *names;
    size_t n, i;
    char why[256], path[PATH_MAX];
    int rc = RS_ERR;

    if (folder_list(sp, folder, &names, &n, err) < 0)
        return RS_ERR;
    for (i = 0; i < n; i++) {
        spool_msg *m = NULL;
        int got = LOAD_BAD;

        if (!spool_valid_id(names[i].s))
            snprintf(why, sizeof(why), "file name is not a message id");
        else if ((got = msg_load(sp, folder, names[i].s, &m, why, sizeof(why), err)) < 0)
            goto done;
        spool_msg_destroy(&m);
        if (got == LOAD_GONE)
            continue;
        if (got == LOAD_BAD) {
            if (corrupt_move(sp, folder, names[i].s, why, err) < 0)
                goto done;
            r->corrupt++;
            continue;
        }
        r->verified++;
        if (folder != SPOOL_ACTIVE)
            continue;
        if (renameat2(sp->dfd[SPOOL_ACTIVE], names[i].s, sp->dfd[SPOOL_INCOMING], names[i].s,
                      RENAME_NOREPLACE) == 0) {
            r->requeued++;
        } else if (errno == EEXIST) {
            /* Cannot happen while each message has one name; keep both for a human. */
            if (corrupt_move(sp, folder, names[i].s, "a copy is also in incoming/", err) < 0)
                goto done;
            r->corrupt++;
        } else if (errno != ENOENT) {
            errbuf_set(err, "moving %s to incoming/: %s",
                       path_of(sp, folder, names[i].s, path, sizeof(path)), strerror(errno));
            goto done;
        }
    }
    rc = RS_OK;
done:
    names_free(names, n);
    return rc;
}

int
spool_recover(spool *sp, spool_recovery *report, errbuf *err)
{
    /* active/ last, so that what it moves to incoming/ is not verified twice. */
    static const int order[] = {SPOOL_INCOMING, SPOOL_DEFERRED, SPOOL_DEAD, SPOOL_DONE,
                                SPOOL_ACTIVE};
    spool_recovery r = {0, 0, 0, 0};
    int rc = RS_ERR;

    pthread_mutex_lock(&sp->lock);
    if (recover_tmp(sp, &r, err) < 0)
        goto done;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (recover_folder(sp, order[i], &r, err) < 0)
            goto done;
    if (r.requeued > 0 && folder_sync(sp, SPOOL_INCOMING, err) < 0)
        goto done;
    rc = RS_OK;
done:
    for (int i = 0; i < SPOOL_NSTATES; i++)
        scan_clear(&sp->scans[i]);
    pthread_mutex_unlock(&sp->lock);
    if (report != NULL)
        *report = r;
    return rc;
}

/* Redrives one dead message. Returns 1, 0 when it is not there (or corrupt, then
 * moved, when !must_exist), RS_ERR. */
static int
redrive_one(spool *sp, const char *id, int must_exist, errbuf *err)
{
    char why[256], path[PATH_MAX], died[32], now[32], *line = NULL, *history = NULL;
    spool_msg *m, saved;
    int got, rc = RS_ERR;

    path_of(sp, SPOOL_DEAD, id, path, sizeof(path));
    if ((got = msg_load(sp, SPOOL_DEAD, id, &m, why, sizeof(why), err)) < 0)
        return RS_ERR;
    if (got == LOAD_GONE)
        return must_exist ? errbuf_set(err, "no dead message %s (%s)", id, path) : 0;
    if (got == LOAD_BAD) {
        if (must_exist)
            return errbuf_set(err, "dead message %s is corrupt: %s", path, why);
        return corrupt_move(sp, SPOOL_DEAD, id, why, err) < 0 ? RS_ERR : 0;
    }
    iso_time(m->died_at, died);
    iso_time(time(NULL), now);
    if (asprintf(&line, "died %s after %d attempts: %s (last error: %s); redriven %s", died,
                 m->attempts, m->death_reason ? m->death_reason : "-",
                 m->last_error ? m->last_error : "-", now) < 0 ||
        text_clean(line, &history) < 0) {
        errbuf_set(err, "redriving %s: out of memory", path);
        goto done;
    }
    saved = *m;
    if (m->nhistory == HISTORY_MAX) {
        free(m->history[0]);
        memmove(m->history, m->history + 1, (HISTORY_MAX - 1) * sizeof(*m->history));
        m->nhistory--;
    }
    {
        char **grown = realloc(m->history, (m->nhistory + 1) * sizeof(*grown));
        if (grown == NULL) {
            errbuf_set(err, "redriving %s: out of memory", path);
            goto done;
        }
        m->history = grown;
    }
    m->history[m->nhistory++] = history;
    history = NULL;
    m->attempts = 0;
    m->due = 0;
    m->died_at = 0;
    m->last_error = NULL;
    m->death_reason = NULL;
    if (msg_rewrite_move(sp, m, SPOOL_DEAD, SPOOL_INCOMING, err) < 0) {
        m->last_error = saved.last_error;
        m->death_reason = saved.death_reason;
        goto done;
    }
    free(saved.last_error);
    free(saved.death_reason);
    rc = 1;
done:
    free(line);
    free(history);
    spool_msg_destroy(&m);
    return rc;
}

int
spool_redrive(spool *sp, const char *id, errbuf *err)
{
    struct name *names = NULL;
    size_t n = 0;
    int count = 0, rc = RS_ERR, one;

    if (id != NULL && !spool_valid_id(id))
        return errbuf_set(err, "spool %s: invalid message id \"%.140s\"", sp->qdir, id);
    /* Two operators redriving at once must not both rewrite one message. */
    if (flock(sp->qfd, LOCK_EX) < 0)
        return errbuf_set(err, "locking %s: %s", sp->qdir, strerror(errno));
    if (id != NULL) {
        rc = redrive_one(sp, id, 1, err);
        goto done;
    }
    if (folder_list(sp, SPOOL_DEAD, &names, &n, err) < 0)
        goto done;
    for (size_t i = 0; i < n; i++) {
        if (!spool_valid_id(names[i].s))
            continue;
        if ((one = redrive_one(sp, names[i].s, 0, err)) < 0)
            goto done;
        count += one;
    }
    rc = count;
done:
    flock(sp->qfd, LOCK_UN);
    names_free(names, n);
    return rc;
}

int
spool_prune_done(spool *sp, time_t age, errbuf *err)
{
    struct name *names;
    size_t n;
    time_t limit = time(NULL) - age;
    char path[PATH_MAX];
    int count = 0;

    if (folder_list(sp, SPOOL_DONE, &names, &n, err) < 0)
        return RS_ERR;
    for (size_t i = 0; i < n; i++) {
        struct stat st;

        path_of(sp, SPOOL_DONE, names[i].s, path, sizeof(path));
        if (fstatat(sp->dfd[SPOOL_DONE], names[i].s, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            errbuf_set(err, "looking at %s: %s", path, strerror(errno));
            goto fail;
        }
        if (st.st_mtime > limit)
            continue;
        if (unlinkat(sp->dfd[SPOOL_DONE], names[i].s, 0) < 0 && errno != ENOENT) {
            errbuf_set(err, "removing %s: %s", path, strerror(errno));
            goto fail;
        }
        count++;
    }
    names_free(names, n);
    return count;
fail:
    names_free(names, n);
    return RS_ERR;
}

/* ---- inspection ---- */

long
spool_count(spool *sp, enum spool_state state, errbuf *err)
{
    struct name *names;
    size_t n;

    if ((unsigned)state >= SPOOL_NSTATES)
        return errbuf_set(err, "spool %s: no state %d", sp->qdir, (int)state);
    if (folder_list(sp, state, &names, &n, err) < 0)
        return RS_ERR;
    names_free(names, n);
    return (long)n;
}

struct listed {
    const char *name;
    spool_msg *m;
    char why[256];
};

static int
listed_cmp(const void *a, const void *b)
{
    const struct listed *x = a, *y = b;

    if ((x->m == NULL) != (y->m == NULL))
        return x->m == NULL ? 1 : -1; /* unreadable files last */
    if (x->m != NULL && x->m->created != y->m->created)
        return x->m->created < y->m->created ? -1 : 1;
    return strcmp(x->name, y->name);
}

int
spool_each(spool *sp, enum spool_state state, spool_each_fn *fn, void *arg, errbuf *err)
{
    struct name *names;
    struct listed *v = NULL;
    size_t n, k = 0, i;
    int rc = RS_ERR;

    if ((unsigned)state >= SPOOL_NSTATES)
        return errbuf_set(err, "spool %s: no state %d", sp->qdir, (int)state);
    if (folder_list(sp, state, &names, &n, err) < 0)
        return RS_ERR;
    if (n > 0 && (v = calloc(n, sizeof(*v))) == NULL) {
        errbuf_set(err, "spool %s: out of memory", sp->qdir);
        goto done;
    }
    for (i = 0; i < n; i++) {
        int got = LOAD_BAD;

        v[k].name = names[i].s;
        if (!spool_valid_id(names[i].s))
            snprintf(v[k].why, sizeof(v[k].why), "file name is not a message id");
        else if ((got = msg_load(sp, state, names[i].s, &v[k].m, v[k].why, sizeof(v[k].why), err)) <
                 0)
            goto done;
        if (got != LOAD_GONE)
            k++;
    }
    if (k > 1)
        qsort(v, k, sizeof(*v), listed_cmp);
    rc = RS_OK;
    for (i = 0; i < k && rc == RS_OK; i++)
        rc = fn(arg, v[i].name, v[i].m, v[i].m ? NULL : v[i].why);
done:
    for (i = 0; i < n && v != NULL; i++)
        spool_msg_destroy(&v[i].m);
    free(v);
    names_free(names, n);
    return rc;
}

int
spool_get(spool *sp, const char *id, spool_msg **msg, errbuf *err)
{
    /* In the order messages move, twice: a message moving while we look (forward,
     * or back to incoming by wake or redrive) is found on the second pass. */
    static const int order[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED, SPOOL_DEAD,
                                SPOOL_DONE};
    char why[256], path[PATH_MAX];

    *msg = NULL;
    if (!spool_valid_id(id))
        return errbuf_set(err, "spool %s: invalid message id \"%.140s\"", sp->qdir,
                          id ? id : "(null)");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            int got = msg_load(sp, order[i], id, msg, why, sizeof(why), err);
            if (got < 0)
                return RS_ERR;
            if (got == LOAD_OK)
                return 1;
            if (got == LOAD_BAD)
                return errbuf_set(err, "message %s is corrupt: %s",
                                  path_of(sp, order[i], id, path, sizeof(path)), why);
        }
    return 0;
}

int
spool_oldest_waiting(spool *sp, time_t *created, errbuf *err)
{
    return spool_oldest_waiting_except(sp, NULL, created, err);
}

int
spool_oldest_waiting_except(spool *sp, const char *except, time_t *created, errbuf *err)
{
    /* In flight counts: a message retried often is in active/ at many a look, and
     * is no less late for it. In the order a message moves, so that one moving
     * meanwhile is seen once at least. */
    static const int folders[] = {SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED};
    int64_t oldest = 0;
    int rc = RS_ERR;

    *created = 0;
    pthread_mutex_lock(&sp->lock);
    for (size_t k = 0; k < sizeof(folders) / sizeof(folders[0]); k++) {
        int f = folders[k];
        if (scan_refresh(sp, f, 0, err) < 0)
            goto done;
        for (size_t i = 0; i < sp->scans[f].n; i++) {
            const struct entry *e = &sp->scans[f].v[i];
            if (except != NULL && strncmp(e->name, except, strlen(except)) == 0)
                continue;
            if (oldest == 0 || e->created < oldest)
                oldest = e->created;
        }
    }
    *created = (time_t)(oldest / NS);
    rc = RS_OK;
done:
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

/* ---- message getters ---- */

const char *
spool_msg_id(const spool_msg *m)
{
    return m->id;
}

const char *
spool_msg_queue(const spool_msg *m)
{
    return m->queue;
}

const char *
spool_msg_key(const spool_msg *m)
{
    return m->key;
}

const void *
spool_msg_body(const spool_msg *m)
{
    return m->body;
}

size_t
spool_msg_len(const spool_msg *m)
{
    return m->len;
}

enum spool_state
spool_msg_state(const spool_msg *m)
{
    return m->state;
}

time_t
spool_msg_created(const spool_msg *m)
{
    return (time_t)(m->created / NS);
}

int
spool_msg_attempts(const spool_msg *m)
{
    return m->attempts;
}

time_t
spool_msg_due(const spool_msg *m)
{
    return m->due;
}

const char *
spool_msg_last_error(const spool_msg *m)
{
    return m->last_error;
}

time_t
spool_msg_died_at(const spool_msg *m)
{
    return m->died_at;
}

const char *
spool_msg_death_reason(const spool_msg *m)
{
    return m->death_reason;
}

size_t
spool_msg_history_count(const spool_msg *m)
{
    return m->nhistory;
}

const char *
spool_msg_history(const spool_msg *m, size_t i)
{
    return i < m->nhistory ? m->history[i] : NULL;
}
