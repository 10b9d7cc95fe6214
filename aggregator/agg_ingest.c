/*
 * agg_ingest.c — the consumer side of tocsin-aggregator: a consumer group on topic.events
 * whose offsets live in LMDB, next to the results they produced.
 *
 * Offsets: enable.auto.commit and enable.auto.offset.store are off. On ASSIGN the rebalance
 * callback reads each partition's next offset from LMDB (the beginning when none is stored)
 * and assigns from there; on REVOKE it first commits what is pending. A batch is applied in
 * one LMDB write transaction together with the new offsets (agg_store_apply), so a crash
 * at any point leaves LMDB either before or after the whole batch, and the consumer resumes
 * exactly after what was counted. The offsets are also committed to Kafka asynchronously,
 * only so that the group's lag is visible to the usual tools.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_daemon.h"
#include "tc_error.h"
#include "tc_kafka.h"
#include "tc_signal.h"
#include "tc_util.h"

#define WATERMARK_TIMEOUT_MS 5000
#define RETRY_AFTER_FAILED_COMMIT_US 1000000

static const char *result_name(agg_msg_result_t r)
{
    switch (r) {
    case AGG_MSG_INVALID:
        return "invalid";
    case AGG_MSG_CONFLICT:
        return "conflict";
    default:
        return "other";
    }
}

/*
 * Sets each newly assigned partition's start from LMDB. A stored offset beyond the
 * partition's end means the broker no longer has the log the offset was taken from (an
 * embedded tocsin-bus restarted, or a topic recreated): the partition starts over at its
 * beginning, and the stored offset is reset so the new records are not taken for old ones.
 */
static void set_start_offsets(agg_daemon_t *d, rd_kafka_t *rk,
                              rd_kafka_topic_partition_list_t *parts)
{
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t next = 0, lo = 0, hi = 0;
        int rc = agg_store_offset_get(d->store, p->topic, p->partition, &next);
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &lo,
                                                                   &hi, WATERMARK_TIMEOUT_MS);
        if (rc != 0) {
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
            if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                tc_log(TC_LOG_INFO, "ingest.assign",
                       "%s/%d: no stored offset; from the beginning of the log (offset %" PRId64
                       ", %" PRId64 " record(s))",
                       p->topic, (int)p->partition, lo, hi - lo);
            } else {
                tc_log(TC_LOG_INFO, "ingest.assign", "%s/%d: no stored offset; from the beginning",
                       p->topic, (int)p->partition);
            }
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && hi < next) {
            tc_log(TC_LOG_WARN, "ingest.offset_reset",
                   "%s/%d: stored offset %" PRId64 " is beyond the log's end %" PRId64
                   "; the broker lost its log; starting over at %" PRId64,
                   p->topic, (int)p->partition, next, hi, lo);
            if (agg_store_offset_set(d->store, p->topic, p->partition, lo) == 0) {
                tc_counter_inc(d->m.offset_resets);
                next = lo;
            }
        } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR && lo > next) {
            tc_log(TC_LOG_ERROR, "ingest.records_lost",
                   "%s/%d: records %" PRId64 "..%" PRId64
                   " were deleted from the log before they were consumed",
                   p->topic, (int)p->partition, next, lo - 1);
        }
        p->offset = next;
        tc_log(TC_LOG_INFO, "ingest.assign", "%s/%d: from stored offset %" PRId64, p->topic,
               (int)p->partition, next);
    }
}

static void update_assigned(agg_daemon_t *d, rd_kafka_t *rk)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(rk, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a) {
        tc_gauge_set(d->m.assigned_partitions, a->cnt);
        rd_kafka_topic_partition_list_destroy(a);
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    agg_daemon_t *d = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        set_start_offsets(d, rk, parts);
        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            aerr = rd_kafka_assign(rk, parts);
        }
        tc_log(TC_LOG_INFO, "ingest.assigned", "%d partition(s) assigned", parts->cnt);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        /* What was consumed from these partitions is applied before they go. If that
         * fails, the records are dropped unapplied: their offsets were not stored either,
         * so whoever owns the partitions next reads them again. */
        d->retry_at_us = 0;
        if (d->npending > 0 && agg_ingest_commit(d) != 0) {
            for (size_t i = 0; i < d->npending; i++) {
                rd_kafka_message_destroy(d->pending[i]);
            }
            d->npending = 0;
            tc_log(TC_LOG_WARN, "ingest.revoke",
                   "pending records could not be committed; they will be read again");
        }
        tc_log(TC_LOG_INFO, "ingest.revoked", "%d partition(s) revoked%s", parts->cnt,
               rd_kafka_assignment_lost(rk) ? " (lost)" : "");
        if (cooperative) {
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            aerr = rd_kafka_assign(rk, NULL);
        }
        d->paused = false;
        break;
    default:
        tc_log(TC_LOG_ERROR, "ingest.rebalance", "rebalance failed: %s", rd_kafka_err2str(err));
        aerr = rd_kafka_assign(rk, NULL);
        break;
    }
    if (error) {
        tc_log(TC_LOG_ERROR, "ingest.assign", "%s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    if (aerr) {
        tc_log(TC_LOG_ERROR, "ingest.assign", "%s", rd_kafka_err2str(aerr));
    }
    update_assigned(d, rk);
}

static void on_consumer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    agg_daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        tc_log(TC_LOG_ERROR, "kafka.fatal", "consumer: %s: %s; stopping", rd_kafka_err2name(orig),
               buf);
        d->fatal = true;
        tc_signal_request_stop();
        return;
    }
    uint64_t suppressed = 0;
    if (tc_log_limit_allow(&d->kafka_log, tc_mono_us(), &suppressed)) {
        tc_logj(TC_LOG_WARN, "kafka.error",
                json_pack("{s:I}", "suppressed", (json_int_t)suppressed), "consumer: %s: %s",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    }
}

static void on_offset_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    /* Kafka's copy of the offsets is for lag visibility only; a failure changes nothing. */
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        tc_log(TC_LOG_DEBUG, "ingest.kafka_commit", "offset commit to Kafka failed: %s",
               rd_kafka_err2str(err));
    }
}

int agg_ingest_start(agg_daemon_t *d, const char *bootstrap)
{
    char err[512];
    d->pending_cap = (size_t)d->cfg.poll_max_messages;
    d->pending = calloc(d->pending_cap, sizeof(*d->pending));
    d->msgs = calloc(d->pending_cap, sizeof(*d->msgs));
    if (!d->pending || !d->msgs) {
        return TC_ENOMEM;
    }
    d->invalid_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10000000);
    d->kafka_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10000000);
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new(bootstrap, d->instance_id, &d->cfg.kafka, err, sizeof(err));
    if (!conf) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        return TC_EINVAL;
    }
    /* Offsets are ours (LMDB): nothing may commit or store them behind our back. */
    static const char *const fixed[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            tc_log(TC_LOG_ERROR, "kafka.config", "%s: %s", fixed[i][0], err);
            rd_kafka_conf_destroy(conf);
            return TC_EINVAL;
        }
    }
    if (rd_kafka_conf_set(conf, "group.id", d->cfg.group_id, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "auto.offset.reset", "earliest", err,
                                  sizeof(err)) != 0) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EINVAL;
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_consumer_error);
    rd_kafka_conf_set_offset_commit_cb(conf, on_offset_commit);
    d->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!d->consumer) {
        tc_log(TC_LOG_ERROR, "kafka.consumer", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    /* rd_kafka_new owns conf now. Callbacks are served by rd_kafka_consumer_poll. */
    rd_kafka_poll_set_consumer(d->consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, d->cfg.topic_events, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(d->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (serr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tc_log(TC_LOG_ERROR, "kafka.subscribe", "%s: %s", d->cfg.topic_events,
               rd_kafka_err2str(serr));
        return TC_EKAFKA;
    }
    tc_log(TC_LOG_INFO, "ingest.subscribed", "group %s on %s", d->cfg.group_id,
           d->cfg.topic_events);
    return 0;
}

/* Keeps a consumed record. Past poll.max_messages only while consumption is paused (a
 * record the consumer had already fetched); it is never dropped, since a dropped record's
 * offset would be stepped over by the next one's. */
static int keep(agg_daemon_t *d, rd_kafka_message_t *msg)
{
    if (d->npending == d->pending_cap) {
        size_t cap = d->pending_cap * 2;
        rd_kafka_message_t **p = realloc(d->pending, cap * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        d->pending = p;
        agg_msg_t *m = realloc(d->msgs, cap * sizeof(*m));
        if (!m) {
            return TC_ENOMEM;
        }
        d->msgs = m;
        d->pending_cap = cap;
    }
    d->pending[d->npending++] = msg;
    return 0;
}

void agg_ingest_poll(agg_daemon_t *d)
{
    int64_t deadline = tc_mono_us() + d->cfg.poll_max_wait_ms * 1000;
    size_t max = (size_t)d->cfg.poll_max_messages;
    for (;;) {
        int64_t left_ms = (deadline - tc_mono_us()) / 1000;
        if (tc_signal_stop_requested() || (!d->paused && d->npending >= max)) {
            return;
        }
        /* While paused this only serves callbacks until the deadline. */
        rd_kafka_message_t *msg =
            rd_kafka_consumer_poll(d->consumer, left_ms > 0 ? (int)left_ms : 0);
        if (!msg) {
            if (left_ms <= 0) {
                return;
            }
            continue;
        }
        if (msg->err) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                uint64_t suppressed = 0;
                if (tc_log_limit_allow(&d->kafka_log, tc_mono_us(), &suppressed)) {
                    tc_logj(TC_LOG_WARN, "kafka.consume",
                            json_pack("{s:I}", "suppressed", (json_int_t)suppressed), "%s",
                            rd_kafka_message_errstr(msg));
                }
            }
            rd_kafka_message_destroy(msg);
            continue;
        }
        /* The consumer may hand back records of a partition just revoked and assigned
         * again; the store skips whatever lies below the stored offset. */
        if (keep(d, msg) != 0) {
            /* Out of memory: without the record the batch cannot be applied in order.
             * Stop; the records are read again after the restart. */
            tc_log(TC_LOG_ERROR, "ingest.oom", "out of memory holding consumed records");
            rd_kafka_message_destroy(msg);
            d->fatal = true;
            tc_signal_request_stop();
            return;
        }
        if (left_ms <= 0) {
            return;
        }
    }
}

static void log_refused(agg_daemon_t *d, const agg_msg_t *m)
{
    uint64_t suppressed = 0;
    if (!tc_log_limit_allow(&d->invalid_log, tc_mono_us(), &suppressed)) {
        return;
    }
    tc_logj(TC_LOG_WARN, "ingest.record_refused",
            json_pack("{s:s, s:i, s:I, s:s, s:s, s:I}", "topic", m->topic, "partition",
                      (int)m->partition, "offset", (json_int_t)m->offset, "result",
                      result_name(m->result), "reason", m->reason ? m->reason : "", "suppressed",
                      (json_int_t)suppressed),
            "record refused: %s", m->reason ? m->reason : "invalid");
}

/* Commits the applied offsets to Kafka, asynchronously, for lag visibility only. */
static void kafka_commit(agg_daemon_t *d)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < d->npending; i++) {
        const rd_kafka_message_t *msg = d->pending[i];
        const char *topic = rd_kafka_topic_name(msg->rkt);
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(list, topic, msg->partition);
        if (!p) {
            p = rd_kafka_topic_partition_list_add(list, topic, msg->partition);
        }
        if (msg->offset + 1 > p->offset) {
            p->offset = msg->offset + 1;
        }
    }
    if (list->cnt > 0) {
        rd_kafka_commit(d->consumer, list, 1);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void set_paused(agg_daemon_t *d, bool pause)
{
    if (d->paused == pause || !d->consumer) {
        return;
    }
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(d->consumer, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a) {
        return;
    }
    if (pause) {
        rd_kafka_pause_partitions(d->consumer, a);
    } else {
        rd_kafka_resume_partitions(d->consumer, a);
    }
    rd_kafka_topic_partition_list_destroy(a);
    d->paused = pause;
}

int agg_ingest_commit(agg_daemon_t *d)
{
    if (d->npending == 0 && d->ndelivered == 0) {
        return 0;
    }
    int64_t t0 = tc_mono_us();
    if (d->retry_at_us && t0 < d->retry_at_us) {
        return atomic_load(&d->last_commit_rc);
    }
    for (size_t i = 0; i < d->npending; i++) {
        const rd_kafka_message_t *msg = d->pending[i];
        agg_msg_t *m = &d->msgs[i];
        memset(m, 0, sizeof(*m));
        m->topic = rd_kafka_topic_name(msg->rkt);
        m->partition = msg->partition;
        m->offset = msg->offset;
        m->value = msg->payload;
        m->len = msg->len;
    }
    agg_batch_stats_t st;
    int rc = agg_store_apply(d->store, d->msgs, d->npending, d->delivered, d->ndelivered,
                             tc_now_us(), &st);
    if (rc != 0) {
        tc_counter_inc(d->m.commit_failures);
        atomic_store(&d->last_commit_rc, rc);
        d->retry_at_us = tc_mono_us() + RETRY_AFTER_FAILED_COMMIT_US;
        tc_log(TC_LOG_ERROR, "ingest.commit_failed",
               "LMDB commit of %zu record(s) failed: %s; consumption paused, retrying", d->npending,
               tc_strerror(rc));
        set_paused(d, true);
        return rc;
    }
    atomic_store(&d->last_commit_rc, 0);
    d->retry_at_us = 0;
    set_paused(d, false);
    tc_counter_inc(d->m.commits);
    tc_histogram_observe(d->m.commit_seconds, (double)(tc_mono_us() - t0) / 1e6);
    tc_counter_add(d->m.events_consumed, st.consumed);
    tc_counter_add(d->m.events_applied, st.applied);
    tc_counter_add(d->m.duplicates, st.duplicates);
    tc_counter_add(d->m.decode_errors, st.invalid);
    tc_counter_add(d->m.late_events, st.late);
    tc_counter_add(d->m.stale_events, st.stale);
    tc_counter_add(d->m.ignored_events, st.ignored);
    tc_counter_add(d->m.conflicts, st.conflicts);
    tc_counter_add(d->m.corrupt_values, st.corrupt);
    if (st.invalid || st.conflicts) {
        for (size_t i = 0; i < d->npending; i++) {
            if (d->msgs[i].result == AGG_MSG_INVALID || d->msgs[i].result == AGG_MSG_CONFLICT) {
                log_refused(d, &d->msgs[i]);
            }
        }
    }
    if (d->npending > 0) {
        kafka_commit(d);
        tc_logj(TC_LOG_DEBUG, "ingest.committed",
                json_pack("{s:I, s:I, s:I, s:I}", "records", (json_int_t)st.consumed, "applied",
                          (json_int_t)st.applied, "duplicates", (json_int_t)st.duplicates,
                          "buckets", (json_int_t)st.buckets_written),
                "batch committed");
    }
    for (size_t i = 0; i < d->npending; i++) {
        rd_kafka_message_destroy(d->pending[i]);
    }
    d->npending = 0;
    agg_publish_cleared(d, d->delivered, d->ndelivered);
    d->ndelivered = 0;
    return 0;
}

void agg_ingest_stop(agg_daemon_t *d)
{
    if (!d->consumer) {
        return;
    }
    d->retry_at_us = 0;
    agg_ingest_commit(d);
    /* Leaving the group runs the REVOKE callback, which commits anything still pending. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(d->consumer);
    if (err) {
        tc_log(TC_LOG_WARN, "ingest.close", "%s", rd_kafka_err2str(err));
    }
    for (size_t i = 0; i < d->npending; i++) {
        rd_kafka_message_destroy(d->pending[i]);
    }
    d->npending = 0;
    rd_kafka_destroy(d->consumer);
    d->consumer = NULL;
    tc_log(TC_LOG_INFO, "ingest.closed", "consumer closed");
}
