/*
 * tocsin.c — the public API of libtocsin and its background thread: the I/O edge that
 * wires the queue, the record format, the encoder, the in-flight table and the symbolizer
 * (pure or nearly pure modules) to ZeroMQ, the crash directory and fork().
 *
 * Threads. Recording threads touch only the queue (one compare-and-swap to claim slots,
 * one store to publish them), their own scope and random state, and, on the rare paths,
 * the drop counters. The background thread owns everything in `struct bg`: the sockets,
 * the encoder, the in-flight table, the symbolizer, the event being prepared. tocsin_flush
 * and tocsin_destroy talk to it through atomics, an eventfd that wakes it, and a
 * mutex/condition variable on which it publishes progress.
 *
 * Sockets. One DEALER per collector endpoint, all connected from the start, rather than one
 * DEALER reconnected on failover: an Ack that a slow collector sends after the client moved
 * on is still received (and spares a duplicate resend), ZeroMQ keeps reconnecting to a dead
 * collector in the background so the client can come back to it, and failing over costs
 * nothing. ZMQ_IMMEDIATE makes a send to an endpoint with no live connection fail at once,
 * which is how a dead collector is noticed without waiting for an ack time-out.
 *
 * Wake-ups. Recording never wakes the background thread (that would be a system call).
 * The thread polls its sockets with a time-out no longer than the batch interval, shorter
 * when a deadline is nearer, and shorter still when events arrive fast enough to fill a
 * quarter of the queue before the next wake-up.
 *
 * fork(). pthread_atfork handlers keep every client's mutexes consistent across fork() and,
 * in the child, empty each queue and mark the client as forked. The first call on a forked
 * client restarts it: the background state inherited from the parent (which the parent's
 * thread may have been changing at the instant of fork) is set aside untouched, and fresh
 * sockets, encoder, in-flight table and thread are created.
 */
#include "tocsin.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "tocsin_batch.h"
#include "tocsin_crash.h"
#include "tocsin_event.h"
#include "tocsin_inflight.h"
#include "tocsin_queue.h"
#include "tocsin_record.h"
#include "tocsin_rng.h"
#include "tocsin_scope.h"
#include "tocsin_stack.h"

#ifndef TOCSIN_VERSION
#define TOCSIN_VERSION "0.0.0"
#endif

#define DEFAULT_ENVIRONMENT "production"
#define DEFAULT_COLLECTORS "tcp://127.0.0.1:7420"
#define API_KEY_MAX 1024
#define ENDPOINT_MAX 255
#define CRASH_DIR_MAX 200
#define CRASH_FILES_MAX 32 /* crash reports queued by one tocsin_new */

/* Delivery constants that are not options (yet). */
#define BACKOFF_BASE_MS 100      /* first back-off after an ack time-out */
#define BACKOFF_MAX_MS 10000     /* longest back-off */
#define REFUSED_RETRY_MS 100     /* wait after every collector refused a send */
#define RETRY_AFTER_MAX_MS 60000 /* cap on a collector's retry-after */
#define ACKS_PER_WAKE 1024       /* replies read per socket per wake-up, so none starves */
#define RECONNECT_IVL_MS 100
#define RECONNECT_IVL_MAX_MS 5000
#define OFFLINE_GIVE_UP_MS 250 /* destroy stops waiting when no collector connected this long */

/* The name of the metric event that carries drop counts when no other event would. */
#define DROPPED_METRIC "tocsin.client.dropped"

/* A crash report queued by tocsin_new: its file is deleted once a collector stored it. */
typedef struct {
    uint64_t pos; /* queue position of its record */
    char *path;
} crash_file_t;

/* Everything the background thread owns. In a forked child the inherited one is set aside
 * (kept reachable in `ghosts`, never freed: its state may be torn) and a fresh one made. */
typedef struct bg {
    void *zmq_ctx;
    void **sockets;
    zmq_pollitem_t *items; /* the sockets, then wake_fd */
    tocsin_encoder_t *encoder;
    tocsin_inflight_t *inflight;
    tocsin_symbolizer_t *symbolizer;
    tocsin_rng_t rng;
    tocsin_event_t *event; /* the event being prepared */
    char *arena;           /* its edit space */
    uint8_t *scratch;      /* a multi-slot record copied out of the ring */

    /* The batch under construction. */
    uint32_t pending_n;         /* queue events in it */
    uint64_t pending_first;     /* queue position of its first event */
    int64_t pending_started_ms; /* when its first event was taken from the queue */
    int64_t pending_first_us;   /* its first event's time */
    tocsin_loss_t reported;     /* loss totals already put in a batch */
    int64_t last_carrier_ms;

    uint64_t resolved_published;
    int64_t last_wake_us;
    char rejected_reason[256];
    bool rejected_logged;
    bool invalid_ack_logged;
    bool oversize_logged;
    uint64_t undelivered_batched; /* set when the thread ends */
    uint64_t undelivered_queued;
    struct bg *ghost_next;
} bg_t;

struct tocsin {
    /* Read by every recording thread; written only by tocsin_new, tocsin_destroy, fork. */
    tocsin_queue_t *queue;
    _Atomic bool closing;
    _Atomic bool forked;          /* a child that has not restarted the client yet */
    uint32_t max_slots;           /* slots one event may take */
    uint64_t sample_threshold[5]; /* per tocsin_event_kind_t; UINT64_MAX: keep all */
    float sample_rate[5];         /* 0 when 1 */
    bool capture_stacks;

    /* Written by recording threads on the rare paths only. */
    _Alignas(64) _Atomic uint64_t dropped_queue_full;
    _Atomic uint64_t dropped_oversize;
    _Atomic uint64_t dropped_invalid;
    _Atomic uint64_t events_truncated;
    _Atomic uint64_t sampled_out;
    _Atomic uint64_t extra_slots; /* slots beyond the first of multi-slot events */

    /* Written by the background thread only, read by tocsin_stats. */
    _Alignas(64) _Atomic uint64_t batches_sent;
    _Atomic uint64_t batches_acked;
    _Atomic uint64_t batches_retried;
    _Atomic uint64_t batches_rejected;
    _Atomic uint64_t events_acked;
    _Atomic uint64_t events_rejected;
    _Atomic uint64_t acks_invalid;
    _Atomic uint64_t dropped_before_send;
    _Atomic uint64_t crashes_sent;
    uint64_t crashes_found; /* set by tocsin_new */
    uint64_t base_pos;      /* queue position where this process's counting starts */

    /* Flush and shutdown handshake. */
    _Alignas(64) _Atomic uint64_t flush_target; /* send at once every event before this */
    _Atomic int64_t stop_deadline_ms;           /* set before `closing` */
    _Atomic int64_t stop_started_ms;
    pthread_mutex_t lock;
    pthread_cond_t progress; /* broadcast when `resolved` grows */
    uint64_t resolved;       /* under lock: every event before it is acked or rejected */
    pthread_mutex_t restart_lock;
    int wake_fd;

    /* Options and identity, copied. */
    tocsin_options_t opts; /* numbers resolved to their defaults; strings below */
    char *service;
    char *environment;
    char *release;
    char *host;
    char *api_key;
    char *curve_server;
    char *curve_public;
    char *curve_secret;
    char *in_app_include;
    char *in_app_exclude;
    char *crash_dir;
    tocsin_tag_t *tags;
    size_t n_tags;
    char **endpoints;
    uint32_t n_endpoints;
    char sdk[64];
    bool crash_installed;

    crash_file_t crash_files[CRASH_FILES_MAX];
    size_t n_crash_files;

    bg_t *bg;
    pthread_t thread;
    bool thread_started;
    struct tocsin *registry_next;
};

/* ---------------------------------------------------------------------------------- */
/* Small helpers. */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_ms(void)
{
    return mono_us() / 1000;
}

static int64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t counter_get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* A copy of `s` with malformed UTF-8 replaced, or NULL when out of memory. */
static char *copy_utf8(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len + 1);
    if (out) {
        bool cut = false;
        size_t n = tocsin_utf8_copy(out, len, s, len, &cut);
        out[n] = '\0';
    }
    return out;
}

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, written with one call so lines from threads do not interleave. */
static void log_line(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "libtocsin: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(buf) - 2) {
        len = sizeof(buf) - 2;
    }
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w; /* nothing sensible to do when stderr is gone */
}

const char *tocsin_strerror(int err)
{
    switch (err) {
    case TOCSIN_OK:
        return "success";
    case TOCSIN_EINVAL:
        return "invalid argument";
    case TOCSIN_ENOMEM:
        return "out of memory";
    case TOCSIN_EIO:
        return "system call failed";
    case TOCSIN_ETOOBIG:
        return "name too long: event dropped";
    case TOCSIN_ETIMEDOUT:
        return "timed out";
    case TOCSIN_EFULL:
        return "queue full: event dropped";
    case TOCSIN_ECLOSED:
        return "client is shutting down";
    case TOCSIN_EZMQ:
        return "ZeroMQ error";
    default:
        return "unknown error";
    }
}

const char *tocsin_version(void)
{
    return TOCSIN_VERSION;
}

/* ---------------------------------------------------------------------------------- */
/* Options. */

void tocsin_options_init(tocsin_options_t *opts)
{
    assert(opts);
    *opts = (tocsin_options_t){
        .service = NULL,
        .environment = DEFAULT_ENVIRONMENT,
        .release = NULL,
        .host = NULL,
        .collectors = DEFAULT_COLLECTORS,
        .api_key = NULL,
        .queue_capacity = 8192,
        .batch_max_events = 500,
        .batch_interval_ms = 50,
        .ack_timeout_ms = 2000,
        .max_inflight_batches = 16,
        .shutdown_timeout_ms = 2000,
        .before_send_kinds = TOCSIN_KINDS_ALL,
        .stack_traces = TOCSIN_STACKS_ON,
    };
}

/* Copies `in` with every NULL string and 0 number replaced by its default. */
static void options_resolve(const tocsin_options_t *in, tocsin_options_t *out)
{
    tocsin_options_t d;
    tocsin_options_init(&d);
    *out = *in;
#define DEFAULT(field)                                                                             \
    if (!out->field) {                                                                             \
        out->field = d.field;                                                                      \
    }
    DEFAULT(environment);
    DEFAULT(collectors);
    DEFAULT(queue_capacity);
    DEFAULT(batch_max_events);
    DEFAULT(batch_interval_ms);
    DEFAULT(ack_timeout_ms);
    DEFAULT(max_inflight_batches);
    DEFAULT(shutdown_timeout_ms);
    DEFAULT(before_send_kinds);
    DEFAULT(stack_traces);
#undef DEFAULT
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Finds the endpoint that starts at or after *p in a comma-separated list: sets *start and
 * *len to it (spaces trimmed) and moves *p past its comma. Returns false at the end. */
static bool endpoint_next(const char **p, const char **start, size_t *len)
{
    const char *s = *p;
    if (!s) {
        return false;
    }
    const char *comma = strchr(s, ',');
    const char *end = comma ? comma : s + strlen(s);
    while (s < end && is_space(*s)) {
        s++;
    }
    const char *e = end;
    while (e > s && is_space(e[-1])) {
        e--;
    }
    *start = s;
    *len = (size_t)(e - s);
    *p = comma ? comma + 1 : NULL;
    return true;
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len > n && strncmp(s, prefix, n) == 0;
}

/* A Z85-encoded CURVE key: 40 characters that decode to 32 bytes. */
static bool curve_key_ok(const char *key)
{
    if (strlen(key) != TOCSIN_CURVE_KEY_LEN) {
        return false;
    }
    uint8_t raw[32];
    return zmq_z85_decode(raw, key) != NULL;
}

static bool rate_ok(double r)
{
    return isfinite(r) && r >= 0 && r <= 1;
}

/* Checks already-resolved options; `reason` gets a static sentence. */
static int options_check(const tocsin_options_t *o, const char **reason)
{
    const char *why = NULL;
    if (!o->service || !o->service[0]) {
        why = "service is required";
    } else if (strlen(o->service) > TOCSIN_IDENTITY_MAX) {
        why = "service is longer than TOCSIN_IDENTITY_MAX bytes";
    } else if (!o->environment[0] || strlen(o->environment) > TOCSIN_IDENTITY_MAX) {
        why = "environment must be 1 to TOCSIN_IDENTITY_MAX bytes";
    } else if (o->release && strlen(o->release) > TOCSIN_IDENTITY_MAX) {
        why = "release is longer than TOCSIN_IDENTITY_MAX bytes";
    } else if (o->host && (!o->host[0] || strlen(o->host) > TOCSIN_IDENTITY_MAX)) {
        why = "host must be 1 to TOCSIN_IDENTITY_MAX bytes";
    } else if (o->api_key && strlen(o->api_key) > API_KEY_MAX) {
        why = "api_key is longer than 1024 bytes";
    } else if (o->queue_capacity > 1048576) {
        why = "queue_capacity must be 1 to 1048576";
    } else if (o->batch_max_events > 10000) {
        why = "batch_max_events must be 1 to 10000";
    } else if (o->batch_interval_ms > 60000) {
        why = "batch_interval_ms must be 1 to 60000";
    } else if (o->ack_timeout_ms > 600000) {
        why = "ack_timeout_ms must be 1 to 600000";
    } else if (o->max_inflight_batches > 1024) {
        why = "max_inflight_batches must be 1 to 1024";
    } else if (o->shutdown_timeout_ms > 600000) {
        why = "shutdown_timeout_ms must be 1 to 600000";
    } else if (o->curve_server_key && !curve_key_ok(o->curve_server_key)) {
        why = "curve_server_key is not a 40-character Z85 key";
    } else if ((o->curve_public_key != NULL) != (o->curve_secret_key != NULL)) {
        why = "curve_public_key and curve_secret_key go together";
    } else if (o->curve_public_key && !o->curve_server_key) {
        why = "a client key pair needs curve_server_key";
    } else if (o->curve_public_key &&
               (!curve_key_ok(o->curve_public_key) || !curve_key_ok(o->curve_secret_key))) {
        why = "curve_public_key/curve_secret_key is not a 40-character Z85 key";
    } else if (o->n_tags > TOCSIN_TAGS_MAX || (o->n_tags > 0 && !o->tags)) {
        why = "tags: at most TOCSIN_TAGS_MAX, and not NULL when n_tags > 0";
    } else if (!rate_ok(o->sample_rate_errors) || !rate_ok(o->sample_rate_requests) ||
               !rate_ok(o->sample_rate_metrics) || !rate_ok(o->sample_rate_logs)) {
        why = "a sample rate is not in [0, 1] (0 means 1)";
    } else if (o->before_send_kinds & ~(uint32_t)TOCSIN_KINDS_ALL) {
        why = "before_send_kinds has unknown bits";
    } else if (o->stack_traces < TOCSIN_STACKS_DEFAULT || o->stack_traces > TOCSIN_STACKS_OFF) {
        why = "stack_traces must be TOCSIN_STACKS_DEFAULT, _ON or _OFF";
    } else if (o->crash_dir && (!o->crash_dir[0] || strlen(o->crash_dir) > CRASH_DIR_MAX)) {
        why = "crash_dir must be 1 to 200 bytes";
    } else {
        for (size_t i = 0; !why && i < o->n_tags; i++) {
            const tocsin_tag_t *t = &o->tags[i];
            if (!t->key || !t->key[0] || !t->value) {
                why = "a tag has a NULL or empty key, or a NULL value";
            } else if (strlen(t->key) > TOCSIN_NAME_MAX || strlen(t->value) > TOCSIN_NAME_MAX) {
                why = "a tag key or value is longer than TOCSIN_NAME_MAX bytes";
            }
        }
        const char *p = o->collectors, *s;
        size_t len, n = 0;
        while (!why && endpoint_next(&p, &s, &len)) {
            n++;
            if (len == 0) {
                why = "collectors has an empty endpoint";
            } else if (len > ENDPOINT_MAX) {
                why = "a collector endpoint is longer than 255 bytes";
            } else if (!has_prefix(s, len, "tcp://") && !has_prefix(s, len, "ipc://")) {
                why = "a collector endpoint is not tcp://... or ipc://...";
            }
        }
        if (!why && n > TOCSIN_COLLECTORS_MAX) {
            why = "more than TOCSIN_COLLECTORS_MAX collector endpoints";
        }
    }
    if (reason) {
        *reason = why;
    }
    return why ? TOCSIN_EINVAL : TOCSIN_OK;
}

int tocsin_options_validate(const tocsin_options_t *opts, const char **reason)
{
    if (!opts) {
        if (reason) {
            *reason = "options are NULL";
        }
        return TOCSIN_EINVAL;
    }
    tocsin_options_t o;
    options_resolve(opts, &o);
    return options_check(&o, reason);
}

/* ---------------------------------------------------------------------------------- */
/* Recording: the hot path. No lock, no allocation, no system call. */

static void restart_after_fork(tocsin_t *self);

static int refuse_invalid(tocsin_t *self, int err)
{
    counter_add(&self->dropped_invalid, 1);
    return err;
}

static int refuse_oversize(tocsin_t *self)
{
    counter_add(&self->dropped_oversize, 1);
    return TOCSIN_ETOOBIG;
}

/* The checks every recording call starts with: the client is open, and in a forked child
 * it has been restarted. */
static int check_open(tocsin_t *self)
{
    if (atomic_load_explicit(&self->closing, memory_order_relaxed)) {
        return refuse_invalid(self, TOCSIN_ECLOSED);
    }
    if (__builtin_expect(atomic_load_explicit(&self->forked, memory_order_relaxed), 0)) {
        restart_after_fork(self);
    }
    return TOCSIN_OK;
}

/* Whether the sample rate of `kind` leaves this event out (counted). */
static bool sampled_out(tocsin_t *self, tocsin_event_kind_t kind)
{
    uint64_t threshold = self->sample_threshold[kind];
    if (threshold == UINT64_MAX || tocsin_thread_random() < threshold) {
        return false;
    }
    counter_add(&self->sampled_out, 1);
    return true;
}

/* A record being written. */
typedef struct {
    tocsin_writer_t w;
    tocsin_rhdr_t *h;
    uint64_t pos;
    uint32_t nslots;
} rec_t;

/* Claims the slots for a record of `size` bytes and fills its header. */
static int rec_begin(tocsin_t *self, rec_t *r, size_t size, tocsin_event_kind_t kind, uint8_t sub,
                     bool truncated)
{
    r->nslots = tocsin_record_slots(size);
    uint8_t *first = tocsin_queue_claim(self->queue, r->nslots, &r->pos);
    if (!first) {
        counter_add(&self->dropped_queue_full, 1);
        return TOCSIN_EFULL;
    }
    r->h = tocsin_writer_begin(&r->w, self->queue, r->pos, first);
    *r->h = (tocsin_rhdr_t){
        .time_us = realtime_us(),
        .len = (uint16_t)(size - sizeof(tocsin_rhdr_t)),
        .kind = (uint8_t)kind,
        .sub = sub,
        .flags = truncated ? TOCSIN_RECORD_TRUNCATED : 0,
        .nslots = (uint8_t)r->nslots,
        .sample_rate = self->sample_rate[kind],
    };
    return TOCSIN_OK;
}

static void rec_publish(tocsin_t *self, rec_t *r)
{
    bool truncated = r->h->flags & TOCSIN_RECORD_TRUNCATED;
    uint32_t nslots = r->nslots;
    tocsin_queue_publish(self->queue, r->pos); /* the slots are the consumer's from here on */
    if (nslots > 1) {
        counter_add(&self->extra_slots, nslots - 1);
    }
    if (truncated) {
        counter_add(&self->events_truncated, 1);
    }
}

/* Size of the calling thread's scope fields, and writing them. */
static size_t scope_size(const tocsin_scope_t *sc)
{
    return sc ? sc->len : 0;
}

static void scope_write(rec_t *r, const tocsin_scope_t *sc)
{
    if (sc && sc->len) {
        tocsin_writer_bytes(&r->w, sc->blob, sc->len);
    }
}

/* Bytes a record may take. */
static size_t record_budget(tocsin_t *self)
{
    return (size_t)self->max_slots * TOCSIN_SLOT_PAYLOAD;
}

int tocsin_request(tocsin_t *self, const char *route, const char *method, int status,
                   uint64_t duration_us)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    int rc = check_open(self);
    if (rc != 0) {
        return rc;
    }
    if (!route || !route[0] || status < 0 || status > 999) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    if (!method) {
        method = "";
    }
    size_t route_len = strnlen(route, TOCSIN_NAME_MAX + 1);
    size_t method_len = strnlen(method, TOCSIN_NAME_MAX + 1);
    if (route_len > TOCSIN_NAME_MAX || method_len > TOCSIN_NAME_MAX) {
        return refuse_oversize(self);
    }
    if (sampled_out(self, TOCSIN_EVENT_REQUEST)) {
        return TOCSIN_OK;
    }
    const tocsin_scope_t *sc = tocsin_scope_current();
    size_t size = sizeof(tocsin_rhdr_t) + tocsin_record_str_size(route_len) +
                  tocsin_record_str_size(method_len) + scope_size(sc);
    if (size > record_budget(self)) {
        return refuse_oversize(self);
    }
    rec_t r;
    rc = rec_begin(self, &r, size, TOCSIN_EVENT_REQUEST, 0, false);
    if (rc != 0) {
        return rc;
    }
    r.h->status = (uint32_t)status;
    r.h->num.u64 = duration_us;
    tocsin_writer_str(&r.w, TOCSIN_FIELD_ROUTE, route, route_len);
    tocsin_writer_str(&r.w, TOCSIN_FIELD_METHOD, method, method_len);
    scope_write(&r, sc);
    rec_publish(self, &r);
    return TOCSIN_OK;
}

int tocsin_metric(tocsin_t *self, const char *name, tocsin_metric_kind_t kind, double value,
                  const char *unit)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    int rc = check_open(self);
    if (rc != 0) {
        return rc;
    }
    if (!name || !name[0] || kind < TOCSIN_COUNTER || kind > TOCSIN_TIMING || !isfinite(value) ||
        (kind == TOCSIN_TIMING && value < 0)) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    if (!unit) {
        unit = "";
    }
    size_t name_len = strnlen(name, TOCSIN_NAME_MAX + 1);
    size_t unit_len = strnlen(unit, TOCSIN_NAME_MAX + 1);
    if (name_len > TOCSIN_NAME_MAX || unit_len > TOCSIN_NAME_MAX) {
        return refuse_oversize(self);
    }
    if (sampled_out(self, TOCSIN_EVENT_METRIC)) {
        return TOCSIN_OK;
    }
    const tocsin_scope_t *sc = tocsin_scope_current();
    size_t size = sizeof(tocsin_rhdr_t) + tocsin_record_str_size(name_len) +
                  tocsin_record_str_size(unit_len) + scope_size(sc);
    if (size > record_budget(self)) {
        return refuse_oversize(self);
    }
    rec_t r;
    rc = rec_begin(self, &r, size, TOCSIN_EVENT_METRIC, (uint8_t)kind, false);
    if (rc != 0) {
        return rc;
    }
    r.h->num.f64 = value;
    tocsin_writer_str(&r.w, TOCSIN_FIELD_NAME, name, name_len);
    tocsin_writer_str(&r.w, TOCSIN_FIELD_UNIT, unit, unit_len);
    scope_write(&r, sc);
    rec_publish(self, &r);
    return TOCSIN_OK;
}

int tocsin_heartbeat(tocsin_t *self)
{
    return tocsin_metric(self, "heartbeat", TOCSIN_COUNTER, 1, NULL);
}

/* Bytes of a frame passed in, with each string cut to TOCSIN_NAME_MAX. */
static size_t cut_len(const char *s, bool *cut)
{
    if (!s) {
        return 0;
    }
    size_t n = strnlen(s, TOCSIN_NAME_MAX + 1);
    if (n > TOCSIN_NAME_MAX) {
        *cut = true;
        return tocsin_utf8_cut(s, n, TOCSIN_NAME_MAX);
    }
    return n;
}

static size_t frame_size(const tocsin_frame_t *f, size_t lens[3], bool *cut)
{
    lens[0] = cut_len(f->function, cut);
    lens[1] = cut_len(f->module, cut);
    lens[2] = cut_len(f->file, cut);
    return TOCSIN_FIELD_HDR + 8 + 4 + 1 + lens[0] + lens[1] + lens[2] + 3;
}

static void frame_write(rec_t *r, const tocsin_frame_t *f, const size_t lens[3])
{
    static const uint8_t nul = 0;
    tocsin_writer_field(&r->w, TOCSIN_R_FRAME, 8 + 4 + 1 + lens[0] + lens[1] + lens[2] + 3);
    uint64_t addr = f->instruction_addr;
    uint32_t line = f->line;
    uint8_t in_app = f->in_app ? 1 : 0;
    tocsin_writer_bytes(&r->w, &addr, 8);
    tocsin_writer_bytes(&r->w, &line, 4);
    tocsin_writer_bytes(&r->w, &in_app, 1);
    const char *s[3] = {f->function, f->module, f->file};
    for (int i = 0; i < 3; i++) {
        tocsin_writer_utf8(&r->w, s[i] ? s[i] : "", lens[i]);
        tocsin_writer_bytes(&r->w, &nul, 1);
    }
}

/* Records an error; `caller` is the return address of the public function called. */
static int record_error(tocsin_t *self, const tocsin_error_t *err, const void *caller)
{
    int rc = check_open(self);
    if (rc != 0) {
        return rc;
    }
    const char *type = err->type ? err->type : "";
    const char *message = err->message ? err->message : "";
    tocsin_level_t level = err->level ? err->level : TOCSIN_LEVEL_ERROR;
    if ((!type[0] && !message[0]) || level < TOCSIN_LEVEL_TRACE || level > TOCSIN_LEVEL_FATAL ||
        (err->n_frames > 0 && !err->frames) || err->n_fingerprint > TOCSIN_FINGERPRINT_MAX ||
        (err->n_fingerprint > 0 && !err->fingerprint)) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    size_t fp_len[TOCSIN_FINGERPRINT_MAX];
    for (size_t i = 0; i < err->n_fingerprint; i++) {
        const char *part = err->fingerprint[i];
        if (!part || !part[0]) {
            return refuse_invalid(self, TOCSIN_EINVAL);
        }
        fp_len[i] = strnlen(part, TOCSIN_NAME_MAX + 1);
        if (fp_len[i] > TOCSIN_NAME_MAX) {
            return refuse_invalid(self, TOCSIN_EINVAL);
        }
    }
    size_t type_len = strnlen(type, TOCSIN_NAME_MAX + 1);
    const char *mechanism = err->mechanism;
    size_t mech_len = mechanism ? strnlen(mechanism, TOCSIN_NAME_MAX + 1) : 0;
    if (type_len > TOCSIN_NAME_MAX || mech_len > TOCSIN_NAME_MAX) {
        return refuse_oversize(self);
    }
    if (sampled_out(self, TOCSIN_EVENT_ERROR)) {
        return TOCSIN_OK;
    }
    bool truncated = false;
    size_t message_len = strnlen(message, TOCSIN_MESSAGE_MAX + 1);
    if (message_len > TOCSIN_MESSAGE_MAX) {
        message_len = tocsin_utf8_cut(message, message_len, TOCSIN_MESSAGE_MAX);
        truncated = true;
    }

    /* The stack: frames passed in, or program counters captured here. */
    uint64_t pcs[TOCSIN_FRAMES_MAX];
    size_t n_pcs = 0;
    bool want_stack =
        !err->no_stack && err->n_frames == 0 && (err->capture_stack || self->capture_stacks);
    if (want_stack) {
        bool more = false;
        n_pcs = tocsin_stack_capture(pcs, TOCSIN_FRAMES_MAX, caller, err->skip_frames, 2, &more);
        truncated = truncated || more;
    }

    const tocsin_scope_t *sc = tocsin_scope_current();
    size_t size = sizeof(tocsin_rhdr_t) + tocsin_record_str_size(type_len) + scope_size(sc);
    if (mechanism) {
        size += tocsin_record_str_size(mech_len);
    }
    for (size_t i = 0; i < err->n_fingerprint; i++) {
        size += tocsin_record_str_size(fp_len[i]);
    }
    size_t budget = record_budget(self);
    if (size + tocsin_record_str_size(0) > budget) {
        return refuse_oversize(self);
    }
    /* The message takes what is left, then the frames what is left after it. */
    size_t room = budget - size - tocsin_record_str_size(0);
    if (message_len > room) {
        message_len = tocsin_utf8_cut(message, message_len, room);
        truncated = true;
    }
    size += tocsin_record_str_size(message_len);
    size_t n_frames = err->n_frames;
    if (n_frames > TOCSIN_FRAMES_MAX) {
        n_frames = TOCSIN_FRAMES_MAX;
        truncated = true;
    }
    size_t frame_lens[TOCSIN_FRAMES_MAX][3];
    size_t frames_kept = 0;
    for (size_t i = 0; i < n_frames; i++) {
        size_t fs = frame_size(&err->frames[i], frame_lens[i], &truncated);
        if (size + fs > budget) {
            truncated = true;
            break;
        }
        size += fs;
        frames_kept++;
    }
    if (n_pcs > 0) {
        size_t fit = budget > size + TOCSIN_FIELD_HDR ? (budget - size - TOCSIN_FIELD_HDR) / 8 : 0;
        if (n_pcs > fit) {
            n_pcs = fit;
            truncated = true;
        }
        if (n_pcs > 0) {
            size += TOCSIN_FIELD_HDR + 8 * n_pcs;
        }
    }

    rec_t r;
    rc = rec_begin(self, &r, size, TOCSIN_EVENT_ERROR, (uint8_t)level, truncated);
    if (rc != 0) {
        return rc;
    }
    tocsin_writer_str(&r.w, TOCSIN_FIELD_TYPE, type, type_len);
    tocsin_writer_str(&r.w, TOCSIN_FIELD_MESSAGE, message, message_len);
    if (mechanism) {
        tocsin_writer_str(&r.w, TOCSIN_FIELD_MECHANISM, mechanism, mech_len);
    }
    for (size_t i = 0; i < err->n_fingerprint; i++) {
        tocsin_writer_str(&r.w, TOCSIN_R_FINGERPRINT, err->fingerprint[i], fp_len[i]);
    }
    scope_write(&r, sc);
    for (size_t i = 0; i < frames_kept; i++) {
        frame_write(&r, &err->frames[i], frame_lens[i]);
    }
    if (n_pcs > 0) {
        tocsin_writer_field(&r.w, TOCSIN_R_PCS, 8 * n_pcs);
        tocsin_writer_bytes(&r.w, pcs, 8 * n_pcs);
    }
    rec_publish(self, &r);
    return TOCSIN_OK;
}

int tocsin_error(tocsin_t *self, const char *type, const char *message, tocsin_level_t level)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (!level) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    tocsin_error_t err = {.type = type, .message = message, .level = level};
    return record_error(self, &err, __builtin_return_address(0));
}

int tocsin_error_ex(tocsin_t *self, const tocsin_error_t *err)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (!err) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    return record_error(self, err, __builtin_return_address(0));
}

int tocsin_log(tocsin_t *self, tocsin_level_t level, const char *logger, const char *message,
               const tocsin_tag_t *fields, size_t n_fields)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    int rc = check_open(self);
    if (rc != 0) {
        return rc;
    }
    if (!message || !message[0] || level < TOCSIN_LEVEL_TRACE || level > TOCSIN_LEVEL_FATAL ||
        (n_fields > 0 && !fields)) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    if (!logger) {
        logger = "";
    }
    size_t logger_len = strnlen(logger, TOCSIN_NAME_MAX + 1);
    if (logger_len > TOCSIN_NAME_MAX) {
        return refuse_oversize(self);
    }
    bool truncated = false;
    if (n_fields > TOCSIN_FIELDS_MAX) {
        n_fields = TOCSIN_FIELDS_MAX;
        truncated = true;
    }
    size_t klen[TOCSIN_FIELDS_MAX], vlen[TOCSIN_FIELDS_MAX];
    size_t fields_size = 0;
    for (size_t i = 0; i < n_fields; i++) {
        if (!fields[i].key || !fields[i].key[0] || !fields[i].value) {
            return refuse_invalid(self, TOCSIN_EINVAL);
        }
        klen[i] = strnlen(fields[i].key, TOCSIN_NAME_MAX + 1);
        if (klen[i] > TOCSIN_NAME_MAX) {
            return refuse_oversize(self);
        }
        vlen[i] = cut_len(fields[i].value, &truncated);
        fields_size += TOCSIN_FIELD_HDR + klen[i] + vlen[i] + 2;
    }
    if (sampled_out(self, TOCSIN_EVENT_LOG)) {
        return TOCSIN_OK;
    }
    size_t message_len = strnlen(message, TOCSIN_MESSAGE_MAX + 1);
    if (message_len > TOCSIN_MESSAGE_MAX) {
        message_len = tocsin_utf8_cut(message, message_len, TOCSIN_MESSAGE_MAX);
        truncated = true;
    }
    const tocsin_scope_t *sc = tocsin_scope_current();
    size_t size = sizeof(tocsin_rhdr_t) + tocsin_record_str_size(logger_len) + fields_size +
                  scope_size(sc) + tocsin_record_str_size(0);
    size_t budget = record_budget(self);
    if (size + 1 > budget) {
        return refuse_oversize(self);
    }
    if (size + message_len > budget) {
        message_len = tocsin_utf8_cut(message, message_len, budget - size);
        truncated = true;
    }
    size += message_len;
    rec_t r;
    rc = rec_begin(self, &r, size, TOCSIN_EVENT_LOG, (uint8_t)level, truncated);
    if (rc != 0) {
        return rc;
    }
    tocsin_writer_str(&r.w, TOCSIN_FIELD_MESSAGE, message, message_len);
    tocsin_writer_str(&r.w, TOCSIN_FIELD_LOGGER, logger, logger_len);
    for (size_t i = 0; i < n_fields; i++) {
        tocsin_writer_pair(&r.w, TOCSIN_R_FIELD, fields[i].key, klen[i], fields[i].value, vlen[i]);
    }
    scope_write(&r, sc);
    rec_publish(self, &r);
    return TOCSIN_OK;
}

int tocsin_logf(tocsin_t *self, tocsin_level_t level, const char *logger, const char *format, ...)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (!format) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    char buf[TOCSIN_MESSAGE_MAX + 1];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(buf, sizeof(buf), format, ap);
    va_end(ap);
    if (n < 0) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    return tocsin_log(self, level, logger, buf, NULL, 0);
}

/* ---------------------------------------------------------------------------------- */
/* The background thread. */

static void wake(tocsin_t *self)
{
    uint64_t one = 1;
    ssize_t w = write(self->wake_fd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, so the thread wakes anyway */
}

/* What became of the crash reports among the queue positions [first, end). */
static void crash_files_settled(tocsin_t *self, uint64_t first, uint64_t end, bool stored)
{
    for (size_t i = 0; i < self->n_crash_files; i++) {
        crash_file_t *cf = &self->crash_files[i];
        if (!cf->path || cf->pos < first || cf->pos >= end) {
            continue;
        }
        if (stored) {
            unlink(cf->path);
            counter_add(&self->crashes_sent, 1);
        } else {
            /* Kept for a person to look at, never sent again. */
            char dst[CRASH_DIR_MAX + 300];
            snprintf(dst, sizeof(dst), "%s.rejected", cf->path);
            rename(cf->path, dst);
        }
        free(cf->path);
        cf->path = NULL;
    }
}

static void on_ack(tocsin_t *self, const tocsin_ack_t *ack, uint32_t endpoint, int64_t now)
{
    bg_t *bg = self->bg;
    tocsin_acked_batch_t b = {0};
    tocsin_acked_t what = tocsin_inflight_ack(bg->inflight, ack, endpoint, now, &b);
    uint64_t n = b.events;
    switch (what) {
    case TOCSIN_ACKED_STORED:
        counter_add(&self->batches_acked, 1);
        if (ack->accepted == 0 || ack->accepted >= n) {
            counter_add(&self->events_acked, n);
        } else {
            counter_add(&self->events_acked, ack->accepted);
            counter_add(&self->events_rejected, n - ack->accepted);
        }
        crash_files_settled(self, b.first_pos, b.end_pos, true);
        break;
    case TOCSIN_ACKED_REJECTED:
        counter_add(&self->batches_rejected, 1);
        counter_add(&self->events_rejected, n);
        crash_files_settled(self, b.first_pos, b.end_pos, false);
        /* Logged once per reason: a collector rejecting every batch for a bad key must not
         * fill the service's stderr. */
        if (!bg->rejected_logged || strcmp(bg->rejected_reason, ack->reason) != 0) {
            log_line("collector %s rejected batch %llu (%llu events), not retried: %s",
                     self->endpoints[endpoint], (unsigned long long)ack->sequence,
                     (unsigned long long)n, ack->reason[0] ? ack->reason : "(no reason)");
            memcpy(bg->rejected_reason, ack->reason, sizeof(bg->rejected_reason));
            bg->rejected_logged = true;
        }
        break;
    case TOCSIN_ACKED_RETRY:
    case TOCSIN_ACKED_UNKNOWN:
        break;
    }
}

static void on_invalid_ack(tocsin_t *self, uint32_t endpoint)
{
    counter_add(&self->acks_invalid, 1);
    if (!self->bg->invalid_ack_logged) {
        log_line("collector %s sent a reply that is not a tocsin.v1.Ack; ignored (counted in "
                 "acks_invalid, logged once)",
                 self->endpoints[endpoint]);
        self->bg->invalid_ack_logged = true;
    }
}

/* Reads the replies waiting on every socket. */
static void take_acks(tocsin_t *self, int64_t now)
{
    bg_t *bg = self->bg;
    for (uint32_t i = 0; i < self->n_endpoints; i++) {
        for (int k = 0; k < ACKS_PER_WAKE; k++) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, bg->sockets[i], ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&msg);
                break;
            }
            bool multipart = zmq_msg_more(&msg);
            tocsin_ack_t ack;
            int rc = multipart ? TOCSIN_EINVAL
                               : tocsin_ack_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &ack);
            zmq_msg_close(&msg);
            /* An Ack is one frame; the rest of a longer message is read and discarded. */
            while (multipart) {
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, bg->sockets[i], ZMQ_DONTWAIT) < 0) {
                    multipart = false;
                } else {
                    multipart = zmq_msg_more(&msg);
                }
                zmq_msg_close(&msg);
            }
            if (rc != 0) {
                on_invalid_ack(self, i);
                continue;
            }
            on_ack(self, &ack, i, now);
        }
    }
}

/* Prepares the event at the head of the queue (decode, client tags, symbolise,
 * before_send) and appends it to the batch, then hands its slots back. Returns false when
 * there is no published event, or it could not be appended (no memory: it stays queued). */
static bool take_event(tocsin_t *self, int64_t now)
{
    bg_t *bg = self->bg;
    const uint8_t *first = tocsin_queue_peek(self->queue);
    if (!first) {
        return false;
    }
    uint64_t pos = tocsin_queue_head(self->queue);
    tocsin_rhdr_t h;
    memcpy(&h, first, sizeof(h));
    assert(h.nslots >= 1 && h.nslots <= self->max_slots);
    size_t size = sizeof(h) + h.len;
    const uint8_t *buf = first;
    if (h.nslots > 1) {
        tocsin_queue_copy(self->queue, bg->scratch, size);
        buf = bg->scratch;
    }
    tocsin_event_t *ev = bg->event;
    tocsin_event_reset(ev, bg->arena);
    for (size_t i = 0; i < self->n_tags; i++) {
        tocsin_event_put_tag(ev, self->tags[i].key, self->tags[i].value);
    }
    bool keep = tocsin_record_decode(buf, size, ev) == 0;
    assert(keep); /* records are written by this library only */
    if (keep && ev->n_pcs > 0) {
        tocsin_symbolize_live(bg->symbolizer, ev);
    }
    if (keep && ev->n_crash_frames > 0) {
        tocsin_symbolize_crash(bg->symbolizer, ev);
    }
    if (keep && self->opts.before_send &&
        (self->opts.before_send_kinds & TOCSIN_KIND_BIT(ev->kind))) {
        keep = self->opts.before_send(ev, self->opts.before_send_data);
        if (!keep) {
            counter_add(&self->dropped_before_send, 1);
            if (ev->crash) {
                crash_files_settled(self, pos, pos + 1, true);
            }
        }
    }
    if (keep) {
        uint8_t id[16];
        tocsin_rng_fill(&bg->rng, id, sizeof(id));
        int rc = tocsin_encoder_add(bg->encoder, ev, id);
        if (rc == TOCSIN_ENOMEM) {
            return false;
        }
        if (rc != 0) {
            counter_add(&self->dropped_oversize, 1);
            if (!bg->oversize_logged) {
                log_line("an event encoded to more than %d bytes and was dropped (counted in "
                         "dropped_oversize, logged once)",
                         TOCSIN_EVENT_RESERVE);
                bg->oversize_logged = true;
            }
        } else {
            if (bg->pending_n == 0) {
                bg->pending_first = pos;
                bg->pending_started_ms = now;
                bg->pending_first_us = ev->time_us;
            }
            bg->pending_n++;
        }
    }
    tocsin_queue_pop(self->queue, h.nslots);
    return true;
}

/* Moves published events from the queue into the batch under construction while it has
 * room. Returns how many it moved. */
static uint32_t fill_pending(tocsin_t *self, int64_t now)
{
    bg_t *bg = self->bg;
    uint32_t moved = 0;
    /* One place of a batch stays free for the carrier of drop counts. */
    uint32_t max = self->opts.batch_max_events > 1 ? self->opts.batch_max_events - 1 : 1;
    while (bg->pending_n < max && tocsin_encoder_has_room(bg->encoder)) {
        if (!take_event(self, now)) {
            break;
        }
        moved++;
    }
    return moved;
}

/* Totals of the figures reported to collectors in ClientCounters. */
static tocsin_loss_t loss_totals(tocsin_t *self)
{
    return (tocsin_loss_t){
        .dropped_queue_full = counter_get(&self->dropped_queue_full),
        .dropped_oversize = counter_get(&self->dropped_oversize),
        .sampled_out = counter_get(&self->sampled_out),
        .retried = counter_get(&self->batches_retried),
        .rejected = counter_get(&self->events_rejected),
        .dropped_before_send = counter_get(&self->dropped_before_send),
    };
}

/* Events lost since the last batch (not counting those left out on purpose by sampling). */
static uint64_t new_drops(tocsin_t *self, const tocsin_loss_t *totals)
{
    const tocsin_loss_t *r = &self->bg->reported;
    return (totals->dropped_queue_full - r->dropped_queue_full) +
           (totals->dropped_oversize - r->dropped_oversize) +
           (totals->dropped_before_send - r->dropped_before_send);
}

/* Milliseconds until the batch under construction is due (0: due now). */
static int64_t pending_wait_ms(tocsin_t *self, int64_t now, bool closing)
{
    bg_t *bg = self->bg;
    if (bg->pending_n == 0) {
        return INT64_MAX;
    }
    uint64_t flush_target = atomic_load_explicit(&self->flush_target, memory_order_acquire);
    uint32_t max = self->opts.batch_max_events > 1 ? self->opts.batch_max_events - 1 : 1;
    if (closing || bg->pending_n >= max || !tocsin_encoder_has_room(bg->encoder) ||
        flush_target > bg->pending_first) {
        return 0;
    }
    int64_t interval = self->opts.batch_interval_ms;
    /* The oldest event's age counts from when it was recorded (wall clock), and at the
     * latest from when this thread took it (monotonic clock, immune to clock steps). */
    int64_t by_mono = bg->pending_started_ms + interval - now;
    int64_t age_ms = (realtime_us() - bg->pending_first_us) / 1000;
    int64_t by_wall = age_ms < 0 ? by_mono : interval - age_ms;
    int64_t wait = by_mono < by_wall ? by_mono : by_wall;
    return wait < 0 ? 0 : wait;
}

/* When drops happened and no queued event will carry their count soon, a batch of just the
 * carrier metric is due (at most one per batch interval). Milliseconds until then. */
static int64_t carrier_wait_ms(tocsin_t *self, int64_t now)
{
    bg_t *bg = self->bg;
    if (bg->pending_n > 0 || tocsin_queue_peek(self->queue)) {
        return INT64_MAX;
    }
    tocsin_loss_t totals = loss_totals(self);
    if (new_drops(self, &totals) == 0) {
        return INT64_MAX;
    }
    int64_t wait = bg->last_carrier_ms + self->opts.batch_interval_ms - now;
    return wait < 0 ? 0 : wait;
}

/* Adds the metric event that makes drops visible as a series of the service. */
static void add_carrier(tocsin_t *self, const tocsin_loss_t *delta, uint64_t drops)
{
    bg_t *bg = self->bg;
    tocsin_event_t *ev = bg->event;
    tocsin_event_reset(ev, bg->arena);
    ev->kind = TOCSIN_EVENT_METRIC;
    ev->sub = TOCSIN_COUNTER;
    ev->time_us = realtime_us();
    ev->value = (double)drops;
    ev->str[TOCSIN_FIELD_NAME] = DROPPED_METRIC;
    ev->str[TOCSIN_FIELD_UNIT] = "events";
    char num[3][24];
    snprintf(num[0], sizeof(num[0]), "%llu", (unsigned long long)delta->dropped_queue_full);
    snprintf(num[1], sizeof(num[1]), "%llu", (unsigned long long)delta->dropped_oversize);
    snprintf(num[2], sizeof(num[2]), "%llu", (unsigned long long)delta->dropped_before_send);
    tocsin_event_put_tag(ev, "queue_full", tocsin_event_strdup(ev, num[0], strlen(num[0])));
    tocsin_event_put_tag(ev, "oversize", tocsin_event_strdup(ev, num[1], strlen(num[1])));
    tocsin_event_put_tag(ev, "before_send", tocsin_event_strdup(ev, num[2], strlen(num[2])));
    uint8_t id[16];
    tocsin_rng_fill(&bg->rng, id, sizeof(id));
    tocsin_encoder_add(bg->encoder, ev, id); /* on failure the counters still go */
}

/* Encodes the batch under construction and hands it to the in-flight table. */
static int seal_batch(tocsin_t *self, int64_t now)
{
    bg_t *bg = self->bg;
    tocsin_loss_t totals = loss_totals(self);
    tocsin_loss_t delta = {
        .dropped_queue_full = totals.dropped_queue_full - bg->reported.dropped_queue_full,
        .dropped_oversize = totals.dropped_oversize - bg->reported.dropped_oversize,
        .sampled_out = totals.sampled_out - bg->reported.sampled_out,
        .retried = totals.retried - bg->reported.retried,
        .rejected = totals.rejected - bg->reported.rejected,
        .dropped_before_send = totals.dropped_before_send - bg->reported.dropped_before_send,
    };
    uint64_t drops = new_drops(self, &totals);
    /* The carrier takes the batch's last place; with batch_max_events 1 and an event in
     * the batch, it waits for a batch of its own and its counts wait with it. */
    bool carry = drops > 0 && tocsin_encoder_events(bg->encoder) < self->opts.batch_max_events;
    if (carry) {
        add_carrier(self, &delta, drops);
        bg->last_carrier_ms = now;
    } else {
        delta.dropped_queue_full = delta.dropped_oversize = delta.dropped_before_send = 0;
        totals.dropped_queue_full = bg->reported.dropped_queue_full;
        totals.dropped_oversize = bg->reported.dropped_oversize;
        totals.dropped_before_send = bg->reported.dropped_before_send;
    }
    if (tocsin_encoder_events(bg->encoder) == 0) {
        return 0; /* nothing to send (the collector refuses empty batches) */
    }
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t sequence = 0;
    int rc = tocsin_encoder_seal(bg->encoder, &delta, &data, &len, &sequence);
    if (rc != 0) {
        return rc;
    }
    uint64_t first = bg->pending_n ? bg->pending_first : tocsin_queue_head(self->queue);
    rc = tocsin_inflight_add(bg->inflight, sequence, data, len, first,
                             tocsin_queue_head(self->queue), bg->pending_n, now);
    assert(rc == 0); /* callers seal only when the table has room */
    /* the in-flight table owns data now */
    bg->reported = totals;
    bg->pending_n = 0;
    return 0;
}

/* Drains the queue into batches while the in-flight table has room. Returns the events
 * taken from the queue. */
static uint32_t build_batches(tocsin_t *self, int64_t now, bool closing)
{
    bg_t *bg = self->bg;
    uint32_t moved = 0;
    while (!tocsin_inflight_full(bg->inflight)) {
        moved += fill_pending(self, now);
        bool due = pending_wait_ms(self, now, closing) == 0 || carrier_wait_ms(self, now) == 0;
        if (!due) {
            break;
        }
        if (seal_batch(self, now) != 0 || bg->pending_n > 0) {
            break; /* out of memory: the events stay pending; try again on the next wake */
        }
        if (!tocsin_queue_peek(self->queue)) {
            break;
        }
    }
    return moved;
}

/* Hands every due batch to ZeroMQ, failing over where it refuses. */
static void send_due(tocsin_t *self, int64_t now)
{
    bg_t *bg = self->bg;
    tocsin_inflight_entry_t *e;
    while ((e = tocsin_inflight_next_send(bg->inflight, now)) != NULL) {
        if (zmq_send(bg->sockets[e->endpoint], e->data, e->len, ZMQ_DONTWAIT) >= 0) {
            bool resend = tocsin_inflight_sent(bg->inflight, e, now);
            counter_add(resend ? &self->batches_retried : &self->batches_sent, 1);
        } else {
            tocsin_inflight_refused(bg->inflight, e, now);
        }
    }
}

/* Every event before the returned position is acked, rejected or dropped. */
static uint64_t resolved_position(tocsin_t *self)
{
    bg_t *bg = self->bg;
    uint64_t pos = bg->pending_n ? bg->pending_first : tocsin_queue_head(self->queue);
    uint64_t oldest = tocsin_inflight_oldest_pos(bg->inflight);
    return oldest < pos ? oldest : pos;
}

static void publish_progress(tocsin_t *self)
{
    bg_t *bg = self->bg;
    uint64_t pos = resolved_position(self);
    if (pos != bg->resolved_published) {
        pthread_mutex_lock(&self->lock);
        self->resolved = pos;
        pthread_cond_broadcast(&self->progress);
        pthread_mutex_unlock(&self->lock);
        bg->resolved_published = pos;
    }
}

static bool all_done(tocsin_t *self)
{
    bg_t *bg = self->bg;
    return bg->pending_n == 0 && tocsin_inflight_count(bg->inflight) == 0 &&
           tocsin_queue_head(self->queue) == tocsin_queue_tail(self->queue);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* How long to sleep in zmq_poll: until the next deadline, never longer than the batch
 * interval (recording does not wake this thread), and short enough under load that the
 * queue fills by at most a quarter in between. */
static long poll_timeout_ms(tocsin_t *self, int64_t now, bool closing, uint32_t moved,
                            int64_t elapsed_us)
{
    bg_t *bg = self->bg;
    int64_t t = self->opts.batch_interval_ms;
    bool full = tocsin_inflight_full(bg->inflight);
    if (!full) {
        t = min64(t, pending_wait_ms(self, now, closing));
        t = min64(t, carrier_wait_ms(self, now));
        uint64_t flush_target = atomic_load_explicit(&self->flush_target, memory_order_acquire);
        if (flush_target > tocsin_queue_head(self->queue)) {
            t = min64(t, 1); /* a flush waits for events still being written */
        }
        if (moved > 0) {
            int64_t quarter = tocsin_queue_capacity(self->queue) / 4;
            int64_t fill_ms = (quarter * elapsed_us / (int64_t)moved) / 1000;
            t = min64(t, fill_ms);
        }
    }
    t = min64(t, tocsin_inflight_next_due(bg->inflight) - now);
    if (closing) {
        t = min64(t, atomic_load_explicit(&self->stop_deadline_ms, memory_order_relaxed) - now);
    }
    /* At least 1 ms, so that a condition that cannot progress (no memory) never spins. */
    return t < 1 ? 1 : (long)t;
}

/* During shutdown: no collector has taken a connection for OFFLINE_GIVE_UP_MS. */
static bool offline_too_long(tocsin_t *self, int64_t now)
{
    int64_t since = tocsin_inflight_offline_since(self->bg->inflight);
    int64_t started = atomic_load_explicit(&self->stop_started_ms, memory_order_relaxed);
    int64_t from = since > started ? since : started;
    return since != INT64_MAX && now - from >= OFFLINE_GIVE_UP_MS &&
           now - started >= OFFLINE_GIVE_UP_MS;
}

/* Events still in the queue when the thread stops (every producer is done by then). */
static uint64_t queued_events(tocsin_t *self)
{
    uint64_t n = 0;
    uint64_t pos = tocsin_queue_head(self->queue), tail = tocsin_queue_tail(self->queue);
    while (pos < tail) {
        const uint8_t *p = tocsin_queue_payload(self->queue, pos);
        tocsin_rhdr_t h;
        memcpy(&h, p, sizeof(h));
        n++;
        pos += h.nslots ? h.nslots : 1;
    }
    return n;
}

static void *run(void *arg)
{
    tocsin_t *self = arg;
    bg_t *bg = self->bg;
    pthread_setname_np(pthread_self(), "tocsin");
    tocsin_rng_seed_random(&bg->rng); /* the fallback seed is good enough for ids */
    uint32_t n_items = self->n_endpoints + 1;
    bg->last_wake_us = mono_us();
    for (;;) {
        int64_t wake_us = mono_us();
        int64_t elapsed_us = wake_us - bg->last_wake_us;
        bg->last_wake_us = wake_us;
        int64_t now = wake_us / 1000;

        take_acks(self, now);
        bool closing = atomic_load_explicit(&self->closing, memory_order_acquire);
        uint32_t moved = build_batches(self, now, closing);
        send_due(self, now);
        publish_progress(self);
        if (closing &&
            (all_done(self) ||
             now >= atomic_load_explicit(&self->stop_deadline_ms, memory_order_relaxed) ||
             offline_too_long(self, now))) {
            break;
        }

        long timeout = poll_timeout_ms(self, now, closing, moved, elapsed_us);
        int rc = zmq_poll(bg->items, (int)n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            /* Should not happen (the context is ours); sleep rather than spin. */
            struct timespec ts = {timeout / 1000, (timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else if (rc > 0 && (bg->items[n_items - 1].revents & ZMQ_POLLIN)) {
            uint64_t v;
            ssize_t r = read(self->wake_fd, &v, sizeof(v));
            (void)r;
        }
    }
    bg->undelivered_batched = bg->pending_n + tocsin_inflight_events(bg->inflight);
    bg->undelivered_queued = queued_events(self);
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle. */

static bg_t *ghosts; /* background states set aside in forked children (see fork()) */
static void reset_counters_after_fork(tocsin_t *self);

static void bg_free(bg_t *bg)
{
    if (!bg) {
        return;
    }
    if (bg->sockets) {
        for (uint32_t i = 0; bg->sockets[i]; i++) { /* NULL-terminated */
            zmq_close(bg->sockets[i]);
        }
        free(bg->sockets);
    }
    if (bg->zmq_ctx) {
        zmq_ctx_term(bg->zmq_ctx);
    }
    free(bg->items);
    tocsin_inflight_destroy(&bg->inflight);
    tocsin_encoder_destroy(&bg->encoder);
    tocsin_symbolizer_destroy(&bg->symbolizer);
    free(bg->event);
    free(bg->arena);
    free(bg->scratch);
    free(bg);
}

static int set_int(void *socket, int option, int value)
{
    return zmq_setsockopt(socket, option, &value, sizeof(value));
}

/* CURVE options on one socket: the server's key, and our key pair (given, or fresh). */
static int set_curve(tocsin_t *self, void *s, const char *pub, const char *sec)
{
    if (!self->curve_server) {
        return 0;
    }
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, self->curve_server, TOCSIN_CURVE_KEY_LEN + 1) ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, TOCSIN_CURVE_KEY_LEN + 1) ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, TOCSIN_CURVE_KEY_LEN + 1)) {
        return TOCSIN_EZMQ;
    }
    return 0;
}

/* One DEALER per endpoint. LINGER 0: destroy never waits on the network. IMMEDIATE: a send
 * to an endpoint with no live connection fails at once instead of queueing for a peer that
 * may never come. SNDHWM: room for every in-flight batch and a resend of each. MAXMSGSIZE:
 * a collector cannot make the client read more than an Ack's worth. */
static int open_sockets(tocsin_t *self, bg_t *bg)
{
    bg->zmq_ctx = zmq_ctx_new();
    if (!bg->zmq_ctx) {
        return TOCSIN_EZMQ;
    }
    zmq_ctx_set(bg->zmq_ctx, ZMQ_IO_THREADS, 1);
    zmq_ctx_set(bg->zmq_ctx, ZMQ_BLOCKY, 0);
    bg->sockets = calloc(self->n_endpoints + 1, sizeof(*bg->sockets));
    bg->items = calloc(self->n_endpoints + 1, sizeof(*bg->items));
    if (!bg->sockets || !bg->items) {
        return TOCSIN_ENOMEM;
    }
    char pub[TOCSIN_CURVE_KEY_LEN + 1], sec[TOCSIN_CURVE_KEY_LEN + 1];
    if (self->curve_server) {
        if (self->curve_public) {
            memcpy(pub, self->curve_public, sizeof(pub));
            memcpy(sec, self->curve_secret, sizeof(sec));
        } else if (zmq_curve_keypair(pub, sec) != 0) {
            return TOCSIN_EZMQ; /* libzmq built without CURVE */
        }
    }
    int hwm = (int)self->opts.max_inflight_batches * 2 + 2;
    int64_t max_msg = TOCSIN_ACK_MAX_BYTES;
    int rc = 0;
    for (uint32_t i = 0; i < self->n_endpoints && rc == 0; i++) {
        void *s = zmq_socket(bg->zmq_ctx, ZMQ_DEALER);
        if (!s) {
            return TOCSIN_EZMQ;
        }
        bg->sockets[i] = s;
        if (set_int(s, ZMQ_LINGER, 0) || set_int(s, ZMQ_IMMEDIATE, 1) ||
            set_int(s, ZMQ_SNDHWM, hwm) || set_int(s, ZMQ_RCVHWM, hwm + 1000) ||
            set_int(s, ZMQ_RECONNECT_IVL, RECONNECT_IVL_MS) ||
            set_int(s, ZMQ_RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS) ||
            zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof(max_msg)) ||
            set_curve(self, s, pub, sec) || zmq_connect(s, self->endpoints[i]) != 0) {
            rc = TOCSIN_EZMQ;
        }
        bg->items[i] = (zmq_pollitem_t){.socket = s, .events = ZMQ_POLLIN};
    }
    explicit_bzero(sec, sizeof(sec));
    bg->items[self->n_endpoints] = (zmq_pollitem_t){.fd = self->wake_fd, .events = ZMQ_POLLIN};
    return rc;
}

/* A fresh background state: encoder, in-flight table, symbolizer, buffers, sockets. */
static bg_t *bg_new(tocsin_t *self)
{
    bg_t *bg = calloc(1, sizeof(*bg));
    if (!bg) {
        return NULL;
    }
    tocsin_identity_t identity = {
        .service = self->service,
        .environment = self->environment,
        .release = self->release,
        .host = self->host,
        .api_key = self->api_key,
        .sdk = self->sdk,
    };
    bg->encoder = tocsin_encoder_new(&identity, TOCSIN_BATCH_MAX_BYTES, 1);
    tocsin_inflight_config_t config = {
        .max_batches = self->opts.max_inflight_batches,
        .n_endpoints = self->n_endpoints,
        .ack_timeout_ms = self->opts.ack_timeout_ms,
        .backoff_base_ms = BACKOFF_BASE_MS,
        .backoff_max_ms = BACKOFF_MAX_MS,
        .refused_retry_ms = REFUSED_RETRY_MS,
        .retry_after_max_ms = RETRY_AFTER_MAX_MS,
    };
    bg->inflight = tocsin_inflight_new(&config, &bg->rng);
    bg->symbolizer = tocsin_symbolizer_new(self->in_app_include, self->in_app_exclude);
    bg->event = malloc(sizeof(*bg->event));
    bg->arena = malloc(TOCSIN_EVENT_ARENA);
    bg->scratch = malloc(TOCSIN_RECORD_MAX);
    bg->last_carrier_ms = INT64_MIN / 2;
    if (!bg->encoder || !bg->inflight || !bg->symbolizer || !bg->event || !bg->arena ||
        !bg->scratch || open_sockets(self, bg) != 0) {
        bg_free(bg);
        return NULL;
    }
    return bg;
}

/* Starts the background thread, with every signal blocked in it and in ZeroMQ's I/O thread
 * (created with the first socket, so bg_new runs under the same mask). */
static int start_thread(tocsin_t *self)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    self->bg = bg_new(self);
    if (self->bg && pthread_create(&self->thread, NULL, run, self) == 0) {
        self->thread_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return self->thread_started ? 0 : TOCSIN_ENOMEM;
}

/* ---------------------------------------------------------------------------------- */
/* fork(). */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static tocsin_t *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (tocsin_t *c = registry; c; c = c->registry_next) {
        pthread_mutex_lock(&c->restart_lock);
        pthread_mutex_lock(&c->lock);
    }
}

static void atfork_parent(void)
{
    for (tocsin_t *c = registry; c; c = c->registry_next) {
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->restart_lock);
    }
    pthread_mutex_unlock(&registry_lock);
}

/* In the child only this thread exists: every client's queue is emptied (its events are
 * the parent's to send) and the client is marked for a restart on its first use. */
static void atfork_child(void)
{
    for (tocsin_t *c = registry; c; c = c->registry_next) {
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->restart_lock);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->progress, &attr);
        pthread_condattr_destroy(&attr);
        if (!atomic_load(&c->closing)) {
            tocsin_queue_reset_after_fork(c->queue);
            reset_counters_after_fork(c);
            atomic_store(&c->forked, true);
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static void atfork_register(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void registry_add(tocsin_t *self)
{
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&registry_lock);
    self->registry_next = registry;
    registry = self;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(tocsin_t *self)
{
    pthread_mutex_lock(&registry_lock);
    for (tocsin_t **p = &registry; *p; p = &(*p)->registry_next) {
        if (*p == self) {
            *p = self->registry_next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

/* Clears a forked child's counters: its own start from zero at the fork. */
static void reset_counters_after_fork(tocsin_t *self)
{
    _Atomic uint64_t *counters[] = {
        &self->dropped_queue_full, &self->dropped_oversize,    &self->dropped_invalid,
        &self->events_truncated,   &self->sampled_out,         &self->extra_slots,
        &self->batches_sent,       &self->batches_acked,       &self->batches_retried,
        &self->batches_rejected,   &self->events_acked,        &self->events_rejected,
        &self->acks_invalid,       &self->dropped_before_send, &self->crashes_sent,
    };
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        atomic_store(counters[i], 0);
    }
    self->crashes_found = 0;
    self->n_crash_files = 0; /* the parent deletes its crash files */
    self->base_pos = tocsin_queue_tail(self->queue);
    atomic_store(&self->flush_target, self->base_pos);
    self->resolved = self->base_pos;
}

/* Sets the inherited background state aside: reachable, never freed, because the parent's
 * thread may have been changing it at the instant of fork. */
static void set_aside_parent_state(tocsin_t *self)
{
    if (self->bg) {
        self->bg->ghost_next = ghosts;
        ghosts = self->bg;
        self->bg = NULL;
    }
    self->thread_started = false;
}

/* The first call on a client in a forked child: fresh sockets, state and thread. Threads
 * racing here wait for the one that restarts; if it fails, the client records into its
 * queue (and drops when full) without sending, and flush says so. */
static void restart_after_fork(tocsin_t *self)
{
    pthread_mutex_lock(&self->restart_lock);
    if (atomic_load(&self->forked)) {
        set_aside_parent_state(self);
        int old_fd = self->wake_fd;
        self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (old_fd >= 0) {
            close(old_fd); /* the child's copy only: the parent's stays open */
        }
        if (self->wake_fd >= 0 && start_thread(self) == 0) {
            atomic_store(&self->forked, false);
        } else {
            log_line("cannot restart the client in a forked child: nothing will be sent");
            atomic_store(&self->forked, false);
        }
    }
    pthread_mutex_unlock(&self->restart_lock);
}

/* ---------------------------------------------------------------------------------- */
/* Creation and destruction. */

static void client_free(tocsin_t *self)
{
    bg_free(self->bg);
    if (self->endpoints) {
        for (uint32_t i = 0; i < self->n_endpoints; i++) {
            free(self->endpoints[i]);
        }
        free(self->endpoints);
    }
    if (self->wake_fd >= 0) {
        close(self->wake_fd);
    }
    for (size_t i = 0; i < self->n_crash_files; i++) {
        free(self->crash_files[i].path);
    }
    pthread_cond_destroy(&self->progress);
    pthread_mutex_destroy(&self->lock);
    pthread_mutex_destroy(&self->restart_lock);
    tocsin_queue_destroy(&self->queue);
    if (self->tags) {
        for (size_t i = 0; i < self->n_tags; i++) {
            free((char *)self->tags[i].key);
            free((char *)self->tags[i].value);
        }
        free(self->tags);
    }
    char **strs[] = {&self->service,        &self->environment,  &self->release,
                     &self->host,           &self->api_key,      &self->curve_server,
                     &self->curve_public,   &self->curve_secret, &self->in_app_include,
                     &self->in_app_exclude, &self->crash_dir};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (*strs[i] == self->curve_secret && *strs[i]) {
            explicit_bzero(*strs[i], strlen(*strs[i]));
        }
        free(*strs[i]);
    }
    free(self);
}

static char *copy_opt(const char *s, bool *failed)
{
    if (!s) {
        return NULL;
    }
    char *c = copy_utf8(s);
    if (!c) {
        *failed = true;
    }
    return c;
}

/* Copies the identity strings, keys, tags, and splits the endpoints. */
static int copy_strings(tocsin_t *self, const tocsin_options_t *o)
{
    char hostname[TOCSIN_IDENTITY_MAX + 1] = "unknown";
    if (!o->host) {
        if (gethostname(hostname, sizeof(hostname)) != 0 || !hostname[0]) {
            strcpy(hostname, "unknown");
        }
        hostname[sizeof(hostname) - 1] = '\0';
    }
    bool failed = false;
    self->service = copy_opt(o->service, &failed);
    self->environment = copy_opt(o->environment, &failed);
    self->release = copy_opt(o->release ? o->release : "", &failed);
    self->host = copy_opt(o->host ? o->host : hostname, &failed);
    self->api_key = copy_opt(o->api_key ? o->api_key : "", &failed);
    self->curve_server = copy_opt(o->curve_server_key, &failed);
    self->curve_public = copy_opt(o->curve_public_key, &failed);
    self->curve_secret = copy_opt(o->curve_secret_key, &failed);
    self->in_app_include = copy_opt(o->in_app_include, &failed);
    self->in_app_exclude = copy_opt(o->in_app_exclude, &failed);
    self->crash_dir = copy_opt(o->crash_dir, &failed);
    if (failed) {
        return TOCSIN_ENOMEM;
    }
    if (o->n_tags > 0) {
        self->tags = calloc(o->n_tags, sizeof(*self->tags));
        if (!self->tags) {
            return TOCSIN_ENOMEM;
        }
        for (size_t i = 0; i < o->n_tags; i++) {
            self->tags[i].key = copy_opt(o->tags[i].key, &failed);
            self->tags[i].value = copy_opt(o->tags[i].value, &failed);
            self->n_tags++;
        }
        if (failed) {
            return TOCSIN_ENOMEM;
        }
    }
    const char *p = o->collectors, *s;
    size_t len;
    uint32_t n = 0;
    while (endpoint_next(&p, &s, &len)) {
        n++;
    }
    self->endpoints = calloc(n, sizeof(*self->endpoints));
    if (!self->endpoints) {
        return TOCSIN_ENOMEM;
    }
    p = o->collectors;
    while (endpoint_next(&p, &s, &len)) {
        char *e = strndup(s, len);
        if (!e) {
            return TOCSIN_ENOMEM;
        }
        self->endpoints[self->n_endpoints++] = e;
    }
    return 0;
}

static void set_sampling(tocsin_t *self, tocsin_event_kind_t kind, double rate)
{
    if (rate <= 0 || rate >= 1) {
        self->sample_threshold[kind] = UINT64_MAX;
        self->sample_rate[kind] = 0;
    } else {
        self->sample_threshold[kind] = (uint64_t)(rate * 18446744073709551616.0);
        self->sample_rate[kind] = (float)rate;
    }
}

/* Writes the crash report `c` into the queue as an error record of the crashed process. */
static int queue_crash(tocsin_t *self, const tocsin_crash_t *c, uint64_t *pos_out)
{
    const char *type = tocsin_crash_signal_name(c->signo);
    char message[256];
    snprintf(message, sizeof(message), "%s (signal %d, code %d) at address 0x%llx%s",
             tocsin_crash_signal_text(c->signo, c->code), c->signo, c->code,
             (unsigned long long)c->addr, c->complete ? "" : "; the crash report is incomplete");
    const char *ids[4] = {c->service, c->environment, c->release, c->host};
    size_t size = sizeof(tocsin_rhdr_t) + tocsin_record_str_size(strlen(type)) +
                  tocsin_record_str_size(strlen(message)) + tocsin_record_str_size(6) +
                  TOCSIN_FIELD_HDR + 16;
    for (int i = 0; i < 4; i++) {
        size += ids[i][0] ? tocsin_record_str_size(strlen(ids[i])) : 0;
    }
    size_t n_frames = 0;
    for (; n_frames < c->n_frames; n_frames++) {
        size_t fs = TOCSIN_FIELD_HDR + 32 + strlen(c->frames[n_frames].path) + 1;
        if (size + fs > record_budget(self)) {
            break;
        }
        size += fs;
    }
    rec_t r;
    int rc = rec_begin(self, &r, size, TOCSIN_EVENT_ERROR, TOCSIN_LEVEL_FATAL,
                       n_frames < c->n_frames || !c->complete);
    if (rc != 0) {
        /* Not a drop: the report stays on disk for a later start. */
        atomic_fetch_sub_explicit(&self->dropped_queue_full, 1, memory_order_relaxed);
        return rc;
    }
    r.h->time_us = c->time_us;
    r.h->flags |= TOCSIN_RECORD_CRASH;
    r.h->sample_rate = 0;
    tocsin_writer_str(&r.w, TOCSIN_FIELD_TYPE, type, strlen(type));
    tocsin_writer_str(&r.w, TOCSIN_FIELD_MESSAGE, message, strlen(message));
    tocsin_writer_str(&r.w, TOCSIN_FIELD_MECHANISM, "signal", 6);
    static const uint8_t id_fields[4] = {TOCSIN_R_SERVICE, TOCSIN_R_ENVIRONMENT, TOCSIN_R_RELEASE,
                                         TOCSIN_R_HOST};
    for (int i = 0; i < 4; i++) {
        if (ids[i][0]) {
            tocsin_writer_str(&r.w, id_fields[i], ids[i], strlen(ids[i]));
        }
    }
    tocsin_writer_field(&r.w, TOCSIN_R_EVENT_ID, 16);
    tocsin_writer_bytes(&r.w, c->event_id, 16);
    for (size_t i = 0; i < n_frames; i++) {
        const tocsin_crash_frame_rec_t *f = &c->frames[i];
        size_t plen = strlen(f->path);
        tocsin_writer_field(&r.w, TOCSIN_R_CRASH_FRAME, 32 + plen + 1);
        uint64_t nums[4] = {f->pc, f->map_start, f->map_offset, f->inode};
        tocsin_writer_bytes(&r.w, nums, sizeof(nums));
        tocsin_writer_utf8(&r.w, f->path, plen);
        tocsin_writer_bytes(&r.w, "", 1);
    }
    *pos_out = r.pos;
    rec_publish(self, &r);
    return 0;
}

/* Queues the crash reports found in crash_dir (at most CRASH_FILES_MAX, oldest names
 * first is not promised). A file that cannot be read as a report is renamed *.invalid. */
static void scan_crash_dir(tocsin_t *self)
{
    DIR *d = opendir(self->crash_dir);
    if (!d) {
        log_line("crash_dir %s cannot be read: %s", self->crash_dir, strerror(errno));
        return;
    }
    tocsin_crash_t *crash = malloc(sizeof(*crash)); /* large: not on the caller's stack */
    char *buf = malloc(TOCSIN_CRASH_FILE_MAX);
    struct dirent *de;
    while (buf && crash && self->n_crash_files < CRASH_FILES_MAX && (de = readdir(d)) != NULL) {
        size_t nlen = strlen(de->d_name);
        if (strncmp(de->d_name, "tocsin-crash-", 13) != 0 || nlen < 6 ||
            strcmp(de->d_name + nlen - 6, ".crash") != 0) {
            continue;
        }
        char path[CRASH_DIR_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", self->crash_dir, de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;
        }
        ssize_t got = 0, n;
        while (got < TOCSIN_CRASH_FILE_MAX &&
               (n = read(fd, buf + got, (size_t)(TOCSIN_CRASH_FILE_MAX - got))) > 0) {
            got += n;
        }
        close(fd);
        uint64_t pos = 0;
        if (tocsin_crash_parse(buf, (size_t)got, crash) != 0) {
            char dst[CRASH_DIR_MAX + 320];
            snprintf(dst, sizeof(dst), "%s.invalid", path);
            rename(path, dst);
            log_line("%s is not a crash report; renamed to %s", path, dst);
            continue;
        }
        if (queue_crash(self, crash, &pos) != 0) {
            break; /* the queue is too small now: sent by a later start */
        }
        char *copy = strdup(path);
        self->crash_files[self->n_crash_files++] = (crash_file_t){pos, copy};
        self->crashes_found++;
    }
    free(buf);
    free(crash);
    closedir(d);
}

tocsin_t *tocsin_new(const tocsin_options_t *opts)
{
    if (tocsin_options_validate(opts, NULL) != 0) {
        return NULL;
    }
    tocsin_t *self = NULL;
    if (posix_memalign((void **)&self, 64, sizeof(*self)) != 0) {
        return NULL;
    }
    memset(self, 0, sizeof(*self));
    self->wake_fd = -1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->progress, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&self->lock, NULL);
    pthread_mutex_init(&self->restart_lock, NULL);
    tocsin_options_t resolved;
    options_resolve(opts, &resolved);
    self->opts = resolved;
    /* The client keeps copies of the strings (made below), never the caller's pointers. */
    self->opts.service = self->opts.environment = self->opts.release = NULL;
    self->opts.host = self->opts.collectors = self->opts.api_key = NULL;
    self->opts.curve_server_key = self->opts.curve_public_key = NULL;
    self->opts.curve_secret_key = self->opts.in_app_include = NULL;
    self->opts.in_app_exclude = self->opts.crash_dir = NULL;
    self->opts.tags = NULL;
    self->opts.n_tags = 0;
    snprintf(self->sdk, sizeof(self->sdk), "libtocsin/%s", TOCSIN_VERSION);
    int rc = copy_strings(self, &resolved);
    if (rc == 0) {
        self->queue = tocsin_queue_new(resolved.queue_capacity);
        self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        rc = !self->queue ? TOCSIN_ENOMEM : self->wake_fd < 0 ? TOCSIN_EIO : 0;
    }
    if (rc != 0) {
        client_free(self);
        return NULL;
    }
    self->max_slots = resolved.queue_capacity < TOCSIN_EVENT_MAX_SLOTS ? resolved.queue_capacity
                                                                       : TOCSIN_EVENT_MAX_SLOTS;
    set_sampling(self, TOCSIN_EVENT_ERROR, resolved.sample_rate_errors);
    set_sampling(self, TOCSIN_EVENT_REQUEST, resolved.sample_rate_requests);
    set_sampling(self, TOCSIN_EVENT_METRIC, resolved.sample_rate_metrics);
    set_sampling(self, TOCSIN_EVENT_LOG, resolved.sample_rate_logs);
    self->capture_stacks = resolved.stack_traces != TOCSIN_STACKS_OFF;
    tocsin_stack_warm();
    if (self->crash_dir) {
        scan_crash_dir(self);
    }
    if (start_thread(self) != 0) {
        client_free(self);
        return NULL;
    }
    if (self->crash_dir) {
        if (tocsin_crash_install(self->crash_dir, self->service, self->environment, self->release,
                                 self->host) == 0) {
            self->crash_installed = true;
        } else {
            log_line("cannot install the crash handlers: crashes will not be reported");
        }
    }
    registry_add(self);
    return self;
}

void tocsin_destroy(tocsin_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tocsin_t *self = *self_p;
    registry_remove(self);
    if (atomic_load(&self->forked)) {
        if (tocsin_queue_tail(self->queue) == self->base_pos) {
            /* A forked child that never used the client: nothing to send, nothing to stop. */
            set_aside_parent_state(self);
        } else {
            restart_after_fork(self);
        }
    }
    if (self->thread_started) {
        int64_t now = mono_ms();
        atomic_store_explicit(&self->stop_started_ms, now, memory_order_relaxed);
        atomic_store_explicit(&self->stop_deadline_ms, now + self->opts.shutdown_timeout_ms,
                              memory_order_relaxed);
        atomic_store_explicit(&self->closing, true, memory_order_release);
        wake(self);
        pthread_join(self->thread, NULL);
        bg_t *bg = self->bg;
        if (bg->undelivered_batched + bg->undelivered_queued > 0) {
            log_line("shutdown: %llu events were not acknowledged by a collector within "
                     "shutdown_timeout_ms (%u ms) and are given up",
                     (unsigned long long)(bg->undelivered_batched + bg->undelivered_queued),
                     self->opts.shutdown_timeout_ms);
        }
    }
    if (self->crash_installed) {
        tocsin_crash_uninstall();
    }
    client_free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Flush and statistics. */

int tocsin_flush(tocsin_t *self, uint32_t timeout_ms)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (atomic_load(&self->closing)) {
        return TOCSIN_ECLOSED;
    }
    if (atomic_load(&self->forked)) {
        restart_after_fork(self);
    }
    if (!self->thread_started) {
        return TOCSIN_ECLOSED; /* a forked child whose restart failed */
    }
    uint64_t target = tocsin_queue_tail(self->queue);
    uint64_t cur = atomic_load_explicit(&self->flush_target, memory_order_relaxed);
    while (cur < target &&
           !atomic_compare_exchange_weak_explicit(&self->flush_target, &cur, target,
                                                  memory_order_release, memory_order_relaxed)) {
    }
    wake(self);

    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&self->lock);
    while (self->resolved < target) {
        if (pthread_cond_timedwait(&self->progress, &self->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    bool done = self->resolved >= target;
    pthread_mutex_unlock(&self->lock);
    return done ? TOCSIN_OK : TOCSIN_ETIMEDOUT;
}

void tocsin_stats(tocsin_t *self, tocsin_stats_t *out)
{
    assert(out);
    *out = (tocsin_stats_t){0};
    if (!self) {
        return;
    }
    uint64_t slots = tocsin_queue_tail(self->queue) - self->base_pos;
    out->recorded = slots - counter_get(&self->extra_slots) - self->crashes_found;
    out->dropped_queue_full = counter_get(&self->dropped_queue_full);
    out->dropped_oversize = counter_get(&self->dropped_oversize);
    out->batches_sent = counter_get(&self->batches_sent);
    out->batches_acked = counter_get(&self->batches_acked);
    out->batches_retried = counter_get(&self->batches_retried);
    out->batches_rejected = counter_get(&self->batches_rejected);
    out->events_acked = counter_get(&self->events_acked);
    out->events_rejected = counter_get(&self->events_rejected);
    out->events_truncated = counter_get(&self->events_truncated);
    out->dropped_invalid = counter_get(&self->dropped_invalid);
    out->acks_invalid = counter_get(&self->acks_invalid);
    out->sampled_out = counter_get(&self->sampled_out);
    out->dropped_before_send = counter_get(&self->dropped_before_send);
    out->crashes_found = self->crashes_found;
    out->crashes_sent = counter_get(&self->crashes_sent);
}
