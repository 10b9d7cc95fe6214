/*
 * tocsin-collector — takes Batches in on a ZeroMQ ROUTER, validates, authenticates, rate
 * limits, scrubs and enriches them, writes every event to Kafka, and answers each batch with
 * an Ack once every event is durable: in Kafka (delivery report) or in the disk spool.
 *
 * One thread does the work: it polls the ROUTER socket, a pipe that librdkafka writes to
 * when its main queue has delivery reports or errors, and the signal pipe, all in one
 * zmq_poll; delivery reports are served on this thread, so the in-flight sets need no lock.
 * Other threads: ZeroMQ's I/O threads (CURVE runs there), czmq's zauth actor (CURVE client
 * authentication), libmicrohttpd's (health and metrics: atomics and the probe's lock only),
 * and the Kafka probe, which asks for metadata every few seconds for /health/ready.
 *
 * Modes. LIVE: batches are produced as they come. SPOOLING: entered when a delivery fails in
 * a way a retry could fix, when no report arrives within kafka.message_timeout, or when
 * librdkafka says every broker is down. Entering it purges everything queued in the
 * producer, so the batches in flight fail at once and go to the spool in arrival order
 * (librdkafka's own message time-out, which leaves gaps in a partition, is set far beyond
 * ours). While SPOOLING, new batches go straight to the spool, behind them. Spool entries are
 * replayed in order once Kafka answers, and leave the spool only after their delivery
 * reports; when the spool is empty and nothing is in flight, the collector is LIVE again.
 * Order per Kafka key (each series, issue and log stream) is therefore the order batches
 * were taken, with at most repeats of events whose fate a purge made unknown (consumers drop
 * duplicates by event_id).
 */
#include <assert.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <xxhash.h>
#include <zmq.h>

#include "col_arena.h"
#include "col_enrich.h"
#include "col_keys.h"
#include "col_pack.h"
#include "col_scrub.h"
#include "col_spool.h"
#include "col_track.h"
#include "col_validate.h"
#include "col_wire.h"
#include "tc_config.h"
#include "tc_error.h"
#include "tc_http.h"
#include "tc_kafka.h"
#include "tc_log.h"
#include "tc_metrics.h"
#include "tc_selfmon.h"
#include "tc_signal.h"
#include "tc_util.h"

/* How long to wait for `brokers_file` to appear (tocsin-bus may still be starting). */
#define BROKERS_FILE_WAIT_MS 30000
/* How often the Kafka probe asks for metadata, and how long one request may take. */
#define PROBE_INTERVAL_MS 2000
#define PROBE_TIMEOUT_MS 2000
/* Messages taken from the ROUTER per loop turn, so delivery reports are never starved. */
#define RECV_BUDGET 64
/* A message with more frames than this is malformed; the rest are read and dropped. */
#define MAX_FRAMES 4
/* The arena one batch is decoded into may hold this many times the frame limit. */
#define ARENA_FACTOR 16
/* Largest keys or scrub rules file read. */
#define RULES_FILE_MAX (16 * 1024 * 1024)
/* How often the CURVE client directory is checked for changes. */
#define CERTDIR_CHECK_US 250000
/* Replay back-off after a failed attempt: from 500 ms, doubling, to 30 s. */
#define REPLAY_BACKOFF_MIN_US 500000
#define REPLAY_BACKOFF_MAX_US 30000000
/* Spool entries replayed at once, at most. */
#define REPLAY_MAX_ENTRIES 256

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
    char *topic_logs;
    uint64_t max_frame_bytes;
    uint64_t max_message_bytes;
    int64_t max_events;
    uint64_t max_short_string;
    uint64_t max_long_string;
    int64_t max_tags;
    int64_t max_frames;
    int64_t max_log_fields;
    int64_t max_fingerprint_parts;
    int64_t io_threads;
    int64_t rcvhwm;
    bool curve_enabled;
    char *curve_server_cert;
    char *curve_clients_dir;
    char *keys_file;
    char *scrub_file;
    int64_t max_future_ms;
    int64_t max_past_ms;
    char *spool_dir;
    uint64_t spool_max_bytes;
    double spool_high_water;
    uint64_t replay_inflight_bytes;
    int64_t max_inflight_batches;
    uint64_t max_inflight_bytes;
    uint64_t pack_max_bytes;
    int64_t retry_after_ms;
    int64_t message_timeout_ms;
    int64_t shutdown_timeout_ms;
    tc_selfmon_config_t selfmon;
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
     "Kafka topic for errors, requests and metrics (keyed service\\0name or service\\0hash)", 0, 0},
    {"topic.logs", TC_CFG_STRING, "tocsin.logs", OFF(topic_logs),
     "Kafka topic for log records (keyed by service)", 0, 0},
    {"limits.max_frame_bytes", TC_CFG_SIZE, "1MiB", OFF(max_frame_bytes),
     "largest encoded Batch taken (larger: rejected too_big)", 0, 0},
    {"limits.max_message_bytes", TC_CFG_SIZE, "4MiB", OFF(max_message_bytes),
     "largest ZeroMQ message read at all (ZMQ_MAXMSGSIZE); between max_frame_bytes and this a "
     "batch is answered too_big, above it ZeroMQ closes the connection",
     0, 0},
    {"limits.max_events", TC_CFG_INT, "2000", OFF(max_events), "events per batch", 1, 1000000},
    {"limits.max_short_string", TC_CFG_SIZE, "256", OFF(max_short_string),
     "bytes in a name-like string (service, route, tag, field, frame field, ...)", 0, 0},
    {"limits.max_long_string", TC_CFG_SIZE, "16KiB", OFF(max_long_string),
     "bytes in an error or log message", 0, 0},
    {"limits.max_tags", TC_CFG_INT, "64", OFF(max_tags), "tags per event", 0, 1000000},
    {"limits.max_frames", TC_CFG_INT, "128", OFF(max_frames), "stack frames per error", 0, 1000000},
    {"limits.max_log_fields", TC_CFG_INT, "64", OFF(max_log_fields),
     "structured fields per log record", 0, 1000000},
    {"limits.max_fingerprint_parts", TC_CFG_INT, "16", OFF(max_fingerprint_parts),
     "explicit fingerprint parts per error", 0, 1000000},
    {"zmq.io_threads", TC_CFG_INT, "0", OFF(io_threads),
     "ZeroMQ I/O threads (CURVE runs in them); 0: one per CPU, at most 16", 0, 64},
    {"zmq.rcvhwm", TC_CFG_INT, "100", OFF(rcvhwm),
     "batches queued per client connection before ZeroMQ stops reading it", 1, 1000000},
    {"curve.enabled", TC_CFG_BOOL, "false", OFF(curve_enabled),
     "CURVE encryption on the ROUTER (curve.server_cert required)", 0, 0},
    {"curve.server_cert", TC_CFG_STRING, "", OFF(curve_server_cert),
     "this collector's czmq certificate (FILE or FILE_secret with the secret key)", 0, 0},
    {"curve.clients_dir", TC_CFG_STRING, "", OFF(curve_clients_dir),
     "directory of allowed client certificates (czmq zauth; changes picked up, a removed key "
     "is refused); empty: any client, encryption only",
     0, 0},
    {"auth.keys_file", TC_CFG_STRING, "", OFF(keys_file),
     "API keys per service with quotas (reloaded on SIGHUP); empty: no key required", 0, 0},
    {"scrub.rules_file", TC_CFG_STRING, "", OFF(scrub_file),
     "scrubbing rules (reloaded on SIGHUP); empty: the built-in defaults", 0, 0},
    {"enrich.max_future", TC_CFG_DURATION, "5m", OFF(max_future_ms),
     "an event time further ahead than this is clamped to the receive time", 0, 0},
    {"enrich.max_past", TC_CFG_DURATION, "30d", OFF(max_past_ms),
     "an event time further back than this is clamped to the receive time", 0, 0},
    {"spool.dir", TC_CFG_STRING, "", OFF(spool_dir),
     "LMDB spool for when Kafka cannot take events; empty: no spool (retry-after instead)", 0, 0},
    {"spool.max_bytes", TC_CFG_SIZE, "1GiB", OFF(spool_max_bytes),
     "bound of the spool; when full, batches are answered retry-after", 0, 0},
    {"spool.high_water", TC_CFG_DOUBLE, "0.8", OFF(spool_high_water),
     "fraction of spool.max_bytes above which /health/ready fails while Kafka is away", 0, 0},
    {"spool.replay_inflight", TC_CFG_SIZE, "64MiB", OFF(replay_inflight_bytes),
     "bytes of spool entries being replayed at once", 0, 0},
    {"max_inflight_batches", TC_CFG_INT, "1000", OFF(max_inflight_batches),
     "batches awaiting delivery reports; beyond it batches are answered retry-after", 1, 10000000},
    {"max_inflight_bytes", TC_CFG_SIZE, "256MiB", OFF(max_inflight_bytes),
     "bytes of records awaiting delivery reports; beyond it batches are answered retry-after", 0,
     0},
    {"pack.max_bytes", TC_CFG_SIZE, "256KiB", OFF(pack_max_bytes),
     "largest Kafka record value: the events of one batch and key are packed into one record "
     "(tocsin.v1.EventPack) up to this size, then into the next (1KiB to 64MiB)",
     0, 0},
    {"retry_after", TC_CFG_DURATION, "1s", OFF(retry_after_ms),
     "retry_after_ms put in RETRY_AFTER Acks (busy, spool full, delivery failed)", 0, 0},
    {"kafka.message_timeout", TC_CFG_DURATION, "5s", OFF(message_timeout_ms),
     "a delivery not reported by then is taken back from the producer and spooled "
     "(without a spool: answered retry-after)",
     0, 0},
    {"shutdown.timeout", TC_CFG_DURATION, "10s", OFF(shutdown_timeout_ms),
     "on SIGTERM, how long in-flight deliveries may take before they are spooled", 0, 0},
    TC_SELFMON_CONFIG_ENTRIES(col_config_t, selfmon, "self"),
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, OFF(kafka),
     "passed to librdkafka unchanged (kafka.security.protocol=SASL_SSL, kafka.linger.ms, ...)", 0,
     0},
    TC_CFG_END,
};

static const char usage[] =
    "Usage: tocsin-collector [--config FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "Takes tocsin.v1.Batch messages on a ZeroMQ ROUTER socket (optionally CURVE), checks\n"
    "limits, API keys and quotas, scrubs secrets, writes each event to Kafka (topic.events,\n"
    "topic.logs) and acks each batch once Kafka has every event or the disk spool holds it.\n"
    "SIGHUP reloads API keys, quotas, scrub rules and CURVE client keys.\n";

/* ---------------------------------------------------------------------------------------
 * Metrics
 */

/* Client-side loss figures, one label each on tocsin_collector_client_dropped_total. */
enum { CLIENT_QUEUE_FULL, CLIENT_OVERSIZE, CLIENT_SAMPLED_OUT, CLIENT_BEFORE_SEND, CLIENT_N };
static const char *const client_drop_labels[CLIENT_N] = {
    "reason=\"queue_full\"", "reason=\"oversize\"", "reason=\"sampled_out\"",
    "reason=\"before_send\""};

/* Why a batch was answered RETRY_AFTER. */
enum { RETRY_BUSY, RETRY_RATE_LIMITED, RETRY_SPOOL_FULL, RETRY_KAFKA, RETRY_PERMANENT, RETRY_N };
static const char *const retry_labels[RETRY_N] = {"reason=\"busy\"", "reason=\"rate_limited\"",
                                                  "reason=\"spool_full\"", "reason=\"kafka\"",
                                                  "reason=\"kafka_permanent\""};

/* Why the producer's queue was taken back (the reason label of kafka_purges_total). */
enum {
    PURGE_BROKERS_DOWN,
    PURGE_DELIVERY_FAILED,
    PURGE_TIMEOUT,
    PURGE_PROBE,
    PURGE_PRODUCE_REFUSED,
    PURGE_REPLAY_FAILED,
    PURGE_SHUTDOWN,
    PURGE_N
};
static const char *const purge_labels[PURGE_N] = {
    "reason=\"brokers_down\"", "reason=\"delivery_failed\"", "reason=\"timeout\"",
    "reason=\"probe\"",        "reason=\"produce_refused\"", "reason=\"replay_failed\"",
    "reason=\"shutdown\""};

enum { CLAMP_MISSING, CLAMP_FUTURE, CLAMP_PAST, CLAMP_N };
static const char *const clamp_labels[CLAMP_N] = {"direction=\"missing\"", "direction=\"future\"",
                                                  "direction=\"past\""};

typedef struct {
    tc_counter_t *batches_received;
    tc_counter_t *events_received;
    tc_counter_t *events_accepted;
    tc_counter_t *events_reencoded;
    tc_counter_t *batches_stored;
    tc_counter_t *batches_rejected[COL_REASON_COUNT];
    tc_counter_t *batches_retry_after[RETRY_N];
    tc_counter_t *rate_limited_events;
    tc_counter_t *scrubbed[COL_SCRUB_KIND_COUNT];
    tc_counter_t *clamped[CLAMP_N];
    tc_counter_t *grouped[TC_GROUPING_MESSAGE + 1];
    tc_counter_t *delivery_failures_retriable;
    tc_counter_t *delivery_failures_permanent;
    tc_counter_t *produce_errors;
    tc_counter_t *records_produced;
    tc_counter_t *purges[PURGE_N];
    tc_counter_t *spooled_batches;
    tc_counter_t *spooled_events;
    tc_counter_t *replayed_entries;
    tc_counter_t *replayed_events;
    tc_counter_t *replay_failures;
    tc_counter_t *spool_corrupt;
    tc_counter_t *spool_dead;
    tc_counter_t *spool_errors;
    tc_counter_t *acks_dropped;
    tc_counter_t *reloads_ok;
    tc_counter_t *reloads_failed;
    tc_counter_t *client_dropped[CLIENT_N];
    tc_counter_t *client_retried;
    tc_counter_t *client_rejected;
    tc_gauge_t *inflight;
    tc_gauge_t *inflight_events;
    tc_gauge_t *inflight_bytes;
    tc_gauge_t *spooling;
    tc_gauge_t *spool_bytes;
    tc_gauge_t *spool_entries;
    tc_gauge_t *spool_dead_entries;
    tc_gauge_t *spool_max_bytes;
    tc_gauge_t *api_keys;
    tc_gauge_t *curve_clients;
    tc_histogram_t *delivery_latency;
} col_metrics_t;

#define COUNTER(field, name, labels, help)                                                         \
    do {                                                                                           \
        m->field = tc_metrics_counter(reg, "tocsin_collector_" name, labels, help);                \
        if (!m->field) {                                                                           \
            return TC_ENOMEM;                                                                      \
        }                                                                                          \
    } while (0)
#define GAUGE(field, name, help)                                                                   \
    do {                                                                                           \
        m->field = tc_metrics_gauge(reg, "tocsin_collector_" name, NULL, help);                    \
        if (!m->field) {                                                                           \
            return TC_ENOMEM;                                                                      \
        }                                                                                          \
    } while (0)

static int metrics_register(tc_metrics_t *reg, col_metrics_t *m)
{
    static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                            0.25,  0.5,    1,     2.5,  5,     10,   30};
    memset(m, 0, sizeof(*m));
    char labels[96];
    COUNTER(batches_received, "batches_received_total", NULL,
            "Messages received on the ROUTER socket");
    COUNTER(events_received, "events_received_total", NULL,
            "Events in batches that passed validation");
    COUNTER(events_accepted, "events_accepted_total", NULL,
            "Events acked STORED (delivered to Kafka or written to the spool)");
    COUNTER(batches_stored, "batches_stored_total", NULL, "Batches acked STORED");
    COUNTER(events_reencoded, "events_reencoded_total", NULL,
            "Events decoded and encoded again (scrubbed, grouped, or of a complex shape); the "
            "others leave as the client encoded them, with the collector's fields appended");
    for (int r = COL_REASON_NONE + 1; r < COL_REASON_COUNT; r++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", col_reason_name((col_reason_t)r));
        COUNTER(batches_rejected[r], "batches_rejected_total", labels,
                "Batches acked REJECTED, by reason");
    }
    for (int r = 0; r < RETRY_N; r++) {
        COUNTER(batches_retry_after[r], "batches_retry_after_total", retry_labels[r],
                "Batches acked RETRY_AFTER, by reason");
    }
    COUNTER(rate_limited_events, "rate_limited_events_total", NULL,
            "Events in batches answered retry-after by their service's quota");
    for (int k = 0; k < COL_SCRUB_KIND_COUNT; k++) {
        snprintf(labels, sizeof(labels), "kind=\"%s\"", col_scrub_kind_name((col_scrub_kind_t)k));
        COUNTER(scrubbed[k], "scrubbed_total", labels, "Values scrubbed, by kind");
    }
    for (int c = 0; c < CLAMP_N; c++) {
        COUNTER(clamped[c], "time_clamped_total", clamp_labels[c],
                "Event times set to the receive time: missing, too far ahead or behind");
    }
    for (int b = TC_GROUPING_FINGERPRINT; b <= TC_GROUPING_MESSAGE; b++) {
        snprintf(labels, sizeof(labels), "basis=\"%s\"",
                 tc_grouping_basis_name((tc_grouping_basis_t)b));
        COUNTER(grouped[b], "errors_grouped_total", labels,
                "Grouping ids computed for errors without one, by the rule used");
    }
    COUNTER(delivery_failures_retriable, "delivery_failures_total", "kind=\"retriable\"",
            "Failed Kafka delivery reports (retriable ones include purges)");
    COUNTER(delivery_failures_permanent, "delivery_failures_total", "kind=\"permanent\"",
            "Failed Kafka delivery reports (retriable ones include purges)");
    COUNTER(produce_errors, "produce_errors_total", NULL,
            "Records the producer refused at once (queue full, ...)");
    COUNTER(records_produced, "records_produced_total", NULL,
            "Kafka records handed to the producer (a pack of one key's events of a batch, or "
            "one event of a spool entry written before packing; replays included)");
    for (int p = 0; p < PURGE_N; p++) {
        COUNTER(purges[p], "kafka_purges_total", purge_labels[p],
                "Times the producer's queue was taken back to spool it, by what showed Kafka "
                "away (timeout: no delivery report within kafka.message_timeout)");
    }
    COUNTER(spooled_batches, "spooled_batches_total", NULL, "Batches written to the spool");
    COUNTER(spooled_events, "spooled_events_total", NULL, "Events written to the spool");
    COUNTER(replayed_entries, "replayed_entries_total", NULL,
            "Spool entries delivered to Kafka and removed from the spool");
    COUNTER(replayed_events, "replayed_events_total", NULL,
            "Events delivered to Kafka from the spool");
    COUNTER(replay_failures, "replay_failures_total", NULL,
            "Replay attempts that failed (the entries stay in the spool)");
    COUNTER(spool_corrupt, "spool_corrupt_entries_total", NULL,
            "Spool entries that could not be read back (logged and removed)");
    COUNTER(spool_errors, "spool_errors_total", NULL, "Spool writes that failed");
    COUNTER(spool_dead, "spool_dead_total", NULL,
            "Spool entries Kafka can never take (too large, refused for good), moved aside");
    COUNTER(acks_dropped, "acks_dropped_total", NULL,
            "Acks not sent: client gone or its queue full");
    COUNTER(reloads_ok, "reloads_total", "result=\"ok\"", "SIGHUP reloads");
    COUNTER(reloads_failed, "reloads_total", "result=\"failed\"", "SIGHUP reloads");
    for (int c = 0; c < CLIENT_N; c++) {
        COUNTER(client_dropped[c], "client_dropped_total", client_drop_labels[c],
                "Events clients report they dropped");
    }
    COUNTER(client_retried, "client_retried_total", NULL, "Batches clients report they resent");
    COUNTER(client_rejected, "client_rejected_total", NULL,
            "Events clients report lost in batches a collector rejected");
    GAUGE(inflight, "inflight_batches", "Batches awaiting their delivery reports or the spool");
    GAUGE(inflight_events, "inflight_events", "Events awaiting their delivery reports");
    GAUGE(inflight_bytes, "inflight_bytes", "Bytes of records awaiting their delivery reports");
    GAUGE(spooling, "spooling", "1 while batches go to the spool instead of Kafka");
    GAUGE(spool_bytes, "spool_bytes", "Bytes of batches held in the spool");
    GAUGE(spool_entries, "spool_entries", "Batches held in the spool");
    GAUGE(spool_dead_entries, "spool_dead_entries",
          "Dead spool entries kept on disk for an operator (they count against the bound)");
    GAUGE(spool_max_bytes, "spool_max_bytes", "Bound of the spool (spool.max_bytes)");
    GAUGE(api_keys, "api_keys", "API keys loaded from auth.keys_file");
    GAUGE(curve_clients, "curve_clients", "Client keys allowed by curve.clients_dir");
    m->delivery_latency =
        tc_metrics_histogram(reg, "tocsin_collector_delivery_latency_seconds", NULL,
                             "From a batch's receipt to its Ack STORED", latency_bounds,
                             sizeof(latency_bounds) / sizeof(latency_bounds[0]));
    return m->delivery_latency ? 0 : TC_ENOMEM;
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
    _Atomic int up_flag;          /* the loop reads this: 1 up, 0 down, -1 not known yet */
    _Atomic uint64_t spool_bytes; /* published by the loop for the readiness check */
    _Atomic uint64_t spool_max;   /* 0: no spool */
    _Atomic int spooling;
    double high_water;
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
    atomic_store(&p->up_flag, up ? 1 : 0);
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

/*
 * The readiness check, on the HTTP thread. Kafka away is degraded while the spool has room
 * below its high-water mark (the collector still takes and acks batches); it is unhealthy
 * when there is no spool, or the spool is above the mark.
 */
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
    uint64_t max = atomic_load(&p->spool_max);
    uint64_t bytes = atomic_load(&p->spool_bytes);
    bool spool_room = max > 0 && (double)bytes < p->high_water * (double)max;
    if (!checked) {
        up = false;
        tc_strlcpy(detail, "not checked yet", sizeof(detail));
    } else if (age_ms > 3 * (PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS)) {
        up = false;
        tc_strlcpy(detail, "probe has not answered", sizeof(detail));
    }
    /* Spooling means Kafka does not take what is produced, whatever metadata says. */
    bool spooling = atomic_load(&p->spooling);
    if (up && spooling) {
        size_t n = strlen(detail);
        snprintf(detail + n, sizeof(detail) - n, "; deliveries are being spooled");
    }
    tc_health_status_t ks = up && !spooling
                                ? TC_HEALTH_HEALTHY
                                : (spool_room ? TC_HEALTH_DEGRADED : TC_HEALTH_UNHEALTHY);
    tc_health_add(health, "kafka", ks, ms, detail);
    if (max > 0) {
        char sd[160];
        snprintf(sd, sizeof(sd), "%" PRIu64 " of %" PRIu64 " bytes (high water %.0f%%)%s", bytes,
                 max, p->high_water * 100, spooling ? ", spooling" : "");
        tc_health_status_t ss = spool_room
                                    ? TC_HEALTH_HEALTHY
                                    : (up && !spooling ? TC_HEALTH_DEGRADED : TC_HEALTH_UNHEALTHY);
        tc_health_add(health, "spool", ss, 0, sd);
    }
}

/* ---------------------------------------------------------------------------------------
 * CURVE client keys, as this process sees them (zauth keeps its own for handshakes)
 */

typedef struct {
    char (*keys)[41]; /* sorted Z85 public keys */
    size_t n;
    struct timespec mtime; /* of the directory when loaded */
    bool loaded;
    int64_t checked_us;
} curve_keys_t;

static int cmp_key40(const void *a, const void *b)
{
    return memcmp(a, b, 40);
}

static void curve_keys_free(curve_keys_t *k)
{
    free(k->keys);
    k->keys = NULL;
    k->n = 0;
}

/* Loads every certificate in `dir` as czmq's zcertstore does (hidden files skipped). */
static int curve_keys_load(curve_keys_t *k, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT && k->loaded) {
        /* The directory is gone: zauth allows nobody new, and so does this. */
        if (k->n > 0 || k->mtime.tv_sec != 0) {
            tc_log(TC_LOG_WARN, "collector.curve",
                   "curve.clients_dir %s is gone: no client allowed", dir);
        }
        curve_keys_free(k);
        memset(&k->mtime, 0, sizeof(k->mtime));
        return 0;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tc_log(TC_LOG_ERROR, "collector.curve", "curve.clients_dir %s: %s", dir,
               errno ? strerror(errno) : "not a directory");
        return TC_EIO;
    }
    DIR *d = opendir(dir);
    if (!d) {
        return TC_EIO;
    }
    char(*keys)[41] = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat fst;
        if (stat(path, &fst) != 0 || !S_ISREG(fst.st_mode)) {
            continue;
        }
        zcert_t *cert = zcert_load(path);
        if (!cert) {
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char(*grown)[41] = realloc(keys, nc * sizeof(*keys));
            if (!grown) {
                zcert_destroy(&cert);
                free(keys);
                closedir(d);
                return TC_ENOMEM;
            }
            keys = grown;
            cap = nc;
        }
        tc_strlcpy(keys[n], zcert_public_txt(cert), sizeof(keys[n]));
        n++;
        zcert_destroy(&cert);
    }
    closedir(d);
    if (n > 1) {
        qsort(keys, n, sizeof(*keys), cmp_key40);
    }
    curve_keys_free(k);
    k->keys = keys;
    k->n = n;
    k->mtime = st.st_mtim;
    k->loaded = true;
    return 0;
}

static bool curve_keys_allowed(const curve_keys_t *k, const char *z85)
{
    if (!z85 || strlen(z85) != 40 || k->n == 0) {
        return false;
    }
    return bsearch(z85, k->keys, k->n, sizeof(*k->keys), cmp_key40) != NULL;
}

/* ---------------------------------------------------------------------------------------
 * The daemon
 */

typedef enum { MODE_LIVE = 0, MODE_SPOOLING = 1 } col_mode_t;

typedef struct {
    col_config_t cfg;
    col_limits_t limits;
    col_enrich_config_t enrich;
    char *instance_id;
    zsock_t *router_sock;
    void *router;
    zactor_t *auth;
    zcert_t *server_cert;
    curve_keys_t curve;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt[COL_TOPIC_COUNT];
    rd_kafka_queue_t *mainq;
    int kpipe[2];
    int64_t queue_max_messages;
    col_inflight_t *inflight;
    col_inflight_t *replays;
    col_arena_t *arena;
    col_packer_t *packer;
    col_scrub_rules_t *scrub;
    col_keys_t *keys;
    col_spool_t *spool;
    tc_metrics_t *metrics;
    col_metrics_t m;
    tc_http_t *http;
    tc_selfmon_t *selfmon; /* heartbeat and spool gauges through the pipeline */
    kafka_probe_t probe;
    bool probe_running;
    pthread_t probe_thread;
    tc_log_limit_t reject_log;
    tc_log_limit_t ack_drop_log;
    tc_log_limit_t produce_log;
    tc_log_limit_t failure_log;
    col_mode_t mode;
    bool stopping;
    bool fatal;
    int64_t last_purge_us;
    bool produced_since_purge; /* a purge takes back only what was produced before it */
    /* replay */
    uint64_t replay_cursor;
    bool replay_failed;
    int64_t replay_resume_us;
    int64_t replay_backoff_us;
    uint64_t replay_bytes;
    /* settle's scratch: batches to spool, spool keys to delete */
    col_track_t **pending;
    const uint8_t **pending_values;
    size_t *pending_lens;
    size_t pending_cap;
    uint64_t *dels;
    size_t n_dels;
    size_t dels_cap;
    uint64_t *deads; /* replayed entries Kafka will never take */
    size_t n_deads;
    size_t deads_cap;
    uint8_t key_buf[COL_KEY_MAX];
} col_daemon_t;

static void publish_state(col_daemon_t *d)
{
    tc_gauge_set(d->m.inflight, (double)col_inflight_count(d->inflight));
    tc_gauge_set(d->m.inflight_events,
                 (double)(col_inflight_events(d->inflight) + col_inflight_events(d->replays)));
    tc_gauge_set(d->m.inflight_bytes,
                 (double)(col_inflight_bytes(d->inflight) + col_inflight_bytes(d->replays)));
    tc_gauge_set(d->m.spooling, d->mode == MODE_SPOOLING ? 1 : 0);
    atomic_store(&d->probe.spooling, d->mode == MODE_SPOOLING);
    if (d->spool) {
        uint64_t bytes = col_spool_bytes(d->spool);
        tc_gauge_set(d->m.spool_bytes, (double)bytes);
        tc_gauge_set(d->m.spool_entries, (double)col_spool_entries(d->spool));
        tc_gauge_set(d->m.spool_dead_entries, (double)col_spool_dead_entries(d->spool));
        atomic_store(&d->probe.spool_bytes, bytes);
    }
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

static void send_retry(col_daemon_t *d, const col_peer_t *peer, uint64_t sequence, int why,
                       uint32_t retry_after_ms, const char *reason)
{
    col_ack_t ack = {.sequence = sequence,
                     .status = TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER,
                     .retry_after_ms = retry_after_ms,
                     .reason = reason};
    tc_counter_inc(d->m.batches_retry_after[why]);
    send_ack(d, peer, &ack);
}

/* Counts a stored batch and answers it. */
static void ack_stored(col_daemon_t *d, col_track_t *t, bool spooled)
{
    col_ack_t ack;
    col_track_ack_stored(t, &ack);
    tc_counter_add(d->m.events_accepted, ack.accepted);
    tc_counter_inc(d->m.batches_stored);
    if (spooled) {
        tc_counter_inc(d->m.spooled_batches);
        tc_counter_add(d->m.spooled_events, ack.accepted);
    }
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
    send_ack(d, col_track_peer(t), &ack);
    col_inflight_close(d->inflight, &t);
}

/* A batch with a record Kafka never takes: REJECTED, counted as too_big. */
static void ack_reject_too_big(col_daemon_t *d, col_track_t *t)
{
    char reason[COL_ACK_REASON_MAX + 1];
    snprintf(reason, sizeof(reason), "%s: %s", col_reason_name(COL_REASON_TOO_BIG),
             col_track_reason(t));
    col_ack_t ack = {.sequence = col_track_sequence(t),
                     .status = TOCSIN__V1__ACK__STATUS__STATUS_REJECTED,
                     .reason = reason};
    tc_counter_inc(d->m.batches_rejected[COL_REASON_TOO_BIG]);
    send_ack(d, col_track_peer(t), &ack);
    col_inflight_close(d->inflight, &t);
}

static void ack_retry(col_daemon_t *d, col_track_t *t, int why, const char *reason)
{
    col_ack_t ack;
    col_track_ack_retry(t, (uint32_t)d->cfg.retry_after_ms, reason, &ack);
    tc_counter_inc(d->m.batches_retry_after[why]);
    tc_logj(TC_LOG_DEBUG, "collector.batch_retry",
            json_pack("{s:I, s:i}", "sequence", (json_int_t)ack.sequence, "failures",
                      (int)col_track_failures(t)),
            "%s", ack.reason ? ack.reason : "");
    send_ack(d, col_track_peer(t), &ack);
    col_inflight_close(d->inflight, &t);
}

/* ---- Kafka ---- */

/* Which delivery errors another attempt can fix. Everything that says the cluster, a
 * broker, a leader or the network is away, time-outs and purges is; errors about the record
 * itself or about authorisation are not. */
static col_delivery_t classify(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return COL_DELIVERY_OK;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return COL_DELIVERY_TOO_LARGE;
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return COL_DELIVERY_PERMANENT;
    default:
        return COL_DELIVERY_RETRIABLE;
    }
}

static bool anything_producing(col_daemon_t *d)
{
    for (col_track_t *t = col_inflight_first(d->inflight); t; t = col_track_next(t)) {
        if (col_track_producing(t)) {
            return true;
        }
    }
    return col_inflight_count(d->replays) > 0;
}

/* Takes back everything queued in the producer: its reports fail at once (purged). */
static void purge_producer(col_daemon_t *d, int reason, const char *why)
{
    if (!d->produced_since_purge || !anything_producing(d)) {
        return;
    }
    d->produced_since_purge = false;
    tc_counter_inc(d->m.purges[reason]);
    d->last_purge_us = tc_mono_us();
    tc_log(TC_LOG_WARN, "collector.purge", "taking back what is in flight: %s", why);
    rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

/*
 * Kafka cannot take events now: with a spool, batches go there from now on, and what is in
 * flight is taken back so that it is spooled before anything newer. Without a spool, only a
 * stall takes things back (and their batches are answered retry-after).
 */
static void enter_spooling(col_daemon_t *d, int reason, const char *why, bool stall)
{
    if (!d->spool) {
        if (stall) {
            purge_producer(d, reason, why);
        }
        return;
    }
    if (d->mode == MODE_LIVE) {
        d->mode = MODE_SPOOLING;
        tc_log(TC_LOG_WARN, "collector.spooling", "batches go to the spool: %s", why);
    }
    purge_producer(d, reason, why);
    publish_state(d);
}

/* librdkafka's delivery report, served by rd_kafka_poll on the loop's thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    col_daemon_t *d = opaque;
    col_track_t *t = msg->_private;
    if (!t) {
        return;
    }
    col_delivery_t result = classify(msg->err);
    char why[160] = "";
    if (result != COL_DELIVERY_OK) {
        tc_counter_inc(result == COL_DELIVERY_RETRIABLE ? d->m.delivery_failures_retriable
                                                        : d->m.delivery_failures_permanent);
        snprintf(why, sizeof(why), "kafka delivery failed: %s", rd_kafka_err2str(msg->err));
        if (msg->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
            msg->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
            uint64_t suppressed = 0;
            if (tc_log_limit_allow(&d->failure_log, tc_mono_us(), &suppressed)) {
                tc_logj(TC_LOG_WARN, "collector.delivery_failed",
                        json_pack("{s:s, s:I}", "error", rd_kafka_err2name(msg->err), "suppressed",
                                  (json_int_t)suppressed),
                        "%s", why);
            }
        }
    }
    col_track_report(t, result, why);
    if (result == COL_DELIVERY_RETRIABLE && !d->stopping) {
        enter_spooling(d, PURGE_DELIVERY_FAILED, why, false);
    }
}

/* librdkafka's error callback: connectivity, and fatal errors. */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    col_daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        tc_log(TC_LOG_ERROR, "kafka.fatal", "%s: %s; spooling what is in flight and stopping",
               rd_kafka_err2name(orig), buf);
        d->fatal = true;
        probe_set(&d->probe, false, -1, buf);
        tc_signal_request_stop();
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        probe_set(&d->probe, false, -1, reason);
        enter_spooling(d, PURGE_BROKERS_DOWN, "all brokers are down", false);
    }
    tc_log(TC_LOG_WARN, "kafka.error", "%s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err),
           reason);
}

/* Hands one record to the producer without copying (the tracker's buffer lives until every
 * report is in). A packed record carries the format header; a record of one event (from a
 * spool entry written before packing) goes as it was. */
static rd_kafka_resp_err_t produce_one(col_daemon_t *d, col_track_t *t, const col_record_t *rec)
{
    rd_kafka_vu_t vu[6];
    size_t n = 0;
    vu[n].vtype = RD_KAFKA_VTYPE_RKT;
    vu[n++].u.rkt = d->rkt[rec->topic];
    vu[n].vtype = RD_KAFKA_VTYPE_PARTITION;
    vu[n++].u.i32 = RD_KAFKA_PARTITION_UA;
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = (void *)rec->value;
    vu[n++].u.mem.size = rec->value_len;
    vu[n].vtype = RD_KAFKA_VTYPE_KEY;
    vu[n].u.mem.ptr = (void *)rec->key;
    vu[n++].u.mem.size = rec->key_len;
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = t;
    if (rec->format == COL_FORMAT_PACK) {
        vu[n].vtype = RD_KAFKA_VTYPE_HEADER;
        vu[n].u.header.name = COL_FORMAT_HEADER;
        vu[n].u.header.val = COL_FORMAT_PACK_NAME;
        vu[n++].u.header.size = (ssize_t)strlen(COL_FORMAT_PACK_NAME);
    }
    rd_kafka_error_t *error = rd_kafka_produceva(d->rk, vu, n);
    if (!error) {
        return RD_KAFKA_RESP_ERR_NO_ERROR;
    }
    rd_kafka_resp_err_t err = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    return err;
}

/*
 * Hands every record of `t` to the producer, in order. When the producer refuses one, no
 * more are handed over: the batch will be spooled (and so will everything after it), or
 * answered when no retry can help.
 */
static void produce_records(col_daemon_t *d, col_track_t *t)
{
    const col_records_t *r = col_track_records(t);
    rd_kafka_resp_err_t perr = RD_KAFKA_RESP_ERR_NO_ERROR;
    size_t off = 0;
    col_record_t rec;
    while (col_records_next(r->data, r->len, &off, &rec) == 1) {
        perr = produce_one(d, t, &rec);
        if (perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            tc_counter_inc(d->m.produce_errors);
            break;
        }
        col_track_produced(t);
        tc_counter_inc(d->m.records_produced);
        d->produced_since_purge = true;
    }
    if (perr == RD_KAFKA_RESP_ERR_NO_ERROR) {
        col_track_seal(t);
        return;
    }
    char reason[160];
    snprintf(reason, sizeof(reason), "kafka producer refused a record: %s", rd_kafka_err2str(perr));
    col_delivery_t why = classify(perr);
    if (why == COL_DELIVERY_PERMANENT || why == COL_DELIVERY_TOO_LARGE) {
        /* No retry fixes it: the batch is answered, nothing is spooled. */
        tc_log(TC_LOG_ERROR, "collector.produce_refused", "%s", reason);
        col_track_refuse(t, why, reason);
        return;
    }
    uint64_t suppressed = 0;
    if (tc_log_limit_allow(&d->produce_log, tc_mono_us(), &suppressed)) {
        tc_logj(TC_LOG_WARN, "collector.produce_refused",
                json_pack("{s:I, s:I}", "sequence", (json_int_t)col_track_sequence(t), "suppressed",
                          (json_int_t)suppressed),
                "%s", reason);
    }
    col_track_abort(t, reason);
    enter_spooling(d, PURGE_PRODUCE_REFUSED, reason, true);
}

/* ---- settling: acks, spool writes and deletions, after each loop turn ---- */

static int grow_pending(col_daemon_t *d, size_t need)
{
    if (need <= d->pending_cap) {
        return 0;
    }
    size_t cap = d->pending_cap ? d->pending_cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    col_track_t **p = realloc(d->pending, cap * sizeof(*p));
    if (p) {
        d->pending = p;
    }
    const uint8_t **v = realloc(d->pending_values, cap * sizeof(*v));
    if (v) {
        d->pending_values = v;
    }
    size_t *l = realloc(d->pending_lens, cap * sizeof(*l));
    if (l) {
        d->pending_lens = l;
    }
    if (!p || !v || !l) {
        return TC_ENOMEM;
    }
    d->pending_cap = cap;
    return 0;
}

static int add_key(uint64_t **keys, size_t *n, size_t *cap, uint64_t key)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint64_t *p = realloc(*keys, nc * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        *keys = p;
        *cap = nc;
    }
    (*keys)[(*n)++] = key;
    return 0;
}

static int add_del(col_daemon_t *d, uint64_t key)
{
    return add_key(&d->dels, &d->n_dels, &d->dels_cap, key);
}

/* Replays that are done: delivered entries leave the spool, a failure stops the replay. */
static void settle_replays(col_daemon_t *d)
{
    col_track_t *t = col_inflight_first(d->replays);
    while (t) {
        col_track_t *next = col_track_next(t);
        if (col_track_done(t)) {
            col_outcome_t outcome = col_track_outcome(t);
            if (outcome == COL_OUTCOME_STORED) {
                if (add_del(d, col_track_tag(t)) == 0) {
                    tc_counter_inc(d->m.replayed_entries);
                    tc_counter_add(d->m.replayed_events, col_track_events(t));
                }
                d->replay_backoff_us = REPLAY_BACKOFF_MIN_US;
            } else if (outcome == COL_OUTCOME_RETRY || outcome == COL_OUTCOME_REJECT) {
                /* Kafka will never take this entry: it would hold the spool up for good.
                 * It moves to the dead entries, kept on disk for an operator. */
                if (add_key(&d->deads, &d->n_deads, &d->deads_cap, col_track_tag(t)) == 0) {
                    tc_counter_inc(d->m.spool_dead);
                    tc_log(TC_LOG_ERROR, "collector.spool_dead",
                           "spool entry %" PRIu64 " can never be delivered (%s): moved to the "
                           "dead entries",
                           col_track_tag(t), col_track_reason(t));
                }
            } else if (!d->replay_failed) {
                d->replay_failed = true;
                tc_counter_inc(d->m.replay_failures);
                tc_log(TC_LOG_WARN, "collector.replay_failed",
                       "spool entry %" PRIu64 " not delivered (%s); replay stops and starts over",
                       col_track_tag(t), col_track_reason(t));
                enter_spooling(d, PURGE_REPLAY_FAILED, "a replayed entry was not delivered", false);
            }
            d->replay_bytes -= col_track_records(t)->len;
            col_inflight_close(d->replays, &t);
        }
        t = next;
    }
}

/*
 * Answers every finished batch. Delivered ones and ones that failed for good are answered
 * at once; ones for the spool are written in arrival order, so a batch waits for every
 * older batch still awaiting reports. Deletions of replayed entries share the transaction.
 */
static void settle(col_daemon_t *d)
{
    settle_replays(d);
    size_t n = 0;
    bool blocked = false;
    if (grow_pending(d, col_inflight_count(d->inflight)) != 0) {
        tc_log(TC_LOG_ERROR, "collector.settle", "out of memory");
        return;
    }
    col_track_t *t = col_inflight_first(d->inflight);
    while (t) {
        col_track_t *next = col_track_next(t);
        switch (col_track_outcome(t)) {
        case COL_OUTCOME_PENDING:
            blocked = true;
            break;
        case COL_OUTCOME_STORED:
            ack_stored(d, t, false);
            break;
        case COL_OUTCOME_RETRY:
            ack_retry(d, t, RETRY_PERMANENT, NULL);
            break;
        case COL_OUTCOME_REJECT:
            ack_reject_too_big(d, t);
            break;
        case COL_OUTCOME_SPOOL:
            if (!d->spool) {
                ack_retry(d, t, RETRY_KAFKA, NULL);
            } else if (!blocked) {
                d->pending[n] = t;
                d->pending_values[n] = col_track_records(t)->data;
                d->pending_lens[n] = col_track_records(t)->len;
                n++;
            }
            break;
        }
        t = next;
    }
    if (n == 0 && d->n_dels == 0 && d->n_deads == 0) {
        publish_state(d);
        return;
    }
    size_t appended = 0;
    int rc = col_spool_commit(d->spool, d->dels, d->n_dels, d->deads, d->n_deads, d->pending_values,
                              d->pending_lens, n, &appended, NULL);
    if (rc != 0) {
        tc_counter_inc(d->m.spool_errors);
        tc_log(TC_LOG_ERROR, "collector.spool_write", "%s: %zu batch(es) answered retry-after",
               tc_strerror(rc), n);
    } else {
        d->n_dels = 0;
        d->n_deads = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (i < appended) {
            ack_stored(d, d->pending[i], true);
        } else {
            ack_retry(d, d->pending[i], RETRY_SPOOL_FULL,
                      rc != 0 ? "collector spool write failed" : "collector spool full");
        }
    }
    publish_state(d);
}

/* ---- replay ---- */

static bool live_producing(col_daemon_t *d)
{
    for (col_track_t *t = col_inflight_first(d->inflight); t; t = col_track_next(t)) {
        if (col_track_producing(t) || col_track_outcome(t) == COL_OUTCOME_SPOOL) {
            return true;
        }
    }
    return false;
}

/*
 * While spooling: when nothing live is left to settle and Kafka answers, replays spool
 * entries in key order within the replay window; when the spool is empty and no replay is
 * in flight, the collector is live again.
 */
static void replay_step(col_daemon_t *d)
{
    if (!d->spool || d->mode != MODE_SPOOLING || d->stopping || live_producing(d)) {
        return;
    }
    int64_t now = tc_mono_us();
    if (d->replay_failed) {
        if (col_inflight_count(d->replays) > 0) {
            return;
        }
        d->replay_failed = false;
        d->replay_cursor = 0;
        d->replay_resume_us = now + d->replay_backoff_us;
        d->replay_backoff_us *= 2;
        if (d->replay_backoff_us > REPLAY_BACKOFF_MAX_US) {
            d->replay_backoff_us = REPLAY_BACKOFF_MAX_US;
        }
        return;
    }
    if (col_spool_entries(d->spool) == 0 && col_inflight_count(d->replays) == 0 && d->n_dels == 0 &&
        d->n_deads == 0 && atomic_load(&d->probe.up_flag) != 0) {
        d->mode = MODE_LIVE;
        d->replay_cursor = 0;
        tc_log(TC_LOG_INFO, "collector.live", "spool empty: batches go to Kafka again");
        publish_state(d);
        return;
    }
    if (now < d->replay_resume_us || atomic_load(&d->probe.up_flag) == 0) {
        return;
    }
    while (d->replay_bytes < d->cfg.replay_inflight_bytes &&
           col_inflight_count(d->replays) < REPLAY_MAX_ENTRIES && !d->replay_failed) {
        uint64_t key = 0;
        uint8_t *value = NULL;
        size_t len = 0;
        int rc = col_spool_read(d->spool, d->replay_cursor, &key, &value, &len);
        if (rc == TC_ENOTFOUND) {
            break;
        }
        if (rc != 0) {
            tc_counter_inc(d->m.spool_errors);
            d->replay_failed = true;
            break;
        }
        d->replay_cursor = key + 1;
        uint32_t count = 0;
        uint64_t events = 0;
        if (col_records_check(value, len, &count, &events) != 0 || events > UINT32_MAX) {
            tc_counter_inc(d->m.spool_corrupt);
            tc_log(TC_LOG_ERROR, "collector.spool_corrupt",
                   "spool entry %" PRIu64 " (%zu bytes) is not a records buffer; removed", key,
                   len);
            free(value);
            add_del(d, key);
            continue;
        }
        col_records_t records = {.data = value, .len = len, .cap = len, .count = count};
        col_peer_t none = {0};
        int err = 0;
        col_track_t *t =
            col_inflight_open(d->replays, &none, key, (uint32_t)events, NULL, now, &records, &err);
        if (!t) {
            col_records_fini(&records);
            d->replay_cursor = key; /* read it again next time */
            break;
        }
        col_track_set_tag(t, key);
        d->replay_bytes += len;
        produce_records(d, t);
    }
}

/* No report for too long: the cluster is away even if no error said so. */
static void check_stall(col_daemon_t *d)
{
    int64_t now = tc_mono_us();
    int64_t limit = d->cfg.message_timeout_ms * 1000;
    if (now - d->last_purge_us < limit) {
        return;
    }
    int64_t oldest = now;
    for (col_track_t *t = col_inflight_first(d->inflight); t; t = col_track_next(t)) {
        if (col_track_producing(t)) {
            oldest = col_track_received_us(t);
            break;
        }
    }
    col_track_t *r = col_inflight_first(d->replays);
    if (r && col_track_received_us(r) < oldest) {
        oldest = col_track_received_us(r);
    }
    if (now - oldest > limit) {
        if (r) {
            d->replay_failed = true;
        }
        d->produced_since_purge = true; /* even if a purge was tried: try again */
        enter_spooling(d, PURGE_TIMEOUT, "no delivery report within kafka.message_timeout", true);
    }
}

/* ---- taking batches ---- */

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
    col_ack_t ack = {.sequence = rej->sequence,
                     .status = TOCSIN__V1__ACK__STATUS__STATUS_REJECTED,
                     .reason = reason};
    send_ack(d, peer, &ack);
}

static void reject_simple(col_daemon_t *d, const col_peer_t *peer, uint64_t sequence,
                          col_reason_t reason, int event_index, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void reject_simple(col_daemon_t *d, const col_peer_t *peer, uint64_t sequence,
                          col_reason_t reason, int event_index, const char *fmt, ...)
{
    col_reject_t rej = {.reason = reason, .event_index = event_index, .sequence = sequence};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rej.message, sizeof(rej.message), fmt, ap);
    va_end(ap);
    reject_batch(d, peer, &rej);
}

/* API key and service: every event of a keyed batch must be the key's service. Returns the
 * service to charge (NULL without keys) or sets *refused after answering. */
static const char *check_key(col_daemon_t *d, const col_peer_t *peer, const col_batch_t *b,
                             bool *refused)
{
    *refused = false;
    if (!d->keys) {
        return NULL;
    }
    char key[COL_KEY_MAX];
    size_t klen = b->api_key.len < sizeof(key) - 1 ? b->api_key.len : sizeof(key) - 1;
    memcpy(key, b->api_key.p, klen);
    key[klen] = '\0';
    const char *service = col_keys_service(d->keys, key);
    if (!service) {
        *refused = true;
        reject_simple(d, peer, b->sequence, COL_REASON_UNAUTHORIZED, -1, "api_key: %s",
                      klen ? "unknown" : "missing");
        return NULL;
    }
    size_t slen = strlen(service);
    for (size_t i = 0; i < b->n_events; i++) {
        const col_span_t *sv = &b->events[i].service;
        if (sv->len != slen || memcmp(sv->p, service, slen) != 0) {
            *refused = true;
            reject_simple(d, peer, b->sequence, COL_REASON_UNAUTHORIZED, (int)i,
                          "event %zu: service: the API key is not for this service", i);
            return NULL;
        }
    }
    return service;
}

/*
 * Whether scrubbing would leave a string as it is, remembered for short strings: clients send
 * the same tags and routes with every event, so most answers are found here. An entry holds
 * the bytes themselves and is compared whole (a hash alone could be made to collide). The
 * cache is emptied when the scrub rules are reloaded.
 */
#define CLEAN_CACHE_SLOTS 512
#define CLEAN_CACHE_BYTES 96

typedef struct {
    uint64_t hash;
    uint8_t kind;
    uint8_t key_len;
    uint8_t value_len;
    bool used;
    bool clean;
    char bytes[CLEAN_CACHE_BYTES];
} clean_slot_t;

typedef struct {
    const col_scrub_rules_t *rules;
    clean_slot_t slots[CLEAN_CACHE_SLOTS];
} clean_cache_t;

static clean_cache_t clean_cache;

static bool string_clean_uncached(const col_scrub_rules_t *rules, col_string_kind_t kind,
                                  col_span_t key, col_span_t value)
{
    if (kind == COL_STRING_TAG || kind == COL_STRING_LOG_FIELD) {
        return col_scrub_pair_clean(rules, key.p, key.len, value.p, value.len);
    }
    return col_scrub_span_clean(rules, value.p, value.len);
}

static bool string_clean(void *ctx, col_string_kind_t kind, col_span_t key, col_span_t value)
{
    const col_scrub_rules_t *rules = ctx;
    if (key.len + value.len > CLEAN_CACHE_BYTES) {
        return string_clean_uncached(rules, kind, key, value);
    }
    if (clean_cache.rules != rules) {
        memset(&clean_cache, 0, sizeof(clean_cache));
        clean_cache.rules = rules;
    }
    uint64_t h = XXH3_64bits_withSeed(value.p, value.len,
                                      XXH3_64bits_withSeed(key.p, key.len, (uint64_t)kind + 1));
    clean_slot_t *slot = &clean_cache.slots[h % CLEAN_CACHE_SLOTS];
    if (slot->used && slot->hash == h && slot->kind == kind && slot->key_len == key.len &&
        slot->value_len == value.len && memcmp(slot->bytes, key.p, key.len) == 0 &&
        memcmp(slot->bytes + key.len, value.p, value.len) == 0) {
        return slot->clean;
    }
    bool clean = string_clean_uncached(rules, kind, key, value);
    slot->used = true;
    slot->hash = h;
    slot->kind = (uint8_t)kind;
    slot->key_len = (uint8_t)key.len;
    slot->value_len = (uint8_t)value.len;
    slot->clean = clean;
    memcpy(slot->bytes, key.p, key.len);
    memcpy(slot->bytes + key.len, value.p, value.len);
    return clean;
}

/* True when an event can leave as the client encoded it, with the collector's fields
 * appended: its shape is simple, it has its grouping id if it is an error, and scrubbing
 * would change none of its strings. */
static bool goes_as_is(col_daemon_t *d, const col_event_t *e)
{
    if (!e->simple) {
        return false;
    }
    if (e->body == TOCSIN__V1__EVENT__BODY_ERROR && e->grouping_hash.len == 0) {
        return false;
    }
    /* The strings were put to string_clean during the walk (col_batch_decode_inspect). */
    return !e->flagged && col_scrub_user_id_clean(d->scrub, e->user_id.p, e->user_id.len);
}

/* Scrubs and enriches every event, and packs them into `records`: one record per Kafka key
 * of the batch (col_pack.h). Returns 0 or TC_ENOMEM. */
static int build_records(col_daemon_t *d, col_batch_t *b, int64_t received_us,
                         col_records_t *records)
{
    col_scrub_stats_t ss = {0};
    col_enrich_stats_t es = {0};
    uint64_t reencoded = 0;
    int rc = 0;
    for (size_t i = 0; i < b->n_events && rc == 0; i++) {
        col_event_t *e = &b->events[i];
        col_topic_t topic = COL_TOPIC_EVENTS;
        size_t key_len = 0;
        if (goes_as_is(d, e)) {
            uint8_t tail[COL_TAIL_MAX];
            size_t tail_len = 0;
            rc = col_enrich_raw(&d->enrich, e, received_us, &es, &topic, d->key_buf,
                                sizeof(d->key_buf), &key_len, tail, sizeof(tail), &tail_len);
            if (rc == 0) {
                rc = col_packer_add(d->packer, topic, d->key_buf, key_len, e->raw, e->raw_len, tail,
                                    tail_len);
            }
            continue;
        }
        reencoded++;
        rc = col_event_decode(e, d->arena);
        if (rc == 0) {
            rc = col_scrub_event(d->scrub, e->ev, d->arena, &ss);
        }
        if (rc == 0) {
            rc = col_enrich_event(&d->enrich, e->ev, received_us, d->arena, &es, &topic, d->key_buf,
                                  sizeof(d->key_buf), &key_len);
        }
        if (rc == 0) {
            rc = col_packer_add_event(d->packer, topic, d->key_buf, key_len, e->ev);
        }
    }
    if (rc == 0) {
        rc = col_packer_finish(d->packer, records);
    } else {
        col_packer_reset(d->packer);
    }
    tc_counter_add(d->m.events_reencoded, reencoded);
    for (int k = 0; k < COL_SCRUB_KIND_COUNT; k++) {
        if (ss.counts[k]) {
            tc_counter_add(d->m.scrubbed[k], ss.counts[k]);
        }
    }
    tc_counter_add(d->m.clamped[CLAMP_MISSING], es.time_missing);
    tc_counter_add(d->m.clamped[CLAMP_FUTURE], es.time_future);
    tc_counter_add(d->m.clamped[CLAMP_PAST], es.time_past);
    for (int g = TC_GROUPING_FINGERPRINT; g <= TC_GROUPING_MESSAGE; g++) {
        tc_counter_add(d->m.grouped[g], es.grouped[g]);
    }
    return rc;
}

static void take_batch(col_daemon_t *d, const col_peer_t *peer, col_batch_t *b, int64_t received_us,
                       int64_t received_mono)
{
    bool refused = false;
    const char *service = check_key(d, peer, b, &refused);
    if (refused) {
        return;
    }
    uint32_t n = (uint32_t)b->n_events;
    /* Room: batches in flight, their bytes, and the producer's queue (a batch is produced
     * whole or not at all, so a partly produced batch never overtakes another). */
    if (col_inflight_count(d->inflight) >= (size_t)d->cfg.max_inflight_batches ||
        col_inflight_bytes(d->inflight) >= d->cfg.max_inflight_bytes ||
        (d->mode == MODE_LIVE && (int64_t)rd_kafka_outq_len(d->rk) + n > d->queue_max_messages)) {
        char reason[96];
        snprintf(reason, sizeof(reason), "collector busy: %zu batches in flight",
                 col_inflight_count(d->inflight));
        send_retry(d, peer, b->sequence, RETRY_BUSY, (uint32_t)d->cfg.retry_after_ms, reason);
        return;
    }
    if (d->mode == MODE_SPOOLING && d->spool &&
        col_spool_bytes(d->spool) + col_inflight_bytes(d->inflight) >=
            col_spool_max_bytes(d->spool)) {
        send_retry(d, peer, b->sequence, RETRY_SPOOL_FULL, (uint32_t)d->cfg.retry_after_ms,
                   "collector spool full: Kafka is away");
        return;
    }
    if (service) {
        uint32_t wait_ms = col_keys_take(d->keys, service, n, received_mono);
        if (wait_ms > 0) {
            tc_counter_add(d->m.rate_limited_events, n);
            char reason[128];
            snprintf(reason, sizeof(reason), "quota of service %s exceeded", service);
            send_retry(d, peer, b->sequence, RETRY_RATE_LIMITED, wait_ms, reason);
            return;
        }
    }
    col_records_t records;
    col_records_init(&records);
    if (build_records(d, b, received_us, &records) != 0) {
        col_records_fini(&records);
        send_retry(d, peer, b->sequence, RETRY_BUSY, (uint32_t)d->cfg.retry_after_ms,
                   "collector out of memory");
        return;
    }
    col_client_counters_t counters = b->counters;
    int err = 0;
    col_track_t *t = col_inflight_open(d->inflight, peer, b->sequence, n, &counters, received_mono,
                                       &records, &err);
    if (!t) {
        col_records_fini(&records);
        send_retry(d, peer, b->sequence, RETRY_BUSY, (uint32_t)d->cfg.retry_after_ms,
                   "collector out of memory");
        return;
    }
    if (d->mode == MODE_SPOOLING) {
        col_track_divert(t, "Kafka is away: spooled");
    } else {
        produce_records(d, t);
    }
}

/* One message from the ROUTER: its frames are checked for shape, the sender for its key,
 * the payload decoded and validated, and the batch taken or refused. */
static void handle_message(col_daemon_t *d, zmq_msg_t *parts, size_t nframes)
{
    int64_t received_us = tc_now_us();
    int64_t received_mono = tc_mono_us();
    tc_counter_inc(d->m.batches_received);
    col_frame_t frames[MAX_FRAMES];
    for (size_t i = 0; i < nframes; i++) {
        frames[i].data = zmq_msg_data(&parts[i]);
        frames[i].len = zmq_msg_size(&parts[i]);
    }
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
    col_batch_t *b = NULL;
    col_reject_t rej;
    if (col_batch_decode_inspect(payload.data, payload.len, &d->limits, d->arena, string_clean,
                                 d->scrub, &b, &rej) != 0) {
        reject_batch(d, &peer, &rej);
        col_arena_reset(d->arena);
        return;
    }
    /* A client whose key left curve.clients_dir keeps its connection (ZeroMQ cannot drop one
     * peer of a ROUTER) but has nothing accepted any more; it cannot reconnect either. */
    if (d->cfg.curve_enabled && d->cfg.curve_clients_dir[0]) {
        const char *user = zmq_msg_gets(&parts[nframes - 1], "User-Id");
        if (!curve_keys_allowed(&d->curve, user)) {
            reject_simple(d, &peer, b->sequence, COL_REASON_UNAUTHORIZED, -1,
                          "CURVE client key not allowed (any more)");
            col_arena_reset(d->arena);
            return;
        }
    }
    tc_counter_add(d->m.events_received, b->n_events);
    take_batch(d, &peer, b, received_us, received_mono);
    col_arena_reset(d->arena);
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
        /* More than MAX_FRAMES frames is as malformed as MAX_FRAMES frames. */
        handle_message(d, parts, kept);
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
    for (int k = 0; k < 256 && rd_kafka_poll(d->rk, 0) > 0; k++) {
    }
}

/* ---- reloading ---- */

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return TC_EIO;
    }
    char *buf = malloc(RULES_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return TC_ENOMEM;
    }
    size_t n = fread(buf, 1, RULES_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return TC_EIO;
    }
    if (n > RULES_FILE_MAX) {
        free(buf);
        return TC_ETOOBIG;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Loads the keys file into *out (NULL when none is configured). */
static int load_keys(const col_config_t *cfg, col_keys_t **out)
{
    *out = NULL;
    if (!cfg->keys_file[0]) {
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(cfg->keys_file, &text, &len);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.keys", "%s: %s", cfg->keys_file,
               rc == TC_EIO ? strerror(errno) : tc_strerror(rc));
        return rc;
    }
    char err[256];
    rc = col_keys_parse(text, len, out, err, sizeof(err));
    free(text);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.keys", "%s: %s", cfg->keys_file, err);
    }
    return rc;
}

static int load_scrub(const col_config_t *cfg, col_scrub_rules_t **out)
{
    *out = NULL;
    if (!cfg->scrub_file[0]) {
        *out = col_scrub_rules_default();
        return *out ? 0 : TC_ENOMEM;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(cfg->scrub_file, &text, &len);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.scrub", "%s: %s", cfg->scrub_file,
               rc == TC_EIO ? strerror(errno) : tc_strerror(rc));
        return rc;
    }
    char err[256];
    rc = col_scrub_rules_parse(text, len, out, err, sizeof(err));
    free(text);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.scrub", "%s: %s", cfg->scrub_file, err);
    }
    return rc;
}

static void curve_refresh(col_daemon_t *d, bool force)
{
    if (!d->cfg.curve_enabled || !d->cfg.curve_clients_dir[0]) {
        return;
    }
    int64_t now = tc_mono_us();
    if (!force && now - d->curve.checked_us < CERTDIR_CHECK_US) {
        return;
    }
    d->curve.checked_us = now;
    struct stat st;
    if (!force && d->curve.loaded && stat(d->cfg.curve_clients_dir, &st) == 0 &&
        st.st_mtim.tv_sec == d->curve.mtime.tv_sec &&
        st.st_mtim.tv_nsec == d->curve.mtime.tv_nsec) {
        return;
    }
    size_t before = d->curve.n;
    if (curve_keys_load(&d->curve, d->cfg.curve_clients_dir) == 0) {
        tc_gauge_set(d->m.curve_clients, (double)d->curve.n);
        if (d->curve.n != before || force) {
            tc_log(TC_LOG_INFO, "collector.curve_keys", "%zu client key(s) allowed", d->curve.n);
        }
    }
}

/* SIGHUP: keys and quotas, scrub rules, CURVE client keys. What fails to load keeps the
 * version in force. */
static void reload(col_daemon_t *d)
{
    bool ok = true;
    col_keys_t *keys = NULL;
    if (load_keys(&d->cfg, &keys) == 0) {
        if (keys) {
            col_keys_carry(keys, d->keys);
            tc_gauge_set(d->m.api_keys, (double)col_keys_count(keys));
        }
        col_keys_destroy(&d->keys);
        d->keys = keys;
    } else {
        ok = false;
    }
    col_scrub_rules_t *scrub = NULL;
    if (load_scrub(&d->cfg, &scrub) == 0) {
        col_scrub_rules_destroy(&d->scrub);
        d->scrub = scrub;
        memset(&clean_cache, 0, sizeof(clean_cache)); /* answers of the old rules */
    } else {
        ok = false;
    }
    if (d->auth && d->cfg.curve_clients_dir[0]) {
        zstr_sendx(d->auth, "CURVE", d->cfg.curve_clients_dir, NULL);
        zsock_wait(d->auth);
    }
    curve_refresh(d, true);
    tc_counter_inc(ok ? d->m.reloads_ok : d->m.reloads_failed);
    tc_log(ok ? TC_LOG_INFO : TC_LOG_ERROR, "collector.reload",
           ok ? "reloaded keys, quotas, scrub rules and CURVE keys"
              : "reload failed in part; the previous version stays in force where it failed");
}

/* ---- the loop ---- */

static void after_turn(col_daemon_t *d)
{
    settle(d);
    replay_step(d);
    check_stall(d);
    if (d->mode == MODE_LIVE && d->spool && atomic_load(&d->probe.up_flag) == 0 &&
        col_inflight_count(d->inflight) > 0) {
        enter_spooling(d, PURGE_PROBE, "the Kafka probe cannot reach the cluster", false);
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
        /* Events left on the queue (the serve budget ran out) mean: do not sleep. A replay
         * or spool in progress wakes up often enough to move on. */
        long timeout =
            rd_kafka_queue_length(d->mainq) > 0 ? 0 : (d->mode == MODE_SPOOLING ? 100 : 250);
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
                reload(d);
            }
        }
        serve_kafka(d);
        curve_refresh(d, false);
        if (items[0].revents & ZMQ_POLLIN) {
            drain_router(d);
        }
        serve_kafka(d);
        after_turn(d);
    }
    return 0;
}

/*
 * SIGTERM: takes no more batches, gives the ones in flight up to shutdown.timeout to be
 * delivered, then takes back what is left and spools it (without a spool: answers it
 * retry-after), so every batch taken is answered.
 */
static void drain_inflight(col_daemon_t *d)
{
    d->stopping = true;
    tc_log(TC_LOG_INFO, "collector.draining",
           "%zu batch(es) in flight, waiting up to %" PRId64 " ms", col_inflight_count(d->inflight),
           d->cfg.shutdown_timeout_ms);
    int64_t deadline = tc_mono_us() + d->cfg.shutdown_timeout_ms * 1000;
    while (anything_producing(d) && !d->fatal && tc_mono_us() < deadline) {
        rd_kafka_flush(d->rk, 100);
        serve_kafka(d);
        settle(d);
    }
    if (anything_producing(d)) {
        tc_log(TC_LOG_WARN, "collector.drain_timeout",
               "%zu batch(es) still in flight; taking them back to %s",
               col_inflight_count(d->inflight), d->spool ? "spool them" : "answer retry-after");
        if (d->spool) {
            d->mode = MODE_SPOOLING;
        }
        d->produced_since_purge = true;
        purge_producer(d, PURGE_SHUTDOWN, "shutting down");
        int64_t purge_deadline = tc_mono_us() + 5 * 1000000;
        while (anything_producing(d) && tc_mono_us() < purge_deadline) {
            rd_kafka_poll(d->rk, 100);
            settle(d);
        }
    }
    settle(d);
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

static int config_check(const col_config_t *c, col_limits_t *l)
{
    l->max_frame_bytes = (size_t)c->max_frame_bytes;
    l->max_events = (uint32_t)c->max_events;
    l->max_short_string = (size_t)c->max_short_string;
    l->max_long_string = (size_t)c->max_long_string;
    l->max_tags = (uint32_t)c->max_tags;
    l->max_frames = (uint32_t)c->max_frames;
    l->max_log_fields = (uint32_t)c->max_log_fields;
    l->max_fingerprint_parts = (uint32_t)c->max_fingerprint_parts;
    const char *bad = NULL;
    if (l->max_frame_bytes == 0 || l->max_frame_bytes > (size_t)1 << 30) {
        bad = "limits.max_frame_bytes: between 1 and 1GiB";
    } else if (c->max_message_bytes < c->max_frame_bytes ||
               c->max_message_bytes > ((uint64_t)1 << 31)) {
        bad = "limits.max_message_bytes: at least limits.max_frame_bytes, at most 2GiB";
    } else if (c->max_short_string == 0 || c->max_short_string > 65535 / 2 ||
               c->max_long_string == 0 || c->max_long_string > ((uint64_t)1 << 30)) {
        bad = "limits.max_short_string: 1 to 32767; limits.max_long_string: 1 to 1GiB";
    } else if (c->retry_after_ms > UINT32_MAX) {
        bad = "retry_after: too long";
    } else if (!c->topic_events[0] || !c->topic_logs[0] || !c->listen[0]) {
        bad = "topic.events, topic.logs and listen must not be empty";
    } else if (c->message_timeout_ms < 100) {
        bad = "kafka.message_timeout: at least 100ms";
    } else if (c->max_future_ms <= 0 || c->max_past_ms <= 0) {
        bad = "enrich.max_future and enrich.max_past must be above 0";
    } else if (c->spool_dir[0] && c->spool_max_bytes < ((uint64_t)1 << 20)) {
        bad = "spool.max_bytes: at least 1MiB";
    } else if (!(c->spool_high_water > 0 && c->spool_high_water <= 1)) {
        bad = "spool.high_water: above 0, at most 1";
    } else if (c->curve_enabled && !c->curve_server_cert[0]) {
        bad = "curve.enabled needs curve.server_cert";
    } else if (c->replay_inflight_bytes == 0 || c->max_inflight_bytes == 0) {
        bad = "spool.replay_inflight and max_inflight_bytes must be above 0";
    } else if (c->pack_max_bytes < COL_PACK_MIN_BYTES || c->pack_max_bytes > COL_PACK_MAX_BYTES) {
        bad = "pack.max_bytes: 1KiB to 64MiB";
    }
    if (bad) {
        tc_log(TC_LOG_ERROR, "collector.config", "%s", bad);
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
               "no Kafka bootstrap servers (brokers=\"%s\", brokers_file=\"%s\"): %s",
               d->cfg.brokers, d->cfg.brokers_file, tc_strerror(rc));
        return rc;
    }
    char err[512];
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new(bootstrap, d->instance_id, &d->cfg.kafka, err, sizeof(err));
    if (!conf) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "%s", err);
        free(bootstrap);
        return TC_EINVAL;
    }
    /* librdkafka's own message time-out fails messages one by one and leaves gaps in a
     * partition; the collector takes everything back itself at kafka.message_timeout, so
     * librdkafka's is only a backstop far beyond it. */
    char backstop[32];
    snprintf(backstop, sizeof(backstop), "%" PRId64, d->cfg.message_timeout_ms * 3 + 30000);
    const char *const defaults[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", "10"},
        {"batch.num.messages", "10000"},
        {"batch.size", "1000000"},
        {"compression.type", "lz4"},
        {"queue.buffering.max.messages", "2000000"},
        {"queue.buffering.max.kbytes", "2097151"},
        {"message.timeout.ms", backstop},
    };
    rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        rc = tc_kafka_conf_set_default(conf, &d->cfg.kafka, defaults[i][0], defaults[i][1], err,
                                       sizeof(err));
    }
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "%s", err);
        rd_kafka_conf_destroy(conf);
        free(bootstrap);
        return rc;
    }
    char qmax[32];
    size_t qlen = sizeof(qmax);
    d->queue_max_messages = 100000;
    if (rd_kafka_conf_get(conf, "queue.buffering.max.messages", qmax, &qlen) == RD_KAFKA_CONF_OK) {
        d->queue_max_messages = strtoll(qmax, NULL, 10);
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
    tc_log(TC_LOG_INFO, "collector.kafka", "producing to %s and %s via %s", d->cfg.topic_events,
           d->cfg.topic_logs, bootstrap);
    free(bootstrap);
    const char *names[COL_TOPIC_COUNT] = {d->cfg.topic_events, d->cfg.topic_logs};
    for (int i = 0; i < COL_TOPIC_COUNT; i++) {
        d->rkt[i] = rd_kafka_topic_new(d->rk, names[i], NULL);
        if (!d->rkt[i]) {
            tc_log(TC_LOG_ERROR, "collector.kafka", "topic %s: %s", names[i],
                   rd_kafka_err2str(rd_kafka_last_error()));
            return TC_EKAFKA;
        }
    }
    if (pipe2(d->kpipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        tc_log(TC_LOG_ERROR, "collector.kafka", "pipe: %s", strerror(errno));
        return TC_EIO;
    }
    d->mainq = rd_kafka_queue_get_main(d->rk);
    rd_kafka_queue_io_event_enable(d->mainq, d->kpipe[1], "k", 1);
    return 0;
}

static int curve_start(col_daemon_t *d)
{
    d->server_cert = zcert_load(d->cfg.curve_server_cert);
    if (!d->server_cert) {
        tc_log(TC_LOG_ERROR, "collector.curve", "cannot load curve.server_cert %s",
               d->cfg.curve_server_cert);
        return TC_EIO;
    }
    static const char no_secret[41] = "0000000000000000000000000000000000000000";
    if (strcmp(zcert_secret_txt(d->server_cert), no_secret) == 0) {
        tc_log(TC_LOG_ERROR, "collector.curve",
               "curve.server_cert %s has no secret key (give the _secret file)",
               d->cfg.curve_server_cert);
        return TC_EINVAL;
    }
    if (d->cfg.curve_clients_dir[0]) {
        if (curve_keys_load(&d->curve, d->cfg.curve_clients_dir) != 0) {
            return TC_EIO;
        }
        tc_gauge_set(d->m.curve_clients, (double)d->curve.n);
        d->curve.checked_us = tc_mono_us();
    }
    d->auth = zactor_new(zauth, NULL);
    if (!d->auth) {
        tc_log(TC_LOG_ERROR, "collector.curve", "cannot start zauth");
        return TC_EZMQ;
    }
    zstr_sendx(d->auth, "CURVE",
               d->cfg.curve_clients_dir[0] ? d->cfg.curve_clients_dir : CURVE_ALLOW_ANY, NULL);
    zsock_wait(d->auth);
    zcert_apply(d->server_cert, d->router_sock);
    zsock_set_curve_server(d->router_sock, 1);
    zsock_set_zap_domain(d->router_sock, "tocsin");
    tc_log(TC_LOG_INFO, "collector.curve", "CURVE on; server key %s; %s",
           zcert_public_txt(d->server_cert),
           d->cfg.curve_clients_dir[0] ? "clients from curve.clients_dir" : "any client key");
    return 0;
}

static int zmq_start(col_daemon_t *d)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t io = d->cfg.io_threads > 0 ? (size_t)d->cfg.io_threads
                                      : (size_t)(cpus < 1 ? 1 : (cpus > 16 ? 16 : cpus));
    zsys_set_io_threads(io);
    d->router_sock = zsock_new(ZMQ_ROUTER);
    if (!d->router_sock) {
        tc_log(TC_LOG_ERROR, "collector.zmq", "cannot create the ROUTER socket");
        return TC_EZMQ;
    }
    d->router = zsock_resolve(d->router_sock);
    int one = 1;
    int linger = 0;
    int hwm = (int)d->cfg.rcvhwm;
    /* Frames up to max_message_bytes are read and answered too_big; beyond that ZeroMQ
     * closes the connection when it reads the size, before buffering the frame, so memory
     * stays bounded — and no Ack can reach that client, its connection being gone. */
    int64_t maxmsg = (int64_t)d->cfg.max_message_bytes;
    if (zmq_setsockopt(d->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(d->router, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_setsockopt(d->router, ZMQ_RCVHWM, &hwm, sizeof(hwm)) != 0 ||
        zmq_setsockopt(d->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0) {
        tc_log(TC_LOG_ERROR, "collector.zmq", "setsockopt: %s", zmq_strerror(errno));
        return TC_EZMQ;
    }
    if (d->cfg.curve_enabled && curve_start(d) != 0) {
        return TC_EZMQ;
    }
    if (zmq_bind(d->router, d->cfg.listen) != 0) {
        tc_log(TC_LOG_ERROR, "collector.zmq", "cannot bind %s: %s", d->cfg.listen,
               zmq_strerror(errno));
        return TC_EZMQ;
    }
    tc_log(TC_LOG_INFO, "collector.zmq", "%zu ZeroMQ I/O thread(s)", io);
    return 0;
}

static int spool_start(col_daemon_t *d)
{
    atomic_store(&d->probe.spool_max, 0);
    if (!d->cfg.spool_dir[0]) {
        tc_log(TC_LOG_INFO, "collector.spool",
               "no spool.dir: batches Kafka cannot take are answered retry-after");
        return 0;
    }
    int err = 0;
    d->spool = col_spool_open(d->cfg.spool_dir, d->cfg.spool_max_bytes, &err);
    if (!d->spool) {
        tc_log(TC_LOG_ERROR, "collector.spool", "cannot open spool %s: %s", d->cfg.spool_dir,
               tc_strerror(err));
        return err;
    }
    atomic_store(&d->probe.spool_max, d->cfg.spool_max_bytes);
    tc_gauge_set(d->m.spool_max_bytes, (double)d->cfg.spool_max_bytes);
    if (col_spool_entries(d->spool) > 0) {
        d->mode = MODE_SPOOLING;
        tc_log(TC_LOG_INFO, "collector.spool",
               "spool %s holds %" PRIu64 " batch(es), %" PRIu64 " bytes: replaying them first",
               d->cfg.spool_dir, col_spool_entries(d->spool), col_spool_bytes(d->spool));
    }
    publish_state(d);
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
    tc_selfmon_destroy(&d->selfmon); /* its gauge callbacks read the metrics */
    tc_http_destroy(&d->http);
    probe_stop(d);
    for (int i = 0; i < COL_TOPIC_COUNT; i++) {
        if (d->rkt[i]) {
            rd_kafka_topic_destroy(d->rkt[i]);
            d->rkt[i] = NULL;
        }
    }
    if (d->mainq) {
        rd_kafka_queue_io_event_enable(d->mainq, -1, NULL, 0);
        rd_kafka_queue_destroy(d->mainq);
        d->mainq = NULL;
    }
    if (d->rk) {
        /* Nothing is left in flight after drain_inflight; a half-started daemon has nothing
         * either. Any report still queued is dropped with its tracker. */
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy_flags(d->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        d->rk = NULL;
    }
    /* Trackers whose reports never came (the producer is gone now) are freed unanswered;
     * their clients time out and resend. */
    col_inflight_destroy(&d->inflight);
    col_inflight_destroy(&d->replays);
    col_spool_close(&d->spool);
    for (int i = 0; i < 2; i++) {
        if (d->kpipe[i] >= 0) {
            close(d->kpipe[i]);
            d->kpipe[i] = -1;
        }
    }
    if (d->router_sock) {
        /* Give the last Acks a moment to leave. */
        zsock_set_linger(d->router_sock, 1000);
        zsock_destroy(&d->router_sock);
        d->router = NULL;
    }
    zactor_destroy(&d->auth);
    zcert_destroy(&d->server_cert);
    curve_keys_free(&d->curve);
    col_arena_destroy(&d->arena);
    col_packer_destroy(&d->packer);
    col_scrub_rules_destroy(&d->scrub);
    col_keys_destroy(&d->keys);
    free(d->pending);
    free(d->pending_values);
    free(d->pending_lens);
    free(d->dels);
    free(d->deads);
    d->deads = NULL;
    d->pending = NULL;
    d->pending_values = NULL;
    d->pending_lens = NULL;
    d->dels = NULL;
    tc_metrics_destroy(&d->metrics);
    free(d->instance_id);
    d->instance_id = NULL;
    pthread_mutex_destroy(&d->probe.mu);
    pthread_cond_destroy(&d->probe.cv);
    tc_config_free(config_table, &d->cfg);
}

/* Self-monitoring (tc_selfmon): the share of the spool in use, read on its thread. */
static int spool_fill(void *ctx, double *out)
{
    const col_metrics_t *m = ctx;
    double max = tc_gauge_get(m->spool_max_bytes);
    *out = max > 0 ? tc_gauge_get(m->spool_bytes) / max : 0;
    return 0;
}

/* Heartbeat of tocsin-collector to selfmon.collectors ("self": this ROUTER), with the spool. */
static int selfmon_start(col_daemon_t *d)
{
    char endpoint[256] = "";
    size_t len = sizeof(endpoint);
    d->selfmon = tc_selfmon_new("collector", d->instance_id, &d->cfg.selfmon, d->metrics,
                                "tocsin_collector_");
    if (!d->selfmon || zmq_getsockopt(d->router, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0 ||
        tc_selfmon_set_self(d->selfmon, endpoint,
                            d->cfg.curve_enabled ? d->cfg.curve_server_cert : NULL) != 0 ||
        tc_selfmon_gauge_fn(d->selfmon, "spool.bytes", "bytes", tc_selfmon_read_gauge,
                            d->m.spool_bytes) != 0 ||
        tc_selfmon_gauge_fn(d->selfmon, "spool.entries", "", tc_selfmon_read_gauge,
                            d->m.spool_entries) != 0 ||
        tc_selfmon_gauge_fn(d->selfmon, "spool.fill", "ratio", spool_fill, &d->m) != 0) {
        tc_log(TC_LOG_ERROR, "collector.selfmon", "cannot set up self-monitoring");
        return TC_ENOMEM;
    }
    return tc_selfmon_start(d->selfmon);
}

static void log_listening(col_daemon_t *d)
{
    char endpoint[256] = "";
    size_t len = sizeof(endpoint);
    if (zmq_getsockopt(d->router, ZMQ_LAST_ENDPOINT, endpoint, &len) != 0) {
        tc_strlcpy(endpoint, d->cfg.listen, sizeof(endpoint));
    }
    tc_logj(TC_LOG_INFO, "collector.listening",
            json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:b, s:b}", "endpoint", endpoint, "http_bind",
                      d->cfg.http_bind, "http_port", (int)tc_http_port(d->http), "topic",
                      d->cfg.topic_events, "topic_logs", d->cfg.topic_logs, "instance",
                      d->instance_id, "curve", d->cfg.curve_enabled, "spool", d->spool != NULL),
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
    atomic_store(&d->probe.up_flag, -1);
    d->reject_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);
    d->ack_drop_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);
    d->produce_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);
    d->failure_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10 * 1000000);
    d->replay_backoff_us = REPLAY_BACKOFF_MIN_US;

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
    if (config_check(&d->cfg, &d->limits) != 0) {
        daemon_stop(d);
        return 2;
    }
    d->probe.high_water = d->cfg.spool_high_water;
    d->instance_id = d->cfg.instance_id[0] ? strdup(d->cfg.instance_id) : default_instance_id();
    d->enrich.collector_id = d->instance_id;
    d->enrich.max_future_us = d->cfg.max_future_ms * 1000;
    d->enrich.max_past_us = d->cfg.max_past_ms * 1000;
    d->inflight = col_inflight_new((uint32_t)d->cfg.max_inflight_batches);
    d->replays = col_inflight_new(REPLAY_MAX_ENTRIES);
    d->arena = col_arena_new((size_t)d->cfg.max_message_bytes * ARENA_FACTOR);
    d->packer = col_packer_new((size_t)d->cfg.pack_max_bytes);
    d->metrics = tc_metrics_new();
    if (!d->instance_id || !d->inflight || !d->replays || !d->arena || !d->packer || !d->metrics ||
        metrics_register(d->metrics, &d->m) != 0) {
        tc_log(TC_LOG_ERROR, "collector.start", "out of memory");
        daemon_stop(d);
        return 1;
    }
    if (load_keys(&d->cfg, &d->keys) != 0 || load_scrub(&d->cfg, &d->scrub) != 0) {
        daemon_stop(d);
        return 2;
    }
    if (d->keys) {
        tc_gauge_set(d->m.api_keys, (double)col_keys_count(d->keys));
    }
    /* czmq would install SIGINT/SIGTERM handlers of its own; ours come after and win. */
    zsys_handler_set(NULL);
    zsys_init();
    if (tc_signal_init() != 0) {
        tc_log(TC_LOG_ERROR, "collector.start", "cannot install signal handlers");
        daemon_stop(d);
        return 1;
    }
    if (spool_start(d) != 0 || kafka_start(d) != 0 || zmq_start(d) != 0 || http_start(d) != 0 ||
        probe_start(d) != 0) {
        daemon_stop(d);
        return 1;
    }
    log_listening(d);
    rc = selfmon_start(d);
    if (rc != 0) {
        daemon_stop(d);
        return rc == TC_EINVAL ? 2 : 1;
    }

    rc = run_loop(d);
    tc_selfmon_destroy(&d->selfmon);
    drain_inflight(d);
    tc_logj(TC_LOG_INFO, "collector.stopped",
            json_pack("{s:I, s:I, s:I, s:I}", "batches_received",
                      (json_int_t)tc_counter_get(d->m.batches_received), "events_accepted",
                      (json_int_t)tc_counter_get(d->m.events_accepted), "unanswered",
                      (json_int_t)col_inflight_count(d->inflight), "spooled_bytes",
                      (json_int_t)(d->spool ? col_spool_bytes(d->spool) : 0)),
            "stopped");
    bool failed = rc != 0 || d->fatal;
    daemon_stop(d);
    return failed ? 1 : 0;
}
