/*
 * Unit tests for tools/ctl/ctl_http against a real tc_http server on 127.0.0.1 (port 0):
 * answers mapped to tocsinctl's exit codes (2xx, 400 with parameter, 401, unknown
 * endpoint vs unknown thing, 405, 500), the bearer token and request bodies, parallel
 * requests, the answer-size bound, and daemons that cannot be reached (refused, silent).
 * Also the URL builder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_args.h"
#include "ctl_http.h"
#include "tc_error.h"
#include "tc_http.h"

#define TOKEN "s3cret"

static tc_http_t *server;
static char base[64];

static void h_ok(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    const char *q = tc_http_req_query(req, "q");
    tc_http_resp_json(resp, 200, json_pack("{s:s, s:s?}", "ok", "yes", "q", q));
}

static void h_bad(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    (void)req;
    tc_http_resp_error(resp, 400, "window", "window must be a duration");
}

static void h_thing(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    (void)req;
    tc_http_resp_error(resp, 404, NULL, "no such issue");
}

static void h_fail(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    (void)req;
    tc_http_resp_text(resp, 500, "text/plain", "store broken\nsecond line");
}

static void h_echo(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    if (!tc_http_req_bearer_ok(req, TOKEN)) {
        tc_http_resp_error(resp, 401, NULL, "missing or wrong token");
        return;
    }
    size_t len = 0;
    const char *body = tc_http_req_body(req, &len);
    json_t *doc = json_loadb(body ? body : "", len, 0, NULL);
    tc_http_resp_json(resp, 200,
                      json_pack("{s:s, s:o*}", "method", tc_http_req_method(req), "got", doc));
}

static void h_big(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    (void)ctx;
    (void)req;
    size_t n = CTL_HTTP_MAX_BODY + 10;
    resp->status = 200;
    resp->content_type = "text/plain";
    resp->body = malloc(n);
    memset(resp->body, 'x', n);
    resp->len = n;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(ctl_http_init(), 0);
    server = tc_http_new("test");
    assert_non_null(server);
    assert_int_equal(tc_http_route(server, "GET", "/ok", h_ok, NULL), 0);
    assert_int_equal(tc_http_route(server, "GET", "/bad", h_bad, NULL), 0);
    assert_int_equal(tc_http_route(server, "GET", "/things/*", h_thing, NULL), 0);
    assert_int_equal(tc_http_route(server, "GET", "/fail", h_fail, NULL), 0);
    assert_int_equal(tc_http_route(server, "POST", "/echo", h_echo, NULL), 0);
    assert_int_equal(tc_http_route(server, "DELETE", "/echo", h_echo, NULL), 0);
    assert_int_equal(tc_http_route(server, "GET", "/big", h_big, NULL), 0);
    assert_int_equal(tc_http_start(server, "127.0.0.1", 0), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%u", (unsigned)tc_http_port(server));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tc_http_destroy(&server);
    ctl_http_cleanup();
    return 0;
}

static void one(ctl_http_req_t *r, const char *method, const char *path, const char *body,
                const char *token, int64_t timeout_ms)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->body = body;
    char url[256];
    snprintf(url, sizeof(url), "%s%s", base, path);
    r->url = strdup(url);
    ctl_http_perform(r, 1, token, timeout_ms);
}

typedef struct {
    const char *method, *path;
    long status;
    int exit_code;
    const char *msg_has;
} answer_case_t;

static void test_answers_and_exit_codes(void **state)
{
    (void)state;
    static const answer_case_t cases[] = {
        {"GET", "/ok", 200, CTL_EXIT_OK, NULL},
        {"GET", "/bad", 400, CTL_EXIT_ERROR, "parameter window"},
        {"GET", "/api/v1/issues", 404, CTL_EXIT_UNSUPPORTED, "does not serve GET /api/v1/issues"},
        {"GET", "/things/42", 404, CTL_EXIT_NOTFOUND, "no such issue"},
        {"GET", "/echo", 405, CTL_EXIT_UNSUPPORTED, "does not serve"},
        {"GET", "/fail", 500, CTL_EXIT_ERROR, "HTTP 500: store broken"},
        {"POST", "/echo", 401, CTL_EXIT_AUTH, "TOCSIN_TOKEN"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const answer_case_t *c = &cases[i];
        ctl_http_req_t r;
        one(&r, c->method, c->path, NULL, NULL, 5000);
        assert_int_equal(r.transport, 0);
        if (r.status != c->status || ctl_http_exit_code(&r) != c->exit_code) {
            fail_msg("case %zu %s %s: status %ld exit %d", i, c->method, c->path, r.status,
                     ctl_http_exit_code(&r));
        }
        if (c->msg_has) {
            char what[128], msg[1024];
            snprintf(what, sizeof(what), "%s %s", c->method, c->path);
            ctl_http_describe(&r, "aggregator", what, msg, sizeof(msg));
            if (!strstr(msg, c->msg_has) || !strstr(msg, base)) {
                fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, msg, c->msg_has);
            }
        }
        ctl_http_req_fini(&r);
    }
}

static void test_token_and_body(void **state)
{
    (void)state;
    ctl_http_req_t r;
    one(&r, "POST", "/echo", "{\"by\":\"alice\"}", TOKEN, 5000);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_OK);
    json_t *doc = json_loads(r.data, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "method")), "POST");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "got"), "by")),
                        "alice");
    json_decref(doc);
    ctl_http_req_fini(&r);
    one(&r, "POST", "/echo", NULL, "wrong", 5000);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_AUTH);
    ctl_http_req_fini(&r);
    one(&r, "DELETE", "/echo", NULL, TOKEN, 5000);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_OK);
    assert_non_null(strstr(r.data, "DELETE"));
    ctl_http_req_fini(&r);
}

static void test_parallel(void **state)
{
    (void)state;
    ctl_http_req_t rs[12];
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 12; i++) {
        char q[16];
        snprintf(q, sizeof(q), "%d", i);
        const char *kv[] = {"q", q, NULL};
        rs[i].method = "GET";
        rs[i].url = ctl_url(base, "/ok", kv);
    }
    ctl_http_perform(rs, 12, NULL, 5000);
    for (int i = 0; i < 12; i++) {
        assert_int_equal(rs[i].transport, 0);
        assert_int_equal(rs[i].status, 200);
        json_t *doc = json_loads(rs[i].data, 0, NULL);
        assert_int_equal(atoi(json_string_value(json_object_get(doc, "q"))), i);
        json_decref(doc);
        ctl_http_req_fini(&rs[i]);
    }
    ctl_http_perform(NULL, 0, NULL, 1000); /* nothing to do is fine */
}

static void test_answer_too_big(void **state)
{
    (void)state;
    ctl_http_req_t r;
    one(&r, "GET", "/big", NULL, NULL, 20000);
    assert_int_equal(r.transport, TC_ETOOBIG);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_ERROR);
    assert_true(r.len <= CTL_HTTP_MAX_BODY);
    ctl_http_req_fini(&r);
}

static int bound_socket(uint16_t *port, bool do_listen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    if (do_listen) {
        assert_int_equal(listen(fd, 8), 0);
    }
    return fd;
}

static void test_unreachable(void **state)
{
    (void)state;
    /* Refused: a port that was bound and closed again. */
    uint16_t port;
    int fd = bound_socket(&port, false);
    close(fd);
    ctl_http_req_t r = {0};
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/health/live", (unsigned)port);
    r.method = "GET";
    r.url = strdup(url);
    ctl_http_perform(&r, 1, NULL, 2000);
    assert_int_equal(r.transport, TC_EUNAVAIL);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_UNREACHABLE);
    char msg[512];
    ctl_http_describe(&r, "collector", "GET /health/live", msg, sizeof(msg));
    assert_non_null(strstr(msg, "cannot reach the collector at http://127.0.0.1:"));
    ctl_http_req_fini(&r);

    /* Silent: a listener that never answers; the time-out bounds the wait. */
    fd = bound_socket(&port, true);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/health/live", (unsigned)port);
    r.url = strdup(url);
    ctl_http_perform(&r, 1, NULL, 300);
    assert_int_equal(r.transport, TC_ETIMEDOUT);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_UNREACHABLE);
    ctl_http_describe(&r, "aggregator", "GET /health/live", msg, sizeof(msg));
    assert_non_null(strstr(msg, "timed out"));
    ctl_http_req_fini(&r);
    close(fd);

    /* An unknown host name. */
    r.url = strdup("http://no-such-host.invalid:7430/health/live");
    ctl_http_perform(&r, 1, NULL, 2000);
    assert_int_equal(ctl_http_exit_code(&r), CTL_EXIT_UNREACHABLE);
    ctl_http_req_fini(&r);
}

static void test_urls(void **state)
{
    (void)state;
    const char *kv[] = {"service", "shop & co", "name", "/api/pay?x=1", "skip", NULL,
                        "q",       "0.5,0.99",  NULL};
    char *u = ctl_url("http://a:1", "/api/v1/query", kv);
    assert_string_equal(u, "http://a:1/api/v1/query?service=shop%20%26%20co"
                           "&name=%2Fapi%2Fpay%3Fx%3D1&q=0.5%2C0.99");
    free(u);
    u = ctl_url("http://a:1", "/x", NULL);
    assert_string_equal(u, "http://a:1/x");
    free(u);
    char *e = ctl_url_escape("$errors é~");
    assert_string_equal(e, "%24errors%20%C3%A9~");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_and_exit_codes),
        cmocka_unit_test(test_token_and_body),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_answer_too_big),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
