/*
 * ctl_prom.h — reads the Prometheus text exposition format (0.0.4), as every Tocsin daemon
 * serves it at /metrics, into samples that tocsinctl can sum and look up.
 *
 * Pure: text in, samples out; no I/O. The text comes from the network, so everything is
 * bounded: at most CTL_PROM_MAX_SAMPLES samples, names and label values of at most
 * CTL_PROM_MAX_NAME / CTL_PROM_MAX_VALUE bytes, CTL_PROM_MAX_LABELS labels per sample.
 * A line that does not parse is skipped and counted (ctl_prom_bad_lines), so one odd line
 * does not hide the rest of a daemon's figures.
 */
#ifndef CTL_PROM_H
#define CTL_PROM_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_PROM_MAX_SAMPLES 100000
#define CTL_PROM_MAX_NAME 200
#define CTL_PROM_MAX_VALUE 1024
#define CTL_PROM_MAX_LABELS 32

typedef struct {
    char *key;
    char *value; /* unescaped (\\, \" and \n) */
} ctl_prom_label_t;

typedef struct {
    char *name;
    ctl_prom_label_t *labels;
    size_t nlabels;
    double value; /* +Inf, -Inf and NaN as C's INFINITY and NAN */
} ctl_prom_sample_t;

typedef struct ctl_prom ctl_prom_t;

/*
 * Parses `len` bytes of exposition text (need not be NUL-terminated). Comment lines
 * (# HELP, # TYPE, anything starting with #) and blank lines are skipped; so are lines
 * that do not parse, which are counted. Samples beyond CTL_PROM_MAX_SAMPLES are dropped
 * and counted as bad lines too. Returns a set the caller frees with ctl_prom_destroy, or
 * NULL when out of memory.
 */
ctl_prom_t *ctl_prom_parse(const char *text, size_t len);

/* Frees the set. Safe to call twice and on NULL. */
void ctl_prom_destroy(ctl_prom_t **self_p);

size_t ctl_prom_count(const ctl_prom_t *self);
const ctl_prom_sample_t *ctl_prom_sample(const ctl_prom_t *self, size_t i);

/* Lines skipped because they did not parse or were beyond the sample limit. */
size_t ctl_prom_bad_lines(const ctl_prom_t *self);

/* The value of label `key` of a sample, or NULL when it has none. */
const char *ctl_prom_label(const ctl_prom_sample_t *sample, const char *key);

/*
 * Sums every sample named `name` whose labels include `match` (a "key=value" pair, or NULL
 * for all of them). Returns true and the sum in *out when at least one sample matched,
 * false (and *out untouched) when the daemon exports no such sample.
 */
bool ctl_prom_sum(const ctl_prom_t *self, const char *name, const char *match, double *out);

/* True when the set holds a sample named `name`. */
bool ctl_prom_has(const ctl_prom_t *self, const char *name);

#endif
