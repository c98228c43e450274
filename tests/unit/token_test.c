/* Unit test of token: a made token is what the one validator accepts, the
 * validator refuses every other text (length, case, digits), the stored hash is
 * SHA-256 of the text, and verification says yes only to that hash; a keyed
 * token is the HMAC-SHA256 of the order id (as Python's hmac computes it), the
 * previous key's tokens verify while it is configured and not after, and a
 * missing or malformed key is refused without being quoted. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "token.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
/* sha256sum of the 64 characters of TOKEN */
#define TOKEN_SHA256 "a8ae6e6ee929abea3afcfc5258c8ccd6f85273e0d4626d26c7279f3250f77c8e"

static void
refused(const char *text, size_t len, const char *name)
{
    char out[TOKEN_HEX + 1] = "x";

    ok(token_parse(text, len, out) == RS_ERR && out[0] == '\0', "refused: %s", name);
}

static void
test_parse(void)
{
    char out[TOKEN_HEX + 1];
    const char *query = TOKEN "&other=1";
    char upper[] = TOKEN, nul[] = TOKEN;

    ok(token_parse(TOKEN, strlen(TOKEN), out) == RS_OK, "64 lower-case hex digits are a token");
    is_str(out, TOKEN, "copied as they are");
    ok(token_parse(query, TOKEN_HEX, out) == RS_OK, "text need not end after the token");
    is_str(out, TOKEN, "and the copy ends with it");
    upper[10] = 'A';
    nul[20] = '\0';
    refused(TOKEN, TOKEN_HEX - 1, "63 digits");
    refused(TOKEN "0", TOKEN_HEX + 1, "65 digits");
    refused("", 0, "nothing");
    refused(NULL, 0, "NULL");
    refused(upper, TOKEN_HEX, "an upper-case digit");
    refused("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", TOKEN_HEX,
            "a letter that is not a hex digit");
    refused(nul, TOKEN_HEX, "a NUL inside");
}

static void
test_hash_verify(void)
{
    unsigned char hash[TOKEN_HASH_BYTES];
    char hex[2 * TOKEN_HASH_BYTES + 1];

    token_hash(TOKEN, hash);
    for (size_t i = 0; i < sizeof(hash); i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    is_str(hex, TOKEN_SHA256, "the stored hash is SHA-256 of the token's text");
    ok(token_verify(TOKEN, hash, sizeof(hash)), "the token verifies against its hash");
    ok(!token_verify("1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", hash,
                     sizeof(hash)),
       "another token does not");
    ok(!token_verify(TOKEN, NULL, 0), "nothing stored: no token verifies");
    ok(!token_verify(TOKEN, hash, sizeof(hash) - 1), "a stored hash of another size: none");
    hash[sizeof(hash) - 1] ^= 1;
    ok(!token_verify(TOKEN, hash, sizeof(hash)), "a hash one bit off: none");
}

#define KEY      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_PREV "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define ORDER_ID "7d1f6d4e-3c52-4a3b-9d0e-2f6a5b4c3d21"
/* python3: hmac.new(bytes.fromhex(KEY), ORDER_ID.encode(), "sha256").hexdigest() */
#define ORDER_TOKEN      "bf3fac31a60f82f9c2f2d263bd894eb989564c074a167ea307207cacd0832dff"
#define ORDER_TOKEN_PREV "15ae055aabe13ef99d20997f0aa0862503af46a18fba9eb7bbc56a0efd57ad7a"

/* The keys of a configuration whose callback_key and callback_key_previous are
 * these (environment); RS_OK or RS_ERR with err. */
static int
load(const char *key, const char *previous, token_keys *keys, errbuf *err)
{
    conf *cf;
    int rc;

    setenv("RESTOCK_CALLBACK_KEY", key, 1);
    setenv("RESTOCK_CALLBACK_KEY_PREVIOUS", previous, 1);
    setenv("RESTOCK_CONFIG", "/dev/null", 1);
    cf = conf_new(NULL, err);
    if (cf == NULL)
        return RS_ERR;
    rc = token_keys_load(cf, keys, err);
    conf_destroy(&cf);
    return rc;
}

static void
test_keyed(void)
{
    token_keys keys;
    char token[TOKEN_HEX + 1], parsed[TOKEN_HEX + 1];
    errbuf err = {""};

    if (!ok(load(KEY, "", &keys, &err) == RS_OK, "a valid key loads (%s)", err.msg))
        return;
    token_of_order(&keys, ORDER_ID, token);
    is_str(token, ORDER_TOKEN, "a keyed token is the HMAC-SHA256 of the order id, in hex");
    is_int(strlen(token), TOKEN_HEX, "of TOKEN_HEX (64) characters");
    ok(token_parse(token, strlen(token), parsed) == RS_OK, "the one validator accepts it");
    ok(token_verify_order(&keys, ORDER_ID, ORDER_TOKEN), "it verifies for its order");
    ok(!token_verify_order(&keys, "7d1f6d4e-3c52-4a3b-9d0e-2f6a5b4c3d22", ORDER_TOKEN),
       "not for another order");
    ok(!token_verify_order(&keys, ORDER_ID, ORDER_TOKEN_PREV),
       "the previous key's: not configured");
    token_keys_wipe(&keys);

    if (!ok(load(KEY, KEY_PREV, &keys, &err) == RS_OK, "a key and a previous one load (%s)",
            err.msg))
        return;
    ok(token_verify_order(&keys, ORDER_ID, ORDER_TOKEN_PREV), "the previous key's token verifies");
    ok(token_verify_order(&keys, ORDER_ID, ORDER_TOKEN), "and the current key's");
    token_of_order(&keys, ORDER_ID, token);
    is_str(token, ORDER_TOKEN, "tokens are made with the current key");
    token_keys_wipe(&keys);

    ok(load("", "", &keys, &err) == RS_ERR && strstr(err.msg, "callback_key is not set"),
       "no key: refused (%s)", err.msg);
    ok(load("00112233", "", &keys, &err) == RS_ERR &&
           strstr(err.msg, "callback_key is malformed") && !strstr(err.msg, "00112233"),
       "a short key: refused, not quoted (%s)", err.msg);
    ok(load("00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff", "", &keys, &err) ==
           RS_ERR,
       "capitals: refused");
    ok(load(KEY, "nothex", &keys, &err) == RS_ERR &&
           strstr(err.msg, "callback_key_previous is malformed"),
       "a malformed previous key: refused (%s)", err.msg);
}

int
main(void)
{
    errbuf err = {""};

    if (!ok(token_init(&err) == RS_OK, "token_init (%s)", err.msg))
        return done_testing();
    ok(token_init(&err) == RS_OK, "token_init again is harmless");
    test_parse();
    test_hash_verify();
    test_keyed();
    return done_testing();
}
