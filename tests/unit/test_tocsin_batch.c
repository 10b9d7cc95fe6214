/* Unit tests for clients/c/src/tocsin_batch.c: Batch encoding round-trip through the
 * generated decoder, the byte cap, event ids, and Ack decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin/v1/transport.pb-c.h"
#include "tocsin_batch.h"

static const tocsin_identity_t identity = {
    .service = "checkout",
    .environment = "staging",
    .release = "1.2.3",
    .host = "web-1",
    .api_key = "key-123",
    .sdk = "libtocsin/test",
};

static void make_request(tocsin_record_t *rec, int64_t t, const char *route, const char *method,
                         uint32_t status, uint64_t duration_us)
{
    tocsin_record_begin(rec, TOCSIN_RECORD_REQUEST, t);
    rec->status = status;
    rec->num.u64 = duration_us;
    tocsin_record_put(rec, route, strlen(route));
    tocsin_record_put(rec, method, strlen(method));
}

static void test_round_trip(void **state)
{
    (void)state;
    tocsin_encoder_t *enc = tocsin_encoder_new(&identity, 8, TOCSIN_BATCH_MAX_BYTES);
    assert_non_null(enc);
    tocsin_record_t recs[3];
    make_request(&recs[0], 1700000000000001, "/users/:id", "GET", 503, 12345);
    tocsin_record_begin(&recs[1], TOCSIN_RECORD_ERROR, 1700000000000002);
    recs[1].sub = TOCSIN_LEVEL_FATAL;
    tocsin_record_put(&recs[1], "KeyError", 8);
    tocsin_record_put(&recs[1], "no such key: 'x'", 16);
    tocsin_record_begin(&recs[2], TOCSIN_RECORD_METRIC, 1700000000000003);
    recs[2].sub = TOCSIN_TIMING;
    recs[2].num.f64 = 2.5;
    tocsin_record_put(&recs[2], "db.query", 8);
    tocsin_record_put(&recs[2], "ms", 2);

    tocsin_loss_t loss = {
        .dropped_queue_full = 7, .dropped_oversize = 2, .retried = 3, .rejected = 4};
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 42);
    uint8_t *buf = NULL;
    size_t len = 0, used = 0;
    assert_int_equal(tocsin_encoder_encode(enc, 99, &loss, recs, 3, &rng, &buf, &len, &used), 0);
    assert_int_equal(used, 3);

    Tocsin__V1__Batch *b = tocsin__v1__batch__unpack(NULL, len, buf);
    assert_non_null(b);
    assert_int_equal(b->sequence, 99);
    assert_string_equal(b->api_key, "key-123");
    assert_string_equal(b->sdk, "libtocsin/test");
    assert_non_null(b->counters);
    assert_int_equal(b->counters->dropped_queue_full, 7);
    assert_int_equal(b->counters->dropped_oversize, 2);
    assert_int_equal(b->counters->retried, 3);
    assert_int_equal(b->counters->rejected, 4);
    assert_int_equal(b->n_events, 3);
    for (size_t i = 0; i < 3; i++) {
        Tocsin__V1__Event *e = b->events[i];
        assert_int_equal(e->event_id.len, 16);
        assert_int_equal(e->time_us, 1700000000000001 + (int64_t)i);
        assert_string_equal(e->service, "checkout");
        assert_string_equal(e->environment, "staging");
        assert_string_equal(e->release, "1.2.3");
        assert_string_equal(e->host, "web-1");
        for (size_t j = 0; j < i; j++) {
            assert_memory_not_equal(e->event_id.data, b->events[j]->event_id.data, 16);
        }
    }
    Tocsin__V1__Event *e = b->events[0];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_REQUEST);
    assert_string_equal(e->request->route, "/users/:id");
    assert_string_equal(e->request->method, "GET");
    assert_int_equal(e->request->status, 503);
    assert_int_equal(e->request->duration_us, 12345);
    e = b->events[1];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_ERROR);
    assert_string_equal(e->error->type, "KeyError");
    assert_string_equal(e->error->message, "no such key: 'x'");
    assert_int_equal(e->error->level, TOCSIN__V1__LEVEL__LEVEL_FATAL);
    assert_string_equal(e->error->mechanism, "manual");
    e = b->events[2];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_METRIC);
    assert_string_equal(e->metric->name, "db.query");
    assert_string_equal(e->metric->unit, "ms");
    assert_int_equal(e->metric->kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING);
    assert_true(e->metric->value == 2.5);

    /* The same seed gives the same ids: they come from the generator passed in. */
    tocsin_rng_t again;
    tocsin_rng_seed(&again, 42);
    uint8_t id[16];
    tocsin_rng_fill(&again, id, sizeof(id));
    assert_memory_equal(b->events[0]->event_id.data, id, 16);

    tocsin__v1__batch__free_unpacked(b, NULL);
    free(buf);
    tocsin_encoder_destroy(&enc);
    tocsin_encoder_destroy(&enc);
    assert_null(enc);
}

/* A batch stops short of max_bytes; the rest go in the next. Every record goes somewhere,
 * exactly once. */
static void test_byte_cap_splits(void **state)
{
    (void)state;
    enum { N = 200 };
    const size_t cap = 8192;
    tocsin_encoder_t *enc = tocsin_encoder_new(&identity, N, cap);
    assert_non_null(enc);
    tocsin_record_t *recs = calloc(N, sizeof(*recs));
    char route[64];
    for (int i = 0; i < N; i++) {
        snprintf(route, sizeof(route), "/items/%d/with/a/longer/route/template", i);
        make_request(&recs[i], 1, route, "POST", 200, (uint64_t)i);
    }
    tocsin_rng_t rng;
    tocsin_rng_seed(&rng, 7);
    tocsin_loss_t loss = {0};
    size_t done = 0;
    int batches = 0;
    while (done < N) {
        uint8_t *buf = NULL;
        size_t len = 0, used = 0;
        assert_int_equal(tocsin_encoder_encode(enc, (uint64_t)batches, &loss, recs + done, N - done,
                                               &rng, &buf, &len, &used),
                         0);
        assert_true(used >= 1);
        assert_true(len <= cap);
        Tocsin__V1__Batch *b = tocsin__v1__batch__unpack(NULL, len, buf);
        assert_non_null(b);
        assert_int_equal(b->n_events, used);
        for (size_t i = 0; i < used; i++) {
            assert_int_equal(b->events[i]->request->duration_us, done + i);
        }
        tocsin__v1__batch__free_unpacked(b, NULL);
        free(buf);
        done += used;
        batches++;
    }
    assert_true(batches > 1);
    assert_int_equal(done, N);

    uint8_t *buf = NULL;
    size_t len = 0, used = 0;
    assert_int_equal(tocsin_encoder_encode(enc, 1, &loss, recs, 0, &rng, &buf, &len, &used),
                     TOCSIN_EINVAL);
    assert_int_equal(tocsin_encoder_encode(enc, 1, &loss, recs, N + 1, &rng, &buf, &len, &used),
                     TOCSIN_EINVAL);
    free(recs);
    tocsin_encoder_destroy(&enc);
    assert_null(tocsin_encoder_new(&identity, 0, cap));
    assert_null(tocsin_encoder_new(&identity, 10, 100));
}

static size_t pack_ack(uint8_t *buf, uint64_t seq, Tocsin__V1__Ack__Status status,
                       uint32_t retry_after_ms, const char *reason, uint32_t accepted)
{
    Tocsin__V1__Ack ack = TOCSIN__V1__ACK__INIT;
    ack.sequence = seq;
    ack.status = status;
    ack.retry_after_ms = retry_after_ms;
    ack.reason = (char *)reason;
    ack.accepted = accepted;
    return protobuf_c_message_pack(&ack.base, buf);
}

static void test_ack_decode(void **state)
{
    (void)state;
    uint8_t buf[1024];
    tocsin_ack_t ack;
    size_t n = pack_ack(buf, 12, TOCSIN__V1__ACK__STATUS__STATUS_STORED, 0, "", 500);
    assert_int_equal(tocsin_ack_decode(buf, n, &ack), 0);
    assert_int_equal(ack.sequence, 12);
    assert_int_equal(ack.status, TOCSIN_ACK_STORED);
    assert_int_equal(ack.accepted, 500);

    n = pack_ack(buf, 13, TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 250, "busy", 0);
    assert_int_equal(tocsin_ack_decode(buf, n, &ack), 0);
    assert_int_equal(ack.status, TOCSIN_ACK_RETRY_AFTER);
    assert_int_equal(ack.retry_after_ms, 250);
    assert_string_equal(ack.reason, "busy");

    char long_reason[600];
    memset(long_reason, 'r', sizeof(long_reason) - 1);
    long_reason[sizeof(long_reason) - 1] = '\0';
    n = pack_ack(buf, 14, TOCSIN__V1__ACK__STATUS__STATUS_REJECTED, 0, long_reason, 0);
    assert_int_equal(tocsin_ack_decode(buf, n, &ack), 0);
    assert_int_equal(ack.status, TOCSIN_ACK_REJECTED);
    assert_int_equal(strlen(ack.reason), sizeof(ack.reason) - 1);

    /* Unspecified or unknown status, garbage, and oversize replies are invalid. */
    n = pack_ack(buf, 15, TOCSIN__V1__ACK__STATUS__STATUS_UNSPECIFIED, 0, "", 0);
    assert_int_equal(tocsin_ack_decode(buf, n, &ack), TOCSIN_EINVAL);
    n = pack_ack(buf, 16, (Tocsin__V1__Ack__Status)9, 0, "", 0);
    assert_int_equal(tocsin_ack_decode(buf, n, &ack), TOCSIN_EINVAL);
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(tocsin_ack_decode(garbage, sizeof(garbage), &ack), TOCSIN_EINVAL);
    uint8_t *big = calloc(1, TOCSIN_ACK_MAX_BYTES + 1);
    assert_int_equal(tocsin_ack_decode(big, TOCSIN_ACK_MAX_BYTES + 1, &ack), TOCSIN_EINVAL);
    free(big);
    assert_int_equal(tocsin_ack_decode(NULL, 0, &ack), TOCSIN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_byte_cap_splits),
        cmocka_unit_test(test_ack_decode),
    };
    return cmocka_run_group_tests_name("tocsin_batch", tests, NULL, NULL);
}
