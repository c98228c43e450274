/* change: the changes an operator makes through restockctl or the admin API
 * (restock-admin), each in one transaction with its row of the audit trail
 * (lib/audit), so that a change is never without its row nor a row without its
 * change. The tables' owners (reorder, order, api_client, webhook_endpoint) do
 * the SQL on the caller's connection; this module joins their work and the
 * audit row in one transaction on that connection (retried as a whole on a
 * deadlock), and says what changed: before and after as JSON, never a secret
 * or a key (a rotated secret is written as "rotated"). Accounts' changes are
 * audited by lib/admin_account itself. Each function answers as the owner's
 * function it calls, with who as the actor and source. A change that changed
 * nothing (already so) writes no row. */
#ifndef RESTOCK_CHANGE_H
#define RESTOCK_CHANGE_H

#include "api_client.h"
#include "audit.h"
#include "db.h"
#include "errbuf.h"
#include "order.h"
#include "reorder.h"
#include "webhook_endpoint.h"

/* product.set: reorder_set, with before and after the product's settings. */
int change_product_set(db *conn, reorder *policy, const struct audit_who *who, const char *sku,
                       int argc, char **argv, struct reorder_line *out, errbuf *err);

/* order.fulfil: order_fulfil (a repeated or refused delivery writes no row). */
int change_order_fulfil(db *conn, order *orders, const struct audit_who *who, const char *order_id,
                        long long quantity, int flags, struct order_fulfil_outcome *out,
                        errbuf *err);

/* dlq.redrive, written and committed BEFORE the caller renames the message
 * back to waiting (a spool rename is no part of a transaction): with the
 * reopening of its failed order (order_id; NULL: none, orders may then be
 * NULL). A rename that then fails leaves a row that says more than happened;
 * the message stays dead and the operator redrives it again (docs/design.md). */
int change_redrive(db *conn, order *orders, const struct audit_who *who, const char *queue,
                   const char *message_id, const char *order_id, errbuf *err);

/* client.add and client.revoke: api_client_add and api_client_revoke; the
 * target is the client's id, never its key. */
long long change_client_add(db *conn, api_client *clients, const struct audit_who *who,
                            const char *name, char key[API_CLIENT_KEY_LEN + 1], errbuf *err);
int change_client_revoke(db *conn, api_client *clients, const struct audit_who *who,
                         const char *id_or_name, long long *id, errbuf *err);

/* webhook.add, .disable (by an operator), .enable and .rotate: the
 * webhook_endpoint functions; the target is the endpoint's id. */
int change_webhook_add(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                       const char *url, unsigned events, const struct webhook_endpoint_key *key,
                       char id[IDENT_TEXT], char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1],
                       errbuf *err);
int change_webhook_disable(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                           const char *id, const char *reason, errbuf *err);
int change_webhook_enable(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                          const char *id, errbuf *err);
int change_webhook_rotate(db *conn, webhook_endpoint *hooks, const struct audit_who *who,
                          const char *id, const struct webhook_endpoint_key *key,
                          char secret[WEBHOOK_ENDPOINT_SECRET_LEN + 1], errbuf *err);

#endif
