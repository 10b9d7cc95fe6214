#include "tocsin_queue.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct tocsin_queue {
    _Alignas(64) _Atomic uint64_t tail; /* producers' cache line */
    _Alignas(64) _Atomic uint64_t head; /* the consumer's cache line */
    _Alignas(64) uint64_t capacity;     /* read-only after new */
    tocsin_slot_t *slots;
};

tocsin_queue_t *tocsin_queue_new(uint32_t capacity)
{
    if (capacity == 0) {
        return NULL;
    }
    tocsin_queue_t *self = NULL;
    if (posix_memalign((void **)&self, 64, sizeof(*self)) != 0) {
        return NULL;
    }
    memset(self, 0, sizeof(*self));
    self->capacity = capacity;
    if (posix_memalign((void **)&self->slots, 64, (size_t)capacity * sizeof(tocsin_slot_t)) != 0) {
        free(self);
        return NULL;
    }
    /* Touch every page now: the hot path must not fault them in. */
    memset(self->slots, 0, (size_t)capacity * sizeof(tocsin_slot_t));
    for (uint32_t i = 0; i < capacity; i++) {
        atomic_init(&self->slots[i].seq, i);
    }
    atomic_init(&self->tail, 0);
    atomic_init(&self->head, 0);
    return self;
}

void tocsin_queue_destroy(tocsin_queue_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        free((*self_p)->slots);
        free(*self_p);
        *self_p = NULL;
    }
}

uint32_t tocsin_queue_capacity(const tocsin_queue_t *self)
{
    assert(self);
    return (uint32_t)self->capacity;
}

static tocsin_slot_t *slot_at(tocsin_queue_t *self, uint64_t pos)
{
    return &self->slots[pos % self->capacity];
}

/* Positions pos .. pos+n-1 are free when the last one's slot has the sequence number
 * pos+n-1: the consumer frees positions in order (with release stores), so once the last
 * one is seen free (acquire) every earlier one is too. A smaller number means the slot
 * still holds an event of the previous lap (too full); a larger one means another producer
 * claimed pos first, so the tail is read again. The compare-and-swap on the tail decides
 * between producers; a position inside another producer's chain is never a tail value, so
 * no producer ever looks at it as its own first position. */
uint8_t *tocsin_queue_claim(tocsin_queue_t *self, uint32_t nslots, uint64_t *pos_out)
{
    assert(self);
    if (nslots == 0 || nslots > self->capacity) {
        return NULL;
    }
    uint64_t pos = atomic_load_explicit(&self->tail, memory_order_relaxed);
    for (;;) {
        uint64_t last = pos + nslots - 1;
        uint64_t seq = atomic_load_explicit(&slot_at(self, last)->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - last);
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&self->tail, &pos, pos + nslots,
                                                      memory_order_relaxed, memory_order_relaxed)) {
                *pos_out = pos;
                return slot_at(self, pos)->payload;
            }
            /* pos now holds the current tail; try again with it. */
        } else if (diff < 0) {
            return NULL;
        } else {
            pos = atomic_load_explicit(&self->tail, memory_order_relaxed);
        }
    }
}

void tocsin_queue_publish(tocsin_queue_t *self, uint64_t pos)
{
    atomic_store_explicit(&slot_at(self, pos)->seq, pos + 1, memory_order_release);
}

uint8_t *tocsin_queue_payload(tocsin_queue_t *self, uint64_t pos)
{
    return slot_at(self, pos)->payload;
}

const uint8_t *tocsin_queue_peek(tocsin_queue_t *self)
{
    assert(self);
    uint64_t pos = atomic_load_explicit(&self->head, memory_order_relaxed);
    tocsin_slot_t *slot = slot_at(self, pos);
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
    if (seq != pos + 1) {
        return NULL;
    }
    return slot->payload;
}

void tocsin_queue_copy(tocsin_queue_t *self, void *dst, size_t len)
{
    assert(self);
    uint64_t pos = atomic_load_explicit(&self->head, memory_order_relaxed);
    uint8_t *out = dst;
    while (len > 0) {
        size_t n = len < TOCSIN_SLOT_PAYLOAD ? len : TOCSIN_SLOT_PAYLOAD;
        memcpy(out, slot_at(self, pos)->payload, n);
        out += n;
        len -= n;
        pos++;
    }
}

void tocsin_queue_pop(tocsin_queue_t *self, uint32_t nslots)
{
    assert(self && nslots >= 1 && nslots <= self->capacity);
    uint64_t pos = atomic_load_explicit(&self->head, memory_order_relaxed);
    assert(atomic_load_explicit(&slot_at(self, pos)->seq, memory_order_relaxed) == pos + 1);
    /* In position order, so that a producer that sees the last slot of its claim free
     * knows every earlier one is free too. */
    for (uint32_t i = 0; i < nslots; i++) {
        atomic_store_explicit(&slot_at(self, pos + i)->seq, pos + i + self->capacity,
                              memory_order_release);
    }
    atomic_store_explicit(&self->head, pos + nslots, memory_order_release);
}

uint64_t tocsin_queue_tail(const tocsin_queue_t *self)
{
    assert(self);
    return atomic_load_explicit(&((tocsin_queue_t *)self)->tail, memory_order_acquire);
}

uint64_t tocsin_queue_head(const tocsin_queue_t *self)
{
    assert(self);
    return atomic_load_explicit(&((tocsin_queue_t *)self)->head, memory_order_acquire);
}

void tocsin_queue_reset_after_fork(tocsin_queue_t *self)
{
    assert(self);
    uint64_t head = atomic_load_explicit(&self->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&self->tail, memory_order_relaxed);
    /* Every position still held becomes free for its next lap, as pop would leave it. */
    for (uint64_t pos = head; pos < tail; pos++) {
        atomic_store_explicit(&slot_at(self, pos)->seq, pos + self->capacity, memory_order_relaxed);
    }
    atomic_store_explicit(&self->head, tail, memory_order_release);
}
