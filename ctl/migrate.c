/* migrate: versioned schema migrations (see migrate.h). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"

#define MIGRATE_MAX_FILES 1000
#define MIGRATE_MAX_SIZE  (4 * 1024 * 1024)
/* The lock row: held for this long past its last renewal (after each file), so
 * that a run that died leaves it to the next one after that time at most; and the
 * time a run waits for another one before it gives up. */
#define MIGRATE_LOCK_TTL     600
#define MIGRATE_LOCK_WAIT    900
#define MIGRATE_LOCK_POLL_MS 500

/* The lock of a run: a row of schema_lock rather than GET_LOCK, which a Galera
 * node keeps to itself. Taking it is one autocommit UPDATE, which certification
 * makes cluster-wide: of two nodes that take it at once, one fails (a deadlock,
 * run again by db_stmt_exec) and then finds it held. */
struct migrate_lock {
    db_stmt *take, *renew, *release;
    char holder[300];
};

static int
migrate_lock_init(db *conn, struct migrate_lock *lk, errbuf *err)
{
    char host[256];

    if (db_run(conn,
               "CREATE TABLE IF NOT EXISTS schema_lock ("
               " name VARCHAR(64) NOT NULL PRIMARY KEY,"
               " holder VARCHAR(300) NULL,"
               " expires_at DATETIME(6) NULL"
               ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
               err) != RS_OK ||
        db_run(conn, "INSERT IGNORE INTO schema_lock (name) VALUES ('migrate')", err) != RS_OK)
        return errbuf_prefix(err, "creating schema_lock");
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    snprintf(lk->holder, sizeof(lk->holder), "%s pid %ld at %ld", host, (long)getpid(),
             (long)time(NULL));
    lk->take = db_stmt_new(conn,
                           "UPDATE schema_lock SET holder = ?,"
                           " expires_at = NOW(6) + INTERVAL ? SECOND"
                           " WHERE name = 'migrate' AND (holder IS NULL OR expires_at < NOW(6))",
                           0);
    lk->renew = db_stmt_new(conn,
                            "UPDATE schema_lock SET expires_at = NOW(6) + INTERVAL ? SECOND"
                            " WHERE name = 'migrate' AND holder = ?",
                            0);
    lk->release = db_stmt_new(conn,
                              "UPDATE schema_lock SET holder = NULL, expires_at = NULL"
                              " WHERE name = 'migrate' AND holder = ?",
                              DB_IDEMPOTENT);
    if (!lk->take || !lk->renew || !lk->release)
        return errbuf_set(err, "out of memory");
    return RS_OK;
}

/* Takes the lock, waiting for another run up to MIGRATE_LOCK_WAIT seconds (and
 * saying so once on out). */
static int
migrate_lock_take(db *conn, struct migrate_lock *lk, FILE *out, errbuf *err)
{
    db_stmt *who = db_stmt_new(conn,
                               "SELECT holder, TIMESTAMPDIFF(SECOND, NOW(6), expires_at)"
                               " FROM schema_lock WHERE name = 'migrate'",
                               DB_IDEMPOTENT);
    time_t deadline = time(NULL) + MIGRATE_LOCK_WAIT;
    int told = 0;

    if (who == NULL)
        return errbuf_set(err, "out of memory");
    for (;;) {
        struct timespec pause = {0, MIGRATE_LOCK_POLL_MS * 1000000L};
        long long rows = db_stmt_exec(lk->take, err, "si", lk->holder, (long long)MIGRATE_LOCK_TTL);
        char holder[300] = "";
        long long left = 0;

        if (rows < 0)
            return errbuf_prefix(err, "taking the migration lock");
        if (rows == 1)
            return RS_OK;
        if (db_stmt_exec(who, err, "") < 0)
            return errbuf_prefix(err, "reading the migration lock");
        if (db_stmt_next(who)) {
            const char *h = db_stmt_col(who, 0, NULL);
            snprintf(holder, sizeof(holder), "%s", h ? h : "nobody");
            left = db_stmt_col_int(who, 1);
        }
        if (time(NULL) >= deadline)
            return errbuf_set(err,
                              "another migration (%s) has held the lock in schema_lock for more "
                              "than %d s; it expires in %lld s unless renewed",
                              holder, MIGRATE_LOCK_WAIT, left);
        if (!told && out != NULL) {
            fprintf(out,
                    "waiting for another migration (%s) to finish (its lock expires in %lld s)\n",
                    holder, left);
            fflush(out);
            told = 1;
        }
        nanosleep(&pause, NULL);
    }
}

static int
migrate_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The version of a migration file name: its leading digits, or -1 when the name is
 * not NNN_something.sql. */
static long
migrate_version(const char *name)
{
    char *end;
    size_t len = strlen(name);
    long v;

    if (len < 5 || strcmp(name + len - 4, ".sql") != 0 || name[0] < '0' || name[0] > '9')
        return -1;
    v = strtol(name, &end, 10);
    return *end == '_' ? v : -1;
}

static char *
migrate_read(const char *path, errbuf *err)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    long size;

    if (f == NULL) {
        errbuf_set(err, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        errbuf_set(err, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    if (size > MIGRATE_MAX_SIZE) {
        errbuf_set(err, "%s: larger than %d bytes", path, MIGRATE_MAX_SIZE);
        goto done;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        errbuf_set(err, "out of memory reading %s", path);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        errbuf_set(err, "cannot read %s", path);
        free(buf);
        buf = NULL;
        goto done;
    }
    buf[size] = '\0';
done:
    fclose(f);
    return buf;
}

static int
migrate_list(const char *dir, char ***names_out, size_t *count_out, errbuf *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;

    if (d == NULL)
        return errbuf_set(err, "cannot open migrations folder %s: %s", dir, strerror(errno));
    names = calloc(MIGRATE_MAX_FILES, sizeof(*names));
    if (names == NULL) {
        closedir(d);
        return errbuf_set(err, "out of memory");
    }
    while ((e = readdir(d)) != NULL) {
        if (migrate_version(e->d_name) < 0)
            continue;
        if (n == MIGRATE_MAX_FILES || (names[n] = strdup(e->d_name)) == NULL) {
            closedir(d);
            for (size_t i = 0; i < n; i++)
                free(names[i]);
            free(names);
            return errbuf_set(err, "%s: too many migrations or out of memory", dir);
        }
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), migrate_cmp);
    *names_out = names;
    *count_out = n;
    return RS_OK;
}

int
migrate_apply(db *conn, const char *dir, FILE *out, errbuf *err)
{
    char **names = NULL;
    size_t count = 0;
    int applied = 0, rc = RS_ERR, locked = 0;
    struct migrate_lock lk;
    db_stmt *seen, *record;
    char path[4096];

    if (db_run(conn,
               "CREATE TABLE IF NOT EXISTS schema_migration ("
               " version INT NOT NULL PRIMARY KEY,"
               " name VARCHAR(255) NOT NULL,"
               " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
               ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
               err) != RS_OK)
        return errbuf_prefix(err, "creating schema_migration");
    if (migrate_lock_init(conn, &lk, err) != RS_OK)
        return RS_ERR;
    seen = db_stmt_new(conn, "SELECT version FROM schema_migration WHERE version = ?", 0);
    record = db_stmt_new(conn, "INSERT INTO schema_migration (version, name) VALUES (?, ?)", 0);
    if (!seen || !record)
        return errbuf_set(err, "out of memory");
    if (migrate_lock_take(conn, &lk, out, err) != RS_OK)
        return RS_ERR;
    locked = 1;
    if (migrate_list(dir, &names, &count, err) != RS_OK)
        goto done;
    for (size_t i = 0; i < count; i++) {
        long version = migrate_version(names[i]);
        char *sql;
        long long found;

        found = db_stmt_exec(seen, err, "i", (long long)version);
        if (found < 0)
            goto done;
        if (found > 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        sql = migrate_read(path, err);
        if (sql == NULL)
            goto done;
        /* MySQL commits DDL implicitly, so a migration is written to be re-runnable
         * (IF NOT EXISTS, INSERT IGNORE): a crash between it and its record below
         * only runs it again. */
        if (db_run(conn, sql, err) != RS_OK) {
            free(sql);
            errbuf_prefix(err, "applying %s", path);
            goto done;
        }
        free(sql);
        if (db_stmt_exec(record, err, "is", (long long)version, names[i]) < 0)
            goto done;
        /* Renewed after each file; a run that finds it taken over (it outlived the
         * lock's time) stops rather than race the new holder. */
        found = db_stmt_exec(lk.renew, err, "is", (long long)MIGRATE_LOCK_TTL, lk.holder);
        if (found < 0)
            goto done;
        if (found == 0) {
            errbuf_set(err,
                       "the migration lock expired during %s and was taken over; "
                       "the other run goes on",
                       names[i]);
            locked = 0;
            goto done;
        }
        if (out != NULL)
            fprintf(out, "applied %s\n", names[i]);
        applied++;
    }
    rc = applied;
done:
    if (locked) {
        errbuf ignored;
        db_stmt_exec(lk.release, &ignored, "s", lk.holder);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}
