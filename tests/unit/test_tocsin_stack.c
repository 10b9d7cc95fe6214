/* Unit tests for clients/c/src/tocsin_stack.c: the in-app rules (table), capture from a
 * known call chain, and symbolisation of this process's frames with libdw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_stack.h"

typedef struct {
    const char *path;
    bool is_main;
    const char *include;
    const char *exclude;
    bool want;
} in_app_case_t;

static void test_in_app_rules(void **state)
{
    (void)state;
    static const in_app_case_t cases[] = {
        {"/srv/app/bin/checkout", true, NULL, NULL, true},
        {"/opt/app/lib/libbilling.so", false, NULL, NULL, true},
        {"/usr/lib/x86_64-linux-gnu/libc.so.6", false, NULL, NULL, false},
        {"/lib/x86_64-linux-gnu/libzmq.so.5", false, NULL, NULL, false},
        {"/usr/local/lib/libthing.so", false, NULL, NULL, false},
        {"/usr/bin/python3", true, NULL, NULL, true},
        {"/usr/lib/libtocsin.so.0", false, NULL, NULL, false},
        {"/opt/x/libtocsin.so.0.1.0", false, "libtocsin", NULL, false}, /* never in-app */
        {"/usr/lib/libmine.so", false, "libmine, libours", NULL, true},
        {"/opt/app/libother.so", false, "libmine,libours", NULL, false},
        {"/srv/app/bin/checkout", true, NULL, "checkout", false},
        {"/usr/lib/libours.so", false, "libours", "libours", false}, /* exclude wins */
        {"", false, NULL, NULL, false},
        {NULL, false, NULL, NULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const in_app_case_t *c = &cases[i];
        bool got = tocsin_stack_in_app(c->path, c->is_main, c->include, c->exclude);
        if (got != c->want) {
            fail_msg("case %zu (%s): got %d", i, c->path ? c->path : "NULL", got);
        }
    }
}

static uint64_t pcs[TOCSIN_FRAMES_MAX];
static size_t n_pcs;
static bool more;

__attribute__((noinline)) static void inner_frame(const void *caller, uint32_t skip)
{
    n_pcs = tocsin_stack_capture(pcs, TOCSIN_FRAMES_MAX, caller, skip, 0, &more);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void outer_frame(uint32_t skip)
{
    inner_frame(__builtin_return_address(0), skip);
    __asm__ volatile("" ::: "memory");
}

static char arena[TOCSIN_EVENT_ARENA];
static tocsin_event_t ev;

/* Capturing from inner_frame and starting at the frame that returns into outer_frame's
 * caller; symbolised, the first frame is this test function, in this file. */
static void test_capture_and_symbolise(void **state)
{
    (void)state;
    tocsin_stack_warm();
    outer_frame(0);
    assert_true(n_pcs >= 3);
    assert_false(more);
    tocsin_symbolizer_t *sym = tocsin_symbolizer_new(NULL, NULL);
    assert_non_null(sym);
    tocsin_event_reset(&ev, arena);
    memcpy(ev.pcs, pcs, n_pcs * sizeof(pcs[0]));
    ev.n_pcs = n_pcs;
    tocsin_symbolize_live(sym, &ev);
    assert_int_equal(ev.n_frames, n_pcs);
    assert_string_equal(ev.frames[0].function, "test_capture_and_symbolise");
    assert_non_null(strstr(ev.frames[0].file, "test_tocsin_stack.c"));
    assert_true(ev.frames[0].line > 0);
    assert_true(ev.frames[0].in_app);
    assert_string_equal(ev.frames[0].module, "test_tocsin_stack");
    /* Again from the cache: the same answer. */
    tocsin_event_reset(&ev, arena);
    memcpy(ev.pcs, pcs, n_pcs * sizeof(pcs[0]));
    ev.n_pcs = n_pcs;
    tocsin_symbolize_live(sym, &ev);
    assert_string_equal(ev.frames[0].function, "test_capture_and_symbolise");

    /* skip drops frames after the caller's; an address in no module keeps its address. */
    outer_frame(1);
    assert_true(n_pcs >= 2);
    tocsin_event_reset(&ev, arena);
    ev.pcs[0] = 0x10;
    ev.n_pcs = 1;
    tocsin_symbolize_live(sym, &ev);
    assert_int_equal(ev.n_frames, 1);
    assert_string_equal(ev.frames[0].function, "");
    assert_int_equal(ev.frames[0].instruction_addr, 0x10);
    assert_false(ev.frames[0].in_app);
    tocsin_symbolizer_destroy(&sym);
    tocsin_symbolizer_destroy(&sym);
    assert_null(sym);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_app_rules),
        cmocka_unit_test(test_capture_and_symbolise),
    };
    return cmocka_run_group_tests_name("tocsin_stack", tests, NULL, NULL);
}
