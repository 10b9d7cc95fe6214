/*
 * agg_ingest.c — the group consumer of topic.events, the assignment of its partitions, and
 * the commit of every batch (owned records and the view's records together).
 *
 * Offsets live in LMDB next to the states they produced: enable.auto.commit and
 * enable.auto.offset.store are off, and the eager rebalance protocol is used (every
 * rebalance revokes every partition), so a partition always starts where LMDB says.
 *
 * On ASSIGN the view is first brought up to date with everything already published on
 * topic.rollups (so a checkpoint a previous owner published before it let go is seen),
 * then each partition starts at the larger of our stored offset and its latest checkpoint
 * (agg_store_partition_start), reading from a little earlier so that the dedupe set refills
 * with the ids of the dedupe window. On REVOKE what is pending is committed, what the
 * partitions owe is published (for a bounded time, so the next owner starts close to where
 * we stopped), and their owed marks are dropped.
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
#define REVOKE_FLUSH_MS 2000
#define LOCAL_BATCH 4096

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

/* The first (`which` RD_KAFKA_OFFSET_BEGINNING) or next (RD_KAFKA_OFFSET_END) offset of
 * each partition of `parts`, in one ListOffsets request per broker; -1 where unknown. */
static void log_bounds(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts, int64_t which,
                       int64_t *out)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    for (int i = 0; i < l->cnt; i++) {
        l->elems[i].offset = which;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, WATERMARK_TIMEOUT_MS);
    for (int i = 0; i < l->cnt; i++) {
        out[i] =
            err == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[i].err == 0 ? l->elems[i].offset : -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Sets where each newly assigned partition starts (see the header comment). */
static void set_start_offsets(agg_daemon_t *d, rd_kafka_t *rk,
                              rd_kafka_topic_partition_list_t *parts)
{
    int64_t *los = calloc((size_t)parts->cnt + 1, sizeof(*los));
    int64_t *his = calloc((size_t)parts->cnt + 1, sizeof(*his));
    if (los && his) {
        log_bounds(rk, parts, RD_KAFKA_OFFSET_BEGINNING, los);
        log_bounds(rk, parts, RD_KAFKA_OFFSET_END, his);
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t start = -1, from = -1, lo = los ? los[i] : -1, hi = his ? his[i] : -1;
        const char *source = "none";
        int rc = agg_store_partition_start(d->store, p->partition, &start, &from, &source);
        if (rc != 0) {
            /* Without LMDB nothing can be applied; the commit will fail and pause too. */
            tc_log(TC_LOG_ERROR, "ingest.assign", "%s/%d: reading the stored offset failed: %s",
                   p->topic, (int)p->partition, tc_strerror(rc));
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
            continue;
        }
        rd_kafka_resp_err_t err =
            lo >= 0 && hi >= 0 ? RD_KAFKA_RESP_ERR_NO_ERROR : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
        if (err) {
            err = rd_kafka_query_watermark_offsets(rk, p->topic, p->partition, &lo, &hi,
                                                   WATERMARK_TIMEOUT_MS);
        }
        if (start < 0) {
            p->offset = RD_KAFKA_OFFSET_BEGINNING;
            tc_log(TC_LOG_INFO, "ingest.assign",
                   "%s/%d: no stored offset and no checkpoint; from the beginning of the log",
                   p->topic, (int)p->partition);
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && hi < start) {
            tc_log(TC_LOG_WARN, "ingest.offset_reset",
                   "%s/%d: stored offset %" PRId64 " is beyond the log's end %" PRId64
                   "; the broker lost its log; starting over at %" PRId64,
                   p->topic, (int)p->partition, start, hi, lo);
            if (agg_store_offset_set(d->store, p->topic, p->partition, lo) == 0) {
                tc_counter_inc(d->m.offset_resets);
            }
            start = from = lo;
        } else if (err == RD_KAFKA_RESP_ERR_NO_ERROR && lo > from) {
            if (lo > start) {
                tc_log(TC_LOG_ERROR, "ingest.records_lost",
                       "%s/%d: records %" PRId64 "..%" PRId64
                       " were deleted from the log before they were consumed",
                       p->topic, (int)p->partition, start, lo - 1);
            } else {
                tc_log(TC_LOG_WARN, "ingest.dedupe_partial",
                       "%s/%d: the log no longer holds the dedupe window's records %" PRId64
                       "..%" PRId64 "; duplicates of them are not recognised",
                       p->topic, (int)p->partition, from, lo - 1);
            }
            from = lo;
        }
        if (strcmp(source, "a checkpoint") == 0) {
            tc_counter_inc(d->m.takeovers);
        }
        p->offset = from;
        tc_log(TC_LOG_INFO, "ingest.assign",
               "%s/%d: resuming at %" PRId64 " (from %s), reading from %" PRId64
               " to refill the dedupe set",
               p->topic, (int)p->partition, start, source, from);
    }
    free(los);
    free(his);
}

static void set_owned(agg_daemon_t *d, const rd_kafka_topic_partition_list_t *parts)
{
    d->nowned = 0;
    for (int i = 0; parts && i < parts->cnt && d->nowned < AGG_MAX_PARTITIONS; i++) {
        if (parts->elems[i].partition >= 0 && parts->elems[i].partition < AGG_MAX_PARTITIONS) {
            d->owned[d->nowned++] = parts->elems[i].partition;
            d->checkpoint_sent[parts->elems[i].partition] = -1;
        }
    }
    tc_gauge_set(d->m.assigned_partitions, (double)d->nowned);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    agg_daemon_t *d = opaque;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS: {
        int64_t t0 = tc_mono_us();
        if (agg_view_catch_up(d, d->cfg.view_catchup_ms) != 0) {
            tc_log(TC_LOG_WARN, "ingest.view_behind",
                   "the view did not read every published rollup within %" PRId64
                   " ms; starting from what it holds",
                   d->cfg.view_catchup_ms);
        }
        set_start_offsets(d, rk, parts);
        aerr = rd_kafka_assign(rk, parts);
        set_owned(d, aerr ? NULL : parts);
        tc_log(TC_LOG_INFO, "ingest.assigned",
               "%d partition(s) assigned (view caught up in %.1f ms)", parts->cnt,
               (double)(tc_mono_us() - t0) / 1000.0);
        break;
    }
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        /* What was consumed is applied before the partitions go. If that fails, the
         * records are dropped unapplied: their offsets were not stored either, so whoever
         * owns the partitions next reads them again. */
        d->retry_at_us = 0;
        if (agg_commit(d) != 0) {
            for (size_t i = 0; i < d->npending; i++) {
                rd_kafka_message_destroy(d->pending[i]);
            }
            d->npending = 0;
            tc_log(TC_LOG_WARN, "ingest.revoke",
                   "pending records could not be committed; they will be read again");
        }
        if (!rd_kafka_assignment_lost(rk)) {
            agg_publish_flush(d, REVOKE_FLUSH_MS);
        }
        for (int i = 0; i < parts->cnt; i++) {
            agg_store_partition_revoked(d->store, parts->elems[i].partition);
        }
        tc_log(TC_LOG_INFO, "ingest.revoked", "%d partition(s) revoked%s", parts->cnt,
               rd_kafka_assignment_lost(rk) ? " (lost)" : "");
        aerr = rd_kafka_assign(rk, NULL);
        set_owned(d, NULL);
        d->paused = false;
        break;
    default:
        tc_log(TC_LOG_ERROR, "ingest.rebalance", "rebalance failed: %s", rd_kafka_err2str(err));
        aerr = rd_kafka_assign(rk, NULL);
        set_owned(d, NULL);
        break;
    }
    if (aerr) {
        tc_log(TC_LOG_ERROR, "ingest.assign", "%s", rd_kafka_err2str(aerr));
    }
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
    d->pending_cap = (size_t)d->cfg.poll_max_messages + LOCAL_BATCH;
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
    /* Offsets are ours (LMDB): nothing may commit or store them behind our back; and every
     * rebalance revokes everything, so every partition restarts from LMDB. */
    static const char *const fixed[][2] = {
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"partition.assignment.strategy", "range,roundrobin"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            tc_log(TC_LOG_ERROR, "kafka.config", "%s: %s", fixed[i][0], err);
            rd_kafka_conf_destroy(conf);
            return TC_EINVAL;
        }
    }
    /* queued.min.messages: librdkafka stops prefetching below its default (100,000 over
     * every partition) while a batch is being applied, which halves the throughput. */
    if (rd_kafka_conf_set(conf, "group.id", d->cfg.group_id, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "auto.offset.reset", "earliest", err,
                                  sizeof(err)) != 0 ||
        tc_kafka_conf_set_default(conf, &d->cfg.kafka, "queued.min.messages", "1000000", err,
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
    /* rd_kafka_new owns conf now. Callbacks are served by the consumer queue's polls. */
    rd_kafka_poll_set_consumer(d->consumer);
    d->consumer_queue = rd_kafka_queue_get_consumer(d->consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, d->cfg.topic_events, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(d->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (!d->consumer_queue || serr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        tc_log(TC_LOG_ERROR, "kafka.subscribe", "%s: %s", d->cfg.topic_events,
               rd_kafka_err2str(serr));
        return TC_EKAFKA;
    }
    tc_log(TC_LOG_INFO, "ingest.subscribed", "group %s on %s", d->cfg.group_id,
           d->cfg.topic_events);
    return 0;
}

/* Makes room for `n` more pending records (past poll.max_messages only while paused or
 * in the same poll: a record is never dropped, since its offset would be stepped over). */
static int reserve(agg_daemon_t *d, size_t n)
{
    if (d->npending + n <= d->pending_cap) {
        return 0;
    }
    size_t cap = d->pending_cap * 2;
    while (cap < d->npending + n) {
        cap *= 2;
    }
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
    return 0;
}

void agg_ingest_poll(agg_daemon_t *d, int wait_ms)
{
    rd_kafka_message_t *local[LOCAL_BATCH];
    size_t room = (size_t)d->cfg.poll_max_messages > d->npending
                      ? (size_t)d->cfg.poll_max_messages - d->npending
                      : 0;
    if (room == 0 && !d->paused) {
        return;
    }
    if (room > LOCAL_BATCH || d->paused) {
        room = LOCAL_BATCH;
    }
    /* A rebalance may run inside this poll (its callback commits what was pending before).
     * Records fetched before a revoke may come back in the same array as records of the new
     * assignment: they are kept, in order. Those of partitions no longer ours are dropped at
     * the commit; those of partitions ours again either extend the stored offset or lie
     * below it (stale: not applied twice), so nothing is lost and nothing counted twice. */
    ssize_t n = rd_kafka_consume_batch_queue(d->consumer_queue, wait_ms, local, room);
    if (n <= 0) {
        return;
    }
    bool drop = false;
    if (reserve(d, (size_t)n) != 0) {
        tc_log(TC_LOG_ERROR, "ingest.oom", "out of memory holding consumed records");
        d->fatal = true;
        tc_signal_request_stop();
        drop = true;
    }
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *msg = local[i];
        if (drop || msg->err) {
            if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
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
        d->pending[d->npending++] = msg;
    }
}

agg_format_t agg_record_format(const rd_kafka_message_t *msg)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *value = NULL;
    size_t len = 0;
    bool present = rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                   rd_kafka_header_get_last(hdrs, AGG_FORMAT_HEADER, &value, &len) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
    return agg_format_of(present, value, len);
}

static void log_refused(agg_daemon_t *d, const char *topic, const agg_msg_t *m)
{
    uint64_t suppressed = 0;
    if (!tc_log_limit_allow(&d->invalid_log, tc_mono_us(), &suppressed)) {
        return;
    }
    tc_logj(TC_LOG_WARN, "ingest.record_refused",
            json_pack("{s:s, s:i, s:I, s:s, s:s, s:I}", "topic", topic, "partition",
                      (int)m->partition, "offset", (json_int_t)m->offset, "result",
                      result_name(m->result), "reason", m->reason ? m->reason : "", "suppressed",
                      (json_int_t)suppressed),
            "record refused: %s", m->reason ? m->reason : "invalid");
}

/* Commits the applied offsets to Kafka, asynchronously, for lag visibility only. */
static void kafka_commit(agg_daemon_t *d)
{
    static int64_t next[AGG_MAX_PARTITIONS];
    for (size_t i = 0; i < d->nowned; i++) {
        next[d->owned[i]] = -1;
    }
    for (size_t i = 0; i < d->npending; i++) {
        const rd_kafka_message_t *msg = d->pending[i];
        if (msg->partition >= 0 && msg->partition < AGG_MAX_PARTITIONS &&
            msg->offset + 1 > next[msg->partition]) {
            next[msg->partition] = msg->offset + 1;
        }
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)d->nowned);
    for (size_t i = 0; i < d->nowned; i++) {
        if (next[d->owned[i]] >= 0) {
            rd_kafka_topic_partition_list_add(list, d->cfg.topic_events, d->owned[i])->offset =
                next[d->owned[i]];
        }
    }
    if (list->cnt > 0) {
        rd_kafka_commit(d->consumer, list, 1);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void pause_all(rd_kafka_t *rk, bool pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (!rk || rd_kafka_assignment(rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a) {
        return;
    }
    if (pause) {
        rd_kafka_pause_partitions(rk, a);
    } else {
        rd_kafka_resume_partitions(rk, a);
    }
    rd_kafka_topic_partition_list_destroy(a);
}

static void set_paused(agg_daemon_t *d, bool pause)
{
    if (d->paused == pause) {
        return;
    }
    pause_all(d->consumer, pause);
    pause_all(d->viewer, pause);
    d->paused = pause;
}

static bool owned(const agg_daemon_t *d, int32_t partition)
{
    for (size_t i = 0; i < d->nowned; i++) {
        if (d->owned[i] == partition) {
            return true;
        }
    }
    return false;
}

static void count(agg_daemon_t *d, const agg_batch_stats_t *st)
{
    tc_counter_add(d->m.events_consumed, st->consumed);
    tc_counter_add(d->m.records_consumed, st->records);
    tc_counter_add(d->m.events_applied, st->applied);
    tc_counter_add(d->m.duplicates, st->duplicates);
    tc_counter_add(d->m.decode_errors, st->invalid);
    tc_counter_add(d->m.records_unreadable, st->unreadable);
    tc_counter_add(d->m.late_events, st->late);
    tc_counter_add(d->m.covered, st->covered);
    tc_counter_add(d->m.stale_events, st->stale);
    tc_counter_add(d->m.ignored_events, st->ignored);
    tc_counter_add(d->m.conflicts, st->conflicts);
    tc_counter_add(d->m.records_lost, st->gaps);
    tc_counter_add(d->m.corrupt_values, st->corrupt);
    tc_counter_add(d->m.view_applied, st->view_applied);
    tc_counter_add(d->m.view_old, st->old);
    tc_counter_add(d->m.logs_stored, st->logs_stored);
    tc_counter_add(d->m.issues_new, st->issues_new);
    tc_counter_add(d->m.issues_regressed, st->issues_regressed);
    if (st->gaps) {
        tc_log(TC_LOG_ERROR, "ingest.records_lost",
               "%llu record(s) were missing from the log between the stored offset and the "
               "next record",
               (unsigned long long)st->gaps);
    }
}

int agg_commit(agg_daemon_t *d)
{
    if (d->npending == 0 && d->nvpending == 0 && d->ndelivered == 0 && d->nchanges_done == 0) {
        return 0;
    }
    int64_t t0 = tc_mono_us();
    if (d->retry_at_us && t0 < d->retry_at_us) {
        return atomic_load(&d->last_commit_rc);
    }
    /* Records of partitions no longer ours are dropped: their next owner reads them. */
    size_t n = 0;
    for (size_t i = 0; i < d->npending; i++) {
        rd_kafka_message_t *msg = d->pending[i];
        if (!owned(d, msg->partition)) {
            rd_kafka_message_destroy(msg);
            continue;
        }
        d->pending[n] = msg;
        agg_msg_t *m = &d->msgs[n];
        memset(m, 0, sizeof(*m));
        m->partition = msg->partition;
        m->offset = msg->offset;
        m->value = msg->payload;
        m->len = msg->len;
        m->format = agg_record_format(msg);
        n++;
    }
    d->npending = n;
    size_t nr = 0, nl = 0;
    for (size_t i = 0; i < d->nvpending; i++) {
        rd_kafka_message_t *msg = d->vpending[i];
        bool logs = strcmp(rd_kafka_topic_name(msg->rkt), d->cfg.topic_logs) == 0;
        agg_msg_t *m = logs ? &d->vlogs[nl++] : &d->vrollups[nr++];
        memset(m, 0, sizeof(*m));
        m->partition = msg->partition;
        m->offset = msg->offset;
        m->value = msg->payload;
        m->len = msg->len;
        m->format = logs ? agg_record_format(msg) : AGG_FORMAT_EVENT;
    }
    agg_commit_t c = {
        .events_topic = d->cfg.topic_events,
        .events = d->msgs,
        .nevents = d->npending,
        .rollups_topic = d->cfg.topic_rollups,
        .rollups = d->vrollups,
        .nrollups = nr,
        .logs_topic = d->cfg.topic_logs,
        .logs = d->vlogs,
        .nlogs = nl,
        .delivered = d->delivered,
        .ndelivered = d->ndelivered,
        .changes_done = d->changes_done,
        .nchanges_done = d->nchanges_done,
        .now_us = tc_now_us(),
        .self_producer = d->producer_id,
        .owned = d->owned,
        .nowned = d->nowned,
    };
    agg_batch_stats_t st;
    int rc = agg_store_commit(d->store, &c, &st);
    if (rc != 0) {
        tc_counter_inc(d->m.commit_failures);
        atomic_store(&d->last_commit_rc, rc);
        d->retry_at_us = tc_mono_us() + RETRY_AFTER_FAILED_COMMIT_US;
        tc_log(TC_LOG_ERROR, "ingest.commit_failed",
               "LMDB commit of %zu record(s) failed: %s; consumption paused, retrying",
               d->npending + d->nvpending, tc_strerror(rc));
        set_paused(d, true);
        return rc;
    }
    atomic_store(&d->last_commit_rc, 0);
    d->retry_at_us = 0;
    set_paused(d, false);
    tc_counter_inc(d->m.commits);
    tc_histogram_observe(d->m.commit_seconds, (double)(tc_mono_us() - t0) / 1e6);
    tc_counter_add(d->m.view_records, d->nvpending);
    count(d, &st);
    for (size_t i = 0; i < d->npending; i++) {
        const agg_msg_t *m = &d->msgs[i];
        if (m->result == AGG_MSG_INVALID || m->result == AGG_MSG_CONFLICT) {
            log_refused(d, d->cfg.topic_events, m);
        }
    }
    for (size_t i = 0; i < nr; i++) {
        if (d->vrollups[i].result == AGG_MSG_INVALID) {
            tc_counter_inc(d->m.view_invalid);
            log_refused(d, d->cfg.topic_rollups, &d->vrollups[i]);
        }
    }
    for (size_t i = 0; i < nl; i++) {
        if (d->vlogs[i].result == AGG_MSG_INVALID) {
            log_refused(d, d->cfg.topic_logs, &d->vlogs[i]);
        }
    }
    if (d->npending > 0) {
        kafka_commit(d);
    }
    for (size_t i = 0; i < d->nvpending; i++) {
        rd_kafka_message_t *msg = d->vpending[i];
        bool logs = strcmp(rd_kafka_topic_name(msg->rkt), d->cfg.topic_logs) == 0;
        int idx = (logs ? d->rollups_partitions : 0) + msg->partition;
        if (d->vparts && idx >= 0 && idx < d->rollups_partitions + d->logs_partitions &&
            msg->offset + 1 > d->vparts[idx].position) {
            d->vparts[idx].position = msg->offset + 1;
        }
        rd_kafka_message_destroy(msg);
    }
    d->nvpending = 0;
    for (size_t i = 0; i < d->npending; i++) {
        rd_kafka_message_destroy(d->pending[i]);
    }
    d->npending = 0;
    agg_publish_committed(d);
    if (st.issues_new || st.issues_regressed) {
        agg_publish_changes(d);
    }
    return 0;
}

void agg_ingest_stop(agg_daemon_t *d)
{
    if (!d->consumer) {
        return;
    }
    d->retry_at_us = 0;
    agg_commit(d);
    /* Leaving the group runs the REVOKE callback, which commits anything still pending. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(d->consumer);
    if (err) {
        tc_log(TC_LOG_WARN, "ingest.close", "%s", rd_kafka_err2str(err));
    }
    for (size_t i = 0; i < d->npending; i++) {
        rd_kafka_message_destroy(d->pending[i]);
    }
    d->npending = 0;
    if (d->consumer_queue) {
        rd_kafka_queue_destroy(d->consumer_queue);
        d->consumer_queue = NULL;
    }
    rd_kafka_destroy(d->consumer);
    d->consumer = NULL;
    tc_log(TC_LOG_INFO, "ingest.closed", "consumer closed");
}
