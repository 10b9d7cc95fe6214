/*
 * ctl_lag.h — consumer lag of Tocsin's consumer groups, read from Kafka itself: for each
 * partition of a topic, the group's committed offset and the partition's end (high
 * watermark); the lag is their difference, summed. The aggregators commit their offsets to
 * Kafka after each applied batch (for this view; their own copy is in LMDB), so their lag
 * here is exact up to the last commit. A group that keeps its offsets only in LMDB (the
 * alerter) has no committed offsets: its lag is shown as unknown, never as a guess.
 */
#ifndef CTL_LAG_H
#define CTL_LAG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_config.h"

typedef struct {
    char group[128];
    char topic[128];
    int partitions;      /* partitions of the topic */
    int committed;       /* partitions with an offset committed by the group */
    int64_t end;         /* Σ high watermarks */
    int64_t lag;         /* Σ (end - committed) over partitions with a commit; -1: none */
    int64_t uncommitted; /* Σ (end - start) over partitions without a commit */
    char error[256];     /* why the figures are missing, or "" */
} ctl_lag_t;

/*
 * Asks the brokers at `bootstrap` (librdkafka settings in `kafka`, may be NULL) for the
 * lag of `group` on each of the `ntopics` topics, filling out[0..ntopics). Each request is
 * bounded by `timeout_ms`. Returns 0 when the cluster answered (a topic it does not have,
 * or a group without commits, is described in that entry), TC_EUNAVAIL with `err` filled
 * when no broker answered, TC_EINVAL for a refused setting, TC_ENOMEM.
 */
int ctl_lag_query(const char *bootstrap, const tc_cfg_kvs_t *kafka, const char *group,
                  const char *const *topics, size_t ntopics, int64_t timeout_ms, ctl_lag_t *out,
                  char *err, size_t errlen);

/*
 * Adds one partition's figures to an entry: `committed` is the group's offset (negative:
 * none), `low`/`high` the partition's start and end. Pure; ctl_lag_query uses it.
 */
void ctl_lag_add_partition(ctl_lag_t *l, int64_t committed, int64_t low, int64_t high);

/* [{"group","topic","partitions","committed_partitions","end_offset","lag","uncommitted",
 *   "error"}]; lag null when unknown. New reference; NULL when out of memory. */
json_t *ctl_lag_json(const ctl_lag_t *l, size_t n);

/* A table: GROUP, TOPIC, PARTITIONS, COMMITTED, LAG, NOTE. The caller frees it. */
char *ctl_lag_render(const ctl_lag_t *l, size_t n, size_t width);

#endif
