/*
 * tocsin.h — libtocsin, the Tocsin client library for C.
 *
 * A service records errors, served requests, metrics and log lines through a tocsin_t.
 * Recording copies the event into a bounded queue that was allocated when the client was
 * created, and returns: it never blocks, never allocates, makes no system call (the event
 * time is read through the vDSO) and never waits for the network. A background thread,
 * one per client, drains the queue into tocsin.v1.Batch messages and sends them over a
 * ZeroMQ DEALER to a collector, keeps each batch until the collector acknowledges it,
 * resends on time-out (failing over to the next configured collector) and obeys the
 * collector's retry-after. When the queue is full, an event is dropped, the call says so,
 * and the drop is counted and reported to the collector — even when nothing else is
 * queued: loss is never silent.
 *
 * Threads: every function may be called from any thread, concurrently, on the same
 * client, except tocsin_destroy, which must be the last call on a client (no other call
 * on it may be running or start after it begins). The before_send hook runs on the
 * client's background thread.
 *
 * Memory: a client holds queue_capacity × TOCSIN_SLOT_BYTES bytes for its queue, one batch
 * under construction (at most TOCSIN_BATCH_MAX_BYTES) and at most max_inflight_batches
 * encoded batches waiting for acknowledgement (each at most TOCSIN_BATCH_MAX_BYTES), plus a
 * bounded cache of symbolised stack frames. Nothing grows beyond that, whatever the
 * collectors do.
 *
 * Events larger than one slot (an error with a stack trace, a log line with fields, a long
 * message) take several consecutive slots, claimed with the same single compare-and-swap;
 * an event never takes more than TOCSIN_EVENT_MAX_SLOTS slots (nor more than the queue).
 *
 * Strings: every string passed in is copied before the call returns; the caller keeps
 * ownership of its strings. Strings must be NUL-terminated. Bytes that are not well-formed
 * UTF-8 are replaced by '?' (the wire format carries UTF-8 only).
 *
 * Scope: each thread carries a scope (a trace id, a user id, tags) that every event it
 * records picks up, whatever client records it (tocsin_scope_*). Client-wide tags are
 * given in the options.
 *
 * fork(): a client keeps working in a child process. The child's copy of the client starts
 * with an empty queue (the events queued before fork() are the parent's to send) and its
 * own sockets and background thread, created by the first call on the client in the child
 * (that one call allocates and takes about a millisecond). Its counters start from zero.
 *
 * Crash capture: with crash_dir set, the client installs handlers for SIGSEGV, SIGBUS,
 * SIGFPE, SIGILL and SIGABRT that write a minimal error event with the crashing thread's
 * stack to a file in crash_dir, then chain to the handler that was there before. The next
 * tocsin_new with the same crash_dir sends it, and deletes the file once a collector has
 * stored it.
 *
 * Errors: int functions return TOCSIN_OK (0) or one of the negative TOCSIN_E* codes below;
 * tocsin_new returns NULL. tocsin_strerror names a code.
 */
#ifndef TOCSIN_H
#define TOCSIN_H

#include <stdbool.h>
#include <stddef.h>
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
    TOCSIN_ENOMEM = -2,    /* an allocation failed (never on the recording path) */
    TOCSIN_EIO = -3,       /* a system call failed (tocsin_new only); errno says more */
    TOCSIN_ETOOBIG = -5,   /* a name is longer than TOCSIN_NAME_MAX: the event was dropped
                              and counted in dropped_oversize (or, for scope and event
                              setters, the value was not taken) */
    TOCSIN_ETIMEDOUT = -7, /* tocsin_flush: the time bound passed first */
    TOCSIN_EFULL = -8,     /* the queue is full: the event was dropped and counted in
                              dropped_queue_full */
    TOCSIN_ECLOSED = -11,  /* the client is shutting down (tocsin_destroy has begun) */
    TOCSIN_EZMQ = -15,     /* ZeroMQ refused a socket, an endpoint or a key (tocsin_new) */
};

/* Returns a static, human-readable name for `err` (a TOCSIN_E* code, or "unknown error").
 * Never NULL; the string is not to be freed. */
const char *tocsin_strerror(int err);

/* Returns the library's version, e.g. "0.1.0". Static string, not to be freed. */
const char *tocsin_version(void);

/* ------------------------------------------------------------------------------------ */
/* Limits. */

/* Longest route, method, error type, metric name or unit, logger, tag key or value, trace
 * or user id, fingerprint part, log field key or value, in bytes. A route, method, type,
 * metric name, unit or logger that is longer drops the event (TOCSIN_ETOOBIG, counted in
 * dropped_oversize): cutting it would file the event under a different series. Frame
 * strings and log field values that are longer are cut (counted in events_truncated). */
#define TOCSIN_NAME_MAX 200

/* Longest error or log message, in bytes; a longer one is cut at a character boundary,
 * the event is still recorded and counted in events_truncated. */
#define TOCSIN_MESSAGE_MAX 8192

/* Kept for source compatibility: a message is now never cut below TOCSIN_MESSAGE_MAX
 * unless the whole event would exceed TOCSIN_EVENT_MAX_SLOTS slots. */
#define TOCSIN_MESSAGE_MIN 256

/* Bytes of one queue slot. Most events fit one slot. */
#define TOCSIN_SLOT_BYTES 512

/* Most slots one event takes (32 KiB of event): frames past what fits are left out from
 * the outermost end, and the event is counted in events_truncated. */
#define TOCSIN_EVENT_MAX_SLOTS 64

/* Most stack frames per error (captured or passed in); more are left out (outermost
 * first) and counted in events_truncated. */
#define TOCSIN_FRAMES_MAX 64

/* Most tags per thread scope, and per client (options.tags). */
#define TOCSIN_TAGS_MAX 16

/* Most structured fields per log record; more are left out and counted in
 * events_truncated. */
#define TOCSIN_FIELDS_MAX 32

/* Most parts of an explicit fingerprint; more is TOCSIN_EINVAL. */
#define TOCSIN_FINGERPRINT_MAX 16

/* Longest service, environment, release or host name given to tocsin_new, in bytes. */
#define TOCSIN_IDENTITY_MAX 255

/* Most collector endpoints in tocsin_options_t.collectors. */
#define TOCSIN_COLLECTORS_MAX 16

/* Largest encoded batch the client sends, in bytes; a batch closes early to stay below. */
#define TOCSIN_BATCH_MAX_BYTES (1024 * 1024)

/* Length of a ZeroMQ CURVE key in Z85 text (32 bytes of key). */
#define TOCSIN_CURVE_KEY_LEN 40

/* ------------------------------------------------------------------------------------ */
/* Types. */

typedef struct tocsin tocsin_t;

/* Severity of an error or a log record; the values are tocsin.v1.Level's. */
typedef enum {
    TOCSIN_LEVEL_TRACE = 1,
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

/* Kind of an event, for sample rates and the before_send hook. */
typedef enum {
    TOCSIN_EVENT_ERROR = 1,
    TOCSIN_EVENT_REQUEST = 2,
    TOCSIN_EVENT_METRIC = 3,
    TOCSIN_EVENT_LOG = 4,
} tocsin_event_kind_t;

/* A key and a value: a tag, or a structured field of a log record. Borrowed strings. */
typedef struct {
    const char *key;
    const char *value;
} tocsin_tag_t;

/* One stack frame passed in by a binding (a Python or JS wrapper, say). Borrowed strings;
 * NULL means "". */
typedef struct {
    const char *function;      /* function or method name */
    const char *module;        /* module, package or shared object; grouping prefers it */
    const char *file;          /* source file as the binding knows it */
    uint32_t line;             /* 1-based; 0 when unknown */
    bool in_app;               /* the service's own code */
    uint64_t instruction_addr; /* program counter, for native frames without symbols */
} tocsin_frame_t;

/* An event handed to the before_send hook: read and edit it with tocsin_event_*. Valid only
 * during the call. */
typedef struct tocsin_event tocsin_event_t;

/*
 * The before_send hook: called on the client's background thread for every event of the
 * kinds in before_send_kinds, after sampling and after the stack trace was symbolised, just
 * before the event is encoded. It may read and edit the event (tocsin_event_* functions)
 * and returns true to send it, false to drop it (counted in dropped_before_send and
 * reported to the collector). It must not call tocsin_flush or tocsin_destroy on the same
 * client; recording further events from it is allowed but they go through the queue.
 * Whatever it takes delays delivery, never the recording threads.
 */
typedef bool (*tocsin_before_send_fn)(tocsin_event_t *event, void *user_data);

/* Values of tocsin_options_t.stack_traces. */
enum {
    TOCSIN_STACKS_DEFAULT = 0, /* TOCSIN_STACKS_ON */
    TOCSIN_STACKS_ON = 1,      /* tocsin_error captures the calling thread's stack */
    TOCSIN_STACKS_OFF = 2,     /* only frames passed in explicitly are sent */
};

/* Bits of tocsin_options_t.before_send_kinds. */
#define TOCSIN_KIND_BIT(kind) (1u << (kind))
#define TOCSIN_KINDS_ALL                                                                           \
    (TOCSIN_KIND_BIT(TOCSIN_EVENT_ERROR) | TOCSIN_KIND_BIT(TOCSIN_EVENT_REQUEST) |                 \
     TOCSIN_KIND_BIT(TOCSIN_EVENT_METRIC) | TOCSIN_KIND_BIT(TOCSIN_EVENT_LOG))

/*
 * Options for tocsin_new. Call tocsin_options_init first, then set what differs. A NULL
 * string or a 0 number also means "the default", so a zero-initialised struct with only
 * `service` set is valid too. Ranges are checked by tocsin_options_validate. The struct
 * grows at its end between versions: compile against the header of the library you link.
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
    uint32_t queue_capacity;       /* slots; default 8192; 1 .. 1048576 */
    uint32_t batch_max_events;     /* default 500; 1 .. 10000 */
    uint32_t batch_interval_ms;    /* default 50: how long an event may wait to be batched;
                                      1 .. 60000 */
    uint32_t ack_timeout_ms;       /* default 2000: resend (to the next collector) after
                                      this; 1 .. 600000 */
    uint32_t max_inflight_batches; /* default 16: unacknowledged batches at most; while that
                                      many wait, the queue is not drained; 1 .. 1024 */
    uint32_t shutdown_timeout_ms;  /* default 2000: bound on tocsin_destroy; 1 .. 600000.
                                      When no collector has accepted a connection for
                                      250 ms of it, destroy gives up at once. */

    /* CURVE (all NULL: plain TCP). curve_server_key is the collectors' public key; with it
     * set, the client encrypts and authenticates the server. The client's own key pair
     * (both or neither) lets the collector authenticate the client; without it the client
     * uses a fresh key pair (enough for a collector that allows any client). Z85 text of
     * TOCSIN_CURVE_KEY_LEN characters each. */
    const char *curve_server_key;
    const char *curve_public_key;
    const char *curve_secret_key;

    /* Client-wide tags, sent with every event (a thread's scope tags win on the same key);
     * at most TOCSIN_TAGS_MAX, keys non-empty, keys and values at most TOCSIN_NAME_MAX
     * bytes. Copied by tocsin_new. */
    const tocsin_tag_t *tags;
    size_t n_tags;

    /* Sample rates per kind of event, in (0, 1]; 0 means 1 (keep all). An event left out
     * is counted in sampled_out (and reported to the collector); a kept event carries its
     * rate (Event.sample_rate) so counts can be scaled. */
    double sample_rate_errors;
    double sample_rate_requests;
    double sample_rate_metrics;
    double sample_rate_logs;

    /* The before_send hook (NULL: none), its argument, and the kinds of events it sees
     * (TOCSIN_KIND_BIT of each; 0 means TOCSIN_KINDS_ALL). */
    tocsin_before_send_fn before_send;
    void *before_send_data;
    uint32_t before_send_kinds;

    /* Stack traces of tocsin_error: TOCSIN_STACKS_DEFAULT/ON/OFF. */
    int stack_traces;

    /* Which native frames are the service's own code (in_app): a frame is in-app when its
     * module's file name (basename) starts with one of the comma-separated prefixes of
     * in_app_include, or, when in_app_include is NULL, when its module is the program
     * itself or a library outside the system folders (/lib, /usr/lib, /lib64, /usr/lib64,
     * /usr/local/lib); in_app_exclude (prefixes too) wins over both. libtocsin is never
     * in-app. */
    const char *in_app_include;
    const char *in_app_exclude;

    /* Folder for crash reports (NULL: no crash capture, and no crash reports sent). It
     * must exist; at most 200 bytes. */
    const char *crash_dir;
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
 * collector endpoint (connecting in the background), starts the background thread (with
 * every signal blocked in it and in ZeroMQ's I/O thread), installs the crash handlers
 * when crash_dir is set and queues the crash reports found there. Every string of `opts`
 * is copied. Returns NULL when the options are invalid (see tocsin_options_validate),
 * memory runs out, or ZeroMQ refuses an endpoint or a key. Free with tocsin_destroy.
 */
tocsin_t *tocsin_new(const tocsin_options_t *opts);

/*
 * Stops the client: events already recorded are batched and sent, and the call waits for
 * their acknowledgements, for at most shutdown_timeout_ms (less when no collector is
 * reachable at all, see shutdown_timeout_ms) plus the time to join the thread. Events
 * still unacknowledged then are given up; their number is written to stderr in one line.
 * Removes the crash handlers this client installed (restoring the previous ones). Frees
 * everything and sets *self_p to NULL. Does nothing when self_p or *self_p is NULL, so
 * calling it twice is safe.
 */
void tocsin_destroy(tocsin_t **self_p);

/*
 * Records one served request: `route` is the route template ("/users/:id", not the raw
 * path), `method` the HTTP method or RPC verb (NULL: ""), `status` an HTTP-style status
 * (0 .. 999; 500 and above count as errors), `duration_us` the time to serve it.
 * Returns TOCSIN_OK (also when the event was sampled out); TOCSIN_EINVAL (self or route
 * NULL, route empty, status out of range); TOCSIN_ETOOBIG (route or method longer than
 * TOCSIN_NAME_MAX); TOCSIN_EFULL (queue full); TOCSIN_ECLOSED. Every event not recorded is
 * counted in tocsin_stats.
 */
int tocsin_request(tocsin_t *self, const char *route, const char *method, int status,
                   uint64_t duration_us);

/*
 * Records one error: `type` is the error class ("KeyError", "ECONNRESET"; NULL: ""),
 * `message` the human-readable text (NULL: ""; cut at TOCSIN_MESSAGE_MAX); at least one
 * of them must be non-empty. `level` is one of tocsin_level_t. Unless stack_traces is
 * TOCSIN_STACKS_OFF, the calling thread's stack is captured (program counters only, about
 * a microsecond; symbolised later on the background thread).
 * Returns TOCSIN_OK; TOCSIN_EINVAL (self NULL, both strings empty, unknown level);
 * TOCSIN_ETOOBIG (type longer than TOCSIN_NAME_MAX); TOCSIN_EFULL; TOCSIN_ECLOSED.
 */
int tocsin_error(tocsin_t *self, const char *type, const char *message, tocsin_level_t level);

/* What tocsin_error_ex records. Zero-initialise, then set what you have. */
typedef struct {
    const char *type;     /* as tocsin_error */
    const char *message;  /* as tocsin_error */
    tocsin_level_t level; /* 0 means TOCSIN_LEVEL_ERROR */
    /* Frames passed in (innermost first), e.g. by a language binding: when n_frames > 0
     * nothing is captured. At most TOCSIN_FRAMES_MAX are kept. */
    const tocsin_frame_t *frames;
    size_t n_frames;
    /* With no frames passed in: capture the calling thread's stack (true), or follow the
     * client's stack_traces option (false). skip_frames drops that many innermost frames
     * of the capture (the caller's own error-reporting helpers). */
    bool capture_stack;
    bool no_stack; /* no stack at all, whatever the options say */
    uint32_t skip_frames;
    /* Explicit grouping: events with the same parts join the same issue (at most
     * TOCSIN_FINGERPRINT_MAX parts, each non-empty and at most TOCSIN_NAME_MAX bytes). */
    const char *const *fingerprint;
    size_t n_fingerprint;
    const char *mechanism; /* how it was caught: NULL means "manual" */
} tocsin_error_t;

/*
 * Records one error described by `err` (see tocsin_error_t).
 * Returns as tocsin_error; also TOCSIN_EINVAL for a NULL err, n_frames > 0 with frames
 * NULL, or a bad fingerprint (too many parts, a part NULL, empty or too long).
 */
int tocsin_error_ex(tocsin_t *self, const tocsin_error_t *err);

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
 * Records a heartbeat: a metric sample named "heartbeat", kind TOCSIN_COUNTER, value 1,
 * unit "". Alert rules on the absence of this series (per service and environment) catch
 * a service, a cron job or a pipeline stage that went silent. Returns as tocsin_metric.
 */
int tocsin_heartbeat(tocsin_t *self);

/*
 * Records one log line: `level`, `logger` (the component, e.g. "db.pool"; NULL: ""),
 * `message` (non-empty; cut at TOCSIN_MESSAGE_MAX) and `fields` (n_fields structured
 * key/value pairs, keys non-empty; fields past TOCSIN_FIELDS_MAX and values longer than
 * TOCSIN_NAME_MAX are cut and counted in events_truncated).
 * Returns TOCSIN_OK; TOCSIN_EINVAL (self or message NULL, message empty, unknown level,
 * fields NULL with n_fields > 0, a field with a NULL or empty key or a NULL value);
 * TOCSIN_ETOOBIG (logger or a field key longer than TOCSIN_NAME_MAX); TOCSIN_EFULL;
 * TOCSIN_ECLOSED.
 */
int tocsin_log(tocsin_t *self, tocsin_level_t level, const char *logger, const char *message,
               const tocsin_tag_t *fields, size_t n_fields);

/*
 * Records one log line formatted like printf (into a buffer on the caller's stack; the
 * text is cut at TOCSIN_MESSAGE_MAX). No fields. Returns as tocsin_log.
 */
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
int tocsin_logf(tocsin_t *self, tocsin_level_t level, const char *logger, const char *format, ...);

/*
 * Sends what is queued now, without waiting for the batch interval, and waits until every
 * event recorded before the call (and every crash report found by tocsin_new) has been
 * acknowledged STORED by a collector, or rejected (and counted), or dropped by
 * before_send, for at most `timeout_ms` (0: just check). This call blocks the caller; the
 * recording functions never do.
 * Returns TOCSIN_OK; TOCSIN_ETIMEDOUT (some events are still waiting: they stay queued and
 * keep being retried); TOCSIN_EINVAL (self NULL); TOCSIN_ECLOSED (tocsin_destroy has
 * begun).
 */
int tocsin_flush(tocsin_t *self, uint32_t timeout_ms);

/*
 * The client's counters since tocsin_new (in a forked child: since the fork). Each is
 * exact; they are read one by one, so a snapshot taken while events flow may mix moments a
 * few events apart.
 *   recorded            events taken into the queue
 *   dropped_queue_full  events dropped because the queue was full (TOCSIN_EFULL)
 *   dropped_oversize    events dropped because a name was too long (TOCSIN_ETOOBIG)
 *   batches_sent        batches handed to ZeroMQ for the first time
 *   batches_acked       batches acknowledged STORED
 *   batches_retried     resends: after an ack time-out or a collector's retry-after
 *   batches_rejected    batches the collector rejected (never retried)
 *   events_acked        events in batches acknowledged STORED (less any the collector
 *                       said it did not accept); crash reports included
 *   events_rejected     events in rejected batches, and events of a stored batch that the
 *                       collector said it did not accept
 *   events_truncated    recorded events of which something was cut to fit
 *   dropped_invalid     calls refused with TOCSIN_EINVAL or TOCSIN_ECLOSED
 *   acks_invalid        replies from collectors that were not a well-formed Ack
 *   sampled_out         events left out by the sample rates
 *   dropped_before_send events the before_send hook dropped
 *   crashes_found       crash reports tocsin_new found in crash_dir and queued
 *   crashes_sent        crash reports stored by a collector (their files are deleted)
 * dropped_queue_full, dropped_oversize, sampled_out, dropped_before_send, batches_retried
 * and events_rejected are also sent to the collectors, as deltas, in the ClientCounters of
 * the next batch; when there is no next event to carry them, the client sends a metric
 * event "tocsin.client.dropped" (see docs/client.md) within one batch interval.
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
    uint64_t sampled_out;
    uint64_t dropped_before_send;
    uint64_t crashes_found;
    uint64_t crashes_sent;
} tocsin_stats_t;

/* Fills *out with the counters of `self` (all zero when self is NULL). */
void tocsin_stats(tocsin_t *self, tocsin_stats_t *out);

/*
 * Gives the calling thread an alternate signal stack (64 KiB, freed when the thread exits)
 * unless it has one, so that the crash handler can run when this thread overflows its
 * stack. tocsin_new does it for the thread that calls it; call it early in other threads
 * whose stack overflows should be reported. Returns TOCSIN_OK, TOCSIN_ENOMEM or TOCSIN_EIO.
 */
int tocsin_crash_thread_init(void);

/* ------------------------------------------------------------------------------------ */
/* The calling thread's scope: picked up by every event the thread records afterwards, on
 * any client. Setting allocates the thread's scope once (freed when the thread exits); the
 * recording functions only copy it. */

/* Sets the request or trace id the thread carries (NULL or "" clears it).
 * Returns TOCSIN_OK; TOCSIN_ETOOBIG (longer than TOCSIN_NAME_MAX); TOCSIN_ENOMEM. */
int tocsin_scope_set_trace_id(const char *trace_id);

/* Sets the user the thread works for (NULL or "" clears it). Returns as above. */
int tocsin_scope_set_user(const char *user_id);

/* Sets tag `key` to `value` (NULL removes the tag). Returns TOCSIN_OK; TOCSIN_EINVAL (key
 * NULL or empty); TOCSIN_ETOOBIG (key or value longer than TOCSIN_NAME_MAX, or a
 * (TOCSIN_TAGS_MAX + 1)th tag); TOCSIN_ENOMEM. */
int tocsin_scope_set_tag(const char *key, const char *value);

/* The thread's current trace id, or "" (borrowed; valid until the scope changes). */
const char *tocsin_scope_trace_id(void);

/* Clears the thread's scope (trace id, user, tags). */
void tocsin_scope_clear(void);

/* ------------------------------------------------------------------------------------ */
/* Events in the before_send hook. Strings returned are borrowed and valid until the event
 * is changed or the hook returns; setters copy their arguments. */

/* What an event's string fields are; each kind has its own (others read as ""). */
typedef enum {
    TOCSIN_FIELD_TYPE = 1,       /* error */
    TOCSIN_FIELD_MESSAGE = 2,    /* error, log */
    TOCSIN_FIELD_ROUTE = 3,      /* request */
    TOCSIN_FIELD_METHOD = 4,     /* request */
    TOCSIN_FIELD_NAME = 5,       /* metric */
    TOCSIN_FIELD_UNIT = 6,       /* metric */
    TOCSIN_FIELD_LOGGER = 7,     /* log */
    TOCSIN_FIELD_TRACE_ID = 8,   /* any */
    TOCSIN_FIELD_USER_ID = 9,    /* any */
    TOCSIN_FIELD_MECHANISM = 10, /* error */
} tocsin_field_t;

tocsin_event_kind_t tocsin_event_kind(const tocsin_event_t *event);

/* Event time in microseconds since the epoch. */
int64_t tocsin_event_time_us(const tocsin_event_t *event);

/* String field `field` ("" when the kind has none). Never NULL. */
const char *tocsin_event_get(const tocsin_event_t *event, tocsin_field_t field);

/* Replaces string field `field` (NULL: ""). Returns TOCSIN_OK; TOCSIN_EINVAL (a field the
 * kind does not have, or emptying a route, metric name or log message); TOCSIN_ETOOBIG
 * (longer than TOCSIN_NAME_MAX, or TOCSIN_MESSAGE_MAX for messages, or the event's edit
 * space of 64 KiB is used up). */
int tocsin_event_set(tocsin_event_t *event, tocsin_field_t field, const char *value);

/* The value of tag `key`, or NULL when the event has no such tag. */
const char *tocsin_event_tag(const tocsin_event_t *event, const char *key);

/* Sets tag `key` (NULL value: removes it). Returns TOCSIN_OK; TOCSIN_EINVAL; TOCSIN_ETOOBIG
 * (too long, or more than 2 × TOCSIN_TAGS_MAX tags). */
int tocsin_event_set_tag(tocsin_event_t *event, const char *key, const char *value);

/* Log records: the value of field `key` (NULL when absent), and setting or removing one
 * (TOCSIN_EINVAL on another kind of event). */
const char *tocsin_event_log_field(const tocsin_event_t *event, const char *key);
int tocsin_event_set_log_field(tocsin_event_t *event, const char *key, const char *value);

/* Errors and logs: the level (0 for other kinds), and changing it. */
tocsin_level_t tocsin_event_level(const tocsin_event_t *event);
int tocsin_event_set_level(tocsin_event_t *event, tocsin_level_t level);

/* Errors: the number of frames, and frame i (symbolised) in *out (borrowed strings).
 * Returns TOCSIN_OK or TOCSIN_EINVAL (out of range). */
size_t tocsin_event_frame_count(const tocsin_event_t *event);
int tocsin_event_frame(const tocsin_event_t *event, size_t i, tocsin_frame_t *out);

#ifdef __cplusplus
}
#endif

#endif
