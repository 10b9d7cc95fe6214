/*
 * Fuzz target agg_bucket: the aggregator's decoding of a stored bucket value
 * (agg_bucket_store_decode) over arbitrary bytes, as if LMDB handed back anything at all. A
 * bucket that passes must keep the invariants every bucket keeps, answer quantiles, merge
 * with itself into twice its counts (and the same users), and encode into the same bytes.
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
    agg_bucket_t b, direct;
    agg_bucket_init(&b);
    agg_bucket_init(&direct);
    int rc = agg_bucket_store_decode(data, size, &b);
    /* The query's fast path accepts exactly what the decoder accepts, and adds the same. */
    int mrc = agg_bucket_store_merge(&direct, data, size);
    CHECK((rc == 0) == (mrc == 0) || rc == TC_ENOMEM || mrc == TC_ENOMEM);
    if (rc != 0) {
        CHECK(b.count == 0 && b.kind == AGG_KIND_NONE);
        CHECK(mrc == 0 || direct.count == 0);
        agg_bucket_fini(&b);
        agg_bucket_fini(&direct);
        return 0;
    }
    if (mrc == 0) {
        CHECK(direct.count == b.count && direct.errors == b.errors && direct.late == b.late);
        CHECK(direct.sketch.count == b.sketch.count);
        CHECK(tc_hll_count(&direct.users) == tc_hll_count(&b.users));
    }
    agg_bucket_fini(&direct);
    CHECK(agg_bucket_check(&b) == 0);
    CHECK(b.errors <= b.count);
    for (int i = 0; i <= 10; i++) {
        double q = tc_sketch_quantile(&b.sketch, i / 10.0);
        CHECK(b.sketch.count == 0 ? isnan(q) : q >= 0);
    }
    agg_bucket_t m;
    agg_bucket_init(&m);
    if (agg_bucket_merge(&m, &b) == 0 && agg_bucket_merge(&m, &b) == 0) {
        CHECK(m.count == 2 * b.count || m.count < b.count); /* wraps only near 2^64 */
        CHECK(tc_hll_count(&m.users) == tc_hll_count(&b.users));
    }
    agg_bucket_fini(&m);
    size_t n = agg_bucket_store_size(&b);
    uint8_t *buf = malloc(n);
    if (buf) {
        CHECK(agg_bucket_store_encode(&b, buf) == n);
        agg_bucket_t d;
        agg_bucket_init(&d);
        rc = agg_bucket_store_decode(buf, n, &d);
        CHECK(rc == 0 || rc == TC_ENOMEM);
        if (rc == 0) {
            CHECK(d.count == b.count && d.errors == b.errors && d.late == b.late);
            CHECK(d.kind == b.kind && d.width_s == b.width_s);
            CHECK(d.source_offset == b.source_offset && d.nslo == b.nslo);
            CHECK(d.sketch.count == b.sketch.count);
        }
        agg_bucket_fini(&d);
        free(buf);
    }
    agg_bucket_fini(&b);
    return 0;
}
