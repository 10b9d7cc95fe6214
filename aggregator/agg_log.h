/*
 * agg_log.h — log records as the aggregator stores them: the record's level, message,
 * logger, structured fields, environment, release and host, in a compact binary value
 * (the service and time are in the LMDB key), and how a query matches them.
 *
 * A pure module: no I/O, no clock, no global state. The decoder treats its input as hostile.
 */
#ifndef AGG_LOG_H
#define AGG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agg_wire.h"
#include "tocsin/v1/event.pb-c.h"

#define AGG_LOG_FIELDS_MAX 64           /* fields kept per record */
#define AGG_LOG_FIELD_MAX 4096          /* bytes of a field's key or value kept */
#define AGG_LOG_MESSAGE_MAX (64 * 1024) /* bytes of message kept */
#define AGG_LOG_STORED_MAX (512 * 1024) /* a stored value above this is refused */

/* A stored record; the strings point into the value it was decoded from. */
typedef struct {
    int level; /* tocsin.v1.Level; unspecified is stored as INFO */
    agg_str_t environment;
    agg_str_t release;
    agg_str_t host;
    agg_str_t logger;
    agg_str_t message;
    uint32_t nfields;
    agg_str_t keys[AGG_LOG_FIELDS_MAX];
    agg_str_t values[AGG_LOG_FIELDS_MAX];
} agg_log_t;

/*
 * Encodes the log record of a decoded event (body LOG; its strings already checked by
 * agg_wire_scan) for LMDB: strings cut to their bounds on a UTF-8 boundary, at most
 * AGG_LOG_FIELDS_MAX fields, fields whose key or value is not UTF-8 left out. Returns 0 with
 * *out (malloc'd, the caller frees) and *len, TC_EINVAL for an event without a log body, or
 * TC_ENOMEM.
 */
int agg_log_encode(const Tocsin__V1__Event *ev, uint8_t **out, size_t *len);

/* Decodes a stored value, checking lengths, UTF-8 and the level. Returns 0, TC_ETOOBIG or
 * TC_EPARSE. */
int agg_log_decode(const uint8_t *data, size_t len, agg_log_t *out);

/* True when the record's level is at least `min_level` and `q` (NULL or "" for any) occurs
 * in its message, logger or a field's value (case-sensitive). */
bool agg_log_match(const agg_log_t *l, int min_level, const char *q);

#endif
