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
#define BUCKET_VALUE_LEN 29      /* version, width, revision, count, errors */
#define BUCKET_KEY_MAX (ALR_SERVICE_MAX + ALR_ENVIRONMENT_MAX + ALR_NAME_MAX + 3 + 4 + 8)

struct alr_store {
    MDB_env *env;
    MDB_dbi buckets, offsets, alerts, outbox, meta;
    _Atomic int last_write_rc;
};

static int open_dbis(MDB_txn *txn, void *ctx)
{
    alr_store_t *self = ctx;
    if (tc_lmdb_dbi(txn, "buckets", 0, &self->buckets) != 0 ||
        tc_lmdb_dbi(txn, "offsets", 0, &self->offsets) != 0 ||
        tc_lmdb_dbi(txn, "alerts", 0, &self->alerts) != 0 ||
        tc_lmdb_dbi(txn, "outbox", 0, &self->outbox) != 0 ||
        tc_lmdb_dbi(txn, "meta", 0, &self->meta) != 0) {
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
    alr_store_t *self = *self_p;
    mdb_env_close(self->env);
    free(self);
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
    return n + 8;
}

/* Splits a stored key back into a bucket's identity; false when malformed. */
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
    if (len - pos != 12) {
        return false;
    }
    b->kind = (int)tc_be32_get(key + pos);
    b->start_s = (int64_t)tc_be64_get(key + pos + 4);
    return b->kind >= 0 && b->service[0] != '\0';
}

typedef struct {
    alr_store_t *self;
    const alr_window_change_t *changes;
    size_t n;
    const char *topic;
    const alr_offset_t *offsets;
    size_t noffsets;
} window_txn_t;

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

static int window_txn(MDB_txn *txn, void *ctx)
{
    window_txn_t *w = ctx;
    uint8_t key[BUCKET_KEY_MAX];
    for (size_t i = 0; i < w->n; i++) {
        const alr_window_change_t *c = &w->changes[i];
        MDB_val k = {bucket_key(&c->bucket, key), key};
        int rc;
        if (c->deleted) {
            rc = mdb_del(txn, w->self->buckets, &k, NULL);
            if (rc == MDB_NOTFOUND) {
                rc = 0;
            }
        } else {
            uint8_t val[BUCKET_VALUE_LEN];
            val[0] = 1;
            tc_be32_put(val + 1, c->bucket.width_s);
            tc_be64_put(val + 5, c->bucket.revision);
            tc_be64_put(val + 13, c->bucket.count);
            tc_be64_put(val + 21, c->bucket.errors);
            MDB_val v = {sizeof(val), val};
            rc = mdb_put(txn, w->self->buckets, &k, &v, 0);
        }
        if (rc != 0) {
            return rc; /* MDB_MAP_FULL goes back to tc_lmdb_write, which grows the map */
        }
    }
    for (size_t i = 0; i < w->noffsets; i++) {
        uint8_t ok[300];
        size_t kl = offset_key(w->topic, w->offsets[i].partition, ok, sizeof(ok));
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
    return 0;
}

int alr_store_commit_window(alr_store_t *self, const alr_window_change_t *changes, size_t n,
                            const char *topic, const alr_offset_t *offsets, size_t noffsets)
{
    if (n == 0 && noffsets == 0) {
        return 0;
    }
    window_txn_t w = {self, changes, n, topic, offsets, noffsets};
    return write_txn(self, window_txn, &w);
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
        const uint8_t *val = v.mv_data;
        if (v.mv_size != BUCKET_VALUE_LEN || val[0] != 1 ||
            !bucket_key_parse(k.mv_data, k.mv_size, &b)) {
            bad++;
            continue;
        }
        b.width_s = tc_be32_get(val + 1);
        b.revision = tc_be64_get(val + 5);
        b.count = tc_be64_get(val + 13);
        b.errors = tc_be64_get(val + 21);
        if (b.width_s == 0 || b.errors > b.count) {
            bad++;
            continue;
        }
        int prc = alr_window_put(window, &b, now_us, false);
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

/* ---- alerts and outbox --------------------------------------------------------------- */

typedef struct {
    alr_store_t *self;
    alr_evaluator_t *ev;
    const alr_outbox_item_t *items;
    size_t n;
} alerts_txn_t;

static int put_json(MDB_txn *txn, MDB_dbi dbi, uint64_t id, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        return TC_ENOMEM;
    }
    uint8_t kb[8];
    tc_be64_put(kb, id);
    MDB_val k = {sizeof(kb), kb}, v = {strlen(text), text};
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    free(text);
    return rc;
}

static int alerts_txn(MDB_txn *txn, void *ctx)
{
    alerts_txn_t *a = ctx;
    alr_store_t *self = a->self;
    int rc;
    for (size_t i = 0; i < alr_evaluator_alert_count(a->ev); i++) {
        alr_alert_t *al = alr_evaluator_alert(a->ev, i);
        if (!al->dirty) {
            continue;
        }
        if ((rc = put_json(txn, self->alerts, al->fingerprint, alr_alert_state_json(al))) != 0) {
            return rc;
        }
    }
    size_t nrem;
    const uint64_t *rem = alr_evaluator_removed(a->ev, &nrem);
    for (size_t i = 0; i < nrem; i++) {
        uint8_t kb[8];
        tc_be64_put(kb, rem[i]);
        MDB_val k = {sizeof(kb), kb};
        rc = mdb_del(txn, self->alerts, &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return rc;
        }
    }
    for (size_t i = 0; i < a->n; i++) {
        const alr_outbox_item_t *it = &a->items[i];
        char fp[17];
        snprintf(fp, sizeof(fp), "%016" PRIx64, it->fingerprint);
        json_t *doc = json_pack("{s:s, s:s, s:s, s:I}", "fingerprint", fp, "url", it->url,
                                "body", it->body, "created_us", (json_int_t)it->created_us);
        if ((rc = put_json(txn, self->outbox, it->id, doc)) != 0) {
            return rc;
        }
    }
    uint8_t nid[8];
    tc_be64_put(nid, alr_evaluator_next_id(a->ev));
    MDB_val k = {7, (void *)"next_id"}, v = {sizeof(nid), nid};
    return mdb_put(txn, self->meta, &k, &v, 0);
}

int alr_store_commit_alerts(alr_store_t *self, alr_evaluator_t *ev,
                            const alr_outbox_item_t *items, size_t n)
{
    alerts_txn_t a = {self, ev, items, n};
    return write_txn(self, alerts_txn, &a);
}

typedef struct {
    alr_store_t *self;
    uint64_t id;
} del_txn_t;

static int outbox_del_txn(MDB_txn *txn, void *ctx)
{
    del_txn_t *d = ctx;
    uint8_t kb[8];
    tc_be64_put(kb, d->id);
    MDB_val k = {sizeof(kb), kb};
    int rc = mdb_del(txn, d->self->outbox, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int alr_store_outbox_delete(alr_store_t *self, uint64_t id)
{
    del_txn_t d = {self, id};
    return write_txn(self, outbox_del_txn, &d);
}

/* Iterates a database of be64 keys and JSON values. */
static int each_json(alr_store_t *self, MDB_dbi dbi,
                     int (*fn)(void *ctx, uint64_t key, const json_t *doc), void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0) {
        mrc = mdb_cursor_open(txn, dbi, &cur);
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
        if (k.mv_size != 8) {
            continue;
        }
        json_error_t jerr;
        json_t *doc = json_loadb(v.mv_data, v.mv_size, 0, &jerr);
        if (!doc) {
            tc_log(TC_LOG_WARN, "store.corrupt", "a stored record does not parse: %s",
                   jerr.text);
            continue;
        }
        rc = fn(ctx, tc_be64_get(k.mv_data), doc);
        json_decref(doc);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

typedef struct {
    int (*fn)(void *ctx, const json_t *state);
    int (*ofn)(void *ctx, const alr_outbox_item_t *item);
    void *ctx;
} each_ctx_t;

static int each_alert(void *ctx, uint64_t key, const json_t *doc)
{
    each_ctx_t *e = ctx;
    (void)key;
    return e->fn(e->ctx, doc);
}

int alr_store_load_alerts(alr_store_t *self, int (*fn)(void *ctx, const json_t *state),
                          void *ctx)
{
    each_ctx_t e = {fn, NULL, ctx};
    return each_json(self, self->alerts, each_alert, &e);
}

static int each_outbox(void *ctx, uint64_t key, const json_t *doc)
{
    each_ctx_t *e = ctx;
    alr_outbox_item_t it;
    memset(&it, 0, sizeof(it));
    it.id = key;
    const char *fp = json_string_value(json_object_get(doc, "fingerprint"));
    it.url = json_string_value(json_object_get(doc, "url"));
    it.body = json_string_value(json_object_get(doc, "body"));
    it.created_us = (int64_t)json_integer_value(json_object_get(doc, "created_us"));
    if (!fp || !it.url || !it.body) {
        tc_log(TC_LOG_WARN, "store.corrupt", "outbox entry %" PRIu64 " is incomplete", key);
        return 0;
    }
    it.fingerprint = strtoull(fp, NULL, 16);
    return e->ofn(e->ctx, &it);
}

int alr_store_load_outbox(alr_store_t *self, int (*fn)(void *ctx, const alr_outbox_item_t *item),
                          void *ctx)
{
    each_ctx_t e = {NULL, fn, ctx};
    return each_json(self, self->outbox, each_outbox, &e);
}

uint64_t alr_store_next_id(alr_store_t *self)
{
    MDB_txn *txn = NULL;
    uint64_t id = 1;
    if (mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn) != 0) {
        return id;
    }
    MDB_val k = {7, (void *)"next_id"}, v;
    if (mdb_get(txn, self->meta, &k, &v) == 0 && v.mv_size == 8) {
        id = tc_be64_get(v.mv_data);
    }
    mdb_txn_abort(txn);
    return id > 0 ? id : 1;
}

int alr_store_check(alr_store_t *self, char *detail, size_t len)
{
    MDB_txn *txn = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc != 0) {
        snprintf(detail, len, "read transaction: %s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    MDB_stat st;
    mrc = mdb_stat(txn, self->buckets, &st);
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
    snprintf(detail, len, "%zu buckets, map %zu of %zu bytes used", (size_t)st.ms_entries,
             tc_lmdb_used_bytes(self->env), tc_lmdb_map_size(self->env));
    return 0;
}
