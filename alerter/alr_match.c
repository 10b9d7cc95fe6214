#include "alr_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

const char *alr_match_op_name(alr_match_op_t op)
{
    switch (op) {
    case ALR_MATCH_EQ:
        return "=";
    case ALR_MATCH_NE:
        return "!=";
    case ALR_MATCH_RE:
        return "=~";
    default:
        return "!~";
    }
}

int alr_match_op_parse(const char *s, alr_match_op_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, alr_match_op_name((alr_match_op_t)i)) == 0) {
            *out = (alr_match_op_t)i;
            return 0;
        }
    }
    return TC_EINVAL;
}

bool alr_label_name_ok(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) {
        return false;
    }
    size_t n = 0;
    for (; *s; s++, n++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              (*s >= '0' && *s <= '9'))) {
            return false;
        }
    }
    return n <= 128;
}

int alr_matchers_add(alr_matchers_t *m, const char *name, alr_match_op_t op, const char *value,
                     char *err, size_t errlen)
{
    if (!alr_label_name_ok(name)) {
        snprintf(err, errlen, "matcher: \"%.100s\" is not a label name", name ? name : "");
        return TC_EINVAL;
    }
    if (!value || strlen(value) > ALR_MATCH_VALUE_MAX || !tc_utf8_valid(value, strlen(value))) {
        snprintf(err, errlen, "matcher %s: the value is missing, not UTF-8 or above %d bytes",
                 name, ALR_MATCH_VALUE_MAX);
        return TC_EINVAL;
    }
    if (m->len >= ALR_MATCHERS_MAX) {
        snprintf(err, errlen, "more than %d matchers", ALR_MATCHERS_MAX);
        return TC_EINVAL;
    }
    alr_matcher_t *items = realloc(m->items, (m->len + 1) * sizeof(*items));
    if (!items) {
        snprintf(err, errlen, "out of memory");
        return TC_ENOMEM;
    }
    m->items = items;
    alr_matcher_t *x = &items[m->len];
    memset(x, 0, sizeof(*x));
    x->op = op;
    if (op == ALR_MATCH_RE || op == ALR_MATCH_NRE) {
        char *anchored = NULL;
        if (asprintf(&anchored, "^(%s)$", value) < 0) {
            snprintf(err, errlen, "out of memory");
            return TC_ENOMEM;
        }
        int rc = regcomp(&x->re, anchored, REG_EXTENDED | REG_NOSUB);
        free(anchored);
        if (rc != 0) {
            char why[128];
            regerror(rc, &x->re, why, sizeof(why));
            snprintf(err, errlen, "matcher %s%s\"%.200s\": bad regular expression: %s", name,
                     alr_match_op_name(op), value, why);
            return TC_EINVAL;
        }
    }
    x->name = strdup(name);
    x->value = strdup(value);
    if (!x->name || !x->value) {
        free(x->name);
        free(x->value);
        if (op == ALR_MATCH_RE || op == ALR_MATCH_NRE) {
            regfree(&x->re);
        }
        snprintf(err, errlen, "out of memory");
        return TC_ENOMEM;
    }
    m->len++;
    return 0;
}

int alr_matchers_add_string(alr_matchers_t *m, const char *text, char *err, size_t errlen)
{
    while (*text == ' ') {
        text++;
    }
    size_t n = strcspn(text, "=!");
    if (text[n] == '\0' || n == 0 || n > 128) {
        snprintf(err, errlen, "matcher \"%.100s\" is not name=value, name!=value, name=~re or "
                 "name!~re", text);
        return TC_EINVAL;
    }
    char name[130];
    memcpy(name, text, n);
    name[n] = '\0';
    /* Trim spaces around the name. */
    while (n > 0 && name[n - 1] == ' ') {
        name[--n] = '\0';
    }
    const char *p = text + strlen(name);
    while (*p == ' ') {
        p++;
    }
    alr_match_op_t op;
    if (strncmp(p, "=~", 2) == 0) {
        op = ALR_MATCH_RE;
        p += 2;
    } else if (strncmp(p, "!~", 2) == 0) {
        op = ALR_MATCH_NRE;
        p += 2;
    } else if (strncmp(p, "!=", 2) == 0) {
        op = ALR_MATCH_NE;
        p += 2;
    } else if (*p == '=') {
        op = ALR_MATCH_EQ;
        p += 1;
    } else {
        snprintf(err, errlen, "matcher \"%.100s\": unknown operator", text);
        return TC_EINVAL;
    }
    while (*p == ' ') {
        p++;
    }
    size_t vl = strlen(p);
    while (vl > 0 && p[vl - 1] == ' ') {
        vl--;
    }
    char *value = strndup(p, vl);
    if (!value) {
        snprintf(err, errlen, "out of memory");
        return TC_ENOMEM;
    }
    if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
        memmove(value, value + 1, vl - 2);
        value[vl - 2] = '\0';
    }
    int rc = alr_matchers_add(m, name, op, value, err, errlen);
    free(value);
    return rc;
}

void alr_matchers_fini(alr_matchers_t *m)
{
    for (size_t i = 0; i < m->len; i++) {
        if (m->items[i].op == ALR_MATCH_RE || m->items[i].op == ALR_MATCH_NRE) {
            regfree(&m->items[i].re);
        }
        free(m->items[i].name);
        free(m->items[i].value);
    }
    free(m->items);
    m->items = NULL;
    m->len = 0;
}

static bool one_matches(const alr_matcher_t *x, const char *v)
{
    switch (x->op) {
    case ALR_MATCH_EQ:
        return strcmp(v, x->value) == 0;
    case ALR_MATCH_NE:
        return strcmp(v, x->value) != 0;
    case ALR_MATCH_RE:
        return regexec(&x->re, v, 0, NULL, 0) == 0;
    default:
        return regexec(&x->re, v, 0, NULL, 0) != 0;
    }
}

bool alr_matchers_match(const alr_matchers_t *m, const json_t *labels)
{
    for (size_t i = 0; i < m->len; i++) {
        const char *v = json_string_value(json_object_get(labels, m->items[i].name));
        if (!one_matches(&m->items[i], v ? v : "")) {
            return false;
        }
    }
    return true;
}

bool alr_matchers_selective(const alr_matchers_t *m)
{
    for (size_t i = 0; i < m->len; i++) {
        if (!one_matches(&m->items[i], "")) {
            return true;
        }
    }
    return false;
}

json_t *alr_matchers_json(const alr_matchers_t *m)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < m->len; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", m->items[i].name, "op",
                              alr_match_op_name(m->items[i].op), "value", m->items[i].value);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int alr_matchers_from_json(alr_matchers_t *m, const json_t *arr, char *err, size_t errlen)
{
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "matchers must be an array");
        return TC_EINVAL;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        int rc;
        if (json_is_string(v)) {
            rc = alr_matchers_add_string(m, json_string_value(v), err, errlen);
        } else if (json_is_object(v)) {
            const char *name = json_string_value(json_object_get(v, "name"));
            const char *value = json_string_value(json_object_get(v, "value"));
            const char *ops = json_string_value(json_object_get(v, "op"));
            alr_match_op_t op = ALR_MATCH_EQ;
            if (ops && alr_match_op_parse(ops, &op) != 0) {
                snprintf(err, errlen, "matcher %zu: op \"%.20s\" is not =, !=, =~ or !~", i, ops);
                return TC_EINVAL;
            }
            if (!ops) {
                /* Alertmanager's form: isRegex, isEqual. */
                bool re = json_is_true(json_object_get(v, "isRegex"));
                json_t *eq = json_object_get(v, "isEqual");
                bool ne = json_is_false(eq);
                op = re ? (ne ? ALR_MATCH_NRE : ALR_MATCH_RE) : (ne ? ALR_MATCH_NE : ALR_MATCH_EQ);
            }
            rc = alr_matchers_add(m, name, op, value, err, errlen);
        } else {
            snprintf(err, errlen, "matcher %zu must be an object or a string", i);
            return TC_EINVAL;
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
