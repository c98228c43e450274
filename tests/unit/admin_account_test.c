/* Unit test of admin_account's pure parts (no database): account names and
 * roles, the password rule (12 characters, counted in UTF-8, no control
 * characters, never quoted in the error), the log's names of login results.
 * The database parts (adding, the login, lock-out, the changes) are
 * tests/integration/admin_accounts.py. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "admin_account.h"
#include "tap.h"

static void
test_names(void)
{
    errbuf err = {""};
    char long_name[ADMIN_ACCOUNT_NAME_MAX + 2];

    ok(admin_account_name_check("alice", &err) == RS_OK, "alice is a name");
    ok(admin_account_name_check("ops.on-call_2@shop", &err) == RS_OK, "with . - _ @");
    ok(admin_account_name_check("", &err) == RS_ERR, "empty refused (%s)", err.msg);
    ok(admin_account_name_check("-rf", &err) == RS_ERR, "a leading '-' refused (%s)", err.msg);
    ok(admin_account_name_check("a b", &err) == RS_ERR, "a space refused");
    ok(admin_account_name_check("a'; DROP", &err) == RS_ERR, "a quote refused");
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    ok(admin_account_name_check(long_name, &err) == RS_ERR, "65 characters refused");
    long_name[ADMIN_ACCOUNT_NAME_MAX] = '\0';
    ok(admin_account_name_check(long_name, &err) == RS_OK, "64 taken");

    is_int(admin_role_parse("viewer", &err), ADMIN_ROLE_VIEWER, "viewer");
    is_int(admin_role_parse("operator", &err), ADMIN_ROLE_OPERATOR, "operator");
    ok(admin_role_parse("admin", &err) == RS_ERR && strstr(err.msg, "viewer or operator"),
       "another role refused (%s)", err.msg);
    ok(admin_role_parse(NULL, &err) == RS_ERR, "no role refused");
    is_str(admin_role_name(ADMIN_ROLE_OPERATOR), "operator", "the name of operator");
    ok(admin_role_name(0) == NULL, "no name for 0");

    is_str(admin_login_result_name(ADMIN_LOGIN_WRONG), "wrong_password", "the log's result=");
    is_str(admin_login_result_name(ADMIN_LOGIN_LOCKED), "locked", "locked");
    is_str(admin_login_result_name(ADMIN_LOGIN_DISABLED), "disabled", "disabled");
    is_str(admin_login_result_name(ADMIN_LOGIN_UNKNOWN), "unknown", "unknown");
}

static void
password_refused(const char *pw, const char *says, const char *name)
{
    errbuf err = {""};

    ok(admin_password_check(pw, &err) == RS_ERR && strstr(err.msg, says) != NULL &&
           (*pw == '\0' || strstr(err.msg, pw) == NULL),
       "refused: %s (%s)", name, err.msg);
}

static void
test_passwords(void)
{
    errbuf err = {""};
    char huge[ADMIN_PASSWORD_MAX + 2];

    ok(admin_password_check("correct horse", &err) == RS_OK, "13 characters taken");
    ok(admin_password_check("twelve chars", &err) == RS_OK, "12 taken");
    password_refused("eleven char", "shorter than 12", "11 characters");
    password_refused("", "shorter than 12", "empty");
    /* 12 characters of 3 bytes each: characters count, not bytes. */
    ok(admin_password_check("비밀번호비밀번호비밀번호", &err) == RS_OK,
       "12 Korean characters taken");
    password_refused("비밀번호비밀번호비밀번", "shorter", "11 Korean characters (33 bytes)");
    password_refused("tab\there-long-enough", "control character", "a tab");
    password_refused("bad\xff utf-8 long enough", "UTF-8", "invalid UTF-8");
    memset(huge, 'x', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    password_refused(huge, "longer than", "1025 bytes");
}

int
main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_names();
    test_passwords();
    return done_testing();
}
