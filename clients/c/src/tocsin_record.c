#include "tocsin_record.h"

#include <assert.h>
#include <string.h>

void tocsin_record_begin(tocsin_record_t *rec, uint8_t kind, int64_t time_us)
{
    assert(rec);
    rec->time_us = time_us;
    rec->num.u64 = 0;
    rec->status = 0;
    rec->kind = kind;
    rec->sub = 0;
    rec->nstr = 0;
    rec->flags = 0;
    rec->used = 0;
    rec->pad_ = 0;
}

void tocsin_record_put(tocsin_record_t *rec, const char *s, size_t len)
{
    assert(rec);
    assert(rec->nstr < TOCSIN_RECORD_STRS);
    assert(rec->used < TOCSIN_RECORD_TEXT);
    size_t room = TOCSIN_RECORD_TEXT - rec->used - 1; /* one byte for the NUL */
    bool truncated = false;
    size_t n = tocsin_utf8_copy(rec->text + rec->used, room, s, len, &truncated);
    rec->text[rec->used + n] = '\0';
    rec->off[rec->nstr] = rec->used;
    rec->len[rec->nstr] = (uint16_t)n;
    rec->nstr++;
    rec->used = (uint16_t)(rec->used + n + 1);
    if (truncated) {
        rec->flags |= TOCSIN_RECORD_TRUNCATED;
    }
}

const char *tocsin_record_str(const tocsin_record_t *rec, unsigned i)
{
    assert(rec);
    if (i >= rec->nstr) {
        return "";
    }
    return rec->text + rec->off[i];
}

size_t tocsin_record_size(const tocsin_record_t *rec)
{
    assert(rec);
    return offsetof(tocsin_record_t, text) + rec->used;
}

/* Length of the well-formed UTF-8 sequence at s (1 to 4 bytes), or 0 when the byte at s
 * does not begin one within the `avail` bytes there. Follows the table of well-formed byte
 * sequences in the Unicode standard (chapter 3, table 3-7). */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0; /* no overlongs */
        } else if (c == 0xED) {
            hi = 0x9F; /* no surrogates */
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90; /* no overlongs */
        } else if (c == 0xF4) {
            hi = 0x8F; /* nothing above U+10FFFF */
        }
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return n;
}

size_t tocsin_utf8_copy(char *dst, size_t cap, const char *src, size_t len, bool *truncated)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0;
    *truncated = false;
    while (i < len) {
        if (s[i] < 0x80) {
            if (o >= cap) {
                *truncated = true;
                break;
            }
            dst[o++] = (char)s[i++];
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0) {
            if (o >= cap) {
                *truncated = true;
                break;
            }
            dst[o++] = '?';
            i++;
            continue;
        }
        if (o + n > cap) {
            *truncated = true;
            break;
        }
        memcpy(dst + o, s + i, n);
        o += n;
        i += n;
    }
    return o;
}
