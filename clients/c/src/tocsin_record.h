/*
 * tocsin_record.h — one event as the hot path stores it: a fixed-size, self-contained copy
 * that fills one queue slot, with its strings inline.
 *
 * Pure module: no allocation, no system call. The recording functions of tocsin.c check the
 * arguments, claim a slot, fill the record with the functions below and publish the slot.
 */
#ifndef TOCSIN_RECORD_H
#define TOCSIN_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin.h"

/* What a record's body is; each kind fixes the meaning of the strings and numbers. */
enum {
    TOCSIN_RECORD_REQUEST = 1, /* str 0 route, 1 method; status; num.u64 duration_us */
    TOCSIN_RECORD_ERROR = 2,   /* str 0 type, 1 message; sub = level */
    TOCSIN_RECORD_METRIC = 3,  /* str 0 name, 1 unit; sub = metric kind; num.f64 value */
};

/* Strings a record can carry (the kinds above use two; logs and scope will use more). */
#define TOCSIN_RECORD_STRS 4

/* Bytes of a slot before the record: the slot's sequence number. */
#define TOCSIN_SLOT_HEADER 8

/* Set in record.flags when a string was cut to fit. */
#define TOCSIN_RECORD_TRUNCATED 0x01u

typedef struct {
    int64_t time_us; /* event time, microseconds since the epoch (CLOCK_REALTIME) */
    union {
        uint64_t u64;
        double f64;
    } num;
    uint32_t status;
    uint8_t kind;                     /* TOCSIN_RECORD_* */
    uint8_t sub;                      /* level or metric kind */
    uint8_t nstr;                     /* strings stored so far */
    uint8_t flags;                    /* TOCSIN_RECORD_TRUNCATED */
    uint16_t off[TOCSIN_RECORD_STRS]; /* offset of string i in text */
    uint16_t len[TOCSIN_RECORD_STRS]; /* length of string i, without its NUL */
    uint16_t used;                    /* bytes of text in use, NULs included */
    uint16_t pad_;
    char text[TOCSIN_SLOT_BYTES - TOCSIN_SLOT_HEADER - 44];
} tocsin_record_t;

/* Bytes of text a record holds: its strings with one NUL each. */
#define TOCSIN_RECORD_TEXT (sizeof(((tocsin_record_t *)0)->text))

_Static_assert(sizeof(tocsin_record_t) == TOCSIN_SLOT_BYTES - TOCSIN_SLOT_HEADER,
               "a record fills a slot after the slot's sequence number");
_Static_assert(TOCSIN_RECORD_TEXT >= 2 * (TOCSIN_NAME_MAX + 1), "two names fit one record");
_Static_assert(TOCSIN_RECORD_TEXT >= TOCSIN_NAME_MAX + 1 + TOCSIN_MESSAGE_MIN + 1,
               "a type and the promised message fit one record");

/* Starts a record of `kind` at `time_us`: no strings yet. */
void tocsin_record_begin(tocsin_record_t *rec, uint8_t kind, int64_t time_us);

/*
 * Appends string `s` (of `len` bytes) as the record's next string, NUL-terminated. Bytes
 * that do not begin a well-formed UTF-8 sequence become '?'. When the string does not fit
 * the text left, it is cut at a character boundary and TOCSIN_RECORD_TRUNCATED is set.
 * The caller checks beforehand that names fit (TOCSIN_NAME_MAX); only a last, free-text
 * string is meant to be cut. At most TOCSIN_RECORD_STRS strings.
 */
void tocsin_record_put(tocsin_record_t *rec, const char *s, size_t len);

/* String i of the record (NUL-terminated, valid UTF-8), or "" when it has fewer strings. */
const char *tocsin_record_str(const tocsin_record_t *rec, unsigned i);

/* Bytes of the record in use: a copy of this prefix is a complete copy of the record. */
size_t tocsin_record_size(const tocsin_record_t *rec);

/*
 * Copies at most `cap` bytes of src[0..len) into dst, replacing every byte that does not
 * begin a well-formed UTF-8 sequence (overlongs, surrogates and code points above
 * U+10FFFF are not well-formed) by '?', and never splitting a character. Returns the bytes
 * written; sets *truncated when not all of src fit. Does not write a NUL.
 */
size_t tocsin_utf8_copy(char *dst, size_t cap, const char *src, size_t len, bool *truncated);

#endif
