#include "alr_rules.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <yaml.h>

#include "tc_error.h"
#include "tc_util.h"

/*
 * Loading happens in three passes over the same bytes:
 *  1. libyaml's event parser (the parser under libcyaml, linked through PkgConfig::CYAML)
 *     checks the syntax with exact line numbers, records the line of every rule and of
 *     every key in it, and reads the free-form `labels` and `annotations` maps, which a
 *     fixed libcyaml schema cannot describe;
 *  2. libcyaml loads everything else into the structs below, rejecting unknown keys,
 *     missing fields and malformed numbers (its backtrace gives the line);
 *  3. the fields are validated and converted into an alr_ruleset_t.
 */

/* ---- libcyaml schema ---------------------------------------------------------------- */

typedef struct {
    char *name;
    char *webhook;
} y_receiver_t;

typedef struct {
    char *alert;
    char *type;
    char *service;
    char *name;
    char *environment;
    char *window;
    double above;
    char *for_;
    uint64_t min_count;
    char *severity;
    char *receiver;
} y_rule_t;

typedef struct {
    y_receiver_t *receivers;
    unsigned receivers_count;
    y_rule_t *rules;
    unsigned rules_count;
} y_file_t;

static const cyaml_schema_field_t receiver_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, y_receiver_t, name, 1, 200),
    CYAML_FIELD_STRING_PTR("webhook", CYAML_FLAG_POINTER, y_receiver_t, webhook, 1, 2048),
    CYAML_FIELD_END};

static const cyaml_schema_value_t receiver_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, y_receiver_t, receiver_fields)};

static const cyaml_schema_field_t rule_fields[] = {
    CYAML_FIELD_STRING_PTR("alert", CYAML_FLAG_POINTER, y_rule_t, alert, 1, 200),
    CYAML_FIELD_STRING_PTR("type", CYAML_FLAG_POINTER, y_rule_t, type, 1, 64),
    CYAML_FIELD_STRING_PTR("service", CYAML_FLAG_POINTER, y_rule_t, service, 1, 128),
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, y_rule_t, name, 1,
                           256),
    CYAML_FIELD_STRING_PTR("environment", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, y_rule_t,
                           environment, 0, 64),
    CYAML_FIELD_STRING_PTR("window", CYAML_FLAG_POINTER, y_rule_t, window, 1, 32),
    CYAML_FIELD_FLOAT("above", CYAML_FLAG_DEFAULT, y_rule_t, above),
    CYAML_FIELD_STRING_PTR("for", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, y_rule_t, for_, 1,
                           32),
    CYAML_FIELD_UINT("min_count", CYAML_FLAG_OPTIONAL, y_rule_t, min_count),
    CYAML_FIELD_STRING_PTR("severity", CYAML_FLAG_POINTER, y_rule_t, severity, 1, 32),
    CYAML_FIELD_STRING_PTR("receiver", CYAML_FLAG_POINTER, y_rule_t, receiver, 1, 200),
    CYAML_FIELD_IGNORE("labels", CYAML_FLAG_OPTIONAL),
    CYAML_FIELD_IGNORE("annotations", CYAML_FLAG_OPTIONAL),
    CYAML_FIELD_END};

static const cyaml_schema_value_t rule_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, y_rule_t, rule_fields)};

static const cyaml_schema_field_t file_fields[] = {
    CYAML_FIELD_SEQUENCE("receivers", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, y_file_t,
                         receivers, &receiver_schema, 0, ALR_RECEIVERS_MAX),
    CYAML_FIELD_SEQUENCE("rules", CYAML_FLAG_POINTER, y_file_t, rules, &rule_schema, 0,
                         ALR_RULES_MAX),
    CYAML_FIELD_END};

static const cyaml_schema_value_t file_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, y_file_t, file_fields)};

/* ---- errors ------------------------------------------------------------------------- */

typedef struct {
    const char *name; /* the file's name for messages */
    char *err;
    size_t errlen;
} errctx_t;

static void fail(errctx_t *ec, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(errctx_t *ec, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0) {
        snprintf(ec->err, ec->errlen, "%s:%d: %s", ec->name, line, msg);
    } else {
        snprintf(ec->err, ec->errlen, "%s: %s", ec->name, msg);
    }
}

/* ---- pass 1: libyaml ---------------------------------------------------------------- */

/* The keys of a rule whose lines are remembered for error messages. */
static const char *const rule_keys[] = {"alert",  "type",      "service",  "name",
                                        "environment", "window", "above",  "for",
                                        "min_count",   "severity", "receiver", "labels",
                                        "annotations"};
#define NRULE_KEYS (sizeof(rule_keys) / sizeof(rule_keys[0]))

typedef struct {
    int line;              /* line of the entry */
    int key_line[NRULE_KEYS];
    alr_labels_t labels;
    alr_labels_t annotations;
} yinfo_rule_t;

typedef struct {
    yinfo_rule_t *rules;
    size_t nrules;
    int *receiver_lines;
    size_t nreceivers;
    int unknown_line; /* line of the first key no schema knows, 0 when none */
} yinfo_t;

static void labels_free(alr_labels_t *l)
{
    for (size_t i = 0; i < l->len; i++) {
        free(l->items[i].key);
        free(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

static void yinfo_free(yinfo_t *yi)
{
    for (size_t i = 0; i < yi->nrules; i++) {
        labels_free(&yi->rules[i].labels);
        labels_free(&yi->rules[i].annotations);
    }
    free(yi->rules);
    free(yi->receiver_lines);
    memset(yi, 0, sizeof(*yi));
}

typedef struct {
    yaml_parser_t parser;
    errctx_t *ec;
    yinfo_t *yi;
} walker_t;

static void note_unknown_key(walker_t *w, int line)
{
    if (w->yi->unknown_line == 0) {
        w->yi->unknown_line = line;
    }
}

static int line_of(const yaml_event_t *ev)
{
    return (int)ev->start_mark.line + 1;
}

/* Takes the next event. A syntax error or an alias fails the load. */
static int next_event(walker_t *w, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&w->parser, ev)) {
        fail(w->ec, (int)w->parser.problem_mark.line + 1, "YAML syntax error: %s",
             w->parser.problem ? w->parser.problem : "unknown");
        return TC_EPARSE;
    }
    if (ev->type == YAML_ALIAS_EVENT) {
        fail(w->ec, line_of(ev), "YAML aliases are not supported in rule files");
        yaml_event_delete(ev);
        return TC_EPARSE;
    }
    return 0;
}

/* Skips the rest of a node whose first event was `first` (already consumed). */
static int skip_node(walker_t *w, const yaml_event_t *first)
{
    if (first->type != YAML_MAPPING_START_EVENT && first->type != YAML_SEQUENCE_START_EVENT) {
        return 0;
    }
    int depth = 1;
    while (depth > 0) {
        yaml_event_t ev;
        int rc = next_event(w, &ev);
        if (rc != 0) {
            return rc;
        }
        if (ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT) {
            depth++;
        } else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        } else if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return TC_EPARSE;
        }
        yaml_event_delete(&ev);
    }
    return 0;
}

/* Reads a mapping of scalar to scalar (the mapping-start event is consumed). */
static int read_string_map(walker_t *w, const char *what, alr_labels_t *out)
{
    for (;;) {
        yaml_event_t kev;
        int rc = next_event(w, &kev);
        if (rc != 0) {
            return rc;
        }
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return 0;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            fail(w->ec, line_of(&kev), "%s: keys must be strings", what);
            yaml_event_delete(&kev);
            return TC_EPARSE;
        }
        yaml_event_t vev;
        rc = next_event(w, &vev);
        if (rc != 0) {
            yaml_event_delete(&kev);
            return rc;
        }
        if (vev.type != YAML_SCALAR_EVENT) {
            fail(w->ec, line_of(&vev), "%s: the value of \"%s\" must be a string", what,
                 (const char *)kev.data.scalar.value);
            yaml_event_delete(&kev);
            yaml_event_delete(&vev);
            return TC_EPARSE;
        }
        const char *k = (const char *)kev.data.scalar.value;
        const char *v = (const char *)vev.data.scalar.value;
        int kline = line_of(&kev);
        rc = 0;
        if (out->len >= ALR_LABELS_MAX) {
            fail(w->ec, kline, "%s: more than %d entries", what, ALR_LABELS_MAX);
            rc = TC_ETOOBIG;
        } else if (kev.data.scalar.length == 0 || kev.data.scalar.length > 128) {
            fail(w->ec, kline, "%s: a name must have 1 to 128 bytes", what);
            rc = TC_EINVAL;
        } else if (vev.data.scalar.length > 8192 ||
                   memchr(v, '\0', vev.data.scalar.length) ||
                   memchr(k, '\0', kev.data.scalar.length)) {
            fail(w->ec, kline, "%s: the value of \"%s\" is above 8192 bytes or holds NUL",
                 what, k);
            rc = TC_EINVAL;
        } else {
            for (size_t i = 0; i < out->len; i++) {
                if (strcmp(out->items[i].key, k) == 0) {
                    fail(w->ec, kline, "%s: \"%s\" appears twice", what, k);
                    rc = TC_EINVAL;
                    break;
                }
            }
        }
        if (rc == 0) {
            alr_label_t *items = realloc(out->items, (out->len + 1) * sizeof(*items));
            char *kd = strdup(k), *vd = strdup(v);
            if (!items || !kd || !vd) {
                if (items) {
                    out->items = items;
                }
                free(kd);
                free(vd);
                fail(w->ec, kline, "out of memory");
                rc = TC_ENOMEM;
            } else {
                out->items = items;
                out->items[out->len].key = kd;
                out->items[out->len].value = vd;
                out->len++;
            }
        }
        yaml_event_delete(&kev);
        yaml_event_delete(&vev);
        if (rc != 0) {
            return rc;
        }
    }
}

/* Reads one rule mapping (its start event consumed), recording key lines and maps. */
static int read_rule(walker_t *w, yinfo_rule_t *r)
{
    for (;;) {
        yaml_event_t kev;
        int rc = next_event(w, &kev);
        if (rc != 0) {
            return rc;
        }
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return 0;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            /* libcyaml reports this shape error; skip the odd key and its value. */
            rc = skip_node(w, &kev);
            yaml_event_delete(&kev);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        const char *key = (const char *)kev.data.scalar.value;
        int kline = line_of(&kev);
        size_t ki = NRULE_KEYS;
        for (size_t i = 0; i < NRULE_KEYS; i++) {
            if (strcmp(rule_keys[i], key) == 0) {
                ki = i;
                break;
            }
        }
        if (ki < NRULE_KEYS) {
            r->key_line[ki] = kline;
        } else {
            note_unknown_key(w, kline);
        }
        bool is_labels = strcmp(key, "labels") == 0;
        bool is_annotations = strcmp(key, "annotations") == 0;
        yaml_event_delete(&kev);
        yaml_event_t vev;
        rc = next_event(w, &vev);
        if (rc != 0) {
            return rc;
        }
        if (is_labels || is_annotations) {
            const char *what = is_labels ? "labels" : "annotations";
            alr_labels_t *dst = is_labels ? &r->labels : &r->annotations;
            if (dst->len > 0) {
                fail(w->ec, kline, "%s appears twice", what);
                yaml_event_delete(&vev);
                return TC_EPARSE;
            }
            if (vev.type == YAML_MAPPING_START_EVENT) {
                rc = read_string_map(w, what, dst);
            } else if (vev.type == YAML_SCALAR_EVENT && vev.data.scalar.length == 0) {
                rc = 0; /* `labels:` with nothing: an empty set */
            } else {
                fail(w->ec, kline, "%s must be a mapping of names to strings", what);
                rc = TC_EPARSE;
            }
        } else {
            rc = skip_node(w, &vev);
        }
        yaml_event_delete(&vev);
        if (rc != 0) {
            return rc;
        }
    }
}

/* Reads one receiver mapping (its start event consumed), noting unknown keys. */
static int read_receiver(walker_t *w)
{
    for (;;) {
        yaml_event_t kev;
        int rc = next_event(w, &kev);
        if (rc != 0) {
            return rc;
        }
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return 0;
        }
        if (kev.type == YAML_SCALAR_EVENT) {
            const char *k = (const char *)kev.data.scalar.value;
            if (strcmp(k, "name") != 0 && strcmp(k, "webhook") != 0) {
                note_unknown_key(w, line_of(&kev));
            }
        }
        rc = skip_node(w, &kev);
        yaml_event_delete(&kev);
        if (rc != 0) {
            return rc;
        }
        yaml_event_t vev;
        rc = next_event(w, &vev);
        if (rc != 0) {
            return rc;
        }
        rc = skip_node(w, &vev);
        yaml_event_delete(&vev);
        if (rc != 0) {
            return rc;
        }
    }
}

/* Reads the `rules` or `receivers` sequence (its start event consumed). */
static int read_sequence(walker_t *w, yinfo_t *yi, bool rules)
{
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(w, &ev);
        if (rc != 0) {
            return rc;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        size_t n = rules ? yi->nrules : yi->nreceivers;
        if (n >= (rules ? ALR_RULES_MAX : ALR_RECEIVERS_MAX)) {
            fail(w->ec, line_of(&ev), "more than %d %s", rules ? ALR_RULES_MAX : ALR_RECEIVERS_MAX,
                 rules ? "rules" : "receivers");
            yaml_event_delete(&ev);
            return TC_ETOOBIG;
        }
        if (rules) {
            yinfo_rule_t *r = realloc(yi->rules, (n + 1) * sizeof(*r));
            if (!r) {
                yaml_event_delete(&ev);
                fail(w->ec, 0, "out of memory");
                return TC_ENOMEM;
            }
            yi->rules = r;
            memset(&r[n], 0, sizeof(r[n]));
            r[n].line = line_of(&ev);
            yi->nrules++;
            if (ev.type == YAML_MAPPING_START_EVENT) {
                rc = read_rule(w, &r[n]);
            } else {
                rc = skip_node(w, &ev);
            }
        } else {
            int *l = realloc(yi->receiver_lines, (n + 1) * sizeof(*l));
            if (!l) {
                yaml_event_delete(&ev);
                fail(w->ec, 0, "out of memory");
                return TC_ENOMEM;
            }
            yi->receiver_lines = l;
            l[n] = line_of(&ev);
            yi->nreceivers++;
            rc = ev.type == YAML_MAPPING_START_EVENT ? read_receiver(w) : skip_node(w, &ev);
        }
        yaml_event_delete(&ev);
        if (rc != 0) {
            return rc;
        }
    }
}

static int walk(const char *data, size_t len, errctx_t *ec, yinfo_t *yi)
{
    walker_t w;
    memset(&w, 0, sizeof(w));
    w.ec = ec;
    w.yi = yi;
    if (!yaml_parser_initialize(&w.parser)) {
        fail(ec, 0, "out of memory");
        return TC_ENOMEM;
    }
    yaml_parser_set_input_string(&w.parser, (const unsigned char *)data, len);
    int rc = 0;
    int depth = 0;       /* nesting depth of the current event */
    bool at_key = false; /* in the root mapping, the next scalar is a key */
    char section = 0;    /* 'r' rules, 'v' receivers: the root key just read */
    for (;;) {
        yaml_event_t ev;
        rc = next_event(&w, &ev);
        if (rc != 0) {
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && depth == 0 && section == 'd') {
            fail(ec, line_of(&ev), "a rule file holds one YAML document");
            yaml_event_delete(&ev);
            rc = TC_EPARSE;
            break;
        }
        if (t == YAML_DOCUMENT_END_EVENT) {
            section = 'd';
        } else if (t == YAML_MAPPING_START_EVENT && depth == 0) {
            depth = 1;
            at_key = true;
        } else if (t == YAML_MAPPING_END_EVENT && depth == 1) {
            depth = 0;
        } else if (depth == 1 && at_key && t == YAML_SCALAR_EVENT) {
            const char *k = (const char *)ev.data.scalar.value;
            section = strcmp(k, "rules") == 0 ? 'r' : (strcmp(k, "receivers") == 0 ? 'v' : 0);
            if (!section) {
                note_unknown_key(&w, line_of(&ev));
            }
            at_key = false;
        } else if (depth == 1 && !at_key) {
            if (t == YAML_SEQUENCE_START_EVENT && (section == 'r' || section == 'v')) {
                size_t *count = section == 'r' ? &yi->nrules : &yi->nreceivers;
                if (*count > 0) {
                    fail(ec, line_of(&ev), "%s appears twice",
                         section == 'r' ? "rules" : "receivers");
                    rc = TC_EPARSE;
                } else {
                    rc = read_sequence(&w, yi, section == 'r');
                }
            } else {
                rc = skip_node(&w, &ev);
            }
            at_key = true;
            section = 0;
        } else if (depth == 1 && at_key) {
            /* A non-scalar key in the root mapping: libcyaml will reject the file. */
            rc = skip_node(&w, &ev);
            at_key = false;
        } else if (depth == 0 && (t == YAML_SEQUENCE_START_EVENT ||
                                  (t == YAML_SCALAR_EVENT && ev.data.scalar.length > 0))) {
            fail(ec, line_of(&ev), "the file must be a mapping with `receivers:` and `rules:`");
            rc = TC_EPARSE;
        }
        yaml_event_delete(&ev);
        if (rc != 0) {
            break;
        }
    }
    yaml_parser_delete(&w.parser);
    return rc;
}

/* ---- pass 2: libcyaml --------------------------------------------------------------- */

typedef struct {
    char msg[256];  /* the first error message */
    int line;       /* the first line named in the backtrace */
    char field[64]; /* the innermost mapping field named in the backtrace */
    int entry_line; /* the line of the innermost sequence entry (a rule, a receiver) */
} cylog_t;

/* Collects libcyaml's error lines. libcyaml writes a message and then a backtrace, one
 * line per call; the first message and the innermost position are what a user needs. */
static void cyaml_log_collect(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
    __attribute__((format(printf, 3, 0)));

static void cyaml_log_collect(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cylog_t *cl = ctx;
    if (level < CYAML_LOG_ERROR) {
        return;
    }
    char line[512];
    vsnprintf(line, sizeof(line), fmt, args);
    line[strcspn(line, "\n")] = '\0';
    const char *text = line;
    if (strncmp(text, "Load: ", 6) == 0) {
        text += 6;
    }
    while (*text == ' ') {
        text++;
    }
    if (strncmp(text, "Backtrace:", 10) == 0) {
        return;
    }
    const char *pos = strstr(text, "(line: ");
    if (strncmp(text, "in ", 3) == 0 && pos) {
        if (cl->line == 0) {
            cl->line = atoi(pos + 7);
        }
        if (cl->entry_line == 0 && strncmp(text, "in sequence entry", 17) == 0) {
            cl->entry_line = atoi(pos + 7);
        }
        const char *f = strstr(text, "mapping field '");
        if (f && !cl->field[0]) {
            f += 15;
            size_t n = strcspn(f, "'");
            if (n >= sizeof(cl->field)) {
                n = sizeof(cl->field) - 1;
            }
            memcpy(cl->field, f, n);
            cl->field[n] = '\0';
        }
        return;
    }
    if (!cl->msg[0]) {
        tc_strlcpy(cl->msg, text, sizeof(cl->msg));
    }
}

/* ---- pass 3: validation ------------------------------------------------------------- */

static char *dup_or(const char *s, const char *def)
{
    return strdup(s ? s : def);
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const alr_label_t *)a)->key, ((const alr_label_t *)b)->key);
}

static bool label_name_ok(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) {
        return false;
    }
    for (s++; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9'))) {
            return false;
        }
    }
    return true;
}

static bool webhook_ok(const char *url)
{
    const char *rest = NULL;
    if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
    }
    if (!rest || !*rest || *rest == '/') {
        return false;
    }
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

static int key_line(const yinfo_rule_t *yr, const char *key)
{
    for (size_t i = 0; i < NRULE_KEYS; i++) {
        if (strcmp(rule_keys[i], key) == 0 && yr->key_line[i] > 0) {
            return yr->key_line[i];
        }
    }
    return yr->line;
}

static bool parse_severity(const char *s, alr_severity_t *out)
{
    static const char *const names[] = {"critical", "error", "warning", "info"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (alr_severity_t)i;
            return true;
        }
    }
    return false;
}

static int build_rule(alr_ruleset_t *set, size_t idx, const y_rule_t *y, yinfo_rule_t *yr,
                      errctx_t *ec)
{
    alr_rule_t *r = &set->rules[idx];
    r->line = yr->line;
    const char *who = y->alert;
    if (!tc_utf8_valid(y->alert, strlen(y->alert))) {
        fail(ec, key_line(yr, "alert"), "rule %zu: alert is not valid UTF-8", idx + 1);
        return TC_EINVAL;
    }
    if (strcmp(y->type, "error_rate") != 0) {
        fail(ec, key_line(yr, "type"), "rule \"%s\": unknown type \"%s\" (known: error_rate)",
             who, y->type);
        return TC_EINVAL;
    }
    r->type = ALR_RULE_ERROR_RATE;
    if (!parse_severity(y->severity, &r->severity)) {
        fail(ec, key_line(yr, "severity"),
             "rule \"%s\": severity \"%s\" is not one of critical, error, warning, info", who,
             y->severity);
        return TC_EINVAL;
    }
    if (tc_duration_parse(y->window, &r->window_ms) != 0 || r->window_ms <= 0 ||
        r->window_ms > 7 * 86400 * 1000LL) {
        fail(ec, key_line(yr, "window"),
             "rule \"%s\": bad duration \"%s\" for window (e.g. 30s, 5m, 1h; at most 7d)", who,
             y->window);
        return TC_EINVAL;
    }
    r->for_ms = 0;
    if (y->for_ && (tc_duration_parse(y->for_, &r->for_ms) != 0 ||
                    r->for_ms > 7 * 86400 * 1000LL)) {
        fail(ec, key_line(yr, "for"), "rule \"%s\": bad duration \"%s\" for `for`", who,
             y->for_);
        return TC_EINVAL;
    }
    if (!isfinite(y->above) || y->above < 0.0 || y->above >= 1.0) {
        fail(ec, key_line(yr, "above"),
             "rule \"%s\": threshold above=%g out of range (an error rate: 0 <= above < 1)",
             who, y->above);
        return TC_EINVAL;
    }
    r->above = y->above;
    r->min_count = y->min_count > 0 ? y->min_count : 1;
    long rcv = -1;
    for (size_t i = 0; i < set->nreceivers; i++) {
        if (strcmp(set->receivers[i].name, y->receiver) == 0) {
            rcv = (long)i;
            break;
        }
    }
    if (rcv < 0) {
        fail(ec, key_line(yr, "receiver"), "rule \"%s\": unknown receiver \"%s\"", who,
             y->receiver);
        return TC_EINVAL;
    }
    r->receiver = (size_t)rcv;
    const char *strs[] = {y->service, y->name, y->environment};
    for (int i = 0; i < 3; i++) {
        if (strs[i] && !tc_utf8_valid(strs[i], strlen(strs[i]))) {
            fail(ec, yr->line, "rule \"%s\": a string is not valid UTF-8", who);
            return TC_EINVAL;
        }
    }
    for (size_t i = 0; i < yr->labels.len; i++) {
        const char *k = yr->labels.items[i].key;
        if (!label_name_ok(k)) {
            fail(ec, key_line(yr, "labels"),
                 "rule \"%s\": label name \"%s\" is not [a-zA-Z_][a-zA-Z0-9_]*", who, k);
            return TC_EINVAL;
        }
        if (!strcmp(k, "alertname") || !strcmp(k, "service") || !strcmp(k, "severity")) {
            fail(ec, key_line(yr, "labels"),
                 "rule \"%s\": label \"%s\" is set by the alerter and cannot be given", who, k);
            return TC_EINVAL;
        }
    }
    r->alert = strdup(y->alert);
    r->service = strdup(y->service);
    r->name = dup_or(y->name, "*");
    r->environment = dup_or(y->environment, "");
    if (!r->alert || !r->service || !r->name || !r->environment) {
        fail(ec, 0, "out of memory");
        return TC_ENOMEM;
    }
    /* The labels move from the walker's record into the rule. */
    r->labels = yr->labels;
    memset(&yr->labels, 0, sizeof(yr->labels));
    r->annotations = yr->annotations;
    memset(&yr->annotations, 0, sizeof(yr->annotations));
    if (r->labels.len > 1) {
        qsort(r->labels.items, r->labels.len, sizeof(alr_label_t), label_cmp);
    }
    if (r->annotations.len > 1) {
        qsort(r->annotations.items, r->annotations.len, sizeof(alr_label_t), label_cmp);
    }
    json_t *labels = alr_rule_labels_json(r);
    if (!labels) {
        fail(ec, 0, "out of memory");
        return TC_ENOMEM;
    }
    r->fingerprint = alr_labels_fingerprint(labels);
    json_decref(labels);
    snprintf(r->fingerprint_hex, sizeof(r->fingerprint_hex), "%016llx",
             (unsigned long long)r->fingerprint);
    for (size_t i = 0; i < idx; i++) {
        if (set->rules[i].fingerprint == r->fingerprint) {
            fail(ec, yr->line,
                 "rule \"%s\" has the same alertname and labels as the rule on line %d", who,
                 set->rules[i].line);
            return TC_EEXIST;
        }
    }
    return 0;
}

static int build_set(alr_ruleset_t *set, const y_file_t *y, yinfo_t *yi, errctx_t *ec)
{
    if (yi->nrules != y->rules_count || yi->nreceivers != y->receivers_count) {
        /* Both parsers read the same bytes; a mismatch is a bug here, reported. */
        fail(ec, 0, "internal error: the YAML passes disagree");
        return TC_EPARSE;
    }
    if (y->receivers_count > 0) {
        set->receivers = calloc(y->receivers_count, sizeof(*set->receivers));
        if (!set->receivers) {
            fail(ec, 0, "out of memory");
            return TC_ENOMEM;
        }
    }
    for (unsigned i = 0; i < y->receivers_count; i++) {
        const y_receiver_t *yr = &y->receivers[i];
        int line = yi->receiver_lines[i];
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(y->receivers[j].name, yr->name) == 0) {
                fail(ec, line, "receiver \"%s\" is defined twice", yr->name);
                return TC_EEXIST;
            }
        }
        if (!webhook_ok(yr->webhook)) {
            fail(ec, line, "receiver \"%s\": webhook \"%s\" is not an http:// or https:// URL",
                 yr->name, yr->webhook);
            return TC_EINVAL;
        }
        set->receivers[i].name = strdup(yr->name);
        set->receivers[i].webhook = strdup(yr->webhook);
        set->nreceivers++;
        if (!set->receivers[i].name || !set->receivers[i].webhook) {
            fail(ec, 0, "out of memory");
            return TC_ENOMEM;
        }
    }
    if (y->rules_count > 0) {
        set->rules = calloc(y->rules_count, sizeof(*set->rules));
        if (!set->rules) {
            fail(ec, 0, "out of memory");
            return TC_ENOMEM;
        }
    }
    for (unsigned i = 0; i < y->rules_count; i++) {
        set->nrules++; /* counted first so that destroy frees a half-built rule */
        int rc = build_rule(set, i, &y->rules[i], &yi->rules[i], ec);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

alr_ruleset_t *alr_ruleset_load_data(const char *data, size_t len, const char *name, char *err,
                                     size_t errlen)
{
    errctx_t ec = {name, err, errlen};
    err[0] = '\0';
    if (len > ALR_RULES_FILE_MAX) {
        fail(&ec, 0, "file above %u bytes", ALR_RULES_FILE_MAX);
        return NULL;
    }
    if (memchr(data, '\0', len)) {
        fail(&ec, 0, "file holds a NUL byte");
        return NULL;
    }
    yinfo_t yi;
    memset(&yi, 0, sizeof(yi));
    alr_ruleset_t *set = NULL;
    y_file_t *yf = NULL;
    cylog_t cl;
    memset(&cl, 0, sizeof(cl));
    cyaml_config_t cfg = {
        .log_fn = cyaml_log_collect,
        .log_ctx = &cl,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
    };
    if (walk(data, len, &ec, &yi) != 0) {
        goto out;
    }
    cyaml_err_t cerr = cyaml_load_data((const uint8_t *)data, len, &cfg, &file_schema,
                                       (cyaml_data_t **)&yf, NULL);
    if (cerr != CYAML_OK) {
        if (cerr == CYAML_ERR_MAPPING_FIELD_MISSING) {
            /* The backtrace names the last field read, not the one missing: point at the
             * entry that lacks it instead. */
            fail(&ec, cl.entry_line, "%s", cl.msg[0] ? cl.msg : cyaml_strerror(cerr));
        } else if (cerr == CYAML_ERR_INVALID_KEY && yi.unknown_line > 0) {
            fail(&ec, yi.unknown_line, "%s", cl.msg[0] ? cl.msg : cyaml_strerror(cerr));
        } else if (cl.field[0]) {
            fail(&ec, cl.line, "%s (in \"%s\")", cl.msg[0] ? cl.msg : cyaml_strerror(cerr),
                 cl.field);
        } else {
            fail(&ec, cl.line, "%s", cl.msg[0] ? cl.msg : cyaml_strerror(cerr));
        }
        yf = NULL;
        goto out;
    }
    if (!yf) {
        fail(&ec, 0, "empty file (it needs at least `rules:`)");
        goto out;
    }
    set = calloc(1, sizeof(*set));
    if (!set || !(set->path = strdup(name))) {
        fail(&ec, 0, "out of memory");
        goto out;
    }
    if (build_set(set, yf, &yi, &ec) != 0) {
        goto out;
    }
    yinfo_free(&yi);
    cyaml_free(&cfg, &file_schema, yf, 0);
    return set;
out:
    alr_ruleset_destroy(&set);
    if (yf) {
        cyaml_free(&cfg, &file_schema, yf, 0);
    }
    yinfo_free(&yi);
    if (!err[0]) {
        fail(&ec, 0, "invalid rule file");
    }
    return NULL;
}

alr_ruleset_t *alr_ruleset_load_file(const char *path, char *err, size_t errlen)
{
    errctx_t ec = {path, err, errlen};
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(&ec, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(ALR_RULES_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        fail(&ec, 0, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, ALR_RULES_FILE_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    alr_ruleset_t *set = NULL;
    if (bad) {
        fail(&ec, 0, "cannot read: %s", strerror(errno));
    } else if (n > ALR_RULES_FILE_MAX) {
        fail(&ec, 0, "file above %u bytes", ALR_RULES_FILE_MAX);
    } else {
        set = alr_ruleset_load_data(buf, n, path, err, errlen);
    }
    free(buf);
    return set;
}

void alr_ruleset_destroy(alr_ruleset_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_ruleset_t *self = *self_p;
    for (size_t i = 0; i < self->nreceivers; i++) {
        free(self->receivers[i].name);
        free(self->receivers[i].webhook);
    }
    free(self->receivers);
    for (size_t i = 0; i < self->nrules; i++) {
        alr_rule_t *r = &self->rules[i];
        free(r->alert);
        free(r->service);
        free(r->name);
        free(r->environment);
        labels_free(&r->labels);
        labels_free(&r->annotations);
    }
    free(self->rules);
    free(self->path);
    free(self);
    *self_p = NULL;
}

int64_t alr_ruleset_max_window_ms(const alr_ruleset_t *self)
{
    int64_t m = 0;
    for (size_t i = 0; self && i < self->nrules; i++) {
        if (self->rules[i].window_ms > m) {
            m = self->rules[i].window_ms;
        }
    }
    return m;
}

long alr_ruleset_find(const alr_ruleset_t *self, uint64_t fingerprint)
{
    for (size_t i = 0; self && i < self->nrules; i++) {
        if (self->rules[i].fingerprint == fingerprint) {
            return (long)i;
        }
    }
    return -1;
}

const char *alr_severity_name(alr_severity_t severity)
{
    switch (severity) {
    case ALR_SEVERITY_CRITICAL:
        return "critical";
    case ALR_SEVERITY_ERROR:
        return "error";
    case ALR_SEVERITY_WARNING:
        return "warning";
    default:
        return "info";
    }
}

const char *alr_rule_type_name(alr_rule_type_t type)
{
    (void)type;
    return "error_rate";
}

static int set_str(json_t *obj, const char *key, const char *value)
{
    json_t *s = json_string(value);
    if (!s) {
        return TC_ENOMEM;
    }
    return json_object_set_new(obj, key, s) == 0 ? 0 : TC_ENOMEM;
}

static json_t *labels_json(const alr_labels_t *l, json_t *obj)
{
    if (!obj) {
        return NULL;
    }
    for (size_t i = 0; i < l->len; i++) {
        if (set_str(obj, l->items[i].key, l->items[i].value) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *alr_rule_labels_json(const alr_rule_t *rule)
{
    json_t *obj = json_object();
    if (!obj || set_str(obj, "alertname", rule->alert) != 0 ||
        set_str(obj, "service", rule->service) != 0 ||
        set_str(obj, "severity", alr_severity_name(rule->severity)) != 0) {
        json_decref(obj);
        return NULL;
    }
    return labels_json(&rule->labels, obj);
}

json_t *alr_rule_annotations_json(const alr_rule_t *rule)
{
    return labels_json(&rule->annotations, json_object());
}

json_t *alr_ruleset_to_json(const alr_ruleset_t *self)
{
    json_t *rcv = json_array();
    json_t *rules = json_array();
    json_t *doc = json_object();
    if (!rcv || !rules || !doc) {
        goto oom;
    }
    for (size_t i = 0; i < self->nreceivers; i++) {
        json_t *r = json_pack("{s:s, s:s}", "name", self->receivers[i].name, "webhook",
                              self->receivers[i].webhook);
        if (!r || json_array_append_new(rcv, r) != 0) {
            goto oom;
        }
    }
    for (size_t i = 0; i < self->nrules; i++) {
        const alr_rule_t *r = &self->rules[i];
        char window[32], forbuf[32];
        tc_duration_format(r->window_ms, window, sizeof(window));
        tc_duration_format(r->for_ms, forbuf, sizeof(forbuf));
        json_t *j = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:s, s:I, s:s, s:s, s:o*, s:o*, s:s}", "alert",
            r->alert, "type", alr_rule_type_name(r->type), "service", r->service, "name",
            r->name, "environment", r->environment, "window", window, "above", r->above, "for",
            forbuf, "min_count", (json_int_t)r->min_count, "severity",
            alr_severity_name(r->severity), "receiver", self->receivers[r->receiver].name,
            "labels", alr_rule_labels_json(r), "annotations", alr_rule_annotations_json(r),
            "fingerprint", r->fingerprint_hex);
        if (!j || json_array_append_new(rules, j) != 0) {
            goto oom;
        }
    }
    if (set_str(doc, "file", self->path) != 0 || json_object_set_new(doc, "receivers", rcv) ||
        json_object_set_new(doc, "rules", rules)) {
        rcv = rules = NULL;
        json_decref(doc);
        return NULL;
    }
    return doc;
oom:
    json_decref(rcv);
    json_decref(rules);
    json_decref(doc);
    return NULL;
}

static int cstr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint64_t alr_labels_fingerprint(const json_t *labels)
{
    size_t n = json_object_size(labels);
    const char *stack_keys[80];
    const char **keys = n <= 80 ? stack_keys : malloc(n * sizeof(*keys));
    if (!keys) {
        return 0;
    }
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v)
    {
        keys[i++] = k;
    }
    qsort(keys, n, sizeof(*keys), cstr_cmp);
    XXH64_state_t *st = XXH64_createState();
    uint64_t h = 0;
    if (st) {
        static const unsigned char sep = 0xff;
        XXH64_reset(st, 0);
        for (i = 0; i < n; i++) {
            const char *val = json_string_value(json_object_get(labels, keys[i]));
            XXH64_update(st, keys[i], strlen(keys[i]));
            XXH64_update(st, &sep, 1);
            if (val) {
                XXH64_update(st, val, strlen(val));
            }
            XXH64_update(st, &sep, 1);
        }
        h = XXH64_digest(st);
        XXH64_freeState(st);
    }
    if (keys != stack_keys) {
        free(keys);
    }
    return h;
}
