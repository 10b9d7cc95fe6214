#include "col_validate.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

static const char *const reason_names[COL_REASON_COUNT] = {
    [COL_REASON_NONE] = "none",
    [COL_REASON_TOO_BIG] = "too_big",
    [COL_REASON_MALFORMED] = "malformed",
    [COL_REASON_EMPTY] = "empty",
    [COL_REASON_TOO_MANY_EVENTS] = "too_many_events",
    [COL_REASON_MISSING_SERVICE] = "missing_service",
    [COL_REASON_BAD_EVENT_ID] = "bad_event_id",
    [COL_REASON_NO_BODY] = "no_body",
    [COL_REASON_STRING_TOO_LONG] = "string_too_long",
    [COL_REASON_INVALID_UTF8] = "invalid_utf8",
    [COL_REASON_TOO_MANY_TAGS] = "too_many_tags",
    [COL_REASON_TOO_MANY_FRAMES] = "too_many_frames",
    [COL_REASON_TOO_MANY_FIELDS] = "too_many_fields",
    [COL_REASON_BAD_VALUE] = "bad_value",
    [COL_REASON_TOO_MANY_FINGERPRINT_PARTS] = "too_many_fingerprint_parts",
    [COL_REASON_UNAUTHORIZED] = "unauthorized",
};

col_limits_t col_limits_default(void)
{
    col_limits_t l = {
        .max_frame_bytes = 1024 * 1024,
        .max_events = 2000,
        .max_short_string = 256,
        .max_long_string = 16 * 1024,
        .max_tags = 64,
        .max_frames = 128,
        .max_log_fields = 64,
        .max_fingerprint_parts = 16,
    };
    return l;
}

const char *col_reason_name(col_reason_t reason)
{
    if ((int)reason < 0 || reason >= COL_REASON_COUNT) {
        return "unknown";
    }
    return reason_names[reason];
}

static int reject(col_reject_t *rej, col_reason_t reason, int event_index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills the refusal. The message starts with "event N: " when one event is at fault. */
static int reject(col_reject_t *rej, col_reason_t reason, int event_index, const char *fmt, ...)
{
    rej->reason = reason;
    rej->event_index = event_index;
    size_t off = 0;
    if (event_index >= 0) {
        int n = snprintf(rej->message, sizeof(rej->message), "event %d: ", event_index);
        off = n > 0 ? (size_t)n : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rej->message + off, sizeof(rej->message) - off, fmt, ap);
    va_end(ap);
    return TC_EINVAL;
}

/*
 * Reads a base-128 varint. Returns the number of bytes used, or 0 when the input ends
 * inside it or it runs past 10 bytes.
 */
static size_t wire_varint(const uint8_t *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

/* What the walk over a Batch's top level found. */
typedef struct {
    bool framed;       /* the top level is well-formed protobuf framing */
    uint64_t events;   /* field 3 occurrences, counted up to limit + 1 */
    uint64_t sequence; /* field 1, the last one seen (protobuf's last-wins rule) */
} wire_top_t;

/*
 * Walks the top level of an encoded Batch without decoding it: counts field 3 (events)
 * and reads field 1 (sequence). `framed` is false when the framing is broken (the decoder
 * would refuse it too). Counting stops past `stop_at`, so the walk costs nothing more once
 * the limit is exceeded.
 */
static void wire_walk_batch(const uint8_t *p, size_t len, uint64_t stop_at, wire_top_t *top)
{
    size_t i = 0;
    memset(top, 0, sizeof(*top));
    while (i < len) {
        uint64_t key;
        size_t n = wire_varint(p + i, len - i, &key);
        if (n == 0) {
            return;
        }
        i += n;
        uint64_t field = key >> 3;
        unsigned type = (unsigned)(key & 7);
        if (field == 0) {
            return;
        }
        uint64_t skip;
        switch (type) {
        case 0: /* varint */
            n = wire_varint(p + i, len - i, &skip);
            if (n == 0) {
                return;
            }
            if (field == 1) {
                top->sequence = skip;
            }
            i += n;
            continue;
        case 1: /* 64-bit */
            skip = 8;
            break;
        case 5: /* 32-bit */
            skip = 4;
            break;
        case 2: /* length-delimited */
            n = wire_varint(p + i, len - i, &skip);
            if (n == 0) {
                return;
            }
            i += n;
            if (field == 3 && ++top->events > stop_at) {
                top->framed = true;
                return;
            }
            break;
        default: /* groups and reserved wire types: not in our schema */
            return;
        }
        if (skip > len - i) {
            return;
        }
        i += (size_t)skip;
    }
    top->framed = true;
}

/* Checks one string field: UTF-8, then length. `what` names the field in the message. */
static int check_string(col_reject_t *rej, int idx, const char *what, const char *s, size_t max)
{
    if (!s) {
        return 0;
    }
    size_t len = strlen(s);
    if (!tc_utf8_valid(s, len)) {
        return reject(rej, COL_REASON_INVALID_UTF8, idx, "%s: not valid UTF-8", what);
    }
    if (len > max) {
        return reject(rej, COL_REASON_STRING_TOO_LONG, idx, "%s: %zu bytes, at most %zu", what, len,
                      max);
    }
    return 0;
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) {                                                                            \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static int check_error_body(const Tocsin__V1__ErrorEvent *e, const col_limits_t *lim, int idx,
                            col_reject_t *rej)
{
    size_t s = lim->max_short_string;
    CHECK(check_string(rej, idx, "error.type", e->type, s));
    CHECK(check_string(rej, idx, "error.message", e->message, lim->max_long_string));
    CHECK(check_string(rej, idx, "error.grouping_hash", e->grouping_hash, s));
    CHECK(check_string(rej, idx, "error.mechanism", e->mechanism, s));
    if (e->n_frames > lim->max_frames) {
        return reject(rej, COL_REASON_TOO_MANY_FRAMES, idx, "error.frames: %zu frames, at most %u",
                      e->n_frames, lim->max_frames);
    }
    for (size_t f = 0; f < e->n_frames; f++) {
        const Tocsin__V1__Frame *fr = e->frames[f];
        char what[64];
        snprintf(what, sizeof(what), "error.frames[%zu].function", f);
        CHECK(check_string(rej, idx, what, fr->function, s));
        snprintf(what, sizeof(what), "error.frames[%zu].module", f);
        CHECK(check_string(rej, idx, what, fr->module, s));
        snprintf(what, sizeof(what), "error.frames[%zu].file", f);
        CHECK(check_string(rej, idx, what, fr->file, s));
    }
    if (e->n_fingerprint > lim->max_fingerprint_parts) {
        return reject(rej, COL_REASON_TOO_MANY_FINGERPRINT_PARTS, idx,
                      "error.fingerprint: %zu parts, at most %u", e->n_fingerprint,
                      lim->max_fingerprint_parts);
    }
    for (size_t k = 0; k < e->n_fingerprint; k++) {
        char what[64];
        snprintf(what, sizeof(what), "error.fingerprint[%zu]", k);
        CHECK(check_string(rej, idx, what, e->fingerprint[k], s));
    }
    return 0;
}

static int check_metric_body(const Tocsin__V1__Metric *m, const col_limits_t *lim, int idx,
                             col_reject_t *rej)
{
    CHECK(check_string(rej, idx, "metric.name", m->name, lim->max_short_string));
    CHECK(check_string(rej, idx, "metric.unit", m->unit, lim->max_short_string));
    if (!isfinite(m->value)) {
        return reject(rej, COL_REASON_BAD_VALUE, idx, "metric.value: not finite");
    }
    if (m->kind == TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING && m->value < 0) {
        return reject(rej, COL_REASON_BAD_VALUE, idx, "metric.value: %g, a TIMING value is >= 0",
                      m->value);
    }
    return 0;
}

static int check_log_body(const Tocsin__V1__LogRecord *l, const col_limits_t *lim, int idx,
                          col_reject_t *rej)
{
    CHECK(check_string(rej, idx, "log.message", l->message, lim->max_long_string));
    CHECK(check_string(rej, idx, "log.logger", l->logger, lim->max_short_string));
    if (l->n_fields > lim->max_log_fields) {
        return reject(rej, COL_REASON_TOO_MANY_FIELDS, idx, "log.fields: %zu fields, at most %u",
                      l->n_fields, lim->max_log_fields);
    }
    for (size_t k = 0; k < l->n_fields; k++) {
        char what[64];
        snprintf(what, sizeof(what), "log.fields[%zu].key", k);
        CHECK(check_string(rej, idx, what, l->fields[k]->key, lim->max_short_string));
        snprintf(what, sizeof(what), "log.fields[%zu].value", k);
        CHECK(check_string(rej, idx, what, l->fields[k]->value, lim->max_short_string));
    }
    return 0;
}

static int check_event(const Tocsin__V1__Event *ev, const col_limits_t *lim, int idx,
                       col_reject_t *rej)
{
    size_t s = lim->max_short_string;
    if (ev->event_id.len != 16) {
        return reject(rej, COL_REASON_BAD_EVENT_ID, idx, "event_id: %zu bytes, expected 16",
                      ev->event_id.len);
    }
    if (!ev->service || ev->service[0] == '\0') {
        return reject(rej, COL_REASON_MISSING_SERVICE, idx, "service: empty");
    }
    CHECK(check_string(rej, idx, "service", ev->service, s));
    CHECK(check_string(rej, idx, "environment", ev->environment, s));
    CHECK(check_string(rej, idx, "release", ev->release, s));
    CHECK(check_string(rej, idx, "host", ev->host, s));
    CHECK(check_string(rej, idx, "trace_id", ev->trace_id, s));
    CHECK(check_string(rej, idx, "user_id", ev->user_id, s));
    CHECK(check_string(rej, idx, "collector_id", ev->collector_id, s));
    if (ev->n_tags > lim->max_tags) {
        return reject(rej, COL_REASON_TOO_MANY_TAGS, idx, "tags: %zu entries, at most %u",
                      ev->n_tags, lim->max_tags);
    }
    for (size_t k = 0; k < ev->n_tags; k++) {
        char what[48];
        snprintf(what, sizeof(what), "tags[%zu].key", k);
        CHECK(check_string(rej, idx, what, ev->tags[k]->key, s));
        snprintf(what, sizeof(what), "tags[%zu].value", k);
        CHECK(check_string(rej, idx, what, ev->tags[k]->value, s));
    }
    switch (ev->body_case) {
    case TOCSIN__V1__EVENT__BODY_ERROR:
        return ev->error ? check_error_body(ev->error, lim, idx, rej) : 0;
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        if (ev->request) {
            CHECK(check_string(rej, idx, "request.route", ev->request->route, s));
            CHECK(check_string(rej, idx, "request.method", ev->request->method, s));
        }
        return 0;
    case TOCSIN__V1__EVENT__BODY_METRIC:
        return ev->metric ? check_metric_body(ev->metric, lim, idx, rej) : 0;
    case TOCSIN__V1__EVENT__BODY_LOG:
        return ev->log ? check_log_body(ev->log, lim, idx, rej) : 0;
    default:
        return reject(rej, COL_REASON_NO_BODY, idx,
                      "body: none of error, request, metric, log is set");
    }
}

int col_batch_decode(const void *data, size_t len, const col_limits_t *limits, col_arena_t *arena,
                     Tocsin__V1__Batch **out, col_reject_t *rej)
{
    assert(limits && arena && out && rej);
    assert(data || len == 0);
    *out = NULL;
    memset(rej, 0, sizeof(*rej));
    rej->event_index = -1;

    /* The walk only skips over lengths; it reads no more than a frame that ZeroMQ already
     * bounded, and it finds the sequence so that even a refused batch is answered by name. */
    wire_top_t top;
    wire_walk_batch(data, len, limits->max_events, &top);
    rej->sequence = top.sequence;
    if (len > limits->max_frame_bytes) {
        return reject(rej, COL_REASON_TOO_BIG, -1, "batch: %zu bytes, at most %zu", len,
                      limits->max_frame_bytes);
    }
    if (!top.framed) {
        return reject(rej, COL_REASON_MALFORMED, -1, "batch: not a protobuf message");
    }
    if (top.events > limits->max_events) {
        return reject(rej, COL_REASON_TOO_MANY_EVENTS, -1, "events: more than %u",
                      limits->max_events);
    }
    /* protobuf-c wants a non-NULL pointer even for an empty message. */
    static const uint8_t nothing[1];
    Tocsin__V1__Batch *b =
        tocsin__v1__batch__unpack(col_arena_allocator(arena), len, len ? data : nothing);
    if (!b) {
        return reject(rej, COL_REASON_MALFORMED, -1, "batch: not a tocsin.v1.Batch");
    }
    int rc = 0;
    if (b->n_events == 0) {
        return reject(rej, COL_REASON_EMPTY, -1, "events: none");
    }
    if (b->n_events > limits->max_events) {
        /* The wire count above makes this unreachable; kept so the limit never depends on
         * that walk alone. */
        return reject(rej, COL_REASON_TOO_MANY_EVENTS, -1, "events: %zu, at most %u", b->n_events,
                      limits->max_events);
    }
    rc = check_string(rej, -1, "api_key", b->api_key, limits->max_short_string);
    if (rc == 0) {
        rc = check_string(rej, -1, "sdk", b->sdk, limits->max_short_string);
    }
    for (size_t i = 0; rc == 0 && i < b->n_events; i++) {
        rc = check_event(b->events[i], limits, (int)i, rej);
    }
    if (rc != 0) {
        return rc;
    }
    memset(rej, 0, sizeof(*rej));
    rej->event_index = -1;
    *out = b;
    return 0;
}
