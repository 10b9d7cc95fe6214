#include "tc_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

#define MAX_HEALTH_DEPS 16

typedef struct {
    char *method;
    char *path;
    bool prefix;
    tc_http_handler_fn fn;
    void *ctx;
} route_t;

struct tc_http {
    char daemon[64];
    route_t *routes;
    size_t nroutes;
    tc_health_fn ready_fn;
    void *ready_ctx;
    tc_metrics_t *metrics;
    size_t body_limit;
    struct MHD_Daemon *mhd;
    uint16_t port;
};

struct tc_http_req {
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    char *body;
    size_t len;
    bool too_big;
};

struct tc_health {
    struct {
        char name[48];
        tc_health_status_t status;
        double ms;
        char detail[200];
    } deps[MAX_HEALTH_DEPS];
    int n;
};

const char *tc_health_status_name(tc_health_status_t status)
{
    switch (status) {
    case TC_HEALTH_HEALTHY:
        return "healthy";
    case TC_HEALTH_DEGRADED:
        return "degraded";
    default:
        return "unhealthy";
    }
}

void tc_health_add(tc_health_t *h, const char *name, tc_health_status_t status,
                   double response_ms, const char *detail)
{
    if (h->n >= MAX_HEALTH_DEPS) {
        return;
    }
    tc_strlcpy(h->deps[h->n].name, name, sizeof(h->deps[h->n].name));
    h->deps[h->n].status = status;
    h->deps[h->n].ms = response_ms;
    tc_strlcpy(h->deps[h->n].detail, detail ? detail : "", sizeof(h->deps[h->n].detail));
    h->n++;
}

tc_http_t *tc_http_new(const char *daemon)
{
    tc_http_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    tc_strlcpy(self->daemon, daemon, sizeof(self->daemon));
    self->body_limit = 1024 * 1024;
    return self;
}

void tc_http_destroy(tc_http_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    tc_http_t *self = *self_p;
    if (self->mhd) {
        MHD_stop_daemon(self->mhd);
    }
    for (size_t i = 0; i < self->nroutes; i++) {
        free(self->routes[i].method);
        free(self->routes[i].path);
    }
    free(self->routes);
    free(self);
    *self_p = NULL;
}

int tc_http_route(tc_http_t *self, const char *method, const char *path, tc_http_handler_fn fn,
                  void *ctx)
{
    if (self->mhd) {
        return TC_ESTATE;
    }
    route_t *r = realloc(self->routes, (self->nroutes + 1) * sizeof(*r));
    if (!r) {
        return TC_ENOMEM;
    }
    self->routes = r;
    route_t *nr = &r[self->nroutes];
    size_t plen = strlen(path);
    nr->prefix = plen > 0 && path[plen - 1] == '*';
    nr->method = strdup(method);
    nr->path = strndup(path, nr->prefix ? plen - 1 : plen);
    if (!nr->method || !nr->path) {
        free(nr->method);
        free(nr->path);
        return TC_ENOMEM;
    }
    nr->fn = fn;
    nr->ctx = ctx;
    self->nroutes++;
    return 0;
}

void tc_http_set_ready(tc_http_t *self, tc_health_fn fn, void *ctx)
{
    self->ready_fn = fn;
    self->ready_ctx = ctx;
}

void tc_http_set_metrics(tc_http_t *self, tc_metrics_t *metrics)
{
    self->metrics = metrics;
}

void tc_http_set_body_limit(tc_http_t *self, size_t bytes)
{
    self->body_limit = bytes;
}

uint16_t tc_http_port(const tc_http_t *self)
{
    return self->port;
}

const char *tc_http_req_method(const tc_http_req_t *req)
{
    return req->method;
}

const char *tc_http_req_path(const tc_http_req_t *req)
{
    return req->path;
}

const char *tc_http_req_query(const tc_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *tc_http_req_header(const tc_http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *tc_http_req_body(const tc_http_req_t *req, size_t *len)
{
    if (len) {
        *len = req->len;
    }
    return req->body ? req->body : "";
}

bool tc_http_req_bearer_ok(const tc_http_req_t *req, const char *token)
{
    if (!token || !*token) {
        return true;
    }
    const char *auth = tc_http_req_header(req, "Authorization");
    /* The scheme name is case-insensitive (RFC 7235 section 2.1); the token is not. */
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
        return false;
    }
    const char *given = auth + 7;
    size_t glen = strlen(given), tlen = strlen(token);
    /* Constant time over the configured token's length. */
    unsigned char diff = (unsigned char)(glen != tlen);
    for (size_t i = 0; i < tlen; i++) {
        unsigned char g = i < glen ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)token[i]);
    }
    return diff == 0;
}

void tc_http_resp_text(tc_http_resp_t *resp, int status, const char *content_type,
                       const char *text)
{
    free(resp->body);
    resp->status = status;
    resp->content_type = content_type;
    resp->body = strdup(text);
    resp->len = resp->body ? strlen(resp->body) : 0;
}

void tc_http_resp_json(tc_http_resp_t *resp, int status, json_t *doc)
{
    size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15);
    char *text = doc ? json_dumps(doc, flags) : NULL;
    json_decref(doc);
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
    if (!text) {
        resp->status = 500;
        resp->content_type = "application/json";
        resp->body = strdup("{\"error\":\"response could not be encoded\"}");
        resp->len = resp->body ? strlen(resp->body) : 0;
        return;
    }
    resp->status = status;
    resp->content_type = "application/json";
    resp->body = text;
    resp->len = strlen(text);
}

void tc_http_resp_error(tc_http_resp_t *resp, int status, const char *param, const char *fmt,
                        ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *doc = json_object();
    json_t *m = json_string(msg);
    json_object_set_new(doc, "error", m ? m : json_string("invalid request"));
    if (param) {
        json_t *p = json_string(param);
        json_object_set_new(doc, "parameter", p ? p : json_string("?"));
    }
    tc_http_resp_json(resp, status, doc);
}

void tc_http_resp_header(tc_http_resp_t *resp, const char *name, const char *value)
{
    if (resp->nheaders >= TC_HTTP_MAX_HEADERS) {
        return;
    }
    resp->headers[resp->nheaders].name = name;
    tc_strlcpy(resp->headers[resp->nheaders].value, value,
               sizeof(resp->headers[resp->nheaders].value));
    resp->nheaders++;
}

static void health_live(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    tc_http_t *self = ctx;
    json_t *doc = json_pack("{s:s, s:s, s:s}", "status", "healthy", "daemon", self->daemon,
                            "version", TOCSIN_VERSION);
    tc_http_resp_json(resp, 200, doc);
}

static void health_ready(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    tc_http_t *self = ctx;
    tc_health_t health;
    memset(&health, 0, sizeof(health));
    if (self->ready_fn) {
        self->ready_fn(self->ready_ctx, &health);
    }
    tc_health_status_t worst = TC_HEALTH_HEALTHY;
    json_t *deps = json_object();
    for (int i = 0; i < health.n; i++) {
        if (health.deps[i].status > worst) {
            worst = health.deps[i].status;
        }
        json_t *d = json_pack("{s:s, s:f}", "status",
                              tc_health_status_name(health.deps[i].status), "response_time_ms",
                              health.deps[i].ms);
        if (d && health.deps[i].detail[0]) {
            json_t *s = json_string(health.deps[i].detail);
            if (s) {
                json_object_set_new(d, "detail", s);
            }
        }
        if (d) {
            json_object_set_new(deps, health.deps[i].name, d);
        }
    }
    json_t *doc = json_pack("{s:s, s:s, s:s, s:o}", "status", tc_health_status_name(worst),
                            "daemon", self->daemon, "version", TOCSIN_VERSION, "dependencies",
                            deps);
    tc_http_resp_json(resp, worst == TC_HEALTH_UNHEALTHY ? 503 : 200, doc);
}

static void metrics_page(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    tc_http_t *self = ctx;
    char *text = self->metrics ? tc_metrics_render(self->metrics) : strdup("");
    if (!text) {
        tc_http_resp_error(resp, 500, NULL, "out of memory");
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    resp->body = text;
    resp->len = strlen(text);
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, tc_http_resp_t *resp)
{
    if (resp->status == 0) {
        tc_http_resp_error(resp, 500, NULL, "handler produced no response");
    }
    struct MHD_Response *r;
    if (resp->body) {
        r = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (r) {
            resp->body = NULL; /* the MHD response owns it now */
        }
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r) {
        free(resp->body);
        resp->body = NULL;
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "text/plain");
    for (int i = 0; i < resp->nheaders; i++) {
        MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void dispatch(tc_http_t *self, tc_http_req_t *req, tc_http_resp_t *resp)
{
    bool path_matched = false;
    for (size_t i = 0; i < self->nroutes; i++) {
        const route_t *r = &self->routes[i];
        bool match = r->prefix ? strncmp(req->path, r->path, strlen(r->path)) == 0
                               : strcmp(req->path, r->path) == 0;
        if (!match) {
            continue;
        }
        path_matched = true;
        if (strcmp(r->method, req->method) == 0 ||
            (strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
            r->fn(r->ctx, req, resp);
            return;
        }
    }
    if (path_matched) {
        tc_http_resp_error(resp, 405, NULL, "method %s not allowed on %s", req->method,
                           req->path);
    } else {
        tc_http_resp_error(resp, 404, NULL, "no such endpoint: %s", req->path);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    tc_http_t *self = cls;
    tc_http_req_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req) {
            return MHD_NO;
        }
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!req->too_big && req->len + *upload_data_size <= self->body_limit) {
            char *b = realloc(req->body, req->len + *upload_data_size + 1);
            if (!b) {
                req->too_big = true;
            } else {
                req->body = b;
                memcpy(req->body + req->len, upload_data, *upload_data_size);
                req->len += *upload_data_size;
                req->body[req->len] = '\0';
            }
        } else {
            req->too_big = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    req->conn = conn;
    req->method = method;
    req->path = url;
    tc_http_resp_t resp;
    memset(&resp, 0, sizeof(resp));
    if (req->too_big) {
        tc_http_resp_error(&resp, 413, NULL, "request body above %zu bytes",
                           self->body_limit);
    } else {
        dispatch(self, req, &resp);
    }
    enum MHD_Result ret = send_resp(conn, &resp);
    free(resp.body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    tc_http_req_t *req = *con_cls;
    if (req) {
        free(req->body);
        free(req);
        *con_cls = NULL;
    }
}

/* MHD hands us its own printf-style format; the attribute lets compilers check the call. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') {
        msg[--n] = '\0';
    }
    tc_log(TC_LOG_WARN, "http.server", "%s", msg);
}

/* Removes the routes added after the first `keep`. */
static void drop_routes(tc_http_t *self, size_t keep)
{
    while (self->nroutes > keep) {
        self->nroutes--;
        free(self->routes[self->nroutes].method);
        free(self->routes[self->nroutes].path);
    }
}

int tc_http_start(tc_http_t *self, const char *bind, uint16_t port)
{
    if (self->mhd) {
        return TC_ESTATE;
    }
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr *sa;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    memset(&v4, 0, sizeof(v4));
    memset(&v6, 0, sizeof(v6));
    if (strchr(bind, ':')) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(port);
        if (inet_pton(AF_INET6, bind, &v6.sin6_addr) != 1) {
            return TC_EINVAL;
        }
        sa = (struct sockaddr *)&v6;
        flags |= MHD_USE_IPv6;
    } else {
        v4.sin_family = AF_INET;
        v4.sin_port = htons(port);
        if (inet_pton(AF_INET, bind, &v4.sin_addr) != 1) {
            return TC_EINVAL;
        }
        sa = (struct sockaddr *)&v4;
    }
    /* Built-in routes go last so a daemon cannot be shadowed by them by accident. They are
     * removed again when the start fails, so that a retry neither repeats them nor puts
     * routes added in between behind them. */
    size_t own_routes = self->nroutes;
    if (tc_http_route(self, "GET", "/health/live", health_live, self) != 0 ||
        tc_http_route(self, "GET", "/health/ready", health_ready, self) != 0 ||
        tc_http_route(self, "GET", "/metrics", metrics_page, self) != 0) {
        drop_routes(self, own_routes);
        return TC_ENOMEM;
    }
    /* The external logger has to come first, or MHD logs the earlier options itself. */
    self->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_request, self,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, self,
                                 MHD_OPTION_SOCK_ADDR, sa,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, self,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)256,
                                 MHD_OPTION_END);
    if (!self->mhd) {
        drop_routes(self, own_routes);
        return TC_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : port;
    return 0;
}
