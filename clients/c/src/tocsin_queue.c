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

/* The slot of position pos is free for it when its sequence number equals pos; a smaller
 * one means the slot still holds the event of pos - capacity (the queue is full); a larger
 * one means another producer claimed pos first, so the tail is read again. The acquire
 * load pairs with the consumer's release in pop, so the producer writes the slot only
 * after the consumer is done reading it. */
tocsin_slot_t *tocsin_queue_claim(tocsin_queue_t *self, uint64_t *pos_out)
{
    assert(self);
    uint64_t pos = atomic_load_explicit(&self->tail, memory_order_relaxed);
    for (;;) {
        tocsin_slot_t *slot = &self->slots[pos % self->capacity];
        uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
        int64_t diff = (int64_t)(seq - pos);
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&self->tail, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed)) {
                *pos_out = pos;
                return slot;
            }
            /* pos now holds the current tail; try again with it. */
        } else if (diff < 0) {
            return NULL;
        } else {
            pos = atomic_load_explicit(&self->tail, memory_order_relaxed);
        }
    }
}

void tocsin_queue_publish(tocsin_slot_t *slot, uint64_t pos)
{
    atomic_store_explicit(&slot->seq, pos + 1, memory_order_release);
}

const tocsin_record_t *tocsin_queue_peek(tocsin_queue_t *self)
{
    assert(self);
    uint64_t pos = atomic_load_explicit(&self->head, memory_order_relaxed);
    tocsin_slot_t *slot = &self->slots[pos % self->capacity];
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
    if (seq != pos + 1) {
        return NULL;
    }
    return &slot->rec;
}

void tocsin_queue_pop(tocsin_queue_t *self)
{
    assert(self);
    uint64_t pos = atomic_load_explicit(&self->head, memory_order_relaxed);
    tocsin_slot_t *slot = &self->slots[pos % self->capacity];
    assert(atomic_load_explicit(&slot->seq, memory_order_relaxed) == pos + 1);
    atomic_store_explicit(&slot->seq, pos + self->capacity, memory_order_release);
    atomic_store_explicit(&self->head, pos + 1, memory_order_release);
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
