/*
 * tocsin-sink — a webhook receiver that writes every request it gets as one JSON line.
 *
 * Local mode points the alerter's receivers at it so a developer can watch pages arrive;
 * tests use it as the real server on the other end of a receiver: it can play a Slack
 * incoming webhook (body "ok", 429 with Retry-After beyond a rate), PagerDuty's Events API
 * (202 with a JSON answer) or a generic webhook, answer a scripted sequence of statuses
 * ("500,500,200"), and receive e-mail over SMTP (--smtp-port).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
    "  --mode MODE        webhook (default: 200 \"ok\"), slack (200 \"ok\"), pagerduty\n"
    "                     (202 {\"status\":\"success\",...})\n"
    "  --script LIST      answer request n with the n-th status of LIST, e.g.\n"
    "                     \"500,500,200\" or \"429:2,200\" (429 with Retry-After 2); the last\n"
    "                     one repeats\n"
    "  --max-rate N       answer 429 (Retry-After 1) to requests beyond N in any second,\n"
    "                     as Slack does; refused requests are logged with \"refused\":true\n"
    "  --smtp-port PORT   also receive e-mail over SMTP on PORT (0 picks one, logged); each\n"
    "                     message is a line {\"ts\",\"smtp\":true,\"from\",\"to\",\"data\"}\n"
    "  --smtp-status CODE answer the end of DATA with CODE (default 250; 451 is transient)\n"
    "  --help, --version\n";

#define SCRIPT_MAX 64
#define RATE_WINDOW 4096

typedef struct {
    FILE *out;
    int status;
    const char *retry_after;
    int mode; /* 0 webhook, 1 slack, 2 pagerduty */
    int script_status[SCRIPT_MAX];
    int script_retry[SCRIPT_MAX]; /* -1: no Retry-After */
    size_t nscript;
    size_t requests;
    long max_rate;
    int64_t recent[RATE_WINDOW]; /* times of accepted requests, ring */
    size_t nrecent;
    pthread_mutex_t lock;
    tc_counter_t *received;
    tc_counter_t *refused;
    int smtp_fd;
    int smtp_status;
    pthread_t smtp_thread;
} sink_t;

/* Parses "500,500,200" / "429:2,200". Returns 0 or -1. */
static int parse_script(sink_t *sink, const char *text)
{
    char *copy = strdup(text);
    char *save = NULL;
    if (!copy) {
        return -1;
    }
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (sink->nscript >= SCRIPT_MAX) {
            free(copy);
            return -1;
        }
        int retry = -1;
        char *end = NULL;
        int status = (int)strtol(p, &end, 10);
        if (*end == ':') {
            retry = (int)strtol(end + 1, &end, 10);
        }
        if (*end || status < 100 || status > 599 || (end > p && retry < -1)) {
            free(copy);
            return -1;
        }
        sink->script_status[sink->nscript] = status;
        sink->script_retry[sink->nscript] = retry;
        sink->nscript++;
    }
    free(copy);
    return sink->nscript > 0 ? 0 : -1;
}

static void write_line(sink_t *sink, json_t *line)
{
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(line);
    if (text) {
        pthread_mutex_lock(&sink->lock);
        fprintf(sink->out, "%s\n", text);
        fflush(sink->out);
        pthread_mutex_unlock(&sink->lock);
        free(text);
    }
}

static void on_hook(void *ctx, const tc_http_req_t *req, tc_http_resp_t *resp)
{
    sink_t *sink = ctx;
    size_t len;
    const char *body = tc_http_req_body(req, &len);
    int64_t now = tc_now_us();
    char ts[32];
    tc_time_format_rfc3339(now, ts);
    /* Decide the answer first: the scripted status of this request, or a 429 past the
     * rate, or the fixed status. */
    pthread_mutex_lock(&sink->lock);
    size_t n = sink->requests++;
    int status = sink->status;
    int retry = -1;
    bool refused = false;
    if (sink->nscript > 0) {
        size_t i = n < sink->nscript ? n : sink->nscript - 1;
        status = sink->script_status[i];
        retry = sink->script_retry[i];
    }
    if (sink->max_rate > 0 && status >= 200 && status < 300) {
        size_t in_last_second = 0;
        size_t have = sink->nrecent < RATE_WINDOW ? sink->nrecent : RATE_WINDOW;
        for (size_t k = 0; k < have; k++) {
            in_last_second += sink->recent[k] > now - 1000000;
        }
        if ((long)in_last_second >= sink->max_rate) {
            status = 429;
            retry = 1;
            refused = true;
        } else {
            sink->recent[sink->nrecent++ % RATE_WINDOW] = now;
        }
    }
    pthread_mutex_unlock(&sink->lock);
    if (sink->mode == 2 && status == 200) {
        status = 202; /* PagerDuty accepts events with 202 */
    }
    const char *ctype = tc_http_req_header(req, "Content-Type");
    json_t *line = json_pack("{s:s, s:s, s:s}", "ts", ts, "method", tc_http_req_method(req),
                             "path", tc_http_req_path(req));
    if (ctype) {
        json_t *js = json_string(ctype);
        if (js) {
            json_object_set_new(line, "content_type", js);
        }
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!doc) {
        doc = json_stringn(body, len);
    }
    json_object_set_new(line, "body", doc ? doc : json_string("(body not valid utf-8)"));
    if (sink->nscript > 0 || sink->max_rate > 0) {
        json_object_set_new(line, "status", json_integer(status));
    }
    if (refused) {
        json_object_set_new(line, "refused", json_true());
    }
    write_line(sink, line);
    tc_counter_inc(refused ? sink->refused : sink->received);
    char ra[16];
    if (retry >= 0) {
        snprintf(ra, sizeof(ra), "%d", retry);
        tc_http_resp_header(resp, "Retry-After", ra);
    } else if (sink->retry_after) {
        tc_http_resp_header(resp, "Retry-After", sink->retry_after);
    }
    if (sink->mode == 2 && status >= 200 && status < 300) {
        tc_http_resp_json(resp, status,
                          json_pack("{s:s, s:s}", "status", "success", "message",
                                    "Event processed"));
        return;
    }
    tc_http_resp_text(resp, status, "text/plain", status < 300 ? "ok" : "refused");
}

/* ---- SMTP ------------------------------------------------------------------------------- */

#define SMTP_LINE_MAX 1000
#define SMTP_DATA_MAX (1024 * 1024)

typedef struct {
    int fd;
    char buf[8192];
    size_t len;
} conn_t;

static int smtp_send(conn_t *c, const char *text)
{
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, text + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) {
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Reads one CRLF-terminated line (without it) into `line`. Returns its length or -1. */
static long smtp_line(conn_t *c, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl) {
            size_t l = (size_t)(nl - c->buf);
            size_t keep = l > 0 && c->buf[l - 1] == '\r' ? l - 1 : l;
            if (keep >= cap) {
                keep = cap - 1;
            }
            memcpy(line, c->buf, keep);
            line[keep] = '\0';
            memmove(c->buf, nl + 1, c->len - l - 1);
            c->len -= l + 1;
            return (long)keep;
        }
        if (c->len == sizeof(c->buf)) {
            return -1; /* a line longer than SMTP allows */
        }
        ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (r <= 0) {
            return -1;
        }
        c->len += (size_t)r;
    }
}

static void smtp_session(sink_t *sink, int fd)
{
    conn_t c = {.fd = fd};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char line[SMTP_LINE_MAX + 1];
    char *from = NULL;
    json_t *to = json_array();
    if (smtp_send(&c, "220 tocsin-sink ESMTP\r\n") != 0) {
        json_decref(to);
        return;
    }
    while (smtp_line(&c, line, sizeof(line)) >= 0) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            smtp_send(&c, "250-tocsin-sink\r\n250-8BITMIME\r\n250 SIZE 1048576\r\n");
        } else if (strncasecmp(line, "HELO", 4) == 0) {
            smtp_send(&c, "250 tocsin-sink\r\n");
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            free(from);
            from = strdup(line + 10);
            json_array_clear(to);
            smtp_send(&c, "250 OK\r\n");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            json_array_append_new(to, json_string(line + 8));
            smtp_send(&c, "250 OK\r\n");
        } else if (strcasecmp(line, "DATA") == 0) {
            if (!from || json_array_size(to) == 0) {
                smtp_send(&c, "503 need MAIL and RCPT first\r\n");
                continue;
            }
            smtp_send(&c, "354 end with <CRLF>.<CRLF>\r\n");
            char *data = malloc(SMTP_DATA_MAX + 1);
            size_t dl = 0;
            bool ok = data != NULL, ended = false;
            long l;
            while ((l = smtp_line(&c, line, sizeof(line))) >= 0) {
                if (strcmp(line, ".") == 0) {
                    ended = true;
                    break;
                }
                const char *p = line[0] == '.' ? line + 1 : line; /* dot-stuffing */
                size_t pl = strlen(p);
                if (ok && dl + pl + 2 <= SMTP_DATA_MAX) {
                    memcpy(data + dl, p, pl);
                    dl += pl;
                    data[dl++] = '\n';
                } else {
                    ok = false;
                }
            }
            if (!ended) {
                free(data);
                break;
            }
            char ts[32];
            tc_time_format_rfc3339(tc_now_us(), ts);
            json_t *jl = json_pack("{s:s, s:b, s:s, s:O, s:s%, s:i}", "ts", ts, "smtp", 1,
                                   "from", from, "to", to, "data", ok ? data : "",
                                   ok ? dl : (size_t)0, "status", sink->smtp_status);
            if (jl) {
                write_line(sink, jl);
            }
            tc_counter_inc(sink->received);
            free(data);
            char ans[64];
            snprintf(ans, sizeof(ans), "%d %s\r\n", ok ? sink->smtp_status : 552,
                     ok ? (sink->smtp_status < 400 ? "OK queued" : "try again later")
                        : "message too large");
            smtp_send(&c, ans);
        } else if (strcasecmp(line, "RSET") == 0 || strcasecmp(line, "NOOP") == 0) {
            smtp_send(&c, "250 OK\r\n");
        } else if (strcasecmp(line, "QUIT") == 0) {
            smtp_send(&c, "221 bye\r\n");
            break;
        } else {
            smtp_send(&c, "502 command not implemented\r\n");
        }
    }
    free(from);
    json_decref(to);
}

static void *smtp_main(void *arg)
{
    sink_t *sink = arg;
    while (!tc_signal_stop_requested()) {
        struct pollfd p = {.fd = sink->smtp_fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) {
            continue;
        }
        int fd = accept(sink->smtp_fd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        smtp_session(sink, fd);
        close(fd);
    }
    return NULL;
}

/* Listens on bind:port for SMTP; returns the bound port or -1. */
static int smtp_listen(sink_t *sink, const char *bind_addr, long port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    sink->smtp_fd = fd;
    return ntohs(sa.sin_port);
}

int main(int argc, char **argv)
{
    const char *bind = "127.0.0.1";
    const char *out_path = NULL;
    long port = 7450;
    long smtp_port = -1;
    sink_t sink = {.status = 200, .smtp_fd = -1, .smtp_status = 250};
    static const struct option opts[] = {{"bind", required_argument, NULL, 'b'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"status", required_argument, NULL, 's'},
                                         {"retry-after", required_argument, NULL, 'r'},
                                         {"mode", required_argument, NULL, 'm'},
                                         {"script", required_argument, NULL, 'S'},
                                         {"max-rate", required_argument, NULL, 'R'},
                                         {"smtp-port", required_argument, NULL, 'P'},
                                         {"smtp-status", required_argument, NULL, 'T'},
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
        case 'm':
            if (strcmp(optarg, "webhook") == 0) {
                sink.mode = 0;
            } else if (strcmp(optarg, "slack") == 0) {
                sink.mode = 1;
            } else if (strcmp(optarg, "pagerduty") == 0) {
                sink.mode = 2;
            } else {
                fprintf(stderr, "tocsin-sink: --mode is webhook, slack or pagerduty\n");
                return 2;
            }
            break;
        case 'S':
            if (parse_script(&sink, optarg) != 0) {
                fprintf(stderr, "tocsin-sink: bad --script (e.g. 500,500,200 or 429:2,200)\n");
                return 2;
            }
            break;
        case 'R':
            errno = 0;
            sink.max_rate = strtol(optarg, &end, 10);
            if (errno || *end || sink.max_rate < 1) {
                fprintf(stderr, "tocsin-sink: bad --max-rate\n");
                return 2;
            }
            break;
        case 'P':
            errno = 0;
            smtp_port = strtol(optarg, &end, 10);
            if (errno || *end || smtp_port < 0 || smtp_port > 65535) {
                fprintf(stderr, "tocsin-sink: bad --smtp-port\n");
                return 2;
            }
            break;
        case 'T':
            errno = 0;
            sink.smtp_status = (int)strtol(optarg, &end, 10);
            if (errno || *end || sink.smtp_status < 200 || sink.smtp_status > 599) {
                fprintf(stderr, "tocsin-sink: bad --smtp-status\n");
                return 2;
            }
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
    sink.refused = tc_metrics_counter(metrics, "tocsin_sink_refused_total", NULL,
                                      "Requests answered 429 for exceeding --max-rate");
    if (sink.mode == 2 && sink.status == 200) {
        sink.status = 202;
    }
    if (!sink.received || !sink.refused || tc_http_route(http, "POST", "/*", on_hook, &sink) ||
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
    bool smtp_started = false;
    if (smtp_port >= 0) {
        int sp = smtp_listen(&sink, bind, smtp_port);
        if (sp < 0 || pthread_create(&sink.smtp_thread, NULL, smtp_main, &sink) != 0) {
            tc_log(TC_LOG_ERROR, "sink.listen", "cannot listen for SMTP on %s:%ld", bind,
                   smtp_port);
            goto out;
        }
        smtp_started = true;
        tc_logj(TC_LOG_INFO, "sink.smtp", json_pack("{s:s, s:i}", "bind", bind, "port", sp),
                "receiving e-mail on smtp://%s:%d/", bind, sp);
    }
    struct pollfd pfd = {.fd = tc_signal_fd(), .events = POLLIN};
    while (!tc_signal_stop_requested()) {
        poll(&pfd, 1, 1000);
        tc_signal_drain();
    }
    if (smtp_started) {
        pthread_join(sink.smtp_thread, NULL);
    }
    rc = 0;
out:
    if (sink.smtp_fd >= 0) {
        close(sink.smtp_fd);
    }
    tc_http_destroy(&http);
    tc_metrics_destroy(&metrics);
    if (out_path && sink.out) {
        fclose(sink.out);
    }
    pthread_mutex_destroy(&sink.lock);
    return rc;
}
