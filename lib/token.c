/* token: the callback token, made, checked and hashed (see token.h). */
#include "config.h"

#include <string.h>

#include <sodium.h>

#include "token.h"

_Static_assert(TOKEN_HASH_BYTES == crypto_hash_sha256_BYTES, "token_hash is SHA-256");

int
token_init(errbuf *err)
{
    if (sodium_init() < 0)
        return errbuf_set(err, "libsodium cannot initialise");
    return RS_OK;
}

/* The key named `name` of cf into out; RS_OK, 0 when empty and optional. */
static int
token_key_read(const conf *cf, const char *name, int required, unsigned char out[TOKEN_KEY_BYTES],
               int *present, errbuf *err)
{
    const char *text = conf_str(cf, name);
    char hex[TOKEN_HEX + 1];
    size_t len;

    *present = 0;
    if (*text == '\0') {
        if (required)
            return errbuf_set(err,
                              "%s is not set: it must be %d lower-case hex digits (openssl rand "
                              "-hex 32)",
                              name, TOKEN_HEX);
        return RS_OK;
    }
    if (token_parse(text, strlen(text), hex) != RS_OK)
        return errbuf_set(err, "%s is malformed: it must be %d lower-case hex digits", name,
                          TOKEN_HEX);
    sodium_hex2bin(out, TOKEN_KEY_BYTES, hex, TOKEN_HEX, NULL, &len, NULL);
    sodium_memzero(hex, sizeof(hex));
    *present = 1;
    return RS_OK;
}

int
token_keys_load(const conf *cf, token_keys *out, errbuf *err)
{
    int present;

    memset(out, 0, sizeof(*out));
    if (token_init(err) != RS_OK ||
        token_key_read(cf, "callback_key", 1, out->current, &present, err) != RS_OK ||
        token_key_read(cf, "callback_key_previous", 0, out->previous, &out->has_previous, err) !=
            RS_OK) {
        token_keys_wipe(out);
        return RS_ERR;
    }
    return RS_OK;
}

void
token_keys_wipe(token_keys *keys)
{
    sodium_memzero(keys, sizeof(*keys));
}

static void
token_hmac(const unsigned char key[TOKEN_KEY_BYTES], const char *order_id, char out[TOKEN_HEX + 1])
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, TOKEN_KEY_BYTES);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)order_id, strlen(order_id));
    crypto_auth_hmacsha256_final(&st, mac);
    /* sodium_bin2hex writes lower-case digits, the only ones token_parse takes. */
    sodium_bin2hex(out, TOKEN_HEX + 1, mac, sizeof(mac));
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(mac, sizeof(mac));
}

_Static_assert(crypto_auth_hmacsha256_BYTES * 2 == TOKEN_HEX, "a keyed token is one HMAC-SHA256");

void
token_of_order(const token_keys *keys, const char *order_id, char out[TOKEN_HEX + 1])
{
    token_hmac(keys->current, order_id, out);
}

int
token_verify_order(const token_keys *keys, const char *order_id, const char *token)
{
    char expected[TOKEN_HEX + 1];
    int same = 0;

    if (strlen(token) != TOKEN_HEX)
        return 0;
    token_hmac(keys->current, order_id, expected);
    same |= sodium_memcmp(expected, token, TOKEN_HEX) == 0;
    if (keys->has_previous) {
        token_hmac(keys->previous, order_id, expected);
        same |= sodium_memcmp(expected, token, TOKEN_HEX) == 0;
    }
    sodium_memzero(expected, sizeof(expected));
    return same;
}

int
token_parse(const char *text, size_t len, char out[TOKEN_HEX + 1])
{
    out[0] = '\0';
    if (text == NULL || len != TOKEN_HEX)
        return RS_ERR;
    for (size_t i = 0; i < len; i++)
        if (!((text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f')))
            return RS_ERR;
    memcpy(out, text, len);
    out[len] = '\0';
    return RS_OK;
}

void
token_hash(const char *token, unsigned char out[TOKEN_HASH_BYTES])
{
    /* The hash of the text, as the factory sends it back, not of the bytes. */
    crypto_hash_sha256(out, (const unsigned char *)token, strlen(token));
}

int
token_verify(const char *token, const void *stored, size_t stored_len)
{
    unsigned char digest[TOKEN_HASH_BYTES];
    int same;

    if (stored == NULL || stored_len != sizeof(digest))
        return 0;
    token_hash(token, digest);
    same = sodium_memcmp(digest, stored, sizeof(digest)) == 0;
    sodium_memzero(digest, sizeof(digest));
    return same;
}
