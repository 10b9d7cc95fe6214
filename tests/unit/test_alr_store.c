/*
 * Durable state on real LMDB files in a temporary directory: buckets and offsets come back
 * together after a reopen; alert states, the outbox and the next id come back; a delivered
 * notification is gone from the outbox for good.
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

#include "alr_notify.h"
#include "alr_store.h"
#include "tc_error.h"

#define S 1000000LL

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_alr_store.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static alr_store_t *open_store(void)
{
    char err[256];
    alr_store_t *st = alr_store_open(dir, err, sizeof(err));
    if (!st) {
        print_error("open: %s\n", err);
    }
    assert_non_null(st);
    return st;
}

static alr_rollup_t bucket(const char *name, int64_t start, uint64_t count, uint64_t errors,
                           uint64_t rev)
{
    alr_rollup_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.service, "shop");
    strcpy(r.environment, "prod");
    strcpy(r.name, name);
    r.kind = ALR_KIND_REQUESTS;
    r.start_s = start;
    r.width_s = 10;
    r.count = count;
    r.errors = errors;
    r.revision = rev;
    return r;
}

static uint64_t window_count(const alr_window_t *w)
{
    alr_window_sum_t s;
    alr_window_sum(w, "shop", "", "*", ALR_KIND_REQUESTS, 0, 10000 * S, &s);
    return s.count;
}

static void test_window_and_offsets(void **state)
{
    (void)state;
    alr_store_t *st = open_store();
    alr_window_t *w = alr_window_new(0);
    alr_rollup_t b[] = {bucket("/pay", 1000, 10, 1, 1), bucket("/cart", 1000, 20, 2, 1),
                        bucket("/pay", 1010, 30, 3, 1), bucket("/pay", 1000, 40, 4, 2)};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(alr_window_put(w, &b[i], 2000 * S, true), 1);
    }
    size_t n;
    const alr_window_change_t *j = alr_window_journal(w, &n);
    alr_offset_t offs[] = {{0, 5}, {3, 17}};
    assert_int_equal(alr_store_commit_window(st, j, n, "tocsin.rollups", offs, 2), 0);
    alr_window_journal_clear(w);
    alr_store_close(&st);
    assert_null(st);
    alr_store_close(&st);

    st = open_store();
    int64_t off = -1;
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 0, &off), 0);
    assert_int_equal(off, 5);
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 3, &off), 0);
    assert_int_equal(off, 17);
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 1, &off), TC_ENOTFOUND);
    assert_int_equal(alr_store_get_offset(st, "other", 0, &off), TC_ENOTFOUND);
    alr_window_t *w2 = alr_window_new(0);
    size_t skipped = 99;
    assert_int_equal(alr_store_load_window(st, w2, 2000 * S, &skipped), 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(alr_window_bucket_count(w2), 3);
    assert_int_equal(window_count(w2), 40 + 20 + 30); /* revision 2 replaced revision 1 */
    alr_window_journal(w2, &n);
    assert_int_equal(n, 0); /* restoring does not journal */

    /* Pruning is durable too; offsets move on in the same transaction. */
    alr_window_prune(w, 1010);
    j = alr_window_journal(w, &n);
    assert_int_equal(n, 2);
    alr_offset_t more[] = {{0, 9}};
    assert_int_equal(alr_store_commit_window(st, j, n, "tocsin.rollups", more, 1), 0);
    alr_store_close(&st);
    st = open_store();
    alr_window_t *w3 = alr_window_new(0);
    assert_int_equal(alr_store_load_window(st, w3, 2000 * S, NULL), 0);
    assert_int_equal(window_count(w3), 30);
    assert_int_equal(alr_store_get_offset(st, "tocsin.rollups", 0, &off), 0);
    assert_int_equal(off, 9);
    char detail[200];
    assert_int_equal(alr_store_check(st, detail, sizeof(detail)), 0);
    assert_non_null(strstr(detail, "1 buckets"));
    alr_window_destroy(&w);
    alr_window_destroy(&w2);
    alr_window_destroy(&w3);
    alr_store_close(&st);
}

static alr_ruleset_t *rules(void)
{
    static const char yaml[] =
        "receivers:\n  - name: hook\n    webhook: http://127.0.0.1:9/hook\n"
        "rules:\n  - alert: ShopErrors\n    type: error_rate\n    service: shop\n"
        "    window: 1m\n    above: 0.05\n    severity: critical\n    receiver: hook\n";
    char err[256];
    alr_ruleset_t *set = alr_ruleset_load_data(yaml, sizeof(yaml) - 1, "r", err, sizeof(err));
    assert_non_null(set);
    return set;
}

static int restore_cb(void *ctx, const json_t *state)
{
    alr_evaluator_t *ev = ctx;
    return alr_evaluator_restore(ev, state, 3000 * S, NULL) == 0 ? 0 : -1;
}

typedef struct {
    int n;
    uint64_t id;
    char body[4096];
    char url[128];
} outbox_seen_t;

static int outbox_cb(void *ctx, const alr_outbox_item_t *it)
{
    outbox_seen_t *o = ctx;
    o->n++;
    o->id = it->id;
    snprintf(o->body, sizeof(o->body), "%s", it->body);
    snprintf(o->url, sizeof(o->url), "%s", it->url);
    return 0;
}

static void test_alerts_and_outbox(void **state)
{
    (void)state;
    alr_store_t *st = open_store();
    assert_int_equal(alr_store_next_id(st), 1);
    alr_evaluator_t *ev = alr_evaluator_new(alr_store_next_id(st));
    alr_window_t *w = alr_window_new(0);
    alr_transitions_t trans = {0};
    assert_int_equal(alr_evaluator_set_rules(ev, rules(), 1000 * S, &trans), 0);
    alr_rollup_t b = bucket("/pay", 980, 100, 50, 1);
    alr_window_put(w, &b, 1000 * S, false);
    alr_evaluator_run(ev, w, 1000 * S, 30 * S, &trans);
    assert_int_equal(trans.len, 1);
    char *body = alr_notify_body(&trans.items[0], "http://127.0.0.1:7440");
    alr_outbox_item_t item = {trans.items[0].id, trans.items[0].fingerprint,
                              alr_notify_url(&trans.items[0]), body, 1000 * S};
    assert_int_equal(alr_store_commit_alerts(st, ev, &item, 1), 0);
    alr_evaluator_persisted(ev);
    alr_transitions_fini(&trans);
    alr_evaluator_destroy(&ev);
    alr_store_close(&st);

    /* A restart: the alert is firing, the notification is owed, ids go on. */
    st = open_store();
    assert_int_equal(alr_store_next_id(st), 2);
    alr_evaluator_t *ev2 = alr_evaluator_new(alr_store_next_id(st));
    assert_int_equal(alr_evaluator_set_rules(ev2, rules(), 3000 * S, &trans), 0);
    assert_int_equal(alr_store_load_alerts(st, restore_cb, ev2), 0);
    assert_int_equal(alr_evaluator_alert(ev2, 0)->state, ALR_STATE_FIRING);
    assert_int_equal(alr_evaluator_alert(ev2, 0)->notif_id, 1);
    outbox_seen_t seen = {0};
    assert_int_equal(alr_store_load_outbox(st, outbox_cb, &seen), 0);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.id, 1);
    assert_string_equal(seen.body, body);
    assert_string_equal(seen.url, "http://127.0.0.1:9/hook");

    /* Delivered: gone, also after another restart. */
    assert_int_equal(alr_store_outbox_delete(st, 1), 0);
    assert_int_equal(alr_store_outbox_delete(st, 1), 0);
    alr_store_close(&st);
    st = open_store();
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(alr_store_load_outbox(st, outbox_cb, &seen), 0);
    assert_int_equal(seen.n, 0);

    /* A removed rule's state is deleted with the next commit. */
    char err[256];
    alr_ruleset_t *empty = alr_ruleset_load_data("rules: []\n", 10, "e", err, sizeof(err));
    assert_int_equal(alr_evaluator_set_rules(ev2, empty, 3001 * S, &trans), 0);
    assert_int_equal(trans.len, 1); /* the firing alert resolves */
    assert_int_equal(alr_store_commit_alerts(st, ev2, NULL, 0), 0);
    alr_evaluator_persisted(ev2);
    alr_evaluator_t *ev3 = alr_evaluator_new(1);
    assert_int_equal(alr_evaluator_set_rules(ev3, rules(), 3000 * S, NULL), 0);
    assert_int_equal(alr_store_load_alerts(st, restore_cb, ev3), 0);
    assert_int_equal(alr_evaluator_alert(ev3, 0)->state, ALR_STATE_INACTIVE);

    free(body);
    alr_transitions_fini(&trans);
    alr_evaluator_destroy(&ev2);
    alr_evaluator_destroy(&ev3);
    alr_window_destroy(&w);
    alr_store_close(&st);
}

static void test_open_failure(void **state)
{
    (void)state;
    char err[256];
    assert_null(alr_store_open("/proc/definitely/not/here", err, sizeof(err)));
    assert_true(err[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_and_outbox, setup, teardown),
        cmocka_unit_test(test_open_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
