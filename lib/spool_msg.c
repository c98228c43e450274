/* spool_msg: a spool message and the text form of its file (see spool_msg.h). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "spool_msg.h"
#include "timetext.h"
#include "utf8.h"

#define SPOOL_MSG_MAGIC      "restock-spool 1\n"
#define SPOOL_MSG_HASH_BYTES crypto_generichash_BYTES
#define SPOOL_MSG_HASH_HEX   (2 * SPOOL_MSG_HASH_BYTES)
#define SPOOL_MSG_END_LINE   (4 + SPOOL_MSG_HASH_HEX + 1) /* "end " hex "\n" */
#define SPOOL_MSG_NS         1000000000LL

struct spool_msg {
    enum spool_state state;
    char *id, *queue, *key;
    int64_t created; /* nanoseconds since the epoch: FIFO order within a second */
    int attempts;
    long long claim; /* the claim epoch of the outbox work it delivers; 0: none */
    time_t due, died_at;
    char *last_error, *death_reason;
    char **history;
    size_t nhistory;
    char *body;
    size_t len;
};

int
spool_msg_valid_id(const char *id)
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
spool_msg_text(const char *s, char **out)
{
    size_t n, i;

    *out = NULL;
    if (s == NULL || s[0] == '\0')
        return RS_OK;
    n = utf8_cut(s, strlen(s), SPOOL_TEXT_MAX);
    if ((*out = malloc(n + 1)) == NULL)
        return RS_ERR;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        (*out)[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    (*out)[n] = '\0';
    return RS_OK;
}

static void
spool_msg_free_fields(spool_msg *self)
{
    free(self->id);
    free(self->queue);
    free(self->key);
    free(self->last_error);
    free(self->death_reason);
    for (size_t i = 0; i < self->nhistory; i++)
        free(self->history[i]);
    free(self->history);
    free(self->body);
}

void
spool_msg_destroy(spool_msg **self_p)
{
    if (self_p == NULL || *self_p == NULL)
        return;
    spool_msg_free_fields(*self_p);
    free(*self_p);
    *self_p = NULL;
}

/* ---- the file's bytes ---- */

/* " 2024-04-05T19:34:38Z" after a time, for people reading the file. */
static void
spool_msg_put_time(FILE *f, time_t t)
{
    char text[TIMETEXT_SIZE];

    timetext_utc(t, text, sizeof(text));
    fprintf(f, " %s\n", text);
}

/* Headers, body, and the end line with the checksum of all that precedes it. */
int
spool_msg_render(const spool_msg *self, char **out, size_t *outlen, errbuf *err)
{
    char *buf = NULL, hex[SPOOL_MSG_HASH_HEX + 1], *grown;
    unsigned char hash[SPOOL_MSG_HASH_BYTES];
    size_t len = 0;
    FILE *f;
    int bad;

    if (self->len > SPOOL_BODY_MAX)
        return errbuf_set(err, "rendering message %s: body of %zu bytes refused", self->id,
                          self->len);
    if ((f = open_memstream(&buf, &len)) == NULL)
        return errbuf_set(err, "rendering message %s: %s", self->id, strerror(errno));
    fputs(SPOOL_MSG_MAGIC, f);
    fprintf(f, "id: %s\nqueue: %s\n", self->id, self->queue);
    if (self->key != NULL)
        fprintf(f, "key: %s\n", self->key);
    fprintf(f, "created: %lld.%09lld", (long long)(self->created / SPOOL_MSG_NS),
            (long long)(self->created % SPOOL_MSG_NS));
    spool_msg_put_time(f, (time_t)(self->created / SPOOL_MSG_NS));
    fprintf(f, "attempts: %d\n", self->attempts);
    if (self->claim > 0)
        fprintf(f, "claim: %lld\n", self->claim);
    if (self->due != 0) {
        fprintf(f, "due: %lld", (long long)self->due);
        spool_msg_put_time(f, self->due);
    }
    if (self->last_error != NULL)
        fprintf(f, "last-error: %s\n", self->last_error);
    if (self->died_at != 0) {
        fprintf(f, "died-at: %lld", (long long)self->died_at);
        spool_msg_put_time(f, self->died_at);
    }
    if (self->death_reason != NULL)
        fprintf(f, "death-reason: %s\n", self->death_reason);
    for (size_t i = 0; i < self->nhistory; i++)
        fprintf(f, "history: %s\n", self->history[i]);
    fprintf(f, "length: %zu\n\n", self->len);
    if (self->len > 0)
        fwrite(self->body, 1, self->len, f);
    fputc('\n', f);
    bad = ferror(f);
    if (fclose(f) != 0 || bad)
        goto fail;
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)buf, len, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    if ((grown = realloc(buf, len + SPOOL_MSG_END_LINE + 1)) == NULL)
        goto fail;
    buf = grown;
    snprintf(buf + len, SPOOL_MSG_END_LINE + 1, "end %s\n", hex);
    *out = buf;
    *outlen = len + SPOOL_MSG_END_LINE;
    return RS_OK;
fail:
    free(buf);
    return errbuf_set(err, "rendering message %s: out of memory", self->id);
}

int
spool_msg_render_claimed(const char *id, const char *queue, const char *key, long long claim,
                         int64_t created_ns, const void *body, size_t len, char **out,
                         size_t *outlen, errbuf *err)
{
    /* Borrowed fields, never freed: a put renders its body without copying it. */
    spool_msg m = {0};

    m.id = (char *)id;
    m.queue = (char *)queue;
    m.key = key != NULL && key[0] != '\0' ? (char *)key : NULL;
    m.claim = claim > 0 ? claim : 0;
    m.created = created_ns;
    m.body = (char *)body;
    m.len = len;
    return spool_msg_render(&m, out, outlen, err);
}

int
spool_msg_render_new(const char *id, const char *queue, const char *key, int64_t created_ns,
                     const void *body, size_t len, char **out, size_t *outlen, errbuf *err)
{
    return spool_msg_render_claimed(id, queue, key, 0, created_ns, body, len, out, outlen, err);
}

/* Parses a whole decimal number in [min, max] ending at the end of v or a space. */
static int
spool_msg_parse_num(const char *v, long long min, long long max, long long *out, const char **rest)
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

/* Applies one header line to self. Returns 1, 0 with why filled, or -1 when out of
 * memory. Unknown headers are skipped, so that a later version may add some. */
static int
spool_msg_header(spool_msg *self, const char *name, const char *v, int *seen_length, char *why,
                 size_t whylen)
{
    long long x;
    const char *rest;

    if (strcmp(name, "id") == 0) {
        free(self->id);
        if ((self->id = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "queue") == 0) {
        free(self->queue);
        if ((self->queue = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "key") == 0) {
        if (!spool_msg_valid_id(v))
            return BAD("invalid key \"%.40s\"", v);
        free(self->key);
        if ((self->key = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "created") == 0) {
        long long ns = 0;
        if (spool_msg_parse_num(v, 0, INT64_MAX / SPOOL_MSG_NS - 1, &x, &rest) < 0 ||
            (*rest == '.' && (spool_msg_parse_num(rest + 1, 0, SPOOL_MSG_NS - 1, &ns, NULL) < 0)))
            return BAD("bad created time \"%.40s\"", v);
        self->created = x * SPOOL_MSG_NS + ns;
    } else if (strcmp(name, "attempts") == 0) {
        if (spool_msg_parse_num(v, 0, INT_MAX, &x, NULL) < 0)
            return BAD("bad attempts \"%.40s\"", v);
        self->attempts = (int)x;
    } else if (strcmp(name, "claim") == 0) {
        if (spool_msg_parse_num(v, 1, INT64_MAX, &x, NULL) < 0)
            return BAD("bad claim \"%.40s\"", v);
        self->claim = x;
    } else if (strcmp(name, "due") == 0) {
        if (spool_msg_parse_num(v, 0, INT64_MAX / SPOOL_MSG_NS, &x, NULL) < 0)
            return BAD("bad due time \"%.40s\"", v);
        self->due = (time_t)x;
    } else if (strcmp(name, "died-at") == 0) {
        if (spool_msg_parse_num(v, 0, INT64_MAX / SPOOL_MSG_NS, &x, NULL) < 0)
            return BAD("bad died-at time \"%.40s\"", v);
        self->died_at = (time_t)x;
    } else if (strcmp(name, "last-error") == 0 || strcmp(name, "death-reason") == 0) {
        char **slot = name[0] == 'l' ? &self->last_error : &self->death_reason;
        free(*slot);
        if ((*slot = strdup(v)) == NULL)
            return -1;
    } else if (strcmp(name, "history") == 0) {
        char **grown = realloc(self->history, (self->nhistory + 1) * sizeof(*grown));
        if (grown == NULL)
            return -1;
        self->history = grown;
        if ((self->history[self->nhistory] = strdup(v)) == NULL)
            return -1;
        self->nhistory++;
    } else if (strcmp(name, "length") == 0) {
        if (spool_msg_parse_num(v, 0, SPOOL_BODY_MAX, &x, NULL) < 0)
            return BAD("bad length \"%.40s\"", v);
        self->len = (size_t)x;
        *seen_length = 1;
    }
    return 1;
}

int
spool_msg_parse(const char *buf, size_t len, const char *name, const char *queue, spool_msg **out,
                char *why, size_t whylen, errbuf *err)
{
    unsigned char want[SPOOL_MSG_HASH_BYTES], got[SPOOL_MSG_HASH_BYTES];
    size_t end, binlen;
    const char *p, *nl, *body;
    spool_msg *m;
    int seen_length = 0, seen_created = 0, seen_attempts = 0, rc = 0;

    *out = NULL;
    if (len > SPOOL_MSG_FILE_MAX)
        return BAD("too large (%zu bytes)", len);
    if (len < sizeof(SPOOL_MSG_MAGIC) - 1 + SPOOL_MSG_END_LINE)
        return BAD("too short (%zu bytes): torn or not a message", len);
    end = len - SPOOL_MSG_END_LINE;
    if (buf[len - 1] != '\n' || memcmp(buf + end, "end ", 4) != 0 ||
        (end > 0 && buf[end - 1] != '\n'))
        return BAD("no end line: torn or not a message");
    if (sodium_hex2bin(want, sizeof(want), buf + end + 4, SPOOL_MSG_HASH_HEX, NULL, &binlen,
                       NULL) != 0 ||
        binlen != sizeof(want))
        return BAD("end line has no checksum");
    crypto_generichash(got, sizeof(got), (const unsigned char *)buf, end, NULL, 0);
    if (sodium_memcmp(want, got, sizeof(got)) != 0)
        return BAD("checksum mismatch: the file was damaged");
    if (memcmp(buf, SPOOL_MSG_MAGIC, sizeof(SPOOL_MSG_MAGIC) - 1) != 0)
        return BAD("first line is not \"restock-spool 1\"");
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return errbuf_set(err, "reading message %s: out of memory", name);
    /* Headers: "name: value" lines up to an empty line. */
    for (p = buf + sizeof(SPOOL_MSG_MAGIC) - 1;; p = nl + 1) {
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
        if ((rc = spool_msg_header(m, line, colon + 2, &seen_length, why, whylen)) <= 0)
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

/* ---- state changes ---- */

/* strdup of NULL is NULL; *ok is cleared when out of memory. */
static char *
spool_msg_dup(const char *s, int *ok)
{
    char *copy;

    if (s == NULL)
        return NULL;
    if ((copy = strdup(s)) == NULL)
        *ok = 0;
    return copy;
}

spool_msg *
spool_msg_copy(const spool_msg *self, errbuf *err)
{
    spool_msg *c = calloc(1, sizeof(*c));
    int ok = c != NULL;

    if (!ok)
        goto fail;
    *c = *self;
    c->id = spool_msg_dup(self->id, &ok);
    c->queue = spool_msg_dup(self->queue, &ok);
    c->key = spool_msg_dup(self->key, &ok);
    c->last_error = spool_msg_dup(self->last_error, &ok);
    c->death_reason = spool_msg_dup(self->death_reason, &ok);
    c->history = NULL;
    c->nhistory = 0;
    c->body = malloc(self->len + 1);
    if (c->body == NULL ||
        (self->nhistory > 0 && (c->history = calloc(self->nhistory, sizeof(*c->history))) == NULL))
        ok = 0;
    if (c->body != NULL) {
        memcpy(c->body, self->body, self->len);
        c->body[self->len] = '\0';
    }
    for (size_t i = 0; ok && i < self->nhistory; i++, c->nhistory++)
        c->history[i] = spool_msg_dup(self->history[i], &ok);
    if (!ok)
        goto fail;
    return c;
fail:
    spool_msg_destroy(&c);
    errbuf_set(err, "copying message %s: out of memory", self->id);
    return NULL;
}

#define SPOOL_MSG_SWAP(type, field)                                                                \
    do {                                                                                           \
        type t_ = a->field;                                                                        \
        a->field = b->field;                                                                       \
        b->field = t_;                                                                             \
    } while (0)

void
spool_msg_swap_record(spool_msg *a, spool_msg *b)
{
    SPOOL_MSG_SWAP(enum spool_state, state);
    SPOOL_MSG_SWAP(int, attempts);
    SPOOL_MSG_SWAP(time_t, due);
    SPOOL_MSG_SWAP(time_t, died_at);
    SPOOL_MSG_SWAP(char *, last_error);
    SPOOL_MSG_SWAP(char *, death_reason);
    SPOOL_MSG_SWAP(char **, history);
    SPOOL_MSG_SWAP(size_t, nhistory);
}

#undef SPOOL_MSG_SWAP

void
spool_msg_set_state(spool_msg *self, enum spool_state state)
{
    self->state = state;
}

int
spool_msg_mark_deferred(spool_msg *self, int counted, time_t due, const char *error, errbuf *err)
{
    char *text;

    if (spool_msg_text(error, &text) < 0)
        return errbuf_set(err, "deferring message %s: out of memory", self->id);
    self->attempts += counted;
    self->due = due > 0 ? due : 1; /* 0 means "no due time" in the file */
    free(self->last_error);
    self->last_error = text;
    return RS_OK;
}

int
spool_msg_mark_dead(spool_msg *self, const char *error, const char *reason, time_t when,
                    errbuf *err)
{
    char *text = NULL, *why = NULL;

    if (spool_msg_text(error, &text) < 0 || spool_msg_text(reason ? reason : "killed", &why) < 0) {
        free(text);
        return errbuf_set(err, "killing message %s: out of memory", self->id);
    }
    if (error != NULL) {
        self->attempts++;
        free(self->last_error);
        self->last_error = text;
    } else {
        free(text);
    }
    self->due = 0;
    self->died_at = when;
    free(self->death_reason);
    self->death_reason = why;
    return RS_OK;
}

int
spool_msg_mark_redriven(spool_msg *self, time_t when, errbuf *err)
{
    char died[TIMETEXT_SIZE], now[TIMETEXT_SIZE], *line = NULL, *history = NULL, **grown;
    int rc = RS_ERR;

    timetext_utc(self->died_at, died, sizeof(died));
    timetext_utc(when, now, sizeof(now));
    if (asprintf(&line, "died %s after %d attempts: %s (last error: %s); redriven %s", died,
                 self->attempts, self->death_reason ? self->death_reason : "-",
                 self->last_error ? self->last_error : "-", now) < 0) {
        line = NULL;
        goto done;
    }
    if (spool_msg_text(line, &history) < 0)
        goto done;
    if (self->nhistory == SPOOL_MSG_HISTORY_MAX) {
        free(self->history[0]);
        memmove(self->history, self->history + 1,
                (SPOOL_MSG_HISTORY_MAX - 1) * sizeof(*self->history));
        self->nhistory--;
    }
    if ((grown = realloc(self->history, (self->nhistory + 1) * sizeof(*grown))) == NULL)
        goto done;
    self->history = grown;
    self->history[self->nhistory++] = history;
    history = NULL;
    self->attempts = 0;
    self->due = 0;
    self->died_at = 0;
    free(self->last_error);
    self->last_error = NULL;
    free(self->death_reason);
    self->death_reason = NULL;
    rc = RS_OK;
done:
    free(line);
    free(history);
    if (rc < 0)
        errbuf_set(err, "redriving message %s: out of memory", self->id);
    return rc;
}

/* ---- getters ---- */

const char *
spool_msg_id(const spool_msg *self)
{
    return self->id;
}

const char *
spool_msg_queue(const spool_msg *self)
{
    return self->queue;
}

const char *
spool_msg_key(const spool_msg *self)
{
    return self->key;
}

const void *
spool_msg_body(const spool_msg *self)
{
    return self->body;
}

size_t
spool_msg_len(const spool_msg *self)
{
    return self->len;
}

enum spool_state
spool_msg_state(const spool_msg *self)
{
    return self->state;
}

time_t
spool_msg_created(const spool_msg *self)
{
    return (time_t)(self->created / SPOOL_MSG_NS);
}

int64_t
spool_msg_created_ns(const spool_msg *self)
{
    return self->created;
}

long long
spool_msg_claim(const spool_msg *self)
{
    return self->claim;
}

int
spool_msg_attempts(const spool_msg *self)
{
    return self->attempts;
}

time_t
spool_msg_due(const spool_msg *self)
{
    return self->due;
}

const char *
spool_msg_last_error(const spool_msg *self)
{
    return self->last_error;
}

time_t
spool_msg_died_at(const spool_msg *self)
{
    return self->died_at;
}

const char *
spool_msg_death_reason(const spool_msg *self)
{
    return self->death_reason;
}

size_t
spool_msg_history_count(const spool_msg *self)
{
    return self->nhistory;
}

const char *
spool_msg_history(const spool_msg *self, size_t i)
{
    return i < self->nhistory ? self->history[i] : NULL;
}
