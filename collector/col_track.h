/*
 * col_track.h — the batches a collector has taken and not yet answered, in arrival order.
 *
 * Pure bookkeeping (no sockets, no Kafka, no clock: times are passed in). For every valid
 * batch the collector opens a tracker that owns the batch's Kafka records (col_records_t).
 * Either it hands each record to the producer (col_track_produced, then col_track_seal) and
 * counts each delivery report (col_track_report), or it sends the batch straight to the
 * spool (col_track_divert) because Kafka is known to be away. When the tracker is done,
 * col_track_outcome says what happens next:
 *   - STORED: every record has a successful delivery report; ack STORED.
 *   - SPOOL: some record failed in a way a later attempt can fix (Kafka unreachable, timed
 *     out, purged), the producer refused it (col_track_abort), or the batch was diverted;
 *     the whole batch goes to the spool (records delivered already are delivered twice;
 *     consumers drop duplicates by event_id), then ack STORED — or RETRY_AFTER when there is
 *     no spool or it is full.
 *   - RETRY: a record failed by Kafka's configuration (col_delivery_t PERMANENT); ack
 *     RETRY_AFTER with the failure as reason (an operator can fix it; the client keeps it);
 *   - REJECT: a record is larger than Kafka takes (TOO_LARGE); ack REJECTED — no attempt can
 *     ever store it (records delivered already stay delivered).
 * Trackers stay in the set in arrival order, which is the order batches go to the spool.
 * The set is bounded by batches: col_inflight_open refuses one beyond `max`.
 *
 * Not thread-safe: one set belongs to the thread that serves the producer's reports.
 */
#ifndef COL_TRACK_H
#define COL_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "col_wire.h"

typedef struct col_inflight col_inflight_t;
typedef struct col_track col_track_t;

/* One delivery report, as the collector classifies librdkafka's error code. */
typedef enum {
    COL_DELIVERY_OK = 0,
    COL_DELIVERY_RETRIABLE, /* Kafka away, timed out, purged: another attempt can work */
    COL_DELIVERY_PERMANENT, /* refused by Kafka's configuration (authorisation, ...): no
                               attempt works until an operator changes it */
    COL_DELIVERY_TOO_LARGE, /* the record is above what Kafka takes: no attempt ever works */
} col_delivery_t;

typedef enum {
    COL_OUTCOME_PENDING = 0, /* not done yet */
    COL_OUTCOME_STORED,
    COL_OUTCOME_SPOOL,
    COL_OUTCOME_RETRY,
    COL_OUTCOME_REJECT, /* a record is too large for Kafka: ack REJECTED (too_big) */
} col_outcome_t;

/* A set that holds at most `max` trackers (max > 0). NULL when out of memory. */
col_inflight_t *col_inflight_new(uint32_t max);

/* Frees the set and every tracker still in it. Safe to call twice; sets *self_p to NULL. */
void col_inflight_destroy(col_inflight_t **self_p);

/* Trackers in the set, the events of their batches, and the bytes of their records. */
size_t col_inflight_count(const col_inflight_t *self);
uint64_t col_inflight_events(const col_inflight_t *self);
uint64_t col_inflight_bytes(const col_inflight_t *self);

/*
 * Opens a tracker for a batch from `peer` with `sequence` and `events` events, received at
 * `received_us` (any clock; kept for latency and time-outs). `counters` may be NULL (all
 * zero). The tracker takes the buffer of `records` (which is left empty, as after
 * col_records_init); `records` may be NULL for a tracker without records. The set owns the
 * tracker until col_inflight_close. Returns NULL with *err set to TC_EFULL when `max`
 * trackers are open (records are then left with the caller), or TC_ENOMEM.
 */
col_track_t *col_inflight_open(col_inflight_t *self, const col_peer_t *peer, uint64_t sequence,
                               uint32_t events, const col_client_counters_t *counters,
                               int64_t received_us, col_records_t *records, int *err);

/* Removes the tracker from the set and frees it with its records; sets *track_p to NULL.
 * Safe with NULL. */
void col_inflight_close(col_inflight_t *self, col_track_t **track_p);

/* The oldest tracker, or NULL when the set is empty; the next one in arrival order. */
col_track_t *col_inflight_first(col_inflight_t *self);
col_track_t *col_track_next(col_track_t *self);

/* One record was handed to the producer; its delivery report is now awaited. At most as
 * many as the records (programmer error otherwise). */
void col_track_produced(col_track_t *self);

/* Every record has been handed over. */
void col_track_seal(col_track_t *self);

/* The producer refused a record: no more are handed over and the batch ends in SPOOL, with
 * `reason` (copied) kept for a RETRY_AFTER if it cannot be spooled. */
void col_track_abort(col_track_t *self, const char *reason);

/* The producer refused a record for a reason no retry fixes (PERMANENT or TOO_LARGE): no
 * more records are handed over and the batch ends in RETRY or REJECT with `reason`. */
void col_track_refuse(col_track_t *self, col_delivery_t why, const char *reason);

/* Nothing is handed over: the batch goes straight to the spool (done at once). Only before
 * any record was produced. */
void col_track_divert(col_track_t *self, const char *reason);

/* One delivery report; `error` (copied) describes a failure; the first one is kept.
 * Returns true when the tracker is done with this report. A report beyond the records
 * handed over is a programmer error. */
bool col_track_report(col_track_t *self, col_delivery_t result, const char *error);

/* True when sealed, aborted or diverted and every handed-over record has its report. */
bool col_track_done(const col_track_t *self);

/* What to do with a tracker (PENDING until done). TOO_LARGE wins over PERMANENT, which wins
 * over RETRIABLE: spooling a batch no attempt can deliver would never empty the spool. */
col_outcome_t col_track_outcome(const col_track_t *self);

/* True while records are handed over and some reports are still awaited. */
bool col_track_producing(const col_track_t *self);

/* The Ack for a stored batch (delivered or spooled): STORED with accepted = events. */
void col_track_ack_stored(const col_track_t *self, col_ack_t *ack);

/* A RETRY_AFTER Ack: `reason` when not NULL, else the tracker's first failure. ack->reason
 * points into the tracker or at `reason`: it lives as long as the shorter of the two. */
void col_track_ack_retry(const col_track_t *self, uint32_t retry_after_ms, const char *reason,
                         col_ack_t *ack);

const col_peer_t *col_track_peer(const col_track_t *self);
uint64_t col_track_sequence(const col_track_t *self);
uint32_t col_track_events(const col_track_t *self);
uint32_t col_track_failures(const col_track_t *self);
int64_t col_track_received_us(const col_track_t *self);
const col_client_counters_t *col_track_counters(const col_track_t *self);
const col_records_t *col_track_records(const col_track_t *self);
const char *col_track_reason(const col_track_t *self);

/* A caller's number carried by the tracker (the spool key of a replayed entry). */
void col_track_set_tag(col_track_t *self, uint64_t tag);
uint64_t col_track_tag(const col_track_t *self);

#endif
