#include "col_wire.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

int col_envelope_parse(const col_frame_t *frames, size_t nframes, col_peer_t *peer,
                       col_frame_t *payload)
{
    assert(peer && payload);
    memset(peer, 0, sizeof(*peer));
    payload->data = NULL;
    payload->len = 0;
    if (nframes == 0 || frames[0].len == 0 || frames[0].len > COL_IDENTITY_MAX) {
        return TC_EINVAL;
    }
    memcpy(peer->identity, frames[0].data, frames[0].len);
    peer->identity_len = frames[0].len;
    peer->delimited = nframes >= 3 && frames[1].len == 0;
    if (nframes == 2) {
        *payload = frames[1];
        return 0;
    }
    if (nframes == 3 && frames[1].len == 0) {
        *payload = frames[2];
        return 0;
    }
    return TC_EINVAL;
}

/* The length of the longest prefix of `s` (at most `max` bytes) that ends on a UTF-8
 * character boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) {
        n--;
    }
    return n;
}

int col_ack_encode(const col_ack_t *ack, uint8_t **out, size_t *len)
{
    assert(ack && out && len);
    char reason[COL_ACK_REASON_MAX + 1];
    reason[0] = '\0';
    if (ack->reason) {
        size_t rlen = strlen(ack->reason);
        if (!tc_utf8_valid(ack->reason, rlen)) {
            tc_strlcpy(reason, "(reason not UTF-8)", sizeof(reason));
        } else {
            size_t n = utf8_cut(ack->reason, rlen, COL_ACK_REASON_MAX);
            memcpy(reason, ack->reason, n);
            reason[n] = '\0';
        }
    }
    Tocsin__V1__Ack msg = TOCSIN__V1__ACK__INIT;
    msg.sequence = ack->sequence;
    msg.status = ack->status;
    msg.retry_after_ms = ack->retry_after_ms;
    msg.reason = reason;
    msg.accepted = ack->accepted;
    size_t n = tocsin__v1__ack__get_packed_size(&msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        return TC_ENOMEM;
    }
    *len = tocsin__v1__ack__pack(&msg, buf);
    *out = buf;
    return 0;
}

void col_records_init(col_records_t *r)
{
    assert(r);
    memset(r, 0, sizeof(*r));
}

void col_records_fini(col_records_t *r)
{
    assert(r);
    free(r->data);
    memset(r, 0, sizeof(*r));
}

/* Makes room for `n` more bytes, writing the header first when the buffer is new. */
static int reserve(col_records_t *r, size_t n)
{
    if (!r->data) {
        size_t cap = 4096;
        while (cap < COL_RECORDS_HEADER + n) {
            cap *= 2;
        }
        r->data = malloc(cap);
        if (!r->data) {
            return TC_ENOMEM;
        }
        r->cap = cap;
        memset(r->data, 0, COL_RECORDS_HEADER);
        r->data[0] = 1;
        r->len = COL_RECORDS_HEADER;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap;
        while (cap < r->len + n) {
            cap *= 2;
        }
        uint8_t *grown = realloc(r->data, cap);
        if (!grown) {
            return TC_ENOMEM;
        }
        r->data = grown;
        r->cap = cap;
    }
    return 0;
}

static void put_record_header(col_records_t *r, col_topic_t topic, col_format_t format,
                              size_t key_len, size_t value_len)
{
    uint8_t *p = r->data + r->len;
    p[0] = (uint8_t)topic;
    p[1] = (uint8_t)format;
    p[2] = (uint8_t)(key_len >> 8);
    p[3] = (uint8_t)key_len;
    tc_be32_put(p + 4, (uint32_t)value_len);
}

static void finish_record(col_records_t *r, size_t total)
{
    r->len += total;
    r->count++;
    tc_be32_put(r->data + 4, r->count);
}

int col_records_add_event(col_records_t *r, col_topic_t topic, const void *key, size_t key_len,
                          const Tocsin__V1__Event *ev)
{
    assert(r && ev);
    size_t value_len = tocsin__v1__event__get_packed_size(ev);
    uint8_t *value = NULL;
    int rc = col_records_reserve(r, topic, COL_FORMAT_EVENT, key, key_len, value_len, &value);
    if (rc != 0) {
        return rc;
    }
    size_t packed = tocsin__v1__event__pack(ev, value);
    assert(packed == value_len);
    (void)packed;
    return 0;
}

int col_records_add_parts(col_records_t *r, col_topic_t topic, const void *key, size_t key_len,
                          const void *value, size_t value_len, const void *tail, size_t tail_len)
{
    assert(r && (key || key_len == 0) && (value || value_len == 0) && (tail || tail_len == 0) &&
           topic < COL_TOPIC_COUNT);
    if (key_len > COL_RECORD_KEY_MAX || value_len > UINT32_MAX ||
        tail_len > UINT32_MAX - value_len) {
        return TC_EINVAL;
    }
    size_t total = COL_RECORD_HEADER + key_len + value_len + tail_len;
    if (reserve(r, total) != 0) {
        return TC_ENOMEM;
    }
    put_record_header(r, topic, COL_FORMAT_EVENT, key_len, value_len + tail_len);
    uint8_t *p = r->data + r->len + COL_RECORD_HEADER;
    if (key_len) {
        memcpy(p, key, key_len);
    }
    if (value_len) {
        memcpy(p + key_len, value, value_len);
    }
    if (tail_len) {
        memcpy(p + key_len + value_len, tail, tail_len);
    }
    finish_record(r, total);
    return 0;
}

int col_records_add(col_records_t *r, col_topic_t topic, const void *key, size_t key_len,
                    const void *value, size_t value_len)
{
    return col_records_add_parts(r, topic, key, key_len, value, value_len, NULL, 0);
}

int col_records_reserve(col_records_t *r, col_topic_t topic, col_format_t format, const void *key,
                        size_t key_len, size_t value_len, uint8_t **value)
{
    assert(r && value && (key || key_len == 0) && topic < COL_TOPIC_COUNT);
    if (key_len > COL_RECORD_KEY_MAX || value_len > UINT32_MAX || format >= COL_FORMAT_COUNT) {
        return TC_EINVAL;
    }
    size_t total = COL_RECORD_HEADER + key_len + value_len;
    if (reserve(r, total) != 0) {
        return TC_ENOMEM;
    }
    put_record_header(r, topic, format, key_len, value_len);
    uint8_t *p = r->data + r->len + COL_RECORD_HEADER;
    if (key_len) {
        memcpy(p, key, key_len);
    }
    *value = p + key_len;
    finish_record(r, total);
    return 0;
}

size_t col_pack_entry_size(size_t len)
{
    size_t n = 2; /* the tag, and at least one byte of length */
    for (size_t v = len; v >= 0x80; v >>= 7) {
        n++;
    }
    return n + len;
}

size_t col_pack_entry_head(uint8_t *p, size_t len)
{
    size_t n = 0;
    p[n++] = 0x0a; /* field 1 (events), wire type 2 */
    size_t v = len;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

int col_pack_next(const uint8_t *value, size_t len, size_t *offset, const uint8_t **event,
                  size_t *event_len)
{
    assert(offset && event && event_len && (value || len == 0));
    size_t off = *offset;
    if (off == len) {
        return 0;
    }
    if (off > len || value[off] != 0x0a) {
        return TC_EPARSE;
    }
    off++;
    uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
        if (off >= len || shift > 28) {
            return TC_EPARSE; /* cut off, or a length of 5 bytes or more (above 4 GiB) */
        }
        uint8_t b = value[off++];
        n |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            break;
        }
    }
    if (n > len - off) {
        return TC_EPARSE;
    }
    *event = value + off;
    *event_len = (size_t)n;
    *offset = off + (size_t)n;
    return 1;
}

int col_records_next(const uint8_t *data, size_t len, size_t *offset, col_record_t *rec)
{
    assert(offset && rec && (data || len == 0));
    if (len < COL_RECORDS_HEADER || data[0] != 1) {
        return TC_EPARSE;
    }
    size_t off = *offset < COL_RECORDS_HEADER ? COL_RECORDS_HEADER : *offset;
    if (off == len) {
        return 0;
    }
    if (off > len || len - off < COL_RECORD_HEADER) {
        return TC_EPARSE;
    }
    const uint8_t *p = data + off;
    if (p[0] >= COL_TOPIC_COUNT || p[1] >= COL_FORMAT_COUNT) {
        return TC_EPARSE;
    }
    size_t key_len = ((size_t)p[2] << 8) | p[3];
    size_t value_len = tc_be32_get(p + 4);
    size_t room = len - off - COL_RECORD_HEADER;
    if (key_len > room || value_len > room - key_len) {
        return TC_EPARSE;
    }
    rec->topic = (col_topic_t)p[0];
    rec->format = (col_format_t)p[1];
    rec->key = p + COL_RECORD_HEADER;
    rec->key_len = key_len;
    rec->value = rec->key + key_len;
    rec->value_len = value_len;
    *offset = off + COL_RECORD_HEADER + key_len + value_len;
    return 1;
}

int col_records_check(const uint8_t *data, size_t len, uint32_t *count, uint64_t *events)
{
    assert(count);
    if (!data || len < COL_RECORDS_HEADER || data[0] != 1 || data[1] || data[2] || data[3]) {
        return TC_EPARSE;
    }
    uint32_t n = 0;
    uint64_t nev = 0;
    size_t off = 0;
    col_record_t rec;
    int rc;
    while ((rc = col_records_next(data, len, &off, &rec)) == 1) {
        n++;
        if (rec.format == COL_FORMAT_EVENT) {
            nev++;
            continue;
        }
        size_t eoff = 0;
        const uint8_t *ev;
        size_t ev_len;
        uint64_t in_pack = 0;
        while ((rc = col_pack_next(rec.value, rec.value_len, &eoff, &ev, &ev_len)) == 1) {
            in_pack++;
        }
        if (rc != 0 || in_pack == 0) {
            return TC_EPARSE;
        }
        nev += in_pack;
    }
    if (rc != 0 || n != tc_be32_get(data + 4)) {
        return TC_EPARSE;
    }
    *count = n;
    if (events) {
        *events = nev;
    }
    return 0;
}
