/*
 * tocsin_event.c — the event the before_send hook sees, and the functions that read and
 * edit it. Edits copy into the event's arena, so the record it came from is never written.
 */
#include "tocsin_event.h"

#include <assert.h>
#include <string.h>

#include "tocsin_record.h"

void tocsin_event_reset(tocsin_event_t *ev, char *arena)
{
    assert(ev);
    memset(ev, 0, offsetof(tocsin_event_t, frames));
    ev->n_frames = 0;
    ev->n_pcs = 0;
    ev->n_crash_frames = 0;
    ev->arena = arena;
    ev->arena_used = 0;
}

const char *tocsin_event_strdup(tocsin_event_t *ev, const char *s, size_t len)
{
    if (!ev->arena || len + 1 > TOCSIN_EVENT_ARENA - ev->arena_used) {
        return NULL;
    }
    char *out = ev->arena + ev->arena_used;
    bool cut = false;
    size_t n = tocsin_utf8_copy(out, len, s, len, &cut);
    out[n] = '\0';
    ev->arena_used += n + 1;
    return out;
}

static ptrdiff_t tag_index(const tocsin_tag_t *tags, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tags[i].key, key) == 0) {
            return (ptrdiff_t)i;
        }
    }
    return -1;
}

bool tocsin_event_put_tag(tocsin_event_t *ev, const char *key, const char *value)
{
    ptrdiff_t i = tag_index(ev->tags, ev->n_tags, key);
    if (i >= 0) {
        ev->tags[i].value = value;
        return true;
    }
    if (ev->n_tags >= TOCSIN_EVENT_TAGS_MAX) {
        return false;
    }
    ev->tags[ev->n_tags++] = (tocsin_tag_t){key, value};
    return true;
}

tocsin_event_kind_t tocsin_event_kind(const tocsin_event_t *event)
{
    assert(event);
    return event->kind;
}

int64_t tocsin_event_time_us(const tocsin_event_t *event)
{
    assert(event);
    return event->time_us;
}

/* Whether a kind of event has a string field. */
static bool has_field(tocsin_event_kind_t kind, tocsin_field_t field)
{
    switch (field) {
    case TOCSIN_FIELD_TYPE:
    case TOCSIN_FIELD_MECHANISM:
        return kind == TOCSIN_EVENT_ERROR;
    case TOCSIN_FIELD_MESSAGE:
        return kind == TOCSIN_EVENT_ERROR || kind == TOCSIN_EVENT_LOG;
    case TOCSIN_FIELD_ROUTE:
    case TOCSIN_FIELD_METHOD:
        return kind == TOCSIN_EVENT_REQUEST;
    case TOCSIN_FIELD_NAME:
    case TOCSIN_FIELD_UNIT:
        return kind == TOCSIN_EVENT_METRIC;
    case TOCSIN_FIELD_LOGGER:
        return kind == TOCSIN_EVENT_LOG;
    case TOCSIN_FIELD_TRACE_ID:
    case TOCSIN_FIELD_USER_ID:
        return true;
    }
    return false;
}

const char *tocsin_event_get(const tocsin_event_t *event, tocsin_field_t field)
{
    assert(event);
    if (field < 1 || field > TOCSIN_FIELD_LAST || !event->str[field]) {
        return "";
    }
    return event->str[field];
}

int tocsin_event_set(tocsin_event_t *event, tocsin_field_t field, const char *value)
{
    assert(event);
    if (field < 1 || field > TOCSIN_FIELD_LAST || !has_field(event->kind, field)) {
        return TOCSIN_EINVAL;
    }
    if (!value) {
        value = "";
    }
    size_t max = field == TOCSIN_FIELD_MESSAGE ? TOCSIN_MESSAGE_MAX : TOCSIN_NAME_MAX;
    size_t len = strnlen(value, max + 1);
    if (len > max) {
        return TOCSIN_ETOOBIG;
    }
    bool required = field == TOCSIN_FIELD_ROUTE || field == TOCSIN_FIELD_NAME ||
                    (field == TOCSIN_FIELD_MESSAGE && event->kind == TOCSIN_EVENT_LOG);
    if (required && len == 0) {
        return TOCSIN_EINVAL;
    }
    const char *copy = tocsin_event_strdup(event, value, len);
    if (!copy) {
        return TOCSIN_ETOOBIG;
    }
    event->str[field] = copy;
    return TOCSIN_OK;
}

const char *tocsin_event_tag(const tocsin_event_t *event, const char *key)
{
    assert(event);
    if (!key) {
        return NULL;
    }
    ptrdiff_t i = tag_index(event->tags, event->n_tags, key);
    return i < 0 ? NULL : event->tags[i].value;
}

/* Sets or removes key=value in a list of pairs held in the event's arena. */
static int set_pair(tocsin_event_t *ev, tocsin_tag_t *pairs, size_t *n, size_t max, const char *key,
                    const char *value)
{
    if (!key || !key[0]) {
        return TOCSIN_EINVAL;
    }
    size_t klen = strnlen(key, TOCSIN_NAME_MAX + 1);
    size_t vlen = value ? strnlen(value, TOCSIN_NAME_MAX + 1) : 0;
    if (klen > TOCSIN_NAME_MAX || vlen > TOCSIN_NAME_MAX) {
        return TOCSIN_ETOOBIG;
    }
    ptrdiff_t i = tag_index(pairs, *n, key);
    if (!value) {
        if (i >= 0) {
            memmove(&pairs[i], &pairs[i + 1], (*n - (size_t)i - 1) * sizeof(pairs[0]));
            (*n)--;
        }
        return TOCSIN_OK;
    }
    if (i < 0 && *n >= max) {
        return TOCSIN_ETOOBIG;
    }
    const char *v = tocsin_event_strdup(ev, value, vlen);
    const char *k = i < 0 ? tocsin_event_strdup(ev, key, klen) : pairs[i].key;
    if (!v || !k) {
        return TOCSIN_ETOOBIG;
    }
    if (i < 0) {
        pairs[(*n)++] = (tocsin_tag_t){k, v};
    } else {
        pairs[i].value = v;
    }
    return TOCSIN_OK;
}

int tocsin_event_set_tag(tocsin_event_t *event, const char *key, const char *value)
{
    assert(event);
    return set_pair(event, event->tags, &event->n_tags, TOCSIN_EVENT_TAGS_MAX, key, value);
}

const char *tocsin_event_log_field(const tocsin_event_t *event, const char *key)
{
    assert(event);
    if (!key || event->kind != TOCSIN_EVENT_LOG) {
        return NULL;
    }
    ptrdiff_t i = tag_index(event->fields, event->n_fields, key);
    return i < 0 ? NULL : event->fields[i].value;
}

int tocsin_event_set_log_field(tocsin_event_t *event, const char *key, const char *value)
{
    assert(event);
    if (event->kind != TOCSIN_EVENT_LOG) {
        return TOCSIN_EINVAL;
    }
    return set_pair(event, event->fields, &event->n_fields, TOCSIN_FIELDS_MAX, key, value);
}

tocsin_level_t tocsin_event_level(const tocsin_event_t *event)
{
    assert(event);
    if (event->kind != TOCSIN_EVENT_ERROR && event->kind != TOCSIN_EVENT_LOG) {
        return 0;
    }
    return (tocsin_level_t)event->sub;
}

int tocsin_event_set_level(tocsin_event_t *event, tocsin_level_t level)
{
    assert(event);
    if ((event->kind != TOCSIN_EVENT_ERROR && event->kind != TOCSIN_EVENT_LOG) ||
        level < TOCSIN_LEVEL_TRACE || level > TOCSIN_LEVEL_FATAL) {
        return TOCSIN_EINVAL;
    }
    event->sub = (uint8_t)level;
    return TOCSIN_OK;
}

size_t tocsin_event_frame_count(const tocsin_event_t *event)
{
    assert(event);
    return event->n_frames;
}

int tocsin_event_frame(const tocsin_event_t *event, size_t i, tocsin_frame_t *out)
{
    assert(event);
    if (!out || i >= event->n_frames) {
        return TOCSIN_EINVAL;
    }
    *out = event->frames[i];
    return TOCSIN_OK;
}
