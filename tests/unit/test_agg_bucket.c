/*
 * Unit tests for aggregator/agg_bucket: bucket alignment (negative times too), decoding and
 * validating Kafka record values, the sample of each body type, applying and merging
 * buckets, and the stored encoding: round trip and refusal of corrupt bytes.
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

#include "agg_bucket.h"
#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define T0 1795000000000000LL /* an aligned event time, in us */

/* An event of each body type, built from stack structs and changed by each case. */
typedef struct {
    Tocsin__V1__Event ev;
    uint8_t id[16];
    Tocsin__V1__Request req;
    Tocsin__V1__ErrorEvent err;
    Tocsin__V1__Metric met;
    Tocsin__V1__LogRecord log;
} event_t;

static void event_init(event_t *e, int body)
{
    memset(e, 0, sizeof(*e));
    tocsin__v1__event__init(&e->ev);
    memset(e->id, 0x5a, sizeof(e->id));
    e->ev.event_id.data = e->id;
    e->ev.event_id.len = 16;
    e->ev.time_us = T0 + 1234;
    e->ev.service = "checkout";
    e->ev.environment = "production";
    tocsin__v1__request__init(&e->req);
    e->req.route = "/users/:id";
    e->req.method = "GET";
    e->req.status = 200;
    e->req.duration_us = 12000;
    tocsin__v1__error_event__init(&e->err);
    e->err.type = "KeyError";
    e->err.message = "boom";
    tocsin__v1__metric__init(&e->met);
    e->met.name = "queue.depth";
    e->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
    e->met.value = 7;
    tocsin__v1__log_record__init(&e->log);
    e->log.message = "hello";
    switch (body) {
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
        e->ev.request = &e->req;
        break;
    case TOCSIN__V1__EVENT__BODY_ERROR:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
        e->ev.error = &e->err;
        break;
    case TOCSIN__V1__EVENT__BODY_METRIC:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        e->ev.metric = &e->met;
        break;
    case TOCSIN__V1__EVENT__BODY_LOG:
        e->ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
        e->ev.log = &e->log;
        break;
    default:
        break;
    }
}

static uint8_t *event_pack(const event_t *e, size_t *len)
{
    *len = tocsin__v1__event__get_packed_size(&e->ev);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    tocsin__v1__event__pack(&e->ev, buf);
    return buf;
}

/* Encodes, decodes and samples `e`; returns the decode result. */
static int roundtrip(const event_t *e, Tocsin__V1__Event **out, agg_sample_t *s,
                     const char **reason)
{
    size_t len = 0;
    uint8_t *buf = event_pack(e, &len);
    int rc = agg_event_decode(buf, len, out, reason);
    free(buf);
    if (rc == 0) {
        assert_int_equal(agg_event_sample(*out, s), 0);
    }
    return rc;
}

/* Decodes `e` and applies it to `b`. */
static void apply_event(agg_bucket_t *b, const event_t *e, bool late)
{
    Tocsin__V1__Event *ev = NULL;
    agg_sample_t s;
    assert_int_equal(roundtrip(e, &ev, &s, NULL), 0);
    assert_int_equal(agg_bucket_apply(b, &s, late), 0);
    tocsin__v1__event__free_unpacked(ev, NULL);
}

/* ---- alignment ----------------------------------------------------------------------- */

static void test_align(void **state)
{
    static const struct {
        int64_t time_us;
        int64_t start_s;
    } cases[] = {
        {0, 0},
        {1, 0},
        {9999999, 0},
        {10000000, 10},
        {10000001, 10},
        {T0, 1795000000},
        {T0 + 9999999, 1795000000},
        {-1, -10},
        {-9999999, -10},
        {-10000000, -10},
        {-10000001, -20},
        {-25000000, -30},
        {INT64_MAX, INT64_MAX / 10000000 * 10},
        {INT64_MIN, (INT64_MIN / 10000000 - 1) * 10},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got = agg_bucket_align(cases[i].time_us);
        if (got != cases[i].start_s) {
            fail_msg("align(%lld) = %lld, want %lld", (long long)cases[i].time_us, (long long)got,
                     (long long)cases[i].start_s);
        }
        assert_true(got % 10 == 0);
        /* The bucket holds the time: start <= t < start + 10 s (in seconds, no overflow). */
        assert_true((double)got * 1e6 <= (double)cases[i].time_us);
    }
}

/* ---- decode and sample ---------------------------------------------------------------- */

static void test_sample_request(void **state)
{
    static const struct {
        uint32_t status;
        bool failed;
        bool error;
    } cases[] = {
        {200, false, false}, {404, false, false}, {499, false, false}, {500, false, true},
        {503, false, true},  {200, true, true},   {0, false, false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        event_t e;
        event_init(&e, TOCSIN__V1__EVENT__BODY_REQUEST);
        e.req.status = cases[i].status;
        e.req.failed = cases[i].failed;
        Tocsin__V1__Event *ev = NULL;
        agg_sample_t s;
        assert_int_equal(roundtrip(&e, &ev, &s, NULL), 0);
        assert_int_equal(s.kind, AGG_KIND_REQUESTS);
        assert_string_equal(s.service, "checkout");
        assert_string_equal(s.environment, "production");
        assert_string_equal(s.name, "/users/:id");
        assert_int_equal(s.start_s, 1795000000);
        assert_true(s.has_value);
        assert_true(s.value == 12000.0);
        assert_int_equal(s.error, cases[i].error);
        tocsin__v1__event__free_unpacked(ev, NULL);
    }
}

static void test_sample_other_bodies(void **state)
{
    event_t e;
    Tocsin__V1__Event *ev = NULL;
    agg_sample_t s;

    event_init(&e, TOCSIN__V1__EVENT__BODY_ERROR);
    e.ev.environment = ""; /* empty means "default" */
    assert_int_equal(roundtrip(&e, &ev, &s, NULL), 0);
    assert_int_equal(s.kind, AGG_KIND_ERRORS);
    assert_string_equal(s.name, "$errors");
    assert_string_equal(s.environment, "default");
    assert_true(s.error);
    assert_false(s.has_value);
    tocsin__v1__event__free_unpacked(ev, NULL);

    static const struct {
        Tocsin__V1__MetricKind mk;
        agg_kind_t kind;
    } metrics[] = {
        {TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER, AGG_KIND_COUNTER},
        {TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE, AGG_KIND_GAUGE},
        {TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING, AGG_KIND_TIMING},
    };
    for (size_t i = 0; i < N_ELEMS(metrics); i++) {
        event_init(&e, TOCSIN__V1__EVENT__BODY_METRIC);
        e.met.kind = metrics[i].mk;
        assert_int_equal(roundtrip(&e, &ev, &s, NULL), 0);
        assert_int_equal(s.kind, metrics[i].kind);
        assert_string_equal(s.name, "queue.depth");
        assert_true(s.value == 7.0);
        assert_false(s.error);
        tocsin__v1__event__free_unpacked(ev, NULL);
    }

    event_init(&e, TOCSIN__V1__EVENT__BODY_LOG);
    assert_int_equal(roundtrip(&e, &ev, &s, NULL), 0);
    assert_int_equal(s.kind, AGG_KIND_NONE);
    tocsin__v1__event__free_unpacked(ev, NULL);
}

typedef void (*mutate_fn)(event_t *e);

static void m_no_id(event_t *e)
{
    e->ev.event_id.len = 0;
}
static void m_short_id(event_t *e)
{
    e->ev.event_id.len = 15;
}
static void m_no_service(event_t *e)
{
    e->ev.service = "";
}
static void m_bad_utf8_service(event_t *e)
{
    e->ev.service = "caf\xc3";
}
static void m_long_service(event_t *e)
{
    static char s[AGG_MAX_SERVICE + 2];
    memset(s, 's', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    e->ev.service = s;
}
static void m_bad_utf8_env(event_t *e)
{
    e->ev.environment = "\xff";
}
static void m_no_body(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY__NOT_SET;
}
static void m_empty_route(event_t *e)
{
    e->req.route = "";
}
static void m_dollar_route(event_t *e)
{
    e->req.route = "$errors";
}
static void m_bad_utf8_route(event_t *e)
{
    e->req.route = "/\xed\xa0\x80";
}
static void m_metric_to_bad_kind(event_t *e)
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
static void m_metric_inf(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.value = INFINITY;
}
static void m_timing_negative(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING;
    e->met.value = -1;
}
static void m_metric_no_name(event_t *e)
{
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    e->ev.metric = &e->met;
    e->met.name = "";
}

static void test_decode_refusals(void **state)
{
    static const struct {
        mutate_fn fn;
        int rc;
        const char *reason;
    } cases[] = {
        {m_no_id, TC_EINVAL, "event_id"},
        {m_short_id, TC_EINVAL, "event_id"},
        {m_no_service, TC_EINVAL, "service"},
        {m_bad_utf8_service, TC_EUTF8, "service"},
        {m_long_service, TC_EUTF8, "service"},
        {m_bad_utf8_env, TC_EUTF8, "environment"},
        {m_no_body, TC_EINVAL, "body"},
        {m_empty_route, TC_EINVAL, "request.route"},
        {m_dollar_route, TC_EINVAL, "request.route"},
        {m_bad_utf8_route, TC_EINVAL, "request.route"},
        {m_metric_to_bad_kind, TC_EINVAL, "metric.kind"},
        {m_metric_nan, TC_EINVAL, "metric.value"},
        {m_metric_inf, TC_EINVAL, "metric.value"},
        {m_timing_negative, TC_EINVAL, "metric.value"},
        {m_metric_no_name, TC_EINVAL, "metric.name"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        event_t e;
        event_init(&e, TOCSIN__V1__EVENT__BODY_REQUEST);
        cases[i].fn(&e);
        Tocsin__V1__Event *ev = (Tocsin__V1__Event *)&e; /* must be reset to NULL */
        agg_sample_t s;
        const char *reason = NULL;
        int rc = roundtrip(&e, &ev, &s, &reason);
        if (rc != cases[i].rc || !reason || strcmp(reason, cases[i].reason) != 0) {
            fail_msg("case %zu: rc %d reason %s, want %d %s", i, rc, reason ? reason : "-",
                     cases[i].rc, cases[i].reason);
        }
        assert_null(ev);
    }
}

static void test_decode_garbage(void **state)
{
    Tocsin__V1__Event *ev = NULL;
    const char *reason = NULL;
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    assert_int_equal(agg_event_decode(junk, sizeof(junk), &ev, &reason), TC_EPARSE);
    assert_string_equal(reason, "protobuf");
    assert_null(ev);
    /* Too big is refused before parsing. */
    assert_int_equal(agg_event_decode(junk, AGG_MAX_EVENT_BYTES + 1, &ev, &reason), TC_ETOOBIG);
    assert_string_equal(reason, "size");
    /* Every truncation of a valid event either parses into a valid event or is refused. */
    event_t e;
    event_init(&e, TOCSIN__V1__EVENT__BODY_REQUEST);
    size_t len = 0;
    uint8_t *buf = event_pack(&e, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        if (agg_event_decode(cut, n, &ev, NULL) == 0) {
            agg_sample_t s;
            assert_int_equal(agg_event_sample(ev, &s), 0);
            tocsin__v1__event__free_unpacked(ev, NULL);
        }
        free(cut);
    }
    free(buf);
}

/* ---- apply ------------------------------------------------------------------------------- */

static void test_apply_requests(void **state)
{
    agg_bucket_t b;
    agg_bucket_init(&b);
    static const struct {
        uint32_t status;
        uint64_t duration_us;
    } reqs[] = {{200, 1000}, {500, 3000}, {200, 2000}, {502, 500}};
    for (size_t i = 0; i < N_ELEMS(reqs); i++) {
        event_t e;
        event_init(&e, TOCSIN__V1__EVENT__BODY_REQUEST);
        e.req.status = reqs[i].status;
        e.req.duration_us = reqs[i].duration_us;
        apply_event(&b, &e, i == 3);
    }
    assert_int_equal(b.kind, AGG_KIND_REQUESTS);
    assert_string_equal(b.service, "checkout");
    assert_string_equal(b.name, "/users/:id");
    assert_int_equal(b.start_s, 1795000000);
    assert_int_equal(b.count, 4);
    assert_int_equal(b.errors, 2);
    assert_int_equal(b.late, 1);
    assert_int_equal(b.sketch.count, 4);
    assert_true(b.sum == 6500.0);
    assert_true(b.min == 500.0);
    assert_true(b.max == 3000.0);

    /* A sample of another series or bucket is refused and changes nothing. */
    event_t other;
    event_init(&other, TOCSIN__V1__EVENT__BODY_REQUEST);
    other.ev.time_us = T0 + 10000000;
    Tocsin__V1__Event *ev = NULL;
    agg_sample_t s;
    assert_int_equal(roundtrip(&other, &ev, &s, NULL), 0);
    assert_int_equal(agg_bucket_apply(&b, &s, false), TC_EINVAL);
    tocsin__v1__event__free_unpacked(ev, NULL);
    event_init(&other, TOCSIN__V1__EVENT__BODY_REQUEST);
    other.req.route = "/other";
    assert_int_equal(roundtrip(&other, &ev, &s, NULL), 0);
    assert_int_equal(agg_bucket_apply(&b, &s, false), TC_EINVAL);
    tocsin__v1__event__free_unpacked(ev, NULL);
    assert_int_equal(b.count, 4);
    agg_bucket_fini(&b);
    agg_bucket_fini(&b); /* safe twice */
}

static void test_apply_errors_and_metrics(void **state)
{
    agg_bucket_t b;
    event_t e;

    agg_bucket_init(&b);
    for (int i = 0; i < 3; i++) {
        event_init(&e, TOCSIN__V1__EVENT__BODY_ERROR);
        apply_event(&b, &e, false);
    }
    assert_int_equal(b.kind, AGG_KIND_ERRORS);
    assert_string_equal(b.name, "$errors");
    assert_int_equal(b.count, 3);
    assert_int_equal(b.errors, 3);
    assert_int_equal(b.sketch.count, 0);
    agg_bucket_fini(&b);

    agg_bucket_init(&b);
    static const double incs[] = {1, 2.5, 10};
    for (size_t i = 0; i < N_ELEMS(incs); i++) {
        event_init(&e, TOCSIN__V1__EVENT__BODY_METRIC);
        e.met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER;
        e.met.value = incs[i];
        apply_event(&b, &e, false);
    }
    assert_int_equal(b.kind, AGG_KIND_COUNTER);
    assert_int_equal(b.count, 3);
    assert_true(b.sum == 13.5);
    assert_int_equal(b.errors, 0);
    agg_bucket_fini(&b);

    /* Gauge: last by event time, whatever the arrival order; min and max of all. */
    agg_bucket_init(&b);
    static const struct {
        int64_t dt_us;
        double v;
    } levels[] = {{5000, 3}, {9000, 8}, {1000, -2}, {9000, 6}, {2000, 11}};
    for (size_t i = 0; i < N_ELEMS(levels); i++) {
        event_init(&e, TOCSIN__V1__EVENT__BODY_METRIC);
        e.ev.time_us = T0 + levels[i].dt_us;
        e.met.value = levels[i].v;
        apply_event(&b, &e, false);
    }
    assert_int_equal(b.kind, AGG_KIND_GAUGE);
    assert_int_equal(b.count, 5);
    assert_true(b.last == 6); /* time 9000, the later of the two arrivals at 9000 */
    assert_int_equal(b.last_time_us, T0 + 9000);
    assert_true(b.min == -2);
    assert_true(b.max == 11);
    agg_bucket_fini(&b);

    agg_bucket_init(&b);
    for (int i = 1; i <= 100; i++) {
        event_init(&e, TOCSIN__V1__EVENT__BODY_METRIC);
        e.met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING;
        e.met.value = i;
        apply_event(&b, &e, false);
    }
    assert_int_equal(b.kind, AGG_KIND_TIMING);
    assert_int_equal(b.sketch.count, 100);
    assert_true(b.sum == 5050);
    double p50 = tc_sketch_quantile(&b.sketch, 0.5);
    assert_true(fabs(p50 - 50) / 50 <= tc_sketch_relative_accuracy(TC_SKETCH_SCHEMA) + 1e-9);
    agg_bucket_fini(&b);
}

static void test_apply_log_refused(void **state)
{
    event_t e;
    event_init(&e, TOCSIN__V1__EVENT__BODY_LOG);
    Tocsin__V1__Event *ev = NULL;
    agg_sample_t s;
    assert_int_equal(roundtrip(&e, &ev, &s, NULL), 0);
    agg_bucket_t b;
    agg_bucket_init(&b);
    assert_int_equal(agg_bucket_apply(&b, &s, false), TC_EINVAL);
    assert_int_equal(b.count, 0);
    agg_bucket_fini(&b);
    tocsin__v1__event__free_unpacked(ev, NULL);
}

/* ---- merge -------------------------------------------------------------------------------- */

static void test_merge(void **state)
{
    agg_bucket_t a, b, all;
    agg_bucket_init(&a);
    agg_bucket_init(&b);
    agg_bucket_init(&all);
    for (int i = 0; i < 200; i++) {
        event_t e;
        event_init(&e, TOCSIN__V1__EVENT__BODY_REQUEST);
        e.req.duration_us = (uint64_t)(100 + i * 37);
        e.req.status = i % 10 == 0 ? 500 : 200;
        apply_event(i % 3 ? &a : &b, &e, i % 7 == 0);
        apply_event(&all, &e, i % 7 == 0);
    }
    agg_bucket_t m;
    agg_bucket_init(&m);
    assert_int_equal(agg_bucket_merge(&m, &a), 0);
    assert_int_equal(agg_bucket_merge(&m, &b), 0);
    assert_int_equal(m.kind, AGG_KIND_REQUESTS);
    assert_int_equal(m.count, all.count);
    assert_int_equal(m.errors, all.errors);
    assert_int_equal(m.late, all.late);
    assert_true(m.sum == all.sum);
    assert_true(m.min == all.min);
    assert_true(m.max == all.max);
    /* Merging sketches is exact: every quantile equals the one of the union. */
    for (double q = 0; q <= 1.0; q += 0.01) {
        assert_true(tc_sketch_quantile(&m.sketch, q) == tc_sketch_quantile(&all.sketch, q));
    }
    /* An empty source changes nothing; a different kind is refused. */
    agg_bucket_t empty;
    agg_bucket_init(&empty);
    assert_int_equal(agg_bucket_merge(&m, &empty), 0);
    assert_int_equal(m.count, all.count);
    agg_bucket_t g;
    agg_bucket_init(&g);
    event_t e;
    event_init(&e, TOCSIN__V1__EVENT__BODY_METRIC);
    apply_event(&g, &e, false);
    assert_int_equal(agg_bucket_merge(&m, &g), TC_EINVAL);
    assert_int_equal(m.count, all.count);

    /* Gauges: the level with the later event time wins, in either order. */
    agg_bucket_t g2, x, y;
    agg_bucket_init(&g2);
    event_init(&e, TOCSIN__V1__EVENT__BODY_METRIC);
    e.ev.time_us = T0 + 5;
    e.met.value = 42;
    apply_event(&g2, &e, false);
    agg_bucket_init(&x);
    agg_bucket_init(&y);
    assert_int_equal(agg_bucket_merge(&x, &g), 0);
    assert_int_equal(agg_bucket_merge(&x, &g2), 0);
    assert_int_equal(agg_bucket_merge(&y, &g2), 0);
    assert_int_equal(agg_bucket_merge(&y, &g), 0);
    assert_true(x.last == 7 && y.last == 7); /* g's time T0+1234 is later than T0+5 */
    assert_true(x.min == 7 && x.max == 42 && y.min == 7 && y.max == 42);

    agg_bucket_t *all_b[] = {&a, &b, &all, &m, &empty, &g, &g2, &x, &y};
    for (size_t i = 0; i < N_ELEMS(all_b); i++) {
        agg_bucket_fini(all_b[i]);
    }
}

/* ---- stored encoding -------------------------------------------------------------------- */

static void fill_requests(agg_bucket_t *b, int n)
{
    for (int i = 0; i < n; i++) {
        event_t e;
        event_init(&e, TOCSIN__V1__EVENT__BODY_REQUEST);
        e.req.duration_us = (uint64_t)(50 + i * i);
        e.req.status = i % 4 == 0 ? 500 : 200;
        apply_event(b, &e, i == 1);
    }
}

static void assert_same_bucket(const agg_bucket_t *a, const agg_bucket_t *b)
{
    assert_string_equal(a->service, b->service);
    assert_string_equal(a->environment, b->environment);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->start_s, b->start_s);
    assert_int_equal(a->width_s, b->width_s);
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->errors, b->errors);
    assert_int_equal(a->late, b->late);
    assert_true(a->sum == b->sum && a->min == b->min && a->max == b->max);
    assert_true(a->last == b->last && a->last_time_us == b->last_time_us);
    assert_int_equal(a->sketch.count, b->sketch.count);
    assert_int_equal(a->sketch.zero_count, b->sketch.zero_count);
    for (double q = 0; q <= 1.0; q += 0.05) {
        double x = tc_sketch_quantile(&a->sketch, q), y = tc_sketch_quantile(&b->sketch, q);
        assert_true(x == y || (isnan(x) && isnan(y)));
    }
}

static void test_encode_roundtrip(void **state)
{
    agg_bucket_t b;
    agg_bucket_init(&b);
    fill_requests(&b, 300);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(agg_bucket_encode(&b, 77, &buf, &len), 0);
    assert_int_equal(tc_be64_get(buf), 77);
    agg_bucket_t d;
    uint64_t rev = 0;
    assert_int_equal(agg_bucket_decode(buf, len, &d, &rev), 0);
    assert_int_equal(rev, 77);
    assert_same_bucket(&b, &d);
    agg_bucket_fini(&d);
    free(buf);

    /* Each kind survives the trip. */
    static const int bodies[] = {TOCSIN__V1__EVENT__BODY_ERROR, TOCSIN__V1__EVENT__BODY_METRIC};
    for (size_t i = 0; i < N_ELEMS(bodies); i++) {
        agg_bucket_t k;
        agg_bucket_init(&k);
        event_t e;
        event_init(&e, bodies[i]);
        apply_event(&k, &e, false);
        assert_int_equal(agg_bucket_encode(&k, 1, &buf, &len), 0);
        assert_int_equal(agg_bucket_decode(buf, len, &d, &rev), 0);
        assert_same_bucket(&k, &d);
        agg_bucket_fini(&d);
        agg_bucket_fini(&k);
        free(buf);
    }

    /* The rollup carries the same bucket and the revision; the key is service\0env\0name. */
    assert_int_equal(agg_rollup_encode(&b, 9, "agg-1", &buf, &len), 0);
    Tocsin__V1__Rollup *r = tocsin__v1__rollup__unpack(NULL, len, buf);
    assert_non_null(r);
    assert_int_equal(r->revision, 9);
    assert_string_equal(r->producer, "agg-1");
    assert_int_equal(r->body_case, TOCSIN__V1__ROLLUP__BODY_BUCKET);
    assert_int_equal(r->bucket->count, 300);
    assert_int_equal(r->bucket->kind, TOCSIN__V1__SERIES_KIND__SERIES_KIND_REQUESTS);
    assert_int_equal(r->bucket->sketch->schema, TC_SKETCH_SCHEMA);
    tocsin__v1__rollup__free_unpacked(r, NULL);
    free(buf);
    char key[64];
    size_t klen = agg_rollup_key(&b, key, sizeof(key));
    static const char want[] = "checkout\0production\0/users/:id";
    assert_int_equal(klen, sizeof(want) - 1);
    assert_memory_equal(key, want, klen);
    assert_int_equal(agg_rollup_key(&b, key, 10), 0);
    agg_bucket_fini(&b);
}

/* Encodes `pb` behind a revision, as the store would hold it. */
static uint8_t *stored(const Tocsin__V1__Bucket *pb, size_t *len)
{
    size_t n = tocsin__v1__bucket__get_packed_size(pb);
    uint8_t *buf = malloc(8 + n);
    assert_non_null(buf);
    tc_be64_put(buf, 5);
    tocsin__v1__bucket__pack(pb, buf + 8);
    *len = 8 + n;
    return buf;
}

static void test_decode_corrupt(void **state)
{
    agg_bucket_t b, d;
    uint64_t rev = 0;
    agg_bucket_init(&b);
    fill_requests(&b, 50);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(agg_bucket_encode(&b, 3, &buf, &len), 0);

    /* Truncations and single-bit flips: refused or decoded into a valid bucket; never a
     * crash (ASan/UBSan watch this in the sanitizer build). */
    for (size_t n = 0; n < len; n++) {
        int rc = agg_bucket_decode(buf, n, &d, &rev);
        assert_true(rc != 0 || d.count > 0);
        agg_bucket_fini(&d);
    }
    for (size_t i = 8; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            if (agg_bucket_decode(buf, len, &d, &rev) == 0) {
                assert_true(d.errors <= d.count);
                assert_true(d.start_s % 10 == 0);
            }
            agg_bucket_fini(&d);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(agg_bucket_decode(buf, AGG_MAX_STORED_BYTES + 1, &d, &rev), TC_ETOOBIG);
    agg_bucket_fini(&d);
    free(buf);

    /* Values that parse but break an invariant. */
    uint64_t counts[4] = {1, 2, 3, 4};
    for (int c = 0; c < 12; c++) {
        Tocsin__V1__Bucket pb = TOCSIN__V1__BUCKET__INIT;
        Tocsin__V1__Sketch sk = TOCSIN__V1__SKETCH__INIT;
        pb.service = "checkout";
        pb.environment = "production";
        pb.name = "/x";
        pb.kind = TOCSIN__V1__SERIES_KIND__SERIES_KIND_REQUESTS;
        pb.start_s = 1795000000;
        pb.width_s = 10;
        pb.count = 10;
        pb.errors = 1;
        sk.schema = TC_SKETCH_SCHEMA;
        sk.offset = 100;
        sk.n_counts = 4;
        sk.counts = counts;
        pb.sketch = &sk;
        int want = TC_EINVAL;
        switch (c) {
        case 0:
            want = 0; /* the valid baseline */
            break;
        case 1:
            pb.errors = 11;
            break;
        case 2:
            pb.late = 11;
            break;
        case 3:
            pb.start_s = 1795000005;
            break;
        case 4:
            pb.width_s = 60;
            break;
        case 5:
            pb.kind = (Tocsin__V1__SeriesKind)9;
            break;
        case 6:
            sk.schema = 5;
            break;
        case 7:
            pb.count = 11; /* the sketch holds 10 */
            break;
        case 8:
            pb.sum = NAN;
            break;
        case 9:
            sk.offset = INT32_MAX - 1;
            break;
        case 10:
            pb.service = "";
            want = TC_EUTF8;
            break;
        case 11:
            pb.kind = TOCSIN__V1__SERIES_KIND__SERIES_KIND_COUNTER; /* sketch must be empty */
            break;
        }
        buf = stored(&pb, &len);
        int rc = agg_bucket_decode(buf, len, &d, &rev);
        if (rc != want) {
            fail_msg("case %d: got %d want %d", c, rc, want);
        }
        agg_bucket_fini(&d);
        free(buf);
    }
    agg_bucket_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_align),
        cmocka_unit_test(test_sample_request),
        cmocka_unit_test(test_sample_other_bodies),
        cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_decode_garbage),
        cmocka_unit_test(test_apply_requests),
        cmocka_unit_test(test_apply_errors_and_metrics),
        cmocka_unit_test(test_apply_log_refused),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_decode_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
