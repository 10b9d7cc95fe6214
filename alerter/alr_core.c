#include "alr_core.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tc_error.h"
#include "tc_util.h"

/* Issue changes already applied, by hash of (service, issue id, kind, time): aggregators
 * publish them at least once. Open addressing; a key of 0 marks an empty slot. */
typedef struct {
    uint64_t *keys;
    int64_t *at; /* when applied (alerter clock) */
    size_t cap, n;
    uint64_t *added, *removed; /* since the last persist */
    size_t nadded, capadded, nremoved, capremoved;
} seen_t;

struct alr_core {
    alr_window_t *window;
    alr_ruleset_t *rules;
    alr_evaluator_t *ev;
    alr_dispatch_t *dispatch;
    alr_silences_t *silences;
    char *external_url;
    int64_t max_delay_us;
    int64_t started_us;
    uint64_t rng;
    char **dirty_services; /* sorted, unique */
    size_t ndirty, capdirty;
    alr_events_t pending;  /* events from a restore, dispatched at restore_done */
    seen_t seen;
};

/* ---- issue changes seen ---------------------------------------------------------------- */

static size_t seen_slot(const seen_t *t, uint64_t k)
{
    size_t h = (size_t)(k * 0x9E3779B97F4A7C15ULL) & (t->cap - 1);
    while (t->keys[h] && t->keys[h] != k) {
        h = (h + 1) & (t->cap - 1);
    }
    return h;
}

static bool seen_has(const seen_t *t, uint64_t k)
{
    return t->cap && t->keys[seen_slot(t, k)] == k;
}

static int u64_push(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t next = *cap ? *cap * 2 : 16;
        uint64_t *p = realloc(*arr, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        *arr = p;
        *cap = next;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

/* Rebuilds the table with room for `want` entries, keeping those applied after `horizon`
 * (the others are noted removed). */
static int seen_rebuild(seen_t *t, size_t want, int64_t horizon)
{
    size_t cap = 64;
    while (cap < want * 2) {
        cap *= 2;
    }
    uint64_t *keys = calloc(cap, sizeof(*keys));
    int64_t *at = calloc(cap, sizeof(*at));
    if (!keys || !at) {
        free(keys);
        free(at);
        return TC_ENOMEM;
    }
    seen_t nt = *t;
    nt.keys = keys;
    nt.at = at;
    nt.cap = cap;
    nt.n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->keys[i]) {
            continue;
        }
        if (t->at[i] <= horizon) {
            (void)u64_push(&nt.removed, &nt.nremoved, &nt.capremoved, t->keys[i]);
            continue;
        }
        size_t h = seen_slot(&nt, t->keys[i]);
        nt.keys[h] = t->keys[i];
        nt.at[h] = t->at[i];
        nt.n++;
    }
    free(t->keys);
    free(t->at);
    *t = nt;
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

/* Forgets the oldest quarter when full. */
static int seen_make_room(seen_t *t)
{
    if (t->n < ALR_ISSUE_SEEN_MAX) {
        return 0;
    }
    int64_t *ages = malloc(t->n * sizeof(*ages));
    if (!ages) {
        return TC_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->keys[i]) {
            ages[k++] = t->at[i];
        }
    }
    qsort(ages, k, sizeof(*ages), cmp_i64);
    int64_t horizon = ages[k / 4];
    free(ages);
    return seen_rebuild(t, t->n, horizon);
}

static int seen_add(seen_t *t, uint64_t k, int64_t at_us, bool note)
{
    if (seen_make_room(t) != 0) {
        return TC_ENOMEM;
    }
    if ((t->n + 1) * 2 > t->cap && seen_rebuild(t, t->n + 1, INT64_MIN) != 0) {
        return TC_ENOMEM;
    }
    size_t h = seen_slot(t, k);
    if (!t->keys[h]) {
        t->n++;
    }
    t->keys[h] = k;
    t->at[h] = at_us;
    return note ? u64_push(&t->added, &t->nadded, &t->capadded, k) : 0;
}

static void seen_fini(seen_t *t)
{
    free(t->keys);
    free(t->at);
    free(t->added);
    free(t->removed);
    memset(t, 0, sizeof(*t));
}

static int64_t seen_at(const seen_t *t, uint64_t k)
{
    return t->cap && t->keys[seen_slot(t, k)] == k ? t->at[seen_slot(t, k)] : 0;
}

uint64_t alr_issue_change_id(const alr_issue_t *is)
{
    /* service \0 issue_id \0 kind time_us(be64): both strings are bounded by the decoder */
    uint8_t buf[ALR_SERVICE_MAX + ALR_ISSUE_ID_MAX + 2 + 9];
    size_t a = strlen(is->service), b = strlen(is->issue_id);
    memcpy(buf, is->service, a + 1);
    memcpy(buf + a + 1, is->issue_id, b + 1);
    buf[a + b + 2] = is->regressed ? 2 : 1;
    tc_be64_put(buf + a + b + 3, (uint64_t)is->time_us);
    uint64_t h = XXH64(buf, a + b + 11, 0x7153);
    return h ? h : 1; /* 0 marks an empty slot */
}

static uint64_t rnd64(alr_core_t *self)
{
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return self->rng * 0x2545F4914F6CDD1DULL;
}

alr_core_t *alr_core_new(const alr_core_opts_t *o)
{
    alr_core_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->window = alr_window_new(o->max_buckets);
    self->ev = alr_evaluator_new();
    self->dispatch = alr_dispatch_new(1, o->seed ^ 0x5851F42D4C957F2DULL);
    self->silences = alr_silences_new();
    self->external_url = strdup(o->external_url ? o->external_url : "");
    self->max_delay_us = o->max_delay_us;
    self->started_us = o->started_us;
    self->rng = o->seed ? o->seed : 0x9E3779B97F4A7C15ULL;
    if (!self->window || !self->ev || !self->dispatch || !self->silences ||
        !self->external_url) {
        alr_core_destroy(&self);
    }
    return self;
}

void alr_core_destroy(alr_core_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_core_t *self = *self_p;
    alr_dispatch_destroy(&self->dispatch);
    alr_evaluator_destroy(&self->ev);
    alr_silences_destroy(&self->silences);
    alr_window_destroy(&self->window);
    alr_ruleset_destroy(&self->rules);
    for (size_t i = 0; i < self->ndirty; i++) {
        free(self->dirty_services[i]);
    }
    free(self->dirty_services);
    alr_events_fini(&self->pending);
    seen_fini(&self->seen);
    free(self->external_url);
    free(self);
    *self_p = NULL;
}

int alr_core_set_rules(alr_core_t *self, alr_ruleset_t *rules, int64_t now_us)
{
    alr_events_t evs = {0};
    int rc = alr_evaluator_set_rules(self->ev, rules, now_us, &evs);
    if (rc != 0) {
        alr_events_fini(&evs);
        alr_ruleset_destroy(&rules);
        return rc;
    }
    /* From here on the evaluator reads `rules`; the old set goes once the dispatcher
     * moved over too. */
    rc = alr_dispatch_set_rules(self->dispatch, rules, self->ev, now_us);
    alr_ruleset_t *old = self->rules;
    self->rules = rules;
    if (rc == 0) {
        rc = alr_silences_set_file(self->silences, rules);
        alr_dispatch_silences_changed(self->dispatch);
    }
    if (rc == 0) {
        rc = alr_dispatch_events(self->dispatch, self->ev, self->silences, &evs, now_us);
    }
    alr_ruleset_destroy(&old);
    alr_events_fini(&evs);
    return rc;
}

const alr_ruleset_t *alr_core_rules(const alr_core_t *self)
{
    return self->rules;
}

static void note_service(alr_core_t *self, const char *service)
{
    size_t lo = 0, hi = self->ndirty;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(self->dirty_services[mid], service);
        if (c == 0) {
            return;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (self->ndirty == self->capdirty) {
        size_t next = self->capdirty ? self->capdirty * 2 : 16;
        char **p = realloc(self->dirty_services, next * sizeof(*p));
        if (!p) {
            return; /* the next full evaluation covers it */
        }
        self->dirty_services = p;
        self->capdirty = next;
    }
    char *d = strdup(service);
    if (!d) {
        return;
    }
    memmove(&self->dirty_services[lo + 1], &self->dirty_services[lo],
            (self->ndirty - lo) * sizeof(char *));
    self->dirty_services[lo] = d;
    self->ndirty++;
}

static int dispatch(alr_core_t *self, alr_events_t *evs, int64_t now_us)
{
    int rc = alr_dispatch_events(self->dispatch, self->ev, self->silences, evs, now_us);
    evs->len = 0;
    return rc;
}

int alr_core_put_record(alr_core_t *self, const alr_record_t *rec, int64_t now_us)
{
    if (rec->kind == ALR_REC_BUCKET) {
        int rc = alr_window_put(self->window, &rec->bucket, now_us, true);
        if (rc == 1) {
            note_service(self, rec->bucket.service);
        }
        return rc;
    }
    if (rec->kind == ALR_REC_ISSUE) {
        uint64_t id = alr_issue_change_id(&rec->issue);
        if (seen_has(&self->seen, id)) {
            return 0; /* delivered again: applied once already */
        }
        if (seen_add(&self->seen, id, now_us, true) != 0) {
            return TC_ENOMEM;
        }
        alr_events_t evs = {0};
        int rc = alr_evaluator_issue(self->ev, &rec->issue, now_us, &evs);
        if (rc >= 0) {
            int d = dispatch(self, &evs, now_us);
            rc = d != 0 ? d : 1;
        }
        alr_events_fini(&evs);
        return rc;
    }
    if (rec->kind == ALR_REC_ISSUE_STATUS) {
        alr_events_t evs = {0};
        int rc = alr_evaluator_issue_status(self->ev, &rec->status, now_us, &evs);
        if (rc >= 0) {
            int d = dispatch(self, &evs, now_us);
            rc = d != 0 ? d : (rc > 0 ? 1 : 0);
        }
        alr_events_fini(&evs);
        return rc;
    }
    return 0;
}

int alr_core_tick(alr_core_t *self, int64_t now_us)
{
    alr_events_t evs = {0};
    int rc = alr_evaluator_timers(self->ev, now_us, &evs);
    if (rc == 0) {
        rc = dispatch(self, &evs, now_us);
    }
    if (rc == 0) {
        rc = alr_dispatch_tick(self->dispatch, self->ev, self->silences, now_us);
    }
    alr_silences_prune(self->silences, now_us);
    alr_events_fini(&evs);
    return rc;
}

int alr_core_evaluate(alr_core_t *self, int64_t now_us, bool full)
{
    alr_events_t evs = {0};
    int n = 0;
    if (self->rules && (full || self->ndirty > 0)) {
        n = alr_evaluator_run(self->ev, self->window, now_us, self->max_delay_us,
                              full ? NULL : (const char *const *)self->dirty_services,
                              self->ndirty, self->started_us, &evs);
    }
    for (size_t i = 0; i < self->ndirty; i++) {
        free(self->dirty_services[i]);
    }
    self->ndirty = 0;
    int rc = n < 0 ? n : dispatch(self, &evs, now_us);
    alr_events_fini(&evs);
    if (rc == 0) {
        rc = alr_core_tick(self, now_us);
    }
    if (rc == 0 && full && self->seen.n > 0) {
        int64_t oldest = INT64_MAX;
        for (size_t i = 0; i < self->seen.cap; i++) {
            if (self->seen.keys[i] && self->seen.at[i] < oldest) {
                oldest = self->seen.at[i];
            }
        }
        if (oldest <= now_us - ALR_ISSUE_SEEN_KEEP_US &&
            seen_rebuild(&self->seen, self->seen.n, now_us - ALR_ISSUE_SEEN_KEEP_US) != 0) {
            rc = TC_ENOMEM;
        }
    }
    if (rc == 0 && full && self->rules) {
        /* Keep the longest window plus a margin; older buckets cannot matter to any rule. */
        int64_t keep = alr_ruleset_max_window_ms(self->rules) * 1000;
        int64_t margin = 2 * self->max_delay_us > 60000000 ? 2 * self->max_delay_us : 60000000;
        int64_t wm = alr_window_watermark_us(self->window, now_us, self->max_delay_us);
        alr_window_prune(self->window, (wm - keep - margin) / 1000000);
    }
    return rc != 0 ? rc : n;
}

int64_t alr_core_next_wake(const alr_core_t *self, int64_t now_us)
{
    int64_t best = alr_dispatch_next_wake(self->dispatch, now_us);
    int64_t t = alr_evaluator_next_wake(self->ev, now_us);
    if (t > 0 && (!best || t < best)) {
        best = t;
    }
    t = alr_silences_next_edge(self->silences, now_us);
    if (t > 0 && (!best || t < best)) {
        best = t;
    }
    return best;
}

size_t alr_core_poll(alr_core_t *self, int64_t now_us, alr_attempt_t *out, size_t max)
{
    return alr_dispatch_poll(self->dispatch, now_us, out, max);
}

int alr_core_render(alr_core_t *self, uint64_t id, int64_t now_us, alr_request_t *out)
{
    const alr_msg_t *m = alr_dispatch_msg(self->dispatch, id);
    long ri = m ? alr_dispatch_msg_receiver(self->dispatch, m) : -1;
    if (!m || ri < 0) {
        return TC_ENOTFOUND;
    }
    return alr_render(m, &self->rules->receivers[ri], self->external_url,
                      self->rules->settings.digest_max_listed, now_us, out);
}

int alr_core_outcome(alr_core_t *self, uint64_t id, const alr_outcome_t *o, int64_t now_us)
{
    return alr_dispatch_outcome(self->dispatch, id, o, now_us);
}

/* ---- by hand ------------------------------------------------------------------------- */

static int after_action(alr_core_t *self, alr_events_t *evs, int rc, int64_t now_us)
{
    if (rc == 0) {
        rc = dispatch(self, evs, now_us);
    }
    if (rc == 0) {
        rc = alr_dispatch_tick(self->dispatch, self->ev, self->silences, now_us);
    }
    alr_events_fini(evs);
    return rc;
}

int alr_core_ack(alr_core_t *self, uint64_t fp, const char *by, const char *comment,
                 int64_t ttl_ms, int64_t now_us)
{
    if (ttl_ms <= 0 && self->rules) {
        ttl_ms = self->rules->settings.ack_ttl_ms;
    }
    alr_events_t evs = {0};
    int rc = alr_evaluator_ack(self->ev, fp, by, comment, ttl_ms > 0 ? now_us + ttl_ms * 1000 : 0,
                               now_us, &evs);
    return after_action(self, &evs, rc, now_us);
}

int alr_core_unack(alr_core_t *self, uint64_t fp, int64_t now_us)
{
    alr_events_t evs = {0};
    int rc = alr_evaluator_unack(self->ev, fp, now_us, &evs);
    return after_action(self, &evs, rc, now_us);
}

int alr_core_resolve(alr_core_t *self, uint64_t fp, const char *by, int64_t now_us)
{
    alr_events_t evs = {0};
    int rc = alr_evaluator_resolve(self->ev, fp, by, now_us, &evs);
    return after_action(self, &evs, rc, now_us);
}

json_t *alr_core_silence_create(alr_core_t *self, const json_t *body, int64_t now_us,
                                int *status, char *err, size_t errlen)
{
    const alr_silence_t *s =
        alr_silences_create(self->silences, body, rnd64(self), now_us, status, err, errlen);
    if (!s) {
        return NULL;
    }
    alr_dispatch_silences_changed(self->dispatch);
    alr_core_tick(self, now_us);
    return alr_silence_json(s, now_us);
}

int alr_core_silence_expire(alr_core_t *self, const char *id, int64_t now_us)
{
    int rc = alr_silences_expire(self->silences, id, now_us);
    if (rc == 0) {
        alr_dispatch_silences_changed(self->dispatch);
        alr_core_tick(self, now_us);
    }
    return rc;
}

/* ---- HA -------------------------------------------------------------------------------- */

int alr_core_set_active(alr_core_t *self, bool active, int64_t now_us)
{
    int rc = alr_dispatch_set_active(self->dispatch, active, self->ev, self->silences, now_us);
    if (rc == 0 && active) {
        rc = alr_dispatch_tick(self->dispatch, self->ev, self->silences, now_us);
    }
    return rc;
}

bool alr_core_active(const alr_core_t *self)
{
    return alr_dispatch_active(self->dispatch);
}

json_t *alr_core_human_json(const char *action, uint64_t fp, const char *by,
                            const char *comment, int64_t at_us, int64_t expires_us)
{
    char hex[17];
    snprintf(hex, sizeof(hex), "%016" PRIx64, fp);
    return json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:I}", "v", 1, "action", action,
                     "fingerprint", hex, "by", by ? by : "", "comment", comment ? comment : "",
                     "at_us", (json_int_t)at_us, "expires_us", (json_int_t)expires_us);
}

/* A person's acknowledgement, withdrawal or resolve made on a replica, applied here as it
 * was there: only to the firing it was about, and only once (times decide). */
static int apply_human(alr_core_t *self, const json_t *doc, int64_t now_us)
{
    const char *action = json_string_value(json_object_get(doc, "action"));
    const char *hex = json_string_value(json_object_get(doc, "fingerprint"));
    int64_t at = (int64_t)json_integer_value(json_object_get(doc, "at_us"));
    int64_t expires = (int64_t)json_integer_value(json_object_get(doc, "expires_us"));
    const char *by = json_string_value(json_object_get(doc, "by"));
    const char *comment = json_string_value(json_object_get(doc, "comment"));
    char *end = NULL;
    uint64_t fp = hex ? strtoull(hex, &end, 16) : 0;
    if (!action || !hex || !end || *end || at <= 0 || expires < 0) {
        return TC_EPARSE;
    }
    alr_alert_t *a = alr_evaluator_get(self->ev, fp);
    if (!a) {
        return TC_ENOTFOUND;
    }
    bool firing = a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED;
    alr_events_t evs = {0};
    int rc;
    if (strcmp(action, "ack") == 0) {
        if (!firing || a->fired_at_us > at ||
            (a->state == ALR_STATE_ACKNOWLEDGED && a->ack_at_us >= at)) {
            return TC_ESTATE;
        }
        rc = alr_evaluator_ack(self->ev, fp, by, comment, expires, at, &evs);
    } else if (strcmp(action, "unack") == 0) {
        if (a->state != ALR_STATE_ACKNOWLEDGED || a->ack_at_us >= at) {
            return TC_ESTATE;
        }
        rc = alr_evaluator_unack(self->ev, fp, at, &evs);
    } else if (strcmp(action, "resolve") == 0) {
        if (!firing || a->fired_at_us > at) {
            return TC_ESTATE;
        }
        rc = alr_evaluator_resolve(self->ev, fp, by, at, &evs);
    } else {
        return TC_EPARSE;
    }
    return after_action(self, &evs, rc, now_us);
}

int alr_core_mirror(alr_core_t *self, const char *kind, const char *key, const json_t *doc,
                    int64_t now_us)
{
    if (strcmp(kind, "silence") == 0) {
        if (!doc) {
            return 0; /* silences expire, they are not deleted */
        }
        int rc = alr_silences_upsert(self->silences, doc);
        if (rc == 0) {
            alr_dispatch_silences_changed(self->dispatch);
        }
        return rc;
    }
    if (strcmp(kind, "human") == 0) {
        return doc ? apply_human(self, doc, now_us) : 0;
    }
    if (alr_dispatch_active(self->dispatch)) {
        return 0; /* the leader's own state is its own: an old leader's record is stale */
    }
    return alr_dispatch_mirror(self->dispatch, kind, key, doc, self->ev);
}

/* ---- views --------------------------------------------------------------------------- */

static json_t *time_or_null(int64_t us)
{
    if (!us) {
        return json_null();
    }
    char b[32];
    tc_time_format_rfc3339(us, b);
    return json_string(b);
}

static json_t *alert_view(alr_core_t *self, alr_alert_t *a, int64_t now_us)
{
    const alr_rule_t *r = a->rule >= 0 && self->rules && (size_t)a->rule < self->rules->nrules
                              ? &self->rules->rules[a->rule]
                              : NULL;
    alr_alert_route_t rt;
    alr_dispatch_alert_route(self->dispatch, a, self->silences, now_us, &rt);
    json_t *ack = json_null();
    if (a->state == ALR_STATE_ACKNOWLEDGED) {
        ack = json_pack("{s:s, s:o, s:o, s:s}", "by", a->ack_by, "at", time_or_null(a->ack_at_us),
                        "expires_at", time_or_null(a->ack_expires_us), "comment", a->ack_comment);
    }
    /* The next scheduled action: the earliest of the alert's own timers and the
     * dispatcher's. */
    const char *action = rt.next_action;
    int64_t at = rt.next_at_us;
    int64_t t;
    if ((t = alr_alert_fires_at(self->ev, a)) && (!at || t < at)) {
        action = "fire";
        at = t;
    }
    if (a->state == ALR_STATE_ACKNOWLEDGED && a->ack_expires_us && (!at || a->ack_expires_us < at)) {
        action = "ack_expires";
        at = a->ack_expires_us;
    }
    if (r && (r->type == ALR_RULE_NEW_ISSUE || r->type == ALR_RULE_REGRESSED_ISSUE) &&
        (a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED) &&
        r->resolve_after_ms > 0) {
        t = a->last_change_us + r->resolve_after_ms * 1000;
        if (!at || t < at) {
            action = "auto_resolve";
            at = t;
        }
    }
    json_t *next = json_null();
    if (action) {
        next = json_pack("{s:s, s:o}", "action", action, "at", time_or_null(at));
        if (next && (strcmp(action, "escalate") == 0 || strcmp(action, "repeat") == 0 ||
                     strcmp(action, "remind") == 0)) {
            json_object_set_new(next, "tier", json_integer(rt.next_tier));
            json_t *names = json_array();
            long pi = -1;
            for (size_t i = 0; self->rules && i < self->rules->npolicies; i++) {
                if (strcmp(self->rules->policies[i].name, rt.policy) == 0) {
                    pi = (long)i;
                }
            }
            if (pi >= 0 && rt.next_tier < self->rules->policies[pi].ntiers) {
                const alr_tier_t *tier = &self->rules->policies[pi].tiers[rt.next_tier];
                for (size_t k = 0; k < tier->nreceivers; k++) {
                    json_array_append_new(names,
                                          json_string(self->rules->receivers[tier->receivers[k]].name));
                }
            }
            json_object_set_new(next, "receivers", names);
        }
    }
    json_t *last = json_null();
    const alr_msg_t *m = rt.last_msg ? alr_dispatch_msg(self->dispatch, rt.last_msg) : NULL;
    if (m) {
        last = json_pack("{s:I, s:s, s:s, s:o, s:s}", "id", (json_int_t)m->id, "kind",
                         alr_msg_kind_name(m->kind), "receiver", m->receiver, "at",
                         time_or_null(m->created_us), "status", alr_dlv_name(m->status));
    }
    json_t *silenced = json_array();
    if (rt.silenced_by) {
        json_array_append_new(silenced, json_string(rt.silenced_by));
    }
    const char *alertname = json_string_value(json_object_get(a->labels, "alertname"));
    const char *severity = json_string_value(json_object_get(a->labels, "severity"));
    json_t *j = json_pack(
        "{s:s, s:s?, s:s?, s:s, s:O, s:O, s:s, s:s?, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b, "
        "s:o, s:o, s:s?, s:s?, s:i, s:o, s:o}",
        "fingerprint", a->fp_hex, "alertname", alertname, "rule", r ? r->alert : NULL, "type",
        r ? alr_rule_type_name(r->type) : "removed", "labels", a->labels, "annotations",
        a->annotations, "state", alr_state_name(a->state), "severity", severity, "since",
        time_or_null(a->since_us), "active_at", time_or_null(a->active_at_us), "fired_at",
        time_or_null(a->fired_at_us), "resolved_at", time_or_null(a->resolved_at_us),
        "evaluated_at", time_or_null(a->evaluated_us), "value",
        a->has_value ? json_real(a->value) : json_null(), "threshold",
        r ? json_real(r->type == ALR_RULE_ABSENCE ? (double)r->window_ms / 1000.0 : r->threshold)
          : json_null(),
        "flapping", a->flapping, "silenced_by", silenced, "acknowledged", ack, "policy",
        rt.policy[0] ? rt.policy : NULL, "group_key", rt.grouped ? rt.group_key : NULL, "tier",
        (int)rt.tier, "next_action", next, "last_notification", last);
    if (j && a->resolved_by[0] && a->state == ALR_STATE_RESOLVED) {
        json_object_set_new(j, "resolved_by", json_string(a->resolved_by));
    }
    if (j) {
        /* No window judged at the last evaluation: the state holds until then. */
        json_object_set_new(j, "no_data_until",
                            time_or_null(alr_alert_nodata_until(self->ev, a)));
    }
    return j;
}

static bool state_matches(const alr_alert_t *a, const char *state)
{
    if (!state) {
        return true;
    }
    if (strcmp(state, "active") == 0) {
        return a->state == ALR_STATE_PENDING || a->state == ALR_STATE_FIRING ||
               a->state == ALR_STATE_ACKNOWLEDGED;
    }
    return strcmp(state, alr_state_name(a->state)) == 0;
}

static int by_fp(const void *x, const void *y)
{
    const alr_alert_t *a = *(const alr_alert_t *const *)x;
    const alr_alert_t *b = *(const alr_alert_t *const *)y;
    return a->fp < b->fp ? -1 : (a->fp > b->fp);
}

json_t *alr_core_alerts_json(alr_core_t *self, const char *state, const char *alertname,
                             const char *service, const char *fp_hex, int64_t now_us)
{
    size_t n = alr_evaluator_alert_count(self->ev);
    alr_alert_t **list = malloc((n ? n : 1) * sizeof(*list));
    json_t *arr = json_array();
    if (!list || !arr) {
        free(list);
        json_decref(arr);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        alr_alert_t *a = alr_evaluator_alert(self->ev, i);
        const char *an = json_string_value(json_object_get(a->labels, "alertname"));
        const char *sv = json_string_value(json_object_get(a->labels, "service"));
        if (!state_matches(a, state) || (alertname && (!an || strcmp(an, alertname) != 0)) ||
            (service && (!sv || strcmp(sv, service) != 0)) ||
            (fp_hex && strcmp(a->fp_hex, fp_hex) != 0)) {
            continue;
        }
        list[k++] = a;
    }
    qsort(list, k, sizeof(*list), by_fp);
    for (size_t i = 0; i < k; i++) {
        json_t *j = alert_view(self, list[i], now_us);
        if (!j || json_array_append_new(arr, j) != 0) {
            json_decref(arr);
            free(list);
            return NULL;
        }
    }
    free(list);
    return json_pack("{s:o}", "alerts", arr);
}

json_t *alr_core_alert_json(alr_core_t *self, uint64_t fp, int64_t now_us)
{
    alr_alert_t *a = alr_evaluator_get(self->ev, fp);
    return a ? alert_view(self, a, now_us) : NULL;
}

json_t *alr_core_silences_json(alr_core_t *self, const char *state, int64_t now_us)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < alr_silences_count(self->silences); i++) {
        const alr_silence_t *s = alr_silences_at(self->silences, i);
        if (state && strcmp(state, alr_silence_state(s, now_us)) != 0) {
            continue;
        }
        json_t *j = alr_silence_json(s, now_us);
        if (!j || json_array_append_new(arr, j) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr ? json_pack("{s:o}", "silences", arr) : NULL;
}

json_t *alr_core_notifications_json(alr_core_t *self, size_t limit, const char *fp_hex,
                                    const char *receiver, const char *status, uint64_t before)
{
    json_t *arr = json_array();
    uint64_t last_id = 0;
    size_t n = alr_dispatch_msg_count(self->dispatch);
    for (size_t i = n; arr && i > 0 && json_array_size(arr) < limit; i--) {
        const alr_msg_t *m = alr_dispatch_msg_at(self->dispatch, i - 1);
        if ((before && m->id >= before) || (receiver && strcmp(receiver, m->receiver) != 0) ||
            (status && strcmp(status, alr_dlv_name(m->status)) != 0)) {
            continue;
        }
        if (fp_hex) {
            bool found = false;
            size_t k;
            json_t *v;
            json_array_foreach(json_object_get(m->payload, "fingerprints"), k, v)
            {
                found = found || (json_string_value(v) && strcmp(json_string_value(v), fp_hex) == 0);
            }
            if (!found) {
                continue;
            }
        }
        long ri = alr_dispatch_msg_receiver(self->dispatch, m);
        json_t *j = alr_msg_json(m, ri >= 0 ? alr_receiver_type_name(self->rules->receivers[ri].type)
                                            : NULL);
        if (!j || json_array_append_new(arr, j) != 0) {
            json_decref(arr);
            return NULL;
        }
        last_id = m->id;
    }
    if (!arr) {
        return NULL;
    }
    return json_pack("{s:o, s:o}", "notifications", arr, "next_before",
                     json_array_size(arr) == limit && last_id > 1 ? json_integer((json_int_t)last_id)
                                                                  : json_null());
}

json_t *alr_core_receivers_json(alr_core_t *self, int64_t now_us)
{
    json_t *arr = alr_dispatch_receivers_json(self->dispatch, now_us);
    return arr ? json_pack("{s:o}", "receivers", arr) : NULL;
}

alr_window_t *alr_core_window(alr_core_t *self)
{
    return self->window;
}

alr_evaluator_t *alr_core_evaluator(alr_core_t *self)
{
    return self->ev;
}

alr_dispatch_t *alr_core_dispatch(alr_core_t *self)
{
    return self->dispatch;
}

alr_silences_t *alr_core_silences(alr_core_t *self)
{
    return self->silences;
}

/* ---- persistence --------------------------------------------------------------------- */

int alr_core_each_dirty(alr_core_t *self, alr_dispatch_record_fn fn, void *ctx)
{
    int rc = 0;
    size_t nrem;
    const uint64_t *rem = alr_evaluator_removed(self->ev, &nrem);
    for (size_t i = 0; i < nrem && rc == 0; i++) {
        char k[17];
        snprintf(k, sizeof(k), "%016" PRIx64, rem[i]);
        rc = fn(ctx, "alert", k, NULL);
    }
    for (size_t i = 0; i < alr_evaluator_alert_count(self->ev) && rc == 0; i++) {
        alr_alert_t *a = alr_evaluator_alert(self->ev, i);
        if (a->dirty) {
            json_t *d = alr_alert_state_json(a);
            rc = d ? fn(ctx, "alert", a->fp_hex, d) : TC_ENOMEM;
            json_decref(d);
        }
    }
    const char *const *srem = alr_silences_removed(self->silences, &nrem);
    for (size_t i = 0; i < nrem && rc == 0; i++) {
        rc = fn(ctx, "silence", srem[i], NULL);
    }
    for (size_t i = 0; i < alr_silences_count(self->silences) && rc == 0; i++) {
        alr_silence_t *s = alr_silences_at(self->silences, i);
        if (s->dirty && !s->from_file) {
            json_t *d = alr_silence_state_json(s);
            rc = d ? fn(ctx, "silence", s->id, d) : TC_ENOMEM;
            json_decref(d);
        }
    }
    for (size_t i = 0; i < self->seen.nremoved && rc == 0; i++) {
        char k[17];
        snprintf(k, sizeof(k), "%016" PRIx64, self->seen.removed[i]);
        rc = fn(ctx, "ichg", k, NULL);
    }
    for (size_t i = 0; i < self->seen.nadded && rc == 0; i++) {
        char k[17];
        snprintf(k, sizeof(k), "%016" PRIx64, self->seen.added[i]);
        int64_t at = seen_at(&self->seen, self->seen.added[i]);
        if (!at) {
            continue; /* added and forgotten since */
        }
        json_t *d = json_pack("{s:I}", "at_us", (json_int_t)at);
        rc = d ? fn(ctx, "ichg", k, d) : TC_ENOMEM;
        json_decref(d);
    }
    if (rc == 0 && alr_dispatch_dirty(self->dispatch)) {
        rc = alr_dispatch_each_dirty(self->dispatch, fn, ctx);
    }
    return rc;
}

void alr_core_persisted(alr_core_t *self)
{
    alr_evaluator_persisted(self->ev);
    alr_silences_persisted(self->silences);
    alr_dispatch_persisted(self->dispatch);
    self->seen.nadded = 0;
    self->seen.nremoved = 0;
}

int alr_core_restore(alr_core_t *self, const char *kind, const char *key, const json_t *doc,
                     int64_t now_us)
{
    if (strcmp(kind, "alert") == 0) {
        return alr_evaluator_restore(self->ev, doc, now_us, &self->pending);
    }
    if (strcmp(kind, "silence") == 0) {
        return alr_silences_restore(self->silences, doc);
    }
    if (strcmp(kind, "ichg") == 0) {
        char *end = NULL;
        uint64_t id = strtoull(key, &end, 16);
        int64_t at = (int64_t)json_integer_value(json_object_get(doc, "at_us"));
        if (!end || *end || id == 0 || at <= 0) {
            return TC_EPARSE;
        }
        return seen_add(&self->seen, id, at, false);
    }
    return alr_dispatch_restore(self->dispatch, kind, key, doc);
}

int alr_core_restore_done(alr_core_t *self, int64_t now_us)
{
    int rc = alr_dispatch_restore_done(self->dispatch);
    if (rc == 0 && self->rules) {
        rc = alr_dispatch_set_rules(self->dispatch, self->rules, self->ev, now_us);
    }
    alr_dispatch_silences_changed(self->dispatch);
    if (rc == 0) {
        rc = dispatch(self, &self->pending, now_us);
    }
    return rc;
}
