/* Unit test of admin_session's pure parts (no database): session tokens (43
 * base64url characters, never the same twice, parsed only in that form, stored
 * as SHA-256) and the CSRF comparison. The sessions' table (made, touched,
 * expired, deleted) is tests/integration/admin_accounts.py. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "admin_session.h"
#include "tap.h"

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

int
main(void)
{
    if (sodium_init() < 0)
        return 1;
    test_tokens();
    return done_testing();
}
