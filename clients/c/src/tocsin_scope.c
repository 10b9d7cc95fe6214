/*
 * tocsin_scope.c — per-thread scope and per-thread random numbers for sampling. The scope
 * is allocated on the first tocsin_scope_set_* call of a thread and freed when the thread
 * exits (a pthread key destructor); the recording functions only read it.
 */
#include "tocsin_scope.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tocsin_record.h"

static __thread tocsin_scope_t *tls_scope;
static __thread uint64_t tls_rng;
static pthread_key_t scope_key;
static pthread_once_t scope_once = PTHREAD_ONCE_INIT;

static void scope_free(void *p)
{
    free(p);
    tls_scope = NULL;
}

static void scope_key_init(void)
{
    pthread_key_create(&scope_key, scope_free);
}

const tocsin_scope_t *tocsin_scope_current(void)
{
    return tls_scope;
}

static tocsin_scope_t *scope_get(void)
{
    if (!tls_scope) {
        pthread_once(&scope_once, scope_key_init);
        tocsin_scope_t *s = calloc(1, sizeof(*s));
        if (!s) {
            return NULL;
        }
        if (pthread_setspecific(scope_key, s) != 0) {
            free(s);
            return NULL;
        }
        tls_scope = s;
    }
    return tls_scope;
}

/* Appends one field to the blob (the sizes are bounded by TOCSIN_SCOPE_BLOB_MAX). */
static void blob_put(tocsin_scope_t *s, uint8_t id, const char *a, const char *b)
{
    size_t alen = strlen(a), blen = b ? strlen(b) : 0;
    size_t flen = alen + 1 + (b ? blen + 1 : 0);
    uint8_t *p = s->blob + s->len;
    p[0] = id;
    p[1] = (uint8_t)(flen & 0xff);
    p[2] = (uint8_t)(flen >> 8);
    memcpy(p + 3, a, alen + 1);
    if (b) {
        memcpy(p + 3 + alen + 1, b, blen + 1);
    }
    s->len += 3 + flen;
}

static void blob_rebuild(tocsin_scope_t *s)
{
    s->len = 0;
    if (s->trace_id[0]) {
        blob_put(s, TOCSIN_FIELD_TRACE_ID, s->trace_id, NULL);
    }
    if (s->user_id[0]) {
        blob_put(s, TOCSIN_FIELD_USER_ID, s->user_id, NULL);
    }
    for (size_t i = 0; i < s->n_tags; i++) {
        blob_put(s, TOCSIN_R_TAG, s->keys[i], s->values[i]);
    }
}

/* Copies s (at most TOCSIN_NAME_MAX bytes) made valid UTF-8 into dst. */
static void put(char *dst, const char *s, size_t len)
{
    bool cut = false;
    size_t n = tocsin_utf8_copy(dst, TOCSIN_NAME_MAX, s, len, &cut);
    dst[n] = '\0';
}

static int set_id(char *(*field)(tocsin_scope_t *), const char *value)
{
    size_t len = value ? strnlen(value, TOCSIN_NAME_MAX + 1) : 0;
    if (len > TOCSIN_NAME_MAX) {
        return TOCSIN_ETOOBIG;
    }
    if (len == 0 && !tls_scope) {
        return TOCSIN_OK;
    }
    tocsin_scope_t *s = scope_get();
    if (!s) {
        return TOCSIN_ENOMEM;
    }
    put(field(s), value ? value : "", len);
    blob_rebuild(s);
    return TOCSIN_OK;
}

static char *trace_of(tocsin_scope_t *s)
{
    return s->trace_id;
}

static char *user_of(tocsin_scope_t *s)
{
    return s->user_id;
}

int tocsin_scope_set_trace_id(const char *trace_id)
{
    return set_id(trace_of, trace_id);
}

int tocsin_scope_set_user(const char *user_id)
{
    return set_id(user_of, user_id);
}

int tocsin_scope_set_tag(const char *key, const char *value)
{
    if (!key || !key[0]) {
        return TOCSIN_EINVAL;
    }
    size_t klen = strnlen(key, TOCSIN_NAME_MAX + 1);
    size_t vlen = value ? strnlen(value, TOCSIN_NAME_MAX + 1) : 0;
    if (klen > TOCSIN_NAME_MAX || vlen > TOCSIN_NAME_MAX) {
        return TOCSIN_ETOOBIG;
    }
    if (!value && !tls_scope) {
        return TOCSIN_OK;
    }
    tocsin_scope_t *s = scope_get();
    if (!s) {
        return TOCSIN_ENOMEM;
    }
    char k[TOCSIN_NAME_MAX + 1];
    put(k, key, klen);
    size_t i = 0;
    while (i < s->n_tags && strcmp(s->keys[i], k) != 0) {
        i++;
    }
    if (!value) {
        if (i < s->n_tags) {
            for (size_t j = i + 1; j < s->n_tags; j++) {
                memcpy(s->keys[j - 1], s->keys[j], sizeof(s->keys[0]));
                memcpy(s->values[j - 1], s->values[j], sizeof(s->values[0]));
            }
            s->n_tags--;
        }
    } else {
        if (i == s->n_tags) {
            if (s->n_tags >= TOCSIN_TAGS_MAX) {
                return TOCSIN_ETOOBIG;
            }
            memcpy(s->keys[i], k, sizeof(k));
            s->n_tags++;
        }
        put(s->values[i], value, vlen);
    }
    blob_rebuild(s);
    return TOCSIN_OK;
}

const char *tocsin_scope_trace_id(void)
{
    return tls_scope ? tls_scope->trace_id : "";
}

void tocsin_scope_clear(void)
{
    if (tls_scope) {
        tls_scope->trace_id[0] = '\0';
        tls_scope->user_id[0] = '\0';
        tls_scope->n_tags = 0;
        tls_scope->len = 0;
    }
}

uint64_t tocsin_thread_random(void)
{
    uint64_t x = tls_rng;
    if (x == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&tls_rng;
        x = x ? x : 0x9e3779b97f4a7c15ULL;
    }
    /* xorshift64* (Vigna). */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tls_rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}
