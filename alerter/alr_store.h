/*
 * alr_store.h — the alerter's durable state in LMDB.
 *
 * Databases:
 *   buckets  service\0environment\0name\0 kind(be32) start_s(be64) source_partition(be32)
 *            -> version 3 value: width, revision, count, errors, sum, min, max, last,
 *            last_time, open, the time the count last grew, and the sketch (keys without
 *            the partition and version 2 values, from older builds, read as partition 0,
 *            closed);
 *   offsets  topic\0 partition(be32) -> next offset to consume (be64), for
 *            `tocsin.rollups` and the HA topic;
 *   state    kind \0 key -> JSON: "alert" (fingerprint), "silence" (id), "group" (group
 *            key), "msg" (notification id, the notification log and outbox), "rcv"
 *            (receiver: tokens, Retry-After pause, circuit), "meta".
 *
 * Window changes, the offsets they came from and the core's dirty records are written in
 * one transaction (alr_store_commit), so after a crash the buckets, the alerts and
 * notifications decided from them and the position in the topics agree. It runs before
 * any attempt the records schedule starts, so a notification is either owed (queued in
 * the log) or was never emitted; a delivery is written as soon as its outcome is known,
 * so nothing delivered is sent again after a restart.
 *
 * Write functions may be called from several threads (LMDB serialises writers).
 */
#ifndef ALR_STORE_H
#define ALR_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_window.h"

typedef struct alr_store alr_store_t;

/* A consumed position: the next offset to read in `partition` of `topic` (borrowed). */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t next_offset;
} alr_offset_t;

/* One record of the state database; `text` NULL deletes. */
typedef struct {
    char kind[16];
    char *key;
    char *text;
} alr_record_w_t;

/* Opens (creating) the store in directory `dir`. NULL with `err` filled on failure. */
alr_store_t *alr_store_open(const char *dir, char *err, size_t errlen);

/* Closes the store. No other thread may use it any more. Safe to call twice. */
void alr_store_close(alr_store_t **self_p);

/* Puts every stored bucket into `window` (without journaling). Records that do not decode
 * are skipped and counted in *skipped (may be NULL). Returns 0, TC_ENOMEM or TC_ELMDB. */
int alr_store_load_window(alr_store_t *self, alr_window_t *window, int64_t now_us,
                          size_t *skipped);

/* The stored next offset of (topic, partition): 0 with *offset set, TC_ENOTFOUND when
 * none is stored, or TC_ELMDB. */
int alr_store_get_offset(alr_store_t *self, const char *topic, int32_t partition,
                         int64_t *offset);

/* Writes, in one transaction, the window's journal (puts read from `window`, deletions;
 * `window` may be NULL when `n` is 0), the offsets and the state records. Does nothing
 * when all three are empty. Returns 0, TC_EINVAL (a topic name above 255 bytes),
 * TC_EFULL, TC_ENOMEM or TC_ELMDB; on error nothing is written. */
int alr_store_commit(alr_store_t *self, const alr_window_t *window,
                     const alr_window_change_t *changes, size_t n, const alr_offset_t *offsets,
                     size_t noffsets, const alr_record_w_t *recs, size_t nrecs);

/* Writes `n` state records in one transaction (alr_store_commit without window or
 * offsets). Returns 0, TC_EFULL or TC_ELMDB. */
int alr_store_write_records(alr_store_t *self, const alr_record_w_t *recs, size_t n);

/* Calls `fn` for every state record (kinds in key order); records that do not parse are
 * skipped and counted in *skipped. Stops at `fn`'s first non-zero return and returns it;
 * 0 or TC_ELMDB otherwise. */
int alr_store_load_records(alr_store_t *self,
                           int (*fn)(void *ctx, const char *kind, const char *key,
                                     const json_t *doc),
                           void *ctx, size_t *skipped);

/* A real check for /health/ready: a read transaction, and the last write's failure if the
 * last write failed. Returns 0 or TC_ELMDB with `detail` saying why. */
int alr_store_check(alr_store_t *self, char *detail, size_t len);

#endif
