/*
 * alr_rules.h — the alerter's rule files: YAML parsed with libcyaml into plain structs,
 * validated as a whole.
 *
 * A rule file holds `receivers` (where notifications go) and `rules` (what to watch).
 * Today one rule type exists, `error_rate`: "the error rate of service S (route `name`,
 * environment E) over `window` is above `above` for `for`". The structs carry a `type` so
 * that later types (request rate, latency, absence, burn rate) add fields, not shapes.
 *
 * A file with any error is rejected whole: the loader answers NULL and an error text
 * naming the file, the line when one is known, and the reason. Nothing of a rejected file
 * is kept, so a caller can keep running the rules it already has.
 *
 * Each rule's identity is its fingerprint: a hash of its label set (alertname, service,
 * severity and the rule's own labels), computed the way Alertmanager fingerprints alerts.
 * Two rules of one file may not share it. Rules whose fingerprint survives a reload keep
 * their alert state.
 */
#ifndef ALR_RULES_H
#define ALR_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on what one file may hold; a file beyond them is rejected. */
#define ALR_RULES_FILE_MAX (4u * 1024 * 1024) /* bytes */
#define ALR_RULES_MAX 10000
#define ALR_RECEIVERS_MAX 1000
#define ALR_LABELS_MAX 64 /* labels, and annotations, per rule */

typedef enum {
    ALR_RULE_ERROR_RATE = 0, /* Σerrors / Σcount over the window's request buckets */
} alr_rule_type_t;

typedef enum {
    ALR_SEVERITY_CRITICAL = 0,
    ALR_SEVERITY_ERROR = 1,
    ALR_SEVERITY_WARNING = 2,
    ALR_SEVERITY_INFO = 3,
} alr_severity_t;

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
    char *webhook; /* http:// or https:// URL that gets the Alertmanager-style POST */
} alr_receiver_t;

typedef struct {
    char *alert;            /* the alertname */
    alr_rule_type_t type;
    char *service;
    char *name;             /* route; "*" merges every request series of the service */
    char *environment;      /* "" matches every environment */
    int64_t window_ms;      /* > 0 */
    double above;           /* fires when the error rate is strictly above; 0 <= above < 1 */
    int64_t for_ms;         /* >= 0: how long the condition must hold before firing */
    uint64_t min_count;     /* >= 1: windows with fewer requests never fire */
    alr_severity_t severity;
    size_t receiver;        /* index into the rule set's receivers */
    alr_labels_t labels;    /* the rule's own labels (not alertname/service/severity) */
    alr_labels_t annotations;
    uint64_t fingerprint;   /* identity: hash of the full label set */
    char fingerprint_hex[17];
    int line;               /* line of the rule in its file (1-based), 0 when unknown */
} alr_rule_t;

typedef struct {
    char *path;             /* the file it came from ("<memory>" for a buffer) */
    alr_receiver_t *receivers;
    size_t nreceivers;
    alr_rule_t *rules;
    size_t nrules;
} alr_ruleset_t;

/*
 * Reads and validates the rule file at `path`. Returns a rule set the caller frees with
 * alr_ruleset_destroy, or NULL with `err` holding "FILE:LINE: reason" (or "FILE: reason"
 * when no line is known): the file cannot be read or is above ALR_RULES_FILE_MAX, a YAML
 * syntax error, an unknown key, a missing required field, a bad duration, a threshold out
 * of range, an unknown or duplicate receiver, a duplicate rule identity, a bad label name,
 * or a limit exceeded.
 */
alr_ruleset_t *alr_ruleset_load_file(const char *path, char *err, size_t errlen);

/* Same as alr_ruleset_load_file over `len` bytes of YAML at `data`; `name` stands for the
 * file name in errors and in the rule set's `path`. */
alr_ruleset_t *alr_ruleset_load_data(const char *data, size_t len, const char *name, char *err,
                                     size_t errlen);

/* Frees a rule set and everything in it. Safe to call twice and on NULL. */
void alr_ruleset_destroy(alr_ruleset_t **self_p);

/* The longest window of any rule, in milliseconds; 0 for an empty set. */
int64_t alr_ruleset_max_window_ms(const alr_ruleset_t *self);

/* Index of the rule with `fingerprint`, or -1. */
long alr_ruleset_find(const alr_ruleset_t *self, uint64_t fingerprint);

/* "critical", "error", "warning", "info". */
const char *alr_severity_name(alr_severity_t severity);

/* "error_rate". */
const char *alr_rule_type_name(alr_rule_type_t type);

/* The alert's full label set as a JSON object: alertname, service, severity, then the
 * rule's labels. New reference; NULL when out of memory. */
json_t *alr_rule_labels_json(const alr_rule_t *rule);

/* The rule's annotations as a JSON object. New reference; NULL when out of memory. */
json_t *alr_rule_annotations_json(const alr_rule_t *rule);

/* The rule set as /api/v1/rules shows it: {"file":..., "receivers":[...], "rules":[...]}.
 * New reference; NULL when out of memory. */
json_t *alr_ruleset_to_json(const alr_ruleset_t *self);

/* The fingerprint of a label set given as a JSON object of strings: XXH64 over the
 * labels sorted by name, each as name 0xff value 0xff. */
uint64_t alr_labels_fingerprint(const json_t *labels);

#endif
