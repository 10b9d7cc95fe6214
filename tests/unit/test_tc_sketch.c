/*
 * Unit tests for common/tc_sketch: the relative-error bound against exact quantiles on
 * large skewed data sets, order-independent merges, the zero bin and clamping, invalid
 * input, and validation of loaded sketches.
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

#include "tc_error.h"
#include "tc_sketch.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define N_VALUES 200000

/* ---- deterministic data ---- */

typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&seed);
    }
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in (0, 1). */
static double rng_uniform(rng_t *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(rng_t *r)
{
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

typedef enum { LOGNORMAL, PARETO, BIMODAL, UNIFORM_WIDE } dist_t;

static const char *dist_name[] = {"lognormal", "pareto", "bimodal", "log-uniform"};

static double draw(rng_t *r, dist_t d)
{
    switch (d) {
    case LOGNORMAL: /* request latencies in seconds: median 50 ms, long tail */
        return exp(log(0.05) + 1.2 * rng_normal(r));
    case PARETO: /* heavy tail: xm 1 ms, alpha 1.2 */
        return 0.001 / pow(rng_uniform(r), 1.0 / 1.2);
    case BIMODAL: /* cache hits around 2 ms, misses around 800 ms */
        if (rng_uniform(r) < 0.7) {
            return exp(log(0.002) + 0.15 * rng_normal(r));
        }
        return exp(log(0.8) + 0.25 * rng_normal(r));
    case UNIFORM_WIDE: /* 1e-8 .. 1e17: every scale the sketch covers */
        return pow(10.0, -8.0 + 25.0 * rng_uniform(r));
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y ? 1 : 0);
}

static double *make_values(dist_t d, uint64_t seed, size_t n)
{
    rng_t r;
    rng_seed(&r, seed);
    double *v = malloc(n * sizeof(double));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        v[i] = draw(&r, d);
    }
    return v;
}

/* ---- accuracy ---- */

static void test_relative_accuracy_value(void **state)
{
    /* alpha = (gamma - 1) / (gamma + 1) with gamma = 2^(2^-schema). */
    assert_true(fabs(tc_sketch_relative_accuracy(6) - 0.005415) < 1e-5);
    assert_true(fabs(tc_sketch_relative_accuracy(0) - 1.0 / 3.0) < 1e-12);
    for (int s = 1; s <= 8; s++) {
        assert_true(tc_sketch_relative_accuracy(s) < tc_sketch_relative_accuracy(s - 1));
    }
    assert_true(tc_sketch_relative_accuracy(TC_SKETCH_SCHEMA) < 0.01); /* the 1 % promised */
}

/* Every representable value maps to a bin whose value is within alpha of it. */
static void test_bin_value_bound(void **state)
{
    rng_t r;
    rng_seed(&r, 7);
    for (int schema = 0; schema <= 8; schema++) {
        double alpha = tc_sketch_relative_accuracy(schema);
        for (int i = 0; i < 20000; i++) {
            double v = draw(&r, UNIFORM_WIDE);
            int32_t idx = tc_sketch_index(schema, v);
            double b = tc_sketch_bin_value(schema, idx);
            double err = fabs(b - v) / v;
            if (err > alpha) {
                fail_msg("schema %d: %.17g -> bin %d value %.17g, error %g > %g", schema, v, idx, b,
                         err, alpha);
            }
        }
        /* Exact powers of two sit on bin boundaries: bin i holds (gamma^(i-1), gamma^i]. */
        for (int e = -20; e <= 40; e++) {
            double v = ldexp(1.0, e);
            int32_t idx = tc_sketch_index(schema, v);
            assert_int_equal(idx, e * (1 << schema));
            double b = tc_sketch_bin_value(schema, idx);
            assert_true(fabs(b - v) / v <= alpha * (1 + 1e-12));
        }
    }
}

static void check_quantiles(dist_t d, uint64_t seed)
{
    double *v = make_values(d, seed, N_VALUES);
    tc_sketch_t s;
    tc_sketch_init(&s, TC_SKETCH_SCHEMA);
    for (size_t i = 0; i < N_VALUES; i++) {
        assert_int_equal(tc_sketch_add(&s, v[i], 1), 0);
    }
    assert_int_equal(s.count, N_VALUES);
    qsort(v, N_VALUES, sizeof(double), cmp_double);
    double alpha = tc_sketch_relative_accuracy(TC_SKETCH_SCHEMA);
    static const double qs[] = {0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1};
    for (size_t i = 0; i < N_ELEMS(qs); i++) {
        double exact = v[(size_t)floor(qs[i] * (N_VALUES - 1))];
        double est = tc_sketch_quantile(&s, qs[i]);
        double err = fabs(est - exact) / exact;
        if (!(err <= alpha)) {
            fail_msg("%s q=%g: exact %.9g, sketch %.9g, relative error %.6f > %.6f", dist_name[d],
                     qs[i], exact, est, err, alpha);
        }
    }
    /* Dense storage stays small for real data (a few decades). */
    if (d != UNIFORM_WIDE) {
        assert_true(s.len < 2000);
    }
    tc_sketch_fini(&s);
    free(v);
}

static void test_quantiles_lognormal(void **state)
{
    check_quantiles(LOGNORMAL, 1);
    check_quantiles(LOGNORMAL, 2);
}

static void test_quantiles_pareto(void **state)
{
    check_quantiles(PARETO, 3);
}

static void test_quantiles_bimodal(void **state)
{
    check_quantiles(BIMODAL, 4);
}

static void test_quantiles_wide(void **state)
{
    check_quantiles(UNIFORM_WIDE, 5);
}

/* Adding n at once is the same as adding one n times. */
static void test_weighted_add(void **state)
{
    tc_sketch_t a, b;
    tc_sketch_init(&a, TC_SKETCH_SCHEMA);
    tc_sketch_init(&b, TC_SKETCH_SCHEMA);
    for (int i = 1; i <= 100; i++) {
        assert_int_equal(tc_sketch_add(&a, i * 0.01, (uint64_t)i), 0);
        for (int k = 0; k < i; k++) {
            assert_int_equal(tc_sketch_add(&b, i * 0.01, 1), 0);
        }
    }
    assert_int_equal(tc_sketch_add(&a, 5.0, 0), 0); /* n = 0 changes nothing */
    assert_int_equal(a.count, b.count);
    assert_int_equal(a.offset, b.offset);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.counts, b.counts, a.len * sizeof(uint64_t));
    tc_sketch_fini(&a);
    tc_sketch_fini(&b);
}

/* ---- merges ---- */

#define PARTS 64

static void assert_same_bins(const tc_sketch_t *a, const tc_sketch_t *b)
{
    assert_int_equal(a->schema, b->schema);
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->zero_count, b->zero_count);
    assert_int_equal(a->offset, b->offset);
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->counts, b->counts, a->len * sizeof(uint64_t));
}

static void test_merge_order_independent(void **state)
{
    double *v = make_values(BIMODAL, 11, N_VALUES);
    /* Some zeros too, and one part left empty. */
    for (size_t i = 0; i < N_VALUES; i += 997) {
        v[i] = 0;
    }
    tc_sketch_t whole;
    tc_sketch_init(&whole, TC_SKETCH_SCHEMA);
    tc_sketch_t *parts = calloc(PARTS, sizeof(tc_sketch_t));
    assert_non_null(parts);
    for (int p = 0; p < PARTS; p++) {
        tc_sketch_init(&parts[p], TC_SKETCH_SCHEMA);
    }
    rng_t r;
    rng_seed(&r, 99);
    for (size_t i = 0; i < N_VALUES; i++) {
        /* Parts see different ranges: part p gets values of a band and random others. */
        int p = (int)(rng_next(&r) % (PARTS - 1)) + 1;
        assert_int_equal(tc_sketch_add(&parts[p], v[i], 1), 0);
        assert_int_equal(tc_sketch_add(&whole, v[i], 1), 0);
    }

    /* In order, in reverse, shuffled, and as a tree. */
    tc_sketch_t fwd, rev, shuf, tree;
    tc_sketch_init(&fwd, TC_SKETCH_SCHEMA);
    tc_sketch_init(&rev, TC_SKETCH_SCHEMA);
    tc_sketch_init(&shuf, TC_SKETCH_SCHEMA);
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(tc_sketch_merge(&fwd, &parts[p]), 0);
        assert_int_equal(tc_sketch_merge(&rev, &parts[PARTS - 1 - p]), 0);
    }
    int order[PARTS];
    for (int p = 0; p < PARTS; p++) {
        order[p] = p;
    }
    for (int p = PARTS - 1; p > 0; p--) {
        int k = (int)(rng_next(&r) % (uint64_t)(p + 1));
        int t = order[p];
        order[p] = order[k];
        order[k] = t;
    }
    for (int p = 0; p < PARTS; p++) {
        assert_int_equal(tc_sketch_merge(&shuf, &parts[order[p]]), 0);
    }
    /* Tree: merge pairs into the left one until one is left (this consumes the parts). */
    for (int step = 1; step < PARTS; step *= 2) {
        for (int p = 0; p + step < PARTS; p += 2 * step) {
            assert_int_equal(tc_sketch_merge(&parts[p], &parts[p + step]), 0);
        }
    }
    tree = parts[0];

    assert_same_bins(&fwd, &whole);
    assert_same_bins(&rev, &whole);
    assert_same_bins(&shuf, &whole);
    assert_same_bins(&tree, &whole);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < N_ELEMS(qs); i++) {
        assert_true(tc_sketch_quantile(&fwd, qs[i]) == tc_sketch_quantile(&whole, qs[i]));
    }

    for (int p = 0; p < PARTS; p++) {
        tc_sketch_fini(&parts[p]);
    }
    free(parts);
    tc_sketch_fini(&fwd);
    tc_sketch_fini(&rev);
    tc_sketch_fini(&shuf);
    tc_sketch_fini(&whole);
    free(v);
}

static void test_merge_edges(void **state)
{
    tc_sketch_t a, b, e;
    tc_sketch_init(&a, 6);
    tc_sketch_init(&b, 5);
    tc_sketch_init(&e, 6);
    assert_int_equal(tc_sketch_add(&a, 1.0, 1), 0);
    assert_int_equal(tc_sketch_add(&b, 1.0, 1), 0);
    assert_int_equal(tc_sketch_merge(&a, &b), TC_EINVAL); /* schemas differ */
    assert_int_equal(a.count, 1);

    /* Merging an empty sketch changes nothing; merging into an empty one copies. */
    assert_int_equal(tc_sketch_merge(&a, &e), 0);
    assert_int_equal(a.count, 1);
    assert_int_equal(tc_sketch_merge(&e, &a), 0);
    assert_same_bins(&e, &a);

    /* A sketch of only zeros merges into one with bins, and the other way round. */
    tc_sketch_t z;
    tc_sketch_init(&z, 6);
    assert_int_equal(tc_sketch_add(&z, 0, 5), 0);
    assert_int_equal(tc_sketch_merge(&a, &z), 0);
    assert_int_equal(a.count, 6);
    assert_int_equal(a.zero_count, 5);
    assert_int_equal(tc_sketch_merge(&z, &e), 0);
    assert_int_equal(z.count, 6);
    assert_true(tc_sketch_quantile(&z, 1.0) > 0.99);

    /* Far-apart ranges grow the bins on both sides. */
    tc_sketch_t lo, hi;
    tc_sketch_init(&lo, 6);
    tc_sketch_init(&hi, 6);
    assert_int_equal(tc_sketch_add(&lo, 1e-6, 1), 0);
    assert_int_equal(tc_sketch_add(&hi, 1e6, 1), 0);
    assert_int_equal(tc_sketch_merge(&hi, &lo), 0);
    assert_int_equal(tc_sketch_merge(&lo, &hi), 0);
    assert_int_equal(hi.count, 2);
    assert_int_equal(lo.count, 3);
    assert_true(fabs(tc_sketch_quantile(&hi, 0) - 1e-6) / 1e-6 <= 0.0055);
    assert_true(fabs(tc_sketch_quantile(&hi, 1) - 1e6) / 1e6 <= 0.0055);

    tc_sketch_fini(&a);
    tc_sketch_fini(&b);
    tc_sketch_fini(&e);
    tc_sketch_fini(&z);
    tc_sketch_fini(&lo);
    tc_sketch_fini(&hi);
}

/* ---- zero, tiny, huge and invalid values ---- */

static void test_zero_and_tiny(void **state)
{
    tc_sketch_t s;
    tc_sketch_init(&s, TC_SKETCH_SCHEMA);
    assert_int_equal(tc_sketch_add(&s, 0.0, 10), 0);
    assert_int_equal(tc_sketch_add(&s, 1e-12, 5), 0);
    assert_int_equal(tc_sketch_add(&s, TC_SKETCH_MIN_VALUE, 1), 0);
    assert_int_equal(tc_sketch_add(&s, 5e-324, 1), 0); /* the smallest subnormal */
    assert_int_equal(tc_sketch_add(&s, -0.0, 1), 0);
    assert_int_equal(s.zero_count, 18);
    assert_int_equal(s.count, 18);
    assert_int_equal(s.len, 0);
    assert_true(tc_sketch_quantile(&s, 0) == 0.0);
    assert_true(tc_sketch_quantile(&s, 1) == 0.0);

    /* Just above the minimum is a real bin, answered within alpha. */
    double v = TC_SKETCH_MIN_VALUE * 1.5;
    assert_int_equal(tc_sketch_add(&s, v, 2), 0);
    assert_int_equal(s.count, 20);
    double q = tc_sketch_quantile(&s, 1);
    assert_true(fabs(q - v) / v <= tc_sketch_relative_accuracy(TC_SKETCH_SCHEMA));
    /* 18 of 20 are zeros: rank floor(q * 19) < 18 is zero. */
    assert_true(tc_sketch_quantile(&s, 0.9) == 0.0);
    assert_true(tc_sketch_quantile(&s, 0.95) > 0.0);
    tc_sketch_fini(&s);
}

static void test_huge_values_clamp(void **state)
{
    tc_sketch_t s;
    tc_sketch_init(&s, TC_SKETCH_SCHEMA);
    static const double huge[] = {1e19, 1e100, 1e300, 1.7976931348623157e308, INFINITY};
    for (size_t i = 0; i < N_ELEMS(huge); i++) {
        assert_int_equal(tc_sketch_add(&s, huge[i], 1), 0);
    }
    assert_int_equal(s.len, 1); /* all in the top bin */
    assert_int_equal(s.count, N_ELEMS(huge));
    double top = tc_sketch_quantile(&s, 0.5);
    assert_true(isfinite(top));
    assert_true(fabs(top - TC_SKETCH_MAX_VALUE) / TC_SKETCH_MAX_VALUE <= 0.011);
    /* With a small value the bins span the whole range and stay within bounds. */
    assert_int_equal(tc_sketch_add(&s, 2e-9, 1), 0);
    assert_true(s.len <= TC_SKETCH_MAX_BINS);
    assert_true(tc_sketch_quantile(&s, 0) < 3e-9);
    tc_sketch_fini(&s);
}

static void test_invalid_values(void **state)
{
    tc_sketch_t s;
    tc_sketch_init(&s, TC_SKETCH_SCHEMA);
    static const double bad[] = {-1.0, -1e-300, -INFINITY, NAN, -NAN};
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        assert_int_equal(tc_sketch_add(&s, bad[i], 1), TC_EINVAL);
    }
    assert_int_equal(s.count, 0);
    /* Empty sketch and out-of-range q: NaN. */
    assert_true(isnan(tc_sketch_quantile(&s, 0.5)));
    assert_int_equal(tc_sketch_add(&s, 1.0, 1), 0);
    static const double bad_q[] = {-0.1, 1.1, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < N_ELEMS(bad_q); i++) {
        assert_true(isnan(tc_sketch_quantile(&s, bad_q[i])));
    }
    assert_false(isnan(tc_sketch_quantile(&s, 0)));

    /* Reset empties it and keeps it usable. */
    tc_sketch_reset(&s);
    assert_int_equal(s.count, 0);
    assert_true(isnan(tc_sketch_quantile(&s, 0.5)));
    assert_int_equal(tc_sketch_add(&s, 3.0, 1), 0);
    assert_true(fabs(tc_sketch_quantile(&s, 0.5) - 3.0) / 3.0 <= 0.0055);
    tc_sketch_fini(&s);
    tc_sketch_fini(&s); /* safe twice */
}

/* ---- loading ---- */

/* What a writer would store: (schema, zero_count, offset, counts[len]). */
static void test_load_round_trip(void **state)
{
    for (int schema = 0; schema <= 8; schema++) {
        tc_sketch_t s;
        tc_sketch_init(&s, schema);
        /* The widest sketch: the smallest and the largest bins in use. */
        assert_int_equal(tc_sketch_add(&s, 1.01 * TC_SKETCH_MIN_VALUE, 3), 0);
        assert_int_equal(tc_sketch_add(&s, 1.0, 2), 0);
        assert_int_equal(tc_sketch_add(&s, 10 * TC_SKETCH_MAX_VALUE, 1), 0);
        assert_int_equal(tc_sketch_add(&s, 0, 4), 0);
        if (s.len > TC_SKETCH_MAX_BINS) {
            fail_msg("schema %d: %u bins in use, above TC_SKETCH_MAX_BINS", schema, s.len);
        }
        tc_sketch_t t;
        tc_sketch_init(&t, TC_SKETCH_SCHEMA);
        int rc = tc_sketch_load(&t, s.schema, s.zero_count, s.offset, s.counts, s.len);
        if (rc != 0) {
            fail_msg("schema %d: a sketch of %u bins does not load back: %d", schema, s.len, rc);
        }
        assert_same_bins(&t, &s);
        for (double q = 0; q <= 1.0; q += 0.05) {
            assert_true(tc_sketch_quantile(&t, q) == tc_sketch_quantile(&s, q));
        }
        tc_sketch_fini(&s);
        tc_sketch_fini(&t);
    }
}

static void test_load_validation(void **state)
{
    const int32_t lo = tc_sketch_index(6, 1.0000001 * TC_SKETCH_MIN_VALUE);
    const int32_t hi = tc_sketch_index(6, INFINITY);
    uint64_t *counts = calloc(TC_SKETCH_MAX_BINS + 2, sizeof(uint64_t));
    assert_non_null(counts);
    counts[0] = 1;
    counts[1] = 2;
    static const uint64_t overflow[] = {UINT64_MAX, 1};
    static const uint64_t big[] = {UINT64_MAX - 10, 5};
    struct {
        const char *what;
        int schema;
        uint64_t zero;
        int32_t offset;
        const uint64_t *counts;
        size_t len;
        int rc;
    } cases[] = {
        {"valid", 6, 3, 0, counts, 2, 0},
        {"valid, empty", 6, 0, 12345, NULL, 0, 0},
        {"valid, zeros only", 6, 9, 0, NULL, 0, 0},
        {"valid, lowest bin", 6, 0, lo, counts, 2, 0},
        {"valid, highest bin", 6, 0, hi - 1, counts, 2, 0},
        {"valid, large counts", 6, 0, 0, big, 2, 0},
        {"schema -1", -1, 0, 0, counts, 2, TC_EINVAL},
        {"schema 9", 9, 0, 0, counts, 2, TC_EINVAL},
        {"schema 1000", 1000, 0, 0, counts, 2, TC_EINVAL},
        {"too many bins", 6, 0, lo, counts, TC_SKETCH_MAX_BINS + 1, TC_EINVAL},
        {"offset below the lowest bin", 6, 0, lo - 1, counts, 2, TC_EINVAL},
        {"offset far below", 6, 0, INT32_MIN, counts, 2, TC_EINVAL},
        {"range above the highest bin", 6, 0, hi, counts, 2, TC_EINVAL},
        {"offset far above", 6, 0, INT32_MAX, counts, 2, TC_EINVAL},
        {"offset + len wraps", 6, 0, INT32_MAX - 1, counts, 4, TC_EINVAL},
        {"counts overflow", 6, 0, 0, overflow, 2, TC_EINVAL},
        {"zero count overflows the total", 6, UINT64_MAX, 0, counts, 2, TC_EINVAL},
        {"big counts overflow with zeros", 6, 11, 0, big, 2, TC_EINVAL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tc_sketch_t s;
        tc_sketch_init(&s, TC_SKETCH_SCHEMA);
        assert_int_equal(tc_sketch_add(&s, 42.0, 7), 0);
        int rc = tc_sketch_load(&s, cases[i].schema, cases[i].zero, cases[i].offset,
                                cases[i].counts, cases[i].len);
        if (rc != cases[i].rc) {
            fail_msg("%s: rc %d, expected %d", cases[i].what, rc, cases[i].rc);
        }
        if (rc == 0) {
            uint64_t total = cases[i].zero;
            for (size_t k = 0; k < cases[i].len; k++) {
                total += cases[i].counts[k];
            }
            assert_true(s.count == total);
            assert_int_equal(s.len, cases[i].len);
            assert_int_equal(s.schema, cases[i].schema);
            if (total > 0) {
                assert_false(isnan(tc_sketch_quantile(&s, 0.5)));
            }
            /* A loaded sketch takes more values. */
            assert_int_equal(tc_sketch_add(&s, 1.0, 1), 0);
        } else {
            /* A refused load leaves the sketch as it was. */
            assert_int_equal(s.count, 7);
            assert_true(fabs(tc_sketch_quantile(&s, 0.5) - 42.0) / 42.0 <= 0.0055);
        }
        tc_sketch_fini(&s);
    }
    free(counts);
}

/* The dense bound holds for every schema: the index range fits TC_SKETCH_MAX_BINS. */
static void test_bins_bound(void **state)
{
    for (int schema = 0; schema <= 8; schema++) {
        int32_t lo = tc_sketch_index(schema, 1.0000001 * TC_SKETCH_MIN_VALUE);
        int32_t hi = tc_sketch_index(schema, INFINITY);
        int64_t span = (int64_t)hi - lo + 1;
        if (span > TC_SKETCH_MAX_BINS) {
            fail_msg("schema %d needs %lld bins, TC_SKETCH_MAX_BINS is %d", schema, (long long)span,
                     TC_SKETCH_MAX_BINS);
        }
        assert_int_equal(tc_sketch_index(schema, 1e-300), lo);
        assert_int_equal(tc_sketch_index(schema, 1e300), hi);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relative_accuracy_value),
        cmocka_unit_test(test_bin_value_bound),
        cmocka_unit_test(test_quantiles_lognormal),
        cmocka_unit_test(test_quantiles_pareto),
        cmocka_unit_test(test_quantiles_bimodal),
        cmocka_unit_test(test_quantiles_wide),
        cmocka_unit_test(test_weighted_add),
        cmocka_unit_test(test_merge_order_independent),
        cmocka_unit_test(test_merge_edges),
        cmocka_unit_test(test_zero_and_tiny),
        cmocka_unit_test(test_huge_values_clamp),
        cmocka_unit_test(test_invalid_values),
        cmocka_unit_test(test_load_round_trip),
        cmocka_unit_test(test_load_validation),
        cmocka_unit_test(test_bins_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
