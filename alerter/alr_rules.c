#include "alr_rules.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "alr_yaml.h"
#include "tc_error.h"
#include "tc_util.h"

/*
 * Loading: libyaml builds a tree with the line of every node (alr_yaml), then every
 * section is read from the tree by hand, so every unknown key, every missing field and
 * every bad value is reported with its exact line. Names are resolved (routes -> policies
 * -> receivers, rules -> receivers/policies) once every section is read.
 */

/* SeriesKind values (tocsin.v1.SeriesKind). */
#define KIND_REQUESTS 1
#define KIND_ERRORS 2
#define KIND_COUNTER 3
#define KIND_GAUGE 4
#define KIND_TIMING 5

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    bool failed;
} ctx_t;

static void fail(ctx_t *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(ctx_t *c, int line, const char *fmt, ...)
{
    if (c->failed) {
        return; /* the first error is the one reported */
    }
    c->failed = true;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0) {
        snprintf(c->err, c->errlen, "%s:%d: %s", c->file, line, msg);
    } else {
        snprintf(c->err, c->errlen, "%s: %s", c->file, msg);
    }
}

/* ---- typed access to the tree -------------------------------------------------------- */

/* Fails on keys of `map` that are not in `allowed` (NULL-terminated). */
static bool only_keys(ctx_t *c, const alr_yaml_t *map, const char *what,
                      const char *const *allowed)
{
    for (size_t i = 0; i < map->len; i++) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++) {
            ok = ok || strcmp(*a, map->keys[i]) == 0;
        }
        if (!ok) {
            char known[512] = "";
            size_t n = 0;
            for (const char *const *a = allowed; *a && n < sizeof(known) - 40; a++) {
                n += (size_t)snprintf(known + n, sizeof(known) - n, "%s%s", a == allowed ? "" : ", ",
                                      *a);
            }
            fail(c, map->key_lines[i], "%s: unknown key \"%.100s\" (known: %s)", what,
                 map->keys[i], known);
            return false;
        }
    }
    return true;
}

static bool want_map(ctx_t *c, const alr_yaml_t *n, const char *what)
{
    if (!n || n->kind != ALR_YAML_MAP) {
        fail(c, n ? n->line : 0, "%s must be a map (key: value lines)", what);
        return false;
    }
    return true;
}

/* A scalar string field; NULL (no failure) when absent and optional. */
static const char *get_str(ctx_t *c, const alr_yaml_t *map, const char *key, const char *what,
                           bool required, size_t maxlen)
{
    const alr_yaml_t *n = alr_yaml_get(map, key);
    if (!n || alr_yaml_is_null(n)) {
        if (required) {
            fail(c, map->line, "%s: missing required field \"%s\"", what, key);
        }
        return NULL;
    }
    if (n->kind != ALR_YAML_SCALAR) {
        fail(c, n->line, "%s: \"%s\" must be a single value, not a list or map", what, key);
        return NULL;
    }
    size_t l = strlen(n->str);
    if (l > maxlen) {
        fail(c, n->line, "%s: \"%s\" is longer than %zu bytes", what, key, maxlen);
        return NULL;
    }
    if (!tc_utf8_valid(n->str, l)) {
        fail(c, n->line, "%s: \"%s\" is not valid UTF-8", what, key);
        return NULL;
    }
    return n->str;
}

static bool get_double(ctx_t *c, const alr_yaml_t *map, const char *key, const char *what,
                       double *out)
{
    const char *s = get_str(c, map, key, what, false, 64);
    if (!s) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        fail(c, alr_yaml_key_line(map, key), "%s: \"%s\" must be a number, not \"%s\"", what, key,
             s);
        return false;
    }
    *out = v;
    return true;
}

static bool get_uint(ctx_t *c, const alr_yaml_t *map, const char *key, const char *what,
                     uint64_t max, uint64_t *out)
{
    const char *s = get_str(c, map, key, what, false, 32);
    if (!s) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max) {
        fail(c, alr_yaml_key_line(map, key), "%s: \"%s\" must be a whole number from 0 to %llu",
             what, key, (unsigned long long)max);
        return false;
    }
    *out = v;
    return true;
}

/* A duration; returns false when absent (or bad, with c->failed set). */
static bool get_duration(ctx_t *c, const alr_yaml_t *map, const char *key, const char *what,
                         int64_t max_ms, int64_t *out)
{
    const char *s = get_str(c, map, key, what, false, 32);
    if (!s) {
        return false;
    }
    int64_t ms = 0;
    if (tc_duration_parse(s, &ms) != 0 || ms > max_ms) {
        char maxs[32];
        tc_duration_format(max_ms, maxs, sizeof(maxs));
        fail(c, alr_yaml_key_line(map, key),
             "%s: bad duration \"%s\" for %s (e.g. 500ms, 30s, 5m, 1h; at most %s)", what, s,
             key, maxs);
        return false;
    }
    *out = ms;
    return true;
}

static bool get_bool(ctx_t *c, const alr_yaml_t *map, const char *key, const char *what,
                     bool *out)
{
    const char *s = get_str(c, map, key, what, false, 8);
    if (!s) {
        return false;
    }
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = true;
    } else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = false;
    } else {
        fail(c, alr_yaml_key_line(map, key), "%s: \"%s\" must be true or false", what, key);
        return false;
    }
    return true;
}

/* A list of strings (a single string is a list of one). */
static char **get_str_list(ctx_t *c, const alr_yaml_t *map, const char *key, const char *what,
                           size_t maxn, size_t *n_out)
{
    *n_out = 0;
    const alr_yaml_t *n = alr_yaml_get(map, key);
    if (!n || alr_yaml_is_null(n)) {
        return NULL;
    }
    const alr_yaml_t *const *items = NULL;
    size_t cnt = 1;
    const alr_yaml_t *single = n;
    if (n->kind == ALR_YAML_SEQ) {
        items = (const alr_yaml_t *const *)n->items;
        cnt = n->len;
    } else if (n->kind != ALR_YAML_SCALAR) {
        fail(c, n->line, "%s: \"%s\" must be a list of strings", what, key);
        return NULL;
    }
    if (cnt > maxn) {
        fail(c, n->line, "%s: \"%s\" has more than %zu entries", what, key, maxn);
        return NULL;
    }
    char **out = calloc(cnt ? cnt : 1, sizeof(*out));
    if (!out) {
        fail(c, n->line, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cnt; i++) {
        const alr_yaml_t *it = items ? items[i] : single;
        if (it->kind != ALR_YAML_SCALAR || !tc_utf8_valid(it->str, strlen(it->str)) ||
            strlen(it->str) > 1024) {
            fail(c, it->line, "%s: \"%s\" entries must be strings (UTF-8, at most 1024 bytes)",
                 what, key);
        } else if (!(out[i] = strdup(it->str))) {
            fail(c, it->line, "out of memory");
        }
        if (c->failed) {
            for (size_t j = 0; j <= i; j++) {
                free(out[j]);
            }
            free(out);
            return NULL;
        }
    }
    *n_out = cnt;
    return out;
}

static void str_list_free(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i]);
    }
    free(l);
}

/* Reads a rate: a number per second, or "N/s", "N/m", "N/h". */
static bool get_rate(ctx_t *c, const alr_yaml_t *map, const char *what, double *out)
{
    const char *s = get_str(c, map, "rate", what, false, 32);
    if (!s) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    double per = 1.0;
    if (end && *end == '/') {
        if (!strcmp(end, "/s")) {
            per = 1.0;
        } else if (!strcmp(end, "/m")) {
            per = 60.0;
        } else if (!strcmp(end, "/h")) {
            per = 3600.0;
        } else {
            end = NULL;
        }
        if (end) {
            end += strlen(end);
        }
    }
    if (errno || !end || end == s || *end || !isfinite(v) || v < 0) {
        fail(c, alr_yaml_key_line(map, "rate"),
             "%s: rate \"%s\" must be a number per second or N/s, N/m, N/h (0: unlimited)", what,
             s);
        return false;
    }
    *out = v / per;
    return true;
}

/* ---- labels and templates ------------------------------------------------------------ */

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

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const alr_label_t *)a)->key, ((const alr_label_t *)b)->key);
}

static bool read_labels(ctx_t *c, const alr_yaml_t *rule, const char *key, const char *what,
                        bool annotations, alr_labels_t *out)
{
    const alr_yaml_t *n = alr_yaml_get(rule, key);
    if (!n || alr_yaml_is_null(n)) {
        return true;
    }
    if (n->kind != ALR_YAML_MAP) {
        fail(c, n->line, "%s: %s must be a map of name: value", what, key);
        return false;
    }
    if (n->len > ALR_LABELS_MAX) {
        fail(c, n->line, "%s: more than %d %s", what, ALR_LABELS_MAX, key);
        return false;
    }
    out->items = calloc(n->len ? n->len : 1, sizeof(*out->items));
    if (!out->items) {
        fail(c, n->line, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n->len; i++) {
        const alr_yaml_t *v = n->items[i];
        const char *k = n->keys[i];
        int line = n->key_lines[i];
        if (!annotations && !alr_label_name_ok(k)) {
            fail(c, line, "%s: label name \"%.100s\" is not [a-zA-Z_][a-zA-Z0-9_]*", what, k);
            return false;
        }
        if (annotations && (!tc_utf8_valid(k, strlen(k)) || strlen(k) > 128 || !k[0])) {
            fail(c, line, "%s: annotation name \"%.100s\" is empty, too long or not UTF-8", what,
                 k);
            return false;
        }
        if (!annotations &&
            (!strcmp(k, "alertname") || !strcmp(k, "service") || !strcmp(k, "severity") ||
             !strcmp(k, "issue_id"))) {
            fail(c, line, "%s: label \"%s\" is set by the alerter and cannot be given", what, k);
            return false;
        }
        if (v->kind != ALR_YAML_SCALAR || !tc_utf8_valid(v->str, strlen(v->str)) ||
            strlen(v->str) > 4096) {
            fail(c, v->line, "%s: the value of %s \"%.100s\" must be a string (UTF-8, at most "
                 "4096 bytes)", what, annotations ? "annotation" : "label", k);
            return false;
        }
        if (annotations) {
            char terr[256];
            if (alr_template_check(v->str, terr, sizeof(terr)) != 0) {
                fail(c, v->line, "%s: annotation \"%.100s\": %s", what, k, terr);
                return false;
            }
        }
        out->items[i].key = strdup(k);
        out->items[i].value = strdup(v->str);
        out->len++;
        if (!out->items[i].key || !out->items[i].value) {
            fail(c, line, "out of memory");
            return false;
        }
    }
    if (out->len > 1) {
        qsort(out->items, out->len, sizeof(alr_label_t), label_cmp);
    }
    return true;
}

/* Template expressions: {{ $var [| filter] }}. */
typedef enum { TV_VALUE, TV_THRESHOLD, TV_WINDOW, TV_FOR, TV_COUNT, TV_ERRORS, TV_LABEL } tvar_t;
typedef enum { TF_NONE, TF_PERCENT, TF_MS, TF_HUMANIZE, TF_PRINTF } tfilter_t;

typedef struct {
    tvar_t var;
    char label[130];
    tfilter_t filter;
    int decimals;
} texpr_t;

static const char *skip_sp(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return p;
}

/* Parses the text between {{ and }}. */
static int texpr_parse(const char *p, const char *end, texpr_t *e, char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    p = skip_sp(p, end);
    static const struct {
        const char *name;
        tvar_t var;
    } vars[] = {{"$value", TV_VALUE}, {"$threshold", TV_THRESHOLD}, {"$window", TV_WINDOW},
                {"$for", TV_FOR},     {"$count", TV_COUNT},         {"$errors", TV_ERRORS}};
    bool found = false;
    if ((size_t)(end - p) > 8 && strncmp(p, "$labels.", 8) == 0) {
        const char *q = p + 8;
        size_t n = 0;
        while (q + n < end && q[n] != ' ' && q[n] != '|' && q[n] != '}') {
            n++;
        }
        if (n == 0 || n >= sizeof(e->label)) {
            snprintf(err, errlen, "bad label name in {{ $labels.NAME }}");
            return TC_EINVAL;
        }
        memcpy(e->label, q, n);
        e->label[n] = '\0';
        if (!alr_label_name_ok(e->label)) {
            snprintf(err, errlen, "\"%s\" is not a label name", e->label);
            return TC_EINVAL;
        }
        e->var = TV_LABEL;
        p = q + n;
        found = true;
    }
    for (size_t i = 0; !found && i < sizeof(vars) / sizeof(vars[0]); i++) {
        size_t l = strlen(vars[i].name);
        if ((size_t)(end - p) >= l && strncmp(p, vars[i].name, l) == 0 &&
            (p + l == end || p[l] == ' ' || p[l] == '|')) {
            e->var = vars[i].var;
            p += l;
            found = true;
        }
    }
    if (!found) {
        snprintf(err, errlen,
                 "unknown template value (known: $value, $threshold, $window, $for, $count, "
                 "$errors, $labels.NAME)");
        return TC_EINVAL;
    }
    p = skip_sp(p, end);
    if (p == end) {
        return 0;
    }
    if (*p != '|') {
        snprintf(err, errlen, "expected | or }} in a template");
        return TC_EINVAL;
    }
    p = skip_sp(p + 1, end);
    size_t rest = (size_t)(end - p);
    while (rest > 0 && (p[rest - 1] == ' ' || p[rest - 1] == '\t')) {
        rest--;
    }
    if (rest == 7 && strncmp(p, "percent", 7) == 0) {
        e->filter = TF_PERCENT;
    } else if (rest == 2 && strncmp(p, "ms", 2) == 0) {
        e->filter = TF_MS;
    } else if (rest == 8 && strncmp(p, "humanize", 8) == 0) {
        e->filter = TF_HUMANIZE;
    } else if (rest == 14 && strncmp(p, "printf \"%.", 10) == 0 && p[10] >= '0' &&
               p[10] <= '9' && p[11] == 'f' && p[12] == '"') {
        e->filter = TF_PRINTF;
        e->decimals = p[10] - '0';
    } else if (rest == 13 && strncmp(p, "printf \"%.", 10) == 0 && p[10] >= '0' &&
               p[10] <= '9' && p[11] == 'f' && p[12] == '"') {
        e->filter = TF_PRINTF;
        e->decimals = p[10] - '0';
    } else {
        snprintf(err, errlen, "unknown template filter (known: percent, ms, humanize, "
                 "printf \"%%.Nf\")");
        return TC_EINVAL;
    }
    if (e->var == TV_LABEL && e->filter != TF_NONE) {
        snprintf(err, errlen, "filters apply to numbers, not to labels");
        return TC_EINVAL;
    }
    return 0;
}

int alr_template_check(const char *t, char *err, size_t errlen)
{
    const char *p = t;
    while ((p = strstr(p, "{{")) != NULL) {
        const char *close = strstr(p + 2, "}}");
        if (!close) {
            snprintf(err, errlen, "\"{{\" without \"}}\"");
            return TC_EINVAL;
        }
        texpr_t e;
        if (texpr_parse(p + 2, close, &e, err, errlen) != 0) {
            return TC_EINVAL;
        }
        p = close + 2;
    }
    return 0;
}

/* A growing string. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *p, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t next = b->cap ? b->cap * 2 : 64;
        while (next < b->len + n + 1) {
            next *= 2;
        }
        char *s = realloc(b->s, next);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = next;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void fmt_number(char *buf, size_t len, double v, tfilter_t f, int decimals)
{
    switch (f) {
    case TF_PERCENT:
        snprintf(buf, len, "%.4g%%", v * 100.0);
        break;
    case TF_MS:
        snprintf(buf, len, "%.4g ms", v);
        break;
    case TF_HUMANIZE: {
        static const char *const sfx[] = {"", "k", "M", "G", "T"};
        int i = 0;
        double a = fabs(v);
        while (a >= 1000.0 && i < 4) {
            a /= 1000.0;
            v /= 1000.0;
            i++;
        }
        snprintf(buf, len, "%.4g%s", v, sfx[i]);
        break;
    }
    case TF_PRINTF:
        snprintf(buf, len, "%.*f", decimals, v);
        break;
    default:
        snprintf(buf, len, "%.6g", v);
        break;
    }
}

char *alr_template_render(const char *t, const alr_template_vars_t *v)
{
    sbuf_t b = {0};
    sb_add(&b, "", 0);
    const char *p = t;
    for (;;) {
        const char *open = strstr(p, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!open || !close) {
            sb_add(&b, p, strlen(p));
            break;
        }
        sb_add(&b, p, (size_t)(open - p));
        texpr_t e;
        char err[128], num[64];
        if (texpr_parse(open + 2, close, &e, err, sizeof(err)) != 0) {
            sb_add(&b, open, (size_t)(close + 2 - open));
        } else {
            switch (e.var) {
            case TV_LABEL: {
                const char *lv = json_string_value(json_object_get(v->labels, e.label));
                sb_add(&b, lv ? lv : "", lv ? strlen(lv) : 0);
                break;
            }
            case TV_WINDOW:
            case TV_FOR:
                if (e.filter == TF_NONE) {
                    tc_duration_format(e.var == TV_WINDOW ? v->window_ms : v->for_ms, num,
                                       sizeof(num));
                } else {
                    fmt_number(num, sizeof(num),
                               (double)(e.var == TV_WINDOW ? v->window_ms : v->for_ms), e.filter,
                               e.decimals);
                }
                sb_add(&b, num, strlen(num));
                break;
            case TV_VALUE:
                if (!v->has_value) {
                    sb_add(&b, "no data", 7);
                    break;
                }
                fmt_number(num, sizeof(num), v->value, e.filter, e.decimals);
                sb_add(&b, num, strlen(num));
                break;
            case TV_THRESHOLD:
                fmt_number(num, sizeof(num), v->threshold, e.filter, e.decimals);
                sb_add(&b, num, strlen(num));
                break;
            case TV_COUNT:
            case TV_ERRORS:
                fmt_number(num, sizeof(num), (double)(e.var == TV_COUNT ? v->count : v->errors),
                           e.filter, e.decimals);
                sb_add(&b, num, strlen(num));
                break;
            }
        }
        p = close + 2;
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

json_t *alr_rule_annotations_render(const alr_rule_t *rule, const alr_template_vars_t *vars)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < rule->annotations.len; i++) {
        char *s = alr_template_render(rule->annotations.items[i].value, vars);
        json_t *js = s ? json_string(s) : NULL;
        free(s);
        if (!js || json_object_set_new(obj, rule->annotations.items[i].key, js) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* ---- names --------------------------------------------------------------------------- */

const char *alr_severity_name(alr_severity_t s)
{
    switch (s) {
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

static const char *const type_names[ALR_RULE_TYPE_COUNT] = {
    "error_rate", "request_rate", "latency",          "metric",   "event_count",
    "absence",    "new_issue",    "regressed_issue",  "burn_rate"};

const char *alr_rule_type_name(alr_rule_type_t t)
{
    return (unsigned)t < ALR_RULE_TYPE_COUNT ? type_names[t] : "unknown";
}

const char *alr_receiver_type_name(alr_receiver_type_t t)
{
    switch (t) {
    case ALR_RCV_SLACK:
        return "slack";
    case ALR_RCV_PAGERDUTY:
        return "pagerduty";
    case ALR_RCV_EMAIL:
        return "email";
    default:
        return "webhook";
    }
}

static const char *const agg_names[] = {"none", "sum", "rate", "last",    "min",
                                        "max",  "avg", "quantile", "count"};

const char *alr_agg_name(alr_agg_t a)
{
    return (unsigned)a < sizeof(agg_names) / sizeof(agg_names[0]) ? agg_names[a] : "none";
}

/* ---- sections ------------------------------------------------------------------------ */

static bool url_ok(const char *u, bool smtp)
{
    if (smtp) {
        return strncmp(u, "smtp://", 7) == 0 || strncmp(u, "smtps://", 8) == 0;
    }
    return strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0;
}

static char *xstrdup(ctx_t *c, const char *s, int line)
{
    char *d = strdup(s ? s : "");
    if (!d) {
        fail(c, line, "out of memory");
    }
    return d;
}

static char *read_file_text(const char *path, size_t max, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max + 1);
    if (!buf) {
        fclose(f);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, max + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || n > max) {
        snprintf(why, whylen, bad ? "cannot read %s" : "%s is too large", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static void read_receiver(ctx_t *c, alr_ruleset_t *set, const alr_yaml_t *n, alr_receiver_t *r)
{
    static const char *const keys[] = {"name",     "type",     "url",      "webhook",
                                       "routing_key", "from",  "to",       "username",
                                       "password", "password_file", "starttls", "rate",
                                       "burst",    "timeout",  "notify_ack", NULL};
    if (!want_map(c, n, "receiver") || !only_keys(c, n, "receiver", keys)) {
        return;
    }
    r->line = n->line;
    const char *name = get_str(c, n, "name", "receiver", true, 200);
    if (!name) {
        return;
    }
    char what[260];
    snprintf(what, sizeof(what), "receiver \"%s\"", name);
    if (!(r->name = xstrdup(c, name, n->line))) {
        return;
    }
    for (size_t i = 0; i < set->nreceivers; i++) {
        if (strcmp(set->receivers[i].name, name) == 0) {
            fail(c, n->line, "receiver \"%s\" is defined twice (first on line %d)", name,
                 set->receivers[i].line);
            return;
        }
    }
    const char *type = get_str(c, n, "type", what, false, 32);
    const char *webhook = get_str(c, n, "webhook", what, false, 2048);
    const char *url = get_str(c, n, "url", what, false, 2048);
    if (c->failed) {
        return;
    }
    if (webhook && url) {
        fail(c, n->line, "%s: give url or webhook, not both", what);
        return;
    }
    if (!url) {
        url = webhook;
    }
    if (!type || !strcmp(type, "webhook")) {
        r->type = ALR_RCV_WEBHOOK;
    } else if (!strcmp(type, "slack")) {
        r->type = ALR_RCV_SLACK;
    } else if (!strcmp(type, "pagerduty")) {
        r->type = ALR_RCV_PAGERDUTY;
    } else if (!strcmp(type, "email")) {
        r->type = ALR_RCV_EMAIL;
    } else {
        fail(c, alr_yaml_key_line(n, "type"),
             "%s: type \"%s\" is not webhook, slack, pagerduty or email", what, type);
        return;
    }
    if (r->type == ALR_RCV_PAGERDUTY && !url) {
        url = "https://events.pagerduty.com/v2/enqueue";
    }
    if (!url) {
        fail(c, n->line, "%s: missing required field \"url\"", what);
        return;
    }
    if (!url_ok(url, r->type == ALR_RCV_EMAIL)) {
        fail(c, alr_yaml_key_line(n, webhook ? "webhook" : "url"), "%s: url \"%s\" is not an %s URL",
             what, url, r->type == ALR_RCV_EMAIL ? "smtp:// or smtps://" : "http:// or https://");
        return;
    }
    if (!(r->url = xstrdup(c, url, n->line))) {
        return;
    }
    const char *rk = get_str(c, n, "routing_key", what, r->type == ALR_RCV_PAGERDUTY, 255);
    if (rk && r->type != ALR_RCV_PAGERDUTY) {
        fail(c, alr_yaml_key_line(n, "routing_key"), "%s: routing_key is for pagerduty receivers",
             what);
    }
    if (rk && !(r->routing_key = xstrdup(c, rk, n->line))) {
        return;
    }
    if (r->type == ALR_RCV_EMAIL) {
        const char *from = get_str(c, n, "from", what, true, 256);
        if (from && !(r->from = xstrdup(c, from, n->line))) {
            return;
        }
        r->to = get_str_list(c, n, "to", what, 100, &r->nto);
        if (!c->failed && r->nto == 0) {
            fail(c, n->line, "%s: missing required field \"to\" (a list of addresses)", what);
        }
        for (size_t i = 0; !c->failed && i < r->nto; i++) {
            if (!strchr(r->to[i], '@') || strpbrk(r->to[i], "\r\n<>")) {
                fail(c, alr_yaml_key_line(n, "to"), "%s: \"%s\" is not an e-mail address", what,
                     r->to[i]);
            }
        }
        if (r->from && (!strchr(r->from, '@') || strpbrk(r->from, "\r\n<>"))) {
            fail(c, alr_yaml_key_line(n, "from"), "%s: \"%s\" is not an e-mail address", what,
                 r->from);
        }
        const char *user = get_str(c, n, "username", what, false, 256);
        const char *pw = get_str(c, n, "password", what, false, 256);
        const char *pwf = get_str(c, n, "password_file", what, false, 1024);
        if (user && !(r->username = xstrdup(c, user, n->line))) {
            return;
        }
        if (pw && pwf) {
            fail(c, n->line, "%s: give password or password_file, not both", what);
        } else if (pw) {
            r->password = xstrdup(c, pw, n->line);
        } else if (pwf) {
            char why[300];
            char *text = read_file_text(pwf, 4096, why, sizeof(why));
            if (!text) {
                fail(c, alr_yaml_key_line(n, "password_file"), "%s: %s", what, why);
            } else {
                text[strcspn(text, "\r\n")] = '\0';
                r->password = text;
            }
        }
        get_bool(c, n, "starttls", what, &r->starttls);
    } else {
        static const char *const email_only[] = {"from", "to", "username", "password",
                                                 "password_file", "starttls"};
        for (size_t i = 0; i < sizeof(email_only) / sizeof(email_only[0]); i++) {
            if (alr_yaml_get(n, email_only[i])) {
                fail(c, alr_yaml_key_line(n, email_only[i]), "%s: \"%s\" is for email receivers",
                     what, email_only[i]);
            }
        }
    }
    if (c->failed) {
        return;
    }
    /* The receivers' own limits by default: Slack takes one message a second per webhook,
     * PagerDuty about 120 events a minute per routing key (kept a little under, burst
     * included), mail servers dislike bursts; a generic webhook is not limited. */
    switch (r->type) {
    case ALR_RCV_SLACK:
        r->rate_per_s = 1.0; /* one a second (spaced from the last answer) */
        r->burst = 1.0;
        r->notify_ack = true;
        break;
    case ALR_RCV_PAGERDUTY:
        r->rate_per_s = 1.9;
        r->burst = 5.0;
        r->notify_ack = true;
        break;
    case ALR_RCV_EMAIL:
        r->rate_per_s = 0.2;
        r->burst = 5.0;
        r->notify_ack = false;
        break;
    default:
        r->rate_per_s = 0.0;
        r->burst = 1.0;
        r->notify_ack = false;
        break;
    }
    get_rate(c, n, what, &r->rate_per_s);
    double burst = 0;
    if (get_double(c, n, "burst", what, &burst)) {
        if (burst < 1.0 || burst > 100000.0) {
            fail(c, alr_yaml_key_line(n, "burst"), "%s: burst must be from 1 to 100000", what);
        }
        r->burst = burst;
    }
    r->timeout_ms = 10000;
    get_duration(c, n, "timeout", what, 300000, &r->timeout_ms);
    if (!c->failed && r->timeout_ms < 100) {
        fail(c, alr_yaml_key_line(n, "timeout"), "%s: timeout below 100ms", what);
    }
    get_bool(c, n, "notify_ack", what, &r->notify_ack);
}

static void read_policy(ctx_t *c, alr_ruleset_t *set, const alr_yaml_t *n, alr_policy_t *p)
{
    static const char *const keys[] = {"name", "tiers", "repeat", NULL};
    if (!want_map(c, n, "policy") || !only_keys(c, n, "policy", keys)) {
        return;
    }
    p->line = n->line;
    const char *name = get_str(c, n, "name", "policy", true, 200);
    if (!name || !(p->name = xstrdup(c, name, n->line))) {
        return;
    }
    char what[260];
    snprintf(what, sizeof(what), "policy \"%s\"", name);
    for (size_t i = 0; i < set->npolicies; i++) {
        if (strcmp(set->policies[i].name, name) == 0) {
            fail(c, n->line, "policy \"%s\" is defined twice (first on line %d)", name,
                 set->policies[i].line);
            return;
        }
    }
    const alr_yaml_t *tiers = alr_yaml_get(n, "tiers");
    if (!tiers || tiers->kind != ALR_YAML_SEQ || tiers->len == 0) {
        fail(c, tiers ? tiers->line : n->line, "%s: \"tiers\" must be a non-empty list", what);
        return;
    }
    if (tiers->len > ALR_TIERS_MAX) {
        fail(c, tiers->line, "%s: more than %d tiers", what, ALR_TIERS_MAX);
        return;
    }
    p->tiers = calloc(tiers->len, sizeof(*p->tiers));
    if (!p->tiers) {
        fail(c, n->line, "out of memory");
        return;
    }
    for (size_t i = 0; i < tiers->len; i++) {
        static const char *const tkeys[] = {"receivers", "timeout", NULL};
        const alr_yaml_t *t = tiers->items[i];
        char twhat[300];
        snprintf(twhat, sizeof(twhat), "%s tier %zu", what, i + 1);
        if (!want_map(c, t, twhat) || !only_keys(c, t, twhat, tkeys)) {
            return;
        }
        alr_tier_t *tier = &p->tiers[i];
        p->ntiers++;
        size_t nr = 0;
        char **names = get_str_list(c, t, "receivers", twhat, 64, &nr);
        if (c->failed) {
            return;
        }
        if (nr == 0) {
            fail(c, t->line, "%s: \"receivers\" must name at least one receiver", twhat);
            return;
        }
        tier->receivers = calloc(nr, sizeof(size_t));
        if (!tier->receivers) {
            str_list_free(names, nr);
            fail(c, t->line, "out of memory");
            return;
        }
        for (size_t j = 0; j < nr; j++) {
            long r = alr_ruleset_receiver(set, names[j]);
            if (r < 0) {
                fail(c, alr_yaml_key_line(t, "receivers"), "%s: unknown receiver \"%s\"", twhat,
                     names[j]);
                break;
            }
            tier->receivers[tier->nreceivers++] = (size_t)r;
        }
        str_list_free(names, nr);
        if (c->failed) {
            return;
        }
        tier->timeout_ms = 0;
        bool has = get_duration(c, t, "timeout", twhat, ALR_WINDOW_MAX_MS, &tier->timeout_ms);
        if (c->failed) {
            return;
        }
        if (i + 1 < tiers->len && (!has || tier->timeout_ms <= 0)) {
            fail(c, t->line, "%s: \"timeout\" is required (above 0) on every tier but the last",
                 twhat);
            return;
        }
    }
    uint64_t repeat = 0;
    if (get_uint(c, n, "repeat", what, 100, &repeat)) {
        p->repeat = (unsigned)repeat;
        if (repeat > 0 && p->tiers[p->ntiers - 1].timeout_ms <= 0) {
            fail(c, alr_yaml_key_line(n, "repeat"),
                 "%s: repeat needs a timeout on the last tier (how long before starting again)",
                 what);
        }
    }
}

static long policy_find(const alr_ruleset_t *set, const char *name)
{
    for (size_t i = 0; i < set->npolicies; i++) {
        if (strcmp(set->policies[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* `match:` as a map (name: value, each =) or a list of "name op value" strings. */
static void read_matchers(ctx_t *c, const alr_yaml_t *owner, const char *what, alr_matchers_t *m)
{
    const alr_yaml_t *n = alr_yaml_get(owner, "match");
    if (!n || alr_yaml_is_null(n)) {
        return;
    }
    char err[300];
    if (n->kind == ALR_YAML_MAP) {
        for (size_t i = 0; i < n->len; i++) {
            const alr_yaml_t *v = n->items[i];
            if (v->kind != ALR_YAML_SCALAR) {
                fail(c, v->line, "%s: match values must be strings", what);
                return;
            }
            if (alr_matchers_add(m, n->keys[i], ALR_MATCH_EQ, v->str, err, sizeof(err)) != 0) {
                fail(c, n->key_lines[i], "%s: %s", what, err);
                return;
            }
        }
        return;
    }
    if (n->kind != ALR_YAML_SEQ) {
        fail(c, n->line, "%s: match must be a map or a list of \"name=value\" strings", what);
        return;
    }
    for (size_t i = 0; i < n->len; i++) {
        const alr_yaml_t *v = n->items[i];
        if (v->kind != ALR_YAML_SCALAR) {
            fail(c, v->line, "%s: match entries must be strings such as \"service=~shop.*\"",
                 what);
            return;
        }
        if (alr_matchers_add_string(m, v->str, err, sizeof(err)) != 0) {
            fail(c, v->line, "%s: %s", what, err);
            return;
        }
    }
}

static void read_route(ctx_t *c, alr_ruleset_t *set, const alr_yaml_t *n, alr_route_t *r)
{
    static const char *const keys[] = {"match",          "policy",         "receiver",
                                       "group_by",       "group_wait",     "group_interval",
                                       "repeat_interval", NULL};
    if (!want_map(c, n, "route") || !only_keys(c, n, "route", keys)) {
        return;
    }
    r->line = n->line;
    read_matchers(c, n, "route", &r->match);
    const char *pol = get_str(c, n, "policy", "route", false, 200);
    const char *rcv = get_str(c, n, "receiver", "route", false, 200);
    if (c->failed) {
        return;
    }
    if ((pol != NULL) == (rcv != NULL)) {
        fail(c, n->line, "route: give exactly one of policy or receiver");
        return;
    }
    if (pol) {
        long p = policy_find(set, pol);
        if (p < 0) {
            fail(c, alr_yaml_key_line(n, "policy"), "route: unknown policy \"%s\"", pol);
            return;
        }
        r->policy = (size_t)p;
    } else {
        long p = -1;
        char name[220];
        snprintf(name, sizeof(name), "receiver:%s", rcv);
        p = policy_find(set, name);
        if (p < 0) {
            fail(c, alr_yaml_key_line(n, "receiver"), "route: unknown receiver \"%s\"", rcv);
            return;
        }
        r->policy = (size_t)p;
    }
    r->group_by = get_str_list(c, n, "group_by", "route", 32, &r->ngroup_by);
    for (size_t i = 0; !c->failed && i < r->ngroup_by; i++) {
        if (strcmp(r->group_by[i], "...") != 0 && !alr_label_name_ok(r->group_by[i])) {
            fail(c, alr_yaml_key_line(n, "group_by"), "route: \"%s\" is not a label name",
                 r->group_by[i]);
        }
    }
    r->group_wait_ms = set->settings.group_wait_ms;
    r->group_interval_ms = set->settings.group_interval_ms;
    r->repeat_interval_ms = set->settings.repeat_interval_ms;
    get_duration(c, n, "group_wait", "route", 3600000, &r->group_wait_ms);
    get_duration(c, n, "group_interval", "route", 86400000, &r->group_interval_ms);
    get_duration(c, n, "repeat_interval", "route", ALR_WINDOW_MAX_MS, &r->repeat_interval_ms);
}

/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM)" into microseconds. */
static int parse_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi;
    double sec;
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 &&
        sscanf(s, "%4d-%2d-%2d %2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6) {
        return TC_EINVAL;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 || sec >= 61) {
        return TC_EINVAL;
    }
    const char *z = s + n;
    int64_t off = 0;
    if (*z == 'Z' || *z == 'z') {
        z++;
    } else if (*z == '+' || *z == '-') {
        int oh, om;
        if (sscanf(z + 1, "%2d:%2d", &oh, &om) != 2) {
            return TC_EINVAL;
        }
        off = (int64_t)(oh * 3600 + om * 60) * (*z == '-' ? -1 : 1);
        z += 6;
    } else {
        return TC_EINVAL;
    }
    if (*z) {
        return TC_EINVAL;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = 0;
    time_t t = timegm(&tm);
    *out = ((int64_t)t - off) * 1000000 + (int64_t)(sec * 1e6 + 0.5);
    return 0;
}

int alr_parse_time_us(const char *s, int64_t *out)
{
    return s ? parse_time(s, out) : TC_EINVAL;
}

static void read_maintenance(ctx_t *c, const alr_yaml_t *n, alr_maintenance_t *m)
{
    static const char *const keys[] = {"match", "start", "end", "comment", NULL};
    if (!want_map(c, n, "maintenance window") || !only_keys(c, n, "maintenance window", keys)) {
        return;
    }
    m->line = n->line;
    read_matchers(c, n, "maintenance window", &m->match);
    if (!c->failed && !alr_matchers_selective(&m->match)) {
        fail(c, n->line, "maintenance window: \"match\" must hold a matcher that does not match "
             "everything");
        return;
    }
    const char *s = get_str(c, n, "start", "maintenance window", true, 64);
    const char *e = get_str(c, n, "end", "maintenance window", true, 64);
    if (c->failed) {
        return;
    }
    if (parse_time(s, &m->starts_us) != 0) {
        fail(c, alr_yaml_key_line(n, "start"), "maintenance window: start \"%s\" is not an RFC "
             "3339 time (2026-01-02T03:04:05Z)", s);
        return;
    }
    if (parse_time(e, &m->ends_us) != 0 || m->ends_us <= m->starts_us) {
        fail(c, alr_yaml_key_line(n, "end"), "maintenance window: end \"%s\" is not an RFC 3339 "
             "time after start", e);
        return;
    }
    const char *cm = get_str(c, n, "comment", "maintenance window", false, 1024);
    m->comment = xstrdup(c, cm ? cm : "", n->line);
    XXH64_state_t *st = XXH64_createState();
    if (st) {
        XXH64_reset(st, 7);
        XXH64_update(st, &m->starts_us, sizeof(m->starts_us));
        XXH64_update(st, &m->ends_us, sizeof(m->ends_us));
        for (size_t i = 0; i < m->match.len; i++) {
            XXH64_update(st, m->match.items[i].name, strlen(m->match.items[i].name) + 1);
            XXH64_update(st, &m->match.items[i].op, sizeof(m->match.items[i].op));
            XXH64_update(st, m->match.items[i].value, strlen(m->match.items[i].value) + 1);
        }
        snprintf(m->id, sizeof(m->id), "%016llx", (unsigned long long)XXH64_digest(st));
        XXH64_freeState(st);
    }
}

static void read_settings(ctx_t *c, alr_ruleset_t *set, const alr_yaml_t *n)
{
    alr_settings_t *s = &set->settings;
    if (!n) {
        return;
    }
    static const char *const keys[] = {"group_wait",    "group_interval", "repeat_interval",
                                       "flap_window",   "flap_threshold", "ack_ttl",
                                       "resolve_after", "fallback",       "retry",
                                       "breaker",       "digest_max_listed", "digest_after", NULL};
    if (!want_map(c, n, "settings") || !only_keys(c, n, "settings", keys)) {
        return;
    }
    get_duration(c, n, "group_wait", "settings", 3600000, &s->group_wait_ms);
    get_duration(c, n, "group_interval", "settings", 86400000, &s->group_interval_ms);
    get_duration(c, n, "repeat_interval", "settings", ALR_WINDOW_MAX_MS, &s->repeat_interval_ms);
    get_duration(c, n, "flap_window", "settings", 86400000, &s->flap_window_ms);
    uint64_t u;
    if (get_uint(c, n, "flap_threshold", "settings", 64, &u)) {
        if (u == 1) {
            fail(c, alr_yaml_key_line(n, "flap_threshold"),
                 "settings: flap_threshold must be 0 (off) or at least 2");
        }
        s->flap_threshold = (unsigned)u;
    }
    get_duration(c, n, "ack_ttl", "settings", ALR_WINDOW_MAX_MS, &s->ack_ttl_ms);
    get_duration(c, n, "resolve_after", "settings", ALR_WINDOW_MAX_MS, &s->resolve_after_ms);
    if (get_uint(c, n, "digest_max_listed", "settings", 1000, &u)) {
        s->digest_max_listed = u > 0 ? (size_t)u : 1;
    }
    if (get_uint(c, n, "digest_after", "settings", 100000, &u)) {
        s->digest_after = u > 0 ? (size_t)u : 1;
    }
    const alr_yaml_t *retry = alr_yaml_get(n, "retry");
    if (retry) {
        static const char *const rk[] = {"give_up_after", "max_attempts", "base", "max", NULL};
        if (want_map(c, retry, "settings.retry") && only_keys(c, retry, "settings.retry", rk)) {
            get_duration(c, retry, "give_up_after", "settings.retry", ALR_WINDOW_MAX_MS,
                         &s->retry_give_up_ms);
            if (get_uint(c, retry, "max_attempts", "settings.retry", 1000, &u)) {
                s->retry_max_attempts = u > 0 ? (unsigned)u : 1;
            }
            get_duration(c, retry, "base", "settings.retry", 3600000, &s->retry_base_ms);
            get_duration(c, retry, "max", "settings.retry", 86400000, &s->retry_max_ms);
            if (s->retry_base_ms < 1) {
                s->retry_base_ms = 1;
            }
            if (s->retry_max_ms < s->retry_base_ms) {
                s->retry_max_ms = s->retry_base_ms;
            }
        }
    }
    const alr_yaml_t *br = alr_yaml_get(n, "breaker");
    if (br) {
        static const char *const bk[] = {"failures", "cooldown", NULL};
        if (want_map(c, br, "settings.breaker") && only_keys(c, br, "settings.breaker", bk)) {
            if (get_uint(c, br, "failures", "settings.breaker", 1000, &u)) {
                s->breaker_failures = u > 0 ? (unsigned)u : 1;
            }
            get_duration(c, br, "cooldown", "settings.breaker", 86400000, &s->breaker_cooldown_ms);
        }
    }
}

/* ---- rules --------------------------------------------------------------------------- */

static bool parse_severity(const char *s, alr_severity_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, alr_severity_name((alr_severity_t)i)) == 0) {
            *out = (alr_severity_t)i;
            return true;
        }
    }
    return false;
}

static const char *const level_names[] = {"any", "trace", "debug", "info",
                                          "warning", "error", "fatal"};

static void read_burn_pairs(ctx_t *c, const alr_yaml_t *n, const char *what, alr_rule_t *r)
{
    const alr_yaml_t *w = alr_yaml_get(n, "windows");
    if (!w) {
        /* The SRE workbook's paging pairs. */
        r->pairs[0] = (alr_burn_pair_t){3600000, 300000, 14.4};
        r->pairs[1] = (alr_burn_pair_t){6 * 3600000LL, 1800000, 6.0};
        r->npairs = 2;
        return;
    }
    if (w->kind != ALR_YAML_SEQ || w->len == 0 || w->len > ALR_BURN_PAIRS_MAX) {
        fail(c, w->line, "%s: windows must be a list of 1 to %d {long, short, factor}", what,
             ALR_BURN_PAIRS_MAX);
        return;
    }
    for (size_t i = 0; i < w->len; i++) {
        static const char *const keys[] = {"long", "short", "factor", NULL};
        const alr_yaml_t *p = w->items[i];
        if (!want_map(c, p, "burn rate window") || !only_keys(c, p, "burn rate window", keys)) {
            return;
        }
        alr_burn_pair_t *bp = &r->pairs[i];
        if (!get_duration(c, p, "long", what, ALR_WINDOW_MAX_MS, &bp->long_ms) ||
            !get_duration(c, p, "short", what, ALR_WINDOW_MAX_MS, &bp->short_ms) ||
            !get_double(c, p, "factor", what, &bp->factor)) {
            fail(c, p->line, "%s: each window needs long, short and factor", what);
            return;
        }
        if (bp->short_ms <= 0 || bp->long_ms < bp->short_ms || bp->factor <= 0) {
            fail(c, p->line, "%s: a window needs 0 < short <= long and factor > 0", what);
            return;
        }
        r->npairs++;
    }
}

static void read_rule(ctx_t *c, alr_ruleset_t *set, const alr_yaml_t *n, alr_rule_t *r)
{
    static const char *const keys[] = {
        "alert",  "type",     "service",   "name",     "environment", "kind",
        "aggregate", "quantile", "window", "above",    "below",       "clear",
        "for",    "min_count", "severity", "receiver", "policy",      "slo",
        "windows", "resolve_after", "min_level", "labels", "annotations", NULL};
    if (!want_map(c, n, "rule") || !only_keys(c, n, "rule", keys)) {
        return;
    }
    r->line = n->line;
    r->receiver = -1;
    r->policy = -1;
    const char *alert = get_str(c, n, "alert", "rule", true, 200);
    if (!alert) {
        return;
    }
    if (!alert[0]) {
        fail(c, n->line, "rule: alert must not be empty");
        return;
    }
    char what[260];
    snprintf(what, sizeof(what), "rule \"%s\"", alert);
    const char *type = get_str(c, n, "type", what, true, 64);
    if (c->failed) {
        return;
    }
    bool known = false;
    for (int i = 0; i < ALR_RULE_TYPE_COUNT; i++) {
        if (strcmp(type, type_names[i]) == 0) {
            r->type = (alr_rule_type_t)i;
            known = true;
        }
    }
    if (!known) {
        fail(c, alr_yaml_key_line(n, "type"),
             "%s: unknown type \"%s\" (known: error_rate, request_rate, latency, metric, "
             "event_count, absence, new_issue, regressed_issue, burn_rate)",
             what, type);
        return;
    }
    const char *sev = get_str(c, n, "severity", what, true, 32);
    if (c->failed) {
        return;
    }
    if (!parse_severity(sev, &r->severity)) {
        fail(c, alr_yaml_key_line(n, "severity"),
             "%s: severity \"%s\" is not one of critical, error, warning, info", what, sev);
        return;
    }
    bool issue = r->type == ALR_RULE_NEW_ISSUE || r->type == ALR_RULE_REGRESSED_ISSUE;
    const char *service = get_str(c, n, "service", what, !issue, 128);
    const char *name = get_str(c, n, "name", what, r->type == ALR_RULE_METRIC, 256);
    const char *env = get_str(c, n, "environment", what, false, 64);
    if (c->failed) {
        return;
    }
    if (!issue && (!service[0] || !strcmp(service, "*"))) {
        fail(c, alr_yaml_key_line(n, "service"), "%s: service must name one service", what);
        return;
    }
    const char *def_name = "*";
    if (r->type == ALR_RULE_EVENT_COUNT) {
        def_name = "$errors";
    } else if (r->type == ALR_RULE_ABSENCE) {
        def_name = "heartbeat";
    }
    r->alert = xstrdup(c, alert, n->line);
    r->service = xstrdup(c, service ? service : "*", n->line);
    r->name = xstrdup(c, name ? name : def_name, n->line);
    r->environment = xstrdup(c, env ? env : "", n->line);
    if (c->failed) {
        return;
    }
    /* Which series kind the rule reads. */
    const char *kind = get_str(c, n, "kind", what, false, 16);
    switch (r->type) {
    case ALR_RULE_ERROR_RATE:
    case ALR_RULE_REQUEST_RATE:
    case ALR_RULE_LATENCY:
    case ALR_RULE_BURN_RATE:
        r->kind = KIND_REQUESTS;
        break;
    case ALR_RULE_EVENT_COUNT:
    case ALR_RULE_ABSENCE:
    case ALR_RULE_METRIC:
        r->kind = !strcmp(r->name, "$errors") ? KIND_ERRORS : 0;
        if (r->type == ALR_RULE_ABSENCE && !name && !kind) {
            r->kind = KIND_COUNTER; /* the client's heartbeat is a COUNTER metric */
        }
        break;
    default:
        r->kind = 0;
        break;
    }
    if (kind) {
        if (r->type != ALR_RULE_METRIC && r->type != ALR_RULE_EVENT_COUNT &&
            r->type != ALR_RULE_ABSENCE) {
            fail(c, alr_yaml_key_line(n, "kind"), "%s: kind is for metric, event_count and "
                 "absence rules", what);
            return;
        }
        static const char *const kinds[] = {"", "requests", "errors", "counter", "gauge",
                                            "timing"};
        r->kind = -1;
        for (int i = 1; i <= 5; i++) {
            if (!strcmp(kind, kinds[i])) {
                r->kind = i;
            }
        }
        if (r->kind < 0) {
            fail(c, alr_yaml_key_line(n, "kind"), "%s: kind \"%s\" is not requests, errors, "
                 "counter, gauge or timing", what, kind);
            return;
        }
    }
    /* Window. */
    bool needs_window = !issue && r->type != ALR_RULE_BURN_RATE;
    bool has_window = get_duration(c, n, "window", what, ALR_WINDOW_MAX_MS, &r->window_ms);
    if (c->failed) {
        return;
    }
    if (needs_window && (!has_window || r->window_ms < 1000)) {
        fail(c, has_window ? alr_yaml_key_line(n, "window") : n->line,
             "%s: %s", what, has_window ? "window must be at least 1s"
                                        : "missing required field \"window\"");
        return;
    }
    if (!needs_window && has_window) {
        fail(c, alr_yaml_key_line(n, "window"), "%s: %s rules take no window", what, type);
        return;
    }
    /* Aggregate and quantile. */
    const char *agg = get_str(c, n, "aggregate", what, r->type == ALR_RULE_METRIC, 16);
    if (c->failed) {
        return;
    }
    if (agg && r->type != ALR_RULE_METRIC) {
        fail(c, alr_yaml_key_line(n, "aggregate"), "%s: aggregate is for metric rules", what);
        return;
    }
    if (agg) {
        for (size_t i = 1; i < sizeof(agg_names) / sizeof(agg_names[0]); i++) {
            if (!strcmp(agg, agg_names[i])) {
                r->agg = (alr_agg_t)i;
            }
        }
        if (r->agg == ALR_AGG_NONE) {
            fail(c, alr_yaml_key_line(n, "aggregate"), "%s: aggregate \"%s\" is not sum, rate, "
                 "last, min, max, avg, quantile or count", what, agg);
            return;
        }
    }
    bool wants_q = r->type == ALR_RULE_LATENCY || r->agg == ALR_AGG_QUANTILE;
    bool has_q = get_double(c, n, "quantile", what, &r->quantile);
    if (c->failed) {
        return;
    }
    if (wants_q && !has_q) {
        r->quantile = 0.95;
    } else if (has_q && !wants_q) {
        fail(c, alr_yaml_key_line(n, "quantile"), "%s: quantile is for latency rules and "
             "metric rules with aggregate: quantile", what);
        return;
    }
    if (wants_q && (r->quantile <= 0.0 || r->quantile > 1.0)) {
        fail(c, alr_yaml_key_line(n, "quantile"), "%s: quantile must be in (0, 1]", what);
        return;
    }
    /* Thresholds. */
    bool threshold_rule = !issue && r->type != ALR_RULE_ABSENCE && r->type != ALR_RULE_BURN_RATE;
    double above = 0, below = 0;
    bool has_above = get_double(c, n, "above", what, &above);
    bool has_below = get_double(c, n, "below", what, &below);
    r->has_clear = get_double(c, n, "clear", what, &r->clear);
    if (c->failed) {
        return;
    }
    if (threshold_rule) {
        if (has_above == has_below) {
            fail(c, n->line, "%s: give exactly one of above or below", what);
            return;
        }
        r->below = has_below;
        r->threshold = has_below ? below : above;
        int tline = alr_yaml_key_line(n, has_below ? "below" : "above");
        if (r->type == ALR_RULE_ERROR_RATE && (r->threshold < 0 || r->threshold >= 1.0)) {
            fail(c, tline, "%s: threshold %g out of range (an error rate: 0 <= x < 1)", what,
                 r->threshold);
            return;
        }
        if (r->type != ALR_RULE_METRIC && r->threshold < 0) {
            fail(c, tline, "%s: threshold %g must not be negative", what, r->threshold);
            return;
        }
        if (r->has_clear && (r->below ? r->clear < r->threshold : r->clear > r->threshold)) {
            fail(c, alr_yaml_key_line(n, "clear"),
                 "%s: clear %g must be %s the threshold %g (it is where the alert resolves)",
                 what, r->clear, r->below ? "at or above" : "at or below", r->threshold);
            return;
        }
    } else if (has_above || has_below) {
        fail(c, alr_yaml_key_line(n, has_above ? "above" : "below"),
             "%s: %s rules take no above/below", what, type);
        return;
    } else if (r->has_clear && r->type != ALR_RULE_BURN_RATE) {
        fail(c, alr_yaml_key_line(n, "clear"), "%s: %s rules take no clear", what, type);
        return;
    }
    if (r->type == ALR_RULE_BURN_RATE) {
        if (!get_double(c, n, "slo", what, &r->slo)) {
            fail(c, n->line, "%s: missing required field \"slo\" (e.g. 0.999)", what);
            return;
        }
        if (r->slo <= 0 || r->slo >= 1) {
            fail(c, alr_yaml_key_line(n, "slo"), "%s: slo must be in (0, 1)", what);
            return;
        }
        if (r->has_clear && (r->clear <= 0 || r->clear > 1)) {
            fail(c, alr_yaml_key_line(n, "clear"),
                 "%s: clear is a fraction of each window's factor, in (0, 1]", what);
            return;
        }
        read_burn_pairs(c, n, what, r);
        for (size_t i = 0; i < r->npairs; i++) {
            if (r->pairs[i].long_ms > r->window_ms) {
                r->window_ms = r->pairs[i].long_ms;
            }
        }
        r->threshold = r->npairs ? r->pairs[0].factor : 0;
    } else if (alr_yaml_get(n, "slo") || alr_yaml_get(n, "windows")) {
        fail(c, alr_yaml_key_line(n, alr_yaml_get(n, "slo") ? "slo" : "windows"),
             "%s: slo and windows are for burn_rate rules", what);
        return;
    }
    if (c->failed) {
        return;
    }
    r->for_ms = 0;
    get_duration(c, n, "for", what, ALR_WINDOW_MAX_MS, &r->for_ms);
    if (issue && alr_yaml_get(n, "for")) {
        fail(c, alr_yaml_key_line(n, "for"), "%s: issue rules fire at once and take no for",
             what);
        return;
    }
    uint64_t mc = 0;
    if (get_uint(c, n, "min_count", what, UINT64_MAX / 2, &mc)) {
        r->min_count = mc;
    }
    if (r->min_count == 0) {
        r->min_count = 1;
    }
    r->resolve_after_ms = set->settings.resolve_after_ms;
    if (get_duration(c, n, "resolve_after", what, ALR_WINDOW_MAX_MS, &r->resolve_after_ms) &&
        !issue) {
        fail(c, alr_yaml_key_line(n, "resolve_after"), "%s: resolve_after is for issue rules",
             what);
        return;
    }
    const char *lvl = get_str(c, n, "min_level", what, false, 16);
    if (lvl) {
        if (!issue) {
            fail(c, alr_yaml_key_line(n, "min_level"), "%s: min_level is for issue rules", what);
            return;
        }
        r->min_level = -1;
        for (int i = 0; i < 7; i++) {
            if (!strcmp(lvl, level_names[i])) {
                r->min_level = i;
            }
        }
        if (r->min_level < 0) {
            fail(c, alr_yaml_key_line(n, "min_level"), "%s: min_level \"%s\" is not trace, debug, "
                 "info, warning, error or fatal", what, lvl);
            return;
        }
    }
    const char *rcv = get_str(c, n, "receiver", what, false, 200);
    const char *pol = get_str(c, n, "policy", what, false, 200);
    if (c->failed) {
        return;
    }
    if (rcv && pol) {
        fail(c, n->line, "%s: give receiver or policy, not both", what);
        return;
    }
    if (rcv) {
        char pname[220];
        snprintf(pname, sizeof(pname), "receiver:%s", rcv);
        r->policy = policy_find(set, pname);
        r->receiver = alr_ruleset_receiver(set, rcv);
        if (r->receiver < 0) {
            fail(c, alr_yaml_key_line(n, "receiver"), "%s: unknown receiver \"%s\"", what, rcv);
            return;
        }
    }
    if (pol) {
        r->policy = policy_find(set, pol);
        if (r->policy < 0) {
            fail(c, alr_yaml_key_line(n, "policy"), "%s: unknown policy \"%s\"", what, pol);
            return;
        }
    }
    if (!read_labels(c, n, "labels", what, false, &r->labels) ||
        !read_labels(c, n, "annotations", what, true, &r->annotations)) {
        return;
    }
    json_t *labels = alr_rule_labels_json(r);
    if (!labels) {
        fail(c, n->line, "out of memory");
        return;
    }
    if (issue) {
        /* Issue rules' alerts carry issue_id too; the rule's own identity adds its type so
         * that a new and a regressed rule of one name differ. */
        json_object_set_new(labels, "__type", json_string(type));
    }
    r->fingerprint = alr_labels_fingerprint(labels);
    json_decref(labels);
    snprintf(r->fingerprint_hex, sizeof(r->fingerprint_hex), "%016llx",
             (unsigned long long)r->fingerprint);
}

/* ---- the whole file ------------------------------------------------------------------ */

static void settings_defaults(alr_settings_t *s)
{
    s->group_wait_ms = 500;
    s->group_interval_ms = 60000;
    s->repeat_interval_ms = 4 * 3600000LL;
    s->flap_window_ms = 600000;
    s->flap_threshold = 6;
    s->ack_ttl_ms = 0;
    s->resolve_after_ms = 3600000;
    s->fallback = -1;
    s->retry_give_up_ms = 600000;
    s->retry_max_attempts = 10;
    s->retry_base_ms = 1000;
    s->retry_max_ms = 60000;
    s->breaker_failures = 5;
    s->breaker_cooldown_ms = 30000;
    s->digest_max_listed = 20;
    s->digest_after = 10;
}

static const alr_yaml_t *section(ctx_t *c, const alr_yaml_t *root, const char *key)
{
    const alr_yaml_t *n = alr_yaml_get(root, key);
    if (!n || alr_yaml_is_null(n)) {
        return NULL;
    }
    if (n->kind != ALR_YAML_SEQ) {
        fail(c, n->line, "\"%s\" must be a list (entries starting with \"- \")", key);
        return NULL;
    }
    return n;
}

/* Grows `*arr` (of `size`-byte items, `*n` used) by `add` zeroed items. */
static bool grow_by(ctx_t *c, void **arr, size_t n, size_t add, size_t size)
{
    if (add == 0) {
        return true;
    }
    void *p = realloc(*arr, (n + add) * size);
    if (!p) {
        fail(c, 0, "out of memory");
        return false;
    }
    memset((char *)p + n * size, 0, add * size);
    *arr = p;
    return true;
}

/* Adds a one-tier policy "receiver:NAME" for each receiver, for `receiver:` shortcuts. */
static void add_receiver_policies(ctx_t *c, alr_ruleset_t *set, size_t from)
{
    size_t add = set->nreceivers - from;
    if (!grow_by(c, (void **)&set->policies, set->npolicies, add, sizeof(*set->policies))) {
        return;
    }
    for (size_t i = from; i < set->nreceivers; i++) {
        alr_policy_t *p = &set->policies[set->npolicies++];
        if (asprintf(&p->name, "receiver:%s", set->receivers[i].name) < 0) {
            p->name = NULL;
            fail(c, 0, "out of memory");
            return;
        }
        p->synthetic = true;
        p->line = set->receivers[i].line;
        p->tiers = calloc(1, sizeof(*p->tiers));
        if (!p->tiers || !(p->tiers[0].receivers = calloc(1, sizeof(size_t)))) {
            fail(c, 0, "out of memory");
            return;
        }
        p->ntiers = 1;
        p->tiers[0].receivers[0] = i;
        p->tiers[0].nreceivers = 1;
    }
}

static void load_one(ctx_t *c, alr_ruleset_t *set, const char *data, size_t len)
{
    if (len > ALR_RULES_FILE_MAX) {
        fail(c, 0, "file above %u bytes", ALR_RULES_FILE_MAX);
        return;
    }
    if (memchr(data, '\0', len)) {
        fail(c, 0, "file holds a NUL byte");
        return;
    }
    char yerr[400];
    int yline = 0;
    alr_yaml_t *root = alr_yaml_parse(data, len, &yline, yerr, sizeof(yerr));
    if (!root) {
        fail(c, yline, "%s", yerr[0] ? yerr : "empty file (it needs at least `rules:`)");
        return;
    }
    static const char *const keys[] = {"settings", "receivers", "policies", "routes",
                                       "maintenance", "rules", NULL};
    if (!want_map(c, root, "the file") || !only_keys(c, root, "the file", keys)) {
        alr_yaml_free(root);
        return;
    }
    read_settings(c, set, alr_yaml_get(root, "settings"));
    const alr_yaml_t *rcv = section(c, root, "receivers");
    size_t first_rcv = set->nreceivers;
    if (rcv && set->nreceivers + rcv->len > ALR_RECEIVERS_MAX) {
        fail(c, rcv->line, "more than %d receivers", ALR_RECEIVERS_MAX);
    }
    if (rcv && grow_by(c, (void **)&set->receivers, set->nreceivers, rcv->len,
                       sizeof(*set->receivers))) {
        for (size_t i = 0; !c->failed && i < rcv->len; i++) {
            read_receiver(c, set, rcv->items[i], &set->receivers[set->nreceivers]);
            set->nreceivers++;
        }
    }
    if (!c->failed) {
        add_receiver_policies(c, set, first_rcv);
    }
    const alr_yaml_t *pol = section(c, root, "policies");
    if (pol && set->npolicies + pol->len > ALR_POLICIES_MAX + ALR_RECEIVERS_MAX) {
        fail(c, pol->line, "more than %d policies", ALR_POLICIES_MAX);
    }
    if (!c->failed && pol &&
        grow_by(c, (void **)&set->policies, set->npolicies, pol->len, sizeof(*set->policies))) {
        for (size_t i = 0; !c->failed && i < pol->len; i++) {
            read_policy(c, set, pol->items[i], &set->policies[set->npolicies]);
            set->npolicies++;
        }
    }
    const alr_yaml_t *rt = section(c, root, "routes");
    if (rt && set->nroutes + rt->len > ALR_ROUTES_MAX) {
        fail(c, rt->line, "more than %d routes", ALR_ROUTES_MAX);
    }
    if (!c->failed && rt &&
        grow_by(c, (void **)&set->routes, set->nroutes, rt->len, sizeof(*set->routes))) {
        for (size_t i = 0; !c->failed && i < rt->len; i++) {
            read_route(c, set, rt->items[i], &set->routes[set->nroutes]);
            set->nroutes++;
        }
    }
    const alr_yaml_t *mw = section(c, root, "maintenance");
    if (!c->failed && mw &&
        grow_by(c, (void **)&set->maintenance, set->nmaintenance, mw->len,
                sizeof(*set->maintenance))) {
        for (size_t i = 0; !c->failed && i < mw->len; i++) {
            read_maintenance(c, mw->items[i], &set->maintenance[set->nmaintenance]);
            set->nmaintenance++;
        }
    }
    const alr_yaml_t *rules = section(c, root, "rules");
    if (rules && set->nrules + rules->len > ALR_RULES_MAX) {
        fail(c, rules->line, "more than %d rules", ALR_RULES_MAX);
    }
    if (!c->failed && rules &&
        grow_by(c, (void **)&set->rules, set->nrules, rules->len, sizeof(*set->rules))) {
        size_t first = set->nrules;
        char *file = set->files[set->nfiles - 1];
        for (size_t i = 0; !c->failed && i < rules->len; i++) {
            alr_rule_t *r = &set->rules[set->nrules];
            r->file = file;
            read_rule(c, set, rules->items[i], r);
            set->nrules++;
            for (size_t j = 0; !c->failed && j < set->nrules - 1; j++) {
                if (set->rules[j].fingerprint == r->fingerprint) {
                    fail(c, r->line, "rule \"%s\" has the same alertname and labels as the rule "
                         "on line %d%s%s", r->alert, set->rules[j].line,
                         j < first ? " of " : "", j < first ? set->rules[j].file : "");
                }
            }
        }
    }
    alr_yaml_free(root);
}

/* Checks that every alert has somewhere to go. */
static void check_routing(ctx_t *c, alr_ruleset_t *set)
{
    bool catch_all = set->settings.fallback >= 0;
    for (size_t i = 0; i < set->nroutes; i++) {
        catch_all = catch_all || set->routes[i].match.len == 0;
    }
    for (size_t i = 0; !catch_all && i < set->nrules; i++) {
        const alr_rule_t *r = &set->rules[i];
        if (r->policy >= 0) {
            continue;
        }
        json_t *labels = alr_rule_labels_json(r);
        bool routed = false;
        for (size_t j = 0; labels && j < set->nroutes && !routed; j++) {
            routed = alr_matchers_match(&set->routes[j].match, labels);
        }
        json_decref(labels);
        if (!routed) {
            fail(c, r->line, "rule \"%s\" has no receiver or policy and no route takes it (add "
                 "one, a route without match, or settings.fallback)", r->alert);
            return;
        }
    }
}

static alr_ruleset_t *set_new(void)
{
    alr_ruleset_t *set = calloc(1, sizeof(*set));
    if (set) {
        settings_defaults(&set->settings);
    }
    return set;
}

static bool add_file(ctx_t *c, alr_ruleset_t *set, const char *name)
{
    char **f = realloc(set->files, (set->nfiles + 1) * sizeof(*f));
    if (!f) {
        fail(c, 0, "out of memory");
        return false;
    }
    set->files = f;
    if (!(f[set->nfiles] = strdup(name))) {
        fail(c, 0, "out of memory");
        return false;
    }
    set->nfiles++;
    return true;
}

/* The fallback names a receiver that may be defined after settings: resolved at the end. */
static void resolve_fallback(ctx_t *c, alr_ruleset_t *set, const char *name, int line)
{
    if (!name) {
        return;
    }
    set->settings.fallback = alr_ruleset_receiver(set, name);
    if (set->settings.fallback < 0) {
        fail(c, line, "settings: fallback names unknown receiver \"%s\"", name);
    }
}

/* Reads settings.fallback's name before the file is loaded (receivers come later). */
static char *peek_fallback(const char *data, size_t len, int *line)
{
    char err[64];
    int el;
    alr_yaml_t *root = alr_yaml_parse(data, len, &el, err, sizeof(err));
    const alr_yaml_t *fb = alr_yaml_get(alr_yaml_get(root, "settings"), "fallback");
    char *name = NULL;
    if (fb && fb->kind == ALR_YAML_SCALAR) {
        name = strdup(fb->str);
        *line = fb->line;
    }
    alr_yaml_free(root);
    return name;
}

static alr_ruleset_t *finish(ctx_t *c, alr_ruleset_t *set)
{
    if (!c->failed) {
        check_routing(c, set);
    }
    if (c->failed) {
        alr_ruleset_destroy(&set);
        return NULL;
    }
    return set;
}

alr_ruleset_t *alr_ruleset_load_data(const char *data, size_t len, const char *name, char *err,
                                     size_t errlen)
{
    ctx_t c = {name, err, errlen, false};
    err[0] = '\0';
    alr_ruleset_t *set = set_new();
    if (!set || !(set->path = strdup(name))) {
        fail(&c, 0, "out of memory");
        alr_ruleset_destroy(&set);
        return NULL;
    }
    if (add_file(&c, set, name)) {
        load_one(&c, set, data, len);
        int fl = 0;
        char *fb = c.failed ? NULL : peek_fallback(data, len, &fl);
        resolve_fallback(&c, set, fb, fl);
        free(fb);
    }
    return finish(&c, set);
}

alr_ruleset_t *alr_ruleset_load_file(const char *paths, char *err, size_t errlen)
{
    ctx_t c = {paths, err, errlen, false};
    err[0] = '\0';
    alr_ruleset_t *set = set_new();
    char *list = strdup(paths);
    if (!set || !list || !(set->path = strdup(paths))) {
        fail(&c, 0, "out of memory");
        free(list);
        alr_ruleset_destroy(&set);
        return NULL;
    }
    char *save = NULL;
    char *fb_name = NULL;
    int fb_line = 0;
    char *fb_file = NULL;
    for (char *p = strtok_r(list, ",", &save); p && !c.failed; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ') {
            p++;
        }
        if (!*p) {
            continue;
        }
        c.file = p;
        char why[512];
        char *text = read_file_text(p, ALR_RULES_FILE_MAX, why, sizeof(why));
        if (!text) {
            fail(&c, 0, "%s", why);
            break;
        }
        if (add_file(&c, set, p)) {
            load_one(&c, set, text, strlen(text));
        }
        int fl = 0;
        char *fb = c.failed ? NULL : peek_fallback(text, strlen(text), &fl);
        if (fb) {
            free(fb_name);
            free(fb_file);
            fb_name = fb;
            fb_line = fl;
            fb_file = strdup(p);
        }
        free(text);
    }
    if (!c.failed && fb_name) {
        c.file = fb_file ? fb_file : paths;
        resolve_fallback(&c, set, fb_name, fb_line);
    }
    if (!c.failed && set->nfiles == 0) {
        c.file = paths;
        fail(&c, 0, "no rule file given");
    }
    alr_ruleset_t *out = finish(&c, set);
    free(fb_name);
    free(fb_file);
    free(list);
    return out;
}

void alr_ruleset_destroy(alr_ruleset_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_ruleset_t *s = *self_p;
    for (size_t i = 0; i < s->nreceivers; i++) {
        alr_receiver_t *r = &s->receivers[i];
        free(r->name);
        free(r->url);
        free(r->routing_key);
        free(r->from);
        str_list_free(r->to, r->nto);
        free(r->username);
        if (r->password) {
            explicit_bzero(r->password, strlen(r->password));
        }
        free(r->password);
    }
    free(s->receivers);
    for (size_t i = 0; i < s->npolicies; i++) {
        for (size_t j = 0; j < s->policies[i].ntiers; j++) {
            free(s->policies[i].tiers[j].receivers);
        }
        free(s->policies[i].tiers);
        free(s->policies[i].name);
    }
    free(s->policies);
    for (size_t i = 0; i < s->nroutes; i++) {
        alr_matchers_fini(&s->routes[i].match);
        str_list_free(s->routes[i].group_by, s->routes[i].ngroup_by);
    }
    free(s->routes);
    for (size_t i = 0; i < s->nmaintenance; i++) {
        alr_matchers_fini(&s->maintenance[i].match);
        free(s->maintenance[i].comment);
    }
    free(s->maintenance);
    for (size_t i = 0; i < s->nrules; i++) {
        alr_rule_t *r = &s->rules[i];
        free(r->alert);
        free(r->service);
        free(r->name);
        free(r->environment);
        labels_free(&r->labels);
        labels_free(&r->annotations);
    }
    free(s->rules);
    str_list_free(s->files, s->nfiles);
    free(s->path);
    free(s);
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

long alr_ruleset_receiver(const alr_ruleset_t *self, const char *name)
{
    for (size_t i = 0; self && i < self->nreceivers; i++) {
        if (self->receivers[i].name && strcmp(self->receivers[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

static int set_str(json_t *obj, const char *key, const char *value)
{
    json_t *s = json_string(value);
    if (!s) {
        return TC_ENOMEM;
    }
    return json_object_set_new(obj, key, s) == 0 ? 0 : TC_ENOMEM;
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
    for (size_t i = 0; i < rule->labels.len; i++) {
        if (set_str(obj, rule->labels.items[i].key, rule->labels.items[i].value) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *labels_obj(const alr_labels_t *l)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < l->len; i++) {
        if (set_str(o, l->items[i].key, l->items[i].value) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static json_t *dur(int64_t ms)
{
    char b[32];
    tc_duration_format(ms, b, sizeof(b));
    return json_string(b);
}

json_t *alr_ruleset_to_json(const alr_ruleset_t *self)
{
    json_t *doc = json_object();
    json_t *rcv = json_array(), *pol = json_array(), *routes = json_array(),
           *rules = json_array(), *files = json_array();
    if (!doc || !rcv || !pol || !routes || !rules || !files) {
        goto oom;
    }
    for (size_t i = 0; i < self->nfiles; i++) {
        json_array_append_new(files, json_string(self->files[i]));
    }
    for (size_t i = 0; i < self->nreceivers; i++) {
        const alr_receiver_t *r = &self->receivers[i];
        json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:f, s:o, s:b}", "name", r->name, "type",
                              alr_receiver_type_name(r->type), "url", r->url, "rate_per_s",
                              r->rate_per_s, "burst", r->burst, "timeout", dur(r->timeout_ms),
                              "notify_ack", r->notify_ack);
        if (!j || json_array_append_new(rcv, j) != 0) {
            goto oom;
        }
    }
    for (size_t i = 0; i < self->npolicies; i++) {
        const alr_policy_t *p = &self->policies[i];
        if (p->synthetic) {
            continue;
        }
        json_t *tiers = json_array();
        for (size_t t = 0; tiers && t < p->ntiers; t++) {
            json_t *names = json_array();
            for (size_t k = 0; names && k < p->tiers[t].nreceivers; k++) {
                json_array_append_new(names,
                                      json_string(self->receivers[p->tiers[t].receivers[k]].name));
            }
            json_array_append_new(tiers, json_pack("{s:o*, s:o}", "receivers", names, "timeout",
                                                   dur(p->tiers[t].timeout_ms)));
        }
        json_t *j = json_pack("{s:s, s:o*, s:i}", "name", p->name, "tiers", tiers, "repeat",
                              (int)p->repeat);
        if (!j || json_array_append_new(pol, j) != 0) {
            goto oom;
        }
    }
    for (size_t i = 0; i < self->nroutes; i++) {
        const alr_route_t *r = &self->routes[i];
        json_t *gb = json_array();
        for (size_t k = 0; gb && k < r->ngroup_by; k++) {
            json_array_append_new(gb, json_string(r->group_by[k]));
        }
        json_t *j = json_pack("{s:o*, s:s, s:o*, s:o, s:o, s:o}", "match",
                              alr_matchers_json(&r->match), "policy",
                              self->policies[r->policy].name, "group_by", gb, "group_wait",
                              dur(r->group_wait_ms), "group_interval", dur(r->group_interval_ms),
                              "repeat_interval", dur(r->repeat_interval_ms));
        if (!j || json_array_append_new(routes, j) != 0) {
            goto oom;
        }
    }
    for (size_t i = 0; i < self->nrules; i++) {
        const alr_rule_t *r = &self->rules[i];
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:o*, s:o*, s:s, s:s, "
                              "s:i}",
                              "alert", r->alert, "type", alr_rule_type_name(r->type), "service",
                              r->service, "name", r->name, "environment", r->environment,
                              "window", dur(r->window_ms), "for", dur(r->for_ms), "severity",
                              alr_severity_name(r->severity), "labels", alr_rule_labels_json(r),
                              "annotations", labels_obj(&r->annotations), "fingerprint",
                              r->fingerprint_hex, "file", r->file ? r->file : "", "line",
                              r->line);
        if (!j) {
            goto oom;
        }
        bool threshold = r->type != ALR_RULE_ABSENCE && r->type != ALR_RULE_NEW_ISSUE &&
                         r->type != ALR_RULE_REGRESSED_ISSUE && r->type != ALR_RULE_BURN_RATE;
        if (threshold) {
            json_object_set_new(j, r->below ? "below" : "above", json_real(r->threshold));
            if (r->has_clear) {
                json_object_set_new(j, "clear", json_real(r->clear));
            }
            json_object_set_new(j, "min_count", json_integer((json_int_t)r->min_count));
        }
        if (r->type == ALR_RULE_METRIC) {
            json_object_set_new(j, "aggregate", json_string(alr_agg_name(r->agg)));
        }
        if (r->type == ALR_RULE_LATENCY || r->agg == ALR_AGG_QUANTILE) {
            json_object_set_new(j, "quantile", json_real(r->quantile));
        }
        if (r->type == ALR_RULE_BURN_RATE) {
            json_t *w = json_array();
            for (size_t k = 0; w && k < r->npairs; k++) {
                json_array_append_new(w, json_pack("{s:o, s:o, s:f}", "long",
                                                   dur(r->pairs[k].long_ms), "short",
                                                   dur(r->pairs[k].short_ms), "factor",
                                                   r->pairs[k].factor));
            }
            json_object_set_new(j, "slo", json_real(r->slo));
            json_object_set_new(j, "windows", w ? w : json_null());
        }
        if (r->receiver >= 0) {
            json_object_set_new(j, "receiver", json_string(self->receivers[r->receiver].name));
        } else if (r->policy >= 0) {
            json_object_set_new(j, "policy", json_string(self->policies[r->policy].name));
        }
        if (json_array_append_new(rules, j) != 0) {
            goto oom;
        }
    }
    json_object_set_new(doc, "files", files);
    json_object_set_new(doc, "receivers", rcv);
    json_object_set_new(doc, "policies", pol);
    json_object_set_new(doc, "routes", routes);
    json_object_set_new(doc, "rules", rules);
    json_object_set_new(doc, "fallback", self->settings.fallback >= 0
                                             ? json_string(self->receivers[self->settings.fallback].name)
                                             : json_null());
    return doc;
oom:
    json_decref(rcv);
    json_decref(pol);
    json_decref(routes);
    json_decref(rules);
    json_decref(files);
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
