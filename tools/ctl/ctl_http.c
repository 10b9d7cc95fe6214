/*
 * ctl_http.c — libcurl multi for parallel, bounded requests; the mapping of answers to exit
 * codes and messages.
 */
#include "ctl_http.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_args.h"
#include "tc_error.h"
#include "tc_util.h"

int ctl_http_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : TC_EHTTP;
}

void ctl_http_cleanup(void)
{
    curl_global_cleanup();
}

void ctl_http_req_fini(ctl_http_req_t *r)
{
    free(r->url);
    r->url = NULL;
    free(r->data);
    r->data = NULL;
    r->len = 0;
}

typedef struct {
    ctl_http_req_t *r;
    CURL *easy;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    bool too_big;
    bool oom;
    int64_t t0;
} xfer_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    xfer_t *x = arg;
    size_t n = size * nmemb;
    if (x->r->len + n > CTL_HTTP_MAX_BODY) {
        x->too_big = true;
        return 0; /* stops the transfer */
    }
    char *d = realloc(x->r->data, x->r->len + n + 1);
    if (!d) {
        x->oom = true;
        return 0;
    }
    memcpy(d + x->r->len, ptr, n);
    x->r->data = d;
    x->r->len += n;
    d[x->r->len] = '\0';
    return n;
}

static int classify(CURLcode code)
{
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return TC_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return TC_EUNAVAIL;
    default:
        return TC_EHTTP;
    }
}

static int xfer_setup(xfer_t *x, ctl_http_req_t *r, const char *token, int64_t timeout_ms)
{
    x->r = r;
    x->easy = curl_easy_init();
    if (!x->easy) {
        return TC_ENOMEM;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "tocsinctl/" TOCSIN_VERSION);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CTL_HTTP_MAX_BODY);
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json, text/plain");
    if (h && r->body) {
        struct curl_slist *h2 = curl_slist_append(h, "Content-Type: application/json");
        h = h2 ? h2 : h;
    }
    if (h && token) {
        char auth[1024];
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        struct curl_slist *h2 = curl_slist_append(h, auth);
        h = h2 ? h2 : h;
    }
    x->headers = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    const char *m = r->method ? r->method : "GET";
    if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(r->body ? strlen(r->body) : 0));
    }
    x->t0 = tc_mono_us();
    return 0;
}

void ctl_http_perform(ctl_http_req_t *reqs, size_t n, const char *token, int64_t timeout_ms)
{
    xfer_t *xs = calloc(n ? n : 1, sizeof(*xs));
    CURLM *multi = curl_multi_init();
    for (size_t i = 0; i < n; i++) {
        ctl_http_req_t *r = &reqs[i];
        free(r->data);
        r->data = NULL;
        r->len = 0;
        r->status = 0;
        r->ms = 0;
        r->error[0] = '\0';
        r->transport = TC_ENOMEM;
        if (!xs || !multi) {
            snprintf(r->error, sizeof(r->error), "out of memory");
            continue;
        }
        if (xfer_setup(&xs[i], r, token, timeout_ms) != 0 ||
            curl_multi_add_handle(multi, xs[i].easy) != CURLM_OK) {
            snprintf(r->error, sizeof(r->error), "out of memory");
            continue;
        }
    }
    if (xs && multi) {
        int running = 0;
        do {
            if (curl_multi_perform(multi, &running) != CURLM_OK) {
                break;
            }
            if (running) {
                curl_multi_poll(multi, NULL, 0, 200, NULL);
            }
        } while (running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            for (size_t i = 0; i < n; i++) {
                xfer_t *x = &xs[i];
                if (x->easy != msg->easy_handle) {
                    continue;
                }
                ctl_http_req_t *r = x->r;
                r->ms = (double)(tc_mono_us() - x->t0) / 1000.0;
                CURLcode code = msg->data.result;
                if (code == CURLE_OK) {
                    r->transport = 0;
                    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r->status);
                } else if (x->too_big || code == CURLE_FILESIZE_EXCEEDED) {
                    r->transport = TC_ETOOBIG;
                    snprintf(r->error, sizeof(r->error), "answer larger than %u bytes",
                             CTL_HTTP_MAX_BODY);
                } else if (x->oom) {
                    r->transport = TC_ENOMEM;
                    snprintf(r->error, sizeof(r->error), "out of memory");
                } else {
                    r->transport = classify(code);
                    snprintf(r->error, sizeof(r->error), "%s",
                             x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
                }
            }
        }
    }
    for (size_t i = 0; xs && i < n; i++) {
        if (xs[i].easy) {
            if (multi) {
                curl_multi_remove_handle(multi, xs[i].easy);
            }
            curl_easy_cleanup(xs[i].easy);
        }
        curl_slist_free_all(xs[i].headers);
        if (reqs[i].transport == 0 && !reqs[i].data) {
            reqs[i].data = strdup("");
        }
    }
    if (multi) {
        curl_multi_cleanup(multi);
    }
    free(xs);
}

/* ---- what an answer means ----------------------------------------------------------------- */

/* The "error" and "parameter" of a JSON error body; empty strings when absent. */
static void error_fields(const ctl_http_req_t *r, char *msg, size_t mlen, char *param, size_t plen)
{
    msg[0] = param[0] = '\0';
    if (!r->data || r->len == 0) {
        return;
    }
    json_t *doc = json_loadb(r->data, r->len, 0, NULL);
    if (json_is_object(doc)) {
        const char *e = json_string_value(json_object_get(doc, "error"));
        const char *p = json_string_value(json_object_get(doc, "parameter"));
        if (e) {
            tc_strlcpy(msg, e, mlen);
        }
        if (p) {
            tc_strlcpy(param, p, plen);
        }
    } else {
        /* a text answer: its first line */
        size_t n = strcspn(r->data, "\r\n");
        snprintf(msg, mlen, "%.*s", (int)(n < 200 ? n : 200), r->data);
    }
    json_decref(doc);
}

bool ctl_http_unsupported(const ctl_http_req_t *r)
{
    if (r->transport != 0) {
        return false;
    }
    if (r->status == 405 || r->status == 501) {
        return true;
    }
    if (r->status != 404) {
        return false;
    }
    char msg[256], param[64];
    error_fields(r, msg, sizeof(msg), param, sizeof(param));
    /* tc_http answers an unrouted path with "no such endpoint: PATH"; a daemon that has
     * the endpoint but not the thing asked for says something else. An empty 404 comes
     * from something that is not a Tocsin daemon (a proxy): treat it as not served. */
    return strncmp(msg, "no such endpoint", 16) == 0 || msg[0] == '\0';
}

int ctl_http_exit_code(const ctl_http_req_t *r)
{
    if (r->transport != 0) {
        return r->transport == TC_ETOOBIG || r->transport == TC_ENOMEM ? CTL_EXIT_ERROR
                                                                       : CTL_EXIT_UNREACHABLE;
    }
    if (r->status >= 200 && r->status < 300) {
        return CTL_EXIT_OK;
    }
    if (ctl_http_unsupported(r)) {
        return CTL_EXIT_UNSUPPORTED;
    }
    if (r->status == 404) {
        return CTL_EXIT_NOTFOUND;
    }
    if (r->status == 401 || r->status == 403) {
        return CTL_EXIT_AUTH;
    }
    return CTL_EXIT_ERROR;
}

void ctl_http_describe(const ctl_http_req_t *r, const char *daemon, const char *what, char *buf,
                       size_t len)
{
    char base[200] = "";
    if (r->url) {
        /* the endpoint: scheme://host:port of the URL */
        const char *p = strstr(r->url, "://");
        size_t n = p ? (size_t)(p + 3 - r->url) + strcspn(p + 3, "/?") : strlen(r->url);
        snprintf(base, sizeof(base), "%.*s", (int)(n < 199 ? n : 199), r->url);
    }
    if (r->transport == TC_ETOOBIG || r->transport == TC_ENOMEM) {
        snprintf(buf, len, "%s at %s: %s: %s", daemon, base, what, r->error);
        return;
    }
    if (r->transport != 0) {
        snprintf(buf, len, "cannot reach the %s at %s (%s): %s", daemon, base, what,
                 r->transport == TC_ETIMEDOUT ? "timed out" : r->error);
        return;
    }
    char msg[256], param[64];
    error_fields(r, msg, sizeof(msg), param, sizeof(param));
    if (ctl_http_unsupported(r)) {
        snprintf(buf, len,
                 "this %s (%s) does not serve %s (HTTP %ld): it predates that feature or is "
                 "not a Tocsin %s",
                 daemon, base, what, r->status, daemon);
    } else if (r->status == 401 || r->status == 403) {
        snprintf(buf, len,
                 "the %s at %s refused %s (HTTP %ld): %s; set the token with --token "
                 "or TOCSIN_TOKEN",
                 daemon, base, what, r->status, msg[0] ? msg : "token missing or wrong");
    } else if (param[0]) {
        snprintf(buf, len, "the %s at %s answered %s with HTTP %ld: %s (parameter %s)", daemon,
                 base, what, r->status, msg, param);
    } else {
        snprintf(buf, len, "the %s at %s answered %s with HTTP %ld%s%s", daemon, base, what,
                 r->status, msg[0] ? ": " : "", msg);
    }
}

/* ---- URLs --------------------------------------------------------------------------------- */

char *ctl_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (!out) {
        return NULL;
    }
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}

char *ctl_url(const char *base, const char *path, const char *const *kv)
{
    size_t cap = strlen(base) + strlen(path) + 2;
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (kv[i + 1]) {
            cap += 3 * (strlen(kv[i]) + strlen(kv[i + 1])) + 2;
        }
    }
    char *url = malloc(cap);
    if (!url) {
        return NULL;
    }
    size_t o = (size_t)snprintf(url, cap, "%s%s", base, path);
    char sep = '?';
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1]) {
            continue;
        }
        char *k = ctl_url_escape(kv[i]);
        char *v = ctl_url_escape(kv[i + 1]);
        if (!k || !v) {
            free(k);
            free(v);
            free(url);
            return NULL;
        }
        o += (size_t)snprintf(url + o, cap - o, "%c%s=%s", sep, k, v);
        sep = '&';
        free(k);
        free(v);
    }
    return url;
}
