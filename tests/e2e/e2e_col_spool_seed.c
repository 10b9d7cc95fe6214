/*
 * e2e_col_spool_seed — writes one spool entry the way collectors wrote them before packing:
 * a records buffer whose records are each one encoded tocsin.v1.Event (format byte 0, no
 * "tocsin.format" header once produced), so an end-to-end test can check that a collector of
 * today replays such an entry. The events are metrics "seq" 1..COUNT of SERVICE (the
 * convention e2e_col_consume checks order by), keyed service "\0" "seq" on tocsin.events,
 * with received_us and collector_id set as a collector sets them.
 *
 * usage: e2e_col_spool_seed SPOOL_DIR SERVICE COUNT
 * The spool must not be open in a running collector. Exit 0 when the entry was written.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "col_spool.h"
#include "col_wire.h"
#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/event.pb-c.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: e2e_col_spool_seed SPOOL_DIR SERVICE COUNT\n");
        return 2;
    }
    const char *service = argv[2];
    long count = strtol(argv[3], NULL, 10);
    if (count < 1 || count > 100000 || strlen(service) > 200) {
        fprintf(stderr, "e2e_col_spool_seed: COUNT 1..100000, SERVICE up to 200 bytes\n");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    char key[256];
    size_t key_len = strlen(service) + 1 + strlen("seq");
    memcpy(key, service, strlen(service) + 1);
    memcpy(key + strlen(service) + 1, "seq", 3);
    col_records_t records;
    col_records_init(&records);
    int rc = 0;
    for (long i = 1; i <= count && rc == 0; i++) {
        Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
        Tocsin__V1__Metric met = TOCSIN__V1__METRIC__INIT;
        uint8_t id[16];
        rc = tc_random_bytes(id, sizeof(id));
        if (rc != 0) {
            break;
        }
        ev.event_id.data = id;
        ev.event_id.len = sizeof(id);
        ev.time_us = now;
        ev.service = (char *)service;
        ev.environment = "e2e";
        ev.host = "e2e-host";
        ev.received_us = now;
        ev.collector_id = "before-packing";
        met.name = "seq";
        met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
        met.value = (double)i;
        ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        ev.metric = &met;
        rc = col_records_add_event(&records, COL_TOPIC_EVENTS, key, key_len, &ev);
    }
    uint32_t n = 0;
    uint64_t events = 0;
    if (rc == 0) {
        rc = col_records_check(records.data, records.len, &n, &events);
    }
    col_spool_t *spool = NULL;
    if (rc == 0) {
        int err = 0;
        spool = col_spool_open(argv[1], 64u << 20, &err);
        rc = spool ? 0 : (err ? err : TC_ELMDB);
    }
    size_t appended = 0;
    if (rc == 0) {
        const uint8_t *values[1] = {records.data};
        size_t lens[1] = {records.len};
        rc = col_spool_commit(spool, NULL, 0, NULL, 0, values, lens, 1, &appended, NULL);
    }
    col_spool_close(&spool);
    col_records_fini(&records);
    if (rc != 0 || appended != 1) {
        fprintf(stderr, "e2e_col_spool_seed: %s\n", rc ? tc_strerror(rc) : "spool full");
        return 1;
    }
    printf("{\"records\":%" PRIu32 ",\"events\":%" PRIu64 "}\n", n, events);
    return 0;
}
