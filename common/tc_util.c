#include "tc_util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "tc_error.h"

int64_t tc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tc_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void tc_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t tc_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void tc_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t tc_be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

bool tc_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n) {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

int tc_duration_parse(const char *s, int64_t *out_ms)
{
    if (!s || !*s || !out_ms) {
        return TC_EINVAL;
    }
    const char *p = s;
    int64_t total = 0;
    bool any = false;
    while (*p) {
        if (*p < '0' || *p > '9') {
            return TC_EINVAL;
        }
        /* Digits with an optional fraction; strtod would also take "inf", hex and exponents. */
        double v = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10 + (*p - '0');
            p++;
        }
        if (*p == '.') {
            double scale = 0.1;
            p++;
            if (*p < '0' || *p > '9') {
                return TC_EINVAL;
            }
            while (*p >= '0' && *p <= '9') {
                v += (*p - '0') * scale;
                scale /= 10;
                p++;
            }
        }
        double mult;
        if (*p == '\0') {
            if (any) {
                return TC_EINVAL; /* "1h30" is ambiguous */
            }
            mult = 1000.0;
        } else if (strncmp(p, "ms", 2) == 0) {
            mult = 1.0;
            p += 2;
        } else if (*p == 's') {
            mult = 1000.0;
            p++;
        } else if (*p == 'm') {
            mult = 60000.0;
            p++;
        } else if (*p == 'h') {
            mult = 3600000.0;
            p++;
        } else if (*p == 'd') {
            mult = 86400000.0;
            p++;
        } else if (*p == 'w') {
            mult = 7 * 86400000.0;
            p++;
        } else {
            return TC_EINVAL;
        }
        double ms = v * mult;
        if (ms > (double)INT64_MAX / 2 || (double)total + ms > (double)INT64_MAX / 2) {
            return TC_EINVAL;
        }
        total += (int64_t)(ms + 0.5);
        any = true;
    }
    *out_ms = total;
    return 0;
}

void tc_duration_format(int64_t ms, char *buf, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%lldms", (long long)ms);
}

int tc_size_parse(const char *s, uint64_t *out)
{
    if (!s || !*s || !out || *s < '0' || *s > '9') {
        return TC_EINVAL;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) {
        return TC_EINVAL;
    }
    uint64_t mult = 1;
    if (*end == '\0' || strcmp(end, "B") == 0) {
        mult = 1;
    } else if (strcmp(end, "K") == 0 || strcmp(end, "KB") == 0 || strcmp(end, "KiB") == 0) {
        mult = 1024ULL;
    } else if (strcmp(end, "M") == 0 || strcmp(end, "MB") == 0 || strcmp(end, "MiB") == 0) {
        mult = 1024ULL * 1024;
    } else if (strcmp(end, "G") == 0 || strcmp(end, "GB") == 0 || strcmp(end, "GiB") == 0) {
        mult = 1024ULL * 1024 * 1024;
    } else if (strcmp(end, "T") == 0 || strcmp(end, "TB") == 0 || strcmp(end, "TiB") == 0) {
        mult = 1024ULL * 1024 * 1024 * 1024;
    } else {
        return TC_EINVAL;
    }
    if (v > UINT64_MAX / mult) {
        return TC_EINVAL;
    }
    *out = v * mult;
    return 0;
}

int tc_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return TC_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void tc_hex(const void *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = bytes;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 0xf];
    }
    out[2 * len] = '\0';
}

size_t tc_strlcpy(char *dst, const char *src, size_t len)
{
    size_t n = strlen(src);
    if (len > 0) {
        size_t c = n < len - 1 ? n : len - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

void tc_time_format_rfc3339(int64_t us, char buf[32])
{
    time_t secs = (time_t)(us / 1000000);
    int ms = (int)((us % 1000000) / 1000);
    if (us < 0) {
        secs = 0;
        ms = 0;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 32 - n, ".%03dZ", ms);
}

int tc_mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    /* An empty path would start the walk below past its terminator. */
    if (!path || !*path || tc_strlcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp)) {
        return TC_EINVAL;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0750) != 0 && errno != EEXIST) {
                return TC_EIO;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0750) != 0) {
        /* EEXIST also covers a regular file or a dangling link at `path`: only a directory
         * (or a link to one) is success. */
        struct stat st;
        if (errno != EEXIST || stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode)) {
            return TC_EIO;
        }
    }
    return 0;
}
