/*
 * Unit tests for aggregator/agg_bucket: bucket alignment (negative times too), SLO
 * thresholds, the sample of each body, applying and merging buckets (slow counters, users,
 * gauges by event time), the stored form (round trip, and refusal of every kind of corrupt
 * value), the rollup form read back by agg_rollup, and the accuracy of quantiles: lognormal,
 * Pareto and bimodal sets of 10^6 values, p50/p90/p99/p99.9 within 1 % of the exact values
 * for one bucket and for a 1 h window merged from 360 stored buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_bucket.h"
#include "agg_rollup.h"
#include "tc_error.h"
#include "tc_util.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define T0_S 1795000000LL

static agg_str_t S(const char *s)
{
    agg_str_t r = {s, (uint32_t)strlen(s)};
    return r;
}

static agg_sample_t sample(agg_kind_t kind, double value, bool error, int64_t time_us)
{
    agg_sample_t s;
    memset(&s, 0, sizeof(s));
    s.service = S("checkout");
    s.environment = S("production");
    s.name = S(kind == AGG_KIND_ERRORS ? "$errors" : "/pay");
    s.kind = kind;
    s.time_us = time_us;
    s.start_s = agg_bucket_align(time_us, AGG_BUCKET_WIDTH_S);
    s.error = error;
    s.has_value = kind != AGG_KIND_ERRORS;
    s.value = value;
    return s;
}

static void test_align(void **state)
{
    (void)state;
    static const struct {
        int64_t us;
        uint32_t width;
        int64_t start;
    } cases[] = {
        {0, 10, 0},
        {9999999, 10, 0},
        {10000000, 10, 10},
        {-1, 10, -10},
        {-10000000, 10, -10},
        {-10000001, 10, -20},
        {T0_S * 1000000 + 59999999, 60, 1795000020},
        {125 * 1000000LL, 60, 120},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        assert_int_equal(agg_bucket_align(cases[i].us, cases[i].width), cases[i].start);
    }
}

static void test_slo_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint32_t n;
        uint64_t first_us;
    } cases[] = {
        {"100ms,500ms,2s", 0, 3, 100000},
        {"", 0, 0, 0},
        {"  ", 0, 0, 0},
        {"1s", 0, 1, 1000000},
        {"500ms,100ms", TC_EINVAL, 0, 0},
        {"100ms,100ms", TC_EINVAL, 0, 0},
        {"0s", TC_EINVAL, 0, 0},
        {"banana", TC_EINVAL, 0, 0},
        {"1ms,2ms,3ms,4ms,5ms,6ms,7ms,8ms,9ms", TC_EINVAL, 0, 0},
        {"100ms,", TC_EINVAL, 0, 0},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        agg_slo_t slo;
        int rc = agg_slo_parse(cases[i].text, &slo);
        if (rc != cases[i].rc ||
            (rc == 0 && (slo.n != cases[i].n || (slo.n && slo.us[0] != cases[i].first_us)))) {
            fail_msg("'%s': rc %d n %u", cases[i].text, rc, slo.n);
        }
    }
}

static void test_sample(void **state)
{
    (void)state;
    agg_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.service = S("checkout");
    ev.environment = S("production");
    ev.time_us = T0_S * 1000000 + 4500000;
    ev.user_id = S("user-1");
    ev.body = AGG_BODY_REQUEST;
    ev.route = S("/pay");
    ev.status = 500;
    ev.duration_us = 1234;
    agg_sample_t s;
    agg_event_sample(&ev, &s);
    assert_int_equal(s.kind, AGG_KIND_REQUESTS);
    assert_true(s.error && s.has_value && s.value == 1234.0 && s.has_user);
    assert_int_equal(s.start_s, T0_S);
    assert_true(s.user_hash == tc_hll_hash("user-1", 6));
    ev.status = 200;
    ev.failed = true;
    agg_event_sample(&ev, &s);
    assert_true(s.error);
    ev.body = AGG_BODY_ERROR;
    agg_event_sample(&ev, &s);
    assert_int_equal(s.kind, AGG_KIND_ERRORS);
    assert_true(agg_str_eq(s.name, AGG_ERRORS_NAME) && s.error && !s.has_value);
    ev.body = AGG_BODY_METRIC;
    ev.metric_name = S("queue.depth");
    static const struct {
        int kind;
        agg_kind_t want;
    } kinds[] = {{TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER, AGG_KIND_COUNTER},
                 {TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE, AGG_KIND_GAUGE},
                 {TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING, AGG_KIND_TIMING}};
    for (size_t i = 0; i < N_ELEMS(kinds); i++) {
        ev.metric_kind = kinds[i].kind;
        agg_event_sample(&ev, &s);
        assert_int_equal(s.kind, kinds[i].want);
        assert_false(s.has_user); /* metrics carry no users */
    }
    ev.body = AGG_BODY_LOG;
    agg_event_sample(&ev, &s);
    assert_int_equal(s.kind, AGG_KIND_NONE);
}

static void test_apply(void **state)
{
    (void)state;
    agg_slo_t slo;
    assert_int_equal(agg_slo_parse("100ms,500ms", &slo), 0);
    agg_bucket_t b;
    agg_bucket_init(&b);
    int64_t t = T0_S * 1000000;
    double durations[] = {50000, 150000, 600000, 99999, 100000, 100001};
    for (size_t i = 0; i < N_ELEMS(durations); i++) {
        agg_sample_t s = sample(AGG_KIND_REQUESTS, durations[i], i == 2, t);
        s.has_user = true;
        s.user_hash = tc_hll_hash(&i, sizeof(i)) % 3; /* three distinct users */
        assert_int_equal(agg_bucket_apply(&b, &s, &slo), 0);
    }
    assert_int_equal(b.count, 6);
    assert_int_equal(b.errors, 1);
    assert_int_equal(b.nslo, 2);
    assert_int_equal(b.slow[0], 3); /* > 100 ms: 150, 600, 100.001 */
    assert_int_equal(b.slow[1], 1); /* > 500 ms */
    assert_true(b.min == 50000 && b.max == 600000);
    assert_int_equal(b.sketch.count, 6);
    assert_true(tc_hll_count(&b.users) == 3);
    agg_sample_t g = sample(AGG_KIND_GAUGE, 1, false, t);
    assert_int_equal(agg_bucket_apply(&b, &g, &slo), TC_EINVAL); /* another kind */
    agg_bucket_fini(&b);

    /* Gauges: last by event time, whatever the arrival order; min and max. */
    agg_bucket_init(&b);
    static const struct {
        double v;
        int64_t dt;
    } gauge[] = {{5, 3000}, {9, 1000}, {2, 3000}, {7, 2000}};
    for (size_t i = 0; i < N_ELEMS(gauge); i++) {
        agg_sample_t s = sample(AGG_KIND_GAUGE, gauge[i].v, false, t + gauge[i].dt);
        assert_int_equal(agg_bucket_apply(&b, &s, NULL), 0);
    }
    assert_true(b.last == 2 && b.min == 2 && b.max == 9); /* a tie keeps the later arrival */
    assert_int_equal(b.sketch.count, 0);
    agg_bucket_fini(&b);

    /* Counters sum; timings sketch. */
    agg_bucket_init(&b);
    for (int i = 1; i <= 4; i++) {
        agg_sample_t s = sample(AGG_KIND_COUNTER, i, false, t);
        assert_int_equal(agg_bucket_apply(&b, &s, NULL), 0);
    }
    assert_true(b.sum == 10 && b.count == 4 && b.nslo == 0);
    agg_bucket_fini(&b);
}

static void test_merge(void **state)
{
    (void)state;
    agg_slo_t a_slo = {2, {100000, 500000}}, b_slo = {2, {100000, 2000000}};
    agg_bucket_t a, b, m;
    agg_bucket_init(&a);
    agg_bucket_init(&b);
    agg_bucket_init(&m);
    int64_t t = T0_S * 1000000;
    for (int i = 0; i < 100; i++) {
        agg_sample_t s = sample(AGG_KIND_REQUESTS, 1000.0 * i * 10, i % 10 == 0, t);
        s.has_user = true;
        s.user_hash = tc_hll_hash(&i, sizeof(i));
        assert_int_equal(agg_bucket_apply(&a, &s, &a_slo), 0);
        s.value = 2000.0 * i * 10;
        int j = i + 50; /* half the users overlap */
        s.user_hash = tc_hll_hash(&j, sizeof(j));
        assert_int_equal(agg_bucket_apply(&b, &s, &b_slo), 0);
    }
    a.source_offset = 10;
    b.source_offset = 30;
    assert_int_equal(agg_bucket_merge(&m, &a), 0);
    assert_int_equal(agg_bucket_merge(&m, &b), 0);
    assert_int_equal(m.count, 200);
    assert_int_equal(m.errors, 20);
    assert_int_equal(m.sketch.count, 200);
    assert_int_equal(m.source_offset, 30);
    /* Only the 100 ms threshold is common. */
    assert_int_equal(m.nslo, 1);
    assert_true(m.slo_us[0] == 100000);
    assert_int_equal(m.slow[0], a.slow[0] + b.slow[0]);
    double users = tc_hll_count(&m.users);
    assert_true(fabs(users - 150) <= 3); /* a union, not a sum */
    assert_true(m.min == 0 && m.max == 1980000);
    agg_bucket_t wrong;
    agg_bucket_init(&wrong);
    agg_sample_t g = sample(AGG_KIND_GAUGE, 1, false, t);
    assert_int_equal(agg_bucket_apply(&wrong, &g, NULL), 0);
    assert_int_equal(agg_bucket_merge(&m, &wrong), TC_EINVAL);
    agg_bucket_fini(&wrong);
    agg_bucket_fini(&a);
    agg_bucket_fini(&b);
    agg_bucket_fini(&m);
}

static uint8_t *store(const agg_bucket_t *b, size_t *n)
{
    *n = agg_bucket_store_size(b);
    uint8_t *buf = malloc(*n + 16);
    assert_non_null(buf);
    assert_int_equal(agg_bucket_store_encode(b, buf), *n);
    return buf;
}

static void test_store_roundtrip(void **state)
{
    (void)state;
    agg_kind_t kinds[] = {AGG_KIND_REQUESTS, AGG_KIND_ERRORS, AGG_KIND_COUNTER, AGG_KIND_GAUGE,
                          AGG_KIND_TIMING};
    agg_slo_t slo = {3, {100000, 500000, 2000000}};
    for (size_t k = 0; k < N_ELEMS(kinds); k++) {
        agg_bucket_t b, d;
        agg_bucket_init(&b);
        agg_bucket_init(&d);
        for (int i = 0; i < 5000; i++) {
            agg_sample_t s = sample(kinds[k], 10.0 * i + 0.25, i % 3 == 0, T0_S * 1000000 + i);
            s.has_user = kinds[k] == AGG_KIND_REQUESTS || kinds[k] == AGG_KIND_ERRORS;
            s.user_hash = tc_hll_hash(&i, sizeof(i));
            assert_int_equal(agg_bucket_apply(&b, &s, &slo), 0);
        }
        b.late = 7;
        b.source_offset = 123456789;
        size_t n;
        uint8_t *buf = store(&b, &n);
        assert_int_equal(agg_bucket_store_decode(buf, n, &d), 0);
        assert_int_equal(d.kind, b.kind);
        assert_int_equal(d.count, b.count);
        assert_int_equal(d.errors, b.errors);
        assert_int_equal(d.late, 7);
        assert_int_equal(d.source_offset, 123456789);
        assert_int_equal(d.nslo, b.nslo);
        assert_memory_equal(d.slow, b.slow, sizeof(b.slow[0]) * b.nslo);
        assert_true(d.sum == b.sum && d.min == b.min && d.max == b.max && d.last == b.last);
        assert_true(d.last_time_us == b.last_time_us);
        assert_int_equal(d.sketch.count, b.sketch.count);
        if (b.sketch.count > 0) {
            assert_true(tc_sketch_quantile(&d.sketch, 0.9) == tc_sketch_quantile(&b.sketch, 0.9));
        }
        assert_true(tc_hll_count(&d.users) == tc_hll_count(&b.users));
        free(buf);
        agg_bucket_fini(&b);
        agg_bucket_fini(&d);
    }
}

/* Builds a stored request bucket, corrupts it with `fn`, expects refusal. */
static void test_store_refusals(void **state)
{
    (void)state;
    agg_bucket_t b, d;
    agg_bucket_init(&b);
    agg_bucket_init(&d);
    agg_slo_t slo = {1, {100000}};
    for (int i = 0; i < 10; i++) {
        agg_sample_t s = sample(AGG_KIND_REQUESTS, 200000.0, i == 0, T0_S * 1000000);
        assert_int_equal(agg_bucket_apply(&b, &s, &slo), 0);
    }
    size_t n;
    uint8_t *good = store(&b, &n);
    assert_int_equal(agg_bucket_store_decode(good, n, &d), 0);
    /* Layout: format, kind, width, flags, source_offset(1), count, errors, late, nslo,
     * threshold(3), slow, then values. */
    static const struct {
        const char *name;
        size_t at;
        uint8_t value;
    } bytes[] = {
        {"format", 0, 9},          {"kind 0", 1, 0},
        {"kind 9", 1, 9},          {"width 30", 2, 30},
        {"unknown flag", 3, 0x80}, {"errors above count", 6, 11},
        {"nslo 9", 8, 9},          {"slow above count", 12, 11},
        {"count 0", 5, 0},
    };
    for (size_t i = 0; i < N_ELEMS(bytes); i++) {
        uint8_t *bad = malloc(n);
        memcpy(bad, good, n);
        bad[bytes[i].at] = bytes[i].value;
        if (agg_bucket_store_decode(bad, n, &d) == 0) {
            fail_msg("%s: accepted", bytes[i].name);
        }
        assert_int_equal(d.count, 0);
        free(bad);
    }
    /* Every cut, and a trailing byte. */
    for (size_t cut = 0; cut < n; cut++) {
        assert_int_not_equal(agg_bucket_store_decode(good, cut, &d), 0);
    }
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, good, n);
    longer[n] = 0;
    assert_int_not_equal(agg_bucket_store_decode(longer, n + 1, &d), 0);
    free(longer);
    /* A NaN sum. */
    b.sum = NAN;
    size_t n2;
    uint8_t *nan = store(&b, &n2);
    assert_int_not_equal(agg_bucket_store_decode(nan, n2, &d), 0);
    free(nan);
    /* A sketch total that disagrees with count. */
    b.sum = 0;
    b.count = 11;
    uint8_t *mismatch = store(&b, &n2);
    assert_int_not_equal(agg_bucket_store_decode(mismatch, n2, &d), 0);
    free(mismatch);
    assert_int_equal(agg_bucket_store_decode(good, AGG_MAX_STORED_BYTES + 1, &d), TC_ETOOBIG);
    /* The query's fast path refuses what the decoder refuses, and leaves its accumulator
     * unchanged: a sketch bin beyond the schema's range (offset moved past the top). */
    agg_bucket_t acc;
    agg_bucket_init(&acc);
    assert_int_equal(agg_bucket_store_merge(&acc, good, n), 0);
    assert_int_equal(acc.count, 10);
    agg_bucket_t far;
    agg_bucket_init(&far);
    assert_int_equal(agg_bucket_merge(&far, &b), 0);
    far.count = 10;
    far.sum = 0;
    far.sketch.offset = tc_sketch_index(TC_SKETCH_SCHEMA, TC_SKETCH_MAX_VALUE) + 5;
    size_t nf;
    uint8_t *bad_bin = store(&far, &nf);
    assert_int_not_equal(agg_bucket_store_decode(bad_bin, nf, &d), 0);
    assert_int_not_equal(agg_bucket_store_merge(&acc, bad_bin, nf), 0);
    assert_int_equal(acc.count, 10);
    assert_int_equal(acc.sketch.count, 10);
    free(bad_bin);
    agg_bucket_fini(&far);
    agg_bucket_fini(&acc);
    free(good);
    agg_bucket_fini(&b);
    agg_bucket_fini(&d);
}

static void test_rollup_roundtrip(void **state)
{
    (void)state;
    agg_bucket_t b;
    agg_bucket_init(&b);
    agg_slo_t slo = {2, {100000, 2000000}};
    for (int i = 0; i < 300; i++) {
        agg_sample_t s = sample(AGG_KIND_REQUESTS, 1000.0 * i, i % 5 == 0, T0_S * 1000000);
        s.has_user = true;
        s.user_hash = tc_hll_hash(&i, sizeof(i));
        assert_int_equal(agg_bucket_apply(&b, &s, &slo), 0);
    }
    b.source_offset = 4242;
    agg_series_id_t id = {"checkout", "production", "/pay"};
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(agg_bucket_rollup_encode(&id, T0_S, &b, 7, false, "test", &out, &len), 0);
    char key[64];
    size_t klen = agg_rollup_key(&id, key, sizeof(key));
    assert_int_equal(klen, strlen("checkout") + strlen("production") + strlen("/pay") + 2);
    assert_int_equal(agg_rollup_key(&id, key, 5), 0);
    agg_rollup_t *r = malloc(sizeof(*r));
    agg_rollup_init(r);
    assert_int_equal(agg_rollup_decode(out, len, r, NULL), 0);
    assert_int_equal(r->body, AGG_ROLLUP_BUCKET);
    assert_true(r->revision == 2 * 4242 + 1);
    assert_string_equal(r->service, "checkout");
    assert_string_equal(r->name, "/pay");
    assert_int_equal(r->start_s, T0_S);
    assert_int_equal(r->partition, 7);
    assert_false(r->open);
    assert_int_equal(r->bucket.count, 300);
    assert_int_equal(r->bucket.source_offset, 4242);
    assert_int_equal(r->bucket.slow[0], b.slow[0]);
    assert_true(tc_hll_count(&r->bucket.users) == tc_hll_count(&b.users));
    assert_true(tc_sketch_quantile(&r->bucket.sketch, 0.5) == tc_sketch_quantile(&b.sketch, 0.5));
    free(out);
    agg_rollup_fini(r);
    free(r);
    agg_bucket_fini(&b);
}

/* ---- accuracy ------------------------------------------------------------------------------ */

#define N_VALUES 1000000
#define N_BUCKETS 360

static uint64_t rng = 0x1234567;

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
    case 0: /* lognormal: median 20 ms */
        return 20000.0 * exp(1.0 * normal());
    case 1: /* Pareto: scale 1 ms, shape 1.5 (heavy tail) */
        return 1000.0 / pow(uniform(), 1.0 / 1.5);
    default: { /* bimodal: fast cache hits around 5 ms, slow misses around 200 ms */
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

static void check_quantiles(const char *what, const char *dist, const tc_sketch_t *sk,
                            const double *sorted)
{
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < N_ELEMS(qs); i++) {
        double exact = sorted[(size_t)floor(qs[i] * (N_VALUES - 1))];
        double got = tc_sketch_quantile(sk, qs[i]);
        double rel = fabs(got - exact) / exact;
        if (rel > 0.01) {
            fail_msg("%s %s p%g: %.3f vs exact %.3f (%.3f %%)", what, dist, qs[i] * 100, got, exact,
                     rel * 100);
        }
    }
}

static void test_accuracy(void **state)
{
    (void)state;
    static const char *names[] = {"lognormal", "pareto", "bimodal"};
    double *values = malloc(N_VALUES * sizeof(double));
    agg_bucket_t *buckets = calloc(N_BUCKETS, sizeof(*buckets));
    assert_non_null(values);
    assert_non_null(buckets);
    for (int dist = 0; dist < 3; dist++) {
        agg_bucket_t one, merged, d;
        agg_bucket_init(&one);
        agg_bucket_init(&merged);
        agg_bucket_init(&d);
        for (int k = 0; k < N_BUCKETS; k++) {
            agg_bucket_init(&buckets[k]);
        }
        for (size_t i = 0; i < N_VALUES; i++) {
            values[i] = draw(dist);
            agg_sample_t s = sample(AGG_KIND_REQUESTS, values[i], false, T0_S * 1000000);
            assert_int_equal(agg_bucket_apply(&one, &s, NULL), 0);
            /* The same values spread over an hour of 10 s buckets. */
            assert_int_equal(agg_bucket_apply(&buckets[i * N_BUCKETS / N_VALUES], &s, NULL), 0);
        }
        /* Each bucket goes through the stored form, as a window query reads it. */
        for (int k = 0; k < N_BUCKETS; k++) {
            size_t n;
            uint8_t *buf = store(&buckets[k], &n);
            assert_int_equal(agg_bucket_store_decode(buf, n, &d), 0);
            assert_int_equal(agg_bucket_merge(&merged, &d), 0);
            free(buf);
            agg_bucket_fini(&buckets[k]);
        }
        assert_int_equal(merged.count, N_VALUES);
        qsort(values, N_VALUES, sizeof(double), cmp_double);
        check_quantiles("one bucket", names[dist], &one.sketch, values);
        check_quantiles("1 h window", names[dist], &merged.sketch, values);
        agg_bucket_fini(&one);
        agg_bucket_fini(&merged);
        agg_bucket_fini(&d);
    }
    free(buckets);
    free(values);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_align),          cmocka_unit_test(test_slo_parse),
        cmocka_unit_test(test_sample),         cmocka_unit_test(test_apply),
        cmocka_unit_test(test_merge),          cmocka_unit_test(test_store_roundtrip),
        cmocka_unit_test(test_store_refusals), cmocka_unit_test(test_rollup_roundtrip),
        cmocka_unit_test(test_accuracy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
