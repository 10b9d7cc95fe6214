/*
 * The alerter's behaviour as scenarios on a virtual clock (alr_core: window store, rules,
 * evaluator, silences, dispatcher): at time t these rollups arrive; receivers answer as
 * scripted; exactly these notifications are delivered, at exactly these times, and
 * nothing more. Covers `for` and hysteresis, grouping, repeat interval, escalation
 * through three tiers, acknowledgement stopping it and expiring, flapping, silences
 * ending, a receiver answering 500 then 200, 429 with Retry-After, a receiver down until
 * give-up, a storm of 10,000 alerts, a restart in the middle of an escalation, an HA
 * follower (mirroring the leader's records) taking over in the middle of one, and a
 * one-bucket window at bucket edges (thin and young windows, traffic that stops).
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

#include "alr_core.h"
#include "tc_error.h"

#define S 1000000LL
#define T0 (1800000000LL * S) /* aligned to 10 s */
#define STEP (100 * 1000LL)    /* the clock advances 100 ms a step */

/* ---- the harness --------------------------------------------------------------------- */

/* What a receiver answers, attempt after attempt: "200", "500", "429:3" (Retry-After 3 s),
 * "down" (no answer), "400". The last entry repeats. */
typedef struct {
    const char *name;
    const char *script[16];
    size_t next;
} script_t;

typedef struct {
    alr_core_t *core;
    int64_t now;
    char log[64 * 1024];   /* one line per delivered notification */
    size_t loglen;
    size_t attempts;
    script_t scripts[8];
    size_t nscripts;
    /* per receiver: delivery times, to check rate limits */
    int64_t *deliveries[8];
    size_t ndeliveries[8];
    /* every fingerprint delivered (storm) */
    json_t *delivered_fps;
    json_t *records; /* "kind/key" -> doc: the durable state, as LMDB would hold it */
} sim_t;

static alr_ruleset_t *load(const char *yaml)
{
    char err[1024];
    alr_ruleset_t *set = alr_ruleset_load_data(yaml, strlen(yaml), "test.yaml", err, sizeof(err));
    if (!set) {
        print_error("rules: %s\n", err);
    }
    assert_non_null(set);
    return set;
}

static void sim_init(sim_t *s, const char *yaml)
{
    memset(s, 0, sizeof(*s));
    s->now = T0;
    alr_core_opts_t o = {.max_delay_us = 30 * S, .seed = 42, .external_url = "http://alerter",
                         .started_us = T0};
    s->core = alr_core_new(&o);
    assert_non_null(s->core);
    assert_int_equal(alr_core_set_rules(s->core, load(yaml), s->now), 0);
    s->delivered_fps = json_object();
    s->records = json_object();
}

static void sim_fini(sim_t *s)
{
    alr_core_destroy(&s->core);
    for (size_t i = 0; i < 8; i++) {
        free(s->deliveries[i]);
    }
    json_decref(s->delivered_fps);
    json_decref(s->records);
}

static void sim_script(sim_t *s, const char *receiver, ...)
{
    script_t *sc = &s->scripts[s->nscripts++];
    sc->name = receiver;
    va_list ap;
    va_start(ap, receiver);
    size_t n = 0;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 16) {
        sc->script[n++] = a;
    }
    va_end(ap);
}

static const char *answer(sim_t *s, const char *receiver)
{
    for (size_t i = 0; i < s->nscripts; i++) {
        script_t *sc = &s->scripts[i];
        if (strcmp(sc->name, receiver) == 0) {
            const char *a = sc->script[sc->next];
            if (sc->next + 1 < 16 && sc->script[sc->next + 1]) {
                sc->next++;
            }
            return a;
        }
    }
    return "200";
}

static size_t rcv_slot(const char *name)
{
    static const char *const names[] = {"chat", "pager", "pager2", "hook", "mail", "ops"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(names[i], name) == 0) {
            return i;
        }
    }
    return 7;
}

static void logf_(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(sim_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->log + s->loglen, sizeof(s->log) - s->loglen, fmt, ap);
    va_end(ap);
    if (n > 0) {
        s->loglen += (size_t)n;
    }
    if (s->loglen >= sizeof(s->log)) {
        s->loglen = sizeof(s->log) - 1;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One line: "12.3 chat firing ShopErrors,Other" (alert names, sorted; resolved ones
 * marked with a leading '-'). */
static void record(sim_t *s, const alr_msg_t *m)
{
    json_t *alerts = json_object_get(m->payload, "alerts");
    const char *names[16];
    char bufs[16][80];
    size_t n = 0;
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        if (n >= 16) {
            break;
        }
        const char *an = json_string_value(json_object_get(json_object_get(a, "labels"), "alertname"));
        bool res = strcmp(json_string_value(json_object_get(a, "status")), "resolved") == 0;
        snprintf(bufs[n], sizeof(bufs[n]), "%s%s", res ? "-" : "", an ? an : "?");
        names[n] = bufs[n];
        n++;
    }
    qsort(names, n, sizeof(names[0]), cmp_str);
    int64_t ms = (s->now - T0) / 1000;
    if (json_array_size(alerts) > 16) {
        logf_(s, "%" PRId64 ".%" PRId64 " %s %s %zu alerts\n", ms / 1000, (ms % 1000) / 100,
              m->receiver, alr_msg_kind_name(m->kind), json_array_size(alerts));
        return;
    }
    logf_(s, "%" PRId64 ".%" PRId64 " %s %s ", ms / 1000, (ms % 1000) / 100, m->receiver,
          alr_msg_kind_name(m->kind));
    for (size_t k = 0; k < n; k++) {
        logf_(s, "%s%s", k ? "," : "", names[k]);
    }
    logf_(s, "\n");
}

/* Delivers what is due, with the scripted answers, at the current time. */
static void sim_deliver(sim_t *s)
{
    for (int round = 0; round < 100; round++) {
        alr_attempt_t att[64];
        size_t n = alr_core_poll(s->core, s->now, att, 64);
        if (n == 0) {
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const alr_msg_t *m = alr_dispatch_msg(alr_core_dispatch(s->core), att[i].id);
            assert_non_null(m);
            /* Every attempt renders: the sender would need it. */
            alr_request_t req;
            assert_int_equal(alr_core_render(s->core, att[i].id, s->now, &req), 0);
            alr_request_fini(&req);
            s->attempts++;
            const char *a = answer(s, m->receiver);
            alr_outcome_t o = {true, 200, -1, NULL};
            if (strcmp(a, "down") == 0) {
                o.transport_ok = false;
                o.error = "connection refused";
            } else {
                o.status = atoi(a);
                const char *colon = strchr(a, ':');
                if (colon) {
                    o.retry_after_ms = atoll(colon + 1) * 1000;
                }
            }
            if (o.transport_ok && o.status >= 200 && o.status < 300) {
                record(s, m);
                size_t slot = rcv_slot(m->receiver);
                int64_t *p = realloc(s->deliveries[slot], (s->ndeliveries[slot] + 1) * sizeof(*p));
                assert_non_null(p);
                p[s->ndeliveries[slot]++] = s->now;
                s->deliveries[slot] = p;
                json_t *fps = json_object_get(m->payload, "fingerprints");
                size_t k;
                json_t *v;
                json_array_foreach(fps, k, v)
                {
                    json_object_set(s->delivered_fps, json_string_value(v), json_true());
                }
            }
            assert_int_equal(alr_core_outcome(s->core, att[i].id, &o, s->now), 0);
        }
    }
}

static int save_record(void *ctx, const char *kind, const char *key, const json_t *doc)
{
    sim_t *s = ctx;
    char k[700];
    snprintf(k, sizeof(k), "%s/%s", kind, key);
    if (doc) {
        json_object_set_new(s->records, k, json_deep_copy(doc));
    } else {
        json_object_del(s->records, k);
    }
    return 0;
}

/* Evaluates (every rule on whole seconds), persists, delivers. */
static void sim_step(sim_t *s)
{
    bool full = (s->now - T0) % S == 0;
    assert_true(alr_core_evaluate(s->core, s->now, full) >= 0);
    assert_int_equal(alr_core_each_dirty(s->core, save_record, s), 0);
    alr_core_persisted(s->core);
    sim_deliver(s);
    assert_int_equal(alr_core_each_dirty(s->core, save_record, s), 0);
    alr_core_persisted(s->core);
}

/* Runs the clock until `until_s` (relative), calling `push` before each step. */
typedef void (*push_fn)(sim_t *s, int64_t t_ms);

static void sim_run(sim_t *s, int64_t until_s, push_fn push)
{
    while (s->now <= T0 + until_s * S) {
        if (push) {
            push(s, (s->now - T0) / 1000);
        }
        sim_step(s);
        s->now += STEP;
    }
}

static void put_bucket_rev(sim_t *s, const char *service, int64_t start_s, uint64_t count,
                           uint64_t errors, uint64_t revision, bool open)
{
    alr_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.kind = ALR_REC_BUCKET;
    snprintf(rec.bucket.service, sizeof(rec.bucket.service), "%s", service);
    strcpy(rec.bucket.environment, "prod");
    strcpy(rec.bucket.name, "/pay");
    rec.bucket.kind = ALR_KIND_REQUESTS;
    rec.bucket.start_s = start_s;
    rec.bucket.width_s = 10;
    rec.bucket.count = count;
    rec.bucket.errors = errors;
    rec.bucket.revision = revision;
    rec.bucket.open = open;
    assert_true(alr_core_put_record(s->core, &rec, s->now) >= 0);
}

static void put_bucket(sim_t *s, const char *service, int64_t start_s, uint64_t count,
                       uint64_t errors, uint64_t revision)
{
    put_bucket_rev(s, service, start_s, count, errors, revision, false);
}

/* Every 10 s of virtual time the bucket that just ended arrives for `service` with an
 * error rate of `pct` percent (100 requests). */
static void push_rate(sim_t *s, const char *service, int64_t t_ms, int pct)
{
    if (t_ms % 10000 == 0) {
        int64_t start = (T0 / S) + t_ms / 1000 - 10;
        put_bucket(s, service, start, 100, (uint64_t)pct, 1);
    }
}

static void expect_log(sim_t *s, const char *want)
{
    if (strcmp(s->log, want) != 0) {
        print_error("--- expected ---\n%s--- got ---\n%s", want, s->log);
    }
    assert_string_equal(s->log, want);
}

static uint64_t fp_of(sim_t *s, const char *alertname)
{
    alr_evaluator_t *ev = alr_core_evaluator(s->core);
    for (size_t i = 0; i < alr_evaluator_alert_count(ev); i++) {
        alr_alert_t *a = alr_evaluator_alert(ev, i);
        const char *an = json_string_value(json_object_get(a->labels, "alertname"));
        if (an && strcmp(an, alertname) == 0) {
            return a->fp;
        }
    }
    fail_msg("no alert %s", alertname);
    return 0;
}

/* ---- rule files ---------------------------------------------------------------------- */

#define RECEIVERS                                                                            \
    "receivers:\n"                                                                           \
    "  - {name: chat, type: slack, url: 'http://127.0.0.1:9/chat'}\n"                       \
    "  - {name: pager, type: pagerduty, url: 'http://127.0.0.1:9/pd', routing_key: k1}\n"   \
    "  - {name: pager2, type: pagerduty, url: 'http://127.0.0.1:9/pd', routing_key: k2}\n"  \
    "  - {name: hook, url: 'http://127.0.0.1:9/hook'}\n"                                    \
    "  - {name: ops, url: 'http://127.0.0.1:9/ops'}\n"

#define RULE(name, service, extra)                                                           \
    "  - {alert: " name ", type: error_rate, service: " service                              \
    ", window: 10s, above: 0.05, severity: critical" extra "}\n"

/* ---- scenarios ----------------------------------------------------------------------- */


static void push_hyst(sim_t *s, int64_t t_ms)
{
    /* 10 % errors from 0 s; 3 % (between clear and threshold) from 40 s; 1 % from 70 s. */
    int pct = t_ms < 40000 ? 10 : (t_ms < 70000 ? 3 : 1);
    push_rate(s, "shop", t_ms, pct);
}

static void test_for_and_hysteresis(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 1s, group_interval: 5s, repeat_interval: 0s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", clear: 0.02, for: 15s, receiver: hook"));
    sim_run(&s, 100, push_hyst);
    /* The 10 % bucket arrives at 0 s; pending 0..15 s; fires at 15 s, notified 1 s later.
     * 3 % is above clear: still firing. 1 % (at 70 s) resolves; group_interval is over. */
    expect_log(&s, "16.0 hook firing ShopErrors\n"
                   "70.0 hook resolved -ShopErrors\n");
    sim_fini(&s);
}

static void push_short_spike(sim_t *s, int64_t t_ms)
{
    /* 10 % for one bucket only: pending, never firing with for: 15s. */
    int pct = t_ms < 10000 ? 10 : 0;
    push_rate(s, "shop", t_ms, pct);
}

static void test_for_cancels_pending(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 1s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", for: 15s, receiver: hook"));
    sim_run(&s, 60, push_short_spike);
    expect_log(&s, "");
    sim_fini(&s);
}

static void push_group(sim_t *s, int64_t t_ms)
{
    push_rate(s, "a", t_ms, 10);
    if (t_ms >= 20000) {
        push_rate(s, "b", t_ms, 10);
    }
    push_rate(s, "c", t_ms, t_ms >= 30000 ? 10 : 0);
}

static void test_grouping(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 2s, group_interval: 10s, repeat_interval: 0s}\n" RECEIVERS
                 "policies:\n  - {name: team, tiers: [{receivers: [hook]}]}\n"
                 "routes:\n  - {match: {team: pay}, policy: team, group_by: [team]}\n"
                 "rules:\n" RULE("A", "a", ", labels: {team: pay}") RULE("B", "b", ", labels: {team: pay}")
                     RULE("C", "c", ", labels: {team: pay}"));
    sim_run(&s, 45, push_group);
    /* A fires at 0 s and is notified after group_wait; B (20 s) and C (30 s) join the group:
     * B after group_interval from the last notification, C 10 s later. */
    expect_log(&s, "2.0 hook firing A\n"
                   "20.0 hook firing A,B\n"
                   "30.0 hook firing A,B,C\n");
    sim_fini(&s);
}

static void push_always(sim_t *s, int64_t t_ms)
{
    push_rate(s, "shop", t_ms, 10);
}

static void test_repeat_interval(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 20s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: chat"));
    sim_run(&s, 65, push_always);
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "20.0 chat reminder ShopErrors\n"
                   "40.0 chat reminder ShopErrors\n"
                   "60.0 chat reminder ShopErrors\n");
    sim_fini(&s);
}

#define ESCALATION_POLICY                                                                    \
    "policies:\n"                                                                            \
    "  - name: critical\n"                                                                   \
    "    tiers:\n"                                                                           \
    "      - {receivers: [chat], timeout: 10s}\n"                                            \
    "      - {receivers: [pager], timeout: 10s}\n"                                           \
    "      - {receivers: [pager2], timeout: 10s}\n"                                          \
    "    repeat: 1\n"                                                                        \
    "routes:\n  - {match: {severity: critical}, policy: critical}\n"

static void test_escalation_three_tiers(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS ESCALATION_POLICY
                 "rules:\n" RULE("ShopErrors", "shop", ""));
    sim_run(&s, 70, push_always);
    /* chat at 0 s, pager at 10 s, the next tier at 20 s, then the policy repeats once from
     * the first tier at 30 s, and stops after its last tier. */
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "10.0 pager escalation ShopErrors\n"
                   "20.0 pager2 escalation ShopErrors\n"
                   "30.0 chat escalation ShopErrors\n"
                   "40.0 pager escalation ShopErrors\n"
                   "50.0 pager2 escalation ShopErrors\n");
    sim_fini(&s);
}

static void test_ack_stops_escalation(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS ESCALATION_POLICY
                 "rules:\n" RULE("ShopErrors", "shop", ""));
    sim_run(&s, 12, push_always);
    assert_int_equal(alr_core_ack(s.core, fp_of(&s, "ShopErrors"), "alice", "on it", 0, s.now), 0);
    /* Acknowledging an alert that is not firing is refused. */
    assert_int_equal(alr_core_ack(s.core, 12345, "alice", NULL, 0, s.now), TC_ENOTFOUND);
    sim_run(&s, 60, push_always);
    /* The acknowledgement goes (as acknowledge) to the receivers already paged; the third
     * tier is never paged. */
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "10.0 pager escalation ShopErrors\n"
                   "12.1 chat acknowledged ShopErrors\n"
                   "12.1 pager acknowledged ShopErrors\n");
    alr_alert_t *a = alr_evaluator_get(alr_core_evaluator(s.core), fp_of(&s, "ShopErrors"));
    assert_int_equal(a->state, ALR_STATE_ACKNOWLEDGED);
    sim_fini(&s);
}

static void test_ack_expiry_retriggers(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS ESCALATION_POLICY
                 "rules:\n" RULE("ShopErrors", "shop", ""));
    sim_run(&s, 5, push_always);
    assert_int_equal(alr_core_ack(s.core, fp_of(&s, "ShopErrors"), "bob", NULL, 20000, s.now), 0);
    sim_run(&s, 40, push_always);
    /* Acknowledged at 5.1 s for 20 s: at 25.1 s it fires again and escalation restarts
     * from the first tier. */
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "5.1 chat acknowledged ShopErrors\n"
                   "25.1 chat ack_expired ShopErrors\n"
                   "35.1 pager escalation ShopErrors\n");
    sim_fini(&s);
}

static void push_flap(sim_t *s, int64_t t_ms)
{
    /* Alternates every 10 s between 10 % and 0 % until 80 s, then stays at 10 %. */
    int pct = t_ms >= 80000 ? 10 : ((t_ms / 10000) % 2 == 0 ? 10 : 0);
    push_rate(s, "shop", t_ms, pct);
}

static void test_flapping(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, group_interval: 0s, repeat_interval: 0s, "
                 "flap_window: 60s, flap_threshold: 4}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: chat"));
    sim_run(&s, 160, push_flap);
    /* Changes at 0 (fire), 10 (resolve), 20 (fire); the 4th change (30 s) makes it flapping:
     * announced once, then silence until it has been stable for 60 s after its last
     * change (80 s): at 140 s its state (firing) is notified. */
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "10.0 chat resolved -ShopErrors\n"
                   "20.0 chat firing ShopErrors\n"
                   "30.0 chat flapping -ShopErrors\n"
                   "140.0 chat firing ShopErrors\n");
    sim_fini(&s);
}

static void test_silence_end_notifies_at_once(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 5s, group_interval: 60s, repeat_interval: 0s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: chat")
                     RULE("Other", "other", ", receiver: chat"));
    json_t *body = json_pack("{s:[s], s:s, s:s}", "matchers", "service=shop", "duration", "30s",
                             "created_by", "alice");
    int status = 0;
    char err[256];
    json_t *sil = alr_core_silence_create(s.core, body, s.now, &status, err, sizeof(err));
    assert_non_null(sil);
    assert_int_equal(status, 201);
    json_decref(sil);
    /* A silence that would mute everything is refused. */
    json_t *bad = json_pack("{s:[s], s:s}", "matchers", "service=~.*", "duration", "1h");
    assert_null(alr_core_silence_create(s.core, bad, s.now, &status, err, sizeof(err)));
    assert_int_equal(status, 400);
    json_decref(bad);
    json_decref(body);
    sim_run(&s, 50, push_always);
    /* Muted while the silence runs (0..30 s); at 30 s the alert still fires: at once, not
     * after group_wait. */
    expect_log(&s, "30.0 chat firing ShopErrors\n");
    sim_fini(&s);
}

static void test_receiver_500_then_200(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s, retry: {base: 2s, max: 8s}}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: hook"));
    sim_script(&s, "hook", "500", "500", "200", NULL);
    sim_run(&s, 30, push_always);
    /* Two failures, back-off 1-2 s then 2-4 s (jitter), delivered once on the third try. */
    assert_int_equal(s.attempts, 3);
    const alr_msg_t *m = alr_dispatch_msg_at(alr_core_dispatch(s.core), 0);
    assert_int_equal(m->status, ALR_DLV_DELIVERED);
    assert_int_equal(m->attempts, 3);
    assert_true(m->done_us - T0 >= 3 * S && m->done_us - T0 <= 6 * S);
    assert_int_equal(s.ndeliveries[rcv_slot("hook")], 1);
    sim_fini(&s);
}

static void test_429_retry_after(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: chat"));
    sim_script(&s, "chat", "429:7", "200", NULL);
    sim_run(&s, 30, push_always);
    /* Refused at 0 s with Retry-After 7: nothing is tried before 7 s. */
    assert_int_equal(s.attempts, 2);
    expect_log(&s, "7.0 chat firing ShopErrors\n");
    sim_fini(&s);
}

static void test_receiver_down_until_give_up(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s, fallback: ops,\n"
                 "  retry: {give_up_after: 30s, base: 1s, max: 4s},\n"
                 "  breaker: {failures: 3, cooldown: 5s}}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: hook"));
    sim_script(&s, "hook", "down", NULL);
    sim_run(&s, 60, push_always);
    const alr_msg_t *m = alr_dispatch_msg_at(alr_core_dispatch(s.core), 0);
    assert_int_equal(m->status, ALR_DLV_UNDELIVERED);
    assert_true(m->attempts >= 3);
    /* The circuit opened after 3 failures: far fewer attempts than 30 s of back-off would
     * allow without it. */
    assert_true(m->attempts <= 8);
    /* The content went to the fallback receiver as a self-alert. */
    expect_log(&s, "30.0 ops self ShopErrors\n");
    sim_fini(&s);
}

static void test_400_not_retried(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s, fallback: ops}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: hook"));
    sim_script(&s, "hook", "400", NULL);
    sim_run(&s, 20, push_always);
    assert_int_equal(s.attempts, 2); /* one to hook, one to ops */
    expect_log(&s, "0.0 ops self ShopErrors\n");
    sim_fini(&s);
}

#define STORM 10000

static void push_storm(sim_t *s, int64_t t_ms)
{
    if (t_ms == 0) {
        for (int i = 0; i < STORM; i++) {
            char svc[32];
            snprintf(svc, sizeof(svc), "svc%05d", i);
            put_bucket(s, svc, T0 / S - 10, 100, 50, 1);
        }
    }
}

static void test_storm_10000(void **state)
{
    (void)state;
    size_t len = 200000 + STORM * 120;
    char *yaml = malloc(len);
    assert_non_null(yaml);
    size_t n = (size_t)snprintf(yaml, len,
                                "settings: {group_wait: 1s, repeat_interval: 0s}\n" RECEIVERS
                                "policies:\n  - {name: all, tiers: [{receivers: [chat, pager, hook]}]}\n"
                                "routes:\n  - {policy: all, group_by: [alertname, service]}\n"
                                "rules:\n");
    for (int i = 0; i < STORM; i++) {
        n += (size_t)snprintf(yaml + n, len - n,
                              "  - {alert: Down%05d, type: error_rate, service: svc%05d, "
                              "window: 1m, above: 0.1, severity: critical}\n",
                              i, i);
    }
    sim_t s;
    sim_init(&s, yaml);
    free(yaml);
    sim_run(&s, 60, push_storm);
    /* Every alert that fired is in some delivered notification, on every receiver... */
    assert_int_equal(json_object_size(s.delivered_fps), STORM);
    /* ... with far fewer notifications than alerts, and within each receiver's rate: Slack
     * at most one a second, PagerDuty at most 120 a minute. */
    size_t chat = s.ndeliveries[rcv_slot("chat")], pd = s.ndeliveries[rcv_slot("pager")];
    size_t hook = s.ndeliveries[rcv_slot("hook")];
    print_message("storm: chat %zu, pager %zu, hook %zu notifications\n", chat, pd, hook);
    assert_true(chat >= 1 && chat <= 3);
    assert_true(pd >= 1 && pd <= 10);
    int64_t *d = s.deliveries[rcv_slot("chat")];
    for (size_t i = 1; i < chat; i++) {
        assert_true(d[i] - d[i - 1] >= S);
    }
    d = s.deliveries[rcv_slot("pager")];
    for (size_t i = 0; i + 120 < pd; i++) {
        assert_true(d[i + 120] - d[i] >= 60 * S);
    }
    /* The digest names how many it does not list. */
    const alr_dispatch_t *dp = alr_core_dispatch(s.core);
    bool digest = false;
    for (size_t i = 0; i < alr_dispatch_msg_count(dp); i++) {
        const alr_msg_t *m = alr_dispatch_msg_at(dp, i);
        if (m->kind == ALR_MSG_DIGEST && strcmp(m->receiver, "chat") == 0) {
            digest = true;
            alr_request_t req;
            assert_int_equal(alr_core_render(s.core, m->id, s.now, &req), 0);
            assert_non_null(strstr(req.body, "more"));
            alr_request_fini(&req);
        }
    }
    assert_true(digest);
    sim_fini(&s);
}

static void restart(sim_t *s, const char *yaml)
{
    alr_core_destroy(&s->core);
    alr_core_opts_t o = {.max_delay_us = 30 * S, .seed = 7, .external_url = "http://alerter",
                         .started_us = s->now};
    s->core = alr_core_new(&o);
    assert_non_null(s->core);
    assert_int_equal(alr_core_set_rules(s->core, load(yaml), s->now), 0);
    const char *k;
    json_t *doc;
    json_object_foreach(s->records, k, doc)
    {
        char kind[32];
        const char *slash = strchr(k, '/');
        snprintf(kind, sizeof(kind), "%.*s", (int)(slash - k), k);
        assert_int_equal(alr_core_restore(s->core, kind, slash + 1, doc, s->now), 0);
    }
    assert_int_equal(alr_core_restore_done(s->core, s->now), 0);
}

static void test_restart_mid_escalation(void **state)
{
    (void)state;
    const char *yaml = "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS
                       ESCALATION_POLICY "rules:\n" RULE("ShopErrors", "shop", "");
    sim_t s;
    sim_init(&s, yaml);
    sim_run(&s, 14, push_always);
    /* The window store is durable too (alr_store); here the buckets come again. */
    restart(&s, yaml);
    sim_run(&s, 35, push_always);
    /* Nothing sent before the restart is sent again; the escalation due at 20 s happens. */
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "10.0 pager escalation ShopErrors\n"
                   "20.0 pager2 escalation ShopErrors\n"
                   "30.0 chat escalation ShopErrors\n");
    sim_fini(&s);
}

/* ---- HA: a follower mirrors the leader and takes over --------------------------------- */

typedef struct {
    sim_t *leader;
    sim_t *follower;
} pair_t;

/* The leader's durable records, and its dispatcher's records mirrored by the follower (as
 * main.c publishes them on ha.topic and the follower applies them). */
static int publish_record(void *ctx, const char *kind, const char *key, const json_t *doc)
{
    pair_t *p = ctx;
    save_record(p->leader, kind, key, doc);
    if (strcmp(kind, "group") == 0 || strcmp(kind, "msg") == 0 || strcmp(kind, "rcv") == 0 ||
        strcmp(kind, "meta") == 0) {
        assert_int_equal(alr_core_mirror(p->follower->core, kind, key, doc, p->leader->now), 0);
    }
    return 0;
}

static void pair_step(pair_t *p, bool leader_alive)
{
    sim_t *l = p->leader, *f = p->follower;
    bool full = (f->now - T0) % S == 0;
    if (leader_alive) {
        assert_true(alr_core_evaluate(l->core, l->now, full) >= 0);
        assert_int_equal(alr_core_each_dirty(l->core, publish_record, p), 0);
        alr_core_persisted(l->core);
        sim_deliver(l);
        assert_int_equal(alr_core_each_dirty(l->core, publish_record, p), 0);
        alr_core_persisted(l->core);
    }
    sim_step(f); /* passive: evaluates, sends nothing */
}

static void test_ha_takeover_mid_escalation(void **state)
{
    (void)state;
    const char *yaml = "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS
                       ESCALATION_POLICY "rules:\n" RULE("ShopErrors", "shop", "");
    sim_t l, f;
    sim_init(&l, yaml);
    sim_init(&f, yaml);
    assert_int_equal(alr_core_set_active(f.core, false, f.now), 0);
    assert_false(alr_core_active(f.core));
    pair_t p = {&l, &f};
    /* Both read the same rollups; the leader dies at 14 s (after two tiers), the follower
     * is elected at 16 s. */
    while (f.now <= T0 + 35 * S) {
        int64_t t_ms = (f.now - T0) / 1000;
        bool alive = t_ms < 14000;
        if (t_ms == 16000) {
            assert_int_equal(alr_core_set_active(f.core, true, f.now), 0);
        }
        if (alive) {
            push_always(&l, t_ms);
        }
        push_always(&f, t_ms);
        pair_step(&p, alive);
        l.now += STEP;
        f.now += STEP;
    }
    /* Each tier paged once over the pair: the leader the first two, the new leader the
     * third (due at 20 s) and the policy's repeat; nothing the leader sent is sent again. */
    expect_log(&l, "0.0 chat firing ShopErrors\n"
                   "10.0 pager escalation ShopErrors\n");
    expect_log(&f, "20.0 pager2 escalation ShopErrors\n"
                   "30.0 chat escalation ShopErrors\n");
    /* The follower's notification log holds the leader's deliveries. */
    json_t *log = alr_core_notifications_json(f.core, 100, NULL, "pager", "delivered", 0);
    assert_non_null(log);
    assert_int_equal(json_array_size(json_object_get(log, "notifications")), 1);
    json_decref(log);
    sim_fini(&l);
    sim_fini(&f);
}

static void test_ha_takeover_after_due(void **state)
{
    (void)state;
    const char *yaml = "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS
                       ESCALATION_POLICY "rules:\n" RULE("ShopErrors", "shop", "");
    sim_t l, f;
    sim_init(&l, yaml);
    sim_init(&f, yaml);
    assert_int_equal(alr_core_set_active(f.core, false, f.now), 0);
    pair_t p = {&l, &f};
    /* The leader dies at 14 s; the follower is elected only at 23.5 s: the third tier, due
     * at 20 s, is paged at once. */
    while (f.now <= T0 + 26 * S) {
        int64_t t_ms = (f.now - T0) / 1000;
        bool alive = t_ms < 14000;
        if (t_ms == 23500) {
            assert_int_equal(alr_core_set_active(f.core, true, f.now), 0);
        }
        if (alive) {
            push_always(&l, t_ms);
        }
        push_always(&f, t_ms);
        pair_step(&p, alive);
        l.now += STEP;
        f.now += STEP;
    }
    expect_log(&l, "0.0 chat firing ShopErrors\n"
                   "10.0 pager escalation ShopErrors\n");
    expect_log(&f, "23.5 pager2 escalation ShopErrors\n");
    sim_fini(&l);
    sim_fini(&f);
}

static void push_then_stop(sim_t *s, int64_t t_ms)
{
    push_rate(s, "shop", t_ms, t_ms < 20000 ? 10 : 0);
}

static void test_restart_owes_resolve(void **state)
{
    (void)state;
    const char *yaml = "settings: {group_wait: 0s, group_interval: 1s, repeat_interval: 0s}\n"
                       RECEIVERS "rules:\n" RULE("ShopErrors", "shop", ", receiver: hook");
    sim_t s;
    sim_init(&s, yaml);
    sim_script(&s, "hook", "200", "down", "down", "down", "200", NULL);
    sim_run(&s, 22, push_then_stop);
    /* The resolve (20 s) is still being retried when the alerter stops. */
    restart(&s, yaml);
    sim_run(&s, 60, push_then_stop);
    print_message("%s", s.log);
    assert_non_null(strstr(s.log, "hook resolved -ShopErrors"));
    assert_int_equal(s.ndeliveries[rcv_slot("hook")], 2);
    sim_fini(&s);
}

/* Traffic as the aggregators publish it, for the bucket-edge scenarios: every second the
 * open bucket of "shop" is republished with what it holds so far (`rps` requests a
 * second, `pct` % of them failed, counted down), and each bucket is closed (its last
 * revision) 2 s after its end, as the aggregators' grace does. So just after a bucket
 * begins, a 10 s window holds a young bucket with few requests, and until 12 s the
 * alerter (started at 0 s) has no closed bucket at all. */
typedef struct {
    const char *name;
    const char *rule;       /* extra fields of the 10 s, above 5 % error-rate rule */
    unsigned rps;
    int64_t errors_until_s; /* `pct` errors before, none from then on */
    int64_t traffic_until_s; /* no requests from then on */
    int64_t run_s;
    int64_t restart_s; /* 0: none; else the alerter restarts (from its records) then */
    const char *want;
} edge_case_t;

static const edge_case_t *edge_now;

static void edge_counts(const edge_case_t *c, int64_t from_s, int64_t to_s, uint64_t *count,
                        uint64_t *errors)
{
    uint64_t n = 0, failing = 0;
    for (int64_t t = from_s; t < to_s && t < c->traffic_until_s; t++) {
        n += c->rps;
        failing += t < c->errors_until_s ? c->rps : 0;
    }
    *count = n;
    *errors = failing / 10; /* 10 % */
}

static void push_edge(sim_t *s, int64_t t_ms)
{
    const edge_case_t *c = edge_now;
    if (t_ms % 1000 != 0) {
        return;
    }
    int64_t now_s = t_ms / 1000;
    int64_t b = now_s / 10 * 10;
    uint64_t n, e;
    if (now_s >= 10) {
        /* The previous bucket: complete at its end, closed after the grace. */
        edge_counts(c, b - 10, b, &n, &e);
        if (n > 0 && now_s == b) {
            put_bucket_rev(s, "shop", T0 / S + b - 10, n, e, 10, true);
        } else if (n > 0 && now_s == b + 2) {
            put_bucket_rev(s, "shop", T0 / S + b - 10, n, e, 100, false);
        }
    }
    edge_counts(c, b, now_s, &n, &e);
    if (n > 0) {
        put_bucket_rev(s, "shop", T0 / S + b, n, e, (uint64_t)(now_s - b), true);
    }
}

static void test_bucket_edge_holds(void **state)
{
    (void)state;
    static const edge_case_t cases[] = {
        /* Pending at 5 s (50 requests), firing at 7 s. At 10 s the new bucket holds fewer
         * than min_count requests and no bucket has closed yet: the alert holds. The
         * errors stop at 40 s; the first bucket without errors closes at 52 s: resolved. */
        {"thin window", ", min_count: 50, for: 2s, receiver: hook", 10, 40, 1000, 70, 0,
         "7.0 hook firing ShopErrors\n"
         "52.0 hook resolved -ShopErrors\n"},
        /* min_count 1: at 11 s the young bucket's 5 requests went well (0 %), which says
         * nothing yet about the last 10 s: the alert holds. */
        {"young window", ", for: 2s, receiver: hook", 5, 40, 1000, 70, 0,
         "4.0 hook firing ShopErrors\n"
         "52.0 hook resolved -ShopErrors\n"},
        /* Pending from 5 s with for: 6s. The thin young bucket at 10 s does not reset it;
         * the first closed bucket (12 s) still says 10 %: firing at once. */
        {"pending held", ", min_count: 50, for: 6s, receiver: hook", 10, 1000, 1000, 30, 0,
         "12.0 hook firing ShopErrors\n"},
        /* All traffic stops at 30 s while firing. The last bucket (20-30 s) stays in the
         * windows until the watermark (now - max_delay 30 s) passes 40 s, i.e. until 70 s;
         * then no window can judge: the alert holds for window + for (12 s) after the last
         * evaluation with data (69 s) and resolves at 81 s, once. */
        {"traffic stops", ", min_count: 50, for: 2s, receiver: hook", 10, 1000, 30, 100, 0,
         "7.0 hook firing ShopErrors\n"
         "81.0 hook resolved -ShopErrors\n"},
        /* The same with a restart in the middle of the hold: the time of the last judged
         * evaluation is kept, so the resolve is not put off. */
        {"traffic stops, restart", ", min_count: 50, for: 2s, receiver: hook", 10, 1000, 30,
         100, 75,
         "7.0 hook firing ShopErrors\n"
         "81.0 hook resolved -ShopErrors\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].name);
        char yaml[2048];
        snprintf(yaml, sizeof(yaml),
                 "settings: {group_wait: 0s, group_interval: 1s, repeat_interval: 0s}\n"
                 RECEIVERS "rules:\n" RULE("ShopErrors", "shop", "%s"),
                 cases[i].rule);
        sim_t s;
        sim_init(&s, yaml);
        edge_now = &cases[i];
        if (cases[i].restart_s) {
            sim_run(&s, cases[i].restart_s, push_edge);
            restart(&s, yaml);
        }
        sim_run(&s, cases[i].run_s, push_edge);
        expect_log(&s, cases[i].want);
        sim_fini(&s);
    }
    edge_now = NULL;
}

static void test_rule_removed_resolves(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, group_interval: 1s, repeat_interval: 0s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: hook"));
    sim_run(&s, 5, push_always);
    assert_int_equal(alr_core_set_rules(s.core, load("settings: {group_wait: 0s, group_interval: 1s}\n" RECEIVERS "rules: []\n"),
                                        s.now),
                     0);
    sim_run(&s, 10, NULL);
    expect_log(&s, "0.0 hook firing ShopErrors\n"
                   "5.1 hook resolved -ShopErrors\n");
    sim_fini(&s);
}

static void test_manual_resolve(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, repeat_interval: 0s}\n" RECEIVERS
                 "rules:\n" RULE("ShopErrors", "shop", ", receiver: chat"));
    sim_run(&s, 3, push_always);
    uint64_t fp = fp_of(&s, "ShopErrors");
    assert_int_equal(alr_core_resolve(s.core, fp, "carol", s.now), 0);
    assert_int_equal(alr_core_resolve(s.core, fp, "carol", s.now), TC_ESTATE);
    sim_run(&s, 30, push_always);
    /* Still above the threshold, but resolved by hand: it does not fire again until its
     * condition has been false. */
    expect_log(&s, "0.0 chat firing ShopErrors\n"
                   "3.1 chat resolved -ShopErrors\n");
    sim_fini(&s);
}

static void test_issue_alerts(void **state)
{
    (void)state;
    sim_t s;
    sim_init(&s, "settings: {group_wait: 0s, group_interval: 0s, repeat_interval: 0s}\n" RECEIVERS
                 "rules:\n"
                 "  - {alert: NewIssue, type: new_issue, severity: warning, receiver: chat,\n"
                 "     resolve_after: 30s, min_level: error,\n"
                 "     annotations: {summary: 'new issue in {{ $labels.service }}'}}\n");
    alr_record_t rec;
    memset(&rec, 0, sizeof(rec));
    rec.kind = ALR_REC_ISSUE;
    strcpy(rec.issue.service, "shop");
    strcpy(rec.issue.environment, "prod");
    strcpy(rec.issue.issue_id, "abc123");
    strcpy(rec.issue.type, "KeyError");
    strcpy(rec.issue.message, "'user'");
    rec.issue.level = 5;
    rec.issue.count = 1;
    rec.issue.time_us = T0 - 2 * S;
    assert_int_equal(alr_core_put_record(s.core, &rec, s.now), 1);
    sim_run(&s, 5, NULL);
    /* The same change delivered again (aggregators publish at least once): applied once. */
    assert_int_equal(alr_core_put_record(s.core, &rec, s.now), 0);
    /* A later change of the same issue: refreshed, not paged twice. A warning-level issue:
     * ignored. */
    rec.issue.count = 2;
    rec.issue.time_us = T0 + 4 * S;
    assert_int_equal(alr_core_put_record(s.core, &rec, s.now), 1);
    strcpy(rec.issue.issue_id, "def456");
    rec.issue.level = 4;
    alr_core_put_record(s.core, &rec, s.now);
    sim_run(&s, 60, NULL);
    expect_log(&s, "0.0 chat firing NewIssue\n"
                   "35.1 chat resolved -NewIssue\n");
    sim_fini(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_for_and_hysteresis),
        cmocka_unit_test(test_for_cancels_pending),
        cmocka_unit_test(test_grouping),
        cmocka_unit_test(test_repeat_interval),
        cmocka_unit_test(test_escalation_three_tiers),
        cmocka_unit_test(test_ack_stops_escalation),
        cmocka_unit_test(test_ack_expiry_retriggers),
        cmocka_unit_test(test_flapping),
        cmocka_unit_test(test_silence_end_notifies_at_once),
        cmocka_unit_test(test_receiver_500_then_200),
        cmocka_unit_test(test_429_retry_after),
        cmocka_unit_test(test_receiver_down_until_give_up),
        cmocka_unit_test(test_400_not_retried),
        cmocka_unit_test(test_storm_10000),
        cmocka_unit_test(test_restart_mid_escalation),
        cmocka_unit_test(test_ha_takeover_mid_escalation),
        cmocka_unit_test(test_ha_takeover_after_due),
        cmocka_unit_test(test_restart_owes_resolve),
        cmocka_unit_test(test_bucket_edge_holds),
        cmocka_unit_test(test_rule_removed_resolves),
        cmocka_unit_test(test_manual_resolve),
        cmocka_unit_test(test_issue_alerts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
