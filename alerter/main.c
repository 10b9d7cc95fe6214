/*
 * tocsin-alerter: reads `tocsin.rollups`, keeps the recent buckets of every series,
 * evaluates the YAML rules every `eval.interval`, and POSTs one notification to a webhook
 * when an alert fires and one when it resolves.
 *
 * Threads: the main thread consumes Kafka, owns the window store and evaluates; the
 * sender thread (alr_notify) POSTs; libmicrohttpd's thread answers HTTP. The evaluator is
 * shared with the HTTP thread under `lock`; nothing else is shared except atomics.
 *
 * Durability (alr_store): buckets and the offsets they came from in one transaction;
 * alert states and new notifications in one transaction before they are sent; a delivery
 * removes its notification. So a restart re-sends nothing delivered and still sends what
 * is owed.
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alr_eval.h"
#include "alr_notify.h"
#include "alr_rollup.h"
#include "alr_rules.h"
#include "alr_store.h"
#include "alr_window.h"
#include "tc_config.h"
#include "tc_error.h"
#include "tc_http.h"
#include "tc_kafka.h"
#include "tc_log.h"
#include "tc_metrics.h"
#include "tc_signal.h"
#include "tc_util.h"

#define BATCH_MAX_RECORDS 1000
#define BATCH_MAX_US 100000          /* a batch of buckets is made durable within 100 ms */
#define CATCH_UP_MAX_US 60000000LL   /* evaluate after this long even without reaching EOF */
#define PRUNE_MARGIN_MIN_US 60000000LL
#define SHUTDOWN_DRAIN_MS 5000       /* bound on the POSTs in flight at SIGTERM */
#define MAX_PARTITIONS 4096

typedef struct {
    char *log_level;
    char *instance_id;
    char *http_bind;
    int64_t http_port;
    char *brokers;
    char *brokers_file;
    char *group_id;
    char *topic_rollups;
    char *rules;
    char *data_dir;
    int64_t eval_interval_ms;
    int64_t max_delay_ms;
    char *external_url;
    tc_cfg_kvs_t kafka;
} config_t;

static const tc_cfg_entry_t config_table[] = {
    {"log.level", TC_CFG_STRING, "info", offsetof(config_t, log_level),
     "lowest level logged: debug, info, warn, error", 0, 0},
    {"instance.id", TC_CFG_STRING, "", offsetof(config_t, instance_id),
     "name of this instance in logs (default: host name and pid)", 0, 0},
    {"http.bind", TC_CFG_STRING, "0.0.0.0", offsetof(config_t, http_bind),
     "address of the HTTP endpoint", 0, 0},
    {"http.port", TC_CFG_INT, "7440", offsetof(config_t, http_port),
     "port of the HTTP endpoint (0: any free port, logged)", 0, 65535},
    {"brokers", TC_CFG_STRING, "", offsetof(config_t, brokers),
     "Kafka bootstrap servers (host:port,...)", 0, 0},
    {"brokers_file", TC_CFG_STRING, "", offsetof(config_t, brokers_file),
     "file whose first line is the bootstrap list (used when brokers is empty)", 0, 0},
    {"group.id", TC_CFG_STRING, "tocsin-alerter", offsetof(config_t, group_id),
     "Kafka consumer group", 0, 0},
    {"topic.rollups", TC_CFG_STRING, "tocsin.rollups", offsetof(config_t, topic_rollups),
     "topic the aggregators publish closed buckets to", 0, 0},
    {"rules", TC_CFG_STRING, "", offsetof(config_t, rules),
     "path of the YAML rule file (required; reloaded on SIGHUP)", 0, 0},
    {"data_dir", TC_CFG_STRING, "./data/alerter", offsetof(config_t, data_dir),
     "directory of the LMDB state (buckets, offsets, alerts, outbox)", 0, 0},
    {"eval.interval", TC_CFG_DURATION, "1s", offsetof(config_t, eval_interval_ms),
     "how often every rule is evaluated", 0, 0},
    {"rollup.max_delay", TC_CFG_DURATION, "30s", offsetof(config_t, max_delay_ms),
     "windows end no earlier than now minus this, even without newer buckets", 0, 0},
    {"external_url", TC_CFG_STRING, "http://127.0.0.1:7440", offsetof(config_t, external_url),
     "URL of this alerter as receivers should link to it (externalURL, generatorURL)", 0, 0},
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, offsetof(config_t, kafka),
     "passed to librdkafka unchanged (kafka.security.protocol=SASL_SSL, ...)", 0, 0},
    TC_CFG_END};

static const char *const reject_reasons[] = {
    "too_big", "protobuf", "no_bucket",  "string",     "key_mismatch", "width",
    "alignment", "errors_above_count", "kind", "future", "store_full"};
#define NREASONS (sizeof(reject_reasons) / sizeof(reject_reasons[0]))

typedef struct {
    int32_t partition;
    bool eof;
} assigned_t;

/* A notification emitted but not yet durable: kept until its transaction commits. */
typedef struct {
    alr_outbox_item_t item;
    char *url;
    char *body;
} owed_t;

typedef struct {
    config_t cfg;
    char instance[160];
    alr_store_t *store;
    alr_window_t *window;
    alr_evaluator_t *ev;
    pthread_mutex_t lock; /* guards ev for the HTTP thread */
    alr_sender_t *sender;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    tc_http_t *http;
    tc_metrics_t *metrics;
    int64_t rules_loaded_us;

    tc_counter_t *m_consumed;
    tc_counter_t *m_rejected[NREASONS];
    tc_counter_t *m_evaluations;
    tc_counter_t *m_delivered;
    tc_counter_t *m_failed;
    tc_counter_t *m_retries;
    tc_counter_t *m_reload_failures;
    tc_counter_t *m_store_errors;
    tc_counter_t *m_kafka_errors;
    tc_gauge_t *m_alerts[ALR_STATE_COUNT];
    tc_gauge_t *m_rules_loaded;

    /* The batch of consumed records not yet durable: next offset per partition. */
    alr_offset_t batch_offsets[MAX_PARTITIONS];
    size_t nbatch_offsets;
    size_t batch_records;
    int64_t batch_started_mono;

    /* Partitions assigned to us, and whether each reached its end since assignment. */
    assigned_t assigned[MAX_PARTITIONS];
    size_t nassigned;
    int64_t assigned_mono;
    atomic_bool caught_up;
    atomic_int nassigned_pub;

    owed_t *owed;
    size_t nowed, capowed;

    tc_log_limit_t bad_input_log;
} app_t;

/* ---- notifications ------------------------------------------------------------------- */

static void on_delivered(void *ctx, uint64_t id)
{
    app_t *app = ctx;
    int rc = alr_store_outbox_delete(app->store, id);
    if (rc != 0) {
        tc_counter_inc(app->m_store_errors);
        tc_log(TC_LOG_ERROR, "store.outbox",
               "notification %" PRIu64 " was delivered but stays in the outbox (%s); a "
               "restart would send it again",
               id, tc_strerror(rc));
    }
}

static void owed_clear(app_t *app)
{
    for (size_t i = 0; i < app->nowed; i++) {
        free(app->owed[i].url);
        free(app->owed[i].body);
    }
    app->nowed = 0;
}

/* Renders the transitions into owed notifications. */
static void take_transitions(app_t *app, alr_transitions_t *trans)
{
    for (size_t i = 0; i < trans->len; i++) {
        const alr_transition_t *t = &trans->items[i];
        char *body = alr_notify_body(t, app->cfg.external_url);
        const char *url = alr_notify_url(t);
        char *url_copy = url ? strdup(url) : NULL;
        if (app->nowed == app->capowed) {
            size_t next = app->capowed ? app->capowed * 2 : 8;
            owed_t *p = realloc(app->owed, next * sizeof(*p));
            if (p) {
                app->owed = p;
                app->capowed = next;
            }
        }
        if (!body || !url_copy || app->nowed == app->capowed) {
            tc_log(TC_LOG_ERROR, "notify.render",
                   "notification %" PRIu64 " could not be rendered (out of memory); lost",
                   t->id);
            free(body);
            free(url_copy);
            continue;
        }
        owed_t *o = &app->owed[app->nowed++];
        o->url = url_copy;
        o->body = body;
        o->item.id = t->id;
        o->item.fingerprint = t->fingerprint;
        o->item.url = url_copy;
        o->item.body = body;
        o->item.created_us = t->at_us;
        json_t *labels = json_object_get(t->snapshot, "labels");
        tc_logj(TC_LOG_INFO, "alert.transition",
                json_pack("{s:I, s:s, s:s?, s:O?}", "notification", (json_int_t)t->id,
                          "status", alr_notify_status_name(t->status), "alertname",
                          json_string_value(json_object_get(labels, "alertname")), "labels",
                          labels),
                "alert %s: %s", json_string_value(json_object_get(labels, "alertname")),
                alr_notify_status_name(t->status));
    }
    alr_transitions_clear(trans);
}

static void update_alert_gauges(app_t *app)
{
    size_t counts[ALR_STATE_COUNT];
    alr_evaluator_state_counts(app->ev, counts);
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        tc_gauge_set(app->m_alerts[i], (double)counts[i]);
    }
}

/*
 * Makes alert changes and owed notifications durable in one transaction, then hands the
 * notifications to the sender. On failure everything stays owed and dirty, and the next
 * evaluation tries again. Called with app->lock held.
 */
static void persist_and_send(app_t *app)
{
    size_t nrem;
    alr_evaluator_removed(app->ev, &nrem);
    bool dirty = nrem > 0 || app->nowed > 0;
    for (size_t i = 0; !dirty && i < alr_evaluator_alert_count(app->ev); i++) {
        dirty = alr_evaluator_alert(app->ev, i)->dirty;
    }
    if (!dirty) {
        return;
    }
    alr_outbox_item_t *items = app->nowed ? malloc(app->nowed * sizeof(*items)) : NULL;
    if (app->nowed && !items) {
        return;
    }
    for (size_t i = 0; i < app->nowed; i++) {
        items[i] = app->owed[i].item;
    }
    int rc = alr_store_commit_alerts(app->store, app->ev, items, app->nowed);
    free(items);
    if (rc != 0) {
        tc_counter_inc(app->m_store_errors);
        tc_log(TC_LOG_ERROR, "store.alerts", "cannot persist alert states (%s); will retry",
               tc_strerror(rc));
        return;
    }
    alr_evaluator_persisted(app->ev);
    for (size_t i = 0; i < app->nowed; i++) {
        const owed_t *o = &app->owed[i];
        int src = alr_sender_submit(app->sender, o->item.id, o->item.fingerprint, o->url,
                                    o->body);
        if (src != 0) {
            tc_log(TC_LOG_ERROR, "notify.queue",
                   "notification %" PRIu64 " is in the outbox but not queued (%s); it is sent "
                   "after a restart",
                   o->item.id, tc_strerror(src));
        }
    }
    owed_clear(app);
}

/* ---- window and offsets -------------------------------------------------------------- */

static void batch_note_offset(app_t *app, int32_t partition, int64_t next)
{
    for (size_t i = 0; i < app->nbatch_offsets; i++) {
        if (app->batch_offsets[i].partition == partition) {
            if (next > app->batch_offsets[i].next_offset) {
                app->batch_offsets[i].next_offset = next;
            }
            return;
        }
    }
    if (app->nbatch_offsets < MAX_PARTITIONS) {
        app->batch_offsets[app->nbatch_offsets].partition = partition;
        app->batch_offsets[app->nbatch_offsets].next_offset = next;
        app->nbatch_offsets++;
    }
}

/* Writes the window's journal and the batch's offsets in one transaction. */
static int flush_batch(app_t *app)
{
    size_t n;
    const alr_window_change_t *changes = alr_window_journal(app->window, &n);
    if (n == 0 && app->nbatch_offsets == 0) {
        return 0;
    }
    int rc = alr_store_commit_window(app->store, changes, n, app->cfg.topic_rollups,
                                     app->batch_offsets, app->nbatch_offsets);
    if (rc != 0) {
        tc_counter_inc(app->m_store_errors);
        tc_log(TC_LOG_ERROR, "store.window", "cannot persist %zu bucket changes (%s); will retry",
               n, tc_strerror(rc));
        return rc;
    }
    alr_window_journal_clear(app->window);
    app->nbatch_offsets = 0;
    app->batch_records = 0;
    return 0;
}

static void reject(app_t *app, const char *reason, const rd_kafka_message_t *m)
{
    for (size_t i = 0; i < NREASONS; i++) {
        if (strcmp(reject_reasons[i], reason) == 0) {
            tc_counter_inc(app->m_rejected[i]);
        }
    }
    uint64_t suppressed = 0;
    if (tc_log_limit_allow(&app->bad_input_log, tc_mono_us(), &suppressed)) {
        tc_logj(TC_LOG_WARN, "rollup.rejected",
                json_pack("{s:s, s:i, s:I, s:I}", "reason", reason, "partition",
                          (int)m->partition, "offset", (json_int_t)m->offset, "suppressed",
                          (json_int_t)suppressed),
                "rollup record rejected: %s", reason);
    }
}

static void mark_eof(app_t *app, int32_t partition)
{
    bool all = app->nassigned > 0;
    for (size_t i = 0; i < app->nassigned; i++) {
        if (app->assigned[i].partition == partition) {
            app->assigned[i].eof = true;
        }
        all = all && app->assigned[i].eof;
    }
    if (all && !atomic_load(&app->caught_up)) {
        atomic_store(&app->caught_up, true);
        tc_log(TC_LOG_INFO, "rollups.caught_up",
               "reached the end of every assigned partition; evaluating");
    }
}

static void handle_message(app_t *app, rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        mark_eof(app, m->partition);
        return;
    }
    if (m->err) {
        tc_counter_inc(app->m_kafka_errors);
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&app->bad_input_log, tc_mono_us(), &suppressed)) {
            tc_log(TC_LOG_WARN, "kafka.consume", "%s", rd_kafka_message_errstr(m));
        }
        return;
    }
    if (app->batch_records == 0) {
        app->batch_started_mono = tc_mono_us();
    }
    app->batch_records++;
    batch_note_offset(app, m->partition, m->offset + 1);
    alr_rollup_t r;
    const char *why = NULL;
    if (alr_rollup_decode(m->key, m->key_len, m->payload, m->len, &r, &why) != 0) {
        reject(app, why ? why : "protobuf", m);
        return;
    }
    int rc = alr_window_put(app->window, &r, tc_now_us(), true);
    if (rc == TC_EINVAL) {
        reject(app, "future", m);
    } else if (rc == TC_EFULL || rc == TC_ENOMEM) {
        reject(app, "store_full", m);
    } else {
        tc_counter_inc(app->m_consumed);
    }
}

/* ---- Kafka --------------------------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    app_t *app = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *p = &parts->elems[i];
            int64_t off = 0;
            int rc = alr_store_get_offset(app->store, p->topic, p->partition, &off);
            p->offset = rc == 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
            if (rc != 0 && rc != TC_ENOTFOUND) {
                tc_log(TC_LOG_ERROR, "store.offset", "cannot read the offset of %s[%d]: %s",
                       p->topic, (int)p->partition, tc_strerror(rc));
            }
            bool known = false;
            for (size_t j = 0; j < app->nassigned; j++) {
                known = known || app->assigned[j].partition == p->partition;
            }
            if (!known && app->nassigned < MAX_PARTITIONS) {
                app->assigned[app->nassigned].partition = p->partition;
                app->assigned[app->nassigned].eof = false;
                app->nassigned++;
            }
            tc_log(TC_LOG_INFO, "kafka.assign", "%s[%d] from %s", p->topic, (int)p->partition,
                   rc == 0 ? "the stored offset" : "the beginning");
        }
        atomic_store(&app->caught_up, false);
        app->assigned_mono = tc_mono_us();
        atomic_store(&app->nassigned_pub, (int)app->nassigned);
        rd_kafka_error_t *e = NULL;
        if (coop) {
            e = rd_kafka_incremental_assign(rk, parts);
        } else {
            rd_kafka_assign(rk, parts);
        }
        if (e) {
            tc_log(TC_LOG_ERROR, "kafka.assign", "%s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        return;
    }
    /* Revoked (or an error): make what was consumed durable before letting go. */
    flush_batch(app);
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            for (size_t j = 0; j < app->nassigned; j++) {
                if (app->assigned[j].partition == parts->elems[i].partition) {
                    app->assigned[j] = app->assigned[--app->nassigned];
                    break;
                }
            }
        }
    } else {
        tc_log(TC_LOG_ERROR, "kafka.rebalance", "%s", rd_kafka_err2str(err));
        app->nassigned = 0;
    }
    atomic_store(&app->nassigned_pub, (int)app->nassigned);
    if (coop) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) {
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static int kafka_start(app_t *app)
{
    char *bootstrap = NULL;
    char err[512];
    int rc = tc_kafka_bootstrap(app->cfg.brokers, app->cfg.brokers_file, 30000, &bootstrap);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "kafka.bootstrap", "no brokers (%s): set brokers or brokers_file",
               tc_strerror(rc));
        return rc;
    }
    rd_kafka_conf_t *conf = tc_kafka_conf_new(bootstrap, app->instance, &app->cfg.kafka, err,
                                              sizeof(err));
    free(bootstrap);
    if (!conf) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        return TC_EINVAL;
    }
    const tc_cfg_kvs_t *x = &app->cfg.kafka;
    if (rd_kafka_conf_set(conf, "group.id", app->cfg.group_id, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        tc_kafka_conf_set_default(conf, x, "enable.auto.commit", "false", err, sizeof(err)) ||
        tc_kafka_conf_set_default(conf, x, "enable.auto.offset.store", "false", err,
                                  sizeof(err)) ||
        tc_kafka_conf_set_default(conf, x, "auto.offset.reset", "earliest", err, sizeof(err)) ||
        tc_kafka_conf_set_default(conf, x, "enable.partition.eof", "true", err, sizeof(err))) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EINVAL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, app);
    app->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)); /* rk owns conf now */
    if (!app->rk) {
        tc_log(TC_LOG_ERROR, "kafka.new", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(app->rk);
    app->rkt = rd_kafka_topic_new(app->rk, app->cfg.topic_rollups, NULL);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, app->cfg.topic_rollups, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(app->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        tc_log(TC_LOG_ERROR, "kafka.subscribe", "%s: %s", app->cfg.topic_rollups,
               rd_kafka_err2str(kerr));
        return TC_EKAFKA;
    }
    return 0;
}

/* ---- rules --------------------------------------------------------------------------- */

static void reload_rules(app_t *app)
{
    char err[1024];
    alr_ruleset_t *rules = alr_ruleset_load_file(app->cfg.rules, err, sizeof(err));
    if (!rules) {
        tc_counter_inc(app->m_reload_failures);
        tc_logj(TC_LOG_ERROR, "rules.reload_failed", json_pack("{s:s}", "file", app->cfg.rules),
                "rule file rejected, the loaded rules keep running: %s", err);
        return;
    }
    size_t n = rules->nrules;
    alr_transitions_t trans = {0};
    pthread_mutex_lock(&app->lock);
    int rc = alr_evaluator_set_rules(app->ev, rules, tc_now_us(), &trans); /* ev owns rules */
    take_transitions(app, &trans);
    persist_and_send(app);
    update_alert_gauges(app);
    app->rules_loaded_us = tc_now_us();
    pthread_mutex_unlock(&app->lock);
    alr_transitions_fini(&trans);
    if (rc != 0) {
        tc_counter_inc(app->m_reload_failures);
        tc_log(TC_LOG_ERROR, "rules.reload_failed", "reload of %s: %s", app->cfg.rules,
               tc_strerror(rc));
        return;
    }
    tc_gauge_set(app->m_rules_loaded, (double)n);
    tc_log(TC_LOG_INFO, "rules.reloaded", "%zu rules loaded from %s", n, app->cfg.rules);
}

/* ---- evaluation ---------------------------------------------------------------------- */

static void evaluate(app_t *app)
{
    int64_t now = tc_now_us();
    int64_t max_delay_us = app->cfg.max_delay_ms * 1000;
    alr_transitions_t trans = {0};
    pthread_mutex_lock(&app->lock);
    /* Keep the longest window plus a margin; anything older cannot matter to any rule. */
    int64_t keep_us = alr_ruleset_max_window_ms(alr_evaluator_rules(app->ev)) * 1000;
    int64_t margin = 2 * max_delay_us > PRUNE_MARGIN_MIN_US ? 2 * max_delay_us
                                                            : PRUNE_MARGIN_MIN_US;
    int64_t wm = alr_window_watermark_us(app->window, now, max_delay_us);
    alr_window_prune(app->window, (wm - keep_us - margin) / 1000000);
    int n = alr_evaluator_run(app->ev, app->window, now, max_delay_us, &trans);
    if (n > 0) {
        tc_counter_add(app->m_evaluations, (uint64_t)n);
    } else if (n < 0) {
        tc_log(TC_LOG_ERROR, "eval", "evaluation stopped: %s", tc_strerror(n));
    }
    take_transitions(app, &trans);
    persist_and_send(app);
    update_alert_gauges(app);
    pthread_mutex_unlock(&app->lock);
    alr_transitions_fini(&trans);
    flush_batch(app); /* the pruned buckets */
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static void http_alerts(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    const char *want = tc_http_req_query(req, "fingerprint");
    json_t *list = json_array();
    pthread_mutex_lock(&app->lock);
    const alr_ruleset_t *rules = alr_evaluator_rules(app->ev);
    for (size_t i = 0; list && i < alr_evaluator_alert_count(app->ev); i++) {
        const alr_alert_t *a = alr_evaluator_alert(app->ev, i);
        const alr_rule_t *rule = &rules->rules[i];
        if (want && strcmp(want, rule->fingerprint_hex) != 0) {
            continue;
        }
        json_t *j = alr_alert_api_json(a, rule);
        json_t *last = json_object_get(j, "last_notification");
        if (json_is_object(last)) {
            alr_delivery_t d;
            bool pending = alr_sender_pending(app->sender, a->notif_id, &d);
            json_object_set_new(last, "delivered", json_boolean(!pending));
            if (pending) {
                json_object_set_new(last, "attempts", json_integer(d.attempts));
                json_object_set_new(last, "last_error",
                                    d.last_error[0] ? json_string(d.last_error) : json_null());
            }
        }
        if (!j || json_array_append_new(list, j) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    pthread_mutex_unlock(&app->lock);
    if (!list) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    tc_http_resp_json(resp, 200, json_pack("{s:o}", "alerts", list));
}

static void http_rules(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    pthread_mutex_lock(&app->lock);
    json_t *doc = alr_ruleset_to_json(alr_evaluator_rules(app->ev));
    char when[32];
    tc_time_format_rfc3339(app->rules_loaded_us, when);
    pthread_mutex_unlock(&app->lock);
    if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    json_object_set_new(doc, "loaded_at", json_string(when));
    tc_http_resp_json(resp, 200, doc);
}

static void health(void *ctx, tc_health_t *h)
{
    app_t *app = ctx;
    char detail[200];
    int64_t t0 = tc_mono_us();
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(app->rk, 0, app->rkt, &md, 1000);
    double ms = (double)(tc_mono_us() - t0) / 1000.0;
    if (err) {
        tc_health_add(h, "kafka", TC_HEALTH_UNHEALTHY, ms, rd_kafka_err2str(err));
    } else {
        int parts = md->topic_cnt > 0 ? md->topics[0].partition_cnt : 0;
        rd_kafka_resp_err_t terr = md->topic_cnt > 0 ? md->topics[0].err : 0;
        snprintf(detail, sizeof(detail), "%s: %d partitions, %d assigned, %s",
                 app->cfg.topic_rollups, parts, atomic_load(&app->nassigned_pub),
                 atomic_load(&app->caught_up) ? "caught up" : "catching up");
        if (terr) {
            snprintf(detail, sizeof(detail), "%s: %s", app->cfg.topic_rollups,
                     rd_kafka_err2str(terr));
        }
        tc_health_add(h, "kafka", terr ? TC_HEALTH_UNHEALTHY
                                       : (atomic_load(&app->caught_up) ? TC_HEALTH_HEALTHY
                                                                       : TC_HEALTH_DEGRADED),
                      ms, detail);
        rd_kafka_metadata_destroy(md);
    }
    t0 = tc_mono_us();
    int rc = alr_store_check(app->store, detail, sizeof(detail));
    ms = (double)(tc_mono_us() - t0) / 1000.0;
    tc_health_add(h, "lmdb", rc == 0 ? TC_HEALTH_HEALTHY : TC_HEALTH_UNHEALTHY, ms, detail);
}

static double outbox_gauge(void *ctx)
{
    app_t *app = ctx;
    return (double)alr_sender_queued(app->sender);
}

static int metrics_init(app_t *app)
{
    tc_metrics_t *m = app->metrics;
    app->m_consumed = tc_metrics_counter(m, "tocsin_alerter_rollups_consumed_total", NULL,
                                         "Rollup records applied to the window store");
    for (size_t i = 0; i < NREASONS; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", reject_reasons[i]);
        app->m_rejected[i] = tc_metrics_counter(m, "tocsin_alerter_rollups_rejected_total",
                                                labels, "Rollup records rejected, by reason");
        if (!app->m_rejected[i]) {
            return TC_ENOMEM;
        }
    }
    app->m_evaluations = tc_metrics_counter(m, "tocsin_alerter_evaluations_total", NULL,
                                            "Rule evaluations");
    app->m_delivered = tc_metrics_counter(m, "tocsin_alerter_notifications_total",
                                          "status=\"delivered\"",
                                          "Notifications delivered (2xx); failed counts failed "
                                          "delivery attempts");
    app->m_failed = tc_metrics_counter(m, "tocsin_alerter_notifications_total",
                                       "status=\"failed\"", NULL);
    app->m_retries = tc_metrics_counter(m, "tocsin_alerter_notification_retries_total", NULL,
                                        "Delivery attempts that were retries");
    app->m_reload_failures = tc_metrics_counter(m, "tocsin_alerter_rule_reload_failures_total",
                                                NULL, "Rule files rejected on reload");
    app->m_store_errors = tc_metrics_counter(m, "tocsin_alerter_store_errors_total", NULL,
                                             "LMDB writes that failed");
    app->m_kafka_errors = tc_metrics_counter(m, "tocsin_alerter_kafka_errors_total", NULL,
                                             "Errors reported by the Kafka consumer");
    app->m_rules_loaded = tc_metrics_gauge(m, "tocsin_alerter_rules_loaded", NULL,
                                           "Rules in the running rule set");
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "state=\"%s\"", alr_state_name((alr_state_t)i));
        app->m_alerts[i] = tc_metrics_gauge(m, "tocsin_alerter_alerts", labels,
                                            "Alerts in each state");
        if (!app->m_alerts[i]) {
            return TC_ENOMEM;
        }
    }
    if (!app->m_consumed || !app->m_evaluations || !app->m_delivered || !app->m_failed ||
        !app->m_retries || !app->m_reload_failures || !app->m_store_errors || !app->m_kafka_errors ||
        !app->m_rules_loaded) {
        return TC_ENOMEM;
    }
    return 0;
}

/* ---- start-up ------------------------------------------------------------------------ */

static int restore_outbox_item(void *ctx, const alr_outbox_item_t *it)
{
    app_t *app = ctx;
    int rc = alr_sender_submit(app->sender, it->id, it->fingerprint, it->url, it->body);
    if (rc != 0 && rc != TC_EEXIST) {
        tc_log(TC_LOG_ERROR, "notify.queue", "owed notification %" PRIu64 " not queued: %s",
               it->id, tc_strerror(rc));
    } else {
        tc_log(TC_LOG_INFO, "notify.owed", "notification %" PRIu64 " to %s is still owed",
               it->id, it->url);
    }
    return 0;
}

typedef struct {
    app_t *app;
    alr_transitions_t *trans;
    size_t restored;
} restore_ctx_t;

static int restore_alert(void *ctx, const json_t *state)
{
    restore_ctx_t *rc = ctx;
    int r = alr_evaluator_restore(rc->app->ev, state, tc_now_us(), rc->trans);
    if (r != 0) {
        tc_log(TC_LOG_WARN, "store.corrupt", "a stored alert state was skipped: %s",
               tc_strerror(r));
    } else {
        rc->restored++;
    }
    return 0;
}

static void default_instance(app_t *app)
{
    if (app->cfg.instance_id && app->cfg.instance_id[0]) {
        tc_strlcpy(app->instance, app->cfg.instance_id, sizeof(app->instance));
        return;
    }
    char host[128] = "localhost";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(app->instance, sizeof(app->instance), "%s-%d", host, (int)getpid());
}

static int run(app_t *app)
{
    int64_t interval_us = (app->cfg.eval_interval_ms > 0 ? app->cfg.eval_interval_ms : 1000) *
                          1000;
    int64_t next_eval = tc_mono_us() + interval_us;
    bool waiting_logged = false;
    while (!tc_signal_stop_requested()) {
        if (tc_signal_take_reload()) {
            reload_rules(app);
        }
        int64_t now = tc_mono_us();
        int64_t wait_ms = (next_eval - now) / 1000;
        wait_ms = wait_ms < 0 ? 0 : (wait_ms > 100 ? 100 : wait_ms);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(app->rk, (int)wait_ms);
        for (int i = 0; m && i < BATCH_MAX_RECORDS; i++) {
            handle_message(app, m);
            rd_kafka_message_destroy(m);
            m = rd_kafka_consumer_poll(app->rk, 0);
        }
        if (m) {
            handle_message(app, m);
            rd_kafka_message_destroy(m);
        }
        now = tc_mono_us();
        if (app->batch_records >= BATCH_MAX_RECORDS ||
            (app->batch_records > 0 && now - app->batch_started_mono >= BATCH_MAX_US)) {
            flush_batch(app);
        }
        if (now < next_eval) {
            continue;
        }
        next_eval += interval_us;
        if (next_eval <= now) {
            next_eval = now + interval_us;
        }
        if (!atomic_load(&app->caught_up) && app->nassigned > 0 &&
            now - app->assigned_mono >= CATCH_UP_MAX_US) {
            atomic_store(&app->caught_up, true);
            tc_log(TC_LOG_WARN, "rollups.caught_up",
                   "no end of partition seen for %llds; evaluating anyway",
                   CATCH_UP_MAX_US / 1000000);
        }
        if (!atomic_load(&app->caught_up)) {
            /* Windows are incomplete while the backlog is read: evaluating now could
             * resolve an alert only because its buckets have not been read yet. */
            if (!waiting_logged) {
                tc_log(TC_LOG_INFO, "eval.waiting",
                       "waiting for the rollups backlog before evaluating");
                waiting_logged = true;
            }
            continue;
        }
        flush_batch(app);
        evaluate(app);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static app_t app_storage;
    app_t *app = &app_storage;
    int rc = tc_config_cli(config_table, &app->cfg, argc, argv,
                           "tocsin-alerter: evaluates alert rules over tocsin.rollups and "
                           "POSTs notifications to webhooks.\n"
                           "Usage: tocsin-alerter [--config FILE] [--set KEY=VALUE]...\n");
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    tc_log_level_t level = TC_LOG_INFO;
    if (tc_log_level_parse(app->cfg.log_level, &level) != 0) {
        fprintf(stderr, "tocsin-alerter: log.level \"%s\" is not debug, info, warn or error\n",
                app->cfg.log_level);
        tc_config_free(config_table, &app->cfg);
        return 2;
    }
    tc_log_init("alerter", level);
    default_instance(app);
    app->bad_input_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10000000);
    int exit_code = 1;
    alr_transitions_t trans = {0};

    if (!app->cfg.rules || !app->cfg.rules[0]) {
        tc_log(TC_LOG_ERROR, "rules.load", "no rule file: set rules=PATH");
        fprintf(stderr, "tocsin-alerter: no rule file: set rules=PATH\n");
        tc_config_free(config_table, &app->cfg);
        return 2;
    }
    char err[1024];
    alr_ruleset_t *rules = alr_ruleset_load_file(app->cfg.rules, err, sizeof(err));
    if (!rules) {
        tc_log(TC_LOG_ERROR, "rules.load", "%s", err);
        fprintf(stderr, "tocsin-alerter: %s\n", err);
        tc_config_free(config_table, &app->cfg);
        return 2;
    }
    if (tc_signal_init() != 0) {
        tc_log(TC_LOG_ERROR, "signals", "cannot install signal handlers");
        alr_ruleset_destroy(&rules);
        goto out;
    }
    pthread_mutex_init(&app->lock, NULL);
    app->metrics = tc_metrics_new();
    app->store = alr_store_open(app->cfg.data_dir, err, sizeof(err));
    app->window = alr_window_new(0);
    app->ev = app->store ? alr_evaluator_new(alr_store_next_id(app->store)) : NULL;
    if (!app->metrics || !app->store || !app->window || !app->ev || metrics_init(app) != 0) {
        tc_log(TC_LOG_ERROR, "start", "%s", app->store ? "out of memory" : err);
        alr_ruleset_destroy(&rules);
        goto out;
    }
    size_t skipped = 0;
    if (alr_store_load_window(app->store, app->window, tc_now_us(), &skipped) != 0) {
        tc_log(TC_LOG_ERROR, "start", "cannot load the stored buckets");
        alr_ruleset_destroy(&rules);
        goto out;
    }
    size_t nrules = rules->nrules;
    if (alr_evaluator_set_rules(app->ev, rules, tc_now_us(), &trans) != 0) { /* ev owns rules */
        tc_log(TC_LOG_ERROR, "start", "out of memory");
        goto out;
    }
    app->rules_loaded_us = tc_now_us();
    tc_gauge_set(app->m_rules_loaded, (double)nrules);

    alr_sender_opts_t so = {.on_delivered = on_delivered,
                            .ctx = app,
                            .delivered = app->m_delivered,
                            .failed = app->m_failed,
                            .retries = app->m_retries};
    app->sender = alr_sender_new(&so);
    if (!app->sender) {
        tc_log(TC_LOG_ERROR, "start", "cannot start the notification sender");
        goto out;
    }
    alr_store_load_outbox(app->store, restore_outbox_item, app);
    restore_ctx_t rctx = {app, &trans, 0};
    alr_store_load_alerts(app->store, restore_alert, &rctx);
    pthread_mutex_lock(&app->lock);
    take_transitions(app, &trans);
    persist_and_send(app);
    update_alert_gauges(app);
    pthread_mutex_unlock(&app->lock);
    tc_log(TC_LOG_INFO, "start",
           "%zu rules from %s; %zu buckets and %zu alert states restored (%zu records "
           "skipped); %zu notifications owed",
           nrules, app->cfg.rules, alr_window_bucket_count(app->window), rctx.restored,
           skipped, alr_sender_queued(app->sender));

    if (kafka_start(app) != 0) {
        goto out;
    }
    app->http = tc_http_new("alerter");
    if (!app->http || tc_http_route(app->http, "GET", "/api/v1/alerts", http_alerts, app) ||
        tc_http_route(app->http, "GET", "/api/v1/rules", http_rules, app) ||
        tc_metrics_gauge_fn(app->metrics, "tocsin_alerter_outbox_pending", NULL,
                            "Notifications not yet delivered", outbox_gauge, app)) {
        tc_log(TC_LOG_ERROR, "start", "out of memory");
        goto out;
    }
    tc_http_set_metrics(app->http, app->metrics);
    tc_http_set_ready(app->http, health, app);
    rc = tc_http_start(app->http, app->cfg.http_bind, (uint16_t)app->cfg.http_port);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "http.listen", "cannot listen on %s:%" PRId64 ": %s",
               app->cfg.http_bind, app->cfg.http_port, tc_strerror(rc));
        goto out;
    }
    tc_logj(TC_LOG_INFO, "http.listen",
            json_pack("{s:s, s:i}", "bind", app->cfg.http_bind, "port",
                      (int)tc_http_port(app->http)),
            "HTTP on %s:%u", app->cfg.http_bind, (unsigned)tc_http_port(app->http));

    run(app);

    tc_log(TC_LOG_INFO, "stop", "stopping: persisting state and draining notifications");
    flush_batch(app);
    rd_kafka_consumer_close(app->rk); /* a revoke here flushes again */
    flush_batch(app);
    alr_sender_stop(app->sender, SHUTDOWN_DRAIN_MS);
    pthread_mutex_lock(&app->lock);
    persist_and_send(app);
    pthread_mutex_unlock(&app->lock);
    exit_code = 0;
out:
    tc_http_destroy(&app->http);
    if (app->rkt) {
        rd_kafka_topic_destroy(app->rkt);
    }
    if (app->rk) {
        rd_kafka_destroy(app->rk);
    }
    alr_sender_destroy(&app->sender);
    alr_transitions_fini(&trans);
    owed_clear(app);
    free(app->owed);
    alr_evaluator_destroy(&app->ev);
    alr_window_destroy(&app->window);
    alr_store_close(&app->store);
    tc_metrics_destroy(&app->metrics);
    tc_config_free(config_table, &app->cfg);
    if (exit_code == 0) {
        tc_log(TC_LOG_INFO, "stop", "stopped");
    }
    return exit_code;
}
