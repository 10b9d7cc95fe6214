/*
 * alr_dispatch.h — from alert events to notifications on the wire: routing, grouping,
 * escalation, reminders, silences, and delivery scheduling per receiver (token bucket,
 * Retry-After, retries with back-off and jitter, circuit breaker, give-up with a
 * self-alert, storm digests). Pure: time is passed in, attempts go out as a list and
 * their outcomes come back in; no I/O happens here.
 *
 * Routing: a rule's `receiver:`/`policy:` shortcut, else the first route whose matchers
 * match the alert's labels, else the fallback receiver. Grouping: alerts of one policy
 * with equal values of the route's group_by labels form one group (one incident, one
 * PagerDuty dedup_key). A new group is notified group_wait after its first alert fires;
 * later changes at most every group_interval; an alert whose silence ends while it still
 * fires is notified at once.
 *
 * Escalation: the first notification goes to the policy's first tier; while some firing
 * alert of the group is neither acknowledged nor silenced, each tier's timeout climbs one
 * tier; after the last tier the policy starts again `repeat` times. Acknowledging every
 * firing alert stops it; an acknowledgement that expires starts it again from tier 1.
 * Every receiver that heard of a firing hears of its resolve. Reminders: while the group
 * stays unacknowledged, its current tier is notified again every repeat_interval.
 *
 * Delivery: each receiver sends one notification at a time, in order, when its token
 * bucket has a token, no Retry-After pause is running and its circuit is not open. When
 * more fresh notifications wait than tokens are available, they are merged into one
 * digest ("and 240 more") rather than dropped or delayed. 429 and 5xx answers and network
 * errors are retried after an exponential back-off with jitter (429 after its
 * Retry-After); other answers are not. A notification that cannot be delivered within
 * the give-up time or attempts is recorded as undelivered and its content goes to the
 * fallback receiver as a self-alert.
 *
 * Not thread-safe: the caller serialises access.
 */
#ifndef ALR_DISPATCH_H
#define ALR_DISPATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_eval.h"
#include "alr_rules.h"
#include "alr_silence.h"

/* Finished notifications kept in the log. */
#define ALR_LOG_KEEP 20000
/* Alerts described in full in one notification; the rest are counted (and listed by
 * fingerprint in the log). */
#define ALR_MSG_ALERTS_MAX 500

typedef enum {
    ALR_MSG_FIRING = 0,
    ALR_MSG_RESOLVED,
    ALR_MSG_ESCALATION,
    ALR_MSG_REMINDER,
    ALR_MSG_ACK,
    ALR_MSG_ACK_EXPIRED,
    ALR_MSG_FLAPPING,
    ALR_MSG_DIGEST,
    ALR_MSG_SELF,
} alr_msg_kind_t;

typedef enum {
    ALR_DLV_QUEUED = 0,
    ALR_DLV_SENDING,
    ALR_DLV_DELIVERED,
    ALR_DLV_UNDELIVERED,
    ALR_DLV_MERGED,
    ALR_DLV_PEER,
} alr_dlv_t;

/*
 * A notification. `payload` holds what every receiver type renders:
 * {"status": "firing"|"resolved", "title", "group_key", "group_labels", "common_labels",
 *  "common_annotations", "alerts": [{"fingerprint", "status", "labels", "annotations",
 *  "starts_us", "ends_us", "value"}], "firing": N, "resolved": N, "more": N,
 *  "fingerprints": [every alert], and per kind: "by", "comment", "failed_receiver",
 *  "error"}.
 */
typedef struct {
    uint64_t id;
    alr_msg_kind_t kind;
    char receiver[208];
    char group_key[512];
    char dedup_key[64];
    unsigned tier;
    json_t *payload;
    alr_dlv_t status;
    unsigned attempts;
    int last_status;
    char last_error[160];
    int64_t created_us;
    int64_t first_attempt_us;
    int64_t next_attempt_us;
    int64_t done_us;
    uint64_t merged_into;
    bool dirty;
} alr_msg_t;

/* An attempt to start: deliver message `id` to receiver index `receiver`. */
typedef struct {
    uint64_t id;
    size_t receiver;
} alr_attempt_t;

/* What an attempt got. */
typedef struct {
    bool transport_ok;      /* an answer came (false: connect error, time-out...) */
    int status;             /* HTTP status; SMTP answers are mapped by the sender */
    int64_t retry_after_ms; /* from Retry-After; -1 when absent */
    const char *error;      /* text for the log; may be NULL */
} alr_outcome_t;

/* For the API: where an alert stands in the notification pipeline. */
typedef struct {
    bool grouped;
    char group_key[512];
    char policy[208];
    unsigned tier;
    const char *silenced_by; /* borrowed; NULL when not silenced */
    const char *next_action; /* "notify", "escalate", "repeat", "remind", "deliver", NULL */
    int64_t next_at_us;
    unsigned next_tier;
    uint64_t last_msg;       /* 0 when none */
} alr_alert_route_t;

typedef struct alr_dispatch alr_dispatch_t;

/* A dispatcher whose first notification id is `next_id` and whose jitter comes from
 * `seed`. NULL when out of memory. */
alr_dispatch_t *alr_dispatch_new(uint64_t next_id, uint64_t seed);

/* Frees it. Safe twice. */
void alr_dispatch_destroy(alr_dispatch_t **self_p);

/*
 * Uses `rules` (borrowed until the next call). Receivers keep their throttle state by
 * name; notifications queued for a receiver that is gone are recorded undelivered (with a
 * self-alert). Groups keep their state. Returns 0 or TC_ENOMEM.
 */
int alr_dispatch_set_rules(alr_dispatch_t *self, const alr_ruleset_t *rules,
                           alr_evaluator_t *ev, int64_t now_us);

/* Takes the evaluator's events. Returns 0 or TC_ENOMEM. */
int alr_dispatch_events(alr_dispatch_t *self, alr_evaluator_t *ev, const alr_silences_t *sil,
                        const alr_events_t *events, int64_t now_us);

/* Tells the dispatcher that silences were created or expired (mutes must be re-checked). */
void alr_dispatch_silences_changed(alr_dispatch_t *self);

/* Runs the timers: group notifications, escalations, reminders, silences that ended.
 * Returns 0 or TC_ENOMEM. */
int alr_dispatch_tick(alr_dispatch_t *self, alr_evaluator_t *ev, const alr_silences_t *sil,
                      int64_t now_us);

/* Fills `out` (room for `max`) with the attempts to start now and marks them sending.
 * Returns how many. */
size_t alr_dispatch_poll(alr_dispatch_t *self, int64_t now_us, alr_attempt_t *out, size_t max);

/* Records the outcome of the attempt at message `id`. Returns 0, TC_ENOTFOUND (not a
 * message in flight) or TC_ENOMEM. */
int alr_dispatch_outcome(alr_dispatch_t *self, uint64_t id, const alr_outcome_t *o,
                         int64_t now_us);

/* Records that an HA peer delivered message `id` already: it is not sent. */
int alr_dispatch_mark_peer(alr_dispatch_t *self, uint64_t id, int64_t now_us);

/* The earliest time something is due (0: nothing scheduled). */
int64_t alr_dispatch_next_wake(const alr_dispatch_t *self, int64_t now_us);

/* The message with `id` (NULL when unknown or pruned). */
const alr_msg_t *alr_dispatch_msg(const alr_dispatch_t *self, uint64_t id);

/* Messages in id order: count and i-th. */
size_t alr_dispatch_msg_count(const alr_dispatch_t *self);
const alr_msg_t *alr_dispatch_msg_at(const alr_dispatch_t *self, size_t i);

/* The receiver index of a message's receiver (-1 when gone). */
long alr_dispatch_msg_receiver(const alr_dispatch_t *self, const alr_msg_t *m);

/* Where alert `a` stands. */
void alr_dispatch_alert_route(alr_dispatch_t *self, const alr_alert_t *a,
                              const alr_silences_t *sil, int64_t now_us, alr_alert_route_t *out);

/* /api/v1/receivers. New reference. */
json_t *alr_dispatch_receivers_json(const alr_dispatch_t *self, int64_t now_us);

/* A message as /api/v1/notifications shows it. New reference. */
json_t *alr_msg_json(const alr_msg_t *m, const char *receiver_type);

const char *alr_msg_kind_name(alr_msg_kind_t kind);
const char *alr_dlv_name(alr_dlv_t status);

/* Counters: notifications created, delivered, undelivered, merged into digests, digests,
 * failed attempts, retries. */
typedef struct {
    uint64_t created, delivered, undelivered, merged, digests, failed_attempts, retries,
        self_alerts, peer;
} alr_dispatch_stats_t;
void alr_dispatch_stats(const alr_dispatch_t *self, alr_dispatch_stats_t *out);

/* ---- HA ---- */

/*
 * Makes the dispatcher active (it decides and sends: an HA leader, or a single instance:
 * the default) or passive (an HA follower: events, timers and polls do nothing; its state
 * is what alr_dispatch_mirror copies from the leader). Becoming active takes over: attempts
 * the last leader had started are queued again, and the groups are reconciled with the
 * evaluator's alerts (an alert firing without a group is announced, a member whose alert
 * no longer fires is resolved, acknowledgements are carried over), so nothing the leader
 * left undone is lost. Returns 0 or TC_ENOMEM.
 */
int alr_dispatch_set_active(alr_dispatch_t *self, bool active, alr_evaluator_t *ev,
                            const alr_silences_t *sil, int64_t now_us);
bool alr_dispatch_active(const alr_dispatch_t *self);

/*
 * Applies one record of the leader's state (kinds and keys as alr_dispatch_each_dirty
 * writes them; `doc` NULL deletes): a group or message replaces the one held under that
 * key, a receiver's throttle state replaces the live one, meta raises next_id. What
 * changes is marked dirty (to be persisted locally). Returns 0, TC_EPARSE (malformed) or
 * TC_ENOMEM.
 */
int alr_dispatch_mirror(alr_dispatch_t *self, const char *kind, const char *key,
                        const json_t *doc, alr_evaluator_t *ev);

/* ---- persistence ---- */

/* Something changed since the last alr_dispatch_persisted. */
bool alr_dispatch_dirty(const alr_dispatch_t *self);

/* Calls `fn` for every record to write: kind "group" (key text), "msg" (id as 16 hex
 * digits), "rcv" (receiver name), "meta" ("next_id"); `doc` NULL means delete. Stops at
 * the first non-zero return and returns it. */
typedef int (*alr_dispatch_record_fn)(void *ctx, const char *kind, const char *key,
                                      const json_t *doc);
int alr_dispatch_each_dirty(alr_dispatch_t *self, alr_dispatch_record_fn fn, void *ctx);

/* Clears the dirty marks once written. */
void alr_dispatch_persisted(alr_dispatch_t *self);

/* Restores one record (kinds as above). Call for every record before set_rules... in any
 * order; alr_dispatch_restore_done then rebuilds the queues. Returns 0, TC_EPARSE or
 * TC_ENOMEM. */
int alr_dispatch_restore(alr_dispatch_t *self, const char *kind, const char *key,
                         const json_t *doc);
int alr_dispatch_restore_done(alr_dispatch_t *self);

#endif
