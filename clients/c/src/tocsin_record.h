/*
 * tocsin_record.h — one event as the hot path stores it in the queue: a 32-byte header
 * and a stream of fields, spread over one or more consecutive slot payloads.
 *
 * Pure module: no allocation, no system call. The recording functions of tocsin.c check
 * the arguments, add up the record's size (tocsin_record_*_size), claim that many slots,
 * write the header and the fields through a tocsin_writer_t and publish the first slot.
 * The background thread reads the record back (contiguous: it copies a chain out of the
 * ring first) with tocsin_record_decode.
 *
 * A field is one byte of id, two bytes of length (little-endian) and its bytes. String
 * fields carry their bytes and a NUL (counted in the length), already made valid UTF-8.
 */
#ifndef TOCSIN_RECORD_H
#define TOCSIN_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tocsin.h"
#include "tocsin_event.h"
#include "tocsin_queue.h"

/* Field ids. 1 .. 10 are the string fields of tocsin_field_t, with the same numbers. */
enum {
    TOCSIN_R_TAG = 11,         /* key NUL value NUL */
    TOCSIN_R_FIELD = 12,       /* log field: key NUL value NUL */
    TOCSIN_R_FINGERPRINT = 13, /* one part, NUL */
    TOCSIN_R_PCS = 14,         /* n × u64 program counters, innermost first */
    TOCSIN_R_FRAME = 15,       /* u64 addr, u32 line, u8 in_app, function NUL module NUL file NUL */
    TOCSIN_R_SERVICE = 16,     /* a crash report's identity: string */
    TOCSIN_R_ENVIRONMENT = 17,
    TOCSIN_R_RELEASE = 18,
    TOCSIN_R_HOST = 19,
    TOCSIN_R_CRASH_FRAME = 20, /* u64 pc, map_start, map_offset, inode, path NUL */
    TOCSIN_R_EVENT_ID = 21,    /* 16 bytes */
};

/* Set in header.flags. */
#define TOCSIN_RECORD_TRUNCATED 0x01u
#define TOCSIN_RECORD_CRASH 0x02u

typedef struct {
    int64_t time_us; /* event time, microseconds since the epoch (CLOCK_REALTIME) */
    union {
        uint64_t u64; /* request duration_us */
        double f64;   /* metric value */
    } num;
    uint32_t status;
    uint16_t len;  /* bytes of fields after the header */
    uint8_t kind;  /* tocsin_event_kind_t */
    uint8_t sub;   /* level or metric kind */
    uint8_t flags; /* TOCSIN_RECORD_* */
    uint8_t nslots;
    uint16_t pad_;
    float sample_rate; /* 0: not sampled */
} tocsin_rhdr_t;

_Static_assert(sizeof(tocsin_rhdr_t) == 32, "the record header is 32 bytes");

#define TOCSIN_FIELD_HDR 3
/* Largest record: TOCSIN_EVENT_MAX_SLOTS payloads. */
#define TOCSIN_RECORD_MAX ((size_t)TOCSIN_EVENT_MAX_SLOTS * TOCSIN_SLOT_PAYLOAD)

_Static_assert(TOCSIN_RECORD_MAX - sizeof(tocsin_rhdr_t) <= UINT16_MAX, "len fits 16 bits");

/* Bytes a string field of `len` bytes takes. */
static inline size_t tocsin_record_str_size(size_t len)
{
    return TOCSIN_FIELD_HDR + len + 1;
}

/* Slots a record of `size` bytes (header included) takes. */
static inline uint32_t tocsin_record_slots(size_t size)
{
    return (uint32_t)((size + TOCSIN_SLOT_PAYLOAD - 1) / TOCSIN_SLOT_PAYLOAD);
}

/* Writes a record into claimed slots, crossing from one slot's payload to the next. */
typedef struct {
    tocsin_queue_t *q;
    uint64_t pos;
    uint8_t *p;
    uint8_t *end;
} tocsin_writer_t;

/* Starts writing after the header, in the payload `first` of position pos. Returns the
 * header, for the caller to fill. */
static inline tocsin_rhdr_t *tocsin_writer_begin(tocsin_writer_t *w, tocsin_queue_t *q,
                                                 uint64_t pos, uint8_t *first)
{
    w->q = q;
    w->pos = pos;
    w->p = first + sizeof(tocsin_rhdr_t);
    w->end = first + TOCSIN_SLOT_PAYLOAD;
    return (tocsin_rhdr_t *)(void *)first;
}

void tocsin_writer_next_slot(tocsin_writer_t *w);

static inline void tocsin_writer_bytes(tocsin_writer_t *w, const void *src, size_t n)
{
    const uint8_t *s = src;
    while (n > 0) {
        if (w->p == w->end) {
            tocsin_writer_next_slot(w);
        }
        size_t room = (size_t)(w->end - w->p);
        size_t k = n < room ? n : room;
        memcpy(w->p, s, k);
        w->p += k;
        s += k;
        n -= k;
    }
}

static inline void tocsin_writer_field(tocsin_writer_t *w, uint8_t id, size_t len)
{
    uint8_t h[TOCSIN_FIELD_HDR] = {id, (uint8_t)(len & 0xff), (uint8_t)(len >> 8)};
    tocsin_writer_bytes(w, h, sizeof(h));
}

/* Writes s[0..n) with every byte that does not begin a well-formed UTF-8 sequence replaced
 * by '?' (the same number of bytes). */
void tocsin_writer_utf8(tocsin_writer_t *w, const char *s, size_t n);

/* A string field: s[0..n) made valid UTF-8, and a NUL. n must already fit its limit. */
static inline void tocsin_writer_str(tocsin_writer_t *w, uint8_t id, const char *s, size_t n)
{
    tocsin_writer_field(w, id, n + 1);
    tocsin_writer_utf8(w, s, n);
    static const uint8_t nul = 0;
    tocsin_writer_bytes(w, &nul, 1);
}

/* A pair field (tag or log field): key NUL value NUL. */
static inline void tocsin_writer_pair(tocsin_writer_t *w, uint8_t id, const char *k, size_t kn,
                                      const char *v, size_t vn)
{
    static const uint8_t nul = 0;
    tocsin_writer_field(w, id, kn + vn + 2);
    tocsin_writer_utf8(w, k, kn);
    tocsin_writer_bytes(w, &nul, 1);
    tocsin_writer_utf8(w, v, vn);
    tocsin_writer_bytes(w, &nul, 1);
}

/*
 * The largest n <= limit such that s[0..n) ends at the end of a character (a well-formed
 * sequence, or an ill-formed byte, which counts as one character of its own). len is the
 * length of s; when len <= limit, returns len.
 */
size_t tocsin_utf8_cut(const char *s, size_t len, size_t limit);

/*
 * Copies at most `cap` bytes of src[0..len) into dst, replacing every byte that does not
 * begin a well-formed UTF-8 sequence (overlongs, surrogates and code points above
 * U+10FFFF are not well-formed) by '?', and never splitting a character. Returns the bytes
 * written; sets *truncated when not all of src fit. Does not write a NUL.
 */
size_t tocsin_utf8_copy(char *dst, size_t cap, const char *src, size_t len, bool *truncated);

/*
 * Reads a complete record (header and fields, contiguous, `len` bytes) into `ev`, which
 * was reset beforehand: string pointers point into `buf`, which must stay valid and
 * unchanged while ev is used. Returns 0, or TOCSIN_EINVAL when the record is malformed
 * (a field running past the end, a string without its NUL, an unknown kind); unknown
 * field ids are skipped.
 */
int tocsin_record_decode(const uint8_t *buf, size_t len, tocsin_event_t *ev);

#endif
