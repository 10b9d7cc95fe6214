/*
 * agg_store.h — the aggregator's LMDB state: buckets, series, consumed offsets, the
 * dedupe set of event ids and the rollups still owed to tocsin.rollups.
 *
 * Exactly once: agg_store_apply adds a batch of consumed Kafka records to their buckets
 * and stores the partitions' next offsets in the same write transaction, so after a crash
 * the consumer resumes exactly after what was applied. Records below a partition's stored
 * offset are skipped (already counted), and an event_id seen within `dedupe_window`
 * (measured in the collector's receive time) is counted once.
 *
 * Databases (all keys big-endian and fixed width, so range scans follow time):
 *   buckets     h(service) h(name) start h(environment)  -> revision(8) tocsin.v1.Bucket
 *   series      h(service) h(name) h(environment)        -> kind, first/last start, strings
 *   offsets     topic '\0' partition(4)                  -> next offset(8)
 *   dedupe      event_id(16)                             -> dedupe time(8)
 *   dedupe_time time(8) event_id(16)                     -> (empty)
 *   unpublished start h(service) h(name) h(environment)  -> revision(8) owed to Kafka
 *   meta        "format"                                 -> 1
 * h() is XXH3-64 of the string; `start` is seconds with the sign bit flipped so negative
 * times sort first. Series strings are compared on every use, so a hash collision is
 * detected (and the colliding events refused) rather than mixed into another series.
 *
 * Threads: one thread writes (agg_store_apply, agg_store_offset_set); any thread may read
 * (agg_store_query, agg_store_series, agg_store_owed, agg_store_offset_get, the checks) at
 * the same time. Growing the map (on MDB_MAP_FULL, through tc_lmdb_write) waits until no
 * read is in progress, because LMDB remaps the file then.
 */
#ifndef AGG_STORE_H
#define AGG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_bucket.h"
#include "agg_query.h"

typedef struct agg_store agg_store_t;

#define AGG_STORE_KEY_LEN 32

typedef struct {
    const char *dir;          /* created when missing */
    size_t map_size;          /* initial map, e.g. 1 GiB */
    size_t max_map;           /* the map grows by doubling up to this; 0: no limit */
    int64_t grace_ms;         /* a bucket closes grace_ms after its end */
    int64_t dedupe_window_ms; /* how long an event_id is remembered */
} agg_store_opts_t;

/* What became of one record in agg_store_apply. */
typedef enum {
    AGG_MSG_APPLIED = 0, /* added to its bucket */
    AGG_MSG_STALE,       /* below the partition's stored offset: applied before */
    AGG_MSG_DUPLICATE,   /* its event_id was seen within the dedupe window */
    AGG_MSG_INVALID,     /* refused by agg_event_decode; `reason` names the field */
    AGG_MSG_CONFLICT,    /* its series name is used with another kind, or its series'
                            hash collides with another series */
    AGG_MSG_IGNORED,     /* a valid event that feeds no series yet (log records) */
} agg_msg_result_t;

/* One consumed Kafka record. The caller fills the inputs; agg_store_apply the outputs. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *value;
    size_t len;
    /* outputs */
    agg_msg_result_t result;
    bool late;          /* applied, and arrived after its bucket had closed */
    const char *reason; /* static string for INVALID and CONFLICT, else NULL */
} agg_msg_t;

/* Names a rollup owed for one revision of one bucket. */
typedef struct {
    uint8_t key[AGG_STORE_KEY_LEN]; /* the bucket's key in `unpublished` */
    uint64_t revision;
} agg_owed_ref_t;

typedef struct {
    uint64_t consumed; /* records looked at */
    uint64_t stale;
    uint64_t applied;
    uint64_t duplicates;
    uint64_t invalid;
    uint64_t conflicts;
    uint64_t ignored;
    uint64_t late;
    uint64_t corrupt; /* stored buckets or series that failed validation and were
                         replaced (their old content is lost; logged) */
    uint64_t buckets_written;
    uint64_t owed_cleared;  /* delivered rollups removed from `unpublished` */
    uint64_t dedupe_pruned; /* event ids forgotten after the dedupe window */
} agg_batch_stats_t;

/* Opens (creating) the store. Returns NULL after logging why. */
agg_store_t *agg_store_open(const agg_store_opts_t *opts);

/* Closes the environment and frees the store. Safe to call twice. No other thread may be
 * using the store. */
void agg_store_destroy(agg_store_t **self_p);

/*
 * Applies a batch in one write transaction, after clearing the owed rollups in
 * `delivered` whose revision is still the owed one: for every record, in order, the
 * partition offset check, decoding, dedupe, the series check and the bucket update; then
 * every changed bucket is written with its revision raised by one and marked owed in
 * `unpublished`, the partitions' next offsets are written, and event ids older than the
 * dedupe window are pruned (a bounded number per batch). A record is late when the
 * collector received it (received_us, or `now_us` when unset) at or after its bucket's end
 * plus the grace. `msgs` may be empty (to clear delivered rollups alone); `stats` may be
 * NULL. Returns 0 (each msgs[i].result set, *stats filled), or after rolling everything
 * back TC_ENOMEM, TC_EFULL (the map reached max_map) or TC_ELMDB; the batch may be applied
 * again later.
 */
int agg_store_apply(agg_store_t *self, agg_msg_t *msgs, size_t n, const agg_owed_ref_t *delivered,
                    size_t ndelivered, int64_t now_us, agg_batch_stats_t *stats);

/* The next offset to consume for a partition. Returns 0, TC_ENOTFOUND when nothing was
 * stored for it, or TC_ELMDB. */
int agg_store_offset_get(agg_store_t *self, const char *topic, int32_t partition, int64_t *next);

/* Stores a partition's next offset outside a batch (used when the broker lost its log).
 * Returns 0, TC_EINVAL for a bad topic, TC_EFULL or TC_ELMDB. */
int agg_store_offset_set(agg_store_t *self, const char *topic, int32_t partition, int64_t next);

/*
 * Merges the buckets a query asks for into `acc` (see agg_query.h): for a named series its
 * buckets in [from_s, to_s) of every environment or the one asked for; for "*" the same of
 * every request series of the service. Returns 0, TC_ENOMEM or TC_ELMDB. Corrupt stored
 * buckets are skipped and counted in *corrupt (may be NULL).
 */
int agg_store_query(agg_store_t *self, const agg_query_params_t *p, agg_query_acc_t *acc,
                    uint64_t *corrupt);

typedef struct {
    const char *service; /* borrowed for the duration of the callback */
    const char *environment;
    const char *name;
    agg_kind_t kind;
    int64_t first_s; /* first and last bucket start seen */
    int64_t last_s;
} agg_series_info_t;

/* Returns 0 to go on, anything else to stop the walk. */
typedef int (*agg_series_fn)(void *ctx, const agg_series_info_t *s);

/* Calls `fn` for every series of `service` (NULL: of every service), ordered by hash.
 * Returns 0 (also when `fn` stopped the walk) or TC_ELMDB. */
int agg_store_series(agg_store_t *self, const char *service, agg_series_fn fn, void *ctx);

/*
 * Calls `fn` for every owed rollup whose bucket is closed at `now_us` (end + grace), oldest
 * bucket first. `b` is the bucket to publish with `ref->revision`; it is NULL when the
 * stored bucket is missing or corrupt (the caller should clear `ref` like a delivered one).
 * `fn` returns 0 to go on, anything else to stop. Returns 0 or TC_ELMDB.
 */
typedef int (*agg_owed_fn)(void *ctx, const agg_owed_ref_t *ref, const agg_bucket_t *b);
int agg_store_owed(agg_store_t *self, int64_t now_us, agg_owed_fn fn, void *ctx);

/* True when a bucket starting at `start_s` is closed at `now_us`: now_us is at or after
 * its end plus `grace_us`. */
bool agg_store_bucket_closed(int64_t start_s, int64_t now_us, int64_t grace_us);

/* Opens and reads a read transaction, as the readiness check. Returns 0 or TC_ELMDB, with
 * `detail` saying how many buckets and series are stored or what failed. */
int agg_store_check(agg_store_t *self, char *detail, size_t len);

/* Map size and bytes in use (for /metrics); safe from any thread. */
size_t agg_store_map_bytes(agg_store_t *self);
size_t agg_store_used_bytes(agg_store_t *self);

/* Counts entries of `unpublished` (owed rollups, closed or not). Returns the count, or 0. */
uint64_t agg_store_owed_count(agg_store_t *self);

/* Clears reader slots of dead processes; returns how many. */
int agg_store_reader_check(agg_store_t *self);

#endif
