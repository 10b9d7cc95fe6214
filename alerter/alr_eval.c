#include "alr_eval.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

struct alr_evaluator {
    alr_ruleset_t *rules;
    alr_alert_t *alerts; /* alerts[i] belongs to rules->rules[i] */
    size_t nalerts;
    uint64_t next_id;
    uint64_t *removed;
    size_t nremoved, cap_removed;
};

const char *alr_state_name(alr_state_t state)
{
    switch (state) {
    case ALR_STATE_INACTIVE:
        return "inactive";
    case ALR_STATE_PENDING:
        return "pending";
    case ALR_STATE_FIRING:
        return "firing";
    default:
        return "resolved";
    }
}

const char *alr_notify_status_name(alr_notify_status_t status)
{
    return status == ALR_NOTIFY_FIRING ? "firing" : "resolved";
}

static bool parse_state(const char *s, alr_state_t *out)
{
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        if (s && strcmp(s, alr_state_name((alr_state_t)i)) == 0) {
            *out = (alr_state_t)i;
            return true;
        }
    }
    return false;
}

void alr_transitions_clear(alr_transitions_t *list)
{
    for (size_t i = 0; i < list->len; i++) {
        json_decref(list->items[i].snapshot);
    }
    list->len = 0;
}

void alr_transitions_fini(alr_transitions_t *list)
{
    alr_transitions_clear(list);
    free(list->items);
    list->items = NULL;
    list->cap = 0;
}

static alr_transition_t *transition_add(alr_transitions_t *list)
{
    if (list->len == list->cap) {
        size_t next = list->cap ? list->cap * 2 : 8;
        alr_transition_t *p = realloc(list->items, next * sizeof(*p));
        if (!p) {
            return NULL;
        }
        list->items = p;
        list->cap = next;
    }
    alr_transition_t *t = &list->items[list->len++];
    memset(t, 0, sizeof(*t));
    return t;
}

void alr_rule_sample(const alr_rule_t *rule, const alr_window_t *window, int64_t watermark_us,
                     alr_sample_t *out)
{
    memset(out, 0, sizeof(*out));
    alr_window_sum_t sum;
    alr_window_sum(window, rule->service, rule->environment, rule->name, ALR_KIND_REQUESTS,
                   watermark_us - rule->window_ms * 1000, watermark_us, &sum);
    out->count = sum.count;
    out->errors = sum.errors;
    if (sum.count == 0) {
        return;
    }
    out->has_value = true;
    out->value = (double)sum.errors / (double)sum.count;
    out->cond = sum.count >= rule->min_count && out->value > rule->above;
}

static void enter(alr_alert_t *a, alr_state_t state, int64_t now_us)
{
    a->state = state;
    a->since_us = now_us;
    a->dirty = true;
}

bool alr_alert_step(alr_alert_t *a, const alr_rule_t *rule, const alr_sample_t *s,
                    int64_t now_us, alr_notify_status_t *status)
{
    a->evaluated_us = now_us;
    a->has_value = s->has_value;
    a->value = s->value;
    a->count = s->count;
    a->errors = s->errors;
    if (s->cond) {
        if (a->state == ALR_STATE_INACTIVE || a->state == ALR_STATE_RESOLVED) {
            enter(a, ALR_STATE_PENDING, now_us);
            a->active_at_us = now_us;
        }
        if (a->state == ALR_STATE_PENDING && now_us - a->active_at_us >= rule->for_ms * 1000) {
            enter(a, ALR_STATE_FIRING, now_us);
            a->fired_at_us = now_us;
            a->resolved_at_us = 0;
            *status = ALR_NOTIFY_FIRING;
            return true;
        }
        return false;
    }
    switch (a->state) {
    case ALR_STATE_PENDING:
        enter(a, ALR_STATE_INACTIVE, now_us);
        a->active_at_us = 0;
        return false;
    case ALR_STATE_FIRING:
        enter(a, ALR_STATE_RESOLVED, now_us);
        a->active_at_us = 0;
        a->resolved_at_us = now_us;
        *status = ALR_NOTIFY_RESOLVED;
        return true;
    case ALR_STATE_RESOLVED:
        if (now_us - a->since_us >= ALR_RESOLVED_KEEP_US) {
            enter(a, ALR_STATE_INACTIVE, now_us);
        }
        return false;
    default:
        return false;
    }
}

json_t *alr_rule_snapshot(const alr_ruleset_t *set, const alr_rule_t *rule)
{
    const alr_receiver_t *rc = &set->receivers[rule->receiver];
    return json_pack("{s:o*, s:o*, s:s, s:s}", "labels", alr_rule_labels_json(rule),
                     "annotations", alr_rule_annotations_json(rule), "receiver", rc->name,
                     "webhook", rc->webhook);
}

alr_evaluator_t *alr_evaluator_new(uint64_t next_id)
{
    alr_evaluator_t *self = calloc(1, sizeof(*self));
    if (self) {
        self->next_id = next_id > 0 ? next_id : 1;
    }
    return self;
}

static void alerts_free(alr_alert_t *alerts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(alerts[i].snapshot);
    }
    free(alerts);
}

void alr_evaluator_destroy(alr_evaluator_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_evaluator_t *self = *self_p;
    alerts_free(self->alerts, self->nalerts);
    alr_ruleset_destroy(&self->rules);
    free(self->removed);
    free(self);
    *self_p = NULL;
}

static int note_removed(alr_evaluator_t *self, uint64_t fp)
{
    if (self->nremoved == self->cap_removed) {
        size_t next = self->cap_removed ? self->cap_removed * 2 : 8;
        uint64_t *p = realloc(self->removed, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->removed = p;
        self->cap_removed = next;
    }
    self->removed[self->nremoved++] = fp;
    return 0;
}

/* Emits the transition for alert `a` (already stepped). For a firing, `set`/`rule` give the
 * snapshot; a resolve reuses the snapshot taken when it fired. */
static int emit(alr_evaluator_t *self, alr_alert_t *a, const alr_ruleset_t *set,
                const alr_rule_t *rule, alr_notify_status_t status, int64_t now_us,
                alr_transitions_t *out)
{
    if (status == ALR_NOTIFY_FIRING || !a->snapshot) {
        json_t *snap = rule ? alr_rule_snapshot(set, rule) : NULL;
        if (!snap) {
            return TC_ENOMEM;
        }
        json_decref(a->snapshot);
        a->snapshot = snap;
    }
    alr_transition_t *t = transition_add(out);
    if (!t) {
        return TC_ENOMEM;
    }
    t->id = self->next_id++;
    t->fingerprint = a->fingerprint;
    t->status = status;
    t->at_us = now_us;
    t->starts_at_us = a->fired_at_us;
    t->ends_at_us = status == ALR_NOTIFY_RESOLVED ? now_us : 0;
    t->has_value = a->has_value;
    t->value = a->value;
    t->snapshot = json_incref(a->snapshot);
    a->notif_id = t->id;
    a->notif_status = status;
    a->notif_at_us = now_us;
    a->dirty = true;
    return 0;
}

/* An alert whose rule is gone: a firing one is resolved (with no value), then dropped. */
static int drop_alert(alr_evaluator_t *self, alr_alert_t *a, int64_t now_us,
                      alr_transitions_t *out)
{
    if (a->state == ALR_STATE_FIRING && a->snapshot) {
        a->has_value = false;
        a->resolved_at_us = now_us;
        int rc = emit(self, a, NULL, NULL, ALR_NOTIFY_RESOLVED, now_us, out);
        if (rc != 0) {
            return rc;
        }
    }
    return note_removed(self, a->fingerprint);
}

int alr_evaluator_set_rules(alr_evaluator_t *self, alr_ruleset_t *rules, int64_t now_us,
                            alr_transitions_t *out)
{
    assert(self && rules);
    alr_alert_t *alerts = rules->nrules ? calloc(rules->nrules, sizeof(*alerts)) : NULL;
    bool *kept = self->nalerts ? calloc(self->nalerts, sizeof(*kept)) : NULL;
    if ((rules->nrules && !alerts) || (self->nalerts && !kept)) {
        free(alerts);
        free(kept);
        alr_ruleset_destroy(&rules);
        return TC_ENOMEM;
    }
    for (size_t i = 0; i < rules->nrules; i++) {
        alerts[i].fingerprint = rules->rules[i].fingerprint;
        for (size_t j = 0; j < self->nalerts; j++) {
            if (!kept[j] && self->alerts[j].fingerprint == alerts[i].fingerprint) {
                alerts[i] = self->alerts[j]; /* the snapshot moves too */
                kept[j] = true;
                break;
            }
        }
    }
    int rc = 0;
    for (size_t j = 0; j < self->nalerts; j++) {
        if (!kept[j]) {
            int r = drop_alert(self, &self->alerts[j], now_us, out);
            rc = rc ? rc : r;
            json_decref(self->alerts[j].snapshot);
        }
    }
    free(kept);
    free(self->alerts);
    alr_ruleset_destroy(&self->rules);
    self->alerts = alerts;
    self->nalerts = rules->nrules;
    self->rules = rules;
    /* Past this point the swap is done; a failed allocation while dropping alerts lost a
     * resolve or a clean-up, which the caller reports. */
    return rc;
}

static int64_t get_i64(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

int alr_evaluator_restore(alr_evaluator_t *self, const json_t *st, int64_t now_us,
                          alr_transitions_t *out)
{
    const char *fp_hex = json_string_value(json_object_get(st, "fingerprint"));
    alr_alert_t a;
    memset(&a, 0, sizeof(a));
    char *end = NULL;
    if (!fp_hex || strlen(fp_hex) != 16) {
        return TC_EPARSE;
    }
    a.fingerprint = strtoull(fp_hex, &end, 16);
    if (!end || *end || !parse_state(json_string_value(json_object_get(st, "state")), &a.state)) {
        return TC_EPARSE;
    }
    a.since_us = get_i64(st, "since_us");
    a.active_at_us = get_i64(st, "active_at_us");
    a.fired_at_us = get_i64(st, "fired_at_us");
    a.resolved_at_us = get_i64(st, "resolved_at_us");
    a.notif_id = (uint64_t)get_i64(st, "notif_id");
    a.notif_status = json_is_true(json_object_get(st, "notif_resolved")) ? ALR_NOTIFY_RESOLVED
                                                                          : ALR_NOTIFY_FIRING;
    a.notif_at_us = get_i64(st, "notif_at_us");
    json_t *snap = json_object_get(st, "snapshot");
    if (json_is_object(snap)) {
        a.snapshot = json_deep_copy(snap);
        if (!a.snapshot) {
            return TC_ENOMEM;
        }
    }
    if (a.notif_id >= self->next_id) {
        self->next_id = a.notif_id + 1;
    }
    for (size_t i = 0; i < self->nalerts; i++) {
        if (self->alerts[i].fingerprint == a.fingerprint) {
            json_decref(self->alerts[i].snapshot);
            self->alerts[i] = a;
            return 0;
        }
    }
    int rc = drop_alert(self, &a, now_us, out);
    json_decref(a.snapshot);
    return rc;
}

int alr_evaluator_run(alr_evaluator_t *self, const alr_window_t *window, int64_t now_us,
                      int64_t max_delay_us, alr_transitions_t *out)
{
    if (!self->rules) {
        return 0;
    }
    int64_t wm = alr_window_watermark_us(window, now_us, max_delay_us);
    for (size_t i = 0; i < self->nalerts; i++) {
        const alr_rule_t *rule = &self->rules->rules[i];
        alr_alert_t *a = &self->alerts[i];
        alr_sample_t s;
        alr_rule_sample(rule, window, wm, &s);
        alr_notify_status_t status;
        if (alr_alert_step(a, rule, &s, now_us, &status)) {
            int rc = emit(self, a, self->rules, rule, status, now_us, out);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return (int)self->nalerts;
}

const alr_ruleset_t *alr_evaluator_rules(const alr_evaluator_t *self)
{
    return self->rules;
}

size_t alr_evaluator_alert_count(const alr_evaluator_t *self)
{
    return self->nalerts;
}

alr_alert_t *alr_evaluator_alert(alr_evaluator_t *self, size_t i)
{
    assert(i < self->nalerts);
    return &self->alerts[i];
}

void alr_evaluator_state_counts(const alr_evaluator_t *self, size_t *counts)
{
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        counts[i] = 0;
    }
    for (size_t i = 0; i < self->nalerts; i++) {
        counts[self->alerts[i].state]++;
    }
}

uint64_t alr_evaluator_next_id(const alr_evaluator_t *self)
{
    return self->next_id;
}

const uint64_t *alr_evaluator_removed(const alr_evaluator_t *self, size_t *len)
{
    *len = self->nremoved;
    return self->removed;
}

void alr_evaluator_persisted(alr_evaluator_t *self)
{
    for (size_t i = 0; i < self->nalerts; i++) {
        self->alerts[i].dirty = false;
    }
    self->nremoved = 0;
}

json_t *alr_alert_state_json(const alr_alert_t *a)
{
    char fp[17];
    snprintf(fp, sizeof(fp), "%016" PRIx64, a->fingerprint);
    return json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:O?}", "v", 1,
                     "fingerprint", fp, "state", alr_state_name(a->state), "since_us",
                     (json_int_t)a->since_us, "active_at_us", (json_int_t)a->active_at_us,
                     "fired_at_us", (json_int_t)a->fired_at_us, "resolved_at_us",
                     (json_int_t)a->resolved_at_us, "notif_id", (json_int_t)a->notif_id,
                     "notif_resolved", a->notif_status == ALR_NOTIFY_RESOLVED, "notif_at_us",
                     (json_int_t)a->notif_at_us, "snapshot", a->snapshot);
}

/* RFC 3339 time, or JSON null for 0. */
static json_t *time_json(int64_t us)
{
    if (us == 0) {
        return json_null();
    }
    char buf[32];
    tc_time_format_rfc3339(us, buf);
    return json_string(buf);
}

json_t *alr_alert_api_json(const alr_alert_t *a, const alr_rule_t *rule)
{
    char fp[17];
    snprintf(fp, sizeof(fp), "%016" PRIx64, a->fingerprint);
    json_t *labels = rule ? alr_rule_labels_json(rule)
                          : json_deep_copy(json_object_get(a->snapshot, "labels"));
    json_t *last = json_null();
    if (a->notif_id) {
        last = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)a->notif_id, "status",
                         alr_notify_status_name(a->notif_status), "at",
                         time_json(a->notif_at_us));
    }
    return json_pack("{s:s?, s:s, s:o*, s:s, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:o*}",
                     "alertname", rule ? rule->alert : NULL, "fingerprint", fp, "labels",
                     labels, "state", alr_state_name(a->state), "since", time_json(a->since_us),
                     "active_at", time_json(a->active_at_us), "fired_at",
                     time_json(a->fired_at_us), "evaluated_at", time_json(a->evaluated_us),
                     "value", a->has_value ? json_real(a->value) : json_null(), "count",
                     (json_int_t)a->count, "errors", (json_int_t)a->errors,
                     "last_notification", last);
}
