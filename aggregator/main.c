/*
 * tocsin-aggregator — turns tocsin.events into 10 s buckets per series in LMDB, answers
 * queries over them on HTTP, and publishes closed buckets to tocsin.rollups.
 *
 * The loop, on the main thread: consume a batch (up to poll.max_messages records or
 * poll.max_wait), serve the producer's delivery reports, apply the batch and the delivered
 * rollups in one LMDB transaction with the new offsets, and hand the owed rollups of closed
 * buckets to the producer. SIGTERM: the pending batch is committed, the consumer leaves the
 * group, owed rollups are flushed for up to shutdown.timeout, and the process exits 0.
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
     "Kafka consumer group of the aggregators", 0, 0},
    {"topic.events", TC_CFG_STRING, "tocsin.events", OFF(topic_events),
     "Kafka topic the events are consumed from", 0, 0},
    {"topic.rollups", TC_CFG_STRING, "tocsin.rollups", OFF(topic_rollups),
     "Kafka topic closed buckets are published to", 0, 0},
    {"data_dir", TC_CFG_STRING, "./data/aggregator", OFF(data_dir),
     "directory of the LMDB environment (buckets, offsets, dedupe set)", 0, 0},
    {"grace", TC_CFG_DURATION, "2s", OFF(grace_ms),
     "a bucket closes (and its rollup is published) this long after its end; events "
     "received later are counted as late",
     0, 0},
    {"dedupe.window", TC_CFG_DURATION, "10m", OFF(dedupe_window_ms),
     "how long an event_id is remembered to drop resent events (collector receive time)", 0, 0},
    {"poll.max_messages", TC_CFG_INT, "5000", OFF(poll_max_messages),
     "records applied per LMDB transaction at most", 1, 1000000},
    {"poll.max_wait", TC_CFG_DURATION, "100ms", OFF(poll_max_wait_ms),
     "longest wait to fill a batch (1ms to 250ms)", 0, 0},
    {"lmdb.map_size", TC_CFG_SIZE, "1GiB", OFF(lmdb_map_size),
     "initial LMDB map size (sparse file)", 0, 0},
    {"lmdb.max_map", TC_CFG_SIZE, "64GiB", OFF(lmdb_max_map),
     "the map doubles on MDB_MAP_FULL up to this size", 0, 0},
    {"shutdown.timeout", TC_CFG_DURATION, "10s", OFF(shutdown_timeout_ms),
     "on SIGTERM, how long to wait for owed rollups to be delivered", 0, 0},
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, OFF(kafka),
     "passed to librdkafka unchanged (kafka.security.protocol=SASL_SSL, ...)", 0, 0},
    TC_CFG_END,
};

static const char usage[] =
    "Usage: tocsin-aggregator [--config FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "Consumes tocsin.v1.Event records from Kafka (consumer group group.id on topic.events),\n"
    "keeps 10 s buckets per series in LMDB with the consumed offsets (exactly once), answers\n"
    "GET /api/v1/query and /api/v1/series on HTTP, and publishes closed buckets to\n"
    "topic.rollups.\n";

static int check_config(const agg_config_t *c)
{
    if (c->poll_max_wait_ms < 1 || c->poll_max_wait_ms > 250) {
        fprintf(stderr, "tocsin-aggregator: poll.max_wait must be 1ms to 250ms\n");
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
    if (c->lmdb_map_size < 1024 * 1024 || (c->lmdb_max_map && c->lmdb_max_map < c->lmdb_map_size)) {
        fprintf(stderr, "tocsin-aggregator: lmdb.map_size must be at least 1MiB and at most "
                        "lmdb.max_map\n");
        return TC_EINVAL;
    }
    if (!c->data_dir[0] || !c->group_id[0] || !c->topic_events[0] || !c->topic_rollups[0]) {
        fprintf(stderr, "tocsin-aggregator: data_dir, group.id, topic.events and "
                        "topic.rollups must not be empty\n");
        return TC_EINVAL;
    }
    return 0;
}

static int metrics_register(tc_metrics_t *reg, agg_metrics_t *m)
{
    static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.1,   0.25,   0.5,   1,    2.5};
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
    COUNTER(events_consumed, "events_consumed_total", "Records taken from topic.events");
    COUNTER(events_applied, "events_applied_total", "Events added to their bucket");
    COUNTER(duplicates, "duplicates_total", "Events dropped because their event_id was seen");
    COUNTER(decode_errors, "decode_errors_total",
            "Records refused: not a valid tocsin.v1.Event (logged, rate-limited)");
    COUNTER(late_events, "late_events_total",
            "Events received after their bucket closed (counted all the same)");
    COUNTER(stale_events, "stale_events_total",
            "Records below the stored offset, already applied (skipped)");
    COUNTER(ignored_events, "ignored_events_total", "Valid events that feed no series (logs)");
    COUNTER(conflicts, "series_conflicts_total",
            "Events refused: their series name is used with another kind");
    COUNTER(corrupt_values, "corrupt_values_total",
            "Stored values that failed validation (replaced or skipped; logged)");
    COUNTER(commits, "commits_total", "LMDB transactions of batches and offsets committed");
    COUNTER(commit_failures, "commit_failures_total", "LMDB batch transactions that failed");
    COUNTER(rollups_published, "rollups_published_total",
            "Rollups delivered to topic.rollups (delivery report)");
    COUNTER(rollup_failures, "rollup_failures_total",
            "Rollup deliveries that failed (they stay owed and are retried)");
    COUNTER(offset_resets, "offset_resets_total",
            "Partitions started over because the broker lost its log");
    COUNTER(queries, "queries_total", "GET /api/v1/query requests");
    COUNTER(query_errors, "query_errors_total", "Queries answered with an error");
#undef COUNTER
    m->assigned_partitions = tc_metrics_gauge(reg, "tocsin_aggregator_assigned_partitions", NULL,
                                              "Partitions of topic.events assigned to us");
    m->commit_seconds = tc_metrics_histogram(reg, "tocsin_aggregator_commit_seconds", NULL,
                                             "Time to apply and commit one batch", commit_bounds,
                                             sizeof(commit_bounds) / sizeof(commit_bounds[0]));
    if (!m->assigned_partitions || !m->commit_seconds) {
        return TC_ENOMEM;
    }
    return 0;
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

/* Waits for the owed rollups of closed buckets to be delivered and cleared, for up to
 * shutdown.timeout; what is left stays owed in LMDB and is published after a restart. */
static void drain_rollups(agg_daemon_t *d)
{
    int64_t deadline = tc_mono_us() + d->cfg.shutdown_timeout_ms * 1000;
    agg_publish_tick(d, true);
    while (tc_mono_us() < deadline) {
        agg_publish_poll(d, 100);
        if (d->ndelivered > 0) {
            agg_ingest_commit(d);
        }
        if (agg_publish_inflight(d) == 0) {
            break;
        }
    }
    size_t left = agg_publish_inflight(d);
    if (left) {
        tc_log(TC_LOG_WARN, "publish.shutdown",
               "%zu rollup(s) not confirmed before the time-out; they stay owed", left);
    }
}

static void run(agg_daemon_t *d)
{
    int64_t last_reader_check = tc_mono_us();
    while (!tc_signal_stop_requested()) {
        agg_ingest_poll(d);
        agg_publish_poll(d, 0);
        agg_ingest_commit(d);
        agg_publish_tick(d, false);
        if (tc_mono_us() - last_reader_check > READER_CHECK_US) {
            int dead = agg_store_reader_check(d->store);
            if (dead > 0) {
                tc_log(TC_LOG_WARN, "lmdb.stale_readers", "cleared %d stale reader slots", dead);
            }
            last_reader_check = tc_mono_us();
        }
    }
    tc_log(TC_LOG_INFO, "aggregator.stopping", "stop requested; draining");
    d->retry_at_us = 0;
    agg_publish_poll(d, 0);
    agg_ingest_commit(d);
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
    if (rc < 0 || check_config(&d->cfg) != 0) {
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
    d->metrics = tc_metrics_new();
    if (!d->metrics || metrics_register(d->metrics, &d->m) != 0) {
        tc_log(TC_LOG_ERROR, "aggregator.start", "out of memory registering metrics");
        goto out;
    }
    agg_store_opts_t so = {.dir = d->cfg.data_dir,
                           .map_size = (size_t)d->cfg.lmdb_map_size,
                           .max_map = (size_t)d->cfg.lmdb_max_map,
                           .grace_ms = d->cfg.grace_ms,
                           .dedupe_window_ms = d->cfg.dedupe_window_ms};
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
    if (agg_publish_start(d, bootstrap) != 0 || agg_ingest_start(d, bootstrap) != 0 ||
        agg_probe_start(d) != 0) {
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
    run(d);
    exit_code = d->fatal ? 1 : 0;

out:
    /* HTTP first: its handlers read the store. */
    tc_http_destroy(&d->http);
    agg_probe_stop(d);
    if (d->consumer) {
        agg_ingest_stop(d);
    }
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
