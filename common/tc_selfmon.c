/*
 * tc_selfmon.c — a daemon's heartbeat and gauges, sent through libtocsin like any service's.
 *
 * The thread wakes every interval (the first time at once), records the heartbeat and the
 * gauges into the libtocsin client, and turns the client's counters into this daemon's
 * selfmon metrics. libtocsin's own thread batches and sends; recording never waits.
 */
#include "tc_selfmon.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"
#include "tocsin.h"

#define GAUGES_MAX 16
#define GAUGE_NAME_MAX 64
#define UNIT_MAX 32
#define Z85_LEN 40
/* libtocsin's queue for a few events per interval, and how long destroy may wait. */
#define CLIENT_QUEUE 256
#define CLIENT_SHUTDOWN_MS 500
/* Intervals without any acknowledgement before it is logged. */
#define STALL_INTERVALS 3

typedef struct {
    char name[GAUGE_NAME_MAX + 1];
    char unit[UNIT_MAX + 1];
    tc_selfmon_gauge_cb fn;
    void *ctx;
    char *sample; /* a registry sample instead of fn */
} gauge_t;

struct tc_selfmon {
    char stage[32];
    char service[48];
    char *instance_id;
    tc_selfmon_config_t cfg; /* own copies of the strings */
    tc_metrics_t *registry;
    char *self_endpoint;
    char *self_cert;
    gauge_t gauges[GAUGES_MAX];
    size_t ngauges;

    tocsin_t *client;
    pthread_t thread;
    bool started; /* tc_selfmon_start was called */
    bool running; /* the thread runs */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;

    tc_counter_t *m_heartbeats;
    tc_counter_t *m_acked;
    tc_counter_t *m_dropped;
    tc_counter_t *m_rejected;
    tc_gauge_t *m_enabled;
    /* thread only */
    uint64_t seen_acked, seen_dropped, seen_rejected;
    int64_t acked_change_us;
    bool stall_logged;
};

/* ---- pure helpers -------------------------------------------------------------------- */

static const char z85_chars[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                ".-:+=^!/*?&<>()[]{}@%$#";

static bool z85_key(const char *s, size_t n)
{
    if (n != Z85_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0' || !strchr(z85_chars, s[i])) {
            return false;
        }
    }
    return true;
}

/* Finds `key = value` on a line of ZPL text (value quoted or bare); copies the value. */
static int zpl_value(const char *text, size_t len, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && text[end] != '\n') {
            end++;
        }
        size_t p = i;
        while (p < end && (text[p] == ' ' || text[p] == '\t')) {
            p++;
        }
        if (end - p > klen && memcmp(text + p, key, klen) == 0 &&
            (text[p + klen] == ' ' || text[p + klen] == '\t' || text[p + klen] == '=')) {
            p += klen;
            while (p < end && (text[p] == ' ' || text[p] == '\t')) {
                p++;
            }
            if (p < end && text[p] == '=') {
                p++;
                while (p < end && (text[p] == ' ' || text[p] == '\t')) {
                    p++;
                }
                size_t vs = p, ve;
                if (p < end && text[p] == '"') {
                    vs = p + 1;
                    ve = vs;
                    while (ve < end && text[ve] != '"') {
                        ve++;
                    }
                    if (ve == end) {
                        return TC_EPARSE; /* no closing quote */
                    }
                } else {
                    ve = vs;
                    while (ve < end && text[ve] != ' ' && text[ve] != '\t' && text[ve] != '\r' &&
                           text[ve] != '#') {
                        ve++;
                    }
                }
                if (!z85_key(text + vs, ve - vs) || outlen <= ve - vs) {
                    return TC_EPARSE;
                }
                memcpy(out, text + vs, ve - vs);
                out[ve - vs] = '\0';
                return 0;
            }
        }
        i = end + 1;
    }
    return TC_ENOTFOUND;
}

int tc_selfmon_cert_parse(const char *text, size_t len, char public_key[41], char *secret)
{
    if (!text || !public_key) {
        return TC_EINVAL;
    }
    int rc = zpl_value(text, len, "public-key", public_key, 41);
    if (rc == 0 && secret) {
        rc = zpl_value(text, len, "secret-key", secret, 41);
    }
    return rc;
}

static bool endpoint_form_ok(const char *e)
{
    return (strncmp(e, "tcp://", 6) == 0 && e[6]) || (strncmp(e, "ipc://", 6) == 0 && e[6]);
}

int tc_selfmon_loopback(const char *bound, char *out, size_t len)
{
    if (!bound || !out || !endpoint_form_ok(bound)) {
        return TC_EINVAL;
    }
    if (strncmp(bound, "ipc://", 6) == 0) {
        return tc_strlcpy(out, bound, len) < len ? 0 : TC_ETOOBIG;
    }
    const char *host = bound + 6;
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host || !colon[1]) {
        return TC_EINVAL;
    }
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9') {
            return TC_EINVAL; /* "*" or a service name: not something to connect to */
        }
    }
    size_t hlen = (size_t)(colon - host);
    const char *use = NULL;
    if ((hlen == 1 && host[0] == '*') || (hlen == 7 && memcmp(host, "0.0.0.0", 7) == 0)) {
        use = "127.0.0.1";
    } else if ((hlen == 4 && memcmp(host, "[::]", 4) == 0) ||
               (hlen == 3 && memcmp(host, "[*]", 3) == 0)) {
        use = "[::1]";
    }
    int n = use ? snprintf(out, len, "tcp://%s%s", use, colon)
                : snprintf(out, len, "%s", bound);
    return n >= 0 && (size_t)n < len ? 0 : TC_ETOOBIG;
}

int tc_selfmon_endpoints(const char *collectors, const char *self_endpoint, char **out)
{
    if (!out) {
        return TC_EINVAL;
    }
    *out = NULL;
    const char *list = collectors ? collectors : "";
    size_t cap = strlen(list) + (self_endpoint ? strlen(self_endpoint) * 4 : 0) + 2;
    char *res = malloc(cap);
    if (!res) {
        return TC_ENOMEM;
    }
    res[0] = '\0';
    size_t used = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end) {
            end = p + strlen(p);
        }
        const char *s = p, *e = end;
        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        size_t n = (size_t)(e - s);
        const char *item = s;
        if (n == 4 && memcmp(s, "self", 4) == 0) {
            if (!self_endpoint || !*self_endpoint) {
                free(res);
                return TC_EINVAL;
            }
            item = self_endpoint;
            n = strlen(self_endpoint);
        }
        if (n > 0) {
            char one[1024];
            if (n >= sizeof(one)) {
                free(res);
                return TC_EINVAL;
            }
            memcpy(one, item, n);
            one[n] = '\0';
            if (!endpoint_form_ok(one) || strchr(one, ' ')) {
                free(res);
                return TC_EINVAL;
            }
            /* Drop repeats ("self" next to the same endpoint written out). */
            bool seen = false;
            for (const char *q = res; *q;) {
                const char *qe = strchr(q, ',');
                size_t ql = qe ? (size_t)(qe - q) : strlen(q);
                if (ql == n && memcmp(q, one, n) == 0) {
                    seen = true;
                    break;
                }
                q += ql + (qe ? 1 : 0);
            }
            if (!seen) {
                if (used + n + 2 > cap) {
                    size_t ncap = (used + n + 2) * 2;
                    char *grown = realloc(res, ncap);
                    if (!grown) {
                        free(res);
                        return TC_ENOMEM;
                    }
                    res = grown;
                    cap = ncap;
                }
                if (used) {
                    res[used++] = ',';
                }
                memcpy(res + used, one, n);
                used += n;
                res[used] = '\0';
            }
        }
        p = *end ? end + 1 : end;
    }
    *out = res;
    return 0;
}

int tc_selfmon_prom_value(const char *text, const char *sample, double *out)
{
    if (!text || !sample || !*sample || !out) {
        return TC_EINVAL;
    }
    size_t slen = strlen(sample);
    bool exact = strchr(sample, '{') != NULL;
    bool found = false;
    double sum = 0;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (!end) {
            end = line + strlen(line);
        }
        size_t llen = (size_t)(end - line);
        if (llen > slen && line[0] != '#' && memcmp(line, sample, slen) == 0 &&
            (line[slen] == ' ' || (!exact && line[slen] == '{'))) {
            const char *v = line + slen;
            if (*v == '{') {
                /* Skip the label set; label values are quoted and may hold '}'. */
                bool quoted = false;
                while (v < end) {
                    if (quoted && *v == '\\' && v + 1 < end) {
                        v += 2;
                        continue;
                    }
                    if (*v == '"') {
                        quoted = !quoted;
                    } else if (*v == '}' && !quoted) {
                        v++;
                        break;
                    }
                    v++;
                }
            }
            while (v < end && *v == ' ') {
                v++;
            }
            char num[64];
            size_t nlen = 0;
            while (v + nlen < end && v[nlen] != ' ' && nlen < sizeof(num) - 1) {
                nlen++;
            }
            memcpy(num, v, nlen);
            num[nlen] = '\0';
            char *stop = NULL;
            errno = 0;
            double d = strtod(num, &stop);
            if (nlen > 0 && stop && *stop == '\0') {
                sum += d;
                found = true;
                if (exact) {
                    break;
                }
            }
        }
        line = *end ? end + 1 : end;
    }
    if (!found) {
        return TC_ENOTFOUND;
    }
    *out = sum;
    return 0;
}

int tc_selfmon_read_gauge(void *gauge, double *out)
{
    if (!gauge || !out) {
        return TC_EINVAL;
    }
    *out = tc_gauge_get(gauge);
    return 0;
}

int tc_selfmon_kafka_lag(void *consumer, double *out)
{
    rd_kafka_t *rk = consumer;
    if (!rk || !out) {
        return TC_EINVAL;
    }
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a) {
        return TC_EKAFKA;
    }
    if (a->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(a);
        *out = 0; /* nothing assigned: nothing to lag behind */
        return 0;
    }
    rd_kafka_position(rk, a);
    double lag = 0;
    bool any = false;
    for (int i = 0; i < a->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &a->elems[i];
        int64_t lo = -1, hi = -1;
        if (p->offset < 0 ||
            rd_kafka_get_watermark_offsets(rk, p->topic, p->partition, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0) {
            continue;
        }
        any = true;
        if (hi > p->offset) {
            lag += (double)(hi - p->offset);
        }
    }
    rd_kafka_topic_partition_list_destroy(a);
    if (!any) {
        return TC_ENOTFOUND;
    }
    *out = lag;
    return 0;
}

/* ---- the object ----------------------------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

static void config_free(tc_selfmon_config_t *c)
{
    free(c->collectors);
    free(c->environment);
    free(c->api_key);
    free(c->curve_server_cert);
    free(c->curve_cert);
    memset(c, 0, sizeof(*c));
}

tc_selfmon_t *tc_selfmon_new(const char *stage, const char *instance_id,
                             const tc_selfmon_config_t *cfg, tc_metrics_t *registry,
                             const char *metric_prefix)
{
    if (!stage || !*stage || strlen(stage) > 24 || !instance_id || !*instance_id || !cfg) {
        return NULL;
    }
    tc_selfmon_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &ca);
    pthread_condattr_destroy(&ca);
    tc_strlcpy(self->stage, stage, sizeof(self->stage));
    snprintf(self->service, sizeof(self->service), "tocsin-%s", stage);
    self->instance_id = strdup(instance_id);
    self->cfg.collectors = dup_or_empty(cfg->collectors);
    self->cfg.environment = dup_or_empty(cfg->environment);
    self->cfg.api_key = dup_or_empty(cfg->api_key);
    self->cfg.curve_server_cert = dup_or_empty(cfg->curve_server_cert);
    self->cfg.curve_cert = dup_or_empty(cfg->curve_cert);
    self->cfg.interval_ms = cfg->interval_ms;
    self->registry = registry;
    if (!self->instance_id || !self->cfg.collectors || !self->cfg.environment ||
        !self->cfg.api_key || !self->cfg.curve_server_cert || !self->cfg.curve_cert) {
        tc_selfmon_destroy(&self);
        return NULL;
    }
    if (registry) {
        char name[128];
        const char *p = metric_prefix ? metric_prefix : "tocsin_";
        snprintf(name, sizeof(name), "%sselfmon_enabled", p);
        self->m_enabled = tc_metrics_gauge(registry, name, NULL,
                                           "1 while the heartbeat and gauges are sent through "
                                           "the pipeline (selfmon.collectors set)");
        snprintf(name, sizeof(name), "%sselfmon_heartbeats_total", p);
        self->m_heartbeats =
            tc_metrics_counter(registry, name, NULL, "Heartbeats recorded for the pipeline");
        snprintf(name, sizeof(name), "%sselfmon_events_total", p);
        const char *help = "Self-monitoring events by outcome at the collectors";
        self->m_acked = tc_metrics_counter(registry, name, "outcome=\"acked\"", help);
        self->m_dropped = tc_metrics_counter(registry, name, "outcome=\"dropped\"", help);
        self->m_rejected = tc_metrics_counter(registry, name, "outcome=\"rejected\"", help);
        if (!self->m_enabled || !self->m_heartbeats || !self->m_acked || !self->m_dropped ||
            !self->m_rejected) {
            tc_selfmon_destroy(&self);
            return NULL;
        }
    }
    return self;
}

int tc_selfmon_set_self(tc_selfmon_t *self, const char *bound_endpoint, const char *server_cert)
{
    assert(self);
    char ep[1024];
    int rc = tc_selfmon_loopback(bound_endpoint, ep, sizeof(ep));
    if (rc != 0) {
        return rc == TC_ETOOBIG ? TC_EINVAL : rc;
    }
    char *e = strdup(ep);
    char *c = server_cert && *server_cert ? strdup(server_cert) : NULL;
    if (!e || (server_cert && *server_cert && !c)) {
        free(e);
        free(c);
        return TC_ENOMEM;
    }
    free(self->self_endpoint);
    free(self->self_cert);
    self->self_endpoint = e;
    self->self_cert = c;
    return 0;
}

static int add_gauge(tc_selfmon_t *self, const char *name, const char *unit,
                     tc_selfmon_gauge_cb fn, void *ctx, const char *sample)
{
    assert(self);
    if (self->started) {
        return TC_ESTATE;
    }
    if (!name || !*name || strlen(name) > GAUGE_NAME_MAX || (unit && strlen(unit) > UNIT_MAX) ||
        self->ngauges == GAUGES_MAX) {
        return TC_EINVAL;
    }
    gauge_t *g = &self->gauges[self->ngauges];
    memset(g, 0, sizeof(*g));
    if (sample) {
        g->sample = strdup(sample);
        if (!g->sample) {
            return TC_ENOMEM;
        }
    }
    tc_strlcpy(g->name, name, sizeof(g->name));
    tc_strlcpy(g->unit, unit ? unit : "", sizeof(g->unit));
    g->fn = fn;
    g->ctx = ctx;
    self->ngauges++;
    return 0;
}

int tc_selfmon_gauge_fn(tc_selfmon_t *self, const char *name, const char *unit,
                        tc_selfmon_gauge_cb fn, void *ctx)
{
    if (!fn) {
        return TC_EINVAL;
    }
    return add_gauge(self, name, unit, fn, ctx, NULL);
}

int tc_selfmon_gauge_metric(tc_selfmon_t *self, const char *name, const char *unit,
                            const char *sample)
{
    assert(self);
    if (!self->registry || !sample || !*sample) {
        return TC_EINVAL;
    }
    return add_gauge(self, name, unit, NULL, NULL, sample);
}

/* Reads a certificate file (bounded) and takes its keys. */
static int load_cert(const char *path, char pub[41], char *sec, const char *key)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        tc_log(TC_LOG_ERROR, "selfmon.config", "%s: cannot open %s: %s", key, path,
               strerror(errno));
        return TC_EINVAL;
    }
    char *buf = malloc(TC_SELFMON_CERT_MAX);
    if (!buf) {
        fclose(f);
        return TC_ENOMEM;
    }
    size_t n = fread(buf, 1, TC_SELFMON_CERT_MAX, f);
    fclose(f);
    int rc = n == TC_SELFMON_CERT_MAX ? TC_ETOOBIG : tc_selfmon_cert_parse(buf, n, pub, sec);
    free(buf);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "selfmon.config", "%s: %s is not a czmq certificate with a %s: %s",
               key, path, sec ? "public and a secret key" : "public key", tc_strerror(rc));
        return TC_EINVAL;
    }
    return 0;
}

/* Adds the client's counters since the last call to the metrics; notes acknowledgements. */
static void account(tc_selfmon_t *self, int64_t now_us)
{
    tocsin_stats_t st;
    tocsin_stats(self->client, &st);
    uint64_t dropped = st.dropped_queue_full + st.dropped_oversize + st.dropped_invalid;
    if (self->m_acked) {
        tc_counter_add(self->m_acked, st.events_acked - self->seen_acked);
        tc_counter_add(self->m_dropped, dropped - self->seen_dropped);
        tc_counter_add(self->m_rejected, st.events_rejected - self->seen_rejected);
    }
    if (st.events_acked != self->seen_acked) {
        self->acked_change_us = now_us;
        if (self->stall_logged) {
            tc_log(TC_LOG_INFO, "selfmon.acked",
                   "self-monitoring events are acknowledged by a collector again");
            self->stall_logged = false;
        }
    } else if (!self->stall_logged &&
               now_us - self->acked_change_us > STALL_INTERVALS * self->cfg.interval_ms * 1000) {
        tc_logj(TC_LOG_WARN, "selfmon.unacked",
                json_pack("{s:s, s:I, s:I}", "collectors", self->cfg.collectors, "dropped",
                          (json_int_t)dropped, "rejected", (json_int_t)st.events_rejected),
                "no collector acknowledged this daemon's heartbeat for %d intervals: the "
                "dead-man's-switch rule of %s will fire if every instance is cut off",
                STALL_INTERVALS, self->service);
        self->stall_logged = true;
    }
    self->seen_acked = st.events_acked;
    self->seen_dropped = dropped;
    self->seen_rejected = st.events_rejected;
}

static void tick(tc_selfmon_t *self)
{
    if (tocsin_heartbeat(self->client) == TOCSIN_OK && self->m_heartbeats) {
        tc_counter_inc(self->m_heartbeats);
    }
    char *text = NULL;
    for (size_t i = 0; i < self->ngauges; i++) {
        gauge_t *g = &self->gauges[i];
        double v = 0;
        int rc;
        if (g->fn) {
            rc = g->fn(g->ctx, &v);
        } else {
            if (!text) {
                text = tc_metrics_render(self->registry);
            }
            rc = text ? tc_selfmon_prom_value(text, g->sample, &v) : TC_ENOMEM;
        }
        if (rc == 0) {
            tocsin_metric(self->client, g->name, TOCSIN_GAUGE, v, g->unit);
        }
    }
    free(text);
    account(self, tc_mono_us());
}

static void *selfmon_main(void *arg)
{
    tc_selfmon_t *self = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the daemon's signals go to its own threads */
    self->acked_change_us = tc_mono_us();
    int64_t interval_ns = self->cfg.interval_ms * 1000000LL;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&self->mu);
    while (!self->stop) {
        pthread_mutex_unlock(&self->mu);
        tick(self);
        pthread_mutex_lock(&self->mu);
        int64_t ns = (int64_t)next.tv_nsec + interval_ns;
        next.tv_sec += (time_t)(ns / 1000000000LL);
        next.tv_nsec = (long)(ns % 1000000000LL);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (next.tv_sec < now.tv_sec || (next.tv_sec == now.tv_sec && next.tv_nsec < now.tv_nsec)) {
            next = now; /* fell behind (a stopped process): no burst of catch-up ticks */
        }
        while (!self->stop && pthread_cond_timedwait(&self->cv, &self->mu, &next) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

int tc_selfmon_start(tc_selfmon_t *self)
{
    assert(self);
    if (self->started) {
        return TC_ESTATE;
    }
    self->started = true;
    char *endpoints = NULL;
    int rc = tc_selfmon_endpoints(self->cfg.collectors, self->self_endpoint, &endpoints);
    if (rc == TC_ENOMEM) {
        return rc;
    }
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "selfmon.config",
               "selfmon.collectors \"%s\": %s", self->cfg.collectors,
               self->self_endpoint ? "each entry must be a tcp:// or ipc:// endpoint or self"
                                   : "each entry must be a tcp:// or ipc:// endpoint (\"self\" "
                                     "names a collector's own endpoint)");
        return TC_EINVAL;
    }
    if (!endpoints[0]) {
        free(endpoints);
        tc_log(TC_LOG_INFO, "selfmon.off",
               "self-monitoring is off (selfmon.collectors is empty): no heartbeat of %s",
               self->service);
        return 0;
    }
    if (self->cfg.interval_ms < TC_SELFMON_INTERVAL_MIN_MS ||
        self->cfg.interval_ms > TC_SELFMON_INTERVAL_MAX_MS) {
        free(endpoints);
        tc_log(TC_LOG_ERROR, "selfmon.config", "selfmon.interval must be 100ms to 1h");
        return TC_EINVAL;
    }
    char server[41] = "", pub[41] = "", sec[41] = "";
    const char *server_cert = self->cfg.curve_server_cert[0] ? self->cfg.curve_server_cert
                                                               : self->self_cert;
    if (server_cert && load_cert(server_cert, server, NULL,
                                 self->cfg.curve_server_cert[0] ? "selfmon.curve_server_cert"
                                                                : "curve.server_cert") != 0) {
        free(endpoints);
        return TC_EINVAL;
    }
    if (self->cfg.curve_cert[0]) {
        if (!server[0]) {
            free(endpoints);
            tc_log(TC_LOG_ERROR, "selfmon.config",
                   "selfmon.curve_cert needs the collectors' key: set selfmon.curve_server_cert");
            return TC_EINVAL;
        }
        if (load_cert(self->cfg.curve_cert, pub, sec, "selfmon.curve_cert") != 0) {
            free(endpoints);
            return TC_EINVAL;
        }
    }
    tocsin_tag_t tag = {"instance", self->instance_id};
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = self->service;
    o.environment = self->cfg.environment[0] ? self->cfg.environment : NULL;
    o.release = TOCSIN_VERSION;
    o.collectors = endpoints;
    o.api_key = self->cfg.api_key[0] ? self->cfg.api_key : NULL;
    o.queue_capacity = CLIENT_QUEUE;
    o.max_inflight_batches = 4;
    o.shutdown_timeout_ms = CLIENT_SHUTDOWN_MS;
    o.stack_traces = TOCSIN_STACKS_OFF;
    o.tags = &tag;
    o.n_tags = 1;
    if (server[0]) {
        o.curve_server_key = server;
        if (pub[0]) {
            o.curve_public_key = pub;
            o.curve_secret_key = sec;
        }
    }
    const char *why = NULL;
    if (tocsin_options_validate(&o, &why) != TOCSIN_OK) {
        tc_log(TC_LOG_ERROR, "selfmon.config", "self-monitoring client: %s",
               why ? why : "invalid options");
        free(endpoints);
        return TC_EINVAL;
    }
    self->client = tocsin_new(&o);
    if (!self->client) {
        tc_log(TC_LOG_ERROR, "selfmon.config",
               "self-monitoring client: ZeroMQ refused selfmon.collectors \"%s\" or a key",
               endpoints);
        free(endpoints);
        return TC_EINVAL;
    }
    if (pthread_create(&self->thread, NULL, selfmon_main, self) != 0) {
        tocsin_destroy(&self->client);
        free(endpoints);
        return TC_EIO;
    }
    self->running = true;
    if (self->m_enabled) {
        tc_gauge_set(self->m_enabled, 1);
    }
    tc_logj(TC_LOG_INFO, "selfmon.started",
            json_pack("{s:s, s:s, s:s, s:I, s:b}", "service", self->service, "environment",
                      self->cfg.environment, "collectors", endpoints, "interval_ms",
                      (json_int_t)self->cfg.interval_ms, "curve", server[0] != '\0'),
            "heartbeat of %s every %" PRId64 " ms to %s", self->service, self->cfg.interval_ms,
            endpoints);
    free(endpoints);
    return 0;
}

bool tc_selfmon_running(const tc_selfmon_t *self)
{
    return self && self->running;
}

void tc_selfmon_destroy(tc_selfmon_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tc_selfmon_t *self = *self_p;
    if (self->running) {
        pthread_mutex_lock(&self->mu);
        self->stop = true;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->thread, NULL);
        self->running = false;
        if (self->m_enabled) {
            tc_gauge_set(self->m_enabled, 0);
        }
    }
    tocsin_destroy(&self->client);
    for (size_t i = 0; i < self->ngauges; i++) {
        free(self->gauges[i].sample);
    }
    config_free(&self->cfg);
    free(self->instance_id);
    free(self->self_endpoint);
    free(self->self_cert);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    free(self);
    *self_p = NULL;
}
