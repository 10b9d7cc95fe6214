/*
 * Unit tests for common/tc_util: durations, sizes, UTF-8, byte order, hex, strlcpy,
 * RFC 3339 times and mkdir_p.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_util.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- durations ---- */

static void test_duration_parse_valid(void **state)
{
    static const struct {
        const char *text;
        int64_t ms;
    } cases[] = {
        {"250ms", 250},     {"10s", 10000},    {"5m", 300000},    {"1h", 3600000},
        {"1h30m", 5400000}, {"1m30s", 90000},  {"1.5s", 1500},    {"1.25s", 1250},
        {"0.5m", 30000},    {"2d", 172800000}, {"1w", 604800000}, {"1d2h3m4s5ms", 93784005},
        {"10", 10000}, /* a bare number is seconds */
        {"0", 0},           {"0ms", 0},        {"007s", 7000},    {"100000d", 8640000000000},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t ms = -1;
        int rc = tc_duration_parse(cases[i].text, &ms);
        if (rc != 0 || ms != cases[i].ms) {
            fail_msg("\"%s\": rc %d, %lld ms, expected %lld ms", cases[i].text, rc, (long long)ms,
                     (long long)cases[i].ms);
        }
    }
}

static void test_duration_parse_invalid(void **state)
{
    static const char *cases[] = {
        "",
        "-1s",
        "+1s",
        "1x",
        "1h30", /* a bare number after a unit is ambiguous */
        "inf",
        "nan",
        "0x10s",
        "1e3s",
        ".5s",
        "1.s",
        "s",
        "ms",
        "10 s",
        " 10s",
        "10s ",
        "1h-30m",
        "1,5s",
        "5M",
        "1hh",
        "1mss",
        "9999999999999999999999999999s", /* overflow */
        "200000000000d",                 /* overflow */
        "106751991167d",                 /* INT64_MAX ms is about 106751991167 days */
        "9223372036854775808ms",
        "999999999999h999999999999h999999999999h",
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t ms = 12345;
        int rc = tc_duration_parse(cases[i], &ms);
        if (rc != TC_EINVAL) {
            fail_msg("\"%s\": rc %d (%lld ms), expected TC_EINVAL", cases[i], rc, (long long)ms);
        }
    }
    int64_t ms;
    assert_int_equal(tc_duration_parse(NULL, &ms), TC_EINVAL);
    assert_int_equal(tc_duration_parse("1s", NULL), TC_EINVAL);
}

static void test_duration_format(void **state)
{
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "0ms"},       {1, "1ms"},        {250, "250ms"},    {1500, "1500ms"},  {1000, "1s"},
        {10000, "10s"},   {90000, "90s"},    {300000, "5m"},    {5400000, "90m"},  {3600000, "1h"},
        {86400000, "1d"}, {172800000, "2d"}, {90000000, "25h"}, {604800000, "7d"}, {-5000, "-5s"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char buf[32];
        tc_duration_format(cases[i].ms, buf, sizeof(buf));
        if (strcmp(buf, cases[i].text) != 0) {
            fail_msg("%lld ms formatted as \"%s\", expected \"%s\"", (long long)cases[i].ms, buf,
                     cases[i].text);
        }
        if (cases[i].ms >= 0) {
            int64_t back = -1;
            assert_int_equal(tc_duration_parse(buf, &back), 0);
            assert_int_equal(back, cases[i].ms);
        }
    }
    /* A short buffer truncates and still terminates. */
    char small[4];
    memset(small, 'x', sizeof(small));
    tc_duration_format(250, small, sizeof(small));
    assert_string_equal(small, "250");
}

/* ---- sizes ---- */

static void test_size_parse_valid(void **state)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } cases[] = {
        {"0", 0},
        {"512", 512},
        {"1B", 1},
        {"1K", 1024},
        {"1KB", 1024},
        {"64KiB", 65536},
        {"1M", 1048576},
        {"10MB", 10485760},
        {"10MiB", 10485760},
        {"1G", 1073741824},
        {"2GB", 2147483648ULL},
        {"1GiB", 1073741824},
        {"1TiB", 1099511627776ULL},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", 17179869183ULL * 1073741824ULL},
        {"16777215T", 16777215ULL << 40},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        uint64_t v = 0;
        int rc = tc_size_parse(cases[i].text, &v);
        if (rc != 0 || v != cases[i].bytes) {
            fail_msg("\"%s\": rc %d, %llu bytes, expected %llu", cases[i].text, rc,
                     (unsigned long long)v, (unsigned long long)cases[i].bytes);
        }
    }
}

static void test_size_parse_invalid(void **state)
{
    static const char *cases[] = {
        "",
        "KiB",
        "-1",
        "+1",
        " 1",
        "1 KiB",
        "1.5G",
        "1KiBx",
        "1kib",
        "1k",
        "1Ki",
        "1PiB",
        "0x10",
        "1e3",
        "18446744073709551616", /* above UINT64_MAX */
        "99999999999999999999999",
        "17179869184G",       /* 2^64 */
        "16777216T",          /* 2^64 */
        "18014398509481984K", /* 2^64 */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        uint64_t v = 7;
        int rc = tc_size_parse(cases[i], &v);
        if (rc != TC_EINVAL) {
            fail_msg("\"%s\": rc %d (%llu), expected TC_EINVAL", cases[i], rc,
                     (unsigned long long)v);
        }
    }
    uint64_t v;
    assert_int_equal(tc_size_parse(NULL, &v), TC_EINVAL);
    assert_int_equal(tc_size_parse("1", NULL), TC_EINVAL);
}

/* ---- UTF-8 ---- */

typedef struct {
    const char *bytes;
    size_t len;
    const char *what;
} utf8_case_t;

#define U8(s, what)                                                                                \
    {                                                                                              \
        s, sizeof(s) - 1, what                                                                     \
    }

static void test_utf8_valid(void **state)
{
    static const utf8_case_t cases[] = {
        U8("", "empty"),
        U8("hello, world", "ascii"),
        U8("a\0b", "NUL is a valid code point"),
        U8("\x7f", "U+007F"),
        U8("\xc2\x80", "U+0080, smallest 2-byte"),
        U8("\xc3\xa9", "e acute"),
        U8("\xdf\xbf", "U+07FF, largest 2-byte"),
        U8("\xe0\xa0\x80", "U+0800, smallest 3-byte"),
        U8("\xe2\x82\xac", "euro sign"),
        U8("\xed\x9f\xbf", "U+D7FF, just below the surrogates"),
        U8("\xee\x80\x80", "U+E000, just above the surrogates"),
        U8("\xef\xbf\xbf", "U+FFFF"),
        U8("\xf0\x90\x80\x80", "U+10000, smallest 4-byte"),
        U8("\xf0\x9d\x84\x9e", "musical G clef"),
        U8("\xf0\x9f\x98\x80", "emoji"),
        U8("\xf4\x8f\xbf\xbf", "U+10FFFF, largest code point"),
        U8("na\xc3\xafve caf\xc3\xa9 \xe2\x82\xac\xf0\x9f\x98\x80!", "mixed"),
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        if (!tc_utf8_valid(cases[i].bytes, cases[i].len)) {
            fail_msg("refused valid UTF-8: %s", cases[i].what);
        }
    }
}

static void test_utf8_invalid(void **state)
{
    static const utf8_case_t cases[] = {
        U8("\xc0\xaf", "overlong '/' in 2 bytes (C0)"),
        U8("\xc1\xbf", "overlong U+007F (C1)"),
        U8("\xc0\x80", "overlong NUL"),
        U8("\xe0\x80\xaf", "overlong '/' in 3 bytes"),
        U8("\xe0\x9f\xbf", "overlong U+07FF in 3 bytes"),
        U8("\xf0\x80\x80\xaf", "overlong '/' in 4 bytes"),
        U8("\xf0\x8f\xbf\xbf", "overlong U+FFFF in 4 bytes"),
        U8("\xed\xa0\x80", "high surrogate U+D800"),
        U8("\xed\xaf\xbf", "U+DBFF"),
        U8("\xed\xb0\x80", "low surrogate U+DC00"),
        U8("\xed\xbf\xbf", "U+DFFF"),
        U8("\xed\xa0\xbd\xed\xb8\x80", "surrogate pair encoded as CESU-8"),
        U8("\xf4\x90\x80\x80", "U+110000"),
        U8("\xf5\x80\x80\x80", "lead byte F5"),
        U8("\xf7\xbf\xbf\xbf", "lead byte F7"),
        U8("\xf8\x88\x80\x80\x80", "5-byte form"),
        U8("\xfc\x84\x80\x80\x80\x80", "6-byte form"),
        U8("\xfe", "FE"),
        U8("\xff", "FF"),
        U8("\xc3", "truncated 2-byte"),
        U8("\xe2\x82", "truncated 3-byte"),
        U8("\xe2", "truncated 3-byte after the lead"),
        U8("\xf0\x9d\x84", "truncated 4-byte"),
        U8("abc\xf0\x9d", "truncated 4-byte at the end"),
        U8("\x80", "lone continuation 80"),
        U8("\xbf", "lone continuation BF"),
        U8("a\x80z", "continuation inside ascii"),
        U8("\xc3\xa9\xa9", "extra continuation"),
        U8("\xc3\x28", "lead followed by ascii"),
        U8("\xe2\x28\xa1", "3-byte with bad second byte"),
        U8("\xe2\x82\x28", "3-byte with bad third byte"),
        U8("\xf0\x28\x8c\xbc", "4-byte with bad second byte"),
        U8("\xf0\x9d\x84\x28", "4-byte with bad fourth byte"),
        U8("\xc3\xc3\xa9", "lead byte as continuation"),
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        if (tc_utf8_valid(cases[i].bytes, cases[i].len)) {
            fail_msg("accepted invalid UTF-8: %s", cases[i].what);
        }
    }
}

static void test_utf8_length_bounds(void **state)
{
    /* Only `len` bytes count: a valid prefix of an invalid buffer is valid, and a
     * multi-byte character cut by `len` is not. */
    const char *s = "ab\xe2\x82\xac\xff";
    assert_true(tc_utf8_valid(s, 5));
    assert_false(tc_utf8_valid(s, 6));
    assert_false(tc_utf8_valid(s, 4));
    assert_false(tc_utf8_valid(s, 3));
    assert_true(tc_utf8_valid(s, 2));
    assert_true(tc_utf8_valid(s, 0));
}

/* ---- byte order ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void test_be64_be32(void **state)
{
    uint8_t b[8];
    tc_be64_put(b, 0x0102030405060708ULL);
    static const uint8_t want64[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b, want64, 8);
    assert_true(tc_be64_get(b) == 0x0102030405060708ULL);

    tc_be32_put(b, 0xa1b2c3d4u);
    static const uint8_t want32[4] = {0xa1, 0xb2, 0xc3, 0xd4};
    assert_memory_equal(b, want32, 4);
    assert_true(tc_be32_get(b) == 0xa1b2c3d4u);

    static const uint64_t edges[] = {0,          1,
                                     0xff,       0x100,
                                     UINT32_MAX, (uint64_t)UINT32_MAX + 1,
                                     INT64_MAX,  (uint64_t)INT64_MAX + 1,
                                     UINT64_MAX};
    for (size_t i = 0; i < N_ELEMS(edges); i++) {
        tc_be64_put(b, edges[i]);
        assert_true(tc_be64_get(b) == edges[i]);
        tc_be32_put(b, (uint32_t)edges[i]);
        assert_true(tc_be32_get(b) == (uint32_t)edges[i]);
    }

    /* Keys built with tc_be64_put/tc_be32_put sort under memcmp like the numbers. */
    uint64_t seed = 42;
    for (int i = 0; i < 100000; i++) {
        uint64_t x = splitmix64(&seed), y = splitmix64(&seed);
        if (i % 4 == 0) {
            y = x + (i % 8 == 0 ? 1 : 0); /* neighbours and equal values too */
        }
        uint8_t kx[8], ky[8];
        tc_be64_put(kx, x);
        tc_be64_put(ky, y);
        int c = memcmp(kx, ky, 8);
        int want = x < y ? -1 : (x > y ? 1 : 0);
        assert_int_equal(c < 0 ? -1 : (c > 0 ? 1 : 0), want);
        assert_true(tc_be64_get(kx) == x);

        uint32_t x32 = (uint32_t)x, y32 = (uint32_t)(y >> 32);
        tc_be32_put(kx, x32);
        tc_be32_put(ky, y32);
        c = memcmp(kx, ky, 4);
        want = x32 < y32 ? -1 : (x32 > y32 ? 1 : 0);
        assert_int_equal(c < 0 ? -1 : (c > 0 ? 1 : 0), want);
        assert_true(tc_be32_get(kx) == x32);
    }
}

/* ---- hex, strlcpy, random ---- */

static void test_hex(void **state)
{
    static const uint8_t bytes[] = {0x00, 0xff, 0x10, 0xab, 0x7f, 0x80, 0x09};
    char out[2 * sizeof(bytes) + 1];
    memset(out, 'x', sizeof(out));
    tc_hex(bytes, sizeof(bytes), out);
    assert_string_equal(out, "00ff10ab7f8009");
    char empty[1] = {'x'};
    tc_hex(bytes, 0, empty);
    assert_string_equal(empty, "");
}

static void test_strlcpy(void **state)
{
    static const struct {
        const char *src;
        size_t len;
        const char *want;
    } cases[] = {
        {"hello", 10, "hello"}, {"hello", 6, "hello"}, {"hello", 5, "hell"},
        {"hello", 3, "he"},     {"hello", 1, ""},      {"", 4, ""},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char dst[16];
        memset(dst, 'x', sizeof(dst));
        size_t n = tc_strlcpy(dst, cases[i].src, cases[i].len);
        assert_int_equal(n, strlen(cases[i].src));
        assert_string_equal(dst, cases[i].want);
        assert_int_equal(dst[cases[i].len], 'x'); /* nothing written past len */
    }
    char dst[4] = "abc";
    assert_int_equal(tc_strlcpy(dst, "hello", 0), 5); /* len 0: nothing written */
    assert_string_equal(dst, "abc");
}

static void test_random_bytes(void **state)
{
    uint8_t a[32], b[32];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    assert_int_equal(tc_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(tc_random_bytes(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_int_equal(tc_random_bytes(a, 0), 0);
}

/* ---- clocks and times ---- */

static void test_clocks(void **state)
{
    int64_t now = tc_now_us();
    assert_true(now > 1577836800LL * 1000000); /* after 2020-01-01 */
    int64_t m1 = tc_mono_us();
    int64_t m2 = tc_mono_us();
    assert_true(m2 >= m1);
}

static void test_rfc3339(void **state)
{
    static const struct {
        int64_t us;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {999, "1970-01-01T00:00:00.000Z"},
        {1000, "1970-01-01T00:00:00.001Z"},
        {1700000000123456, "2023-11-14T22:13:20.123Z"},
        {946684799999000, "1999-12-31T23:59:59.999Z"},
        {951782400000000, "2000-02-29T00:00:00.000Z"},
        {4102444800000000, "2100-01-01T00:00:00.000Z"},
        {253402300799999999, "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char buf[32];
        tc_time_format_rfc3339(cases[i].us, buf);
        if (strcmp(buf, cases[i].text) != 0) {
            fail_msg("%lld us formatted as \"%s\", expected \"%s\"", (long long)cases[i].us, buf,
                     cases[i].text);
        }
    }
    /* Times before the epoch (a bad clock) still give a well-formed timestamp. */
    char buf[32];
    tc_time_format_rfc3339(-1, buf);
    assert_int_equal(strlen(buf), 24);
    assert_int_equal(buf[23], 'Z');
}

/* ---- mkdir_p ---- */

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_mkdir_p(void **state)
{
    char root[] = "/tmp/tc_util_test.XXXXXX";
    assert_non_null(mkdtemp(root));
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/a/b/c", root);
    assert_int_equal(tc_mkdir_p(path), 0);
    assert_true(is_dir(path));
    assert_int_equal(tc_mkdir_p(path), 0); /* already there */

    snprintf(path, sizeof(path), "%s/a/d/", root); /* trailing slash */
    assert_int_equal(tc_mkdir_p(path), 0);
    assert_true(is_dir(path));

    snprintf(path, sizeof(path), "%s//e//f", root); /* doubled slashes */
    assert_int_equal(tc_mkdir_p(path), 0);
    assert_true(is_dir(path));

    /* A regular file in the way of a parent, or at the path itself, is an error. */
    char file[PATH_MAX];
    snprintf(file, sizeof(file), "%s/file", root);
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(path, sizeof(path), "%s/file/sub", root);
    assert_int_equal(tc_mkdir_p(path), TC_EIO);
    assert_int_equal(tc_mkdir_p(file), TC_EIO);

    /* Relative paths work from the current directory. */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(root), 0);
    assert_int_equal(tc_mkdir_p("rel/x"), 0);
    assert_true(is_dir("rel/x"));
    assert_int_equal(chdir(cwd), 0);

    /* An empty path or one longer than PATH_MAX is refused, not walked. */
    assert_int_equal(tc_mkdir_p(""), TC_EINVAL);
    char *longp = malloc(PATH_MAX + 16);
    assert_non_null(longp);
    memset(longp, 'a', PATH_MAX + 15);
    longp[PATH_MAX + 15] = '\0';
    assert_int_equal(tc_mkdir_p(longp), TC_EINVAL);
    free(longp);

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static void test_strerror(void **state)
{
    for (int e = TC_OK; e >= TC_EUNKNOWNKEY; e--) {
        const char *s = tc_strerror(e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
    }
    assert_string_equal(tc_strerror(-1000), "unknown error");
    assert_string_equal(tc_strerror(5), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse_valid),
        cmocka_unit_test(test_duration_parse_invalid),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_size_parse_valid),
        cmocka_unit_test(test_size_parse_invalid),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_length_bounds),
        cmocka_unit_test(test_be64_be32),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_strlcpy),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
