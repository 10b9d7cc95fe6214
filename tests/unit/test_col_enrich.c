/*
 * Unit tests for collector/col_enrich: the event time clamp (table), topics and keys per
 * body, grouping ids computed only where missing, and the raw path's tail read back by
 * protobuf-c over a client's own collector fields.
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

#include "col_enrich.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define NOW 1795000000000000LL
#define MIN (60LL * 1000000)

static const col_enrich_config_t cfg = {
    .collector_id = "col-7", .max_future_us = 5 * MIN, .max_past_us = 60 * MIN};

static col_arena_t *arena;

static int setup(void **state)
{
    (void)state;
    arena = col_arena_new(1 << 20);
    return arena ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    col_arena_destroy(&arena);
    return 0;
}

typedef struct {
    const char *name;
    int64_t time_us;
    int64_t expect;
    int which; /* 0 kept, 1 missing, 2 future, 3 past */
} tcase_t;

static const tcase_t times[] = {
    {"now", NOW, NOW, 0},
    {"missing", 0, NOW, 1},
    {"4 min ahead", NOW + 4 * MIN, NOW + 4 * MIN, 0},
    {"6 min ahead", NOW + 6 * MIN, NOW, 2},
    {"59 min behind", NOW - 59 * MIN, NOW - 59 * MIN, 0},
    {"61 min behind", NOW - 61 * MIN, NOW, 3},
    {"negative", -5, NOW, 3},
    {"far future", INT64_MAX, NOW, 2},
};

static void test_time_clamp(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ELEMS(times); i++) {
        Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
        Tocsin__V1__Metric m = TOCSIN__V1__METRIC__INIT;
        ev.service = "svc";
        m.name = "m";
        ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        ev.metric = &m;
        ev.time_us = times[i].time_us;
        col_enrich_stats_t st = {0};
        col_topic_t topic;
        uint8_t key[64];
        size_t klen;
        assert_int_equal(
            col_enrich_event(&cfg, &ev, NOW, arena, &st, &topic, key, sizeof(key), &klen), 0);
        if (ev.time_us != times[i].expect) {
            fail_msg("%s: time %lld, expected %lld", times[i].name, (long long)ev.time_us,
                     (long long)times[i].expect);
        }
        uint64_t got[4] = {0, st.time_missing, st.time_future, st.time_past};
        for (int w = 1; w < 4; w++) {
            assert_int_equal(got[w], times[i].which == w ? 1 : 0);
        }
        assert_int_equal(ev.received_us, NOW);
        assert_string_equal(ev.collector_id, "col-7");
    }
}

static void test_topics_and_keys(void **state)
{
    (void)state;
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    ev.service = "checkout";
    ev.time_us = NOW;
    col_enrich_stats_t st = {0};
    col_topic_t topic;
    uint8_t key[128];
    size_t klen;

    Tocsin__V1__Request req = TOCSIN__V1__REQUEST__INIT;
    req.route = "/pay";
    ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
    ev.request = &req;
    assert_int_equal(col_enrich_event(&cfg, &ev, NOW, arena, &st, &topic, key, sizeof(key), &klen),
                     0);
    assert_int_equal(topic, COL_TOPIC_EVENTS);
    assert_int_equal(klen, 13);
    assert_memory_equal(key, "checkout\0/pay", 13);

    Tocsin__V1__LogRecord log = TOCSIN__V1__LOG_RECORD__INIT;
    ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
    ev.log = &log;
    assert_int_equal(col_enrich_event(&cfg, &ev, NOW, arena, &st, &topic, key, sizeof(key), &klen),
                     0);
    assert_int_equal(topic, COL_TOPIC_LOGS);
    assert_int_equal(klen, 8);

    /* An error without an id gets tc_grouping's; one with an id keeps it. */
    Tocsin__V1__ErrorEvent err = TOCSIN__V1__ERROR_EVENT__INIT;
    err.type = "KeyError";
    err.message = "missing 42";
    ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    ev.error = &err;
    assert_int_equal(col_enrich_event(&cfg, &ev, NOW, arena, &st, &topic, key, sizeof(key), &klen),
                     0);
    char expect[TC_GROUPING_HASH_LEN + 1];
    Tocsin__V1__ErrorEvent plain = TOCSIN__V1__ERROR_EVENT__INIT;
    plain.type = "KeyError";
    plain.message = "missing 7";
    tc_grouping_hash(&plain, expect);
    assert_string_equal(err.grouping_hash, expect);
    assert_int_equal(st.grouped[TC_GROUPING_MESSAGE], 1);
    assert_int_equal(klen, 9 + TC_GROUPING_HASH_LEN);
    assert_memory_equal(key + 9, expect, TC_GROUPING_HASH_LEN);
    err.grouping_hash = "mine";
    assert_int_equal(col_enrich_event(&cfg, &ev, NOW, arena, &st, &topic, key, sizeof(key), &klen),
                     0);
    assert_string_equal(err.grouping_hash, "mine");
    assert_int_equal(st.grouped[TC_GROUPING_MESSAGE], 1);

    /* A key buffer too small is an error, not an overrun. */
    assert_int_equal(col_enrich_event(&cfg, &ev, NOW, arena, &st, &topic, key, 5, &klen),
                     TC_ETOOBIG);
    col_arena_reset(arena);
}

/* The raw path: the client's bytes plus the tail decode as the enriched event, the tail
 * winning over collector fields the client set itself. */
static void test_raw_tail(void **state)
{
    (void)state;
    uint8_t id[16] = {9};
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.service = "search";
    ev.collector_id = "spoofed";
    ev.received_us = 1;
    Tocsin__V1__Metric m = TOCSIN__V1__METRIC__INIT;
    m.name = "q.depth";
    m.value = 3;
    ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    ev.metric = &m;
    for (int clamp = 0; clamp < 2; clamp++) {
        ev.time_us = clamp ? NOW + 10 * MIN : NOW - 1000;
        Tocsin__V1__Event *evp = &ev;
        Tocsin__V1__Batch batch = TOCSIN__V1__BATCH__INIT;
        batch.n_events = 1;
        batch.events = &evp;
        uint8_t buf[512];
        size_t n = tocsin__v1__batch__pack(&batch, buf);
        col_limits_t lim = col_limits_default();
        col_batch_t *b = NULL;
        col_reject_t rej;
        assert_int_equal(col_batch_decode(buf, n, &lim, arena, &b, &rej), 0);
        assert_true(b->events[0].simple);
        col_enrich_stats_t st = {0};
        col_topic_t topic;
        uint8_t key[128], tail[COL_TAIL_MAX];
        size_t klen, tlen;
        assert_int_equal(col_enrich_raw(&cfg, &b->events[0], NOW, &st, &topic, key, sizeof(key),
                                        &klen, tail, sizeof(tail), &tlen),
                         0);
        assert_int_equal(topic, COL_TOPIC_EVENTS);
        assert_memory_equal(key, "search\0q.depth", 14);
        uint8_t whole[600];
        memcpy(whole, b->events[0].raw, b->events[0].raw_len);
        memcpy(whole + b->events[0].raw_len, tail, tlen);
        Tocsin__V1__Event *back =
            tocsin__v1__event__unpack(NULL, b->events[0].raw_len + tlen, whole);
        assert_non_null(back);
        assert_string_equal(back->collector_id, "col-7");
        assert_int_equal(back->received_us, NOW);
        assert_int_equal(back->time_us, clamp ? NOW : NOW - 1000);
        assert_int_equal(st.time_future, clamp ? 1 : 0);
        assert_string_equal(back->metric->name, "q.depth");
        tocsin__v1__event__free_unpacked(back, NULL);
        col_arena_reset(arena);
    }
    /* An error without its id cannot take the raw path. */
    col_event_t e = {.simple = true, .body = TOCSIN__V1__EVENT__BODY_ERROR};
    col_enrich_stats_t st = {0};
    col_topic_t topic;
    uint8_t key[16], tail[COL_TAIL_MAX];
    size_t klen, tlen;
    assert_int_equal(col_enrich_raw(&cfg, &e, NOW, &st, &topic, key, sizeof(key), &klen, tail,
                                    sizeof(tail), &tlen),
                     TC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_clamp),
        cmocka_unit_test(test_topics_and_keys),
        cmocka_unit_test(test_raw_tail),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
