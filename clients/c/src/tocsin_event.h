/*
 * tocsin_event.h — one event as the background thread holds it between the queue and the
 * encoder: decoded from its record, symbolised, offered to the before_send hook (which
 * edits it through the public tocsin_event_* functions, implemented in tocsin_event.c),
 * then encoded.
 *
 * Pure module: plain structs; the only memory is the event's edit space (its arena),
 * allocated once per client. Strings are borrowed from the record, from the client's
 * options, or copied into the arena; every one is NUL-terminated UTF-8.
 */
#ifndef TOCSIN_EVENT_H
#define TOCSIN_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin.h"

/* String fields, indexed by tocsin_field_t (1 .. TOCSIN_FIELD_LAST). */
#define TOCSIN_FIELD_LAST TOCSIN_FIELD_MECHANISM

/* Tags an event can hold: the client's and the thread's. */
#define TOCSIN_EVENT_TAGS_MAX (2 * TOCSIN_TAGS_MAX)

/* Bytes of an event's edit space: before_send edits and symbolised frame strings. */
#define TOCSIN_EVENT_ARENA (128 * 1024)

/* A native frame of a crash, as the crash handler saw it (see tocsin_crash.h). */
typedef struct {
    uint64_t pc;
    uint64_t map_start;  /* start of the mapping holding pc */
    uint64_t map_offset; /* file offset of map_start */
    uint64_t inode;      /* of the mapped file, to tell a rebuilt file */
    const char *path;    /* the mapped file ("" when pc was in no file mapping) */
} tocsin_crash_frame_t;

struct tocsin_event {
    tocsin_event_kind_t kind;
    uint8_t sub; /* level (errors, logs) or metric kind */
    bool crash;  /* an error read from a crash file */
    bool truncated;
    int64_t time_us;
    uint32_t status;
    uint64_t duration_us;
    double value;
    float sample_rate; /* 0: not sampled */

    const char *str[TOCSIN_FIELD_LAST + 1]; /* NULL reads as "" */

    /* Identity of a crash report (the crashed process's); NULL: the client's. */
    const char *service;
    const char *environment;
    const char *release;
    const char *host;
    uint8_t event_id[16];
    bool has_event_id;

    tocsin_tag_t tags[TOCSIN_EVENT_TAGS_MAX];
    size_t n_tags;
    tocsin_tag_t fields[TOCSIN_FIELDS_MAX];
    size_t n_fields;
    const char *fingerprint[TOCSIN_FINGERPRINT_MAX];
    size_t n_fingerprint;

    /* Frames ready to send (passed in, or symbolised from pcs / crash_frames). */
    tocsin_frame_t frames[TOCSIN_FRAMES_MAX];
    size_t n_frames;
    /* Program counters captured on the calling thread, innermost first: return addresses
     * (the frame's call site is pc - 1). */
    uint64_t pcs[TOCSIN_FRAMES_MAX];
    size_t n_pcs;
    tocsin_crash_frame_t crash_frames[TOCSIN_FRAMES_MAX];
    size_t n_crash_frames;

    char *arena;
    size_t arena_used;
};

/* Starts an empty event over `arena` (TOCSIN_EVENT_ARENA bytes, the caller's). */
void tocsin_event_reset(tocsin_event_t *ev, char *arena);

/* Copies s[0..len) with a NUL into the arena; returns the copy or NULL when the arena is
 * full. */
const char *tocsin_event_strdup(tocsin_event_t *ev, const char *s, size_t len);

/* Adds (or replaces) tag key=value without checks beyond the capacity; returns false when
 * the event holds TOCSIN_EVENT_TAGS_MAX tags already. Borrowed strings. */
bool tocsin_event_put_tag(tocsin_event_t *ev, const char *key, const char *value);

#endif
