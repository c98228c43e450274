/* audit: the append-only audit trail, written in the change's transaction (see audit.h). */
#include "config.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit.h"
#include "utf8.h"

/* A column's text: 1 (or 0 when empty is allowed) to max bytes of valid UTF-8. */
static int
audit_text_check(const char *what, const char *s, size_t max, int may_be_empty, errbuf *err)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (s == NULL || (n == 0 && !may_be_empty))
        return errbuf_set(err, "audit: no %s", what);
    if (n > max)
        return errbuf_set(err, "audit: %s longer than %zu bytes", what, max);
    if (utf8_chars(s, n) < 0)
        return errbuf_set(err, "audit: %s is not UTF-8", what);
    return RS_OK;
}

static int
audit_json_check(const char *what, const char *json, errbuf *err)
{
    cJSON *parsed;

    if (json == NULL)
        return RS_OK;
    parsed = cJSON_ParseWithOpts(json, NULL, 1);
    if (parsed == NULL)
        return errbuf_set(err, "audit: %s is not one JSON value", what);
    cJSON_Delete(parsed);
    return RS_OK;
}

/* A text value as a literal of a statement db_exec runs: hex, read as utf8mb4. */
static void
audit_text_value(db_text *t, const char *s)
{
    if (s == NULL) {
        db_text_str(t, "NULL");
        return;
    }
    db_text_str(t, "_utf8mb4 ");
    db_text_hex(t, s, strlen(s));
}

int
audit_write(db *conn, const char *actor, const char *source, const char *action, const char *target,
            const char *before_json, const char *after_json, errbuf *err)
{
    db_text t = {0};
    long long rows;

    if (audit_text_check("actor", actor, AUDIT_ACTOR_MAX, 0, err) != RS_OK ||
        audit_text_check("source", source, AUDIT_SOURCE_MAX, 0, err) != RS_OK ||
        audit_text_check("action", action, AUDIT_ACTION_MAX, 0, err) != RS_OK ||
        audit_text_check("target", target, AUDIT_TARGET_MAX, 1, err) != RS_OK ||
        audit_json_check("before", before_json, err) != RS_OK ||
        audit_json_check("after", after_json, err) != RS_OK)
        return RS_ERR;
    /* A text statement of hex literals rather than a prepared one: it needs no
     * object on the connection, so that any module's transaction, on whatever
     * connection, writes its row with one call. */
    db_text_str(&t, "INSERT INTO audit_log (at, actor, source, action, target, before_json,"
                    " after_json) VALUES (UTC_TIMESTAMP(6), ");
    audit_text_value(&t, actor);
    db_text_str(&t, ", ");
    audit_text_value(&t, source);
    db_text_str(&t, ", ");
    audit_text_value(&t, action);
    db_text_str(&t, ", ");
    audit_text_value(&t, target);
    db_text_str(&t, ", ");
    audit_text_value(&t, before_json);
    db_text_str(&t, ", ");
    audit_text_value(&t, after_json);
    db_text_str(&t, ")");
    rows = db_text_run(conn, &t, err);
    db_text_free(&t);
    if (rows < 0)
        return errbuf_prefix(err, "writing the audit trail");
    return RS_OK;
}

int
audit_write_who(db *conn, const struct audit_who *who, const char *action, const char *target,
                const char *before_json, const char *after_json, errbuf *err)
{
    return audit_write(conn, who->actor, who->source, action, target, before_json, after_json, err);
}

void
audit_local_who(char actor[AUDIT_ACTOR_MAX + 1], char source[AUDIT_SOURCE_MAX + 1])
{
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    const char *tty = isatty(STDIN_FILENO) ? ttyname(STDIN_FILENO) : NULL;

    if (pw != NULL && pw->pw_name != NULL && utf8_chars(pw->pw_name, strlen(pw->pw_name)) >= 0)
        snprintf(actor, AUDIT_ACTOR_MAX + 1, "restockctl:%s", pw->pw_name);
    else
        snprintf(actor, AUDIT_ACTOR_MAX + 1, "restockctl:uid:%ld", (long)uid);
    if (tty != NULL && utf8_chars(tty, strlen(tty)) >= 0)
        snprintf(source, AUDIT_SOURCE_MAX + 1, "local:%s", tty);
    else
        snprintf(source, AUDIT_SOURCE_MAX + 1, "local");
}

/* -- the reader ------------------------------------------------------------------ */

enum { ST_PAGE, ST_COUNT };

static const struct db_stmt_def audit_sql[ST_COUNT] = {
    [ST_PAGE] = {"SELECT id, DATE_FORMAT(at, '%Y-%m-%dT%H:%i:%s.%fZ'), actor, source, action,"
                 " target, before_json, after_json FROM audit_log"
                 " WHERE ? = 0 OR id < ? ORDER BY id DESC LIMIT ?",
                 DB_IDEMPOTENT},
};

struct audit {
    db_stmt *st[ST_COUNT]; /* they belong to the caller's db and go with it */
};

audit *
audit_new(db *conn, errbuf *err)
{
    audit *self = calloc(1, sizeof(*self));

    if (self == NULL) {
        errbuf_set(err, "out of memory");
        return NULL;
    }
    if (db_stmt_table(conn, audit_sql, ST_COUNT, self->st, err) != RS_OK) {
        audit_destroy(&self);
        return NULL;
    }
    return self;
}

void
audit_destroy(audit **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

int
audit_check_page(long long limit, long long before_id, errbuf *err)
{
    if (limit < 1 || limit > AUDIT_LIMIT_MAX)
        return errbuf_set(err, "limit: expected a number from 1 to %d", AUDIT_LIMIT_MAX);
    if (before_id < 0)
        return errbuf_set(err, "before: expected an audit row's id (a positive number)");
    return RS_OK;
}

int
audit_each(audit *self, long long limit, long long before_id, audit_line_fn fn, void *arg,
           errbuf *err)
{
    db_stmt *page = self->st[ST_PAGE];

    if (audit_check_page(limit, before_id, err) != RS_OK)
        return RS_ERR;
    if (db_stmt_exec(page, err, "iii", before_id, before_id, limit) < 0)
        return RS_ERR;
    while (db_stmt_next(page)) {
        struct audit_line line = {
            .id = db_stmt_col_int(page, 0),
            .at = db_stmt_col(page, 1, NULL),
            .actor = db_stmt_col(page, 2, NULL),
            .source = db_stmt_col(page, 3, NULL),
            .action = db_stmt_col(page, 4, NULL),
            .target = db_stmt_col(page, 5, NULL),
            .before = db_stmt_col(page, 6, NULL),
            .after = db_stmt_col(page, 7, NULL),
        };
        fn(arg, &line);
    }
    return RS_OK;
}
