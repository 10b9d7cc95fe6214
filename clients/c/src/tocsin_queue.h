/*
 * tocsin_queue.h — the bounded, preallocated event queue between the threads that record
 * and the client's background thread.
 *
 * A ring of fixed-size slots with one sequence number per slot (Dmitry Vyukov's bounded
 * MPMC queue), used with many producers and one consumer. A producer claims one or more
 * consecutive positions with one compare-and-swap on the tail, writes the event straight
 * into the slots' payloads and publishes it by storing the first slot's sequence number;
 * the consumer reads the event at the head once it is published and hands its slots back.
 * No lock, no allocation, no system call: a full queue is reported at once, never waited
 * on.
 *
 * An event of k slots ("a chain") occupies positions pos .. pos+k-1; its payloads follow
 * each other in position order (wrapping around the end of the ring). Only the first
 * slot's sequence number says "published"; the queue does not know k: the consumer reads
 * it from the event and passes it back.
 *
 * Positions count from 0 and never wrap (64 bits): tail = slots ever claimed, head = slots
 * ever consumed. The queue holds exactly `capacity` slots (no rounding).
 */
#ifndef TOCSIN_QUEUE_H
#define TOCSIN_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin.h"

/* Bytes of a slot before its payload: the slot's sequence number. */
#define TOCSIN_SLOT_HEADER 8
#define TOCSIN_SLOT_PAYLOAD (TOCSIN_SLOT_BYTES - TOCSIN_SLOT_HEADER)

typedef struct {
    /* pos + 1 when the event starting at position pos is published; pos + capacity when
     * the slot is free for position pos + capacity. Aligned so that a slot is whole cache
     * lines. */
    _Alignas(64) _Atomic uint64_t seq;
    uint8_t payload[TOCSIN_SLOT_PAYLOAD];
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
 * Producer side, any thread. Claims `nslots` (1 .. capacity) consecutive positions and
 * returns the first one's payload, with the position in *pos_out; NULL when they are not
 * all free (the queue is too full for this event). The caller fills the payloads (see
 * tocsin_queue_payload for the following slots) and then must call tocsin_queue_publish
 * (the consumer waits at that position until it does).
 */
uint8_t *tocsin_queue_claim(tocsin_queue_t *self, uint32_t nslots, uint64_t *pos_out);
void tocsin_queue_publish(tocsin_queue_t *self, uint64_t pos);

/* The payload of the slot at position pos (producer: of a position it claimed; consumer:
 * of a position of the event at the head). */
uint8_t *tocsin_queue_payload(tocsin_queue_t *self, uint64_t pos);

/*
 * Consumer side, one thread only. tocsin_queue_peek returns the first payload of the
 * event at the head when it is published, else NULL (empty, or its producer is still
 * writing it). tocsin_queue_copy copies the first `len` bytes of the head event's payloads
 * (nslots of them) into dst, contiguously. tocsin_queue_pop hands the head event's nslots
 * slots back to the producers; what peek returned is invalid after it.
 */
const uint8_t *tocsin_queue_peek(tocsin_queue_t *self);
void tocsin_queue_copy(tocsin_queue_t *self, void *dst, size_t len);
void tocsin_queue_pop(tocsin_queue_t *self, uint32_t nslots);

/* Slots ever claimed / ever consumed. Safe from any thread. */
uint64_t tocsin_queue_tail(const tocsin_queue_t *self);
uint64_t tocsin_queue_head(const tocsin_queue_t *self);

/*
 * In a child process after fork(), with no other thread running: empties the queue. The
 * events between head and tail (published or still being written by threads that do not
 * exist in the child) are forgotten; positions go on from the tail.
 */
void tocsin_queue_reset_after_fork(tocsin_queue_t *self);

#endif
