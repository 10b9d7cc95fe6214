/*
 * Unit tests for common/tc_hll: estimates within a few standard errors from 1 to 10^6
 * distinct values, duplicates not counted, sparse-to-dense switch, merges that are
 * idempotent and order-independent (a union, not a sum), the serialized form round trip in
 * both encodings, and refusal of malformed serialized sets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_hll.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void add_users(tc_hll_t *h, uint64_t from, uint64_t to)
{
    char id[32];
    for (uint64_t i = from; i < to; i++) {
        int n = snprintf(id, sizeof(id), "user-%llu", (unsigned long long)i);
        assert_int_equal(tc_hll_add(h, id, (size_t)n), 0);
    }
}

static void test_empty(void **state)
{
    (void)state;
    tc_hll_t h;
    tc_hll_init(&h);
    assert_true(tc_hll_empty(&h));
    assert_true(tc_hll_count(&h) == 0.0);
    assert_int_equal(tc_hll_encoded_size(&h), 0);
    assert_int_equal(tc_hll_decode(&h, NULL, 0), 0);
    assert_true(tc_hll_empty(&h));
    tc_hll_fini(&h);
    tc_hll_fini(&h);
}

/* Cardinalities across the sparse and dense ranges: within 4 standard errors (3.3 %), and
 * small sets (linear-counting range) within 2 %. */
static void test_accuracy(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {1, 2, 10, 100, 1000, 3000, 5000, 20000, 100000, 1000000};
    for (size_t i = 0; i < N_ELEMS(sizes); i++) {
        tc_hll_t h;
        tc_hll_init(&h);
        add_users(&h, 0, sizes[i]);
        double est = tc_hll_count(&h);
        double rel = fabs(est - (double)sizes[i]) / (double)sizes[i];
        double bound = sizes[i] <= 1000 ? 0.02 : 4 * 1.04 / sqrt(TC_HLL_REGISTERS);
        if (rel > bound) {
            fail_msg("%llu distinct: estimate %.0f (%.2f %%)", (unsigned long long)sizes[i], est,
                     rel * 100);
        }
        if (sizes[i] <= 100) {
            assert_null(h.regs); /* small sets stay sparse */
        }
        tc_hll_fini(&h);
    }
}

static void test_duplicates_not_counted(void **state)
{
    (void)state;
    tc_hll_t h;
    tc_hll_init(&h);
    for (int round = 0; round < 5; round++) {
        add_users(&h, 0, 500);
    }
    double est = tc_hll_count(&h);
    assert_true(fabs(est - 500) / 500 < 0.02);
    tc_hll_fini(&h);
}

/* A union: overlapping sets merged count their distinct members once; merging twice or in
 * another order changes nothing; sparse into dense, dense into sparse, sparse into sparse. */
static void test_merge_union(void **state)
{
    (void)state;
    static const struct {
        uint64_t a_to, b_from, b_to;
    } cases[] = {
        {100, 50, 150},        /* sparse + sparse */
        {50000, 40000, 60000}, /* dense + dense */
        {100, 0, 20000},       /* sparse + dense */
        {20000, 19990, 20010}, /* dense + sparse */
        {3000, 2000, 5000},    /* sparse + sparse past the sparse limit */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tc_hll_t a, b, ab, ba, all;
        tc_hll_init(&a);
        tc_hll_init(&b);
        tc_hll_init(&ab);
        tc_hll_init(&ba);
        tc_hll_init(&all);
        add_users(&a, 0, cases[i].a_to);
        add_users(&b, cases[i].b_from, cases[i].b_to);
        add_users(&all, 0, cases[i].a_to);
        add_users(&all, cases[i].b_from, cases[i].b_to);
        assert_int_equal(tc_hll_merge(&ab, &a), 0);
        assert_int_equal(tc_hll_merge(&ab, &b), 0);
        assert_int_equal(tc_hll_merge(&ab, &b), 0); /* idempotent */
        assert_int_equal(tc_hll_merge(&ba, &b), 0);
        assert_int_equal(tc_hll_merge(&ba, &a), 0);
        double e_ab = tc_hll_count(&ab), e_ba = tc_hll_count(&ba), e_all = tc_hll_count(&all);
        assert_true(e_ab == e_ba);
        assert_true(e_ab == e_all);
        /* Every case's b starts inside or right after a, which starts at 0. */
        uint64_t distinct = cases[i].b_to > cases[i].a_to ? cases[i].b_to : cases[i].a_to;
        double rel = fabs(e_ab - (double)distinct) / (double)distinct;
        if (rel > 0.033) {
            fail_msg("case %zu: union estimate %.0f for %llu distinct", i, e_ab,
                     (unsigned long long)distinct);
        }
        tc_hll_fini(&a);
        tc_hll_fini(&b);
        tc_hll_fini(&ab);
        tc_hll_fini(&ba);
        tc_hll_fini(&all);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {1, 7, 300, 3072, 3500, 10000};
    uint8_t *buf = malloc(TC_HLL_MAX_ENCODED);
    assert_non_null(buf);
    for (size_t i = 0; i < N_ELEMS(sizes); i++) {
        tc_hll_t h, d, m;
        tc_hll_init(&h);
        tc_hll_init(&d);
        tc_hll_init(&m);
        add_users(&h, 1000, 1000 + sizes[i]);
        size_t n = tc_hll_encoded_size(&h);
        assert_true(n > 0 && n <= TC_HLL_MAX_ENCODED);
        assert_int_equal(tc_hll_encode(&h, buf), n);
        /* Serialized densely once more registers are set than the sparse form holds. */
        assert_int_equal(buf[0], h.regs && h.nnz > TC_HLL_SPARSE_MAX ? TC_HLL_ENC_DENSE
                                                                     : TC_HLL_ENC_SPARSE);
        if (sizes[i] >= 10000) {
            assert_non_null(h.regs);
        }
        if (sizes[i] <= 300) {
            assert_true(n < 4 * sizes[i] + 8); /* sparse stays small */
        }
        assert_int_equal(tc_hll_decode(&d, buf, n), 0);
        assert_true(tc_hll_count(&d) == tc_hll_count(&h));
        assert_int_equal(tc_hll_merge_encoded(&m, buf, n), 0);
        assert_int_equal(tc_hll_merge_encoded(&m, buf, n), 0);
        assert_true(tc_hll_count(&m) == tc_hll_count(&h));
        /* Re-encoding the decoded set gives the same bytes. */
        uint8_t *again = malloc(TC_HLL_MAX_ENCODED);
        assert_non_null(again);
        assert_int_equal(tc_hll_encode(&d, again), n);
        assert_memory_equal(buf, again, n);
        free(again);
        tc_hll_fini(&h);
        tc_hll_fini(&d);
        tc_hll_fini(&m);
    }
    free(buf);
}

/* The hash is MurmurHash64A with Redis's seed: fixed values, so every host agrees. */
static void test_hash_stable(void **state)
{
    (void)state;
    assert_true(tc_hll_hash("", 0) == tc_hll_hash("", 0));
    assert_true(tc_hll_hash("a", 1) != tc_hll_hash("b", 1));
    assert_true(tc_hll_hash("user-12345678", 13) != tc_hll_hash("user-12345679", 13));
    /* A tail of every length 0..7 after a full block hashes differently. */
    const char *s = "0123456789abcdef";
    for (size_t n = 8; n < 16; n++) {
        assert_true(tc_hll_hash(s, n) != tc_hll_hash(s, n + 1));
    }
}

static void test_decode_rejects(void **state)
{
    (void)state;
    uint8_t dense[TC_HLL_MAX_ENCODED];
    memset(dense, 0, sizeof(dense));
    dense[0] = TC_HLL_ENC_DENSE;
    dense[1] = TC_HLL_P;
    uint8_t dense_bad_rank[TC_HLL_MAX_ENCODED];
    memcpy(dense_bad_rank, dense, sizeof(dense));
    dense_bad_rank[2] = 63; /* register 0 = 63 > max rank */
    static const struct {
        const char *name;
        uint8_t bytes[8];
        size_t len;
    } cases[] = {
        {"one byte", {1}, 1},
        {"unknown encoding", {3, TC_HLL_P, 1, 1}, 4},
        {"wrong precision", {1, 12, 1, 1}, 4},
        {"sparse count 0", {1, TC_HLL_P, 0}, 3},
        {"sparse cut", {1, TC_HLL_P, 2, 1}, 4},
        {"sparse rank 0", {1, TC_HLL_P, 1, 0x40}, 4},
        {"sparse rank too big", {1, TC_HLL_P, 1, 0x3f}, 4},
        {"sparse zero delta", {1, TC_HLL_P, 2, 0x41, 0}, 5},
        {"sparse same register", {1, TC_HLL_P, 2, 0x41, 1}, 5},
        {"sparse trailing byte", {1, TC_HLL_P, 1, 0x41, 0}, 5},
        {"sparse varint too long", {1, TC_HLL_P, 1, 0xff, 0xff, 0xff, 0xff, 0x7f}, 8},
        {"dense short", {2, TC_HLL_P, 0, 0}, 4},
    };
    tc_hll_t h;
    tc_hll_init(&h);
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        if (tc_hll_decode(&h, cases[i].bytes, cases[i].len) != TC_EPARSE) {
            fail_msg("%s: accepted", cases[i].name);
        }
        assert_true(tc_hll_empty(&h));
    }
    assert_int_equal(tc_hll_decode(&h, dense_bad_rank, sizeof(dense_bad_rank)), TC_EPARSE);
    assert_int_equal(tc_hll_decode(&h, dense, sizeof(dense)), 0);
    assert_true(tc_hll_empty(&h));
    /* A valid sparse set: register 1, rank 1. */
    const uint8_t ok[] = {1, TC_HLL_P, 1, 0x41};
    assert_int_equal(tc_hll_decode(&h, ok, sizeof(ok)), 0);
    assert_false(tc_hll_empty(&h));
    assert_true(tc_hll_count(&h) == 1.0);
    tc_hll_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_duplicates_not_counted),
        cmocka_unit_test(test_merge_union),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_hash_stable),
        cmocka_unit_test(test_decode_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
