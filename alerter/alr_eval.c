#include "alr_eval.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_sketch.h"
#include "tc_util.h"

struct alr_evaluator {
    const alr_ruleset_t *rules;
    alr_alert_t **alerts; /* every alert */
    size_t n, cap;
    /* fingerprint -> index in alerts, open addressing; SIZE_MAX marks an empty slot */
    size_t *slots;
    size_t nslots;
    alr_alert_t **by_rule; /* threshold rules' alerts, by rule index */
    size_t *order;         /* rule indexes sorted by service, for partial runs */
    uint64_t *removed;
    size_t nremoved, cap_removed;
};

/* ---- events -------------------------------------------------------------------------- */

int alr_events_add(alr_events_t *l, alr_event_kind_t kind, uint64_t fp, int64_t at_us)
{
    if (l->len == l->cap) {
        size_t next = l->cap ? l->cap * 2 : 16;
        alr_event_t *p = realloc(l->items, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        l->items = p;
        l->cap = next;
    }
    l->items[l->len++] = (alr_event_t){kind, fp, at_us};
    return 0;
}

void alr_events_fini(alr_events_t *l)
{
    free(l->items);
    memset(l, 0, sizeof(*l));
}

const char *alr_event_kind_name(alr_event_kind_t k)
{
    static const char *const names[] = {"firing", "resolved", "acknowledged", "unacknowledged",
                                        "flapping", "flapping_ended"};
    return (unsigned)k < 6 ? names[k] : "unknown";
}

const char *alr_state_name(alr_state_t s)
{
    static const char *const names[] = {"inactive", "pending", "firing", "acknowledged",
                                        "resolved"};
    return (unsigned)s < ALR_STATE_COUNT ? names[s] : "inactive";
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

/* ---- the alert table ----------------------------------------------------------------- */

static size_t slot_of(uint64_t fp, size_t nslots)
{
    return (size_t)((fp * 0x9E3779B97F4A7C15ULL) >> 7) & (nslots - 1);
}

static int reindex(alr_evaluator_t *self)
{
    size_t want = 64;
    while (want < self->n * 2 + 2) {
        want *= 2;
    }
    if (want != self->nslots) {
        size_t *s = malloc(want * sizeof(*s));
        if (!s) {
            return TC_ENOMEM;
        }
        free(self->slots);
        self->slots = s;
        self->nslots = want;
    }
    memset(self->slots, 0xff, self->nslots * sizeof(*self->slots));
    for (size_t i = 0; i < self->n; i++) {
        size_t h = slot_of(self->alerts[i]->fp, self->nslots);
        while (self->slots[h] != SIZE_MAX) {
            h = (h + 1) & (self->nslots - 1);
        }
        self->slots[h] = i;
    }
    return 0;
}

alr_alert_t *alr_evaluator_get(alr_evaluator_t *self, uint64_t fp)
{
    if (!self->nslots) {
        return NULL;
    }
    size_t h = slot_of(fp, self->nslots);
    while (self->slots[h] != SIZE_MAX) {
        alr_alert_t *a = self->alerts[self->slots[h]];
        if (a->fp == fp) {
            return a;
        }
        h = (h + 1) & (self->nslots - 1);
    }
    return NULL;
}

static void alert_free(alr_alert_t *a)
{
    if (a) {
        json_decref(a->labels);
        json_decref(a->annotations);
        free(a);
    }
}

/* Adds an alert (the table takes it). */
static int table_add(alr_evaluator_t *self, alr_alert_t *a)
{
    if (self->n == self->cap) {
        size_t next = self->cap ? self->cap * 2 : 64;
        alr_alert_t **p = realloc(self->alerts, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->alerts = p;
        self->cap = next;
    }
    self->alerts[self->n++] = a;
    if (self->n * 2 + 2 > self->nslots) {
        if (reindex(self) != 0) {
            self->n--;
            return TC_ENOMEM;
        }
        return 0;
    }
    size_t h = slot_of(a->fp, self->nslots);
    while (self->slots[h] != SIZE_MAX) {
        h = (h + 1) & (self->nslots - 1);
    }
    self->slots[h] = self->n - 1;
    return 0;
}

static int note_removed(alr_evaluator_t *self, uint64_t fp)
{
    if (self->nremoved == self->cap_removed) {
        size_t next = self->cap_removed ? self->cap_removed * 2 : 16;
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

static alr_alert_t *alert_new(uint64_t fp, uint64_t rule_fp, long rule, json_t *labels)
{
    alr_alert_t *a = calloc(1, sizeof(*a));
    if (!a) {
        json_decref(labels);
        return NULL;
    }
    a->fp = fp;
    snprintf(a->fp_hex, sizeof(a->fp_hex), "%016" PRIx64, fp);
    a->rule_fp = rule_fp;
    a->rule = rule;
    a->labels = labels;
    a->annotations = json_object();
    a->dirty = true;
    if (!a->annotations) {
        alert_free(a);
        return NULL;
    }
    return a;
}

alr_evaluator_t *alr_evaluator_new(void)
{
    alr_evaluator_t *self = calloc(1, sizeof(*self));
    if (self && reindex(self) != 0) {
        free(self);
        return NULL;
    }
    return self;
}

void alr_evaluator_destroy(alr_evaluator_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_evaluator_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        alert_free(self->alerts[i]);
    }
    free(self->alerts);
    free(self->slots);
    free(self->by_rule);
    free(self->order);
    free(self->removed);
    free(self);
    *self_p = NULL;
}

/* ---- sampling ------------------------------------------------------------------------ */

static void threshold_conditions(const alr_rule_t *r, alr_sample_t *s)
{
    if (!s->has_value) {
        s->fire = false;
        s->clear = true;
        return;
    }
    double clear = r->has_clear ? r->clear : r->threshold;
    if (r->below) {
        s->fire = s->value < r->threshold;
        s->clear = s->value >= clear;
    } else {
        s->fire = s->value > r->threshold;
        s->clear = s->value <= clear;
    }
}

/* Seconds of real time a window ending at wm covers up to now (the open bucket's end lies
 * ahead of now). */
static double covered_s(int64_t window_ms, int64_t wm_us, int64_t now_us)
{
    int64_t w = window_ms * 1000;
    if (wm_us > now_us) {
        w -= wm_us - now_us;
    }
    if (w < 1000000) {
        w = 1000000;
    }
    return (double)w / 1e6;
}

static double error_ratio(const alr_rule_t *r, const alr_window_t *w, int64_t wm, int64_t ms,
                          unsigned flags, size_t *buckets, bool *ok)
{
    alr_window_agg_t a;
    alr_window_agg(w, r->service, r->environment, r->name, r->kind, wm - ms * 1000, wm, flags,
                   NULL, &a);
    *buckets += a.buckets;
    *ok = a.count >= r->min_count && a.count > 0;
    return a.count ? (double)a.errors / (double)a.count : 0.0;
}

void alr_rule_sample(const alr_rule_t *r, const alr_window_t *w, int64_t wm, int64_t now_us,
                     int64_t seen_floor_us, unsigned flags, alr_sample_t *s)
{
    memset(s, 0, sizeof(*s));
    alr_window_agg_t a;
    memset(&a, 0, sizeof(a));
    int64_t from = wm - r->window_ms * 1000;
    switch (r->type) {
    case ALR_RULE_ERROR_RATE:
        alr_window_agg(w, r->service, r->environment, r->name, r->kind, from, wm, flags, NULL, &a);
        s->count = a.count;
        s->errors = a.errors;
        if (a.count > 0 && a.count >= r->min_count) {
            s->has_value = true;
            s->value = (double)a.errors / (double)a.count;
        }
        break;
    case ALR_RULE_REQUEST_RATE:
        alr_window_agg(w, r->service, r->environment, r->name, r->kind, from, wm, flags, NULL, &a);
        s->count = a.count;
        s->errors = a.errors;
        s->has_value = true;
        s->value = (double)a.count / covered_s(r->window_ms, wm, now_us);
        break;
    case ALR_RULE_EVENT_COUNT:
        alr_window_agg(w, r->service, r->environment, r->name, r->kind, from, wm, flags, NULL, &a);
        s->count = a.count;
        s->errors = a.errors;
        s->has_value = true;
        s->value = (double)a.count;
        break;
    case ALR_RULE_LATENCY: {
        tc_sketch_t sk;
        tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
        alr_window_agg(w, r->service, r->environment, r->name, r->kind, from, wm, flags, &sk, &a);
        s->count = a.count;
        s->errors = a.errors;
        double q = tc_sketch_quantile(&sk, r->quantile);
        if (a.count >= r->min_count && sk.count > 0 && !isnan(q)) {
            s->has_value = true;
            s->value = q / 1000.0; /* microseconds -> milliseconds */
        }
        tc_sketch_fini(&sk);
        break;
    }
    case ALR_RULE_METRIC: {
        tc_sketch_t sk;
        bool want = r->agg == ALR_AGG_QUANTILE;
        if (want) {
            tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
        }
        alr_window_agg(w, r->service, r->environment, r->name, r->kind, from, wm, flags,
                       want ? &sk : NULL, &a);
        s->count = a.count;
        bool enough = a.count >= r->min_count && a.count > 0;
        switch (r->agg) {
        case ALR_AGG_SUM:
            s->has_value = true;
            s->value = a.sum;
            break;
        case ALR_AGG_RATE:
            s->has_value = true;
            s->value = a.sum / covered_s(r->window_ms, wm, now_us);
            break;
        case ALR_AGG_COUNT:
            s->has_value = true;
            s->value = (double)a.count;
            break;
        case ALR_AGG_LAST:
            s->has_value = enough && a.last_time_us != 0;
            s->value = a.last;
            break;
        case ALR_AGG_MIN:
            s->has_value = enough && a.has_minmax;
            s->value = a.min;
            break;
        case ALR_AGG_MAX:
            s->has_value = enough && a.has_minmax;
            s->value = a.max;
            break;
        case ALR_AGG_AVG:
            s->has_value = enough;
            s->value = a.count ? a.sum / (double)a.count : 0;
            break;
        case ALR_AGG_QUANTILE: {
            double q = tc_sketch_quantile(&sk, r->quantile);
            s->has_value = enough && !isnan(q);
            s->value = isnan(q) ? 0 : q;
            break;
        }
        default:
            break;
        }
        if (want) {
            tc_sketch_fini(&sk);
        }
        break;
    }
    case ALR_RULE_ABSENCE: {
        int64_t last = alr_window_last_seen(w, r->service, r->environment, r->name, r->kind,
                                            now_us);
        if (last < seen_floor_us) {
            last = seen_floor_us;
        }
        s->has_value = true;
        s->value = (double)(now_us - last) / 1e6; /* seconds of silence */
        s->fire = now_us - last >= r->window_ms * 1000;
        s->clear = !s->fire;
        return;
    }
    case ALR_RULE_BURN_RATE: {
        double budget = 1.0 - r->slo;
        double clear_frac = r->has_clear ? r->clear : 1.0;
        double best = 0;
        bool any_value = false;
        for (size_t i = 0; i < r->npairs; i++) {
            bool ok_l, ok_s;
            double bl =
                error_ratio(r, w, wm, r->pairs[i].long_ms, flags, &s->buckets, &ok_l) / budget;
            double bs =
                error_ratio(r, w, wm, r->pairs[i].short_ms, flags, &s->buckets, &ok_s) / budget;
            if (!ok_l || !ok_s) {
                continue;
            }
            any_value = true;
            double f = r->pairs[i].factor;
            if (bl > f && bs > f) {
                s->fire = true;
            }
            if (bl > f * clear_frac && bs > f * clear_frac) {
                s->clear = false; /* set below */
            }
            double m = bl < bs ? bl : bs;
            if (m > best) {
                best = m;
            }
        }
        /* Clears when no pair is above its (clear) factor in both windows. */
        bool any_above_clear = false;
        for (size_t i = 0; i < r->npairs; i++) {
            bool ok_l, ok_s;
            size_t ignored = 0;
            double bl =
                error_ratio(r, w, wm, r->pairs[i].long_ms, flags, &ignored, &ok_l) / budget;
            double bs =
                error_ratio(r, w, wm, r->pairs[i].short_ms, flags, &ignored, &ok_s) / budget;
            double f = r->pairs[i].factor * clear_frac;
            if (ok_l && ok_s && bl > f && bs > f) {
                any_above_clear = true;
            }
        }
        s->has_value = any_value;
        s->value = best;
        s->clear = !any_above_clear;
        return;
    }
    default:
        return;
    }
    s->buckets = a.buckets;
    threshold_conditions(r, s);
}

/* ---- state machine ------------------------------------------------------------------- */

static void enter(alr_alert_t *a, alr_state_t state, int64_t now_us)
{
    a->state = state;
    a->since_us = now_us;
    a->dirty = true;
}

static void render_annotations(const alr_rule_t *r, alr_alert_t *a)
{
    if (!r) {
        return;
    }
    alr_template_vars_t v = {a->has_value, a->value, r->threshold, r->window_ms, r->for_ms,
                             a->count,     a->errors, a->labels};
    if (r->type == ALR_RULE_ABSENCE) {
        v.threshold = (double)r->window_ms / 1000.0;
    }
    json_t *ann = alr_rule_annotations_render(r, &v);
    if (ann) {
        /* Issue alerts keep the issue's own annotations next to the rule's. */
        json_t *old = a->annotations;
        const char *k;
        json_t *val;
        json_object_foreach(old, k, val)
        {
            if (!json_object_get(ann, k) && strncmp(k, "issue_", 6) == 0) {
                json_object_set(ann, k, val);
            }
        }
        json_decref(a->annotations);
        a->annotations = ann;
    }
}

static const alr_rule_t *rule_of(const alr_evaluator_t *self, const alr_alert_t *a)
{
    return a->rule >= 0 && self->rules && (size_t)a->rule < self->rules->nrules
               ? &self->rules->rules[a->rule]
               : NULL;
}

/* A firing/resolved change: counted for flapping. Returns the event to emit instead of
 * `kind` (FLAP_START), or -1 for none (flapping), or `kind`. */
static int flip(const alr_evaluator_t *self, alr_alert_t *a, alr_event_kind_t kind,
                int64_t now_us)
{
    const alr_settings_t *st = &self->rules->settings;
    if (a->nflips == ALR_FLIPS_MAX) {
        memmove(a->flips, a->flips + 1, (ALR_FLIPS_MAX - 1) * sizeof(a->flips[0]));
        a->nflips--;
    }
    a->flips[a->nflips++] = now_us;
    if (a->flapping) {
        return -1;
    }
    if (st->flap_threshold < 2) {
        return (int)kind;
    }
    unsigned recent = 0;
    for (unsigned i = 0; i < a->nflips; i++) {
        recent += a->flips[i] > now_us - st->flap_window_ms * 1000;
    }
    if (recent >= st->flap_threshold) {
        a->flapping = true;
        a->flap_since_us = now_us;
        return ALR_EV_FLAP_START;
    }
    return (int)kind;
}

static int emit_change(alr_evaluator_t *self, alr_alert_t *a, alr_event_kind_t kind,
                       int64_t now_us, alr_events_t *out)
{
    int k = flip(self, a, kind, now_us);
    return k < 0 ? 0 : alr_events_add(out, (alr_event_kind_t)k, a->fp, now_us);
}

static int go_firing(alr_evaluator_t *self, alr_alert_t *a, const alr_rule_t *r, int64_t now_us,
                     alr_events_t *out)
{
    enter(a, ALR_STATE_FIRING, now_us);
    a->fired_at_us = now_us;
    a->resolved_at_us = 0;
    a->ack_by[0] = a->ack_comment[0] = '\0';
    a->ack_at_us = a->ack_expires_us = 0;
    a->resolved_by[0] = '\0';
    render_annotations(r, a);
    return emit_change(self, a, ALR_EV_FIRING, now_us, out);
}

static int go_resolved(alr_evaluator_t *self, alr_alert_t *a, const alr_rule_t *r,
                       int64_t now_us, alr_events_t *out)
{
    enter(a, ALR_STATE_RESOLVED, now_us);
    a->active_at_us = 0;
    a->resolved_at_us = now_us;
    render_annotations(r, a);
    return emit_change(self, a, ALR_EV_RESOLVED, now_us, out);
}

/* What a threshold rule's sample can say. A window judges when it has a value (at least
 * `min_count` events where the rule has one) and, when it read no bucket at all, the
 * alerter watched the whole of it (an empty window from before the alerter started is
 * not "zero events", it is not knowing). A judging fresh window is `young` while its end
 * lies ahead of now (an open bucket): it covers less than the rule's window of real time.
 * Young data may fire an alert (the newest data counts at once) but cannot alone stop or
 * resolve one; a window that does not judge has no say at all. */
typedef struct {
    const alr_sample_t *s; /* NULL: not read */
    bool judges;
    bool young;
} view_t;

static bool judges(const alr_rule_t *r, const alr_sample_t *s, int64_t wm_us, int64_t floor_us)
{
    if (!s->has_value) {
        return false;
    }
    return r->type == ALR_RULE_ABSENCE || s->buckets > 0 || wm_us - r->window_ms * 1000 >= floor_us;
}

/* What a threshold rule's alert does, from the fresh view `f` and the closed view `c`
 * (closed buckets only: complete data). See the header. In short: `above` rules fire on
 * the fresh window, or on the closed one while the fresh one does not judge; `below`
 * rules fire when the fresh window says so and the closed one agrees (when the closed
 * one does not judge: when the fresh one is not young, so a partial count never fires);
 * stopping a pending alert and resolving a firing one need a window that judges and is
 * not young (the closed one, or a fresh one whose buckets all ended) to say so, and no
 * judging window to say otherwise. When no window judges, nothing changes here (the
 * no-data bound in step() ends it). */
typedef struct {
    bool fire;   /* may enter or stay in pending, and fire when `for` has passed */
    bool stop;   /* a pending alert returns to inactive */
    bool clear;  /* a firing alert resolves (a held one is released) */
    bool judged; /* some window judged: the no-data clock restarts */
} verdict_t;

static verdict_t verdict(const alr_rule_t *r, const view_t *f, const view_t *c)
{
    verdict_t v;
    bool fj = f->judges, cj = c->judges;
    /* A window that decides alone: judges and covers the rule's whole window. */
    bool full = (fj && !f->young) || cj;
    v.judged = fj || cj;
    if (r->below) {
        v.fire = fj && f->s->fire && (cj ? c->s->fire : !f->young);
        v.stop = (fj && !f->s->fire) || (cj && !c->s->fire);
    } else {
        v.fire = fj ? f->s->fire : (cj && c->s->fire);
        v.stop = full && (!fj || !f->s->fire) && (!cj || !c->s->fire);
    }
    v.clear = full && (!fj || f->s->clear) && (!cj || c->s->clear);
    return v;
}

/* True when the closed sample could change the verdict for alert `a`, given the fresh
 * view `f` (its `judges` and `young` set). */
static bool needs_closed(const alr_rule_t *r, const alr_alert_t *a, const view_t *f)
{
    if (r->type == ALR_RULE_ABSENCE) {
        return false;
    }
    bool fj = f->judges;
    switch (a->state) {
    case ALR_STATE_INACTIVE:
    case ALR_STATE_RESOLVED:
        if (a->hold) {
            return !(fj && !f->s->clear);
        }
        return r->below ? (fj && f->s->fire) : !fj;
    case ALR_STATE_PENDING:
        return r->below ? !(fj && !f->s->fire) : !(fj && f->s->fire);
    case ALR_STATE_FIRING:
    case ALR_STATE_ACKNOWLEDGED:
        return !(fj && !f->s->clear);
    }
    return false;
}

/* How long a pending or firing threshold alert keeps its state while no window judges:
 * the rule's window plus its `for`. */
static int64_t nodata_hold_us(const alr_rule_t *r)
{
    return (r->window_ms + r->for_ms) * 1000;
}

static int step(alr_evaluator_t *self, alr_alert_t *a, const alr_rule_t *r,
                const alr_sample_t *s, const verdict_t *v, int64_t now_us, alr_events_t *out)
{
    int64_t prev_us = a->evaluated_us;
    a->evaluated_us = now_us;
    if (a->has_value != s->has_value || a->value != s->value || a->count != s->count) {
        a->has_value = s->has_value;
        a->value = s->value;
        a->count = s->count;
        a->errors = s->errors;
    }
    if (a->judged_at_us == 0) {
        /* New, or restored when it was judged at its last write: the clock starts now. */
        a->judged_at_us = now_us;
    } else if (v->judged != (a->judged_at_us == prev_us) &&
               (a->state == ALR_STATE_PENDING || a->state == ALR_STATE_FIRING ||
                a->state == ALR_STATE_ACKNOWLEDGED || a->hold)) {
        /* A no-data hold begins or ends: written, so that a restart keeps its start
         * (judged_at_us < evaluated_us in the record) rather than putting it off. */
        a->dirty = true;
    }
    if (v->judged) {
        a->judged_at_us = now_us;
    }
    bool nodata_over = !v->judged && now_us - a->judged_at_us >= nodata_hold_us(r);
    switch (a->state) {
    case ALR_STATE_INACTIVE:
    case ALR_STATE_RESOLVED:
        if (a->hold) {
            if (v->clear || nodata_over) {
                a->hold = false;
                a->dirty = true;
            }
            return 0;
        }
        if (!v->fire) {
            return 0;
        }
        enter(a, ALR_STATE_PENDING, now_us);
        a->active_at_us = now_us;
        /* `for` may be 0: fall through */
        /* FALLTHROUGH */
    case ALR_STATE_PENDING:
        if (v->stop || nodata_over) {
            enter(a, ALR_STATE_INACTIVE, now_us);
            a->active_at_us = 0;
            return 0;
        }
        if (v->fire && now_us - a->active_at_us >= r->for_ms * 1000) {
            return go_firing(self, a, r, now_us, out);
        }
        return 0;
    case ALR_STATE_FIRING:
    case ALR_STATE_ACKNOWLEDGED:
        if (v->clear || nodata_over) {
            return go_resolved(self, a, r, now_us, out);
        }
        return 0;
    }
    return 0;
}

int64_t alr_alert_fires_at(const alr_evaluator_t *self, const alr_alert_t *a)
{
    const alr_rule_t *r = rule_of(self, a);
    if (a->state != ALR_STATE_PENDING || !r) {
        return 0;
    }
    return a->active_at_us + r->for_ms * 1000;
}

/* ---- rules --------------------------------------------------------------------------- */

static bool is_issue_rule(const alr_rule_t *r)
{
    return r->type == ALR_RULE_NEW_ISSUE || r->type == ALR_RULE_REGRESSED_ISSUE;
}

int64_t alr_alert_nodata_until(const alr_evaluator_t *self, const alr_alert_t *a)
{
    const alr_rule_t *r = rule_of(self, a);
    if (!r || is_issue_rule(r) || a->judged_at_us <= 0 || a->judged_at_us >= a->evaluated_us ||
        !(a->state == ALR_STATE_PENDING || a->state == ALR_STATE_FIRING ||
          a->state == ALR_STATE_ACKNOWLEDGED || a->hold)) {
        return 0;
    }
    return a->judged_at_us + nodata_hold_us(r);
}

static const alr_ruleset_t *sort_rules_for; /* qsort has no context argument */

static int by_service(const void *x, const void *y)
{
    const alr_rule_t *a = &sort_rules_for->rules[*(const size_t *)x];
    const alr_rule_t *b = &sort_rules_for->rules[*(const size_t *)y];
    return strcmp(a->service, b->service);
}

int alr_evaluator_set_rules(alr_evaluator_t *self, const alr_ruleset_t *rules, int64_t now_us,
                            alr_events_t *out)
{
    assert(self && rules);
    size_t nr = rules->nrules;
    alr_alert_t **by_rule = calloc(nr ? nr : 1, sizeof(*by_rule));
    size_t *order = calloc(nr ? nr : 1, sizeof(*order));
    if (!by_rule || !order) {
        free(by_rule);
        free(order);
        return TC_ENOMEM;
    }
    for (size_t i = 0; i < nr; i++) {
        order[i] = i;
    }
    sort_rules_for = rules;
    qsort(order, nr, sizeof(*order), by_service);
    sort_rules_for = NULL;
    /* Re-attach existing alerts to the new rules by fingerprint. */
    size_t old_n = self->n;
    for (size_t i = 0; i < old_n; i++) {
        alr_alert_t *a = self->alerts[i];
        long ri = alr_ruleset_find(rules, a->rule_fp);
        a->rule = ri;
        if (ri >= 0 && !is_issue_rule(&rules->rules[ri])) {
            by_rule[ri] = a;
        }
    }
    const alr_ruleset_t *old = self->rules;
    self->rules = rules;
    int rc = 0;
    /* New threshold rules get their alert. */
    for (size_t i = 0; i < nr && rc == 0; i++) {
        const alr_rule_t *r = &rules->rules[i];
        if (is_issue_rule(r) || by_rule[i]) {
            continue;
        }
        json_t *labels = alr_rule_labels_json(r);
        alr_alert_t *a = labels ? alert_new(r->fingerprint, r->fingerprint, (long)i, labels)
                                : NULL;
        if (!a || table_add(self, a) != 0) {
            alert_free(a);
            rc = TC_ENOMEM;
            break;
        }
        by_rule[i] = a;
    }
    (void)old;
    /* Alerts whose rule is gone resolve (once) and are forgotten later. */
    for (size_t i = 0; i < self->n && rc == 0; i++) {
        alr_alert_t *a = self->alerts[i];
        if (a->rule >= 0) {
            continue;
        }
        if (a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED) {
            a->has_value = false;
            enter(a, ALR_STATE_RESOLVED, now_us);
            a->resolved_at_us = now_us;
            a->flapping = false;
            rc = alr_events_add(out, ALR_EV_RESOLVED, a->fp, now_us);
        } else if (a->state == ALR_STATE_PENDING) {
            enter(a, ALR_STATE_INACTIVE, now_us);
        }
    }
    free(self->by_rule);
    free(self->order);
    self->by_rule = by_rule;
    self->order = order;
    return rc;
}

/* The first index in `order` whose rule's service is >= `service`. */
static size_t lower_bound(const alr_evaluator_t *self, const char *service)
{
    size_t lo = 0, hi = self->rules->nrules;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(self->rules->rules[self->order[mid]].service, service) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static int eval_rule(alr_evaluator_t *self, size_t ri, const alr_window_t *window, int64_t wm,
                     int64_t wm_closed, int64_t now_us, int64_t floor_us, alr_events_t *out)
{
    const alr_rule_t *r = &self->rules->rules[ri];
    alr_alert_t *a = self->by_rule[ri];
    if (!a || is_issue_rule(r)) {
        return 0;
    }
    alr_sample_t s, c;
    alr_rule_sample(r, window, wm, now_us, floor_us, 0, &s);
    view_t fv = {&s, judges(r, &s, wm, floor_us), wm > now_us && r->type != ALR_RULE_ABSENCE};
    view_t cv = {NULL, false, false};
    if (needs_closed(r, a, &fv)) {
        alr_rule_sample(r, window, wm_closed, now_us, floor_us, ALR_AGG_CLOSED_ONLY, &c);
        cv.s = &c;
        cv.judges = judges(r, &c, wm_closed, floor_us);
    }
    verdict_t v = verdict(r, &fv, &cv);
    return step(self, a, r, &s, &v, now_us, out);
}

int alr_evaluator_run(alr_evaluator_t *self, const alr_window_t *window, int64_t now_us,
                      int64_t max_delay_us, const char *const *services, size_t nservices,
                      int64_t seen_floor_us, alr_events_t *out)
{
    if (!self->rules) {
        return 0;
    }
    int64_t wm = alr_window_watermark_us(window, now_us, max_delay_us);
    int64_t wmc = alr_window_closed_watermark_us(window, now_us, max_delay_us);
    int n = 0;
    if (!services) {
        for (size_t i = 0; i < self->rules->nrules; i++) {
            int rc = eval_rule(self, i, window, wm, wmc, now_us, seen_floor_us, out);
            if (rc != 0) {
                return rc;
            }
            n++;
        }
        return n;
    }
    for (size_t k = 0; k < nservices; k++) {
        for (size_t j = lower_bound(self, services[k]);
             j < self->rules->nrules &&
             strcmp(self->rules->rules[self->order[j]].service, services[k]) == 0;
             j++) {
            int rc =
                eval_rule(self, self->order[j], window, wm, wmc, now_us, seen_floor_us, out);
            if (rc != 0) {
                return rc;
            }
            n++;
        }
    }
    return n;
}

/* ---- issues -------------------------------------------------------------------------- */

static json_t *issue_labels(const alr_rule_t *r, const alr_issue_t *is)
{
    json_t *l = alr_rule_labels_json(r);
    if (!l || json_object_set_new(l, "service", json_string(is->service)) != 0 ||
        json_object_set_new(l, "issue_id", json_string(is->issue_id)) != 0) {
        json_decref(l);
        return NULL;
    }
    if (is->environment[0]) {
        json_object_set_new(l, "environment", json_string(is->environment));
    }
    return l;
}

int alr_evaluator_issue(alr_evaluator_t *self, const alr_issue_t *is, int64_t now_us,
                        alr_events_t *out)
{
    if (!self->rules) {
        return 0;
    }
    int fired = 0;
    for (size_t i = 0; i < self->rules->nrules; i++) {
        const alr_rule_t *r = &self->rules->rules[i];
        if ((r->type == ALR_RULE_NEW_ISSUE && is->regressed) ||
            (r->type == ALR_RULE_REGRESSED_ISSUE && !is->regressed) || !is_issue_rule(r)) {
            continue;
        }
        if ((strcmp(r->service, "*") != 0 && strcmp(r->service, is->service) != 0) ||
            (r->environment[0] && strcmp(r->environment, is->environment) != 0) ||
            (r->min_level > 0 && is->level > 0 && is->level < r->min_level)) {
            continue;
        }
        json_t *labels = issue_labels(r, is);
        if (!labels) {
            return TC_ENOMEM;
        }
        uint64_t fp = alr_labels_fingerprint(labels);
        alr_alert_t *a = alr_evaluator_get(self, fp);
        if (!a) {
            a = alert_new(fp, r->fingerprint, (long)i, labels);
            if (!a || table_add(self, a) != 0) {
                alert_free(a);
                return TC_ENOMEM;
            }
        } else {
            json_decref(labels);
        }
        a->last_change_us = now_us;
        if (is->time_us > a->issue_time_us) {
            a->issue_time_us = is->time_us;
        }
        a->issue_count = is->count;
        a->has_value = true;
        a->value = (double)is->count;
        a->count = is->count;
        a->evaluated_us = now_us;
        a->hold = false;
        a->dirty = true;
        json_object_set_new(a->annotations, "issue_type", json_string(is->type));
        json_object_set_new(a->annotations, "issue_message", json_string(is->message));
        json_object_set_new(a->annotations, "issue_culprit", json_string(is->culprit));
        json_object_set_new(a->annotations, "issue_release", json_string(is->release));
        if (a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED) {
            continue; /* already paged for this issue: refreshed, not repeated */
        }
        int rc = go_firing(self, a, r, now_us, out);
        if (!json_object_get(a->annotations, "summary")) {
            char summary[2400];
            snprintf(summary, sizeof(summary), "%s issue in %s: %s%s%s",
                     is->regressed ? "Regressed" : "New", is->service, is->type,
                     is->type[0] && is->message[0] ? ": " : "", is->message);
            json_object_set_new(a->annotations, "summary", json_string(summary));
        }
        if (rc != 0) {
            return rc;
        }
        fired++;
    }
    return fired;
}

int alr_evaluator_issue_status(alr_evaluator_t *self, const alr_issue_status_t *st,
                               int64_t now_us, alr_events_t *out)
{
    if (!self->rules || (st->status != ALR_ISSUE_RESOLVED && st->status != ALR_ISSUE_IGNORED)) {
        return 0;
    }
    char by[160];
    snprintf(by, sizeof(by), "issue:%s", st->updated_by[0] ? st->updated_by : "api");
    int resolved = 0;
    for (size_t i = 0; i < self->n; i++) {
        alr_alert_t *a = self->alerts[i];
        const alr_rule_t *r = rule_of(self, a);
        if (!r || !is_issue_rule(r) ||
            (a->state != ALR_STATE_FIRING && a->state != ALR_STATE_ACKNOWLEDGED) ||
            a->issue_time_us >= st->updated_us) {
            continue;
        }
        const char *sv = json_string_value(json_object_get(a->labels, "service"));
        const char *id = json_string_value(json_object_get(a->labels, "issue_id"));
        if (!sv || !id || strcmp(sv, st->service) != 0 || strcmp(id, st->issue_id) != 0) {
            continue;
        }
        int rc = alr_evaluator_resolve(self, a->fp, by, now_us, out);
        if (rc != 0) {
            return rc;
        }
        resolved++;
    }
    return resolved;
}

/* ---- timers -------------------------------------------------------------------------- */

int64_t alr_evaluator_next_wake(const alr_evaluator_t *self, int64_t now_us)
{
    if (!self->rules) {
        return 0;
    }
    (void)now_us;
    const alr_settings_t *st = &self->rules->settings;
    int64_t best = 0;
#define CONSIDER(t)                                                                          \
    do {                                                                                     \
        int64_t t_ = (t);                                                                    \
        if (t_ > 0 && (!best || t_ < best)) {                                                \
            best = t_;                                                                       \
        }                                                                                    \
    } while (0)
    for (size_t i = 0; i < self->n; i++) {
        const alr_alert_t *a = self->alerts[i];
        const alr_rule_t *r = rule_of(self, a);
        if (a->state == ALR_STATE_PENDING && r) {
            CONSIDER(a->active_at_us + r->for_ms * 1000);
        }
        CONSIDER(alr_alert_nodata_until(self, a));
        if (a->state == ALR_STATE_ACKNOWLEDGED && a->ack_expires_us) {
            CONSIDER(a->ack_expires_us);
        }
        if (a->flapping && a->nflips > 0) {
            CONSIDER(a->flips[a->nflips - 1] + st->flap_window_ms * 1000);
        }
        if (r && is_issue_rule(r) &&
            (a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED) &&
            r->resolve_after_ms > 0) {
            CONSIDER(a->last_change_us + r->resolve_after_ms * 1000);
        }
        if (a->state == ALR_STATE_RESOLVED) {
            CONSIDER(a->since_us + ALR_RESOLVED_KEEP_US);
        }
    }
#undef CONSIDER
    return best;
}

int alr_evaluator_timers(alr_evaluator_t *self, int64_t now_us, alr_events_t *out)
{
    if (!self->rules) {
        return 0;
    }
    const alr_settings_t *st = &self->rules->settings;
    bool removed_any = false;
    for (size_t i = 0; i < self->n; i++) {
        alr_alert_t *a = self->alerts[i];
        const alr_rule_t *r = rule_of(self, a);
        int rc = 0;
        if (a->state == ALR_STATE_ACKNOWLEDGED && a->ack_expires_us &&
            now_us >= a->ack_expires_us) {
            enter(a, ALR_STATE_FIRING, now_us);
            a->ack_by[0] = a->ack_comment[0] = '\0';
            a->ack_at_us = a->ack_expires_us = 0;
            rc = alr_events_add(out, ALR_EV_UNACKED, a->fp, now_us);
        }
        if (rc == 0 && a->flapping && a->nflips > 0 &&
            a->flips[a->nflips - 1] <= now_us - st->flap_window_ms * 1000) {
            a->flapping = false;
            a->dirty = true;
            rc = alr_events_add(out, ALR_EV_FLAP_END, a->fp, now_us);
        }
        if (rc == 0 && r && is_issue_rule(r) &&
            (a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED) &&
            r->resolve_after_ms > 0 && now_us >= a->last_change_us + r->resolve_after_ms * 1000) {
            rc = go_resolved(self, a, r, now_us, out);
        }
        if (rc != 0) {
            return rc;
        }
        if (a->state == ALR_STATE_RESOLVED && now_us - a->since_us >= ALR_RESOLVED_KEEP_US &&
            !a->flapping) {
            if (!r || is_issue_rule(r)) {
                /* Forgotten: its rule is gone, or it was one issue's alert. */
                if (note_removed(self, a->fp) != 0) {
                    return TC_ENOMEM;
                }
                alert_free(a);
                self->alerts[i] = NULL;
                removed_any = true;
            } else {
                enter(a, ALR_STATE_INACTIVE, now_us);
            }
        }
    }
    if (removed_any) {
        size_t k = 0;
        for (size_t i = 0; i < self->n; i++) {
            if (self->alerts[i]) {
                self->alerts[k++] = self->alerts[i];
            }
        }
        self->n = k;
        if (reindex(self) != 0) {
            return TC_ENOMEM;
        }
    }
    return 0;
}

/* ---- by hand ------------------------------------------------------------------------- */

int alr_evaluator_ack(alr_evaluator_t *self, uint64_t fp, const char *by, const char *comment,
                      int64_t expires_us, int64_t now_us, alr_events_t *out)
{
    alr_alert_t *a = alr_evaluator_get(self, fp);
    if (!a) {
        return TC_ENOTFOUND;
    }
    if (a->state != ALR_STATE_FIRING && a->state != ALR_STATE_ACKNOWLEDGED) {
        return TC_ESTATE;
    }
    bool renew = a->state == ALR_STATE_ACKNOWLEDGED;
    if (!renew) {
        enter(a, ALR_STATE_ACKNOWLEDGED, now_us);
    }
    tc_strlcpy(a->ack_by, by && by[0] ? by : "unknown", sizeof(a->ack_by));
    tc_strlcpy(a->ack_comment, comment ? comment : "", sizeof(a->ack_comment));
    a->ack_at_us = now_us;
    a->ack_expires_us = expires_us;
    a->dirty = true;
    return renew ? 0 : alr_events_add(out, ALR_EV_ACKED, fp, now_us);
}

int alr_evaluator_unack(alr_evaluator_t *self, uint64_t fp, int64_t now_us, alr_events_t *out)
{
    alr_alert_t *a = alr_evaluator_get(self, fp);
    if (!a) {
        return TC_ENOTFOUND;
    }
    if (a->state != ALR_STATE_ACKNOWLEDGED) {
        return TC_ESTATE;
    }
    enter(a, ALR_STATE_FIRING, now_us);
    a->ack_by[0] = a->ack_comment[0] = '\0';
    a->ack_at_us = a->ack_expires_us = 0;
    return alr_events_add(out, ALR_EV_UNACKED, fp, now_us);
}

int alr_evaluator_resolve(alr_evaluator_t *self, uint64_t fp, const char *by, int64_t now_us,
                          alr_events_t *out)
{
    alr_alert_t *a = alr_evaluator_get(self, fp);
    if (!a) {
        return TC_ENOTFOUND;
    }
    if (a->state != ALR_STATE_FIRING && a->state != ALR_STATE_ACKNOWLEDGED) {
        return TC_ESTATE;
    }
    a->hold = true;
    tc_strlcpy(a->resolved_by, by && by[0] ? by : "unknown", sizeof(a->resolved_by));
    enter(a, ALR_STATE_RESOLVED, now_us);
    a->active_at_us = 0;
    a->resolved_at_us = now_us;
    /* A resolve by hand is always announced, flapping or not. */
    a->flapping = false;
    return alr_events_add(out, ALR_EV_RESOLVED, fp, now_us);
}

/* ---- access -------------------------------------------------------------------------- */

size_t alr_evaluator_alert_count(const alr_evaluator_t *self)
{
    return self->n;
}

alr_alert_t *alr_evaluator_alert(alr_evaluator_t *self, size_t i)
{
    assert(i < self->n);
    return self->alerts[i];
}

void alr_evaluator_state_counts(const alr_evaluator_t *self, size_t *counts)
{
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        counts[i] = 0;
    }
    for (size_t i = 0; i < self->n; i++) {
        counts[self->alerts[i]->state]++;
    }
}

const uint64_t *alr_evaluator_removed(const alr_evaluator_t *self, size_t *len)
{
    *len = self->nremoved;
    return self->removed;
}

void alr_evaluator_persisted(alr_evaluator_t *self)
{
    for (size_t i = 0; i < self->n; i++) {
        self->alerts[i]->dirty = false;
    }
    self->nremoved = 0;
}

/* ---- persistence --------------------------------------------------------------------- */

json_t *alr_alert_state_json(const alr_alert_t *a)
{
    char rfp[17];
    snprintf(rfp, sizeof(rfp), "%016" PRIx64, a->rule_fp);
    json_t *flips = json_array();
    for (unsigned i = 0; flips && i < a->nflips; i++) {
        json_array_append_new(flips, json_integer((json_int_t)a->flips[i]));
    }
    return json_pack("{s:i, s:s, s:s, s:O, s:O, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:f, s:I, "
                     "s:I, s:s, s:s, s:I, s:I, s:b, s:s, s:o*, s:b, s:I, s:I, s:I, s:I, s:I}",
                     "v", 2, "fingerprint", a->fp_hex, "rule", rfp, "labels", a->labels,
                     "annotations", a->annotations, "state", alr_state_name(a->state),
                     "since_us", (json_int_t)a->since_us, "active_at_us",
                     (json_int_t)a->active_at_us, "fired_at_us", (json_int_t)a->fired_at_us,
                     "resolved_at_us", (json_int_t)a->resolved_at_us, "evaluated_us",
                     (json_int_t)a->evaluated_us, "has_value", a->has_value, "value",
                     isfinite(a->value) ? a->value : 0.0, "count", (json_int_t)a->count,
                     "errors", (json_int_t)a->errors, "ack_by", a->ack_by, "ack_comment",
                     a->ack_comment, "ack_at_us", (json_int_t)a->ack_at_us, "ack_expires_us",
                     (json_int_t)a->ack_expires_us, "hold", a->hold, "resolved_by",
                     a->resolved_by, "flips", flips, "flapping", a->flapping, "flap_since_us",
                     (json_int_t)a->flap_since_us, "last_change_us",
                     (json_int_t)a->last_change_us, "issue_count", (json_int_t)a->issue_count,
                     "issue_time_us", (json_int_t)a->issue_time_us, "judged_at_us",
                     (json_int_t)a->judged_at_us);
}

static int64_t get_i64(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

static const char *str_or_empty(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static bool parse_hex64(const char *s, uint64_t *out)
{
    if (!s || strlen(s) != 16) {
        return false;
    }
    char *end = NULL;
    *out = strtoull(s, &end, 16);
    return end && *end == '\0';
}

int alr_evaluator_restore(alr_evaluator_t *self, const json_t *st, int64_t now_us,
                          alr_events_t *out)
{
    uint64_t fp, rfp;
    alr_state_t state;
    json_t *labels = json_object_get(st, "labels");
    if (!parse_hex64(json_string_value(json_object_get(st, "fingerprint")), &fp) ||
        !parse_hex64(json_string_value(json_object_get(st, "rule")), &rfp) ||
        !parse_state(json_string_value(json_object_get(st, "state")), &state) ||
        !json_is_object(labels)) {
        return TC_EPARSE;
    }
    alr_alert_t *a = alr_evaluator_get(self, fp);
    bool fresh = a == NULL;
    long ri = self->rules ? alr_ruleset_find(self->rules, rfp) : -1;
    if (fresh) {
        a = alert_new(fp, rfp, ri, json_deep_copy(labels));
        if (!a || !a->labels) {
            alert_free(a);
            return TC_ENOMEM;
        }
    }
    a->rule = ri;
    a->state = state;
    json_t *ann = json_object_get(st, "annotations");
    if (json_is_object(ann)) {
        json_decref(a->annotations);
        a->annotations = json_deep_copy(ann);
        if (!a->annotations) {
            a->annotations = json_object();
        }
    }
    a->since_us = get_i64(st, "since_us");
    a->active_at_us = get_i64(st, "active_at_us");
    a->fired_at_us = get_i64(st, "fired_at_us");
    a->resolved_at_us = get_i64(st, "resolved_at_us");
    a->evaluated_us = get_i64(st, "evaluated_us");
    /* Kept only when the record was written in a no-data hold (the evaluation then judged
     * nothing); otherwise, or when absent, 0: step() starts the clock at the next
     * evaluation. */
    a->judged_at_us = get_i64(st, "judged_at_us");
    if (a->judged_at_us >= a->evaluated_us) {
        a->judged_at_us = 0;
    }
    a->has_value = json_is_true(json_object_get(st, "has_value"));
    a->value = json_number_value(json_object_get(st, "value"));
    a->count = (uint64_t)get_i64(st, "count");
    a->errors = (uint64_t)get_i64(st, "errors");
    tc_strlcpy(a->ack_by, str_or_empty(st, "ack_by"),
               sizeof(a->ack_by));
    tc_strlcpy(a->ack_comment, str_or_empty(st, "ack_comment"),
               sizeof(a->ack_comment));
    a->ack_at_us = get_i64(st, "ack_at_us");
    a->ack_expires_us = get_i64(st, "ack_expires_us");
    a->hold = json_is_true(json_object_get(st, "hold"));
    tc_strlcpy(a->resolved_by, str_or_empty(st, "resolved_by"),
               sizeof(a->resolved_by));
    a->nflips = 0;
    json_t *flips = json_object_get(st, "flips");
    size_t i;
    json_t *v;
    json_array_foreach(flips, i, v)
    {
        if (a->nflips < ALR_FLIPS_MAX) {
            a->flips[a->nflips++] = (int64_t)json_integer_value(v);
        }
    }
    a->flapping = json_is_true(json_object_get(st, "flapping"));
    a->flap_since_us = get_i64(st, "flap_since_us");
    a->last_change_us = get_i64(st, "last_change_us");
    a->issue_time_us = get_i64(st, "issue_time_us");
    a->issue_count = (uint64_t)get_i64(st, "issue_count");
    a->dirty = false;
    if (fresh && table_add(self, a) != 0) {
        alert_free(a);
        return TC_ENOMEM;
    }
    if (ri >= 0 && self->by_rule && !is_issue_rule(&self->rules->rules[ri])) {
        self->by_rule[ri] = a;
    }
    if (ri < 0 && (a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED)) {
        /* Its rule was removed while the alerter was down: the resolve is owed. */
        a->has_value = false;
        enter(a, ALR_STATE_RESOLVED, now_us);
        a->resolved_at_us = now_us;
        a->flapping = false;
        return alr_events_add(out, ALR_EV_RESOLVED, a->fp, now_us);
    }
    return 0;
}
