/*
 * ctl_view.c — tables and lines built from the APIs' JSON. Everything a daemon sends is
 * treated as untrusted text: cells are cleaned by ctl_table, log lines by ctl_text_clean.
 */
#include "ctl_view.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl_status.h"
#include "ctl_table.h"
#include "tc_error.h"
#include "tc_util.h"

/* ---- times --------------------------------------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), without the C library's time zone. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int ctl_rfc3339_parse(const char *s, int64_t *out_us)
{
    int y, mo, d, h, mi, se;
    if (!s || strlen(s) < 19 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &se)) {
        return TC_EINVAL;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) {
        return TC_EINVAL;
    }
    const char *p = s + 19;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        int64_t scale = 100000;
        while (isdigit((unsigned char)*p)) {
            if (n < 6) {
                frac_us += (*p - '0') * scale;
                scale /= 10;
            }
            n++;
            p++;
        }
        if (n == 0) {
            return TC_EINVAL;
        }
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59) {
            return TC_EINVAL;
        }
        offset_s = (oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return TC_EINVAL;
    }
    if (*p) {
        return TC_EINVAL;
    }
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset_s;
    *out_us = secs * 1000000 + frac_us;
    return 0;
}

int ctl_time_parse(const char *s, int64_t now_us, int64_t *out_us)
{
    if (!s || !*s) {
        return TC_EINVAL;
    }
    if (strcmp(s, "now") == 0) {
        *out_us = now_us;
        return 0;
    }
    if (ctl_rfc3339_parse(s, out_us) == 0) {
        return 0;
    }
    /* Unix seconds: ten digits or more (a bare short number would be read as a duration
     * of seconds by tc_duration_parse, which is the surprising reading here). */
    size_t nd = strspn(s, "0123456789");
    if (nd >= 9 && (s[nd] == '\0' || s[nd] == '.')) {
        char *e = NULL;
        double v = strtod(s, &e);
        if (e && *e == '\0' && v >= 0 && v < 1e11) {
            *out_us = (int64_t)(v * 1e6);
            return 0;
        }
        return TC_EINVAL;
    }
    int64_t ms = 0;
    if (nd < strlen(s) && tc_duration_parse(s, &ms) == 0) {
        *out_us = now_us - ms * 1000;
        return 0;
    }
    return TC_EINVAL;
}

void ctl_time_ago(int64_t t_us, int64_t now_us, char *buf, size_t len)
{
    int64_t d = now_us - t_us;
    bool future = d < 0;
    int64_t a = (future ? -d : d) / 1000000;
    char amount[32];
    if (a < 1) {
        snprintf(buf, len, "just now");
        return;
    }
    if (a < 120) {
        snprintf(amount, sizeof(amount), "%" PRId64 "s", a);
    } else if (a < 120 * 60) {
        snprintf(amount, sizeof(amount), "%" PRId64 "m", a / 60);
    } else if (a < 48 * 3600) {
        snprintf(amount, sizeof(amount), "%" PRId64 "h", a / 3600);
    } else {
        snprintf(amount, sizeof(amount), "%" PRId64 "d", a / 86400);
    }
    snprintf(buf, len, future ? "in %s" : "%s ago", amount);
}

void ctl_fmt_duration(int64_t ms, char *buf, size_t len)
{
    if (ms < 0) {
        ms = 0;
    }
    if (ms < 1000) {
        snprintf(buf, len, ms ? "%" PRId64 "ms" : "0s", ms);
        return;
    }
    static const struct {
        int64_t ms;
        char unit;
    } units[] = {{86400000, 'd'}, {3600000, 'h'}, {60000, 'm'}};
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < 3 && o < len; i++) {
        if (ms >= units[i].ms) {
            o += (size_t)snprintf(buf + o, len - o, "%" PRId64 "%c", ms / units[i].ms,
                                  units[i].unit);
            ms %= units[i].ms;
        }
    }
    if (ms > 0 && o < len) {
        if (ms % 1000 == 0) {
            snprintf(buf + o, len - o, "%" PRId64 "s", ms / 1000);
        } else {
            snprintf(buf + o, len - o,
                     "%g"
                     "s",
                     (double)ms / 1000.0);
        }
    }
}

void ctl_fmt_when(const json_t *t, int64_t now_us, char *buf, size_t len)
{
    int64_t us;
    if (!json_is_string(t) || ctl_rfc3339_parse(json_string_value(t), &us) != 0) {
        snprintf(buf, len, "-");
        return;
    }
    char ago[32];
    ctl_time_ago(us, now_us, ago, sizeof(ago));
    time_t secs = (time_t)(us / 1000000 - (us < 0 && us % 1000000 ? 1 : 0));
    struct tm tm;
    gmtime_r(&secs, &tm);
    time_t now_s = (time_t)(now_us / 1000000);
    struct tm now_tm;
    gmtime_r(&now_s, &now_tm);
    if (tm.tm_year == now_tm.tm_year && tm.tm_yday == now_tm.tm_yday) {
        snprintf(buf, len, "%02d:%02d:%02d (%s)", tm.tm_hour, tm.tm_min, tm.tm_sec, ago);
    } else {
        snprintf(buf, len, "%04d-%02d-%02d %02d:%02d (%s)", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, ago);
    }
}

/* ---- small formatting helpers ------------------------------------------------------------- */

static const char *str_or(const json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static void fmt_num(const json_t *v, char *buf, size_t len)
{
    if (json_is_number(v)) {
        ctl_fmt_count(json_number_value(v), buf, len);
    } else {
        snprintf(buf, len, "-");
    }
}

static void fmt_ms(double ms, char *buf, size_t len)
{
    if (!isfinite(ms)) {
        snprintf(buf, len, "-");
    } else if (ms < 1) {
        snprintf(buf, len, "%.3g ms", ms);
    } else if (ms < 1000) {
        snprintf(buf, len, "%.4g ms", ms);
    } else {
        snprintf(buf, len, "%.3g s", ms / 1000);
    }
}

static void fmt_pct(double ratio, char *buf, size_t len)
{
    if (!isfinite(ratio)) {
        snprintf(buf, len, "-");
    } else {
        snprintf(buf, len, "%.3g %%", ratio * 100);
    }
}

/* Numbers of a quantile key such as "0.95" shown as "p95". */
static void quantile_title(const char *key, char *buf, size_t len)
{
    double q = strtod(key, NULL);
    snprintf(buf, len, "p%g", q * 100);
}

/* ---- query and range -------------------------------------------------------------------- */

char *ctl_view_query(const json_t *doc, size_t width)
{
    const json_t *qs = json_object_get(doc, "quantiles");
    size_t nq = json_is_object(qs) ? json_object_size(qs) : 0;
    if (nq > 8) {
        nq = 8;
    }
    const char *headers[CTL_TABLE_MAX_COLS] = {"SERVICE", "NAME",   "ENV",    "WINDOW",
                                               "COUNT",   "RATE/S", "ERRORS", "ERROR RATE"};
    ctl_align_t aligns[CTL_TABLE_MAX_COLS] = {CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT,
                                              CTL_ALIGN_LEFT,  CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT,
                                              CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT};
    char titles[8][32];
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach((json_t *)qs, key, val)
    {
        if (i >= nq) {
            break;
        }
        quantile_title(key, titles[i], sizeof(titles[i]));
        headers[8 + i] = titles[i];
        aligns[8 + i] = CTL_ALIGN_RIGHT;
        i++;
    }
    ctl_table_t *t = ctl_table_new(8 + nq, headers, aligns);
    if (!t) {
        return NULL;
    }
    char buf[64];
    ctl_table_add(t, str_or(json_object_get(doc, "service"), "-"));
    ctl_table_add(t, str_or(json_object_get(doc, "name"), "-"));
    ctl_table_add(t, str_or(json_object_get(doc, "environment"), "(all)"));
    ctl_table_add(t, str_or(json_object_get(doc, "window"), "-"));
    fmt_num(json_object_get(doc, "count"), buf, sizeof(buf));
    ctl_table_add(t, buf);
    const json_t *rate = json_object_get(doc, "rate_per_s");
    if (json_is_number(rate)) {
        ctl_table_addf(t, "%.4g", json_number_value(rate));
    } else {
        ctl_table_add(t, "-");
    }
    fmt_num(json_object_get(doc, "errors"), buf, sizeof(buf));
    ctl_table_add(t, buf);
    const json_t *er = json_object_get(doc, "error_rate");
    fmt_pct(json_is_number(er) ? json_number_value(er) : NAN, buf, sizeof(buf));
    ctl_table_add(t, buf);
    i = 0;
    json_object_foreach((json_t *)qs, key, val)
    {
        if (i++ >= nq) {
            break;
        }
        fmt_ms(json_is_number(val) ? json_number_value(val) : NAN, buf, sizeof(buf));
        ctl_table_add(t, buf);
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}

char *ctl_view_range(const json_t *doc, size_t width)
{
    const json_t *points = json_object_get(doc, "points");
    static const char *const headers[] = {"FROM",       "COUNT", "RATE/S", "ERRORS",
                                          "ERROR RATE", "p50",   "p95",    "p99"};
    static const ctl_align_t aligns[] = {CTL_ALIGN_LEFT,  CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT};
    static const char *const qkeys[] = {"0.5", "0.95", "0.99"};
    ctl_table_t *t = ctl_table_new(8, headers, aligns);
    if (!t) {
        return NULL;
    }
    size_t i;
    json_t *p;
    json_array_foreach((json_t *)points, i, p)
    {
        char buf[64];
        /* The step's start: "t" (Unix seconds) as the aggregator answers it. */
        const json_t *from = json_object_get(p, "t");
        if (!from) {
            from = json_object_get(p, "from");
        }
        if (json_is_integer(from)) {
            time_t s = (time_t)json_integer_value(from);
            struct tm tm;
            gmtime_r(&s, &tm);
            strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
            ctl_table_add(t, buf);
        } else {
            ctl_table_add(t, str_or(from, "-"));
        }
        fmt_num(json_object_get(p, "count"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        const json_t *rate = json_object_get(p, "rate_per_s");
        if (json_is_number(rate)) {
            ctl_table_addf(t, "%.4g", json_number_value(rate));
        } else {
            ctl_table_add(t, "-");
        }
        fmt_num(json_object_get(p, "errors"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        const json_t *er = json_object_get(p, "error_rate");
        fmt_pct(json_is_number(er) ? json_number_value(er) : NAN, buf, sizeof(buf));
        ctl_table_add(t, buf);
        const json_t *qs = json_object_get(p, "quantiles");
        for (size_t k = 0; k < 3; k++) {
            const json_t *q = json_object_get(qs, qkeys[k]);
            fmt_ms(json_is_number(q) ? json_number_value(q) : NAN, buf, sizeof(buf));
            ctl_table_add(t, buf);
        }
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}

/* ---- top ------------------------------------------------------------------------------------ */

int ctl_top_by_parse(const char *s, ctl_top_by_t *out)
{
    static const char *const names[] = {"requests", "errors", "error_rate", "p95"};
    for (int i = 0; s && i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (ctl_top_by_t)i;
            return 0;
        }
    }
    return TC_EINVAL;
}

static double top_key(const ctl_top_row_t *r, ctl_top_by_t by)
{
    switch (by) {
    case CTL_TOP_REQUESTS:
        return r->requests;
    case CTL_TOP_ERRORS: {
        double e = isfinite(r->errors) ? r->errors : 0;
        double ev = isfinite(r->error_events) ? r->error_events : 0;
        return isfinite(r->errors) || isfinite(r->error_events) ? e + ev : NAN;
    }
    case CTL_TOP_ERROR_RATE:
        return r->error_rate;
    case CTL_TOP_P95:
        return r->p95_ms;
    }
    return NAN;
}

static ctl_top_by_t sort_by; /* qsort has no context argument; sorting is not reentrant */

static int top_cmp(const void *a, const void *b)
{
    const ctl_top_row_t *x = a, *y = b;
    double kx = top_key(x, sort_by), ky = top_key(y, sort_by);
    bool nx = !isfinite(kx), ny = !isfinite(ky);
    if (nx != ny) {
        return nx ? 1 : -1;
    }
    if (!nx && kx != ky) {
        return kx > ky ? -1 : 1;
    }
    return strcmp(x->service, y->service);
}

void ctl_top_sort(ctl_top_row_t *rows, size_t n, ctl_top_by_t by)
{
    sort_by = by;
    if (n > 1) {
        qsort(rows, n, sizeof(*rows), top_cmp);
    }
}

char *ctl_view_top(const ctl_top_row_t *rows, size_t n, size_t limit, size_t width)
{
    static const char *const headers[] = {"SERVICE",    "REQUESTS", "RATE/S",      "ERRORS",
                                          "ERROR RATE", "p95",      "ERROR EVENTS"};
    static const ctl_align_t aligns[] = {CTL_ALIGN_LEFT,  CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT};
    ctl_table_t *t = ctl_table_new(7, headers, aligns);
    if (!t) {
        return NULL;
    }
    for (size_t i = 0; i < n && (limit == 0 || i < limit); i++) {
        const ctl_top_row_t *r = &rows[i];
        char buf[64];
        ctl_table_add(t, r->service);
        if (isfinite(r->requests)) {
            ctl_fmt_count(r->requests, buf, sizeof(buf));
        } else {
            snprintf(buf, sizeof(buf), "-");
        }
        ctl_table_add(t, buf);
        if (isfinite(r->rate_per_s)) {
            ctl_table_addf(t, "%.4g", r->rate_per_s);
        } else {
            ctl_table_add(t, "-");
        }
        if (isfinite(r->errors)) {
            ctl_fmt_count(r->errors, buf, sizeof(buf));
        } else {
            snprintf(buf, sizeof(buf), "-");
        }
        ctl_table_add(t, buf);
        fmt_pct(r->error_rate, buf, sizeof(buf));
        ctl_table_add(t, buf);
        fmt_ms(r->p95_ms, buf, sizeof(buf));
        ctl_table_add(t, buf);
        if (isfinite(r->error_events)) {
            ctl_fmt_count(r->error_events, buf, sizeof(buf));
        } else {
            snprintf(buf, sizeof(buf), "-");
        }
        ctl_table_add(t, buf);
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}

static json_t *num_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *ctl_top_json(const ctl_top_row_t *rows, size_t n, size_t limit)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n && (limit == 0 || i < limit); i++) {
        const ctl_top_row_t *r = &rows[i];
        json_t *o =
            json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "service", r->service, "requests",
                      num_or_null(r->requests), "rate_per_s", num_or_null(r->rate_per_s), "errors",
                      num_or_null(r->errors), "error_rate", num_or_null(r->error_rate), "p95_ms",
                      num_or_null(r->p95_ms), "error_events", num_or_null(r->error_events));
        if (!o || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* ---- issues and logs ----------------------------------------------------------------------- */

/* The first of several field names an object has (APIs name ids and times differently). */
static const json_t *field(const json_t *o, const char *a, const char *b)
{
    const json_t *v = json_object_get(o, a);
    return v || !b ? v : json_object_get(o, b);
}

static void fmt_scalar(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, len, "%.6g", json_real_value(v));
    } else if (json_is_true(v)) {
        snprintf(buf, len, "true");
    } else if (json_is_false(v)) {
        snprintf(buf, len, "false");
    } else {
        snprintf(buf, len, "-");
    }
}

char *ctl_view_issues(const json_t *doc, int64_t now_us, size_t width)
{
    static const char *const headers[] = {"ID",    "SERVICE",   "STATUS",     "LEVEL", "COUNT",
                                          "USERS", "LAST SEEN", "FIRST SEEN", "TITLE"};
    static const ctl_align_t aligns[] = {CTL_ALIGN_LEFT, CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT,
                                         CTL_ALIGN_LEFT, CTL_ALIGN_RIGHT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_LEFT, CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT};
    ctl_table_t *t = ctl_table_new(9, headers, aligns);
    if (!t) {
        return NULL;
    }
    const json_t *list = json_is_array(doc) ? doc : json_object_get(doc, "issues");
    size_t i;
    json_t *is;
    json_array_foreach((json_t *)list, i, is)
    {
        char buf[512];
        fmt_scalar(field(is, "id", "fingerprint"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_table_add(t, str_or(json_object_get(is, "service"), "-"));
        ctl_table_add(t, str_or(json_object_get(is, "status"), "-"));
        ctl_table_add(t, str_or(json_object_get(is, "level"), "-"));
        fmt_num(json_object_get(is, "count"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        fmt_num(field(is, "users", "users_affected"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_fmt_when(json_object_get(is, "last_seen"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_fmt_when(json_object_get(is, "first_seen"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        const char *type = str_or(json_object_get(is, "type"), NULL);
        const char *msg = str_or(field(is, "title", "message"), NULL);
        snprintf(buf, sizeof(buf), "%s%s%s", type ? type : "", type && msg ? ": " : "",
                 msg ? msg : "");
        ctl_table_add(t, buf[0] ? buf : "-");
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}

/* Appends text to a growable string; returns false when out of memory. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} sb_t;

static void sb_add(sb_t *sb, const char *s)
{
    size_t n = strlen(s);
    if (sb->failed) {
        return;
    }
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 512;
        while (cap < sb->len + n + 1) {
            cap *= 2;
        }
        char *b = realloc(sb->buf, cap);
        if (!b) {
            sb->failed = true;
            return;
        }
        sb->buf = b;
        sb->cap = cap;
    }
    memcpy(sb->buf + sb->len, s, n + 1);
    sb->len += n;
}

static void sb_clean(sb_t *sb, const char *s)
{
    char buf[4096];
    ctl_text_clean(s, buf, sizeof(buf));
    sb_add(sb, buf);
}

static char *sb_take(sb_t *sb)
{
    if (sb->failed) {
        free(sb->buf);
        return NULL;
    }
    if (!sb->buf) {
        return strdup("");
    }
    return sb->buf;
}

char *ctl_view_issue(const json_t *doc, int64_t now_us, size_t width)
{
    const json_t *is = json_object_get(doc, "issue");
    if (!json_is_object(is)) {
        is = doc;
    }
    sb_t sb = {0};
    const char *key;
    json_t *v;
    /* Scalars first, one per line; times with their distance from now. */
    json_object_foreach((json_t *)is, key, v)
    {
        char buf[1024];
        size_t klen = strlen(key);
        /* Objects and lists come below; "*_us" repeat a time shown already; empty strings
         * say nothing. */
        if (json_is_object(v) || json_is_array(v) || (klen > 3 && !strcmp(key + klen - 3, "_us")) ||
            (json_is_string(v) && !*json_string_value(v))) {
            continue;
        }
        if (json_is_string(v) && (strstr(key, "seen") || !strcmp(key, "status_updated"))) {
            ctl_fmt_when(v, now_us, buf, sizeof(buf));
        } else {
            fmt_scalar(v, buf, sizeof(buf));
        }
        char line[1200];
        snprintf(line, sizeof(line), "%-14s ", key);
        sb_clean(&sb, line);
        sb_clean(&sb, buf);
        sb_add(&sb, "\n");
    }
    /* Lists of scalars (releases, environments) on one line each. */
    json_object_foreach((json_t *)is, key, v)
    {
        if (!json_is_array(v) || json_array_size(v) == 0 || json_is_object(json_array_get(v, 0))) {
            continue;
        }
        char line[256];
        snprintf(line, sizeof(line), "%-14s ", key);
        sb_clean(&sb, line);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char buf[512];
            fmt_scalar(e, buf, sizeof(buf));
            sb_add(&sb, i ? ", " : "");
            sb_clean(&sb, buf);
        }
        sb_add(&sb, "\n");
    }
    /* The sample event's frames, innermost first as the client sent them. */
    const json_t *sample = field(is, "sample", "sample_event");
    const json_t *frames = json_object_get(sample, "frames");
    if (!frames) {
        frames = json_object_get(json_object_get(sample, "error"), "frames");
    }
    if (json_is_array(frames) && json_array_size(frames) > 0) {
        static const char *const headers[] = {"IN APP", "FUNCTION", "MODULE", "FILE", "LINE"};
        ctl_table_t *t = ctl_table_new(5, headers, NULL);
        size_t i;
        json_t *f;
        json_array_foreach((json_t *)frames, i, f)
        {
            char buf[64];
            if (!t) {
                break;
            }
            ctl_table_add(t, json_is_true(json_object_get(f, "in_app")) ? "*" : "");
            ctl_table_add(t, str_or(json_object_get(f, "function"), "-"));
            ctl_table_add(t, str_or(json_object_get(f, "module"), "-"));
            ctl_table_add(t, str_or(json_object_get(f, "file"), "-"));
            fmt_scalar(json_object_get(f, "line"), buf, sizeof(buf));
            ctl_table_add(t, buf);
        }
        char *tab = t ? ctl_table_render(t, width) : NULL;
        ctl_table_destroy(&t);
        sb_add(&sb, "\nsample event frames:\n");
        if (tab) {
            sb_add(&sb, tab);
            free(tab);
        } else {
            sb.failed = true;
        }
    }
    return sb_take(&sb);
}

char *ctl_view_logs(const json_t *doc)
{
    const json_t *list = json_is_array(doc) ? doc : json_object_get(doc, "logs");
    if (!list) {
        list = json_object_get(doc, "records");
    }
    sb_t sb = {0};
    size_t i;
    json_t *r;
    json_array_foreach((json_t *)list, i, r)
    {
        char buf[256];
        const json_t *ts = field(r, "time", "ts");
        if (json_is_integer(ts) || json_is_real(ts)) {
            /* microseconds or seconds since the epoch */
            double v = json_number_value(ts);
            int64_t us = v > 1e14 ? (int64_t)v : (int64_t)(v * 1e6);
            tc_time_format_rfc3339(us, buf);
        } else {
            snprintf(buf, sizeof(buf), "%s", str_or(ts, "-"));
        }
        sb_clean(&sb, buf);
        snprintf(buf, sizeof(buf), " %-5s ", str_or(json_object_get(r, "level"), "-"));
        sb_clean(&sb, buf);
        const char *service = str_or(json_object_get(r, "service"), NULL);
        const char *logger = str_or(json_object_get(r, "logger"), NULL);
        if (service || logger) {
            snprintf(buf, sizeof(buf), "[%s%s%s] ", service ? service : "",
                     service && logger ? "/" : "", logger ? logger : "");
            sb_clean(&sb, buf);
        }
        sb_clean(&sb, str_or(json_object_get(r, "message"), ""));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(r, "fields"), k, v)
        {
            char val[1024];
            fmt_scalar(v, val, sizeof(val));
            sb_add(&sb, " ");
            sb_clean(&sb, k);
            sb_add(&sb, "=");
            sb_clean(&sb, val);
        }
        sb_add(&sb, "\n");
    }
    return sb_take(&sb);
}

/* ---- alerts, silences, notifications ------------------------------------------------------ */

void ctl_fmt_next_action(const json_t *next, int64_t now_us, char *buf, size_t len)
{
    const char *action = str_or(json_object_get(next, "action"), NULL);
    if (!action) {
        snprintf(buf, len, "-");
        return;
    }
    char when[48] = "";
    int64_t at;
    if (ctl_rfc3339_parse(str_or(json_object_get(next, "at"), ""), &at) == 0) {
        ctl_time_ago(at, now_us, when, sizeof(when));
    }
    char rcv[256] = "";
    const json_t *rs = json_object_get(next, "receivers");
    size_t i, o = 0;
    json_t *r;
    json_array_foreach((json_t *)rs, i, r)
    {
        int n = snprintf(rcv + o, sizeof(rcv) - o, "%s%s", i ? ", " : "", str_or(r, "?"));
        if (n < 0 || (size_t)n >= sizeof(rcv) - o) {
            break;
        }
        o += (size_t)n;
    }
    const json_t *tier = json_object_get(next, "tier");
    if (strcmp(action, "escalate") == 0 && json_is_integer(tier)) {
        snprintf(buf, len, "escalate to tier %" JSON_INTEGER_FORMAT "%s%s%s %s",
                 json_integer_value(tier), o ? " (" : "", rcv, o ? ")" : "", when);
    } else {
        snprintf(buf, len, "%s%s%s%s %s", action, o ? " (" : "", rcv, o ? ")" : "", when);
    }
}

char *ctl_view_alerts(const json_t *doc, bool all, int64_t now_us, size_t width)
{
    static const char *const headers[] = {"ALERT", "SERVICE", "SEVERITY", "STATE",
                                          "SINCE", "VALUE",   "NEXT",     "FINGERPRINT"};
    ctl_table_t *t = ctl_table_new(8, headers, NULL);
    if (!t) {
        return NULL;
    }
    const json_t *list = json_object_get(doc, "alerts");
    size_t i;
    json_t *a;
    json_array_foreach((json_t *)list, i, a)
    {
        const char *state = str_or(json_object_get(a, "state"), "-");
        if (!all && strcmp(state, "inactive") == 0) {
            continue;
        }
        const json_t *labels = json_object_get(a, "labels");
        char buf[512];
        ctl_table_add(t, str_or(json_object_get(a, "alertname"),
                                str_or(json_object_get(labels, "alertname"), "-")));
        ctl_table_add(t, str_or(json_object_get(labels, "service"), "-"));
        ctl_table_add(t, str_or(json_object_get(a, "severity"),
                                str_or(json_object_get(labels, "severity"), "-")));
        const json_t *ack = json_object_get(a, "acknowledged");
        const json_t *silenced = json_object_get(a, "silenced_by");
        snprintf(buf, sizeof(buf), "%s%s%s%s", state, json_is_object(ack) ? " (ack " : "",
                 json_is_object(ack) ? str_or(json_object_get(ack, "by"), "?") : "",
                 json_is_object(ack) ? ")" : "");
        if (json_is_array(silenced) && json_array_size(silenced) > 0) {
            size_t n = strlen(buf);
            snprintf(buf + n, sizeof(buf) - n, " silenced");
        }
        if (json_is_true(json_object_get(a, "flapping"))) {
            size_t n = strlen(buf);
            snprintf(buf + n, sizeof(buf) - n, " flapping");
        }
        ctl_table_add(t, buf);
        ctl_fmt_when(json_object_get(a, "since"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        const json_t *v = json_object_get(a, "value");
        const char *type = str_or(json_object_get(a, "type"), "");
        if (!json_is_number(v)) {
            snprintf(buf, sizeof(buf), "-");
        } else if (strcmp(type, "error_rate") == 0 ||
                   (!*type && json_number_value(v) <= 1 && json_object_get(a, "errors"))) {
            fmt_pct(json_number_value(v), buf, sizeof(buf));
        } else {
            snprintf(buf, sizeof(buf), "%.4g", json_number_value(v));
        }
        ctl_table_add(t, buf);
        ctl_fmt_next_action(json_object_get(a, "next_action"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_table_add(t, str_or(json_object_get(a, "fingerprint"), "-"));
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}

static void fmt_matchers(const json_t *ms, char *buf, size_t len)
{
    size_t i, o = 0;
    json_t *m;
    buf[0] = '\0';
    json_array_foreach((json_t *)ms, i, m)
    {
        int n;
        if (json_is_string(m)) {
            n = snprintf(buf + o, len - o, "%s%s", i ? " " : "", json_string_value(m));
        } else {
            n = snprintf(buf + o, len - o, "%s%s%s\"%s\"", i ? " " : "",
                         str_or(json_object_get(m, "name"), "?"),
                         str_or(json_object_get(m, "op"), "="),
                         str_or(json_object_get(m, "value"), ""));
        }
        if (n < 0 || (size_t)n >= len - o) {
            break;
        }
        o += (size_t)n;
    }
}

char *ctl_view_silences(const json_t *doc, int64_t now_us, size_t width)
{
    static const char *const headers[] = {"ID",   "STATE", "MATCHERS", "STARTS",
                                          "ENDS", "BY",    "COMMENT"};
    ctl_table_t *t = ctl_table_new(7, headers, NULL);
    if (!t) {
        return NULL;
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(doc, "silences"), i, s)
    {
        char buf[1024];
        ctl_table_add(t, str_or(json_object_get(s, "id"), "-"));
        const char *source = str_or(json_object_get(s, "source"), "api");
        snprintf(buf, sizeof(buf), "%s%s", str_or(json_object_get(s, "state"), "-"),
                 strcmp(source, "file") == 0 ? " (file)" : "");
        ctl_table_add(t, buf);
        fmt_matchers(json_object_get(s, "matchers"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_fmt_when(json_object_get(s, "starts_at"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_fmt_when(json_object_get(s, "ends_at"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_table_add(t, str_or(json_object_get(s, "created_by"), "-"));
        ctl_table_add(t, str_or(json_object_get(s, "comment"), "-"));
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}

char *ctl_view_notifications(const json_t *doc, int64_t now_us, size_t width)
{
    static const char *const headers[] = {"ID",     "CREATED",  "KIND",   "RECEIVER",
                                          "STATUS", "ATTEMPTS", "ALERTS", "LAST ERROR"};
    static const ctl_align_t aligns[] = {CTL_ALIGN_RIGHT, CTL_ALIGN_LEFT, CTL_ALIGN_LEFT,
                                         CTL_ALIGN_LEFT,  CTL_ALIGN_LEFT, CTL_ALIGN_RIGHT,
                                         CTL_ALIGN_RIGHT, CTL_ALIGN_LEFT};
    ctl_table_t *t = ctl_table_new(8, headers, aligns);
    if (!t) {
        return NULL;
    }
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(doc, "notifications"), i, n)
    {
        char buf[512];
        fmt_scalar(json_object_get(n, "id"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_fmt_when(json_object_get(n, "created_at"), now_us, buf, sizeof(buf));
        ctl_table_add(t, buf);
        ctl_table_add(t, str_or(json_object_get(n, "kind"), "-"));
        ctl_table_add(t, str_or(json_object_get(n, "receiver"), "-"));
        ctl_table_add(t, str_or(json_object_get(n, "status"), "-"));
        fmt_scalar(json_object_get(n, "attempts"), buf, sizeof(buf));
        ctl_table_add(t, buf);
        const json_t *count = json_object_get(n, "alert_count");
        if (!count) {
            snprintf(buf, sizeof(buf), "%zu", json_array_size(json_object_get(n, "alerts")));
        } else {
            fmt_scalar(count, buf, sizeof(buf));
        }
        ctl_table_add(t, buf);
        ctl_table_add(t, str_or(json_object_get(n, "last_error"), "-"));
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}
