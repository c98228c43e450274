/* mailtext: every email text restock sends, in one table of templates (Korean, with
 * an English line), and the renderer that fills their {named} placeholders. */
#ifndef RESTOCK_MAILTEXT_H
#define RESTOCK_MAILTEXT_H

#include <stddef.h>
#include <time.h>

#include "errbuf.h"

/* The emails. The names (mailtext_name) are stable: a queued message may store one. */
enum mailtext_id {
    MAILTEXT_AD_PAUSE,         /* ad manager: product sold out, pause its ad */
    MAILTEXT_AD_RESUME,        /* ad manager: product back in stock, resume its ad */
    MAILTEXT_DEAD_LETTER,      /* operators: a message went to dead/ */
    MAILTEXT_CALLBACK_MISSING, /* operators: an order's factory callback never came */
    MAILTEXT_CORRUPT,          /* operators: a file went to corrupt/ */
    MAILTEXT_SPOOL_FAULT,      /* operators: the spool's disk failed a write, fsync or rename */
    MAILTEXT_DELAY_WARNING,    /* operators: the oldest waiting message is too old */
    MAILTEXT_OVER_DELIVERY,    /* operators: a callback claimed more than ordered */
    MAILTEXT_MAIL_DEAD,        /* operators: an email went to dead/ */
    MAILTEXT_WEBHOOK_DEAD,     /* operators: a webhook delivery went to dead/ */
    MAILTEXT_WEBHOOK_DISABLED, /* operators: the worker disabled a webhook endpoint */
    MAILTEXT_COUNT
};

/* One placeholder's value; arrays of them end with {NULL, NULL}. */
typedef struct mailtext_var {
    const char *name;
    const char *value;
} mailtext_var;

/* Placeholders the templates use, with what the caller puts in them:
 *   product_name  product.name            sku        product.sku
 *   quantity      units delivered         order_id   replenishment order id (UUID)
 *   time          when it happened, as the reader's local time ("2025-01-14 10:00 KST")
 *   factory_name  factory.name            factory_id factory identifier (FF-500293)
 *   sent_at       when the order went to the factory
 *   queue         spool queue (factory, mail)
 *   message_id    spool message id, as `restockctl dlq list` shows it
 *   what          one line saying what the message was ("공장 주문 CP-502101 x 10")
 *   attempts      delivery attempts made   last_error  the last attempt's error
 *   path          a file's path            age         how long ("17분")
 *   count         messages waiting     ordered     units ordered
 *   recipient     a dead email's To      subject     its subject
 *   reason        why it died (the relay's answer)
 *   turned_away   checkouts refused while sold out (on the order)
 *   turned_units  the units they asked for
 *   endpoint      a webhook endpoint's id   url   its URL (no query)
 *   type          a webhook event's type ("order.opened")
 *   status        what disabled an endpoint ("gone", "failing")
 * A {{ in a template is a literal {. */

/* Renders template id: *subject (one line) and *body (UTF-8, LF line ends), both
 * malloc'd, the caller frees them. Fails, naming the template and the placeholder,
 * when the template uses a placeholder that is not in the list above or that
 * vars does not give a value (a value may be ""). Line breaks and tabs in values
 * become spaces in the subject. Values are copied as they are into the body. */
int mailtext_render(enum mailtext_id id, const mailtext_var *vars, char **subject, char **body,
                    errbuf *err);

/* Fills one text with vars as mailtext_render fills a body. For the unit test:
 * restock's texts belong in the table of mailtext.c, nowhere else. */
int mailtext_expand(const char *text, const mailtext_var *vars, char **out, errbuf *err);

/* "ad_pause", "ad_resume", "dead_letter", "callback_missing", "corrupt",
 * "spool_fault", "delay_warning", "over_delivery", "mail_dead", "webhook_dead",
 * "webhook_disabled"; NULL for an id out
 * of range. */
const char *mailtext_name(enum mailtext_id id);

/* The id of a name, or -1. */
int mailtext_find(const char *name);

#endif
