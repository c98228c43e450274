/* Unit test of conf: defaults, file, environment, and errors that name the input. */
#include "config.h"

#include <stdlib.h>
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
    return done_testing();
}
