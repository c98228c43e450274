/* alert: operator alerts, queued as emails in the worker's mail queue. An alert
 * is named by its cause (the dead message, the late order, the corrupt file), and
 * the spool keeps one message per name, so each cause is told once, not once per
 * retry or per sweep. Thread-safe: it only reads its settings and puts. */
#ifndef RESTOCK_ALERT_H
#define RESTOCK_ALERT_H

#include "conf.h"
#include "errbuf.h"
#include "mailtext.h"
#include "spool.h"

typedef struct alert alert;

/* An alert's message id in the mail queue is this prefix and its cause. */
#define ALERT_ID_PREFIX "alert-"

alert *alert_new(const conf *cf, spool *mail_queue);
void alert_destroy(alert **self_p);

/* Queues the email `template` ("dead_letter", …) with vars to the operators.
 * cause names the alert ([A-Za-z0-9._-] and at most 100 characters; others are
 * replaced). Returns 1 when queued, 0 when this cause was told already, or -1. */
int alert_raise(alert *self, const char *cause, const char *template_name, const mailtext_var *vars,
                errbuf *err);

#endif
