/* migrate: versioned schema migrations (see migrate.h). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

#define MIGRATE_MAX_FILES 1000
#define MIGRATE_MAX_SIZE  (4 * 1024 * 1024)

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
    db_stmt *lock, *unlock, *seen, *record;
    char path[4096];

    if (db_run(conn,
               "CREATE TABLE IF NOT EXISTS schema_migration ("
               " version INT NOT NULL PRIMARY KEY,"
               " name VARCHAR(255) NOT NULL,"
               " applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
               ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
               err) != RS_OK)
        return errbuf_prefix(err, "creating schema_migration");
    lock = db_stmt_new(conn, "SELECT GET_LOCK('restock_migrate', 60)", 0);
    unlock = db_stmt_new(conn, "SELECT RELEASE_LOCK('restock_migrate')", 0);
    seen = db_stmt_new(conn, "SELECT version FROM schema_migration WHERE version = ?", 0);
    record = db_stmt_new(conn, "INSERT INTO schema_migration (version, name) VALUES (?, ?)", 0);
    if (!lock || !unlock || !seen || !record)
        return errbuf_set(err, "out of memory");
    if (db_stmt_exec(lock, err, "") < 0)
        return RS_ERR;
    if (!db_stmt_next(lock) || db_stmt_col_int(lock, 0) != 1)
        return errbuf_set(err, "another migration holds the lock restock_migrate for 60 s");
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
        if (out != NULL)
            fprintf(out, "applied %s\n", names[i]);
        applied++;
    }
    rc = applied;
done:
    if (locked) {
        errbuf ignored;
        db_stmt_exec(unlock, &ignored, "");
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}
