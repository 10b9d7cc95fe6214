/*
 * ctl_args.c — option parsing (getopt_long, options anywhere on the line), the command
 * table with each command's options and usage, endpoint lists, and the config file read
 * through tc_config so it reads like every daemon's.
 */
#include "ctl_args.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc_config.h"
#include "tc_error.h"
#include "tc_util.h"

typedef struct {
    const char *name;
    unsigned int opts;
    size_t min_words, max_words;
    const char *usage;
} command_t;

static const command_t commands[] = {
    {"status", CTL_OPT_KIND, 0, 0,
     "usage: tocsinctl status [--kind collector|aggregator|alerter]\n"
     "\n"
     "Asks every configured collector, aggregator and alerter for /health/live,\n"
     "/health/ready and /metrics, and shows for each: up, ready (healthy, degraded,\n"
     "unhealthy), version, key counters, spool depth and consumer lag, and every dependency\n"
     "that is not healthy. With Kafka's address (--brokers, TOCSIN_BROKERS), also the lag of\n"
     "the consumer groups tocsin-aggregator and tocsin-alerter, read from Kafka. Exit 0 when\n"
     "every daemon is ready, 1 when one is not, 3 when one (or Kafka) cannot be reached.\n"},
    {"query",
     CTL_OPT_ENV | CTL_OPT_WINDOW | CTL_OPT_Q | CTL_OPT_SINCE | CTL_OPT_UNTIL | CTL_OPT_STEP, 1, 2,
     "usage: tocsinctl query SERVICE [NAME] [--window 5m] [--env ENV] [--q 0.5,0.95,0.99]\n"
     "       tocsinctl query SERVICE [NAME] --since 1h [--until TIME] [--step 1m]\n"
     "\n"
     "The aggregator's figures for a series: NAME is a route, a metric name, $errors, or *\n"
     "(default: every request series of the service). With --since, one row per step\n"
     "(GET /api/v1/range) instead of one window. TIME is Unix seconds, RFC 3339, or a\n"
     "duration ago (15m).\n"},
    {"top", CTL_OPT_ENV | CTL_OPT_WINDOW | CTL_OPT_BY | CTL_OPT_LIMIT, 0, 0,
     "usage: tocsinctl top [--window 5m] [--env ENV] [--by requests|errors|error_rate|p95]\n"
     "                     [--limit 10]\n"
     "\n"
     "The busiest and the most failing services over the window: requests, rate, errors,\n"
     "error rate, p95 latency and error events of every service the aggregator knows.\n"},
    {"issues", CTL_OPT_SERVICE | CTL_OPT_STATUS | CTL_OPT_SORT | CTL_OPT_LIMIT, 0, 0,
     "usage: tocsinctl issues [--service S] [--status unresolved|resolved|ignored]\n"
     "                        [--sort last_seen|first_seen|count] [--limit N]\n"
     "\n"
     "Error issues (events grouped by fingerprint) from GET /api/v1/issues.\n"},
    {"issue", CTL_OPT_STATUS | CTL_OPT_SERVICE, 1, 1,
     "usage: tocsinctl issue ID [--service S] [--status unresolved|resolved|ignored]\n"
     "\n"
     "One issue in full (GET /api/v1/issues/ID): counts, first and last seen, releases,\n"
     "users, a sample event with its frames. With --status, sets the issue's status first\n"
     "(POST /api/v1/issues/ID; needs the token when the aggregator asks for one).\n"},
    {"logs",
     CTL_OPT_SERVICE | CTL_OPT_LEVEL | CTL_OPT_SINCE | CTL_OPT_UNTIL | CTL_OPT_GREP |
         CTL_OPT_LIMIT | CTL_OPT_FOLLOW | CTL_OPT_INTERVAL,
     0, 0,
     "usage: tocsinctl logs --service S [--level LEVEL] [--since 15m] [--until TIME]\n"
     "                      [--grep TEXT] [--limit N] [--follow [--interval 1s]]\n"
     "\n"
     "Log records of a service (GET /api/v1/logs), oldest first. --follow keeps asking for\n"
     "newer records every --interval until interrupted.\n"},
    {"alerts", CTL_OPT_STATE | CTL_OPT_ALL, 0, 0,
     "usage: tocsinctl alerts [--state pending|firing|acknowledged|resolved] [--all]\n"
     "\n"
     "The alerter's alerts (GET /api/v1/alerts); without --all, inactive ones are left out.\n"},
    {"ack", CTL_OPT_FOR | CTL_OPT_COMMENT | CTL_OPT_AUTHOR, 1, 1,
     "usage: tocsinctl ack ALERT [--for DURATION] [--comment TEXT] [--author NAME]\n"
     "\n"
     "Acknowledges an alert: stops its escalation. ALERT is its fingerprint or its\n"
     "alertname (when one alert has it). --for makes the acknowledgement expire. Needs the\n"
     "token (TOCSIN_TOKEN or --token) when the alerter asks for one.\n"},
    {"unack", CTL_OPT_COMMENT | CTL_OPT_AUTHOR, 1, 1,
     "usage: tocsinctl unack ALERT\n"
     "\n"
     "Ends an acknowledgement now, as if it had expired: if the alert still fires,\n"
     "escalation starts again from the first tier. Needs the token.\n"},
    {"resolve", CTL_OPT_COMMENT | CTL_OPT_AUTHOR, 1, 1,
     "usage: tocsinctl resolve ALERT [--comment TEXT] [--author NAME]\n"
     "\n"
     "Resolves a firing or acknowledged alert now: every receiver told it fired gets the\n"
     "resolve. It can fire again once its condition has been seen false. Needs the token.\n"},
    {"notifications", CTL_OPT_LIMIT | CTL_OPT_STATUS, 0, 1,
     "usage: tocsinctl notifications [ALERT] [--status S] [--limit N]\n"
     "\n"
     "The alerter's notification log, newest first: what was sent to whom, delivered or not,\n"
     "with attempts and the last error. ALERT (fingerprint or alertname) narrows it to one\n"
     "alert.\n"},
    {"silence", CTL_OPT_FOR | CTL_OPT_COMMENT | CTL_OPT_AUTHOR | CTL_OPT_ALL, 0, CTL_MAX_WORDS,
     "usage: tocsinctl silence [list] [--all]\n"
     "       tocsinctl silence add MATCHER... --for DURATION [--comment TEXT] [--author NAME]\n"
     "       tocsinctl silence expire ID\n"
     "\n"
     "Silences mute the notifications of alerts whose labels match every MATCHER\n"
     "(label=value, label!=value, label=~regex). `add` and `expire` need the token when the\n"
     "alerter asks for one.\n"},
    {"rules", CTL_OPT_LIVE, 2, 2,
     "usage: tocsinctl rules check FILE[,FILE...] [--live]\n"
     "\n"
     "Validates rule files offline with the alerter's own parser (the same errors, with file\n"
     "and line), then prints each rule, what makes it fire, and when it would notify whom:\n"
     "the first notification once its condition has held for `for` (plus its route's group\n"
     "wait), then each escalation tier while nobody acknowledges. With --live, also asks the\n"
     "alerter for each rule's alert and shows its state and next scheduled action. Exit 0\n"
     "when the files are valid, 1 when they are not.\n"},
    {"keygen", CTL_OPT_DIR | CTL_OPT_FORCE, 1, 1,
     "usage: tocsinctl keygen NAME [--dir DIR] [--force]\n"
     "\n"
     "Writes a CURVE key pair in czmq's certificate format: DIR/NAME.key (public, to copy to\n"
     "the other side) and DIR/NAME.key_secret (secret, mode 0600). Refuses to overwrite\n"
     "without --force.\n"},
    {"help", 0, 0, 1, NULL},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char general_usage[] =
    "usage: tocsinctl [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]\n"
    "\n"
    "Commands:\n"
    "  status                      up, ready, counters, spool and lag of every daemon\n"
    "  query SERVICE [NAME]        counts, error rate, rate and latency quantiles\n"
    "  top                         busiest and most failing services\n"
    "  issues, issue ID            error issues\n"
    "  logs --service S            log records (--follow to keep reading)\n"
    "  alerts                      the alerter's alerts\n"
    "  ack ALERT                   acknowledge an alert (stops its escalation)\n"
    "  unack ALERT, resolve ALERT  end an acknowledgement; resolve an alert now\n"
    "  notifications [ALERT]       the alerter's notification log\n"
    "  silence [list|add|expire]   silences\n"
    "  rules check FILE            validate a rule file offline\n"
    "  keygen NAME                 make a CURVE key pair (czmq certificate files)\n"
    "  help [COMMAND]              this text, or a command's\n"
    "\n"
    "Global options:\n"
    "  --collectors LIST    collectors' HTTP endpoints   (env TOCSIN_COLLECTORS; 127.0.0.1:7421)\n"
    "  --aggregator LIST    aggregators' HTTP endpoints  (env TOCSIN_AGGREGATOR; 127.0.0.1:7430)\n"
    "  --alerter LIST       alerter's HTTP endpoint      (env TOCSIN_ALERTER; 127.0.0.1:7440)\n"
    "  --brokers LIST       Kafka, for consumer lag      (env TOCSIN_BROKERS; status shows\n"
    "                       the lag of the aggregators' and alerter's groups)\n"
    "  --token TOKEN        bearer token for changes     (env TOCSIN_TOKEN)\n"
    "  --timeout DURATION   per request (default 5s)     (env TOCSIN_TIMEOUT)\n"
    "  --config FILE        key = value file: collectors, aggregators, alerters, brokers,\n"
    "                       token, timeout, kafka.* (env TOCSINCTL_CONFIG; default\n"
    "                       ~/.config/tocsin/tocsinctl.conf, then /etc/tocsin/tocsinctl.conf)\n"
    "  --json               print JSON for scripts instead of tables\n"
    "  --width N            table width (default: the terminal's)\n"
    "  --help, --version\n"
    "\n"
    "Exit codes: 0 ok; 1 a check found a problem; 2 usage; 3 a daemon is unreachable;\n"
    "4 the daemon does not serve that endpoint; 5 the daemon answered an error; 6 not found;\n"
    "7 the token was refused.\n";

const char *ctl_args_usage(const char *command)
{
    for (size_t i = 0; command && i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, command) == 0 && commands[i].usage) {
            return commands[i].usage;
        }
    }
    return general_usage;
}

/* ---- endpoints ------------------------------------------------------------------------- */

void ctl_endpoints_clear(ctl_endpoints_t *eps)
{
    for (size_t i = 0; i < eps->len; i++) {
        free(eps->items[i]);
        eps->items[i] = NULL;
    }
    eps->len = 0;
}

/* Normalises one endpoint into `out` (CTL_MAX_ENDPOINT_LEN bytes). */
static int endpoint_one(const char *s, size_t n, uint16_t default_port, char *out, char *err,
                        size_t errlen)
{
    char in[CTL_MAX_ENDPOINT_LEN];
    if (n >= sizeof(in) - 16) {
        snprintf(err, errlen, "endpoint of %zu bytes is too long", n);
        return TC_EINVAL;
    }
    memcpy(in, s, n);
    in[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, errlen, "endpoint \"%.*s\" holds a space or control character", (int)n,
                     s);
            return TC_EINVAL;
        }
    }
    while (n > 0 && in[n - 1] == '/') {
        in[--n] = '\0';
    }
    const char *rest = in;
    const char *scheme = "http";
    const char *sep = strstr(in, "://");
    if (sep) {
        size_t slen = (size_t)(sep - in);
        if (slen == 3 && strncmp(in, "tcp", 3) == 0) {
            snprintf(err, errlen,
                     "\"%s\" is a ZeroMQ address; tocsinctl talks to the daemons' HTTP port "
                     "(a collector's is 7421)",
                     in);
            return TC_EINVAL;
        }
        if (slen == 4 && strncmp(in, "http", 4) == 0) {
            scheme = "http";
        } else if (slen == 5 && strncmp(in, "https", 5) == 0) {
            scheme = "https";
        } else {
            snprintf(err, errlen, "endpoint \"%s\": only http:// and https:// are supported", in);
            return TC_EINVAL;
        }
        rest = sep + 3;
    }
    /* host part: up to the first '/' */
    const char *slash = strchr(rest, '/');
    size_t hlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (hlen == 0) {
        snprintf(err, errlen, "endpoint \"%s\" has no host", in);
        return TC_EINVAL;
    }
    const char *port = NULL;
    if (rest[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(rest, ']', hlen);
        if (!close) {
            snprintf(err, errlen, "endpoint \"%s\": unclosed [", in);
            return TC_EINVAL;
        }
        if ((size_t)(close - rest) + 1 < hlen) {
            if (close[1] != ':') {
                snprintf(err, errlen, "endpoint \"%s\": expected :port after ]", in);
                return TC_EINVAL;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(rest, ':', hlen);
        if (colon) {
            port = colon + 1;
        }
    }
    if (port) {
        size_t plen = (size_t)(rest + hlen - port);
        long v = 0;
        if (plen == 0 || plen > 5) {
            v = -1;
        }
        for (size_t i = 0; v >= 0 && i < plen; i++) {
            v = (port[i] >= '0' && port[i] <= '9') ? v * 10 + (port[i] - '0') : -1;
        }
        if (v <= 0 || v > 65535) {
            snprintf(err, errlen, "endpoint \"%s\": bad port", in);
            return TC_EINVAL;
        }
    }
    int w;
    if (port || sep) {
        w = snprintf(out, CTL_MAX_ENDPOINT_LEN, "%s://%s", scheme, rest);
    } else {
        w = snprintf(out, CTL_MAX_ENDPOINT_LEN, "%s://%.*s:%u%s", scheme, (int)hlen, rest,
                     (unsigned)default_port, rest + hlen);
    }
    if (w < 0 || w >= CTL_MAX_ENDPOINT_LEN) {
        snprintf(err, errlen, "endpoint of %zu bytes is too long", n);
        return TC_EINVAL;
    }
    return 0;
}

int ctl_endpoints_parse(const char *list, uint16_t default_port, ctl_endpoints_t *out, char *err,
                        size_t errlen)
{
    const char *p = list ? list : "";
    size_t added = 0;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n') {
            p++;
        }
        if (!*p) {
            break;
        }
        size_t n = strcspn(p, ", \t\n");
        char buf[CTL_MAX_ENDPOINT_LEN];
        if (endpoint_one(p, n, default_port, buf, err, errlen) != 0) {
            return TC_EINVAL;
        }
        if (out->len >= CTL_MAX_ENDPOINTS) {
            snprintf(err, errlen, "more than %d endpoints", CTL_MAX_ENDPOINTS);
            return TC_EINVAL;
        }
        out->items[out->len] = strdup(buf);
        if (!out->items[out->len]) {
            snprintf(err, errlen, "out of memory");
            return TC_ENOMEM;
        }
        out->len++;
        added++;
        p += n;
    }
    if (added == 0) {
        snprintf(err, errlen, "empty endpoint list");
        return TC_EINVAL;
    }
    return 0;
}

/* Replaces `eps` with the endpoints in `list`. */
static int endpoints_set(ctl_endpoints_t *eps, const char *list, uint16_t port, const char *what,
                         char *err, size_t errlen)
{
    ctl_endpoints_t tmp = {0};
    char why[400];
    int rc = ctl_endpoints_parse(list, port, &tmp, why, sizeof(why));
    if (rc != 0) {
        ctl_endpoints_clear(&tmp);
        snprintf(err, errlen, "%s: %s", what, why);
        return rc;
    }
    ctl_endpoints_clear(eps);
    *eps = tmp;
    return 0;
}

/* ---- the config file --------------------------------------------------------------------- */

typedef struct {
    char *collectors;
    char *aggregators;
    char *alerters;
    char *brokers;
    char *token;
    int64_t timeout_ms;
    tc_cfg_kvs_t kafka;
} file_cfg_t;

static const tc_cfg_entry_t file_table[] = {
    {"collectors", TC_CFG_STRING, "", offsetof(file_cfg_t, collectors),
     "collectors' HTTP endpoints (host:port,...)", 0, 0},
    {"aggregators", TC_CFG_STRING, "", offsetof(file_cfg_t, aggregators),
     "aggregators' HTTP endpoints", 0, 0},
    {"alerters", TC_CFG_STRING, "", offsetof(file_cfg_t, alerters), "alerters' HTTP endpoints", 0,
     0},
    {"brokers", TC_CFG_STRING, "", offsetof(file_cfg_t, brokers),
     "Kafka bootstrap servers, to read the consumer groups' lag (host:port,...)", 0, 0},
    {"token", TC_CFG_STRING, "", offsetof(file_cfg_t, token),
     "bearer token for endpoints that change state", 0, 0},
    {"timeout", TC_CFG_DURATION, "0", offsetof(file_cfg_t, timeout_ms),
     "time-out of one HTTP request (0: the default 5s)", 0, 0},
    {"kafka.", TC_CFG_PASSTHROUGH, NULL, offsetof(file_cfg_t, kafka),
     "passed to librdkafka when reading consumer lag (kafka.security.protocol=SASL_SSL, ...)", 0,
     0},
    TC_CFG_END,
};

static int load_file(ctl_args_t *a, const char *path, char *err, size_t errlen)
{
    file_cfg_t f;
    char why[1024];
    int rc = tc_config_defaults(file_table, &f, why, sizeof(why));
    if (rc == 0) {
        rc = tc_config_load_file(file_table, &f, path, why, sizeof(why));
    }
    if (rc != 0) {
        snprintf(err, errlen, "config file: %s", why);
        tc_config_free(file_table, &f);
        return TC_EINVAL;
    }
    if ((f.collectors[0] &&
         endpoints_set(&a->collectors, f.collectors, CTL_PORT_COLLECTOR, path, err, errlen)) ||
        (f.aggregators[0] &&
         endpoints_set(&a->aggregators, f.aggregators, CTL_PORT_AGGREGATOR, path, err, errlen)) ||
        (f.alerters[0] &&
         endpoints_set(&a->alerters, f.alerters, CTL_PORT_ALERTER, path, err, errlen))) {
        tc_config_free(file_table, &f);
        return TC_EINVAL;
    }
    if (f.token[0]) {
        free(a->token);
        a->token = strdup(f.token);
    }
    if (f.brokers[0]) {
        free(a->brokers);
        a->brokers = strdup(f.brokers);
    }
    /* The pass-through list moves to `a` (ctl_args_fini frees it). */
    a->kafka = f.kafka;
    f.kafka.items = NULL;
    f.kafka.len = 0;
    if (f.timeout_ms > 0) {
        a->timeout_ms = f.timeout_ms;
    }
    a->config_path = strdup(path);
    tc_config_free(file_table, &f);
    return 0;
}

/* ---- options ----------------------------------------------------------------------------- */

enum {
    O_COLLECTORS = 1000,
    O_AGGREGATOR,
    O_ALERTER,
    O_BROKERS,
    O_TOKEN,
    O_CONFIG,
    O_TIMEOUT,
    O_JSON,
    O_WIDTH,
    O_VERSION,
    O_HELP,
    O_SERVICE,
    O_NAME,
    O_ENV,
    O_WINDOW,
    O_Q,
    O_BY,
    O_LIMIT,
    O_LEVEL,
    O_SINCE,
    O_UNTIL,
    O_GREP,
    O_STATUS,
    O_SORT,
    O_FOLLOW,
    O_FOR,
    O_COMMENT,
    O_STATE,
    O_ALL,
    O_DIR,
    O_STEP,
    O_KIND,
    O_INTERVAL,
    O_LIVE,
    O_AUTHOR,
    O_FORCE,
};

static const struct option long_opts[] = {
    {"collectors", required_argument, NULL, O_COLLECTORS},
    {"collector", required_argument, NULL, O_COLLECTORS},
    {"aggregator", required_argument, NULL, O_AGGREGATOR},
    {"aggregators", required_argument, NULL, O_AGGREGATOR},
    {"alerter", required_argument, NULL, O_ALERTER},
    {"alerters", required_argument, NULL, O_ALERTER},
    {"brokers", required_argument, NULL, O_BROKERS},
    {"token", required_argument, NULL, O_TOKEN},
    {"config", required_argument, NULL, O_CONFIG},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"json", no_argument, NULL, O_JSON},
    {"width", required_argument, NULL, O_WIDTH},
    {"version", no_argument, NULL, O_VERSION},
    {"help", no_argument, NULL, O_HELP},
    {"service", required_argument, NULL, O_SERVICE},
    {"name", required_argument, NULL, O_NAME},
    {"env", required_argument, NULL, O_ENV},
    {"environment", required_argument, NULL, O_ENV},
    {"window", required_argument, NULL, O_WINDOW},
    {"q", required_argument, NULL, O_Q},
    {"by", required_argument, NULL, O_BY},
    {"limit", required_argument, NULL, O_LIMIT},
    {"level", required_argument, NULL, O_LEVEL},
    {"since", required_argument, NULL, O_SINCE},
    {"until", required_argument, NULL, O_UNTIL},
    {"grep", required_argument, NULL, O_GREP},
    {"status", required_argument, NULL, O_STATUS},
    {"sort", required_argument, NULL, O_SORT},
    {"follow", no_argument, NULL, O_FOLLOW},
    {"for", required_argument, NULL, O_FOR},
    {"comment", required_argument, NULL, O_COMMENT},
    {"state", required_argument, NULL, O_STATE},
    {"all", no_argument, NULL, O_ALL},
    {"dir", required_argument, NULL, O_DIR},
    {"step", required_argument, NULL, O_STEP},
    {"kind", required_argument, NULL, O_KIND},
    {"interval", required_argument, NULL, O_INTERVAL},
    {"live", no_argument, NULL, O_LIVE},
    {"author", required_argument, NULL, O_AUTHOR},
    {"force", no_argument, NULL, O_FORCE},
    {NULL, 0, NULL, 0},
};

static const char short_opts[] = ":hs:n:e:w:l:g:fm:a";

static const char *opt_name(unsigned int bit)
{
    static const struct {
        unsigned int bit;
        const char *name;
    } names[] = {
        {CTL_OPT_SERVICE, "--service"},
        {CTL_OPT_NAME, "--name"},
        {CTL_OPT_ENV, "--env"},
        {CTL_OPT_WINDOW, "--window"},
        {CTL_OPT_Q, "--q"},
        {CTL_OPT_BY, "--by"},
        {CTL_OPT_LIMIT, "--limit"},
        {CTL_OPT_LEVEL, "--level"},
        {CTL_OPT_SINCE, "--since"},
        {CTL_OPT_UNTIL, "--until"},
        {CTL_OPT_GREP, "--grep"},
        {CTL_OPT_STATUS, "--status"},
        {CTL_OPT_SORT, "--sort"},
        {CTL_OPT_FOLLOW, "--follow"},
        {CTL_OPT_FOR, "--for"},
        {CTL_OPT_COMMENT, "--comment"},
        {CTL_OPT_STATE, "--state"},
        {CTL_OPT_ALL, "--all"},
        {CTL_OPT_DIR, "--dir"},
        {CTL_OPT_STEP, "--step"},
        {CTL_OPT_KIND, "--kind"},
        {CTL_OPT_INTERVAL, "--interval"},
        {CTL_OPT_LIVE, "--live"},
        {CTL_OPT_AUTHOR, "--author"},
        {CTL_OPT_FORCE, "--force"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].bit == bit) {
            return names[i].name;
        }
    }
    return "?";
}

static int parse_positive_long(const char *s, long max, long *out)
{
    char *e = NULL;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || !e || *e || e == s || v < 1 || v > max) {
        return TC_EINVAL;
    }
    *out = v;
    return 0;
}

static const command_t *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

void ctl_args_fini(ctl_args_t *a)
{
    ctl_endpoints_clear(&a->collectors);
    ctl_endpoints_clear(&a->aggregators);
    ctl_endpoints_clear(&a->alerters);
    free(a->token);
    a->token = NULL;
    free(a->brokers);
    a->brokers = NULL;
    for (size_t i = 0; i < a->kafka.len; i++) {
        free(a->kafka.items[i].key);
        free(a->kafka.items[i].value);
    }
    free(a->kafka.items);
    a->kafka.items = NULL;
    a->kafka.len = 0;
    free(a->config_path);
    a->config_path = NULL;
}

int ctl_args_parse(ctl_args_t *a, int argc, char **argv, ctl_getenv_fn env,
                   const char *default_config, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->timeout_ms = 5000;
    a->interval_ms = 1000;
    snprintf(err, errlen, "bad arguments");
    /* Flags are applied last, after the file and the environment; remember them. */
    const char *f_collectors = NULL, *f_aggregator = NULL, *f_alerter = NULL, *f_token = NULL;
    const char *f_brokers = NULL;
    const char *f_config = NULL, *f_timeout = NULL;
    bool help = false;

    optind = 0; /* glibc: start over, so the parser can run more than once (tests) */
    opterr = 0;
    /* Options may come before or after the command: getopt permutes argv and leaves the
     * words, in order, behind the options. */
    const char *shorts = short_opts;
    for (;;) {
        int idx = 0;
        int c = getopt_long(argc, argv, shorts, long_opts, &idx);
        if (c == -1) {
            break;
        }
        unsigned int bit = 0;
        switch (c) {
        case O_COLLECTORS:
            f_collectors = optarg;
            break;
        case O_AGGREGATOR:
            f_aggregator = optarg;
            break;
        case O_ALERTER:
            f_alerter = optarg;
            break;
        case O_BROKERS:
            f_brokers = optarg;
            break;
        case O_TOKEN:
            f_token = optarg;
            break;
        case O_CONFIG:
            f_config = optarg;
            break;
        case O_TIMEOUT:
            f_timeout = optarg;
            break;
        case O_JSON:
            a->json = true;
            break;
        case O_WIDTH:
            if (parse_positive_long(optarg, 100000, &a->width) != 0) {
                snprintf(err, errlen, "--width: expected a number of columns, got \"%s\"", optarg);
                return TC_EINVAL;
            }
            break;
        case O_VERSION:
            return CTL_ARGS_VERSION;
        case 'h':
        case O_HELP:
            help = true;
            break;
        case 's':
        case O_SERVICE:
            a->service = optarg;
            bit = CTL_OPT_SERVICE;
            break;
        case 'n':
        case O_NAME:
            a->name = optarg;
            bit = CTL_OPT_NAME;
            break;
        case 'e':
        case O_ENV:
            a->env = optarg;
            bit = CTL_OPT_ENV;
            break;
        case 'w':
        case O_WINDOW:
            a->window = optarg;
            bit = CTL_OPT_WINDOW;
            break;
        case O_Q:
            a->q = optarg;
            bit = CTL_OPT_Q;
            break;
        case O_BY:
            a->by = optarg;
            bit = CTL_OPT_BY;
            break;
        case 'l':
        case O_LIMIT:
            if (parse_positive_long(optarg, 100000, &a->limit) != 0) {
                snprintf(err, errlen, "--limit: expected 1 to 100000, got \"%s\"", optarg);
                return TC_EINVAL;
            }
            bit = CTL_OPT_LIMIT;
            break;
        case O_LEVEL:
            a->level = optarg;
            bit = CTL_OPT_LEVEL;
            break;
        case O_SINCE:
            a->since = optarg;
            bit = CTL_OPT_SINCE;
            break;
        case O_UNTIL:
            a->until = optarg;
            bit = CTL_OPT_UNTIL;
            break;
        case 'g':
        case O_GREP:
            a->grep = optarg;
            bit = CTL_OPT_GREP;
            break;
        case O_STATUS:
            a->status = optarg;
            bit = CTL_OPT_STATUS;
            break;
        case O_SORT:
            a->sort = optarg;
            bit = CTL_OPT_SORT;
            break;
        case 'f':
        case O_FOLLOW:
            a->follow = true;
            bit = CTL_OPT_FOLLOW;
            break;
        case O_FOR:
            a->for_ = optarg;
            bit = CTL_OPT_FOR;
            break;
        case 'm':
        case O_COMMENT:
            a->comment = optarg;
            bit = CTL_OPT_COMMENT;
            break;
        case O_STATE:
            a->state = optarg;
            bit = CTL_OPT_STATE;
            break;
        case 'a':
        case O_ALL:
            a->all = true;
            bit = CTL_OPT_ALL;
            break;
        case O_DIR:
            a->dir = optarg;
            bit = CTL_OPT_DIR;
            break;
        case O_STEP:
            a->step = optarg;
            bit = CTL_OPT_STEP;
            break;
        case O_KIND:
            a->kind = optarg;
            bit = CTL_OPT_KIND;
            break;
        case O_INTERVAL: {
            int64_t ms = 0;
            if (tc_duration_parse(optarg, &ms) != 0 || ms < 100 || ms > 3600 * 1000) {
                snprintf(err, errlen,
                         "--interval: expected a duration of 100ms to 1h, got "
                         "\"%s\"",
                         optarg);
                return TC_EINVAL;
            }
            a->interval_ms = ms;
            bit = CTL_OPT_INTERVAL;
            break;
        }
        case O_LIVE:
            a->live = true;
            bit = CTL_OPT_LIVE;
            break;
        case O_AUTHOR:
            a->author = optarg;
            bit = CTL_OPT_AUTHOR;
            break;
        case O_FORCE:
            a->force = true;
            bit = CTL_OPT_FORCE;
            break;
        case ':':
            snprintf(err, errlen, "option %s needs a value", argv[optind - 1]);
            return TC_EINVAL;
        default:
            if (optopt && optopt < 256) {
                snprintf(err, errlen, "unknown option -%c (see tocsinctl --help)", optopt);
            } else {
                snprintf(err, errlen,
                         "unknown option \"%s\", or it needs a value (see "
                         "tocsinctl --help)",
                         argv[optind - 1]);
            }
            return TC_EINVAL;
        }
        a->seen |= bit;
    }
    /* The words, in order (getopt moved them behind the options). */
    for (int i = optind; i < argc; i++) {
        if (!a->command) {
            a->command = argv[i];
        } else if (a->nwords < CTL_MAX_WORDS) {
            a->words[a->nwords++] = argv[i];
        } else {
            snprintf(err, errlen, "more than %d arguments", CTL_MAX_WORDS);
            return TC_EINVAL;
        }
    }
    if (a->command && strcmp(a->command, "help") == 0) {
        a->command = a->nwords ? a->words[0] : NULL;
        return CTL_ARGS_HELP;
    }
    if (help || !a->command) {
        return CTL_ARGS_HELP;
    }
    const command_t *cmd = find_command(a->command);
    if (!cmd) {
        snprintf(err, errlen, "unknown command \"%s\" (see tocsinctl --help)", a->command);
        return TC_EINVAL;
    }
    unsigned int extra = a->seen & ~cmd->opts;
    if (extra) {
        snprintf(err, errlen, "%s does not take %s (see tocsinctl help %s)", cmd->name,
                 opt_name(extra & -extra), cmd->name);
        return TC_EINVAL;
    }
    if (a->nwords < cmd->min_words || a->nwords > cmd->max_words) {
        snprintf(err, errlen, "%s takes %s; see tocsinctl help %s", cmd->name,
                 cmd->min_words == cmd->max_words
                     ? (cmd->min_words == 0 ? "no arguments" : "a fixed number of arguments")
                     : "another number of arguments",
                 cmd->name);
        return TC_EINVAL;
    }

    /* Endpoints: defaults, the file, the environment, the flags. */
    char buf[64];
    snprintf(buf, sizeof(buf), "127.0.0.1");
    if (endpoints_set(&a->collectors, buf, CTL_PORT_COLLECTOR, "default", err, errlen) ||
        endpoints_set(&a->aggregators, buf, CTL_PORT_AGGREGATOR, "default", err, errlen) ||
        endpoints_set(&a->alerters, buf, CTL_PORT_ALERTER, "default", err, errlen)) {
        return TC_EINVAL;
    }
    const char *cfg = f_config ? f_config : (env ? env("TOCSINCTL_CONFIG") : NULL);
    if (cfg && *cfg) {
        if (load_file(a, cfg, err, errlen) != 0) {
            return TC_EINVAL;
        }
    } else if (default_config && access(default_config, F_OK) == 0) {
        if (load_file(a, default_config, err, errlen) != 0) {
            return TC_EINVAL;
        }
    }
    const char *v;
    if (env) {
        if ((v = env("TOCSIN_COLLECTORS")) && *v &&
            endpoints_set(&a->collectors, v, CTL_PORT_COLLECTOR, "TOCSIN_COLLECTORS", err,
                          errlen)) {
            return TC_EINVAL;
        }
        if (!(v = env("TOCSIN_AGGREGATOR")) || !*v) {
            v = env("TOCSIN_AGGREGATORS");
        }
        if (v && *v &&
            endpoints_set(&a->aggregators, v, CTL_PORT_AGGREGATOR, "TOCSIN_AGGREGATOR", err,
                          errlen)) {
            return TC_EINVAL;
        }
        if ((v = env("TOCSIN_ALERTER")) && *v &&
            endpoints_set(&a->alerters, v, CTL_PORT_ALERTER, "TOCSIN_ALERTER", err, errlen)) {
            return TC_EINVAL;
        }
        if ((v = env("TOCSIN_BROKERS")) && *v) {
            free(a->brokers);
            a->brokers = strdup(v);
        }
        if ((v = env("TOCSIN_TOKEN")) && *v) {
            free(a->token);
            a->token = strdup(v);
        }
        if ((v = env("TOCSIN_TIMEOUT")) && *v) {
            f_timeout = f_timeout ? f_timeout : v;
        }
    }
    if ((f_collectors && endpoints_set(&a->collectors, f_collectors, CTL_PORT_COLLECTOR,
                                       "--collectors", err, errlen)) ||
        (f_aggregator && endpoints_set(&a->aggregators, f_aggregator, CTL_PORT_AGGREGATOR,
                                       "--aggregator", err, errlen)) ||
        (f_alerter &&
         endpoints_set(&a->alerters, f_alerter, CTL_PORT_ALERTER, "--alerter", err, errlen))) {
        return TC_EINVAL;
    }
    if (f_token) {
        free(a->token);
        a->token = strdup(f_token);
    }
    if (f_brokers) {
        free(a->brokers);
        a->brokers = strdup(f_brokers);
    }
    if (a->brokers && (!*a->brokers || strpbrk(a->brokers, "/\"'"))) {
        snprintf(err, errlen,
                 "brokers: expected host:port,... (Kafka bootstrap servers), got "
                 "\"%s\"",
                 a->brokers);
        return TC_EINVAL;
    }
    if (f_timeout) {
        int64_t ms = 0;
        if (tc_duration_parse(f_timeout, &ms) != 0 || ms < 1 || ms > 600 * 1000) {
            snprintf(err, errlen, "timeout: expected a duration of 1ms to 10m, got \"%s\"",
                     f_timeout);
            return TC_EINVAL;
        }
        a->timeout_ms = ms;
    }
    if (a->token && !*a->token) {
        free(a->token);
        a->token = NULL;
    }
    snprintf(err, errlen, "ok");
    return 0;
}
