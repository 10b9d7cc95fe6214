/*
 * Unit tests for common/tc_metrics: what /metrics renders is valid Prometheus text format
 * 0.0.4 (checked by a small parser below), names are validated, and updates from many
 * threads add up exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_metrics.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a checker for the exposition format ---- */

#define MAX_FAMILIES 64
#define MAX_SERIES 64

typedef struct {
    char name[128];
    char type[16];
    bool help, typed, sampled, closed;
} family_t;

typedef struct {
    char key[400]; /* family + labels without le */
    double last_le;
    double last_count;
    bool seen_inf, seen_sum, seen_count;
} hseries_t;

typedef struct {
    family_t fam[MAX_FAMILIES];
    int nfam;
    hseries_t hs[MAX_SERIES];
    int nhs;
    int current; /* family of the previous line, -1 before any */
} expo_t;

static bool is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static family_t *family_get(expo_t *x, const char *name, bool create)
{
    for (int i = 0; i < x->nfam; i++) {
        if (strcmp(x->fam[i].name, name) == 0) {
            return &x->fam[i];
        }
    }
    if (!create) {
        return NULL;
    }
    assert_true(x->nfam < MAX_FAMILIES);
    family_t *f = &x->fam[x->nfam++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

/* Entering family f: the lines of one family must be contiguous. */
static void family_enter(expo_t *x, family_t *f, const char *line)
{
    int idx = (int)(f - x->fam);
    if (x->current == idx) {
        return;
    }
    if (f->closed) {
        fail_msg("family %s continues after another one began: %s", f->name, line);
    }
    if (x->current >= 0) {
        x->fam[x->current].closed = true;
    }
    x->current = idx;
}

static double parse_value(const char *s, const char *line)
{
    if (strcmp(s, "+Inf") == 0) {
        return INFINITY;
    }
    if (strcmp(s, "-Inf") == 0) {
        return -INFINITY;
    }
    if (strcmp(s, "NaN") == 0) {
        return NAN;
    }
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || isinf(v) || isnan(v)) {
        fail_msg("bad sample value \"%s\": %s", s, line);
    }
    return v;
}

/* Parses `{a="x",le="1"}` at *p; writes the labels without le into `rest` and the le
 * value into `le` (empty when absent). Returns the position after '}'. */
static const char *parse_labels(const char *p, char *rest, size_t restlen, char *le, size_t lelen,
                                const char *line)
{
    size_t rn = 0;
    rest[0] = '\0';
    le[0] = '\0';
    assert_int_equal(*p, '{');
    p++;
    while (*p != '}') {
        const char *ns = p;
        if (!is_name_char(*p, true) || *p == ':') {
            fail_msg("bad label name: %s", line);
        }
        while (is_name_char(*p, false) && *p != ':') {
            p++;
        }
        size_t nlen = (size_t)(p - ns);
        if (*p++ != '=' || *p++ != '"') {
            fail_msg("expected =\" after a label name: %s", line);
        }
        char val[256];
        size_t vn = 0;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n') {
                fail_msg("unterminated label value: %s", line);
            }
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n') {
                    fail_msg("bad escape in a label value: %s", line);
                }
            }
            assert_true(vn < sizeof(val) - 1);
            val[vn++] = *p++;
        }
        val[vn] = '\0';
        p++;
        if (nlen == 2 && strncmp(ns, "le", 2) == 0) {
            snprintf(le, lelen, "%s", val);
        } else {
            rn += (size_t)snprintf(rest + rn, restlen - rn, "%s%.*s=%s", rn ? "," : "", (int)nlen,
                                   ns, val);
            assert_true(rn < restlen);
        }
        if (*p == ',') {
            p++;
        } else if (*p != '}') {
            fail_msg("expected , or } in labels: %s", line);
        }
    }
    return p + 1;
}

static hseries_t *hseries_get(expo_t *x, const char *key)
{
    for (int i = 0; i < x->nhs; i++) {
        if (strcmp(x->hs[i].key, key) == 0) {
            return &x->hs[i];
        }
    }
    assert_true(x->nhs < MAX_SERIES);
    hseries_t *h = &x->hs[x->nhs++];
    memset(h, 0, sizeof(*h));
    snprintf(h->key, sizeof(h->key), "%s", key);
    h->last_le = -INFINITY;
    return h;
}

static void check_sample(expo_t *x, const char *line)
{
    char name[128];
    size_t n = 0;
    const char *p = line;
    if (!is_name_char(*p, true)) {
        fail_msg("bad metric name: %s", line);
    }
    while (is_name_char(*p, false)) {
        assert_true(n < sizeof(name) - 1);
        name[n++] = *p++;
    }
    name[n] = '\0';
    char rest[256] = "", le[256] = "";
    if (*p == '{') {
        p = parse_labels(p, rest, sizeof(rest), le, sizeof(le), line);
    }
    if (*p != ' ') {
        fail_msg("expected a space before the value: %s", line);
    }
    double v = parse_value(p + 1, line);

    /* Which family: the name itself, or a histogram's _bucket/_sum/_count. */
    family_t *f = family_get(x, name, false);
    const char *suffix = NULL;
    if (!f) {
        static const char *suffixes[] = {"_bucket", "_sum", "_count"};
        for (size_t i = 0; i < N_ELEMS(suffixes) && !f; i++) {
            size_t sl = strlen(suffixes[i]);
            if (n > sl && strcmp(name + n - sl, suffixes[i]) == 0) {
                char base[128];
                snprintf(base, sizeof(base), "%.*s", (int)(n - sl), name);
                f = family_get(x, base, false);
                if (f && strcmp(f->type, "histogram") == 0) {
                    suffix = suffixes[i];
                } else {
                    f = NULL;
                }
            }
        }
    }
    if (!f || !f->typed) {
        fail_msg("sample without a TYPE line before it: %s", line);
    }
    family_enter(x, f, line);
    f->sampled = true;
    if (strcmp(f->type, "histogram") == 0) {
        if (!suffix) {
            fail_msg("histogram sample without _bucket/_sum/_count: %s", line);
        }
        char key[400];
        snprintf(key, sizeof(key), "%s{%s}", f->name, rest);
        hseries_t *h = hseries_get(x, key);
        if (strcmp(suffix, "_bucket") == 0) {
            if (!le[0]) {
                fail_msg("bucket without le: %s", line);
            }
            double b = parse_value(le, line);
            if (h->seen_inf || !(b > h->last_le)) {
                fail_msg("buckets not in increasing le order: %s", line);
            }
            if (v < h->last_count) {
                fail_msg("buckets not cumulative: %s", line);
            }
            h->last_le = b;
            h->last_count = v;
            h->seen_inf = isinf(b);
        } else if (strcmp(suffix, "_sum") == 0) {
            h->seen_sum = true;
        } else {
            if (!h->seen_inf) {
                fail_msg("_count before the +Inf bucket: %s", line);
            }
            if (v != h->last_count) {
                fail_msg("_count %g differs from the +Inf bucket %g: %s", v, h->last_count, line);
            }
            h->seen_count = true;
        }
    } else if (le[0]) {
        fail_msg("le label outside a histogram: %s", line);
    }
}

/* Fails the test unless `text` is valid exposition format. */
static void check_exposition(const char *text)
{
    expo_t *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    x->current = -1;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fail_msg("last line has no newline: %s", p);
        }
        char line[1024];
        size_t len = (size_t)(nl - p);
        assert_true(len < sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (len == 0) {
            fail_msg("empty line in exposition");
        }
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            bool help = line[2] == 'H';
            const char *s = line + 7;
            char name[128];
            size_t n = 0;
            while (is_name_char(s[n], n == 0)) {
                assert_true(n < sizeof(name) - 1);
                name[n] = s[n];
                n++;
            }
            name[n] = '\0';
            if (n == 0 || (s[n] != ' ' && !(help && s[n] == '\0'))) {
                fail_msg("bad comment line: %s", line);
            }
            family_t *f = family_get(x, name, true);
            family_enter(x, f, line);
            if (f->sampled) {
                fail_msg("HELP/TYPE after samples of %s", name);
            }
            if (help) {
                if (f->help) {
                    fail_msg("second HELP for %s", name);
                }
                f->help = true;
                /* Only \\ and \n escapes are allowed in HELP text. */
                for (const char *h = s + n; *h; h++) {
                    if (*h == '\\') {
                        h++;
                        if (*h != '\\' && *h != 'n') {
                            fail_msg("bad escape in HELP: %s", line);
                        }
                    }
                }
            } else {
                if (f->typed) {
                    fail_msg("second TYPE for %s", name);
                }
                const char *t = s + n + 1;
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                    strcmp(t, "summary") && strcmp(t, "untyped")) {
                    fail_msg("bad TYPE: %s", line);
                }
                snprintf(f->type, sizeof(f->type), "%s", t);
                f->typed = true;
            }
            continue;
        }
        if (line[0] == '#') {
            continue;
        }
        check_sample(x, line);
    }
    for (int i = 0; i < x->nhs; i++) {
        if (!x->hs[i].seen_inf || !x->hs[i].seen_sum || !x->hs[i].seen_count) {
            fail_msg("histogram series %s lacks +Inf, _sum or _count", x->hs[i].key);
        }
    }
    free(x);
}

/* The value of the sample line that starts with `series` followed by a space; false when
 * there is none. Asserts nothing, so threads may call it. */
static bool sample(const char *text, const char *series, double *out)
{
    size_t sl = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, sl) == 0 && p[sl] == ' ') {
            const char *v = p + sl + 1;
            if (strncmp(v, "+Inf\n", 5) == 0) {
                *out = INFINITY;
            } else if (strncmp(v, "-Inf\n", 5) == 0) {
                *out = -INFINITY;
            } else if (strncmp(v, "NaN\n", 4) == 0) {
                *out = NAN;
            } else {
                char *end;
                *out = strtod(v, &end);
                if (end == v || *end != '\n') {
                    return false;
                }
            }
            return true;
        }
    }
    return false;
}

static double sample_must(const char *text, const char *series)
{
    double v;
    if (!sample(text, series, &v)) {
        fail_msg("no sample %s in:\n%s", series, text);
    }
    return v;
}

static size_t count_substr(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* ---- tests ---- */

static double fixed_value(void *ctx)
{
    int *calls = ctx;
    (*calls)++;
    return 42.25;
}

static void test_render(void **state)
{
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    tc_counter_t *events = tc_metrics_counter(m, "t_events_total", NULL, "Events taken in.");
    tc_counter_t *too_big =
        tc_metrics_counter(m, "t_rejected_total", "reason=\"too_big\"", "Events rejected.");
    tc_gauge_t *depth = tc_metrics_gauge(m, "t_queue_depth", NULL, "Queue depth.");
    tc_counter_t *bad_utf8 =
        tc_metrics_counter(m, "t_rejected_total", "reason=\"bad_utf8\"", "ignored help");
    int calls = 0;
    assert_int_equal(
        tc_metrics_gauge_fn(m, "t_uptime_seconds", NULL, "Uptime.", fixed_value, &calls), 0);
    static const double bounds[] = {0.005, 0.1, 0.5, 1};
    tc_histogram_t *ha = tc_metrics_histogram(m, "t_latency_seconds", "route=\"/a\"", "Latency.",
                                              bounds, N_ELEMS(bounds));
    tc_counter_t *last = tc_metrics_counter(m, "t_last_total", "", "Empty labels.");
    tc_histogram_t *hb = tc_metrics_histogram(m, "t_latency_seconds", "route=\"/b\"", "Latency.",
                                              bounds, N_ELEMS(bounds));
    tc_histogram_t *hn = tc_metrics_histogram(m, "t_sizes_bytes", NULL, "No bounds.", NULL, 0);
    assert_non_null(events);
    assert_non_null(too_big);
    assert_non_null(depth);
    assert_non_null(bad_utf8);
    assert_non_null(ha);
    assert_non_null(hb);
    assert_non_null(hn);
    assert_non_null(last);

    tc_counter_add(events, 4);
    tc_counter_inc(events);
    tc_counter_add(too_big, 2);
    tc_counter_add(bad_utf8, 3);
    tc_gauge_set(depth, 12.5);
    tc_gauge_add(depth, -2.5);
    assert_true(tc_gauge_get(depth) == 10.0);
    static const double obs[] = {0.001, 0.005, 0.05, 0.3, 0.3, 7};
    double sum = 0;
    for (size_t i = 0; i < N_ELEMS(obs); i++) {
        tc_histogram_observe(ha, obs[i]);
        sum += obs[i];
    }
    tc_histogram_observe(hb, 2);
    tc_histogram_observe(hb, NAN); /* in no finite bucket, only +Inf */
    tc_histogram_observe(hn, 100);

    char *text = tc_metrics_render(m);
    assert_non_null(text);
    check_exposition(text);
    assert_int_equal(calls, 1);

    assert_true(sample_must(text, "t_events_total") == 5);
    assert_true(sample_must(text, "t_rejected_total{reason=\"too_big\"}") == 2);
    assert_true(sample_must(text, "t_rejected_total{reason=\"bad_utf8\"}") == 3);
    assert_true(sample_must(text, "t_queue_depth") == 10);
    assert_true(sample_must(text, "t_uptime_seconds") == 42.25);
    assert_true(sample_must(text, "t_last_total") == 0);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/a\",le=\"0.005\"}") == 2);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/a\",le=\"0.1\"}") == 3);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/a\",le=\"0.5\"}") == 5);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/a\",le=\"1\"}") == 5);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"}") == 6);
    assert_true(fabs(sample_must(text, "t_latency_seconds_sum{route=\"/a\"}") - sum) < 1e-12);
    assert_true(sample_must(text, "t_latency_seconds_count{route=\"/a\"}") == 6);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/b\",le=\"1\"}") == 0);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/b\",le=\"0.005\"}") == 0);
    assert_true(sample_must(text, "t_latency_seconds_bucket{route=\"/b\",le=\"+Inf\"}") == 2);
    assert_true(isnan(sample_must(text, "t_latency_seconds_sum{route=\"/b\"}")));
    assert_true(sample_must(text, "t_sizes_bytes_bucket{le=\"+Inf\"}") == 1);
    assert_true(sample_must(text, "t_sizes_bytes_count") == 1);

    /* One HELP and TYPE per name, with the first registration's help. */
    assert_int_equal(count_substr(text, "# HELP t_rejected_total "), 1);
    assert_int_equal(count_substr(text, "# TYPE t_rejected_total counter\n"), 1);
    assert_non_null(strstr(text, "# HELP t_rejected_total Events rejected.\n"));
    assert_int_equal(count_substr(text, "# TYPE t_latency_seconds histogram\n"), 1);
    assert_int_equal(count_substr(text, "# TYPE t_queue_depth gauge\n"), 1);
    assert_int_equal(count_substr(text, "# TYPE t_uptime_seconds gauge\n"), 1);
    free(text);

    /* Gauge functions run at every render. */
    text = tc_metrics_render(m);
    assert_non_null(text);
    assert_int_equal(calls, 2);
    free(text);

    tc_metrics_destroy(&m);
    assert_null(m);
    tc_metrics_destroy(&m);
    tc_metrics_destroy(NULL);
}

static void test_empty_registry(void **state)
{
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    char *text = tc_metrics_render(m);
    assert_non_null(text);
    assert_string_equal(text, "");
    free(text);
    tc_metrics_destroy(&m);
}

static double one(void *ctx)
{
    return 1;
}

static void test_invalid_names(void **state)
{
    static const char *bad[] = {
        NULL, "", "1abc", "a-b", "a b", "a.b", "caf\xc3\xa9", "a{b}", "a\"", "a\n", "-",
    };
    static const char *good[] = {"a", "_a", "a1", ":a", "a:b_c:d", "A_Z_total", "x9"};
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    static const double bounds[] = {1};
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        assert_null(tc_metrics_counter(m, bad[i], NULL, "h"));
        assert_null(tc_metrics_gauge(m, bad[i], NULL, "h"));
        assert_int_equal(tc_metrics_gauge_fn(m, bad[i], NULL, "h", one, NULL), TC_EINVAL);
        assert_null(tc_metrics_histogram(m, bad[i], NULL, "h", bounds, 1));
    }
    char *text = tc_metrics_render(m);
    assert_string_equal(text, "");
    free(text);
    for (size_t i = 0; i < N_ELEMS(good); i++) {
        assert_non_null(tc_metrics_counter(m, good[i], NULL, "h"));
    }
    assert_int_equal(tc_metrics_gauge_fn(m, "fn_missing", NULL, "h", NULL, NULL), TC_EINVAL);
    text = tc_metrics_render(m);
    check_exposition(text);
    free(text);
    tc_metrics_destroy(&m);
}

/* A name lives under one TYPE, and a series (name and labels) exists once: anything else
 * would render an exposition Prometheus refuses. */
static void test_conflicting_registrations(void **state)
{
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    static const double bounds[] = {1, 2};
    assert_non_null(tc_metrics_counter(m, "dup_total", "a=\"1\"", "h"));
    assert_non_null(tc_metrics_counter(m, "dup_total", "a=\"2\"", "h"));
    assert_null(tc_metrics_counter(m, "dup_total", "a=\"1\"", "h"));
    assert_null(tc_metrics_gauge(m, "dup_total", "a=\"3\"", "h"));
    assert_int_equal(tc_metrics_gauge_fn(m, "dup_total", "a=\"4\"", "h", one, NULL), TC_EINVAL);
    assert_null(tc_metrics_histogram(m, "dup_total", "a=\"5\"", "h", bounds, 2));

    assert_non_null(tc_metrics_gauge(m, "g", NULL, "h"));
    assert_null(tc_metrics_gauge(m, "g", NULL, "h"));
    assert_null(tc_metrics_gauge(m, "g", "", "h")); /* "" is the same as no labels */
    /* Gauges and gauge functions are both gauges. */
    assert_int_equal(tc_metrics_gauge_fn(m, "g", "k=\"v\"", "h", one, NULL), 0);
    assert_int_equal(tc_metrics_gauge_fn(m, "g", "k=\"v\"", "h", one, NULL), TC_EINVAL);

    assert_non_null(tc_metrics_histogram(m, "hist", NULL, "h", bounds, 2));
    assert_null(tc_metrics_histogram(m, "hist", NULL, "h", bounds, 2));
    assert_null(tc_metrics_counter(m, "hist", "x=\"1\"", "h"));

    char *text = tc_metrics_render(m);
    assert_non_null(text);
    check_exposition(text);
    free(text);
    tc_metrics_destroy(&m);
}

static void test_histogram_bounds(void **state)
{
    static const struct {
        double b[3];
        size_t n;
        bool ok;
    } cases[] = {
        {{1, 2, 3}, 3, true},
        {{-1, 0, 1}, 3, true},
        {{1}, 1, true},
        {{0}, 0, true},
        {{1, 1}, 2, false},
        {{2, 1}, 2, false},
        {{1, 2, 2}, 3, false},
        {{NAN}, 1, false},
        {{1, NAN}, 2, false},
        {{INFINITY}, 1, false}, /* +Inf is implied; a second one is a duplicate bucket */
        {{1, INFINITY}, 2, false},
        {{-INFINITY, 1}, 2, false},
    };
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char name[32];
        snprintf(name, sizeof(name), "h%zu", i);
        tc_histogram_t *h = tc_metrics_histogram(m, name, NULL, "h", cases[i].b, cases[i].n);
        if ((h != NULL) != cases[i].ok) {
            fail_msg("case %zu: histogram %s", i, h ? "accepted" : "refused");
        }
        if (h) {
            tc_histogram_observe(h, 1.5);
        }
    }
    char *text = tc_metrics_render(m);
    check_exposition(text);
    free(text);
    tc_metrics_destroy(&m);
}

static void test_help_escaping(void **state)
{
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    assert_non_null(tc_metrics_counter(m, "esc_total", NULL, "first line\nsecond \\ line"));
    assert_non_null(tc_metrics_counter(m, "nohelp_total", NULL, NULL));
    char *text = tc_metrics_render(m);
    assert_non_null(text);
    check_exposition(text);
    assert_non_null(strstr(text, "# HELP esc_total first line\\nsecond \\\\ line\n"));
    free(text);
    tc_metrics_destroy(&m);
}

static void test_value_format(void **state)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {-3, "-3"},
        {0.5, "0.5"},
        {0.1, "0.1"},
        {1.0 / 3.0, "0.3333333333333333"},
        {123456789012.0, "123456789012"},
        {1e15, "1e+15"},
        {1e300, "1e+300"},
        {-1e300, "-1e+300"},
        {9.3e18, "9.3e+18"},
        {2.5e-7, "2.5e-07"},
        {NAN, "NaN"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
    };
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    tc_gauge_t *g[N_ELEMS(cases)];
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "case=\"%zu\"", i);
        g[i] = tc_metrics_gauge(m, "fmt", labels, "h");
        assert_non_null(g[i]);
        tc_gauge_set(g[i], cases[i].v);
    }
    static const double bounds[] = {0.1, 0.25, 1, 2.5, 10};
    tc_histogram_t *h = tc_metrics_histogram(m, "le_fmt", NULL, "h", bounds, N_ELEMS(bounds));
    assert_non_null(h);
    char *text = tc_metrics_render(m);
    assert_non_null(text);
    check_exposition(text);
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char line[128];
        snprintf(line, sizeof(line), "fmt{case=\"%zu\"} %s\n", i, cases[i].text);
        if (!strstr(text, line)) {
            fail_msg("expected \"%s\" in:\n%s", line, text);
        }
    }
    static const char *les[] = {"0.1", "0.25", "1", "2.5", "10", "+Inf"};
    for (size_t i = 0; i < N_ELEMS(les); i++) {
        char line[128];
        snprintf(line, sizeof(line), "le_fmt_bucket{le=\"%s\"} 0\n", les[i]);
        if (!strstr(text, line)) {
            fail_msg("expected \"%s\" in:\n%s", line, text);
        }
    }
    free(text);
    tc_metrics_destroy(&m);
}

/* ---- threads ---- */

#define THREADS 4
#define PER_THREAD 200000

typedef struct {
    tc_counter_t *c;
    tc_gauge_t *g;
    tc_histogram_t *h;
} shared_t;

static void *writer(void *arg)
{
    shared_t *s = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        tc_counter_inc(s->c);
        if (i % 4 == 0) {
            tc_gauge_add(s->g, 1.0);
            tc_histogram_observe(s->h, (double)(i % 10));
        }
    }
    return NULL;
}

typedef struct {
    tc_metrics_t *m;
    atomic_int stop;
    int renders;
    int failures;   /* renders that failed or were not parseable */
    int mismatches; /* renders whose _count differed from the +Inf bucket */
} render_ctx_t;

/* Renders while the writers run; no cmocka assertions off the main thread. */
static void *renderer(void *arg)
{
    render_ctx_t *r = arg;
    while (!atomic_load(&r->stop) || r->renders == 0) {
        char *text = tc_metrics_render(r->m);
        double inf, count;
        if (!text || !sample(text, "conc_hist_bucket{le=\"+Inf\"}", &inf) ||
            !sample(text, "conc_hist_count", &count)) {
            r->failures++;
        } else if (inf != count) {
            r->mismatches++;
        }
        free(text);
        r->renders++;
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    tc_metrics_t *m = tc_metrics_new();
    assert_non_null(m);
    static const double bounds[] = {1, 5};
    shared_t s = {
        tc_metrics_counter(m, "conc_total", NULL, "h"),
        tc_metrics_gauge(m, "conc_gauge", NULL, "h"),
        tc_metrics_histogram(m, "conc_hist", NULL, "h", bounds, 2),
    };
    assert_non_null(s.c);
    assert_non_null(s.g);
    assert_non_null(s.h);
    render_ctx_t r = {m, 0, 0, 0, 0};
    pthread_t rt;
    assert_int_equal(pthread_create(&rt, NULL, renderer, &r), 0);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, writer, &s), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    atomic_store(&r.stop, 1);
    pthread_join(rt, NULL);
    assert_int_equal(r.failures, 0);
    assert_int_equal(r.mismatches, 0);

    assert_int_equal(tc_counter_get(s.c), (uint64_t)THREADS * PER_THREAD);
    assert_true(tc_gauge_get(s.g) == (double)THREADS * PER_THREAD / 4);
    char *text = tc_metrics_render(m);
    assert_non_null(text);
    check_exposition(text);
    assert_true(sample_must(text, "conc_total") == (double)THREADS * PER_THREAD);
    const double n = (double)THREADS * PER_THREAD / 4;
    assert_true(sample_must(text, "conc_hist_count") == n);
    assert_true(sample_must(text, "conc_hist_bucket{le=\"+Inf\"}") == n);
    /* i % 4 == 0 and i % 10 in {0, 4, 8, 2, 6}, each a fifth: <=1 is {0}, <=5 is {0,4,2}. */
    assert_true(sample_must(text, "conc_hist_bucket{le=\"1\"}") == n / 5);
    assert_true(sample_must(text, "conc_hist_bucket{le=\"5\"}") == 3 * n / 5);
    assert_true(sample_must(text, "conc_hist_sum") == n / 5 * (0 + 4 + 8 + 2 + 6));
    free(text);
    tc_metrics_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),           cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_invalid_names),    cmocka_unit_test(test_conflicting_registrations),
        cmocka_unit_test(test_histogram_bounds), cmocka_unit_test(test_help_escaping),
        cmocka_unit_test(test_value_format),     cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
