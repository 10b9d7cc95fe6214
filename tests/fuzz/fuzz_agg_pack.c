/*
 * Fuzz target agg_pack: the aggregator's reading of a Kafka record of tocsin.events or
 * tocsin.logs as a whole. The first input byte stands for the record's "tocsin.format"
 * header (0: none, a single Event; 1: "tocsin.v1.EventPack"; 2: another name), the rest is
 * the record's value. The record is split into events the way agg_store does it
 * (agg_format_of, agg_pack_next) and every event is scanned (agg_wire_scan) on its own.
 *
 * Checked: the walk stays inside the value and always moves forward; an unknown format is
 * never read; a pack that protobuf-c decodes without unknown fields walks to the same number
 * of events; every event the scanner accepts has the id agg_wire_scan_id finds, and a weight
 * of at least 1 (exactly 1 unless sampled); a refused event always names a reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_wire.h"
#include "tc_error.h"
#include "tocsin/v1/event.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (assert is compiled out under NDEBUG). */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void scan_one(const uint8_t *ev, size_t len)
{
    agg_event_t e;
    const char *reason = NULL;
    if (agg_wire_scan(ev, len, &e, &reason) != 0) {
        CHECK(reason != NULL);
        return;
    }
    const uint8_t *id = NULL;
    int64_t recv = 0;
    CHECK(agg_wire_scan_id(ev, len, &id, &recv) == 0);
    CHECK(id == e.event_id && recv == e.received_us);
    CHECK(e.weight >= 1 && e.weight <= 1000000);
    CHECK(e.sample_rate > 0 && e.sample_rate < 1 ? 1 : e.weight == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    static const char *const names[] = {NULL, AGG_FORMAT_PACK_NAME, "tocsin.v9.Other"};
    const char *name = names[data[0] % 3];
    agg_format_t format = agg_format_of(name != NULL, name, name ? strlen(name) : 0);
    CHECK((int)format == data[0] % 3);
    const uint8_t *value = data + 1;
    size_t len = size - 1;
    if (format == AGG_FORMAT_UNKNOWN) {
        return 0; /* refused whole, never read */
    }
    if (format == AGG_FORMAT_EVENT) {
        scan_one(value, len);
        return 0;
    }
    size_t off = 0, n = 0;
    const uint8_t *ev = NULL;
    size_t ev_len = 0;
    int rc;
    while ((rc = agg_pack_next(value, len, &off, &ev, &ev_len)) == 1) {
        CHECK(ev >= value && ev_len <= len && ev + ev_len <= value + len);
        CHECK(off <= len && value + off >= ev + ev_len);
        n++;
        scan_one(ev, ev_len);
    }
    CHECK(rc == 0 || rc == TC_EPARSE);
    if (rc == 0) {
        CHECK(off == len);
    }
    /* protobuf-c, on a pack it reads without unknown fields, finds the same events. (It
     * also decodes each event, so it refuses some packs whose framing is fine.) */
    Tocsin__V1__EventPack *pb = tocsin__v1__event_pack__unpack(NULL, len, value);
    if (pb) {
        if (pb->base.n_unknown_fields == 0) {
            CHECK(rc == 0 && n == pb->n_events);
        }
        tocsin__v1__event_pack__free_unpacked(pb, NULL);
    }
    return 0;
}
