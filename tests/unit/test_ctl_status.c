/*
 * Unit tests for tools/ctl/ctl_status: the record `tocsinctl status` builds for a daemon
 * from its /health/live, /health/ready and /metrics answers (healthy, not ready,
 * unreachable, odd answers), the exit code over a fleet, key figures and the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_args.h"
#include "ctl_status.h"
#include "tc_error.h"

static ctl_http_req_t answer(long status, const char *body)
{
    ctl_http_req_t r = {0};
    r.transport = 0;
    r.status = status;
    r.data = strdup(body);
    r.len = strlen(body);
    r.url = strdup("http://agg-1:7430/x");
    return r;
}

static ctl_http_req_t no_answer(void)
{
    ctl_http_req_t r = {0};
    r.transport = TC_EUNAVAIL;
    snprintf(r.error, sizeof(r.error), "Failed to connect to agg-1 port 7430: Connection refused");
    r.url = strdup("http://agg-1:7430/health/live");
    return r;
}

static void fini3(ctl_http_req_t *a, ctl_http_req_t *b, ctl_http_req_t *c)
{
    ctl_http_req_fini(a);
    ctl_http_req_fini(b);
    ctl_http_req_fini(c);
}

static const char ready_ok[] =
    "{\"status\":\"healthy\",\"daemon\":\"aggregator\",\"version\":\"0.1.0\","
    "\"dependencies\":{\"lmdb\":{\"status\":\"healthy\",\"response_time_ms\":0.1,"
    "\"detail\":\"ok\"},\"kafka\":{\"status\":\"healthy\",\"response_time_ms\":1.5,"
    "\"detail\":\"3 broker(s)\"}}}";
static const char ready_bad[] =
    "{\"status\":\"unhealthy\",\"daemon\":\"aggregator\",\"version\":\"0.1.0\","
    "\"dependencies\":{\"lmdb\":{\"status\":\"healthy\",\"response_time_ms\":0.1,"
    "\"detail\":\"ok\"},\"kafka\":{\"status\":\"unhealthy\",\"response_time_ms\":2000,"
    "\"detail\":\"metadata request failed: \\u001b[31mLocal: Broker transport failure\"}}}";
static const char metrics_agg[] =
    "# TYPE tocsin_aggregator_events_applied_total counter\n"
    "tocsin_aggregator_events_applied_total 10000\n"
    "tocsin_aggregator_duplicates_total 3\n"
    "tocsin_aggregator_assigned_partitions 4\n"
    "tocsin_aggregator_consumer_lag{topic=\"tocsin.events\",partition=\"0\"} 5\n"
    "tocsin_aggregator_consumer_lag{topic=\"tocsin.events\",partition=\"1\"} 7\n";

static void test_healthy_aggregator(void **state)
{
    (void)state;
    ctl_http_req_t live = answer(200, "{\"status\":\"healthy\",\"version\":\"0.1.0\"}");
    ctl_http_req_t ready = answer(200, ready_ok);
    ctl_http_req_t metrics = answer(200, metrics_agg);
    json_t *rec =
        ctl_status_record(CTL_KIND_AGGREGATOR, "http://agg-1:7430", &live, &ready, &metrics);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "kind")), "aggregator");
    assert_true(json_is_true(json_object_get(rec, "up")));
    assert_true(json_is_true(json_object_get(rec, "ready")));
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "healthy");
    assert_string_equal(json_string_value(json_object_get(rec, "version")), "0.1.0");
    assert_true(json_is_null(json_object_get(rec, "error")));
    assert_true(json_number_value(json_object_get(rec, "consumer_lag")) == 12);
    assert_true(json_is_null(json_object_get(rec, "spool_depth")));
    json_t *figs = json_object_get(rec, "figures");
    assert_int_equal(json_integer_value(json_object_get(figs, "applied")), 10000);
    assert_int_equal(json_integer_value(json_object_get(figs, "duplicates")), 3);
    assert_int_equal(json_integer_value(json_object_get(figs, "partitions")), 4);
    assert_null(json_object_get(figs, "late")); /* not exported: left out, not 0 */
    assert_int_equal(json_object_size(json_object_get(rec, "dependencies")), 2);
    json_t *all = json_array();
    json_array_append_new(all, rec);
    assert_int_equal(ctl_status_exit_code(all), CTL_EXIT_OK);
    char *text = ctl_status_render(all, 0);
    assert_non_null(strstr(text, "aggregator  http://agg-1:7430  yes  healthy  0.1.0"));
    assert_non_null(strstr(text, "applied 10k"));
    assert_null(strstr(text, "!")); /* nothing to point out */
    free(text);
    json_decref(all);
    fini3(&live, &ready, &metrics);
}

static void test_not_ready_and_unreachable(void **state)
{
    (void)state;
    json_t *all = json_array();
    ctl_http_req_t live = answer(200, "{\"status\":\"healthy\"}");
    ctl_http_req_t ready = answer(503, ready_bad);
    ctl_http_req_t metrics = answer(200, "tocsin_alerter_alerts{state=\"firing\"} 2\n");
    json_t *rec = ctl_status_record(CTL_KIND_ALERTER, "http://al:7440", &live, &ready, &metrics);
    assert_true(json_is_true(json_object_get(rec, "up")));
    assert_false(json_is_true(json_object_get(rec, "ready")));
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "unhealthy");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rec, "figures"), "firing")),
                     2);
    json_array_append_new(all, rec);
    assert_int_equal(ctl_status_exit_code(all), CTL_EXIT_PROBLEM);
    fini3(&live, &ready, &metrics);

    ctl_http_req_t l2 = no_answer(), r2 = no_answer(), m2 = no_answer();
    rec = ctl_status_record(CTL_KIND_COLLECTOR, "http://agg-1:7430", &l2, &r2, &m2);
    assert_false(json_is_true(json_object_get(rec, "up")));
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "unreachable");
    const char *err = json_string_value(json_object_get(rec, "error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "cannot reach the collector"));
    assert_non_null(strstr(err, "Connection refused"));
    assert_int_equal(json_object_size(json_object_get(rec, "figures")), 0);
    json_array_append_new(all, rec);
    /* One unreachable daemon decides the code. */
    assert_int_equal(ctl_status_exit_code(all), CTL_EXIT_UNREACHABLE);

    char *text = ctl_status_render(all, 0);
    assert_non_null(strstr(text, "NOT READY"));
    assert_non_null(strstr(text, "NO"));
    /* The unhealthy dependency is spelled out, its escape sequence defused. */
    assert_non_null(strstr(text, "! alerter http://al:7440 kafka: unhealthy: metadata request "
                                 "failed: ?[31mLocal: Broker transport failure"));
    assert_non_null(strstr(text, "! cannot reach the collector"));
    assert_null(strchr(text, '\x1b'));
    free(text);
    json_decref(all);
    fini3(&l2, &r2, &m2);
}

static void test_odd_answers(void **state)
{
    (void)state;
    /* A ready answer that is not JSON, and metrics that are not Prometheus text. */
    ctl_http_req_t live = answer(200, "ok");
    ctl_http_req_t ready = answer(200, "<html>proxy</html>");
    ctl_http_req_t metrics = answer(404, "{\"error\":\"no such endpoint: /metrics\"}");
    json_t *rec = ctl_status_record(CTL_KIND_COLLECTOR, "http://c:7421", &live, &ready, &metrics);
    assert_true(json_is_true(json_object_get(rec, "ready")));
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "unknown");
    assert_non_null(strstr(json_string_value(json_object_get(rec, "error")), "without a JSON"));
    assert_false(json_is_true(json_object_get(rec, "metrics_readable")));
    assert_true(json_is_null(json_object_get(rec, "version")));
    json_decref(rec);
    fini3(&live, &ready, &metrics);

    /* Live refuses (a 500) while ready answers: up is false, the problem code. */
    ctl_http_req_t l2 = answer(500, "{\"error\":\"boom\"}");
    ctl_http_req_t r2 = answer(200, ready_ok);
    ctl_http_req_t m2 = answer(200, "");
    rec = ctl_status_record(CTL_KIND_AGGREGATOR, "http://a:7430", &l2, &r2, &m2);
    assert_false(json_is_true(json_object_get(rec, "up")));
    json_t *all = json_array();
    json_array_append_new(all, rec);
    assert_int_equal(ctl_status_exit_code(all), CTL_EXIT_PROBLEM);
    json_decref(all);
    fini3(&l2, &r2, &m2);
}

static void test_figure_tables_name_real_metrics(void **state)
{
    (void)state;
    /* Every figure names a tocsin_<kind>_ metric of its own daemon. */
    for (int k = 0; k < CTL_KIND_COUNT; k++) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "tocsin_%s_", ctl_kind_name((ctl_kind_t)k));
        size_t n = 0;
        for (const ctl_figure_t *f = ctl_status_figures((ctl_kind_t)k); f->label; f++, n++) {
            assert_true(strncmp(f->metric, prefix, strlen(prefix)) == 0);
        }
        assert_true(n >= 5);
        for (const char *const *m = ctl_status_lag_metrics((ctl_kind_t)k); *m; m++) {
            assert_true(strncmp(*m, prefix, strlen(prefix)) == 0);
        }
        for (const char *const *m = ctl_status_spool_metrics((ctl_kind_t)k); *m; m++) {
            assert_true(strncmp(*m, prefix, strlen(prefix)) == 0);
        }
    }
    ctl_kind_t kind;
    assert_int_equal(ctl_kind_parse("aggregators", &kind), 0);
    assert_int_equal(kind, CTL_KIND_AGGREGATOR);
    assert_int_equal(ctl_kind_parse("alerter", &kind), 0);
    assert_int_equal(kind, CTL_KIND_ALERTER);
    assert_int_equal(ctl_kind_parse("bus", &kind), TC_EINVAL);
    assert_int_equal(ctl_kind_parse("collectorss", &kind), TC_EINVAL);
}

static void test_counts(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *s;
    } cases[] = {{0, "0"},           {950, "950"},    {0.25, "0.25"}, {12345, "12.3k"},
                 {4560000, "4.56M"}, {7.1e9, "7.1G"}, {-2000, "-2k"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        ctl_fmt_count(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthy_aggregator),
        cmocka_unit_test(test_not_ready_and_unreachable),
        cmocka_unit_test(test_odd_answers),
        cmocka_unit_test(test_figure_tables_name_real_metrics),
        cmocka_unit_test(test_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
