/*
 * tocsin.h — libtocsin, the Tocsin client library for C.
 *
 * A service records errors, served requests and metrics through a tocsin_t. Recording
 * copies the event into a bounded queue that was allocated when the client was created,
 * and returns: it never blocks, never allocates, makes no system call (the event time is
 * read through the vDSO) and never waits for the network. A background thread, one per
 * client, drains the queue into tocsin.v1.Batch messages and sends them over a ZeroMQ
 * DEALER to a collector, keeps each batch until the collector acknowledges it, resends on
 * time-out (failing over to the next configured collector) and obeys the collector's
 * retry-after. When the queue is full, an event is dropped, the call says so, and the drop
 * is counted and reported to the collector in the next batch: loss is never silent.
 *
 * Threads: every function may be called from any thread, concurrently, on the same
 * client, except tocsin_destroy, which must be the last call on a client (no other call
 * on it may be running or start after it begins).
 *
 * Memory: a client holds queue_capacity × TOCSIN_SLOT_BYTES bytes for its queue, a
 * batch under construction (batch_max_events events) and at most max_inflight_batches
 * encoded batches waiting for acknowledgement (each at most TOCSIN_BATCH_MAX_BYTES).
 * Nothing grows beyond that, whatever the collectors do.
 *
 * Strings: every string passed in is copied before the call returns; the caller keeps
 * ownership of its strings. Strings must be NUL-terminated. Bytes that are not well-formed
 * UTF-8 are replaced by '?' (the wire format carries UTF-8 only).
 *
 * fork(): the client belongs to the process that created it. In a child, recording still
 * returns at once but nothing is sent (the queue fills, then TOCSIN_EFULL), tocsin_flush
 * returns TOCSIN_ECLOSED, and tocsin_destroy frees the client's memory without touching
 * the parent's sockets or thread. A child that wants to report creates its own client.
 *
 * Errors: int functions return TOCSIN_OK (0) or one of the negative TOCSIN_E* codes below;
 * tocsin_new returns NULL. tocsin_strerror names a code.
 *
 * Not built yet (see the client-library issue): logs, stack traces, scope (tags, user,
 * trace id), sampling, before_send, CURVE, crash capture, a working client in a forked
 * child.
 */
#ifndef TOCSIN_H
#define TOCSIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* Error codes. Where a code means the same as one of Tocsin's internal TC_E* codes, it has
 * the same value. */
enum {
    TOCSIN_OK = 0,
    TOCSIN_EINVAL = -1,    /* an argument is NULL, empty, out of range or not finite */
    TOCSIN_ENOMEM = -2,    /* an allocation failed (tocsin_new only) */
    TOCSIN_EIO = -3,       /* a system call failed (tocsin_new only); errno says more */
    TOCSIN_ETOOBIG = -5,   /* a name is longer than TOCSIN_NAME_MAX: the event was dropped
                              and counted in dropped_oversize */
    TOCSIN_ETIMEDOUT = -7, /* tocsin_flush: the time bound passed first */
    TOCSIN_EFULL = -8,     /* the queue is full: the event was dropped and counted in
                              dropped_queue_full */
    TOCSIN_ECLOSED = -11,  /* the client is shutting down (tocsin_destroy has begun) */
    TOCSIN_EZMQ = -15,     /* ZeroMQ refused a socket or an endpoint (tocsin_new only) */
};

/* Returns a static, human-readable name for `err` (a TOCSIN_E* code, or "unknown error").
 * Never NULL; the string is not to be freed. */
const char *tocsin_strerror(int err);

/* Returns the library's version, e.g. "0.1.0". Static string, not to be freed. */
const char *tocsin_version(void);

/* ------------------------------------------------------------------------------------ */
/* Limits. */

/* Longest route, method, error type, metric name or unit, in bytes. A longer one drops the
 * event (TOCSIN_ETOOBIG, counted in dropped_oversize): cutting it would file the event
 * under a different series. */
#define TOCSIN_NAME_MAX 200

/* Bytes one queued event occupies. An error message is cut, at a character boundary, to
 * what is left of the slot after its type: at least TOCSIN_MESSAGE_MIN bytes. The event is
 * still recorded, and counted in events_truncated. */
#define TOCSIN_SLOT_BYTES 512
#define TOCSIN_MESSAGE_MIN 256

/* Longest service, environment, release or host name given to tocsin_new, in bytes. */
#define TOCSIN_IDENTITY_MAX 255

/* Most collector endpoints in tocsin_options_t.collectors. */
#define TOCSIN_COLLECTORS_MAX 16

/* Largest encoded batch the client sends, in bytes; a batch closes early to stay below. */
#define TOCSIN_BATCH_MAX_BYTES (1024 * 1024)

/* ------------------------------------------------------------------------------------ */
/* Client. */

typedef struct tocsin tocsin_t;

/* Severity of an error; the values are tocsin.v1.Level's. */
typedef enum {
    TOCSIN_LEVEL_DEBUG = 2,
    TOCSIN_LEVEL_INFO = 3,
    TOCSIN_LEVEL_WARNING = 4,
    TOCSIN_LEVEL_ERROR = 5,
    TOCSIN_LEVEL_FATAL = 6,
} tocsin_level_t;

/* Kind of a metric sample; the values are tocsin.v1.MetricKind's. */
typedef enum {
    TOCSIN_COUNTER = 1, /* value is an increment; summed */
    TOCSIN_GAUGE = 2,   /* value is a level */
    TOCSIN_TIMING = 3,  /* value is a duration or size sample, >= 0; quantiles kept */
} tocsin_metric_kind_t;

/*
 * Options for tocsin_new. Call tocsin_options_init first, then set what differs. A NULL
 * string or a 0 number also means "the default", so a zero-initialised struct with only
 * `service` set is valid too. Ranges are checked by tocsin_options_validate.
 */
typedef struct {
    const char *service;           /* required; at most TOCSIN_IDENTITY_MAX bytes */
    const char *environment;       /* default "production" */
    const char *release;           /* may be NULL (sent as "") */
    const char *host;              /* default: gethostname() */
    const char *collectors;        /* comma-separated ZeroMQ endpoints (tcp:// or ipc://),
                                      at most TOCSIN_COLLECTORS_MAX; the first is used until
                                      it fails. Default "tcp://127.0.0.1:7420" */
    const char *api_key;           /* may be NULL (sent as ""); at most 1024 bytes */
    uint32_t queue_capacity;       /* events; default 8192; 1 .. 1048576 */
    uint32_t batch_max_events;     /* default 500; 1 .. 10000 */
    uint32_t batch_interval_ms;    /* default 50: how long an event may wait to be batched;
                                      1 .. 60000 */
    uint32_t ack_timeout_ms;       /* default 2000: resend (to the next collector) after
                                      this; 1 .. 600000 */
    uint32_t max_inflight_batches; /* default 16: unacknowledged batches at most; while that
                                      many wait, the queue is not drained; 1 .. 1024 */
    uint32_t shutdown_timeout_ms;  /* default 2000: bound on tocsin_destroy; 1 .. 600000 */
} tocsin_options_t;

/* Fills `opts` with the defaults (service NULL: the caller must set it). */
void tocsin_options_init(tocsin_options_t *opts);

/*
 * Checks `opts` as tocsin_new would, without creating anything. Returns TOCSIN_OK, or
 * TOCSIN_EINVAL with *reason (when reason is not NULL) set to a static sentence naming the
 * faulty option. Endpoints are checked for form only; ZeroMQ may still refuse one in
 * tocsin_new.
 */
int tocsin_options_validate(const tocsin_options_t *opts, const char **reason);

/*
 * Creates a client: allocates and touches its whole queue, creates one DEALER socket per
 * collector endpoint (connecting in the background) and starts the background thread,
 * with every signal blocked in it and in ZeroMQ's I/O thread. Every string of `opts` is
 * copied. Returns NULL when the options are invalid (see tocsin_options_validate), memory
 * runs out, or ZeroMQ refuses an endpoint. Free with tocsin_destroy.
 */
tocsin_t *tocsin_new(const tocsin_options_t *opts);

/*
 * Stops the client: events already recorded are batched and sent, and the call waits for
 * their acknowledgements, for at most shutdown_timeout_ms (plus the time to join the
 * thread). Events still unacknowledged then are given up; their number is written to
 * stderr in one line. Frees everything and sets *self_p to NULL. Does nothing when
 * self_p or *self_p is NULL, so calling it twice is safe.
 */
void tocsin_destroy(tocsin_t **self_p);

/*
 * Records one served request: `route` is the route template ("/users/:id", not the raw
 * path), `method` the HTTP method or RPC verb (NULL: ""), `status` an HTTP-style status
 * (0 .. 999; 500 and above count as errors), `duration_us` the time to serve it.
 * Returns TOCSIN_OK; TOCSIN_EINVAL (self or route NULL, route empty, status out of range);
 * TOCSIN_ETOOBIG (route or method longer than TOCSIN_NAME_MAX); TOCSIN_EFULL (queue
 * full); TOCSIN_ECLOSED. Every event not recorded is counted in tocsin_stats.
 */
int tocsin_request(tocsin_t *self, const char *route, const char *method, int status,
                   uint64_t duration_us);

/*
 * Records one error: `type` is the error class ("KeyError", "ECONNRESET"; NULL: ""),
 * `message` the human-readable text (NULL: ""; cut to fit, see TOCSIN_MESSAGE_MIN); at
 * least one of them must be non-empty. `level` is one of tocsin_level_t.
 * Returns TOCSIN_OK; TOCSIN_EINVAL (self NULL, both strings empty, unknown level);
 * TOCSIN_ETOOBIG (type longer than TOCSIN_NAME_MAX); TOCSIN_EFULL; TOCSIN_ECLOSED.
 */
int tocsin_error(tocsin_t *self, const char *type, const char *message, tocsin_level_t level);

/*
 * Records one metric sample: `name` ("queue.depth"), `kind`, `value` (finite; >= 0 for
 * TOCSIN_TIMING), `unit` (free text such as "ms" or "bytes"; NULL: "").
 * Returns TOCSIN_OK; TOCSIN_EINVAL (self or name NULL, name empty, unknown kind, value not
 * finite or a negative timing); TOCSIN_ETOOBIG (name or unit longer than TOCSIN_NAME_MAX);
 * TOCSIN_EFULL; TOCSIN_ECLOSED.
 */
int tocsin_metric(tocsin_t *self, const char *name, tocsin_metric_kind_t kind, double value,
                  const char *unit);

/*
 * Sends what is queued now, without waiting for the batch interval, and waits until every
 * event recorded before the call has been acknowledged STORED by a collector, or rejected
 * (and counted), for at most `timeout_ms` (0: just check). This call blocks the caller;
 * the recording functions never do.
 * Returns TOCSIN_OK; TOCSIN_ETIMEDOUT (some events are still waiting: they stay queued and
 * keep being retried); TOCSIN_EINVAL (self NULL); TOCSIN_ECLOSED (tocsin_destroy has begun,
 * or this is a forked child of the process that created the client).
 */
int tocsin_flush(tocsin_t *self, uint32_t timeout_ms);

/*
 * The client's counters since tocsin_new. Each is exact; they are read one by one, so a
 * snapshot taken while events flow may mix moments a few events apart.
 *   recorded           events taken into the queue
 *   dropped_queue_full events dropped because the queue was full (TOCSIN_EFULL)
 *   dropped_oversize   events dropped because a name was too long (TOCSIN_ETOOBIG)
 *   batches_sent       batches handed to ZeroMQ for the first time
 *   batches_acked      batches acknowledged STORED
 *   batches_retried    resends: after an ack time-out or a collector's retry-after
 *   batches_rejected   batches the collector rejected (never retried)
 *   events_acked       events in batches acknowledged STORED (less any the collector
 *                      said it did not accept)
 *   events_rejected    events in rejected batches, and events of a stored batch that the
 *                      collector said it did not accept
 *   events_truncated   recorded events whose message was cut to fit the slot
 *   dropped_invalid    calls refused with TOCSIN_EINVAL or TOCSIN_ECLOSED
 *   acks_invalid       replies from collectors that were not a well-formed Ack
 * dropped_queue_full, dropped_oversize, batches_retried and events_rejected are also sent to
 * the collectors, as deltas, in the ClientCounters of the next batch.
 */
typedef struct {
    uint64_t recorded;
    uint64_t dropped_queue_full;
    uint64_t dropped_oversize;
    uint64_t batches_sent;
    uint64_t batches_acked;
    uint64_t batches_retried;
    uint64_t batches_rejected;
    uint64_t events_acked;
    uint64_t events_rejected;
    uint64_t events_truncated;
    uint64_t dropped_invalid;
    uint64_t acks_invalid;
} tocsin_stats_t;

/* Fills *out with the counters of `self` (all zero when self is NULL). */
void tocsin_stats(tocsin_t *self, tocsin_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
