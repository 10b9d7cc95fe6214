/*
 * tocsin-sink — a webhook receiver that writes every request it gets as one JSON line.
 *
 * Local mode points the alerter's receivers at it so a developer can watch pages arrive;
 * tests use it as the real HTTP server on the other end of a webhook.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_http.h"
#include "tc_log.h"
#include "tc_signal.h"
#include "tc_util.h"

static const char usage[] =
    "usage: tocsin-sink [options]\n"
    "\n"
    "Receives webhooks on HTTP and writes each request as one JSON line:\n"
    "  {\"ts\":...,\"method\":\"POST\",\"path\":\"/hook\",\"content_type\":...,\"body\":...}\n"
    "where body is the parsed JSON document, or the text when it is not JSON.\n"
    "\n"
    "Options:\n"
    "  --bind ADDR        address to listen on (default 127.0.0.1)\n"
    "  --port PORT        port (default 7450; 0 picks a free one)\n"
    "  --out FILE         append lines to FILE instead of stdout\n"
    "  --status CODE      answer every request with CODE (default 200)\n"
    "  --retry-after S    add a Retry-After: S header to each answer\n"
    "  --help, --version\n";

typedef struct {
    FILE *out;
    int status;
    const char *retry_after;
    pthread_mutex_t lock;
    tc_counter_t *received;
} sink_t;

static void on_hook(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    sink_t *sink = ctx;
    size_t len;
    const char *body = tc_http_req_body(req, &len);
    char ts[32];
    tc_time_format_rfc3339(tc_now_us(), ts);
    const char *ctype = tc_http_req_header(req, "Content-Type");
    json_t *line = json_pack("{s:s, s:s, s:s}", "ts", ts, "method", tc_http_req_method(req),
                             "path", tc_http_req_path(req));
    if (ctype) {
        json_t *s = json_string(ctype);
        if (s) {
            json_object_set_new(line, "content_type", s);
        }
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        doc = json_stringn(body, len);
    }
    json_object_set_new(line, "body", doc ? doc : json_string("(body not valid utf-8)"));
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text) {
        pthread_mutex_lock(&sink->lock);
        fprintf(sink->out, "%s\n", text);
        fflush(sink->out);
        pthread_mutex_unlock(&sink->lock);
        free(text);
    }
    tc_counter_inc(sink->received);
    if (sink->retry_after) {
        tc_http_resp_header(resp, "Retry-After", sink->retry_after);
    }
    tc_http_resp_text(resp, sink->status, "text/plain", sink->status < 300 ? "ok" : "refused");
}

int main(int argc, char **argv)
{
    const char *bind = "127.0.0.1";
    const char *out_path = NULL;
    long port = 7450;
    sink_t sink = {.status = 200};
    static const struct option opts[] = {{"bind", required_argument, NULL, 'b'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"status", required_argument, NULL, 's'},
                                         {"retry-after", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'b':
            bind = optarg;
            break;
        case 'p':
            errno = 0;
            port = strtol(optarg, &end, 10);
            if (errno || *end || port < 0 || port > 65535) {
                fprintf(stderr, "tocsin-sink: bad --port\n");
                return 2;
            }
            break;
        case 'o':
            out_path = optarg;
            break;
        case 's':
            errno = 0;
            sink.status = (int)strtol(optarg, &end, 10);
            if (errno || *end || sink.status < 100 || sink.status > 599) {
                fprintf(stderr, "tocsin-sink: bad --status\n");
                return 2;
            }
            break;
        case 'r':
            sink.retry_after = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("tocsin-sink %s\n", TOCSIN_VERSION);
            return 0;
        default:
            fprintf(stderr, "tocsin-sink: see --help\n");
            return 2;
        }
    }
    tc_log_init("sink", TC_LOG_INFO);
    if (tc_signal_init() != 0) {
        return 1;
    }
    sink.out = out_path ? fopen(out_path, "a") : stdout;
    if (!sink.out) {
        fprintf(stderr, "tocsin-sink: cannot open %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    pthread_mutex_init(&sink.lock, NULL);
    int rc = 1;
    tc_metrics_t *metrics = tc_metrics_new();
    tc_http_t *http = tc_http_new("sink");
    if (!metrics || !http) {
        goto out;
    }
    sink.received = tc_metrics_counter(metrics, "tocsin_sink_requests_total", NULL,
                                       "Requests received");
    if (!sink.received || tc_http_route(http, "POST", "/*", on_hook, &sink) ||
        tc_http_route(http, "PUT", "/*", on_hook, &sink)) {
        goto out;
    }
    tc_http_set_metrics(http, metrics);
    tc_http_set_body_limit(http, 8 * 1024 * 1024);
    if (tc_http_start(http, bind, (uint16_t)port) != 0) {
        tc_log(TC_LOG_ERROR, "sink.listen", "cannot listen on %s:%ld", bind, port);
        goto out;
    }
    tc_logj(TC_LOG_INFO, "sink.listening",
            json_pack("{s:s, s:i}", "bind", bind, "port", tc_http_port(http)),
            "receiving webhooks on http://%s:%u/", bind, tc_http_port(http));
    struct pollfd pfd = {.fd = tc_signal_fd(), .events = POLLIN};
    while (!tc_signal_stop_requested()) {
        poll(&pfd, 1, 1000);
        tc_signal_drain();
    }
    rc = 0;
out:
    tc_http_destroy(&http);
    tc_metrics_destroy(&metrics);
    if (out_path && sink.out) {
        fclose(sink.out);
    }
    pthread_mutex_destroy(&sink.lock);
    return rc;
}
