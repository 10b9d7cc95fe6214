#include "alr_store.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_lmdb.h"
#include "tc_log.h"
#include "tc_util.h"

#define MAP_INITIAL (1ULL << 30) /* sparse: costs nothing until used */
#define MAP_MAX (64ULL << 30)
#define BUCKET_FIXED_V2 74       /* version .. last_time_us, without the sketch */
#define BUCKET_FIXED 82          /* version 3: + open (byte 70) and grew_us (74..81) */
#define BUCKET_KEY_MAX (ALR_SERVICE_MAX + ALR_ENVIRONMENT_MAX + ALR_NAME_MAX + 3 + 4 + 8 + 4)
#define STATE_KEY_MAX 600

struct alr_store {
    MDB_env *env;
    MDB_dbi buckets, offsets, state;
    _Atomic int last_write_rc;
};

static int open_dbis(MDB_txn *txn, void *ctx)
{
    alr_store_t *self = ctx;
    if (tc_lmdb_dbi(txn, "buckets", 0, &self->buckets) != 0 ||
        tc_lmdb_dbi(txn, "offsets", 0, &self->offsets) != 0 ||
        tc_lmdb_dbi(txn, "state", 0, &self->state) != 0) {
        return TC_ELMDB;
    }
    return 0;
}

alr_store_t *alr_store_open(const char *dir, char *err, size_t errlen)
{
    alr_store_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (tc_lmdb_open(&self->env, dir, MAP_INITIAL, 8, 0) != 0) {
        snprintf(err, errlen, "cannot open LMDB environment in %s", dir);
        free(self);
        return NULL;
    }
    if (tc_lmdb_write(self->env, MAP_MAX, open_dbis, self) != 0) {
        snprintf(err, errlen, "cannot open the databases in %s", dir);
        mdb_env_close(self->env);
        free(self);
        return NULL;
    }
    return self;
}

void alr_store_close(alr_store_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    mdb_env_close((*self_p)->env);
    free(*self_p);
    *self_p = NULL;
}

static int write_txn(alr_store_t *self, tc_lmdb_txn_fn fn, void *ctx)
{
    int rc = tc_lmdb_write(self->env, MAP_MAX, fn, ctx);
    atomic_store(&self->last_write_rc, rc);
    return rc;
}

/* ---- buckets ------------------------------------------------------------------------- */

static size_t bucket_key(const alr_rollup_t *b, uint8_t *key)
{
    size_t n = 0;
    const char *parts[] = {b->service, b->environment, b->name};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(parts[i]);
        memcpy(key + n, parts[i], l);
        n += l;
        key[n++] = 0;
    }
    tc_be32_put(key + n, (uint32_t)b->kind);
    n += 4;
    tc_be64_put(key + n, (uint64_t)b->start_s);
    n += 8;
    tc_be32_put(key + n, b->source_partition);
    return n + 4;
}

static bool bucket_key_parse(const uint8_t *key, size_t len, alr_rollup_t *b)
{
    char *dst[] = {b->service, b->environment, b->name};
    size_t cap[] = {sizeof(b->service), sizeof(b->environment), sizeof(b->name)};
    size_t pos = 0;
    for (int i = 0; i < 3; i++) {
        const uint8_t *z = memchr(key + pos, 0, len - pos);
        if (!z) {
            return false;
        }
        size_t l = (size_t)(z - (key + pos));
        if (l >= cap[i] || !tc_utf8_valid((const char *)key + pos, l)) {
            return false;
        }
        memcpy(dst[i], key + pos, l);
        dst[i][l] = '\0';
        pos += l + 1;
    }
    if (len - pos != 16 && len - pos != 12) {
        return false;
    }
    b->kind = (int)tc_be32_get(key + pos);
    b->start_s = (int64_t)tc_be64_get(key + pos + 4);
    b->source_partition = len - pos == 16 ? tc_be32_get(key + pos + 12) : 0;
    return b->kind >= 0 && b->service[0] != '\0';
}

static void put_f64(uint8_t *p, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    tc_be64_put(p, u);
}

static double get_f64(const uint8_t *p)
{
    uint64_t u = tc_be64_get(p);
    double v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

/* Encodes a bucket value; returns a malloc'd buffer and its length. */
static uint8_t *bucket_value(const alr_rollup_t *b, size_t *len)
{
    size_t nbins = b->has_sketch ? b->sketch.len : 0;
    size_t n = BUCKET_FIXED + (b->has_sketch ? 1 + 8 + 4 + 4 + nbins * 8 : 0);
    uint8_t *v = malloc(n);
    if (!v) {
        return NULL;
    }
    v[0] = 3;
    tc_be32_put(v + 1, b->width_s);
    tc_be64_put(v + 5, b->revision);
    tc_be64_put(v + 13, b->count);
    tc_be64_put(v + 21, b->errors);
    put_f64(v + 29, b->sum);
    put_f64(v + 37, b->min);
    put_f64(v + 45, b->max);
    put_f64(v + 53, b->last);
    tc_be64_put(v + 61, (uint64_t)b->last_time_us);
    v[69] = b->has_sketch ? 1 : 0;
    v[70] = b->open ? 1 : 0;
    v[71] = v[72] = v[73] = 0;
    tc_be64_put(v + 74, (uint64_t)b->grew_us);
    if (b->has_sketch) {
        uint8_t *p = v + BUCKET_FIXED;
        p[0] = (uint8_t)b->sketch.schema;
        tc_be64_put(p + 1, b->sketch.zero_count);
        tc_be32_put(p + 9, (uint32_t)b->sketch.offset);
        tc_be32_put(p + 13, (uint32_t)nbins);
        for (size_t i = 0; i < nbins; i++) {
            tc_be64_put(p + 17 + i * 8, b->sketch.counts[i]);
        }
    }
    *len = n;
    return v;
}

static bool bucket_value_parse(const uint8_t *v, size_t len, alr_rollup_t *b)
{
    size_t fixed = len > 0 && v[0] == 2 ? BUCKET_FIXED_V2 : BUCKET_FIXED;
    if (len < fixed || (v[0] != 2 && v[0] != 3)) {
        return false;
    }
    if (v[0] == 3) {
        b->open = v[70] != 0;
        b->grew_us = (int64_t)tc_be64_get(v + 74);
    }
    b->width_s = tc_be32_get(v + 1);
    b->revision = tc_be64_get(v + 5);
    b->count = tc_be64_get(v + 13);
    b->errors = tc_be64_get(v + 21);
    b->sum = get_f64(v + 29);
    b->min = get_f64(v + 37);
    b->max = get_f64(v + 45);
    b->last = get_f64(v + 53);
    b->last_time_us = (int64_t)tc_be64_get(v + 61);
    if (b->width_s == 0 || b->width_s > ALR_BUCKET_WIDTH_MAX || b->errors > b->count) {
        return false;
    }
    if (v[69]) {
        const uint8_t *p = v + fixed;
        if (len < fixed + 17) {
            return false;
        }
        uint32_t nbins = tc_be32_get(p + 13);
        if (nbins > TC_SKETCH_MAX_BINS || len != fixed + 17 + (size_t)nbins * 8) {
            return false;
        }
        uint64_t *counts = malloc((nbins ? nbins : 1) * sizeof(uint64_t));
        if (!counts) {
            return false;
        }
        for (uint32_t i = 0; i < nbins; i++) {
            counts[i] = tc_be64_get(p + 17 + (size_t)i * 8);
        }
        tc_sketch_init(&b->sketch, TC_SKETCH_SCHEMA);
        int rc = tc_sketch_load(&b->sketch, p[0], tc_be64_get(p + 1), (int32_t)tc_be32_get(p + 9),
                                counts, nbins);
        free(counts);
        if (rc != 0) {
            tc_sketch_fini(&b->sketch);
            return false;
        }
        b->has_sketch = true;
    } else if (len != fixed) {
        return false;
    }
    return true;
}

typedef struct {
    alr_store_t *self;
    const alr_window_t *window;
    const alr_window_change_t *changes;
    size_t n;
    const alr_offset_t *offsets;
    size_t noffsets;
    const alr_record_w_t *recs;
    size_t nrecs;
} commit_txn_t;

static int records_put(MDB_txn *txn, alr_store_t *self, const alr_record_w_t *recs, size_t n);

static size_t offset_key(const char *topic, int32_t partition, uint8_t *key, size_t cap)
{
    size_t l = strlen(topic);
    if (l + 5 > cap) {
        return 0;
    }
    memcpy(key, topic, l);
    key[l] = 0;
    tc_be32_put(key + l + 1, (uint32_t)partition);
    return l + 5;
}

static int commit_txn(MDB_txn *txn, void *ctx)
{
    commit_txn_t *w = ctx;
    uint8_t key[BUCKET_KEY_MAX];
    for (size_t i = 0; i < w->n; i++) {
        const alr_window_change_t *c = &w->changes[i];
        MDB_val k = {bucket_key(&c->bucket, key), key};
        alr_rollup_t b;
        int rc = 0;
        if (c->deleted || alr_window_get(w->window, &c->bucket, &b) != 0) {
            /* Deleted, or put and pruned since: gone either way. */
            rc = mdb_del(txn, w->self->buckets, &k, NULL);
            if (rc == MDB_NOTFOUND) {
                rc = 0;
            }
        } else {
            size_t vl = 0;
            uint8_t *val = bucket_value(&b, &vl);
            alr_rollup_fini(&b);
            if (!val) {
                return TC_ENOMEM;
            }
            MDB_val v = {vl, val};
            rc = mdb_put(txn, w->self->buckets, &k, &v, 0);
            free(val);
        }
        if (rc != 0) {
            return rc; /* MDB_MAP_FULL goes back to tc_lmdb_write, which grows the map */
        }
    }
    for (size_t i = 0; i < w->noffsets; i++) {
        uint8_t ok[300];
        size_t kl = offset_key(w->offsets[i].topic, w->offsets[i].partition, ok, sizeof(ok));
        if (kl == 0) {
            return TC_EINVAL;
        }
        uint8_t ov[8];
        tc_be64_put(ov, (uint64_t)w->offsets[i].next_offset);
        MDB_val k = {kl, ok}, v = {sizeof(ov), ov};
        int rc = mdb_put(txn, w->self->offsets, &k, &v, 0);
        if (rc != 0) {
            return rc;
        }
    }
    return records_put(txn, w->self, w->recs, w->nrecs);
}

int alr_store_commit(alr_store_t *self, const alr_window_t *window,
                     const alr_window_change_t *changes, size_t n, const alr_offset_t *offsets,
                     size_t noffsets, const alr_record_w_t *recs, size_t nrecs)
{
    if (n == 0 && noffsets == 0 && nrecs == 0) {
        return 0;
    }
    commit_txn_t w = {self, window, changes, n, offsets, noffsets, recs, nrecs};
    return write_txn(self, commit_txn, &w);
}

int alr_store_load_window(alr_store_t *self, alr_window_t *window, int64_t now_us,
                          size_t *skipped)
{
    size_t bad = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0) {
        mrc = mdb_cursor_open(txn, self->buckets, &cur);
    }
    if (mrc != 0) {
        tc_log(TC_LOG_ERROR, "lmdb.read", "buckets: %s", mdb_strerror(mrc));
        if (txn) {
            mdb_txn_abort(txn);
        }
        return TC_ELMDB;
    }
    MDB_val k, v;
    int rc = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        alr_rollup_t b;
        memset(&b, 0, sizeof(b));
        if (!bucket_key_parse(k.mv_data, k.mv_size, &b) ||
            !bucket_value_parse(v.mv_data, v.mv_size, &b)) {
            alr_rollup_fini(&b);
            bad++;
            continue;
        }
        int prc = alr_window_put(window, &b, now_us, false);
        alr_rollup_fini(&b);
        if (prc == TC_ENOMEM || prc == TC_EFULL) {
            rc = prc;
            break;
        }
        if (prc < 0) {
            bad++;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (skipped) {
        *skipped = bad;
    }
    return rc;
}

int alr_store_get_offset(alr_store_t *self, const char *topic, int32_t partition,
                         int64_t *offset)
{
    uint8_t key[300];
    size_t kl = offset_key(topic, partition, key, sizeof(key));
    if (kl == 0) {
        return TC_EINVAL;
    }
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc != 0) {
        return TC_ELMDB;
    }
    MDB_val k = {kl, key}, v;
    mrc = mdb_get(txn, self->offsets, &k, &v);
    int rc = tc_lmdb_err(mrc);
    if (mrc == 0) {
        if (v.mv_size == 8) {
            *offset = (int64_t)tc_be64_get(v.mv_data);
        } else {
            rc = TC_ENOTFOUND;
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

/* ---- state records ------------------------------------------------------------------- */

static size_t state_key(const char *kind, const char *key, uint8_t *out)
{
    size_t a = strlen(kind), b = strlen(key);
    if (a + 1 + b > STATE_KEY_MAX) {
        b = STATE_KEY_MAX - a - 1;
    }
    memcpy(out, kind, a);
    out[a] = 0;
    memcpy(out + a + 1, key, b);
    return a + 1 + b;
}

static int records_put(MDB_txn *txn, alr_store_t *self, const alr_record_w_t *recs, size_t n)
{
    uint8_t kb[STATE_KEY_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        const alr_record_w_t *rec = &recs[i];
        MDB_val k = {state_key(rec->kind, rec->key, kb), kb};
        int rc;
        if (!rec->text) {
            rc = mdb_del(txn, self->state, &k, NULL);
            if (rc == MDB_NOTFOUND) {
                rc = 0;
            }
        } else {
            MDB_val v = {strlen(rec->text), rec->text};
            rc = mdb_put(txn, self->state, &k, &v, 0);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int alr_store_write_records(alr_store_t *self, const alr_record_w_t *recs, size_t n)
{
    return alr_store_commit(self, NULL, NULL, 0, NULL, 0, recs, n);
}

int alr_store_load_records(alr_store_t *self,
                           int (*fn)(void *ctx, const char *kind, const char *key,
                                     const json_t *doc),
                           void *ctx, size_t *skipped)
{
    size_t bad = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0) {
        mrc = mdb_cursor_open(txn, self->state, &cur);
    }
    if (mrc != 0) {
        if (txn) {
            mdb_txn_abort(txn);
        }
        return TC_ELMDB;
    }
    MDB_val k, v;
    int rc = 0;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char kind[16], key[STATE_KEY_MAX + 1];
        const uint8_t *kp = k.mv_data;
        const uint8_t *z = k.mv_size ? memchr(kp, 0, k.mv_size) : NULL;
        size_t kl = z ? (size_t)(z - kp) : 0;
        if (!z || kl == 0 || kl >= sizeof(kind) || k.mv_size - kl - 1 > STATE_KEY_MAX) {
            bad++;
            continue;
        }
        memcpy(kind, kp, kl);
        kind[kl] = '\0';
        memcpy(key, kp + kl + 1, k.mv_size - kl - 1);
        key[k.mv_size - kl - 1] = '\0';
        json_error_t jerr;
        json_t *doc = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
        if (!doc) {
            tc_log(TC_LOG_WARN, "store.corrupt", "state record %s/%s does not parse: %s", kind,
                   key, jerr.text);
            bad++;
            continue;
        }
        rc = fn(ctx, kind, key, doc);
        if (rc == TC_EPARSE) {
            tc_log(TC_LOG_WARN, "store.corrupt", "state record %s/%s is malformed; skipped",
                   kind, key);
            bad++;
            rc = 0;
        }
        json_decref(doc);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (skipped) {
        *skipped = bad;
    }
    return rc;
}

int alr_store_check(alr_store_t *self, char *detail, size_t len)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc != 0) {
        snprintf(detail, len, "read transaction: %s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    MDB_stat st, ss;
    mrc = mdb_stat(txn, self->buckets, &st);
    if (mrc == 0) {
        mrc = mdb_stat(txn, self->state, &ss);
    }
    mdb_txn_abort(txn);
    if (mrc != 0) {
        snprintf(detail, len, "stat: %s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    int last = atomic_load(&self->last_write_rc);
    if (last != 0) {
        snprintf(detail, len, "last write failed: %s", tc_strerror(last));
        return TC_ELMDB;
    }
    snprintf(detail, len, "%zu buckets, %zu state records, map %zu of %zu bytes used",
             (size_t)st.ms_entries, (size_t)ss.ms_entries, tc_lmdb_used_bytes(self->env),
             tc_lmdb_map_size(self->env));
    return 0;
}
