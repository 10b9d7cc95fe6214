/*
 * tocsin_batch.h — building an encoded tocsin.v1.Batch event by event, and reading a
 * collector's tocsin.v1.Ack.
 *
 * Pure module: plain structs in, bytes out. The background thread appends each event as it
 * takes it from the queue (so the queue slot is handed back at once), and seals the batch
 * with its sequence number and loss figures when it is due. Protobuf fields may come in
 * any order, so the events are written first and the batch's own fields after them.
 */
#ifndef TOCSIN_BATCH_H
#define TOCSIN_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin_event.h"

/* Who is sending: copied into every event (service .. host, unless the event carries its
 * own, as crash reports do) and every batch. Borrowed strings; they must outlive the
 * encoder. Client-wide tags go into every event whose own tags do not set the same key. */
typedef struct {
    const char *service;
    const char *environment;
    const char *release;
    const char *host;
    const char *api_key;
    const char *sdk;
} tocsin_identity_t;

/* The client's loss figures since its previous batch (tocsin.v1.ClientCounters). */
typedef struct {
    uint64_t dropped_queue_full;
    uint64_t dropped_oversize;
    uint64_t sampled_out;
    uint64_t retried;
    uint64_t rejected;
    uint64_t dropped_before_send;
} tocsin_loss_t;

/* Most bytes one encoded event can take (a full record, a full edit space, tags and
 * identity): a batch stops taking events when fewer than this are left below max_bytes,
 * so that it never exceeds max_bytes. */
#define TOCSIN_EVENT_RESERVE (256 * 1024)

typedef struct tocsin_encoder tocsin_encoder_t;

/* Returns NULL when max_bytes is under 2 × TOCSIN_EVENT_RESERVE or memory runs out. Batches
 * are numbered from first_sequence on, one by one. */
tocsin_encoder_t *tocsin_encoder_new(const tocsin_identity_t *identity, size_t max_bytes,
                                     uint64_t first_sequence);
void tocsin_encoder_destroy(tocsin_encoder_t **self_p);

/*
 * Appends `ev` with the 16-byte event id `id` (ev's own id wins when it has one) to the
 * batch under construction. Returns 0; TOCSIN_ENOMEM (the buffer could not grow: nothing
 * was appended); TOCSIN_ETOOBIG (the event encodes to more than TOCSIN_EVENT_RESERVE:
 * nothing was appended — cannot happen for events built by the library).
 */
int tocsin_encoder_add(tocsin_encoder_t *self, const tocsin_event_t *ev, const uint8_t id[16]);

/* Events appended since the last seal, and whether one more is sure to fit. */
uint32_t tocsin_encoder_events(const tocsin_encoder_t *self);
bool tocsin_encoder_has_room(const tocsin_encoder_t *self);

/*
 * Finishes the batch with its loss figures. Its sequence number, API key and SDK were
 * written first, when its first event came (so that a collector that refuses the batch
 * without decoding it whole can still name it in its Ack). On success returns 0 and hands
 * the encoded batch to the caller (*out, malloc'd, *out_len bytes; the caller frees it)
 * with its sequence in *sequence; the encoder starts an empty batch with the next number.
 * Returns TOCSIN_EINVAL for a batch without events (the collector refuses those), and
 * TOCSIN_ENOMEM with the batch left as it was.
 */
int tocsin_encoder_seal(tocsin_encoder_t *self, const tocsin_loss_t *loss, uint8_t **out,
                        size_t *out_len, uint64_t *sequence);

/* Largest Ack the client reads; a longer reply is invalid. */
#define TOCSIN_ACK_MAX_BYTES 65536

typedef enum {
    TOCSIN_ACK_STORED = 1,
    TOCSIN_ACK_RETRY_AFTER = 2,
    TOCSIN_ACK_REJECTED = 3,
} tocsin_ack_status_t;

typedef struct {
    uint64_t sequence;
    tocsin_ack_status_t status;
    uint32_t retry_after_ms;
    uint32_t accepted;
    char reason[256]; /* cut to fit, valid UTF-8, NUL-terminated */
} tocsin_ack_t;

/* Decodes an Ack. Returns 0, or TOCSIN_EINVAL when the bytes are not a protobuf Ack, are
 * longer than TOCSIN_ACK_MAX_BYTES, or carry no known status. */
int tocsin_ack_decode(const void *data, size_t len, tocsin_ack_t *out);

#endif
