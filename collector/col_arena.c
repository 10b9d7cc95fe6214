#include "col_arena.h"

#include <assert.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The first block's size; later blocks double, and the largest is kept across resets. */
#define FIRST_BLOCK (64 * 1024)

typedef struct block {
    struct block *next; /* older blocks of this cycle */
    size_t size;        /* usable bytes after the header */
    size_t used;
    alignas(max_align_t) unsigned char data[];
} block_t;

struct col_arena {
    ProtobufCAllocator allocator;
    block_t *current;
    size_t max_bytes;
    size_t held;  /* bytes of every block (usable part) */
    size_t given; /* bytes handed out since the last reset */
};

static void *pb_alloc(void *ctx, size_t n)
{
    return col_arena_alloc(ctx, n);
}

static void pb_free(void *ctx, void *p)
{
    (void)ctx;
    (void)p; /* released by col_arena_reset */
}

col_arena_t *col_arena_new(size_t max_bytes)
{
    assert(max_bytes > 0);
    col_arena_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->max_bytes = max_bytes;
    self->allocator.alloc = pb_alloc;
    self->allocator.free = pb_free;
    self->allocator.allocator_data = self;
    return self;
}

static void free_blocks(block_t *b)
{
    while (b) {
        block_t *next = b->next;
        free(b);
        b = next;
    }
}

void col_arena_destroy(col_arena_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    free_blocks((*self_p)->current);
    free(*self_p);
    *self_p = NULL;
}

static size_t align_up(size_t n)
{
    size_t a = alignof(max_align_t);
    return (n + a - 1) & ~(a - 1);
}

void *col_arena_alloc(col_arena_t *self, size_t n)
{
    assert(self);
    size_t need = align_up(n ? n : 1);
    if (need < n || self->given > self->max_bytes || need > self->max_bytes - self->given) {
        return NULL;
    }
    block_t *b = self->current;
    if (!b || b->size - b->used < need) {
        size_t size = b ? b->size * 2 : FIRST_BLOCK;
        while (size < need) {
            size *= 2;
        }
        if (size > self->max_bytes) {
            size = need > self->max_bytes ? need : self->max_bytes;
        }
        block_t *nb = malloc(sizeof(*nb) + size);
        if (!nb) {
            return NULL;
        }
        nb->size = size;
        nb->used = 0;
        nb->next = b;
        self->current = nb;
        self->held += size;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    self->given += need;
    return p;
}

char *col_arena_strndup(col_arena_t *self, const char *s, size_t n)
{
    if (n == SIZE_MAX) {
        return NULL;
    }
    char *p = col_arena_alloc(self, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void col_arena_reset(col_arena_t *self)
{
    assert(self);
    block_t *keep = self->current;
    if (keep) {
        /* The newest block is the largest: keep it, free the rest. */
        free_blocks(keep->next);
        keep->next = NULL;
        keep->used = 0;
        self->held = keep->size;
    }
    self->given = 0;
}

size_t col_arena_used(const col_arena_t *self)
{
    assert(self);
    return self->given;
}

ProtobufCAllocator *col_arena_allocator(col_arena_t *self)
{
    assert(self);
    return &self->allocator;
}
