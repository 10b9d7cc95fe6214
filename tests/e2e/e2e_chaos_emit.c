/*
 * e2e_chaos_emit — a service sending a known set of events through libtocsin at a steady
 * rate, for the chaos test (scenarios_chaos.py): collectors are killed and Kafka goes away
 * while it runs, and the test then compares what the aggregators count with what this
 * printed.
 *
 * usage: e2e_chaos_emit COLLECTORS SERVICE MAX_COUNT RATE_PER_S ERROR_EVERY
 * Sends requests (a third to route /cart, the rest to /pay; 2 to 40 ms) at RATE_PER_S until
 * SIGTERM or SIGINT arrives or MAX_COUNT were sent, so the test ends the traffic when its
 * faults are over rather than after a fixed time; every ERROR_EVERY-th request has status
 * 500 and is followed by an error event (type ChaosError), until SIGUSR1 arrives: from then
 * on every request succeeds (the test's error-rate alert can resolve while the clients still
 * send). A full queue is waited out, not dropped: the test needs the exact set. Then
 * flushes and prints what it recorded,
 *   {"service":S,"requests":N,"request_errors":E,"errors":E,
 *    "routes":{"/cart":[N,E],"/pay":[N,E]},"acked":A,"retried":R,"flush":rc}
 * and exits 0 when every event was acknowledged by a collector within the final flush.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tocsin.h"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t errors_off;

static void on_signal(int sig)
{
    if (sig == SIGUSR1) {
        errors_off = 1;
    } else {
        stop_requested = 1;
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr,
                "usage: e2e_chaos_emit COLLECTORS SERVICE MAX_COUNT RATE_PER_S ERROR_EVERY\n");
        return 2;
    }
    long count = strtol(argv[3], NULL, 10);
    long rate = strtol(argv[4], NULL, 10);
    long error_every = strtol(argv[5], NULL, 10);
    if (count <= 0 || count > 10000000 || rate <= 0 || error_every <= 0) {
        fprintf(stderr, "e2e_chaos_emit: bad MAX_COUNT, RATE_PER_S or ERROR_EVERY\n");
        return 2;
    }
    /* Installed before the client's thread starts, which blocks every signal: the stop
     * request always reaches this thread. No SA_RESTART: it cuts the pacing sleep short. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("e2e_chaos_emit: sigaction");
        return 1;
    }
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = argv[2];
    o.environment = "chaos";
    o.collectors = argv[1];
    o.queue_capacity = 65536;
    o.ack_timeout_ms = 1000; /* a killed collector's batches go to the next one after 1 s */
    o.stack_traces = TOCSIN_STACKS_OFF;
    o.shutdown_timeout_ms = 5000;
    tocsin_t *t = tocsin_new(&o);
    if (!t) {
        fprintf(stderr, "e2e_chaos_emit: tocsin_new failed\n");
        return 1;
    }
    long sent = 0, errors = 0;
    long per_route[2] = {0, 0}, per_route_errors[2] = {0, 0}; /* /cart, /pay */
    int64_t start = mono_ms();
    while (sent < count && !stop_requested) {
        /* Paced by the clock, so a stall (a full queue) is caught up on, not lost. */
        long due = (long)((mono_ms() - start) * rate / 1000) + 1;
        while (sent < count && sent < due && !stop_requested) {
            bool fail = !errors_off && sent % error_every == error_every - 1;
            int r = sent % 3 == 0 ? 0 : 1; /* failures fall on both routes */
            const char *route = r ? "/pay" : "/cart";
            while (tocsin_request(t, route, "POST", fail ? 500 : 200,
                                  2000 + (uint64_t)(sent % 39) * 1000) == TOCSIN_EFULL) {
                sleep_ms(1);
            }
            if (fail) {
                while (tocsin_error(t, "ChaosError", "payment backend refused",
                                    TOCSIN_LEVEL_ERROR) == TOCSIN_EFULL) {
                    sleep_ms(1);
                }
                errors++;
                per_route_errors[r]++;
            }
            per_route[r]++;
            sent++;
        }
        sleep_ms(5);
    }
    int frc = tocsin_flush(t, 120000);
    tocsin_stats_t st;
    tocsin_stats(t, &st);
    tocsin_destroy(&t);
    printf("{\"service\":\"%s\",\"requests\":%ld,\"request_errors\":%ld,\"errors\":%ld,"
           "\"routes\":{\"/cart\":[%ld,%ld],\"/pay\":[%ld,%ld]},"
           "\"acked\":%llu,\"retried\":%llu,\"flush\":%d}\n",
           argv[2], sent, errors, errors, per_route[0], per_route_errors[0], per_route[1],
           per_route_errors[1], (unsigned long long)st.events_acked,
           (unsigned long long)st.batches_retried, frc);
    return frc == 0 && st.events_acked == (uint64_t)(sent + errors) ? 0 : 1;
}
