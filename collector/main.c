/*
 * tocsin-collector — takes Batches in on a ZeroMQ ROUTER, validates them, writes every event
 * to Kafka and answers each batch with an Ack once Kafka's delivery reports say the whole
 * batch is stored (or that it is not: then RETRY_AFTER, and the client sends it again).
 *
 * One thread does the work: it polls the ROUTER socket, a pipe that librdkafka writes to
 * when its main queue has events (delivery reports, errors), and the signal pipe, all in
 * one zmq_poll. Delivery reports are served on this thread, so the in-flight set needs no
 * lock. Two other threads exist: libmicrohttpd's (health and metrics, reading atomics and
 * the Kafka probe's state under its lock) and the Kafka probe, which asks the brokers for
 * metadata every few seconds so /health/ready reports real connectivity.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <zmq.h>

#include "col_track.h"
#include "col_validate.h"
#include "col_wire.h"
#include "tc_config.h"
#include "tc_error.h"
#include "tc_http.h"
#include "tc_kafka.h"
#include "tc_log.h"
#include "tc_metrics.h"
#include "tc_signal.h"
#include "tc_util.h"

/* How long to wait for `brokers_file` to appear (tocsin-bus may still be starting). */
#define BROKERS_FILE_WAIT_MS 30000
/* How often the Kafka probe asks for metadata, and how long one request may take. */
#define PROBE_INTERVAL_MS 2000
#define PROBE_TIMEOUT_MS 2000
/* Messages taken from the ROUTER per loop turn, so delivery reports are never starved. */
#define RECV_BUDGET 256
/* A message with more frames than this is malformed; the rest are read and dropped. */
#define MAX_FRAMES 4

/* ---------------------------------------------------------------------------------------
 * Configuration
 */

typedef struct {
    char *log_level;
    char *instance_id;
    char *listen;
    char *http_bind;
    int64_t http_port;
    char *brokers;
    char *brokers_file;
    char *topic_events;
    uint64_t max_frame_bytes;
    int64_t max_events;
    uint64_t max_short_string;
    uint64_t max_long_string;
    int64_t max_tags;
    int64_t max_frames;
    int64_t max_log_fields;
    int64_t max_fingerprint_parts;
    int64_t max_inflight_batches;
    int64_t retry_after_ms;
    int64_t message_timeout_ms;
    int64_t shutdown_timeout_ms;
    tc_cfg_kvs_t kafka;
} col_config_t;

#define OFF(f) offsetof(col_config_t, f)

static const tc_cfg_entry_t config_table[] = {
    {"log.level", TC_CFG_STRING, "info", OFF(log_level), "debug, info, warn or error", 0, 0},
    {"instance.id", TC_CFG_STRING, "", OFF(instance_id),
     "name of this collector in logs and in each event's collector_id (empty: host-pid)", 0, 0},
    {"listen", TC_CFG_STRING, "tcp://*:7420", OFF(listen),
     "ZeroMQ endpoint the ROUTER binds (tcp://127.0.0.1:* picks a free port)", 0, 0},
    {"http.bind", TC_CFG_STRING, "0.0.0.0", OFF(http_bind), "address of the HTTP endpoint", 0, 0},
    {"http.port", TC_CFG_INT, "7421", OFF(http_port), "port of the HTTP endpoint (0: any free)", 0,
     65535},
    {"brokers", TC_CFG_STRING, "", OFF(brokers), "Kafka bootstrap servers (host:port,...)", 0, 0},
    {"brokers_file", TC_CFG_STRING, "", OFF(brokers_file),
     "file whose first line is the bootstrap list; used when brokers is empty", 0, 0},
    {"topic.events", TC_CFG_STRING, "tocsin.events", OFF(topic_events),
     "Kafka topic the events are written to, keyed by service", 0, 0},
    {"limits.max_frame_bytes", TC_CFG_SIZE, "1MiB", OFF(max_frame_bytes),
     "largest encoded Batch taken (larger: rejected too_big)", 0, 0},
    {"limits.max_events", TC_CFG_INT, "2000", OFF(max_events), "events per batch", 1, 1000000},
    {"limits.max_short_string", TC_CFG_SIZE, "256", OFF(max_short_string),
     "bytes in a name-like string (service, route, tag, frame field, ...)", 0, 0},
    {"limits.max_long_string", TC_CFG_SIZE, "16KiB", OFF(max_long_string),
     "bytes in an error or log message", 0, 0},
    {"limits.max_tags", TC_CFG_INT, "64", OFF(max_tags), "tags per event", 0, 1000000},
    {"limits.max_frames", TC_CFG_INT, "128", OFF(max_frames), "stack frames per error", 0, 1000000},
    {"limits.max_log_fields", TC_CFG_INT, "64", OFF(max_log_fields),
     "structured fields per log record", 0, 1000000},
    {"limits.max_fingerprint_parts", TC_CFG_INT, "16", OFF(max_fingerprint_parts),
     "explicit fingerprint parts per error", 0, 1000000},
    {"max_inflight_batches", TC_CFG_INT, "1000", OFF(max_inflight_batches),
     "batches awaiting delivery reports; beyond it batches are answered retry-after", 1, 10000000},
    {"retry_after", TC_CFG_DURATION, "1s", OFF(retry_after_ms),
     "retry_after_ms put in RETRY_AFTER Acks", 0, 0},
    {"kafka.message_timeout", TC_CFG_DURATION, "30s", OFF(message_timeout_ms),
     "librdkafka message.timeout.ms: a delivery not done by then fails and the batch is "
     "answered retry-after",
     0, 0},
    {"shutdown.timeout", TC_CFG_DURATION, "10s", OFF(shutdown_timeout_ms),
     "on SIGTERM, how long to wait for in-flight deliveries before giving up on them", 0, 0},
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, OFF(kafka),
     "passed to librdkafka unchanged (kafka.security.protocol=SASL_SSL, ...)", 0, 0},
    TC_CFG_END,
};

static const char usage[] =
    "Usage: tocsin-collector [--config FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "Takes tocsin.v1.Batch messages on a ZeroMQ ROUTER socket, validates them, writes each\n"
    "event to Kafka (topic.events, keyed by service) and acks each batch once Kafka has\n"
    "reported delivery of all its events.\n";

/* ---------------------------------------------------------------------------------------
 * Metrics
 */

/* Client-side loss figures, one label each on tocsin_collector_client_dropped_total. */
enum { CLIENT_QUEUE_FULL, CLIENT_OVERSIZE, CLIENT_SAMPLED_OUT, CLIENT_BEFORE_SEND, CLIENT_N };
static const char *const client_drop_labels[CLIENT_N] = {
    "reason=\"queue_full\"", "reason=\"oversize\"", "reason=\"sampled_out\"",
    "reason=\"before_send\""};

typedef struct {
    tc_counter_t *batches_received;
    tc_counter_t *events_received;
    tc_counter_t *events_accepted;
    tc_counter_t *batches_stored;
    tc_counter_t *batches_rejected[COL_REASON_COUNT];
    tc_counter_t *batches_retry_after;
    tc_counter_t *delivery_failures;
    tc_counter_t *produce_errors;
    tc_counter_t *acks_dropped;
    tc_counter_t *client_dropped[CLIENT_N];
    tc_counter_t *client_retried;
    tc_counter_t *client_rejected;
    tc_gauge_t *inflight;
    tc_histogram_t *delivery_latency;
} col_metrics_t;

static int metrics_register(tc_metrics_t *reg, col_metrics_t *m)
{
    static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30};
    memset(m, 0, sizeof(*m));
    m->batches_received = tc_metrics_counter(reg, "tocsin_collector_batches_received_total", NULL,
                                             "Messages received on the ROUTER socket");
    m->events_received = tc_metrics_counter(reg, "tocsin_collector_events_received_total", NULL,
                                            "Events in batches that passed validation");
    m->events_accepted = tc_metrics_counter(reg, "tocsin_collector_events_accepted_total", NULL,
                                            "Events acked STORED after their delivery report");
    m->batches_stored = tc_metrics_counter(reg, "tocsin_collector_batches_stored_total", NULL,
                                           "Batches acked STORED");
    for (int r = COL_REASON_NONE + 1; r < COL_REASON_COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", col_reason_name((col_reason_t)r));
        m->batches_rejected[r] = tc_metrics_counter(reg, "tocsin_collector_batches_rejected_total",
                                                    labels, "Batches acked REJECTED, by reason");
        if (!m->batches_rejected[r]) {
            return TC_ENOMEM;
        }
    }
    m->batches_retry_after =
        tc_metrics_counter(reg, "tocsin_collector_batches_retry_after_total", NULL,
                           "Batches acked RETRY_AFTER (busy, producer refused, delivery failed)");
    m->delivery_failures = tc_metrics_counter(reg, "tocsin_collector_delivery_failures_total", NULL,
                                              "Events whose Kafka delivery report failed");
    m->produce_errors = tc_metrics_counter(reg, "tocsin_collector_produce_errors_total", NULL,
                                           "Events the producer refused (queue full, ...)");
    m->acks_dropped = tc_metrics_counter(reg, "tocsin_collector_acks_dropped_total", NULL,
                                         "Acks not sent: client gone or its queue full");
    for (int c = 0; c < CLIENT_N; c++) {
        m->client_dropped[c] =
            tc_metrics_counter(reg, "tocsin_collector_client_dropped_total", client_drop_labels[c],
                               "Events clients report they dropped");
        if (!m->client_dropped[c]) {
            return TC_ENOMEM;
        }
    }
    m->client_retried = tc_metrics_counter(reg, "tocsin_collector_client_retried_total", NULL,
                                           "Batches clients report they resent");
    m->client_rejected =
        tc_metrics_counter(reg, "tocsin_collector_client_rejected_total", NULL,
                           "Events clients report lost in batches a collector rejected");
    m->inflight = tc_metrics_gauge(reg, "tocsin_collector_inflight_batches", NULL,
                                   "Batches awaiting their delivery reports");
    m->delivery_latency =
        tc_metrics_histogram(reg, "tocsin_collector_delivery_latency_seconds", NULL,
                             "From a batch's receipt to its last delivery report", latency_bounds,
                             sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    if (!m->batches_received || !m->events_received || !m->events_accepted || !m->batches_stored ||
        !m->batches_retry_after || !m->delivery_failures || !m->produce_errors ||
        !m->acks_dropped || !m->client_retried || !m->client_rejected || !m->inflight ||
        !m->delivery_latency) {
        return TC_ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Kafka connectivity, for /health/ready
 */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool checked;       /* a probe has finished at least once */
    bool up;            /* the last probe reached the cluster */
    double response_ms; /* how long the last probe took */
    int64_t at_us;      /* monotonic time of the last probe or error report */
    char detail[160];
    rd_kafka_t *rk;
} kafka_probe_t;

static void probe_set(kafka_probe_t *p, bool up, double ms, const char *detail)
{
    pthread_mutex_lock(&p->mu);
    p->checked = true;
    p->up = up;
    if (ms >= 0) {
        p->response_ms = ms;
    }
    p->at_us = tc_mono_us();
    tc_strlcpy(p->detail, detail, sizeof(p->detail));
    pthread_mutex_unlock(&p->mu);
}

/* Asks the cluster for its brokers every PROBE_INTERVAL_MS. rd_kafka_metadata blocks for
 * up to PROBE_TIMEOUT_MS, which is why this runs on its own thread and not in the loop. */
static void *probe_main(void *arg)
{
    kafka_probe_t *p = arg;
    bool was_up = true;
    for (;;) {
        int64_t t0 = tc_mono_us();
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(p->rk, 0, NULL, &md, PROBE_TIMEOUT_MS);
        double ms = (double)(tc_mono_us() - t0) / 1000.0;
        char detail[160];
        bool up = err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0;
        if (up) {
            snprintf(detail, sizeof(detail), "%d broker(s) reachable", md->broker_cnt);
        } else {
            snprintf(detail, sizeof(detail), "metadata request failed: %s",
                     err ? rd_kafka_err2str(err) : "no brokers");
        }
        if (md) {
            rd_kafka_metadata_destroy(md);
        }
        probe_set(p, up, ms, detail);
        if (up != was_up) {
            tc_log(up ? TC_LOG_INFO : TC_LOG_WARN, up ? "kafka.up" : "kafka.down", "%s", detail);
            was_up = up;
        }

        pthread_mutex_lock(&p->mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += PROBE_INTERVAL_MS / 1000;
        until.tv_nsec += (long)(PROBE_INTERVAL_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!p->stop) {
            if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT) {
                break;
            }
        }
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) {
            return NULL;
        }
    }
}

/* The readiness check, on the HTTP thread: Kafka is the collector's one dependency. */
static void ready_check(void *ctx, tc_health_t *health)
{
    kafka_probe_t *p = ctx;
    pthread_mutex_lock(&p->mu);
    bool checked = p->checked;
    bool up = p->up;
    double ms = p->response_ms;
    int64_t age_ms = (tc_mono_us() - p->at_us) / 1000;
    char detail[sizeof(p->detail)];
    tc_strlcpy(detail, p->detail, sizeof(detail));
    pthread_mutex_unlock(&p->mu);
    if (!checked) {
        tc_health_add(health, "kafka", TC_HEALTH_UNHEALTHY, 0, "not checked yet");
    } else if (age_ms > 3 * (PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS)) {
        tc_health_add(health, "kafka", TC_HEALTH_UNHEALTHY, ms, "probe has not answered");
    } else {
        tc_health_add(health, "kafka", up ? TC_HEALTH_HEALTHY : TC_HEALTH_UNHEALTHY, ms, detail);
    }
}

/* ---------------------------------------------------------------------------------------
 * The daemon
 */

typedef struct {
    col_config_t cfg;
    col_limits_t limits;
    char *instance_id;
    void *zctx;
    void *router;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_queue_t *mainq;
    int kpipe[2];
    col_inflight_t *inflight;
    tc_metrics_t *metrics;
    col_metrics_t m;
    tc_http_t *http;
    kafka_probe_t probe;
    bool probe_running;
    pthread_t probe_thread;
    tc_log_limit_t reject_log;
    tc_log_limit_t ack_drop_log;
    tc_log_limit_t produce_log;
    bool fatal;
} col_daemon_t;

static void update_inflight_gauge(col_daemon_t *d)
{
    tc_gauge_set(d->m.inflight, (double)col_inflight_count(d->inflight));
}

/*
 * Sends one Ack to `peer` in the shape its message came in. The ROUTER is mandatory and
 * every send is non-blocking, so an Ack to a client that has gone (EHOSTUNREACH) or whose
 * queue is full (EAGAIN) is dropped and counted; the client's time-out resends the batch.
 */
static void send_ack(col_daemon_t *d, const col_peer_t *peer, const col_ack_t *ack)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (col_ack_encode(ack, &buf, &len) != 0) {
        tc_counter_inc(d->m.acks_dropped);
        tc_log(TC_LOG_ERROR, "collector.ack_dropped", "out of memory encoding an Ack");
        return;
    }
    int rc = zmq_send(d->router, peer->identity, peer->identity_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0 && peer->delimited) {
        rc = zmq_send(d->router, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    }
    if (rc >= 0) {
        rc = zmq_send(d->router, buf, len, ZMQ_DONTWAIT);
    }
    int saved = errno;
    free(buf);
    if (rc < 0) {
        tc_counter_inc(d->m.acks_dropped);
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&d->ack_drop_log, tc_mono_us(), &suppressed)) {
            tc_logj(TC_LOG_WARN, "collector.ack_dropped",
                    json_pack("{s:I, s:I}", "sequence", (json_int_t)ack->sequence, "suppressed",
                              (json_int_t)suppressed),
                    "Ack not sent: %s", zmq_strerror(saved));
        }
    }
}

static void send_simple_ack(col_daemon_t *d, const col_peer_t *peer, uint64_t sequence,
                            Tocsin__V1__Ack__Status status, const char *reason)
{
    col_ack_t ack = {.sequence = sequence, .status = status, .reason = reason};
    if (status == TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER) {
        ack.retry_after_ms = (uint32_t)d->cfg.retry_after_ms;
    }
    send_ack(d, peer, &ack);
}

/* Answers a finished tracker, counts what its answer means and closes it. */
static void finish_batch(col_daemon_t *d, col_track_t *t)
{
    col_ack_t ack;
    col_track_ack(t, (uint32_t)d->cfg.retry_after_ms, &ack);
    if (ack.status == TOCSIN__V1__ACK__STATUS__STATUS_STORED) {
        tc_counter_add(d->m.events_accepted, ack.accepted);
        tc_counter_inc(d->m.batches_stored);
        double secs = (double)(tc_mono_us() - col_track_received_us(t)) / 1e6;
        tc_histogram_observe(d->m.delivery_latency, secs);
        /* A client's loss figures are counted once its batch is stored: a batch answered
         * retry-after comes back with the same figures, and would count them twice. */
        const col_client_counters_t *c = col_track_counters(t);
        tc_counter_add(d->m.client_dropped[CLIENT_QUEUE_FULL], c->dropped_queue_full);
        tc_counter_add(d->m.client_dropped[CLIENT_OVERSIZE], c->dropped_oversize);
        tc_counter_add(d->m.client_dropped[CLIENT_SAMPLED_OUT], c->sampled_out);
        tc_counter_add(d->m.client_dropped[CLIENT_BEFORE_SEND], c->dropped_before_send);
        tc_counter_add(d->m.client_retried, c->retried);
        tc_counter_add(d->m.client_rejected, c->rejected);
    } else {
        tc_counter_inc(d->m.batches_retry_after);
        tc_logj(TC_LOG_DEBUG, "collector.batch_retry",
                json_pack("{s:I, s:i}", "sequence", (json_int_t)ack.sequence, "failures",
                          (int)col_track_failures(t)),
                "%s", ack.reason ? ack.reason : "");
    }
    send_ack(d, col_track_peer(t), &ack);
    col_inflight_close(d->inflight, &t);
    update_inflight_gauge(d);
}

/* librdkafka's delivery report, served by rd_kafka_poll on the loop's thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    col_daemon_t *d = opaque;
    col_track_t *t = msg->_private;
    if (!t) {
        return;
    }
    bool ok = msg->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    char why[160] = "";
    if (!ok) {
        tc_counter_inc(d->m.delivery_failures);
        snprintf(why, sizeof(why), "kafka delivery failed: %s", rd_kafka_err2str(msg->err));
    }
    if (col_track_report(t, ok, why)) {
        finish_batch(d, t);
    }
}

/* librdkafka's error callback: connectivity for /health/ready, and fatal errors. */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    col_daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        tc_log(TC_LOG_ERROR, "kafka.fatal", "%s: %s; stopping", rd_kafka_err2name(orig), buf);
        d->fatal = true;
        probe_set(&d->probe, false, -1, buf);
        tc_signal_request_stop();
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        probe_set(&d->probe, false, -1, reason);
    }
    tc_log(TC_LOG_WARN, "kafka.error", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
           reason);
}

static void log_rejection(col_daemon_t *d, const col_reject_t *rej)
{
    uint64_t suppressed = 0;
    if (!tc_log_limit_allow(&d->reject_log, tc_mono_us(), &suppressed)) {
        return;
    }
    tc_logj(TC_LOG_WARN, "collector.batch_rejected",
            json_pack("{s:s, s:i, s:I, s:I}", "reason", col_reason_name(rej->reason), "event_index",
                      rej->event_index, "sequence", (json_int_t)rej->sequence, "suppressed",
                      (json_int_t)suppressed),
            "%s", rej->message);
}

static void reject_batch(col_daemon_t *d, const col_peer_t *peer, const col_reject_t *rej)
{
    tc_counter_inc(d->m.batches_rejected[rej->reason]);
    log_rejection(d, rej);
    char reason[sizeof(rej->message) + 32];
    snprintf(reason, sizeof(reason), "%s: %s", col_reason_name(rej->reason), rej->message);
    send_simple_ack(d, peer, rej->sequence, TOCSIN__V1__ACK__STATUS__STATUS_REJECTED, reason);
}

/*
 * Hands every event of a valid batch to the producer, keyed by service, with its tracker as
 * the message's opaque. When the producer refuses one (its queue is full), the rest are
 * not handed over and the batch will be answered retry-after once the events already handed
 * over have their reports.
 */
static void produce_batch(col_daemon_t *d, const col_peer_t *peer, Tocsin__V1__Batch *b,
                          int64_t received_us, int64_t received_mono)
{
    col_client_counters_t counters = {0};
    if (b->counters) {
        counters.dropped_queue_full = b->counters->dropped_queue_full;
        counters.dropped_oversize = b->counters->dropped_oversize;
        counters.sampled_out = b->counters->sampled_out;
        counters.retried = b->counters->retried;
        counters.rejected = b->counters->rejected;
        counters.dropped_before_send = b->counters->dropped_before_send;
    }
    int err = 0;
    col_track_t *t = col_inflight_open(d->inflight, peer, b->sequence, (uint32_t)b->n_events,
                                       &counters, received_mono, &err);
    if (!t) {
        char reason[96];
        if (err == TC_EFULL) {
            snprintf(reason, sizeof(reason), "collector busy: %zu batches in flight",
                     col_inflight_count(d->inflight));
        } else {
            snprintf(reason, sizeof(reason), "collector out of memory");
        }
        tc_counter_inc(d->m.batches_retry_after);
        send_simple_ack(d, peer, b->sequence, TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, reason);
        return;
    }
    update_inflight_gauge(d);
    bool aborted = false;
    for (size_t i = 0; i < b->n_events && !aborted; i++) {
        Tocsin__V1__Event *ev = b->events[i];
        uint8_t *buf = NULL;
        size_t len = 0;
        if (col_event_encode(ev, received_us, d->instance_id, &buf, &len) != 0) {
            col_track_abort(t, "collector out of memory");
            aborted = true;
            break;
        }
        /* rd_kafka_produceva rather than producev: its RD_KAFKA_V_* macros are GNU
         * statement expressions, which -Wpedantic refuses under clang. */
        rd_kafka_vu_t vu[6];
        memset(vu, 0, sizeof(vu));
        vu[0].vtype = RD_KAFKA_VTYPE_RKT;
        vu[0].u.rkt = d->rkt;
        vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
        vu[1].u.i32 = RD_KAFKA_PARTITION_UA;
        vu[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
        vu[2].u.i = RD_KAFKA_MSG_F_FREE;
        vu[3].vtype = RD_KAFKA_VTYPE_VALUE;
        vu[3].u.mem.ptr = buf;
        vu[3].u.mem.size = len;
        vu[4].vtype = RD_KAFKA_VTYPE_KEY;
        vu[4].u.mem.ptr = ev->service;
        vu[4].u.mem.size = strlen(ev->service);
        vu[5].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vu[5].u.ptr = t;
        rd_kafka_error_t *kerr = rd_kafka_produceva(d->rk, vu, 6);
        rd_kafka_resp_err_t perr = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (kerr) {
            perr = rd_kafka_error_code(kerr);
            rd_kafka_error_destroy(kerr);
        }
        if (perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            free(buf); /* refused: librdkafka did not take it */
            tc_counter_inc(d->m.produce_errors);
            char reason[160];
            snprintf(reason, sizeof(reason), "kafka producer refused event %zu: %s", i,
                     rd_kafka_err2str(perr));
            uint64_t suppressed = 0;
            if (tc_log_limit_allow(&d->produce_log, tc_mono_us(), &suppressed)) {
                tc_logj(TC_LOG_WARN, "collector.produce_refused",
                        json_pack("{s:I, s:I}", "sequence", (json_int_t)b->sequence, "suppressed",
                                  (json_int_t)suppressed),
                        "%s", reason);
            }
            col_track_abort(t, reason);
            aborted = true;
            break;
        }
        col_track_enqueued(t);
    }
    if (!aborted) {
        col_track_seal(t);
    }
    /* Done already only when aborted before any event went in; otherwise the last
     * delivery report finishes the batch. */
    if (col_track_done(t)) {
        finish_batch(d, t);
    }
}

/* One message from the ROUTER: its frames are checked for shape, the payload decoded and
 * validated, and the batch produced or refused. */
static void handle_message(col_daemon_t *d, const col_frame_t *frames, size_t nframes)
{
    int64_t received_us = tc_now_us();
    int64_t received_mono = tc_mono_us();
    tc_counter_inc(d->m.batches_received);
    col_peer_t peer;
    col_frame_t payload;
    if (col_envelope_parse(frames, nframes, &peer, &payload) != 0) {
        col_reject_t rej = {.reason = COL_REASON_MALFORMED, .event_index = -1};
        snprintf(rej.message, sizeof(rej.message),
                 "message: %zu frame(s) after the routing id; expected [payload] or "
                 "[empty][payload]",
                 nframes ? nframes - 1 : 0);
        if (peer.identity_len == 0) {
            tc_counter_inc(d->m.batches_rejected[rej.reason]);
            log_rejection(d, &rej); /* no routing id: nobody to answer */
            return;
        }
        reject_batch(d, &peer, &rej);
        return;
    }
    Tocsin__V1__Batch *b = NULL;
    col_reject_t rej;
    if (col_batch_decode(payload.data, payload.len, &d->limits, &b, &rej) != 0) {
        reject_batch(d, &peer, &rej);
        return;
    }
    tc_counter_add(d->m.events_received, b->n_events);
    produce_batch(d, &peer, b, received_us, received_mono);
    col_batch_free(b);
}

/*
 * Takes up to RECV_BUDGET messages off the ROUTER without blocking. Each message's frames
 * are read whole; frames past MAX_FRAMES are read and dropped so the next message starts
 * clean, and the message counts as malformed.
 */
static void drain_router(col_daemon_t *d)
{
    for (int k = 0; k < RECV_BUDGET; k++) {
        zmq_msg_t parts[MAX_FRAMES + 1];
        size_t n = 0;
        bool more = true;
        while (more) {
            zmq_msg_t *m = &parts[n < MAX_FRAMES ? n : MAX_FRAMES];
            zmq_msg_init(m);
            if (zmq_msg_recv(m, d->router, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                int e = errno;
                zmq_msg_close(m);
                if (n == 0 && (e == EAGAIN || e == EINTR)) {
                    return;
                }
                /* A message is delivered whole or not at all: reaching here mid-message
                 * means the context is going away. */
                for (size_t i = 0; i < (n < MAX_FRAMES ? n : MAX_FRAMES); i++) {
                    zmq_msg_close(&parts[i]);
                }
                if (e != ETERM) {
                    tc_log(TC_LOG_ERROR, "collector.recv_failed", "%s", zmq_strerror(e));
                }
                return;
            }
            more = zmq_msg_more(m);
            if (n >= MAX_FRAMES) {
                zmq_msg_close(m); /* one frame too many: dropped, counted by n */
            }
            n++;
        }
        size_t kept = n < MAX_FRAMES ? n : MAX_FRAMES;
        col_frame_t frames[MAX_FRAMES];
        for (size_t i = 0; i < kept; i++) {
            frames[i].data = zmq_msg_data(&parts[i]);
            frames[i].len = zmq_msg_size(&parts[i]);
        }
        /* More than MAX_FRAMES frames is as malformed as MAX_FRAMES frames. */
        handle_message(d, frames, kept);
        for (size_t i = 0; i < kept; i++) {
            zmq_msg_close(&parts[i]);
        }
    }
}

/* Serves librdkafka's main queue: delivery reports and errors, through the callbacks. */
static void serve_kafka(col_daemon_t *d)
{
    /* Drain the wake-up pipe first: an event queued after this still writes to it. */
    char buf[64];
    while (read(d->kpipe[0], buf, sizeof(buf)) > 0) {
    }
    for (int k = 0; k < 64 && rd_kafka_poll(d->rk, 0) > 0; k++) {
    }
}

static int run_loop(col_daemon_t *d)
{
    zmq_pollitem_t items[3] = {
        {d->router, 0, ZMQ_POLLIN, 0},
        {NULL, d->kpipe[0], ZMQ_POLLIN, 0},
        {NULL, tc_signal_fd(), ZMQ_POLLIN, 0},
    };
    while (!tc_signal_stop_requested()) {
        /* Events left on the queue (the serve budget ran out) mean: do not sleep. */
        long timeout = rd_kafka_queue_length(d->mainq) > 0 ? 0 : 1000;
        if (zmq_poll(items, 3, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            tc_log(TC_LOG_ERROR, "collector.poll_failed", "%s", zmq_strerror(errno));
            return TC_EZMQ;
        }
        if (items[2].revents & ZMQ_POLLIN) {
            tc_signal_drain();
            if (tc_signal_take_reload()) {
                tc_log(TC_LOG_INFO, "collector.reload", "nothing to reload yet");
            }
        }
        serve_kafka(d);
        if (items[0].revents & ZMQ_POLLIN) {
            drain_router(d);
        }
    }
    return 0;
}

/*
 * Stops taking batches and gives the ones in flight up to shutdown.timeout to be delivered,
 * answering each as its reports arrive. What is still in flight then is purged from the
 * producer; its reports fail and those batches are answered retry-after, so their clients
 * send them to another collector or again later.
 */
static void drain_inflight(col_daemon_t *d)
{
    size_t n = col_inflight_count(d->inflight);
    tc_log(TC_LOG_INFO, "collector.draining",
           "%zu batch(es) in flight, waiting up to %" PRId64 " ms", n, d->cfg.shutdown_timeout_ms);
    int64_t deadline = tc_mono_us() + d->cfg.shutdown_timeout_ms * 1000;
    while (col_inflight_count(d->inflight) > 0 && !d->fatal) {
        int64_t left_ms = (deadline - tc_mono_us()) / 1000;
        if (left_ms <= 0) {
            break;
        }
        rd_kafka_flush(d->rk, (int)(left_ms < 100 ? left_ms : 100));
        serve_kafka(d);
    }
    if (col_inflight_count(d->inflight) > 0) {
        tc_log(TC_LOG_WARN, "collector.drain_timeout",
               "%zu batch(es) still in flight; purging them (answered retry-after)",
               col_inflight_count(d->inflight));
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        int64_t purge_deadline = tc_mono_us() + 2000 * 1000;
        while (col_inflight_count(d->inflight) > 0 && tc_mono_us() < purge_deadline) {
            rd_kafka_poll(d->rk, 100);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Start and stop
 */

static char *default_instance_id(void)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0) {
        tc_strlcpy(host, "collector", sizeof(host));
    }
    host[sizeof(host) - 1] = '\0';
    char *id = NULL;
    if (asprintf(&id, "%s-%ld", host, (long)getpid()) < 0) {
        return NULL;
    }
    return id;
}

static int limits_from_config(const col_config_t *c, col_limits_t *l)
{
    l->max_frame_bytes = (size_t)c->max_frame_bytes;
    l->max_events = (uint32_t)c->max_events;
    l->max_short_string = (size_t)c->max_short_string;
    l->max_long_string = (size_t)c->max_long_string;
    l->max_tags = (uint32_t)c->max_tags;
    l->max_frames = (uint32_t)c->max_frames;
    l->max_log_fields = (uint32_t)c->max_log_fields;
    l->max_fingerprint_parts = (uint32_t)c->max_fingerprint_parts;
    if (l->max_frame_bytes == 0 || l->max_frame_bytes > (size_t)1 << 30) {
        tc_log(TC_LOG_ERROR, "collector.config", "limits.max_frame_bytes: between 1 and 1GiB");
        return TC_EINVAL;
    }
    if (c->retry_after_ms > UINT32_MAX) {
        tc_log(TC_LOG_ERROR, "collector.config", "retry_after: too long");
        return TC_EINVAL;
    }
    if (!c->topic_events[0] || !c->listen[0]) {
        tc_log(TC_LOG_ERROR, "collector.config", "topic.events and listen must not be empty");
        return TC_EINVAL;
    }
    return 0;
}

static int kafka_start(col_daemon_t *d)
{
    char *bootstrap = NULL;
    int rc =
        tc_kafka_bootstrap(d->cfg.brokers, d->cfg.brokers_file, BROKERS_FILE_WAIT_MS, &bootstrap);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.kafka",
               "no Kafka bootstrap servers (brokers=\"%s\", "
               "brokers_file=\"%s\"): %s",
               d->cfg.brokers, d->cfg.brokers_file, tc_strerror(rc));
        return rc;
    }
    char err[512];
    char timeout[32];
    snprintf(timeout, sizeof(timeout), "%" PRId64, d->cfg.message_timeout_ms);
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new(bootstrap, d->instance_id, &d->cfg.kafka, err, sizeof(err));
    if (!conf) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "%s", err);
        free(bootstrap);
        return TC_EINVAL;
    }
    static const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"compression.type", "lz4"},
    };
    rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        rc = tc_kafka_conf_set_default(conf, &d->cfg.kafka, defaults[i][0], defaults[i][1], err,
                                       sizeof(err));
    }
    if (rc == 0) {
        rc = tc_kafka_conf_set_default(conf, &d->cfg.kafka, "message.timeout.ms", timeout, err,
                                       sizeof(err));
    }
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "%s", err);
        rd_kafka_conf_destroy(conf);
        free(bootstrap);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_opaque(conf, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!d->rk) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "cannot create the producer: %s", err);
        rd_kafka_conf_destroy(conf);
        free(bootstrap);
        return TC_EKAFKA;
    }
    conf = NULL; /* rk owns conf now */
    tc_log(TC_LOG_INFO, "collector.kafka", "producing to %s via %s", d->cfg.topic_events,
           bootstrap);
    free(bootstrap);
    d->rkt = rd_kafka_topic_new(d->rk, d->cfg.topic_events, NULL);
    if (!d->rkt) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "topic %s: %s", d->cfg.topic_events,
               rd_kafka_err2str(rd_kafka_last_error()));
        return TC_EKAFKA;
    }
    if (pipe2(d->kpipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "pipe: %s", strerror(errno));
        return TC_EIO;
    }
    d->mainq = rd_kafka_queue_get_main(d->rk);
    rd_kafka_queue_io_event_enable(d->mainq, d->kpipe[1], "k", 1);
    return 0;
}

static int zmq_start(col_daemon_t *d)
{
    d->zctx = zmq_ctx_new();
    if (!d->zctx) {
        return TC_EZMQ;
    }
    d->router = zmq_socket(d->zctx, ZMQ_ROUTER);
    if (!d->router) {
        return TC_EZMQ;
    }
    int one = 1;
    int linger = 0;
    /* Frames up to twice the batch limit are read and answered too_big; beyond that
     * ZeroMQ drops the connection before buffering them, so memory stays bounded. */
    int64_t maxmsg = (int64_t)d->limits.max_frame_bytes * 2 + 65536;
    if (zmq_setsockopt(d->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(d->router, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_setsockopt(d->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0) {
        tc_log(TC_LOG_ERROR, "collector.zmq", "setsockopt: %s", zmq_strerror(errno));
        return TC_EZMQ;
    }
    if (zmq_bind(d->router, d->cfg.listen) != 0) {
        tc_log(TC_LOG_ERROR, "collector.zmq", "cannot bind %s: %s", d->cfg.listen,
               zmq_strerror(errno));
        return TC_EZMQ;
    }
    return 0;
}

static int http_start(col_daemon_t *d)
{
    d->http = tc_http_new("collector");
    if (!d->http) {
        return TC_ENOMEM;
    }
    tc_http_set_metrics(d->http, d->metrics);
    tc_http_set_ready(d->http, ready_check, &d->probe);
    int rc = tc_http_start(d->http, d->cfg.http_bind, (uint16_t)d->cfg.http_port);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.http", "cannot listen on %s:%" PRId64 ": %s",
               d->cfg.http_bind, d->cfg.http_port, tc_strerror(rc));
    }
    return rc;
}

static int probe_start(col_daemon_t *d)
{
    d->probe.rk = d->rk;
    if (pthread_create(&d->probe_thread, NULL, probe_main, &d->probe) != 0) {
        return TC_EIO;
    }
    d->probe_running = true;
    return 0;
}

static void probe_stop(col_daemon_t *d)
{
    if (!d->probe_running) {
        return;
    }
    pthread_mutex_lock(&d->probe.mu);
    d->probe.stop = true;
    pthread_cond_signal(&d->probe.cv);
    pthread_mutex_unlock(&d->probe.mu);
    pthread_join(d->probe_thread, NULL);
    d->probe_running = false;
}

/* Tears down in the order the pieces depend on each other; safe on a half-started daemon. */
static void daemon_stop(col_daemon_t *d)
{
    tc_http_destroy(&d->http);
    probe_stop(d);
    if (d->rkt) {
        rd_kafka_topic_destroy(d->rkt);
        d->rkt = NULL;
    }
    if (d->mainq) {
        rd_kafka_queue_io_event_enable(d->mainq, -1, NULL, 0);
        rd_kafka_queue_destroy(d->mainq);
        d->mainq = NULL;
    }
    if (d->rk) {
        rd_kafka_destroy(d->rk);
        d->rk = NULL;
    }
    /* Trackers whose reports never came (the producer is gone now) are freed unanswered;
     * their clients time out and resend. */
    col_inflight_destroy(&d->inflight);
    for (int i = 0; i < 2; i++) {
        if (d->kpipe[i] >= 0) {
            close(d->kpipe[i]);
            d->kpipe[i] = -1;
        }
    }
    if (d->router) {
        /* Give the last Acks a moment to leave. */
        int linger = 1000;
        zmq_setsockopt(d->router, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_close(d->router);
        d->router = NULL;
    }
    if (d->zctx) {
        zmq_ctx_term(d->zctx);
        d->zctx = NULL;
    }
    tc_metrics_destroy(&d->metrics);
    free(d->instance_id);
    d->instance_id = NULL;
    pthread_mutex_destroy(&d->probe.mu);
    pthread_cond_destroy(&d->probe.cv);
    tc_config_free(config_table, &d->cfg);
}

static void log_listening(col_daemon_t *d)
{
    char endpoint[256] = "";
    size_t len = sizeof(endpoint);
    if (zmq_getsockopt(d->router, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0) {
        tc_strlcpy(endpoint, d->cfg.listen, sizeof(endpoint));
    }
    tc_logj(TC_LOG_INFO, "collector.listening",
            json_pack("{s:s, s:s, s:i, s:s, s:s}", "endpoint", endpoint, "http_bind",
                      d->cfg.http_bind, "http_port", (int)tc_http_port(d->http), "topic",
                      d->cfg.topic_events, "instance", d->instance_id),
            "taking batches on %s, HTTP on port %u", endpoint, (unsigned)tc_http_port(d->http));
}

int main(int argc, char **argv)
{
    static col_daemon_t daemon; /* static: large, and the callbacks point at it */
    col_daemon_t *d = &daemon;
    d->kpipe[0] = d->kpipe[1] = -1;
    pthread_mutex_init(&d->probe.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->probe.cv, &ca);
    pthread_condattr_destroy(&ca);
    d->reject_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);
    d->ack_drop_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);
    d->produce_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);

    int rc = tc_config_cli(config_table, &d->cfg, argc, argv, usage);
    if (rc != 0) {
        pthread_mutex_destroy(&d->probe.mu);
        pthread_cond_destroy(&d->probe.cv);
        return rc > 0 ? 0 : 2;
    }
    tc_log_level_t level;
    if (tc_log_level_parse(d->cfg.log_level, &level) != 0) {
        fprintf(stderr, "%s: log.level: \"%s\" is not debug, info, warn or error\n", argv[0],
                d->cfg.log_level);
        daemon_stop(d);
        return 2;
    }
    tc_log_init("collector", level);
    if (limits_from_config(&d->cfg, &d->limits) != 0) {
        daemon_stop(d);
        return 2;
    }
    d->instance_id = d->cfg.instance_id[0] ? strdup(d->cfg.instance_id) : default_instance_id();
    d->inflight = col_inflight_new((uint32_t)d->cfg.max_inflight_batches);
    d->metrics = tc_metrics_new();
    if (!d->instance_id || !d->inflight || !d->metrics ||
        metrics_register(d->metrics, &d->m) != 0) {
        tc_log(TC_LOG_ERROR, "collector.start", "out of memory");
        daemon_stop(d);
        return 1;
    }
    if (tc_signal_init() != 0) {
        tc_log(TC_LOG_ERROR, "collector.start", "cannot install signal handlers");
        daemon_stop(d);
        return 1;
    }
    if (kafka_start(d) != 0 || zmq_start(d) != 0 || http_start(d) != 0 || probe_start(d) != 0) {
        daemon_stop(d);
        return 1;
    }
    log_listening(d);

    rc = run_loop(d);
    drain_inflight(d);
    tc_logj(TC_LOG_INFO, "collector.stopped",
            json_pack("{s:I, s:I, s:I}", "batches_received",
                      (json_int_t)tc_counter_get(d->m.batches_received), "events_accepted",
                      (json_int_t)tc_counter_get(d->m.events_accepted), "unanswered",
                      (json_int_t)col_inflight_count(d->inflight)),
            "stopped");
    bool failed = rc != 0 || d->fatal;
    daemon_stop(d);
    return failed ? 1 : 0;
}
