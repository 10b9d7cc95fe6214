/*
 * col_arena.h — a bump allocator for everything one batch needs while the collector works
 * on it: protobuf-c's decoded Batch, the strings scrubbing writes, the grouping ids.
 *
 * Decoding a Batch with protobuf-c's default allocator costs one malloc per string, tag and
 * frame; from an arena it costs a pointer bump, and the whole batch is released at once by
 * col_arena_reset. The arena keeps its largest block between batches, so a steady stream
 * of batches allocates nothing after the first. It is bounded: an allocation that would take
 * it past `max_bytes` fails (protobuf-c then reports the batch as unparseable).
 *
 * Pure (no I/O); not thread-safe: one arena per thread.
 */
#ifndef COL_ARENA_H
#define COL_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

typedef struct col_arena col_arena_t;

/* An arena that holds at most `max_bytes` (> 0) at a time. NULL when out of memory. */
col_arena_t *col_arena_new(size_t max_bytes);

/* Frees the arena and every block. Safe to call twice; sets *self_p to NULL. */
void col_arena_destroy(col_arena_t **self_p);

/* `n` bytes aligned for any type, valid until the next col_arena_reset; NULL when the
 * arena's bound would be passed or memory runs out. n == 0 returns a valid pointer. */
void *col_arena_alloc(col_arena_t *self, size_t n);

/* A copy of the `n` bytes at `s` with a NUL after them, in the arena; NULL as above. */
char *col_arena_strndup(col_arena_t *self, const char *s, size_t n);

/* Releases everything allocated since the last reset; keeps the largest block for reuse. */
void col_arena_reset(col_arena_t *self);

/* Bytes handed out since the last reset (for tests and metrics). */
size_t col_arena_used(const col_arena_t *self);

/* A protobuf-c allocator backed by the arena: alloc bumps, free does nothing. It points
 * at the arena, which must outlive every use of the returned allocator. */
ProtobufCAllocator *col_arena_allocator(col_arena_t *self);

#endif
