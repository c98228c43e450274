/* Unit test of webhook_endpoint's pure parts (no database): an endpoint's URL
 * (http or https, a host, a port in range, no credentials, no fragment, printable
 * ASCII, at most 2048 bytes); the event types and a --events list (blanks and
 * repeats taken, an unknown or empty type and ping refused with the known types
 * named); the secret's form (whsec_ and base64 of 32 bytes, original alphabet);
 * the sealing: a secret sealed to the public half of a key pair opens with that
 * pair only, not with another key nor once a byte of the box changed; a private
 * key and a public key file in hex, malformed ones refused without their value. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "tap.h"
#include "webhook_endpoint.h"

static void
url_ok(const char *url)
{
    errbuf err = {""};

    ok(webhook_endpoint_url_check(url, &err) == RS_OK, "taken: %s (%s)", url, err.msg);
}

static void
url_refused(const char *url, const char *why, const char *name)
{
    errbuf err = {""};

    if (ok(webhook_endpoint_url_check(url, &err) == RS_ERR, "refused: %s", name))
        ok(strstr(err.msg, why) != NULL, "  saying \"%s\": %s", why, err.msg);
}

static void
test_urls(void)
{
    char *longest = malloc(WEBHOOK_ENDPOINT_URL_MAX + 2);

    url_ok("https://hooks.example.com/restock");
    url_ok("http://127.0.0.1:8080/hook?x=1&y=%20");
    url_ok("HTTPS://Hooks.Example.com");
    url_ok("http://[::1]:9000/in");
    url_ok("https://erp.example:65535/");
    url_refused("ftp://example.com/", "https:// or http://", "another scheme");
    url_refused("example.com/hook", "https:// or http://", "no scheme");
    url_refused("https:///hook", "no host", "no host");
    url_refused("https://:8080/hook", "no host", "a port without a host");
    url_refused("https://user:pw@example.com/", "user or password", "a password in it");
    url_refused("https://token@example.com/", "user or password", "a user in it");
    url_refused("https://example.com:0/", "port", "port 0");
    url_refused("https://example.com:65536/", "port", "port 65536");
    url_refused("https://example.com:99999999999999999999/", "port", "a huge port");
    url_refused("https://example.com:/", "empty port", "an empty port");
    url_refused("https://example.com:8x/", "port", "a port with a letter");
    url_refused("https://exa mple.com/", "blank", "a blank");
    url_refused("https://example.com/a\nb", "control", "a line feed");
    url_refused("https://ex\xc3\xa4mple.com/", "non-ASCII", "a name outside ASCII");
    url_refused("https://example.com/#top", "fragment", "a fragment");
    url_refused("https://exa%41mple.com/", "host", "a percent in the host");
    url_refused("https://[::1/", "closing", "an unclosed IPv6 address");
    url_refused("https://[::g]/", "IPv6", "not an IPv6 address");
    url_refused("https://[::1]x/", "after its IPv6", "text after the IPv6 address");
    /* The longest taken, one more refused. */
    memcpy(longest, "https://e.example/", 18);
    memset(longest + 18, 'a', WEBHOOK_ENDPOINT_URL_MAX - 18);
    longest[WEBHOOK_ENDPOINT_URL_MAX] = '\0';
    url_ok(longest);
    longest[WEBHOOK_ENDPOINT_URL_MAX] = 'a';
    longest[WEBHOOK_ENDPOINT_URL_MAX + 1] = '\0';
    url_refused(longest, "longer than 2048", "2049 bytes");
    free(longest);
}

static void
test_types(void)
{
    char list[WEBHOOK_ENDPOINT_EVENTS_MAX + 1];
    unsigned set = 99;
    errbuf err = {""};

    is_str(webhook_endpoint_type_name(WEBHOOK_STOCK_REORDER_POINT), "stock.reorder_point",
           "the first type");
    is_str(webhook_endpoint_type_name(WEBHOOK_HOLD_EXPIRED), "hold.expired", "the last one");
    is_str(webhook_endpoint_type_name(WEBHOOK_PING), "ping", "ping");
    is_int(webhook_endpoint_type_parse("order.sent"), WEBHOOK_ORDER_SENT, "a name parsed");
    is_int(webhook_endpoint_type_parse("order.Sent"), -1, "names are lower case");
    for (int i = 0; i < WEBHOOK_NTYPES; i++)
        if (webhook_endpoint_type_parse(webhook_endpoint_type_name((enum webhook_type)i)) != i)
            ok(0, "type %d does not parse back", i);

    ok(webhook_endpoint_events_parse(" stock.sold_out , order.sent,stock.sold_out", &set, &err) ==
           RS_OK,
       "a list with blanks and a repeat (%s)", err.msg);
    is_int(set, (1u << WEBHOOK_STOCK_SOLD_OUT) | (1u << WEBHOOK_ORDER_SENT), "  its set");
    webhook_endpoint_events_format(set, list, sizeof(list));
    is_str(list, "stock.sold_out,order.sent", "  as the column holds it: in the types' order");
    webhook_endpoint_events_format((1u << WEBHOOK_PING) - 1, list, sizeof(list));
    is_str(list,
           "stock.reorder_point,stock.sold_out,stock.arrived,order.opened,order.sent,"
           "order.fulfilled,order.failed,order.overdue,delivery.refused,hold.expired",
           "every subscribable type, the contract's ten");

    ok(webhook_endpoint_events_parse("order.sent,order.lost", &set, &err) == RS_ERR,
       "an unknown type refused");
    ok(strstr(err.msg, "unknown type \"order.lost\"") != NULL && strstr(err.msg, list) != NULL,
       "  naming it and every known type: %s", err.msg);
    is_int(set, 0, "  an empty set");
    ok(webhook_endpoint_events_parse("order.sent,,hold.expired", &set, &err) == RS_ERR &&
           strstr(err.msg, "empty type") != NULL,
       "an empty type refused: %s", err.msg);
    ok(webhook_endpoint_events_parse("", &set, &err) == RS_ERR, "an empty list refused");
    ok(webhook_endpoint_events_parse("ping", &set, &err) == RS_ERR &&
           strstr(err.msg, "webhook ping") != NULL,
       "ping is not subscribed to: %s", err.msg);
}

static void
test_secret(void)
{
    char a[WEBHOOK_ENDPOINT_SECRET_LEN + 1], b[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
    unsigned char raw[64];
    size_t len = 0;

    webhook_sig_secret_new(a, sizeof(a), NULL);
    webhook_sig_secret_new(b, sizeof(b), NULL);
    is_int((long long)strlen(a), 50, "a secret is 50 characters");
    ok(strncmp(a, "whsec_", 6) == 0, "starting whsec_");
    ok(sodium_base642bin(raw, sizeof(raw), a + 6, strlen(a + 6), NULL, &len, NULL,
                         sodium_base64_VARIANT_ORIGINAL) == 0 &&
           len == 32,
       "then base64 (original alphabet, padded) of 32 bytes");
    ok(strcmp(a, b) != 0, "two secrets differ");
}

static void
test_sealing(void)
{
    struct webhook_endpoint_key worker, other, public_only;
    char hex[WEBHOOK_ENDPOINT_KEY_HEX + 1], secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
    char opened[WEBHOOK_ENDPOINT_SECRET_LEN + 1], path[] = "/tmp/webhook_key_test.XXXXXX";
    unsigned char sk[32], box[128];
    size_t len;
    errbuf err = {""};
    FILE *f;
    int fd;

    randombytes_buf(sk, sizeof(sk));
    sodium_bin2hex(hex, sizeof(hex), sk, sizeof(sk));
    ok(webhook_endpoint_key_private(hex, &worker, &err) == RS_OK, "a private key in hex (%s)",
       err.msg);
    ok(webhook_endpoint_key_private("", &other, &err) == RS_ERR && strstr(err.msg, "not set"),
       "an empty one: %s", err.msg);
    hex[5] = 'x';
    ok(webhook_endpoint_key_private(hex, &other, &err) == RS_ERR && strstr(err.msg, "malformed") &&
           strstr(err.msg, hex) == NULL,
       "a malformed one, not quoted: %s", err.msg);
    hex[63] = '\0';
    ok(webhook_endpoint_key_private(hex, &other, &err) == RS_ERR, "63 digits refused");
    randombytes_buf(sk, sizeof(sk));
    sodium_bin2hex(hex, sizeof(hex), sk, sizeof(sk));
    webhook_endpoint_key_private(hex, &other, &err);

    /* The public half, written and read back as restockctl does: no private key. */
    fd = mkstemp(path);
    close(fd);
    ok(webhook_endpoint_key_public_write(path, &worker, &err) == RS_OK, "public key written (%s)",
       err.msg);
    ok(webhook_endpoint_key_public_read(path, &public_only, &err) == RS_OK, "and read (%s)",
       err.msg);
    ok(memcmp(public_only.pk, worker.pk, 32) == 0 && sodium_is_zero(public_only.sk, 32),
       "  the public half alone");
    f = fopen(path, "w");
    fputs("abc\n", f);
    fclose(f);
    ok(webhook_endpoint_key_public_read(path, &public_only, &err) == RS_ERR &&
           strstr(err.msg, path) != NULL,
       "a malformed public key file refused: %s", err.msg);
    unlink(path);
    ok(webhook_endpoint_key_public_read(path, &public_only, &err) == RS_ERR &&
           strstr(err.msg, "restockctl webhook key") != NULL,
       "a missing one says how it is made: %s", err.msg);
    webhook_endpoint_key_public_read("/dev/null", &public_only, &err);
    memcpy(public_only.pk, worker.pk, 32);

    webhook_sig_secret_new(secret, sizeof(secret), NULL);
    ok(webhook_endpoint_seal(secret, &public_only, box, sizeof(box), &len, &err) == RS_OK,
       "sealed with the public key only (%s)", err.msg);
    is_int((long long)len, 50 + 48, "  50 bytes and the box's 48");
    ok(memmem(box, len, secret + 6, 20) == NULL, "  the secret is not in the box in clear");
    ok(webhook_endpoint_unseal(box, len, &worker, opened, &err) == RS_OK,
       "opened by the worker (%s)", err.msg);
    is_str(opened, secret, "  the same secret");
    ok(webhook_endpoint_unseal(box, len, &other, opened, &err) == RS_ERR && opened[0] == '\0',
       "not by another key: %s", err.msg);
    ok(webhook_endpoint_unseal(box, len, &public_only, opened, &err) == RS_ERR,
       "not by the public key alone");
    box[len - 1] ^= 1;
    ok(webhook_endpoint_unseal(box, len, &worker, opened, &err) == RS_ERR,
       "not once a byte changed");
    ok(webhook_endpoint_unseal(box, 10, &worker, opened, &err) == RS_ERR, "nor a short box");
    ok(webhook_endpoint_seal(secret, &public_only, box, 60, &len, &err) == RS_ERR,
       "a box too small refused");
}

int
main(void)
{
    errbuf err = {""};

    if (webhook_endpoint_init(&err) != RS_OK) {
        diag("%s", err.msg);
        return 1;
    }
    test_urls();
    test_types();
    test_secret();
    test_sealing();
    return done_testing();
}
