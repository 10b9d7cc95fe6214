/*
 * alr_rollup.h — decoding and validating one record of `tocsin.rollups`.
 *
 * A record's key is "service\0environment\0name" and its value a tocsin.v1.Rollup whose
 * body is a Bucket. Everything is checked before the alerter uses it: the protobuf parses,
 * the body is a bucket, strings are UTF-8 without NUL and within bounds, the key (when
 * present) names the same series as the bucket, the bucket's width and alignment are
 * sane and errors never exceed count. Pure: no I/O, no clock.
 */
#ifndef ALR_ROLLUP_H
#define ALR_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#define ALR_SERVICE_MAX 128     /* bytes */
#define ALR_ENVIRONMENT_MAX 64  /* bytes */
#define ALR_NAME_MAX 256        /* bytes */
#define ALR_ROLLUP_VALUE_MAX (1024 * 1024) /* bytes of one record value */
#define ALR_BUCKET_WIDTH_MAX 86400         /* seconds */

/* The series kinds of tocsin.v1.SeriesKind that the alerter tells apart. */
#define ALR_KIND_REQUESTS 1

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
} alr_rollup_t;

/*
 * Decodes the record (`key` may be NULL when the record has none). Returns 0 with `out`
 * filled, TC_ETOOBIG when the value is above ALR_ROLLUP_VALUE_MAX, TC_EPARSE when it is
 * not a Rollup, or TC_EINVAL when it is one but fails a check; on error `why` names the
 * reason in a short word usable as a metric label ("too_big", "protobuf", "no_bucket",
 * "string", "key_mismatch", "width", "alignment", "errors_above_count", "kind").
 */
int alr_rollup_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                      alr_rollup_t *out, const char **why);

#endif
