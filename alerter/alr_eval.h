/*
 * alr_eval.h — rule evaluation and the alerts' state machine. Pure: the window store is
 * read, time is passed in, and what happened comes back as events for the dispatcher; no
 * I/O happens here.
 *
 * States: inactive -> pending -> firing -> acknowledged -> resolved.
 *   condition true:  inactive/resolved -> pending (active since now); pending for at least
 *                    the rule's `for` -> firing (event FIRING);
 *   condition false: pending -> inactive; firing/acknowledged -> resolved once the value is
 *                    past the clear threshold (hysteresis; event RESOLVED); a resolved
 *                    alert shows for ALR_RESOLVED_KEEP_US, then becomes inactive (issue
 *                    alerts are then forgotten).
 *   open buckets:    a threshold rule reads the fresh window (open buckets included: the
 *                    newest data counts at once) and, for the decisions a bucket still
 *                    filling could fake, the closed window too (closed buckets only, ending
 *                    at the closed watermark: complete data).
 *   thin and young:  a window JUDGES when it has a value (at least `min_count` events
 *                    where the rule has one) and, if it holds no bucket at all, lies
 *                    wholly after the alerter started watching (`seen_floor_us`: an empty
 *                    window it did not watch is not "zero events"). A fresh window is
 *                    YOUNG while its end lies ahead of now (an open bucket): it covers less
 *                    real time than the rule's window. A window that does not judge has no
 *                    say; young data may start `for` and fire but cannot alone stop or
 *                    resolve. So: an `above` rule fires on the fresh window, or on the
 *                    closed one while the fresh one does not judge; a `below` rule fires
 *                    when the fresh window says so and the closed one agrees (when the
 *                    closed one does not judge: when the fresh one is not young);
 *                    a pending alert returns to inactive, and a firing one resolves (past
 *                    the clear threshold), only when a judging window that is not young
 *                    (the closed one, or a fresh one whose buckets all ended) says so and
 *                    no judging window says otherwise. The nearly empty bucket that begins
 *                    a window, before or after any bucket closed, thus never resets `for`
 *                    nor resolves an alert, and a partial count never fires a `below`
 *                    rule. Absence rules read alr_window_last_seen and
 *                    always judge.
 *   no data:         while no window judges, a pending or firing (or acknowledged) alert
 *                    keeps its state for the rule's window + `for` after the last
 *                    evaluation at which one judged (alr_alert_t.judged_at_us); then a
 *                    pending alert returns to inactive and a firing one resolves (event
 *                    RESOLVED) — traffic that really stops ends the incident, once.
 *   acknowledge:     firing -> acknowledged (event ACKED), with an optional expiry; when it
 *                    expires or is withdrawn the alert is firing again (event UNACKED).
 *   resolve by hand: firing/acknowledged -> resolved (event RESOLVED); the alert can fire
 *                    again only after its condition was seen false once, or no window
 *                    judged for window + `for` (issue alerts: at the next change of the
 *                    issue).
 *   flapping:        when a firing/resolved change makes flap_threshold changes within
 *                    flap_window, the alert is flapping: one FLAP_START event instead of
 *                    the change, then no FIRING/RESOLVED events until it has been stable
 *                    for flap_window (FLAP_END; the dispatcher announces the state then).
 *
 * Threshold rules have one alert each (its fingerprint is the rule's); issue rules have one
 * alert per issue (labels add issue_id). Each event is emitted exactly once.
 * Not thread-safe: the caller serialises access.
 */
#ifndef ALR_EVAL_H
#define ALR_EVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_rollup.h"
#include "alr_rules.h"
#include "alr_window.h"

#define ALR_RESOLVED_KEEP_US (5 * 60 * 1000000LL)
#define ALR_FLIPS_MAX 64

typedef enum {
    ALR_STATE_INACTIVE = 0,
    ALR_STATE_PENDING = 1,
    ALR_STATE_FIRING = 2,
    ALR_STATE_ACKNOWLEDGED = 3,
    ALR_STATE_RESOLVED = 4,
} alr_state_t;

#define ALR_STATE_COUNT 5

typedef enum {
    ALR_EV_FIRING = 0,
    ALR_EV_RESOLVED,
    ALR_EV_ACKED,
    ALR_EV_UNACKED,    /* the acknowledgement expired or was withdrawn; still firing */
    ALR_EV_FLAP_START,
    ALR_EV_FLAP_END,
} alr_event_kind_t;

typedef struct {
    alr_event_kind_t kind;
    uint64_t fp;
    int64_t at_us;
} alr_event_t;

typedef struct {
    alr_event_t *items;
    size_t len, cap;
} alr_events_t;

/* Appends an event. Returns 0 or TC_ENOMEM. */
int alr_events_add(alr_events_t *list, alr_event_kind_t kind, uint64_t fp, int64_t at_us);
void alr_events_fini(alr_events_t *list);
const char *alr_event_kind_name(alr_event_kind_t kind);

typedef struct {
    uint64_t fp;
    char fp_hex[17];
    uint64_t rule_fp;     /* the rule it belongs to */
    long rule;            /* index in the current rule set; -1 when its rule is gone */
    json_t *labels;       /* the full label set (owned) */
    json_t *annotations;  /* rendered at the last transition (owned) */
    alr_state_t state;
    int64_t since_us;       /* when it entered `state` */
    int64_t active_at_us;   /* when the condition began to hold; 0 when not */
    int64_t fired_at_us;    /* start of the current or last firing; 0 when never */
    int64_t resolved_at_us; /* end of the last firing; 0 when not resolved */
    int64_t evaluated_us;
    int64_t judged_at_us;   /* the last evaluation at which some window judged (below) */
    bool has_value;
    double value;
    uint64_t count, errors;
    /* acknowledgement */
    char ack_by[128];
    char ack_comment[512];
    int64_t ack_at_us;
    int64_t ack_expires_us; /* 0: never */
    /* resolved by hand: waits for the condition to be false before it can fire again */
    bool hold;
    char resolved_by[128];
    /* flapping */
    int64_t flips[ALR_FLIPS_MAX]; /* times of firing/resolved changes, oldest first */
    unsigned nflips;
    bool flapping;
    int64_t flap_since_us;
    /* issue alerts */
    int64_t last_change_us;
    int64_t issue_time_us;  /* event time of the issue change that last fired or refreshed it */
    uint64_t issue_count;
    bool dirty;             /* changed since the caller last persisted it */
} alr_alert_t;

typedef struct alr_evaluator alr_evaluator_t;

/* An evaluator with no rules. NULL when out of memory. */
alr_evaluator_t *alr_evaluator_new(void);

/* Frees the evaluator and its alerts (not the rule set, which it borrows). Safe twice. */
void alr_evaluator_destroy(alr_evaluator_t **self_p);

/*
 * Uses `rules` (borrowed: it must outlive its use here, until the next set_rules). Alerts
 * whose rule fingerprint is in the new set keep their state; alerts of removed rules are
 * resolved (event RESOLVED when they were firing or acknowledged) and forgotten after
 * ALR_RESOLVED_KEEP_US. Returns 0 or TC_ENOMEM (then nothing changed).
 */
int alr_evaluator_set_rules(alr_evaluator_t *self, const alr_ruleset_t *rules, int64_t now_us,
                            alr_events_t *out);

/*
 * Evaluates the threshold rules at `now_us` against `window` (watermark from
 * `max_delay_us`). With `services` (sorted, `nservices` entries) only the rules of those
 * services are evaluated; NULL evaluates all. `seen_floor_us` is when the alerter started
 * watching (absence rules never count silence from before it). Returns the number of
 * rules evaluated, or TC_ENOMEM.
 */
int alr_evaluator_run(alr_evaluator_t *self, const alr_window_t *window, int64_t now_us,
                      int64_t max_delay_us, const char *const *services, size_t nservices,
                      int64_t seen_floor_us, alr_events_t *out);

/* Applies an IssueChange: every matching new/regressed rule fires (or refreshes) the alert
 * of that issue. Returns how many alerts fired, or TC_ENOMEM. (Deduplication of changes
 * delivered twice is the caller's: alr_core.) */
int alr_evaluator_issue(alr_evaluator_t *self, const alr_issue_t *issue, int64_t now_us,
                        alr_events_t *out);

/* Applies an IssueStatus: RESOLVED or IGNORED resolves every firing or acknowledged issue
 * alert of that service and issue whose last change happened before the status was set
 * (issue_time_us < updated_us), as a resolve by hand by "issue:<updated_by>"; a later
 * regression fires it again. UNRESOLVED changes nothing (regressions come as changes).
 * Returns how many alerts resolved, or TC_ENOMEM. */
int alr_evaluator_issue_status(alr_evaluator_t *self, const alr_issue_status_t *status,
                               int64_t now_us, alr_events_t *out);

/* The earliest time after which alr_evaluator_run or alr_evaluator_timers would change
 * something without new data: a pending alert's `for` ending, the no-data bound of an alert
 * no window judged at its last evaluation, an acknowledgement expiring,
 * flapping ending, an issue alert's automatic resolve, a resolved alert turning inactive.
 * 0 when nothing is scheduled. */
int64_t alr_evaluator_next_wake(const alr_evaluator_t *self, int64_t now_us);

/* Time-driven changes: acknowledgement expiry, end of flapping, issue alerts' automatic
 * resolve, resolved alerts becoming inactive or forgotten. Returns 0 or TC_ENOMEM. */
int alr_evaluator_timers(alr_evaluator_t *self, int64_t now_us, alr_events_t *out);

/* Acknowledges alert `fp` (firing or acknowledged: renewed). `expires_us` 0: never.
 * Returns 0, TC_ENOTFOUND, TC_ESTATE (not firing) or TC_ENOMEM. */
int alr_evaluator_ack(alr_evaluator_t *self, uint64_t fp, const char *by, const char *comment,
                      int64_t expires_us, int64_t now_us, alr_events_t *out);

/* Ends an acknowledgement. Returns 0, TC_ENOTFOUND, TC_ESTATE or TC_ENOMEM. */
int alr_evaluator_unack(alr_evaluator_t *self, uint64_t fp, int64_t now_us, alr_events_t *out);

/* Resolves by hand. Returns 0, TC_ENOTFOUND, TC_ESTATE or TC_ENOMEM. */
int alr_evaluator_resolve(alr_evaluator_t *self, uint64_t fp, const char *by, int64_t now_us,
                          alr_events_t *out);

/* The alert with `fp`, or NULL. */
alr_alert_t *alr_evaluator_get(alr_evaluator_t *self, uint64_t fp);

/* Alerts, for iteration (the order changes when alerts are removed). */
size_t alr_evaluator_alert_count(const alr_evaluator_t *self);
alr_alert_t *alr_evaluator_alert(alr_evaluator_t *self, size_t i);

/* How many alerts are in each state; `counts` has ALR_STATE_COUNT entries. */
void alr_evaluator_state_counts(const alr_evaluator_t *self, size_t *counts);

/* Fingerprints of alerts forgotten since the last alr_evaluator_persisted. */
const uint64_t *alr_evaluator_removed(const alr_evaluator_t *self, size_t *len);

/* Clears every dirty flag and the removed list, once the caller has persisted them. */
void alr_evaluator_persisted(alr_evaluator_t *self);

/* The persisted form of an alert. New reference; NULL when out of memory. */
json_t *alr_alert_state_json(const alr_alert_t *alert);

/*
 * Restores one alert from its persisted form. An alert whose rule is gone is resolved
 * (event RESOLVED when it was firing). Returns 0, TC_EPARSE for a malformed document, or
 * TC_ENOMEM.
 */
int alr_evaluator_restore(alr_evaluator_t *self, const json_t *state, int64_t now_us,
                          alr_events_t *out);

/* While no window judged at the alert's last evaluation (a pending, firing or acknowledged
 * threshold alert, or one resolved by hand and held): when the no-data bound ends that
 * (pending -> inactive, firing -> resolved; see "no data" above) unless a window judges
 * again before. 0 otherwise. */
int64_t alr_alert_nodata_until(const alr_evaluator_t *self, const alr_alert_t *alert);

/* When the alert's pending state turns into firing if the condition holds; 0 when not
 * pending. */
int64_t alr_alert_fires_at(const alr_evaluator_t *self, const alr_alert_t *alert);

const char *alr_state_name(alr_state_t state);

/* The sample of a threshold rule at watermark `wm_us` (absence: at `now_us`). */
typedef struct {
    bool fire;      /* the firing condition holds */
    bool clear;     /* the clearing condition holds (hysteresis) */
    bool has_value;
    double value;
    uint64_t count, errors;
    size_t buckets; /* buckets read */
} alr_sample_t;

/* `flags` as alr_window_agg's (ALR_AGG_CLOSED_ONLY: closed buckets only, with `wm_us` the
 * closed watermark). */
void alr_rule_sample(const alr_rule_t *rule, const alr_window_t *window, int64_t wm_us,
                     int64_t now_us, int64_t seen_floor_us, unsigned flags, alr_sample_t *out);

#endif
