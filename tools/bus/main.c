/*
 * tocsin-bus — the embedded Kafka-protocol broker for local mode and tests.
 *
 * It hosts librdkafka's mock cluster: real Kafka protocol on 127.0.0.1 (produce,
 * idempotent produce, fetch, consumer groups, offset commits, metadata), data in memory
 * only, each partition's log bounded. It is for development and tests; production runs a
 * Kafka cluster. An optional HTTP port lets tests take brokers down and up.
 */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_http.h"
#include "tc_log.h"
#include "tc_metrics.h"
#include "tc_signal.h"
#include "tc_util.h"

#define MAX_TOPICS 32
#define MAX_BROKERS 16

static const char usage[] =
    "usage: tocsin-bus [options]\n"
    "\n"
    "Runs an embedded Kafka-protocol broker (librdkafka's mock cluster) on 127.0.0.1 for\n"
    "Tocsin's local mode and tests.\n"
    "\n"
    "  IT KEEPS ALL DATA IN MEMORY ONLY: everything is gone when it stops, and each\n"
    "  partition keeps at most about 5 MiB or 100,000 message sets (older ones are\n"
    "  dropped), so consumers must keep up. Production uses a real Kafka cluster\n"
    "  (see deploy/).\n"
    "\n"
    "Options:\n"
    "  --brokers N            brokers in the cluster (default 3, at most 16)\n"
    "  --partitions N         partitions per topic (default 4)\n"
    "  --replication N        replication factor (default: min(3, brokers))\n"
    "  --topic NAME           create this topic (repeatable; default tocsin.events,\n"
    "                         tocsin.logs and tocsin.rollups)\n"
    "  --bootstrap-file FILE  write the bootstrap address to FILE (removed on exit);\n"
    "                         daemons read it through their brokers_file setting\n"
    "  --http-port PORT       serve /health/*, /metrics and the fault-injection API on\n"
    "                         127.0.0.1:PORT (0 picks a free port; default: off)\n"
    "  --log-level LEVEL      debug, info, warn, error (default info)\n"
    "  --help, --version\n"
    "\n"
    "Fault injection (with --http-port), for tests:\n"
    "  POST /api/v1/brokers/down[?id=N]   disconnect broker N (all when no id)\n"
    "  POST /api/v1/brokers/up[?id=N]     accept connections again\n"
    "  POST /api/v1/brokers/rtt?ms=M[&id=N]  add round-trip delay\n"
    "  GET  /api/v1/brokers               which brokers are up\n"
    "\n"
    "It prints the bootstrap address on stdout and exits cleanly on SIGTERM or SIGINT.\n";

typedef struct {
    rd_kafka_mock_cluster_t *mcluster;
    int brokers;
    bool up[MAX_BROKERS + 1];
    tc_counter_t *faults;
} bus_t;

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        return TC_EINVAL;
    }
    *out = (int)v;
    return 0;
}

/* Reads ?id=N; -1 (all brokers) when absent. */
static int broker_param(const bus_t *bus, const tc_http_req_t *req, tc_http_resp_t *resp,
                        int *id)
{
    const char *s = tc_http_req_query(req, "id");
    *id = -1;
    if (s && parse_int(s, 1, bus->brokers, id) != 0) {
        tc_http_resp_error(resp, 400, "id", "id must be a broker id from 1 to %d",
                           bus->brokers);
        return TC_EINVAL;
    }
    return 0;
}

static json_t *brokers_json(const bus_t *bus)
{
    json_t *list = json_array();
    for (int i = 1; i <= bus->brokers; i++) {
        json_array_append_new(list, json_pack("{s:i, s:b}", "id", i, "up", bus->up[i]));
    }
    return json_pack("{s:o}", "brokers", list);
}

static void set_state(bus_t *bus, const tc_http_req_t *req, tc_http_resp_t *resp, bool up)
{
    int id;
    if (broker_param(bus, req, resp, &id) != 0) {
        return;
    }
    rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(bus->mcluster, id)
                                 : rd_kafka_mock_broker_set_down(bus->mcluster, id);
    if (err) {
        tc_http_resp_error(resp, 500, NULL, "%s", rd_kafka_err2str(err));
        return;
    }
    for (int i = 1; i <= bus->brokers; i++) {
        if (id == -1 || id == i) {
            bus->up[i] = up;
        }
    }
    tc_counter_inc(bus->faults);
    tc_log(TC_LOG_INFO, up ? "bus.broker_up" : "bus.broker_down", "broker %s %s",
           id == -1 ? "all" : "one", up ? "up" : "down");
    tc_http_resp_json(resp, 200, brokers_json(bus));
}

static void on_down(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    set_state(ctx, req, resp, false);
}

static void on_up(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    set_state(ctx, req, resp, true);
}

static void on_rtt(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    bus_t *bus = ctx;
    int id, ms;
    if (broker_param(bus, req, resp, &id) != 0) {
        return;
    }
    const char *s = tc_http_req_query(req, "ms");
    if (!s || parse_int(s, 0, 600000, &ms) != 0) {
        tc_http_resp_error(resp, 400, "ms", "ms must be 0 to 600000");
        return;
    }
    rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(bus->mcluster, id, ms);
    if (err) {
        tc_http_resp_error(resp, 500, NULL, "%s", rd_kafka_err2str(err));
        return;
    }
    tc_counter_inc(bus->faults);
    tc_http_resp_json(resp, 200, brokers_json(bus));
}

static void on_list(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    tc_http_resp_json(resp, 200, brokers_json(ctx));
}

static void on_ready(void *ctx, tc_health_t *health)
{
    const bus_t *bus = ctx;
    int up = 0;
    for (int i = 1; i <= bus->brokers; i++) {
        up += bus->up[i];
    }
    char detail[64];
    snprintf(detail, sizeof(detail), "%d of %d brokers up", up, bus->brokers);
    tc_health_add(health, "brokers",
                  up == bus->brokers ? TC_HEALTH_HEALTHY
                                     : (up ? TC_HEALTH_DEGRADED : TC_HEALTH_UNHEALTHY),
                  0.0, detail);
}

/* Writes the bootstrap list through a temporary file and rename, so a reader never sees a
 * half-written line. */
static int write_bootstrap(const char *path, const char *bootstraps)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return TC_EIO;
    }
    int ok = fprintf(f, "%s\n", bootstraps) > 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return TC_EIO;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int brokers = 3, partitions = 4, replication = -1, http_port = -1;
    const char *bootstrap_file = NULL;
    const char *topics[MAX_TOPICS];
    int ntopics = 0;
    tc_log_level_t level = TC_LOG_INFO;
    enum { OPT_BROKERS = 1, OPT_PARTITIONS, OPT_REPLICATION, OPT_TOPIC, OPT_FILE, OPT_HTTP,
           OPT_LOG, OPT_HELP, OPT_VERSION };
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, OPT_BROKERS},
        {"partitions", required_argument, NULL, OPT_PARTITIONS},
        {"replication", required_argument, NULL, OPT_REPLICATION},
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"bootstrap-file", required_argument, NULL, OPT_FILE},
        {"http-port", required_argument, NULL, OPT_HTTP},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case OPT_BROKERS:
            bad = parse_int(optarg, 1, MAX_BROKERS, &brokers);
            break;
        case OPT_PARTITIONS:
            bad = parse_int(optarg, 1, 1000, &partitions);
            break;
        case OPT_REPLICATION:
            bad = parse_int(optarg, 1, MAX_BROKERS, &replication);
            break;
        case OPT_TOPIC:
            if (ntopics == MAX_TOPICS || !*optarg) {
                bad = 1;
            } else {
                topics[ntopics++] = optarg;
            }
            break;
        case OPT_FILE:
            bootstrap_file = optarg;
            break;
        case OPT_HTTP:
            bad = parse_int(optarg, 0, 65535, &http_port);
            break;
        case OPT_LOG:
            bad = tc_log_level_parse(optarg, &level);
            break;
        case OPT_HELP:
        case 'h':
            fputs(usage, stdout);
            return 0;
        case OPT_VERSION:
            printf("tocsin-bus %s (librdkafka %s)\n", TOCSIN_VERSION, rd_kafka_version_str());
            return 0;
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "tocsin-bus: bad option value (see --help)\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tocsin-bus: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return 2;
    }
    if (ntopics == 0) {
        topics[ntopics++] = "tocsin.events";
        topics[ntopics++] = "tocsin.logs";
        topics[ntopics++] = "tocsin.rollups";
    }
    if (replication < 0) {
        replication = brokers < 3 ? brokers : 3;
    }
    if (replication > brokers) {
        fprintf(stderr, "tocsin-bus: --replication %d is more than --brokers %d\n", replication,
                brokers);
        return 2;
    }

    tc_log_init("bus", level);
    if (tc_signal_init() != 0) {
        fprintf(stderr, "tocsin-bus: cannot install signal handlers\n");
        return 1;
    }

    int rc = 1;
    rd_kafka_t *rk = NULL;
    tc_metrics_t *metrics = NULL;
    tc_http_t *http = NULL;
    bus_t bus;
    memset(&bus, 0, sizeof(bus));
    bus.brokers = brokers;

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The handle only hosts the mock cluster; it never connects anywhere itself. */
    rd_kafka_conf_set(conf, "client.id", "tocsin-bus", err, sizeof(err));
    /* Notices would only say this handle has no bootstrap.servers of its own. */
    rd_kafka_conf_set(conf, "log_level", "4", err, sizeof(err));
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        tc_log(TC_LOG_ERROR, "bus.start", "rd_kafka_new: %s", err);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    conf = NULL; /* rk owns conf now */
    bus.mcluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (!bus.mcluster) {
        tc_log(TC_LOG_ERROR, "bus.start", "cannot start the mock cluster");
        goto out;
    }
    for (int i = 1; i <= brokers; i++) {
        bus.up[i] = true;
    }
    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(bus.mcluster, topics[i], partitions, replication);
        if (e) {
            tc_log(TC_LOG_ERROR, "bus.topic", "%s: %s", topics[i], rd_kafka_err2str(e));
            goto out;
        }
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(bus.mcluster);

    metrics = tc_metrics_new();
    if (!metrics) {
        goto out;
    }
    bus.faults = tc_metrics_counter(metrics, "tocsin_bus_faults_injected_total", NULL,
                                    "Broker state changes made through the fault API");
    if (!bus.faults) {
        goto out;
    }
    if (http_port >= 0) {
        http = tc_http_new("bus");
        if (!http || tc_http_route(http, "POST", "/api/v1/brokers/down", on_down, &bus) ||
            tc_http_route(http, "POST", "/api/v1/brokers/up", on_up, &bus) ||
            tc_http_route(http, "POST", "/api/v1/brokers/rtt", on_rtt, &bus) ||
            tc_http_route(http, "GET", "/api/v1/brokers", on_list, &bus)) {
            goto out;
        }
        tc_http_set_metrics(http, metrics);
        tc_http_set_ready(http, on_ready, &bus);
        if (tc_http_start(http, "127.0.0.1", (uint16_t)http_port) != 0) {
            tc_log(TC_LOG_ERROR, "bus.http", "cannot listen on 127.0.0.1:%d", http_port);
            goto out;
        }
    }
    if (bootstrap_file && write_bootstrap(bootstrap_file, bootstraps) != 0) {
        tc_log(TC_LOG_ERROR, "bus.bootstrap_file", "cannot write %s: %s", bootstrap_file,
               strerror(errno));
        goto out;
    }
    printf("%s\n", bootstraps);
    fflush(stdout);
    tc_logj(TC_LOG_INFO, "bus.ready",
            json_pack("{s:s, s:i, s:i, s:i, s:i}", "bootstrap", bootstraps, "brokers", brokers,
                      "partitions", partitions, "topics", ntopics, "http_port",
                      http ? tc_http_port(http) : 0),
            "embedded broker up (memory only)");

    struct pollfd pfd = {.fd = tc_signal_fd(), .events = POLLIN};
    while (!tc_signal_stop_requested()) {
        poll(&pfd, 1, 1000);
        tc_signal_drain();
        rd_kafka_poll(rk, 0);
    }
    tc_log(TC_LOG_INFO, "bus.stop", "stopping; in-memory data is discarded");
    rc = 0;
out:
    if (bootstrap_file) {
        unlink(bootstrap_file);
    }
    tc_http_destroy(&http);
    if (bus.mcluster) {
        rd_kafka_mock_cluster_destroy(bus.mcluster);
    }
    if (rk) {
        rd_kafka_destroy(rk);
    }
    tc_metrics_destroy(&metrics);
    return rc;
}
