/*
 * alr_window: buckets replaced by higher revisions only, windows by bucket end, merged
 * sketches, metric aggregates, last-seen for absence, pruning and the journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "alr_window.h"
#include "tc_error.h"

#define S 1000000LL
#define T 1800000000LL

static alr_rollup_t bucket(const char *svc, const char *name, int kind, int64_t start,
                           uint64_t count, uint64_t errors, uint64_t rev)
{
    alr_rollup_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.service, svc);
    strcpy(r.environment, "prod");
    strcpy(r.name, name);
    r.kind = kind;
    r.start_s = start;
    r.width_s = 10;
    r.count = count;
    r.errors = errors;
    r.revision = rev;
    return r;
}

static void test_revisions_and_windows(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    alr_rollup_t a = bucket("shop", "/a", 1, T, 10, 1, 1);
    assert_int_equal(alr_window_put(w, &a, T * S, true), 1);
    a.count = 20;
    assert_int_equal(alr_window_put(w, &a, T * S, true), 0); /* same revision: ignored */
    a.revision = 2;
    assert_int_equal(alr_window_put(w, &a, T * S, true), 1); /* open bucket grew */
    alr_rollup_t b = bucket("shop", "/b", 1, T - 10, 5, 5, 1);
    assert_int_equal(alr_window_put(w, &b, T * S, true), 1);
    alr_window_agg_t g;
    alr_window_agg(w, "shop", "", "*", 1, (T - 60) * S, (T + 10) * S, 0, NULL, &g);
    assert_int_equal(g.count, 25);
    assert_int_equal(g.errors, 6);
    assert_int_equal(g.series, 2);
    /* A window ending before the newest bucket's end leaves it out. */
    alr_window_agg(w, "shop", "", "*", 1, (T - 60) * S, T * S, 0, NULL, &g);
    assert_int_equal(g.count, 5);
    alr_window_agg(w, "shop", "", "/a", 1, (T - 60) * S, (T + 10) * S, 0, NULL, &g);
    assert_int_equal(g.count, 20);
    alr_window_agg(w, "other", "", "*", 1, 0, INT64_MAX, 0, NULL, &g);
    assert_int_equal(g.count, 0);
    assert_int_equal(alr_window_watermark_us(w, T * S, 30 * S), (T + 10) * S);
    /* Far future buckets are refused. */
    alr_rollup_t f = bucket("shop", "/a", 1, T + 1000, 1, 0, 1);
    assert_int_equal(alr_window_put(w, &f, T * S, true), TC_EINVAL);
    size_t n;
    alr_window_journal(w, &n);
    assert_int_equal(n, 3);
    alr_window_journal_clear(w);
    assert_int_equal(alr_window_prune(w, T), 1); /* /b ends at T */
    alr_window_journal(w, &n);
    assert_int_equal(n, 1);
    assert_int_equal(alr_window_put(w, &b, T * S, true), 0); /* behind the horizon */
    alr_window_destroy(&w);
    alr_window_destroy(&w);
}

static void test_sketch_and_metrics(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    alr_rollup_t a = bucket("shop", "/a", 1, T, 3, 0, 1);
    a.has_sketch = true;
    tc_sketch_init(&a.sketch, TC_SKETCH_SCHEMA);
    tc_sketch_add(&a.sketch, 1000, 2);
    tc_sketch_add(&a.sketch, 900000, 1);
    assert_int_equal(alr_window_put(w, &a, T * S, true), 1);
    alr_rollup_fini(&a);
    tc_sketch_t sk;
    tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
    alr_window_agg_t g;
    alr_window_agg(w, "shop", "", "*", 1, 0, INT64_MAX, 0, &sk, &g);
    assert_int_equal(sk.count, 3);
    assert_true(fabs(tc_sketch_quantile(&sk, 1.0) - 900000) / 900000 < 0.01);
    tc_sketch_fini(&sk);
    alr_rollup_t g1 = bucket("shop", "depth", 4, T - 10, 2, 0, 1);
    g1.min = 3;
    g1.max = 50;
    g1.last = 40;
    g1.last_time_us = (T - 5) * S;
    alr_rollup_t g2 = bucket("shop", "depth", 4, T, 1, 0, 1);
    g2.min = g2.max = g2.last = 7;
    g2.last_time_us = (T + 2) * S;
    alr_window_put(w, &g1, T * S, true);
    alr_window_put(w, &g2, T * S, true);
    alr_window_agg(w, "shop", "", "depth", 0, 0, INT64_MAX, 0, NULL, &g);
    assert_true(g.min == 3 && g.max == 50 && g.last == 7);
    alr_rollup_t got;
    assert_int_equal(alr_window_get(w, &g1, &got), 0);
    assert_true(got.max == 50);
    alr_rollup_fini(&got);
    /* Last seen: the newest bucket with events, capped at now. */
    alr_rollup_t hb = bucket("worker", "heartbeat", 3, T - 30, 1, 0, 1);
    alr_window_put(w, &hb, T * S, true);
    assert_int_equal(alr_window_last_seen(w, "worker", "", "heartbeat", 3, T * S), (T - 20) * S);
    assert_int_equal(alr_window_last_seen(w, "shop", "", "depth", 0, T * S), T * S);
    assert_int_equal(alr_window_last_seen(w, "none", "", "x", 0, T * S), 0);
    alr_window_destroy(&w);
}

static void test_limit(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(2);
    alr_rollup_t a = bucket("s", "/a", 1, T, 1, 0, 1);
    assert_int_equal(alr_window_put(w, &a, T * S, false), 1);
    a.start_s -= 10;
    assert_int_equal(alr_window_put(w, &a, T * S, false), 1);
    a.start_s -= 10;
    assert_int_equal(alr_window_put(w, &a, T * S, false), TC_EFULL);
    alr_window_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_revisions_and_windows),
        cmocka_unit_test(test_sketch_and_metrics),
        cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
