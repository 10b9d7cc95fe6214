/*
 * alr_rollup.h — decoding and validating one record of `tocsin.rollups`.
 *
 * A record's value is a tocsin.v1.Rollup. The alerter uses three of its bodies: Bucket
 * (keyed "service\0environment\0name"), IssueChange (keyed
 * "service\0environment\0$issue:ID") and IssueStatus (keyed "service\0\0$issue:ID": an
 * issue resolved or ignored through an aggregator's API resolves its alerts). Every other
 * body — IssueState and Checkpoint (for aggregators), a status this build does not know,
 * or a body a newer aggregator sends that this build cannot name — is skipped and reported
 * as ALR_REC_OTHER with its kind, never as an error, so old and new components run side by
 * side. Everything used is checked first: the protobuf parses, strings are UTF-8 without
 * NUL and within bounds, the key (when present) names the same series, the width and
 * alignment are sane, errors never exceed count, the sketch is well-formed. Pure.
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
    uint32_t source_partition; /* partition of the events topic whose records built it */
    bool open;                 /* still filling: its end + grace had not passed */
    int64_t grew_us;           /* window store: when the alerter saw its count last grow
                                  (0: not known; the decoder leaves it 0) */
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

/* The status of an issue as set through an aggregator's API (tocsin.v1.IssueStatus). */
#define ALR_ISSUE_UNRESOLVED 1
#define ALR_ISSUE_RESOLVED 2
#define ALR_ISSUE_IGNORED 3

/* A validated IssueStatus. */
typedef struct {
    char service[ALR_SERVICE_MAX + 1];
    char issue_id[ALR_ISSUE_ID_MAX + 1];
    int status;         /* ALR_ISSUE_UNRESOLVED, _RESOLVED or _IGNORED */
    int64_t updated_us; /* when it was set (wall clock of the aggregator) */
    char updated_by[128]; /* "api:<instance>" or "regression" (longer: cut) */
} alr_issue_status_t;

typedef enum {
    ALR_REC_BUCKET = 0,
    ALR_REC_ISSUE = 1,
    ALR_REC_ISSUE_STATUS = 2,
    ALR_REC_OTHER = 3, /* a body this alerter does not use: skipped */
} alr_record_kind_t;

/* The names ALR_REC_OTHER reports, one per skipped kind (metric labels). */
#define ALR_SKIP_ISSUE_STATE "issue_state"
#define ALR_SKIP_ISSUE_STATUS "issue_status" /* a status value this build does not know */
#define ALR_SKIP_CHECKPOINT "checkpoint"
#define ALR_SKIP_UNKNOWN "unknown"           /* a body this build cannot name */

typedef struct {
    alr_record_kind_t kind;
    alr_rollup_t bucket;         /* ALR_REC_BUCKET */
    alr_issue_t issue;           /* ALR_REC_ISSUE */
    alr_issue_status_t status;   /* ALR_REC_ISSUE_STATUS */
    const char *other;           /* ALR_REC_OTHER: one of the ALR_SKIP_* names (static) */
} alr_record_t;

/*
 * Decodes a record (`key` may be NULL when the record has none). Returns 0 with `out`
 * filled (the caller calls alr_record_fini), TC_ETOOBIG when the value is above
 * ALR_ROLLUP_VALUE_MAX, TC_EPARSE when it is not a Rollup, or TC_EINVAL when it is one but
 * fails a check; on error `why` names the reason in a short word usable as a metric label
 * ("too_big", "protobuf", "no_body", "string", "key_mismatch", "width", "alignment",
 * "errors_above_count", "kind", "sketch", "issue", "status"), and nothing needs freeing.
 * A Rollup with no body at all is "no_body"; a body the alerter does not use is not an
 * error (ALR_REC_OTHER), and such bodies are not checked beyond the protobuf parse.
 */
int alr_record_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                      alr_record_t *out, const char **why);

/* Frees what a decoded record owns (its sketch). Safe twice. */
void alr_record_fini(alr_record_t *rec);

/* Frees a bucket's sketch. Safe twice. */
void alr_rollup_fini(alr_rollup_t *r);

#endif
