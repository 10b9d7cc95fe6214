/*
 * Notifications: the Alertmanager-compatible body, the back-off, and the sender against a
 * real HTTP server in this process (tc_http on 127.0.0.1, port 0): a 500 then a 200 is
 * retried and delivered once; a resolve never overtakes its firing; an unreachable
 * receiver is retried and stays owed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alr_notify.h"
#include "tc_error.h"
#include "tc_http.h"
#include "tc_util.h"

/* ---- a webhook receiver -------------------------------------------------------------- */

#define MAX_REQ 64

typedef struct {
    pthread_mutex_t lock;
    int script[8]; /* statuses for the first requests; then 200 */
    int nscript;
    int count;
    char *bodies[MAX_REQ];
    int statuses[MAX_REQ];
    char content_type[64];
} sink_t;

static void sink_handler(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    sink_t *s = ctx;
    size_t len;
    const char *body = tc_http_req_body(req, &len);
    const char *ct = tc_http_req_header(req, "Content-Type");
    pthread_mutex_lock(&s->lock);
    int status = s->count < s->nscript ? s->script[s->count] : 200;
    if (s->count < MAX_REQ) {
        s->bodies[s->count] = strndup(body, len);
        s->statuses[s->count] = status;
    }
    tc_strlcpy(s->content_type, ct ? ct : "", sizeof(s->content_type));
    s->count++;
    pthread_mutex_unlock(&s->lock);
    tc_http_resp_text(resp, status, "text/plain", status == 200 ? "ok" : "no");
}

static int sink_count(sink_t *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void sink_free(sink_t *s)
{
    for (int i = 0; i < s->count && i < MAX_REQ; i++) {
        free(s->bodies[i]);
    }
    pthread_mutex_destroy(&s->lock);
}

static tc_http_t *sink_start(sink_t *s, char *url, size_t len)
{
    pthread_mutex_init(&s->lock, NULL);
    tc_http_t *http = tc_http_new("test-sink");
    assert_non_null(http);
    assert_int_equal(tc_http_route(http, "POST", "/hook", sink_handler, s), 0);
    assert_int_equal(tc_http_start(http, "127.0.0.1", 0), 0);
    snprintf(url, len, "http://127.0.0.1:%u/hook", (unsigned)tc_http_port(http));
    return http;
}

/* Delivery reports from the sender's thread. */
typedef struct {
    pthread_mutex_t lock;
    uint64_t ids[16];
    int n;
} delivered_t;

static void on_delivered(void *ctx, uint64_t id)
{
    delivered_t *d = ctx;
    pthread_mutex_lock(&d->lock);
    if (d->n < 16) {
        d->ids[d->n] = id;
    }
    d->n++;
    pthread_mutex_unlock(&d->lock);
}

static int delivered_count(delivered_t *d)
{
    pthread_mutex_lock(&d->lock);
    int n = d->n;
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* Waits (bounded) until `cond` holds; the bound only keeps a broken build from hanging. */
#define WAIT_FOR(cond)                                                                      \
    do {                                                                                    \
        int64_t deadline_ = tc_mono_us() + 20 * 1000000LL;                                  \
        while (!(cond) && tc_mono_us() < deadline_) {                                       \
            usleep(5000);                                                                   \
        }                                                                                   \
        assert_true(cond);                                                                  \
    } while (0)

static alr_transition_t transition(alr_notify_status_t status)
{
    alr_transition_t t;
    memset(&t, 0, sizeof(t));
    t.id = 7;
    t.fingerprint = 0x0123456789abcdefULL;
    t.status = status;
    t.starts_at_us = 1795000000000000LL + 123000;
    t.ends_at_us = status == ALR_NOTIFY_RESOLVED ? 1795000600000000LL : 0;
    t.has_value = true;
    t.value = 0.125;
    t.snapshot = json_pack("{s:{s:s, s:s, s:s, s:s}, s:{s:s}, s:s, s:s}", "labels", "alertname",
                           "Shop \"Errors\"", "service", "shop", "severity", "critical", "team",
                           "pay", "annotations", "summary", "too many", "receiver", "hook",
                           "webhook", "http://127.0.0.1:1/hook");
    return t;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_body(void **state)
{
    (void)state;
    alr_transition_t t = transition(ALR_NOTIFY_FIRING);
    char *body = alr_notify_body(&t, "http://alerter:7440");
    assert_non_null(body);
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "version")), "4");
    assert_string_equal(json_string_value(json_object_get(doc, "groupKey")),
                        "{}:{alertname=\"Shop \\\"Errors\\\"\"}");
    assert_int_equal(json_integer_value(json_object_get(doc, "truncatedAlerts")), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "firing");
    assert_string_equal(json_string_value(json_object_get(doc, "receiver")), "hook");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(doc, "groupLabels"), "alertname")),
                        "Shop \"Errors\"");
    assert_int_equal(json_object_size(json_object_get(doc, "groupLabels")), 1);
    json_t *common = json_object_get(doc, "commonLabels");
    assert_string_equal(json_string_value(json_object_get(common, "team")), "pay");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(doc, "commonAnnotations"), "summary")),
                        "too many");
    assert_string_equal(json_string_value(json_object_get(doc, "externalURL")),
                        "http://alerter:7440");
    json_t *alerts = json_object_get(doc, "alerts");
    assert_int_equal(json_array_size(alerts), 1);
    json_t *a = json_array_get(alerts, 0);
    assert_string_equal(json_string_value(json_object_get(a, "status")), "firing");
    json_t *labels = json_object_get(a, "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "alertname")), "Shop \"Errors\"");
    assert_string_equal(json_string_value(json_object_get(labels, "service")), "shop");
    assert_string_equal(json_string_value(json_object_get(labels, "severity")), "critical");
    assert_string_equal(json_string_value(json_object_get(labels, "team")), "pay");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(a, "annotations"), "summary")),
                        "too many");
    assert_string_equal(json_string_value(json_object_get(a, "startsAt")),
                        "2026-11-18T11:06:40.123Z");
    assert_string_equal(json_string_value(json_object_get(a, "endsAt")), ALR_ZERO_TIME);
    assert_string_equal(json_string_value(json_object_get(a, "generatorURL")),
                        "http://alerter:7440/api/v1/alerts?fingerprint=0123456789abcdef");
    assert_string_equal(json_string_value(json_object_get(a, "fingerprint")),
                        "0123456789abcdef");
    assert_true(json_real_value(json_object_get(a, "value")) == 0.125);
    assert_string_equal(alr_notify_url(&t), "http://127.0.0.1:1/hook");
    json_decref(doc);
    free(body);
    json_decref(t.snapshot);

    t = transition(ALR_NOTIFY_RESOLVED);
    t.has_value = false;
    body = alr_notify_body(&t, "http://alerter:7440");
    doc = json_loads(body, 0, &jerr);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "resolved");
    a = json_array_get(json_object_get(doc, "alerts"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "status")), "resolved");
    assert_string_equal(json_string_value(json_object_get(a, "endsAt")),
                        "2026-11-18T11:16:40.000Z");
    assert_true(json_is_null(json_object_get(a, "value")));
    json_decref(doc);
    free(body);
    json_decref(t.snapshot);
    /* No snapshot, no body. */
    t.snapshot = NULL;
    assert_null(alr_notify_body(&t, "x"));
}

static void test_backoff(void **state)
{
    (void)state;
    const int64_t s = 1000000;
    assert_int_equal(alr_backoff_us(1, s, 60 * s, 0), s);
    assert_true(alr_backoff_us(1, s, 60 * s, UINT32_MAX) < s + s / 2 + 1);
    assert_true(alr_backoff_us(1, s, 60 * s, UINT32_MAX) > s);
    assert_int_equal(alr_backoff_us(2, s, 60 * s, 0), 2 * s);
    assert_int_equal(alr_backoff_us(4, s, 60 * s, 0), 8 * s);
    assert_int_equal(alr_backoff_us(6, s, 60 * s, 0), 32 * s);
    assert_int_equal(alr_backoff_us(7, s, 60 * s, 0), 60 * s);
    assert_int_equal(alr_backoff_us(7, s, 60 * s, UINT32_MAX), 60 * s);
    assert_int_equal(alr_backoff_us(1000, s, 60 * s, 12345), 60 * s);
    assert_int_equal(alr_backoff_us(0, s, 60 * s, 0), s);
    /* Jitter spreads: two draws differ. */
    assert_true(alr_backoff_us(3, s, 60 * s, 1u << 30) != alr_backoff_us(3, s, 60 * s, 3u << 30));
}

static void test_500_then_200_delivered_once(void **state)
{
    (void)state;
    sink_t sink = {.script = {500}, .nscript = 1};
    char url[128];
    tc_http_t *http = sink_start(&sink, url, sizeof(url));
    tc_metrics_t *m = tc_metrics_new();
    tc_counter_t *delivered = tc_metrics_counter(m, "d_total", NULL, "d");
    tc_counter_t *failed = tc_metrics_counter(m, "f_total", NULL, "f");
    tc_counter_t *retries = tc_metrics_counter(m, "r_total", NULL, "r");
    delivered_t d = {.n = 0};
    pthread_mutex_init(&d.lock, NULL);
    alr_sender_opts_t o = {.backoff_base_ms = 20, .on_delivered = on_delivered, .ctx = &d,
                           .delivered = delivered, .failed = failed, .retries = retries};
    alr_sender_t *snd = alr_sender_new(&o);
    assert_non_null(snd);
    alr_transition_t t = transition(ALR_NOTIFY_FIRING);
    char *body = alr_notify_body(&t, "http://127.0.0.1:7440");
    assert_int_equal(alr_sender_submit(snd, 1, t.fingerprint, url, body), 0);
    assert_int_equal(alr_sender_submit(snd, 1, t.fingerprint, url, body), TC_EEXIST);
    WAIT_FOR(delivered_count(&d) == 1);
    assert_false(alr_sender_pending(snd, 1, NULL));
    alr_sender_stop(snd, 1000);
    /* Stopped: no more sends can happen; exactly two requests reached the receiver. */
    assert_int_equal(sink_count(&sink), 2);
    assert_int_equal(sink.statuses[0], 500);
    assert_int_equal(sink.statuses[1], 200);
    assert_string_equal(sink.bodies[0], body);
    assert_string_equal(sink.bodies[1], body);
    assert_string_equal(sink.content_type, "application/json");
    assert_int_equal(delivered_count(&d), 1);
    assert_int_equal(d.ids[0], 1);
    assert_int_equal(tc_counter_get(delivered), 1);
    assert_int_equal(tc_counter_get(failed), 1);
    assert_int_equal(tc_counter_get(retries), 1);
    assert_int_equal(alr_sender_submit(snd, 2, t.fingerprint, url, body), TC_ESTATE);
    /* The receiver got an Alertmanager body. */
    json_t *doc = json_loads(sink.bodies[1], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "version")), "4");
    assert_int_equal(json_array_size(json_object_get(doc, "alerts")), 1);
    json_decref(doc);
    free(body);
    json_decref(t.snapshot);
    alr_sender_destroy(&snd);
    alr_sender_destroy(&snd);
    tc_http_destroy(&http);
    tc_metrics_destroy(&m);
    sink_free(&sink);
    pthread_mutex_destroy(&d.lock);
}

/* Firing (id 1) fails twice; the resolve (id 2) of the same alert waits for it. Another
 * alert's notification (id 3) is not held up. */
static void test_order_per_alert(void **state)
{
    (void)state;
    sink_t sink = {.script = {500, 500}, .nscript = 2};
    char url[128];
    tc_http_t *http = sink_start(&sink, url, sizeof(url));
    delivered_t d = {.n = 0};
    pthread_mutex_init(&d.lock, NULL);
    alr_sender_opts_t o = {.backoff_base_ms = 30, .on_delivered = on_delivered, .ctx = &d};
    alr_sender_t *snd = alr_sender_new(&o);
    assert_int_equal(alr_sender_submit(snd, 1, 0xaa, url, "{\"n\":\"firing\"}"), 0);
    assert_int_equal(alr_sender_submit(snd, 2, 0xaa, url, "{\"n\":\"resolved\"}"), 0);
    WAIT_FOR(delivered_count(&d) == 2);
    alr_sender_stop(snd, 1000);
    int first_ok = -1, first_resolved = -1;
    for (int i = 0; i < sink.count; i++) {
        if (first_ok < 0 && strstr(sink.bodies[i], "firing") && sink.statuses[i] == 200) {
            first_ok = i;
        }
        if (first_resolved < 0 && strstr(sink.bodies[i], "resolved")) {
            first_resolved = i;
        }
    }
    assert_int_equal(sink.count, 4);
    assert_int_equal(first_ok, 2);
    assert_int_equal(first_resolved, 3);
    assert_int_equal(d.ids[0], 1);
    assert_int_equal(d.ids[1], 2);
    alr_sender_destroy(&snd);
    tc_http_destroy(&http);
    sink_free(&sink);
    pthread_mutex_destroy(&d.lock);
}

/* Nothing listens: attempts repeat with back-off, nothing is reported delivered, and stop
 * returns within its bound with the notification still owed. */
static void test_unreachable_stays_owed(void **state)
{
    (void)state;
    delivered_t d = {.n = 0};
    pthread_mutex_init(&d.lock, NULL);
    alr_sender_opts_t o = {.backoff_base_ms = 10, .backoff_max_ms = 20, .max_queue = 2,
                           .on_delivered = on_delivered, .ctx = &d};
    alr_sender_t *snd = alr_sender_new(&o);
    /* Port 1 on loopback: nothing listens there in a test sandbox. */
    assert_int_equal(alr_sender_submit(snd, 5, 1, "http://127.0.0.1:1/hook", "{}"), 0);
    alr_delivery_t st;
    memset(&st, 0, sizeof(st));
    WAIT_FOR(alr_sender_pending(snd, 5, &st) && st.attempts >= 3);
    assert_true(st.last_error[0] != '\0');
    assert_int_equal(st.last_status, 0);
    assert_int_equal(alr_sender_submit(snd, 6, 2, "http://127.0.0.1:1/hook", "{}"), 0);
    assert_int_equal(alr_sender_submit(snd, 7, 3, "http://127.0.0.1:1/hook", "{}"), TC_EFULL);
    assert_int_equal(alr_sender_queued(snd), 2);
    int64_t t0 = tc_mono_us();
    alr_sender_stop(snd, 500);
    assert_true(tc_mono_us() - t0 < 5 * 1000000LL);
    assert_true(alr_sender_pending(snd, 5, NULL));
    assert_int_equal(delivered_count(&d), 0);
    alr_sender_destroy(&snd);
    pthread_mutex_destroy(&d.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_500_then_200_delivered_once),
        cmocka_unit_test(test_order_per_alert),
        cmocka_unit_test(test_unreachable_stays_owed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
