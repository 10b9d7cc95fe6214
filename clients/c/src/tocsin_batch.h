/*
 * tocsin_batch.h — turning records into an encoded tocsin.v1.Batch, and reading a
 * collector's tocsin.v1.Ack.
 *
 * Pure module: plain structs in, bytes out; the random event ids come from the generator
 * passed in, so tests are exact. The encoder keeps its scratch space for batch_max events
 * from creation on, so encoding allocates only the output buffer.
 */
#ifndef TOCSIN_BATCH_H
#define TOCSIN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "tocsin_record.h"
#include "tocsin_rng.h"

/* Who is sending: copied into every event (service .. host) and every batch. Borrowed
 * strings; they must outlive the encoder. */
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
    uint64_t retried;
    uint64_t rejected;
} tocsin_loss_t;

typedef struct tocsin_encoder tocsin_encoder_t;

/* Returns NULL when max_events is 0, max_bytes is under 4096, or memory runs out. */
tocsin_encoder_t *tocsin_encoder_new(const tocsin_identity_t *identity, uint32_t max_events,
                                     size_t max_bytes);
void tocsin_encoder_destroy(tocsin_encoder_t **self_p);

/*
 * Encodes a Batch with `sequence`, the loss figures and the first records of recs[0..n)
 * (n <= max_events): as many as keep the encoding within max_bytes, and always at least
 * one. Each event gets a fresh 16-byte event_id from `rng`.
 * On success returns 0, sets *out to a malloc'd buffer of *out_len bytes (the caller frees
 * it) and *n_used to the records taken. Returns TOCSIN_EINVAL when n is 0 or above
 * max_events, TOCSIN_ENOMEM when the buffer cannot be allocated.
 */
int tocsin_encoder_encode(tocsin_encoder_t *self, uint64_t sequence, const tocsin_loss_t *loss,
                          const tocsin_record_t *recs, size_t n, tocsin_rng_t *rng, uint8_t **out,
                          size_t *out_len, size_t *n_used);

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
