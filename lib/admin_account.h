/* admin_account: the accounts of the admin API (admin_account, sql/019_admin.sql),
 * the one module with SQL on that table. Made and changed by `restockctl admin
 * …` (and the admin API later); every change is written to the audit trail in
 * its transaction, never with a password or a hash. Passwords are hashed with
 * libsodium's crypto_pwhash_str (Argon2id, OPSLIMIT/MEMLIMIT_INTERACTIVE).
 * A login answers the same for an unknown name, a wrong password, a disabled or
 * a locked account (the caller tells the client only "wrong name or password"
 * and logs which it was); admin_lockout_failures wrong passwords in a row lock
 * the account for admin_lockout_seconds. */
#ifndef RESTOCK_ADMIN_ACCOUNT_H
#define RESTOCK_ADMIN_ACCOUNT_H

#include <stddef.h>

#include "admin_session.h"
#include "audit.h"
#include "conf.h"
#include "db.h"
#include "errbuf.h"

#define ADMIN_ACCOUNT_NAME_MAX 64   /* admin_account.name */
#define ADMIN_PASSWORD_MIN     12   /* characters */
#define ADMIN_PASSWORD_MAX     1024 /* bytes: what a terminal line or a login body may bring */

enum admin_role { ADMIN_ROLE_VIEWER = 1, ADMIN_ROLE_OPERATOR = 2 };

/* "viewer", "operator"; NULL for another value. */
const char *admin_role_name(int role);
/* The role of its name, or RS_ERR (err saying the choices). */
int admin_role_parse(const char *name, errbuf *err);

/* An account's name: 1 to ADMIN_ACCOUNT_NAME_MAX of [A-Za-z0-9._@-], starting
 * with a letter or a digit. RS_ERR saying why. */
int admin_account_name_check(const char *name, errbuf *err);

/* A new password: ADMIN_PASSWORD_MIN characters of UTF-8 at least, at most
 * ADMIN_PASSWORD_MAX bytes, no control character. RS_ERR saying why, never
 * quoting it. */
int admin_password_check(const char *password, errbuf *err);

/* What a login found (the client hears the same 401 for all but OK). */
enum admin_login_result {
    ADMIN_LOGIN_OK = 0,
    ADMIN_LOGIN_UNKNOWN,  /* no account of that name */
    ADMIN_LOGIN_WRONG,    /* wrong password (counted; may lock the account) */
    ADMIN_LOGIN_LOCKED,   /* locked (even the right password is refused) */
    ADMIN_LOGIN_DISABLED, /* disabled */
};

/* "ok", "unknown", "wrong_password", "locked", "disabled": the log's result=. */
const char *admin_login_result_name(enum admin_login_result r);

/* An account as listed or looked up: times in RFC 3339 UTC ("…Z"), NULL when
 * none (never logged in; not locked). locked_until only while in the future. */
struct admin_account_line {
    long long id;
    const char *name, *role, *created, *last_login, *locked_until;
    long long failures;
    int disabled;
};

typedef void (*admin_account_line_fn)(void *arg, const struct admin_account_line *line);

typedef struct admin_account admin_account;

/* Reads admin_lockout_failures and admin_lockout_seconds from cf; its
 * statements (and its admin_session's, which it ends sessions with) live on
 * conn. NULL when out of memory or libsodium does not start. */
admin_account *admin_account_new(const conf *cf, db *conn, errbuf *err);
void admin_account_destroy(admin_account **self_p);

/* The login check of name and password: RS_OK with *result and, when OK,
 * *account_id (its last login noted, its failures reset); RS_ERR only when the
 * database failed. Always one password hash check, also for an unknown name,
 * so that the time taken does not tell which. */
int admin_account_login(admin_account *self, const char *name, const char *password,
                        enum admin_login_result *result, long long *account_id, errbuf *err);

/* The account with that id (a session's): 1 and fn called once, 0 when none. */
int admin_account_get(admin_account *self, long long id, admin_account_line_fn fn, void *arg,
                      errbuf *err);

/* Every account, by name. RS_OK or RS_ERR. */
int admin_account_each(admin_account *self, admin_account_line_fn fn, void *arg, errbuf *err);

/* The changes: each in one transaction (joining the caller's) with its audit
 * row by who (action admin.add, admin.passwd, …; target the name). Each checks
 * its input before anything else. admin_account_add: its id, or RS_ERR (name
 * taken, bad name, role or password). The others: 1 when changed, 0 when there
 * was nothing to change (no audit row then), RS_ERR (no such account, bad
 * input, database). passwd, role and disable end the account's sessions. */
long long admin_account_add(admin_account *self, const struct audit_who *who, const char *name,
                            int role, const char *password, errbuf *err);
int admin_account_passwd(admin_account *self, const struct audit_who *who, const char *name,
                         const char *password, errbuf *err);
int admin_account_role(admin_account *self, const struct audit_who *who, const char *name, int role,
                       errbuf *err);
int admin_account_disable(admin_account *self, const struct audit_who *who, const char *name,
                          errbuf *err);
int admin_account_enable(admin_account *self, const struct audit_who *who, const char *name,
                         errbuf *err);
int admin_account_unlock(admin_account *self, const struct audit_who *who, const char *name,
                         errbuf *err);

#endif
