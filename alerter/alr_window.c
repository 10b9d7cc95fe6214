#include "alr_window.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

/*
 * Layout: a sorted array of services; each service a sorted array of its series (by kind,
 * environment, name); each series a sorted array of its buckets (by start, then source
 * partition). Lookups are binary searches, and a rule's sum only visits the series of its
 * own service.
 */

typedef struct {
    int64_t start_s;
    uint32_t partition;
    uint32_t width_s;
    bool open;
    int64_t grew_us; /* when the count last grew, alerter clock; 0: not known */
    uint64_t revision;
    uint64_t count;
    uint64_t errors;
    double sum, min, max, last;
    int64_t last_time_us;
    tc_sketch_t *sketch; /* NULL when the bucket has none */
} bucket_t;

typedef struct {
    int kind;
    char *environment;
    char *name;
    bucket_t *b;
    size_t n, cap;
    uint32_t max_width; /* widest bucket ever put: bounds the search for a window's start */
} series_t;

typedef struct {
    char *service;
    series_t **series;
    size_t n, cap;
} service_t;

struct alr_window {
    service_t **services;
    size_t n, cap;
    size_t nbuckets;
    size_t max_buckets;
    int64_t newest_end_s;
    int64_t newest_closed_end_s;
    int64_t horizon_s;
    bool has_horizon;
    alr_window_change_t *journal;
    size_t jlen, jcap;
};

alr_window_t *alr_window_new(size_t max_buckets)
{
    alr_window_t *self = calloc(1, sizeof(*self));
    if (self) {
        self->max_buckets = max_buckets;
    }
    return self;
}

static void bucket_free(bucket_t *b)
{
    if (b->sketch) {
        tc_sketch_fini(b->sketch);
        free(b->sketch);
        b->sketch = NULL;
    }
}

static void series_free(series_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        bucket_free(&s->b[i]);
    }
    free(s->environment);
    free(s->name);
    free(s->b);
    free(s);
}

static void service_free(service_t *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        series_free(sv->series[i]);
    }
    free(sv->series);
    free(sv->service);
    free(sv);
}

void alr_window_destroy(alr_window_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_window_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        service_free(self->services[i]);
    }
    free(self->services);
    free(self->journal);
    free(self);
    *self_p = NULL;
}

/* Grows an array of `size`-byte items to hold one more. */
static int grow(void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return 0;
    }
    size_t next = *cap ? *cap * 2 : 4;
    void *p = realloc(*items, next * size);
    if (!p) {
        return TC_ENOMEM;
    }
    *items = p;
    *cap = next;
    return 0;
}

/* Binary search in the services: index of `service`, or where it would go (*found false). */
static size_t find_service(const alr_window_t *self, const char *service, bool *found)
{
    size_t lo = 0, hi = self->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(self->services[mid]->service, service);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

static int series_cmp(const series_t *s, int kind, const char *env, const char *name)
{
    if (s->kind != kind) {
        return s->kind < kind ? -1 : 1;
    }
    int c = strcmp(s->environment, env);
    return c != 0 ? c : strcmp(s->name, name);
}

static size_t find_series(const service_t *sv, int kind, const char *env, const char *name,
                          bool *found)
{
    size_t lo = 0, hi = sv->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = series_cmp(sv->series[mid], kind, env, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

static int bucket_cmp(const bucket_t *b, int64_t start_s, uint32_t partition)
{
    if (b->start_s != start_s) {
        return b->start_s < start_s ? -1 : 1;
    }
    return b->partition < partition ? -1 : (b->partition > partition);
}

static size_t find_bucket(const series_t *s, int64_t start_s, uint32_t partition, bool *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = bucket_cmp(&s->b[mid], start_s, partition);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

static int journal_add(alr_window_t *self, const char *service, const series_t *s,
                       int64_t start_s, uint32_t partition, bool deleted)
{
    if (grow((void **)&self->journal, &self->jcap, self->jlen, sizeof(*self->journal)) != 0) {
        return TC_ENOMEM;
    }
    alr_window_change_t *c = &self->journal[self->jlen++];
    memset(c, 0, sizeof(*c));
    /* The strings were bounded when the bucket was decoded, so they fit. */
    strcpy(c->bucket.service, service);
    strcpy(c->bucket.environment, s->environment);
    strcpy(c->bucket.name, s->name);
    c->bucket.kind = s->kind;
    c->bucket.start_s = start_s;
    c->bucket.source_partition = partition;
    c->deleted = deleted;
    return 0;
}

static service_t *service_get(alr_window_t *self, const char *service)
{
    bool found;
    size_t i = find_service(self, service, &found);
    if (found) {
        return self->services[i];
    }
    if (grow((void **)&self->services, &self->cap, self->n, sizeof(*self->services)) != 0) {
        return NULL;
    }
    service_t *sv = calloc(1, sizeof(*sv));
    if (!sv || !(sv->service = strdup(service))) {
        free(sv);
        return NULL;
    }
    memmove(&self->services[i + 1], &self->services[i], (self->n - i) * sizeof(*self->services));
    self->services[i] = sv;
    self->n++;
    return sv;
}

static series_t *series_get(service_t *sv, int kind, const char *env, const char *name)
{
    bool found;
    size_t i = find_series(sv, kind, env, name, &found);
    if (found) {
        return sv->series[i];
    }
    if (grow((void **)&sv->series, &sv->cap, sv->n, sizeof(*sv->series)) != 0) {
        return NULL;
    }
    series_t *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->kind = kind;
    s->environment = strdup(env);
    s->name = strdup(name);
    if (!s->environment || !s->name) {
        series_free(s);
        return NULL;
    }
    memmove(&sv->series[i + 1], &sv->series[i], (sv->n - i) * sizeof(*sv->series));
    sv->series[i] = s;
    sv->n++;
    return s;
}

/* Fills a bucket from a decoded rollup, copying the sketch. */
static int bucket_from(bucket_t *b, const alr_rollup_t *r)
{
    memset(b, 0, sizeof(*b));
    b->start_s = r->start_s;
    b->partition = r->source_partition;
    b->width_s = r->width_s;
    b->open = r->open;
    b->grew_us = r->grew_us;
    b->revision = r->revision;
    b->count = r->count;
    b->errors = r->errors;
    b->sum = r->sum;
    b->min = r->min;
    b->max = r->max;
    b->last = r->last;
    b->last_time_us = r->last_time_us;
    if (r->has_sketch && r->sketch.count > 0) {
        b->sketch = malloc(sizeof(*b->sketch));
        if (!b->sketch) {
            return TC_ENOMEM;
        }
        tc_sketch_init(b->sketch, r->sketch.schema);
        if (tc_sketch_merge(b->sketch, &r->sketch) != 0) {
            bucket_free(b);
            return TC_ENOMEM;
        }
    }
    return 0;
}

int alr_window_put(alr_window_t *self, const alr_rollup_t *r, int64_t now_us, bool journal)
{
    assert(self && r);
    int64_t end_s = r->start_s + (int64_t)r->width_s;
    if (r->start_s > now_us / 1000000 + ALR_WINDOW_FUTURE_MAX_S) {
        return TC_EINVAL;
    }
    if (self->has_horizon && end_s <= self->horizon_s) {
        return 0;
    }
    service_t *sv = service_get(self, r->service);
    if (!sv) {
        return TC_ENOMEM;
    }
    series_t *s = series_get(sv, r->kind, r->environment, r->name);
    if (!s) {
        return TC_ENOMEM; /* an empty service left behind is removed by the next prune */
    }
    bool found;
    size_t i = find_bucket(s, r->start_s, r->source_partition, &found);
    if (found && r->revision <= s->b[i].revision) {
        return 0;
    }
    if (!found && self->max_buckets && self->nbuckets >= self->max_buckets) {
        return TC_EFULL;
    }
    if (!found && grow((void **)&s->b, &s->cap, s->n, sizeof(*s->b)) != 0) {
        return TC_ENOMEM;
    }
    if (journal && journal_add(self, sv->service, s, r->start_s, r->source_partition, false) != 0) {
        return TC_ENOMEM;
    }
    bucket_t nb;
    if (bucket_from(&nb, r) != 0) {
        if (journal) {
            self->jlen--;
        }
        return TC_ENOMEM;
    }
    if (!r->grew_us) {
        /* Growth is seen here: a revision that only closed the bucket (or changed sums)
         * proves no new event. */
        bool grew = found ? r->count > s->b[i].count : r->count > 0;
        nb.grew_us = grew ? now_us : (found ? s->b[i].grew_us : 0);
    }
    if (found) {
        bucket_free(&s->b[i]);
        s->b[i] = nb;
    } else {
        memmove(&s->b[i + 1], &s->b[i], (s->n - i) * sizeof(*s->b));
        s->b[i] = nb;
        s->n++;
        self->nbuckets++;
    }
    if (r->width_s > s->max_width) {
        s->max_width = r->width_s;
    }
    if (end_s > self->newest_end_s) {
        self->newest_end_s = end_s;
    }
    if (!r->open && end_s > self->newest_closed_end_s) {
        self->newest_closed_end_s = end_s;
    }
    return 1;
}

size_t alr_window_prune(alr_window_t *self, int64_t horizon_s)
{
    assert(self);
    if (!self->has_horizon || horizon_s > self->horizon_s) {
        self->horizon_s = horizon_s;
        self->has_horizon = true;
    }
    size_t removed = 0;
    size_t keep_sv = 0;
    for (size_t i = 0; i < self->n; i++) {
        service_t *sv = self->services[i];
        size_t keep_s = 0;
        for (size_t j = 0; j < sv->n; j++) {
            series_t *s = sv->series[j];
            /* Buckets are sorted by start; with equal widths the old ones come first, but
             * widths may differ, so every bucket is checked. */
            size_t keep_b = 0;
            for (size_t k = 0; k < s->n; k++) {
                if (s->b[k].start_s + (int64_t)s->b[k].width_s <= horizon_s) {
                    /* A journal entry that cannot be allocated is a deletion lost for the
                     * durable copy; the restore prunes it again by the same horizon. */
                    (void)journal_add(self, sv->service, s, s->b[k].start_s,
                                      s->b[k].partition, true);
                    bucket_free(&s->b[k]);
                    removed++;
                } else {
                    s->b[keep_b++] = s->b[k];
                }
            }
            s->n = keep_b;
            if (s->n == 0) {
                series_free(s);
            } else {
                sv->series[keep_s++] = s;
            }
        }
        sv->n = keep_s;
        if (sv->n == 0) {
            service_free(sv);
        } else {
            self->services[keep_sv++] = sv;
        }
    }
    self->n = keep_sv;
    self->nbuckets -= removed;
    return removed;
}

int64_t alr_window_watermark_us(const alr_window_t *self, int64_t now_us, int64_t max_delay_us)
{
    int64_t newest = self->newest_end_s * 1000000;
    int64_t floor = now_us - max_delay_us;
    return newest > floor ? newest : floor;
}

int64_t alr_window_closed_watermark_us(const alr_window_t *self, int64_t now_us,
                                       int64_t max_delay_us)
{
    int64_t newest = self->newest_closed_end_s * 1000000;
    int64_t floor = now_us - max_delay_us;
    return newest > floor ? newest : floor;
}

static bool series_matches(const series_t *s, int kind, const char *environment,
                           const char *name)
{
    if (kind != 0 && s->kind != kind) {
        return false;
    }
    if (environment[0] != '\0' && strcmp(s->environment, environment) != 0) {
        return false;
    }
    return strcmp(name, "*") == 0 || strcmp(s->name, name) == 0;
}

void alr_window_agg(const alr_window_t *self, const char *service, const char *environment,
                    const char *name, int kind, int64_t from_us, int64_t to_us, unsigned flags,
                    tc_sketch_t *sketch, alr_window_agg_t *out)
{
    memset(out, 0, sizeof(*out));
    bool found;
    size_t i = find_service(self, service, &found);
    if (!found) {
        return;
    }
    const service_t *sv = self->services[i];
    for (size_t j = 0; j < sv->n; j++) {
        const series_t *s = sv->series[j];
        if (!series_matches(s, kind, environment, name)) {
            continue;
        }
        bool matched = false;
        /* Buckets are sorted by start: skip to the first that can end inside the window. */
        size_t k;
        int64_t from_s = from_us / 1000000 - (int64_t)s->max_width;
        size_t lo = 0, hi = s->n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (s->b[mid].start_s < from_s) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        for (k = lo; k < s->n; k++) {
            const bucket_t *b = &s->b[k];
            int64_t end_us = (b->start_s + (int64_t)b->width_s) * 1000000;
            if (end_us <= from_us) {
                continue;
            }
            if (end_us > to_us) {
                if (b->start_s * 1000000 > to_us) {
                    break;
                }
                continue;
            }
            if (b->open && (flags & ALR_AGG_CLOSED_ONLY)) {
                continue;
            }
            out->count += b->count;
            out->errors += b->errors;
            out->sum += b->sum;
            if (b->count > 0) {
                if (!out->has_minmax || b->min < out->min) {
                    out->min = b->min;
                }
                if (!out->has_minmax || b->max > out->max) {
                    out->max = b->max;
                }
                out->has_minmax = true;
                if (b->last_time_us >= out->last_time_us) {
                    out->last_time_us = b->last_time_us ? b->last_time_us : end_us;
                    out->last = b->last;
                }
            }
            if (sketch && b->sketch) {
                (void)tc_sketch_merge(sketch, b->sketch); /* a schema mismatch is skipped */
            }
            out->buckets++;
            out->open += b->open;
            matched = true;
        }
        out->series += matched;
    }
}

int64_t alr_window_last_seen(const alr_window_t *self, const char *service,
                             const char *environment, const char *name, int kind,
                             int64_t now_us)
{
    bool found;
    size_t i = find_service(self, service, &found);
    if (!found) {
        return 0;
    }
    int64_t best = 0;
    const service_t *sv = self->services[i];
    for (size_t j = 0; j < sv->n; j++) {
        const series_t *s = sv->series[j];
        if (!series_matches(s, kind, environment, name)) {
            continue;
        }
        /* Newest first; an older bucket cannot prove more than its end. */
        for (size_t k = s->n; k > 0; k--) {
            const bucket_t *b = &s->b[k - 1];
            int64_t end = (b->start_s + (int64_t)b->width_s) * 1000000;
            if (end <= best) {
                break;
            }
            if (b->count == 0) {
                continue;
            }
            int64_t seen = end < now_us ? end : now_us;
            if (b->grew_us > 0 && b->grew_us < seen) {
                seen = b->grew_us;
            }
            if (seen > best) {
                best = seen;
            }
        }
    }
    return best;
}

int alr_window_get(const alr_window_t *self, const alr_rollup_t *id, alr_rollup_t *out)
{
    memset(out, 0, sizeof(*out));
    bool found;
    size_t i = find_service(self, id->service, &found);
    if (!found) {
        return TC_ENOTFOUND;
    }
    const service_t *sv = self->services[i];
    size_t j = find_series(sv, id->kind, id->environment, id->name, &found);
    if (!found) {
        return TC_ENOTFOUND;
    }
    const series_t *s = sv->series[j];
    size_t k = find_bucket(s, id->start_s, id->source_partition, &found);
    if (!found) {
        return TC_ENOTFOUND;
    }
    const bucket_t *b = &s->b[k];
    strcpy(out->service, id->service);
    strcpy(out->environment, id->environment);
    strcpy(out->name, id->name);
    out->kind = id->kind;
    out->start_s = b->start_s;
    out->source_partition = b->partition;
    out->open = b->open;
    out->grew_us = b->grew_us;
    out->width_s = b->width_s;
    out->revision = b->revision;
    out->count = b->count;
    out->errors = b->errors;
    out->sum = b->sum;
    out->min = b->min;
    out->max = b->max;
    out->last = b->last;
    out->last_time_us = b->last_time_us;
    if (b->sketch) {
        tc_sketch_init(&out->sketch, b->sketch->schema);
        if (tc_sketch_merge(&out->sketch, b->sketch) != 0) {
            tc_sketch_fini(&out->sketch);
            return TC_ENOMEM;
        }
        out->has_sketch = true;
    }
    return 0;
}

size_t alr_window_bucket_count(const alr_window_t *self)
{
    return self->nbuckets;
}

const alr_window_change_t *alr_window_journal(const alr_window_t *self, size_t *len)
{
    *len = self->jlen;
    return self->journal;
}

void alr_window_journal_clear(alr_window_t *self)
{
    self->jlen = 0;
    if (self->jcap > 4096) {
        /* A large replay should not pin its journal's memory for good. */
        free(self->journal);
        self->journal = NULL;
        self->jcap = 0;
    }
}
