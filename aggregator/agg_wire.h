/*
 * agg_wire.h — reading Kafka record values of tocsin.events and tocsin.logs without copying.
 *
 * A record holds a tocsin.v1.EventPack (the events of one collector batch that share the
 * record's key) when its header "tocsin.format" says "tocsin.v1.EventPack", and a single
 * tocsin.v1.Event when it has no such header (what collectors wrote before packing); any
 * other format is refused, not guessed at (agg_format_of). agg_pack_next walks a pack's
 * events in place.
 *
 * The hot path of the aggregator looks at every event once: protobuf-c's unpack would
 * allocate every string and sub-message. This scanner walks the protobuf wire format in
 * place, keeps pointers into the record for the fields the aggregator uses, skips the
 * others (unknown fields included), and validates what it keeps: lengths within bounds,
 * UTF-8, the body's own rules. Error and log bodies, which need their frames and fields,
 * are decoded in full with protobuf-c by the caller when needed (agg_wire_unpack).
 *
 * Strings are slices (pointer and length, not NUL-terminated) into the record; they live
 * as long as the record does.
 *
 * A pure module: no I/O, no clock, no global state.
 */
#ifndef AGG_WIRE_H
#define AGG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin/v1/event.pb-c.h"

#define AGG_EVENT_ID_LEN 16
#define AGG_MAX_SERVICE 256 /* bytes */
#define AGG_MAX_ENVIRONMENT 256
#define AGG_MAX_NAME 1024
#define AGG_MAX_SHORT 1024                     /* release, host, user id, grouping hash */
#define AGG_MAX_EVENT_BYTES (4u * 1024 * 1024) /* a Kafka record value above this is refused */
#define AGG_DEFAULT_ENVIRONMENT "default"
#define AGG_TIME_MAX_US 253402300799999999LL /* the last microsecond of year 9999 */
#define AGG_MAX_RECORD_BYTES (64u * 1024 * 1024) /* a pack above this is refused */
#define AGG_MIN_SAMPLE_RATE 1e-6 /* a smaller sample rate is refused (weight 10^6 at most) */

#define AGG_FORMAT_HEADER "tocsin.format"
#define AGG_FORMAT_PACK_NAME "tocsin.v1.EventPack"

/* What a record's value holds. */
typedef enum {
    AGG_FORMAT_EVENT = 0,   /* one tocsin.v1.Event (no format header) */
    AGG_FORMAT_PACK = 1,    /* a tocsin.v1.EventPack */
    AGG_FORMAT_UNKNOWN = 2, /* a format header this aggregator does not know */
} agg_format_t;

/* The format a record's "tocsin.format" header names: `present` false (no header) is
 * AGG_FORMAT_EVENT; `value` (`len` bytes, not terminated) "tocsin.v1.EventPack" is
 * AGG_FORMAT_PACK; anything else AGG_FORMAT_UNKNOWN. */
agg_format_t agg_format_of(bool present, const void *value, size_t len);

/*
 * Reads the next event at or after *offset of a pack of `len` bytes (start with *offset = 0):
 * returns 1 with *event and *event_len set (pointing into `data`) and *offset advanced, 0 at
 * the end, or TC_EPARSE when the bytes are not well-formed protobuf within `len`, field 1
 * is not length-delimited, or `len` is above AGG_MAX_RECORD_BYTES (the pack is then refused
 * whole). Other fields (a later version's) are skipped. The events themselves are not
 * checked here: agg_wire_scan decides each.
 */
int agg_pack_next(const uint8_t *data, size_t len, size_t *offset, const uint8_t **event,
                  size_t *event_len);

/* A string inside a record: `n` bytes at `p` (not terminated). */
typedef struct {
    const char *p;
    uint32_t n;
} agg_str_t;

/* Which body an event carries; the values of Tocsin__V1__Event__BodyCase. */
typedef enum {
    AGG_BODY_NONE = 0,
    AGG_BODY_ERROR = 10,
    AGG_BODY_REQUEST = 11,
    AGG_BODY_METRIC = 12,
    AGG_BODY_LOG = 13,
} agg_body_t;

typedef struct {
    const uint8_t *event_id; /* AGG_EVENT_ID_LEN bytes */
    int64_t time_us;
    int64_t received_us; /* 0 when the collector did not set it */
    agg_str_t service;
    agg_str_t environment; /* "default" when the event left it empty */
    agg_str_t release;
    agg_str_t host;
    agg_str_t user_id;
    agg_body_t body;
    /* Sampling: the client's sample rate (0 when not sampled) and the integer weight the
     * event counts with: 1 unsampled; 1/rate when that is an integer (up to float rounding);
     * otherwise floor(1/rate) or that plus one, chosen by a hash of the event id so that the
     * expected weight is 1/rate and every aggregator decides alike. */
    double sample_rate;
    uint64_t weight;
    /* request */
    agg_str_t route;
    uint32_t status;
    uint64_t duration_us;
    bool failed;
    /* metric */
    agg_str_t metric_name;
    int metric_kind; /* Tocsin__V1__MetricKind: COUNTER, GAUGE or TIMING */
    double value;
    /* error */
    agg_str_t error_type;
    agg_str_t error_message;
    agg_str_t grouping_hash; /* empty when the collector did not set it */
    int level;               /* error or log level (Tocsin__V1__Level); 0 when unset */
    /* log */
    agg_str_t log_message;
    agg_str_t logger;
} agg_event_t;

/*
 * Scans and validates a record value into `ev`: at most AGG_MAX_EVENT_BYTES, well-formed
 * protobuf (no groups, no field 0, lengths inside the record), event_id of 16 bytes, an event
 * time from the epoch to the end of year 9999, a non-empty service, UTF-8 strings within the
 * AGG_MAX_* bounds, exactly one body (a body field twice is refused), and the body's rules: a
 * request has a route; a metric has a name, kind COUNTER, GAUGE or TIMING, and a finite value,
 * non-negative for timings; series names do not start with '$' (kept for the aggregator's own
 * series, such as "$errors"); a sample rate of 0 (none) or in [AGG_MIN_SAMPLE_RATE, 1]. Returns 0,
 * TC_ETOOBIG, TC_EPARSE, TC_EINVAL or TC_EUTF8; on error *reason (if not NULL) names the field at
 * fault in a static string.
 */
int agg_wire_scan(const uint8_t *data, size_t len, agg_event_t *ev, const char **reason);

/*
 * Reads only the event_id and received_us of a record, for records that are below a
 * partition's stored offset (their ids refill the dedupe set). Returns 0 or TC_EPARSE.
 */
int agg_wire_scan_id(const uint8_t *data, size_t len, const uint8_t **event_id,
                     int64_t *received_us);

/* The weight of an event with `sample_rate` (0: not sampled) and the 16-byte `event_id`
 * (see agg_event_t.weight). The rate must be 0 or within [AGG_MIN_SAMPLE_RATE, 1]. */
uint64_t agg_sample_weight(double sample_rate, const uint8_t *event_id);

/* Decodes the whole event with protobuf-c (for error and log bodies). Returns the event
 * (free with tocsin__v1__event__free_unpacked) or NULL. */
Tocsin__V1__Event *agg_wire_unpack(const uint8_t *data, size_t len);

/* True when the slice equals the NUL-terminated `s`. */
bool agg_str_eq(agg_str_t a, const char *s);

/* A string from outside: at most `max` bytes and valid UTF-8. */
bool agg_text_ok(const char *s, size_t n, size_t max);

#endif
