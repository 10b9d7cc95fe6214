/*
 * agg_query.h — the query API's arithmetic: checking the parameters of GET /api/v1/query
 * and /api/v1/range, choosing the buckets of a window, merging them and answering JSON
 * (docs/aggregator.md "Query API"); and the JSON of issues and log records.
 *
 * A pure module: the caller passes the wall clock in, fetches the buckets (agg_store) and
 * feeds them to agg_query_add.
 */
#ifndef AGG_QUERY_H
#define AGG_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_bucket.h"
#include "agg_issue.h"
#include "agg_log.h"

#define AGG_QUERY_MAX_Q 16
#define AGG_QUERY_MAX_WINDOW_S (31 * 86400)
#define AGG_QUERY_MAX_POINTS 11000
#define AGG_QUERY_ALL "*"

/* The query's parameters once checked. Strings are borrowed from the caller. */
typedef struct {
    const char *service;
    const char *name;        /* a series name, or "*" for every request series */
    const char *environment; /* NULL: every environment */
    const char *window;      /* as given, e.g. "5m" (query) */
    int64_t window_s;        /* the window rounded up to whole buckets */
    int64_t from_s;          /* first bucket start merged (inclusive) */
    int64_t to_s;            /* end of the last bucket merged (exclusive) */
    int64_t step_s;          /* range: seconds per point (a multiple of 10); query: window_s */
    size_t npoints;          /* range: (to_s - from_s) / step_s; query: 1 */
    size_t nq;
    double q[AGG_QUERY_MAX_Q];
    char qkey[AGG_QUERY_MAX_Q][24]; /* JSON key of each quantile, e.g. "0.95" */
} agg_query_params_t;

/*
 * Checks the query-string values of /api/v1/query (any may be NULL when absent) and fills
 * `p`: service (required, UTF-8, at most AGG_MAX_SERVICE bytes), name (required, at most
 * AGG_MAX_NAME), window (required; a duration above 0 and at most 31 d, rounded up to a
 * multiple of 10 s), environment (optional; empty means every environment), q (optional
 * comma-separated quantiles in [0, 1], at most AGG_QUERY_MAX_Q; default 0.5,0.95,0.99). The
 * window ends with the bucket that holds `now_us` (the current, still open bucket is
 * included). Returns 0, or TC_EINVAL with *bad_param naming the parameter and `err` why.
 */
int agg_query_params_parse(agg_query_params_t *p, const char *service, const char *name,
                           const char *window, const char *environment, const char *q,
                           int64_t now_us, const char **bad_param, char *err, size_t errlen);

/*
 * The same for /api/v1/range: from and to (required) are Unix seconds, or "now", or a
 * duration meaning that long before now ("1h"); step (required) a duration, a multiple of
 * 10 s. from is rounded down and to up to whole steps from `from`; at most
 * AGG_QUERY_MAX_POINTS points and 31 d. Returns 0 or TC_EINVAL as above.
 */
int agg_range_params_parse(agg_query_params_t *p, const char *service, const char *name,
                           const char *from, const char *to, const char *step,
                           const char *environment, const char *q, int64_t now_us,
                           const char **bad_param, char *err, size_t errlen);

/* Parses a point in time as range's from/to do, into microseconds. Returns 0 or TC_EINVAL. */
int agg_time_parse(const char *s, int64_t now_us, int64_t *out_us);

/* True when a bucket of `kind` belongs in the answer to a query for `name`: any kind for a
 * named series, request series only for "*". */
bool agg_query_wants(const agg_query_params_t *p, agg_kind_t kind);

/* The merge of a window's buckets. */
typedef struct {
    agg_bucket_t total; /* the merged bucket; kind NONE while nothing was added */
    size_t buckets;     /* how many buckets were merged */
    uint64_t skipped;   /* buckets left out because their kind disagreed with the others */
} agg_query_acc_t;

void agg_query_acc_init(agg_query_acc_t *acc);
void agg_query_acc_fini(agg_query_acc_t *acc);

/* Merges one bucket. A bucket whose kind differs from what was merged so far is counted
 * in `skipped` and left out. Returns 0 or TC_ENOMEM. */
int agg_query_add(agg_query_acc_t *acc, const agg_bucket_t *b);

/* Merges one bucket in its stored form (agg_bucket_store_merge), without decoding it first.
 * Returns 0 (a bucket of another kind is counted in `skipped`), TC_ENOMEM, or the decoder's
 * error for a corrupt value (the accumulator is then unchanged). */
int agg_query_add_stored(agg_query_acc_t *acc, const uint8_t *data, size_t len);

/*
 * The answer to /api/v1/query: service, name, environment (null for all), window,
 * window_s, from, to, kind (null when no data), count, errors, error_rate, rate_per_s
 * (count / window_s), users (estimated distinct user ids; request and error series), late,
 * sampled (true when sampled events are part of the figures, which are then estimates),
 * sampled_events and sampled_count (sampled events received, and the events they stand for
 * in count: count is exact when sampled_events is 0), buckets, quantiles (one key per
 * requested quantile; null without sketch data;
 * milliseconds for request series, the metric's own unit for timings), slow (request
 * series: {"100ms": n, ...} requests slower than each SLO threshold), and for metric
 * series: sum (counters, timings), min and max (gauges, timings), last (gauges).
 * Returns a new reference, or NULL when out of memory.
 */
json_t *agg_query_json(const agg_query_params_t *p, const agg_query_acc_t *acc);

/* The answer to /api/v1/range: the parameters and "points", one object per step with t
 * (the step's start) and the figures of agg_query_json for that step. */
json_t *agg_range_json(const agg_query_params_t *p, const agg_query_acc_t *accs);

/* An issue as JSON (with its status); `detail` adds the sample event with its frames. */
json_t *agg_issue_json(const agg_issue_t *is, const agg_issue_status_t *st, bool detail);

/* A log record as JSON. */
json_t *agg_log_json(int64_t time_us, const agg_log_t *l);

#endif
