#include "tc_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_util.h"

static char log_daemon[64] = "tocsin";
static tc_log_level_t log_min = TC_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void tc_log_init(const char *daemon, tc_log_level_t min_level)
{
    tc_strlcpy(log_daemon, daemon ? daemon : "tocsin", sizeof(log_daemon));
    log_min = min_level;
}

int tc_log_level_parse(const char *s, tc_log_level_t *out)
{
    if (!s) {
        return TC_EINVAL;
    }
    if (strcmp(s, "debug") == 0) {
        *out = TC_LOG_DEBUG;
    } else if (strcmp(s, "info") == 0) {
        *out = TC_LOG_INFO;
    } else if (strcmp(s, "warn") == 0 || strcmp(s, "warning") == 0) {
        *out = TC_LOG_WARN;
    } else if (strcmp(s, "error") == 0) {
        *out = TC_LOG_ERROR;
    } else {
        return TC_EINVAL;
    }
    return 0;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n <= 0) {
            return; /* nowhere left to report a failing stderr */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Length of the UTF-8 sequence a lead byte starts, or 0 for a byte that cannot lead. */
static size_t utf8_seq_len(unsigned char c)
{
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return 2;
    }
    if (c >= 0xe0 && c <= 0xef) {
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        return 4;
    }
    return 0;
}

/*
 * Copies `in` into `out` (which holds 3 * strlen(in) + 1 bytes) with every byte that is
 * not part of a well-formed UTF-8 sequence replaced by U+FFFD. Messages carry bytes from
 * outside, and jansson refuses invalid UTF-8: without this, one bad byte would cost the
 * whole message.
 */
static void utf8_sanitize(const char *in, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t len = strlen(in), o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(s[i]);
        if (n > 0 && n <= len - i && tc_utf8_valid(in + i, n)) {
            memcpy(out + o, in + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
}

/* Drops a multi-byte character that vsnprintf's truncation cut short at the end of `s`. */
static void utf8_trim_cut(char *s, size_t len)
{
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned char c = (unsigned char)s[len - back];
        if ((c & 0xc0) != 0x80) {
            if (utf8_seq_len(c) > back) {
                s[len - back] = '\0';
            }
            return;
        }
    }
}

static void log_emit(tc_log_level_t level, const char *event, json_t *fields, const char *fmt,
                     va_list ap) __attribute__((format(printf, 4, 0)));

static void log_emit(tc_log_level_t level, const char *event, json_t *fields, const char *fmt,
                     va_list ap)
{
    if (level < log_min || level > TC_LOG_ERROR) {
        json_decref(fields);
        return;
    }
    char msg[2048];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n >= (int)sizeof(msg)) {
        utf8_trim_cut(msg, sizeof(msg) - 1);
    }
    char clean[3 * sizeof(msg) + 1];
    utf8_sanitize(msg, clean);
    char ts[32];
    tc_time_format_rfc3339(tc_now_us(), ts);

    json_t *line = json_object();
    if (!line) {
        json_decref(fields);
        return;
    }
    json_object_set_new(line, "ts", json_string(ts));
    json_object_set_new(line, "level", json_string(level_names[level]));
    json_object_set_new(line, "daemon", json_string(log_daemon));
    json_object_set_new(line, "pid", json_integer(getpid()));
    json_object_set_new(line, "event", json_string(event ? event : "log"));
    json_t *m = json_string(clean);
    json_object_set_new(line, "msg", m ? m : json_string("(message not valid utf-8)"));
    if (fields && json_is_object(fields)) {
        json_object_update_missing(line, fields);
    }
    json_decref(fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(line);
    if (!text) {
        return;
    }
    size_t len = strlen(text);
    char *out = malloc(len + 2);
    if (out) {
        memcpy(out, text, len);
        out[len] = '\n';
        write_all(STDERR_FILENO, out, len + 1);
        free(out);
    }
    free(text);
}

void tc_log(tc_log_level_t level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, event, NULL, fmt, ap);
    va_end(ap);
}

void tc_logj(tc_log_level_t level, const char *event, json_t *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_emit(level, event, fields, fmt, ap);
    va_end(ap);
}

bool tc_log_limit_allow(tc_log_limit_t *limit, int64_t now_us, uint64_t *suppressed_out)
{
    if (now_us - limit->window_start_us >= limit->window_us || now_us < limit->window_start_us) {
        limit->window_start_us = now_us;
        limit->used = 0;
    }
    if (limit->used >= limit->per_window) {
        limit->suppressed++;
        return false;
    }
    limit->used++;
    if (suppressed_out) {
        *suppressed_out = limit->suppressed;
    }
    limit->suppressed = 0;
    return true;
}
