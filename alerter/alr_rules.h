/*
 * alr_rules.h — the alerter's rule file: receivers, escalation policies, routes,
 * maintenance windows, settings and rules, read from YAML into plain structs and
 * validated as a whole.
 *
 * A file with any error is rejected whole: the loader answers NULL and an error text
 * "FILE:LINE: reason" (or "FILE: reason" when no line applies). Nothing of a rejected file
 * is kept, so a caller keeps running the rules it already has. Several files may be given
 * (comma-separated); they are merged into one set, and an error in any rejects the load.
 *
 * Each rule's identity is its fingerprint: a hash of its label set (alertname, service,
 * severity and the rule's own labels), computed the way Alertmanager fingerprints alerts.
 * Two rules may not share it. Alerts of a rule whose fingerprint survives a reload keep
 * their state. See docs/alerter.md for the file format.
 */
#ifndef ALR_RULES_H
#define ALR_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_match.h"

/* Limits on what a load may hold; beyond them it is rejected. */
#define ALR_RULES_FILE_MAX (8u * 1024 * 1024) /* bytes per file */
#define ALR_RULES_MAX 100000
#define ALR_RECEIVERS_MAX 1000
#define ALR_POLICIES_MAX 1000
#define ALR_ROUTES_MAX 1000
#define ALR_TIERS_MAX 16
#define ALR_LABELS_MAX 64 /* labels, and annotations, per rule */
#define ALR_BURN_PAIRS_MAX 8
#define ALR_WINDOW_MAX_MS (7 * 86400 * 1000LL)

typedef enum {
    ALR_RULE_ERROR_RATE = 0,   /* Σerrors / Σcount of request series */
    ALR_RULE_REQUEST_RATE,     /* Σcount / window seconds of request series */
    ALR_RULE_LATENCY,          /* quantile of request durations, ms */
    ALR_RULE_METRIC,           /* a metric series: sum, rate, last, min, max, avg, quantile */
    ALR_RULE_EVENT_COUNT,      /* Σcount of a series (e.g. $errors) */
    ALR_RULE_ABSENCE,          /* no event of a series for `window` (heartbeat) */
    ALR_RULE_NEW_ISSUE,        /* an IssueChange NEW */
    ALR_RULE_REGRESSED_ISSUE,  /* an IssueChange REGRESSED */
    ALR_RULE_BURN_RATE,        /* multi-window burn rate of an SLO */
} alr_rule_type_t;

#define ALR_RULE_TYPE_COUNT 9

typedef enum {
    ALR_SEVERITY_CRITICAL = 0,
    ALR_SEVERITY_ERROR = 1,
    ALR_SEVERITY_WARNING = 2,
    ALR_SEVERITY_INFO = 3,
} alr_severity_t;

typedef enum {
    ALR_AGG_NONE = 0,
    ALR_AGG_SUM,      /* counter: Σ values in the window */
    ALR_AGG_RATE,     /* counter: Σ values / window seconds */
    ALR_AGG_LAST,     /* gauge: the latest value by event time */
    ALR_AGG_MIN,
    ALR_AGG_MAX,
    ALR_AGG_AVG,      /* Σ values / Σ samples */
    ALR_AGG_QUANTILE, /* timing: quantile of the sketch */
    ALR_AGG_COUNT,    /* samples */
} alr_agg_t;

typedef enum {
    ALR_RCV_WEBHOOK = 0,
    ALR_RCV_SLACK = 1,
    ALR_RCV_PAGERDUTY = 2,
    ALR_RCV_EMAIL = 3,
} alr_receiver_type_t;

/* One label or annotation. */
typedef struct {
    char *key;
    char *value;
} alr_label_t;

/* A set of labels or annotations, sorted by key, keys unique. */
typedef struct {
    alr_label_t *items;
    size_t len;
} alr_labels_t;

typedef struct {
    char *name;
    alr_receiver_type_t type;
    char *url;          /* webhook, slack: the POST target; pagerduty: events endpoint;
                           email: smtp:// or smtps:// server */
    char *routing_key;  /* pagerduty */
    char *from;         /* email */
    char **to;          /* email recipients */
    size_t nto;
    char *username;     /* email, optional */
    char *password;     /* email, optional (from `password` or `password_file`) */
    bool starttls;      /* email: require STARTTLS on smtp:// */
    double rate_per_s;  /* token bucket refill; 0 = unlimited */
    double burst;       /* token bucket size (>= 1) */
    int64_t timeout_ms; /* whole attempt */
    bool notify_ack;    /* sends acknowledgement notices */
    int line;
} alr_receiver_t;

typedef struct {
    size_t *receivers;  /* indexes into the set's receivers */
    size_t nreceivers;
    int64_t timeout_ms; /* time to wait for an acknowledgement before the next tier */
} alr_tier_t;

typedef struct {
    char *name;
    alr_tier_t *tiers;
    size_t ntiers;
    unsigned repeat;    /* how many times the whole policy starts again after the last tier */
    bool synthetic;     /* made for a rule's `receiver:` shortcut */
    int line;
} alr_policy_t;

typedef struct {
    alr_matchers_t match;
    size_t policy;
    char **group_by;    /* label names; a single "..." groups by every label */
    size_t ngroup_by;
    int64_t group_wait_ms;
    int64_t group_interval_ms;
    int64_t repeat_interval_ms; /* 0: no reminders */
    int line;
} alr_route_t;

typedef struct {
    char id[17];        /* stable: hash of the entry */
    alr_matchers_t match;
    int64_t starts_us, ends_us;
    char *comment;
    int line;
} alr_maintenance_t;

typedef struct {
    int64_t long_ms, short_ms;
    double factor;
} alr_burn_pair_t;

typedef struct {
    char *alert;            /* the alertname */
    alr_rule_type_t type;
    char *service;
    char *name;             /* series name; "*" merges every request series of the service */
    char *environment;      /* "" matches every environment */
    int kind;               /* SeriesKind to read (0: any kind with that name) */
    alr_agg_t agg;          /* metric rules */
    double quantile;        /* latency and quantile aggregates, 0 < q <= 1 */
    int64_t window_ms;      /* > 0 (absence: how long without data) */
    bool below;             /* fires when the value is below the threshold (else above) */
    double threshold;
    bool has_clear;
    double clear;           /* resolves only past this value (hysteresis) */
    int64_t for_ms;
    uint64_t min_count;     /* windows with fewer events have no value */
    alr_severity_t severity;
    long receiver;          /* `receiver:` shortcut, index, or -1 */
    long policy;            /* `policy:` shortcut, index into policies, or -1 */
    double slo;             /* burn rate: the objective, 0 < slo < 1 */
    alr_burn_pair_t pairs[ALR_BURN_PAIRS_MAX];
    size_t npairs;
    int64_t resolve_after_ms; /* issue rules: resolves this long after the last change */
    int min_level;          /* issue rules: tocsin.v1.Level at least this (0: any) */
    alr_labels_t labels;    /* the rule's own labels */
    alr_labels_t annotations; /* templates */
    uint64_t fingerprint;
    char fingerprint_hex[17];
    int line;
    char *file;             /* borrowed from the set's files */
} alr_rule_t;

typedef struct {
    int64_t group_wait_ms;       /* default 500ms */
    int64_t group_interval_ms;   /* default 1m */
    int64_t repeat_interval_ms;  /* default 4h */
    int64_t flap_window_ms;      /* default 10m */
    unsigned flap_threshold;     /* changes in the window that make flapping; default 6 */
    int64_t ack_ttl_ms;          /* default expiry of an acknowledgement; 0: never */
    int64_t resolve_after_ms;    /* issue alerts; default 1h */
    long fallback;               /* receiver index for self-alerts and unrouted alerts; -1 */
    int64_t retry_give_up_ms;    /* default 10m */
    unsigned retry_max_attempts; /* default 10 */
    int64_t retry_base_ms;       /* default 1s */
    int64_t retry_max_ms;        /* default 60s */
    unsigned breaker_failures;   /* consecutive failures that open the circuit; default 5 */
    int64_t breaker_cooldown_ms; /* default 30s */
    size_t digest_max_listed;    /* alerts listed by name in a digest; default 20 */
    size_t digest_after;         /* fresh notifications queued for an unlimited receiver
                                    beyond which they go as one digest; default 10 */
} alr_settings_t;

typedef struct {
    char *path;             /* the file(s) it came from */
    alr_settings_t settings;
    alr_receiver_t *receivers;
    size_t nreceivers;
    alr_policy_t *policies;
    size_t npolicies;
    alr_route_t *routes;
    size_t nroutes;
    alr_maintenance_t *maintenance;
    size_t nmaintenance;
    alr_rule_t *rules;
    size_t nrules;
    char **files;
    size_t nfiles;
} alr_ruleset_t;

/*
 * Reads and validates the rule file(s) at `paths` (one path, or several separated by
 * commas). Returns a rule set the caller frees with alr_ruleset_destroy, or NULL with
 * `err` holding "FILE:LINE: reason" (or "FILE: reason"): a file cannot be read or is above
 * ALR_RULES_FILE_MAX, a YAML syntax error, an unknown key, a missing or mistyped field, a
 * bad duration, a threshold out of range, an unknown or duplicate name, a duplicate rule
 * identity, a bad label name or template, an alert that no route or receiver would take,
 * or a limit exceeded.
 */
alr_ruleset_t *alr_ruleset_load_file(const char *paths, char *err, size_t errlen);

/* Same over `len` bytes of YAML at `data`; `name` stands for the file name. */
alr_ruleset_t *alr_ruleset_load_data(const char *data, size_t len, const char *name, char *err,
                                     size_t errlen);

/* Frees a rule set and everything in it. Safe to call twice and on NULL. */
void alr_ruleset_destroy(alr_ruleset_t **self_p);

/* The longest window any rule reads, in milliseconds (burn rates: their long windows). */
int64_t alr_ruleset_max_window_ms(const alr_ruleset_t *self);

/* Index of the rule with `fingerprint`, or -1. */
long alr_ruleset_find(const alr_ruleset_t *self, uint64_t fingerprint);

/* Index of the receiver called `name`, or -1. */
long alr_ruleset_receiver(const alr_ruleset_t *self, const char *name);

const char *alr_severity_name(alr_severity_t severity);
const char *alr_rule_type_name(alr_rule_type_t type);
const char *alr_receiver_type_name(alr_receiver_type_t type);
const char *alr_agg_name(alr_agg_t agg);

/* The rule's label set as a JSON object: alertname, service, severity, then the rule's
 * labels. New reference; NULL when out of memory. */
json_t *alr_rule_labels_json(const alr_rule_t *rule);

/* The loaded set as /api/v1/rules shows it. New reference; NULL when out of memory. */
json_t *alr_ruleset_to_json(const alr_ruleset_t *self);

/* The fingerprint of a label set given as a JSON object of strings: XXH64 over the
 * labels sorted by name, each as name 0xff value 0xff. */
uint64_t alr_labels_fingerprint(const json_t *labels);

/* Values a template may use. */
typedef struct {
    bool has_value;
    double value;
    double threshold;
    int64_t window_ms;
    int64_t for_ms;
    uint64_t count;
    uint64_t errors;
    const json_t *labels;
} alr_template_vars_t;

/*
 * Checks a template: text with {{ EXPR }} where EXPR is one of $value, $threshold,
 * $window, $for, $count, $errors, $labels.NAME, optionally followed by `| percent`,
 * `| ms`, `| humanize` or `| printf "%.Nf"`. Returns 0, or TC_EINVAL with `err` filled.
 */
int alr_template_check(const char *tmpl, char *err, size_t errlen);

/* Renders a checked template. Returns a string the caller frees, or NULL (out of memory). */
char *alr_template_render(const char *tmpl, const alr_template_vars_t *vars);

/* Parses an RFC 3339 time ("2026-01-02T03:04:05Z", fractions and +HH:MM offsets allowed)
 * into microseconds since the epoch. Returns 0 or TC_EINVAL. */
int alr_parse_time_us(const char *s, int64_t *out);

/* The rule's annotations rendered with `vars`. New reference; NULL when out of memory. */
json_t *alr_rule_annotations_render(const alr_rule_t *rule, const alr_template_vars_t *vars);

#endif
