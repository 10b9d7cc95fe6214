/*
 * Fuzz target: one tocsin.rollups record through alr_rollup_decode, and what decodes
 * through the window store. Input layout: 2 bytes little-endian key length L (0xffff: no
 * key), then L key bytes (fewer if the input is shorter), then the record value.
 * Checks the decoder's promises: on success the strings are bounded and terminated,
 * errors <= count, the width is sane and the start aligned, a sketch is consistent; an
 * issue change has its ids; unknown kinds are skipped; on failure a reason is given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alr_rollup.h"
#include "alr_window.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (assert is compiled out under NDEBUG). */
#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    size_t klen = (size_t)data[0] | ((size_t)data[1] << 8);
    const uint8_t *key = data + 2;
    size_t rest = size - 2;
    if (klen == 0xffff) {
        key = NULL;
        klen = 0;
    } else if (klen > rest) {
        klen = rest;
    }
    const uint8_t *value = data + 2 + klen;
    size_t vlen = rest - klen;

    alr_record_t rec;
    const char *why = NULL;
    int rc = alr_record_decode(key, klen, value, vlen, &rec, &why);
    if (rc != 0) {
        CHECK(why != NULL);
        return 0;
    }
    if (rec.kind == ALR_REC_ISSUE) {
        CHECK(strlen(rec.issue.service) > 0 && strlen(rec.issue.issue_id) > 0);
        CHECK(strlen(rec.issue.message) <= ALR_ISSUE_TEXT_MAX);
        alr_record_fini(&rec);
        return 0;
    }
    if (rec.kind != ALR_REC_BUCKET) {
        CHECK(rec.other != NULL);
        return 0;
    }
    alr_rollup_t r = rec.bucket;
    CHECK(strlen(r.service) > 0 && strlen(r.service) <= ALR_SERVICE_MAX);
    CHECK(strlen(r.environment) <= ALR_ENVIRONMENT_MAX);
    CHECK(strlen(r.name) <= ALR_NAME_MAX);
    CHECK(r.errors <= r.count);
    CHECK(r.width_s > 0 && r.width_s <= ALR_BUCKET_WIDTH_MAX);
    CHECK(r.start_s >= 0 && r.start_s % r.width_s == 0);
    if (r.has_sketch) {
        CHECK(r.sketch.len <= TC_SKETCH_MAX_BINS);
    }

    /* The window store takes any valid bucket; sums stay within what was put. */
    alr_window_t *w = alr_window_new(16);
    if (!w) {
        alr_record_fini(&rec);
        return 0;
    }
    int64_t now_us = (r.start_s + 5) * 1000000LL;
    CHECK(alr_window_put(w, &r, now_us, true) == 1);
    alr_window_agg_t s;
    tc_sketch_t sk;
    tc_sketch_init(&sk, TC_SKETCH_SCHEMA);
    alr_window_agg(w, r.service, "", "*", r.kind, 0, INT64_MAX, 0, &sk, &s);
    CHECK(s.count == r.count && s.errors == r.errors);
    tc_sketch_fini(&sk);
    /* A replay of the same revision changes nothing. */
    CHECK(alr_window_put(w, &r, now_us, true) == 0);
    alr_window_prune(w, r.start_s + (int64_t)r.width_s);
    CHECK(alr_window_bucket_count(w) == 0);
    alr_window_destroy(&w);
    alr_record_fini(&rec);
    return 0;
}
