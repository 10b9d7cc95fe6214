/*
 * Unit tests for collector/col_track: in-flight batches from open to Ack, as a script of
 * steps per case (enqueue, seal, abort, report) with the Ack expected at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_track.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Steps: 'e' enqueue one, 's' seal, 'a' abort, 'o' report ok, 'f' report failure. The
 * tracker must be done exactly after the last step. */
typedef struct {
    const char *name;
    uint32_t events;
    const char *steps;
    Tocsin__V1__Ack__Status status;
    uint32_t accepted;
    const char *reason; /* expected reason prefix, or NULL for none */
    uint32_t failures;
} tcase_t;

static const tcase_t cases[] = {
    {"all delivered", 3, "eeesooo", TOCSIN__V1__ACK__STATUS__STATUS_STORED, 3, NULL, 0},
    {"reports interleaved with enqueues", 3, "eoeoeso", TOCSIN__V1__ACK__STATUS__STATUS_STORED, 3,
     NULL, 0},
    {"one event", 1, "eso", TOCSIN__V1__ACK__STATUS__STATUS_STORED, 1, NULL, 0},
    {"one delivery failed", 3, "eeesofo", TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 0, "failure",
     1},
    {"all deliveries failed", 2, "eesff", TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 0, "failure",
     2},
    {"refused before any event", 4, "a", TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 0, "aborted",
     0},
    {"refused after two events", 4, "eeaoo", TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 0,
     "aborted", 0},
    {"refused, then a failure", 4, "eeaof", TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 0,
     "aborted", 1},
};

static const col_peer_t peer = {.identity = {1, 2, 3}, .identity_len = 3, .delimited = true};

static void test_scripts(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const tcase_t *c = &cases[i];
        col_inflight_t *set = col_inflight_new(4);
        assert_non_null(set);
        int err = -1;
        col_client_counters_t cc = {.dropped_queue_full = 2, .retried = 1};
        col_track_t *t = col_inflight_open(set, &peer, 99, c->events, &cc, 1000, &err);
        assert_non_null(t);
        assert_int_equal(err, 0);
        assert_int_equal(col_inflight_count(set), 1);
        size_t nsteps = strlen(c->steps);
        for (size_t s = 0; s < nsteps; s++) {
            if (col_track_done(t)) {
                fail_msg("%s: done before step %zu", c->name, s);
            }
            bool done = false;
            switch (c->steps[s]) {
            case 'e':
                col_track_enqueued(t);
                break;
            case 's':
                col_track_seal(t);
                break;
            case 'a':
                col_track_abort(t, "aborted: queue full");
                break;
            case 'o':
                done = col_track_report(t, true, NULL);
                break;
            case 'f':
                done = col_track_report(t, false, "failure: timed out");
                break;
            }
            if (done != (s + 1 == nsteps && (c->steps[s] == 'o' || c->steps[s] == 'f'))) {
                fail_msg("%s: report at step %zu said done=%d", c->name, s, done);
            }
        }
        if (!col_track_done(t)) {
            fail_msg("%s: not done after its steps", c->name);
        }
        col_ack_t ack;
        col_track_ack(t, 1500, &ack);
        assert_int_equal(ack.sequence, 99);
        if (ack.status != c->status) {
            fail_msg("%s: status %d, expected %d", c->name, ack.status, c->status);
        }
        assert_int_equal(ack.accepted, c->accepted);
        assert_int_equal(col_track_failures(t), c->failures);
        if (c->reason) {
            assert_int_equal(ack.retry_after_ms, 1500);
            assert_non_null(ack.reason);
            assert_true(strncmp(ack.reason, c->reason, strlen(c->reason)) == 0);
        } else {
            assert_int_equal(ack.retry_after_ms, 0);
            assert_null(ack.reason);
        }
        assert_int_equal(col_track_sequence(t), 99);
        assert_int_equal(col_track_events(t), c->events);
        assert_int_equal(col_track_received_us(t), 1000);
        assert_int_equal(col_track_counters(t)->dropped_queue_full, 2);
        assert_int_equal(col_track_counters(t)->retried, 1);
        assert_int_equal(col_track_peer(t)->identity_len, 3);
        assert_true(col_track_peer(t)->delimited);
        col_inflight_close(set, &t);
        assert_null(t);
        assert_int_equal(col_inflight_count(set), 0);
        col_inflight_destroy(&set);
        assert_null(set);
    }
}

static void test_bounded(void **state)
{
    (void)state;
    col_inflight_t *set = col_inflight_new(2);
    assert_non_null(set);
    int err;
    col_track_t *a = col_inflight_open(set, &peer, 1, 1, NULL, 0, &err);
    col_track_t *b = col_inflight_open(set, &peer, 2, 1, NULL, 0, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(col_inflight_open(set, &peer, 3, 1, NULL, 0, &err));
    assert_int_equal(err, TC_EFULL);
    assert_int_equal(col_inflight_count(set), 2);
    assert_int_equal(col_track_counters(a)->dropped_queue_full, 0);

    /* Closing one makes room; the oldest stays first. */
    assert_ptr_equal(col_inflight_first(set), a);
    col_inflight_close(set, &a);
    assert_ptr_equal(col_inflight_first(set), b);
    col_track_t *c = col_inflight_open(set, &peer, 3, 1, NULL, 0, &err);
    assert_non_null(c);
    assert_ptr_equal(col_inflight_first(set), b);
    col_inflight_close(set, &b);
    assert_ptr_equal(col_inflight_first(set), c);
    col_inflight_close(set, &c);
    assert_null(col_inflight_first(set));
    col_inflight_close(set, &c); /* NULL: nothing happens */

    /* Destroy frees what is left (the sanitizer build checks for leaks) and is safe twice. */
    assert_non_null(col_inflight_open(set, &peer, 4, 2, NULL, 0, &err));
    assert_non_null(col_inflight_open(set, &peer, 5, 2, NULL, 0, &err));
    col_inflight_destroy(&set);
    assert_null(set);
    col_inflight_destroy(&set);
}

/* The first failure's text is the one the Ack carries, cut to fit. */
static void test_reason_kept(void **state)
{
    (void)state;
    col_inflight_t *set = col_inflight_new(1);
    int err;
    col_track_t *t = col_inflight_open(set, &peer, 1, 2, NULL, 0, &err);
    col_track_enqueued(t);
    col_track_enqueued(t);
    col_track_seal(t);
    char longr[1000];
    memset(longr, 'r', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = '\0';
    assert_false(col_track_report(t, false, longr));
    assert_true(col_track_report(t, false, "second"));
    col_ack_t ack;
    col_track_ack(t, 10, &ack);
    assert_int_equal(ack.status, TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER);
    assert_int_equal(strlen(ack.reason), COL_ACK_REASON_MAX);
    assert_int_equal(ack.reason[0], 'r');
    col_inflight_destroy(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_reason_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
