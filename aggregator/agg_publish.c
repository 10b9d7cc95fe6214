/*
 * agg_publish.c — what tocsin-aggregator publishes on topic.rollups: the states of buckets
 * and issues of the partitions it owns, a checkpoint per owned partition, and issue changes
 * (new, regressed) and statuses.
 *
 * Every change of a state marks it owed in LMDB (in the transaction of the change). Every
 * publish.interval the tick hands every owed state with an undelivered change to an
 * idempotent producer (so queries anywhere see an event within about a second), and once
 * more each bucket whose end + grace has passed, marked closed. A mark is cleared only after
 * the delivery report, in the next commit, and only as far as the delivered state reaches;
 * a crash in between publishes it again, which consumers absorb because the state with the
 * higher revision (source offset) wins.
 *
 * A checkpoint of partition p at offset N says every change made by its records below N is
 * delivered: N is the smaller of p's stored offset and the first undelivered change of any
 * of its states. It is published whenever it moves, so whoever owns p next resumes there.
 *
 * Issue changes and statuses are rows of `changes` in LMDB, written with the change that
 * caused them, handed over at once after each commit, and deleted after their delivery.
 *
 * While a state or change is in flight it is remembered here so that the tick does not hand
 * it over twice; a failed delivery forgets it, so the next tick retries.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "agg_daemon.h"
#include "agg_rollup.h"
#include "tc_error.h"
#include "tc_kafka.h"
#include "tc_signal.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

/* States handed to the producer per tick, so one tick cannot stall the consumer. */
#define MAX_PER_TICK 20000

/* ---- the in-flight set: open addressing, linear probing, backward-shift deletion ---- */

typedef struct {
    bool used;
    uint8_t klen;
    uint8_t key[AGG_OWED_KEY_MAX];
    uint64_t revision; /* 2 * source_offset + closed */
} slot_t;

struct agg_inflight {
    slot_t *slots;
    size_t cap; /* a power of two */
    size_t n;
};

static uint64_t revision_of(const agg_owed_ref_t *r)
{
    return 2 * (uint64_t)r->source_offset + (r->closed ? 1 : 0);
}

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

static size_t home(const agg_inflight_t *s, const uint8_t *key, size_t klen)
{
    return (size_t)XXH3_64bits(key, klen) & (s->cap - 1);
}

static slot_t *inflight_find(agg_inflight_t *s, const uint8_t *key, size_t klen)
{
    for (size_t i = home(s, key, klen);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i].used) {
            return NULL;
        }
        if (s->slots[i].klen == klen && memcmp(s->slots[i].key, key, klen) == 0) {
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
            size_t j = home(s, old[i].key, old[i].klen);
            while (s->slots[j].used) {
                j = (j + 1) & (s->cap - 1);
            }
            s->slots[j] = old[i];
        }
    }
    free(old);
    return 0;
}

static int inflight_put(agg_inflight_t *s, const agg_owed_ref_t *r)
{
    slot_t *e = inflight_find(s, r->key, r->klen);
    if (e) {
        e->revision = revision_of(r);
        return 0;
    }
    if ((s->n + 1) * 2 > s->cap && inflight_grow(s) != 0) {
        return TC_ENOMEM;
    }
    size_t i = home(s, r->key, r->klen);
    while (s->slots[i].used) {
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i].used = true;
    s->slots[i].klen = r->klen;
    memcpy(s->slots[i].key, r->key, r->klen);
    s->slots[i].revision = revision_of(r);
    s->n++;
    return 0;
}

/* Removes `r`'s key when its revision is at most r's (a newer one stays in flight). */
static void inflight_del(agg_inflight_t *s, const agg_owed_ref_t *r)
{
    slot_t *e = inflight_find(s, r->key, r->klen);
    if (!e || e->revision > revision_of(r)) {
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
        size_t h = home(s, s->slots[j].key, s->slots[j].klen);
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (movable) {
            s->slots[i] = s->slots[j];
            s->slots[j].used = false;
            i = j;
        }
    }
}

/* ---- what a delivery report carries --------------------------------------------------------- */

typedef enum { OP_STATE, OP_CHANGE, OP_CHECKPOINT } op_kind_t;

typedef struct {
    op_kind_t kind;
    agg_owed_ref_t ref; /* OP_STATE */
    uint64_t seq;       /* OP_CHANGE */
    int32_t partition;  /* OP_CHECKPOINT */
    int64_t offset;
} op_t;

static int push_u64(uint64_t **arr, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        uint64_t *p = realloc(*arr, ncap * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        *arr = p;
        *cap = ncap;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

static void remove_u64(uint64_t *arr, size_t *n, uint64_t v)
{
    for (size_t i = 0; i < *n; i++) {
        if (arr[i] == v) {
            arr[i] = arr[--*n];
            return;
        }
    }
}

static bool has_u64(const uint64_t *arr, size_t n, uint64_t v)
{
    for (size_t i = 0; i < n; i++) {
        if (arr[i] == v) {
            return true;
        }
    }
    return false;
}

static void remember_delivered(agg_daemon_t *d, const agg_owed_ref_t *ref)
{
    if (d->ndelivered == d->delivered_cap) {
        size_t cap = d->delivered_cap ? d->delivered_cap * 2 : 1024;
        agg_owed_ref_t *p = realloc(d->delivered, cap * sizeof(*p));
        if (!p) {
            /* Not remembered: the state stays owed and is published once more later. */
            inflight_del(d->inflight, ref);
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
    op_t *op = msg->_private;
    if (!op) {
        return;
    }
    bool ok = msg->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    switch (op->kind) {
    case OP_STATE:
        if (ok) {
            tc_counter_inc(d->m.rollups_published);
            remember_delivered(d, &op->ref);
        } else {
            tc_counter_inc(d->m.rollup_failures);
            inflight_del(d->inflight, &op->ref);
        }
        break;
    case OP_CHANGE:
        if (ok &&
            push_u64(&d->changes_done, &d->nchanges_done, &d->changes_done_cap, op->seq) == 0) {
            tc_counter_inc(d->m.changes_published);
        } else {
            if (!ok) {
                tc_counter_inc(d->m.rollup_failures);
            }
            remove_u64(d->changes_inflight, &d->nchanges_inflight, op->seq);
        }
        break;
    case OP_CHECKPOINT:
        if (ok) {
            tc_counter_inc(d->m.checkpoints_published);
            if (op->partition >= 0 && op->partition < AGG_MAX_PARTITIONS &&
                op->offset > d->checkpoint_sent[op->partition]) {
                d->checkpoint_sent[op->partition] = op->offset;
            }
        } else {
            tc_counter_inc(d->m.rollup_failures);
        }
        break;
    }
    if (!ok) {
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&d->rollup_log, tc_mono_us(), &suppressed)) {
            tc_logj(TC_LOG_WARN, "publish.delivery_failed",
                    json_pack("{s:I}", "suppressed", (json_int_t)suppressed),
                    "rollup delivery failed: %s; it stays owed", rd_kafka_err2str(msg->err));
        }
    }
    free(op);
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
    for (size_t i = 0; i < AGG_MAX_PARTITIONS; i++) {
        d->checkpoint_sent[i] = -1;
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
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "linger.ms", "5", err, sizeof(err)) != 0 ||
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "compression.type", "lz4", err,
                                  sizeof(err)) != 0) {
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

/* Hands one record to the producer (copied). Returns 0, or an error when the queue is full
 * (`op` is then freed). */
static int produce(agg_daemon_t *d, const void *key, size_t klen, const void *value, size_t vlen,
                   op_t *op)
{
    /* rd_kafka_produceva rather than producev: the RD_KAFKA_V_* macros are GNU statement
     * expressions, which -Wpedantic refuses under clang. */
    rd_kafka_vu_t vu[6];
    memset(vu, 0, sizeof(vu));
    vu[0].vtype = RD_KAFKA_VTYPE_RKT;
    vu[0].u.rkt = d->rollups_topic;
    vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vu[1].u.i32 = RD_KAFKA_PARTITION_UA;
    vu[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[2].u.i = RD_KAFKA_MSG_F_COPY;
    vu[3].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[3].u.mem.ptr = (void *)value;
    vu[3].u.mem.size = vlen;
    vu[4].vtype = RD_KAFKA_VTYPE_KEY;
    vu[4].u.mem.ptr = (void *)key;
    vu[4].u.mem.size = klen;
    vu[5].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[5].u.ptr = op;
    rd_kafka_error_t *err = rd_kafka_produceva(d->producer, vu, 6);
    if (err) {
        rd_kafka_error_destroy(err);
        free(op);
        return TC_EFULL;
    }
    return 0;
}

typedef struct {
    agg_daemon_t *d;
    size_t handed;
    bool full;
} tick_ctx_t;

static bool in_flight(void *ctx, const agg_owed_ref_t *ref)
{
    tick_ctx_t *t = ctx;
    slot_t *e = inflight_find(t->d->inflight, ref->key, ref->klen);
    return e && e->revision >= revision_of(ref);
}

static int publish_item(void *ctx, const agg_publish_item_t *item)
{
    tick_ctx_t *t = ctx;
    agg_daemon_t *d = t->d;
    if (t->handed >= MAX_PER_TICK) {
        return 1;
    }
    if (!item->value) {
        /* The stored state is gone or corrupt: nothing to publish; clear it like a
         * delivered one at the next commit. */
        agg_owed_ref_t r = item->ref;
        r.closed = true;
        remember_delivered(d, &r);
        return 0;
    }
    op_t *op = calloc(1, sizeof(*op));
    if (!op || inflight_put(d->inflight, &item->ref) != 0) {
        free(op);
        return 1; /* out of memory: try again next tick */
    }
    op->kind = OP_STATE;
    op->ref = item->ref;
    if (produce(d, item->key, item->klen, item->value, item->vlen, op) != 0) {
        inflight_del(d->inflight, &item->ref);
        t->full = true;
        return 1;
    }
    t->handed++;
    return 0;
}

static int publish_checkpoint(agg_daemon_t *d, const agg_checkpoint_t *cp)
{
    Tocsin__V1__Checkpoint pb = TOCSIN__V1__CHECKPOINT__INIT;
    pb.group = d->cfg.group_id;
    pb.topic = d->cfg.topic_events;
    pb.partition = (uint32_t)cp->partition;
    pb.offset = cp->offset;
    pb.dedupe_from = cp->dedupe_from <= cp->offset ? cp->dedupe_from : cp->offset;
    pb.time_us = tc_now_us();
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = d->producer_id;
    r.revision = (uint64_t)cp->offset;
    r.body_case = TOCSIN__V1__ROLLUP__BODY_CHECKPOINT;
    r.checkpoint = &pb;
    uint8_t buf[1024];
    size_t n = tocsin__v1__rollup__get_packed_size(&r);
    if (n > sizeof(buf)) {
        return TC_ETOOBIG;
    }
    tocsin__v1__rollup__pack(&r, buf);
    char key[AGG_TOPIC_MAX + 64];
    int klen = snprintf(key, sizeof(key), "%c%c$checkpoint:%s:%d", 0, 0, d->cfg.topic_events,
                        (int)cp->partition);
    op_t *op = calloc(1, sizeof(*op));
    if (!op) {
        return TC_ENOMEM;
    }
    op->kind = OP_CHECKPOINT;
    op->partition = cp->partition;
    op->offset = cp->offset;
    return produce(d, key, (size_t)klen, buf, n, op);
}

void agg_publish_tick(agg_daemon_t *d, bool force)
{
    int64_t now = tc_mono_us();
    if (!d->producer || (!force && now - d->last_tick_us < d->cfg.publish_interval_ms * 1000)) {
        return;
    }
    d->last_tick_us = now;
    tick_ctx_t t = {d, 0, false};
    agg_checkpoint_t cps[AGG_MAX_PARTITIONS];
    int rc = agg_store_owed(d->store, tc_now_us(), d->producer_id, in_flight, publish_item, &t,
                            d->owned, d->nowned, cps);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "publish.tick", "reading owed states failed: %s", tc_strerror(rc));
        return;
    }
    for (size_t i = 0; i < d->nowned; i++) {
        const agg_checkpoint_t *cp = &cps[i];
        if (cp->offset >= 0 && cp->partition >= 0 && cp->partition < AGG_MAX_PARTITIONS &&
            cp->offset > d->checkpoint_sent[cp->partition]) {
            publish_checkpoint(d, cp);
        }
    }
    if (t.full) {
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&d->rollup_log, tc_mono_us(), &suppressed)) {
            tc_log(TC_LOG_WARN, "publish.queue_full",
                   "producer queue full after %zu states; the rest next tick", t.handed);
        }
    }
}

static int publish_change(void *ctx, uint64_t seq, const uint8_t *key, size_t klen,
                          const uint8_t *value, size_t vlen)
{
    agg_daemon_t *d = ctx;
    if (has_u64(d->changes_inflight, d->nchanges_inflight, seq) ||
        has_u64(d->changes_done, d->nchanges_done, seq)) {
        return 0;
    }
    op_t *op = calloc(1, sizeof(*op));
    if (!op ||
        push_u64(&d->changes_inflight, &d->nchanges_inflight, &d->changes_inflight_cap, seq) != 0) {
        free(op);
        return 1;
    }
    op->kind = OP_CHANGE;
    op->seq = seq;
    if (produce(d, key, klen, value, vlen, op) != 0) {
        remove_u64(d->changes_inflight, &d->nchanges_inflight, seq);
        return 1;
    }
    return 0;
}

void agg_publish_changes(agg_daemon_t *d)
{
    if (!d->producer) {
        return;
    }
    int rc = agg_store_changes(d->store, 0, publish_change, d);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "publish.changes", "reading changes failed: %s", tc_strerror(rc));
    }
}

void agg_publish_committed(agg_daemon_t *d)
{
    for (size_t i = 0; i < d->ndelivered; i++) {
        inflight_del(d->inflight, &d->delivered[i]);
    }
    d->ndelivered = 0;
    for (size_t i = 0; i < d->nchanges_done; i++) {
        remove_u64(d->changes_inflight, &d->nchanges_inflight, d->changes_done[i]);
    }
    d->nchanges_done = 0;
}

size_t agg_publish_inflight(const agg_daemon_t *d)
{
    return (d->inflight ? d->inflight->n : 0) + d->nchanges_inflight;
}

void agg_publish_flush(agg_daemon_t *d, int64_t timeout_ms)
{
    if (!d->producer) {
        return;
    }
    int64_t deadline = tc_mono_us() + timeout_ms * 1000;
    agg_publish_changes(d);
    agg_publish_tick(d, true);
    while (tc_mono_us() < deadline) {
        agg_publish_poll(d, 20);
        if (d->ndelivered > 0 || d->nchanges_done > 0) {
            d->retry_at_us = 0;
            agg_commit(d);
        }
        if (agg_publish_inflight(d) == 0) {
            /* Delivered and cleared: one more tick publishes the checkpoints they allow. */
            agg_publish_tick(d, true);
            rd_kafka_flush(
                d->producer,
                (int)((deadline - tc_mono_us()) / 1000 > 0 ? (deadline - tc_mono_us()) / 1000 : 0));
            break;
        }
    }
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
    free(d->changes_done);
    free(d->changes_inflight);
    d->changes_done = d->changes_inflight = NULL;
    d->nchanges_done = d->nchanges_inflight = 0;
    d->changes_done_cap = d->changes_inflight_cap = 0;
}
