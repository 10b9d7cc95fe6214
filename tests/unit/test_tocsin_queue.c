/* Unit tests for clients/c/src/tocsin_queue.c: the bounded MPSC ring under several producer
 * threads — exact counts, exact drops when full, no loss, no duplication, per-producer
 * order. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_queue.h"

/* Event n of a producer takes nslots_for(n) slots when `chains` is on. */
static bool chains;

static uint32_t nslots_for(uint32_t n)
{
    return chains ? 1 + n % 3 : 1;
}

static uint8_t pattern(uint32_t producer, uint32_t n, size_t i)
{
    return (uint8_t)(producer * 31 + n * 7 + i);
}

/* Writes producer p's n-th event over its slots: the numbers first, then a pattern over
 * every byte, so a torn, mixed-up or misplaced chain shows. */
static bool push(tocsin_queue_t *q, uint32_t producer, uint32_t n)
{
    uint64_t pos;
    uint32_t k = nslots_for(n);
    uint8_t *first = tocsin_queue_claim(q, k, &pos);
    if (!first) {
        return false;
    }
    for (uint32_t s = 0; s < k; s++) {
        uint8_t *p = tocsin_queue_payload(q, pos + s);
        assert_ptr_equal(s == 0 ? first : p, p);
        for (size_t i = 0; i < TOCSIN_SLOT_PAYLOAD; i++) {
            p[i] = pattern(producer, n, s * TOCSIN_SLOT_PAYLOAD + i);
        }
    }
    uint32_t head[3] = {producer, n, k};
    memcpy(first, head, sizeof(head));
    tocsin_queue_publish(q, pos);
    return true;
}

static uint8_t chain_buf[3 * TOCSIN_SLOT_PAYLOAD];

/* Checks the event at the head and returns its slot count. */
static uint32_t check_head(tocsin_queue_t *q, const uint8_t *first, uint32_t *producer, uint32_t *n)
{
    uint32_t head[3];
    memcpy(head, first, sizeof(head));
    *producer = head[0];
    *n = head[1];
    uint32_t k = head[2];
    assert_int_equal(k, nslots_for(*n));
    tocsin_queue_copy(q, chain_buf, k * TOCSIN_SLOT_PAYLOAD);
    for (size_t i = sizeof(head); i < k * TOCSIN_SLOT_PAYLOAD; i++) {
        if (chain_buf[i] != pattern(*producer, *n, i)) {
            fail_msg("event %u/%u: byte %zu is wrong", *producer, *n, i);
        }
    }
    return k;
}

static void test_fifo_and_exact_capacity(void **state)
{
    (void)state;
    assert_null(tocsin_queue_new(0));
    tocsin_queue_t *q = tocsin_queue_new(5); /* not a power of two: held exactly */
    assert_non_null(q);
    assert_int_equal(tocsin_queue_capacity(q), 5);
    assert_null(tocsin_queue_peek(q));
    /* Many laps around the ring. */
    uint32_t next_in = 0, next_out = 0;
    for (int lap = 0; lap < 100; lap++) {
        while (push(q, 0, next_in)) {
            next_in++;
        }
        assert_int_equal(next_in - next_out, 5);
        assert_int_equal(tocsin_queue_tail(q) - tocsin_queue_head(q), 5);
        int take = 1 + lap % 5;
        for (int i = 0; i < take; i++) {
            const uint8_t *rec = tocsin_queue_peek(q);
            assert_non_null(rec);
            uint32_t p, n;
            tocsin_queue_pop(q, check_head(q, rec, &p, &n));
            assert_int_equal(n, next_out);
            next_out++;
        }
    }
    assert_int_equal(tocsin_queue_tail(q), next_in);
    assert_int_equal(tocsin_queue_head(q), next_out);
    tocsin_queue_destroy(&q);
    tocsin_queue_destroy(&q);
    assert_null(q);
}

/* A claimed slot that is not yet published holds the consumer back, and only it. */
static void test_unpublished_slot_blocks_consumer(void **state)
{
    (void)state;
    tocsin_queue_t *q = tocsin_queue_new(4);
    uint64_t pos0;
    uint8_t *slot0 = tocsin_queue_claim(q, 1, &pos0);
    assert_non_null(slot0);
    assert_true(push(q, 0, 1));
    assert_null(tocsin_queue_peek(q)); /* position 0 is still being written */
    for (size_t i = 0; i < TOCSIN_SLOT_PAYLOAD; i++) {
        slot0[i] = pattern(0, 0, i);
    }
    uint32_t head[3] = {0, 0, 1};
    memcpy(slot0, head, sizeof(head));
    tocsin_queue_publish(q, pos0);
    for (uint32_t i = 0; i < 2; i++) {
        const uint8_t *rec = tocsin_queue_peek(q);
        assert_non_null(rec);
        uint32_t p, n;
        tocsin_queue_pop(q, check_head(q, rec, &p, &n));
        assert_int_equal(n, i);
    }
    assert_null(tocsin_queue_peek(q));
    tocsin_queue_destroy(&q);
}

/* Chains: an event of k slots needs k free slots in a row (wrapping around the ring), and
 * a chain too long for the queue is refused. */
static void test_chains_wrap_and_fill(void **state)
{
    (void)state;
    chains = true;
    tocsin_queue_t *q = tocsin_queue_new(7);
    uint64_t pos;
    assert_null(tocsin_queue_claim(q, 8, &pos)); /* longer than the ring */
    assert_null(tocsin_queue_claim(q, 0, &pos));
    uint32_t in = 0, out = 0;
    for (int round = 0; round < 200; round++) {
        while (push(q, 1, in)) {
            in++;
        }
        /* What is left is less than the next event needs. */
        uint64_t used = tocsin_queue_tail(q) - tocsin_queue_head(q);
        assert_true(used + nslots_for(in) > 7);
        int take = 1 + round % 3;
        for (int i = 0; i < take && tocsin_queue_peek(q); i++) {
            uint32_t p, n;
            tocsin_queue_pop(q, check_head(q, tocsin_queue_peek(q), &p, &n));
            assert_int_equal(n, out);
            out++;
        }
    }
    tocsin_queue_destroy(&q);
    chains = false;
}

/* After fork() the child empties the queue, published or not, and goes on from the tail. */
static void test_reset_after_fork(void **state)
{
    (void)state;
    tocsin_queue_t *q = tocsin_queue_new(5);
    assert_true(push(q, 0, 0));
    assert_true(push(q, 0, 1));
    uint64_t pos;
    assert_non_null(tocsin_queue_claim(q, 3, &pos)); /* a writer that never finishes */
    assert_false(push(q, 0, 2));
    tocsin_queue_reset_after_fork(q);
    assert_null(tocsin_queue_peek(q));
    assert_int_equal(tocsin_queue_head(q), 5);
    for (uint32_t i = 0; i < 5; i++) {
        assert_true(push(q, 2, i));
    }
    assert_false(push(q, 2, 5));
    for (uint32_t i = 0; i < 5; i++) {
        uint32_t p, n;
        tocsin_queue_pop(q, check_head(q, tocsin_queue_peek(q), &p, &n));
        assert_int_equal(p, 2);
        assert_int_equal(n, i);
    }
    tocsin_queue_destroy(&q);
}

enum { PRODUCERS = 4, PER_PRODUCER = 200000 };

typedef struct {
    tocsin_queue_t *q;
    uint32_t id;
    uint32_t attempts;
    bool retry_when_full; /* true: push every event eventually; false: count the drops */
    uint32_t ok;
    uint32_t dropped;
    pthread_barrier_t *start;
} producer_t;

static void *producer_run(void *arg)
{
    producer_t *p = arg;
    pthread_barrier_wait(p->start);
    for (uint32_t n = 0; n < p->attempts;) {
        if (push(p->q, p->id, p->retry_when_full ? n : p->ok)) {
            p->ok++;
            n++;
        } else if (p->retry_when_full) {
            sched_yield();
        } else {
            p->dropped++;
            n++;
        }
    }
    return NULL;
}

/* Four producers and a concurrent consumer: every event arrives exactly once, in order per
 * producer, intact, with events of one to three slots. */
static void test_producers_with_consumer(void **state)
{
    (void)state;
    tocsin_queue_t *q = tocsin_queue_new(1000);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, PRODUCERS + 1);
    producer_t p[PRODUCERS];
    pthread_t t[PRODUCERS];
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        p[i] = (producer_t){
            .q = q, .id = i, .attempts = PER_PRODUCER, .retry_when_full = true, .start = &start};
        assert_int_equal(pthread_create(&t[i], NULL, producer_run, &p[i]), 0);
    }
    uint32_t next[PRODUCERS] = {0};
    uint64_t total = 0, slots = 0;
    chains = true; /* events of 1 to 3 slots */
    pthread_barrier_wait(&start);
    while (total < (uint64_t)PRODUCERS * PER_PRODUCER) {
        const uint8_t *rec = tocsin_queue_peek(q);
        if (!rec) {
            sched_yield();
            continue;
        }
        uint32_t producer, n;
        uint32_t k = check_head(q, rec, &producer, &n);
        assert_true(producer < PRODUCERS);
        assert_int_equal(n, next[producer]); /* no loss, no duplicate, in order */
        next[producer]++;
        total++;
        slots += k;
        tocsin_queue_pop(q, k);
    }
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(next[i], PER_PRODUCER);
        assert_int_equal(p[i].ok, PER_PRODUCER);
    }
    chains = false;
    assert_null(tocsin_queue_peek(q));
    assert_int_equal(tocsin_queue_tail(q), slots);
    assert_int_equal(tocsin_queue_head(q), slots);
    pthread_barrier_destroy(&start);
    tocsin_queue_destroy(&q);
}

/* Four producers against a queue nobody drains: exactly `capacity` events get in, every
 * other attempt is reported as a drop, and what got in is intact. */
static void test_full_queue_drops_exactly(void **state)
{
    (void)state;
    enum { CAPACITY = 3000, ATTEMPTS = 50000 };
    for (int round = 0; round < 5; round++) {
        tocsin_queue_t *q = tocsin_queue_new(CAPACITY);
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, PRODUCERS);
        producer_t p[PRODUCERS];
        pthread_t t[PRODUCERS];
        for (uint32_t i = 0; i < PRODUCERS; i++) {
            p[i] = (producer_t){.q = q, .id = i, .attempts = ATTEMPTS, .start = &start};
            assert_int_equal(pthread_create(&t[i], NULL, producer_run, &p[i]), 0);
        }
        uint64_t ok = 0, dropped = 0;
        for (uint32_t i = 0; i < PRODUCERS; i++) {
            pthread_join(t[i], NULL);
            ok += p[i].ok;
            dropped += p[i].dropped;
        }
        assert_int_equal(ok, CAPACITY);
        assert_int_equal(dropped, (uint64_t)PRODUCERS * ATTEMPTS - CAPACITY);
        assert_int_equal(tocsin_queue_tail(q), CAPACITY);
        uint32_t next[PRODUCERS] = {0};
        for (uint32_t i = 0; i < CAPACITY; i++) {
            const uint8_t *rec = tocsin_queue_peek(q);
            assert_non_null(rec);
            uint32_t producer, n;
            tocsin_queue_pop(q, check_head(q, rec, &producer, &n));
            assert_int_equal(n, next[producer]);
            next[producer]++;
        }
        assert_null(tocsin_queue_peek(q));
        for (uint32_t i = 0; i < PRODUCERS; i++) {
            assert_int_equal(next[i], p[i].ok);
        }
        pthread_barrier_destroy(&start);
        tocsin_queue_destroy(&q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_exact_capacity),
        cmocka_unit_test(test_unpublished_slot_blocks_consumer),
        cmocka_unit_test(test_chains_wrap_and_fill),
        cmocka_unit_test(test_reset_after_fork),
        cmocka_unit_test(test_producers_with_consumer),
        cmocka_unit_test(test_full_queue_drops_exactly),
    };
    return cmocka_run_group_tests_name("tocsin_queue", tests, NULL, NULL);
}
