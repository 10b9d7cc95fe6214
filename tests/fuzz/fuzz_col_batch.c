/*
 * Fuzz target col_batch: the collector's path for one payload, from bytes to Kafka records —
 * the wire walk that validates (col_batch_decode), then for an accepted batch, per event, the
 * path the daemon takes: as the client encoded it with the collector's fields appended
 * (col_enrich_raw) when scrubbing would change nothing, else decoded, scrubbed, enriched and
 * encoded again — with default and strict scrub rules, default and tight limits. Checked:
 *   - what the walk accepts, protobuf-c decodes too, with the same events, services and
 *     bodies (the walk and protobuf-c read the bytes alike);
 *   - when the dry scrub checks say an event is clean, scrubbing it changes nothing;
 *   - the events are packed one record per key (col_pack), the records buffer passes its own
 *     check with every event counted, and every event of every pack decodes again with the
 *     collector's fields set, a grouping id on every error, and its record's key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_arena.h"
#include "col_enrich.h"
#include "col_pack.h"
#include "col_scrub.h"
#include "col_validate.h"
#include "col_wire.h"
#include "tc_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (assert is compiled out under NDEBUG). */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static col_arena_t *arena;
static col_packer_t *packer;
static col_scrub_rules_t *rules_default;
static col_scrub_rules_t *rules_strict;

static void setup(void)
{
    if (arena) {
        return;
    }
    arena = col_arena_new(64 * 1024 * 1024);
    packer = col_packer_new(COL_PACK_MIN_BYTES);
    rules_default = col_scrub_rules_default();
    static const char strict[] = "emails = hash\nips = mask\nuser_ids = hash\n"
                                 "extra_secret_keys = id, name\nsecrets = remove\n";
    char err[128];
    CHECK(col_scrub_rules_parse(strict, sizeof(strict) - 1, &rules_strict, err, sizeof(err)) == 0);
    CHECK(arena && packer && rules_default && rules_strict);
}

static bool string_clean(void *ctx, col_string_kind_t kind, col_span_t key, col_span_t value)
{
    const col_scrub_rules_t *rules = ctx;
    if (kind == COL_STRING_TAG || kind == COL_STRING_LOG_FIELD) {
        return col_scrub_pair_clean(rules, key.p, key.len, value.p, value.len);
    }
    return col_scrub_span_clean(rules, value.p, value.len);
}

/* The walk and protobuf-c read the same bytes alike. */
static void compare_with_protobuf_c(const uint8_t *data, size_t size, const col_batch_t *b)
{
    static const uint8_t nothing[1];
    Tocsin__V1__Batch *pb = tocsin__v1__batch__unpack(NULL, size, size ? data : nothing);
    CHECK(pb);
    CHECK(pb->n_events == b->n_events);
    CHECK(pb->sequence == b->sequence);
    for (size_t i = 0; i < b->n_events; i++) {
        const Tocsin__V1__Event *ev = pb->events[i];
        const col_event_t *e = &b->events[i];
        CHECK(ev->body_case == e->body);
        CHECK(strlen(ev->service) == e->service.len);
        CHECK(memcmp(ev->service, e->service.p, e->service.len) == 0);
        CHECK(ev->time_us == e->time_us);
        CHECK(ev->event_id.len == 16);
    }
    tocsin__v1__batch__free_unpacked(pb, NULL);
}

static void produce(col_batch_t *b, const col_limits_t *lim, const col_scrub_rules_t *rules)
{
    CHECK(b->n_events >= 1 && b->n_events <= lim->max_events);
    col_enrich_config_t cfg = {.collector_id = "fuzz-collector",
                               .max_future_us = 300000000LL,
                               .max_past_us = 86400000000LL};
    col_records_t records;
    col_records_init(&records);
    uint8_t key[COL_KEY_MAX];
    col_scrub_stats_t ss = {0};
    col_enrich_stats_t es = {0};
    for (size_t i = 0; i < b->n_events; i++) {
        col_event_t *e = &b->events[i];
        col_topic_t topic;
        size_t key_len = 0;
        bool raw = e->simple && !e->flagged &&
                   col_scrub_user_id_clean(rules, e->user_id.p, e->user_id.len) &&
                   !(e->body == TOCSIN__V1__EVENT__BODY_ERROR && e->grouping_hash.len == 0);
        if (raw) {
            uint8_t tail[COL_TAIL_MAX];
            size_t tail_len = 0;
            CHECK(col_enrich_raw(&cfg, e, 1795000000000000LL, &es, &topic, key, sizeof(key),
                                 &key_len, tail, sizeof(tail), &tail_len) == 0);
            if (col_packer_add(packer, topic, key, key_len, e->raw, e->raw_len, tail, tail_len) !=
                0) {
                goto out;
            }
            /* The dry checks said clean: real scrubbing must agree. */
            if (col_event_decode(e, arena) != 0) {
                goto out;
            }
            col_scrub_stats_t probe = {0};
            if (col_scrub_event(rules, e->ev, arena, &probe) != 0) {
                goto out;
            }
            for (int k = 0; k < COL_SCRUB_KIND_COUNT; k++) {
                CHECK(probe.counts[k] == 0);
            }
            continue;
        }
        if (col_event_decode(e, arena) != 0) {
            goto out;
        }
        Tocsin__V1__Event *ev = e->ev;
        CHECK(ev->event_id.len == 16);
        CHECK(ev->service && ev->service[0]);
        CHECK(ev->body_case != TOCSIN__V1__EVENT__BODY__NOT_SET);
        if (col_scrub_event(rules, ev, arena, &ss) != 0) {
            goto out; /* arena exhausted: nothing more to check */
        }
        int rc = col_enrich_event(&cfg, ev, 1795000000000000LL, arena, &es, &topic, key,
                                  sizeof(key), &key_len);
        if (rc == TC_ENOMEM) {
            goto out;
        }
        CHECK(rc == 0);
        CHECK(key_len >= strlen(ev->service));
        CHECK(memcmp(key, ev->service, strlen(ev->service)) == 0);
        CHECK((topic == COL_TOPIC_LOGS) == (ev->body_case == TOCSIN__V1__EVENT__BODY_LOG));
        if (col_packer_add_event(packer, topic, key, key_len, ev) != 0) {
            goto out;
        }
    }
    CHECK(col_packer_events(packer) == b->n_events);
    if (col_packer_finish(packer, &records) != 0) {
        goto out;
    }
    uint32_t count = 0;
    uint64_t events = 0;
    CHECK(col_records_check(records.data, records.len, &count, &events) == 0);
    CHECK(events == b->n_events && count >= 1 && count <= b->n_events);
    size_t off = 0;
    col_record_t rec;
    while (col_records_next(records.data, records.len, &off, &rec) == 1) {
        CHECK(rec.format == COL_FORMAT_PACK);
        size_t eoff = 0;
        const uint8_t *ev_bytes;
        size_t ev_len;
        while (col_pack_next(rec.value, rec.value_len, &eoff, &ev_bytes, &ev_len) == 1) {
            Tocsin__V1__Event *back = tocsin__v1__event__unpack(NULL, ev_len, ev_bytes);
            CHECK(back);
            CHECK(back->received_us == 1795000000000000LL);
            CHECK(strcmp(back->collector_id, "fuzz-collector") == 0);
            CHECK(back->time_us != 0);
            size_t slen = strlen(back->service);
            CHECK(rec.key_len >= slen && memcmp(rec.key, back->service, slen) == 0);
            if (back->body_case == TOCSIN__V1__EVENT__BODY_ERROR && back->error) {
                CHECK(back->error->grouping_hash && back->error->grouping_hash[0]);
            }
            tocsin__v1__event__free_unpacked(back, NULL);
        }
    }
out:
    col_packer_reset(packer);
    col_records_fini(&records);
}

static void run(const uint8_t *data, size_t size, const col_limits_t *lim)
{
    for (int pass = 0; pass < 2; pass++) {
        col_batch_t *b = NULL;
        col_reject_t rej;
        const col_scrub_rules_t *rules = pass == 0 ? rules_default : rules_strict;
        int rc = col_batch_decode_inspect(size ? data : NULL, size, lim, arena, string_clean,
                                          (void *)rules, &b, &rej);
        if (rc == 0) {
            CHECK(b && rej.reason == COL_REASON_NONE);
            /* The inspection during the walk and a second walk agree. */
            for (size_t i = 0; i < b->n_events; i++) {
                if (b->events[i].simple) {
                    CHECK(b->events[i].flagged ==
                          !col_event_each(&b->events[i], string_clean, (void *)rules));
                }
            }
            if (pass == 0) {
                compare_with_protobuf_c(data, size, b);
            }
            produce(b, lim, pass == 0 ? rules_default : rules_strict);
            col_arena_reset(arena);
            continue;
        }
        col_arena_reset(arena);
        CHECK(rc == TC_EINVAL && !b);
        CHECK(rej.reason > COL_REASON_NONE && rej.reason < COL_REASON_COUNT);
        CHECK(rej.message[0] != '\0');
        CHECK(memchr(rej.message, '\0', sizeof(rej.message)) != NULL);
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    col_limits_t lim = col_limits_default();
    run(data, size, &lim);
    col_limits_t tight = {
        .max_frame_bytes = 512,
        .max_events = 2,
        .max_short_string = 8,
        .max_long_string = 32,
        .max_tags = 1,
        .max_frames = 1,
        .max_log_fields = 1,
        .max_fingerprint_parts = 1,
    };
    run(data, size, &tight);
    return 0;
}
