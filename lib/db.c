/* db: MySQL/MariaDB connection and prepared statements (see db.h). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "db.h"
#include "hostlist.h"
#include "log.h"

/* MySQL 8 dropped my_bool for bool; MariaDB Connector/C keeps it. */
#if !defined(MARIADB_PACKAGE_VERSION_ID) && defined(MYSQL_VERSION_ID) && MYSQL_VERSION_ID >= 80001
typedef bool my_bool;
#endif
#ifndef ER_CONNECTION_KILLED
#define ER_CONNECTION_KILLED 1927
#endif
#ifndef ER_UNKNOWN_COM_ERROR
#define ER_UNKNOWN_COM_ERROR 1047
#endif
#ifndef ER_BINLOG_NON_SUPPORTED_BULK
#define ER_BINLOG_NON_SUPPORTED_BULK 4033
#endif

#define DB_MAX_PARAMS 16

struct db_stmt {
    db *owner;
    char *sql;
    int flags;
    MYSQL_STMT *handle;
    unsigned generation; /* connection the handle was prepared on */
    int has_result;
    unsigned ncols;
    MYSQL_BIND *cols;
    char **bufs;
    unsigned long *lens;
    my_bool *nulls;
    db_stmt *next;
};

struct db {
    hostlist *hosts;
    size_t current;   /* the host in use, or the one tried first at the next connect */
    size_t last_host; /* the host of the last connection made */
    char *user, *password, *name, *socket;
    unsigned timeout, connect_timeout;
    long idle_check; /* seconds; 0: a ping before every statement outside a transaction */
    int retries;
    int flags;
    MYSQL *conn;
    unsigned generation;       /* bumped at every new connection */
    struct timespec last_used; /* the connection's last round trip */
    int in_transaction;        /* depth: 1 in a transaction, more in savepoints of it */
    unsigned poisoned;         /* not 0: the open transaction is void, rolled back (by the
                                  server, or with its connection) under this error */
    int failed_connection;
    unsigned last_errno;
    int in_doubt;      /* db_in_doubt: a write's fate unknown since the last failure */
    db_stmt *wsrep;    /* db_causal's question: is the server a Galera node */
    unsigned wsrep_of; /* the generation its answer is of (0: none yet) */
    int wsrep_on;      /* that answer */
    int manual_commit; /* the session's autocommit is off: a Galera transaction's (db_begin) */
    db_stmt *stmts;
};

int
db_library_init(errbuf *err)
{
    if (mysql_library_init(0, NULL, NULL) != 0)
        return errbuf_set(err, "database: the MySQL client library cannot initialise");
    return RS_OK;
}

void
db_library_end(void)
{
    mysql_library_end();
}

int
db_thread_init(errbuf *err)
{
    if (mysql_thread_init() != 0)
        return errbuf_set(err, "database: the MySQL client library cannot start a thread");
    return RS_OK;
}

void
db_thread_end(void)
{
    mysql_thread_end();
}

db *
db_new(const conf *cf, int flags)
{
    db *self = calloc(1, sizeof(*self));

    if (self == NULL)
        return NULL;
    self->hosts = hostlist_new(conf_str(cf, "db_host"), (unsigned)conf_int(cf, "db_port"), NULL);
    self->user = strdup(conf_str(cf, "db_user"));
    self->password = strdup(conf_str(cf, "db_password"));
    self->name = strdup(conf_str(cf, "db_name"));
    self->socket = strdup(conf_str(cf, "db_socket"));
    self->timeout = (unsigned)conf_int(cf, "db_timeout");
    self->connect_timeout = (unsigned)conf_int(cf, "db_connect_timeout");
    self->idle_check = conf_int(cf, "db_idle_check");
    self->retries = (int)conf_int(cf, "db_retries");
    self->flags = flags;
    /* The configuration checked db_host: only memory can be short here. */
    if (!self->hosts || !self->user || !self->password || !self->name || !self->socket)
        db_destroy(&self);
    return self;
}

void
db_set_timeouts(db *self, unsigned timeout, unsigned connect_timeout)
{
    if (timeout > 0 && timeout < self->timeout)
        self->timeout = timeout;
    if (connect_timeout > 0 && connect_timeout < self->connect_timeout)
        self->connect_timeout = connect_timeout;
}

/* Drops the result set of the last execution and its column buffers. */
static void
db_stmt_clear_result(db_stmt *st)
{
    if (st->has_result && st->handle != NULL)
        mysql_stmt_free_result(st->handle);
    st->has_result = 0;
    for (unsigned i = 0; i < st->ncols; i++)
        free(st->bufs[i]);
    free(st->bufs);
    free(st->cols);
    free(st->lens);
    free(st->nulls);
    st->bufs = NULL;
    st->cols = NULL;
    st->lens = NULL;
    st->nulls = NULL;
    st->ncols = 0;
}

/* Also closes the handle: the statement is prepared again at its next use. */
static void
db_stmt_release(db_stmt *st)
{
    db_stmt_clear_result(st);
    if (st->handle != NULL) {
        mysql_stmt_close(st->handle);
        st->handle = NULL;
    }
}

static void
db_disconnect(db *self)
{
    for (db_stmt *st = self->stmts; st != NULL; st = st->next)
        db_stmt_release(st);
    if (self->conn != NULL) {
        mysql_close(self->conn);
        self->conn = NULL;
    }
    /* The depth stays: a transaction that lost its connection is void, not over,
     * until its outermost db_rollback or db_commit (db_poison). */
}

void
db_destroy(db **self_p)
{
    db *self = *self_p;

    if (self == NULL)
        return;
    db_disconnect(self);
    while (self->stmts != NULL) {
        db_stmt *st = self->stmts;
        self->stmts = st->next;
        free(st->sql);
        free(st);
    }
    hostlist_destroy(&self->hosts);
    free(self->user);
    if (self->password != NULL)
        memset(self->password, 0, strlen(self->password));
    free(self->password);
    free(self->name);
    free(self->socket);
    free(self);
    *self_p = NULL;
}

/* Errors that mean the connection, not the statement, failed. */
static int
db_is_connection_errno(unsigned code)
{
    return db_error_class(code) == DB_ERROR_CONNECTION;
}

/* Connection failures after which a statement sent may have run: the answer, not
 * the request, was lost (the server died, shut down or killed the session while
 * it ran). The others mean it never ran: not sent (gone, no connection) or refused. */
static int
db_is_in_doubt_errno(unsigned code)
{
    switch (code) {
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_QUERY_INTERRUPTED:
        return 1;
    default:
        return 0;
    }
}

/* Errors after which the server rolled back what the statement (or, for a
 * deadlock, the whole transaction) did: running it again is safe. Galera reports
 * a certification failure, a conflict with another node's writeset, as a deadlock. */
static int
db_is_retryable_errno(unsigned code)
{
    return db_error_class(code) == DB_ERROR_RETRYABLE;
}

enum db_error_class
db_error_class(unsigned code)
{
    switch (code) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case CR_UNKNOWN_HOST:
    case CR_COMMANDS_OUT_OF_SYNC:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_QUERY_INTERRUPTED:
    case ER_CON_COUNT_ERROR:
    case ER_TOO_MANY_USER_CONNECTIONS:
    /* A Galera node outside the primary component ("WSREP has not yet prepared node
     * for application use"): it refuses every statement until it rejoins, so
     * another node must be asked. */
    case ER_UNKNOWN_COM_ERROR:
    case 4031: /* ER_CLIENT_INTERACTION_TIMEOUT: the server closed an idle connection */
        return DB_ERROR_CONNECTION;
    /* A lock wait timeout (1205) is not run again: the statement already waited
     * innodb_lock_wait_timeout for a lock held that long, and waiting again
     * db_retries times would outlast the client; it fails like the statement's. */
    case ER_LOCK_DEADLOCK:
        return DB_ERROR_RETRYABLE;
    default:
        return DB_ERROR_STATEMENT;
    }
}

/* The open transaction (at any depth) is void under error code: the server rolled
 * all of it back (a deadlock, a certification failure, a savepoint it dropped) or
 * the connection it was on is gone. Nothing of it may be sent again, nor anything
 * after it in autocommit: every statement, savepoint, release and commit fails as
 * code did (db_void) until the outermost db_rollback or db_commit ends it. The
 * first cause is the one kept. */
static void
db_poison(db *self, unsigned code)
{
    if (self->in_transaction > 0 && self->poisoned == 0)
        self->poisoned = code;
}

/* What is asked of a void transaction fails without reaching the server, as the
 * failure that voided it: retryable after a deadlock (the outermost transaction's
 * db_retry runs all of it again), a connection failure after a lost connection. */
static int
db_void(db *self, const char *what, errbuf *err)
{
    self->last_errno = self->poisoned;
    self->failed_connection = db_is_connection_errno(self->poisoned);
    return errbuf_set(err,
                      "database: %s: the transaction was rolled back by an earlier failure "
                      "inside it; it must run again from its start (%u)",
                      what, self->poisoned);
}

/* The connection broke: closed, and the next connect starts at the next host
 * (wrapping), since this one may be the one that is down. A transaction open on
 * it is void. */
static void
db_drop(db *self)
{
    db_poison(self, self->last_errno ? self->last_errno : CR_SERVER_LOST);
    db_disconnect(self);
    self->current = (self->current + 1) % hostlist_count(self->hosts);
}

/* Records a failure of the connection or statement; a broken connection is closed
 * so that the next call connects again, to the next host. Inside a transaction,
 * a failure after which the server rolled the transaction back (or lost it with
 * the connection) voids it; a statement's own failure (a duplicate key, a lock
 * wait timeout) undoes that statement only, and the transaction goes on. */
static int
db_fail(db *self, unsigned code, const char *what, const char *detail, errbuf *err)
{
    self->failed_connection = db_is_connection_errno(code);
    self->last_errno = code;
    errbuf_set(err, "database: %s: %s (%u)", what, detail, code);
    if (db_is_retryable_errno(code))
        db_poison(self, code);
    if (self->failed_connection)
        db_drop(self);
    return RS_ERR;
}

static void
db_touch(db *self)
{
    clock_gettime(CLOCK_MONOTONIC, &self->last_used);
}

/* Host i as logs name it: "localhost" is the unix socket. */
static const char *
db_host_name(const db *self, size_t i)
{
    if (strcmp(hostlist_host(self->hosts, i), "localhost") != 0)
        return hostlist_name(self->hosts, i);
    return *self->socket ? self->socket : "localhost";
}

/* One attempt at host i; on failure err holds the host's error, without the
 * password. */
static int
db_connect_to(db *self, size_t i, errbuf *err)
{
    unsigned long flags = 0;
    my_bool off = 0;
    const char *host = hostlist_host(self->hosts, i);
    const char *init = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
    /* "localhost" is the unix socket (the client library's rule); db_socket names it. */
    const char *socket = *self->socket && strcmp(host, "localhost") == 0 ? self->socket : NULL;

    self->conn = mysql_init(NULL);
    if (self->conn == NULL)
        return errbuf_set(err, "out of memory");
    /* A dead host costs the connect timeout, a short one; a live host's answer
     * may take the read timeout, longer than the cluster's failure detection. */
    mysql_options(self->conn, MYSQL_OPT_CONNECT_TIMEOUT, &self->connect_timeout);
    mysql_options(self->conn, MYSQL_OPT_READ_TIMEOUT, &self->timeout);
    mysql_options(self->conn, MYSQL_OPT_WRITE_TIMEOUT, &self->timeout);
    mysql_options(self->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_options(self->conn, MYSQL_OPT_RECONNECT, &off); /* reconnecting is ours to do */
    /* READ COMMITTED: the sold-out transaction must not take gap locks that
     * serialise a surge of checkouts behind one another. */
    mysql_options(self->conn, MYSQL_INIT_COMMAND, init);
    if (self->flags & DB_MULTI_STATEMENTS)
        flags |= CLIENT_MULTI_STATEMENTS;
    if (mysql_real_connect(self->conn, host, self->user, self->password, self->name,
                           hostlist_port(self->hosts, i), socket, flags) == NULL) {
        errbuf_set(err, "%s: %s (%u)", db_host_name(self, i), mysql_error(self->conn),
                   mysql_errno(self->conn));
        mysql_close(self->conn);
        self->conn = NULL;
        return RS_ERR;
    }
    return RS_OK;
}

/* Connects to the first host that answers, starting at the current one and
 * wrapping; a move to another host than the last connection's is logged once. */
static int
db_connect(db *self, errbuf *err)
{
    size_t n = hostlist_count(self->hosts), from = self->current;
    char tried[sizeof(err->msg)];
    size_t used = 0;

    if (self->conn != NULL)
        return RS_OK;
    tried[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        size_t i = (from + k) % n;
        errbuf one = {{0}};
        if (db_connect_to(self, i, &one) == RS_OK) {
            /* The first connection counts as coming from the first host. */
            if (i != self->last_host)
                log_warn("event=db_failover from=%s to=%s", db_host_name(self, self->last_host),
                         db_host_name(self, i));
            self->current = self->last_host = i;
            self->generation++;
            self->manual_commit = 0; /* a new session: autocommit on */
            self->failed_connection = 0;
            db_touch(self);
            return RS_OK;
        }
        used += (size_t)snprintf(tried + used, used < sizeof(tried) ? sizeof(tried) - used : 0,
                                 "%s%s", k ? "; " : "", one.msg);
        if (used >= sizeof(tried))
            used = sizeof(tried) - 1;
    }
    self->failed_connection = 1;
    self->last_errno = CR_CONNECTION_ERROR;
    return errbuf_set(err, "database: cannot connect as %s to %s on %s%s", self->user, self->name,
                      n > 1 ? "any of its hosts: " : "", tried);
}

/* Whether the server closed an idle connection (or sent on it unasked, which it
 * does only to say it killed it): its socket is readable or hung up while no
 * answer is awaited. One poll, no round trip. Over TCP a statement sent on such a
 * connection is written into the dead socket and fails reading its answer
 * (2013): in doubt, 504, where nothing was sent to any server. */
static int
db_closed_by_server(db *self)
{
    struct pollfd pfd = {.fd = (int)mysql_get_socket(self->conn), .events = POLLIN | POLLRDHUP};

    return pfd.fd >= 0 && poll(&pfd, 1, 0) > 0;
}

/* Before a statement outside a transaction: a connection the server closed is
 * replaced at once; one idle for db_idle_check seconds or more is pinged, and on
 * failure replaced (the next host), so that a connection that died while idle (a
 * proxy or server restart) never takes a statement down with it. A busy
 * connection pays one poll. */
static int
db_ready_connection(db *self, errbuf *err)
{
    struct timespec now;

    if (self->conn == NULL)
        return db_connect(self, err);
    if (self->in_transaction)
        return RS_OK;
    if (db_closed_by_server(self)) {
        log_info("event=db_reconnect host=%s reason=\"the server closed the connection\" "
                 "action=\"connecting again before the next statement\"",
                 db_host_name(self, self->current));
        db_drop(self);
        return db_connect(self, err);
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (self->idle_check > 0 && (now.tv_sec - self->last_used.tv_sec) * 1000000000L +
                                        (now.tv_nsec - self->last_used.tv_nsec) <
                                    self->idle_check * 1000000000L)
        return RS_OK;
    if (mysql_ping(self->conn) == 0) {
        self->last_used = now;
        return RS_OK;
    }
    log_info("event=db_reconnect host=%s reason=\"%s (%u)\" action=\"the connection died while "
             "idle: connecting again before the next statement\"",
             db_host_name(self, self->current), mysql_error(self->conn), mysql_errno(self->conn));
    db_drop(self);
    return db_connect(self, err);
}

/* A statement outside a transaction runs in autocommit: a session a Galera
 * transaction left with autocommit off (db_begin) has it turned on again first. */
static int
db_ready(db *self, errbuf *err)
{
    if (db_ready_connection(self, err) != RS_OK)
        return RS_ERR;
    if (self->in_transaction || !self->manual_commit)
        return RS_OK;
    if (mysql_real_query(self->conn, "SET autocommit = 1", 18) != 0)
        return db_fail(self, mysql_errno(self->conn), "autocommit", mysql_error(self->conn), err);
    self->manual_commit = 0;
    return RS_OK;
}

/* A round trip succeeded: the connection is fresh, and no failure is pending. */
static void
db_answered(db *self)
{
    db_touch(self);
    self->last_errno = 0;
    self->failed_connection = 0;
}

int
db_ping(db *self, errbuf *err)
{
    if (db_connect(self, err) != RS_OK)
        return RS_ERR;
    if (mysql_ping(self->conn) != 0)
        return db_fail(self, mysql_errno(self->conn), "ping", mysql_error(self->conn), err);
    db_answered(self);
    return RS_OK;
}

/* Whether the server is a Galera node (wsrep_on), asked once per connection:
 * 1, 0, or RS_ERR. */
static int
db_galera(db *self, errbuf *err)
{
    long long rows;

    if (self->wsrep == NULL &&
        (self->wsrep = db_stmt_new(self, "SELECT @@wsrep_on", DB_IDEMPOTENT)) == NULL)
        return errbuf_set(err, "out of memory");
    if (self->wsrep_of != self->generation || self->conn == NULL) {
        rows = db_stmt_exec(self->wsrep, err, "");
        if (rows < 0 && self->last_errno != ER_UNKNOWN_SYSTEM_VARIABLE)
            return RS_ERR;
        /* MySQL has no such variable: no Galera. */
        self->wsrep_on = rows > 0 && db_stmt_next(self->wsrep) && db_stmt_col_int(self->wsrep, 0);
        self->wsrep_of = self->generation;
    }
    return self->wsrep_on;
}

int
db_causal(db *self, int on, errbuf *err)
{
    static const char *const set[] = {"SET SESSION wsrep_sync_wait = 0",
                                      "SET SESSION wsrep_sync_wait = 1"};
    int galera = db_galera(self, err);

    if (galera <= 0)
        return galera; /* nothing to wait for, or RS_ERR */
    if (db_exec(self, set[on != 0], strlen(set[on != 0]), err) < 0)
        return RS_ERR;
    return 1;
}

int
db_durability(db *self, char *why, size_t whylen, errbuf *err)
{
    /* One statement of its own, destroyed with the connection's others. */
    db_stmt *st = db_stmt_new(self,
                              "SELECT @@innodb_flush_log_at_trx_commit, @@log_bin, "
                              "@@sync_binlog",
                              0);
    long long flush, log_bin, sync_binlog;
    int galera;

    if (st == NULL)
        return errbuf_set(err, "out of memory");
    if (db_stmt_exec(st, err, "") < 0)
        return RS_ERR;
    if (!db_stmt_next(st))
        return errbuf_set(err, "reading the durability settings: no row");
    flush = db_stmt_col_int(st, 0);
    log_bin = db_stmt_col_int(st, 1);
    sync_binlog = db_stmt_col_int(st, 2);
    why[0] = '\0';
    if (flush != 1)
        snprintf(why, whylen,
                 "innodb_flush_log_at_trx_commit = %lld: a commit is not on disk when it "
                 "returns; a power cut can lose about a second of sales answered 200",
                 flush);
    else if (log_bin && sync_binlog != 1)
        snprintf(why, whylen,
                 "log_bin is on and sync_binlog = %lld: crash recovery rolls back the "
                 "transactions the binary log lost at a power cut, sales answered 200 among them",
                 sync_binlog);
    else if (!log_bin && (galera = db_galera(self, err)) != 0) {
        if (galera < 0)
            return RS_ERR;
        /* A Galera node answers a commit once its prepare is on disk; without the
         * binary log, crash recovery rolls back a prepared transaction that no node
         * committed to disk: a power loss of the whole cluster can lose the last
         * sales answered 200 (docs/scaling.md, measured by cluster scenario p). */
        snprintf(why, whylen,
                 "a Galera node without the binary log (log_bin off): a power loss of the "
                 "whole cluster can roll back the last sales answered 200; set log_bin and "
                 "sync_binlog = 1 on every node");
    }
    return why[0] == '\0' ? 1 : 0;
}

int
db_failed_connection(const db *self)
{
    return self->failed_connection;
}

int
db_retryable(const db *self)
{
    return db_is_retryable_errno(self->last_errno);
}

/* A pause before running again what the database rolled back: a random time up
 * to 2^attempt ms, capped at 64 ms. Run again at once, a transaction that lost a
 * hot row to a writer on another Galera node meets that writer's next
 * transaction and loses again; spread out, most go through within a few
 * attempts. The random bits need not be good, only differ between threads. */
static void
db_retry_pause(int attempt)
{
    static _Thread_local unsigned seed;
    long cap_ms = 1L << (attempt < 6 ? attempt : 6);
    struct timespec pause;
    long us;

    if (seed == 0)
        seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)&seed;
    us = (long)(rand_r(&seed) % (unsigned)(cap_ms * 1000));
    pause.tv_sec = 0;
    pause.tv_nsec = us * 1000;
    nanosleep(&pause, NULL);
}

int
db_retry(db *self, int *attempts)
{
    /* Inside an open transaction the failure voided the outer one too (the server
     * rolled all of it back): a nested transaction run again alone would commit
     * on its own, and its caller carry on in autocommit. Only the outermost runs
     * again; the error stays retryable for its loop. */
    if (self->in_transaction > 0)
        return 0;
    if (!db_is_retryable_errno(self->last_errno) || *attempts >= self->retries)
        return 0;
    (*attempts)++;
    log_info("event=db_retry attempt=%d error=%u reason=\"rolled back by the database (deadlock "
             "or certification failure): run again\"",
             *attempts, self->last_errno);
    db_retry_pause(*attempts);
    return 1;
}

int
db_run(db *self, const char *sql, errbuf *err)
{
    int status;

    if (self->poisoned)
        return db_void(self, "query", err);
    if (db_ready(self, err) != RS_OK)
        return RS_ERR;
    if (mysql_real_query(self->conn, sql, strlen(sql)) != 0)
        return db_fail(self, mysql_errno(self->conn), "query", mysql_error(self->conn), err);
    do {
        MYSQL_RES *res = mysql_store_result(self->conn);
        if (res != NULL)
            mysql_free_result(res);
        else if (mysql_field_count(self->conn) != 0)
            return db_fail(self, mysql_errno(self->conn), "query", mysql_error(self->conn), err);
        status = mysql_next_result(self->conn);
        if (status > 0)
            return db_fail(self, mysql_errno(self->conn), "query", mysql_error(self->conn), err);
    } while (status == 0);
    db_answered(self);
    return RS_OK;
}

long long
db_exec(db *self, const char *sql, size_t len, errbuf *err)
{
    my_ulonglong rows;

    if (self->poisoned)
        return db_void(self, "query", err);
    if (db_ready(self, err) != RS_OK)
        return RS_ERR;
    if (mysql_real_query(self->conn, sql, len) != 0)
        return db_fail(self, mysql_errno(self->conn), "query", mysql_error(self->conn), err);
    if (mysql_field_count(self->conn) != 0) {
        mysql_free_result(mysql_store_result(self->conn));
        return errbuf_set(err, "database: db_exec's statement returned rows");
    }
    rows = mysql_affected_rows(self->conn);
    db_answered(self);
    return rows == (my_ulonglong)-1 ? 0 : (long long)rows;
}

size_t
db_hex(char *out, const void *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    size_t n = 0;

    out[n++] = 'X', out[n++] = '\'';
    for (size_t i = 0; i < len; i++) {
        out[n++] = digits[b[i] >> 4];
        out[n++] = digits[b[i] & 15];
    }
    out[n++] = '\'';
    out[n] = '\0';
    return n;
}

void
db_text_add(db_text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap > 0 ? t->cap : 1024;
        char *grown;

        while (t->len + n + 1 > cap)
            cap *= 2;
        grown = realloc(t->buf, cap);
        if (grown == NULL) {
            t->failed = 1;
            return;
        }
        t->buf = grown, t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

void
db_text_str(db_text *t, const char *s)
{
    db_text_add(t, s, strlen(s));
}

void
db_text_hex(db_text *t, const void *bytes, size_t n)
{
    char hex[DB_HEX_SIZE(256)];

    if (n > 256) { /* a stored answer: on the heap */
        char *big = malloc(DB_HEX_SIZE(n));

        if (big == NULL) {
            t->failed = 1;
            return;
        }
        db_text_add(t, big, db_hex(big, bytes, n));
        free(big);
        return;
    }
    db_text_add(t, hex, db_hex(hex, bytes, n));
}

void
db_text_int(db_text *t, long long v)
{
    char num[32];

    db_text_add(t, num, (size_t)snprintf(num, sizeof(num), "%lld", v));
}

long long
db_text_run(db *self, db_text *t, errbuf *err)
{
    long long rows;

    if (t->failed)
        rows = errbuf_set(err, "out of memory");
    else
        rows = db_exec(self, t->buf, t->len, err);
    t->len = 0, t->failed = 0;
    return rows;
}

void
db_text_free(db_text *t)
{
    free(t->buf);
    t->buf = NULL, t->len = t->cap = 0, t->failed = 0;
}

int
db_duplicate(const db *self)
{
    return self->last_errno == ER_DUP_ENTRY;
}

/* The savepoint a Galera transaction begins with (db_begin_sql). */
#define DB_GUARD "rs_guard"

/* The savepoint of nesting depth (1: the first inside the transaction). */
static void
db_savepoint_sql(char *buf, size_t cap, const char *verb, int depth)
{
    snprintf(buf, cap, "%s rs_nested_%d", verb, depth);
}

/* Sends a savepoint statement. Its failure voids the transaction: the server
 * drops every savepoint when it rolls the whole transaction back (after a
 * deadlock, ROLLBACK TO SAVEPOINT answers 1305, "does not exist"), so the work
 * before it is gone too. Counted as the deadlock that did that (retryable), unless
 * the connection failed. */
static int
db_savepoint_run(db *self, const char *verb, int depth, errbuf *err)
{
    char sql[64];

    if (self->conn == NULL) { /* cannot be: a lost connection voided the transaction */
        db_poison(self, CR_SERVER_LOST);
        return db_void(self, verb, err);
    }
    db_savepoint_sql(sql, sizeof(sql), verb, depth);
    if (mysql_real_query(self->conn, sql, strlen(sql)) == 0)
        return RS_OK;
    db_fail(self, mysql_errno(self->conn), verb, mysql_error(self->conn), err);
    if (!self->failed_connection) {
        self->last_errno = ER_LOCK_DEADLOCK;
        db_poison(self, ER_LOCK_DEADLOCK);
    }
    return RS_ERR;
}

/* Ends the outermost transaction, void or not: rolled back (a broken connection
 * rolls back too), and no longer void. */
static void
db_end(db *self)
{
    if (self->conn != NULL && self->in_transaction && mysql_rollback(self->conn) != 0)
        db_disconnect(self);
    self->in_transaction = 0;
    self->poisoned = 0;
}

/* Opens the outermost transaction. On a Galera node it is guarded: the session's
 * autocommit is turned off (and stays off while transactions follow one another)
 * and the transaction starts with a savepoint that db_commit releases before it
 * commits. MariaDB 10.11 may roll a transaction back for a conflict with a
 * replicated one (a brute-force abort) between two of its statements without
 * telling the client: the statements after it then ran in autocommit, each
 * committed alone (the cluster bed's holds on two writers: the product's held
 * units rolled back, the hold and its key's 201 answer committed). With autocommit
 * off they run in a new transaction instead, which has no savepoint: the release
 * fails, and that transaction is rolled back and run again from its start. */
static const char *
db_begin_sql(db *self, errbuf *err)
{
    int galera = db_galera(self, err);

    if (galera <= 0)
        return galera < 0 ? NULL : "START TRANSACTION";
    if (!self->manual_commit) {
        if (mysql_real_query(self->conn, "SET autocommit = 0", 18) != 0) {
            db_fail(self, mysql_errno(self->conn), "autocommit", mysql_error(self->conn), err);
            return NULL;
        }
        self->manual_commit = 1;
    }
    /* With autocommit off, the savepoint begins the transaction. */
    return "SAVEPOINT " DB_GUARD;
}

int
db_begin(db *self, errbuf *err)
{
    const char *sql;

    if (self->in_transaction > 0) {
        /* START TRANSACTION would commit the open one: a nested transaction
         * (order.c's, inside a keyed checkout's) is a savepoint of it. */
        if (self->poisoned)
            return db_void(self, "savepoint", err);
        if (db_savepoint_run(self, "SAVEPOINT", self->in_transaction, err) != RS_OK)
            return RS_ERR;
        self->in_transaction++;
        return RS_OK;
    }
    self->in_doubt = 0;
    /* A connection that died while idle fails the first statement sent on it
     * (db_ready's ping catches most of them); nothing was done yet, so beginning
     * again on a new connection is safe. */
    for (int attempt = 0;; attempt++) {
        if (db_ready_connection(self, err) != RS_OK)
            return RS_ERR;
        if ((sql = db_begin_sql(self, err)) != NULL) {
            if (mysql_real_query(self->conn, sql, strlen(sql)) == 0)
                break;
            db_fail(self, mysql_errno(self->conn), "begin", mysql_error(self->conn), err);
        }
        if (attempt > 0 || self->conn != NULL)
            return RS_ERR;
    }
    db_answered(self);
    self->in_transaction = 1;
    return RS_OK;
}

int
db_commit(db *self, errbuf *err)
{
    if (self->in_transaction > 1) {
        /* A nested one: its work stays in the open transaction, to be committed
         * (or rolled back) with it. Its level ends here whatever happens. */
        self->in_transaction--;
        if (self->poisoned)
            return db_void(self, "release savepoint", err);
        return db_savepoint_run(self, "RELEASE SAVEPOINT", self->in_transaction, err);
    }
    if (self->poisoned) {
        /* Never a commit of what is left (nothing, or statements the server ran
         * after its rollback): the transaction ends rolled back. */
        db_void(self, "commit", err);
        db_end(self);
        return RS_ERR;
    }
    if (self->conn == NULL) {
        self->in_transaction = 0;
        return errbuf_set(err, "database: commit without a connection");
    }
    if (self->manual_commit && mysql_real_query(self->conn, "RELEASE SAVEPOINT " DB_GUARD,
                                                strlen("RELEASE SAVEPOINT " DB_GUARD)) != 0) {
        /* The transaction begun is gone (db_begin_sql): what ran since is rolled
         * back, never committed, and the whole runs again (a deadlock's retry). */
        unsigned code = mysql_errno(self->conn);

        db_fail(self, code, "commit", mysql_error(self->conn), err);
        if (!self->failed_connection) {
            log_warn("event=db_transaction_lost host=%s reason=\"%s (%u)\" action=\"rolled back "
                     "and run again: the cluster aborted it without telling the client\"",
                     db_host_name(self, self->current), err->msg, code);
            self->last_errno = ER_LOCK_DEADLOCK;
            db_poison(self, ER_LOCK_DEADLOCK);
        }
        db_end(self);
        return RS_ERR;
    }
    self->in_transaction = 0;
    if (mysql_commit(self->conn) != 0) {
        unsigned code = mysql_errno(self->conn);
        self->in_doubt = db_is_in_doubt_errno(code);
        return db_fail(self, code, "commit", mysql_error(self->conn), err);
    }
    db_answered(self);
    return RS_OK;
}

int
db_in_doubt(db *self)
{
    int doubt = self->in_doubt;

    self->in_doubt = 0;
    return doubt;
}

void
db_rollback(db *self)
{
    errbuf ignored = {{0}};

    if (self->in_transaction > 1) {
        /* A nested one undoes its own work only. In a void transaction there is
         * nothing of its own left to undo: the outermost rollback ends it. A
         * savepoint the server dropped voids the transaction (db_savepoint_run). */
        self->in_transaction--;
        if (!self->poisoned)
            db_savepoint_run(self, "ROLLBACK TO SAVEPOINT", self->in_transaction, &ignored);
        return;
    }
    db_end(self);
}

db_stmt *
db_stmt_new(db *self, const char *sql, int flags)
{
    db_stmt *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    st->sql = strdup(sql);
    if (st->sql == NULL) {
        free(st);
        return NULL;
    }
    st->owner = self;
    st->flags = flags;
    st->next = self->stmts;
    self->stmts = st;
    return st;
}

int
db_stmt_table(db *self, const struct db_stmt_def *defs, size_t n, db_stmt **out, errbuf *err)
{
    for (size_t i = 0; i < n; i++)
        if ((out[i] = db_stmt_new(self, defs[i].sql, defs[i].flags)) == NULL)
            return errbuf_set(err, "out of memory");
    return RS_OK;
}

static int
db_stmt_prepare(db_stmt *st, errbuf *err)
{
    db *self = st->owner;

    if (db_ready(self, err) != RS_OK)
        return RS_ERR;
    if (st->handle != NULL && st->generation == self->generation)
        return RS_OK;
    db_stmt_release(st);
    st->handle = mysql_stmt_init(self->conn);
    if (st->handle == NULL)
        return db_fail(self, mysql_errno(self->conn), "statement", mysql_error(self->conn), err);
    if (mysql_stmt_prepare(st->handle, st->sql, strlen(st->sql)) != 0) {
        unsigned code = mysql_stmt_errno(st->handle);
        char detail[300];
        snprintf(detail, sizeof(detail), "%s in \"%.80s\"", mysql_stmt_error(st->handle), st->sql);
        mysql_stmt_close(st->handle);
        st->handle = NULL;
        return db_fail(self, code, "prepare", detail, err);
    }
    st->generation = self->generation;
    return RS_OK;
}

/* Binds every result column as a string buffer sized by the longest value. */
static int
db_stmt_bind_result(db_stmt *st, errbuf *err)
{
    MYSQL_RES *meta = mysql_stmt_result_metadata(st->handle);
    MYSQL_FIELD *fields;
    my_bool on = 1;

    if (meta == NULL)
        return RS_OK; /* no result set: INSERT, UPDATE, DELETE */
    mysql_stmt_attr_set(st->handle, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
    if (mysql_stmt_store_result(st->handle) != 0) {
        mysql_free_result(meta);
        return db_fail(st->owner, mysql_stmt_errno(st->handle), "fetch",
                       mysql_stmt_error(st->handle), err);
    }
    st->has_result = 1;
    st->ncols = mysql_num_fields(meta);
    fields = mysql_fetch_fields(meta);
    st->cols = calloc(st->ncols, sizeof(*st->cols));
    st->bufs = calloc(st->ncols, sizeof(*st->bufs));
    st->lens = calloc(st->ncols, sizeof(*st->lens));
    st->nulls = calloc(st->ncols, sizeof(*st->nulls));
    if (!st->cols || !st->bufs || !st->lens || !st->nulls) {
        mysql_free_result(meta);
        return errbuf_set(err, "database: out of memory");
    }
    for (unsigned i = 0; i < st->ncols; i++) {
        /* Numbers are converted to text by the client library; 64 holds any. */
        unsigned long size = fields[i].max_length > 64 ? fields[i].max_length : 64;
        st->bufs[i] = malloc(size + 1);
        if (st->bufs[i] == NULL) {
            mysql_free_result(meta);
            return errbuf_set(err, "database: out of memory");
        }
        st->cols[i].buffer_type = MYSQL_TYPE_STRING;
        st->cols[i].buffer = st->bufs[i];
        st->cols[i].buffer_length = size;
        st->cols[i].length = &st->lens[i];
        st->cols[i].is_null = &st->nulls[i];
    }
    mysql_free_result(meta);
    if (mysql_stmt_bind_result(st->handle, st->cols) != 0)
        return db_fail(st->owner, mysql_stmt_errno(st->handle), "bind result",
                       mysql_stmt_error(st->handle), err);
    return RS_OK;
}

/* Binds the n params of a prepared st and executes it once (one round trip):
 * rows changed (or found, for a SELECT), or RS_ERR. */
static long long
db_stmt_run(db_stmt *st, MYSQL_BIND *params, size_t n, errbuf *err)
{
    if (mysql_stmt_param_count(st->handle) != n)
        return errbuf_set(err, "database: statement wants %lu parameters, got %zu",
                          mysql_stmt_param_count(st->handle), n);
    if (n > 0 && mysql_stmt_bind_param(st->handle, params) != 0)
        return db_fail(st->owner, mysql_stmt_errno(st->handle), "bind",
                       mysql_stmt_error(st->handle), err);
    if (mysql_stmt_execute(st->handle) != 0) {
        unsigned code = mysql_stmt_errno(st->handle);
        char detail[300];
        snprintf(detail, sizeof(detail), "%s", mysql_stmt_error(st->handle));
        if (code == ER_NEED_REPREPARE)
            st->generation = 0; /* schema changed under the statement: prepare again */
        return db_fail(st->owner, code, "execute", detail, err);
    }
    if (db_stmt_bind_result(st, err) != RS_OK)
        return RS_ERR;
    db_answered(st->owner);
    if (st->has_result)
        return (long long)mysql_stmt_num_rows(st->handle);
    return (long long)mysql_stmt_affected_rows(st->handle);
}

static long long
db_stmt_exec_once(db_stmt *st, errbuf *err, const char *types, va_list ap)
{
    MYSQL_BIND params[DB_MAX_PARAMS];
    long long ints[DB_MAX_PARAMS];
    unsigned long lens[DB_MAX_PARAMS];
    my_bool nulls[DB_MAX_PARAMS];
    size_t n = strlen(types);

    st->owner->last_errno = 0; /* a failure below that is not the server's is not retried */
    if (n > DB_MAX_PARAMS)
        return errbuf_set(err, "database: %zu parameters, at most %d", n, DB_MAX_PARAMS);
    if (db_stmt_prepare(st, err) != RS_OK)
        return RS_ERR;
    db_stmt_clear_result(st);
    memset(params, 0, sizeof(params));
    for (size_t i = 0; i < n; i++) {
        nulls[i] = 0;
        params[i].is_null = &nulls[i];
        params[i].length = &lens[i];
        switch (types[i]) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            params[i].buffer_type = MYSQL_TYPE_STRING;
            params[i].buffer = (void *)s;
            lens[i] = s ? strlen(s) : 0;
            nulls[i] = s == NULL;
            break;
        }
        case 'b': {
            const void *b = va_arg(ap, const void *);
            lens[i] = (unsigned long)va_arg(ap, size_t);
            params[i].buffer_type = MYSQL_TYPE_BLOB;
            params[i].buffer = (void *)b;
            nulls[i] = b == NULL;
            break;
        }
        case 'i':
            ints[i] = va_arg(ap, long long);
            params[i].buffer_type = MYSQL_TYPE_LONGLONG;
            params[i].buffer = &ints[i];
            break;
        default:
            return errbuf_set(err, "database: bad parameter type '%c'", types[i]);
        }
    }
    return db_stmt_run(st, params, n, err);
}

long long
db_stmt_exec(db_stmt *st, errbuf *err, const char *types, ...)
{
    db *self = st->owner;
    int in_transaction = self->in_transaction, retries = 0;
    size_t resends = 0;
    long long rows;
    va_list ap;

    self->in_doubt = 0; /* of this statement only: never a stale doubt */
    if (self->poisoned)
        return db_void(self, "execute", err);
    for (;;) {
        va_start(ap, types);
        rows = db_stmt_exec_once(st, err, types, ap);
        va_end(ap);
        /* Inside a transaction nothing is sent again: the caller runs the whole
         * transaction again (db_retry) or gives up. */
        if (rows >= 0 || in_transaction)
            return rows;
        /* A connection that broke under the statement: sending again on a new
         * connection (the next host) is safe when the statement never reached the
         * server (gone before sending), was refused unrun (a node outside the
         * primary component), or does no harm twice. Not after a failed connect:
         * every host was tried already. The idle check (db_ready) makes the first
         * case rare. */
        if (self->conn == NULL && self->last_errno != CR_CONNECTION_ERROR &&
            resends < hostlist_count(self->hosts) &&
            (st->flags & DB_IDEMPOTENT || self->last_errno == CR_SERVER_GONE_ERROR ||
             self->last_errno == ER_UNKNOWN_COM_ERROR)) {
            resends++;
            continue;
        }
        /* Rolled back by the server (deadlock, certification failure): the
         * autocommit statement did nothing, so it runs again. */
        if (!db_retry(self, &retries)) {
            /* Its own commit: a write whose answer was lost may have been made. */
            self->in_doubt = !(st->flags & DB_IDEMPOTENT) && db_is_in_doubt_errno(self->last_errno);
            return rows;
        }
    }
}

/* -- bulk execution ------------------------------------------------------------------- */

/* db_stmt_bulk's columns: each parameter's array of values (and lengths). */
struct db_bulk_col {
    char type;
    const void *values;        /* const char *const *, const void *const *, const long long * */
    const unsigned long *lens; /* 'b' */
};

/* Whether the server takes a statement's rows in one COM_STMT_BULK_EXECUTE
 * (MariaDB 10.2 and later; not MySQL). */
static int
db_bulk_supported(db_stmt *st)
{
#ifdef MARIADB_PACKAGE_VERSION_ID
    unsigned long caps = 0, extended = 0;

    /* MARIADB_STMT_BULK_SUPPORTED's test, through the library's interface. */
    if (st->owner->conn == NULL ||
        mariadb_get_infov(st->owner->conn, MARIADB_CONNECTION_SERVER_CAPABILITIES, &caps) != 0 ||
        mariadb_get_infov(st->owner->conn, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES,
                          &extended) != 0)
        return 0;
    return !(caps & CLIENT_MYSQL) && (extended & (MARIADB_CLIENT_STMT_BULK_OPERATIONS >> 32)) != 0;
#else
    (void)st;
    return 0;
#endif
}

/* All the rows at once: each bind's buffer the column's array (the client
 * library steps through it: fixed-size values in a row, bytes by pointer), its
 * indicators saying which are NULL. */
static long long
db_bulk_all(db_stmt *st, const struct db_bulk_col *cols, size_t n, size_t rows, errbuf *err)
{
#ifdef MARIADB_PACKAGE_VERSION_ID
    MYSQL_BIND params[DB_MAX_PARAMS];
    char *ind = malloc(n * rows);
    unsigned int size = (unsigned int)rows, none = 0;
    long long changed;

    if (ind == NULL)
        return errbuf_set(err, "database: out of memory");
    memset(params, 0, sizeof(params));
    for (size_t i = 0; i < n; i++) {
        char *col_ind = ind + i * rows;

        params[i].buffer = (void *)cols[i].values;
        params[i].u.indicator = col_ind;
        for (size_t r = 0; r < rows; r++) {
            const void *const *ptrs = cols[i].values;

            col_ind[r] = STMT_INDICATOR_NONE;
            if (cols[i].type != 'i' && ptrs[r] == NULL)
                col_ind[r] = STMT_INDICATOR_NULL;
            else if (cols[i].type == 's')
                col_ind[r] = STMT_INDICATOR_NTS;
        }
        if (cols[i].type == 'i')
            params[i].buffer_type = MYSQL_TYPE_LONGLONG;
        else if (cols[i].type == 's')
            params[i].buffer_type = MYSQL_TYPE_STRING;
        else {
            params[i].buffer_type = MYSQL_TYPE_BLOB;
            params[i].length = (unsigned long *)cols[i].lens;
        }
    }
    mysql_stmt_attr_set(st->handle, STMT_ATTR_ARRAY_SIZE, &size);
    changed = db_stmt_run(st, params, n, err);
    mysql_stmt_attr_set(st->handle, STMT_ATTR_ARRAY_SIZE, &none);
    free(ind);
    return changed;
#else
    (void)st, (void)cols, (void)n, (void)rows;
    return errbuf_set(err, "database: bulk execution needs MariaDB's client library");
#endif
}

/* One row: the statement executed as any other. */
static long long
db_bulk_one(db_stmt *st, const struct db_bulk_col *cols, size_t n, errbuf *err)
{
    MYSQL_BIND params[DB_MAX_PARAMS];
    unsigned long lens[DB_MAX_PARAMS];
    my_bool nulls[DB_MAX_PARAMS];

    memset(params, 0, sizeof(params));
    for (size_t i = 0; i < n; i++) {
        params[i].is_null = &nulls[i];
        params[i].length = &lens[i];
        nulls[i] = 0;
        if (cols[i].type == 'i') {
            params[i].buffer_type = MYSQL_TYPE_LONGLONG;
            params[i].buffer = (void *)cols[i].values;
            continue;
        }
        params[i].buffer = (void *)((const void *const *)cols[i].values)[0];
        nulls[i] = params[i].buffer == NULL;
        if (cols[i].type == 's') {
            params[i].buffer_type = MYSQL_TYPE_STRING;
            lens[i] = nulls[i] ? 0 : strlen(params[i].buffer);
        } else {
            params[i].buffer_type = MYSQL_TYPE_BLOB;
            lens[i] = cols[i].lens[0];
        }
    }
    return db_stmt_run(st, params, n, err);
}

/* All the rows in the text of one multi-row INSERT: the statement's VALUES
 * tuple written once per row, each ? replaced by its row's value as a literal
 * (numbers printed, bytes and text as hex literals: never a string that could
 * end early). Run as any db_exec text, in one round trip. */
static long long
db_bulk_text(db_stmt *st, const struct db_bulk_col *cols, size_t n, size_t rows, errbuf *err)
{
    const char *values = strstr(st->sql, " VALUES (");
    db_text t = {0};
    long long changed;

    if (values == NULL)
        return errbuf_set(err, "database: a bulk statement must end in VALUES (…)");
    values += strlen(" VALUES ");
    db_text_add(&t, st->sql, (size_t)(values - st->sql));
    for (size_t r = 0; r < rows; r++) {
        size_t i = 0;

        if (r > 0)
            db_text_str(&t, ",");
        for (const char *c = values; *c != '\0'; c++) {
            const void *v;

            if (*c != '?' || i >= n) {
                db_text_add(&t, c, 1);
                continue;
            }
            if (cols[i].type == 'i') {
                db_text_int(&t, ((const long long *)cols[i].values)[r]);
                i++;
                continue;
            }
            v = ((const void *const *)cols[i].values)[r];
            if (v == NULL)
                db_text_str(&t, "NULL");
            else
                db_text_hex(&t, v, cols[i].type == 's' ? strlen(v) : cols[i].lens[r]);
            i++;
        }
    }
    changed = db_text_run(st->owner, &t, err);
    db_text_free(&t);
    return changed;
}

long long
db_stmt_bulk(db_stmt *st, size_t rows, errbuf *err, const char *types, ...)
{
    struct db_bulk_col cols[DB_MAX_PARAMS];
    size_t n = strlen(types);
    long long changed;
    int galera;
    va_list ap;

    st->owner->in_doubt = 0;
    st->owner->last_errno = 0;
    if (st->owner->poisoned)
        return db_void(st->owner, "execute", err);
    if (n > DB_MAX_PARAMS)
        return errbuf_set(err, "database: %zu parameters, at most %d", n, DB_MAX_PARAMS);
    va_start(ap, types);
    for (size_t i = 0; i < n; i++) {
        cols[i].type = types[i];
        cols[i].values = va_arg(ap, const void *);
        cols[i].lens = types[i] == 'b' ? va_arg(ap, const unsigned long *) : NULL;
    }
    va_end(ap);
    for (size_t i = 0; i < n; i++)
        if (strchr("sbi", types[i]) == NULL)
            return errbuf_set(err, "database: bad parameter type '%c'", types[i]);
    if (rows == 0)
        return 0;
    if (rows == 1) {
        if (db_stmt_prepare(st, err) != RS_OK)
            return RS_ERR;
        db_stmt_clear_result(st);
        return db_bulk_one(st, cols, n, err);
    }
    /* Never bulk execution on a Galera node: a transaction that a conflict
     * aborts while it runs is rolled back, and MariaDB 10.11 tells the client
     * nothing; the rows after it, and the COMMIT, then run outside it (the cluster
     * bed's two writers: 1,000 keyed checkouts answered 200, 993 sold). The
     * multi-row text is one statement, told of the abort (1213). */
    if ((galera = db_galera(st->owner, err)) < 0)
        return RS_ERR;
    if (galera || !db_bulk_supported(st))
        return db_bulk_text(st, cols, n, rows, err);
    if (db_stmt_prepare(st, err) != RS_OK)
        return RS_ERR;
    db_stmt_clear_result(st);
    changed = db_bulk_all(st, cols, n, rows, err);
    /* A server whose binary log is statement-based refuses bulk execution before
     * it runs anything: the text then. */
    if (changed < 0 && st->owner->last_errno == ER_BINLOG_NON_SUPPORTED_BULK)
        changed = db_bulk_text(st, cols, n, rows, err);
    return changed;
}

int
db_stmt_next(db_stmt *st)
{
    int rc;

    if (!st->has_result)
        return 0;
    rc = mysql_stmt_fetch(st->handle);
    /* Truncation cannot happen: buffers are sized by the longest value. */
    return rc == 0 || rc == MYSQL_DATA_TRUNCATED;
}

const char *
db_stmt_col(db_stmt *st, int col, size_t *len)
{
    if (col < 0 || (unsigned)col >= st->ncols || st->nulls[col]) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    st->bufs[col][st->lens[col]] = '\0';
    if (len != NULL)
        *len = st->lens[col];
    return st->bufs[col];
}

long long
db_stmt_col_int(db_stmt *st, int col)
{
    const char *s = db_stmt_col(st, col, NULL);

    return s ? strtoll(s, NULL, 10) : 0;
}

int
db_stmt_col_is_null(db_stmt *st, int col)
{
    return col < 0 || (unsigned)col >= st->ncols || st->nulls[col];
}

unsigned long long
db_stmt_insert_id(db_stmt *st)
{
    return st->handle ? (unsigned long long)mysql_stmt_insert_id(st->handle) : 0;
}
