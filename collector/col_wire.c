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

int col_event_encode(Tocsin__V1__Event *ev, int64_t received_us, const char *collector_id,
                     uint8_t **out, size_t *len)
{
    assert(ev && collector_id && out && len);
    /* The decoder owns ev->collector_id; swap ours in for the encoding only, so that
     * free_unpacked later frees what it allocated and nothing else. */
    int64_t saved_received = ev->received_us;
    char *saved_id = ev->collector_id;
    ev->received_us = received_us;
    ev->collector_id = (char *)collector_id;
    size_t n = tocsin__v1__event__get_packed_size(ev);
    uint8_t *buf = malloc(n ? n : 1);
    int rc = TC_ENOMEM;
    if (buf) {
        *len = tocsin__v1__event__pack(ev, buf);
        *out = buf;
        rc = 0;
    }
    ev->received_us = saved_received;
    ev->collector_id = saved_id;
    return rc;
}
