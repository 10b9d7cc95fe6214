/*
 * Fuzz target agg_rollup: the view's decoding of a tocsin.rollups record
 * (agg_rollup_decode) over arbitrary bytes. What passes must keep its body's invariants:
 * a bucket that agg_bucket_check accepts and that survives the stored encoding, an issue
 * state that re-encodes and decodes to the same figures, a status in range, a checkpoint
 * whose dedupe_from is not after its offset.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_rollup.h"
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
    static agg_rollup_t r;
    static bool init;
    if (!init) {
        agg_rollup_init(&r);
        init = true;
    }
    const char *why = NULL;
    int rc = agg_rollup_decode(data, size, &r, &why);
    if (rc != 0) {
        CHECK(why != NULL);
        return 0;
    }
    switch (r.body) {
    case AGG_ROLLUP_BUCKET: {
        CHECK(agg_bucket_check(&r.bucket) == 0);
        CHECK(r.service[0] && r.environment[0] && r.name[0]);
        CHECK(r.start_s % AGG_BUCKET_WIDTH_S == 0);
        size_t n = agg_bucket_store_size(&r.bucket);
        uint8_t *buf = malloc(n);
        if (buf) {
            agg_bucket_store_encode(&r.bucket, buf);
            agg_bucket_t d;
            agg_bucket_init(&d);
            rc = agg_bucket_store_decode(buf, n, &d);
            CHECK(rc == 0 || rc == TC_ENOMEM);
            CHECK(rc != 0 || d.count == r.bucket.count);
            agg_bucket_fini(&d);
            free(buf);
        }
        break;
    }
    case AGG_ROLLUP_ISSUE: {
        CHECK(r.issue.service && r.issue.id && r.issue.count > 0);
        uint8_t *buf = NULL;
        size_t n = 0;
        if (agg_issue_encode(&r.issue, &buf, &n) == 0) {
            agg_issue_t d;
            agg_issue_init(&d);
            rc = agg_issue_decode(buf, n, &d);
            CHECK(rc == 0 || rc == TC_ENOMEM);
            CHECK(rc != 0 || (d.count == r.issue.count && strcmp(d.id, r.issue.id) == 0));
            agg_issue_fini(&d);
            free(buf);
        }
        break;
    }
    case AGG_ROLLUP_STATUS:
        CHECK(r.status.status >= AGG_STATUS_UNRESOLVED && r.status.status <= AGG_STATUS_IGNORED);
        CHECK(r.service[0] && r.issue_id[0] && r.status.updated_us > 0);
        break;
    case AGG_ROLLUP_CHECKPOINT:
        CHECK(r.offset >= 0 && r.dedupe_from <= r.offset && r.group[0] && r.topic[0]);
        break;
    default:
        break;
    }
    return 0;
}
