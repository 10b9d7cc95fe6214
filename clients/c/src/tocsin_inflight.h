/*
 * tocsin_inflight.h — the batches a client has sent and not yet seen acknowledged, and
 * when and where each is to be sent next.
 *
 * Pure module: time comes in as `now_ms` (any monotonic clock), jitter from the generator
 * passed in; no sockets. The background thread asks which batch is due, tries to send it
 * on the socket of the endpoint named, reports the outcome, and feeds in the Acks.
 *
 * The rules:
 * - A new batch goes to the current endpoint (at first, endpoint 0).
 * - When ZeroMQ refuses a send (no connected peer), the batch moves to the next endpoint at
 *   once, and so does the current endpoint; after every endpoint refused it in a row, it
 *   waits refused_retry_ms before the next round.
 * - When no Ack comes within ack_timeout_ms, the batch moves to the next endpoint (and the
 *   current endpoint with it, if it was there) and is resent after an exponential back-off
 *   with jitter: attempt k waits a random time in [d/2, d], d = min(base·2^(k-1), max).
 * - STORED and REJECTED end the batch; RETRY_AFTER resends it to the same endpoint after
 *   the time the collector asked for (clamped to [10 ms, retry_after_max_ms]), without
 *   back-off.
 * - An Ack for a sequence not in flight (a late duplicate) is ignored.
 * - Due batches are sent in sequence order.
 */
#ifndef TOCSIN_INFLIGHT_H
#define TOCSIN_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin_batch.h"
#include "tocsin_rng.h"

typedef struct {
    uint32_t max_batches;        /* batches in flight at most; >= 1 */
    uint32_t n_endpoints;        /* >= 1 */
    uint32_t ack_timeout_ms;     /* >= 1 */
    uint32_t backoff_base_ms;    /* first back-off after a time-out; >= 1 */
    uint32_t backoff_max_ms;     /* >= backoff_base_ms */
    uint32_t refused_retry_ms;   /* wait after every endpoint refused a send */
    uint32_t retry_after_max_ms; /* cap on a collector's retry-after */
} tocsin_inflight_config_t;

typedef enum {
    TOCSIN_INFLIGHT_SEND = 1,  /* to be sent at due_ms */
    TOCSIN_INFLIGHT_AWAIT = 2, /* sent; times out at due_ms */
} tocsin_inflight_state_t;

/* One batch in flight. The owner is the table: callers read these fields only. */
typedef struct {
    uint64_t sequence;
    uint8_t *data; /* the encoded Batch (owned by the table) */
    size_t len;
    uint64_t first_pos; /* queue positions of its events: [first_pos, end_pos) */
    uint64_t end_pos;
    uint32_t events;   /* events recorded through the queue that it carries */
    uint32_t endpoint; /* where it is (to be) sent */
    uint32_t sends;    /* times handed to ZeroMQ so far */
    uint32_t timeouts; /* ack time-outs so far: drive the back-off */
    uint32_t refused;  /* endpoints that refused it in a row */
    tocsin_inflight_state_t state;
    int64_t due_ms;
    bool used;
} tocsin_inflight_entry_t;

/* What an Ack did to the table. */
typedef enum {
    TOCSIN_ACKED_UNKNOWN = 0,  /* no such batch in flight: ignored */
    TOCSIN_ACKED_STORED = 1,   /* batch done and freed */
    TOCSIN_ACKED_RETRY = 2,    /* batch scheduled again */
    TOCSIN_ACKED_REJECTED = 3, /* batch done and freed */
} tocsin_acked_t;

typedef struct tocsin_inflight tocsin_inflight_t;

/* Returns NULL on a config out of range or no memory. `rng` is borrowed for jitter. */
tocsin_inflight_t *tocsin_inflight_new(const tocsin_inflight_config_t *config, tocsin_rng_t *rng);

/* Frees the table and every batch still in it; safe twice. */
void tocsin_inflight_destroy(tocsin_inflight_t **self_p);

uint32_t tocsin_inflight_count(const tocsin_inflight_t *self);
bool tocsin_inflight_full(const tocsin_inflight_t *self);

/* The endpoint new batches go to. */
uint32_t tocsin_inflight_current(const tocsin_inflight_t *self);

/*
 * Adds an encoded batch, due for sending at once to the current endpoint. On success the
 * table owns `data` (it frees it when the batch ends) and 0 is returned; TOCSIN_EFULL
 * when max_batches are in flight (data stays the caller's).
 */
int tocsin_inflight_add(tocsin_inflight_t *self, uint64_t sequence, uint8_t *data, size_t len,
                        uint64_t first_pos, uint64_t end_pos, uint32_t events, int64_t now_ms);

/*
 * Applies every ack time-out that passed by now_ms, then returns the batch due for
 * sending with the lowest sequence, or NULL. Report what became of it with
 * tocsin_inflight_sent or tocsin_inflight_refused before asking again.
 */
tocsin_inflight_entry_t *tocsin_inflight_next_send(tocsin_inflight_t *self, int64_t now_ms);

/* ZeroMQ took the batch: it now awaits its Ack until now_ms + ack_timeout_ms. Returns
 * true when this was a resend (the batch had been handed to ZeroMQ before). */
bool tocsin_inflight_sent(tocsin_inflight_t *self, tocsin_inflight_entry_t *entry, int64_t now_ms);

/* ZeroMQ refused the batch (no peer connected at that endpoint). */
void tocsin_inflight_refused(tocsin_inflight_t *self, tocsin_inflight_entry_t *entry,
                             int64_t now_ms);

/* What an Ack said about a known batch. */
typedef struct {
    uint64_t first_pos;
    uint64_t end_pos;
    uint32_t events;
} tocsin_acked_batch_t;

/*
 * Applies an Ack that arrived on `endpoint`'s socket. Returns what it did; for a known
 * batch, *batch (when not NULL) gets its queue positions and event count. STORED makes
 * `endpoint` the current one (it is evidently alive).
 */
tocsin_acked_t tocsin_inflight_ack(tocsin_inflight_t *self, const tocsin_ack_t *ack,
                                   uint32_t endpoint, int64_t now_ms, tocsin_acked_batch_t *batch);

/* Whether the last send attempt of some batch was refused by every endpoint in a row (no
 * collector connected), and since when (INT64_MAX when not). */
int64_t tocsin_inflight_offline_since(const tocsin_inflight_t *self);

/* Events (tocsin_inflight_add's `events`) in every batch in flight. */
uint64_t tocsin_inflight_events(const tocsin_inflight_t *self);

/* The earliest due_ms of any batch (INT64_MAX when none). */
int64_t tocsin_inflight_next_due(const tocsin_inflight_t *self);

/* The lowest first_pos of any batch (UINT64_MAX when none). */
uint64_t tocsin_inflight_oldest_pos(const tocsin_inflight_t *self);

#endif
