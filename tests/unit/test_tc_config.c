/*
 * Unit tests for common/tc_config: the table, defaults, typed values, pass-through
 * prefixes, config files and the command line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc_config.h"
#include "tc_error.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    char *name;
    char *empty;
    int64_t workers;
    int64_t count;
    double ratio;
    bool verbose;
    bool enabled;
    int64_t timeout_ms;
    uint64_t max_body;
    char *kafka_topic;
    tc_cfg_kvs_t kafka;
} test_cfg_t;

static const tc_cfg_entry_t table[] = {
    {"name", TC_CFG_STRING, "tocsin", offsetof(test_cfg_t, name), "instance name", 0, 0},
    {"empty", TC_CFG_STRING, NULL, offsetof(test_cfg_t, empty), "no default", 0, 0},
    {"workers", TC_CFG_INT, "4", offsetof(test_cfg_t, workers), "worker threads", 1, 64},
    {"count", TC_CFG_INT, NULL, offsetof(test_cfg_t, count), "unbounded int", 0, 0},
    {"ratio", TC_CFG_DOUBLE, "0.25", offsetof(test_cfg_t, ratio), "a ratio", 0, 0},
    {"verbose", TC_CFG_BOOL, NULL, offsetof(test_cfg_t, verbose), "talk more", 0, 0},
    {"enabled", TC_CFG_BOOL, "yes", offsetof(test_cfg_t, enabled), "on or off", 0, 0},
    {"timeout", TC_CFG_DURATION, "10s", offsetof(test_cfg_t, timeout_ms), "a time-out", 0, 0},
    {"max_body", TC_CFG_SIZE, "1MiB", offsetof(test_cfg_t, max_body), "a size", 0, 0},
    {"kafka.topic", TC_CFG_STRING, "tocsin.events", offsetof(test_cfg_t, kafka_topic),
     "exact key under the kafka. prefix", 0, 0},
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, offsetof(test_cfg_t, kafka), "librdkafka settings", 0, 0},
    TC_CFG_END,
};

static void cfg_defaults(test_cfg_t *cfg)
{
    char err[256] = "";
    memset(cfg, 0, sizeof(*cfg));
    int rc = tc_config_defaults(table, cfg, err, sizeof(err));
    if (rc != 0) {
        fail_msg("defaults: %d %s", rc, err);
    }
}

/* Writes `text` to a new temporary file; the caller unlinks and frees the path. */
static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/tc_config_test.XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

typedef struct {
    int argc;
    char **argv;
    test_cfg_t *cfg;
    int rc;
    char *out; /* what the call printed on stdout */
} cli_call_t;

/* Runs fn(arg) with `fd` (1 or 2) sent to a temporary file; returns what was written
 * there (the caller frees). */
static char *capture_fd(int fd, void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/tc_config_out.XXXXXX";
    int tmp = mkstemp(path);
    assert_true(tmp >= 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(fd);
    assert_true(saved >= 0);
    assert_true(dup2(tmp, fd) >= 0);
    fn(arg);
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(saved, fd) >= 0);
    close(saved);
    off_t size = lseek(tmp, 0, SEEK_END);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(tmp, text, (size_t)size, 0), size);
    close(tmp);
    return text;
}

static void run_cli(void *arg)
{
    cli_call_t *c = arg;
    c->rc = tc_config_cli(table, c->cfg, c->argc, c->argv, "usage: test [options]\n");
}

static void run_cli_capturing_stdout(void *arg)
{
    cli_call_t *c = arg;
    c->out = capture_fd(1, run_cli, c);
}

/*
 * Calls tc_config_cli with a NULL-terminated argument list (argv[0] included) on a struct
 * filled with garbage first, and hands back stdout and stderr when asked (caller frees).
 */
static int cli(test_cfg_t *cfg, char **out, char **errout, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    while (args[argc]) {
        assert_true(argc < 31);
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    memset(cfg, 0xa5, sizeof(*cfg));
    cli_call_t call = {argc, argv, cfg, 0, NULL};
    char *e = capture_fd(2, run_cli_capturing_stdout, &call);
    if (out) {
        *out = call.out;
    } else {
        free(call.out);
    }
    if (errout) {
        *errout = e;
    } else {
        free(e);
    }
    return call.rc;
}

/* ---- defaults and single settings ---- */

static void test_defaults(void **state)
{
    test_cfg_t cfg;
    cfg_defaults(&cfg);
    assert_string_equal(cfg.name, "tocsin");
    assert_non_null(cfg.empty);
    assert_string_equal(cfg.empty, "");
    assert_int_equal(cfg.workers, 4);
    assert_int_equal(cfg.count, 0);
    assert_true(cfg.ratio == 0.25);
    assert_false(cfg.verbose);
    assert_true(cfg.enabled);
    assert_int_equal(cfg.timeout_ms, 10000);
    assert_int_equal(cfg.max_body, 1048576);
    assert_string_equal(cfg.kafka_topic, "tocsin.events");
    assert_int_equal(cfg.kafka.len, 0);
    assert_null(cfg.kafka.items);
    tc_config_free(table, &cfg);
    assert_null(cfg.name);
    tc_config_free(table, &cfg); /* twice is harmless */
}

typedef struct {
    const char *key;
    const char *value;
    int rc;
} set_case_t;

static void test_set_each_type(void **state)
{
    static const set_case_t cases[] = {
        {"name", "collector-1", 0},
        {"name", "", 0},
        {"name", "  spaced  ", 0},
        {"workers", "8", 0},
        {"workers", "1", 0},
        {"workers", "64", 0},
        {"workers", "0", TC_EINVAL},
        {"workers", "65", TC_EINVAL},
        {"workers", "-1", TC_EINVAL},
        {"workers", "x", TC_EINVAL},
        {"workers", "5x", TC_EINVAL},
        {"workers", "", TC_EINVAL},
        {"workers", "1.5", TC_EINVAL},
        {"count", "-9223372036854775808", 0},
        {"count", "9223372036854775807", 0},
        {"count", "9223372036854775808", TC_EINVAL},
        {"count", "-9223372036854775809", TC_EINVAL},
        {"count", "99999999999999999999999", TC_EINVAL},
        {"ratio", "0.5", 0},
        {"ratio", "1e-3", 0},
        {"ratio", "-2", 0},
        {"ratio", "nan", TC_EINVAL},
        {"ratio", "inf", TC_EINVAL},
        {"ratio", "-inf", TC_EINVAL},
        {"ratio", "1e999", TC_EINVAL},
        {"ratio", "1.5.2", TC_EINVAL},
        {"ratio", "", TC_EINVAL},
        {"ratio", "abc", TC_EINVAL},
        {"verbose", "true", 0},
        {"verbose", "yes", 0},
        {"verbose", "on", 0},
        {"verbose", "1", 0},
        {"verbose", "false", 0},
        {"verbose", "no", 0},
        {"verbose", "off", 0},
        {"verbose", "0", 0},
        {"verbose", "maybe", TC_EINVAL},
        {"verbose", "", TC_EINVAL},
        {"verbose", "2", TC_EINVAL},
        {"timeout", "250ms", 0},
        {"timeout", "1h30m", 0},
        {"timeout", "5x", TC_EINVAL},
        {"timeout", "-1s", TC_EINVAL},
        {"max_body", "64KiB", 0},
        {"max_body", "4096", 0},
        {"max_body", "1.5G", TC_EINVAL},
        {"max_body", "-1", TC_EINVAL},
        {"nope", "1", TC_EUNKNOWNKEY},
        {"", "1", TC_EUNKNOWNKEY},
        {"kafka.", "1", TC_EUNKNOWNKEY}, /* the bare prefix names nothing */
        {"kafka", "1", TC_EUNKNOWNKEY},
        {"Workers", "8", TC_EUNKNOWNKEY}, /* keys are case-sensitive */
        {"workers ", "8", TC_EUNKNOWNKEY},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        test_cfg_t cfg;
        cfg_defaults(&cfg);
        char err[256] = "";
        int rc = tc_config_set(table, &cfg, cases[i].key, cases[i].value, err, sizeof(err));
        if (rc != cases[i].rc) {
            fail_msg("%s=\"%s\": rc %d (%s), expected %d", cases[i].key, cases[i].value, rc, err,
                     cases[i].rc);
        }
        if (rc != 0) {
            /* The message names the key, so an operator knows which line to fix. */
            if (cases[i].key[0] && !strstr(err, cases[i].key)) {
                fail_msg("%s=\"%s\": error \"%s\" does not name the key", cases[i].key,
                         cases[i].value, err);
            }
        }
        tc_config_free(table, &cfg);
    }
}

static void test_set_values(void **state)
{
    test_cfg_t cfg;
    cfg_defaults(&cfg);
    char err[256];
    assert_int_equal(tc_config_set(table, &cfg, "name", "c-1", err, sizeof(err)), 0);
    assert_int_equal(tc_config_set(table, &cfg, "name", "c-2", err, sizeof(err)), 0);
    assert_string_equal(cfg.name, "c-2");
    assert_int_equal(tc_config_set(table, &cfg, "workers", "16", err, sizeof(err)), 0);
    assert_int_equal(cfg.workers, 16);
    assert_int_equal(tc_config_set(table, &cfg, "count", "-42", err, sizeof(err)), 0);
    assert_int_equal(cfg.count, -42);
    assert_int_equal(tc_config_set(table, &cfg, "ratio", "0.125", err, sizeof(err)), 0);
    assert_true(cfg.ratio == 0.125);
    assert_int_equal(tc_config_set(table, &cfg, "verbose", "on", err, sizeof(err)), 0);
    assert_true(cfg.verbose);
    assert_int_equal(tc_config_set(table, &cfg, "enabled", "off", err, sizeof(err)), 0);
    assert_false(cfg.enabled);
    assert_int_equal(tc_config_set(table, &cfg, "timeout", "1h30m", err, sizeof(err)), 0);
    assert_int_equal(cfg.timeout_ms, 5400000);
    assert_int_equal(tc_config_set(table, &cfg, "max_body", "64KiB", err, sizeof(err)), 0);
    assert_int_equal(cfg.max_body, 65536);

    /* A refused value leaves the old one in place. */
    assert_int_equal(tc_config_set(table, &cfg, "workers", "1000", err, sizeof(err)), TC_EINVAL);
    assert_int_equal(cfg.workers, 16);
    assert_non_null(strstr(err, "1..64"));
    assert_int_equal(tc_config_set(table, &cfg, "timeout", "soon", err, sizeof(err)), TC_EINVAL);
    assert_int_equal(cfg.timeout_ms, 5400000);
    assert_int_equal(tc_config_set(table, &cfg, "verbose", "perhaps", err, sizeof(err)), TC_EINVAL);
    assert_true(cfg.verbose);
    tc_config_free(table, &cfg);
}

static void test_passthrough(void **state)
{
    test_cfg_t cfg;
    cfg_defaults(&cfg);
    char err[256];
    assert_int_equal(tc_config_set(table, &cfg, "kafka.acks", "all", err, sizeof(err)), 0);
    assert_int_equal(tc_config_set(table, &cfg, "kafka.linger.ms", "5", err, sizeof(err)), 0);
    assert_int_equal(tc_config_set(table, &cfg, "kafka.acks", "1", err, sizeof(err)), 0);
    /* The exact key wins over the prefix. */
    assert_int_equal(tc_config_set(table, &cfg, "kafka.topic", "other", err, sizeof(err)), 0);
    assert_string_equal(cfg.kafka_topic, "other");

    assert_int_equal(cfg.kafka.len, 2);
    assert_string_equal(cfg.kafka.items[0].key, "acks"); /* in the order first set */
    assert_string_equal(cfg.kafka.items[0].value, "1");  /* with the last value */
    assert_string_equal(cfg.kafka.items[1].key, "linger.ms");
    assert_string_equal(cfg.kafka.items[1].value, "5");
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "acks"), "1");
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "linger.ms"), "5");
    assert_null(tc_cfg_kvs_get(&cfg.kafka, "topic"));
    assert_null(tc_cfg_kvs_get(&cfg.kafka, "kafka.acks"));
    tc_config_free(table, &cfg);
    assert_int_equal(cfg.kafka.len, 0);
    assert_null(cfg.kafka.items);

    /* Many keys: the list grows. */
    cfg_defaults(&cfg);
    for (int i = 0; i < 100; i++) {
        char key[32], value[32];
        snprintf(key, sizeof(key), "kafka.k%d", i);
        snprintf(value, sizeof(value), "v%d", i);
        assert_int_equal(tc_config_set(table, &cfg, key, value, err, sizeof(err)), 0);
    }
    assert_int_equal(cfg.kafka.len, 100);
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "k99"), "v99");
    tc_config_free(table, &cfg);
}

/* ---- files ---- */

static void test_file_parsing(void **state)
{
    char *path = write_temp("# a comment\n"
                            "\n"
                            "   \n"
                            "\t# an indented comment\n"
                            "name = collector-7\n"
                            "workers=12\n"
                            "  ratio   =   0.75  \n"
                            "verbose\t=\ttrue\n"
                            "empty = \"  keep spaces  \"\n"
                            "timeout = 1m30s\r\n"
                            "max_body = 2MiB\n"
                            "kafka.security.protocol = SASL_SSL\n"
                            "kafka.topic = \"tocsin.test\"\n"
                            "count = -5\n"
                            "kafka.sasl.password = a=b=c\n"
                            "kafka.client.rack = \"\"\n");
    test_cfg_t cfg;
    cfg_defaults(&cfg);
    char err[512] = "";
    int rc = tc_config_load_file(table, &cfg, path, err, sizeof(err));
    if (rc != 0) {
        fail_msg("load: %d %s", rc, err);
    }
    assert_string_equal(cfg.name, "collector-7");
    assert_int_equal(cfg.workers, 12);
    assert_true(cfg.ratio == 0.75);
    assert_true(cfg.verbose);
    assert_string_equal(cfg.empty, "  keep spaces  ");
    assert_int_equal(cfg.timeout_ms, 90000);
    assert_int_equal(cfg.max_body, 2 * 1048576);
    assert_string_equal(cfg.kafka_topic, "tocsin.test");
    assert_int_equal(cfg.count, -5);
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "security.protocol"), "SASL_SSL");
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "sasl.password"), "a=b=c");
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "client.rack"), "");
    tc_config_free(table, &cfg);
    remove_temp(path);

    /* A file without a final newline. */
    path = write_temp("workers = 3");
    cfg_defaults(&cfg);
    assert_int_equal(tc_config_load_file(table, &cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.workers, 3);
    tc_config_free(table, &cfg);
    remove_temp(path);

    /* An empty file changes nothing. */
    path = write_temp("");
    cfg_defaults(&cfg);
    assert_int_equal(tc_config_load_file(table, &cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg.workers, 4);
    tc_config_free(table, &cfg);
    remove_temp(path);
}

static void test_file_errors(void **state)
{
    static const struct {
        const char *text;
        int rc;
        int line;
        const char *mention;
    } cases[] = {
        {"workers = 2\n# ok\nthis line has no equals sign\n", TC_EPARSE, 3, "key = value"},
        {"workers = 2\nbogus = 1\n", TC_EUNKNOWNKEY, 2, "bogus"},
        {"\n\n\n\nworkers = 99\n", TC_EINVAL, 5, "workers"},
        {"timeout = forever\n", TC_EINVAL, 1, "timeout"},
        {"verbose = \n", TC_EINVAL, 1, "verbose"},
        {" = 5\n", TC_EUNKNOWNKEY, 1, NULL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char *path = write_temp(cases[i].text);
        test_cfg_t cfg;
        cfg_defaults(&cfg);
        char err[512] = "";
        int rc = tc_config_load_file(table, &cfg, path, err, sizeof(err));
        char where[600];
        snprintf(where, sizeof(where), "%s:%d:", path, cases[i].line);
        if (rc != cases[i].rc || strncmp(err, where, strlen(where)) != 0 ||
            (cases[i].mention && !strstr(err, cases[i].mention))) {
            fail_msg("case %zu: rc %d \"%s\", expected %d starting with \"%s\"", i, rc, err,
                     cases[i].rc, where);
        }
        tc_config_free(table, &cfg);
        remove_temp(path);
    }

    test_cfg_t cfg;
    cfg_defaults(&cfg);
    char err[512] = "";
    assert_int_equal(
        tc_config_load_file(table, &cfg, "/nonexistent/tc_config.conf", err, sizeof(err)), TC_EIO);
    assert_non_null(strstr(err, "/nonexistent/tc_config.conf"));
    tc_config_free(table, &cfg);
}

static char *line_of(size_t total, const char *prefix, const char *end)
{
    /* "prefix" + 'x' padding so the line (without `end`) is `total` bytes long. */
    size_t plen = strlen(prefix), elen = strlen(end);
    assert_true(total >= plen);
    char *s = malloc(total + elen + 1);
    assert_non_null(s);
    memcpy(s, prefix, plen);
    memset(s + plen, 'x', total - plen);
    memcpy(s + total, end, elen + 1);
    return s;
}

static void test_file_line_length(void **state)
{
    static const struct {
        size_t len;      /* bytes on the line, newline excluded */
        const char *end; /* what follows */
        int rc;
    } cases[] = {
        {TC_CFG_LINE_MAX - 1, "\n", 0},
        {TC_CFG_LINE_MAX, "\n", 0},
        {TC_CFG_LINE_MAX, "", 0},
        {TC_CFG_LINE_MAX, "\nworkers = 5\n", 0},
        {TC_CFG_LINE_MAX + 1, "\n", TC_ETOOBIG},
        {TC_CFG_LINE_MAX + 1, "", TC_ETOOBIG},
        {TC_CFG_LINE_MAX * 3, "\n", TC_ETOOBIG},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char *text = line_of(cases[i].len, "name = ", cases[i].end);
        char *path = write_temp(text);
        test_cfg_t cfg;
        cfg_defaults(&cfg);
        char err[512] = "";
        int rc = tc_config_load_file(table, &cfg, path, err, sizeof(err));
        if (rc != cases[i].rc) {
            fail_msg("line of %zu bytes + \"%s\": rc %d (%s), expected %d", cases[i].len,
                     cases[i].end[0] == '\n' ? "\\n..." : "", rc, err, cases[i].rc);
        }
        if (rc == 0) {
            assert_int_equal(strlen(cfg.name), cases[i].len - strlen("name = "));
        } else {
            char where[600];
            snprintf(where, sizeof(where), "%s:1:", path);
            assert_non_null(strstr(err, where));
        }
        tc_config_free(table, &cfg);
        remove_temp(path);
        free(text);
    }
}

/* ---- command line ---- */

static char *conf_file;

static int setup_conf_file(void **state)
{
    conf_file = write_temp("workers = 3\nname = from-file\nkafka.acks = all\n");
    return 0;
}

static int teardown_conf_file(void **state)
{
    remove_temp(conf_file);
    conf_file = NULL;
    return 0;
}

static void test_cli_set_wins_over_file(void **state)
{
    /* --set wins over the file wherever it stands on the line. */
    const char *orders[][8] = {
        {"prog", "--config", conf_file, "--set", "workers=9", NULL},
        {"prog", "--set", "workers=9", "--config", conf_file, NULL},
        {"prog", "--set", "workers=9", "-c", conf_file, NULL},
        {"prog", "-c", conf_file, "--set", "workers=2", "--set", "workers=9", NULL},
    };
    for (size_t i = 0; i < N_ELEMS(orders); i++) {
        test_cfg_t cfg;
        char *err = NULL;
        int rc = cli(&cfg, NULL, &err, orders[i]);
        if (rc != 0) {
            fail_msg("order %zu: rc %d, stderr %s", i, rc, err);
        }
        assert_int_equal(cfg.workers, 9);
        assert_string_equal(cfg.name, "from-file");
        assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "acks"), "all");
        tc_config_free(table, &cfg);
        free(err);
    }

    /* Without any option: the defaults. */
    const char *none[] = {"prog", NULL};
    test_cfg_t cfg;
    assert_int_equal(cli(&cfg, NULL, NULL, none), 0);
    assert_int_equal(cfg.workers, 4);
    tc_config_free(table, &cfg);

    /* --set for pass-through and exact keys, values with '='. */
    const char *sets[] = {
        "prog",  "--set", "kafka.sasl.password=x=y", "--set", "kafka.topic=t", "--set",
        "name=", NULL};
    assert_int_equal(cli(&cfg, NULL, NULL, sets), 0);
    assert_string_equal(tc_cfg_kvs_get(&cfg.kafka, "sasl.password"), "x=y");
    assert_string_equal(cfg.kafka_topic, "t");
    assert_string_equal(cfg.name, "");
    tc_config_free(table, &cfg);
}

static void test_cli_help_and_version(void **state)
{
    static const struct {
        const char *arg;
        const char *expect; /* on stdout */
    } cases[] = {
        {"--help-config", "kafka.topic"},
        {"--version", TOCSIN_VERSION},
        {"--help", "usage: test"},
        {"-h", "--set KEY=VALUE"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const char *args[] = {"prog", "--set", "workers=9", cases[i].arg, NULL};
        test_cfg_t cfg;
        char *out = NULL;
        int rc = cli(&cfg, &out, NULL, args);
        assert_int_equal(rc, 1);
        if (!strstr(out, cases[i].expect)) {
            fail_msg("%s printed \"%s\"", cases[i].arg, out);
        }
        free(out);
        /* The config was freed by the call (ASan checks no string leaked). */
        assert_null(cfg.name);
    }

    /* --help-config lists every key with its type and default. */
    const char *args[] = {"prog", "--help-config", NULL};
    test_cfg_t cfg;
    char *out = NULL;
    assert_int_equal(cli(&cfg, &out, NULL, args), 1);
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        char *line = strstr(out, e->key);
        if (!line) {
            fail_msg("--help-config misses %s:\n%s", e->key, out);
        }
        if (e->help && !strstr(out, e->help)) {
            fail_msg("--help-config misses the help of %s", e->key);
        }
    }
    assert_non_null(strstr(out, "duration"));
    assert_non_null(strstr(out, "kafka.*"));
    free(out);
}

static void test_cli_errors(void **state)
{
    static const struct {
        const char *args[8];
        int rc; /* 0: any negative code */
        const char *mention;
    } cases[] = {
        {{"prog", "--bogus", NULL}, 0, "--bogus"},
        {{"prog", "positional", NULL}, 0, "positional"},
        {{"prog", "--config", NULL}, 0, "--config"},
        {{"prog", "-c", NULL}, 0, "-c"},
        {{"prog", "--set", NULL}, 0, "--set"},
        {{"prog", "--set", "workers", NULL}, TC_EINVAL, "workers"},
        {{"prog", "--set", "=5", NULL}, TC_EINVAL, "=5"},
        {{"prog", "--set", "nope=1", NULL}, TC_EUNKNOWNKEY, "nope"},
        {{"prog", "--set", "workers=0", NULL}, TC_EINVAL, "workers"},
        {{"prog", "--set", "name=x", "--set", "workers=abc", NULL}, TC_EINVAL, "workers"},
        {{"prog", "--config", "/nonexistent/x.conf", NULL}, TC_EIO, "/nonexistent/x.conf"},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        test_cfg_t cfg;
        char *err = NULL;
        int rc = cli(&cfg, NULL, &err, cases[i].args);
        if (rc >= 0 || (cases[i].rc && rc != cases[i].rc)) {
            fail_msg("case %zu (%s): rc %d, expected %d", i, cases[i].args[1], rc, cases[i].rc);
        }
        if (!strstr(err, cases[i].mention)) {
            fail_msg("case %zu: stderr \"%s\" does not mention \"%s\"", i, err, cases[i].mention);
        }
        free(err);
        assert_null(cfg.name); /* freed on the error path */
    }

    /* A long key in --set is refused, not truncated. */
    char longkv[600];
    memset(longkv, 'k', 500);
    strcpy(longkv + 500, "=1");
    const char *args[] = {"prog", "--set", longkv, NULL};
    test_cfg_t cfg;
    int rc = cli(&cfg, NULL, NULL, args);
    assert_true(rc < 0);
}

static void test_cli_print_config(void **state)
{
    const char *args[] = {"prog",  "-c",          conf_file,        "--set", "ratio=0.1",
                          "--set", "timeout=90s", "--print-config", NULL};
    test_cfg_t cfg;
    char *out = NULL;
    assert_int_equal(cli(&cfg, &out, NULL, args), 1);
    assert_non_null(strstr(out, "workers = 3\n"));
    assert_non_null(strstr(out, "name = \"from-file\"\n"));
    assert_non_null(strstr(out, "timeout = 90s\n"));
    assert_non_null(strstr(out, "kafka.acks = \"all\"\n"));
    assert_non_null(strstr(out, "ratio = 0.1\n"));
    free(out);
    assert_null(cfg.name);
}

/* What --print-config prints is a config file that gives back the same settings. */
static void test_print_round_trip(void **state)
{
    test_cfg_t a;
    cfg_defaults(&a);
    char err[512];
    static const char *sets[][2] = {
        {"name", "  a \"quoted\" name with spaces "},
        {"empty", ""},
        {"workers", "33"},
        {"count", "-9223372036854775808"},
        {"ratio", "0.123456789012345678"},
        {"verbose", "true"},
        {"enabled", "false"},
        {"timeout", "1500ms"},
        {"max_body", "3GiB"},
        {"kafka.topic", "x.y"},
        {"kafka.bootstrap.servers", "127.0.0.1:9092"},
        {"kafka.sasl.password", " p=w "},
    };
    for (size_t i = 0; i < N_ELEMS(sets); i++) {
        assert_int_equal(tc_config_set(table, &a, sets[i][0], sets[i][1], err, sizeof(err)), 0);
    }
    static const double ratios[] = {0.1, 1.0 / 3.0, 2.5e-300, 1e300, -0.0, 123456789.125};
    for (size_t r = 0; r < N_ELEMS(ratios); r++) {
        a.ratio = ratios[r];
        char path[] = "/tmp/tc_config_print.XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        FILE *f = fdopen(fd, "w");
        assert_non_null(f);
        tc_config_print(table, &a, f);
        assert_int_equal(fclose(f), 0);

        test_cfg_t b;
        cfg_defaults(&b);
        int rc = tc_config_load_file(table, &b, path, err, sizeof(err));
        if (rc != 0) {
            fail_msg("reloading printed config: %d %s", rc, err);
        }
        unlink(path);
        assert_string_equal(a.name, b.name);
        assert_string_equal(a.empty, b.empty);
        assert_int_equal(a.workers, b.workers);
        assert_true(a.count == b.count);
        if (memcmp(&a.ratio, &b.ratio, sizeof(double)) != 0) {
            fail_msg("ratio %.17g printed and read back as %.17g", a.ratio, b.ratio);
        }
        assert_int_equal(a.verbose, b.verbose);
        assert_int_equal(a.enabled, b.enabled);
        assert_int_equal(a.timeout_ms, b.timeout_ms);
        assert_true(a.max_body == b.max_body);
        assert_string_equal(a.kafka_topic, b.kafka_topic);
        assert_int_equal(a.kafka.len, b.kafka.len);
        for (size_t i = 0; i < a.kafka.len; i++) {
            assert_string_equal(a.kafka.items[i].key, b.kafka.items[i].key);
            assert_string_equal(a.kafka.items[i].value, b.kafka.items[i].value);
        }
        tc_config_free(table, &b);
    }
    tc_config_free(table, &a);
}

/* A default that does not parse is reported, and nothing allocated before it leaks. */
typedef struct {
    char *first;
    int64_t bad;
    char *last;
} bad_cfg_t;

static const tc_cfg_entry_t bad_table[] = {
    {"first", TC_CFG_STRING, "allocated", offsetof(bad_cfg_t, first), "", 0, 0},
    {"bad", TC_CFG_INT, "not-a-number", offsetof(bad_cfg_t, bad), "", 0, 0},
    {"last", TC_CFG_STRING, "never", offsetof(bad_cfg_t, last), "", 0, 0},
    TC_CFG_END,
};

static void run_bad_cli(void *arg)
{
    bad_cfg_t *cfg = arg;
    char *argv[] = {"prog", NULL};
    int rc = tc_config_cli(bad_table, cfg, 1, argv, "usage\n");
    assert_int_equal(rc, TC_EINVAL);
}

static void test_bad_default(void **state)
{
    bad_cfg_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    char err[256] = "";
    assert_int_equal(tc_config_defaults(bad_table, &cfg, err, sizeof(err)), TC_EINVAL);
    assert_non_null(strstr(err, "bad"));
    tc_config_free(bad_table, &cfg);

    /* The same through the command line, with garbage in the struct beforehand: the call
     * must neither free the garbage nor leak "allocated". */
    memset(&cfg, 0xa5, sizeof(cfg));
    char *e = capture_fd(2, run_bad_cli, &cfg);
    assert_non_null(strstr(e, "bad"));
    free(e);
    assert_null(cfg.first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_each_type),
        cmocka_unit_test(test_set_values),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_file_parsing),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_line_length),
        cmocka_unit_test(test_cli_set_wins_over_file),
        cmocka_unit_test(test_cli_help_and_version),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_cli_print_config),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_bad_default),
    };
    return cmocka_run_group_tests(tests, setup_conf_file, teardown_conf_file);
}
