#include "alr_window.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

/*
 * Layout: a sorted array of services; each service a sorted array of its series (by kind,
 * environment, name); each series a sorted array of its buckets (by start). Lookups are
 * binary searches, and a rule's sum only visits the series of its own service.
 */

typedef struct {
    int64_t start_s;
    uint32_t width_s;
    uint64_t revision;
    uint64_t count;
    uint64_t errors;
} bucket_t;

typedef struct {
    int kind;
    char *environment;
    char *name;
    bucket_t *b;
    size_t n, cap;
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

static void series_free(series_t *s)
{
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

static size_t find_bucket(const series_t *s, int64_t start_s, bool *found)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->b[mid].start_s == start_s) {
            *found = true;
            return mid;
        }
        if (s->b[mid].start_s < start_s) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = false;
    return lo;
}

static int journal_add(alr_window_t *self, const char *service, const series_t *s,
                       const bucket_t *b, bool deleted)
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
    c->bucket.start_s = b->start_s;
    c->bucket.width_s = b->width_s;
    c->bucket.count = b->count;
    c->bucket.errors = b->errors;
    c->bucket.revision = b->revision;
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
    size_t i = find_bucket(s, r->start_s, &found);
    bucket_t nb = {r->start_s, r->width_s, r->revision, r->count, r->errors};
    if (found) {
        if (r->revision <= s->b[i].revision) {
            return 0;
        }
        if (journal && journal_add(self, sv->service, s, &nb, false) != 0) {
            return TC_ENOMEM;
        }
        s->b[i] = nb;
    } else {
        if (self->max_buckets && self->nbuckets >= self->max_buckets) {
            return TC_EFULL;
        }
        if (grow((void **)&s->b, &s->cap, s->n, sizeof(*s->b)) != 0 ||
            (journal && journal_add(self, sv->service, s, &nb, false) != 0)) {
            return TC_ENOMEM;
        }
        memmove(&s->b[i + 1], &s->b[i], (s->n - i) * sizeof(*s->b));
        s->b[i] = nb;
        s->n++;
        self->nbuckets++;
    }
    if (end_s > self->newest_end_s) {
        self->newest_end_s = end_s;
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
                    (void)journal_add(self, sv->service, s, &s->b[k], true);
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

void alr_window_sum(const alr_window_t *self, const char *service, const char *environment,
                    const char *name, int kind, int64_t from_us, int64_t to_us,
                    alr_window_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    bool found;
    size_t i = find_service(self, service, &found);
    if (!found) {
        return;
    }
    const service_t *sv = self->services[i];
    bool any_env = environment[0] == '\0';
    bool any_name = strcmp(name, "*") == 0;
    for (size_t j = 0; j < sv->n; j++) {
        const series_t *s = sv->series[j];
        if (s->kind != kind || (!any_env && strcmp(s->environment, environment) != 0) ||
            (!any_name && strcmp(s->name, name) != 0)) {
            continue;
        }
        bool matched = false;
        for (size_t k = 0; k < s->n; k++) {
            int64_t end_us = (s->b[k].start_s + (int64_t)s->b[k].width_s) * 1000000;
            if (end_us > from_us && end_us <= to_us) {
                out->count += s->b[k].count;
                out->errors += s->b[k].errors;
                out->buckets++;
                matched = true;
            }
        }
        out->series += matched;
    }
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
