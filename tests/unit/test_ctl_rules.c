/*
 * Unit tests for tools/ctl/ctl_rules: rule files validated by the alerter's own parser
 * (a valid file, and bad ones rejected with file and line), and the notification plan:
 * conditions in words, receiver and policy shortcuts, routes chosen by label matchers
 * (=, !=, =~, !~, absent labels), escalation tiers with their times, and the live state
 * taken from the alerter's alerts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_rules.h"

#define NOW_US (1767323045LL * 1000000) /* 2026-01-02T03:04:05Z */

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/tocsinctl-rules-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static const char valid_rules[] = "receivers:\n"
                                  "  - name: chat\n"
                                  "    webhook: http://127.0.0.1:9/hook\n"
                                  "rules:\n"
                                  "  - alert: ShopErrors\n"
                                  "    type: error_rate\n"
                                  "    service: shop\n"
                                  "    window: 5m\n"
                                  "    above: 0.05\n"
                                  "    for: 2m\n"
                                  "    severity: critical\n"
                                  "    receiver: chat\n";

static void test_valid_file(void **state)
{
    (void)state;
    char *path = write_file(valid_rules);
    char err[1024] = "";
    json_t *set = ctl_rules_load(path, err, sizeof(err));
    if (!set) {
        fail_msg("valid file rejected: %s", err);
    }
    json_t *plan = ctl_rules_plan(set, NULL);
    assert_int_equal(json_array_size(plan), 1);
    json_t *e = json_array_get(plan, 0);
    assert_string_equal(json_string_value(json_object_get(e, "alert")), "ShopErrors");
    assert_string_equal(json_string_value(json_object_get(e, "condition")),
                        "error rate of * above 5 % over 5m");
    json_t *s0 = json_array_get(json_object_get(e, "schedule"), 0);
    assert_int_equal(json_integer_value(json_object_get(s0, "after_ms")), 120000);
    assert_string_equal(json_string_value(json_array_get(json_object_get(s0, "receivers"), 0)),
                        "chat");
    assert_true(json_is_null(json_object_get(e, "live")));
    char *text = ctl_rules_render(plan, NOW_US, 0);
    assert_non_null(strstr(text, "ShopErrors"));
    assert_non_null(strstr(text, "chat after 2m"));
    free(text);
    json_decref(plan);
    json_decref(set);
    unlink(path);
}

typedef struct {
    const char *yaml;
    const char *err_has;
} bad_case_t;

static void test_bad_files_name_file_and_line(void **state)
{
    (void)state;
    static const bad_case_t cases[] = {
        {"rules:\n  - alert: X\n    type: error_rate\n    service: s\n    window: soon\n"
         "    above: 0.1\n    severity: critical\n    receiver: nobody\n",
         ":"},
        {"receivers: [\n", ":"},
        {"receivers:\n  - name: chat\n    webhook: http://x/\nrules:\n  - alert: X\n"
         "    bogus_key: 1\n",
         ":"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = write_file(cases[i].yaml);
        char err[1024] = "";
        json_t *set = ctl_rules_load(path, err, sizeof(err));
        /* "FILE:LINE: reason", as the alerter itself reports it */
        const char *at = strstr(err, path);
        if (set || !at || at[strlen(path)] != ':' || at[strlen(path) + 1] < '1' ||
            at[strlen(path) + 1] > '9') {
            fail_msg("case %zu: %s, error \"%s\"", i, set ? "accepted" : "rejected", err);
        }
        unlink(path);
    }
    char err[1024] = "";
    assert_null(ctl_rules_load("/nonexistent/rules.yaml", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/rules.yaml"));
}

/* A rule set in the JSON form the alerter serves, with policies and routes. */
static const char set_json[] =
    "{\"files\": [\"rules.yaml\"],"
    " \"receivers\": [{\"name\": \"chat\"}, {\"name\": \"pager\"}, {\"name\": \"boss\"},"
    "                 {\"name\": \"fallback\"}],"
    " \"policies\": [{\"name\": \"critical\", \"repeat\": 2, \"tiers\": ["
    "     {\"receivers\": [\"chat\"], \"timeout\": \"10m\"},"
    "     {\"receivers\": [\"pager\"], \"timeout\": \"15m\"},"
    "     {\"receivers\": [\"pager\", \"boss\"], \"timeout\": \"30m\"}]},"
    "   {\"name\": \"chat-only\", \"repeat\": 0, \"tiers\": ["
    "     {\"receivers\": [\"chat\"], \"timeout\": \"0s\"}]}],"
    " \"routes\": ["
    "   {\"match\": [{\"name\": \"severity\", \"op\": \"=~\", \"value\": \"critical|error\"},"
    "               {\"name\": \"team\", \"op\": \"!=\", \"value\": \"lab\"}],"
    "    \"policy\": \"critical\", \"group_wait\": \"500ms\", \"repeat_interval\": \"4h\"},"
    "   {\"match\": [\"severity=warning\"], \"policy\": \"chat-only\", \"group_wait\": \"30s\","
    "    \"repeat_interval\": \"0s\"}],"
    " \"fallback\": \"fallback\","
    " \"rules\": ["
    "   {\"alert\": \"ShopErrors\", \"type\": \"error_rate\", \"service\": \"shop\","
    "    \"name\": \"*\", \"window\": \"5m\", \"for\": \"5m\", \"severity\": \"critical\","
    "    \"above\": 0.05, \"labels\": {\"alertname\": \"ShopErrors\", \"service\": \"shop\","
    "    \"severity\": \"critical\"}, \"fingerprint\": \"9f1c2a7e5b3d4c10\", \"line\": 12},"
    "   {\"alert\": \"ShopSlow\", \"type\": \"latency\", \"service\": \"shop\", \"name\": \"*\","
    "    \"window\": \"5m\", \"for\": \"0s\", \"severity\": \"warning\", \"quantile\": 0.95,"
    "    \"above\": 2000, \"labels\": {\"severity\": \"warning\"}, \"fingerprint\": \"02\"},"
    "   {\"alert\": \"LabErrors\", \"type\": \"error_rate\", \"service\": \"lab\","
    "    \"window\": \"1m\", \"for\": \"1m\", \"severity\": \"critical\", \"above\": 0.5,"
    "    \"labels\": {\"severity\": \"critical\", \"team\": \"lab\"}, \"fingerprint\": \"03\"},"
    "   {\"alert\": \"Heartbeat\", \"type\": \"absence\", \"service\": \"collector\","
    "    \"name\": \"$heartbeat\", \"window\": \"5m\", \"for\": \"0s\", \"severity\": \"critical\","
    "    \"policy\": \"chat-only\", \"labels\": {}, \"fingerprint\": \"04\"},"
    "   {\"alert\": \"Burn\", \"type\": \"burn_rate\", \"service\": \"shop\", \"slo\": 0.999,"
    "    \"windows\": [{\"long\": \"1h\", \"short\": \"5m\", \"factor\": 14.4}],"
    "    \"for\": \"0s\", \"severity\": \"critical\", \"receiver\": \"pager\", \"labels\": {},"
    "    \"fingerprint\": \"05\"}"
    " ]}";

static json_t *entry(json_t *plan, const char *alert)
{
    size_t i;
    json_t *e;
    json_array_foreach(plan, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "alert")), alert) == 0) {
            return e;
        }
    }
    fail_msg("no plan entry for %s", alert);
    return NULL;
}

static int64_t after(json_t *e, size_t tier)
{
    return json_integer_value(
        json_object_get(json_array_get(json_object_get(e, "schedule"), tier), "after_ms"));
}

static void test_plan_routes_and_tiers(void **state)
{
    (void)state;
    json_t *set = json_loads(set_json, 0, NULL);
    assert_non_null(set);
    json_t *plan = ctl_rules_plan(set, NULL);
    assert_int_equal(json_array_size(plan), 5);

    /* Critical: route 1 (regex and !=), policy "critical": 5m + 500ms, then +10m, +15m. */
    json_t *e = entry(plan, "ShopErrors");
    assert_string_equal(json_string_value(json_object_get(e, "policy")), "critical");
    assert_int_equal(json_array_size(json_object_get(e, "schedule")), 3);
    assert_int_equal(after(e, 0), 300500);
    assert_int_equal(after(e, 1), 300500 + 600000);
    assert_int_equal(after(e, 2), 300500 + 600000 + 900000);
    assert_int_equal(json_integer_value(json_object_get(e, "repeat")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "repeat_interval")), "4h");

    /* Warning: the second route, 30 s group wait, no reminders. */
    e = entry(plan, "ShopSlow");
    assert_string_equal(json_string_value(json_object_get(e, "policy")), "chat-only");
    assert_int_equal(after(e, 0), 30000);
    assert_true(json_is_null(json_object_get(e, "repeat_interval")));
    assert_string_equal(json_string_value(json_object_get(e, "condition")),
                        "p95 latency of * above 2000 ms over 5m");

    /* team=lab fails the != matcher of route 1, and route 2 wants warnings: fallback. */
    e = entry(plan, "LabErrors");
    assert_true(json_is_null(json_object_get(e, "policy")));
    assert_string_equal(
        json_string_value(json_array_get(
            json_object_get(json_array_get(json_object_get(e, "schedule"), 0), "receivers"), 0)),
        "fallback");
    assert_int_equal(after(e, 0), 60000);

    /* The policy shortcut skips the routes; the receiver shortcut is one tier. */
    e = entry(plan, "Heartbeat");
    assert_string_equal(json_string_value(json_object_get(e, "policy")), "chat-only");
    assert_string_equal(json_string_value(json_object_get(e, "condition")),
                        "no data of $heartbeat for 5m");
    e = entry(plan, "Burn");
    assert_int_equal(json_array_size(json_object_get(e, "schedule")), 1);
    assert_string_equal(json_string_value(json_object_get(e, "condition")),
                        "burn rate of SLO 0.999: 14.4x over 1h and 5m");

    char *text = ctl_rules_render(plan, NOW_US, 0);
    if (!strstr(text, "chat after 5m0.5s; pager after 15m0.5s; pager+boss after 30m0.5s; "
                      "repeats 2x")) {
        fail_msg("plan table:\n%s", text);
    }
    free(text);
    json_decref(plan);
    json_decref(set);
}

static void test_plan_with_live_alerts(void **state)
{
    (void)state;
    json_t *set = json_loads(set_json, 0, NULL);
    json_t *alerts = json_loads(
        "{\"alerts\": [{\"fingerprint\": \"9f1c2a7e5b3d4c10\", \"alertname\": \"ShopErrors\","
        " \"rule\": \"ShopErrors\", \"state\": \"firing\", \"next_action\": {\"action\": "
        "\"escalate\", \"tier\": 1, \"receivers\": [\"pager\"], \"at\": "
        "\"2026-01-02T03:16:05Z\"}},"
        " {\"fingerprint\": \"02\", \"state\": \"inactive\", \"next_action\": null}]}",
        0, NULL);
    json_t *plan = ctl_rules_plan(set, alerts);
    json_t *live = json_object_get(entry(plan, "ShopErrors"), "live");
    assert_string_equal(json_string_value(json_object_get(live, "state")), "firing");
    live = json_object_get(entry(plan, "ShopSlow"), "live");
    assert_string_equal(json_string_value(json_object_get(live, "state")), "inactive");
    assert_true(json_is_null(json_object_get(entry(plan, "Burn"), "live")));
    char *text = ctl_rules_render(plan, NOW_US, 0);
    assert_non_null(strstr(text, "escalate to tier 1 (pager) in 12m"));
    free(text);
    json_decref(plan);
    json_decref(alerts);
    json_decref(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_bad_files_name_file_and_line),
        cmocka_unit_test(test_plan_routes_and_tiers),
        cmocka_unit_test(test_plan_with_live_alerts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
