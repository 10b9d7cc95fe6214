/*
 * tocsin-emit — send one error, metric, log line, request or heartbeat to Tocsin from a
 * shell script or a cron job, through libtocsin, and say by the exit code whether a
 * collector stored it.
 *
 * Exit codes (sysexits.h), so scripts can tell "try again later" from "fix the call":
 *   0   stored by a collector (every event acknowledged STORED)
 *   64  usage error: unknown command or option, bad number, missing argument
 *   65  the collector rejected the event (a bad API key, a value out of its limits)
 *   69  not acknowledged within --timeout (no collector reachable, or too slow): retry later
 *   70  internal error (the client could not be created)
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tocsin.h"

enum {
    EXIT_STORED = 0,
    EXIT_USAGE = 64,
    EXIT_REJECTED = 65,
    EXIT_UNAVAILABLE = 69,
    EXIT_INTERNAL = 70,
};

#define MAX_TAGS TOCSIN_TAGS_MAX
#define MAX_FIELDS TOCSIN_FIELDS_MAX

static const char usage[] =
    "usage: tocsin-emit [options] COMMAND ARGS...\n"
    "\n"
    "Commands:\n"
    "  error TYPE [MESSAGE]           an error (no stack trace; --level, --fingerprint)\n"
    "  metric NAME VALUE              a metric sample (--kind counter|gauge|timing, --unit)\n"
    "  log LEVEL MESSAGE              a log line; LEVEL trace|debug|info|warning|error|fatal;\n"
    "                                 MESSAGE - reads standard input, one record per line\n"
    "                                 (--logger, --field KEY=VALUE)\n"
    "  request ROUTE STATUS MS        a served request (--method)\n"
    "  heartbeat                      a heartbeat: metric \"heartbeat\", counter, value 1\n"
    "Options may come before or after the arguments; put -- before a negative VALUE.\n"
    "\n"
    "Options (environment variables in brackets):\n"
    "  --collector EPS     collector endpoints, comma-separated [TOCSIN_COLLECTORS]\n"
    "                      (default tcp://127.0.0.1:7420)\n"
    "  --service NAME      service name, required [TOCSIN_SERVICE]\n"
    "  --environment NAME  [TOCSIN_ENVIRONMENT] (default production)\n"
    "  --release VERSION   [TOCSIN_RELEASE]\n"
    "  --api-key KEY       [TOCSIN_API_KEY]\n"
    "  --curve-server-key Z85   the collectors' CURVE public key [TOCSIN_CURVE_SERVER_KEY]\n"
    "  --crash-dir DIR     also send the crash reports waiting in DIR [TOCSIN_CRASH_DIR]\n"
    "  --timeout MS        how long to wait for the acknowledgement (default 5000)\n"
    "  --tag KEY=VALUE     a tag (repeatable)\n"
    "  --trace-id ID       the request or trace id\n"
    "  --user ID           the user the event concerns\n"
    "  --level LEVEL       error level (default error)\n"
    "  --fingerprint PART  explicit grouping part of an error (repeatable)\n"
    "  --kind KIND         metric kind (default gauge)\n"
    "  --unit UNIT         metric unit\n"
    "  --logger NAME       logger of a log line\n"
    "  --field KEY=VALUE   structured field of a log line (repeatable)\n"
    "  --method METHOD     request method (default GET)\n"
    "  --quiet             no message on standard error\n"
    "\n"
    "Exit: 0 stored, 64 usage error, 65 rejected by the collector, 69 not acknowledged in\n"
    "time (retry later), 70 internal error.\n";

static int quiet;

static int fail_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail_usage(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tocsin-emit: %s (see --help)\n", msg);
    return EXIT_USAGE;
}

static int parse_level(const char *s, tocsin_level_t *out)
{
    static const struct {
        const char *name;
        tocsin_level_t level;
    } levels[] = {{"trace", TOCSIN_LEVEL_TRACE},  {"debug", TOCSIN_LEVEL_DEBUG},
                  {"info", TOCSIN_LEVEL_INFO},    {"warning", TOCSIN_LEVEL_WARNING},
                  {"warn", TOCSIN_LEVEL_WARNING}, {"error", TOCSIN_LEVEL_ERROR},
                  {"fatal", TOCSIN_LEVEL_FATAL}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(s, levels[i].name) == 0) {
            *out = levels[i].level;
            return 0;
        }
    }
    return -1;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Splits KEY=VALUE in place. */
static int parse_pair(char *s, tocsin_tag_t *out)
{
    char *eq = strchr(s, '=');
    if (!eq || eq == s) {
        return -1;
    }
    *eq = '\0';
    out->key = s;
    out->value = eq + 1;
    return 0;
}

static const char *env_or(const char *value, const char *name)
{
    return value ? value : getenv(name);
}

int main(int argc, char **argv)
{
    tocsin_options_t o;
    tocsin_options_init(&o);
    const char *collector = NULL, *service = NULL, *environment = NULL, *release = NULL;
    const char *api_key = NULL, *curve = NULL, *crash_dir = NULL;
    const char *trace_id = NULL, *user = NULL, *unit = NULL, *logger = NULL, *method = "GET";
    tocsin_level_t level = TOCSIN_LEVEL_ERROR;
    tocsin_metric_kind_t kind = TOCSIN_GAUGE;
    uint32_t timeout_ms = 5000;
    tocsin_tag_t tags[MAX_TAGS], fields[MAX_FIELDS];
    size_t n_tags = 0, n_fields = 0, n_fp = 0;
    const char *fingerprint[TOCSIN_FINGERPRINT_MAX];

    static const struct option longopts[] = {
        {"collector", required_argument, NULL, 'c'},
        {"service", required_argument, NULL, 's'},
        {"environment", required_argument, NULL, 'e'},
        {"release", required_argument, NULL, 'r'},
        {"api-key", required_argument, NULL, 'k'},
        {"curve-server-key", required_argument, NULL, 'C'},
        {"crash-dir", required_argument, NULL, 'D'},
        {"timeout", required_argument, NULL, 't'},
        {"tag", required_argument, NULL, 'T'},
        {"trace-id", required_argument, NULL, 'i'},
        {"user", required_argument, NULL, 'u'},
        {"level", required_argument, NULL, 'l'},
        {"fingerprint", required_argument, NULL, 'f'},
        {"kind", required_argument, NULL, 'K'},
        {"unit", required_argument, NULL, 'U'},
        {"logger", required_argument, NULL, 'L'},
        {"field", required_argument, NULL, 'F'},
        {"method", required_argument, NULL, 'm'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    opterr = 0;
    /* Options may come before or after the command's arguments; a negative VALUE follows
     * "--" (tocsin-emit metric temp -- -3.5). */
    while ((ch = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            collector = optarg;
            break;
        case 's':
            service = optarg;
            break;
        case 'e':
            environment = optarg;
            break;
        case 'r':
            release = optarg;
            break;
        case 'k':
            api_key = optarg;
            break;
        case 'C':
            curve = optarg;
            break;
        case 'D':
            crash_dir = optarg;
            break;
        case 't':
            if (parse_u32(optarg, 600000, &timeout_ms) != 0) {
                return fail_usage("bad --timeout %s (milliseconds, at most 600000)", optarg);
            }
            break;
        case 'T':
            if (n_tags >= MAX_TAGS || parse_pair(optarg, &tags[n_tags]) != 0) {
                return fail_usage("bad --tag %s (KEY=VALUE, at most 16)", optarg);
            }
            n_tags++;
            break;
        case 'i':
            trace_id = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'l':
            if (parse_level(optarg, &level) != 0) {
                return fail_usage("bad --level %s", optarg);
            }
            break;
        case 'f':
            if (n_fp >= TOCSIN_FINGERPRINT_MAX || !optarg[0]) {
                return fail_usage("bad --fingerprint %s (non-empty, at most 16)", optarg);
            }
            fingerprint[n_fp++] = optarg;
            break;
        case 'K':
            if (strcmp(optarg, "counter") == 0) {
                kind = TOCSIN_COUNTER;
            } else if (strcmp(optarg, "gauge") == 0) {
                kind = TOCSIN_GAUGE;
            } else if (strcmp(optarg, "timing") == 0) {
                kind = TOCSIN_TIMING;
            } else {
                return fail_usage("bad --kind %s (counter, gauge or timing)", optarg);
            }
            break;
        case 'U':
            unit = optarg;
            break;
        case 'L':
            logger = optarg;
            break;
        case 'F':
            if (n_fields >= MAX_FIELDS || parse_pair(optarg, &fields[n_fields]) != 0) {
                return fail_usage("bad --field %s (KEY=VALUE, at most 32)", optarg);
            }
            n_fields++;
            break;
        case 'm':
            method = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("tocsin-emit %s\n", tocsin_version());
            return 0;
        default:
            return fail_usage("unknown or incomplete option %s",
                              optind > 0 && optind <= argc ? argv[optind - 1] : "");
        }
    }
    if (optind >= argc) {
        return fail_usage("a command is required");
    }
    const char *cmd = argv[optind];
    char **args = argv + optind + 1;
    int nargs = argc - optind - 1;

    o.collectors = env_or(collector, "TOCSIN_COLLECTORS");
    o.service = env_or(service, "TOCSIN_SERVICE");
    o.environment = env_or(environment, "TOCSIN_ENVIRONMENT");
    o.release = env_or(release, "TOCSIN_RELEASE");
    o.api_key = env_or(api_key, "TOCSIN_API_KEY");
    o.curve_server_key = env_or(curve, "TOCSIN_CURVE_SERVER_KEY");
    o.crash_dir = env_or(crash_dir, "TOCSIN_CRASH_DIR");
    o.tags = tags;
    o.n_tags = n_tags;
    o.stack_traces = TOCSIN_STACKS_OFF; /* the stack of this tool means nothing */
    o.batch_interval_ms = 1;
    o.ack_timeout_ms = timeout_ms < 1000 ? (timeout_ms ? timeout_ms : 1) : 1000;
    o.shutdown_timeout_ms = 100;
    o.queue_capacity = 4096;
    if (!o.service || !o.service[0]) {
        return fail_usage("--service (or TOCSIN_SERVICE) is required");
    }
    const char *reason = NULL;
    if (tocsin_options_validate(&o, &reason) != TOCSIN_OK) {
        return fail_usage("%s", reason);
    }

    /* Check the command's arguments before creating anything. */
    double value = 0;
    uint32_t status = 0, ms = 0;
    tocsin_level_t log_level = TOCSIN_LEVEL_INFO;
    if (strcmp(cmd, "error") == 0) {
        if (nargs < 1 || nargs > 2) {
            return fail_usage("error takes TYPE [MESSAGE]");
        }
    } else if (strcmp(cmd, "metric") == 0) {
        if (nargs != 2 || parse_double(args[1], &value) != 0) {
            return fail_usage("metric takes NAME VALUE (a finite number)");
        }
    } else if (strcmp(cmd, "log") == 0) {
        if (nargs != 2 || parse_level(args[0], &log_level) != 0) {
            return fail_usage("log takes LEVEL MESSAGE (LEVEL trace .. fatal)");
        }
    } else if (strcmp(cmd, "request") == 0) {
        if (nargs != 3 || parse_u32(args[1], 999, &status) != 0 ||
            parse_u32(args[2], 86400000, &ms) != 0) {
            return fail_usage("request takes ROUTE STATUS MILLISECONDS");
        }
    } else if (strcmp(cmd, "heartbeat") == 0) {
        if (nargs != 0) {
            return fail_usage("heartbeat takes no arguments");
        }
    } else {
        return fail_usage("unknown command %s", cmd);
    }

    tocsin_t *t = tocsin_new(&o);
    if (!t) {
        if (!quiet) {
            fprintf(stderr, "tocsin-emit: cannot create the client (endpoint or key refused)\n");
        }
        return EXIT_INTERNAL;
    }
    if (trace_id) {
        tocsin_scope_set_trace_id(trace_id);
    }
    if (user) {
        tocsin_scope_set_user(user);
    }

    int rc = TOCSIN_OK;
    uint64_t lines = 0;
    if (strcmp(cmd, "error") == 0) {
        tocsin_error_t err = {.type = args[0],
                              .message = nargs > 1 ? args[1] : NULL,
                              .level = level,
                              .fingerprint = n_fp ? fingerprint : NULL,
                              .n_fingerprint = n_fp,
                              .no_stack = true,
                              .mechanism = "tocsin-emit"};
        rc = tocsin_error_ex(t, &err);
    } else if (strcmp(cmd, "metric") == 0) {
        rc = tocsin_metric(t, args[0], kind, value, unit);
    } else if (strcmp(cmd, "log") == 0) {
        if (strcmp(args[1], "-") == 0) {
            char *line = NULL;
            size_t cap = 0;
            ssize_t n;
            while (rc == TOCSIN_OK && (n = getline(&line, &cap, stdin)) >= 0) {
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
                    line[--n] = '\0';
                }
                if (n == 0) {
                    continue;
                }
                /* A full queue: wait for room rather than lose a line of the input. */
                while ((rc = tocsin_log(t, log_level, logger, line, fields, n_fields)) ==
                       TOCSIN_EFULL) {
                    if (tocsin_flush(t, timeout_ms) != TOCSIN_OK) {
                        break;
                    }
                }
                lines++;
            }
            free(line);
        } else {
            rc = tocsin_log(t, log_level, logger, args[1], fields, n_fields);
        }
    } else if (strcmp(cmd, "request") == 0) {
        rc = tocsin_request(t, args[0], method, (int)status, (uint64_t)ms * 1000);
    } else {
        rc = tocsin_heartbeat(t);
    }
    if (rc != TOCSIN_OK) {
        if (!quiet) {
            fprintf(stderr, "tocsin-emit: not recorded: %s\n", tocsin_strerror(rc));
        }
        tocsin_destroy(&t);
        return rc == TOCSIN_EFULL || rc == TOCSIN_ETIMEDOUT ? EXIT_UNAVAILABLE : EXIT_USAGE;
    }
    int frc = tocsin_flush(t, timeout_ms);
    tocsin_stats_t st;
    tocsin_stats(t, &st);
    tocsin_destroy(&t);
    if (st.events_rejected > 0) {
        if (!quiet) {
            fprintf(stderr, "tocsin-emit: the collector rejected %llu event(s)\n",
                    (unsigned long long)st.events_rejected);
        }
        return EXIT_REJECTED;
    }
    if (frc != TOCSIN_OK || st.events_acked < st.recorded) {
        if (!quiet) {
            fprintf(stderr,
                    "tocsin-emit: not acknowledged within %u ms (%llu of %llu stored); "
                    "is a collector reachable at %s?\n",
                    timeout_ms, (unsigned long long)st.events_acked,
                    (unsigned long long)st.recorded,
                    o.collectors ? o.collectors : "tcp://127.0.0.1:7420");
        }
        return EXIT_UNAVAILABLE;
    }
    (void)lines;
    return EXIT_STORED;
}
