/* Decoding one record of tocsin.rollups: valid buckets pass, every kind of bad record is
 * refused with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "alr_rollup.h"
#include "tc_error.h"
#include "tocsin/v1/rollup.pb-c.h"

typedef struct {
    const char *service, *environment, *name;
    int kind;
    int64_t start_s;
    uint32_t width_s;
    uint64_t count, errors, revision;
    bool no_bucket;
} spec_t;

static size_t pack(const spec_t *s, uint8_t **out)
{
    Tocsin__V1__Bucket b = TOCSIN__V1__BUCKET__INIT;
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    b.service = (char *)s->service;
    b.environment = (char *)s->environment;
    b.name = (char *)s->name;
    b.kind = (Tocsin__V1__SeriesKind)s->kind;
    b.start_s = s->start_s;
    b.width_s = s->width_s;
    b.count = s->count;
    b.errors = s->errors;
    r.producer = (char *)"agg-1";
    r.revision = s->revision;
    if (!s->no_bucket) {
        r.body_case = TOCSIN__V1__ROLLUP__BODY_BUCKET;
        r.bucket = &b;
    }
    size_t n = tocsin__v1__rollup__get_packed_size(&r);
    *out = malloc(n ? n : 1);
    tocsin__v1__rollup__pack(&r, *out);
    return n;
}

static size_t make_key(const char *svc, const char *env, const char *name, char *key)
{
    size_t a = strlen(svc), b = strlen(env), c = strlen(name);
    memcpy(key, svc, a);
    key[a] = 0;
    memcpy(key + a + 1, env, b);
    key[a + 1 + b] = 0;
    memcpy(key + a + 2 + b, name, c);
    return a + b + c + 2;
}

static const spec_t valid = {"checkout", "prod", "/pay", 1, 1000, 10, 100, 7, 3, false};

static void test_valid(void **state)
{
    (void)state;
    uint8_t *v;
    size_t n = pack(&valid, &v);
    char key[64];
    size_t kl = make_key("checkout", "prod", "/pay", key);
    alr_rollup_t r;
    const char *why = NULL;
    assert_int_equal(alr_rollup_decode(key, kl, v, n, &r, &why), 0);
    assert_string_equal(r.service, "checkout");
    assert_string_equal(r.environment, "prod");
    assert_string_equal(r.name, "/pay");
    assert_int_equal(r.kind, ALR_KIND_REQUESTS);
    assert_int_equal(r.start_s, 1000);
    assert_int_equal(r.width_s, 10);
    assert_int_equal(r.count, 100);
    assert_int_equal(r.errors, 7);
    assert_int_equal(r.revision, 3);
    /* No key at all is accepted: the bucket names its series. */
    assert_int_equal(alr_rollup_decode(NULL, 0, v, n, &r, NULL), 0);
    /* An empty environment is a valid series. */
    free(v);
    spec_t s = valid;
    s.environment = "";
    n = pack(&s, &v);
    kl = make_key("checkout", "", "/pay", key);
    assert_int_equal(alr_rollup_decode(key, kl, v, n, &r, &why), 0);
    assert_string_equal(r.environment, "");
    free(v);
}

typedef struct {
    const char *what;
    spec_t spec;
    const char *key_svc; /* NULL: no key */
    int rc;
    const char *why;
} bad_t;

static void test_bad(void **state)
{
    (void)state;
    char long_name[ALR_NAME_MAX + 2];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const bad_t cases[] = {
        {"no bucket", {"s", "", "n", 1, 0, 10, 1, 0, 1, true}, NULL, TC_EINVAL, "no_bucket"},
        {"empty service", {"", "", "n", 1, 0, 10, 1, 0, 1, false}, NULL, TC_EINVAL, "string"},
        {"bad utf-8", {"s\xff", "", "n", 1, 0, 10, 1, 0, 1, false}, NULL, TC_EINVAL, "string"},
        {"name too long", {"s", "", long_name, 1, 0, 10, 1, 0, 1, false}, NULL, TC_EINVAL,
         "string"},
        {"zero width", {"s", "", "n", 1, 0, 0, 1, 0, 1, false}, NULL, TC_EINVAL, "width"},
        {"huge width", {"s", "", "n", 1, 0, 86401, 1, 0, 1, false}, NULL, TC_EINVAL, "width"},
        {"misaligned", {"s", "", "n", 1, 1005, 10, 1, 0, 1, false}, NULL, TC_EINVAL,
         "alignment"},
        {"negative start", {"s", "", "n", 1, -10, 10, 1, 0, 1, false}, NULL, TC_EINVAL,
         "alignment"},
        {"errors above count", {"s", "", "n", 1, 0, 10, 1, 2, 1, false}, NULL, TC_EINVAL,
         "errors_above_count"},
        {"negative kind", {"s", "", "n", -3, 0, 10, 1, 0, 1, false}, NULL, TC_EINVAL, "kind"},
        {"key of another series", {"s", "", "n", 1, 0, 10, 1, 0, 1, false}, "t", TC_EINVAL,
         "key_mismatch"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *v;
        size_t n = pack(&cases[i].spec, &v);
        char key[600];
        size_t kl = 0;
        if (cases[i].key_svc) {
            kl = make_key(cases[i].key_svc, cases[i].spec.environment, cases[i].spec.name, key);
        }
        alr_rollup_t r;
        const char *why = NULL;
        int rc = alr_rollup_decode(cases[i].key_svc ? key : NULL, kl, v, n, &r, &why);
        if (rc != cases[i].rc || !why || strcmp(why, cases[i].why) != 0) {
            print_error("case \"%s\": rc %d why %s\n", cases[i].what, rc, why ? why : "-");
        }
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(why, cases[i].why);
        assert_string_equal(r.service, ""); /* nothing half-filled on error */
        free(v);
    }
}

static void test_not_protobuf(void **state)
{
    (void)state;
    alr_rollup_t r;
    const char *why = NULL;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(alr_rollup_decode(NULL, 0, junk, sizeof(junk), &r, &why), TC_EPARSE);
    assert_string_equal(why, "protobuf");
    uint8_t *big = calloc(1, ALR_ROLLUP_VALUE_MAX + 1);
    assert_int_equal(alr_rollup_decode(NULL, 0, big, ALR_ROLLUP_VALUE_MAX + 1, &r, &why),
                     TC_ETOOBIG);
    assert_string_equal(why, "too_big");
    free(big);
    /* An empty value is a Rollup with no body. */
    assert_int_equal(alr_rollup_decode(NULL, 0, "", 0, &r, &why), TC_EINVAL);
    assert_string_equal(why, "no_bucket");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_not_protobuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
