/*
 * agg_api.c — tocsin-aggregator's HTTP endpoints (on libmicrohttpd's thread): the query
 * API, the series list, the readiness check with real LMDB and Kafka checks, and the
 * gauges computed when /metrics is scraped. Every read of the store is its own LMDB read
 * transaction; nothing here touches the main thread's state except atomics and the probe's
 * locked fields.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg_daemon.h"
#include "tc_error.h"
#include "tc_util.h"

#define PROBE_INTERVAL_MS 2000
#define PROBE_TIMEOUT_MS 2000
#define SERIES_LIST_MAX 10000

/* ---- GET /api/v1/query ----------------------------------------------------------------- */

static void handle_query(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    tc_counter_inc(d->m.queries);
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    if (agg_query_params_parse(&p, tc_http_req_query(req, "service"),
                               tc_http_req_query(req, "name"), tc_http_req_query(req, "window"),
                               tc_http_req_query(req, "environment"), tc_http_req_query(req, "q"),
                               tc_now_us(), &param, err, sizeof(err)) != 0) {
        tc_counter_inc(d->m.query_errors);
        tc_http_resp_error(resp, 400, param, "%s", err);
        return;
    }
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    uint64_t corrupt = 0;
    int rc = agg_store_query(d->store, &p, &acc, &corrupt);
    if (corrupt) {
        tc_counter_add(d->m.corrupt_values, corrupt);
        tc_log(TC_LOG_ERROR, "store.corrupt", "%llu stored bucket(s) of %s/%s failed validation",
               (unsigned long long)corrupt, p.service, p.name);
    }
    if (rc != 0) {
        agg_query_acc_fini(&acc);
        tc_counter_inc(d->m.query_errors);
        tc_http_resp_error(resp, rc == TC_ENOMEM ? 500 : 503, NULL, "store: %s", tc_strerror(rc));
        return;
    }
    json_t *doc = agg_query_json(&p, &acc);
    agg_query_acc_fini(&acc);
    if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    tc_http_resp_json(resp, 200, doc);
}

/* ---- GET /api/v1/series ---------------------------------------------------------------- */

typedef struct {
    json_t *list;
    size_t n;
    bool truncated;
} series_ctx_t;

static int add_series(void *ctx, const agg_series_info_t *s)
{
    series_ctx_t *c = ctx;
    if (c->n >= SERIES_LIST_MAX) {
        c->truncated = true;
        return 1;
    }
    json_t *e =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "service", s->service, "environment",
                  s->environment, "name", s->name, "kind", agg_kind_name(s->kind), "from",
                  (json_int_t)s->first_s, "to", (json_int_t)(s->last_s + AGG_BUCKET_WIDTH_S));
    if (!e || json_array_append_new(c->list, e) != 0) {
        return 1;
    }
    c->n++;
    return 0;
}

static void handle_series(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    const char *service = tc_http_req_query(req, "service");
    if (service && (!*service || strlen(service) > AGG_MAX_SERVICE ||
                    !tc_utf8_valid(service, strlen(service)))) {
        tc_http_resp_error(resp, 400, "service", "service must be UTF-8 of 1 to %d bytes",
                           AGG_MAX_SERVICE);
        return;
    }
    series_ctx_t c = {json_array(), 0, false};
    if (!c.list) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    int rc = agg_store_series(d->store, service, add_series, &c);
    if (rc != 0) {
        json_decref(c.list);
        tc_http_resp_error(resp, 503, NULL, "store: %s", tc_strerror(rc));
        return;
    }
    json_t *doc =
        json_pack("{s:o, s:o, s:b}", "service", service ? json_string(service) : json_null(),
                  "series", c.list, "truncated", c.truncated);
    if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    tc_http_resp_json(resp, 200, doc);
}

/* ---- readiness and gauges -------------------------------------------------------------- */

static void probe_set(agg_probe_t *p, bool up, double ms, const char *detail)
{
    pthread_mutex_lock(&p->mu);
    p->checked = true;
    p->up = up;
    p->response_ms = ms;
    p->at_us = tc_mono_us();
    tc_strlcpy(p->detail, detail, sizeof(p->detail));
    pthread_mutex_unlock(&p->mu);
}

/*
 * Asks the cluster for the metadata of topic.events every PROBE_INTERVAL_MS, on its own
 * thread because rd_kafka_metadata blocks up to PROBE_TIMEOUT_MS. Up means a broker
 * answered and the topic exists with at least one partition.
 */
static void *probe_main(void *arg)
{
    agg_probe_t *p = arg;
    bool was_up = true;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, p->topic, NULL);
    for (;;) {
        int64_t t0 = tc_mono_us();
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            rkt ? rd_kafka_metadata(p->rk, 0, rkt, &md, PROBE_TIMEOUT_MS) : rd_kafka_last_error();
        double ms = (double)(tc_mono_us() - t0) / 1000.0;
        char detail[160];
        bool up = false;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->topic_cnt == 1) {
            const struct rd_kafka_metadata_topic *t = &md->topics[0];
            up = t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt > 0;
            if (up) {
                snprintf(detail, sizeof(detail), "%d broker(s); %s has %d partition(s)",
                         md->broker_cnt, p->topic, t->partition_cnt);
            } else {
                snprintf(detail, sizeof(detail), "%s: %s", p->topic, rd_kafka_err2str(t->err));
            }
        } else {
            snprintf(detail, sizeof(detail), "metadata request failed: %s", rd_kafka_err2str(err));
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
            break;
        }
    }
    if (rkt) {
        rd_kafka_topic_destroy(rkt);
    }
    return NULL;
}

int agg_probe_start(agg_daemon_t *d)
{
    agg_probe_t *p = &d->probe;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->rk = d->producer;
    p->topic = d->cfg.topic_events;
    snprintf(p->detail, sizeof(p->detail), "not checked yet");
    if (pthread_create(&d->probe_thread, NULL, probe_main, p) != 0) {
        return TC_EIO;
    }
    d->probe_running = true;
    return 0;
}

void agg_probe_stop(agg_daemon_t *d)
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
    pthread_cond_destroy(&d->probe.cv);
    pthread_mutex_destroy(&d->probe.mu);
}

/* LMDB: a real read transaction, timed; a commit that keeps failing makes it unhealthy.
 * Kafka: what the probe saw last. */
static void ready_check(void *ctx, tc_health_t *health)
{
    agg_daemon_t *d = ctx;
    char detail[160];
    int64_t t0 = tc_mono_us();
    int rc = agg_store_check(d->store, detail, sizeof(detail));
    double ms = (double)(tc_mono_us() - t0) / 1000.0;
    int commit_rc = atomic_load(&d->last_commit_rc);
    if (rc != 0) {
        tc_health_add(health, "lmdb", TC_HEALTH_UNHEALTHY, ms, detail);
    } else if (commit_rc != 0) {
        char why[200];
        snprintf(why, sizeof(why), "commits failing: %s (%s)", tc_strerror(commit_rc), detail);
        tc_health_add(health, "lmdb", TC_HEALTH_UNHEALTHY, ms, why);
    } else {
        tc_health_add(health, "lmdb", TC_HEALTH_HEALTHY, ms, detail);
    }

    agg_probe_t *p = &d->probe;
    pthread_mutex_lock(&p->mu);
    bool checked = p->checked, up = p->up;
    double kms = p->response_ms;
    int64_t age_ms = (tc_mono_us() - p->at_us) / 1000;
    tc_strlcpy(detail, p->detail, sizeof(detail));
    pthread_mutex_unlock(&p->mu);
    if (!checked) {
        tc_health_add(health, "kafka", TC_HEALTH_UNHEALTHY, 0, "not checked yet");
    } else if (age_ms > 3 * (PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS)) {
        tc_health_add(health, "kafka", TC_HEALTH_UNHEALTHY, kms, "probe has not answered");
    } else {
        tc_health_add(health, "kafka", up ? TC_HEALTH_HEALTHY : TC_HEALTH_UNHEALTHY, kms, detail);
    }
}

static double gauge_map_bytes(void *ctx)
{
    agg_daemon_t *d = ctx;
    return (double)agg_store_map_bytes(d->store);
}

static double gauge_used_bytes(void *ctx)
{
    agg_daemon_t *d = ctx;
    return (double)agg_store_used_bytes(d->store);
}

static double gauge_owed(void *ctx)
{
    agg_daemon_t *d = ctx;
    return (double)agg_store_owed_count(d->store);
}

int agg_api_register(agg_daemon_t *d)
{
    if (tc_http_route(d->http, "GET", "/api/v1/query", handle_query, d) != 0 ||
        tc_http_route(d->http, "GET", "/api/v1/series", handle_series, d) != 0) {
        return TC_ENOMEM;
    }
    tc_http_set_ready(d->http, ready_check, d);
    tc_http_set_metrics(d->http, d->metrics);
    if (tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_lmdb_map_bytes", NULL,
                            "Size of the LMDB map", gauge_map_bytes, d) != 0 ||
        tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_lmdb_used_bytes", NULL,
                            "Bytes of the LMDB map in use", gauge_used_bytes, d) != 0 ||
        tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_rollups_owed", NULL,
                            "Bucket revisions not yet confirmed on the rollups topic", gauge_owed,
                            d) != 0) {
        return TC_ENOMEM;
    }
    return 0;
}
