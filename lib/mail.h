/* mail: composes one email (UTF-8 text, RFC 5322/2045/2047 headers) and sends it
 * through the configured SMTP relay with libesmtp, telling the caller whether to
 * forget the message, retry it later or give up on it. */
#ifndef RESTOCK_MAIL_H
#define RESTOCK_MAIL_H

#include "conf.h"
#include "errbuf.h"

/* What the caller does with the message after mail_send:
 * MAIL_SENT       the relay accepted it (250 to the end of DATA): done.
 * MAIL_TEMPORARY  not sent, retrying may succeed: no connection, timeout, a 4xx
 *                 reply, the relay's greeting or EHLO refused, STARTTLS required
 *                 but not offered or the certificate not verified, AUTH rejected.
 *                 The last four are problems of the relay or of restock's settings,
 *                 not of this message; as Postfix does (smtp_sasl_auth_soft_bounce,
 *                 TLS "encrypt"/"verify"), they defer, so that fixing the settings
 *                 delivers the queue, and max_attempts still bounds the retries.
 * MAIL_PERMANENT  the relay rejected this message's transaction (MAIL FROM, RCPT TO
 *                 or DATA) with a 5xx reply: it will never be accepted as it is.
 * Either failure fills err with the relay's reply (code and text) or the
 * connection error, naming the relay: "smtp 127.0.0.1:25: 550 5.1.1 ... (RCPT TO)". */
enum mail_result { MAIL_SENT = 0, MAIL_TEMPORARY = 1, MAIL_PERMANENT = 2 };

typedef struct mail mail;

/* A sender with the configuration's smtp_* keys and mail_from. Checks the settings
 * (an unreadable smtp_ca_file is an error here, not at the first send).
 * One object per thread: mail_send keeps per-session state in the object; objects
 * in different threads are independent. */
mail *mail_new(const conf *cf, errbuf *err);
void mail_destroy(mail **self_p);

/* Composes the message (see mail_compose) and sends it to `to` in one SMTP session.
 * The process must ignore SIGPIPE: libesmtp writes with write(2), and a relay that
 * hangs up mid-session would otherwise kill it. libesmtp's connect(2) has no
 * timeout of its own: an unanswered SYN takes the kernel's (about 2 minutes);
 * smtp_timeout bounds each wait for a reply (greeting, each command, the data).
 * It logs only at debug level (the relay's replies, one line each; the commands'
 * arguments never), the caller logs the result; the password never appears in
 * err or in any log line. A message the relay accepted whose QUIT then failed
 * counts as sent. Invalid arguments (see mail_compose) are MAIL_PERMANENT. */
enum mail_result mail_send(mail *self, const char *to, const char *subject, const char *body,
                           const char *message_id, errbuf *err);

/* The message text mail_send transmits, for tests and for inspection: headers
 * Date, From (mail_from), To, Subject (RFC 2047 B-encoded UTF-8 when not plain
 * ASCII, folded, no encoded-word over 75 characters, no UTF-8 character split),
 * Message-ID, MIME-Version, Content-Type text/plain UTF-8, Content-Transfer-Encoding
 * base64 (lines of 76), Auto-Submitted: auto-generated (RFC 3834: auto-responders
 * stay quiet); CRLF line ends; the body's line ends become CRLF before encoding.
 *
 * message_id: NULL makes a new one, <uuid@domain-of-mail_from>. A caller that may
 * send the same message again (a retry after a crash) passes a stable token, the
 * spool message's id say: "token" becomes <token@domain-of-mail_from>, and a token
 * with an '@' is used as it is, so that recipients see one Message-ID and can
 * drop the duplicate. Tokens are dot-atoms (letters, digits, !#$%&'*+-/=?^_`{|}~.).
 *
 * to: one address (local@domain, no display name); subject: one line of UTF-8;
 * body: UTF-8. Anything else is an error naming the argument. *out is malloc'd. */
int mail_compose(mail *self, const char *to, const char *subject, const char *body,
                 const char *message_id, char **out, errbuf *err);

/* The name of a result, for log lines: "sent", "temporary", "permanent". */
const char *mail_result_name(enum mail_result result);

#endif
