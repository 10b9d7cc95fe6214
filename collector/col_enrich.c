#include "col_enrich.h"

#include <assert.h>
#include <string.h>

#include "tc_error.h"

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* service, then for a name: a NUL and the name. */
static int build_key(const char *service, const char *name, uint8_t *key, size_t cap, size_t *len)
{
    size_t s = strlen(service);
    size_t n = name ? strlen(name) : 0;
    size_t total = s + (name ? 1 + n : 0);
    if (total > cap) {
        return TC_ETOOBIG;
    }
    memcpy(key, service, s);
    if (name) {
        key[s] = 0;
        memcpy(key + s + 1, name, n);
    }
    *len = total;
    return 0;
}

/* The event time the collector keeps: the receive time for a missing time, or one too far
 * ahead or behind. */
static int64_t clamp_time(const col_enrich_config_t *cfg, int64_t time_us, int64_t received_us,
                          col_enrich_stats_t *stats)
{
    if (time_us == 0) {
        stats->time_missing++;
        return received_us;
    }
    if (time_us > received_us &&
        (uint64_t)time_us - (uint64_t)received_us > (uint64_t)cfg->max_future_us) {
        stats->time_future++;
        return received_us;
    }
    if (time_us < received_us &&
        (uint64_t)received_us - (uint64_t)time_us > (uint64_t)cfg->max_past_us) {
        stats->time_past++;
        return received_us;
    }
    return time_us;
}

/* service, then for a name: a NUL and the name (spans). */
static int build_key_span(col_span_t service, const col_span_t *name, uint8_t *key, size_t cap,
                          size_t *len)
{
    size_t total = service.len + (name ? 1 + name->len : 0);
    if (total > cap) {
        return TC_ETOOBIG;
    }
    memcpy(key, service.p, service.len);
    if (name) {
        key[service.len] = 0;
        memcpy(key + service.len + 1, name->p, name->len);
    }
    *len = total;
    return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

int col_enrich_raw(const col_enrich_config_t *cfg, const col_event_t *e, int64_t received_us,
                   col_enrich_stats_t *stats, col_topic_t *topic, uint8_t *key, size_t key_cap,
                   size_t *key_len, uint8_t *tail, size_t tail_cap, size_t *tail_len)
{
    assert(cfg && cfg->collector_id && e && stats && topic && key && key_len && tail && tail_len);
    size_t id_len = strlen(cfg->collector_id);
    if (id_len > 255 || tail_cap < COL_TAIL_MAX) {
        return TC_ETOOBIG;
    }
    int rc;
    switch (e->body) {
    case TOCSIN__V1__EVENT__BODY_ERROR:
        if (e->grouping_hash.len == 0) {
            return TC_EINVAL;
        }
        *topic = COL_TOPIC_EVENTS;
        rc = build_key_span(e->service, &e->grouping_hash, key, key_cap, key_len);
        break;
    case TOCSIN__V1__EVENT__BODY_REQUEST:
    case TOCSIN__V1__EVENT__BODY_METRIC:
        *topic = COL_TOPIC_EVENTS;
        rc = build_key_span(e->service, &e->name, key, key_cap, key_len);
        break;
    case TOCSIN__V1__EVENT__BODY_LOG:
        *topic = COL_TOPIC_LOGS;
        rc = build_key_span(e->service, NULL, key, key_cap, key_len);
        break;
    default:
        *topic = COL_TOPIC_EVENTS;
        rc = build_key_span(e->service, NULL, key, key_cap, key_len);
        break;
    }
    if (rc != 0) {
        return rc;
    }
    size_t n = 0;
    int64_t t = clamp_time(cfg, e->time_us, received_us, stats);
    if (t != e->time_us) {
        n += put_varint(tail + n, (2 << 3) | 0); /* time_us, varint */
        n += put_varint(tail + n, (uint64_t)t);
    }
    n += put_varint(tail + n, (20 << 3) | 0); /* received_us, varint */
    n += put_varint(tail + n, (uint64_t)received_us);
    n += put_varint(tail + n, (21 << 3) | 2); /* collector_id, length-delimited */
    n += put_varint(tail + n, id_len);
    memcpy(tail + n, cfg->collector_id, id_len);
    n += id_len;
    *tail_len = n;
    return 0;
}

int col_enrich_event(const col_enrich_config_t *cfg, Tocsin__V1__Event *ev, int64_t received_us,
                     col_arena_t *arena, col_enrich_stats_t *stats, col_topic_t *topic,
                     uint8_t *key, size_t key_cap, size_t *key_len)
{
    assert(cfg && cfg->collector_id && ev && arena && stats && topic && key && key_len);
    ev->received_us = received_us;
    ev->collector_id = (char *)cfg->collector_id;
    ev->time_us = clamp_time(cfg, ev->time_us, received_us, stats);
    const char *service = str_or_empty(ev->service);
    switch (ev->body_case) {
    case TOCSIN__V1__EVENT__BODY_ERROR: {
        *topic = COL_TOPIC_EVENTS;
        Tocsin__V1__ErrorEvent *err = ev->error;
        if (!err) {
            return build_key(service, "", key, key_cap, key_len);
        }
        if (!err->grouping_hash || !err->grouping_hash[0]) {
            char *hash = col_arena_alloc(arena, TC_GROUPING_HASH_LEN + 1);
            if (!hash) {
                return TC_ENOMEM;
            }
            tc_grouping_basis_t basis = tc_grouping_hash(err, hash);
            stats->grouped[basis]++;
            err->grouping_hash = hash;
        }
        return build_key(service, err->grouping_hash, key, key_cap, key_len);
    }
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        *topic = COL_TOPIC_EVENTS;
        return build_key(service, ev->request ? str_or_empty(ev->request->route) : "", key, key_cap,
                         key_len);
    case TOCSIN__V1__EVENT__BODY_METRIC:
        *topic = COL_TOPIC_EVENTS;
        return build_key(service, ev->metric ? str_or_empty(ev->metric->name) : "", key, key_cap,
                         key_len);
    case TOCSIN__V1__EVENT__BODY_LOG:
        *topic = COL_TOPIC_LOGS;
        return build_key(service, NULL, key, key_cap, key_len);
    default:
        /* Validation refuses events without a body; keyed by service all the same. */
        *topic = COL_TOPIC_EVENTS;
        return build_key(service, NULL, key, key_cap, key_len);
    }
}
