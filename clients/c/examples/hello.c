/*
 * hello.c — the smallest service that reports to Tocsin.
 *
 *   tocsin-example [ENDPOINT]     (default tcp://127.0.0.1:7420)
 *
 * Records a few requests, an error and a metric, flushes with a 5 s bound, prints the
 * client's counters, and exits 0 only when every event was acknowledged as stored.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "tocsin.h"

int main(int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:7420";

    tocsin_options_t opts;
    tocsin_options_init(&opts);
    opts.service = "hello";
    opts.environment = "development";
    opts.release = tocsin_version();
    opts.collectors = endpoint;

    const char *reason = NULL;
    if (tocsin_options_validate(&opts, &reason) != TOCSIN_OK) {
        fprintf(stderr, "tocsin-example: bad options: %s\n", reason);
        return 2;
    }
    tocsin_t *client = tocsin_new(&opts);
    if (!client) {
        fprintf(stderr, "tocsin-example: cannot create the client for %s\n", endpoint);
        return 2;
    }

    static const struct {
        const char *route;
        const char *method;
        int status;
        uint64_t duration_us;
    } requests[] = {
        {"/", "GET", 200, 1200},
        {"/users/:id", "GET", 200, 5400},
        {"/users/:id", "PUT", 204, 8100},
        {"/checkout", "POST", 502, 250000},
    };
    int rc = TOCSIN_OK;
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]) && rc == TOCSIN_OK; i++) {
        rc = tocsin_request(client, requests[i].route, requests[i].method, requests[i].status,
                            requests[i].duration_us);
    }
    if (rc == TOCSIN_OK) {
        rc = tocsin_error(client, "PaymentDeclined", "card 4242 declined: insufficient funds",
                          TOCSIN_LEVEL_ERROR);
    }
    if (rc == TOCSIN_OK) {
        rc = tocsin_metric(client, "cart.items", TOCSIN_GAUGE, 3, "items");
    }
    if (rc != TOCSIN_OK) {
        fprintf(stderr, "tocsin-example: recording failed: %s\n", tocsin_strerror(rc));
    }

    int flushed = tocsin_flush(client, 5000);
    tocsin_stats_t st;
    tocsin_stats(client, &st);
    printf("collector            %s\n"
           "flush                %s\n"
           "recorded             %llu\n"
           "dropped (queue full) %llu\n"
           "dropped (oversize)   %llu\n"
           "batches sent         %llu\n"
           "batches acked        %llu\n"
           "batches retried      %llu\n"
           "batches rejected     %llu\n"
           "events acked         %llu\n"
           "events rejected      %llu\n",
           endpoint, tocsin_strerror(flushed), (unsigned long long)st.recorded,
           (unsigned long long)st.dropped_queue_full, (unsigned long long)st.dropped_oversize,
           (unsigned long long)st.batches_sent, (unsigned long long)st.batches_acked,
           (unsigned long long)st.batches_retried, (unsigned long long)st.batches_rejected,
           (unsigned long long)st.events_acked, (unsigned long long)st.events_rejected);
    tocsin_destroy(&client);

    bool all_acked = rc == TOCSIN_OK && flushed == TOCSIN_OK && st.recorded == 6 &&
                     st.events_acked == st.recorded;
    return all_acked ? 0 : 1;
}
