/* Unit test of mail against a real SMTP server (tests/smtp_sink.py, started here on
 * a port of its choosing): what arrives on the wire, how each failure of a relay is
 * classified, STARTTLS with certificate verification, AUTH, and that the password
 * never reaches a log line or an error. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "conf.h"
#include "log.h"
#include "mail.h"
#include "tap.h"

#define PASSWORD "s3cret-Pw"
#define FROM     "restock@donut-states.example"
#define TO       "manager@donut-states.example"

static char tmp[64];
static const char *srcdir;
static int sink_count;

struct sink {
    pid_t pid;
    int port;
    char maildir[128];
};

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts smtp_sink.py with extra arguments (NULL-terminated); port 0 lets it pick
 * one, which it writes to its ready file once it listens. */
static int
sink_start(struct sink *s, ...)
{
    char ready[160], log_path[160];
    const char *argv[32];
    char script[512];
    int argc = 0;
    va_list ap;

    sink_count++;
    snprintf(s->maildir, sizeof(s->maildir), "%s/mail%d", tmp, sink_count);
    snprintf(ready, sizeof(ready), "%s/ready%d", tmp, sink_count);
    snprintf(log_path, sizeof(log_path), "%s/sink%d.log", tmp, sink_count);
    snprintf(script, sizeof(script), "%s/tests/smtp_sink.py", srcdir);
    argv[argc++] = "/usr/bin/python3";
    argv[argc++] = script;
    argv[argc++] = "--port";
    argv[argc++] = "0";
    argv[argc++] = "--maildir";
    argv[argc++] = s->maildir;
    argv[argc++] = "--ready-file";
    argv[argc++] = ready;
    va_start(ap, s);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 30;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    s->pid = fork();
    if (s->pid < 0)
        return -1;
    if (s->pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 600; i++) { /* 30 s: python starting on a busy machine */
        char *text = tap_slurp(ready);
        if (text != NULL) {
            s->port = atoi(text);
            free(text);
            return s->port > 0 ? 0 : -1;
        }
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        sleep_ms(50);
    }
    return -1;
}

/* SIGTERM; returns the exit status (0 when it stopped cleanly). */
static int
sink_stop(struct sink *s)
{
    int status = -1;

    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    if (waitpid(s->pid, &status, 0) != s->pid)
        return -1;
    s->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The messages the sink stored (up to max, in no order); returns their count. */
static int
sink_messages(const struct sink *s, char **msgs, int max)
{
    char path[300];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "%s/new", s->maildir);
    d = opendir(path);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n < max) {
            snprintf(path, sizeof(path), "%s/new/%s", s->maildir, e->d_name);
            msgs[n] = tap_slurp(path);
        }
        n++;
    }
    closedir(d);
    return n;
}

static void
free_messages(char **msgs, int n)
{
    for (int i = 0; i < n; i++) {
        free(msgs[i]);
        msgs[i] = NULL;
    }
}

/* A configuration of the smtp_* keys through the environment, as RESTOCK_* does. */
static conf *
make_conf(const char *host, int port, const char *starttls, const char *user, const char *password,
          const char *ca_file, const char *timeout)
{
    errbuf err = {{0}};
    char port_text[16];
    conf *cf;

    snprintf(port_text, sizeof(port_text), "%d", port);
    setenv("RESTOCK_SMTP_HOST", host, 1);
    setenv("RESTOCK_SMTP_PORT", port_text, 1);
    setenv("RESTOCK_SMTP_STARTTLS", starttls, 1);
    setenv("RESTOCK_SMTP_USER", user, 1);
    setenv("RESTOCK_SMTP_PASSWORD", password, 1);
    setenv("RESTOCK_SMTP_CA_FILE", ca_file, 1);
    setenv("RESTOCK_SMTP_TIMEOUT", timeout, 1);
    setenv("RESTOCK_MAIL_FROM", FROM, 1);
    cf = conf_new("/dev/null", &err);
    if (cf == NULL)
        diag("conf: %s", err.msg);
    return cf;
}

static mail *
make_mail(const char *host, int port, const char *starttls, const char *user, const char *password,
          const char *ca_file, const char *timeout)
{
    conf *cf = make_conf(host, port, starttls, user, password, ca_file, timeout);
    errbuf err = {{0}};
    mail *m;

    if (cf == NULL)
        return NULL;
    m = mail_new(cf, &err);
    if (m == NULL)
        diag("mail_new: %s", err.msg);
    conf_destroy(&cf);
    return m;
}

/* The header section's field (unfolded), NULL when absent; *count says how often
 * it occurs. */
static char *
header(const char *msg, const char *name, int *count)
{
    const char *end = strstr(msg, "\r\n\r\n");
    size_t len = strlen(name);
    char *value = NULL;
    int n = 0;

    for (const char *p = msg; end != NULL && p < end; p = strstr(p, "\r\n") + 2) {
        if (strncasecmp(p, name, len) == 0 && p[len] == ':') {
            const char *v = p + len + 1, *q = v;
            size_t k = 0;
            n++;
            free(value);
            value = calloc(1, (size_t)(end - v) + 1);
            while (q < end) {
                if (q[0] == '\r' && q[1] == '\n') {
                    if (q[2] != ' ' && q[2] != '\t')
                        break;
                    q += 2; /* unfold */
                    continue;
                }
                value[k++] = *q++;
            }
            while (value[0] == ' ')
                memmove(value, value + 1, strlen(value));
        }
    }
    if (count != NULL)
        *count = n;
    return value;
}

/* Whole UTF-8 characters only: no sequence cut at either end. */
static int
utf8_whole(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        int n = *p < 0x80             ? 1
                : (*p & 0xe0) == 0xc0 ? 2
                : (*p & 0xf0) == 0xe0 ? 3
                : (*p & 0xf8) == 0xf0 ? 4
                                      : 0;
        if (n == 0)
            return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

/* RFC 2047 decoder for the test: the subject's encoded-words, each on its own
 * valid UTF-8, at most 75 characters; NULL when anything is off. */
static char *
decode_subject(const char *value)
{
    char *out = calloc(1, strlen(value) + 1);
    size_t k = 0;
    const char *p = value;

    while (*p) {
        const char *end;
        unsigned char bin[128];
        size_t n;

        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (strncmp(p, "=?UTF-8?B?", 10) != 0 || (end = strstr(p + 10, "?=")) == NULL ||
            end + 2 - p > 75 ||
            sodium_base642bin(bin, sizeof(bin), p + 10, (size_t)(end - p - 10), NULL, &n, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0) {
            free(out);
            return NULL;
        }
        bin[n] = '\0';
        if (!utf8_whole((const char *)bin)) {
            free(out);
            return NULL;
        }
        memcpy(out + k, bin, n);
        k += n;
        p = end + 2;
    }
    out[k] = '\0';
    return out;
}

/* Lines end in CRLF and none is longer than limit (not counting the CRLF). */
static int
wire_ok(const char *msg, size_t limit)
{
    size_t col = 0;

    for (const char *p = msg; *p; p++) {
        if (*p == '\n') {
            if (p == msg || p[-1] != '\r')
                return 0;
            col = 0;
        } else if (*p != '\r' && ++col > limit) {
            return 0;
        }
    }
    return 1;
}

/* The body: base64 lines of at most 76 characters, decoded. */
static char *
decode_body(const char *msg)
{
    const char *b = strstr(msg, "\r\n\r\n");
    size_t n, cap;
    char *out;

    if (b == NULL)
        return NULL;
    b += 4;
    if (!wire_ok(b, 76))
        return NULL;
    cap = strlen(b);
    out = calloc(1, cap + 1);
    if (sodium_base642bin((unsigned char *)out, cap, b, strlen(b), "\r\n", &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

/* Whether the sink's Received header names this protocol (ESMTP, ESMTPS, ...). */
static int
received_with(const char *msg, const char *protocol)
{
    char want[64];
    char *v = header(msg, "Received", NULL);
    int yes;

    snprintf(want, sizeof(want), " with %s id ", protocol);
    yes = v != NULL && strstr(v, want) != NULL;
    free(v);
    return yes;
}

/* A port on which nothing listens: bound, never listening, so that no one else
 * takes it while the test runs; connecting is refused. */
static int
dead_port(int *fd)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);

    *fd = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(*fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    return ntohs(a.sin_port);
}

static const char subject_ko[] = "[restock] 품절: 부산도너츠 (CP-502101) 광고를 일시중지해 주세요";
static const char body_ko[] =
    "안녕하세요, 광고 담당자님.\n"
    "\n"
    "부산도너츠 (CP-502101) 상품이 2025-01-14 10:00 KST에 품절되었습니다.\n"
    ".\n"
    "이 상품의 광고를 일시중지해 주세요.\n";
static const char body_crlf[] =
    "안녕하세요, 광고 담당자님.\r\n"
    "\r\n"
    "부산도너츠 (CP-502101) 상품이 2025-01-14 10:00 KST에 품절되었습니다.\r\n"
    ".\r\n"
    "이 상품의 광고를 일시중지해 주세요.\r\n";

static void
test_wire(void)
{
    struct sink s;
    errbuf err = {{0}};
    char *msgs[4] = {0}, *v;
    int n, count;
    mail *m;

    if (!ok(sink_start(&s, NULL) == 0, "the SMTP sink starts"))
        return;
    m = make_mail("127.0.0.1", s.port, "off", "", "", "", "10");
    ok(m != NULL, "mail_new with STARTTLS off, no AUTH");
    is_int(mail_send(m, TO, subject_ko, body_ko, "order-0b6c8e2a.pause", &err), MAIL_SENT,
           "a Korean email is sent");
    n = sink_messages(&s, msgs, 4);
    is_int(n, 1, "the relay stored one message");
    if (n == 1) {
        const char *msg = msgs[0];
        ok(wire_ok(msg, 78), "CRLF line ends, no line over 78 characters");
        v = header(msg, "From", &count);
        ok(v && count == 1 && strcmp(v, FROM) == 0, "one From: mail_from (%s)", v);
        free(v);
        v = header(msg, "To", &count);
        ok(v && count == 1 && strcmp(v, TO) == 0, "one To: the recipient (%s)", v);
        free(v);
        v = header(msg, "Date", &count);
        {
            struct tm tm = {0};
            const char *end = v ? strptime(v, "%a, %d %b %Y %H:%M:%S %z", &tm) : NULL;
            ok(count == 1 && end != NULL && *end == '\0', "one Date in RFC 5322 form (%s)", v);
        }
        free(v);
        v = header(msg, "Message-ID", &count);
        ok(v && count == 1 && strcmp(v, "<order-0b6c8e2a.pause@donut-states.example>") == 0,
           "one Message-ID from the caller's token at mail_from's domain (%s)", v);
        free(v);
        v = header(msg, "MIME-Version", &count);
        ok(v && count == 1 && strcmp(v, "1.0") == 0, "MIME-Version: 1.0");
        free(v);
        v = header(msg, "Content-Type", &count);
        ok(v && count == 1 && strcmp(v, "text/plain; charset=UTF-8") == 0,
           "Content-Type: text/plain; charset=UTF-8");
        free(v);
        v = header(msg, "Content-Transfer-Encoding", &count);
        ok(v && count == 1 && strcmp(v, "base64") == 0, "Content-Transfer-Encoding: base64");
        free(v);
        v = header(msg, "Auto-Submitted", &count);
        ok(v && count == 1 && strcmp(v, "auto-generated") == 0, "Auto-Submitted: auto-generated");
        free(v);
        v = header(msg, "Subject", &count);
        ok(count == 1 && v && strstr(v, "=?UTF-8?B?") == v, "one Subject, RFC 2047 encoded");
        {
            char *decoded = v ? decode_subject(v) : NULL;
            is_str(decoded, subject_ko, "the Subject decodes to the Korean text");
            free(decoded);
        }
        free(v);
        {
            char *body = decode_body(msg);
            is_str(body, body_crlf, "the body decodes to the UTF-8 text with CRLF line ends");
            free(body);
        }
        ok(received_with(msg, "ESMTP"), "plain SMTP, no TLS, no AUTH");
        v = header(msg, "Delivered-To", NULL);
        ok(v && strcmp(v, TO) == 0, "the envelope recipient is the To address");
        free(v);
        v = header(msg, "Return-Path", NULL);
        ok(v && strcmp(v, "<" FROM ">") == 0, "the envelope sender is mail_from");
        free(v);
    }
    free_messages(msgs, n < 4 ? n : 4);

    /* A retry of the same queued message carries the same Message-ID. */
    is_int(mail_send(m, TO, subject_ko, body_ko, "order-0b6c8e2a.pause", &err), MAIL_SENT,
           "the same message sent again");
    n = sink_messages(&s, msgs, 4);
    is_int(n, 2, "two messages stored");
    if (n == 2) {
        char *a = header(msgs[0], "Message-ID", NULL), *b = header(msgs[1], "Message-ID", NULL);
        ok(a && b && strcmp(a, b) == 0, "both carry one Message-ID, recipients can de-duplicate");
        free(a);
        free(b);
    }
    free_messages(msgs, n < 4 ? n : 4);
    mail_destroy(&m);
    ok(m == NULL, "mail_destroy clears the pointer");

    /* Opportunistic STARTTLS with a relay that offers none: plain text, sent. */
    m = make_mail("127.0.0.1", s.port, "opportunistic", "", "", "", "10");
    is_int(mail_send(m, TO, "plain", "text", NULL, &err), MAIL_SENT,
           "opportunistic STARTTLS, not offered: sent in plain text");
    mail_destroy(&m);

    /* Required STARTTLS with a relay that offers none: never sent in plain text. */
    m = make_mail("127.0.0.1", s.port, "required", "", "", "", "10");
    is_int(mail_send(m, TO, "plain", "text", NULL, &err), MAIL_TEMPORARY,
           "required STARTTLS, not offered: temporary (the relay or the setting must change)");
    ok(strstr(err.msg, "does not offer STARTTLS") != NULL, "says why: %s", err.msg);
    is_int(sink_messages(&s, msgs, 0), 3, "nothing more was stored");
    mail_destroy(&m);
    is_int(sink_stop(&s), 0, "the sink stops cleanly on SIGTERM");
}

static void
test_compose(void)
{
    /* 13 ASCII then Hangul (3 bytes) and emoji (4 bytes), so that encoded-words would
     * cut characters if the encoder did not take care. */
    static const char long_subject[] = "[restock] 처리 실패 (factory 큐): 공장 주문 CP-502101 x 10 "
                                       "🍩🍩🍩 가나다라마바사아자차카타파하 "
                                       "부산도너츠 공장이 응답하지 않습니다 🍩 끝";
    errbuf err = {{0}};
    char *a = NULL, *b = NULL, *v;
    mail *m = make_mail("127.0.0.1", 25, "off", "", "", "", "10");

    if (!ok(m != NULL, "mail_new for composing"))
        return;
    ok(mail_compose(m, TO, long_subject, body_ko, NULL, &a, &err) == RS_OK,
       "compose a long subject");
    ok(a && wire_ok(a, 76), "every line of the message fits in 76 characters");
    v = a ? header(a, "Subject", NULL) : NULL;
    {
        char *decoded = v ? decode_subject(v) : NULL;
        is_str(decoded, long_subject,
               "folded encoded-words of whole UTF-8 characters, each at most 75, decode back");
        free(decoded);
    }
    ok(v && strstr(v, "?= =?UTF-8?B?") != NULL, "the subject took several encoded-words");
    free(v);
    v = a ? header(a, "Message-ID", NULL) : NULL;
    ok(v && strlen(v) == 1 + 36 + strlen("@donut-states.example") + 1 && v[37] == '@' &&
           strcmp(v + 37, "@donut-states.example>") == 0,
       "no token: <uuid@domain-of-mail_from> (%s)", v);
    ok(mail_compose(m, TO, "x", "y", NULL, &b, &err) == RS_OK, "compose again");
    {
        char *w = b ? header(b, "Message-ID", NULL) : NULL;
        ok(v && w && strcmp(v, w) != 0, "each new message has its own Message-ID");
        free(w);
    }
    free(v);
    v = b ? header(b, "Subject", NULL) : NULL;
    is_str(v, "x", "a short ASCII subject stays as it is");
    free(v);
    free(a);
    free(b);
    a = NULL;
    ok(mail_compose(m, TO, "x", "y", "evt-1@worker.example", &a, &err) == RS_OK, "token with @");
    v = a ? header(a, "Message-ID", NULL) : NULL;
    is_str(v, "<evt-1@worker.example>", "a token with @ is the whole id");
    free(v);
    free(a);
    {
        char big[2000];
        char *body;
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        ok(mail_compose(m, TO, "x", big, NULL, &a, &err) == RS_OK, "a long body");
        body = a ? decode_body(a) : NULL;
        is_str(body, big, "a long body in lines of 76 decodes back");
        free(body);
        free(a);
    }

    a = NULL;
    ok(mail_compose(m, TO ">\r\nBcc: x@evil.example", "x", "y", NULL, &a, &err) == RS_ERR &&
           a == NULL && strstr(err.msg, "not one address"),
       "a recipient that would add a header is refused: %s", err.msg);
    ok(mail_compose(m, "Name <a@b.example>", "x", "y", NULL, &a, &err) == RS_ERR,
       "a display name is refused (one bare address)");
    ok(mail_compose(m, TO, "two\r\nBcc: x@evil.example", "y", NULL, &a, &err) == RS_ERR &&
           strstr(err.msg, "control character"),
       "a subject with a line break is refused: %s", err.msg);
    ok(mail_compose(m, TO, "\xed\x95", "y", NULL, &a, &err) == RS_ERR &&
           strstr(err.msg, "subject is not UTF-8"),
       "a subject cut inside a character is refused");
    ok(mail_compose(m, TO, "x", "\xc0\xaf", NULL, &a, &err) == RS_ERR &&
           strstr(err.msg, "body is not UTF-8"),
       "an overlong UTF-8 body is refused");
    ok(mail_compose(m, TO, "x", "y", "a b", &a, &err) == RS_ERR && strstr(err.msg, "Message-ID"),
       "a Message-ID token with a space is refused: %s", err.msg);
    is_int(mail_send(m, "nobody", "x", "y", NULL, &err), MAIL_PERMANENT,
           "mail_send of an invalid message is permanent (retrying cannot help)");
    mail_destroy(&m);
}

static void
test_replies(void)
{
    struct sink s;
    errbuf err = {{0}};
    char *msgs[2] = {0};
    mail *m;
    int fd, port;

    if (ok(sink_start(&s, "--tempfail", "1", NULL) == 0, "a sink answering 451 once")) {
        m = make_mail("127.0.0.1", s.port, "off", "", "", "", "10");
        is_int(mail_send(m, TO, subject_ko, body_ko, "t1", &err), MAIL_TEMPORARY,
               "451 after DATA: temporary");
        ok(strstr(err.msg, "451") && strstr(err.msg, "try again later") &&
               strstr(err.msg, "(DATA)") && strstr(err.msg, "127.0.0.1"),
           "with the relay, its reply and the command: %s", err.msg);
        is_int(mail_send(m, TO, subject_ko, body_ko, "t1", &err), MAIL_SENT,
               "the retry is accepted");
        is_int(sink_messages(&s, msgs, 0), 1, "stored once");
        mail_destroy(&m);
        is_int(sink_stop(&s), 0, "sink stopped");
    }
    if (ok(sink_start(&s, "--tempfail", "1", "--fail-at", "mail", NULL) == 0,
           "a sink answering 451 to MAIL FROM")) {
        m = make_mail("127.0.0.1", s.port, "off", "", "", "", "10");
        is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_TEMPORARY, "451 to MAIL: temporary");
        ok(strstr(err.msg, "451") && strstr(err.msg, "(MAIL FROM)"), "named: %s", err.msg);
        mail_destroy(&m);
        sink_stop(&s);
    }
    if (ok(sink_start(&s, "--permfail", NULL) == 0, "a sink answering 550")) {
        m = make_mail("127.0.0.1", s.port, "off", "", "", "", "10");
        is_int(mail_send(m, TO, subject_ko, body_ko, NULL, &err), MAIL_PERMANENT,
               "550 after DATA: permanent");
        ok(strstr(err.msg, "550") && strstr(err.msg, "rejects every message"),
           "with the reply text: %s", err.msg);
        is_int(sink_messages(&s, msgs, 0), 0, "nothing stored");
        mail_destroy(&m);
        sink_stop(&s);
    }
    if (ok(sink_start(&s, "--permfail", "--fail-at", "rcpt", NULL) == 0,
           "a sink refusing the recipient")) {
        m = make_mail("127.0.0.1", s.port, "off", "", "", "", "10");
        is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_PERMANENT, "550 to RCPT: permanent");
        ok(strstr(err.msg, "550") && strstr(err.msg, "(RCPT TO)"),
           "the RCPT reply, not DATA's complaint about no recipients: %s", err.msg);
        mail_destroy(&m);
        sink_stop(&s);
    }

    port = dead_port(&fd);
    m = make_mail("127.0.0.1", port, "off", "", "", "", "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_TEMPORARY, "nothing listening: temporary");
    ok(strstr(err.msg, "refused") != NULL, "says the connection was refused: %s", err.msg);
    mail_destroy(&m);
    close(fd);

    if (ok(sink_start(&s, "--delay", "3", NULL) == 0, "a sink answering after 3 s")) {
        m = make_mail("127.0.0.1", s.port, "off", "", "", "", "1");
        is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_TEMPORARY,
               "smtp_timeout 1 s: a timeout is temporary");
        ok(strstr(err.msg, "no reply to MAIL") && strstr(err.msg, "smtp_timeout (1 s)"),
           "says which reply did not come: %s", err.msg);
        mail_destroy(&m);
        sink_stop(&s);
    }
    if (ok(sink_start(&s, "--delay", "3", "--delay-at", "data", NULL) == 0,
           "a sink slow to answer the end of DATA")) {
        m = make_mail("127.0.0.1", s.port, "off", "", "", "", "1");
        is_int(mail_send(m, TO, "x", "y", "slow-1", &err), MAIL_TEMPORARY,
               "no reply after the data: temporary");
        ok(strstr(err.msg, "no reply to DATA") && strstr(err.msg, "may have the message"),
           "says the relay may have it (a retry may duplicate it): %s", err.msg);
        mail_destroy(&m);
        sink_stop(&s);
    }
}

static void
test_auth(void)
{
    struct sink s;
    errbuf err = {{0}};
    char *msgs[2] = {0};
    mail *m;

    if (!ok(sink_start(&s, "--auth", "restock:" PASSWORD, NULL) == 0, "a sink requiring AUTH"))
        return;
    m = make_mail("127.0.0.1", s.port, "off", "restock", PASSWORD, "", "10");
    is_int(mail_send(m, TO, subject_ko, body_ko, NULL, &err), MAIL_SENT,
           "AUTH with the right password: sent");
    if (sink_messages(&s, msgs, 1) == 1)
        ok(received_with(msgs[0], "ESMTPA"), "the relay saw an authenticated session");
    free_messages(msgs, 1);
    mail_destroy(&m);

    m = make_mail("127.0.0.1", s.port, "off", "restock", "wrong-Pw", "", "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_TEMPORARY,
           "a wrong password: temporary (restock's setting, not the message, is wrong)");
    ok(strstr(err.msg, "535") && strstr(err.msg, "restock") && strstr(err.msg, "(AUTH)"),
       "names the user and the 535 reply: %s", err.msg);
    ok(strstr(err.msg, "wrong-Pw") == NULL, "but not the password");
    mail_destroy(&m);

    m = make_mail("127.0.0.1", s.port, "off", "", "", "", "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_PERMANENT,
           "no smtp_user for a relay that wants AUTH: 530 to MAIL FROM is permanent");
    ok(strstr(err.msg, "530"), "with the reply: %s", err.msg);
    mail_destroy(&m);
    is_int(sink_messages(&s, msgs, 0), 1, "only the authenticated message was stored");
    sink_stop(&s);
}

static void
test_tls(void)
{
    char cmd[600], cert[128], key[128];
    struct sink s;
    errbuf err = {{0}};
    char *msgs[2] = {0};
    conf *cf;
    mail *m;

    snprintf(cert, sizeof(cert), "%s/cert.pem", tmp);
    snprintf(key, sizeof(key), "%s/key.pem", tmp);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1",
             key, cert);
    if (!ok(system(cmd) == 0, "a self-signed certificate for localhost (openssl req)"))
        return;

    cf = make_conf("localhost", 25, "required", "", "", "/nonexistent/ca.pem", "10");
    m = cf ? mail_new(cf, &err) : NULL;
    ok(m == NULL && strstr(err.msg, "/nonexistent/ca.pem"),
       "an unreadable smtp_ca_file fails mail_new, naming it: %s", err.msg);
    conf_destroy(&cf);

    if (!ok(sink_start(&s, "--tls", cert, key, NULL) == 0, "a sink offering STARTTLS"))
        return;
    m = make_mail("localhost", s.port, "required", "", "", cert, "10");
    is_int(mail_send(m, TO, subject_ko, body_ko, NULL, &err), MAIL_SENT,
           "required STARTTLS, certificate verified with smtp_ca_file: sent");
    if (sink_messages(&s, msgs, 1) == 1)
        ok(received_with(msgs[0], "ESMTPS"), "the relay saw TLS");
    free_messages(msgs, 1);
    mail_destroy(&m);

    m = make_mail("localhost", s.port, "required", "", "", "", "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_TEMPORARY,
           "required STARTTLS, certificate not trusted by the system's CAs: temporary");
    ok(strstr(err.msg, "does not verify") && strstr(err.msg, "self-signed"),
       "says the certificate did not verify: %s", err.msg);
    mail_destroy(&m);

    m = make_mail("127.0.0.1", s.port, "required", "", "", cert, "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_TEMPORARY,
           "required STARTTLS, trusted certificate for another name: temporary");
    ok(strstr(err.msg, "localhost") && strstr(err.msg, "not for smtp_host"),
       "says whose certificate it is: %s", err.msg);
    mail_destroy(&m);

    m = make_mail("localhost", s.port, "opportunistic", "", "", "", "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_SENT,
           "opportunistic STARTTLS encrypts without verifying: sent");
    if (sink_messages(&s, msgs, 2) == 2)
        ok(received_with(msgs[0], "ESMTPS") && received_with(msgs[1], "ESMTPS"), "over TLS");
    free_messages(msgs, 2);
    mail_destroy(&m);

    m = make_mail("localhost", s.port, "off", "", "", "", "10");
    is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_SENT, "STARTTLS off: sent");
    is_int(sink_messages(&s, msgs, 0), 3, "three messages stored, none of the refused ones");
    mail_destroy(&m);
    sink_stop(&s);

    if (ok(sink_start(&s, "--tls", cert, key, "--auth", "restock:" PASSWORD, NULL) == 0,
           "a sink with STARTTLS and AUTH")) {
        m = make_mail("localhost", s.port, "required", "restock", PASSWORD, cert, "10");
        is_int(mail_send(m, TO, "x", "y", NULL, &err), MAIL_SENT, "TLS then AUTH: sent");
        if (sink_messages(&s, msgs, 1) == 1)
            ok(received_with(msgs[0], "ESMTPSA"), "the relay saw TLS and AUTH");
        free_messages(msgs, 1);
        mail_destroy(&m);
        sink_stop(&s);
    }
}

/* The password (and what AUTH PLAIN/LOGIN make of it) is in no log line. */
static void
test_log(const char *log_path)
{
    char *text = tap_slurp(log_path);
    char plain[64], b64[128];
    const char blob[] = "\0restock\0" PASSWORD;

    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)blob, sizeof(blob) - 1,
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(plain, sizeof(plain), (const unsigned char *)PASSWORD, strlen(PASSWORD),
                      sodium_base64_VARIANT_ORIGINAL);
    ok(text && strstr(text, "event=smtp_reply") && strstr(text, "command=AUTH"),
       "debug logging recorded the sessions, AUTH included");
    ok(text && !strstr(text, PASSWORD) && !strstr(text, "wrong-Pw") && !strstr(text, b64) &&
           !strstr(text, plain),
       "no log line holds the password, plain or base64");
    free(text);
}

int
main(void)
{
    char log_path[128], cmd[160];
    int fd, failed;

    srcdir = getenv("RESTOCK_SRCDIR");
    if (srcdir == NULL)
        srcdir = "..";
    snprintf(tmp, sizeof(tmp), "/tmp/mail_test.XXXXXX");
    if (mkdtemp(tmp) == NULL || sodium_init() < 0) {
        printf("Bail out! no temporary folder or no libsodium\n");
        return 1;
    }
    /* A relay that hangs up mid-write must not kill the process: writes fail instead. */
    signal(SIGPIPE, SIG_IGN);
    /* Everything mail logs, at debug level, goes to a file the last test reads. */
    snprintf(log_path, sizeof(log_path), "%s/test.log", tmp);
    fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) {
        printf("Bail out! cannot open %s\n", log_path);
        return 1;
    }
    close(fd);
    log_init("mail_test", LOG_LEVEL_DEBUG);
    unsetenv("RESTOCK_CONFIG");

    test_wire();
    test_compose();
    test_replies();
    test_auth();
    test_tls();
    test_log(log_path);

    failed = done_testing();
    if (failed)
        printf("# kept %s (sink logs, test.log)\n", tmp);
    else {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            printf("# could not remove %s\n", tmp);
    }
    return failed;
}
