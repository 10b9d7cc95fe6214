#include "agg_rollup.h"

#include <math.h>
#include <string.h>

#include "tc_error.h"
#include "tocsin/v1/rollup.pb-c.h"

void agg_rollup_init(agg_rollup_t *r)
{
    memset(r, 0, sizeof(*r));
    agg_bucket_init(&r->bucket);
    agg_issue_init(&r->issue);
}

void agg_rollup_fini(agg_rollup_t *r)
{
    agg_bucket_fini(&r->bucket);
    agg_issue_fini(&r->issue);
}

/* Copies a protobuf string after checking it is UTF-8, fits and (when `nonempty`) is set. */
static bool copy_str(char *dst, size_t cap, const char *src, bool nonempty)
{
    if (!src) {
        return false;
    }
    size_t n = strlen(src);
    if (n >= cap || (nonempty && n == 0) || !agg_text_ok(src, n, cap - 1)) {
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

#define FAIL(code, reason)                                                                         \
    do {                                                                                           \
        *why = (reason);                                                                           \
        return (code);                                                                             \
    } while (0)

static int decode_bucket(const Tocsin__V1__Bucket *pb, agg_rollup_t *r, const char **why)
{
    if (!copy_str(r->service, sizeof(r->service), pb->service, true) ||
        !copy_str(r->environment, sizeof(r->environment), pb->environment, true) ||
        !copy_str(r->name, sizeof(r->name), pb->name, true)) {
        FAIL(TC_EUTF8, "string");
    }
    int kind = (int)pb->kind;
    if (kind < AGG_KIND_REQUESTS || kind > AGG_KIND_TIMING) {
        FAIL(TC_EINVAL, "kind");
    }
    if (pb->width_s != AGG_BUCKET_WIDTH_S) {
        FAIL(TC_EINVAL, "width");
    }
    if (pb->start_s < -AGG_START_MAX || pb->start_s > AGG_START_MAX ||
        pb->start_s % AGG_BUCKET_WIDTH_S != 0) {
        FAIL(TC_EINVAL, "alignment");
    }
    if (pb->source_offset < 0) {
        FAIL(TC_EINVAL, "counts");
    }
    if (pb->n_slo_thresholds_us != pb->n_slow || pb->n_slow > AGG_SLO_MAX) {
        FAIL(TC_EINVAL, "slo");
    }
    agg_bucket_t *b = &r->bucket;
    agg_bucket_reset(b);
    b->kind = (agg_kind_t)kind;
    b->width_s = pb->width_s;
    b->count = pb->count;
    b->errors = pb->errors;
    b->late = pb->late;
    b->sampled_events = pb->sampled_events;
    b->sampled_count = pb->sampled_count;
    b->sum = pb->sum;
    b->min = pb->min;
    b->max = pb->max;
    b->last = pb->last;
    b->last_time_us = pb->last_time_us;
    b->source_offset = pb->source_offset;
    b->nslo = (uint32_t)pb->n_slow;
    for (size_t i = 0; i < pb->n_slow; i++) {
        b->slo_us[i] = pb->slo_thresholds_us[i];
        b->slow[i] = pb->slow[i];
    }
    if (pb->sketch) {
        const Tocsin__V1__Sketch *sk = pb->sketch;
        if (sk->schema != TC_SKETCH_SCHEMA ||
            tc_sketch_load(&b->sketch, sk->schema, sk->zero_count, sk->offset, sk->counts,
                           sk->n_counts) != 0) {
            agg_bucket_reset(b);
            FAIL(TC_EINVAL, "sketch");
        }
    }
    if (tc_hll_decode(&b->users, pb->users.data, pb->users.len) != 0) {
        agg_bucket_reset(b);
        FAIL(TC_EINVAL, "users");
    }
    if (agg_bucket_check(b) != 0) {
        agg_bucket_reset(b);
        FAIL(TC_EINVAL, "counts");
    }
    r->start_s = pb->start_s;
    if (pb->source_partition > INT32_MAX) {
        agg_bucket_reset(b);
        FAIL(TC_EINVAL, "partition"); /* Kafka's partitions are int32: the rest is ours */
    }
    r->partition = pb->source_partition;
    r->open = pb->open;
    return 0;
}

static int decode_status(const Tocsin__V1__IssueStatus *pb, agg_rollup_t *r, const char **why)
{
    if (!copy_str(r->service, sizeof(r->service), pb->service, true) ||
        !copy_str(r->issue_id, sizeof(r->issue_id), pb->issue_id, true) ||
        !copy_str(r->status.updated_by, sizeof(r->status.updated_by), pb->updated_by, false)) {
        FAIL(TC_EUTF8, "string");
    }
    if (pb->status < TOCSIN__V1__ISSUE_STATUS__STATUS__STATUS_UNRESOLVED ||
        pb->status > TOCSIN__V1__ISSUE_STATUS__STATUS__STATUS_IGNORED || pb->updated_us <= 0) {
        FAIL(TC_EINVAL, "status");
    }
    r->status.status = (agg_status_t)pb->status;
    r->status.updated_us = pb->updated_us;
    return 0;
}

static int decode_checkpoint(const Tocsin__V1__Checkpoint *pb, agg_rollup_t *r, const char **why)
{
    if (!copy_str(r->group, sizeof(r->group), pb->group, true) ||
        !copy_str(r->topic, sizeof(r->topic), pb->topic, true)) {
        FAIL(TC_EUTF8, "string");
    }
    if (pb->offset < 0 || pb->dedupe_from < 0 || pb->dedupe_from > pb->offset ||
        pb->partition > INT32_MAX) {
        FAIL(TC_EINVAL, "checkpoint");
    }
    r->partition = pb->partition;
    r->offset = pb->offset;
    r->dedupe_from = pb->dedupe_from;
    r->time_us = pb->time_us;
    return 0;
}

/* Finds field 12 (issue_state) in a Rollup's wire bytes, so the IssueState decoder sees
 * exactly its own bytes. Returns false when absent or malformed. */
static bool find_issue_state(const uint8_t *p, size_t len, const uint8_t **body, size_t *blen)
{
    size_t i = 0;
    bool found = false;
    while (i < len) {
        uint64_t tag = 0;
        int shift = 0;
        do {
            if (i >= len || shift > 63) {
                return false;
            }
            tag |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
        } while (p[i++] & 0x80);
        int wt = (int)(tag & 7);
        uint64_t v = 0;
        shift = 0;
        switch (wt) {
        case 0:
            do {
                if (i >= len || shift > 63) {
                    return false;
                }
                shift += 7;
            } while (p[i++] & 0x80);
            break;
        case 1:
            if (len - i < 8) {
                return false;
            }
            i += 8;
            break;
        case 5:
            if (len - i < 4) {
                return false;
            }
            i += 4;
            break;
        case 2:
            do {
                if (i >= len || shift > 63) {
                    return false;
                }
                v |= (uint64_t)(p[i] & 0x7f) << shift;
                shift += 7;
            } while (p[i++] & 0x80);
            if (v > len - i) {
                return false;
            }
            if ((tag >> 3) == 12) {
                *body = p + i;
                *blen = (size_t)v;
                found = true;
            }
            i += (size_t)v;
            break;
        default:
            return false;
        }
    }
    return found;
}

int agg_rollup_decode(const uint8_t *data, size_t len, agg_rollup_t *r, const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    r->body = AGG_ROLLUP_NONE;
    if (len > AGG_ROLLUP_VALUE_MAX) {
        FAIL(TC_ETOOBIG, "too_big");
    }
    Tocsin__V1__Rollup *msg = tocsin__v1__rollup__unpack(NULL, len, data);
    if (!msg) {
        FAIL(TC_EPARSE, "protobuf");
    }
    int rc = 0;
    bool known = true;
    r->revision = msg->revision;
    switch (msg->body_case) {
    case TOCSIN__V1__ROLLUP__BODY_BUCKET:
        rc = msg->bucket ? decode_bucket(msg->bucket, r, why) : TC_EINVAL;
        break;
    case TOCSIN__V1__ROLLUP__BODY_ISSUE:
        break;
    case TOCSIN__V1__ROLLUP__BODY_ISSUE_STATE: {
        const uint8_t *body = NULL;
        size_t blen = 0;
        /* The state's own bytes are decoded (and checked) by agg_issue_decode. */
        if (!find_issue_state(data, len, &body, &blen)) {
            rc = TC_EPARSE;
            *why = "protobuf";
            break;
        }
        rc = agg_issue_decode(body, blen, &r->issue);
        if (rc != 0) {
            *why = "issue";
        }
        break;
    }
    case TOCSIN__V1__ROLLUP__BODY_ISSUE_STATUS:
        rc = msg->issue_status ? decode_status(msg->issue_status, r, why) : TC_EINVAL;
        break;
    case TOCSIN__V1__ROLLUP__BODY_CHECKPOINT:
        rc = msg->checkpoint ? decode_checkpoint(msg->checkpoint, r, why) : TC_EINVAL;
        break;
    default:
        known = false; /* a body of a newer version, or none: not an error */
        break;
    }
    if (rc == 0 && known) {
        r->body = (agg_rollup_body_t)msg->body_case;
    }
    tocsin__v1__rollup__free_unpacked(msg, NULL);
    return rc;
}
