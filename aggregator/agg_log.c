#include "agg_log.h"

#include <stdlib.h>
#include <string.h>

#include "tc_error.h"

#define FORMAT 1

static size_t uv_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* The length of at most `max` bytes of `s`, cut back to a UTF-8 character boundary. */
static size_t bounded(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        return n;
    }
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return n;
}

static size_t put_str(uint8_t *p, const char *s, size_t n)
{
    size_t k = uv_put(p, n);
    memcpy(p + k, s, n);
    return k + n;
}

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

int agg_log_encode(const Tocsin__V1__Event *ev, uint8_t **out, size_t *len)
{
    if (ev->body_case != TOCSIN__V1__EVENT__BODY_LOG || !ev->log) {
        return TC_EINVAL;
    }
    const Tocsin__V1__LogRecord *l = ev->log;
    const char *strs[5] = {or_empty(ev->environment), or_empty(ev->release), or_empty(ev->host),
                           or_empty(l->logger), or_empty(l->message)};
    size_t lens[5];
    size_t total = 8;
    for (int i = 0; i < 5; i++) {
        lens[i] = bounded(strs[i], i == 4 ? AGG_LOG_MESSAGE_MAX : AGG_MAX_SHORT);
        total += lens[i] + 5;
    }
    size_t nf = 0;
    for (size_t i = 0; i < l->n_fields && nf < AGG_LOG_FIELDS_MAX; i++) {
        const char *k = or_empty(l->fields[i]->key), *v = or_empty(l->fields[i]->value);
        size_t kn = bounded(k, AGG_LOG_FIELD_MAX), vn = bounded(v, AGG_LOG_FIELD_MAX);
        if (agg_text_ok(k, kn, AGG_LOG_FIELD_MAX) && agg_text_ok(v, vn, AGG_LOG_FIELD_MAX)) {
            total += kn + vn + 10;
            nf++;
        }
    }
    uint8_t *buf = malloc(total);
    if (!buf) {
        return TC_ENOMEM;
    }
    size_t n = 0;
    buf[n++] = FORMAT;
    int level = l->level ? (int)l->level : TOCSIN__V1__LEVEL__LEVEL_INFO;
    buf[n++] = (uint8_t)(level >= 1 && level <= 6 ? level : TOCSIN__V1__LEVEL__LEVEL_INFO);
    for (int i = 0; i < 5; i++) {
        /* Bounded strings from a scanned event are UTF-8; a cut keeps them so. */
        n += put_str(buf + n, agg_text_ok(strs[i], lens[i], SIZE_MAX) ? strs[i] : "",
                     agg_text_ok(strs[i], lens[i], SIZE_MAX) ? lens[i] : 0);
    }
    n += uv_put(buf + n, nf);
    size_t written = 0;
    for (size_t i = 0; i < l->n_fields && written < nf; i++) {
        const char *k = or_empty(l->fields[i]->key), *v = or_empty(l->fields[i]->value);
        size_t kn = bounded(k, AGG_LOG_FIELD_MAX), vn = bounded(v, AGG_LOG_FIELD_MAX);
        if (agg_text_ok(k, kn, AGG_LOG_FIELD_MAX) && agg_text_ok(v, vn, AGG_LOG_FIELD_MAX)) {
            n += put_str(buf + n, k, kn);
            n += put_str(buf + n, v, vn);
            written++;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

static bool rd_uv(rd_t *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10 && r->p < r->end; i++) {
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return i < 9 || c <= 1;
        }
    }
    return false;
}

static bool rd_str(rd_t *r, agg_str_t *s, size_t max)
{
    uint64_t n;
    if (!rd_uv(r, &n) || n > max || n > (uint64_t)(r->end - r->p)) {
        return false;
    }
    s->p = (const char *)r->p;
    s->n = (uint32_t)n;
    r->p += n;
    return agg_text_ok(s->p, s->n, max);
}

int agg_log_decode(const uint8_t *data, size_t len, agg_log_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len > AGG_LOG_STORED_MAX) {
        return TC_ETOOBIG;
    }
    if (len < 2 || data[0] != FORMAT || data[1] < 1 || data[1] > 6) {
        return TC_EPARSE;
    }
    out->level = data[1];
    rd_t r = {data + 2, data + len};
    uint64_t nf;
    if (!rd_str(&r, &out->environment, AGG_MAX_SHORT) ||
        !rd_str(&r, &out->release, AGG_MAX_SHORT) || !rd_str(&r, &out->host, AGG_MAX_SHORT) ||
        !rd_str(&r, &out->logger, AGG_MAX_SHORT) ||
        !rd_str(&r, &out->message, AGG_LOG_MESSAGE_MAX) || !rd_uv(&r, &nf) ||
        nf > AGG_LOG_FIELDS_MAX) {
        return TC_EPARSE;
    }
    out->nfields = (uint32_t)nf;
    for (uint32_t i = 0; i < out->nfields; i++) {
        if (!rd_str(&r, &out->keys[i], AGG_LOG_FIELD_MAX) ||
            !rd_str(&r, &out->values[i], AGG_LOG_FIELD_MAX)) {
            return TC_EPARSE;
        }
    }
    return r.p == r.end ? 0 : TC_EPARSE;
}

static bool contains(agg_str_t s, const char *q, size_t qn)
{
    if (qn > s.n) {
        return false;
    }
    return memmem(s.p, s.n, q, qn) != NULL;
}

bool agg_log_match(const agg_log_t *l, int min_level, const char *q)
{
    if (l->level < min_level) {
        return false;
    }
    if (!q || !*q) {
        return true;
    }
    size_t qn = strlen(q);
    if (contains(l->message, q, qn) || contains(l->logger, q, qn)) {
        return true;
    }
    for (uint32_t i = 0; i < l->nfields; i++) {
        if (contains(l->values[i], q, qn)) {
            return true;
        }
    }
    return false;
}
