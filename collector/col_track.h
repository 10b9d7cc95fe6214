/*
 * col_track.h — the batches a collector has taken and not yet answered.
 *
 * Pure bookkeeping (no sockets, no Kafka, no clock: times are passed in). For every batch
 * it produces, the collector opens a tracker in the in-flight set; each event handed to the
 * producer is counted with col_track_enqueued, each delivery report with col_track_report.
 * Once the batch is sealed (all events handed over) or aborted (the producer refused one,
 * so no more are handed over) and every handed-over event has its report, the tracker is
 * done and col_track_ack says what to answer:
 *   - STORED with accepted = events, when every event was delivered;
 *   - RETRY_AFTER, when any delivery failed or the batch was aborted — the client keeps the
 *     batch and sends it again (events already delivered are delivered twice; consumers
 *     drop duplicates by event_id).
 * The set is bounded: col_inflight_open refuses a batch beyond `max`, which the collector
 * answers with RETRY_AFTER at once.
 *
 * Not thread-safe: one set belongs to the thread that runs the producer's callbacks.
 */
#ifndef COL_TRACK_H
#define COL_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "col_wire.h"

typedef struct col_inflight col_inflight_t;
typedef struct col_track col_track_t;

/* The client's own loss figures carried by a batch (tocsin.v1.ClientCounters). */
typedef struct {
    uint64_t dropped_queue_full;
    uint64_t dropped_oversize;
    uint64_t sampled_out;
    uint64_t retried;
    uint64_t rejected;
    uint64_t dropped_before_send;
} col_client_counters_t;

/* A set that holds at most `max` trackers (max > 0). NULL when out of memory. */
col_inflight_t *col_inflight_new(uint32_t max);

/* Frees the set and every tracker still in it. Safe to call twice; sets *self_p to NULL. */
void col_inflight_destroy(col_inflight_t **self_p);

/* The number of trackers in the set. */
size_t col_inflight_count(const col_inflight_t *self);

/*
 * Opens a tracker for a batch from `peer` with `sequence` and `events` events, received at
 * `received_us` (any clock; col_track_received_us gives it back for latency). `counters`
 * may be NULL (all zero). The set owns the tracker until col_inflight_close.
 * Returns NULL with *err set to TC_EFULL when `max` trackers are open, or TC_ENOMEM.
 */
col_track_t *col_inflight_open(col_inflight_t *self, const col_peer_t *peer, uint64_t sequence,
                               uint32_t events, const col_client_counters_t *counters,
                               int64_t received_us, int *err);

/* Removes the tracker from the set and frees it; sets *track_p to NULL. Safe with NULL. */
void col_inflight_close(col_inflight_t *self, col_track_t **track_p);

/* The oldest tracker in the set, or NULL when it is empty (for draining at shutdown). */
col_track_t *col_inflight_first(col_inflight_t *self);

/* One event was handed to the producer; its delivery report is now awaited. */
void col_track_enqueued(col_track_t *self);

/* Every event of the batch has been handed to the producer. */
void col_track_seal(col_track_t *self);

/* The producer refused an event: no more events of this batch are handed over, and the
 * batch ends as RETRY_AFTER with `reason` (copied, cut to fit). */
void col_track_abort(col_track_t *self, const char *reason);

/*
 * One delivery report: `ok`, or a failure described by `error` (copied; the first failure's
 * text is kept for the Ack). Returns true when the tracker is done with this report.
 * A report beyond the events handed over is a programmer error (asserted).
 */
bool col_track_report(col_track_t *self, bool ok, const char *error);

/* True when sealed or aborted and every handed-over event has its report. */
bool col_track_done(const col_track_t *self);

/*
 * The Ack for a finished tracker: STORED (accepted = events) when every event was
 * delivered, otherwise RETRY_AFTER with `retry_after_ms` and the first failure as reason.
 * ack->reason points into the tracker: it lives until col_inflight_close.
 */
void col_track_ack(const col_track_t *self, uint32_t retry_after_ms, col_ack_t *ack);

const col_peer_t *col_track_peer(const col_track_t *self);
uint64_t col_track_sequence(const col_track_t *self);
uint32_t col_track_events(const col_track_t *self);
uint32_t col_track_failures(const col_track_t *self);
int64_t col_track_received_us(const col_track_t *self);
const col_client_counters_t *col_track_counters(const col_track_t *self);

#endif
