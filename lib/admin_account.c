/* admin_account: admin API accounts, Argon2id passwords, lock-out (see admin_account.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "admin_account.h"
#include "utf8.h"

/* -- names, roles, passwords ------------------------------------------------------ */

const char *
admin_role_name(int role)
{
    return role == ADMIN_ROLE_VIEWER ? "viewer" : role == ADMIN_ROLE_OPERATOR ? "operator" : NULL;
}

int
admin_role_parse(const char *name, errbuf *err)
{
    if (name != NULL && strcmp(name, "viewer") == 0)
        return ADMIN_ROLE_VIEWER;
    if (name != NULL && strcmp(name, "operator") == 0)
        return ADMIN_ROLE_OPERATOR;
    return errbuf_set(err, "a role is viewer or operator");
}

int
admin_account_name_check(const char *name, errbuf *err)
{
    size_t n = strlen(name);

    if (n == 0 || n > ADMIN_ACCOUNT_NAME_MAX)
        return errbuf_set(err, "an account's name is 1 to %d characters", ADMIN_ACCOUNT_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-' && c != '@')))
            return errbuf_set(err, "an account's name is made of letters, digits, '.', '_', "
                                   "'-' and '@', and starts with a letter or a digit");
    }
    return RS_OK;
}

int
admin_password_check(const char *password, errbuf *err)
{
    size_t n = strlen(password);
    long chars;

    if (n > ADMIN_PASSWORD_MAX)
        return errbuf_set(err, "the password is longer than %d bytes", ADMIN_PASSWORD_MAX);
    chars = utf8_chars(password, n);
    if (chars < 0)
        return errbuf_set(err, "the password is not valid UTF-8");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)password[i] < 0x20 || password[i] == 0x7f)
            return errbuf_set(err, "the password holds a control character");
    if (chars < ADMIN_PASSWORD_MIN)
        return errbuf_set(err, "the password is shorter than %d characters", ADMIN_PASSWORD_MIN);
    return RS_OK;
}

const char *
admin_login_result_name(enum admin_login_result r)
{
    switch (r) {
    case ADMIN_LOGIN_OK:
        return "ok";
    case ADMIN_LOGIN_UNKNOWN:
        return "unknown";
    case ADMIN_LOGIN_WRONG:
        return "wrong_password";
    case ADMIN_LOGIN_LOCKED:
        return "locked";
    case ADMIN_LOGIN_DISABLED:
        return "disabled";
    }
    return "unknown";
}

/* -- the table ------------------------------------------------------------------- */

#define ADMIN_SQL_TIME(expr) "DATE_FORMAT(" expr ", '%Y-%m-%dT%H:%i:%sZ')"
#define ADMIN_SQL_LOCKED     "(locked_until IS NOT NULL AND locked_until > UTC_TIMESTAMP(6))"
#define ADMIN_SQL_LINE                                                                             \
    "SELECT account_id, name, role, " ADMIN_SQL_TIME("created_at") ", " ADMIN_SQL_TIME(            \
        "last_login_at") ", IF(" ADMIN_SQL_LOCKED                                                  \
                         ", " ADMIN_SQL_TIME(                                                      \
                             "locked_until") ", NULL), failures, disabled FROM admin_account"

enum { ST_LOGIN, ST_FAILED, ST_LOGGED_IN, ST_GET, ST_LIST, ST_ADD, ST_ROW, ST_UPDATE, ST_COUNT };

static const struct db_stmt_def admin_account_sql[ST_COUNT] = {
    [ST_LOGIN] = {"SELECT account_id, password_hash, disabled, " ADMIN_SQL_LOCKED
                  " FROM admin_account WHERE name = ?",
                  DB_IDEMPOTENT},
    /* One statement counts a failure and locks at the threshold, on the row's
     * own value under its row lock: two wrong logins at once both count. The
     * lock starts a new count (failures 0), so that a lock that ended is not
     * taken again by one more mistake. MariaDB assigns left to right, each
     * seeing those before it: locked_until comes first, so that both read
     * failures as it was. */
    [ST_FAILED] = {"UPDATE admin_account SET"
                   " locked_until = IF(failures + 1 >= ?, UTC_TIMESTAMP(6) + INTERVAL ? SECOND,"
                   " locked_until),"
                   " failures = IF(failures + 1 >= ?, 0, failures + 1)"
                   " WHERE account_id = ?",
                   0},
    /* Only while still neither disabled nor locked (another login may have
     * locked it since the check). */
    [ST_LOGGED_IN] = {"UPDATE admin_account SET failures = 0, locked_until = NULL,"
                      " last_login_at = UTC_TIMESTAMP(6)"
                      " WHERE account_id = ? AND disabled = 0 AND NOT " ADMIN_SQL_LOCKED,
                      DB_IDEMPOTENT},
    [ST_GET] = {ADMIN_SQL_LINE " WHERE account_id = ?", DB_IDEMPOTENT},
    [ST_LIST] = {ADMIN_SQL_LINE " ORDER BY name", DB_IDEMPOTENT},
    [ST_ADD] = {"INSERT INTO admin_account (name, role, password_hash, created_at)"
                " VALUES (?, ?, ?, UTC_TIMESTAMP(6))",
                0},
    [ST_ROW] = {"SELECT account_id, role, disabled, failures, " ADMIN_SQL_LOCKED
                " FROM admin_account WHERE name = ? FOR UPDATE",
                0},
    [ST_UPDATE] = {"UPDATE admin_account SET role = ?, disabled = ?, failures = ?,"
                   " locked_until = IF(? = 0, NULL, locked_until),"
                   " password_hash = COALESCE(?, password_hash) WHERE account_id = ?",
                   0},
};

struct admin_account {
    db *conn;
    db_stmt *st[ST_COUNT]; /* they belong to conn and go with it */
    admin_session *sessions;
    long lockout_failures, lockout_seconds;
    /* The hash an unknown name's password is checked against, made at the
     * first such login: the same work as a known name's. */
    char decoy[crypto_pwhash_STRBYTES];
};

admin_account *
admin_account_new(const conf *cf, db *conn, errbuf *err)
{
    /* Its admin_session first: that starts libsodium. */
    admin_session *sessions = admin_session_new(cf, conn, err);
    admin_account *self = sessions != NULL ? calloc(1, sizeof(*self)) : NULL;

    if (self == NULL) {
        if (sessions != NULL)
            errbuf_set(err, "out of memory");
        admin_session_destroy(&sessions);
        return NULL;
    }
    self->conn = conn;
    self->sessions = sessions;
    self->lockout_failures = conf_int(cf, "admin_lockout_failures");
    self->lockout_seconds = conf_int(cf, "admin_lockout_seconds");
    if (db_stmt_table(conn, admin_account_sql, ST_COUNT, self->st, err) != RS_OK) {
        admin_account_destroy(&self);
        return NULL;
    }
    return self;
}

void
admin_account_destroy(admin_account **self_p)
{
    admin_account *self = *self_p;

    if (self == NULL)
        return;
    admin_session_destroy(&self->sessions);
    free(self);
    *self_p = NULL;
}

/* The Argon2id hash of password into out. */
static int
admin_password_hash(const char *password, char out[crypto_pwhash_STRBYTES], errbuf *err)
{
    if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return errbuf_set(err, "out of memory hashing the password");
    return RS_OK;
}

int
admin_account_login(admin_account *self, const char *name, const char *password,
                    enum admin_login_result *result, long long *account_id, errbuf *err)
{
    db_stmt *find = self->st[ST_LOGIN];
    char stored[crypto_pwhash_STRBYTES] = "";
    long long rows, id = 0;
    int known = 0, disabled = 0, locked = 0, right;

    *result = ADMIN_LOGIN_UNKNOWN;
    *account_id = 0;
    rows = db_stmt_exec(find, err, "s", name);
    if (rows < 0)
        return RS_ERR;
    if (rows > 0 && db_stmt_next(find)) {
        const char *h = db_stmt_col(find, 1, NULL);
        known = h != NULL && strlen(h) < sizeof(stored);
        if (known)
            snprintf(stored, sizeof(stored), "%s", h);
        id = db_stmt_col_int(find, 0);
        disabled = db_stmt_col_int(find, 2) != 0;
        locked = db_stmt_col_int(find, 3) != 0;
    }
    if (!known && self->decoy[0] == '\0') {
        char random[ADMIN_SESSION_TOKEN_LEN + 1];
        admin_session_token_make(random);
        if (admin_password_hash(random, self->decoy, err) != RS_OK)
            return RS_ERR;
    }
    /* The check runs whatever was found: the time says nothing of which. */
    right = crypto_pwhash_str_verify(known ? stored : self->decoy, password, strlen(password)) == 0;
    sodium_memzero(stored, sizeof(stored));
    if (!known)
        return RS_OK;
    if (disabled) {
        *result = ADMIN_LOGIN_DISABLED;
        return RS_OK;
    }
    if (locked) {
        *result = ADMIN_LOGIN_LOCKED;
        return RS_OK;
    }
    if (!right) {
        *result = ADMIN_LOGIN_WRONG;
        return db_stmt_exec(self->st[ST_FAILED], err, "iiii", (long long)self->lockout_failures,
                            (long long)self->lockout_seconds, (long long)self->lockout_failures,
                            id) < 0
                   ? RS_ERR
                   : RS_OK;
    }
    rows = db_stmt_exec(self->st[ST_LOGGED_IN], err, "i", id);
    if (rows < 0)
        return RS_ERR;
    *result = rows == 1 ? ADMIN_LOGIN_OK : ADMIN_LOGIN_LOCKED;
    *account_id = rows == 1 ? id : 0;
    return RS_OK;
}

/* Calls fn for each row of the executed statement st: how many. */
static long long
admin_account_lines(db_stmt *st, admin_account_line_fn fn, void *arg)
{
    long long n = 0;

    while (db_stmt_next(st)) {
        struct admin_account_line line = {
            .id = db_stmt_col_int(st, 0),
            .name = db_stmt_col(st, 1, NULL),
            .role = db_stmt_col(st, 2, NULL),
            .created = db_stmt_col(st, 3, NULL),
            .last_login = db_stmt_col(st, 4, NULL),
            .locked_until = db_stmt_col(st, 5, NULL),
            .failures = db_stmt_col_int(st, 6),
            .disabled = db_stmt_col_int(st, 7) != 0,
        };
        fn(arg, &line);
        n++;
    }
    return n;
}

int
admin_account_get(admin_account *self, long long id, admin_account_line_fn fn, void *arg,
                  errbuf *err)
{
    if (db_stmt_exec(self->st[ST_GET], err, "i", id) < 0)
        return RS_ERR;
    return admin_account_lines(self->st[ST_GET], fn, arg) > 0;
}

int
admin_account_each(admin_account *self, admin_account_line_fn fn, void *arg, errbuf *err)
{
    if (db_stmt_exec(self->st[ST_LIST], err, "") < 0)
        return RS_ERR;
    admin_account_lines(self->st[ST_LIST], fn, arg);
    return RS_OK;
}

/* -- changes --------------------------------------------------------------------- */

static long long
admin_account_add_tx(admin_account *self, const struct audit_who *who, const char *name, int role,
                     const char *hash, errbuf *err)
{
    char after[64];
    long long id;

    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    if (db_stmt_exec(self->st[ST_ADD], err, "sss", name, admin_role_name(role), hash) < 0) {
        if (db_duplicate(self->conn))
            errbuf_set(err, "an account named %s exists", name);
        goto fail;
    }
    id = (long long)db_stmt_insert_id(self->st[ST_ADD]);
    snprintf(after, sizeof(after), "{\"role\":\"%s\",\"disabled\":false}", admin_role_name(role));
    if (audit_write_who(self->conn, who, "admin.add", name, NULL, after, err) != RS_OK)
        goto fail;
    if (db_commit(self->conn, err) != RS_OK)
        goto fail;
    return id;
fail:
    db_rollback(self->conn);
    return RS_ERR;
}

long long
admin_account_add(admin_account *self, const struct audit_who *who, const char *name, int role,
                  const char *password, errbuf *err)
{
    char hash[crypto_pwhash_STRBYTES];
    int attempts = 0;
    long long id;

    if (admin_role_name(role) == NULL)
        return errbuf_set(err, "a role is viewer or operator");
    if (admin_account_name_check(name, err) != RS_OK ||
        admin_password_check(password, err) != RS_OK)
        return RS_ERR;
    /* Hashed before the transaction: a tenth of a second holds no lock. */
    if (admin_password_hash(password, hash, err) != RS_OK)
        return RS_ERR;
    do
        id = admin_account_add_tx(self, who, name, role, hash, err);
    while (id < 0 && db_retry(self->conn, &attempts));
    sodium_memzero(hash, sizeof(hash));
    return id;
}

/* One change of an existing account, as admin_account_change runs it. */
enum admin_change { CHANGE_PASSWD, CHANGE_ROLE, CHANGE_DISABLE, CHANGE_ENABLE, CHANGE_UNLOCK };

static const char *const admin_change_action[] = {
    [CHANGE_PASSWD] = "admin.passwd",   [CHANGE_ROLE] = "admin.role",
    [CHANGE_DISABLE] = "admin.disable", [CHANGE_ENABLE] = "admin.enable",
    [CHANGE_UNLOCK] = "admin.unlock",
};

/* The account's row, locked; the change decided on it, written, its sessions
 * ended when the change calls for it, and its audit row: 1, or 0 when there
 * was nothing to change (nothing written). */
static int
admin_account_change_tx(admin_account *self, const struct audit_who *who, const char *name,
                        enum admin_change change, int role, const char *hash, errbuf *err)
{
    db_stmt *row = self->st[ST_ROW];
    char before[96] = "", after[96] = "";
    long long id, failures, rows;
    int old_role, disabled, locked, ends_sessions = 0;

    if (db_begin(self->conn, err) != RS_OK)
        return RS_ERR;
    rows = db_stmt_exec(row, err, "s", name);
    if (rows < 0)
        goto fail;
    if (rows == 0 || !db_stmt_next(row)) {
        errbuf_set(err, "no account %s", name);
        goto fail;
    }
    id = db_stmt_col_int(row, 0);
    old_role = admin_role_parse(db_stmt_col(row, 1, NULL), err);
    disabled = db_stmt_col_int(row, 2) != 0;
    failures = db_stmt_col_int(row, 3);
    locked = db_stmt_col_int(row, 4) != 0;
    if (old_role < 0)
        goto fail;
    switch (change) {
    case CHANGE_PASSWD:
        /* Never the password, nor its hash: only that it changed. */
        snprintf(after, sizeof(after), "{\"password\":\"changed\"}");
        failures = 0;
        locked = 0;
        ends_sessions = 1;
        break;
    case CHANGE_ROLE:
        if (role == old_role)
            goto unchanged;
        snprintf(before, sizeof(before), "{\"role\":\"%s\"}", admin_role_name(old_role));
        snprintf(after, sizeof(after), "{\"role\":\"%s\"}", admin_role_name(role));
        old_role = role;
        ends_sessions = 1;
        break;
    case CHANGE_DISABLE:
    case CHANGE_ENABLE:
        if (disabled == (change == CHANGE_DISABLE))
            goto unchanged;
        snprintf(before, sizeof(before), "{\"disabled\":%s}", disabled ? "true" : "false");
        disabled = !disabled;
        snprintf(after, sizeof(after), "{\"disabled\":%s}", disabled ? "true" : "false");
        ends_sessions = disabled;
        break;
    case CHANGE_UNLOCK:
        if (failures == 0 && !locked)
            goto unchanged;
        snprintf(before, sizeof(before), "{\"failures\":%lld,\"locked\":%s}", failures,
                 locked ? "true" : "false");
        snprintf(after, sizeof(after), "{\"failures\":0,\"locked\":false}");
        failures = 0;
        locked = 0;
        break;
    }
    if (db_stmt_exec(self->st[ST_UPDATE], err, "siiisi", admin_role_name(old_role),
                     (long long)disabled, failures, (long long)locked, hash, id) < 0 ||
        (ends_sessions && admin_session_delete_account(self->sessions, id, err) < 0) ||
        audit_write_who(self->conn, who, admin_change_action[change], name,
                        before[0] ? before : NULL, after, err) != RS_OK ||
        db_commit(self->conn, err) != RS_OK)
        goto fail;
    return 1;
unchanged:
    db_rollback(self->conn);
    return 0;
fail:
    db_rollback(self->conn);
    return RS_ERR;
}

static int
admin_account_change(admin_account *self, const struct audit_who *who, const char *name,
                     enum admin_change change, int role, const char *hash, errbuf *err)
{
    int attempts = 0, rc;

    if (admin_account_name_check(name, err) != RS_OK)
        return RS_ERR;
    do
        rc = admin_account_change_tx(self, who, name, change, role, hash, err);
    while (rc < 0 && db_retry(self->conn, &attempts));
    return rc;
}

int
admin_account_passwd(admin_account *self, const struct audit_who *who, const char *name,
                     const char *password, errbuf *err)
{
    char hash[crypto_pwhash_STRBYTES];
    int rc;

    if (admin_account_name_check(name, err) != RS_OK ||
        admin_password_check(password, err) != RS_OK ||
        admin_password_hash(password, hash, err) != RS_OK)
        return RS_ERR;
    rc = admin_account_change(self, who, name, CHANGE_PASSWD, 0, hash, err);
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

int
admin_account_role(admin_account *self, const struct audit_who *who, const char *name, int role,
                   errbuf *err)
{
    if (admin_role_name(role) == NULL)
        return errbuf_set(err, "a role is viewer or operator");
    return admin_account_change(self, who, name, CHANGE_ROLE, role, NULL, err);
}

int
admin_account_disable(admin_account *self, const struct audit_who *who, const char *name,
                      errbuf *err)
{
    return admin_account_change(self, who, name, CHANGE_DISABLE, 0, NULL, err);
}

int
admin_account_enable(admin_account *self, const struct audit_who *who, const char *name,
                     errbuf *err)
{
    return admin_account_change(self, who, name, CHANGE_ENABLE, 0, NULL, err);
}

int
admin_account_unlock(admin_account *self, const struct audit_who *who, const char *name,
                     errbuf *err)
{
    return admin_account_change(self, who, name, CHANGE_UNLOCK, 0, NULL, err);
}
