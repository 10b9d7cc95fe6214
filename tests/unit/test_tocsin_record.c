/* Unit tests for clients/c/src/tocsin_record.c: UTF-8 sanitising copy, inline strings,
 * truncation at character boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_record.h"

typedef struct {
    const char *name;
    const char *in;
    size_t in_len;
    size_t cap;
    const char *want;
    bool want_truncated;
} utf8_case_t;

static void test_utf8_copy_table(void **state)
{
    (void)state;
    static const utf8_case_t cases[] = {
        {"ascii", "hello", 5, 16, "hello", false},
        {"empty", "", 0, 16, "", false},
        {"two-byte", "caf\xc3\xa9", 5, 16, "caf\xc3\xa9", false},
        {"three-byte", "\xe2\x82\xac", 3, 16, "\xe2\x82\xac", false},
        {"four-byte", "\xf0\x9f\x94\xa5", 4, 16, "\xf0\x9f\x94\xa5", false},
        {"lone continuation",
         "a\x80"
         "b",
         3, 16, "a?b", false},
        {"latin-1 byte", "caf\xe9!", 5, 16, "caf?!", false},
        {"overlong two-byte", "\xc0\xaf", 2, 16, "??", false},
        {"overlong three-byte", "\xe0\x80\xaf", 3, 16, "???", false},
        {"surrogate", "\xed\xa0\x80", 3, 16, "???", false},
        {"above U+10FFFF", "\xf4\x90\x80\x80", 4, 16, "????", false},
        {"f5 lead", "\xf5\x80\x80\x80", 4, 16, "????", false},
        {"cut sequence at end", "ab\xe2\x82", 4, 16, "ab??", false},
        {"truncated ascii", "abcdef", 6, 4, "abcd", true},
        {"no split of a character", "ab\xe2\x82\xac", 5, 4, "ab", true},
        {"exact fit", "ab\xe2\x82\xac", 5, 5, "ab\xe2\x82\xac", false},
        {"truncated after replacement", "\xff\xff\xff", 3, 2, "??", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const utf8_case_t *c = &cases[i];
        char out[32];
        memset(out, 'X', sizeof(out));
        bool truncated = !c->want_truncated;
        size_t n = tocsin_utf8_copy(out, c->cap, c->in, c->in_len, &truncated);
        out[n] = '\0';
        if (strcmp(out, c->want) != 0 || truncated != c->want_truncated) {
            fail_msg("case %s: got \"%s\" truncated=%d", c->name, out, truncated);
        }
        assert_true(n <= c->cap);
    }
}

static void test_record_strings(void **state)
{
    (void)state;
    tocsin_record_t rec;
    tocsin_record_begin(&rec, TOCSIN_RECORD_REQUEST, 1234);
    tocsin_record_put(&rec, "/users/:id", 10);
    tocsin_record_put(&rec, "GET", 3);
    assert_int_equal(rec.kind, TOCSIN_RECORD_REQUEST);
    assert_int_equal(rec.time_us, 1234);
    assert_int_equal(rec.nstr, 2);
    assert_string_equal(tocsin_record_str(&rec, 0), "/users/:id");
    assert_string_equal(tocsin_record_str(&rec, 1), "GET");
    assert_string_equal(tocsin_record_str(&rec, 2), "");
    assert_int_equal(rec.flags & TOCSIN_RECORD_TRUNCATED, 0);
    assert_int_equal(tocsin_record_size(&rec), offsetof(tocsin_record_t, text) + 11 + 4);

    /* A copy of the used prefix is a complete record. */
    tocsin_record_t copy;
    memset(&copy, 0xAB, sizeof(copy));
    memcpy(&copy, &rec, tocsin_record_size(&rec));
    assert_string_equal(tocsin_record_str(&copy, 0), "/users/:id");
    assert_string_equal(tocsin_record_str(&copy, 1), "GET");
}

static void test_record_message_truncated(void **state)
{
    (void)state;
    char type[TOCSIN_NAME_MAX + 1];
    memset(type, 'T', TOCSIN_NAME_MAX);
    type[TOCSIN_NAME_MAX] = '\0';
    /* A message of multi-byte characters, far longer than a slot. */
    char message[3 * 400 + 1];
    for (int i = 0; i < 400; i++) {
        memcpy(message + 3 * i, "\xe2\x82\xac", 3);
    }
    message[3 * 400] = '\0';

    tocsin_record_t rec;
    tocsin_record_begin(&rec, TOCSIN_RECORD_ERROR, 1);
    tocsin_record_put(&rec, type, TOCSIN_NAME_MAX);
    tocsin_record_put(&rec, message, strlen(message));
    assert_true(rec.flags & TOCSIN_RECORD_TRUNCATED);
    assert_string_equal(tocsin_record_str(&rec, 0), type);
    const char *m = tocsin_record_str(&rec, 1);
    size_t len = strlen(m);
    assert_true(len >= TOCSIN_MESSAGE_MIN - 2); /* whole characters only */
    assert_int_equal(len % 3, 0);
    assert_memory_equal(m, message, len);
    assert_true(rec.used <= TOCSIN_RECORD_TEXT);
    assert_int_equal(tocsin_record_size(&rec), offsetof(tocsin_record_t, text) + rec.used);
}

static void test_record_two_longest_names_fit(void **state)
{
    (void)state;
    char name[TOCSIN_NAME_MAX + 1];
    memset(name, 'n', TOCSIN_NAME_MAX);
    name[TOCSIN_NAME_MAX] = '\0';
    tocsin_record_t rec;
    tocsin_record_begin(&rec, TOCSIN_RECORD_METRIC, 1);
    tocsin_record_put(&rec, name, TOCSIN_NAME_MAX);
    tocsin_record_put(&rec, name, TOCSIN_NAME_MAX);
    assert_int_equal(rec.flags & TOCSIN_RECORD_TRUNCATED, 0);
    assert_string_equal(tocsin_record_str(&rec, 0), name);
    assert_string_equal(tocsin_record_str(&rec, 1), name);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_copy_table),
        cmocka_unit_test(test_record_strings),
        cmocka_unit_test(test_record_message_truncated),
        cmocka_unit_test(test_record_two_longest_names_fit),
    };
    return cmocka_run_group_tests_name("tocsin_record", tests, NULL, NULL);
}
