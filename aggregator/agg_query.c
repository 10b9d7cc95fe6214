#include "agg_query.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/event.pb-c.h"

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
        return bad(bad_param, "window", err, errlen, "window must be at most 31d");
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
    p->to_s = agg_bucket_align(now_us, AGG_BUCKET_WIDTH_S) + AGG_BUCKET_WIDTH_S;
    p->from_s = p->to_s - p->window_s;
    p->step_s = p->window_s;
    p->npoints = 1;
    return 0;
}

int agg_time_parse(const char *s, int64_t now_us, int64_t *out_us)
{
    if (!s || !*s) {
        return TC_EINVAL;
    }
    if (strcmp(s, "now") == 0) {
        *out_us = now_us;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno == 0 && end != s && *end == '\0') {
        if (!(v >= -1e11 && v <= 1e11)) {
            return TC_EINVAL;
        }
        *out_us = (int64_t)llround(v * 1e6);
        return 0;
    }
    int64_t ms = 0;
    if (tc_duration_parse(s, &ms) != 0 || ms > (int64_t)AGG_QUERY_MAX_WINDOW_S * 1000 * 12) {
        return TC_EINVAL;
    }
    *out_us = now_us - ms * 1000;
    return 0;
}

static int64_t floor_to(int64_t v, int64_t m)
{
    int64_t q = v / m;
    if (v % m < 0) {
        q--;
    }
    return q * m;
}

int agg_range_params_parse(agg_query_params_t *p, const char *service, const char *name,
                           const char *from, const char *to, const char *step,
                           const char *environment, const char *q, int64_t now_us,
                           const char **bad_param, char *err, size_t errlen)
{
    /* The shared checks, with a stand-in window. */
    int rc = agg_query_params_parse(p, service, name, "10s", environment, q, now_us, bad_param, err,
                                    errlen);
    if (rc != 0) {
        return rc;
    }
    p->window = NULL;
    int64_t from_us = 0, to_us = 0, step_ms = 0;
    if (!from || agg_time_parse(from, now_us, &from_us) != 0) {
        return bad(bad_param, "from", err, errlen,
                   "from is required: Unix seconds, now, or a duration before now such as 1h");
    }
    if (!to || agg_time_parse(to, now_us, &to_us) != 0) {
        return bad(bad_param, "to", err, errlen,
                   "to is required: Unix seconds, now, or a duration before now such as 5m");
    }
    if (!step || tc_duration_parse(step, &step_ms) != 0 || step_ms <= 0 ||
        step_ms % ((int64_t)AGG_BUCKET_WIDTH_S * 1000) != 0) {
        return bad(bad_param, "step", err, errlen,
                   "step is required: a duration that is a multiple of 10s");
    }
    if (to_us <= from_us) {
        return bad(bad_param, "to", err, errlen, "to must be after from");
    }
    if (to_us - from_us > (int64_t)AGG_QUERY_MAX_WINDOW_S * 1000000) {
        return bad(bad_param, "from", err, errlen, "from and to must be at most 31d apart");
    }
    int64_t step_s = step_ms / 1000;
    int64_t from_s =
        floor_to(from_us / 1000000 - (from_us % 1000000 < 0 ? 1 : 0), AGG_BUCKET_WIDTH_S);
    int64_t span = (to_us + 999999) / 1000000 - from_s;
    int64_t n = (span + step_s - 1) / step_s;
    if (n > AGG_QUERY_MAX_POINTS) {
        return bad(bad_param, "step", err, errlen, "too many points: at most 11000 per query");
    }
    p->step_s = step_s;
    p->npoints = (size_t)n;
    p->from_s = from_s;
    p->to_s = from_s + n * step_s;
    p->window_s = step_s;
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

/* The users of many buckets are merged into a dense set: each merge costs the size of what
 * is added, instead of the size of what was merged so far. */
static int acc_dense(agg_query_acc_t *acc)
{
    return acc->total.users.regs ? 0 : tc_hll_make_dense(&acc->total.users);
}

void agg_query_acc_fini(agg_query_acc_t *acc)
{
    agg_bucket_fini(&acc->total);
}

int agg_query_add(agg_query_acc_t *acc, const agg_bucket_t *b)
{
    if (b->count == 0 && b->late == 0) {
        return 0;
    }
    if (acc->total.kind != AGG_KIND_NONE && acc->total.kind != b->kind) {
        acc->skipped++;
        return 0;
    }
    if (!tc_hll_empty(&b->users) && acc_dense(acc) != 0) {
        return TC_ENOMEM;
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

int agg_query_add_stored(agg_query_acc_t *acc, const uint8_t *data, size_t len)
{
    if (acc_dense(acc) != 0) {
        return TC_ENOMEM;
    }
    size_t before = acc->total.count + acc->total.late;
    int rc = agg_bucket_store_merge(&acc->total, data, len);
    if (rc == TC_EINVAL && acc->total.kind != AGG_KIND_NONE && len >= 2 &&
        data[1] != (uint8_t)acc->total.kind) {
        acc->skipped++; /* another kind: left out, as agg_query_add does */
        return 0;
    }
    if (rc == 0 && acc->total.count + acc->total.late > before) {
        acc->buckets++;
    }
    return rc;
}

/* Sets a number, or null for NaN and infinities (JSON has neither). */
static void set_real(json_t *doc, const char *key, double v)
{
    json_object_set_new(doc, key, isfinite(v) ? json_real(v) : json_null());
}

/* The figures of one merged bucket, added to `doc`; `span_s` divides the rate. */
static int figures(json_t *doc, const agg_query_params_t *p, const agg_query_acc_t *acc,
                   int64_t span_s)
{
    const agg_bucket_t *t = &acc->total;
    bool any = t->count > 0;
    json_t *qs = json_object();
    if (!qs) {
        return TC_ENOMEM;
    }
    json_object_set_new(
        doc, "kind", t->kind != AGG_KIND_NONE ? json_string(agg_kind_name(t->kind)) : json_null());
    json_object_set_new(doc, "count", json_integer((json_int_t)t->count));
    json_object_set_new(doc, "errors", json_integer((json_int_t)t->errors));
    set_real(doc, "error_rate", any ? (double)t->errors / (double)t->count : 0.0);
    set_real(doc, "rate_per_s", (double)t->count / (double)span_s);
    bool has_users = t->kind == AGG_KIND_REQUESTS || t->kind == AGG_KIND_ERRORS;
    json_object_set_new(
        doc, "users", has_users ? json_integer((json_int_t)tc_hll_count(&t->users)) : json_null());
    json_object_set_new(doc, "late", json_integer((json_int_t)t->late));
    /* Sampled events are counted with their weights: count, errors, slow, the quantiles and
     * sums are estimates when `sampled` is true, exact otherwise. */
    json_object_set_new(doc, "sampled", json_boolean(t->sampled_events > 0));
    json_object_set_new(doc, "sampled_events", json_integer((json_int_t)t->sampled_events));
    json_object_set_new(doc, "sampled_count", json_integer((json_int_t)t->sampled_count));
    json_object_set_new(doc, "buckets", json_integer((json_int_t)acc->buckets));
    /* Request sketches hold microseconds; the API answers milliseconds. */
    double scale = t->kind == AGG_KIND_REQUESTS ? 1e-3 : 1.0;
    for (size_t i = 0; i < p->nq; i++) {
        double v = tc_sketch_quantile(&t->sketch, p->q[i]);
        json_object_set_new(qs, p->qkey[i], isnan(v) ? json_null() : json_real(v * scale));
    }
    json_object_set_new(doc, "quantiles", qs);
    if (t->kind == AGG_KIND_REQUESTS) {
        json_t *slow = json_object();
        if (!slow) {
            return TC_ENOMEM;
        }
        for (uint32_t i = 0; i < t->nslo; i++) {
            char name[32];
            tc_duration_format((int64_t)(t->slo_us[i] / 1000), name, sizeof(name));
            if (t->slo_us[i] % 1000 != 0) {
                snprintf(name, sizeof(name), "%lluus", (unsigned long long)t->slo_us[i]);
            }
            json_object_set_new(slow, name, json_integer((json_int_t)t->slow[i]));
        }
        json_object_set_new(doc, "slow", slow);
    }
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
    return 0;
}

static json_t *head(const agg_query_params_t *p)
{
    json_t *doc = json_object();
    if (!doc) {
        return NULL;
    }
    json_object_set_new(doc, "service", json_string(p->service));
    json_object_set_new(doc, "name", json_string(p->name));
    json_object_set_new(doc, "environment",
                        p->environment ? json_string(p->environment) : json_null());
    return doc;
}

json_t *agg_query_json(const agg_query_params_t *p, const agg_query_acc_t *acc)
{
    json_t *doc = head(p);
    if (!doc) {
        return NULL;
    }
    json_object_set_new(doc, "window", json_string(p->window ? p->window : ""));
    json_object_set_new(doc, "window_s", json_integer(p->window_s));
    json_object_set_new(doc, "from", json_integer(p->from_s));
    json_object_set_new(doc, "to", json_integer(p->to_s));
    if (figures(doc, p, acc, p->window_s) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

json_t *agg_range_json(const agg_query_params_t *p, const agg_query_acc_t *accs)
{
    json_t *doc = head(p);
    json_t *points = json_array();
    if (!doc || !points) {
        json_decref(doc);
        json_decref(points);
        return NULL;
    }
    json_object_set_new(doc, "from", json_integer(p->from_s));
    json_object_set_new(doc, "to", json_integer(p->to_s));
    json_object_set_new(doc, "step", json_integer(p->step_s));
    json_object_set_new(doc, "points", points);
    for (size_t i = 0; i < p->npoints; i++) {
        json_t *pt = json_object();
        if (!pt || json_array_append_new(points, pt) != 0) {
            json_decref(doc);
            return NULL;
        }
        json_object_set_new(pt, "t", json_integer(p->from_s + (int64_t)i * p->step_s));
        if (figures(pt, p, &accs[i], p->step_s) != 0) {
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}

/* A JSON string from outside data: null unless it is UTF-8 (jansson refuses other bytes). */
static json_t *jstr(const char *s, size_t n)
{
    if (!s) {
        return json_null();
    }
    json_t *j = json_stringn(s, n);
    return j ? j : json_null();
}

static json_t *jcstr(const char *s)
{
    return jstr(s, s ? strlen(s) : 0);
}

static json_t *jtime(int64_t us)
{
    char buf[32];
    tc_time_format_rfc3339(us, buf);
    return json_string(buf);
}

static json_t *sample_json(const uint8_t *data, size_t len)
{
    Tocsin__V1__Event *ev = tocsin__v1__event__unpack(NULL, len, data);
    if (!ev) {
        return json_null();
    }
    json_t *doc = json_object();
    if (!doc) {
        tocsin__v1__event__free_unpacked(ev, NULL);
        return NULL;
    }
    char id[2 * 16 + 1] = "";
    if (ev->event_id.len == 16) {
        tc_hex(ev->event_id.data, 16, id);
    }
    json_object_set_new(doc, "event_id", json_string(id));
    json_object_set_new(doc, "time", jtime(ev->time_us));
    json_object_set_new(doc, "time_us", json_integer(ev->time_us));
    json_object_set_new(doc, "environment", jcstr(ev->environment));
    json_object_set_new(doc, "release", jcstr(ev->release));
    json_object_set_new(doc, "host", jcstr(ev->host));
    json_object_set_new(doc, "trace_id", jcstr(ev->trace_id));
    json_object_set_new(doc, "user_id", jcstr(ev->user_id));
    json_t *tags = json_object();
    for (size_t i = 0; tags && i < ev->n_tags; i++) {
        /* jansson refuses a key that is not UTF-8 (and frees the value). */
        if (ev->tags[i]->key) {
            json_object_set_new(tags, ev->tags[i]->key, jcstr(ev->tags[i]->value));
        }
    }
    json_object_set_new(doc, "tags", tags ? tags : json_null());
    if (ev->body_case == TOCSIN__V1__EVENT__BODY_ERROR && ev->error) {
        const Tocsin__V1__ErrorEvent *e = ev->error;
        json_t *err = json_object();
        json_t *frames = json_array();
        if (err && frames) {
            json_object_set_new(err, "type", jcstr(e->type));
            json_object_set_new(err, "message", jcstr(e->message));
            json_object_set_new(err, "level", json_string(agg_level_name(e->level)));
            json_object_set_new(err, "mechanism", jcstr(e->mechanism));
            for (size_t i = 0; i < e->n_frames; i++) {
                const Tocsin__V1__Frame *f = e->frames[i];
                json_array_append_new(
                    frames, json_pack("{s:o, s:o, s:o, s:I, s:b}", "function", jcstr(f->function),
                                      "module", jcstr(f->module), "file", jcstr(f->file), "line",
                                      (json_int_t)f->line, "in_app", f->in_app));
            }
            json_object_set_new(err, "frames", frames);
            json_object_set_new(doc, "error", err);
        } else {
            json_decref(err);
            json_decref(frames);
        }
    }
    tocsin__v1__event__free_unpacked(ev, NULL);
    return doc;
}

json_t *agg_issue_json(const agg_issue_t *is, const agg_issue_status_t *st, bool detail)
{
    json_t *doc = json_object();
    json_t *rel = json_array();
    json_t *envs = json_array();
    if (!doc || !rel || !envs) {
        json_decref(doc);
        json_decref(rel);
        json_decref(envs);
        return NULL;
    }
    for (uint32_t i = 0; i < is->nreleases; i++) {
        json_array_append_new(rel, jcstr(is->releases[i]));
    }
    for (uint32_t i = 0; i < is->nenvs; i++) {
        json_array_append_new(envs, jcstr(is->envs[i]));
    }
    agg_status_t status = st && st->status ? st->status : AGG_STATUS_UNRESOLVED;
    json_object_set_new(doc, "id", jcstr(is->id));
    json_object_set_new(doc, "service", jcstr(is->service));
    json_object_set_new(doc, "status", json_string(agg_status_name(status)));
    json_object_set_new(doc, "status_updated",
                        st && st->updated_us ? jtime(st->updated_us) : json_null());
    json_object_set_new(doc, "status_updated_by",
                        st && st->updated_us ? jcstr(st->updated_by) : json_null());
    json_object_set_new(doc, "type", jcstr(is->type));
    json_object_set_new(doc, "message", jcstr(is->message));
    json_object_set_new(doc, "culprit", jcstr(is->culprit));
    json_object_set_new(doc, "level", json_string(agg_level_name(is->level)));
    json_object_set_new(doc, "count", json_integer((json_int_t)is->count));
    json_object_set_new(doc, "users", json_integer((json_int_t)tc_hll_count(&is->users)));
    json_object_set_new(doc, "first_seen", jtime(is->first_seen_us));
    json_object_set_new(doc, "last_seen", jtime(is->last_seen_us));
    json_object_set_new(doc, "first_seen_us", json_integer(is->first_seen_us));
    json_object_set_new(doc, "last_seen_us", json_integer(is->last_seen_us));
    json_object_set_new(doc, "releases", rel);
    json_object_set_new(doc, "releases_truncated", json_boolean(is->releases_truncated));
    json_object_set_new(doc, "last_release", jcstr(is->last_release));
    json_object_set_new(doc, "environments", envs);
    if (detail) {
        json_object_set_new(doc, "sample",
                            is->sample ? sample_json(is->sample, is->sample_len) : json_null());
    }
    return doc;
}

json_t *agg_log_json(int64_t time_us, const agg_log_t *l)
{
    json_t *fields = json_object();
    json_t *doc = json_object();
    if (!fields || !doc) {
        json_decref(fields);
        json_decref(doc);
        return NULL;
    }
    for (uint32_t i = 0; i < l->nfields; i++) {
        char *k = strndup(l->keys[i].p, l->keys[i].n);
        if (k) {
            json_object_set_new(fields, k, jstr(l->values[i].p, l->values[i].n));
            free(k);
        }
    }
    json_object_set_new(doc, "time", jtime(time_us));
    json_object_set_new(doc, "time_us", json_integer(time_us));
    json_object_set_new(doc, "level", json_string(agg_level_name(l->level)));
    json_object_set_new(doc, "message", jstr(l->message.p, l->message.n));
    json_object_set_new(doc, "logger", jstr(l->logger.p, l->logger.n));
    json_object_set_new(doc, "environment", jstr(l->environment.p, l->environment.n));
    json_object_set_new(doc, "release", jstr(l->release.p, l->release.n));
    json_object_set_new(doc, "host", jstr(l->host.p, l->host.n));
    json_object_set_new(doc, "fields", fields);
    return doc;
}
