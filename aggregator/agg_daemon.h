/*
 * agg_daemon.h — the state of the tocsin-aggregator process, shared by its I/O parts:
 * main.c (configuration, start, the loop, shutdown), agg_ingest.c (the group consumer of
 * topic.events, partition assignment and the commit of every batch), agg_view.c (the
 * consumer of every partition of topic.rollups and topic.logs that feeds the materialised
 * view), agg_publish.c (the producer of states, checkpoints and issue changes) and
 * agg_api.c (the HTTP endpoints). Internal to the daemon; the library modules know nothing
 * of it.
 *
 * Threads: the main thread runs the loop, the consumers' and the producer's callbacks (all
 * served by polls on the main thread) and every commit to the store. libmicrohttpd's thread
 * runs the HTTP handlers, which read the store in their own read transactions, set issue
 * statuses through agg_store_status_set (its own write transaction), and otherwise touch
 * only atomics and the probe's locked state. The Kafka probe thread asks the brokers for
 * metadata for /health/ready.
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
#include "tc_selfmon.h"

#define AGG_MAX_PARTITIONS 1024

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
    char *topic_logs;
    char *data_dir;
    int64_t grace_ms;
    int64_t dedupe_window_ms;
    int64_t dedupe_max_ids;
    int64_t poll_max_messages;
    int64_t poll_max_wait_ms;
    int64_t publish_interval_ms;
    char *slo_thresholds;
    int64_t retention_raw_ms;
    int64_t retention_max_ms;
    int64_t retention_slice;
    int64_t logs_retention_ms;
    uint64_t logs_max_bytes;
    char *api_token;
    int64_t view_catchup_ms;
    uint64_t lmdb_map_size;
    uint64_t lmdb_max_map;
    int64_t shutdown_timeout_ms;
    tc_selfmon_config_t selfmon;
    tc_cfg_kvs_t kafka;
} agg_config_t;

typedef struct {
    tc_counter_t *events_consumed;
    tc_counter_t *records_consumed;
    tc_counter_t *events_applied;
    tc_counter_t *duplicates;
    tc_counter_t *decode_errors;
    tc_counter_t *records_unreadable;
    tc_counter_t *late_events;
    tc_counter_t *covered;
    tc_counter_t *stale_events;
    tc_counter_t *ignored_events;
    tc_counter_t *conflicts;
    tc_counter_t *records_lost;
    tc_counter_t *corrupt_values;
    tc_counter_t *commits;
    tc_counter_t *commit_failures;
    tc_counter_t *view_records;
    tc_counter_t *view_applied;
    tc_counter_t *view_invalid;
    tc_counter_t *view_old;
    tc_counter_t *logs_stored;
    tc_counter_t *issues_new;
    tc_counter_t *issues_regressed;
    tc_counter_t *rollups_published;
    tc_counter_t *rollup_failures;
    tc_counter_t *checkpoints_published;
    tc_counter_t *changes_published;
    tc_counter_t *offset_resets;
    tc_counter_t *takeovers;
    tc_counter_t *maintenance;
    tc_counter_t *queries;
    tc_counter_t *query_errors;
    tc_counter_t *status_changes;
    tc_counter_t *unauthorized;
    tc_gauge_t *assigned_partitions;
    tc_gauge_t *dedupe_ids;
    tc_gauge_t *dedupe_evicted;
    tc_gauge_t *view_lag_seconds;
    tc_histogram_t *commit_seconds;
    tc_histogram_t *query_seconds;
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

/* States handed to the producer and not yet confirmed (see agg_publish.c). */
typedef struct agg_inflight agg_inflight_t;

/* Where a partition of the view stands. */
typedef struct {
    int64_t position;   /* next offset to read (from the records handed over) */
    int64_t last_ts_ms; /* timestamp of the last record read */
    bool eof;
} agg_view_part_t;

typedef struct {
    agg_config_t cfg;
    char *instance_id;
    char producer_id[320]; /* "instance/nonce": names this process's rollups (see agg_view.c) */
    agg_slo_t slo;
    agg_store_t *store;
    tc_metrics_t *metrics;
    agg_metrics_t m;
    tc_http_t *http;
    agg_probe_t probe;
    bool probe_running;
    pthread_t probe_thread;

    /* ingest (main thread) */
    rd_kafka_t *consumer;
    rd_kafka_queue_t *consumer_queue;
    rd_kafka_message_t **pending; /* consumed from topic.events, not yet committed */
    size_t npending;
    size_t pending_cap;
    agg_msg_t *msgs;
    int32_t owned[AGG_MAX_PARTITIONS]; /* partitions of topic.events assigned to us */
    size_t nowned;
    bool paused;
    int64_t retry_at_us;        /* monotonic: when to try the failed commit again */
    _Atomic int last_commit_rc; /* 0, or the TC_E* of the last failed commit (HTTP reads) */
    tc_log_limit_t invalid_log;
    tc_log_limit_t kafka_log;

    /* view (main thread) */
    rd_kafka_t *viewer;
    rd_kafka_queue_t *viewer_queue;
    rd_kafka_message_t **vpending; /* consumed from topic.rollups and topic.logs */
    size_t nvpending;
    size_t vpending_cap;
    agg_msg_t *vrollups;
    agg_msg_t *vlogs;
    int32_t rollups_partitions;
    int32_t logs_partitions;
    agg_view_part_t *vparts; /* rollups partitions, then logs partitions */
    _Atomic int64_t view_lag_ms;

    /* publish (main thread) */
    rd_kafka_t *producer;
    rd_kafka_topic_t *rollups_topic;
    agg_inflight_t *inflight;
    agg_owed_ref_t *delivered; /* delivered states to clear at the next commit */
    size_t ndelivered;
    size_t delivered_cap;
    uint64_t *changes_done; /* delivered changes to forget at the next commit */
    size_t nchanges_done;
    size_t changes_done_cap;
    uint64_t *changes_inflight;
    size_t nchanges_inflight;
    size_t changes_inflight_cap;
    int64_t checkpoint_sent[AGG_MAX_PARTITIONS]; /* offset of the last checkpoint delivered */
    int64_t last_tick_us;                        /* monotonic */
    _Atomic bool changes_pending;                /* set by the HTTP thread after a status change */
    tc_log_limit_t rollup_log;

    bool fatal; /* a Kafka fatal error or an unrecoverable store error: exit 1 */
} agg_daemon_t;

/* ---- agg_ingest.c ---- */

/* Creates the group consumer and subscribes to topic.events. Returns 0 or a TC_E* code. */
int agg_ingest_start(agg_daemon_t *d, const char *bootstrap);

/* Takes what the consumer has, waiting at most `wait_ms`: up to poll.max_messages. */
void agg_ingest_poll(agg_daemon_t *d, int wait_ms);

/* The format of a record of topic.events or topic.logs, from its "tocsin.format" header. */
agg_format_t agg_record_format(const rd_kafka_message_t *msg);

/*
 * Commits everything pending in one LMDB transaction: consumed events, the view's records,
 * delivered states and changes. Then counts, logs refused records, commits the events'
 * offsets to Kafka asynchronously (for lag visibility only) and frees the records. When the
 * transaction fails the records are kept, consumption is paused, and the commit is tried
 * again a second later. Returns 0 or the code.
 */
int agg_commit(agg_daemon_t *d);

/* Commits what is pending, then leaves the group and closes the consumer. */
void agg_ingest_stop(agg_daemon_t *d);

/* ---- agg_view.c ---- */

/* Creates the view's consumer and assigns every partition of topic.rollups and topic.logs
 * from the offsets in LMDB. Returns 0 or a TC_E* code. */
int agg_view_start(agg_daemon_t *d, const char *bootstrap);

/* Takes what the view's consumer has, waiting at most `wait_ms`. */
void agg_view_poll(agg_daemon_t *d, int wait_ms);

/* Reads and commits the view until it holds every rollup published before the call, or
 * `timeout_ms` passes. Returns 0, or TC_ETIMEDOUT. */
int agg_view_catch_up(agg_daemon_t *d, int64_t timeout_ms);

/* The view's time: the oldest of its rollups partitions' last record times (now for those
 * read to their end), in microseconds. */
int64_t agg_view_time_us(agg_daemon_t *d);

void agg_view_stop(agg_daemon_t *d);

/* ---- agg_publish.c ---- */

/* Creates the idempotent producer for topic.rollups. Returns 0 or a TC_E* code. */
int agg_publish_start(agg_daemon_t *d, const char *bootstrap);

/* Serves delivery reports. */
void agg_publish_poll(agg_daemon_t *d, int timeout_ms);

/* Hands changed states, due closings and checkpoints to the producer, at most every
 * publish.interval (always with `force`). */
void agg_publish_tick(agg_daemon_t *d, bool force);

/* Hands new issue changes and statuses to the producer at once. */
void agg_publish_changes(agg_daemon_t *d);

/* Called after a commit that took the delivered states and changes: forgets them. */
void agg_publish_committed(agg_daemon_t *d);

/* States and changes handed over and not yet confirmed. */
size_t agg_publish_inflight(const agg_daemon_t *d);

/* Publishes what a revoked partition owes, waiting at most `timeout_ms`. */
void agg_publish_flush(agg_daemon_t *d, int64_t timeout_ms);

void agg_publish_stop(agg_daemon_t *d);

/* ---- agg_api.c ---- */

/* Registers the HTTP API, the readiness check and the gauges computed at scrape time.
 * Returns 0 or TC_ENOMEM. */
int agg_api_register(agg_daemon_t *d);

/* The Kafka probe thread: started after the producer exists, stopped before it goes. */
int agg_probe_start(agg_daemon_t *d);
void agg_probe_stop(agg_daemon_t *d);

#endif
