/* webhook_sig: Standard Webhooks secrets, signatures and ids (see webhook_sig.h). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "ident.h"
#include "webhook_sig.h"

#define WEBHOOK_SIG_PREFIX "whsec_"
#define WEBHOOK_SIG_ID_MAX 64
/* The version tag of the one scheme the specification defines (HMAC-SHA256). */
#define WEBHOOK_SIG_VERSION "v1,"
/* One signature's text: the tag and the base64 of an HMAC-SHA256, no NUL. */
#define WEBHOOK_SIG_ONE                                                                            \
    (sizeof(WEBHOOK_SIG_VERSION) - 1 +                                                             \
     sodium_base64_ENCODED_LEN(crypto_auth_hmacsha256_BYTES, sodium_base64_VARIANT_ORIGINAL) - 1)
/* Most keys one header is signed or verified with: a rotation's two. */
#define WEBHOOK_SIG_KEYS_MAX 2

_Static_assert(WEBHOOK_SIG_KEYS_MAX *(WEBHOOK_SIG_ONE + 1) <= WEBHOOK_SIG_HEADER_SIZE,
               "two signatures, a space and the NUL fit a header");
_Static_assert(sizeof(WEBHOOK_SIG_PREFIX) - 1 +
                       sodium_base64_ENCODED_LEN(WEBHOOK_SIG_KEY_MAX,
                                                 sodium_base64_VARIANT_ORIGINAL) <=
                   WEBHOOK_SIG_SECRET_SIZE,
               "the longest secret fits");
_Static_assert(4 + sodium_base64_ENCODED_LEN(2 * IDENT_BYTES + 1,
                                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
                   WEBHOOK_SIG_ID_SIZE,
               "msg_ and two UUIDs and a byte in base64url");

/* Every function that starts from text calls it; keys only come from there, so
 * signing and verifying find libsodium started. Idempotent and thread-safe. */
static int
webhook_sig_sodium(errbuf *err)
{
    if (sodium_init() < 0)
        return errbuf_set(err, "libsodium cannot initialise");
    return RS_OK;
}

int
webhook_sig_secret_new(char *out, size_t n, errbuf *err)
{
    unsigned char key[WEBHOOK_SIG_KEY_NEW];
    size_t prefix = sizeof(WEBHOOK_SIG_PREFIX) - 1;

    if (n > 0)
        out[0] = '\0';
    if (webhook_sig_sodium(err) != RS_OK)
        return RS_ERR;
    if (n < prefix + sodium_base64_ENCODED_LEN(sizeof(key), sodium_base64_VARIANT_ORIGINAL))
        return errbuf_set(
            err, "a webhook secret needs %zu bytes, %zu given",
            prefix + sodium_base64_ENCODED_LEN(sizeof(key), sodium_base64_VARIANT_ORIGINAL), n);
    randombytes_buf(key, sizeof(key));
    memcpy(out, WEBHOOK_SIG_PREFIX, prefix);
    sodium_bin2base64(out + prefix, n - prefix, key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(key, sizeof(key));
    return RS_OK;
}

int
webhook_sig_secret_parse(const char *text, unsigned char key_out[WEBHOOK_SIG_KEY_MAX],
                         size_t *key_len, errbuf *err)
{
    const char *b64;
    size_t b64_len, pad = 0, len;

    *key_len = 0;
    if (webhook_sig_sodium(err) != RS_OK)
        return RS_ERR;
    if (text == NULL || strncmp(text, WEBHOOK_SIG_PREFIX, sizeof(WEBHOOK_SIG_PREFIX) - 1) != 0)
        return errbuf_set(err, "a webhook secret must begin with " WEBHOOK_SIG_PREFIX);
    b64 = text + sizeof(WEBHOOK_SIG_PREFIX) - 1;
    b64_len = strlen(b64);
    if (b64_len == 0 || b64_len % 4 != 0)
        return errbuf_set(err, "a webhook secret must be " WEBHOOK_SIG_PREFIX
                               " and padded standard base64 (a multiple of 4 characters)");
    /* The key's length, told by the text's, so that a secret too long is called
     * that rather than bad base64. */
    while (pad < 2 && b64[b64_len - 1 - pad] == '=')
        pad++;
    len = b64_len / 4 * 3 - pad;
    if (len > WEBHOOK_SIG_KEY_MAX)
        return errbuf_set(err, "a webhook secret's key must be at most %d bytes, not %zu",
                          WEBHOOK_SIG_KEY_MAX, len);
    /* No ignored characters and no end pointer: libsodium then refuses any
     * character outside the alphabet, wrong padding and non-zero unused bits,
     * so that one key has exactly one text. */
    if (sodium_base642bin(key_out, WEBHOOK_SIG_KEY_MAX, b64, b64_len, NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        sodium_memzero(key_out, WEBHOOK_SIG_KEY_MAX);
        return errbuf_set(err, "a webhook secret must be " WEBHOOK_SIG_PREFIX
                               " and canonical padded standard base64");
    }
    if (len < WEBHOOK_SIG_KEY_MIN) {
        sodium_memzero(key_out, WEBHOOK_SIG_KEY_MAX);
        return errbuf_set(err, "a webhook secret's key must be at least %d bytes, not %zu",
                          WEBHOOK_SIG_KEY_MIN, len);
    }
    *key_len = len;
    return RS_OK;
}

void
webhook_sig_key_wipe(webhook_sig_key *key)
{
    sodium_memzero(key, sizeof(*key));
}

/* The checks signing and verifying share: RS_ERR on an argument that is no key,
 * id or time of a delivery. */
static int
webhook_sig_check(const webhook_sig_key *keys, size_t nkeys, const char *id, int64_t timestamp,
                  const void *body, size_t len, errbuf *err)
{
    size_t id_len = id == NULL ? 0 : strlen(id);

    if (nkeys < 1 || nkeys > WEBHOOK_SIG_KEYS_MAX)
        return errbuf_set(err, "a webhook is signed with 1 or %d secrets, not %zu",
                          WEBHOOK_SIG_KEYS_MAX, nkeys);
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].len < WEBHOOK_SIG_KEY_MIN || keys[i].len > WEBHOOK_SIG_KEY_MAX)
            return errbuf_set(err, "webhook secret %zu has no key", i + 1);
    if (id_len == 0 || id_len > WEBHOOK_SIG_ID_MAX ||
        strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != id_len)
        return errbuf_set(err, "a webhook-id must be 1 to %d of [A-Za-z0-9_-]", WEBHOOK_SIG_ID_MAX);
    if (timestamp < 0)
        return errbuf_set(err, "a webhook-timestamp must not be negative, not %" PRId64, timestamp);
    if (body == NULL && len > 0)
        return errbuf_set(err, "a webhook body of %zu bytes has no bytes", len);
    return RS_OK;
}

/* "v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>" into out. */
static void
webhook_sig_one(const webhook_sig_key *key, const char *id, int64_t timestamp, const void *body,
                size_t len, char out[WEBHOOK_SIG_ONE + 1])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    char ts[24];
    size_t tag = sizeof(WEBHOOK_SIG_VERSION) - 1;

    snprintf(ts, sizeof(ts), ".%" PRId64 ".", timestamp);
    crypto_auth_hmacsha256_init(&st, key->bytes, key->len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)id, strlen(id));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    if (len > 0)
        crypto_auth_hmacsha256_update(&st, body, len);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, WEBHOOK_SIG_VERSION, tag);
    sodium_bin2base64(out + tag, WEBHOOK_SIG_ONE + 1 - tag, mac, sizeof(mac),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(mac, sizeof(mac));
}

int
webhook_sig_sign(const webhook_sig_key *keys, size_t nkeys, const char *id, int64_t timestamp,
                 const void *body, size_t len, char out[WEBHOOK_SIG_HEADER_SIZE], errbuf *err)
{
    out[0] = '\0';
    if (webhook_sig_check(keys, nkeys, id, timestamp, body, len, err) != RS_OK)
        return RS_ERR;
    for (size_t i = 0; i < nkeys; i++) {
        char *at = out + i * (WEBHOOK_SIG_ONE + 1);

        if (i > 0)
            at[-1] = ' ';
        webhook_sig_one(&keys[i], id, timestamp, body, len, at);
    }
    return RS_OK;
}

int
webhook_sig_verify(const webhook_sig_key *keys, size_t nkeys, const char *id, int64_t timestamp,
                   const void *body, size_t len, const char *header, int64_t now, int64_t tolerance,
                   errbuf *err)
{
    char expected[WEBHOOK_SIG_KEYS_MAX][WEBHOOK_SIG_ONE + 1];
    const char *at;
    int match = 0;

    if (webhook_sig_check(keys, nkeys, id, timestamp, body, len, err) != RS_OK)
        return RS_ERR;
    if (header == NULL)
        return errbuf_set(err, "no webhook-signature");
    /* Both are times of this era: the differences below cannot overflow. */
    if (now < 0 || tolerance < 0)
        return errbuf_set(err, "a clock (%" PRId64 ") or tolerance (%" PRId64 ") below 0", now,
                          tolerance);
    if (now - timestamp > tolerance)
        return errbuf_set(err, "webhook-timestamp too old: %" PRId64 " s before now",
                          now - timestamp);
    if (timestamp - now > tolerance)
        return errbuf_set(err, "webhook-timestamp too new: %" PRId64 " s after now",
                          timestamp - now);
    for (size_t i = 0; i < nkeys; i++)
        webhook_sig_one(&keys[i], id, timestamp, body, len, expected[i]);
    /* Every signature against every key, with no early way out, each comparison
     * in constant time: the time taken tells nothing of where one differed. */
    for (at = header; *at != '\0';) {
        size_t n = strcspn(at, " ");

        if (n == WEBHOOK_SIG_ONE)
            for (size_t i = 0; i < nkeys; i++)
                match |= sodium_memcmp(at, expected[i], WEBHOOK_SIG_ONE) == 0;
        at += n;
        at += *at == ' ';
    }
    sodium_memzero(expected, sizeof(expected));
    if (!match)
        return errbuf_set(err, "no matching webhook signature");
    return RS_OK;
}

int
webhook_sig_id(const char *event_id, const char *endpoint_id, unsigned type,
               char out[WEBHOOK_SIG_ID_SIZE], errbuf *err)
{
    unsigned char both[2 * IDENT_BYTES + 1];

    out[0] = '\0';
    if (webhook_sig_sodium(err) != RS_OK)
        return RS_ERR;
    if (event_id == NULL || ident_parse(event_id, both) != 0)
        return errbuf_set(err, "a webhook event id must be a UUID's canonical text");
    if (endpoint_id == NULL || ident_parse(endpoint_id, both + IDENT_BYTES) != 0)
        return errbuf_set(err, "a webhook endpoint id must be a UUID's canonical text");
    if (type > 255)
        return errbuf_set(err, "a webhook event type is a number from 0 to 255");
    both[2 * IDENT_BYTES] = (unsigned char)type;
    memcpy(out, "msg_", 4);
    sodium_bin2base64(out + 4, WEBHOOK_SIG_ID_SIZE - 4, both, sizeof(both),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return RS_OK;
}
