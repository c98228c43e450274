/* mail: one email composed and sent through the SMTP relay with libesmtp (see mail.h). */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* <openssl/ssl.h> first: libesmtp.h declares smtp_starttls_set_ctx only after it,
 * and auth-client.h before libesmtp.h for smtp_auth_set_context. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <auth-client.h>
#include <libesmtp.h>
#include <sodium.h>

#include "ident.h"
#include "log.h"
#include "mail.h"
#include "timetext.h"
#include "utf8.h"

#define MAIL_LINE   76 /* RFC 2045 (base64) and RFC 2047 (encoded-word lines) */
#define MAIL_EWORD  75 /* RFC 2047: longest encoded-word */
#define MAIL_EW_PRE "=?UTF-8?B?"
#define MAIL_EW_SUF "?="

enum mail_auth { MAIL_AUTH_NONE, MAIL_AUTH_PENDING, MAIL_AUTH_OK, MAIL_AUTH_FAILED };

/* What one SMTP session showed, gathered by libesmtp's callbacks: the replies that
 * libesmtp keeps to itself (greeting, EHLO, STARTTLS, AUTH) are read off the
 * protocol monitor, the TLS verdicts off the event callback. */
struct mail_session {
    char command[16]; /* last command verb sent (never its arguments) */
    char line[512];   /* reply line being read */
    size_t line_len;
    int reply_code; /* last complete reply */
    char reply[256];
    char reply_command[16];
    int awaiting; /* a command was sent and its reply has not come */
    enum mail_auth auth;
    char auth_reply[256 + 8]; /* the reply that rejected AUTH: its code and reply, whole */
    char tls_problem[256];    /* why TLS was not good enough */
    int tls_used;
};

struct mail {
    char *server; /* host:port for libesmtp */
    char *from;
    const char *domain; /* in from */
    char *user;         /* NULL: no AUTH */
    char *password;
    enum starttls_option starttls;
    long timeout_ms;
    SSL_CTX *tls; /* NULL when STARTTLS is off */
    struct mail_session s;
};

static pthread_once_t mail_once = PTHREAD_ONCE_INIT;
static int mail_sodium_ok;

static void
mail_init_once(void)
{
    /* auth_client_init is global state of libesmtp's SASL plugins. */
    auth_client_init();
    mail_sodium_ok = sodium_init() >= 0;
}

const char *
mail_result_name(enum mail_result result)
{
    switch (result) {
    case MAIL_SENT:
        return "sent";
    case MAIL_TEMPORARY:
        return "temporary";
    case MAIL_PERMANENT:
        return "permanent";
    }
    return "unknown";
}

/* ---- checks of what goes into headers ------------------------------------ */

/* One address local@domain of printable ASCII without the characters that end or
 * change an address in a header (RFC 5322 specials), so that nothing a caller
 * passes can add a header or a recipient. */
static int
mail_address_ok(const char *a)
{
    const char *at = strchr(a, '@');
    size_t len = strlen(a);

    if (len == 0 || len > 254 || at == NULL || at == a || at[1] == '\0' || strchr(at + 1, '@'))
        return 0;
    for (const char *p = a; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || strchr("<>()[]\\,;:\"", *p) != NULL)
            return 0;
    return 1;
}

/* A dot-atom (RFC 5322 atext and dots), optionally with one '@': a Message-ID token. */
static int
mail_token_ok(const char *t)
{
    size_t len = strlen(t);
    int ats = 0;

    if (len == 0 || len > 200)
        return 0;
    for (const char *p = t; *p; p++) {
        if (*p == '@')
            ats++;
        else if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-/=?^_`{|}~.", *p) == NULL)
            return 0;
    }
    return ats <= 1 && t[0] != '@' && t[len - 1] != '@';
}

/* ---- composition ---------------------------------------------------------- */

static int
mail_base64(FILE *out, const unsigned char *bin, size_t len)
{
    char b64[sodium_base64_ENCODED_LEN(57, sodium_base64_VARIANT_ORIGINAL)];

    /* Callers pass at most 57 bytes: 76 characters, one line. */
    if (len > 57 ||
        sodium_bin2base64(b64, sizeof(b64), bin, len, sodium_base64_VARIANT_ORIGINAL) == NULL)
        return RS_ERR;
    fputs(b64, out);
    return RS_OK;
}

/* The Date header: when the message was composed, local time with its offset. */
static void
mail_date(FILE *out)
{
    char date[TIMETEXT_SIZE];

    timetext_rfc5322(time(NULL), date, sizeof(date));
    fprintf(out, "Date: %s\r\n", date);
}

/* Subject as RFC 2047 encoded-words, folded: every line at most 76 characters, every
 * encoded-word at most 75, each holding whole UTF-8 characters (a decoder may
 * decode each word on its own). Whitespace between encoded-words is not part of
 * the text (RFC 2047 section 6.2), so the folds add nothing to the subject. */
static int
mail_subject(FILE *out, const char *subject)
{
    const unsigned char *p = (const unsigned char *)subject;
    size_t col = strlen("Subject:"), left = strlen(subject);
    int plain = strlen(subject) <= 66, first = 1;

    for (const unsigned char *c = p; *c && plain; c++)
        if (*c < ' ' || *c >= 0x7f)
            plain = 0;
    /* An encoded-word-like text would be decoded by readers: encode it too. */
    if (plain && strstr(subject, "=?") == NULL) {
        fprintf(out, "Subject: %s\r\n", subject);
        return RS_OK;
    }
    fputs("Subject:", out);
    while (*p) {
        /* Room on this line after the space, less the encoded-word's frame; base64
         * comes in groups of 4 characters for 3 bytes. */
        size_t room = MAIL_LINE - col - 1;
        size_t word = room < MAIL_EWORD ? room : MAIL_EWORD;
        size_t max = (word - strlen(MAIL_EW_PRE MAIL_EW_SUF)) / 4 * 3;
        size_t n = 0, c;

        while (p[n] && (c = utf8_char_len((const char *)p + n, left - n)) > 0 && n + c <= max)
            n += c;
        if (n == 0)
            return RS_ERR; /* not UTF-8: mail_compose checked, so a bug */
        fputs(first ? " " : "\r\n ", out);
        fputs(MAIL_EW_PRE, out);
        if (mail_base64(out, p, n) != RS_OK)
            return RS_ERR;
        fputs(MAIL_EW_SUF, out);
        p += n;
        left -= n;
        col = 0; /* the next word starts a folded line, after its space */
        first = 0;
    }
    fputs("\r\n", out);
    return RS_OK;
}

/* The body in canonical form (CRLF line ends, RFC 2045 section 6.8), base64 in lines
 * of 76 characters. */
static int
mail_body(FILE *out, const char *body)
{
    unsigned char chunk[57];
    size_t n = 0;

    for (const char *p = body;; p++) {
        char pair[2];
        size_t k = 0;

        if (*p == '\r' && p[1] == '\n')
            p++;
        if (*p == '\r' || *p == '\n')
            pair[k++] = '\r', pair[k++] = '\n';
        else if (*p != '\0')
            pair[k++] = *p;
        for (size_t i = 0; i < k; i++) {
            chunk[n++] = (unsigned char)pair[i];
            if (n == sizeof(chunk)) {
                if (mail_base64(out, chunk, n) != RS_OK)
                    return RS_ERR;
                fputs("\r\n", out);
                n = 0;
            }
        }
        if (*p == '\0')
            break;
    }
    if (n > 0) {
        if (mail_base64(out, chunk, n) != RS_OK)
            return RS_ERR;
        fputs("\r\n", out);
    }
    return RS_OK;
}

int
mail_compose(mail *self, const char *to, const char *subject, const char *body,
             const char *message_id, char **out, errbuf *err)
{
    char uuid[IDENT_TEXT];
    char *text = NULL;
    size_t size = 0;
    FILE *f = NULL;

    *out = NULL;
    if (to == NULL || !mail_address_ok(to))
        return errbuf_set(err, "mail to \"%s\": not one address local@domain", to ? to : "(null)");
    if (subject == NULL || !utf8_valid(subject, strlen(subject)))
        return errbuf_set(err, "mail to %s: subject is not UTF-8 text", to);
    for (const char *p = subject; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            return errbuf_set(err, "mail to %s: subject has a control character", to);
    if (body == NULL || !utf8_valid(body, strlen(body)))
        return errbuf_set(err, "mail to %s: body is not UTF-8 text", to);
    if (message_id == NULL) {
        unsigned char id[IDENT_BYTES];
        ident_new(id);
        ident_format(id, sizeof(id), uuid);
        message_id = uuid;
    } else if (!mail_token_ok(message_id)) {
        return errbuf_set(err, "mail to %s: Message-ID token \"%s\" is not a dot-atom", to,
                          message_id);
    }

    f = open_memstream(&text, &size);
    if (f == NULL)
        return errbuf_set(err, "mail to %s: out of memory", to);
    mail_date(f);
    fprintf(f, "From: %s\r\n", self->from);
    fprintf(f, "To: %s\r\n", to);
    if (mail_subject(f, subject) != RS_OK)
        goto fail;
    if (strchr(message_id, '@') != NULL)
        fprintf(f, "Message-ID: <%s>\r\n", message_id);
    else
        fprintf(f, "Message-ID: <%s@%s>\r\n", message_id, self->domain);
    fputs("Auto-Submitted: auto-generated\r\n"
          "MIME-Version: 1.0\r\n"
          "Content-Type: text/plain; charset=UTF-8\r\n"
          "Content-Transfer-Encoding: base64\r\n"
          "\r\n",
          f);
    if (mail_body(f, body) != RS_OK)
        goto fail;
    if (ferror(f) || fclose(f) != 0) {
        f = NULL;
        goto fail;
    }
    *out = text;
    return RS_OK;

fail:
    if (f != NULL)
        fclose(f);
    free(text);
    return errbuf_set(err, "mail to %s: cannot compose the message (out of memory)", to);
}

/* ---- the object ----------------------------------------------------------- */

mail *
mail_new(const conf *cf, errbuf *err)
{
    const char *host = conf_str(cf, "smtp_host");
    const char *from = conf_str(cf, "mail_from");
    const char *tls = conf_str(cf, "smtp_starttls");
    const char *ca_file = conf_str(cf, "smtp_ca_file");
    mail *self;

    pthread_once(&mail_once, mail_init_once);
    self = calloc(1, sizeof(*self));
    if (self == NULL)
        goto oom;
    if (!mail_sodium_ok) {
        errbuf_set(err, "mail: libsodium failed to initialise");
        goto fail;
    }
    if (!mail_address_ok(from)) {
        errbuf_set(err, "mail_from = \"%s\": not one address local@domain", from);
        goto fail;
    }
    if (*host == '\0' || strpbrk(host, " \t\r\n:") != NULL) {
        errbuf_set(err, "smtp_host = \"%s\": not a host name or IPv4 address", host);
        goto fail;
    }
    /* libesmtp takes "host:port"; an IPv6 literal would need brackets it does not
     * parse, so a name (or IPv4) it is. */
    if (asprintf(&self->server, "%s:%ld", host, conf_int(cf, "smtp_port")) < 0) {
        self->server = NULL;
        goto oom;
    }
    self->from = strdup(from);
    if (self->from == NULL)
        goto oom;
    self->domain = strrchr(self->from, '@') + 1;
    if (*conf_str(cf, "smtp_user") != '\0') {
        self->user = strdup(conf_str(cf, "smtp_user"));
        self->password = strdup(conf_str(cf, "smtp_password"));
        if (self->user == NULL || self->password == NULL)
            goto oom;
    }
    self->timeout_ms = conf_int(cf, "smtp_timeout") * 1000L;
    self->starttls = strcmp(tls, "required") == 0        ? Starttls_REQUIRED
                     : strcmp(tls, "opportunistic") == 0 ? Starttls_ENABLED
                                                         : Starttls_DISABLED;
    if (self->starttls != Starttls_DISABLED) {
        /* Our own SSL_CTX rather than libesmtp's: libesmtp would read its CAs from
         * $HOME/.authenticate, once per process; the relay's CA belongs in the
         * configuration. libesmtp still checks the verification result and the
         * host name against the certificate after the handshake (event callback). */
        self->tls = SSL_CTX_new(TLS_client_method());
        if (self->tls == NULL)
            goto oom;
        /* TLS 1.2 exactly. Not 1.3: its server sends session tickets after the
         * handshake, and libesmtp 1.1's protocol loop, finding the socket readable,
         * reads before it flushes the EHLO it has queued: when the tickets arrive
         * first (a local relay, a loaded machine), client and relay wait for each
         * other until smtp_timeout. TLS 1.2's tickets come inside the handshake. */
        if (SSL_CTX_set_min_proto_version(self->tls, TLS1_2_VERSION) != 1 ||
            SSL_CTX_set_max_proto_version(self->tls, TLS1_2_VERSION) != 1) {
            errbuf_set(err, "mail: cannot set the TLS version to 1.2");
            goto fail;
        }
        if (*ca_file != '\0') {
            if (SSL_CTX_load_verify_locations(self->tls, ca_file, NULL) != 1) {
                char why[256];
                ERR_error_string_n(ERR_get_error(), why, sizeof(why));
                ERR_clear_error();
                errbuf_set(err, "smtp_ca_file = \"%s\": cannot load CA certificates: %s", ca_file,
                           why);
                goto fail;
            }
        } else if (SSL_CTX_set_default_verify_paths(self->tls) != 1) {
            ERR_clear_error();
            errbuf_set(err, "mail: cannot load the system's CA certificates");
            goto fail;
        }
    }
    return self;

oom:
    errbuf_set(err, "mail: out of memory");
fail:
    mail_destroy(&self);
    return NULL;
}

void
mail_destroy(mail **self_p)
{
    mail *self = *self_p;

    if (self == NULL)
        return;
    if (self->password != NULL) {
        sodium_memzero(self->password, strlen(self->password));
        free(self->password);
    }
    free(self->user);
    free(self->from);
    free(self->server);
    SSL_CTX_free(self->tls);
    free(self);
    *self_p = NULL;
}

/* ---- libesmtp callbacks --------------------------------------------------- */

/* Keeps text from the wire valid UTF-8, printable and on one line (utf8_sanitize),
 * without the line end and blanks that close it, cut at a whole character. */
static void
mail_copy_text(char *dst, size_t size, const char *src)
{
    size_t len = strlen(src);

    while (len > 0 && (src[len - 1] == '\r' || src[len - 1] == '\n' || src[len - 1] == ' ' ||
                       src[len - 1] == '\t'))
        len--;
    utf8_sanitize(src, len, dst, size);
}

/* Commands sent: only the verb is kept. AUTH's initial response and the lines that
 * answer its challenges carry the credentials; they are never looked at further,
 * and a line that is not a known verb (a base64 answer) is skipped. */
static void
mail_note_commands(struct mail_session *s, const char *buf, int len)
{
    static const char *const verbs[] = {"EHLO", "HELO", "STARTTLS", "AUTH", "MAIL",
                                        "RCPT", "DATA", "RSET",     "QUIT"};
    const char *p = buf, *end = buf + len;

    /* Between AUTH and its final reply the client writes only credentials. */
    if (s->auth == MAIL_AUTH_PENDING)
        return;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = 0;

        while (p + n < end && isalpha((unsigned char)p[n]) && n < sizeof(s->command) - 1)
            n++;
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
            if (strlen(verbs[i]) == n && strncasecmp(p, verbs[i], n) == 0) {
                memcpy(s->command, verbs[i], n + 1);
                s->awaiting = 1;
                if (strcmp(verbs[i], "AUTH") == 0)
                    s->auth = MAIL_AUTH_PENDING;
            }
        p = eol ? eol + 1 : end;
    }
}

static void
mail_note_reply(struct mail_session *s, const char *line)
{
    int code;

    if (strlen(line) < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]) || (line[3] != ' ' && line[3] != '\0'))
        return; /* a continuation line ("250-...") or noise */
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    s->reply_code = code;
    /* After 354 the message goes out and the reply to its end is awaited. */
    s->awaiting = code == 354;
    mail_copy_text(s->reply, sizeof(s->reply), line[3] ? line + 4 : "");
    memcpy(s->reply_command, s->command, sizeof(s->command));
    log_debug("event=smtp_reply command=%s code=%d text=\"%s\"",
              s->command[0] ? s->command : "greeting", code, s->reply);
    if (s->auth == MAIL_AUTH_PENDING) {
        if (code == 235) {
            s->auth = MAIL_AUTH_OK;
        } else if (code != 334) {
            /* libesmtp then tries the next mechanism, or goes on without AUTH. */
            s->auth = MAIL_AUTH_FAILED;
            snprintf(s->auth_reply, sizeof(s->auth_reply), "%d %s", code, s->reply);
        }
    }
}

static void
mail_monitor(const char *buf, int len, int writing, void *arg)
{
    struct mail_session *s = &((mail *)arg)->s;

    if (writing == SMTP_CB_WRITING) {
        mail_note_commands(s, buf, len);
        return;
    }
    if (writing != SMTP_CB_READING)
        return;
    /* Reads come in chunks that need not end at line ends. */
    for (int i = 0; i < len; i++) {
        if (buf[i] == '\n') {
            s->line[s->line_len] = '\0';
            mail_note_reply(s, s->line);
            s->line_len = 0;
        } else if (buf[i] != '\r' && s->line_len < sizeof(s->line) - 1) {
            s->line[s->line_len++] = buf[i];
        }
    }
}

/* TLS verdicts. With smtp_starttls = required the relay's certificate must verify
 * against the CAs and name the relay; opportunistic TLS (RFC 7435) encrypts
 * without authenticating, since its alternative is plain text. */
static void
mail_event(smtp_session_t session, int event, void *arg, ...)
{
    mail *self = arg;
    struct mail_session *s = &self->s;
    int verify = self->starttls == Starttls_REQUIRED;
    va_list ap;
    int *ok;

    va_start(ap, arg);
    switch (event) {
    case SMTP_EV_EXTNA_STARTTLS:
        snprintf(s->tls_problem, sizeof(s->tls_problem),
                 "the relay does not offer STARTTLS (smtp_starttls = required)");
        break;
    case SMTP_EV_INVALID_PEER_CERTIFICATE: {
        long result = va_arg(ap, long);
        ok = va_arg(ap, int *);
        *ok = !verify;
        if (verify)
            snprintf(s->tls_problem, sizeof(s->tls_problem),
                     "the relay's certificate does not verify: %s (smtp_ca_file)",
                     X509_verify_cert_error_string(result));
        break;
    }
    case SMTP_EV_NO_PEER_CERTIFICATE:
        ok = va_arg(ap, int *);
        *ok = !verify;
        if (verify)
            snprintf(s->tls_problem, sizeof(s->tls_problem), "the relay sent no certificate");
        break;
    case SMTP_EV_WRONG_PEER_CERTIFICATE: {
        const char *name;
        char shown[160]; /* the relay's text, whole within tls_problem */
        ok = va_arg(ap, int *);
        name = va_arg(ap, const char *);
        *ok = !verify;
        utf8_sanitize(name ? name : "", name ? strlen(name) : 0, shown, sizeof(shown));
        if (verify)
            snprintf(s->tls_problem, sizeof(s->tls_problem),
                     "the relay's certificate is for \"%s\", not for smtp_host", shown);
        break;
    }
    case SMTP_EV_WEAK_CIPHER:
        (void)va_arg(ap, int);
        ok = va_arg(ap, int *);
        *ok = 0;
        snprintf(s->tls_problem, sizeof(s->tls_problem), "the relay chose a weak cipher");
        break;
    case SMTP_EV_UNUSABLE_CLIENT_CERTIFICATE:
    case SMTP_EV_NO_CLIENT_CERTIFICATE:
        snprintf(s->tls_problem, sizeof(s->tls_problem),
                 "libesmtp found an unusable client certificate under $HOME");
        break;
    case SMTP_EV_STARTTLS_OK: {
        const char *cipher;
        (void)va_arg(ap, SSL *);
        cipher = va_arg(ap, const char *);
        s->tls_used = 1;
        log_debug("event=smtp_starttls cipher=%s", cipher ? cipher : "?");
        break;
    }
    default:
        break;
    }
    va_end(ap);
}

/* Answers libesmtp's SASL plugins (PLAIN, LOGIN, CRAM-MD5) with the configured
 * user and password. */
static int
mail_interact(auth_client_request_t request, char **result, int fields, void *arg)
{
    mail *self = arg;
    static char empty[] = "";

    for (int i = 0; i < fields; i++) {
        if (request[i].flags & AUTH_USER)
            result[i] = self->user;
        else if (request[i].flags & AUTH_PASS)
            result[i] = self->password;
        else if (request[i].flags & AUTH_REALM)
            result[i] = empty;
        else
            return 0;
    }
    return 1;
}

/* ---- sending -------------------------------------------------------------- */

static enum mail_result
mail_status_result(mail *self, const smtp_status_t *st, const char *command, errbuf *err)
{
    char text[256];

    mail_copy_text(text, sizeof(text), st->text ? st->text : "");
    if (st->enh_class > 0)
        errbuf_set(err, "smtp %s: %d %d.%d.%d %s (%s)", self->server, st->code, st->enh_class,
                   st->enh_subject, st->enh_detail, text, command);
    else
        errbuf_set(err, "smtp %s: %d %s (%s)", self->server, st->code, text, command);
    return st->code >= 500 ? MAIL_PERMANENT : MAIL_TEMPORARY;
}

/* Everything but a 5xx reply to this message's own transaction is temporary (see
 * mail.h). The transaction's replies are looked at in protocol order: a rejected
 * RCPT is followed by a DATA that fails only for want of recipients. */
static enum mail_result
mail_classify(mail *self, int session_ok, smtp_message_t msg, smtp_recipient_t rcpt, errbuf *err)
{
    const smtp_status_t *data = smtp_message_transfer_status(msg);
    const smtp_status_t *from = smtp_reverse_path_status(msg);
    const smtp_status_t *to = smtp_recipient_status(rcpt);
    struct mail_session *s = &self->s;

    if (data->code >= 200 && data->code < 300)
        return MAIL_SENT;
    if (s->tls_problem[0] != '\0') {
        errbuf_set(err, "smtp %s: %s", self->server, s->tls_problem);
        return MAIL_TEMPORARY;
    }
    if (s->auth == MAIL_AUTH_FAILED) {
        errbuf_set(err, "smtp %s: authentication as \"%s\" rejected: %s (AUTH)", self->server,
                   self->user ? self->user : "", s->auth_reply);
        return MAIL_TEMPORARY;
    }
    if (from->code >= 400)
        return mail_status_result(self, from, "MAIL FROM", err);
    if (to->code >= 400)
        return mail_status_result(self, to, "RCPT TO", err);
    if (data->code >= 400)
        return mail_status_result(self, data, "DATA", err);
    if (s->reply_code >= 400) {
        errbuf_set(err, "smtp %s: %d %s (%s)", self->server, s->reply_code, s->reply,
                   s->reply_command[0] ? s->reply_command : "greeting");
        return MAIL_TEMPORARY;
    }
    /* libesmtp reports a read timeout as a dropped connection, and may still
     * return success for the session: the transcript tells what was missing. */
    if (s->awaiting) {
        errbuf_set(err,
                   "smtp %s: no reply to %s within smtp_timeout (%ld s), or the connection "
                   "dropped%s",
                   self->server, s->command, self->timeout_ms / 1000,
                   strcmp(s->command, "DATA") == 0 ? "; the relay may have the message" : "");
        return MAIL_TEMPORARY;
    }
    if (!session_ok) {
        char why[128];
        smtp_strerror(smtp_errno(), why, sizeof(why));
        errbuf_set(err, "smtp %s: %s%s%s", self->server, why, s->command[0] ? " after " : "",
                   s->command);
        return MAIL_TEMPORARY;
    }
    errbuf_set(err, "smtp %s: the session ended before the message was accepted%s%s", self->server,
               s->command[0] ? " after " : "", s->command);
    return MAIL_TEMPORARY;
}

enum mail_result
mail_send(mail *self, const char *to, const char *subject, const char *body, const char *message_id,
          errbuf *err)
{
    static const int phases[] = {Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA, Timeout_TRANSFER,
                                 Timeout_DATA2};
    enum mail_result result = MAIL_TEMPORARY;
    smtp_session_t session = NULL;
    auth_context_t auth = NULL;
    smtp_message_t msg;
    smtp_recipient_t rcpt;
    char *text = NULL;
    int ok;

    if (mail_compose(self, to, subject, body, message_id, &text, err) != RS_OK)
        return MAIL_PERMANENT;
    memset(&self->s, 0, sizeof(self->s));

    /* A session per message: nothing of one attempt leaks into the next. */
    session = smtp_create_session();
    if (session == NULL) {
        errbuf_set(err, "smtp %s: cannot create a libesmtp session", self->server);
        goto done;
    }
    ok = smtp_set_server(session, self->server) && smtp_set_eventcb(session, mail_event, self) &&
         smtp_set_monitorcb(session, mail_monitor, self, 0) &&
         smtp_starttls_enable(session, self->starttls);
    for (size_t i = 0; ok && i < sizeof(phases) / sizeof(phases[0]); i++)
        ok = smtp_set_timeout(session, phases[i] | Timeout_OVERRIDE_RFC2822_MINIMUM,
                              self->timeout_ms) != 0;
    if (ok && self->tls != NULL)
        ok = smtp_starttls_set_ctx(session, self->tls);
    if (ok && self->user != NULL) {
        auth = auth_create_context();
        /* PLAIN and LOGIN are the mechanisms relays offer; libesmtp disables
         * plain-text mechanisms unless asked. */
        ok = auth != NULL && auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0) &&
             auth_set_interact_cb(auth, mail_interact, self) &&
             smtp_auth_set_context(session, auth);
    }
    msg = ok ? smtp_add_message(session) : NULL;
    ok = msg != NULL && smtp_set_reverse_path(msg, self->from) && smtp_set_message_str(msg, text);
    rcpt = ok ? smtp_add_recipient(msg, to) : NULL;
    if (rcpt == NULL) {
        char why[128];
        errbuf_set(err, "smtp %s: cannot set up the libesmtp session: %s", self->server,
                   smtp_strerror(smtp_errno(), why, sizeof(why)));
        goto done;
    }

    ok = smtp_start_session(session);
    result = mail_classify(self, ok, msg, rcpt, err);
    log_debug("event=smtp_session to=%s result=%s tls=%s", to, mail_result_name(result),
              self->s.tls_used ? "yes" : "no");

done:
    if (session != NULL)
        smtp_destroy_session(session);
    if (auth != NULL)
        auth_destroy_context(auth);
    free(text);
    return result;
}
