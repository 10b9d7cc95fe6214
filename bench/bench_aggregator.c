/*
 * bench_aggregator — the aggregator's in-process figures:
 *
 *   query   latency (median, p99) of window queries of 5 m, 1 h and 30 d over a store that
 *           holds 31 days (--days) of one service's request series, each route in a source
 *           partition of its own: the last day in 10 s buckets, the rest rolled up to 1 min
 *           by retention (as the daemon keeps it), for one named series and for "*" over all
 *           of them (read from the service's request totals); the store read, the merge and
 *           the JSON. "* by routes" answers "*" as before the service-wide series: every route
 *           queried and merged.
 *   quantile relative error of Tocsin's sketch next to Prometheus' histogram_quantile over
 *           its default buckets (.005 .. 10 s, linear interpolation inside a bucket), on the
 *           same lognormal, Pareto and bimodal sets of 10^6 latencies.
 *
 * usage: bench_aggregator [query|quantiles|all] [--dir DIR] [--routes N] [--days D]
 * The throughput figures (events per second through the real daemon, LMDB bytes per
 * million events) come from bench/bench_aggregator.py, which also runs this program.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agg_query.h"
#include "agg_store.h"
#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

#define N_VALUES 1000000
#define DAY_S 86400LL

static uint64_t rng = 0x243f6a8885a308d3ULL;

static double uniform(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform());
}

/* Latencies in microseconds. */
static double draw(int dist)
{
    switch (dist) {
    case 0:
        return 20000.0 * exp(normal());
    case 1:
        return 1000.0 / pow(uniform(), 1.0 / 1.5);
    default: {
        double v = uniform() < 0.7 ? 5000.0 + 1000.0 * normal() : 200000.0 + 30000.0 * normal();
        return v > 1.0 ? v : 1.0;
    }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- Prometheus' histogram_quantile ------------------------------------------------------ */

static const double prom_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define PROM_N (sizeof(prom_le) / sizeof(prom_le[0]))

/* promql/quantile.go bucketQuantile: rank = q * total; the bucket whose cumulative count
 * reaches the rank; linear interpolation between its lower and upper bound (lower 0 for the
 * first bucket); the +Inf bucket answers the largest finite bound. */
static double prom_quantile(double q, const uint64_t *cum, uint64_t total)
{
    double rank = q * (double)total;
    size_t b = 0;
    while (b < PROM_N && (double)cum[b] < rank) {
        b++;
    }
    if (b == PROM_N) {
        return prom_le[PROM_N - 1];
    }
    double lower = b == 0 ? 0.0 : prom_le[b - 1];
    double upper = prom_le[b];
    double below = b == 0 ? 0.0 : (double)cum[b - 1];
    double in_bucket = (double)cum[b] - below;
    if (in_bucket <= 0) {
        return upper;
    }
    return lower + (upper - lower) * ((rank - below) / in_bucket);
}

static void quantile_table(void)
{
    static const char *names[] = {"lognormal (median 20 ms)", "Pareto (1 ms, shape 1.5)",
                                  "bimodal (5 ms / 200 ms)"};
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    double *v = malloc(N_VALUES * sizeof(double));
    if (!v) {
        return;
    }
    printf(
        "\nquantile relative error, 10^6 values per set (Tocsin sketch schema %d, alpha %.2f %%; "
        "Prometheus histogram_quantile over its default buckets)\n",
        TC_SKETCH_SCHEMA, tc_sketch_relative_accuracy(TC_SKETCH_SCHEMA) * 100);
    printf("%-26s %6s %12s %12s %9s %12s %9s\n", "set", "q", "exact ms", "tocsin ms", "error",
           "prom ms", "error");
    for (int dist = 0; dist < 3; dist++) {
        tc_sketch_t sk;
        tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
        uint64_t counts[PROM_N] = {0};
        for (size_t i = 0; i < N_VALUES; i++) {
            v[i] = draw(dist);
            tc_sketch_add(&sk, v[i], 1);
            double sec = v[i] / 1e6;
            for (size_t b = 0; b < PROM_N; b++) {
                if (sec <= prom_le[b]) {
                    counts[b]++;
                    break;
                }
            }
        }
        uint64_t cum[PROM_N];
        uint64_t run = 0;
        for (size_t b = 0; b < PROM_N; b++) {
            run += counts[b];
            cum[b] = run;
        }
        qsort(v, N_VALUES, sizeof(double), cmp_double);
        for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
            double exact = v[(size_t)floor(qs[k] * (N_VALUES - 1))] / 1000.0;
            double ours = tc_sketch_quantile(&sk, qs[k]) / 1000.0;
            double prom = prom_quantile(qs[k], cum, N_VALUES) * 1000.0;
            printf("%-26s %6g %12.3f %12.3f %8.2f%% %12.3f %8.1f%%\n", k == 0 ? names[dist] : "",
                   qs[k], exact, ours, fabs(ours - exact) / exact * 100, prom,
                   fabs(prom - exact) / exact * 100);
        }
        tc_sketch_fini(&sk);
    }
    free(v);
}

/* ---- query latency ------------------------------------------------------------------------- */

#define MAX_ROUTES 64
static char *routes[MAX_ROUTES];

/* A request bucket of `n` lognormal durations and up to 100 users. */
static void fill_bucket(agg_bucket_t *b, int n, const agg_slo_t *slo)
{
    agg_bucket_reset(b);
    for (int i = 0; i < n; i++) {
        agg_sample_t s;
        memset(&s, 0, sizeof(s));
        s.kind = AGG_KIND_REQUESTS;
        s.has_value = true;
        s.value = draw(0);
        s.error = i % 50 == 0;
        s.has_user = true;
        uint64_t u = (uint64_t)(uniform() * 100);
        s.user_hash = tc_hll_hash(&u, sizeof(u));
        agg_bucket_apply(b, &s, slo);
    }
}

/* Writes `days` days of 10 s buckets of `nroutes` series (route r in source partition r)
 * through the view, as rollups (the view builds the service's request totals from them, as
 * it does from other owners' states), then lets retention roll everything older than a day
 * up to 1 min. */
static int build_store(agg_store_t *st, int nroutes, int days, int64_t now_s)
{
    agg_slo_t slo;
    agg_slo_parse("100ms,500ms,2s", &slo);
    enum { TEMPLATES = 16, CHUNK = 4096 };
    agg_bucket_t tmpl[TEMPLATES];
    for (int i = 0; i < TEMPLATES; i++) {
        agg_bucket_init(&tmpl[i]);
        fill_bucket(&tmpl[i], 60 + i * 5, &slo);
    }
    uint8_t **vals = calloc(CHUNK, sizeof(*vals));
    agg_msg_t *msgs = calloc(CHUNK, sizeof(*msgs));
    if (!vals || !msgs) {
        return TC_ENOMEM;
    }
    int64_t first = agg_bucket_align((now_s - days * DAY_S) * 1000000, AGG_BUCKET_WIDTH_S);
    int64_t last = agg_bucket_align(now_s * 1000000, AGG_BUCKET_WIDTH_S);
    int64_t offset = 0;
    size_t n = 0;
    long total = 0;
    for (int64_t t = first; t <= last; t += AGG_BUCKET_WIDTH_S) {
        for (int r = 0; r < nroutes; r++) {
            agg_bucket_t *b = &tmpl[(t / 10 + r) % TEMPLATES];
            b->source_offset = ++offset;
            agg_series_id_t id = {"checkout", "production", routes[r]};
            size_t len = 0;
            if (agg_bucket_rollup_encode(&id, t, b, (uint32_t)r, false, "bench", &vals[n], &len) !=
                0) {
                return TC_ENOMEM;
            }
            memset(&msgs[n], 0, sizeof(msgs[n]));
            msgs[n].partition = 0;
            msgs[n].offset = offset - 1;
            msgs[n].value = vals[n];
            msgs[n].len = len;
            msgs[n].format = AGG_FORMAT_EVENT;
            n++;
            if (n == CHUNK || (r == nroutes - 1 && t + AGG_BUCKET_WIDTH_S > last)) {
                agg_commit_t c = {.events_topic = "tocsin.events",
                                  .rollups_topic = "tocsin.rollups",
                                  .rollups = msgs,
                                  .nrollups = n,
                                  .logs_topic = "tocsin.logs",
                                  .now_us = now_s * 1000000};
                int rc = agg_store_commit(st, &c, NULL);
                for (size_t i = 0; i < n; i++) {
                    free(vals[i]);
                }
                total += (long)n;
                n = 0;
                if (rc != 0) {
                    return rc;
                }
            }
        }
    }
    free(vals);
    free(msgs);
    for (int i = 0; i < TEMPLATES; i++) {
        agg_bucket_fini(&tmpl[i]);
    }
    long work = 0;
    for (;;) {
        int w = agg_store_maintain(st, now_s * 1000000, now_s * 1000000, 100000);
        if (w < 0) {
            return w;
        }
        if (w == 0) {
            break;
        }
        work += w;
    }
    printf("store: %ld rollups of 10 s buckets written through the view (%d routes), %ld "
           "entries rolled up or deleted; %.1f MiB used\n",
           total, nroutes, work, (double)agg_store_used_bytes(st) / (1024.0 * 1024.0));
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* `name` NULL: "*" answered the way it was before the service-wide series, by querying
 * every route and merging. */
static void time_queries(agg_store_t *st, const char *name, int nroutes, const char *window,
                         int runs, int64_t now_us)
{
    int64_t *t = malloc((size_t)runs * sizeof(*t));
    uint64_t count = 0;
    size_t buckets = 0;
    for (int i = 0; i < runs; i++) {
        int64_t t0 = tc_mono_us();
        agg_query_params_t p;
        const char *param = NULL;
        char err[128];
        agg_query_params_parse(&p, "checkout", name ? name : "*", window, NULL, NULL, now_us,
                               &param, err, sizeof(err));
        agg_query_acc_t acc;
        agg_query_acc_init(&acc);
        if (name) {
            agg_store_query(st, &p, &acc, NULL);
        } else {
            for (int r = 0; r < nroutes; r++) {
                agg_query_params_t one = p;
                one.name = routes[r];
                agg_store_query(st, &one, &acc, NULL);
            }
        }
        json_t *doc = agg_query_json(&p, &acc);
        char *text = json_dumps(doc, JSON_COMPACT);
        free(text);
        json_decref(doc);
        count = acc.total.count;
        buckets = acc.buckets;
        agg_query_acc_fini(&acc);
        t[i] = tc_mono_us() - t0;
    }
    qsort(t, (size_t)runs, sizeof(*t), cmp_i64);
    double median = (double)t[runs / 2] / 1000.0;
    double p99 = (double)t[(size_t)ceil(0.99 * runs) - 1] / 1000.0;
    printf("  %-4s name=%-12s %7zu buckets, %10llu requests: median %8.3f ms, p99 %8.3f ms "
           "(%d runs)\n",
           window, name ? name : "* by routes", buckets, (unsigned long long)count, median, p99,
           runs);
    free(t);
}

static int query_bench(const char *dir, int nroutes, int days)
{
    for (int i = 0; i < nroutes && i < MAX_ROUTES; i++) {
        char buf[32];
        snprintf(buf, sizeof(buf), "/route/%d", i);
        routes[i] = strdup(buf);
    }
    agg_store_opts_t o;
    memset(&o, 0, sizeof(o));
    o.dir = dir;
    o.map_size = 1ULL << 30;
    o.max_map = 64ULL << 30;
    o.grace_ms = 15000;
    o.dedupe_window_ms = 600000;
    o.dedupe_max_ids = 100000;
    agg_slo_parse("100ms,500ms,2s", &o.slo);
    o.raw_retention_ms = DAY_S * 1000;
    o.max_retention_ms = 32 * DAY_S * 1000;
    o.logs_retention_ms = 7 * DAY_S * 1000;
    o.group = "bench";
    o.events_topic = "tocsin.events";
    agg_store_t *st = agg_store_open(&o);
    if (!st) {
        return 1;
    }
    int64_t now_s = time(NULL);
    int64_t t0 = tc_mono_us();
    if (build_store(st, nroutes, days, now_s) != 0) {
        fprintf(stderr, "bench_aggregator: building the store failed\n");
        agg_store_destroy(&st);
        return 1;
    }
    printf("store built in %.1f s\n", (double)(tc_mono_us() - t0) / 1e6);
    printf("\nquery latency, in process (LMDB read, merge, JSON), %d request series of one service "
           "with %d days of data:\n",
           nroutes, days);
    int64_t now_us = now_s * 1000000;
    time_queries(st, routes[0], nroutes, "5m", 2000, now_us);
    time_queries(st, routes[0], nroutes, "1h", 2000, now_us);
    if (days >= 30) {
        time_queries(st, routes[0], nroutes, "30d", 30, now_us);
    }
    time_queries(st, "*", nroutes, "5m", 2000, now_us);
    time_queries(st, "*", nroutes, "1h", 2000, now_us);
    if (days >= 30) {
        time_queries(st, "*", nroutes, "30d", 30, now_us);
    }
    time_queries(st, NULL, nroutes, "1h", nroutes > 10 ? 100 : 1000, now_us);
    agg_store_destroy(&st);
    return 0;
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    char dir[256] = "";
    int nroutes = 3;
    int days = 31;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0) {
            snprintf(dir, sizeof(dir), "%s", argv[i + 1]);
        } else if (strcmp(argv[i], "--routes") == 0) {
            nroutes = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--days") == 0) {
            days = atoi(argv[i + 1]);
        }
    }
    if (nroutes < 1 || nroutes > MAX_ROUTES || days < 1 || days > 31) {
        fprintf(stderr, "usage: bench_aggregator [query|quantiles|all] [--dir DIR] [--routes N "
                        "(1..64)] [--days D (1..31)]\n");
        return 2;
    }
    tc_log_init("bench", TC_LOG_WARN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    bool tmp = !dir[0];
    if (tmp) {
        snprintf(dir, sizeof(dir), "/tmp/bench_aggregator.XXXXXX");
        if (!mkdtemp(dir)) {
            return 1;
        }
    }
    int rc = 0;
    if (strcmp(what, "quantiles") == 0 || strcmp(what, "all") == 0) {
        quantile_table();
    }
    if (strcmp(what, "query") == 0 || strcmp(what, "all") == 0) {
        rc = query_bench(dir, nroutes, days);
    }
    if (tmp) {
        char path[300];
        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/lock.mdb", dir);
        unlink(path);
        rmdir(dir);
    }
    return rc;
}
