/*
 * alr_store on real LMDB files: buckets (with sketches, per source partition, open or
 * closed) with offsets of two topics and state records in one transaction, and back after
 * reopening; buckets written by the previous format read as partition 0, closed; state
 * records written, deleted, read back; malformed records skipped.
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

#include <lmdb.h>

#include "alr_store.h"
#include "tc_error.h"
#include "tc_util.h"

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
    b.open = true;
    assert_int_equal(alr_window_put(w, &b, T * S, true), 1);
    alr_rollup_fini(&b);
    /* The same series and start from another partition of the events topic, closed. */
    alr_rollup_t c;
    memset(&c, 0, sizeof(c));
    strcpy(c.service, "shop");
    strcpy(c.environment, "prod");
    strcpy(c.name, "/pay");
    c.kind = 1;
    c.start_s = T;
    c.width_s = 10;
    c.count = 3;
    c.revision = 2;
    c.source_partition = 5;
    assert_int_equal(alr_window_put(w, &c, T * S + 7, true), 1);
    alr_offset_t off[3] = {{"tocsin.rollups", 0, 42}, {"tocsin.rollups", 3, 7},
                           {"tocsin.alerter", 0, 11}};
    alr_record_w_t rec[1] = {{"alert", "00ff", "{\"v\":1}"}};
    size_t n;
    const alr_window_change_t *ch = alr_window_journal(w, &n);
    assert_int_equal(n, 2);
    assert_int_equal(alr_store_commit(st, w, ch, n, off, 3, rec, 1), 0);
    alr_window_destroy(&w);
    alr_store_close(&st);

    st = alr_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    int64_t o = 0;
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 3, &o), 0);
    assert_int_equal(o, 7);
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 1, &o), TC_ENOTFOUND);
    assert_int_equal(alr_store_get_offset(st, "tocsin.alerter", 0, &o), 0);
    assert_int_equal(o, 11);
    w = alr_window_new(0);
    size_t skipped = 9;
    assert_int_equal(alr_store_load_window(st, w, T * S, &skipped), 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(alr_window_bucket_count(w), 2);
    tc_sketch_t sk;
    tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
    alr_window_agg_t g;
    alr_window_agg(w, "shop", "", "*", 1, 0, INT64_MAX, 0, &sk, &g);
    assert_int_equal(g.count, 8); /* both partitions */
    assert_int_equal(g.open, 1);
    assert_true(g.sum == 12.5);
    assert_int_equal(sk.count, 5);
    tc_sketch_fini(&sk);
    alr_window_agg(w, "shop", "", "*", 1, 0, INT64_MAX, ALR_AGG_CLOSED_ONLY, NULL, &g);
    assert_int_equal(g.count, 3);
    alr_rollup_t id, got;
    memset(&id, 0, sizeof(id));
    strcpy(id.service, "shop");
    strcpy(id.environment, "prod");
    strcpy(id.name, "/pay");
    id.kind = 1;
    id.start_s = T;
    id.source_partition = 5;
    assert_int_equal(alr_window_get(w, &id, &got), 0);
    assert_int_equal(got.grew_us, T * S + 7); /* when its count grew, kept */
    assert_false(got.open);
    alr_rollup_fini(&got);
    /* Deleting through the journal. */
    alr_window_journal_clear(w);
    alr_window_prune(w, T + 10);
    ch = alr_window_journal(w, &n);
    assert_int_equal(alr_store_commit(st, w, ch, n, NULL, 0, NULL, 0), 0);
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

/* A bucket written by the previous format (no partition in the key, version 2 value)
 * reads as partition 0, closed. */
static void test_legacy_bucket(void **state)
{
    (void)state;
    char err[256];
    alr_store_t *st = alr_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    alr_store_close(&st);
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 1ULL << 30), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "buckets", 0, &dbi), 0);
    uint8_t key[64], val[74];
    size_t kl = 0;
    memcpy(key, "shop\0prod\0/pay\0", 15);
    kl = 15;
    tc_be32_put(key + kl, 1);
    tc_be64_put(key + kl + 4, (uint64_t)T);
    kl += 12;
    memset(val, 0, sizeof(val));
    val[0] = 2;
    tc_be32_put(val + 1, 10);
    tc_be64_put(val + 5, 4);  /* revision */
    tc_be64_put(val + 13, 9); /* count */
    tc_be64_put(val + 21, 2); /* errors */
    MDB_val k = {kl, key}, v = {sizeof(val), val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    st = alr_store_open(dir, err, sizeof(err));
    assert_non_null(st);
    alr_window_t *w = alr_window_new(0);
    size_t skipped = 9;
    assert_int_equal(alr_store_load_window(st, w, T * S, &skipped), 0);
    assert_int_equal(skipped, 0);
    alr_window_agg_t g;
    alr_window_agg(w, "shop", "", "*", 1, 0, INT64_MAX, ALR_AGG_CLOSED_ONLY, NULL, &g);
    assert_int_equal(g.count, 9);
    assert_int_equal(g.errors, 2);
    /* A newer revision of partition 0 replaces it. */
    alr_rollup_t b;
    memset(&b, 0, sizeof(b));
    strcpy(b.service, "shop");
    strcpy(b.environment, "prod");
    strcpy(b.name, "/pay");
    b.kind = 1;
    b.start_s = T;
    b.width_s = 10;
    b.count = 10;
    b.revision = 5;
    assert_int_equal(alr_window_put(w, &b, T * S, true), 1);
    alr_window_agg(w, "shop", "", "*", 1, 0, INT64_MAX, 0, NULL, &g);
    assert_int_equal(g.count, 10);
    alr_window_destroy(&w);
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
        cmocka_unit_test_setup_teardown(test_legacy_bucket, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
