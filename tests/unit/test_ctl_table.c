/*
 * Unit tests for tools/ctl/ctl_table: alignment, widths in code points, cutting to the
 * terminal width with an ellipsis, and cleaning of text that could drive a terminal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_table.h"

static char *render(const char *const *headers, const ctl_align_t *aligns, size_t ncols,
                    const char *const *cells, size_t ncells, size_t width)
{
    ctl_table_t *t = ctl_table_new(ncols, headers, aligns);
    assert_non_null(t);
    for (size_t i = 0; i < ncells; i++) {
        assert_int_equal(ctl_table_add(t, cells[i]), 0);
    }
    char *out = ctl_table_render(t, width);
    assert_non_null(out);
    ctl_table_destroy(&t);
    ctl_table_destroy(&t); /* twice is safe */
    return out;
}

static void test_alignment_and_padding(void **state)
{
    (void)state;
    static const char *const h[] = {"NAME", "COUNT", "NOTE"};
    static const ctl_align_t a[] = {CTL_ALIGN_LEFT, CTL_ALIGN_RIGHT, CTL_ALIGN_LEFT};
    static const char *const cells[] = {"checkout", "12", "ok", "db", "12345", NULL};
    char *out = render(h, a, 3, cells, 6, 0);
    assert_string_equal(out, "NAME      COUNT  NOTE\n"
                             "checkout     12  ok\n"
                             "db        12345  -\n");
    free(out);
}

static void test_incomplete_row_is_padded(void **state)
{
    (void)state;
    static const char *const h[] = {"A", "B"};
    static const char *const cells[] = {"x", "y", "z"};
    char *out = render(h, NULL, 2, cells, 3, 0);
    assert_string_equal(out, "A  B\nx  y\nz  -\n");
    free(out);
}

static void test_width_counts_code_points(void **state)
{
    (void)state;
    static const char *const h[] = {"SVC", "V"};
    static const char *const cells[] = {"über", "1", "ab", "2"};
    char *out = render(h, NULL, 2, cells, 4, 0);
    /* "über" is 4 columns (5 bytes): "ab" pads to 4 columns, not 5. */
    assert_string_equal(out, "SVC   V\nüber  1\nab    2\n");
    free(out);
}

static void test_cut_to_width(void **state)
{
    (void)state;
    static const char *const h[] = {"ID", "MESSAGE"};
    static const char *const cells[] = {"1", "a very long message that does not fit", "2", "short"};
    char *out = render(h, NULL, 2, cells, 4, 20);
    /* "ID" column is 2 wide, separator 2, message cut to 16 columns ending with "…". */
    assert_string_equal(out, "ID  MESSAGE\n"
                             "1   a very long mes\xe2\x80\xa6\n"
                             "2   short\n");
    char *line = strchr(out, '\n') + 1;
    size_t cols = 0;
    for (const unsigned char *p = (const unsigned char *)line; *p != '\n'; p++) {
        cols += (*p & 0xc0) != 0x80;
    }
    assert_int_equal(cols, 20);
    free(out);
}

static void test_never_below_header_or_four(void **state)
{
    (void)state;
    static const char *const h[] = {"ENDPOINT", "X"};
    static const char *const cells[] = {"http://aggregator-1:7430", "yes"};
    char *out = render(h, NULL, 2, cells, 2, 5);
    /* Cannot fit in 5: ENDPOINT keeps 8 columns, X keeps its 3 ("yes" fits in min 4). */
    assert_string_equal(out, "ENDPOINT  X\nhttp://\xe2\x80\xa6  yes\n");
    free(out);
}

typedef struct {
    const char *in;
    const char *out;
} clean_case_t;

static void test_cleaning(void **state)
{
    (void)state;
    static const clean_case_t cases[] = {
        {"plain", "plain"},
        {"esc\x1b[31mred", "esc?[31mred"}, /* escape sequences cannot reach the terminal */
        {"tab\there", "tab?here"},
        {"nl\nx", "nl?x"},
        {"del\x7f", "del?"},
        {"bad\xff\xfe", "bad??"},        /* invalid UTF-8 */
        {"over\xc0\xafx", "over??x"},    /* overlong encoding */
        {"c1\xc2\x9bx", "c1??x"},        /* C1 control U+009B (CSI) */
        {"sur\xed\xa0\x80x", "sur???x"}, /* UTF-16 surrogate */
        {"ok ✓ é", "ok ✓ é"},
        {"trunc\xe2\x9c", "trunc??"}, /* cut sequence */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        ctl_text_clean(cases[i].in, buf, sizeof(buf));
        if (strcmp(buf, cases[i].out) != 0) {
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf, cases[i].out);
        }
    }
    /* Cutting to the buffer never splits a code point. */
    char small[4];
    ctl_text_clean("a✓b", small, sizeof(small)); /* ✓ is 3 bytes: does not fit after "a" */
    assert_string_equal(small, "a");
    ctl_text_clean(NULL, small, sizeof(small));
    assert_string_equal(small, "");
    assert_int_equal(ctl_text_width("ü✓x"), 3);
}

static void test_cells_are_cleaned_and_bounded(void **state)
{
    (void)state;
    static const char *const h[] = {"MSG"};
    ctl_table_t *t = ctl_table_new(1, h, NULL);
    assert_int_equal(ctl_table_add(t, "\x1b]0;title\x07"), 0);
    char *huge = malloc(CTL_TABLE_MAX_CELL * 2);
    memset(huge, 'y', CTL_TABLE_MAX_CELL * 2 - 1);
    huge[CTL_TABLE_MAX_CELL * 2 - 1] = '\0';
    assert_int_equal(ctl_table_addf(t, "%s", huge), 0);
    assert_int_equal(ctl_table_rows(t), 2);
    char *out = ctl_table_render(t, 0);
    assert_non_null(strstr(out, "?]0;title?\n"));
    assert_null(strchr(out, '\x1b'));
    assert_true(strlen(out) < CTL_TABLE_MAX_CELL + 64);
    free(out);
    free(huge);
    ctl_table_destroy(&t);
}

static void test_bad_column_counts(void **state)
{
    (void)state;
    assert_null(ctl_table_new(0, NULL, NULL));
    assert_null(ctl_table_new(CTL_TABLE_MAX_COLS + 1, NULL, NULL));
    ctl_table_t *t = ctl_table_new(CTL_TABLE_MAX_COLS, NULL, NULL);
    assert_non_null(t);
    ctl_table_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_padding),
        cmocka_unit_test(test_incomplete_row_is_padded),
        cmocka_unit_test(test_width_counts_code_points),
        cmocka_unit_test(test_cut_to_width),
        cmocka_unit_test(test_never_below_header_or_four),
        cmocka_unit_test(test_cleaning),
        cmocka_unit_test(test_cells_are_cleaned_and_bounded),
        cmocka_unit_test(test_bad_column_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
