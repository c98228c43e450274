/* Unit test of conf: defaults, file, secrets in files of their own (systemd
 * credentials), environment, and errors that name the input. */
#include "config.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "tap.h"

static char *
write_tmp(const char *text)
{
    static char path[64];
    FILE *f;
    int fd;

    snprintf(path, sizeof(path), "/tmp/conf_test.XXXXXX");
    fd = mkstemp(path);
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Writes dir/name with text. */
static void
write_at(const char *dir, const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void
remove_at(const char *dir, const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

/* conf_write_effective's output, into buf. */
static void
effective(const conf *cf, char *buf, size_t size)
{
    FILE *f = tmpfile();
    size_t n;

    conf_write_effective(cf, f);
    rewind(f);
    n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Secrets from files of their own: $CREDENTIALS_DIRECTORY (systemd's LoadCredential=),
 * else the folder "credentials" beside the configuration file. */
static void
test_credentials(void)
{
    char dir[] = "/tmp/conf_test_creds.XXXXXX", store[64], config[64], buf[8192];
    errbuf err = {{0}};
    conf *cf;

    if (mkdtemp(dir) == NULL)
        return;
    snprintf(config, sizeof(config), "%s/restock.conf", dir);
    write_at(dir, "restock.conf",
             "db_password = from-file\nsmtp_password = smtp-from-file\ndb_host = db.example\n");
    snprintf(store, sizeof(store), "%s/credentials", dir);
    mkdir(store, 0700);

    /* Under systemd: only $CREDENTIALS_DIRECTORY, whatever lies beside the file. */
    write_at(store, "callback_key", "from-the-store\n");
    setenv("CREDENTIALS_DIRECTORY", dir, 1); /* holds restock.conf, and: */
    write_at(dir, "db_password", "from-credential\n");
    write_at(dir, "callback_key", "0123abcd");
    write_at(dir, "smtp_password", ""); /* an empty placeholder */
    write_at(dir, "db_host", "not-a-secret.example");
    cf = conf_new(config, &err);
    ok(cf != NULL, "a configuration with credentials loads: %s", cf ? "" : err.msg);
    if (cf != NULL) {
        is_str(conf_str(cf, "db_password"), "from-credential",
               "a credential overrides the file's secret, its final newline dropped");
        is_str(conf_str(cf, "callback_key"), "0123abcd",
               "a credential without a newline is taken whole");
        is_str(conf_str(cf, "smtp_password"), "smtp-from-file",
               "an empty credential leaves the file's value in force");
        is_str(conf_str(cf, "callback_key_previous"), "", "a missing credential: the default");
        is_str(conf_str(cf, "db_host"), "db.example",
               "a file named after a key that is not a "
               "secret is no credential");
        effective(cf, buf, sizeof(buf));
        ok(strstr(buf, "db_password = ********\t# credential\n") &&
               !strstr(buf, "from-credential") && !strstr(buf, "0123abcd"),
           "config show: a credential's value is masked, its origin is \"credential\"");
    }
    conf_destroy(&cf);

    setenv("RESTOCK_DB_PASSWORD", "from-env", 1);
    cf = conf_new(config, &err);
    is_str(cf ? conf_str(cf, "db_password") : "", "from-env",
           "the environment overrides a credential (tests, development)");
    conf_destroy(&cf);
    unsetenv("RESTOCK_DB_PASSWORD");

    write_at(dir, "db_password", "line one\nline two\n");
    cf = conf_new(config, &err);
    ok(cf == NULL && strstr(err.msg, "db_password") && strstr(err.msg, dir) &&
           strstr(err.msg, "more than one line") && !strstr(err.msg, "line one"),
       "a credential of two lines is refused, naming the file, not the value: %s", err.msg);
    memset(buf, 'x', 2000);
    buf[2000] = '\0';
    write_at(dir, "db_password", buf);
    cf = conf_new(config, &err);
    ok(cf == NULL && strstr(err.msg, "longer than"), "an overlong credential is refused: %s",
       err.msg);
    conf_destroy(&cf);
    unsetenv("CREDENTIALS_DIRECTORY");
    unsetenv("RESTOCK_WEBHOOK_ALLOW");

    /* Not under systemd (restockctl run by root): the store beside the file. */
    cf = conf_new(config, &err);
    ok(cf != NULL, "without $CREDENTIALS_DIRECTORY it loads: %s", cf ? "" : err.msg);
    if (cf != NULL) {
        is_str(conf_str(cf, "callback_key"), "from-the-store",
               "the secret comes from the credentials folder beside the file");
        is_str(conf_str(cf, "db_password"), "from-file",
               "a secret with no file there keeps the configuration file's value");
    }
    conf_destroy(&cf);

    remove_at(dir, "db_password");
    remove_at(dir, "callback_key");
    remove_at(dir, "smtp_password");
    remove_at(dir, "db_host");
    remove_at(dir, "restock.conf");
    remove_at(store, "callback_key");
    rmdir(store);
    rmdir(dir);
}

int
main(void)
{
    errbuf err = {{0}};
    conf *cf;
    char *path;
    FILE *devnull;

    unsetenv("RESTOCK_CONFIG");
    unsetenv("RESTOCK_DB_HOST");
    unsetenv("RESTOCK_SALES_THREADS");
    unsetenv("CREDENTIALS_DIRECTORY");

    test_credentials();

    cf = conf_new("/nonexistent/restock.conf", &err);
    ok(cf == NULL, "an explicitly named missing file is an error");
    ok(strstr(err.msg, "/nonexistent/restock.conf") != NULL, "the error names the file: %s",
       err.msg);

    path = write_tmp("# comment\n\n db_host = db.example  \nsales_threads=3\n"
                     "smtp_starttls = \"off\"\n");
    cf = conf_new(path, &err);
    ok(cf != NULL, "a valid file loads");
    is_str(conf_str(cf, "db_host"), "db.example", "file value, trimmed");
    is_int(conf_int(cf, "sales_threads"), 3, "file integer");
    is_str(conf_str(cf, "smtp_starttls"), "off", "quoted value unquoted");
    is_str(conf_str(cf, "db_name"), "restock", "default where the file is silent");
    is_int(conf_int(cf, "socket_mode"), 0660, "octal mode default");
    is_str(conf_path(cf), path, "remembers its file");
    conf_destroy(&cf);
    ok(cf == NULL, "destroy clears the pointer");

    setenv("RESTOCK_DB_HOST", "env.example", 1);
    setenv("RESTOCK_CONFIG", path, 1);
    cf = conf_new(NULL, &err);
    is_str(conf_str(cf, "db_host"), "env.example", "environment overrides the file");
    is_int(conf_int(cf, "sales_threads"), 3, "RESTOCK_CONFIG names the file");
    conf_destroy(&cf);
    unsetenv("RESTOCK_DB_HOST");
    unsetenv("RESTOCK_CONFIG");
    unlink(path);

    setenv("RESTOCK_SALES_THREADS", "zero", 1);
    cf = conf_new("/dev/null", &err);
    ok(cf == NULL && strstr(err.msg, "sales_threads") && strstr(err.msg, "zero") &&
           strstr(err.msg, "environment"),
       "bad integer from the environment names key, value, origin: %s", err.msg);
    setenv("RESTOCK_SALES_THREADS", "100000", 1);
    cf = conf_new("/dev/null", &err);
    ok(cf == NULL && strstr(err.msg, "1 to 256"), "out of range names the range: %s", err.msg);
    unsetenv("RESTOCK_SALES_THREADS");

    path = write_tmp("db_hots = x\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, ":1: unknown key \"db_hots\""),
       "unknown key with file and line: %s", err.msg);
    unlink(path);

    path = write_tmp("\n\nsmtp_starttls = maybe\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, ":3:") && strstr(err.msg, "required|opportunistic|off"),
       "bad enum with line and choices: %s", err.msg);
    unlink(path);

    /* One comment syntax (restock.conf(5)): '#' after whitespace, outside quotes. */
    path = write_tmp("smtp_starttls = required   # required | opportunistic | off\n"
                     "public_url = https://shop.example#top\t# where the factory calls back\n"
                     "db_password = pa#ss\n"
                     "smtp_password = \"secret # with \\\"quotes\\\" and \\\\\"  # kept\n"
                     "db_host =   # empty, then a comment\n"
                     "mail_from = \"\"\n");
    cf = conf_new(path, &err);
    ok(cf != NULL, "values followed by comments load: %s", cf ? "" : err.msg);
    if (cf != NULL) {
        is_str(conf_str(cf, "smtp_starttls"), "required", "a comment after a value is not kept");
        is_str(conf_str(cf, "public_url"), "https://shop.example#top",
               "a '#' inside a word is part of the value");
        is_str(conf_str(cf, "db_password"), "pa#ss", "also in a secret");
        is_str(conf_str(cf, "smtp_password"), "secret # with \"quotes\" and \\",
               "a quoted value keeps ' #', with \\\" and \\\\ escapes");
        is_str(conf_str(cf, "db_host"), "", "a value that is only a comment is empty");
        is_str(conf_str(cf, "mail_from"), "", "\"\" is the empty value");
    }
    conf_destroy(&cf);
    unlink(path);

    path = write_tmp("db_host = localhost\ndb_password = \"unterminated # oops\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, ":2:") && strstr(err.msg, "no closing quote"),
       "an unterminated quote is refused with its line: %s", err.msg);
    unlink(path);

    path = write_tmp("db_password = \"a\" b\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, ":1:") && strstr(err.msg, "after the quoted value"),
       "text after a closing quote is refused: %s", err.msg);
    unlink(path);

    path = write_tmp("db_password = \"a\\nb\"\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, ":1:") && strstr(err.msg, "unknown escape"),
       "an unknown escape in quotes is refused: %s", err.msg);
    unlink(path);

    /* webhook_allow is parsed by lib/egress at load: its errors name the key, the line
     * and the item. */
    path = write_tmp("webhook_allow = loopback, 10.0.0.0/8\n");
    cf = conf_new(path, &err);
    ok(cf != NULL, "webhook_allow with a class and a CIDR loads: %s", cf ? "" : err.msg);
    if (cf != NULL)
        is_str(conf_str(cf, "webhook_allow"), "loopback, 10.0.0.0/8", "webhook_allow kept");
    conf_destroy(&cf);
    unlink(path);
    path = write_tmp("\nwebhook_allow = loopback, 10.0.0.1/8\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, ":2: webhook_allow = ") &&
           strstr(err.msg, "\"10.0.0.1/8\": bits are set beyond the /8 prefix"),
       "a bad CIDR in webhook_allow is refused with its line and item: %s", err.msg);
    unlink(path);
    setenv("RESTOCK_WEBHOOK_ALLOW", "privat", 1);
    cf = conf_new("/dev/null", &err);
    ok(cf == NULL && strstr(err.msg, "environment: webhook_allow") &&
           strstr(err.msg, "\"privat\": expected a CIDR"),
       "an unknown class in webhook_allow is refused: %s", err.msg);
    unsetenv("RESTOCK_WEBHOOK_ALLOW");
    cf = conf_new("/dev/null", &err);
    ok(cf != NULL && strcmp(conf_str(cf, "webhook_allow"), "") == 0,
       "webhook_allow defaults to empty: public addresses only");
    conf_destroy(&cf);

    path = write_tmp("just words\n");
    cf = conf_new(path, &err);
    ok(cf == NULL && strstr(err.msg, "key = value"), "line without '=': %s", err.msg);
    unlink(path);

    setenv("RESTOCK_DB_PASSWORD", "hunter2", 1);
    cf = conf_new("/dev/null", &err);
    devnull = tmpfile();
    conf_write_effective(cf, devnull);
    {
        char buf[8192] = {0};
        rewind(devnull);
        size_t n = fread(buf, 1, sizeof(buf) - 1, devnull);
        ok(n > 0 && strstr(buf, "hunter2") == NULL && strstr(buf, "db_password = ********"),
           "secrets are masked when printed");
    }
    fclose(devnull);
    conf_destroy(&cf);
    unsetenv("RESTOCK_DB_PASSWORD");

    devnull = tmpfile();
    conf_write_defaults(devnull);
    {
        static char buf[65536];
        rewind(devnull);
        size_t n = fread(buf, 1, sizeof(buf) - 1, devnull);
        buf[n] = '\0';
        ok(strstr(buf, "#max_attempts = 0\n") && strstr(buf, "#factory_lifetime = 259200\n") &&
               strstr(buf, "#spool_dir = /var/spool/restock\n"),
           "generated file documents keys at their defaults");
        /* The generated file, uncommented, must load: defaults are valid values. */
        for (char *p = buf; (p = strstr(p, "\n#")) != NULL; p++)
            if (p[2] >= 'a' && p[2] <= 'z' && strchr(p + 2, '=') &&
                strchr(p + 2, '=') < strchr(p + 2, '\n'))
                p[1] = ' ';
        path = write_tmp(buf);
        cf = conf_new(path, &err);
        ok(cf != NULL, "generated file with every key set loads: %s", cf ? "" : err.msg);
        conf_destroy(&cf);
        unlink(path);
    }
    fclose(devnull);

    /* Reload: snapshots, references, what is kept, a file that is refused. */
    {
        static const char *const changeable[] = {"log_level", "smtp_port", NULL};
        conf *first, *again, *held, *now;
        FILE *f;

        path = write_tmp("log_level = info\nsmtp_port = 25\nspool_dir = /a\n");
        first = conf_new(path, &err);
        conf_set_current(first);
        held = conf_current();
        ok(held == first, "conf_current is the snapshot set");
        f = fopen(path, "w");
        fputs("log_level = warn\nsmtp_port = 2525\nspool_dir = /b\n", f);
        fclose(f);
        again = conf_reload_current(changeable);
        ok(again != NULL && again != first, "a reload makes a new snapshot");
        is_int(conf_int(again, "smtp_port"), 2525, "a changeable key takes its new value");
        is_str(conf_str(again, "log_level"), "warn", "so does log_level");
        is_str(conf_str(again, "spool_dir"), "/a", "a key that cannot change keeps its old value");
        ok(conf_generation(again) != conf_generation(first), "the generations differ");
        now = conf_current();
        ok(now == again, "the reloaded snapshot is the current one");
        conf_destroy(&now);
        is_int(conf_int(held, "smtp_port"), 25, "an old snapshot held by a reader stays whole");
        conf_destroy(&held);
        conf_destroy(&first); /* the last reference to the first snapshot */
        conf_destroy(&again);
        f = fopen(path, "w");
        fputs("smtp_port = banana\n", f);
        fclose(f);
        ok(conf_reload_current(changeable) == NULL, "a file that does not parse is refused");
        now = conf_current();
        is_int(now ? conf_int(now, "smtp_port") : 0, 2525, "and the current snapshot is kept");
        conf_destroy(&now);
        conf_set_current(NULL);
        now = conf_current();
        ok(now == NULL, "no current snapshot after conf_set_current(NULL)");
        unlink(path);
    }
    return done_testing();
}
