/*
 * alr_window.h — the alerter's window store: the recent buckets of every series, as read
 * from `tocsin.rollups`, and aggregates over time windows of them. Pure: no I/O; time is
 * passed in.
 *
 * A bucket is identified by (service, environment, name, kind, start_s). The same bucket
 * arrives again with a higher revision whenever it changes (aggregators publish open
 * buckets as they fill); it then replaces the one held. A lower or equal revision is
 * ignored.
 *
 * Windows end at the watermark: max(end of the newest bucket received, now - max_delay).
 * A window of length W covers (watermark - W, watermark]: a bucket belongs to it when its
 * end (start + width) lies in that range. While a bucket is open its end lies ahead of
 * now, so the freshest data counts at once.
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
 * environment, name, kind and start_s of `bucket` are set. */
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
 * TC_ENOMEM. Applied puts are journaled when `journal` is true.
 */
int alr_window_put(alr_window_t *self, const alr_rollup_t *bucket, int64_t now_us,
                   bool journal);

/* Removes every bucket that ends at or before `horizon_s` and refuses such buckets from
 * now on. Deletions are journaled. Returns how many buckets were removed. */
size_t alr_window_prune(alr_window_t *self, int64_t horizon_s);

/* max(end of the newest bucket held or ever put, now_us - max_delay_us), microseconds. */
int64_t alr_window_watermark_us(const alr_window_t *self, int64_t now_us, int64_t max_delay_us);

/*
 * Aggregates the buckets of `service` whose end lies in (from_us, to_us]. `kind` 0 matches
 * every kind; `environment` "" every environment; `name` "*" every name (with kind
 * requests: every route). When `sketch` is not NULL the matching buckets' sketches are
 * merged into it (it must be initialised by the caller). Fills `out`.
 */
void alr_window_agg(const alr_window_t *self, const char *service, const char *environment,
                    const char *name, int kind, int64_t from_us, int64_t to_us,
                    tc_sketch_t *sketch, alr_window_agg_t *out);

/* The end (us) of the newest bucket with at least one event of the matching series,
 * capped at `now_us`; 0 when none is held. */
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
