/*
 * Unit tests for the parts of common/tc_kafka that need no broker: resolving the
 * bootstrap servers (from the option, or a file that may appear late, with a time-out),
 * building configurations with pass-through settings and their errors, defaults that
 * pass-through settings win over, and the logger writing JSON lines through tc_log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_kafka.h"
#include "tc_log.h"
#include "tc_util.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static char dir[64];

static int setup_dir(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/tc_kafka_test.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void file_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- bootstrap ---- */

static void test_bootstrap_given(void **state)
{
    char *out = NULL;
    assert_int_equal(tc_kafka_bootstrap("10.0.0.1:9092,10.0.0.2:9092", "/nonexistent", 0, &out), 0);
    assert_string_equal(out, "10.0.0.1:9092,10.0.0.2:9092");
    free(out);

    static const struct {
        const char *brokers, *file;
    } none[] = {{NULL, NULL}, {"", NULL}, {NULL, ""}, {"", ""}};
    for (size_t i = 0; i < N_ELEMS(none); i++) {
        out = NULL;
        assert_int_equal(tc_kafka_bootstrap(none[i].brokers, none[i].file, 100, &out), TC_EINVAL);
        assert_null(out);
    }
}

static void test_bootstrap_file(void **state)
{
    static const struct {
        const char *content;
        const char *want;
    } cases[] = {
        {"127.0.0.1:39092\n", "127.0.0.1:39092"},
        {"127.0.0.1:39092", "127.0.0.1:39092"}, /* no newline */
        {"127.0.0.1:1,127.0.0.1:2\r\n", "127.0.0.1:1,127.0.0.1:2"},
        {"first:1\nsecond:2\n", "first:1"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char path[128];
        file_path(path, sizeof(path), "bootstrap");
        write_file(path, cases[i].content);
        char *out = NULL;
        assert_int_equal(tc_kafka_bootstrap(NULL, path, 0, &out), 0);
        assert_string_equal(out, cases[i].want);
        free(out);
        /* An empty option means "use the file". */
        assert_int_equal(tc_kafka_bootstrap("", path, 0, &out), 0);
        assert_string_equal(out, cases[i].want);
        free(out);
        /* Any wait a duration setting can hold is fine ("forever" included). */
        assert_int_equal(tc_kafka_bootstrap(NULL, path, INT64_MAX, &out), 0);
        assert_string_equal(out, cases[i].want);
        free(out);
        unlink(path);
    }
}

static void test_bootstrap_timeout(void **state)
{
    static const struct {
        const char *content; /* NULL: no file at all */
        int64_t wait_ms;
    } cases[] = {
        {NULL, 0},
        {NULL, 200},
        {"", 150},   /* an empty file is not an answer */
        {"\n", 150}, /* nor an empty first line */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char path[128];
        file_path(path, sizeof(path), "never");
        unlink(path);
        if (cases[i].content) {
            write_file(path, cases[i].content);
        }
        char *out = NULL;
        int64_t start = tc_mono_us();
        assert_int_equal(tc_kafka_bootstrap(NULL, path, cases[i].wait_ms, &out), TC_ETIMEDOUT);
        int64_t waited_ms = (tc_mono_us() - start) / 1000;
        assert_null(out);
        /* It waited at least as long as asked (no upper bound: the machine may be slow). */
        assert_true(waited_ms >= cases[i].wait_ms);
        unlink(path);
    }
}

typedef struct {
    char path[128];
    int delay_ms;
    bool empty_first; /* create the file empty, fill it after the delay */
} late_writer_t;

static void *late_writer(void *arg)
{
    late_writer_t *w = arg;
    if (w->empty_first) {
        FILE *f = fopen(w->path, "w");
        if (f) {
            fclose(f);
        }
        usleep((useconds_t)w->delay_ms * 1000);
        f = fopen(w->path, "w");
        if (f) {
            fputs("127.0.0.1:40001\n", f);
            fclose(f);
        }
        return NULL;
    }
    usleep((useconds_t)w->delay_ms * 1000);
    /* As tocsin-bus does: a temporary file renamed into place. */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", w->path);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fputs("127.0.0.1:40000\n", f);
        fclose(f);
        rename(tmp, w->path);
    }
    return NULL;
}

static void test_bootstrap_late_file(void **state)
{
    static const struct {
        bool empty_first;
        const char *want;
    } cases[] = {{false, "127.0.0.1:40000"}, {true, "127.0.0.1:40001"}};
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        late_writer_t w;
        memset(&w, 0, sizeof(w));
        file_path(w.path, sizeof(w.path), "late");
        unlink(w.path);
        w.delay_ms = 300;
        w.empty_first = cases[i].empty_first;
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, late_writer, &w), 0);
        char *out = NULL;
        int rc = tc_kafka_bootstrap(NULL, w.path, 20000, &out);
        pthread_join(t, NULL);
        assert_int_equal(rc, 0);
        assert_string_equal(out, cases[i].want);
        free(out);
        unlink(w.path);
    }
}

/* ---- configuration ---- */

static void expect_conf(rd_kafka_conf_t *conf, const char *name, const char *want)
{
    char value[512];
    size_t size = sizeof(value);
    if (rd_kafka_conf_get(conf, name, value, &size) != RD_KAFKA_CONF_OK) {
        fail_msg("%s is not set", name);
    }
    if (strcmp(value, want) != 0) {
        fail_msg("%s is \"%s\", expected \"%s\"", name, value, want);
    }
}

static void test_conf_pass_through(void **state)
{
    tc_cfg_kv_t items[] = {
        {"linger.ms", "7"},
        {"queue.buffering.max.messages", "5000"},
        {"client.id", "overridden"}, /* pass-through wins over what the caller gave */
    };
    tc_cfg_kvs_t extra = {items, N_ELEMS(items)};
    char err[512] = "";
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new("127.0.0.1:9092", "tocsin-test", &extra, err, sizeof(err));
    if (!conf) {
        fail_msg("conf: %s", err);
    }
    expect_conf(conf, "bootstrap.servers", "127.0.0.1:9092");
    expect_conf(conf, "client.id", "overridden");
    expect_conf(conf, "linger.ms", "7");
    expect_conf(conf, "queue.buffering.max.messages", "5000");

    /* Defaults: skipped when the pass-through list sets the name, set otherwise. */
    assert_int_equal(tc_kafka_conf_set_default(conf, &extra, "linger.ms", "100", err, sizeof(err)),
                     0);
    expect_conf(conf, "linger.ms", "7");
    assert_int_equal(
        tc_kafka_conf_set_default(conf, &extra, "message.timeout.ms", "600000", err, sizeof(err)),
        0);
    expect_conf(conf, "message.timeout.ms", "600000");
    assert_int_equal(
        tc_kafka_conf_set_default(conf, NULL, "enable.idempotence", "true", err, sizeof(err)), 0);
    expect_conf(conf, "enable.idempotence", "true");

    /* A refused default is TC_EINVAL with librdkafka's reason. */
    err[0] = '\0';
    assert_int_equal(
        tc_kafka_conf_set_default(conf, &extra, "no.such.setting", "1", err, sizeof(err)),
        TC_EINVAL);
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_int_equal(
        tc_kafka_conf_set_default(conf, &extra, "message.timeout.ms", "soon", err, sizeof(err)),
        TC_EINVAL);
    assert_true(strlen(err) > 0);
    rd_kafka_conf_destroy(conf);

    /* No pass-through list at all. */
    conf = tc_kafka_conf_new("h:1", "c", NULL, err, sizeof(err));
    assert_non_null(conf);
    expect_conf(conf, "client.id", "c");
    rd_kafka_conf_destroy(conf);
}

static void test_conf_errors(void **state)
{
    static const struct {
        tc_cfg_kv_t item;
        const char *mention;
    } cases[] = {
        {{"no.such.property", "1"}, "kafka.no.such.property"},
        {{"linger.ms", "abc"}, "kafka.linger.ms"},
        {{"linger.ms", "-5"}, "kafka.linger.ms"},
        {{"security.protocol", "carrier-pigeon"}, "kafka.security.protocol"},
        {{"enable.idempotence", "maybe"}, "kafka.enable.idempotence"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tc_cfg_kv_t items[] = {{"linger.ms", "5"}, cases[i].item};
        tc_cfg_kvs_t extra = {items, N_ELEMS(items)};
        char err[512] = "";
        rd_kafka_conf_t *conf =
            tc_kafka_conf_new("127.0.0.1:9092", "tocsin-test", &extra, err, sizeof(err));
        if (conf) {
            rd_kafka_conf_destroy(conf);
            fail_msg("%s=%s was accepted", cases[i].item.key, cases[i].item.value);
        }
        if (!strstr(err, cases[i].mention)) {
            fail_msg("error \"%s\" does not name %s", err, cases[i].mention);
        }
    }
}

/* ---- the logger ---- */

typedef struct {
    int rfd;
    int saved;
    pthread_t reader;
    pthread_mutex_t lock;
    char buf[1 << 16];
    size_t len;
    bool done;
} capture_t;

static void *capture_reader(void *arg)
{
    capture_t *c = arg;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(c->rfd, chunk, sizeof(chunk));
        if (n <= 0) {
            break;
        }
        pthread_mutex_lock(&c->lock);
        size_t room = sizeof(c->buf) - 1 - c->len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(c->buf + c->len, chunk, take);
        c->len += take;
        c->buf[c->len] = '\0';
        pthread_mutex_unlock(&c->lock);
    }
    return NULL;
}

/* A port on 127.0.0.1 that nothing listens on: bound, then closed. */
static uint16_t closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* librdkafka's own log lines (a refused connection here) come out as tc_log JSON lines. */
static void test_logger(void **state)
{
    capture_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    pthread_mutex_init(&c->lock, NULL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    c->rfd = p[0];
    assert_int_equal(pthread_create(&c->reader, NULL, capture_reader, c), 0);

    tc_log_init("kafkatest", TC_LOG_INFO);
    char bootstrap[64];
    snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%u", (unsigned)closed_port());
    char err[512];
    rd_kafka_conf_t *conf =
        tc_kafka_conf_new(bootstrap, "tocsin-logger-test", NULL, err, sizeof(err));
    bool found = false;
    if (conf) {
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
        if (rk) { /* rk owns conf now */
            int64_t deadline = tc_mono_us() + 20 * 1000000LL;
            while (!found && tc_mono_us() < deadline) {
                rd_kafka_poll(rk, 50);
                pthread_mutex_lock(&c->lock);
                found = strstr(c->buf, "\"event\":\"kafka.log\"") != NULL;
                pthread_mutex_unlock(&c->lock);
            }
            rd_kafka_destroy(rk);
        } else {
            rd_kafka_conf_destroy(conf);
        }
    }
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    pthread_join(c->reader, NULL);
    close(c->rfd);
    assert_true(found);

    /* Every captured line is a JSON object; the kafka ones name the client. */
    int kafka_lines = 0;
    for (char *line = strtok(c->buf, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t jerr;
        json_t *doc = json_loads(line, 0, &jerr);
        if (!doc) {
            fail_msg("not JSON: %s", line);
        }
        const char *event = json_string_value(json_object_get(doc, "event"));
        if (event && strcmp(event, "kafka.log") == 0) {
            kafka_lines++;
            assert_string_equal(json_string_value(json_object_get(doc, "daemon")), "kafkatest");
            const char *client = json_string_value(json_object_get(doc, "client"));
            assert_non_null(client);
            assert_non_null(strstr(client, "tocsin-logger-test"));
            assert_true(json_is_string(json_object_get(doc, "facility")));
            assert_true(json_is_string(json_object_get(doc, "msg")));
        }
        json_decref(doc);
    }
    assert_true(kafka_lines > 0);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bootstrap_given),
        cmocka_unit_test(test_bootstrap_file),
        cmocka_unit_test(test_bootstrap_timeout),
        cmocka_unit_test(test_bootstrap_late_file),
        cmocka_unit_test(test_conf_pass_through),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_logger),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
