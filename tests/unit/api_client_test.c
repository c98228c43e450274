/* Unit test of api_client's keys and names (no database): a new key is "rsk_"
 * and 43 base64url characters, never the same twice; the Authorization header
 * takes "Bearer <key>" with the scheme in any case and refuses another scheme, a
 * missing key, or one not of that form, without quoting it; what is stored is
 * the SHA-256 of the key's text; a client's name is 1 to 64 of [A-Za-z0-9._-]
 * and not all digits. */
#include "config.h"

#include <string.h>

#include <sodium.h>

#include "api_client.h"
#include "tap.h"

static void
test_make(char key[API_CLIENT_KEY_LEN + 1])
{
    char other[API_CLIENT_KEY_LEN + 1];
    size_t plain;

    api_client_key_make(key);
    plain = strspn(key + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    is_int((long long)strlen(key), 47, "a key is 47 characters");
    ok(strncmp(key, "rsk_", 4) == 0, "starting rsk_ (%.4s)", key);
    is_int((long long)plain, 43, "then 43 of base64url");
    api_client_key_make(other);
    ok(strcmp(key, other) != 0, "two keys differ");
}

static void
taken(const char *value, const char *want, const char *name)
{
    char out[API_CLIENT_KEY_LEN + 1];
    errbuf err = {""};

    if (ok(api_client_parse_authorization(value, out, &err) == RS_OK, "taken: %s (%s)", name,
           err.msg))
        is_str(out, want, "  as the key it holds");
}

static void
refused(const char *value, const char *says, const char *name)
{
    char out[API_CLIENT_KEY_LEN + 1];
    errbuf err = {""};

    ok(api_client_parse_authorization(value, out, &err) == RS_ERR &&
           strstr(err.msg, says) != NULL && strncmp(err.msg, "Authorization: ", 15) == 0 &&
           (strlen(value) < 8 || strstr(err.msg, value + 7) == NULL) && out[0] == '\0',
       "refused: %s (%s)", name, err.msg);
}

static void
test_parse(const char *key)
{
    char value[128], bad[API_CLIENT_KEY_LEN + 1];

    snprintf(value, sizeof(value), "Bearer %s", key);
    taken(value, key, "Bearer <key>");
    snprintf(value, sizeof(value), "bearer %s", key);
    taken(value, key, "the scheme in lower case");
    snprintf(value, sizeof(value), " BEARER \t %s  ", key);
    taken(value, key, "spaces around and between");

    snprintf(value, sizeof(value), "Basic %s", key);
    refused(value, "expected \"Bearer", "another scheme");
    refused("Bearer", "expected \"Bearer", "no key");
    refused("Bearer ", "expected \"Bearer", "no key, a space");
    refused("", "expected \"Bearer", "an empty value");
    snprintf(value, sizeof(value), "Bearer%s", key);
    refused(value, "expected \"Bearer", "no space after the scheme");
    refused("Bearer rsk_short", "not a restock client key", "a key too short");
    snprintf(value, sizeof(value), "Bearer %sA", key);
    refused(value, "not a restock client key", "a key too long");
    snprintf(bad, sizeof(bad), "xsk_%s", key + 4);
    snprintf(value, sizeof(value), "Bearer %s", bad);
    refused(value, "not a restock client key", "another prefix");
    snprintf(bad, sizeof(bad), "%s", key);
    bad[10] = '+';
    snprintf(value, sizeof(value), "Bearer %s", bad);
    refused(value, "outside base64url", "a character outside base64url");
    snprintf(value, sizeof(value), "Bearer %s, Bearer %s", key, key);
    refused(value, "not a restock client key", "two keys (two headers joined)");
}

static void
test_hash(const char *key)
{
    unsigned char got[API_CLIENT_HASH_BYTES], want[crypto_hash_sha256_BYTES];

    api_client_key_hash(key, got);
    crypto_hash_sha256(want, (const unsigned char *)key, strlen(key));
    ok(memcmp(got, want, sizeof(want)) == 0, "what is stored is SHA-256 of the key's text");
}

static void
test_names(void)
{
    static const struct {
        const char *name;
        int valid;
    } cases[] = {
        {"shop-web", 1}, {"pos.store_12", 1}, {"a", 1}, {"1a", 1},  {"", 0},
        {"12", 0},       {"has space", 0},    {"ü", 0}, {"a/b", 0},
    };
    char longest[API_CLIENT_NAME_MAX + 2];
    errbuf err = {""};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ok((api_client_name_check(cases[i].name, &err) == RS_OK) == cases[i].valid,
           "name \"%s\" is %s (%s)", cases[i].name, cases[i].valid ? "valid" : "refused",
           cases[i].valid ? "" : err.msg);
    memset(longest, 'n', API_CLIENT_NAME_MAX);
    longest[API_CLIENT_NAME_MAX] = '\0';
    ok(api_client_name_check(longest, &err) == RS_OK, "a name of 64 characters is valid");
    longest[API_CLIENT_NAME_MAX] = 'n';
    longest[API_CLIENT_NAME_MAX + 1] = '\0';
    ok(api_client_name_check(longest, &err) == RS_ERR, "one of 65 is refused");
}

int
main(void)
{
    char key[API_CLIENT_KEY_LEN + 1];
    errbuf err = {""};

    if (!ok(api_client_init(&err) == RS_OK, "libsodium starts"))
        return done_testing();
    test_make(key);
    test_parse(key);
    test_hash(key);
    test_names();
    return done_testing();
}
