/*
 * tocsin-e2e-client — drives libtocsin for the client's end-to-end scenarios
 * (tests/e2e/scenarios_client.py) and prints what it did as JSON lines on stdout.
 *
 * usage: tocsin-e2e-client [options] MODE [ARGS]
 *   stream COUNT RATE     COUNT requests (route /e2e) at RATE per second, never retrying a
 *                         full queue; then flush and destroy
 *   burst COUNT           COUNT requests as fast as possible; prints {"phase":"recorded"},
 *                         waits for a line on stdin, then flushes and destroys
 *   crash                 one request, then a segmentation fault
 *   none                  nothing recorded: flush (sends crash reports) and destroy
 *   keypair               prints a fresh CURVE key pair: "PUBLIC SECRET" (Z85)
 * options: --collectors EPS --service NAME --queue N --batch N --ack-timeout MS
 *          --shutdown-timeout MS --flush-timeout MS --crash-dir DIR
 *          --curve-server-key Z85 --curve-public-key Z85 --curve-secret-key Z85
 * The last line is {"recorded":..,"full":..,"bad_rc":..,"acked":..,"flush":..,
 * "destroy_ms":..,...}: bad_rc counts recording calls that returned anything but OK or EFULL.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "tocsin.h"

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static volatile uintptr_t bad_address = 8;

__attribute__((noinline)) static void crash_in_e2e_client(void)
{
    *(volatile int *)bad_address = 1;
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = "e2e-client";
    o.environment = "test";
    uint32_t flush_timeout = 30000;
    static const struct option longopts[] = {
        {"collectors", required_argument, NULL, 'c'},
        {"service", required_argument, NULL, 's'},
        {"queue", required_argument, NULL, 'q'},
        {"batch", required_argument, NULL, 'b'},
        {"ack-timeout", required_argument, NULL, 'a'},
        {"shutdown-timeout", required_argument, NULL, 'd'},
        {"flush-timeout", required_argument, NULL, 'f'},
        {"crash-dir", required_argument, NULL, 'C'},
        {"curve-server-key", required_argument, NULL, 'S'},
        {"curve-public-key", required_argument, NULL, 'P'},
        {"curve-secret-key", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o.collectors = optarg;
            break;
        case 's':
            o.service = optarg;
            break;
        case 'q':
            o.queue_capacity = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            o.batch_max_events = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'a':
            o.ack_timeout_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            o.shutdown_timeout_ms = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'f':
            flush_timeout = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'C':
            o.crash_dir = optarg;
            break;
        case 'S':
            o.curve_server_key = optarg;
            break;
        case 'P':
            o.curve_public_key = optarg;
            break;
        case 'K':
            o.curve_secret_key = optarg;
            break;
        default:
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "tocsin-e2e-client: MODE required\n");
        return 2;
    }
    const char *mode = argv[optind];
    if (strcmp(mode, "keypair") == 0) {
        char pub[41], sec[41];
        if (zmq_curve_keypair(pub, sec) != 0) {
            return 1;
        }
        printf("%s %s\n", pub, sec);
        return 0;
    }
    long count = optind + 1 < argc ? strtol(argv[optind + 1], NULL, 10) : 0;
    double rate = optind + 2 < argc ? strtod(argv[optind + 2], NULL) : 0;
    if (strcmp(mode, "crash") == 0) {
        signal(SIGSEGV, SIG_DFL);
    }
    tocsin_t *t = tocsin_new(&o);
    if (!t) {
        fprintf(stderr, "tocsin-e2e-client: tocsin_new failed\n");
        return 1;
    }
    uint64_t full = 0, bad_rc = 0, recorded_ok = 0;
    int64_t t0 = now_us();
    if (strcmp(mode, "stream") == 0 || strcmp(mode, "burst") == 0) {
        for (long i = 0; i < count; i++) {
            if (rate > 0) {
                int64_t due = t0 + (int64_t)((double)i * 1e6 / rate);
                int64_t wait = due - now_us();
                if (wait > 0) {
                    struct timespec ts = {wait / 1000000, (wait % 1000000) * 1000};
                    nanosleep(&ts, NULL);
                }
            }
            int rc = tocsin_request(t, "/e2e", "GET", i % 10 == 9 ? 500 : 200, 1000 + i % 1000);
            if (rc == TOCSIN_OK) {
                recorded_ok++;
            } else if (rc == TOCSIN_EFULL) {
                full++;
            } else {
                bad_rc++;
            }
        }
        if (strcmp(mode, "burst") == 0) {
            printf("{\"phase\":\"recorded\",\"recorded\":%llu,\"full\":%llu}\n",
                   (unsigned long long)recorded_ok, (unsigned long long)full);
            fflush(stdout);
            char line[64];
            if (!fgets(line, sizeof(line), stdin)) {
                fprintf(stderr, "tocsin-e2e-client: no go line\n");
            }
        }
    } else if (strcmp(mode, "crash") == 0) {
        tocsin_request(t, "/before-crash", "GET", 200, 1);
        crash_in_e2e_client();
        return 3; /* not reached */
    } else if (strcmp(mode, "none") != 0) {
        fprintf(stderr, "tocsin-e2e-client: unknown mode %s\n", mode);
        tocsin_destroy(&t);
        return 2;
    }
    int frc = tocsin_flush(t, flush_timeout);
    tocsin_stats_t st;
    tocsin_stats(t, &st);
    int64_t d0 = now_us();
    tocsin_destroy(&t);
    int64_t destroy_ms = (now_us() - d0) / 1000;
    printf("{\"recorded\":%llu,\"full\":%llu,\"bad_rc\":%llu,\"acked\":%llu,\"flush\":%d,"
           "\"destroy_ms\":%lld,\"dropped_queue_full\":%llu,\"batches_retried\":%llu,"
           "\"crashes_found\":%llu,\"crashes_sent\":%llu,\"record_s\":%.3f}\n",
           (unsigned long long)st.recorded, (unsigned long long)full, (unsigned long long)bad_rc,
           (unsigned long long)st.events_acked, frc, (long long)destroy_ms,
           (unsigned long long)st.dropped_queue_full, (unsigned long long)st.batches_retried,
           (unsigned long long)st.crashes_found, (unsigned long long)st.crashes_sent,
           (double)(d0 - t0) / 1e6);
    return 0;
}
