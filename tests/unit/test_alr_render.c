/*
 * alr_render: what each receiver type gets — an Alertmanager version-4 body, Slack text,
 * PagerDuty events (trigger / acknowledge / resolve with one dedup_key), an e-mail whose
 * headers cannot be injected into.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "alr_render.h"

static alr_msg_t msg(alr_msg_kind_t kind, const char *status, const char *title)
{
    alr_msg_t m;
    memset(&m, 0, sizeof(m));
    m.id = 42;
    m.kind = kind;
    strcpy(m.receiver, "r");
    strcpy(m.group_key, "p:{alertname=\"ShopErrors\"}");
    strcpy(m.dedup_key, "tocsin-00ff");
    m.created_us = 1800000000000000LL;
    m.payload = json_pack(
        "{s:s, s:s, s:[{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s}, s:I, s:I, s:f}], s:[s], s:i, "
        "s:i, s:i, s:{s:s}, s:{s:s, s:s}, s:{s:s}}",
        "status", status, "title", title, "alerts", "fingerprint", "0123456789abcdef", "status",
        status, "labels", "alertname", "ShopErrors", "service", "shop", "severity", "critical",
        "annotations", "summary", "7% errors", "starts_us", (json_int_t)1800000000000000LL,
        "ends_us", (json_int_t)0, "value", 0.07, "fingerprints", "0123456789abcdef", "firing",
        1, "resolved", 0, "more", 240, "group_labels", "alertname", "ShopErrors",
        "common_labels", "alertname", "ShopErrors", "service", "shop", "common_annotations",
        "summary", "7% errors");
    return m;
}

static alr_receiver_t rcv(alr_receiver_type_t type)
{
    static char *to[] = {"oncall@x.test"};
    alr_receiver_t r;
    memset(&r, 0, sizeof(r));
    r.name = "r";
    r.type = type;
    r.url = type == ALR_RCV_EMAIL ? "smtp://127.0.0.1:25" : "http://127.0.0.1:9/x";
    r.routing_key = "key1";
    r.from = "tocsin@x.test";
    r.to = to;
    r.nto = 1;
    r.timeout_ms = 1000;
    return r;
}

static json_t *render_json(alr_msg_t *m, alr_receiver_type_t t)
{
    alr_receiver_t r = rcv(t);
    alr_request_t req;
    assert_int_equal(alr_render(m, &r, "http://alerter:7440", 20, m->created_us, &req), 0);
    json_error_t e;
    json_t *doc = json_loads(req.body, 0, &e);
    assert_non_null(doc);
    assert_string_equal(req.content_type, "application/json");
    alr_request_fini(&req);
    return doc;
}

static void test_webhook_alertmanager_v4(void **state)
{
    (void)state;
    alr_msg_t m = msg(ALR_MSG_FIRING, "firing", "ShopErrors (shop)");
    json_t *d = render_json(&m, ALR_RCV_WEBHOOK);
    static const char *const fields[] = {"version", "groupKey", "truncatedAlerts", "status",
                                         "receiver", "groupLabels", "commonLabels",
                                         "commonAnnotations", "externalURL", "alerts"};
    for (size_t i = 0; i < 10; i++) {
        assert_non_null(json_object_get(d, fields[i]));
    }
    assert_string_equal(json_string_value(json_object_get(d, "version")), "4");
    assert_int_equal(json_integer_value(json_object_get(d, "truncatedAlerts")), 240);
    json_t *a = json_array_get(json_object_get(d, "alerts"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "endsAt")), "0001-01-01T00:00:00Z");
    assert_string_equal(json_string_value(json_object_get(a, "startsAt")),
                        "2027-01-15T08:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(a, "generatorURL")),
                        "http://alerter:7440/api/v1/alerts/0123456789abcdef");
    json_decref(d);
    json_decref(m.payload);
}

static void test_slack_text(void **state)
{
    (void)state;
    alr_msg_t m = msg(ALR_MSG_DIGEST, "firing", "Alert storm");
    json_t *d = render_json(&m, ALR_RCV_SLACK);
    const char *text = json_string_value(json_object_get(d, "text"));
    assert_non_null(strstr(text, "STORM"));
    assert_non_null(strstr(text, "ShopErrors"));
    assert_non_null(strstr(text, "and 240 more"));
    json_decref(d);
    json_decref(m.payload);
}

static void test_pagerduty_actions(void **state)
{
    (void)state;
    static const struct {
        alr_msg_kind_t kind;
        const char *status, *action;
    } cases[] = {{ALR_MSG_FIRING, "firing", "trigger"},
                 {ALR_MSG_ESCALATION, "firing", "trigger"},
                 {ALR_MSG_ACK, "acknowledged", "acknowledge"},
                 {ALR_MSG_RESOLVED, "resolved", "resolve"}};
    for (size_t i = 0; i < 4; i++) {
        alr_msg_t m = msg(cases[i].kind, cases[i].status, "ShopErrors (shop)");
        json_t *d = render_json(&m, ALR_RCV_PAGERDUTY);
        assert_string_equal(json_string_value(json_object_get(d, "event_action")),
                            cases[i].action);
        assert_string_equal(json_string_value(json_object_get(d, "dedup_key")), "tocsin-00ff");
        assert_string_equal(json_string_value(json_object_get(d, "routing_key")), "key1");
        json_t *p = json_object_get(d, "payload");
        assert_string_equal(json_string_value(json_object_get(p, "severity")), "critical");
        assert_string_equal(json_string_value(json_object_get(p, "source")), "shop");
        assert_true(strlen(json_string_value(json_object_get(p, "summary"))) <= 1024);
        json_decref(d);
        json_decref(m.payload);
    }
}

static void test_email_headers(void **state)
{
    (void)state;
    alr_msg_t m = msg(ALR_MSG_FIRING, "firing", "Evil\r\nBcc: victim@x.test");
    alr_receiver_t r = rcv(ALR_RCV_EMAIL);
    alr_request_t req;
    assert_int_equal(alr_render(&m, &r, "http://alerter", 20, m.created_us, &req), 0);
    assert_true(req.smtp);
    assert_int_equal(req.nrcpt, 1);
    assert_string_equal(req.mail_from, "tocsin@x.test");
    /* The header section (up to the blank line) holds no injected header. */
    char *end = strstr(req.body, "\r\n\r\n");
    assert_non_null(end);
    *end = '\0';
    assert_null(strstr(req.body, "\r\nBcc:"));
    *end = '\r';
    assert_non_null(strstr(req.body, "Subject: [FIRING:1] Evil  Bcc: victim@x.test\r\n"));
    assert_non_null(strstr(req.body, "To: oncall@x.test\r\n"));
    assert_non_null(strstr(req.body, "\r\n\r\n[FIRING:1]"));
    assert_int_equal(req.body_len, strlen(req.body));
    alr_request_fini(&req);
    json_decref(m.payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_webhook_alertmanager_v4),
        cmocka_unit_test(test_slack_text),
        cmocka_unit_test(test_pagerduty_actions),
        cmocka_unit_test(test_email_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
