/*
 * col_wire.h — the collector's side of the wire, as pure functions: the shape of a message
 * on the ROUTER socket, the Ack it answers with, and the record it writes to Kafka.
 *
 * A client's DEALER sends one Batch per message. The ROUTER sees it as
 * [identity][payload], or [identity][empty][payload] when the client put the REQ-style
 * empty delimiter in front; the Ack goes back in the same shape.
 */
#ifndef COL_WIRE_H
#define COL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin/v1/transport.pb-c.h"

/* ZeroMQ routing ids are at most 255 bytes. */
#define COL_IDENTITY_MAX 255

/* One frame of a multipart message; borrowed, not owned. */
typedef struct {
    const void *data;
    size_t len;
} col_frame_t;

/* Who sent a message and how to answer: the routing id and whether the empty delimiter
 * frame was used. A value type: copy it freely. */
typedef struct {
    uint8_t identity[COL_IDENTITY_MAX];
    size_t identity_len;
    bool delimited;
} col_peer_t;

/*
 * Reads the shape of a message received on the ROUTER: `frames[0]` is the routing id the
 * socket added, then either one payload frame, or an empty frame and one payload frame.
 * On 0, *peer is filled and *payload points at the payload frame (borrowed from `frames`).
 * Returns TC_EINVAL for any other shape — no frames, an id longer than COL_IDENTITY_MAX,
 * no payload, or extra frames; *peer is still filled when an id is there (so the sender
 * can be told), with `delimited` set when the second frame is empty.
 */
int col_envelope_parse(const col_frame_t *frames, size_t nframes, col_peer_t *peer,
                       col_frame_t *payload);

/* What one Ack says. `reason` is borrowed; NULL means none. */
typedef struct {
    uint64_t sequence;
    Tocsin__V1__Ack__Status status;
    uint32_t retry_after_ms;
    const char *reason;
    uint32_t accepted;
} col_ack_t;

/* The longest reason sent in an Ack; longer ones are cut at a UTF-8 character boundary. */
#define COL_ACK_REASON_MAX 256

/*
 * Encodes `ack` as a tocsin.v1.Ack into a new buffer. A reason that is not valid UTF-8 is
 * replaced by "(reason not UTF-8)"; one above COL_ACK_REASON_MAX bytes is cut.
 * Returns 0 with *out (the caller frees it with free) and *len set, or TC_ENOMEM.
 */
int col_ack_encode(const col_ack_t *ack, uint8_t **out, size_t *len);

/*
 * Encodes one event for Kafka with `received_us` and `collector_id` set, leaving `ev` as it
 * was (the collector's fields are set only for the encoding, so the batch can still be freed
 * with col_batch_free). `collector_id` is borrowed.
 * Returns 0 with *out (the caller frees it with free) and *len set, or TC_ENOMEM.
 */
int col_event_encode(Tocsin__V1__Event *ev, int64_t received_us, const char *collector_id,
                     uint8_t **out, size_t *len);

#endif
