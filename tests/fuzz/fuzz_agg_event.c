/*
 * Fuzz target agg_event: the aggregator's reading of a Kafka record value from
 * tocsin.events (agg_wire_scan, the zero-copy scanner of the hot path) over arbitrary bytes.
 * An event that passes must agree with protobuf-c's decoding of the same bytes on every
 * field the aggregator uses, turn into a sample that applies to an empty bucket (log
 * records aside), and the bucket must survive the stored and the rollup encodings; what is
 * accepted can always be stored and published. agg_wire_scan_id must find the same id.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_bucket.h"
#include "agg_rollup.h"
#include "agg_wire.h"
#include "tc_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (assert is compiled out under NDEBUG). */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool same(agg_str_t s, const char *pb)
{
    return agg_str_eq(s, pb ? pb : "");
}

static void check_bucket(const agg_bucket_t *b, const agg_sample_t *s)
{
    CHECK(b->count == 1 && b->errors == (s->error ? 1u : 0u));
    size_t n = agg_bucket_store_size(b);
    uint8_t *buf = malloc(n);
    if (!buf) {
        return;
    }
    CHECK(agg_bucket_store_encode(b, buf) == n);
    agg_bucket_t d;
    agg_bucket_init(&d);
    int rc = agg_bucket_store_decode(buf, n, &d);
    CHECK(rc == 0 || rc == TC_ENOMEM);
    if (rc == 0) {
        CHECK(d.kind == b->kind && d.count == b->count && d.errors == b->errors);
        CHECK(d.sketch.count == b->sketch.count);
        CHECK(tc_hll_count(&d.users) == tc_hll_count(&b->users));
    }
    agg_bucket_fini(&d);
    free(buf);
    char svc[AGG_MAX_SERVICE + 1], env[AGG_MAX_ENVIRONMENT + 1], name[AGG_MAX_NAME + 1];
    memcpy(svc, s->service.p, s->service.n);
    svc[s->service.n] = '\0';
    memcpy(env, s->environment.p, s->environment.n);
    env[s->environment.n] = '\0';
    memcpy(name, s->name.p, s->name.n);
    name[s->name.n] = '\0';
    agg_series_id_t id = {svc, env, name};
    uint8_t *out = NULL;
    size_t len = 0;
    if (agg_bucket_rollup_encode(&id, s->start_s, b, 3, true, "fuzz", &out, &len) == 0) {
        agg_rollup_t *r = malloc(sizeof(*r));
        if (r) {
            agg_rollup_init(r);
            rc = agg_rollup_decode(out, len, r, NULL);
            CHECK(rc == 0 || rc == TC_ENOMEM);
            if (rc == 0) {
                CHECK(r->body == AGG_ROLLUP_BUCKET && r->bucket.count == 1 &&
                      r->start_s == s->start_s && r->partition == 3 && r->open);
                CHECK(strcmp(r->service, svc) == 0 && strcmp(r->name, name) == 0);
            }
            agg_rollup_fini(r);
            free(r);
        }
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agg_event_t ev;
    const char *reason = NULL;
    int rc = agg_wire_scan(data, size, &ev, &reason);
    const uint8_t *id = NULL;
    int64_t recv = 0;
    if (rc != 0) {
        CHECK(reason != NULL);
        return 0;
    }
    CHECK(agg_wire_scan_id(data, size, &id, &recv) == 0);
    CHECK(id == ev.event_id && recv == ev.received_us);
    CHECK(ev.service.n > 0 && ev.environment.n > 0);
    /* protobuf-c agrees on what the scanner kept (it refuses nothing the scanner took,
     * except on memory). */
    Tocsin__V1__Event *pb = agg_wire_unpack(data, size);
    if (pb) {
        CHECK(pb->event_id.len == 16 && memcmp(pb->event_id.data, ev.event_id, 16) == 0);
        CHECK(same(ev.service, pb->service));
        CHECK(pb->time_us == ev.time_us);
        CHECK((int)pb->body_case == (int)ev.body);
        if (ev.body == AGG_BODY_REQUEST) {
            CHECK(same(ev.route, pb->request->route));
            CHECK(pb->request->duration_us == ev.duration_us);
            CHECK(pb->request->status == ev.status);
        } else if (ev.body == AGG_BODY_METRIC) {
            CHECK(same(ev.metric_name, pb->metric->name));
            CHECK((int)pb->metric->kind == ev.metric_kind);
        } else if (ev.body == AGG_BODY_ERROR) {
            CHECK(same(ev.error_type, pb->error->type));
            CHECK(same(ev.grouping_hash, pb->error->grouping_hash));
        }
        tocsin__v1__event__free_unpacked(pb, NULL);
    }
    agg_sample_t s;
    agg_event_sample(&ev, &s);
    if (s.kind != AGG_KIND_NONE) {
        CHECK(s.service.n && s.environment.n && s.name.n);
        CHECK(!s.has_value || isfinite(s.value));
        agg_bucket_t b;
        agg_bucket_init(&b);
        agg_slo_t slo = {2, {100000, 2000000}};
        if (agg_bucket_apply(&b, &s, &slo) == 0) {
            check_bucket(&b, &s);
        }
        agg_bucket_fini(&b);
    }
    return 0;
}
