/* Unit test of the admin modules' pure parts (no database): account names and
 * roles, the password rule (12 characters, counted in UTF-8, no control
 * characters, never quoted in the error), the log's names of login results;
 * session tokens (43 base64url characters, never the same twice, parsed only in
 * that form, stored as SHA-256) and the CSRF comparison; the audit trail's
 * page limits and restockctl's actor and source. The database parts are
 * tests/integration/admin_accounts.py and audit.py. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "admin_account.h"
#include "admin_session.h"
#include "audit.h"
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

static void
test_tokens(void)
{
    char a[ADMIN_SESSION_TOKEN_LEN + 1], b[ADMIN_SESSION_TOKEN_LEN + 1],
        parsed[ADMIN_SESSION_TOKEN_LEN + 1], bad[ADMIN_SESSION_TOKEN_LEN + 1];
    unsigned char hash[ADMIN_SESSION_HASH_BYTES], want[ADMIN_SESSION_HASH_BYTES];

    admin_session_token_make(a);
    admin_session_token_make(b);
    is_int((long long)strlen(a), 43, "a token is 43 characters");
    is_int((long long)strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
           43, "of base64url");
    ok(strcmp(a, b) != 0, "two tokens differ");
    ok(admin_session_token_parse(a, strlen(a), parsed) == RS_OK && strcmp(parsed, a) == 0,
       "a token parses as itself");
    ok(admin_session_token_parse(a, strlen(a) - 1, parsed) == RS_ERR && parsed[0] == '\0',
       "one short refused");
    memcpy(bad, a, sizeof(bad));
    bad[10] = '=';
    ok(admin_session_token_parse(bad, strlen(bad), parsed) == RS_ERR, "'=' refused");
    bad[10] = '\0';
    ok(admin_session_token_parse(bad, ADMIN_SESSION_TOKEN_LEN, parsed) == RS_ERR,
       "a NUL inside refused");
    ok(admin_session_token_parse(NULL, 0, parsed) == RS_ERR, "no cookie refused");

    admin_session_token_hash(a, hash);
    crypto_hash_sha256(want, (const unsigned char *)a, strlen(a));
    ok(memcmp(hash, want, sizeof(hash)) == 0, "what is stored is the SHA-256 of the token");

    ok(admin_session_csrf_ok(a, a), "the session's CSRF token is taken");
    ok(!admin_session_csrf_ok(a, b), "another is refused");
    ok(!admin_session_csrf_ok(a, NULL), "none is refused");
    ok(!admin_session_csrf_ok(a, ""), "empty is refused");
    memcpy(bad, a, sizeof(bad));
    bad[42] = bad[42] == 'A' ? 'B' : 'A';
    ok(!admin_session_csrf_ok(a, bad), "the last character differing is refused");
}

static void
test_audit(void)
{
    errbuf err = {""};
    char actor[AUDIT_ACTOR_MAX + 1], source[AUDIT_SOURCE_MAX + 1];

    ok(audit_check_page(1, 0, &err) == RS_OK, "limit 1 from the newest");
    ok(audit_check_page(AUDIT_LIMIT_MAX, 42, &err) == RS_OK, "the largest limit, before 42");
    ok(audit_check_page(0, 0, &err) == RS_ERR && strstr(err.msg, "limit"), "limit 0 refused (%s)",
       err.msg);
    ok(audit_check_page(AUDIT_LIMIT_MAX + 1, 0, &err) == RS_ERR, "limit over the largest refused");
    ok(audit_check_page(10, -1, &err) == RS_ERR && strstr(err.msg, "before"),
       "a negative before refused (%s)", err.msg);

    audit_local_who(actor, source);
    ok(strncmp(actor, "restockctl:", 11) == 0 && actor[11] != '\0', "actor %s", actor);
    ok(strcmp(source, "local") == 0 || strncmp(source, "local:/dev/", 11) == 0, "source %s",
       source);
    ok(isatty(STDIN_FILENO) || strcmp(source, "local") == 0, "no terminal: local alone");
}

int
main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_names();
    test_passwords();
    test_tokens();
    test_audit();
    return done_testing();
}
