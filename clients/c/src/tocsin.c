/*
 * tocsin.c — the public API of libtocsin and its background thread: the I/O edge that
 * wires the queue, the encoder and the in-flight table (all pure modules) to ZeroMQ.
 *
 * Threads. Recording threads touch only the queue (one compare-and-swap to claim a slot,
 * one store to publish it) and, on the rare paths, the drop counters. The background
 * thread owns everything else: the sockets, the batch under construction, the encoder,
 * the in-flight table and the random generator. tocsin_flush and tocsin_destroy talk to it
 * through atomics, an eventfd that wakes it, and a mutex/condition variable on which it
 * publishes progress.
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
 */
#include "tocsin.h"

#include <assert.h>
#include <errno.h>
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
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "tocsin_batch.h"
#include "tocsin_inflight.h"
#include "tocsin_queue.h"
#include "tocsin_record.h"
#include "tocsin_rng.h"

#ifndef TOCSIN_VERSION
#define TOCSIN_VERSION "0.0.0"
#endif

#define DEFAULT_ENVIRONMENT "production"
#define DEFAULT_COLLECTORS "tcp://127.0.0.1:7420"
#define API_KEY_MAX 1024
#define ENDPOINT_MAX 255

/* Delivery constants that are not options (yet). */
#define BACKOFF_BASE_MS 100      /* first back-off after an ack time-out */
#define BACKOFF_MAX_MS 10000     /* longest back-off */
#define REFUSED_RETRY_MS 100     /* wait after every collector refused a send */
#define RETRY_AFTER_MAX_MS 60000 /* cap on a collector's retry-after */
#define ACKS_PER_WAKE 1024       /* replies read per socket per wake-up, so none starves */
#define RECONNECT_IVL_MS 100
#define RECONNECT_IVL_MAX_MS 5000

struct tocsin {
    /* Read by every recording thread; written only by tocsin_new and tocsin_destroy. */
    tocsin_queue_t *queue;
    _Atomic bool closing;

    /* Written by recording threads on the rare paths only. */
    _Alignas(64) _Atomic uint64_t dropped_queue_full;
    _Atomic uint64_t dropped_oversize;
    _Atomic uint64_t dropped_invalid;
    _Atomic uint64_t events_truncated;

    /* Written by the background thread only, read by tocsin_stats. */
    _Alignas(64) _Atomic uint64_t batches_sent;
    _Atomic uint64_t batches_acked;
    _Atomic uint64_t batches_retried;
    _Atomic uint64_t batches_rejected;
    _Atomic uint64_t events_acked;
    _Atomic uint64_t events_rejected;
    _Atomic uint64_t acks_invalid;

    /* Flush and shutdown handshake. */
    _Alignas(64) _Atomic uint64_t flush_target; /* send at once every event before this */
    _Atomic int64_t stop_deadline_ms;           /* set before `closing` */
    pthread_mutex_t lock;
    pthread_cond_t progress; /* broadcast when `resolved` grows */
    uint64_t resolved;       /* under lock: every event before it is acked or rejected */
    bool lock_ready;
    int wake_fd;

    /* Options and identity, copied. */
    tocsin_options_t opts; /* numbers resolved to their defaults; strings below */
    char *service;
    char *environment;
    char *release;
    char *host;
    char *api_key;
    char **endpoints;
    uint32_t n_endpoints;

    /* Owned by the background thread once it runs. */
    void *zmq_ctx;
    void **sockets;
    zmq_pollitem_t *items; /* the sockets, then wake_fd */
    tocsin_encoder_t *encoder;
    tocsin_inflight_t *inflight;
    tocsin_rng_t rng;
    tocsin_record_t *pending; /* the batch under construction */
    uint32_t pending_n;
    uint64_t pending_first;     /* queue position of pending[0] */
    int64_t pending_started_ms; /* when pending[0] was taken from the queue */
    uint64_t next_sequence;
    tocsin_loss_t reported;      /* loss totals already put in a batch */
    uint64_t resolved_published; /* last value written to `resolved` */
    int64_t last_wake_us;
    char rejected_reason[256]; /* last rejection reason written to stderr */
    bool rejected_logged;
    bool invalid_ack_logged;
    uint64_t undelivered; /* set when the thread ends */

    pthread_t thread;
    bool thread_started;
    pid_t owner_pid; /* the process that created the client (see fork in tocsin.h) */
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
    } else {
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

static tocsin_slot_t *claim(tocsin_t *self, uint64_t *pos)
{
    tocsin_slot_t *slot = tocsin_queue_claim(self->queue, pos);
    if (!slot) {
        counter_add(&self->dropped_queue_full, 1);
    }
    return slot;
}

static bool is_closing(tocsin_t *self)
{
    return atomic_load_explicit(&self->closing, memory_order_relaxed);
}

static void publish(tocsin_t *self, tocsin_slot_t *slot, uint64_t pos)
{
    bool truncated = slot->rec.flags & TOCSIN_RECORD_TRUNCATED;
    tocsin_queue_publish(slot, pos); /* the slot is the consumer's from here on */
    if (truncated) {
        counter_add(&self->events_truncated, 1);
    }
}

int tocsin_request(tocsin_t *self, const char *route, const char *method, int status,
                   uint64_t duration_us)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (is_closing(self)) {
        return refuse_invalid(self, TOCSIN_ECLOSED);
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
    uint64_t pos;
    tocsin_slot_t *slot = claim(self, &pos);
    if (!slot) {
        return TOCSIN_EFULL;
    }
    tocsin_record_t *rec = &slot->rec;
    tocsin_record_begin(rec, TOCSIN_RECORD_REQUEST, realtime_us());
    rec->status = (uint32_t)status;
    rec->num.u64 = duration_us;
    tocsin_record_put(rec, route, route_len);
    tocsin_record_put(rec, method, method_len);
    publish(self, slot, pos);
    return TOCSIN_OK;
}

int tocsin_error(tocsin_t *self, const char *type, const char *message, tocsin_level_t level)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (is_closing(self)) {
        return refuse_invalid(self, TOCSIN_ECLOSED);
    }
    if (!type) {
        type = "";
    }
    if (!message) {
        message = "";
    }
    if ((!type[0] && !message[0]) || level < TOCSIN_LEVEL_DEBUG || level > TOCSIN_LEVEL_FATAL) {
        return refuse_invalid(self, TOCSIN_EINVAL);
    }
    size_t type_len = strnlen(type, TOCSIN_NAME_MAX + 1);
    if (type_len > TOCSIN_NAME_MAX) {
        return refuse_oversize(self);
    }
    /* Reading one byte more than a slot holds is enough to know the message must be cut. */
    size_t message_len = strnlen(message, TOCSIN_RECORD_TEXT);
    uint64_t pos;
    tocsin_slot_t *slot = claim(self, &pos);
    if (!slot) {
        return TOCSIN_EFULL;
    }
    tocsin_record_t *rec = &slot->rec;
    tocsin_record_begin(rec, TOCSIN_RECORD_ERROR, realtime_us());
    rec->sub = (uint8_t)level;
    tocsin_record_put(rec, type, type_len);
    tocsin_record_put(rec, message, message_len);
    publish(self, slot, pos);
    return TOCSIN_OK;
}

int tocsin_metric(tocsin_t *self, const char *name, tocsin_metric_kind_t kind, double value,
                  const char *unit)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (is_closing(self)) {
        return refuse_invalid(self, TOCSIN_ECLOSED);
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
    uint64_t pos;
    tocsin_slot_t *slot = claim(self, &pos);
    if (!slot) {
        return TOCSIN_EFULL;
    }
    tocsin_record_t *rec = &slot->rec;
    tocsin_record_begin(rec, TOCSIN_RECORD_METRIC, realtime_us());
    rec->sub = (uint8_t)kind;
    rec->num.f64 = value;
    tocsin_record_put(rec, name, name_len);
    tocsin_record_put(rec, unit, unit_len);
    publish(self, slot, pos);
    return TOCSIN_OK;
}

/* ---------------------------------------------------------------------------------- */
/* The background thread. */

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

static void wake(tocsin_t *self)
{
    uint64_t one = 1;
    ssize_t w = write(self->wake_fd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, so the thread wakes anyway */
}

static void on_ack(tocsin_t *self, const tocsin_ack_t *ack, uint32_t endpoint, int64_t now)
{
    uint64_t first = 0, end = 0;
    tocsin_acked_t what = tocsin_inflight_ack(self->inflight, ack, endpoint, now, &first, &end);
    uint64_t n = end - first;
    switch (what) {
    case TOCSIN_ACKED_STORED:
        counter_add(&self->batches_acked, 1);
        if (ack->accepted == 0 || ack->accepted >= n) {
            counter_add(&self->events_acked, n);
        } else {
            counter_add(&self->events_acked, ack->accepted);
            counter_add(&self->events_rejected, n - ack->accepted);
        }
        break;
    case TOCSIN_ACKED_REJECTED:
        counter_add(&self->batches_rejected, 1);
        counter_add(&self->events_rejected, n);
        /* Logged once per reason: a collector rejecting every batch for a bad key must not
         * fill the service's stderr. */
        if (!self->rejected_logged || strcmp(self->rejected_reason, ack->reason) != 0) {
            log_line("collector %s rejected batch %llu (%llu events), not retried: %s",
                     self->endpoints[endpoint], (unsigned long long)ack->sequence,
                     (unsigned long long)n, ack->reason[0] ? ack->reason : "(no reason)");
            memcpy(self->rejected_reason, ack->reason, sizeof(self->rejected_reason));
            self->rejected_logged = true;
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
    if (!self->invalid_ack_logged) {
        log_line("collector %s sent a reply that is not a tocsin.v1.Ack; ignored (counted in "
                 "acks_invalid, logged once)",
                 self->endpoints[endpoint]);
        self->invalid_ack_logged = true;
    }
}

/* Reads the replies waiting on every socket. */
static void take_acks(tocsin_t *self, int64_t now)
{
    for (uint32_t i = 0; i < self->n_endpoints; i++) {
        for (int k = 0; k < ACKS_PER_WAKE; k++) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            if (zmq_msg_recv(&msg, self->sockets[i], ZMQ_DONTWAIT) < 0) {
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
                if (zmq_msg_recv(&msg, self->sockets[i], ZMQ_DONTWAIT) < 0) {
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

/* Moves published events from the queue into the batch under construction. Returns how
 * many it moved. */
static uint32_t fill_pending(tocsin_t *self, int64_t now)
{
    uint32_t moved = 0;
    while (self->pending_n < self->opts.batch_max_events) {
        const tocsin_record_t *rec = tocsin_queue_peek(self->queue);
        if (!rec) {
            break;
        }
        if (self->pending_n == 0) {
            self->pending_first = tocsin_queue_head(self->queue);
            self->pending_started_ms = now;
        }
        memcpy(&self->pending[self->pending_n], rec, tocsin_record_size(rec));
        self->pending_n++;
        tocsin_queue_pop(self->queue);
        moved++;
    }
    return moved;
}

/* Milliseconds until the batch under construction is due (0: due now). */
static int64_t pending_wait_ms(tocsin_t *self, int64_t now, bool closing)
{
    if (self->pending_n == 0) {
        return INT64_MAX;
    }
    uint64_t flush_target = atomic_load_explicit(&self->flush_target, memory_order_acquire);
    if (closing || self->pending_n >= self->opts.batch_max_events ||
        flush_target > self->pending_first) {
        return 0;
    }
    int64_t interval = self->opts.batch_interval_ms;
    /* The oldest event's age counts from when it was recorded (wall clock), and at the
     * latest from when this thread took it (monotonic clock, immune to clock steps). */
    int64_t by_mono = self->pending_started_ms + interval - now;
    int64_t age_ms = (realtime_us() - self->pending[0].time_us) / 1000;
    int64_t by_wall = age_ms < 0 ? by_mono : interval - age_ms;
    int64_t wait = by_mono < by_wall ? by_mono : by_wall;
    return wait < 0 ? 0 : wait;
}

/* Totals of the figures reported to collectors in ClientCounters. */
static tocsin_loss_t loss_totals(tocsin_t *self)
{
    return (tocsin_loss_t){
        .dropped_queue_full = counter_get(&self->dropped_queue_full),
        .dropped_oversize = counter_get(&self->dropped_oversize),
        .retried = counter_get(&self->batches_retried),
        .rejected = counter_get(&self->events_rejected),
    };
}

/* Encodes the batch under construction (or as much of it as fits one batch) and hands it
 * to the in-flight table. */
static int seal_batch(tocsin_t *self, int64_t now)
{
    tocsin_loss_t totals = loss_totals(self);
    tocsin_loss_t delta = {
        .dropped_queue_full = totals.dropped_queue_full - self->reported.dropped_queue_full,
        .dropped_oversize = totals.dropped_oversize - self->reported.dropped_oversize,
        .retried = totals.retried - self->reported.retried,
        .rejected = totals.rejected - self->reported.rejected,
    };
    uint8_t *data = NULL;
    size_t len = 0, used = 0;
    int rc = tocsin_encoder_encode(self->encoder, self->next_sequence, &delta, self->pending,
                                   self->pending_n, &self->rng, &data, &len, &used);
    if (rc != 0) {
        return rc;
    }
    rc = tocsin_inflight_add(self->inflight, self->next_sequence, data, len, self->pending_first,
                             self->pending_first + used, now);
    if (rc != 0) {
        free(data);
        return rc;
    }
    /* the in-flight table owns data now */
    self->next_sequence++;
    self->reported = totals;
    if (used < self->pending_n) {
        memmove(self->pending, self->pending + used,
                (self->pending_n - used) * sizeof(self->pending[0]));
    }
    self->pending_n -= (uint32_t)used;
    self->pending_first += used;
    self->pending_started_ms = now;
    return 0;
}

/* Drains the queue into batches while the in-flight table has room. Returns the events
 * taken from the queue. */
static uint32_t build_batches(tocsin_t *self, int64_t now, bool closing)
{
    uint32_t moved = 0;
    while (!tocsin_inflight_full(self->inflight)) {
        moved += fill_pending(self, now);
        if (pending_wait_ms(self, now, closing) > 0) {
            break;
        }
        if (seal_batch(self, now) != 0) {
            break; /* out of memory: the events stay pending; try again on the next wake */
        }
    }
    return moved;
}

/* Hands every due batch to ZeroMQ, failing over where it refuses. */
static void send_due(tocsin_t *self, int64_t now)
{
    tocsin_inflight_entry_t *e;
    while ((e = tocsin_inflight_next_send(self->inflight, now)) != NULL) {
        if (zmq_send(self->sockets[e->endpoint], e->data, e->len, ZMQ_DONTWAIT) >= 0) {
            bool resend = tocsin_inflight_sent(self->inflight, e, now);
            counter_add(resend ? &self->batches_retried : &self->batches_sent, 1);
        } else {
            tocsin_inflight_refused(self->inflight, e, now);
        }
    }
}

/* Every event before the returned position is acked or rejected. */
static uint64_t resolved_position(tocsin_t *self)
{
    uint64_t pos = self->pending_n ? self->pending_first : tocsin_queue_head(self->queue);
    uint64_t oldest = tocsin_inflight_oldest_pos(self->inflight);
    return oldest < pos ? oldest : pos;
}

static void publish_progress(tocsin_t *self)
{
    uint64_t pos = resolved_position(self);
    if (pos != self->resolved_published) {
        pthread_mutex_lock(&self->lock);
        self->resolved = pos;
        pthread_cond_broadcast(&self->progress);
        pthread_mutex_unlock(&self->lock);
        self->resolved_published = pos;
    }
}

static bool all_done(tocsin_t *self)
{
    return self->pending_n == 0 && tocsin_inflight_count(self->inflight) == 0 &&
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
    int64_t t = self->opts.batch_interval_ms;
    bool full = tocsin_inflight_full(self->inflight);
    if (!full) {
        t = min64(t, pending_wait_ms(self, now, closing));
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
    t = min64(t, tocsin_inflight_next_due(self->inflight) - now);
    if (closing) {
        t = min64(t, atomic_load_explicit(&self->stop_deadline_ms, memory_order_relaxed) - now);
    }
    /* At least 1 ms, so that a condition that cannot progress (no memory) never spins. */
    return t < 1 ? 1 : (long)t;
}

static void *run(void *arg)
{
    tocsin_t *self = arg;
    pthread_setname_np(pthread_self(), "tocsin");
    tocsin_rng_seed_random(&self->rng); /* the fallback seed is good enough for ids */
    uint32_t n_items = self->n_endpoints + 1;
    self->last_wake_us = mono_us();
    for (;;) {
        int64_t wake_us = mono_us();
        int64_t elapsed_us = wake_us - self->last_wake_us;
        self->last_wake_us = wake_us;
        int64_t now = wake_us / 1000;

        take_acks(self, now);
        bool closing = atomic_load_explicit(&self->closing, memory_order_acquire);
        uint32_t moved = build_batches(self, now, closing);
        send_due(self, now);
        publish_progress(self);
        if (closing && (all_done(self) || now >= atomic_load_explicit(&self->stop_deadline_ms,
                                                                      memory_order_relaxed))) {
            break;
        }

        long timeout = poll_timeout_ms(self, now, closing, moved, elapsed_us);
        int rc = zmq_poll(self->items, (int)n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            /* Should not happen (the context is ours); sleep rather than spin. */
            struct timespec ts = {timeout / 1000, (timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else if (rc > 0 && (self->items[n_items - 1].revents & ZMQ_POLLIN)) {
            uint64_t v;
            ssize_t r = read(self->wake_fd, &v, sizeof(v));
            (void)r;
        }
    }
    self->undelivered = tocsin_queue_tail(self->queue) - resolved_position(self);
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle. */

/* Frees the client. In a child process after fork() (`forked`), ZeroMQ's context has no
 * threads and terminating it would hang: its sockets and context are left alone. */
static void client_free(tocsin_t *self, bool forked)
{
    if (forked) {
        free(self->sockets);
        self->sockets = NULL;
        self->zmq_ctx = NULL;
    }
    if (self->sockets) {
        for (uint32_t i = 0; i < self->n_endpoints; i++) {
            if (self->sockets[i]) {
                zmq_close(self->sockets[i]);
            }
        }
        free(self->sockets);
    }
    if (self->zmq_ctx) {
        zmq_ctx_term(self->zmq_ctx);
    }
    if (self->endpoints) {
        for (uint32_t i = 0; i < self->n_endpoints; i++) {
            free(self->endpoints[i]);
        }
        free(self->endpoints);
    }
    if (self->wake_fd >= 0) {
        close(self->wake_fd);
    }
    if (self->lock_ready) {
        pthread_cond_destroy(&self->progress);
        pthread_mutex_destroy(&self->lock);
    }
    free(self->items);
    free(self->pending);
    tocsin_inflight_destroy(&self->inflight);
    tocsin_encoder_destroy(&self->encoder);
    tocsin_queue_destroy(&self->queue);
    free(self->service);
    free(self->environment);
    free(self->release);
    free(self->host);
    free(self->api_key);
    free(self);
}

/* Copies the identity strings and splits the endpoints. */
static int copy_strings(tocsin_t *self, const tocsin_options_t *o)
{
    char hostname[TOCSIN_IDENTITY_MAX + 1] = "unknown";
    if (!o->host) {
        if (gethostname(hostname, sizeof(hostname)) != 0 || !hostname[0]) {
            strcpy(hostname, "unknown");
        }
        hostname[sizeof(hostname) - 1] = '\0';
    }
    self->service = copy_utf8(o->service);
    self->environment = copy_utf8(o->environment);
    self->release = copy_utf8(o->release ? o->release : "");
    self->host = copy_utf8(o->host ? o->host : hostname);
    self->api_key = copy_utf8(o->api_key ? o->api_key : "");
    if (!self->service || !self->environment || !self->release || !self->host || !self->api_key) {
        return TOCSIN_ENOMEM;
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

static int set_int(void *socket, int option, int value)
{
    return zmq_setsockopt(socket, option, &value, sizeof(value));
}

/* One DEALER per endpoint. LINGER 0: destroy never waits on the network. IMMEDIATE: a send
 * to an endpoint with no live connection fails at once instead of queueing for a peer that
 * may never come. SNDHWM: room for every in-flight batch and a resend of each. MAXMSGSIZE:
 * a collector cannot make the client read more than an Ack's worth. */
static int open_sockets(tocsin_t *self)
{
    self->zmq_ctx = zmq_ctx_new();
    if (!self->zmq_ctx) {
        return TOCSIN_EZMQ;
    }
    zmq_ctx_set(self->zmq_ctx, ZMQ_IO_THREADS, 1);
    zmq_ctx_set(self->zmq_ctx, ZMQ_BLOCKY, 0);
    self->sockets = calloc(self->n_endpoints, sizeof(*self->sockets));
    self->items = calloc(self->n_endpoints + 1, sizeof(*self->items));
    if (!self->sockets || !self->items) {
        return TOCSIN_ENOMEM;
    }
    int hwm = (int)self->opts.max_inflight_batches * 2 + 2;
    int64_t max_msg = TOCSIN_ACK_MAX_BYTES;
    for (uint32_t i = 0; i < self->n_endpoints; i++) {
        void *s = zmq_socket(self->zmq_ctx, ZMQ_DEALER);
        if (!s) {
            return TOCSIN_EZMQ;
        }
        self->sockets[i] = s;
        if (set_int(s, ZMQ_LINGER, 0) || set_int(s, ZMQ_IMMEDIATE, 1) ||
            set_int(s, ZMQ_SNDHWM, hwm) || set_int(s, ZMQ_RCVHWM, hwm + 1000) ||
            set_int(s, ZMQ_RECONNECT_IVL, RECONNECT_IVL_MS) ||
            set_int(s, ZMQ_RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS) ||
            zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof(max_msg)) ||
            zmq_connect(s, self->endpoints[i]) != 0) {
            return TOCSIN_EZMQ;
        }
        self->items[i] = (zmq_pollitem_t){.socket = s, .events = ZMQ_POLLIN};
    }
    self->items[self->n_endpoints] = (zmq_pollitem_t){.fd = self->wake_fd, .events = ZMQ_POLLIN};
    return 0;
}

/* Creates what the client needs except the sockets and the thread. */
static int client_prepare(tocsin_t *self, const tocsin_options_t *resolved)
{
    int rc = copy_strings(self, resolved);
    if (rc != 0) {
        return rc;
    }
    self->queue = tocsin_queue_new(self->opts.queue_capacity);
    self->pending = calloc(self->opts.batch_max_events, sizeof(*self->pending));
    if (!self->queue || !self->pending) {
        return TOCSIN_ENOMEM;
    }
    static const char sdk[] = "libtocsin/" TOCSIN_VERSION;
    tocsin_identity_t identity = {
        .service = self->service,
        .environment = self->environment,
        .release = self->release,
        .host = self->host,
        .api_key = self->api_key,
        .sdk = sdk,
    };
    self->encoder =
        tocsin_encoder_new(&identity, self->opts.batch_max_events, TOCSIN_BATCH_MAX_BYTES);
    tocsin_inflight_config_t config = {
        .max_batches = self->opts.max_inflight_batches,
        .n_endpoints = self->n_endpoints,
        .ack_timeout_ms = self->opts.ack_timeout_ms,
        .backoff_base_ms = BACKOFF_BASE_MS,
        .backoff_max_ms = BACKOFF_MAX_MS,
        .refused_retry_ms = REFUSED_RETRY_MS,
        .retry_after_max_ms = RETRY_AFTER_MAX_MS,
    };
    self->inflight = tocsin_inflight_new(&config, &self->rng);
    if (!self->encoder || !self->inflight) {
        return TOCSIN_ENOMEM;
    }
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        return TOCSIN_ENOMEM;
    }
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(&self->progress, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        return TOCSIN_ENOMEM;
    }
    if (pthread_mutex_init(&self->lock, NULL) != 0) {
        pthread_cond_destroy(&self->progress);
        return TOCSIN_ENOMEM;
    }
    self->lock_ready = true;
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake_fd < 0) {
        return TOCSIN_EIO;
    }
    self->next_sequence = 1;
    return 0;
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
    tocsin_options_t resolved;
    options_resolve(opts, &resolved);
    self->opts = resolved;
    /* The client keeps copies of the strings (made below), never the caller's pointers. */
    self->opts.service = self->opts.environment = self->opts.release = NULL;
    self->opts.host = self->opts.collectors = self->opts.api_key = NULL;
    int rc = client_prepare(self, &resolved);
    if (rc != 0) {
        client_free(self, false);
        return NULL;
    }
    self->owner_pid = getpid();

    /* ZeroMQ's I/O thread (started with the first socket) and ours must not take the
     * host's signals: block them all while both are created; they inherit the mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = open_sockets(self);
    if (rc == 0 && pthread_create(&self->thread, NULL, run, self) == 0) {
        self->thread_started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!self->thread_started) {
        client_free(self, false);
        return NULL;
    }
    return self;
}

void tocsin_destroy(tocsin_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tocsin_t *self = *self_p;
    if (getpid() != self->owner_pid) {
        /* A forked child: the background thread exists only in the parent. */
        client_free(self, true);
        *self_p = NULL;
        return;
    }
    atomic_store_explicit(&self->stop_deadline_ms, mono_ms() + self->opts.shutdown_timeout_ms,
                          memory_order_relaxed);
    atomic_store_explicit(&self->closing, true, memory_order_release);
    wake(self);
    pthread_join(self->thread, NULL);
    if (self->undelivered > 0) {
        log_line("shutdown: %llu events were not acknowledged by a collector within "
                 "shutdown_timeout_ms (%u ms) and are given up",
                 (unsigned long long)self->undelivered, self->opts.shutdown_timeout_ms);
    }
    client_free(self, false);
    *self_p = NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Flush and statistics. */

int tocsin_flush(tocsin_t *self, uint32_t timeout_ms)
{
    if (!self) {
        return TOCSIN_EINVAL;
    }
    if (is_closing(self) || getpid() != self->owner_pid) {
        return TOCSIN_ECLOSED;
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
    out->recorded = tocsin_queue_tail(self->queue);
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
}
