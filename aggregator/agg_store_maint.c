/*
 * agg_store_maint.c — retention in bounded slices, so that it never stalls ingestion:
 * 10 s buckets older than retention.raw are merged into one 60 s bucket per series and
 * minute (of every source partition together; the service-wide series' minute totals are
 * dropped then, the 60 s bucket of its 10 s totals being one already), buckets older than
 * retention.max are deleted, and log records go after logs.retention or when logs.max_bytes is
 * exceeded, oldest first.
 *
 * The bucket walk visits only what needs work: for each (service, name) it seeks to the
 * oldest entry, handles what lies before the horizons, and jumps to the next name. Its
 * position is kept between slices.
 *
 * A minute is merged only once: the horizon is raised (and stored) before any bucket below
 * it is merged, and from then on the view refuses states of buckets below it (they are
 * counted as "old"), so a late revision can never be added on top of its earlier one.
 */
#include <stdlib.h>
#include <string.h>

#include "agg_store_int.h"
#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

#define ENVS_MAX 16

typedef struct {
    agg_store_t *self;
    int64_t now_us;
    int64_t view_time_us;
    size_t budget;
    size_t visited; /* entries looked at: what the budget bounds */
    size_t work;    /* entries deleted or merged: what is reported */
} maint_ctx_t;

/* The next key after every key starting with `prefix` (16 bytes); false past the last. */
static bool next_prefix(uint8_t k[BUCKET_KEY_LEN])
{
    for (int i = 15; i >= 0; i--) {
        if (k[i] != 0xff) {
            k[i]++;
            memset(k + i + 1, 0, BUCKET_KEY_LEN - (size_t)i - 1);
            return true;
        }
        k[i] = 0;
    }
    return false;
}

typedef struct {
    uint64_t henv;
    agg_bucket_t b;
    bool used;
} env_acc_t;

/* Merges the 10 s buckets (and any 60 s one) of the minute at `key` into one 60 s bucket
 * per environment. */
static int merge_minute(MDB_txn *txn, agg_store_t *self, const uint8_t *key, env_acc_t *accs,
                        agg_bucket_t *tmp, size_t *work)
{
    uint8_t prefix[16];
    memcpy(prefix, key, 16);
    int64_t minute =
        agg_bucket_align(agg_unbiased(tc_be64_get(key + 16)) * 1000000, AGG_ROLLUP_WIDTH_S);
    uint8_t lo[BUCKET_KEY_LEN];
    agg_bucket_key(lo, tc_be64_get(key), tc_be64_get(key + 8), minute, 0, 0);
    for (int i = 0; i < ENVS_MAX; i++) {
        accs[i].used = false;
        agg_bucket_reset(&accs[i].b);
    }
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, self->buckets, &cur);
    if (mrc != 0) {
        return mrc;
    }
    MDB_val k = {BUCKET_KEY_LEN, lo}, v;
    int n = 0;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0) {
        const uint8_t *kd = k.mv_data;
        if (k.mv_size != BUCKET_KEY_LEN || memcmp(kd, prefix, 16) != 0 ||
            agg_unbiased(tc_be64_get(kd + 16)) >= minute + AGG_ROLLUP_WIDTH_S) {
            break;
        }
        uint64_t henv = tc_be64_get(kd + 24);
        int slot = -1;
        for (int i = 0; i < ENVS_MAX && slot < 0; i++) {
            if (accs[i].used && accs[i].henv == henv) {
                slot = i;
            } else if (!accs[i].used) {
                accs[i].used = true;
                accs[i].henv = henv;
                slot = i;
            }
        }
        /* A minute total of the service-wide series (AGG_PART_ALL_MINUTE) repeats the 10 s
         * totals merged here: it goes without being merged. */
        bool total = tc_be32_get(kd + 32) == AGG_PART_ALL_MINUTE;
        if (!total && slot >= 0 && agg_bucket_store_decode(v.mv_data, v.mv_size, tmp) == 0) {
            int rc = agg_bucket_merge(&accs[slot].b, tmp);
            if (rc == TC_ENOMEM) {
                mdb_cursor_close(cur);
                return rc;
            }
        }
        /* Merged or not (corrupt, another kind, too many environments): it goes. */
        mrc = mdb_cursor_del(cur, 0);
        if (mrc != 0) {
            break;
        }
        n++;
        /* After a delete, MDB_NEXT yields the entry that followed the deleted one. */
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    *work += (size_t)n;
    for (int i = 0; i < ENVS_MAX; i++) {
        if (!accs[i].used || accs[i].b.kind == AGG_KIND_NONE) {
            continue;
        }
        agg_bucket_t *b = &accs[i].b;
        b->width_s = AGG_ROLLUP_WIDTH_S;
        b->source_offset = 0;
        uint8_t mk[BUCKET_KEY_LEN];
        agg_bucket_key(mk, tc_be64_get(prefix), tc_be64_get(prefix + 8), minute, accs[i].henv,
                       AGG_PART_MERGED);
        size_t sz = agg_bucket_store_size(b);
        MDB_val key2 = {BUCKET_KEY_LEN, mk}, val = {sz, NULL};
        mrc = mdb_put(txn, self->buckets, &key2, &val, MDB_RESERVE);
        if (mrc != 0) {
            return mrc;
        }
        agg_bucket_store_encode(b, val.mv_data);
    }
    return 0;
}

static int buckets_slice(MDB_txn *txn, maint_ctx_t *c)
{
    agg_store_t *self = c->self;
    int64_t now_s = c->now_us / 1000000;
    int64_t view_s = (c->view_time_us < c->now_us ? c->view_time_us : c->now_us) / 1000000;
    int64_t raw_h = view_s - self->raw_retention_us / 1000000 - self->grace_us / 1000000 - 60;
    raw_h = agg_bucket_align(raw_h * 1000000, AGG_ROLLUP_WIDTH_S);
    int64_t max_h = now_s - self->max_retention_us / 1000000;
    if (!self->maint_started) {
        /* A new pass: raise the horizon first (see the header comment). */
        int64_t compacted = atomic_load(&self->compacted_s);
        if (raw_h > compacted) {
            uint8_t v[8];
            tc_be64_put(v, agg_biased(raw_h));
            MDB_val k = {9, "compacted"}, val = {8, v};
            int mrc = mdb_put(txn, self->meta, &k, &val, 0);
            if (mrc != 0) {
                return mrc;
            }
            atomic_store(&self->compacted_s, raw_h);
        }
        memset(self->maint_key, 0, sizeof(self->maint_key));
        self->maint_started = true;
    }
    int64_t horizon = atomic_load(&self->compacted_s);
    env_acc_t *accs = calloc(ENVS_MAX, sizeof(*accs));
    agg_bucket_t tmp;
    agg_bucket_init(&tmp);
    if (!accs) {
        return TC_ENOMEM;
    }
    for (int i = 0; i < ENVS_MAX; i++) {
        agg_bucket_init(&accs[i].b);
    }
    int rc = 0;
    MDB_cursor *cur = NULL;
    while (c->visited < c->budget) {
        int mrc = mdb_cursor_open(txn, self->buckets, &cur);
        if (mrc != 0) {
            rc = mrc;
            break;
        }
        MDB_val k = {BUCKET_KEY_LEN, self->maint_key}, v;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (mrc == MDB_NOTFOUND) {
            self->maint_started = false; /* the pass is over */
            mdb_cursor_close(cur);
            cur = NULL;
            break;
        }
        if (mrc != 0 || k.mv_size != BUCKET_KEY_LEN) {
            rc = mrc ? mrc : TC_EINVAL;
            break;
        }
        uint8_t key[BUCKET_KEY_LEN];
        memcpy(key, k.mv_data, BUCKET_KEY_LEN);
        mdb_cursor_close(cur);
        cur = NULL;
        int64_t start = agg_unbiased(tc_be64_get(key + 16));
        uint32_t part = tc_be32_get(key + 32);
        c->visited++;
        if (start < max_h) {
            MDB_val dk = {BUCKET_KEY_LEN, key};
            mrc = mdb_del(txn, self->buckets, &dk, NULL);
            if (mrc != 0) {
                rc = mrc;
                break;
            }
            c->work++;
            memcpy(self->maint_key, key, BUCKET_KEY_LEN);
            continue;
        }
        if (start < horizon && part != AGG_PART_MERGED) {
            size_t before = c->work;
            rc = merge_minute(txn, self, key, accs, &tmp, &c->work);
            c->visited += c->work - before;
            if (rc != 0) {
                break;
            }
            /* Go on after the minute just merged. */
            int64_t minute = agg_bucket_align(start * 1000000, AGG_ROLLUP_WIDTH_S);
            agg_bucket_key(self->maint_key, tc_be64_get(key), tc_be64_get(key + 8),
                           minute + AGG_ROLLUP_WIDTH_S, 0, 0);
            continue;
        }
        if (start < horizon) {
            /* Merged minutes younger than retention.max: jump to the horizon. */
            agg_bucket_key(self->maint_key, tc_be64_get(key), tc_be64_get(key + 8), horizon, 0, 0);
            continue;
        }
        /* Nothing more for this name: on to the next one. */
        memcpy(self->maint_key, key, BUCKET_KEY_LEN);
        if (!next_prefix(self->maint_key)) {
            self->maint_started = false;
            break;
        }
    }
    if (cur) {
        mdb_cursor_close(cur);
    }
    for (int i = 0; i < ENVS_MAX; i++) {
        agg_bucket_fini(&accs[i].b);
    }
    free(accs);
    agg_bucket_fini(&tmp);
    return rc;
}

/* Deletes the oldest log records: older than logs.retention, or while above logs.max_bytes. */
static int logs_slice(MDB_txn *txn, maint_ctx_t *c, uint64_t *bytes)
{
    agg_store_t *self = c->self;
    int64_t cutoff = c->now_us - self->logs_retention_us;
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, self->logs_time, &cur);
    if (mrc != 0) {
        return mrc;
    }
    MDB_val k, v;
    uint64_t start_bytes = *bytes;
    size_t deleted = 0;
    while (c->visited < c->budget && (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if ((k.mv_size != LOG_TIME_KEY_LEN && k.mv_size != LOG_TIME_KEY_LEN_V1) ||
            v.mv_size != 12) {
            mrc = mdb_cursor_del(cur, 0);
            if (mrc != 0) {
                break;
            }
            continue;
        }
        int64_t t = agg_unbiased(tc_be64_get(k.mv_data));
        bool too_old = self->logs_retention_us > 0 && t < cutoff;
        bool too_big = self->logs_max_bytes > 0 && *bytes > self->logs_max_bytes;
        if (!too_old && !too_big) {
            break;
        }
        /* The record's key is h(service) and the time key (either width). */
        uint8_t lk[LOG_KEY_LEN];
        memcpy(lk, v.mv_data, 8);
        memcpy(lk + 8, k.mv_data, k.mv_size);
        uint64_t size = tc_be32_get((const uint8_t *)v.mv_data + 8) + 8 + 2 * k.mv_size + 12;
        MDB_val lkey = {8 + k.mv_size, lk};
        mrc = mdb_del(txn, self->logs, &lkey, NULL);
        if (mrc != 0 && mrc != MDB_NOTFOUND) {
            break;
        }
        mrc = mdb_cursor_del(cur, 0);
        if (mrc != 0) {
            break;
        }
        *bytes = *bytes > size ? *bytes - size : 0;
        c->work++;
        c->visited++;
        deleted++;
    }
    mdb_cursor_close(cur);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    if (deleted == 0 && *bytes == start_bytes) {
        return 0;
    }
    uint8_t b[8];
    tc_be64_put(b, *bytes);
    MDB_val mk = {10, "logs_bytes"}, mv = {8, b};
    return mdb_put(txn, self->meta, &mk, &mv, 0);
}

typedef struct {
    maint_ctx_t *c;
    uint64_t bytes;
    bool save_key;
    uint8_t key[BUCKET_KEY_LEN];
    bool started;
    int64_t compacted;
} run_ctx_t;

static int maint_txn(MDB_txn *txn, void *arg)
{
    run_ctx_t *r = arg;
    maint_ctx_t *c = r->c;
    agg_store_t *self = c->self;
    /* A second run (after the map grew) starts from the same place. */
    memcpy(self->maint_key, r->key, BUCKET_KEY_LEN);
    self->maint_started = r->started;
    atomic_store(&self->compacted_s, r->compacted);
    c->work = c->visited = 0;
    r->bytes = atomic_load(&self->logs_bytes);
    int rc = buckets_slice(txn, c);
    if (rc == 0) {
        rc = logs_slice(txn, c, &r->bytes);
    }
    return agg_lmdb_result(rc);
}

int agg_store_maintain(agg_store_t *self, int64_t now_us, int64_t view_time_us, size_t budget)
{
    maint_ctx_t c = {self, now_us, view_time_us, budget ? budget : 1, 0, 0};
    run_ctx_t r;
    memset(&r, 0, sizeof(r));
    r.c = &c;
    memcpy(r.key, self->maint_key, BUCKET_KEY_LEN);
    r.started = self->maint_started;
    r.compacted = atomic_load(&self->compacted_s);
    int rc = agg_store_write(self, maint_txn, &r);
    if (rc != 0) {
        /* Nothing was done: the position and the horizon stay where they were. */
        memcpy(self->maint_key, r.key, BUCKET_KEY_LEN);
        self->maint_started = r.started;
        atomic_store(&self->compacted_s, r.compacted);
        return rc;
    }
    atomic_store(&self->logs_bytes, r.bytes);
    return (int)(c.work > INT32_MAX ? INT32_MAX : c.work);
}
