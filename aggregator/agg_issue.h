/*
 * agg_issue.h — error issues: ErrorEvents grouped by fingerprint per service.
 *
 * An issue is identified by (service, issue id); the id is the event's grouping_hash (set by
 * the collector), or, for events that arrive without one, the fingerprint computed here
 * (agg_issue_fingerprint). An issue's state in one source partition holds: count, first and
 * last seen (event time), the latest receive time, releases and environments seen, a
 * HyperLogLog of the users affected, the most severe level, the exception type, message and
 * culprit of its first event, and that first event itself as a sample, frames included.
 * The state is stored in LMDB and published on tocsin.rollups as a tocsin.v1.IssueState.
 *
 * A pure module: no I/O, no clock, no global state. Decoders treat their input as hostile.
 */
#ifndef AGG_ISSUE_H
#define AGG_ISSUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_wire.h"
#include "tc_hll.h"
#include "tocsin/v1/event.pb-c.h"

#define AGG_ISSUE_ID_MAX 128
#define AGG_ISSUE_ID_HEX 32 /* a fingerprint computed here: 32 hex digits */
#define AGG_ISSUE_RELEASES_MAX 32
#define AGG_ISSUE_ENVS_MAX 16
#define AGG_ISSUE_MESSAGE_MAX 8192          /* bytes of message kept (type and sample too) */
#define AGG_ISSUE_FRAMES_MAX 64             /* frames kept in the sample */
#define AGG_ISSUE_STORED_MAX (1024u * 1024) /* a stored issue above this is refused */

/* Values equal to tocsin.v1.IssueStatus.Status. */
typedef enum {
    AGG_STATUS_NONE = 0,
    AGG_STATUS_UNRESOLVED = 1,
    AGG_STATUS_RESOLVED = 2,
    AGG_STATUS_IGNORED = 3,
} agg_status_t;

/* "unresolved", "resolved", "ignored"; "unresolved" for NONE (never set). */
const char *agg_status_name(agg_status_t s);

/* Parses a status name. Returns 0 or TC_EINVAL. */
int agg_status_parse(const char *s, agg_status_t *out);

/* "trace", "debug", "info", "warning", "error", "fatal" ("error" for unspecified). */
const char *agg_level_name(int level);

/* Parses a level name ("warn" too). Returns 0 or TC_EINVAL. */
int agg_level_parse(const char *s, int *out);

typedef struct {
    char *service; /* every string owned, NUL-terminated, UTF-8 */
    char *id;
    char *type;
    char *message;
    char *culprit;
    char *last_release;
    int level; /* tocsin.v1.Level, the most severe seen */
    uint64_t count;
    int64_t first_seen_us;
    int64_t last_seen_us;
    int64_t last_received_us;
    char *releases[AGG_ISSUE_RELEASES_MAX];
    uint32_t nreleases;
    bool releases_truncated;
    char *envs[AGG_ISSUE_ENVS_MAX];
    uint32_t nenvs;
    tc_hll_t users;
    uint8_t *sample; /* the first event: an encoded tocsin.v1.Event, or NULL */
    size_t sample_len;
    uint32_t partition;
    int64_t source_offset; /* holds the issue's records of the partition below this */
} agg_issue_t;

void agg_issue_init(agg_issue_t *is);
void agg_issue_fini(agg_issue_t *is);

/* The fingerprint of an ErrorEvent that arrived without a grouping_hash: the same id the
 * collector computes (common/tc_grouping.h), AGG_ISSUE_ID_HEX hex digits and a NUL. */
void agg_issue_fingerprint(const Tocsin__V1__ErrorEvent *e, char out[AGG_ISSUE_ID_HEX + 1]);

/* The culprit of an event: its innermost in-app frame (else its innermost frame) as
 * "module in function" (the file's base name without a module); "" without frames. */
void agg_issue_culprit(const Tocsin__V1__ErrorEvent *e, char *out, size_t cap);

/*
 * Adds one event (scanned `ev`, and `full`, the same event decoded by protobuf-c: needed for
 * the issue's first event, may be NULL for the others) with issue id `id`, from the record at
 * offset `offset` of `partition`; the count grows by the event's weight (sampled events stand
 * for 1/rate events). The first event sets the identity, type, message, culprit and
 * sample (without `full`: no culprit and no sample). Returns 0 or TC_ENOMEM (the issue may then be
 * partly updated; the caller drops it).
 */
int agg_issue_apply(agg_issue_t *is, const agg_event_t *ev, const Tocsin__V1__Event *full,
                    const char *id, uint32_t partition, int64_t offset);

/*
 * Adds `src` to `dst` (states of one issue from several partitions): counts add, first and
 * last seen combine, releases, environments and users unite, the level is the most severe,
 * type, message, culprit and sample come from the earlier first event. An empty `dst`
 * takes everything. Returns 0 or TC_ENOMEM.
 */
int agg_issue_merge(agg_issue_t *dst, const agg_issue_t *src);

/* Encodes the state as a tocsin.v1.IssueState (stored in LMDB and published). Returns 0
 * with *out (malloc'd, the caller frees) and *len, or TC_ENOMEM. */
int agg_issue_encode(const agg_issue_t *is, uint8_t **out, size_t *len);

/*
 * Decodes a tocsin.v1.IssueState into `is` (which must be initialised; it is emptied
 * first), checking: size, a message that parses, service and id present, UTF-8 strings
 * within bounds, at most AGG_ISSUE_RELEASES_MAX releases and AGG_ISSUE_ENVS_MAX
 * environments, count above 0, first seen not after last seen, a level in range, a
 * HyperLogLog that decodes, and a sample that is a tocsin.v1.Event when present. Returns 0,
 * TC_ETOOBIG, TC_EPARSE, TC_EINVAL or TC_ENOMEM.
 */
int agg_issue_decode(const uint8_t *data, size_t len, agg_issue_t *is);

/* Builds the tocsin.v1.Rollup carrying an issue state (revision 2 * source_offset). */
int agg_issue_rollup_encode(const agg_issue_t *is, const char *producer, uint8_t **out,
                            size_t *len);

/* The rollup key of an issue's state and status: "service\0\0$issue:" + id. Returns its
 * length, or 0 when `cap` is too small. */
size_t agg_issue_key(const char *service, const char *id, char *buf, size_t cap);

/* An issue status as stored and published (tocsin.v1.IssueStatus). */
typedef struct {
    agg_status_t status;
    int64_t updated_us;
    char updated_by[64];
} agg_issue_status_t;

/* True when `a` wins over `b`: later updated_us, then the larger updated_by. */
bool agg_issue_status_newer(const agg_issue_status_t *a, const agg_issue_status_t *b);

/* Encodes the tocsin.v1.Rollup carrying a status. Returns 0 or TC_ENOMEM. */
int agg_issue_status_rollup_encode(const char *service, const char *id,
                                   const agg_issue_status_t *st, const char *producer,
                                   uint8_t **out, size_t *len);

/* The tocsin.v1.IssueChange an event caused (`kind` 1 new, 2 regressed), as a Rollup.
 * Returns 0 or TC_ENOMEM. */
int agg_issue_change_encode(const agg_issue_t *is, int kind, const agg_event_t *ev,
                            const char *producer, uint8_t **out, size_t *len);

#endif
