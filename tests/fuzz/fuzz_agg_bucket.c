/*
 * Fuzz target agg_bucket: the aggregator's decoding of a stored bucket value
 * (agg_bucket_decode: 8-byte revision, then a tocsin.v1.Bucket) over arbitrary bytes, as if
 * LMDB handed back anything at all. A bucket that passes must answer quantiles, merge with
 * itself into twice its counts, and encode into bytes that decode to the same figures.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_bucket.h"
#include "tc_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agg_bucket_t b;
    uint64_t rev = 0;
    int rc = agg_bucket_decode(data, size, &b, &rev);
    if (rc != 0) {
        agg_bucket_fini(&b);
        return 0;
    }
    CHECK(b.count > 0 && b.errors <= b.count && b.late <= b.count);
    CHECK(b.start_s % AGG_BUCKET_WIDTH_S == 0 && b.width_s == AGG_BUCKET_WIDTH_S);
    CHECK(b.kind >= AGG_KIND_REQUESTS && b.kind <= AGG_KIND_TIMING);
    for (int i = 0; i <= 10; i++) {
        double q = tc_sketch_quantile(&b.sketch, i / 10.0);
        CHECK(b.sketch.count == 0 ? isnan(q) : q >= 0);
    }
    agg_bucket_t m;
    agg_bucket_init(&m);
    if (agg_bucket_merge(&m, &b) == 0 && agg_bucket_merge(&m, &b) == 0) {
        CHECK(m.count == 2 * b.count || m.count < b.count); /* wraps only near 2^64 */
        CHECK(m.sketch.count == 2 * b.sketch.count || m.sketch.count < b.sketch.count);
    }
    agg_bucket_fini(&m);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (agg_bucket_encode(&b, rev, &buf, &len) == 0) {
        agg_bucket_t d;
        uint64_t rev2 = 0;
        rc = agg_bucket_decode(buf, len, &d, &rev2);
        CHECK(rc == 0 || rc == TC_ENOMEM);
        if (rc == 0) {
            CHECK(rev2 == rev && d.count == b.count && d.errors == b.errors);
            CHECK(d.kind == b.kind && d.start_s == b.start_s);
            CHECK(d.sketch.count == b.sketch.count);
            CHECK(strcmp(d.service, b.service) == 0 && strcmp(d.name, b.name) == 0 &&
                  strcmp(d.environment, b.environment) == 0);
        }
        agg_bucket_fini(&d);
        free(buf);
    }
    agg_bucket_fini(&b);
    return 0;
}
