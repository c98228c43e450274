/* Unit test of hostlist: db_host's "host[:port],…", and the configuration errors
 * that name the key. */
#include "config.h"

#include <stdlib.h>

#include "conf.h"
#include "hostlist.h"
#include "tap.h"

static void
bad(const char *text, const char *want)
{
    errbuf err = {{0}};
    hostlist *hl = hostlist_new(text, 3306, &err);

    ok(hl == NULL, "\"%s\" is refused", text);
    ok(strstr(err.msg, want) != NULL, "  saying \"%s\": %s", want, err.msg);
    hostlist_destroy(&hl);
}

static void
bad_conf(const char *value, const char *want)
{
    errbuf err = {{0}};
    conf *cf;

    setenv("RESTOCK_DB_HOST", value, 1);
    cf = conf_new("/dev/null", &err);
    ok(cf == NULL, "db_host = \"%s\": the configuration does not load", value);
    ok(strstr(err.msg, "db_host") != NULL && strstr(err.msg, want) != NULL,
       "  the error names the key and says \"%s\": %s", want, err.msg);
    conf_destroy(&cf);
    unsetenv("RESTOCK_DB_HOST");
}

int
main(void)
{
    errbuf err = {{0}};
    hostlist *hl;
    conf *cf;

    unsetenv("RESTOCK_CONFIG");
    unsetenv("RESTOCK_DB_HOST");

    hl = hostlist_new("localhost", 3306, &err);
    if (ok(hl != NULL, "one host (%s)", err.msg)) {
        is_int(hostlist_count(hl), 1, "one item");
        is_str(hostlist_host(hl, 0), "localhost", "its host");
        is_int(hostlist_port(hl, 0), 3306, "the default port");
        is_str(hostlist_name(hl, 0), "localhost:3306", "its name");
    }
    hostlist_destroy(&hl);
    ok(hl == NULL, "destroy clears the pointer");
    hostlist_destroy(&hl);

    hl = hostlist_new(" db1:3307, 10.0.0.2 ,db3.example:13306,[::1]:3308,fe80::1", 3306, &err);
    if (ok(hl != NULL, "five hosts (%s)", err.msg)) {
        is_int(hostlist_count(hl), 5, "five items");
        is_str(hostlist_host(hl, 0), "db1", "first host, trimmed");
        is_int(hostlist_port(hl, 0), 3307, "its port");
        is_str(hostlist_host(hl, 1), "10.0.0.2", "an address without a port");
        is_int(hostlist_port(hl, 1), 3306, "takes the default port");
        is_str(hostlist_name(hl, 2), "db3.example:13306", "third, by name");
        is_str(hostlist_host(hl, 3), "::1", "an IPv6 address in brackets");
        is_int(hostlist_port(hl, 3), 3308, "  with its port");
        is_str(hostlist_name(hl, 3), "[::1]:3308", "  named in brackets");
        is_str(hostlist_host(hl, 4), "fe80::1", "an IPv6 address without brackets has no port");
        is_int(hostlist_port(hl, 4), 3306, "  and takes the default");
    }
    hostlist_destroy(&hl);

    hl = hostlist_new(" ", 3306, &err);
    ok(hl != NULL && hostlist_count(hl) == 1 && strcmp(hostlist_host(hl, 0), "localhost") == 0,
       "an empty db_host is localhost, as the client library takes it");
    hostlist_destroy(&hl);
    bad("db1,,db2", "item 2 of the host list is empty");
    bad("db1, ", "item 2 of the host list is empty");
    bad(",db1", "item 1 of the host list is empty");
    bad("db1:x", "the port must be a number from 1 to 65535");
    bad("db1:0", "the port must be a number from 1 to 65535");
    bad("db1:65536", "the port must be a number from 1 to 65535");
    bad("db1:33o6", "the port must be a number from 1 to 65535");
    bad("db1:", "no port after ':'");
    bad(":3306", "no host before the port");
    bad("[::1", "expected [address] or [address]:port");
    bad("[::1]x", "expected [address] or [address]:port");
    bad("db 1", "not a host name");
    bad("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 hosts");

    setenv("RESTOCK_DB_HOST", "db1:3307,db2", 1);
    cf = conf_new("/dev/null", &err);
    ok(cf != NULL, "a list in db_host loads (%s)", err.msg);
    if (cf != NULL)
        is_str(conf_str(cf, "db_host"), "db1:3307,db2", "and is kept as written");
    conf_destroy(&cf);
    bad_conf("db1:x", "the port must be a number");
    bad_conf("db1,,db2", "item 2 of the host list is empty");
    return done_testing();
}
