/*
 * alr_rollup.h — decoding and validating one record of `tocsin.rollups`.
 *
 * A record's value is a tocsin.v1.Rollup whose body is a Bucket (keyed
 * "service\0environment\0name"), an IssueChange (keyed "service\0environment\0$issue:ID"),
 * or a kind this alerter does not know yet (a newer aggregator's message): those are
 * skipped and reported as ALR_REC_OTHER, never as errors, so old and new components run
 * side by side. Everything used is checked first: the protobuf parses, strings are UTF-8
 * without NUL and within bounds, the key (when present) names the same series, the width
 * and alignment are sane, errors never exceed count, the sketch is well-formed. Pure.
 */
#ifndef ALR_ROLLUP_H
#define ALR_ROLLUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_sketch.h"

#define ALR_SERVICE_MAX 128     /* bytes */
#define ALR_ENVIRONMENT_MAX 64  /* bytes */
#define ALR_NAME_MAX 256        /* bytes */
#define ALR_ISSUE_ID_MAX 128    /* bytes */
#define ALR_ISSUE_TEXT_MAX 1024 /* bytes of type, message, culprit, release (longer: cut) */
#define ALR_ROLLUP_VALUE_MAX (1024 * 1024) /* bytes of one record value */
#define ALR_BUCKET_WIDTH_MAX 86400         /* seconds */

/* The series kinds of tocsin.v1.SeriesKind. */
#define ALR_KIND_REQUESTS 1
#define ALR_KIND_ERRORS 2
#define ALR_KIND_COUNTER 3
#define ALR_KIND_GAUGE 4
#define ALR_KIND_TIMING 5

/* A validated bucket: strings are NUL-terminated copies inside the struct. */
typedef struct {
    char service[ALR_SERVICE_MAX + 1];
    char environment[ALR_ENVIRONMENT_MAX + 1];
    char name[ALR_NAME_MAX + 1];
    int kind;          /* tocsin.v1.SeriesKind value */
    int64_t start_s;   /* aligned to width_s */
    uint32_t width_s;  /* 1 .. ALR_BUCKET_WIDTH_MAX */
    uint64_t count;
    uint64_t errors;   /* <= count */
    uint64_t revision;
    double sum, min, max, last; /* non-finite values are replaced by 0 */
    int64_t last_time_us;
    bool has_sketch;
    tc_sketch_t sketch; /* owned when has_sketch: alr_rollup_fini frees it */
} alr_rollup_t;

/* A validated IssueChange. */
typedef struct {
    bool regressed; /* KIND_REGRESSED, else KIND_NEW */
    char service[ALR_SERVICE_MAX + 1];
    char environment[ALR_ENVIRONMENT_MAX + 1];
    char issue_id[ALR_ISSUE_ID_MAX + 1];
    char type[ALR_ISSUE_TEXT_MAX + 1];
    char message[ALR_ISSUE_TEXT_MAX + 1];
    char culprit[ALR_ISSUE_TEXT_MAX + 1];
    char release[ALR_ISSUE_TEXT_MAX + 1];
    int level;     /* tocsin.v1.Level */
    int64_t first_seen_us;
    int64_t time_us;
    uint64_t count;
    uint64_t revision;
} alr_issue_t;

typedef enum {
    ALR_REC_BUCKET = 0,
    ALR_REC_ISSUE = 1,
    ALR_REC_OTHER = 2, /* a message kind this alerter skips */
} alr_record_kind_t;

typedef struct {
    alr_record_kind_t kind;
    alr_rollup_t bucket; /* ALR_REC_BUCKET */
    alr_issue_t issue;   /* ALR_REC_ISSUE */
    const char *other;   /* ALR_REC_OTHER: a short name of the skipped kind ("unknown") */
} alr_record_t;

/*
 * Decodes a record (`key` may be NULL when the record has none). Returns 0 with `out`
 * filled (the caller calls alr_record_fini), TC_ETOOBIG when the value is above
 * ALR_ROLLUP_VALUE_MAX, TC_EPARSE when it is not a Rollup, or TC_EINVAL when it is one but
 * fails a check; on error `why` names the reason in a short word usable as a metric label
 * ("too_big", "protobuf", "no_body", "string", "key_mismatch", "width", "alignment",
 * "errors_above_count", "kind", "sketch", "issue"), and nothing needs freeing.
 */
int alr_record_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                      alr_record_t *out, const char **why);

/* Frees what a decoded record owns (its sketch). Safe twice. */
void alr_record_fini(alr_record_t *rec);

/* Frees a bucket's sketch. Safe twice. */
void alr_rollup_fini(alr_rollup_t *r);

#endif
