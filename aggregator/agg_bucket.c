#include "agg_bucket.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

#define STORE_FORMAT 1
#define F_SKETCH 0x01
#define F_USERS 0x02
#define F_VALUES 0x04
#define F_SAMPLED 0x08 /* sampled_events and sampled_count follow late */

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

int64_t agg_bucket_align(int64_t time_us, uint32_t width_s)
{
    const int64_t width_us = (int64_t)width_s * 1000000;
    int64_t q = time_us / width_us;
    /* C division truncates toward zero; step down once more for negative remainders. */
    if (time_us % width_us < 0) {
        q--;
    }
    return q * width_s;
}

int agg_slo_parse(const char *text, agg_slo_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *s = text ? text : "";
    while (*s == ' ') {
        s++;
    }
    if (!*s) {
        return 0;
    }
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char item[32];
        if (n == 0 || n >= sizeof(item) || out->n >= AGG_SLO_MAX) {
            return TC_EINVAL;
        }
        memcpy(item, s, n);
        item[n] = '\0';
        int64_t ms = 0;
        if (tc_duration_parse(item, &ms) != 0 || ms <= 0 ||
            (out->n > 0 && (uint64_t)ms * 1000 <= out->us[out->n - 1])) {
            return TC_EINVAL;
        }
        out->us[out->n++] = (uint64_t)ms * 1000;
        if (!comma) {
            return 0;
        }
        s = comma + 1;
    }
}

void agg_event_sample(const agg_event_t *ev, agg_sample_t *out)
{
    memset(out, 0, sizeof(*out));
    out->service = ev->service;
    out->environment = ev->environment;
    out->time_us = ev->time_us;
    out->start_s = agg_bucket_align(ev->time_us, AGG_BUCKET_WIDTH_S);
    out->weight = ev->weight ? ev->weight : 1;
    out->sampled = ev->sample_rate > 0 && ev->sample_rate < 1;
    if (ev->user_id.n > 0) {
        out->has_user = true;
        out->user_hash = tc_hll_hash(ev->user_id.p, ev->user_id.n);
    }
    switch (ev->body) {
    case AGG_BODY_REQUEST:
        out->kind = AGG_KIND_REQUESTS;
        out->name = ev->route;
        out->error = ev->status >= 500 || ev->failed;
        out->has_value = true;
        out->value = (double)ev->duration_us;
        break;
    case AGG_BODY_ERROR:
        out->kind = AGG_KIND_ERRORS;
        out->name.p = AGG_ERRORS_NAME;
        out->name.n = (uint32_t)strlen(AGG_ERRORS_NAME);
        out->error = true;
        break;
    case AGG_BODY_METRIC:
        out->name = ev->metric_name;
        out->has_value = true;
        out->value = ev->value;
        out->has_user = false;
        switch (ev->metric_kind) {
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
        out->kind = AGG_KIND_NONE;
        out->name.p = "";
        out->name.n = 0;
        out->has_user = false;
        break;
    }
}

void agg_bucket_init(agg_bucket_t *b)
{
    memset(b, 0, sizeof(*b));
    b->width_s = AGG_BUCKET_WIDTH_S;
    tc_sketch_init(&b->sketch, TC_SKETCH_SCHEMA);
    tc_hll_init(&b->users);
}

void agg_bucket_fini(agg_bucket_t *b)
{
    tc_sketch_fini(&b->sketch);
    tc_hll_fini(&b->users);
    b->count = 0;
    b->kind = AGG_KIND_NONE;
}

void agg_bucket_reset(agg_bucket_t *b)
{
    tc_sketch_t sk = b->sketch;
    tc_hll_t hll = b->users;
    memset(b, 0, sizeof(*b));
    b->width_s = AGG_BUCKET_WIDTH_S;
    b->sketch = sk;
    b->users = hll;
    tc_sketch_reset(&b->sketch);
    b->sketch.schema = TC_SKETCH_SCHEMA;
    tc_hll_reset(&b->users);
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

static bool has_values(agg_kind_t kind)
{
    return kind == AGG_KIND_REQUESTS || kind == AGG_KIND_COUNTER || kind == AGG_KIND_GAUGE ||
           kind == AGG_KIND_TIMING;
}

static bool sketched(agg_kind_t kind)
{
    return kind == AGG_KIND_REQUESTS || kind == AGG_KIND_TIMING;
}

int agg_bucket_begin(agg_bucket_t *b, agg_kind_t kind, const agg_slo_t *slo)
{
    if (kind == AGG_KIND_NONE) {
        return TC_EINVAL;
    }
    if (b->kind == AGG_KIND_NONE) {
        b->kind = kind;
        if (kind == AGG_KIND_REQUESTS && slo) {
            b->nslo = slo->n;
            memcpy(b->slo_us, slo->us, sizeof(b->slo_us));
            memset(b->slow, 0, sizeof(b->slow));
        }
        return 0;
    }
    return b->kind == kind ? 0 : TC_EINVAL;
}

int agg_bucket_apply(agg_bucket_t *b, const agg_sample_t *s, const agg_slo_t *slo)
{
    int rc = agg_bucket_begin(b, s->kind, slo);
    if (rc != 0) {
        return rc;
    }
    const uint64_t w = s->weight ? s->weight : 1;
    bool first = b->count == 0;
    if (sketched(s->kind)) {
        rc = tc_sketch_add(&b->sketch, s->value, w);
        if (rc != 0) {
            return rc;
        }
    }
    if (s->has_user && (s->kind == AGG_KIND_REQUESTS || s->kind == AGG_KIND_ERRORS)) {
        rc = tc_hll_add_hash(&b->users, s->user_hash);
        if (rc != 0) {
            return rc;
        }
    }
    switch (s->kind) {
    case AGG_KIND_REQUESTS:
        for (uint32_t i = 0; i < b->nslo; i++) {
            if (s->value > (double)b->slo_us[i]) {
                b->slow[i] += w;
            }
        }
        /* fall through */
    case AGG_KIND_TIMING:
        b->sum += w == 1 ? s->value : s->value * (double)w;
        take_value(b, s->value, first);
        break;
    case AGG_KIND_COUNTER:
        b->sum += w == 1 ? s->value : s->value * (double)w;
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
    b->count += w;
    if (s->error) {
        b->errors += w;
    }
    if (s->sampled) {
        b->sampled_events++;
        b->sampled_count += w;
    }
    return 0;
}

int agg_bucket_merge(agg_bucket_t *dst, const agg_bucket_t *src)
{
    if (src->kind == AGG_KIND_NONE) {
        return 0;
    }
    bool empty = dst->kind == AGG_KIND_NONE;
    if (empty) {
        dst->kind = src->kind;
        dst->nslo = src->nslo;
        memcpy(dst->slo_us, src->slo_us, sizeof(dst->slo_us));
        memset(dst->slow, 0, sizeof(dst->slow));
    } else if (dst->kind != src->kind) {
        return TC_EINVAL;
    }
    int rc = tc_sketch_merge(&dst->sketch, &src->sketch);
    if (rc == 0) {
        rc = tc_hll_merge(&dst->users, &src->users);
    }
    if (rc != 0) {
        return rc;
    }
    /* Slow counters add where both have the threshold; the others are dropped. */
    uint32_t k = 0;
    for (uint32_t i = 0; i < dst->nslo; i++) {
        for (uint32_t j = 0; j < src->nslo; j++) {
            if (src->slo_us[j] == dst->slo_us[i]) {
                dst->slo_us[k] = dst->slo_us[i];
                dst->slow[k] = dst->slow[i] + src->slow[j];
                k++;
                break;
            }
        }
    }
    dst->nslo = k;
    if (src->count > 0 && has_values(src->kind) && src->kind != AGG_KIND_COUNTER) {
        bool first = dst->count == 0;
        take_value(dst, src->min, first);
        take_value(dst, src->max, first);
        if (first || src->last_time_us > dst->last_time_us) {
            dst->last = src->last;
            dst->last_time_us = src->last_time_us;
        }
    }
    dst->count += src->count;
    dst->errors += src->errors;
    dst->late += src->late;
    dst->sampled_events += src->sampled_events;
    dst->sampled_count += src->sampled_count;
    dst->sum += src->sum;
    if (src->source_offset > dst->source_offset) {
        dst->source_offset = src->source_offset;
    }
    return 0;
}

int agg_bucket_copy(agg_bucket_t *dst, const agg_bucket_t *src)
{
    agg_bucket_reset(dst);
    int rc = agg_bucket_merge(dst, src);
    if (rc != 0) {
        return rc;
    }
    dst->width_s = src->width_s;
    dst->min = src->min;
    dst->max = src->max;
    dst->last = src->last;
    dst->last_time_us = src->last_time_us;
    dst->source_offset = src->source_offset;
    return 0;
}

/* ---- the stored form --------------------------------------------------------------------- */

static size_t uv_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t uv_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static uint64_t zz(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzz(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static size_t f64_put(uint8_t *p, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof(bits));
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(bits >> (8 * i));
    }
    return 8;
}

static uint8_t store_flags(const agg_bucket_t *b)
{
    uint8_t f = 0;
    if (b->sketch.count > 0) {
        f |= F_SKETCH;
    }
    if (!tc_hll_empty(&b->users)) {
        f |= F_USERS;
    }
    if (has_values(b->kind)) {
        f |= F_VALUES;
    }
    if (b->sampled_events || b->sampled_count) {
        f |= F_SAMPLED;
    }
    return f;
}

size_t agg_bucket_store_size(const agg_bucket_t *b)
{
    uint8_t f = store_flags(b);
    size_t n = 4 + uv_size((uint64_t)b->source_offset) + uv_size(b->count) + uv_size(b->errors) +
               uv_size(b->late) + 1;
    if (f & F_SAMPLED) {
        n += uv_size(b->sampled_events) + uv_size(b->sampled_count);
    }
    for (uint32_t i = 0; i < b->nslo; i++) {
        n += uv_size(b->slo_us[i]) + uv_size(b->slow[i]);
    }
    if (f & F_VALUES) {
        n += 32 + uv_size(zz(b->last_time_us));
    }
    if (f & F_SKETCH) {
        /* The bins that are not zero, as (gap from the previous one, count) pairs. */
        uint32_t nnz = 0, prev = 0;
        size_t pairs = 0;
        for (uint32_t i = 0; i < b->sketch.len; i++) {
            if (b->sketch.counts[i]) {
                pairs += uv_size(i - prev) + uv_size(b->sketch.counts[i]);
                prev = i;
                nnz++;
            }
        }
        n += uv_size(b->sketch.zero_count) + uv_size(zz(b->sketch.offset)) + uv_size(nnz) + pairs;
    }
    if (f & F_USERS) {
        size_t h = tc_hll_encoded_size(&b->users);
        n += uv_size(h) + h;
    }
    return n;
}

size_t agg_bucket_store_encode(const agg_bucket_t *b, uint8_t *out)
{
    uint8_t f = store_flags(b);
    size_t n = 0;
    out[n++] = STORE_FORMAT;
    out[n++] = (uint8_t)b->kind;
    out[n++] = (uint8_t)b->width_s;
    out[n++] = f;
    n += uv_put(out + n, (uint64_t)b->source_offset);
    n += uv_put(out + n, b->count);
    n += uv_put(out + n, b->errors);
    n += uv_put(out + n, b->late);
    if (f & F_SAMPLED) {
        n += uv_put(out + n, b->sampled_events);
        n += uv_put(out + n, b->sampled_count);
    }
    out[n++] = (uint8_t)b->nslo;
    for (uint32_t i = 0; i < b->nslo; i++) {
        n += uv_put(out + n, b->slo_us[i]);
        n += uv_put(out + n, b->slow[i]);
    }
    if (f & F_VALUES) {
        n += f64_put(out + n, b->sum);
        n += f64_put(out + n, b->min);
        n += f64_put(out + n, b->max);
        n += f64_put(out + n, b->last);
        n += uv_put(out + n, zz(b->last_time_us));
    }
    if (f & F_SKETCH) {
        uint32_t nnz = 0, prev = 0;
        for (uint32_t i = 0; i < b->sketch.len; i++) {
            nnz += b->sketch.counts[i] != 0;
        }
        n += uv_put(out + n, b->sketch.zero_count);
        n += uv_put(out + n, zz(b->sketch.offset));
        n += uv_put(out + n, nnz);
        for (uint32_t i = 0; i < b->sketch.len; i++) {
            if (b->sketch.counts[i]) {
                n += uv_put(out + n, i - prev);
                n += uv_put(out + n, b->sketch.counts[i]);
                prev = i;
            }
        }
    }
    if (f & F_USERS) {
        size_t h = tc_hll_encoded_size(&b->users);
        n += uv_put(out + n, h);
        n += tc_hll_encode(&b->users, out + n);
    }
    return n;
}

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

static inline bool rd_uv(rd_t *r, uint64_t *out)
{
    if (r->p < r->end && *r->p < 0x80) { /* the common one-byte case */
        *out = *r->p++;
        return true;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10 && r->p < r->end; i++) {
        uint8_t c = *r->p++;
        if (i == 9 && c > 1) {
            return false;
        }
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool rd_f64(rd_t *r, double *out)
{
    if (r->end - r->p < 8) {
        return false;
    }
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) {
        bits = (bits << 8) | r->p[i];
    }
    memcpy(out, &bits, sizeof(*out));
    r->p += 8;
    return isfinite(*out);
}

/* Checks the invariants every bucket keeps, wherever it was decoded from. */
int agg_bucket_check(const agg_bucket_t *b)
{
    if (b->kind < AGG_KIND_REQUESTS || b->kind > AGG_KIND_TIMING) {
        return TC_EINVAL;
    }
    if (b->width_s != AGG_BUCKET_WIDTH_S && b->width_s != AGG_ROLLUP_WIDTH_S) {
        return TC_EINVAL;
    }
    if ((b->count == 0 && b->late == 0) || b->errors > b->count || b->source_offset < 0 ||
        b->sampled_count > b->count || b->sampled_events > b->sampled_count) {
        return TC_EINVAL;
    }
    if (b->nslo > AGG_SLO_MAX || (b->nslo > 0 && b->kind != AGG_KIND_REQUESTS)) {
        return TC_EINVAL;
    }
    for (uint32_t i = 0; i < b->nslo; i++) {
        if (b->slo_us[i] == 0 || b->slow[i] > b->count ||
            (i > 0 && b->slo_us[i] <= b->slo_us[i - 1])) {
            return TC_EINVAL;
        }
    }
    if (b->sketch.count != (sketched(b->kind) ? b->count : 0)) {
        return TC_EINVAL;
    }
    if (!tc_hll_empty(&b->users) && b->kind != AGG_KIND_REQUESTS && b->kind != AGG_KIND_ERRORS) {
        return TC_EINVAL;
    }
    if (!isfinite(b->sum) || !isfinite(b->min) || !isfinite(b->max) || !isfinite(b->last)) {
        return TC_EINVAL;
    }
    return 0;
}

/* A stored bucket, parsed and checked but not built: the sketch's bins and the users are
 * left in the bytes, so that a query merges them straight into its accumulator. */
typedef struct {
    agg_kind_t kind;
    uint32_t width_s;
    int64_t source_offset;
    uint64_t count, errors, late;
    uint64_t sampled_events, sampled_count;
    uint32_t nslo;
    uint64_t slo_us[AGG_SLO_MAX];
    uint64_t slow[AGG_SLO_MAX];
    bool values;
    double sum, min, max, last;
    int64_t last_time_us;
    uint64_t zero;
    int32_t offset;
    uint64_t nnz;
    const uint8_t *pairs; /* nnz (gap, count) varint pairs, up to pairs_end */
    const uint8_t *pairs_end;
    const uint8_t *users; /* a serialized tc_hll, users_len bytes (0: none) */
    size_t users_len;
} stored_t;

/* Walks the sketch's (gap, count) pairs, checking them; with `sk` not NULL, adds them (the
 * first `limit` pairs only; all with UINT64_MAX). */
static int walk_pairs(const stored_t *v, const uint8_t *end, tc_sketch_t *sk, uint64_t *total,
                      const uint8_t **after)
{
    rd_t r = {v->pairs, end};
    int64_t idx = v->offset;
    uint64_t sum = v->zero;
    /* The bins a sketch of our schema can have (tc_sketch clamps to them). */
    const int64_t lo = tc_sketch_index(TC_SKETCH_SCHEMA, TC_SKETCH_MIN_VALUE);
    const int64_t hi = tc_sketch_index(TC_SKETCH_SCHEMA, TC_SKETCH_MAX_VALUE);
    for (uint64_t i = 0; i < v->nnz; i++) {
        uint64_t gap, c;
        if (!rd_uv(&r, &gap) || !rd_uv(&r, &c) || c == 0 || (i > 0 && gap == 0) ||
            gap >= TC_SKETCH_MAX_BINS) {
            return TC_EPARSE;
        }
        idx += (int64_t)gap;
        if (idx < lo || idx > hi || sum + c < sum) {
            return TC_EINVAL;
        }
        sum += c;
        if (sk) {
            int rc = tc_sketch_add_bin(sk, (int32_t)idx, c);
            if (rc != 0) {
                return rc;
            }
        }
    }
    if (total) {
        *total = sum;
    }
    if (after) {
        *after = r.p;
    }
    return 0;
}

/* Parses and checks everything a stored bucket promises (see agg_bucket_store_decode). */
static int parse_stored(const uint8_t *data, size_t len, stored_t *v)
{
    memset(v, 0, sizeof(*v));
    if (len > AGG_MAX_STORED_BYTES) {
        return TC_ETOOBIG;
    }
    if (len < 5 || data[0] != STORE_FORMAT) {
        return TC_EPARSE;
    }
    rd_t r = {data + 4, data + len};
    v->kind = (agg_kind_t)data[1];
    v->width_s = data[2];
    uint8_t f = data[3];
    uint64_t off;
    if ((f & ~(F_SKETCH | F_USERS | F_VALUES | F_SAMPLED)) || !rd_uv(&r, &off) ||
        off > INT64_MAX || !rd_uv(&r, &v->count) || !rd_uv(&r, &v->errors) ||
        !rd_uv(&r, &v->late)) {
        return TC_EPARSE;
    }
    if ((f & F_SAMPLED) &&
        (!rd_uv(&r, &v->sampled_events) || !rd_uv(&r, &v->sampled_count))) {
        return TC_EPARSE;
    }
    if (r.p >= r.end) {
        return TC_EPARSE;
    }
    v->source_offset = (int64_t)off;
    v->nslo = *r.p++;
    if (v->nslo > AGG_SLO_MAX) {
        return TC_EPARSE;
    }
    for (uint32_t i = 0; i < v->nslo; i++) {
        if (!rd_uv(&r, &v->slo_us[i]) || !rd_uv(&r, &v->slow[i])) {
            return TC_EPARSE;
        }
    }
    if (f & F_VALUES) {
        uint64_t lt;
        if (!rd_f64(&r, &v->sum) || !rd_f64(&r, &v->min) || !rd_f64(&r, &v->max) ||
            !rd_f64(&r, &v->last) || !rd_uv(&r, &lt)) {
            return TC_EPARSE;
        }
        v->values = true;
        v->last_time_us = unzz(lt);
    }
    uint64_t total = 0;
    if (f & F_SKETCH) {
        uint64_t zoff;
        if (!rd_uv(&r, &v->zero) || !rd_uv(&r, &zoff) || !rd_uv(&r, &v->nnz) ||
            v->nnz > TC_SKETCH_MAX_BINS || v->nnz > (uint64_t)(r.end - r.p) / 2) {
            return TC_EPARSE;
        }
        int64_t o = unzz(zoff);
        if (o < INT32_MIN || o > INT32_MAX) {
            return TC_EINVAL;
        }
        v->offset = (int32_t)o;
        v->pairs = r.p;
        int rc = walk_pairs(v, r.end, NULL, &total, &r.p);
        v->pairs_end = r.p;
        if (rc != 0) {
            return rc;
        }
        if (total == 0) {
            return TC_EPARSE;
        }
    }
    if (f & F_USERS) {
        uint64_t h;
        if (!rd_uv(&r, &h) || h == 0 || h > (uint64_t)(r.end - r.p)) {
            return TC_EPARSE;
        }
        v->users = r.p;
        v->users_len = (size_t)h;
        if (tc_hll_check_encoded(v->users, v->users_len) != 0) {
            return TC_EPARSE;
        }
        r.p += h;
    }
    if (r.p != r.end) {
        return TC_EPARSE;
    }
    /* The invariants of agg_bucket_check, on the parsed figures. */
    if (v->kind < AGG_KIND_REQUESTS || v->kind > AGG_KIND_TIMING ||
        (v->width_s != AGG_BUCKET_WIDTH_S && v->width_s != AGG_ROLLUP_WIDTH_S) ||
        (v->count == 0 && v->late == 0) || v->errors > v->count ||
        v->sampled_count > v->count || v->sampled_events > v->sampled_count ||
        (v->nslo > 0 && v->kind != AGG_KIND_REQUESTS) ||
        total != (sketched(v->kind) ? v->count : 0) ||
        (v->users_len && v->kind != AGG_KIND_REQUESTS && v->kind != AGG_KIND_ERRORS)) {
        return TC_EINVAL;
    }
    for (uint32_t i = 0; i < v->nslo; i++) {
        if (v->slo_us[i] == 0 || v->slow[i] > v->count ||
            (i > 0 && v->slo_us[i] <= v->slo_us[i - 1])) {
            return TC_EINVAL;
        }
    }
    return 0;
}

/* Adds the parsed sketch bins to `sk`. */
static int add_stored_sketch(const stored_t *v, tc_sketch_t *sk)
{
    if (!v->pairs) {
        return 0;
    }
    int rc = tc_sketch_add(sk, 0.0, v->zero);
    if (rc == 0) {
        rc = walk_pairs(v, v->pairs_end, sk, NULL, NULL);
    }
    return rc;
}

int agg_bucket_store_decode(const uint8_t *data, size_t len, agg_bucket_t *b)
{
    agg_bucket_reset(b);
    stored_t v;
    int rc = parse_stored(data, len, &v);
    if (rc != 0) {
        return rc;
    }
    b->kind = v.kind;
    b->width_s = v.width_s;
    b->source_offset = v.source_offset;
    b->count = v.count;
    b->errors = v.errors;
    b->late = v.late;
    b->sampled_events = v.sampled_events;
    b->sampled_count = v.sampled_count;
    b->nslo = v.nslo;
    memcpy(b->slo_us, v.slo_us, sizeof(b->slo_us));
    memcpy(b->slow, v.slow, sizeof(b->slow));
    b->sum = v.sum;
    b->min = v.min;
    b->max = v.max;
    b->last = v.last;
    b->last_time_us = v.last_time_us;
    rc = add_stored_sketch(&v, &b->sketch);
    if (rc == 0 && v.users_len) {
        rc = tc_hll_decode(&b->users, v.users, v.users_len);
    }
    if (rc != 0) {
        agg_bucket_reset(b);
    }
    return rc;
}

int agg_bucket_store_merge(agg_bucket_t *dst, const uint8_t *data, size_t len)
{
    stored_t v;
    int rc = parse_stored(data, len, &v);
    if (rc != 0) {
        return rc;
    }
    if (dst->kind != AGG_KIND_NONE && dst->kind != v.kind) {
        return TC_EINVAL;
    }
    /* The figures, as agg_bucket_merge combines them. */
    agg_bucket_t src;
    memset(&src, 0, sizeof(src));
    src.kind = v.kind;
    src.count = v.count;
    src.errors = v.errors;
    src.late = v.late;
    src.sampled_events = v.sampled_events;
    src.sampled_count = v.sampled_count;
    src.nslo = v.nslo;
    memcpy(src.slo_us, v.slo_us, sizeof(src.slo_us));
    memcpy(src.slow, v.slow, sizeof(src.slow));
    src.sum = v.sum;
    src.min = v.min;
    src.max = v.max;
    src.last = v.last;
    src.last_time_us = v.last_time_us;
    src.source_offset = v.source_offset;
    tc_sketch_init(&src.sketch, TC_SKETCH_SCHEMA);
    tc_hll_init(&src.users);
    rc = agg_bucket_merge(dst, &src); /* an empty sketch and set: adds nothing of them */
    if (rc == 0) {
        rc = add_stored_sketch(&v, &dst->sketch);
    }
    if (rc == 0 && v.users_len) {
        rc = tc_hll_merge_encoded(&dst->users, v.users, v.users_len);
    }
    return rc;
}

/* ---- rollups ------------------------------------------------------------------------------- */

uint64_t agg_bucket_revision(const agg_bucket_t *b, bool open)
{
    return 2 * (uint64_t)b->source_offset + (open ? 0 : 1);
}

int agg_bucket_rollup_encode(const agg_series_id_t *id, int64_t start_s, const agg_bucket_t *b,
                             uint32_t partition, bool open, const char *producer, uint8_t **out,
                             size_t *len)
{
    Tocsin__V1__Bucket pb = TOCSIN__V1__BUCKET__INIT;
    Tocsin__V1__Sketch sk = TOCSIN__V1__SKETCH__INIT;
    pb.service = (char *)id->service;
    pb.environment = (char *)id->environment;
    pb.name = (char *)id->name;
    pb.kind = (Tocsin__V1__SeriesKind)b->kind;
    pb.start_s = start_s;
    pb.width_s = b->width_s;
    pb.count = b->count;
    pb.errors = b->errors;
    pb.late = b->late;
    pb.sampled_events = b->sampled_events;
    pb.sampled_count = b->sampled_count;
    pb.sum = b->sum;
    pb.min = b->min;
    pb.max = b->max;
    pb.last = b->last;
    pb.last_time_us = b->last_time_us;
    pb.open = open;
    pb.source_partition = partition;
    pb.source_offset = b->source_offset;
    pb.n_slo_thresholds_us = b->nslo;
    pb.slo_thresholds_us = (uint64_t *)b->slo_us;
    pb.n_slow = b->nslo;
    pb.slow = (uint64_t *)b->slow;
    if (b->sketch.count > 0) {
        sk.schema = b->sketch.schema;
        sk.zero_count = b->sketch.zero_count;
        sk.offset = b->sketch.offset;
        sk.n_counts = b->sketch.len;
        sk.counts = b->sketch.counts;
        pb.sketch = &sk;
    }
    uint8_t *users = NULL;
    size_t hn = tc_hll_encoded_size(&b->users);
    if (hn > 0) {
        users = malloc(hn);
        if (!users) {
            return TC_ENOMEM;
        }
        tc_hll_encode(&b->users, users);
        pb.users.data = users;
        pb.users.len = hn;
    }
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = (char *)(producer ? producer : "");
    r.revision = agg_bucket_revision(b, open);
    r.body_case = TOCSIN__V1__ROLLUP__BODY_BUCKET;
    r.bucket = &pb;
    size_t n = tocsin__v1__rollup__get_packed_size(&r);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        free(users);
        return TC_ENOMEM;
    }
    tocsin__v1__rollup__pack(&r, buf);
    free(users);
    *out = buf;
    *len = n;
    return 0;
}

size_t agg_rollup_key(const agg_series_id_t *id, char *buf, size_t cap)
{
    size_t ls = strlen(id->service), le = strlen(id->environment), ln = strlen(id->name);
    size_t need = ls + 1 + le + 1 + ln;
    if (need > cap) {
        return 0;
    }
    memcpy(buf, id->service, ls);
    buf[ls] = '\0';
    memcpy(buf + ls + 1, id->environment, le);
    buf[ls + 1 + le] = '\0';
    memcpy(buf + ls + 2 + le, id->name, ln);
    return need;
}
