/*
 * Unit tests for aggregator/agg_log: a log record's stored form (round trip with fields,
 * unspecified level stored as info, strings and fields cut to their bounds), refusal of
 * corrupt stored values, and how queries match records by level and substring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_log.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    Tocsin__V1__Event ev;
    Tocsin__V1__LogRecord log;
    Tocsin__V1__LogRecord__FieldsEntry f[70];
    Tocsin__V1__LogRecord__FieldsEntry *fp[70];
    char keys[70][16];
} log_t;

static void make(log_t *l, int level, const char *message, size_t nfields)
{
    memset(l, 0, sizeof(*l));
    tocsin__v1__event__init(&l->ev);
    tocsin__v1__log_record__init(&l->log);
    l->ev.service = "checkout";
    l->ev.environment = "production";
    l->ev.release = "1.2.3";
    l->ev.host = "web-1";
    l->log.level = (Tocsin__V1__Level)level;
    l->log.message = (char *)message;
    l->log.logger = "app.pay";
    for (size_t i = 0; i < nfields; i++) {
        tocsin__v1__log_record__fields_entry__init(&l->f[i]);
        snprintf(l->keys[i], sizeof(l->keys[i]), "k%u", (unsigned)(i % 1000));
        l->f[i].key = l->keys[i];
        l->f[i].value = i == 1 ? "order-42" : "v";
        l->fp[i] = &l->f[i];
    }
    l->log.n_fields = nfields;
    l->log.fields = l->fp;
    l->ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
    l->ev.log = &l->log;
}

static bool eq(agg_str_t s, const char *c)
{
    return s.n == strlen(c) && memcmp(s.p, c, s.n) == 0;
}

static void test_roundtrip_and_match(void **state)
{
    (void)state;
    log_t l;
    make(&l, TOCSIN__V1__LEVEL__LEVEL_WARNING, "payment retried", 3);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(agg_log_encode(&l.ev, &buf, &len), 0);
    agg_log_t d;
    assert_int_equal(agg_log_decode(buf, len, &d), 0);
    assert_int_equal(d.level, TOCSIN__V1__LEVEL__LEVEL_WARNING);
    assert_true(eq(d.message, "payment retried") && eq(d.logger, "app.pay"));
    assert_true(eq(d.environment, "production") && eq(d.release, "1.2.3") && eq(d.host, "web-1"));
    assert_int_equal(d.nfields, 3);
    assert_true(eq(d.keys[1], "k1") && eq(d.values[1], "order-42"));
    static const struct {
        int min_level;
        const char *q;
        bool match;
    } cases[] = {
        {0, NULL, true},       {4, "", true},         {5, NULL, false},
        {1, "retried", true},  {1, "Retried", false}, {1, "app.pay", true},
        {1, "order-42", true}, {1, "nothing", false}, {4, "payment", true},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        if (agg_log_match(&d, cases[i].min_level, cases[i].q) != cases[i].match) {
            fail_msg("case %zu", i);
        }
    }
    free(buf);
    /* Unspecified level: info. */
    make(&l, 0, "", 0);
    assert_int_equal(agg_log_encode(&l.ev, &buf, &len), 0);
    assert_int_equal(agg_log_decode(buf, len, &d), 0);
    assert_int_equal(d.level, TOCSIN__V1__LEVEL__LEVEL_INFO);
    free(buf);
    /* Not a log: refused. */
    l.ev.body_case = TOCSIN__V1__EVENT__BODY__NOT_SET;
    assert_int_equal(agg_log_encode(&l.ev, &buf, &len), TC_EINVAL);
}

static void test_bounds(void **state)
{
    (void)state;
    log_t l;
    char *msg = malloc(AGG_LOG_MESSAGE_MAX + 100);
    memset(msg, 'm', AGG_LOG_MESSAGE_MAX + 99);
    msg[AGG_LOG_MESSAGE_MAX + 99] = '\0';
    make(&l, 3, msg, 70);
    l.f[2].value = "bad\xff"; /* not UTF-8: left out */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(agg_log_encode(&l.ev, &buf, &len), 0);
    agg_log_t d;
    assert_int_equal(agg_log_decode(buf, len, &d), 0);
    assert_int_equal(d.message.n, AGG_LOG_MESSAGE_MAX);
    assert_int_equal(d.nfields, AGG_LOG_FIELDS_MAX);
    for (uint32_t i = 0; i < d.nfields; i++) {
        assert_false(eq(d.keys[i], "k2"));
    }
    free(buf);
    free(msg);
}

static void test_refusals(void **state)
{
    (void)state;
    log_t l;
    make(&l, 3, "hello", 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(agg_log_encode(&l.ev, &buf, &len), 0);
    agg_log_t d;
    for (size_t cut = 0; cut < len; cut++) {
        assert_int_not_equal(agg_log_decode(buf, cut, &d), 0);
    }
    uint8_t *bad = malloc(len + 1);
    memcpy(bad, buf, len);
    bad[len] = 0;
    assert_int_equal(agg_log_decode(bad, len + 1, &d), TC_EPARSE); /* trailing byte */
    bad[0] = 9;
    assert_int_equal(agg_log_decode(bad, len, &d), TC_EPARSE); /* format */
    bad[0] = buf[0];
    bad[1] = 7;
    assert_int_equal(agg_log_decode(bad, len, &d), TC_EPARSE); /* level */
    assert_int_equal(agg_log_decode(buf, AGG_LOG_STORED_MAX + 1, &d), TC_ETOOBIG);
    free(bad);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_match),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
