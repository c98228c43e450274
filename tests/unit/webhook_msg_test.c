/* Unit test of webhook_msg: a message made and read back (its id the
 * webhook-id of event, endpoint and type; the payload kept as the exact text);
 * the payload's timestamp (RFC 3339, UTC, microseconds, Z); a ping's payload;
 * malformed bodies refused saying what is missing. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "webhook_msg.h"

#define EVENT    "0b6c8e2a-4f0e-4d8c-9a51-3b1f5e0c7d21"
#define ENDPOINT "0190c0de-0000-7000-8000-000000000001"

int
main(void)
{
    errbuf err = {{0}};
    char id[WEBHOOK_SIG_ID_SIZE], want[WEBHOOK_SIG_ID_SIZE], stamp[WEBHOOK_MSG_TIME_SIZE];
    char *body = NULL, *ping;
    struct webhook_msg m;
    struct timespec when = {1796629264, 350825464};
    const char *payload =
        "{\"type\":\"order.opened\",\"data\":{\"note\":\"\\\"quoted\\\" \\u00e9\"}}";

    webhook_msg_time(&when, stamp);
    is_str(stamp, "2026-12-07T07:41:04.350825Z", "a timestamp: RFC 3339, UTC, microseconds, Z");
    when.tv_nsec = 999;
    webhook_msg_time(&when, stamp);
    is_str(stamp, "2026-12-07T07:41:04.000000Z", "  microseconds always six digits");

    ok(webhook_msg_make(EVENT, ENDPOINT, WEBHOOK_ORDER_OPENED, payload, id, &body, &err) == RS_OK,
       "a message made: %s", err.msg);
    webhook_sig_id(EVENT, ENDPOINT, WEBHOOK_ORDER_OPENED, want, &err);
    is_str(id, want, "its id is the webhook-id of (event, endpoint, type)");
    ok(webhook_msg_parse(body, strlen(body), &m, &err) == RS_OK, "read back: %s", err.msg);
    ok(m.webhook_id && strcmp(m.webhook_id, id) == 0 && strcmp(m.endpoint_id, ENDPOINT) == 0 &&
           strcmp(m.event_id, EVENT) == 0 && strcmp(m.type, "order.opened") == 0,
       "  its fields as made");
    is_str(m.payload, payload, "  the payload byte for byte (what is signed and sent)");
    webhook_msg_clear(&m);
    free(body);

    ok(webhook_msg_make("not-a-uuid", ENDPOINT, WEBHOOK_PING, "{}", id, &body, &err) == RS_ERR &&
           body == NULL,
       "an event id that is not a UUID: refused");

    when.tv_nsec = 0;
    ping = webhook_msg_ping_payload(EVENT, ENDPOINT, &when);
    is_str(
        ping,
        "{\"type\":\"ping\",\"timestamp\":\"2026-12-07T07:41:04.000000Z\",\"data\":{\"event_id\":"
        "\"" EVENT "\",\"endpoint_id\":\"" ENDPOINT "\"}}",
        "a ping's payload: type, timestamp, data.event_id and endpoint_id");
    free(ping);

    {
        static const char *const bad[] = {
            "[]",
            "{\"webhook_id\":\"msg_x\",\"endpoint_id\":\"" ENDPOINT "\",\"event_id\":\"" EVENT
            "\",\"type\":\"ping\"}",
            "{\"webhook_id\":\"msg_x\",\"endpoint_id\":\"nope\",\"event_id\":\"" EVENT
            "\",\"type\":\"ping\",\"payload\":\"{}\"}",
            "{\"webhook_id\":1,\"endpoint_id\":\"" ENDPOINT "\",\"event_id\":\"" EVENT
            "\",\"type\":\"ping\",\"payload\":\"{}\"}",
            "not json",
        };
        static const char *const why[] = {"JSON object", "payload", "not a UUID", "webhook_id",
                                          "JSON object"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            err.msg[0] = '\0';
            ok(webhook_msg_parse(bad[i], strlen(bad[i]), &m, &err) == RS_ERR &&
                   strstr(err.msg, why[i]) != NULL,
               "malformed body %zu refused: %s", i, err.msg);
            webhook_msg_clear(&m);
        }
    }
    return done_testing();
}
