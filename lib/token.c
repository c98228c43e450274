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

void
token_make(char out[TOKEN_HEX + 1])
{
    unsigned char bytes[TOKEN_HEX / 2];

    randombytes_buf(bytes, sizeof(bytes));
    /* sodium_bin2hex writes lower-case digits, the only ones token_parse takes. */
    sodium_bin2hex(out, TOKEN_HEX + 1, bytes, sizeof(bytes));
    sodium_memzero(bytes, sizeof(bytes));
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
