/* drivers: the two queues' drivers as the queue module runs them. The factory
 * driver sends replenishment orders (factory.c); the mail driver renders a
 * template of mailtext.c and sends it through the SMTP relay (mail.c). Both tell
 * operators (alert.c) when one of their messages dies: a dead order by a
 * dead_letter alert, a dead email by a mail_dead alert naming its recipient,
 * subject and the relay's answer. A dead alert is logged, never emailed, so that
 * alerts cannot loop. */
#ifndef RESTOCK_DRIVERS_H
#define RESTOCK_DRIVERS_H

#include "alert.h"
#include "queue.h"

/* The drivers read their settings and the alert object from here; set before
 * the queues start, read-only after. */
struct drivers_context {
    const conf *cf;
    alert *alerts;
};

void drivers_init(const struct drivers_context *ctx);

extern const struct queue_driver drivers_factory;
extern const struct queue_driver drivers_mail;
/* Callbacks restock-callback stored while the database was down (delivery.h). */
extern const struct queue_driver drivers_callback;

#endif
