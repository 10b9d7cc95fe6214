/*
 * tocsin_rng.h — the background thread's pseudo-random numbers: xoshiro256** (Blackman and
 * Vigna), for event ids and back-off jitter. Seeded once from the kernel; not for secrets.
 * Not thread-safe: one generator per thread.
 */
#ifndef TOCSIN_RNG_H
#define TOCSIN_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} tocsin_rng_t;

/* Seeds from getrandom(2). When the kernel cannot give entropy, falls back to a mix of the
 * clocks, the pid and an address, so ids stay distinct between processes in practice.
 * Returns 0, or TOCSIN_EIO when the fallback was used (the generator is usable either way). */
int tocsin_rng_seed_random(tocsin_rng_t *rng);

/* Seeds deterministically from `seed` (through splitmix64), for tests. */
void tocsin_rng_seed(tocsin_rng_t *rng, uint64_t seed);

uint64_t tocsin_rng_next(tocsin_rng_t *rng);

/* A number in [0, bound) (0 when bound is 0), without modulo bias. */
uint64_t tocsin_rng_below(tocsin_rng_t *rng, uint64_t bound);

/* Fills `len` bytes at `buf`. */
void tocsin_rng_fill(tocsin_rng_t *rng, void *buf, size_t len);

#endif
