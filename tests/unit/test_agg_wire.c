/*
 * Unit tests for aggregator/agg_wire: the zero-copy scanner of tocsin.v1.Event record values.
 * Every body type is read as protobuf-c reads it; unknown fields are skipped; each rule of
 * the validation refuses its case with the field named (table-driven); malformed protobuf
 * (cut varints, lengths past the end, groups, field 0) is refused; agg_wire_scan_id finds
 * the id and receive time even of events the full scan refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_wire.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    Tocsin__V1__Event ev;
    uint8_t id[16];
    Tocsin__V1__Request req;
    Tocsin__V1__ErrorEvent err;
    Tocsin__V1__Metric met;
    Tocsin__V1__LogRecord log;
    Tocsin__V1__Frame frame;
    Tocsin__V1__Frame *frames[1];
} event_t;

static void event_init(event_t *e, int body)
{
    memset(e, 0, sizeof(*e));
    tocsin__v1__event__init(&e->ev);
    memset(e->id, 0x5a, sizeof(e->id));
    e->ev.event_id.data = e->id;
    e->ev.event_id.len = 16;
    e->ev.time_us = 1795000001234567LL;
    e->ev.received_us = 1795000002000000LL;
    e->ev.service = "checkout";
    e->ev.environment = "production";
    e->ev.release = "1.2.3";
    e->ev.user_id = "user-7";
    tocsin__v1__request__init(&e->req);
    e->req.route = "/users/:id";
    e->req.status = 503;
    e->req.duration_us = 12000;
    tocsin__v1__error_event__init(&e->err);
    e->err.type = "KeyError";
    e->err.message = "boom";
    e->err.level = TOCSIN__V1__LEVEL__LEVEL_WARNING;
    e->err.grouping_hash = "abc123";
    tocsin__v1__frame__init(&e->frame);
    e->frame.function = "handle";
    e->frame.line = 12;
    e->frames[0] = &e->frame;
    e->err.n_frames = 1;
    e->err.frames = e->frames;
    tocsin__v1__metric__init(&e->met);
    e->met.name = "queue.depth";
    e->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
    e->met.value = 7.5;
    tocsin__v1__log_record__init(&e->log);
    e->log.message = "hello";
    e->log.logger = "app";
    e->log.level = TOCSIN__V1__LEVEL__LEVEL_INFO;
    switch (body) {
    case AGG_BODY_REQUEST:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
        e->ev.request = &e->req;
        break;
    case AGG_BODY_ERROR:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
        e->ev.error = &e->err;
        break;
    case AGG_BODY_METRIC:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        e->ev.metric = &e->met;
        break;
    case AGG_BODY_LOG:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
        e->ev.log = &e->log;
        break;
    default:
        break;
    }
}

static uint8_t *pack(const event_t *e, size_t *len)
{
    *len = tocsin__v1__event__get_packed_size(&e->ev);
    uint8_t *buf = malloc(*len + 64);
    assert_non_null(buf);
    tocsin__v1__event__pack(&e->ev, buf);
    return buf;
}

static bool eq(agg_str_t s, const char *c)
{
    return agg_str_eq(s, c);
}

static void test_bodies(void **state)
{
    (void)state;
    event_t e;
    size_t len;
    agg_event_t ev;
    const char *why = NULL;

    event_init(&e, AGG_BODY_REQUEST);
    uint8_t *buf = pack(&e, &len);
    assert_int_equal(agg_wire_scan(buf, len, &ev, &why), 0);
    assert_memory_equal(ev.event_id, e.id, 16);
    assert_true(ev.time_us == 1795000001234567LL && ev.received_us == 1795000002000000LL);
    assert_true(eq(ev.service, "checkout") && eq(ev.environment, "production"));
    assert_true(eq(ev.release, "1.2.3") && eq(ev.user_id, "user-7"));
    assert_int_equal(ev.body, AGG_BODY_REQUEST);
    assert_true(eq(ev.route, "/users/:id"));
    assert_int_equal(ev.status, 503);
    assert_int_equal(ev.duration_us, 12000);
    free(buf);

    event_init(&e, AGG_BODY_ERROR);
    buf = pack(&e, &len);
    assert_int_equal(agg_wire_scan(buf, len, &ev, &why), 0);
    assert_int_equal(ev.body, AGG_BODY_ERROR);
    assert_true(eq(ev.error_type, "KeyError") && eq(ev.error_message, "boom"));
    assert_true(eq(ev.grouping_hash, "abc123"));
    assert_int_equal(ev.level, TOCSIN__V1__LEVEL__LEVEL_WARNING);
    free(buf);

    event_init(&e, AGG_BODY_METRIC);
    e.ev.environment = ""; /* empty means "default" */
    buf = pack(&e, &len);
    assert_int_equal(agg_wire_scan(buf, len, &ev, &why), 0);
    assert_int_equal(ev.body, AGG_BODY_METRIC);
    assert_true(eq(ev.metric_name, "queue.depth"));
    assert_int_equal(ev.metric_kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE);
    assert_true(ev.value == 7.5);
    assert_true(eq(ev.environment, AGG_DEFAULT_ENVIRONMENT));
    free(buf);

    event_init(&e, AGG_BODY_LOG);
    buf = pack(&e, &len);
    assert_int_equal(agg_wire_scan(buf, len, &ev, &why), 0);
    assert_int_equal(ev.body, AGG_BODY_LOG);
    assert_true(eq(ev.log_message, "hello") && eq(ev.logger, "app"));
    free(buf);
}

/* Fields the scanner does not know (tags, trace id, a field of a newer version) are
 * skipped, whatever their wire type. */
static void test_unknown_fields(void **state)
{
    (void)state;
    event_t e;
    event_init(&e, AGG_BODY_REQUEST);
    Tocsin__V1__Event__TagsEntry tag = TOCSIN__V1__EVENT__TAGS_ENTRY__INIT;
    Tocsin__V1__Event__TagsEntry *tags[1] = {&tag};
    tag.key = "region";
    tag.value = "eu";
    e.ev.n_tags = 1;
    e.ev.tags = tags;
    e.ev.trace_id = "t-1";
    size_t len;
    uint8_t *buf = pack(&e, &len);
    /* Field 99 varint, field 98 fixed64, field 97 fixed32, field 96 bytes. */
    const uint8_t extra[] = {0x98, 0x06, 0x05, 0x91, 0x06, 1, 2, 3,    4,    5, 6,   7,
                             8,    0x8d, 0x06, 1,    2,    3, 4, 0x82, 0x06, 2, 'h', 'i'};
    memcpy(buf + len, extra, sizeof(extra));
    agg_event_t ev;
    assert_int_equal(agg_wire_scan(buf, len + sizeof(extra), &ev, NULL), 0);
    assert_true(eq(ev.route, "/users/:id"));
    free(buf);
}

typedef struct {
    const char *name;
    void (*mutate)(event_t *e);
    int rc;
    const char *reason;
} case_t;

static void m_short_id(event_t *e)
{
    e->ev.event_id.len = 8;
}
static void m_time_negative(event_t *e)
{
    e->ev.time_us = -1;
}
static void m_time_year_10000(event_t *e)
{
    e->ev.time_us = AGG_TIME_MAX_US + 1;
}
static void m_no_service(event_t *e)
{
    e->ev.service = "";
}
static void m_bad_utf8_service(event_t *e)
{
    e->ev.service = "bad\xc3\x28";
}
static void m_long_service(event_t *e)
{
    static char s[AGG_MAX_SERVICE + 2];
    memset(s, 'a', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    e->ev.service = s;
}
static void m_bad_env(event_t *e)
{
    e->ev.environment = "\xff";
}
static void m_bad_user(event_t *e)
{
    e->ev.user_id = "\xc0\x80";
}
static void m_no_route(event_t *e)
{
    e->req.route = "";
}
static void m_dollar_route(event_t *e)
{
    e->req.route = "$errors";
}
static void m_no_body(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY__NOT_SET;
}
static void m_metric_kind(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_UNSPECIFIED;
}
static void m_metric_nan(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.value = NAN;
}
static void m_timing_negative(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING;
    e->met.value = -1;
}
static void m_metric_noname(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.name = "";
}
static void m_error_bad_type(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    e->ev.error = &e->err;
    e->err.type = "\xfe";
}
static void m_error_level(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    e->ev.error = &e->err;
    e->err.level = (Tocsin__V1__Level)9;
}
static void m_log_level(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
    e->ev.log = &e->log;
    e->log.level = (Tocsin__V1__Level)-1;
}

static void test_refusals(void **state)
{
    (void)state;
    static const case_t cases[] = {
        {"short event_id", m_short_id, TC_EINVAL, "event_id"},
        {"time before the epoch", m_time_negative, TC_EINVAL, "time_us"},
        {"time after year 9999", m_time_year_10000, TC_EINVAL, "time_us"},
        {"no service", m_no_service, TC_EINVAL, "service"},
        {"service not UTF-8", m_bad_utf8_service, TC_EUTF8, "service"},
        {"service too long", m_long_service, TC_EUTF8, "service"},
        {"environment not UTF-8", m_bad_env, TC_EUTF8, "environment"},
        {"user id overlong", m_bad_user, TC_EUTF8, "user_id"},
        {"no route", m_no_route, TC_EINVAL, "request.route"},
        {"route starting with $", m_dollar_route, TC_EINVAL, "request.route"},
        {"no body", m_no_body, TC_EINVAL, "body"},
        {"metric kind unspecified", m_metric_kind, TC_EINVAL, "metric.kind"},
        {"metric NaN", m_metric_nan, TC_EINVAL, "metric.value"},
        {"negative timing", m_timing_negative, TC_EINVAL, "metric.value"},
        {"metric without name", m_metric_noname, TC_EINVAL, "metric.name"},
        {"error type not UTF-8", m_error_bad_type, TC_EUTF8, "error.type"},
        {"error level out of range", m_error_level, TC_EINVAL, "error.level"},
        {"log level negative", m_log_level, TC_EINVAL, "log.level"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        event_t e;
        event_init(&e, AGG_BODY_REQUEST);
        cases[i].mutate(&e);
        size_t len;
        uint8_t *buf = pack(&e, &len);
        agg_event_t ev;
        const char *why = NULL;
        int rc = agg_wire_scan(buf, len, &ev, &why);
        if (rc != cases[i].rc || !why || strcmp(why, cases[i].reason) != 0) {
            fail_msg("%s: rc %d reason %s", cases[i].name, rc, why ? why : "(none)");
        }
        free(buf);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    event_t e;
    event_init(&e, AGG_BODY_REQUEST);
    e.ev.received_us = 0; /* so that the body is the last field */
    size_t len;
    uint8_t *buf = pack(&e, &len);
    agg_event_t ev;
    const char *why = NULL;
    /* Every cut of a valid event is refused (the body's length runs past the end, or a
     * required field is missing), never read past the end. */
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        assert_int_not_equal(agg_wire_scan(cut, n, &ev, &why), 0);
        free(cut);
    }
    static const struct {
        const char *name;
        uint8_t bytes[12];
        size_t len;
    } raw[] = {
        {"field 0", {0x00, 0x01}, 2},
        {"group start", {0x0b}, 1},
        {"group end", {0x0c}, 1},
        {"wire type 6", {0x0e}, 1},
        {"varint too long", {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 11},
        {"length past the end", {0x1a, 0x10, 'a'}, 3},
        {"service as varint", {0x18, 0x01}, 2},
    };
    for (size_t i = 0; i < N_ELEMS(raw); i++) {
        if (agg_wire_scan(raw[i].bytes, raw[i].len, &ev, &why) != TC_EPARSE) {
            fail_msg("%s: accepted", raw[i].name);
        }
    }
    /* A body twice is refused (protobuf-c would merge them). */
    event_t two;
    event_init(&two, AGG_BODY_REQUEST);
    size_t l2;
    uint8_t *b2 = pack(&two, &l2);
    size_t rl = tocsin__v1__request__get_packed_size(&two.req);
    uint8_t *both = malloc(l2 + rl + 4);
    memcpy(both, b2, l2);
    both[l2] = 0x5a; /* field 11, length-delimited */
    both[l2 + 1] = (uint8_t)rl;
    tocsin__v1__request__pack(&two.req, both + l2 + 2);
    assert_int_equal(agg_wire_scan(both, l2 + 2 + rl, &ev, &why), TC_EINVAL);
    assert_string_equal(why, "body");
    free(both);
    free(b2);
    /* Too big. */
    assert_int_equal(agg_wire_scan(buf, AGG_MAX_EVENT_BYTES + 1, &ev, &why), TC_ETOOBIG);
    free(buf);
}

static void test_scan_id(void **state)
{
    (void)state;
    event_t e;
    event_init(&e, AGG_BODY_REQUEST);
    e.req.route = "$reserved"; /* refused by the full scan */
    size_t len;
    uint8_t *buf = pack(&e, &len);
    agg_event_t ev;
    assert_int_not_equal(agg_wire_scan(buf, len, &ev, NULL), 0);
    const uint8_t *id = NULL;
    int64_t recv = 0;
    assert_int_equal(agg_wire_scan_id(buf, len, &id, &recv), 0);
    assert_memory_equal(id, e.id, 16);
    assert_true(recv == 1795000002000000LL);
    assert_int_equal(agg_wire_scan_id(buf, 3, &id, &recv), TC_EPARSE);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies),   cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_refusals), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_scan_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
