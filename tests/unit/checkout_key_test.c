/* Unit test of checkout_key's header parsing and fingerprint: a bare key and a
 * quoted one (Structured Field string) are the same key, escapes are undone,
 * the limits are 1 and 255 characters, and what is not visible ASCII (a control
 * character, DEL, a byte above ASCII, a space in a bare key), a bad escape, an
 * unclosed quote or text after it is refused saying what is wrong; the
 * fingerprint is SHA-256 of the sku, a NUL and the quantity's digits (and, for
 * an API client, a NUL and its id), so that another sku, quantity or client is
 * another fingerprint; an anonymous key shorter than 16 characters is refused
 * saying why. */
#include "config.h"

#include <string.h>

#include <sodium.h>

#include "checkout_key.h"
#include "tap.h"

static void
taken(const char *value, const char *want, const char *name)
{
    char out[CHECKOUT_KEY_MAX + 1];
    errbuf err = {""};

    if (ok(checkout_key_parse(value, out, &err) == RS_OK, "taken: %s (%s)", name, err.msg))
        is_str(out, want, "  as the key it says");
}

static void
refused(const char *value, const char *says, const char *name)
{
    char out[CHECKOUT_KEY_MAX + 1];
    errbuf err = {""};

    ok(checkout_key_parse(value, out, &err) == RS_ERR && strstr(err.msg, says) != NULL &&
           strncmp(err.msg, "Idempotency-Key: ", 17) == 0,
       "refused: %s (%s)", name, err.msg);
}

static void
test_parse(void)
{
    char long_key[CHECKOUT_KEY_MAX + 2], quoted[CHECKOUT_KEY_MAX + 4];

    taken("abc", "abc", "a bare key");
    taken("\"abc\"", "abc", "the same key quoted");
    taken("  abc\t", "abc", "spaces around the value are not part of it");
    taken("8e5f4c2a-0b1d-4c3e-9f8a-7b6c5d4e3f21", "8e5f4c2a-0b1d-4c3e-9f8a-7b6c5d4e3f21", "a UUID");
    taken("a\"b\\c", "a\"b\\c", "a bare key may hold quotes and backslashes (visible ASCII)");
    taken("\"a \\\"b\\\" \\\\c\"", "a \"b\" \\c", "a quoted key: spaces, \\\" and \\\\ undone");
    memset(long_key, 'k', CHECKOUT_KEY_MAX);
    long_key[CHECKOUT_KEY_MAX] = '\0';
    taken(long_key, long_key, "255 characters");
    snprintf(quoted, sizeof(quoted), "\"%s\"", long_key);
    taken(quoted, long_key, "255 characters quoted");
    long_key[CHECKOUT_KEY_MAX] = 'k';
    long_key[CHECKOUT_KEY_MAX + 1] = '\0';
    refused(long_key, "longer than 255", "256 characters");
    snprintf(quoted, sizeof(quoted), "\"%s\"", long_key);
    refused(quoted, "longer than 255", "256 characters quoted");

    static const struct {
        const char *value, *says, *name;
    } bad[] = {
        {"", "empty", "an empty value"},
        {"   ", "empty", "only spaces"},
        {"\"\"", "empty", "an empty quoted string"},
        {"a b", "byte 0x20", "a bare key with a space"},
        {"a\001b", "byte 0x01", "a control character"},
        {"a\x7f", "byte 0x7f", "DEL"},
        {"caf\xc3\xa9", "byte 0xc3", "a byte above ASCII"},
        {"\"a\x01\"", "byte 0x01", "a control character quoted"},
        {"\"abc", "no closing quote", "a quote not closed"},
        {"\"", "no closing quote", "a lone quote"},
        {"\"a\\nb\"", "escaped", "an unknown escape"},
        {"\"abc\\\"", "no closing quote", "the closing quote escaped"},
        {"\"abc\";v=1", "after the closing quote", "parameters after the string"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(bad[i].value, bad[i].says, bad[i].name);
}

static void
test_fingerprint(void)
{
    unsigned char a[CHECKOUT_KEY_FINGERPRINT], b[CHECKOUT_KEY_FINGERPRINT];
    unsigned char want[crypto_hash_sha256_BYTES];
    static const char text[] = "CP-502101\0"
                               "12";

    checkout_key_fingerprint(CHECKOUT_KEY_ANONYMOUS, "CP-502101", 12, a);
    crypto_hash_sha256(want, (const unsigned char *)text, sizeof(text) - 1);
    ok(memcmp(a, want, sizeof(want)) == 0, "SHA-256 of the sku, a NUL, the quantity's digits");
    checkout_key_fingerprint(CHECKOUT_KEY_ANONYMOUS, "CP-502101", 12, b);
    ok(memcmp(a, b, sizeof(a)) == 0, "the same request: the same fingerprint");
    checkout_key_fingerprint(CHECKOUT_KEY_ANONYMOUS, "CP-502101", 13, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "another quantity: another one");
    checkout_key_fingerprint(CHECKOUT_KEY_ANONYMOUS, "CP-502102", 12, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "another sku: another one");
    checkout_key_fingerprint(CHECKOUT_KEY_ANONYMOUS, "CP-50210", 112, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "the sku's end is not the quantity's start");

    static const char scoped[] = "CP-502101\0"
                                 "12\0"
                                 "7";
    checkout_key_fingerprint(7, "CP-502101", 12, b);
    crypto_hash_sha256(want, (const unsigned char *)scoped, sizeof(scoped) - 1);
    ok(memcmp(b, want, sizeof(want)) == 0, "a client's: then a NUL and the client's id");
    ok(memcmp(a, b, sizeof(a)) != 0, "another client than anonymous: another one");
    checkout_key_fingerprint(8, "CP-502101", 12, a);
    ok(memcmp(a, b, sizeof(a)) != 0, "another client: another one");
}

static void
test_cart_fingerprint(void)
{
    const struct checkout_key_line lines[] = {{"B-2", 3}, {"A-1", 12}};
    const size_t by_sku[] = {1, 0}, asked[] = {0, 1};
    unsigned char a[CHECKOUT_KEY_FINGERPRINT], b[CHECKOUT_KEY_FINGERPRINT];
    unsigned char want[crypto_hash_sha256_BYTES];
    static const char text[] = "\0A-1\0"
                               "12\0B-2\0"
                               "3\0"
                               "0";
    const struct checkout_key_line more[] = {{"A-1", 123}};
    const size_t first[] = {0};

    checkout_key_cart_fingerprint(CHECKOUT_KEY_ANONYMOUS, "", lines, by_sku, 2, a);
    crypto_hash_sha256(want, (const unsigned char *)text, sizeof(text) - 1);
    ok(memcmp(a, want, sizeof(want)) == 0,
       "a cart's: SHA-256 of a NUL, each line's sku, NUL, quantity, NUL in the order given, "
       "then the client");
    checkout_key_cart_fingerprint(CHECKOUT_KEY_ANONYMOUS, "", lines, asked, 2, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "the order given is the order hashed (the caller sorts)");
    checkout_key_cart_fingerprint(7, "", lines, by_sku, 2, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "another client: another one");
    checkout_key_cart_fingerprint(CHECKOUT_KEY_ANONYMOUS, "", lines, by_sku, 1, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "fewer lines: another one");
    checkout_key_cart_fingerprint(CHECKOUT_KEY_ANONYMOUS, "", more, first, 1, a);
    checkout_key_fingerprint(CHECKOUT_KEY_ANONYMOUS, "A-1", 123, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "a cart of one line is not the one-line checkout of it");
    checkout_key_cart_fingerprint(CHECKOUT_KEY_ANONYMOUS, "POST /holds ttl=600", more, first, 1, b);
    ok(memcmp(a, b, sizeof(a)) != 0, "a hold of the lines is not the cart of them");
}

static void
test_anonymous(void)
{
    errbuf err = {""};

    ok(checkout_key_check_anonymous("0123456789abcdef", &err) == RS_OK,
       "an anonymous key of 16 characters is taken");
    ok(checkout_key_check_anonymous("0123456789abcde", &err) == RS_ERR &&
           strstr(err.msg, "at least 16 characters") != NULL &&
           strncmp(err.msg, "Idempotency-Key: ", 17) == 0,
       "one of 15 is refused, saying why (%s)", err.msg);
}

int
main(void)
{
    if (!ok(sodium_init() >= 0, "libsodium starts"))
        return done_testing();
    test_parse();
    test_fingerprint();
    test_cart_fingerprint();
    test_anonymous();
    return done_testing();
}
