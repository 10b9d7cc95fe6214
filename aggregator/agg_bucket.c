#include "agg_bucket.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

const char *agg_kind_name(agg_kind_t kind)
{
    switch (kind) {
    case AGG_KIND_REQUESTS:
        return "requests";
    case AGG_KIND_ERRORS:
        return "errors";
    case AGG_KIND_COUNTER:
        return "counter";
    case AGG_KIND_GAUGE:
        return "gauge";
    case AGG_KIND_TIMING:
        return "timing";
    case AGG_KIND_NONE:
        break;
    }
    return "none";
}

int64_t agg_bucket_align(int64_t time_us)
{
    const int64_t width_us = (int64_t)AGG_BUCKET_WIDTH_S * 1000000;
    int64_t q = time_us / width_us;
    /* C division truncates toward zero; step down once more for negative remainders. */
    if (time_us % width_us < 0) {
        q--;
    }
    return q * AGG_BUCKET_WIDTH_S;
}

/* A string from outside: at most `max` bytes and valid UTF-8. */
static bool text_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n <= max && tc_utf8_valid(s, n);
}

/* A series name chosen by a client: not empty and not starting with '$' (reserved for the
 * aggregator's own series such as "$errors"). A route "*" is allowed: it is counted in the
 * service-wide "*" queries, which is also the only way to query it. */
static bool series_name_ok(const char *s)
{
    return s[0] != '\0' && s[0] != '$' && text_ok(s, AGG_MAX_NAME);
}

static int validate_event(const Tocsin__V1__Event *ev, const char **reason)
{
    if (ev->event_id.len != AGG_EVENT_ID_LEN) {
        *reason = "event_id";
        return TC_EINVAL;
    }
    if (!ev->service || !ev->service[0]) {
        *reason = "service";
        return TC_EINVAL;
    }
    if (!text_ok(ev->service, AGG_MAX_SERVICE)) {
        *reason = "service";
        return TC_EUTF8;
    }
    if (ev->environment && !text_ok(ev->environment, AGG_MAX_ENVIRONMENT)) {
        *reason = "environment";
        return TC_EUTF8;
    }
    switch (ev->body_case) {
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        if (!ev->request || !ev->request->route || !series_name_ok(ev->request->route)) {
            *reason = "request.route";
            return TC_EINVAL;
        }
        return 0;
    case TOCSIN__V1__EVENT__BODY_ERROR:
        if (!ev->error) {
            *reason = "error";
            return TC_EINVAL;
        }
        return 0;
    case TOCSIN__V1__EVENT__BODY_METRIC: {
        const Tocsin__V1__Metric *m = ev->metric;
        if (!m || !m->name || !series_name_ok(m->name)) {
            *reason = "metric.name";
            return TC_EINVAL;
        }
        if (m->kind != TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER &&
            m->kind != TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE &&
            m->kind != TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING) {
            *reason = "metric.kind";
            return TC_EINVAL;
        }
        if (!isfinite(m->value) ||
            (m->kind == TOCSIN__V1__METRIC_KIND__METRIC_KIND_TIMING && m->value < 0)) {
            *reason = "metric.value";
            return TC_EINVAL;
        }
        return 0;
    }
    case TOCSIN__V1__EVENT__BODY_LOG:
        if (!ev->log) {
            *reason = "log";
            return TC_EINVAL;
        }
        return 0;
    default:
        *reason = "body";
        return TC_EINVAL;
    }
}

int agg_event_decode(const uint8_t *data, size_t len, Tocsin__V1__Event **out, const char **reason)
{
    const char *why = NULL;
    *out = NULL;
    if (len > AGG_MAX_EVENT_BYTES) {
        why = "size";
        if (reason) {
            *reason = why;
        }
        return TC_ETOOBIG;
    }
    Tocsin__V1__Event *ev = tocsin__v1__event__unpack(NULL, len, data);
    if (!ev) {
        if (reason) {
            *reason = "protobuf";
        }
        return TC_EPARSE;
    }
    int rc = validate_event(ev, &why);
    if (rc != 0) {
        tocsin__v1__event__free_unpacked(ev, NULL);
        if (reason) {
            *reason = why;
        }
        return rc;
    }
    *out = ev;
    return 0;
}

int agg_event_sample(const Tocsin__V1__Event *ev, agg_sample_t *out)
{
    const char *why = NULL;
    if (validate_event(ev, &why) != 0) {
        return TC_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->service = ev->service;
    out->environment =
        ev->environment && ev->environment[0] ? ev->environment : AGG_DEFAULT_ENVIRONMENT;
    out->time_us = ev->time_us;
    out->start_s = agg_bucket_align(ev->time_us);
    switch (ev->body_case) {
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        out->kind = AGG_KIND_REQUESTS;
        out->name = ev->request->route;
        out->error = ev->request->status >= 500 || ev->request->failed;
        out->has_value = true;
        out->value = (double)ev->request->duration_us;
        break;
    case TOCSIN__V1__EVENT__BODY_ERROR:
        out->kind = AGG_KIND_ERRORS;
        out->name = AGG_ERRORS_NAME;
        out->error = true;
        break;
    case TOCSIN__V1__EVENT__BODY_METRIC:
        out->name = ev->metric->name;
        out->has_value = true;
        out->value = ev->metric->value;
        switch (ev->metric->kind) {
        case TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER:
            out->kind = AGG_KIND_COUNTER;
            break;
        case TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE:
            out->kind = AGG_KIND_GAUGE;
            break;
        default:
            out->kind = AGG_KIND_TIMING;
            break;
        }
        break;
    default:
        /* Log records are valid events that feed no series yet. */
        out->kind = AGG_KIND_NONE;
        out->name = "";
        break;
    }
    return 0;
}

void agg_bucket_init(agg_bucket_t *b)
{
    memset(b, 0, sizeof(*b));
    b->width_s = AGG_BUCKET_WIDTH_S;
    tc_sketch_init(&b->sketch, TC_SKETCH_SCHEMA);
}

void agg_bucket_fini(agg_bucket_t *b)
{
    free(b->service);
    free(b->environment);
    free(b->name);
    b->service = b->environment = b->name = NULL;
    tc_sketch_fini(&b->sketch);
}

static int set_identity(agg_bucket_t *b, const char *service, const char *environment,
                        const char *name, agg_kind_t kind, int64_t start_s)
{
    char *s = strdup(service), *e = strdup(environment), *n = strdup(name);
    if (!s || !e || !n) {
        free(s);
        free(e);
        free(n);
        return TC_ENOMEM;
    }
    free(b->service);
    free(b->environment);
    free(b->name);
    b->service = s;
    b->environment = e;
    b->name = n;
    b->kind = kind;
    b->start_s = start_s;
    return 0;
}

static bool same_series(const agg_bucket_t *b, const agg_sample_t *s)
{
    return b->kind == s->kind && b->start_s == s->start_s && strcmp(b->service, s->service) == 0 &&
           strcmp(b->environment, s->environment) == 0 && strcmp(b->name, s->name) == 0;
}

static void take_value(agg_bucket_t *b, double v, bool first)
{
    if (first || v < b->min) {
        b->min = v;
    }
    if (first || v > b->max) {
        b->max = v;
    }
}

int agg_bucket_apply(agg_bucket_t *b, const agg_sample_t *s, bool late)
{
    if (s->kind == AGG_KIND_NONE) {
        return TC_EINVAL;
    }
    if (b->kind == AGG_KIND_NONE) {
        int rc = set_identity(b, s->service, s->environment, s->name, s->kind, s->start_s);
        if (rc != 0) {
            return rc;
        }
    } else if (!same_series(b, s)) {
        return TC_EINVAL;
    }
    bool first = b->count == 0;
    if (s->kind == AGG_KIND_REQUESTS || s->kind == AGG_KIND_TIMING) {
        int rc = tc_sketch_add(&b->sketch, s->value, 1);
        if (rc != 0) {
            return rc;
        }
    }
    switch (s->kind) {
    case AGG_KIND_REQUESTS:
    case AGG_KIND_TIMING:
        b->sum += s->value;
        take_value(b, s->value, first);
        break;
    case AGG_KIND_COUNTER:
        b->sum += s->value;
        break;
    case AGG_KIND_GAUGE:
        take_value(b, s->value, first);
        if (first || s->time_us >= b->last_time_us) {
            b->last = s->value;
            b->last_time_us = s->time_us;
        }
        break;
    default:
        break;
    }
    b->count++;
    if (s->error) {
        b->errors++;
    }
    if (late) {
        b->late++;
    }
    return 0;
}

int agg_bucket_merge(agg_bucket_t *dst, const agg_bucket_t *src)
{
    if (src->kind == AGG_KIND_NONE || src->count == 0) {
        return 0;
    }
    if (dst->kind == AGG_KIND_NONE) {
        int rc =
            set_identity(dst, src->service, src->environment, src->name, src->kind, src->start_s);
        if (rc != 0) {
            return rc;
        }
    } else if (dst->kind != src->kind) {
        return TC_EINVAL;
    }
    int rc = tc_sketch_merge(&dst->sketch, &src->sketch);
    if (rc != 0) {
        return rc;
    }
    bool first = dst->count == 0;
    if (src->kind != AGG_KIND_COUNTER && src->kind != AGG_KIND_ERRORS) {
        take_value(dst, src->min, first);
        take_value(dst, src->max, first);
    }
    if (first || src->last_time_us > dst->last_time_us) {
        dst->last = src->last;
        dst->last_time_us = src->last_time_us;
    }
    dst->count += src->count;
    dst->errors += src->errors;
    dst->late += src->late;
    dst->sum += src->sum;
    return 0;
}

/* Fills `pb` (and `sk`) with views of the bucket's fields; nothing is copied. */
static void to_pb(const agg_bucket_t *b, Tocsin__V1__Bucket *pb, Tocsin__V1__Sketch *sk)
{
    tocsin__v1__bucket__init(pb);
    tocsin__v1__sketch__init(sk);
    pb->service = b->service ? b->service : "";
    pb->environment = b->environment ? b->environment : "";
    pb->name = b->name ? b->name : "";
    pb->kind = (Tocsin__V1__SeriesKind)b->kind;
    pb->start_s = b->start_s;
    pb->width_s = b->width_s;
    pb->count = b->count;
    pb->errors = b->errors;
    pb->late = b->late;
    pb->sum = b->sum;
    pb->min = b->min;
    pb->max = b->max;
    pb->last = b->last;
    pb->last_time_us = b->last_time_us;
    if (b->sketch.count > 0) {
        sk->schema = b->sketch.schema;
        sk->zero_count = b->sketch.zero_count;
        sk->offset = b->sketch.offset;
        sk->n_counts = b->sketch.len;
        sk->counts = b->sketch.counts;
        pb->sketch = sk;
    }
}

int agg_bucket_encode(const agg_bucket_t *b, uint64_t revision, uint8_t **out, size_t *len)
{
    Tocsin__V1__Bucket pb;
    Tocsin__V1__Sketch sk;
    to_pb(b, &pb, &sk);
    size_t n = tocsin__v1__bucket__get_packed_size(&pb);
    uint8_t *buf = malloc(8 + n);
    if (!buf) {
        return TC_ENOMEM;
    }
    tc_be64_put(buf, revision);
    tocsin__v1__bucket__pack(&pb, buf + 8);
    *out = buf;
    *len = 8 + n;
    return 0;
}

static bool kind_known(int kind)
{
    return kind >= AGG_KIND_REQUESTS && kind <= AGG_KIND_TIMING;
}

static int validate_pb(const Tocsin__V1__Bucket *pb)
{
    if (!pb->service || !pb->service[0] || !text_ok(pb->service, AGG_MAX_SERVICE) ||
        !pb->environment || !pb->environment[0] || !text_ok(pb->environment, AGG_MAX_ENVIRONMENT) ||
        !pb->name || !pb->name[0] || !text_ok(pb->name, AGG_MAX_NAME)) {
        return TC_EUTF8;
    }
    if (!kind_known((int)pb->kind) || pb->width_s != AGG_BUCKET_WIDTH_S ||
        pb->start_s % AGG_BUCKET_WIDTH_S != 0 || pb->count == 0 || pb->errors > pb->count ||
        pb->late > pb->count) {
        return TC_EINVAL;
    }
    if (!isfinite(pb->sum) || !isfinite(pb->min) || !isfinite(pb->max) || !isfinite(pb->last)) {
        return TC_EINVAL;
    }
    return 0;
}

int agg_bucket_decode(const uint8_t *data, size_t len, agg_bucket_t *b, uint64_t *revision)
{
    agg_bucket_init(b);
    if (len > AGG_MAX_STORED_BYTES) {
        return TC_ETOOBIG;
    }
    if (len < 8) {
        return TC_EPARSE;
    }
    Tocsin__V1__Bucket *pb = tocsin__v1__bucket__unpack(NULL, len - 8, data + 8);
    if (!pb) {
        return TC_EPARSE;
    }
    int rc = validate_pb(pb);
    if (rc == 0 && pb->sketch) {
        const Tocsin__V1__Sketch *sk = pb->sketch;
        if (sk->schema != TC_SKETCH_SCHEMA) {
            rc = TC_EINVAL;
        } else {
            rc = tc_sketch_load(&b->sketch, sk->schema, sk->zero_count, sk->offset, sk->counts,
                                sk->n_counts);
        }
    }
    if (rc == 0) {
        bool sketched = pb->kind == TOCSIN__V1__SERIES_KIND__SERIES_KIND_REQUESTS ||
                        pb->kind == TOCSIN__V1__SERIES_KIND__SERIES_KIND_TIMING;
        if (b->sketch.count != (sketched ? pb->count : 0)) {
            rc = TC_EINVAL;
        }
    }
    if (rc == 0) {
        rc = set_identity(b, pb->service, pb->environment, pb->name, (agg_kind_t)pb->kind,
                          pb->start_s);
    }
    if (rc == 0) {
        b->width_s = pb->width_s;
        b->count = pb->count;
        b->errors = pb->errors;
        b->late = pb->late;
        b->sum = pb->sum;
        b->min = pb->min;
        b->max = pb->max;
        b->last = pb->last;
        b->last_time_us = pb->last_time_us;
        *revision = tc_be64_get(data);
    }
    tocsin__v1__bucket__free_unpacked(pb, NULL);
    return rc;
}

int agg_rollup_encode(const agg_bucket_t *b, uint64_t revision, const char *producer, uint8_t **out,
                      size_t *len)
{
    Tocsin__V1__Bucket pb;
    Tocsin__V1__Sketch sk;
    to_pb(b, &pb, &sk);
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = (char *)(producer ? producer : "");
    r.revision = revision;
    r.body_case = TOCSIN__V1__ROLLUP__BODY_BUCKET;
    r.bucket = &pb;
    size_t n = tocsin__v1__rollup__get_packed_size(&r);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        return TC_ENOMEM;
    }
    tocsin__v1__rollup__pack(&r, buf);
    *out = buf;
    *len = n;
    return 0;
}

size_t agg_rollup_key(const agg_bucket_t *b, char *buf, size_t cap)
{
    size_t ls = strlen(b->service), le = strlen(b->environment), ln = strlen(b->name);
    size_t need = ls + 1 + le + 1 + ln;
    if (need > cap) {
        return 0;
    }
    memcpy(buf, b->service, ls);
    buf[ls] = '\0';
    memcpy(buf + ls + 1, b->environment, le);
    buf[ls + 1 + le] = '\0';
    memcpy(buf + ls + 2 + le, b->name, ln);
    return need;
}
