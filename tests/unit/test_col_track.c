/*
 * Unit tests for collector/col_track: in-flight batches from open to outcome, as a script of
 * steps per case (produce, seal, abort, divert, reports), with the outcome and Ack expected
 * at the end; arrival order, bounds and the byte/event totals of the set.
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

/* Steps: 'p' produce one record, 's' seal, 'a' abort, 'd' divert, 'o' report ok,
 * 'r' report a retriable failure, 'x' report a permanent failure, 'l' report a record too
 * large, 'P' refuse permanently, 'L' refuse as too large. */
typedef struct {
    const char *name;
    uint32_t records;
    const char *steps;
    col_outcome_t outcome;
    const char *reason; /* expected reason prefix, NULL for none */
    uint32_t failures;
} tcase_t;

static const tcase_t cases[] = {
    {"all delivered", 3, "pppsooo", COL_OUTCOME_STORED, NULL, 0},
    {"reports between produces", 3, "popopso", COL_OUTCOME_STORED, NULL, 0},
    {"one record", 1, "pso", COL_OUTCOME_STORED, NULL, 0},
    {"no records", 0, "s", COL_OUTCOME_STORED, NULL, 0},
    {"one retriable failure", 3, "pppsoro", COL_OUTCOME_SPOOL, "retriable", 1},
    {"all retriable failures", 2, "ppsrr", COL_OUTCOME_SPOOL, "retriable", 2},
    {"a permanent failure", 3, "pppsoxo", COL_OUTCOME_RETRY, "permanent", 1},
    {"permanent after retriable wins", 3, "pppsrxo", COL_OUTCOME_RETRY, "permanent", 2},
    {"refused before any record", 4, "a", COL_OUTCOME_SPOOL, "aborted", 0},
    {"refused after two records", 4, "ppaoo", COL_OUTCOME_SPOOL, "aborted", 0},
    {"refused, then a retriable failure", 4, "ppaor", COL_OUTCOME_SPOOL, "aborted", 1},
    {"diverted to the spool", 5, "d", COL_OUTCOME_SPOOL, "diverted", 0},
    {"a record too large", 3, "pppsolo", COL_OUTCOME_REJECT, "too large", 1},
    {"too large wins over permanent", 3, "pppsxlo", COL_OUTCOME_REJECT, "permanent", 2},
    {"refused for good", 4, "ppPoo", COL_OUTCOME_RETRY, "refused for good", 1},
    {"refused as too large", 4, "pLo", COL_OUTCOME_REJECT, "refused too large", 1},
};

static const col_peer_t peer = {.identity = {1, 2, 3}, .identity_len = 3, .delimited = true};

/* A records buffer of `n` small records. */
static col_records_t records_of(uint32_t n)
{
    col_records_t r;
    col_records_init(&r);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(col_records_add(&r, COL_TOPIC_EVENTS, "svc", 3, "value", 5), 0);
    }
    return r;
}

static void test_scripts(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const tcase_t *c = &cases[i];
        col_inflight_t *set = col_inflight_new(4);
        assert_non_null(set);
        int err = -1;
        col_client_counters_t cc = {.dropped_queue_full = 2, .retried = 1};
        col_records_t rec = records_of(c->records);
        size_t bytes = rec.len;
        col_track_t *t = col_inflight_open(set, &peer, 99, 7, &cc, 1000, &rec, &err);
        assert_non_null(t);
        assert_int_equal(err, 0);
        assert_null(rec.data); /* the tracker owns the buffer now */
        assert_int_equal(col_inflight_count(set), 1);
        assert_int_equal(col_inflight_events(set), 7);
        assert_int_equal(col_inflight_bytes(set), bytes);
        assert_int_equal(col_track_records(t)->count, c->records);
        size_t nsteps = strlen(c->steps);
        for (size_t s = 0; s < nsteps; s++) {
            if (col_track_done(t)) {
                fail_msg("%s: done before step %zu", c->name, s);
            }
            assert_int_equal(col_track_outcome(t), COL_OUTCOME_PENDING);
            assert_true(col_track_producing(t));
            bool done = false;
            switch (c->steps[s]) {
            case 'p':
                col_track_produced(t);
                break;
            case 's':
                col_track_seal(t);
                done = col_track_done(t);
                break;
            case 'a':
                col_track_abort(t, "aborted: queue full");
                done = col_track_done(t);
                break;
            case 'd':
                col_track_divert(t, "diverted: Kafka away");
                done = col_track_done(t);
                break;
            case 'o':
                done = col_track_report(t, COL_DELIVERY_OK, NULL);
                break;
            case 'r':
                done = col_track_report(t, COL_DELIVERY_RETRIABLE, "retriable: timed out");
                break;
            case 'x':
                done = col_track_report(t, COL_DELIVERY_PERMANENT, "permanent: not allowed");
                break;
            case 'l':
                done = col_track_report(t, COL_DELIVERY_TOO_LARGE, "too large: 2 MB");
                break;
            case 'P':
                col_track_refuse(t, COL_DELIVERY_PERMANENT, "refused for good: not allowed");
                done = col_track_done(t);
                break;
            case 'L':
                col_track_refuse(t, COL_DELIVERY_TOO_LARGE, "refused too large");
                done = col_track_done(t);
                break;
            }
            if (done != (s + 1 == nsteps)) {
                fail_msg("%s: step %zu said done=%d", c->name, s, done);
            }
        }
        if (!col_track_done(t)) {
            fail_msg("%s: not done after its steps", c->name);
        }
        assert_false(col_track_producing(t));
        if (col_track_outcome(t) != c->outcome) {
            fail_msg("%s: outcome %d, expected %d", c->name, col_track_outcome(t), c->outcome);
        }
        assert_int_equal(col_track_failures(t), c->failures);
        if (c->reason) {
            assert_true(strncmp(col_track_reason(t), c->reason, strlen(c->reason)) == 0);
        } else {
            assert_string_equal(col_track_reason(t), "");
        }
        col_ack_t ack;
        col_track_ack_stored(t, &ack);
        assert_int_equal(ack.sequence, 99);
        assert_int_equal(ack.status, TOCSIN__V1__ACK__STATUS__STATUS_STORED);
        assert_int_equal(ack.accepted, 7);
        assert_null(ack.reason);
        col_track_ack_retry(t, 1500, NULL, &ack);
        assert_int_equal(ack.status, TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER);
        assert_int_equal(ack.retry_after_ms, 1500);
        assert_int_equal(ack.accepted, 0);
        assert_ptr_equal(ack.reason, col_track_reason(t));
        col_track_ack_retry(t, 5, "spool full", &ack);
        assert_string_equal(ack.reason, "spool full");

        assert_int_equal(col_track_sequence(t), 99);
        assert_int_equal(col_track_events(t), 7);
        assert_int_equal(col_track_received_us(t), 1000);
        assert_int_equal(col_track_counters(t)->dropped_queue_full, 2);
        assert_int_equal(col_track_counters(t)->retried, 1);
        assert_int_equal(col_track_peer(t)->identity_len, 3);
        assert_true(col_track_peer(t)->delimited);
        col_inflight_close(set, &t);
        assert_null(t);
        assert_int_equal(col_inflight_count(set), 0);
        assert_int_equal(col_inflight_events(set), 0);
        assert_int_equal(col_inflight_bytes(set), 0);
        col_inflight_destroy(&set);
        assert_null(set);
    }
}

static void test_bounded_and_ordered(void **state)
{
    (void)state;
    col_inflight_t *set = col_inflight_new(2);
    assert_non_null(set);
    int err;
    col_track_t *a = col_inflight_open(set, &peer, 1, 1, NULL, 0, NULL, &err);
    col_track_t *b = col_inflight_open(set, &peer, 2, 1, NULL, 0, NULL, &err);
    assert_non_null(a);
    assert_non_null(b);
    col_records_t rec = records_of(2);
    assert_null(col_inflight_open(set, &peer, 3, 1, NULL, 0, &rec, &err));
    assert_int_equal(err, TC_EFULL);
    assert_non_null(rec.data); /* refused: the caller keeps its records */
    col_records_fini(&rec);
    assert_int_equal(col_inflight_count(set), 2);
    assert_int_equal(col_track_counters(a)->dropped_queue_full, 0);

    /* Arrival order: first, next; closing one makes room; the oldest stays first. */
    assert_ptr_equal(col_inflight_first(set), a);
    assert_ptr_equal(col_track_next(a), b);
    assert_null(col_track_next(b));
    col_inflight_close(set, &a);
    assert_ptr_equal(col_inflight_first(set), b);
    col_track_t *c = col_inflight_open(set, &peer, 3, 1, NULL, 0, NULL, &err);
    assert_non_null(c);
    assert_ptr_equal(col_inflight_first(set), b);
    assert_ptr_equal(col_track_next(b), c);
    col_inflight_close(set, &c); /* from the tail */
    assert_null(col_track_next(b));
    col_inflight_close(set, &b);
    assert_null(col_inflight_first(set));
    col_inflight_close(set, &c); /* NULL: nothing happens */

    /* Destroy frees what is left with its records (the sanitizer build checks for leaks)
     * and is safe twice. */
    rec = records_of(3);
    assert_non_null(col_inflight_open(set, &peer, 4, 2, NULL, 0, &rec, &err));
    rec = records_of(1);
    assert_non_null(col_inflight_open(set, &peer, 5, 2, NULL, 0, &rec, &err));
    assert_int_equal(col_inflight_events(set), 4);
    col_inflight_destroy(&set);
    assert_null(set);
    col_inflight_destroy(&set);
}

/* The first failure's text is kept, cut to fit; a permanent failure replaces a retriable
 * one as the reason. Tags carry the spool key of replays. */
static void test_reason_and_tag(void **state)
{
    (void)state;
    col_inflight_t *set = col_inflight_new(1);
    int err;
    col_records_t rec = records_of(3);
    col_track_t *t = col_inflight_open(set, &peer, 1, 3, NULL, 0, &rec, &err);
    assert_int_equal(col_track_tag(t), 0);
    col_track_set_tag(t, 77);
    assert_int_equal(col_track_tag(t), 77);
    col_track_produced(t);
    col_track_produced(t);
    col_track_produced(t);
    col_track_seal(t);
    char longr[1000];
    memset(longr, 'r', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = '\0';
    assert_false(col_track_report(t, COL_DELIVERY_RETRIABLE, longr));
    assert_int_equal(strlen(col_track_reason(t)), COL_ACK_REASON_MAX);
    assert_false(col_track_report(t, COL_DELIVERY_PERMANENT, "permanent one"));
    assert_string_equal(col_track_reason(t), "permanent one");
    assert_true(col_track_report(t, COL_DELIVERY_PERMANENT, "second permanent"));
    assert_string_equal(col_track_reason(t), "permanent one");
    assert_int_equal(col_track_outcome(t), COL_OUTCOME_RETRY);
    col_inflight_destroy(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_bounded_and_ordered),
        cmocka_unit_test(test_reason_and_tag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
