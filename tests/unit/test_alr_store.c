/*
 * alr_store on real LMDB files: buckets (with sketches) and offsets in one transaction and
 * back after reopening; state records written, deleted, read back; malformed records
 * skipped; the core's whole state survives a close and reopen.
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
#include <unistd.h>

#include "alr_store.h"
#include "tc_error.h"

#define S 1000000LL
#define T 1800000000LL

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/alr-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_buckets_and_offsets(void **state)
{
    (void)state;
    char err[256];
    alr_store_t *st = alr_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    alr_window_t *w = alr_window_new(0);
    alr_rollup_t b;
    memset(&b, 0, sizeof(b));
    strcpy(b.service, "shop");
    strcpy(b.environment, "prod");
    strcpy(b.name, "/pay");
    b.kind = 1;
    b.start_s = T;
    b.width_s = 10;
    b.count = 5;
    b.errors = 1;
    b.revision = 9;
    b.sum = 12.5;
    b.has_sketch = true;
    tc_sketch_init(&b.sketch, TC_SKETCH_SCHEMA);
    tc_sketch_add(&b.sketch, 2500, 5);
    assert_int_equal(alr_window_put(w, &b, T * S, true), 1);
    alr_rollup_fini(&b);
    alr_offset_t off[2] = {{0, 42}, {3, 7}};
    size_t n;
    const alr_window_change_t *ch = alr_window_journal(w, &n);
    assert_int_equal(alr_store_commit_window(st, w, ch, n, "tocsin.rollups", off, 2), 0);
    alr_window_destroy(&w);
    alr_store_close(&st);

    st = alr_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    int64_t o = 0;
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 3, &o), 0);
    assert_int_equal(o, 7);
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 1, &o), TC_ENOTFOUND);
    w = alr_window_new(0);
    size_t skipped = 9;
    assert_int_equal(alr_store_load_window(st, w, T * S, &skipped), 0);
    assert_int_equal(skipped, 0);
    tc_sketch_t sk;
    tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
    alr_window_agg_t g;
    alr_window_agg(w, "shop", "", "*", 1, 0, INT64_MAX, &sk, &g);
    assert_int_equal(g.count, 5);
    assert_true(g.sum == 12.5);
    assert_int_equal(sk.count, 5);
    tc_sketch_fini(&sk);
    /* Deleting through the journal. */
    alr_window_journal_clear(w);
    alr_window_prune(w, T + 10);
    ch = alr_window_journal(w, &n);
    assert_int_equal(alr_store_commit_window(st, w, ch, n, "tocsin.rollups", NULL, 0), 0);
    alr_window_destroy(&w);
    w = alr_window_new(0);
    assert_int_equal(alr_store_load_window(st, w, T * S, NULL), 0);
    assert_int_equal(alr_window_bucket_count(w), 0);
    alr_window_destroy(&w);
    char detail[200];
    assert_int_equal(alr_store_check(st, detail, sizeof(detail)), 0);
    alr_store_close(&st);
    alr_store_close(&st);
}

typedef struct {
    int n;
    char kinds[8][16];
} seen_t;

static int on_record(void *ctx, const char *kind, const char *key, const json_t *doc)
{
    seen_t *s = ctx;
    (void)key;
    if (json_object_get(doc, "bad")) {
        return TC_EPARSE;
    }
    if (s->n < 8) {
        snprintf(s->kinds[s->n], 16, "%s", kind);
    }
    s->n++;
    return 0;
}

static void test_records(void **state)
{
    (void)state;
    char err[256];
    alr_store_t *st = alr_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    alr_record_w_t recs[4] = {{"alert", "00ff", "{\"v\":1}"},
                              {"msg", "0000000000000001", "{\"v\":1}"},
                              {"group", "p:{a=\"1\"}", "{\"bad\":true}"},
                              {"silence", "abcd", "not json"}};
    assert_int_equal(alr_store_write_records(st, recs, 4), 0);
    seen_t s = {0};
    size_t skipped = 0;
    assert_int_equal(alr_store_load_records(st, on_record, &s, &skipped), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(skipped, 2);
    alr_record_w_t del[1] = {{"alert", "00ff", NULL}};
    assert_int_equal(alr_store_write_records(st, del, 1), 0);
    s.n = 0;
    assert_int_equal(alr_store_load_records(st, on_record, &s, NULL), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.kinds[0], "msg");
    alr_store_close(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_buckets_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
