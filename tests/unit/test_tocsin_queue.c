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

/* Writes producer p's n-th event: the numbers in the record, and the same as text, so a
 * torn or mixed-up record shows. */
static bool push(tocsin_queue_t *q, uint32_t producer, uint32_t n)
{
    uint64_t pos;
    tocsin_slot_t *slot = tocsin_queue_claim(q, &pos);
    if (!slot) {
        return false;
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%u/%u", producer, n);
    tocsin_record_begin(&slot->rec, TOCSIN_RECORD_METRIC, producer);
    slot->rec.status = n;
    tocsin_record_put(&slot->rec, text, (size_t)len);
    tocsin_queue_publish(slot, pos);
    return true;
}

static void check_record(const tocsin_record_t *rec, uint32_t *producer, uint32_t *n)
{
    *producer = (uint32_t)rec->time_us;
    *n = rec->status;
    char want[32];
    snprintf(want, sizeof(want), "%u/%u", *producer, *n);
    assert_string_equal(tocsin_record_str(rec, 0), want);
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
            const tocsin_record_t *rec = tocsin_queue_peek(q);
            assert_non_null(rec);
            uint32_t p, n;
            check_record(rec, &p, &n);
            assert_int_equal(n, next_out);
            next_out++;
            tocsin_queue_pop(q);
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
    tocsin_slot_t *slot0 = tocsin_queue_claim(q, &pos0);
    assert_non_null(slot0);
    assert_true(push(q, 0, 1));
    assert_null(tocsin_queue_peek(q)); /* position 0 is still being written */
    tocsin_record_begin(&slot0->rec, TOCSIN_RECORD_METRIC, 0);
    slot0->rec.status = 0;
    tocsin_record_put(&slot0->rec, "0/0", 3);
    tocsin_queue_publish(slot0, pos0);
    for (uint32_t i = 0; i < 2; i++) {
        const tocsin_record_t *rec = tocsin_queue_peek(q);
        assert_non_null(rec);
        uint32_t p, n;
        check_record(rec, &p, &n);
        assert_int_equal(n, i);
        tocsin_queue_pop(q);
    }
    assert_null(tocsin_queue_peek(q));
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
 * producer, intact. */
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
    uint64_t total = 0;
    pthread_barrier_wait(&start);
    while (total < (uint64_t)PRODUCERS * PER_PRODUCER) {
        const tocsin_record_t *rec = tocsin_queue_peek(q);
        if (!rec) {
            sched_yield();
            continue;
        }
        uint32_t producer, n;
        check_record(rec, &producer, &n);
        assert_true(producer < PRODUCERS);
        assert_int_equal(n, next[producer]); /* no loss, no duplicate, in order */
        next[producer]++;
        total++;
        tocsin_queue_pop(q);
    }
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(next[i], PER_PRODUCER);
        assert_int_equal(p[i].ok, PER_PRODUCER);
    }
    assert_null(tocsin_queue_peek(q));
    assert_int_equal(tocsin_queue_tail(q), (uint64_t)PRODUCERS * PER_PRODUCER);
    assert_int_equal(tocsin_queue_head(q), (uint64_t)PRODUCERS * PER_PRODUCER);
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
            const tocsin_record_t *rec = tocsin_queue_peek(q);
            assert_non_null(rec);
            uint32_t producer, n;
            check_record(rec, &producer, &n);
            assert_int_equal(n, next[producer]);
            next[producer]++;
            tocsin_queue_pop(q);
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
        cmocka_unit_test(test_producers_with_consumer),
        cmocka_unit_test(test_full_queue_drops_exactly),
    };
    return cmocka_run_group_tests_name("tocsin_queue", tests, NULL, NULL);
}
