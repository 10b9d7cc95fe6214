/*
 * ctl_rules.c — validation through the alerter's parser, and the notification plan of each
 * rule, computed from the rule set's JSON form.
 *
 * Route matching follows docs/alerter.md: matchers `name op value` with op =, !=, =~, !~;
 * regular expressions are POSIX extended, anchored at both ends; an absent label is the
 * empty string; the first route whose matchers all match takes the alert.
 */
#include "ctl_rules.h"

#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alr_rules.h"
#include "ctl_table.h"
#include "ctl_view.h"
#include "tc_util.h"

json_t *ctl_rules_load(const char *paths, char *err, size_t errlen)
{
    alr_ruleset_t *set = alr_ruleset_load_file(paths, err, errlen);
    if (!set) {
        return NULL;
    }
    json_t *doc = alr_ruleset_to_json(set);
    alr_ruleset_destroy(&set);
    if (!doc) {
        snprintf(err, errlen, "out of memory");
    }
    return doc;
}

static const char *str_or(const json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int64_t dur_ms(const json_t *v)
{
    int64_t ms = 0;
    if (json_is_string(v) && tc_duration_parse(json_string_value(v), &ms) == 0) {
        return ms;
    }
    if (json_is_integer(v)) {
        return json_integer_value(v);
    }
    return 0;
}

/* One matcher against a label set; see the file comment. */
static bool matcher_matches(const char *name, const char *op, const char *value,
                            const json_t *labels)
{
    const char *have = str_or(json_object_get(labels, name), "");
    if (strcmp(op, "=") == 0) {
        return strcmp(have, value) == 0;
    }
    if (strcmp(op, "!=") == 0) {
        return strcmp(have, value) != 0;
    }
    bool negate = strcmp(op, "!~") == 0;
    if (!negate && strcmp(op, "=~") != 0) {
        return false;
    }
    size_t n = strlen(value);
    char *anchored = malloc(n + 5);
    if (!anchored) {
        return false;
    }
    snprintf(anchored, n + 5, "^(%s)$", value);
    regex_t re;
    bool m = false;
    if (regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) == 0) {
        m = regexec(&re, have, 0, NULL, 0) == 0;
        regfree(&re);
    }
    free(anchored);
    return negate ? !m : m;
}

/* Matchers as the JSON form holds them: objects {name, op, value} or "name=value" strings. */
static bool matchers_match(const json_t *ms, const json_t *labels)
{
    size_t i;
    json_t *m;
    json_array_foreach((json_t *)ms, i, m)
    {
        if (json_is_object(m)) {
            if (!matcher_matches(str_or(json_object_get(m, "name"), ""),
                                 str_or(json_object_get(m, "op"), "="),
                                 str_or(json_object_get(m, "value"), ""), labels)) {
                return false;
            }
            continue;
        }
        const char *s = str_or(m, "");
        size_t nl = strcspn(s, "=!");
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(nl < 255 ? nl : 255), s);
        const char *rest = s + nl;
        const char *op = strncmp(rest, "=~", 2) == 0   ? "=~"
                         : strncmp(rest, "!~", 2) == 0 ? "!~"
                         : strncmp(rest, "!=", 2) == 0 ? "!="
                                                       : "=";
        const char *value = rest + strlen(op);
        char unq[1100];
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            snprintf(unq, sizeof(unq), "%.*s", (int)(vl - 2), value + 1);
            value = unq;
        }
        if (!matcher_matches(name, op, value, labels)) {
            return false;
        }
    }
    return true;
}

static const json_t *find_named(const json_t *list, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach((json_t *)list, i, e)
    {
        if (name && strcmp(str_or(json_object_get(e, "name"), ""), name) == 0) {
            return e;
        }
    }
    return NULL;
}

static void fmt_threshold(const json_t *rule, const char *unit_pct, char *buf, size_t len)
{
    const json_t *above = json_object_get(rule, "above");
    const json_t *below = json_object_get(rule, "below");
    const json_t *v = above ? above : below;
    const char *dir = above ? "above" : "below";
    if (!json_is_number(v)) {
        snprintf(buf, len, "?");
    } else if (unit_pct) {
        snprintf(buf, len, "%s %.4g %%", dir, json_number_value(v) * 100);
    } else {
        snprintf(buf, len, "%s %.6g", dir, json_number_value(v));
    }
}

void ctl_rules_condition(const json_t *rule, char *buf, size_t len)
{
    const char *type = str_or(json_object_get(rule, "type"), "?");
    const char *window = str_or(json_object_get(rule, "window"), "?");
    const char *name = str_or(json_object_get(rule, "name"), "*");
    char th[64];
    if (strcmp(type, "error_rate") == 0) {
        fmt_threshold(rule, "%", th, sizeof(th));
        snprintf(buf, len, "error rate of %s %s over %s", name, th, window);
    } else if (strcmp(type, "request_rate") == 0) {
        fmt_threshold(rule, NULL, th, sizeof(th));
        snprintf(buf, len, "requests/s of %s %s over %s", name, th, window);
    } else if (strcmp(type, "latency") == 0) {
        fmt_threshold(rule, NULL, th, sizeof(th));
        double q = json_number_value(json_object_get(rule, "quantile"));
        snprintf(buf, len, "p%g latency of %s %s ms over %s", q * 100, name, th, window);
    } else if (strcmp(type, "metric") == 0) {
        fmt_threshold(rule, NULL, th, sizeof(th));
        snprintf(buf, len, "%s of %s %s over %s",
                 str_or(json_object_get(rule, "aggregate"), "value"), name, th, window);
    } else if (strcmp(type, "event_count") == 0) {
        fmt_threshold(rule, NULL, th, sizeof(th));
        snprintf(buf, len, "events of %s %s over %s", name, th, window);
    } else if (strcmp(type, "absence") == 0) {
        snprintf(buf, len, "no data of %s for %s", name, window);
    } else if (strcmp(type, "new_issue") == 0) {
        snprintf(buf, len, "a new error issue");
    } else if (strcmp(type, "regressed_issue") == 0) {
        snprintf(buf, len, "a resolved error issue seen again");
    } else if (strcmp(type, "burn_rate") == 0) {
        size_t o = (size_t)snprintf(buf, len, "burn rate of SLO %.6g",
                                    json_number_value(json_object_get(rule, "slo")));
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(rule, "windows"), i, w)
        {
            if (o >= len) {
                break;
            }
            o += (size_t)snprintf(buf + o, len - o, "%s %.3gx over %s and %s", i ? ";" : ":",
                                  json_number_value(json_object_get(w, "factor")),
                                  str_or(json_object_get(w, "long"), "?"),
                                  str_or(json_object_get(w, "short"), "?"));
        }
    } else {
        snprintf(buf, len, "%s over %s", type, window);
    }
}

static json_t *string_array(const json_t *src)
{
    return json_is_array(src) ? json_deep_copy(src) : json_array();
}

json_t *ctl_rules_plan(const json_t *set, const json_t *alerts)
{
    json_t *plan = json_array();
    const json_t *routes = json_object_get(set, "routes");
    const json_t *policies = json_object_get(set, "policies");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(set, "rules"), i, r)
    {
        if (!plan) {
            break;
        }
        char cond[512];
        ctl_rules_condition(r, cond, sizeof(cond));
        int64_t for_ms = dur_ms(json_object_get(r, "for"));
        json_t *e = json_pack(
            "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:O}", "alert",
            str_or(json_object_get(r, "alert"), "?"), "type",
            str_or(json_object_get(r, "type"), "?"), "service",
            str_or(json_object_get(r, "service"), ""), "name",
            str_or(json_object_get(r, "name"), "*"), "severity",
            str_or(json_object_get(r, "severity"), "?"), "fingerprint",
            str_or(json_object_get(r, "fingerprint"), ""), "file",
            str_or(json_object_get(r, "file"), str_or(json_object_get(set, "file"), "")), "line",
            json_object_get(r, "line") ? json_object_get(r, "line") : json_null(), "condition",
            cond, "for", json_object_get(r, "for") ? json_object_get(r, "for") : json_null());
        if (!e) {
            json_decref(plan);
            return NULL;
        }
        /* Who is notified: the rule's receiver or policy shortcut, else the first route
         * that takes its labels, else the fallback receiver. */
        const char *receiver = str_or(json_object_get(r, "receiver"), NULL);
        const char *policy_name = str_or(json_object_get(r, "policy"), NULL);
        const json_t *route = NULL;
        if (!receiver && !policy_name) {
            size_t k;
            json_t *rt;
            json_array_foreach((json_t *)routes, k, rt)
            {
                if (matchers_match(json_object_get(rt, "match"), json_object_get(r, "labels"))) {
                    route = rt;
                    break;
                }
            }
            policy_name = route ? str_or(json_object_get(route, "policy"), NULL) : NULL;
            if (!route) {
                receiver = str_or(json_object_get(set, "fallback"), NULL);
            }
        }
        int64_t group_wait = route ? dur_ms(json_object_get(route, "group_wait")) : 0;
        json_object_set_new(e, "policy", policy_name ? json_string(policy_name) : json_null());
        json_object_set_new(e, "group_wait",
                            route ? json_deep_copy(json_object_get(route, "group_wait"))
                                  : json_null());
        const json_t *ri = route ? json_object_get(route, "repeat_interval") : NULL;
        json_object_set_new(e, "repeat_interval",
                            ri && dur_ms(ri) > 0 ? json_deep_copy(ri) : json_null());
        json_t *sched = json_array();
        int64_t at = for_ms + group_wait;
        int repeat = 0;
        const json_t *pol = find_named(policies, policy_name);
        if (pol) {
            size_t t;
            json_t *tier;
            json_array_foreach(json_object_get(pol, "tiers"), t, tier)
            {
                json_array_append_new(sched,
                                      json_pack("{s:I, s:i, s:o}", "after_ms", (json_int_t)at,
                                                "tier", (int)t, "receivers",
                                                string_array(json_object_get(tier, "receivers"))));
                at += dur_ms(json_object_get(tier, "timeout"));
            }
            repeat = (int)json_integer_value(json_object_get(pol, "repeat"));
        } else if (receiver) {
            json_t *names = json_array();
            json_array_append_new(names, json_string(receiver));
            json_array_append_new(sched, json_pack("{s:I, s:i, s:o}", "after_ms", (json_int_t)at,
                                                   "tier", 0, "receivers", names));
        }
        json_object_set_new(e, "schedule", sched ? sched : json_array());
        json_object_set_new(e, "repeat", json_integer(repeat));
        /* The live state of this rule's alert: the alert with the rule's fingerprint, or
         * (rules whose alerts carry more labels, such as issue rules) the first active
         * alert the alerter lists under the rule's name. */
        json_t *live = json_null();
        const json_t *match = NULL;
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(alerts, "alerts"), k, a)
        {
            const char *fp = str_or(json_object_get(a, "fingerprint"), "");
            const char *rule_name = str_or(json_object_get(a, "rule"), "");
            if (strcmp(fp, str_or(json_object_get(r, "fingerprint"), "-")) == 0) {
                match = a;
                break;
            }
            if (!match && strcmp(rule_name, str_or(json_object_get(r, "alert"), "-")) == 0 &&
                strcmp(str_or(json_object_get(a, "state"), "inactive"), "inactive") != 0) {
                match = a;
            }
        }
        if (match) {
            const json_t *next = json_object_get(match, "next_action");
            json_t *l = json_pack("{s:s, s:s, s:O}", "fingerprint",
                                  str_or(json_object_get(match, "fingerprint"), ""), "state",
                                  str_or(json_object_get(match, "state"), "?"), "next_action",
                                  next ? next : json_null());
            if (l) {
                json_decref(live);
                live = l;
            }
        }
        json_object_set_new(e, "live", live);
        if (json_array_append_new(plan, e) != 0) {
            json_decref(plan);
            return NULL;
        }
    }
    return plan;
}

char *ctl_rules_render(const json_t *plan, int64_t now_us, size_t width)
{
    static const char *const headers[] = {"RULE",      "TYPE", "SERVICE",  "SEVERITY",
                                          "CONDITION", "FOR",  "NOTIFIES", "NEXT (LIVE)"};
    ctl_table_t *t = ctl_table_new(8, headers, NULL);
    if (!t) {
        return NULL;
    }
    size_t i;
    json_t *e;
    json_array_foreach((json_t *)plan, i, e)
    {
        ctl_table_add(t, str_or(json_object_get(e, "alert"), "?"));
        ctl_table_add(t, str_or(json_object_get(e, "type"), "?"));
        ctl_table_add(t, str_or(json_object_get(e, "service"), "-"));
        ctl_table_add(t, str_or(json_object_get(e, "severity"), "-"));
        ctl_table_add(t, str_or(json_object_get(e, "condition"), "-"));
        ctl_table_add(t, str_or(json_object_get(e, "for"), "-"));
        /* "after 5m: chat; after 20m: pager (unacknowledged); repeats 2x" */
        char sched[1024] = "";
        size_t o = 0;
        size_t k;
        json_t *s;
        json_array_foreach(json_object_get(e, "schedule"), k, s)
        {
            char after[32], names[512] = "";
            ctl_fmt_duration(json_integer_value(json_object_get(s, "after_ms")), after,
                             sizeof(after));
            size_t no = 0, m;
            json_t *n;
            json_array_foreach(json_object_get(s, "receivers"), m, n)
            {
                no += (size_t)snprintf(names + no, sizeof(names) - no, "%s%s", m ? "+" : "",
                                       str_or(n, "?"));
                if (no >= sizeof(names)) {
                    break;
                }
            }
            int w = snprintf(sched + o, sizeof(sched) - o, "%s%s after %s", k ? "; " : "", names,
                             after);
            if (w < 0 || (size_t)w >= sizeof(sched) - o) {
                break;
            }
            o += (size_t)w;
        }
        json_int_t repeat = json_integer_value(json_object_get(e, "repeat"));
        if (repeat > 0 && o < sizeof(sched)) {
            snprintf(sched + o, sizeof(sched) - o, "; repeats %" JSON_INTEGER_FORMAT "x", repeat);
        }
        ctl_table_add(t, sched[0] ? sched : "(nobody)");
        const json_t *live = json_object_get(e, "live");
        char next[256] = "-";
        if (json_is_object(live)) {
            const json_t *na = json_object_get(live, "next_action");
            if (json_is_object(na)) {
                ctl_fmt_next_action(na, now_us, next, sizeof(next));
            } else {
                snprintf(next, sizeof(next), "%s", str_or(json_object_get(live, "state"), "-"));
            }
        }
        ctl_table_add(t, next);
    }
    char *out = ctl_table_render(t, width);
    ctl_table_destroy(&t);
    return out;
}
