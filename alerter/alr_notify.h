/*
 * alr_notify.h — the sender: one background thread driving a curl multi handle that
 * performs the attempts the dispatcher schedules (HTTP POSTs for webhooks, Slack and
 * PagerDuty; SMTP for e-mail) and hands back what each got. It decides nothing: retries,
 * back-off, rate limits and give-up live in alr_dispatch. Several attempts run at once
 * (one receiver that hangs does not hold up the others); submitting only queues under a
 * mutex, so the evaluating thread never blocks on the network.
 *
 * Outcomes: an HTTP answer gives its status and Retry-After (seconds or an HTTP date, in
 * milliseconds); an SMTP exchange that succeeds is reported as status 200, a transient
 * SMTP refusal (4xx) as 503 and a permanent one (5xx) as 400; anything without an answer
 * (connect error, time-out, TLS failure) as transport_ok = false.
 */
#ifndef ALR_NOTIFY_H
#define ALR_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_render.h"

typedef struct {
    uint64_t id;
    bool transport_ok;
    int status;
    int64_t retry_after_ms; /* -1 when absent */
    char error[160];
    int64_t duration_us;
} alr_result_t;

typedef struct alr_sender alr_sender_t;

/* Starts a sender that runs up to `max_in_flight` attempts at once (0: 16). `connect_ms`
 * bounds connecting (0: 3000). NULL when out of memory or the thread cannot start. */
alr_sender_t *alr_sender_new(size_t max_in_flight, int64_t connect_ms);

/*
 * Queues an attempt at notification `id`; the sender takes `req` (its fields; `req` is
 * emptied). Returns 0, TC_ESTATE after stop, or TC_ENOMEM (then `req` is left to the
 * caller).
 */
int alr_sender_submit(alr_sender_t *self, uint64_t id, alr_request_t *req);

/* Moves up to `max` finished attempts into `out`; returns how many. */
size_t alr_sender_results(alr_sender_t *self, alr_result_t *out, size_t max);

/* A descriptor that is readable while finished attempts wait for alr_sender_results (for
 * the caller's poll(2)); alr_sender_results empties it. Owned by the sender. */
int alr_sender_fd(const alr_sender_t *self);

/* Attempts queued or running. */
size_t alr_sender_busy(alr_sender_t *self);

/* Parses a Retry-After value (delta seconds or an IMF-fixdate) at `now_us`; -1 when it is
 * neither. */
int64_t alr_retry_after_ms(const char *value, int64_t now_us);

/* Stops: no new attempt starts; running ones get up to `drain_ms` (their results stay
 * readable). Safe twice. */
void alr_sender_stop(alr_sender_t *self, int64_t drain_ms);

/* Stops and frees. Safe twice. */
void alr_sender_destroy(alr_sender_t **self_p);

#endif
