#include "tc_metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

typedef enum { M_COUNTER, M_GAUGE, M_GAUGE_FN, M_HISTOGRAM } metric_type_t;

struct tc_histogram {
    size_t nbounds;
    double *bounds;
    _Atomic uint64_t *counts; /* nbounds + 1, not cumulative */
    tc_gauge_t sum;
};

typedef struct {
    char *name;
    char *labels;
    char *help;
    metric_type_t type;
    union {
        tc_counter_t *counter;
        tc_gauge_t *gauge;
        tc_histogram_t *histogram;
        struct {
            tc_gauge_fn fn;
            void *ctx;
        } fn;
    } u;
} metric_t;

struct tc_metrics {
    pthread_mutex_t lock;
    metric_t *items;
    size_t len, cap;
};

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

void tc_gauge_set(tc_gauge_t *g, double v)
{
    atomic_store_explicit(&g->bits, double_to_bits(v), memory_order_relaxed);
}

void tc_gauge_add(tc_gauge_t *g, double delta)
{
    uint64_t old = atomic_load_explicit(&g->bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&g->bits, &old,
                                                  double_to_bits(bits_to_double(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

double tc_gauge_get(const tc_gauge_t *g)
{
    return bits_to_double(atomic_load_explicit(&g->bits, memory_order_relaxed));
}

void tc_histogram_observe(tc_histogram_t *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && !(v <= h->bounds[i])) { /* NaN is in no bound: +Inf */
        i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    tc_gauge_add(&h->sum, v);
}

tc_metrics_t *tc_metrics_new(void)
{
    tc_metrics_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

static void metric_free(metric_t *m)
{
    free(m->name);
    free(m->labels);
    free(m->help);
    switch (m->type) {
    case M_COUNTER:
        free(m->u.counter);
        break;
    case M_GAUGE:
        free(m->u.gauge);
        break;
    case M_HISTOGRAM:
        if (m->u.histogram) {
            free(m->u.histogram->bounds);
            free((void *)m->u.histogram->counts);
            free(m->u.histogram);
        }
        break;
    case M_GAUGE_FN:
        break;
    }
}

void tc_metrics_destroy(tc_metrics_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tc_metrics_t *self = *self_p;
    for (size_t i = 0; i < self->len; i++) {
        metric_free(&self->items[i]);
    }
    free(self->items);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

static int name_valid(const char *name)
{
    if (!name || !*name) {
        return 0;
    }
    for (const char *p = name; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                 (p != name && c >= '0' && c <= '9');
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* Appends a metric entry; `payload` becomes owned by the registry on success. */
static int add_metric(tc_metrics_t *self, const char *name, const char *labels,
                      const char *help, metric_type_t type, void *payload, tc_gauge_fn fn,
                      void *ctx)
{
    if (!name_valid(name)) {
        return TC_EINVAL;
    }
    int rc = TC_ENOMEM;
    pthread_mutex_lock(&self->lock);
    /* One TYPE per name and one series per name and labels: anything else renders an
     * exposition that Prometheus refuses to scrape. */
    const char *lb = labels && *labels ? labels : "";
    for (size_t i = 0; i < self->len; i++) {
        const metric_t *o = &self->items[i];
        if (strcmp(o->name, name) != 0) {
            continue;
        }
        bool o_gauge = o->type == M_GAUGE || o->type == M_GAUGE_FN;
        bool n_gauge = type == M_GAUGE || type == M_GAUGE_FN;
        if ((o->type != type && !(o_gauge && n_gauge)) ||
            strcmp(o->labels ? o->labels : "", lb) == 0) {
            rc = TC_EINVAL;
            goto out;
        }
    }
    if (self->len == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 32;
        metric_t *items = realloc(self->items, cap * sizeof(*items));
        if (!items) {
            goto out;
        }
        self->items = items;
        self->cap = cap;
    }
    metric_t *m = &self->items[self->len];
    memset(m, 0, sizeof(*m));
    m->name = strdup(name);
    m->labels = labels && *labels ? strdup(labels) : NULL;
    m->help = strdup(help ? help : "");
    if (!m->name || !m->help || (labels && *labels && !m->labels)) {
        free(m->name);
        free(m->labels);
        free(m->help);
        goto out;
    }
    m->type = type;
    switch (type) {
    case M_COUNTER:
        m->u.counter = payload;
        break;
    case M_GAUGE:
        m->u.gauge = payload;
        break;
    case M_HISTOGRAM:
        m->u.histogram = payload;
        break;
    case M_GAUGE_FN:
        m->u.fn.fn = fn;
        m->u.fn.ctx = ctx;
        break;
    }
    self->len++;
    rc = 0;
out:
    pthread_mutex_unlock(&self->lock);
    return rc;
}

tc_counter_t *tc_metrics_counter(tc_metrics_t *self, const char *name, const char *labels,
                                 const char *help)
{
    tc_counter_t *c = calloc(1, sizeof(*c));
    if (!c || add_metric(self, name, labels, help, M_COUNTER, c, NULL, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

tc_gauge_t *tc_metrics_gauge(tc_metrics_t *self, const char *name, const char *labels,
                             const char *help)
{
    tc_gauge_t *g = calloc(1, sizeof(*g));
    if (!g || add_metric(self, name, labels, help, M_GAUGE, g, NULL, NULL) != 0) {
        free(g);
        return NULL;
    }
    return g;
}

int tc_metrics_gauge_fn(tc_metrics_t *self, const char *name, const char *labels,
                        const char *help, tc_gauge_fn fn, void *ctx)
{
    if (!fn) {
        return TC_EINVAL;
    }
    return add_metric(self, name, labels, help, M_GAUGE_FN, NULL, fn, ctx);
}

tc_histogram_t *tc_metrics_histogram(tc_metrics_t *self, const char *name, const char *labels,
                                     const char *help, const double *bounds, size_t nbounds)
{
    for (size_t i = 0; i < nbounds; i++) {
        /* The +Inf bucket is implied: an explicit infinite or NaN bound is refused. */
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
            return NULL;
        }
    }
    tc_histogram_t *h = calloc(1, sizeof(*h));
    if (!h) {
        return NULL;
    }
    h->nbounds = nbounds;
    h->bounds = malloc((nbounds ? nbounds : 1) * sizeof(double));
    h->counts = calloc(nbounds + 1, sizeof(*h->counts));
    if (!h->bounds || !h->counts) {
        goto fail;
    }
    if (nbounds) {
        memcpy(h->bounds, bounds, nbounds * sizeof(double));
    }
    if (add_metric(self, name, labels, help, M_HISTOGRAM, h, NULL, NULL) != 0) {
        goto fail;
    }
    return h;
fail:
    free(h->bounds);
    free((void *)h->counts);
    free(h);
    return NULL;
}

/* A growable string for rendering. */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} strbuf_t;

static void sb_printf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf_t *sb, const char *fmt, ...)
{
    if (sb->failed) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->failed = 1;
            return;
        }
        if ((size_t)n < sb->cap - sb->len) {
            sb->len += (size_t)n;
            return;
        }
        size_t cap = (sb->cap + (size_t)n + 1) * 2;
        char *buf = realloc(sb->buf, cap);
        if (!buf) {
            sb->failed = 1;
            return;
        }
        sb->buf = buf;
        sb->cap = cap;
    }
}

/*
 * Formats a finite double in the shortest %g form that reads back as the same value, so
 * 0.1 is "0.1" rather than %.17g's "0.10000000000000001": bucket bounds are matched as
 * label text (le="0.1") by queries and recording rules.
 */
static void format_double(double v, char buf[32])
{
    /* Whole numbers below 1e15 print as integers; the range check comes first because
     * converting a double outside int64_t's range is undefined. */
    if (fabs(v) < 1e15 && v == (double)(int64_t)v) {
        snprintf(buf, 32, "%lld", (long long)v);
        return;
    }
    for (int prec = 15; prec < 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) {
            return;
        }
    }
    snprintf(buf, 32, "%.17g", v);
}

static void sb_value(strbuf_t *sb, double v)
{
    if (isnan(v)) {
        sb_printf(sb, "NaN");
    } else if (isinf(v)) {
        sb_printf(sb, v > 0 ? "+Inf" : "-Inf");
    } else {
        char buf[32];
        format_double(v, buf);
        sb_printf(sb, "%s", buf);
    }
}

/* HELP text escapes backslash and newline; a raw newline would end the line. */
static void sb_help(strbuf_t *sb, const char *help)
{
    for (const char *p = help; *p; p++) {
        if (*p == '\\') {
            sb_printf(sb, "\\\\");
        } else if (*p == '\n') {
            sb_printf(sb, "\\n");
        } else {
            sb_printf(sb, "%c", *p);
        }
    }
}

static void render_labels(strbuf_t *sb, const char *labels, const char *extra)
{
    if (!labels && !extra) {
        return;
    }
    sb_printf(sb, "{%s%s%s}", labels ? labels : "", labels && extra ? "," : "",
              extra ? extra : "");
}

static const char *type_text(metric_type_t t)
{
    switch (t) {
    case M_COUNTER:
        return "counter";
    case M_HISTOGRAM:
        return "histogram";
    default:
        return "gauge";
    }
}

static void render_one(strbuf_t *sb, const metric_t *m)
{
    switch (m->type) {
    case M_COUNTER:
        sb_printf(sb, "%s", m->name);
        render_labels(sb, m->labels, NULL);
        sb_printf(sb, " %llu\n", (unsigned long long)tc_counter_get(m->u.counter));
        break;
    case M_GAUGE:
    case M_GAUGE_FN:
        sb_printf(sb, "%s", m->name);
        render_labels(sb, m->labels, NULL);
        sb_printf(sb, " ");
        sb_value(sb, m->type == M_GAUGE ? tc_gauge_get(m->u.gauge) : m->u.fn.fn(m->u.fn.ctx));
        sb_printf(sb, "\n");
        break;
    case M_HISTOGRAM: {
        const tc_histogram_t *h = m->u.histogram;
        uint64_t cum = 0;
        for (size_t i = 0; i <= h->nbounds; i++) {
            cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
            char le[64];
            if (i < h->nbounds) {
                char b[32];
                format_double(h->bounds[i], b);
                snprintf(le, sizeof(le), "le=\"%s\"", b);
            } else {
                snprintf(le, sizeof(le), "le=\"+Inf\"");
            }
            sb_printf(sb, "%s_bucket", m->name);
            render_labels(sb, m->labels, le);
            sb_printf(sb, " %llu\n", (unsigned long long)cum);
        }
        sb_printf(sb, "%s_sum", m->name);
        render_labels(sb, m->labels, NULL);
        sb_printf(sb, " ");
        sb_value(sb, tc_gauge_get(&h->sum));
        /* _count is the +Inf bucket as read above: reading h->count separately could
         * disagree with it while observations arrive. */
        sb_printf(sb, "\n%s_count", m->name);
        render_labels(sb, m->labels, NULL);
        sb_printf(sb, " %llu\n", (unsigned long long)cum);
        break;
    }
    }
}

char *tc_metrics_render(tc_metrics_t *self)
{
    strbuf_t sb = {0};
    sb.cap = 4096;
    sb.buf = malloc(sb.cap);
    if (!sb.buf) {
        return NULL;
    }
    sb.buf[0] = '\0';
    pthread_mutex_lock(&self->lock);
    /* Group every label set of a name under one HELP/TYPE header, in registration order. */
    char *done = calloc(self->len ? self->len : 1, 1);
    if (!done) {
        sb.failed = 1;
    }
    for (size_t i = 0; !sb.failed && i < self->len; i++) {
        if (done[i]) {
            continue;
        }
        const metric_t *m = &self->items[i];
        sb_printf(&sb, "# HELP %s ", m->name);
        sb_help(&sb, m->help);
        sb_printf(&sb, "\n# TYPE %s %s\n", m->name, type_text(m->type));
        for (size_t j = i; j < self->len; j++) {
            if (!done[j] && strcmp(self->items[j].name, m->name) == 0) {
                render_one(&sb, &self->items[j]);
                done[j] = 1;
            }
        }
    }
    pthread_mutex_unlock(&self->lock);
    free(done);
    if (sb.failed) {
        free(sb.buf);
        return NULL;
    }
    return sb.buf;
}
