/* audit: the audit trail (audit_log, sql/019_admin.sql), the one module with SQL
 * on it. Every change an operator makes through restockctl or the admin API is
 * written here, by the code that makes the change, inside the transaction of
 * that change: the row is committed with the change or rolled back with it.
 * The table is append-only (the database's triggers refuse UPDATE and DELETE).
 * Before and after are JSON text that never holds a secret, a key, a password
 * or a hash: a rotated secret is written as "rotated". */
#ifndef RESTOCK_AUDIT_H
#define RESTOCK_AUDIT_H

#include <stddef.h>

#include "db.h"
#include "errbuf.h"

/* The columns' sizes (sql/019_admin.sql). */
#define AUDIT_ACTOR_MAX  128
#define AUDIT_SOURCE_MAX 128
#define AUDIT_ACTION_MAX 32
#define AUDIT_TARGET_MAX 255
/* The most rows one read returns (restockctl audit --limit, the API's ?limit=). */
#define AUDIT_LIMIT_MAX 1000

/* Who made a change, and from where: "restockctl:<unix user>" and "local…" for
 * restockctl, "admin:<account>" and the client's address for the admin API. */
struct audit_who {
    const char *actor;
    const char *source;
};

/* Appends one row on conn, at UTC now: call it inside the transaction of the
 * change it records (db_begin … db_commit on the same conn), after the change
 * succeeded. before_json and after_json: NULL, or one JSON value as text
 * (checked: a caller's mistake is an error, not a broken row). RS_ERR when a
 * value is empty, too long or not UTF-8, or the database failed (the caller
 * rolls the whole change back). */
int audit_write(db *conn, const char *actor, const char *source, const char *action,
                const char *target, const char *before_json, const char *after_json, errbuf *err);

/* The same, with who as actor and source. */
int audit_write_who(db *conn, const struct audit_who *who, const char *action, const char *target,
                    const char *before_json, const char *after_json, errbuf *err);

/* restockctl's actor and source: "restockctl:<name of the real uid>" (the
 * user who ran it; "uid:N" when the name is unknown) and "local", or
 * "local:<tty>" when stdin is a terminal. As root, restockctl drops to the
 * spool's owner, which changes the real uid too: it calls this at start. */
void audit_local_who(char actor[AUDIT_ACTOR_MAX + 1], char source[AUDIT_SOURCE_MAX + 1]);

/* One row as read: at in RFC 3339 UTC with microseconds
 * ("2026-12-07T10:25:00.123456Z"); before and after NULL when there is none.
 * Valid during the callback. */
struct audit_line {
    long long id;
    const char *at, *actor, *source, *action, *target, *before, *after;
};

typedef void (*audit_line_fn)(void *arg, const struct audit_line *line);

typedef struct audit audit;

/* The reader; its statements live on conn. NULL when out of memory. */
audit *audit_new(db *conn, errbuf *err);
void audit_destroy(audit **self_p);

/* The newest limit rows (1 to AUDIT_LIMIT_MAX) with an id below before_id (0:
 * from the newest), newest first. RS_OK or RS_ERR. */
int audit_each(audit *self, long long limit, long long before_id, audit_line_fn fn, void *arg,
               errbuf *err);

/* Checks limit and before_id as audit_each takes them: RS_ERR saying why. */
int audit_check_page(long long limit, long long before_id, errbuf *err);

#endif
