/*
 * agg_bucket.h — one 10 s event-time bucket of one series, and how events get into it.
 *
 * A series is (service, environment, name) with a kind (docs/INTERFACES.md "Series"):
 * request series are named by route, "$errors" counts a service's ErrorEvents, metric
 * series are named by metric. This module decodes and validates a Kafka record value
 * (a tocsin.v1.Event), turns it into a sample of one series, applies samples to an
 * in-memory bucket, merges buckets, and encodes buckets for LMDB (tocsin.v1.Bucket behind
 * an 8-byte revision) and for Kafka (tocsin.v1.Rollup).
 *
 * A pure module: no I/O, no clock, no global state. Every byte string it decodes is
 * treated as hostile: lengths, UTF-8, enum values, numbers and the sketch are checked.
 */
#ifndef AGG_BUCKET_H
#define AGG_BUCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_sketch.h"
#include "tocsin/v1/event.pb-c.h"

#define AGG_BUCKET_WIDTH_S 10
#define AGG_EVENT_ID_LEN 16
#define AGG_MAX_SERVICE 256 /* bytes, without the terminator */
#define AGG_MAX_ENVIRONMENT 256
#define AGG_MAX_NAME 1024
#define AGG_MAX_EVENT_BYTES (4u * 1024 * 1024) /* a Kafka record value above this is refused */
#define AGG_MAX_STORED_BYTES (512u * 1024)     /* a stored bucket value above this is refused */
#define AGG_ERRORS_NAME "$errors"
#define AGG_DEFAULT_ENVIRONMENT "default"

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

/*
 * What one event contributes to one series. The strings are borrowed from the decoded
 * event and live as long as it does. kind AGG_KIND_NONE means the event is valid but feeds
 * no series yet (log records).
 */
typedef struct {
    const char *service;
    const char *environment; /* "default" when the event left it empty */
    const char *name;
    agg_kind_t kind;
    int64_t start_s; /* the bucket the event time falls in */
    int64_t time_us; /* event time */
    bool error;      /* counts in `errors` */
    bool has_value;  /* `value` goes to the sketch (requests, timings) or to the
                        counter sum / gauge level */
    double value;    /* duration in us for requests; the metric value for metrics */
} agg_sample_t;

/*
 * A bucket in memory. Strings are owned (freed by agg_bucket_fini). A bucket that has not
 * seen a sample yet has kind AGG_KIND_NONE and count 0; the first sample or merge sets its
 * identity.
 */
typedef struct {
    char *service;
    char *environment;
    char *name;
    agg_kind_t kind;
    int64_t start_s;
    uint32_t width_s;
    uint64_t count;
    uint64_t errors;
    uint64_t late;
    tc_sketch_t sketch; /* request durations (us) or TIMING values; schema TC_SKETCH_SCHEMA */
    double sum;
    double min; /* meaningful once count > 0 and a value was seen */
    double max;
    double last; /* gauges: the value with the latest event time */
    int64_t last_time_us;
} agg_bucket_t;

/* Floor of `time_us` to the start (in seconds) of its 10 s bucket, negative times too:
 * -1 us lies in the bucket starting at -10 s. */
int64_t agg_bucket_align(int64_t time_us);

/*
 * Decodes a Kafka record value into an Event and validates it: at most AGG_MAX_EVENT_BYTES,
 * protobuf that parses, event_id of 16 bytes, a non-empty service, strings that are UTF-8
 * and within the AGG_MAX_* bounds, exactly one body, and the body's own rules (a request
 * has a route; a metric has a name, a known kind and a finite value, non-negative for
 * timings; names of series do not start with '$', which is kept for the aggregator's own
 * series such as "$errors").
 * Returns 0 with *out set (free it with tocsin__v1__event__free_unpacked(*out, NULL)),
 * TC_ETOOBIG, TC_EPARSE, TC_EINVAL or TC_EUTF8. On error *reason (if not NULL) names the
 * field at fault in a static string.
 */
int agg_event_decode(const uint8_t *data, size_t len, Tocsin__V1__Event **out, const char **reason);

/*
 * Turns a validated event into its sample (see agg_sample_t). Requests: count, error when
 * status >= 500 or failed, value = duration_us. ErrorEvents: series "$errors", count and
 * error. Metrics: series named by the metric, kind by metric kind. Log records: kind
 * AGG_KIND_NONE. Returns 0, or TC_EINVAL for an event that agg_event_decode would refuse.
 */
int agg_event_sample(const Tocsin__V1__Event *ev, agg_sample_t *out);

/* An empty bucket (kind AGG_KIND_NONE, width 10 s, sketch of TC_SKETCH_SCHEMA). */
void agg_bucket_init(agg_bucket_t *b);

/* Frees what the bucket holds; it may be initialised again. Safe on an initialised or a
 * finished bucket. */
void agg_bucket_fini(agg_bucket_t *b);

/*
 * Adds one sample to the bucket; `late` says the event arrived after the bucket closed.
 * An empty bucket takes the sample's identity (strings copied). Requests: count, errors,
 * sketch, sum, min, max. Errors: count and errors. COUNTER: count and sum. GAUGE: count,
 * min, max, and last by event time (a tie keeps the later arrival). TIMING: count, sketch,
 * sum, min, max. Returns 0, TC_EINVAL when the sample belongs to another series or bucket
 * (programmer error at the caller, reported not asserted), or TC_ENOMEM (the bucket is then
 * unchanged except possibly its identity).
 */
int agg_bucket_apply(agg_bucket_t *b, const agg_sample_t *s, bool late);

/*
 * Adds `src` to `dst`: counts, errors, late, sums and sketches add; min/max combine; the
 * gauge level with the later event time wins. An empty `dst` takes `src`'s identity; the
 * start stays `dst`'s (a query merges buckets of many starts). Returns 0, TC_EINVAL when the
 * kinds differ, or TC_ENOMEM.
 */
int agg_bucket_merge(agg_bucket_t *dst, const agg_bucket_t *src);

/*
 * Encodes the bucket as stored in LMDB: 8 bytes big-endian `revision`, then the
 * tocsin.v1.Bucket message. Returns 0 with *out (malloc'd, the caller frees) and *len set,
 * or TC_ENOMEM.
 */
int agg_bucket_encode(const agg_bucket_t *b, uint64_t revision, uint8_t **out, size_t *len);

/*
 * Decodes a stored bucket into `b` (initialised by the call; agg_bucket_fini it whether or
 * not the call succeeded) and *revision. Checks everything agg_bucket_encode guarantees:
 * size, a Bucket that parses, UTF-8 strings within bounds, a known kind, width 10 and an
 * aligned start, errors and late not above count, finite numbers, and a sketch of schema
 * TC_SKETCH_SCHEMA that tc_sketch_load accepts and whose total matches count for request
 * and timing series (empty otherwise). Returns 0, TC_ETOOBIG, TC_EPARSE, TC_EINVAL,
 * TC_EUTF8 or TC_ENOMEM.
 */
int agg_bucket_decode(const uint8_t *data, size_t len, agg_bucket_t *b, uint64_t *revision);

/*
 * Encodes the tocsin.v1.Rollup published on tocsin.rollups for this bucket.
 * Returns 0 with *out (malloc'd, the caller frees) and *len set, or TC_ENOMEM.
 */
int agg_rollup_encode(const agg_bucket_t *b, uint64_t revision, const char *producer, uint8_t **out,
                      size_t *len);

/*
 * The Kafka key of the series' rollups: "service\0environment\0name" (no terminator after
 * the name). Returns the key's length, or 0 when `cap` is too small.
 */
size_t agg_rollup_key(const agg_bucket_t *b, char *buf, size_t cap);

#endif
