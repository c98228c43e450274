/* Unit test of audit's pure parts (no database): the page limits of a read
 * and restockctl's actor and source. The rows themselves (written in the
 * change's transaction, append-only) are tests/integration/audit.py. */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "tap.h"

static void
test_audit(void)
{
    errbuf err = {""};
    char actor[AUDIT_ACTOR_MAX + 1], source[AUDIT_SOURCE_MAX + 1];

    ok(audit_check_page(1, 0, &err) == RS_OK, "limit 1 from the newest");
    ok(audit_check_page(AUDIT_LIMIT_MAX, 42, &err) == RS_OK, "the largest limit, before 42");
    ok(audit_check_page(0, 0, &err) == RS_ERR && strstr(err.msg, "limit"), "limit 0 refused (%s)",
       err.msg);
    ok(audit_check_page(AUDIT_LIMIT_MAX + 1, 0, &err) == RS_ERR, "limit over the largest refused");
    ok(audit_check_page(10, -1, &err) == RS_ERR && strstr(err.msg, "before"),
       "a negative before refused (%s)", err.msg);

    audit_local_who(actor, source);
    ok(strncmp(actor, "restockctl:", 11) == 0 && actor[11] != '\0', "actor %s", actor);
    ok(strcmp(source, "local") == 0 || strncmp(source, "local:/dev/", 11) == 0, "source %s",
       source);
    ok(isatty(STDIN_FILENO) || strcmp(source, "local") == 0, "no terminal: local alone");
}

int
main(void)
{
    test_audit();
    return done_testing();
}
