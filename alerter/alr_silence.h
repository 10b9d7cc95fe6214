/*
 * alr_silence.h — silences and maintenance windows: label matchers with a start and an
 * end. An alert is muted while an active silence matches it. Silences come from the HTTP
 * API (kept in LMDB) or from the rule file's `maintenance:` section (replaced on reload).
 * Pure: time is passed in.
 */
#ifndef ALR_SILENCE_H
#define ALR_SILENCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_match.h"
#include "alr_rules.h"

#define ALR_SILENCES_MAX 10000
/* Expired silences are kept this long for the record, then forgotten. */
#define ALR_SILENCE_KEEP_US (5LL * 86400 * 1000000)

typedef struct {
    char id[17];
    alr_matchers_t match;
    int64_t starts_us, ends_us;
    int64_t created_us;
    char created_by[128];
    char comment[512];
    bool from_file;
    bool dirty;
} alr_silence_t;

typedef struct alr_silences alr_silences_t;

alr_silences_t *alr_silences_new(void);
void alr_silences_destroy(alr_silences_t **self_p);

/*
 * Creates a silence from the API's JSON body (see docs/alerter.md): matchers, starts_at,
 * ends_at or duration, created_by, comment. `id_rnd` makes the id. Returns the new
 * silence (owned by the set) or NULL with `err` filled (and *status 400 for bad input,
 * 409 when the limit is reached, 500 when out of memory).
 */
const alr_silence_t *alr_silences_create(alr_silences_t *self, const json_t *body,
                                         uint64_t id_rnd, int64_t now_us, int *status,
                                         char *err, size_t errlen);

/* Expires a silence now. Returns 0, TC_ENOTFOUND, or TC_ESTATE for a file's window. */
int alr_silences_expire(alr_silences_t *self, const char *id, int64_t now_us);

/* Replaces the maintenance windows taken from the rule file. Returns 0 or TC_ENOMEM. */
int alr_silences_set_file(alr_silences_t *self, const alr_ruleset_t *rules);

/* The id of the first silence active at `now_us` that matches `labels`, or NULL. */
const char *alr_silences_match(const alr_silences_t *self, const json_t *labels, int64_t now_us);

/* True when some silence started or ended in (from_us, to_us]: mutes may have changed. */
bool alr_silences_changed_between(const alr_silences_t *self, int64_t from_us, int64_t to_us);

/* The next start or end after `now_us`, or 0. */
int64_t alr_silences_next_edge(const alr_silences_t *self, int64_t now_us);

/* Forgets API silences expired for longer than ALR_SILENCE_KEEP_US (ids are listed by
 * alr_silences_removed). */
void alr_silences_prune(alr_silences_t *self, int64_t now_us);

size_t alr_silences_count(const alr_silences_t *self);
alr_silence_t *alr_silences_at(alr_silences_t *self, size_t i);
const alr_silence_t *alr_silences_get(const alr_silences_t *self, const char *id);

/* "pending", "active" or "expired". */
const char *alr_silence_state(const alr_silence_t *s, int64_t now_us);

/* The API form. New reference; NULL when out of memory. */
json_t *alr_silence_json(const alr_silence_t *s, int64_t now_us);

/* The persisted form, and back (API silences only). Restore returns 0, TC_EPARSE or
 * TC_ENOMEM. */
json_t *alr_silence_state_json(const alr_silence_t *s);
int alr_silences_restore(alr_silences_t *self, const json_t *doc);

/* Creates or replaces an API silence from its persisted form (a replica's change); it is
 * marked dirty. Returns 0, TC_EPARSE (malformed, or the id of a file's window) or
 * TC_ENOMEM. */
int alr_silences_upsert(alr_silences_t *self, const json_t *doc);

/* Ids forgotten since the last alr_silences_persisted; the caller deletes them. */
const char *const *alr_silences_removed(const alr_silences_t *self, size_t *len);
void alr_silences_persisted(alr_silences_t *self);

#endif
