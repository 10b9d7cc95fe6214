/*
 * ctl_prom.c — a bounded reader of the Prometheus text format. It works on a pointer and
 * an end, never past `len`, and copies what it keeps, so the input needs no terminator.
 */
#include "ctl_prom.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ctl_prom {
    ctl_prom_sample_t *items;
    size_t len, cap;
    size_t bad;
};

static void sample_free(ctl_prom_sample_t *s)
{
    free(s->name);
    for (size_t i = 0; i < s->nlabels; i++) {
        free(s->labels[i].key);
        free(s->labels[i].value);
    }
    free(s->labels);
    memset(s, 0, sizeof(*s));
}

void ctl_prom_destroy(ctl_prom_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    ctl_prom_t *self = *self_p;
    for (size_t i = 0; i < self->len; i++) {
        sample_free(&self->items[i]);
    }
    free(self->items);
    free(self);
    *self_p = NULL;
}

static bool name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

static void skip_blanks(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t')) {
        (*p)++;
    }
}

/* Reads a name ([a-zA-Z_:][a-zA-Z0-9_:]*, at most CTL_PROM_MAX_NAME bytes) as a new string;
 * NULL when there is none, it is too long, or memory ran out. */
static char *read_name(const char **p, const char *end, bool label)
{
    const char *s = *p;
    if (s >= end || !name_start(*s) || (label && *s == ':')) {
        return NULL;
    }
    const char *q = s + 1;
    while (q < end && name_char(*q) && !(label && *q == ':')) {
        q++;
    }
    if ((size_t)(q - s) > CTL_PROM_MAX_NAME) {
        return NULL;
    }
    *p = q;
    /* Not strndup: the text need not be terminated, and a copy of exactly n bytes reads
     * nothing beyond them. */
    size_t n = (size_t)(q - s);
    char *name = malloc(n + 1);
    if (name) {
        memcpy(name, s, n);
        name[n] = '\0';
    }
    return name;
}

/* Reads a quoted label value with its escapes; NULL when malformed or too long. */
static char *read_value(const char **p, const char *end)
{
    const char *q = *p;
    if (q >= end || *q != '"') {
        return NULL;
    }
    q++;
    char buf[CTL_PROM_MAX_VALUE + 1];
    size_t n = 0;
    while (q < end && *q != '"') {
        char c = *q++;
        if (c == '\n') {
            return NULL;
        }
        if (c == '\\') {
            if (q >= end) {
                return NULL;
            }
            char e = *q++;
            c = e == 'n' ? '\n' : e; /* \\ and \" stand for themselves */
            if (e != 'n' && e != '\\' && e != '"') {
                return NULL;
            }
        }
        if (n >= CTL_PROM_MAX_VALUE) {
            return NULL;
        }
        buf[n++] = c;
    }
    if (q >= end) {
        return NULL;
    }
    *p = q + 1;
    buf[n] = '\0';
    return strdup(buf);
}

/* Reads a number token: a float strtod accepts whole, or +Inf / -Inf / NaN. */
static bool read_number(const char **p, const char *end, double *out)
{
    const char *s = *p;
    const char *q = s;
    while (q < end && *q != ' ' && *q != '\t' && *q != '\r') {
        q++;
    }
    size_t n = (size_t)(q - s);
    char buf[64];
    if (n == 0 || n >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (!strcmp(buf, "+Inf") || !strcmp(buf, "Inf")) {
        *out = INFINITY;
    } else if (!strcmp(buf, "-Inf")) {
        *out = -INFINITY;
    } else if (!strcmp(buf, "NaN")) {
        *out = NAN;
    } else {
        char *e = NULL;
        double v = strtod(buf, &e);
        if (!e || *e != '\0' || buf[0] == ' ') {
            return false;
        }
        *out = v;
    }
    *p = q;
    return true;
}

/* Parses one line into `s`. Returns 1 for a sample, 0 for a line to skip (comment or
 * blank), -1 when malformed, -2 when out of memory. `s` holds what was read either way. */
static int parse_line(const char *p, const char *end, ctl_prom_sample_t *s)
{
    skip_blanks(&p, end);
    while (end > p && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    if (p == end || *p == '#') {
        return 0;
    }
    s->name = read_name(&p, end, false);
    if (!s->name) {
        return -1;
    }
    const char *before = p;
    skip_blanks(&p, end);
    bool blank = p > before;
    if (p < end && *p == '{') {
        p++;
        for (;;) {
            skip_blanks(&p, end);
            if (p < end && *p == '}') {
                p++;
                break;
            }
            if (s->nlabels >= CTL_PROM_MAX_LABELS) {
                return -1;
            }
            /* Grows by one: samples have few labels, and a bad line stops at the limit. */
            ctl_prom_label_t *grown = realloc(s->labels, (s->nlabels + 1) * sizeof(*grown));
            if (!grown) {
                return -2;
            }
            s->labels = grown;
            grown[s->nlabels].key = NULL;
            grown[s->nlabels].value = NULL;
            ctl_prom_label_t *l = &s->labels[s->nlabels];
            s->nlabels++;
            l->key = read_name(&p, end, true);
            if (!l->key) {
                return -1;
            }
            skip_blanks(&p, end);
            if (p >= end || *p != '=') {
                return -1;
            }
            p++;
            skip_blanks(&p, end);
            l->value = read_value(&p, end);
            if (!l->value) {
                return -1;
            }
            skip_blanks(&p, end);
            if (p < end && *p == ',') {
                p++;
            } else if (p >= end || *p != '}') {
                return -1;
            }
        }
        before = p;
        skip_blanks(&p, end);
        blank = p > before;
    }
    if (!blank) {
        return -1;
    }
    if (!read_number(&p, end, &s->value)) {
        return -1;
    }
    skip_blanks(&p, end);
    if (p < end) { /* an optional timestamp: an integer of milliseconds */
        double ts;
        if (!read_number(&p, end, &ts) || ts != floor(ts)) {
            return -1;
        }
        skip_blanks(&p, end);
        if (p != end) {
            return -1;
        }
    }
    return 1;
}

ctl_prom_t *ctl_prom_parse(const char *text, size_t len)
{
    ctl_prom_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    const char *p = text, *end = text ? text + len : text;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        ctl_prom_sample_t s = {0};
        int rc = parse_line(p, line_end, &s);
        p = nl ? nl + 1 : end;
        if (rc == 0) {
            sample_free(&s);
            continue;
        }
        if (rc == -2) {
            sample_free(&s);
            ctl_prom_destroy(&self);
            return NULL;
        }
        if (rc < 0 || self->len >= CTL_PROM_MAX_SAMPLES) {
            sample_free(&s);
            self->bad++;
            continue;
        }
        if (self->len == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 64;
            ctl_prom_sample_t *items = realloc(self->items, cap * sizeof(*items));
            if (!items) {
                sample_free(&s);
                ctl_prom_destroy(&self);
                return NULL;
            }
            self->items = items;
            self->cap = cap;
        }
        self->items[self->len++] = s;
    }
    return self;
}

size_t ctl_prom_count(const ctl_prom_t *self)
{
    return self ? self->len : 0;
}

const ctl_prom_sample_t *ctl_prom_sample(const ctl_prom_t *self, size_t i)
{
    return self && i < self->len ? &self->items[i] : NULL;
}

size_t ctl_prom_bad_lines(const ctl_prom_t *self)
{
    return self ? self->bad : 0;
}

const char *ctl_prom_label(const ctl_prom_sample_t *sample, const char *key)
{
    for (size_t i = 0; sample && i < sample->nlabels; i++) {
        if (strcmp(sample->labels[i].key, key) == 0) {
            return sample->labels[i].value;
        }
    }
    return NULL;
}

static bool matches(const ctl_prom_sample_t *s, const char *match)
{
    if (!match) {
        return true;
    }
    const char *eq = strchr(match, '=');
    if (!eq) {
        return false;
    }
    size_t klen = (size_t)(eq - match);
    for (size_t i = 0; i < s->nlabels; i++) {
        if (strlen(s->labels[i].key) == klen && strncmp(s->labels[i].key, match, klen) == 0) {
            return strcmp(s->labels[i].value, eq + 1) == 0;
        }
    }
    return false;
}

bool ctl_prom_sum(const ctl_prom_t *self, const char *name, const char *match, double *out)
{
    bool found = false;
    double sum = 0;
    for (size_t i = 0; self && i < self->len; i++) {
        const ctl_prom_sample_t *s = &self->items[i];
        if (strcmp(s->name, name) == 0 && matches(s, match)) {
            sum += s->value;
            found = true;
        }
    }
    if (found) {
        *out = sum;
    }
    return found;
}

bool ctl_prom_has(const ctl_prom_t *self, const char *name)
{
    for (size_t i = 0; self && i < self->len; i++) {
        if (strcmp(self->items[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}
