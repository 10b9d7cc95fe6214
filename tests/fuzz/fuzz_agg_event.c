/*
 * Fuzz target agg_event: the aggregator's decoding of a Kafka record value from
 * tocsin.events (agg_event_decode) over arbitrary bytes. An event that passes must turn into
 * a sample, apply to an empty bucket (log records aside), and the bucket must survive the
 * stored encoding and the rollup encoding unchanged — what is accepted can always be stored.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_bucket.h"
#include "tc_error.h"
#include "tocsin/v1/rollup.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (assert is compiled out under NDEBUG). */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_bucket(const agg_bucket_t *b, const agg_sample_t *s)
{
    CHECK(b->count == 1);
    CHECK(b->errors == (s->error ? 1u : 0u));
    CHECK(b->start_s == s->start_s);
    CHECK(b->start_s % AGG_BUCKET_WIDTH_S == 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (agg_bucket_encode(b, 1, &buf, &len) != 0) {
        return; /* out of memory */
    }
    agg_bucket_t d;
    uint64_t rev = 0;
    int rc = agg_bucket_decode(buf, len, &d, &rev);
    CHECK(rc == 0 || rc == TC_ENOMEM);
    if (rc == 0) {
        CHECK(rev == 1);
        CHECK(d.kind == b->kind && d.count == b->count && d.errors == b->errors);
        CHECK(strcmp(d.service, b->service) == 0 && strcmp(d.name, b->name) == 0);
        CHECK(d.sketch.count == b->sketch.count);
    }
    agg_bucket_fini(&d);
    free(buf);
    if (agg_rollup_encode(b, 1, "fuzz", &buf, &len) == 0) {
        Tocsin__V1__Rollup *r = tocsin__v1__rollup__unpack(NULL, len, buf);
        CHECK(r != NULL);
        CHECK(r->bucket && r->bucket->count == 1);
        tocsin__v1__rollup__free_unpacked(r, NULL);
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tocsin__V1__Event *ev = NULL;
    const char *reason = NULL;
    int rc = agg_event_decode(data, size, &ev, &reason);
    if (rc != 0) {
        CHECK(ev == NULL && reason != NULL);
        return 0;
    }
    CHECK(ev->event_id.len == AGG_EVENT_ID_LEN);
    agg_sample_t s;
    CHECK(agg_event_sample(ev, &s) == 0);
    if (s.kind != AGG_KIND_NONE) {
        CHECK(s.service[0] && s.environment[0] && s.name[0]);
        CHECK(!s.has_value || isfinite(s.value));
        agg_bucket_t b;
        agg_bucket_init(&b);
        if (agg_bucket_apply(&b, &s, false) == 0) {
            check_bucket(&b, &s);
        }
        agg_bucket_fini(&b);
    }
    tocsin__v1__event__free_unpacked(ev, NULL);
    return 0;
}
