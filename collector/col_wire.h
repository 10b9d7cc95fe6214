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

/* The client's own loss figures carried by a batch (tocsin.v1.ClientCounters). */
typedef struct {
    uint64_t dropped_queue_full;
    uint64_t dropped_oversize;
    uint64_t sampled_out;
    uint64_t retried;
    uint64_t rejected;
    uint64_t dropped_before_send;
} col_client_counters_t;

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

/* The Kafka topics the collector writes: events (errors, requests, metrics) and logs. */
typedef enum { COL_TOPIC_EVENTS = 0, COL_TOPIC_LOGS = 1, COL_TOPIC_COUNT } col_topic_t;

/*
 * What a record's value holds (docs/collector.md, "Record format"):
 *   COL_FORMAT_EVENT  one encoded tocsin.v1.Event; the record has no format header. What
 *                     collectors wrote before packing (spool entries of that time replay so).
 *   COL_FORMAT_PACK   an encoded tocsin.v1.EventPack: the events of one batch that share the
 *                     record's key, in order; the record carries the header
 *                     COL_FORMAT_HEADER = COL_FORMAT_PACK_NAME.
 */
typedef enum { COL_FORMAT_EVENT = 0, COL_FORMAT_PACK = 1, COL_FORMAT_COUNT } col_format_t;

#define COL_FORMAT_HEADER "tocsin.format"
#define COL_FORMAT_PACK_NAME "tocsin.v1.EventPack"

/*
 * A batch of Kafka records, as the collector produces them and as its spool stores them:
 * one buffer, so that librdkafka can point into it without copying, and a spool entry is the
 * buffer as it is. Layout (integers big-endian):
 *   header   [u8 version = 1][3 bytes 0][u32 record count]
 *   record   [u8 topic][u8 format][u16 key length][u32 value length][key][value]
 * `format` is a col_format_t (0 in buffers written before packing).
 */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    uint32_t count;
} col_records_t;

#define COL_RECORDS_HEADER 8
#define COL_RECORD_HEADER 8
/* Largest key: service, a NUL and a name, each bounded by the collector's limits. */
#define COL_RECORD_KEY_MAX 65535

/* One record read back from a buffer; pointers into that buffer. */
typedef struct {
    col_topic_t topic;
    col_format_t format;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
} col_record_t;

/* An empty set (no allocation yet). */
void col_records_init(col_records_t *r);

/* Frees the buffer; the set is empty again and may be reused. */
void col_records_fini(col_records_t *r);

/* Appends one COL_FORMAT_EVENT record whose value is `ev` encoded (protobuf-c pack, straight
 * into the buffer). Returns 0, TC_EINVAL for a key above COL_RECORD_KEY_MAX, or TC_ENOMEM. */
int col_records_add_event(col_records_t *r, col_topic_t topic, const void *key, size_t key_len,
                          const Tocsin__V1__Event *ev);

/* Appends one COL_FORMAT_EVENT record whose value is `value` followed by `tail` (an event as
 * the client encoded it, then the collector's fields, which win over the client's as later
 * fields do in protobuf). Returns 0, TC_EINVAL (key too long, value above 4 GiB) or
 * TC_ENOMEM. */
int col_records_add_parts(col_records_t *r, col_topic_t topic, const void *key, size_t key_len,
                          const void *value, size_t value_len, const void *tail, size_t tail_len);

/* Appends one COL_FORMAT_EVENT record from raw bytes. Returns 0, TC_EINVAL (key too long,
 * value above 4 GiB) or TC_ENOMEM. */
int col_records_add(col_records_t *r, col_topic_t topic, const void *key, size_t key_len,
                    const void *value, size_t value_len);

/*
 * Appends one record of `format` with `key` and room for a value of `value_len` bytes, which
 * the caller writes at *value before the buffer changes again. Returns 0, TC_EINVAL (key too
 * long, value above 4 GiB, unknown format) or TC_ENOMEM (nothing appended).
 */
int col_records_reserve(col_records_t *r, col_topic_t topic, col_format_t format, const void *key,
                        size_t key_len, size_t value_len, uint8_t **value);

/*
 * Reads the record at *offset of the `len` bytes at `data` (a whole buffer, header
 * included; start with *offset = 0) and advances *offset. Returns 1 with *rec filled, 0 at
 * the end, or TC_EPARSE when the buffer is not a well-formed records buffer. Every length is
 * checked against `len`, so a corrupt spool entry is refused, never overrun.
 */
int col_records_next(const uint8_t *data, size_t len, size_t *offset, col_record_t *rec);

/*
 * Checks a whole buffer (version, every record within bounds, topics and formats known, every
 * pack well framed and not empty, the count in the header matching). Returns 0 with *count
 * (records) and *events (when not NULL: events, a pack counting its entries) set, or
 * TC_EPARSE.
 */
int col_records_check(const uint8_t *data, size_t len, uint32_t *count, uint64_t *events);

/* Bytes an event of `len` bytes takes inside an EventPack: its tag, its length, itself. */
size_t col_pack_entry_size(size_t len);

/* Writes the tag and length of an entry of `len` bytes at `p` (room: col_pack_entry_size(len)
 * - len); returns the bytes written. The event's bytes follow. */
size_t col_pack_entry_head(uint8_t *p, size_t len);

/*
 * Reads the entry at *offset of an EventPack value (start with *offset = 0): 1 with *event
 * and *event_len set (the encoded tocsin.v1.Event) and *offset advanced, 0 at the end,
 * TC_EPARSE when the value is not a sequence of field-1 length-delimited entries within
 * bounds.
 */
int col_pack_next(const uint8_t *value, size_t len, size_t *offset, const uint8_t **event,
                  size_t *event_len);

#endif
