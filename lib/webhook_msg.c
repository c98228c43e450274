/* webhook_msg: the messages of the spool queue `webhook` (see webhook_msg.h). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timetext.h"
#include "spool.h"
#include "webhook_msg.h"

void
webhook_msg_time(const struct timespec *when, char out[WEBHOOK_MSG_TIME_SIZE])
{
    timetext_utc_us((long long)when->tv_sec * 1000000 + when->tv_nsec / 1000, out,
                    WEBHOOK_MSG_TIME_SIZE);
}

int
webhook_msg_make(const char *event_id, const char *endpoint_id, enum webhook_type type,
                 const char *payload, char id[WEBHOOK_SIG_ID_SIZE], char **body, errbuf *err)
{
    cJSON *json = NULL;
    int rc = RS_ERR;

    *body = NULL;
    if (webhook_sig_id(event_id, endpoint_id, (unsigned)type, id, err) != RS_OK)
        return RS_ERR;
    json = cJSON_CreateObject();
    if (json == NULL || cJSON_AddStringToObject(json, "webhook_id", id) == NULL ||
        cJSON_AddStringToObject(json, "endpoint_id", endpoint_id) == NULL ||
        cJSON_AddStringToObject(json, "event_id", event_id) == NULL ||
        cJSON_AddStringToObject(json, "type", webhook_endpoint_type_name(type)) == NULL ||
        cJSON_AddStringToObject(json, "payload", payload) == NULL ||
        (*body = cJSON_PrintUnformatted(json)) == NULL) {
        errbuf_set(err, "webhook message %s: out of memory", id);
        goto done;
    }
    rc = RS_OK;
done:
    cJSON_Delete(json);
    return rc;
}

char *
webhook_msg_ping_payload(const char *event_id, const char *endpoint_id, const struct timespec *when)
{
    char stamp[WEBHOOK_MSG_TIME_SIZE];
    cJSON *json = cJSON_CreateObject(), *data = NULL;
    char *text = NULL;

    webhook_msg_time(when, stamp);
    if (json != NULL && cJSON_AddStringToObject(json, "type", "ping") != NULL &&
        cJSON_AddStringToObject(json, "timestamp", stamp) != NULL &&
        (data = cJSON_AddObjectToObject(json, "data")) != NULL &&
        cJSON_AddStringToObject(data, "event_id", event_id) != NULL &&
        cJSON_AddStringToObject(data, "endpoint_id", endpoint_id) != NULL)
        text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    return text;
}

/* A field that must be a string: its value, or NULL. */
static const char *
webhook_msg_str(const cJSON *json, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, name));
}

int
webhook_msg_parse(const char *body, size_t len, struct webhook_msg *m, errbuf *err)
{
    memset(m, 0, sizeof(*m));
    m->json = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(m->json))
        return errbuf_set(err, "a webhook message is a JSON object");
    m->webhook_id = webhook_msg_str(m->json, "webhook_id");
    m->endpoint_id = webhook_msg_str(m->json, "endpoint_id");
    m->event_id = webhook_msg_str(m->json, "event_id");
    m->type = webhook_msg_str(m->json, "type");
    m->payload = webhook_msg_str(m->json, "payload");
    if (m->webhook_id == NULL || m->endpoint_id == NULL || m->event_id == NULL || m->type == NULL ||
        m->payload == NULL)
        return errbuf_set(err, "a webhook message has the strings webhook_id, endpoint_id, "
                               "event_id, type and payload");
    if (ident_parse(m->endpoint_id, m->endpoint) != 0)
        return errbuf_set(err, "a webhook message's endpoint_id is not a UUID");
    return RS_OK;
}

void
webhook_msg_clear(struct webhook_msg *m)
{
    cJSON_Delete(m->json);
    memset(m, 0, sizeof(*m));
}

int
webhook_msg_ping_put(spool *sp, const char *endpoint, char wid[WEBHOOK_SIG_ID_SIZE], errbuf *err)
{
    unsigned char bin[IDENT_BYTES];
    char event[IDENT_TEXT], *payload, *body = NULL;
    struct timespec now;
    int rc = RS_ERR;

    ident_new(bin);
    ident_format(bin, sizeof(bin), event);
    clock_gettime(CLOCK_REALTIME, &now);
    payload = webhook_msg_ping_payload(event, endpoint, &now);
    if (payload == NULL) {
        errbuf_set(err, "out of memory");
        goto done;
    }
    if (webhook_msg_make(event, endpoint, WEBHOOK_PING, payload, wid, &body, err) != RS_OK ||
        spool_put(sp, wid, endpoint, body, strlen(body), err) < 0)
        goto done;
    rc = RS_OK;
done:
    free(body);
    free(payload);
    return rc;
}
