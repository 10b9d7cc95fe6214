/*
 * tocsin_queue.h — the bounded, preallocated event queue between the threads that record
 * and the client's background thread.
 *
 * A ring of fixed-size slots with one sequence number per slot (Dmitry Vyukov's bounded
 * MPMC queue), used with many producers and one consumer. A producer claims a position
 * with one compare-and-swap on the tail, writes the record straight into the slot and
 * publishes it by storing the slot's sequence number; the consumer reads the slot at the
 * head once it is published and hands it back. No lock, no allocation, no system call:
 * a full queue is reported at once, never waited on.
 *
 * Positions count from 0 and never wrap (64 bits): tail = events ever claimed, head =
 * events ever consumed. The queue holds exactly `capacity` events (no rounding).
 */
#ifndef TOCSIN_QUEUE_H
#define TOCSIN_QUEUE_H

#include <stdatomic.h>
#include <stdint.h>

#include "tocsin_record.h"

typedef struct {
    /* pos + 1 when the record for position pos is published; pos + capacity when the slot
     * is free for position pos + capacity. Aligned so that a slot is whole cache lines. */
    _Alignas(64) _Atomic uint64_t seq;
    tocsin_record_t rec;
} tocsin_slot_t;

_Static_assert(sizeof(tocsin_slot_t) == TOCSIN_SLOT_BYTES, "a slot is TOCSIN_SLOT_BYTES");

typedef struct tocsin_queue tocsin_queue_t;

/* Allocates the queue and touches all of its memory, so recording never takes a page
 * fault on a fresh slot. Returns NULL when capacity is 0 or memory runs out. */
tocsin_queue_t *tocsin_queue_new(uint32_t capacity);

/* Frees the queue; safe twice. No thread may be using it. */
void tocsin_queue_destroy(tocsin_queue_t **self_p);

uint32_t tocsin_queue_capacity(const tocsin_queue_t *self);

/*
 * Producer side, any thread. Claims the next position and returns its slot, with the
 * position in *pos_out; NULL when the queue is full. The caller fills slot->rec and then
 * must call tocsin_queue_publish (the consumer waits at that slot until it does).
 */
tocsin_slot_t *tocsin_queue_claim(tocsin_queue_t *self, uint64_t *pos_out);
void tocsin_queue_publish(tocsin_slot_t *slot, uint64_t pos);

/*
 * Consumer side, one thread only. Returns the record at the head when it is published,
 * else NULL (empty, or its producer is still writing it). tocsin_queue_pop hands the head
 * slot back to the producers; the record returned by peek is invalid after it.
 */
const tocsin_record_t *tocsin_queue_peek(tocsin_queue_t *self);
void tocsin_queue_pop(tocsin_queue_t *self);

/* Events ever claimed / ever consumed. Safe from any thread. */
uint64_t tocsin_queue_tail(const tocsin_queue_t *self);
uint64_t tocsin_queue_head(const tocsin_queue_t *self);

#endif
