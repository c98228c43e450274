/* Unit test of bus: a doorbell rung on PUB arrives on SUB over a real ipc socket;
 * ringing with nobody listening neither blocks nor fails. */
#include "config.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "tap.h"

int
main(void)
{
    errbuf err = {{0}};
    char dir[] = "/tmp/bus_test.XXXXXX", endpoint[128];
    bus_pub *pub;
    bus_sub *sub;
    int rang = 0;

    ok(mkdtemp(dir) != NULL, "temporary folder");
    snprintf(endpoint, sizeof(endpoint), "ipc://%s/bus.sock", dir);

    pub = bus_pub_new(endpoint, &err);
    ok(pub != NULL, "a publisher connects before anyone listens");
    ok(bus_ring(pub, BUS_STOCK_EMPTY, "nobody") == 0, "ringing with nobody listening succeeds");

    sub = bus_sub_new(endpoint, &err);
    ok(sub != NULL, "the listener binds: %s", sub ? endpoint : err.msg);
    /* A new subscription takes a moment to reach the publisher (ZeroMQ's "slow
     * joiner"): ring until heard, as the doorbell's loss is allowed by design. */
    for (int i = 0; i < 200 && rang == 0; i++) {
        bus_ring(pub, BUS_STOCK_EMPTY, "event-1");
        rang = bus_wait(sub, 10);
    }
    ok(rang > 0, "a doorbell arrives");
    for (int i = 0; i < 5; i++)
        bus_ring(pub, BUS_STOCK_ARRIVED, NULL);
    rang = 0;
    for (int i = 0; i < 100 && rang < 5; i++) {
        int n = bus_wait(sub, 20);
        rang += n > 0 ? n : 0;
    }
    is_int(rang, 5, "five doorbells in a burst arrive, each counted once");
    is_int(bus_wait(sub, 20), 0, "then the wait times out with nothing");

    bus_sub_destroy(&sub);
    ok(sub == NULL && access(endpoint + 6, F_OK) != 0, "destroy removes the ipc socket file");
    sub = bus_sub_new("tcp://256.0.0.1:1", &err);
    ok(sub == NULL && strstr(err.msg, "tcp://256.0.0.1:1"), "a bad endpoint names itself: %s",
       err.msg);
    bus_pub_destroy(&pub);
    ok(pub == NULL, "destroy clears the pointer");
    bus_shutdown();
    pub = bus_pub_new(endpoint, &err);
    ok(pub != NULL, "after bus_shutdown a new publisher starts ZeroMQ again");
    bus_pub_destroy(&pub);
    bus_shutdown();
    rmdir(dir);
    return done_testing();
}
