#include "agg_dedupe.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "tc_error.h"

#define ID_LEN 16
#define MIN_CAP 1024
#define HISTO_BINS 64

typedef struct {
    uint8_t id[ID_LEN];
    uint32_t t; /* receive time in seconds; 0 marks an empty slot */
} entry_t;

/* One journaled change: `id` was added (old_t 0) or had its time refreshed from old_t. */
typedef struct {
    uint8_t id[ID_LEN];
    uint32_t old_t;
} undo_t;

struct agg_dedupe {
    entry_t *slots;
    size_t cap; /* a power of two */
    size_t n;
    size_t max_ids;
    uint32_t window_s;
    uint32_t latest;
    uint64_t seed;
    uint64_t evicted;
    /* the journal (see agg_dedupe_begin) */
    bool journaling;
    uint32_t latest_before;
    undo_t *undo;
    size_t nundo, capundo;
};

/*
 * A zeroed slot table of `cap` entries (free with free). A table of millions of ids is probed
 * at random, one TLB miss per probe with 4 KiB pages: a table of 2 MiB or more is asked for
 * transparent huge pages (a hint; where the kernel does not give them, nothing changes).
 */
static entry_t *slots_new(size_t cap)
{
    const size_t huge = 2u << 20;
    size_t bytes = cap * sizeof(entry_t);
    if (bytes < huge) {
        return calloc(cap, sizeof(entry_t));
    }
    bytes = (bytes + huge - 1) & ~(huge - 1);
    entry_t *p = aligned_alloc(huge, bytes);
    if (!p) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
    memset(p, 0, bytes);
    return p;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = MIN_CAP;
    while (c < n) {
        c *= 2;
    }
    return c;
}

agg_dedupe_t *agg_dedupe_new(int64_t window_s, size_t max_ids, uint64_t seed)
{
    agg_dedupe_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->cap = MIN_CAP;
    self->slots = slots_new(self->cap);
    if (!self->slots) {
        free(self);
        return NULL;
    }
    self->window_s =
        window_s < 1 ? 1 : (window_s > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)window_s);
    self->max_ids = max_ids < MIN_CAP ? MIN_CAP : max_ids;
    self->seed = seed;
    return self;
}

void agg_dedupe_destroy(agg_dedupe_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->undo);
        free((*self_p)->slots);
        free(*self_p);
        *self_p = NULL;
    }
}

static size_t home(const agg_dedupe_t *self, const uint8_t *id)
{
    return (size_t)XXH3_64bits_withSeed(id, ID_LEN, self->seed) & (self->cap - 1);
}

static uint32_t cutoff(const agg_dedupe_t *self)
{
    return self->latest > self->window_s ? self->latest - self->window_s : 0;
}

/*
 * Rebuilds the table without the expired ids. When more than max_ids * 3/4 would stay,
 * the cutoff moves forward (by a histogram of the kept times) so that the oldest go first.
 */
static int rebuild(agg_dedupe_t *self)
{
    uint32_t cut = cutoff(self);
    size_t keep = 0;
    size_t histo[HISTO_BINS] = {0};
    uint32_t span = self->latest - cut + 1;
    for (size_t i = 0; i < self->cap; i++) {
        uint32_t t = self->slots[i].t;
        if (t && t >= cut) {
            keep++;
            histo[(uint64_t)(t - cut) * HISTO_BINS / span]++;
        }
    }
    size_t limit = self->max_ids * 3 / 4;
    if (keep > limit) {
        size_t dropped = 0;
        int bin = 0;
        while (bin < HISTO_BINS - 1 && keep - dropped > limit) {
            dropped += histo[bin++];
        }
        cut += (uint32_t)((uint64_t)bin * span / HISTO_BINS);
        keep -= dropped;
    }
    size_t cap = pow2_at_least(keep * 2 + 2);
    entry_t *slots = slots_new(cap);
    if (!slots) {
        return TC_ENOMEM;
    }
    size_t evicted = 0, n = 0;
    for (size_t i = 0; i < self->cap; i++) {
        const entry_t *e = &self->slots[i];
        if (!e->t) {
            continue;
        }
        if (e->t < cut) {
            if (e->t >= cutoff(self)) {
                evicted++;
            }
            continue;
        }
        size_t j = (size_t)XXH3_64bits_withSeed(e->id, ID_LEN, self->seed) & (cap - 1);
        while (slots[j].t) {
            j = (j + 1) & (cap - 1);
        }
        slots[j] = *e;
        n++;
    }
    free(self->slots);
    self->slots = slots;
    self->cap = cap;
    self->n = n;
    self->evicted += evicted;
    return 0;
}

/* Journals a change (while journaling). Returns 0, or TC_ENOMEM: the change must not be made. */
static int journal(agg_dedupe_t *self, const uint8_t *id, uint32_t old_t)
{
    if (!self->journaling) {
        return 0;
    }
    if (self->nundo == self->capundo) {
        size_t cap = self->capundo ? self->capundo * 2 : 4096;
        undo_t *p = realloc(self->undo, cap * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->undo = p;
        self->capundo = cap;
    }
    memcpy(self->undo[self->nundo].id, id, ID_LEN);
    self->undo[self->nundo].old_t = old_t;
    self->nundo++;
    return 0;
}

int agg_dedupe_check(agg_dedupe_t *self, const uint8_t *id, int64_t t_us)
{
    int64_t s = t_us / 1000000;
    uint32_t t = s < 1 ? 1 : (s > UINT32_MAX ? UINT32_MAX : (uint32_t)s);
    if (t > self->latest) {
        self->latest = t;
    }
    uint32_t cut = cutoff(self);
    size_t i = home(self, id);
    while (self->slots[i].t) {
        entry_t *e = &self->slots[i];
        if (memcmp(e->id, id, ID_LEN) == 0) {
            if (e->t >= cut) {
                return 1;
            }
            if (journal(self, id, e->t) != 0) {
                return TC_ENOMEM;
            }
            e->t = t; /* seen long ago: counts as new */
            return 0;
        }
        i = (i + 1) & (self->cap - 1);
    }
    if (journal(self, id, 0) != 0) {
        return TC_ENOMEM;
    }
    if ((self->n + 1) * 10 > self->cap * 7) {
        int rc = rebuild(self);
        if (rc != 0) {
            return rc;
        }
        i = home(self, id);
        while (self->slots[i].t) {
            i = (i + 1) & (self->cap - 1);
        }
    }
    memcpy(self->slots[i].id, id, ID_LEN);
    self->slots[i].t = t;
    self->n++;
    return 0;
}

void agg_dedupe_begin(agg_dedupe_t *self)
{
    if (!self->journaling) {
        self->journaling = true;
        self->nundo = 0;
        self->latest_before = self->latest;
    }
}

void agg_dedupe_commit(agg_dedupe_t *self)
{
    self->journaling = false;
    self->nundo = 0;
}

/* Removes `id` (when held), moving later entries of its probe run back so that every id
 * stays reachable from its home slot (backward-shift deletion). */
static void remove_id(agg_dedupe_t *self, const uint8_t *id)
{
    size_t mask = self->cap - 1;
    size_t i = home(self, id);
    while (self->slots[i].t && memcmp(self->slots[i].id, id, ID_LEN) != 0) {
        i = (i + 1) & mask;
    }
    if (!self->slots[i].t) {
        return;
    }
    self->slots[i].t = 0;
    self->n--;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!self->slots[j].t) {
            return;
        }
        size_t h = home(self, self->slots[j].id);
        /* The entry at j may move to the hole at i when its home is not in (i, j]. */
        bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
        if (!stays) {
            self->slots[i] = self->slots[j];
            self->slots[j].t = 0;
            i = j;
        }
    }
}

void agg_dedupe_rollback(agg_dedupe_t *self)
{
    if (!self->journaling) {
        return;
    }
    while (self->nundo > 0) {
        const undo_t *u = &self->undo[--self->nundo];
        if (u->old_t == 0) {
            remove_id(self, u->id);
            continue;
        }
        size_t i = home(self, u->id);
        while (self->slots[i].t) {
            if (memcmp(self->slots[i].id, u->id, ID_LEN) == 0) {
                self->slots[i].t = u->old_t;
                break;
            }
            i = (i + 1) & (self->cap - 1);
        }
    }
    self->latest = self->latest_before;
}

void agg_dedupe_prefetch(const agg_dedupe_t *self, const uint8_t *id)
{
    __builtin_prefetch(&self->slots[home(self, id)]);
}

size_t agg_dedupe_size(const agg_dedupe_t *self)
{
    return self->n;
}

uint64_t agg_dedupe_evicted(const agg_dedupe_t *self)
{
    return self->evicted;
}

size_t agg_dedupe_bytes(const agg_dedupe_t *self)
{
    return self->cap * sizeof(entry_t);
}
