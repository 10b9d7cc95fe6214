/* Unit tests for clients/c/src/tocsin_batch.c: events of every kind encoded into a Batch and
 * read back with the generated decoder (tags, frames, fingerprint, log fields, sample rate,
 * a crash report's own identity and id), the loss figures, the byte cap, and Ack decoding. */
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

static char arena[TOCSIN_EVENT_ARENA];
static tocsin_event_t ev;

static const uint8_t id_a[16] = {1, 2, 3};

static void test_round_trip(void **state)
{
    (void)state;
    tocsin_encoder_t *enc = tocsin_encoder_new(&identity, TOCSIN_BATCH_MAX_BYTES, 99);
    assert_non_null(enc);
    assert_null(tocsin_encoder_new(&identity, 1000, 1)); /* below two reserves */

    /* A request with scope. */
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_REQUEST;
    ev.time_us = 1700000000000001;
    ev.status = 503;
    ev.duration_us = 12345;
    ev.sample_rate = 0.5f;
    ev.str[TOCSIN_FIELD_ROUTE] = "/users/:id";
    ev.str[TOCSIN_FIELD_METHOD] = "GET";
    ev.str[TOCSIN_FIELD_TRACE_ID] = "trace-1";
    ev.str[TOCSIN_FIELD_USER_ID] = "user-9";
    tocsin_event_put_tag(&ev, "region", "eu");
    assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);

    /* An error with frames and a fingerprint. */
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_ERROR;
    ev.sub = TOCSIN_LEVEL_FATAL;
    ev.time_us = 1700000000000002;
    ev.str[TOCSIN_FIELD_TYPE] = "KeyError";
    ev.str[TOCSIN_FIELD_MESSAGE] = "no such key";
    ev.frames[0] = (tocsin_frame_t){"lookup", "app", "app.c", 12, true, 0x1000};
    ev.frames[1] = (tocsin_frame_t){NULL, "libc.so.6", NULL, 0, false, 0x2000};
    ev.n_frames = 2;
    ev.fingerprint[0] = "db";
    ev.fingerprint[1] = "timeout";
    ev.n_fingerprint = 2;
    assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);

    /* A metric and a log line. */
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_METRIC;
    ev.sub = TOCSIN_TIMING;
    ev.time_us = 1700000000000003;
    ev.value = 2.5;
    ev.str[TOCSIN_FIELD_NAME] = "db.query";
    ev.str[TOCSIN_FIELD_UNIT] = "ms";
    assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_LOG;
    ev.sub = TOCSIN_LEVEL_WARNING;
    ev.time_us = 1700000000000004;
    ev.str[TOCSIN_FIELD_MESSAGE] = "slow query";
    ev.str[TOCSIN_FIELD_LOGGER] = "db.pool";
    ev.fields[0] = (tocsin_tag_t){"table", "users"};
    ev.n_fields = 1;
    assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);

    /* A crash report: its own identity and id win over the client's. */
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_ERROR;
    ev.sub = TOCSIN_LEVEL_FATAL;
    ev.crash = true;
    ev.time_us = 1700000000000005;
    ev.str[TOCSIN_FIELD_TYPE] = "SIGSEGV";
    ev.str[TOCSIN_FIELD_MECHANISM] = "signal";
    ev.service = "crashed";
    ev.release = "0.9";
    memset(ev.event_id, 0xEE, 16);
    ev.has_event_id = true;
    assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);
    assert_int_equal(tocsin_encoder_events(enc), 5);
    assert_true(tocsin_encoder_has_room(enc));

    tocsin_loss_t loss = {.dropped_queue_full = 7,
                          .dropped_oversize = 2,
                          .sampled_out = 5,
                          .retried = 3,
                          .rejected = 4,
                          .dropped_before_send = 6};
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t seq = 0;
    assert_int_equal(tocsin_encoder_seal(enc, &loss, &buf, &len, &seq), 0);
    assert_int_equal(seq, 99);
    assert_int_equal(tocsin_encoder_events(enc), 0);
    /* The batch's own fields come before its events, so a collector that stops reading
     * early still knows its sequence. */
    assert_int_equal(buf[0], 0x08); /* field 1, varint */
    assert_int_equal(buf[1], 99);

    Tocsin__V1__Batch *b = tocsin__v1__batch__unpack(NULL, len, buf);
    assert_non_null(b);
    assert_int_equal(b->sequence, 99);
    assert_string_equal(b->api_key, "key-123");
    assert_string_equal(b->sdk, "libtocsin/test");
    assert_non_null(b->counters);
    assert_int_equal(b->counters->dropped_queue_full, 7);
    assert_int_equal(b->counters->dropped_oversize, 2);
    assert_int_equal(b->counters->sampled_out, 5);
    assert_int_equal(b->counters->retried, 3);
    assert_int_equal(b->counters->rejected, 4);
    assert_int_equal(b->counters->dropped_before_send, 6);
    assert_int_equal(b->n_events, 5);
    for (size_t i = 0; i < 4; i++) {
        Tocsin__V1__Event *e = b->events[i];
        assert_int_equal(e->event_id.len, 16);
        assert_memory_equal(e->event_id.data, id_a, 16);
        assert_int_equal(e->time_us, 1700000000000001 + (int64_t)i);
        assert_string_equal(e->service, "checkout");
        assert_string_equal(e->environment, "staging");
        assert_string_equal(e->release, "1.2.3");
        assert_string_equal(e->host, "web-1");
    }
    Tocsin__V1__Event *e = b->events[0];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_REQUEST);
    assert_string_equal(e->request->route, "/users/:id");
    assert_string_equal(e->request->method, "GET");
    assert_int_equal(e->request->status, 503);
    assert_int_equal(e->request->duration_us, 12345);
    assert_true(e->sample_rate == 0.5f);
    assert_string_equal(e->trace_id, "trace-1");
    assert_string_equal(e->user_id, "user-9");
    assert_int_equal(e->n_tags, 1);
    assert_string_equal(e->tags[0]->key, "region");
    assert_string_equal(e->tags[0]->value, "eu");

    e = b->events[1];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_ERROR);
    assert_string_equal(e->error->type, "KeyError");
    assert_string_equal(e->error->message, "no such key");
    assert_string_equal(e->error->mechanism, "manual");
    assert_int_equal(e->error->level, TOCSIN__V1__LEVEL__LEVEL_FATAL);
    assert_int_equal(e->error->n_frames, 2);
    assert_string_equal(e->error->frames[0]->function, "lookup");
    assert_string_equal(e->error->frames[0]->module, "app");
    assert_string_equal(e->error->frames[0]->file, "app.c");
    assert_int_equal(e->error->frames[0]->line, 12);
    assert_true(e->error->frames[0]->in_app);
    assert_int_equal(e->error->frames[0]->instruction_addr, 0x1000);
    assert_string_equal(e->error->frames[1]->function, "");
    assert_false(e->error->frames[1]->in_app);
    assert_int_equal(e->error->n_fingerprint, 2);
    assert_string_equal(e->error->fingerprint[1], "timeout");
    assert_true(e->sample_rate == 0.0f);

    e = b->events[2];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_METRIC);
    assert_string_equal(e->metric->name, "db.query");
    assert_string_equal(e->metric->unit, "ms");
    assert_int_equal(e->metric->kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING);
    assert_true(e->metric->value == 2.5);

    e = b->events[3];
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_LOG);
    assert_string_equal(e->log->message, "slow query");
    assert_string_equal(e->log->logger, "db.pool");
    assert_int_equal(e->log->level, TOCSIN__V1__LEVEL__LEVEL_WARNING);
    assert_int_equal(e->log->n_fields, 1);
    assert_string_equal(e->log->fields[0]->key, "table");
    assert_string_equal(e->log->fields[0]->value, "users");

    e = b->events[4];
    assert_string_equal(e->service, "crashed");
    assert_string_equal(e->environment, "staging"); /* not in the report: the client's */
    assert_string_equal(e->release, "0.9");
    assert_int_equal(e->event_id.data[0], 0xEE);
    assert_string_equal(e->error->mechanism, "signal");

    tocsin__v1__batch__free_unpacked(b, NULL);
    free(buf);
    tocsin_encoder_destroy(&enc);
    tocsin_encoder_destroy(&enc);
    assert_null(enc);
}

/* A batch stops taking events while it still has a reserve below the cap, so no batch is
 * ever above TOCSIN_BATCH_MAX_BYTES; a batch with no events does not seal; sequence numbers
 * follow each other. */
static void test_byte_cap(void **state)
{
    (void)state;
    tocsin_encoder_t *enc = tocsin_encoder_new(&identity, TOCSIN_BATCH_MAX_BYTES, 1);
    char *msg = malloc(TOCSIN_MESSAGE_MAX + 1);
    memset(msg, 'm', TOCSIN_MESSAGE_MAX);
    msg[TOCSIN_MESSAGE_MAX] = '\0';
    uint32_t n = 0;
    while (tocsin_encoder_has_room(enc)) {
        tocsin_event_reset(&ev, arena);
        ev.kind = TOCSIN_EVENT_LOG;
        ev.sub = TOCSIN_LEVEL_INFO;
        ev.str[TOCSIN_FIELD_MESSAGE] = msg;
        assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);
        n++;
    }
    assert_true(n > 80 && n < 128);
    uint8_t *buf = NULL;
    size_t len = 0;
    tocsin_loss_t loss = {0};
    uint64_t seq = 0;
    assert_int_equal(tocsin_encoder_seal(enc, &loss, &buf, &len, &seq), 0);
    assert_int_equal(seq, 1);
    assert_true(len <= TOCSIN_BATCH_MAX_BYTES);
    Tocsin__V1__Batch *b = tocsin__v1__batch__unpack(NULL, len, buf);
    assert_non_null(b);
    assert_int_equal(b->n_events, n);
    tocsin__v1__batch__free_unpacked(b, NULL);
    free(buf);
    assert_int_equal(tocsin_encoder_seal(enc, &loss, &buf, &len, &seq), TOCSIN_EINVAL);
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_METRIC;
    ev.str[TOCSIN_FIELD_NAME] = "m";
    assert_int_equal(tocsin_encoder_add(enc, &ev, id_a), 0);
    assert_int_equal(tocsin_encoder_seal(enc, &loss, &buf, &len, &seq), 0);
    assert_int_equal(seq, 2);
    b = tocsin__v1__batch__unpack(NULL, len, buf);
    assert_non_null(b);
    assert_int_equal(b->n_events, 1);
    assert_int_equal(b->sequence, 2);
    tocsin__v1__batch__free_unpacked(b, NULL);
    free(buf);
    free(msg);
    tocsin_encoder_destroy(&enc);
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
        cmocka_unit_test(test_byte_cap),
        cmocka_unit_test(test_ack_decode),
    };
    return cmocka_run_group_tests_name("tocsin_batch", tests, NULL, NULL);
}
