/*
 * col_enrich.h — what the collector adds to each event before it goes to Kafka, and where
 * the event goes.
 *
 * Pure: the time is passed in. For every event of a valid (and scrubbed) batch:
 *   - received_us is set to the batch's receive time and collector_id to this collector's;
 *   - an event time of 0 becomes the receive time ("missing"); one more than `max_future_us`
 *     ahead of it ("future") or more than `max_past_us` behind it ("past") is clamped to the
 *     receive time, because a wrong client clock would otherwise put the event in a bucket
 *     that is long closed or far ahead;
 *   - an ErrorEvent without grouping_hash gets tc_grouping_hash()'s id;
 *   - the topic and the Kafka key are chosen so each series and each issue lives in one
 *     partition: requests by service "\0" route, metrics by service "\0" name, errors by
 *     service "\0" grouping_hash (topic events); logs by service alone (topic logs).
 */
#ifndef COL_ENRICH_H
#define COL_ENRICH_H

#include <stddef.h>
#include <stdint.h>

#include "col_arena.h"
#include "col_validate.h"
#include "col_wire.h"
#include "tc_grouping.h"
#include "tocsin/v1/event.pb-c.h"

typedef struct {
    const char *collector_id; /* borrowed; set on every event */
    int64_t max_future_us;    /* > 0 */
    int64_t max_past_us;      /* > 0 */
} col_enrich_config_t;

/* What enrichment did, for metrics. */
typedef struct {
    uint64_t time_missing;
    uint64_t time_future;
    uint64_t time_past;
    uint64_t grouped[TC_GROUPING_MESSAGE + 1]; /* ids computed, by tc_grouping_basis_t */
} col_enrich_stats_t;

/* The key buffer a caller passes to col_enrich_event: service, NUL, name. */
#define COL_KEY_MAX COL_RECORD_KEY_MAX

/*
 * Enriches `ev` (decoded into `arena`; the grouping id is allocated there) received at
 * `received_us`, writes its Kafka key into `key` (`key_cap` bytes; at most COL_KEY_MAX are
 * needed) and returns its topic through *topic. Returns 0 with *key_len set, TC_ETOOBIG when
 * the key does not fit `key_cap`, or TC_ENOMEM.
 */
int col_enrich_event(const col_enrich_config_t *cfg, Tocsin__V1__Event *ev, int64_t received_us,
                     col_arena_t *arena, col_enrich_stats_t *stats, col_topic_t *topic,
                     uint8_t *key, size_t key_cap, size_t *key_len);

/* Room a tail needs: time_us and received_us (11 bytes each) and collector_id (its tag,
 * length and at most 255 bytes). */
#define COL_TAIL_MAX (11 + 11 + 1 + 2 + 255)

/*
 * The same for a simple event that leaves as the client encoded it (no grouping id to add,
 * nothing to scrub): writes its key into `key` and into `tail` the fields that follow its
 * bytes — event time (only when clamped), received_us, collector_id — and returns its topic.
 * Returns 0 with *key_len and *tail_len set; TC_ETOOBIG when the key or the tail do not fit
 * (a collector_id over 255 bytes); TC_EINVAL for an error without grouping id (a programmer
 * error: such events take col_enrich_event).
 */
int col_enrich_raw(const col_enrich_config_t *cfg, const col_event_t *e, int64_t received_us,
                   col_enrich_stats_t *stats, col_topic_t *topic, uint8_t *key, size_t key_cap,
                   size_t *key_len, uint8_t *tail, size_t tail_cap, size_t *tail_len);

#endif
