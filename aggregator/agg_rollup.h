/*
 * agg_rollup.h — decoding one record of tocsin.rollups for the aggregator's materialised
 * view: bucket states, issue states, issue statuses and partition checkpoints (issue
 * changes are for the alerter and are recognised but not decoded further).
 *
 * Everything is checked before the view stores it: the protobuf parses, strings are UTF-8
 * without NUL and within bounds, buckets satisfy agg_bucket_check (a known kind, width,
 * aligned start, errors and slow counters within count, a sketch of our schema whose total
 * matches, a HyperLogLog that decodes), issue states satisfy agg_issue_decode.
 *
 * A pure module: no I/O, no clock, no global state.
 */
#ifndef AGG_ROLLUP_H
#define AGG_ROLLUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_bucket.h"
#include "agg_issue.h"

#define AGG_ROLLUP_VALUE_MAX (2u * 1024 * 1024) /* a record value above this is refused */
#define AGG_TOPIC_MAX 249                       /* Kafka's limit on topic names */
#define AGG_START_MAX 253402300799LL            /* the last second of year 9999 */

typedef enum {
    AGG_ROLLUP_NONE = 0,
    AGG_ROLLUP_BUCKET = 10,
    AGG_ROLLUP_CHANGE = 11,
    AGG_ROLLUP_ISSUE = 12,
    AGG_ROLLUP_STATUS = 13,
    AGG_ROLLUP_CHECKPOINT = 14,
} agg_rollup_body_t;

/* A decoded record. Initialise with agg_rollup_init, reuse for many records, free with
 * agg_rollup_fini. Only the part named by `body` is meaningful after a decode. */
typedef struct {
    agg_rollup_body_t body;
    uint64_t revision;
    /* bucket */
    char service[AGG_MAX_SERVICE + 1];
    char environment[AGG_MAX_ENVIRONMENT + 1];
    char name[AGG_MAX_NAME + 1];
    int64_t start_s;
    uint32_t partition;
    bool open;
    agg_bucket_t bucket;
    /* issue state (the service and id are in `issue`) */
    agg_issue_t issue;
    /* issue status (service in `service`, id in `issue_id`) */
    char issue_id[AGG_ISSUE_ID_MAX + 1];
    agg_issue_status_t status;
    /* checkpoint (partition in `partition`) */
    char group[AGG_TOPIC_MAX + 1];
    char topic[AGG_TOPIC_MAX + 1];
    int64_t offset;
    int64_t dedupe_from;
    int64_t time_us;
} agg_rollup_t;

void agg_rollup_init(agg_rollup_t *r);
void agg_rollup_fini(agg_rollup_t *r);

/*
 * Decodes a record value. Returns 0 with r->body set (AGG_ROLLUP_NONE for a body this
 * version does not know, which is not an error), TC_ETOOBIG, TC_EPARSE, TC_EINVAL, TC_EUTF8
 * or TC_ENOMEM; on error *why names the reason ("too_big", "protobuf", "string", "kind",
 * "width", "alignment", "partition", "counts", "sketch", "users", "slo", "issue", "status",
 * "checkpoint").
 */
int agg_rollup_decode(const uint8_t *data, size_t len, agg_rollup_t *r, const char **why);

#endif
