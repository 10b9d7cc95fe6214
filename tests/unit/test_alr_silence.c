/*
 * alr_silence and alr_match: Alertmanager-style matchers (=, !=, =~, !~, anchored
 * regexes, absent labels as ""), silences from the API (validation, states, expiry,
 * persistence) and from the rule file's maintenance windows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "alr_silence.h"
#include "tc_error.h"

#define S 1000000LL
#define T (1800000000LL * S)

static void test_matchers(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        bool match;
    } cases[] = {{"service=shop", true},       {"service!=shop", false},
                 {"service=~sh.*", true},      {"service=~sh", false}, /* anchored */
                 {"service!~pay|web", true},   {"team=\"\"", true},   /* absent is "" */
                 {"team!~.+", true},           {"severity=~critical|error", true},
                 {" service = shop ", true}};
    json_t *labels = json_pack("{s:s, s:s}", "service", "shop", "severity", "critical");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        alr_matchers_t m = {0};
        char err[200];
        assert_int_equal(alr_matchers_add_string(&m, cases[i].m, err, sizeof(err)), 0);
        if (alr_matchers_match(&m, labels) != cases[i].match) {
            print_error("case %s\n", cases[i].m);
        }
        assert_true(alr_matchers_match(&m, labels) == cases[i].match);
        alr_matchers_fini(&m);
    }
    alr_matchers_t m = {0};
    char err[200];
    assert_int_not_equal(alr_matchers_add_string(&m, "1abc=x", err, sizeof(err)), 0);
    assert_int_not_equal(alr_matchers_add_string(&m, "a=~(", err, sizeof(err)), 0);
    assert_int_not_equal(alr_matchers_add_string(&m, "novalue", err, sizeof(err)), 0);
    json_t *arr = json_pack("[{s:s, s:s, s:b, s:b}]", "name", "service", "value", "sh.*",
                            "isRegex", 1, "isEqual", 0);
    assert_int_equal(alr_matchers_from_json(&m, arr, err, sizeof(err)), 0);
    assert_int_equal(m.items[0].op, ALR_MATCH_NRE);
    assert_false(alr_matchers_match(&m, labels));
    json_decref(arr);
    alr_matchers_fini(&m);
    json_decref(labels);
}

static void test_silences(void **state)
{
    (void)state;
    alr_silences_t *ss = alr_silences_new();
    json_t *labels = json_pack("{s:s}", "service", "shop");
    int status;
    char err[256];
    json_t *b = json_pack("{s:[s], s:s, s:s}", "matchers", "service=shop", "starts_at",
                          "2027-01-15T08:00:10Z", "ends_at", "2027-01-15T08:01:00Z");
    const alr_silence_t *s = alr_silences_create(ss, b, 0xabc, T, &status, err, sizeof(err));
    json_decref(b);
    assert_non_null(s);
    assert_int_equal(status, 201);
    char id[17];
    strcpy(id, s->id);
    assert_string_equal(alr_silence_state(s, T), "pending");
    assert_null(alr_silences_match(ss, labels, T));
    assert_string_equal(alr_silences_match(ss, labels, T + 10 * S), id);
    assert_true(alr_silences_changed_between(ss, T, T + 10 * S));
    assert_int_equal(alr_silences_next_edge(ss, T), T + 10 * S);
    /* Persisted and restored. */
    json_t *doc = alr_silence_state_json(s);
    alr_silences_t *copy = alr_silences_new();
    assert_int_equal(alr_silences_restore(copy, doc), 0);
    assert_string_equal(alr_silences_match(copy, labels, T + 20 * S), id);
    json_decref(doc);
    alr_silences_destroy(&copy);
    assert_int_equal(alr_silences_expire(ss, id, T + 20 * S), 0);
    assert_null(alr_silences_match(ss, labels, T + 30 * S));
    assert_int_equal(alr_silences_expire(ss, "0000000000000000", T), TC_ENOTFOUND);
    /* Bad bodies. */
    static const char *const bad[] = {
        "{\"matchers\": [], \"duration\": \"1h\"}",
        "{\"matchers\": [\"service=~.*\"], \"duration\": \"1h\"}",
        "{\"matchers\": [\"service=shop\"]}",
        "{\"matchers\": [\"service=shop\"], \"duration\": \"soon\"}",
        "{\"matchers\": [\"service=shop\"], \"ends_at\": \"2020-01-01T00:00:00Z\"}",
        "{\"matchers\": \"service=shop\", \"duration\": \"1h\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *jb = json_loads(bad[i], 0, NULL);
        assert_null(alr_silences_create(ss, jb, 1, T, &status, err, sizeof(err)));
        assert_int_equal(status, 400);
        json_decref(jb);
    }
    /* Expired silences are forgotten after a while; the id is reported for deletion. */
    alr_silences_prune(ss, T + ALR_SILENCE_KEEP_US + 100 * S);
    size_t n;
    alr_silences_removed(ss, &n);
    assert_int_equal(n, 1);
    assert_int_equal(alr_silences_count(ss), 0);
    json_decref(labels);
    alr_silences_destroy(&ss);
    alr_silences_destroy(&ss);
}

static void test_maintenance_from_file(void **state)
{
    (void)state;
    const char *yaml = "receivers:\n  - {name: h, url: 'http://x/'}\n"
                       "maintenance:\n  - {match: ['service=~shop|pay'], start: "
                       "'2027-01-15T08:00:00Z', end: '2027-01-15T09:00:00Z', comment: db}\n"
                       "rules: []\n";
    char err[512];
    alr_ruleset_t *rs = alr_ruleset_load_data(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
    assert_non_null(rs);
    alr_silences_t *ss = alr_silences_new();
    assert_int_equal(alr_silences_set_file(ss, rs), 0);
    json_t *labels = json_pack("{s:s}", "service", "pay");
    assert_non_null(alr_silences_match(ss, labels, T + 60 * S));
    const char *id = alr_silences_match(ss, labels, T + 60 * S);
    char idc[17];
    strcpy(idc, id);
    assert_int_equal(alr_silences_expire(ss, idc, T), TC_ESTATE);
    assert_int_equal(alr_silences_set_file(ss, NULL), 0);
    assert_null(alr_silences_match(ss, labels, T + 60 * S));
    json_decref(labels);
    alr_silences_destroy(&ss);
    alr_ruleset_destroy(&rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matchers),
        cmocka_unit_test(test_silences),
        cmocka_unit_test(test_maintenance_from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
