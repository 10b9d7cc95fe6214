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
static inline size_t wire_varint(const uint8_t *p, size_t len, uint64_t *out)
{
    /* Most tags and lengths are one byte. */
    if (len > 0 && p[0] < 0x80) {
        *out = p[0];
        return 1;
    }
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

/* True when the `len` bytes at `s` are all ASCII: eight at a time. */
static bool all_ascii(const char *s, size_t len)
{
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        acc |= w;
    }
    for (; i < len; i++) {
        acc |= (uint8_t)s[i];
    }
    return (acc & 0x8080808080808080ULL) == 0;
}

/*
 * Checks one string field: UTF-8, then length. The field is named `field`, or
 * `field[sub]suffix` when sub >= 0 — formatted only when the check fails, since every
 * string of every event comes through here.
 */
static int check_str(col_reject_t *rej, int idx, const char *s, size_t max, const char *field,
                     long sub, const char *suffix)
{
    if (!s) {
        return 0;
    }
    size_t len = strlen(s);
    bool utf8 = all_ascii(s, len) || tc_utf8_valid(s, len);
    if (utf8 && len <= max) {
        return 0;
    }
    char what[96];
    if (sub >= 0) {
        snprintf(what, sizeof(what), "%s[%ld]%s", field, sub, suffix);
    } else {
        snprintf(what, sizeof(what), "%s", field);
    }
    if (!utf8) {
        return reject(rej, COL_REASON_INVALID_UTF8, idx, "%s: not valid UTF-8", what);
    }
    return reject(rej, COL_REASON_STRING_TOO_LONG, idx, "%s: %zu bytes, at most %zu", what, len,
                  max);
}

static int check_string(col_reject_t *rej, int idx, const char *what, const char *s, size_t max)
{
    return check_str(rej, idx, s, max, what, -1, "");
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
        CHECK(check_str(rej, idx, fr->function, s, "error.frames", (long)f, ".function"));
        CHECK(check_str(rej, idx, fr->module, s, "error.frames", (long)f, ".module"));
        CHECK(check_str(rej, idx, fr->file, s, "error.frames", (long)f, ".file"));
    }
    if (e->n_fingerprint > lim->max_fingerprint_parts) {
        return reject(rej, COL_REASON_TOO_MANY_FINGERPRINT_PARTS, idx,
                      "error.fingerprint: %zu parts, at most %u", e->n_fingerprint,
                      lim->max_fingerprint_parts);
    }
    for (size_t k = 0; k < e->n_fingerprint; k++) {
        CHECK(check_str(rej, idx, e->fingerprint[k], s, "error.fingerprint", (long)k, ""));
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
        size_t m = lim->max_short_string;
        CHECK(check_str(rej, idx, l->fields[k]->key, m, "log.fields", (long)k, ".key"));
        CHECK(check_str(rej, idx, l->fields[k]->value, m, "log.fields", (long)k, ".value"));
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
    if (!(ev->sample_rate >= 0.0f && ev->sample_rate <= 1.0f)) {
        return reject(rej, COL_REASON_BAD_VALUE, idx, "sample_rate: %g, expected 0 to 1",
                      (double)ev->sample_rate);
    }
    if (ev->n_tags > lim->max_tags) {
        return reject(rej, COL_REASON_TOO_MANY_TAGS, idx, "tags: %zu entries, at most %u",
                      ev->n_tags, lim->max_tags);
    }
    for (size_t k = 0; k < ev->n_tags; k++) {
        CHECK(check_str(rej, idx, ev->tags[k]->key, s, "tags", (long)k, ".key"));
        CHECK(check_str(rej, idx, ev->tags[k]->value, s, "tags", (long)k, ".value"));
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

/* ---- the wire walk ---- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t off;
} rd_t;

typedef struct {
    uint32_t field;
    int wt;
    uint64_t v;          /* varint value, or the 8 bytes of a fixed64 (little-endian) */
    const uint8_t *data; /* WT_LEN: the bytes */
    size_t len;
} fld_t;

/*
 * Reads the next field. Returns 1 with *f filled, 0 at the end, or -1 when the framing is
 * broken: a varint that does not end, a tag over 5 bytes or with field number 0 or above
 * 2^29-1, a group or reserved wire type, a length past the end. protobuf-c refuses all of
 * those too.
 */
static int next_field(rd_t *r, fld_t *f)
{
    if (r->off == r->len) {
        return 0;
    }
    uint64_t key;
    size_t n = wire_varint(r->p + r->off, r->len - r->off, &key);
    if (n == 0 || n > 5) {
        return -1;
    }
    r->off += n;
    uint64_t field = key >> 3;
    if (field == 0 || field > 536870911) {
        return -1;
    }
    f->field = (uint32_t)field;
    f->wt = (int)(key & 7);
    f->data = NULL;
    f->len = 0;
    size_t left = r->len - r->off;
    switch (f->wt) {
    case WT_VARINT:
        n = wire_varint(r->p + r->off, left, &f->v);
        if (n == 0) {
            return -1;
        }
        r->off += n;
        return 1;
    case WT_I64:
        if (left < 8) {
            return -1;
        }
        f->v = 0;
        for (int i = 7; i >= 0; i--) {
            f->v = (f->v << 8) | r->p[r->off + (size_t)i];
        }
        r->off += 8;
        return 1;
    case WT_I32:
        if (left < 4) {
            return -1;
        }
        f->v = (uint64_t)r->p[r->off] | (uint64_t)r->p[r->off + 1] << 8 |
               (uint64_t)r->p[r->off + 2] << 16 | (uint64_t)r->p[r->off + 3] << 24;
        r->off += 4;
        return 1;
    case WT_LEN: {
        uint64_t l;
        n = wire_varint(r->p + r->off, left, &l);
        if (n == 0 || l > left - n) {
            return -1;
        }
        f->data = r->p + r->off + n;
        f->len = (size_t)l;
        r->off += n + (size_t)l;
        return 1;
    }
    default:
        return -1;
    }
}

/*
 * The wire type of every field the collector knows, per message (0: not a known field). The
 * walk refuses a known field of another wire type, as protobuf-c would; unknown fields are
 * skipped and kept. A unit test checks these tables against protoc-c's descriptors, so a
 * field added to the .proto files fails the build's tests until it is added here.
 */
#define T_VARINT (WT_VARINT + 1)
#define T_I64 (WT_I64 + 1)
#define T_LEN (WT_LEN + 1)
#define T_I32 (WT_I32 + 1)

static const uint8_t batch_types[] = {
    [1] = T_VARINT, [2] = T_LEN, [3] = T_LEN, [4] = T_LEN, [5] = T_LEN};
static const uint8_t counters_types[] = {
    [1] = T_VARINT, [2] = T_VARINT, [3] = T_VARINT, [4] = T_VARINT, [5] = T_VARINT, [6] = T_VARINT};
static const uint8_t event_types[] = {
    [1] = T_LEN,  [2] = T_VARINT, [3] = T_LEN,     [4] = T_LEN,  [5] = T_LEN,  [6] = T_LEN,
    [7] = T_LEN,  [8] = T_LEN,    [9] = T_LEN,     [10] = T_LEN, [11] = T_LEN, [12] = T_LEN,
    [13] = T_LEN, [14] = T_I32,   [20] = T_VARINT, [21] = T_LEN};
static const uint8_t entry_types[] = {[1] = T_LEN, [2] = T_LEN};
static const uint8_t error_types[] = {
    [1] = T_LEN, [2] = T_LEN, [3] = T_VARINT, [4] = T_LEN, [5] = T_LEN, [6] = T_LEN, [7] = T_LEN};
static const uint8_t frame_types[] = {
    [1] = T_LEN, [2] = T_LEN, [3] = T_LEN, [4] = T_VARINT, [5] = T_VARINT, [6] = T_VARINT};
static const uint8_t request_types[] = {
    [1] = T_LEN, [2] = T_LEN, [3] = T_VARINT, [4] = T_VARINT, [5] = T_VARINT};
static const uint8_t metric_types[] = {[1] = T_LEN, [2] = T_VARINT, [3] = T_I64, [4] = T_LEN};
static const uint8_t log_types[] = {[1] = T_VARINT, [2] = T_LEN, [3] = T_LEN, [4] = T_LEN};

#define KNOWN(tbl, field) ((field) < sizeof(tbl) ? (int)(tbl)[(field)] - 1 : -1)

static const struct {
    const char *name;
    const uint8_t *types;
    size_t n;
} known_messages[] = {
    {"tocsin.v1.Batch", batch_types, sizeof(batch_types)},
    {"tocsin.v1.ClientCounters", counters_types, sizeof(counters_types)},
    {"tocsin.v1.Event", event_types, sizeof(event_types)},
    {"tocsin.v1.Event.TagsEntry", entry_types, sizeof(entry_types)},
    {"tocsin.v1.LogRecord.FieldsEntry", entry_types, sizeof(entry_types)},
    {"tocsin.v1.ErrorEvent", error_types, sizeof(error_types)},
    {"tocsin.v1.Frame", frame_types, sizeof(frame_types)},
    {"tocsin.v1.Request", request_types, sizeof(request_types)},
    {"tocsin.v1.Metric", metric_types, sizeof(metric_types)},
    {"tocsin.v1.LogRecord", log_types, sizeof(log_types)},
};

int col_wire_known_type(const char *message, uint32_t field)
{
    for (size_t i = 0; i < sizeof(known_messages) / sizeof(known_messages[0]); i++) {
        if (strcmp(known_messages[i].name, message) == 0) {
            return field < known_messages[i].n ? (int)known_messages[i].types[field] - 1 : -1;
        }
    }
    return -2;
}

/* One event's walk. */
typedef struct {
    const col_limits_t *lim;
    col_reject_t *rej;
    int idx;
    bool complex;          /* a singular field twice, or more than one body */
    bool bad_value;        /* a metric value refused, unless the event turns out complex (then the
                              decoded struct decides which value wins) */
    col_string_fn inspect; /* called for tags, log fields, messages and the route */
    void *inspect_ctx;
    bool flagged; /* the inspector returned false */
    char bad_value_msg[96];
} walk_t;

static void inspect(walk_t *w, col_string_kind_t kind, col_span_t key, col_span_t value)
{
    if (w->inspect && !w->flagged && !w->inspect(w->inspect_ctx, kind, key, value)) {
        w->flagged = true;
    }
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) {                                                                            \
            return rc_;                                                                            \
        }                                                                                          \
    } while (0)

static int bad_framing(walk_t *w, const char *what)
{
    return reject(w->rej, COL_REASON_MALFORMED, w->idx, "%s: broken protobuf framing", what);
}

static int bad_type(walk_t *w, const char *what, uint32_t field)
{
    return reject(w->rej, COL_REASON_MALFORMED, w->idx, "%s: field %u has the wrong wire type",
                  what, field);
}

/*
 * A string on the wire: no NUL byte, UTF-8, at most `max` bytes. Named `field`, or
 * `field[sub]suffix` when sub >= 0 (formatted only on failure).
 */
/* True when every byte is 0x01..0x7f: ASCII without NUL, eight bytes at a time. */
static bool plain_ascii(const char *s, size_t len)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if ((v & highs) || ((v - ones) & ~v & highs)) {
            return false;
        }
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0 || c >= 0x80) {
            return false;
        }
    }
    return true;
}

static int check_wire_string(walk_t *w, const fld_t *f, size_t max, const char *field, long sub,
                             const char *suffix, col_span_t *out)
{
    const char *s = (const char *)f->data;
    bool nul = false, utf8 = true;
    if (!plain_ascii(s, f->len)) {
        nul = f->len > 0 && memchr(s, 0, f->len) != NULL;
        utf8 = !nul && tc_utf8_valid(s, f->len);
    }
    if (out) {
        out->p = s;
        out->len = f->len;
    }
    if (utf8 && f->len <= max) {
        return 0;
    }
    char what[96];
    if (sub >= 0) {
        snprintf(what, sizeof(what), "%s[%ld]%s", field, sub, suffix);
    } else {
        snprintf(what, sizeof(what), "%s", field);
    }
    if (nul) {
        return reject(w->rej, COL_REASON_INVALID_UTF8, w->idx, "%s: contains a NUL byte", what);
    }
    if (!utf8) {
        return reject(w->rej, COL_REASON_INVALID_UTF8, w->idx, "%s: not valid UTF-8", what);
    }
    return reject(w->rej, COL_REASON_STRING_TOO_LONG, w->idx, "%s: %zu bytes, at most %zu", what,
                  f->len, max);
}

/* Marks singular field `bit` seen; a second time makes the event complex. */
static void seen_once(walk_t *w, uint32_t *seen, uint32_t bit)
{
    if (*seen & (1u << bit)) {
        w->complex = true;
    }
    *seen |= 1u << bit;
}

/* A map entry (tags, log fields): key 1, value 2, both short strings. */
static int walk_entry(walk_t *w, const fld_t *outer, col_string_kind_t kind, const char *what,
                      long k, col_span_t *key, col_span_t *value)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    size_t max = w->lim->max_short_string;
    key->p = value->p = "";
    key->len = value->len = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(entry_types, f.field) >= 0 && f.wt != KNOWN(entry_types, f.field)) {
            return bad_type(w, what, f.field);
        }
        if (f.field == 1 || f.field == 2) {
            seen_once(w, &seen, f.field);
            TRY(check_wire_string(w, &f, max, what, k, f.field == 1 ? ".key" : ".value",
                                  f.field == 1 ? key : value));
        }
    }
    if (rc < 0) {
        return bad_framing(w, what);
    }
    inspect(w, kind, *key, *value);
    return 0;
}

static int walk_frame(walk_t *w, const fld_t *outer, long k)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    static const char *const names[] = {NULL, ".function", ".module", ".file"};
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(frame_types, f.field) >= 0 && f.wt != KNOWN(frame_types, f.field)) {
            return bad_type(w, "error.frames", f.field);
        }
        if (f.field >= 1 && f.field <= 3) {
            seen_once(w, &seen, f.field);
            TRY(check_wire_string(w, &f, w->lim->max_short_string, "error.frames", k,
                                  names[f.field], NULL));
        } else if (f.field >= 4 && f.field <= 6) {
            seen_once(w, &seen, f.field);
        }
    }
    return rc < 0 ? bad_framing(w, "error.frames") : 0;
}

static int walk_error(walk_t *w, const fld_t *outer, col_event_t *e)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    size_t s = w->lim->max_short_string;
    uint32_t frames = 0, parts = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(error_types, f.field) >= 0 && f.wt != KNOWN(error_types, f.field)) {
            return bad_type(w, "error", f.field);
        }
        switch (f.field) {
        case 1:
        case 2:
        case 6:
        case 7: {
            static const char *const names[] = {
                NULL, "error.type", "error.message",       NULL,
                NULL, NULL,         "error.grouping_hash", "error.mechanism"};
            seen_once(w, &seen, f.field);
            col_span_t v;
            TRY(check_wire_string(w, &f, f.field == 2 ? w->lim->max_long_string : s, names[f.field],
                                  -1, "", &v));
            if (f.field == 6) {
                e->grouping_hash = v;
            } else if (f.field == 2) {
                inspect(w, COL_STRING_MESSAGE, (col_span_t){"", 0}, v);
            }
            break;
        }
        case 3:
            seen_once(w, &seen, f.field);
            break;
        case 4:
            if (frames >= w->lim->max_frames) {
                return reject(w->rej, COL_REASON_TOO_MANY_FRAMES, w->idx,
                              "error.frames: more than %u frames", w->lim->max_frames);
            }
            TRY(walk_frame(w, &f, (long)frames));
            frames++;
            break;
        case 5:
            if (parts >= w->lim->max_fingerprint_parts) {
                return reject(w->rej, COL_REASON_TOO_MANY_FINGERPRINT_PARTS, w->idx,
                              "error.fingerprint: more than %u parts",
                              w->lim->max_fingerprint_parts);
            }
            TRY(check_wire_string(w, &f, s, "error.fingerprint", (long)parts, "", NULL));
            parts++;
            break;
        default:
            break;
        }
    }
    return rc < 0 ? bad_framing(w, "error") : 0;
}

static int walk_request(walk_t *w, const fld_t *outer, col_event_t *e)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(request_types, f.field) >= 0 && f.wt != KNOWN(request_types, f.field)) {
            return bad_type(w, "request", f.field);
        }
        if (f.field == 1 || f.field == 2) {
            seen_once(w, &seen, f.field);
            TRY(check_wire_string(w, &f, w->lim->max_short_string,
                                  f.field == 1 ? "request.route" : "request.method", -1, "",
                                  f.field == 1 ? &e->name : NULL));
            if (f.field == 1) {
                inspect(w, COL_STRING_ROUTE, (col_span_t){"", 0}, e->name);
            }
        } else if (f.field >= 3 && f.field <= 5) {
            seen_once(w, &seen, f.field);
        }
    }
    return rc < 0 ? bad_framing(w, "request") : 0;
}

static int walk_metric(walk_t *w, const fld_t *outer, col_event_t *e)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    uint64_t kind = 0;
    double value = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(metric_types, f.field) >= 0 && f.wt != KNOWN(metric_types, f.field)) {
            return bad_type(w, "metric", f.field);
        }
        if (f.field == 1 || f.field == 4) {
            seen_once(w, &seen, f.field);
            TRY(check_wire_string(w, &f, w->lim->max_short_string,
                                  f.field == 1 ? "metric.name" : "metric.unit", -1, "",
                                  f.field == 1 ? &e->name : NULL));
        } else if (f.field == 2) {
            seen_once(w, &seen, f.field);
            kind = f.v;
        } else if (f.field == 3) {
            seen_once(w, &seen, f.field);
            memcpy(&value, &f.v, sizeof(value));
        }
    }
    if (rc < 0) {
        return bad_framing(w, "metric");
    }
    if (w->bad_value) {
        return 0;
    }
    if (!isfinite(value)) {
        w->bad_value = true;
        snprintf(w->bad_value_msg, sizeof(w->bad_value_msg), "metric.value: not finite");
    } else if ((uint32_t)kind == TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING && value < 0) {
        w->bad_value = true;
        snprintf(w->bad_value_msg, sizeof(w->bad_value_msg),
                 "metric.value: %g, a TIMING value is >= 0", value);
    }
    return 0;
}

static int walk_log(walk_t *w, const fld_t *outer)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    uint32_t fields = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(log_types, f.field) >= 0 && f.wt != KNOWN(log_types, f.field)) {
            return bad_type(w, "log", f.field);
        }
        if (f.field == 1) {
            seen_once(w, &seen, f.field);
        } else if (f.field == 2 || f.field == 3) {
            seen_once(w, &seen, f.field);
            col_span_t v;
            TRY(check_wire_string(w, &f,
                                  f.field == 2 ? w->lim->max_long_string : w->lim->max_short_string,
                                  f.field == 2 ? "log.message" : "log.logger", -1, "", &v));
            if (f.field == 2) {
                inspect(w, COL_STRING_MESSAGE, (col_span_t){"", 0}, v);
            }
        } else if (f.field == 4) {
            if (fields >= w->lim->max_log_fields) {
                return reject(w->rej, COL_REASON_TOO_MANY_FIELDS, w->idx,
                              "log.fields: more than %u fields", w->lim->max_log_fields);
            }
            col_span_t k, v;
            TRY(walk_entry(w, &f, COL_STRING_LOG_FIELD, "log.fields", (long)fields, &k, &v));
            fields++;
        }
    }
    return rc < 0 ? bad_framing(w, "log") : 0;
}

/* Event field numbers that are singular strings, and how each is named. */
static const char *event_string_name(uint32_t field)
{
    switch (field) {
    case 3:
        return "service";
    case 4:
        return "environment";
    case 5:
        return "release";
    case 6:
        return "host";
    case 7:
        return "trace_id";
    case 9:
        return "user_id";
    case 21:
        return "collector_id";
    default:
        return NULL;
    }
}

/* Walks one event: every check, and the facts of a simple event. */
static int walk_event(walk_t *w, col_event_t *e)
{
    rd_t r = {e->raw, e->raw_len, 0};
    fld_t f;
    int rc;
    uint32_t seen = 0;
    uint32_t tags = 0;
    int bodies = 0;
    size_t id_len = 0;
    e->body = TOCSIN__V1__EVENT__BODY__NOT_SET;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(event_types, f.field) >= 0 && f.wt != KNOWN(event_types, f.field)) {
            return bad_type(w, "event", f.field);
        }
        const char *sname = event_string_name(f.field);
        if (sname) {
            seen_once(w, &seen, f.field);
            col_span_t *out = f.field == 3 ? &e->service : (f.field == 9 ? &e->user_id : NULL);
            TRY(check_wire_string(w, &f, w->lim->max_short_string, sname, -1, "", out));
            continue;
        }
        switch (f.field) {
        case 1:
            seen_once(w, &seen, f.field);
            id_len = f.len;
            break;
        case 14: {
            seen_once(w, &seen, f.field);
            uint32_t bits = (uint32_t)f.v;
            float rate;
            memcpy(&rate, &bits, sizeof(rate));
            if (!(rate >= 0.0f && rate <= 1.0f) && !w->bad_value) {
                w->bad_value = true;
                snprintf(w->bad_value_msg, sizeof(w->bad_value_msg),
                         "sample_rate: %g, expected 0 to 1", (double)rate);
            }
            break;
        }
        case 2:
        case 20:
            seen_once(w, &seen, f.field);
            if (f.field == 2) {
                e->time_us = (int64_t)f.v;
            }
            break;
        case 8: {
            if (tags >= w->lim->max_tags) {
                return reject(w->rej, COL_REASON_TOO_MANY_TAGS, w->idx,
                              "tags: more than %u entries", w->lim->max_tags);
            }
            col_span_t k, v;
            TRY(walk_entry(w, &f, COL_STRING_TAG, "tags", (long)tags, &k, &v));
            tags++;
            break;
        }
        case 10:
        case 11:
        case 12:
        case 13:
            if (++bodies > 1) {
                w->complex = true;
            }
            e->body = (Tocsin__V1__Event__BodyCase)f.field;
            if (f.field == 10) {
                TRY(walk_error(w, &f, e));
            } else if (f.field == 11) {
                TRY(walk_request(w, &f, e));
            } else if (f.field == 12) {
                TRY(walk_metric(w, &f, e));
            } else {
                TRY(walk_log(w, &f));
            }
            break;
        default:
            break; /* an unknown field: kept, not checked */
        }
    }
    if (rc < 0) {
        return bad_framing(w, "event");
    }
    if (w->complex) {
        return 0; /* checked again, whole, once decoded */
    }
    if (id_len != 16) {
        return reject(w->rej, COL_REASON_BAD_EVENT_ID, w->idx, "event_id: %zu bytes, expected 16",
                      id_len);
    }
    if (e->service.len == 0) {
        return reject(w->rej, COL_REASON_MISSING_SERVICE, w->idx, "service: empty");
    }
    if (bodies == 0) {
        return reject(w->rej, COL_REASON_NO_BODY, w->idx,
                      "body: none of error, request, metric, log is set");
    }
    if (w->bad_value) {
        return reject(w->rej, COL_REASON_BAD_VALUE, w->idx, "%s", w->bad_value_msg);
    }
    return 0;
}

static col_span_t span_of(const char *s)
{
    col_span_t sp = {s ? s : "", s ? strlen(s) : 0};
    return sp;
}

/* The facts of a complex event, read from its decoded struct. */
static void facts_from_struct(col_event_t *e)
{
    const Tocsin__V1__Event *ev = e->ev;
    e->body = ev->body_case;
    e->service = span_of(ev->service);
    e->user_id = span_of(ev->user_id);
    e->time_us = ev->time_us;
    e->name = span_of(NULL);
    e->grouping_hash = span_of(NULL);
    if (ev->body_case == TOCSIN__V1__EVENT__BODY_REQUEST && ev->request) {
        e->name = span_of(ev->request->route);
    } else if (ev->body_case == TOCSIN__V1__EVENT__BODY_METRIC && ev->metric) {
        e->name = span_of(ev->metric->name);
    } else if (ev->body_case == TOCSIN__V1__EVENT__BODY_ERROR && ev->error) {
        e->grouping_hash = span_of(ev->error->grouping_hash);
    }
}

/* The top level of a Batch: sequence, api_key, sdk, counters (a later field wins, as in
 * protobuf), and the events' slices. */
static int walk_batch(const uint8_t *p, size_t len, const col_limits_t *lim, col_batch_t *b,
                      col_arena_t *arena, col_reject_t *rej)
{
    walk_t w = {.lim = lim, .rej = rej, .idx = -1};
    rd_t r = {p, len, 0};
    fld_t f;
    int rc;
    size_t n = 0;
    while ((rc = next_field(&r, &f)) == 1) {
        if (KNOWN(batch_types, f.field) >= 0 && f.wt != KNOWN(batch_types, f.field)) {
            return bad_type(&w, "batch", f.field);
        }
        switch (f.field) {
        case 1:
            b->sequence = f.v;
            break;
        case 2:
        case 5:
            TRY(check_wire_string(&w, &f, lim->max_short_string, f.field == 2 ? "api_key" : "sdk",
                                  -1, "", f.field == 2 ? &b->api_key : &b->sdk));
            break;
        case 3:
            b->events[n].raw = f.data;
            b->events[n].raw_len = f.len;
            n++;
            break;
        case 4: {
            rd_t cr = {f.data, f.len, 0};
            fld_t cf;
            int crc;
            while ((crc = next_field(&cr, &cf)) == 1) {
                if (KNOWN(counters_types, cf.field) >= 0 &&
                    cf.wt != KNOWN(counters_types, cf.field)) {
                    return bad_type(&w, "counters", cf.field);
                }
                uint64_t *slot[] = {NULL,
                                    &b->counters.dropped_queue_full,
                                    &b->counters.dropped_oversize,
                                    &b->counters.sampled_out,
                                    &b->counters.retried,
                                    &b->counters.rejected,
                                    &b->counters.dropped_before_send};
                if (cf.field >= 1 && cf.field <= 6) {
                    *slot[cf.field] = cf.v;
                }
            }
            if (crc < 0) {
                return bad_framing(&w, "counters");
            }
            break;
        }
        default:
            break;
        }
    }
    (void)arena;
    if (rc < 0) {
        return bad_framing(&w, "batch");
    }
    b->n_events = n;
    return 0;
}

int col_batch_decode(const void *data, size_t len, const col_limits_t *limits, col_arena_t *arena,
                     col_batch_t **out, col_reject_t *rej)
{
    return col_batch_decode_inspect(data, len, limits, arena, NULL, NULL, out, rej);
}

int col_batch_decode_inspect(const void *data, size_t len, const col_limits_t *limits,
                             col_arena_t *arena, col_string_fn fn, void *ctx, col_batch_t **out,
                             col_reject_t *rej)
{
    assert(limits && arena && out && rej);
    assert(data || len == 0);
    *out = NULL;
    memset(rej, 0, sizeof(*rej));
    rej->event_index = -1;

    /* The first walk only skips over lengths; it reads no more than a frame that ZeroMQ
     * already bounded, counts the events before anything is allocated for them, and finds
     * the sequence so that even a refused batch is answered by name. */
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
    col_batch_t *b = col_arena_alloc(arena, sizeof(*b));
    col_event_t *events =
        col_arena_alloc(arena, (top.events ? (size_t)top.events : 1) * sizeof(col_event_t));
    if (!b || !events) {
        return reject(rej, COL_REASON_MALFORMED, -1, "batch: does not fit the collector's arena");
    }
    memset(b, 0, sizeof(*b));
    memset(events, 0, (top.events ? (size_t)top.events : 1) * sizeof(col_event_t));
    b->events = events;
    b->api_key = span_of(NULL);
    b->sdk = span_of(NULL);
    TRY(walk_batch(data, len, limits, b, arena, rej));
    rej->sequence = b->sequence;
    if (b->n_events == 0) {
        return reject(rej, COL_REASON_EMPTY, -1, "events: none");
    }
    for (size_t i = 0; i < b->n_events; i++) {
        col_event_t *e = &b->events[i];
        e->service = e->name = e->grouping_hash = e->user_id = span_of(NULL);
        walk_t w = {.lim = limits, .rej = rej, .idx = (int)i, .inspect = fn, .inspect_ctx = ctx};
        TRY(walk_event(&w, e));
        e->simple = !w.complex;
        e->flagged = w.flagged;
        if (e->simple) {
            continue;
        }
        /* protobuf would read this event in a less obvious way (merged or overridden
         * fields): decode it as protobuf-c does and check what it reads. */
        e->ev = tocsin__v1__event__unpack(col_arena_allocator(arena), e->raw_len, e->raw);
        if (!e->ev) {
            return reject(rej, COL_REASON_MALFORMED, (int)i, "not a tocsin.v1.Event");
        }
        TRY(check_event(e->ev, limits, (int)i, rej));
        facts_from_struct(e);
    }
    memset(rej, 0, sizeof(*rej));
    rej->event_index = -1;
    *out = b;
    return 0;
}

int col_event_decode(col_event_t *e, col_arena_t *arena)
{
    assert(e && arena);
    if (e->ev) {
        return 0;
    }
    e->ev = tocsin__v1__event__unpack(col_arena_allocator(arena), e->raw_len, e->raw);
    return e->ev ? 0 : TC_ENOMEM;
}

/* Calls fn for the entries of a map field: returns false when fn did. */
static bool each_entry(const fld_t *outer, col_string_kind_t kind, col_string_fn fn, void *ctx)
{
    rd_t r = {outer->data, outer->len, 0};
    fld_t f;
    col_span_t key = span_of(NULL), value = span_of(NULL);
    while (next_field(&r, &f) == 1) {
        if ((f.field == 1 || f.field == 2) && f.wt == WT_LEN) {
            col_span_t *sp = f.field == 1 ? &key : &value;
            sp->p = (const char *)f.data;
            sp->len = f.len;
        }
    }
    return fn(ctx, kind, key, value);
}

bool col_event_each(const col_event_t *e, col_string_fn fn, void *ctx)
{
    assert(e && fn && e->simple);
    rd_t r = {e->raw, e->raw_len, 0};
    fld_t f;
    col_span_t none = span_of(NULL);
    while (next_field(&r, &f) == 1) {
        if (f.wt != WT_LEN) {
            continue;
        }
        if (f.field == 8) {
            if (!each_entry(&f, COL_STRING_TAG, fn, ctx)) {
                return false;
            }
            continue;
        }
        if (f.field < 10 || f.field > 13 || f.field == 12) {
            continue;
        }
        rd_t br = {f.data, f.len, 0};
        fld_t bf;
        while (next_field(&br, &bf) == 1) {
            if (bf.wt != WT_LEN) {
                continue;
            }
            col_span_t v = {(const char *)bf.data, bf.len};
            bool go = true;
            if (f.field == 10 && bf.field == 2) {
                go = fn(ctx, COL_STRING_MESSAGE, none, v);
            } else if (f.field == 11 && bf.field == 1) {
                go = fn(ctx, COL_STRING_ROUTE, none, v);
            } else if (f.field == 13 && bf.field == 2) {
                go = fn(ctx, COL_STRING_MESSAGE, none, v);
            } else if (f.field == 13 && bf.field == 4) {
                go = each_entry(&bf, COL_STRING_LOG_FIELD, fn, ctx);
            }
            if (!go) {
                return false;
            }
        }
    }
    return true;
}
