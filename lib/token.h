/* token: the secret of an order's callback URL (?token=…), in one place. It is
 * the HMAC-SHA256 of the order's id (its canonical text) under the configured
 * callback_key, as lower-case hex text: any process holding the key checks a
 * callback without the database (restock-callback accepts callbacks during an
 * outage), and an order sent again carries the same token. A key is rotated by
 * moving it to callback_key_previous, still accepted, and setting a new one.
 * Orders made before keyed tokens carry a random token: only its SHA-256 is
 * stored (replenishment_order.token_hash, also stored for keyed ones), so that
 * a copy of the database cannot call back; such a token is checked against that
 * hash. Every comparison takes constant time. */
#ifndef RESTOCK_TOKEN_H
#define RESTOCK_TOKEN_H

#include <stddef.h>

#include "conf.h"
#include "errbuf.h"

/* A token's text: exactly this many lower-case hex digits (32 bytes: an HMAC-SHA256). */
#define TOKEN_HEX 64

/* What is stored of a token: its SHA-256. */
#define TOKEN_HASH_BYTES 32

/* libsodium's start-up, which must come before any other token call. Idempotent
 * and thread-safe: each module that uses tokens calls it in its _new. */
int token_init(errbuf *err);

/* A callback key's bytes; its text (callback_key) is written like a token:
 * TOKEN_HEX lower-case hex digits, as `openssl rand -hex 32` prints them. */
#define TOKEN_KEY_BYTES (TOKEN_HEX / 2)

/* The keys a process makes and accepts tokens with. */
typedef struct token_keys {
    unsigned char current[TOKEN_KEY_BYTES];  /* callback_key: makes and accepts */
    unsigned char previous[TOKEN_KEY_BYTES]; /* callback_key_previous: accepts */
    int has_previous;
} token_keys;

/* Reads callback_key (required) and callback_key_previous (may be empty) from
 * cf. RS_ERR, naming the key but never quoting it, when one is missing or not
 * TOKEN_HEX lower-case hex digits: a program then refuses to start. Calls
 * token_init. Wipe the keys with token_keys_wipe. */
int token_keys_load(const conf *cf, token_keys *out, errbuf *err);
void token_keys_wipe(token_keys *keys);

/* The token of order_id (its canonical text) under the current key. */
void token_of_order(const token_keys *keys, const char *order_id, char out[TOKEN_HEX + 1]);

/* 1 when token (parsed) is order_id's under the current or the previous key. */
int token_verify_order(const token_keys *keys, const char *order_id, const char *token);

/* The one validator: RS_OK, with the token copied NUL-terminated into out, when
 * the len bytes of text are exactly TOKEN_HEX lower-case hex digits; RS_ERR
 * otherwise (out is then ""). text need not be NUL-terminated (a query string). */
int token_parse(const char *text, size_t len, char out[TOKEN_HEX + 1]);

/* What is stored of a (parsed) token. */
void token_hash(const char *token, unsigned char out[TOKEN_HASH_BYTES]);

/* 1 when stored (stored_len bytes, NULL when none is stored) is the hash of
 * token. The comparison takes the same time wherever the first difference is,
 * so that timing tells an attacker nothing about the hash. */
int token_verify(const char *token, const void *stored, size_t stored_len);

#endif
