/*
 * e2e_emit — sends a known set of requests through libtocsin for the end-to-end tests and
 * prints what it sent as JSON, with the exact quantiles of the durations, so the test can
 * compare the aggregator's answer against the truth.
 *
 * usage: e2e_emit COLLECTORS SERVICE COUNT ERROR_EVERY SEED
 * Every ERROR_EVERY-th request has status 500. Durations are log-normal (median 20 ms).
 * Exits 0 when every event was acknowledged by a collector, 1 otherwise.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tocsin.h"

static uint64_t rng;

static double uniform(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return ((double)((rng * 0x2545f4914f6cdd1dULL) >> 11) + 0.5) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: e2e_emit COLLECTORS SERVICE COUNT ERROR_EVERY SEED\n");
        return 2;
    }
    const char *collectors = argv[1];
    const char *service = argv[2];
    long count = strtol(argv[3], NULL, 10);
    long error_every = strtol(argv[4], NULL, 10);
    rng = strtoull(argv[5], NULL, 10) | 1;
    if (count <= 0 || count > 10000000 || error_every <= 0) {
        fprintf(stderr, "e2e_emit: bad COUNT or ERROR_EVERY\n");
        return 2;
    }
    uint64_t *durations = malloc((size_t)count * sizeof(uint64_t));
    if (!durations) {
        return 1;
    }
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = service;
    o.environment = "test";
    o.collectors = collectors;
    o.queue_capacity = 16384;
    tocsin_t *t = tocsin_new(&o);
    if (!t) {
        fprintf(stderr, "e2e_emit: tocsin_new failed\n");
        free(durations);
        return 1;
    }
    long errors = 0, full_retries = 0;
    for (long i = 0; i < count; i++) {
        double u1 = uniform(), u2 = uniform();
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        uint64_t us = (uint64_t)(20000.0 * exp(0.8 * z)) + 1;
        durations[i] = us;
        int status = (i % error_every == error_every - 1) ? 500 : 200;
        errors += status == 500;
        const char *route = (i % 3 == 0) ? "/a" : ((i % 3 == 1) ? "/b" : "/c");
        /* The test needs the exact set to arrive: wait for room rather than drop. */
        while (tocsin_request(t, route, "GET", status, us) == TOCSIN_EFULL) {
            full_retries++;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    int frc = tocsin_flush(t, 60000);
    tocsin_stats_t st;
    tocsin_stats(t, &st);
    tocsin_destroy(&t);

    qsort(durations, (size_t)count, sizeof(uint64_t), cmp_u64);
    static const double qs[] = {0.5, 0.95, 0.99};
    printf("{\"service\":\"%s\",\"sent\":%ld,\"errors\":%ld,\"acked\":%llu,"
           "\"full_retries\":%ld,\"flush\":%d,\"quantiles_ms\":{",
           service, count, errors, (unsigned long long)st.events_acked, full_retries, frc);
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        size_t rank = (size_t)floor(qs[k] * (double)(count - 1));
        printf("%s\"%g\":%.6f", k ? "," : "", qs[k], (double)durations[rank] / 1000.0);
    }
    printf("}}\n");
    free(durations);
    return (frc == 0 && st.events_acked == (uint64_t)count) ? 0 : 1;
}
