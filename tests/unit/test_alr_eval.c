/*
 * alr_eval on a virtual clock, against a real window store: what a threshold rule does
 * with thin, young and missing data (the rule in alr_eval.h, "thin and young", "no data").
 * Each scenario is a script: at time t a bucket arrives (open or closed) or every rule is
 * evaluated; the evaluator's events, with their times, must be exactly the expected ones.
 * (Whole notification flows, with the dispatcher, are test_alr_core's.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alr_eval.h"
#include "alr_rules.h"
#include "alr_window.h"
#include "tc_error.h"

#define S 1000000LL
#define T0 (1800000000LL * S) /* aligned to 10 s */
#define MAX_DELAY (30 * S)

#define RECEIVER "receivers:\n  - {name: hook, url: 'http://127.0.0.1:9/hook'}\nrules:\n"

/* One step of a script: a bucket of "shop" (/pay requests) arrives at `t_s`, or (count
 * < 0) every rule is evaluated each second from the previous step up to `t_s`. */
typedef struct {
    int64_t t_s;
    int64_t start_s; /* relative to T0 */
    int64_t count;   /* -1: evaluate */
    uint64_t errors;
    bool open;
} step_t;

#define EVAL(t) {(t), 0, -1, 0, false}
#define PUT(t, start, count, errors, open) {(t), (start), (count), (errors), (open)}
#define END {-1, 0, 0, 0, false}

typedef struct {
    const char *name;
    const char *rule; /* one rule, YAML flow map */
    step_t steps[16];
    const char *want; /* "t kind\n" per event */
} scenario_t;

static void run(const scenario_t *sc)
{
    print_message("scenario: %s\n", sc->name);
    char yaml[1024], err[512];
    snprintf(yaml, sizeof(yaml), RECEIVER "  - %s\n", sc->rule);
    alr_ruleset_t *rules = alr_ruleset_load_data(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
    if (!rules) {
        print_error("rules: %s\n", err);
    }
    assert_non_null(rules);
    alr_window_t *w = alr_window_new(0);
    alr_evaluator_t *ev = alr_evaluator_new();
    assert_non_null(w);
    assert_non_null(ev);
    alr_events_t out = {0};
    assert_int_equal(alr_evaluator_set_rules(ev, rules, T0, &out), 0);
    char got[2048] = "";
    size_t len = 0, seen = 0;
    uint64_t revision = 0;
    int64_t t_s = 0;
    for (const step_t *st = sc->steps; st->t_s >= 0; st++) {
        if (st->count >= 0) {
            alr_rollup_t b;
            memset(&b, 0, sizeof(b));
            strcpy(b.service, "shop");
            strcpy(b.environment, "prod");
            strcpy(b.name, "/pay");
            b.kind = ALR_KIND_REQUESTS;
            b.start_s = T0 / S + st->start_s;
            b.width_s = 10;
            b.count = (uint64_t)st->count;
            b.errors = st->errors;
            b.revision = ++revision;
            b.open = st->open;
            assert_int_equal(alr_window_put(w, &b, T0 + st->t_s * S, false), 1);
            t_s = st->t_s;
            continue;
        }
        for (; t_s <= st->t_s; t_s++) {
            assert_true(alr_evaluator_run(ev, w, T0 + t_s * S, MAX_DELAY, NULL, 0, T0, &out) >= 0);
            assert_int_equal(alr_evaluator_timers(ev, T0 + t_s * S, &out), 0);
            for (; seen < out.len; seen++) {
                len += (size_t)snprintf(got + len, sizeof(got) - len, "%" PRId64 " %s\n",
                                        (int64_t)((out.items[seen].at_us - T0) / S),
                                        alr_event_kind_name(out.items[seen].kind));
                assert_true(len < sizeof(got));
            }
        }
    }
    if (strcmp(got, sc->want) != 0) {
        print_error("--- expected ---\n%s--- got ---\n%s", sc->want, got);
    }
    assert_string_equal(got, sc->want);
    alr_events_fini(&out);
    alr_evaluator_destroy(&ev);
    alr_evaluator_destroy(&ev);
    alr_window_destroy(&w);
    alr_ruleset_destroy(&rules);
}

static void test_thin_young_and_missing_data(void **state)
{
    (void)state;
    static const scenario_t scenarios[] = {
        /* An event count: the young bucket at 11 s holds 5 requests (a value below the
         * threshold, but of 1 s) and nothing has closed: it holds. The full bucket 10-20 s
         * has 20 (not young at 20 s, but bucket 0-10 s, closed at 12 s, still says 60);
         * resolved when it closes at 22 s. */
        {"event count, young window",
         "{alert: A, type: event_count, service: shop, name: /pay, window: 10s, above: 50, "
         "severity: critical, receiver: hook}",
         {PUT(5, 0, 60, 0, true), EVAL(10), PUT(11, 10, 5, 0, true), EVAL(11),
          PUT(12, 0, 60, 0, false), EVAL(19), PUT(20, 10, 20, 0, true), EVAL(21),
          PUT(22, 10, 20, 0, false), EVAL(30), END},
         "5 firing\n22 resolved\n"},
        /* A request rate below 1/s with no traffic at all: an empty window from before the
         * alerter started is not "no requests"; the fresh window (ending at now - 30 s)
         * lies wholly after the start at 40 s: then it fires. */
        {"below, no traffic since start",
         "{alert: B, type: request_rate, service: shop, name: /pay, window: 10s, below: 1, "
         "severity: warning, receiver: hook}",
         {EVAL(50), END},
         "40 firing\n"},
        /* A below rule never fires on a young partial count alone: 1 request in the bucket
         * begun at 10 s, when no bucket has closed yet (11 s), and then (12 s) the closed
         * bucket 0-10 s says 10/s. */
        {"below, young partial count",
         "{alert: C, type: request_rate, service: shop, name: /pay, window: 10s, below: 5, "
         "severity: warning, receiver: hook}",
         {PUT(1, 0, 10, 0, true), PUT(10, 0, 100, 0, true), EVAL(10), PUT(11, 10, 1, 0, true),
          EVAL(11), PUT(12, 0, 100, 0, false), EVAL(15), END},
         ""},
        /* An error rate with min_count, firing; the series stops at 10 s. Its last bucket
         * stays in the windows until now - 30 s passes 20 s (at 50 s); nothing judges
         * from then on: resolved window + for (10 + 5 s) after the last judged evaluation
         * (49 s). Pending alerts are ended the same way. */
        {"error rate, traffic stops",
         "{alert: D, type: error_rate, service: shop, name: /pay, window: 10s, above: 0.05, "
         "min_count: 50, for: 5s, severity: critical, receiver: hook}",
         {PUT(1, 0, 60, 10, true), EVAL(11), PUT(12, 0, 60, 10, false), EVAL(70), END},
         "6 firing\n64 resolved\n"},
        {"error rate, pending, traffic stops",
         "{alert: E, type: error_rate, service: shop, name: /pay, window: 10s, above: 0.05, "
         "min_count: 50, for: 90s, severity: critical, receiver: hook}",
         {PUT(1, 0, 60, 10, true), EVAL(11), PUT(12, 0, 60, 10, false), EVAL(200), END},
         ""},
    };
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        run(&scenarios[i]);
    }
}

/* The no-data bound is scheduled (next_wake) and ends a firing alert with RESOLVED, a
 * pending one silently (inactive). */
static void test_nodata_bound(void **state)
{
    (void)state;
    static const struct {
        const char *for_;
        alr_state_t before, after; /* just before and at the bound */
        int64_t bound_s;           /* last judged evaluation (49 s) + window + for */
        size_t events;             /* FIRING at 10 s when `for` is 0, RESOLVED at the bound */
    } cases[] = {
        {"0s", ALR_STATE_FIRING, ALR_STATE_RESOLVED, 59, 2},
        {"90s", ALR_STATE_PENDING, ALR_STATE_INACTIVE, 149, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512], err[512];
        snprintf(yaml, sizeof(yaml),
                 RECEIVER "  - {alert: E, type: error_rate, service: shop, name: /pay, "
                          "window: 10s, above: 0.05, min_count: 50, for: %s, "
                          "severity: critical, receiver: hook}\n",
                 cases[i].for_);
        alr_ruleset_t *rules =
            alr_ruleset_load_data(yaml, strlen(yaml), "t.yaml", err, sizeof(err));
        assert_non_null(rules);
        alr_window_t *w = alr_window_new(0);
        alr_evaluator_t *ev = alr_evaluator_new();
        assert_non_null(w);
        assert_non_null(ev);
        alr_events_t out = {0};
        assert_int_equal(alr_evaluator_set_rules(ev, rules, T0, &out), 0);
        alr_rollup_t b;
        memset(&b, 0, sizeof(b));
        strcpy(b.service, "shop");
        strcpy(b.environment, "prod");
        strcpy(b.name, "/pay");
        b.kind = ALR_KIND_REQUESTS;
        b.start_s = T0 / S;
        b.width_s = 10;
        b.count = 60;
        b.errors = 10;
        b.revision = 1;
        assert_int_equal(alr_window_put(w, &b, T0 + 10 * S, false), 1);
        alr_alert_t *a = alr_evaluator_alert(ev, 0);
        /* The bucket (closed at 10 s) is in the windows until now - 30 s reaches 20 s. */
        for (int64_t t = 10; t <= 50; t++) {
            assert_true(alr_evaluator_run(ev, w, T0 + t * S, MAX_DELAY, NULL, 0, T0, &out) >= 0);
            if (t == 49) {
                assert_true(alr_alert_nodata_until(ev, a) == 0); /* judged */
            }
        }
        assert_int_equal(a->judged_at_us, T0 + 49 * S);
        assert_int_equal(a->state, cases[i].before);
        assert_true(alr_alert_nodata_until(ev, a) == T0 + cases[i].bound_s * S);
        int64_t wake = alr_evaluator_next_wake(ev, T0 + 50 * S);
        if (cases[i].before == ALR_STATE_FIRING) {
            assert_true(wake == T0 + cases[i].bound_s * S);
        }
        assert_true(alr_evaluator_run(ev, w, T0 + (cases[i].bound_s - 1) * S, MAX_DELAY, NULL, 0,
                                      T0, &out) >= 0);
        assert_int_equal(a->state, cases[i].before);
        assert_true(alr_evaluator_run(ev, w, T0 + cases[i].bound_s * S, MAX_DELAY, NULL, 0, T0,
                                      &out) >= 0);
        assert_int_equal(a->state, cases[i].after);
        assert_true(alr_alert_nodata_until(ev, a) == 0);
        assert_int_equal(out.len, cases[i].events);
        if (out.len) {
            assert_int_equal(out.items[out.len - 1].kind, ALR_EV_RESOLVED);
            assert_true(out.items[out.len - 1].at_us == T0 + cases[i].bound_s * S);
        }
        alr_events_fini(&out);
        alr_evaluator_destroy(&ev);
        alr_window_destroy(&w);
        alr_ruleset_destroy(&rules);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thin_young_and_missing_data),
        cmocka_unit_test(test_nodata_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
