#include "agg_store.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "agg_store_int.h"
#include "tc_error.h"
#include "tc_lmdb.h"
#include "tc_log.h"
#include "tc_util.h"

/* ---- keys and small values ----------------------------------------------------------------- */

uint64_t agg_h64(const char *s, size_t n)
{
    return XXH3_64bits(s, n);
}

uint64_t agg_biased(int64_t v)
{
    return (uint64_t)v ^ SIGN_BIT;
}

int64_t agg_unbiased(uint64_t v)
{
    return (int64_t)(v ^ SIGN_BIT);
}

static uint64_t hs(const char *s)
{
    return agg_h64(s, strlen(s));
}

void agg_bucket_key(uint8_t k[BUCKET_KEY_LEN], uint64_t hsvc, uint64_t hname, int64_t start_s,
                    uint64_t henv, uint32_t partition)
{
    tc_be64_put(k, hsvc);
    tc_be64_put(k + 8, hname);
    tc_be64_put(k + 16, agg_biased(start_s));
    tc_be64_put(k + 24, henv);
    tc_be32_put(k + 32, partition);
}

void agg_series_key(uint8_t k[SERIES_KEY_LEN], uint64_t hsvc, uint64_t hname, uint64_t henv)
{
    tc_be64_put(k, hsvc);
    tc_be64_put(k + 8, hname);
    tc_be64_put(k + 16, henv);
}

void agg_issue_key_bytes(uint8_t k[ISSUE_KEY_LEN], uint64_t hsvc, uint64_t hid, uint32_t partition)
{
    tc_be64_put(k, hsvc);
    tc_be64_put(k + 8, hid);
    tc_be32_put(k + 16, partition);
}

int agg_part_key(uint8_t *k, const char *topic, int32_t partition, size_t *klen)
{
    size_t tl = topic ? strnlen(topic, AGG_TOPIC_MAX + 1) : 0;
    if (tl == 0 || tl > AGG_TOPIC_MAX || partition < 0) {
        return TC_EINVAL;
    }
    memcpy(k, topic, tl);
    k[tl] = '\0';
    tc_be32_put(k + tl + 1, (uint32_t)partition);
    *klen = tl + 1 + 4;
    return 0;
}

static size_t put_str(uint8_t *p, const char *s, size_t n)
{
    p[0] = (uint8_t)(n >> 8);
    p[1] = (uint8_t)n;
    memcpy(p + 2, s, n);
    return 2 + n;
}

size_t agg_series_encode(uint8_t *buf, agg_kind_t kind, int64_t first_s, int64_t last_s,
                         agg_str_t service, agg_str_t environment, agg_str_t name)
{
    buf[0] = SERIES_VALUE_VERSION;
    buf[1] = (uint8_t)kind;
    tc_be64_put(buf + 2, agg_biased(first_s));
    tc_be64_put(buf + 10, agg_biased(last_s));
    size_t n = SERIES_HEADER_LEN;
    n += put_str(buf + n, service.p, service.n);
    n += put_str(buf + n, environment.p, environment.n);
    n += put_str(buf + n, name.p, name.n);
    return n;
}

static int get_str(const uint8_t *data, size_t len, size_t *pos, char *out, size_t max)
{
    if (len - *pos < 2) {
        return TC_EPARSE;
    }
    size_t n = ((size_t)data[*pos] << 8) | data[*pos + 1];
    *pos += 2;
    if (n > max || len - *pos < n || !agg_text_ok((const char *)data + *pos, n, max)) {
        return TC_EPARSE;
    }
    memcpy(out, data + *pos, n);
    out[n] = '\0';
    *pos += n;
    return 0;
}

int agg_series_decode(const uint8_t *data, size_t len, agg_series_rec_t *r)
{
    if (len < SERIES_HEADER_LEN || len > SERIES_VALUE_MAX || data[0] != SERIES_VALUE_VERSION ||
        data[1] < AGG_KIND_REQUESTS || data[1] > AGG_KIND_TIMING) {
        return TC_EPARSE;
    }
    r->kind = (agg_kind_t)data[1];
    r->first_s = agg_unbiased(tc_be64_get(data + 2));
    r->last_s = agg_unbiased(tc_be64_get(data + 10));
    size_t pos = SERIES_HEADER_LEN;
    if (get_str(data, len, &pos, r->service, AGG_MAX_SERVICE) != 0 ||
        get_str(data, len, &pos, r->environment, AGG_MAX_ENVIRONMENT) != 0 ||
        get_str(data, len, &pos, r->name, AGG_MAX_NAME) != 0 || pos != len || !r->service[0] ||
        !r->environment[0] || !r->name[0]) {
        return TC_EPARSE;
    }
    return 0;
}

size_t agg_status_encode(uint8_t *buf, const agg_issue_status_t *st, const char *service,
                         const char *id)
{
    buf[0] = 1;
    buf[1] = (uint8_t)st->status;
    tc_be64_put(buf + 2, agg_biased(st->updated_us));
    size_t n = 10;
    n += put_str(buf + n, st->updated_by, strnlen(st->updated_by, sizeof(st->updated_by) - 1));
    n += put_str(buf + n, service, strlen(service));
    n += put_str(buf + n, id, strlen(id));
    return n;
}

int agg_status_decode(const uint8_t *data, size_t len, agg_status_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    if (len < 10 || len > STATUS_VALUE_MAX || data[0] != 1 || data[1] < AGG_STATUS_UNRESOLVED ||
        data[1] > AGG_STATUS_IGNORED) {
        return TC_EPARSE;
    }
    r->st.status = (agg_status_t)data[1];
    r->st.updated_us = agg_unbiased(tc_be64_get(data + 2));
    size_t pos = 10;
    if (get_str(data, len, &pos, r->st.updated_by, sizeof(r->st.updated_by) - 1) != 0 ||
        get_str(data, len, &pos, r->service, AGG_MAX_SERVICE) != 0 ||
        get_str(data, len, &pos, r->id, AGG_ISSUE_ID_MAX) != 0 || pos != len) {
        return TC_EPARSE;
    }
    return 0;
}

int agg_lmdb_result(int rc)
{
    if (rc == 0 || rc == MDB_MAP_FULL || (rc < 0 && rc >= TC_EUNKNOWNKEY)) {
        return rc;
    }
    tc_log(TC_LOG_ERROR, "store.write", "%s", mdb_strerror(rc));
    return TC_ELMDB;
}

/* ---- open / close -----------------------------------------------------------------------------
 */

static int meta_u64(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int mrc = mdb_get(txn, meta, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (mrc != 0) {
        return mrc;
    }
    *out = v.mv_size == 8 ? tc_be64_get(v.mv_data) : 0;
    return 0;
}

/* Adds a request series' first and last start to its service-wide series row (created the
 * first time). */
static int migrate_series(agg_store_t *self, MDB_txn *txn, const agg_series_rec_t *route,
                          const uint8_t *bk, agg_series_rec_t *tmp)
{
    uint8_t sk[SERIES_KEY_LEN];
    agg_series_key(sk, tc_be64_get(bk), hs(AGG_SERVICE_NAME), tc_be64_get(bk + 24));
    int64_t first = route->first_s, last = route->last_s;
    MDB_val k = {sizeof(sk), sk}, v;
    int mrc = mdb_get(txn, self->series, &k, &v);
    if (mrc == 0 && agg_series_decode(v.mv_data, v.mv_size, tmp) == 0) {
        first = tmp->first_s < first ? tmp->first_s : first;
        last = tmp->last_s > last ? tmp->last_s : last;
    } else if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    uint8_t *buf = malloc(SERIES_VALUE_MAX);
    if (!buf) {
        return ENOMEM;
    }
    agg_str_t svc = {route->service, (uint32_t)strlen(route->service)};
    agg_str_t env = {route->environment, (uint32_t)strlen(route->environment)};
    agg_str_t name = {AGG_SERVICE_NAME, sizeof(AGG_SERVICE_NAME) - 1};
    v.mv_size = agg_series_encode(buf, AGG_KIND_REQUESTS, first, last, svc, env, name);
    v.mv_data = buf;
    mrc = mdb_put(txn, self->series, &k, &v, 0);
    free(buf);
    return mrc;
}

/* Merges one stored request bucket (key `bk`) into the service-wide bucket of the same
 * start and environment, of source partition `part`. A corrupt stored bucket is left out
 * and counted. */
static int migrate_bucket(agg_store_t *self, MDB_txn *txn, const uint8_t *bk, const char *name,
                          uint32_t part, const MDB_val *val, agg_bucket_t *acc, uint64_t *corrupt)
{
    uint8_t key[BUCKET_KEY_LEN];
    memcpy(key, bk, BUCKET_KEY_LEN);
    tc_be64_put(key + 8, hs(name));
    tc_be32_put(key + 32, part);
    MDB_val k = {sizeof(key), key}, v;
    int mrc = mdb_get(txn, self->buckets, &k, &v);
    int rc;
    if (mrc == MDB_NOTFOUND) {
        rc = agg_bucket_store_decode(val->mv_data, val->mv_size, acc);
    } else if (mrc != 0) {
        return mrc;
    } else {
        rc = agg_bucket_store_decode(v.mv_data, v.mv_size, acc);
        if (rc == 0) {
            rc = agg_bucket_store_merge(acc, val->mv_data, val->mv_size);
        }
    }
    if (rc == TC_ENOMEM) {
        return ENOMEM;
    }
    if (rc != 0) {
        (*corrupt)++;
        return 0;
    }
    size_t need = agg_bucket_store_size(acc);
    uint8_t *buf = malloc(need);
    if (!buf) {
        return ENOMEM;
    }
    v.mv_size = agg_bucket_store_encode(acc, buf);
    v.mv_data = buf;
    mrc = mdb_put(txn, self->buckets, &k, &v, 0);
    free(buf);
    return mrc;
}

/*
 * Format 2 to 3: builds every service's request totals (AGG_PART_ALL; merged 60 s buckets
 * into AGG_PART_MERGED ones) from its routes' buckets, and their series row. The minute
 * totals are left out: a query merges the 10 s totals where a minute has none. Returns 0 or
 * an LMDB code (ENOMEM).
 */
static int migrate_v3(agg_store_t *self, MDB_txn *txn, uint64_t *nbuckets, uint64_t *corrupt)
{
    const uint64_t hsn = hs(AGG_SERVICE_NAME), htn = hs(TOTAL_NAME);
    agg_series_rec_t *rec = malloc(sizeof(*rec));
    agg_series_rec_t *tmp = malloc(sizeof(*tmp));
    MDB_cursor *cur = NULL;
    agg_bucket_t acc;
    agg_bucket_init(&acc);
    int mrc = !rec || !tmp ? ENOMEM : mdb_cursor_open(txn, self->buckets, &cur);
    uint8_t last[SERIES_KEY_LEN];
    bool have = false, wanted = false;
    MDB_val k, v;
    if (mrc == 0) {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kd = k.mv_data;
        if (k.mv_size != BUCKET_KEY_LEN || tc_be64_get(kd + 8) == hsn ||
            tc_be64_get(kd + 8) == htn) {
            continue; /* the service-wide buckets written here are passed over */
        }
        uint8_t sk[SERIES_KEY_LEN];
        memcpy(sk, kd, 16);
        memcpy(sk + 16, kd + 24, 8);
        if (!have || memcmp(sk, last, sizeof(sk)) != 0) {
            memcpy(last, sk, sizeof(sk));
            have = true;
            MDB_val skv = {sizeof(sk), sk}, svv;
            int grc = mdb_get(txn, self->series, &skv, &svv);
            if (grc != 0 && grc != MDB_NOTFOUND) {
                mrc = grc;
                break;
            }
            wanted = grc == 0 && agg_series_decode(svv.mv_data, svv.mv_size, rec) == 0 &&
                     rec->kind == AGG_KIND_REQUESTS && strcmp(rec->name, AGG_SERVICE_NAME) != 0;
            uint8_t key[BUCKET_KEY_LEN];
            memcpy(key, kd, sizeof(key));
            if (wanted && (mrc = migrate_series(self, txn, rec, key, tmp)) != 0) {
                break;
            }
            MDB_val back = {sizeof(key), key};
            if (wanted && (mrc = mdb_cursor_get(cur, &back, &v, MDB_SET_KEY)) != 0) {
                break;
            }
            kd = back.mv_data;
        }
        if (!wanted) {
            continue;
        }
        /* Into its service's request total (a merged 60 s bucket into the totals' 60 s one).
         * The value is copied: the puts may move its page. */
        uint32_t part = tc_be32_get(kd + 32);
        uint8_t key[BUCKET_KEY_LEN];
        memcpy(key, kd, sizeof(key));
        MDB_val copy = {v.mv_size, malloc(v.mv_size ? v.mv_size : 1)};
        if (!copy.mv_data) {
            mrc = ENOMEM;
            break;
        }
        memcpy(copy.mv_data, v.mv_data, v.mv_size);
        mrc = migrate_bucket(self, txn, key, TOTAL_NAME,
                             part == AGG_PART_MERGED ? AGG_PART_MERGED : AGG_PART_ALL, &copy, &acc,
                             corrupt);
        free(copy.mv_data);
        if (mrc != 0) {
            break;
        }
        /* Back to this entry: the puts may have moved the cursor's page. */
        MDB_val back = {sizeof(key), key};
        if ((mrc = mdb_cursor_get(cur, &back, &v, MDB_SET)) != 0) {
            break;
        }
        (*nbuckets)++;
    }
    if (cur) {
        mdb_cursor_close(cur);
    }
    agg_bucket_fini(&acc);
    free(rec);
    free(tmp);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int open_dbis(MDB_txn *txn, void *ctx)
{
    agg_store_t *self = ctx;
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {
        {"buckets", &self->buckets},         {"series", &self->series},
        {"issues", &self->issues},           {"issue_index", &self->issue_index},
        {"status", &self->status},           {"parts", &self->parts},
        {"checkpoints", &self->checkpoints}, {"owed", &self->owed},
        {"changes", &self->changes},         {"logs", &self->logs},
        {"logs_time", &self->logs_time},     {"meta", &self->meta},
    };
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        int rc = tc_lmdb_dbi(txn, dbs[i].name, 0, dbs[i].dbi);
        if (rc != 0) {
            return rc;
        }
    }
    MDB_val k = {6, "format"}, v;
    int mrc = mdb_get(txn, self->meta, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        uint8_t buf[4];
        tc_be32_put(buf, FORMAT_VERSION);
        v.mv_size = 4;
        v.mv_data = buf;
        mrc = mdb_put(txn, self->meta, &k, &v, 0);
        if (mrc != 0) {
            return agg_lmdb_result(mrc);
        }
    } else if (mrc != 0) {
        return agg_lmdb_result(mrc);
    } else if (v.mv_size == 4 && tc_be32_get(v.mv_data) == FORMAT_VERSION_V2) {
        uint64_t n = 0, corrupt = 0;
        mrc = migrate_v3(self, txn, &n, &corrupt);
        if (mrc == 0) {
            uint8_t buf[4];
            tc_be32_put(buf, FORMAT_VERSION);
            MDB_val fv = {sizeof(buf), buf};
            mrc = mdb_put(txn, self->meta, &k, &fv, 0);
        }
        if (mrc != 0) {
            return agg_lmdb_result(mrc);
        }
        tc_log(TC_LOG_INFO, "store.migrate",
               "format 2 to 3: %llu request buckets merged into service-wide series (%llu "
               "corrupt ones left out)",
               (unsigned long long)n, (unsigned long long)corrupt);
    } else if (v.mv_size != 4 || tc_be32_get(v.mv_data) != FORMAT_VERSION) {
        tc_log(TC_LOG_ERROR, "store.format",
               "the data directory holds another format (%u); move it away to start afresh",
               v.mv_size == 4 ? tc_be32_get(v.mv_data) : 0);
        return TC_EINVAL;
    }
    uint64_t bytes = 0, compacted = 0;
    mrc = meta_u64(txn, self->meta, "logs_bytes", &bytes);
    if (mrc == 0) {
        mrc = meta_u64(txn, self->meta, "compacted", &compacted);
    }
    if (mrc != 0) {
        return agg_lmdb_result(mrc);
    }
    atomic_store(&self->logs_bytes, bytes);
    atomic_store(&self->compacted_s, compacted ? agg_unbiased(compacted) : INT64_MIN);
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
    self->raw_retention_us = opts->raw_retention_ms * 1000;
    self->max_retention_us = opts->max_retention_ms * 1000;
    self->logs_retention_us = opts->logs_retention_ms * 1000;
    self->logs_max_bytes = opts->logs_max_bytes;
    self->slo = opts->slo;
    self->group = strdup(opts->group ? opts->group : "tocsin-aggregator");
    self->events_topic = strdup(opts->events_topic ? opts->events_topic : "tocsin.events");
    uint64_t seed = 0;
    tc_random_bytes(&seed, sizeof(seed));
    self->dedupe = agg_dedupe_new(opts->dedupe_window_ms / 1000,
                                  opts->dedupe_max_ids ? opts->dedupe_max_ids : 4000000, seed);
    if (!self->group || !self->events_topic || !self->dedupe ||
        pthread_rwlock_init(&self->remap, NULL) != 0) {
        agg_store_destroy(&self);
        return NULL;
    }
    self->remap_ok = true;
    if (tc_lmdb_open(&self->env, opts->dir, opts->map_size, 16, 0) != 0) {
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
    agg_batch_free(self->batch);
    agg_dedupe_destroy(&self->dedupe);
    free(self->rings);
    free(self->group);
    free(self->events_topic);
    free(self);
    *self_p = NULL;
}

bool agg_store_bucket_closed(int64_t start_s, uint32_t width_s, int64_t now_us, int64_t grace_us)
{
    int64_t end_s = start_s + width_s; /* start_s is bounded by AGG_START_MAX */
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

/* ---- transactions ---------------------------------------------------------------------------- */

int agg_store_read_begin(agg_store_t *self, MDB_txn **txn)
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

void agg_store_read_end(agg_store_t *self, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&self->remap);
}

/* The write path: first without growing the map (readers may be running), and when the map
 * is full, again with every reader kept out so that LMDB may remap the file. */
int agg_store_write(agg_store_t *self, int (*fn)(MDB_txn *, void *), void *ctx)
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

/* ---- partitions ---------------------------------------------------------------------------- */

int agg_part_read(agg_store_t *self, MDB_txn *txn, MDB_dbi dbi, const char *topic,
                  int32_t partition, int64_t *next, int64_t *dedupe_from)
{
    uint8_t k[PART_KEY_MAX];
    size_t klen = 0;
    if (agg_part_key(k, topic, partition, &klen) != 0) {
        return TC_EINVAL;
    }
    MDB_val key = {klen, k}, val;
    int mrc = mdb_get(txn, dbi, &key, &val);
    if (mrc == MDB_NOTFOUND) {
        return TC_ENOTFOUND;
    }
    if (mrc != 0) {
        return mrc;
    }
    if (val.mv_size < 16 || (int64_t)tc_be64_get(val.mv_data) < 0 ||
        (int64_t)tc_be64_get((const uint8_t *)val.mv_data + 8) < 0) {
        tc_log(TC_LOG_ERROR, "store.corrupt", "offset of %s/%d is corrupt; ignored", topic,
               (int)partition);
        return TC_ENOTFOUND;
    }
    *next = (int64_t)tc_be64_get(val.mv_data);
    if (dedupe_from) {
        *dedupe_from = (int64_t)tc_be64_get((const uint8_t *)val.mv_data + 8);
    }
    return 0;
}

static int part_put(agg_store_t *self, MDB_txn *txn, const char *topic, int32_t partition,
                    int64_t next, int64_t dedupe_from)
{
    uint8_t k[PART_KEY_MAX], v[16];
    size_t klen = 0;
    if (agg_part_key(k, topic, partition, &klen) != 0) {
        return TC_EINVAL;
    }
    tc_be64_put(v, (uint64_t)next);
    tc_be64_put(v + 8, (uint64_t)(dedupe_from < 0 ? 0 : dedupe_from));
    MDB_val key = {klen, k}, val = {16, v};
    return mdb_put(txn, self->parts, &key, &val, 0);
}

int agg_store_offset_get(agg_store_t *self, const char *topic, int32_t partition, int64_t *next)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = agg_part_read(self, txn, self->parts, topic, partition, next, NULL);
    agg_store_read_end(self, txn);
    if (rc != 0 && rc != TC_ENOTFOUND && rc != TC_EINVAL) {
        return TC_ELMDB;
    }
    return rc;
}

typedef struct {
    agg_store_t *self;
    const char *topic;
    int32_t partition;
    int64_t next;
    int64_t read_from;
    const char *source;
    bool decide;
} part_ctx_t;

static int offset_set_txn(MDB_txn *txn, void *ctx)
{
    part_ctx_t *c = ctx;
    return agg_lmdb_result(part_put(c->self, txn, c->topic, c->partition, c->next, c->next));
}

int agg_store_offset_set(agg_store_t *self, const char *topic, int32_t partition, int64_t next)
{
    assert(self);
    if (next < 0) {
        return TC_EINVAL;
    }
    part_ctx_t c = {self, topic, partition, next, next, NULL, false};
    return agg_store_write(self, offset_set_txn, &c);
}

part_ring_t *agg_ring_get(agg_store_t *self, int kind, int32_t partition)
{
    for (size_t i = 0; i < self->nrings; i++) {
        if (self->rings[i].partition == partition && self->rings[i].kind == kind) {
            return &self->rings[i];
        }
    }
    part_ring_t *r = realloc(self->rings, (self->nrings + 1) * sizeof(*r));
    if (!r) {
        return NULL;
    }
    self->rings = r;
    part_ring_t *p = &self->rings[self->nrings++];
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->partition = partition;
    p->dedupe_from = -1;
    return p;
}

static int partition_start_txn(MDB_txn *txn, void *ctx)
{
    part_ctx_t *c = ctx;
    agg_store_t *self = c->self;
    int64_t local = -1, local_from = -1, cp = -1, cp_from = -1;
    int rc = agg_part_read(self, txn, self->parts, self->events_topic, c->partition, &local,
                           &local_from);
    if (rc != 0 && rc != TC_ENOTFOUND) {
        return agg_lmdb_result(rc);
    }
    if (rc == TC_ENOTFOUND) {
        local = local_from = -1;
    }
    rc = agg_part_read(self, txn, self->checkpoints, self->events_topic, c->partition, &cp,
                       &cp_from);
    if (rc != 0 && rc != TC_ENOTFOUND) {
        return agg_lmdb_result(rc);
    }
    if (rc == TC_ENOTFOUND) {
        cp = cp_from = -1;
    }
    if (local < 0 && cp < 0) {
        c->next = c->read_from = -1;
        c->source = "none";
        return 0;
    }
    if (local >= cp) {
        c->next = local;
        c->read_from = local_from >= 0 && local_from <= local ? local_from : local;
        c->source = "our stored offset";
    } else {
        c->next = cp;
        c->read_from = cp_from >= 0 && cp_from <= cp ? cp_from : cp;
        c->source = "a checkpoint";
    }
    return agg_lmdb_result(
        part_put(self, txn, self->events_topic, c->partition, c->next, c->read_from));
}

int agg_store_partition_start(agg_store_t *self, int32_t partition, int64_t *start,
                              int64_t *read_from, const char **source)
{
    assert(self);
    part_ctx_t c = {self, self->events_topic, partition, -1, -1, "none", true};
    int rc = agg_store_write(self, partition_start_txn, &c);
    if (rc != 0) {
        return rc;
    }
    part_ring_t *ring = agg_ring_get(self, RING_EVENTS, partition);
    if (ring) {
        ring->n = 0;
        ring->dedupe_from = c.read_from;
    }
    *start = c.next;
    *read_from = c.read_from;
    *source = c.source;
    return 0;
}

int agg_store_view_start(agg_store_t *self, const char *topic, int32_t partition, bool logs,
                         int64_t *start, int64_t *read_from)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    int64_t next = 0, from = 0;
    rc = agg_part_read(self, txn, self->parts, topic, partition, &next, &from);
    agg_store_read_end(self, txn);
    if (rc == TC_ENOTFOUND) {
        *start = *read_from = -1;
        return 0;
    }
    if (rc != 0) {
        return TC_ELMDB;
    }
    *start = next;
    *read_from = logs && from <= next ? from : next;
    if (logs) {
        part_ring_t *ring = agg_ring_get(self, RING_LOGS, partition);
        if (ring) {
            ring->n = 0;
            ring->dedupe_from = *read_from;
        }
    }
    return 0;
}

static int revoked_txn(MDB_txn *txn, void *ctx)
{
    part_ctx_t *c = ctx;
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, c->self->owed, &cur);
    if (mrc != 0) {
        return agg_lmdb_result(mrc);
    }
    MDB_val k, v;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        const uint8_t *kd = k.mv_data;
        if (k.mv_size >= 5 && tc_be32_get(kd + k.mv_size - 4) == (uint32_t)c->partition) {
            mrc = mdb_cursor_del(cur, 0);
            if (mrc != 0) {
                break;
            }
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return agg_lmdb_result(mrc == MDB_NOTFOUND ? 0 : mrc);
}

int agg_store_partition_revoked(agg_store_t *self, int32_t partition)
{
    assert(self);
    part_ctx_t c = {self, self->events_topic, partition, 0, 0, NULL, false};
    return agg_store_write(self, revoked_txn, &c);
}

/* ---- publishing ------------------------------------------------------------------------------ */

/* Builds the rollup of an owed bucket; *value NULL when the bucket or its series is gone. */
static int owed_bucket(agg_store_t *self, MDB_txn *txn, const uint8_t *bk, bool open,
                       const char *producer, agg_bucket_t *b, uint8_t **key, size_t *klen,
                       uint8_t **value, size_t *vlen, int64_t *source_offset)
{
    *value = NULL;
    *key = NULL;
    MDB_val k = {BUCKET_KEY_LEN, (void *)bk}, v;
    if (mdb_get(txn, self->buckets, &k, &v) != 0 ||
        agg_bucket_store_decode(v.mv_data, v.mv_size, b) != 0) {
        return 0;
    }
    uint8_t sk[SERIES_KEY_LEN];
    memcpy(sk, bk, 16);
    memcpy(sk + 16, bk + 24, 8);
    MDB_val sv, skv = {SERIES_KEY_LEN, sk};
    agg_series_rec_t *rec = malloc(sizeof(*rec));
    if (!rec) {
        return TC_ENOMEM;
    }
    int rc = 0;
    if (mdb_get(txn, self->series, &skv, &sv) == 0 &&
        agg_series_decode(sv.mv_data, sv.mv_size, rec) == 0) {
        agg_series_id_t id = {rec->service, rec->environment, rec->name};
        size_t cap = strlen(rec->service) + strlen(rec->environment) + strlen(rec->name) + 3;
        *key = malloc(cap);
        if (!*key) {
            rc = TC_ENOMEM;
        } else {
            *klen = agg_rollup_key(&id, (char *)*key, cap);
            rc = agg_bucket_rollup_encode(&id, agg_unbiased(tc_be64_get(bk + 16)), b,
                                          tc_be32_get(bk + 32), open, producer, value, vlen);
            if (rc != 0) {
                free(*key);
                *key = NULL;
            }
        }
    }
    free(rec);
    *source_offset = b->source_offset;
    return rc;
}

static int owed_issue(agg_store_t *self, MDB_txn *txn, const uint8_t *ik, const char *producer,
                      agg_issue_t *is, uint8_t **key, size_t *klen, uint8_t **value, size_t *vlen,
                      int64_t *source_offset)
{
    *value = NULL;
    *key = NULL;
    MDB_val k = {ISSUE_KEY_LEN, (void *)ik}, v;
    if (mdb_get(txn, self->issues, &k, &v) != 0 ||
        agg_issue_decode(v.mv_data, v.mv_size, is) != 0) {
        return 0;
    }
    size_t cap = strlen(is->service) + strlen(is->id) + 16;
    *key = malloc(cap);
    if (!*key) {
        return TC_ENOMEM;
    }
    *klen = agg_issue_key(is->service, is->id, (char *)*key, cap);
    int rc = agg_issue_rollup_encode(is, producer, value, vlen);
    if (rc != 0) {
        free(*key);
        *key = NULL;
    }
    *source_offset = is->source_offset;
    return rc;
}

int agg_store_owed(agg_store_t *self, int64_t now_us, const char *producer, agg_inflight_fn skip,
                   agg_owed_fn fn, void *ctx, const int32_t *owned, size_t nowned,
                   agg_checkpoint_t *cps)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < nowned; i++) {
        cps[i].partition = owned[i];
        cps[i].offset = -1;
        cps[i].dedupe_from = 0;
        int64_t next = 0, from = 0;
        if (agg_part_read(self, txn, self->parts, self->events_topic, owned[i], &next, &from) ==
            0) {
            cps[i].offset = next;
            cps[i].dedupe_from = from <= next ? from : next;
        }
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->owed, &cur) != 0) {
        agg_store_read_end(self, txn);
        return TC_ELMDB;
    }
    agg_bucket_t b;
    agg_issue_t is;
    agg_bucket_init(&b);
    agg_issue_init(&is);
    bool stopped = false;
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kd = k.mv_data;
        bool is_bucket = k.mv_size == 1 + BUCKET_KEY_LEN && kd[0] == OWED_BUCKET;
        bool is_issue = k.mv_size == 1 + ISSUE_KEY_LEN && kd[0] == OWED_ISSUE;
        if ((!is_bucket && !is_issue) || v.mv_size != OWED_VALUE_LEN) {
            continue; /* not an entry we wrote */
        }
        agg_owed_ref_t ref;
        memset(&ref, 0, sizeof(ref));
        memcpy(ref.key, kd, k.mv_size);
        ref.klen = (uint8_t)k.mv_size;
        ref.partition = tc_be32_get(kd + k.mv_size - 4);
        int64_t t = (int64_t)tc_be64_get(v.mv_data);
        int64_t first_dirty = (int64_t)tc_be64_get((const uint8_t *)v.mv_data + 8);
        for (size_t i = 0; i < nowned; i++) {
            /* first_dirty is the offset of the first undelivered change, plus one. */
            if ((uint32_t)owned[i] == ref.partition && first_dirty > 0 &&
                first_dirty - 1 < cps[i].offset) {
                cps[i].offset = first_dirty - 1;
            }
        }
        bool open = true;
        if (is_bucket) {
            int64_t start = agg_unbiased(tc_be64_get(kd + 1 + 16));
            open = !agg_store_bucket_closed(start, AGG_BUCKET_WIDTH_S, now_us, self->grace_us);
        }
        if (stopped || (first_dirty == 0 && open)) {
            continue; /* published already; waits for its bucket to close */
        }
        ref.source_offset = t;
        ref.closed = !open;
        if (skip && skip(ctx, &ref)) {
            continue;
        }
        agg_publish_item_t item;
        memset(&item, 0, sizeof(item));
        uint8_t *key = NULL, *value = NULL;
        size_t klen = 0, vlen = 0;
        int64_t so = t;
        rc = is_bucket
                 ? owed_bucket(self, txn, kd + 1, open, producer, &b, &key, &klen, &value, &vlen,
                               &so)
                 : owed_issue(self, txn, kd + 1, producer, &is, &key, &klen, &value, &vlen, &so);
        if (rc != 0) {
            break;
        }
        /* The state may be newer than the mark (the view took a later owner's state). */
        ref.source_offset = so > t ? so : t;
        item.ref = ref;
        item.key = key;
        item.klen = klen;
        item.value = value;
        item.vlen = vlen;
        stopped = fn(ctx, &item) != 0;
        free(key);
        free(value);
    }
    agg_bucket_fini(&b);
    agg_issue_fini(&is);
    mdb_cursor_close(cur);
    agg_store_read_end(self, txn);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = TC_ELMDB;
    }
    return rc;
}

uint64_t agg_store_owed_count(agg_store_t *self)
{
    MDB_txn *txn = NULL;
    if (agg_store_read_begin(self, &txn) != 0) {
        return 0;
    }
    MDB_stat st;
    uint64_t n = mdb_stat(txn, self->owed, &st) == 0 ? st.ms_entries : 0;
    agg_store_read_end(self, txn);
    return n;
}

/* ---- changes --------------------------------------------------------------------------------- */

int agg_change_put(agg_store_t *self, MDB_txn *txn, const uint8_t *key, size_t klen,
                   const uint8_t *value, size_t vlen)
{
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, self->changes, &cur);
    if (mrc != 0) {
        return mrc;
    }
    MDB_val k, v;
    uint64_t seq = 1;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (mrc == 0 && k.mv_size == 8) {
        seq = tc_be64_get(k.mv_data) + 1;
    }
    mdb_cursor_close(cur);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    uint8_t kb[8];
    tc_be64_put(kb, seq);
    MDB_val nk = {8, kb}, nv = {4 + klen + vlen, NULL};
    mrc = mdb_put(txn, self->changes, &nk, &nv, MDB_RESERVE);
    if (mrc != 0) {
        return mrc;
    }
    uint8_t *p = nv.mv_data;
    tc_be32_put(p, (uint32_t)klen);
    memcpy(p + 4, key, klen);
    memcpy(p + 4 + klen, value, vlen);
    return 0;
}

int agg_store_changes(agg_store_t *self, uint64_t after, agg_change_fn fn, void *ctx)
{
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->changes, &cur) != 0) {
        agg_store_read_end(self, txn);
        return TC_ELMDB;
    }
    uint8_t kb[8];
    tc_be64_put(kb, after + 1);
    MDB_val k = {8, kb}, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8 || v.mv_size < 4) {
            continue;
        }
        const uint8_t *p = v.mv_data;
        uint32_t klen = tc_be32_get(p);
        if (klen > v.mv_size - 4) {
            continue;
        }
        if (fn(ctx, tc_be64_get(k.mv_data), p + 4, klen, p + 4 + klen, v.mv_size - 4 - klen) != 0) {
            break;
        }
    }
    mdb_cursor_close(cur);
    agg_store_read_end(self, txn);
    return 0;
}

/* ---- statuses -------------------------------------------------------------------------------- */

typedef struct {
    agg_store_t *self;
    const char *service;
    const char *id;
    agg_issue_status_t st;
    bool found;
} status_ctx_t;

static int status_txn(MDB_txn *txn, void *ctx)
{
    status_ctx_t *c = ctx;
    agg_store_t *self = c->self;
    uint64_t hsvc = hs(c->service), hid = hs(c->id);
    uint8_t prefix[16];
    tc_be64_put(prefix, hsvc);
    tc_be64_put(prefix + 8, hid);
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, self->issues, &cur);
    if (mrc != 0) {
        return agg_lmdb_result(mrc);
    }
    MDB_val k = {16, prefix}, v;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    c->found = mrc == 0 && k.mv_size == ISSUE_KEY_LEN && memcmp(k.mv_data, prefix, 16) == 0;
    mdb_cursor_close(cur);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return agg_lmdb_result(mrc);
    }
    if (!c->found) {
        return TC_ENOTFOUND;
    }
    uint8_t val[STATUS_VALUE_MAX];
    MDB_val sk = {STATUS_KEY_LEN, prefix},
            sv = {agg_status_encode(val, &c->st, c->service, c->id), val};
    mrc = mdb_put(txn, self->status, &sk, &sv, 0);
    if (mrc != 0) {
        return agg_lmdb_result(mrc);
    }
    uint8_t *value = NULL;
    size_t vlen = 0;
    int rc = agg_issue_status_rollup_encode(c->service, c->id, &c->st, NULL, &value, &vlen);
    if (rc != 0) {
        return rc;
    }
    char key[AGG_MAX_SERVICE + AGG_ISSUE_ID_MAX + 16];
    size_t klen = agg_issue_key(c->service, c->id, key, sizeof(key));
    mrc = agg_change_put(self, txn, (const uint8_t *)key, klen, value, vlen);
    free(value);
    return agg_lmdb_result(mrc);
}

int agg_store_status_set(agg_store_t *self, const char *service, const char *id,
                         agg_status_t status, const char *by, int64_t now_us)
{
    assert(self);
    status_ctx_t c;
    memset(&c, 0, sizeof(c));
    c.self = self;
    c.service = service;
    c.id = id;
    c.st.status = status;
    c.st.updated_us = now_us;
    tc_strlcpy(c.st.updated_by, by ? by : "api", sizeof(c.st.updated_by));
    return agg_store_write(self, status_txn, &c);
}

/* ---- reads ----------------------------------------------------------------------------------- */

/* Whether the series of a bucket key matches the query's strings; cached per environment. */
typedef struct {
    uint64_t henv;
    bool ok;
} env_check_t;

static bool series_matches(agg_store_t *self, MDB_txn *txn, const uint8_t *bk, uint64_t hseries,
                           const agg_query_params_t *p, bool check_name, env_check_t *cache,
                           size_t *ncache, agg_series_rec_t *rec)
{
    uint64_t henv = tc_be64_get(bk + 24);
    for (size_t i = 0; i < *ncache; i++) {
        if (cache[i].henv == henv) {
            return cache[i].ok;
        }
    }
    uint8_t sk[SERIES_KEY_LEN];
    agg_series_key(sk, tc_be64_get(bk), hseries, henv);
    MDB_val k = {SERIES_KEY_LEN, sk}, v;
    bool ok = mdb_get(txn, self->series, &k, &v) == 0 &&
              agg_series_decode(v.mv_data, v.mv_size, rec) == 0 &&
              strcmp(rec->service, p->service) == 0 &&
              (!check_name || strcmp(rec->name, p->name) == 0) &&
              (!p->environment || strcmp(rec->environment, p->environment) == 0) &&
              agg_query_wants(p, rec->kind);
    if (*ncache < 64) {
        cache[*ncache].henv = henv;
        cache[*ncache].ok = ok;
        (*ncache)++;
    }
    return ok;
}

/* The minute whose total (AGG_PART_ALL_MINUTE) a scan used, per environment. */
typedef struct {
    uint64_t henv;
    int64_t minute;
} minute_use_t;

/*
 * Whether a scan for "*" merges the entry of partition `part` starting at `start`: 60 s
 * buckets (AGG_PART_MERGED), the minute totals whose minute lies whole in the window and in
 * one step, and the 10 s totals (AGG_PART_ALL) of the other minutes. A minute's total sorts
 * before its 10 s totals (same start, smaller partition), so it is known when they come.
 */
static bool use_total(const agg_query_params_t *p, int64_t start, uint32_t part, uint64_t henv,
                      minute_use_t *used, size_t *nused)
{
    if (part == AGG_PART_MERGED) {
        return true;
    }
    if (part != AGG_PART_ALL && part != AGG_PART_ALL_MINUTE) {
        return false;
    }
    int64_t minute = start - start % AGG_ROLLUP_WIDTH_S;
    size_t i = 0;
    while (i < *nused && used[i].henv != henv) {
        i++;
    }
    if (part == AGG_PART_ALL) {
        return i == *nused || used[i].minute != minute;
    }
    int64_t last = start + AGG_ROLLUP_WIDTH_S - AGG_BUCKET_WIDTH_S;
    if (start < p->from_s || start + AGG_ROLLUP_WIDTH_S > p->to_s ||
        (p->npoints > 1 && (start - p->from_s) / p->step_s != (last - p->from_s) / p->step_s)) {
        return false;
    }
    if (i == *nused) {
        if (*nused == 64) {
            return false; /* more environments than tracked: their 10 s totals serve */
        }
        (*nused)++;
        used[i].henv = henv;
    }
    used[i].minute = minute;
    return true;
}

/* Merges the buckets of one name hash in [from, to) into the accumulators, checking their
 * strings against the series row of name hash `hseries`; with `totals`, only the
 * cross-partition ones (see use_total). */
static int scan_series(agg_store_t *self, MDB_txn *txn, const agg_query_params_t *p, uint64_t hname,
                       uint64_t hseries, bool check_name, bool totals, agg_query_acc_t *accs,
                       uint64_t *corrupt, agg_series_rec_t *rec)
{
    uint8_t lo[BUCKET_KEY_LEN];
    uint64_t henv = p->environment ? hs(p->environment) : 0;
    agg_bucket_key(lo, hs(p->service), hname, p->from_s, 0, 0);
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(txn, self->buckets, &cur);
    if (mrc != 0) {
        return TC_ELMDB;
    }
    env_check_t cache[64];
    size_t ncache = 0;
    minute_use_t minutes[64];
    size_t nminutes = 0;
    int rc = 0;
    MDB_val k = {sizeof(lo), lo}, v;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *kd = k.mv_data;
        if (k.mv_size != BUCKET_KEY_LEN || memcmp(kd, lo, 16) != 0) {
            break;
        }
        int64_t start = agg_unbiased(tc_be64_get(kd + 16));
        if (start >= p->to_s) {
            break;
        }
        uint32_t part = tc_be32_get(kd + 32);
        if (totals && !use_total(p, start, part, tc_be64_get(kd + 24), minutes, &nminutes)) {
            continue;
        }
        if ((!totals && part >= AGG_PART_ALL_MINUTE && part != AGG_PART_MERGED) ||
            (p->environment && tc_be64_get(kd + 24) != henv) ||
            !series_matches(self, txn, kd, hseries, p, check_name, cache, &ncache, rec)) {
            continue;
        }
        size_t i = p->npoints > 1 ? (size_t)((start - p->from_s) / p->step_s) : 0;
        if (i >= p->npoints) {
            continue;
        }
        int drc = agg_query_add_stored(&accs[i], v.mv_data, v.mv_size);
        if (drc == TC_ENOMEM) {
            rc = drc;
            break;
        }
        if (drc != 0 && corrupt) {
            (*corrupt)++;
        }
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = TC_ELMDB;
    }
    return rc;
}

static int query_txn(agg_store_t *self, MDB_txn *txn, const agg_query_params_t *p,
                     agg_query_acc_t *accs, uint64_t *corrupt)
{
    agg_series_rec_t *rec = malloc(sizeof(*rec));
    if (!rec) {
        return TC_ENOMEM;
    }
    /* "*": every request event of the service, read from its service-wide series (all
     * routes merged as events are applied; stores of format 2 are migrated when opened). */
    agg_query_params_t one = *p;
    bool all = strcmp(p->name, AGG_QUERY_ALL) == 0;
    if (all) {
        one.name = AGG_SERVICE_NAME;
    }
    int rc = scan_series(self, txn, &one, all ? hs(TOTAL_NAME) : hs(one.name), hs(one.name), true,
                         all, accs, corrupt, rec);
    free(rec);
    return rc;
}

int agg_store_query(agg_store_t *self, const agg_query_params_t *p, agg_query_acc_t *acc,
                    uint64_t *corrupt)
{
    assert(self);
    agg_query_params_t one = *p;
    one.npoints = 1;
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = query_txn(self, txn, &one, acc, corrupt);
    agg_store_read_end(self, txn);
    return rc;
}

int agg_store_range(agg_store_t *self, const agg_query_params_t *p, agg_query_acc_t *accs,
                    uint64_t *corrupt)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = query_txn(self, txn, p, accs, corrupt);
    agg_store_read_end(self, txn);
    return rc;
}

int agg_store_series(agg_store_t *self, const char *service, agg_series_fn fn, void *ctx)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->series, &cur) != 0) {
        agg_store_read_end(self, txn);
        return TC_ELMDB;
    }
    uint8_t prefix[8];
    MDB_val k, v;
    int mrc;
    if (service) {
        tc_be64_put(prefix, hs(service));
        k.mv_size = sizeof(prefix);
        k.mv_data = prefix;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    agg_series_rec_t *rec = malloc(sizeof(*rec));
    if (!rec) {
        mrc = MDB_NOTFOUND;
        rc = TC_ENOMEM;
    }
    while (mrc == 0) {
        if (service && (k.mv_size != SERIES_KEY_LEN || memcmp(k.mv_data, prefix, 8) != 0)) {
            break;
        }
        /* The service-wide series is not listed: name=* reads it. */
        if (agg_series_decode(v.mv_data, v.mv_size, rec) == 0 &&
            (!service || strcmp(rec->service, service) == 0) &&
            strcmp(rec->name, AGG_SERVICE_NAME) != 0) {
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
    agg_store_read_end(self, txn);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = TC_ELMDB;
    }
    return rc;
}

static void status_read(agg_store_t *self, MDB_txn *txn, const uint8_t prefix[16],
                        const char *service, const char *id, agg_issue_status_t *st)
{
    memset(st, 0, sizeof(*st));
    MDB_val k = {STATUS_KEY_LEN, (void *)prefix}, v;
    agg_status_rec_t rec;
    if (mdb_get(txn, self->status, &k, &v) == 0 &&
        agg_status_decode(v.mv_data, v.mv_size, &rec) == 0 && strcmp(rec.service, service) == 0 &&
        strcmp(rec.id, id) == 0) {
        *st = rec.st;
    }
}

/* Merges the states of every partition of the issue at `prefix` (h(service) h(id)), starting
 * at the cursor's entry, and calls `fn` unless `service` or `id` (when given) differ. */
static int issue_group(agg_store_t *self, MDB_txn *txn, MDB_cursor *cur, MDB_val *k, MDB_val *v,
                       int *mrc, const char *service, const char *id, agg_issue_fn fn, void *ctx,
                       bool *stop)
{
    uint8_t prefix[16];
    memcpy(prefix, k->mv_data, 16);
    agg_issue_t merged, one;
    agg_issue_init(&merged);
    agg_issue_init(&one);
    int rc = 0;
    while (*mrc == 0 && k->mv_size == ISSUE_KEY_LEN && memcmp(k->mv_data, prefix, 16) == 0) {
        int drc = agg_issue_decode(v->mv_data, v->mv_size, &one);
        if (drc == TC_ENOMEM) {
            rc = drc;
            break;
        }
        if (drc == 0) {
            rc = agg_issue_merge(&merged, &one);
            if (rc != 0) {
                break;
            }
        }
        *mrc = mdb_cursor_get(cur, k, v, MDB_NEXT);
    }
    if (rc == 0 && merged.id && (!service || strcmp(merged.service, service) == 0) &&
        (!id || strcmp(merged.id, id) == 0)) {
        agg_issue_status_t st;
        status_read(self, txn, prefix, merged.service, merged.id, &st);
        *stop = fn(ctx, &merged, &st) != 0;
    }
    agg_issue_fini(&merged);
    agg_issue_fini(&one);
    return rc;
}

int agg_store_issues(agg_store_t *self, const char *service, agg_issue_fn fn, void *ctx)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->issues, &cur) != 0) {
        agg_store_read_end(self, txn);
        return TC_ELMDB;
    }
    uint8_t prefix[8];
    MDB_val k, v;
    int mrc;
    if (service) {
        tc_be64_put(prefix, hs(service));
        k.mv_size = 8;
        k.mv_data = prefix;
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    bool stop = false;
    while (rc == 0 && !stop && mrc == 0 && k.mv_size == ISSUE_KEY_LEN) {
        if (service && memcmp(k.mv_data, prefix, 8) != 0) {
            break;
        }
        rc = issue_group(self, txn, cur, &k, &v, &mrc, service, NULL, fn, ctx, &stop);
    }
    mdb_cursor_close(cur);
    agg_store_read_end(self, txn);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND && !stop) {
        rc = TC_ELMDB;
    }
    return rc;
}

typedef struct {
    agg_issue_fn fn;
    void *ctx;
    size_t calls;
} count_ctx_t;

static int counting_fn(void *ctx, const agg_issue_t *is, const agg_issue_status_t *st)
{
    count_ctx_t *c = ctx;
    c->calls++;
    return c->fn(c->ctx, is, st);
}

int agg_store_issue_get(agg_store_t *self, const char *id, const char *service, agg_issue_fn fn,
                        void *ctx)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *icur = NULL, *cur = NULL;
    if (mdb_cursor_open(txn, self->issue_index, &icur) != 0 ||
        mdb_cursor_open(txn, self->issues, &cur) != 0) {
        if (icur) {
            mdb_cursor_close(icur);
        }
        agg_store_read_end(self, txn);
        return TC_ELMDB;
    }
    count_ctx_t cc = {fn, ctx, 0};
    uint64_t hid = hs(id);
    uint8_t ip[8];
    tc_be64_put(ip, hid);
    MDB_val ik = {8, ip}, iv;
    int imrc = mdb_cursor_get(icur, &ik, &iv, MDB_SET_RANGE);
    bool stop = false;
    for (; rc == 0 && !stop && imrc == 0; imrc = mdb_cursor_get(icur, &ik, &iv, MDB_NEXT)) {
        if (ik.mv_size != INDEX_KEY_LEN || memcmp(ik.mv_data, ip, 8) != 0) {
            break;
        }
        uint64_t hsvc = tc_be64_get((const uint8_t *)ik.mv_data + 8);
        if (service && hsvc != hs(service)) {
            continue;
        }
        uint8_t prefix[16];
        tc_be64_put(prefix, hsvc);
        tc_be64_put(prefix + 8, hid);
        MDB_val k = {16, prefix}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (mrc == 0 && k.mv_size == ISSUE_KEY_LEN && memcmp(k.mv_data, prefix, 16) == 0) {
            rc = issue_group(self, txn, cur, &k, &v, &mrc, service, id, counting_fn, &cc, &stop);
        }
    }
    mdb_cursor_close(cur);
    mdb_cursor_close(icur);
    agg_store_read_end(self, txn);
    if (rc == 0 && cc.calls == 0) {
        rc = TC_ENOTFOUND;
    }
    return rc;
}

int agg_store_logs(agg_store_t *self, const char *service, int64_t since_us, int64_t until_us,
                   agg_log_fn fn, void *ctx, uint64_t *corrupt)
{
    assert(self);
    MDB_txn *txn = NULL;
    int rc = agg_store_read_begin(self, &txn);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *cur = NULL;
    if (mdb_cursor_open(txn, self->logs, &cur) != 0) {
        agg_store_read_end(self, txn);
        return TC_ELMDB;
    }
    uint64_t hsvc = hs(service);
    uint8_t hi[LOG_KEY_LEN];
    tc_be64_put(hi, hsvc);
    tc_be64_put(hi + 8, agg_biased(until_us));
    memset(hi + 16, 0, LOG_KEY_LEN - 16);
    MDB_val k = {LOG_KEY_LEN, hi}, v;
    /* The first key at or after `until` (excluded), then backwards. */
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (mrc == 0) {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    } else if (mrc == MDB_NOTFOUND) {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    agg_log_t *l = malloc(sizeof(*l));
    if (!l) {
        mrc = MDB_NOTFOUND;
        rc = TC_ENOMEM;
    }
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        const uint8_t *kd = k.mv_data;
        if ((k.mv_size != LOG_KEY_LEN && k.mv_size != LOG_KEY_LEN_V1) ||
            tc_be64_get(kd) != hsvc) {
            break;
        }
        int64_t t = agg_unbiased(tc_be64_get(kd + 8));
        if (t < since_us) {
            break;
        }
        if (t >= until_us) {
            continue;
        }
        if (agg_log_decode(v.mv_data, v.mv_size, l) != 0) {
            if (corrupt) {
                (*corrupt)++;
            }
            continue;
        }
        if (fn(ctx, t, l) != 0) {
            break;
        }
    }
    free(l);
    mdb_cursor_close(cur);
    agg_store_read_end(self, txn);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = TC_ELMDB;
    }
    return rc;
}

int agg_store_check(agg_store_t *self, char *detail, size_t len)
{
    MDB_txn *txn = NULL;
    if (agg_store_read_begin(self, &txn) != 0) {
        snprintf(detail, len, "cannot begin a read transaction");
        return TC_ELMDB;
    }
    MDB_stat sb, ss, si, sl;
    int mrc = mdb_stat(txn, self->buckets, &sb);
    if (mrc == 0) {
        mrc = mdb_stat(txn, self->series, &ss);
    }
    if (mrc == 0) {
        mrc = mdb_stat(txn, self->issues, &si);
    }
    if (mrc == 0) {
        mrc = mdb_stat(txn, self->logs, &sl);
    }
    agg_store_read_end(self, txn);
    if (mrc != 0) {
        snprintf(detail, len, "%s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    snprintf(detail, len, "%zu buckets, %zu series, %zu issue states, %zu log records",
             sb.ms_entries, ss.ms_entries, si.ms_entries, sl.ms_entries);
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

size_t agg_store_dedupe_size(agg_store_t *self)
{
    return agg_dedupe_size(self->dedupe);
}

uint64_t agg_store_dedupe_evicted(agg_store_t *self)
{
    return agg_dedupe_evicted(self->dedupe);
}

uint64_t agg_store_logs_bytes(agg_store_t *self)
{
    return atomic_load(&self->logs_bytes);
}

int agg_store_reader_check(agg_store_t *self)
{
    return tc_lmdb_reader_check(self->env);
}
