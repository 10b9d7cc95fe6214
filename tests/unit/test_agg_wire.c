/*
 * Unit tests for aggregator/agg_wire: the zero-copy scanner of tocsin.v1.Event record values.
 * Every body type is read as protobuf-c reads it; unknown fields are skipped; each rule of
 * the validation refuses its case with the field named (table-driven); malformed protobuf
 * (cut varints, lengths past the end, groups, field 0) is refused; agg_wire_scan_id finds
 * the id and receive time even of events the full scan refuses. Packs (tocsin.v1.EventPack) are
 * walked entry by entry, refused when cut or badly framed; the format header is read strictly;
 * sample rates turn into integer weights (exact for 1/n, unbiased by event id otherwise).
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


/* A pack of the given event encodings: (0x0a, varint length, bytes) for each. */
static size_t pack_of(uint8_t *out, uint8_t *const *evs, const size_t *lens, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        out[k++] = 0x0a;
        size_t v = lens[i];
        while (v >= 0x80) {
            out[k++] = (uint8_t)(v | 0x80);
            v >>= 7;
        }
        out[k++] = (uint8_t)v;
        memcpy(out + k, evs[i], lens[i]);
        k += lens[i];
    }
    return k;
}

static void test_pack_walk(void **state)
{
    (void)state;
    event_t e;
    event_init(&e, AGG_BODY_REQUEST);
    uint8_t *evs[3];
    size_t lens[3];
    evs[0] = pack(&e, &lens[0]);
    e.req.route = "/other";
    evs[1] = pack(&e, &lens[1]);
    /* An event above 127 bytes: a length of two bytes. */
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    e.req.route = big;
    evs[2] = pack(&e, &lens[2]);
    assert_true(lens[2] > 127);
    uint8_t buf[2048];
    size_t n = pack_of(buf, evs, lens, 3);
    size_t off = 0;
    const uint8_t *ev = NULL;
    size_t ev_len = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(agg_pack_next(buf, n, &off, &ev, &ev_len), 1);
        assert_int_equal(ev_len, lens[i]);
        assert_memory_equal(ev, evs[i], lens[i]);
        agg_event_t sc;
        assert_int_equal(agg_wire_scan(ev, ev_len, &sc, NULL), 0);
    }
    assert_int_equal(agg_pack_next(buf, n, &off, &ev, &ev_len), 0);
    assert_int_equal(off, n);
    /* Empty: at its end at once. */
    off = 0;
    assert_int_equal(agg_pack_next(buf, 0, &off, &ev, &ev_len), 0);
    /* Cut anywhere inside an entry: the good entries before it come out, then an error. */
    for (size_t cut = 1; cut < n; cut++) {
        off = 0;
        int rc;
        size_t got = 0;
        while ((rc = agg_pack_next(buf, cut, &off, &ev, &ev_len)) == 1) {
            assert_true(off <= cut);
            got++;
        }
        size_t b1 = 1 + (lens[0] > 127 ? 2 : 1) + lens[0];
        size_t b2 = b1 + 1 + (lens[1] > 127 ? 2 : 1) + lens[1];
        bool boundary = cut == b1 || cut == b2;
        assert_int_equal(rc, boundary ? 0 : TC_EPARSE);
        assert_true(got <= 2);
    }
    /* Field 1 of another wire type, a length past the end, a varint cut short, a length of
     * ten bytes, field 0, another field cut short, a group. */
    static const struct {
        uint8_t bytes[12];
        size_t len;
    } bad[] = {
        {{0x12, 0x05, 0x00}, 3},
        {{0x0b, 0x0c}, 2},
        {{0x08, 0x01}, 2},
        {{0x0a, 0x05, 0x00}, 3},
        {{0x0a, 0x80}, 2},
        {{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 11},
        {{0x00}, 1},
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        off = 0;
        assert_int_equal(agg_pack_next(bad[i].bytes, bad[i].len, &off, &ev, &ev_len), TC_EPARSE);
    }
    /* Fields other than 1 (a later version's) are skipped. */
    uint8_t mixed[2048];
    size_t k = 0;
    mixed[k++] = 0x10; /* field 2, varint */
    mixed[k++] = 0x96;
    mixed[k++] = 0x01;
    k += pack_of(mixed + k, evs, lens, 1);
    mixed[k++] = 0x1a; /* field 3, length-delimited */
    mixed[k++] = 0x02;
    mixed[k++] = 0xff;
    mixed[k++] = 0xff;
    k += pack_of(mixed + k, evs + 1, lens + 1, 1);
    mixed[k++] = 0x25; /* field 4, 32-bit */
    memset(mixed + k, 0, 4);
    k += 4;
    off = 0;
    assert_int_equal(agg_pack_next(mixed, k, &off, &ev, &ev_len), 1);
    assert_int_equal(ev_len, lens[0]);
    assert_int_equal(agg_pack_next(mixed, k, &off, &ev, &ev_len), 1);
    assert_memory_equal(ev, evs[1], lens[1]);
    assert_int_equal(agg_pack_next(mixed, k, &off, &ev, &ev_len), 0);
    assert_int_equal(off, k);
    /* An entry of zero bytes is framed well; the event inside is what gets refused. */
    uint8_t empty[2] = {0x0a, 0x00};
    off = 0;
    assert_int_equal(agg_pack_next(empty, 2, &off, &ev, &ev_len), 1);
    assert_int_equal(ev_len, 0);
    agg_event_t sc;
    assert_int_not_equal(agg_wire_scan(ev, ev_len, &sc, NULL), 0);
    /* Above the largest record: refused without reading. */
    off = 0;
    assert_int_equal(agg_pack_next(buf, (size_t)AGG_MAX_RECORD_BYTES + 1, &off, &ev, &ev_len),
                     TC_EPARSE);
    for (int i = 0; i < 3; i++) {
        free(evs[i]);
    }
}

static void test_format_of(void **state)
{
    (void)state;
    static const struct {
        bool present;
        const char *value;
        agg_format_t want;
    } cases[] = {
        {false, NULL, AGG_FORMAT_EVENT},
        {true, "tocsin.v1.EventPack", AGG_FORMAT_PACK},
        {true, "tocsin.v1.EventPac", AGG_FORMAT_UNKNOWN},
        {true, "tocsin.v1.EventPackX", AGG_FORMAT_UNKNOWN},
        {true, "tocsin.v2.EventPack", AGG_FORMAT_UNKNOWN},
        {true, "", AGG_FORMAT_UNKNOWN},
        {true, NULL, AGG_FORMAT_UNKNOWN},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t len = cases[i].value ? strlen(cases[i].value) : 0;
        assert_int_equal(agg_format_of(cases[i].present, cases[i].value, len), cases[i].want);
    }
}

static void test_sample_weight(void **state)
{
    (void)state;
    uint8_t id[16];
    memset(id, 7, sizeof(id));
    static const struct {
        float rate;
        uint64_t want;
    } exact[] = {
        {0.0f, 1}, {1.0f, 1}, {0.5f, 2}, {0.1f, 10}, {0.01f, 100}, {0.25f, 4}, {0.001f, 1000},
        {1e-6f, 1000000},
    };
    for (size_t i = 0; i < N_ELEMS(exact); i++) {
        assert_int_equal(agg_sample_weight((double)exact[i].rate, id), exact[i].want);
    }
    /* 0.3: weight 3 or 4 by event id, 1/0.3 on average, the same for the same id. */
    uint64_t sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        memcpy(id, &i, sizeof(i));
        uint64_t w = agg_sample_weight((double)0.3f, id);
        assert_true(w == 3 || w == 4);
        assert_int_equal(agg_sample_weight((double)0.3f, id), w);
        sum += w;
    }
    double mean = (double)sum / n;
    assert_true(fabs(mean - 1.0 / 0.3) < 0.05);
    /* The scanner reads the rate (field 14, a float) and sets the weight; rates outside
     * [AGG_MIN_SAMPLE_RATE, 1] are refused by name. */
    event_t e;
    event_init(&e, AGG_BODY_REQUEST);
    e.ev.sample_rate = 0.1f;
    size_t len;
    uint8_t *buf = pack(&e, &len);
    agg_event_t ev;
    assert_int_equal(agg_wire_scan(buf, len, &ev, NULL), 0);
    assert_int_equal(ev.weight, 10);
    assert_true(fabs(ev.sample_rate - 0.1) < 1e-6);
    free(buf);
    event_init(&e, AGG_BODY_REQUEST);
    buf = pack(&e, &len);
    assert_int_equal(agg_wire_scan(buf, len, &ev, NULL), 0);
    assert_int_equal(ev.weight, 1);
    assert_true(ev.sample_rate == 0);
    free(buf);
    static const float refused[] = {-0.5f, 1.5f, 1e-7f, NAN, INFINITY};
    for (size_t i = 0; i < N_ELEMS(refused); i++) {
        event_init(&e, AGG_BODY_REQUEST);
        e.ev.sample_rate = refused[i];
        buf = pack(&e, &len);
        const char *why = NULL;
        assert_int_equal(agg_wire_scan(buf, len, &ev, &why), TC_EINVAL);
        assert_string_equal(why, "sample_rate");
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies),   cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_refusals), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_scan_id),  cmocka_unit_test(test_pack_walk),
        cmocka_unit_test(test_format_of), cmocka_unit_test(test_sample_weight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
