/*
 * tc_metrics.h — counters, gauges and histograms rendered in the Prometheus text format.
 *
 * A daemon creates one registry, registers its metrics at start and keeps the returned
 * pointers; updating a metric is a single atomic operation, safe from any thread.
 * Registration takes the registry's lock and may allocate; do it at start, not per event.
 * Metrics live as long as the registry; tc_metrics_destroy frees them all.
 */
#ifndef TC_METRICS_H
#define TC_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tc_metrics tc_metrics_t;

typedef struct {
    _Atomic uint64_t value;
} tc_counter_t;

typedef struct {
    _Atomic uint64_t bits; /* the double's bit pattern */
} tc_gauge_t;

typedef struct tc_histogram tc_histogram_t;

/* Computes a gauge's value when /metrics is scraped; runs on the HTTP thread. */
typedef double (*tc_gauge_fn)(void *ctx);

tc_metrics_t *tc_metrics_new(void);
void tc_metrics_destroy(tc_metrics_t **self_p);

/*
 * Registers a metric. `name` follows Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*), counters
 * end in _total. `labels` is NULL or the text inside the braces, e.g. `reason="too_big"`;
 * the same name may be registered with several label sets and shares one HELP line.
 * Returns NULL when out of memory, the name is invalid, or the name is already registered
 * with another type (gauges and gauge functions count as one type) or the same labels.
 */
tc_counter_t *tc_metrics_counter(tc_metrics_t *self, const char *name, const char *labels,
                                 const char *help);
tc_gauge_t *tc_metrics_gauge(tc_metrics_t *self, const char *name, const char *labels,
                             const char *help);
/* Returns 0, TC_EINVAL or TC_ENOMEM. */
int tc_metrics_gauge_fn(tc_metrics_t *self, const char *name, const char *labels,
                        const char *help, tc_gauge_fn fn, void *ctx);
/* `bounds` are the finite upper bounds of the buckets in strictly increasing order (the
 * +Inf bucket is implied); they are copied. NULL for bounds that break these rules. */
tc_histogram_t *tc_metrics_histogram(tc_metrics_t *self, const char *name, const char *labels,
                                     const char *help, const double *bounds, size_t nbounds);

static inline void tc_counter_add(tc_counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

static inline void tc_counter_inc(tc_counter_t *c)
{
    atomic_fetch_add_explicit(&c->value, 1, memory_order_relaxed);
}

static inline uint64_t tc_counter_get(const tc_counter_t *c)
{
    return atomic_load_explicit(&c->value, memory_order_relaxed);
}

void tc_gauge_set(tc_gauge_t *g, double v);
void tc_gauge_add(tc_gauge_t *g, double delta);
double tc_gauge_get(const tc_gauge_t *g);

void tc_histogram_observe(tc_histogram_t *h, double v);

/* Renders every metric in the Prometheus text exposition format (version 0.0.4).
 * Returns a string the caller frees, or NULL when out of memory. */
char *tc_metrics_render(tc_metrics_t *self);

#endif
