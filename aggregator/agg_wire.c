#include "agg_wire.h"

#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "tc_error.h"
#include "tc_util.h"

#define MAX_MESSAGE (64u * 1024)

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor_t;

/* Reads a varint of up to 10 bytes. Returns false when malformed or cut off. */
static inline bool get_varint(cursor_t *c, uint64_t *out)
{
    if (c->p < c->end && *c->p < 0x80) { /* the common one-byte case */
        *out = *c->p++;
        return true;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (c->p >= c->end) {
            return false;
        }
        uint8_t b = *c->p++;
        if (i == 9 && b > 1) {
            return false; /* more than 64 bits */
        }
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Reads one field's tag; false at the end of the buffer or on a malformed tag. */
static bool get_tag(cursor_t *c, uint32_t *field, int *wt, bool *ok)
{
    *ok = true;
    if (c->p >= c->end) {
        return false;
    }
    uint64_t tag;
    if (!get_varint(c, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
        *ok = false;
        return false;
    }
    *field = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    return true;
}

static bool get_len(cursor_t *c, const uint8_t **data, size_t *len)
{
    uint64_t n;
    if (!get_varint(c, &n) || n > (uint64_t)(c->end - c->p)) {
        return false;
    }
    *data = c->p;
    *len = (size_t)n;
    c->p += n;
    return true;
}

/* Skips a field of wire type `wt`. Groups (3, 4) and unknown types are refused. */
static bool skip(cursor_t *c, int wt)
{
    uint64_t v = 0;
    const uint8_t *d;
    size_t n;
    switch (wt) {
    case WT_VARINT:
        return get_varint(c, &v);
    case WT_I64:
        if (c->end - c->p < 8) {
            return false;
        }
        c->p += 8;
        return true;
    case WT_LEN:
        return get_len(c, &d, &n);
    case WT_I32:
        if (c->end - c->p < 4) {
            return false;
        }
        c->p += 4;
        return true;
    default:
        return false;
    }
}

static bool get_str(cursor_t *c, int wt, agg_str_t *s)
{
    const uint8_t *d;
    size_t n;
    if (wt != WT_LEN || !get_len(c, &d, &n) || n > UINT32_MAX) {
        return false;
    }
    s->p = (const char *)d;
    s->n = (uint32_t)n;
    return true;
}

static bool get_u64(cursor_t *c, int wt, uint64_t *v)
{
    return wt == WT_VARINT && get_varint(c, v);
}

static bool get_double(cursor_t *c, int wt, double *v)
{
    if (wt != WT_I64 || c->end - c->p < 8) {
        return false;
    }
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) {
        bits = (bits << 8) | c->p[i];
    }
    memcpy(v, &bits, sizeof(*v));
    c->p += 8;
    return true;
}

bool agg_str_eq(agg_str_t a, const char *s)
{
    size_t n = strlen(s);
    return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0);
}

bool agg_text_ok(const char *s, size_t n, size_t max)
{
    if (n == 0) {
        return true;
    }
    return n <= max && memchr(s, '\0', n) == NULL && tc_utf8_valid(s, n);
}

static bool str_ok(agg_str_t s, size_t max)
{
    return agg_text_ok(s.p, s.n, max);
}

/* A series name chosen by a client: not empty and not starting with '$'. */
static bool name_ok(agg_str_t s)
{
    return s.n > 0 && s.p[0] != '$' && str_ok(s, AGG_MAX_NAME);
}

#define FAIL(code, why)                                                                            \
    do {                                                                                           \
        *reason = (why);                                                                           \
        return (code);                                                                             \
    } while (0)

static int scan_request(const uint8_t *d, size_t n, agg_event_t *ev, const char **reason)
{
    cursor_t c = {d, d + n};
    uint32_t f;
    int wt;
    bool ok;
    uint64_t v = 0;
    while (get_tag(&c, &f, &wt, &ok)) {
        bool good;
        switch (f) {
        case 1:
            good = get_str(&c, wt, &ev->route);
            break;
        case 3:
            good = get_u64(&c, wt, &v);
            ev->status = (uint32_t)v;
            break;
        case 4:
            good = get_u64(&c, wt, &ev->duration_us);
            break;
        case 5:
            good = get_u64(&c, wt, &v);
            ev->failed = v != 0;
            break;
        default:
            good = skip(&c, wt);
            break;
        }
        if (!good) {
            FAIL(TC_EPARSE, "protobuf");
        }
    }
    if (!ok) {
        FAIL(TC_EPARSE, "protobuf");
    }
    if (!name_ok(ev->route)) {
        FAIL(TC_EINVAL, "request.route");
    }
    return 0;
}

static int scan_metric(const uint8_t *d, size_t n, agg_event_t *ev, const char **reason)
{
    cursor_t c = {d, d + n};
    uint32_t f;
    int wt;
    bool ok;
    uint64_t v = 0;
    while (get_tag(&c, &f, &wt, &ok)) {
        bool good;
        switch (f) {
        case 1:
            good = get_str(&c, wt, &ev->metric_name);
            break;
        case 2:
            good = get_u64(&c, wt, &v);
            ev->metric_kind = (int)(int32_t)v;
            break;
        case 3:
            good = get_double(&c, wt, &ev->value);
            break;
        default:
            good = skip(&c, wt);
            break;
        }
        if (!good) {
            FAIL(TC_EPARSE, "protobuf");
        }
    }
    if (!ok) {
        FAIL(TC_EPARSE, "protobuf");
    }
    if (!name_ok(ev->metric_name)) {
        FAIL(TC_EINVAL, "metric.name");
    }
    if (ev->metric_kind != TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER &&
        ev->metric_kind != TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE &&
        ev->metric_kind != TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING) {
        FAIL(TC_EINVAL, "metric.kind");
    }
    if (!isfinite(ev->value) ||
        (ev->metric_kind == TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING && ev->value < 0)) {
        FAIL(TC_EINVAL, "metric.value");
    }
    return 0;
}

static int scan_error(const uint8_t *d, size_t n, agg_event_t *ev, const char **reason)
{
    cursor_t c = {d, d + n};
    uint32_t f;
    int wt;
    bool ok;
    uint64_t v = 0;
    while (get_tag(&c, &f, &wt, &ok)) {
        bool good;
        switch (f) {
        case 1:
            good = get_str(&c, wt, &ev->error_type);
            break;
        case 2:
            good = get_str(&c, wt, &ev->error_message);
            break;
        case 3:
            good = get_u64(&c, wt, &v);
            ev->level = (int)(int32_t)v;
            break;
        case 6:
            good = get_str(&c, wt, &ev->grouping_hash);
            break;
        default:
            good = skip(&c, wt);
            break;
        }
        if (!good) {
            FAIL(TC_EPARSE, "protobuf");
        }
    }
    if (!ok) {
        FAIL(TC_EPARSE, "protobuf");
    }
    if (!str_ok(ev->error_type, AGG_MAX_NAME)) {
        FAIL(TC_EUTF8, "error.type");
    }
    if (!str_ok(ev->error_message, MAX_MESSAGE)) {
        FAIL(TC_EUTF8, "error.message");
    }
    if (!str_ok(ev->grouping_hash, AGG_MAX_SHORT)) {
        FAIL(TC_EUTF8, "error.grouping_hash");
    }
    if (ev->level < 0 || ev->level > TOCSIN__V1__LEVEL__LEVEL_FATAL) {
        FAIL(TC_EINVAL, "error.level");
    }
    return 0;
}

static int scan_log(const uint8_t *d, size_t n, agg_event_t *ev, const char **reason)
{
    cursor_t c = {d, d + n};
    uint32_t f;
    int wt;
    bool ok;
    uint64_t v = 0;
    while (get_tag(&c, &f, &wt, &ok)) {
        bool good;
        switch (f) {
        case 1:
            good = get_u64(&c, wt, &v);
            ev->level = (int)(int32_t)v;
            break;
        case 2:
            good = get_str(&c, wt, &ev->log_message);
            break;
        case 3:
            good = get_str(&c, wt, &ev->logger);
            break;
        default:
            good = skip(&c, wt);
            break;
        }
        if (!good) {
            FAIL(TC_EPARSE, "protobuf");
        }
    }
    if (!ok) {
        FAIL(TC_EPARSE, "protobuf");
    }
    if (!str_ok(ev->log_message, MAX_MESSAGE)) {
        FAIL(TC_EUTF8, "log.message");
    }
    if (!str_ok(ev->logger, AGG_MAX_NAME)) {
        FAIL(TC_EUTF8, "log.logger");
    }
    if (ev->level < 0 || ev->level > TOCSIN__V1__LEVEL__LEVEL_FATAL) {
        FAIL(TC_EINVAL, "log.level");
    }
    return 0;
}

int agg_wire_scan(const uint8_t *data, size_t len, agg_event_t *ev, const char **reason)
{
    const char *dummy;
    if (!reason) {
        reason = &dummy;
    }
    memset(ev, 0, sizeof(*ev));
    if (len > AGG_MAX_EVENT_BYTES) {
        FAIL(TC_ETOOBIG, "size");
    }
    cursor_t c = {data, data + len};
    uint32_t f;
    int wt;
    bool ok;
    uint64_t v = 0;
    const uint8_t *body = NULL;
    size_t body_len = 0;
    agg_str_t id = {NULL, 0};
    bool have_id = false;
    while (get_tag(&c, &f, &wt, &ok)) {
        bool good = true;
        switch (f) {
        case 1:
            good = get_str(&c, wt, &id);
            have_id = good;
            break;
        case 2:
            good = get_u64(&c, wt, &v);
            ev->time_us = (int64_t)v;
            break;
        case 3:
            good = get_str(&c, wt, &ev->service);
            break;
        case 4:
            good = get_str(&c, wt, &ev->environment);
            break;
        case 5:
            good = get_str(&c, wt, &ev->release);
            break;
        case 6:
            good = get_str(&c, wt, &ev->host);
            break;
        case 9:
            good = get_str(&c, wt, &ev->user_id);
            break;
        case 10:
        case 11:
        case 12:
        case 13:
            if (body) {
                FAIL(TC_EINVAL, "body");
            }
            good = wt == WT_LEN && get_len(&c, &body, &body_len);
            ev->body = (agg_body_t)f;
            break;
        case 14:
            if (wt != WT_I32 || c.end - c.p < 4) {
                good = false;
                break;
            }
            {
                uint32_t bits = (uint32_t)c.p[0] | (uint32_t)c.p[1] << 8 |
                                (uint32_t)c.p[2] << 16 | (uint32_t)c.p[3] << 24;
                float r;
                memcpy(&r, &bits, sizeof(r));
                ev->sample_rate = (double)r;
                c.p += 4;
            }
            break;
        case 20:
            good = get_u64(&c, wt, &v);
            ev->received_us = (int64_t)v;
            break;
        default:
            good = skip(&c, wt);
            break;
        }
        if (!good) {
            FAIL(TC_EPARSE, "protobuf");
        }
    }
    if (!ok) {
        FAIL(TC_EPARSE, "protobuf");
    }
    if (!have_id || id.n != AGG_EVENT_ID_LEN) {
        FAIL(TC_EINVAL, "event_id");
    }
    /* NaN fails both comparisons. */
    if (!(ev->sample_rate == 0 ||
          (ev->sample_rate >= AGG_MIN_SAMPLE_RATE && ev->sample_rate <= 1))) {
        FAIL(TC_EINVAL, "sample_rate");
    }
    ev->weight = ev->sample_rate == 0 ? 1 : agg_sample_weight(ev->sample_rate, (const uint8_t *)id.p);
    if (ev->time_us < 0 || ev->time_us > AGG_TIME_MAX_US) {
        FAIL(TC_EINVAL, "time_us");
    }
    ev->event_id = (const uint8_t *)id.p;
    if (ev->service.n == 0) {
        FAIL(TC_EINVAL, "service");
    }
    if (!str_ok(ev->service, AGG_MAX_SERVICE)) {
        FAIL(TC_EUTF8, "service");
    }
    if (!str_ok(ev->environment, AGG_MAX_ENVIRONMENT)) {
        FAIL(TC_EUTF8, "environment");
    }
    if (ev->environment.n == 0) {
        ev->environment.p = AGG_DEFAULT_ENVIRONMENT;
        ev->environment.n = (uint32_t)strlen(AGG_DEFAULT_ENVIRONMENT);
    }
    if (!str_ok(ev->release, AGG_MAX_SHORT)) {
        FAIL(TC_EUTF8, "release");
    }
    if (!str_ok(ev->host, AGG_MAX_SHORT)) {
        FAIL(TC_EUTF8, "host");
    }
    if (!str_ok(ev->user_id, AGG_MAX_SHORT)) {
        FAIL(TC_EUTF8, "user_id");
    }
    if (ev->received_us < 0) {
        ev->received_us = 0;
    }
    switch (ev->body) {
    case AGG_BODY_REQUEST:
        return scan_request(body, body_len, ev, reason);
    case AGG_BODY_METRIC:
        return scan_metric(body, body_len, ev, reason);
    case AGG_BODY_ERROR:
        return scan_error(body, body_len, ev, reason);
    case AGG_BODY_LOG:
        return scan_log(body, body_len, ev, reason);
    default:
        FAIL(TC_EINVAL, "body");
    }
}

int agg_wire_scan_id(const uint8_t *data, size_t len, const uint8_t **event_id,
                     int64_t *received_us)
{
    cursor_t c = {data, data + (len > AGG_MAX_EVENT_BYTES ? 0 : len)};
    uint32_t f;
    int wt;
    bool ok;
    uint64_t v = 0;
    agg_str_t id = {NULL, 0};
    *event_id = NULL;
    *received_us = 0;
    while (get_tag(&c, &f, &wt, &ok)) {
        bool good;
        if (f == 1) {
            good = get_str(&c, wt, &id);
        } else if (f == 20) {
            good = get_u64(&c, wt, &v);
            *received_us = (int64_t)v > 0 ? (int64_t)v : 0;
        } else {
            good = skip(&c, wt);
        }
        if (!good) {
            return TC_EPARSE;
        }
    }
    if (!ok || id.n != AGG_EVENT_ID_LEN) {
        return TC_EPARSE;
    }
    *event_id = (const uint8_t *)id.p;
    return 0;
}

uint64_t agg_sample_weight(double sample_rate, const uint8_t *event_id)
{
    if (!(sample_rate > 0 && sample_rate < 1)) {
        return 1;
    }
    double w = 1.0 / sample_rate;
    double n = floor(w + 0.5);
    /* A float rate of 1/n is not exact (0.1f is 0.100000001...): within that rounding, the
     * weight is the integer n, so counts stay exact for the usual rates. */
    if (fabs(w - n) <= 1e-5 * n) {
        return (uint64_t)n;
    }
    double lo = floor(w);
    double frac = w - lo;
    uint64_t h = XXH3_64bits(event_id, AGG_EVENT_ID_LEN);
    double u = (double)(h >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
    return (uint64_t)lo + (u < frac ? 1 : 0);
}

agg_format_t agg_format_of(bool present, const void *value, size_t len)
{
    if (!present) {
        return AGG_FORMAT_EVENT;
    }
    size_t n = strlen(AGG_FORMAT_PACK_NAME);
    if (value && len == n && memcmp(value, AGG_FORMAT_PACK_NAME, n) == 0) {
        return AGG_FORMAT_PACK;
    }
    return AGG_FORMAT_UNKNOWN;
}

int agg_pack_next(const uint8_t *data, size_t len, size_t *offset, const uint8_t **event,
                  size_t *event_len)
{
    if (len > AGG_MAX_RECORD_BYTES || *offset > len) {
        return TC_EPARSE;
    }
    cursor_t c = {data + *offset, data + len};
    /* Fields other than 1 (added to EventPack by later versions) are skipped, as protobuf
     * readers do; only a malformed field, or field 1 of another wire type, is refused. */
    while (c.p < c.end) {
        uint64_t tag;
        if (!get_varint(&c, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX) {
            return TC_EPARSE;
        }
        int wt = (int)(tag & 7);
        if ((tag >> 3) != 1) {
            if (!skip(&c, wt)) {
                return TC_EPARSE;
            }
            continue;
        }
        const uint8_t *d;
        size_t n;
        if (wt != WT_LEN || !get_len(&c, &d, &n)) {
            return TC_EPARSE;
        }
        *event = d;
        *event_len = n;
        *offset = (size_t)(c.p - data);
        return 1;
    }
    *offset = len;
    return 0;
}

Tocsin__V1__Event *agg_wire_unpack(const uint8_t *data, size_t len)
{
    if (len > AGG_MAX_EVENT_BYTES) {
        return NULL;
    }
    return tocsin__v1__event__unpack(NULL, len, data);
}
