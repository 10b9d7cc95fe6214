/*
 * alr_core.h — the alerter without its I/O: the window store, the rules, the evaluator,
 * silences and the dispatcher wired together, on a clock passed in. The daemon feeds it
 * records from Kafka and outcomes of HTTP/SMTP attempts and writes its dirty records to
 * LMDB; the scenario tests drive the very same object on a virtual clock.
 *
 * A cycle: alr_core_put_record for each consumed record, alr_core_evaluate (rules of the
 * services that got data, or all rules), then persist what is dirty, then
 * alr_core_poll for the attempts to start and alr_core_outcome for each result.
 * Not thread-safe: the daemon holds a lock around every call.
 */
#ifndef ALR_CORE_H
#define ALR_CORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_dispatch.h"
#include "alr_eval.h"
#include "alr_render.h"
#include "alr_rollup.h"
#include "alr_rules.h"
#include "alr_silence.h"
#include "alr_window.h"

typedef struct {
    int64_t max_delay_us;     /* windows end no earlier than now minus this */
    uint64_t seed;            /* jitter and ids */
    const char *external_url; /* copied */
    size_t max_buckets;       /* 0: no limit */
    int64_t started_us;       /* absence rules count silence from here at the earliest */
} alr_core_opts_t;

typedef struct alr_core alr_core_t;

/* Issue changes are remembered (to apply each once) this long, and this many at most. */
#define ALR_ISSUE_SEEN_KEEP_US (7LL * 86400 * 1000000)
#define ALR_ISSUE_SEEN_MAX 200000

/* The identity of an issue change: a hash of service, issue id, kind and time_us (an
 * aggregator may publish the same change more than once). Never 0. */
uint64_t alr_issue_change_id(const alr_issue_t *issue);

alr_core_t *alr_core_new(const alr_core_opts_t *opts);
void alr_core_destroy(alr_core_t **self_p);

/* Installs a rule set; the core takes it in every case (freed on failure). Returns 0 or
 * TC_ENOMEM. */
int alr_core_set_rules(alr_core_t *self, alr_ruleset_t *rules, int64_t now_us);
const alr_ruleset_t *alr_core_rules(const alr_core_t *self);

/*
 * Applies a decoded record: a bucket goes to the window store (its service is evaluated
 * at the next alr_core_evaluate); an issue change fires issue rules at once, unless the
 * same change (alr_issue_change_id) was applied before; an issue status resolves the
 * issue's alerts (alr_evaluator_issue_status). Returns 1 (applied), 0 (ignored: stale
 * revision, a change seen before, a status that changed nothing, other kind), or
 * alr_window_put's errors (TC_EINVAL, TC_EFULL, TC_ENOMEM).
 */
int alr_core_put_record(alr_core_t *self, const alr_record_t *rec, int64_t now_us);

/*
 * Evaluates: every rule when `full`, else only the rules of services that received data
 * since the last call; then the timers (acknowledgement expiry, flapping, issues) and the
 * dispatcher (groups, escalation, reminders, silences). Returns the number of rule
 * evaluations, or TC_ENOMEM.
 */
int alr_core_evaluate(alr_core_t *self, int64_t now_us, bool full);

/* Runs only the timers and the dispatcher (after an API action). */
int alr_core_tick(alr_core_t *self, int64_t now_us);

/* The earliest time something is due without new data (dispatcher timers, `for`,
 * acknowledgement expiry, flapping, issue resolves, silence edges); 0 when nothing is. */
int64_t alr_core_next_wake(const alr_core_t *self, int64_t now_us);

/* Attempts to start now (at most `max`). */
size_t alr_core_poll(alr_core_t *self, int64_t now_us, alr_attempt_t *out, size_t max);

/* Renders message `id` for its receiver. Returns 0, TC_ENOTFOUND or TC_ENOMEM. */
int alr_core_render(alr_core_t *self, uint64_t id, int64_t now_us, alr_request_t *out);

/* Records an attempt's outcome. Returns 0 or TC_ENOTFOUND. */
int alr_core_outcome(alr_core_t *self, uint64_t id, const alr_outcome_t *o, int64_t now_us);

/* ---- by hand (HTTP API) ---- */

/* Return 0, TC_ENOTFOUND, TC_ESTATE, TC_ENOMEM. `ttl_ms` 0: the settings' ack_ttl. */
int alr_core_ack(alr_core_t *self, uint64_t fp, const char *by, const char *comment,
                 int64_t ttl_ms, int64_t now_us);
int alr_core_unack(alr_core_t *self, uint64_t fp, int64_t now_us);
int alr_core_resolve(alr_core_t *self, uint64_t fp, const char *by, int64_t now_us);

/* Creates a silence from the API body; returns its JSON (new reference) or NULL with
 * *status and `err` set. */
json_t *alr_core_silence_create(alr_core_t *self, const json_t *body, int64_t now_us,
                                int *status, char *err, size_t errlen);
/* Returns 0, TC_ENOTFOUND or TC_ESTATE. */
int alr_core_silence_expire(alr_core_t *self, const char *id, int64_t now_us);

/* ---- HA (see alr_dispatch_set_active) ---- */

/* Active: decides and sends (the default; an HA leader). Passive: mirrors. Becoming
 * active reconciles and runs the dispatcher's timers. Returns 0 or TC_ENOMEM. */
int alr_core_set_active(alr_core_t *self, bool active, int64_t now_us);
bool alr_core_active(const alr_core_t *self);

/* The record a replica applies for a person's action on an alert: `action` "ack", "unack"
 * or "resolve", when (`at_us`), and the acknowledgement's expiry (0: never). New
 * reference; NULL when out of memory. */
json_t *alr_core_human_json(const char *action, uint64_t fp, const char *by,
                            const char *comment, int64_t at_us, int64_t expires_us);

/*
 * Applies a record a replica published: "silence" (a silence created or expired there:
 * created or replaced here), "human" (a person's action there: applied here to the same
 * firing, once), and, while passive, the leader's dispatcher records ("group", "msg",
 * "rcv", "meta"; see alr_dispatch_mirror). `doc` NULL is a deletion. Returns 0, TC_EPARSE,
 * TC_ENOTFOUND or TC_ESTATE (an action that no longer applies: ignored), or TC_ENOMEM.
 */
int alr_core_mirror(alr_core_t *self, const char *kind, const char *key, const json_t *doc,
                    int64_t now_us);

/* ---- views (new references; NULL when out of memory) ---- */

/* Filters: state ("active" = pending+firing+acknowledged), alertname, service, fp hex;
 * each may be NULL. */
json_t *alr_core_alerts_json(alr_core_t *self, const char *state, const char *alertname,
                             const char *service, const char *fp_hex, int64_t now_us);
json_t *alr_core_alert_json(alr_core_t *self, uint64_t fp, int64_t now_us);
json_t *alr_core_silences_json(alr_core_t *self, const char *state, int64_t now_us);
json_t *alr_core_notifications_json(alr_core_t *self, size_t limit, const char *fp_hex,
                                    const char *receiver, const char *status, uint64_t before);
json_t *alr_core_receivers_json(alr_core_t *self, int64_t now_us);

alr_window_t *alr_core_window(alr_core_t *self);
alr_evaluator_t *alr_core_evaluator(alr_core_t *self);
alr_dispatch_t *alr_core_dispatch(alr_core_t *self);
alr_silences_t *alr_core_silences(alr_core_t *self);

/* ---- persistence ---- */

/* Calls `fn` for every dirty record: kinds "alert", "silence", and the dispatcher's
 * ("group", "msg", "rcv", "meta"); `doc` NULL deletes. Window buckets are journaled apart
 * (alr_window_journal). Returns 0 or `fn`'s first error. */
int alr_core_each_dirty(alr_core_t *self, alr_dispatch_record_fn fn, void *ctx);

/* Clears every dirty mark once written. */
void alr_core_persisted(alr_core_t *self);

/* Restores one record (before alr_core_restore_done). Returns 0, TC_EPARSE, TC_ENOMEM. */
int alr_core_restore(alr_core_t *self, const char *kind, const char *key, const json_t *doc,
                     int64_t now_us);

/* Finishes a restore: owed resolves of alerts whose rules are gone are dispatched, queues
 * are rebuilt. Call after alr_core_set_rules. Returns 0 or TC_ENOMEM. */
int alr_core_restore_done(alr_core_t *self, int64_t now_us);

#endif
