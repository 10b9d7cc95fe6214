/* Unit tests for clients/c/src/tocsin_record.c: UTF-8 sanitising copy and cutting, records
 * written through a writer over real queue slots (one slot, chains that wrap around the
 * ring) and read back, and malformed records refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_record.h"

typedef struct {
    const char *name;
    const char *in;
    size_t in_len;
    size_t cap;
    const char *want;
    bool want_truncated;
} utf8_case_t;

static void test_utf8_copy_table(void **state)
{
    (void)state;
    static const utf8_case_t cases[] = {
        {"ascii", "hello", 5, 16, "hello", false},
        {"empty", "", 0, 16, "", false},
        {"two-byte", "caf\xc3\xa9", 5, 16, "caf\xc3\xa9", false},
        {"three-byte", "\xe2\x82\xac", 3, 16, "\xe2\x82\xac", false},
        {"four-byte", "\xf0\x9f\x94\xa5", 4, 16, "\xf0\x9f\x94\xa5", false},
        {"lone continuation",
         "a\x80"
         "b",
         3, 16, "a?b", false},
        {"latin-1 byte", "caf\xe9!", 5, 16, "caf?!", false},
        {"overlong two-byte", "\xc0\xaf", 2, 16, "??", false},
        {"overlong three-byte", "\xe0\x80\xaf", 3, 16, "???", false},
        {"surrogate", "\xed\xa0\x80", 3, 16, "???", false},
        {"above U+10FFFF", "\xf4\x90\x80\x80", 4, 16, "????", false},
        {"f5 lead", "\xf5\x80\x80\x80", 4, 16, "????", false},
        {"cut sequence at end", "ab\xe2\x82", 4, 16, "ab??", false},
        {"truncated ascii", "abcdef", 6, 4, "abcd", true},
        {"no split of a character", "ab\xe2\x82\xac", 5, 4, "ab", true},
        {"exact fit", "ab\xe2\x82\xac", 5, 5, "ab\xe2\x82\xac", false},
        {"truncated after replacement", "\xff\xff\xff", 3, 2, "??", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const utf8_case_t *c = &cases[i];
        char out[32];
        memset(out, 'X', sizeof(out));
        bool truncated = !c->want_truncated;
        size_t n = tocsin_utf8_copy(out, c->cap, c->in, c->in_len, &truncated);
        out[n] = '\0';
        if (strcmp(out, c->want) != 0 || truncated != c->want_truncated) {
            fail_msg("case %s: got \"%s\" truncated=%d", c->name, out, truncated);
        }
        assert_true(n <= c->cap);
    }
}

typedef struct {
    const char *name;
    const char *in;
    size_t limit;
    size_t want;
} cut_case_t;

static void test_utf8_cut_table(void **state)
{
    (void)state;
    static const cut_case_t cases[] = {
        {"fits", "abc", 5, 3},
        {"ascii cut", "abcdef", 4, 4},
        {"before a euro sign", "ab\xe2\x82\xac", 4, 2},
        {"after a euro sign",
         "ab\xe2\x82\xac"
         "c",
         5, 5},
        {"ill-formed bytes count one each", "\xff\xff\xff", 2, 2},
        {"zero", "abc", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const cut_case_t *c = &cases[i];
        size_t got = tocsin_utf8_cut(c->in, strlen(c->in), c->limit);
        if (got != c->want) {
            fail_msg("case %s: got %zu, want %zu", c->name, got, c->want);
        }
    }
}

/* Writes a record of `n` strings plus a tag and a pcs field at position pos of q. */
static uint32_t write_record(tocsin_queue_t *q, const char *message, uint64_t *pos_out)
{
    size_t mlen = strlen(message);
    size_t size = sizeof(tocsin_rhdr_t) + tocsin_record_str_size(8) + tocsin_record_str_size(mlen) +
                  TOCSIN_FIELD_HDR + 5 + TOCSIN_FIELD_HDR + 16;
    uint32_t k = tocsin_record_slots(size);
    uint8_t *first = tocsin_queue_claim(q, k, pos_out);
    assert_non_null(first);
    tocsin_writer_t w;
    tocsin_rhdr_t *h = tocsin_writer_begin(&w, q, *pos_out, first);
    *h = (tocsin_rhdr_t){.time_us = 42,
                         .len = (uint16_t)(size - sizeof(*h)),
                         .kind = TOCSIN_EVENT_ERROR,
                         .sub = TOCSIN_LEVEL_WARNING,
                         .nslots = (uint8_t)k,
                         .sample_rate = 0.25f};
    tocsin_writer_str(&w, TOCSIN_FIELD_TYPE, "KeyError", 8);
    tocsin_writer_str(&w, TOCSIN_FIELD_MESSAGE, message, mlen);
    tocsin_writer_pair(&w, TOCSIN_R_TAG, "k\xff", 2, "v", 1);
    uint64_t pcs[2] = {0x1234, 0x5678};
    tocsin_writer_field(&w, TOCSIN_R_PCS, sizeof(pcs));
    tocsin_writer_bytes(&w, pcs, sizeof(pcs));
    tocsin_queue_publish(q, *pos_out);
    return k;
}

static void read_back(tocsin_queue_t *q, const char *message, uint32_t k)
{
    static uint8_t buf[TOCSIN_RECORD_MAX];
    static char arena[TOCSIN_EVENT_ARENA];
    static tocsin_event_t ev;
    const uint8_t *first = tocsin_queue_peek(q);
    assert_non_null(first);
    tocsin_rhdr_t h;
    memcpy(&h, first, sizeof(h));
    assert_int_equal(h.nslots, k);
    tocsin_queue_copy(q, buf, sizeof(h) + h.len);
    tocsin_event_reset(&ev, arena);
    assert_int_equal(tocsin_record_decode(buf, sizeof(h) + h.len, &ev), 0);
    assert_int_equal(ev.kind, TOCSIN_EVENT_ERROR);
    assert_int_equal(ev.sub, TOCSIN_LEVEL_WARNING);
    assert_int_equal(ev.time_us, 42);
    assert_true(ev.sample_rate == 0.25f);
    assert_string_equal(ev.str[TOCSIN_FIELD_TYPE], "KeyError");
    assert_string_equal(ev.str[TOCSIN_FIELD_MESSAGE], message);
    assert_int_equal(ev.n_tags, 1);
    assert_string_equal(ev.tags[0].key, "k?"); /* made valid UTF-8 on the way in */
    assert_string_equal(ev.tags[0].value, "v");
    assert_int_equal(ev.n_pcs, 2);
    assert_int_equal(ev.pcs[1], 0x5678);
    tocsin_queue_pop(q, k);
}

/* One-slot and multi-slot records, many times round a ring whose size is not a multiple of
 * the chain length, so chains wrap at every possible point. */
static void test_records_round_trip(void **state)
{
    (void)state;
    tocsin_queue_t *q = tocsin_queue_new(13);
    char *big = malloc(3000);
    for (size_t i = 0; i < 2999; i++) {
        big[i] = (char)('a' + i % 26);
    }
    big[2999] = '\0';
    for (int i = 0; i < 60; i++) {
        const char *m = i % 2 ? big : "short";
        uint64_t pos;
        uint32_t k = write_record(q, m, &pos);
        assert_int_equal(k, i % 2 ? 7 : 1);
        read_back(q, m, k);
    }
    free(big);
    tocsin_queue_destroy(&q);
}

typedef struct {
    const char *name;
    uint8_t bytes[64];
    size_t len;
} bad_case_t;

/* Malformed records are refused, never read past their end. */
static void test_decode_malformed(void **state)
{
    (void)state;
    tocsin_rhdr_t h = {.kind = TOCSIN_EVENT_LOG};
    static bad_case_t cases[] = {
        {"short header", {0}, 10},
        {"field past the end", {TOCSIN_FIELD_MESSAGE, 50, 0, 'a', 0}, 5},
        {"string without NUL", {TOCSIN_FIELD_MESSAGE, 2, 0, 'a', 'b'}, 5},
        {"string with inner NUL", {TOCSIN_FIELD_MESSAGE, 3, 0, 'a', 0, 0}, 6},
        {"tag without value", {TOCSIN_R_TAG, 2, 0, 'k', 0}, 5},
        {"pcs not whole", {TOCSIN_R_PCS, 3, 0, 1, 2, 3}, 6},
        {"frame too short", {TOCSIN_R_FRAME, 4, 0, 1, 2, 3, 4}, 7},
        {"event id not 16", {TOCSIN_R_EVENT_ID, 2, 0, 1, 2}, 5},
        {"half a field header", {TOCSIN_FIELD_MESSAGE, 2}, 2},
    };
    static uint8_t buf[sizeof(tocsin_rhdr_t) + 64];
    static char arena[TOCSIN_EVENT_ARENA];
    static tocsin_event_t ev;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h.len = (uint16_t)cases[i].len;
        memcpy(buf, &h, sizeof(h));
        memcpy(buf + sizeof(h), cases[i].bytes, cases[i].len);
        size_t total = i == 0 ? 10 : sizeof(h) + cases[i].len;
        tocsin_event_reset(&ev, arena);
        if (tocsin_record_decode(buf, total, &ev) != TOCSIN_EINVAL) {
            fail_msg("case %s was accepted", cases[i].name);
        }
    }
    /* An unknown kind, and an unknown field id (skipped). */
    h.kind = 9;
    h.len = 0;
    memcpy(buf, &h, sizeof(h));
    tocsin_event_reset(&ev, arena);
    assert_int_equal(tocsin_record_decode(buf, sizeof(h), &ev), TOCSIN_EINVAL);
    h.kind = TOCSIN_EVENT_LOG;
    h.len = 5;
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), (uint8_t[]){200, 2, 0, 'x', 'y'}, 5);
    tocsin_event_reset(&ev, arena);
    assert_int_equal(tocsin_record_decode(buf, sizeof(h) + 5, &ev), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_copy_table),
        cmocka_unit_test(test_utf8_cut_table),
        cmocka_unit_test(test_records_round_trip),
        cmocka_unit_test(test_decode_malformed),
    };
    return cmocka_run_group_tests_name("tocsin_record", tests, NULL, NULL);
}
