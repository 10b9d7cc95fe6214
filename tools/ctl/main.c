/*
 * tocsinctl — see and steer a Tocsin fleet from the command line.
 *
 * Each command asks the daemons' HTTP APIs (docs/aggregator.md, docs/alerter.md and the
 * /health and /metrics endpoints every daemon serves), prints a table for people or the
 * JSON for scripts (--json), and exits with a code scripts can trust (ctl_args.h,
 * docs/operations.md). When a daemon cannot be reached or does not serve what a command
 * needs, the command says so in one line on stderr and exits with its own code; it never
 * makes up an answer.
 *
 * Commands that read go to the first configured aggregator (or alerter) that answers, so a
 * list of several works as fail-over.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ctl_args.h"
#include "ctl_http.h"
#include "ctl_keygen.h"
#include "ctl_lag.h"
#include "ctl_rules.h"
#include "ctl_status.h"
#include "ctl_table.h"
#include "ctl_view.h"
#include "tc_error.h"
#include "tc_util.h"

#define TOP_MAX_SERVICES 500
#define TOP_BATCH 32

typedef struct {
    ctl_args_t a;
    size_t width;
    int64_t now_us;
    const char *answered; /* the endpoint that gave the last answer (fail-over) */
} ctl_t;

/* ---- output ------------------------------------------------------------------------------- */

static int print_json(const json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    if (!s) {
        fprintf(stderr, "tocsinctl: out of memory\n");
        return CTL_EXIT_ERROR;
    }
    puts(s);
    free(s);
    return CTL_EXIT_OK;
}

static int print_text(char *text)
{
    if (!text) {
        fprintf(stderr, "tocsinctl: out of memory\n");
        return CTL_EXIT_ERROR;
    }
    fputs(text, stdout);
    free(text);
    return CTL_EXIT_OK;
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
    char buf[2048], clean[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ctl_text_clean(buf, clean, sizeof(clean));
    fprintf(stderr, "tocsinctl: %s\n", clean);
    return code;
}

static size_t terminal_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
        return ws.ws_col;
    }
    const char *cols = getenv("COLUMNS");
    long v = cols ? strtol(cols, NULL, 10) : 0;
    return isatty(STDOUT_FILENO) && v > 0 ? (size_t)v : 0;
}

/* ---- requests ----------------------------------------------------------------------------- */

/*
 * Asks the endpoints in turn (fail-over) for method+path until one gives an HTTP answer.
 * On a 2xx with a JSON body, *out holds it and 0 is returned; otherwise the failure is
 * printed and its exit code returned. `what` names the request in messages.
 */
static int call_json(ctl_t *c, const ctl_endpoints_t *eps, const char *daemon, const char *method,
                     const char *path, const char *const *kv, const json_t *body, json_t **out)
{
    *out = NULL;
    char *body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char what[300];
    snprintf(what, sizeof(what), "%s %s", method, path);
    ctl_http_req_t r = {0};
    int code = CTL_EXIT_UNREACHABLE;
    char msg[1024] = "";
    for (size_t i = 0; i < eps->len; i++) {
        ctl_http_req_fini(&r);
        r.method = method;
        r.body = body_text;
        r.url = ctl_url(eps->items[i], path, kv);
        if (!r.url) {
            free(body_text);
            return fail(CTL_EXIT_ERROR, "out of memory");
        }
        ctl_http_perform(&r, 1, c->a.token, c->a.timeout_ms);
        if (r.transport == 0) {
            c->answered = eps->items[i];
            break;
        }
        ctl_http_describe(&r, daemon, what, msg, sizeof(msg));
        if (i + 1 < eps->len) {
            fail(0, "%s; trying the next %s", msg, daemon);
        }
    }
    free(body_text);
    code = ctl_http_exit_code(&r);
    if (code != CTL_EXIT_OK) {
        ctl_http_describe(&r, daemon, what, msg, sizeof(msg));
        ctl_http_req_fini(&r);
        return fail(code, "%s", msg);
    }
    json_error_t jerr;
    *out = json_loadb(r.data ? r.data : "", r.len, 0, &jerr);
    if (!*out) {
        code = fail(CTL_EXIT_ERROR, "the %s answered %s with something that is not JSON: %s",
                    daemon, what, jerr.text);
    }
    ctl_http_req_fini(&r);
    return code;
}

static int get_json(ctl_t *c, const ctl_endpoints_t *eps, const char *daemon, const char *path,
                    const char *const *kv, json_t **out)
{
    return call_json(c, eps, daemon, "GET", path, kv, NULL, out);
}

/* ---- status ------------------------------------------------------------------------------- */

static int cmd_status(ctl_t *c)
{
    ctl_kind_t only = CTL_KIND_COUNT;
    if (c->a.kind && ctl_kind_parse(c->a.kind, &only) != 0) {
        return fail(CTL_EXIT_USAGE, "--kind: expected collector, aggregator or alerter, got \"%s\"",
                    c->a.kind);
    }
    const ctl_endpoints_t *lists[CTL_KIND_COUNT] = {&c->a.collectors, &c->a.aggregators,
                                                    &c->a.alerters};
    size_t n = 0;
    for (int k = 0; k < CTL_KIND_COUNT; k++) {
        n += (only == CTL_KIND_COUNT || only == (ctl_kind_t)k) ? lists[k]->len : 0;
    }
    ctl_http_req_t *reqs = calloc(3 * n + 1, sizeof(*reqs));
    ctl_kind_t *kinds = calloc(n + 1, sizeof(*kinds));
    const char **eps = calloc(n + 1, sizeof(*eps));
    json_t *records = json_array();
    int code = CTL_EXIT_ERROR;
    if (!reqs || !kinds || !eps || !records) {
        code = fail(CTL_EXIT_ERROR, "out of memory");
        goto out;
    }
    size_t d = 0;
    static const char *const paths[3] = {"/health/live", "/health/ready", "/metrics"};
    for (int k = 0; k < CTL_KIND_COUNT; k++) {
        if (only != CTL_KIND_COUNT && only != (ctl_kind_t)k) {
            continue;
        }
        for (size_t i = 0; i < lists[k]->len; i++, d++) {
            kinds[d] = (ctl_kind_t)k;
            eps[d] = lists[k]->items[i];
            for (int p = 0; p < 3; p++) {
                reqs[3 * d + p].method = "GET";
                reqs[3 * d + p].url = ctl_url(eps[d], paths[p], NULL);
                if (!reqs[3 * d + p].url) {
                    code = fail(CTL_EXIT_ERROR, "out of memory");
                    goto out;
                }
            }
        }
    }
    ctl_http_perform(reqs, 3 * n, c->a.token, c->a.timeout_ms);
    for (d = 0; d < n; d++) {
        json_t *rec =
            ctl_status_record(kinds[d], eps[d], &reqs[3 * d], &reqs[3 * d + 1], &reqs[3 * d + 2]);
        if (!rec || json_array_append_new(records, rec) != 0) {
            code = fail(CTL_EXIT_ERROR, "out of memory");
            goto out;
        }
    }
    code = ctl_status_exit_code(records);
    /* The consumer groups' lag, from Kafka, when its address is known. */
    ctl_lag_t lags[3];
    size_t nlags = 0;
    if (c->a.brokers && only != CTL_KIND_COLLECTOR) {
        static const char *const agg_topics[] = {"tocsin.events", "tocsin.logs"};
        static const char *const alr_topics[] = {"tocsin.rollups"};
        char err[512];
        int rc = 0;
        if (only == CTL_KIND_COUNT || only == CTL_KIND_AGGREGATOR) {
            rc = ctl_lag_query(c->a.brokers, &c->a.kafka, "tocsin-aggregator", agg_topics, 2,
                               c->a.timeout_ms, lags, err, sizeof(err));
            nlags = rc == 0 ? 2 : 0;
        }
        if (rc == 0 && (only == CTL_KIND_COUNT || only == CTL_KIND_ALERTER)) {
            rc = ctl_lag_query(c->a.brokers, &c->a.kafka, "tocsin-alerter", alr_topics, 1,
                               c->a.timeout_ms, lags + nlags, err, sizeof(err));
            nlags += rc == 0 ? 1 : 0;
        }
        if (rc != 0) {
            fail(0, "%s", err);
            code = rc == TC_EUNAVAIL ? CTL_EXIT_UNREACHABLE : CTL_EXIT_USAGE;
            nlags = 0;
        }
    }
    if (c->a.json) {
        json_t *doc = json_pack("{s:b, s:O}", "ok", code == CTL_EXIT_OK, "daemons", records);
        if (doc && c->a.brokers) {
            json_object_set_new(doc, "consumer_groups", ctl_lag_json(lags, nlags));
        }
        int pc = doc ? print_json(doc) : fail(CTL_EXIT_ERROR, "out of memory");
        json_decref(doc);
        code = pc != CTL_EXIT_OK ? pc : code;
    } else {
        int pc = print_text(ctl_status_render(records, c->width));
        if (pc == CTL_EXIT_OK && nlags > 0) {
            fputs("\n", stdout);
            pc = print_text(ctl_lag_render(lags, nlags, c->width));
        }
        code = pc != CTL_EXIT_OK ? pc : code;
    }
out:
    for (size_t i = 0; reqs && i < 3 * n; i++) {
        ctl_http_req_fini(&reqs[i]);
    }
    free(reqs);
    free(kinds);
    free(eps);
    json_decref(records);
    return code;
}

/* ---- query and top ------------------------------------------------------------------------ */

static int cmd_query(ctl_t *c)
{
    const char *service = c->a.words[0];
    const char *name = c->a.nwords > 1 ? c->a.words[1] : "*";
    json_t *doc = NULL;
    int code;
    if (c->a.since || c->a.until || c->a.step) {
        if (c->a.window || c->a.q) {
            return fail(CTL_EXIT_USAGE, "query: --since/--until/--step ask for a range; "
                                        "--window and --q are for one window");
        }
        int64_t from_us, to_us = c->now_us;
        if (!c->a.since || ctl_time_parse(c->a.since, c->now_us, &from_us) != 0) {
            return fail(CTL_EXIT_USAGE, "--since: expected a time (15m, RFC 3339, Unix seconds)%s",
                        c->a.since ? "" : "; a range needs it");
        }
        if (c->a.until && ctl_time_parse(c->a.until, c->now_us, &to_us) != 0) {
            return fail(CTL_EXIT_USAGE, "--until: expected a time (RFC 3339, Unix seconds, now)");
        }
        if (to_us <= from_us) {
            return fail(CTL_EXIT_USAGE, "--until must be after --since");
        }
        /* Without --step, about 60 rows: the span / 60, up to a multiple of the 10 s
         * buckets. */
        char from[32], to[32], step[32];
        snprintf(from, sizeof(from), "%" PRId64, from_us / 1000000);
        snprintf(to, sizeof(to), "%" PRId64, to_us / 1000000);
        int64_t step_s = ((to_us - from_us) / 1000000 / 60 + 9) / 10 * 10;
        snprintf(step, sizeof(step), "%" PRId64 "s", step_s < 10 ? 10 : step_s);
        const char *kv[] = {"service",     service,  "name", name,   "from",
                            from,          "to",     to,     "step", c->a.step ? c->a.step : step,
                            "environment", c->a.env, NULL};
        code = get_json(c, &c->a.aggregators, "aggregator", "/api/v1/range", kv, &doc);
        if (code == CTL_EXIT_OK) {
            code = c->a.json ? print_json(doc) : print_text(ctl_view_range(doc, c->width));
        }
    } else {
        const char *kv[] = {
            "service",     service,  "name", name,   "window", c->a.window ? c->a.window : "5m",
            "environment", c->a.env, "q",    c->a.q, NULL};
        code = get_json(c, &c->a.aggregators, "aggregator", "/api/v1/query", kv, &doc);
        if (code == CTL_EXIT_OK) {
            code = c->a.json ? print_json(doc) : print_text(ctl_view_query(doc, c->width));
        }
    }
    json_decref(doc);
    return code;
}

static double jnum(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/*
 * top: the aggregator's series list gives the services; each service's request series are
 * queried merged (name *), and its error events ($errors) when it has that series. The
 * queries run in parallel batches against the aggregator that answered the list.
 */
static int cmd_top(ctl_t *c)
{
    ctl_top_by_t by = CTL_TOP_REQUESTS;
    if (c->a.by && ctl_top_by_parse(c->a.by, &by) != 0) {
        return fail(CTL_EXIT_USAGE, "--by: expected requests, errors, error_rate or p95");
    }
    const char *window = c->a.window ? c->a.window : "5m";
    int64_t wms;
    if (tc_duration_parse(window, &wms) != 0 || wms <= 0) {
        return fail(CTL_EXIT_USAGE, "--window: expected a duration such as 5m");
    }
    json_t *series = NULL;
    int code = get_json(c, &c->a.aggregators, "aggregator", "/api/v1/series", NULL, &series);
    if (code != CTL_EXIT_OK) {
        return code;
    }
    ctl_top_row_t *rows = calloc(TOP_MAX_SERVICES, sizeof(*rows));
    bool *has_errors = calloc(TOP_MAX_SERVICES, sizeof(*has_errors));
    ctl_http_req_t *reqs = calloc(2 * TOP_BATCH, sizeof(*reqs));
    size_t n = 0;
    bool truncated = json_is_true(json_object_get(series, "truncated"));
    if (!rows || !has_errors || !reqs) {
        code = fail(CTL_EXIT_ERROR, "out of memory");
        goto out;
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(series, "series"), i, s)
    {
        const char *svc = json_string_value(json_object_get(s, "service"));
        const char *env = json_string_value(json_object_get(s, "environment"));
        const char *kind = json_string_value(json_object_get(s, "kind"));
        if (!svc || (c->a.env && (!env || strcmp(env, c->a.env) != 0))) {
            continue;
        }
        size_t k = 0;
        while (k < n && strcmp(rows[k].service, svc) != 0) {
            k++;
        }
        if (k == n) {
            if (n == TOP_MAX_SERVICES) {
                truncated = true;
                continue;
            }
            memset(&rows[n], 0, sizeof(rows[n]));
            tc_strlcpy(rows[n].service, svc, sizeof(rows[n].service));
            rows[n].requests = rows[n].rate_per_s = rows[n].errors = NAN;
            rows[n].error_rate = rows[n].p95_ms = rows[n].error_events = NAN;
            n++;
        }
        if (kind && strcmp(kind, "errors") == 0) {
            has_errors[k] = true;
        }
    }
    /* The queries go to the aggregator that answered the list. */
    const char *base = c->answered ? c->answered : c->a.aggregators.items[0];
    for (size_t start = 0; start < n; start += TOP_BATCH) {
        size_t m = n - start < TOP_BATCH ? n - start : TOP_BATCH;
        size_t nr = 0;
        for (size_t k = 0; k < m; k++) {
            const ctl_top_row_t *r = &rows[start + k];
            const char *kv1[] = {"service",     r->service, "name", "*",    "window", window,
                                 "environment", c->a.env,   "q",    "0.95", NULL};
            const char *kv2[] = {"service", r->service,    "name",   "$errors", "window",
                                 window,    "environment", c->a.env, NULL};
            reqs[nr].method = "GET";
            reqs[nr++].url = ctl_url(base, "/api/v1/query", kv1);
            reqs[nr].method = "GET";
            reqs[nr++].url = has_errors[start + k] ? ctl_url(base, "/api/v1/query", kv2) : NULL;
        }
        /* Requests without a URL (no $errors series) are left out of the transfer. */
        ctl_http_req_t batch[2 * TOP_BATCH];
        size_t map[2 * TOP_BATCH], nb = 0;
        for (size_t k = 0; k < nr; k++) {
            if (reqs[k].url) {
                batch[nb] = reqs[k];
                map[nb++] = k;
            }
        }
        ctl_http_perform(batch, nb, c->a.token, c->a.timeout_ms);
        for (size_t b = 0; b < nb; b++) {
            reqs[map[b]] = batch[b];
        }
        for (size_t k = 0; k < nr; k++) {
            ctl_http_req_t *r = &reqs[k];
            ctl_top_row_t *row = &rows[start + k / 2];
            if (!r->url) {
                continue;
            }
            int rc = ctl_http_exit_code(r);
            json_t *doc = rc == CTL_EXIT_OK ? json_loadb(r->data, r->len, 0, NULL) : NULL;
            if (!doc) {
                char msg[1024];
                ctl_http_describe(r, "aggregator", "GET /api/v1/query", msg, sizeof(msg));
                code = fail(rc != CTL_EXIT_OK ? rc : CTL_EXIT_ERROR, "%s (service %s)", msg,
                            row->service);
                for (size_t q = 0; q < nr; q++) {
                    ctl_http_req_fini(&reqs[q]);
                }
                goto out;
            }
            if (k % 2 == 0) {
                row->requests = jnum(json_object_get(doc, "count"));
                row->rate_per_s = jnum(json_object_get(doc, "rate_per_s"));
                row->errors = jnum(json_object_get(doc, "errors"));
                row->error_rate = jnum(json_object_get(doc, "error_rate"));
                row->p95_ms = jnum(json_object_get(json_object_get(doc, "quantiles"), "0.95"));
            } else {
                row->error_events = jnum(json_object_get(doc, "count"));
            }
            json_decref(doc);
        }
        for (size_t k = 0; k < nr; k++) {
            ctl_http_req_fini(&reqs[k]);
        }
    }
    size_t limit = c->a.limit > 0 ? (size_t)c->a.limit : 10;
    if (c->a.json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "window", json_string(window));
        json_object_set_new(doc, "truncated", json_boolean(truncated));
        if (c->a.by) {
            ctl_top_sort(rows, n, by);
            json_object_set_new(doc, "by", json_string(c->a.by));
            json_object_set_new(doc, "services", ctl_top_json(rows, n, limit));
        } else {
            ctl_top_sort(rows, n, CTL_TOP_REQUESTS);
            json_object_set_new(doc, "busiest", ctl_top_json(rows, n, limit));
            ctl_top_sort(rows, n, CTL_TOP_ERRORS);
            json_object_set_new(doc, "failing", ctl_top_json(rows, n, limit));
        }
        code = print_json(doc);
        json_decref(doc);
    } else if (n == 0) {
        printf("no services in the aggregator yet\n");
        code = CTL_EXIT_OK;
    } else if (c->a.by) {
        ctl_top_sort(rows, n, by);
        printf("Services by %s over %s:\n", c->a.by, window);
        code = print_text(ctl_view_top(rows, n, limit, c->width));
    } else {
        ctl_top_sort(rows, n, CTL_TOP_REQUESTS);
        printf("Busiest over %s:\n", window);
        code = print_text(ctl_view_top(rows, n, limit, c->width));
        ctl_top_sort(rows, n, CTL_TOP_ERRORS);
        /* Only services that failed at all belong in the second list. */
        size_t failing = 0;
        while (failing < n && (rows[failing].errors > 0 || rows[failing].error_events > 0)) {
            failing++;
        }
        printf("\nMost failing over %s:\n", window);
        if (failing == 0) {
            printf("no errors\n");
        } else if (code == CTL_EXIT_OK) {
            code = print_text(ctl_view_top(rows, failing, limit, c->width));
        }
    }
    if (truncated && !c->a.json) {
        fprintf(stderr,
                "tocsinctl: the service list was cut short (more than %d services or "
                "series)\n",
                TOP_MAX_SERVICES);
    }
out:
    free(rows);
    free(has_errors);
    free(reqs);
    json_decref(series);
    return code;
}

/* ---- issues and logs ---------------------------------------------------------------------- */

static int cmd_issues(ctl_t *c)
{
    char limit[32];
    snprintf(limit, sizeof(limit), "%ld", c->a.limit);
    const char *kv[] = {"service", c->a.service, "status", c->a.status,
                        "sort",    c->a.sort,    "limit",  c->a.limit ? limit : NULL,
                        NULL};
    json_t *doc = NULL;
    int code = get_json(c, &c->a.aggregators, "aggregator", "/api/v1/issues", kv, &doc);
    if (code == CTL_EXIT_OK) {
        code = c->a.json ? print_json(doc) : print_text(ctl_view_issues(doc, c->now_us, c->width));
    }
    json_decref(doc);
    return code;
}

static int cmd_issue(ctl_t *c)
{
    char *id = ctl_url_escape(c->a.words[0]);
    if (!id) {
        return fail(CTL_EXIT_ERROR, "out of memory");
    }
    char path[1024];
    snprintf(path, sizeof(path), "/api/v1/issues/%s", id);
    free(id);
    /* An id names an issue of one service; --service picks it when two services share it. */
    const char *kv[] = {"service", c->a.service, NULL};
    json_t *doc = NULL;
    int code;
    if (c->a.status) {
        json_t *body = json_pack("{s:s}", "status", c->a.status);
        if (body && c->a.service) {
            json_object_set_new(body, "service", json_string(c->a.service));
        }
        code = call_json(c, &c->a.aggregators, "aggregator", "POST", path, NULL, body, &doc);
        json_decref(body);
        json_decref(doc);
        doc = NULL;
        if (code != CTL_EXIT_OK) {
            return code;
        }
    }
    code = get_json(c, &c->a.aggregators, "aggregator", path, kv, &doc);
    if (code == CTL_EXIT_OK) {
        code = c->a.json ? print_json(doc) : print_text(ctl_view_issue(doc, c->now_us, c->width));
    }
    json_decref(doc);
    return code;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* The records of a logs answer, whatever the list is called. */
static const json_t *log_records(const json_t *doc)
{
    const json_t *l = json_is_array(doc) ? doc : json_object_get(doc, "logs");
    return l ? l : json_object_get(doc, "records");
}

/* A record's identity for --follow: its id when it has one, else its whole text. */
static char *log_key(const json_t *rec)
{
    const json_t *id = json_object_get(rec, "id");
    if (json_is_string(id)) {
        return strdup(json_string_value(id));
    }
    return json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
}

/*
 * logs: one query, or with --follow a query every --interval for what is newer than the
 * last record seen. The answer's "next" cursor is used when the aggregator gives one;
 * otherwise `since` moves to the newest record's time and the records of that very instant
 * already printed are skipped.
 */
static int cmd_logs(ctl_t *c)
{
    if (!c->a.service) {
        return fail(CTL_EXIT_USAGE, "logs needs --service");
    }
    /* The aggregator takes times as Unix seconds (fractions allowed). */
    char since[64] = "", until[64] = "", limit[32];
    int64_t t;
    if (c->a.since) {
        if (ctl_time_parse(c->a.since, c->now_us, &t) != 0) {
            return fail(CTL_EXIT_USAGE, "--since: expected a time (15m, RFC 3339, Unix seconds)");
        }
        snprintf(since, sizeof(since), "%.6f", (double)t / 1e6);
    }
    if (c->a.until) {
        if (c->a.follow) {
            return fail(CTL_EXIT_USAGE, "--until and --follow do not go together");
        }
        if (ctl_time_parse(c->a.until, c->now_us, &t) != 0) {
            return fail(CTL_EXIT_USAGE, "--until: expected a time (RFC 3339, Unix seconds, now)");
        }
        snprintf(until, sizeof(until), "%.6f", (double)t / 1e6);
    }
    snprintf(limit, sizeof(limit), "%ld", c->a.limit ? c->a.limit : 100);
    char cursor[256] = "";
    char **seen = NULL;
    size_t nseen = 0;
    int code = CTL_EXIT_OK;
    if (c->a.follow) {
        signal(SIGINT, on_sigint);
        signal(SIGTERM, on_sigint);
    }
    do {
        const char *kv[] = {"service", c->a.service,
                            "level",   c->a.level,
                            "since",   since[0] ? since : NULL,
                            "until",   until[0] ? until : NULL,
                            "q",       c->a.grep,
                            "limit",   limit,
                            "cursor",  cursor[0] ? cursor : NULL,
                            NULL};
        json_t *doc = NULL;
        code = get_json(c, &c->a.aggregators, "aggregator", "/api/v1/logs", kv, &doc);
        if (code != CTL_EXIT_OK) {
            if (c->a.follow && code == CTL_EXIT_UNREACHABLE && !interrupted) {
                sleep(1); /* keep following through a restart of the aggregator */
                continue;
            }
            break;
        }
        if (c->a.json && !c->a.follow) {
            code = print_json(doc);
            json_decref(doc);
            break;
        }
        /* Skip what was printed already (the same instant asked again). */
        json_t *fresh = json_array();
        const json_t *recs = log_records(doc);
        size_t i;
        json_t *rec;
        char **next_seen = NULL;
        size_t nnext = 0;
        json_array_foreach((json_t *)recs, i, rec)
        {
            char *key = log_key(rec);
            bool dup = false;
            for (size_t k = 0; key && k < nseen && !dup; k++) {
                dup = strcmp(seen[k], key) == 0;
            }
            if (!dup) {
                json_array_append(fresh, rec);
            }
            char **grown = realloc(next_seen, (nnext + 1) * sizeof(*grown));
            if (grown && key) {
                next_seen = grown;
                next_seen[nnext++] = key;
            } else {
                free(key);
                if (grown) {
                    next_seen = grown;
                }
            }
        }
        if (c->a.json) {
            json_array_foreach(fresh, i, rec)
            {
                char *line = json_dumps(rec, JSON_COMPACT);
                if (line) {
                    puts(line);
                    free(line);
                }
            }
        } else {
            code = print_text(ctl_view_logs(fresh));
        }
        fflush(stdout);
        /* Where the next round starts. */
        const char *nc = json_string_value(json_object_get(doc, "next"));
        if (!nc) {
            nc = json_string_value(json_object_get(doc, "cursor"));
        }
        if (nc) {
            tc_strlcpy(cursor, nc, sizeof(cursor));
        }
        size_t nrec = json_array_size(recs);
        if (nrec > 0) {
            /* The next round starts at the newest record's instant; the records of that
             * instant already printed are skipped by their key. */
            const json_t *last = json_array_get(recs, nrec - 1);
            const json_t *tus = json_object_get(last, "time_us");
            int64_t last_us;
            if (json_is_integer(tus)) {
                snprintf(since, sizeof(since), "%.6f", (double)json_integer_value(tus) / 1e6);
            } else if (ctl_rfc3339_parse(json_string_value(json_object_get(last, "time")),
                                         &last_us) == 0) {
                snprintf(since, sizeof(since), "%.6f", (double)last_us / 1e6);
            }
            for (size_t k = 0; k < nseen; k++) {
                free(seen[k]);
            }
            free(seen);
            seen = next_seen;
            nseen = nnext;
        } else {
            for (size_t k = 0; k < nnext; k++) {
                free(next_seen[k]);
            }
            free(next_seen);
        }
        json_decref(fresh);
        json_decref(doc);
        if (c->a.follow && !interrupted) {
            usleep((useconds_t)(c->a.interval_ms * 1000));
        }
    } while (c->a.follow && !interrupted && code == CTL_EXIT_OK);
    for (size_t k = 0; k < nseen; k++) {
        free(seen[k]);
    }
    free(seen);
    return code;
}

/* ---- the alerter --------------------------------------------------------------------------- */

static bool is_fingerprint(const char *s)
{
    return strlen(s) == 16 && strspn(s, "0123456789abcdef") == 16;
}

/*
 * Turns ALERT (a fingerprint, or an alertname held by exactly one active alert) into a
 * fingerprint. Returns 0 or the exit code after printing why.
 */
static int resolve_alert(ctl_t *c, const char *alert, char fp[17])
{
    if (is_fingerprint(alert)) {
        tc_strlcpy(fp, alert, 17);
        return CTL_EXIT_OK;
    }
    const char *kv[] = {"alertname", alert, NULL};
    json_t *doc = NULL;
    int code = get_json(c, &c->a.alerters, "alerter", "/api/v1/alerts", kv, &doc);
    if (code != CTL_EXIT_OK) {
        return code;
    }
    size_t found = 0, i;
    json_t *a;
    char list[512] = "";
    size_t o = 0;
    json_array_foreach(json_object_get(doc, "alerts"), i, a)
    {
        const char *name = json_string_value(json_object_get(a, "alertname"));
        const char *state = json_string_value(json_object_get(a, "state"));
        const char *f = json_string_value(json_object_get(a, "fingerprint"));
        /* The filter may be unknown to an older alerter: check the name here too. */
        if (!name || strcmp(name, alert) != 0 || !f || (state && strcmp(state, "inactive") == 0)) {
            continue;
        }
        if (found++ == 0) {
            tc_strlcpy(fp, f, 17);
        }
        if (o < sizeof(list)) {
            o += (size_t)snprintf(list + o, sizeof(list) - o, " %s (%s)", f, state ? state : "?");
        }
    }
    json_decref(doc);
    if (found == 0) {
        return fail(CTL_EXIT_NOTFOUND,
                    "no active alert is named \"%s\" (tocsinctl alerts lists "
                    "them)",
                    alert);
    }
    if (found > 1) {
        return fail(CTL_EXIT_USAGE,
                    "%zu active alerts are named \"%s\"; name one by its "
                    "fingerprint:%s",
                    found, alert, list);
    }
    return CTL_EXIT_OK;
}

static const char *author(const ctl_t *c)
{
    if (c->a.author) {
        return c->a.author;
    }
    const char *u = getenv("USER");
    return u && *u ? u : "tocsinctl";
}

static int cmd_alerts(ctl_t *c)
{
    const char *kv[] = {"state", c->a.state, NULL};
    json_t *doc = NULL;
    int code = get_json(c, &c->a.alerters, "alerter", "/api/v1/alerts", kv, &doc);
    if (code == CTL_EXIT_OK) {
        code = c->a.json
                   ? print_json(doc)
                   : print_text(ctl_view_alerts(doc, c->a.all || c->a.state, c->now_us, c->width));
    }
    json_decref(doc);
    return code;
}

/* ack, unack, resolve: POST /api/v1/alerts/{fingerprint}/{action}. */
static int cmd_alert_action(ctl_t *c, const char *action)
{
    char fp[17];
    int code = resolve_alert(c, c->a.words[0], fp);
    if (code != CTL_EXIT_OK) {
        return code;
    }
    if (c->a.for_) {
        int64_t ms;
        if (tc_duration_parse(c->a.for_, &ms) != 0 || ms <= 0) {
            return fail(CTL_EXIT_USAGE, "--for: expected a duration such as 30m");
        }
    }
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/alerts/%s/%s", fp, action);
    json_t *body = json_object();
    json_object_set_new(body, "by", json_string(author(c)));
    if (c->a.comment) {
        json_object_set_new(body, "comment", json_string(c->a.comment));
    }
    if (c->a.for_) {
        json_object_set_new(body, "expires_in", json_string(c->a.for_));
    }
    json_t *doc = NULL;
    code = call_json(c, &c->a.alerters, "alerter", "POST", path, NULL, body, &doc);
    json_decref(body);
    if (code == CTL_EXIT_OK) {
        if (c->a.json) {
            code = print_json(doc);
        } else {
            const char *name = json_string_value(json_object_get(doc, "alertname"));
            const char *state = json_string_value(json_object_get(doc, "state"));
            const json_t *ack = json_object_get(doc, "acknowledged");
            char until[96] = "";
            if (json_is_object(ack) && json_is_string(json_object_get(ack, "expires_at"))) {
                char when[64];
                ctl_fmt_when(json_object_get(ack, "expires_at"), c->now_us, when, sizeof(when));
                snprintf(until, sizeof(until), ", until %s", when);
            }
            char line[512], clean[512];
            snprintf(line, sizeof(line), "%s %s (%s): now %s%s", action, name ? name : "alert", fp,
                     state ? state : "?", until);
            ctl_text_clean(line, clean, sizeof(clean));
            puts(clean);
        }
    }
    json_decref(doc);
    return code;
}

static int cmd_notifications(ctl_t *c)
{
    char fp[17] = "", limit[32];
    if (c->a.nwords == 1) {
        int code = resolve_alert(c, c->a.words[0], fp);
        if (code != CTL_EXIT_OK) {
            return code;
        }
    }
    snprintf(limit, sizeof(limit), "%ld", c->a.limit);
    const char *kv[] = {"fingerprint", fp[0] ? fp : NULL,         "status", c->a.status,
                        "limit",       c->a.limit ? limit : NULL, NULL};
    json_t *doc = NULL;
    int code = get_json(c, &c->a.alerters, "alerter", "/api/v1/notifications", kv, &doc);
    if (code == CTL_EXIT_OK) {
        code = c->a.json ? print_json(doc)
                         : print_text(ctl_view_notifications(doc, c->now_us, c->width));
    }
    json_decref(doc);
    return code;
}

static int cmd_silence(ctl_t *c)
{
    const char *sub = c->a.nwords ? c->a.words[0] : "list";
    json_t *doc = NULL;
    int code;
    if (strcmp(sub, "list") == 0) {
        if (c->a.nwords > 1 || c->a.for_ || c->a.comment || c->a.author) {
            return fail(CTL_EXIT_USAGE, "silence list takes only --all");
        }
        const char *kv[] = {"state", c->a.all ? NULL : "active", NULL};
        code = get_json(c, &c->a.alerters, "alerter", "/api/v1/silences", kv, &doc);
        if (code == CTL_EXIT_OK && !c->a.all) {
            /* pending ones (maintenance windows to come) belong in the default list too */
            json_t *pending = NULL;
            const char *kv2[] = {"state", "pending", NULL};
            if (get_json(c, &c->a.alerters, "alerter", "/api/v1/silences", kv2, &pending) ==
                CTL_EXIT_OK) {
                json_array_extend(json_object_get(doc, "silences"),
                                  json_object_get(pending, "silences"));
            }
            json_decref(pending);
        }
        if (code == CTL_EXIT_OK) {
            code = c->a.json ? print_json(doc)
                             : print_text(ctl_view_silences(doc, c->now_us, c->width));
        }
    } else if (strcmp(sub, "add") == 0) {
        if (c->a.nwords < 2) {
            return fail(CTL_EXIT_USAGE, "silence add needs at least one MATCHER (label=value)");
        }
        if (!c->a.for_) {
            return fail(CTL_EXIT_USAGE, "silence add needs --for DURATION (how long it lasts)");
        }
        int64_t ms;
        if (tc_duration_parse(c->a.for_, &ms) != 0 || ms <= 0) {
            return fail(CTL_EXIT_USAGE, "--for: expected a duration such as 2h");
        }
        json_t *matchers = json_array();
        for (size_t i = 1; i < c->a.nwords; i++) {
            if (!strpbrk(c->a.words[i], "=~")) {
                json_decref(matchers);
                return fail(CTL_EXIT_USAGE,
                            "matcher \"%s\": expected label=value, label!=value, label=~regex or "
                            "label!~regex",
                            c->a.words[i]);
            }
            json_array_append_new(matchers, json_string(c->a.words[i]));
        }
        json_t *body =
            json_pack("{s:o, s:s, s:s, s:s}", "matchers", matchers, "duration", c->a.for_,
                      "created_by", author(c), "comment", c->a.comment ? c->a.comment : "");
        code =
            call_json(c, &c->a.alerters, "alerter", "POST", "/api/v1/silences", NULL, body, &doc);
        json_decref(body);
        if (code == CTL_EXIT_OK) {
            if (c->a.json) {
                code = print_json(doc);
            } else {
                char ends[64];
                ctl_fmt_when(json_object_get(doc, "ends_at"), c->now_us, ends, sizeof(ends));
                const char *id = json_string_value(json_object_get(doc, "id"));
                char line[256], clean[256];
                snprintf(line, sizeof(line), "silence %s active until %s", id ? id : "?", ends);
                ctl_text_clean(line, clean, sizeof(clean));
                puts(clean);
            }
        }
    } else if (strcmp(sub, "expire") == 0) {
        if (c->a.nwords != 2) {
            return fail(CTL_EXIT_USAGE, "silence expire takes the silence's ID");
        }
        char *id = ctl_url_escape(c->a.words[1]);
        if (!id) {
            return fail(CTL_EXIT_ERROR, "out of memory");
        }
        char path[512];
        snprintf(path, sizeof(path), "/api/v1/silences/%s", id);
        free(id);
        code = call_json(c, &c->a.alerters, "alerter", "DELETE", path, NULL, NULL, &doc);
        if (code == CTL_EXIT_OK) {
            if (c->a.json) {
                code = print_json(doc);
            } else {
                char line[256], clean[256];
                snprintf(line, sizeof(line), "silence %s expired", c->a.words[1]);
                ctl_text_clean(line, clean, sizeof(clean));
                puts(clean);
            }
        }
    } else {
        return fail(CTL_EXIT_USAGE, "silence: expected list, add or expire, got \"%s\"", sub);
    }
    json_decref(doc);
    return code;
}

/* ---- rules check and keygen ----------------------------------------------------------------- */

static int cmd_rules(ctl_t *c)
{
    if (strcmp(c->a.words[0], "check") != 0) {
        return fail(CTL_EXIT_USAGE, "rules: the only subcommand is check (rules check FILE)");
    }
    char err[2048];
    json_t *set = ctl_rules_load(c->a.words[1], err, sizeof(err));
    if (!set) {
        if (c->a.json) {
            json_t *doc = json_pack("{s:b, s:s}", "valid", 0, "error", err);
            print_json(doc);
            json_decref(doc);
        }
        return fail(CTL_EXIT_PROBLEM, "%s", err);
    }
    json_t *alerts = NULL;
    if (c->a.live &&
        get_json(c, &c->a.alerters, "alerter", "/api/v1/alerts", NULL, &alerts) != CTL_EXIT_OK) {
        fail(0, "live state not shown; the plan below is from the file alone");
    }
    json_t *plan = ctl_rules_plan(set, alerts);
    int code;
    if (!plan) {
        code = fail(CTL_EXIT_ERROR, "out of memory");
    } else if (c->a.json) {
        json_t *doc =
            json_pack("{s:b, s:O, s:O}", "valid", 1, "files",
                      json_object_get(set, "files") ? json_object_get(set, "files") : json_null(),
                      "rules", plan);
        code = print_json(doc);
        json_decref(doc);
    } else {
        printf("%s: valid, %zu rule(s)\n", c->a.words[1], json_array_size(plan));
        code = print_text(ctl_rules_render(plan, c->now_us, c->width));
    }
    json_decref(plan);
    json_decref(alerts);
    json_decref(set);
    return code;
}

static int cmd_keygen(ctl_t *c)
{
    char pub[41], err[1024];
    const char *dir = c->a.dir ? c->a.dir : ".";
    int rc = ctl_keygen(dir, c->a.words[0], c->a.force, pub, err, sizeof(err));
    if (rc != 0) {
        return fail(rc == TC_EINVAL ? CTL_EXIT_USAGE : CTL_EXIT_PROBLEM, "%s", err);
    }
    if (c->a.json) {
        char pubf[4096], secf[4200];
        snprintf(pubf, sizeof(pubf), "%s/%s.key", dir, c->a.words[0]);
        snprintf(secf, sizeof(secf), "%s_secret", pubf);
        json_t *doc = json_pack("{s:s, s:s, s:s}", "public_key", pub, "public_file", pubf,
                                "secret_file", secf);
        rc = print_json(doc);
        json_decref(doc);
        return rc;
    }
    printf("public key %s\n  %s/%s.key         (public: give to the other side)\n"
           "  %s/%s.key_secret  (secret: keep on this host, mode 0600)\n",
           pub, dir, c->a.words[0], dir, c->a.words[0]);
    return CTL_EXIT_OK;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const char *real_getenv(const char *name)
{
    return getenv(name);
}

int main(int argc, char **argv)
{
    static ctl_t ctl;
    ctl_t *c = &ctl;
    char err[1024];
    char default_config[4096] = "";
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(default_config, sizeof(default_config), "%s/.config/tocsin/tocsinctl.conf", home);
    }
    if (!default_config[0] || access(default_config, F_OK) != 0) {
        snprintf(default_config, sizeof(default_config), "/etc/tocsin/tocsinctl.conf");
    }
    int rc = ctl_args_parse(&c->a, argc, argv, real_getenv, default_config, err, sizeof(err));
    if (rc == CTL_ARGS_HELP) {
        fputs(ctl_args_usage(c->a.command), stdout);
        ctl_args_fini(&c->a);
        return CTL_EXIT_OK;
    }
    if (rc == CTL_ARGS_VERSION) {
        printf("tocsinctl %s\n", TOCSIN_VERSION);
        ctl_args_fini(&c->a);
        return CTL_EXIT_OK;
    }
    if (rc != 0) {
        fail(CTL_EXIT_USAGE, "%s", err);
        ctl_args_fini(&c->a);
        return CTL_EXIT_USAGE;
    }
    if (ctl_http_init() != 0) {
        ctl_args_fini(&c->a);
        return fail(CTL_EXIT_ERROR, "cannot initialise libcurl");
    }
    c->width = c->a.width > 0 ? (size_t)c->a.width : terminal_width();
    c->now_us = tc_now_us();
    const char *cmd = c->a.command;
    int code;
    if (strcmp(cmd, "status") == 0) {
        code = cmd_status(c);
    } else if (strcmp(cmd, "query") == 0) {
        code = cmd_query(c);
    } else if (strcmp(cmd, "top") == 0) {
        code = cmd_top(c);
    } else if (strcmp(cmd, "issues") == 0) {
        code = cmd_issues(c);
    } else if (strcmp(cmd, "issue") == 0) {
        code = cmd_issue(c);
    } else if (strcmp(cmd, "logs") == 0) {
        code = cmd_logs(c);
    } else if (strcmp(cmd, "alerts") == 0) {
        code = cmd_alerts(c);
    } else if (strcmp(cmd, "ack") == 0) {
        code = cmd_alert_action(c, "ack");
    } else if (strcmp(cmd, "unack") == 0) {
        code = cmd_alert_action(c, "unack");
    } else if (strcmp(cmd, "resolve") == 0) {
        code = cmd_alert_action(c, "resolve");
    } else if (strcmp(cmd, "notifications") == 0) {
        code = cmd_notifications(c);
    } else if (strcmp(cmd, "silence") == 0) {
        code = cmd_silence(c);
    } else if (strcmp(cmd, "rules") == 0) {
        code = cmd_rules(c);
    } else if (strcmp(cmd, "keygen") == 0) {
        code = cmd_keygen(c);
    } else {
        code = fail(CTL_EXIT_USAGE, "unknown command \"%s\"", cmd);
    }
    ctl_http_cleanup();
    ctl_args_fini(&c->a);
    return code;
}
