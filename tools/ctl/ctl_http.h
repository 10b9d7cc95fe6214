/*
 * ctl_http.h — tocsinctl's HTTP client on libcurl, and what its answers mean for a script.
 *
 * ctl_http_perform runs any number of requests at once (curl multi), each bounded by the
 * time-out and by CTL_HTTP_MAX_BODY bytes of answer, so `status` over a fleet takes as
 * long as the slowest daemon, not the sum. A request that got no HTTP answer is
 * "unreachable" (refused, unknown host, time-out, TLS failure, connection dropped).
 *
 * ctl_http_exit_code and ctl_http_describe turn an answer into the documented exit code
 * and one line a person can act on; they and ctl_url_* are pure.
 */
#ifndef CTL_HTTP_H
#define CTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_HTTP_MAX_BODY (16u * 1024 * 1024)

typedef struct {
    /* in */
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    char *url;          /* owned: freed by ctl_http_req_fini */
    const char *body;   /* JSON request body or NULL (borrowed) */
    /* out */
    int transport; /* 0: an HTTP answer came; TC_EUNAVAIL, TC_ETIMEDOUT, TC_ETOOBIG,
                      TC_ENOMEM or TC_EHTTP otherwise */
    long status;   /* HTTP status when transport is 0 */
    char *data;    /* the answer's body, NUL-terminated (owned); NULL when none */
    size_t len;
    double ms;       /* time the exchange took */
    char error[256]; /* what went wrong when transport != 0 */
} ctl_http_req_t;

/* Initialises libcurl once per process. Returns 0 or TC_EHTTP. */
int ctl_http_init(void);
void ctl_http_cleanup(void);

/*
 * Performs the `n` requests in parallel and fills their results. `token`, when not NULL,
 * is sent as "Authorization: Bearer <token>". `timeout_ms` bounds each request in total.
 */
void ctl_http_perform(ctl_http_req_t *reqs, size_t n, const char *token, int64_t timeout_ms);

/* Frees the request's URL and answer; the struct may be reused. */
void ctl_http_req_fini(ctl_http_req_t *r);

/*
 * The exit code an answer stands for (ctl_exit_t): 0 for 2xx; CTL_EXIT_UNREACHABLE when
 * no answer came; CTL_EXIT_UNSUPPORTED for 405, and for 404 naming an unknown endpoint
 * (tc_http's "no such endpoint"); CTL_EXIT_NOTFOUND for another 404; CTL_EXIT_AUTH for
 * 401 and 403; CTL_EXIT_ERROR for everything else.
 */
int ctl_http_exit_code(const ctl_http_req_t *r);

/* True when the answer says the daemon does not serve the endpoint at all. */
bool ctl_http_unsupported(const ctl_http_req_t *r);

/*
 * One line about a failed exchange, for stderr: `daemon` is "aggregator" or the like,
 * `what` names the endpoint ("GET /api/v1/issues"). Mentions the daemon's own error text
 * and parameter from a JSON error body.
 */
void ctl_http_describe(const ctl_http_req_t *r, const char *daemon, const char *what, char *buf,
                       size_t len);

/*
 * Builds base + path + "?k=v&..." from NULL-terminated key/value pairs (a NULL value skips
 * the pair), percent-encoding keys and values. Returns a string the caller frees, or NULL
 * when out of memory.
 */
char *ctl_url(const char *base, const char *path, const char *const *kv);

/* Percent-encodes `s` (RFC 3986 unreserved characters stay) into a new string. */
char *ctl_url_escape(const char *s);

#endif
