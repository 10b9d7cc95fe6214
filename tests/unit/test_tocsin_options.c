/* Unit tests for libtocsin's options (tocsin_options_init/validate, tocsin_new) and for the
 * argument checks of the recording functions, with the counters they keep. */
#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tocsin.h"

/* Nothing listens on port 1 of the loopback: sends there are refused at once. */
#define DEAD_ENDPOINT "tcp://127.0.0.1:1"

static char long_name[TOCSIN_IDENTITY_MAX + 2];
static char long_endpoint[300];
static char many_endpoints[TOCSIN_COLLECTORS_MAX * 24 + 32];

typedef struct {
    const char *name;
    void (*edit)(tocsin_options_t *o);
    bool valid;
} options_case_t;

#define EDIT(fn, body)                                                                             \
    static void fn(tocsin_options_t *o)                                                            \
    {                                                                                              \
        body;                                                                                      \
    }

EDIT(edit_none, (void)o)
EDIT(edit_no_service, o->service = NULL)
EDIT(edit_empty_service, o->service = "")
EDIT(edit_long_service, o->service = long_name)
EDIT(edit_long_host, o->host = long_name)
EDIT(edit_empty_host, o->host = "")
EDIT(edit_long_release, o->release = long_name)
EDIT(edit_zeros_mean_defaults, o->environment = NULL; o->collectors = NULL; o->queue_capacity = 0;
     o->batch_max_events = 0; o->batch_interval_ms = 0; o->ack_timeout_ms = 0;
     o->max_inflight_batches = 0; o->shutdown_timeout_ms = 0)
EDIT(edit_big_queue, o->queue_capacity = 1048577)
EDIT(edit_max_queue_ok, o->queue_capacity = 1048576)
EDIT(edit_big_batch, o->batch_max_events = 10001)
EDIT(edit_long_interval, o->batch_interval_ms = 60001)
EDIT(edit_long_ack_timeout, o->ack_timeout_ms = 600001)
EDIT(edit_many_inflight, o->max_inflight_batches = 1025)
EDIT(edit_long_shutdown, o->shutdown_timeout_ms = 600001)
EDIT(edit_two_collectors, o->collectors = " tcp://127.0.0.1:1 , ipc:///tmp/tocsin-x ")
EDIT(edit_empty_collector, o->collectors = "tcp://127.0.0.1:1,,tcp://127.0.0.1:2")
EDIT(edit_udp_collector, o->collectors = "udp://127.0.0.1:1")
EDIT(edit_bare_prefix, o->collectors = "tcp://")
EDIT(edit_long_collector, o->collectors = long_endpoint)
EDIT(edit_too_many_collectors, o->collectors = many_endpoints)

static const options_case_t cases[] = {
    {"defaults with a service", edit_none, true},
    {"no service", edit_no_service, false},
    {"empty service", edit_empty_service, false},
    {"service too long", edit_long_service, false},
    {"host too long", edit_long_host, false},
    {"empty host", edit_empty_host, false},
    {"release too long", edit_long_release, false},
    {"zeros and NULLs mean defaults", edit_zeros_mean_defaults, true},
    {"queue too big", edit_big_queue, false},
    {"largest queue", edit_max_queue_ok, true},
    {"batch too big", edit_big_batch, false},
    {"interval too long", edit_long_interval, false},
    {"ack time-out too long", edit_long_ack_timeout, false},
    {"too many in flight", edit_many_inflight, false},
    {"shutdown too long", edit_long_shutdown, false},
    {"two collectors, spaces", edit_two_collectors, true},
    {"empty collector", edit_empty_collector, false},
    {"udp collector", edit_udp_collector, false},
    {"bare prefix", edit_bare_prefix, false},
    {"collector too long", edit_long_collector, false},
    {"too many collectors", edit_too_many_collectors, false},
};

static int setup(void **state)
{
    (void)state;
    memset(long_name, 'x', TOCSIN_IDENTITY_MAX + 1);
    long_name[TOCSIN_IDENTITY_MAX + 1] = '\0';
    snprintf(long_endpoint, sizeof(long_endpoint), "tcp://%0280d:1", 0);
    many_endpoints[0] = '\0';
    for (int i = 0; i <= TOCSIN_COLLECTORS_MAX; i++) {
        char one[32];
        snprintf(one, sizeof(one), "%stcp://127.0.0.1:%d", i ? "," : "", 1000 + i);
        strcat(many_endpoints, one);
    }
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    tocsin_options_t o;
    memset(&o, 0xff, sizeof(o));
    tocsin_options_init(&o);
    assert_null(o.service);
    assert_string_equal(o.environment, "production");
    assert_null(o.release);
    assert_null(o.host);
    assert_string_equal(o.collectors, "tcp://127.0.0.1:7420");
    assert_null(o.api_key);
    assert_int_equal(o.queue_capacity, 8192);
    assert_int_equal(o.batch_max_events, 500);
    assert_int_equal(o.batch_interval_ms, 50);
    assert_int_equal(o.ack_timeout_ms, 2000);
    assert_int_equal(o.max_inflight_batches, 16);
    assert_int_equal(o.shutdown_timeout_ms, 2000);
    const char *reason = "unset";
    assert_int_equal(tocsin_options_validate(&o, &reason), TOCSIN_EINVAL);
    assert_non_null(reason);
    assert_int_equal(tocsin_options_validate(NULL, &reason), TOCSIN_EINVAL);
    assert_null(tocsin_new(NULL));
}

static void test_options_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tocsin_options_t o;
        tocsin_options_init(&o);
        o.service = "svc";
        o.collectors = DEAD_ENDPOINT;
        o.queue_capacity = 64; /* keep the clients below small */
        o.shutdown_timeout_ms = 50;
        cases[i].edit(&o);
        const char *reason = NULL;
        int rc = tocsin_options_validate(&o, &reason);
        if ((rc == TOCSIN_OK) != cases[i].valid) {
            fail_msg("case \"%s\": validate gave %d (%s)", cases[i].name, rc,
                     reason ? reason : "-");
        }
        if (!cases[i].valid) {
            assert_non_null(reason);
        } else {
            assert_null(reason);
        }
        if (cases[i].edit == edit_max_queue_ok) {
            continue; /* valid, but 512 MiB to create: validate is enough here */
        }
        tocsin_t *client = tocsin_new(&o);
        if ((client != NULL) != cases[i].valid) {
            fail_msg("case \"%s\": tocsin_new disagrees with validate", cases[i].name);
        }
        tocsin_destroy(&client);
        assert_null(client);
    }
}

static tocsin_t *dead_client(uint32_t capacity)
{
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = "svc";
    o.collectors = DEAD_ENDPOINT;
    o.queue_capacity = capacity;
    o.shutdown_timeout_ms = 50;
    tocsin_t *client = tocsin_new(&o);
    assert_non_null(client);
    return client;
}

/* Wrong arguments are refused with EINVAL and counted; too-long names with ETOOBIG and
 * counted as oversize; nothing of either is queued. */
static void test_recording_arguments(void **state)
{
    (void)state;
    tocsin_t *c = dead_client(64);
    char name[TOCSIN_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0'; /* TOCSIN_NAME_MAX + 1 bytes */
    char fits[TOCSIN_NAME_MAX + 1];
    memset(fits, 'n', sizeof(fits) - 1);
    fits[sizeof(fits) - 1] = '\0'; /* exactly TOCSIN_NAME_MAX */

    assert_int_equal(tocsin_request(NULL, "/", "GET", 200, 1), TOCSIN_EINVAL);
    assert_int_equal(tocsin_request(c, NULL, "GET", 200, 1), TOCSIN_EINVAL);
    assert_int_equal(tocsin_request(c, "", "GET", 200, 1), TOCSIN_EINVAL);
    assert_int_equal(tocsin_request(c, "/", "GET", -1, 1), TOCSIN_EINVAL);
    assert_int_equal(tocsin_request(c, "/", "GET", 1000, 1), TOCSIN_EINVAL);
    assert_int_equal(tocsin_error(c, NULL, NULL, TOCSIN_LEVEL_ERROR), TOCSIN_EINVAL);
    assert_int_equal(tocsin_error(c, "", "", TOCSIN_LEVEL_ERROR), TOCSIN_EINVAL);
    assert_int_equal(tocsin_error(c, "E", "m", (tocsin_level_t)0), TOCSIN_EINVAL);
    assert_int_equal(tocsin_error(c, "E", "m", (tocsin_level_t)7), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, NULL, TOCSIN_GAUGE, 1, "u"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, "", TOCSIN_GAUGE, 1, "u"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, "m", (tocsin_metric_kind_t)0, 1, "u"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, "m", (tocsin_metric_kind_t)4, 1, "u"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, "m", TOCSIN_GAUGE, NAN, "u"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, "m", TOCSIN_GAUGE, INFINITY, "u"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_metric(c, "m", TOCSIN_TIMING, -1, "ms"), TOCSIN_EINVAL);
    const uint64_t invalid = 15; /* the NULL-client call is not counted: there is no client */

    assert_int_equal(tocsin_request(c, name, "GET", 200, 1), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_request(c, "/", name, 200, 1), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_error(c, name, "m", TOCSIN_LEVEL_ERROR), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_metric(c, name, TOCSIN_COUNTER, 1, NULL), TOCSIN_ETOOBIG);
    assert_int_equal(tocsin_metric(c, "m", TOCSIN_COUNTER, 1, name), TOCSIN_ETOOBIG);

    /* Accepted: the longest names, NULL optional strings, a message far too long (cut),
     * invalid UTF-8 (replaced), negative gauges and zero-duration requests. */
    char message[TOCSIN_MESSAGE_MAX + 100];
    memset(message, 'm', sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
    assert_int_equal(tocsin_request(c, fits, fits, 0, 0), TOCSIN_OK);
    assert_int_equal(tocsin_request(c, "/", NULL, 999, 0), TOCSIN_OK);
    assert_int_equal(tocsin_error(c, fits, message, TOCSIN_LEVEL_FATAL), TOCSIN_OK);
    assert_int_equal(tocsin_error(c, NULL, "only a message", TOCSIN_LEVEL_DEBUG), TOCSIN_OK);
    assert_int_equal(tocsin_error(c, "OnlyAType", NULL, TOCSIN_LEVEL_WARNING), TOCSIN_OK);
    assert_int_equal(tocsin_error(c, "Bad\xff", "caf\xe9", TOCSIN_LEVEL_INFO), TOCSIN_OK);
    assert_int_equal(tocsin_metric(c, "m", TOCSIN_GAUGE, -3.5, NULL), TOCSIN_OK);
    assert_int_equal(tocsin_metric(c, fits, TOCSIN_TIMING, 0, fits), TOCSIN_OK);

    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.dropped_invalid, invalid);
    assert_int_equal(st.dropped_oversize, 5);
    assert_int_equal(st.recorded, 8);
    assert_int_equal(st.events_truncated, 1);
    assert_int_equal(st.dropped_queue_full, 0);

    assert_int_equal(tocsin_flush(NULL, 0), TOCSIN_EINVAL);
    tocsin_stats(NULL, &st);
    assert_int_equal(st.recorded, 0);
    tocsin_destroy(&c);
    tocsin_destroy(&c);
    tocsin_destroy(NULL);
}

static void test_strerror(void **state)
{
    (void)state;
    static const int codes[] = {TOCSIN_OK,    TOCSIN_EINVAL,  TOCSIN_ENOMEM,
                                TOCSIN_EIO,   TOCSIN_ETOOBIG, TOCSIN_ETIMEDOUT,
                                TOCSIN_EFULL, TOCSIN_ECLOSED, TOCSIN_EZMQ};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = tocsin_strerror(codes[i]);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(s, tocsin_strerror(codes[j]));
        }
    }
    assert_string_equal(tocsin_strerror(12345), "unknown error");
    assert_string_equal(tocsin_version(), TOCSIN_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_options_table),
        cmocka_unit_test(test_recording_arguments),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests_name("tocsin_options", tests, setup, NULL);
}
