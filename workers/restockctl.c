/* restockctl: the operator's command line. It reads the configuration, the spool
 * and the database directly, so that it works while the worker is stopped. Exit
 * status 0 on success; otherwise a one-line reason on stderr. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "db.h"
#include "errbuf.h"
#include "migrate.h"

struct ctl_command {
    const char *words; /* the command as typed, e.g. "db migrate" */
    const char *usage; /* its arguments */
    const char *doc;
    int (*run)(conf *cf, int argc, char **argv, errbuf *err);
};

static int
ctl_config_defaults(conf *cf, int argc, char **argv, errbuf *err)
{
    conf_write_defaults(stdout);
    return RS_OK;
}

static int
ctl_config_show(conf *cf, int argc, char **argv, errbuf *err)
{
    printf("# configuration file: %s\n", conf_path(cf) ? conf_path(cf) : "(none: defaults)");
    conf_write_effective(cf, stdout);
    return RS_OK;
}

static int
ctl_db_migrate(conf *cf, int argc, char **argv, errbuf *err)
{
    const char *dir = RESTOCK_SQLDIR;
    db *conn;
    int applied;

    if (argc == 2 && strcmp(argv[0], "--dir") == 0)
        dir = argv[1];
    else if (argc != 0)
        return errbuf_set(err, "usage: restockctl db migrate [--dir FOLDER]");
    conn = db_new(cf, DB_MULTI_STATEMENTS);
    if (conn == NULL)
        return errbuf_set(err, "out of memory");
    applied = migrate_apply(conn, dir, stdout, err);
    db_destroy(&conn);
    if (applied < 0)
        return RS_ERR;
    printf("%d migration%s applied, schema up to date\n", applied, applied == 1 ? "" : "s");
    return RS_OK;
}

static const struct ctl_command ctl_commands[] = {
    {"config defaults", "", "print a documented configuration file with every default",
     ctl_config_defaults},
    {"config show", "", "print the effective configuration (secrets masked)", ctl_config_show},
    {"db migrate", "[--dir FOLDER]", "apply pending SQL migrations", ctl_db_migrate},
};

#define CTL_NCOMMANDS (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

static void
ctl_usage(FILE *out)
{
    fprintf(out, "usage: restockctl [-c FILE] COMMAND\n\ncommands:\n");
    for (size_t i = 0; i < CTL_NCOMMANDS; i++)
        fprintf(out, "  %-18s %-16s %s\n", ctl_commands[i].words, ctl_commands[i].usage,
                ctl_commands[i].doc);
    fprintf(out, "\nThe configuration is %s unless -c or RESTOCK_CONFIG names another;\n"
                 "RESTOCK_<KEY> environment variables override single keys.\n",
            CONF_DEFAULT_PATH);
}

/* Matches the command words against argv; returns how many argv entries they took. */
static int
ctl_match(const char *words, int argc, char **argv)
{
    char buf[64];
    int used = 0;

    snprintf(buf, sizeof(buf), "%s", words);
    for (char *w = strtok(buf, " "); w != NULL; w = strtok(NULL, " ")) {
        if (used >= argc || strcmp(argv[used], w) != 0)
            return 0;
        used++;
    }
    return used;
}

int
main(int argc, char **argv)
{
    const char *path = NULL;
    conf *cf = NULL;
    errbuf err = {{0}};
    int opt;

    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            ctl_usage(stderr);
            return 2;
        }
    }
    argc -= optind;
    argv += optind;
    for (size_t i = 0; i < CTL_NCOMMANDS; i++) {
        int used = ctl_match(ctl_commands[i].words, argc, argv);
        int rc;
        if (used == 0)
            continue;
        cf = conf_new(path, &err);
        if (cf == NULL) {
            fprintf(stderr, "restockctl: %s\n", err.msg);
            return 1;
        }
        rc = ctl_commands[i].run(cf, argc - used, argv + used, &err);
        conf_destroy(&cf);
        if (rc != RS_OK) {
            fprintf(stderr, "restockctl: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    if (argc > 0)
        fprintf(stderr, "restockctl: unknown command \"%s\"; restockctl -h lists them\n", argv[0]);
    else
        ctl_usage(stderr);
    return 2;
}
