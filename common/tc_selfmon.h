/*
 * tc_selfmon.h — the pipeline watching itself: every daemon sends a heartbeat and a few
 * gauges through libtocsin, to the collectors, as any service would, so that the alerter's
 * default rules see a stage that goes silent (a dead-man's switch) or falls behind.
 *
 * Naming convention (docs/operations.md, "Self-monitoring"):
 *   service      tocsin-<stage>: tocsin-collector, tocsin-aggregator, tocsin-alerter
 *   environment  selfmon.environment (default "production")
 *   release      this build's version
 *   tag          instance = the daemon's instance.id (host is set by libtocsin)
 *   metrics      "heartbeat" (COUNTER 1 every selfmon.interval: tocsin_heartbeat's shape),
 *                and the stage's gauges: collector "spool.bytes", "spool.entries",
 *                "spool.fill" (spool bytes / spool.max_bytes, 0 without a spool);
 *                aggregator and alerter "consumer.lag" (records not yet consumed).
 * Series are (service, environment, name): the instances of a stage share one series, so a
 * rule on a stage's heartbeat fires when the whole stage is silent; one instance that dies
 * is seen by Prometheus (up == 0) and by tocsinctl status.
 *
 * Use, in a daemon:
 *   - add `tc_selfmon_config_t selfmon;` to the config struct and
 *     TC_SELFMON_CONFIG_ENTRIES(type, selfmon, default) to the config table;
 *   - tc_selfmon_new() once the metrics registry exists, then tc_selfmon_gauge_fn() or
 *     tc_selfmon_gauge_metric() for each gauge, then tc_selfmon_start();
 *   - tc_selfmon_destroy() before anything a gauge callback reads is torn down.
 *
 * Threads: one background thread per tc_selfmon_t records a heartbeat and the gauges every
 * interval (the first at once) and runs the gauge callbacks; libtocsin's own thread sends.
 * Recording never blocks (libtocsin drops and counts when its small queue is full), so the
 * daemon never waits for its own monitoring. With selfmon.collectors empty nothing is
 * started: no thread, no socket, no effect.
 */
#ifndef TC_SELFMON_H
#define TC_SELFMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_config.h"
#include "tc_metrics.h"

typedef struct tc_selfmon tc_selfmon_t;

/* The `selfmon.*` keys, held in the daemon's config struct. */
typedef struct {
    char *collectors;        /* comma-separated ZeroMQ endpoints; "self" is the collector's own
                                listening endpoint; empty: self-monitoring off */
    int64_t interval_ms;     /* heartbeat and gauge period */
    char *environment;       /* environment of the events */
    char *api_key;           /* API key sent with each batch (collectors with auth.keys_file) */
    char *curve_server_cert; /* czmq certificate holding the collectors' public key; empty: plain
                                TCP (a collector's "self" uses its own curve.server_cert) */
    char *curve_cert;        /* this daemon's client certificate (FILE_secret, with the secret
                                key); empty with a server key: a fresh key pair each start */
} tc_selfmon_config_t;

/* Shortest and longest selfmon.interval. */
#define TC_SELFMON_INTERVAL_MIN_MS 100
#define TC_SELFMON_INTERVAL_MAX_MS 3600000

/* Longest certificate file read. */
#define TC_SELFMON_CERT_MAX 65536

/*
 * The table entries of the `selfmon.*` keys, for a daemon's config table: `type` is its
 * config struct, `member` the tc_selfmon_config_t in it, `def_collectors` the default of
 * selfmon.collectors ("self" for the collector, "tcp://127.0.0.1:7420" for the others).
 */
#define TC_SELFMON_CONFIG_ENTRIES(type, member, def_collectors)                                    \
    {"selfmon.collectors", TC_CFG_STRING, def_collectors, offsetof(type, member.collectors),       \
     "collectors this daemon sends its heartbeat and gauges to (service tocsin-<stage>); "         \
     "\"self\": the collector's own endpoint; empty: off",                                         \
     0, 0},                                                                                        \
        {"selfmon.interval", TC_CFG_DURATION, "10s", offsetof(type, member.interval_ms),           \
         "how often the heartbeat and the gauges are sent (100ms to 1h)", 0, 0},                   \
        {"selfmon.environment", TC_CFG_STRING, "production", offsetof(type, member.environment),   \
         "environment of the self-monitoring events", 0, 0},                                       \
        {"selfmon.api_key", TC_CFG_STRING, "", offsetof(type, member.api_key),                     \
         "API key of the self-monitoring client (collectors with auth.keys_file)", 0, 0},          \
        {"selfmon.curve_server_cert", TC_CFG_STRING, "", offsetof(type, member.curve_server_cert), \
         "czmq certificate with the collectors' public key (empty: plain TCP; the collector's "    \
         "own endpoint uses curve.server_cert)",                                                   \
         0, 0},                                                                                    \
        {"selfmon.curve_cert", TC_CFG_STRING, "", offsetof(type, member.curve_cert),               \
         "this daemon's client certificate (FILE_secret) for collectors with curve.clients_dir",   \
         0, 0}

/* Computes a gauge on the self-monitoring thread. Returns 0 with *out set, or a negative
 * TC_E* code when there is no value now (the sample is left out). */
typedef int (*tc_selfmon_gauge_cb)(void *ctx, double *out);

/*
 * Creates the self-monitoring of one daemon. `stage` is "collector", "aggregator" or
 * "alerter" (the service is "tocsin-" stage); `instance_id` the daemon's instance.id;
 * `cfg` its selfmon keys (copied). With `registry` not NULL, the metrics
 * <metric_prefix>selfmon_enabled, <metric_prefix>selfmon_heartbeats_total and
 * <metric_prefix>selfmon_events_total{outcome="acked|dropped|rejected"} are registered there
 * (metric_prefix such as "tocsin_collector_"), and tc_selfmon_gauge_metric reads from it.
 * Nothing starts before tc_selfmon_start. Returns NULL when out of memory or an argument is
 * NULL or empty.
 */
tc_selfmon_t *tc_selfmon_new(const char *stage, const char *instance_id,
                             const tc_selfmon_config_t *cfg, tc_metrics_t *registry,
                             const char *metric_prefix);

/*
 * Tells a collector's self-monitoring its own endpoint, as ZMQ_LAST_ENDPOINT gives it
 * (made a loopback address by tc_selfmon_loopback),
 * and its own server certificate (NULL or "": none), used when selfmon.curve_server_cert
 * is empty. Call before tc_selfmon_start. Returns 0, TC_EINVAL (not a usable endpoint) or
 * TC_ENOMEM.
 */
int tc_selfmon_set_self(tc_selfmon_t *self, const char *bound_endpoint, const char *server_cert);

/*
 * Adds a gauge `name` (unit may be NULL) computed by `fn(ctx)` each interval. Call before
 * tc_selfmon_start; `ctx` must stay valid until tc_selfmon_destroy. Returns 0, TC_EINVAL
 * (name too long or empty, more than 16 gauges) or TC_ESTATE (already started).
 */
int tc_selfmon_gauge_fn(tc_selfmon_t *self, const char *name, const char *unit,
                        tc_selfmon_gauge_cb fn, void *ctx);

/*
 * Adds a gauge `name` read each interval from the registry given to tc_selfmon_new:
 * `sample` is a metric name (the sum of its samples over every label set) or
 * `name{labels}` (that sample exactly, labels as rendered). A metric the registry does not
 * hold (yet) is left out. Returns as tc_selfmon_gauge_fn, and TC_EINVAL without a registry.
 */
int tc_selfmon_gauge_metric(tc_selfmon_t *self, const char *name, const char *unit,
                            const char *sample);

/*
 * Starts: checks the configuration, makes the libtocsin client (its own ZeroMQ context
 * and thread) and the self-monitoring thread. With selfmon.collectors empty it logs that
 * self-monitoring is off and returns 0 without starting anything. Returns 0; TC_EINVAL
 * with a log line naming the key at fault (interval out of range, "self" outside a
 * collector, an unreadable or malformed certificate, options libtocsin refuses);
 * TC_ESTATE when already started; TC_ENOMEM; TC_EIO (the thread could not start).
 */
int tc_selfmon_start(tc_selfmon_t *self);

/* True once tc_selfmon_start has started the thread (false when self-monitoring is off). */
bool tc_selfmon_running(const tc_selfmon_t *self);

/*
 * Stops the thread (waiting for a gauge callback that runs), gives libtocsin at most
 * 500 ms to deliver what is queued, and frees everything; sets *self_p to NULL. Safe with
 * NULL and twice. After it returns no gauge callback runs.
 */
void tc_selfmon_destroy(tc_selfmon_t **self_p);

/* A gauge callback that reads a tc_gauge_t of the daemon's registry (ctx: the gauge, which
 * must outlive the self-monitoring). Returns 0, or TC_EINVAL when ctx is NULL. */
int tc_selfmon_read_gauge(void *gauge, double *out);

/*
 * A gauge callback (ctx: the daemon's rd_kafka_t consumer) giving the consumer's lag: over
 * the partitions assigned to it, the high watermark librdkafka last saw minus the position
 * of the next record the application takes (partitions without a position yet are left
 * out). Uses only librdkafka's thread-safe calls and cached watermarks: no request to a
 * broker. The consumer must outlive the self-monitoring (destroy it first). Returns 0,
 * TC_EINVAL (ctx NULL), TC_EKAFKA (no assignment to read) or TC_ENOTFOUND (no partition
 * has a position and a watermark yet).
 */
int tc_selfmon_kafka_lag(void *consumer, double *out);

/* ---- pure helpers (exported for the unit tests and for tools) ----------------------- */

/*
 * Expands a selfmon.collectors list: trims spaces around each entry, replaces "self" with
 * `self_endpoint`, drops empty entries and repeats. Returns 0 with *out a new string the
 * caller frees ("" when the list is empty); TC_EINVAL when "self" is used without a
 * self_endpoint or an entry is not tcp:// or ipc://; TC_ENOMEM.
 */
int tc_selfmon_endpoints(const char *collectors, const char *self_endpoint, char **out);

/*
 * The endpoint a client on this host connects to for a socket bound at `bound`: a tcp://
 * wildcard host (an asterisk or 0.0.0.0) becomes 127.0.0.1 and [::] becomes [::1], so
 * tcp://0.0.0.0:7420 gives tcp://127.0.0.1:7420; anything else is copied. Returns 0,
 * TC_EINVAL (not tcp:// nor ipc://, no port, or a port that is not a number) or TC_ETOOBIG
 * (does not fit `len`).
 */
int tc_selfmon_loopback(const char *bound, char *out, size_t len);

/*
 * Reads the public and, when `secret` is not NULL, the secret key of a czmq certificate
 * (ZPL text: `public-key = "Z85"` and `secret-key = "Z85"` in its `curve` section).
 * Returns 0; TC_ENOTFOUND (the key is not there); TC_EPARSE (a key is not 40 Z85
 * characters). `public_key` and `secret` hold 41 bytes.
 */
int tc_selfmon_cert_parse(const char *text, size_t len, char public_key[41], char *secret);

/*
 * Finds `sample` (as tc_selfmon_gauge_metric takes it) in Prometheus text. Returns 0 with
 * *out set; TC_ENOTFOUND; TC_EINVAL for an empty sample.
 */
int tc_selfmon_prom_value(const char *text, const char *sample, double *out);

#endif
