/*
 * alr_notify: the sender against real servers on 127.0.0.1 — an HTTP server (tc_http)
 * answering 200, 500 and 429 with Retry-After, a port nobody listens on, and a small SMTP
 * server thread that accepts one message and refuses the next (transient).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "alr_notify.h"
#include "tc_http.h"
#include "tc_util.h"

static void on_post(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    const char *path = tc_http_req_path(req);
    size_t len;
    const char *body = tc_http_req_body(req, &len);
    if (strcmp(path, "/ok") == 0 && len == 7 && memcmp(body, "{\"a\":1}", 7) == 0) {
        tc_http_resp_text(resp, 200, "text/plain", "ok");
    } else if (strcmp(path, "/busy") == 0) {
        tc_http_resp_header(resp, "Retry-After", "7");
        tc_http_resp_text(resp, 429, "text/plain", "slow down");
    } else {
        tc_http_resp_text(resp, 500, "text/plain", "broken");
    }
}

static alr_request_t http_req(uint16_t port, const char *path)
{
    alr_request_t r;
    memset(&r, 0, sizeof(r));
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    r.url = strdup(url);
    r.body = strdup("{\"a\":1}");
    r.body_len = 7;
    r.content_type = "application/json";
    r.timeout_ms = 3000;
    return r;
}

static alr_result_t wait_result(alr_sender_t *s)
{
    alr_result_t r;
    int64_t end = tc_mono_us() + 10000000;
    while (tc_mono_us() < end) {
        if (alr_sender_results(s, &r, 1) == 1) {
            return r;
        }
        usleep(5000);
    }
    fail_msg("no result");
    return r;
}

static void test_http_outcomes(void **state)
{
    (void)state;
    tc_http_t *h = tc_http_new("test");
    assert_int_equal(tc_http_route(h, "POST", "/*", on_post, NULL), 0);
    assert_int_equal(tc_http_start(h, "127.0.0.1", 0), 0);
    uint16_t port = tc_http_port(h);
    alr_sender_t *s = alr_sender_new(4, 1000);
    assert_non_null(s);
    static const struct {
        const char *path;
        int status;
        int64_t retry_after_ms;
    } cases[] = {{"/ok", 200, -1}, {"/broken", 500, -1}, {"/busy", 429, 7000}};
    for (size_t i = 0; i < 3; i++) {
        alr_request_t r = http_req(port, cases[i].path);
        assert_int_equal(alr_sender_submit(s, 10 + i, &r), 0);
        assert_null(r.url); /* the sender took it */
        alr_result_t res = wait_result(s);
        assert_int_equal(res.id, 10 + i);
        assert_true(res.transport_ok);
        assert_int_equal(res.status, cases[i].status);
        assert_int_equal(res.retry_after_ms, cases[i].retry_after_ms);
    }
    /* Nobody listens: no answer. */
    tc_http_destroy(&h);
    alr_request_t r = http_req(port, "/ok");
    assert_int_equal(alr_sender_submit(s, 20, &r), 0);
    alr_result_t res = wait_result(s);
    assert_false(res.transport_ok);
    assert_true(res.error[0] != '\0');
    alr_sender_stop(s, 1000);
    r = http_req(port, "/ok");
    assert_int_not_equal(alr_sender_submit(s, 21, &r), 0);
    alr_request_fini(&r);
    alr_sender_destroy(&s);
    alr_sender_destroy(&s);
}

/* A one-connection-at-a-time SMTP server: the first message gets 250, later ones 451. */
typedef struct {
    int fd;
    int messages;
    char data[4096];
} smtp_t;

static void say(int fd, const char *s)
{
    ssize_t w = write(fd, s, strlen(s));
    (void)w;
}

static void *smtp_main(void *arg)
{
    smtp_t *sm = arg;
    for (;;) {
        int c = accept(sm->fd, NULL, NULL);
        if (c < 0) {
            return NULL;
        }
        FILE *in = fdopen(dup(c), "r");
        say(c, "220 test\r\n");
        char line[1100];
        bool data = false;
        while (fgets(line, sizeof(line), in)) {
            if (data) {
                if (strcmp(line, ".\r\n") == 0) {
                    data = false;
                    say(c, sm->messages++ == 0 ? "250 ok\r\n" : "451 busy\r\n");
                } else if (strlen(sm->data) + strlen(line) < sizeof(sm->data) - 1) {
                    strcat(sm->data, line);
                }
            } else if (strncasecmp(line, "EHLO", 4) == 0) {
                say(c, "250 test\r\n");
            } else if (strncasecmp(line, "DATA", 4) == 0) {
                data = true;
                say(c, "354 go\r\n");
            } else if (strncasecmp(line, "QUIT", 4) == 0) {
                say(c, "221 bye\r\n");
                break;
            } else {
                say(c, "250 ok\r\n");
            }
        }
        fclose(in);
        close(c);
    }
    return NULL;
}

static void test_smtp(void **state)
{
    (void)state;
    smtp_t sm;
    memset(&sm, 0, sizeof(sm));
    sm.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(sm.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(sm.fd, 4), 0);
    socklen_t sl = sizeof(sa);
    getsockname(sm.fd, (struct sockaddr *)&sa, &sl);
    pthread_t th;
    pthread_create(&th, NULL, smtp_main, &sm);
    alr_sender_t *s = alr_sender_new(1, 1000);
    static char *rcpt[] = {"<oncall@x.test>"};
    for (int i = 0; i < 2; i++) {
        alr_request_t r;
        memset(&r, 0, sizeof(r));
        char url[64];
        snprintf(url, sizeof(url), "smtp://127.0.0.1:%u", ntohs(sa.sin_port));
        r.url = strdup(url);
        r.body = strdup("Subject: hi\r\n\r\nfirst line\r\n.dot line\r\n");
        r.body_len = strlen(r.body);
        r.smtp = true;
        r.mail_from = "<tocsin@x.test>";
        r.rcpt = rcpt;
        r.nrcpt = 1;
        r.timeout_ms = 5000;
        assert_int_equal(alr_sender_submit(s, (uint64_t)(30 + i), &r), 0);
        alr_result_t res = wait_result(s);
        assert_true(res.transport_ok);
        /* 250 is delivered (200); 451 is transient (503: retried by the dispatcher). */
        assert_int_equal(res.status, i == 0 ? 200 : 503);
    }
    alr_sender_destroy(&s);
    shutdown(sm.fd, SHUT_RDWR); /* ends the server's accept (libcurl may reuse one connection) */
    pthread_join(th, NULL);
    close(sm.fd);
    assert_non_null(strstr(sm.data, "first line"));
    assert_non_null(strstr(sm.data, "..dot line")); /* dot-stuffed on the wire */
}

static void test_retry_after_parse(void **state)
{
    (void)state;
    int64_t now = 1784000000LL * 1000000; /* 2026-07-14T03:33:20Z */
    assert_int_equal(alr_retry_after_ms("3", now), 3000);
    assert_int_equal(alr_retry_after_ms(" 120 \r\n", now), 120000);
    assert_int_equal(alr_retry_after_ms("Tue, 14 Jul 2026 03:33:30 GMT", now), 10000);
    assert_int_equal(alr_retry_after_ms("Tue, 14 Jul 2026 03:00:00 GMT", now), 0);
    assert_int_equal(alr_retry_after_ms("soon", now), -1);
    assert_int_equal(alr_retry_after_ms("999999999", now), 86400000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_outcomes),
        cmocka_unit_test(test_smtp),
        cmocka_unit_test(test_retry_after_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
