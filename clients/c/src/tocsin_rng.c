#include "tocsin_rng.h"

#include <assert.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "tocsin.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tocsin_rng_seed(tocsin_rng_t *rng, uint64_t seed)
{
    assert(rng);
    for (int i = 0; i < 4; i++) {
        rng->s[i] = splitmix64(&seed);
    }
}

int tocsin_rng_seed_random(tocsin_rng_t *rng)
{
    assert(rng);
    uint8_t *p = (uint8_t *)rng->s;
    size_t got = 0;
    while (got < sizeof(rng->s)) {
        ssize_t n = getrandom(p + got, sizeof(rng->s) - got, 0);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got == sizeof(rng->s) && (rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) != 0) {
        return 0;
    }
    struct timespec rt, mono;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    uint64_t x = (uint64_t)rt.tv_sec * 1000000000ULL + (uint64_t)rt.tv_nsec;
    x ^= ((uint64_t)mono.tv_nsec << 32) ^ ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)rng;
    tocsin_rng_seed(rng, x);
    return TOCSIN_EIO;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tocsin_rng_next(tocsin_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t tocsin_rng_below(tocsin_rng_t *rng, uint64_t bound)
{
    if (bound == 0) {
        return 0;
    }
    /* Reject the top partial range so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
        x = tocsin_rng_next(rng);
    } while (x >= limit);
    return x % bound;
}

void tocsin_rng_fill(tocsin_rng_t *rng, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        uint64_t x = tocsin_rng_next(rng);
        size_t n = len < sizeof(x) ? len : sizeof(x);
        memcpy(p, &x, n);
        p += n;
        len -= n;
    }
}
