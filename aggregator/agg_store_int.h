/*
 * agg_store_int.h — what the store's source files share (agg_store.c: open, partitions,
 * publishing, reads; agg_store_apply.c: commits; agg_store_maint.c: retention). Internal to
 * the aggregator's store.
 */
#ifndef AGG_STORE_INT_H
#define AGG_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "agg_dedupe.h"
#include "agg_store.h"

#define BUCKET_KEY_LEN 36
#define SERIES_KEY_LEN 24
#define ISSUE_KEY_LEN 20
#define INDEX_KEY_LEN 16
#define STATUS_KEY_LEN 16
/* Log keys: h(service) time partition offset index (the event's place in its record); keys
 * written before packing lack the index (28 and 20 bytes) and are read alike. */
#define LOG_KEY_LEN 32
#define LOG_TIME_KEY_LEN 24
#define LOG_KEY_LEN_V1 28
#define LOG_TIME_KEY_LEN_V1 20
#define PART_KEY_MAX (AGG_TOPIC_MAX + 1 + 4)
#define OWED_VALUE_LEN 16
#define OWED_BUCKET 'b'
#define OWED_ISSUE 'i'
#define SIGN_BIT 0x8000000000000000ull
/* 3: the service-wide request series (AGG_SERVICE_NAME); a store of format 2 is migrated
 * when opened. */
#define FORMAT_VERSION 3
#define FORMAT_VERSION_V2 2
/* The key name of a service's request totals (AGG_PART_ALL, _MINUTE, and AGG_PART_MERGED
 * once rolled up): a key prefix of their own, so that name=* walks only them. Their series
 * row is that of AGG_SERVICE_NAME. */
#define TOTAL_NAME "$requests:total"
#define SERIES_VALUE_VERSION 1
#define SERIES_HEADER_LEN 18
#define SERIES_VALUE_MAX                                                                           \
    (SERIES_HEADER_LEN + 6 + AGG_MAX_SERVICE + AGG_MAX_ENVIRONMENT + AGG_MAX_NAME)
#define STATUS_VALUE_MAX (10 + 6 + 64 + AGG_MAX_SERVICE + AGG_ISSUE_ID_MAX)
#define RING_MAX 256
#define RING_NONE 0
#define RING_EVENTS 1
#define RING_LOGS 2

#include "agg_rollup.h"

/* Where a partition's received times stood, to know where the dedupe window begins. */
typedef struct {
    int kind; /* RING_EVENTS or RING_LOGS */
    int32_t partition;
    int64_t dedupe_from; /* as stored */
    size_t n;
    int64_t offset[RING_MAX];   /* a record's offset ... */
    int64_t max_recv[RING_MAX]; /* ... and the largest receive time of the records before it */
    int64_t recv_seen;          /* largest receive time seen in this partition */
} part_ring_t;

struct agg_store {
    MDB_env *env;
    MDB_dbi buckets, series, issues, issue_index, status, parts, checkpoints, owed, changes, logs,
        logs_time, meta;
    size_t max_map;
    int64_t grace_us;
    int64_t dedupe_window_us;
    int64_t raw_retention_us;
    int64_t max_retention_us;
    int64_t logs_retention_us;
    uint64_t logs_max_bytes;
    agg_slo_t slo;
    char *group;
    char *events_topic;
    agg_dedupe_t *dedupe;
    part_ring_t *rings;
    size_t nrings;
    _Atomic uint64_t logs_bytes;
    _Atomic int64_t compacted_s; /* 10 s buckets before this start are merged */
    /* maintenance position (commit thread) */
    uint8_t maint_key[BUCKET_KEY_LEN];
    bool maint_started;
    /* Held shared by every read and exclusively while a write may grow (remap) the map. */
    pthread_rwlock_t remap;
    bool remap_ok;
    /* per-batch scratch of agg_store_commit (commit thread) */
    struct batch *batch;
};

uint64_t agg_h64(const char *s, size_t n);
uint64_t agg_biased(int64_t v);
int64_t agg_unbiased(uint64_t v);

void agg_bucket_key(uint8_t k[BUCKET_KEY_LEN], uint64_t hsvc, uint64_t hname, int64_t start_s,
                    uint64_t henv, uint32_t partition);
void agg_series_key(uint8_t k[SERIES_KEY_LEN], uint64_t hsvc, uint64_t hname, uint64_t henv);
void agg_issue_key_bytes(uint8_t k[ISSUE_KEY_LEN], uint64_t hsvc, uint64_t hid, uint32_t partition);
int agg_part_key(uint8_t *k, const char *topic, int32_t partition, size_t *klen);

/* A series row. */
typedef struct {
    agg_kind_t kind;
    int64_t first_s;
    int64_t last_s;
    char service[AGG_MAX_SERVICE + 1];
    char environment[AGG_MAX_ENVIRONMENT + 1];
    char name[AGG_MAX_NAME + 1];
} agg_series_rec_t;

size_t agg_series_encode(uint8_t *buf, agg_kind_t kind, int64_t first_s, int64_t last_s,
                         agg_str_t service, agg_str_t environment, agg_str_t name);
int agg_series_decode(const uint8_t *data, size_t len, agg_series_rec_t *r);

/* A status row. */
typedef struct {
    agg_issue_status_t st;
    char service[AGG_MAX_SERVICE + 1];
    char id[AGG_ISSUE_ID_MAX + 1];
} agg_status_rec_t;

size_t agg_status_encode(uint8_t *buf, const agg_issue_status_t *st, const char *service,
                         const char *id);
int agg_status_decode(const uint8_t *data, size_t len, agg_status_rec_t *r);

/* Maps what a transaction body ran into to what tc_lmdb_write expects. */
int agg_lmdb_result(int rc);

/* The write path: grows the map with readers kept out when it must. */
int agg_store_write(agg_store_t *self, int (*fn)(MDB_txn *, void *), void *ctx);

int agg_store_read_begin(agg_store_t *self, MDB_txn **txn);
void agg_store_read_end(agg_store_t *self, MDB_txn *txn);

/* Reads a partition's stored next offset and dedupe_from in `txn`. Returns 0, TC_ENOTFOUND
 * or an LMDB code. */
int agg_part_read(agg_store_t *self, MDB_txn *txn, MDB_dbi dbi, const char *topic,
                  int32_t partition, int64_t *next, int64_t *dedupe_from);

/* Appends a change (Rollup bytes and its key) to `changes` in `txn`. */
int agg_change_put(agg_store_t *self, MDB_txn *txn, const uint8_t *key, size_t klen,
                   const uint8_t *value, size_t vlen);

/* The ring of a partition of the events (RING_EVENTS) or logs (RING_LOGS) topic, created
 * on first use; NULL when out of memory. */
part_ring_t *agg_ring_get(agg_store_t *self, int kind, int32_t partition);

/* Frees the batch scratch (agg_store_apply.c). */
void agg_batch_free(struct batch *b);

#endif
