/*
 * Unit tests for tools/ctl/ctl_view: times read from the command line and from answers,
 * and the tables made of the aggregator's and the alerter's answers (shaped as
 * docs/INTERFACES.md, docs/aggregator.md and docs/alerter.md document them), with a fixed
 * `now` so every line is exact.
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

#include "ctl_view.h"
#include "tc_error.h"

/* 2026-01-02T03:04:05Z */
#define NOW_US (1767323045LL * 1000000)

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *doc = json_loads(text, 0, &e);
    if (!doc) {
        fail_msg("fixture: %s at %d", e.text, e.line);
    }
    return doc;
}

typedef struct {
    const char *in;
    int64_t want_us; /* INT64_MIN: an error */
} time_case_t;

static void test_time_parse(void **state)
{
    (void)state;
    static const time_case_t cases[] = {
        {"now", NOW_US},
        {"2026-01-02T03:04:05Z", NOW_US},
        {"2026-01-02T03:04:05.250Z", NOW_US + 250000},
        {"2026-01-02 03:04:05z", NOW_US},
        {"2026-01-02T05:04:05+02:00", NOW_US},
        {"2026-01-02T00:04:05-03:00", NOW_US},
        {"1970-01-01T00:00:00Z", 0},
        {"2024-02-29T00:00:00Z", 1709164800LL * 1000000},
        {"1767323045", NOW_US},
        {"1767323045.5", NOW_US + 500000},
        {"15m", NOW_US - 15 * 60 * 1000000LL},
        {"1h30m", NOW_US - 90 * 60 * 1000000LL},
        {"2d", NOW_US - 2 * 86400 * 1000000LL},
        {"", INT64_MIN},
        {"yesterday", INT64_MIN},
        {"2026-13-02T03:04:05Z", INT64_MIN},
        {"2026-02-30T03:04:05Z", INT64_MIN},
        {"2026-01-02T03:04:05", INT64_MIN}, /* no zone */
        {"2026-01-02T03:04:05Zjunk", INT64_MIN},
        {"2026-01-02T03:04:05.Z", INT64_MIN},
        {"-5m", INT64_MIN},
        {"15", INT64_MIN}, /* a bare small number is neither a time nor clearly a duration */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = 0;
        int rc = ctl_time_parse(cases[i].in, NOW_US, &got);
        if (cases[i].want_us == INT64_MIN) {
            if (rc != TC_EINVAL) {
                fail_msg("case %zu \"%s\": expected an error, got %lld", i, cases[i].in,
                         (long long)got);
            }
        } else if (rc != 0 || got != cases[i].want_us) {
            fail_msg("case %zu \"%s\": rc %d, got %lld want %lld", i, cases[i].in, rc,
                     (long long)got, (long long)cases[i].want_us);
        }
    }
}

static void test_time_ago_and_when(void **state)
{
    (void)state;
    static const struct {
        int64_t delta_s;
        const char *s;
    } cases[] = {{0, "just now"},   {5, "5s ago"},        {-5, "in 5s"},
                 {119, "119s ago"}, {120, "2m ago"},      {7199, "119m ago"},
                 {7200, "2h ago"},  {-3 * 3600, "in 3h"}, {172800, "2d ago"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        ctl_time_ago(NOW_US - cases[i].delta_s * 1000000, NOW_US, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].s);
    }
    char buf[64];
    json_t *t = json_string("2026-01-02T02:59:05.000Z");
    ctl_fmt_when(t, NOW_US, buf, sizeof(buf));
    assert_string_equal(buf, "02:59:05 (5m ago)");
    json_decref(t);
    t = json_string("2025-12-30T03:04:05Z");
    ctl_fmt_when(t, NOW_US, buf, sizeof(buf));
    assert_string_equal(buf, "2025-12-30 03:04 (3d ago)");
    json_decref(t);
    ctl_fmt_when(json_null(), NOW_US, buf, sizeof(buf));
    assert_string_equal(buf, "-");
    t = json_string("garbage");
    ctl_fmt_when(t, NOW_US, buf, sizeof(buf));
    assert_string_equal(buf, "-");
    json_decref(t);
}

static void test_query_view(void **state)
{
    (void)state;
    json_t *doc =
        load("{\"service\":\"checkout\",\"name\":\"*\",\"environment\":null,\"window\":\"5m\","
             "\"window_s\":300,\"from\":1795000000,\"to\":1795000300,\"kind\":\"requests\","
             "\"count\":10000,\"errors\":200,\"error_rate\":0.02,\"rate_per_s\":33.33,\"late\":0,"
             "\"buckets\":30,\"quantiles\":{\"0.5\":12.3,\"0.95\":80.1,\"0.99\":2500}}");
    char *text = ctl_view_query(doc, 0);
    assert_string_equal(text,
                        "SERVICE   NAME  ENV    WINDOW  COUNT  RATE/S  ERRORS  ERROR RATE      "
                        "p50      p95    p99\n"
                        "checkout  *     (all)  5m        10k   33.33     200         2 %  "
                        "12.3 ms  80.1 ms  2.5 s\n");
    free(text);
    json_decref(doc);
    /* No data: quantiles null, error rate null. */
    doc = load("{\"service\":\"x\",\"name\":\"/a\",\"environment\":\"prod\",\"window\":\"1m\","
               "\"count\":0,\"errors\":0,\"error_rate\":null,\"rate_per_s\":0,"
               "\"quantiles\":{\"0.5\":null}}");
    text = ctl_view_query(doc, 0);
    assert_non_null(strstr(text, "x        /a    prod  1m"));
    assert_non_null(strstr(text, "-    -\n"));
    free(text);
    json_decref(doc);
}

static void test_range_view(void **state)
{
    (void)state;
    /* As GET /api/v1/range answers: one point per step, "t" its start in Unix seconds. */
    json_t *doc = load("{\"service\":\"shop\",\"name\":\"*\",\"from\":1767322920,"
                       "\"to\":1767323040,\"step\":60,\"points\":["
                       "{\"t\":1767322920,\"count\":0,\"errors\":0,\"error_rate\":0,"
                       "\"rate_per_s\":0,\"quantiles\":{\"0.5\":null,\"0.95\":null,"
                       "\"0.99\":null}},"
                       "{\"t\":1767322980,\"count\":500,\"errors\":25,\"error_rate\":0.05,"
                       "\"rate_per_s\":8.333,\"quantiles\":{\"0.5\":21.1,\"0.95\":71.1,"
                       "\"0.99\":112}}]}");
    char *text = ctl_view_range(doc, 0);
    assert_non_null(strstr(text, "2026-01-02 03:02:00      0       0       0         0 %"));
    assert_non_null(
        strstr(text, "2026-01-02 03:03:00    500   8.333      25         5 %  21.1 ms"));
    free(text);
    json_decref(doc);
}

static void test_top_sort_and_view(void **state)
{
    (void)state;
    ctl_top_row_t rows[4] = {
        {"api", 1000, 3.3, 10, 0.01, 120, NAN},
        {"web", 5000, 16.7, 0, 0, 40, 3},
        {"batch", NAN, NAN, NAN, NAN, NAN, 50},
        {"auth", 1000, 3.3, 100, 0.1, 2500, NAN},
    };
    ctl_top_sort(rows, 4, CTL_TOP_REQUESTS);
    assert_string_equal(rows[0].service, "web");
    assert_string_equal(rows[1].service, "api"); /* tie with auth: by name */
    assert_string_equal(rows[2].service, "auth");
    assert_string_equal(rows[3].service, "batch"); /* no requests: last */
    ctl_top_sort(rows, 4, CTL_TOP_ERRORS);
    assert_string_equal(rows[0].service, "auth");  /* 100 failed requests */
    assert_string_equal(rows[1].service, "batch"); /* 50 error events */
    assert_string_equal(rows[2].service, "api");
    assert_string_equal(rows[3].service, "web");
    ctl_top_sort(rows, 4, CTL_TOP_P95);
    assert_string_equal(rows[0].service, "auth");
    ctl_top_sort(rows, 4, CTL_TOP_ERROR_RATE);
    assert_string_equal(rows[0].service, "auth");
    char *text = ctl_view_top(rows, 4, 2, 0);
    assert_string_equal(text, "SERVICE  REQUESTS  RATE/S  ERRORS  ERROR RATE     p95  ERROR "
                              "EVENTS\n"
                              "auth           1k     3.3     100        10 %   2.5 s           "
                              "  -\n"
                              "api            1k     3.3      10         1 %  120 ms           "
                              "  -\n");
    free(text);
    json_t *j = ctl_top_json(rows, 4, 0);
    assert_int_equal(json_array_size(j), 4);
    assert_true(json_is_null(json_object_get(json_array_get(j, 3), "requests")) ||
                json_is_null(json_object_get(json_array_get(j, 2), "requests")));
    json_decref(j);
    ctl_top_by_t by;
    assert_int_equal(ctl_top_by_parse("error_rate", &by), 0);
    assert_int_equal(by, CTL_TOP_ERROR_RATE);
    assert_int_equal(ctl_top_by_parse("volume", &by), TC_EINVAL);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *s;
    } cases[] = {{0, "0s"},          {250, "250ms"},      {30000, "30s"},      {300500, "5m0.5s"},
                 {5400000, "1h30m"}, {183600000, "2d3h"}, {61001, "1m1.001s"}, {-5, "0s"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        ctl_fmt_duration(cases[i].ms, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].s);
    }
}

static const char alerts_doc[] =
    "{\"alerts\": ["
    "{\"fingerprint\": \"9f1c2a7e5b3d4c10\", \"alertname\": \"ShopErrors\", \"rule\": "
    "\"ShopErrors\", \"type\": \"error_rate\", \"labels\": {\"alertname\": \"ShopErrors\", "
    "\"service\": \"shop\", \"severity\": \"critical\"}, \"state\": \"firing\", \"severity\": "
    "\"critical\", \"since\": \"2026-01-02T02:59:05.000Z\", \"value\": 0.072, \"threshold\": 0.05,"
    " \"flapping\": false, \"silenced_by\": [], \"acknowledged\": null, \"tier\": 0,"
    " \"next_action\": {\"action\": \"escalate\", \"tier\": 1, \"receivers\": [\"pager\"], "
    "\"at\": \"2026-01-02T03:16:05.000Z\"}},"
    "{\"fingerprint\": \"0000000000000001\", \"alertname\": \"Quiet\", \"labels\": {\"service\": "
    "\"db\"}, \"state\": \"inactive\", \"severity\": \"warning\", \"since\": null, \"value\": "
    "null, \"next_action\": null},"
    "{\"fingerprint\": \"0000000000000002\", \"alertname\": \"SlowApi\", \"type\": \"latency\", "
    "\"labels\": {\"service\": \"api\"}, \"state\": \"acknowledged\", \"severity\": \"warning\", "
    "\"since\": \"2026-01-02T03:00:05Z\", \"value\": 2300.5, \"silenced_by\": [\"abc\"], "
    "\"acknowledged\": {\"by\": \"alice\", \"at\": \"2026-01-02T03:01:00Z\"}, "
    "\"next_action\": {\"action\": \"ack_expires\", \"at\": \"2026-01-02T04:04:05Z\"}}"
    "]}";

static void test_alerts_view(void **state)
{
    (void)state;
    json_t *doc = load(alerts_doc);
    char *text = ctl_view_alerts(doc, false, NOW_US, 0);
    assert_non_null(strstr(text, "ShopErrors  shop     critical  firing"));
    assert_non_null(strstr(text, "02:59:05 (5m ago)"));
    assert_non_null(strstr(text, "7.2 %"));
    assert_non_null(strstr(text, "escalate to tier 1 (pager) in 12m"));
    assert_non_null(strstr(text, "9f1c2a7e5b3d4c10"));
    assert_null(strstr(text, "Quiet")); /* inactive: left out without --all */
    assert_non_null(strstr(text, "acknowledged (ack alice) silenced"));
    assert_non_null(strstr(text, "2300"));
    assert_non_null(strstr(text, "ack_expires in 60m"));
    free(text);
    text = ctl_view_alerts(doc, true, NOW_US, 0);
    assert_non_null(strstr(text, "Quiet"));
    free(text);
    json_decref(doc);
}

static void test_silences_and_notifications(void **state)
{
    (void)state;
    json_t *doc = load(
        "{\"silences\": [{\"id\": \"5c1e0d9a27b84f31\", \"matchers\": [{\"name\": \"service\", "
        "\"op\": \"=\", \"value\": \"shop\"}, {\"name\": \"severity\", \"op\": \"=~\", \"value\": "
        "\"warning|info\"}], \"starts_at\": \"2026-01-02T03:00:05Z\", \"ends_at\": "
        "\"2026-01-02T05:04:05Z\", \"created_by\": \"alice\", \"comment\": \"deploy\", "
        "\"state\": \"active\", \"source\": \"api\"},"
        "{\"id\": \"f\", \"matchers\": [\"team=db\"], \"state\": \"pending\", \"source\": "
        "\"file\"}]}");
    char *text = ctl_view_silences(doc, NOW_US, 0);
    assert_non_null(strstr(text, "5c1e0d9a27b84f31  active"));
    assert_non_null(strstr(text, "service=\"shop\" severity=~\"warning|info\""));
    assert_non_null(strstr(text, "05:04:05 (in 2h)"));
    assert_non_null(strstr(text, "alice"));
    assert_non_null(strstr(text, "pending (file)"));
    assert_non_null(strstr(text, "team=db"));
    free(text);
    json_decref(doc);

    doc = load("{\"notifications\": [{\"id\": 17, \"created_at\": \"2026-01-02T03:03:05Z\", "
               "\"kind\": \"firing\", \"receiver\": \"chat\", \"status\": \"delivered\", "
               "\"attempts\": 1, \"alerts\": [\"9f1c2a7e5b3d4c10\"], \"alert_count\": 1, "
               "\"last_error\": null},"
               "{\"id\": 18, \"kind\": \"escalation\", \"receiver\": \"pager\", \"status\": "
               "\"queued\", \"attempts\": 3, \"alerts\": [\"a\", \"b\"], "
               "\"last_error\": \"HTTP 503\"}], \"next_before\": 16}");
    text = ctl_view_notifications(doc, NOW_US, 0);
    assert_non_null(strstr(text, "17  03:03:05 (60s ago)  firing"));
    assert_non_null(strstr(text, "delivered"));
    assert_non_null(strstr(text, "HTTP 503"));
    assert_non_null(strstr(text, "  3       2  HTTP 503")); /* alerts counted from the list */
    free(text);
    json_decref(doc);
}

static void test_issues_and_logs(void **state)
{
    (void)state;
    json_t *doc =
        load("{\"issues\": [{\"id\": \"ab12\", \"service\": \"shop\", \"status\": \"unresolved\", "
             "\"level\": \"error\", \"type\": \"PaymentTimeout\", \"message\": \"gateway did not "
             "answer\", \"count\": 1234, \"users\": 56, \"first_seen\": \"2025-12-30T03:04:05Z\", "
             "\"last_seen\": \"2026-01-02T03:04:00Z\"}]}");
    char *text = ctl_view_issues(doc, NOW_US, 0);
    assert_non_null(strstr(text, "ab12  shop     unresolved  error"));
    assert_non_null(strstr(text, "1.23k"));
    assert_non_null(strstr(text, "PaymentTimeout: gateway did not answer"));
    assert_non_null(strstr(text, "(5s ago)"));
    free(text);
    json_decref(doc);

    doc = load("{\"id\": \"ab12\", \"count\": 3, \"last_seen\": \"2026-01-02T03:04:00Z\", "
               "\"releases\": [\"1.0\", \"1.1\"], \"sample\": {\"frames\": ["
               "{\"function\": \"pay\", \"module\": \"shop.pay\", \"file\": \"pay.c\", "
               "\"line\": 42, \"in_app\": true}, {\"function\": \"main\", \"in_app\": false}]}}");
    text = ctl_view_issue(doc, NOW_US, 0);
    assert_non_null(strstr(text, "id             ab12\n"));
    assert_non_null(strstr(text, "last_seen      03:04:00 (5s ago)\n"));
    assert_non_null(strstr(text, "releases       1.0, 1.1\n"));
    assert_non_null(strstr(text, "*       pay       shop.pay  pay.c  42"));
    free(text);
    json_decref(doc);

    doc = load("{\"logs\": [{\"time\": \"2026-01-02T03:04:00.123Z\", \"level\": \"warn\", "
               "\"service\": \"shop\", \"logger\": \"pay\", \"message\": \"slow \\u001b[2J "
               "gateway\", \"fields\": {\"ms\": 2300, \"card\": \"visa\"}}, "
               "{\"time\": 1767323045000000, \"level\": \"info\", \"message\": \"ok\"}]}");
    text = ctl_view_logs(doc);
    assert_string_equal(text, "2026-01-02T03:04:00.123Z warn  [shop/pay] slow ?[2J gateway "
                              "ms=2300 card=visa\n"
                              "2026-01-02T03:04:05.000Z info  ok\n");
    free(text);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_parse),        cmocka_unit_test(test_time_ago_and_when),
        cmocka_unit_test(test_query_view),        cmocka_unit_test(test_range_view),
        cmocka_unit_test(test_top_sort_and_view), cmocka_unit_test(test_durations),
        cmocka_unit_test(test_alerts_view),       cmocka_unit_test(test_silences_and_notifications),
        cmocka_unit_test(test_issues_and_logs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
