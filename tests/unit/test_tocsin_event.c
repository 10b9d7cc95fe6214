/* Unit tests for clients/c/src/tocsin_event.c: what the before_send hook can read and
 * change, per kind of event, and the bounds of its edits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_event.h"

static char arena[TOCSIN_EVENT_ARENA];
static tocsin_event_t ev;

typedef struct {
    tocsin_event_kind_t kind;
    tocsin_field_t field;
    int want; /* for a non-empty value */
} set_case_t;

static void test_fields_per_kind(void **state)
{
    (void)state;
    static const set_case_t cases[] = {
        {TOCSIN_EVENT_ERROR, TOCSIN_FIELD_TYPE, TOCSIN_OK},
        {TOCSIN_EVENT_ERROR, TOCSIN_FIELD_MESSAGE, TOCSIN_OK},
        {TOCSIN_EVENT_ERROR, TOCSIN_FIELD_MECHANISM, TOCSIN_OK},
        {TOCSIN_EVENT_ERROR, TOCSIN_FIELD_ROUTE, TOCSIN_EINVAL},
        {TOCSIN_EVENT_REQUEST, TOCSIN_FIELD_ROUTE, TOCSIN_OK},
        {TOCSIN_EVENT_REQUEST, TOCSIN_FIELD_METHOD, TOCSIN_OK},
        {TOCSIN_EVENT_REQUEST, TOCSIN_FIELD_MESSAGE, TOCSIN_EINVAL},
        {TOCSIN_EVENT_METRIC, TOCSIN_FIELD_NAME, TOCSIN_OK},
        {TOCSIN_EVENT_METRIC, TOCSIN_FIELD_UNIT, TOCSIN_OK},
        {TOCSIN_EVENT_METRIC, TOCSIN_FIELD_LOGGER, TOCSIN_EINVAL},
        {TOCSIN_EVENT_LOG, TOCSIN_FIELD_LOGGER, TOCSIN_OK},
        {TOCSIN_EVENT_LOG, TOCSIN_FIELD_MESSAGE, TOCSIN_OK},
        {TOCSIN_EVENT_LOG, TOCSIN_FIELD_TYPE, TOCSIN_EINVAL},
        {TOCSIN_EVENT_LOG, TOCSIN_FIELD_TRACE_ID, TOCSIN_OK},
        {TOCSIN_EVENT_METRIC, TOCSIN_FIELD_USER_ID, TOCSIN_OK},
        {TOCSIN_EVENT_METRIC, (tocsin_field_t)0, TOCSIN_EINVAL},
        {TOCSIN_EVENT_METRIC, (tocsin_field_t)99, TOCSIN_EINVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tocsin_event_reset(&ev, arena);
        ev.kind = cases[i].kind;
        int rc = tocsin_event_set(&ev, cases[i].field, "v\xff");
        if (rc != cases[i].want) {
            fail_msg("case %zu: kind %d field %d: %d", i, cases[i].kind, cases[i].field, rc);
        }
        if (rc == TOCSIN_OK) {
            assert_string_equal(tocsin_event_get(&ev, cases[i].field), "v?");
        }
    }
    /* Required fields cannot be emptied; optional ones can. */
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_REQUEST;
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_ROUTE, ""), TOCSIN_EINVAL);
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_METHOD, NULL), TOCSIN_OK);
    assert_string_equal(tocsin_event_get(&ev, TOCSIN_FIELD_METHOD), "");
    ev.kind = TOCSIN_EVENT_LOG;
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_MESSAGE, ""), TOCSIN_EINVAL);
    ev.kind = TOCSIN_EVENT_ERROR;
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_MESSAGE, ""), TOCSIN_OK);
    /* Length limits: names 200 bytes, messages 8 KiB. */
    static char big[TOCSIN_MESSAGE_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[TOCSIN_NAME_MAX + 1] = '\0';
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_TYPE, big), TOCSIN_ETOOBIG);
    big[TOCSIN_NAME_MAX + 1] = 'x';
    big[TOCSIN_MESSAGE_MAX] = '\0';
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_MESSAGE, big), TOCSIN_OK);
    big[TOCSIN_MESSAGE_MAX] = 'x';
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_MESSAGE, big), TOCSIN_ETOOBIG);
    assert_string_equal(tocsin_event_get(&ev, (tocsin_field_t)42), "");
}

static void test_tags_fields_level_frames(void **state)
{
    (void)state;
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_LOG;
    ev.sub = TOCSIN_LEVEL_INFO;
    ev.time_us = 77;
    assert_int_equal(tocsin_event_kind(&ev), TOCSIN_EVENT_LOG);
    assert_int_equal(tocsin_event_time_us(&ev), 77);
    assert_true(tocsin_event_put_tag(&ev, "a", "1"));
    assert_int_equal(tocsin_event_set_tag(&ev, "b", "2"), TOCSIN_OK);
    assert_int_equal(tocsin_event_set_tag(&ev, "a", "3"), TOCSIN_OK);
    assert_string_equal(tocsin_event_tag(&ev, "a"), "3");
    assert_int_equal(tocsin_event_set_tag(&ev, "a", NULL), TOCSIN_OK);
    assert_null(tocsin_event_tag(&ev, "a"));
    assert_string_equal(tocsin_event_tag(&ev, "b"), "2");
    assert_int_equal(tocsin_event_set_tag(&ev, "", "x"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_event_set_tag(&ev, NULL, "x"), TOCSIN_EINVAL);
    for (int i = 0; i < TOCSIN_EVENT_TAGS_MAX - 1; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(tocsin_event_set_tag(&ev, k, "v"), TOCSIN_OK);
    }
    assert_int_equal(tocsin_event_set_tag(&ev, "one-too-many", "v"), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_event_set_tag(&ev, "k0", "replaced"), TOCSIN_OK); /* no growth */

    assert_int_equal(tocsin_event_set_log_field(&ev, "user", "alice"), TOCSIN_OK);
    assert_string_equal(tocsin_event_log_field(&ev, "user"), "alice");
    assert_int_equal(tocsin_event_set_log_field(&ev, "user", NULL), TOCSIN_OK);
    assert_null(tocsin_event_log_field(&ev, "user"));
    assert_int_equal(tocsin_event_level(&ev), TOCSIN_LEVEL_INFO);
    assert_int_equal(tocsin_event_set_level(&ev, TOCSIN_LEVEL_ERROR), TOCSIN_OK);
    assert_int_equal(tocsin_event_set_level(&ev, (tocsin_level_t)9), TOCSIN_EINVAL);
    assert_int_equal(tocsin_event_level(&ev), TOCSIN_LEVEL_ERROR);

    ev.kind = TOCSIN_EVENT_METRIC;
    assert_int_equal(tocsin_event_set_log_field(&ev, "k", "v"), TOCSIN_EINVAL);
    assert_null(tocsin_event_log_field(&ev, "k"));
    assert_int_equal(tocsin_event_level(&ev), 0);
    assert_int_equal(tocsin_event_set_level(&ev, TOCSIN_LEVEL_ERROR), TOCSIN_EINVAL);

    ev.kind = TOCSIN_EVENT_ERROR;
    ev.frames[0] = (tocsin_frame_t){"f", "m", "file.c", 3, true, 0x10};
    ev.n_frames = 1;
    assert_int_equal(tocsin_event_frame_count(&ev), 1);
    tocsin_frame_t fr;
    assert_int_equal(tocsin_event_frame(&ev, 0, &fr), TOCSIN_OK);
    assert_string_equal(fr.function, "f");
    assert_int_equal(fr.line, 3);
    assert_int_equal(tocsin_event_frame(&ev, 1, &fr), TOCSIN_EINVAL);
    assert_int_equal(tocsin_event_frame(&ev, 0, NULL), TOCSIN_EINVAL);
}

/* Edits are copied into the event's 128 KiB edit space; when it is used up, the setters
 * say so instead of overrunning it. */
static void test_edit_space_is_bounded(void **state)
{
    (void)state;
    tocsin_event_reset(&ev, arena);
    ev.kind = TOCSIN_EVENT_ERROR;
    static char msg[TOCSIN_MESSAGE_MAX + 1];
    memset(msg, 'm', TOCSIN_MESSAGE_MAX);
    int ok = 0, rc;
    while ((rc = tocsin_event_set(&ev, TOCSIN_FIELD_MESSAGE, msg)) == TOCSIN_OK) {
        ok++;
        assert_true(ok < 100);
    }
    assert_int_equal(rc, TOCSIN_ETOOBIG);
    assert_int_equal(ok, TOCSIN_EVENT_ARENA / (TOCSIN_MESSAGE_MAX + 1));
    assert_true(ev.arena_used <= TOCSIN_EVENT_ARENA);
    assert_int_equal(strlen(tocsin_event_get(&ev, TOCSIN_FIELD_MESSAGE)), TOCSIN_MESSAGE_MAX);
    /* Without an arena nothing can be set. */
    tocsin_event_reset(&ev, NULL);
    ev.kind = TOCSIN_EVENT_ERROR;
    assert_int_equal(tocsin_event_set(&ev, TOCSIN_FIELD_TYPE, "T"), TOCSIN_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_per_kind),
        cmocka_unit_test(test_tags_fields_level_frames),
        cmocka_unit_test(test_edit_space_is_bounded),
    };
    return cmocka_run_group_tests_name("tocsin_event", tests, NULL, NULL);
}
