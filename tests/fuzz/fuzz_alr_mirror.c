/*
 * Fuzz target: a record of another alerter, as read from ha.topic (alr_core_mirror on a
 * follower) or from the LMDB state of a previous run (alr_core_restore). Input: the first
 * line is "KIND KEY" (kinds: group, msg, rcv, meta, silence, human, alert, ichg), the rest
 * is the JSON document (empty: a deletion). Checks the promises: only the documented
 * return codes; a core that applied the record still evaluates, becomes active, and
 * renders and answers every attempt it then starts, without crashing or leaking.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alr_core.h"
#include "tc_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define NOW (1800000000LL * 1000000LL)

static const char rules_yaml[] =
    "settings: {group_wait: 0s, group_interval: 1s, repeat_interval: 1m, fallback: ops}\n"
    "receivers:\n"
    "  - {name: chat, type: slack, url: 'http://127.0.0.1:9/chat'}\n"
    "  - {name: pager, type: pagerduty, url: 'http://127.0.0.1:9/pd', routing_key: k}\n"
    "  - {name: ops, url: 'http://127.0.0.1:9/ops'}\n"
    "policies:\n"
    "  - name: critical\n"
    "    tiers:\n"
    "      - {receivers: [chat], timeout: 10s}\n"
    "      - {receivers: [pager], timeout: 10s}\n"
    "routes:\n  - {policy: critical}\n"
    "rules:\n"
    "  - {alert: ShopErrors, type: error_rate, service: shop, window: 1m, above: 0.05,\n"
    "     severity: critical}\n"
    "  - {alert: NewIssue, type: new_issue, severity: error}\n";

static alr_core_t *core_new(void)
{
    alr_core_opts_t o = {
        .max_delay_us = 30000000LL, .seed = 1, .external_url = "http://a", .started_us = NOW};
    alr_core_t *core = alr_core_new(&o);
    CHECK(core);
    char err[512];
    alr_ruleset_t *rules =
        alr_ruleset_load_data(rules_yaml, sizeof(rules_yaml) - 1, "f.yaml", err, sizeof(err));
    CHECK(rules);
    CHECK(alr_core_set_rules(core, rules, NOW) == 0);
    return core;
}

/* Evaluates, then starts and answers (500, then 200) whatever the core sends. */
static void exercise(alr_core_t *core)
{
    for (int round = 0; round < 3; round++) {
        int64_t now = NOW + round * 11000000LL;
        CHECK(alr_core_evaluate(core, now, true) >= 0);
        alr_attempt_t att[32];
        size_t n = alr_core_poll(core, now, att, 32);
        for (size_t i = 0; i < n; i++) {
            alr_request_t req;
            int rc = alr_core_render(core, att[i].id, now, &req);
            CHECK(rc == 0 || rc == TC_ENOTFOUND || rc == TC_ENOMEM);
            if (rc == 0) {
                alr_request_fini(&req);
            }
            alr_outcome_t o = {true, round == 0 ? 500 : 200, -1, NULL};
            rc = alr_core_outcome(core, att[i].id, &o, now);
            CHECK(rc == 0 || rc == TC_ENOTFOUND);
        }
        json_t *j = alr_core_alerts_json(core, NULL, NULL, NULL, NULL, now);
        json_decref(j);
        j = alr_core_notifications_json(core, 1000, NULL, NULL, NULL, 0);
        json_decref(j);
        j = alr_core_receivers_json(core, now);
        json_decref(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t head = nl ? (size_t)(nl - data) : size;
    if (head == 0 || head > 700) {
        return 0;
    }
    char line[701];
    memcpy(line, data, head);
    line[head] = '\0';
    if (memchr(line, '\0', head)) {
        return 0;
    }
    char *sp = strchr(line, ' ');
    if (!sp) {
        return 0;
    }
    *sp = '\0';
    const char *kind = line, *key = sp + 1;
    json_t *doc = NULL;
    if (nl && size > head + 1) {
        json_error_t jerr;
        doc = json_loadb((const char *)nl + 1, size - head - 1, 0, &jerr);
        if (!json_is_object(doc)) {
            json_decref(doc);
            return 0; /* main.c refuses anything but an object before mirroring */
        }
    }

    /* A follower mirrors it, then is elected. */
    alr_core_t *core = core_new();
    CHECK(alr_core_set_active(core, false, NOW) == 0);
    int rc = alr_core_mirror(core, kind, key, doc, NOW);
    CHECK(rc == 0 || rc == TC_EPARSE || rc == TC_ENOTFOUND || rc == TC_ESTATE || rc == TC_ENOMEM);
    CHECK(alr_core_set_active(core, true, NOW) == 0);
    exercise(core);
    alr_core_destroy(&core);

    /* A restart restores it from LMDB. */
    if (doc) {
        core = core_new();
        rc = alr_core_restore(core, kind, key, doc, NOW);
        CHECK(rc == 0 || rc == TC_EPARSE || rc == TC_ENOMEM);
        CHECK(alr_core_restore_done(core, NOW) == 0);
        exercise(core);
        alr_core_destroy(&core);
    }
    json_decref(doc);
    return 0;
}
