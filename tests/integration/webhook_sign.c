/* webhook_sign: lib/webhook_sig as a filter, so that a test can have restock sign
 * and a consumer's library verify (tests/integration/webhook_sig.py runs it; not
 * a unit test). Reads requests, one a line, fields separated by tabs, and
 * answers each with one line on stdout, in order:
 *
 *   new                                   -> a new secret (whsec_...)
 *   id EVENT-UUID ENDPOINT-UUID TYPE      -> the webhook-id
 *   sign ID TIMESTAMP BODY-HEX SECRET [PREVIOUS-SECRET]
 *                                         -> the webhook-signature header
 *
 * A request that fails is answered "error: <why>" (never the secret). Secrets
 * come on stdin, not in the arguments, where any user's ps would see them.
 *
 *   webhook_sign < requests */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "webhook_sig.h"

#define SIGN_FIELDS_MAX 6

/* Splits line at tabs into at most SIGN_FIELDS_MAX fields; how many. */
static size_t
sign_fields(char *line, char *field[SIGN_FIELDS_MAX])
{
    size_t n = 0;

    while (n < SIGN_FIELDS_MAX) {
        field[n++] = line;
        line = strchr(line, '\t');
        if (line == NULL)
            break;
        *line++ = '\0';
    }
    return n;
}

/* The header of a "sign" request (fields after the word) into out. */
static int
sign_request(char **field, size_t n, char out[WEBHOOK_SIG_HEADER_SIZE], errbuf *err)
{
    webhook_sig_key keys[2];
    size_t hex_len, len = 0;
    unsigned char *body = NULL;
    char *end;
    int64_t ts;
    int rc = RS_ERR;

    memset(keys, 0, sizeof(keys));
    if (n < 4 || n > 5) {
        errbuf_set(err, "sign takes ID TIMESTAMP BODY-HEX SECRET [PREVIOUS-SECRET]");
        goto done;
    }
    ts = strtoll(field[1], &end, 10);
    if (*field[1] == '\0' || *end != '\0') {
        errbuf_set(err, "the timestamp is not an integer");
        goto done;
    }
    hex_len = strlen(field[2]);
    body = malloc(hex_len / 2 + 1);
    if (body == NULL ||
        sodium_hex2bin(body, hex_len / 2 + 1, field[2], hex_len, NULL, &len, NULL) != 0) {
        errbuf_set(err, "the body is not hex");
        goto done;
    }
    for (size_t i = 0; i + 3 < n; i++)
        if (webhook_sig_secret_parse(field[3 + i], keys[i].bytes, &keys[i].len, err) != RS_OK)
            goto done;
    rc = webhook_sig_sign(keys, n - 3, field[0], ts, body, len, out, err);
done:
    webhook_sig_key_wipe(&keys[0]);
    webhook_sig_key_wipe(&keys[1]);
    free(body);
    return rc;
}

int
main(void)
{
    char *line = NULL, *field[SIGN_FIELDS_MAX];
    char out[WEBHOOK_SIG_HEADER_SIZE + WEBHOOK_SIG_SECRET_SIZE];
    size_t cap = 0, n;
    ssize_t got;
    errbuf err;

    while ((got = getline(&line, &cap, stdin)) >= 0) {
        int rc = RS_ERR;

        if (got > 0 && line[got - 1] == '\n')
            line[got - 1] = '\0';
        n = sign_fields(line, field);
        if (strcmp(field[0], "new") == 0 && n == 1)
            rc = webhook_sig_secret_new(out, sizeof(out), &err);
        else if (strcmp(field[0], "id") == 0 && n == 4)
            rc = webhook_sig_id(field[1], field[2], (unsigned)strtoul(field[3], NULL, 10), out,
                                &err);
        else if (strcmp(field[0], "sign") == 0)
            rc = sign_request(field + 1, n - 1, out, &err);
        else
            errbuf_set(&err, "unknown request (new, id, sign)");
        if (rc == RS_OK)
            printf("%s\n", out);
        else
            printf("error: %s\n", err.msg);
        fflush(stdout);
        sodium_memzero(line, cap);
    }
    free(line);
    return 0;
}
