/*
 * Unit tests for aggregator/agg_issue: grouping (the same error from different lines of one
 * function groups together; different exception types do not; messages differing only in
 * ids, numbers, hex, UUIDs group together; the client's explicit fingerprint wins), the
 * culprit, applying events (count, first/last seen by event time, releases, environments,
 * users, level, the sample with its frames), merging partitions' states, the stored form
 * (round trip and refusals), statuses (latest wins) and the change published for the alerter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_issue.h"
#include "agg_rollup.h"
#include "tc_error.h"
#include "tocsin/v1/rollup.pb-c.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define T0 1795000000000000LL

typedef struct {
    Tocsin__V1__Event ev;
    Tocsin__V1__ErrorEvent err;
    Tocsin__V1__Frame frames[3];
    Tocsin__V1__Frame *fp[3];
    uint8_t id[16];
    uint8_t *buf;
    size_t len;
    agg_event_t scan;
} err_t;

/* An error event: `type`, `message`, and frames (innermost first) with the given lines. */
static void make(err_t *e, const char *type, const char *message, int nframes, uint32_t line)
{
    memset(e, 0, sizeof(*e));
    tocsin__v1__event__init(&e->ev);
    tocsin__v1__error_event__init(&e->err);
    memset(e->id, 7, sizeof(e->id));
    e->ev.event_id.data = e->id;
    e->ev.event_id.len = 16;
    e->ev.time_us = T0;
    e->ev.received_us = T0 + 1000;
    e->ev.service = "checkout";
    e->ev.environment = "production";
    e->ev.release = "1.0.0";
    e->ev.user_id = "user-1";
    e->err.type = (char *)type;
    e->err.message = (char *)message;
    e->err.level = TOCSIN__V1__LEVEL__LEVEL_ERROR;
    static const char *fns[] = {"charge", "handle", "main"};
    for (int i = 0; i < nframes; i++) {
        tocsin__v1__frame__init(&e->frames[i]);
        e->frames[i].function = (char *)fns[i];
        e->frames[i].module = i < 2 ? "app.payments" : "runtime";
        e->frames[i].file = "/srv/app/payments.py";
        e->frames[i].line = line + (uint32_t)i * 10;
        e->frames[i].in_app = i < 2;
        e->fp[i] = &e->frames[i];
    }
    e->err.n_frames = (size_t)nframes;
    e->err.frames = e->fp;
    e->ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    e->ev.error = &e->err;
}

static void scan(err_t *e)
{
    free(e->buf);
    e->len = tocsin__v1__event__get_packed_size(&e->ev);
    e->buf = malloc(e->len);
    tocsin__v1__event__pack(&e->ev, e->buf);
    assert_int_equal(agg_wire_scan(e->buf, e->len, &e->scan, NULL), 0);
}

static void fp(const Tocsin__V1__ErrorEvent *er, char out[AGG_ISSUE_ID_HEX + 1])
{
    agg_issue_fingerprint(er, out);
    assert_int_equal(strlen(out), AGG_ISSUE_ID_HEX);
}

static void test_grouping(void **state)
{
    (void)state;
    err_t a, b;
    char ha[AGG_ISSUE_ID_HEX + 1], hb[AGG_ISSUE_ID_HEX + 1];
    static const struct {
        const char *name;
        const char *type_a, *msg_a;
        int frames_a;
        uint32_t line_a;
        const char *type_b, *msg_b;
        int frames_b;
        uint32_t line_b;
        bool together;
    } cases[] = {
        {"same function, other lines", "KeyError", "missing 'id'", 3, 10, "KeyError",
         "missing 'id'", 3, 57, true},
        {"same function, other messages", "KeyError", "missing 'id'", 3, 10, "KeyError",
         "missing 'name'", 3, 10, true},
        {"other exception types", "KeyError", "boom", 3, 10, "ValueError", "boom", 3, 10, false},
        {"other types without frames", "KeyError", "boom", 0, 0, "ValueError", "boom", 0, 0, false},
        {"messages differing in ids", "Timeout", "order 12345 timed out after 30s", 0, 0, "Timeout",
         "order 98765 timed out after 45s", 0, 0, true},
        {"messages differing in uuids", "NotFound",
         "user 1b4e28ba-2fa1-11d2-883f-0016d3cca427 not found", 0, 0, "NotFound",
         "user 6ba7b810-9dad-11d1-80b4-00c04fd430c8 not found", 0, 0, true},
        {"messages differing in hex", "Segfault", "bad address 0x7ffe1234abcd", 0, 0, "Segfault",
         "bad address 0x55aa00ff", 0, 0, true},
        {"messages differing in words", "Timeout", "database timed out", 0, 0, "Timeout",
         "cache timed out", 0, 0, false},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        make(&a, cases[i].type_a, cases[i].msg_a, cases[i].frames_a, cases[i].line_a);
        make(&b, cases[i].type_b, cases[i].msg_b, cases[i].frames_b, cases[i].line_b);
        fp(&a.err, ha);
        fp(&b.err, hb);
        if ((strcmp(ha, hb) == 0) != cases[i].together) {
            fail_msg("%s: %s vs %s", cases[i].name, ha, hb);
        }
    }
    /* An explicit fingerprint wins over frames and message. */
    make(&a, "KeyError", "one", 3, 10);
    make(&b, "ValueError", "two", 0, 0);
    char *parts[] = {"payment-provider-down"};
    a.err.n_fingerprint = b.err.n_fingerprint = 1;
    a.err.fingerprint = b.err.fingerprint = parts;
    fp(&a.err, ha);
    fp(&b.err, hb);
    assert_string_equal(ha, hb);
}

static void test_culprit(void **state)
{
    (void)state;
    err_t e;
    char out[128];
    make(&e, "KeyError", "boom", 3, 10);
    agg_issue_culprit(&e.err, out, sizeof(out));
    assert_string_equal(out, "app.payments in charge");
    e.frames[0].in_app = false;
    agg_issue_culprit(&e.err, out, sizeof(out));
    assert_string_equal(out, "app.payments in handle");
    e.frames[1].in_app = false;
    e.frames[0].module = "";
    agg_issue_culprit(&e.err, out, sizeof(out));
    assert_string_equal(out, "payments.py in charge"); /* no in-app frame: the innermost */
    make(&e, "KeyError", "boom", 0, 0);
    agg_issue_culprit(&e.err, out, sizeof(out));
    assert_string_equal(out, "");
}

static void test_apply_merge(void **state)
{
    (void)state;
    agg_issue_t is, other, m;
    agg_issue_init(&is);
    agg_issue_init(&other);
    agg_issue_init(&m);
    err_t e;
    make(&e, "KeyError", "missing 'id'", 3, 10);
    const char *releases[] = {"1.0.0", "1.1.0", "1.0.0", "1.2.0"};
    const int64_t times[] = {T0 + 5000000, T0, T0 + 9000000, T0 + 7000000};
    const char *users[] = {"u1", "u2", "u1", "u3"};
    for (int i = 0; i < 4; i++) {
        e.ev.release = (char *)releases[i];
        e.ev.time_us = times[i];
        e.ev.user_id = (char *)users[i];
        e.err.level = i == 3 ? TOCSIN__V1__LEVEL__LEVEL_FATAL : TOCSIN__V1__LEVEL__LEVEL_ERROR;
        scan(&e);
        assert_int_equal(agg_issue_apply(&is, &e.scan, &e.ev, "id1", 2, 100 + i), 0);
    }
    assert_string_equal(is.id, "id1");
    assert_string_equal(is.service, "checkout");
    assert_string_equal(is.type, "KeyError");
    assert_string_equal(is.culprit, "app.payments in charge");
    assert_int_equal(is.count, 4);
    assert_true(is.first_seen_us == T0 && is.last_seen_us == T0 + 9000000);
    assert_int_equal(is.nreleases, 3);
    assert_string_equal(is.last_release, "1.0.0"); /* of the latest event by event time */
    assert_int_equal(is.level, TOCSIN__V1__LEVEL__LEVEL_FATAL);
    assert_true(tc_hll_count(&is.users) == 3);
    assert_int_equal(is.source_offset, 104);
    assert_int_equal(is.nenvs, 1);
    assert_non_null(is.sample);
    /* The sample decodes back to the first event with its frames. */
    Tocsin__V1__Event *s = tocsin__v1__event__unpack(NULL, is.sample_len, is.sample);
    assert_non_null(s);
    assert_int_equal(s->error->n_frames, 3);
    assert_string_equal(s->error->frames[0]->function, "charge");
    assert_true(s->time_us == T0 + 5000000);
    tocsin__v1__event__free_unpacked(s, NULL);

    /* Another partition's state of the same issue, with an earlier first event. */
    e.ev.time_us = T0 - 1000000;
    e.ev.user_id = "u9";
    e.ev.release = "0.9.0";
    e.err.message = "earlier";
    scan(&e);
    assert_int_equal(agg_issue_apply(&other, &e.scan, &e.ev, "id1", 3, 50), 0);
    assert_int_equal(agg_issue_merge(&m, &is), 0);
    assert_int_equal(agg_issue_merge(&m, &other), 0);
    assert_int_equal(m.count, 5);
    assert_true(m.first_seen_us == T0 - 1000000 && m.last_seen_us == T0 + 9000000);
    assert_string_equal(m.message, "earlier"); /* from the earliest first event */
    assert_int_equal(m.nreleases, 4);
    assert_true(tc_hll_count(&m.users) == 4);
    assert_int_equal(m.level, TOCSIN__V1__LEVEL__LEVEL_FATAL);
    free(e.buf);
    agg_issue_fini(&is);
    agg_issue_fini(&other);
    agg_issue_fini(&m);
}

static void test_bounds(void **state)
{
    (void)state;
    agg_issue_t is;
    agg_issue_init(&is);
    err_t e;
    make(&e, "KeyError", "x", 1, 1);
    char rel[32];
    for (int i = 0; i < 40; i++) {
        snprintf(rel, sizeof(rel), "r%d", i);
        e.ev.release = rel;
        scan(&e);
        assert_int_equal(agg_issue_apply(&is, &e.scan, &e.ev, "id", 0, i), 0);
    }
    assert_int_equal(is.nreleases, AGG_ISSUE_RELEASES_MAX);
    assert_true(is.releases_truncated);
    /* A message longer than the bound is cut on a character boundary. */
    agg_issue_t big;
    agg_issue_init(&big);
    char *msg = malloc(AGG_ISSUE_MESSAGE_MAX * 2);
    for (size_t i = 0; i + 2 < AGG_ISSUE_MESSAGE_MAX * 2; i += 2) {
        msg[i] = (char)0xc3; /* é */
        msg[i + 1] = (char)0xa9;
    }
    msg[AGG_ISSUE_MESSAGE_MAX * 2 - 2] = 'x';
    msg[AGG_ISSUE_MESSAGE_MAX * 2 - 1] = '\0';
    e.err.message = msg;
    scan(&e);
    assert_int_equal(agg_issue_apply(&big, &e.scan, &e.ev, "id", 0, 0), 0);
    assert_true(strlen(big.message) <= AGG_ISSUE_MESSAGE_MAX);
    assert_true(strlen(big.message) % 2 == 0);
    free(msg);
    free(e.buf);
    agg_issue_fini(&big);
    agg_issue_fini(&is);
}

static void test_encode_decode(void **state)
{
    (void)state;
    agg_issue_t is, d;
    agg_issue_init(&is);
    agg_issue_init(&d);
    err_t e;
    make(&e, "KeyError", "missing 'id'", 2, 10);
    scan(&e);
    assert_int_equal(agg_issue_apply(&is, &e.scan, &e.ev, "abc", 1, 9), 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(agg_issue_encode(&is, &buf, &len), 0);
    assert_int_equal(agg_issue_decode(buf, len, &d), 0);
    assert_string_equal(d.id, "abc");
    assert_string_equal(d.culprit, is.culprit);
    assert_int_equal(d.count, 1);
    assert_int_equal(d.source_offset, 10);
    assert_int_equal(d.partition, 1);
    assert_int_equal(d.sample_len, is.sample_len);
    assert_memory_equal(d.sample, is.sample, is.sample_len);
    /* Decoding into a used issue replaces it. */
    assert_int_equal(agg_issue_decode(buf, len, &d), 0);
    assert_int_equal(d.count, 1);
    free(buf);

    /* Refusals: garbage, and states breaking the rules. */
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};
    assert_int_equal(agg_issue_decode(garbage, sizeof(garbage), &d), TC_EPARSE);
    assert_null(d.id);
    Tocsin__V1__IssueState pb = TOCSIN__V1__ISSUE_STATE__INIT;
    pb.service = "checkout";
    pb.issue_id = "abc";
    pb.count = 1;
    pb.first_seen_us = 5;
    pb.last_seen_us = 4; /* first after last */
    uint8_t tmp[256];
    size_t n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_equal(agg_issue_decode(tmp, n, &d), TC_EINVAL);
    pb.last_seen_us = 5;
    pb.count = 0;
    n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_equal(agg_issue_decode(tmp, n, &d), TC_EINVAL);
    pb.count = 1;
    pb.issue_id = "";
    n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_equal(agg_issue_decode(tmp, n, &d), TC_EINVAL);
    pb.issue_id = "abc";
    pb.level = (Tocsin__V1__Level)12;
    n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_equal(agg_issue_decode(tmp, n, &d), TC_EINVAL);
    pb.level = 0;
    uint8_t bad_users[] = {1, 14, 0};
    pb.users.data = bad_users;
    pb.users.len = sizeof(bad_users);
    n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_not_equal(agg_issue_decode(tmp, n, &d), 0);
    pb.users.len = 0;
    n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_equal(agg_issue_decode(tmp, n, &d), 0);
    /* A sample that is not an error event we would accept is refused. */
    Tocsin__V1__Event bad_sample = TOCSIN__V1__EVENT__INIT;
    bad_sample.service = "checkout"; /* no event id, no body */
    pb.sample = &bad_sample;
    n = tocsin__v1__issue_state__pack(&pb, tmp);
    assert_int_equal(agg_issue_decode(tmp, n, &d), TC_EINVAL);
    pb.sample = NULL;
    free(e.buf);
    agg_issue_fini(&is);
    agg_issue_fini(&d);
}

static void test_status_and_change(void **state)
{
    (void)state;
    agg_issue_status_t a = {AGG_STATUS_RESOLVED, 100, "api:a"};
    agg_issue_status_t b = {AGG_STATUS_UNRESOLVED, 200, "regression"};
    agg_issue_status_t c = {AGG_STATUS_IGNORED, 200, "zeta"};
    assert_true(agg_issue_status_newer(&b, &a));
    assert_false(agg_issue_status_newer(&a, &b));
    assert_true(agg_issue_status_newer(&c, &b)); /* a tie: the larger author */
    static const struct {
        const char *name;
        agg_status_t s;
    } names[] = {{"unresolved", AGG_STATUS_UNRESOLVED},
                 {"resolved", AGG_STATUS_RESOLVED},
                 {"ignored", AGG_STATUS_IGNORED}};
    for (size_t i = 0; i < N_ELEMS(names); i++) {
        agg_status_t s;
        assert_int_equal(agg_status_parse(names[i].name, &s), 0);
        assert_int_equal(s, names[i].s);
        assert_string_equal(agg_status_name(s), names[i].name);
    }
    agg_status_t s;
    assert_int_equal(agg_status_parse("closed", &s), TC_EINVAL);
    /* A status rollup reads back. */
    uint8_t *out = NULL;
    size_t len = 0;
    assert_int_equal(agg_issue_status_rollup_encode("checkout", "abc", &a, "p", &out, &len), 0);
    agg_rollup_t *r = malloc(sizeof(*r));
    agg_rollup_init(r);
    assert_int_equal(agg_rollup_decode(out, len, r, NULL), 0);
    assert_int_equal(r->body, AGG_ROLLUP_STATUS);
    assert_string_equal(r->issue_id, "abc");
    assert_int_equal(r->status.status, AGG_STATUS_RESOLVED);
    free(out);
    /* The change for the alerter. */
    agg_issue_t is;
    agg_issue_init(&is);
    err_t e;
    make(&e, "KeyError", "missing", 1, 1);
    scan(&e);
    assert_int_equal(agg_issue_apply(&is, &e.scan, &e.ev, "abc", 0, 0), 0);
    assert_int_equal(agg_issue_change_encode(&is, 1, &e.scan, "p", &out, &len), 0);
    Tocsin__V1__Rollup *ru = tocsin__v1__rollup__unpack(NULL, len, out);
    assert_non_null(ru);
    assert_int_equal(ru->body_case, TOCSIN__V1__ROLLUP__BODY_ISSUE);
    assert_int_equal(ru->issue->kind, TOCSIN__V1__ISSUE_CHANGE__KIND__KIND_NEW);
    assert_string_equal(ru->issue->issue_id, "abc");
    assert_string_equal(ru->issue->culprit, "app.payments in charge");
    assert_int_equal(ru->issue->count, 1);
    tocsin__v1__rollup__free_unpacked(ru, NULL);
    /* The view recognises it and leaves it to the alerter. */
    assert_int_equal(agg_rollup_decode(out, len, r, NULL), 0);
    assert_int_equal(r->body, AGG_ROLLUP_CHANGE);
    free(out);
    char key[64];
    size_t klen = agg_issue_key("checkout", "abc", key, sizeof(key));
    assert_int_equal(klen, strlen("checkout") + 2 + strlen("$issue:abc"));
    assert_memory_equal(key + 10, "$issue:abc", 10);
    agg_rollup_fini(r);
    free(r);
    free(e.buf);
    agg_issue_fini(&is);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grouping),      cmocka_unit_test(test_culprit),
        cmocka_unit_test(test_apply_merge),   cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_encode_decode), cmocka_unit_test(test_status_and_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
