/*
 * col_pack.h — the events of one batch packed into Kafka records: one record per Kafka key.
 *
 * librdkafka spends about a microsecond on every record it produces, whatever its size, and
 * every consumer pays per record too. A client batch holds hundreds of events of a handful
 * of series, so the collector writes one record per (topic, key) of a batch — the events of
 * one request route, metric, issue or log stream, in the order the client sent them — as a
 * tocsin.v1.EventPack (col_wire.h, COL_FORMAT_PACK). Order per key is kept: a key's events
 * stay in batch order inside its record, and records of one key are produced in order. A
 * record's value stays under `max_value_bytes` (a key with more events gets several records,
 * in order), unless a single event is larger, which then gets a record of its own.
 *
 * Usage per batch: col_packer_add / col_packer_add_event for every event, then
 * col_packer_finish, which appends the records to a col_records_t and empties the packer.
 *
 * Pure (no I/O, no clock); not thread-safe: one packer per thread.
 */
#ifndef COL_PACK_H
#define COL_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "col_wire.h"
#include "tocsin/v1/event.pb-c.h"

typedef struct col_packer col_packer_t;

/* Smallest and largest record value a packer may be asked for. */
#define COL_PACK_MIN_BYTES 1024
#define COL_PACK_MAX_BYTES (64u * 1024 * 1024)

/* A packer whose records hold at most `max_value_bytes` (COL_PACK_MIN_BYTES to
 * COL_PACK_MAX_BYTES) of events each. NULL when out of memory or out of range. */
col_packer_t *col_packer_new(size_t max_value_bytes);

/* Frees the packer. Safe to call twice; sets *self_p to NULL. */
void col_packer_destroy(col_packer_t **self_p);

/* Forgets every event added since the last finish (a batch given up half-way). */
void col_packer_reset(col_packer_t *self);

/*
 * Adds one event under `key` of `topic`: its bytes are `value` then `tail` (an event as the
 * client encoded it and the collector's fields after it; `tail` may be NULL with 0). Both
 * are copied. Returns 0, TC_EINVAL (key above COL_RECORD_KEY_MAX, event above 4 GiB) or
 * TC_ENOMEM (the event is not added).
 */
int col_packer_add(col_packer_t *self, col_topic_t topic, const void *key, size_t key_len,
                   const void *value, size_t value_len, const void *tail, size_t tail_len);

/* The same for a decoded event, encoded here. Returns 0, TC_EINVAL or TC_ENOMEM. */
int col_packer_add_event(col_packer_t *self, col_topic_t topic, const void *key, size_t key_len,
                         const Tocsin__V1__Event *ev);

/* Events added since the last finish, and the (topic, key) groups they form. */
size_t col_packer_events(const col_packer_t *self);
size_t col_packer_groups(const col_packer_t *self);

/*
 * Appends the packed records to `records`: the groups in the order their first event came,
 * each group's events in the order they came, a group split into several records where its
 * events pass max_value_bytes. Empties the packer (also on failure). Returns 0 or TC_ENOMEM
 * (`records` may then hold some of the records: the caller drops it).
 */
int col_packer_finish(col_packer_t *self, col_records_t *records);

#endif
