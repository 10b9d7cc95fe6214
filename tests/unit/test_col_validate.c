/*
 * Unit tests for collector/col_validate: one case per rejection reason, valid batches of
 * every body type, limits at their edges, and the sequence carried into refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_validate.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define POOL 300

/* Every decode goes into one arena, as in the collector; reset after each batch. */
static col_arena_t *the_arena;

static col_arena_t *arena(void)
{
    if (!the_arena) {
        the_arena = col_arena_new(64 * 1024 * 1024);
        assert_non_null(the_arena);
    }
    return the_arena;
}

/* A batch of four valid events, one per body type, built from stack structs; each case
 * changes it before it is encoded. */
typedef struct {
    Tocsin__V1__Batch batch;
    Tocsin__V1__ClientCounters counters;
    Tocsin__V1__Event ev[4];
    Tocsin__V1__Event *evp[POOL];
    uint8_t id[4][16];
    Tocsin__V1__Event__TagsEntry tag[POOL];
    Tocsin__V1__Event__TagsEntry *tagp[POOL];
    Tocsin__V1__ErrorEvent err;
    Tocsin__V1__Frame frame[POOL];
    Tocsin__V1__Frame *framep[POOL];
    char *fingerprint[POOL];
    Tocsin__V1__Request req;
    Tocsin__V1__Metric met;
    Tocsin__V1__LogRecord log;
    Tocsin__V1__LogRecord__FieldsEntry field[POOL];
    Tocsin__V1__LogRecord__FieldsEntry *fieldp[POOL];
    col_limits_t limits;
} fixture_t;

static char long_text[64 * 1024];

/* A string of `n` 'x' bytes (n < sizeof(long_text)). Each call returns the same buffer. */
static char *text_of(size_t n)
{
    memset(long_text, 'x', n);
    long_text[n] = '\0';
    return long_text;
}

static void fixture_init(fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    f->limits = col_limits_default();
    tocsin__v1__batch__init(&f->batch);
    f->batch.sequence = 42;
    f->batch.sdk = "libtocsin/0.1.0";
    tocsin__v1__client_counters__init(&f->counters);
    f->counters.dropped_queue_full = 3;
    f->batch.counters = &f->counters;
    for (int i = 0; i < 4; i++) {
        tocsin__v1__event__init(&f->ev[i]);
        memset(f->id[i], 0xa0 + i, 16);
        f->ev[i].event_id.data = f->id[i];
        f->ev[i].event_id.len = 16;
        f->ev[i].time_us = 1795000000000000LL;
        f->ev[i].service = "checkout";
        f->ev[i].environment = "production";
        f->ev[i].host = "web-1";
        f->evp[i] = &f->ev[i];
    }
    for (int i = 0; i < POOL; i++) {
        tocsin__v1__event__tags_entry__init(&f->tag[i]);
        f->tag[i].key = "region";
        f->tag[i].value = "eu-west-1";
        f->tagp[i] = &f->tag[i];
        tocsin__v1__frame__init(&f->frame[i]);
        f->frame[i].function = "charge";
        f->frame[i].module = "billing";
        f->frame[i].file = "billing.c";
        f->frame[i].line = 10;
        f->frame[i].in_app = 1;
        f->framep[i] = &f->frame[i];
        f->fingerprint[i] = "part";
        tocsin__v1__log_record__fields_entry__init(&f->field[i]);
        f->field[i].key = "order";
        f->field[i].value = "1234";
        f->fieldp[i] = &f->field[i];
    }
    f->ev[0].n_tags = 2;
    f->ev[0].tags = f->tagp;

    tocsin__v1__error_event__init(&f->err);
    f->err.type = "KeyError";
    f->err.message = "no such key";
    f->err.n_frames = 2;
    f->err.frames = f->framep;
    f->ev[0].body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    f->ev[0].error = &f->err;

    tocsin__v1__request__init(&f->req);
    f->req.route = "/users/:id";
    f->req.method = "GET";
    f->req.status = 200;
    f->req.duration_us = 1500;
    f->ev[1].body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
    f->ev[1].request = &f->req;

    tocsin__v1__metric__init(&f->met);
    f->met.name = "queue.depth";
    f->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING;
    f->met.value = 12.5;
    f->met.unit = "ms";
    f->ev[2].body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    f->ev[2].metric = &f->met;

    tocsin__v1__log_record__init(&f->log);
    f->log.level = TOCSIN__V1__LEVEL__LEVEL_WARNING;
    f->log.message = "slow query";
    f->log.logger = "db";
    f->log.n_fields = 1;
    f->log.fields = f->fieldp;
    f->ev[3].body_case = TOCSIN__V1__EVENT__BODY_LOG;
    f->ev[3].log = &f->log;

    f->batch.n_events = 4;
    f->batch.events = f->evp;
}

/* Encodes the fixture's batch into a new buffer. */
static uint8_t *fixture_pack(const fixture_t *f, size_t *len)
{
    size_t n = tocsin__v1__batch__get_packed_size(&f->batch);
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    *len = tocsin__v1__batch__pack(&f->batch, buf);
    return buf;
}

/* ---- the cases ---- */

static void m_none(fixture_t *f)
{
    (void)f;
}
static void m_only_error(fixture_t *f)
{
    f->batch.n_events = 1;
}
static void m_only_request(fixture_t *f)
{
    f->evp[0] = &f->ev[1];
    f->batch.n_events = 1;
}
static void m_only_metric(fixture_t *f)
{
    f->evp[0] = &f->ev[2];
    f->batch.n_events = 1;
}
static void m_only_log(fixture_t *f)
{
    f->evp[0] = &f->ev[3];
    f->batch.n_events = 1;
}
static void m_too_big(fixture_t *f)
{
    f->limits.max_frame_bytes = 100;
}
static void m_at_frame_limit(fixture_t *f)
{
    size_t len;
    free(fixture_pack(f, &len));
    f->limits.max_frame_bytes = len;
}
static void m_empty(fixture_t *f)
{
    f->batch.n_events = 0;
}
static void m_too_many_events(fixture_t *f)
{
    f->limits.max_events = 3;
}
static void m_max_events(fixture_t *f)
{
    f->limits.max_events = 4;
}
static void m_many_events(fixture_t *f)
{
    /* 2000 events, the default limit, all the same request event. */
    static Tocsin__V1__Event *many[2000];
    for (int i = 0; i < 2000; i++) {
        many[i] = &f->ev[1];
    }
    f->batch.events = many;
    f->batch.n_events = 2000;
}
static void m_too_many_events_default(fixture_t *f)
{
    static Tocsin__V1__Event *many[2001];
    for (int i = 0; i < 2001; i++) {
        many[i] = &f->ev[1];
    }
    f->batch.events = many;
    f->batch.n_events = 2001;
}
static void m_missing_service(fixture_t *f)
{
    f->ev[2].service = "";
}
static void m_bad_event_id_short(fixture_t *f)
{
    f->ev[1].event_id.len = 15;
}
static void m_bad_event_id_none(fixture_t *f)
{
    f->ev[3].event_id.len = 0;
    f->ev[3].event_id.data = NULL;
}
static void m_bad_event_id_long(fixture_t *f)
{
    static uint8_t id17[17];
    f->ev[0].event_id.data = id17;
    f->ev[0].event_id.len = 17;
}
static void m_no_body(fixture_t *f)
{
    f->ev[1].body_case = TOCSIN__V1__EVENT__BODY__NOT_SET;
    f->ev[1].request = NULL;
}
static void m_service_too_long(fixture_t *f)
{
    f->ev[0].service = text_of(257);
}
static void m_service_at_limit(fixture_t *f)
{
    f->ev[0].service = text_of(256);
}
static void m_route_too_long(fixture_t *f)
{
    f->req.route = text_of(300);
}
static void m_message_too_long(fixture_t *f)
{
    f->err.message = text_of(16 * 1024 + 1);
}
static void m_message_at_limit(fixture_t *f)
{
    f->log.message = text_of(16 * 1024);
}
static void m_tag_value_too_long(fixture_t *f)
{
    f->tag[1].value = text_of(257);
}
static void m_frame_file_too_long(fixture_t *f)
{
    f->frame[1].file = text_of(1000);
}
static void m_metric_name_too_long(fixture_t *f)
{
    f->met.name = text_of(257);
}
static void m_log_field_too_long(fixture_t *f)
{
    f->field[0].key = text_of(257);
}
static void m_api_key_too_long(fixture_t *f)
{
    f->batch.api_key = text_of(257);
}
static void m_invalid_utf8_service(fixture_t *f)
{
    f->ev[1].service = "caf\xc3";
}
static void m_invalid_utf8_message(fixture_t *f)
{
    f->log.message = "bad \xff byte";
}
static void m_invalid_utf8_overlong(fixture_t *f)
{
    f->tag[0].key = "\xc0\xaf";
}
static void m_invalid_utf8_surrogate(fixture_t *f)
{
    f->frame[0].function = "\xed\xa0\x80";
}
static void m_valid_utf8(fixture_t *f)
{
    f->err.message = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xa5";
}
static void m_too_many_tags(fixture_t *f)
{
    f->ev[3].tags = f->tagp;
    f->ev[3].n_tags = 65;
}
static void m_max_tags(fixture_t *f)
{
    f->ev[3].tags = f->tagp;
    f->ev[3].n_tags = 64;
}
static void m_too_many_frames(fixture_t *f)
{
    f->err.n_frames = 129;
}
static void m_max_frames(fixture_t *f)
{
    f->err.n_frames = 128;
}
static void m_too_many_fields(fixture_t *f)
{
    f->log.n_fields = 65;
}
static void m_too_many_fingerprint(fixture_t *f)
{
    f->err.fingerprint = f->fingerprint;
    f->err.n_fingerprint = 17;
}
static void m_metric_nan(fixture_t *f)
{
    f->met.value = NAN;
}
static void m_metric_inf(fixture_t *f)
{
    f->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
    f->met.value = -INFINITY;
}
static void m_timing_negative(fixture_t *f)
{
    f->met.value = -1;
}
static void m_sample_rate_quarter(fixture_t *f)
{
    f->ev[1].sample_rate = 0.25f;
}
static void m_sample_rate_above_one(fixture_t *f)
{
    f->ev[1].sample_rate = 2.0f;
}
static void m_sample_rate_nan(fixture_t *f)
{
    f->ev[3].sample_rate = NAN;
}
static void m_gauge_negative(fixture_t *f)
{
    f->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
    f->met.value = -1;
}
static void m_tags_limit_zero(fixture_t *f)
{
    f->limits.max_tags = 0;
}

typedef struct {
    const char *name;
    void (*mutate)(fixture_t *f);
    col_reason_t reason;
    int event_index; /* expected on refusal; ignored when reason is NONE */
} vcase_t;

static const vcase_t cases[] = {
    {"valid: one of each body", m_none, COL_REASON_NONE, 0},
    {"valid: error only", m_only_error, COL_REASON_NONE, 0},
    {"valid: request only", m_only_request, COL_REASON_NONE, 0},
    {"valid: metric only", m_only_metric, COL_REASON_NONE, 0},
    {"valid: log only", m_only_log, COL_REASON_NONE, 0},
    {"valid: exactly max_frame_bytes", m_at_frame_limit, COL_REASON_NONE, 0},
    {"valid: exactly max_events", m_max_events, COL_REASON_NONE, 0},
    {"valid: 2000 events", m_many_events, COL_REASON_NONE, 0},
    {"valid: service at 256 bytes", m_service_at_limit, COL_REASON_NONE, 0},
    {"valid: message at 16 KiB", m_message_at_limit, COL_REASON_NONE, 0},
    {"valid: multibyte UTF-8", m_valid_utf8, COL_REASON_NONE, 0},
    {"valid: 64 tags", m_max_tags, COL_REASON_NONE, 0},
    {"valid: 128 frames", m_max_frames, COL_REASON_NONE, 0},
    {"valid: negative gauge", m_gauge_negative, COL_REASON_NONE, 0},
    {"too_big", m_too_big, COL_REASON_TOO_BIG, -1},
    {"empty", m_empty, COL_REASON_EMPTY, -1},
    {"too_many_events", m_too_many_events, COL_REASON_TOO_MANY_EVENTS, -1},
    {"too_many_events: 2001", m_too_many_events_default, COL_REASON_TOO_MANY_EVENTS, -1},
    {"missing_service", m_missing_service, COL_REASON_MISSING_SERVICE, 2},
    {"bad_event_id: 15 bytes", m_bad_event_id_short, COL_REASON_BAD_EVENT_ID, 1},
    {"bad_event_id: none", m_bad_event_id_none, COL_REASON_BAD_EVENT_ID, 3},
    {"bad_event_id: 17 bytes", m_bad_event_id_long, COL_REASON_BAD_EVENT_ID, 0},
    {"no_body", m_no_body, COL_REASON_NO_BODY, 1},
    {"string_too_long: service", m_service_too_long, COL_REASON_STRING_TOO_LONG, 0},
    {"string_too_long: route", m_route_too_long, COL_REASON_STRING_TOO_LONG, 1},
    {"string_too_long: error message", m_message_too_long, COL_REASON_STRING_TOO_LONG, 0},
    {"string_too_long: tag value", m_tag_value_too_long, COL_REASON_STRING_TOO_LONG, 0},
    {"string_too_long: frame file", m_frame_file_too_long, COL_REASON_STRING_TOO_LONG, 0},
    {"string_too_long: metric name", m_metric_name_too_long, COL_REASON_STRING_TOO_LONG, 2},
    {"string_too_long: log field key", m_log_field_too_long, COL_REASON_STRING_TOO_LONG, 3},
    {"string_too_long: api_key", m_api_key_too_long, COL_REASON_STRING_TOO_LONG, -1},
    {"invalid_utf8: truncated sequence", m_invalid_utf8_service, COL_REASON_INVALID_UTF8, 1},
    {"invalid_utf8: 0xff", m_invalid_utf8_message, COL_REASON_INVALID_UTF8, 3},
    {"invalid_utf8: overlong", m_invalid_utf8_overlong, COL_REASON_INVALID_UTF8, 0},
    {"invalid_utf8: surrogate", m_invalid_utf8_surrogate, COL_REASON_INVALID_UTF8, 0},
    {"too_many_tags", m_too_many_tags, COL_REASON_TOO_MANY_TAGS, 3},
    {"too_many_tags: limit 0", m_tags_limit_zero, COL_REASON_TOO_MANY_TAGS, 0},
    {"too_many_frames", m_too_many_frames, COL_REASON_TOO_MANY_FRAMES, 0},
    {"too_many_fields", m_too_many_fields, COL_REASON_TOO_MANY_FIELDS, 3},
    {"too_many_fingerprint_parts", m_too_many_fingerprint, COL_REASON_TOO_MANY_FINGERPRINT_PARTS,
     0},
    {"bad_value: NaN", m_metric_nan, COL_REASON_BAD_VALUE, 2},
    {"bad_value: -inf gauge", m_metric_inf, COL_REASON_BAD_VALUE, 2},
    {"bad_value: negative timing", m_timing_negative, COL_REASON_BAD_VALUE, 2},
    {"valid: a sample rate of 0.25", m_sample_rate_quarter, COL_REASON_NONE, -1},
    {"bad_value: a sample rate above 1", m_sample_rate_above_one, COL_REASON_BAD_VALUE, 1},
    {"bad_value: a sample rate not a number", m_sample_rate_nan, COL_REASON_BAD_VALUE, 3},
};

static void test_cases(void **state)
{
    (void)state;
    static fixture_t f;
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const vcase_t *c = &cases[i];
        fixture_init(&f);
        c->mutate(&f);
        size_t len;
        uint8_t *buf = fixture_pack(&f, &len);
        col_batch_t *b = (col_batch_t *)0x1;
        col_reject_t rej;
        int rc = col_batch_decode(buf, len, &f.limits, arena(), &b, &rej);
        if (c->reason == COL_REASON_NONE) {
            if (rc != 0) {
                fail_msg("%s: refused: %s: %s", c->name, col_reason_name(rej.reason), rej.message);
            }
            assert_non_null(b);
            assert_int_equal(rej.reason, COL_REASON_NONE);
            assert_int_equal(b->n_events, f.batch.n_events);
            assert_int_equal(b->sequence, 42);
            assert_int_equal(b->counters.dropped_queue_full, 3);
            assert_int_equal(b->sdk.len, strlen("libtocsin/0.1.0"));
            for (size_t e = 0; e < b->n_events; e++) {
                col_event_t *ce = &b->events[e];
                assert_int_equal(ce->body, f.batch.events[e]->body_case);
                assert_int_equal(ce->service.len, strlen(f.batch.events[e]->service));
                assert_memory_equal(ce->service.p, f.batch.events[e]->service, ce->service.len);
                assert_int_equal(ce->time_us, f.batch.events[e]->time_us);
                /* Decoding gives back what the client encoded. */
                if (col_event_decode(ce, arena()) != 0) {
                    fail_msg("%s: event %zu does not decode", c->name, e);
                }
                assert_int_equal(ce->ev->body_case, f.batch.events[e]->body_case);
                assert_string_equal(ce->ev->service, f.batch.events[e]->service);
                assert_memory_equal(ce->ev->event_id.data, f.batch.events[e]->event_id.data, 16);
            }
            col_arena_reset(arena());
            free(buf); /* the batch points into it: freed only now */
            continue;
        }
        free(buf);
        if (rc != TC_EINVAL || rej.reason != c->reason) {
            fail_msg("%s: rc %d, reason %s (%s), expected %s", c->name, rc,
                     col_reason_name(rej.reason), rej.message, col_reason_name(c->reason));
        }
        assert_null(b);
        if (rej.event_index != c->event_index) {
            fail_msg("%s: event index %d, expected %d (%s)", c->name, rej.event_index,
                     c->event_index, rej.message);
        }
        /* The message names the event at fault and is never empty. */
        assert_true(rej.message[0] != '\0');
        if (c->event_index >= 0) {
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "event %d: ", c->event_index);
            if (strncmp(rej.message, prefix, strlen(prefix)) != 0) {
                fail_msg("%s: message \"%s\" does not start with \"%s\"", c->name, rej.message,
                         prefix);
            }
        }
        /* The sequence is read from the top level even when the batch is refused. */
        assert_int_equal(rej.sequence, 42);
    }
}

/* Refusals decided on raw bytes: garbage, truncation, empty input, broken framing. */
typedef struct {
    const char *name;
    const uint8_t *data;
    size_t len;
    col_reason_t reason;
    int event_index; /* the event at fault, -1 for the batch */
} rawcase_t;

static void test_raw(void **state)
{
    (void)state;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t bad_len[] = {0x1a, 0xff, 0xff, 0x03, 0x00};    /* events, len ~65k */
    static const uint8_t group[] = {0x0b, 0x0c};                        /* a group field */
    static const uint8_t field0[] = {0x00, 0x01};                       /* field number 0 */
    static const uint8_t wrong_type[] = {0x19, 1, 2, 3, 4, 5, 6, 7, 8}; /* events as fixed64 */
    static const uint8_t event_bad_inner[] = {0x1a, 0x02, 0xff, 0xff};  /* event body broken */
    static const uint8_t only_sequence[] = {0x08, 0x07};
    static const uint8_t event_bad_type[] = {0x1a, 0x02, 0x18, 0x01}; /* service as varint */
    static const uint8_t event_nul[] = {0x1a, 0x05, 0x1a, 0x03, 'a', 0x00, 'b'}; /* NUL */
    static const uint8_t key_too_long[] = {0x1a, 0x07, 0xf8, 0xff, 0xff,
                                           0xff, 0xff, 0x01, 0x00}; /* a 6-byte tag */
    static const uint8_t counters_bad[] = {0x22, 0x02, 0x0a, 0x00}; /* counter as a string */
    const rawcase_t raw[] = {
        {"empty input", NULL, 0, COL_REASON_EMPTY, -1},
        {"sequence only", only_sequence, sizeof(only_sequence), COL_REASON_EMPTY, -1},
        {"garbage", garbage, sizeof(garbage), COL_REASON_MALFORMED, -1},
        {"length past the end", bad_len, sizeof(bad_len), COL_REASON_MALFORMED, -1},
        {"group wire type", group, sizeof(group), COL_REASON_MALFORMED, -1},
        {"field number 0", field0, sizeof(field0), COL_REASON_MALFORMED, -1},
        {"events with the wrong wire type", wrong_type, sizeof(wrong_type), COL_REASON_MALFORMED,
         -1},
        {"event with broken contents", event_bad_inner, sizeof(event_bad_inner),
         COL_REASON_MALFORMED, 0},
        {"event field with the wrong wire type", event_bad_type, sizeof(event_bad_type),
         COL_REASON_MALFORMED, 0},
        {"a NUL byte inside a string", event_nul, sizeof(event_nul), COL_REASON_INVALID_UTF8, 0},
        {"a field tag of six bytes", key_too_long, sizeof(key_too_long), COL_REASON_MALFORMED, 0},
        {"counters of the wrong wire type", counters_bad, sizeof(counters_bad),
         COL_REASON_MALFORMED, -1},
    };
    col_limits_t lim = col_limits_default();
    for (size_t i = 0; i < N_ELEMS(raw); i++) {
        col_batch_t *b = NULL;
        col_reject_t rej;
        int rc = col_batch_decode(raw[i].data, raw[i].len, &lim, arena(), &b, &rej);
        if (rc != TC_EINVAL || rej.reason != raw[i].reason) {
            fail_msg("%s: rc %d reason %s, expected %s", raw[i].name, rc,
                     col_reason_name(rej.reason), col_reason_name(raw[i].reason));
        }
        assert_null(b);
        if (rej.event_index != raw[i].event_index) {
            fail_msg("%s: event index %d, expected %d", raw[i].name, rej.event_index,
                     raw[i].event_index);
        }
    }
    /* The sequence of a batch without events is still named. */
    col_batch_t *b = NULL;
    col_reject_t rej;
    col_batch_decode(only_sequence, sizeof(only_sequence), &lim, arena(), &b, &rej);
    assert_int_equal(rej.sequence, 7);
}

/* Every truncation of a valid batch is refused cleanly or, where the cut falls on a field
 * boundary, accepted — never anything else. */
static void test_truncations(void **state)
{
    (void)state;
    static fixture_t f;
    fixture_init(&f);
    size_t len;
    uint8_t *buf = fixture_pack(&f, &len);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *part = malloc(cut ? cut : 1);
        assert_non_null(part);
        memcpy(part, buf, cut);
        col_batch_t *b = NULL;
        col_reject_t rej;
        int rc = col_batch_decode(cut ? part : NULL, cut, &f.limits, arena(), &b, &rej);
        if (rc == 0) {
            assert_non_null(b);
            col_arena_reset(arena());
        } else {
            assert_int_equal(rc, TC_EINVAL);
            assert_null(b);
            assert_true(rej.reason > COL_REASON_NONE && rej.reason < COL_REASON_COUNT);
        }
        free(part);
    }
    free(buf);
}

/* A frame of many empty events is counted on the wire and refused before decoding. */
static void test_event_flood(void **state)
{
    (void)state;
    size_t n = 500000;
    uint8_t *buf = malloc(n * 2);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = 0x1a; /* field 3, length-delimited */
        buf[2 * i + 1] = 0x00;
    }
    col_limits_t lim = col_limits_default();
    col_batch_t *b = NULL;
    col_reject_t rej;
    assert_int_equal(col_batch_decode(buf, n * 2, &lim, arena(), &b, &rej), TC_EINVAL);
    assert_int_equal(rej.reason, COL_REASON_TOO_MANY_EVENTS);
    free(buf);
}

/* Packs one event. */
static size_t pack_event(const Tocsin__V1__Event *ev, uint8_t *out)
{
    return tocsin__v1__event__pack(ev, out);
}

/* A batch (sequence 9) of one event whose bytes are `a` then `b`: protobuf reads two
 * messages one after the other as one, the later singular fields winning and sub-messages
 * merging. */
static size_t batch_of_two(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, uint8_t *out)
{
    size_t n = 0;
    out[n++] = 0x08;
    out[n++] = 9;
    out[n++] = 0x1a;
    size_t len = na + nb;
    while (len >= 0x80) {
        out[n++] = (uint8_t)(len | 0x80);
        len >>= 7;
    }
    out[n++] = (uint8_t)len;
    memcpy(out + n, a, na);
    memcpy(out + n + na, b, nb);
    return n + na + nb;
}

/* Events protobuf reads in a less obvious way are decoded and checked as protobuf-c reads
 * them: the later service wins, the later body wins whole, repeated fields add up. */
static void test_complex_events(void **state)
{
    (void)state;
    static uint8_t a[64 * 1024], bb[64 * 1024], batch[130 * 1024];
    uint8_t id[16];
    memset(id, 3, sizeof(id));
    Tocsin__V1__Event e1 = TOCSIN__V1__EVENT__INIT, e2 = TOCSIN__V1__EVENT__INIT;
    e1.event_id.data = id;
    e1.event_id.len = 16;
    e1.service = "first";
    Tocsin__V1__Request req = TOCSIN__V1__REQUEST__INIT;
    req.route = "/r";
    e1.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
    e1.request = &req;
    e2.service = "second";
    col_limits_t lim = col_limits_default();
    col_batch_t *b = NULL;
    col_reject_t rej;

    /* service twice: the later wins; the event is complex and decoded */
    size_t na = pack_event(&e1, a), nb = pack_event(&e2, bb);
    size_t n = batch_of_two(a, na, bb, nb, batch);
    assert_int_equal(col_batch_decode(batch, n, &lim, arena(), &b, &rej), 0);
    assert_false(b->events[0].simple);
    assert_non_null(b->events[0].ev);
    assert_int_equal(b->events[0].service.len, 6);
    assert_memory_equal(b->events[0].service.p, "second", 6);
    assert_int_equal(b->events[0].body, TOCSIN__V1__EVENT__BODY_REQUEST);
    assert_int_equal(b->events[0].name.len, 2);
    col_arena_reset(arena());

    /* two bodies: the later wins */
    Tocsin__V1__LogRecord log = TOCSIN__V1__LOG_RECORD__INIT;
    log.message = "hello";
    e2.service = "";
    e2.body_case = TOCSIN__V1__EVENT__BODY_LOG;
    e2.log = &log;
    nb = pack_event(&e2, bb);
    n = batch_of_two(a, na, bb, nb, batch);
    assert_int_equal(col_batch_decode(batch, n, &lim, arena(), &b, &rej), 0);
    assert_false(b->events[0].simple);
    assert_int_equal(b->events[0].body, TOCSIN__V1__EVENT__BODY_LOG);
    col_arena_reset(arena());

    /* a metric whose first value is not finite and whose later one is: the later wins */
    Tocsin__V1__Metric m1 = TOCSIN__V1__METRIC__INIT, m2 = TOCSIN__V1__METRIC__INIT;
    m1.name = "q";
    m1.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING;
    m1.value = -1;
    m2.value = 2;
    e1.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e1.metric = &m1;
    e2.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e2.metric = &m2;
    na = pack_event(&e1, a);
    nb = pack_event(&e2, bb);
    n = batch_of_two(a, na, bb, nb, batch);
    assert_int_equal(col_batch_decode(batch, n, &lim, arena(), &b, &rej), 0);
    assert_int_equal(b->events[0].ev->metric->value, 2);
    col_arena_reset(arena());
    /* ... and the other way round it is refused, as a simple event would be */
    n = batch_of_two(bb, nb, a, na, batch);
    assert_int_equal(col_batch_decode(batch, n, &lim, arena(), &b, &rej), TC_EINVAL);
    assert_int_equal(rej.reason, COL_REASON_BAD_VALUE);
    assert_int_equal(rej.event_index, 0);
    col_arena_reset(arena());

    /* two errors of 100 frames each: the body is a oneof, so protobuf-c keeps the later
     * one whole rather than merging (100 frames, not 200) */
    static Tocsin__V1__Frame frames[100];
    static Tocsin__V1__Frame *framep[100];
    for (int i = 0; i < 100; i++) {
        tocsin__v1__frame__init(&frames[i]);
        frames[i].function = "f";
        framep[i] = &frames[i];
    }
    Tocsin__V1__ErrorEvent err = TOCSIN__V1__ERROR_EVENT__INIT;
    err.type = "E";
    err.n_frames = 100;
    err.frames = framep;
    e1.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    e1.error = &err;
    e2.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    e2.error = &err;
    na = pack_event(&e1, a);
    nb = pack_event(&e2, bb);
    n = batch_of_two(a, na, bb, nb, batch);
    assert_int_equal(col_batch_decode(batch, n, &lim, arena(), &b, &rej), 0);
    assert_int_equal(b->events[0].ev->error->n_frames, 100);
    col_arena_reset(arena());

    /* tags of both halves add up: 40 + 40 is above the limit of 64 */
    static Tocsin__V1__Event__TagsEntry tags[40];
    static Tocsin__V1__Event__TagsEntry *tagp[40];
    for (int i = 0; i < 40; i++) {
        tocsin__v1__event__tags_entry__init(&tags[i]);
        tags[i].key = "k";
        tags[i].value = "v";
        tagp[i] = &tags[i];
    }
    e1.n_tags = 40;
    e1.tags = tagp;
    e2.n_tags = 40;
    e2.tags = tagp;
    na = pack_event(&e1, a);
    nb = pack_event(&e2, bb);
    n = batch_of_two(a, na, bb, nb, batch);
    assert_int_equal(col_batch_decode(batch, n, &lim, arena(), &b, &rej), TC_EINVAL);
    assert_int_equal(rej.reason, COL_REASON_TOO_MANY_TAGS);
    col_arena_reset(arena());
}

typedef struct {
    char seen[16][64];
    int n;
} strings_t;

static bool collect(void *ctx, col_string_kind_t kind, col_span_t key, col_span_t value)
{
    strings_t *s = ctx;
    snprintf(s->seen[s->n++], sizeof(s->seen[0]), "%d:%.*s=%.*s", (int)kind, (int)key.len, key.p,
             (int)value.len, value.p);
    return true;
}

static bool refuse_logs(void *ctx, col_string_kind_t kind, col_span_t key, col_span_t value)
{
    int *calls = ctx;
    (*calls)++;
    (void)key;
    (void)value;
    return kind != COL_STRING_LOG_FIELD;
}

/* The inspector sees every string during the walk; an event it refuses is flagged, the
 * others are not. */
static void test_inspect_flags(void **state)
{
    (void)state;
    static fixture_t f;
    fixture_init(&f);
    size_t len;
    uint8_t *buf = fixture_pack(&f, &len);
    col_batch_t *b = NULL;
    col_reject_t rej;
    int calls = 0;
    assert_int_equal(
        col_batch_decode_inspect(buf, len, &f.limits, arena(), refuse_logs, &calls, &b, &rej), 0);
    /* error: 2 tags and a message; request: its route; log: its message and one field */
    assert_int_equal(calls, 3 + 1 + 2);
    assert_false(b->events[0].flagged);
    assert_false(b->events[1].flagged);
    assert_false(b->events[2].flagged);
    assert_true(b->events[3].flagged);
    col_arena_reset(arena());
    assert_int_equal(col_batch_decode(buf, len, &f.limits, arena(), &b, &rej), 0);
    assert_false(b->events[3].flagged);
    col_arena_reset(arena());
    free(buf);
}

/* col_event_each reports tags, log fields, messages and routes, in wire order. */
static void test_event_each(void **state)
{
    (void)state;
    static fixture_t f;
    fixture_init(&f);
    f.ev[0].n_tags = 2; /* error: tags region=eu-west-1 twice, then the message */
    f.ev[3].n_tags = 0;
    f.log.n_fields = 1;
    size_t len;
    uint8_t *buf = fixture_pack(&f, &len);
    col_batch_t *b = NULL;
    col_reject_t rej;
    assert_int_equal(col_batch_decode(buf, len, &f.limits, arena(), &b, &rej), 0);
    for (size_t e = 0; e < b->n_events; e++) {
        assert_true(b->events[e].simple);
    }
    strings_t s = {0};
    assert_true(col_event_each(&b->events[0], collect, &s));
    assert_int_equal(s.n, 3);
    assert_string_equal(s.seen[0], "0:region=eu-west-1");
    assert_string_equal(s.seen[1], "0:region=eu-west-1");
    assert_string_equal(s.seen[2], "2:=no such key");
    memset(&s, 0, sizeof(s));
    assert_true(col_event_each(&b->events[1], collect, &s)); /* the request: its route */
    assert_int_equal(s.n, 1);
    assert_string_equal(s.seen[0], "3:=/users/:id");
    memset(&s, 0, sizeof(s));
    assert_true(col_event_each(&b->events[3], collect, &s)); /* the log */
    assert_int_equal(s.n, 2);
    assert_string_equal(s.seen[0], "2:=slow query");
    assert_string_equal(s.seen[1], "1:order=1234");
    col_arena_reset(arena());
    free(buf);
}

/* What does not fit the arena is refused like any batch that cannot be decoded, and the
 * arena serves the next batch normally. */
static void test_arena_bound(void **state)
{
    (void)state;
    static fixture_t f;
    fixture_init(&f);
    size_t len;
    uint8_t *buf = fixture_pack(&f, &len);
    col_arena_t *small = col_arena_new(256);
    assert_non_null(small);
    col_batch_t *b = NULL;
    col_reject_t rej;
    assert_int_equal(col_batch_decode(buf, len, &f.limits, small, &b, &rej), TC_EINVAL);
    assert_null(b);
    assert_int_equal(rej.reason, COL_REASON_MALFORMED);
    col_arena_reset(small);
    col_arena_destroy(&small);
    assert_int_equal(col_batch_decode(buf, len, &f.limits, arena(), &b, &rej), 0);
    assert_non_null(b);
    assert_true(col_arena_used(arena()) > 0);
    col_arena_reset(arena());
    assert_int_equal(col_arena_used(arena()), 0);
    free(buf);
}

static int expected_wire_type(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return 5;
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return 1;
    default:
        return 0;
    }
}

static void check_descriptor(const ProtobufCMessageDescriptor *d)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        int got = col_wire_known_type(d->name, f->id);
        if (got != expected_wire_type(f)) {
            fail_msg("%s field %u (%s): the wire walk expects type %d, the schema says %d", d->name,
                     f->id, f->name, got, expected_wire_type(f));
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            check_descriptor(f->descriptor);
        }
    }
}

/* The wire walk knows every field of every message in a Batch, with its wire type: a field
 * added to the .proto files must be added to col_validate.c too. */
static void test_walk_knows_the_schema(void **state)
{
    (void)state;
    check_descriptor(&tocsin__v1__batch__descriptor);
    assert_int_equal(col_wire_known_type("tocsin.v1.Event", 999), -1);
    assert_int_equal(col_wire_known_type("tocsin.v1.Nothing", 1), -2);
}

static void test_reason_names(void **state)
{
    (void)state;
    /* The names are an interface (metric labels, Ack reasons): they never change. */
    static const char *const expected[] = {
        "none",
        "too_big",
        "malformed",
        "empty",
        "too_many_events",
        "missing_service",
        "bad_event_id",
        "no_body",
        "string_too_long",
        "invalid_utf8",
        "too_many_tags",
        "too_many_frames",
        "too_many_fields",
        "bad_value",
        "too_many_fingerprint_parts",
        "unauthorized",
    };
    assert_int_equal(N_ELEMS(expected), COL_REASON_COUNT);
    for (int r = 0; r < COL_REASON_COUNT; r++) {
        assert_string_equal(col_reason_name((col_reason_t)r), expected[r]);
    }
    assert_string_equal(col_reason_name(COL_REASON_COUNT), "unknown");
    assert_string_equal(col_reason_name((col_reason_t)-1), "unknown");
}

static void test_limits_default(void **state)
{
    (void)state;
    col_limits_t l = col_limits_default();
    assert_int_equal(l.max_frame_bytes, 1024 * 1024);
    assert_int_equal(l.max_events, 2000);
    assert_int_equal(l.max_short_string, 256);
    assert_int_equal(l.max_long_string, 16 * 1024);
    assert_int_equal(l.max_tags, 64);
    assert_int_equal(l.max_frames, 128);
    assert_int_equal(l.max_log_fields, 64);
    assert_int_equal(l.max_fingerprint_parts, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),         cmocka_unit_test(test_raw),
        cmocka_unit_test(test_truncations),   cmocka_unit_test(test_event_flood),
        cmocka_unit_test(test_reason_names),  cmocka_unit_test(test_limits_default),
        cmocka_unit_test(test_arena_bound),   cmocka_unit_test(test_complex_events),
        cmocka_unit_test(test_event_each),    cmocka_unit_test(test_walk_knows_the_schema),
        cmocka_unit_test(test_inspect_flags),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    col_arena_destroy(&the_arena);
    return failed;
}
