#include "tc_hll.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

#define Q (64 - TC_HLL_P)
#define RANK_BITS 6
#define RANK_MASK 63u
#define ALPHA_INF 0.721347520444481703680

void tc_hll_init(tc_hll_t *h)
{
    memset(h, 0, sizeof(*h));
}

void tc_hll_fini(tc_hll_t *h)
{
    free(h->regs);
    free(h->sparse);
    memset(h, 0, sizeof(*h));
}

void tc_hll_reset(tc_hll_t *h)
{
    if (h->regs) {
        memset(h->regs, 0, TC_HLL_REGISTERS);
    }
    h->nsparse = 0;
    h->nnz = 0;
}

bool tc_hll_empty(const tc_hll_t *h)
{
    return h->regs ? h->nnz == 0 : h->nsparse == 0;
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* MurmurHash64A by Austin Appleby, as Redis's hyperloglog.c uses it (little-endian loads on
 * every host, so the same value hashes the same everywhere). */
uint64_t tc_hll_hash(const void *data, size_t len)
{
    const uint64_t m = 0xc6a4a7935bd1e995ULL;
    const int r = 47;
    const uint8_t *p = data;
    uint64_t h = 0xadc83b19ULL ^ ((uint64_t)len * m);
    size_t blocks = len / 8;
    for (size_t i = 0; i < blocks; i++) {
        uint64_t k = load_le64(p + 8 * i);
        k *= m;
        k ^= k >> r;
        k *= m;
        h ^= k;
        h *= m;
    }
    const uint8_t *tail = p + 8 * blocks;
    switch (len & 7) {
    case 7:
        h ^= (uint64_t)tail[6] << 48;
        /* fall through */
    case 6:
        h ^= (uint64_t)tail[5] << 40;
        /* fall through */
    case 5:
        h ^= (uint64_t)tail[4] << 32;
        /* fall through */
    case 4:
        h ^= (uint64_t)tail[3] << 24;
        /* fall through */
    case 3:
        h ^= (uint64_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint64_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint64_t)tail[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> r;
    h *= m;
    h ^= h >> r;
    return h;
}

/* Register and rank of a hash: the low P bits choose the register; the rank is 1 + the
 * number of trailing zeros of the remaining Q bits (Q + 1 when they are all zero). */
static void split_hash(uint64_t hash, uint32_t *reg, uint8_t *rank)
{
    *reg = (uint32_t)(hash & (TC_HLL_REGISTERS - 1));
    uint64_t rest = (hash >> TC_HLL_P) | (1ULL << Q);
    uint8_t n = 1;
    while (!(rest & 1)) {
        rest >>= 1;
        n++;
    }
    *rank = n;
}

int tc_hll_make_dense(tc_hll_t *h)
{
    if (h->regs) {
        return 0;
    }
    uint8_t *regs = calloc(TC_HLL_REGISTERS, 1);
    if (!regs) {
        return TC_ENOMEM;
    }
    for (uint32_t i = 0; i < h->nsparse; i++) {
        regs[h->sparse[i] >> RANK_BITS] = (uint8_t)(h->sparse[i] & RANK_MASK);
    }
    h->nnz = h->nsparse;
    free(h->sparse);
    h->sparse = NULL;
    h->nsparse = h->sparse_cap = 0;
    h->regs = regs;
    return 0;
}

/* First sparse entry whose register is at least `reg`. */
static uint32_t sparse_find(const tc_hll_t *h, uint32_t reg)
{
    uint32_t lo = 0, hi = h->nsparse;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((h->sparse[mid] >> RANK_BITS) < reg) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static int sparse_reserve(tc_hll_t *h, uint32_t n)
{
    if (n <= h->sparse_cap) {
        return 0;
    }
    uint32_t cap = h->sparse_cap ? h->sparse_cap : 16;
    while (cap < n) {
        cap *= 2;
    }
    uint32_t *s = realloc(h->sparse, cap * sizeof(*s));
    if (!s) {
        return TC_ENOMEM;
    }
    h->sparse = s;
    h->sparse_cap = cap;
    return 0;
}

static int set_max(tc_hll_t *h, uint32_t reg, uint8_t rank)
{
    if (h->regs) {
        if (rank > h->regs[reg]) {
            h->nnz += h->regs[reg] == 0;
            h->regs[reg] = rank;
        }
        return 0;
    }
    uint32_t i = sparse_find(h, reg);
    if (i < h->nsparse && (h->sparse[i] >> RANK_BITS) == reg) {
        if (rank > (h->sparse[i] & RANK_MASK)) {
            h->sparse[i] = (reg << RANK_BITS) | rank;
        }
        return 0;
    }
    if (h->nsparse >= TC_HLL_SPARSE_MEM) {
        int rc = tc_hll_make_dense(h);
        if (rc != 0) {
            return rc;
        }
        h->regs[reg] = rank;
        h->nnz++;
        return 0;
    }
    int rc = sparse_reserve(h, h->nsparse + 1);
    if (rc != 0) {
        return rc;
    }
    memmove(h->sparse + i + 1, h->sparse + i, (h->nsparse - i) * sizeof(*h->sparse));
    h->sparse[i] = (reg << RANK_BITS) | rank;
    h->nsparse++;
    return 0;
}

int tc_hll_add_hash(tc_hll_t *h, uint64_t hash)
{
    uint32_t reg;
    uint8_t rank;
    split_hash(hash, &reg, &rank);
    return set_max(h, reg, rank);
}

int tc_hll_add(tc_hll_t *h, const void *data, size_t len)
{
    return tc_hll_add_hash(h, tc_hll_hash(data, len));
}

/* Merges sorted sparse entries into a sparse `dst` in one pass (both ascend by register). */
static int merge_sparse(tc_hll_t *dst, const uint32_t *src, uint32_t n)
{
    uint32_t total = dst->nsparse + n;
    uint32_t *out = malloc((total ? total : 1) * sizeof(*out));
    if (!out) {
        return TC_ENOMEM;
    }
    uint32_t i = 0, j = 0, k = 0;
    while (i < dst->nsparse || j < n) {
        if (j == n || (i < dst->nsparse && (dst->sparse[i] >> RANK_BITS) < (src[j] >> RANK_BITS))) {
            out[k++] = dst->sparse[i++];
        } else if (i == dst->nsparse || (src[j] >> RANK_BITS) < (dst->sparse[i] >> RANK_BITS)) {
            out[k++] = src[j++];
        } else {
            out[k++] =
                (dst->sparse[i] & RANK_MASK) >= (src[j] & RANK_MASK) ? dst->sparse[i] : src[j];
            i++;
            j++;
        }
    }
    if (k > TC_HLL_SPARSE_MEM) {
        uint8_t *regs = calloc(TC_HLL_REGISTERS, 1);
        if (!regs) {
            free(out);
            return TC_ENOMEM;
        }
        for (uint32_t x = 0; x < k; x++) {
            regs[out[x] >> RANK_BITS] = (uint8_t)(out[x] & RANK_MASK);
        }
        free(out);
        free(dst->sparse);
        dst->sparse = NULL;
        dst->nsparse = dst->sparse_cap = 0;
        dst->regs = regs;
        dst->nnz = k;
        return 0;
    }
    free(dst->sparse);
    dst->sparse = out;
    dst->nsparse = k;
    dst->sparse_cap = total ? total : 1;
    return 0;
}

int tc_hll_merge(tc_hll_t *dst, const tc_hll_t *src)
{
    if (src->regs) {
        int rc = tc_hll_make_dense(dst);
        if (rc != 0) {
            return rc;
        }
        uint32_t nnz = 0;
        for (uint32_t i = 0; i < TC_HLL_REGISTERS; i++) {
            if (src->regs[i] > dst->regs[i]) {
                dst->regs[i] = src->regs[i];
            }
            nnz += dst->regs[i] != 0;
        }
        dst->nnz = nnz;
        return 0;
    }
    if (src->nsparse == 0) {
        return 0;
    }
    if (dst->regs) {
        for (uint32_t i = 0; i < src->nsparse; i++) {
            set_max(dst, src->sparse[i] >> RANK_BITS, (uint8_t)(src->sparse[i] & RANK_MASK));
        }
        return 0;
    }
    return merge_sparse(dst, src->sparse, src->nsparse);
}

/* Ertl's sigma and tau functions ("New cardinality estimation algorithms for HyperLogLog
 * sketches", 2017), as in Redis's hllSigma/hllTau. */
static double hll_sigma(double x)
{
    if (x == 1.0) {
        return INFINITY;
    }
    double y = 1.0, z = x, zp;
    do {
        x *= x;
        zp = z;
        z += x * y;
        y += y;
    } while (zp != z);
    return z;
}

static double hll_tau(double x)
{
    if (x == 0.0 || x == 1.0) {
        return 0.0;
    }
    double y = 1.0, z = 1.0 - x, zp;
    do {
        x = sqrt(x);
        zp = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
    } while (zp != z);
    return z / 3.0;
}

double tc_hll_count(const tc_hll_t *h)
{
    uint32_t histo[Q + 2];
    memset(histo, 0, sizeof(histo));
    if (h->regs) {
        for (uint32_t i = 0; i < TC_HLL_REGISTERS; i++) {
            histo[h->regs[i] <= Q + 1 ? h->regs[i] : Q + 1]++;
        }
    } else {
        if (h->nsparse == 0) {
            return 0.0;
        }
        histo[0] = TC_HLL_REGISTERS - h->nsparse;
        for (uint32_t i = 0; i < h->nsparse; i++) {
            uint32_t r = h->sparse[i] & RANK_MASK;
            histo[r <= Q + 1 ? r : Q + 1]++;
        }
    }
    if (histo[0] == TC_HLL_REGISTERS) {
        return 0.0;
    }
    double m = TC_HLL_REGISTERS;
    double z = m * hll_tau((m - histo[Q + 1]) / m);
    for (int j = Q; j >= 1; j--) {
        z += histo[j];
        z *= 0.5;
    }
    z += m * hll_sigma(histo[0] / m);
    return round(ALPHA_INF * m * m / z);
}

static size_t varint_size(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t varint_put(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint of at most 32 bits; returns its length, or 0 when malformed or cut. */
static inline size_t varint_get(const uint8_t *p, size_t len, uint32_t *out)
{
    if (len > 0 && p[0] < 0x80) { /* the common one-byte case */
        *out = p[0];
        return 1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 5; i++) {
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (v > UINT32_MAX) {
                return 0;
            }
            *out = (uint32_t)v;
            return i + 1;
        }
    }
    return 0;
}

/* The next set register at or after `i` (TC_HLL_REGISTERS when none): eight registers at a
 * time, since a set written sparse has most of them zero. */
static uint32_t next_set(const uint8_t *regs, uint32_t i)
{
    while (i < TC_HLL_REGISTERS && (i & 7)) {
        if (regs[i]) {
            return i;
        }
        i++;
    }
    while (i < TC_HLL_REGISTERS) {
        uint64_t w;
        memcpy(&w, regs + i, sizeof(w));
        if (w) {
            while (!regs[i]) {
                i++;
            }
            return i;
        }
        i += 8;
    }
    return TC_HLL_REGISTERS;
}

/* The size of the sparse form of a dense set (at most TC_HLL_SPARSE_MAX registers set). */
static size_t dense_as_sparse_size(const tc_hll_t *h)
{
    size_t n = 2 + varint_size(h->nnz);
    uint32_t prev = 0;
    for (uint32_t i = next_set(h->regs, 0); i < TC_HLL_REGISTERS; i = next_set(h->regs, i + 1)) {
        uint32_t e = (i << RANK_BITS) | h->regs[i];
        n += varint_size(e - prev);
        prev = e;
    }
    return n;
}

size_t tc_hll_encoded_size(const tc_hll_t *h)
{
    if (h->regs) {
        if (h->nnz == 0) {
            return 0;
        }
        if (h->nnz > TC_HLL_SPARSE_MAX) {
            return TC_HLL_MAX_ENCODED;
        }
        size_t n = dense_as_sparse_size(h);
        return n < TC_HLL_MAX_ENCODED ? n : TC_HLL_MAX_ENCODED;
    }
    if (h->nsparse == 0) {
        return 0;
    }
    size_t n = 2 + varint_size(h->nsparse);
    uint32_t prev = 0;
    for (uint32_t i = 0; i < h->nsparse; i++) {
        n += varint_size(h->sparse[i] - prev);
        prev = h->sparse[i];
    }
    /* A sparse set larger than the dense form is written dense. */
    return n < TC_HLL_MAX_ENCODED ? n : TC_HLL_MAX_ENCODED;
}

static void dense_put(uint8_t *bytes, uint32_t reg, uint8_t rank)
{
    uint32_t bit = reg * 6;
    uint32_t b = bit / 8, shift = bit % 8;
    bytes[b] |= (uint8_t)(rank << shift);
    if (shift > 2) {
        bytes[b + 1] |= (uint8_t)(rank >> (8 - shift));
    }
}

static uint8_t dense_get(const uint8_t *bytes, uint32_t reg)
{
    uint32_t bit = reg * 6;
    uint32_t b = bit / 8, shift = bit % 8;
    unsigned v = bytes[b] >> shift;
    if (shift > 2) {
        v |= (unsigned)bytes[b + 1] << (8 - shift);
    }
    return (uint8_t)(v & RANK_MASK);
}

size_t tc_hll_encode(const tc_hll_t *h, uint8_t *out)
{
    size_t size = tc_hll_encoded_size(h);
    if (size == 0) {
        return 0;
    }
    out[1] = TC_HLL_P;
    if (size == TC_HLL_MAX_ENCODED) {
        out[0] = TC_HLL_ENC_DENSE;
        memset(out + 2, 0, TC_HLL_DENSE_BYTES);
        if (h->regs) {
            for (uint32_t i = 0; i < TC_HLL_REGISTERS; i++) {
                if (h->regs[i]) {
                    dense_put(out + 2, i, h->regs[i]);
                }
            }
        } else {
            for (uint32_t i = 0; i < h->nsparse; i++) {
                dense_put(out + 2, h->sparse[i] >> RANK_BITS, (uint8_t)(h->sparse[i] & RANK_MASK));
            }
        }
        return size;
    }
    out[0] = TC_HLL_ENC_SPARSE;
    uint32_t prev = 0;
    size_t n;
    if (h->regs) {
        n = 2 + varint_put(out + 2, h->nnz);
        for (uint32_t i = next_set(h->regs, 0); i < TC_HLL_REGISTERS;
             i = next_set(h->regs, i + 1)) {
            uint32_t e = (i << RANK_BITS) | h->regs[i];
            n += varint_put(out + n, e - prev);
            prev = e;
        }
        return n;
    }
    n = 2 + varint_put(out + 2, h->nsparse);
    for (uint32_t i = 0; i < h->nsparse; i++) {
        n += varint_put(out + n, h->sparse[i] - prev);
        prev = h->sparse[i];
    }
    return n;
}

/* Walks a serialized set, setting every register it names in `dst`; with `dst` NULL it
 * only checks the bytes. */
static int walk_encoded(tc_hll_t *dst, const uint8_t *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    if (len < 2 || data[1] != TC_HLL_P) {
        return TC_EPARSE;
    }
    if (data[0] == TC_HLL_ENC_DENSE) {
        if (len != TC_HLL_MAX_ENCODED) {
            return TC_EPARSE;
        }
        const uint8_t *bytes = data + 2;
        for (uint32_t i = 0; i < TC_HLL_REGISTERS; i++) {
            if (dense_get(bytes, i) > TC_HLL_MAX_RANK) {
                return TC_EPARSE;
            }
        }
        if (!dst) {
            return 0;
        }
        int rc = tc_hll_make_dense(dst);
        if (rc != 0) {
            return rc;
        }
        for (uint32_t i = 0; i < TC_HLL_REGISTERS; i++) {
            uint8_t r = dense_get(bytes, i);
            if (r > dst->regs[i]) {
                dst->nnz += dst->regs[i] == 0;
                dst->regs[i] = r;
            }
        }
        return 0;
    }
    if (data[0] != TC_HLL_ENC_SPARSE) {
        return TC_EPARSE;
    }
    size_t pos = 2;
    uint32_t n = 0;
    size_t k = varint_get(data + pos, len - pos, &n);
    if (k == 0 || n == 0 || n > TC_HLL_REGISTERS) {
        return TC_EPARSE;
    }
    pos += k;
    /* An empty sparse set takes the entries as they come (they ascend); a dense one sets its
     * registers; a sparse one with entries merges them in one pass. */
    bool append = dst && !dst->regs && dst->nsparse == 0 && n <= TC_HLL_SPARSE_MEM;
    uint32_t *tmp = NULL;
    if (dst && !dst->regs && !append) {
        if (dst->nsparse + n > TC_HLL_SPARSE_MEM) {
            int rc = tc_hll_make_dense(dst);
            if (rc != 0) {
                return rc;
            }
        } else {
            tmp = malloc(n * sizeof(*tmp));
            if (!tmp) {
                return TC_ENOMEM;
            }
        }
    }
    if (append) {
        int rc = sparse_reserve(dst, n);
        if (rc != 0) {
            return rc;
        }
    }
    uint64_t prev = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint32_t delta = 0;
        k = varint_get(data + pos, len - pos, &delta);
        if (k == 0 || (i > 0 && delta == 0)) {
            rc = TC_EPARSE;
            break;
        }
        pos += k;
        uint64_t e = prev + delta;
        uint32_t reg = (uint32_t)(e >> RANK_BITS);
        uint32_t rank = (uint32_t)(e & RANK_MASK);
        if (e > UINT32_MAX || reg >= TC_HLL_REGISTERS || rank == 0 || rank > TC_HLL_MAX_RANK ||
            (i > 0 && reg <= (uint32_t)(prev >> RANK_BITS))) {
            rc = TC_EPARSE;
            break;
        }
        if (append) {
            dst->sparse[dst->nsparse++] = (uint32_t)e;
        } else if (tmp) {
            tmp[i] = (uint32_t)e;
        } else if (dst) {
            rc = set_max(dst, reg, (uint8_t)rank);
        }
        prev = e;
    }
    if (rc == 0 && tmp) {
        rc = merge_sparse(dst, tmp, n);
    }
    free(tmp);
    if (rc != 0) {
        return rc;
    }
    return pos == len ? 0 : TC_EPARSE;
}

int tc_hll_decode(tc_hll_t *h, const uint8_t *data, size_t len)
{
    tc_hll_reset(h);
    int rc = walk_encoded(h, data, len);
    if (rc != 0) {
        tc_hll_reset(h);
    }
    return rc;
}

int tc_hll_merge_encoded(tc_hll_t *dst, const uint8_t *data, size_t len)
{
    return walk_encoded(dst, data, len);
}

int tc_hll_check_encoded(const uint8_t *data, size_t len)
{
    return walk_encoded(NULL, data, len);
}
