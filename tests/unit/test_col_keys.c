/*
 * Unit tests for collector/col_keys: the keys file, service lookup, token buckets on a
 * virtual clock (burst, refill, the retry-after figure, debt for batches above the burst),
 * state carried over a reload, and the file's errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "col_keys.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define SEC 1000000LL

static const char file[] = "# service   key                     events/s  burst\n"
                           "checkout    ck_live_aaaaaaaaaaaa    100       200\n"
                           "checkout    ck_live_bbbbbbbbbbbb    100       200\n"
                           "\n"
                           "search\tsr_live_cccccccccccc\t-\n"
                           "slow        sl_live_dddddddddddd    0.5\n"
                           "batchy      bt_live_eeeeeeeeeeee    10\n";

static col_keys_t *parse(const char *text)
{
    col_keys_t *k = NULL;
    char err[256] = "";
    if (col_keys_parse(text, strlen(text), &k, err, sizeof(err)) != 0) {
        fail_msg("refused: %s", err);
    }
    return k;
}

static void test_lookup(void **state)
{
    (void)state;
    col_keys_t *k = parse(file);
    assert_int_equal(col_keys_count(k), 5);
    assert_int_equal(col_keys_services(k), 4);
    assert_string_equal(col_keys_service(k, "ck_live_aaaaaaaaaaaa"), "checkout");
    assert_string_equal(col_keys_service(k, "ck_live_bbbbbbbbbbbb"), "checkout");
    assert_string_equal(col_keys_service(k, "sr_live_cccccccccccc"), "search");
    assert_null(col_keys_service(k, "ck_live_aaaaaaaaaaab"));
    assert_null(col_keys_service(k, ""));
    assert_null(col_keys_service(k, NULL));
    col_keys_destroy(&k);
    col_keys_destroy(&k);
    assert_null(k);
}

static void test_bucket(void **state)
{
    (void)state;
    col_keys_t *k = parse(file);
    int64_t t = 1000 * SEC;
    /* A full bucket of 200: 150 then 50 pass, the next 10 wait 10/100 s. */
    assert_int_equal(col_keys_take(k, "checkout", 150, t), 0);
    assert_int_equal(col_keys_take(k, "checkout", 50, t), 0);
    assert_int_equal(col_keys_take(k, "checkout", 10, t), 100);
    /* 50 ms later 5 tokens came back: still 50 ms to wait. */
    assert_int_equal(col_keys_take(k, "checkout", 10, t + SEC / 20), 50);
    assert_int_equal(col_keys_take(k, "checkout", 10, t + SEC / 10), 0);
    /* Refill stops at the burst: after an hour, 200 pass and 1 more waits 10 ms. */
    t += 3600 * SEC;
    assert_int_equal(col_keys_take(k, "checkout", 200, t), 0);
    assert_int_equal(col_keys_take(k, "checkout", 1, t), 10);
    /* No quota, or a service not in the file: never waits. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(col_keys_take(k, "search", 100000, t), 0);
        assert_int_equal(col_keys_take(k, "elsewhere", 100000, t), 0);
    }
    /* Burst defaults to one second's worth, at least 1: 0.5/s holds one event. */
    assert_int_equal(col_keys_take(k, "slow", 1, t), 0);
    assert_int_equal(col_keys_take(k, "slow", 1, t), 2000);
    /* A batch above the burst passes when the bucket is full and leaves it in debt. */
    assert_int_equal(col_keys_take(k, "batchy", 50, t), 0);
    assert_int_equal(col_keys_take(k, "batchy", 1, t), 4100); /* 40 owed + 1 */
    assert_int_equal(col_keys_take(k, "batchy", 1, t + 5 * SEC), 0);
    /* A clock that steps back does not refill. */
    assert_int_equal(col_keys_take(k, "batchy", 10, t), 100);
    col_keys_destroy(&k);
}

static void test_reload_carries_state(void **state)
{
    (void)state;
    col_keys_t *old = parse(file);
    int64_t t = 50 * SEC;
    assert_int_equal(col_keys_take(old, "checkout", 200, t), 0);
    /* The new file lowers checkout's burst and drops "slow". */
    col_keys_t *fresh = parse("checkout ck_live_aaaaaaaaaaaa 100 50\n"
                              "fresh fr_live_ffffffffffff 10 10\n");
    col_keys_carry(fresh, old);
    col_keys_destroy(&old);
    /* Empty bucket carried over: no refill by reloading. */
    assert_int_equal(col_keys_take(fresh, "checkout", 10, t), 100);
    /* A service new in the file starts full. */
    assert_int_equal(col_keys_take(fresh, "fresh", 10, t), 0);
    assert_null(col_keys_service(fresh, "sl_live_dddddddddddd"));
    col_keys_carry(fresh, NULL);
    col_keys_destroy(&fresh);
}

static void test_errors(void **state)
{
    (void)state;
    static char longline[5000];
    memset(longline, 'x', sizeof(longline) - 1);
    static const struct {
        const char *text;
        const char *err;
    } cases[] = {
        {"checkout\n", "line 1: expected"},
        {"a ck_live_aaaaaaaaaaaa 1 2 3\n", "line 1: expected"},
        {"a short\n", "line 1: a key is 8 to 256"},
        {"a ck_live_aaaa\xc3\xa9"
         "aaaaaa\n",
         "a key is"},
        {"a ck_live_aaaaaaaaaaaa lots\n", "events/s and burst"},
        {"a ck_live_aaaaaaaaaaaa -1\n", "events/s and burst"},
        {"a ck_live_aaaaaaaaaaaa nan\n", "events/s and burst"},
        {"a ck_live_aaaaaaaaaaaa 10 x\n", "events/s and burst"},
        {"a k_live_aaaaaaaaaaaa 10\nb k_live_aaaaaaaaaaaa 10\n", "the same key"},
        {"a k1_live_aaaaaaaaaaa 10\na k2_live_aaaaaaaaaaa 20\n", "line 2: service a: a quota"},
        {longline, "longer than"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        col_keys_t *k = (col_keys_t *)0x1;
        char err[256] = "";
        int rc = col_keys_parse(cases[i].text, strlen(cases[i].text), &k, err, sizeof(err));
        if (rc != TC_EPARSE || !strstr(err, cases[i].err)) {
            fail_msg("case %zu: rc %d \"%s\", expected \"%s\"", i, rc, err, cases[i].err);
        }
        assert_null(k);
    }
    col_keys_t *k = NULL;
    char err[64];
    assert_int_equal(col_keys_parse("a ck_live_aaaaaaaaaaaa\0", 23, &k, err, sizeof(err)),
                     TC_EPARSE);
    /* An empty file is valid: no keys, every batch refused by the daemon. */
    assert_int_equal(col_keys_parse("", 0, &k, err, sizeof(err)), 0);
    assert_int_equal(col_keys_count(k), 0);
    assert_null(col_keys_service(k, "anything-at-all"));
    col_keys_destroy(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_reload_carries_state),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
