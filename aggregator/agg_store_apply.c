/*
 * agg_store_apply.c — agg_store_commit: one write transaction per batch, holding the owned
 * partitions' records, the view's records (rollups and logs), the delivered rollups to
 * clear, and the new offsets.
 *
 * States touched by a batch are loaded once into the batch's tables (open addressing over
 * their LMDB keys), changed in memory, and written back at the end. tc_lmdb_write may run
 * the body twice (after growing the map), so the body starts from empty tables each time;
 * the only state kept outside the transaction is the dedupe set, which journals its changes
 * and takes them back when the body runs again or the commit fails (agg_dedupe_rollback).
 *
 * A record holds one event or a pack of them; a state remembers the offset of the last record
 * of this batch applied to it (batch_offset), so that a pack's second event of a series is
 * not mistaken for one the state already holds (source_offset is already past the record).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "agg_store_int.h"
#include "tc_error.h"
#include "tc_lmdb.h"
#include "tc_log.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

#define ARENA_CHUNK (64 * 1024)
#define PREFETCH_AHEAD 8

/* ---- a tiny arena for strings copied during a batch ------------------------------------------ */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
} chunk_t;

static char *arena_dup(chunk_t **head, const char *s, size_t n)
{
    chunk_t *c = *head;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > ARENA_CHUNK ? n + 1 : ARENA_CHUNK;
        chunk_t *nc = malloc(sizeof(*nc) + cap);
        if (!nc) {
            return NULL;
        }
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        *head = c = nc;
    }
    char *d = c->data + c->used;
    memcpy(d, s, n);
    d[n] = '\0';
    c->used += n + 1;
    return d;
}

static void arena_free(chunk_t **head)
{
    while (*head) {
        chunk_t *n = (*head)->next;
        free(*head);
        *head = n;
    }
}

/* ---- generic tables: entries in an array, an index of entry numbers by key hash ------------- */

typedef struct {
    uint32_t *slot; /* 0: empty; else entry number + 1 */
    size_t cap;     /* a power of two */
} index_t;

typedef struct {
    uint8_t key[BUCKET_KEY_LEN];
    uint32_t series; /* series entry, or UINT32_MAX for view states */
    bool dirty;
    bool owned; /* changed by an owned record: marked owed */
    bool viewed; /* replaced by a view state: its service's request totals are recomputed */
    int64_t first_change;
    int64_t batch_offset; /* the record of this batch last applied here; -1 for none */
    agg_bucket_t b;
} bslot_t;

typedef struct {
    uint8_t key[SERIES_KEY_LEN];
    const char *conflict;
    bool dirty;
    agg_kind_t kind;
    int64_t first_s, last_s;
    agg_str_t service, environment, name; /* arena copies, terminated */
} sslot_t;

typedef struct {
    uint8_t key[ISSUE_KEY_LEN];
    bool dirty;
    bool owned;
    int64_t first_change;
    int64_t batch_offset; /* the record of this batch last applied here; -1 for none */
    agg_issue_t is;
} islot_t;

typedef struct {
    uint8_t key[STATUS_KEY_LEN];
    bool exists;
    bool dirty;
    agg_issue_status_t st;
    const char *service, *id; /* arena copies */
} stslot_t;

typedef struct {
    const char *topic;
    int32_t partition;
    int64_t next; /* -1 while nothing is stored or applied */
    int64_t dedupe_from;
    bool dirty;
    bool events;          /* a partition of the events topic (owned) */
    int ring;             /* RING_EVENTS, RING_LOGS or RING_NONE */
    int64_t first_offset; /* first live record of this batch, -1 before */
    int64_t recv_before;  /* ring's receive time before this batch */
    int64_t recv_max;     /* largest receive time seen, this batch included */
} pslot_t;

typedef struct {
    uint8_t *key;
    size_t klen;
    uint8_t *value;
    size_t vlen;
} change_t;

/* One event of the record being applied. */
typedef struct {
    const uint8_t *p;
    size_t n;
} ent_t;

struct batch {
    bslot_t *b;
    size_t nb, capb;
    index_t bix;
    sslot_t *s;
    size_t ns, caps;
    index_t six;
    islot_t *i;
    size_t ni, capi;
    index_t iix;
    stslot_t *st;
    size_t nst, capst;
    index_t stix;
    pslot_t parts[64];
    size_t nparts;
    change_t *changes;
    size_t nchanges, capchanges;
    chunk_t *arena;
    uint8_t *enc;
    size_t enc_cap;
    agg_rollup_t rollup;
    bool rollup_init;
    ent_t *ents; /* the events of the record being applied */
    size_t capents;
    uint64_t logs_bytes_delta;
    int64_t now_us;
    agg_batch_stats_t st_;
    /* The request totals last added to (consecutive events mostly share them): their series
     * and bucket entries. */
    bool totals_valid;
    int64_t totals_start;
    uint32_t totals_si, totals_b10, totals_b60;
};

static size_t hkey(const uint8_t *key, size_t klen)
{
    return (size_t)XXH3_64bits(key, klen);
}

/* Finds the entry with `key`; returns its number or -1, and in *pos the slot to insert at. */
static long ix_find(const index_t *ix, const void *entries, size_t esize, const uint8_t *key,
                    size_t klen, size_t *pos)
{
    *pos = 0;
    if (ix->cap == 0) {
        return -1;
    }
    size_t i = hkey(key, klen) & (ix->cap - 1);
    while (ix->slot[i]) {
        uint32_t e = ix->slot[i] - 1;
        if (memcmp((const uint8_t *)entries + (size_t)e * esize, key, klen) == 0) {
            return (long)e;
        }
        i = (i + 1) & (ix->cap - 1);
    }
    *pos = i;
    return -1;
}

/* Grows the index when it is half full; rebuilds it from the entries. */
static int ix_reserve(index_t *ix, const void *entries, size_t esize, size_t klen, size_t n)
{
    if (ix->cap && (n + 1) * 2 <= ix->cap) {
        return 0;
    }
    size_t cap = ix->cap ? ix->cap * 2 : 1024;
    while ((n + 1) * 2 > cap) {
        cap *= 2;
    }
    uint32_t *slot = calloc(cap, sizeof(*slot));
    if (!slot) {
        return TC_ENOMEM;
    }
    for (size_t e = 0; e < n; e++) {
        size_t i = hkey((const uint8_t *)entries + e * esize, klen) & (cap - 1);
        while (slot[i]) {
            i = (i + 1) & (cap - 1);
        }
        slot[i] = (uint32_t)e + 1;
    }
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    return 0;
}

static void ix_clear(index_t *ix)
{
    if (ix->slot) {
        memset(ix->slot, 0, ix->cap * sizeof(*ix->slot));
    }
}

/* Makes room for one more entry in an array of `esize` bytes. */
static int grow(void **arr, size_t *cap, size_t n, size_t esize)
{
    if (n < *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap * 2 : 256;
    void *p = realloc(*arr, ncap * esize);
    if (!p) {
        return TC_ENOMEM;
    }
    memset((uint8_t *)p + *cap * esize, 0, (ncap - *cap) * esize);
    *arr = p;
    *cap = ncap;
    return 0;
}

void agg_batch_free(struct batch *b)
{
    if (!b) {
        return;
    }
    for (size_t i = 0; i < b->capb; i++) {
        agg_bucket_fini(&b->b[i].b);
    }
    for (size_t i = 0; i < b->capi; i++) {
        agg_issue_fini(&b->i[i].is);
    }
    for (size_t i = 0; i < b->nchanges; i++) {
        free(b->changes[i].key);
        free(b->changes[i].value);
    }
    if (b->rollup_init) {
        agg_rollup_fini(&b->rollup);
    }
    free(b->b);
    free(b->bix.slot);
    free(b->s);
    free(b->six.slot);
    free(b->i);
    free(b->iix.slot);
    free(b->st);
    free(b->stix.slot);
    free(b->changes);
    free(b->ents);
    free(b->enc);
    arena_free(&b->arena);
    free(b);
}

static void batch_reset(struct batch *b)
{
    for (size_t i = 0; i < b->nb; i++) {
        agg_bucket_reset(&b->b[i].b);
    }
    for (size_t i = 0; i < b->ni; i++) {
        agg_issue_fini(&b->i[i].is);
    }
    for (size_t i = 0; i < b->nchanges; i++) {
        free(b->changes[i].key);
        free(b->changes[i].value);
    }
    b->nb = b->ns = b->ni = b->nst = b->nparts = b->nchanges = 0;
    ix_clear(&b->bix);
    ix_clear(&b->six);
    ix_clear(&b->iix);
    ix_clear(&b->stix);
    arena_free(&b->arena);
    b->logs_bytes_delta = 0;
    memset(&b->st_, 0, sizeof(b->st_));
    b->totals_valid = false;
}

/* ---- the commit context ---------------------------------------------------------------------- */

typedef struct {
    agg_store_t *self;
    agg_commit_t *c;
    struct batch *b;
    MDB_txn *txn;
} ctx_t;

static int part_get(ctx_t *x, const char *topic, int32_t partition, int ring, pslot_t **out)
{
    struct batch *b = x->b;
    for (size_t i = 0; i < b->nparts; i++) {
        if (b->parts[i].partition == partition && b->parts[i].ring == ring &&
            strcmp(b->parts[i].topic, topic) == 0) {
            *out = &b->parts[i];
            return 0;
        }
    }
    if (b->nparts == sizeof(b->parts) / sizeof(b->parts[0])) {
        return TC_ETOOBIG;
    }
    pslot_t *p = &b->parts[b->nparts++];
    memset(p, 0, sizeof(*p));
    p->topic = topic;
    p->partition = partition;
    p->events = ring == RING_EVENTS;
    p->ring = ring;
    p->next = -1;
    p->dedupe_from = 0;
    p->first_offset = -1;
    int64_t next = 0, from = 0;
    int rc = agg_part_read(x->self, x->txn, x->self->parts, topic, partition, &next, &from);
    if (rc == 0) {
        p->next = next;
        p->dedupe_from = from;
    } else if (rc != TC_ENOTFOUND) {
        return rc;
    }
    if (ring != RING_NONE) {
        part_ring_t *r = agg_ring_get(x->self, ring, partition);
        if (!r) {
            return TC_ENOMEM;
        }
        p->recv_before = p->recv_max = r->recv_seen;
    }
    *out = p;
    return 0;
}

/* Finds or creates the series of a sample. A new series name must not be used with another
 * kind (in another environment); a stored series must carry the same strings (else its key
 * collides with another series). Sets ->conflict when the sample must be refused. */
static int series_get(ctx_t *x, agg_str_t service, agg_str_t environment, agg_str_t name,
                      agg_kind_t kind, uint32_t *out)
{
    struct batch *b = x->b;
    uint8_t key[SERIES_KEY_LEN];
    agg_series_key(key, agg_h64(service.p, service.n), agg_h64(name.p, name.n),
                   agg_h64(environment.p, environment.n));
    size_t pos = 0;
    long e = ix_find(&b->six, b->s, sizeof(*b->s), key, sizeof(key), &pos);
    if (e >= 0) {
        *out = (uint32_t)e;
        return 0;
    }
    int rc = grow((void **)&b->s, &b->caps, b->ns, sizeof(*b->s));
    if (rc == 0) {
        rc = ix_reserve(&b->six, b->s, sizeof(*b->s), sizeof(key), b->ns);
    }
    if (rc != 0) {
        return rc;
    }
    ix_find(&b->six, b->s, sizeof(*b->s), key, sizeof(key), &pos);
    sslot_t *sl = &b->s[b->ns];
    memset(sl, 0, sizeof(*sl));
    memcpy(sl->key, key, sizeof(key));
    sl->service.p = arena_dup(&b->arena, service.p, service.n);
    sl->environment.p = arena_dup(&b->arena, environment.p, environment.n);
    sl->name.p = arena_dup(&b->arena, name.p, name.n);
    if (!sl->service.p || !sl->environment.p || !sl->name.p) {
        return TC_ENOMEM;
    }
    sl->service.n = service.n;
    sl->environment.n = environment.n;
    sl->name.n = name.n;
    sl->kind = kind;
    sl->first_s = INT64_MAX;
    sl->last_s = INT64_MIN;
    b->six.slot[pos] = (uint32_t)b->ns + 1;
    *out = (uint32_t)b->ns++;

    agg_series_rec_t *rec = malloc(sizeof(*rec));
    if (!rec) {
        return TC_ENOMEM;
    }
    MDB_val k = {sizeof(key), key}, v;
    int mrc = mdb_get(x->txn, x->self->series, &k, &v);
    if (mrc == 0) {
        if (agg_series_decode(v.mv_data, v.mv_size, rec) != 0) {
            tc_log(TC_LOG_ERROR, "store.corrupt", "a series value is corrupt; rewritten");
            b->st_.corrupt++;
            sl->dirty = true;
        } else if (!agg_str_eq(service, rec->service) || !agg_str_eq(name, rec->name) ||
                   !agg_str_eq(environment, rec->environment)) {
            sl->conflict = "hash_collision";
        } else if (rec->kind != kind) {
            sl->conflict = "kind";
        } else {
            sl->first_s = rec->first_s;
            sl->last_s = rec->last_s;
        }
        free(rec);
        return 0;
    }
    if (mrc != MDB_NOTFOUND) {
        free(rec);
        return mrc;
    }
    /* New series: the same service and name in another environment must have this kind. */
    MDB_cursor *cur = NULL;
    mrc = mdb_cursor_open(x->txn, x->self->series, &cur);
    if (mrc != 0) {
        free(rec);
        return mrc;
    }
    MDB_val ck = {16, key}, cv;
    mrc = mdb_cursor_get(cur, &ck, &cv, MDB_SET_RANGE);
    while (mrc == 0 && ck.mv_size == SERIES_KEY_LEN && memcmp(ck.mv_data, key, 16) == 0) {
        if (agg_series_decode(cv.mv_data, cv.mv_size, rec) == 0 &&
            agg_str_eq(service, rec->service) && agg_str_eq(name, rec->name) && rec->kind != kind) {
            sl->conflict = "kind";
            break;
        }
        mrc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    free(rec);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    /* Other new series of this batch with the same name and another kind. */
    for (size_t i = 0; !sl->conflict && i + 1 < b->ns; i++) {
        if (memcmp(b->s[i].key, key, 16) == 0 && b->s[i].kind != kind && !b->s[i].conflict) {
            sl->conflict = "kind";
        }
    }
    sl->dirty = !sl->conflict;
    return 0;
}

static void series_touch(ctx_t *x, uint32_t si, int64_t start_s)
{
    sslot_t *sl = &x->b->s[si];
    if (start_s < sl->first_s) {
        sl->first_s = start_s;
        sl->dirty = true;
    }
    if (start_s > sl->last_s) {
        sl->last_s = start_s;
        sl->dirty = true;
    }
}

static int bucket_get(ctx_t *x, const uint8_t key[BUCKET_KEY_LEN], uint32_t series, uint32_t *out)
{
    struct batch *b = x->b;
    size_t pos = 0;
    long e = ix_find(&b->bix, b->b, sizeof(*b->b), key, BUCKET_KEY_LEN, &pos);
    if (e >= 0) {
        *out = (uint32_t)e;
        return 0;
    }
    size_t oldcap = b->capb;
    int rc = grow((void **)&b->b, &b->capb, b->nb, sizeof(*b->b));
    if (rc != 0) {
        return rc;
    }
    for (size_t i = oldcap; i < b->capb; i++) {
        agg_bucket_init(&b->b[i].b);
    }
    rc = ix_reserve(&b->bix, b->b, sizeof(*b->b), BUCKET_KEY_LEN, b->nb);
    if (rc != 0) {
        return rc;
    }
    ix_find(&b->bix, b->b, sizeof(*b->b), key, BUCKET_KEY_LEN, &pos);
    bslot_t *sl = &b->b[b->nb];
    memcpy(sl->key, key, BUCKET_KEY_LEN);
    sl->series = series;
    sl->dirty = sl->owned = sl->viewed = false;
    sl->first_change = 0;
    sl->batch_offset = -1;
    agg_bucket_reset(&sl->b);
    b->bix.slot[pos] = (uint32_t)b->nb + 1;
    *out = (uint32_t)b->nb++;
    MDB_val k = {BUCKET_KEY_LEN, (void *)key}, v;
    int mrc = mdb_get(x->txn, x->self->buckets, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        return 0;
    }
    if (mrc != 0) {
        return mrc;
    }
    rc = agg_bucket_store_decode(v.mv_data, v.mv_size, &sl->b);
    if (rc == TC_ENOMEM) {
        return rc;
    }
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "store.corrupt", "a stored bucket is corrupt (%s); started afresh",
               tc_strerror(rc));
        b->st_.corrupt++;
    }
    return 0;
}

static int issue_get(ctx_t *x, const uint8_t key[ISSUE_KEY_LEN], uint32_t *out, bool *existed)
{
    struct batch *b = x->b;
    size_t pos = 0;
    long e = ix_find(&b->iix, b->i, sizeof(*b->i), key, ISSUE_KEY_LEN, &pos);
    if (e >= 0) {
        *out = (uint32_t)e;
        *existed = b->i[e].is.id != NULL;
        return 0;
    }
    size_t oldcap = b->capi;
    int rc = grow((void **)&b->i, &b->capi, b->ni, sizeof(*b->i));
    if (rc != 0) {
        return rc;
    }
    for (size_t i = oldcap; i < b->capi; i++) {
        agg_issue_init(&b->i[i].is);
    }
    rc = ix_reserve(&b->iix, b->i, sizeof(*b->i), ISSUE_KEY_LEN, b->ni);
    if (rc != 0) {
        return rc;
    }
    ix_find(&b->iix, b->i, sizeof(*b->i), key, ISSUE_KEY_LEN, &pos);
    islot_t *sl = &b->i[b->ni];
    memcpy(sl->key, key, ISSUE_KEY_LEN);
    sl->dirty = sl->owned = false;
    sl->first_change = 0;
    sl->batch_offset = -1;
    agg_issue_fini(&sl->is);
    b->iix.slot[pos] = (uint32_t)b->ni + 1;
    *out = (uint32_t)b->ni++;
    *existed = false;
    MDB_val k = {ISSUE_KEY_LEN, (void *)key}, v;
    int mrc = mdb_get(x->txn, x->self->issues, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        return 0;
    }
    if (mrc != 0) {
        return mrc;
    }
    rc = agg_issue_decode(v.mv_data, v.mv_size, &sl->is);
    if (rc == TC_ENOMEM) {
        return rc;
    }
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "store.corrupt", "a stored issue is corrupt (%s); started afresh",
               tc_strerror(rc));
        b->st_.corrupt++;
        return 0;
    }
    *existed = true;
    return 0;
}

/* True when any partition already holds a state of the issue (h(service) h(id) prefix). */
static int issue_known(ctx_t *x, const uint8_t prefix[16], bool *known)
{
    struct batch *b = x->b;
    for (size_t i = 0; i < b->ni; i++) {
        if (memcmp(b->i[i].key, prefix, 16) == 0 && b->i[i].is.id) {
            *known = true;
            return 0;
        }
    }
    MDB_cursor *cur = NULL;
    int mrc = mdb_cursor_open(x->txn, x->self->issues, &cur);
    if (mrc != 0) {
        return mrc;
    }
    MDB_val k = {16, (void *)prefix}, v;
    mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    *known = mrc == 0 && k.mv_size == ISSUE_KEY_LEN && memcmp(k.mv_data, prefix, 16) == 0;
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? 0 : mrc;
}

static int status_get(ctx_t *x, const uint8_t key[STATUS_KEY_LEN], const char *service,
                      const char *id, uint32_t *out)
{
    struct batch *b = x->b;
    size_t pos = 0;
    long e = ix_find(&b->stix, b->st, sizeof(*b->st), key, STATUS_KEY_LEN, &pos);
    if (e >= 0) {
        *out = (uint32_t)e;
        return 0;
    }
    int rc = grow((void **)&b->st, &b->capst, b->nst, sizeof(*b->st));
    if (rc == 0) {
        rc = ix_reserve(&b->stix, b->st, sizeof(*b->st), STATUS_KEY_LEN, b->nst);
    }
    if (rc != 0) {
        return rc;
    }
    ix_find(&b->stix, b->st, sizeof(*b->st), key, STATUS_KEY_LEN, &pos);
    stslot_t *sl = &b->st[b->nst];
    memset(sl, 0, sizeof(*sl));
    memcpy(sl->key, key, STATUS_KEY_LEN);
    sl->service = arena_dup(&b->arena, service, strlen(service));
    sl->id = arena_dup(&b->arena, id, strlen(id));
    if (!sl->service || !sl->id) {
        return TC_ENOMEM;
    }
    b->stix.slot[pos] = (uint32_t)b->nst + 1;
    *out = (uint32_t)b->nst++;
    MDB_val k = {STATUS_KEY_LEN, (void *)key}, v;
    int mrc = mdb_get(x->txn, x->self->status, &k, &v);
    if (mrc == MDB_NOTFOUND) {
        return 0;
    }
    if (mrc != 0) {
        return mrc;
    }
    agg_status_rec_t rec;
    if (agg_status_decode(v.mv_data, v.mv_size, &rec) == 0 && strcmp(rec.service, service) == 0 &&
        strcmp(rec.id, id) == 0) {
        sl->exists = true;
        sl->st = rec.st;
    }
    return 0;
}

static int add_change(ctx_t *x, const char *key, size_t klen, uint8_t *value, size_t vlen)
{
    struct batch *b = x->b;
    int rc = grow((void **)&b->changes, &b->capchanges, b->nchanges, sizeof(*b->changes));
    uint8_t *k = malloc(klen ? klen : 1);
    if (rc != 0 || !k) {
        free(k);
        free(value);
        return TC_ENOMEM;
    }
    memcpy(k, key, klen);
    change_t *ch = &b->changes[b->nchanges++];
    ch->key = k;
    ch->klen = klen;
    ch->value = value;
    ch->vlen = vlen;
    return 0;
}

/* ---- owned records ----------------------------------------------------------------------------
 */

/* Whether an event's id was seen within the window (the set journals what it learns). */
static int dedupe(ctx_t *x, const uint8_t *id, int64_t t_us, bool *dup)
{
    int rc = agg_dedupe_check(x->self->dedupe, id, t_us);
    if (rc < 0) {
        return rc;
    }
    *dup = rc == 1;
    return 0;
}

/* The time an event counts as received: the collector's, never later than now. */
static int64_t received(const agg_event_t *ev, int64_t now_us)
{
    return ev->received_us > 0 && ev->received_us < now_us ? ev->received_us : now_us;
}

/*
 * Splits a record into its events (b->ents): one for a record of one event, every entry of a
 * pack. Returns 0 with *n set, TC_EPARSE with *why set when the record cannot be read (a pack
 * badly framed or empty, an unknown format: refused whole), or TC_ENOMEM.
 */
static int record_events(struct batch *b, const agg_msg_t *m, size_t *n, const char **why)
{
    *n = 0;
    if (m->format == AGG_FORMAT_EVENT) {
        if (b->capents == 0) {
            b->ents = malloc(64 * sizeof(*b->ents));
            if (!b->ents) {
                return TC_ENOMEM;
            }
            b->capents = 64;
        }
        b->ents[0].p = m->value;
        b->ents[0].n = m->len;
        *n = 1;
        return 0;
    }
    if (m->format != AGG_FORMAT_PACK) {
        *why = "format";
        return TC_EPARSE;
    }
    size_t off = 0, k = 0;
    const uint8_t *ev;
    size_t ev_len;
    int rc;
    while ((rc = agg_pack_next(m->value, m->len, &off, &ev, &ev_len)) == 1) {
        if (k == b->capents) {
            size_t cap = b->capents ? b->capents * 2 : 64;
            ent_t *e = realloc(b->ents, cap * sizeof(*e));
            if (!e) {
                return TC_ENOMEM;
            }
            b->ents = e;
            b->capents = cap;
        }
        b->ents[k].p = ev;
        b->ents[k].n = ev_len;
        k++;
    }
    if (rc != 0 || k == 0) {
        *why = "pack";
        return TC_EPARSE;
    }
    *n = k;
    return 0;
}

/* Records the outcome of one event of `m` in its summary (see agg_msg_t). */
static void note(agg_msg_t *m, agg_msg_result_t r, const char *reason, bool *refused,
                 bool *applied)
{
    if (*refused) {
        return;
    }
    if (r == AGG_MSG_INVALID || r == AGG_MSG_CONFLICT) {
        *refused = true;
        m->result = r;
        m->reason = reason;
        return;
    }
    if (r == AGG_MSG_APPLIED) {
        *applied = true;
    }
    m->result = *applied ? AGG_MSG_APPLIED : r;
}

/* The whole event, decoded by protobuf-c; NULL when out of memory (agg_wire_scan accepted
 * the event, so protobuf-c refuses it on nothing else). */
static Tocsin__V1__Event *unpack_error(const ent_t *e)
{
    Tocsin__V1__Event *full = agg_wire_unpack(e->p, e->n);
    if (full && (full->body_case != TOCSIN__V1__EVENT__BODY_ERROR || !full->error)) {
        tocsin__v1__event__free_unpacked(full, NULL);
        full = NULL;
    }
    return full;
}

/* Applies an ErrorEvent to its issue. The event is decoded in full only when it must be:
 * without a grouping hash (the fingerprint needs its frames), or as an issue's first event
 * (its sample and culprit). */
static int apply_issue(ctx_t *x, const agg_msg_t *m, const ent_t *e, const agg_event_t *ev,
                       bool *covered)
{
    Tocsin__V1__Event *full = NULL;
    char idbuf[AGG_ISSUE_ID_MAX + 1];
    if (ev->grouping_hash.n > 0 && ev->grouping_hash.n <= AGG_ISSUE_ID_MAX) {
        memcpy(idbuf, ev->grouping_hash.p, ev->grouping_hash.n);
        idbuf[ev->grouping_hash.n] = '\0';
    } else {
        full = unpack_error(e);
        if (!full) {
            return 0;
        }
        agg_issue_fingerprint(full->error, idbuf);
    }
    uint64_t hsvc = agg_h64(ev->service.p, ev->service.n), hid = agg_h64(idbuf, strlen(idbuf));
    uint8_t key[ISSUE_KEY_LEN];
    agg_issue_key_bytes(key, hsvc, hid, (uint32_t)m->partition);
    bool known = false;
    uint32_t ii = 0;
    bool existed = false;
    int rc = issue_get(x, key, &ii, &existed);
    if (rc == 0 && !existed) {
        rc = issue_known(x, key, &known);
    }
    islot_t *sl = rc == 0 ? &x->b->i[ii] : NULL;
    if (rc != 0 ||
        (existed && (strcmp(sl->is.id, idbuf) != 0 || !agg_str_eq(ev->service, sl->is.service)))) {
        /* An error, or another issue with colliding hashes: counted in $errors only. */
        if (full) {
            tocsin__v1__event__free_unpacked(full, NULL);
        }
        return rc;
    }
    if (m->offset < sl->is.source_offset && sl->batch_offset != m->offset) {
        *covered = true;
        if (full) {
            tocsin__v1__event__free_unpacked(full, NULL);
        }
        return 0;
    }
    *covered = false;
    if (!sl->is.id && !full) {
        full = unpack_error(e);
        if (!full) {
            return TC_ENOMEM;
        }
    }
    /* Regression: an event received after the issue was resolved. */
    char svc[AGG_MAX_SERVICE + 1];
    memcpy(svc, ev->service.p, ev->service.n);
    svc[ev->service.n] = '\0';
    uint32_t si = 0;
    rc = status_get(x, key, svc, idbuf, &si);
    if (rc != 0) {
        if (full) {
            tocsin__v1__event__free_unpacked(full, NULL);
        }
        return rc;
    }
    int64_t arrival = received(ev, x->c->now_us);
    stslot_t *st = &x->b->st[si];
    bool regressed =
        st->exists && st->st.status == AGG_STATUS_RESOLVED && arrival > st->st.updated_us;
    rc = agg_issue_apply(&sl->is, ev, full, idbuf, (uint32_t)m->partition, m->offset);
    if (full) {
        tocsin__v1__event__free_unpacked(full, NULL);
    }
    if (rc != 0) {
        return rc;
    }
    if (!sl->owned) {
        sl->first_change = m->offset + 1; /* the first change of this batch, plus one */
    }
    sl->dirty = sl->owned = true;
    sl->batch_offset = m->offset;
    int kind = 0;
    if (!existed && !known) {
        kind = TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_NEW;
        x->b->st_.issues_new++;
    } else if (regressed) {
        kind = TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_REGRESSED;
        x->b->st_.issues_regressed++;
        /* The same for every aggregator replaying this record: the receive time decides. */
        st->st.status = AGG_STATUS_UNRESOLVED;
        st->st.updated_us = arrival;
        tc_strlcpy(st->st.updated_by, "regression", sizeof(st->st.updated_by));
        st->exists = st->dirty = true;
        uint8_t *value = NULL;
        size_t vlen = 0;
        char ck[AGG_MAX_SERVICE + AGG_ISSUE_ID_MAX + 16];
        size_t cklen = agg_issue_key(svc, idbuf, ck, sizeof(ck));
        rc = agg_issue_status_rollup_encode(svc, idbuf, &st->st, NULL, &value, &vlen);
        if (rc == 0) {
            rc = add_change(x, ck, cklen, value, vlen);
        }
        if (rc != 0) {
            return rc;
        }
    }
    if (kind) {
        uint8_t *value = NULL;
        size_t vlen = 0;
        char ck[AGG_MAX_SERVICE + AGG_MAX_ENVIRONMENT + AGG_ISSUE_ID_MAX + 16];
        int n = snprintf(ck, sizeof(ck), "%s%c%.*s%c$issue:%s", svc, 0, (int)ev->environment.n,
                         ev->environment.p, 0, idbuf);
        rc = agg_issue_change_encode(&sl->is, kind, ev, NULL, &value, &vlen);
        if (rc == 0) {
            rc = add_change(x, ck, (size_t)(n > 0 ? n : 0), value, vlen);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Applies one event of an owned record; *out says what became of it (*why for refusals). */
/* Applies one event's sample to its bucket of series `si` (name hash `hname`) starting at
 * `start`, unless the bucket holds its record already (*covered). *conflict when the stored
 * bucket holds another kind. */
static int apply_bucket(ctx_t *x, const agg_msg_t *m, uint32_t si, const agg_sample_t *s,
                        uint64_t hname, int64_t start, bool late, bool too_old, bool *covered,
                        bool *conflict)
{
    agg_store_t *self = x->self;
    struct batch *b = x->b;
    uint8_t key[BUCKET_KEY_LEN];
    agg_bucket_key(key, agg_h64(s->service.p, s->service.n), hname, start,
                   agg_h64(s->environment.p, s->environment.n), (uint32_t)m->partition);
    uint32_t bi = 0;
    int rc = bucket_get(x, key, si, &bi);
    if (rc != 0) {
        return rc;
    }
    bslot_t *bs = &b->b[bi];
    /* The bucket holds this record already — unless this batch is applying it right now
     * (an earlier event of the same pack moved source_offset past it). */
    *covered = m->offset < bs->b.source_offset && bs->batch_offset != m->offset;
    *conflict = false;
    if (*covered) {
        return 0;
    }
    if (too_old) {
        rc = agg_bucket_begin(&bs->b, s->kind, &self->slo);
    } else {
        rc = agg_bucket_apply(&bs->b, s, &self->slo);
    }
    if (rc == 0 && late) {
        bs->b.late += s->weight;
    }
    if (rc == TC_EINVAL) {
        *conflict = true;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    bs->b.source_offset = m->offset + 1;
    bs->batch_offset = m->offset;
    if (!bs->owned) {
        bs->first_change = m->offset + 1;
    }
    bs->dirty = bs->owned = true;
    series_touch(x, si, start);
    return 0;
}

/* Merges the stored 10 s totals of the minute of `key` (an AGG_PART_ALL_MINUTE key) into
 * `acc` (the first one found replaces what `acc` held); *found (if not NULL) says whether
 * there was any. Returns 0, TC_ENOMEM or an LMDB code. */
static int fill_minute(ctx_t *x, const uint8_t *key, agg_bucket_t *acc, bool *found)
{
    uint8_t k10[BUCKET_KEY_LEN];
    memcpy(k10, key, BUCKET_KEY_LEN);
    int64_t minute = agg_unbiased(tc_be64_get(key + 16));
    bool any = false;
    for (int64_t t = minute; t < minute + AGG_ROLLUP_WIDTH_S; t += AGG_BUCKET_WIDTH_S) {
        tc_be64_put(k10 + 16, agg_biased(t));
        tc_be32_put(k10 + 32, AGG_PART_ALL);
        MDB_val k = {BUCKET_KEY_LEN, k10}, v;
        int mrc = mdb_get(x->txn, x->self->buckets, &k, &v);
        if (mrc == MDB_NOTFOUND) {
            continue;
        }
        if (mrc != 0) {
            return mrc;
        }
        int rc = any ? agg_bucket_store_merge(acc, v.mv_data, v.mv_size)
                     : agg_bucket_store_decode(v.mv_data, v.mv_size, acc);
        if (rc == TC_ENOMEM) {
            return rc;
        }
        if (rc != 0) {
            x->b->st_.corrupt++;
            continue;
        }
        any = true;
    }
    acc->width_s = AGG_ROLLUP_WIDTH_S;
    if (found) {
        *found = any;
    }
    return 0;
}

static bool str_same(agg_str_t a, agg_str_t b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

/* Adds an event to the totals entries of the cache (see apply_totals). */
static int add_totals(ctx_t *x, const agg_sample_t *s, int64_t start, bool late, bool too_old,
                      uint32_t si, uint32_t b60, uint32_t b10)
{
    struct batch *b = x->b;
    const uint32_t slots[2] = {b10, b60};
    for (int i = 1; i >= 0; i--) {
        bslot_t *bs = &b->b[slots[i]];
        int rc = too_old ? agg_bucket_begin(&bs->b, s->kind, &x->self->slo)
                         : agg_bucket_apply(&bs->b, s, &x->self->slo);
        if (rc != 0) {
            return rc; /* the kind was right when cached: only TC_ENOMEM */
        }
        if (late) {
            bs->b.late += s->weight;
        }
        bs->dirty = true;
    }
    series_touch(x, si, start);
    return 0;
}

/* Adds a request event that its route's bucket took to its service's totals of 10 s and
 * of the minute (AGG_PART_ALL, AGG_PART_ALL_MINUTE). A conflict there (a hash collision or
 * a corrupt value; the route's bucket is applied) is logged and counted. */
static int apply_totals(ctx_t *x, const agg_sample_t *s, int64_t start, bool late, bool too_old)
{
    static const agg_str_t name = {AGG_SERVICE_NAME, sizeof(AGG_SERVICE_NAME) - 1};
    static tc_log_limit_t limit = TC_LOG_LIMIT_INIT(1, 60 * 1000000LL); /* commit thread */
    struct batch *b = x->b;
    if (b->totals_valid && b->totals_start == start &&
        str_same(b->s[b->totals_si].service, s->service) &&
        str_same(b->s[b->totals_si].environment, s->environment)) {
        return add_totals(x, s, start, late, too_old, b->totals_si, b->totals_b60,
                          b->totals_b10);
    }
    b->totals_valid = false;
    uint32_t si = 0;
    int rc = series_get(x, s->service, s->environment, name, AGG_KIND_REQUESTS, &si);
    if (rc != 0) {
        return rc;
    }
    bool conflict = b->s[si].conflict != NULL;
    uint32_t slots[2] = {0, 0};
    const uint64_t hsvc = agg_h64(s->service.p, s->service.n);
    const uint64_t henv = agg_h64(s->environment.p, s->environment.n);
    const uint64_t htn = agg_h64(TOTAL_NAME, sizeof(TOTAL_NAME) - 1);
    /* The minute first: when it has no stored total yet (a store migrated from format 2),
     * the total starts as the merge of the minute's stored 10 s totals, none of which this
     * batch has changed yet (they are changed only after their minute's). */
    for (int i = 1; i >= 0 && !conflict; i--) {
        int64_t t = i ? agg_bucket_align(start * 1000000, AGG_ROLLUP_WIDTH_S) : start;
        uint8_t key[BUCKET_KEY_LEN];
        agg_bucket_key(key, hsvc, htn, t, henv, i ? AGG_PART_ALL_MINUTE : AGG_PART_ALL);
        uint32_t bi = 0;
        rc = bucket_get(x, key, si, &bi);
        if (rc != 0) {
            return rc;
        }
        slots[i] = bi;
        bslot_t *bs = &b->b[bi];
        if (i == 1 && bs->b.kind == AGG_KIND_NONE) {
            rc = fill_minute(x, key, &bs->b, NULL);
            if (rc != 0) {
                return rc;
            }
        }
        rc = too_old ? agg_bucket_begin(&bs->b, s->kind, &x->self->slo)
                     : agg_bucket_apply(&bs->b, s, &x->self->slo);
        if (rc == TC_EINVAL) {
            conflict = true;
            break;
        }
        if (rc != 0) {
            return rc;
        }
        if (late) {
            bs->b.late += s->weight;
        }
        bs->b.width_s = i ? AGG_ROLLUP_WIDTH_S : AGG_BUCKET_WIDTH_S;
        bs->dirty = true; /* not owned: never published */
        if (i == 0) {
            series_touch(x, si, start);
        }
    }
    if (conflict) {
        if (tc_log_limit_allow(&limit, x->c->now_us, NULL)) {
            tc_log(TC_LOG_ERROR, "store.conflict",
                   "the request totals of a service cannot be stored (hash collision or "
                   "corrupt value); its * answers miss events");
        }
        b->st_.conflicts++;
        return 0;
    }
    b->totals_valid = true;
    b->totals_start = start;
    b->totals_si = si;
    b->totals_b60 = slots[1];
    b->totals_b10 = slots[0];
    return 0;
}

static int apply_one(ctx_t *x, const agg_msg_t *m, pslot_t *p, const ent_t *e,
                     agg_msg_result_t *out, const char **why)
{
    agg_store_t *self = x->self;
    struct batch *b = x->b;
    agg_event_t ev;
    if (agg_wire_scan(e->p, e->n, &ev, why) != 0) {
        if (!*why) {
            *why = "event";
        }
        *out = AGG_MSG_INVALID;
        b->st_.invalid++;
        return 0;
    }
    int64_t arrival = received(&ev, x->c->now_us);
    if (arrival > p->recv_max) {
        p->recv_max = arrival;
    }
    bool dup = false;
    int rc = dedupe(x, ev.event_id, arrival, &dup);
    if (rc != 0) {
        return rc;
    }
    if (dup) {
        *out = AGG_MSG_DUPLICATE;
        b->st_.duplicates++;
        return 0;
    }
    agg_sample_t s;
    agg_event_sample(&ev, &s);
    if (s.kind == AGG_KIND_NONE) {
        *out = AGG_MSG_IGNORED;
        b->st_.ignored++;
        return 0;
    }
    uint32_t si = 0;
    rc = series_get(x, s.service, s.environment, s.name, s.kind, &si);
    if (rc != 0) {
        return rc;
    }
    if (b->s[si].conflict) {
        *out = AGG_MSG_CONFLICT;
        *why = b->s[si].conflict;
        b->st_.conflicts++;
        return 0;
    }
    /* Late (received after its bucket closed): still counted in its bucket, so counts stay
     * exact, and counted as late there. Too old (its bucket was already rolled up into a
     * 1 min one, or deleted): counted only as late, in the bucket of its arrival. */
    bool late = agg_store_bucket_closed(s.start_s, AGG_BUCKET_WIDTH_S, arrival, self->grace_us);
    bool too_old = s.start_s < atomic_load(&self->compacted_s) ||
                   (self->max_retention_us > 0 &&
                    s.start_s < (x->c->now_us - self->max_retention_us) / 1000000);
    int64_t start = too_old ? agg_bucket_align(arrival, AGG_BUCKET_WIDTH_S) : s.start_s;
    bool covered = true, conflict = false;
    rc = apply_bucket(x, m, si, &s, agg_h64(s.name.p, s.name.n), start, late, too_old, &covered,
                      &conflict);
    if (rc != 0) {
        return rc;
    }
    if (conflict) {
        /* The stored bucket holds another kind (a corrupt or colliding value). */
        *out = AGG_MSG_CONFLICT;
        *why = "kind";
        b->st_.conflicts++;
        return 0;
    }
    if (!covered && s.kind == AGG_KIND_REQUESTS) {
        /* The service's request totals take what its route's bucket took, in the same
         * transaction: exactly once like it. */
        rc = apply_totals(x, &s, start, late, too_old);
        if (rc != 0) {
            return rc;
        }
    }
    bool issue_covered = true;
    if (ev.body == AGG_BODY_ERROR) {
        rc = apply_issue(x, m, e, &ev, &issue_covered);
        if (rc != 0) {
            return rc;
        }
    }
    if (covered && issue_covered) {
        *out = AGG_MSG_COVERED;
        b->st_.covered++;
    } else if (too_old) {
        *out = AGG_MSG_LATE;
        b->st_.late++;
    } else if (late) {
        *out = AGG_MSG_APPLIED;
        b->st_.applied++;
        b->st_.late++;
    } else {
        *out = AGG_MSG_APPLIED;
        b->st_.applied++;
    }
    return 0;
}

/* A record below its partition's stored offset: applied before; only its events' ids go back
 * into the dedupe set. */
static int refill(ctx_t *x, pslot_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *id = NULL;
        int64_t recv = 0;
        if (agg_wire_scan_id(x->b->ents[i].p, x->b->ents[i].n, &id, &recv) != 0) {
            continue;
        }
        int64_t t = recv > 0 && recv < x->c->now_us ? recv : x->c->now_us;
        bool dup = false;
        int rc = dedupe(x, id, t, &dup);
        if (rc != 0) {
            return rc;
        }
        if (t > p->recv_max) {
            p->recv_max = t;
        }
    }
    return 0;
}

/* Asks for the dedupe slot of the event `ahead` entries on (encoders write the 16-byte
 * event id first: a hint needs no more). */
static inline void prefetch_id(const agg_store_t *self, const ent_t *e)
{
    if (e->n > 2 + AGG_EVENT_ID_LEN && e->p[0] == 0x0a && e->p[1] == AGG_EVENT_ID_LEN) {
        agg_dedupe_prefetch(self->dedupe, e->p + 2);
    }
}

static int apply_event(ctx_t *x, agg_msg_t *m)
{
    struct batch *b = x->b;
    m->reason = NULL;
    m->events = 0;
    b->st_.records++;
    pslot_t *p = NULL;
    int rc = part_get(x, x->c->events_topic, m->partition, RING_EVENTS, &p);
    if (rc != 0) {
        return rc;
    }
    size_t n = 0;
    const char *why = NULL;
    int erc = record_events(b, m, &n, &why);
    if (erc == TC_ENOMEM) {
        return erc;
    }
    m->events = (uint32_t)n;
    if (p->next >= 0 && m->offset < p->next) {
        m->result = AGG_MSG_STALE;
        b->st_.consumed += n;
        b->st_.stale += n;
        return erc == 0 ? refill(x, p, n) : 0;
    }
    if (p->next >= 0 && m->offset > p->next) {
        b->st_.gaps += (uint64_t)(m->offset - p->next);
    }
    p->next = m->offset + 1;
    p->dirty = true;
    if (p->first_offset < 0) {
        p->first_offset = m->offset;
    }
    if (erc != 0) {
        m->result = AGG_MSG_INVALID;
        m->reason = why;
        b->st_.consumed++;
        b->st_.invalid++;
        b->st_.unreadable++;
        return 0;
    }
    bool refused = false, applied = false;
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++) {
        prefetch_id(x->self, &b->ents[i]);
    }
    for (size_t i = 0; i < n; i++) {
        /* The dedupe table is large and probed at random: ask for a later event's slot now,
         * so that it is in the cache when that event comes. */
        if (i + PREFETCH_AHEAD < n) {
            prefetch_id(x->self, &b->ents[i + PREFETCH_AHEAD]);
        }
        b->st_.consumed++;
        agg_msg_result_t r = AGG_MSG_APPLIED;
        const char *reason = NULL;
        rc = apply_one(x, m, p, &b->ents[i], &r, &reason);
        if (rc != 0) {
            return rc;
        }
        note(m, r, reason, &refused, &applied);
    }
    return 0;
}

/* ---- the view ------------------------------------------------------------------------------- */

static int view_bucket(ctx_t *x, agg_msg_t *m, agg_rollup_t *r)
{
    struct batch *b = x->b;
    if (r->start_s < atomic_load(&x->self->compacted_s)) {
        m->result = AGG_MSG_OLD;
        b->st_.old++;
        return 0;
    }
    agg_str_t svc = {r->service, (uint32_t)strlen(r->service)};
    agg_str_t env = {r->environment, (uint32_t)strlen(r->environment)};
    agg_str_t name = {r->name, (uint32_t)strlen(r->name)};
    uint32_t si = 0;
    int rc = series_get(x, svc, env, name, r->bucket.kind, &si);
    if (rc != 0) {
        return rc;
    }
    if (b->s[si].conflict) {
        m->result = AGG_MSG_CONFLICT;
        m->reason = b->s[si].conflict;
        b->st_.conflicts++;
        return 0;
    }
    uint8_t key[BUCKET_KEY_LEN];
    agg_bucket_key(key, agg_h64(svc.p, svc.n), agg_h64(name.p, name.n), r->start_s,
                   agg_h64(env.p, env.n), r->partition);
    uint32_t bi = 0;
    rc = bucket_get(x, key, si, &bi);
    if (rc != 0) {
        return rc;
    }
    bslot_t *bs = &b->b[bi];
    if (bs->b.kind != AGG_KIND_NONE && r->bucket.source_offset <= bs->b.source_offset) {
        m->result = AGG_MSG_COVERED;
        b->st_.covered++;
        return 0;
    }
    rc = agg_bucket_copy(&bs->b, &r->bucket);
    if (rc != 0) {
        return rc;
    }
    bs->dirty = true;
    bs->viewed = true;
    series_touch(x, si, r->start_s);
    m->result = AGG_MSG_APPLIED;
    b->st_.view_applied++;
    return 0;
}

static int view_issue(ctx_t *x, agg_msg_t *m, agg_rollup_t *r)
{
    struct batch *b = x->b;
    agg_issue_t *in = &r->issue;
    uint8_t key[ISSUE_KEY_LEN];
    agg_issue_key_bytes(key, agg_h64(in->service, strlen(in->service)),
                        agg_h64(in->id, strlen(in->id)), in->partition);
    uint32_t ii = 0;
    bool existed = false;
    int rc = issue_get(x, key, &ii, &existed);
    if (rc != 0) {
        return rc;
    }
    islot_t *sl = &b->i[ii];
    if (existed && (strcmp(sl->is.id, in->id) != 0 || strcmp(sl->is.service, in->service) != 0)) {
        m->result = AGG_MSG_CONFLICT;
        m->reason = "hash_collision";
        b->st_.conflicts++;
        return 0;
    }
    if (existed && in->source_offset <= sl->is.source_offset) {
        m->result = AGG_MSG_COVERED;
        b->st_.covered++;
        return 0;
    }
    agg_issue_fini(&sl->is);
    rc = agg_issue_merge(&sl->is, in);
    if (rc != 0) {
        return rc;
    }
    sl->is.source_offset = in->source_offset;
    sl->is.partition = in->partition;
    sl->dirty = true;
    m->result = AGG_MSG_APPLIED;
    b->st_.view_applied++;
    return 0;
}

/*
 * A resolve set on another instance reaches the owner of the issue's partition later than
 * it was made. When the owner has meanwhile applied an event received after the resolve,
 * the issue regressed: the owner says so now, as it would have when applying that event.
 */
static int regress_late_resolve(ctx_t *x, const agg_rollup_t *r, uint32_t si)
{
    uint64_t hsvc = agg_h64(r->service, strlen(r->service));
    uint64_t hid = agg_h64(r->issue_id, strlen(r->issue_id));
    for (size_t k = 0; k < x->c->nowned; k++) {
        uint8_t key[ISSUE_KEY_LEN];
        agg_issue_key_bytes(key, hsvc, hid, (uint32_t)x->c->owned[k]);
        uint32_t ii = 0;
        bool existed = false;
        int rc = issue_get(x, key, &ii, &existed);
        if (rc != 0) {
            return rc;
        }
        islot_t *sl = &x->b->i[ii];
        stslot_t *st = &x->b->st[si];
        if (!existed || strcmp(sl->is.id, r->issue_id) != 0 ||
            strcmp(sl->is.service, r->service) != 0 ||
            sl->is.last_received_us <= st->st.updated_us) {
            continue;
        }
        st->st.status = AGG_STATUS_UNRESOLVED;
        st->st.updated_us = sl->is.last_received_us;
        tc_strlcpy(st->st.updated_by, "regression", sizeof(st->st.updated_by));
        x->b->st_.issues_regressed++;
        uint8_t *value = NULL;
        size_t vlen = 0;
        char ck[AGG_MAX_SERVICE + AGG_MAX_ENVIRONMENT + AGG_ISSUE_ID_MAX + 16];
        size_t cklen = agg_issue_key(r->service, r->issue_id, ck, sizeof(ck));
        rc = agg_issue_status_rollup_encode(r->service, r->issue_id, &st->st, NULL, &value, &vlen);
        if (rc == 0) {
            rc = add_change(x, ck, cklen, value, vlen);
        }
        /* The change as the latest event would have caused it. */
        agg_event_t ev;
        memset(&ev, 0, sizeof(ev));
        const char *env = sl->is.nenvs ? sl->is.envs[0] : AGG_DEFAULT_ENVIRONMENT;
        const char *rel = sl->is.last_release ? sl->is.last_release : "";
        ev.environment.p = env;
        ev.environment.n = (uint32_t)strlen(env);
        ev.release.p = rel;
        ev.release.n = (uint32_t)strlen(rel);
        ev.level = sl->is.level;
        ev.time_us = sl->is.last_seen_us;
        if (rc == 0) {
            rc = agg_issue_change_encode(&sl->is, TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_REGRESSED,
                                         &ev, NULL, &value, &vlen);
        }
        if (rc == 0) {
            int n =
                snprintf(ck, sizeof(ck), "%s%c%s%c$issue:%s", r->service, 0, env, 0, r->issue_id);
            rc = add_change(x, ck, (size_t)(n > 0 ? n : 0), value, vlen);
        }
        return rc;
    }
    return 0;
}

static int view_status(ctx_t *x, agg_msg_t *m, agg_rollup_t *r)
{
    uint8_t key[STATUS_KEY_LEN];
    tc_be64_put(key, agg_h64(r->service, strlen(r->service)));
    tc_be64_put(key + 8, agg_h64(r->issue_id, strlen(r->issue_id)));
    uint32_t si = 0;
    int rc = status_get(x, key, r->service, r->issue_id, &si);
    if (rc != 0) {
        return rc;
    }
    stslot_t *st = &x->b->st[si];
    if (st->exists && !agg_issue_status_newer(&r->status, &st->st)) {
        m->result = AGG_MSG_COVERED;
        x->b->st_.covered++;
        return 0;
    }
    st->st = r->status;
    st->exists = st->dirty = true;
    m->result = AGG_MSG_APPLIED;
    x->b->st_.view_applied++;
    if (r->status.status == AGG_STATUS_RESOLVED) {
        return regress_late_resolve(x, r, si);
    }
    return 0;
}

static int view_checkpoint(ctx_t *x, agg_msg_t *m, agg_rollup_t *r)
{
    agg_store_t *self = x->self;
    if (strcmp(r->group, self->group) != 0 || strcmp(r->topic, self->events_topic) != 0) {
        m->result = AGG_MSG_IGNORED;
        x->b->st_.ignored++;
        return 0;
    }
    int64_t off = 0, from = 0;
    int rc = agg_part_read(self, x->txn, self->checkpoints, r->topic, (int32_t)r->partition, &off,
                           &from);
    if (rc != 0 && rc != TC_ENOTFOUND) {
        return rc;
    }
    if (rc == 0 && r->offset <= off) {
        m->result = AGG_MSG_COVERED;
        x->b->st_.covered++;
        return 0;
    }
    uint8_t k[PART_KEY_MAX], v[24];
    size_t klen = 0;
    agg_part_key(k, r->topic, (int32_t)r->partition, &klen);
    tc_be64_put(v, (uint64_t)r->offset);
    tc_be64_put(v + 8, (uint64_t)r->dedupe_from);
    tc_be64_put(v + 16, (uint64_t)r->time_us);
    MDB_val key = {klen, k}, val = {24, v};
    int mrc = mdb_put(x->txn, self->checkpoints, &key, &val, 0);
    if (mrc != 0) {
        return mrc;
    }
    m->result = AGG_MSG_APPLIED;
    x->b->st_.view_applied++;
    return 0;
}

/* True when a rollup's producer (field 1, first as protobuf-c packs it) is this process. */
static bool own_rollup(const agg_msg_t *m, const char *self)
{
    if (!self || !*self) {
        return false;
    }
    const uint8_t *p = m->value;
    size_t n = strlen(self);
    if (m->len < 2 + n || n > 127 || p[0] != 0x0a || p[1] != n) {
        return false;
    }
    return memcmp(p + 2, self, n) == 0;
}

static int apply_rollup(ctx_t *x, agg_msg_t *m)
{
    struct batch *b = x->b;
    m->reason = NULL;
    pslot_t *p = NULL;
    int rc = part_get(x, x->c->rollups_topic, m->partition, RING_NONE, &p);
    if (rc != 0) {
        return rc;
    }
    if (p->next >= 0 && m->offset < p->next) {
        m->result = AGG_MSG_STALE;
        b->st_.stale++;
        return 0;
    }
    p->next = m->offset + 1;
    p->dirty = true;
    if (own_rollup(m, x->c->self_producer)) {
        m->result = AGG_MSG_COVERED;
        b->st_.covered++;
        return 0;
    }
    if (!b->rollup_init) {
        agg_rollup_init(&b->rollup);
        b->rollup_init = true;
    }
    agg_rollup_t *r = &b->rollup;
    const char *why = NULL;
    if (agg_rollup_decode(m->value, m->len, r, &why) != 0) {
        m->result = AGG_MSG_INVALID;
        m->reason = why ? why : "rollup";
        b->st_.invalid++;
        return 0;
    }
    switch (r->body) {
    case AGG_ROLLUP_BUCKET:
        return view_bucket(x, m, r);
    case AGG_ROLLUP_ISSUE:
        return view_issue(x, m, r);
    case AGG_ROLLUP_STATUS:
        return view_status(x, m, r);
    case AGG_ROLLUP_CHECKPOINT:
        return view_checkpoint(x, m, r);
    default:
        m->result = AGG_MSG_IGNORED;
        b->st_.ignored++;
        return 0;
    }
}

/* Stores one log event of a record of topic.logs; *out says what became of it. */
static int store_log(ctx_t *x, const agg_msg_t *m, pslot_t *p, const ent_t *e, uint32_t index,
                     agg_msg_result_t *out, const char **why)
{
    agg_store_t *self = x->self;
    struct batch *b = x->b;
    agg_event_t ev;
    if (agg_wire_scan(e->p, e->n, &ev, why) != 0) {
        if (!*why) {
            *why = "event";
        }
        *out = AGG_MSG_INVALID;
        b->st_.invalid++;
        return 0;
    }
    int64_t arrival = received(&ev, x->c->now_us);
    if (arrival > p->recv_max) {
        p->recv_max = arrival;
    }
    if (ev.body != AGG_BODY_LOG) {
        *out = AGG_MSG_IGNORED;
        b->st_.ignored++;
        return 0;
    }
    bool dup = false;
    int rc = dedupe(x, ev.event_id, arrival, &dup);
    if (rc != 0) {
        return rc;
    }
    if (dup) {
        *out = AGG_MSG_DUPLICATE;
        b->st_.duplicates++;
        return 0;
    }
    Tocsin__V1__Event *full = agg_wire_unpack(e->p, e->n);
    uint8_t *value = NULL;
    size_t vlen = 0;
    rc = full ? agg_log_encode(full, &value, &vlen) : TC_ENOMEM;
    if (full) {
        tocsin__v1__event__free_unpacked(full, NULL);
    }
    if (rc != 0) {
        return rc;
    }
    uint64_t hsvc = agg_h64(ev.service.p, ev.service.n);
    uint8_t k[LOG_KEY_LEN], tk[LOG_TIME_KEY_LEN], tv[12];
    tc_be64_put(k, hsvc);
    tc_be64_put(k + 8, agg_biased(ev.time_us));
    tc_be32_put(k + 16, (uint32_t)m->partition);
    tc_be64_put(k + 20, (uint64_t)m->offset);
    tc_be32_put(k + 28, index);
    memcpy(tk, k + 8, LOG_TIME_KEY_LEN);
    tc_be64_put(tv, hsvc);
    tc_be32_put(tv + 8, (uint32_t)vlen);
    MDB_val key = {LOG_KEY_LEN, k}, val = {vlen, value};
    MDB_val tkey = {LOG_TIME_KEY_LEN, tk}, tval = {12, tv};
    int mrc = mdb_put(x->txn, self->logs, &key, &val, 0);
    if (mrc == 0) {
        mrc = mdb_put(x->txn, self->logs_time, &tkey, &tval, 0);
    }
    free(value);
    if (mrc != 0) {
        return mrc;
    }
    b->logs_bytes_delta += vlen + LOG_KEY_LEN + LOG_TIME_KEY_LEN + 12;
    *out = AGG_MSG_APPLIED;
    b->st_.logs_stored++;
    return 0;
}

static int apply_log(ctx_t *x, agg_msg_t *m)
{
    struct batch *b = x->b;
    m->reason = NULL;
    m->events = 0;
    pslot_t *p = NULL;
    int rc = part_get(x, x->c->logs_topic, m->partition, RING_LOGS, &p);
    if (rc != 0) {
        return rc;
    }
    size_t n = 0;
    const char *why = NULL;
    int erc = record_events(b, m, &n, &why);
    if (erc == TC_ENOMEM) {
        return erc;
    }
    m->events = (uint32_t)n;
    if (p->next >= 0 && m->offset < p->next) {
        m->result = AGG_MSG_STALE;
        b->st_.stale += n;
        return erc == 0 ? refill(x, p, n) : 0;
    }
    p->next = m->offset + 1;
    p->dirty = true;
    if (p->first_offset < 0) {
        p->first_offset = m->offset;
    }
    if (erc != 0) {
        m->result = AGG_MSG_INVALID;
        m->reason = why;
        b->st_.invalid++;
        b->st_.unreadable++;
        return 0;
    }
    bool refused = false, applied = false;
    for (size_t i = 0; i < n; i++) {
        agg_msg_result_t r = AGG_MSG_APPLIED;
        const char *reason = NULL;
        rc = store_log(x, m, p, &b->ents[i], (uint32_t)i, &r, &reason);
        if (rc != 0) {
            return rc;
        }
        note(m, r, reason, &refused, &applied);
    }
    return 0;
}

/* ---- delivered states --------------------------------------------------------------------------
 */

static int clear_delivered(ctx_t *x)
{
    agg_store_t *self = x->self;
    for (size_t i = 0; i < x->c->ndelivered; i++) {
        const agg_owed_ref_t *r = &x->c->delivered[i];
        MDB_val k = {r->klen, (void *)r->key}, v;
        int mrc = mdb_get(x->txn, self->owed, &k, &v);
        if (mrc == MDB_NOTFOUND) {
            continue;
        }
        if (mrc != 0) {
            return mrc;
        }
        if (v.mv_size != OWED_VALUE_LEN) {
            mrc = mdb_del(x->txn, self->owed, &k, NULL);
            if (mrc != 0) {
                return mrc;
            }
            continue;
        }
        int64_t t = (int64_t)tc_be64_get(v.mv_data);
        int64_t first = (int64_t)tc_be64_get((const uint8_t *)v.mv_data + 8);
        bool is_bucket = r->klen > 0 && r->key[0] == OWED_BUCKET;
        uint8_t nv[OWED_VALUE_LEN];
        if (r->source_offset >= t) {
            /* Everything the mark held is delivered. A bucket stays until it was published
             * closed, so that its final revision goes out. */
            if (!is_bucket || r->closed) {
                mrc = mdb_del(x->txn, self->owed, &k, NULL);
                x->b->st_.owed_cleared++;
            } else {
                tc_be64_put(nv, (uint64_t)t);
                tc_be64_put(nv + 8, 0);
                MDB_val val = {OWED_VALUE_LEN, nv};
                mrc = mdb_put(x->txn, self->owed, &k, &val, 0);
            }
        } else {
            /* Changes below the delivered offset are out; later ones (at offsets from
             * source_offset on, stored plus one) are still owed. */
            tc_be64_put(nv, (uint64_t)t);
            tc_be64_put(nv + 8,
                        (uint64_t)(first > r->source_offset + 1 ? first : r->source_offset + 1));
            MDB_val val = {OWED_VALUE_LEN, nv};
            mrc = mdb_put(x->txn, self->owed, &k, &val, 0);
        }
        if (mrc != 0) {
            return mrc;
        }
    }
    for (size_t i = 0; i < x->c->nchanges_done; i++) {
        uint8_t kb[8];
        tc_be64_put(kb, x->c->changes_done[i]);
        MDB_val k = {8, kb};
        int mrc = mdb_del(x->txn, self->changes, &k, NULL);
        if (mrc != 0 && mrc != MDB_NOTFOUND) {
            return mrc;
        }
    }
    return 0;
}

/* ---- writing back ------------------------------------------------------------------------------
 */

static int mark_owed(ctx_t *x, uint8_t type, const uint8_t *key, size_t klen, int64_t t,
                     int64_t first_change)
{
    uint8_t k[AGG_OWED_KEY_MAX], v[OWED_VALUE_LEN];
    k[0] = type;
    memcpy(k + 1, key, klen);
    MDB_val mk = {klen + 1, k}, mv;
    int64_t first = first_change;
    int mrc = mdb_get(x->txn, x->self->owed, &mk, &mv);
    if (mrc == 0 && mv.mv_size == OWED_VALUE_LEN) {
        int64_t old = (int64_t)tc_be64_get((const uint8_t *)mv.mv_data + 8);
        if (old > 0 && old < first) {
            first = old;
        }
    } else if (mrc != 0 && mrc != MDB_NOTFOUND) {
        return mrc;
    }
    tc_be64_put(v, (uint64_t)t);
    tc_be64_put(v + 8, (uint64_t)first);
    mv.mv_size = OWED_VALUE_LEN;
    mv.mv_data = v;
    return mdb_put(x->txn, x->self->owed, &mk, &mv, 0);
}

static int cmp_prefix(const void *a, const void *b)
{
    return memcmp(a, b, BUCKET_KEY_LEN - 4);
}

/* Recomputes the AGG_PART_ALL_MINUTE entry of the minute `p` (service, name, minute start,
 * environment) from that minute's AGG_PART_ALL entries. Returns 0 or an LMDB code (ENOMEM). */
static int write_minute_total(ctx_t *x, const uint8_t *p, agg_bucket_t *acc)
{
    const size_t plen = BUCKET_KEY_LEN - 4;
    uint8_t key[BUCKET_KEY_LEN];
    memcpy(key, p, plen);
    tc_be64_put(key + 8, agg_h64(TOTAL_NAME, sizeof(TOTAL_NAME) - 1));
    agg_bucket_reset(acc);
    bool any = false;
    tc_be32_put(key + plen, AGG_PART_ALL_MINUTE);
    int rc = fill_minute(x, key, acc, &any);
    if (rc != 0) {
        return rc == TC_ENOMEM ? ENOMEM : rc;
    }
    MDB_val mk = {BUCKET_KEY_LEN, key};
    if (!any) {
        int mrc = mdb_del(x->txn, x->self->buckets, &mk, NULL);
        return mrc == MDB_NOTFOUND ? 0 : mrc;
    }
    acc->width_s = AGG_ROLLUP_WIDTH_S;
    MDB_val mv = {agg_bucket_store_size(acc), NULL};
    int mrc = mdb_put(x->txn, x->self->buckets, &mk, &mv, MDB_RESERVE);
    if (mrc == 0) {
        agg_bucket_store_encode(acc, mv.mv_data);
    }
    return mrc;
}

/* Recomputes the 10 s request total of a service (key prefix `p`: service, TOTAL_NAME,
 * start, environment) from the buckets of its routes, every source partition. Returns 0 or
 * an LMDB code (ENOMEM). */
static int recompute_total(ctx_t *x, const uint8_t *p, agg_bucket_t *acc)
{
    agg_store_t *self = x->self;
    const size_t plen = BUCKET_KEY_LEN - 4;
    const uint64_t hsn = agg_h64(AGG_SERVICE_NAME, sizeof(AGG_SERVICE_NAME) - 1);
    const uint64_t htn = agg_h64(TOTAL_NAME, sizeof(TOTAL_NAME) - 1);
    uint64_t henv = tc_be64_get(p + 24);
    agg_bucket_reset(acc);
    bool any = false;
    MDB_cursor *sc = NULL, *bc = NULL;
    int mrc = mdb_cursor_open(x->txn, self->series, &sc);
    if (mrc == 0) {
        mrc = mdb_cursor_open(x->txn, self->buckets, &bc);
    }
    MDB_val sk = {8, (void *)p}, sv;
    int src = mrc == 0 ? mdb_cursor_get(sc, &sk, &sv, MDB_SET_RANGE) : mrc;
    for (; src == 0; src = mdb_cursor_get(sc, &sk, &sv, MDB_NEXT)) {
        const uint8_t *k = sk.mv_data;
        if (sk.mv_size != SERIES_KEY_LEN || memcmp(k, p, 8) != 0) {
            break;
        }
        uint64_t hname = tc_be64_get(k + 8);
        const uint8_t *v = sv.mv_data;
        if (tc_be64_get(k + 16) != henv || hname == hsn || hname == htn ||
            sv.mv_size < SERIES_HEADER_LEN || v[1] != AGG_KIND_REQUESTS) {
            continue;
        }
        uint8_t lo[BUCKET_KEY_LEN];
        memcpy(lo, p, plen);
        tc_be64_put(lo + 8, hname);
        tc_be32_put(lo + plen, 0);
        MDB_val bk = {BUCKET_KEY_LEN, lo}, bv;
        int brc = mdb_cursor_get(bc, &bk, &bv, MDB_SET_RANGE);
        for (; brc == 0; brc = mdb_cursor_get(bc, &bk, &bv, MDB_NEXT)) {
            const uint8_t *kd = bk.mv_data;
            if (bk.mv_size != BUCKET_KEY_LEN || memcmp(kd, lo, plen) != 0) {
                break;
            }
            int rc = any ? agg_bucket_store_merge(acc, bv.mv_data, bv.mv_size)
                         : agg_bucket_store_decode(bv.mv_data, bv.mv_size, acc);
            if (rc == TC_ENOMEM) {
                brc = ENOMEM;
                break;
            }
            if (rc != 0) {
                x->b->st_.corrupt++;
                continue;
            }
            any = true;
        }
        if (brc != 0 && brc != MDB_NOTFOUND) {
            src = brc;
            break;
        }
    }
    if (src != 0 && src != MDB_NOTFOUND) {
        mrc = src;
    }
    if (bc) {
        mdb_cursor_close(bc);
    }
    if (sc) {
        mdb_cursor_close(sc);
    }
    if (mrc != 0) {
        return mrc;
    }
    uint8_t key[BUCKET_KEY_LEN];
    memcpy(key, p, plen);
    tc_be32_put(key + plen, AGG_PART_ALL);
    MDB_val ak = {BUCKET_KEY_LEN, key};
    if (!any) {
        mrc = mdb_del(x->txn, self->buckets, &ak, NULL);
        return mrc == MDB_NOTFOUND ? 0 : mrc;
    }
    acc->width_s = AGG_BUCKET_WIDTH_S;
    MDB_val av = {agg_bucket_store_size(acc), NULL};
    mrc = mdb_put(x->txn, self->buckets, &ak, &av, MDB_RESERVE);
    if (mrc == 0) {
        agg_bucket_store_encode(acc, av.mv_data);
    }
    return mrc;
}

/*
 * After the buckets were written: the request totals of the (service, start, environment)
 * whose route buckets a view state replaced in this batch are recomputed from the routes'
 * buckets (a state replaces another, so the totals cannot just add it), then their minute
 * totals. The owners' events were added to the totals as they were applied. A corrupt stored
 * value is left out and counted.
 */
static int write_service_totals(ctx_t *x)
{
    struct batch *b = x->b;
    const size_t plen = BUCKET_KEY_LEN - 4; /* service, name, start, environment */
    const uint64_t hsn = agg_h64(AGG_SERVICE_NAME, sizeof(AGG_SERVICE_NAME) - 1);
    const uint64_t htn = agg_h64(TOTAL_NAME, sizeof(TOTAL_NAME) - 1);
    size_t n = 0;
    for (size_t i = 0; i < b->nb; i++) {
        n += b->b[i].viewed;
    }
    if (n == 0) {
        return 0;
    }
    uint8_t *pre = malloc(n * plen);
    if (!pre) {
        return TC_ENOMEM;
    }
    n = 0;
    for (size_t i = 0; i < b->nb; i++) {
        const bslot_t *sl = &b->b[i];
        uint64_t hname = tc_be64_get(sl->key + 8);
        if (!sl->viewed || sl->series >= b->ns || b->s[sl->series].kind != AGG_KIND_REQUESTS ||
            hname == hsn || hname == htn) {
            continue;
        }
        uint8_t *p = pre + n++ * plen;
        memcpy(p, sl->key, plen);
        tc_be64_put(p + 8, htn);
        /* The totals' series row, for a view that applies no event of the service. */
        static const agg_str_t name = {AGG_SERVICE_NAME, sizeof(AGG_SERVICE_NAME) - 1};
        agg_str_t svc = b->s[sl->series].service, env = b->s[sl->series].environment;
        int64_t start = agg_unbiased(tc_be64_get(sl->key + 16));
        uint32_t si = 0;
        int rc = series_get(x, svc, env, name, AGG_KIND_REQUESTS, &si);
        if (rc != 0) {
            free(pre);
            return rc;
        }
        if (!b->s[si].conflict) {
            series_touch(x, si, start);
        }
    }
    qsort(pre, n, plen, cmp_prefix);
    agg_bucket_t acc;
    agg_bucket_init(&acc);
    int mrc = 0;
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        const uint8_t *p = pre + i * plen;
        if (i == 0 || memcmp(p, p - plen, plen) != 0) {
            mrc = recompute_total(x, p, &acc);
        }
    }
    /* Then the minutes they belong to. */
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = pre + i * plen;
        int64_t start = agg_unbiased(tc_be64_get(p + 16));
        tc_be64_put(p + 16, agg_biased(agg_bucket_align(start * 1000000, AGG_ROLLUP_WIDTH_S)));
    }
    qsort(pre, n, plen, cmp_prefix);
    for (size_t i = 0; mrc == 0 && i < n; i++) {
        const uint8_t *p = pre + i * plen;
        if (i == 0 || memcmp(p, p - plen, plen) != 0) {
            mrc = write_minute_total(x, p, &acc);
        }
    }
    agg_bucket_fini(&acc);
    free(pre);
    return mrc == ENOMEM ? TC_ENOMEM : mrc;
}

/* Writes the batch's changed series rows (once: a written row is no longer dirty). */
static int write_series(ctx_t *x)
{
    struct batch *b = x->b;
    for (size_t i = 0; i < b->ns; i++) {
        sslot_t *sl = &b->s[i];
        if (!sl->dirty || sl->conflict || sl->first_s > sl->last_s) {
            continue;
        }
        uint8_t buf[SERIES_VALUE_MAX];
        MDB_val k = {SERIES_KEY_LEN, sl->key};
        MDB_val v = {agg_series_encode(buf, sl->kind, sl->first_s, sl->last_s, sl->service,
                                       sl->environment, sl->name),
                     buf};
        int mrc = mdb_put(x->txn, x->self->series, &k, &v, 0);
        if (mrc != 0) {
            return mrc;
        }
        sl->dirty = false;
    }
    return 0;
}

static int write_results(ctx_t *x)
{
    agg_store_t *self = x->self;
    struct batch *b = x->b;
    for (size_t i = 0; i < b->nb; i++) {
        bslot_t *sl = &b->b[i];
        if (!sl->dirty) {
            continue;
        }
        size_t n = agg_bucket_store_size(&sl->b);
        if (n > b->enc_cap) {
            uint8_t *e = realloc(b->enc, n);
            if (!e) {
                return TC_ENOMEM;
            }
            b->enc = e;
            b->enc_cap = n;
        }
        n = agg_bucket_store_encode(&sl->b, b->enc);
        MDB_val k = {BUCKET_KEY_LEN, sl->key}, v = {n, b->enc};
        int mrc = mdb_put(x->txn, self->buckets, &k, &v, 0);
        if (mrc == 0 && sl->owned) {
            mrc = mark_owed(x, OWED_BUCKET, sl->key, BUCKET_KEY_LEN, sl->b.source_offset,
                            sl->first_change);
        }
        if (mrc != 0) {
            return mrc;
        }
        b->st_.states_written++;
    }
    /* The series rows, then the totals (which read them and may add their own row). */
    int trc = write_series(x);
    if (trc == 0) {
        trc = write_service_totals(x);
    }
    if (trc == 0) {
        trc = write_series(x);
    }
    if (trc != 0) {
        return trc;
    }
    for (size_t i = 0; i < b->ni; i++) {
        islot_t *sl = &b->i[i];
        if (!sl->dirty || !sl->is.id) {
            continue;
        }
        uint8_t *buf = NULL;
        size_t n = 0;
        int rc = agg_issue_encode(&sl->is, &buf, &n);
        if (rc != 0) {
            return rc;
        }
        MDB_val k = {ISSUE_KEY_LEN, sl->key}, v = {n, buf};
        int mrc = mdb_put(x->txn, self->issues, &k, &v, 0);
        free(buf);
        if (mrc == 0) {
            uint8_t ik[INDEX_KEY_LEN];
            memcpy(ik, sl->key + 8, 8);
            memcpy(ik + 8, sl->key, 8);
            MDB_val ikv = {INDEX_KEY_LEN, ik}, empty = {0, NULL};
            mrc = mdb_put(x->txn, self->issue_index, &ikv, &empty, 0);
        }
        if (mrc == 0 && sl->owned) {
            mrc = mark_owed(x, OWED_ISSUE, sl->key, ISSUE_KEY_LEN, sl->is.source_offset,
                            sl->first_change);
        }
        if (mrc != 0) {
            return mrc;
        }
        b->st_.states_written++;
    }
    for (size_t i = 0; i < b->nst; i++) {
        stslot_t *sl = &b->st[i];
        if (!sl->dirty) {
            continue;
        }
        uint8_t buf[STATUS_VALUE_MAX];
        MDB_val k = {STATUS_KEY_LEN, sl->key};
        MDB_val v = {agg_status_encode(buf, &sl->st, sl->service, sl->id), buf};
        int mrc = mdb_put(x->txn, self->status, &k, &v, 0);
        if (mrc != 0) {
            return mrc;
        }
    }
    for (size_t i = 0; i < b->nchanges; i++) {
        change_t *ch = &b->changes[i];
        int mrc = agg_change_put(self, x->txn, ch->key, ch->klen, ch->value, ch->vlen);
        if (mrc != 0) {
            return mrc;
        }
    }
    for (size_t i = 0; i < b->nparts; i++) {
        pslot_t *p = &b->parts[i];
        if (!p->dirty) {
            continue;
        }
        int64_t from = p->dedupe_from;
        if (p->ring != RING_NONE) {
            /* The dedupe window begins after the last batch start whose earlier records were
             * all received before the window's start. */
            part_ring_t *ring = agg_ring_get(self, p->ring, p->partition);
            if (!ring) {
                return TC_ENOMEM;
            }
            int64_t cutoff_us = p->recv_max - self->dedupe_window_us;
            for (size_t k = 0; k < ring->n; k++) {
                if (ring->max_recv[k] < cutoff_us && ring->offset[k] > from) {
                    from = ring->offset[k];
                }
            }
            if (p->first_offset >= 0 && p->recv_before < cutoff_us && p->first_offset > from) {
                from = p->first_offset;
            }
            if (from > p->next) {
                from = p->next;
            }
        } else {
            from = p->next;
        }
        uint8_t k[PART_KEY_MAX], v[16];
        size_t klen = 0;
        if (agg_part_key(k, p->topic, p->partition, &klen) != 0) {
            return TC_EINVAL;
        }
        tc_be64_put(v, (uint64_t)p->next);
        tc_be64_put(v + 8, (uint64_t)(from < 0 ? 0 : from));
        MDB_val key = {klen, k}, val = {16, v};
        int mrc = mdb_put(x->txn, self->parts, &key, &val, 0);
        if (mrc != 0) {
            return mrc;
        }
        p->dedupe_from = from;
    }
    if (b->logs_bytes_delta) {
        uint8_t v[8];
        tc_be64_put(v, atomic_load(&self->logs_bytes) + b->logs_bytes_delta);
        MDB_val k = {10, "logs_bytes"}, val = {8, v};
        int mrc = mdb_put(x->txn, self->meta, &k, &val, 0);
        if (mrc != 0) {
            return mrc;
        }
    }
    return 0;
}

static int commit_txn(MDB_txn *txn, void *arg)
{
    ctx_t *x = arg;
    x->txn = txn;
    batch_reset(x->b);
    /* A run before this one (the map grew) taught the dedupe set what this one will. */
    agg_dedupe_rollback(x->self->dedupe);
    agg_commit_t *c = x->c;
    int rc = clear_delivered(x);
    for (size_t i = 0; rc == 0 && i < c->nevents; i++) {
        rc = apply_event(x, &c->events[i]);
    }
    for (size_t i = 0; rc == 0 && i < c->nrollups; i++) {
        rc = apply_rollup(x, &c->rollups[i]);
    }
    for (size_t i = 0; rc == 0 && i < c->nlogs; i++) {
        rc = apply_log(x, &c->logs[i]);
    }
    if (rc == 0) {
        rc = write_results(x);
    }
    return agg_lmdb_result(rc);
}

/* After a commit: the rings learn where this batch began. */
static void rings_update(agg_store_t *self, struct batch *b)
{
    for (size_t i = 0; i < b->nparts; i++) {
        pslot_t *p = &b->parts[i];
        if (p->ring == RING_NONE) {
            continue;
        }
        part_ring_t *ring = agg_ring_get(self, p->ring, p->partition);
        if (!ring) {
            continue;
        }
        ring->dedupe_from = p->dedupe_from;
        if (p->first_offset >= 0) {
            if (ring->n == RING_MAX) {
                /* Keep every other entry: coarser, still a valid bound. */
                size_t k = 0;
                for (size_t j = 0; j < ring->n; j += 2) {
                    ring->offset[k] = ring->offset[j];
                    ring->max_recv[k] = ring->max_recv[j];
                    k++;
                }
                ring->n = k;
            }
            ring->offset[ring->n] = p->first_offset;
            ring->max_recv[ring->n] = p->recv_before;
            ring->n++;
        }
        if (p->recv_max > ring->recv_seen) {
            ring->recv_seen = p->recv_max;
        }
        /* Entries wholly before the window start are not needed any more. */
        size_t drop = 0;
        while (drop + 1 < ring->n && ring->offset[drop + 1] <= ring->dedupe_from) {
            drop++;
        }
        if (drop) {
            memmove(ring->offset, ring->offset + drop, (ring->n - drop) * sizeof(int64_t));
            memmove(ring->max_recv, ring->max_recv + drop, (ring->n - drop) * sizeof(int64_t));
            ring->n -= drop;
        }
    }
}

int agg_store_commit(agg_store_t *self, agg_commit_t *c, agg_batch_stats_t *stats)
{
    assert(self && c);
    if (!self->batch) {
        self->batch = calloc(1, sizeof(*self->batch));
        if (!self->batch) {
            return TC_ENOMEM;
        }
    }
    ctx_t x = {self, c, self->batch, NULL};
    x.b->now_us = c->now_us;
    agg_dedupe_begin(self->dedupe);
    int rc = agg_store_write(self, commit_txn, &x);
    if (rc == 0) {
        agg_dedupe_commit(self->dedupe);
    } else {
        agg_dedupe_rollback(self->dedupe);
        agg_dedupe_commit(self->dedupe);
    }
    if (rc == 0) {
        atomic_fetch_add(&self->logs_bytes, x.b->logs_bytes_delta);
        rings_update(self, x.b);
        if (stats) {
            *stats = x.b->st_;
        }
    }
    batch_reset(x.b);
    return rc;
}
