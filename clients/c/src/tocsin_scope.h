/*
 * tocsin_scope.h — the calling thread's scope (trace id, user, tags), kept pre-encoded as
 * record fields so that recording copies it with one memcpy.
 */
#ifndef TOCSIN_SCOPE_H
#define TOCSIN_SCOPE_H

#include <stddef.h>
#include <stdint.h>

#include "tocsin.h"

/* Fields of a full scope: a trace id, a user id, TOCSIN_TAGS_MAX tags. */
#define TOCSIN_SCOPE_BLOB_MAX                                                                      \
    (2 * (3 + TOCSIN_NAME_MAX + 1) + TOCSIN_TAGS_MAX * (3 + 2 * (TOCSIN_NAME_MAX + 1)))

typedef struct {
    size_t len;                          /* bytes of blob in use; 0: empty scope */
    uint8_t blob[TOCSIN_SCOPE_BLOB_MAX]; /* record fields, ready to copy */
    char trace_id[TOCSIN_NAME_MAX + 1];
    char user_id[TOCSIN_NAME_MAX + 1];
    size_t n_tags;
    char keys[TOCSIN_TAGS_MAX][TOCSIN_NAME_MAX + 1];
    char values[TOCSIN_TAGS_MAX][TOCSIN_NAME_MAX + 1];
} tocsin_scope_t;

/* The calling thread's scope, or NULL when it never set one. Cheap (a thread-local load). */
const tocsin_scope_t *tocsin_scope_current(void);

/* A uniformly distributed 64-bit number from the calling thread's generator (xorshift,
 * seeded on first use from the clock and the thread's address; not for secrets). */
uint64_t tocsin_thread_random(void);

#endif
