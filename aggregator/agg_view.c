/*
 * agg_view.c — the consumer that feeds the materialised view: every partition of
 * topic.rollups (the states every aggregator publishes, their checkpoints and issue
 * statuses) and of topic.logs (log records, which need no aggregation, so the log store
 * is itself the view), assigned by hand rather than through the group, so that every
 * instance holds everything and answers for every service.
 *
 * Its offsets live in LMDB with what they produced, like the group consumer's, and its
 * records are committed in the same transactions (agg_commit). Log partitions start a
 * little before their stored offset so that the dedupe set refills.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agg_daemon.h"
#include "tc_error.h"
#include "tc_kafka.h"
#include "tc_signal.h"
#include "tc_util.h"

#define METADATA_TIMEOUT_MS 2000
#define TOPIC_WAIT_US (30 * 1000000LL)
#define WATERMARK_TIMEOUT_MS 5000
#define LOCAL_BATCH 4096

static void on_viewer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    agg_daemon_t *d = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[256];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        tc_log(TC_LOG_ERROR, "kafka.fatal", "view consumer: %s: %s; stopping",
               rd_kafka_err2name(orig), buf);
        d->fatal = true;
        tc_signal_request_stop();
        return;
    }
    uint64_t suppressed = 0;
    if (tc_log_limit_allow(&d->kafka_log, tc_mono_us(), &suppressed)) {
        tc_logj(TC_LOG_WARN, "kafka.error",
                json_pack("{s:I}", "suppressed", (json_int_t)suppressed), "view consumer: %s: %s",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    }
}

/* The number of partitions of `topic`, waiting (bounded) for it to exist. */
static int partitions_of(rd_kafka_t *rk, const char *topic, int32_t *n)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        return TC_EKAFKA;
    }
    int64_t deadline = tc_mono_us() + TOPIC_WAIT_US;
    int rc = TC_ETIMEDOUT;
    while (tc_mono_us() < deadline && !tc_signal_stop_requested()) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
            *n = md->topics[0].partition_cnt;
            rc = 0;
        }
        if (md) {
            rd_kafka_metadata_destroy(md);
        }
        if (rc == 0) {
            break;
        }
        tc_log(TC_LOG_INFO, "view.wait_topic", "waiting for topic %s: %s", topic,
               err ? rd_kafka_err2str(err) : "no partitions yet");
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

static void start_at(agg_daemon_t *d, rd_kafka_topic_partition_list_t *list, const char *topic,
                     int32_t p, bool logs, agg_view_part_t *vp)
{
    int64_t start = -1, from = -1, lo = 0, hi = 0;
    if (agg_store_view_start(d->store, topic, p, logs, &start, &from) != 0) {
        start = from = -1;
    }
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(d->viewer, topic, p, &lo, &hi, WATERMARK_TIMEOUT_MS);
    if (start >= 0 && err == RD_KAFKA_RESP_ERR_NO_ERROR && hi < start) {
        tc_log(TC_LOG_WARN, "view.offset_reset",
               "%s/%d: stored offset %" PRId64 " is beyond the log's end %" PRId64
               "; the broker lost its log; starting over at %" PRId64,
               topic, (int)p, start, hi, lo);
        if (agg_store_offset_set(d->store, topic, p, lo) == 0) {
            tc_counter_inc(d->m.offset_resets);
        }
        start = from = lo;
    }
    if (from >= 0 && err == RD_KAFKA_RESP_ERR_NO_ERROR && lo > from) {
        from = lo;
    }
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(list, topic, p);
    tp->offset = from >= 0 ? from : RD_KAFKA_OFFSET_BEGINNING;
    vp->position = start >= 0 ? start : 0;
    vp->eof = false;
    vp->last_ts_ms = 0;
}

int agg_view_start(agg_daemon_t *d, const char *bootstrap)
{
    char err[512];
    d->vpending_cap = (size_t)d->cfg.poll_max_messages + LOCAL_BATCH;
    d->vpending = calloc(d->vpending_cap, sizeof(*d->vpending));
    d->vrollups = calloc(d->vpending_cap, sizeof(*d->vrollups));
    d->vlogs = calloc(d->vpending_cap, sizeof(*d->vlogs));
    if (!d->vpending || !d->vrollups || !d->vlogs) {
        return TC_ENOMEM;
    }
    char client_id[300];
    snprintf(client_id, sizeof(client_id), "%s-view", d->instance_id);
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new(bootstrap, client_id, &d->cfg.kafka, err, sizeof(err));
    if (!conf) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        return TC_EINVAL;
    }
    /* A group id only so that librdkafka gives a consumer queue: the view never joins a
     * group (it assigns by hand) and never commits. */
    char group[320];
    snprintf(group, sizeof(group), "%s-view-%s", d->cfg.group_id, d->instance_id);
    const char *const fixed[][2] = {
        {"enable.auto.commit", "false"},    {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},   {"group.id", group},
        {"queued.min.messages", "1000000"},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
            tc_log(TC_LOG_ERROR, "kafka.config", "%s: %s", fixed[i][0], err);
            rd_kafka_conf_destroy(conf);
            return TC_EINVAL;
        }
    }
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_error_cb(conf, on_viewer_error);
    d->viewer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!d->viewer) {
        tc_log(TC_LOG_ERROR, "kafka.consumer", "view: %s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    /* rd_kafka_new owns conf now. */
    rd_kafka_poll_set_consumer(d->viewer);
    d->viewer_queue = rd_kafka_queue_get_consumer(d->viewer);
    if (!d->viewer_queue) {
        tc_log(TC_LOG_ERROR, "kafka.consumer", "view: no consumer queue");
        return TC_EKAFKA;
    }
    int rc = partitions_of(d->viewer, d->cfg.topic_rollups, &d->rollups_partitions);
    if (rc == 0) {
        rc = partitions_of(d->viewer, d->cfg.topic_logs, &d->logs_partitions);
    }
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "view.start", "topics %s and %s are not available: %s",
               d->cfg.topic_rollups, d->cfg.topic_logs, tc_strerror(rc));
        return rc;
    }
    d->vparts = calloc((size_t)(d->rollups_partitions + d->logs_partitions), sizeof(*d->vparts));
    if (!d->vparts) {
        return TC_ENOMEM;
    }
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(d->rollups_partitions + d->logs_partitions);
    for (int32_t p = 0; p < d->rollups_partitions; p++) {
        start_at(d, list, d->cfg.topic_rollups, p, false, &d->vparts[p]);
    }
    for (int32_t p = 0; p < d->logs_partitions; p++) {
        start_at(d, list, d->cfg.topic_logs, p, true, &d->vparts[d->rollups_partitions + p]);
    }
    rd_kafka_resp_err_t aerr = rd_kafka_assign(d->viewer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (aerr) {
        tc_log(TC_LOG_ERROR, "view.assign", "%s", rd_kafka_err2str(aerr));
        return TC_EKAFKA;
    }
    tc_log(TC_LOG_INFO, "view.started", "reading %d partition(s) of %s and %d of %s",
           (int)d->rollups_partitions, d->cfg.topic_rollups, (int)d->logs_partitions,
           d->cfg.topic_logs);
    return 0;
}

static agg_view_part_t *vpart(agg_daemon_t *d, const rd_kafka_message_t *msg)
{
    bool logs = strcmp(rd_kafka_topic_name(msg->rkt), d->cfg.topic_logs) == 0;
    int32_t n = logs ? d->logs_partitions : d->rollups_partitions;
    if (msg->partition < 0 || msg->partition >= n) {
        return NULL;
    }
    return &d->vparts[(logs ? d->rollups_partitions : 0) + msg->partition];
}

void agg_view_poll(agg_daemon_t *d, int wait_ms)
{
    rd_kafka_message_t *local[LOCAL_BATCH];
    size_t room = (size_t)d->cfg.poll_max_messages > d->nvpending
                      ? (size_t)d->cfg.poll_max_messages - d->nvpending
                      : 0;
    if (!d->viewer || (room == 0 && !d->paused)) {
        return;
    }
    if (room > LOCAL_BATCH || d->paused) {
        room = LOCAL_BATCH;
    }
    ssize_t n = rd_kafka_consume_batch_queue(d->viewer_queue, wait_ms, local, room);
    if (n <= 0) {
        return;
    }
    if (d->nvpending + (size_t)n > d->vpending_cap) {
        size_t cap = d->vpending_cap * 2;
        while (cap < d->nvpending + (size_t)n) {
            cap *= 2;
        }
        rd_kafka_message_t **p = realloc(d->vpending, cap * sizeof(*p));
        agg_msg_t *r = p ? realloc(d->vrollups, cap * sizeof(*r)) : NULL;
        agg_msg_t *l = r ? realloc(d->vlogs, cap * sizeof(*l)) : NULL;
        if (p) {
            d->vpending = p;
        }
        if (r) {
            d->vrollups = r;
        }
        if (!l) {
            tc_log(TC_LOG_ERROR, "view.oom", "out of memory holding consumed records");
            for (ssize_t i = 0; i < n; i++) {
                rd_kafka_message_destroy(local[i]);
            }
            d->fatal = true;
            tc_signal_request_stop();
            return;
        }
        d->vlogs = l;
        d->vpending_cap = cap;
    }
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *msg = local[i];
        agg_view_part_t *vp = vpart(d, msg);
        if (msg->err) {
            if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (vp) {
                    vp->eof = true;
                }
            } else {
                uint64_t suppressed = 0;
                if (tc_log_limit_allow(&d->kafka_log, tc_mono_us(), &suppressed)) {
                    tc_logj(TC_LOG_WARN, "kafka.consume",
                            json_pack("{s:I}", "suppressed", (json_int_t)suppressed), "view: %s",
                            rd_kafka_message_errstr(msg));
                }
            }
            rd_kafka_message_destroy(msg);
            continue;
        }
        if (vp) {
            vp->eof = false;
            rd_kafka_timestamp_type_t tstype;
            int64_t ts = rd_kafka_message_timestamp(msg, &tstype);
            if (ts > 0) {
                vp->last_ts_ms = ts;
            }
        }
        d->vpending[d->nvpending++] = msg;
    }
}

int agg_view_catch_up(agg_daemon_t *d, int64_t timeout_ms)
{
    if (!d->viewer) {
        return 0;
    }
    int64_t *target = calloc((size_t)d->rollups_partitions, sizeof(*target));
    if (!target) {
        return TC_ENOMEM;
    }
    /* The end of every rollups partition, in one ListOffsets request per broker (a time of
     * RD_KAFKA_OFFSET_END asks for the latest offset). */
    rd_kafka_topic_partition_list_t *ends =
        rd_kafka_topic_partition_list_new(d->rollups_partitions);
    for (int32_t p = 0; p < d->rollups_partitions; p++) {
        rd_kafka_topic_partition_list_add(ends, d->cfg.topic_rollups, p)->offset =
            RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(d->viewer, ends, WATERMARK_TIMEOUT_MS);
    for (int32_t p = 0; p < d->rollups_partitions; p++) {
        const rd_kafka_topic_partition_t *e = &ends->elems[p];
        int64_t lo = 0, hi = 0;
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && e->err == RD_KAFKA_RESP_ERR_NO_ERROR &&
            e->offset >= 0) {
            target[p] = e->offset;
        } else if (rd_kafka_query_watermark_offsets(d->viewer, d->cfg.topic_rollups, p, &lo, &hi,
                                                    WATERMARK_TIMEOUT_MS) ==
                   RD_KAFKA_RESP_ERR_NO_ERROR) {
            target[p] = hi;
        } else {
            target[p] = d->vparts[p].position; /* unknown: what we have is all we can do */
        }
    }
    rd_kafka_topic_partition_list_destroy(ends);
    int64_t deadline = tc_mono_us() + timeout_ms * 1000;
    int rc = TC_ETIMEDOUT;
    for (;;) {
        bool done = true;
        for (int32_t p = 0; p < d->rollups_partitions && done; p++) {
            done = d->vparts[p].position >= target[p];
        }
        if (done) {
            rc = 0;
            break;
        }
        if (tc_mono_us() >= deadline || tc_signal_stop_requested()) {
            break;
        }
        agg_view_poll(d, 20);
        d->retry_at_us = 0;
        if (agg_commit(d) != 0) {
            break;
        }
    }
    free(target);
    return rc;
}

int64_t agg_view_time_us(agg_daemon_t *d)
{
    int64_t now = tc_now_us();
    int64_t t = now;
    for (int32_t p = 0; d->vparts && p < d->rollups_partitions; p++) {
        const agg_view_part_t *vp = &d->vparts[p];
        int64_t pt = vp->eof ? now : vp->last_ts_ms * 1000;
        if (pt < t) {
            t = pt;
        }
    }
    return t;
}

void agg_view_stop(agg_daemon_t *d)
{
    for (size_t i = 0; i < d->nvpending; i++) {
        rd_kafka_message_destroy(d->vpending[i]);
    }
    d->nvpending = 0;
    if (d->viewer_queue) {
        rd_kafka_queue_destroy(d->viewer_queue);
        d->viewer_queue = NULL;
    }
    if (d->viewer) {
        rd_kafka_consumer_close(d->viewer);
        rd_kafka_destroy(d->viewer);
        d->viewer = NULL;
    }
    free(d->vparts);
    d->vparts = NULL;
    free(d->vpending);
    free(d->vrollups);
    free(d->vlogs);
    d->vpending = NULL;
    d->vrollups = d->vlogs = NULL;
}
