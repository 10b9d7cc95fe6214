/*
 * Unit tests for tools/ctl/ctl_prom: the Prometheus text reader behind `tocsinctl status`.
 * Real exposition text as tc_metrics renders it, the format's corners (escapes, +Inf,
 * timestamps, comments), sums over labels, and bad lines that are skipped and counted
 * without hiding the good ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_prom.h"
#include "tc_metrics.h"

static ctl_prom_t *parse(const char *text)
{
    ctl_prom_t *p = ctl_prom_parse(text, strlen(text));
    assert_non_null(p);
    return p;
}

static void test_renders_of_tc_metrics_read_back(void **state)
{
    (void)state;
    tc_metrics_t *m = tc_metrics_new();
    tc_counter_t *a = tc_metrics_counter(m, "tocsin_x_events_total", NULL, "events");
    tc_counter_t *r1 = tc_metrics_counter(m, "tocsin_x_rejected_total", "reason=\"too_big\"", "r");
    tc_counter_t *r2 = tc_metrics_counter(m, "tocsin_x_rejected_total", "reason=\"utf8\"", "r");
    tc_gauge_t *g = tc_metrics_gauge(m, "tocsin_x_inflight", NULL, "in flight");
    static const double bounds[] = {0.1, 1};
    tc_histogram_t *h = tc_metrics_histogram(m, "tocsin_x_seconds", NULL, "s", bounds, 2);
    tc_counter_add(a, 12345);
    tc_counter_add(r1, 3);
    tc_counter_add(r2, 4);
    tc_gauge_set(g, 2.5);
    tc_histogram_observe(h, 0.05);
    tc_histogram_observe(h, 5);
    char *text = tc_metrics_render(m);
    ctl_prom_t *p = parse(text);
    assert_int_equal(ctl_prom_bad_lines(p), 0);
    double v = 0;
    assert_true(ctl_prom_sum(p, "tocsin_x_events_total", NULL, &v));
    assert_true(v == 12345);
    assert_true(ctl_prom_sum(p, "tocsin_x_rejected_total", NULL, &v));
    assert_true(v == 7);
    assert_true(ctl_prom_sum(p, "tocsin_x_rejected_total", "reason=utf8", &v));
    assert_true(v == 4);
    assert_true(ctl_prom_sum(p, "tocsin_x_inflight", NULL, &v));
    assert_true(v == 2.5);
    assert_true(ctl_prom_sum(p, "tocsin_x_seconds_count", NULL, &v));
    assert_true(v == 2);
    assert_true(ctl_prom_sum(p, "tocsin_x_seconds_bucket", "le=+Inf", &v));
    assert_true(v == 2);
    assert_true(ctl_prom_sum(p, "tocsin_x_seconds_bucket", "le=0.1", &v));
    assert_true(v == 1);
    assert_true(ctl_prom_has(p, "tocsin_x_seconds_sum"));
    ctl_prom_destroy(&p);
    free(text);
    tc_metrics_destroy(&m);
}

static void test_absent_metric_is_not_zero(void **state)
{
    (void)state;
    ctl_prom_t *p = parse("a_total 1\n");
    double v = -1;
    assert_false(ctl_prom_sum(p, "b_total", NULL, &v));
    assert_true(v == -1); /* untouched */
    assert_false(ctl_prom_sum(p, "a_total", "x=y", &v));
    assert_false(ctl_prom_has(p, "b_total"));
    ctl_prom_destroy(&p);
}

typedef struct {
    const char *line;
    const char *name;
    double value; /* NAN: expect NaN */
    const char *label_key;
    const char *label_value;
} good_case_t;

static void test_good_lines(void **state)
{
    (void)state;
    static const good_case_t cases[] = {
        {"m 1", "m", 1, NULL, NULL},
        {"m_total{} 2", "m_total", 2, NULL, NULL},
        {"m{a=\"b\"} 3", "m", 3, "a", "b"},
        {"m{a=\"b\",} 4", "m", 4, "a", "b"},
        {"m{ a = \"b\" , c=\"d\" } 5", "m", 5, "c", "d"},
        {"m{a=\"q\\\"uote\"} 6", "m", 6, "a", "q\"uote"},
        {"m{a=\"back\\\\slash\"} 7", "m", 7, "a", "back\\slash"},
        {"m{a=\"new\\nline\"} 8", "m", 8, "a", "new\nline"},
        {"m{a=\"é ✓\"} 9", "m", 9, "a", "é ✓"},
        {"m 10 1700000000000", "m", 10, NULL, NULL},
        {"m +Inf", "m", INFINITY, NULL, NULL},
        {"m -Inf", "m", -INFINITY, NULL, NULL},
        {"m NaN", "m", NAN, NULL, NULL},
        {"m 1.5e3", "m", 1500, NULL, NULL},
        {"m -0.25", "m", -0.25, NULL, NULL},
        {"ns:sub_m 11", "ns:sub_m", 11, NULL, NULL},
        {"  m\t12  \r", "m", 12, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const good_case_t *c = &cases[i];
        ctl_prom_t *p = parse(c->line);
        if (ctl_prom_count(p) != 1) {
            fail_msg("case %zu \"%s\": %zu samples, %zu bad", i, c->line, ctl_prom_count(p),
                     ctl_prom_bad_lines(p));
        }
        const ctl_prom_sample_t *s = ctl_prom_sample(p, 0);
        assert_string_equal(s->name, c->name);
        if (isnan(c->value)) {
            assert_true(isnan(s->value));
        } else {
            assert_true(s->value == c->value);
        }
        if (c->label_key) {
            const char *v = ctl_prom_label(s, c->label_key);
            assert_non_null(v);
            assert_string_equal(v, c->label_value);
        }
        ctl_prom_destroy(&p);
    }
}

static void test_bad_lines_are_skipped_and_counted(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1m 1",                /* name starts with a digit */
        "m",                   /* no value */
        "m abc",               /* not a number */
        "m 1 2 3",             /* trailing junk */
        "m 1 1.5",             /* timestamp not an integer */
        "m{a=b} 1",            /* unquoted value */
        "m{a=\"b} 1",          /* unterminated value */
        "m{a=\"b\" 1",         /* unterminated labels */
        "m{a=\"\\x\"} 1",      /* unknown escape */
        "m{:a=\"b\"} 1",       /* label name with a colon */
        "m{=\"b\"} 1",         /* no label name */
        "m{a\"b\"} 1",         /* no = */
        "m{a=\"b\"c=\"d\"} 1", /* no comma */
        "m1",                  /* value glued to name: no separator */
        "m{a=\"b\"}1",         /* value glued to labels */
    };
    char text[4096] = "good_total 5\n";
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcat(text, bad[i]);
        strcat(text, "\n");
        ctl_prom_t *one = parse(bad[i]);
        if (ctl_prom_count(one) != 0 || ctl_prom_bad_lines(one) != 1) {
            fail_msg("bad case \"%s\" parsed as %zu samples", bad[i], ctl_prom_count(one));
        }
        ctl_prom_destroy(&one);
    }
    strcat(text, "# HELP x y\n# TYPE x counter\n\nlast_total 6");
    ctl_prom_t *p = parse(text);
    assert_int_equal(ctl_prom_count(p), 2);
    assert_int_equal(ctl_prom_bad_lines(p), sizeof(bad) / sizeof(bad[0]));
    double v;
    assert_true(ctl_prom_sum(p, "good_total", NULL, &v) && v == 5);
    assert_true(ctl_prom_sum(p, "last_total", NULL, &v) && v == 6);
    ctl_prom_destroy(&p);
}

static void test_limits(void **state)
{
    (void)state;
    /* A label value one byte over the limit is refused; at the limit it is kept. */
    size_t n = CTL_PROM_MAX_VALUE;
    char *line = malloc(n + 64);
    memcpy(line, "m{a=\"", 5);
    memset(line + 5, 'x', n);
    strcpy(line + 5 + n, "\"} 1");
    ctl_prom_t *p = parse(line);
    assert_int_equal(ctl_prom_count(p), 1);
    ctl_prom_destroy(&p);
    memset(line + 5, 'x', n + 1);
    strcpy(line + 5 + n + 1, "\"} 1");
    p = parse(line);
    assert_int_equal(ctl_prom_count(p), 0);
    assert_int_equal(ctl_prom_bad_lines(p), 1);
    ctl_prom_destroy(&p);
    free(line);

    /* Labels beyond CTL_PROM_MAX_LABELS make the line bad. */
    char many[4096] = "m{";
    for (int i = 0; i <= CTL_PROM_MAX_LABELS; i++) {
        char l[32];
        snprintf(l, sizeof(l), "l%d=\"v\",", i);
        strcat(many, l);
    }
    strcat(many, "} 1");
    p = parse(many);
    assert_int_equal(ctl_prom_count(p), 0);
    ctl_prom_destroy(&p);

    /* Samples beyond CTL_PROM_MAX_SAMPLES are dropped and counted. */
    size_t extra = 5, total = CTL_PROM_MAX_SAMPLES + extra;
    char *big = malloc(total * 4 + 1);
    for (size_t i = 0; i < total; i++) {
        memcpy(big + 4 * i, "m 1\n", 4);
    }
    big[total * 4] = '\0';
    p = ctl_prom_parse(big, total * 4);
    assert_int_equal(ctl_prom_count(p), CTL_PROM_MAX_SAMPLES);
    assert_int_equal(ctl_prom_bad_lines(p), extra);
    ctl_prom_destroy(&p);
    free(big);
}

static void test_not_terminated_and_empty(void **state)
{
    (void)state;
    /* The reader must stop at len even when the text goes on. */
    const char text[] = "a 1\nb 2\nc 3";
    ctl_prom_t *p = ctl_prom_parse(text, 7); /* "a 1\nb 2" */
    assert_int_equal(ctl_prom_count(p), 2);
    ctl_prom_destroy(&p);
    p = ctl_prom_parse(text, 5); /* "a 1\nb": b without a value */
    assert_int_equal(ctl_prom_count(p), 1);
    assert_int_equal(ctl_prom_bad_lines(p), 1);
    ctl_prom_destroy(&p);
    p = ctl_prom_parse(NULL, 0);
    assert_non_null(p);
    assert_int_equal(ctl_prom_count(p), 0);
    ctl_prom_destroy(&p);
    ctl_prom_destroy(&p); /* twice is safe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renders_of_tc_metrics_read_back),
        cmocka_unit_test(test_absent_metric_is_not_zero),
        cmocka_unit_test(test_good_lines),
        cmocka_unit_test(test_bad_lines_are_skipped_and_counted),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_not_terminated_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
