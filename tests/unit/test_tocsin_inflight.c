/* Unit tests for clients/c/src/tocsin_inflight.c: the in-flight batch table against a
 * virtual clock — acks, time-outs with back-off and failover, refusals, retry-after. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_inflight.h"

static const tocsin_inflight_config_t config2 = {
    .max_batches = 3,
    .n_endpoints = 2,
    .ack_timeout_ms = 1000,
    .backoff_base_ms = 100,
    .backoff_max_ms = 800,
    .refused_retry_ms = 50,
    .retry_after_max_ms = 5000,
};

static uint8_t *blob(void)
{
    uint8_t *b = malloc(4);
    memcpy(b, "abcd", 4);
    return b;
}

static tocsin_ack_t ack_of(uint64_t seq, tocsin_ack_status_t status, uint32_t retry_after)
{
    return (tocsin_ack_t){.sequence = seq, .status = status, .retry_after_ms = retry_after};
}

static void test_config_checked(void **state)
{
    (void)state;
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 1);
    tocsin_inflight_config_t c = config2;
    c.max_batches = 0;
    assert_null(tocsin_inflight_new(&c, &rng));
    c = config2;
    c.n_endpoints = 0;
    assert_null(tocsin_inflight_new(&c, &rng));
    c = config2;
    c.backoff_max_ms = 10;
    assert_null(tocsin_inflight_new(&c, &rng));
}

static void test_send_then_stored(void **state)
{
    (void)state;
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 1);
    tocsin_inflight_t *t = tocsin_inflight_new(&config2, &rng);
    assert_non_null(t);
    assert_null(tocsin_inflight_next_send(t, 0));
    assert_int_equal(tocsin_inflight_next_due(t), INT64_MAX);
    assert_int_equal(tocsin_inflight_oldest_pos(t), UINT64_MAX);

    assert_int_equal(tocsin_inflight_add(t, 2, blob(), 4, 10, 20, 10, 0), 0);
    assert_int_equal(tocsin_inflight_add(t, 1, blob(), 4, 0, 10, 10, 0), 0);
    assert_int_equal(tocsin_inflight_add(t, 3, blob(), 4, 20, 25, 5, 0), 0);
    assert_true(tocsin_inflight_full(t));
    uint8_t *extra = blob();
    assert_int_equal(tocsin_inflight_add(t, 4, extra, 4, 25, 30, 5, 0), TOCSIN_EFULL);
    free(extra); /* refused: still ours */
    assert_int_equal(tocsin_inflight_oldest_pos(t), 0);

    /* Due batches come out in sequence order, all to endpoint 0. */
    for (uint64_t want = 1; want <= 3; want++) {
        tocsin_inflight_entry_t *e = tocsin_inflight_next_send(t, 0);
        assert_non_null(e);
        assert_int_equal(e->sequence, want);
        assert_int_equal(e->endpoint, 0);
        assert_false(tocsin_inflight_sent(t, e, 0));
    }
    assert_null(tocsin_inflight_next_send(t, 999));
    assert_int_equal(tocsin_inflight_next_due(t), 1000);

    tocsin_acked_batch_t acked = {0};
    tocsin_ack_t a = ack_of(1, TOCSIN_ACK_STORED, 0);
    assert_int_equal(tocsin_inflight_ack(t, &a, 0, 10, &acked), TOCSIN_ACKED_STORED);
    assert_int_equal(acked.first_pos, 0);
    assert_int_equal(acked.end_pos, 10);
    assert_int_equal(acked.events, 10);
    assert_int_equal(tocsin_inflight_count(t), 2);
    assert_int_equal(tocsin_inflight_oldest_pos(t), 10);
    /* A late duplicate is ignored. */
    assert_int_equal(tocsin_inflight_ack(t, &a, 0, 10, NULL), TOCSIN_ACKED_UNKNOWN);
    a = ack_of(2, TOCSIN_ACK_REJECTED, 0);
    assert_int_equal(tocsin_inflight_ack(t, &a, 0, 10, &acked), TOCSIN_ACKED_REJECTED);
    assert_int_equal(acked.first_pos, 10);
    assert_int_equal(tocsin_inflight_events(t), 5);
    assert_int_equal(tocsin_inflight_count(t), 1);
    assert_int_equal(tocsin_inflight_oldest_pos(t), 20);

    tocsin_inflight_destroy(&t); /* frees batch 3 too */
    tocsin_inflight_destroy(&t);
    assert_null(t);
}

/* No ack: the batch moves to the next endpoint and waits a back-off in [d/2, d] that doubles
 * with each time-out up to the cap. New batches follow the failover. */
static void test_timeout_backoff_failover(void **state)
{
    (void)state;
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 2);
    tocsin_inflight_t *t = tocsin_inflight_new(&config2, &rng);
    assert_int_equal(tocsin_inflight_add(t, 1, blob(), 4, 0, 5, 5, 0), 0);
    int64_t now = 0;
    tocsin_inflight_entry_t *e = tocsin_inflight_next_send(t, now);
    assert_false(tocsin_inflight_sent(t, e, now));

    static const int64_t d[] = {100, 200, 400, 800, 800, 800};
    uint32_t endpoint = 0;
    for (size_t k = 0; k < sizeof(d) / sizeof(d[0]); k++) {
        int64_t timeout_at = now + config2.ack_timeout_ms;
        assert_null(tocsin_inflight_next_send(t, timeout_at - 1));
        /* The time-out moves it on; it is not due again before d/2. */
        assert_null(tocsin_inflight_next_send(t, timeout_at));
        endpoint = (endpoint + 1) % 2;
        assert_int_equal(tocsin_inflight_current(t), endpoint);
        int64_t due = tocsin_inflight_next_due(t);
        assert_true(due >= timeout_at + d[k] / 2);
        assert_true(due <= timeout_at + d[k]);
        e = tocsin_inflight_next_send(t, due);
        assert_non_null(e);
        assert_int_equal(e->endpoint, endpoint);
        assert_int_equal(e->timeouts, k + 1);
        now = due;
        assert_true(tocsin_inflight_sent(t, e, now)); /* a resend */
    }
    /* A new batch goes where the old one went last. */
    assert_int_equal(tocsin_inflight_add(t, 2, blob(), 4, 5, 6, 1, now), 0);
    e = tocsin_inflight_next_send(t, now);
    assert_int_equal(e->sequence, 2);
    assert_int_equal(e->endpoint, endpoint);
    tocsin_inflight_destroy(&t);
}

/* Refusals move a batch across the endpoints at once; after a full round it waits. */
static void test_refused_rotates_then_waits(void **state)
{
    (void)state;
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 3);
    tocsin_inflight_config_t c = config2;
    c.n_endpoints = 3;
    tocsin_inflight_t *t = tocsin_inflight_new(&c, &rng);
    assert_int_equal(tocsin_inflight_add(t, 1, blob(), 4, 0, 1, 1, 0), 0);
    for (uint32_t i = 0; i < 3; i++) {
        tocsin_inflight_entry_t *e = tocsin_inflight_next_send(t, 0);
        assert_non_null(e);
        assert_int_equal(e->endpoint, i);
        tocsin_inflight_refused(t, e, 0);
    }
    assert_null(tocsin_inflight_next_send(t, 49));
    tocsin_inflight_entry_t *e = tocsin_inflight_next_send(t, 50);
    assert_non_null(e);
    assert_int_equal(e->endpoint, 0);
    /* Endpoint 0 refuses, endpoint 1 takes it: new batches now go to 1. */
    tocsin_inflight_refused(t, e, 50);
    e = tocsin_inflight_next_send(t, 50);
    assert_int_equal(e->endpoint, 1);
    assert_false(tocsin_inflight_sent(t, e, 50)); /* refusals are not sends */
    assert_int_equal(tocsin_inflight_current(t), 1);
    assert_int_equal(tocsin_inflight_add(t, 2, blob(), 4, 1, 2, 1, 50), 0);
    e = tocsin_inflight_next_send(t, 50);
    assert_int_equal(e->sequence, 2);
    assert_int_equal(e->endpoint, 1);
    tocsin_inflight_destroy(&t);
}

static void test_retry_after(void **state)
{
    (void)state;
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 4);
    tocsin_inflight_t *t = tocsin_inflight_new(&config2, &rng);
    assert_int_equal(tocsin_inflight_add(t, 1, blob(), 4, 0, 3, 3, 0), 0);
    tocsin_inflight_entry_t *e = tocsin_inflight_next_send(t, 0);
    tocsin_inflight_sent(t, e, 0);

    tocsin_ack_t a = ack_of(1, TOCSIN_ACK_RETRY_AFTER, 300);
    assert_int_equal(tocsin_inflight_ack(t, &a, 0, 20, NULL), TOCSIN_ACKED_RETRY);
    assert_null(tocsin_inflight_next_send(t, 319));
    e = tocsin_inflight_next_send(t, 320);
    assert_non_null(e);
    assert_int_equal(e->endpoint, 0); /* same collector: it asked us back */
    assert_int_equal(e->timeouts, 0);
    assert_true(tocsin_inflight_sent(t, e, 320));

    /* Clamped: below to 10 ms, above to retry_after_max_ms. */
    a = ack_of(1, TOCSIN_ACK_RETRY_AFTER, 0);
    assert_int_equal(tocsin_inflight_ack(t, &a, 0, 400, NULL), TOCSIN_ACKED_RETRY);
    assert_int_equal(tocsin_inflight_next_due(t), 410);
    a = ack_of(1, TOCSIN_ACK_RETRY_AFTER, 4000000000u);
    assert_int_equal(tocsin_inflight_ack(t, &a, 0, 400, NULL), TOCSIN_ACKED_RETRY);
    assert_int_equal(tocsin_inflight_next_due(t), 400 + 5000);

    /* STORED from endpoint 1 makes it current. */
    a = ack_of(1, TOCSIN_ACK_STORED, 0);
    assert_int_equal(tocsin_inflight_ack(t, &a, 1, 500, NULL), TOCSIN_ACKED_STORED);
    assert_int_equal(tocsin_inflight_current(t), 1);
    assert_int_equal(tocsin_inflight_count(t), 0);
    tocsin_inflight_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_checked),
        cmocka_unit_test(test_send_then_stored),
        cmocka_unit_test(test_timeout_backoff_failover),
        cmocka_unit_test(test_refused_rotates_then_waits),
        cmocka_unit_test(test_retry_after),
    };
    return cmocka_run_group_tests_name("tocsin_inflight", tests, NULL, NULL);
}
