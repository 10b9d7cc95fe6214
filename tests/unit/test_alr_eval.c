/*
 * Rule evaluation as scenarios on a virtual clock: at time t these rollups arrive; the
 * evaluator runs every second (twice, to catch repeats); exactly these notifications come
 * out, at exactly these times. Then reloads, removals and restarts of the state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "alr_eval.h"
#include "tc_error.h"

#define S 1000000LL
#define MAX_DELAY (30 * S)

static alr_ruleset_t *rules_from(const char *rule_fields)
{
    char yaml[2048], err[512];
    snprintf(yaml, sizeof(yaml),
             "receivers:\n  - name: hook\n    webhook: http://127.0.0.1:9/hook\n"
             "rules:\n  - alert: ShopErrors\n    type: error_rate\n    service: shop\n"
             "    severity: critical\n    receiver: hook\n    labels: {team: pay}\n"
             "    annotations: {summary: too many errors}\n%s",
             rule_fields);
    alr_ruleset_t *set = alr_ruleset_load_data(yaml, strlen(yaml), "test.yaml", err, sizeof(err));
    if (!set) {
        print_error("rules: %s\n", err);
    }
    assert_non_null(set);
    return set;
}

#define STD_RULE "    window: 1m\n    above: 0.05\n    for: 10s\n    min_count: 20\n"

typedef struct {
    int64_t at_s;    /* when it arrives; 0 ends the list */
    int64_t start_s; /* 10 s bucket start */
    uint64_t count, errors;
    const char *env;  /* NULL: "prod" */
    const char *name; /* NULL: "/pay" */
} push_t;

typedef struct {
    int64_t at_s;
    alr_notify_status_t status;
} expect_t;

#define END {0, 0, 0, 0, NULL, NULL}
#define F(t) {t, ALR_NOTIFY_FIRING}
#define R(t) {t, ALR_NOTIFY_RESOLVED}

typedef struct {
    const char *what;
    const char *rule;
    push_t pushes[40];
    int64_t from_s, to_s;
    expect_t expect[8];
    size_t nexpect;
} scenario_t;

static void push_bucket(alr_window_t *w, const push_t *p, int64_t now_s)
{
    alr_rollup_t r;
    memset(&r, 0, sizeof(r));
    strcpy(r.service, "shop");
    strcpy(r.environment, p->env ? p->env : "prod");
    strcpy(r.name, p->name ? p->name : "/pay");
    r.kind = ALR_KIND_REQUESTS;
    r.start_s = p->start_s;
    r.width_s = 10;
    r.count = p->count;
    r.errors = p->errors;
    r.revision = 1;
    assert_int_equal(alr_window_put(w, &r, now_s * S, false), 1);
}

static void run_scenario(const scenario_t *sc)
{
    alr_evaluator_t *ev = alr_evaluator_new(1);
    alr_window_t *w = alr_window_new(0);
    alr_transitions_t trans = {0};
    assert_int_equal(alr_evaluator_set_rules(ev, rules_from(sc->rule), sc->from_s * S, &trans),
                     0);
    assert_int_equal(trans.len, 0);
    expect_t got[16];
    size_t ngot = 0;
    uint64_t last_id = 0;
    for (int64_t t = sc->from_s; t <= sc->to_s; t++) {
        for (const push_t *p = sc->pushes; p->at_s; p++) {
            if (p->at_s == t) {
                push_bucket(w, p, t);
            }
        }
        for (int again = 0; again < 2; again++) {
            assert_int_equal(alr_evaluator_run(ev, w, t * S, MAX_DELAY, &trans), 1);
            for (size_t i = 0; i < trans.len; i++) {
                const alr_transition_t *tr = &trans.items[i];
                assert_true(tr->id > last_id); /* unique and increasing */
                last_id = tr->id;
                assert_int_equal(tr->at_us, t * S);
                assert_non_null(tr->snapshot);
                assert_string_equal(alr_notify_status_name(tr->status),
                                    tr->status == ALR_NOTIFY_FIRING ? "firing" : "resolved");
                if (tr->status == ALR_NOTIFY_RESOLVED) {
                    assert_int_equal(tr->ends_at_us, t * S);
                    assert_true(tr->starts_at_us < tr->ends_at_us);
                } else {
                    assert_int_equal(tr->starts_at_us, t * S);
                    assert_int_equal(tr->ends_at_us, 0);
                }
                if (ngot < 16) {
                    got[ngot].at_s = t;
                    got[ngot].status = tr->status;
                }
                ngot++;
            }
            alr_transitions_clear(&trans);
        }
    }
    bool same = ngot == sc->nexpect;
    for (size_t i = 0; same && i < ngot; i++) {
        same = got[i].at_s == sc->expect[i].at_s && got[i].status == sc->expect[i].status;
    }
    if (!same) {
        print_error("scenario \"%s\": expected", sc->what);
        for (size_t i = 0; i < sc->nexpect; i++) {
            print_error(" %s@%lld", alr_notify_status_name(sc->expect[i].status),
                        (long long)sc->expect[i].at_s);
        }
        print_error("; got");
        for (size_t i = 0; i < ngot && i < 16; i++) {
            print_error(" %s@%lld", alr_notify_status_name(got[i].status),
                        (long long)got[i].at_s);
        }
        print_error("\n");
    }
    assert_true(same);
    alr_transitions_fini(&trans);
    alr_window_destroy(&w);
    alr_evaluator_destroy(&ev);
}

static const scenario_t scenarios[] = {
    {"for-duration: fires after 10 s, resolves when the data ages out",
     STD_RULE,
     {{1000, 980, 100, 10, NULL, NULL}, END},
     1000, 1300, {F(1010), R(1080)}, 2},
    {"pending cancelled: the condition goes before `for` has passed",
     STD_RULE,
     {{1000, 980, 100, 10, NULL, NULL}, {1005, 990, 1000, 0, NULL, NULL}, END},
     1000, 1300, {{0, 0}}, 0},
    {"fire then resolve on healthy traffic, each exactly once",
     STD_RULE,
     {{992, 980, 100, 20, NULL, NULL},   {1002, 990, 100, 20, NULL, NULL},
      {1012, 1000, 100, 20, NULL, NULL}, {1022, 1010, 100, 20, NULL, NULL},
      {1032, 1020, 100, 20, NULL, NULL}, {1042, 1030, 1000, 0, NULL, NULL},
      {1052, 1040, 1000, 0, NULL, NULL}, {1062, 1050, 1000, 0, NULL, NULL},
      {1072, 1060, 1000, 0, NULL, NULL}, {1082, 1070, 1000, 0, NULL, NULL},
      {1092, 1080, 1000, 0, NULL, NULL}, {1102, 1090, 1000, 0, NULL, NULL},
      {1112, 1100, 1000, 0, NULL, NULL}, {1122, 1110, 1000, 0, NULL, NULL}, END},
     990, 1400, {F(1002), R(1052)}, 2},
    {"below min_count never fires, however bad",
     STD_RULE,
     {{1000, 980, 10, 10, NULL, NULL}, END},
     1000, 1200, {{0, 0}}, 0},
    {"exactly at the threshold does not fire (strictly above)",
     STD_RULE,
     {{1000, 980, 100, 5, NULL, NULL}, END},
     1000, 1200, {{0, 0}}, 0},
    {"for 0 fires on the first evaluation; fires again after resolving",
     "    window: 1m\n    above: 0.05\n    for: 0s\n",
     {{1000, 980, 100, 10, NULL, NULL}, {1100, 1080, 100, 10, NULL, NULL}, END},
     1000, 1300, {F(1000), R(1080), F(1100), R(1180)}, 4},
    {"environment filter: errors elsewhere do not count",
     STD_RULE "    environment: prod\n",
     {{1000, 980, 100, 50, "staging", NULL}, {1000, 980, 100, 0, "prod", NULL}, END},
     1000, 1200, {{0, 0}}, 0},
    {"name filter: another route's errors do not count",
     STD_RULE "    name: /pay\n",
     {{1000, 980, 100, 50, NULL, "/cart"}, {1000, 980, 100, 0, NULL, "/pay"}, END},
     1000, 1200, {{0, 0}}, 0},
    {"`*` merges routes and environments: 30 errors in 200 requests",
     STD_RULE,
     {{1000, 980, 100, 0, "staging", "/cart"}, {1000, 980, 100, 30, "prod", "/pay"}, END},
     1000, 1200, {F(1010), R(1080)}, 2},
    {"no data at all never fires",
     STD_RULE,
     {END},
     1000, 1200, {{0, 0}}, 0},
};

static void test_scenarios(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        run_scenario(&scenarios[i]);
    }
}

/* Brings the std rule's alert to firing at 1010 with data that stays bad until 1080. */
static alr_evaluator_t *firing_evaluator(alr_window_t *w, alr_transitions_t *trans)
{
    alr_evaluator_t *ev = alr_evaluator_new(1);
    assert_int_equal(alr_evaluator_set_rules(ev, rules_from(STD_RULE), 1000 * S, trans), 0);
    push_t p = {1000, 980, 100, 10, NULL, NULL};
    push_bucket(w, &p, 1000);
    for (int64_t t = 1000; t <= 1010; t++) {
        alr_evaluator_run(ev, w, t * S, MAX_DELAY, trans);
    }
    assert_int_equal(trans->len, 1);
    assert_int_equal(alr_evaluator_alert(ev, 0)->state, ALR_STATE_FIRING);
    alr_transitions_clear(trans);
    return ev;
}

static void test_state_machine_details(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    alr_transitions_t trans = {0};
    alr_evaluator_t *ev = alr_evaluator_new(1);
    assert_int_equal(alr_evaluator_set_rules(ev, rules_from(STD_RULE), 1000 * S, &trans), 0);
    push_t p = {1000, 980, 100, 10, NULL, NULL};
    push_bucket(w, &p, 1000);
    alr_evaluator_run(ev, w, 1000 * S, MAX_DELAY, &trans);
    alr_alert_t *a = alr_evaluator_alert(ev, 0);
    assert_int_equal(a->state, ALR_STATE_PENDING);
    assert_int_equal(a->since_us, 1000 * S);
    assert_int_equal(a->active_at_us, 1000 * S);
    assert_true(a->has_value && a->value == 0.1);
    assert_int_equal(a->count, 100);
    assert_true(a->dirty);
    alr_evaluator_persisted(ev);
    assert_false(a->dirty);
    alr_evaluator_run(ev, w, 1009 * S, MAX_DELAY, &trans);
    assert_false(a->dirty); /* still pending: nothing to persist */
    alr_evaluator_run(ev, w, 1010 * S, MAX_DELAY, &trans);
    assert_int_equal(a->state, ALR_STATE_FIRING);
    assert_int_equal(a->fired_at_us, 1010 * S);
    assert_int_equal(a->notif_id, 1);
    assert_int_equal(a->notif_status, ALR_NOTIFY_FIRING);
    assert_int_equal(trans.len, 1);
    json_t *labels = json_object_get(trans.items[0].snapshot, "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "alertname")), "ShopErrors");
    assert_string_equal(json_string_value(json_object_get(labels, "team")), "pay");
    assert_string_equal(
        json_string_value(json_object_get(trans.items[0].snapshot, "webhook")),
        "http://127.0.0.1:9/hook");
    alr_transitions_clear(&trans);
    alr_evaluator_run(ev, w, 1080 * S, MAX_DELAY, &trans);
    assert_int_equal(a->state, ALR_STATE_RESOLVED);
    assert_int_equal(a->resolved_at_us, 1080 * S);
    assert_false(a->has_value);
    /* Resolved stays visible for a while, then becomes inactive without a notification. */
    alr_transitions_clear(&trans);
    alr_evaluator_run(ev, w, 1080 * S + ALR_RESOLVED_KEEP_US - 1, MAX_DELAY, &trans);
    assert_int_equal(a->state, ALR_STATE_RESOLVED);
    alr_evaluator_run(ev, w, 1080 * S + ALR_RESOLVED_KEEP_US, MAX_DELAY, &trans);
    assert_int_equal(a->state, ALR_STATE_INACTIVE);
    assert_int_equal(trans.len, 0);
    size_t counts[ALR_STATE_COUNT];
    alr_evaluator_state_counts(ev, counts);
    assert_int_equal(counts[ALR_STATE_INACTIVE], 1);
    assert_int_equal(alr_evaluator_next_id(ev), 3);

    json_t *api = alr_alert_api_json(a, &alr_evaluator_rules(ev)->rules[0]);
    assert_string_equal(json_string_value(json_object_get(api, "state")), "inactive");
    assert_string_equal(json_string_value(json_object_get(api, "alertname")), "ShopErrors");
    json_t *last = json_object_get(api, "last_notification");
    assert_int_equal(json_integer_value(json_object_get(last, "id")), 2);
    assert_string_equal(json_string_value(json_object_get(last, "status")), "resolved");
    assert_true(json_is_null(json_object_get(api, "value")));
    json_decref(api);
    alr_transitions_fini(&trans);
    alr_evaluator_destroy(&ev);
    alr_evaluator_destroy(&ev);
    alr_window_destroy(&w);
}

/* A reload with the same identity keeps a firing alert firing, without a new notification;
 * a new threshold applies from the next evaluation. */
static void test_reload_keeps_state(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    alr_transitions_t trans = {0};
    alr_evaluator_t *ev = firing_evaluator(w, &trans);
    assert_int_equal(alr_evaluator_set_rules(ev, rules_from(STD_RULE), 1011 * S, &trans), 0);
    assert_int_equal(trans.len, 0);
    assert_int_equal(alr_evaluator_alert(ev, 0)->state, ALR_STATE_FIRING);
    alr_evaluator_run(ev, w, 1012 * S, MAX_DELAY, &trans);
    assert_int_equal(trans.len, 0);
    /* Raise the threshold above the current 10 %: the same alert resolves, once. */
    assert_int_equal(alr_evaluator_set_rules(
                         ev, rules_from("    window: 1m\n    above: 0.5\n    for: 10s\n"),
                         1013 * S, &trans),
                     0);
    assert_int_equal(trans.len, 0);
    alr_evaluator_run(ev, w, 1014 * S, MAX_DELAY, &trans);
    alr_evaluator_run(ev, w, 1015 * S, MAX_DELAY, &trans);
    assert_int_equal(trans.len, 1);
    assert_int_equal(trans.items[0].status, ALR_NOTIFY_RESOLVED);
    assert_int_equal(trans.items[0].starts_at_us, 1010 * S);
    alr_transitions_fini(&trans);
    alr_evaluator_destroy(&ev);
    alr_window_destroy(&w);
}

/* A firing alert whose rule disappears is resolved once, from its snapshot. */
static void test_removed_rule_resolves(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    alr_transitions_t trans = {0};
    alr_evaluator_t *ev = firing_evaluator(w, &trans);
    uint64_t fp = alr_evaluator_alert(ev, 0)->fingerprint;
    char err[256];
    alr_ruleset_t *empty = alr_ruleset_load_data("rules: []\n", 10, "e", err, sizeof(err));
    assert_int_equal(alr_evaluator_set_rules(ev, empty, 1020 * S, &trans), 0);
    assert_int_equal(trans.len, 1);
    assert_int_equal(trans.items[0].status, ALR_NOTIFY_RESOLVED);
    assert_true(trans.items[0].fingerprint == fp);
    assert_false(trans.items[0].has_value);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(trans.items[0].snapshot, "labels"), "alertname")),
                        "ShopErrors");
    size_t n;
    const uint64_t *rem = alr_evaluator_removed(ev, &n);
    assert_int_equal(n, 1);
    assert_true(rem[0] == fp);
    alr_evaluator_persisted(ev);
    alr_evaluator_removed(ev, &n);
    assert_int_equal(n, 0);
    alr_transitions_clear(&trans);
    alr_evaluator_run(ev, w, 1021 * S, MAX_DELAY, &trans);
    assert_int_equal(trans.len, 0);
    alr_transitions_fini(&trans);
    alr_evaluator_destroy(&ev);
    alr_window_destroy(&w);
}

/* The persisted state brings a firing alert back after a restart: no new firing, and the
 * owed resolve still comes, with a fresh id. */
static void test_restore(void **state)
{
    (void)state;
    alr_window_t *w = alr_window_new(0);
    alr_transitions_t trans = {0};
    alr_evaluator_t *ev = firing_evaluator(w, &trans);
    json_t *saved = alr_alert_state_json(alr_evaluator_alert(ev, 0));
    assert_non_null(saved);
    alr_evaluator_destroy(&ev);

    alr_evaluator_t *ev2 = alr_evaluator_new(1);
    assert_int_equal(alr_evaluator_set_rules(ev2, rules_from(STD_RULE), 1030 * S, &trans), 0);
    assert_int_equal(alr_evaluator_restore(ev2, saved, 1030 * S, &trans), 0);
    assert_int_equal(trans.len, 0);
    alr_alert_t *a = alr_evaluator_alert(ev2, 0);
    assert_int_equal(a->state, ALR_STATE_FIRING);
    assert_int_equal(a->fired_at_us, 1010 * S);
    assert_int_equal(alr_evaluator_next_id(ev2), 2);
    for (int64_t t = 1030; t <= 1200; t++) {
        alr_evaluator_run(ev2, w, t * S, MAX_DELAY, &trans);
    }
    assert_int_equal(trans.len, 1);
    assert_int_equal(trans.items[0].status, ALR_NOTIFY_RESOLVED);
    assert_int_equal(trans.items[0].id, 2);
    assert_int_equal(trans.items[0].at_us, 1080 * S);
    alr_transitions_clear(&trans);

    /* Restored into rules that no longer hold it: resolved from the snapshot, dropped. */
    alr_evaluator_t *ev3 = alr_evaluator_new(10);
    char err[256];
    alr_ruleset_t *empty = alr_ruleset_load_data("rules: []\n", 10, "e", err, sizeof(err));
    assert_int_equal(alr_evaluator_set_rules(ev3, empty, 1030 * S, &trans), 0);
    assert_int_equal(alr_evaluator_restore(ev3, saved, 1030 * S, &trans), 0);
    assert_int_equal(trans.len, 1);
    assert_int_equal(trans.items[0].status, ALR_NOTIFY_RESOLVED);
    assert_int_equal(trans.items[0].id, 10);
    assert_int_equal(alr_evaluator_alert_count(ev3), 0);

    /* Malformed states are refused. */
    json_t *bad = json_pack("{s:s, s:s}", "fingerprint", "xyz", "state", "firing");
    assert_int_equal(alr_evaluator_restore(ev3, bad, 0, &trans), TC_EPARSE);
    json_decref(bad);
    bad = json_pack("{s:s, s:s}", "fingerprint", "0000000000000001", "state", "exploded");
    assert_int_equal(alr_evaluator_restore(ev3, bad, 0, &trans), TC_EPARSE);
    json_decref(bad);

    json_decref(saved);
    alr_transitions_fini(&trans);
    alr_evaluator_destroy(&ev2);
    alr_evaluator_destroy(&ev3);
    alr_window_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_state_machine_details),
        cmocka_unit_test(test_reload_keeps_state),
        cmocka_unit_test(test_removed_rule_resolves),
        cmocka_unit_test(test_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
