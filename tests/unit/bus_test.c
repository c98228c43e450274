/* Unit test of bus: a doorbell rung on PUB arrives on SUB over a real ipc socket;
 * ringing with nobody listening neither blocks nor fails; a wait takes at most
 * BUS_DRAIN_MAX doorbells and leaves the rest for the next; a message larger than
 * BUS_MESSAGE_MAX is not taken (its sender is hung up on, and heard again once
 * reconnected); over tcp, one publisher rings a list of workers, each hears every
 * doorbell, and one that is down costs the others nothing. */
#include "config.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "tap.h"

/* A tcp port nobody listens on now (the kernel's pick, released). */
static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Rings until sub heard one (a new connection takes a moment: ZeroMQ's "slow
 * joiner"), at most two seconds; returns how many it heard. */
static int
ring_until_heard(bus_pub *pub, bus_sub *sub)
{
    int rang = 0;

    for (int i = 0; i < 200 && rang <= 0; i++) {
        bus_ring(pub, BUS_STOCK_EMPTY, "tcp");
        rang = bus_wait(sub, 10);
    }
    return rang > 0 ? rang : 0;
}

/* Drains sub for a moment; returns how many doorbells were waiting. */
static int
drain(bus_sub *sub)
{
    int total = 0, n;

    while ((n = bus_wait(sub, 50)) > 0)
        total += n;
    return total;
}

/* A flood is taken a bounded part at a time; an oversize message not at all. */
static void
limit_tests(bus_pub *pub, bus_sub *sub)
{
    char big[4 * BUS_MESSAGE_MAX];
    int most = 0, total = 0, n;

    drain(sub);
    /* Half the publisher's high-water mark: none dropped. */
    for (int i = 0; i < 500; i++)
        bus_ring(pub, BUS_STOCK_EMPTY, "flood");
    while ((n = bus_wait(sub, 50)) > 0) {
        total += n;
        most = n > most ? n : most;
    }
    is_int(total, 500, "500 doorbells in a burst are all heard");
    ok(most <= BUS_DRAIN_MAX, "no wait took more than %d of them (the most: %d)", BUS_DRAIN_MAX,
       most);

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ok(bus_ring(pub, BUS_STOCK_EMPTY, big) == 0, "a %zu-byte doorbell is sent", sizeof(big));
    is_int(drain(sub), 0, "it is not taken as a doorbell");
    ok(ring_until_heard(pub, sub) > 0, "its sender, reconnected, is heard again");
}

static void
tcp_tests(void)
{
    errbuf err = {{0}};
    char a[64], b[64], list[160], first[BUS_ENDPOINT_MAX];
    bus_pub *pub;
    bus_sub *sub_a, *sub_b;
    int heard_a = 0, heard_b = 0;

    snprintf(a, sizeof(a), "tcp://127.0.0.1:%d", free_port());
    snprintf(b, sizeof(b), "tcp://127.0.0.1:%d", free_port());
    snprintf(list, sizeof(list), "%s, %s", a, b);
    ok(bus_first(list, first, sizeof(first), &err) == 0 && strcmp(first, a) == 0,
       "the first of a list, blanks trimmed: %s", first);
    ok(bus_first(" ,x", first, sizeof(first), &err) != 0 && strstr(err.msg, "empty"),
       "an empty endpoint is refused: %s", err.msg);
    ok(bus_pub_new("tcp://127.0.0.1:1,,tcp://127.0.0.1:2", &err) == NULL &&
           strstr(err.msg, "endpoint 2") != NULL,
       "a publisher refuses a list with an empty item, naming it: %s", err.msg);

    pub = bus_pub_new(list, &err);
    ok(pub != NULL, "a publisher connects to two tcp workers, neither up yet");
    sub_a = bus_sub_new(a, &err);
    sub_b = bus_sub_new(b, &err);
    ok(sub_a != NULL && sub_b != NULL, "both workers bind their tcp endpoint: %s",
       sub_a && sub_b ? "" : err.msg);
    /* Until both connections are up, ring and listen on both. */
    for (int i = 0; i < 200 && (heard_a == 0 || heard_b == 0); i++) {
        int n;
        bus_ring(pub, BUS_STOCK_EMPTY, "both");
        n = bus_wait(sub_a, 5);
        heard_a += n > 0 ? n : 0;
        n = bus_wait(sub_b, 5);
        heard_b += n > 0 ? n : 0;
    }
    ok(heard_a > 0 && heard_b > 0, "each worker hears the doorbells (a %d, b %d)", heard_a,
       heard_b);
    drain(sub_a);
    drain(sub_b);
    for (int i = 0; i < 3; i++)
        bus_ring(pub, BUS_STOCK_ARRIVED, NULL);
    heard_a = drain(sub_a);
    heard_b = drain(sub_b);
    ok(heard_a == 3 && heard_b == 3, "three doorbells reach both workers, each once (a %d, b %d)",
       heard_a, heard_b);

    bus_sub_destroy(&sub_a); /* worker a is down */
    {
        int refused = 0;
        for (int i = 0; i < 2000; i++)
            refused += bus_ring(pub, BUS_STOCK_EMPTY, "a is down") != 0;
        is_int(refused, 0, "with worker a down, 2000 doorbells neither block nor fail");
    }
    ok(drain(sub_b) > 0, "worker b still hears them");
    sub_a = bus_sub_new(a, &err);
    ok(sub_a != NULL, "worker a binds again");
    ok(ring_until_heard(pub, sub_a) > 0, "worker a, back, hears the doorbells again");
    bus_sub_destroy(&sub_a);
    bus_sub_destroy(&sub_b);
    bus_pub_destroy(&pub);
}

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
    limit_tests(pub, sub);

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
    tcp_tests();
    bus_shutdown();
    rmdir(dir);
    return done_testing();
}
