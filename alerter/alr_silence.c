#include "alr_silence.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

struct alr_silences {
    alr_silence_t **items;
    size_t n, cap;
    char **removed;
    size_t nremoved, capremoved;
};

alr_silences_t *alr_silences_new(void)
{
    return calloc(1, sizeof(alr_silences_t));
}

static void silence_free(alr_silence_t *s)
{
    if (s) {
        alr_matchers_fini(&s->match);
        free(s);
    }
}

static void removed_clear(alr_silences_t *self)
{
    for (size_t i = 0; i < self->nremoved; i++) {
        free(self->removed[i]);
    }
    self->nremoved = 0;
}

void alr_silences_destroy(alr_silences_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_silences_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        silence_free(self->items[i]);
    }
    free(self->items);
    removed_clear(self);
    free(self->removed);
    free(self);
    *self_p = NULL;
}

static int add(alr_silences_t *self, alr_silence_t *s)
{
    if (self->n == self->cap) {
        size_t next = self->cap ? self->cap * 2 : 16;
        alr_silence_t **p = realloc(self->items, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->items = p;
        self->cap = next;
    }
    self->items[self->n++] = s;
    return 0;
}

static int note_removed(alr_silences_t *self, const char *id)
{
    if (self->nremoved == self->capremoved) {
        size_t next = self->capremoved ? self->capremoved * 2 : 8;
        char **p = realloc(self->removed, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->removed = p;
        self->capremoved = next;
    }
    char *d = strdup(id);
    if (!d) {
        return TC_ENOMEM;
    }
    self->removed[self->nremoved++] = d;
    return 0;
}

const alr_silence_t *alr_silences_create(alr_silences_t *self, const json_t *body,
                                         uint64_t id_rnd, int64_t now_us, int *status,
                                         char *err, size_t errlen)
{
    *status = 400;
    if (!json_is_object(body)) {
        snprintf(err, errlen, "the body must be a JSON object");
        return NULL;
    }
    size_t api = 0;
    for (size_t i = 0; i < self->n; i++) {
        api += !self->items[i]->from_file;
    }
    if (api >= ALR_SILENCES_MAX) {
        *status = 409;
        snprintf(err, errlen, "%d silences exist already; expire some first", ALR_SILENCES_MAX);
        return NULL;
    }
    alr_silence_t *s = calloc(1, sizeof(*s));
    if (!s) {
        *status = 500;
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int rc = alr_matchers_from_json(&s->match, json_object_get(body, "matchers"), err, errlen);
    if (rc == 0 && s->match.len == 0) {
        snprintf(err, errlen, "at least one matcher is required");
        rc = TC_EINVAL;
    }
    if (rc == 0 && !alr_matchers_selective(&s->match)) {
        snprintf(err, errlen, "every matcher matches the empty string: the silence would mute "
                 "every alert; add a matcher such as service=NAME");
        rc = TC_EINVAL;
    }
    s->starts_us = now_us;
    const char *st = json_string_value(json_object_get(body, "starts_at"));
    const char *en = json_string_value(json_object_get(body, "ends_at"));
    const char *du = json_string_value(json_object_get(body, "duration"));
    if (rc == 0 && st && alr_parse_time_us(st, &s->starts_us) != 0) {
        snprintf(err, errlen, "starts_at \"%.64s\" is not an RFC 3339 time", st);
        rc = TC_EINVAL;
    }
    if (rc == 0) {
        if (en && du) {
            snprintf(err, errlen, "give ends_at or duration, not both");
            rc = TC_EINVAL;
        } else if (en) {
            if (alr_parse_time_us(en, &s->ends_us) != 0) {
                snprintf(err, errlen, "ends_at \"%.64s\" is not an RFC 3339 time", en);
                rc = TC_EINVAL;
            }
        } else if (du) {
            int64_t ms;
            if (tc_duration_parse(du, &ms) != 0 || ms <= 0) {
                snprintf(err, errlen, "duration \"%.64s\" is not a duration such as 2h", du);
                rc = TC_EINVAL;
            } else {
                s->ends_us = s->starts_us + ms * 1000;
            }
        } else {
            snprintf(err, errlen, "ends_at or duration is required");
            rc = TC_EINVAL;
        }
    }
    if (rc == 0 && (s->ends_us <= s->starts_us || s->ends_us <= now_us)) {
        snprintf(err, errlen, "the silence must end after it starts and after now");
        rc = TC_EINVAL;
    }
    const char *by = json_string_value(json_object_get(body, "created_by"));
    const char *cm = json_string_value(json_object_get(body, "comment"));
    if (rc == 0 && ((by && !tc_utf8_valid(by, strlen(by))) || (cm && !tc_utf8_valid(cm, strlen(cm))))) {
        snprintf(err, errlen, "created_by and comment must be UTF-8");
        rc = TC_EINVAL;
    }
    if (rc != 0) {
        if (rc == TC_ENOMEM) {
            *status = 500;
        }
        silence_free(s);
        return NULL;
    }
    tc_strlcpy(s->created_by, by ? by : "unknown", sizeof(s->created_by));
    tc_strlcpy(s->comment, cm ? cm : "", sizeof(s->comment));
    s->created_us = now_us;
    snprintf(s->id, sizeof(s->id), "%016" PRIx64, id_rnd);
    s->dirty = true;
    if (add(self, s) != 0) {
        *status = 500;
        snprintf(err, errlen, "out of memory");
        silence_free(s);
        return NULL;
    }
    *status = 201;
    return s;
}

static alr_silence_t *find(const alr_silences_t *self, const char *id)
{
    for (size_t i = 0; i < self->n; i++) {
        if (strcmp(self->items[i]->id, id) == 0) {
            return self->items[i];
        }
    }
    return NULL;
}

const alr_silence_t *alr_silences_get(const alr_silences_t *self, const char *id)
{
    return find(self, id);
}

int alr_silences_expire(alr_silences_t *self, const char *id, int64_t now_us)
{
    alr_silence_t *s = find(self, id);
    if (!s) {
        return TC_ENOTFOUND;
    }
    if (s->from_file) {
        return TC_ESTATE;
    }
    if (s->ends_us > now_us) {
        s->ends_us = now_us;
        if (s->starts_us > now_us) {
            s->starts_us = now_us;
        }
        s->dirty = true;
    }
    return 0;
}

int alr_silences_set_file(alr_silences_t *self, const alr_ruleset_t *rules)
{
    size_t k = 0;
    for (size_t i = 0; i < self->n; i++) {
        if (self->items[i]->from_file) {
            silence_free(self->items[i]);
        } else {
            self->items[k++] = self->items[i];
        }
    }
    self->n = k;
    for (size_t i = 0; rules && i < rules->nmaintenance; i++) {
        const alr_maintenance_t *m = &rules->maintenance[i];
        alr_silence_t *s = calloc(1, sizeof(*s));
        char err[128];
        if (!s) {
            return TC_ENOMEM;
        }
        for (size_t j = 0; j < m->match.len; j++) {
            if (alr_matchers_add(&s->match, m->match.items[j].name, m->match.items[j].op,
                                 m->match.items[j].value, err, sizeof(err)) != 0) {
                silence_free(s);
                return TC_ENOMEM;
            }
        }
        tc_strlcpy(s->id, m->id, sizeof(s->id));
        s->starts_us = m->starts_us;
        s->ends_us = m->ends_us;
        s->from_file = true;
        tc_strlcpy(s->created_by, "rule file", sizeof(s->created_by));
        tc_strlcpy(s->comment, m->comment ? m->comment : "", sizeof(s->comment));
        if (add(self, s) != 0) {
            silence_free(s);
            return TC_ENOMEM;
        }
    }
    return 0;
}

const char *alr_silences_match(const alr_silences_t *self, const json_t *labels, int64_t now_us)
{
    for (size_t i = 0; i < self->n; i++) {
        const alr_silence_t *s = self->items[i];
        if (s->starts_us <= now_us && now_us < s->ends_us && alr_matchers_match(&s->match, labels)) {
            return s->id;
        }
    }
    return NULL;
}

bool alr_silences_changed_between(const alr_silences_t *self, int64_t from_us, int64_t to_us)
{
    for (size_t i = 0; i < self->n; i++) {
        const alr_silence_t *s = self->items[i];
        if ((s->starts_us > from_us && s->starts_us <= to_us) ||
            (s->ends_us > from_us && s->ends_us <= to_us)) {
            return true;
        }
    }
    return false;
}

int64_t alr_silences_next_edge(const alr_silences_t *self, int64_t now_us)
{
    int64_t best = 0;
    for (size_t i = 0; i < self->n; i++) {
        const alr_silence_t *s = self->items[i];
        int64_t e = s->starts_us > now_us ? s->starts_us : (s->ends_us > now_us ? s->ends_us : 0);
        if (e && (!best || e < best)) {
            best = e;
        }
    }
    return best;
}

void alr_silences_prune(alr_silences_t *self, int64_t now_us)
{
    size_t k = 0;
    for (size_t i = 0; i < self->n; i++) {
        alr_silence_t *s = self->items[i];
        if (!s->from_file && s->ends_us + ALR_SILENCE_KEEP_US < now_us &&
            note_removed(self, s->id) == 0) {
            silence_free(s);
        } else {
            self->items[k++] = s;
        }
    }
    self->n = k;
}

size_t alr_silences_count(const alr_silences_t *self)
{
    return self->n;
}

alr_silence_t *alr_silences_at(alr_silences_t *self, size_t i)
{
    return i < self->n ? self->items[i] : NULL;
}

const char *alr_silence_state(const alr_silence_t *s, int64_t now_us)
{
    if (now_us < s->starts_us) {
        return "pending";
    }
    return now_us < s->ends_us ? "active" : "expired";
}

static json_t *time_json(int64_t us)
{
    char buf[32];
    tc_time_format_rfc3339(us, buf);
    return json_string(buf);
}

json_t *alr_silence_json(const alr_silence_t *s, int64_t now_us)
{
    return json_pack("{s:s, s:o*, s:o, s:o, s:s, s:s, s:o, s:s, s:s}", "id", s->id, "matchers",
                     alr_matchers_json(&s->match), "starts_at", time_json(s->starts_us),
                     "ends_at", time_json(s->ends_us), "created_by", s->created_by, "comment",
                     s->comment, "created_at",
                     s->created_us ? time_json(s->created_us) : json_null(), "state",
                     alr_silence_state(s, now_us), "source", s->from_file ? "file" : "api");
}

json_t *alr_silence_state_json(const alr_silence_t *s)
{
    return json_pack("{s:i, s:s, s:o*, s:I, s:I, s:I, s:s, s:s}", "v", 1, "id", s->id,
                     "matchers", alr_matchers_json(&s->match), "starts_us",
                     (json_int_t)s->starts_us, "ends_us", (json_int_t)s->ends_us, "created_us",
                     (json_int_t)s->created_us, "created_by", s->created_by, "comment",
                     s->comment);
}

int alr_silences_restore(alr_silences_t *self, const json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    if (!id || strlen(id) != 16 || find(self, id)) {
        return TC_EPARSE;
    }
    alr_silence_t *s = calloc(1, sizeof(*s));
    if (!s) {
        return TC_ENOMEM;
    }
    char err[256];
    if (alr_matchers_from_json(&s->match, json_object_get(doc, "matchers"), err, sizeof(err)) !=
        0) {
        silence_free(s);
        return TC_EPARSE;
    }
    tc_strlcpy(s->id, id, sizeof(s->id));
    s->starts_us = (int64_t)json_integer_value(json_object_get(doc, "starts_us"));
    s->ends_us = (int64_t)json_integer_value(json_object_get(doc, "ends_us"));
    s->created_us = (int64_t)json_integer_value(json_object_get(doc, "created_us"));
    const char *by = json_string_value(json_object_get(doc, "created_by"));
    const char *cm = json_string_value(json_object_get(doc, "comment"));
    tc_strlcpy(s->created_by, by ? by : "", sizeof(s->created_by));
    tc_strlcpy(s->comment, cm ? cm : "", sizeof(s->comment));
    if (add(self, s) != 0) {
        silence_free(s);
        return TC_ENOMEM;
    }
    return 0;
}

int alr_silences_upsert(alr_silences_t *self, const json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    alr_silence_t *old = id && strlen(id) == 16 ? find(self, id) : NULL;
    if (!old) {
        int rc = alr_silences_restore(self, doc);
        if (rc == 0) {
            self->items[self->n - 1]->dirty = true;
        }
        return rc;
    }
    if (old->from_file) {
        return TC_EPARSE;
    }
    alr_matchers_t m;
    memset(&m, 0, sizeof(m));
    char err[256];
    if (alr_matchers_from_json(&m, json_object_get(doc, "matchers"), err, sizeof(err)) != 0) {
        return TC_EPARSE;
    }
    alr_matchers_fini(&old->match);
    old->match = m;
    old->starts_us = (int64_t)json_integer_value(json_object_get(doc, "starts_us"));
    old->ends_us = (int64_t)json_integer_value(json_object_get(doc, "ends_us"));
    old->created_us = (int64_t)json_integer_value(json_object_get(doc, "created_us"));
    const char *by = json_string_value(json_object_get(doc, "created_by"));
    const char *cm = json_string_value(json_object_get(doc, "comment"));
    tc_strlcpy(old->created_by, by ? by : "", sizeof(old->created_by));
    tc_strlcpy(old->comment, cm ? cm : "", sizeof(old->comment));
    old->dirty = true;
    return 0;
}

const char *const *alr_silences_removed(const alr_silences_t *self, size_t *len)
{
    *len = self->nremoved;
    return (const char *const *)self->removed;
}

void alr_silences_persisted(alr_silences_t *self)
{
    for (size_t i = 0; i < self->n; i++) {
        self->items[i]->dirty = false;
    }
    removed_clear(self);
}
