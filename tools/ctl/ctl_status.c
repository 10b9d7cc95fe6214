/*
 * ctl_status.c — the key figures per kind of daemon and the status record and table.
 *
 * The figure tables name the metrics the daemons export today (collector/main.c,
 * aggregator/main.c and agg_api.c, alerter/main.c). Spool depth and consumer lag are looked
 * up from a list of names because the daemons add them as they grow; a daemon without one
 * shows "-" rather than a made-up zero.
 */
#include "ctl_status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_args.h"
#include "ctl_table.h"
#include "tc_error.h"

static const char *const kind_names[CTL_KIND_COUNT] = {"collector", "aggregator", "alerter"};

const char *ctl_kind_name(ctl_kind_t kind)
{
    return (unsigned)kind < CTL_KIND_COUNT ? kind_names[kind] : "daemon";
}

int ctl_kind_parse(const char *s, ctl_kind_t *out)
{
    for (int i = 0; s && i < CTL_KIND_COUNT; i++) {
        size_t n = strlen(kind_names[i]);
        /* "collector" and "collectors" both */
        if (strncmp(s, kind_names[i], n) == 0 && (s[n] == '\0' || (s[n] == 's' && !s[n + 1]))) {
            *out = (ctl_kind_t)i;
            return 0;
        }
    }
    return TC_EINVAL;
}

static const ctl_figure_t collector_figures[] = {
    {"received", "tocsin_collector_events_received_total", NULL},
    {"accepted", "tocsin_collector_events_accepted_total", NULL},
    {"rejected", "tocsin_collector_batches_rejected_total", NULL},
    {"retry-after", "tocsin_collector_batches_retry_after_total", NULL},
    {"rate-limited", "tocsin_collector_rate_limited_events_total", NULL},
    {"delivery-failed", "tocsin_collector_delivery_failures_total", NULL},
    {"spooled", "tocsin_collector_spooled_events_total", NULL},
    {"in-flight", "tocsin_collector_inflight_batches", NULL},
    {"client-dropped", "tocsin_collector_client_dropped_total", NULL},
    {NULL, NULL, NULL},
};

static const ctl_figure_t aggregator_figures[] = {
    {"consumed", "tocsin_aggregator_events_consumed_total", NULL},
    {"applied", "tocsin_aggregator_events_applied_total", NULL},
    {"duplicates", "tocsin_aggregator_duplicates_total", NULL},
    {"late", "tocsin_aggregator_late_events_total", NULL},
    {"decode-errors", "tocsin_aggregator_decode_errors_total", NULL},
    {"partitions", "tocsin_aggregator_assigned_partitions", NULL},
    {"owed", "tocsin_aggregator_states_owed", NULL},
    {"view-lag-s", "tocsin_aggregator_view_lag_seconds", NULL},
    {"records-lost", "tocsin_aggregator_records_lost_total", NULL},
    {"owed", "tocsin_aggregator_rollups_owed", NULL},
    {NULL, NULL, NULL},
};

/* The alerter renamed some of its metrics as it grew: where two entries share a label,
 * the first one the daemon exports is shown. */
static const ctl_figure_t alerter_figures[] = {
    {"rollups", "tocsin_alerter_rollups_consumed_total", NULL},
    {"rules", "tocsin_alerter_rules_loaded", NULL},
    {"firing", "tocsin_alerter_alerts", "state=firing"},
    {"pending", "tocsin_alerter_alerts", "state=pending"},
    {"acknowledged", "tocsin_alerter_alerts", "state=acknowledged"},
    {"delivered", "tocsin_alerter_notifications", "status=delivered"},
    {"delivered", "tocsin_alerter_notifications_total", "status=delivered"},
    {"undelivered", "tocsin_alerter_notifications", "status=undelivered"},
    {"failed", "tocsin_alerter_notifications_total", "status=failed"},
    {"sending", "tocsin_alerter_attempts_in_flight", NULL},
    {"outbox", "tocsin_alerter_outbox_pending", NULL},
    {NULL, NULL, NULL},
};

const ctl_figure_t *ctl_status_figures(ctl_kind_t kind)
{
    switch (kind) {
    case CTL_KIND_COLLECTOR:
        return collector_figures;
    case CTL_KIND_AGGREGATOR:
        return aggregator_figures;
    case CTL_KIND_ALERTER:
        return alerter_figures;
    }
    static const ctl_figure_t none[] = {{NULL, NULL, NULL}};
    return none;
}

static const char *const collector_spool[] = {"tocsin_collector_spool_entries", NULL};
static const char *const no_metrics[] = {NULL};
static const char *const aggregator_lag[] = {"tocsin_aggregator_consumer_lag",
                                             "tocsin_aggregator_consumer_lag_messages",
                                             "tocsin_aggregator_lag_records", NULL};
static const char *const alerter_lag[] = {"tocsin_alerter_consumer_lag",
                                          "tocsin_alerter_consumer_lag_messages",
                                          "tocsin_alerter_lag_records", NULL};

const char *const *ctl_status_spool_metrics(ctl_kind_t kind)
{
    return kind == CTL_KIND_COLLECTOR ? collector_spool : no_metrics;
}

const char *const *ctl_status_lag_metrics(ctl_kind_t kind)
{
    switch (kind) {
    case CTL_KIND_AGGREGATOR:
        return aggregator_lag;
    case CTL_KIND_ALERTER:
        return alerter_lag;
    default:
        return no_metrics;
    }
}

static json_t *first_metric(const ctl_prom_t *prom, const char *const *names)
{
    for (size_t i = 0; prom && names[i]; i++) {
        double v;
        if (ctl_prom_sum(prom, names[i], NULL, &v)) {
            return json_real(v);
        }
    }
    return json_null();
}

/* A JSON number: integers as integers (counters print without ".0"). */
static json_t *number(double v)
{
    if (isfinite(v) && v == floor(v) && fabs(v) < 9e15) {
        return json_integer((json_int_t)v);
    }
    return json_real(v);
}

json_t *ctl_status_record(ctl_kind_t kind, const char *endpoint, const ctl_http_req_t *live,
                          const ctl_http_req_t *ready, const ctl_http_req_t *metrics)
{
    json_t *rec = json_object();
    if (!rec) {
        return NULL;
    }
    bool up = live->transport == 0 && live->status == 200;
    bool is_ready = ready->transport == 0 && ready->status == 200;
    json_object_set_new(rec, "kind", json_string(ctl_kind_name(kind)));
    json_object_set_new(rec, "endpoint", json_string(endpoint));
    json_object_set_new(rec, "up", json_boolean(up));
    json_object_set_new(rec, "ready", json_boolean(is_ready));

    json_t *ready_doc =
        ready->transport == 0 && ready->data ? json_loadb(ready->data, ready->len, 0, NULL) : NULL;
    json_t *live_doc =
        live->transport == 0 && live->data ? json_loadb(live->data, live->len, 0, NULL) : NULL;
    const char *status = "unknown";
    if (live->transport != 0 && ready->transport != 0) {
        status = "unreachable";
    } else if (json_is_object(ready_doc) && json_is_string(json_object_get(ready_doc, "status"))) {
        status = json_string_value(json_object_get(ready_doc, "status"));
    }
    json_object_set_new(rec, "status", json_string(status));
    const char *version = json_string_value(json_object_get(ready_doc, "version"));
    if (!version) {
        version = json_string_value(json_object_get(live_doc, "version"));
    }
    json_object_set_new(rec, "version", version ? json_string(version) : json_null());
    json_t *deps = json_object_get(ready_doc, "dependencies");
    json_object_set_new(rec, "dependencies",
                        json_is_object(deps) ? json_deep_copy(deps) : json_object());

    char err[600] = "";
    if (live->transport != 0) {
        ctl_http_describe(live, ctl_kind_name(kind), "GET /health/live", err, sizeof(err));
    } else if (live->status != 200) {
        ctl_http_describe(live, ctl_kind_name(kind), "GET /health/live", err, sizeof(err));
    } else if (ready->transport != 0) {
        ctl_http_describe(ready, ctl_kind_name(kind), "GET /health/ready", err, sizeof(err));
    } else if (!json_is_object(ready_doc)) {
        snprintf(err, sizeof(err), "/health/ready answered HTTP %ld without a JSON report",
                 ready->status);
    }
    json_object_set_new(rec, "error", err[0] ? json_string(err) : json_null());

    ctl_prom_t *prom = NULL;
    if (metrics && metrics->transport == 0 && metrics->status == 200 && metrics->data) {
        prom = ctl_prom_parse(metrics->data, metrics->len);
    }
    json_object_set_new(rec, "spool_depth", first_metric(prom, ctl_status_spool_metrics(kind)));
    json_object_set_new(rec, "consumer_lag", first_metric(prom, ctl_status_lag_metrics(kind)));
    json_t *figs = json_object();
    for (const ctl_figure_t *f = ctl_status_figures(kind); figs && f->label; f++) {
        double v;
        if (!json_object_get(figs, f->label) && ctl_prom_sum(prom, f->metric, f->match, &v)) {
            json_object_set_new(figs, f->label, number(v));
        }
    }
    json_object_set_new(rec, "figures", figs ? figs : json_object());
    json_object_set_new(rec, "metrics_readable", json_boolean(prom != NULL));
    ctl_prom_destroy(&prom);
    json_decref(ready_doc);
    json_decref(live_doc);
    return rec;
}

int ctl_status_exit_code(const json_t *records)
{
    int code = CTL_EXIT_OK;
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        const char *status = json_string_value(json_object_get(r, "status"));
        if (status && strcmp(status, "unreachable") == 0) {
            return CTL_EXIT_UNREACHABLE;
        }
        if (!json_is_true(json_object_get(r, "ready")) || !json_is_true(json_object_get(r, "up"))) {
            code = CTL_EXIT_PROBLEM;
        }
    }
    return code;
}

void ctl_fmt_count(double v, char *buf, size_t len)
{
    double a = fabs(v);
    if (!isfinite(v)) {
        snprintf(buf, len, "%g", v);
    } else if (a < 1000) {
        if (v == floor(v)) {
            snprintf(buf, len, "%.0f", v);
        } else {
            snprintf(buf, len, "%.3g", v);
        }
    } else if (a < 1e6) {
        snprintf(buf, len, "%.3gk", v / 1e3);
    } else if (a < 1e9) {
        snprintf(buf, len, "%.3gM", v / 1e6);
    } else {
        snprintf(buf, len, "%.3gG", v / 1e9);
    }
}

static void fmt_json_count(const json_t *v, char *buf, size_t len)
{
    if (json_is_number(v)) {
        ctl_fmt_count(json_number_value(v), buf, len);
    } else {
        snprintf(buf, len, "-");
    }
}

char *ctl_status_render(const json_t *records, size_t width)
{
    static const char *const headers[] = {"KIND",    "ENDPOINT", "UP",  "READY",
                                          "VERSION", "SPOOL",    "LAG", "FIGURES"};
    static const ctl_align_t aligns[] = {CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT, CTL_ALIGN_LEFT,
                                         CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT, CTL_ALIGN_LEFT};
    ctl_table_t *t = ctl_table_new(8, headers, aligns);
    if (!t) {
        return NULL;
    }
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        char spool[32], lag[32], figs[1024] = "";
        fmt_json_count(json_object_get(r, "spool_depth"), spool, sizeof(spool));
        fmt_json_count(json_object_get(r, "consumer_lag"), lag, sizeof(lag));
        const char *k;
        json_t *v;
        size_t o = 0;
        json_object_foreach(json_object_get(r, "figures"), k, v)
        {
            char num[32];
            fmt_json_count(v, num, sizeof(num));
            int n = snprintf(figs + o, sizeof(figs) - o, "%s%s %s", o ? ", " : "", k, num);
            if (n < 0 || (size_t)n >= sizeof(figs) - o) {
                break;
            }
            o += (size_t)n;
        }
        bool up = json_is_true(json_object_get(r, "up"));
        const char *status = json_string_value(json_object_get(r, "status"));
        ctl_table_add(t, json_string_value(json_object_get(r, "kind")));
        ctl_table_add(t, json_string_value(json_object_get(r, "endpoint")));
        ctl_table_add(t, up ? "yes" : "NO");
        ctl_table_add(t, json_is_true(json_object_get(r, "ready"))
                             ? status
                             : (status && strcmp(status, "unreachable") == 0 ? "-" : "NOT READY"));
        ctl_table_add(t, json_string_value(json_object_get(r, "version")));
        ctl_table_add(t, spool);
        ctl_table_add(t, lag);
        ctl_table_add(t, o ? figs : (up ? "(no metrics)" : "-"));
    }
    char *table = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    if (!table) {
        return NULL;
    }
    /* Then the details worth a look: unreachable daemons and unhealthy dependencies. */
    size_t cap = strlen(table) + 1;
    char *out = malloc(cap);
    if (!out) {
        free(table);
        return NULL;
    }
    memcpy(out, table, cap);
    free(table);
    size_t len = cap - 1;
    json_array_foreach(records, i, r)
    {
        char line[1200];
        const char *ep = json_string_value(json_object_get(r, "endpoint"));
        const char *kind = json_string_value(json_object_get(r, "kind"));
        const char *err = json_string_value(json_object_get(r, "error"));
        char clean[1100];
        int n = 0;
        if (err) {
            ctl_text_clean(err, clean, sizeof(clean));
            n = snprintf(line, sizeof(line), "! %s\n", clean);
        }
        const char *dname;
        json_t *dep;
        json_object_foreach(json_object_get(r, "dependencies"), dname, dep)
        {
            const char *st = json_string_value(json_object_get(dep, "status"));
            if (!st || strcmp(st, "healthy") == 0) {
                continue;
            }
            const char *detail = json_string_value(json_object_get(dep, "detail"));
            char d[600];
            snprintf(d, sizeof(d), "%s %s %s: %s: %s", kind, ep, dname, st, detail ? detail : "");
            ctl_text_clean(d, clean, sizeof(clean));
            n += snprintf(line + n, sizeof(line) - (size_t)n, "! %s\n", clean);
            if ((size_t)n >= sizeof(line)) {
                n = (int)sizeof(line) - 1;
                break;
            }
        }
        if (n > 0) {
            char *grown = realloc(out, len + (size_t)n + 1);
            if (!grown) {
                free(out);
                return NULL;
            }
            out = grown;
            memcpy(out + len, line, (size_t)n + 1);
            len += (size_t)n;
        }
    }
    return out;
}
