/* webhook_msg: a message of the spool queue `webhook` (docs/design.md §4.14), as
 * the outbox fan-out and `restockctl webhook ping` write it and the worker's
 * delivery driver reads it. Its spool id is the webhook-id (webhook_sig_id), its
 * key the endpoint id (so that one endpoint's events go out in order, one at a
 * time), no claim; its body a JSON object
 *   {"webhook_id":"msg_…","endpoint_id":"<uuid>","event_id":"<uuid>",
 *    "type":"order.opened","payload":"<the exact text POSTed>"}
 * where payload is {"type":…,"timestamp":"<RFC 3339 UTC, µs, Z>","data":{…}},
 * kept as text so that every retry signs and sends the same bytes. */
#ifndef RESTOCK_WEBHOOK_MSG_H
#define RESTOCK_WEBHOOK_MSG_H

#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "errbuf.h"
#include "ident.h"
#include "spool.h"
#include "webhook_endpoint.h"
#include "webhook_sig.h"

/* "2026-12-07T07:30:12.123456Z" and the NUL. */
#define WEBHOOK_MSG_TIME_SIZE 28

/* A time as a payload's timestamp: UTC, RFC 3339, microseconds, 'Z'. */
void webhook_msg_time(const struct timespec *when, char out[WEBHOOK_MSG_TIME_SIZE]);

/* The message of event event_id of type to endpoint endpoint_id (UUIDs as
 * canonical text) with payload: its id (the webhook-id) into id, its body into
 * *body (malloc'd, NUL-terminated; the caller frees it). RS_ERR when an id is not
 * a UUID or out of memory. */
int webhook_msg_make(const char *event_id, const char *endpoint_id, enum webhook_type type,
                     const char *payload, char id[WEBHOOK_SIG_ID_SIZE], char **body, errbuf *err);

/* The payload of a ping (`restockctl webhook ping`) sent at when:
 * {"type":"ping","timestamp":…,"data":{"event_id":…,"endpoint_id":…}}, malloc'd;
 * NULL when out of memory. */
char *webhook_msg_ping_payload(const char *event_id, const char *endpoint_id,
                               const struct timespec *when);

/* Puts a ping for endpoint (canonical UUID text) into the webhook queue sp, as
 * the sweep's fan-out would put an event: its webhook-id into wid. RS_OK, or
 * RS_ERR (out of memory, the spool could not be written). */
int webhook_msg_ping_put(spool *sp, const char *endpoint, char wid[WEBHOOK_SIG_ID_SIZE],
                         errbuf *err);

/* A message read back: pointers into json, valid until webhook_msg_clear. */
struct webhook_msg {
    cJSON *json;
    const char *webhook_id, *endpoint_id, *event_id, *type, *payload;
    unsigned char endpoint[IDENT_BYTES];
};

/* Reads a body of len bytes: RS_ERR naming what is missing or wrong (a field
 * that is not a string, an endpoint id that is not a UUID). What could be read
 * stays in m for messages; clear m either way. */
int webhook_msg_parse(const char *body, size_t len, struct webhook_msg *m, errbuf *err);
void webhook_msg_clear(struct webhook_msg *m);

#endif
