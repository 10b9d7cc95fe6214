/*
 * Unit tests for aggregator/agg_query: parameter checks of query and range (one case per
 * refusal), the window's bucket range and a range's steps, the merged figures (users, late,
 * slow counters, metrics), the JSON answers of queries, ranges, issues and log records, and
 * quantile accuracy within 1 % of the exact values on a lognormal set over many buckets.
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

#include "agg_query.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define NOW_US 1795000123456789LL /* inside the bucket starting at 1795000120 */

static void test_params_refused(void **state)
{
    static char long_name[AGG_MAX_NAME + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    static const struct {
        const char *service, *name, *window, *env, *q;
        const char *param;
    } cases[] = {
        {NULL, "*", "5m", NULL, NULL, "service"},
        {"", "*", "5m", NULL, NULL, "service"},
        {"ca\xff", "*", "5m", NULL, NULL, "service"},
        {"checkout", NULL, "5m", NULL, NULL, "name"},
        {"checkout", "", "5m", NULL, NULL, "name"},
        {"checkout", long_name, "5m", NULL, NULL, "name"},
        {"checkout", "*", NULL, NULL, NULL, "window"},
        {"checkout", "*", "", NULL, NULL, "window"},
        {"checkout", "*", "abc", NULL, NULL, "window"},
        {"checkout", "*", "5x", NULL, NULL, "window"},
        {"checkout", "*", "-5m", NULL, NULL, "window"},
        {"checkout", "*", "0s", NULL, NULL, "window"},
        {"checkout", "*", "32d", NULL, NULL, "window"},
        {"checkout", "*", "5m", "\xc0\x80", NULL, "environment"},
        {"checkout", "*", "5m", NULL, "", "q"},
        {"checkout", "*", "5m", NULL, "0.5,,0.9", "q"},
        {"checkout", "*", "5m", NULL, "0.5,", "q"},
        {"checkout", "*", "5m", NULL, "1.5", "q"},
        {"checkout", "*", "5m", NULL, "-0.1", "q"},
        {"checkout", "*", "5m", NULL, "p99", "q"},
        {"checkout", "*", "5m", NULL, "0.5x", "q"},
        {"checkout", "*", "5m", NULL, "nan", "q"},
        {"checkout", "*", "5m", NULL,
         "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.91,0.92,0.93,0.94,0.95,"
         "0.96,0.97,0.98",
         "q"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        agg_query_params_t p;
        const char *param = NULL;
        char err[256] = "";
        int rc = agg_query_params_parse(&p, cases[i].service, cases[i].name, cases[i].window,
                                        cases[i].env, cases[i].q, NOW_US, &param, err, sizeof(err));
        if (rc != TC_EINVAL || !param || strcmp(param, cases[i].param) != 0 || !err[0]) {
            fail_msg("case %zu: rc %d param %s, want %s", i, rc, param ? param : "-",
                     cases[i].param);
        }
    }
}

static void test_params_window(void **state)
{
    static const struct {
        const char *window;
        int64_t window_s;
    } cases[] = {
        {"5m", 300},    {"1m", 60},  {"1h", 3600},    {"30d", 30 * 86400}, {"15s", 20},
        {"1500ms", 10}, {"10s", 10}, {"1h30m", 5400}, {"60", 60},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        agg_query_params_t p;
        const char *param = NULL;
        char err[256];
        assert_int_equal(agg_query_params_parse(&p, "checkout", "/x", cases[i].window, "", NULL,
                                                NOW_US, &param, err, sizeof(err)),
                         0);
        assert_int_equal(p.window_s, cases[i].window_s);
        /* The window ends with the bucket holding now. */
        assert_int_equal(p.to_s, 1795000130);
        assert_int_equal(p.from_s, 1795000130 - cases[i].window_s);
        assert_null(p.environment); /* empty: every environment */
        assert_int_equal(p.nq, 3);
        assert_string_equal(p.qkey[0], "0.5");
        assert_string_equal(p.qkey[1], "0.95");
        assert_string_equal(p.qkey[2], "0.99");
    }
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    assert_int_equal(agg_query_params_parse(&p, "checkout", "*", "5m", "production", "0,0.999,1",
                                            NOW_US, &param, err, sizeof(err)),
                     0);
    assert_string_equal(p.environment, "production");
    assert_int_equal(p.nq, 3);
    assert_string_equal(p.qkey[0], "0");
    assert_string_equal(p.qkey[1], "0.999");
    assert_string_equal(p.qkey[2], "1");
    assert_true(agg_query_wants(&p, AGG_KIND_REQUESTS));
    assert_false(agg_query_wants(&p, AGG_KIND_ERRORS));
    assert_false(agg_query_wants(&p, AGG_KIND_GAUGE));
    p.name = "queue.depth";
    assert_true(agg_query_wants(&p, AGG_KIND_GAUGE));
}

/* A request bucket of `n` samples from `values`, `errors` of them failed. */
static void make_bucket(agg_bucket_t *b, int64_t start_s, const double *values, size_t n,
                        size_t errors)
{
    agg_bucket_init(b);
    agg_slo_t slo = {2, {50000, 90000}};
    for (size_t i = 0; i < n; i++) {
        agg_sample_t s = {.service = {"checkout", 8},
                          .environment = {"production", 10},
                          .name = {"/pay", 4},
                          .kind = AGG_KIND_REQUESTS,
                          .start_s = start_s,
                          .time_us = start_s * 1000000,
                          .error = i < errors,
                          .has_value = true,
                          .value = values[i],
                          .has_user = true,
                          .user_hash = i % 10};
        assert_int_equal(agg_bucket_apply(b, &s, &slo), 0);
    }
}

static json_t *answer(const char *window, const char *q, agg_bucket_t *buckets, size_t n,
                      agg_query_acc_t *acc)
{
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    assert_int_equal(agg_query_params_parse(&p, "checkout", "*", window, NULL, q, NOW_US, &param,
                                            err, sizeof(err)),
                     0);
    agg_query_acc_init(acc);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(agg_query_add(acc, &buckets[i]), 0);
    }
    json_t *doc = agg_query_json(&p, acc);
    assert_non_null(doc);
    return doc;
}

static void test_query_math(void **state)
{
    double v[100];
    for (int i = 0; i < 100; i++) {
        v[i] = 1000.0 * (i + 1); /* 1 ms .. 100 ms */
    }
    agg_bucket_t b[3];
    make_bucket(&b[0], 1795000100, v, 100, 2);
    make_bucket(&b[1], 1795000110, v, 100, 0);
    make_bucket(&b[2], 1795000120, v, 100, 4);
    agg_query_acc_t acc;
    json_t *doc = answer("1m", NULL, b, 3, &acc);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 300);
    assert_int_equal(json_integer_value(json_object_get(doc, "errors")), 6);
    assert_true(fabs(json_real_value(json_object_get(doc, "error_rate")) - 0.02) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(doc, "rate_per_s")) - 5.0) < 1e-12);
    assert_int_equal(json_integer_value(json_object_get(doc, "window_s")), 60);
    assert_int_equal(json_integer_value(json_object_get(doc, "from")), 1795000070);
    assert_int_equal(json_integer_value(json_object_get(doc, "to")), 1795000130);
    assert_int_equal(json_integer_value(json_object_get(doc, "buckets")), 3);
    assert_string_equal(json_string_value(json_object_get(doc, "kind")), "requests");
    assert_true(json_is_null(json_object_get(doc, "environment")));
    assert_int_equal(json_integer_value(json_object_get(doc, "users")), 10);
    assert_int_equal(json_integer_value(json_object_get(doc, "late")), 0);
    assert_true(json_is_false(json_object_get(doc, "sampled")));
    assert_int_equal(json_integer_value(json_object_get(doc, "sampled_events")), 0);
    json_t *slow = json_object_get(doc, "slow");
    assert_int_equal(json_integer_value(json_object_get(slow, "50ms")), 150);
    assert_int_equal(json_integer_value(json_object_get(slow, "90ms")), 30);
    json_t *qs = json_object_get(doc, "quantiles");
    /* Exact p50 at rank floor(0.5 * 299) = 149 of 300 values (each value thrice): 50 ms. */
    double p50 = json_real_value(json_object_get(qs, "0.5"));
    double p99 = json_real_value(json_object_get(qs, "0.99"));
    assert_true(fabs(p50 - 50.0) / 50.0 <= 0.0055);
    assert_true(fabs(p99 - 99.0) / 99.0 <= 0.0055);
    json_decref(doc);
    agg_query_acc_fini(&acc);

    /* A sampled event (rate 0.1, weight 10, an error of 95 ms) in the last bucket: the
     * figures are estimates and say so. */
    agg_sample_t sm = {.service = {"checkout", 8},
                       .environment = {"production", 10},
                       .name = {"/pay", 4},
                       .kind = AGG_KIND_REQUESTS,
                       .start_s = 1795000120,
                       .time_us = 1795000120 * 1000000LL,
                       .error = true,
                       .has_value = true,
                       .value = 95000,
                       .weight = 10,
                       .sampled = true};
    agg_slo_t slo = {2, {50000, 90000}};
    assert_int_equal(agg_bucket_apply(&b[2], &sm, &slo), 0);
    doc = answer("1m", NULL, b, 3, &acc);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 310);
    assert_int_equal(json_integer_value(json_object_get(doc, "errors")), 16);
    assert_true(json_is_true(json_object_get(doc, "sampled")));
    assert_int_equal(json_integer_value(json_object_get(doc, "sampled_events")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "sampled_count")), 10);
    slow = json_object_get(doc, "slow");
    assert_int_equal(json_integer_value(json_object_get(slow, "90ms")), 40);
    json_decref(doc);
    agg_query_acc_fini(&acc);

    /* No data: counts 0, error_rate 0, quantiles null. */
    doc = answer("5m", "0.5,0.9", NULL, 0, &acc);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 0);
    assert_true(json_real_value(json_object_get(doc, "error_rate")) == 0.0);
    assert_true(json_is_null(json_object_get(doc, "kind")));
    qs = json_object_get(doc, "quantiles");
    assert_int_equal(json_object_size(qs), 2);
    assert_true(json_is_null(json_object_get(qs, "0.5")));
    assert_true(json_is_null(json_object_get(qs, "0.9")));
    json_decref(doc);
    agg_query_acc_fini(&acc);

    /* A bucket of another kind is left out, not mixed in. */
    agg_bucket_t g;
    agg_bucket_init(&g);
    agg_sample_t s = {.service = {"checkout", 8},
                      .environment = {"production", 10},
                      .name = {"/pay", 4},
                      .kind = AGG_KIND_GAUGE,
                      .start_s = 1795000120,
                      .has_value = true,
                      .value = 3};
    assert_int_equal(agg_bucket_apply(&g, &s, NULL), 0);
    agg_query_acc_init(&acc);
    assert_int_equal(agg_query_add(&acc, &b[0]), 0);
    assert_int_equal(agg_query_add(&acc, &g), 0);
    assert_int_equal(acc.total.count, 100);
    assert_int_equal(acc.skipped, 1);
    agg_query_acc_fini(&acc);

    /* Metric series answer their own figures. */
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    assert_int_equal(agg_query_params_parse(&p, "checkout", "/pay", "1m", NULL, NULL, NOW_US,
                                            &param, err, sizeof(err)),
                     0);
    agg_query_acc_init(&acc);
    assert_int_equal(agg_query_add(&acc, &g), 0);
    doc = agg_query_json(&p, &acc);
    assert_string_equal(json_string_value(json_object_get(doc, "kind")), "gauge");
    assert_true(json_real_value(json_object_get(doc, "last")) == 3.0);
    assert_true(json_real_value(json_object_get(doc, "min")) == 3.0);
    assert_null(json_object_get(doc, "sum"));
    assert_true(json_is_null(json_object_get(doc, "users"))); /* gauges carry no users */
    json_decref(doc);
    agg_query_acc_fini(&acc);

    agg_bucket_fini(&g);
    for (int i = 0; i < 3; i++) {
        agg_bucket_fini(&b[i]);
    }
}

/* A deterministic generator (splitmix64), so the test sees the same data every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform01(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_quantile_accuracy(void **state)
{
    /* Lognormal latencies: median e^9.9 us (about 20 ms), sigma 1, 60 buckets of 5,000. */
    enum { NB = 60, PER = 5000, N = NB * PER };
    double *all = malloc(N * sizeof(double));
    assert_non_null(all);
    agg_bucket_t *b = calloc(NB, sizeof(agg_bucket_t));
    assert_non_null(b);
    for (int k = 0; k < NB; k++) {
        double *v = all + (size_t)k * PER;
        for (int i = 0; i < PER; i++) {
            double u1 = uniform01(), u2 = uniform01();
            double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
            v[i] = floor(exp(9.9 + z)); /* whole microseconds, as on the wire */
        }
        make_bucket(&b[k], 1795000130 - 600 + 10 * k, v, PER, 0);
    }
    agg_query_acc_t acc;
    json_t *doc = answer("10m", "0.5,0.9,0.95,0.99,0.999", b, NB, &acc);
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), N);
    qsort(all, N, sizeof(double), cmp_double);
    static const struct {
        const char *key;
        double q;
    } qs[] = {{"0.5", 0.5}, {"0.9", 0.9}, {"0.95", 0.95}, {"0.99", 0.99}, {"0.999", 0.999}};
    json_t *got = json_object_get(doc, "quantiles");
    for (size_t i = 0; i < N_ELEMS(qs); i++) {
        double exact_ms = all[(size_t)floor(qs[i].q * (N - 1))] / 1000.0;
        double ms = json_real_value(json_object_get(got, qs[i].key));
        double rel = fabs(ms - exact_ms) / exact_ms;
        if (rel > 0.01) {
            fail_msg("q %s: %.4f ms, exact %.4f ms, error %.3f %%", qs[i].key, ms, exact_ms,
                     rel * 100);
        }
    }
    json_decref(doc);
    agg_query_acc_fini(&acc);
    for (int k = 0; k < NB; k++) {
        agg_bucket_fini(&b[k]);
    }
    free(b);
    free(all);
}

static void test_range_params(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to, *step;
        const char *param;
    } bad[] = {
        {NULL, "now", "10s", "from"}, {"yesterday", "now", "10s", "from"},
        {"1h", NULL, "10s", "to"},    {"1h", "soon", "10s", "to"},
        {"1h", "now", NULL, "step"},  {"1h", "now", "15s", "step"},
        {"1h", "now", "0s", "step"},  {"now", "1h", "10s", "to"},
        {"40d", "now", "1h", "from"}, {"1795000000", "1795000000", "10s", "to"},
        {"1d", "now", "10s", "step"}, /* 8,640 points is fine, 31d at 10s is not */
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        agg_query_params_t p;
        const char *param = NULL;
        char err[256] = "";
        int rc = agg_range_params_parse(&p, "checkout", "*", bad[i].from, bad[i].to, bad[i].step,
                                        NULL, NULL, NOW_US, &param, err, sizeof(err));
        if (i == N_ELEMS(bad) - 1) {
            assert_int_equal(rc, 0); /* one day at 10 s: 8,640 points */
            assert_int_equal(p.npoints, 8641);
            continue;
        }
        if (rc != TC_EINVAL || !param || strcmp(param, bad[i].param) != 0) {
            fail_msg("case %zu: rc %d param %s, want %s", i, rc, param ? param : "-", bad[i].param);
        }
    }
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    assert_int_equal(agg_range_params_parse(&p, "checkout", "*", "1795000003", "1795000125", "1m",
                                            "", "0.5", NOW_US, &param, err, sizeof(err)),
                     0);
    assert_int_equal(p.from_s, 1795000000);
    assert_int_equal(p.step_s, 60);
    assert_int_equal(p.npoints, 3);
    assert_int_equal(p.to_s, 1795000180);
    int64_t us = 0;
    assert_int_equal(agg_time_parse("5m", NOW_US, &us), 0);
    assert_true(us == NOW_US - 300000000LL);
    assert_int_equal(agg_time_parse("now", NOW_US, &us), 0);
    assert_true(us == NOW_US);
    assert_int_equal(agg_time_parse("1795000000.5", NOW_US, &us), 0);
    assert_true(us == 1795000000500000LL);
    assert_int_equal(agg_time_parse("", NOW_US, &us), TC_EINVAL);
    assert_int_equal(agg_time_parse("1e300", NOW_US, &us), TC_EINVAL);
}

static void test_range_json(void **state)
{
    (void)state;
    double v[10];
    for (int i = 0; i < 10; i++) {
        v[i] = 1000.0 * (i + 1);
    }
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    assert_int_equal(agg_range_params_parse(&p, "checkout", "*", "1795000000", "1795000060", "20s",
                                            NULL, "0.5", NOW_US, &param, err, sizeof(err)),
                     0);
    assert_int_equal(p.npoints, 3);
    agg_query_acc_t accs[3];
    agg_bucket_t b;
    for (int i = 0; i < 3; i++) {
        agg_query_acc_init(&accs[i]);
    }
    make_bucket(&b, 1795000020, v, 10, 1);
    assert_int_equal(agg_query_add(&accs[1], &b), 0);
    json_t *doc = agg_range_json(&p, accs);
    assert_non_null(doc);
    json_t *pts = json_object_get(doc, "points");
    assert_int_equal(json_array_size(pts), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 1), "t")), 1795000020);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 1), "count")), 10);
    assert_true(fabs(json_real_value(json_object_get(json_array_get(pts, 1), "rate_per_s")) - 0.5) <
                1e-12);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(pts, 0), "count")), 0);
    assert_int_equal(json_integer_value(json_object_get(doc, "step")), 20);
    json_decref(doc);
    for (int i = 0; i < 3; i++) {
        agg_query_acc_fini(&accs[i]);
    }
    agg_bucket_fini(&b);
}

static void test_issue_and_log_json(void **state)
{
    (void)state;
    agg_issue_t is;
    agg_issue_init(&is);
    is.service = strdup("checkout");
    is.id = strdup("abc");
    is.type = strdup("KeyError");
    is.message = strdup("missing");
    is.culprit = strdup("app in f");
    is.count = 3;
    is.level = 5;
    is.first_seen_us = 1795000000000000LL;
    is.last_seen_us = 1795000001000000LL;
    is.releases[0] = strdup("1.0");
    is.nreleases = 1;
    agg_issue_status_t st = {AGG_STATUS_RESOLVED, 1795000002000000LL, "api:x"};
    json_t *doc = agg_issue_json(&is, &st, true);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "resolved");
    assert_string_equal(json_string_value(json_object_get(doc, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(doc, "first_seen")),
                        "2026-11-18T11:06:40.000Z");
    assert_int_equal(json_integer_value(json_object_get(doc, "count")), 3);
    assert_true(json_is_null(json_object_get(doc, "sample")));
    json_decref(doc);
    agg_issue_status_t none = {AGG_STATUS_NONE, 0, ""};
    doc = agg_issue_json(&is, &none, false);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "unresolved");
    assert_null(json_object_get(doc, "sample"));
    json_decref(doc);
    agg_issue_fini(&is);

    agg_log_t l;
    memset(&l, 0, sizeof(l));
    l.level = 4;
    l.message = (agg_str_t){"payment retried", 15};
    l.logger = (agg_str_t){"pay", 3};
    l.nfields = 1;
    l.keys[0] = (agg_str_t){"order", 5};
    l.values[0] = (agg_str_t){"42", 2};
    doc = agg_log_json(1795000000000000LL, &l);
    assert_string_equal(json_string_value(json_object_get(doc, "level")), "warning");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "fields"), "order")),
                        "42");
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_refused),     cmocka_unit_test(test_params_window),
        cmocka_unit_test(test_query_math),         cmocka_unit_test(test_quantile_accuracy),
        cmocka_unit_test(test_range_params),       cmocka_unit_test(test_range_json),
        cmocka_unit_test(test_issue_and_log_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
