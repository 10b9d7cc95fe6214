/*
 * agg_store.h — the aggregator's LMDB state, and the only module that touches LMDB.
 *
 * One table of states serves both roles an aggregator has (docs/aggregator.md, "Exactly
 * once, fleets and takeover"):
 *   - the owner of a partition of topic.events applies its records to bucket and issue
 *     states keyed by (series or issue, source partition);
 *   - the materialised view applies the states every aggregator publishes on
 *     tocsin.rollups, so every instance answers queries for every service.
 * A state holds exactly the records of its source partition below its `source_offset`.
 * Whoever computes it, the state after the same records is the same, so the view keeps the
 * state with the larger source_offset and an owner applies a record only to states that do
 * not hold it yet. A new owner of a partition resumes at the larger of its own stored
 * offset and the partition's latest checkpoint (every change below it is published) and
 * finds the states it needs in the view.
 *
 * Exactly once: agg_store_commit applies a batch of records and stores the partitions'
 * next offsets in the same write transaction. A record of topic.events or topic.logs holds
 * one event or a pack of them (agg_wire.h); it is applied whole, with its offset: every state
 * holds all of a record's events that belong to it, or none. Records below a partition's
 * stored offset are "stale": not applied again, but their event ids refill the dedupe set (so
 * a restart or a takeover, which starts reading at the checkpoint's dedupe_from, decides
 * duplicates as before). An event id seen within the dedupe window is counted once, whether
 * its first sight was in the same record, an earlier one, or another partition.
 *
 * Databases (keys big-endian and fixed width, so ranges follow time; h() is XXH3-64):
 *   buckets     h(service) h(name) start h(environment) partition -> stored bucket
 *               (partition 0xffffffff: 60 s buckets merged after retention.raw;
 *               under h("$requests:total"): a service's request totals, 0xfffffffe per
 *               10 s, 0xfffffffd per minute)
 *   series      h(service) h(name) h(environment)   -> kind, first/last start, strings
 *   issues      h(service) h(issue id) partition    -> tocsin.v1.IssueState
 *   issue_index h(issue id) h(service)              -> (empty)
 *   status      h(service) h(issue id)              -> status, when, by whom, strings
 *   parts       topic '\0' partition                -> next offset, dedupe_from
 *   checkpoints topic '\0' partition                -> offset, dedupe_from, time (view)
 *   owed        type key                            -> source offset, first unpublished
 *   changes     sequence                            -> a Rollup to publish (issue changes
 *                                                      and statuses) with its key
 *   logs        h(service) time partition offset    -> stored log record
 *   logs_time   time partition offset               -> h(service), value size
 *   meta        "format", "logs_bytes", "compacted"
 * Series strings are compared on every use, so a hash collision is detected (and the
 * colliding records refused) rather than mixed into another series.
 *
 * Threads: one thread commits (agg_store_commit, agg_store_maintain, the partition calls);
 * agg_store_status_set may run on another thread at the same time (LMDB serialises
 * writers); any thread may read. Growing the map (on MDB_MAP_FULL) waits until no read is
 * in progress, because LMDB remaps the file then.
 */
#ifndef AGG_STORE_H
#define AGG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_bucket.h"
#include "agg_issue.h"
#include "agg_log.h"
#include "agg_query.h"

typedef struct agg_store agg_store_t;

#define AGG_PART_MERGED 0xffffffffu
/* A service's request totals: per 10 s, every request event of every route and source
 * partition (under the name hash of "$requests:total"), kept in the transaction that changes
 * a route's bucket — an owner adds each event it applies, a view state's arrival recomputes
 * them from the routes' buckets; never published. What name=* reads. */
#define AGG_PART_ALL 0xfffffffeu
/* The same per minute (start aligned to 60 s); a query uses it for whole minutes of its
 * window. */
#define AGG_PART_ALL_MINUTE 0xfffffffdu
#define AGG_OWED_KEY_MAX 37 /* type byte + a bucket key */

typedef struct {
    const char *dir;          /* created when missing */
    size_t map_size;          /* initial map */
    size_t max_map;           /* the map grows by doubling up to this; 0: no limit */
    int64_t grace_ms;         /* a bucket closes grace_ms after its end */
    int64_t dedupe_window_ms; /* how long an event id is remembered (receive time) */
    size_t dedupe_max_ids;    /* ids held at most */
    agg_slo_t slo;            /* thresholds of new request buckets */
    int64_t raw_retention_ms; /* 10 s buckets older than this are merged into 60 s ones */
    int64_t max_retention_ms; /* buckets older than this are deleted */
    int64_t logs_retention_ms;
    uint64_t logs_max_bytes;
    const char *group;        /* consumer group: checkpoints of other groups are ignored */
    const char *events_topic; /* the topic whose partitions checkpoints name */
} agg_store_opts_t;

/* What became of one record (or event) in agg_store_commit. */
typedef enum {
    AGG_MSG_APPLIED = 0, /* added to its state(s) */
    AGG_MSG_STALE,       /* below the partition's stored offset: applied before */
    AGG_MSG_DUPLICATE,   /* its event id was seen within the dedupe window */
    AGG_MSG_INVALID,     /* refused by the decoder; `reason` names the field */
    AGG_MSG_CONFLICT,    /* its series name is used with another kind, or hashes collide */
    AGG_MSG_IGNORED,     /* valid, but for nothing here (a log in topic.events, a rollup
                            body the view does not keep, a checkpoint of another group) */
    AGG_MSG_COVERED,     /* its states already hold it (published by an earlier owner) */
    AGG_MSG_LATE,        /* too old: its bucket was rolled up or deleted; counted as late in
                            the bucket of its arrival only (a merely late event, received
                            after its bucket closed, is APPLIED and counted as late) */
    AGG_MSG_OLD,         /* a view state older than what the view keeps (rolled up) */
} agg_msg_result_t;

/*
 * One consumed Kafka record. The caller fills the inputs; agg_store_commit the outputs. A
 * record that failed to commit may be given again as it is (the dedupe set takes back what
 * a failed commit taught it).
 *
 * For a record of several events, `result` sums them up: INVALID or CONFLICT when one of its
 * events was refused (with the first such event's reason; the others are applied), else
 * APPLIED when one was applied, else the outcome of its last event (STALE, DUPLICATE,
 * COVERED, LATE, IGNORED). A pack that is not well framed (or empty, or of an unknown
 * format) is INVALID as a whole, with no event applied.
 */
typedef struct {
    int32_t partition;
    int64_t offset;
    const void *value;
    size_t len;
    agg_format_t format; /* topic.events and topic.logs: from the record's format header */
    /* outputs */
    agg_msg_result_t result;
    const char *reason; /* static string for INVALID and CONFLICT, else NULL */
    uint32_t events;    /* events the record holds (0 when it could not be read) */
} agg_msg_t;

/* One published state whose delivery was confirmed (or that must be dropped). */
typedef struct {
    uint8_t key[AGG_OWED_KEY_MAX]; /* the `owed` key: type byte, then the state's key */
    uint8_t klen;
    uint32_t partition;
    int64_t source_offset;
    bool closed; /* the delivered rollup said the bucket was closed */
} agg_owed_ref_t;

typedef struct {
    const char *events_topic; /* records of owned partitions; may be NULL with n 0 */
    agg_msg_t *events;
    size_t nevents;
    const char *rollups_topic;
    agg_msg_t *rollups;
    size_t nrollups;
    const char *logs_topic;
    agg_msg_t *logs;
    size_t nlogs;
    const agg_owed_ref_t *delivered;
    size_t ndelivered;
    const uint64_t *changes_done; /* sequences of published changes to forget */
    size_t nchanges_done;
    int64_t now_us;
    /* The producer name of this process's own rollups (may be NULL): the view passes over
     * them without decoding, since the states they carry were stored before they were
     * published. It must be unique to the process (a restarted instance is another one). */
    const char *self_producer;
    /* The partitions of topic.events this instance owns (may be NULL with 0): a resolve read
     * by the view regresses an issue of one of them at once when an event received after
     * the resolve was already applied. */
    const int32_t *owned;
    size_t nowned;
} agg_commit_t;

/* What a batch did; every figure but `gaps`, `records`, `unreadable` and the view's counts
 * events (a record refused whole counts as one invalid event too). */
typedef struct {
    uint64_t records; /* owned records (topic.events) */
    uint64_t consumed;
    uint64_t applied;
    uint64_t stale;
    uint64_t duplicates;
    uint64_t invalid;
    uint64_t unreadable; /* records refused whole: unknown format, pack badly framed or empty */
    uint64_t conflicts;
    uint64_t ignored;
    uint64_t covered;
    uint64_t late;    /* late events, applied or too old */
    uint64_t gaps;    /* records missing between the stored offset and the next record */
    uint64_t corrupt; /* stored values that failed validation (replaced; logged) */
    uint64_t old;     /* view states older than the rolled-up horizon (dropped) */
    uint64_t states_written;
    uint64_t view_applied;
    uint64_t logs_stored;
    uint64_t issues_new;
    uint64_t issues_regressed;
    uint64_t owed_cleared;
} agg_batch_stats_t;

/* Opens (creating) the store. Returns NULL after logging why. */
agg_store_t *agg_store_open(const agg_store_opts_t *opts);

/* Closes the environment and frees the store. Safe to call twice. No other thread may be
 * using the store. */
void agg_store_destroy(agg_store_t **self_p);

/*
 * Applies one batch in one write transaction: first the delivered states are cleared from
 * `owed` (or kept, when they changed since) and the published changes forgotten; then the
 * owned records, in order (offset check, decode, dedupe, series check, lateness, states);
 * then the view's records (rollups: states newer than the view's, statuses, checkpoints of
 * our group; logs: stored); then the changed states are written and marked owed, the
 * partitions' next offsets stored. Every output of `c` is set on success. Returns 0, or
 * after rolling everything back (the dedupe set included) TC_ENOMEM, TC_EFULL (the map
 * reached max_map) or TC_ELMDB; the batch may then be given again.
 */
int agg_store_commit(agg_store_t *self, agg_commit_t *c, agg_batch_stats_t *stats);

/* The next offset stored for a partition. Returns 0, TC_ENOTFOUND, or TC_ELMDB. */
int agg_store_offset_get(agg_store_t *self, const char *topic, int32_t partition, int64_t *next);

/*
 * Decides where the owner of an events partition starts (see the header comment): *start
 * the larger of the stored offset and our group's latest checkpoint, *read_from where to
 * read so that the dedupe set refills (records below *start are stale); -1 for both when
 * neither exists (read from the log's beginning). Stores *start as the partition's offset.
 * *source says "our stored offset", "a checkpoint" or "none". Returns 0, TC_EFULL or TC_ELMDB.
 */
int agg_store_partition_start(agg_store_t *self, int32_t partition, int64_t *start,
                              int64_t *read_from, const char **source);

/* Where the view reads a partition of topic.rollups or (logs true) topic.logs from: *start
 * the stored next offset, *read_from where reading refills the dedupe set (logs); -1 for
 * both when nothing is stored. Returns 0 or TC_ELMDB. */
int agg_store_view_start(agg_store_t *self, const char *topic, int32_t partition, bool logs,
                         int64_t *start, int64_t *read_from);

/* Stores `next` as a partition's offset (the broker lost the log). Returns 0 or a code. */
int agg_store_offset_set(agg_store_t *self, const char *topic, int32_t partition, int64_t next);

/* Forgets the owed states of a partition no longer ours (its next owner publishes). */
int agg_store_partition_revoked(agg_store_t *self, int32_t partition);

/* A state to publish (see agg_store_owed). */
typedef struct {
    agg_owed_ref_t ref;
    const uint8_t *key; /* Kafka key */
    size_t klen;
    const uint8_t *value; /* tocsin.v1.Rollup */
    size_t vlen;
} agg_publish_item_t;

/* Returns 0 to go on, anything else to stop the walk. */
typedef int (*agg_owed_fn)(void *ctx, const agg_publish_item_t *item);

/* A checkpoint an owner may publish: every change below `offset` is delivered. */
typedef struct {
    int32_t partition;
    int64_t offset;
    int64_t dedupe_from;
} agg_checkpoint_t;

/*
 * Walks the owed states that need publishing at `now_us`: those with an undelivered change,
 * and closed buckets not yet published as closed. `skip` (may be NULL) tells which are
 * already in flight. For each owned partition (`owned`, n `nowned`), writes the checkpoint
 * it may publish into `cps` (which holds nowned): the smaller of its stored offset and the
 * first undelivered change of its states. `producer` is written into the rollups. Returns
 * 0, TC_ENOMEM or TC_ELMDB.
 */
typedef bool (*agg_inflight_fn)(void *ctx, const agg_owed_ref_t *ref);
int agg_store_owed(agg_store_t *self, int64_t now_us, const char *producer, agg_inflight_fn skip,
                   agg_owed_fn fn, void *ctx, const int32_t *owned, size_t nowned,
                   agg_checkpoint_t *cps);

/* Owed states (for /metrics). */
uint64_t agg_store_owed_count(agg_store_t *self);

/* A change to publish: `value` is a tocsin.v1.Rollup, `key` its Kafka key. */
typedef int (*agg_change_fn)(void *ctx, uint64_t seq, const uint8_t *key, size_t klen,
                             const uint8_t *value, size_t vlen);

/* Walks the changes not yet published, oldest first, after sequence `after`. */
int agg_store_changes(agg_store_t *self, uint64_t after, agg_change_fn fn, void *ctx);

/*
 * Sets an issue's status (from the API): written to the view at once and queued as a
 * change to publish. Returns 0, TC_ENOTFOUND when no issue `id` of `service` is known,
 * TC_EFULL or TC_ELMDB.
 */
int agg_store_status_set(agg_store_t *self, const char *service, const char *id,
                         agg_status_t status, const char *by, int64_t now_us);

/*
 * One slice of maintenance at `now_us`: at most `budget` buckets rolled up or deleted, and
 * log records past logs.retention or beyond logs.max_bytes deleted; 10 s buckets are
 * merged only when they ended more than retention.raw before min(now, view_time_us) (the
 * view must have read every state of a bucket before it is merged). Returns the work done
 * (0 when there was none), or a negative TC_E* code.
 */
int agg_store_maintain(agg_store_t *self, int64_t now_us, int64_t view_time_us, size_t budget);

/* ---- reads (any thread) ---- */

/* Merges the buckets a query asks for (see agg_query.h) into `acc`. Returns 0, TC_ENOMEM
 * or TC_ELMDB; corrupt stored buckets are skipped and counted in *corrupt (may be NULL). */
int agg_store_query(agg_store_t *self, const agg_query_params_t *p, agg_query_acc_t *acc,
                    uint64_t *corrupt);

/* Merges the buckets of a range query into p->npoints accumulators, one per step. */
int agg_store_range(agg_store_t *self, const agg_query_params_t *p, agg_query_acc_t *accs,
                    uint64_t *corrupt);

typedef struct {
    const char *service; /* borrowed for the duration of the callback */
    const char *environment;
    const char *name;
    agg_kind_t kind;
    int64_t first_s; /* first and last bucket start seen */
    int64_t last_s;
} agg_series_info_t;

typedef int (*agg_series_fn)(void *ctx, const agg_series_info_t *s);

/* Calls `fn` for every series of `service` (NULL: of every service). Returns 0 (also when
 * `fn` stopped the walk) or TC_ELMDB. */
int agg_store_series(agg_store_t *self, const char *service, agg_series_fn fn, void *ctx);

/* An issue as the API shows it: its states of every partition merged, and its status. */
typedef int (*agg_issue_fn)(void *ctx, const agg_issue_t *is, const agg_issue_status_t *st);

/* Calls `fn` for every issue of `service` (NULL: every service). Returns 0, TC_ENOMEM or
 * TC_ELMDB. */
int agg_store_issues(agg_store_t *self, const char *service, agg_issue_fn fn, void *ctx);

/* Finds issue `id` (of `service`, or of any service when NULL) and calls `fn` once per
 * service that has it. Returns 0 (TC_ENOTFOUND when none), TC_ENOMEM or TC_ELMDB. */
int agg_store_issue_get(agg_store_t *self, const char *id, const char *service, agg_issue_fn fn,
                        void *ctx);

/* Calls `fn` for the log records of a service in [since_us, until_us), newest first, until
 * it returns non-zero. Returns 0 or TC_ELMDB; corrupt records are skipped and counted. */
typedef int (*agg_log_fn)(void *ctx, int64_t time_us, const agg_log_t *l);
int agg_store_logs(agg_store_t *self, const char *service, int64_t since_us, int64_t until_us,
                   agg_log_fn fn, void *ctx, uint64_t *corrupt);

/* Opens and reads a read transaction, as the readiness check. Returns 0 or TC_ELMDB, with
 * `detail` saying what is stored or what failed. */
int agg_store_check(agg_store_t *self, char *detail, size_t len);

size_t agg_store_map_bytes(agg_store_t *self);
size_t agg_store_used_bytes(agg_store_t *self);
size_t agg_store_dedupe_size(agg_store_t *self);
uint64_t agg_store_dedupe_evicted(agg_store_t *self);
uint64_t agg_store_logs_bytes(agg_store_t *self);

/* Clears reader slots of dead processes; returns how many. */
int agg_store_reader_check(agg_store_t *self);

/* True when a bucket of `width_s` starting at `start_s` is closed at `now_us`. */
bool agg_store_bucket_closed(int64_t start_s, uint32_t width_s, int64_t now_us, int64_t grace_us);

#endif
