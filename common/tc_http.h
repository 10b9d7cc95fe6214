/*
 * tc_http.h — the HTTP endpoint every daemon serves, on libmicrohttpd.
 *
 * Built in: GET /health/live (200 while the process runs), GET /health/ready (the
 * daemon's dependency checks; 200 when it can serve, 503 when not) and GET /metrics
 * (Prometheus text format). Daemons add their own routes before tc_http_start.
 *
 * Handlers run on the server's own thread, one request at a time; what they touch must be
 * safe to read from that thread (atomics, LMDB read transactions, their own locks).
 * Request bodies are bounded (tc_http_set_body_limit, default 1 MiB): a larger one is
 * answered 413 without reaching the handler.
 */
#ifndef TC_HTTP_H
#define TC_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_metrics.h"

typedef struct tc_http tc_http_t;
typedef struct tc_http_req tc_http_req_t;

#define TC_HTTP_MAX_HEADERS 4

typedef struct {
    int status;               /* HTTP status; 0 means the handler set nothing: 500 */
    const char *content_type; /* static string */
    char *body;               /* malloc'd; the response owns it */
    size_t len;
    struct {
        const char *name;     /* static string */
        char value[128];
    } headers[TC_HTTP_MAX_HEADERS];
    int nheaders;
} tc_http_resp_t;

typedef void (*tc_http_handler_fn)(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp);

typedef enum {
    TC_HEALTH_HEALTHY = 0,
    TC_HEALTH_DEGRADED = 1, /* serving, but something needs attention */
    TC_HEALTH_UNHEALTHY = 2 /* cannot serve: /health/ready answers 503 */
} tc_health_status_t;

typedef struct tc_health tc_health_t;

/* Fills `health` with one entry per dependency, through tc_health_add. */
typedef void (*tc_health_fn)(void *ctx, tc_health_t *health);

/* Adds a dependency's state to a readiness report. `detail` may be NULL. */
void tc_health_add(tc_health_t *health, const char *name, tc_health_status_t status,
                   double response_ms, const char *detail);

/* Returns "healthy", "degraded" or "unhealthy". */
const char *tc_health_status_name(tc_health_status_t status);

/* Creates a server for daemon `daemon` (named in /health answers); NULL when out of memory. */
tc_http_t *tc_http_new(const char *daemon);

/* Stops the server if it runs and frees it. Safe to call twice. */
void tc_http_destroy(tc_http_t **self_p);

/* Adds a route. `method` is "GET", "POST", "PUT", "DELETE"; `path` is exact, or a prefix
 * when it ends in '*' ("/api/v1/issues/" followed by '*'). The first matching route wins. A path that
 * matches with another method gets 405. Returns 0, TC_ESTATE after start, or TC_ENOMEM. */
int tc_http_route(tc_http_t *self, const char *method, const char *path, tc_http_handler_fn fn,
                  void *ctx);

/* Sets the readiness check behind /health/ready; without one, ready means live. */
void tc_http_set_ready(tc_http_t *self, tc_health_fn fn, void *ctx);

/* Sets the registry rendered at /metrics; the server does not own it. */
void tc_http_set_metrics(tc_http_t *self, tc_metrics_t *metrics);

void tc_http_set_body_limit(tc_http_t *self, size_t bytes);

/* Starts listening on `bind` (an IPv4 or IPv6 address; "0.0.0.0" for all) and `port`
 * (0 picks a free one; tc_http_port tells which). Returns 0, TC_EINVAL for a bad address,
 * or TC_EIO when the port cannot be bound. */
int tc_http_start(tc_http_t *self, const char *bind, uint16_t port);

/* The port the server listens on, or 0 before start. */
uint16_t tc_http_port(const tc_http_t *self);

/* Request accessors; the returned strings live until the handler returns. */
const char *tc_http_req_method(const tc_http_req_t *req);
const char *tc_http_req_path(const tc_http_req_t *req);
/* A query-string argument, or NULL when absent. */
const char *tc_http_req_query(const tc_http_req_t *req, const char *name);
const char *tc_http_req_header(const tc_http_req_t *req, const char *name);
const char *tc_http_req_body(const tc_http_req_t *req, size_t *len);

/* True when the request carries "Authorization: Bearer <token>" equal to `token`
 * (compared in constant time). A NULL or empty `token` means no token is configured:
 * every request passes. */
bool tc_http_req_bearer_ok(const tc_http_req_t *req, const char *token);

/* Sets a JSON response; takes the reference to `doc`. */
void tc_http_resp_json(tc_http_resp_t *resp, int status, json_t *doc);

/* Sets a response from text (copied). */
void tc_http_resp_text(tc_http_resp_t *resp, int status, const char *content_type,
                       const char *text);

/* Sets {"error": message, "parameter": param} with `status`; `param` may be NULL. */
void tc_http_resp_error(tc_http_resp_t *resp, int status, const char *param, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* Adds a response header (name is a static string; value copied, truncated to 127 bytes). */
void tc_http_resp_header(tc_http_resp_t *resp, const char *name, const char *value);

#endif
