/*
 * agg_daemon.h — the state of the tocsin-aggregator process, shared by its I/O parts:
 * main.c (configuration, start, the loop, shutdown), agg_ingest.c (the Kafka consumer and
 * the batches it applies), agg_publish.c (the rollup producer) and agg_api.c (the HTTP
 * endpoints). Internal to the daemon; the library modules (agg_bucket, agg_query, agg_store)
 * know nothing of it.
 *
 * Threads: the main thread runs the loop, the consumer's and the producer's callbacks (both
 * are served by polls on the main thread) and every write to the store. libmicrohttpd's
 * thread runs the HTTP handlers, which read the store in their own read transactions and
 * otherwise touch only atomics and the probe's locked state. The Kafka probe thread asks
 * the brokers for metadata for /health/ready.
 */
#ifndef AGG_DAEMON_H
#define AGG_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "agg_store.h"
#include "tc_config.h"
#include "tc_http.h"
#include "tc_log.h"
#include "tc_metrics.h"

typedef struct {
    char *log_level;
    char *instance_id;
    char *http_bind;
    int64_t http_port;
    char *brokers;
    char *brokers_file;
    char *group_id;
    char *topic_events;
    char *topic_rollups;
    char *data_dir;
    int64_t grace_ms;
    int64_t dedupe_window_ms;
    int64_t poll_max_messages;
    int64_t poll_max_wait_ms;
    uint64_t lmdb_map_size;
    uint64_t lmdb_max_map;
    int64_t shutdown_timeout_ms;
    tc_cfg_kvs_t kafka;
} agg_config_t;

typedef struct {
    tc_counter_t *events_consumed;
    tc_counter_t *events_applied;
    tc_counter_t *duplicates;
    tc_counter_t *decode_errors;
    tc_counter_t *late_events;
    tc_counter_t *stale_events;
    tc_counter_t *ignored_events;
    tc_counter_t *conflicts;
    tc_counter_t *corrupt_values;
    tc_counter_t *commits;
    tc_counter_t *commit_failures;
    tc_counter_t *rollups_published;
    tc_counter_t *rollup_failures;
    tc_counter_t *offset_resets;
    tc_counter_t *queries;
    tc_counter_t *query_errors;
    tc_gauge_t *assigned_partitions;
    tc_histogram_t *commit_seconds;
} agg_metrics_t;

/* Kafka connectivity as last seen by the probe thread, for /health/ready. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool checked;
    bool up;
    double response_ms;
    int64_t at_us; /* monotonic */
    char detail[160];
    rd_kafka_t *rk;
    const char *topic;
} agg_probe_t;

/* Rollups handed to the producer and not yet confirmed in LMDB (see agg_publish.c). */
typedef struct agg_inflight agg_inflight_t;

typedef struct {
    agg_config_t cfg;
    char *instance_id;
    agg_store_t *store;
    tc_metrics_t *metrics;
    agg_metrics_t m;
    tc_http_t *http;
    agg_probe_t probe;
    bool probe_running;
    pthread_t probe_thread;

    /* ingest (main thread) */
    rd_kafka_t *consumer;
    rd_kafka_message_t **pending; /* consumed, not yet applied; up to poll.max_messages */
    size_t npending;
    size_t pending_cap;
    agg_msg_t *msgs;            /* the batch handed to agg_store_apply */
    bool paused;                /* partitions paused after a failed commit */
    int64_t retry_at_us;        /* monotonic: when to try the failed commit again */
    _Atomic int last_commit_rc; /* 0, or the TC_E* of the last failed commit (HTTP reads) */
    tc_log_limit_t invalid_log;
    tc_log_limit_t kafka_log;

    /* publish (main thread) */
    rd_kafka_t *producer;
    rd_kafka_topic_t *rollups_topic;
    agg_inflight_t *inflight;
    agg_owed_ref_t *delivered; /* delivered rollups to clear from LMDB at the next commit */
    size_t ndelivered;
    size_t delivered_cap;
    int64_t last_tick_us; /* monotonic */
    tc_log_limit_t rollup_log;

    bool fatal; /* a Kafka fatal error: exit 1 */
} agg_daemon_t;

/* ---- agg_ingest.c ---- */

/* Creates the consumer, subscribes to topic.events. Returns 0 or a TC_E* code (logged). */
int agg_ingest_start(agg_daemon_t *d, const char *bootstrap);

/* Consumes for up to poll.max_wait or poll.max_messages records, whichever comes first. */
void agg_ingest_poll(agg_daemon_t *d);

/*
 * Applies what was consumed, together with the delivered rollups, in one LMDB transaction;
 * then counts, logs refused records, commits the offsets to Kafka asynchronously (for lag
 * visibility only) and frees the records. When the transaction fails the records are kept,
 * the partitions paused, and the commit tried again a second later. Returns 0 or the code.
 */
int agg_ingest_commit(agg_daemon_t *d);

/* Commits what is pending, then leaves the group and closes the consumer. */
void agg_ingest_stop(agg_daemon_t *d);

/* ---- agg_publish.c ---- */

/* Creates the idempotent producer for topic.rollups. Returns 0 or a TC_E* code (logged). */
int agg_publish_start(agg_daemon_t *d, const char *bootstrap);

/* Serves delivery reports (non-blocking). */
void agg_publish_poll(agg_daemon_t *d, int timeout_ms);

/* Hands the owed rollups of closed buckets to the producer, at most every 250 ms. */
void agg_publish_tick(agg_daemon_t *d, bool force);

/* Called after a commit that cleared `refs` from LMDB: they are no longer in flight. */
void agg_publish_cleared(agg_daemon_t *d, const agg_owed_ref_t *refs, size_t n);

/* Rollups handed to the producer whose delivery is not yet confirmed in LMDB. */
size_t agg_publish_inflight(const agg_daemon_t *d);

/* Flushes the producer and destroys it. */
void agg_publish_stop(agg_daemon_t *d);

/* ---- agg_api.c ---- */

/* Registers /api/v1/query, /api/v1/series, the readiness check and the gauges computed at
 * scrape time. Returns 0 or TC_ENOMEM. */
int agg_api_register(agg_daemon_t *d);

/* The Kafka probe thread: started after the producer exists, stopped before it goes. */
int agg_probe_start(agg_daemon_t *d);
void agg_probe_stop(agg_daemon_t *d);

#endif
