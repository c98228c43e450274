/* token: the secret of an order's callback URL (?token=…), in one place. It is
 * made at random once per order, travels as lower-case hex text, and only its
 * SHA-256 is stored (replenishment_order.token_hash), so that a copy of the
 * database cannot call back; a callback's token is checked against that hash in
 * constant time. */
#ifndef RESTOCK_TOKEN_H
#define RESTOCK_TOKEN_H

#include <stddef.h>

#include "errbuf.h"

/* A token's text: exactly this many lower-case hex digits (32 random bytes). */
#define TOKEN_HEX 64

/* What is stored of a token: its SHA-256. */
#define TOKEN_HASH_BYTES 32

/* libsodium's start-up, which must come before any other token call. Idempotent
 * and thread-safe: each module that uses tokens calls it in its _new. */
int token_init(errbuf *err);

/* A new random token, NUL-terminated. */
void token_make(char out[TOKEN_HEX + 1]);

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
