/*
 * ctl_args.h — tocsinctl's command line, environment and config file.
 *
 *   tocsinctl [GLOBAL OPTIONS] COMMAND [WORDS] [OPTIONS]
 *
 * Where the daemons are comes from, lowest to highest precedence: the built-in local-mode
 * addresses (collector 127.0.0.1:7421, aggregator 127.0.0.1:7430, alerter
 * 127.0.0.1:7440), a config file, the environment (TOCSIN_COLLECTORS, TOCSIN_AGGREGATOR or
 * TOCSIN_AGGREGATORS, TOCSIN_ALERTER, TOCSIN_BROKERS, TOCSIN_TOKEN, TOCSIN_TIMEOUT), then
 * the flags (--collectors, --aggregator, --alerter, --brokers, --token, --timeout). The
 * config file is --config FILE, else $TOCSINCTL_CONFIG, else the first of
 * ~/.config/tocsin/tocsinctl.conf and /etc/tocsin/tocsinctl.conf that exists; it holds
 * `key = value` lines (tc_config) with the keys collectors, aggregators, alerters, brokers,
 * token, timeout and kafka.* (librdkafka settings for reading consumer lag: TLS, SASL).
 *
 * Endpoints are the daemons' HTTP addresses: "host", "host:port", "http://host:port" or
 * "https://host/prefix", as a comma-separated list. A bare host gets the daemon's default
 * port; a missing scheme is http://. They are stored normalised ("http://host:port", no
 * trailing slash).
 *
 * Every failure here is a usage error: exit code CTL_EXIT_USAGE.
 */
#ifndef CTL_ARGS_H
#define CTL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tc_config.h"

/* Exit codes of tocsinctl; docs/operations.md lists them for scripts. */
typedef enum {
    CTL_EXIT_OK = 0,          /* done; for status: every daemon answered ready */
    CTL_EXIT_PROBLEM = 1,     /* a check found a problem: a daemon not ready, rules invalid */
    CTL_EXIT_USAGE = 2,       /* bad arguments, environment or config file */
    CTL_EXIT_UNREACHABLE = 3, /* a daemon could not be reached (refused, DNS, time-out) */
    CTL_EXIT_UNSUPPORTED = 4, /* the daemon does not serve the endpoint the command needs */
    CTL_EXIT_ERROR = 5,       /* the daemon answered an error or something unreadable */
    CTL_EXIT_NOTFOUND = 6,    /* the issue, alert or silence asked for does not exist */
    CTL_EXIT_AUTH = 7,        /* the daemon refused the token (401/403) */
} ctl_exit_t;

#define CTL_MAX_ENDPOINTS 64
#define CTL_MAX_ENDPOINT_LEN 512
#define CTL_MAX_WORDS 32

#define CTL_PORT_COLLECTOR 7421
#define CTL_PORT_AGGREGATOR 7430
#define CTL_PORT_ALERTER 7440

typedef struct {
    char *items[CTL_MAX_ENDPOINTS];
    size_t len;
} ctl_endpoints_t;

/* Options that commands take; a command refuses options outside its set. */
typedef enum {
    CTL_OPT_SERVICE = 1u << 0,
    CTL_OPT_NAME = 1u << 1,
    CTL_OPT_ENV = 1u << 2,
    CTL_OPT_WINDOW = 1u << 3,
    CTL_OPT_Q = 1u << 4,
    CTL_OPT_BY = 1u << 5,
    CTL_OPT_LIMIT = 1u << 6,
    CTL_OPT_LEVEL = 1u << 7,
    CTL_OPT_SINCE = 1u << 8,
    CTL_OPT_UNTIL = 1u << 9,
    CTL_OPT_GREP = 1u << 10,
    CTL_OPT_STATUS = 1u << 11,
    CTL_OPT_SORT = 1u << 12,
    CTL_OPT_FOLLOW = 1u << 13,
    CTL_OPT_FOR = 1u << 14,
    CTL_OPT_COMMENT = 1u << 15,
    CTL_OPT_STATE = 1u << 16,
    CTL_OPT_ALL = 1u << 17,
    CTL_OPT_DIR = 1u << 18,
    CTL_OPT_STEP = 1u << 19,
    CTL_OPT_KIND = 1u << 20,
    CTL_OPT_INTERVAL = 1u << 21,
    CTL_OPT_LIVE = 1u << 22,
    CTL_OPT_AUTHOR = 1u << 23,
    CTL_OPT_FORCE = 1u << 24,
} ctl_opt_t;

typedef struct {
    /* global */
    ctl_endpoints_t collectors, aggregators, alerters;
    char *brokers;      /* Kafka bootstrap list for consumer lag; NULL when none */
    tc_cfg_kvs_t kafka; /* librdkafka settings from the config file's kafka.* keys */
    char *token;        /* NULL when none */
    int64_t timeout_ms; /* per HTTP request; default 5s */
    bool json;
    long width;        /* terminal width for tables; 0: detect */
    char *config_path; /* the config file that was read, NULL when none */

    /* the command */
    const char *command;
    const char *words[CTL_MAX_WORDS];
    size_t nwords;
    unsigned int seen; /* ctl_opt_t bits given */

    /* command options (borrowed from argv; NULL when not given) */
    const char *service, *name, *env, *window, *q, *by, *level, *since, *until, *grep;
    const char *status, *sort, *for_, *comment, *state, *dir, *step, *kind, *author;
    long limit; /* 0 when not given */
    int64_t interval_ms;
    bool follow, all, force, live;
} ctl_args_t;

/* Looks up an environment variable; getenv, or a table in tests. */
typedef const char *(*ctl_getenv_fn)(const char *name);

/* Results of ctl_args_parse besides 0. */
#define CTL_ARGS_HELP 1    /* --help or `help`: print ctl_args_usage(command) and exit 0 */
#define CTL_ARGS_VERSION 2 /* --version: print the version and exit 0 */

/*
 * Parses argv (argv[0] is the program). `default_config` is the config file to read when
 * neither --config nor $TOCSINCTL_CONFIG names one (NULL: none); a default file that does
 * not exist is not an error, a named one is. Returns 0, CTL_ARGS_HELP, CTL_ARGS_VERSION,
 * or TC_EINVAL with a message in `err` (exit CTL_EXIT_USAGE). Either way free `a` with
 * ctl_args_fini. argv must outlive `a`.
 */
int ctl_args_parse(ctl_args_t *a, int argc, char **argv, ctl_getenv_fn env,
                   const char *default_config, char *err, size_t errlen);

/* Frees what ctl_args_parse allocated. Safe to call twice. */
void ctl_args_fini(ctl_args_t *a);

/*
 * Parses a comma- or blank-separated list of endpoints into `out` (appending), each
 * normalised; `default_port` is used for a bare host. Returns 0 or TC_EINVAL with `err`
 * naming the bad entry (empty list, more than CTL_MAX_ENDPOINTS, a ZeroMQ tcp:// address, a
 * scheme other than http/https, spaces or control characters, a bad port).
 */
int ctl_endpoints_parse(const char *list, uint16_t default_port, ctl_endpoints_t *out, char *err,
                        size_t errlen);

void ctl_endpoints_clear(ctl_endpoints_t *eps);

/* The usage text: the general one for NULL or an unknown command, else the command's. */
const char *ctl_args_usage(const char *command);

#endif
