/*
 * Unit tests for common/tc_log: every line on stderr is one JSON object with the
 * documented fields, levels filter, bad bytes never break a line, threads never
 * interleave, and the rate limit counts what it held back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- capturing stderr through a pipe ---- */

typedef struct {
    int rfd;
    int saved;
    pthread_t reader;
    char *buf;
    size_t len, cap;
} capture_t;

/* Drains the pipe while the code under test writes, so a full pipe never blocks it. */
static void *capture_reader(void *arg)
{
    capture_t *c = arg;
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap = c->cap ? c->cap * 2 : 65536;
            c->buf = realloc(c->buf, c->cap + 1);
            if (!c->buf) {
                abort();
            }
        }
        ssize_t n = read(c->rfd, c->buf + c->len, c->cap - c->len);
        if (n <= 0) {
            break;
        }
        c->len += (size_t)n;
    }
    return NULL;
}

static void capture_start(capture_t *c)
{
    memset(c, 0, sizeof(*c));
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    c->rfd = p[0];
    assert_int_equal(pthread_create(&c->reader, NULL, capture_reader, c), 0);
}

/* Restores stderr and returns everything written meanwhile (the caller frees). */
static char *capture_stop(capture_t *c)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO); /* the pipe's last writer goes: the reader sees EOF */
    close(c->saved);
    pthread_join(c->reader, NULL);
    close(c->rfd);
    if (!c->buf) {
        c->buf = malloc(1);
        assert_non_null(c->buf);
    }
    c->buf[c->len] = '\0';
    return c->buf;
}

/* Splits captured text into lines (modifying it); every line must end in '\n'. */
static size_t split_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        if (!nl) {
            fail_msg("output does not end with a newline: \"%s\"", p);
        }
        *nl = '\0';
        assert_true(n < max);
        lines[n++] = p;
        p = nl + 1;
    }
    return n;
}

/* Parses one line and checks the fields every line carries. */
static json_t *parse_line(const char *line, const char *level, const char *daemon,
                          const char *event)
{
    json_error_t jerr;
    json_t *doc = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        fail_msg("not JSON (%s): %s", jerr.text, line);
    }
    if (!json_is_object(doc)) {
        fail_msg("not an object: %s", line);
    }
    const char *ts = json_string_value(json_object_get(doc, "ts"));
    assert_non_null(ts);
    /* 2024-01-02T03:04:05.678Z */
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[4], '-');
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    assert_string_equal(json_string_value(json_object_get(doc, "level")), level);
    assert_string_equal(json_string_value(json_object_get(doc, "daemon")), daemon);
    json_t *pid = json_object_get(doc, "pid");
    assert_true(json_is_integer(pid));
    assert_int_equal(json_integer_value(pid), getpid());
    assert_string_equal(json_string_value(json_object_get(doc, "event")), event);
    assert_true(json_is_string(json_object_get(doc, "msg")));
    return doc;
}

/* ---- lines ---- */

/* Runs first: before tc_log_init, lines say daemon "tocsin" and debug is filtered. */
static void test_before_init(void **state)
{
    capture_t c;
    capture_start(&c);
    tc_log(TC_LOG_DEBUG, "t.debug", "hidden");
    tc_log(TC_LOG_INFO, "t.info", "shown %d", 1);
    char *out = capture_stop(&c);
    char *lines[8];
    assert_int_equal(split_lines(out, lines, 8), 1);
    json_t *doc = parse_line(lines[0], "info", "tocsin", "t.info");
    assert_string_equal(json_string_value(json_object_get(doc, "msg")), "shown 1");
    json_decref(doc);
    free(out);
}

static void test_fields_and_format(void **state)
{
    tc_log_init("testd", TC_LOG_DEBUG);
    capture_t c;
    capture_start(&c);
    tc_log(TC_LOG_INFO, "kafka.up", "connected to %s after %d tries", "127.0.0.1:9092", 3);
    tc_logj(TC_LOG_WARN, "batch.rejected",
            json_pack("{s:i, s:s, s:b, s:s}", "batch", 7, "service", "api", "retry", 1, "level",
                      "must-not-win"),
            "batch %d rejected", 7);
    tc_logj(TC_LOG_ERROR, "no.fields", NULL, "plain");
    tc_logj(TC_LOG_INFO, "not.an.object", json_integer(5), "fields that are not an object");
    tc_log(TC_LOG_DEBUG, NULL, "no event name");
    tc_log(TC_LOG_INFO, "quotes", "say \"hi\"\\ and a\ttab\nand a newline");
    char *out = capture_stop(&c);

    char *lines[16];
    assert_int_equal(split_lines(out, lines, 16), 6);

    json_t *doc = parse_line(lines[0], "info", "testd", "kafka.up");
    assert_string_equal(json_string_value(json_object_get(doc, "msg")),
                        "connected to 127.0.0.1:9092 after 3 tries");
    json_decref(doc);

    doc = parse_line(lines[1], "warn", "testd", "batch.rejected");
    assert_string_equal(json_string_value(json_object_get(doc, "msg")), "batch 7 rejected");
    assert_int_equal(json_integer_value(json_object_get(doc, "batch")), 7);
    assert_string_equal(json_string_value(json_object_get(doc, "service")), "api");
    assert_true(json_is_true(json_object_get(doc, "retry")));
    json_decref(doc);

    doc = parse_line(lines[2], "error", "testd", "no.fields");
    assert_int_equal(json_object_size(doc), 6);
    json_decref(doc);

    doc = parse_line(lines[3], "info", "testd", "not.an.object");
    assert_int_equal(json_object_size(doc), 6);
    json_decref(doc);

    doc = parse_line(lines[4], "debug", "testd", "log");
    json_decref(doc);

    doc = parse_line(lines[5], "info", "testd", "quotes");
    assert_string_equal(json_string_value(json_object_get(doc, "msg")),
                        "say \"hi\"\\ and a\ttab\nand a newline");
    json_decref(doc);
    free(out);
}

static void test_level_filter(void **state)
{
    static const struct {
        tc_log_level_t min;
        int written; /* bit i: level i was written */
    } cases[] = {
        {TC_LOG_DEBUG, 0xf},
        {TC_LOG_INFO, 0xe},
        {TC_LOG_WARN, 0xc},
        {TC_LOG_ERROR, 0x8},
    };
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tc_log_init("filter", cases[i].min);
        capture_t c;
        capture_start(&c);
        for (int l = TC_LOG_DEBUG; l <= TC_LOG_ERROR; l++) {
            tc_log((tc_log_level_t)l, names[l], "level %d", l);
        }
        tc_log((tc_log_level_t)7, "bogus", "an out-of-range level is dropped");
        char *out = capture_stop(&c);
        char *lines[8];
        size_t n = split_lines(out, lines, 8);
        int seen = 0;
        for (size_t k = 0; k < n; k++) {
            json_error_t jerr;
            json_t *doc = json_loads(lines[k], 0, &jerr);
            assert_non_null(doc);
            const char *lvl = json_string_value(json_object_get(doc, "level"));
            assert_non_null(lvl);
            for (int l = 0; l < 4; l++) {
                if (strcmp(lvl, names[l]) == 0) {
                    seen |= 1 << l;
                    assert_string_equal(json_string_value(json_object_get(doc, "event")), names[l]);
                }
            }
            json_decref(doc);
        }
        assert_int_equal(n, (size_t)__builtin_popcount((unsigned)cases[i].written));
        assert_int_equal(seen, cases[i].written);
        free(out);
    }
}

static void test_level_parse(void **state)
{
    static const struct {
        const char *text;
        int rc;
        tc_log_level_t level;
    } cases[] = {
        {"debug", 0, TC_LOG_DEBUG},  {"info", 0, TC_LOG_INFO},   {"warn", 0, TC_LOG_WARN},
        {"warning", 0, TC_LOG_WARN}, {"error", 0, TC_LOG_ERROR}, {"", TC_EINVAL, 0},
        {"INFO", TC_EINVAL, 0},      {"fatal", TC_EINVAL, 0},    {"info ", TC_EINVAL, 0},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tc_log_level_t l = (tc_log_level_t)99;
        int rc = tc_log_level_parse(cases[i].text, &l);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(l, cases[i].level);
        }
    }
    tc_log_level_t l;
    assert_int_equal(tc_log_level_parse(NULL, &l), TC_EINVAL);
}

/* Bytes from outside (invalid UTF-8, control characters) never break the line, and the
 * valid part of the message survives. */
static void test_bad_bytes(void **state)
{
    tc_log_init("bytes", TC_LOG_INFO);
    static const char *msgs[] = {
        "service \xff\xfe sent junk",
        "truncated \xe2\x82",
        "overlong \xc0\xaf slash",
        "surrogate \xed\xa0\x80 here",
        "lone \x80 continuation",
        "control \x01\x1f\x7f bytes",
        "valid caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    };
    capture_t c;
    capture_start(&c);
    for (size_t i = 0; i < N_ELEMS(msgs); i++) {
        tc_log(TC_LOG_WARN, "bad.input", "%s", msgs[i]);
    }
    char *out = capture_stop(&c);
    char *lines[16];
    assert_int_equal(split_lines(out, lines, 16), N_ELEMS(msgs));
    for (size_t i = 0; i < N_ELEMS(msgs); i++) {
        json_t *doc = parse_line(lines[i], "warn", "bytes", "bad.input");
        const char *msg = json_string_value(json_object_get(doc, "msg"));
        /* The ASCII before the bad bytes is kept. */
        size_t prefix = strcspn(msgs[i], "\x80\x81\x82\xc0\xe2\xed\xff\x01");
        if (strncmp(msg, msgs[i], prefix) != 0) {
            fail_msg("message %zu logged as \"%s\"", i, msg);
        }
        if (tc_utf8_valid(msgs[i], strlen(msgs[i]))) {
            assert_string_equal(msg, msgs[i]);
        } else {
            /* Bad bytes become U+FFFD and the text after them is kept. */
            assert_non_null(strstr(msg, "\xef\xbf\xbd"));
            const char *tail = msgs[i] + strlen(msgs[i]);
            while (tail > msgs[i] && (unsigned char)tail[-1] < 0x80) {
                tail--;
            }
            assert_non_null(strstr(msg, tail));
        }
        json_decref(doc);
    }
    free(out);
}

/* A message longer than the line buffer is cut, on a character boundary: a multi-byte
 * character split by the cut must not turn the whole message into a placeholder. */
static void test_long_message(void **state)
{
    tc_log_init("long", TC_LOG_INFO);
    static const char *units[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t u = 0; u < N_ELEMS(units); u++) {
        for (size_t shift = 0; shift < 4; shift++) {
            /* `shift` ASCII bytes first, so the cut falls at every offset of a character. */
            size_t ulen = strlen(units[u]);
            size_t total = shift + 10000 * ulen;
            char *big = malloc(total + 1);
            assert_non_null(big);
            memset(big, 'x', shift);
            for (size_t k = 0; k < 10000; k++) {
                memcpy(big + shift + k * ulen, units[u], ulen);
            }
            big[total] = '\0';
            capture_t c;
            capture_start(&c);
            tc_log(TC_LOG_INFO, "big", "%s", big);
            char *out = capture_stop(&c);
            char *lines[4];
            assert_int_equal(split_lines(out, lines, 4), 1);
            json_t *doc = parse_line(lines[0], "info", "long", "big");
            const char *msg = json_string_value(json_object_get(doc, "msg"));
            size_t mlen = strlen(msg);
            if (mlen < 1000 || strncmp(msg, big, mlen) != 0) {
                fail_msg("unit %zu shift %zu: message of %zu bytes logged as \"%.60s\"", u, shift,
                         total, msg);
            }
            json_decref(doc);
            free(out);
            free(big);
        }
    }
}

/* Lines written from several threads at once arrive whole. */
#define LOG_THREADS 4
#define LOG_LINES 500

static void *log_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LOG_LINES; i++) {
        tc_logj(TC_LOG_INFO, "thread.line", json_pack("{s:i, s:i}", "thread", id, "seq", i),
                "thread %d line %d %s", id, i,
                "padding padding padding padding padding padding padding padding padding");
    }
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    tc_log_init("threads", TC_LOG_INFO);
    capture_t c;
    capture_start(&c);
    pthread_t th[LOG_THREADS];
    for (int t = 0; t < LOG_THREADS; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, log_thread, (void *)(intptr_t)t), 0);
    }
    for (int t = 0; t < LOG_THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    char *out = capture_stop(&c);
    char **lines = calloc(LOG_THREADS * LOG_LINES + 1, sizeof(char *));
    assert_non_null(lines);
    size_t n = split_lines(out, lines, LOG_THREADS * LOG_LINES + 1);
    assert_int_equal(n, LOG_THREADS * LOG_LINES);
    int next[LOG_THREADS] = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *doc = parse_line(lines[i], "info", "threads", "thread.line");
        int t = (int)json_integer_value(json_object_get(doc, "thread"));
        int seq = (int)json_integer_value(json_object_get(doc, "seq"));
        assert_in_range(t, 0, LOG_THREADS - 1);
        assert_int_equal(seq, next[t]); /* each thread's lines in its order */
        next[t]++;
        json_decref(doc);
    }
    free(lines);
    free(out);
}

/* ---- rate limit ---- */

static void test_limit(void **state)
{
    static const struct {
        int64_t now_us;
        bool allowed;
        uint64_t suppressed; /* reported when allowed */
    } steps[] = {
        {1000000, true, 0},  {1000001, true, 0},  {1500000, true, 0},  {1500001, false, 0},
        {1999999, false, 0}, {2000000, true, 2}, /* a new window reports the two held back */
        {2000001, true, 0},                      /* and the count restarts */
        {2000002, true, 0},  {2000003, false, 0}, {2000004, false, 0}, {2000005, false, 0},
        {9000000, true, 3}, /* long after */
        {500000, true, 0},  /* the clock went back: a new window */
        {500001, true, 0},   {500002, true, 0},   {500003, false, 0},
    };
    tc_log_limit_t limit = TC_LOG_LIMIT_INIT(3, 1000000);
    for (size_t i = 0; i < N_ELEMS(steps); i++) {
        uint64_t suppressed = 12345;
        bool ok = tc_log_limit_allow(&limit, steps[i].now_us, &suppressed);
        if (ok != steps[i].allowed) {
            fail_msg("step %zu at %lld: allowed %d, expected %d", i, (long long)steps[i].now_us, ok,
                     steps[i].allowed);
        }
        if (ok && suppressed != steps[i].suppressed) {
            fail_msg("step %zu: reported %llu suppressed, expected %llu", i,
                     (unsigned long long)suppressed, (unsigned long long)steps[i].suppressed);
        }
    }

    /* n per window over many windows; what is held back is reported exactly once. */
    tc_log_limit_t l2 = TC_LOG_LIMIT_INIT(5, 100);
    uint64_t allowed = 0, reported = 0;
    const int64_t start = 1700000000000000;
    for (int64_t t = 0; t < 100000; t++) {
        uint64_t s = 0;
        if (tc_log_limit_allow(&l2, start + t, &s)) {
            allowed++;
            reported += s;
        }
    }
    assert_int_equal(allowed, 5 * 1000);
    assert_int_equal(reported + l2.suppressed, 100000 - allowed);

    /* NULL for the count is allowed; zero per window allows nothing. */
    tc_log_limit_t l3 = TC_LOG_LIMIT_INIT(1, 10);
    assert_true(tc_log_limit_allow(&l3, 5, NULL));
    assert_false(tc_log_limit_allow(&l3, 6, NULL));
    tc_log_limit_t l4 = TC_LOG_LIMIT_INIT(0, 10);
    assert_false(tc_log_limit_allow(&l4, 5, NULL));
    assert_false(tc_log_limit_allow(&l4, 500, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_init),
        cmocka_unit_test(test_fields_and_format),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_long_message),
        cmocka_unit_test(test_threads_do_not_interleave),
        cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
