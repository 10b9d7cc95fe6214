/*
 * alr_eval.h — rule evaluation: one alert per rule and its state machine. Pure: the window
 * store is read, time is passed in, and what must be sent comes back as transitions; no
 * I/O happens here.
 *
 * States: inactive -> pending -> firing -> resolved (-> inactive).
 *   condition true:  inactive/resolved -> pending (active since now); pending for at least
 *                    the rule's `for` -> firing, which emits one "firing" transition;
 *   condition false: pending -> inactive, nothing emitted; firing -> resolved, which emits
 *                    one "resolved" transition; resolved stays visible for
 *                    ALR_RESOLVED_KEEP_US, then becomes inactive.
 * Each transition is emitted exactly once, with a notification id unique and increasing
 * for the evaluator's life (the caller persists alr_evaluator_next_id with the states).
 *
 * The condition of an error_rate rule: the window (watermark - window, watermark] of the
 * rule's series (request kind, the rule's service, name "*" = all, environment "" = all)
 * holds at least max(min_count, 1) requests and Σerrors/Σcount > above. No data is false.
 *
 * An alert keeps, from the moment it fires, a snapshot of what its notifications say
 * (labels, annotations, receiver, webhook), so a resolve can be sent even after its rule
 * was removed or changed, and after a restart.
 *
 * Not thread-safe: the caller serialises access (the daemon holds a mutex).
 */
#ifndef ALR_EVAL_H
#define ALR_EVAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_rules.h"
#include "alr_window.h"

#define ALR_RESOLVED_KEEP_US (5 * 60 * 1000000LL)

typedef enum {
    ALR_STATE_INACTIVE = 0,
    ALR_STATE_PENDING = 1,
    ALR_STATE_FIRING = 2,
    ALR_STATE_RESOLVED = 3,
} alr_state_t;

#define ALR_STATE_COUNT 4

typedef enum {
    ALR_NOTIFY_FIRING = 0,
    ALR_NOTIFY_RESOLVED = 1,
} alr_notify_status_t;

typedef struct {
    uint64_t fingerprint;
    alr_state_t state;
    int64_t since_us;       /* when it entered `state`; 0 when it never left inactive */
    int64_t active_at_us;   /* when the condition began to hold (pending); 0 when not */
    int64_t fired_at_us;    /* start of the current or last firing; 0 when never */
    int64_t resolved_at_us; /* end of the last firing; 0 when not resolved */
    /* The last evaluation. */
    int64_t evaluated_us;
    bool has_value;
    double value; /* error rate; meaningful when has_value */
    uint64_t count;
    uint64_t errors;
    /* The last notification emitted; notif_id 0 when none. */
    uint64_t notif_id;
    alr_notify_status_t notif_status;
    int64_t notif_at_us;
    json_t *snapshot; /* {labels, annotations, receiver, webhook} once fired; owned */
    bool dirty;       /* changed since the caller last persisted it */
} alr_alert_t;

/* One notification to send, self-contained. */
typedef struct {
    uint64_t id;
    uint64_t fingerprint;
    alr_notify_status_t status;
    int64_t at_us;        /* when it was emitted */
    int64_t starts_at_us; /* when the alert began firing */
    int64_t ends_at_us;   /* when it resolved; 0 for firing */
    bool has_value;
    double value;
    json_t *snapshot;     /* owned reference */
} alr_transition_t;

typedef struct {
    alr_transition_t *items;
    size_t len, cap;
} alr_transitions_t;

/* Drops every transition (their snapshots are released); the list stays usable. */
void alr_transitions_clear(alr_transitions_t *list);

/* Clears and frees the list's storage. */
void alr_transitions_fini(alr_transitions_t *list);

/* The result of reading a rule's window. */
typedef struct {
    bool cond;      /* the rule's condition holds */
    bool has_value; /* the window held requests */
    double value;
    uint64_t count;
    uint64_t errors;
} alr_sample_t;

/* Reads the window of `rule` at watermark `watermark_us`. */
void alr_rule_sample(const alr_rule_t *rule, const alr_window_t *window, int64_t watermark_us,
                     alr_sample_t *out);

/*
 * Moves one alert through its state machine for a sample taken at `now_us`. Returns true
 * when the step emits a notification; then *status says which. Marks the alert dirty when
 * its state changed. Does not touch notif_* or the snapshot (the evaluator does).
 */
bool alr_alert_step(alr_alert_t *alert, const alr_rule_t *rule, const alr_sample_t *sample,
                    int64_t now_us, alr_notify_status_t *status);

const char *alr_state_name(alr_state_t state);
const char *alr_notify_status_name(alr_notify_status_t status);

/* The notification snapshot of a rule: {labels, annotations, receiver, webhook}. New
 * reference; NULL when out of memory. */
json_t *alr_rule_snapshot(const alr_ruleset_t *set, const alr_rule_t *rule);

typedef struct alr_evaluator alr_evaluator_t;

/* An evaluator with no rules whose first notification id is `next_id` (>= 1). */
alr_evaluator_t *alr_evaluator_new(uint64_t next_id);

/* Frees the evaluator, its rule set and alerts. Safe to call twice and on NULL. */
void alr_evaluator_destroy(alr_evaluator_t **self_p);

/*
 * Replaces the rule set. The evaluator takes ownership of `rules` in every case (the old
 * set is freed). Alerts whose fingerprint is in both sets keep their state; alerts of
 * removed rules are dropped (listed by alr_evaluator_removed), and a removed alert that
 * was firing emits a "resolved" transition into `out`. Returns 0, or TC_ENOMEM: when the
 * new alert table cannot be allocated nothing changed (and `rules` was freed); when an
 * allocation failed while dropping alerts the new rules are in place but a resolve or a
 * removal may be missing.
 */
int alr_evaluator_set_rules(alr_evaluator_t *self, alr_ruleset_t *rules, int64_t now_us,
                            alr_transitions_t *out);

/*
 * Restores one alert from its persisted form (alr_alert_state_json). When no rule has its
 * fingerprint it is dropped and, if it was firing, a "resolved" transition is emitted as
 * for a removed rule. Returns 0, TC_EPARSE for a malformed document, or TC_ENOMEM.
 */
int alr_evaluator_restore(alr_evaluator_t *self, const json_t *state, int64_t now_us,
                          alr_transitions_t *out);

/*
 * Evaluates every rule at `now_us` against `window` (watermark from `max_delay_us`),
 * appending the transitions to `out`. Returns the number of rules evaluated, or TC_ENOMEM
 * (alerts already stepped keep their new state; their transitions are in `out`).
 */
int alr_evaluator_run(alr_evaluator_t *self, const alr_window_t *window, int64_t now_us,
                      int64_t max_delay_us, alr_transitions_t *out);

/* The current rule set (NULL before the first set_rules) and the alert of rule i. */
const alr_ruleset_t *alr_evaluator_rules(const alr_evaluator_t *self);
size_t alr_evaluator_alert_count(const alr_evaluator_t *self);
alr_alert_t *alr_evaluator_alert(alr_evaluator_t *self, size_t i);

/* How many alerts are in each state; `counts` has ALR_STATE_COUNT entries. */
void alr_evaluator_state_counts(const alr_evaluator_t *self, size_t *counts);

/* The id the next transition will get. */
uint64_t alr_evaluator_next_id(const alr_evaluator_t *self);

/* Fingerprints of alerts dropped since the last alr_evaluator_persisted. */
const uint64_t *alr_evaluator_removed(const alr_evaluator_t *self, size_t *len);

/* Clears every dirty flag and the removed list, once the caller has persisted them. */
void alr_evaluator_persisted(alr_evaluator_t *self);

/* The persisted form of an alert (state, times, last notification, snapshot). New
 * reference; NULL when out of memory. */
json_t *alr_alert_state_json(const alr_alert_t *alert);

/* The alert as /api/v1/alerts shows it (without delivery status, which the daemon adds).
 * `rule` may be NULL. New reference; NULL when out of memory. */
json_t *alr_alert_api_json(const alr_alert_t *alert, const alr_rule_t *rule);

#endif
