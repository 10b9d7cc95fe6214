#include "agg_query.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

static const double default_q[] = {0.5, 0.95, 0.99};

static int bad(const char **bad_param, const char *param, char *err, size_t errlen, const char *why)
{
    *bad_param = param;
    snprintf(err, errlen, "%s", why);
    return TC_EINVAL;
}

static bool text_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n > 0 && n <= max && tc_utf8_valid(s, n);
}

static int add_q(agg_query_params_t *p, double v)
{
    if (p->nq >= AGG_QUERY_MAX_Q) {
        return TC_ETOOBIG;
    }
    p->q[p->nq] = v;
    snprintf(p->qkey[p->nq], sizeof(p->qkey[p->nq]), "%g", v);
    p->nq++;
    return 0;
}

static int parse_q(agg_query_params_t *p, const char *text, char *err, size_t errlen)
{
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char item[32];
        if (n == 0 || n >= sizeof(item)) {
            snprintf(err, errlen, "q must be a comma-separated list of numbers in [0, 1]");
            return TC_EINVAL;
        }
        memcpy(item, s, n);
        item[n] = '\0';
        char *end = NULL;
        errno = 0;
        double v = strtod(item, &end);
        if (errno != 0 || end == item || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
            snprintf(err, errlen, "quantile '%s' is not a number in [0, 1]", item);
            return TC_EINVAL;
        }
        if (add_q(p, v) != 0) {
            snprintf(err, errlen, "at most %d quantiles", AGG_QUERY_MAX_Q);
            return TC_EINVAL;
        }
        if (!comma) {
            return 0;
        }
        s = comma + 1;
    }
}

int agg_query_params_parse(agg_query_params_t *p, const char *service, const char *name,
                           const char *window, const char *environment, const char *q,
                           int64_t now_us, const char **bad_param, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (!service || !*service) {
        return bad(bad_param, "service", err, errlen, "service is required");
    }
    if (!text_ok(service, AGG_MAX_SERVICE)) {
        return bad(bad_param, "service", err, errlen, "service must be UTF-8 of at most 256 bytes");
    }
    if (!name || !*name) {
        return bad(bad_param, "name", err, errlen,
                   "name is required (a route, a metric, "
                   "$errors, or * for every request series)");
    }
    if (!text_ok(name, AGG_MAX_NAME)) {
        return bad(bad_param, "name", err, errlen, "name must be UTF-8 of at most 1024 bytes");
    }
    if (!window || !*window) {
        return bad(bad_param, "window", err, errlen, "window is required, e.g. 5m");
    }
    int64_t ms = 0;
    if (tc_duration_parse(window, &ms) != 0 || ms <= 0) {
        return bad(bad_param, "window", err, errlen,
                   "window must be a duration such as 30s, 5m, 1h or 1d");
    }
    if (ms > (int64_t)AGG_QUERY_MAX_WINDOW_S * 1000) {
        return bad(bad_param, "window", err, errlen, "window must be at most 30d");
    }
    if (environment && *environment && !text_ok(environment, AGG_MAX_ENVIRONMENT)) {
        return bad(bad_param, "environment", err, errlen,
                   "environment must be UTF-8 of at most 256 bytes");
    }
    if (q) {
        if (parse_q(p, q, err, errlen) != 0) {
            *bad_param = "q";
            return TC_EINVAL;
        }
    } else {
        for (size_t i = 0; i < sizeof(default_q) / sizeof(default_q[0]); i++) {
            add_q(p, default_q[i]);
        }
    }
    const int64_t width_ms = (int64_t)AGG_BUCKET_WIDTH_S * 1000;
    p->service = service;
    p->name = name;
    p->environment = environment && *environment ? environment : NULL;
    p->window = window;
    p->window_s = (ms + width_ms - 1) / width_ms * AGG_BUCKET_WIDTH_S;
    p->to_s = agg_bucket_align(now_us) + AGG_BUCKET_WIDTH_S;
    p->from_s = p->to_s - p->window_s;
    return 0;
}

bool agg_query_wants(const agg_query_params_t *p, agg_kind_t kind)
{
    if (strcmp(p->name, AGG_QUERY_ALL) == 0) {
        return kind == AGG_KIND_REQUESTS;
    }
    return kind != AGG_KIND_NONE;
}

void agg_query_acc_init(agg_query_acc_t *acc)
{
    memset(acc, 0, sizeof(*acc));
    agg_bucket_init(&acc->total);
}

void agg_query_acc_fini(agg_query_acc_t *acc)
{
    agg_bucket_fini(&acc->total);
}

int agg_query_add(agg_query_acc_t *acc, const agg_bucket_t *b)
{
    if (b->count == 0) {
        return 0;
    }
    if (acc->total.kind != AGG_KIND_NONE && acc->total.kind != b->kind) {
        acc->skipped++;
        return 0;
    }
    int rc = agg_bucket_merge(&acc->total, b);
    if (rc == TC_EINVAL) {
        acc->skipped++;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    acc->buckets++;
    return 0;
}

/* Sets a number, or null for NaN and infinities (JSON has neither). */
static void set_real(json_t *doc, const char *key, double v)
{
    json_object_set_new(doc, key, isfinite(v) ? json_real(v) : json_null());
}

json_t *agg_query_json(const agg_query_params_t *p, const agg_query_acc_t *acc)
{
    const agg_bucket_t *t = &acc->total;
    bool any = t->count > 0;
    json_t *doc = json_object();
    json_t *qs = json_object();
    if (!doc || !qs) {
        json_decref(doc);
        json_decref(qs);
        return NULL;
    }
    json_object_set_new(doc, "service", json_string(p->service));
    json_object_set_new(doc, "name", json_string(p->name));
    json_object_set_new(doc, "environment",
                        p->environment ? json_string(p->environment) : json_null());
    json_object_set_new(doc, "window", json_string(p->window));
    json_object_set_new(doc, "window_s", json_integer(p->window_s));
    json_object_set_new(doc, "from", json_integer(p->from_s));
    json_object_set_new(doc, "to", json_integer(p->to_s));
    json_object_set_new(doc, "kind", any ? json_string(agg_kind_name(t->kind)) : json_null());
    json_object_set_new(doc, "count", json_integer((json_int_t)t->count));
    json_object_set_new(doc, "errors", json_integer((json_int_t)t->errors));
    set_real(doc, "error_rate", any ? (double)t->errors / (double)t->count : 0.0);
    set_real(doc, "rate_per_s", (double)t->count / (double)p->window_s);
    json_object_set_new(doc, "late", json_integer((json_int_t)t->late));
    json_object_set_new(doc, "buckets", json_integer((json_int_t)acc->buckets));
    /* Request sketches hold microseconds; the API answers milliseconds. */
    double scale = t->kind == AGG_KIND_REQUESTS ? 1e-3 : 1.0;
    for (size_t i = 0; i < p->nq; i++) {
        double v = tc_sketch_quantile(&t->sketch, p->q[i]);
        json_object_set_new(qs, p->qkey[i], isnan(v) ? json_null() : json_real(v * scale));
    }
    json_object_set_new(doc, "quantiles", qs);
    if (any &&
        (t->kind == AGG_KIND_COUNTER || t->kind == AGG_KIND_GAUGE || t->kind == AGG_KIND_TIMING)) {
        if (t->kind != AGG_KIND_GAUGE) {
            set_real(doc, "sum", t->sum);
        }
        if (t->kind != AGG_KIND_COUNTER) {
            set_real(doc, "min", t->min);
            set_real(doc, "max", t->max);
        }
        if (t->kind == AGG_KIND_GAUGE) {
            set_real(doc, "last", t->last);
        }
    }
    return doc;
}
