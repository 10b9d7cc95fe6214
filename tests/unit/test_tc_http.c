/*
 * Unit tests for common/tc_http: a real server on 127.0.0.1 (port 0), real requests
 * through libcurl. Covers the built-in /health and /metrics endpoints, custom and prefix
 * routes, 404/405/413/500, request bodies, query parameters, bearer tokens and the
 * response helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_http.h"
#include "tc_metrics.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define TOKEN "s3cret-token"
#define BODY_LIMIT 1024

/* ---- a small HTTP client ---- */

typedef struct {
    long status;
    char *body;
    size_t len;
    char content_type[128];
    char x_test[256]; /* the X-Test response header, if any */
    int x_test_count;
} reply_t;

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    reply_t *r = arg;
    size_t add = size * n;
    char *b = realloc(r->body, r->len + add + 1);
    if (!b) {
        return 0;
    }
    memcpy(b + r->len, data, add);
    r->body = b;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    reply_t *r = arg;
    size_t len = size * n;
    if (len > 8 && strncasecmp(data, "X-Test: ", 8) == 0) {
        size_t vlen = len - 8;
        while (vlen > 0 && (data[8 + vlen - 1] == '\r' || data[8 + vlen - 1] == '\n')) {
            vlen--;
        }
        if (vlen >= sizeof(r->x_test)) {
            vlen = sizeof(r->x_test) - 1;
        }
        memcpy(r->x_test, data + 8, vlen);
        r->x_test[vlen] = '\0';
        r->x_test_count++;
    }
    return len;
}

static uint16_t port;

/* Sends one request; `headers` is a NULL-terminated list or NULL. */
static void request(const char *method, const char *path, const char *body, size_t blen,
                    const char *const *headers, reply_t *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers && headers[i]; i++) {
        hl = curl_slist_append(hl, headers[i]);
        assert_non_null(hl);
    }
    if (hl) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->content_type, sizeof(r->content_type), "%s", ct ? ct : "");
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    if (!r->body) {
        r->body = calloc(1, 1);
        assert_non_null(r->body);
    }
}

static void get(const char *path, reply_t *r)
{
    request("GET", path, NULL, 0, NULL, r);
}

static json_t *reply_json(const reply_t *r)
{
    if (strcmp(r->content_type, "application/json") != 0) {
        fail_msg("content type \"%s\" for %s", r->content_type, r->body);
    }
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->len, 0, &jerr);
    if (!doc || !json_is_object(doc)) {
        fail_msg("not a JSON object (%s): %s", jerr.text, r->body);
    }
    return doc;
}

static const char *jstr(json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/* An error reply: {"error": "...", "parameter": param} (no parameter when NULL). */
static void expect_error(const reply_t *r, long status, const char *param)
{
    if (r->status != status) {
        fail_msg("status %ld, expected %ld: %s", r->status, status, r->body);
    }
    json_t *doc = reply_json(r);
    const char *e = jstr(doc, "error");
    assert_non_null(e);
    assert_true(strlen(e) > 0);
    if (param) {
        assert_string_equal(jstr(doc, "parameter"), param);
        assert_int_equal(json_object_size(doc), 2);
    } else {
        assert_null(json_object_get(doc, "parameter"));
        assert_int_equal(json_object_size(doc), 1);
    }
    json_decref(doc);
}

static void reply_free(reply_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- the server under test ---- */

typedef struct {
    atomic_int kafka; /* tc_health_status_t of the "kafka" dependency */
    atomic_int lmdb;
    atomic_int body_calls; /* times the body handler ran */
} app_t;

static app_t app;
static tc_http_t *server;
static tc_metrics_t *metrics;

static void ready_check(void *ctx, tc_health_t *health)
{
    app_t *a = ctx;
    tc_health_add(health, "kafka", (tc_health_status_t)atomic_load(&a->kafka), 1.5, "3 brokers");
    tc_health_add(health, "lmdb", (tc_health_status_t)atomic_load(&a->lmdb), 0.25, NULL);
}

static void h_echo(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    const char *name = tc_http_req_query(req, "name");
    const char *n = tc_http_req_query(req, "n");
    const char *ua = tc_http_req_header(req, "X-Client");
    json_t *doc =
        json_pack("{s:s, s:s, s:o, s:o, s:o}", "method", tc_http_req_method(req), "path",
                  tc_http_req_path(req), "name", name ? json_string(name) : json_null(), "n",
                  n ? json_string(n) : json_null(), "client", ua ? json_string(ua) : json_null());
    tc_http_resp_json(resp, 200, doc);
}

static void h_item(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    const char *prefix = ctx;
    char text[300];
    snprintf(text, sizeof(text), "%s:%s:%s", tc_http_req_method(req), prefix,
             tc_http_req_path(req) + strlen(prefix));
    tc_http_resp_text(resp, 200, "text/plain", text);
}

static void h_body(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    atomic_fetch_add(&app.body_calls, 1);
    size_t len = 0;
    const char *body = tc_http_req_body(req, &len);
    uint32_t sum = 0;
    for (size_t i = 0; i < len; i++) {
        sum = sum * 31 + (unsigned char)body[i];
    }
    json_t *doc = json_pack("{s:I, s:I, s:b}", "len", (json_int_t)len, "sum", (json_int_t)sum,
                            "terminated", body[len] == '\0');
    tc_http_resp_json(resp, 200, doc);
}

static void h_secure(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    const char *token = ctx;
    if (!tc_http_req_bearer_ok(req, token)) {
        tc_http_resp_error(resp, 401, NULL, "a bearer token is required");
        return;
    }
    tc_http_resp_text(resp, 200, "text/plain", "granted");
}

static void h_error(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    const char *w = tc_http_req_query(req, "window");
    tc_http_resp_error(resp, 400, "window", "window \"%s\" is not a duration", w ? w : "");
}

static void h_nothing(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
}

static void h_headers(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    tc_http_resp_text(resp, 201, "text/plain; charset=utf-8", "with header");
    char longv[300];
    memset(longv, 'v', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    tc_http_resp_header(resp, "X-Test", longv);
}

static void h_tag(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    tc_http_resp_text(resp, 200, "text/plain", ctx);
}

static int setup_server(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    metrics = tc_metrics_new();
    if (!metrics) {
        return -1;
    }
    tc_counter_t *c = tc_metrics_counter(metrics, "tocsin_test_requests_total", NULL, "Req.");
    if (!c) {
        return -1;
    }
    tc_counter_add(c, 7);
    server = tc_http_new("testd");
    if (!server) {
        return -1;
    }
    assert_int_equal(tc_http_port(server), 0);
    int rc = 0;
    rc |= tc_http_route(server, "GET", "/api/echo", h_echo, NULL);
    rc |= tc_http_route(server, "GET", "/api/items/*", h_item, "/api/items/");
    rc |= tc_http_route(server, "PUT", "/api/items/*", h_item, "/api/items/");
    rc |= tc_http_route(server, "GET", "/api/items/special", h_tag, "never: the prefix wins");
    rc |= tc_http_route(server, "POST", "/api/body", h_body, NULL);
    rc |= tc_http_route(server, "POST", "/api/secure", h_secure, TOKEN);
    rc |= tc_http_route(server, "POST", "/api/open", h_secure, "");
    rc |= tc_http_route(server, "POST", "/api/open-null", h_secure, NULL);
    rc |= tc_http_route(server, "GET", "/api/error", h_error, NULL);
    rc |= tc_http_route(server, "GET", "/api/nothing", h_nothing, NULL);
    rc |= tc_http_route(server, "GET", "/api/headers", h_headers, NULL);
    rc |= tc_http_route(server, "GET", "/api/first", h_tag, "first");
    rc |= tc_http_route(server, "GET", "/api/first", h_tag, "second");
    rc |= tc_http_route(server, "DELETE", "/api/first", h_tag, "deleted");
    if (rc != 0) {
        return -1;
    }
    tc_http_set_ready(server, ready_check, &app);
    tc_http_set_metrics(server, metrics);
    tc_http_set_body_limit(server, BODY_LIMIT);
    /* A bad address is refused before anything is bound, and the server can still start. */
    if (tc_http_start(server, "not-an-address", 0) != TC_EINVAL ||
        tc_http_start(server, "999.1.1.1", 0) != TC_EINVAL) {
        return -1;
    }
    /* Routes added after a failed start still come before the built-in ones. */
    if (tc_http_route(server, "GET", "/health/live", h_tag, "daemon's own live") != 0) {
        return -1;
    }
    if (tc_http_start(server, "127.0.0.1", 0) != 0) {
        return -1;
    }
    port = tc_http_port(server);
    return port ? 0 : -1;
}

static int teardown_server(void **state)
{
    tc_http_destroy(&server);
    tc_http_destroy(&server); /* safe twice */
    tc_metrics_destroy(&metrics);
    curl_global_cleanup();
    return 0;
}

/* ---- tests ---- */

static void test_state_errors(void **state)
{
    assert_int_equal(tc_http_route(server, "GET", "/late", h_tag, "late"), TC_ESTATE);
    assert_int_equal(tc_http_start(server, "127.0.0.1", 0), TC_ESTATE);

    /* A port already bound is TC_EIO. */
    tc_http_t *other = tc_http_new("other");
    assert_non_null(other);
    assert_int_equal(tc_http_start(other, "127.0.0.1", port), TC_EIO);
    assert_int_equal(tc_http_port(other), 0);
    tc_http_destroy(&other);
    assert_null(other);
}

static void test_health_live(void **state)
{
    /* The route added after the failed start took /health/live, ahead of the built-in. */
    reply_t r;
    get("/health/live", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "daemon's own live");
    reply_free(&r);

    /* The built-in one, on a server of its own. */
    tc_http_t *s = tc_http_new("lived");
    assert_non_null(s);
    assert_int_equal(tc_http_start(s, "127.0.0.1", 0), 0);
    uint16_t saved = port;
    port = tc_http_port(s);
    assert_int_not_equal(port, 0);
    assert_int_not_equal(port, saved);
    get("/health/live", &r);
    assert_int_equal(r.status, 200);
    json_t *doc = reply_json(&r);
    assert_string_equal(jstr(doc, "status"), "healthy");
    assert_string_equal(jstr(doc, "daemon"), "lived");
    assert_string_equal(jstr(doc, "version"), TOCSIN_VERSION);
    json_decref(doc);
    reply_free(&r);

    /* Without a readiness check, ready means live: healthy, no dependencies. */
    get("/health/ready", &r);
    assert_int_equal(r.status, 200);
    doc = reply_json(&r);
    assert_string_equal(jstr(doc, "status"), "healthy");
    assert_true(json_is_object(json_object_get(doc, "dependencies")));
    assert_int_equal(json_object_size(json_object_get(doc, "dependencies")), 0);
    json_decref(doc);
    reply_free(&r);

    /* Without a registry, /metrics is empty but answers. */
    get("/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    reply_free(&r);

    /* HEAD is answered like GET, without a body. */
    request("HEAD", "/health/live", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    reply_free(&r);

    port = saved;
    tc_http_destroy(&s);
}

static void test_health_ready(void **state)
{
    static const struct {
        tc_health_status_t kafka, lmdb;
        long status;
        const char *overall;
    } cases[] = {
        {TC_HEALTH_HEALTHY, TC_HEALTH_HEALTHY, 200, "healthy"},
        {TC_HEALTH_DEGRADED, TC_HEALTH_HEALTHY, 200, "degraded"},
        {TC_HEALTH_HEALTHY, TC_HEALTH_DEGRADED, 200, "degraded"},
        {TC_HEALTH_UNHEALTHY, TC_HEALTH_HEALTHY, 503, "unhealthy"},
        {TC_HEALTH_DEGRADED, TC_HEALTH_UNHEALTHY, 503, "unhealthy"},
        {TC_HEALTH_HEALTHY, TC_HEALTH_HEALTHY, 200, "healthy"}, /* and back */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        atomic_store(&app.kafka, (int)cases[i].kafka);
        atomic_store(&app.lmdb, (int)cases[i].lmdb);
        reply_t r;
        get("/health/ready", &r);
        if (r.status != cases[i].status) {
            fail_msg("case %zu: status %ld: %s", i, r.status, r.body);
        }
        json_t *doc = reply_json(&r);
        assert_string_equal(jstr(doc, "status"), cases[i].overall);
        assert_string_equal(jstr(doc, "daemon"), "testd");
        assert_string_equal(jstr(doc, "version"), TOCSIN_VERSION);
        json_t *deps = json_object_get(doc, "dependencies");
        assert_true(json_is_object(deps));
        assert_int_equal(json_object_size(deps), 2);

        json_t *k = json_object_get(deps, "kafka");
        assert_string_equal(jstr(k, "status"), tc_health_status_name(cases[i].kafka));
        assert_true(json_is_number(json_object_get(k, "response_time_ms")));
        assert_true(json_number_value(json_object_get(k, "response_time_ms")) == 1.5);
        assert_string_equal(jstr(k, "detail"), "3 brokers");

        json_t *l = json_object_get(deps, "lmdb");
        assert_string_equal(jstr(l, "status"), tc_health_status_name(cases[i].lmdb));
        assert_true(json_number_value(json_object_get(l, "response_time_ms")) == 0.25);
        assert_null(json_object_get(l, "detail"));
        json_decref(doc);
        reply_free(&r);
    }
    assert_string_equal(tc_health_status_name(TC_HEALTH_HEALTHY), "healthy");
    assert_string_equal(tc_health_status_name(TC_HEALTH_DEGRADED), "degraded");
    assert_string_equal(tc_health_status_name(TC_HEALTH_UNHEALTHY), "unhealthy");
}

static void test_metrics_endpoint(void **state)
{
    reply_t r;
    get("/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "# TYPE tocsin_test_requests_total counter\n"));
    assert_non_null(strstr(r.body, "\ntocsin_test_requests_total 7\n"));
    reply_free(&r);
}

static void test_custom_routes(void **state)
{
    reply_t r;
    const char *hdrs[] = {"X-Client: unit-test", NULL};
    request("GET", "/api/echo?name=a%20b&n=3&extra", NULL, 0, hdrs, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = reply_json(&r);
    assert_string_equal(jstr(doc, "method"), "GET");
    assert_string_equal(jstr(doc, "path"), "/api/echo"); /* without the query string */
    assert_string_equal(jstr(doc, "name"), "a b");
    assert_string_equal(jstr(doc, "n"), "3");
    assert_string_equal(jstr(doc, "client"), "unit-test");
    json_decref(doc);
    reply_free(&r);

    get("/api/echo", &r);
    doc = reply_json(&r);
    assert_true(json_is_null(json_object_get(doc, "name")));
    assert_true(json_is_null(json_object_get(doc, "client")));
    json_decref(doc);
    reply_free(&r);

    /* Prefix routes, by method; the first matching route wins. */
    static const struct {
        const char *method, *path;
        long status;
        const char *body;
    } cases[] = {
        {"GET", "/api/items/42", 200, "GET:/api/items/:42"},
        {"GET", "/api/items/a/b/c", 200, "GET:/api/items/:a/b/c"},
        {"GET", "/api/items/", 200, "GET:/api/items/:"},
        {"PUT", "/api/items/7", 200, "PUT:/api/items/:7"},
        {"GET", "/api/items/special", 200, "GET:/api/items/:special"},
        {"GET", "/api/first", 200, "first"},
        {"DELETE", "/api/first", 200, "deleted"},
        {"GET", "/api/items", 404, NULL}, /* the prefix is "/api/items/" */
        {"GET", "/api/echo/", 404, NULL}, /* exact routes are exact */
        {"GET", "/api/ech", 404, NULL},
        {"GET", "/nope", 404, NULL},
        {"GET", "/", 404, NULL},
        {"DELETE", "/api/items/7", 405, NULL},
        {"POST", "/api/first", 405, NULL},
        {"GET", "/api/body", 405, NULL},
        {"POST", "/health/ready", 405, NULL},
        {"DELETE", "/metrics", 405, NULL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        request(cases[i].method, cases[i].path, NULL, 0, NULL, &r);
        if (r.status != cases[i].status) {
            fail_msg("%s %s: %ld %s", cases[i].method, cases[i].path, r.status, r.body);
        }
        if (cases[i].body) {
            assert_string_equal(r.body, cases[i].body);
        } else {
            expect_error(&r, cases[i].status, NULL);
        }
        reply_free(&r);
    }
}

static void test_bodies(void **state)
{
    static const struct {
        size_t len;
        long status;
    } cases[] = {
        {1, 200},
        {100, 200},
        {BODY_LIMIT - 1, 200},
        {BODY_LIMIT, 200},
        {BODY_LIMIT + 1, 413},
        {4 * BODY_LIMIT, 413},
        {300000, 413},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t len = cases[i].len;
        char *body = malloc(len);
        assert_non_null(body);
        uint32_t sum = 0;
        for (size_t k = 0; k < len; k++) {
            body[k] = (char)(k % 251); /* NUL bytes included */
            sum = sum * 31 + (unsigned char)body[k];
        }
        int calls = atomic_load(&app.body_calls);
        reply_t r;
        request("POST", "/api/body", body, len, NULL, &r);
        if (r.status != cases[i].status) {
            fail_msg("body of %zu bytes: %ld %s", len, r.status, r.body);
        }
        if (r.status == 200) {
            json_t *doc = reply_json(&r);
            assert_int_equal(json_integer_value(json_object_get(doc, "len")), len);
            assert_int_equal(json_integer_value(json_object_get(doc, "sum")), sum);
            assert_true(json_is_true(json_object_get(doc, "terminated")));
            json_decref(doc);
            assert_int_equal(atomic_load(&app.body_calls), calls + 1);
        } else {
            expect_error(&r, 413, NULL);
            assert_int_equal(atomic_load(&app.body_calls), calls); /* handler not reached */
        }
        reply_free(&r);
        free(body);
    }

    /* No body at all. */
    reply_t r;
    request("POST", "/api/body", "", 0, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = reply_json(&r);
    assert_int_equal(json_integer_value(json_object_get(doc, "len")), 0);
    json_decref(doc);
    reply_free(&r);

    /* A chunked upload over the limit is refused too. */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    char big[3000];
    memset(big, 'z', sizeof(big));
    request("POST", "/api/body", big, sizeof(big), chunked, &r);
    expect_error(&r, 413, NULL);
    reply_free(&r);
}

static void test_bearer(void **state)
{
    static const struct {
        const char *path;
        const char *auth; /* Authorization header, or NULL */
        long status;
    } cases[] = {
        {"/api/secure", NULL, 401},
        {"/api/secure", "Authorization: Bearer " TOKEN, 200},
        {"/api/secure", "Authorization: bearer " TOKEN, 200}, /* the scheme is case-blind */
        {"/api/secure", "Authorization: BEARER " TOKEN, 200},
        {"/api/secure", "Authorization: Bearer s3cret-toke", 401},
        {"/api/secure", "Authorization: Bearer s3cret-tokenX", 401},
        {"/api/secure", "Authorization: Bearer S3CRET-TOKEN", 401}, /* the token is not */
        {"/api/secure", "Authorization: Bearer ", 401},
        {"/api/secure", "Authorization: Basic " TOKEN, 401},
        {"/api/secure", "Authorization: " TOKEN, 401},
        {"/api/secure", "Authorization: BearerX " TOKEN, 401},
        {"/api/open", NULL, 200}, /* empty token: no check */
        {"/api/open", "Authorization: Bearer x", 200},
        {"/api/open-null", NULL, 200}, /* NULL token: no check */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const char *hdrs[] = {cases[i].auth, NULL};
        reply_t r;
        request("POST", cases[i].path, "x", 1, cases[i].auth ? hdrs : NULL, &r);
        if (r.status != cases[i].status) {
            fail_msg("%s with \"%s\": %ld %s", cases[i].path,
                     cases[i].auth ? cases[i].auth : "(none)", r.status, r.body);
        }
        if (r.status == 401) {
            expect_error(&r, 401, NULL);
        } else {
            assert_string_equal(r.body, "granted");
        }
        reply_free(&r);
    }
}

static void test_errors_and_headers(void **state)
{
    reply_t r;
    get("/api/error?window=5x", &r);
    expect_error(&r, 400, "window");
    json_t *doc = reply_json(&r);
    assert_string_equal(jstr(doc, "error"), "window \"5x\" is not a duration");
    json_decref(doc);
    reply_free(&r);

    get("/api/nothing", &r);
    expect_error(&r, 500, NULL);
    reply_free(&r);

    get("/api/headers", &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.content_type, "text/plain; charset=utf-8");
    assert_string_equal(r.body, "with header");
    assert_int_equal(r.x_test_count, 1);
    assert_int_equal(strlen(r.x_test), 127); /* truncated to 127 bytes */
    reply_free(&r);
}

/* The response helpers, without a server. */
static void test_resp_helpers(void **state)
{
    tc_http_resp_t resp;
    memset(&resp, 0, sizeof(resp));
    tc_http_resp_error(&resp, 422, "service", "service %s is unknown", "api");
    assert_int_equal(resp.status, 422);
    assert_string_equal(resp.content_type, "application/json");
    assert_int_equal(resp.len, strlen(resp.body));
    assert_string_equal(resp.body,
                        "{\"error\":\"service api is unknown\",\"parameter\":\"service\"}");

    /* Setting again replaces (and frees) the previous body. */
    tc_http_resp_error(&resp, 404, NULL, "no such issue");
    assert_string_equal(resp.body, "{\"error\":\"no such issue\"}");
    assert_int_equal(resp.status, 404);

    tc_http_resp_text(&resp, 200, "text/plain", "ok");
    assert_string_equal(resp.body, "ok");
    assert_int_equal(resp.len, 2);

    tc_http_resp_json(&resp, 202, json_pack("{s:i}", "n", 1));
    assert_string_equal(resp.body, "{\"n\":1}");
    assert_int_equal(resp.status, 202);

    /* A document that cannot be encoded is a 500 with a JSON error. */
    tc_http_resp_json(&resp, 200, NULL);
    assert_int_equal(resp.status, 500);
    json_error_t jerr;
    json_t *doc = json_loads(resp.body, 0, &jerr);
    assert_non_null(doc);
    assert_true(json_is_string(json_object_get(doc, "error")));
    json_decref(doc);

    /* Bytes that are not UTF-8 in a message or parameter still give valid JSON. */
    tc_http_resp_error(&resp, 400, "bad\xff", "got \xc3 here");
    doc = json_loads(resp.body, 0, &jerr);
    assert_non_null(doc);
    assert_true(json_is_string(json_object_get(doc, "error")));
    assert_true(json_is_string(json_object_get(doc, "parameter")));
    json_decref(doc);

    /* At most TC_HTTP_MAX_HEADERS headers. */
    for (int i = 0; i < TC_HTTP_MAX_HEADERS + 2; i++) {
        tc_http_resp_header(&resp, "X-N", "v");
    }
    assert_int_equal(resp.nheaders, TC_HTTP_MAX_HEADERS);
    free(resp.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resp_helpers),
        cmocka_unit_test(test_state_errors),
        cmocka_unit_test(test_health_live),
        cmocka_unit_test(test_health_ready),
        cmocka_unit_test(test_metrics_endpoint),
        cmocka_unit_test(test_custom_routes),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_errors_and_headers),
    };
    return cmocka_run_group_tests(tests, setup_server, teardown_server);
}
