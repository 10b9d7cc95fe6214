/*
 * alr_store.h — the alerter's durable state in LMDB.
 *
 * Databases:
 *   buckets  service\0environment\0name\0 kind(be32) start_s(be64) -> width, revision,
 *            count, errors: the window store's buckets;
 *   offsets  topic\0 partition(be32) -> next offset to consume (be64);
 *   alerts   fingerprint(be64) -> the alert's persisted JSON (alr_alert_state_json);
 *   outbox   notification id(be64) -> {"fingerprint","url","body","created_us"}: every
 *            notification emitted and not yet delivered;
 *   meta     "next_id" -> the next notification id (be64).
 *
 * Window changes and the offsets they came from are written in one transaction, so after
 * a crash the buckets and the position in the topic agree. Alert states, new outbox
 * entries and the next id are written in one transaction, before anything is sent, so a
 * notification is either owed (in the outbox) or was never emitted. A delivery deletes its
 * outbox entry, so nothing delivered is sent again after a restart.
 *
 * Write functions may be called from several threads (LMDB serialises writers).
 */
#ifndef ALR_STORE_H
#define ALR_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_eval.h"
#include "alr_window.h"

typedef struct alr_store alr_store_t;

/* A consumed position: the next offset to read in `partition`. */
typedef struct {
    int32_t partition;
    int64_t next_offset;
} alr_offset_t;

/* A notification to keep until delivered. Strings are borrowed for the call. */
typedef struct {
    uint64_t id;
    uint64_t fingerprint;
    const char *url;
    const char *body;
    int64_t created_us;
} alr_outbox_item_t;

/* Opens (creating) the store in directory `dir`. NULL with `err` filled on failure. */
alr_store_t *alr_store_open(const char *dir, char *err, size_t errlen);

/* Closes the store. No other thread may use it any more. Safe to call twice. */
void alr_store_close(alr_store_t **self_p);

/*
 * Puts every stored bucket into `window` (without journaling). Records that do not decode
 * are skipped and counted in *skipped (may be NULL). Returns 0 or TC_ELMDB.
 */
int alr_store_load_window(alr_store_t *self, alr_window_t *window, int64_t now_us,
                          size_t *skipped);

/* The stored next offset of (topic, partition): 0 with *offset set, TC_ENOTFOUND when
 * none is stored, or TC_ELMDB. */
int alr_store_get_offset(alr_store_t *self, const char *topic, int32_t partition,
                         int64_t *offset);

/*
 * Writes the window's journal entries (puts and deletions) and the offsets of `topic` in
 * one transaction. Returns 0, TC_EFULL (map cannot grow), or TC_ELMDB.
 */
int alr_store_commit_window(alr_store_t *self, const alr_window_change_t *changes, size_t n,
                            const char *topic, const alr_offset_t *offsets, size_t noffsets);

/* Calls `fn` with every stored alert state, in fingerprint order; stops at the first
 * non-zero return and returns it. Returns 0 or TC_ELMDB. */
int alr_store_load_alerts(alr_store_t *self, int (*fn)(void *ctx, const json_t *state),
                          void *ctx);

/* Calls `fn` with every outbox entry, in id order; entries that do not parse are skipped.
 * Returns 0, `fn`'s first non-zero return, or TC_ELMDB. */
int alr_store_load_outbox(alr_store_t *self, int (*fn)(void *ctx, const alr_outbox_item_t *item),
                          void *ctx);

/* The stored next notification id (1 when none). */
uint64_t alr_store_next_id(alr_store_t *self);

/*
 * In one transaction: the state of every dirty alert of `ev`, the deletion of every alert
 * it removed, the `n` new outbox entries, and the evaluator's next id. The caller then
 * calls alr_evaluator_persisted. Returns 0, TC_ENOMEM, TC_EFULL or TC_ELMDB.
 */
int alr_store_commit_alerts(alr_store_t *self, alr_evaluator_t *ev,
                            const alr_outbox_item_t *items, size_t n);

/* Deletes a delivered notification from the outbox. Returns 0 (also when it was not
 * there) or TC_ELMDB. */
int alr_store_outbox_delete(alr_store_t *self, uint64_t id);

/*
 * A real check for /health/ready: opens a read transaction and reads the environment's
 * state; also reports the last write's failure, if the last write failed. Returns 0 or
 * TC_ELMDB with `detail` saying why.
 */
int alr_store_check(alr_store_t *self, char *detail, size_t len);

#endif
