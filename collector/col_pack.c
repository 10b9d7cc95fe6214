#include "col_pack.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "tc_error.h"

#define NONE UINT32_MAX

/* One event: where its bytes are in `bytes`, its group, the next event of that group. */
typedef struct {
    size_t off;
    uint32_t len;
    uint32_t next;
} event_t;

/* One (topic, key): where its key is in `keys`, its first and last event. */
typedef struct {
    uint64_t hash;
    size_t key_off;
    uint32_t key_len;
    col_topic_t topic;
    uint32_t first;
    uint32_t last;
} group_t;

struct col_packer {
    size_t max_value;
    uint8_t *bytes; /* the events' bytes, back to back */
    size_t nbytes, capbytes;
    uint8_t *keys; /* the groups' keys, back to back */
    size_t nkeys, capkeys;
    event_t *events;
    size_t nevents, capevents;
    group_t *groups;
    size_t ngroups, capgroups;
    uint32_t *slots; /* group number + 1 by key hash, 0 empty; a power of two */
    size_t capslots;
};

col_packer_t *col_packer_new(size_t max_value_bytes)
{
    if (max_value_bytes < COL_PACK_MIN_BYTES || max_value_bytes > COL_PACK_MAX_BYTES) {
        return NULL;
    }
    col_packer_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->max_value = max_value_bytes;
    self->capslots = 64;
    self->slots = calloc(self->capslots, sizeof(*self->slots));
    if (!self->slots) {
        free(self);
        return NULL;
    }
    return self;
}

void col_packer_destroy(col_packer_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    col_packer_t *self = *self_p;
    free(self->bytes);
    free(self->keys);
    free(self->events);
    free(self->groups);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

void col_packer_reset(col_packer_t *self)
{
    assert(self);
    /* Only the slots a group took need clearing; there are few groups per batch. */
    for (size_t g = 0; g < self->ngroups; g++) {
        size_t i = (size_t)self->groups[g].hash & (self->capslots - 1);
        while (self->slots[i]) {
            self->slots[i] = 0;
            i = (i + 1) & (self->capslots - 1);
        }
    }
    self->nbytes = self->nkeys = self->nevents = self->ngroups = 0;
}

size_t col_packer_events(const col_packer_t *self)
{
    return self->nevents;
}

size_t col_packer_groups(const col_packer_t *self)
{
    return self->ngroups;
}

/* Room for `n` more elements of `size` bytes in *arr (holding *len of *cap). */
static int room(void **arr, size_t *cap, size_t len, size_t n, size_t size, size_t first)
{
    if (len + n <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : first;
    while (c < len + n) {
        c *= 2;
    }
    void *p = realloc(*arr, c * size);
    if (!p) {
        return TC_ENOMEM;
    }
    *arr = p;
    *cap = c;
    return 0;
}

/* Doubles the slot table and puts every group back. */
static int grow_slots(col_packer_t *self)
{
    size_t cap = self->capslots * 2;
    uint32_t *slots = calloc(cap, sizeof(*slots));
    if (!slots) {
        return TC_ENOMEM;
    }
    for (size_t g = 0; g < self->ngroups; g++) {
        size_t i = (size_t)self->groups[g].hash & (cap - 1);
        while (slots[i]) {
            i = (i + 1) & (cap - 1);
        }
        slots[i] = (uint32_t)g + 1;
    }
    free(self->slots);
    self->slots = slots;
    self->capslots = cap;
    return 0;
}

/* The group of (topic, key), created when new. Returns 0 with *out set, or TC_ENOMEM. */
static int group_of(col_packer_t *self, col_topic_t topic, const void *key, size_t key_len,
                    uint32_t *out)
{
    uint64_t h = XXH3_64bits_withSeed(key, key_len, (uint64_t)topic + 1);
    size_t i = (size_t)h & (self->capslots - 1);
    while (self->slots[i]) {
        const group_t *g = &self->groups[self->slots[i] - 1];
        if (g->hash == h && g->topic == topic && g->key_len == key_len &&
            (key_len == 0 || memcmp(self->keys + g->key_off, key, key_len) == 0)) {
            *out = self->slots[i] - 1;
            return 0;
        }
        i = (i + 1) & (self->capslots - 1);
    }
    if ((self->ngroups + 1) * 2 > self->capslots) {
        if (grow_slots(self) != 0) {
            return TC_ENOMEM;
        }
        i = (size_t)h & (self->capslots - 1);
        while (self->slots[i]) {
            i = (i + 1) & (self->capslots - 1);
        }
    }
    if (room((void **)&self->groups, &self->capgroups, self->ngroups, 1, sizeof(group_t), 16) !=
            0 ||
        room((void **)&self->keys, &self->capkeys, self->nkeys, key_len, 1, 1024) != 0) {
        return TC_ENOMEM;
    }
    group_t *g = &self->groups[self->ngroups];
    g->hash = h;
    g->topic = topic;
    g->key_off = self->nkeys;
    g->key_len = (uint32_t)key_len;
    g->first = g->last = NONE;
    if (key_len) {
        memcpy(self->keys + self->nkeys, key, key_len);
    }
    self->nkeys += key_len;
    self->slots[i] = (uint32_t)self->ngroups + 1;
    *out = (uint32_t)self->ngroups++;
    return 0;
}

/* Makes room for an event of `len` bytes and links it into its group; *dst is where its
 * bytes go. */
static int add_event(col_packer_t *self, col_topic_t topic, const void *key, size_t key_len,
                     size_t len, uint8_t **dst)
{
    assert(self && (key || key_len == 0) && topic < COL_TOPIC_COUNT);
    if (key_len > COL_RECORD_KEY_MAX || len > UINT32_MAX) {
        return TC_EINVAL;
    }
    uint32_t gi = 0;
    if (self->nevents >= NONE - 1 || group_of(self, topic, key, key_len, &gi) != 0 ||
        room((void **)&self->events, &self->capevents, self->nevents, 1, sizeof(event_t), 256) !=
            0 ||
        room((void **)&self->bytes, &self->capbytes, self->nbytes, len, 1, 64 * 1024) != 0) {
        return TC_ENOMEM;
    }
    uint32_t e = (uint32_t)self->nevents++;
    self->events[e].off = self->nbytes;
    self->events[e].len = (uint32_t)len;
    self->events[e].next = NONE;
    group_t *g = &self->groups[gi];
    if (g->last == NONE) {
        g->first = e;
    } else {
        self->events[g->last].next = e;
    }
    g->last = e;
    *dst = self->bytes + self->nbytes;
    self->nbytes += len;
    return 0;
}

int col_packer_add(col_packer_t *self, col_topic_t topic, const void *key, size_t key_len,
                   const void *value, size_t value_len, const void *tail, size_t tail_len)
{
    assert((value || value_len == 0) && (tail || tail_len == 0));
    if (value_len > UINT32_MAX || tail_len > UINT32_MAX - value_len) {
        return TC_EINVAL;
    }
    uint8_t *dst = NULL;
    int rc = add_event(self, topic, key, key_len, value_len + tail_len, &dst);
    if (rc != 0) {
        return rc;
    }
    if (value_len) {
        memcpy(dst, value, value_len);
    }
    if (tail_len) {
        memcpy(dst + value_len, tail, tail_len);
    }
    return 0;
}

int col_packer_add_event(col_packer_t *self, col_topic_t topic, const void *key, size_t key_len,
                         const Tocsin__V1__Event *ev)
{
    assert(ev);
    size_t len = tocsin__v1__event__get_packed_size(ev);
    uint8_t *dst = NULL;
    int rc = add_event(self, topic, key, key_len, len, &dst);
    if (rc != 0) {
        return rc;
    }
    size_t packed = tocsin__v1__event__pack(ev, dst);
    assert(packed == len);
    (void)packed;
    return 0;
}

/* Writes the events from `from` (linked) up to, not including, `until` as one record. */
static int emit(col_packer_t *self, const group_t *g, uint32_t from, uint32_t until,
                size_t value_len, col_records_t *records)
{
    uint8_t *p = NULL;
    int rc = col_records_reserve(records, g->topic, COL_FORMAT_PACK, self->keys + g->key_off,
                                 g->key_len, value_len, &p);
    if (rc != 0) {
        return rc;
    }
    for (uint32_t e = from; e != until; e = self->events[e].next) {
        const event_t *ev = &self->events[e];
        p += col_pack_entry_head(p, ev->len);
        memcpy(p, self->bytes + ev->off, ev->len);
        p += ev->len;
    }
    return 0;
}

int col_packer_finish(col_packer_t *self, col_records_t *records)
{
    assert(self && records);
    int rc = 0;
    for (size_t gi = 0; gi < self->ngroups && rc == 0; gi++) {
        const group_t *g = &self->groups[gi];
        uint32_t from = g->first;
        size_t value_len = 0;
        for (uint32_t e = g->first; e != NONE && rc == 0; e = self->events[e].next) {
            size_t n = col_pack_entry_size(self->events[e].len);
            if (e != from && value_len + n > self->max_value) {
                rc = emit(self, g, from, e, value_len, records);
                from = e;
                value_len = 0;
            }
            value_len += n;
        }
        if (rc == 0 && from != NONE) {
            rc = emit(self, g, from, NONE, value_len, records);
        }
    }
    col_packer_reset(self);
    return rc;
}
