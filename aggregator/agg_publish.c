/*
 * agg_publish.c — the rollup side of tocsin-aggregator: closed buckets go to topic.rollups.
 *
 * Every change of a bucket marks it owed in LMDB (`unpublished`, with the bucket's new
 * revision). At most every 250 ms the tick hands the owed rollups of closed buckets (end +
 * grace passed) to an idempotent producer, keyed "service\0environment\0name". An owed
 * entry is removed only after its delivery report, in the next LMDB commit, and only when
 * the delivered revision is still the owed one; a crash in between publishes it again,
 * which consumers absorb because the highest revision of a bucket wins.
 *
 * While a rollup is in flight it is remembered here (bucket key -> revision) so that the
 * tick does not hand it over twice; a failed delivery forgets it, so the next tick retries.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "agg_daemon.h"
#include "tc_error.h"
#include "tc_kafka.h"
#include "tc_signal.h"
#include "tc_util.h"

#define TICK_US 250000
/* Rollups handed to the producer per tick, so one tick cannot stall the consumer. */
#define MAX_PER_TICK 20000
#define ROLLUP_KEY_MAX (AGG_MAX_SERVICE + AGG_MAX_ENVIRONMENT + AGG_MAX_NAME + 2)

/* ---- the in-flight set: open addressing, linear probing, backward-shift deletion ---- */

typedef struct {
    bool used;
    uint8_t key[AGG_STORE_KEY_LEN];
    uint64_t revision;
} slot_t;

struct agg_inflight {
    slot_t *slots;
    size_t cap; /* a power of two */
    size_t n;
};

static agg_inflight_t *inflight_new(void)
{
    agg_inflight_t *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->cap = 1024;
    s->slots = calloc(s->cap, sizeof(*s->slots));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

static void inflight_destroy(agg_inflight_t **s_p)
{
    if (*s_p) {
        free((*s_p)->slots);
        free(*s_p);
        *s_p = NULL;
    }
}

static size_t home(const agg_inflight_t *s, const uint8_t *key)
{
    return (size_t)XXH3_64bits(key, AGG_STORE_KEY_LEN) & (s->cap - 1);
}

static slot_t *inflight_find(agg_inflight_t *s, const uint8_t *key)
{
    for (size_t i = home(s, key);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i].used) {
            return NULL;
        }
        if (memcmp(s->slots[i].key, key, AGG_STORE_KEY_LEN) == 0) {
            return &s->slots[i];
        }
    }
}

static int inflight_grow(agg_inflight_t *s)
{
    slot_t *old = s->slots;
    size_t oldcap = s->cap;
    slot_t *slots = calloc(oldcap * 2, sizeof(*slots));
    if (!slots) {
        return TC_ENOMEM;
    }
    s->slots = slots;
    s->cap = oldcap * 2;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].used) {
            size_t j = home(s, old[i].key);
            while (s->slots[j].used) {
                j = (j + 1) & (s->cap - 1);
            }
            s->slots[j] = old[i];
        }
    }
    free(old);
    return 0;
}

static int inflight_put(agg_inflight_t *s, const uint8_t *key, uint64_t revision)
{
    slot_t *e = inflight_find(s, key);
    if (e) {
        e->revision = revision;
        return 0;
    }
    if ((s->n + 1) * 2 > s->cap && inflight_grow(s) != 0) {
        return TC_ENOMEM;
    }
    size_t i = home(s, key);
    while (s->slots[i].used) {
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i].used = true;
    memcpy(s->slots[i].key, key, AGG_STORE_KEY_LEN);
    s->slots[i].revision = revision;
    s->n++;
    return 0;
}

/* Removes `key` when its revision is at most `revision` (a newer one stays in flight). */
static void inflight_del(agg_inflight_t *s, const uint8_t *key, uint64_t revision)
{
    slot_t *e = inflight_find(s, key);
    if (!e || e->revision > revision) {
        return;
    }
    size_t i = (size_t)(e - s->slots);
    s->slots[i].used = false;
    s->n--;
    /* Backward shift: move later entries of the cluster into the hole when their home
     * position allows, so lookups never stop early. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & (s->cap - 1);
        if (!s->slots[j].used) {
            return;
        }
        size_t h = home(s, s->slots[j].key);
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (movable) {
            s->slots[i] = s->slots[j];
            s->slots[j].used = false;
            i = j;
        }
    }
}

/* ---- the producer ----------------------------------------------------------------------- */

static void remember_delivered(agg_daemon_t *d, const agg_owed_ref_t *ref)
{
    if (d->ndelivered == d->delivered_cap) {
        size_t cap = d->delivered_cap ? d->delivered_cap * 2 : 1024;
        agg_owed_ref_t *p = realloc(d->delivered, cap * sizeof(*p));
        if (!p) {
            /* Not remembered: the rollup stays owed and is published once more later. */
            inflight_del(d->inflight, ref->key, ref->revision);
            return;
        }
        d->delivered = p;
        d->delivered_cap = cap;
    }
    d->delivered[d->ndelivered++] = *ref;
}

/* The delivery report, served by rd_kafka_poll on the main thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    agg_daemon_t *d = opaque;
    agg_owed_ref_t *ref = msg->_private;
    if (!ref) {
        return;
    }
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        tc_counter_inc(d->m.rollups_published);
        remember_delivered(d, ref);
    } else {
        tc_counter_inc(d->m.rollup_failures);
        inflight_del(d->inflight, ref->key, ref->revision);
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&d->rollup_log, tc_mono_us(), &suppressed)) {
            tc_logj(TC_LOG_WARN, "publish.delivery_failed",
                    json_pack("{s:I}", "suppressed", (json_int_t)suppressed),
                    "rollup delivery failed: %s; it stays owed", rd_kafka_err2str(msg->err));
        }
    }
    free(ref);
}

static void on_producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    agg_daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        tc_log(TC_LOG_ERROR, "kafka.fatal", "producer: %s: %s; stopping", rd_kafka_err2name(orig),
               buf);
        d->fatal = true;
        tc_signal_request_stop();
        return;
    }
    uint64_t suppressed = 0;
    if (tc_log_limit_allow(&d->rollup_log, tc_mono_us(), &suppressed)) {
        tc_logj(TC_LOG_WARN, "kafka.error",
                json_pack("{s:I}", "suppressed", (json_int_t)suppressed), "producer: %s: %s",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    }
}

int agg_publish_start(agg_daemon_t *d, const char *bootstrap)
{
    char err[512];
    d->rollup_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10000000);
    d->inflight = inflight_new();
    if (!d->inflight) {
        return TC_ENOMEM;
    }
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new(bootstrap, d->instance_id, &d->cfg.kafka, err, sizeof(err));
    if (!conf) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        return TC_EINVAL;
    }
    if (tc_kafka_conf_set_default(conf, &d->cfg.kafka, "enable.idempotence", "true", err,
                                  sizeof(err)) != 0 ||
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "message.timeout.ms", "30000", err,
                                  sizeof(err)) != 0 ||
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "linger.ms", "20", err, sizeof(err)) != 0) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EINVAL;
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_producer_error);
    d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!d->producer) {
        tc_log(TC_LOG_ERROR, "kafka.producer", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    /* rd_kafka_new owns conf now. */
    d->rollups_topic = rd_kafka_topic_new(d->producer, d->cfg.topic_rollups, NULL);
    if (!d->rollups_topic) {
        tc_log(TC_LOG_ERROR, "kafka.producer", "%s: %s", d->cfg.topic_rollups,
               rd_kafka_err2str(rd_kafka_last_error()));
        return TC_EKAFKA;
    }
    return 0;
}

void agg_publish_poll(agg_daemon_t *d, int timeout_ms)
{
    if (d->producer) {
        rd_kafka_poll(d->producer, timeout_ms);
    }
}

typedef struct {
    agg_daemon_t *d;
    size_t handed;
    bool full;
} tick_ctx_t;

static int publish_one(void *ctx, const agg_owed_ref_t *ref, const agg_bucket_t *b)
{
    tick_ctx_t *t = ctx;
    agg_daemon_t *d = t->d;
    if (t->handed >= MAX_PER_TICK) {
        return 1;
    }
    slot_t *e = inflight_find(d->inflight, ref->key);
    if (e && e->revision >= ref->revision) {
        return 0; /* already handed over */
    }
    if (!b) {
        /* The stored bucket is gone or corrupt: nothing to publish; clear it like a
         * delivered one at the next commit. */
        remember_delivered(d, ref);
        return 0;
    }
    agg_owed_ref_t *opaque = malloc(sizeof(*opaque));
    uint8_t *value = NULL;
    size_t vlen = 0;
    char key[ROLLUP_KEY_MAX];
    size_t klen = agg_rollup_key(b, key, sizeof(key));
    if (!opaque || klen == 0 ||
        agg_rollup_encode(b, ref->revision, d->instance_id, &value, &vlen) != 0 ||
        inflight_put(d->inflight, ref->key, ref->revision) != 0) {
        free(opaque);
        free(value);
        return 1; /* out of memory: try again next tick */
    }
    *opaque = *ref;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        d->producer, RD_KAFKA_V_RKT(d->rollups_topic), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_VALUE(value, vlen),
        RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Refused (the queue is full): nothing was taken; the next tick tries again. */
        free(value);
        free(opaque);
        inflight_del(d->inflight, ref->key, ref->revision);
        t->full = true;
        return 1;
    }
    t->handed++;
    return 0;
}

void agg_publish_tick(agg_daemon_t *d, bool force)
{
    int64_t now = tc_mono_us();
    if (!d->producer || (!force && now - d->last_tick_us < TICK_US)) {
        return;
    }
    d->last_tick_us = now;
    tick_ctx_t t = {d, 0, false};
    int rc = agg_store_owed(d->store, tc_now_us(), publish_one, &t);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "publish.tick", "reading owed rollups failed: %s", tc_strerror(rc));
    }
    if (t.full) {
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&d->rollup_log, tc_mono_us(), &suppressed)) {
            tc_log(TC_LOG_WARN, "publish.queue_full",
                   "producer queue full after %zu rollups; the rest next tick", t.handed);
        }
    }
}

void agg_publish_cleared(agg_daemon_t *d, const agg_owed_ref_t *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        inflight_del(d->inflight, refs[i].key, refs[i].revision);
    }
}

size_t agg_publish_inflight(const agg_daemon_t *d)
{
    return d->inflight ? d->inflight->n : 0;
}

void agg_publish_stop(agg_daemon_t *d)
{
    if (d->producer) {
        rd_kafka_resp_err_t err = rd_kafka_flush(d->producer, 5000);
        if (err) {
            tc_log(TC_LOG_WARN, "publish.flush", "%d rollup(s) not delivered: %s",
                   rd_kafka_outq_len(d->producer), rd_kafka_err2str(err));
        }
        /* Purged messages report failure to on_delivery, which frees their opaques. */
        rd_kafka_purge(d->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(d->producer, 0);
    }
    if (d->rollups_topic) {
        rd_kafka_topic_destroy(d->rollups_topic);
        d->rollups_topic = NULL;
    }
    if (d->producer) {
        rd_kafka_destroy(d->producer);
        d->producer = NULL;
    }
    inflight_destroy(&d->inflight);
    free(d->delivered);
    d->delivered = NULL;
    d->ndelivered = d->delivered_cap = 0;
}
