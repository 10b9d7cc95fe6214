/*
 * ctl_view.h — how tocsinctl shows the daemons' answers to people, and the times it reads
 * from its command line. Pure: JSON (as the APIs documented in docs/aggregator.md and
 * docs/alerter.md answer it) and a `now` in, text out. Every renderer returns a string the
 * caller frees, or NULL when out of memory; fields missing from an answer show as "-".
 */
#ifndef CTL_VIEW_H
#define CTL_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- times ---- */

/* Parses RFC 3339 ("2026-01-02T03:04:05.678Z", "...+02:00"; 'T' or ' ') into microseconds
 * since the epoch. Returns 0 or TC_EINVAL. */
int ctl_rfc3339_parse(const char *s, int64_t *out_us);

/*
 * Parses a point in time from the command line: "now", Unix seconds ("1795000000",
 * fractions allowed), RFC 3339, or a duration meaning that long before `now_us` ("15m",
 * "2h", "1d"). Returns 0 or TC_EINVAL.
 */
int ctl_time_parse(const char *s, int64_t now_us, int64_t *out_us);

/* "5m ago", "in 12m", "just now": the distance from `now_us` to `t_us`, rounded to the
 * largest unit (s, m, h, d). */
void ctl_time_ago(int64_t t_us, int64_t now_us, char *buf, size_t len);

/* A duration for people: "0s", "250ms", "30s", "5m0.5s", "1h30m", "2d3h". */
void ctl_fmt_duration(int64_t ms, char *buf, size_t len);

/* A JSON time (RFC 3339 string) as "03:04:05 (5m ago)" when it is today (UTC) and
 * "2026-01-02 03:04 (3d ago)" otherwise; "-" for null or unreadable. */
void ctl_fmt_when(const json_t *t, int64_t now_us, char *buf, size_t len);

/* ---- the aggregator ---- */

/* GET /api/v1/query: one row with count, errors, error rate, rate and each quantile. */
char *ctl_view_query(const json_t *doc, size_t width);

/* GET /api/v1/range: one row per step (the answer's "points"). */
char *ctl_view_range(const json_t *doc, size_t width);

/* One service's figures for `top`. NaN where there is no value. */
typedef struct {
    char service[256];
    double requests;
    double rate_per_s;
    double errors;     /* failed requests */
    double error_rate; /* errors / requests */
    double p95_ms;
    double error_events; /* ErrorEvents ($errors) */
} ctl_top_row_t;

typedef enum {
    CTL_TOP_REQUESTS = 0,
    CTL_TOP_ERRORS = 1, /* failed requests plus error events */
    CTL_TOP_ERROR_RATE = 2,
    CTL_TOP_P95 = 3,
} ctl_top_by_t;

/* Parses "requests", "errors", "error_rate", "p95". Returns 0 or TC_EINVAL. */
int ctl_top_by_parse(const char *s, ctl_top_by_t *out);

/* Sorts rows, largest first by `by` (NaN last; ties by service name). */
void ctl_top_sort(ctl_top_row_t *rows, size_t n, ctl_top_by_t by);

/* The rows as a table, at most `limit` of them (0: all), in the order given. */
char *ctl_view_top(const ctl_top_row_t *rows, size_t n, size_t limit, size_t width);

/* The rows as JSON: [{"service":..., "requests":..., ...}] (NaN as null). */
json_t *ctl_top_json(const ctl_top_row_t *rows, size_t n, size_t limit);

/* GET /api/v1/issues: a row per issue. */
char *ctl_view_issues(const json_t *doc, int64_t now_us, size_t width);

/* GET /api/v1/issues/{id}: the issue's fields, then its sample event's frames. */
char *ctl_view_issue(const json_t *doc, int64_t now_us, size_t width);

/* GET /api/v1/logs: one line per record, "TIME LEVEL [logger] message k=v ...". */
char *ctl_view_logs(const json_t *doc);

/* ---- the alerter ---- */

/* GET /api/v1/alerts; without `all`, inactive alerts are left out. */
char *ctl_view_alerts(const json_t *doc, bool all, int64_t now_us, size_t width);

/* An alert's next action as one phrase: "escalate to tier 1 (pager) in 12m". */
void ctl_fmt_next_action(const json_t *next, int64_t now_us, char *buf, size_t len);

/* GET /api/v1/silences. */
char *ctl_view_silences(const json_t *doc, int64_t now_us, size_t width);

/* GET /api/v1/notifications. */
char *ctl_view_notifications(const json_t *doc, int64_t now_us, size_t width);

#endif
