/*
 * tocsin-alerter: reads `tocsin.rollups`, keeps the recent buckets of every series,
 * evaluates the YAML rules, and routes, escalates, throttles and delivers notifications
 * to Slack, PagerDuty, webhooks and e-mail.
 *
 * Threads: the main thread waits in poll(2) on the Kafka queues, the sender's results and
 * the signals, with a time-out at the next thing due; it owns the core (alr_core: window
 * store, rules, evaluator, silences, dispatcher) and writes its state to LMDB. The sender
 * thread (alr_notify) performs the HTTP/SMTP attempts; libmicrohttpd's thread answers
 * HTTP. The core is shared with the HTTP thread under `lock`.
 *
 * A cycle: consume what arrived -> evaluate the rules of the services that got data
 * (every rule each eval.interval, and when a timer is due) -> write the buckets, offsets
 * and every dirty record to LMDB in one transaction -> start the attempts the dispatcher
 * releases -> feed back the attempts' outcomes (written at once). So a restart re-sends
 * nothing delivered, and every escalation and resolve still owed happens after it.
 *
 * HA: instances sharing group.id elect a leader through the consumer group on ha.topic
 * (whoever is assigned its partition 0). Every instance reads all of tocsin.rollups and
 * evaluates; only the leader notifies, and it publishes its dispatcher's state (groups,
 * notifications, receivers' throttles) on ha.topic, which the others mirror. A new leader
 * first reads ha.topic up to its end, then reconciles and carries on. docs/alerter.md
 * states the guarantee.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alr_core.h"
#include "alr_notify.h"
#include "alr_rollup.h"
#include "alr_rules.h"
#include "alr_store.h"
#include "tc_config.h"
#include "tc_error.h"
#include "tc_http.h"
#include "tc_kafka.h"
#include "tc_log.h"
#include "tc_metrics.h"
#include "tc_selfmon.h"
#include "tc_signal.h"
#include "tc_util.h"

#define BATCH_MAX_RECORDS 1000       /* records applied between two evaluations at most */
#define CATCH_UP_MAX_US 60000000LL   /* evaluate after this long even without reaching EOF */
#define SHUTDOWN_DRAIN_MS 5000       /* bound on the attempts in flight at SIGTERM */
#define HA_DRAIN_MS 2000             /* bound on the attempts in flight when the lead moves */
#define ALR_HA_VALUE_MAX (4 * 1024 * 1024) /* bytes of one HA record */
#define MAX_PARTITIONS 4096
#define ATTEMPTS_PER_ROUND 256

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
    char *api_token;
    int64_t max_in_flight;
    int64_t connect_timeout_ms;
    bool ha_enabled;
    char *ha_topic;
    tc_selfmon_config_t selfmon;
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
     "Kafka consumer group of the HA election (alerters with the same group.id share one "
     "leader)", 0, 0},
    {"topic.rollups", TC_CFG_STRING, "tocsin.rollups", offsetof(config_t, topic_rollups),
     "topic the aggregators publish buckets and issue changes to", 0, 0},
    {"rules", TC_CFG_STRING, "", offsetof(config_t, rules),
     "rule file(s), comma-separated (required; reloaded on SIGHUP and POST /api/v1/reload)",
     0, 0},
    {"data_dir", TC_CFG_STRING, "./data/alerter", offsetof(config_t, data_dir),
     "directory of the LMDB state (buckets, offsets, alerts, groups, notifications)", 0, 0},
    {"eval.interval", TC_CFG_DURATION, "1s", offsetof(config_t, eval_interval_ms),
     "every rule is evaluated this often (rules of services with new data at once)", 0, 0},
    {"rollup.max_delay", TC_CFG_DURATION, "30s", offsetof(config_t, max_delay_ms),
     "windows end no earlier than now minus this, even without newer buckets", 0, 0},
    {"external_url", TC_CFG_STRING, "http://127.0.0.1:7440", offsetof(config_t, external_url),
     "URL of this alerter as receivers should link to it (externalURL, generatorURL)", 0, 0},
    {"api.token", TC_CFG_STRING, "", offsetof(config_t, api_token),
     "bearer token required by every state-changing API call (empty: such calls get 403)", 0,
     0},
    {"notify.max_in_flight", TC_CFG_INT, "16", offsetof(config_t, max_in_flight),
     "delivery attempts running at once (over all receivers)", 1, 1024},
    {"notify.connect_timeout", TC_CFG_DURATION, "3s", offsetof(config_t, connect_timeout_ms),
     "bound on connecting to a receiver", 0, 0},
    {"ha.enabled", TC_CFG_BOOL, "true", offsetof(config_t, ha_enabled),
     "elect one leader among the alerters of group.id (only it notifies); false: this "
     "instance notifies alone", 0, 0},
    {"ha.topic", TC_CFG_STRING, "tocsin.alerter", offsetof(config_t, ha_topic),
     "topic of the HA election and the leader's replicated state (1 partition, compacted)",
     0, 0},
    TC_SELFMON_CONFIG_ENTRIES(config_t, selfmon, "tcp://127.0.0.1:7420"),
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, offsetof(config_t, kafka),
     "passed to librdkafka unchanged (kafka.security.protocol=SASL_SSL, ...)", 0, 0},
    TC_CFG_END};

static const char *const reject_reasons[] = {
    "too_big", "protobuf", "no_body", "string", "key_mismatch", "width", "alignment",
    "errors_above_count", "kind", "sketch", "issue", "status", "future", "store_full"};
#define NREASONS (sizeof(reject_reasons) / sizeof(reject_reasons[0]))

static const char *const skipped_kinds[] = {ALR_SKIP_ISSUE_STATE, ALR_SKIP_ISSUE_STATUS,
                                            ALR_SKIP_CHECKPOINT, ALR_SKIP_UNKNOWN};
#define NSKIPPED (sizeof(skipped_kinds) / sizeof(skipped_kinds[0]))

typedef struct {
    config_t cfg;
    char instance[160];
    alr_store_t *store;
    alr_core_t *core;
    pthread_mutex_t lock; /* guards core for the HTTP thread */
    alr_sender_t *sender;
    rd_kafka_t *rk;            /* the data consumer: rollups and the HA topic */
    rd_kafka_queue_t *queue;   /* its queue */
    rd_kafka_topic_t *rkt;
    rd_kafka_t *elector;       /* HA: the group member whose assignment decides the leader */
    rd_kafka_queue_t *elector_queue;
    rd_kafka_t *producer;      /* HA: publishes on ha.topic */
    int wake[2];               /* the Kafka queues write here when records arrive */
    tc_http_t *http;
    tc_metrics_t *metrics;
    tc_selfmon_t *selfmon; /* heartbeat and consumer lag through the pipeline */
    int64_t rules_loaded_us;

    tc_counter_t *m_consumed;
    tc_counter_t *m_issues;
    tc_counter_t *m_issue_dups;
    tc_counter_t *m_statuses;
    tc_counter_t *m_skipped[NSKIPPED];
    tc_counter_t *m_rejected[NREASONS];
    tc_counter_t *m_ha_applied;
    tc_counter_t *m_ha_stale;
    tc_counter_t *m_ha_invalid;
    tc_counter_t *m_ha_errors;
    tc_counter_t *m_takeovers;
    tc_gauge_t *m_leader;
    tc_counter_t *m_evaluations;
    tc_counter_t *m_reload_failures;
    tc_counter_t *m_store_errors;
    tc_counter_t *m_kafka_errors;
    tc_counter_t *m_api_denied;
    tc_gauge_t *m_alerts[ALR_STATE_COUNT];
    tc_gauge_t *m_rules_loaded;
    tc_histogram_t *m_attempt_seconds;

    alr_offset_t batch_offsets[MAX_PARTITIONS + 1];
    size_t nbatch_offsets;
    size_t batch_records;
    int64_t batch_started_mono;
    bool applied_since_eval;
    bool more_pending;         /* records were left in the queue by the last round */
    int64_t last_eval_us;      /* wall clock of the last evaluation */

    int32_t nrollups_parts;
    bool rollups_eof[MAX_PARTITIONS];
    _Atomic int64_t rollups_next[MAX_PARTITIONS]; /* next offset to consume, for the lag */
    int64_t assigned_mono;
    atomic_bool caught_up;
    bool evaluated_caught_up;  /* an evaluation ran after catching up */
    atomic_int nassigned_pub;
    bool persist_failed;
    bool stopping; /* no new attempt starts */

    /* HA */
    bool ha;                   /* cfg.ha_enabled */
    bool leader;               /* notifies (always, without HA) */
    bool lead_pending;         /* assigned the lead; taking over */
    bool ha_joined;            /* the elector's group has assigned this instance once */
    bool fenced;               /* saw a later leader's term: waits for a new assignment */
    int64_t takeover_target;   /* ha.topic offset to read up to before leading (-1: unknown) */
    int64_t ha_position;       /* next ha.topic offset the data consumer gives */
    int64_t term, max_term;    /* this instance's term as leader; the latest term seen */
    bool term_dirty;
    _Atomic int64_t term_pub;
    char producer_id[200];     /* instance.id/nonce: this process's records */

    tc_log_limit_t bad_input_log;
    tc_log_limit_t produce_log;
} app_t;

/* ---- persistence --------------------------------------------------------------------- */

typedef struct {
    alr_record_w_t *items;
    size_t n, cap;
} recs_t;

static int collect(void *ctx, const char *kind, const char *key, const json_t *doc)
{
    recs_t *r = ctx;
    if (r->n == r->cap) {
        size_t next = r->cap ? r->cap * 2 : 64;
        alr_record_w_t *p = realloc(r->items, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        r->items = p;
        r->cap = next;
    }
    alr_record_w_t *w = &r->items[r->n];
    memset(w, 0, sizeof(*w));
    tc_strlcpy(w->kind, kind, sizeof(w->kind));
    w->key = strdup(key);
    w->text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (!w->key || (doc && !w->text)) {
        free(w->key);
        free(w->text);
        return TC_ENOMEM;
    }
    r->n++;
    return 0;
}

static void recs_free(recs_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].key);
        free(r->items[i].text);
    }
    free(r->items);
}

/* The core's record kinds an HA leader publishes: its dispatcher's state. */
static bool leader_kind(const char *kind)
{
    return strcmp(kind, "group") == 0 || strcmp(kind, "msg") == 0 || strcmp(kind, "rcv") == 0 ||
           strcmp(kind, "meta") == 0;
}

static void ha_produce(app_t *app, const char *kind, const char *key, const char *text);

/* Writes the window's journal, the consumed offsets and every dirty record of the core in
 * one LMDB transaction; then an HA leader publishes its dispatcher's records on ha.topic.
 * Called with the lock held. Returns 0 when everything is durable (attempts may start). */
static int commit(app_t *app)
{
    recs_t r = {0};
    int rc = alr_core_each_dirty(app->core, collect, &r);
    if (rc == 0 && app->term_dirty) {
        json_t *d = json_pack("{s:I}", "term", (json_int_t)app->max_term);
        rc = d ? collect(&r, "ha", "term", d) : TC_ENOMEM;
        json_decref(d);
    }
    alr_window_t *w = alr_core_window(app->core);
    size_t n = 0;
    const alr_window_change_t *changes = alr_window_journal(w, &n);
    if (rc == 0) {
        rc = alr_store_commit(app->store, w, changes, n, app->batch_offsets, app->nbatch_offsets,
                              r.items, r.n);
    }
    if (rc != 0) {
        recs_free(&r);
        tc_counter_inc(app->m_store_errors);
        if (!app->persist_failed) {
            tc_log(TC_LOG_ERROR, "store.state",
                   "cannot persist the alerter's state (%s); no notification starts until it "
                   "can",
                   tc_strerror(rc));
        }
        app->persist_failed = true;
        return rc;
    }
    if (app->persist_failed) {
        tc_log(TC_LOG_INFO, "store.state", "state persisted again");
        app->persist_failed = false;
    }
    alr_window_journal_clear(w);
    app->nbatch_offsets = 0;
    app->batch_records = 0;
    app->term_dirty = false;
    alr_core_persisted(app->core);
    if (app->leader && app->producer) {
        for (size_t i = 0; i < r.n; i++) {
            if (leader_kind(r.items[i].kind)) {
                ha_produce(app, r.items[i].kind, r.items[i].key, r.items[i].text);
            }
        }
    }
    recs_free(&r);
    return 0;
}

static void update_alert_gauges(app_t *app)
{
    size_t counts[ALR_STATE_COUNT];
    alr_evaluator_state_counts(alr_core_evaluator(app->core), counts);
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        tc_gauge_set(app->m_alerts[i], (double)counts[i]);
    }
}

/* Feeds finished attempts back, makes everything durable, and starts what is due. Called
 * with the lock held. */
static void deliver(app_t *app)
{
    int64_t now = tc_now_us();
    alr_result_t res[64];
    size_t n;
    while ((n = alr_sender_results(app->sender, res, 64)) > 0) {
        for (size_t i = 0; i < n; i++) {
            alr_outcome_t o = {res[i].transport_ok, res[i].status, res[i].retry_after_ms,
                               res[i].error};
            tc_histogram_observe(app->m_attempt_seconds, (double)res[i].duration_us / 1e6);
            const alr_msg_t *m = alr_dispatch_msg(alr_core_dispatch(app->core), res[i].id);
            char receiver[208] = "";
            if (m) {
                tc_strlcpy(receiver, m->receiver, sizeof(receiver));
            }
            alr_core_outcome(app->core, res[i].id, &o, now);
            m = alr_dispatch_msg(alr_core_dispatch(app->core), res[i].id);
            if (m && m->status == ALR_DLV_DELIVERED) {
                tc_logj(TC_LOG_INFO, "notify.delivered",
                        json_pack("{s:I, s:s, s:s, s:i, s:i}", "notification",
                                  (json_int_t)m->id, "receiver", receiver, "kind",
                                  alr_msg_kind_name(m->kind), "status", res[i].status,
                                  "attempt", (int)m->attempts),
                        "notification %" PRIu64 " delivered to %s", m->id, receiver);
            } else if (m) {
                uint64_t suppressed = 0;
                if (tc_log_limit_allow(&app->bad_input_log, tc_mono_us(), &suppressed)) {
                    tc_logj(m->status == ALR_DLV_UNDELIVERED ? TC_LOG_ERROR : TC_LOG_WARN,
                            m->status == ALR_DLV_UNDELIVERED ? "notify.undelivered"
                                                             : "notify.retry",
                            json_pack("{s:I, s:s, s:s, s:i, s:I}", "notification",
                                      (json_int_t)m->id, "receiver", receiver, "error",
                                      m->last_error, "attempt", (int)m->attempts, "suppressed",
                                      (json_int_t)suppressed),
                            "notification %" PRIu64 " to %s: %s", m->id, receiver,
                            m->status == ALR_DLV_UNDELIVERED ? "undelivered" : "will retry");
                }
            }
        }
    }
    if (commit(app) != 0 || app->stopping) {
        return;
    }
    alr_attempt_t att[ATTEMPTS_PER_ROUND];
    n = alr_core_poll(app->core, now, att, ATTEMPTS_PER_ROUND);
    /* Submitted at once: the receivers' rate limits were checked at this instant, so no
     * write may sit between the decision and the request. Their "sending" state is
     * written right after (a restart before that sends them again, as it would anyway
     * for attempts whose answer was not recorded). */
    for (size_t i = 0; i < n; i++) {
        alr_request_t req;
        int rc = alr_core_render(app->core, att[i].id, now, &req);
        if (rc == 0) {
            rc = alr_sender_submit(app->sender, att[i].id, &req);
            if (rc != 0) {
                alr_request_fini(&req);
            }
        }
        if (rc != 0) {
            alr_outcome_t o = {false, 0, -1, "could not render or queue the notification"};
            alr_core_outcome(app->core, att[i].id, &o, now);
        }
    }
    if (n > 0) {
        commit(app);
    }
}

/* ---- consuming ----------------------------------------------------------------------- */

static void batch_note_offset(app_t *app, const char *topic, int32_t partition, int64_t next)
{
    for (size_t i = 0; i < app->nbatch_offsets; i++) {
        if (app->batch_offsets[i].partition == partition &&
            app->batch_offsets[i].topic == topic) {
            if (next > app->batch_offsets[i].next_offset) {
                app->batch_offsets[i].next_offset = next;
            }
            return;
        }
    }
    if (app->nbatch_offsets < MAX_PARTITIONS) {
        app->batch_offsets[app->nbatch_offsets].topic = topic;
        app->batch_offsets[app->nbatch_offsets].partition = partition;
        app->batch_offsets[app->nbatch_offsets].next_offset = next;
        app->nbatch_offsets++;
    }
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

static void skipped(app_t *app, const char *kind)
{
    for (size_t i = 0; i < NSKIPPED; i++) {
        if (strcmp(skipped_kinds[i], kind) == 0) {
            tc_counter_inc(app->m_skipped[i]);
            return;
        }
    }
}

static void mark_eof(app_t *app, int32_t partition)
{
    bool all = app->nrollups_parts > 0;
    for (int32_t i = 0; i < app->nrollups_parts; i++) {
        if (i == partition) {
            app->rollups_eof[i] = true;
        }
        all = all && app->rollups_eof[i];
    }
    if (all && !atomic_load(&app->caught_up)) {
        atomic_store(&app->caught_up, true);
        tc_log(TC_LOG_INFO, "rollups.caught_up",
               "reached the end of every partition of %s; evaluating", app->cfg.topic_rollups);
    }
}

/* A record of tocsin.rollups. Called with the lock held. */
static void handle_rollup(app_t *app, rd_kafka_message_t *m)
{
    if (app->batch_records == 0) {
        app->batch_started_mono = tc_mono_us();
    }
    app->batch_records++;
    batch_note_offset(app, app->cfg.topic_rollups, m->partition, m->offset + 1);
    if (m->partition >= 0 && m->partition < app->nrollups_parts) {
        atomic_store(&app->rollups_next[m->partition], m->offset + 1);
    }
    alr_record_t rec;
    const char *why = NULL;
    if (alr_record_decode(m->key, m->key_len, m->payload, m->len, &rec, &why) != 0) {
        reject(app, why ? why : "protobuf", m);
        return;
    }
    if (rec.kind == ALR_REC_OTHER) {
        skipped(app, rec.other);
        return;
    }
    int rc = alr_core_put_record(app->core, &rec, tc_now_us());
    if (rc == TC_EINVAL) {
        reject(app, "future", m);
    } else if (rc == TC_EFULL || rc == TC_ENOMEM) {
        reject(app, "store_full", m);
    } else if (rec.kind == ALR_REC_ISSUE) {
        tc_counter_inc(rc == 1 ? app->m_issues : app->m_issue_dups);
    } else if (rec.kind == ALR_REC_ISSUE_STATUS) {
        tc_counter_inc(app->m_statuses);
    } else {
        tc_counter_inc(app->m_consumed);
        app->applied_since_eval = app->applied_since_eval || rc == 1;
    }
    alr_record_fini(&rec);
}

/* The value of header `name` as a string in `buf`; "" when absent. */
static const char *header_str(rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t vl = 0;
    buf[0] = '\0';
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, name, &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR && v &&
        vl < len) {
        memcpy(buf, v, vl);
        buf[vl] = '\0';
    }
    return buf;
}

static void ha_bad(app_t *app, const rd_kafka_message_t *m, const char *why)
{
    tc_counter_inc(app->m_ha_invalid);
    uint64_t suppressed = 0;
    if (tc_log_limit_allow(&app->bad_input_log, tc_mono_us(), &suppressed)) {
        tc_logj(TC_LOG_WARN, "ha.record_invalid",
                json_pack("{s:s, s:I, s:I}", "reason", why, "offset", (json_int_t)m->offset,
                          "suppressed", (json_int_t)suppressed),
                "%s record skipped: %s", app->cfg.ha_topic, why);
    }
}

static void step_down(app_t *app, bool drain, const char *why);

/* A record of the HA topic: a peer's state, a person's action on a peer, a leader's term.
 * Called with the lock held. */
static void handle_ha(app_t *app, rd_kafka_message_t *m)
{
    app->batch_records++;
    batch_note_offset(app, app->cfg.ha_topic, m->partition, m->offset + 1);
    if (m->partition != 0) {
        return;
    }
    if (m->offset + 1 > app->ha_position) {
        app->ha_position = m->offset + 1;
    }
    char from[200], term_s[32];
    header_str(m, "from", from, sizeof(from));
    if (strcmp(from, app->producer_id) == 0) {
        return; /* this process's own */
    }
    const uint8_t *k = m->key;
    const uint8_t *z = k && m->key_len ? memchr(k, 0, m->key_len) : NULL;
    size_t kl = z ? (size_t)(z - k) : 0;
    if (!z || kl == 0 || kl >= 16 || m->key_len - kl - 1 > 600) {
        ha_bad(app, m, "key");
        return;
    }
    char kind[16], key[601];
    memcpy(kind, k, kl);
    kind[kl] = '\0';
    memcpy(key, k + kl + 1, m->key_len - kl - 1);
    key[m->key_len - kl - 1] = '\0';
    char *end = NULL;
    int64_t term = strtoll(header_str(m, "term", term_s, sizeof(term_s)), &end, 10);
    json_t *doc = NULL;
    if (m->payload && m->len > 0) {
        json_error_t jerr;
        doc = m->len <= ALR_HA_VALUE_MAX ? json_loadb(m->payload, m->len, 0, &jerr) : NULL;
        if (!json_is_object(doc)) {
            json_decref(doc);
            ha_bad(app, m, "json");
            return;
        }
    }
    int64_t now = tc_now_us();
    if (strcmp(kind, "hello") == 0) {
        json_decref(doc); /* an instance started: nothing to apply */
        return;
    }
    if (strcmp(kind, "term") == 0) {
        int64_t t = doc ? (int64_t)json_integer_value(json_object_get(doc, "term")) : 0;
        if (t > app->max_term) {
            app->max_term = t;
            app->term_dirty = true;
        }
        if (t > app->term && (app->leader || app->lead_pending) && app->ha) {
            /* Another instance leads with a later term: this one is stale. */
            step_down(app, false, "a later leader term was published");
            app->fenced = true;
        }
        json_decref(doc);
        return;
    }
    if (leader_kind(kind) && (!end || *end || term < app->max_term)) {
        tc_counter_inc(app->m_ha_stale);
        json_decref(doc);
        return; /* written by a leader that has been replaced */
    }
    int rc = alr_core_mirror(app->core, kind, key, doc, now);
    json_decref(doc);
    if (rc == 0) {
        tc_counter_inc(app->m_ha_applied);
    } else if (rc == TC_ENOMEM) {
        tc_log(TC_LOG_ERROR, "ha.mirror", "out of memory applying %s/%s", kind, key);
    } else if (rc == TC_EPARSE) {
        ha_bad(app, m, "content");
    } /* TC_ENOTFOUND, TC_ESTATE: an action that no longer applies here */
}

/* Called with the lock held. */
static void handle_message(app_t *app, rd_kafka_message_t *m)
{
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    bool ha = app->ha && strcmp(topic, app->cfg.ha_topic) == 0;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (ha && m->partition == 0 && m->offset > app->ha_position) {
            app->ha_position = m->offset;
        } else if (!ha) {
            if (m->partition >= 0 && m->partition < app->nrollups_parts) {
                atomic_store(&app->rollups_next[m->partition], m->offset);
            }
            mark_eof(app, m->partition);
        }
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
    if (ha) {
        handle_ha(app, m);
    } else {
        handle_rollup(app, m);
    }
}

/* ---- Kafka --------------------------------------------------------------------------- */

/* Sets each of `defaults` (librdkafka name, value) unless kafka.* sets it. */
static int conf_defaults(app_t *app, rd_kafka_conf_t *conf, const char *const (*defaults)[2],
                         size_t n)
{
    char err[512];
    for (size_t i = 0; i < n; i++) {
        if (tc_kafka_conf_set_default(conf, &app->cfg.kafka, defaults[i][0], defaults[i][1], err,
                                      sizeof(err)) != 0) {
            tc_log(TC_LOG_ERROR, "kafka.config", "%s: %s", defaults[i][0], err);
            return TC_EINVAL;
        }
    }
    return 0;
}

static int conf_fixed(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s: %s", name, err);
        return TC_EINVAL;
    }
    return 0;
}

/* The partitions of `topic`, waiting up to `wait_ms` for it to exist. */
static int partitions_of(rd_kafka_t *rk, const char *topic, int64_t wait_ms, int32_t *n)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        return TC_EKAFKA;
    }
    int64_t deadline = tc_mono_us() + wait_ms * 1000;
    int rc = TC_ETIMEDOUT;
    bool logged = false;
    while (!tc_signal_stop_requested()) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
            *n = md->topics[0].partition_cnt;
            rc = 0;
        }
        if (md) {
            rd_kafka_metadata_destroy(md);
        }
        if (rc == 0 || tc_mono_us() >= deadline) {
            break;
        }
        if (!logged) {
            tc_log(TC_LOG_INFO, "kafka.wait_topic", "waiting for topic %s", topic);
            logged = true;
        }
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    app_t *app = opaque;
    if (m->err) {
        tc_counter_inc(app->m_ha_errors);
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&app->produce_log, tc_mono_us(), &suppressed)) {
            tc_log(TC_LOG_WARN, "ha.produce", "a record to %s was not delivered: %s",
                   app->cfg.ha_topic, rd_kafka_err2str(m->err));
        }
    }
}

/* Publishes one record on partition 0 of the HA topic: key "kind\0key", value the JSON
 * text (NULL: a tombstone), headers "from" (this process) and "term". Safe from any
 * thread (the HTTP thread publishes people's actions). */
static void ha_produce(app_t *app, const char *kind, const char *key, const char *text)
{
    if (!app->producer) {
        return;
    }
    char k[16 + 601];
    size_t a = strlen(kind), b = strlen(key);
    if (a >= 16) {
        return;
    }
    if (b > 600) {
        b = 600; /* as the store cuts state keys */
    }
    memcpy(k, kind, a);
    k[a] = '\0';
    memcpy(k + a + 1, key, b);
    char term[32];
    snprintf(term, sizeof(term), "%" PRId64, atomic_load(&app->term_pub));
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "from", -1, app->producer_id, -1);
    rd_kafka_header_add(h, "term", -1, term, -1);
    rd_kafka_vu_t vu[6];
    memset(vu, 0, sizeof(vu));
    vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[0].u.cstr = app->cfg.ha_topic;
    vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vu[1].u.i32 = 0;
    vu[2].vtype = RD_KAFKA_VTYPE_KEY;
    vu[2].u.mem.ptr = k;
    vu[2].u.mem.size = a + 1 + b;
    vu[3].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[3].u.mem.ptr = (void *)text;
    vu[3].u.mem.size = text ? strlen(text) : 0;
    vu[4].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[4].u.i = RD_KAFKA_MSG_F_COPY;
    vu[5].vtype = RD_KAFKA_VTYPE_HEADERS;
    vu[5].u.headers = h; /* the message owns the headers once produced */
    rd_kafka_error_t *e = NULL;
    for (int tries = 0; tries < 100; tries++) {
        e = rd_kafka_produceva(app->producer, vu, 6);
        if (!e || rd_kafka_error_code(e) != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            break;
        }
        rd_kafka_error_destroy(e);
        e = NULL;
        rd_kafka_poll(app->producer, 10);
    }
    if (e) {
        rd_kafka_headers_destroy(h);
        tc_counter_inc(app->m_ha_errors);
        uint64_t suppressed = 0;
        if (tc_log_limit_allow(&app->produce_log, tc_mono_us(), &suppressed)) {
            tc_log(TC_LOG_WARN, "ha.produce", "cannot publish %s/%s: %s", kind, key,
                   rd_kafka_error_string(e));
        }
        rd_kafka_error_destroy(e);
    }
}

/* Publishes a document (a person's action, a silence) for the other instances. */
static void ha_publish_doc(app_t *app, const char *kind, const char *key, json_t *doc)
{
    if (!app->ha || !doc) {
        json_decref(doc);
        return;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text) {
        ha_produce(app, kind, key, text);
        free(text);
    }
}

/* This instance now sends every notification: the last leader's records are applied up to
 * the end of the HA topic as it was at the assignment, and the windows are evaluated.
 * Called with the lock held. */
static void become_leader(app_t *app)
{
    app->term = app->max_term + 1;
    app->max_term = app->term;
    app->term_dirty = true;
    atomic_store(&app->term_pub, app->term);
    json_t *d = json_pack("{s:I, s:s, s:I}", "term", (json_int_t)app->term, "instance",
                          app->instance, "at_us", (json_int_t)tc_now_us());
    char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (text) {
        ha_produce(app, "term", "term", text);
        free(text);
    }
    int rc = alr_core_set_active(app->core, true, tc_now_us());
    app->leader = true;
    app->lead_pending = false;
    tc_gauge_set(app->m_leader, 1);
    tc_counter_inc(app->m_takeovers);
    tc_logj(TC_LOG_INFO, "ha.leader", json_pack("{s:I}", "term", (json_int_t)app->term),
            "leading: this instance sends the notifications (term %" PRId64 ")%s", app->term,
            rc == 0 ? "" : "; reconciling the groups ran out of memory");
}

/* Stops sending. With `drain`, attempts already out get up to HA_DRAIN_MS to finish and
 * their outcomes are published before the lock is given up, so the next leader does not
 * send them again. Called with the lock held. */
static void step_down(app_t *app, bool drain, const char *why)
{
    bool was = app->leader;
    alr_core_set_active(app->core, false, tc_now_us());
    app->lead_pending = false;
    if (was && drain) {
        int64_t deadline = tc_mono_us() + HA_DRAIN_MS * 1000;
        while (alr_sender_busy(app->sender) > 0 && tc_mono_us() < deadline) {
            struct pollfd pfd = {alr_sender_fd(app->sender), POLLIN, 0};
            poll(&pfd, 1, 20);
            deliver(app); /* passive: only outcomes are recorded */
        }
        deliver(app);
        if (app->producer) {
            rd_kafka_flush(app->producer, HA_DRAIN_MS);
        }
    }
    app->leader = false;
    tc_gauge_set(app->m_leader, 0);
    if (was) {
        tc_log(TC_LOG_WARN, "ha.follower", "no longer leading: %s", why);
    }
}

static void elector_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    app_t *app = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        bool leads = false;
        for (int i = 0; i < parts->cnt; i++) {
            leads = leads || parts->elems[i].partition == 0;
        }
        rd_kafka_assign(rk, parts);
        /* The elector only holds the assignment; the data consumer reads the records. */
        rd_kafka_pause_partitions(rk, parts);
        pthread_mutex_lock(&app->lock);
        app->ha_joined = true;
        pthread_mutex_unlock(&app->lock);
        if (!leads) {
            tc_log(TC_LOG_INFO, "ha.follower", "following: another instance leads");
            return;
        }
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t qerr =
            rd_kafka_query_watermark_offsets(rk, app->cfg.ha_topic, 0, &lo, &hi, 5000);
        pthread_mutex_lock(&app->lock);
        app->lead_pending = true;
        app->fenced = false;
        app->takeover_target = qerr == RD_KAFKA_RESP_ERR_NO_ERROR ? hi : -1;
        pthread_mutex_unlock(&app->lock);
        tc_log(TC_LOG_INFO, "ha.elected",
               "elected: taking over once %s is read up to offset %" PRId64
               " and the windows are evaluated",
               app->cfg.ha_topic, hi);
        return;
    }
    bool lost = rd_kafka_assignment_lost(rk);
    pthread_mutex_lock(&app->lock);
    if (app->leader || app->lead_pending) {
        step_down(app, !lost, lost ? "the group session was lost" : "the group rebalanced");
    }
    pthread_mutex_unlock(&app->lock);
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        tc_log(TC_LOG_ERROR, "kafka.rebalance", "%s", rd_kafka_err2str(err));
    }
    rd_kafka_assign(rk, NULL);
}

static rd_kafka_conf_t *conf_new(app_t *app, const char *bootstrap, const char *suffix)
{
    char err[512], client_id[220];
    snprintf(client_id, sizeof(client_id), "%s%s", app->instance, suffix);
    rd_kafka_conf_t *conf = tc_kafka_conf_new(bootstrap, client_id, &app->cfg.kafka, err,
                                              sizeof(err));
    if (!conf) {
        tc_log(TC_LOG_ERROR, "kafka.config", "%s", err);
    }
    return conf;
}

/* The data consumer reads every partition of topic.rollups (both instances of an HA pair
 * hold every window) and partition 0 of ha.topic, assigned by hand from the offsets in
 * LMDB; it never joins a group nor commits. */
static int consumer_start(app_t *app, const char *bootstrap)
{
    rd_kafka_conf_t *conf = conf_new(app, bootstrap, "");
    if (!conf) {
        return TC_EINVAL;
    }
    char group[300];
    snprintf(group, sizeof(group), "%s-data-%s", app->cfg.group_id, app->instance);
    static const char *const defaults[][2] = {
        {"auto.offset.reset", "earliest"},
        /* A fetch waits at most this long for data at the broker: the bound on the time a
         * rollup waits there before it reaches the alerter. */
        {"fetch.wait.max.ms", "10"},
        {"fetch.error.backoff.ms", "100"},
    };
    if (conf_defaults(app, conf, defaults, sizeof(defaults) / sizeof(defaults[0])) != 0 ||
        conf_fixed(conf, "group.id", group) != 0 ||
        conf_fixed(conf, "enable.auto.commit", "false") != 0 ||
        conf_fixed(conf, "enable.auto.offset.store", "false") != 0 ||
        conf_fixed(conf, "enable.partition.eof", "true") != 0) {
        rd_kafka_conf_destroy(conf);
        return TC_EINVAL;
    }
    char err[512];
    app->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)); /* rk owns conf now */
    if (!app->rk) {
        tc_log(TC_LOG_ERROR, "kafka.new", "%s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(app->rk);
    app->queue = rd_kafka_queue_get_consumer(app->rk);
    app->rkt = rd_kafka_topic_new(app->rk, app->cfg.topic_rollups, NULL);
    if (!app->queue || !app->rkt) {
        return TC_EKAFKA;
    }
    int32_t n = 0;
    int rc = partitions_of(app->rk, app->cfg.topic_rollups, 30000, &n);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "kafka.topic", "topic %s is not available: %s",
               app->cfg.topic_rollups, tc_strerror(rc));
        return rc;
    }
    if (n > MAX_PARTITIONS) {
        tc_log(TC_LOG_WARN, "kafka.topic", "%s has %d partitions; reading the first %d",
               app->cfg.topic_rollups, (int)n, MAX_PARTITIONS);
        n = MAX_PARTITIONS;
    }
    int32_t nha = 0;
    if (app->ha) {
        /* A record creates the topic where brokers create topics on first use; it also
         * says who is here. */
        json_t *hello = json_pack("{s:s, s:I}", "instance", app->instance, "started_us",
                                  (json_int_t)tc_now_us());
        ha_publish_doc(app, "hello", app->producer_id, hello);
        rc = partitions_of(app->rk, app->cfg.ha_topic, 30000, &nha);
        if (rc != 0) {
            tc_log(TC_LOG_ERROR, "kafka.topic",
                   "topic %s (ha.topic) is not available: %s; create it (1 partition, "
                   "cleanup.policy=compact) or set ha.enabled=false",
                   app->cfg.ha_topic, tc_strerror(rc));
            return rc;
        }
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n + 1);
    for (int32_t p = 0; p < n; p++) {
        int64_t off = 0;
        int src = alr_store_get_offset(app->store, app->cfg.topic_rollups, p, &off);
        rd_kafka_topic_partition_list_add(list, app->cfg.topic_rollups, p)->offset =
            src == 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
        atomic_store(&app->rollups_next[p], src == 0 ? off : 0);
        if (src != 0 && src != TC_ENOTFOUND) {
            tc_log(TC_LOG_ERROR, "store.offset", "cannot read the offset of %s[%d]: %s",
                   app->cfg.topic_rollups, (int)p, tc_strerror(src));
        }
    }
    if (app->ha) {
        int64_t off = 0;
        int src = alr_store_get_offset(app->store, app->cfg.ha_topic, 0, &off);
        rd_kafka_topic_partition_list_add(list, app->cfg.ha_topic, 0)->offset =
            src == 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
        app->ha_position = src == 0 ? off : 0;
        if (nha > 1) {
            tc_log(TC_LOG_INFO, "ha.topic",
                   "%s has %d partitions; the election and the records use partition 0",
                   app->cfg.ha_topic, (int)nha);
        }
    }
    app->nrollups_parts = n;
    atomic_store(&app->nassigned_pub, (int)n);
    app->assigned_mono = tc_mono_us();
    rd_kafka_resp_err_t aerr = rd_kafka_assign(app->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (aerr) {
        tc_log(TC_LOG_ERROR, "kafka.assign", "%s", rd_kafka_err2str(aerr));
        return TC_EKAFKA;
    }
    tc_log(TC_LOG_INFO, "kafka.assign", "reading %d partition(s) of %s%s", (int)n,
           app->cfg.topic_rollups, app->ha ? " and the HA topic" : "");
    return 0;
}

static int producer_start(app_t *app, const char *bootstrap)
{
    rd_kafka_conf_t *conf = conf_new(app, bootstrap, "-ha");
    if (!conf) {
        return TC_EINVAL;
    }
    static const char *const defaults[][2] = {
        {"linger.ms", "1"},
        {"compression.type", "lz4"},
        {"message.timeout.ms", "30000"},
    };
    if (conf_defaults(app, conf, defaults, sizeof(defaults) / sizeof(defaults[0])) != 0 ||
        conf_fixed(conf, "enable.idempotence", "true") != 0) {
        rd_kafka_conf_destroy(conf);
        return TC_EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, app);
    char err[512];
    app->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)); /* owns conf */
    if (!app->producer) {
        tc_log(TC_LOG_ERROR, "kafka.new", "HA producer: %s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    return 0;
}

/* The elector joins group.id on ha.topic: whoever is assigned its partition 0 leads. */
static int elector_start(app_t *app, const char *bootstrap)
{
    rd_kafka_conf_t *conf = conf_new(app, bootstrap, "-elector");
    if (!conf) {
        return TC_EINVAL;
    }
    static const char *const defaults[][2] = {
        /* How long a dead leader holds the lead before the other instance takes over. */
        {"session.timeout.ms", "10000"},
        {"heartbeat.interval.ms", "1000"},
    };
    if (conf_defaults(app, conf, defaults, sizeof(defaults) / sizeof(defaults[0])) != 0 ||
        conf_fixed(conf, "group.id", app->cfg.group_id) != 0 ||
        conf_fixed(conf, "enable.auto.commit", "false") != 0 ||
        conf_fixed(conf, "partition.assignment.strategy", "range") != 0) {
        rd_kafka_conf_destroy(conf);
        return TC_EINVAL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, elector_rebalance);
    rd_kafka_conf_set_opaque(conf, app);
    char err[512];
    app->elector = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)); /* owns conf */
    if (!app->elector) {
        tc_log(TC_LOG_ERROR, "kafka.new", "elector: %s", err);
        rd_kafka_conf_destroy(conf);
        return TC_EKAFKA;
    }
    rd_kafka_poll_set_consumer(app->elector);
    app->elector_queue = rd_kafka_queue_get_consumer(app->elector);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, app->cfg.ha_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(app->elector, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr || !app->elector_queue) {
        tc_log(TC_LOG_ERROR, "kafka.subscribe", "%s: %s", app->cfg.ha_topic,
               rd_kafka_err2str(kerr));
        return TC_EKAFKA;
    }
    return 0;
}

static int kafka_start(app_t *app)
{
    char *bootstrap = NULL;
    int rc = tc_kafka_bootstrap(app->cfg.brokers, app->cfg.brokers_file, 30000, &bootstrap);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "kafka.bootstrap", "no brokers (%s): set brokers or brokers_file",
               tc_strerror(rc));
        return rc;
    }
    if (app->ha) {
        rc = producer_start(app, bootstrap);
    }
    if (rc == 0) {
        rc = consumer_start(app, bootstrap);
    }
    if (rc == 0 && app->ha) {
        rc = elector_start(app, bootstrap);
    }
    free(bootstrap);
    return rc;
}

/* Records behind the end of the rollups partitions: the high watermark librdkafka last saw
 * minus the next offset to consume. Runs on the HTTP thread (thread-safe calls only). */
static double lag_gauge(void *ctx)
{
    app_t *app = ctx;
    double lag = 0;
    for (int32_t p = 0; app->rk && p < app->nrollups_parts; p++) {
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(app->rk, app->cfg.topic_rollups, p, &lo, &hi) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < 0) {
            continue;
        }
        int64_t next = atomic_load(&app->rollups_next[p]);
        if (next < lo) {
            next = lo;
        }
        if (hi > next) {
            lag += (double)(hi - next);
        }
    }
    return lag;
}

/* ---- rules --------------------------------------------------------------------------- */

/* Loads the rule file(s); on success installs them. Returns 0, or TC_EINVAL with `err`
 * filled (the running rules stay). */
static int reload_rules(app_t *app, char *err, size_t errlen)
{
    alr_ruleset_t *rules = alr_ruleset_load_file(app->cfg.rules, err, errlen);
    if (!rules) {
        tc_counter_inc(app->m_reload_failures);
        tc_logj(TC_LOG_ERROR, "rules.reload_failed", json_pack("{s:s}", "file", app->cfg.rules),
                "rule file rejected, the loaded rules keep running: %s", err);
        return TC_EINVAL;
    }
    size_t n = rules->nrules;
    pthread_mutex_lock(&app->lock);
    int rc = alr_core_set_rules(app->core, rules, tc_now_us()); /* core owns rules */
    if (rc == 0) {
        app->rules_loaded_us = tc_now_us();
    }
    commit(app);
    update_alert_gauges(app);
    pthread_mutex_unlock(&app->lock);
    if (rc != 0) {
        tc_counter_inc(app->m_reload_failures);
        snprintf(err, errlen, "reload of %s: %s", app->cfg.rules, tc_strerror(rc));
        tc_log(TC_LOG_ERROR, "rules.reload_failed", "%s", err);
        return rc;
    }
    tc_gauge_set(app->m_rules_loaded, (double)n);
    tc_log(TC_LOG_INFO, "rules.reloaded", "%zu rules loaded from %s", n, app->cfg.rules);
    return 0;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static const char *const fp_chars = "0123456789abcdef";

static bool parse_fp(const char *s, size_t len, uint64_t *out)
{
    if (len != 16) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        const char *p = strchr(fp_chars, s[i]);
        if (!p || !s[i]) {
            return false;
        }
        v = (v << 4) | (uint64_t)(p - fp_chars);
    }
    *out = v;
    return true;
}

/* Checks the bearer token of a state-changing call; answers and returns false when it
 * fails. */
static bool authorised(app_t *app, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    if (!app->cfg.api_token || !app->cfg.api_token[0]) {
        tc_counter_inc(app->m_api_denied);
        tc_http_resp_error(resp, 403, NULL,
                           "api.token is not configured: the alerter's state cannot be changed "
                           "through the API");
        return false;
    }
    if (!tc_http_req_bearer_ok(req, app->cfg.api_token)) {
        tc_counter_inc(app->m_api_denied);
        tc_http_resp_error(resp, 401, NULL, "missing or wrong bearer token");
        tc_http_resp_header(resp, "WWW-Authenticate", "Bearer");
        return false;
    }
    return true;
}

/* Parses the JSON body (an empty body is {}). Answers 400 and returns NULL when bad. */
static json_t *body_json(const tc_http_req_t *req, tc_http_resp_t *resp)
{
    size_t len = 0;
    const char *b = tc_http_req_body(req, &len);
    if (!b || len == 0) {
        return json_object();
    }
    json_error_t jerr;
    json_t *doc = json_loadb(b, len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        tc_http_resp_error(resp, 400, NULL, "the body must be a JSON object: %s",
                           doc ? "not an object" : jerr.text);
        return NULL;
    }
    return doc;
}

static void http_alerts(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    const char *state = tc_http_req_query(req, "state");
    static const char *const states[] = {"inactive", "pending", "firing", "acknowledged",
                                         "resolved", "active"};
    bool ok = !state;
    for (size_t i = 0; state && i < 6; i++) {
        ok = ok || strcmp(state, states[i]) == 0;
    }
    if (!ok) {
        tc_http_resp_error(resp, 400, "state",
                           "state must be inactive, pending, firing, acknowledged, resolved or "
                           "active");
        return;
    }
    pthread_mutex_lock(&app->lock);
    json_t *doc = alr_core_alerts_json(app->core, state, tc_http_req_query(req, "alertname"),
                                       tc_http_req_query(req, "service"),
                                       tc_http_req_query(req, "fingerprint"), tc_now_us());
    pthread_mutex_unlock(&app->lock);
    if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    tc_http_resp_json(resp, 200, doc);
}

/* GET /api/v1/alerts/{fp}; POST /api/v1/alerts/{fp}/ack|unack|resolve */
static void http_alert(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    const char *rest = tc_http_req_path(req) + strlen("/api/v1/alerts/");
    const char *slash = strchr(rest, '/');
    size_t fplen = slash ? (size_t)(slash - rest) : strlen(rest);
    uint64_t fp;
    if (!parse_fp(rest, fplen, &fp)) {
        tc_http_resp_error(resp, 400, "fingerprint", "not a fingerprint (16 hex digits)");
        return;
    }
    bool post = strcmp(tc_http_req_method(req), "POST") == 0;
    const char *action = slash ? slash + 1 : NULL;
    if (!post) {
        if (action) {
            tc_http_resp_error(resp, 404, NULL, "no such resource");
            return;
        }
        pthread_mutex_lock(&app->lock);
        json_t *doc = alr_core_alert_json(app->core, fp, tc_now_us());
        pthread_mutex_unlock(&app->lock);
        if (!doc) {
            tc_http_resp_error(resp, 404, "fingerprint", "no such alert");
            return;
        }
        tc_http_resp_json(resp, 200, doc);
        return;
    }
    if (!action || (strcmp(action, "ack") && strcmp(action, "unack") && strcmp(action, "resolve"))) {
        tc_http_resp_error(resp, 404, NULL, "POST /api/v1/alerts/{fingerprint}/ack, /unack or "
                                            "/resolve");
        return;
    }
    if (!authorised(app, req, resp)) {
        return;
    }
    json_t *body = body_json(req, resp);
    if (!body) {
        return;
    }
    const char *by = json_string_value(json_object_get(body, "by"));
    const char *comment = json_string_value(json_object_get(body, "comment"));
    const char *expires = json_string_value(json_object_get(body, "expires_in"));
    int64_t ttl_ms = 0;
    if ((by && !tc_utf8_valid(by, strlen(by))) || (comment && !tc_utf8_valid(comment, strlen(comment)))) {
        json_decref(body);
        tc_http_resp_error(resp, 400, "by", "by and comment must be UTF-8 strings");
        return;
    }
    if (expires && (tc_duration_parse(expires, &ttl_ms) != 0 || ttl_ms <= 0)) {
        json_decref(body);
        tc_http_resp_error(resp, 400, "expires_in", "expires_in must be a duration such as 30m");
        return;
    }
    int64_t now = tc_now_us();
    pthread_mutex_lock(&app->lock);
    int rc;
    if (strcmp(action, "ack") == 0) {
        rc = alr_core_ack(app->core, fp, by, comment, ttl_ms, now);
    } else if (strcmp(action, "unack") == 0) {
        rc = alr_core_unack(app->core, fp, now);
    } else {
        rc = alr_core_resolve(app->core, fp, by, now);
    }
    json_t *doc = rc == 0 ? alr_core_alert_json(app->core, fp, now) : NULL;
    if (rc == 0) {
        commit(app);
        update_alert_gauges(app);
        /* The other instances apply the same action to the same firing. */
        const alr_alert_t *a = alr_evaluator_get(alr_core_evaluator(app->core), fp);
        json_t *human = alr_core_human_json(action, fp, by, comment, now,
                                            a && a->state == ALR_STATE_ACKNOWLEDGED
                                                ? a->ack_expires_us
                                                : 0);
        ha_publish_doc(app, "human", a ? a->fp_hex : "?", human);
    }
    pthread_mutex_unlock(&app->lock);
    if (rc == TC_ENOTFOUND) {
        tc_http_resp_error(resp, 404, "fingerprint", "no such alert");
    } else if (rc == TC_ESTATE) {
        json_decref(doc);
        tc_http_resp_error(resp, 409, NULL, "the alert is not %s",
                           strcmp(action, "unack") == 0 ? "acknowledged" : "firing or acknowledged");
    } else if (rc != 0 || !doc) {
        json_decref(doc);
        tc_http_resp_error(resp, 500, NULL, "%s", tc_strerror(rc ? rc : TC_ENOMEM));
    } else {
        tc_logj(TC_LOG_INFO, "api.alert", json_pack("{s:s, s:s, s:s}", "action", action,
                                                    "fingerprint", json_string_value(json_object_get(doc, "fingerprint")),
                                                    "by", by ? by : "unknown"),
                "alert %s: %s", action, json_string_value(json_object_get(doc, "fingerprint")));
        tc_http_resp_json(resp, 200, doc);
    }
    json_decref(body); /* `by` pointed into it */
}

static void http_silences(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    if (strcmp(tc_http_req_method(req), "GET") == 0) {
        const char *state = tc_http_req_query(req, "state");
        if (state && strcmp(state, "active") && strcmp(state, "pending") &&
            strcmp(state, "expired")) {
            tc_http_resp_error(resp, 400, "state", "state must be active, pending or expired");
            return;
        }
        pthread_mutex_lock(&app->lock);
        json_t *doc = alr_core_silences_json(app->core, state, tc_now_us());
        pthread_mutex_unlock(&app->lock);
        if (!doc) {
            tc_http_resp_error(resp, 500, NULL, "out of memory");
            return;
        }
        tc_http_resp_json(resp, 200, doc);
        return;
    }
    if (!authorised(app, req, resp)) {
        return;
    }
    json_t *body = body_json(req, resp);
    if (!body) {
        return;
    }
    char err[512];
    int status = 500;
    pthread_mutex_lock(&app->lock);
    json_t *doc = alr_core_silence_create(app->core, body, tc_now_us(), &status, err, sizeof(err));
    if (doc) {
        commit(app);
        const alr_silence_t *sil = alr_silences_get(
            alr_core_silences(app->core), json_string_value(json_object_get(doc, "id")));
        if (sil) {
            ha_publish_doc(app, "silence", sil->id, alr_silence_state_json(sil));
        }
    }
    pthread_mutex_unlock(&app->lock);
    json_decref(body);
    if (!doc) {
        tc_http_resp_error(resp, status, status == 400 ? "matchers" : NULL, "%s", err);
        return;
    }
    tc_logj(TC_LOG_INFO, "api.silence", json_pack("{s:s, s:O}", "action", "create", "silence", doc),
            "silence %s created", json_string_value(json_object_get(doc, "id")));
    tc_http_resp_json(resp, 201, doc);
}

static void http_silence(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    const char *id = tc_http_req_path(req) + strlen("/api/v1/silences/");
    if (strlen(id) != 16 || strspn(id, fp_chars) != 16) {
        tc_http_resp_error(resp, 400, "id", "not a silence id (16 hex digits)");
        return;
    }
    int64_t now = tc_now_us();
    if (strcmp(tc_http_req_method(req), "GET") == 0) {
        pthread_mutex_lock(&app->lock);
        const alr_silence_t *s = alr_silences_get(alr_core_silences(app->core), id);
        json_t *doc = s ? alr_silence_json(s, now) : NULL;
        pthread_mutex_unlock(&app->lock);
        if (!doc) {
            tc_http_resp_error(resp, 404, "id", "no such silence");
            return;
        }
        tc_http_resp_json(resp, 200, doc);
        return;
    }
    if (!authorised(app, req, resp)) {
        return;
    }
    pthread_mutex_lock(&app->lock);
    int rc = alr_core_silence_expire(app->core, id, now);
    const alr_silence_t *s = alr_silences_get(alr_core_silences(app->core), id);
    json_t *doc = s ? alr_silence_json(s, now) : NULL;
    if (rc == 0) {
        commit(app);
        if (s) {
            ha_publish_doc(app, "silence", s->id, alr_silence_state_json(s));
        }
    }
    pthread_mutex_unlock(&app->lock);
    if (rc == TC_ENOTFOUND) {
        tc_http_resp_error(resp, 404, "id", "no such silence");
    } else if (rc == TC_ESTATE) {
        json_decref(doc);
        tc_http_resp_error(resp, 409, "id", "this maintenance window comes from the rule file; "
                                            "change the file");
    } else if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
    } else {
        tc_log(TC_LOG_INFO, "api.silence", "silence %s expired", id);
        tc_http_resp_json(resp, 200, doc);
    }
}

static void http_notifications(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    long limit = 100;
    const char *ls = tc_http_req_query(req, "limit");
    if (ls) {
        char *end = NULL;
        limit = strtol(ls, &end, 10);
        if (!end || *end || limit < 1 || limit > 1000) {
            tc_http_resp_error(resp, 400, "limit", "limit must be from 1 to 1000");
            return;
        }
    }
    uint64_t before = 0;
    const char *bs = tc_http_req_query(req, "before");
    if (bs) {
        char *end = NULL;
        before = strtoull(bs, &end, 10);
        if (!end || *end || before == 0) {
            tc_http_resp_error(resp, 400, "before", "before must be a notification id");
            return;
        }
    }
    const char *status = tc_http_req_query(req, "status");
    static const char *const statuses[] = {"queued", "sending", "delivered", "undelivered",
                                           "merged", "peer"};
    bool ok = !status;
    for (size_t i = 0; status && i < 6; i++) {
        ok = ok || strcmp(status, statuses[i]) == 0;
    }
    if (!ok) {
        tc_http_resp_error(resp, 400, "status", "unknown status");
        return;
    }
    pthread_mutex_lock(&app->lock);
    json_t *doc = alr_core_notifications_json(app->core, (size_t)limit,
                                              tc_http_req_query(req, "fingerprint"),
                                              tc_http_req_query(req, "receiver"), status, before);
    pthread_mutex_unlock(&app->lock);
    if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    tc_http_resp_json(resp, 200, doc);
}

static void http_receivers(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    (void)req;
    pthread_mutex_lock(&app->lock);
    json_t *doc = alr_core_receivers_json(app->core, tc_now_us());
    pthread_mutex_unlock(&app->lock);
    if (!doc) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    tc_http_resp_json(resp, 200, doc);
}

static void http_rules(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    (void)req;
    pthread_mutex_lock(&app->lock);
    json_t *doc = alr_ruleset_to_json(alr_core_rules(app->core));
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

static void http_reload(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    app_t *app = ctx;
    if (!authorised(app, req, resp)) {
        return;
    }
    char err[1024];
    if (reload_rules(app, err, sizeof(err)) != 0) {
        tc_http_resp_error(resp, 400, "rules", "%s", err);
        return;
    }
    pthread_mutex_lock(&app->lock);
    size_t n = alr_core_rules(app->core)->nrules;
    pthread_mutex_unlock(&app->lock);
    tc_http_resp_json(resp, 200, json_pack("{s:I}", "rules", (json_int_t)n));
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
    if (app->ha) {
        /* Following is healthy: the pair needs one leader, and each can be it. "joining":
         * the elector's group has not assigned this instance yet (it cannot lead yet). */
        pthread_mutex_lock(&app->lock);
        snprintf(detail, sizeof(detail), "%s (group %s on %s, term %" PRId64 ")",
                 app->leader ? "leader"
                             : (app->lead_pending ? "taking over"
                                                  : (app->ha_joined ? "follower" : "joining")),
                 app->cfg.group_id, app->cfg.ha_topic, app->leader ? app->term : app->max_term);
        pthread_mutex_unlock(&app->lock);
        tc_health_add(h, "ha", TC_HEALTH_HEALTHY, 0, detail);
    }
}

/* ---- metrics ------------------------------------------------------------------------- */

typedef struct {
    app_t *app;
    size_t field; /* offsetof in alr_dispatch_stats_t */
} stat_ref_t;

static stat_ref_t stat_refs[9];

static double stat_gauge(void *ctx)
{
    stat_ref_t *r = ctx;
    alr_dispatch_stats_t st;
    pthread_mutex_lock(&r->app->lock);
    alr_dispatch_stats(alr_core_dispatch(r->app->core), &st);
    pthread_mutex_unlock(&r->app->lock);
    return (double)*(const uint64_t *)((const char *)&st + r->field);
}

static double queued_gauge(void *ctx)
{
    app_t *app = ctx;
    return (double)alr_sender_busy(app->sender);
}

static int metrics_init(app_t *app)
{
    tc_metrics_t *m = app->metrics;
    app->m_consumed = tc_metrics_counter(m, "tocsin_alerter_rollups_consumed_total", NULL,
                                         "Rollup buckets applied to the window store");
    app->m_issues = tc_metrics_counter(m, "tocsin_alerter_issue_changes_total", NULL,
                                       "IssueChange records applied");
    for (size_t i = 0; i < NSKIPPED; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "kind=\"%s\"", skipped_kinds[i]);
        app->m_skipped[i] = tc_metrics_counter(m, "tocsin_alerter_rollups_skipped_total", labels,
                                               "Rollup records of a kind the alerter does not "
                                               "use, skipped");
        if (!app->m_skipped[i]) {
            return TC_ENOMEM;
        }
    }
    app->m_issue_dups = tc_metrics_counter(m, "tocsin_alerter_issue_changes_duplicate_total",
                                           NULL, "IssueChange records applied before (skipped)");
    app->m_statuses = tc_metrics_counter(m, "tocsin_alerter_issue_statuses_total", NULL,
                                         "IssueStatus records read");
    app->m_ha_applied = tc_metrics_counter(m, "tocsin_alerter_ha_records_applied_total", NULL,
                                           "Records of other instances applied from ha.topic");
    app->m_ha_stale = tc_metrics_counter(m, "tocsin_alerter_ha_records_stale_total", NULL,
                                         "Records of a replaced leader skipped");
    app->m_ha_invalid = tc_metrics_counter(m, "tocsin_alerter_ha_records_invalid_total", NULL,
                                           "Records of ha.topic that do not parse");
    app->m_ha_errors = tc_metrics_counter(m, "tocsin_alerter_ha_publish_errors_total", NULL,
                                          "Records this instance could not publish on ha.topic");
    app->m_takeovers = tc_metrics_counter(m, "tocsin_alerter_ha_takeovers_total", NULL,
                                          "Times this instance became the leader");
    app->m_leader = tc_metrics_gauge(m, "tocsin_alerter_ha_leader", NULL,
                                     "1 while this instance sends the notifications");
    if (tc_metrics_gauge_fn(m, "tocsin_alerter_consumer_lag", NULL,
                            "Records of tocsin.rollups not consumed yet (high watermark minus "
                            "position, summed over partitions)",
                            lag_gauge, app) != 0) {
        return TC_ENOMEM;
    }
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
    app->m_reload_failures = tc_metrics_counter(m, "tocsin_alerter_rule_reload_failures_total",
                                                NULL, "Rule files rejected on reload");
    app->m_store_errors = tc_metrics_counter(m, "tocsin_alerter_store_errors_total", NULL,
                                             "LMDB writes that failed");
    app->m_kafka_errors = tc_metrics_counter(m, "tocsin_alerter_kafka_errors_total", NULL,
                                             "Errors reported by the Kafka consumer");
    app->m_api_denied = tc_metrics_counter(m, "tocsin_alerter_api_denied_total", NULL,
                                           "API calls refused for a missing or wrong token");
    app->m_rules_loaded = tc_metrics_gauge(m, "tocsin_alerter_rules_loaded", NULL,
                                           "Rules in the running rule set");
    static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    app->m_attempt_seconds = tc_metrics_histogram(m, "tocsin_alerter_attempt_seconds", NULL,
                                                  "Duration of delivery attempts", bounds,
                                                  sizeof(bounds) / sizeof(bounds[0]));
    for (int i = 0; i < ALR_STATE_COUNT; i++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "state=\"%s\"", alr_state_name((alr_state_t)i));
        app->m_alerts[i] = tc_metrics_gauge(m, "tocsin_alerter_alerts", labels,
                                            "Alerts in each state");
        if (!app->m_alerts[i]) {
            return TC_ENOMEM;
        }
    }
    static const struct {
        const char *labels;
        size_t field;
    } stats[] = {
        {"status=\"created\"", offsetof(alr_dispatch_stats_t, created)},
        {"status=\"delivered\"", offsetof(alr_dispatch_stats_t, delivered)},
        {"status=\"undelivered\"", offsetof(alr_dispatch_stats_t, undelivered)},
        {"status=\"merged\"", offsetof(alr_dispatch_stats_t, merged)},
        {"status=\"digest\"", offsetof(alr_dispatch_stats_t, digests)},
        {"status=\"failed_attempt\"", offsetof(alr_dispatch_stats_t, failed_attempts)},
        {"status=\"retry\"", offsetof(alr_dispatch_stats_t, retries)},
        {"status=\"self_alert\"", offsetof(alr_dispatch_stats_t, self_alerts)},
        {"status=\"peer\"", offsetof(alr_dispatch_stats_t, peer)},
    };
    for (size_t i = 0; i < 9; i++) {
        stat_refs[i].app = app;
        stat_refs[i].field = stats[i].field;
        if (tc_metrics_gauge_fn(m, "tocsin_alerter_notifications", stats[i].labels,
                                "Notifications since start, by what happened to them",
                                stat_gauge, &stat_refs[i]) != 0) {
            return TC_ENOMEM;
        }
    }
    if (tc_metrics_gauge_fn(m, "tocsin_alerter_attempts_in_flight", NULL,
                            "Delivery attempts queued or running in the sender", queued_gauge,
                            app) != 0) {
        return TC_ENOMEM;
    }
    if (!app->m_consumed || !app->m_issues || !app->m_issue_dups || !app->m_statuses ||
        !app->m_ha_applied || !app->m_ha_stale || !app->m_ha_invalid || !app->m_ha_errors ||
        !app->m_takeovers || !app->m_leader || !app->m_evaluations ||
        !app->m_reload_failures || !app->m_store_errors || !app->m_kafka_errors ||
        !app->m_api_denied || !app->m_rules_loaded || !app->m_attempt_seconds) {
        return TC_ENOMEM;
    }
    return 0;
}

/* ---- start-up ------------------------------------------------------------------------ */

typedef struct {
    app_t *app;
    size_t restored;
} restore_ctx_t;

static int restore_record(void *ctx, const char *kind, const char *key, const json_t *doc)
{
    restore_ctx_t *rc = ctx;
    if (strcmp(kind, "ha") == 0) {
        if (strcmp(key, "term") == 0) {
            rc->app->max_term = (int64_t)json_integer_value(json_object_get(doc, "term"));
        }
        return 0;
    }
    int r = alr_core_restore(rc->app->core, kind, key, doc, tc_now_us());
    if (r == TC_ENOMEM) {
        return r;
    }
    if (r != 0) {
        return TC_EPARSE; /* logged and skipped by the store */
    }
    rc->restored++;
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
            char err[1024];
            reload_rules(app, err, sizeof(err));
        }
        /* Sleep until records arrive, an attempt ends, a signal comes, or the next thing is
         * due: the next full evaluation, or a timer of the core (a group's wait, an
         * escalation, a retry, a receiver's next token, a pending alert's `for`). */
        int64_t now_wall = tc_now_us();
        pthread_mutex_lock(&app->lock);
        int64_t due = alr_core_next_wake(app->core, now_wall);
        bool pending = app->lead_pending;
        pthread_mutex_unlock(&app->lock);
        int64_t wait_us = next_eval - tc_mono_us();
        if (due > 0 && due - now_wall < wait_us) {
            wait_us = due - now_wall + 500; /* just past it */
        }
        if (pending && wait_us > 50000) {
            wait_us = 50000; /* taking over: check the catch-up often */
        }
        if (app->more_pending) {
            wait_us = 0;
        }
        int timeout_ms = wait_us <= 0 ? 0 : (int)((wait_us + 999) / 1000);
        struct pollfd fds[3] = {{tc_signal_fd(), POLLIN, 0},
                                {app->wake[0], POLLIN, 0},
                                {alr_sender_fd(app->sender), POLLIN, 0}};
        poll(fds, 3, timeout_ms);
        if (fds[0].revents) {
            tc_signal_drain();
        }
        if (fds[1].revents) {
            char junk[64];
            while (read(app->wake[0], junk, sizeof(junk)) > 0) {
            }
        }
        /* The elector's callbacks run here, outside the lock (they take it). */
        if (app->elector) {
            rd_kafka_message_t *em;
            while ((em = rd_kafka_consumer_poll(app->elector, 0)) != NULL) {
                rd_kafka_message_destroy(em);
            }
        }
        if (app->producer) {
            rd_kafka_poll(app->producer, 0);
        }
        pthread_mutex_lock(&app->lock);
        int i = 0;
        rd_kafka_message_t *m;
        while (i < BATCH_MAX_RECORDS && (m = rd_kafka_consume_queue(app->queue, 0)) != NULL) {
            handle_message(app, m);
            rd_kafka_message_destroy(m);
            i++;
        }
        app->more_pending = i == BATCH_MAX_RECORDS;
        int64_t now = tc_mono_us();
        bool full = now >= next_eval;
        if (full) {
            next_eval += interval_us;
            if (next_eval <= now) {
                next_eval = now + interval_us;
            }
            if (!atomic_load(&app->caught_up) && now - app->assigned_mono >= CATCH_UP_MAX_US) {
                atomic_store(&app->caught_up, true);
                tc_log(TC_LOG_WARN, "rollups.caught_up",
                       "no end of partition seen for %llds; evaluating anyway",
                       CATCH_UP_MAX_US / 1000000);
            }
        }
        if (!atomic_load(&app->caught_up)) {
            /* Windows are incomplete while the backlog is read: evaluating now could
             * resolve an alert only because its buckets have not been read yet. Owed
             * notifications still go out. */
            if (full && !waiting_logged) {
                tc_log(TC_LOG_INFO, "eval.waiting",
                       "waiting for the rollups backlog before evaluating");
                waiting_logged = true;
            }
            deliver(app);
            pthread_mutex_unlock(&app->lock);
            continue;
        }
        now_wall = tc_now_us();
        int64_t ev_due = alr_evaluator_next_wake(alr_core_evaluator(app->core), now_wall);
        bool timer = due > 0 && now_wall >= due;
        /* A pending alert's `for` (or another evaluator timer) passed since the last
         * evaluation: every rule again, so the one waiting fires on time. */
        full = full || (ev_due > 0 && now_wall >= ev_due && ev_due > app->last_eval_us);
        if (full || app->applied_since_eval || timer || !app->evaluated_caught_up) {
            int n = alr_core_evaluate(app->core, now_wall, full || !app->evaluated_caught_up);
            app->applied_since_eval = false;
            app->last_eval_us = now_wall;
            app->evaluated_caught_up = true;
            if (n > 0) {
                tc_counter_add(app->m_evaluations, (uint64_t)n);
            } else if (n < 0) {
                tc_log(TC_LOG_ERROR, "eval", "evaluation stopped: %s", tc_strerror(n));
            }
            update_alert_gauges(app);
        }
        if (app->lead_pending && !app->fenced && app->takeover_target >= 0 &&
            app->ha_position >= app->takeover_target) {
            become_leader(app);
        }
        /* One transaction for the buckets, the offsets and what the evaluation decided,
         * then the attempts it released. */
        deliver(app);
        pthread_mutex_unlock(&app->lock);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static app_t app_storage;
    app_t *app = &app_storage;
    int rc = tc_config_cli(config_table, &app->cfg, argc, argv,
                           "tocsin-alerter: evaluates alert rules over tocsin.rollups and "
                           "delivers notifications with escalation and throttling.\n"
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
    app->produce_log = (tc_log_limit_t)TC_LOG_LIMIT_INIT(10, 10000000);
    app->wake[0] = app->wake[1] = -1;
    app->ha = app->cfg.ha_enabled;
    app->leader = !app->ha;
    app->takeover_target = -1;
    int exit_code = 1;

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
    if (!app->cfg.api_token || !app->cfg.api_token[0]) {
        tc_log(TC_LOG_WARN, "api.token",
               "api.token is empty: acknowledging, resolving and silencing through the API "
               "are refused (403)");
    }
    if (tc_signal_init() != 0) {
        tc_log(TC_LOG_ERROR, "signals", "cannot install signal handlers");
        alr_ruleset_destroy(&rules);
        goto out;
    }
    pthread_mutex_init(&app->lock, NULL);
    app->metrics = tc_metrics_new();
    app->store = alr_store_open(app->cfg.data_dir, err, sizeof(err));
    uint64_t seed = 0;
    tc_random_bytes(&seed, sizeof(seed));
    alr_core_opts_t co = {.max_delay_us = app->cfg.max_delay_ms * 1000,
                          .seed = seed | 1,
                          .external_url = app->cfg.external_url,
                          .started_us = tc_now_us()};
    app->core = app->store ? alr_core_new(&co) : NULL;
    if (!app->metrics || !app->store || !app->core || metrics_init(app) != 0) {
        tc_log(TC_LOG_ERROR, "start", "%s", app->store ? "out of memory" : err);
        alr_ruleset_destroy(&rules);
        goto out;
    }
    snprintf(app->producer_id, sizeof(app->producer_id), "%.150s/%016" PRIx64, app->instance,
             seed);
    tc_gauge_set(app->m_leader, app->leader ? 1 : 0);
    if (app->ha && (!app->cfg.ha_topic || !app->cfg.ha_topic[0])) {
        tc_log(TC_LOG_ERROR, "start", "ha.topic is empty");
        alr_ruleset_destroy(&rules);
        goto out;
    }
    if (app->ha) {
        /* A follower until the election says otherwise: it mirrors, it does not send. */
        alr_core_set_active(app->core, false, tc_now_us());
    }
    size_t skipped = 0, skipped_state = 0;
    if (alr_store_load_window(app->store, alr_core_window(app->core), tc_now_us(), &skipped) !=
        0) {
        tc_log(TC_LOG_ERROR, "start", "cannot load the stored buckets");
        alr_ruleset_destroy(&rules);
        goto out;
    }
    size_t nrules = rules->nrules;
    if (alr_core_set_rules(app->core, rules, tc_now_us()) != 0) { /* core owns rules */
        tc_log(TC_LOG_ERROR, "start", "out of memory");
        goto out;
    }
    app->rules_loaded_us = tc_now_us();
    tc_gauge_set(app->m_rules_loaded, (double)nrules);
    restore_ctx_t rctx = {app, 0};
    if (alr_store_load_records(app->store, restore_record, &rctx, &skipped_state) != 0 ||
        alr_core_restore_done(app->core, tc_now_us()) != 0) {
        tc_log(TC_LOG_ERROR, "start", "cannot restore the stored state");
        goto out;
    }
    app->sender = alr_sender_new((size_t)app->cfg.max_in_flight, app->cfg.connect_timeout_ms);
    if (!app->sender) {
        tc_log(TC_LOG_ERROR, "start", "cannot start the notification sender");
        goto out;
    }
    pthread_mutex_lock(&app->lock);
    commit(app);
    update_alert_gauges(app);
    size_t owed = 0;
    alr_dispatch_t *d = alr_core_dispatch(app->core);
    for (size_t i = 0; i < alr_dispatch_msg_count(d); i++) {
        const alr_msg_t *mm = alr_dispatch_msg_at(d, i);
        owed += mm->status == ALR_DLV_QUEUED || mm->status == ALR_DLV_SENDING;
    }
    pthread_mutex_unlock(&app->lock);
    tc_log(TC_LOG_INFO, "start",
           "%zu rules from %s; %zu buckets and %zu state records restored (%zu + %zu records "
           "skipped); %zu notifications owed",
           nrules, app->cfg.rules, alr_window_bucket_count(alr_core_window(app->core)),
           rctx.restored, skipped, skipped_state, owed);

    if (kafka_start(app) != 0) {
        goto out;
    }
    /* The Kafka queues wake the main loop's poll(2) when records arrive. */
    if (pipe2(app->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        tc_log(TC_LOG_ERROR, "start", "pipe: %s", strerror(errno));
        goto out;
    }
    rd_kafka_queue_io_event_enable(app->queue, app->wake[1], "1", 1);
    if (app->elector_queue) {
        rd_kafka_queue_io_event_enable(app->elector_queue, app->wake[1], "1", 1);
    }
    app->http = tc_http_new("alerter");
    if (!app->http || tc_http_route(app->http, "GET", "/api/v1/alerts", http_alerts, app) ||
        tc_http_route(app->http, "GET", "/api/v1/alerts/*", http_alert, app) ||
        tc_http_route(app->http, "POST", "/api/v1/alerts/*", http_alert, app) ||
        tc_http_route(app->http, "GET", "/api/v1/silences", http_silences, app) ||
        tc_http_route(app->http, "POST", "/api/v1/silences", http_silences, app) ||
        tc_http_route(app->http, "GET", "/api/v1/silences/*", http_silence, app) ||
        tc_http_route(app->http, "DELETE", "/api/v1/silences/*", http_silence, app) ||
        tc_http_route(app->http, "GET", "/api/v1/notifications", http_notifications, app) ||
        tc_http_route(app->http, "GET", "/api/v1/receivers", http_receivers, app) ||
        tc_http_route(app->http, "GET", "/api/v1/rules", http_rules, app) ||
        tc_http_route(app->http, "POST", "/api/v1/reload", http_reload, app)) {
        tc_log(TC_LOG_ERROR, "start", "out of memory");
        goto out;
    }
    tc_http_set_body_limit(app->http, 64 * 1024);
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

    app->selfmon = tc_selfmon_new("alerter", app->instance, &app->cfg.selfmon, app->metrics,
                                  "tocsin_alerter_");
    if (!app->selfmon ||
        tc_selfmon_gauge_fn(app->selfmon, "consumer.lag", "records", tc_selfmon_kafka_lag,
                            app->rk) != 0 ||
        tc_selfmon_start(app->selfmon) != 0) {
        goto out;
    }
    run(app);
    tc_selfmon_destroy(&app->selfmon); /* it reads the consumer */

    tc_log(TC_LOG_INFO, "stop", "stopping: persisting state and draining notifications");
    tc_http_destroy(&app->http);
    pthread_mutex_lock(&app->lock);
    commit(app);
    pthread_mutex_unlock(&app->lock);
    if (app->elector) {
        /* Leaving the group hands the lead over: the revoke drains the attempts out and
         * publishes their outcomes, then the other instance is assigned. */
        rd_kafka_consumer_close(app->elector);
    }
    rd_kafka_consumer_close(app->rk);
    pthread_mutex_lock(&app->lock);
    app->stopping = true;
    pthread_mutex_unlock(&app->lock);
    alr_sender_stop(app->sender, SHUTDOWN_DRAIN_MS);
    pthread_mutex_lock(&app->lock);
    deliver(app); /* the outcomes that arrived while draining; nothing new starts */
    pthread_mutex_unlock(&app->lock);
    if (app->producer) {
        rd_kafka_flush(app->producer, HA_DRAIN_MS);
    }
    exit_code = 0;
out:
    tc_selfmon_destroy(&app->selfmon);
    tc_http_destroy(&app->http);
    if (app->queue) {
        rd_kafka_queue_destroy(app->queue);
    }
    if (app->elector_queue) {
        rd_kafka_queue_destroy(app->elector_queue);
    }
    if (app->rkt) {
        rd_kafka_topic_destroy(app->rkt);
    }
    if (app->rk) {
        rd_kafka_destroy(app->rk);
    }
    if (app->elector) {
        rd_kafka_destroy(app->elector);
    }
    if (app->producer) {
        rd_kafka_destroy(app->producer);
    }
    for (int i = 0; i < 2; i++) {
        if (app->wake[i] >= 0) {
            close(app->wake[i]);
        }
    }
    alr_sender_destroy(&app->sender);
    alr_core_destroy(&app->core);
    alr_store_close(&app->store);
    tc_metrics_destroy(&app->metrics);
    tc_config_free(config_table, &app->cfg);
    if (exit_code == 0) {
        tc_log(TC_LOG_INFO, "stop", "stopped");
    }
    return exit_code;
}
