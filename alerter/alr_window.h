/*
 * alr_window.h — the alerter's window store: the recent buckets of every series, as read
 * from `tocsin.rollups`, and aggregates over time windows of them. Pure: no I/O; time is
 * passed in.
 *
 * A bucket is identified by (service, environment, name, kind, start_s, source_partition):
 * events of one series may come through several partitions of the events topic (errors
 * are keyed by service and fingerprint), each partition's aggregator publishing its own
 * bucket; the series' bucket is the sum of them. The same bucket arrives again with a
 * higher revision whenever it changes (aggregators publish open buckets as they fill); it
 * then replaces the one held for that partition. A lower or equal revision is ignored.
 *
 * Windows end at a watermark. The fresh watermark is max(end of the newest bucket
 * received, now - max_delay): a window of length W covers (watermark - W, watermark], and
 * a bucket belongs to it when its end lies in that range. While a bucket is open its end
 * lies ahead of now, so the freshest data counts at once. The closed watermark is
 * max(end of the newest closed bucket, now - max_delay); aggregating with
 * ALR_AGG_CLOSED_ONLY counts closed buckets only, so such a window holds complete data
 * (the evaluator confirms every decision partial data could fake against it).
 *
 * The store notes when a bucket's count last grew (alerter clock): an open bucket is proof
 * of events up to then, not up to its end (alr_window_last_seen).
 *
 * Every change (a bucket put or pruned) is journaled by identity, so the caller can make
 * the same changes durable (alr_window_journal, alr_window_get, alr_window_journal_clear).
 * Not thread-safe: one thread uses a store at a time.
 */
#ifndef ALR_WINDOW_H
#define ALR_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_rollup.h"
#include "tc_sketch.h"

/* Buckets starting further than this beyond `now` are refused: a later start means a
 * skewed clock upstream, and it must not move the watermark into the future. */
#define ALR_WINDOW_FUTURE_MAX_S 120

typedef struct alr_window alr_window_t;

/* A change for the journal: the identity of a bucket put (or deleted). Only service,
 * environment, name, kind, start_s and source_partition of `bucket` are set. */
typedef struct {
    alr_rollup_t bucket;
    bool deleted;
} alr_window_change_t;

/* Aggregates over the buckets of a window. */
typedef struct {
    uint64_t count;
    uint64_t errors;
    double sum;
    double min, max;      /* meaningful when has_minmax */
    bool has_minmax;
    double last;          /* the latest `last` by event time; meaningful when last_time_us */
    int64_t last_time_us;
    size_t buckets;       /* how many buckets contributed */
    size_t open;          /* how many of them were open */
    size_t series;        /* how many series matched */
} alr_window_agg_t;

/* A store that holds at most `max_buckets` buckets (0: no limit). NULL when out of memory. */
alr_window_t *alr_window_new(size_t max_buckets);

/* Frees the store. Safe to call twice and on NULL. */
void alr_window_destroy(alr_window_t **self_p);

/*
 * Puts one bucket (copied, its sketch too). Returns 1 when it was added or replaced an
 * older revision, 0 when it was ignored (its revision is not higher than the one held, or
 * it ends at or before the pruning horizon), TC_EINVAL when it starts more than
 * ALR_WINDOW_FUTURE_MAX_S after `now_us`, TC_EFULL when the store holds max_buckets,
 * TC_ENOMEM. Applied puts are journaled when `journal` is true. The bucket's grew_us is
 * kept when set (a restore); otherwise it becomes `now_us` when the count is above the one
 * held (or the bucket is new with events), and stays as it was when not.
 */
int alr_window_put(alr_window_t *self, const alr_rollup_t *bucket, int64_t now_us,
                   bool journal);

/* Removes every bucket that ends at or before `horizon_s` and refuses such buckets from
 * now on. Deletions are journaled. Returns how many buckets were removed. */
size_t alr_window_prune(alr_window_t *self, int64_t horizon_s);

/* max(end of the newest bucket held or ever put, now_us - max_delay_us), microseconds. */
int64_t alr_window_watermark_us(const alr_window_t *self, int64_t now_us, int64_t max_delay_us);

/* max(end of the newest closed bucket held or ever put, now_us - max_delay_us). */
int64_t alr_window_closed_watermark_us(const alr_window_t *self, int64_t now_us,
                                       int64_t max_delay_us);

/* alr_window_agg flags. */
#define ALR_AGG_CLOSED_ONLY 1u /* open buckets are left out */

/*
 * Aggregates the buckets of `service` whose end lies in (from_us, to_us], summed over
 * source partitions. `kind` 0 matches every kind; `environment` "" every environment;
 * `name` "*" every name (with kind requests: every route). When `sketch` is not NULL the
 * matching buckets' sketches are merged into it (it must be initialised by the caller).
 * `flags`: 0 or ALR_AGG_CLOSED_ONLY. Fills `out`.
 */
void alr_window_agg(const alr_window_t *self, const char *service, const char *environment,
                    const char *name, int kind, int64_t from_us, int64_t to_us, unsigned flags,
                    tc_sketch_t *sketch, alr_window_agg_t *out);

/* When the matching series last had an event, as far as the buckets prove it: for each
 * bucket with events, its end, or earlier the time its count last grew when that is
 * known (an open bucket proves events up to its last growth, not up to its end), capped
 * at `now_us`; the latest of these. 0 when no bucket with events is held. */
int64_t alr_window_last_seen(const alr_window_t *self, const char *service,
                             const char *environment, const char *name, int kind,
                             int64_t now_us);

/* Copies the bucket of that identity into `out` (with its sketch: alr_rollup_fini).
 * Returns 0 or TC_ENOTFOUND / TC_ENOMEM. */
int alr_window_get(const alr_window_t *self, const alr_rollup_t *id, alr_rollup_t *out);

/* Buckets held. */
size_t alr_window_bucket_count(const alr_window_t *self);

/* The journal: changes since the last clear, oldest first. Valid until the next put,
 * prune or clear. */
const alr_window_change_t *alr_window_journal(const alr_window_t *self, size_t *len);

/* Empties the journal (after its changes are durable). */
void alr_window_journal_clear(alr_window_t *self);

#endif
