/*
 * Unit tests for collector/col_arena: alignment, the bound, reuse after reset, strndup and
 * the protobuf-c allocator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdalign.h>
#include <string.h>

#include "col_arena.h"

static void test_alloc_and_bound(void **state)
{
    (void)state;
    col_arena_t *a = col_arena_new(100000);
    assert_non_null(a);
    for (size_t n = 0; n < 100; n++) {
        unsigned char *p = col_arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        memset(p, 0xab, n);
    }
    size_t used = col_arena_used(a);
    assert_true(used >= 4950 && used <= 100000);
    /* Past the bound: refused, and what was there stays usable. */
    assert_null(col_arena_alloc(a, 100000));
    assert_null(col_arena_alloc(a, SIZE_MAX));
    assert_non_null(col_arena_alloc(a, 16));
    col_arena_reset(a);
    assert_int_equal(col_arena_used(a), 0);
    /* The whole bound at once works after a reset; one byte more does not. */
    assert_non_null(col_arena_alloc(a, 99968));
    assert_null(col_arena_alloc(a, 64));
    col_arena_reset(a);
    char *s = col_arena_strndup(a, "hello world", 5);
    assert_string_equal(s, "hello");
    col_arena_destroy(&a);
    col_arena_destroy(&a);
    assert_null(a);
}

static void test_blocks_grow_and_reuse(void **state)
{
    (void)state;
    col_arena_t *a = col_arena_new((size_t)64 << 20);
    void *first = NULL;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++) {
            void *p = col_arena_alloc(a, 1000);
            assert_non_null(p);
            if (round > 0 && i == 0) {
                /* After a reset the largest block is reused from its start. */
                assert_ptr_equal(p, first);
            }
            if (round == 0 && i == 0) {
                first = NULL;
            }
            memset(p, i & 0xff, 1000);
        }
        col_arena_reset(a);
        first = col_arena_alloc(a, 1);
        col_arena_reset(a);
    }
    col_arena_destroy(&a);
}

static void test_protobuf_allocator(void **state)
{
    (void)state;
    col_arena_t *a = col_arena_new(1 << 20);
    ProtobufCAllocator *pa = col_arena_allocator(a);
    void *p = pa->alloc(pa->allocator_data, 40);
    assert_non_null(p);
    pa->free(pa->allocator_data, p); /* does nothing; reset releases */
    assert_true(col_arena_used(a) >= 40);
    col_arena_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_and_bound),
        cmocka_unit_test(test_blocks_grow_and_reuse),
        cmocka_unit_test(test_protobuf_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
