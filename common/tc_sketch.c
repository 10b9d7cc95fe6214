#include "tc_sketch.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

void tc_sketch_init(tc_sketch_t *s, int schema)
{
    memset(s, 0, sizeof(*s));
    s->schema = schema < 0 ? 0 : (schema > 8 ? 8 : schema);
}

void tc_sketch_fini(tc_sketch_t *s)
{
    free(s->counts);
    s->counts = NULL;
    s->len = s->cap = 0;
    s->count = s->zero_count = 0;
}

void tc_sketch_reset(tc_sketch_t *s)
{
    /* Bins past len are always zero (ensure_bin relies on it), so only the used ones are
     * cleared: a reused sketch costs what it held, not what it once grew to. */
    if (s->counts) {
        memset(s->counts, 0, s->len * sizeof(uint64_t));
    }
    s->len = 0;
    s->offset = 0;
    s->count = s->zero_count = 0;
}

double tc_sketch_relative_accuracy(int schema)
{
    double gamma = exp2(exp2(-schema));
    return (gamma - 1) / (gamma + 1);
}

static int32_t index_min(int schema)
{
    return (int32_t)ceil(log2(TC_SKETCH_MIN_VALUE) * exp2(schema));
}

static int32_t index_max(int schema)
{
    return (int32_t)ceil(log2(TC_SKETCH_MAX_VALUE) * exp2(schema));
}

int32_t tc_sketch_index(int schema, double v)
{
    double idx = ceil(log2(v) * exp2(schema));
    int32_t lo = index_min(schema), hi = index_max(schema);
    if (idx < lo) {
        return lo;
    }
    if (idx > hi) {
        return hi;
    }
    return (int32_t)idx;
}

double tc_sketch_bin_value(int schema, int32_t index)
{
    double gamma = exp2(exp2(-schema));
    /* The point of (gamma^(i-1), gamma^i] whose relative distance to both ends is alpha. */
    return 2.0 * exp2((double)index * exp2(-schema)) / (gamma + 1.0);
}

/* Makes room so that bin `index` is inside [offset, offset + len). */
static int ensure_bin(tc_sketch_t *s, int32_t index)
{
    if (s->len == 0) {
        if (s->cap == 0) {
            s->cap = 64;
            s->counts = calloc(s->cap, sizeof(uint64_t));
            if (!s->counts) {
                s->cap = 0;
                return TC_ENOMEM;
            }
        }
        s->offset = index;
        s->len = 1;
        return 0;
    }
    int64_t lo = s->offset, hi = (int64_t)s->offset + s->len - 1;
    if (index >= lo && index <= hi) {
        return 0;
    }
    int64_t nlo = index < lo ? index : lo;
    int64_t nhi = index > hi ? index : hi;
    uint32_t nlen = (uint32_t)(nhi - nlo + 1);
    if (nlen > s->cap) {
        uint32_t ncap = s->cap ? s->cap : 64;
        while (ncap < nlen) {
            ncap *= 2;
        }
        uint64_t *c = realloc(s->counts, ncap * sizeof(uint64_t));
        if (!c) {
            return TC_ENOMEM;
        }
        memset(c + s->cap, 0, (ncap - s->cap) * sizeof(uint64_t));
        s->counts = c;
        s->cap = ncap;
    }
    if (nlo < lo) {
        uint32_t shift = (uint32_t)(lo - nlo);
        memmove(s->counts + shift, s->counts, s->len * sizeof(uint64_t));
        memset(s->counts, 0, shift * sizeof(uint64_t));
        s->offset = (int32_t)nlo;
    }
    s->len = nlen;
    return 0;
}

int tc_sketch_add(tc_sketch_t *s, double v, uint64_t n)
{
    if (isnan(v) || v < 0) {
        return TC_EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    if (v <= TC_SKETCH_MIN_VALUE) {
        s->zero_count += n;
        s->count += n;
        return 0;
    }
    int32_t idx = tc_sketch_index(s->schema, v);
    int rc = ensure_bin(s, idx);
    if (rc != 0) {
        return rc;
    }
    s->counts[idx - s->offset] += n;
    s->count += n;
    return 0;
}

int tc_sketch_add_bin(tc_sketch_t *s, int32_t index, uint64_t n)
{
    /* Inside the bins in use, the bounds were checked when they were made room for. */
    bool inside = s->len > 0 && index >= s->offset && (int64_t)index < (int64_t)s->offset + s->len;
    if (!inside && (index < index_min(s->schema) || index > index_max(s->schema))) {
        return TC_EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    int rc = inside ? 0 : ensure_bin(s, index);
    if (rc != 0) {
        return rc;
    }
    s->counts[index - s->offset] += n;
    s->count += n;
    return 0;
}

int tc_sketch_merge(tc_sketch_t *dst, const tc_sketch_t *src)
{
    if (src->count == 0) {
        return 0;
    }
    if (dst->schema != src->schema) {
        return TC_EINVAL;
    }
    if (src->len > 0) {
        int rc = ensure_bin(dst, src->offset);
        if (rc == 0) {
            rc = ensure_bin(dst, src->offset + (int32_t)src->len - 1);
        }
        if (rc != 0) {
            return rc;
        }
        uint32_t base = (uint32_t)(src->offset - dst->offset);
        for (uint32_t i = 0; i < src->len; i++) {
            dst->counts[base + i] += src->counts[i];
        }
    }
    dst->zero_count += src->zero_count;
    dst->count += src->count;
    return 0;
}

double tc_sketch_quantile(const tc_sketch_t *s, double q)
{
    if (s->count == 0 || !(q >= 0.0 && q <= 1.0)) {
        return NAN;
    }
    uint64_t rank = (uint64_t)floor(q * (double)(s->count - 1));
    if (rank < s->zero_count) {
        return 0.0;
    }
    uint64_t cum = s->zero_count;
    for (uint32_t i = 0; i < s->len; i++) {
        cum += s->counts[i];
        if (cum > rank) {
            return tc_sketch_bin_value(s->schema, s->offset + (int32_t)i);
        }
    }
    /* Only reachable when count disagrees with the bins (a corrupt load). */
    return s->len ? tc_sketch_bin_value(s->schema, s->offset + (int32_t)s->len - 1) : 0.0;
}

int tc_sketch_load(tc_sketch_t *s, int schema, uint64_t zero_count, int32_t offset,
                   const uint64_t *counts, size_t len)
{
    if (schema < 0 || schema > 8 || len > TC_SKETCH_MAX_BINS) {
        return TC_EINVAL;
    }
    if (len > 0 && (offset < index_min(schema) ||
                    (int64_t)offset + (int64_t)len - 1 > index_max(schema))) {
        return TC_EINVAL;
    }
    uint64_t total = zero_count;
    for (size_t i = 0; i < len; i++) {
        if (total + counts[i] < total) {
            return TC_EINVAL; /* overflow: not a sketch we wrote */
        }
        total += counts[i];
    }
    if (len > s->cap) {
        uint64_t *c = realloc(s->counts, len * sizeof(uint64_t));
        if (!c) {
            return TC_ENOMEM;
        }
        s->counts = c;
        s->cap = (uint32_t)len;
    }
    if (s->cap) {
        memset(s->counts, 0, s->cap * sizeof(uint64_t));
    }
    if (len) {
        memcpy(s->counts, counts, len * sizeof(uint64_t));
    }
    s->schema = schema;
    s->zero_count = zero_count;
    s->offset = len ? offset : 0;
    s->len = (uint32_t)len;
    s->count = total;
    return 0;
}
