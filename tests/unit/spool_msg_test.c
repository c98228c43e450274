/* Unit test of spool_msg: the bytes of a message file, byte for byte, and that
 * parsing refuses every file that is not sound (torn, damaged, oversize, odd
 * headers) while a rendered file always reads back as it was. No disk involved:
 * spool_test checks the files in their folders. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "spool_msg.h"
#include "tap.h"
#include "utf8.h"

#define CREATED 1712345678123456789LL /* 2024-04-05T19:34:38Z */

/* The n bytes of text with the end line a sound file has after them, malloc'd;
 * *len set. */
static char *
seal(const char *text, size_t n, size_t *len)
{
    unsigned char hash[crypto_generichash_BYTES];
    char hex[2 * sizeof(hash) + 1];
    char *buf = malloc(n + 4 + sizeof(hex) + 1);

    crypto_generichash(hash, sizeof(hash), (const unsigned char *)text, n, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    memcpy(buf, text, n);
    *len = n + (size_t)sprintf(buf + n, "end %s\n", hex);
    return buf;
}

/* Parses buf as file `name` of queue "factory": 1, 0 (why filled) or RS_ERR. */
static int
parse(const char *buf, size_t len, const char *name, spool_msg **m, char why[256])
{
    errbuf err;

    why[0] = '\0';
    return spool_msg_parse(buf, len, name, "factory", m, why, 256, &err);
}

/* Why the sealed n bytes of text are refused ("" when they are not). */
static const char *
refused_n(const char *text, size_t n)
{
    static char why[256];
    spool_msg *m = NULL;
    size_t len;
    char *buf = seal(text, n, &len);

    if (parse(buf, len, "m1", &m, why) != 0)
        snprintf(why, sizeof(why), "%s", "");
    spool_msg_destroy(&m);
    free(buf);
    return why;
}

static const char *
refused(const char *text)
{
    return refused_n(text, strlen(text));
}

/* The file of m, as a string the caller frees. */
static char *
render(const spool_msg *m, size_t *len)
{
    errbuf err;
    char *buf = NULL;

    if (spool_msg_render(m, &buf, len, &err) < 0) {
        diag("render: %s", err.msg);
        return NULL;
    }
    return buf;
}

/* 1 when the file of m has the line `line`. */
static int
has_line(const spool_msg *m, const char *line)
{
    size_t len;
    char *buf = render(m, &len), want[1200];
    int found;

    snprintf(want, sizeof(want), "\n%s\n", line);
    found = buf != NULL && strstr(buf, want) != NULL;
    free(buf);
    return found;
}

/* Render, then parse back: what a rewrite and the next read see. */
static spool_msg *
reread(const spool_msg *m)
{
    char why[256];
    size_t len;
    char *buf = render(m, &len);
    spool_msg *back = NULL;

    if (buf == NULL || parse(buf, len, spool_msg_id(m), &back, why) != 1)
        diag("reread: %s", why);
    free(buf);
    return back;
}

static spool_msg *
new_msg(const char *id, const char *key, const void *body, size_t blen)
{
    errbuf err;
    char *buf, why[256];
    size_t len;
    spool_msg *m = NULL;

    if (spool_msg_render_new(id, "factory", key, CREATED, body, blen, &buf, &len, &err) < 0) {
        diag("render_new: %s", err.msg);
        return NULL;
    }
    if (parse(buf, len, id, &m, why) != 1)
        diag("parse: %s", why);
    free(buf);
    return m;
}

static void
test_ids(void)
{
    char id[SPOOL_ID_MAX + 2];

    ok(spool_msg_valid_id("3f0c-a.b_C9"), "letters, digits, dot, dash and underscore make an id");
    ok(!spool_msg_valid_id(""), "the empty id is refused");
    ok(!spool_msg_valid_id(NULL), "NULL is refused");
    ok(!spool_msg_valid_id(".hidden"), "a leading dot is refused");
    ok(!spool_msg_valid_id("a/b") && !spool_msg_valid_id("a b") && !spool_msg_valid_id("부"),
       "a slash, a space or a non-ASCII byte is refused");
    memset(id, 'x', SPOOL_ID_MAX);
    id[SPOOL_ID_MAX] = '\0';
    ok(spool_msg_valid_id(id), "an id of SPOOL_ID_MAX characters is valid");
    id[SPOOL_ID_MAX] = 'x';
    id[SPOOL_ID_MAX + 1] = '\0';
    ok(!spool_msg_valid_id(id), "one more is refused");
}

static void
test_round_trip(void)
{
    static const char body[] = "{\"order\":1}\n\0binary\xff\nend of body\r\n";
    const char *want = "restock-spool 1\nid: m1\nqueue: factory\nkey: P1\n"
                       "created: 1712345678.123456789 2024-04-05T19:34:38Z\nattempts: 0\n"
                       "length: 34\n\n";
    errbuf err;
    char *buf = NULL, *again, why[256];
    size_t len = 0, len2;
    spool_msg *m = NULL;

    ok(spool_msg_render_new("m1", "factory", "P1", CREATED, body, sizeof(body) - 1, &buf, &len,
                            &err) == RS_OK,
       "a new message renders");
    ok(buf && strncmp(buf, want, strlen(want)) == 0, "headers as spool_msg.h shows them");
    ok(buf && len == strlen(want) + sizeof(body) - 1 + 1 + 4 + 64 + 1 &&
           memcmp(buf + strlen(want), body, sizeof(body) - 1) == 0 &&
           strncmp(buf + len - 70, "\nend ", 5) == 0,
       "then the body, a newline and the end line with 64 hex digits");
    is_int(parse(buf, len, "m1", &m, why), 1, "the file parses");
    ok(m && spool_msg_len(m) == sizeof(body) - 1 &&
           memcmp(spool_msg_body(m), body, sizeof(body) - 1) == 0,
       "the body comes back byte for byte, NUL and all");
    ok(m && ((const char *)spool_msg_body(m))[spool_msg_len(m)] == '\0',
       "and is followed by a NUL byte for parsers");
    is_str(m ? spool_msg_id(m) : NULL, "m1", "id");
    is_str(m ? spool_msg_queue(m) : NULL, "factory", "queue");
    is_str(m ? spool_msg_key(m) : NULL, "P1", "key");
    ok(m && spool_msg_created_ns(m) == CREATED && spool_msg_created(m) == 1712345678,
       "the created time to the nanosecond");
    ok(m && spool_msg_attempts(m) == 0 && spool_msg_due(m) == 0 && spool_msg_died_at(m) == 0 &&
           spool_msg_last_error(m) == NULL && spool_msg_death_reason(m) == NULL &&
           spool_msg_history_count(m) == 0 && spool_msg_history(m, 0) == NULL,
       "a new message has no attempts, due time, errors, death or history");
    is_int(m ? (int)spool_msg_state(m) : -1, SPOOL_INCOMING, "parsed messages start as incoming");
    again = m ? render(m, &len2) : NULL;
    ok(again && len2 == len && memcmp(again, buf, len) == 0,
       "rendering the parsed message gives the same bytes");
    free(again);
    spool_msg_destroy(&m);
    ok(m == NULL, "spool_msg_destroy clears the pointer");
    spool_msg_destroy(&m);
    free(buf);

    ok(spool_msg_render_new("m2", "factory", "", CREATED, NULL, 0, &buf, &len, &err) == RS_OK &&
           strstr(buf, "key:") == NULL && strstr(buf, "\nlength: 0\n\n\nend ") != NULL,
       "an empty key writes no key header, an empty body no bytes");
    is_int(parse(buf, len, "m2", &m, why), 1, "and parses");
    ok(m && spool_msg_key(m) == NULL && spool_msg_len(m) == 0, "without key, with no body");
    spool_msg_destroy(&m);
    free(buf);
}

static void
test_state_changes(void)
{
    spool_msg *m = new_msg("m1", "P1", "x", 1), *back, *copy;
    errbuf err;
    char *a, *b;
    const char *id;
    const void *body;
    size_t la, lb;

    spool_msg_set_state(m, SPOOL_ACTIVE);
    is_int(spool_msg_state(m), SPOOL_ACTIVE, "the state is the one set");
    ok(spool_msg_mark_deferred(m, 1, 1712345700, "HTTP 500 from factory", &err) == RS_OK,
       "a counted deferral");
    ok(has_line(m, "attempts: 1") && has_line(m, "due: 1712345700 2024-04-05T19:35:00Z") &&
           has_line(m, "last-error: HTTP 500 from factory"),
       "writes attempts, the due time (with its UTC text) and the error");
    back = reread(m);
    ok(back && spool_msg_attempts(back) == 1 && spool_msg_due(back) == 1712345700 &&
           strcmp(spool_msg_last_error(back), "HTTP 500 from factory") == 0,
       "which read back");
    spool_msg_destroy(&back);
    spool_msg_mark_deferred(m, 0, 0, NULL, &err);
    ok(spool_msg_attempts(m) == 1 && spool_msg_due(m) == 1 && spool_msg_last_error(m) == NULL,
       "an uncounted one keeps attempts; due 0 is written as 1; no error, no header");

    ok(spool_msg_mark_dead(m, "HTTP 503", NULL, 1712349999, &err) == RS_OK, "a death");
    ok(has_line(m, "attempts: 2") && has_line(m, "last-error: HTTP 503") &&
           has_line(m, "died-at: 1712349999 2024-04-05T20:46:39Z") &&
           has_line(m, "death-reason: killed"),
       "counts the last attempt, and says when and why (\"killed\" without a reason)");
    ok(spool_msg_due(m) == 0 && !has_line(m, "due: 1 1970-01-01T00:00:01Z"), "no due time");

    copy = spool_msg_copy(m, &err);
    a = render(m, &la);
    b = copy ? render(copy, &lb) : NULL;
    ok(a && b && la == lb && memcmp(a, b, la) == 0, "a copy renders the same bytes");
    free(a);
    free(b);
    spool_msg_mark_dead(copy, NULL, "malformed body", 1712350000, &err);
    ok(spool_msg_attempts(copy) == 2 && strcmp(spool_msg_last_error(copy), "HTTP 503") == 0 &&
           strcmp(spool_msg_death_reason(copy), "malformed body") == 0,
       "a death without an attempt keeps attempts and the last error");
    is_str(spool_msg_death_reason(m), "killed", "changing the copy leaves the original");
    id = spool_msg_id(m);
    body = spool_msg_body(m);
    spool_msg_swap_record(m, copy);
    ok(strcmp(spool_msg_death_reason(m), "malformed body") == 0 &&
           strcmp(spool_msg_death_reason(copy), "killed") == 0,
       "spool_msg_swap_record exchanges what the two record");
    ok(spool_msg_id(m) == id && spool_msg_body(m) == body,
       "id and body stay where they were: pointers to them remain valid");
    spool_msg_destroy(&copy);

    ok(spool_msg_mark_redriven(m, 1712350800, &err) == RS_OK, "a redrive");
    ok(has_line(m, "history: died 2024-04-05T20:46:40Z after 2 attempts: malformed body (last "
                   "error: HTTP 503); redriven 2024-04-05T21:00:00Z"),
       "records the death in a history line");
    ok(spool_msg_attempts(m) == 0 && spool_msg_died_at(m) == 0 && spool_msg_due(m) == 0 &&
           spool_msg_last_error(m) == NULL && spool_msg_death_reason(m) == NULL,
       "and starts afresh");
    for (int i = 0; i < SPOOL_MSG_HISTORY_MAX + 4; i++) {
        spool_msg_mark_dead(m, "again", NULL, 1712350801 + i, &err);
        spool_msg_mark_redriven(m, 1712360000 + i, &err);
    }
    back = reread(m);
    is_int(back ? spool_msg_history_count(back) : 0, SPOOL_MSG_HISTORY_MAX,
           "the history keeps SPOOL_MSG_HISTORY_MAX lines");
    ok(back && strstr(spool_msg_history(back, 0), "redriven 2024-04-05T23:33:24Z") &&
           strstr(spool_msg_history(back, SPOOL_MSG_HISTORY_MAX - 1),
                  "redriven 2024-04-05T23:33:43Z"),
       "the newest ones, oldest first");
    spool_msg_destroy(&back);
    spool_msg_destroy(&m);
}

static void
test_torn(void)
{
    spool_msg *m = new_msg("m1", "P1", "{\"order\":1}", 11), *got = NULL;
    size_t len;
    char *buf = render(m, &len), why[256], *longer;
    int all_refused = 1, all_torn = 1;

    for (size_t cut = 0; cut < len; cut++) {
        if (parse(buf, cut, "m1", &got, why) != 0)
            all_refused = 0;
        if (strstr(why, "torn") == NULL) {
            diag("cut at %zu: %s", cut, why);
            all_torn = 0;
        }
        spool_msg_destroy(&got);
    }
    ok(all_refused, "every start of a file is refused (%zu of them)", len);
    ok(all_torn, "and called torn");
    longer = malloc(len + 6);
    memcpy(longer, buf, len);
    memcpy(longer + len, "extra\n", 6);
    ok(parse(longer, len + 6, "m1", &got, why) == 0, "bytes after the end line are refused: %s",
       why);
    free(longer);
    ok(strstr(refused("restock-spool 1\nid: m1\nqueue: factory\ncreated: 1\nattempts: 0\n"
                      "length: 5\n\nabcdef\n"),
              "length 5 does not match the body: torn") != NULL,
       "a body longer than its length is torn, even with a good checksum");
    ok(strstr(refused("restock-spool 1\nid: m1\nqueue: factory\ncreated: 1\nattempts: 0\n"
                      "length: 9\n\nabcdef\n"),
              "torn") != NULL,
       "so is a shorter one");
    free(buf);
    spool_msg_destroy(&m);
}

static void
test_checksum(void)
{
    spool_msg *m = new_msg("m1", "P1", "{\"order\":1}", 11), *got = NULL;
    size_t len, end;
    char *buf = render(m, &len), why[256];
    int all_refused = 1, all_checksum = 1;

    end = len - 70; /* where the end line starts */
    for (size_t i = 0; i < end; i++) {
        buf[i] ^= 0x01;
        if (parse(buf, len, "m1", &got, why) != 0)
            all_refused = 0;
        /* The newline before "end " belongs to the end line's frame. */
        if (i != end - 1 && strstr(why, "checksum mismatch") == NULL) {
            diag("byte %zu flipped: %s", i, why);
            all_checksum = 0;
        }
        spool_msg_destroy(&got);
        buf[i] ^= 0x01;
    }
    ok(all_refused, "one flipped bit anywhere before the end line is refused");
    ok(all_checksum, "as a checksum mismatch");
    buf[end + 10] = buf[end + 10] == '0' ? '1' : '0';
    ok(parse(buf, len, "m1", &got, why) == 0 && strstr(why, "checksum mismatch"),
       "so is a changed checksum");
    buf[end + 10] = 'g';
    ok(parse(buf, len, "m1", &got, why) == 0 && strstr(why, "no checksum"),
       "an end line without hex digits has no checksum: %s", why);
    free(buf);
    spool_msg_destroy(&m);
}

static void
test_oversize(void)
{
    char *body = calloc(1, SPOOL_BODY_MAX + 1), *buf = NULL, why[256], text[300];
    errbuf err;
    size_t len;
    spool_msg *m = NULL;

    ok(spool_msg_render_new("big", "factory", NULL, CREATED, body, SPOOL_BODY_MAX + 1, &buf, &len,
                            &err) == RS_ERR &&
           strstr(err.msg, "body of 8388609 bytes refused"),
       "a body over SPOOL_BODY_MAX is refused: %s", err.msg);
    ok(spool_msg_render_new("big", "factory", NULL, CREATED, body, SPOOL_BODY_MAX, &buf, &len,
                            &err) == RS_OK,
       "a body of SPOOL_BODY_MAX renders");
    ok(buf && parse(buf, len, "big", &m, why) == 1 && spool_msg_len(m) == SPOOL_BODY_MAX,
       "and parses");
    spool_msg_destroy(&m);
    free(buf);
    snprintf(text, sizeof(text),
             "restock-spool 1\nid: m1\nqueue: factory\ncreated: 1\nattempts: 0\nlength: %d\n\nx\n",
             SPOOL_BODY_MAX + 1);
    ok(strstr(refused(text), "bad length") != NULL,
       "a length header over SPOOL_BODY_MAX is refused");
    ok(parse(body, SPOOL_MSG_FILE_MAX + 1, "m1", &m, why) == 0 && strstr(why, "too large"),
       "more than SPOOL_MSG_FILE_MAX bytes are refused unread: %s", why);
    free(body);
}

static void
test_odd_headers(void)
{
    static const char euckr[] = "\xba\xce\xbb\xea\xb5\xb5 \xb0\xf8\xc0\xe5";
    spool_msg *m = new_msg("m1", NULL, "x", 1), *back;
    errbuf err;
    char longer[1300] = "";

    spool_msg_mark_deferred(m, 1, 5, "line 1\nline 2\r\tend\x1b[31m\x7f!", &err);
    ok(has_line(m, "last-error: line 1 line 2  end [31m !"),
       "control characters in a header text become spaces: one line");
    back = reread(m);
    is_str(back ? spool_msg_last_error(back) : NULL, "line 1 line 2  end [31m !", "and read back");
    spool_msg_destroy(&back);

    for (int i = 0; i < 400; i++)
        strcat(longer, "부");
    spool_msg_mark_deferred(m, 1, 5, longer, &err);
    back = reread(m);
    ok(back && strlen(spool_msg_last_error(back)) == 999 &&
           utf8_valid(spool_msg_last_error(back), 999),
       "a long text is cut to SPOOL_TEXT_MAX bytes, before the character it would split");
    spool_msg_destroy(&back);

    spool_msg_mark_deferred(m, 1, 5, euckr, &err);
    back = reread(m);
    is_str(back ? spool_msg_last_error(back) : NULL, euckr,
           "bytes that are not UTF-8 (EUC-KR) are kept as they came");
    spool_msg_destroy(&back);
    spool_msg_mark_deferred(m, 1, 5, "", &err);
    ok(spool_msg_last_error(m) == NULL, "an empty text is no header");
    spool_msg_destroy(&m);

#define HEAD "restock-spool 1\nid: m1\nqueue: factory\n"
#define TAIL "created: 1\nattempts: 0\nlength: 1\n\nx\n"
    is_str(refused(HEAD "x-later-version: 1\n" TAIL), "", "an unknown header is skipped");
    is_str(refused(HEAD "last-error: \xba\xce\xff\n" TAIL), "",
           "a header of bytes that are not UTF-8 is read");
    {
        static const char nul[] = HEAD "last-error: a\0b\n" TAIL;
        ok(strstr(refused_n(nul, sizeof(nul) - 1), "NUL byte") != NULL,
           "a NUL byte in a header is refused");
    }
    ok(strstr(refused(HEAD "no colon here\n" TAIL), "without \": \"") != NULL,
       "a header line without \": \" is refused");
    {
        char text[4000];
        int n = snprintf(text, sizeof(text), "%slast-error: ", HEAD);
        memset(text + n, 'a', 3000);
        snprintf(text + n + 3000, sizeof(text) - (size_t)n - 3000, "\n%s", TAIL);
        ok(strstr(refused(text), "too long") != NULL, "a header line of 3000 bytes is refused");
    }
    ok(strstr(refused(HEAD "key: bad/key\n" TAIL), "invalid key") != NULL,
       "a key that is not an id is refused");
    ok(strstr(refused("restock-spool 1\nid: m2\nqueue: factory\n" TAIL), "not the file name"),
       "an id that is not the file name is refused");
    ok(strstr(refused("restock-spool 1\nid: m1\nqueue: mail\n" TAIL), "not of this one"),
       "a message of another queue is refused");
    ok(strstr(refused(HEAD "attempts: 0\nlength: 1\n\nx\n"), "a header is missing"),
       "a missing created header is refused");
    ok(strstr(refused(HEAD "created: 1\nattempts: -1\nlength: 1\n\nx\n"), "bad attempts"),
       "negative attempts are refused");
    ok(strstr(refused(HEAD "created: 12x\nattempts: 0\nlength: 1\n\nx\n"), "bad created"),
       "a created time that is not a number is refused");
    ok(strstr(refused(HEAD "due: 99999999999999999999\n" TAIL), "bad due"),
       "a due time out of range is refused");
    ok(strstr(refused("restock-spool 2\nid: m1\nqueue: factory\n" TAIL), "first line"),
       "another format version is refused");
    ok(strstr(refused(HEAD "created: 1\nattempts: 0\nlength: 1\n"), "torn") ||
           strstr(refused(HEAD "created: 1\nattempts: 0\nlength: 1\n"), "do not end"),
       "headers without the empty line are refused");
#undef HEAD
#undef TAIL
}

/* The claim epoch of outbox work (workers/claim.h): a header of its own, kept
 * through a copy and every state change; absent (0) for other messages. */
static void
test_claim(void)
{
    errbuf err;
    char *buf = NULL, why[256];
    size_t len = 0;
    spool_msg *m = NULL, *c = NULL;

    ok(spool_msg_render_claimed("e1.2", "factory", "P1", 2, CREATED, "x", 1, &buf, &len, &err) ==
               RS_OK &&
           strstr(buf, "\nattempts: 0\nclaim: 2\nlength: 1\n") != NULL,
       "a message made under claim epoch 2 has a claim header");
    is_int(parse(buf, len, "e1.2", &m, why), 1, "and parses");
    ok(m && spool_msg_claim(m) == 2, "its claim epoch reads back");
    c = m ? spool_msg_copy(m, &err) : NULL;
    ok(c && spool_msg_claim(c) == 2, "a copy keeps it");
    ok(c && spool_msg_mark_deferred(c, 1, 99, "peer said 500", &err) == RS_OK &&
           spool_msg_mark_dead(c, "x", "why", 100, &err) == RS_OK &&
           spool_msg_mark_redriven(c, 101, &err) == RS_OK && spool_msg_claim(c) == 2,
       "deferred, dead and redriven, it keeps its epoch (a redrive is checked under it)");
    spool_msg_destroy(&c);
    spool_msg_destroy(&m);
    free(buf);
    ok(spool_msg_render_claimed("e2", "mail", NULL, 0, CREATED, "x", 1, &buf, &len, &err) ==
               RS_OK &&
           strstr(buf, "claim:") == NULL,
       "epoch 0: no claim header");
    free(buf);
    buf = NULL;
    ok(strstr(refused("restock-spool 1\nid: m1\nqueue: factory\ncreated: 1\nattempts: 0\n"
                      "claim: 0\nlength: 1\n\nx\n"),
              "bad claim") != NULL,
       "a claim header of 0 is refused");
}

int
main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_claim();
    test_ids();
    test_round_trip();
    test_state_changes();
    test_torn();
    test_checksum();
    test_oversize();
    test_odd_headers();
    return done_testing();
}
