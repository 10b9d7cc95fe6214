#include "tocsin_record.h"

#include <assert.h>
#include <string.h>

void tocsin_writer_next_slot(tocsin_writer_t *w)
{
    w->pos++;
    w->p = tocsin_queue_payload(w->q, w->pos);
    w->end = w->p + TOCSIN_SLOT_PAYLOAD;
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

void tocsin_writer_utf8(tocsin_writer_t *w, const char *src, size_t n)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] < 0x80) {
            j++;
        }
        if (j > i) {
            tocsin_writer_bytes(w, s + i, j - i);
            i = j;
            if (i == n) {
                break;
            }
        }
        size_t k = utf8_seq_len(s + i, n - i);
        if (k == 0) {
            tocsin_writer_bytes(w, "?", 1);
            i++;
        } else {
            tocsin_writer_bytes(w, s + i, k);
            i += k;
        }
    }
}

size_t tocsin_utf8_cut(const char *src, size_t len, size_t limit)
{
    if (len <= limit) {
        return len;
    }
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    while (i < limit) {
        size_t k = s[i] < 0x80 ? 1 : utf8_seq_len(s + i, len - i);
        if (k == 0) {
            k = 1;
        }
        if (i + k > limit) {
            break;
        }
        i += k;
    }
    return i;
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

/* ---------------------------------------------------------------------------------- */
/* Decoding. */

typedef struct {
    const uint8_t *p;
    size_t n;
} span_t;

/* The NUL-terminated string at the start of *sp, consumed; NULL when there is no NUL. */
static const char *take_str(span_t *sp)
{
    const uint8_t *nul = memchr(sp->p, 0, sp->n);
    if (!nul) {
        return NULL;
    }
    const char *s = (const char *)sp->p;
    size_t k = (size_t)(nul - sp->p) + 1;
    sp->p += k;
    sp->n -= k;
    return s;
}

static bool take_u64(span_t *sp, uint64_t *out)
{
    if (sp->n < 8) {
        return false;
    }
    memcpy(out, sp->p, 8);
    sp->p += 8;
    sp->n -= 8;
    return true;
}

static bool take_u32(span_t *sp, uint32_t *out)
{
    if (sp->n < 4) {
        return false;
    }
    memcpy(out, sp->p, 4);
    sp->p += 4;
    sp->n -= 4;
    return true;
}

/* One whole string: exactly the field, NUL last. */
static const char *field_str(span_t f)
{
    if (f.n == 0 || f.p[f.n - 1] != 0 || memchr(f.p, 0, f.n) != f.p + f.n - 1) {
        return NULL;
    }
    return (const char *)f.p;
}

static int decode_field(tocsin_event_t *ev, uint8_t id, span_t f)
{
    const char *s;
    switch (id) {
    case TOCSIN_FIELD_TYPE:
    case TOCSIN_FIELD_MESSAGE:
    case TOCSIN_FIELD_ROUTE:
    case TOCSIN_FIELD_METHOD:
    case TOCSIN_FIELD_NAME:
    case TOCSIN_FIELD_UNIT:
    case TOCSIN_FIELD_LOGGER:
    case TOCSIN_FIELD_TRACE_ID:
    case TOCSIN_FIELD_USER_ID:
    case TOCSIN_FIELD_MECHANISM:
        if (!(s = field_str(f))) {
            return TOCSIN_EINVAL;
        }
        ev->str[id] = s;
        return 0;
    case TOCSIN_R_SERVICE:
    case TOCSIN_R_ENVIRONMENT:
    case TOCSIN_R_RELEASE:
    case TOCSIN_R_HOST:
        if (!(s = field_str(f))) {
            return TOCSIN_EINVAL;
        }
        *(id == TOCSIN_R_SERVICE       ? &ev->service
          : id == TOCSIN_R_ENVIRONMENT ? &ev->environment
          : id == TOCSIN_R_RELEASE     ? &ev->release
                                       : &ev->host) = s;
        return 0;
    case TOCSIN_R_TAG:
    case TOCSIN_R_FIELD: {
        const char *k = take_str(&f);
        const char *v = k ? take_str(&f) : NULL;
        if (!v || f.n != 0) {
            return TOCSIN_EINVAL;
        }
        if (id == TOCSIN_R_TAG) {
            tocsin_event_put_tag(ev, k, v); /* a full list keeps the first tags */
        } else if (ev->n_fields < TOCSIN_FIELDS_MAX) {
            ev->fields[ev->n_fields++] = (tocsin_tag_t){k, v};
        }
        return 0;
    }
    case TOCSIN_R_FINGERPRINT:
        if (!(s = field_str(f))) {
            return TOCSIN_EINVAL;
        }
        if (ev->n_fingerprint < TOCSIN_FINGERPRINT_MAX) {
            ev->fingerprint[ev->n_fingerprint++] = s;
        }
        return 0;
    case TOCSIN_R_PCS:
        if (f.n % 8 != 0) {
            return TOCSIN_EINVAL;
        }
        while (f.n > 0 && ev->n_pcs < TOCSIN_FRAMES_MAX) {
            take_u64(&f, &ev->pcs[ev->n_pcs++]);
        }
        return 0;
    case TOCSIN_R_FRAME: {
        tocsin_frame_t fr = {0};
        uint32_t line;
        if (!take_u64(&f, &fr.instruction_addr) || !take_u32(&f, &line) || f.n < 1) {
            return TOCSIN_EINVAL;
        }
        fr.line = line;
        fr.in_app = f.p[0] != 0;
        f.p++;
        f.n--;
        fr.function = take_str(&f);
        fr.module = fr.function ? take_str(&f) : NULL;
        fr.file = fr.module ? take_str(&f) : NULL;
        if (!fr.file || f.n != 0) {
            return TOCSIN_EINVAL;
        }
        if (ev->n_frames < TOCSIN_FRAMES_MAX) {
            ev->frames[ev->n_frames++] = fr;
        }
        return 0;
    }
    case TOCSIN_R_CRASH_FRAME: {
        tocsin_crash_frame_t cf = {0};
        if (!take_u64(&f, &cf.pc) || !take_u64(&f, &cf.map_start) ||
            !take_u64(&f, &cf.map_offset) || !take_u64(&f, &cf.inode) ||
            !(cf.path = field_str(f))) {
            return TOCSIN_EINVAL;
        }
        if (ev->n_crash_frames < TOCSIN_FRAMES_MAX) {
            ev->crash_frames[ev->n_crash_frames++] = cf;
        }
        return 0;
    }
    case TOCSIN_R_EVENT_ID:
        if (f.n != 16) {
            return TOCSIN_EINVAL;
        }
        memcpy(ev->event_id, f.p, 16);
        ev->has_event_id = true;
        return 0;
    default:
        return 0; /* a field of a later version: skipped */
    }
}

int tocsin_record_decode(const uint8_t *buf, size_t len, tocsin_event_t *ev)
{
    assert(buf && ev);
    tocsin_rhdr_t h;
    if (len < sizeof(h)) {
        return TOCSIN_EINVAL;
    }
    memcpy(&h, buf, sizeof(h));
    if (sizeof(h) + h.len > len || h.kind < TOCSIN_EVENT_ERROR || h.kind > TOCSIN_EVENT_LOG) {
        return TOCSIN_EINVAL;
    }
    ev->kind = (tocsin_event_kind_t)h.kind;
    ev->sub = h.sub;
    ev->crash = (h.flags & TOCSIN_RECORD_CRASH) != 0;
    ev->truncated = (h.flags & TOCSIN_RECORD_TRUNCATED) != 0;
    ev->time_us = h.time_us;
    ev->status = h.status;
    ev->duration_us = h.num.u64;
    ev->value = h.num.f64;
    ev->sample_rate = h.sample_rate;
    span_t rest = {buf + sizeof(h), h.len};
    while (rest.n > 0) {
        if (rest.n < TOCSIN_FIELD_HDR) {
            return TOCSIN_EINVAL;
        }
        uint8_t id = rest.p[0];
        size_t flen = (size_t)rest.p[1] | ((size_t)rest.p[2] << 8);
        if (flen > rest.n - TOCSIN_FIELD_HDR) {
            return TOCSIN_EINVAL;
        }
        span_t f = {rest.p + TOCSIN_FIELD_HDR, flen};
        int rc = decode_field(ev, id, f);
        if (rc != 0) {
            return rc;
        }
        rest.p += TOCSIN_FIELD_HDR + flen;
        rest.n -= TOCSIN_FIELD_HDR + flen;
    }
    return 0;
}
