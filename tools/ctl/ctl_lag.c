/*
 * ctl_lag.c — committed offsets and watermarks through librdkafka. A consumer handle with
 * the group's id is created but never subscribes, so asking for the group's offsets does
 * not join the group or move its partitions.
 */
#include "ctl_lag.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_table.h"
#include "ctl_status.h"
#include "tc_error.h"
#include "tc_util.h"

void ctl_lag_add_partition(ctl_lag_t *l, int64_t committed, int64_t low, int64_t high)
{
    l->partitions++;
    if (high > 0) {
        l->end += high;
    }
    if (committed >= 0) {
        int64_t behind = high - committed;
        l->lag = (l->lag < 0 ? 0 : l->lag) + (behind > 0 ? behind : 0);
        l->committed++;
    } else if (high > low && low >= 0) {
        l->uncommitted += high - low;
    }
}

/* librdkafka's own log lines would mix with the tool's output: drop them; failures are
 * reported through the return codes. */
static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

static rd_kafka_t *consumer_new(const char *bootstrap, const tc_cfg_kvs_t *kafka, const char *group,
                                char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    const char *settings[][2] = {{"bootstrap.servers", bootstrap},
                                 {"group.id", group},
                                 {"client.id", "tocsinctl"},
                                 {"enable.auto.commit", "false"},
                                 {"log.connection.close", "false"}};
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, errlen) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    for (size_t i = 0; kafka && i < kafka->len; i++) {
        if (rd_kafka_conf_set(conf, kafka->items[i].key, kafka->items[i].value, err, errlen) !=
            RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen); /* rk owns conf */
    if (!rk) {
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* The lag of one topic; false when no broker answered at all. */
static bool topic_lag(rd_kafka_t *rk, const char *topic, int timeout, ctl_lag_t *l)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e =
        rkt ? rd_kafka_metadata(rk, 0, rkt, &md, timeout) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (rkt) {
        rd_kafka_topic_destroy(rkt);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR || !md || md->topic_cnt != 1) {
        snprintf(l->error, sizeof(l->error), "metadata: %s", rd_kafka_err2str(e));
        if (md) {
            rd_kafka_metadata_destroy(md);
        }
        return false;
    }
    const struct rd_kafka_metadata_topic *t = &md->topics[0];
    if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partition_cnt <= 0) {
        snprintf(l->error, sizeof(l->error), "%s", rd_kafka_err2str(t->err));
        rd_kafka_metadata_destroy(md);
        return true;
    }
    int n = t->partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        rd_kafka_topic_partition_list_add(parts, topic, p);
    }
    e = rd_kafka_committed(rk, parts, timeout);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(l->error, sizeof(l->error), "committed offsets: %s", rd_kafka_err2str(e));
    }
    for (int p = 0; p < n; p++) {
        int64_t low = -1, high = -1;
        rd_kafka_resp_err_t we =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, timeout);
        if (we != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(l->error, sizeof(l->error), "watermarks of partition %d: %s", p,
                     rd_kafka_err2str(we));
            l->partitions = n;
            l->lag = -1;
            break;
        }
        int64_t committed = e == RD_KAFKA_RESP_ERR_NO_ERROR && parts->elems[p].err == 0
                                ? parts->elems[p].offset
                                : -1;
        ctl_lag_add_partition(l, committed, low, high);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    if (!l->error[0] && l->committed == 0) {
        snprintf(l->error, sizeof(l->error),
                 "no offsets committed to Kafka (the group keeps them elsewhere, or has not "
                 "consumed yet)");
    }
    return true;
}

int ctl_lag_query(const char *bootstrap, const tc_cfg_kvs_t *kafka, const char *group,
                  const char *const *topics, size_t ntopics, int64_t timeout_ms, ctl_lag_t *out,
                  char *err, size_t errlen)
{
    rd_kafka_t *rk = consumer_new(bootstrap, kafka, group, err, errlen);
    if (!rk) {
        return TC_EINVAL;
    }
    int timeout = (int)(timeout_ms > 0 && timeout_ms < 600000 ? timeout_ms : 5000);
    bool any = false;
    for (size_t i = 0; i < ntopics; i++) {
        ctl_lag_t *l = &out[i];
        memset(l, 0, sizeof(*l));
        l->lag = -1;
        tc_strlcpy(l->group, group, sizeof(l->group));
        tc_strlcpy(l->topic, topics[i], sizeof(l->topic));
        any = topic_lag(rk, topics[i], timeout, l) || any;
    }
    rd_kafka_destroy(rk);
    if (!any) {
        snprintf(err, errlen, "no Kafka broker answered at %s (%s)", bootstrap,
                 ntopics ? out[0].error : "no topic");
        return TC_EUNAVAIL;
    }
    return 0;
}

json_t *ctl_lag_json(const ctl_lag_t *l, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *o = json_pack(
            "{s:s, s:s, s:i, s:i, s:I, s:o, s:I, s:o}", "group", l[i].group, "topic", l[i].topic,
            "partitions", l[i].partitions, "committed_partitions", l[i].committed, "end_offset",
            (json_int_t)l[i].end, "lag", l[i].lag >= 0 ? json_integer(l[i].lag) : json_null(),
            "uncommitted", (json_int_t)l[i].uncommitted, "error",
            l[i].error[0] ? json_string(l[i].error) : json_null());
        if (!o || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

char *ctl_lag_render(const ctl_lag_t *l, size_t n, size_t width)
{
    static const char *const headers[] = {"GROUP",     "TOPIC", "PARTITIONS",
                                          "COMMITTED", "LAG",   "NOTE"};
    static const ctl_align_t aligns[] = {CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT,  CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT, CTL_ALIGN_LEFT};
    ctl_table_t *t = ctl_table_new(6, headers, aligns);
    if (!t) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char lag[32];
        if (l[i].lag >= 0) {
            ctl_fmt_count((double)l[i].lag, lag, sizeof(lag));
        } else {
            snprintf(lag, sizeof(lag), "-");
        }
        ctl_table_add(t, l[i].group);
        ctl_table_add(t, l[i].topic);
        ctl_table_addf(t, "%d", l[i].partitions);
        ctl_table_addf(t, "%d", l[i].committed);
        ctl_table_add(t, lag);
        ctl_table_add(t, l[i].error[0] ? l[i].error : "");
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}
