/*
 * col_validate.h — decode and validate one Batch as it arrives from a client.
 *
 * Pure: no sockets, no clock, no globals. The collector calls col_batch_decode on every
 * ZeroMQ payload; a batch either comes back checked against every limit, or is refused with
 * a stable reason code (col_reason_name gives the snake_case name used as the `reason` label
 * of tocsin_collector_batches_rejected_total and in the REJECTED Ack) and a human message
 * naming the field and the event index.
 *
 * Validation walks the protobuf wire format itself, knowing the schema of tocsin.v1.Event,
 * without decoding into structs: most events are never decoded at all, and the collector
 * forwards their bytes with its own fields appended (a later field wins in protobuf). An
 * event whose shape protobuf would read in a less obvious way — a singular field twice (the
 * later wins, or sub-messages merge), or two bodies — is "complex": it is decoded with
 * protobuf-c and checked on the decoded struct, and the collector re-encodes it, so what
 * leaves is exactly what was checked.
 *
 * Checks: the payload size (before anything), the number of events (counted on the wire
 * before anything else, so a frame of empty events costs nothing), the framing, the wire
 * type of every known field (what protobuf-c would refuse), at least one event, and for
 * every event: event_id exactly 16 bytes, service non-empty, exactly one body, every string
 * valid UTF-8 without NUL bytes (protobuf-c would cut a string at one, and the collector
 * would check something else than it forwards) and within its limit, tags, frames,
 * fingerprint parts and log fields within their counts, metric values finite and TIMING
 * values not negative.
 */
#ifndef COL_VALIDATE_H
#define COL_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "col_arena.h"
#include "col_wire.h"
#include "tocsin/v1/transport.pb-c.h"

/* Hard limits on what one batch may hold; every one is configurable (limits.* keys). */
typedef struct {
    size_t max_frame_bytes;         /* encoded Batch size; default 1 MiB */
    uint32_t max_events;            /* events per batch; default 2000 */
    size_t max_short_string;        /* service, environment, release, host, trace and user ids,
                                       route, method, metric name and unit, error type, mechanism,
                                       grouping hash, logger, tag and field keys and values,
                                       fingerprint parts, frame fields, api_key, sdk; default 256 */
    size_t max_long_string;         /* error and log messages; default 16 KiB */
    uint32_t max_tags;              /* tags per event; default 64 */
    uint32_t max_frames;            /* stack frames per error; default 128 */
    uint32_t max_log_fields;        /* structured fields per log record; default 64 */
    uint32_t max_fingerprint_parts; /* explicit fingerprint parts per error; default 16 */
} col_limits_t;

/* The defaults listed above. */
col_limits_t col_limits_default(void);

/* Why a batch was refused. The numbers are internal; the names are the stable interface. */
typedef enum {
    COL_REASON_NONE = 0,
    COL_REASON_TOO_BIG,                    /* too_big: payload above max_frame_bytes */
    COL_REASON_MALFORMED,                  /* malformed: not a protobuf Batch (or not ZeroMQ-framed
                                              as one payload) */
    COL_REASON_EMPTY,                      /* empty: no events */
    COL_REASON_TOO_MANY_EVENTS,            /* too_many_events: above max_events */
    COL_REASON_MISSING_SERVICE,            /* missing_service: an event without a service */
    COL_REASON_BAD_EVENT_ID,               /* bad_event_id: event_id is not exactly 16 bytes */
    COL_REASON_NO_BODY,                    /* no_body: an event without error/request/metric/log */
    COL_REASON_STRING_TOO_LONG,            /* string_too_long: a string above its limit */
    COL_REASON_INVALID_UTF8,               /* invalid_utf8: a string that is not UTF-8 */
    COL_REASON_TOO_MANY_TAGS,              /* too_many_tags: above max_tags */
    COL_REASON_TOO_MANY_FRAMES,            /* too_many_frames: above max_frames */
    COL_REASON_TOO_MANY_FIELDS,            /* too_many_fields: log fields above max_log_fields */
    COL_REASON_BAD_VALUE,                  /* bad_value: a metric value not finite, or a negative
                                              TIMING value */
    COL_REASON_TOO_MANY_FINGERPRINT_PARTS, /* too_many_fingerprint_parts */
    COL_REASON_UNAUTHORIZED,               /* unauthorized: API key unknown or not for the
                                              events' service, or the client's CURVE key was
                                              withdrawn (set by the daemon, not by decoding) */
    COL_REASON_COUNT
} col_reason_t;

/* The reason's stable snake_case name ("too_big", ...); "none" for COL_REASON_NONE and
 * "unknown" for a value out of range. Never NULL; a static string. */
const char *col_reason_name(col_reason_t reason);

/* A refusal: the reason, the index of the event at fault (-1 when the batch as a whole is),
 * a one-line message such as "event 3: tags: 65 entries, at most 64", and the batch's
 * sequence number when one could be read from the top level of the payload (so the REJECTED
 * Ack can name the batch it answers; 0 otherwise, like an absent field). */
typedef struct {
    col_reason_t reason;
    int event_index;
    uint64_t sequence;
    char message[256];
} col_reject_t;

/* A string as it sits in the payload: not NUL-terminated. */
typedef struct {
    const char *p;
    size_t len;
} col_span_t;

/* One event of a batch. */
typedef struct {
    const uint8_t *raw; /* the event's bytes in the payload */
    size_t raw_len;
    Tocsin__V1__Event *ev; /* decoded into the arena; NULL until col_event_decode (simple
                              events are not decoded by col_batch_decode) */
    bool simple;           /* every singular field at most once and one body: the facts below
                              hold and the raw bytes say exactly that */
    bool flagged;          /* col_batch_decode_inspect's function returned false for one of
                              the event's strings (meaningful for simple events only) */
    /* What the walk found (spans point into `raw`); for complex events, from `ev`. */
    Tocsin__V1__Event__BodyCase body;
    col_span_t service;
    col_span_t name;          /* request route, or metric name */
    col_span_t grouping_hash; /* errors: the client's id; empty when none */
    col_span_t user_id;
    int64_t time_us;
} col_event_t;

/* A checked batch. Its spans and raw bytes point into the payload given to col_batch_decode,
 * the rest into the arena: both must outlive it. */
typedef struct {
    uint64_t sequence;
    col_span_t api_key;
    col_span_t sdk;
    col_client_counters_t counters;
    size_t n_events;
    col_event_t *events;
} col_batch_t;

/*
 * Checks `len` bytes at `data` as a tocsin.v1.Batch against `limits`. The batch's arrays,
 * and the complex events it decodes, are allocated from `arena`: the batch lives until the
 * caller's next col_arena_reset, and as long as `data`.
 *
 * Returns 0 with *out set; `reject` is then cleared (reason COL_REASON_NONE).
 * Returns TC_EINVAL when the batch is refused: *out is NULL, `reject` says why. (protobuf-c
 * does not tell an allocation failure from a parse error, so a complex event that does not
 * fit the arena is reported as `malformed` too.)
 * `data` may be NULL when `len` is 0.
 */
int col_batch_decode(const void *data, size_t len, const col_limits_t *limits, col_arena_t *arena,
                     col_batch_t **out, col_reject_t *reject);

/* What col_event_each and col_batch_decode_inspect pass for one string of an event. */
typedef enum {
    COL_STRING_TAG,       /* key and value */
    COL_STRING_LOG_FIELD, /* key and value */
    COL_STRING_MESSAGE,   /* value: the error or log message */
    COL_STRING_ROUTE,     /* value: the request route */
} col_string_kind_t;

typedef bool (*col_string_fn)(void *ctx, col_string_kind_t kind, col_span_t key, col_span_t value);

/*
 * col_batch_decode, calling `fn` (when not NULL) during the walk for every tag, log field,
 * message and route of every event, until it returns false for an event: that event is then
 * `flagged`. The collector asks "would scrubbing change this?" this way, without walking the
 * event a second time. `fn` sees strings before their event is fully checked (the batch may
 * still be refused).
 */
int col_batch_decode_inspect(const void *data, size_t len, const col_limits_t *limits,
                             col_arena_t *arena, col_string_fn fn, void *ctx, col_batch_t **out,
                             col_reject_t *reject);

/* Decodes an event of a checked batch into `arena` (once; later calls return at once).
 * Returns 0 with e->ev set, or TC_ENOMEM. */
int col_event_decode(col_event_t *e, col_arena_t *arena);

/*
 * The wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) the walk expects for
 * `field` of `message` (a full protobuf name such as "tocsin.v1.Event"), -1 when the field is
 * not one the walk knows, -2 when the message is not one it walks. For the test that keeps
 * the walk in step with the .proto files.
 */
int col_wire_known_type(const char *message, uint32_t field);

/* Calls `fn` for every tag, log field, message and route of a simple event, in wire order,
 * until it returns false. Returns false when `fn` did. */
bool col_event_each(const col_event_t *e, col_string_fn fn, void *ctx);

#endif
