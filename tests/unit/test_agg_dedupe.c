/*
 * Unit tests for aggregator/agg_dedupe: an id seen twice within the window is a duplicate;
 * outside the window (measured in receive time, moving with the latest seen) it counts
 * again; a million ids survive the rebuilds the table goes through; past max_ids the oldest
 * are forgotten first and counted; a journaled batch taken back is decided again alike.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "agg_dedupe.h"

#define SEC 1000000LL
#define T0 (1795000000LL * SEC)

static void id_of(uint64_t n, uint8_t id[16])
{
    memset(id, 0, 16);
    memcpy(id, &n, sizeof(n));
    id[15] = 0xa5;
}

static void test_window(void **state)
{
    (void)state;
    agg_dedupe_t *d = agg_dedupe_new(600, 100000, 1);
    assert_non_null(d);
    uint8_t a[16], b[16];
    id_of(1, a);
    id_of(2, b);
    assert_int_equal(agg_dedupe_check(d, a, T0), 0);
    assert_int_equal(agg_dedupe_check(d, a, T0 + 1), 1);
    assert_int_equal(agg_dedupe_check(d, a, T0 + 599 * SEC), 1);
    assert_int_equal(agg_dedupe_check(d, b, T0 + 599 * SEC), 0);
    /* The window moves with the latest receive time: 601 s later, a is forgotten. */
    assert_int_equal(agg_dedupe_check(d, b, T0 + 601 * SEC), 1);
    assert_int_equal(agg_dedupe_check(d, a, T0 + 601 * SEC), 0);
    assert_int_equal(agg_dedupe_check(d, a, T0 + 601 * SEC), 1);
    agg_dedupe_destroy(&d);
    agg_dedupe_destroy(&d);
    assert_null(d);
}

static void test_many(void **state)
{
    (void)state;
    agg_dedupe_t *d = agg_dedupe_new(3600, 4000000, 7);
    uint8_t id[16];
    for (uint64_t i = 0; i < 1000000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + (int64_t)i), 0);
    }
    assert_int_equal(agg_dedupe_size(d), 1000000);
    for (uint64_t i = 0; i < 1000000; i += 7) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + 1000000), 1);
    }
    assert_int_equal(agg_dedupe_evicted(d), 0);
    assert_true(agg_dedupe_bytes(d) >= 1000000 * 20);
    agg_dedupe_destroy(&d);
}

/* More ids inside the window than max_ids: the oldest go first, and are counted. */
static void test_max_ids(void **state)
{
    (void)state;
    agg_dedupe_t *d = agg_dedupe_new(86400, 10000, 3);
    uint8_t id[16];
    for (uint64_t i = 0; i < 50000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + (int64_t)i * SEC), 0);
    }
    assert_true(agg_dedupe_size(d) <= 10000);
    assert_true(agg_dedupe_evicted(d) >= 40000);
    /* The newest are still known. */
    for (uint64_t i = 49000; i < 50000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + 50000 * SEC), 1);
    }
    agg_dedupe_destroy(&d);
}

/* Expired ids are dropped when the table rebuilds, so memory follows the window. */
static void test_expiry_frees(void **state)
{
    (void)state;
    agg_dedupe_t *d = agg_dedupe_new(10, 1000000, 5);
    uint8_t id[16];
    for (uint64_t i = 0; i < 200000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + (int64_t)(i / 1000) * SEC), 0);
    }
    /* 200 s of ids, 10 s window: far fewer than 200,000 are held. */
    assert_true(agg_dedupe_size(d) < 50000);
    assert_int_equal(agg_dedupe_evicted(d), 0);
    agg_dedupe_destroy(&d);
}


/* A journaled batch taken back: ids it added are gone (the others still reachable, though
 * the table grew and probe runs were shifted), refreshed ones have their old time, and the
 * batch given again decides exactly as the first time. */
static void test_rollback(void **state)
{
    (void)state;
    agg_dedupe_t *d = agg_dedupe_new(600, 1000000, 3);
    assert_non_null(d);
    uint8_t id[16];
    for (uint64_t i = 0; i < 1000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0), 0);
    }
    agg_dedupe_begin(d);
    /* 1000..5999 new (the table rebuilds while journaling), 0..499 duplicates. */
    for (uint64_t i = 0; i < 6000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + SEC), i < 1000 ? 1 : 0);
    }
    agg_dedupe_rollback(d);
    for (uint64_t i = 0; i < 6000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + SEC), i < 1000 ? 1 : 0);
    }
    agg_dedupe_rollback(d); /* still journaling: taken back again */
    agg_dedupe_commit(d);
    for (uint64_t i = 0; i < 6000; i++) {
        id_of(i, id);
        assert_int_equal(agg_dedupe_check(d, id, T0 + SEC), i < 1000 ? 1 : 0);
    }
    /* Committed: a rollback outside a journal changes nothing. */
    agg_dedupe_rollback(d);
    id_of(5999, id);
    assert_int_equal(agg_dedupe_check(d, id, T0 + SEC), 1);
    /* A refreshed id (seen long ago) gets its old time back: expired again, new again. */
    id_of(424242, id);
    assert_int_equal(agg_dedupe_check(d, id, T0 + 2 * SEC), 0);
    agg_dedupe_begin(d);
    assert_int_equal(agg_dedupe_check(d, id, T0 + 700 * SEC), 0); /* refreshed */
    agg_dedupe_rollback(d);
    assert_int_equal(agg_dedupe_check(d, id, T0 + 700 * SEC), 0);
    agg_dedupe_commit(d);
    assert_int_equal(agg_dedupe_check(d, id, T0 + 701 * SEC), 1);
    agg_dedupe_destroy(&d);
    agg_dedupe_destroy(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_max_ids),
        cmocka_unit_test(test_expiry_frees),
        cmocka_unit_test(test_rollback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
