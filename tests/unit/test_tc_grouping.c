/*
 * Unit tests for common/tc_grouping: message normalisation and the grouping id (explicit
 * fingerprint, in-app frames, message fallback, stability of the id).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tc_grouping.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- message normalisation ---- */

static void test_normalize_table(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"", ""},
        {"plain words only", "plain words only"},
        {"order 12345 missing", "order <int> missing"},
        {"timed out after 30s", "timed out after <int>s"},
        {"took 1.25ms (limit 2.0e-3)", "took <float>ms (limit <float>)"},
        {"-5 degrees", "-<int> degrees"},
        {"user2 in utf8 and x86_64", "user2 in utf8 and x86_64"},
        {"Connection to 10.0.0.12:5432 refused", "Connection to <ip> refused"},
        {"from 192.168.1.1, then", "from <ip>, then"},
        {"version 1.2.3.4.5", "version <float>.<float>.<int>"},
        {"300.1.1.1 is no address", "<float>.<float> is no address"},
        {"addr fe80::1 and ::1 and 2001:db8:0:0:0:0:2:1", "addr <ip> and <ip> and <ip>"},
        {"mapped ::ffff:10.1.2.3 here", "mapped <ip> here"},
        {"std::vector<int> at abc::def", "std::vector<int> at abc::def"},
        {"user bob.smith+x@mail.example.org not found", "user <email> not found"},
        {"mailto:a@b.io.", "mailto:<email>."},
        {"not@an-email", "not@an-email"},
        {"GET https://api.example.com/v1/users?id=5 failed.", "GET <url> failed."},
        {"see (http://x.test/a) or <ftp://h/p>", "see (<url>) or <<url>>"},
        {"job 550e8400-e29b-41d4-a716-446655440000 failed", "job <uuid> failed"},
        {"JOB 550E8400-E29B-41D4-A716-446655440000", "JOB <uuid>"},
        {"at 2024-05-01T10:20:30.123Z ok", "at <date> ok"},
        {"at 2024-05-01 10:20:30+02:00 ok", "at <date> ok"},
        {"on 2024-05-01, at 10:20:30.5", "on <date>, at <date>"},
        {"ratio 10:20", "ratio <int>:<int>"},
        {"ptr 0x7ffd1234 and 0XABC", "ptr <hex> and <hex>"},
        {"0xzz stays", "<int>xzz stays"},
        {"token deadbeef12 and deadbeef", "token <hex> and deadbeef"},
        {"sha da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha <hash>"},
        {"md5 d41d8cd98f00b204e9800998ecf8427e", "md5 <hash>"},
        {"host db1.example.com down", "host <host> down"},
        {"file config.yaml missing", "file config.yaml missing"},
        {"svc payments.default.svc.", "svc <host>."},
        {"ünïcode 42 ok", "ünïcode <int> ok"},
        {"x42y 42x", "x42y <int>x"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char *got = tc_grouping_message_normalize(cases[i].in, strlen(cases[i].in));
        assert_non_null(got);
        if (strcmp(got, cases[i].out) != 0) {
            fail_msg("\"%s\": got \"%s\", expected \"%s\"", cases[i].in, got, cases[i].out);
        }
        free(got);
    }
}

static void test_normalize_null_and_embedded_nul(void **state)
{
    char *got = tc_grouping_message_normalize(NULL, 5);
    assert_non_null(got);
    assert_string_equal(got, "");
    free(got);
    /* Only `len` bytes are read, whatever follows. */
    got = tc_grouping_message_normalize("id 7 and more", 4);
    assert_string_equal(got, "id <int>");
    free(got);
}

/* Long adversarial inputs: many near-matches in a row still normalise completely. */
static void test_normalize_long_inputs(void **state)
{
    static const char *units[] = {"a.", "a@", "1.", "1:", "f:", "0x", "a-", "::"};
    for (size_t u = 0; u < N_ELEMS(units); u++) {
        size_t n = 200000;
        char *in = malloc(n + 1);
        assert_non_null(in);
        for (size_t i = 0; i < n; i++) {
            in[i] = units[u][i % 2];
        }
        in[n] = '\0';
        char *got = tc_grouping_message_normalize(in, n);
        assert_non_null(got);
        assert_true(strlen(got) > 0);
        free(got);
        free(in);
    }
}

/* ---- grouping ids ---- */

typedef struct {
    const char *function;
    const char *module;
    const char *file;
    uint32_t line;
    bool in_app;
} frame_spec_t;

#define MAX_FRAMES 8

/* An ErrorEvent built on the stack from plain strings. */
typedef struct {
    Tocsin__V1__ErrorEvent error;
    Tocsin__V1__Frame frames[MAX_FRAMES];
    Tocsin__V1__Frame *frame_ptrs[MAX_FRAMES];
    char *fingerprint[4];
} error_fixture_t;

static void fixture_build(error_fixture_t *f, const char *type, const char *message,
                          const frame_spec_t *frames, size_t n_frames,
                          const char *const *fingerprint, size_t n_fingerprint)
{
    Tocsin__V1__ErrorEvent init = TOCSIN__V1__ERROR_EVENT__INIT;
    f->error = init;
    f->error.type = (char *)type;
    f->error.message = (char *)message;
    assert_true(n_frames <= MAX_FRAMES);
    for (size_t i = 0; i < n_frames; i++) {
        Tocsin__V1__Frame frame = TOCSIN__V1__FRAME__INIT;
        frame.function = (char *)(frames[i].function ? frames[i].function : "");
        frame.module = (char *)(frames[i].module ? frames[i].module : "");
        frame.file = (char *)(frames[i].file ? frames[i].file : "");
        frame.line = frames[i].line;
        frame.in_app = frames[i].in_app;
        frame.instruction_addr = 0x400000 + i * 16 + frames[i].line;
        f->frames[i] = frame;
        f->frame_ptrs[i] = &f->frames[i];
    }
    f->error.n_frames = n_frames;
    f->error.frames = n_frames ? f->frame_ptrs : NULL;
    assert_true(n_fingerprint <= 4);
    for (size_t i = 0; i < n_fingerprint; i++) {
        f->fingerprint[i] = (char *)fingerprint[i];
    }
    f->error.n_fingerprint = n_fingerprint;
    f->error.fingerprint = n_fingerprint ? f->fingerprint : NULL;
}

static tc_grouping_basis_t hash_of(const char *type, const char *message,
                                   const frame_spec_t *frames, size_t n_frames,
                                   const char *const *fingerprint, size_t n_fingerprint,
                                   char out[TC_GROUPING_HASH_LEN + 1])
{
    error_fixture_t f;
    fixture_build(&f, type, message, frames, n_frames, fingerprint, n_fingerprint);
    return tc_grouping_hash(&f.error, out);
}

static void test_hash_format(void **state)
{
    char out[TC_GROUPING_HASH_LEN + 1];
    memset(out, 'X', sizeof(out));
    hash_of("KeyError", "missing 'id'", NULL, 0, NULL, 0, out);
    assert_int_equal(strlen(out), TC_GROUPING_HASH_LEN);
    for (size_t i = 0; i < TC_GROUPING_HASH_LEN; i++) {
        assert_true((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f'));
    }
}

/* The documented layout: the XXH3-128 of the parts, each ended by a NUL, in hex. */
static void layout_hash(const char *bytes, size_t n, char out[TC_GROUPING_HASH_LEN + 1])
{
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits(bytes, n));
    for (size_t i = 0; i < sizeof(canonical.digest); i++) {
        snprintf(out + 2 * i, 3, "%02x", canonical.digest[i]);
    }
}

/*
 * The id is a wire format: aggregators key issues by it, so a change would split every
 * issue in two. The byte layout is checked against xxhash directly, and the values pinned.
 */
static void test_hash_is_stable(void **state)
{
    static const frame_spec_t frames[] = {
        {"handle", "app.orders", "orders.py", 10, true},
        {"dispatch", "framework.web", "web.py", 99, false},
    };
    static const char *const fp[] = {"db-timeout"};
    static const char stack_layout[] = "stack\0TimeoutError\0app.orders\0handle";
    static const char message_layout[] = "message\0TimeoutError\0query <int> failed";
    static const char fp_layout[] = "fingerprint\0db-timeout";
    char out[TC_GROUPING_HASH_LEN + 1];
    char expected[TC_GROUPING_HASH_LEN + 1];

    hash_of("TimeoutError", "after 30s", frames, 2, NULL, 0, out);
    layout_hash(stack_layout, sizeof(stack_layout), expected);
    assert_string_equal(out, expected);
    assert_string_equal(out, "839042e707949ac2880e79a63338bc57");

    hash_of("TimeoutError", "query 12 failed", NULL, 0, NULL, 0, out);
    layout_hash(message_layout, sizeof(message_layout), expected);
    assert_string_equal(out, expected);
    assert_string_equal(out, "f81e726aa03c7b62749f49c1104bc8bd");

    hash_of("", "", NULL, 0, fp, 1, out);
    layout_hash(fp_layout, sizeof(fp_layout), expected);
    assert_string_equal(out, expected);
    assert_string_equal(out, "b8c5420949f2306dd9c2db30d94b1259");
}

static void test_fingerprint_wins(void **state)
{
    char a[TC_GROUPING_HASH_LEN + 1];
    char b[TC_GROUPING_HASH_LEN + 1];
    char c[TC_GROUPING_HASH_LEN + 1];
    static const frame_spec_t f1[] = {{"handle", "app", NULL, 1, true}};
    static const frame_spec_t f2[] = {{"other", "lib", NULL, 2, true}};
    static const char *const fp[] = {"payment", "declined"};
    static const char *const fp2[] = {"payment", "expired"};
    static const char *const fp_joined[] = {"paymentdeclined"};
    assert_int_equal(hash_of("A", "x", f1, 1, fp, 2, a), TC_GROUPING_FINGERPRINT);
    assert_int_equal(hash_of("B", "y", f2, 1, fp, 2, b), TC_GROUPING_FINGERPRINT);
    assert_string_equal(a, b); /* type, message and frames do not count */
    hash_of("A", "x", f1, 1, fp2, 2, c);
    assert_string_not_equal(a, c);
    hash_of("A", "x", f1, 1, fp_joined, 1, c); /* parts are separated, not concatenated */
    assert_string_not_equal(a, c);
}

static void test_fingerprint_default_marker(void **state)
{
    char plain[TC_GROUPING_HASH_LEN + 1];
    char a[TC_GROUPING_HASH_LEN + 1];
    char b[TC_GROUPING_HASH_LEN + 1];
    char c[TC_GROUPING_HASH_LEN + 1];
    char d[TC_GROUPING_HASH_LEN + 1];
    static const frame_spec_t f1[] = {{"handle", "app", NULL, 1, true}};
    static const frame_spec_t f2[] = {{"other", "app", NULL, 1, true}};
    static const char *const tenant_a[] = {"{{ default }}", "tenant-a"};
    static const char *const tenant_a_tight[] = {"{{default}}", "tenant-a"};
    static const char *const tenant_b[] = {"{{ default }}", "tenant-b"};
    static const char *const literal[] = {"{{ defaults }}", "tenant-a"};
    hash_of("E", "m", f1, 1, NULL, 0, plain);
    assert_int_equal(hash_of("E", "m", f1, 1, tenant_a, 2, a), TC_GROUPING_FINGERPRINT);
    hash_of("E", "m", f1, 1, tenant_a_tight, 2, b);
    assert_string_equal(a, b);
    assert_string_not_equal(a, plain);
    hash_of("E", "m", f1, 1, tenant_b, 2, c);
    assert_string_not_equal(a, c);
    hash_of("E", "m", f2, 1, tenant_a, 2, d); /* the default part follows the stack */
    assert_string_not_equal(a, d);
    hash_of("E", "m", f1, 1, literal, 2, d);
    assert_string_not_equal(a, d);
}

/* Pairs of events that must share an id, and pairs that must not. */
static void test_stack_rule(void **state)
{
    static const frame_spec_t base[] = {
        {"handle", "app.orders", "/srv/app/orders.py", 10, true},
        {"dispatch", "framework.web", "/usr/lib/web.py", 99, false},
        {"main", "app.main", "/srv/app/main.py", 3, true},
    };
    static const frame_spec_t other_lines[] = {
        {"handle", "app.orders", "/srv/app/orders.py", 42, true},
        {"dispatch", "framework.web", "/usr/lib/web.py", 7, false},
        {"main", "app.main", "/srv/app/main.py", 4, true},
    };
    static const frame_spec_t other_library[] = {
        {"handle", "app.orders", "/srv/app/orders.py", 10, true},
        {"route", "otherframework", "/usr/lib/other.py", 1, false},
        {"route2", "otherframework", "/usr/lib/other.py", 2, false},
        {"main", "app.main", "/srv/app/main.py", 3, true},
    };
    static const frame_spec_t other_function[] = {
        {"handle_v2", "app.orders", "/srv/app/orders.py", 10, true},
        {"dispatch", "framework.web", "/usr/lib/web.py", 99, false},
        {"main", "app.main", "/srv/app/main.py", 3, true},
    };
    static const frame_spec_t swapped[] = {
        {"main", "app.main", "/srv/app/main.py", 3, true},
        {"dispatch", "framework.web", "/usr/lib/web.py", 99, false},
        {"handle", "app.orders", "/srv/app/orders.py", 10, true},
    };
    char a[TC_GROUPING_HASH_LEN + 1];
    char b[TC_GROUPING_HASH_LEN + 1];
    assert_int_equal(hash_of("KeyError", "id 1", base, 3, NULL, 0, a), TC_GROUPING_STACK);

    assert_int_equal(hash_of("KeyError", "other text", other_lines, 3, NULL, 0, b),
                     TC_GROUPING_STACK);
    assert_string_equal(a, b); /* lines, addresses and message do not count */
    hash_of("KeyError", "id 1", other_library, 4, NULL, 0, b);
    assert_string_equal(a, b); /* frames outside the app do not count */
    hash_of("ValueError", "id 1", base, 3, NULL, 0, b);
    assert_string_not_equal(a, b); /* the type counts */
    hash_of("KeyError", "id 1", other_function, 3, NULL, 0, b);
    assert_string_not_equal(a, b);
    hash_of("KeyError", "id 1", swapped, 3, NULL, 0, b);
    assert_string_not_equal(a, b); /* order counts */
    hash_of("  KeyError ", "id 1", base, 3, NULL, 0, b);
    assert_string_equal(a, b); /* surrounding space does not */
}

static void test_stack_without_in_app_uses_all_frames(void **state)
{
    static const frame_spec_t lib1[] = {
        {"read", "libc", NULL, 0, false},
        {"parse", "libjson", NULL, 0, false},
    };
    static const frame_spec_t lib2[] = {
        {"read", "libc", NULL, 0, false},
        {"load", "libyaml", NULL, 0, false},
    };
    char a[TC_GROUPING_HASH_LEN + 1];
    char b[TC_GROUPING_HASH_LEN + 1];
    assert_int_equal(hash_of("SIGSEGV", "", lib1, 2, NULL, 0, a), TC_GROUPING_STACK);
    hash_of("SIGSEGV", "", lib2, 2, NULL, 0, b);
    assert_string_not_equal(a, b);
}

static void test_frame_module_file_and_function_forms(void **state)
{
    static const struct {
        frame_spec_t x;
        frame_spec_t y;
        bool same;
    } cases[] = {
        /* file basename only, when there is no module */
        {{"f", NULL, "/a/b/app.js", 1, true}, {"f", NULL, "/c/app.js", 2, true}, true},
        {{"f", NULL, "C:\\src\\app.js", 1, true}, {"f", NULL, "app.js", 2, true}, true},
        {{"f", NULL, "/a/app.js?v=123#x", 1, true}, {"f", NULL, "/b/app.js", 1, true}, true},
        {{"f", NULL, "/a/app.js", 1, true}, {"f", NULL, "/a/lib.js", 1, true}, false},
        /* the module wins over the file */
        {{"f", "m", "/a/one.c", 1, true}, {"f", "m", "/b/two.c", 1, true}, true},
        {{"f", "m", "/a/one.c", 1, true}, {"f", "n", "/a/one.c", 1, true}, false},
        /* offsets after the function name do not count; the name does */
        {{"main+0x1d", "app", NULL, 0, true}, {"main", "app", NULL, 0, true}, true},
        {{"main +0x1D ", "app", NULL, 0, true}, {"main", "app", NULL, 0, true}, true},
        {{"main+12", "app", NULL, 0, true}, {"main", "app", NULL, 0, true}, false},
        {{"operator+", "app", NULL, 0, true}, {"operator", "app", NULL, 0, true}, false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char a[TC_GROUPING_HASH_LEN + 1];
        char b[TC_GROUPING_HASH_LEN + 1];
        hash_of("E", "", &cases[i].x, 1, NULL, 0, a);
        hash_of("E", "", &cases[i].y, 1, NULL, 0, b);
        if ((strcmp(a, b) == 0) != cases[i].same) {
            fail_msg("case %zu: ids %s and %s, expected %s", i, a, b,
                     cases[i].same ? "equal" : "different");
        }
    }
}

static void test_message_rule(void **state)
{
    static const frame_spec_t empty_frames[] = {
        {"", "", "", 12, true},
        {NULL, NULL, NULL, 0, false},
    };
    char a[TC_GROUPING_HASH_LEN + 1];
    char b[TC_GROUPING_HASH_LEN + 1];
    assert_int_equal(
        hash_of("DBError", "query 12 on 10.0.0.1 failed after 30s", NULL, 0, NULL, 0, a),
        TC_GROUPING_MESSAGE);
    hash_of("DBError", "query 977 on 10.9.9.9 failed after 45s", NULL, 0, NULL, 0, b);
    assert_string_equal(a, b);
    /* frames that carry nothing usable fall back to the message */
    assert_int_equal(
        hash_of("DBError", "query 1 on 10.0.0.2 failed after 1s", empty_frames, 2, NULL, 0, b),
        TC_GROUPING_MESSAGE);
    assert_string_equal(a, b);
    hash_of("DBError", "query 12 on 10.0.0.1 failed after 30 s", NULL, 0, NULL, 0, b);
    assert_string_not_equal(a, b);
    hash_of("NetError", "query 12 on 10.0.0.1 failed after 30s", NULL, 0, NULL, 0, b);
    assert_string_not_equal(a, b); /* the type counts */
    /* type and message do not run into each other */
    hash_of("ab", "c", NULL, 0, NULL, 0, a);
    hash_of("a", "bc", NULL, 0, NULL, 0, b);
    assert_string_not_equal(a, b);
    /* NULL strings read as empty ones */
    hash_of(NULL, NULL, NULL, 0, NULL, 0, a);
    hash_of("", "", NULL, 0, NULL, 0, b);
    assert_string_equal(a, b);
}

static void test_basis_names(void **state)
{
    assert_string_equal(tc_grouping_basis_name(TC_GROUPING_FINGERPRINT), "fingerprint");
    assert_string_equal(tc_grouping_basis_name(TC_GROUPING_STACK), "stack");
    assert_string_equal(tc_grouping_basis_name(TC_GROUPING_MESSAGE), "message");
    assert_string_equal(tc_grouping_basis_name((tc_grouping_basis_t)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_normalize_null_and_embedded_nul),
        cmocka_unit_test(test_normalize_long_inputs),
        cmocka_unit_test(test_hash_format),
        cmocka_unit_test(test_hash_is_stable),
        cmocka_unit_test(test_fingerprint_wins),
        cmocka_unit_test(test_fingerprint_default_marker),
        cmocka_unit_test(test_stack_rule),
        cmocka_unit_test(test_stack_without_in_app_uses_all_frames),
        cmocka_unit_test(test_frame_module_file_and_function_forms),
        cmocka_unit_test(test_message_rule),
        cmocka_unit_test(test_basis_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
