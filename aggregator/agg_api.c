/*
 * agg_api.c — tocsin-aggregator's HTTP endpoints (on libmicrohttpd's thread): queries,
 * ranges, the series list, issues (list, detail, status), logs, the readiness check with
 * real LMDB and Kafka checks, and the gauges computed when /metrics is scraped. Every read
 * of the store is its own LMDB read transaction; a status change is its own write
 * transaction; nothing else of the main thread's state is touched except atomics and the
 * probe's locked fields.
 */
#include <errno.h>
#include <math.h>
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
#define ISSUES_COLLECT_MAX 100000
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 1000

static void observe(agg_daemon_t *d, int64_t t0)
{
    tc_histogram_observe(d->m.query_seconds, (double)(tc_mono_us() - t0) / 1e6);
}

static void fail(agg_daemon_t *d, tc_http_resp_t *resp, int status, const char *param,
                 const char *msg)
{
    tc_counter_inc(d->m.query_errors);
    tc_http_resp_error(resp, status, param, "%s", msg);
}

static void store_failed(agg_daemon_t *d, tc_http_resp_t *resp, int rc)
{
    tc_counter_inc(d->m.query_errors);
    tc_http_resp_error(resp, rc == TC_ENOMEM ? 500 : 503, NULL, "store: %s", tc_strerror(rc));
}

static void report_corrupt(agg_daemon_t *d, uint64_t corrupt, const char *what)
{
    if (corrupt) {
        tc_counter_add(d->m.corrupt_values, corrupt);
        tc_log(TC_LOG_ERROR, "store.corrupt", "%llu stored value(s) of %s failed validation",
               (unsigned long long)corrupt, what);
    }
}

static bool service_ok(const char *s)
{
    return s && *s && agg_text_ok(s, strlen(s), AGG_MAX_SERVICE);
}

/* Parses ?limit= (1..LIMIT_MAX, default LIMIT_DEFAULT). */
static int parse_limit(const char *s, size_t *out)
{
    if (!s) {
        *out = LIMIT_DEFAULT;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > LIMIT_MAX) {
        return TC_EINVAL;
    }
    *out = (size_t)v;
    return 0;
}

/* ---- GET /api/v1/query and /api/v1/range --------------------------------------------------- */

static void handle_query(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    int64_t t0 = tc_mono_us();
    tc_counter_inc(d->m.queries);
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    if (agg_query_params_parse(&p, tc_http_req_query(req, "service"),
                               tc_http_req_query(req, "name"), tc_http_req_query(req, "window"),
                               tc_http_req_query(req, "environment"), tc_http_req_query(req, "q"),
                               tc_now_us(), &param, err, sizeof(err)) != 0) {
        fail(d, resp, 400, param, err);
        return;
    }
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    uint64_t corrupt = 0;
    int rc = agg_store_query(d->store, &p, &acc, &corrupt);
    report_corrupt(d, corrupt, p.service);
    json_t *doc = rc == 0 ? agg_query_json(&p, &acc) : NULL;
    agg_query_acc_fini(&acc);
    if (rc != 0) {
        store_failed(d, resp, rc);
        return;
    }
    if (!doc) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    tc_http_resp_json(resp, 200, doc);
    observe(d, t0);
}

static void handle_range(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    int64_t t0 = tc_mono_us();
    tc_counter_inc(d->m.queries);
    agg_query_params_t p;
    const char *param = NULL;
    char err[256];
    if (agg_range_params_parse(&p, tc_http_req_query(req, "service"),
                               tc_http_req_query(req, "name"), tc_http_req_query(req, "from"),
                               tc_http_req_query(req, "to"), tc_http_req_query(req, "step"),
                               tc_http_req_query(req, "environment"), tc_http_req_query(req, "q"),
                               tc_now_us(), &param, err, sizeof(err)) != 0) {
        fail(d, resp, 400, param, err);
        return;
    }
    agg_query_acc_t *accs = calloc(p.npoints, sizeof(*accs));
    if (!accs) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    for (size_t i = 0; i < p.npoints; i++) {
        agg_query_acc_init(&accs[i]);
    }
    uint64_t corrupt = 0;
    int rc = agg_store_range(d->store, &p, accs, &corrupt);
    report_corrupt(d, corrupt, p.service);
    json_t *doc = rc == 0 ? agg_range_json(&p, accs) : NULL;
    for (size_t i = 0; i < p.npoints; i++) {
        agg_query_acc_fini(&accs[i]);
    }
    free(accs);
    if (rc != 0 || !doc) {
        store_failed(d, resp, rc ? rc : TC_ENOMEM);
        return;
    }
    tc_http_resp_json(resp, 200, doc);
    observe(d, t0);
}

/* ---- GET /api/v1/series -------------------------------------------------------------------- */

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
    if (service && !service_ok(service)) {
        fail(d, resp, 400, "service", "service must be UTF-8 of 1 to 256 bytes");
        return;
    }
    series_ctx_t c = {json_array(), 0, false};
    if (!c.list) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    int rc = agg_store_series(d->store, service, add_series, &c);
    if (rc != 0) {
        json_decref(c.list);
        store_failed(d, resp, rc);
        return;
    }
    json_t *doc =
        json_pack("{s:o, s:o, s:b}", "service", service ? json_string(service) : json_null(),
                  "series", c.list, "truncated", c.truncated);
    if (!doc) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    tc_http_resp_json(resp, 200, doc);
}

/* ---- GET /api/v1/issues --------------------------------------------------------------------- */

typedef enum { SORT_LAST_SEEN, SORT_FIRST_SEEN, SORT_COUNT, SORT_USERS } sort_t;

typedef struct {
    json_t *doc;
    double key;
} issue_row_t;

typedef struct {
    int status; /* AGG_STATUS_* or 0 for all */
    sort_t sort;
    issue_row_t *rows;
    size_t n, cap;
    bool truncated;
    int rc;
} issues_ctx_t;

static int add_issue(void *ctx, const agg_issue_t *is, const agg_issue_status_t *st)
{
    issues_ctx_t *c = ctx;
    agg_status_t status = st->status ? st->status : AGG_STATUS_UNRESOLVED;
    if (c->status && (int)status != c->status) {
        return 0;
    }
    if (c->n >= ISSUES_COLLECT_MAX) {
        c->truncated = true;
        return 1;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        issue_row_t *r = realloc(c->rows, cap * sizeof(*r));
        if (!r) {
            c->rc = TC_ENOMEM;
            return 1;
        }
        c->rows = r;
        c->cap = cap;
    }
    json_t *doc = agg_issue_json(is, st, false);
    if (!doc) {
        c->rc = TC_ENOMEM;
        return 1;
    }
    double key = 0;
    switch (c->sort) {
    case SORT_FIRST_SEEN:
        key = (double)is->first_seen_us;
        break;
    case SORT_COUNT:
        key = (double)is->count;
        break;
    case SORT_USERS:
        key = tc_hll_count(&is->users);
        break;
    default:
        key = (double)is->last_seen_us;
        break;
    }
    c->rows[c->n].doc = doc;
    c->rows[c->n].key = key;
    c->n++;
    return 0;
}

static int by_key_desc(const void *a, const void *b)
{
    double x = ((const issue_row_t *)a)->key, y = ((const issue_row_t *)b)->key;
    return (x < y) - (x > y);
}

static void handle_issues(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    int64_t t0 = tc_mono_us();
    tc_counter_inc(d->m.queries);
    const char *service = tc_http_req_query(req, "service");
    const char *status = tc_http_req_query(req, "status");
    const char *sort = tc_http_req_query(req, "sort");
    issues_ctx_t c;
    memset(&c, 0, sizeof(c));
    size_t limit = 0;
    agg_status_t st = AGG_STATUS_NONE;
    if (service && !service_ok(service)) {
        fail(d, resp, 400, "service", "service must be UTF-8 of 1 to 256 bytes");
        return;
    }
    if (status && strcmp(status, "all") != 0 && agg_status_parse(status, &st) != 0) {
        fail(d, resp, 400, "status", "status must be unresolved, resolved, ignored or all");
        return;
    }
    c.status = (int)st;
    if (!sort || strcmp(sort, "last_seen") == 0) {
        c.sort = SORT_LAST_SEEN;
    } else if (strcmp(sort, "first_seen") == 0) {
        c.sort = SORT_FIRST_SEEN;
    } else if (strcmp(sort, "count") == 0) {
        c.sort = SORT_COUNT;
    } else if (strcmp(sort, "users") == 0) {
        c.sort = SORT_USERS;
    } else {
        fail(d, resp, 400, "sort", "sort must be last_seen, first_seen, count or users");
        return;
    }
    if (parse_limit(tc_http_req_query(req, "limit"), &limit) != 0) {
        fail(d, resp, 400, "limit", "limit must be a number from 1 to 1000");
        return;
    }
    int rc = agg_store_issues(d->store, service, add_issue, &c);
    if (rc == 0) {
        rc = c.rc;
    }
    json_t *list = rc == 0 ? json_array() : NULL;
    if (list) {
        if (c.n > 1) { /* c.rows is NULL when no issue matched: qsort wants a pointer */
            qsort(c.rows, c.n, sizeof(*c.rows), by_key_desc);
        }
        for (size_t i = 0; i < c.n && i < limit; i++) {
            json_array_append(list, c.rows[i].doc);
        }
    }
    for (size_t i = 0; i < c.n; i++) {
        json_decref(c.rows[i].doc);
    }
    free(c.rows);
    if (!list) {
        store_failed(d, resp, rc ? rc : TC_ENOMEM);
        return;
    }
    json_t *doc = json_pack(
        "{s:o, s:s, s:s, s:I, s:b, s:o}", "service", service ? json_string(service) : json_null(),
        "status", status ? status : "all", "sort", sort ? sort : "last_seen", "total",
        (json_int_t)c.n, "truncated", c.truncated || c.n > limit, "issues", list);
    if (!doc) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    tc_http_resp_json(resp, 200, doc);
    observe(d, t0);
}

/* ---- /api/v1/issues/{id} -------------------------------------------------------------------- */

typedef struct {
    json_t *doc;
    size_t n;
    char service[AGG_MAX_SERVICE + 1];
} detail_ctx_t;

static int take_detail(void *ctx, const agg_issue_t *is, const agg_issue_status_t *st)
{
    detail_ctx_t *c = ctx;
    c->n++;
    if (c->n == 1) {
        c->doc = agg_issue_json(is, st, true);
        tc_strlcpy(c->service, is->service, sizeof(c->service));
        return 0;
    }
    return 1; /* a second service: ambiguous */
}

/* The issue id in the path, checked; NULL after answering 400. */
static const char *issue_id(agg_daemon_t *d, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    const char *path = tc_http_req_path(req);
    const char *id = path + strlen("/api/v1/issues/");
    size_t n = strlen(id);
    if (n == 0 || n > AGG_ISSUE_ID_MAX || strchr(id, '/') || !agg_text_ok(id, n, n)) {
        fail(d, resp, 400, "id", "the issue id in the path must be 1 to 128 bytes");
        return NULL;
    }
    return id;
}

/* Finds the issue; answers 404/400/503 itself and returns non-zero when it did. */
static int find_issue(agg_daemon_t *d, tc_http_resp_t *resp, const char *id, const char *service,
                      detail_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    int rc = agg_store_issue_get(d->store, id, service, take_detail, c);
    if (rc == TC_ENOTFOUND) {
        fail(d, resp, 404, "id", "no such issue");
        return rc;
    }
    if (rc != 0) {
        json_decref(c->doc);
        store_failed(d, resp, rc);
        return rc;
    }
    if (c->n > 1) {
        json_decref(c->doc);
        fail(d, resp, 400, "service", "several services have an issue with this id; name one");
        return TC_EINVAL;
    }
    if (!c->doc) {
        store_failed(d, resp, TC_ENOMEM);
        return TC_ENOMEM;
    }
    return 0;
}

static void handle_issue_get(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    tc_counter_inc(d->m.queries);
    const char *id = issue_id(d, req, resp);
    if (!id) {
        return;
    }
    const char *service = tc_http_req_query(req, "service");
    if (service && !service_ok(service)) {
        fail(d, resp, 400, "service", "service must be UTF-8 of 1 to 256 bytes");
        return;
    }
    detail_ctx_t c;
    if (find_issue(d, resp, id, service, &c) != 0) {
        return;
    }
    tc_http_resp_json(resp, 200, c.doc);
}

static void handle_issue_post(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    if (!tc_http_req_bearer_ok(req, d->cfg.api_token)) {
        tc_counter_inc(d->m.unauthorized);
        tc_http_resp_error(resp, 401, "Authorization", "a valid bearer token is required");
        tc_http_resp_header(resp, "WWW-Authenticate", "Bearer");
        return;
    }
    const char *id = issue_id(d, req, resp);
    if (!id) {
        return;
    }
    size_t len = 0;
    const char *body = tc_http_req_body(req, &len);
    json_error_t jerr;
    json_t *doc = body && len ? json_loadb(body, len, 0, &jerr) : NULL;
    if (!json_is_object(doc)) {
        json_decref(doc);
        fail(d, resp, 400, "body",
             "the body must be a JSON object such as {\"status\":\"resolved\"}");
        return;
    }
    const char *status = json_string_value(json_object_get(doc, "status"));
    json_t *svc_j = json_object_get(doc, "service");
    const char *service = json_string_value(svc_j);
    if (!service) {
        service = tc_http_req_query(req, "service");
    }
    agg_status_t st;
    if (!status || agg_status_parse(status, &st) != 0) {
        json_decref(doc);
        fail(d, resp, 400, "status", "status must be unresolved, resolved or ignored");
        return;
    }
    if ((svc_j && !json_is_string(svc_j)) || (service && !service_ok(service))) {
        json_decref(doc);
        fail(d, resp, 400, "service", "service must be UTF-8 of 1 to 256 bytes");
        return;
    }
    detail_ctx_t c;
    if (find_issue(d, resp, id, service, &c) != 0) {
        json_decref(doc);
        return;
    }
    json_decref(c.doc);
    char by[64];
    snprintf(by, sizeof(by), "api:%.59s", d->instance_id);
    int rc = agg_store_status_set(d->store, c.service, id, st, by, tc_now_us());
    json_decref(doc);
    if (rc != 0) {
        store_failed(d, resp, rc);
        return;
    }
    tc_counter_inc(d->m.status_changes);
    atomic_store(&d->changes_pending, true);
    detail_ctx_t after;
    if (find_issue(d, resp, id, c.service, &after) != 0) {
        return;
    }
    tc_http_resp_json(resp, 200, after.doc);
}

/* ---- GET /api/v1/logs ---------------------------------------------------------------------- */

typedef struct {
    json_t *list;
    size_t n, limit;
    int min_level;
    const char *q;
    bool truncated;
    int rc;
} logs_ctx_t;

static int add_log(void *ctx, int64_t time_us, const agg_log_t *l)
{
    logs_ctx_t *c = ctx;
    if (!agg_log_match(l, c->min_level, c->q)) {
        return 0;
    }
    if (c->n >= c->limit) {
        c->truncated = true;
        return 1;
    }
    json_t *e = agg_log_json(time_us, l);
    if (!e || json_array_append_new(c->list, e) != 0) {
        c->rc = TC_ENOMEM;
        return 1;
    }
    c->n++;
    return 0;
}

static void handle_logs(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    agg_daemon_t *d = ctx;
    int64_t t0 = tc_mono_us();
    tc_counter_inc(d->m.queries);
    const char *service = tc_http_req_query(req, "service");
    const char *level = tc_http_req_query(req, "level");
    const char *since = tc_http_req_query(req, "since");
    const char *until = tc_http_req_query(req, "until");
    const char *q = tc_http_req_query(req, "q");
    int64_t now = tc_now_us();
    logs_ctx_t c;
    memset(&c, 0, sizeof(c));
    int64_t since_us = now - 3600LL * 1000000, until_us = now + 1;
    if (!service_ok(service)) {
        fail(d, resp, 400, "service", "service is required: UTF-8 of 1 to 256 bytes");
        return;
    }
    if (level && agg_level_parse(level, &c.min_level) != 0) {
        fail(d, resp, 400, "level",
             "level must be trace, debug, info, warning, error or fatal (the least severe shown)");
        return;
    }
    if (since && agg_time_parse(since, now, &since_us) != 0) {
        fail(d, resp, 400, "since", "since must be Unix seconds, now, or a duration before now");
        return;
    }
    if (until && agg_time_parse(until, now, &until_us) != 0) {
        fail(d, resp, 400, "until", "until must be Unix seconds, now, or a duration before now");
        return;
    }
    if (until_us <= since_us) {
        fail(d, resp, 400, "until", "until must be after since");
        return;
    }
    if (q && (strlen(q) > 1024 || !agg_text_ok(q, strlen(q), 1024))) {
        fail(d, resp, 400, "q", "q must be UTF-8 of at most 1024 bytes");
        return;
    }
    if (parse_limit(tc_http_req_query(req, "limit"), &c.limit) != 0) {
        fail(d, resp, 400, "limit", "limit must be a number from 1 to 1000");
        return;
    }
    c.q = q;
    c.list = json_array();
    if (!c.list) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    uint64_t corrupt = 0;
    int rc = agg_store_logs(d->store, service, since_us, until_us, add_log, &c, &corrupt);
    report_corrupt(d, corrupt, "logs");
    if (rc == 0) {
        rc = c.rc;
    }
    if (rc != 0) {
        json_decref(c.list);
        store_failed(d, resp, rc);
        return;
    }
    json_t *doc = json_pack(
        "{s:s, s:I, s:I, s:o, s:b}", "service", service, "since", (json_int_t)(since_us / 1000000),
        "until", (json_int_t)(until_us / 1000000), "logs", c.list, "truncated", c.truncated);
    if (!doc) {
        store_failed(d, resp, TC_ENOMEM);
        return;
    }
    tc_http_resp_json(resp, 200, doc);
    observe(d, t0);
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
 * Kafka: what the probe saw last. The view: degraded while it lags a minute or more. */
static void ready_check(void *ctx, tc_health_t *health)
{
    agg_daemon_t *d = ctx;
    char detail[200];
    int64_t t0 = tc_mono_us();
    int rc = agg_store_check(d->store, detail, sizeof(detail));
    double ms = (double)(tc_mono_us() - t0) / 1000.0;
    int commit_rc = atomic_load(&d->last_commit_rc);
    if (rc != 0) {
        tc_health_add(health, "lmdb", TC_HEALTH_UNHEALTHY, ms, detail);
    } else if (commit_rc != 0) {
        char why[260];
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
    int64_t lag_ms = atomic_load(&d->view_lag_ms);
    snprintf(detail, sizeof(detail), "the view is %.1f s behind tocsin.rollups",
             (double)lag_ms / 1000.0);
    tc_health_add(health, "view", lag_ms < 60000 ? TC_HEALTH_HEALTHY : TC_HEALTH_DEGRADED, 0,
                  detail);
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

static double gauge_logs_bytes(void *ctx)
{
    agg_daemon_t *d = ctx;
    return (double)agg_store_logs_bytes(d->store);
}

int agg_api_register(agg_daemon_t *d)
{
    if (tc_http_route(d->http, "GET", "/api/v1/query", handle_query, d) != 0 ||
        tc_http_route(d->http, "GET", "/api/v1/range", handle_range, d) != 0 ||
        tc_http_route(d->http, "GET", "/api/v1/series", handle_series, d) != 0 ||
        tc_http_route(d->http, "GET", "/api/v1/issues", handle_issues, d) != 0 ||
        tc_http_route(d->http, "GET", "/api/v1/issues/*", handle_issue_get, d) != 0 ||
        tc_http_route(d->http, "POST", "/api/v1/issues/*", handle_issue_post, d) != 0 ||
        tc_http_route(d->http, "GET", "/api/v1/logs", handle_logs, d) != 0) {
        return TC_ENOMEM;
    }
    tc_http_set_ready(d->http, ready_check, d);
    tc_http_set_metrics(d->http, d->metrics);
    if (tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_lmdb_map_bytes", NULL,
                            "Size of the LMDB map", gauge_map_bytes, d) != 0 ||
        tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_lmdb_used_bytes", NULL,
                            "Bytes of the LMDB map in use", gauge_used_bytes, d) != 0 ||
        tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_states_owed", NULL,
                            "States of owned partitions not yet published (or not yet closed)",
                            gauge_owed, d) != 0 ||
        tc_metrics_gauge_fn(d->metrics, "tocsin_aggregator_logs_bytes", NULL,
                            "Bytes of stored log records (what logs.max_bytes bounds)",
                            gauge_logs_bytes, d) != 0) {
        return TC_ENOMEM;
    }
    return 0;
}
