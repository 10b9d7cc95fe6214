/*
 * Unit tests for tools/ctl/ctl_args: the command line, the environment and the config file
 * (with their precedence), endpoint normalisation, and the usage errors that exit 2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_args.h"
#include "tc_error.h"

/* ---- a fake environment ---- */

static const char *env_names[8];
static const char *env_values[8];
static size_t env_n;

static void env_clear(void)
{
    env_n = 0;
}

static void env_set(const char *name, const char *value)
{
    env_names[env_n] = name;
    env_values[env_n++] = value;
}

static const char *fake_getenv(const char *name)
{
    for (size_t i = 0; i < env_n; i++) {
        if (strcmp(env_names[i], name) == 0) {
            return env_values[i];
        }
    }
    return NULL;
}

/* Parses a NULL-terminated argument list (argv[0] added). */
static int parse_v(ctl_args_t *a, char *err, size_t errlen, const char *default_config,
                   const char *first, va_list ap)
{
    static char *argv[64];
    static char storage[64][256];
    int argc = 0;
    argv[argc++] = strcpy(storage[0], "tocsinctl");
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        argv[argc] = strcpy(storage[argc], s);
        argc++;
    }
    argv[argc] = NULL;
    return ctl_args_parse(a, argc, argv, fake_getenv, default_config, err, errlen);
}

static int parse(ctl_args_t *a, char *err, size_t errlen, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = parse_v(a, err, errlen, NULL, first, ap);
    va_end(ap);
    return rc;
}

static int parse_cfg(ctl_args_t *a, char *err, size_t errlen, const char *default_config,
                     const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = parse_v(a, err, errlen, default_config, first, ap);
    va_end(ap);
    return rc;
}

static void test_defaults_are_local_mode(void **state)
{
    (void)state;
    env_clear();
    ctl_args_t a;
    char err[512];
    assert_int_equal(parse(&a, err, sizeof(err), "status", NULL), 0);
    assert_string_equal(a.command, "status");
    assert_int_equal(a.collectors.len, 1);
    assert_string_equal(a.collectors.items[0], "http://127.0.0.1:7421");
    assert_string_equal(a.aggregators.items[0], "http://127.0.0.1:7430");
    assert_string_equal(a.alerters.items[0], "http://127.0.0.1:7440");
    assert_null(a.token);
    assert_int_equal(a.timeout_ms, 5000);
    assert_false(a.json);
    ctl_args_fini(&a);
    ctl_args_fini(&a); /* twice is safe */
}

typedef struct {
    const char *in;
    uint16_t port;
    const char *out; /* NULL: an error */
} ep_case_t;

static void test_endpoint_normalisation(void **state)
{
    (void)state;
    static const ep_case_t cases[] = {
        {"agg-1", 7430, "http://agg-1:7430"},
        {"agg-1:9000", 7430, "http://agg-1:9000"},
        {"http://agg-1:9000/", 7430, "http://agg-1:9000"},
        {"https://tocsin.example.org/api", 7430, "https://tocsin.example.org/api"},
        {"http://agg-1", 7430, "http://agg-1"}, /* scheme given: its own default port */
        {"[::1]:7430", 7430, "http://[::1]:7430"},
        {"[::1]", 7421, "http://[::1]:7421"},
        {"10.0.0.5", 7440, "http://10.0.0.5:7440"},
        {"tcp://collector:7420", 7421, NULL}, /* the ZeroMQ address, not HTTP */
        {"ftp://x", 7430, NULL},
        {"host:0", 7430, NULL},
        {"host:65536", 7430, NULL},
        {"host:12a", 7430, NULL},
        {"host:", 7430, NULL},
        {"http://", 7430, NULL},
        {"[::1", 7430, NULL},
        {"[::1]x", 7430, NULL},
        {"", 7430, NULL},
        {" , ", 7430, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ctl_endpoints_t eps = {0};
        char err[512] = "";
        int rc = ctl_endpoints_parse(cases[i].in, cases[i].port, &eps, err, sizeof(err));
        if (cases[i].out) {
            if (rc != 0 || eps.len != 1 || strcmp(eps.items[0], cases[i].out) != 0) {
                fail_msg("case %zu \"%s\": rc %d, got %s (%s)", i, cases[i].in, rc,
                         eps.len ? eps.items[0] : "nothing", err);
            }
        } else if (rc != TC_EINVAL || !err[0]) {
            fail_msg("case %zu \"%s\": expected an error, rc %d", i, cases[i].in, rc);
        }
        ctl_endpoints_clear(&eps);
    }
    /* A list, with blanks and commas. */
    ctl_endpoints_t eps = {0};
    char err[256];
    assert_int_equal(ctl_endpoints_parse("a, b:1 ,c", 7421, &eps, err, sizeof(err)), 0);
    assert_int_equal(eps.len, 3);
    assert_string_equal(eps.items[1], "http://b:1");
    assert_string_equal(eps.items[2], "http://c:7421");
    ctl_endpoints_clear(&eps);
    /* The ZeroMQ address gets a message that says what to use instead. */
    assert_int_equal(ctl_endpoints_parse("tcp://c:7420", 7421, &eps, err, sizeof(err)), TC_EINVAL);
    assert_non_null(strstr(err, "7421"));
}

static void test_precedence_file_env_flags(void **state)
{
    (void)state;
    char path[] = "/tmp/tocsinctl-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *conf = "# the fleet\n"
                       "collectors = c1:7421, c2:7421\n"
                       "aggregators = file-agg\n"
                       "alerters = file-alerter\n"
                       "token = file-token\n"
                       "timeout = 2s\n";
    assert_int_equal(write(fd, conf, strlen(conf)), (ssize_t)strlen(conf));
    close(fd);
    ctl_args_t a;
    char err[512];

    /* The file alone. */
    env_clear();
    assert_int_equal(parse(&a, err, sizeof(err), "--config", path, "status", NULL), 0);
    assert_int_equal(a.collectors.len, 2);
    assert_string_equal(a.collectors.items[1], "http://c2:7421");
    assert_string_equal(a.aggregators.items[0], "http://file-agg:7430");
    assert_string_equal(a.alerters.items[0], "http://file-alerter:7440");
    assert_string_equal(a.token, "file-token");
    assert_int_equal(a.timeout_ms, 2000);
    assert_string_equal(a.config_path, path);
    ctl_args_fini(&a);

    /* The environment beats the file; TOCSINCTL_CONFIG names it. */
    env_set("TOCSINCTL_CONFIG", path);
    env_set("TOCSIN_AGGREGATOR", "env-agg:1");
    env_set("TOCSIN_TOKEN", "env-token");
    env_set("TOCSIN_TIMEOUT", "750ms");
    assert_int_equal(parse(&a, err, sizeof(err), "status", NULL), 0);
    assert_string_equal(a.aggregators.items[0], "http://env-agg:1");
    assert_string_equal(a.collectors.items[0], "http://c1:7421"); /* still the file's */
    assert_string_equal(a.token, "env-token");
    assert_int_equal(a.timeout_ms, 750);
    ctl_args_fini(&a);

    /* Flags beat both, before or after the command. */
    assert_int_equal(parse(&a, err, sizeof(err), "status", "--aggregator", "flag-agg", "--token",
                           "flag-token", "--timeout", "3s", "--alerter", "https://al/", NULL),
                     0);
    assert_string_equal(a.aggregators.items[0], "http://flag-agg:7430");
    assert_string_equal(a.alerters.items[0], "https://al");
    assert_string_equal(a.token, "flag-token");
    assert_int_equal(a.timeout_ms, 3000);
    ctl_args_fini(&a);

    /* TOCSIN_AGGREGATORS is read when TOCSIN_AGGREGATOR is not set. */
    env_clear();
    env_set("TOCSIN_AGGREGATORS", "a1,a2");
    assert_int_equal(parse(&a, err, sizeof(err), "status", NULL), 0);
    assert_int_equal(a.aggregators.len, 2);
    ctl_args_fini(&a);

    /* A default config file is read when it exists, ignored when it does not. */
    env_clear();
    assert_int_equal(parse_cfg(&a, err, sizeof(err), path, "status", NULL), 0);
    assert_string_equal(a.token, "file-token");
    ctl_args_fini(&a);
    assert_int_equal(parse_cfg(&a, err, sizeof(err), "/nonexistent/tocsinctl.conf", "status", NULL),
                     0);
    assert_null(a.config_path);
    ctl_args_fini(&a);
    unlink(path);

    /* A named file that does not exist is an error. */
    assert_int_equal(parse(&a, err, sizeof(err), "--config", path, "status", NULL), TC_EINVAL);
    ctl_args_fini(&a);
}

static void test_bad_config_files(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "colectors = x\n", /* unknown key, with its line */
        "aggregators = tcp://a:1\n",
        "timeout = soon\n",
    };
    env_clear();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[] = "/tmp/tocsinctl-bad-XXXXXX";
        int fd = mkstemp(path);
        assert_int_equal(write(fd, bad[i], strlen(bad[i])), (ssize_t)strlen(bad[i]));
        close(fd);
        ctl_args_t a;
        char err[512] = "";
        assert_int_equal(parse(&a, err, sizeof(err), "--config", path, "status", NULL), TC_EINVAL);
        assert_non_null(strstr(err, path));
        ctl_args_fini(&a);
        unlink(path);
    }
}

static void test_command_words_and_options(void **state)
{
    (void)state;
    env_clear();
    ctl_args_t a;
    char err[512];
    assert_int_equal(parse(&a, err, sizeof(err), "query", "checkout", "/api/pay", "--window", "1h",
                           "--env", "prod", "--q", "0.5,0.99", "--json", NULL),
                     0);
    assert_string_equal(a.command, "query");
    assert_int_equal(a.nwords, 2);
    assert_string_equal(a.words[0], "checkout");
    assert_string_equal(a.words[1], "/api/pay");
    assert_string_equal(a.window, "1h");
    assert_string_equal(a.env, "prod");
    assert_string_equal(a.q, "0.5,0.99");
    assert_true(a.json);
    assert_true(a.seen & CTL_OPT_WINDOW);
    ctl_args_fini(&a);

    assert_int_equal(parse(&a, err, sizeof(err), "-s", "api", "logs", "-f", "--interval", "250ms",
                           "-l", "50", NULL),
                     0);
    assert_string_equal(a.service, "api");
    assert_true(a.follow);
    assert_int_equal(a.interval_ms, 250);
    assert_int_equal(a.limit, 50);
    ctl_args_fini(&a);

    assert_int_equal(parse(&a, err, sizeof(err), "silence", "add", "service=shop",
                           "severity=~warning|info", "--for", "2h", "-m", "deploy", NULL),
                     0);
    assert_int_equal(a.nwords, 3);
    assert_string_equal(a.words[2], "severity=~warning|info");
    assert_string_equal(a.for_, "2h");
    assert_string_equal(a.comment, "deploy");
    ctl_args_fini(&a);
}

typedef struct {
    const char *argv[8];
    const char *err_has; /* a piece of the message */
} usage_case_t;

static void test_usage_errors(void **state)
{
    (void)state;
    static const usage_case_t cases[] = {
        {{"frobnicate", NULL}, "unknown command"},
        {{"status", "--window", "5m", NULL}, "does not take --window"},
        {{"query", NULL}, "query takes"},
        {{"query", "a", "b", "c", NULL}, "query takes"},
        {{"issue", NULL}, "issue takes"},
        {{"status", "--bogus", NULL}, "unknown option"},
        {{"status", "-z", NULL}, "unknown option -z"},
        {{"status", "--timeout", NULL}, "needs a value"},
        {{"status", "--timeout", "soon", NULL}, "timeout"},
        {{"status", "--timeout", "11m", NULL}, "timeout"},
        {{"top", "--limit", "0", NULL}, "--limit"},
        {{"top", "--limit", "ten", NULL}, "--limit"},
        {{"logs", "--interval", "1ms", NULL}, "--interval"},
        {{"status", "--width", "-3", NULL}, "--width"},
        {{"status", "--collectors", "tcp://c:7420", NULL}, "7421"},
        {{"alerts", "--for", "1h", NULL}, "does not take --for"},
        {{"keygen", NULL}, "keygen takes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        env_clear();
        char *argv[10];
        int argc = 0;
        argv[argc++] = "tocsinctl";
        for (size_t k = 0; cases[i].argv[k]; k++) {
            argv[argc++] = (char *)cases[i].argv[k];
        }
        argv[argc] = NULL;
        /* getopt may permute argv; give it a copy of the pointers. */
        ctl_args_t a;
        char err[512] = "";
        int rc = ctl_args_parse(&a, argc, argv, fake_getenv, NULL, err, sizeof(err));
        if (rc != TC_EINVAL || !strstr(err, cases[i].err_has)) {
            fail_msg("case %zu (%s ...): rc %d, message \"%s\"", i, cases[i].argv[0], rc, err);
        }
        ctl_args_fini(&a);
    }
    /* A bad environment value is a usage error too, naming the variable. */
    env_clear();
    env_set("TOCSIN_COLLECTORS", "ftp://x");
    ctl_args_t a;
    char err[512];
    assert_int_equal(parse(&a, err, sizeof(err), "status", NULL), TC_EINVAL);
    assert_non_null(strstr(err, "TOCSIN_COLLECTORS"));
    ctl_args_fini(&a);
}

static void test_help_and_version(void **state)
{
    (void)state;
    env_clear();
    ctl_args_t a;
    char err[512];
    assert_int_equal(parse(&a, err, sizeof(err), NULL), CTL_ARGS_HELP);
    assert_null(a.command);
    ctl_args_fini(&a);
    assert_int_equal(parse(&a, err, sizeof(err), "--help", NULL), CTL_ARGS_HELP);
    ctl_args_fini(&a);
    assert_int_equal(parse(&a, err, sizeof(err), "help", "ack", NULL), CTL_ARGS_HELP);
    assert_string_equal(a.command, "ack");
    assert_non_null(strstr(ctl_args_usage(a.command), "tocsinctl ack ALERT"));
    ctl_args_fini(&a);
    assert_int_equal(parse(&a, err, sizeof(err), "top", "--help", NULL), CTL_ARGS_HELP);
    assert_non_null(strstr(ctl_args_usage(a.command), "busiest"));
    ctl_args_fini(&a);
    assert_int_equal(parse(&a, err, sizeof(err), "--version", NULL), CTL_ARGS_VERSION);
    ctl_args_fini(&a);
    /* The general text documents the exit codes. */
    assert_non_null(strstr(ctl_args_usage(NULL), "3 a daemon is unreachable"));
    assert_non_null(strstr(ctl_args_usage("nonsense"), "Exit codes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_local_mode),
        cmocka_unit_test(test_endpoint_normalisation),
        cmocka_unit_test(test_precedence_file_env_flags),
        cmocka_unit_test(test_bad_config_files),
        cmocka_unit_test(test_command_words_and_options),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_and_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
