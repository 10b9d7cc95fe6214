/*
 * The line-remembering YAML tree (alr_yaml): shapes and lines of nodes, quoted versus plain
 * scalars, nulls, and the refusals (anchors and aliases, nesting too deep, malformed
 * documents with their line).
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

#include "alr_yaml.h"

static alr_yaml_t *parse(const char *text, int *line, char *err, size_t errlen)
{
    *line = 0;
    err[0] = '\0';
    return alr_yaml_parse(text, strlen(text), line, err, errlen);
}

static void test_tree_and_lines(void **state)
{
    (void)state;
    const char *doc = "# a comment\n"
                      "settings:\n"
                      "  group_wait: 500ms\n"
                      "rules:\n"
                      "  - {alert: A, for: \"10s\"}\n"
                      "  - alert: B\n"
                      "    labels: {team: ~}\n";
    int line;
    char err[256];
    alr_yaml_t *root = parse(doc, &line, err, sizeof(err));
    assert_non_null(root);
    assert_int_equal(root->kind, ALR_YAML_MAP);
    assert_int_equal(root->len, 2);
    assert_int_equal(alr_yaml_key_line(root, "settings"), 2);
    assert_int_equal(alr_yaml_key_line(root, "rules"), 4);
    const alr_yaml_t *settings = alr_yaml_get(root, "settings");
    assert_non_null(settings);
    const alr_yaml_t *gw = alr_yaml_get(settings, "group_wait");
    assert_non_null(gw);
    assert_int_equal(gw->kind, ALR_YAML_SCALAR);
    assert_string_equal(gw->str, "500ms");
    assert_int_equal(gw->line, 3);
    assert_true(gw->plain);
    const alr_yaml_t *rules = alr_yaml_get(root, "rules");
    assert_int_equal(rules->kind, ALR_YAML_SEQ);
    assert_int_equal(rules->len, 2);
    assert_int_equal(rules->items[0]->line, 5);
    assert_int_equal(rules->items[1]->line, 6);
    const alr_yaml_t *f = alr_yaml_get(rules->items[0], "for");
    assert_string_equal(f->str, "10s");
    assert_false(f->plain); /* quoted */
    const alr_yaml_t *labels = alr_yaml_get(rules->items[1], "labels");
    assert_int_equal(alr_yaml_key_line(rules->items[1], "labels"), 7);
    assert_true(alr_yaml_is_null(alr_yaml_get(labels, "team")));
    /* Absent keys: NULL, and the map's own line. */
    assert_null(alr_yaml_get(root, "receivers"));
    assert_int_equal(alr_yaml_key_line(settings, "nope"), settings->line);
    alr_yaml_free(root);
}

static void test_nulls(void **state)
{
    (void)state;
    int line;
    char err[256];
    alr_yaml_t *root = parse("a: null\nb: ~\nc:\nd: 'null'\ne: \"\"\n", &line, err, sizeof(err));
    assert_non_null(root);
    assert_true(alr_yaml_is_null(alr_yaml_get(root, "a")));
    assert_true(alr_yaml_is_null(alr_yaml_get(root, "b")));
    assert_true(alr_yaml_is_null(alr_yaml_get(root, "c")));
    assert_false(alr_yaml_is_null(alr_yaml_get(root, "d"))); /* quoted: the text "null" */
    assert_false(alr_yaml_is_null(alr_yaml_get(root, "e"))); /* quoted empty string */
    alr_yaml_free(root);
}

static void test_empty_document(void **state)
{
    (void)state;
    int line;
    char err[256];
    assert_null(parse("", &line, err, sizeof(err)));
    assert_string_equal(err, "");
    assert_null(parse("# only a comment\n", &line, err, sizeof(err)));
    assert_string_equal(err, "");
}

typedef struct {
    const char *doc;
    int line; /* the line the error names */
} bad_case_t;

static void test_refusals(void **state)
{
    (void)state;
    static const bad_case_t cases[] = {
        {"a: &x 1\nb: *x\n", 1},                       /* anchors */
        {"a: 1\nb: *x\n", 2},                          /* an alias */
        {"a: 1\nb: [1, 2\n", 3},                       /* unclosed flow sequence */
        {"a: 1\n  b: 2\n", 2},                         /* bad indentation */
        {"a: 'unterminated\n", 2}, {"- a\nb: 1\n", 2}, /* a mapping after a sequence */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int line;
        char err[256];
        alr_yaml_t *root = parse(cases[i].doc, &line, err, sizeof(err));
        if (root || err[0] == '\0' || line != cases[i].line) {
            print_error("case %zu: root %p, line %d (want %d), err '%s'\n", i, (void *)root, line,
                        cases[i].line, err);
            alr_yaml_free(root);
            fail();
        }
    }
}

static void test_depth_limit(void **state)
{
    (void)state;
    /* ALR_YAML_DEPTH_MAX nested flow sequences are fine; one more is refused. */
    char doc[256];
    for (int depth = ALR_YAML_DEPTH_MAX - 1; depth <= ALR_YAML_DEPTH_MAX + 1; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++) {
            doc[n++] = '[';
        }
        for (int i = 0; i < depth; i++) {
            doc[n++] = ']';
        }
        doc[n] = '\0';
        int line;
        char err[256];
        alr_yaml_t *root = parse(doc, &line, err, sizeof(err));
        if (depth <= ALR_YAML_DEPTH_MAX - 1) {
            assert_non_null(root);
        } else if (depth == ALR_YAML_DEPTH_MAX + 1) {
            assert_null(root);
            assert_true(err[0] != '\0');
        }
        alr_yaml_free(root);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_and_lines), cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_empty_document), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_depth_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
