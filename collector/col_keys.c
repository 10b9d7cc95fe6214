#include "col_keys.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

#define LINE_MAX_BYTES 4096
#define KEY_MIN 8
#define KEY_MAX 256

typedef struct {
    char *service;
    double rate;  /* tokens per second; 0: no quota */
    double burst; /* bucket size */
    double tokens;
    int64_t last_us;
    bool started; /* tokens/last_us are meaningful */
} bucket_t;

typedef struct {
    char *key;
    size_t bucket;
} entry_t;

struct col_keys {
    entry_t *entries; /* sorted by key */
    size_t n_entries;
    bucket_t *buckets;
    size_t n_buckets;
};

void col_keys_destroy(col_keys_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    col_keys_t *self = *self_p;
    for (size_t i = 0; i < self->n_entries; i++) {
        free(self->entries[i].key);
    }
    for (size_t i = 0; i < self->n_buckets; i++) {
        free(self->buckets[i].service);
    }
    free(self->entries);
    free(self->buckets);
    free(self);
    *self_p = NULL;
}

size_t col_keys_count(const col_keys_t *self)
{
    assert(self);
    return self->n_entries;
}

size_t col_keys_services(const col_keys_t *self)
{
    assert(self);
    return self->n_buckets;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry_t *)a)->key, ((const entry_t *)b)->key);
}

static bucket_t *find_bucket(const col_keys_t *self, const char *service)
{
    for (size_t i = 0; i < self->n_buckets; i++) {
        if (strcmp(self->buckets[i].service, service) == 0) {
            return &self->buckets[i];
        }
    }
    return NULL;
}

/* A rate or burst: "-" (none), or a non-negative finite number. */
static int parse_number(const char *s, double *out)
{
    if (strcmp(s, "-") == 0) {
        *out = 0;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < 0 || v > 1e12) {
        return TC_EPARSE;
    }
    *out = v;
    return 0;
}

static bool key_bytes_ok(const char *k)
{
    size_t n = strlen(k);
    if (n < KEY_MIN || n > KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (k[i] < 0x21 || k[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * elem);
    if (!p) {
        return TC_ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}

/* Adds one parsed line. */
static int add_line(col_keys_t *self, size_t *cap_e, size_t *cap_b, const char *service,
                    const char *key, double rate, double burst, int lineno, char *err,
                    size_t errlen)
{
    bucket_t *b = find_bucket(self, service);
    if (b) {
        if (b->rate != rate || b->burst != burst) {
            snprintf(err, errlen, "line %d: service %s: a quota different from an earlier line",
                     lineno, service);
            return TC_EPARSE;
        }
    } else {
        if (grow((void **)&self->buckets, cap_b, self->n_buckets, sizeof(bucket_t)) != 0) {
            return TC_ENOMEM;
        }
        b = &self->buckets[self->n_buckets];
        memset(b, 0, sizeof(*b));
        b->service = strdup(service);
        if (!b->service) {
            return TC_ENOMEM;
        }
        b->rate = rate;
        b->burst = burst;
        self->n_buckets++;
    }
    if (grow((void **)&self->entries, cap_e, self->n_entries, sizeof(entry_t)) != 0) {
        return TC_ENOMEM;
    }
    entry_t *e = &self->entries[self->n_entries];
    e->key = strdup(key);
    if (!e->key) {
        return TC_ENOMEM;
    }
    e->bucket = (size_t)(b - self->buckets);
    self->n_entries++;
    return 0;
}

int col_keys_parse(const char *text, size_t len, col_keys_t **out, char *err, size_t errlen)
{
    assert(out && err && (text || len == 0));
    *out = NULL;
    col_keys_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return TC_ENOMEM;
    }
    size_t cap_e = 0;
    size_t cap_b = 0;
    size_t pos = 0;
    int lineno = 0;
    int rc = 0;
    char line[LINE_MAX_BYTES + 1];
    while (pos < len && rc == 0) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (n > LINE_MAX_BYTES) {
            snprintf(err, errlen, "line %d: longer than %d bytes", lineno, LINE_MAX_BYTES);
            rc = TC_EPARSE;
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);
        if (memchr(line, '\0', n)) {
            snprintf(err, errlen, "line %d: NUL byte", lineno);
            rc = TC_EPARSE;
            break;
        }
        char *fields[5];
        int nf = 0;
        char *save = NULL;
        for (char *tok = strtok_r(line, " \t\r", &save); tok && nf < 5;
             tok = strtok_r(NULL, " \t\r", &save)) {
            fields[nf++] = tok;
        }
        if (nf == 0 || fields[0][0] == '#') {
            continue;
        }
        if (nf < 2 || nf > 4) {
            snprintf(err, errlen, "line %d: expected: service key [events/s [burst]]", lineno);
            rc = TC_EPARSE;
            break;
        }
        if (!key_bytes_ok(fields[1])) {
            snprintf(err, errlen, "line %d: a key is %d to %d printable ASCII bytes", lineno,
                     KEY_MIN, KEY_MAX);
            rc = TC_EPARSE;
            break;
        }
        double rate = 0;
        double burst = 0;
        if ((nf >= 3 && parse_number(fields[2], &rate) != 0) ||
            (nf == 4 && parse_number(fields[3], &burst) != 0)) {
            snprintf(err, errlen, "line %d: events/s and burst are numbers >= 0, or -", lineno);
            rc = TC_EPARSE;
            break;
        }
        if (rate > 0 && burst <= 0) {
            burst = rate < 1 ? 1 : rate;
        }
        if (rate <= 0) {
            burst = 0;
        }
        rc = add_line(self, &cap_e, &cap_b, fields[0], fields[1], rate, burst, lineno, err, errlen);
        if (rc == TC_ENOMEM) {
            snprintf(err, errlen, "out of memory");
        }
    }
    if (rc == 0 && self->n_entries > 1) {
        qsort(self->entries, self->n_entries, sizeof(entry_t), cmp_entry);
        for (size_t i = 1; i < self->n_entries; i++) {
            if (strcmp(self->entries[i - 1].key, self->entries[i].key) == 0) {
                snprintf(err, errlen, "the same key appears twice");
                rc = TC_EPARSE;
                break;
            }
        }
    }
    if (rc != 0) {
        col_keys_destroy(&self);
        return rc;
    }
    *out = self;
    return 0;
}

void col_keys_carry(col_keys_t *fresh, const col_keys_t *old)
{
    assert(fresh);
    if (!old) {
        return;
    }
    for (size_t i = 0; i < fresh->n_buckets; i++) {
        bucket_t *b = &fresh->buckets[i];
        const bucket_t *o = find_bucket(old, b->service);
        if (!o || !o->started || b->rate <= 0) {
            continue;
        }
        b->started = true;
        b->last_us = o->last_us;
        b->tokens = o->tokens > b->burst ? b->burst : o->tokens;
    }
}

const char *col_keys_service(const col_keys_t *self, const char *api_key)
{
    assert(self);
    if (!api_key || !api_key[0] || self->n_entries == 0) {
        return NULL;
    }
    entry_t probe = {.key = (char *)api_key};
    const entry_t *e = bsearch(&probe, self->entries, self->n_entries, sizeof(entry_t), cmp_entry);
    return e ? self->buckets[e->bucket].service : NULL;
}

uint32_t col_keys_take(col_keys_t *self, const char *service, uint32_t events, int64_t now_us)
{
    assert(self && service);
    bucket_t *b = find_bucket(self, service);
    if (!b || b->rate <= 0) {
        return 0;
    }
    if (!b->started) {
        b->started = true;
        b->tokens = b->burst;
        b->last_us = now_us;
    }
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * b->rate / 1e6;
        if (b->tokens > b->burst) {
            b->tokens = b->burst;
        }
        b->last_us = now_us;
    }
    double need = (double)events < b->burst ? (double)events : b->burst;
    if (b->tokens >= need) {
        b->tokens -= (double)events;
        return 0;
    }
    double ms = ceil((need - b->tokens) * 1000.0 / b->rate);
    if (ms < 1) {
        ms = 1;
    }
    if (ms > UINT32_MAX) {
        ms = UINT32_MAX;
    }
    return (uint32_t)ms;
}
