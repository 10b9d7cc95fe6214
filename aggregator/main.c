/*
 * tocsin-aggregator — turns tocsin.events into 10 s buckets per series and error issues in
 * LMDB, exactly once; publishes them to tocsin.rollups; materialises every aggregator's
 * rollups (and every log record) into a view; and answers queries over it on HTTP.
 *
 * The loop, on the main thread: take what the group consumer (topic.events) and the view's
 * consumer (topic.rollups, topic.logs) have, serve the producer's delivery reports, commit
 * it all with the new offsets and the delivered states in one LMDB transaction when the
 * batch is due, publish new issue changes at once and changed states every
 * publish.interval, run a slice of retention, and check for stale LMDB readers. SIGTERM: the
 * pending batch is committed, the consumer leaves the group (publishing what its partitions
 * owe), owed states are flushed for up to shutdown.timeout, and the process exits 0.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg_daemon.h"
#include "tc_error.h"
#include "tc_kafka.h"
#include "tc_signal.h"
#include "tc_util.h"

#define BROKERS_FILE_WAIT_MS 30000
#define READER_CHECK_US (60 * 1000000LL)

#define OFF(f) offsetof(agg_config_t, f)

static const tc_cfg_entry_t config_table[] = {
    {"log.level", TC_CFG_STRING, "info", OFF(log_level), "debug, info, warn or error", 0, 0},
    {"instance.id", TC_CFG_STRING, "", OFF(instance_id),
     "name of this aggregator in logs, metrics and rollups (empty: host-pid)", 0, 0},
    {"http.bind", TC_CFG_STRING, "0.0.0.0", OFF(http_bind), "address of the HTTP endpoint", 0, 0},
    {"http.port", TC_CFG_INT, "7430", OFF(http_port), "port of the HTTP endpoint (0: any free)", 0,
     65535},
    {"brokers", TC_CFG_STRING, "", OFF(brokers), "Kafka bootstrap servers (host:port,...)", 0, 0},
    {"brokers_file", TC_CFG_STRING, "", OFF(brokers_file),
     "file whose first line is the bootstrap list; used when brokers is empty", 0, 0},
    {"group.id", TC_CFG_STRING, "tocsin-aggregator", OFF(group_id),
     "Kafka consumer group of the aggregators (checkpoints of other groups are ignored)", 0, 0},
    {"topic.events", TC_CFG_STRING, "tocsin.events", OFF(topic_events),
     "Kafka topic the events are consumed from (through the group)", 0, 0},
    {"topic.rollups", TC_CFG_STRING, "tocsin.rollups", OFF(topic_rollups),
     "Kafka topic states, checkpoints and issue changes are published to; every partition "
     "of it feeds this instance's view",
     0, 0},
    {"topic.logs", TC_CFG_STRING, "tocsin.logs", OFF(topic_logs),
     "Kafka topic of log records; every partition of it is stored by every instance", 0, 0},
    {"data_dir", TC_CFG_STRING, "./data/aggregator", OFF(data_dir),
     "directory of the LMDB environment", 0, 0},
    {"grace", TC_CFG_DURATION, "15s", OFF(grace_ms),
     "a bucket closes (and is published final) this long after its end, by collector "
     "receive time; events received later are still counted in it, and counted as late",
     0, 0},
    {"dedupe.window", TC_CFG_DURATION, "10m", OFF(dedupe_window_ms),
     "how long an event_id is remembered to drop resent events (collector receive time)", 0, 0},
    {"dedupe.max_ids", TC_CFG_INT, "4000000", OFF(dedupe_max_ids),
     "event ids held at most (about 40 bytes each); beyond, the oldest are forgotten early", 1024,
     1000000000},
    {"poll.max_messages", TC_CFG_INT, "20000", OFF(poll_max_messages),
     "records applied per LMDB transaction at most", 1, 1000000},
    {"poll.max_wait", TC_CFG_DURATION, "100ms", OFF(poll_max_wait_ms),
     "longest time a consumed record waits before its batch is committed (1ms to 250ms)", 0, 0},
    {"publish.interval", TC_CFG_DURATION, "250ms", OFF(publish_interval_ms),
     "changed states are published this often (10ms to 250ms)", 0, 0},
    {"slo.thresholds", TC_CFG_STRING, "100ms,500ms,2s", OFF(slo_thresholds),
     "request series count the requests slower than each of these (at most 8; empty: none)", 0, 0},
    {"retention.raw", TC_CFG_DURATION, "1d", OFF(retention_raw_ms),
     "10 s buckets older than this are merged into 1 min buckets", 0, 0},
    {"retention.max", TC_CFG_DURATION, "30d", OFF(retention_max_ms),
     "buckets older than this are deleted", 0, 0},
    {"retention.slice", TC_CFG_INT, "2000", OFF(retention_slice),
     "buckets or log records retention handles per slice (one slice a second at most)", 1, 1000000},
    {"logs.retention", TC_CFG_DURATION, "7d", OFF(logs_retention_ms),
     "log records older than this are deleted", 0, 0},
    {"logs.max_bytes", TC_CFG_SIZE, "1GiB", OFF(logs_max_bytes),
     "the oldest log records are deleted while their bytes exceed this (0: no limit)", 0, 0},
    {"api.token", TC_CFG_STRING, "", OFF(api_token),
     "bearer token required by mutating HTTP endpoints (POST /api/v1/issues/{id}); empty: none", 0,
     0},
    {"view.catchup_timeout", TC_CFG_DURATION, "30s", OFF(view_catchup_ms),
     "on assignment, how long to wait for the view to read what is already published", 0, 0},
    {"lmdb.map_size", TC_CFG_SIZE, "1GiB", OFF(lmdb_map_size),
     "initial LMDB map size (sparse file)", 0, 0},
    {"lmdb.max_map", TC_CFG_SIZE, "64GiB", OFF(lmdb_max_map),
     "the map doubles on MDB_MAP_FULL up to this size", 0, 0},
    {"shutdown.timeout", TC_CFG_DURATION, "10s", OFF(shutdown_timeout_ms),
     "on SIGTERM, how long to wait for owed states to be delivered", 0, 0},
    TC_SELFMON_CONFIG_ENTRIES(agg_config_t, selfmon, "tcp://127.0.0.1:7420"),
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, OFF(kafka),
     "passed to librdkafka unchanged (kafka.security.protocol=SASL_SSL, ...)", 0, 0},
    TC_CFG_END,
};

static const char usage[] =
    "Usage: tocsin-aggregator [--config FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "Consumes tocsin.v1.Event records from Kafka (consumer group group.id on topic.events),\n"
    "keeps 10 s buckets per series and error issues in LMDB with the consumed offsets\n"
    "(exactly once), publishes them to topic.rollups, materialises every aggregator's\n"
    "rollups and every log record of topic.logs into a view, and answers queries over it on\n"
    "HTTP (/api/v1/query, range, series, issues, logs).\n";

static int check_config(agg_config_t *c, agg_slo_t *slo)
{
    if (c->poll_max_wait_ms < 1 || c->poll_max_wait_ms > 250) {
        fprintf(stderr, "tocsin-aggregator: poll.max_wait must be 1ms to 250ms\n");
        return TC_EINVAL;
    }
    if (c->publish_interval_ms < 10 || c->publish_interval_ms > 250) {
        fprintf(stderr, "tocsin-aggregator: publish.interval must be 10ms to 250ms\n");
        return TC_EINVAL;
    }
    if (c->grace_ms > 3600 * 1000) {
        fprintf(stderr, "tocsin-aggregator: grace must be at most 1h\n");
        return TC_EINVAL;
    }
    if (c->dedupe_window_ms < 1000 || c->dedupe_window_ms > 7 * 86400 * 1000LL) {
        fprintf(stderr, "tocsin-aggregator: dedupe.window must be 1s to 7d\n");
        return TC_EINVAL;
    }
    if (c->retention_raw_ms < 60000 || c->retention_max_ms <= c->retention_raw_ms ||
        c->retention_max_ms > 3650LL * 86400 * 1000) {
        fprintf(stderr, "tocsin-aggregator: retention.raw must be at least 1m and below "
                        "retention.max (at most 10 years)\n");
        return TC_EINVAL;
    }
    if (agg_slo_parse(c->slo_thresholds, slo) != 0) {
        fprintf(stderr, "tocsin-aggregator: slo.thresholds must be at most 8 ascending durations "
                        "such as 100ms,500ms,2s\n");
        return TC_EINVAL;
    }
    if (c->lmdb_map_size < 1024 * 1024 || (c->lmdb_max_map && c->lmdb_max_map < c->lmdb_map_size)) {
        fprintf(stderr, "tocsin-aggregator: lmdb.map_size must be at least 1MiB and at most "
                        "lmdb.max_map\n");
        return TC_EINVAL;
    }
    if (!c->data_dir[0] || !c->group_id[0] || !c->topic_events[0] || !c->topic_rollups[0] ||
        !c->topic_logs[0]) {
        fprintf(stderr, "tocsin-aggregator: data_dir, group.id, topic.events, topic.rollups and "
                        "topic.logs must not be empty\n");
        return TC_EINVAL;
    }
    return 0;
}

static int metrics_register(tc_metrics_t *reg, agg_metrics_t *m)
{
    static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.1,   0.25,   0.5,   1,    2.5};
    static const double query_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   1};
    memset(m, 0, sizeof(*m));
    const char *p = "tocsin_aggregator_";
    char name[96];
#define COUNTER(field, n, help)                                                                    \
    do {                                                                                           \
        snprintf(name, sizeof(name), "%s%s", p, n);                                                \
        m->field = tc_metrics_counter(reg, name, NULL, help);                                      \
        if (!m->field) {                                                                           \
            return TC_ENOMEM;                                                                      \
        }                                                                                          \
    } while (0)
    COUNTER(events_consumed, "events_consumed_total",
            "Events taken from topic.events (every event of a packed record)");
    COUNTER(records_consumed, "records_consumed_total",
            "Kafka records taken from topic.events (one event, or a pack of events)");
    COUNTER(events_applied, "events_applied_total", "Events added to their states");
    COUNTER(duplicates, "duplicates_total",
            "Events (and log records) dropped because their event_id was seen");
    COUNTER(decode_errors, "decode_errors_total",
            "Events refused: not a valid tocsin.v1.Event, or in a record that cannot be read "
            "(logged, rate-limited)");
    COUNTER(records_unreadable, "records_unreadable_total",
            "Records of topic.events and topic.logs refused whole: an unknown tocsin.format, or "
            "a pack badly framed or empty (logged, rate-limited; the offset still advances)");
    COUNTER(late_events, "late_events_total",
            "Events received after their bucket closed (counted in it and as late), and events "
            "too old for any bucket (counted as late only)");
    COUNTER(covered, "covered_total",
            "Records already held by the states (published by an earlier owner, or older views)");
    COUNTER(stale_events, "stale_events_total",
            "Records below the stored offset, read again to refill the dedupe set");
    COUNTER(ignored_events, "ignored_events_total", "Valid records that feed nothing here");
    COUNTER(conflicts, "series_conflicts_total",
            "Records refused: their series name is used with another kind, or hashes collide");
    COUNTER(records_lost, "records_lost_total",
            "Records missing between a stored offset and the next record (deleted by the broker)");
    COUNTER(corrupt_values, "corrupt_values_total",
            "Stored values that failed validation (replaced or skipped; logged)");
    COUNTER(commits, "commits_total", "LMDB transactions of batches and offsets committed");
    COUNTER(commit_failures, "commit_failures_total", "LMDB batch transactions that failed");
    COUNTER(view_records, "view_records_total", "Records the view read (rollups and logs)");
    COUNTER(view_applied, "view_applied_total", "States, statuses and checkpoints the view took");
    COUNTER(view_invalid, "view_invalid_total", "Rollups refused by validation (logged)");
    COUNTER(view_old, "view_old_total", "Rollups of buckets already rolled up to 1 min (dropped)");
    COUNTER(logs_stored, "logs_stored_total", "Log records stored");
    COUNTER(issues_new, "issues_new_total", "Issues seen for the first time");
    COUNTER(issues_regressed, "issues_regressed_total", "Resolved issues seen again");
    COUNTER(rollups_published, "rollups_published_total",
            "States delivered to topic.rollups (delivery report)");
    COUNTER(rollup_failures, "rollup_failures_total",
            "Deliveries to topic.rollups that failed (they stay owed and are retried)");
    COUNTER(checkpoints_published, "checkpoints_published_total",
            "Partition checkpoints delivered to topic.rollups");
    COUNTER(changes_published, "changes_published_total",
            "Issue changes and statuses delivered to topic.rollups");
    COUNTER(offset_resets, "offset_resets_total",
            "Partitions started over because the broker lost its log");
    COUNTER(takeovers, "takeovers_total",
            "Partitions resumed from another aggregator's checkpoint");
    COUNTER(maintenance, "retention_work_total",
            "Buckets rolled up or deleted and log records deleted by retention");
    COUNTER(queries, "queries_total", "Query API requests");
    COUNTER(query_errors, "query_errors_total", "Query API requests answered with an error");
    COUNTER(status_changes, "status_changes_total", "Issue statuses set through the API");
    COUNTER(unauthorized, "unauthorized_total",
            "Mutating requests refused for a missing or wrong bearer token");
#undef COUNTER
    m->assigned_partitions = tc_metrics_gauge(reg, "tocsin_aggregator_assigned_partitions", NULL,
                                              "Partitions of topic.events assigned to us");
    m->dedupe_ids = tc_metrics_gauge(reg, "tocsin_aggregator_dedupe_ids", NULL,
                                     "Event ids held in the dedupe set");
    m->dedupe_evicted =
        tc_metrics_gauge(reg, "tocsin_aggregator_dedupe_evicted", NULL,
                         "Event ids forgotten inside their window (dedupe.max_ids)");
    m->view_lag_seconds = tc_metrics_gauge(reg, "tocsin_aggregator_view_lag_seconds", NULL,
                                           "How far the view is behind topic.rollups");
    m->commit_seconds = tc_metrics_histogram(reg, "tocsin_aggregator_commit_seconds", NULL,
                                             "Time to apply and commit one batch", commit_bounds,
                                             sizeof(commit_bounds) / sizeof(commit_bounds[0]));
    m->query_seconds = tc_metrics_histogram(reg, "tocsin_aggregator_query_seconds", NULL,
                                            "Time to answer a query API request", query_bounds,
                                            sizeof(query_bounds) / sizeof(query_bounds[0]));
    if (!m->assigned_partitions || !m->dedupe_ids || !m->dedupe_evicted || !m->view_lag_seconds ||
        !m->commit_seconds || !m->query_seconds) {
        return TC_ENOMEM;
    }
    return 0;
}

/* Heartbeat of tocsin-aggregator through the pipeline (tc_selfmon), with the consumer's lag;
 * stopped before the consumer closes. */
static tc_selfmon_t *selfmon;

static int selfmon_start(agg_daemon_t *d)
{
    selfmon = tc_selfmon_new("aggregator", d->instance_id, &d->cfg.selfmon, d->metrics,
                             "tocsin_aggregator_");
    if (!selfmon ||
        tc_selfmon_gauge_fn(selfmon, "consumer.lag", "records", tc_selfmon_kafka_lag,
                            d->consumer) != 0) {
        return TC_ENOMEM;
    }
    return tc_selfmon_start(selfmon);
}

static char *default_instance_id(void)
{
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    char buf[300];
    snprintf(buf, sizeof(buf), "%s-%d", host, (int)getpid());
    return strdup(buf);
}

/* Waits for the owed states and changes to be delivered and cleared, for up to
 * shutdown.timeout; what is left stays owed in LMDB and is published after a restart. */
static void drain_rollups(agg_daemon_t *d)
{
    int64_t deadline = tc_mono_us() + d->cfg.shutdown_timeout_ms * 1000;
    agg_publish_changes(d);
    agg_publish_tick(d, true);
    while (tc_mono_us() < deadline) {
        agg_publish_poll(d, 100);
        if (d->ndelivered > 0 || d->nchanges_done > 0) {
            d->retry_at_us = 0;
            agg_commit(d);
        }
        if (agg_publish_inflight(d) == 0) {
            break;
        }
    }
    size_t left = agg_publish_inflight(d);
    if (left) {
        tc_log(TC_LOG_WARN, "publish.shutdown",
               "%zu state(s) not confirmed before the time-out; they stay owed", left);
    }
}

/* Commits now when the batch is full, its oldest record waited poll.max_wait, or the
 * consumers had nothing more to give (low traffic: commit at once, for latency). */
static bool commit_due(const agg_daemon_t *d, size_t before, size_t got, int64_t first_us)
{
    size_t n = d->npending + d->nvpending + d->ndelivered + d->nchanges_done;
    if (n == 0) {
        return false;
    }
    return d->npending + d->nvpending >= (size_t)d->cfg.poll_max_messages || got == before ||
           tc_mono_us() - first_us >= d->cfg.poll_max_wait_ms * 1000;
}

static void run(agg_daemon_t *d)
{
    int64_t last_reader_check = tc_mono_us();
    int64_t last_maint = 0, last_gauges = 0;
    int64_t first_us = 0;
    while (!tc_signal_stop_requested()) {
        size_t before = d->npending + d->nvpending;
        bool idle = before == 0 && d->ndelivered == 0;
        agg_ingest_poll(d, idle ? 5 : 0);
        agg_view_poll(d, 0);
        agg_publish_poll(d, 0);
        size_t got = d->npending + d->nvpending;
        if (before == 0 && got > 0) {
            first_us = tc_mono_us();
        }
        if (commit_due(d, before, got, first_us)) {
            agg_commit(d);
            first_us = tc_mono_us();
        }
        if (atomic_exchange(&d->changes_pending, false)) {
            agg_publish_changes(d);
        }
        agg_publish_tick(d, false);
        int64_t now = tc_mono_us();
        if (now - last_maint > 1000000 && d->npending + d->nvpending == 0) {
            int work = agg_store_maintain(d->store, tc_now_us(), agg_view_time_us(d),
                                          (size_t)d->cfg.retention_slice);
            if (work > 0) {
                tc_counter_add(d->m.maintenance, (uint64_t)work);
            } else if (work < 0) {
                tc_log(TC_LOG_ERROR, "retention.failed", "retention slice failed: %s",
                       tc_strerror(work));
            }
            last_maint = now;
        }
        if (now - last_gauges > 1000000) {
            int64_t lag = (tc_now_us() - agg_view_time_us(d)) / 1000;
            atomic_store(&d->view_lag_ms, lag > 0 ? lag : 0);
            tc_gauge_set(d->m.view_lag_seconds, lag > 0 ? (double)lag / 1000.0 : 0.0);
            tc_gauge_set(d->m.dedupe_ids, (double)agg_store_dedupe_size(d->store));
            tc_gauge_set(d->m.dedupe_evicted, (double)agg_store_dedupe_evicted(d->store));
            last_gauges = now;
        }
        if (now - last_reader_check > READER_CHECK_US) {
            int dead = agg_store_reader_check(d->store);
            if (dead > 0) {
                tc_log(TC_LOG_WARN, "lmdb.stale_readers", "cleared %d stale reader slots", dead);
            }
            last_reader_check = now;
        }
    }
    tc_log(TC_LOG_INFO, "aggregator.stopping", "stop requested; draining");
    tc_selfmon_destroy(&selfmon);
    d->retry_at_us = 0;
    agg_publish_poll(d, 0);
    agg_commit(d);
    agg_ingest_stop(d);
    drain_rollups(d);
}

int main(int argc, char **argv)
{
    static agg_daemon_t daemon_state;
    agg_daemon_t *d = &daemon_state;
    int exit_code = 1;
    char *bootstrap = NULL;

    /* tc_config_cli sets the defaults, then the file, then --set. */
    int rc = tc_config_cli(config_table, &d->cfg, argc, argv, usage);
    if (rc == 1) {
        tc_config_free(config_table, &d->cfg);
        return 0;
    }
    if (rc < 0 || check_config(&d->cfg, &d->slo) != 0) {
        tc_config_free(config_table, &d->cfg);
        return 2;
    }
    tc_log_level_t level = TC_LOG_INFO;
    if (tc_log_level_parse(d->cfg.log_level, &level) != 0) {
        fprintf(stderr, "tocsin-aggregator: log.level must be debug, info, warn or error\n");
        tc_config_free(config_table, &d->cfg);
        return 2;
    }
    tc_log_init("aggregator", level);
    d->instance_id = d->cfg.instance_id[0] ? strdup(d->cfg.instance_id) : default_instance_id();
    if (!d->instance_id || tc_signal_init() != 0) {
        goto out;
    }
    uint32_t nonce = 0;
    tc_random_bytes(&nonce, sizeof(nonce));
    snprintf(d->producer_id, sizeof(d->producer_id), "%s/%08x", d->instance_id, nonce);
    d->metrics = tc_metrics_new();
    if (!d->metrics || metrics_register(d->metrics, &d->m) != 0) {
        tc_log(TC_LOG_ERROR, "aggregator.start", "out of memory registering metrics");
        goto out;
    }
    agg_store_opts_t so = {.dir = d->cfg.data_dir,
                           .map_size = (size_t)d->cfg.lmdb_map_size,
                           .max_map = (size_t)d->cfg.lmdb_max_map,
                           .grace_ms = d->cfg.grace_ms,
                           .dedupe_window_ms = d->cfg.dedupe_window_ms,
                           .dedupe_max_ids = (size_t)d->cfg.dedupe_max_ids,
                           .slo = d->slo,
                           .raw_retention_ms = d->cfg.retention_raw_ms,
                           .max_retention_ms = d->cfg.retention_max_ms,
                           .logs_retention_ms = d->cfg.logs_retention_ms,
                           .logs_max_bytes = d->cfg.logs_max_bytes,
                           .group = d->cfg.group_id,
                           .events_topic = d->cfg.topic_events};
    d->store = agg_store_open(&so);
    if (!d->store) {
        goto out;
    }
    rc = tc_kafka_bootstrap(d->cfg.brokers, d->cfg.brokers_file, BROKERS_FILE_WAIT_MS, &bootstrap);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "kafka.bootstrap", "no brokers: %s (set brokers or brokers_file)",
               tc_strerror(rc));
        goto out;
    }
    /* The view first: assignments of the group wait for it to catch up. */
    if (agg_publish_start(d, bootstrap) != 0 || agg_view_start(d, bootstrap) != 0 ||
        agg_ingest_start(d, bootstrap) != 0 || agg_probe_start(d) != 0) {
        goto out;
    }
    d->http = tc_http_new("aggregator");
    if (!d->http || agg_api_register(d) != 0) {
        tc_log(TC_LOG_ERROR, "aggregator.start", "out of memory setting up HTTP");
        goto out;
    }
    rc = tc_http_start(d->http, d->cfg.http_bind, (uint16_t)d->cfg.http_port);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "http.start", "cannot listen on %s:%" PRId64 ": %s", d->cfg.http_bind,
               d->cfg.http_port, tc_strerror(rc));
        goto out;
    }
    tc_logj(TC_LOG_INFO, "aggregator.started",
            json_pack("{s:s, s:i, s:s, s:s, s:s, s:s}", "instance", d->instance_id, "http_port",
                      (int)tc_http_port(d->http), "brokers", bootstrap, "group", d->cfg.group_id,
                      "topic", d->cfg.topic_events, "data_dir", d->cfg.data_dir),
            "tocsin-aggregator %s listening on %s:%d", TOCSIN_VERSION, d->cfg.http_bind,
            (int)tc_http_port(d->http));
    if (selfmon_start(d) != 0) {
        goto out;
    }
    run(d);
    exit_code = d->fatal ? 1 : 0;

out:
    tc_selfmon_destroy(&selfmon); /* it reads the consumer */
    /* HTTP first: its handlers read the store. */
    tc_http_destroy(&d->http);
    agg_probe_stop(d);
    if (d->consumer) {
        agg_ingest_stop(d);
    }
    agg_view_stop(d);
    agg_publish_stop(d);
    agg_store_destroy(&d->store);
    free(d->pending);
    free(d->msgs);
    tc_metrics_destroy(&d->metrics);
    free(bootstrap);
    free(d->instance_id);
    tc_config_free(config_table, &d->cfg);
    tc_log(exit_code == 0 ? TC_LOG_INFO : TC_LOG_ERROR, "aggregator.exit", "exit %d", exit_code);
    return exit_code;
}
