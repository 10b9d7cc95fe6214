/*
 * agg_dedupe.h — the set of event ids seen recently, to drop events delivered twice.
 *
 * An event id is remembered with the collector's receive time (seconds). It counts as seen
 * while that time is within `window` of the latest receive time seen so far, so the window
 * moves with the data rather than the wall clock and a replay decides the same way. The set
 * lives in memory only: after a restart or a takeover the aggregator refills it from the
 * partition's records inside the window (see agg_store.h, "stale" records), so nothing is
 * written to LMDB per event.
 *
 * Open addressing with linear probing on a seeded hash (a client choosing ids cannot make
 * probes long); expired ids are dropped when the table is rebuilt, which happens when it
 * fills up. When more than `max_ids` ids fall inside the window, the oldest are forgotten
 * early and counted in agg_dedupe_evicted.
 *
 * The set follows the store's transactions: between agg_dedupe_begin and agg_dedupe_commit
 * every change is journaled, and agg_dedupe_rollback takes them back (ids added are removed,
 * refreshed ones get their old time), so a batch whose LMDB transaction failed, or ran again,
 * decides its duplicates as if it had never been seen. (Ids dropped by a rebuild in between
 * stay dropped: they were expired or evicted anyway.)
 *
 * A pure module: no I/O, no clock. Not thread-safe.
 */
#ifndef AGG_DEDUPE_H
#define AGG_DEDUPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agg_dedupe agg_dedupe_t;

/* A set remembering ids for `window_s` seconds, at most `max_ids` of them (at least 1024),
 * probing with `seed`. NULL when out of memory. */
agg_dedupe_t *agg_dedupe_new(int64_t window_s, size_t max_ids, uint64_t seed);

void agg_dedupe_destroy(agg_dedupe_t **self_p);

/*
 * Looks up the 16-byte `id` with receive time `t_us`. Returns 1 when it was seen within the
 * window (a duplicate), 0 when not (it is remembered now), or TC_ENOMEM when the table could
 * not grow (the id is then not remembered).
 */
int agg_dedupe_check(agg_dedupe_t *self, const uint8_t *id, int64_t t_us);

/* Starts journaling (a no-op when already started). */
void agg_dedupe_begin(agg_dedupe_t *self);

/* Keeps every change since agg_dedupe_begin and stops journaling. */
void agg_dedupe_commit(agg_dedupe_t *self);

/* Takes back every change since agg_dedupe_begin, newest first; journaling goes on (a new
 * begin is not needed). */
void agg_dedupe_rollback(agg_dedupe_t *self);

/* Asks the CPU to fetch the slot `id` would probe first (a hint: it changes nothing). */
void agg_dedupe_prefetch(const agg_dedupe_t *self, const uint8_t *id);

/* Ids held (expired ones not yet dropped included). */
size_t agg_dedupe_size(const agg_dedupe_t *self);

/* Ids forgotten inside their window because more than max_ids were held. */
uint64_t agg_dedupe_evicted(const agg_dedupe_t *self);

/* Bytes of memory the table takes. */
size_t agg_dedupe_bytes(const agg_dedupe_t *self);

#endif
