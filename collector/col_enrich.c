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

int col_enrich_event(const col_enrich_config_t *cfg, Tocsin__V1__Event *ev, int64_t received_us,
                     col_arena_t *arena, col_enrich_stats_t *stats, col_topic_t *topic,
                     uint8_t *key, size_t key_cap, size_t *key_len)
{
    assert(cfg && cfg->collector_id && ev && arena && stats && topic && key && key_len);
    ev->received_us = received_us;
    ev->collector_id = (char *)cfg->collector_id;
    if (ev->time_us == 0) {
        ev->time_us = received_us;
        stats->time_missing++;
    } else if (ev->time_us > received_us && ev->time_us - received_us > cfg->max_future_us) {
        ev->time_us = received_us;
        stats->time_future++;
    } else if (ev->time_us < received_us && received_us - ev->time_us > cfg->max_past_us) {
        ev->time_us = received_us;
        stats->time_past++;
    }
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
