/*
 * alr_notify.h — notifications: the Alertmanager-compatible JSON body (pure), the retry
 * back-off (pure), and the sender that POSTs bodies to webhooks with libcurl.
 *
 * The sender is one background thread driving a curl multi handle: it runs several POSTs
 * at once (one receiver that hangs does not hold up the others), sleeps in
 * curl_multi_poll until a transfer, a retry time or a new submission needs it, and never
 * blocks the thread that evaluates rules — submitting only copies the body under a mutex.
 *
 * Delivery: a 2xx answer is delivered; anything else (other status, connect failure,
 * time-out: connect 2 s, whole exchange 5 s by default) is retried after an exponential
 * back-off with jitter, from 1 s up to 60 s, until delivered. Notifications of one alert
 * (same fingerprint) go out in submission order: a resolve never overtakes its firing.
 * A delivered notification is reported once through `on_delivered` and forgotten, so it
 * is never sent again by this sender.
 */
#ifndef ALR_NOTIFY_H
#define ALR_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_eval.h"
#include "tc_metrics.h"

/* The Alertmanager-style zero time used for endsAt while an alert fires. */
#define ALR_ZERO_TIME "0001-01-01T00:00:00Z"

/*
 * Renders the webhook body of transition `t` (Alertmanager webhook version "4": version,
 * groupKey, truncatedAlerts, status, receiver, groupLabels, commonLabels,
 * commonAnnotations, externalURL, alerts[] with status, labels, annotations, startsAt,
 * endsAt, generatorURL, fingerprint, value). Returns a string the caller frees, or NULL
 * when out of memory or the transition has no snapshot.
 */
char *alr_notify_body(const alr_transition_t *t, const char *external_url);

/* The webhook URL of a transition (from its snapshot), or NULL. Borrowed from `t`. */
const char *alr_notify_url(const alr_transition_t *t);

/*
 * The wait before retry number `attempt` (1 for the first retry): base * 2^(attempt-1),
 * plus a jitter of up to half of it drawn from `rnd`, never above `max_us`.
 */
int64_t alr_backoff_us(unsigned attempt, int64_t base_us, int64_t max_us, uint32_t rnd);

typedef struct alr_sender alr_sender_t;

/* Called on the sender's thread when a notification was delivered, before it is forgotten
 * (the daemon removes it from its durable outbox here). */
typedef void (*alr_delivered_fn)(void *ctx, uint64_t id);

typedef struct {
    int64_t connect_timeout_ms; /* 0: 2000 */
    int64_t total_timeout_ms;   /* 0: 5000 */
    int64_t backoff_base_ms;    /* 0: 1000 */
    int64_t backoff_max_ms;     /* 0: 60000 */
    size_t max_queue;           /* 0: 100000 notifications held at most */
    size_t max_in_flight;       /* 0: 8 POSTs at once */
    alr_delivered_fn on_delivered; /* may be NULL */
    void *ctx;
    /* Counters, each may be NULL: notifications delivered; attempts that failed; attempts
     * that were retries. */
    tc_counter_t *delivered;
    tc_counter_t *failed;
    tc_counter_t *retries;
} alr_sender_opts_t;

/* What the sender knows about a notification it still holds. */
typedef struct {
    unsigned attempts;
    int last_status;          /* HTTP status of the last attempt; 0 when none or no answer */
    char last_error[160];     /* "" when none */
    int64_t next_attempt_mono_us;
    bool in_flight;
} alr_delivery_t;

/*
 * Starts a sender thread (and initialises libcurl globally: create senders from one
 * thread at a time). Returns NULL when out of memory or the thread cannot start.
 */
alr_sender_t *alr_sender_new(const alr_sender_opts_t *opts);

/*
 * Queues notification `id` (ids increase with submission order) for `url` with `body`
 * (both copied). Returns 0, TC_EEXIST when `id` is already held, TC_ESTATE after stop,
 * TC_EFULL when max_queue notifications are held, or TC_ENOMEM.
 */
int alr_sender_submit(alr_sender_t *self, uint64_t id, uint64_t fingerprint, const char *url,
                      const char *body);

/* True when `id` is still held (not yet delivered); then `out` (may be NULL) is filled. */
bool alr_sender_pending(alr_sender_t *self, uint64_t id, alr_delivery_t *out);

/* How many notifications are held. */
size_t alr_sender_queued(alr_sender_t *self);

/*
 * Stops the sender: no new attempt starts; POSTs in flight get up to `drain_ms` to finish
 * (a 2xx among them is delivered and reported); then the thread exits. What was not
 * delivered stays undelivered (the daemon's outbox sends it after a restart). Safe to call
 * twice.
 */
void alr_sender_stop(alr_sender_t *self, int64_t drain_ms);

/* Stops (draining for up to the total time-out) and frees the sender. Safe to call twice. */
void alr_sender_destroy(alr_sender_t **self_p);

#endif
