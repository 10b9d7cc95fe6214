#include "agg_store.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "tc_error.h"
#include "tc_lmdb.h"
#include "tc_log.h"
#include "tc_util.h"

#define SERIES_KEY_LEN 24
#define DEDUPE_TIME_KEY_LEN (8 + AGG_EVENT_ID_LEN)
#define TOPIC_MAX 249 /* Kafka's limit on topic names */
#define OFFSET_KEY_MAX (TOPIC_MAX + 1 + 4)
#define SIGN_BIT 0x8000000000000000ull
#define FORMAT_VERSION 1
#define SERIES_VALUE_VERSION 1
#define SERIES_HEADER_LEN 18 /* version, kind, first_s, last_s */

struct agg_store {
    MDB_env *env;
    MDB_dbi buckets;
    MDB_dbi series;
    MDB_dbi offsets;
    MDB_dbi dedupe;
    MDB_dbi dedupe_time;
    MDB_dbi unpublished;
    MDB_dbi meta;
    size_t max_map;
    int64_t grace_us;
    int64_t dedupe_window_us;
    /* Held shared by every read and exclusively while a write may grow (remap) the map. */
    pthread_rwlock_t remap;
    bool remap_ok;
};

/* ---- keys ------------------------------------------------------------------------ */

static uint64_t h64(const char *s)
{
    return XXH3_64bits(s, strlen(s));
}

static uint64_t biased(int64_t v)
{
    return (uint64_t)v ^ SIGN_BIT;
}

static int64_t unbiased(uint64_t v)
{
    return (int64_t)(v ^ SIGN_BIT);
}

static void bucket_key(uint8_t k[AGG_STORE_KEY_LEN], const char *service, const char *name,
                       int64_t start_s, const char *environment)
{
    tc_be64_put(k, h64(service));
    tc_be64_put(k + 8, h64(name));
    tc_be64_put(k + 16, biased(start_s));
    tc_be64_put(k + 24, h64(environment));
}

/* `unpublished` is ordered by bucket start first, so the closed buckets come first. */
static void owed_key(uint8_t o[AGG_STORE_KEY_LEN], const uint8_t k[AGG_STORE_KEY_LEN])
{
    memcpy(o, k + 16, 8);
    memcpy(o + 8, k, 16);
    memcpy(o + 24, k + 24, 8);
}

static void bucket_key_of_owed(uint8_t k[AGG_STORE_KEY_LEN], const uint8_t o[AGG_STORE_KEY_LEN])
{
    memcpy(k, o + 8, 16);
    memcpy(k + 16, o, 8);
    memcpy(k + 24, o + 24, 8);
}

static void series_key(uint8_t k[SERIES_KEY_LEN], const char *service, const char *name,
                       const char *environment)
{
    tc_be64_put(k, h64(service));
    tc_be64_put(k + 8, h64(name));
    tc_be64_put(k + 16, h64(environment));
}

static int offset_key(uint8_t k[OFFSET_KEY_MAX], const char *topic, int32_t partition, size_t *klen)
{
    size_t tl = topic ? strnlen(topic, TOPIC_MAX + 1) : 0;
    if (tl == 0 || tl > TOPIC_MAX || partition < 0) {
        return TC_EINVAL;
    }
    memcpy(k, topic, tl);
    k[tl] = '\0';
    tc_be32_put(k + tl + 1, (uint32_t)partition);
    *klen = tl + 1 + 4;
    return 0;
}

/* Maps what a transaction body ran into to what tc_lmdb_write expects: 0, a TC_E* code,
 * MDB_MAP_FULL (so that the map grows), or TC_ELMDB for any other LMDB or system error
 * (LMDB's own codes are negative numbers outside the TC_E* range). */
static int lmdb_result(int rc)
{
    if (rc == 0 || rc == MDB_MAP_FULL || (rc < 0 && rc >= TC_EUNKNOWNKEY)) {
        return rc;
    }
    tc_log(TC_LOG_ERROR, "store.write", "%s", mdb_strerror(rc));
    return TC_ELMDB;
}

/* ---- series values ----------------------------------------------------------------- */

typedef struct {
    agg_kind_t kind;
    int64_t first_s;
    int64_t last_s;
    char service[AGG_MAX_SERVICE + 1];
    char environment[AGG_MAX_ENVIRONMENT + 1];
    char name[AGG_MAX_NAME + 1];
} series_rec_t;

static size_t put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return 2 + n;
}

/* Encodes a series value into `buf` (large enough for the bounded strings). */
static size_t series_encode(uint8_t *buf, agg_kind_t kind, int64_t first_s, int64_t last_s,
                            const char *service, const char *environment, const char *name)
{
    buf[0] = SERIES_VALUE_VERSION;
    buf[1] = (uint8_t)kind;
    tc_be64_put(buf + 2, biased(first_s));
    tc_be64_put(buf + 10, biased(last_s));
    size_t n = SERIES_HEADER_LEN;
    n += put_str(buf + n, service);
    n += put_str(buf + n, environment);
    n += put_str(buf + n, name);
    return n;
}

#define SERIES_VALUE_MAX                                                                           \
    (SERIES_HEADER_LEN + 6 + AGG_MAX_SERVICE + AGG_MAX_ENVIRONMENT + AGG_MAX_NAME)

static int get_str(const uint8_t *data, size_t len, size_t *pos, char *out, size_t max)
{
    if (len - *pos < 2) {
        return TC_EPARSE;
    }
    size_t n = ((size_t)data[*pos] << 8) | data[*pos + 1];
    *pos += 2;
    if (n == 0 || n > max || len - *pos < n || memchr(data + *pos, '\0', n) ||
        !tc_utf8_valid((const char *)data + *pos, n)) {
        return TC_EPARSE;
    }
    memcpy(out, data + *pos, n);
    out[n] = '\0';
    *pos += n;
    return 0;
}

/* Decodes a series value read from LMDB; nothing in it is trusted. */
static int series_decode(const uint8_t *data, size_t len, series_rec_t *r)
{
    if (len < SERIES_HEADER_LEN || len > SERIES_VALUE_MAX || data[0] != SERIES_VALUE_VERSION ||
        data[1] < AGG_KIND_REQUESTS || data[1] > AGG_KIND_TIMING) {
        return TC_EPARSE;
    }
    r->kind = (agg_kind_t)data[1];
    r->first_s = unbiased(tc_be64_get(data + 2));
    r->last_s = unbiased(tc_be64_get(data + 10));
    size_t pos = SERIES_HEADER_LEN;
    if (get_str(data, len, &pos, r->service, AGG_MAX_SERVICE) != 0 ||
        get_str(data, len, &pos, r->environment, AGG_MAX_ENVIRONMENT) != 0 ||
        get_str(data, len, &pos, r->name, AGG_MAX_NAME) != 0 || pos != len) {
        return TC_EPARSE;
    }
    return 0;
}

/* ---- open / close ------------------------------------------------------------------ */

static int open_dbis(MDB_txn *txn, void *ctx)
{
    agg_store_t *self = ctx;
    int rc = tc_lmdb_dbi(txn, "buckets", 0, &self->buckets);
    if (rc == 0) {
        rc = tc_lmdb_dbi(txn, "series", 0, &self->series);
    }
    if (rc == 0) {
        rc = tc_lmdb_dbi(txn, "offsets", 0, &self->offsets);
    }
    if (rc == 0) {
        rc = tc_lmdb_dbi(txn, "dedupe", 0, &self->dedupe);
    }
    if (rc == 0) {
        rc = tc_lmdb_dbi(txn, "dedupe_time", 0, &self->dedupe_time);
    }
    if (rc == 0) {
        rc = tc_lmdb_dbi(txn, "unpublished", 0, &self->unpublished);
    }
    if (rc == 0) {
        rc = tc_lmdb_dbi(txn, "meta", 0, &self->meta);
    }
    if (rc != 0) {
        return rc;
    }
    MDB_val k = {6, (void *)"format"}, v;
    int mrc = mdb_get(txn, self->meta, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        uint8_t ver[4];
        tc_be32_put(ver, FORMAT_VERSION);
        v.mv_size = 4;
        v.mv_data = ver;
        return lmdb_result(mdb_put(txn, self->meta, &k, &v, 0));
    }
    if (mrc != 0) {
        return lmdb_result(mrc);
    }
    if (v.mv_size != 4 || tc_be32_get(v.mv_data) != FORMAT_VERSION) {
        tc_log(TC_LOG_ERROR, "store.format", "the data directory holds an unknown format");
        return TC_EINVAL;
    }
    return 0;
}

agg_store_t *agg_store_open(const agg_store_opts_t *opts)
{
    agg_store_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->max_map = opts->max_map;
    self->grace_us = opts->grace_ms * 1000;
    self->dedupe_window_us = opts->dedupe_window_ms * 1000;
    if (pthread_rwlock_init(&self->remap, NULL) != 0) {
        free(self);
        return NULL;
    }
    self->remap_ok = true;
    if (tc_lmdb_open(&self->env, opts->dir, opts->map_size, 8, 0) != 0) {
        agg_store_destroy(&self);
        return NULL;
    }
    int rc = tc_lmdb_write(self->env, self->max_map, open_dbis, self);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "store.open", "%s: %s", opts->dir, tc_strerror(rc));
        agg_store_destroy(&self);
        return NULL;
    }
    return self;
}

void agg_store_destroy(agg_store_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    agg_store_t *self = *self_p;
    if (self->env) {
        mdb_env_close(self->env);
    }
    if (self->remap_ok) {
        pthread_rwlock_destroy(&self->remap);
    }
    free(self);
    *self_p = NULL;
}

bool agg_store_bucket_closed(int64_t start_s, int64_t now_us, int64_t grace_us)
{
    int64_t end_s = start_s + AGG_BUCKET_WIDTH_S; /* start_s is at most |INT64_MIN| / 10^6 */
    if (end_s > INT64_MAX / 1000000) {
        return false;
    }
    if (end_s < INT64_MIN / 1000000) {
        return true;
    }
    int64_t end_us = end_s * 1000000;
    if (grace_us > 0 && end_us > INT64_MAX - grace_us) {
        return false;
    }
    return now_us >= end_us + grace_us;
}

/* ---- reads --------------------------------------------------------------------------- */

static int read_begin(agg_store_t *self, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&self->remap);
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
    if (mrc != 0) {
        pthread_rwlock_unlock(&self->remap);
        tc_log(TC_LOG_ERROR, "store.read", "begin: %s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    return 0;
}

static void read_end(agg_store_t *self, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&self->remap);
}

static int offset_read(agg_store_t *self, MDB_txn *txn, const char *topic, int32_t partition,
                       int64_t *next)
{
    uint8_t k[OFFSET_KEY_MAX];
    size_t klen = 0;
    if (offset_key(k, topic, partition, &klen) != 0) {
        return TC_EINVAL;
    }
    MDB_val key = {klen, k}, val;
    int mrc = mdb_get(txn, self->offsets, &key, &val);
    if (mrc == MDB_NOTFOUND) {
        return TC_ENOTFOUND;
    }
    if (mrc != 0) {
        return mrc;
    }
    int64_t v = val.mv_size == 8 ? (int64_t)tc_be64_get(val.mv_data) : -1;
    if (v < 0) {
        /* Not a value we wrote: start the partition over rather than trust it. */
        tc_log(TC_LOG_ERROR, "store.corrupt", "offset of %s/%d is corrupt; ignored", topic,
               (int)partition);
        return TC_ENOTFOUND;
    }
    *next = v;
    return 0;
}

int agg_store_offset_get(agg_store_t *self, const char *topic, int32_t partition, int64_t *next)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = offset_read(self, txn, topic, partition, next);
    read_end(self, txn);
    if (rc != 0 && rc != TC_ENOTFOUND && rc != TC_EINVAL) {
        tc_log(TC_LOG_ERROR, "store.read", "offset of %s/%d: %s", topic, (int)partition,
               mdb_strerror(rc));
        return TC_ELMDB;
    }
    return rc;
}

/* The write path: first without growing the map (readers may be running), and when the map
 * is full, again with every reader kept out so that LMDB may remap the file. */
static int write_txn(agg_store_t *self, tc_lmdb_txn_fn fn, void *ctx)
{
    size_t current = tc_lmdb_map_size(self->env);
    int rc = tc_lmdb_write(self->env, current, fn, ctx);
    if (rc != TC_EFULL || (self->max_map && current >= self->max_map)) {
        return rc;
    }
    pthread_rwlock_wrlock(&self->remap);
    rc = tc_lmdb_write(self->env, self->max_map, fn, ctx);
    pthread_rwlock_unlock(&self->remap);
    return rc;
}

typedef struct {
    agg_store_t *self;
    const char *topic;
    int32_t partition;
    int64_t next;
} offset_set_ctx_t;

static int offset_set_txn(MDB_txn *txn, void *ctx)
{
    offset_set_ctx_t *c = ctx;
    uint8_t k[OFFSET_KEY_MAX], v[8];
    size_t klen = 0;
    if (offset_key(k, c->topic, c->partition, &klen) != 0) {
        return TC_EINVAL;
    }
    tc_be64_put(v, (uint64_t)c->next);
    MDB_val key = {klen, k}, val = {8, v};
    return lmdb_result(mdb_put(txn, c->self->offsets, &key, &val, 0));
}

int agg_store_offset_set(agg_store_t *self, const char *topic, int32_t partition, int64_t next)
{
    assert(self);
    if (next < 0) {
        return TC_EINVAL;
    }
    offset_set_ctx_t c = {self, topic, partition, next};
    return write_txn(self, offset_set_txn, &c);
}

/* ---- apply ------------------------------------------------------------------------------ */

typedef struct {
    bool used;
    bool dirty;
    uint8_t key[AGG_STORE_KEY_LEN];
    uint64_t revision; /* as stored; 0 for a new bucket */
    agg_bucket_t b;
} bucket_slot_t;

typedef struct {
    bool used;
    bool dirty;
    const char *conflict; /* NULL when the series may take samples */
    uint8_t key[SERIES_KEY_LEN];
    agg_kind_t kind;
    int64_t first_s;
    int64_t last_s;
    const char *service; /* borrowed from a decoded event of this batch */
    const char *environment;
    const char *name;
} series_slot_t;

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t next; /* -1 while nothing is stored or applied */
    bool dirty;
} part_slot_t;

typedef struct {
    agg_store_t *self;
    agg_msg_t *msgs;
    size_t n;
    Tocsin__V1__Event **events;
    const char **decode_reason;
    const agg_owed_ref_t *delivered;
    size_t ndelivered;
    int64_t now_us;
    bucket_slot_t *bslots;
    size_t bcap;
    series_slot_t *sslots;
    size_t scap;
    part_slot_t *parts;
    size_t nparts;
    agg_batch_stats_t st;
} apply_ctx_t;

static size_t slot_index(const uint8_t *key, size_t len, size_t cap)
{
    return (size_t)(XXH3_64bits(key, len) & (cap - 1));
}

static void reset_ctx(apply_ctx_t *c)
{
    for (size_t i = 0; i < c->bcap; i++) {
        if (c->bslots[i].used) {
            agg_bucket_fini(&c->bslots[i].b);
        }
    }
    memset(c->bslots, 0, c->bcap * sizeof(*c->bslots));
    memset(c->sslots, 0, c->scap * sizeof(*c->sslots));
    c->nparts = 0;
    memset(&c->st, 0, sizeof(c->st));
}

static int part_get(apply_ctx_t *c, MDB_txn *txn, const char *topic, int32_t partition,
                    part_slot_t **out)
{
    for (size_t i = 0; i < c->nparts; i++) {
        if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0) {
            *out = &c->parts[i];
            return 0;
        }
    }
    part_slot_t *p = &c->parts[c->nparts++]; /* at most one per message: sized n */
    p->topic = topic;
    p->partition = partition;
    p->next = -1;
    p->dirty = false;
    int64_t next = 0;
    int rc = offset_read(c->self, txn, topic, partition, &next);
    if (rc == 0) {
        p->next = next;
    } else if (rc != TC_ENOTFOUND) {
        return rc;
    }
    *out = p;
    return 0;
}

/*
 * Finds or creates the series of a sample. A new series is written at once (so that a
 * later sample of this batch sees it) after checking that its name is not used with
 * another kind in another environment. Sets slot->conflict when the sample must be
 * refused.
 */
static int series_get(apply_ctx_t *c, MDB_txn *txn, const agg_sample_t *s, series_slot_t **out)
{
    uint8_t key[SERIES_KEY_LEN];
    series_key(key, s->service, s->name, s->environment);
    size_t i = slot_index(key, sizeof(key), c->scap);
    while (c->sslots[i].used) {
        if (memcmp(c->sslots[i].key, key, sizeof(key)) == 0) {
            *out = &c->sslots[i];
            return 0;
        }
        i = (i + 1) & (c->scap - 1);
    }
    series_slot_t *sl = &c->sslots[i];
    sl->used = true;
    memcpy(sl->key, key, sizeof(key));
    sl->service = s->service;
    sl->environment = s->environment;
    sl->name = s->name;
    sl->kind = s->kind;
    sl->first_s = sl->last_s = s->start_s;
    *out = sl;

    series_rec_t rec;
    MDB_val k = {sizeof(key), key}, v;
    int mrc = mdb_get(txn, c->self->series, &k, &v);
    if (mrc == 0) {
        if (series_decode(v.mv_data, v.mv_size, &rec) != 0) {
            tc_log(TC_LOG_ERROR, "store.corrupt", "series of %s/%s is corrupt; rewritten",
                   s->service, s->name);
            c->st.corrupt++;
            sl->dirty = true;
            return 0;
        }
        if (strcmp(rec.service, s->service) != 0 || strcmp(rec.name, s->name) != 0 ||
            strcmp(rec.environment, s->environment) != 0) {
            sl->conflict = "hash_collision";
            return 0;
        }
        if (rec.kind != s->kind) {
            sl->conflict = "kind";
            return 0;
        }
        sl->first_s = rec.first_s;
        sl->last_s = rec.last_s;
        return 0;
    }
    if (mrc != MDB_NOTFOUND) {
        return mrc;
    }
    /* New series: the same service and name in another environment must have this kind. */
    MDB_cursor *cur = NULL;
    mrc = mdb_cursor_open(txn, c->self->series, &cur);
    if (mrc != 0) {
        return mrc;
    }
    MDB_val ck = {16, key}, cv;
    mrc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
    while (mrc == 0 && ck.mv_size == SERIES_KEY_LEN && memcmp(ck.mv_data, key, 16) == 0) {
        if (series_decode(cv.mv_data, cv.mv_size, &rec) == 0 &&
            strcmp(rec.service, s->service) == 0 && strcmp(rec.name, s->name) == 0 &&
            rec.kind != s->kind) {
            sl->conflict = "kind";
            break;
        }
        mrc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    if (sl->conflict) {
        return 0;
    }
    uint8_t buf[SERIES_VALUE_MAX];
    v.mv_size =
        series_encode(buf, s->kind, s->start_s, s->start_s, s->service, s->environment, s->name);
    v.mv_data = buf;
    return mdb_put(txn, c->self->series, &k, &v, 0);
}

static int bucket_get(apply_ctx_t *c, MDB_txn *txn, const agg_sample_t *s, bucket_slot_t **out)
{
    uint8_t key[AGG_STORE_KEY_LEN];
    bucket_key(key, s->service, s->name, s->start_s, s->environment);
    size_t i = slot_index(key, sizeof(key), c->bcap);
    while (c->bslots[i].used) {
        if (memcmp(c->bslots[i].key, key, sizeof(key)) == 0) {
            *out = &c->bslots[i];
            return 0;
        }
        i = (i + 1) & (c->bcap - 1);
    }
    bucket_slot_t *sl = &c->bslots[i];
    sl->used = true;
    memcpy(sl->key, key, sizeof(key));
    *out = sl;
    MDB_val k = {sizeof(key), key}, v;
    int mrc = mdb_get(txn, c->self->buckets, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        agg_bucket_init(&sl->b);
        return 0;
    }
    if (mrc != 0) {
        agg_bucket_init(&sl->b);
        return mrc;
    }
    int rc = agg_bucket_decode(v.mv_data, v.mv_size, &sl->b, &sl->revision);
    if (rc == TC_ENOMEM) {
        return rc;
    }
    if (rc != 0) {
        /* Keep the revision climbing so consumers of the rollups take the new content. */
        sl->revision = v.mv_size >= 8 ? tc_be64_get(v.mv_data) : 0;
        tc_log(TC_LOG_ERROR, "store.corrupt",
               "bucket %s/%s at %lld is corrupt (%s); started afresh", s->service, s->name,
               (long long)s->start_s, tc_strerror(rc));
        c->st.corrupt++;
        agg_bucket_fini(&sl->b);
        agg_bucket_init(&sl->b);
        return 0;
    }
    if (sl->b.kind != s->kind || strcmp(sl->b.service, s->service) != 0 ||
        strcmp(sl->b.name, s->name) != 0 || strcmp(sl->b.environment, s->environment) != 0) {
        /* The series check passed, so this bucket was written for another series. */
        tc_log(TC_LOG_ERROR, "store.corrupt",
               "bucket %s/%s at %lld belongs to another series; started afresh", s->service,
               s->name, (long long)s->start_s);
        c->st.corrupt++;
        agg_bucket_fini(&sl->b);
        agg_bucket_init(&sl->b);
    }
    return 0;
}

static int clear_delivered(apply_ctx_t *c, MDB_txn *txn)
{
    for (size_t i = 0; i < c->ndelivered; i++) {
        MDB_val k = {AGG_STORE_KEY_LEN, (void *)c->delivered[i].key}, v;
        int mrc = mdb_get(txn, c->self->unpublished, &k, &v);
        if (mrc == MDB_NOTFOUND) {
            continue;
        }
        if (mrc != 0) {
            return mrc;
        }
        if (v.mv_size == 8 && tc_be64_get(v.mv_data) > c->delivered[i].revision) {
            continue; /* changed since: the newer revision is still owed */
        }
        mrc = mdb_del(txn, c->self->unpublished, &k, NULL);
        if (mrc != 0) {
            return mrc;
        }
        c->st.owed_cleared++;
    }
    return 0;
}

/* Sets *dup when the event id was seen within the window; remembers it otherwise.
 * Returns 0 or an LMDB error. */
static int dedupe(apply_ctx_t *c, MDB_txn *txn, const Tocsin__V1__Event *ev, int64_t t_us,
                  bool *dup)
{
    MDB_val k = {AGG_EVENT_ID_LEN, ev->event_id.data}, v;
    int mrc = mdb_get(txn, c->self->dedupe, &k, &v);
    *dup = mrc == 0;
    if (mrc != MDB_NOTFOUND) {
        return mrc;
    }
    uint8_t tv[8], tk[DEDUPE_TIME_KEY_LEN];
    tc_be64_put(tv, biased(t_us));
    v.mv_size = 8;
    v.mv_data = tv;
    mrc = mdb_put(txn, c->self->dedupe, &k, &v, 0);
    if (mrc != 0) {
        return mrc;
    }
    memcpy(tk, tv, 8);
    memcpy(tk + 8, ev->event_id.data, AGG_EVENT_ID_LEN);
    MDB_val kk = {sizeof(tk), tk}, empty = {0, NULL};
    return mdb_put(txn, c->self->dedupe_time, &kk, &empty, 0);
}

static int prune_dedupe(apply_ctx_t *c, MDB_txn *txn, int64_t cutoff_us, size_t limit)
{
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, c->self->dedupe_time, &cur);
    if (mrc != 0) {
        return mrc;
    }
    MDB_val k, v;
    size_t done = 0;
    while (done < limit && (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size == DEDUPE_TIME_KEY_LEN) {
            if (unbiased(tc_be64_get(k.mv_data)) >= cutoff_us) {
                break;
            }
            MDB_val id = {AGG_EVENT_ID_LEN, (uint8_t *)k.mv_data + 8};
            mrc = mdb_del(txn, c->self->dedupe, &id, NULL);
            if (mrc != 0 && mrc != MDB_NOTFOUND) {
                break;
            }
        }
        mrc = mdb_cursor_del(cur, 0);
        if (mrc != 0) {
            break;
        }
        done++;
    }
    mdb_cursor_close(cur);
    c->st.dedupe_pruned += done;
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int write_results(apply_ctx_t *c, MDB_txn *txn)
{
    for (size_t i = 0; i < c->bcap; i++) {
        bucket_slot_t *sl = &c->bslots[i];
        if (!sl->used || !sl->dirty) {
            continue;
        }
        uint64_t rev = sl->revision + 1;
        uint8_t *buf = NULL;
        size_t len = 0;
        int rc = agg_bucket_encode(&sl->b, rev, &buf, &len);
        if (rc != 0) {
            return rc;
        }
        MDB_val k = {AGG_STORE_KEY_LEN, sl->key}, v = {len, buf};
        int mrc = mdb_put(txn, c->self->buckets, &k, &v, 0);
        free(buf);
        if (mrc != 0) {
            return mrc;
        }
        uint8_t ok[AGG_STORE_KEY_LEN], rv[8];
        owed_key(ok, sl->key);
        tc_be64_put(rv, rev);
        MDB_val k2 = {sizeof(ok), ok}, v2 = {8, rv};
        mrc = mdb_put(txn, c->self->unpublished, &k2, &v2, 0);
        if (mrc != 0) {
            return mrc;
        }
        c->st.buckets_written++;
    }
    for (size_t i = 0; i < c->scap; i++) {
        series_slot_t *sl = &c->sslots[i];
        if (!sl->used || !sl->dirty || sl->conflict) {
            continue;
        }
        uint8_t buf[SERIES_VALUE_MAX];
        MDB_val k = {SERIES_KEY_LEN, sl->key};
        MDB_val v = {series_encode(buf, sl->kind, sl->first_s, sl->last_s, sl->service,
                                   sl->environment, sl->name),
                     buf};
        int mrc = mdb_put(txn, c->self->series, &k, &v, 0);
        if (mrc != 0) {
            return mrc;
        }
    }
    for (size_t i = 0; i < c->nparts; i++) {
        part_slot_t *p = &c->parts[i];
        if (!p->dirty) {
            continue;
        }
        uint8_t k[OFFSET_KEY_MAX], v[8];
        size_t klen = 0;
        if (offset_key(k, p->topic, p->partition, &klen) != 0) {
            return TC_EINVAL;
        }
        tc_be64_put(v, (uint64_t)p->next);
        MDB_val key = {klen, k}, val = {8, v};
        int mrc = mdb_put(txn, c->self->offsets, &key, &val, 0);
        if (mrc != 0) {
            return mrc;
        }
    }
    return 0;
}

static int apply_one(apply_ctx_t *c, MDB_txn *txn, size_t i, int64_t *max_t)
{
    agg_msg_t *m = &c->msgs[i];
    m->late = false;
    m->reason = NULL;
    c->st.consumed++;
    part_slot_t *p = NULL;
    int rc = part_get(c, txn, m->topic, m->partition, &p);
    if (rc != 0) {
        return rc;
    }
    if (p->next >= 0 && m->offset < p->next) {
        m->result = AGG_MSG_STALE;
        c->st.stale++;
        return 0;
    }
    p->next = m->offset + 1;
    p->dirty = true;
    const Tocsin__V1__Event *ev = c->events[i];
    if (!ev) {
        m->result = AGG_MSG_INVALID;
        m->reason = c->decode_reason[i];
        c->st.invalid++;
        return 0;
    }
    agg_sample_t s;
    if (agg_event_sample(ev, &s) != 0) {
        m->result = AGG_MSG_INVALID;
        m->reason = "event";
        c->st.invalid++;
        return 0;
    }
    if (s.kind == AGG_KIND_NONE) {
        m->result = AGG_MSG_IGNORED;
        c->st.ignored++;
        return 0;
    }
    series_slot_t *ser = NULL;
    rc = series_get(c, txn, &s, &ser);
    if (rc != 0) {
        return rc;
    }
    if (ser->conflict) {
        m->result = AGG_MSG_CONFLICT;
        m->reason = ser->conflict;
        c->st.conflicts++;
        return 0;
    }
    /* Dedupe time: when the collector received the event, never later than now. */
    int64_t t = ev->received_us > 0 && ev->received_us < c->now_us ? ev->received_us : c->now_us;
    bool dup = false;
    rc = dedupe(c, txn, ev, t, &dup);
    if (rc != 0) {
        return rc;
    }
    if (dup) {
        m->result = AGG_MSG_DUPLICATE;
        c->st.duplicates++;
        return 0;
    }
    if (t > *max_t) {
        *max_t = t;
    }
    bucket_slot_t *bs = NULL;
    rc = bucket_get(c, txn, &s, &bs);
    if (rc != 0) {
        return rc;
    }
    int64_t arrival = ev->received_us > 0 ? ev->received_us : c->now_us;
    bool late = agg_store_bucket_closed(s.start_s, arrival, c->self->grace_us);
    rc = agg_bucket_apply(&bs->b, &s, late);
    if (rc != 0) {
        return rc;
    }
    bs->dirty = true;
    if (s.start_s < ser->first_s) {
        ser->first_s = s.start_s;
        ser->dirty = true;
    }
    if (s.start_s > ser->last_s) {
        ser->last_s = s.start_s;
        ser->dirty = true;
    }
    m->result = AGG_MSG_APPLIED;
    m->late = late;
    c->st.applied++;
    if (late) {
        c->st.late++;
    }
    return 0;
}

/* The body of the batch's write transaction; tc_lmdb_write may run it again after growing
 * the map, so everything it builds is reset first. */
static int apply_txn(MDB_txn *txn, void *ctx)
{
    apply_ctx_t *c = ctx;
    reset_ctx(c);
    int rc = clear_delivered(c, txn);
    int64_t max_t = INT64_MIN;
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        rc = apply_one(c, txn, i, &max_t);
    }
    if (rc == 0) {
        rc = write_results(c, txn);
    }
    if (rc == 0 && max_t != INT64_MIN && c->self->dedupe_window_us > 0) {
        rc = prune_dedupe(c, txn, max_t - c->self->dedupe_window_us, 2 * c->n + 1024);
    }
    return lmdb_result(rc);
}

static size_t pow2_at_least(size_t n)
{
    size_t cap = 16;
    while (cap < n) {
        cap *= 2;
    }
    return cap;
}

int agg_store_apply(agg_store_t *self, agg_msg_t *msgs, size_t n, const agg_owed_ref_t *delivered,
                    size_t ndelivered, int64_t now_us, agg_batch_stats_t *stats)
{
    assert(self);
    apply_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.self = self;
    c.msgs = msgs;
    c.n = n;
    c.delivered = delivered;
    c.ndelivered = ndelivered;
    c.now_us = now_us;
    c.bcap = pow2_at_least(2 * n);
    c.scap = pow2_at_least(2 * n);
    int rc = TC_ENOMEM;
    c.events = calloc(n ? n : 1, sizeof(*c.events));
    c.decode_reason = calloc(n ? n : 1, sizeof(*c.decode_reason));
    c.bslots = calloc(c.bcap, sizeof(*c.bslots));
    c.sslots = calloc(c.scap, sizeof(*c.sslots));
    c.parts = calloc(n ? n : 1, sizeof(*c.parts));
    if (!c.events || !c.decode_reason || !c.bslots || !c.sslots || !c.parts) {
        goto out;
    }
    /* Decoding is pure, so it happens once, outside the transaction that may run twice. */
    for (size_t i = 0; i < n; i++) {
        const char *reason = NULL;
        if (agg_event_decode(msgs[i].value, msgs[i].len, &c.events[i], &reason) != 0) {
            c.events[i] = NULL;
            c.decode_reason[i] = reason ? reason : "event";
        }
    }
    rc = write_txn(self, apply_txn, &c);
    if (rc == 0 && stats) {
        *stats = c.st;
    }
out:
    if (c.bslots) {
        reset_ctx(&c);
    }
    for (size_t i = 0; c.events && i < n; i++) {
        if (c.events[i]) {
            tocsin__v1__event__free_unpacked(c.events[i], NULL);
        }
    }
    free(c.events);
    free(c.decode_reason);
    free(c.bslots);
    free(c.sslots);
    free(c.parts);
    return rc;
}

/* ---- queries --------------------------------------------------------------------------- */

/* Merges the buckets of one name hash in [from, to) into the accumulator. */
static int scan_series(agg_store_t *self, MDB_txn *txn, const agg_query_params_t *p, uint64_t hname,
                       bool check_name, agg_query_acc_t *acc, uint64_t *corrupt)
{
    uint8_t lo[AGG_STORE_KEY_LEN];
    uint64_t hsvc = h64(p->service);
    uint64_t henv = p->environment ? h64(p->environment) : 0;
    tc_be64_put(lo, hsvc);
    tc_be64_put(lo + 8, hname);
    tc_be64_put(lo + 16, biased(p->from_s));
    memset(lo + 24, 0, 8);
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, self->buckets, &cur);
    if (mrc != 0) {
        return TC_ELMDB;
    }
    int rc = 0;
    MDB_val k = {sizeof(lo), lo}, v;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0) {
        const uint8_t *kd = k.mv_data;
        if (k.mv_size != AGG_STORE_KEY_LEN || memcmp(kd, lo, 16) != 0 ||
            unbiased(tc_be64_get(kd + 16)) >= p->to_s) {
            break;
        }
        if (!p->environment || tc_be64_get(kd + 24) == henv) {
            agg_bucket_t b;
            uint64_t rev = 0;
            int drc = agg_bucket_decode(v.mv_data, v.mv_size, &b, &rev);
            if (drc == TC_ENOMEM) {
                agg_bucket_fini(&b);
                rc = drc;
                break;
            }
            if (drc != 0) {
                if (corrupt) {
                    (*corrupt)++;
                }
            } else if (strcmp(b.service, p->service) == 0 &&
                       (!check_name || strcmp(b.name, p->name) == 0) &&
                       (!p->environment || strcmp(b.environment, p->environment) == 0) &&
                       agg_query_wants(p, b.kind)) {
                rc = agg_query_add(acc, &b);
            }
            agg_bucket_fini(&b);
            if (rc != 0) {
                break;
            }
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = TC_ELMDB;
    }
    return rc;
}

static int query_txn(agg_store_t *self, MDB_txn *txn, const agg_query_params_t *p,
                     agg_query_acc_t *acc, uint64_t *corrupt)
{
    if (strcmp(p->name, AGG_QUERY_ALL) != 0) {
        return scan_series(self, txn, p, h64(p->name), true, acc, corrupt);
    }
    /* "*": every request series of the service; each name hash is scanned once. */
    uint8_t prefix[8];
    tc_be64_put(prefix, h64(p->service));
    uint64_t *names = NULL;
    size_t nnames = 0, cap = 0;
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->series, &cur) != 0) {
        return TC_ELMDB;
    }
    int rc = 0;
    MDB_val k = {sizeof(prefix), prefix}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (mrc == 0 && k.mv_size == SERIES_KEY_LEN && memcmp(k.mv_data, prefix, 8) == 0) {
        series_rec_t rec;
        uint64_t hname = tc_be64_get((const uint8_t *)k.mv_data + 8);
        if (series_decode(v.mv_data, v.mv_size, &rec) == 0 && rec.kind == AGG_KIND_REQUESTS &&
            strcmp(rec.service, p->service) == 0) {
            bool seen = false;
            for (size_t i = 0; i < nnames && !seen; i++) {
                seen = names[i] == hname;
            }
            if (!seen) {
                if (nnames == cap) {
                    size_t ncap = cap ? cap * 2 : 16;
                    uint64_t *nn = realloc(names, ncap * sizeof(*nn));
                    if (!nn) {
                        rc = TC_ENOMEM;
                        break;
                    }
                    names = nn;
                    cap = ncap;
                }
                names[nnames++] = hname;
            }
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; rc == 0 && i < nnames; i++) {
        rc = scan_series(self, txn, p, names[i], false, acc, corrupt);
    }
    free(names);
    return rc;
}

int agg_store_query(agg_store_t *self, const agg_query_params_t *p, agg_query_acc_t *acc,
                    uint64_t *corrupt)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = query_txn(self, txn, p, acc, corrupt);
    read_end(self, txn);
    return rc;
}

int agg_store_series(agg_store_t *self, const char *service, agg_series_fn fn, void *ctx)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->series, &cur) != 0) {
        read_end(self, txn);
        return TC_ELMDB;
    }
    uint8_t prefix[8];
    MDB_val k, v;
    int mrc;
    if (service) {
        tc_be64_put(prefix, h64(service));
        k.mv_size = sizeof(prefix);
        k.mv_data = prefix;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    series_rec_t *rec = malloc(sizeof(*rec));
    if (!rec) {
        mrc = MDB_NOTFOUND;
        rc = TC_ENOMEM;
    }
    while (mrc == 0) {
        if (service && (k.mv_size != SERIES_KEY_LEN || memcmp(k.mv_data, prefix, 8) != 0)) {
            break;
        }
        if (series_decode(v.mv_data, v.mv_size, rec) == 0 &&
            (!service || strcmp(rec->service, service) == 0)) {
            agg_series_info_t info = {rec->service, rec->environment, rec->name,
                                      rec->kind,    rec->first_s,     rec->last_s};
            if (fn(ctx, &info) != 0) {
                break;
            }
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    free(rec);
    mdb_cursor_close(cur);
    read_end(self, txn);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = TC_ELMDB;
    }
    return rc;
}

int agg_store_owed(agg_store_t *self, int64_t now_us, agg_owed_fn fn, void *ctx)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->unpublished, &cur) != 0) {
        read_end(self, txn);
        return TC_ELMDB;
    }
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        agg_owed_ref_t ref;
        memset(&ref, 0, sizeof(ref));
        if (k.mv_size != AGG_STORE_KEY_LEN || v.mv_size != 8) {
            /* Not an entry we wrote; it cannot name a bucket, so it is passed over. */
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            continue;
        }
        memcpy(ref.key, k.mv_data, AGG_STORE_KEY_LEN);
        ref.revision = tc_be64_get(v.mv_data);
        if (!agg_store_bucket_closed(unbiased(tc_be64_get(ref.key)), now_us, self->grace_us)) {
            break; /* ordered by start: every later bucket is open too */
        }
        agg_bucket_t b;
        agg_bucket_init(&b);
        bool have = false;
        uint8_t bk[AGG_STORE_KEY_LEN];
        bucket_key_of_owed(bk, ref.key);
        MDB_val key = {sizeof(bk), bk}, val;
        if (mdb_get(txn, self->buckets, &key, &val) == 0) {
            uint64_t rev = 0;
            agg_bucket_fini(&b);
            have = agg_bucket_decode(val.mv_data, val.mv_size, &b, &rev) == 0;
            if (have) {
                ref.revision = rev;
            }
        }
        int stop = fn(ctx, &ref, have ? &b : NULL);
        agg_bucket_fini(&b);
        if (stop) {
            break;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    read_end(self, txn);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return TC_ELMDB;
    }
    return 0;
}

uint64_t agg_store_owed_count(agg_store_t *self)
{
    MDB_txn *txn = NULL;
    if (read_begin(self, &txn) != 0) {
        return 0;
    }
    MDB_stat st;
    uint64_t n = mdb_stat(txn, self->unpublished, &st) == 0 ? st.ms_entries : 0;
    read_end(self, txn);
    return n;
}

int agg_store_check(agg_store_t *self, char *detail, size_t len)
{
    MDB_txn *txn = NULL;
    if (read_begin(self, &txn) != 0) {
        snprintf(detail, len, "cannot begin a read transaction");
        return TC_ELMDB;
    }
    MDB_stat sb, ss;
    int mrc = mdb_stat(txn, self->buckets, &sb);
    if (mrc == 0) {
        mrc = mdb_stat(txn, self->series, &ss);
    }
    read_end(self, txn);
    if (mrc != 0) {
        snprintf(detail, len, "%s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    snprintf(detail, len, "%zu buckets, %zu series", sb.ms_entries, ss.ms_entries);
    return 0;
}

size_t agg_store_map_bytes(agg_store_t *self)
{
    pthread_rwlock_rdlock(&self->remap);
    size_t n = tc_lmdb_map_size(self->env);
    pthread_rwlock_unlock(&self->remap);
    return n;
}

size_t agg_store_used_bytes(agg_store_t *self)
{
    pthread_rwlock_rdlock(&self->remap);
    size_t n = tc_lmdb_used_bytes(self->env);
    pthread_rwlock_unlock(&self->remap);
    return n;
}

int agg_store_reader_check(agg_store_t *self)
{
    return tc_lmdb_reader_check(self->env);
}
