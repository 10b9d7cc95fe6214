/*
 * alr_push — produces tocsin.rollups records from JSON lines on stdin, for the alerter's
 * end-to-end tests and benchmark (so they control exactly what the alerter reads, without
 * an aggregator in between).
 *
 * usage: alr_push BOOTSTRAP_FILE [TOPIC]
 * Each line is one record:
 *   {"bucket": {"service","environment","name","kind","start_s","width_s","count","errors",
 *               "revision","open","latency_us": [values...]}}
 *   {"issue": {"kind":"new"|"regressed","service","environment","issue_id","type",
 *              "message","level","count","revision"}}
 *   {"unknown": true}   a Rollup whose body is a field number this build does not know
 *   {"garbage": true}   bytes that are not a protobuf
 * A line {"flush": true} waits until everything produced so far is acknowledged and
 * prints {"flushed": N, "at_us": T} on stdout. At the end everything is flushed and
 * {"produced": N, "at_us": T} is printed. Exits 1 when a record cannot be delivered.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_kafka.h"
#include "tc_sketch.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

static int failures;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        fprintf(stderr, "alr_push: delivery failed: %s\n", rd_kafka_err2str(m->err));
        failures++;
    }
}

static const char *s_of(const json_t *o, const char *k, const char *def)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : def;
}

static long long i_of(const json_t *o, const char *k, long long def)
{
    json_t *v = json_object_get(o, k);
    return v ? (long long)json_integer_value(v) : def;
}

/* Encodes one line into a key and value (malloc'd). Returns 0 or -1. */
static int encode(const json_t *line, char **key, size_t *klen, uint8_t **val, size_t *vlen)
{
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    Tocsin__V1__Bucket b = TOCSIN__V1__BUCKET__INIT;
    Tocsin__V1__IssueChange ic = TOCSIN__V1__ISSUE_CHANGE__INIT;
    Tocsin__V1__Sketch sk = TOCSIN__V1__SKETCH__INIT;
    tc_sketch_t sketch;
    tc_sketch_init(&sketch, TC_SKETCH_SCHEMA);
    r.producer = "alr_push";
    json_t *jb = json_object_get(line, "bucket");
    json_t *ji = json_object_get(line, "issue");
    const char *service, *env, *name;
    char namebuf[300];
    if (json_object_get(line, "garbage")) {
        *val = (uint8_t *)strdup("\xff\xff\xff not a protobuf");
        *vlen = strlen((char *)*val);
        *key = strdup("x");
        *klen = 1;
        return 0;
    }
    if (json_object_get(line, "unknown")) {
        /* revision = 1, then field 99, length-delimited, 3 bytes: a body kind a newer
         * aggregator might send. */
        static const uint8_t raw[] = {0x10, 0x01, 0x9a, 0x06, 0x03, 'a', 'b', 'c'};
        *val = malloc(sizeof(raw));
        memcpy(*val, raw, sizeof(raw));
        *vlen = sizeof(raw);
        *key = strdup("x");
        *klen = 1;
        return 0;
    }
    if (jb) {
        r.body_case = TOCSIN__V1__ROLLUP__BODY_BUCKET;
        r.bucket = &b;
        r.revision = (uint64_t)i_of(jb, "revision", 1);
        service = s_of(jb, "service", "svc");
        env = s_of(jb, "environment", "prod");
        name = s_of(jb, "name", "/");
        b.service = (char *)service;
        b.environment = (char *)env;
        b.name = (char *)name;
        b.kind = (Tocsin__V1__SeriesKind)i_of(jb, "kind", 1);
        b.start_s = i_of(jb, "start_s", 0);
        b.width_s = (uint32_t)i_of(jb, "width_s", 10);
        b.count = (uint64_t)i_of(jb, "count", 0);
        b.errors = (uint64_t)i_of(jb, "errors", 0);
        b.open = json_is_true(json_object_get(jb, "open"));
        b.sum = json_number_value(json_object_get(jb, "sum"));
        b.last = json_number_value(json_object_get(jb, "last"));
        b.last_time_us = i_of(jb, "last_time_us", 0);
        json_t *lat = json_object_get(jb, "latency_us");
        if (json_is_array(lat)) {
            size_t i;
            json_t *v;
            json_array_foreach(lat, i, v)
            {
                tc_sketch_add(&sketch, json_number_value(v), 1);
            }
            sk.schema = sketch.schema;
            sk.zero_count = sketch.zero_count;
            sk.offset = sketch.offset;
            sk.n_counts = sketch.len;
            sk.counts = sketch.counts;
            b.sketch = &sk;
        }
        snprintf(namebuf, sizeof(namebuf), "%s", name);
    } else if (ji) {
        r.body_case = TOCSIN__V1__ROLLUP__BODY_ISSUE;
        r.issue = &ic;
        r.revision = (uint64_t)i_of(ji, "revision", 1);
        service = s_of(ji, "service", "svc");
        env = s_of(ji, "environment", "prod");
        ic.kind = strcmp(s_of(ji, "kind", "new"), "regressed") == 0
                      ? TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_REGRESSED
                      : TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_NEW;
        ic.service = (char *)service;
        ic.environment = (char *)env;
        ic.issue_id = (char *)s_of(ji, "issue_id", "0");
        ic.type = (char *)s_of(ji, "type", "");
        ic.message = (char *)s_of(ji, "message", "");
        ic.culprit = (char *)s_of(ji, "culprit", "");
        ic.release = (char *)s_of(ji, "release", "");
        ic.level = (Tocsin__V1__Level)i_of(ji, "level", 5);
        ic.count = (uint64_t)i_of(ji, "count", 1);
        ic.time_us = tc_now_us();
        ic.first_seen_us = ic.time_us;
        snprintf(namebuf, sizeof(namebuf), "$issue:%s", ic.issue_id);
    } else {
        tc_sketch_fini(&sketch);
        return -1;
    }
    size_t a = strlen(service), e = strlen(env), n = strlen(namebuf);
    *klen = a + 1 + e + 1 + n;
    *key = malloc(*klen);
    memcpy(*key, service, a);
    (*key)[a] = 0;
    memcpy(*key + a + 1, env, e);
    (*key)[a + 1 + e] = 0;
    memcpy(*key + a + 2 + e, namebuf, n);
    *vlen = tocsin__v1__rollup__get_packed_size(&r);
    *val = malloc(*vlen ? *vlen : 1);
    tocsin__v1__rollup__pack(&r, *val);
    tc_sketch_fini(&sketch);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: alr_push BOOTSTRAP_FILE [TOPIC] < lines.jsonl\n");
        return 2;
    }
    const char *topic = argc > 2 ? argv[2] : "tocsin.rollups";
    char *bootstrap = NULL;
    if (tc_kafka_bootstrap(NULL, argv[1], 30000, &bootstrap) != 0) {
        fprintf(stderr, "alr_push: no bootstrap in %s\n", argv[1]);
        return 1;
    }
    char err[512];
    tc_cfg_kvs_t none = {0};
    rd_kafka_conf_t *conf = tc_kafka_conf_new(bootstrap, "alr_push", &none, err, sizeof(err));
    free(bootstrap);
    if (!conf || rd_kafka_conf_set(conf, "linger.ms", "1", err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "alr_push: %s\n", err);
        return 1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "alr_push: %s\n", err);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    long produced = 0;
    while (getline(&line, &cap, stdin) > 0) {
        json_error_t jerr;
        json_t *doc = json_loads(line, 0, &jerr);
        if (!doc) {
            continue;
        }
        if (json_object_get(doc, "flush")) {
            rd_kafka_flush(rk, 30000);
            printf("{\"flushed\": %ld, \"at_us\": %lld}\n", produced, (long long)tc_now_us());
            fflush(stdout);
            json_decref(doc);
            continue;
        }
        char *key = NULL;
        uint8_t *val = NULL;
        size_t klen = 0, vlen = 0;
        if (encode(doc, &key, &klen, &val, &vlen) == 0) {
            /* produceva: the RD_KAFKA_V_* macros are GNU statement expressions. */
            rd_kafka_vu_t vu[4];
            memset(vu, 0, sizeof(vu));
            vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
            vu[0].u.cstr = topic;
            vu[1].vtype = RD_KAFKA_VTYPE_KEY;
            vu[1].u.mem.ptr = key;
            vu[1].u.mem.size = klen;
            vu[2].vtype = RD_KAFKA_VTYPE_VALUE;
            vu[2].u.mem.ptr = val;
            vu[2].u.mem.size = vlen;
            vu[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
            vu[3].u.i = RD_KAFKA_MSG_F_COPY;
            rd_kafka_error_t *e;
            while ((e = rd_kafka_produceva(rk, vu, 4)) != NULL &&
                   rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_error_destroy(e);
                rd_kafka_poll(rk, 10);
            }
            if (e) {
                fprintf(stderr, "alr_push: produce: %s\n", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                failures++;
            }
            produced++;
            rd_kafka_poll(rk, 0);
        }
        free(key);
        free(val);
        json_decref(doc);
    }
    free(line);
    rd_kafka_flush(rk, 30000);
    printf("{\"produced\": %ld, \"at_us\": %lld}\n", produced, (long long)tc_now_us());
    rd_kafka_destroy(rk);
    return failures ? 1 : 0;
}
