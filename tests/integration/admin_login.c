/* admin_login: the admin API's login and sessions as restock-admin calls them
 * (lib/admin_account, lib/admin_session), for tests/integration/admin_accounts.py,
 * on the database of RESTOCK_CONFIG. Not a unit test (it needs a database).
 *   admin_login login NAME          password: one line of stdin; prints
 *                                    "result=<result> account=<id>"
 *   admin_login session ACCOUNT_ID  prints "token=<token> csrf=<csrf> expires=<time>"
 *   admin_login lookup TOKEN        prints "state=none|valid|expired [account=<id>]"
 *   admin_login logout TOKEN        prints "deleted=1|0"
 * It prints a session's token, which only a test may do. Exit status 1 with the
 * reason on stderr when the database fails. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_account.h"
#include "admin_session.h"
#include "conf.h"
#include "db.h"

static int
admin_login_run(admin_account *accounts, admin_session *sessions, int argc, char **argv,
                errbuf *err)
{
    static const char *const states[] = {"none", "valid", "expired"};
    char line[ADMIN_PASSWORD_MAX + 2], token[ADMIN_SESSION_TOKEN_LEN + 1];
    struct admin_session_info info = {0};
    enum admin_login_result result;
    long long id;
    int rc;

    if (argc == 3 && strcmp(argv[1], "login") == 0) {
        if (fgets(line, sizeof(line), stdin) == NULL)
            return errbuf_set(err, "no password on stdin");
        line[strcspn(line, "\r\n")] = '\0';
        if (admin_account_login(accounts, argv[2], line, &result, &id, err) != RS_OK)
            return RS_ERR;
        printf("result=%s account=%lld\n", admin_login_result_name(result), id);
        return RS_OK;
    }
    if (argc == 3 && strcmp(argv[1], "session") == 0) {
        if (admin_session_create(sessions, strtoll(argv[2], NULL, 10), "127.0.0.1", token, &info,
                                 err) != RS_OK)
            return RS_ERR;
        printf("token=%s csrf=%s expires=%s\n", token, info.csrf, info.expires_at);
        return RS_OK;
    }
    if (argc == 3 && strcmp(argv[1], "lookup") == 0) {
        if (admin_session_token_parse(argv[2], strlen(argv[2]), token) != RS_OK) {
            printf("state=none\n");
            return RS_OK;
        }
        rc = admin_session_lookup(sessions, token, &info, err);
        if (rc < 0)
            return RS_ERR;
        printf("state=%s account=%lld\n", states[rc], info.account_id);
        return RS_OK;
    }
    if (argc == 3 && strcmp(argv[1], "logout") == 0) {
        rc = admin_session_delete(sessions, argv[2], err);
        if (rc < 0)
            return RS_ERR;
        printf("deleted=%d\n", rc);
        return RS_OK;
    }
    return errbuf_set(err, "usage: admin_login login NAME | session ID | lookup TOKEN | "
                           "logout TOKEN");
}

int
main(int argc, char **argv)
{
    admin_account *accounts = NULL;
    admin_session *sessions = NULL;
    errbuf err = {{0}};
    db *conn = NULL;
    conf *cf;
    int rc = RS_ERR;

    cf = conf_new(NULL, &err);
    conn = cf ? db_new(cf, 0) : NULL;
    accounts = conn ? admin_account_new(cf, conn, &err) : NULL;
    sessions = accounts ? admin_session_new(cf, conn, &err) : NULL;
    if (sessions != NULL)
        rc = admin_login_run(accounts, sessions, argc, argv, &err);
    if (rc != RS_OK)
        fprintf(stderr, "admin_login: %s\n", err.msg);
    admin_session_destroy(&sessions);
    admin_account_destroy(&accounts);
    db_destroy(&conn);
    conf_destroy(&cf);
    return rc == RS_OK ? 0 : 1;
}
