/* Unit tests for clients/c/src/tocsin_scope.c: the thread's scope (trace id, user, tags)
 * as record fields, per thread, with its limits; and the thread's random numbers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin_record.h"
#include "tocsin_scope.h"

static char arena[TOCSIN_EVENT_ARENA];
static tocsin_event_t ev;
static uint8_t buf[sizeof(tocsin_rhdr_t) + TOCSIN_SCOPE_BLOB_MAX];

/* The current scope read back through the record decoder, as the background thread does. */
static void decode_scope(void)
{
    const tocsin_scope_t *s = tocsin_scope_current();
    tocsin_rhdr_t h = {.kind = TOCSIN_EVENT_METRIC, .nslots = 1};
    h.len = (uint16_t)(s ? s->len : 0);
    memcpy(buf, &h, sizeof(h));
    if (s) {
        memcpy(buf + sizeof(h), s->blob, s->len);
    }
    tocsin_event_reset(&ev, arena);
    assert_int_equal(tocsin_record_decode(buf, sizeof(h) + h.len, &ev), 0);
}

static void test_scope_fields(void **state)
{
    (void)state;
    decode_scope();
    assert_null(ev.str[TOCSIN_FIELD_TRACE_ID]);
    assert_int_equal(tocsin_scope_set_trace_id("req-1"), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_user("u\xff"), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_tag("region", "eu"), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_tag("tier", "web"), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_tag("region", "us"), TOCSIN_OK);
    assert_string_equal(tocsin_scope_trace_id(), "req-1");
    decode_scope();
    assert_string_equal(ev.str[TOCSIN_FIELD_TRACE_ID], "req-1");
    assert_string_equal(ev.str[TOCSIN_FIELD_USER_ID], "u?");
    assert_int_equal(ev.n_tags, 2);
    assert_string_equal(ev.tags[0].key, "region");
    assert_string_equal(ev.tags[0].value, "us");
    assert_int_equal(tocsin_scope_set_tag("region", NULL), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_trace_id(NULL), TOCSIN_OK);
    decode_scope();
    assert_null(ev.str[TOCSIN_FIELD_TRACE_ID]);
    assert_int_equal(ev.n_tags, 1);
    assert_string_equal(ev.tags[0].key, "tier");

    /* Limits. */
    char big[TOCSIN_NAME_MAX + 2];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(tocsin_scope_set_trace_id(big), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_scope_set_user(big), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_scope_set_tag(big, "v"), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_scope_set_tag("k", big), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_scope_set_tag("", "v"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_scope_set_tag(NULL, "v"), TOCSIN_EINVAL);
    big[TOCSIN_NAME_MAX] = '\0'; /* exactly the limit: the fullest scope fits its blob */
    assert_int_equal(tocsin_scope_set_trace_id(big), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_user(big), TOCSIN_OK);
    tocsin_scope_set_tag("tier", NULL);
    for (int i = 0; i < TOCSIN_TAGS_MAX; i++) {
        big[0] = (char)('A' + i);
        assert_int_equal(tocsin_scope_set_tag(big, big), TOCSIN_OK);
    }
    assert_int_equal(tocsin_scope_set_tag("one-more", "v"), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_scope_current()->len, TOCSIN_SCOPE_BLOB_MAX);
    decode_scope();
    assert_int_equal(ev.n_tags, TOCSIN_TAGS_MAX);
    tocsin_scope_clear();
    assert_int_equal(tocsin_scope_current()->len, 0);
    assert_string_equal(tocsin_scope_trace_id(), "");
}

static void *other_thread(void *arg)
{
    (void)arg;
    /* A new thread starts with no scope, whatever the others set. */
    if (tocsin_scope_current() != NULL || tocsin_scope_trace_id()[0] != '\0') {
        return (void *)1;
    }
    tocsin_scope_set_trace_id("theirs");
    return strcmp(tocsin_scope_trace_id(), "theirs") == 0 ? NULL : (void *)2;
}

static void test_scope_per_thread(void **state)
{
    (void)state;
    assert_int_equal(tocsin_scope_set_trace_id("mine"), TOCSIN_OK);
    pthread_t t;
    void *ret = (void *)3;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    pthread_join(t, &ret);
    assert_null(ret);
    assert_string_equal(tocsin_scope_trace_id(), "mine");
}

static void test_thread_random(void **state)
{
    (void)state;
    /* Roughly uniform: the top bit is set about half of the time. */
    int top = 0;
    for (int i = 0; i < 100000; i++) {
        top += (int)(tocsin_thread_random() >> 63);
    }
    assert_true(top > 48000 && top < 52000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scope_fields),
        cmocka_unit_test(test_scope_per_thread),
        cmocka_unit_test(test_thread_random),
    };
    return cmocka_run_group_tests_name("tocsin_scope", tests, NULL, NULL);
}
