/*
 * alr_rules: the shipped rule file loads; every kind of mistake is rejected as a whole
 * with the file, the line and the reason (table-driven); templates render; fingerprints
 * are stable; several files merge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alr_rules.h"

#define RCV "receivers:\n  - {name: hook, url: 'http://127.0.0.1:9/h'}\n"

static void test_shipped_file_loads(void **state)
{
    (void)state;
    char err[1024];
    alr_ruleset_t *s =
        alr_ruleset_load_file(TOCSIN_SOURCE_DIR "/deploy/local/rules.yaml", err, sizeof(err));
    if (!s) {
        print_error("%s\n", err);
    }
    assert_non_null(s);
    assert_int_equal(s->nrules, 9); /* the demo's 3 and the pipeline's own 6 */
    assert_true(s->settings.fallback >= 0);
    /* The critical policy escalates chat -> pager -> next tier. */
    const alr_policy_t *p = NULL;
    for (size_t i = 0; i < s->npolicies; i++) {
        if (strcmp(s->policies[i].name, "critical") == 0) {
            p = &s->policies[i];
        }
    }
    assert_non_null(p);
    assert_int_equal(p->ntiers, 3);
    assert_string_equal(s->receivers[p->tiers[0].receivers[0]].name, "chat");
    assert_string_equal(s->receivers[p->tiers[1].receivers[0]].name, "pager");
    json_t *j = alr_ruleset_to_json(s);
    assert_non_null(j);
    json_decref(j);
    alr_ruleset_destroy(&s);
    alr_ruleset_destroy(&s); /* safe twice */
}

static void test_every_type_loads(void **state)
{
    (void)state;
    const char *yaml =
        "settings: {group_wait: 1s, flap_threshold: 0, ack_ttl: 1h, fallback: hook,\n"
        "  retry: {give_up_after: 5m, max_attempts: 4, base: 500ms, max: 30s},\n"
        "  breaker: {failures: 2, cooldown: 10s}}\n"
        "receivers:\n"
        "  - {name: hook, url: 'http://127.0.0.1:9/h'}\n"
        "  - {name: chat, type: slack, url: 'https://hooks.example/x', rate: 2/s, burst: 2}\n"
        "  - {name: pd, type: pagerduty, routing_key: abc}\n"
        "  - {name: mail, type: email, url: 'smtp://127.0.0.1:25', from: a@b.c, to: [x@y.z]}\n"
        "policies:\n  - {name: p, tiers: [{receivers: [chat], timeout: 1m}, {receivers: [pd, mail]}]}\n"
        "routes:\n  - {match: ['team=~pay|shop'], policy: p, group_by: [...]}\n"
        "maintenance:\n  - {match: {service: shop}, start: '2030-01-01T00:00:00Z', end: "
        "'2030-01-01T02:00:00+01:00'}\n"
        "rules:\n"
        "  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.01, clear: 0.005, "
        "for: 2m, severity: critical, policy: p}\n"
        "  - {alert: B, type: request_rate, service: s, window: 5m, below: 1, severity: warning}\n"
        "  - {alert: C, type: latency, service: s, name: /x, window: 5m, quantile: 0.99, "
        "above: 250, severity: warning}\n"
        "  - {alert: D, type: metric, service: s, name: queue.depth, kind: gauge, aggregate: "
        "max, window: 1m, above: 1000, severity: error}\n"
        "  - {alert: E, type: event_count, service: s, window: 1m, above: 100, severity: error}\n"
        "  - {alert: F, type: absence, service: s, window: 5m, severity: critical}\n"
        "  - {alert: G, type: new_issue, severity: warning, min_level: error}\n"
        "  - {alert: H, type: regressed_issue, service: s, severity: warning, resolve_after: 2h}\n"
        "  - {alert: I, type: burn_rate, service: s, slo: 0.999, severity: critical}\n"
        "  - {alert: J, type: burn_rate, service: s, slo: 0.99, severity: warning, clear: 0.5,\n"
        "     windows: [{long: 1d, short: 2h, factor: 3}, {long: 3d, short: 6h, factor: 1}]}\n";
    char err[1024];
    alr_ruleset_t *s = alr_ruleset_load_data(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
    if (!s) {
        print_error("%s\n", err);
    }
    assert_non_null(s);
    assert_int_equal(s->nrules, 10);
    assert_int_equal(s->rules[0].type, ALR_RULE_ERROR_RATE);
    assert_true(s->rules[0].has_clear);
    assert_true(s->rules[1].below);
    assert_true(s->rules[2].quantile == 0.99);
    assert_int_equal(s->rules[3].agg, ALR_AGG_MAX);
    assert_string_equal(s->rules[4].name, "$errors");
    assert_string_equal(s->rules[5].name, "heartbeat");
    assert_int_equal(s->rules[5].kind, 3); /* the heartbeat is a COUNTER metric */
    assert_int_equal(s->rules[8].npairs, 2); /* the SRE workbook's paging pairs */
    assert_true(s->rules[8].pairs[0].factor == 14.4 && s->rules[8].pairs[0].long_ms == 3600000 &&
                s->rules[8].pairs[0].short_ms == 300000);
    assert_int_equal(s->rules[9].window_ms, 3 * 86400000LL);
    assert_true(s->receivers[1].rate_per_s == 2.0);
    assert_true(s->receivers[2].rate_per_s > 1.8 && s->receivers[2].rate_per_s < 2.0);
    assert_string_equal(s->receivers[2].url, "https://events.pagerduty.com/v2/enqueue");
    assert_int_equal(s->maintenance[0].ends_us - s->maintenance[0].starts_us, 3600000000LL);
    assert_int_equal(s->settings.retry_max_attempts, 4);
    alr_ruleset_destroy(&s);
}

typedef struct {
    const char *yaml;
    const char *want; /* expected error, a prefix ("t.yaml:LINE: ...") then a substring */
    const char *why;
} bad_t;

static const bad_t bad[] = {
    {"rules: [", "t.yaml:2: YAML syntax error", "syntax"},
    {"rulez: []\n", "t.yaml:1: the file: unknown key \"rulez\"", "unknown top key"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1}\n",
     "t.yaml:4: rule \"A\": missing required field \"severity\"", "missing severity"},
    {RCV "rules:\n  - alert: A\n    type: error_rte\n",
     "t.yaml:5: rule \"A\": unknown type \"error_rte\"", "unknown type"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 2, "
         "severity: critical, receiver: hook}\n",
     "t.yaml:4: rule \"A\": threshold 2 out of range", "rate above 1"},
    {RCV "rules:\n  - alert: A\n    type: error_rate\n    severity: info\n    service: s\n"
         "    window: 5 minutes\n",
     "t.yaml:8: rule \"A\": bad duration \"5 minutes\"", "bad window"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, clear: "
         "0.2, severity: critical, receiver: hook}\n",
     "t.yaml:4: rule \"A\": clear 0.2 must be at or below", "clear above threshold"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, "
         "severity: critical, receiver: nobody}\n",
     "t.yaml:4: rule \"A\": unknown receiver \"nobody\"", "unknown receiver"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, "
         "severity: critical}\n",
     "t.yaml:4: rule \"A\" has no receiver or policy and no route", "unrouted"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, "
         "severity: critical, receiver: hook}\n"
         "  - {alert: A, type: error_rate, service: s, window: 1m, above: 0.2, "
         "severity: critical, receiver: hook}\n",
     "t.yaml:5: rule \"A\" has the same alertname and labels as the rule on line 4", "dup"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, "
         "severity: critical, receiver: hook,\n     annotations: {summary: '{{ $valu }}'}}\n",
     "t.yaml:5: rule \"A\": annotation \"summary\": unknown template value", "template"},
    {RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, "
         "severity: critical, receiver: hook, labels: {severity: low}}\n",
     "t.yaml:4: rule \"A\": label \"severity\" is set by the alerter", "reserved label"},
    {"receivers:\n  - {name: h, url: 'ftp://x'}\nrules: []\n",
     "t.yaml:2: receiver \"h\": url \"ftp://x\" is not an http:// or https:// URL", "bad url"},
    {"receivers:\n  - {name: p, type: pagerduty}\nrules: []\n",
     "t.yaml:2: receiver \"p\": missing required field \"routing_key\"", "pd key"},
    {RCV "policies:\n  - {name: p, tiers: [{receivers: [hook]}, {receivers: [hook]}]}\nrules: []\n",
     "t.yaml:4: policy \"p\" tier 1: \"timeout\" is required", "tier timeout"},
    {RCV "routes:\n  - {match: ['team=~(('], policy: x}\nrules: []\n",
     "t.yaml:4: route: matcher team=~\"((\": bad regular expression", "bad regex"},
    {RCV "maintenance:\n  - {match: {team: x}, start: yesterday, end: tomorrow}\nrules: []\n",
     "t.yaml:4: maintenance window: start \"yesterday\" is not an RFC 3339 time", "bad time"},
    {RCV "rules:\n  - {alert: A, type: absence, service: s, window: 5m, above: 1, "
         "severity: critical, receiver: hook}\n",
     "t.yaml:4: rule \"A\": absence rules take no above/below", "absence threshold"},
    {RCV "rules:\n  - {alert: A, type: burn_rate, service: s, slo: 1.5, severity: critical, "
         "receiver: hook}\n",
     "t.yaml:4: rule \"A\": slo must be in (0, 1)", "slo"},
    {RCV "rules:\n  - &a {alert: A}\n  - *a\n", "t.yaml:4: YAML anchors are not supported",
     "anchors"},
    {RCV "settings: {fallback: nobody}\nrules: []\n",
     "t.yaml:3: settings: fallback names unknown receiver \"nobody\"", "fallback"},
};

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[1024];
        alr_ruleset_t *s =
            alr_ruleset_load_data(bad[i].yaml, strlen(bad[i].yaml), "t.yaml", err, sizeof(err));
        if (s || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0) {
            print_error("case %zu (%s): got \"%s\"\n", i, bad[i].why, s ? "(loaded)" : err);
        }
        assert_null(s);
        assert_true(strncmp(err, bad[i].want, strlen(bad[i].want)) == 0);
    }
}

static void test_templates(void **state)
{
    (void)state;
    json_t *labels = json_pack("{s:s}", "service", "shop");
    alr_template_vars_t v = {true, 0.0723, 0.05, 300000, 60000, 1000, 72, labels};
    char *s = alr_template_render("{{ $labels.service }}: {{ $value | percent }} > "
                                  "{{ $threshold | percent }} over {{ $window }} ({{ $errors }}/"
                                  "{{ $count }}, {{ $value | printf \"%.2f\" }}) {{ $labels.none }}.",
                                  &v);
    assert_string_equal(s, "shop: 7.23% > 5% over 5m (72/1000, 0.07) .");
    free(s);
    v.has_value = false;
    s = alr_template_render("{{$value}}", &v);
    assert_string_equal(s, "no data");
    free(s);
    char err[256];
    assert_int_equal(alr_template_check("{{ $value | percent }}", err, sizeof(err)), 0);
    assert_true(alr_template_check("{{ $value", err, sizeof(err)) != 0);
    assert_true(alr_template_check("{{ $value | upper }}", err, sizeof(err)) != 0);
    assert_true(alr_template_check("{{ $labels.x | percent }}", err, sizeof(err)) != 0);
    json_decref(labels);
}

static void test_fingerprint_stable(void **state)
{
    (void)state;
    json_t *a = json_pack("{s:s, s:s}", "b", "2", "a", "1");
    json_t *b = json_pack("{s:s, s:s}", "a", "1", "b", "2");
    json_t *c = json_pack("{s:s, s:s}", "a", "1", "b", "3");
    assert_true(alr_labels_fingerprint(a) == alr_labels_fingerprint(b));
    assert_true(alr_labels_fingerprint(a) != alr_labels_fingerprint(c));
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_several_files(void **state)
{
    (void)state;
    char d[] = "/tmp/alr-rules-XXXXXX";
    assert_non_null(mkdtemp(d));
    char p1[256], p2[256], both[600];
    snprintf(p1, sizeof(p1), "%s/a.yaml", d);
    snprintf(p2, sizeof(p2), "%s/b.yaml", d);
    FILE *f = fopen(p1, "w");
    fputs(RCV "rules:\n  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.1, "
              "severity: critical, receiver: hook}\n", f);
    fclose(f);
    f = fopen(p2, "w");
    fputs("rules:\n  - {alert: B, type: absence, service: s, window: 5m, severity: critical, "
          "receiver: hook}\n  - {alert: C, type: absence, service: s, window: x, severity: "
          "critical}\n", f);
    fclose(f);
    snprintf(both, sizeof(both), "%s,%s", p1, p2);
    char err[1024];
    assert_null(alr_ruleset_load_file(both, err, sizeof(err)));
    char want[300];
    snprintf(want, sizeof(want), "%s:3: rule \"C\": bad duration", p2);
    if (strncmp(err, want, strlen(want)) != 0) {
        print_error("got %s\n", err);
    }
    assert_true(strncmp(err, want, strlen(want)) == 0);
    f = fopen(p2, "w");
    fputs("rules:\n  - {alert: B, type: absence, service: s, window: 5m, severity: critical, "
          "receiver: hook}\n", f);
    fclose(f);
    alr_ruleset_t *s = alr_ruleset_load_file(both, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(s->nrules, 2);
    alr_ruleset_destroy(&s);
    assert_null(alr_ruleset_load_file("/nonexistent/x.yaml", err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
    unlink(p1);
    unlink(p2);
    rmdir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_file_loads), cmocka_unit_test(test_every_type_loads),
        cmocka_unit_test(test_bad_files),          cmocka_unit_test(test_templates),
        cmocka_unit_test(test_fingerprint_stable), cmocka_unit_test(test_several_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
