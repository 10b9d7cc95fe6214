/*
 * ctl_status.h — what `tocsinctl status` says about one daemon, built from its three
 * answers (/health/live, /health/ready, /metrics). Pure: the answers come in, a JSON
 * record and table cells come out.
 *
 * The record:
 *   {"kind":"collector","endpoint":"http://h:7421","up":true,"ready":true,
 *    "status":"healthy","version":"0.1.0","error":null,
 *    "dependencies":{"kafka":{"status":"healthy","response_time_ms":1.2,"detail":"..."}},
 *    "spool_depth":0,"consumer_lag":null,"figures":{"accepted":10000,...}}
 * `up` is /health/live answering 200; `ready` is /health/ready answering 200; `status` is
 * the readiness answer's status (or "unreachable" / "unknown"); `spool_depth` and
 * `consumer_lag` are null when the daemon exports no such metric; `figures` holds the
 * key counters the daemon exports (absent ones are left out).
 */
#ifndef CTL_STATUS_H
#define CTL_STATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "ctl_http.h"
#include "ctl_prom.h"

typedef enum {
    CTL_KIND_COLLECTOR = 0,
    CTL_KIND_AGGREGATOR = 1,
    CTL_KIND_ALERTER = 2,
} ctl_kind_t;

#define CTL_KIND_COUNT 3

/* "collector", "aggregator", "alerter". */
const char *ctl_kind_name(ctl_kind_t kind);

/* Parses a kind name; returns 0 or TC_EINVAL. */
int ctl_kind_parse(const char *s, ctl_kind_t *out);

/* One key figure: a label shown to people and where it comes from. */
typedef struct {
    const char *label;
    const char *metric;
    const char *match; /* "key=value" or NULL */
} ctl_figure_t;

/* The key figures of a kind, ending with a {NULL} entry. */
const ctl_figure_t *ctl_status_figures(ctl_kind_t kind);

/* The metrics that hold a kind's spool depth / consumer lag, in order of preference,
 * ending with NULL; the first one the daemon exports is used (summed over labels). */
const char *const *ctl_status_spool_metrics(ctl_kind_t kind);
const char *const *ctl_status_lag_metrics(ctl_kind_t kind);

/*
 * Builds the record of one daemon from its answers; `metrics` may be NULL when /metrics
 * was not readable. Returns a new reference, or NULL when out of memory.
 */
json_t *ctl_status_record(ctl_kind_t kind, const char *endpoint, const ctl_http_req_t *live,
                          const ctl_http_req_t *ready, const ctl_http_req_t *metrics);

/* The exit code of a set of records: 3 when one is unreachable, else 1 when one is not
 * ready, else 0. */
int ctl_status_exit_code(const json_t *records);

/*
 * Renders the records for people: one table row per daemon (KIND, ENDPOINT, UP, READY,
 * VERSION, SPOOL, LAG, FIGURES), then one line per dependency that is not healthy and
 * per daemon that could not be reached. Returns a string the caller frees, or NULL.
 */
char *ctl_status_render(const json_t *records, size_t width);

/* Formats a count the short way people read it: 950, 12.3k, 4.56M, 7.1G. */
void ctl_fmt_count(double v, char *buf, size_t len);

#endif
