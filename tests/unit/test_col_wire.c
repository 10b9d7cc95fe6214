/*
 * Unit tests for collector/col_wire: the shapes of ROUTER messages, Ack encoding, and the
 * event record written to Kafka.
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

#include "col_validate.h"
#include "col_wire.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    const char *name;
    size_t nframes;
    col_frame_t frames[5];
    int rc;
    bool delimited;
    const char *payload; /* expected payload text when rc == 0 */
    size_t id_len;       /* expected identity length (0: none) */
} envcase_t;

static const char id5[5] = {0, 1, 2, 3, 4};
static char id_long[COL_IDENTITY_MAX + 1];

static void test_envelope(void **state)
{
    (void)state;
    const envcase_t cases[] = {
        {"[id][payload]", 2, {{id5, 5}, {"batch", 5}}, 0, false, "batch", 5},
        {"[id][empty][payload]", 3, {{id5, 5}, {"", 0}, {"batch", 5}}, 0, true, "batch", 5},
        {"[id][empty]: an empty payload", 2, {{id5, 5}, {"", 0}}, 0, false, "", 5},
        {"[id][empty][empty]", 3, {{id5, 5}, {"", 0}, {"", 0}}, 0, true, "", 5},
        {"no frames", 0, {{NULL, 0}}, TC_EINVAL, false, NULL, 0},
        {"[id] alone", 1, {{id5, 5}}, TC_EINVAL, false, NULL, 5},
        {"[id][x][payload]", 3, {{id5, 5}, {"x", 1}, {"batch", 5}}, TC_EINVAL, false, NULL, 5},
        {"[id][empty][a][b]", 4, {{id5, 5}, {"", 0}, {"a", 1}, {"b", 1}}, TC_EINVAL, true, NULL, 5},
        {"[id][a][b][c]", 4, {{id5, 5}, {"a", 1}, {"b", 1}, {"c", 1}}, TC_EINVAL, false, NULL, 5},
        {"empty id", 2, {{"", 0}, {"batch", 5}}, TC_EINVAL, false, NULL, 0},
        {"id too long",
         2,
         {{id_long, COL_IDENTITY_MAX + 1}, {"batch", 5}},
         TC_EINVAL,
         false,
         NULL,
         0},
        {"id at the limit",
         2,
         {{id_long, COL_IDENTITY_MAX}, {"batch", 5}},
         0,
         false,
         "batch",
         COL_IDENTITY_MAX},
    };
    memset(id_long, 'i', sizeof(id_long));
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const envcase_t *c = &cases[i];
        col_peer_t peer;
        col_frame_t payload;
        int rc = col_envelope_parse(c->frames, c->nframes, &peer, &payload);
        if (rc != c->rc) {
            fail_msg("%s: rc %d, expected %d", c->name, rc, c->rc);
        }
        if (peer.identity_len != c->id_len) {
            fail_msg("%s: identity %zu bytes, expected %zu", c->name, peer.identity_len, c->id_len);
        }
        if (c->id_len) {
            assert_memory_equal(peer.identity, c->frames[0].data, c->id_len);
        }
        if (peer.delimited != c->delimited) {
            fail_msg("%s: delimited %d, expected %d", c->name, peer.delimited, c->delimited);
        }
        if (rc == 0) {
            assert_int_equal(payload.len, strlen(c->payload));
            assert_memory_equal(payload.data, c->payload, payload.len);
        } else {
            assert_null(payload.data);
        }
    }
}

static Tocsin__V1__Ack *ack_roundtrip(const col_ack_t *ack)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(col_ack_encode(ack, &buf, &len), 0);
    Tocsin__V1__Ack *back = tocsin__v1__ack__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(back);
    return back;
}

static void test_ack_encode(void **state)
{
    (void)state;
    col_ack_t stored = {
        .sequence = 7, .status = TOCSIN__V1__ACK__STATUS__STATUS_STORED, .accepted = 50};
    Tocsin__V1__Ack *a = ack_roundtrip(&stored);
    assert_int_equal(a->sequence, 7);
    assert_int_equal(a->status, TOCSIN__V1__ACK__STATUS__STATUS_STORED);
    assert_int_equal(a->accepted, 50);
    assert_string_equal(a->reason, "");
    tocsin__v1__ack__free_unpacked(a, NULL);

    col_ack_t retry = {.sequence = UINT64_MAX,
                       .status = TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER,
                       .retry_after_ms = 1000,
                       .reason = "kafka delivery failed: Local: Message timed out"};
    a = ack_roundtrip(&retry);
    assert_int_equal(a->sequence, UINT64_MAX);
    assert_int_equal(a->status, TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER);
    assert_int_equal(a->retry_after_ms, 1000);
    assert_string_equal(a->reason, retry.reason);
    tocsin__v1__ack__free_unpacked(a, NULL);

    /* A long reason is cut at a character boundary: 200 'a' then 100 two-byte 'é'. */
    char longr[512];
    memset(longr, 'a', 200);
    for (int i = 0; i < 100; i++) {
        longr[200 + 2 * i] = (char)0xc3;
        longr[200 + 2 * i + 1] = (char)0xa9;
    }
    longr[400] = '\0';
    col_ack_t rej = {
        .sequence = 1, .status = TOCSIN__V1__ACK__STATUS__STATUS_REJECTED, .reason = longr};
    a = ack_roundtrip(&rej);
    assert_true(strlen(a->reason) <= COL_ACK_REASON_MAX);
    assert_true(strlen(a->reason) >= COL_ACK_REASON_MAX - 1);
    assert_memory_equal(a->reason, longr, strlen(a->reason));
    assert_int_equal(strlen(a->reason) % 2, 0); /* 200 + whole 2-byte characters */
    tocsin__v1__ack__free_unpacked(a, NULL);

    col_ack_t bad = {
        .sequence = 2, .status = TOCSIN__V1__ACK__STATUS__STATUS_REJECTED, .reason = "bad \xff"};
    a = ack_roundtrip(&bad);
    assert_string_equal(a->reason, "(reason not UTF-8)");
    tocsin__v1__ack__free_unpacked(a, NULL);
}

/* Records: events and raw values go in, come out the same, and the buffer checks. */
static void test_records_round_trip(void **state)
{
    (void)state;
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    uint8_t id[16];
    memset(id, 7, sizeof(id));
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.service = "checkout";
    ev.collector_id = "col-1";
    ev.received_us = 1795000000123456LL;
    Tocsin__V1__Request req = TOCSIN__V1__REQUEST__INIT;
    req.route = "/pay";
    req.status = 503;
    ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
    ev.request = &req;

    col_records_t r;
    col_records_init(&r);
    static const char key[] = "checkout\0/pay";
    assert_int_equal(col_records_add_event(&r, COL_TOPIC_EVENTS, key, sizeof(key) - 1, &ev), 0);
    assert_int_equal(col_records_add(&r, COL_TOPIC_LOGS, "checkout", 8, "raw", 3), 0);
    assert_int_equal(col_records_add(&r, COL_TOPIC_EVENTS, NULL, 0, NULL, 0), 0);
    /* Enough records to make the buffer grow a few times. */
    static uint8_t big[10000];
    memset(big, 0x5a, sizeof(big));
    for (int i = 0; i < 20; i++) {
        assert_int_equal(col_records_add(&r, COL_TOPIC_LOGS, "k", 1, big, sizeof(big)), 0);
    }
    assert_int_equal(r.count, 23);
    uint32_t count = 0;
    uint64_t events = 0;
    assert_int_equal(col_records_check(r.data, r.len, &count, &events), 0);
    assert_int_equal(count, 23);
    assert_int_equal(events, 23);

    size_t off = 0;
    col_record_t rec;
    assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
    assert_int_equal(rec.topic, COL_TOPIC_EVENTS);
    assert_int_equal(rec.format, COL_FORMAT_EVENT);
    assert_int_equal(rec.key_len, sizeof(key) - 1);
    assert_memory_equal(rec.key, key, sizeof(key) - 1);
    Tocsin__V1__Event *back = tocsin__v1__event__unpack(NULL, rec.value_len, rec.value);
    assert_non_null(back);
    assert_string_equal(back->collector_id, "col-1");
    assert_int_equal(back->received_us, 1795000000123456LL);
    assert_string_equal(back->request->route, "/pay");
    assert_memory_equal(back->event_id.data, id, 16);
    tocsin__v1__event__free_unpacked(back, NULL);
    assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
    assert_int_equal(rec.topic, COL_TOPIC_LOGS);
    assert_memory_equal(rec.key, "checkout", 8);
    assert_int_equal(rec.value_len, 3);
    assert_memory_equal(rec.value, "raw", 3);
    assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
    assert_int_equal(rec.key_len, 0);
    assert_int_equal(rec.value_len, 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
        assert_int_equal(rec.value_len, sizeof(big));
        assert_memory_equal(rec.value, big, sizeof(big));
    }
    assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 0);

    /* A key above the limit is refused and changes nothing. */
    static uint8_t huge_key[COL_RECORD_KEY_MAX + 1];
    size_t before = r.len;
    assert_int_equal(col_records_add(&r, COL_TOPIC_EVENTS, huge_key, sizeof(huge_key), "v", 1),
                     TC_EINVAL);
    assert_int_equal(r.len, before);
    col_records_fini(&r);
    col_records_fini(&r); /* safe twice */
    assert_null(r.data);
}

/* Corrupt buffers (as a damaged spool entry could be) are refused, never overrun. */
static void test_records_corrupt(void **state)
{
    (void)state;
    col_records_t r;
    col_records_init(&r);
    assert_int_equal(col_records_add(&r, COL_TOPIC_EVENTS, "svc", 3, "value", 5), 0);
    assert_int_equal(col_records_add(&r, COL_TOPIC_LOGS, "svc", 3, "v2", 2), 0);
    size_t len = r.len;
    assert_int_equal(len, 8 + 8 + 3 + 5 + 8 + 3 + 2);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    uint32_t count;
    static const struct {
        const char *name;
        size_t at;     /* byte to change */
        uint8_t value; /* its new value */
        size_t cut;    /* or: keep only this many bytes (0: no cut) */
    } cases[] = {
        {"version", 0, 2, 0},
        {"reserved header byte", 1, 1, 0},
        {"count above the records", 7, 3, 0},
        {"count below the records", 7, 1, 0},
        {"unknown topic", 8, 7, 0},
        {"unknown format", 9, 2, 0},
        {"a pack that is not one", 9, 1, 0},
        {"key length past the end", 10, 0xff, 0},
        {"value length past the end", 12, 0xff, 0},
        {"header only half there", 0, 1, 4},
        {"record cut in its header", 0, 1, 12},
        {"record cut in its value", 0, 1, 8 + 8 + 3 + 2},
        {"second record cut", 0, 1, 8 + 8 + 3 + 5 + 8 + 3 + 1},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        memcpy(copy, r.data, len);
        size_t n = len;
        if (cases[i].cut) {
            n = cases[i].cut;
        } else {
            copy[cases[i].at] = cases[i].value;
        }
        if (col_records_check(copy, n, &count, NULL) != TC_EPARSE) {
            fail_msg("%s: accepted", cases[i].name);
        }
        /* Walking it never reads past n either. */
        size_t off = 0;
        col_record_t rec;
        int rc;
        while ((rc = col_records_next(copy, n, &off, &rec)) == 1) {
            assert_true(rec.value + rec.value_len <= copy + n);
        }
    }
    assert_int_equal(col_records_check(NULL, 0, &count, NULL), TC_EPARSE);
    assert_int_equal(col_records_check(r.data, len, &count, NULL), 0);
    assert_int_equal(count, 2);
    free(copy);
    col_records_fini(&r);
}

/* A packed record: entries framed as protobuf's repeated field 1, which protobuf-c reads as
 * a tocsin.v1.EventPack; col_pack_next walks them; the check counts them as events. */
static void test_records_pack(void **state)
{
    (void)state;
    Tocsin__V1__Event evs[3];
    uint8_t ids[3][16];
    uint8_t enc[3][256];
    size_t lens[3];
    size_t value_len = 0;
    for (int i = 0; i < 3; i++) {
        tocsin__v1__event__init(&evs[i]);
        memset(ids[i], i + 1, 16);
        evs[i].event_id.data = ids[i];
        evs[i].event_id.len = 16;
        evs[i].service = "checkout";
        evs[i].time_us = 1795000000000000LL + i;
        lens[i] = tocsin__v1__event__pack(&evs[i], enc[i]);
        value_len += col_pack_entry_size(lens[i]);
    }
    /* A long event whose length takes two bytes. */
    assert_int_equal(col_pack_entry_size(200), 203);
    assert_int_equal(col_pack_entry_size(127), 129);
    col_records_t r;
    col_records_init(&r);
    uint8_t *p = NULL;
    assert_int_equal(col_records_reserve(&r, COL_TOPIC_EVENTS, COL_FORMAT_PACK, "k", 1, value_len,
                                         &p),
                     0);
    for (int i = 0; i < 3; i++) {
        p += col_pack_entry_head(p, lens[i]);
        memcpy(p, enc[i], lens[i]);
        p += lens[i];
    }
    assert_int_equal(col_records_add(&r, COL_TOPIC_LOGS, "k", 1, enc[0], lens[0]), 0);
    uint32_t count = 0;
    uint64_t events = 0;
    assert_int_equal(col_records_check(r.data, r.len, &count, &events), 0);
    assert_int_equal(count, 2);
    assert_int_equal(events, 4);
    size_t off = 0;
    col_record_t rec;
    assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
    assert_int_equal(rec.format, COL_FORMAT_PACK);
    assert_int_equal(rec.value_len, value_len);
    Tocsin__V1__EventPack *pack = tocsin__v1__event_pack__unpack(NULL, rec.value_len, rec.value);
    assert_non_null(pack);
    assert_int_equal(pack->n_events, 3);
    size_t eoff = 0;
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(pack->events[i]->event_id.data, ids[i], 16);
        assert_int_equal(pack->events[i]->time_us, 1795000000000000LL + i);
        const uint8_t *ev = NULL;
        size_t ev_len = 0;
        assert_int_equal(col_pack_next(rec.value, rec.value_len, &eoff, &ev, &ev_len), 1);
        assert_int_equal(ev_len, lens[i]);
        assert_memory_equal(ev, enc[i], lens[i]);
    }
    tocsin__v1__event_pack__free_unpacked(pack, NULL);
    const uint8_t *ev = NULL;
    size_t ev_len = 0;
    assert_int_equal(col_pack_next(rec.value, rec.value_len, &eoff, &ev, &ev_len), 0);
    assert_int_equal(col_records_next(r.data, r.len, &off, &rec), 1);
    assert_int_equal(rec.format, COL_FORMAT_EVENT);
    assert_int_equal(col_records_reserve(&r, COL_TOPIC_LOGS, COL_FORMAT_COUNT, "k", 1, 1, &p),
                     TC_EINVAL);

    /* Broken packs: refused by the walk and by the check. */
    static const struct {
        const char *name;
        uint8_t bytes[12];
        size_t len;
    } bad[] = {
        {"another field", {0x12, 0x01, 0x00}, 3},
        {"a varint field", {0x08, 0x01}, 2},
        {"length past the end", {0x0a, 0x05, 0x00}, 3},
        {"length cut off", {0x0a, 0x80}, 2},
        {"length of six bytes", {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 7},
        {"a good entry then a tag alone", {0x0a, 0x01, 0x00, 0x0a}, 4},
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        size_t o = 0;
        int rc;
        while ((rc = col_pack_next(bad[i].bytes, bad[i].len, &o, &ev, &ev_len)) == 1) {
            assert_true(ev + ev_len <= bad[i].bytes + bad[i].len);
        }
        if (rc != TC_EPARSE) {
            fail_msg("%s: walked", bad[i].name);
        }
        col_records_t b;
        col_records_init(&b);
        assert_int_equal(
            col_records_reserve(&b, COL_TOPIC_EVENTS, COL_FORMAT_PACK, "k", 1, bad[i].len, &p), 0);
        memcpy(p, bad[i].bytes, bad[i].len);
        if (col_records_check(b.data, b.len, &count, &events) != TC_EPARSE) {
            fail_msg("%s: checked", bad[i].name);
        }
        col_records_fini(&b);
    }
    /* An empty pack says nothing: refused by the check. */
    col_records_t b;
    col_records_init(&b);
    assert_int_equal(col_records_reserve(&b, COL_TOPIC_EVENTS, COL_FORMAT_PACK, "k", 1, 0, &p), 0);
    assert_int_equal(col_records_check(b.data, b.len, &count, &events), TC_EPARSE);
    col_records_fini(&b);
    col_records_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_ack_encode),
        cmocka_unit_test(test_records_round_trip),
        cmocka_unit_test(test_records_corrupt),
        cmocka_unit_test(test_records_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
