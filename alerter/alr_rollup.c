#include "alr_rollup.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

/* The last second of year 9999: bucket starts beyond it are nonsense. */
#define START_MAX 253402300799LL

/* Copies a protobuf string into `dst` after checking it is UTF-8, holds no NUL and fits. */
static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src); /* protobuf-c strings are NUL-terminated; an inner NUL ends it */
    if (n >= cap || !tc_utf8_valid(src, n)) {
        return TC_EINVAL;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* Copies free text, cut at a UTF-8 boundary when longer than the buffer. */
static int copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (!tc_utf8_valid(src, n)) {
        return TC_EINVAL;
    }
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    return 0;
}

/* Checks that `key` is exactly a \0 b \0 c. */
static bool key_matches(const uint8_t *key, size_t len, const char *a, const char *b,
                        const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    if (len != la + 1 + lb + 1 + lc) {
        return false;
    }
    return memcmp(key, a, la) == 0 && key[la] == 0 && memcmp(key + la + 1, b, lb) == 0 &&
           key[la + 1 + lb] == 0 && memcmp(key + la + 2 + lb, c, lc) == 0;
}

static double finite_or_zero(double v)
{
    return isfinite(v) ? v : 0.0;
}

static int decode_bucket(const Tocsin__V1__Bucket *b, uint64_t revision, const void *key,
                         size_t key_len, alr_rollup_t *out, const char **why)
{
    if (copy_str(out->service, sizeof(out->service), b->service) != 0 || !out->service[0] ||
        copy_str(out->environment, sizeof(out->environment), b->environment) != 0 ||
        copy_str(out->name, sizeof(out->name), b->name) != 0) {
        *why = "string";
        return TC_EINVAL;
    }
    if ((int)b->kind < 0) {
        *why = "kind";
        return TC_EINVAL;
    }
    if (b->width_s == 0 || b->width_s > ALR_BUCKET_WIDTH_MAX) {
        *why = "width";
        return TC_EINVAL;
    }
    if (b->start_s < 0 || b->start_s > START_MAX || b->start_s % b->width_s != 0) {
        *why = "alignment";
        return TC_EINVAL;
    }
    if (b->errors > b->count) {
        *why = "errors_above_count";
        return TC_EINVAL;
    }
    if (key && !key_matches(key, key_len, out->service, out->environment, out->name)) {
        *why = "key_mismatch";
        return TC_EINVAL;
    }
    out->kind = (int)b->kind;
    out->source_partition = b->source_partition;
    out->open = b->open;
    out->start_s = b->start_s;
    out->width_s = b->width_s;
    out->count = b->count;
    out->errors = b->errors;
    out->revision = revision;
    out->sum = finite_or_zero(b->sum);
    out->min = finite_or_zero(b->min);
    out->max = finite_or_zero(b->max);
    out->last = finite_or_zero(b->last);
    out->last_time_us = b->last_time_us;
    const Tocsin__V1__Sketch *sk = b->sketch;
    if (sk && (sk->n_counts > 0 || sk->zero_count > 0)) {
        tc_sketch_init(&out->sketch, TC_SKETCH_SCHEMA);
        if (sk->n_counts > TC_SKETCH_MAX_BINS ||
            tc_sketch_load(&out->sketch, sk->schema, sk->zero_count, sk->offset, sk->counts,
                           sk->n_counts) != 0) {
            tc_sketch_fini(&out->sketch);
            *why = "sketch";
            return TC_EINVAL;
        }
        out->has_sketch = true;
    }
    return 0;
}

static int decode_issue(const Tocsin__V1__IssueChange *ic, uint64_t revision, const void *key,
                        size_t key_len, alr_issue_t *out, const char **why)
{
    if (ic->kind != TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_NEW &&
        ic->kind != TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_REGRESSED) {
        *why = "issue";
        return TC_EINVAL;
    }
    out->regressed = ic->kind == TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_REGRESSED;
    if (copy_str(out->service, sizeof(out->service), ic->service) != 0 || !out->service[0] ||
        copy_str(out->environment, sizeof(out->environment), ic->environment) != 0 ||
        copy_str(out->issue_id, sizeof(out->issue_id), ic->issue_id) != 0 || !out->issue_id[0] ||
        copy_text(out->type, sizeof(out->type), ic->type) != 0 ||
        copy_text(out->message, sizeof(out->message), ic->message) != 0 ||
        copy_text(out->culprit, sizeof(out->culprit), ic->culprit) != 0 ||
        copy_text(out->release, sizeof(out->release), ic->release) != 0) {
        *why = "string";
        return TC_EINVAL;
    }
    if (key) {
        char name[ALR_ISSUE_ID_MAX + 8];
        snprintf(name, sizeof(name), "$issue:%s", out->issue_id);
        if (!key_matches(key, key_len, out->service, out->environment, name)) {
            *why = "key_mismatch";
            return TC_EINVAL;
        }
    }
    out->level = (int)ic->level;
    out->first_seen_us = ic->first_seen_us;
    out->time_us = ic->time_us;
    out->count = ic->count;
    out->revision = revision;
    return 0;
}

/* The status key is "service\0\0$issue:ID" (no environment: a status is the issue's). */
static int decode_status(const Tocsin__V1__IssueStatus *st, const void *key, size_t key_len,
                         alr_record_t *out, const char **why)
{
    alr_issue_status_t *s = &out->status;
    if (st->status != TOCSIN__V1__ISSUE_STATUS__STATUS__STATUS_UNRESOLVED &&
        st->status != TOCSIN__V1__ISSUE_STATUS__STATUS__STATUS_RESOLVED &&
        st->status != TOCSIN__V1__ISSUE_STATUS__STATUS__STATUS_IGNORED) {
        /* A status a newer aggregator knows and this build does not: not an error. */
        out->kind = ALR_REC_OTHER;
        out->other = ALR_SKIP_ISSUE_STATUS;
        return 0;
    }
    if (copy_str(s->service, sizeof(s->service), st->service) != 0 || !s->service[0] ||
        copy_str(s->issue_id, sizeof(s->issue_id), st->issue_id) != 0 || !s->issue_id[0] ||
        copy_text(s->updated_by, sizeof(s->updated_by), st->updated_by) != 0) {
        *why = "string";
        return TC_EINVAL;
    }
    if (st->updated_us <= 0) {
        *why = "status";
        return TC_EINVAL;
    }
    if (key) {
        char name[ALR_ISSUE_ID_MAX + 8];
        snprintf(name, sizeof(name), "$issue:%s", s->issue_id);
        if (!key_matches(key, key_len, s->service, "", name)) {
            *why = "key_mismatch";
            return TC_EINVAL;
        }
    }
    s->status = (int)st->status;
    s->updated_us = st->updated_us;
    out->kind = ALR_REC_ISSUE_STATUS;
    return 0;
}

int alr_record_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                      alr_record_t *out, const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    memset(out, 0, sizeof(*out));
    if (value_len > ALR_ROLLUP_VALUE_MAX) {
        *why = "too_big";
        return TC_ETOOBIG;
    }
    Tocsin__V1__Rollup *msg = tocsin__v1__rollup__unpack(NULL, value_len, value);
    if (!msg) {
        *why = "protobuf";
        return TC_EPARSE;
    }
    int rc = 0;
    switch (msg->body_case) {
    case TOCSIN__V1__ROLLUP__BODY_BUCKET:
        out->kind = ALR_REC_BUCKET;
        rc = decode_bucket(msg->bucket, msg->revision, key, key_len, &out->bucket, why);
        break;
    case TOCSIN__V1__ROLLUP__BODY_ISSUE:
        out->kind = ALR_REC_ISSUE;
        rc = decode_issue(msg->issue, msg->revision, key, key_len, &out->issue, why);
        break;
    case TOCSIN__V1__ROLLUP__BODY_ISSUE_STATUS:
        rc = decode_status(msg->issue_status, key, key_len, out, why);
        break;
    case TOCSIN__V1__ROLLUP__BODY_ISSUE_STATE:
        /* Issue states are for the aggregators' views; the alerter reads changes. */
        out->kind = ALR_REC_OTHER;
        out->other = ALR_SKIP_ISSUE_STATE;
        break;
    case TOCSIN__V1__ROLLUP__BODY_CHECKPOINT:
        out->kind = ALR_REC_OTHER;
        out->other = ALR_SKIP_CHECKPOINT;
        break;
    default:
        /* A body this build does not know sits in the unknown fields: a newer message kind,
         * skipped. No body at all is an error. */
        if (msg->base.n_unknown_fields > 0) {
            out->kind = ALR_REC_OTHER;
            out->other = ALR_SKIP_UNKNOWN;
        } else {
            *why = "no_body";
            rc = TC_EINVAL;
        }
        break;
    }
    tocsin__v1__rollup__free_unpacked(msg, NULL);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

void alr_rollup_fini(alr_rollup_t *r)
{
    if (r->has_sketch) {
        tc_sketch_fini(&r->sketch);
        r->has_sketch = false;
    }
}

void alr_record_fini(alr_record_t *rec)
{
    if (rec->kind == ALR_REC_BUCKET) {
        alr_rollup_fini(&rec->bucket);
    }
}
