/* alert: operator alerts into the mail queue (see alert.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "alert.h"
#include "log.h"

struct alert {
    char *operators;
    spool *mail_queue;
};

alert *
alert_new(const conf *cf, spool *mail_queue)
{
    alert *self = calloc(1, sizeof(*self));

    if (self == NULL)
        return NULL;
    self->operators = strdup(conf_str(cf, "operator_email"));
    self->mail_queue = mail_queue;
    if (self->operators == NULL)
        alert_destroy(&self);
    return self;
}

void
alert_destroy(alert **self_p)
{
    alert *self = *self_p;

    if (self == NULL)
        return;
    free(self->operators);
    free(self);
    *self_p = NULL;
}

int
alert_raise(alert *self, const char *cause, const char *template_name, const mailtext_var *vars,
            errbuf *err)
{
    char id[SPOOL_ID_MAX + 1];
    cJSON *m = cJSON_CreateObject(), *v;
    char *text = NULL;
    size_t n;
    int rc = RS_ERR;

    if (m == NULL)
        return errbuf_set(err, "out of memory");
    n = (size_t)snprintf(id, sizeof(id), ALERT_ID_PREFIX "%.100s", cause);
    for (size_t i = 0; i < n && id[i]; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9') || id[i] == '-' || id[i] == '_' || id[i] == '.'))
            id[i] = '_';
    cJSON_AddStringToObject(m, "kind", "alert");
    cJSON_AddStringToObject(m, "template", template_name);
    cJSON_AddStringToObject(m, "to", self->operators);
    v = cJSON_AddObjectToObject(m, "vars");
    for (const mailtext_var *var = vars; v != NULL && var->name != NULL; var++)
        cJSON_AddStringToObject(v, var->name, var->value ? var->value : "");
    text = cJSON_PrintUnformatted(m);
    if (text == NULL) {
        errbuf_set(err, "out of memory");
        goto done;
    }
    /* No key: an alert must not wait behind another message. */
    rc = spool_put(self->mail_queue, id, NULL, text, strlen(text), err);
    if (rc == 1)
        log_info("event=alert_queued alert=%s template=%s", id, template_name);
done:
    free(text);
    cJSON_Delete(m);
    return rc;
}
