/*
 * alr_window.h — the alerter's window store: the recent buckets of every series, as read
 * from `tocsin.rollups`, and sums over time windows of them. Pure: no I/O; time is passed
 * in.
 *
 * A bucket is identified by (service, environment, name, kind, start_s). The same bucket
 * may arrive again with a higher revision (a late event changed it); it then replaces the
 * one held. A lower or equal revision is ignored.
 *
 * Windows end at the watermark: max(end of the newest bucket received, now - max_delay).
 * A window of length W covers (watermark - W, watermark]: a bucket belongs to it when its
 * end (start + width) lies in that range.
 *
 * Every change (a bucket put or pruned) is also written to a journal, so the caller can
 * make the same changes durable (alr_window_journal / alr_window_journal_clear).
 * Not thread-safe: one thread uses a store at a time.
 */
#ifndef ALR_WINDOW_H
#define ALR_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_rollup.h"

/* Buckets starting further than this beyond `now` are refused: only closed buckets are
 * published, so a later start means a skewed clock upstream, and it must not move the
 * watermark (and every window with it) into the future. */
#define ALR_WINDOW_FUTURE_MAX_S 120

typedef struct alr_window alr_window_t;

/* A change for the journal: `bucket` as it now is, or deleted. */
typedef struct {
    alr_rollup_t bucket;
    bool deleted;
} alr_window_change_t;

/* Sums over the buckets of a window. */
typedef struct {
    uint64_t count;
    uint64_t errors;
    size_t buckets; /* how many buckets contributed */
    size_t series;  /* how many series matched */
} alr_window_sum_t;

/* A store that holds at most `max_buckets` buckets (0: no limit). NULL when out of memory. */
alr_window_t *alr_window_new(size_t max_buckets);

/* Frees the store. Safe to call twice and on NULL. */
void alr_window_destroy(alr_window_t **self_p);

/*
 * Puts one bucket. Returns 1 when it was added or replaced an older revision, 0 when it was
 * ignored (its revision is not higher than the one held, or it ends at or before the
 * pruning horizon), TC_EINVAL when it starts more than ALR_WINDOW_FUTURE_MAX_S after
 * `now_us`, TC_EFULL when the store holds max_buckets, TC_ENOMEM. Applied puts are
 * journaled when `journal` is true (false when restoring from durable state).
 */
int alr_window_put(alr_window_t *self, const alr_rollup_t *bucket, int64_t now_us,
                   bool journal);

/*
 * Removes every bucket that ends at or before `horizon_s` and refuses such buckets from
 * now on. Deletions are journaled. Returns how many buckets were removed.
 */
size_t alr_window_prune(alr_window_t *self, int64_t horizon_s);

/* max(end of the newest bucket held or ever put, now_us - max_delay_us), microseconds. */
int64_t alr_window_watermark_us(const alr_window_t *self, int64_t now_us, int64_t max_delay_us);

/*
 * Sums the buckets of `kind` of `service` whose end lies in (from_us, to_us]. `environment`
 * "" matches every environment; `name` "*" matches every name. Fills `out` (zeros when
 * nothing matches).
 */
void alr_window_sum(const alr_window_t *self, const char *service, const char *environment,
                    const char *name, int kind, int64_t from_us, int64_t to_us,
                    alr_window_sum_t *out);

/* Buckets held. */
size_t alr_window_bucket_count(const alr_window_t *self);

/* The journal: changes since the last clear, oldest first. The pointer is valid until the
 * next put, prune or clear. */
const alr_window_change_t *alr_window_journal(const alr_window_t *self, size_t *len);

/* Empties the journal (after its changes are durable). */
void alr_window_journal_clear(alr_window_t *self);

#endif
