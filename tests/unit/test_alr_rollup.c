/*
 * alr_rollup: decoding of tocsin.rollups records — buckets (with sketches), issue
 * changes, kinds this build does not know (skipped, not errors) and every rejection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "alr_rollup.h"
#include "tc_error.h"
#include "tocsin/v1/rollup.pb-c.h"

typedef struct {
    uint8_t *buf;
    size_t len;
} packed_t;

static packed_t pack(const Tocsin__V1__Rollup *r)
{
    packed_t p;
    p.len = tocsin__v1__rollup__get_packed_size(r);
    p.buf = malloc(p.len ? p.len : 1);
    tocsin__v1__rollup__pack(r, p.buf);
    return p;
}

static void bucket_init(Tocsin__V1__Rollup *r, Tocsin__V1__Bucket *b)
{
    tocsin__v1__rollup__init(r);
    tocsin__v1__bucket__init(b);
    r->revision = 3;
    r->body_case = TOCSIN__V1__ROLLUP__BODY_BUCKET;
    r->bucket = b;
    b->service = "shop";
    b->environment = "prod";
    b->name = "/pay";
    b->kind = TOCSIN__V1__SERIES_KIND__SERIES_KIND_REQUESTS;
    b->start_s = 1800000000;
    b->width_s = 10;
    b->count = 10;
    b->errors = 2;
}

static const char key[] = "shop\0prod\0/pay";

static void test_bucket_with_sketch(void **state)
{
    (void)state;
    Tocsin__V1__Rollup r;
    Tocsin__V1__Bucket b;
    bucket_init(&r, &b);
    Tocsin__V1__Sketch sk = TOCSIN__V1__SKETCH__INIT;
    uint64_t counts[3] = {1, 0, 4};
    sk.schema = 6;
    sk.offset = 600;
    sk.counts = counts;
    sk.n_counts = 3;
    b.sketch = &sk;
    b.sum = 1234.5;
    b.max = 99;
    packed_t p = pack(&r);
    alr_record_t rec;
    const char *why = NULL;
    assert_int_equal(alr_record_decode(key, sizeof(key) - 1, p.buf, p.len, &rec, &why), 0);
    assert_int_equal(rec.kind, ALR_REC_BUCKET);
    assert_string_equal(rec.bucket.service, "shop");
    assert_int_equal(rec.bucket.revision, 3);
    assert_true(rec.bucket.has_sketch);
    assert_int_equal(rec.bucket.sketch.count, 5);
    assert_true(rec.bucket.sum == 1234.5 && rec.bucket.max == 99);
    alr_record_fini(&rec);
    alr_record_fini(&rec); /* safe twice */
    free(p.buf);
}

static void test_issue_change(void **state)
{
    (void)state;
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    Tocsin__V1__IssueChange ic = TOCSIN__V1__ISSUE_CHANGE__INIT;
    r.body_case = TOCSIN__V1__ROLLUP__BODY_ISSUE;
    r.issue = &ic;
    ic.kind = TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_REGRESSED;
    ic.service = "shop";
    ic.environment = "prod";
    ic.issue_id = "ab12";
    ic.type = "KeyError";
    char longmsg[3000];
    memset(longmsg, 'x', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    ic.message = longmsg;
    ic.level = TOCSIN__V1__LEVEL__LEVEL_ERROR;
    ic.count = 7;
    packed_t p = pack(&r);
    alr_record_t rec;
    static const char ikey[] = "shop\0prod\0$issue:ab12";
    assert_int_equal(alr_record_decode(ikey, sizeof(ikey) - 1, p.buf, p.len, &rec, NULL), 0);
    assert_int_equal(rec.kind, ALR_REC_ISSUE);
    assert_true(rec.issue.regressed);
    assert_int_equal(strlen(rec.issue.message), ALR_ISSUE_TEXT_MAX); /* cut, not refused */
    assert_int_equal(rec.issue.count, 7);
    const char *why = NULL;
    assert_int_equal(alr_record_decode(key, sizeof(key) - 1, p.buf, p.len, &rec, &why), TC_EINVAL);
    assert_string_equal(why, "key_mismatch");
    free(p.buf);
}

static void test_unknown_kind_skipped(void **state)
{
    (void)state;
    /* revision = 1, then field 99 (a body kind of a newer aggregator). */
    static const uint8_t raw[] = {0x10, 0x01, 0x9a, 0x06, 0x03, 'a', 'b', 'c'};
    alr_record_t rec;
    const char *why = NULL;
    assert_int_equal(alr_record_decode(NULL, 0, raw, sizeof(raw), &rec, &why), 0);
    assert_int_equal(rec.kind, ALR_REC_OTHER);
    assert_non_null(rec.other);
    /* No body at all is an error. */
    static const uint8_t empty[] = {0x10, 0x01};
    assert_int_equal(alr_record_decode(NULL, 0, empty, sizeof(empty), &rec, &why), TC_EINVAL);
    assert_string_equal(why, "no_body");
}

typedef struct {
    void (*mutate)(Tocsin__V1__Bucket *b);
    const char *why;
} bad_bucket_t;

static void m_errors(Tocsin__V1__Bucket *b) { b->errors = 11; }
static void m_width(Tocsin__V1__Bucket *b) { b->width_s = 0; }
static void m_align(Tocsin__V1__Bucket *b) { b->start_s = 1800000003; }
static void m_service(Tocsin__V1__Bucket *b) { b->service = ""; }
static void m_utf8(Tocsin__V1__Bucket *b) { b->name = "\xff\xfe"; }
static void m_kind(Tocsin__V1__Bucket *b) { b->kind = (Tocsin__V1__SeriesKind)-3; }

static void test_bad_buckets(void **state)
{
    (void)state;
    static const bad_bucket_t cases[] = {{m_errors, "errors_above_count"}, {m_width, "width"},
                                         {m_align, "alignment"},           {m_service, "string"},
                                         {m_utf8, "string"},               {m_kind, "kind"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tocsin__V1__Rollup r;
        Tocsin__V1__Bucket b;
        bucket_init(&r, &b);
        cases[i].mutate(&b);
        packed_t p = pack(&r);
        alr_record_t rec;
        const char *why = NULL;
        assert_int_equal(alr_record_decode(NULL, 0, p.buf, p.len, &rec, &why), TC_EINVAL);
        assert_string_equal(why, cases[i].why);
        free(p.buf);
    }
    alr_record_t rec;
    const char *why = NULL;
    assert_int_equal(alr_record_decode(NULL, 0, "\xff\xff\xff", 3, &rec, &why), TC_EPARSE);
    assert_string_equal(why, "protobuf");
    uint8_t *big = calloc(1, ALR_ROLLUP_VALUE_MAX + 1);
    assert_int_equal(alr_record_decode(NULL, 0, big, ALR_ROLLUP_VALUE_MAX + 1, &rec, &why),
                     TC_ETOOBIG);
    free(big);
    /* A sketch whose bins are out of range. */
    Tocsin__V1__Rollup r;
    Tocsin__V1__Bucket b;
    bucket_init(&r, &b);
    Tocsin__V1__Sketch sk = TOCSIN__V1__SKETCH__INIT;
    uint64_t counts[1] = {1};
    sk.schema = 42;
    sk.counts = counts;
    sk.n_counts = 1;
    b.sketch = &sk;
    packed_t p = pack(&r);
    assert_int_equal(alr_record_decode(NULL, 0, p.buf, p.len, &rec, &why), TC_EINVAL);
    assert_string_equal(why, "sketch");
    free(p.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_with_sketch),
        cmocka_unit_test(test_issue_change),
        cmocka_unit_test(test_unknown_kind_skipped),
        cmocka_unit_test(test_bad_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
