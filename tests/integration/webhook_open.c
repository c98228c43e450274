/* webhook_open: opens webhook endpoints' secrets as the worker will, for
 * tests/integration/webhooks_ctl.py: the configuration of RESTOCK_CONFIG with its
 * credential webhook_key (the worker's private key), the endpoints of the
 * database through lib/webhook_endpoint. For each endpoint id argument, one line
 * "ID CURRENT PREVIOUS" ("-" for no previous secret, or for no such endpoint:
 * "ID missing"). With --subscribed TYPE instead, the ids of the enabled
 * endpoints subscribed to TYPE, one a line (the fan-out). Exit status 1 with the reason on stderr
 * when a secret does not open. Not a unit test (it needs a database); it prints secrets, which only
 * a test may do. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "db.h"
#include "ident.h"
#include "webhook_endpoint.h"

static void
webhook_open_id(void *arg, const unsigned char id[IDENT_BYTES])
{
    char text[IDENT_TEXT];

    (void)arg;
    ident_format(id, IDENT_BYTES, text);
    printf("%s\n", text);
}

int
main(int argc, char **argv)
{
    char current[WEBHOOK_ENDPOINT_SECRET_LEN + 1], previous[WEBHOOK_ENDPOINT_SECRET_LEN + 1];
    struct webhook_endpoint_key key;
    webhook_endpoint *hooks = NULL;
    errbuf err = {{0}};
    db *conn = NULL;
    conf *cf;
    int rc = 1;

    cf = conf_new(NULL, &err);
    if (cf == NULL ||
        webhook_endpoint_key_private(conf_str(cf, "webhook_key"), &key, &err) != RS_OK)
        goto out;
    conn = db_new(cf, 0);
    hooks = conn ? webhook_endpoint_new(conn, &err) : NULL;
    if (hooks == NULL)
        goto out;
    if (argc == 3 && strcmp(argv[1], "--subscribed") == 0) {
        int type = webhook_endpoint_type_parse(argv[2]);
        if (type < 0)
            errbuf_set(&err, "unknown type %s", argv[2]);
        else if (webhook_endpoint_subscribed(hooks, (enum webhook_type)type, webhook_open_id, NULL,
                                             &err) == RS_OK)
            rc = 0;
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        unsigned char id[IDENT_BYTES];
        int found;
        if (ident_parse(argv[i], id) != 0) {
            errbuf_set(&err, "%s is not an id", argv[i]);
            goto out;
        }
        found = webhook_endpoint_secrets(hooks, id, conf_int(cf, "webhook_rotation_overlap"), &key,
                                         current, previous, &err);
        if (found < 0)
            goto out;
        if (found == 0)
            printf("%s missing\n", argv[i]);
        else
            printf("%s %s %s\n", argv[i], current, previous[0] ? previous : "-");
    }
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "webhook_open: %s\n", err.msg);
    webhook_endpoint_destroy(&hooks);
    db_destroy(&conn);
    conf_destroy(&cf);
    return rc;
}
