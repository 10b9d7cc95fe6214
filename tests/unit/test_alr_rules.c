/* Rule files: the shipped example parses; every kind of bad file is rejected whole with
 * the file, the line and the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "alr_rules.h"

#define RECEIVERS "receivers:\n  - name: local\n    webhook: http://127.0.0.1:7450/hook\n"

static const char good[] = RECEIVERS
    "rules:\n"
    "  - alert: HighErrors\n"
    "    type: error_rate\n"
    "    service: checkout\n"
    "    window: 5m\n"
    "    above: 0.01\n"
    "    for: 30s\n"
    "    severity: warning\n"
    "    receiver: local\n"
    "    labels: {team: pay, tier: \"1\"}\n"
    "    annotations:\n"
    "      summary: too many errors\n"
    "  - alert: RouteErrors\n"
    "    type: error_rate\n"
    "    service: checkout\n"
    "    name: /pay\n"
    "    environment: prod\n"
    "    window: 1m\n"
    "    above: 0\n"
    "    min_count: 50\n"
    "    severity: critical\n"
    "    receiver: local\n";

static void test_shipped_example(void **state)
{
    (void)state;
    char err[512];
    alr_ruleset_t *set =
        alr_ruleset_load_file(TOCSIN_SOURCE_DIR "/deploy/local/rules.yaml", err, sizeof(err));
    assert_non_null(set);
    assert_int_equal(set->nreceivers, 1);
    assert_string_equal(set->receivers[0].name, "local");
    assert_string_equal(set->receivers[0].webhook, "http://127.0.0.1:7450/hook");
    assert_int_equal(set->nrules, 1);
    const alr_rule_t *r = &set->rules[0];
    assert_string_equal(r->alert, "DemoHighErrorRate");
    assert_int_equal(r->type, ALR_RULE_ERROR_RATE);
    assert_string_equal(r->service, "demo");
    assert_string_equal(r->name, "*");
    assert_string_equal(r->environment, "");
    assert_int_equal(r->window_ms, 60000);
    assert_true(r->above == 0.05);
    assert_int_equal(r->for_ms, 10000);
    assert_int_equal(r->min_count, 20);
    assert_int_equal(r->severity, ALR_SEVERITY_CRITICAL);
    assert_int_equal(r->receiver, 0);
    assert_int_equal(r->labels.len, 1);
    assert_string_equal(r->labels.items[0].key, "team");
    assert_string_equal(r->labels.items[0].value, "demo");
    assert_int_equal(r->annotations.len, 1);
    assert_string_equal(r->annotations.items[0].key, "summary");
    assert_string_equal(r->annotations.items[0].value, "Error rate of demo above 5 % for 10 s");
    assert_int_equal(r->line, 5);
    assert_int_equal(strlen(r->fingerprint_hex), 16);
    assert_int_equal(alr_ruleset_max_window_ms(set), 60000);
    alr_ruleset_destroy(&set);
    assert_null(set);
    alr_ruleset_destroy(&set); /* safe twice */
}

static void test_good_defaults_and_labels(void **state)
{
    (void)state;
    char err[512];
    alr_ruleset_t *set = alr_ruleset_load_data(good, strlen(good), "good.yaml", err, sizeof(err));
    assert_non_null(set);
    assert_int_equal(set->nrules, 2);
    const alr_rule_t *a = &set->rules[0], *b = &set->rules[1];
    assert_string_equal(a->name, "*");
    assert_string_equal(a->environment, "");
    assert_int_equal(a->min_count, 1);
    assert_int_equal(a->window_ms, 300000);
    assert_int_equal(a->for_ms, 30000);
    assert_int_equal(a->labels.len, 2);
    assert_string_equal(a->labels.items[0].key, "team"); /* sorted */
    assert_string_equal(a->labels.items[1].key, "tier");
    assert_string_equal(a->labels.items[1].value, "1");
    assert_string_equal(b->name, "/pay");
    assert_string_equal(b->environment, "prod");
    assert_int_equal(b->min_count, 50);
    assert_int_equal(b->for_ms, 0);
    assert_true(b->above == 0.0);
    assert_int_equal(b->labels.len, 0);
    assert_int_equal(a->line, 5);
    assert_int_equal(b->line, 16);
    assert_int_equal(alr_ruleset_max_window_ms(set), 300000);
    assert_int_equal(alr_ruleset_find(set, b->fingerprint), 1);
    assert_int_equal(alr_ruleset_find(set, 12345), -1);

    json_t *labels = alr_rule_labels_json(a);
    assert_string_equal(json_string_value(json_object_get(labels, "alertname")), "HighErrors");
    assert_string_equal(json_string_value(json_object_get(labels, "service")), "checkout");
    assert_string_equal(json_string_value(json_object_get(labels, "severity")), "warning");
    assert_string_equal(json_string_value(json_object_get(labels, "team")), "pay");
    assert_true(alr_labels_fingerprint(labels) == a->fingerprint);
    json_decref(labels);

    json_t *doc = alr_ruleset_to_json(set);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "file")), "good.yaml");
    json_t *r0 = json_array_get(json_object_get(doc, "rules"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "window")), "5m");
    assert_string_equal(json_string_value(json_object_get(r0, "receiver")), "local");
    json_decref(doc);
    alr_ruleset_destroy(&set);
}

/* Identity is alertname + labels: a new threshold keeps it, a new label changes it. */
static void test_identity(void **state)
{
    (void)state;
    char err[512];
#define BASE                                                                                \
    RECEIVERS "rules:\n  - alert: A\n    type: error_rate\n    service: s\n"                 \
              "    window: 1m\n    above: %s\n    severity: info\n"                           \
              "    receiver: local\n    labels: {%s}\n"
    char y1[1024], y2[1024], y3[1024];
    snprintf(y1, sizeof(y1), BASE, "0.1", "a: b");
    snprintf(y2, sizeof(y2), BASE, "0.2", "a: b");
    snprintf(y3, sizeof(y3), BASE, "0.1", "a: c");
    alr_ruleset_t *s1 = alr_ruleset_load_data(y1, strlen(y1), "1", err, sizeof(err));
    alr_ruleset_t *s2 = alr_ruleset_load_data(y2, strlen(y2), "2", err, sizeof(err));
    alr_ruleset_t *s3 = alr_ruleset_load_data(y3, strlen(y3), "3", err, sizeof(err));
    assert_non_null(s1);
    assert_non_null(s2);
    assert_non_null(s3);
    assert_true(s1->rules[0].fingerprint == s2->rules[0].fingerprint);
    assert_true(s1->rules[0].fingerprint != s3->rules[0].fingerprint);
    alr_ruleset_destroy(&s1);
    alr_ruleset_destroy(&s2);
    alr_ruleset_destroy(&s3);
}

/* A valid rule, written with one field replaced (or dropped with an empty value). */
static void rule_with(char *out, size_t len, const char *field, const char *value)
{
    static const char *const fields[][2] = {
        {"alert", "X"},        {"type", "error_rate"}, {"service", "s"},
        {"window", "1m"},      {"above", "0.05"},      {"for", "10s"},
        {"severity", "critical"}, {"receiver", "local"}};
    size_t n = (size_t)snprintf(out, len, RECEIVERS "rules:\n  - ");
    bool first = true;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = strcmp(fields[i][0], field) == 0 ? value : fields[i][1];
        if (!v) {
            continue;
        }
        n += (size_t)snprintf(out + n, len - n, "%s%s: %s\n", first ? "" : "    ",
                              fields[i][0], v);
        first = false;
    }
    if (strcmp(field, "extra") == 0) {
        snprintf(out + n, len - n, "    %s\n", value);
    }
}

typedef struct {
    const char *what;
    const char *field; /* replaced field, "extra" for an added line, NULL for `yaml` */
    const char *value;
    const char *yaml;  /* a whole file when field is NULL */
    int line;          /* expected line in the message; 0: no line expected */
    const char *reason;
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"unknown receiver", "receiver", "pager", NULL, 12, "unknown receiver \"pager\""},
    {"bad window duration", "window", "1x", NULL, 8, "bad duration \"1x\" for window"},
    {"zero window", "window", "0s", NULL, 8, "bad duration"},
    {"bad for duration", "for", "-5s", NULL, 10, "bad duration \"-5s\" for `for`"},
    {"missing service", "service", NULL, NULL, 5, "Missing required mapping field: service"},
    {"missing alert", "alert", NULL, NULL, 5, "Missing required mapping field: alert"},
    {"threshold above 1", "above", "1.5", NULL, 9, "out of range"},
    {"negative threshold", "above", "-0.1", NULL, 9, "out of range"},
    {"threshold not a number", "above", "lots", NULL, 9, "Invalid FLOAT value"},
    {"threshold nan", "above", "nan", NULL, 9, "above=nan out of range"},
    {"threshold inf", "above", "inf", NULL, 9, "above=inf out of range"},
    {"unknown type", "type", "latency", NULL, 6, "unknown type \"latency\""},
    {"bad severity", "severity", "urgent", NULL, 11, "severity \"urgent\""},
    {"unknown key", "extra", "treshold: 3", NULL, 13, "Unexpected key: treshold"},
    {"unknown receiver key", NULL, NULL, RECEIVERS "    token: x\nrules: []\n", 4,
     "Unexpected key: token"},
    {"unknown top-level key", NULL, NULL, "rules: []\nroutes: []\n", 2,
     "Unexpected key: routes"},
    {"bad label name", "extra", "labels: {1team: a}", NULL, 13, "label name \"1team\""},
    {"reserved label", "extra", "labels: {severity: low}", NULL, 13, "set by the alerter"},
    {"labels not a map", "extra", "labels: [a, b]", NULL, 13, "must be a mapping"},
    {"nested label value", "extra", "labels: {a: {b: c}}", NULL, 13, "must be a string"},
    {"duplicate label", "extra", "labels: {a: b, a: c}", NULL, 13, "appears twice"},
    {"min_count not a number", "extra", "min_count: many", NULL, 13, "Invalid"},
    {"syntax error", NULL, NULL, RECEIVERS "rules:\n  - alert: [unclosed\n", 6, "YAML syntax error"},
    {"tab indentation", NULL, NULL, "rules:\n\t- alert: x\n", 2, "YAML syntax error"},
    {"alias", NULL, NULL,
     RECEIVERS "x: &a 1\nrules:\n  - alert: *a\n", 6, "aliases are not supported"},
    {"duplicate receiver", NULL, NULL,
     RECEIVERS "  - name: local\n    webhook: http://x/\nrules: []\n", 4,
     "receiver \"local\" is defined twice"},
    {"bad webhook", NULL, NULL,
     "receivers:\n  - name: r\n    webhook: ftp://x/\nrules: []\n", 2,
     "not an http:// or https:// URL"},
    {"duplicate identity", NULL, NULL,
     RECEIVERS "rules:\n"
               "  - {alert: A, type: error_rate, service: s, window: 1m, above: 0.1, severity: info, receiver: local}\n"
               "  - {alert: A, type: error_rate, service: s, window: 5m, above: 0.2, severity: info, receiver: local}\n",
     6, "same alertname and labels as the rule on line 5"},
    {"no rules key", NULL, NULL, RECEIVERS, 0, "Missing required mapping field: rules"},
    {"empty file", NULL, NULL, "", 0, "empty file"},
    {"two documents", NULL, NULL, "rules: []\n---\nrules: []\n", 2, "one YAML document"},
    {"not a mapping", NULL, NULL, "- a\n- b\n", 1, "must be a mapping"},
    {"a bare scalar", NULL, NULL, "\nhello\n", 2, "must be a mapping"},
};

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        char yaml[2048];
        if (c->field) {
            rule_with(yaml, sizeof(yaml), c->field, c->value);
        } else {
            snprintf(yaml, sizeof(yaml), "%s", c->yaml);
        }
        char err[512] = "";
        alr_ruleset_t *set = alr_ruleset_load_data(yaml, strlen(yaml), "bad.yaml", err,
                                                   sizeof(err));
        if (set || !strstr(err, c->reason)) {
            print_error("case \"%s\": got %s\n  error: %s\n  file:\n%s\n", c->what,
                        set ? "a rule set" : "NULL", err, yaml);
        }
        assert_null(set);
        assert_non_null(strstr(err, c->reason));
        char prefix[64];
        if (c->line > 0) {
            snprintf(prefix, sizeof(prefix), "bad.yaml:%d: ", c->line);
        } else {
            snprintf(prefix, sizeof(prefix), "bad.yaml: ");
        }
        if (strncmp(err, prefix, strlen(prefix)) != 0) {
            print_error("case \"%s\": expected prefix \"%s\", got \"%s\"\n", c->what, prefix,
                        err);
        }
        assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
    }
}

static void test_file_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(alr_ruleset_load_file("/nonexistent/rules.yaml", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/rules.yaml: cannot open"));
    const char nul[] = "rules: []\n\0\n";
    assert_null(alr_ruleset_load_data(nul, sizeof(nul) - 1, "nul.yaml", err, sizeof(err)));
    assert_non_null(strstr(err, "NUL"));
    assert_null(alr_ruleset_load_data(nul, ALR_RULES_FILE_MAX + 1, "big.yaml", err,
                                      sizeof(err)));
    assert_non_null(strstr(err, "above"));
    /* An empty rule list is a valid file. */
    alr_ruleset_t *set = alr_ruleset_load_data("rules: []\n", 10, "e.yaml", err, sizeof(err));
    assert_non_null(set);
    assert_int_equal(set->nrules, 0);
    assert_int_equal(alr_ruleset_max_window_ms(set), 0);
    alr_ruleset_destroy(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_example), cmocka_unit_test(test_good_defaults_and_labels),
        cmocka_unit_test(test_identity),        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
