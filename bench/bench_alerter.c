/*
 * bench_alerter — rule evaluations per second with 10,000 rules, in the alerter's own
 * core (window store, evaluator, dispatcher), on a virtual clock, without I/O.
 *
 * 10,000 error-rate rules over 1,000 services (10 rules each: the service-wide rate and
 * 9 routes), 5 m windows of 10 s buckets (30 buckets per series, 300,000 buckets held).
 * Each run evaluates every rule 20 times (full evaluations, as eval.interval does) and
 * prints evaluations per second; the median and p99 over the runs are printed last.
 *
 * usage: bench_alerter [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alr_core.h"
#include "tc_util.h"

#define S 1000000LL
#define SERVICES 1000
#define ROUTES 9
#define BUCKETS 30
#define ROUNDS 20

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1) {
        runs = 1;
    }
    size_t cap = 1 << 22;
    char *yaml = malloc(cap);
    if (!yaml) {
        return 1;
    }
    size_t n = (size_t)snprintf(yaml, cap, "receivers:\n  - {name: hook, url: 'http://127.0.0.1:9/'}\n"
                                           "rules:\n");
    for (int s = 0; s < SERVICES; s++) {
        n += (size_t)snprintf(yaml + n, cap - n,
                              "  - {alert: Errors, type: error_rate, service: svc%04d, window: 5m, "
                              "above: 0.5, severity: critical, receiver: hook}\n",
                              s);
        for (int r = 0; r < ROUTES; r++) {
            n += (size_t)snprintf(yaml + n, cap - n,
                                  "  - {alert: RouteErrors%d, type: error_rate, service: svc%04d, "
                                  "name: /r%d, window: 5m, above: 0.5, severity: warning, "
                                  "receiver: hook}\n",
                                  r, s, r);
        }
    }
    char err[512];
    alr_ruleset_t *rules = alr_ruleset_load_data(yaml, n, "bench.yaml", err, sizeof(err));
    free(yaml);
    if (!rules) {
        fprintf(stderr, "bench_alerter: %s\n", err);
        return 1;
    }
    size_t nrules = rules->nrules;
    int64_t t0 = 1800000000LL * S;
    alr_core_opts_t o = {.max_delay_us = 30 * S, .seed = 1, .started_us = t0};
    alr_core_t *core = alr_core_new(&o);
    if (!core || alr_core_set_rules(core, rules, t0) != 0) {
        return 1;
    }
    alr_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.kind = ALR_REC_BUCKET;
    for (int s = 0; s < SERVICES; s++) {
        for (int r = 0; r < ROUTES; r++) {
            for (int b = 0; b < BUCKETS; b++) {
                snprintf(rec.bucket.service, sizeof(rec.bucket.service), "svc%04d", s);
                strcpy(rec.bucket.environment, "prod");
                snprintf(rec.bucket.name, sizeof(rec.bucket.name), "/r%d", r);
                rec.bucket.kind = ALR_KIND_REQUESTS;
                rec.bucket.start_s = t0 / S - (BUCKETS - b) * 10;
                rec.bucket.width_s = 10;
                rec.bucket.count = 100;
                rec.bucket.errors = (uint64_t)((s + r + b) % 7);
                rec.bucket.revision = 1;
                alr_core_put_record(core, &rec, t0);
            }
        }
    }
    size_t jn;
    alr_window_journal(alr_core_window(core), &jn);
    alr_window_journal_clear(alr_core_window(core));
    printf("alerter rule evaluation: %zu rules, %d services, %zu buckets held\n", nrules,
           SERVICES, alr_window_bucket_count(alr_core_window(core)));
    double *rate = calloc((size_t)runs, sizeof(double));
    for (int run = 0; run < runs; run++) {
        int64_t start = tc_mono_us();
        long evals = 0;
        for (int i = 0; i < ROUNDS; i++) {
            int e = alr_core_evaluate(core, t0 + (int64_t)(run * ROUNDS + i) * 100000, true);
            if (e < 0) {
                fprintf(stderr, "bench_alerter: evaluation failed\n");
                return 1;
            }
            evals += e;
        }
        double secs = (double)(tc_mono_us() - start) / 1e6;
        rate[run] = (double)evals / secs;
        printf("  run %d: %ld evaluations in %.3f s = %.0f evaluations/s\n", run + 1, evals, secs,
               rate[run]);
    }
    qsort(rate, (size_t)runs, sizeof(double), cmp_double);
    double median = rate[runs / 2];
    /* p99 of the time per evaluation is the slowest run's rate (few runs). */
    double p99 = rate[(size_t)((double)runs * 0.01)];
    printf("rule evaluations per second (10,000 rules): median %.0f, p99 (slowest runs) %.0f\n",
           median, p99);
    printf("RESULT eval_per_s_median=%.0f eval_per_s_p99=%.0f\n", median, p99);
    free(rate);
    alr_core_destroy(&core);
    return 0;
}
