/* Unit test of webhook_sig: the Standard Webhooks reference vector is signed to
 * the published signature; a rotation's header carries both signatures and
 * verifies with either secret alone; a tampered body, id or timestamp, a stale
 * or future timestamp, another secret and malformed headers are rejected; only
 * whsec_ + canonical padded base64 of 24..64 bytes is a secret (each refusal
 * says why, never quoting the secret); new secrets parse back to 32 random
 * bytes; webhook ids are stable, distinct per endpoint and refuse non-UUIDs.
 * The proof that consumers accept these signatures is not here but in
 * tests/integration/webhook_sig.py (the npm reference library). */
#include "config.h"

#include <string.h>

#include "tap.h"
#include "webhook_sig.h"

/* The reference vector, copied from the Standard Webhooks repository's
 * JavaScript library test, github.com/standard-webhooks/standard-webhooks,
 * libraries/javascript/src/webhook.test.ts, test "sign function works" (the same
 * numbers are in its other libraries' tests); checked again with Python's hmac:
 * base64(hmac.new(b64decode(secret[6:]), b"<id>.<ts>.<body>", sha256)). */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS     1614265330
#define VEC_BODY   "{\"test\": 2432232314}"
#define VEC_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* A 64-byte key (bytes 0..63), the longest allowed, as the previous secret; its
 * signature of the vector, by Python's hmac as above. */
#define PREV_SECRET                                                                                \
    "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"   \
    "Pw=="
#define PREV_SIG "v1,LZ5zuwHTqQH3VM8ERUusjzVQq1FXzemvpR8Mk7Ivp5c="

static webhook_sig_key
key_of(const char *secret)
{
    webhook_sig_key k;
    errbuf err;

    memset(&k, 0, sizeof(k));
    if (webhook_sig_secret_parse(secret, k.bytes, &k.len, &err) != RS_OK)
        diag("cannot parse a test secret: %s", err.msg);
    return k;
}

/* RS_OK or RS_ERR of verifying header for the vector's id and body at ts, now. */
static int
verify(const webhook_sig_key *keys, size_t n, const char *id, int64_t ts, const char *body,
       const char *header, int64_t now, errbuf *err)
{
    return webhook_sig_verify(keys, n, id, ts, body, strlen(body), header, now,
                              WEBHOOK_SIG_TOLERANCE, err);
}

static void
test_vector(void)
{
    webhook_sig_key k = key_of(VEC_SECRET);
    char header[WEBHOOK_SIG_HEADER_SIZE];
    errbuf err;

    is_int(k.len, 24, "the vector's secret is a 24-byte key");
    ok(webhook_sig_sign(&k, 1, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), header, &err) == RS_OK,
       "the vector signs");
    is_str(header, VEC_SIG, "to the signature the Standard Webhooks libraries publish");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG, VEC_TS, &err) == RS_OK,
       "the published signature verifies");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY,
              "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " VEC_SIG " v2,whatever", VEC_TS,
              &err) == RS_OK,
       "among other signatures and versions too");
    webhook_sig_key_wipe(&k);
    is_int(k.len, 0, "a wiped key has no length");
}

static void
test_tampered(void)
{
    webhook_sig_key k = key_of(VEC_SECRET), other = key_of(PREV_SECRET);
    char sig[] = VEC_SIG;
    errbuf err;

    ok(verify(&k, 1, VEC_ID, VEC_TS, "{\"test\": 2432232315}", VEC_SIG, VEC_TS, &err) == RS_ERR,
       "a tampered body is rejected");
    is_str(err.msg, "no matching webhook signature", "as no matching signature");
    ok(verify(&k, 1, "msg_p5jXN8AQM9LWM0D4loKWxJeK", VEC_TS, VEC_BODY, VEC_SIG, VEC_TS, &err) ==
           RS_ERR,
       "a tampered id is rejected");
    ok(verify(&k, 1, VEC_ID, VEC_TS + 1, VEC_BODY, VEC_SIG, VEC_TS, &err) == RS_ERR,
       "a tampered timestamp is rejected");
    ok(verify(&other, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG, VEC_TS, &err) == RS_ERR,
       "another secret's key rejects it");
    sig[10] = sig[10] == 'A' ? 'B' : 'A';
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, sig, VEC_TS, &err) == RS_ERR,
       "a signature one character off is rejected");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY,
              "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", VEC_TS, &err) == RS_ERR,
       "the right MAC under another version is rejected");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
              VEC_TS, &err) == RS_ERR,
       "a truncated signature is rejected");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, "", VEC_TS, &err) == RS_ERR,
       "an empty header is rejected");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG "x", VEC_TS, &err) == RS_ERR,
       "a signature with a character after it is rejected");
    ok(verify(&k, 1, "msg.1", VEC_TS, VEC_BODY, VEC_SIG, VEC_TS, &err) == RS_ERR,
       "an id with a dot is refused");
    webhook_sig_key_wipe(&k);
    webhook_sig_key_wipe(&other);
}

static void
test_time(void)
{
    webhook_sig_key k = key_of(VEC_SECRET);
    errbuf err;

    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG, VEC_TS + WEBHOOK_SIG_TOLERANCE, &err) ==
           RS_OK,
       "5 minutes old verifies");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG, VEC_TS + WEBHOOK_SIG_TOLERANCE + 1, &err) ==
           RS_ERR,
       "5 minutes and 1 s old is stale");
    ok(strstr(err.msg, "too old") != NULL, "and said to be too old");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG, VEC_TS - WEBHOOK_SIG_TOLERANCE, &err) ==
           RS_OK,
       "5 minutes ahead verifies");
    ok(verify(&k, 1, VEC_ID, VEC_TS, VEC_BODY, VEC_SIG, VEC_TS - WEBHOOK_SIG_TOLERANCE - 1, &err) ==
           RS_ERR,
       "5 minutes and 1 s ahead is refused");
    ok(strstr(err.msg, "too new") != NULL, "and said to be too new");
    webhook_sig_key_wipe(&k);
}

static void
test_rotation(void)
{
    webhook_sig_key both[2] = {key_of(VEC_SECRET), key_of(PREV_SECRET)};
    char header[WEBHOOK_SIG_HEADER_SIZE];
    errbuf err;

    ok(webhook_sig_sign(both, 2, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), header, &err) == RS_OK,
       "a rotation signs with both secrets");
    is_str(header, VEC_SIG " " PREV_SIG, "the current secret's signature, a space, the previous'");
    ok(verify(&both[0], 1, VEC_ID, VEC_TS, VEC_BODY, header, VEC_TS, &err) == RS_OK,
       "a consumer with the new secret verifies it");
    ok(verify(&both[1], 1, VEC_ID, VEC_TS, VEC_BODY, header, VEC_TS, &err) == RS_OK,
       "a consumer with the old secret verifies it");
    ok(verify(both, 2, VEC_ID, VEC_TS, VEC_BODY, PREV_SIG, VEC_TS, &err) == RS_OK,
       "a verifier with both secrets accepts the old one's signature alone");
    ok(webhook_sig_sign(both, 3, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), header, &err) ==
               RS_ERR &&
           header[0] == '\0',
       "three secrets are refused");
    ok(webhook_sig_sign(both, 0, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), header, &err) ==
           RS_ERR,
       "no secret is refused");
    ok(webhook_sig_sign(both, 1, "", VEC_TS, VEC_BODY, strlen(VEC_BODY), header, &err) == RS_ERR,
       "an empty id is refused");
    ok(webhook_sig_sign(both, 1, "msg 1", VEC_TS, VEC_BODY, strlen(VEC_BODY), header, &err) ==
           RS_ERR,
       "an id with a space is refused");
    ok(webhook_sig_sign(both, 1, VEC_ID, -1, VEC_BODY, strlen(VEC_BODY), header, &err) == RS_ERR,
       "a negative timestamp is refused");
    ok(webhook_sig_sign(both, 1, VEC_ID, VEC_TS, "", 0, header, &err) == RS_OK,
       "an empty body signs");
    webhook_sig_key_wipe(&both[0]);
    webhook_sig_key_wipe(&both[1]);
}

/* text is refused as a secret, with a message holding why and not the text. */
static void
refused(const char *text, const char *why, const char *name)
{
    unsigned char key[WEBHOOK_SIG_KEY_MAX];
    size_t len = 99;
    errbuf err = {{0}};

    ok(webhook_sig_secret_parse(text, key, &len, &err) == RS_ERR && len == 0, "refused: %s", name);
    ok(strstr(err.msg, why) != NULL, "  saying: %s", why);
    if (text != NULL && strlen(text) > 6)
        ok(strstr(err.msg, text + 6) == NULL, "  without quoting it");
}

static void
test_secrets(void)
{
    char made[WEBHOOK_SIG_SECRET_SIZE], again[WEBHOOK_SIG_SECRET_SIZE], small[50];
    unsigned char key[WEBHOOK_SIG_KEY_MAX];
    size_t len;
    errbuf err;

    ok(webhook_sig_secret_new(made, sizeof(made), &err) == RS_OK, "a new secret is made");
    is_int(strlen(made), 6 + 44, "whsec_ and 44 base64 characters");
    ok(strncmp(made, "whsec_", 6) == 0, "it begins with whsec_");
    ok(webhook_sig_secret_parse(made, key, &len, &err) == RS_OK && len == WEBHOOK_SIG_KEY_NEW,
       "it parses back to a 32-byte key");
    ok(webhook_sig_secret_new(again, sizeof(again), &err) == RS_OK && strcmp(made, again) != 0,
       "another is another");
    ok(webhook_sig_secret_new(small, sizeof(small), &err) == RS_ERR && small[0] == '\0',
       "a buffer one byte short is refused");
    ok(webhook_sig_secret_parse(PREV_SECRET, key, &len, &err) == RS_OK && len == 64 &&
           key[63] == 63,
       "64 bytes is a secret");
    ok(webhook_sig_secret_parse("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX", key, &len, &err) ==
               RS_OK &&
           len == 24,
       "24 bytes is a secret");
    refused("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "begin with whsec_", "no prefix");
    refused("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "begin with whsec_",
            "the prefix in capitals");
    refused(NULL, "begin with whsec_", "NULL");
    refused("whsec_", "multiple of 4", "the prefix alone");
    refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "multiple of 4", "a character short");
    refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa-w", "canonical padded standard base64",
            "base64url's -");
    refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa w", "canonical padded standard base64",
            "a space inside");
    refused("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "multiple of 4", "a newline after it");
    refused("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRZ=", "canonical padded standard base64",
            "unused bits set");
    refused("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRY=", "at least 24 bytes", "23 bytes");
    refused("whsec_"
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
            "P0A=",
            "at most 64 bytes", "65 bytes");
    refused("whsec_"
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
            "P0BB",
            "at most 64 bytes", "66 bytes, no padding");
}

static void
test_id(void)
{
    char id[WEBHOOK_SIG_ID_SIZE], again[WEBHOOK_SIG_ID_SIZE], other[WEBHOOK_SIG_ID_SIZE];
    char header[WEBHOOK_SIG_HEADER_SIZE];
    webhook_sig_key k;
    errbuf err;

    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2e",
                      "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", 3, id, &err) == RS_OK,
       "an event, an endpoint and a type make a webhook-id");
    /* Python: "msg_" + urlsafe_b64encode(UUID(event).bytes + UUID(endpoint).bytes
     * + bytes([3])) without "=". */
    is_str(id, "msg_DZx6PlsfTCqejX9qW0w9LvHi08S1pkl4hpWks8LR4PkD",
           "msg_ and base64url of both UUIDs' bytes and the type's");
    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2e",
                      "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", 3, again, &err) == RS_OK &&
           strcmp(id, again) == 0,
       "the same on a retry");
    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2e",
                      "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0fa", 3, other, &err) == RS_OK &&
           strcmp(id, other) != 0,
       "another for another endpoint");
    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2e",
                      "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", 4, other, &err) == RS_OK &&
           strcmp(id, other) != 0,
       "another for another type");
    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2e",
                      "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", 256, other, &err) == RS_ERR,
       "a type past a byte is refused");
    k = key_of(VEC_SECRET);
    ok(webhook_sig_sign(&k, 1, id, VEC_TS, "", 0, header, &err) == RS_OK,
       "it is a webhook-id webhook_sig_sign takes");
    webhook_sig_key_wipe(&k);
    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2", "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9",
                      0, id, &err) == RS_ERR &&
           id[0] == '\0',
       "an event id that is no UUID is refused");
    ok(webhook_sig_id("0d9c7a3e-5b1f-4c2a-9e8d-7f6a5b4c3d2e", "endpoint", 0, id, &err) == RS_ERR,
       "an endpoint id that is no UUID is refused");
    ok(webhook_sig_id(NULL, NULL, 0, id, &err) == RS_ERR, "none is refused");
}

int
main(void)
{
    test_vector();
    test_tampered();
    test_time();
    test_rotation();
    test_secrets();
    test_id();
    return done_testing();
}
