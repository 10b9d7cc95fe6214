/*
 * e2e_col_emit — sends requests through libtocsin at a steady rate, for the collector's
 * failover test: a collector can be killed while events are still flowing.
 *
 * usage: e2e_col_emit COLLECTORS SERVICE COUNT RATE_PER_S [SERVER_KEY PUBLIC_KEY SECRET_KEY]
 * With the three CURVE keys (Z85), the client encrypts and authenticates with them.
 * Prints {"sent":N,"acked":N,"retried":N,"flush":rc} and exits 0 when every event was
 * acknowledged by a collector.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tocsin.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 8) {
        fprintf(stderr, "usage: e2e_col_emit COLLECTORS SERVICE COUNT RATE_PER_S "
                        "[SERVER_KEY PUBLIC_KEY SECRET_KEY]\n");
        return 2;
    }
    long count = strtol(argv[3], NULL, 10);
    long rate = strtol(argv[4], NULL, 10);
    if (count <= 0 || rate <= 0) {
        return 2;
    }
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = argv[2];
    o.environment = "test";
    o.collectors = argv[1];
    o.queue_capacity = 65536;
    o.ack_timeout_ms = 1000;
    if (argc == 8) {
        o.curve_server_key = argv[5];
        o.curve_public_key = argv[6];
        o.curve_secret_key = argv[7];
    }
    tocsin_t *t = tocsin_new(&o);
    if (!t) {
        fprintf(stderr, "e2e_col_emit: tocsin_new failed\n");
        return 1;
    }
    long per_tick = rate / 100 > 0 ? rate / 100 : 1;
    long sent = 0;
    while (sent < count) {
        for (long k = 0; k < per_tick && sent < count; k++) {
            /* The test needs the exact set to arrive: wait for room rather than drop. */
            while (tocsin_request(t, "/failover", "GET", sent % 50 ? 200 : 500,
                                  1000 + (uint64_t)(sent % 997)) == TOCSIN_EFULL) {
                sleep_ms(1);
            }
            sent++;
        }
        sleep_ms(10);
    }
    int frc = tocsin_flush(t, 60000);
    tocsin_stats_t st;
    tocsin_stats(t, &st);
    tocsin_destroy(&t);
    printf("{\"sent\":%ld,\"acked\":%llu,\"retried\":%llu,\"flush\":%d}\n", sent,
           (unsigned long long)st.events_acked, (unsigned long long)st.batches_retried, frc);
    return frc == 0 && st.events_acked == (uint64_t)count ? 0 : 1;
}
