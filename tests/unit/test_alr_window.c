/* The window store: revision upsert, `*` merge, environment and kind filters, window
 * bounds, the watermark, pruning and the journal. Time is virtual. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "alr_window.h"
#include "tc_error.h"

#define S 1000000LL /* one second in microseconds */

static alr_rollup_t bucket(const char *svc, const char *env, const char *name, int kind,
                           int64_t start, uint64_t count, uint64_t errors, uint64_t rev)
{
    alr_rollup_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.service, svc);
    strcpy(r.environment, env);
    strcpy(r.name, name);
    r.kind = kind;
    r.start_s = start;
    r.width_s = 10;
    r.count = count;
    r.errors = errors;
    r.revision = rev;
    return r;
}

static int put(alr_window_t *w, alr_rollup_t r)
{
    return alr_window_put(w, &r, 2000 * S, true);
}

static alr_window_sum_t sum(const alr_window_t *w, const char *svc, const char *env,
                            const char *name, int64_t from_s, int64_t to_s)
{
    alr_window_sum_t s;
    alr_window_sum(w, svc, env, name, ALR_KIND_REQUESTS, from_s * S, to_s * S, &s);
    return s;
}

static void test_revision_upsert(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1000, 100, 10, 5)), 1);
    /* Equal and lower revisions are ignored, whatever they hold. */
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1000, 999, 999, 5)), 0);
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1000, 1, 1, 4)), 0);
    alr_window_sum_t s = sum(w, "a", "", "*", 900, 1010);
    assert_int_equal(s.count, 100);
    assert_int_equal(s.errors, 10);
    /* A higher revision replaces the bucket (not adds to it). */
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1000, 120, 30, 6)), 1);
    s = sum(w, "a", "", "*", 900, 1010);
    assert_int_equal(s.count, 120);
    assert_int_equal(s.errors, 30);
    assert_int_equal(s.buckets, 1);
    assert_int_equal(alr_window_bucket_count(w), 1);
    alr_window_destroy(&w);
    assert_null(w);
    alr_window_destroy(&w);
}

static void test_star_merge_and_filters(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    put(w, bucket("shop", "prod", "/pay", 1, 1000, 100, 10, 1));
    put(w, bucket("shop", "prod", "/cart", 1, 1000, 50, 5, 1));
    put(w, bucket("shop", "staging", "/pay", 1, 1000, 20, 20, 1));
    put(w, bucket("shop", "prod", "$errors", 2, 1000, 7, 7, 1)); /* not a request series */
    put(w, bucket("other", "prod", "/pay", 1, 1000, 1000, 1000, 1));
    put(w, bucket("shop", "prod", "/pay", 1, 1010, 10, 0, 1));

    alr_window_sum_t s = sum(w, "shop", "", "*", 990, 1020);
    assert_int_equal(s.count, 180);
    assert_int_equal(s.errors, 35);
    assert_int_equal(s.series, 3);
    s = sum(w, "shop", "prod", "*", 990, 1020);
    assert_int_equal(s.count, 160);
    assert_int_equal(s.errors, 15);
    s = sum(w, "shop", "prod", "/pay", 990, 1020);
    assert_int_equal(s.count, 110);
    assert_int_equal(s.errors, 10);
    s = sum(w, "shop", "", "/pay", 990, 1020);
    assert_int_equal(s.count, 130);
    s = sum(w, "nobody", "", "*", 0, 5000);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.buckets, 0);
    alr_window_sum_t e;
    alr_window_sum(w, "shop", "", "*", 2, 990 * S, 1020 * S, &e);
    assert_int_equal(e.count, 7);
    alr_window_destroy(&w);
}

/* A bucket belongs to (from, to] by its end: end == from is out, end == to is in. */
static void test_window_bounds(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    for (int64_t start = 900; start < 1000; start += 10) {
        put(w, bucket("a", "", "/x", 1, start, 1, 0, 1)); /* ends 910 .. 1000 */
    }
    assert_int_equal(sum(w, "a", "", "*", 940, 1000).count, 6);
    assert_int_equal(sum(w, "a", "", "*", 950, 1000).count, 5); /* end 950 is out */
    assert_int_equal(sum(w, "a", "", "*", 940, 999).count, 5);
    assert_int_equal(sum(w, "a", "", "*", 1000, 1100).count, 0);
    alr_window_destroy(&w);
}

static void test_watermark(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    /* No data: now - max_delay. */
    assert_int_equal(alr_window_watermark_us(w, 2000 * S, 30 * S), 1970 * S);
    put(w, bucket("a", "", "/x", 1, 1980, 1, 0, 1)); /* ends 1990 */
    assert_int_equal(alr_window_watermark_us(w, 2000 * S, 30 * S), 1990 * S);
    /* Another series' newer bucket moves it for everyone. */
    put(w, bucket("b", "", "/y", 1, 1990, 1, 0, 1)); /* ends 2000 */
    assert_int_equal(alr_window_watermark_us(w, 2001 * S, 30 * S), 2000 * S);
    /* Silence: time moves it on. */
    assert_int_equal(alr_window_watermark_us(w, 2100 * S, 30 * S), 2070 * S);
    /* A bucket far in the future is refused and does not move it. */
    alr_rollup_t f = bucket("a", "", "/x", 1, 2000 + ALR_WINDOW_FUTURE_MAX_S + 10, 1, 0, 1);
    assert_int_equal(alr_window_put(w, &f, 2000 * S, true), TC_EINVAL);
    assert_int_equal(alr_window_watermark_us(w, 2001 * S, 30 * S), 2000 * S);
    alr_window_destroy(&w);
}

static void test_prune_and_journal(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    put(w, bucket("a", "", "/x", 1, 1000, 1, 0, 1));
    put(w, bucket("a", "", "/x", 1, 1010, 2, 0, 1));
    put(w, bucket("b", "", "/y", 1, 1000, 3, 0, 1));
    put(w, bucket("a", "", "/x", 1, 1010, 4, 1, 2));
    size_t n;
    const alr_window_change_t *j = alr_window_journal(w, &n);
    assert_int_equal(n, 4);
    assert_false(j[3].deleted);
    assert_int_equal(j[3].bucket.count, 4);
    assert_int_equal(j[3].bucket.revision, 2);
    assert_string_equal(j[3].bucket.service, "a");
    alr_window_journal_clear(w);
    alr_window_journal(w, &n);
    assert_int_equal(n, 0);

    /* Buckets ending at or before 1010 go: both that start at 1000. */
    assert_int_equal(alr_window_prune(w, 1010), 2);
    assert_int_equal(alr_window_bucket_count(w), 1);
    j = alr_window_journal(w, &n);
    assert_int_equal(n, 2);
    assert_true(j[0].deleted && j[1].deleted);
    assert_int_equal(sum(w, "b", "", "*", 0, 5000).count, 0);
    assert_int_equal(sum(w, "a", "", "*", 0, 5000).count, 4);
    /* An old bucket arriving after the prune is ignored, not resurrected. */
    assert_int_equal(put(w, bucket("b", "", "/y", 1, 1000, 9, 0, 7)), 0);
    assert_int_equal(sum(w, "b", "", "*", 0, 5000).count, 0);
    /* Not journaled when restoring. */
    alr_window_journal_clear(w);
    alr_rollup_t r = bucket("c", "", "/z", 1, 1100, 1, 0, 1);
    assert_int_equal(alr_window_put(w, &r, 2000 * S, false), 1);
    alr_window_journal(w, &n);
    assert_int_equal(n, 0);
    alr_window_destroy(&w);
}

static void test_limit(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(2);
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1000, 1, 0, 1)), 1);
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1010, 1, 0, 1)), 1);
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1020, 1, 0, 1)), TC_EFULL);
    /* Replacing a held bucket still works when full. */
    assert_int_equal(put(w, bucket("a", "", "/x", 1, 1010, 5, 0, 2)), 1);
    alr_window_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_revision_upsert), cmocka_unit_test(test_star_merge_and_filters),
        cmocka_unit_test(test_window_bounds),   cmocka_unit_test(test_watermark),
        cmocka_unit_test(test_prune_and_journal), cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
