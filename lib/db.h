/* db: a connection to MySQL/MariaDB with prepared statements that survive a lost
 * connection. A db is used by one thread at a time; each thread owns its own. The
 * connection is made at first use and made again after the server went away, and
 * every statement is prepared again on the new connection.
 *
 * db_host may list several hosts (a Galera cluster without a proxy): the first
 * that answers is used until its connection fails; then the next one (wrapping),
 * logged as event=db_failover. A connection idle for db_idle_check seconds is
 * pinged before the next statement outside a transaction, and replaced when it
 * died, so that a proxy or server restart costs no statement. */
#ifndef RESTOCK_DB_H
#define RESTOCK_DB_H

#include <stddef.h>

#include "conf.h"
#include "errbuf.h"

typedef struct db db;
typedef struct db_stmt db_stmt;

/* db_new flags */
#define DB_MULTI_STATEMENTS 1 /* allow several statements in db_run (migrations only) */

/* Statement flags */
#define DB_IDEMPOTENT 1 /* safe to send again when the connection broke while it ran */

/* The client library's start-up, which is not thread-safe: db_library_init once
 * in main before any thread starts, db_library_end at exit after the last
 * db_destroy. A thread other than main's calls db_thread_init before its first
 * db_new and db_thread_end after its last db_destroy. */
int db_library_init(errbuf *err);
void db_library_end(void);
int db_thread_init(errbuf *err);
void db_thread_end(void);

/* Reads db_* from the configuration; connects lazily. NULL only when out of
 * memory. */
db *db_new(const conf *cf, int flags);
void db_destroy(db **self_p);

/* Bounds this connection's reads and writes (and connects) more tightly than
 * db_timeout and db_connect_timeout, from its next connection on: for a
 * connection whose statements must end sooner than the configured wait (the
 * worker's lease renewal, workers/lease.c). A value of 0 keeps the setting. */
void db_set_timeouts(db *self, unsigned timeout, unsigned connect_timeout);

/* Connects if not connected; answers whether the server answers (ping). */
int db_ping(db *self, errbuf *err);

/* 1 when the last failure was the connection (server down, lost, timed out, a
 * Galera node outside the primary component) rather than the statement: callers
 * answer 503 for those. */
/* Whether the server keeps a commit through a power cut (docs/operations.md,
 * "Durability"): 1 when it does, 0 when it does not (why: which setting, and what
 * it can lose), RS_ERR when it could not be asked. */
int db_durability(db *self, char *why, size_t whylen, errbuf *err);

/* Causal reads on a Galera node (wsrep_sync_wait = 1 while on): a read then
 * waits until the node has applied every write the cluster committed before it,
 * so that a row another node just wrote is found. Galera's default reads
 * whatever the node has applied. 1 when set, 0 when the server is no Galera node
 * (nothing to do), RS_ERR. */
int db_causal(db *self, int on, errbuf *err);
int db_failed_connection(const db *self);

/* 1 when the last failure was a deadlock or a Galera
 * certification failure: the database rolled the work back, so that a whole
 * transaction may be run again. An autocommit statement is run again by
 * db_stmt_exec itself. */
int db_retryable(const db *self);

/* What a MySQL error number means to restock: the connection failed (lost, timed
 * out, refused, a Galera node outside the primary component: reconnect, to the
 * next host); the database rolled the work back (a deadlock,
 * a certification failure: run it again); or the statement itself failed. */
enum db_error_class { DB_ERROR_STATEMENT, DB_ERROR_CONNECTION, DB_ERROR_RETRYABLE };
enum db_error_class db_error_class(unsigned code);

/* The retry of a transaction: 1 (and the attempt logged, *attempts counted) when
 * the last failure is db_retryable and fewer than db_retries attempts were made,
 * after the caller rolled back; it pauses a random few milliseconds first. Every transaction runs
 * in such a loop: int attempts = 0; do rc = my_tx(...); while (rc < 0 && db_retry(conn,
 * &attempts));
 * Always 0 while a transaction is still open, that is for a nested transaction
 * after its rollback: the database rolled the outer one back too, so only the
 * outermost runs again. The error stays db_retryable for the outermost loop. */
int db_retry(db *self, int *attempts);

/* Runs text SQL without parameters (DDL, migrations); drains every result. */
int db_run(db *self, const char *sql, errbuf *err);

/* Runs one text statement of len bytes that returns no rows (a multi-row INSERT,
 * an UPDATE of a list of ids: what one prepared statement of fixed parameters
 * cannot say in one round trip). Its values must be literals the caller made
 * safe: numbers it printed, bytes as db_hex literals; never a client's text as
 * is. Rows changed, or -1 (with the failure classes of any statement; it is not
 * sent again: run it inside a transaction). */
long long db_exec(db *self, const char *sql, size_t len, errbuf *err);

/* Writes bytes as an SQL hex literal X'0a1b…' into out (DB_HEX_SIZE(len) bytes
 * at least) and returns its length: any bytes, binary or text, become a literal
 * that cannot end the string early. */
#define DB_HEX_SIZE(len) (2 * (len) + 4)
size_t db_hex(char *out, const void *bytes, size_t len);

/* A text statement built in pieces for db_exec: fixed SQL, numbers and db_hex
 * literals only. Starts as {0}; a piece that finds no memory fails the run. */
typedef struct db_text {
    char *buf;
    size_t len, cap;
    int failed;
} db_text;

void db_text_add(db_text *t, const char *s, size_t n);
void db_text_str(db_text *t, const char *s); /* fixed SQL, never a client's text */
void db_text_hex(db_text *t, const void *bytes, size_t n);
void db_text_int(db_text *t, long long v);
/* Runs it (db_exec) and empties it for the next statement; keeps its buffer. */
long long db_text_run(db *self, db_text *t, errbuf *err);
void db_text_free(db_text *t);

/* 1 when the last failure was a duplicate key (a unique row there already). */
int db_duplicate(const db *self);

/* A db_begin inside an open transaction opens a savepoint of it: its
 * db_commit releases the savepoint (the work is committed with the outer
 * transaction) and its db_rollback undoes its own work only. So a module's
 * transaction joins the caller's when there is one. db_commit ends its level
 * whether it succeeds or not; after any other failure the caller calls
 * db_rollback.
 *
 * A failure after which the server rolled the whole transaction back (a
 * deadlock, a certification failure, a savepoint it dropped) or after which its
 * connection is gone voids the transaction, at whatever depth it happened: from
 * then on every statement, db_begin, db_commit of a nested level and the
 * outermost db_commit fail without reaching the server, as that failure did
 * (db_retryable, or db_failed_connection), and nothing runs in autocommit in its
 * place. The outermost db_rollback (or db_commit, which then rolls back and fails)
 * ends the void transaction; the caller's loop may then run it again (db_retry). */
int db_begin(db *self, errbuf *err);
int db_commit(db *self, errbuf *err);

/* 1 once after a failed commit, or a failed write outside a transaction, whose
 * fate is unknown: the connection was lost after the request was sent (the server
 * died or shut down while it ran), so the server may have made it. Reading it
 * clears it. A sale answers such a failure 504, not 503 (sale.h). */
int db_in_doubt(db *self);
/* Rolls back if a transaction is open; never fails (a broken connection rolls back). */
void db_rollback(db *self);

/* A statement belongs to its db and is destroyed with it. It is prepared at its
 * first execution on each connection; NULL only when out of memory. */
db_stmt *db_stmt_new(db *self, const char *sql, int flags);

/* One statement of a module's table of statements: its SQL and its flags. */
struct db_stmt_def {
    const char *sql;
    int flags;
};

/* A module's statements: out[i] made from defs[i], for each of the n, on self.
 * RS_ERR ("out of memory") when one cannot be made; those made stay with self. */
int db_stmt_table(db *self, const struct db_stmt_def *defs, size_t n, db_stmt **out, errbuf *err);

/* Executes with parameters described by types, one letter each:
 *   s  const char *        (NULL for SQL NULL)
 *   b  const void *, size_t (binary; NULL for SQL NULL)
 *   i  long long
 * Returns the number of rows changed (or found, for a SELECT) or -1. A result set is
 * kept until the next execution: read it with db_stmt_next and the column getters. */
long long db_stmt_exec(db_stmt *st, errbuf *err, const char *types, ...);

/* Executes st, an INSERT ending in one VALUES (…) tuple, for each of rows rows
 * in one round trip: MariaDB's bulk execution (COM_STMT_BULK_EXECUTE), where
 * the server parses nothing; on a Galera node (where bulk execution is not safe:
 * db.c says why), on MySQL, or with a statement-based binary log, the text of
 * one multi-row INSERT with the values as literals. types as for db_stmt_exec,
 * each argument a column, an array of rows values:
 *   s  const char *const *                       (NULL for SQL NULL)
 *   b  const void *const *, const unsigned long * (the bytes and their lengths)
 *   i  const long long *
 * No ? in the statement but its parameters'. Rows changed in all, or -1 with
 * the failure classes of any statement. Not sent again after a failure: run it
 * inside a transaction. */
long long db_stmt_bulk(db_stmt *st, size_t rows, errbuf *err, const char *types, ...);
/* Moves to the next row of the result: 1 when there is one, 0 at the end. */
int db_stmt_next(db_stmt *st);

/* Column of the current row as bytes (NUL-terminated; NULL for SQL NULL). */
const char *db_stmt_col(db_stmt *st, int col, size_t *len);
long long db_stmt_col_int(db_stmt *st, int col);
int db_stmt_col_is_null(db_stmt *st, int col);

/* LAST_INSERT_ID() of the last execution (also the value of LAST_INSERT_ID(expr)). */
unsigned long long db_stmt_insert_id(db_stmt *st);

#endif
