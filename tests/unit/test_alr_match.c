/*
 * Label matchers (alr_match): the four operators, anchoring of regular expressions, absent
 * labels as the empty string, the string and JSON forms, selectivity, and refusals (bad
 * names, bad regexes, too long, too many). Table-driven.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "alr_match.h"
#include "tc_error.h"

static json_t *labels(void)
{
    return json_pack("{s:s, s:s, s:s}", "alertname", "ShopErrors", "service", "checkout",
                     "severity", "critical");
}

typedef struct {
    const char *matcher; /* string form */
    bool want;           /* matches labels() */
} match_case_t;

static void test_match_table(void **state)
{
    (void)state;
    static const match_case_t cases[] = {
        {"service=checkout", true},
        {"service=check", false},
        {"service!=checkout", false},
        {"service!=payments", true},
        {"service=~check.*", true},
        {"service=~check", false}, /* anchored at both ends */
        {"service=~.*out", true},
        {"service=~heck", false},
        {"severity=~error|critical", true}, /* alternation anchored as a whole */
        {"severity=~err|crit", false},
        {"service!~check.*", false},
        {"service!~pay.*", true},
        {"team=\"\"", true}, /* absent = empty string */
        {"team=", true},
        {"team!~.+", true},
        {"team=~.+", false},
        {"team!=", false},
        {"service=\"checkout\"", true}, /* quoted value */
        {"alertname=ShopErrors", true},
    };
    json_t *l = labels();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        alr_matchers_t m = {0};
        char err[256] = "";
        int rc = alr_matchers_add_string(&m, cases[i].matcher, err, sizeof(err));
        if (rc != 0) {
            print_error("%s: %s\n", cases[i].matcher, err);
        }
        assert_int_equal(rc, 0);
        if (alr_matchers_match(&m, l) != cases[i].want) {
            print_error("case %zu: %s should %smatch\n", i, cases[i].matcher,
                        cases[i].want ? "" : "not ");
            fail();
        }
        alr_matchers_fini(&m);
    }
    json_decref(l);
}

static void test_all_must_match(void **state)
{
    (void)state;
    json_t *l = labels();
    alr_matchers_t m = {0};
    char err[256];
    assert_true(alr_matchers_match(&m, l)); /* empty: everything */
    assert_int_equal(alr_matchers_add_string(&m, "service=checkout", err, sizeof(err)), 0);
    assert_int_equal(
        alr_matchers_add(&m, "severity", ALR_MATCH_RE, "warning|critical", err, sizeof(err)), 0);
    assert_true(alr_matchers_match(&m, l));
    assert_int_equal(alr_matchers_add(&m, "team", ALR_MATCH_EQ, "pay", err, sizeof(err)), 0);
    assert_false(alr_matchers_match(&m, l));
    alr_matchers_fini(&m);
    assert_int_equal(m.len, 0);
    assert_true(alr_matchers_match(&m, l)); /* reusable after fini */
    json_decref(l);
}

static void test_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1service=x",   /* label name must not start with a digit */
        "ser-vice=x",   /* nor hold '-' */
        "=x",           /* no name */
        "service",      /* no operator */
        "service=~(",   /* bad regex */
        "service!~[a-", /* bad regex */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        alr_matchers_t m = {0};
        char err[256] = "";
        int rc = alr_matchers_add_string(&m, bad[i], err, sizeof(err));
        if (rc != TC_EINVAL) {
            print_error("%s: accepted\n", bad[i]);
        }
        assert_int_equal(rc, TC_EINVAL);
        assert_true(err[0] != '\0');
        assert_int_equal(m.len, 0);
        alr_matchers_fini(&m);
    }
    /* A value too long, and one matcher too many. */
    char longv[ALR_MATCH_VALUE_MAX + 2];
    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    alr_matchers_t m = {0};
    char err[256];
    assert_int_equal(alr_matchers_add(&m, "service", ALR_MATCH_EQ, longv, err, sizeof(err)),
                     TC_EINVAL);
    for (int i = 0; i < ALR_MATCHERS_MAX; i++) {
        assert_int_equal(alr_matchers_add(&m, "service", ALR_MATCH_NE, "x", err, sizeof(err)), 0);
    }
    assert_int_equal(alr_matchers_add(&m, "service", ALR_MATCH_NE, "x", err, sizeof(err)),
                     TC_EINVAL);
    alr_matchers_fini(&m);
}

static void test_selective(void **state)
{
    (void)state;
    static const struct {
        const char *matcher;
        bool selective;
    } cases[] = {
        {"service=checkout", true}, {"service=~.*", false}, {"service!=x", false},
        {"service=~.+", true},      {"team=", false},       {"service!~.*", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        alr_matchers_t m = {0};
        char err[256];
        assert_int_equal(alr_matchers_add_string(&m, cases[i].matcher, err, sizeof(err)), 0);
        if (alr_matchers_selective(&m) != cases[i].selective) {
            print_error("%s: selective should be %d\n", cases[i].matcher, cases[i].selective);
            fail();
        }
        alr_matchers_fini(&m);
    }
}

static void test_json_round_trip(void **state)
{
    (void)state;
    alr_matchers_t m = {0};
    char err[256];
    json_t *in = json_pack("[{s:s, s:s, s:s}, s]", "name", "service", "op", "=~", "value",
                           "check.*", "severity!=info");
    assert_int_equal(alr_matchers_from_json(&m, in, err, sizeof(err)), 0);
    assert_int_equal(m.len, 2);
    assert_int_equal(m.items[1].op, ALR_MATCH_NE);
    json_t *out = alr_matchers_json(&m);
    assert_non_null(out);
    json_t *want = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "name", "service", "op", "=~",
                             "value", "check.*", "name", "severity", "op", "!=", "value", "info");
    assert_true(json_equal(out, want));
    alr_matchers_t back = {0};
    assert_int_equal(alr_matchers_from_json(&back, out, err, sizeof(err)), 0);
    json_t *l = labels();
    assert_int_equal(alr_matchers_match(&m, l), alr_matchers_match(&back, l));
    assert_true(alr_matchers_match(&back, l));
    json_decref(l);
    json_decref(in);
    json_decref(out);
    json_decref(want);
    alr_matchers_fini(&m);
    alr_matchers_fini(&back);

    /* Not an array, an unknown operator, a number as value. */
    static const char *const bad[] = {"{}", "[{\"name\":\"a\",\"op\":\"~\",\"value\":\"b\"}]",
                                      "[{\"name\":\"a\",\"op\":\"=\",\"value\":3}]", "[7]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_error_t jerr;
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, &jerr);
        assert_non_null(j);
        alr_matchers_t x = {0};
        err[0] = '\0';
        assert_int_equal(alr_matchers_from_json(&x, j, err, sizeof(err)), TC_EINVAL);
        assert_true(err[0] != '\0');
        alr_matchers_fini(&x);
        json_decref(j);
    }
}

static void test_op_names(void **state)
{
    (void)state;
    static const char *const names[] = {"=", "!=", "=~", "!~"};
    for (int i = 0; i < 4; i++) {
        alr_match_op_t op;
        assert_int_equal(alr_match_op_parse(names[i], &op), 0);
        assert_int_equal((int)op, i);
        assert_string_equal(alr_match_op_name(op), names[i]);
    }
    alr_match_op_t op;
    assert_int_equal(alr_match_op_parse("==", &op), TC_EINVAL);
    assert_int_equal(alr_match_op_parse("", &op), TC_EINVAL);
    assert_true(alr_label_name_ok("_a1"));
    assert_false(alr_label_name_ok(""));
    assert_false(alr_label_name_ok("a.b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),     cmocka_unit_test(test_all_must_match),
        cmocka_unit_test(test_refusals),        cmocka_unit_test(test_selective),
        cmocka_unit_test(test_json_round_trip), cmocka_unit_test(test_op_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
