/*
 * e2e_col_consume — reads tocsin.events and tocsin.logs from the beginning, as the collector's
 * end-to-end tests need: every record decoded (a tocsin.v1.EventPack when its "tocsin.format"
 * header says so, else one tocsin.v1.Event), duplicates (same event_id) counted, and the
 * order of events checked per Kafka key, by the sequence numbers e2e_col_client puts in
 * (metric "seq" value, or log field "seq"): the first time each event appears, its sequence
 * must be above every sequence seen before under the same key.
 *
 * usage: e2e_col_consume BOOTSTRAP_FILE [--topics a,b] [--expect N] [--timeout S] [--dump]
 * Reads until every partition is at its high watermark and (with --expect) N distinct events
 * were seen, or the time-out passes. Prints one JSON line per event with --dump, then a
 * summary line ("records": Kafka records, "events": events in them). Exit 0 when it finished
 * before the time-out.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "tc_util.h"
#include "tocsin/v1/event.pb-c.h"

/* ---- a set of 16-byte event ids ---- */

typedef struct {
    uint8_t (*ids)[16];
    uint8_t *used;
    size_t cap, n;
} idset_t;

static uint64_t id_hash(const uint8_t *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < 16; i++) {
        h = (h ^ id[i]) * 1099511628211ULL;
    }
    return h;
}

static bool idset_insert(idset_t *s, const uint8_t *id); /* true when new */

static void idset_grow(idset_t *s)
{
    idset_t bigger = {0};
    bigger.cap = s->cap ? s->cap * 2 : 1024;
    bigger.ids = calloc(bigger.cap, 16);
    bigger.used = calloc(bigger.cap, 1);
    if (!bigger.ids || !bigger.used) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < s->cap; i++) {
        if (s->used[i]) {
            idset_insert(&bigger, s->ids[i]);
        }
    }
    free(s->ids);
    free(s->used);
    *s = bigger;
}

static bool idset_insert(idset_t *s, const uint8_t *id)
{
    if (s->n * 2 >= s->cap) {
        idset_grow(s);
    }
    size_t i = id_hash(id) & (s->cap - 1);
    while (s->used[i]) {
        if (memcmp(s->ids[i], id, 16) == 0) {
            return false;
        }
        i = (i + 1) & (s->cap - 1);
    }
    s->used[i] = 1;
    memcpy(s->ids[i], id, 16);
    s->n++;
    return true;
}

/* ---- per key and per service figures ---- */

typedef struct {
    char *key; /* topic, '|', then the key with NULs as "\0" */
    double last_seq;
} keystate_t;

typedef struct {
    char *service;
    long records, unique, violations;
    double max_seq;
} svcstate_t;

static keystate_t *keys;
static size_t n_keys, cap_keys;
static svcstate_t *svcs;
static size_t n_svcs, cap_svcs;

static keystate_t *key_state(const char *k)
{
    for (size_t i = 0; i < n_keys; i++) {
        if (strcmp(keys[i].key, k) == 0) {
            return &keys[i];
        }
    }
    if (n_keys == cap_keys) {
        cap_keys = cap_keys ? cap_keys * 2 : 64;
        keys = realloc(keys, cap_keys * sizeof(*keys));
    }
    keys[n_keys].key = strdup(k);
    keys[n_keys].last_seq = -1;
    return &keys[n_keys++];
}

static svcstate_t *svc_state(const char *s)
{
    for (size_t i = 0; i < n_svcs; i++) {
        if (strcmp(svcs[i].service, s) == 0) {
            return &svcs[i];
        }
    }
    if (n_svcs == cap_svcs) {
        cap_svcs = cap_svcs ? cap_svcs * 2 : 16;
        svcs = realloc(svcs, cap_svcs * sizeof(*svcs));
    }
    memset(&svcs[n_svcs], 0, sizeof(svcs[n_svcs]));
    svcs[n_svcs].service = strdup(s);
    svcs[n_svcs].max_seq = -1;
    return &svcs[n_svcs++];
}

static const char *body_name(const Tocsin__V1__Event *ev)
{
    switch (ev->body_case) {
    case TOCSIN__V1__EVENT__BODY_ERROR:
        return "error";
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        return "request";
    case TOCSIN__V1__EVENT__BODY_METRIC:
        return "metric";
    case TOCSIN__V1__EVENT__BODY_LOG:
        return "log";
    default:
        return "none";
    }
}

/* The event's test sequence number, or -1. */
static double event_seq(const Tocsin__V1__Event *ev)
{
    if (ev->body_case == TOCSIN__V1__EVENT__BODY_METRIC && ev->metric &&
        strcmp(ev->metric->name, "seq") == 0) {
        return ev->metric->value;
    }
    if (ev->body_case == TOCSIN__V1__EVENT__BODY_LOG && ev->log) {
        for (size_t i = 0; i < ev->log->n_fields; i++) {
            if (strcmp(ev->log->fields[i]->key, "seq") == 0) {
                return atof(ev->log->fields[i]->value);
            }
        }
    }
    return -1;
}

static json_t *dump_record(const rd_kafka_message_t *m, const Tocsin__V1__Event *ev, size_t index,
                           bool packed)
{
    json_t *o = json_object();
    json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(m->rkt)));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    json_object_set_new(o, "index", json_integer((json_int_t)index));
    json_object_set_new(o, "packed", json_boolean(packed));
    /* The key with its NUL separators shown as '|'. */
    char key[1024];
    size_t kl = m->key_len < sizeof(key) - 1 ? m->key_len : sizeof(key) - 1;
    for (size_t i = 0; i < kl; i++) {
        char c = ((const char *)m->key)[i];
        key[i] = c == '\0' ? '|' : c;
    }
    key[kl] = '\0';
    json_object_set_new(o, "key", json_stringn(key, kl));
    json_object_set_new(o, "service", json_string(ev->service));
    json_object_set_new(o, "body", json_string(body_name(ev)));
    json_object_set_new(o, "time_us", json_integer(ev->time_us));
    json_object_set_new(o, "received_us", json_integer(ev->received_us));
    json_object_set_new(o, "collector_id", json_string(ev->collector_id));
    json_object_set_new(o, "user_id", json_string(ev->user_id));
    json_t *tags = json_object();
    for (size_t i = 0; i < ev->n_tags; i++) {
        json_object_set_new(tags, ev->tags[i]->key, json_string(ev->tags[i]->value));
    }
    json_object_set_new(o, "tags", tags);
    if (ev->body_case == TOCSIN__V1__EVENT__BODY_ERROR && ev->error) {
        json_object_set_new(o, "type", json_string(ev->error->type));
        json_object_set_new(o, "message", json_string(ev->error->message));
        json_object_set_new(o, "grouping_hash", json_string(ev->error->grouping_hash));
    } else if (ev->body_case == TOCSIN__V1__EVENT__BODY_REQUEST && ev->request) {
        json_object_set_new(o, "route", json_string(ev->request->route));
    } else if (ev->body_case == TOCSIN__V1__EVENT__BODY_LOG && ev->log) {
        json_object_set_new(o, "message", json_string(ev->log->message));
        json_t *fields = json_object();
        for (size_t i = 0; i < ev->log->n_fields; i++) {
            json_object_set_new(fields, ev->log->fields[i]->key,
                                json_string(ev->log->fields[i]->value));
        }
        json_object_set_new(o, "fields", fields);
    } else if (ev->body_case == TOCSIN__V1__EVENT__BODY_METRIC && ev->metric) {
        json_object_set_new(o, "name", json_string(ev->metric->name));
        json_object_set_new(o, "value", json_real(ev->metric->value));
    }
    return o;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: e2e_col_consume BOOTSTRAP_FILE [--topics a,b] [--expect N] "
                        "[--timeout S] [--dump]\n");
        return 2;
    }
    char topics_arg[256] = "tocsin.events,tocsin.logs";
    long expect = -1;
    double timeout_s = 30;
    bool dump = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--topics") && i + 1 < argc) {
            tc_strlcpy(topics_arg, argv[++i], sizeof(topics_arg));
        } else if (!strcmp(argv[i], "--expect") && i + 1 < argc) {
            expect = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            timeout_s = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--dump")) {
            dump = true;
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    char bootstrap[1024] = "";
    FILE *bf = fopen(argv[1], "r");
    if (!bf || !fgets(bootstrap, sizeof(bootstrap), bf)) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    fclose(bf);
    bootstrap[strcspn(bootstrap, "\r\n")] = '\0';

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[64];
    snprintf(group, sizeof(group), "e2e-col-consume-%ld", (long)getpid());
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err))) {
        fprintf(stderr, "conf: %s\n", err);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "consumer: %s\n", err);
        return 2;
    }
    rd_kafka_poll_set_consumer(rk);

    /* Every partition of every topic, from the beginning. */
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
    char *save = NULL;
    for (char *t = strtok_r(topics_arg, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t, NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR || !md ||
            md->topic_cnt != 1) {
            fprintf(stderr, "metadata for %s failed\n", t);
            return 2;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            rd_kafka_topic_partition_list_add(parts, t, md->topics[0].partitions[p].id)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    int np = parts->cnt;
    int64_t *high = calloc((size_t)np, sizeof(int64_t));
    int64_t *pos = calloc((size_t)np, sizeof(int64_t));
    bool truncated = false;
    for (int i = 0; i < np; i++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_query_watermark_offsets(rk, parts->elems[i].topic, parts->elems[i].partition, &lo,
                                         &hi, 10000);
        high[i] = hi;
        pos[i] = lo;
        truncated = truncated || lo > 0;
    }
    if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "assign failed\n");
        return 2;
    }

    idset_t seen = {0};
    long records = 0, events = 0, packed_records = 0, violations = 0, undecodable = 0;
    long bad_events = 0;
    json_t *collectors = json_object();
    int64_t deadline = tc_mono_us() + (int64_t)(timeout_s * 1e6);
    int64_t next_refresh = tc_mono_us() + 500000;
    bool finished = false;
    while (tc_mono_us() < deadline) {
        bool caught_up = true;
        for (int i = 0; i < np; i++) {
            caught_up = caught_up && pos[i] >= high[i];
        }
        if (caught_up && (expect < 0 || (long)seen.n >= expect)) {
            finished = true;
            break;
        }
        if (caught_up && tc_mono_us() >= next_refresh) {
            for (int i = 0; i < np; i++) {
                int64_t lo = 0, hi = 0;
                if (rd_kafka_query_watermark_offsets(rk, parts->elems[i].topic,
                                                     parts->elems[i].partition, &lo, &hi,
                                                     2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    high[i] = hi;
                }
            }
            next_refresh = tc_mono_us() + 500000;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        for (int i = 0; i < np; i++) {
            if (parts->elems[i].partition == m->partition &&
                strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)) == 0) {
                pos[i] = m->offset + 1;
            }
        }
        records++;
        /* The record's format: a pack when the header says so, else one event. */
        const void *fmt = NULL;
        size_t fmt_len = 0;
        rd_kafka_headers_t *hdrs = NULL;
        bool packed = false, unknown = false;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, "tocsin.format", &fmt, &fmt_len) ==
                RD_KAFKA_RESP_ERR_NO_ERROR) {
            packed = fmt_len == strlen("tocsin.v1.EventPack") &&
                     memcmp(fmt, "tocsin.v1.EventPack", fmt_len) == 0;
            unknown = !packed;
            packed_records += packed;
        }
        Tocsin__V1__EventPack *pack = NULL;
        Tocsin__V1__Event *single = NULL;
        Tocsin__V1__Event **evs = NULL;
        size_t nev = 0;
        if (packed) {
            pack = tocsin__v1__event_pack__unpack(NULL, m->len, m->payload);
            if (pack) {
                evs = pack->events;
                nev = pack->n_events;
            }
        } else if (!unknown) {
            single = tocsin__v1__event__unpack(NULL, m->len, m->payload);
            if (single) {
                evs = &single;
                nev = 1;
            }
        }
        if (!evs || nev == 0) {
            undecodable++;
        }
        for (size_t e = 0; e < nev; e++) {
            Tocsin__V1__Event *ev = evs[e];
            events++;
            if (ev->event_id.len != 16) {
                undecodable++;
                bad_events++;
                continue;
            }
            bool first = idset_insert(&seen, ev->event_id.data);
            svcstate_t *s = svc_state(ev->service);
            s->records++;
            if (first) {
                s->unique++;
                double seq = event_seq(ev);
                if (seq >= 0) {
                    char k[1200];
                    int n = snprintf(k, sizeof(k), "%s|", rd_kafka_topic_name(m->rkt));
                    for (size_t i = 0; i < m->key_len && n < (int)sizeof(k) - 3; i++) {
                        char c = ((const char *)m->key)[i];
                        k[n++] = c ? c : '/';
                    }
                    k[n] = '\0';
                    keystate_t *ks = key_state(k);
                    if (seq <= ks->last_seq) {
                        s->violations++;
                        violations++;
                    }
                    ks->last_seq = seq;
                    if (seq > s->max_seq) {
                        s->max_seq = seq;
                    }
                }
            }
            json_t *c = json_object_get(collectors, ev->collector_id);
            json_object_set_new(collectors, ev->collector_id,
                                json_integer(c ? json_integer_value(c) + 1 : 1));
            if (dump) {
                json_t *o = dump_record(m, ev, e, packed);
                json_object_set_new(o, "first", json_boolean(first));
                char *line = json_dumps(o, JSON_COMPACT);
                printf("%s\n", line);
                free(line);
                json_decref(o);
            }
        }
        if (pack) {
            tocsin__v1__event_pack__free_unpacked(pack, NULL);
        }
        if (single) {
            tocsin__v1__event__free_unpacked(single, NULL);
        }
        rd_kafka_message_destroy(m);
    }
    json_t *services = json_object();
    for (size_t i = 0; i < n_svcs; i++) {
        json_object_set_new(services, svcs[i].service,
                            json_pack("{s:I, s:I, s:I, s:f}", "records",
                                      (json_int_t)svcs[i].records, "unique",
                                      (json_int_t)svcs[i].unique, "violations",
                                      (json_int_t)svcs[i].violations, "max_seq", svcs[i].max_seq));
    }
    json_t *summary = json_pack(
        "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:o, s:o}", "summary", 1, "records",
        (json_int_t)records, "packed_records", (json_int_t)packed_records, "events",
        (json_int_t)events, "unique", (json_int_t)seen.n, "duplicates",
        (json_int_t)(events - bad_events - (long)seen.n), "order_violations",
        (json_int_t)violations, "undecodable", (json_int_t)undecodable, "truncated", truncated,
        "services", services, "collectors", collectors);
    json_object_set_new(summary, "finished", json_boolean(finished));
    char *line = json_dumps(summary, JSON_COMPACT);
    printf("%s\n", line);
    free(line);
    json_decref(summary);
    fflush(stdout);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(seen.ids);
    free(seen.used);
    free(high);
    free(pos);
    for (size_t i = 0; i < n_keys; i++) {
        free(keys[i].key);
    }
    for (size_t i = 0; i < n_svcs; i++) {
        free(svcs[i].service);
    }
    free(keys);
    free(svcs);
    return finished ? 0 : 1;
}
