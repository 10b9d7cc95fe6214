/*
 * Unit tests for col_pack: one record per (topic, key) of a batch, keys in the order of their
 * first event, events in batch order inside a record, records split at the size bound, a
 * large event alone, reset between batches.
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

#include "col_pack.h"
#include "col_wire.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* One test event: a metric named by `seq` so that order can be read back. */
static size_t encode(uint8_t *buf, const char *service, int seq, size_t pad)
{
    static char filler[70000];
    memset(filler, 'x', sizeof(filler) - 1);
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    uint8_t id[16];
    memset(id, seq & 0xff, sizeof(id));
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.service = (char *)service;
    ev.time_us = seq;
    char rel[70001];
    memcpy(rel, filler, pad);
    rel[pad] = '\0';
    ev.release = rel;
    return tocsin__v1__event__pack(&ev, buf);
}

typedef struct {
    col_topic_t topic;
    const char *key;
    size_t key_len;
    int seqs[16];
    size_t n;
} want_t;

/* Every record of `r` against `want`, in order. */
static void check_records(const col_records_t *r, const want_t *want, size_t nwant)
{
    uint32_t count = 0;
    uint64_t events = 0;
    assert_int_equal(col_records_check(r->data, r->len, &count, &events), 0);
    assert_int_equal(count, nwant);
    size_t off = 0;
    col_record_t rec;
    for (size_t i = 0; i < nwant; i++) {
        assert_int_equal(col_records_next(r->data, r->len, &off, &rec), 1);
        assert_int_equal(rec.format, COL_FORMAT_PACK);
        assert_int_equal(rec.topic, want[i].topic);
        assert_int_equal(rec.key_len, want[i].key_len);
        assert_memory_equal(rec.key, want[i].key, want[i].key_len);
        Tocsin__V1__EventPack *pack =
            tocsin__v1__event_pack__unpack(NULL, rec.value_len, rec.value);
        assert_non_null(pack);
        assert_int_equal(pack->n_events, want[i].n);
        for (size_t e = 0; e < want[i].n; e++) {
            assert_int_equal(pack->events[e]->time_us, want[i].seqs[e]);
        }
        tocsin__v1__event_pack__free_unpacked(pack, NULL);
    }
    assert_int_equal(col_records_next(r->data, r->len, &off, &rec), 0);
}

static void test_groups_in_order(void **state)
{
    (void)state;
    col_packer_t *p = col_packer_new(256 * 1024);
    assert_non_null(p);
    static const struct {
        col_topic_t topic;
        const char *key;
        size_t key_len;
    } adds[] = {
        {COL_TOPIC_EVENTS, "a\0/x", 4}, /* 1 */
        {COL_TOPIC_EVENTS, "a\0/y", 4}, /* 2 */
        {COL_TOPIC_EVENTS, "a\0/x", 4}, /* 3 */
        {COL_TOPIC_LOGS, "a\0/x", 4},   /* 4: same key, other topic */
        {COL_TOPIC_EVENTS, "a", 1},     /* 5: a prefix of another key */
        {COL_TOPIC_EVENTS, "a\0/y", 4}, /* 6 */
        {COL_TOPIC_EVENTS, "a\0/x", 4}, /* 7 */
        {COL_TOPIC_EVENTS, "", 0},      /* 8: an empty key */
    };
    uint8_t buf[512];
    for (size_t i = 0; i < N_ELEMS(adds); i++) {
        size_t n = encode(buf, "a", (int)i + 1, 0);
        /* Half as parts (client bytes and a tail), half as decoded events. */
        if (i % 2 == 0) {
            assert_int_equal(
                col_packer_add(p, adds[i].topic, adds[i].key, adds[i].key_len, buf, n - 3, buf + n - 3, 3),
                0);
        } else {
            Tocsin__V1__Event *ev = tocsin__v1__event__unpack(NULL, n, buf);
            assert_non_null(ev);
            assert_int_equal(col_packer_add_event(p, adds[i].topic, adds[i].key, adds[i].key_len, ev),
                             0);
            tocsin__v1__event__free_unpacked(ev, NULL);
        }
    }
    assert_int_equal(col_packer_events(p), 8);
    assert_int_equal(col_packer_groups(p), 5);
    col_records_t r;
    col_records_init(&r);
    assert_int_equal(col_packer_finish(p, &r), 0);
    assert_int_equal(col_packer_events(p), 0);
    const want_t want[] = {
        {COL_TOPIC_EVENTS, "a\0/x", 4, {1, 3, 7}, 3},
        {COL_TOPIC_EVENTS, "a\0/y", 4, {2, 6}, 2},
        {COL_TOPIC_LOGS, "a\0/x", 4, {4}, 1},
        {COL_TOPIC_EVENTS, "a", 1, {5}, 1},
        {COL_TOPIC_EVENTS, "", 0, {8}, 1},
    };
    check_records(&r, want, N_ELEMS(want));

    /* The next batch starts afresh, appended to the same buffer. */
    size_t n = encode(buf, "a", 9, 0);
    assert_int_equal(col_packer_add(p, COL_TOPIC_EVENTS, "a\0/y", 4, buf, n, NULL, 0), 0);
    assert_int_equal(col_packer_groups(p), 1);
    assert_int_equal(col_packer_finish(p, &r), 0);
    assert_int_equal(r.count, 6);

    /* A batch given up half-way leaves nothing behind. */
    assert_int_equal(col_packer_add(p, COL_TOPIC_EVENTS, "b", 1, buf, n, NULL, 0), 0);
    col_packer_reset(p);
    assert_int_equal(col_packer_events(p), 0);
    assert_int_equal(col_packer_groups(p), 0);
    col_records_t empty;
    col_records_init(&empty);
    assert_int_equal(col_packer_finish(p, &empty), 0);
    assert_int_equal(empty.count, 0);
    col_records_fini(&r);
    col_packer_destroy(&p);
    col_packer_destroy(&p); /* safe twice */
    assert_null(p);
}

/* A key with more events than one record holds gets several records, in order; an event
 * larger than the bound gets one of its own. */
static void test_split_by_size(void **state)
{
    (void)state;
    col_packer_t *p = col_packer_new(COL_PACK_MIN_BYTES);
    assert_non_null(p);
    static uint8_t buf[80000];
    size_t n_small = 0;
    for (int i = 1; i <= 10; i++) {
        /* About 300 bytes each: three fit in 1 KiB, the fourth does not. */
        size_t n = encode(buf, "svc", i, i == 5 ? 3000 : 260);
        if (i == 1) {
            n_small = n;
        }
        assert_int_equal(col_packer_add(p, COL_TOPIC_EVENTS, "svc\0/r", 6, buf, n, NULL, 0), 0);
    }
    assert_true(3 * col_pack_entry_size(n_small) <= COL_PACK_MIN_BYTES);
    assert_true(4 * col_pack_entry_size(n_small) > COL_PACK_MIN_BYTES);
    col_records_t r;
    col_records_init(&r);
    assert_int_equal(col_packer_finish(p, &r), 0);
    const want_t want[] = {
        {COL_TOPIC_EVENTS, "svc\0/r", 6, {1, 2, 3}, 3},
        {COL_TOPIC_EVENTS, "svc\0/r", 6, {4}, 1},
        {COL_TOPIC_EVENTS, "svc\0/r", 6, {5}, 1}, /* larger than the bound: alone */
        {COL_TOPIC_EVENTS, "svc\0/r", 6, {6, 7, 8}, 3},
        {COL_TOPIC_EVENTS, "svc\0/r", 6, {9, 10}, 2},
    };
    check_records(&r, want, N_ELEMS(want));
    size_t off = 0;
    col_record_t rec;
    while (col_records_next(r.data, r.len, &off, &rec) == 1) {
        assert_true(rec.value_len <= COL_PACK_MIN_BYTES || rec.value_len > 3000);
    }
    col_records_fini(&r);
    col_packer_destroy(&p);
}

/* Many keys in one batch (the slot table grows), each key's events together. */
static void test_many_keys(void **state)
{
    (void)state;
    col_packer_t *p = col_packer_new(64 * 1024);
    assert_non_null(p);
    uint8_t buf[512];
    char key[32];
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 500; k++) {
            int n = snprintf(key, sizeof(key), "svc%c/route-%d", 0, k);
            size_t len = encode(buf, "svc", round * 1000 + k, 0);
            assert_int_equal(col_packer_add(p, COL_TOPIC_EVENTS, key, (size_t)n, buf, len, NULL, 0),
                             0);
        }
    }
    assert_int_equal(col_packer_groups(p), 500);
    col_records_t r;
    col_records_init(&r);
    assert_int_equal(col_packer_finish(p, &r), 0);
    assert_int_equal(r.count, 500);
    size_t off = 0;
    col_record_t rec;
    for (int k = 0; k < 500; k++) {
        assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
        int n = snprintf(key, sizeof(key), "svc%c/route-%d", 0, k);
        assert_int_equal(rec.key_len, (size_t)n);
        assert_memory_equal(rec.key, key, (size_t)n);
        Tocsin__V1__EventPack *pack =
            tocsin__v1__event_pack__unpack(NULL, rec.value_len, rec.value);
        assert_non_null(pack);
        assert_int_equal(pack->n_events, 3);
        for (int round = 0; round < 3; round++) {
            assert_int_equal(pack->events[round]->time_us, round * 1000 + k);
        }
        tocsin__v1__event_pack__free_unpacked(pack, NULL);
    }
    /* Reused after a large batch: the table was cleared. */
    size_t len = encode(buf, "svc", 1, 0);
    assert_int_equal(col_packer_add(p, COL_TOPIC_EVENTS, "svc", 3, buf, len, NULL, 0), 0);
    assert_int_equal(col_packer_groups(p), 1);
    col_packer_reset(p);
    col_records_fini(&r);
    col_packer_destroy(&p);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(col_packer_new(COL_PACK_MIN_BYTES - 1));
    assert_null(col_packer_new((size_t)COL_PACK_MAX_BYTES + 1));
    col_packer_t *p = col_packer_new(COL_PACK_MIN_BYTES);
    assert_non_null(p);
    static uint8_t huge_key[COL_RECORD_KEY_MAX + 1];
    assert_int_equal(col_packer_add(p, COL_TOPIC_EVENTS, huge_key, sizeof(huge_key), "v", 1, NULL,
                                    0),
                     TC_EINVAL);
    assert_int_equal(col_packer_events(p), 0);
    col_packer_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups_in_order),
        cmocka_unit_test(test_split_by_size),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
