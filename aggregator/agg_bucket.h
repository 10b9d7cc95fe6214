/*
 * agg_bucket.h — one event-time bucket of one series, and how events get into it.
 *
 * A series is (service, environment, name) with a kind (docs/aggregator.md "Series"):
 * request series are named by route, "$errors" counts a service's ErrorEvents, metric
 * series are named by metric. A bucket covers 10 s of event time (60 s once rolled up),
 * aligned to multiples of its width since the epoch, and holds: count, errors, requests
 * slower than each SLO threshold, a quantile sketch (request durations in microseconds or
 * TIMING values), a HyperLogLog of user ids, sum/min/max/last for metrics, the events that
 * arrived too late for their own bucket, and `source_offset`: the bucket holds exactly the
 * records of its source partition below that offset that belong to it.
 *
 * Sampled events (a client sample rate r < 1) count with an integer weight standing for 1/r
 * events (agg_sample_weight) in count, errors, slow, late, the sketch and sum; the bucket
 * also counts how many sampled events it received (sampled_events) and what they stand for
 * (sampled_count, part of count). Unsampled events weigh 1, so without sampling every figure
 * is exact.
 *
 * This module turns a scanned event into its sample, applies samples and merges buckets,
 * and encodes buckets for LMDB (a compact binary form, agg_bucket_store_*) and for Kafka
 * (tocsin.v1.Rollup, agg_bucket_rollup_encode). Decoders treat their input as hostile.
 *
 * A pure module: no I/O, no clock, no global state.
 */
#ifndef AGG_BUCKET_H
#define AGG_BUCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_wire.h"
#include "tc_hll.h"
#include "tc_sketch.h"

#define AGG_BUCKET_WIDTH_S 10
#define AGG_ROLLUP_WIDTH_S 60
#define AGG_SLO_MAX 8
#define AGG_MAX_STORED_BYTES (512u * 1024) /* a stored bucket value above this is refused */
#define AGG_ERRORS_NAME "$errors"
/* The series row of a service's request totals (every route merged; agg_store.h), which
 * name=* reads. Not a route: never published, not listed. */
#define AGG_SERVICE_NAME "$requests"

/* Values equal to tocsin.v1.SeriesKind. */
typedef enum {
    AGG_KIND_NONE = 0,
    AGG_KIND_REQUESTS = 1,
    AGG_KIND_ERRORS = 2,
    AGG_KIND_COUNTER = 3,
    AGG_KIND_GAUGE = 4,
    AGG_KIND_TIMING = 5,
} agg_kind_t;

/* "requests", "errors", "counter", "gauge", "timing", or "none". Never NULL. */
const char *agg_kind_name(agg_kind_t kind);

/* What one event contributes to one series; strings are borrowed from the record. */
typedef struct {
    agg_str_t service;
    agg_str_t environment;
    agg_str_t name;
    agg_kind_t kind; /* AGG_KIND_NONE: a valid event that feeds no series (log records) */
    int64_t start_s; /* the 10 s bucket the event time falls in */
    int64_t time_us;
    bool error;
    bool has_value; /* requests: duration (us); metrics: the value */
    double value;
    bool has_user;
    uint64_t user_hash; /* tc_hll_hash of the user id */
    uint64_t weight;    /* events this one stands for (1 unless sampled; 0 means 1) */
    bool sampled;       /* the event carried a sample rate below 1 */
} agg_sample_t;

/* SLO thresholds in microseconds, ascending, applied to request series. */
typedef struct {
    uint32_t n;
    uint64_t us[AGG_SLO_MAX];
} agg_slo_t;

typedef struct {
    agg_kind_t kind; /* NONE while empty */
    uint32_t width_s;
    uint64_t count;
    uint64_t errors;
    uint64_t late;
    uint64_t sampled_events; /* sampled events received */
    uint64_t sampled_count;  /* the events they stand for (part of count) */
    uint32_t nslo;
    uint64_t slo_us[AGG_SLO_MAX];
    uint64_t slow[AGG_SLO_MAX];
    tc_sketch_t sketch; /* schema TC_SKETCH_SCHEMA */
    tc_hll_t users;
    double sum;
    double min; /* gauges and timings; meaningful once a value was seen */
    double max;
    double last; /* gauges: the value with the latest event time */
    int64_t last_time_us;
    int64_t source_offset; /* 0 for buckets merged from several sources */
} agg_bucket_t;

/* Floor of `time_us` to the start (seconds) of its bucket of `width_s`, negative times too. */
int64_t agg_bucket_align(int64_t time_us, uint32_t width_s);

/* Parses "100ms,500ms,2s" (at most AGG_SLO_MAX durations, each above 0, strictly
 * ascending; empty for none). Returns 0 or TC_EINVAL. */
int agg_slo_parse(const char *text, agg_slo_t *out);

/*
 * The sample of a scanned event. Requests: count, error when status >= 500 or failed,
 * value = duration_us. ErrorEvents: series "$errors", count and error. Metrics: series
 * named by the metric, kind by metric kind. Log records: kind AGG_KIND_NONE.
 */
void agg_event_sample(const agg_event_t *ev, agg_sample_t *out);

/* An empty bucket of width 10 s. */
void agg_bucket_init(agg_bucket_t *b);

/* Frees what the bucket holds; it may be initialised again. Safe twice. */
void agg_bucket_fini(agg_bucket_t *b);

/* Empties the bucket, keeping its memory. */
void agg_bucket_reset(agg_bucket_t *b);

/* Gives an empty bucket its kind (and, for request series, the SLO thresholds `slo`, which
 * may be NULL). Returns 0, or TC_EINVAL when the bucket already has another kind. */
int agg_bucket_begin(agg_bucket_t *b, agg_kind_t kind, const agg_slo_t *slo);

/*
 * Adds a sample with its weight w. An empty bucket takes the sample's kind and, for request
 * series, the SLO thresholds `slo` (may be NULL). Requests: count, errors, slow counters and
 * the sketch by w, sum by w times the duration, min, max, users. Errors: count and errors by
 * w, users. COUNTER: count by w, sum by w times the value. GAUGE: count by w, min, max, and
 * last by event time (a tie keeps the later arrival). TIMING: count and sketch by w, sum by w
 * times the value, min, max. A sampled one adds 1 to sampled_events and w to sampled_count.
 * Returns 0, TC_EINVAL when the kinds differ, or TC_ENOMEM (the bucket may
 * then hold part of the sample; the caller drops it).
 */
int agg_bucket_apply(agg_bucket_t *b, const agg_sample_t *s, const agg_slo_t *slo);

/*
 * Adds `src` to `dst`: counts, errors, late, sums and sketches add; users unite; min/max
 * combine; the gauge level with the later event time wins; slow counters add for the
 * thresholds both have (a threshold only one of them has is dropped). An empty `dst` takes
 * `src`'s kind. source_offset becomes the larger of the two. Returns 0, TC_EINVAL when the
 * kinds differ, or TC_ENOMEM.
 */
int agg_bucket_merge(agg_bucket_t *dst, const agg_bucket_t *src);

/* Copies `src` into `dst` (which must be initialised). Returns 0 or TC_ENOMEM. */
int agg_bucket_copy(agg_bucket_t *dst, const agg_bucket_t *src);

/*
 * The LMDB form: a compact binary encoding (docs/aggregator.md "Storage"). The caller
 * passes a buffer of agg_bucket_store_size(b) bytes. Returns the bytes written.
 */
size_t agg_bucket_store_size(const agg_bucket_t *b);
size_t agg_bucket_store_encode(const agg_bucket_t *b, uint8_t *out);

/*
 * Decodes a stored bucket into `b` (initialised; its memory is reused). Checks everything
 * agg_bucket_store_encode guarantees: size, format, a known kind, width 10 or 60, errors,
 * slow counters and sampled_count not above count, sampled_events not above sampled_count,
 * ascending thresholds, finite numbers, a sketch that
 * tc_sketch_load accepts and whose total matches count for request and timing series, a
 * HyperLogLog that tc_hll_decode accepts, nothing after the end, and not empty. Returns 0,
 * TC_ETOOBIG, TC_EPARSE, TC_EINVAL or TC_ENOMEM; `b` is empty after an error.
 */
int agg_bucket_store_decode(const uint8_t *data, size_t len, agg_bucket_t *b);

/*
 * Merges a stored bucket into `dst` (as agg_bucket_merge would merge its decoded form)
 * without building it: a window query's fast path. Checks exactly what
 * agg_bucket_store_decode checks, before changing anything. Returns 0, TC_ETOOBIG, TC_EPARSE,
 * TC_EINVAL (also when the kinds differ; `dst` unchanged) or TC_ENOMEM.
 */
int agg_bucket_store_merge(agg_bucket_t *dst, const uint8_t *data, size_t len);

/* Checks the invariants every decoded bucket must keep (see agg_bucket_store_decode).
 * Returns 0 or TC_EINVAL. */
int agg_bucket_check(const agg_bucket_t *b);

/* A series' identity, as rollups carry it. */
typedef struct {
    const char *service;
    const char *environment;
    const char *name;
} agg_series_id_t;

/*
 * Encodes the tocsin.v1.Rollup of a bucket: the series, start, the bucket's fields, `open`,
 * `partition` as the source partition, and revision 2 * source_offset + (open ? 0 : 1).
 * Returns 0 with *out (malloc'd, the caller frees) and *len set, or TC_ENOMEM.
 */
int agg_bucket_rollup_encode(const agg_series_id_t *id, int64_t start_s, const agg_bucket_t *b,
                             uint32_t partition, bool open, const char *producer, uint8_t **out,
                             size_t *len);

/* The revision a bucket's rollup carries. */
uint64_t agg_bucket_revision(const agg_bucket_t *b, bool open);

/* The Kafka key of a series' rollups: "service\0environment\0name". Returns the key's
 * length, or 0 when `cap` is too small. */
size_t agg_rollup_key(const agg_series_id_t *id, char *buf, size_t cap);

#endif
