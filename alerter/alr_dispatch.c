#include "alr_dispatch.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

/* ---- a small map of 64-bit keys ------------------------------------------------------ */

typedef struct {
    uint64_t key;
    uint64_t val;
    uint8_t used; /* 0 empty, 1 full, 2 deleted */
} slot_t;

typedef struct {
    slot_t *s;
    size_t cap, n, tomb;
} u64map_t;

static size_t mix(uint64_t k, size_t cap)
{
    return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 11) & (cap - 1);
}

static int map_put(u64map_t *m, uint64_t key, uint64_t val);

static int map_grow(u64map_t *m)
{
    size_t cap = m->cap ? m->cap : 64;
    while (cap < (m->n + 1) * 2) {
        cap *= 2;
    }
    slot_t *old = m->s;
    size_t oldcap = m->cap;
    m->s = calloc(cap, sizeof(*m->s));
    if (!m->s) {
        m->s = old;
        return TC_ENOMEM;
    }
    m->cap = cap;
    m->n = m->tomb = 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].used == 1) {
            map_put(m, old[i].key, old[i].val);
        }
    }
    free(old);
    return 0;
}

static int map_put(u64map_t *m, uint64_t key, uint64_t val)
{
    if ((m->n + m->tomb + 1) * 2 > m->cap && map_grow(m) != 0) {
        return TC_ENOMEM;
    }
    size_t h = mix(key, m->cap);
    size_t tomb = SIZE_MAX;
    while (m->s[h].used) {
        if (m->s[h].used == 1 && m->s[h].key == key) {
            m->s[h].val = val;
            return 0;
        }
        if (m->s[h].used == 2 && tomb == SIZE_MAX) {
            tomb = h;
        }
        h = (h + 1) & (m->cap - 1);
    }
    if (tomb != SIZE_MAX) {
        h = tomb;
        m->tomb--;
    }
    m->s[h] = (slot_t){key, val, 1};
    m->n++;
    return 0;
}

static bool map_get(const u64map_t *m, uint64_t key, uint64_t *val)
{
    if (!m->cap) {
        return false;
    }
    size_t h = mix(key, m->cap);
    while (m->s[h].used) {
        if (m->s[h].used == 1 && m->s[h].key == key) {
            *val = m->s[h].val;
            return true;
        }
        h = (h + 1) & (m->cap - 1);
    }
    return false;
}

static void map_del(u64map_t *m, uint64_t key)
{
    if (!m->cap) {
        return;
    }
    size_t h = mix(key, m->cap);
    while (m->s[h].used) {
        if (m->s[h].used == 1 && m->s[h].key == key) {
            m->s[h].used = 2;
            m->n--;
            m->tomb++;
            return;
        }
        h = (h + 1) & (m->cap - 1);
    }
}

/* ---- state --------------------------------------------------------------------------- */

#define M_FIRING 1
#define M_RESOLVED 2

typedef struct {
    uint64_t fp;
    int status;
    bool silenced, acked, flapping, announced, changed;
    int64_t starts_us, ends_us;
} member_t;

typedef struct {
    char key[512];
    char dedup[64];
    char policy[208];
    long pol;            /* policy index in the current rules, -1 when gone */
    long route;          /* route index, -1 for shortcuts and the fallback */
    json_t *glabels;
    member_t *m;
    size_t n, cap;
    int64_t flush_at, last_flush, escalate_at, remind_at;
    unsigned tier, cycle;
    bool flushed;
    bool acked;          /* ack notice sent for the current acknowledgement */
    char **told;         /* receivers that heard of a firing */
    size_t ntold;
    json_t *via;         /* pagerduty receiver name -> the digest dedup_key that covered it */
    bool dirty;
    bool dead;
} group_t;

#define BRK_CLOSED 0
#define BRK_OPEN 1
#define BRK_HALF 2

typedef struct {
    char name[208];
    double tokens;
    int64_t tokens_at;
    int64_t paused_until;
    int breaker;
    unsigned failures;
    int64_t open_until;
    unsigned opens;
    uint64_t in_flight;
    int64_t last_done_us; /* when the last attempt's answer came */
    json_t *digests;     /* digest dedup_key -> groups still open (pagerduty) */
    uint64_t delivered, failed, undelivered;
    bool dirty;
} rcv_t;

struct alr_dispatch {
    const alr_ruleset_t *rules;
    group_t **groups;
    size_t ngroups, capgroups;
    u64map_t by_fp;      /* alert fp -> group_t* */
    u64map_t by_key;     /* hash of a group key -> the group last added with that key */
    u64map_t last_msg;   /* alert fp -> last message id */
    alr_msg_t **msgs;    /* by id */
    size_t nmsgs, capmsgs;
    size_t first_open;   /* msgs before this index are all finished */
    rcv_t *rcv;          /* parallel to rules->receivers */
    size_t nrcv;
    rcv_t *restored;     /* receiver states read from LMDB before set_rules */
    size_t nrestored;
    uint64_t next_id;
    uint64_t rng;
    bool silences_changed;
    int64_t silences_checked_us;
    bool meta_dirty;
    bool passive;        /* an HA follower: mirrors the leader, decides and sends nothing */
    char **removed_groups;
    size_t nremoved_groups, capremoved_groups;
    uint64_t *removed_msgs;
    size_t nremoved_msgs, capremoved_msgs;
    alr_dispatch_stats_t st;
};

const char *alr_msg_kind_name(alr_msg_kind_t k)
{
    static const char *const names[] = {"firing",       "resolved",    "escalation",
                                        "reminder",     "acknowledged", "ack_expired",
                                        "flapping",     "digest",      "self"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

const char *alr_dlv_name(alr_dlv_t s)
{
    static const char *const names[] = {"queued",      "sending", "delivered",
                                        "undelivered", "merged",  "peer"};
    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static uint32_t next_rand(alr_dispatch_t *self)
{
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return (uint32_t)((self->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

alr_dispatch_t *alr_dispatch_new(uint64_t next_id, uint64_t seed)
{
    alr_dispatch_t *self = calloc(1, sizeof(*self));
    if (self) {
        self->next_id = next_id ? next_id : 1;
        self->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    }
    return self;
}

static void group_free(group_t *g)
{
    if (!g) {
        return;
    }
    json_decref(g->glabels);
    json_decref(g->via);
    for (size_t i = 0; i < g->ntold; i++) {
        free(g->told[i]);
    }
    free(g->told);
    free(g->m);
    free(g);
}

static void msg_free(alr_msg_t *m)
{
    if (m) {
        json_decref(m->payload);
        free(m);
    }
}

void alr_dispatch_destroy(alr_dispatch_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_dispatch_t *self = *self_p;
    for (size_t i = 0; i < self->ngroups; i++) {
        group_free(self->groups[i]);
    }
    free(self->groups);
    for (size_t i = 0; i < self->nmsgs; i++) {
        msg_free(self->msgs[i]);
    }
    free(self->msgs);
    for (size_t i = 0; i < self->nrcv; i++) {
        json_decref(self->rcv[i].digests);
    }
    free(self->rcv);
    for (size_t i = 0; i < self->nrestored; i++) {
        json_decref(self->restored[i].digests);
    }
    free(self->restored);
    free(self->by_fp.s);
    free(self->by_key.s);
    free(self->last_msg.s);
    for (size_t i = 0; i < self->nremoved_groups; i++) {
        free(self->removed_groups[i]);
    }
    free(self->removed_groups);
    free(self->removed_msgs);
    free(self);
    *self_p = NULL;
}

/* ---- messages ------------------------------------------------------------------------ */

static size_t msg_index(const alr_dispatch_t *self, uint64_t id)
{
    size_t lo = 0, hi = self->nmsgs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (self->msgs[mid]->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < self->nmsgs && self->msgs[lo]->id == id ? lo : SIZE_MAX;
}

const alr_msg_t *alr_dispatch_msg(const alr_dispatch_t *self, uint64_t id)
{
    size_t i = msg_index(self, id);
    return i == SIZE_MAX ? NULL : self->msgs[i];
}

static alr_msg_t *msg_get(alr_dispatch_t *self, uint64_t id)
{
    size_t i = msg_index(self, id);
    return i == SIZE_MAX ? NULL : self->msgs[i];
}

size_t alr_dispatch_msg_count(const alr_dispatch_t *self)
{
    return self->nmsgs;
}

const alr_msg_t *alr_dispatch_msg_at(const alr_dispatch_t *self, size_t i)
{
    return i < self->nmsgs ? self->msgs[i] : NULL;
}

static bool msg_open(const alr_msg_t *m)
{
    return m->status == ALR_DLV_QUEUED || m->status == ALR_DLV_SENDING;
}

static long rcv_index(const alr_dispatch_t *self, const char *name)
{
    return self->rules ? alr_ruleset_receiver(self->rules, name) : -1;
}

long alr_dispatch_msg_receiver(const alr_dispatch_t *self, const alr_msg_t *m)
{
    return rcv_index(self, m->receiver);
}

static int msgs_append(alr_dispatch_t *self, alr_msg_t *m)
{
    if (self->nmsgs == self->capmsgs) {
        size_t next = self->capmsgs ? self->capmsgs * 2 : 256;
        alr_msg_t **p = realloc(self->msgs, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->msgs = p;
        self->capmsgs = next;
    }
    /* Ids grow, except for restored records, which may come in any order. */
    size_t pos = self->nmsgs;
    while (pos > 0 && self->msgs[pos - 1]->id > m->id) {
        pos--;
    }
    memmove(&self->msgs[pos + 1], &self->msgs[pos], (self->nmsgs - pos) * sizeof(*self->msgs));
    self->msgs[pos] = m;
    self->nmsgs++;
    if (pos < self->first_open) {
        self->first_open = pos;
    }
    return 0;
}

static json_t *alert_item(const alr_alert_t *a, const member_t *m, int status)
{
    return json_pack("{s:s, s:s, s:O, s:O, s:I, s:I, s:o}", "fingerprint", a->fp_hex, "status",
                     status == M_FIRING ? "firing" : "resolved", "labels", a->labels,
                     "annotations", a->annotations, "starts_us",
                     (json_int_t)(m ? m->starts_us : a->fired_at_us), "ends_us",
                     (json_int_t)(status == M_FIRING ? 0 : (m ? m->ends_us : a->resolved_at_us)),
                     "value", a->has_value && isfinite(a->value) ? json_real(a->value)
                                                                  : json_null());
}

/* Labels every alert of `alerts` shares. */
static json_t *common_of(const json_t *alerts, const char *field)
{
    json_t *common = NULL;
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        json_t *l = json_object_get(a, field);
        if (!common) {
            common = json_deep_copy(l);
            if (!common) {
                return json_object();
            }
            continue;
        }
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(common, tmp, k, v)
        {
            json_t *o = json_object_get(l, k);
            if (!o || !json_equal(o, v)) {
                json_object_del(common, k);
            }
        }
    }
    return common ? common : json_object();
}

/* Fills the summary fields of a payload from its "alerts". */
static void payload_finish(json_t *p, const char *title)
{
    json_t *alerts = json_object_get(p, "alerts");
    size_t firing = 0, resolved = 0;
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "status")), "firing") == 0) {
            firing++;
        } else {
            resolved++;
        }
    }
    json_int_t more = json_integer_value(json_object_get(p, "more"));
    if (!json_object_get(p, "firing")) {
        json_object_set_new(p, "firing", json_integer((json_int_t)firing));
        json_object_set_new(p, "resolved", json_integer((json_int_t)resolved));
    }
    if (!json_object_get(p, "status")) {
        json_object_set_new(p, "status", json_string(firing > 0 ? "firing" : "resolved"));
    }
    json_object_set_new(p, "common_labels", common_of(alerts, "labels"));
    json_object_set_new(p, "common_annotations", common_of(alerts, "annotations"));
    json_object_set_new(p, "more", json_integer(more));
    if (title) {
        json_object_set_new(p, "title", json_string(title));
    }
}

/* Creates a queued message; takes `payload`. */
static alr_msg_t *msg_new(alr_dispatch_t *self, alr_msg_kind_t kind, const char *receiver,
                          const group_t *g, const char *dedup, json_t *payload, int64_t now_us)
{
    alr_msg_t *m = calloc(1, sizeof(*m));
    if (!m || !payload) {
        free(m);
        json_decref(payload);
        return NULL;
    }
    m->id = self->next_id++;
    m->kind = kind;
    tc_strlcpy(m->receiver, receiver, sizeof(m->receiver));
    if (g) {
        tc_strlcpy(m->group_key, g->key, sizeof(m->group_key));
        m->tier = g->tier;
    }
    tc_strlcpy(m->dedup_key, dedup ? dedup : (g ? g->dedup : ""), sizeof(m->dedup_key));
    m->payload = payload;
    m->status = ALR_DLV_QUEUED;
    m->created_us = now_us;
    m->dirty = true;
    if (msgs_append(self, m) != 0) {
        msg_free(m);
        return NULL;
    }
    self->meta_dirty = true;
    self->st.created++;
    /* Remember the last notification of each alert it names. */
    json_t *fps = json_object_get(payload, "fingerprints");
    size_t i;
    json_t *v;
    json_array_foreach(fps, i, v)
    {
        const char *h = json_string_value(v);
        if (h) {
            map_put(&self->last_msg, strtoull(h, NULL, 16), m->id);
        }
    }
    return m;
}

/* ---- receivers ----------------------------------------------------------------------- */

static rcv_t *rcv_of(alr_dispatch_t *self, const char *name)
{
    long i = rcv_index(self, name);
    return i >= 0 && (size_t)i < self->nrcv ? &self->rcv[i] : NULL;
}

static const alr_receiver_t *rcv_conf(const alr_dispatch_t *self, const char *name)
{
    long i = rcv_index(self, name);
    return i >= 0 ? &self->rules->receivers[i] : NULL;
}

static void rcv_init(rcv_t *r, const alr_receiver_t *conf, int64_t now_us)
{
    memset(r, 0, sizeof(*r));
    tc_strlcpy(r->name, conf->name, sizeof(r->name));
    r->tokens = conf->burst;
    r->tokens_at = now_us;
    r->dirty = true;
}

/* ---- groups -------------------------------------------------------------------------- */

static const alr_policy_t *policy_of(const alr_dispatch_t *self, const group_t *g)
{
    return g->pol >= 0 && self->rules && (size_t)g->pol < self->rules->npolicies
               ? &self->rules->policies[g->pol]
               : NULL;
}

static const alr_route_t *route_of(const alr_dispatch_t *self, const group_t *g)
{
    return g->route >= 0 && self->rules && (size_t)g->route < self->rules->nroutes
               ? &self->rules->routes[g->route]
               : NULL;
}

static int64_t group_wait_ms(const alr_dispatch_t *self, const group_t *g)
{
    const alr_route_t *r = route_of(self, g);
    return r ? r->group_wait_ms : self->rules->settings.group_wait_ms;
}

static int64_t group_interval_ms(const alr_dispatch_t *self, const group_t *g)
{
    const alr_route_t *r = route_of(self, g);
    return r ? r->group_interval_ms : self->rules->settings.group_interval_ms;
}

static int64_t repeat_interval_ms(const alr_dispatch_t *self, const group_t *g)
{
    const alr_route_t *r = route_of(self, g);
    return r ? r->repeat_interval_ms : self->rules->settings.repeat_interval_ms;
}

static long policy_by_name(const alr_ruleset_t *rules, const char *name)
{
    for (size_t i = 0; rules && i < rules->npolicies; i++) {
        if (strcmp(rules->policies[i].name, name) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* Which policy and route an alert goes to. Returns the policy index or -1. */
static long route_alert(const alr_dispatch_t *self, const alr_alert_t *a, long *route)
{
    const alr_ruleset_t *rs = self->rules;
    *route = -1;
    if (a->rule >= 0 && (size_t)a->rule < rs->nrules && rs->rules[a->rule].policy >= 0) {
        return rs->rules[a->rule].policy;
    }
    for (size_t i = 0; i < rs->nroutes; i++) {
        if (alr_matchers_match(&rs->routes[i].match, a->labels)) {
            *route = (long)i;
            return (long)rs->routes[i].policy;
        }
    }
    if (rs->settings.fallback >= 0) {
        char name[220];
        snprintf(name, sizeof(name), "receiver:%s", rs->receivers[rs->settings.fallback].name);
        return policy_by_name(rs, name);
    }
    return -1;
}

/* The group key: policy name, then the group labels sorted, as Alertmanager prints them. */
static json_t *group_labels(const alr_dispatch_t *self, const alr_alert_t *a, long route)
{
    json_t *gl = json_object();
    const alr_route_t *r = route >= 0 ? &self->rules->routes[route] : NULL;
    bool all = !r;
    for (size_t i = 0; r && i < r->ngroup_by; i++) {
        all = all || strcmp(r->group_by[i], "...") == 0;
    }
    if (r && r->ngroup_by == 0) {
        /* Default grouping: by alert name and service. */
        json_object_set(gl, "alertname", json_object_get(a->labels, "alertname"));
        json_object_set(gl, "service", json_object_get(a->labels, "service"));
        return gl;
    }
    if (all) {
        json_object_update(gl, a->labels);
        return gl;
    }
    for (size_t i = 0; i < r->ngroup_by; i++) {
        json_t *v = json_object_get(a->labels, r->group_by[i]);
        json_object_set_new(gl, r->group_by[i], v ? json_incref(v) : json_string(""));
    }
    return gl;
}

static int cmp_cstr(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static void group_key_text(const char *policy, const json_t *gl, char *out, size_t len)
{
    const char *keys[64];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)gl, k, v)
    {
        if (n < 64) {
            keys[n++] = k;
        }
    }
    qsort(keys, n, sizeof(keys[0]), cmp_cstr);
    size_t pos = (size_t)snprintf(out, len, "%s:{", policy);
    for (size_t i = 0; i < n && pos < len; i++) {
        json_t *q = json_object_get(gl, keys[i]);
        char *qs = json_dumps(q, JSON_ENCODE_ANY);
        pos += (size_t)snprintf(out + pos, len - pos, "%s%s=%s", i ? "," : "", keys[i],
                                qs ? qs : "\"\"");
        free(qs);
    }
    if (pos < len) {
        snprintf(out + pos, len - pos, "}");
    }
}

/* FNV-1a: the index of groups by key (a storm creates thousands of groups, each looked
 * up by key when created and when a digest names it). */
static uint64_t key_hash(const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h = (h ^ *p) * 0x100000001b3ULL;
    }
    return h;
}

/* The live group with `key`, or NULL. by_key holds every group added and not yet freed,
 * under the last one added with that key: a miss means no live group has it; a hit on a
 * dead group or on another key (a hash collision) falls back to the full scan. */
static group_t *group_find(alr_dispatch_t *self, const char *key)
{
    uint64_t v;
    if (!map_get(&self->by_key, key_hash(key), &v)) {
        return NULL;
    }
    group_t *hit = (group_t *)(uintptr_t)v;
    if (!hit->dead && strcmp(hit->key, key) == 0) {
        return hit;
    }
    for (size_t i = 0; i < self->ngroups; i++) {
        if (!self->groups[i]->dead && strcmp(self->groups[i]->key, key) == 0) {
            return self->groups[i];
        }
    }
    return NULL;
}

static int groups_add(alr_dispatch_t *self, group_t *g)
{
    if (self->ngroups == self->capgroups) {
        size_t next = self->capgroups ? self->capgroups * 2 : 64;
        group_t **p = realloc(self->groups, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->groups = p;
        self->capgroups = next;
    }
    if (map_put(&self->by_key, key_hash(g->key), (uint64_t)(uintptr_t)g) != 0) {
        return TC_ENOMEM;
    }
    self->groups[self->ngroups++] = g;
    return 0;
}

static void dedup_of(const char *key, char *out, size_t len)
{
    /* Stable across restarts and replicas: a hash of the group key. */
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = key; *p; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    }
    snprintf(out, len, "tocsin-%016" PRIx64, h);
}

/* The group alert `a` belongs to, created when missing. NULL when out of memory or the
 * alert has nowhere to go. */
static group_t *group_for(alr_dispatch_t *self, const alr_alert_t *a, int64_t now_us)
{
    uint64_t gp;
    if (map_get(&self->by_fp, a->fp, &gp)) {
        return (group_t *)(uintptr_t)gp;
    }
    long route;
    long pol = route_alert(self, a, &route);
    if (pol < 0) {
        return NULL;
    }
    json_t *gl = group_labels(self, a, route);
    if (!gl) {
        return NULL;
    }
    char key[512];
    group_key_text(self->rules->policies[pol].name, gl, key, sizeof(key));
    group_t *g = group_find(self, key);
    if (g) {
        json_decref(gl);
        return g;
    }
    g = calloc(1, sizeof(*g));
    if (!g) {
        json_decref(gl);
        return NULL;
    }
    tc_strlcpy(g->key, key, sizeof(g->key));
    dedup_of(key, g->dedup, sizeof(g->dedup));
    tc_strlcpy(g->policy, self->rules->policies[pol].name, sizeof(g->policy));
    g->pol = pol;
    g->route = route;
    g->glabels = gl;
    g->via = json_object();
    g->dirty = true;
    (void)now_us;
    if (!g->via || groups_add(self, g) != 0) {
        group_free(g);
        return NULL;
    }
    return g;
}

static member_t *member_get(group_t *g, uint64_t fp)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->m[i].fp == fp) {
            return &g->m[i];
        }
    }
    return NULL;
}

static member_t *member_add(alr_dispatch_t *self, group_t *g, uint64_t fp)
{
    member_t *m = member_get(g, fp);
    if (m) {
        return m;
    }
    if (g->n == g->cap) {
        size_t next = g->cap ? g->cap * 2 : 4;
        member_t *p = realloc(g->m, next * sizeof(*p));
        if (!p) {
            return NULL;
        }
        g->m = p;
        g->cap = next;
    }
    if (map_put(&self->by_fp, fp, (uint64_t)(uintptr_t)g) != 0) {
        return NULL;
    }
    m = &g->m[g->n++];
    memset(m, 0, sizeof(*m));
    m->fp = fp;
    return m;
}

static void member_remove(alr_dispatch_t *self, group_t *g, size_t i)
{
    map_del(&self->by_fp, g->m[i].fp);
    g->m[i] = g->m[--g->n];
}

static bool told_has(const group_t *g, const char *name)
{
    for (size_t i = 0; i < g->ntold; i++) {
        if (strcmp(g->told[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static int told_add(group_t *g, const char *name)
{
    if (told_has(g, name)) {
        return 0;
    }
    char **p = realloc(g->told, (g->ntold + 1) * sizeof(*p));
    if (!p) {
        return TC_ENOMEM;
    }
    g->told = p;
    if (!(p[g->ntold] = strdup(name))) {
        return TC_ENOMEM;
    }
    g->ntold++;
    g->dirty = true;
    return 0;
}

static void schedule_flush(alr_dispatch_t *self, group_t *g, int64_t now_us, bool at_once)
{
    int64_t at;
    if (at_once) {
        at = now_us;
    } else if (!g->flushed) {
        at = now_us + group_wait_ms(self, g) * 1000;
    } else {
        at = g->last_flush + group_interval_ms(self, g) * 1000;
        if (at < now_us) {
            at = now_us;
        }
    }
    if (!g->flush_at || at < g->flush_at) {
        g->flush_at = at;
        g->dirty = true;
    }
}

/* True when the group has a firing alert that someone must act on. */
static bool needs_action(const group_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        const member_t *m = &g->m[i];
        if (m->status == M_FIRING && !m->acked && !m->silenced && !m->flapping && m->announced) {
            return true;
        }
    }
    return false;
}

/* ---- building notifications ---------------------------------------------------------- */

typedef struct {
    const char **names;
    size_t n, cap;
} names_t;

static void names_add(names_t *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->names[i], name) == 0) {
            return;
        }
    }
    if (l->n == l->cap) {
        size_t next = l->cap ? l->cap * 2 : 8;
        const char **p = realloc(l->names, next * sizeof(*p));
        if (!p) {
            return;
        }
        l->names = p;
        l->cap = next;
    }
    l->names[l->n++] = name;
}

static void tier_receivers(const alr_dispatch_t *self, const group_t *g, unsigned tier,
                           names_t *out)
{
    const alr_policy_t *p = policy_of(self, g);
    if (!p || tier >= p->ntiers) {
        return;
    }
    for (size_t i = 0; i < p->tiers[tier].nreceivers; i++) {
        names_add(out, self->rules->receivers[p->tiers[tier].receivers[i]].name);
    }
}

/* The payload for the members selected by `pick`. */
typedef bool (*pick_fn)(const member_t *m);

static bool pick_firing(const member_t *m)
{
    return m->status == M_FIRING && !m->silenced && !m->flapping;
}

static json_t *group_payload(alr_dispatch_t *self, alr_evaluator_t *ev, const group_t *g,
                             pick_fn pick, const bool *include_resolved, const char *title)
{
    json_t *p = json_object();
    json_t *alerts = json_array();
    json_t *fps = json_array();
    if (!p || !alerts || !fps) {
        json_decref(p);
        json_decref(alerts);
        json_decref(fps);
        return NULL;
    }
    size_t more = 0;
    for (size_t i = 0; i < g->n; i++) {
        const member_t *m = &g->m[i];
        bool in = pick(m) || (include_resolved && include_resolved[i]);
        if (!in) {
            continue;
        }
        const alr_alert_t *a = alr_evaluator_get(ev, m->fp);
        if (!a) {
            continue;
        }
        json_array_append_new(fps, json_string(a->fp_hex));
        if (json_array_size(alerts) >= ALR_MSG_ALERTS_MAX) {
            more++;
            continue;
        }
        json_t *it = alert_item(a, m, pick(m) ? M_FIRING : M_RESOLVED);
        if (it) {
            json_array_append_new(alerts, it);
        }
    }
    json_object_set_new(p, "alerts", alerts);
    json_object_set_new(p, "fingerprints", fps);
    json_object_set_new(p, "more", json_integer((json_int_t)more));
    json_object_set_new(p, "group_key", json_string(g->key));
    json_object_set(p, "group_labels", g->glabels);
    payload_finish(p, title);
    if (more) {
        /* Counted, not described: the counts cover every alert. */
        size_t fir = 0, res = 0;
        for (size_t i = 0; i < g->n; i++) {
            if (pick(&g->m[i])) {
                fir++;
            } else if (include_resolved && include_resolved[i]) {
                res++;
            }
        }
        json_object_set_new(p, "firing", json_integer((json_int_t)fir));
        json_object_set_new(p, "resolved", json_integer((json_int_t)res));
    }
    return p;
}

static const char *group_title(const group_t *g, char *buf, size_t len)
{
    const char *an = json_string_value(json_object_get(g->glabels, "alertname"));
    const char *sv = json_string_value(json_object_get(g->glabels, "service"));
    if (an && sv && sv[0]) {
        snprintf(buf, len, "%s (%s)", an, sv);
    } else if (an) {
        snprintf(buf, len, "%s", an);
    } else {
        snprintf(buf, len, "%s", g->key);
    }
    return buf;
}

/* Sends `payload` (copied per receiver) to every name in `to`; the group learns who was
 * told when `tell` is set. */
static int send_to(alr_dispatch_t *self, group_t *g, alr_msg_kind_t kind, const names_t *to,
                   json_t *payload, bool tell, int64_t now_us)
{
    int rc = 0;
    for (size_t i = 0; i < to->n && rc == 0; i++) {
        json_t *copy = json_deep_copy(payload);
        if (!msg_new(self, kind, to->names[i], g, NULL, copy, now_us)) {
            rc = TC_ENOMEM;
        } else if (tell) {
            rc = told_add(g, to->names[i]);
        }
    }
    json_decref(payload);
    return rc;
}

static void start_escalation(alr_dispatch_t *self, group_t *g, int64_t now_us)
{
    const alr_policy_t *p = policy_of(self, g);
    g->escalate_at = 0;
    if (p && g->tier < p->ntiers) {
        int64_t t = p->tiers[g->tier].timeout_ms;
        bool more = g->tier + 1 < p->ntiers || g->cycle < p->repeat;
        if (t > 0 && more) {
            g->escalate_at = now_us + t * 1000;
        }
    }
    int64_t rep = repeat_interval_ms(self, g);
    g->remind_at = rep > 0 ? now_us + rep * 1000 : 0;
    g->dirty = true;
}

/* PagerDuty receivers that heard of a group through a digest are told of its resolve
 * through the digest's own dedup key, once every group of the digest resolved. */
static int resolve_via_digest(alr_dispatch_t *self, group_t *g, const char *rname,
                              int64_t now_us, bool *handled)
{
    *handled = false;
    const char *dk = json_string_value(json_object_get(g->via, rname));
    rcv_t *r = rcv_of(self, rname);
    if (!dk || !r) {
        return 0;
    }
    *handled = true;
    json_t *cnt = r->digests ? json_object_get(r->digests, dk) : NULL;
    json_int_t left = cnt ? json_integer_value(cnt) - 1 : 0;
    char dkey[64];
    tc_strlcpy(dkey, dk, sizeof(dkey));
    json_object_del(g->via, rname);
    g->dirty = true;
    r->dirty = true;
    if (left > 0) {
        json_object_set_new(r->digests, dkey, json_integer(left));
        return 0;
    }
    if (r->digests) {
        json_object_del(r->digests, dkey);
    }
    json_t *p = json_pack("{s:[], s:[], s:i, s:s, s:s}", "alerts", "fingerprints", "more", 0,
                          "status", "resolved", "title", "Alert storm resolved");
    if (!p) {
        return TC_ENOMEM;
    }
    payload_finish(p, NULL);
    return msg_new(self, ALR_MSG_RESOLVED, rname, NULL, dkey, p, now_us) ? 0 : TC_ENOMEM;
}

static int flush(alr_dispatch_t *self, alr_evaluator_t *ev, group_t *g, int64_t now_us)
{
    g->flush_at = 0;
    g->dirty = true;
    bool *res = calloc(g->n ? g->n : 1, sizeof(bool));
    if (!res) {
        return TC_ENOMEM;
    }
    bool news = false, any_firing = false, any_res = false;
    for (size_t i = 0; i < g->n; i++) {
        member_t *m = &g->m[i];
        if (m->flapping) {
            continue;
        }
        if (pick_firing(m)) {
            any_firing = true;
            news = news || m->changed || !m->announced;
        } else if (m->status == M_RESOLVED && m->changed && (m->announced || !m->silenced)) {
            res[i] = true;
            any_res = true;
            news = true;
        }
    }
    int rc = 0;
    if (news && (any_firing || any_res)) {
        char title[600];
        json_t *p = group_payload(self, ev, g, pick_firing, res, group_title(g, title, sizeof(title)));
        names_t to = {0};
        if (any_firing) {
            for (unsigned t = 0; t <= g->tier; t++) {
                tier_receivers(self, g, t, &to);
            }
            for (size_t i = 0; i < g->ntold; i++) {
                names_add(&to, g->told[i]);
            }
            rc = send_to(self, g, ALR_MSG_FIRING, &to, p, true, now_us);
            if (rc == 0 && !g->flushed) {
                start_escalation(self, g, now_us);
            }
            g->flushed = true;
        } else {
            /* Only resolves: to whoever heard of the firing (or the first tier, for alerts
             * that fired and resolved before any notification went out). */
            if (g->ntold == 0) {
                tier_receivers(self, g, 0, &to);
            }
            for (size_t i = 0; i < g->ntold; i++) {
                names_add(&to, g->told[i]);
            }
            names_t direct = {0};
            for (size_t i = 0; i < to.n && rc == 0; i++) {
                bool handled = false;
                bool all_resolved = true;
                for (size_t k = 0; k < g->n; k++) {
                    all_resolved = all_resolved && g->m[k].status == M_RESOLVED;
                }
                if (all_resolved) {
                    rc = resolve_via_digest(self, g, to.names[i], now_us, &handled);
                }
                if (!handled) {
                    names_add(&direct, to.names[i]);
                }
            }
            if (rc == 0) {
                rc = send_to(self, g, ALR_MSG_RESOLVED, &direct, p, false, now_us);
            } else {
                json_decref(p);
            }
            free(direct.names);
            g->flushed = true;
        }
        free(to.names);
        g->last_flush = now_us;
    }
    /* Members reported: firing ones are announced; resolved ones leave the group. */
    for (size_t i = g->n; i > 0; i--) {
        member_t *m = &g->m[i - 1];
        if (m->flapping) {
            continue;
        }
        if (m->status == M_FIRING && !m->silenced) {
            m->announced = true;
            m->changed = false;
        } else if (m->status == M_RESOLVED && (res[i - 1] || !m->announced)) {
            member_remove(self, g, i - 1);
        }
    }
    free(res);
    if (g->n == 0) {
        g->dead = true;
    }
    return rc;
}

static int escalate(alr_dispatch_t *self, alr_evaluator_t *ev, group_t *g, int64_t now_us)
{
    const alr_policy_t *p = policy_of(self, g);
    g->escalate_at = 0;
    g->dirty = true;
    if (!p || !needs_action(g)) {
        return 0;
    }
    if (g->tier + 1 < p->ntiers) {
        g->tier++;
    } else if (g->cycle < p->repeat) {
        g->cycle++;
        g->tier = 0;
    } else {
        return 0;
    }
    char title[600];
    json_t *pl = group_payload(self, ev, g, pick_firing, NULL, group_title(g, title, sizeof(title)));
    names_t to = {0};
    tier_receivers(self, g, g->tier, &to);
    int rc = send_to(self, g, ALR_MSG_ESCALATION, &to, pl, true, now_us);
    free(to.names);
    int64_t t = p->tiers[g->tier].timeout_ms;
    bool more = g->tier + 1 < p->ntiers || g->cycle < p->repeat;
    if (t > 0 && more) {
        g->escalate_at = now_us + t * 1000;
    }
    return rc;
}

static int remind(alr_dispatch_t *self, alr_evaluator_t *ev, group_t *g, int64_t now_us)
{
    int64_t rep = repeat_interval_ms(self, g);
    g->remind_at = rep > 0 ? now_us + rep * 1000 : 0;
    g->dirty = true;
    if (!needs_action(g)) {
        g->remind_at = 0;
        return 0;
    }
    char title[600];
    json_t *pl = group_payload(self, ev, g, pick_firing, NULL, group_title(g, title, sizeof(title)));
    names_t to = {0};
    tier_receivers(self, g, g->tier, &to);
    int rc = send_to(self, g, ALR_MSG_REMINDER, &to, pl, true, now_us);
    free(to.names);
    return rc;
}

/* ---- events -------------------------------------------------------------------------- */

static bool all_acked(const group_t *g)
{
    bool any = false;
    for (size_t i = 0; i < g->n; i++) {
        if (g->m[i].status == M_FIRING && !g->m[i].silenced) {
            any = true;
            if (!g->m[i].acked) {
                return false;
            }
        }
    }
    return any;
}

static int on_ack(alr_dispatch_t *self, alr_evaluator_t *ev, group_t *g, const alr_alert_t *a,
                  int64_t now_us)
{
    if (!all_acked(g) || g->acked) {
        return 0;
    }
    g->acked = true;
    g->escalate_at = 0;
    g->remind_at = 0;
    g->dirty = true;
    names_t to = {0};
    for (size_t i = 0; i < g->ntold; i++) {
        const alr_receiver_t *rc = rcv_conf(self, g->told[i]);
        if (rc && rc->notify_ack) {
            names_add(&to, g->told[i]);
        }
    }
    int rc = 0;
    if (to.n > 0) {
        char title[600];
        json_t *pl = group_payload(self, ev, g, pick_firing, NULL, group_title(g, title, sizeof(title)));
        if (pl) {
            json_object_set_new(pl, "by", json_string(a->ack_by));
            json_object_set_new(pl, "comment", json_string(a->ack_comment));
            json_object_set_new(pl, "status", json_string("acknowledged"));
        }
        rc = send_to(self, g, ALR_MSG_ACK, &to, pl, false, now_us);
    }
    free(to.names);
    return rc;
}

static int on_unack(alr_dispatch_t *self, alr_evaluator_t *ev, group_t *g, int64_t now_us)
{
    g->acked = false;
    g->tier = 0;
    g->cycle = 0;
    g->dirty = true;
    if (!needs_action(g)) {
        return 0;
    }
    char title[600];
    json_t *pl = group_payload(self, ev, g, pick_firing, NULL, group_title(g, title, sizeof(title)));
    names_t to = {0};
    tier_receivers(self, g, 0, &to);
    int rc = send_to(self, g, ALR_MSG_ACK_EXPIRED, &to, pl, true, now_us);
    free(to.names);
    start_escalation(self, g, now_us);
    return rc;
}

static int on_flap_start(alr_dispatch_t *self, alr_evaluator_t *ev, group_t *g,
                         const alr_alert_t *a, member_t *m, int64_t now_us)
{
    m->flapping = true;
    g->dirty = true;
    names_t to = {0};
    for (unsigned t = 0; t <= g->tier; t++) {
        tier_receivers(self, g, t, &to);
    }
    for (size_t i = 0; i < g->ntold; i++) {
        names_add(&to, g->told[i]);
    }
    json_t *p = json_object();
    json_t *alerts = json_array();
    json_t *it = alert_item(a, m, a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED
                                      ? M_FIRING
                                      : M_RESOLVED);
    if (!p || !alerts || !it) {
        json_decref(p);
        json_decref(alerts);
        json_decref(it);
        free(to.names);
        return TC_ENOMEM;
    }
    json_array_append_new(alerts, it);
    json_object_set_new(p, "alerts", alerts);
    json_object_set_new(p, "fingerprints", json_pack("[s]", a->fp_hex));
    json_object_set_new(p, "group_key", json_string(g->key));
    json_object_set(p, "group_labels", g->glabels);
    json_object_set_new(p, "status", json_string("flapping"));
    char title[600];
    snprintf(title, sizeof(title), "%s is flapping; notifications paused until it is stable",
             json_string_value(json_object_get(a->labels, "alertname")));
    payload_finish(p, title);
    int rc = send_to(self, g, ALR_MSG_FLAPPING, &to, p, true, now_us);
    free(to.names);
    (void)ev;
    return rc;
}

int alr_dispatch_events(alr_dispatch_t *self, alr_evaluator_t *ev, const alr_silences_t *sil,
                        const alr_events_t *events, int64_t now_us)
{
    if (!self->rules || self->passive) {
        return 0;
    }
    for (size_t i = 0; i < events->len; i++) {
        const alr_event_t *e = &events->items[i];
        alr_alert_t *a = alr_evaluator_get(ev, e->fp);
        if (!a) {
            continue;
        }
        uint64_t gp;
        group_t *g = map_get(&self->by_fp, e->fp, &gp) ? (group_t *)(uintptr_t)gp : NULL;
        member_t *m = g ? member_get(g, e->fp) : NULL;
        bool firing = a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED;
        int rc = 0;
        switch (e->kind) {
        case ALR_EV_FIRING:
        case ALR_EV_FLAP_END:
            if (e->kind == ALR_EV_FLAP_END && !firing && !m) {
                break; /* resolved while flapping, never announced since: nothing owed */
            }
            if (!g) {
                g = group_for(self, a, now_us);
                if (!g) {
                    rc = TC_ENOMEM;
                    break;
                }
            }
            m = member_add(self, g, e->fp);
            if (!m) {
                rc = TC_ENOMEM;
                break;
            }
            m->flapping = false;
            m->status = firing ? M_FIRING : M_RESOLVED;
            m->changed = true;
            m->acked = a->state == ALR_STATE_ACKNOWLEDGED;
            m->starts_us = a->fired_at_us;
            m->ends_us = firing ? 0 : a->resolved_at_us;
            m->silenced = alr_silences_match(sil, a->labels, now_us) != NULL;
            if (firing) {
                g->acked = false;
            }
            g->dirty = true;
            schedule_flush(self, g, now_us, false);
            break;
        case ALR_EV_RESOLVED:
            if (!m) {
                break; /* never grouped: never announced */
            }
            m->status = M_RESOLVED;
            m->ends_us = a->resolved_at_us;
            m->changed = true;
            m->acked = false;
            m->flapping = false;
            g->dirty = true;
            /* Resolved by hand: a person acted, the others are told at once. */
            schedule_flush(self, g, now_us, a->resolved_by[0] != '\0');
            break;
        case ALR_EV_ACKED:
            if (m) {
                m->acked = true;
                g->dirty = true;
                rc = on_ack(self, ev, g, a, now_us);
            }
            break;
        case ALR_EV_UNACKED:
            if (m) {
                m->acked = false;
                rc = on_unack(self, ev, g, now_us);
            }
            break;
        case ALR_EV_FLAP_START:
            if (!g) {
                g = group_for(self, a, now_us);
                m = g ? member_add(self, g, e->fp) : NULL;
                if (!m) {
                    rc = TC_ENOMEM;
                    break;
                }
                m->status = firing ? M_FIRING : M_RESOLVED;
                m->starts_us = a->fired_at_us;
                m->silenced = alr_silences_match(sil, a->labels, now_us) != NULL;
            }
            if (m && !m->silenced) {
                rc = on_flap_start(self, ev, g, a, m, now_us);
            } else if (m) {
                m->flapping = true;
            }
            break;
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void alr_dispatch_silences_changed(alr_dispatch_t *self)
{
    self->silences_changed = true;
}

/* ---- tick ---------------------------------------------------------------------------- */

static int recheck_silences(alr_dispatch_t *self, alr_evaluator_t *ev, const alr_silences_t *sil,
                            int64_t now_us)
{
    for (size_t i = 0; i < self->ngroups; i++) {
        group_t *g = self->groups[i];
        for (size_t k = 0; k < g->n; k++) {
            member_t *m = &g->m[k];
            const alr_alert_t *a = alr_evaluator_get(ev, m->fp);
            if (!a) {
                continue;
            }
            bool now_sil = alr_silences_match(sil, a->labels, now_us) != NULL;
            if (m->silenced && !now_sil && m->status == M_FIRING) {
                /* The silence ended and the alert still fires: notify at once. */
                m->changed = true;
                m->announced = false;
                schedule_flush(self, g, now_us, true);
                if (g->flushed && !g->escalate_at && !g->acked) {
                    start_escalation(self, g, now_us);
                }
            }
            if (m->silenced != now_sil) {
                m->silenced = now_sil;
                g->dirty = true;
            }
        }
    }
    return 0;
}

/* Takes `g` out of by_key (when it is the group indexed under its key). */
static void group_unindex(alr_dispatch_t *self, group_t *g)
{
    uint64_t v;
    uint64_t h = key_hash(g->key);
    if (map_get(&self->by_key, h, &v) && (group_t *)(uintptr_t)v == g) {
        map_del(&self->by_key, h);
    }
}

static int remove_dead_groups(alr_dispatch_t *self)
{
    size_t k = 0;
    for (size_t i = 0; i < self->ngroups; i++) {
        group_t *g = self->groups[i];
        if (g->dead) {
            if (self->nremoved_groups == self->capremoved_groups) {
                size_t next = self->capremoved_groups ? self->capremoved_groups * 2 : 16;
                char **p = realloc(self->removed_groups, next * sizeof(*p));
                if (!p) {
                    self->groups[k++] = g;
                    continue;
                }
                self->removed_groups = p;
                self->capremoved_groups = next;
            }
            char *key = strdup(g->key);
            if (!key) {
                self->groups[k++] = g;
                continue;
            }
            self->removed_groups[self->nremoved_groups++] = key;
            for (size_t j = 0; j < g->n; j++) {
                map_del(&self->by_fp, g->m[j].fp);
            }
            group_unindex(self, g);
            group_free(g);
        } else {
            self->groups[k++] = g;
        }
    }
    self->ngroups = k;
    return 0;
}

/* Drops finished messages beyond ALR_LOG_KEEP, oldest first: first those merged into a
 * digest (the digest lists their alerts), then the others. */
static void prune_pass(alr_dispatch_t *self, size_t *drop, bool merged_only)
{
    size_t k = 0;
    for (size_t i = 0; i < self->nmsgs; i++) {
        alr_msg_t *m = self->msgs[i];
        bool candidate = !msg_open(m) && (!merged_only || m->status == ALR_DLV_MERGED);
        if (*drop > 0 && candidate) {
            if (self->nremoved_msgs == self->capremoved_msgs) {
                size_t next = self->capremoved_msgs ? self->capremoved_msgs * 2 : 256;
                uint64_t *p = realloc(self->removed_msgs, next * sizeof(*p));
                if (!p) {
                    self->msgs[k++] = m;
                    continue;
                }
                self->removed_msgs = p;
                self->capremoved_msgs = next;
            }
            self->removed_msgs[self->nremoved_msgs++] = m->id;
            msg_free(m);
            (*drop)--;
        } else {
            self->msgs[k++] = m;
        }
    }
    self->nmsgs = k;
}

static void prune_log(alr_dispatch_t *self)
{
    size_t finished = 0;
    for (size_t i = 0; i < self->nmsgs; i++) {
        finished += !msg_open(self->msgs[i]);
    }
    if (finished <= ALR_LOG_KEEP) {
        return;
    }
    size_t drop = finished - ALR_LOG_KEEP;
    prune_pass(self, &drop, true);
    if (drop > 0) {
        prune_pass(self, &drop, false);
    }
    self->first_open = 0;
}

static alr_msg_t *queue_head(alr_dispatch_t *self, const char *name, size_t *fresh);
static alr_msg_t *make_digest(alr_dispatch_t *self, rcv_t *r, const alr_receiver_t *conf,
                              int64_t now_us);

/* A storm is merged into its digest as soon as it is queued, before anything is written
 * or sent: thousands of notifications that will never go out on their own cost neither a
 * durable write in full nor a wait. The token is taken when the digest is sent. */
static void premerge(alr_dispatch_t *self, int64_t now_us)
{
    for (size_t ri = 0; ri < self->nrcv; ri++) {
        rcv_t *r = &self->rcv[ri];
        const alr_receiver_t *conf = &self->rules->receivers[ri];
        size_t fresh;
        if (!queue_head(self, r->name, &fresh) || fresh < 2) {
            continue;
        }
        size_t limit = self->rules->settings.digest_after;
        if (conf->rate_per_s > 0) {
            double tokens = r->tokens + (double)(now_us - r->tokens_at) / 1e6 * conf->rate_per_s;
            if (tokens > conf->burst) {
                tokens = conf->burst;
            }
            limit = (size_t)floor(tokens);
            if (r->in_flight && limit > 0) {
                limit--;
            }
        }
        if (fresh > limit) {
            make_digest(self, r, conf, now_us);
        }
    }
}

int alr_dispatch_tick(alr_dispatch_t *self, alr_evaluator_t *ev, const alr_silences_t *sil,
                      int64_t now_us)
{
    if (!self->rules || self->passive) {
        return 0;
    }
    int rc = 0;
    if (self->silences_changed ||
        alr_silences_changed_between(sil, self->silences_checked_us, now_us)) {
        self->silences_changed = false;
        rc = recheck_silences(self, ev, sil, now_us);
    }
    self->silences_checked_us = now_us;
    for (size_t i = 0; i < self->ngroups && rc == 0; i++) {
        group_t *g = self->groups[i];
        if (g->dead) {
            continue;
        }
        if (g->flush_at && now_us >= g->flush_at) {
            rc = flush(self, ev, g, now_us);
        }
        if (rc == 0 && !g->dead && g->escalate_at && now_us >= g->escalate_at) {
            rc = escalate(self, ev, g, now_us);
        }
        if (rc == 0 && !g->dead && g->remind_at && now_us >= g->remind_at) {
            rc = remind(self, ev, g, now_us);
        }
    }
    remove_dead_groups(self);
    if (rc == 0) {
        premerge(self, now_us);
    }
    prune_log(self);
    return rc;
}

/* ---- delivery ------------------------------------------------------------------------ */

static int64_t backoff_us(alr_dispatch_t *self, unsigned attempt)
{
    const alr_settings_t *s = &self->rules->settings;
    int64_t base = s->retry_base_ms * 1000, max = s->retry_max_ms * 1000;
    int64_t d = base;
    for (unsigned i = 1; i < attempt && d < max; i++) {
        d *= 2;
    }
    if (d > max) {
        d = max;
    }
    /* Full jitter on the upper half: d/2 + rand * d/2, so retries of many alerts spread. */
    int64_t half = d / 2;
    return half + (int64_t)((double)(d - half) * ((double)next_rand(self) / 4294967296.0));
}

static int self_alert(alr_dispatch_t *self, const alr_msg_t *failed, int64_t now_us)
{
    const alr_settings_t *s = &self->rules->settings;
    if (s->fallback < 0 || failed->kind == ALR_MSG_SELF) {
        return 0;
    }
    const char *fb = self->rules->receivers[s->fallback].name;
    if (strcmp(fb, failed->receiver) == 0) {
        return 0;
    }
    json_t *p = json_deep_copy(failed->payload);
    if (!p) {
        return TC_ENOMEM;
    }
    char title[700];
    snprintf(title, sizeof(title), "Tocsin could not deliver a %s notification to %s: %s",
             alr_msg_kind_name(failed->kind), failed->receiver, failed->last_error);
    json_object_set_new(p, "title", json_string(title));
    json_object_set_new(p, "failed_receiver", json_string(failed->receiver));
    json_object_set_new(p, "failed_kind", json_string(alr_msg_kind_name(failed->kind)));
    json_object_set_new(p, "error", json_string(failed->last_error));
    json_object_set_new(p, "failed_notification", json_integer((json_int_t)failed->id));
    char dk[64];
    snprintf(dk, sizeof(dk), "tocsin-undelivered-%" PRIu64, failed->id);
    alr_msg_t *m = msg_new(self, ALR_MSG_SELF, fb, NULL, dk, p, now_us);
    if (!m) {
        return TC_ENOMEM;
    }
    tc_strlcpy(m->group_key, failed->group_key, sizeof(m->group_key));
    self->st.self_alerts++;
    return 0;
}

static int give_up(alr_dispatch_t *self, rcv_t *r, alr_msg_t *m, const char *why, int64_t now_us)
{
    m->status = ALR_DLV_UNDELIVERED;
    m->done_us = now_us;
    if (why) {
        tc_strlcpy(m->last_error, why, sizeof(m->last_error));
    }
    m->dirty = true;
    if (r) {
        r->undelivered++;
        r->dirty = true;
        if (r->in_flight == m->id) {
            r->in_flight = 0;
        }
    }
    self->st.undelivered++;
    return self_alert(self, m, now_us);
}

/* The first queued message of receiver `name` (by id), or NULL. */
static alr_msg_t *queue_head(alr_dispatch_t *self, const char *name, size_t *fresh)
{
    alr_msg_t *head = NULL;
    *fresh = 0;
    while (self->first_open < self->nmsgs && !msg_open(self->msgs[self->first_open])) {
        self->first_open++;
    }
    for (size_t i = self->first_open; i < self->nmsgs; i++) {
        alr_msg_t *m = self->msgs[i];
        if (m->status != ALR_DLV_QUEUED || strcmp(m->receiver, name) != 0) {
            continue;
        }
        if (!head) {
            head = m;
        }
        if (m->attempts == 0 && m->kind != ALR_MSG_SELF) {
            (*fresh)++;
        }
    }
    return head;
}

/* Merges every fresh queued message of receiver `r` into one digest, placed first. */
static alr_msg_t *make_digest(alr_dispatch_t *self, rcv_t *r, const alr_receiver_t *conf,
                              int64_t now_us)
{
    json_t *alerts = json_array();
    json_t *fps = json_array();
    json_t *groups = json_array();
    if (!alerts || !fps || !groups) {
        json_decref(alerts);
        json_decref(fps);
        json_decref(groups);
        return NULL;
    }
    size_t firing = 0, resolved = 0, more = 0, merged = 0;
    uint64_t digest_id = self->next_id; /* what msg_new will hand out */
    char dkey[64];
    snprintf(dkey, sizeof(dkey), "tocsin-digest-%" PRIu64, digest_id);
    for (size_t i = self->first_open; i < self->nmsgs; i++) {
        alr_msg_t *m = self->msgs[i];
        if (m->status != ALR_DLV_QUEUED || m->attempts != 0 || m->kind == ALR_MSG_SELF ||
            strcmp(m->receiver, r->name) != 0) {
            continue;
        }
        json_t *ma = json_object_get(m->payload, "alerts");
        size_t k;
        json_t *v;
        json_array_foreach(ma, k, v)
        {
            if (json_array_size(alerts) < ALR_MSG_ALERTS_MAX) {
                json_array_append(alerts, v);
            } else {
                more++;
            }
        }
        more += (size_t)json_integer_value(json_object_get(m->payload, "more"));
        json_array_extend(fps, json_object_get(m->payload, "fingerprints"));
        firing += (size_t)json_integer_value(json_object_get(m->payload, "firing"));
        resolved += (size_t)json_integer_value(json_object_get(m->payload, "resolved"));
        if (m->group_key[0]) {
            json_array_append_new(groups, json_string(m->group_key));
        }
        /* PagerDuty keeps incidents: the groups announced by this digest resolve through
         * its key. */
        if (conf->type == ALR_RCV_PAGERDUTY && m->group_key[0] &&
            (m->kind == ALR_MSG_FIRING || m->kind == ALR_MSG_ESCALATION ||
             m->kind == ALR_MSG_REMINDER || m->kind == ALR_MSG_ACK_EXPIRED)) {
            group_t *g = group_find(self, m->group_key);
            if (g && !json_object_get(g->via, r->name)) {
                json_object_set_new(g->via, r->name, json_string(dkey));
                g->dirty = true;
                if (!r->digests) {
                    r->digests = json_object();
                }
                json_t *c = json_object_get(r->digests, dkey);
                json_object_set_new(r->digests, dkey,
                                    json_integer(c ? json_integer_value(c) + 1 : 1));
            }
        }
        m->status = ALR_DLV_MERGED;
        m->merged_into = digest_id;
        m->done_us = now_us;
        m->dirty = true;
        merged++;
        /* The digest carries the content now; the log keeps what it was about. */
        json_t *slim = json_pack("{s:O, s:O, s:O, s:O, s:O}", "fingerprints",
                                 json_object_get(m->payload, "fingerprints"), "title",
                                 json_object_get(m->payload, "title"), "status",
                                 json_object_get(m->payload, "status"), "firing",
                                 json_object_get(m->payload, "firing"), "resolved",
                                 json_object_get(m->payload, "resolved"));
        if (slim) {
            json_decref(m->payload);
            m->payload = slim;
        }
    }
    char title[200];
    snprintf(title, sizeof(title), "Alert storm: %zu firing, %zu resolved in %zu notifications",
             firing, resolved, merged);
    json_t *p = json_pack("{s:o, s:o, s:o, s:I, s:I, s:I, s:s, s:I}", "alerts", alerts,
                          "fingerprints", fps, "groups", groups, "firing", (json_int_t)firing,
                          "resolved", (json_int_t)resolved, "more", (json_int_t)more, "status",
                          firing > 0 ? "firing" : "resolved", "merged",
                          (json_int_t)merged);
    if (!p) {
        return NULL;
    }
    payload_finish(p, title);
    alr_msg_t *d = msg_new(self, ALR_MSG_DIGEST, r->name, NULL, dkey, p, now_us);
    if (d) {
        self->st.digests++;
        self->st.merged += merged;
    }
    return d;
}

size_t alr_dispatch_poll(alr_dispatch_t *self, int64_t now_us, alr_attempt_t *out, size_t max)
{
    size_t n = 0;
    if (!self->rules || self->passive) {
        return 0;
    }
    const alr_settings_t *s = &self->rules->settings;
    for (size_t ri = 0; ri < self->nrcv && n < max; ri++) {
        rcv_t *r = &self->rcv[ri];
        const alr_receiver_t *conf = &self->rules->receivers[ri];
        if (r->in_flight) {
            continue;
        }
        for (;;) {
            size_t fresh;
            alr_msg_t *head = queue_head(self, r->name, &fresh);
            if (!head) {
                break;
            }
            if (now_us - head->created_us >= s->retry_give_up_ms * 1000) {
                char why[200];
                snprintf(why, sizeof(why), "gave up after %u attempt(s)%s%s", head->attempts,
                         head->last_error[0] ? ": " : "", head->last_error);
                give_up(self, r, head, why, now_us);
                continue;
            }
            if (r->paused_until > now_us) {
                break;
            }
            if (r->breaker == BRK_OPEN) {
                if (now_us < r->open_until) {
                    break;
                }
                r->breaker = BRK_HALF;
                r->dirty = true;
            }
            if (head->next_attempt_us > now_us) {
                break;
            }
            /* A storm: more fresh notifications wait than the receiver may take now (its
             * tokens), or than settings.digest_after for a receiver without a limit. They
             * go as one digest instead of queueing for minutes. */
            bool storm = false;
            /* A receiver that takes one message at a time (no burst) gets the next one a
             * full interval after the answer to the last: the receiver saw that one before
             * it answered, so however long requests travel, it never sees two closer. */
            if (conf->rate_per_s > 0 && conf->burst < 2.0 && r->last_done_us &&
                now_us < r->last_done_us + (int64_t)(1e6 / conf->rate_per_s)) {
                break;
            }
            if (conf->rate_per_s > 0) {
                r->tokens += (double)(now_us - r->tokens_at) / 1e6 * conf->rate_per_s;
                if (r->tokens > conf->burst) {
                    r->tokens = conf->burst;
                }
                r->tokens_at = now_us;
                if (r->tokens < 1.0) {
                    break;
                }
                storm = fresh > 1 && (double)fresh > floor(r->tokens);
                r->tokens -= 1.0;
            } else {
                storm = fresh > s->digest_after;
            }
            if (storm && head->attempts == 0) {
                alr_msg_t *d = make_digest(self, r, conf, now_us);
                if (d) {
                    head = d;
                }
            }
            head->status = ALR_DLV_SENDING;
            head->attempts++;
            if (head->attempts == 1) {
                head->first_attempt_us = now_us;
            } else {
                self->st.retries++;
            }
            head->dirty = true;
            r->in_flight = head->id;
            r->dirty = true;
            out[n].id = head->id;
            out[n].receiver = ri;
            n++;
            break;
        }
    }
    return n;
}

int alr_dispatch_outcome(alr_dispatch_t *self, uint64_t id, const alr_outcome_t *o,
                         int64_t now_us)
{
    alr_msg_t *m = msg_get(self, id);
    if (!m || m->status != ALR_DLV_SENDING) {
        return TC_ENOTFOUND;
    }
    rcv_t *r = rcv_of(self, m->receiver);
    if (r && r->in_flight == id) {
        r->in_flight = 0;
    }
    if (r) {
        r->last_done_us = now_us;
    }
    m->dirty = true;
    m->last_status = o->transport_ok ? o->status : 0;
    if (o->transport_ok && o->status >= 200 && o->status < 300) {
        m->status = ALR_DLV_DELIVERED;
        m->done_us = now_us;
        m->last_error[0] = '\0';
        if (r) {
            r->breaker = BRK_CLOSED;
            r->failures = 0;
            r->opens = 0;
            r->delivered++;
            r->dirty = true;
        }
        self->st.delivered++;
        return 0;
    }
    self->st.failed_attempts++;
    if (r) {
        r->failed++;
        r->dirty = true;
    }
    if (o->error && o->error[0]) {
        tc_strlcpy(m->last_error, o->error, sizeof(m->last_error));
    } else if (o->transport_ok) {
        snprintf(m->last_error, sizeof(m->last_error), "HTTP %d", o->status);
    } else {
        snprintf(m->last_error, sizeof(m->last_error), "network error");
    }
    const alr_settings_t *s = &self->rules->settings;
    bool retry = !o->transport_ok || o->status == 429 || o->status == 408 || o->status >= 500;
    if (!retry) {
        char why[200];
        snprintf(why, sizeof(why), "HTTP %d: not retried (%s)", o->status, m->last_error);
        return give_up(self, r, m, why, now_us);
    }
    int64_t wait;
    if (o->transport_ok && o->status == 429) {
        /* Rate limited: the receiver is fine, only busy. Everything to it waits. */
        wait = o->retry_after_ms >= 0 ? o->retry_after_ms * 1000 : backoff_us(self, m->attempts);
        if (r) {
            r->paused_until = now_us + wait;
            if (r->breaker == BRK_HALF) {
                r->breaker = BRK_CLOSED;
            }
        }
    } else {
        wait = backoff_us(self, m->attempts);
        if (o->transport_ok && o->retry_after_ms >= 0 && o->retry_after_ms * 1000 > wait) {
            wait = o->retry_after_ms * 1000; /* a 503 with Retry-After */
        }
        if (r) {
            r->failures++;
            if (r->breaker == BRK_HALF || r->failures >= s->breaker_failures) {
                r->breaker = BRK_OPEN;
                int64_t cool = s->breaker_cooldown_ms * 1000;
                for (unsigned i = 0; i < r->opens && cool < 3600 * 1000000LL; i++) {
                    cool *= 2;
                }
                r->opens++;
                r->open_until = now_us + cool;
            }
        }
    }
    if (m->attempts >= s->retry_max_attempts ||
        now_us + wait - m->created_us > s->retry_give_up_ms * 1000) {
        char why[200];
        snprintf(why, sizeof(why), "gave up after %u attempt(s): %s", m->attempts,
                 m->last_error);
        return give_up(self, r, m, why, now_us);
    }
    m->status = ALR_DLV_QUEUED;
    m->next_attempt_us = now_us + wait;
    return 0;
}

int alr_dispatch_mark_peer(alr_dispatch_t *self, uint64_t id, int64_t now_us)
{
    alr_msg_t *m = msg_get(self, id);
    if (!m || !msg_open(m)) {
        return TC_ENOTFOUND;
    }
    rcv_t *r = rcv_of(self, m->receiver);
    if (r && r->in_flight == id) {
        r->in_flight = 0;
    }
    m->status = ALR_DLV_PEER;
    m->done_us = now_us;
    m->dirty = true;
    self->st.peer++;
    return 0;
}

/* When receiver `ri`'s queue head may go, as alr_dispatch_poll decides it (0: nothing
 * waits, or an attempt is out: its outcome comes first). */
static int64_t receiver_ready_at(const alr_dispatch_t *self, size_t ri, const alr_msg_t *head,
                                 int64_t now_us)
{
    const rcv_t *r = &self->rcv[ri];
    const alr_receiver_t *conf = &self->rules->receivers[ri];
    if (r->in_flight || !head) {
        return 0;
    }
    int64_t t = head->next_attempt_us > now_us ? head->next_attempt_us : now_us;
    if (r->paused_until > t) {
        t = r->paused_until;
    }
    if (r->breaker == BRK_OPEN && r->open_until > t) {
        t = r->open_until;
    }
    if (conf->rate_per_s > 0) {
        double tokens = r->tokens + (double)(now_us - r->tokens_at) / 1e6 * conf->rate_per_s;
        if (tokens > conf->burst) {
            tokens = conf->burst;
        }
        if (tokens < 1.0) {
            int64_t refill = now_us + (int64_t)ceil((1.0 - tokens) / conf->rate_per_s * 1e6);
            if (refill > t) {
                t = refill;
            }
        }
        if (conf->burst < 2.0 && r->last_done_us) {
            int64_t spaced = r->last_done_us + (int64_t)(1e6 / conf->rate_per_s);
            if (spaced > t) {
                t = spaced;
            }
        }
    }
    int64_t give_up = head->created_us + self->rules->settings.retry_give_up_ms * 1000;
    return give_up < t ? (give_up > now_us ? give_up : now_us) : t;
}

int64_t alr_dispatch_next_wake(const alr_dispatch_t *self, int64_t now_us)
{
    int64_t best = 0;
    if (self->passive || !self->rules) {
        return 0;
    }
#define CONSIDER(t)                                                                          \
    do {                                                                                     \
        int64_t t_ = (t);                                                                    \
        if (t_ > 0 && (!best || t_ < best)) {                                                \
            best = t_;                                                                       \
        }                                                                                    \
    } while (0)
    for (size_t i = 0; i < self->ngroups; i++) {
        CONSIDER(self->groups[i]->flush_at);
        CONSIDER(self->groups[i]->escalate_at);
        CONSIDER(self->groups[i]->remind_at);
    }
    /* Each receiver's queue head, found in one pass over the open messages. */
    size_t found = 0;
    bool *seen = self->nrcv ? calloc(self->nrcv, sizeof(bool)) : NULL;
    for (size_t i = self->first_open; seen && i < self->nmsgs && found < self->nrcv; i++) {
        const alr_msg_t *m = self->msgs[i];
        if (m->status != ALR_DLV_QUEUED) {
            continue;
        }
        long ri = rcv_index(self, m->receiver);
        if (ri < 0 || (size_t)ri >= self->nrcv || seen[ri]) {
            continue;
        }
        seen[ri] = true;
        found++;
        CONSIDER(receiver_ready_at(self, (size_t)ri, m, now_us));
    }
    free(seen);
#undef CONSIDER
    return best;
}

/* ---- rules --------------------------------------------------------------------------- */

/* Finds a group's policy (by name) and route (the one its alerts take) in the current
 * rules. */
static void group_bind(alr_dispatch_t *self, group_t *g, alr_evaluator_t *ev)
{
    g->pol = policy_by_name(self->rules, g->policy);
    g->route = -1;
    for (size_t k = 0; self->rules && k < g->n; k++) {
        const alr_alert_t *a = alr_evaluator_get(ev, g->m[k].fp);
        long route;
        if (a && route_alert(self, a, &route) == g->pol) {
            g->route = route;
            break;
        }
    }
}

int alr_dispatch_set_rules(alr_dispatch_t *self, const alr_ruleset_t *rules, alr_evaluator_t *ev,
                           int64_t now_us)
{
    rcv_t *nr = calloc(rules->nreceivers ? rules->nreceivers : 1, sizeof(*nr));
    if (!nr) {
        return TC_ENOMEM;
    }
    for (size_t i = 0; i < rules->nreceivers; i++) {
        const alr_receiver_t *c = &rules->receivers[i];
        rcv_t *old = NULL;
        /* States read back from LMDB win over the fresh ones made before the restore. */
        for (size_t j = 0; j < self->nrestored && !old; j++) {
            if (strcmp(self->restored[j].name, c->name) == 0) {
                old = &self->restored[j];
            }
        }
        for (size_t j = 0; j < self->nrcv && !old; j++) {
            if (strcmp(self->rcv[j].name, c->name) == 0) {
                old = &self->rcv[j];
            }
        }
        if (old) {
            nr[i] = *old;
            old->digests = NULL; /* moved */
            old->name[0] = '\0';
            if (nr[i].tokens > c->burst) {
                nr[i].tokens = c->burst;
            }
        } else {
            rcv_init(&nr[i], c, now_us);
        }
    }
    for (size_t j = 0; j < self->nrcv; j++) {
        json_decref(self->rcv[j].digests);
    }
    for (size_t j = 0; j < self->nrestored; j++) {
        json_decref(self->restored[j].digests);
    }
    free(self->restored);
    self->restored = NULL;
    self->nrestored = 0;
    free(self->rcv);
    self->rcv = nr;
    self->nrcv = rules->nreceivers;
    self->rules = rules;
    /* Groups find their policy and route again by name and labels. */
    for (size_t i = 0; i < self->ngroups; i++) {
        group_bind(self, self->groups[i], ev);
    }
    /* Notifications for receivers that are gone cannot be delivered. */
    int rc = 0;
    for (size_t i = self->first_open; i < self->nmsgs && rc == 0; i++) {
        alr_msg_t *m = self->msgs[i];
        if (m->status == ALR_DLV_QUEUED && rcv_index(self, m->receiver) < 0) {
            rc = give_up(self, NULL, m, "the receiver was removed from the rule file", now_us);
        }
    }
    return rc;
}

/* ---- API ----------------------------------------------------------------------------- */

void alr_dispatch_alert_route(alr_dispatch_t *self, const alr_alert_t *a,
                              const alr_silences_t *sil, int64_t now_us, alr_alert_route_t *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t v;
    if (map_get(&self->last_msg, a->fp, &v)) {
        out->last_msg = v;
    }
    out->silenced_by = alr_silences_match(sil, a->labels, now_us);
    if (!map_get(&self->by_fp, a->fp, &v)) {
        if (self->rules) {
            long route;
            long pol = route_alert(self, a, &route);
            if (pol >= 0) {
                tc_strlcpy(out->policy, self->rules->policies[pol].name, sizeof(out->policy));
            }
        }
        return;
    }
    const group_t *g = (const group_t *)(uintptr_t)v;
    out->grouped = true;
    tc_strlcpy(out->group_key, g->key, sizeof(out->group_key));
    tc_strlcpy(out->policy, g->policy, sizeof(out->policy));
    out->tier = g->tier;
    if (g->flush_at) {
        out->next_action = "notify";
        out->next_at_us = g->flush_at;
    }
    const alr_policy_t *p = policy_of(self, g);
    if (g->escalate_at && needs_action(g) && (!out->next_at_us || g->escalate_at < out->next_at_us)) {
        bool climb = p && g->tier + 1 < p->ntiers;
        out->next_action = climb ? "escalate" : "repeat";
        out->next_tier = climb ? g->tier + 1 : 0;
        out->next_at_us = g->escalate_at;
    }
    if (g->remind_at && needs_action(g) && (!out->next_at_us || g->remind_at < out->next_at_us)) {
        out->next_action = "remind";
        out->next_tier = g->tier;
        out->next_at_us = g->remind_at;
    }
    if (out->last_msg) {
        const alr_msg_t *m = alr_dispatch_msg(self, out->last_msg);
        if (m && m->status == ALR_DLV_QUEUED && m->next_attempt_us > now_us &&
            (!out->next_at_us || m->next_attempt_us < out->next_at_us)) {
            out->next_action = "deliver";
            out->next_at_us = m->next_attempt_us;
        }
    }
}

json_t *alr_dispatch_receivers_json(const alr_dispatch_t *self, int64_t now_us)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < self->nrcv; i++) {
        const rcv_t *r = &self->rcv[i];
        const alr_receiver_t *c = &self->rules->receivers[i];
        size_t queued = 0;
        for (size_t k = self->first_open; k < self->nmsgs; k++) {
            queued += msg_open(self->msgs[k]) && strcmp(self->msgs[k]->receiver, r->name) == 0;
        }
        double tokens = r->tokens;
        if (c->rate_per_s > 0) {
            tokens += (double)(now_us - r->tokens_at) / 1e6 * c->rate_per_s;
            if (tokens > c->burst) {
                tokens = c->burst;
            }
        }
        char pu[32];
        tc_time_format_rfc3339(r->paused_until, pu);
        json_t *j = json_pack(
            "{s:s, s:s, s:f, s:f, s:f, s:s, s:o, s:I, s:I, s:I, s:I, s:I}", "name", r->name,
            "type", alr_receiver_type_name(c->type), "rate_per_s", c->rate_per_s, "burst",
            c->burst, "tokens", c->rate_per_s > 0 ? tokens : c->burst, "circuit",
            r->breaker == BRK_OPEN ? "open" : (r->breaker == BRK_HALF ? "half_open" : "closed"),
            "paused_until", r->paused_until > now_us ? json_string(pu) : json_null(), "queued",
            (json_int_t)queued, "delivered", (json_int_t)r->delivered, "failed",
            (json_int_t)r->failed, "undelivered", (json_int_t)r->undelivered,
            "consecutive_failures", (json_int_t)r->failures);
        if (j) {
            json_array_append_new(arr, j);
        }
    }
    return arr;
}

static json_t *time_or_null(int64_t us)
{
    if (!us) {
        return json_null();
    }
    char b[32];
    tc_time_format_rfc3339(us, b);
    return json_string(b);
}

json_t *alr_msg_json(const alr_msg_t *m, const char *rtype)
{
    json_t *fps = json_object_get(m->payload, "fingerprints");
    return json_pack(
        "{s:I, s:o, s:s, s:s, s:s, s:s, s:s, s:i, s:O*, s:I, s:I, s:s, s:i, s:i, s:o, s:o, "
        "s:o, s:o, s:s?}",
        "id", (json_int_t)m->id, "created_at", time_or_null(m->created_us), "kind",
        alr_msg_kind_name(m->kind), "receiver", m->receiver, "receiver_type", rtype ? rtype : "",
        "group_key", m->group_key, "dedup_key", m->dedup_key, "tier", (int)m->tier, "alerts",
        fps, "alert_count", (json_int_t)json_array_size(fps), "digest_more",
        json_integer_value(json_object_get(m->payload, "more")), "status", alr_dlv_name(m->status),
        "attempts", (int)m->attempts, "last_status", m->last_status, "last_error",
        m->last_error[0] ? json_string(m->last_error) : json_null(), "delivered_at",
        m->status == ALR_DLV_DELIVERED ? time_or_null(m->done_us) : json_null(),
        "next_attempt_at",
        m->status == ALR_DLV_QUEUED && m->next_attempt_us ? time_or_null(m->next_attempt_us)
                                                          : json_null(),
        "merged_into", m->merged_into ? json_integer((json_int_t)m->merged_into) : json_null(),
        "title", json_string_value(json_object_get(m->payload, "title")));
}

void alr_dispatch_stats(const alr_dispatch_t *self, alr_dispatch_stats_t *out)
{
    *out = self->st;
}

/* ---- persistence --------------------------------------------------------------------- */

static json_t *group_json(const group_t *g)
{
    json_t *members = json_array();
    for (size_t i = 0; members && i < g->n; i++) {
        const member_t *m = &g->m[i];
        char fp[17];
        snprintf(fp, sizeof(fp), "%016" PRIx64, m->fp);
        json_array_append_new(members,
                              json_pack("{s:s, s:i, s:b, s:b, s:b, s:b, s:b, s:I, s:I}", "fp", fp,
                                        "status", m->status, "silenced", m->silenced, "acked",
                                        m->acked, "flapping", m->flapping, "announced",
                                        m->announced, "changed", m->changed, "starts_us",
                                        (json_int_t)m->starts_us, "ends_us",
                                        (json_int_t)m->ends_us));
    }
    json_t *told = json_array();
    for (size_t i = 0; told && i < g->ntold; i++) {
        json_array_append_new(told, json_string(g->told[i]));
    }
    return json_pack("{s:i, s:s, s:s, s:O, s:o*, s:o*, s:O, s:I, s:I, s:I, s:I, s:i, s:i, s:b, "
                     "s:b}",
                     "v", 1, "key", g->key, "policy", g->policy, "group_labels", g->glabels,
                     "members", members, "told", told, "via", g->via, "flush_at",
                     (json_int_t)g->flush_at, "last_flush", (json_int_t)g->last_flush,
                     "escalate_at", (json_int_t)g->escalate_at, "remind_at",
                     (json_int_t)g->remind_at, "tier", (int)g->tier, "cycle", (int)g->cycle,
                     "flushed", g->flushed, "acked", g->acked);
}

static json_t *msg_state_json(const alr_msg_t *m)
{
    return json_pack("{s:i, s:I, s:i, s:s, s:s, s:s, s:i, s:O, s:i, s:i, s:i, s:s, s:I, s:I, "
                     "s:I, s:I, s:I}",
                     "v", 1, "id", (json_int_t)m->id, "kind", (int)m->kind, "receiver",
                     m->receiver, "group_key", m->group_key, "dedup_key", m->dedup_key, "tier",
                     (int)m->tier, "payload", m->payload, "status", (int)m->status, "attempts",
                     (int)m->attempts, "last_status", m->last_status, "last_error",
                     m->last_error, "created_us", (json_int_t)m->created_us,
                     "first_attempt_us", (json_int_t)m->first_attempt_us, "next_attempt_us",
                     (json_int_t)m->next_attempt_us, "done_us", (json_int_t)m->done_us,
                     "merged_into", (json_int_t)m->merged_into);
}

static json_t *rcv_json(const rcv_t *r)
{
    return json_pack("{s:i, s:s, s:f, s:I, s:I, s:i, s:i, s:I, s:i, s:O?, s:I, s:I, s:I}", "v",
                     1, "name", r->name, "tokens", r->tokens, "tokens_at",
                     (json_int_t)r->tokens_at, "paused_until", (json_int_t)r->paused_until,
                     "breaker", r->breaker, "failures", (int)r->failures, "open_until",
                     (json_int_t)r->open_until, "opens", (int)r->opens, "digests", r->digests,
                     "delivered", (json_int_t)r->delivered, "failed", (json_int_t)r->failed,
                     "undelivered", (json_int_t)r->undelivered);
}

bool alr_dispatch_dirty(const alr_dispatch_t *self)
{
    if (self->meta_dirty || self->nremoved_groups || self->nremoved_msgs) {
        return true;
    }
    for (size_t i = 0; i < self->ngroups; i++) {
        if (self->groups[i]->dirty) {
            return true;
        }
    }
    for (size_t i = self->first_open; i < self->nmsgs; i++) {
        if (self->msgs[i]->dirty) {
            return true;
        }
    }
    for (size_t i = 0; i < self->nrcv; i++) {
        if (self->rcv[i].dirty) {
            return true;
        }
    }
    return false;
}

int alr_dispatch_each_dirty(alr_dispatch_t *self, alr_dispatch_record_fn fn, void *ctx)
{
    int rc = 0;
    for (size_t i = 0; i < self->nremoved_groups && rc == 0; i++) {
        rc = fn(ctx, "group", self->removed_groups[i], NULL);
    }
    for (size_t i = 0; i < self->nremoved_msgs && rc == 0; i++) {
        char k[17];
        snprintf(k, sizeof(k), "%016" PRIx64, self->removed_msgs[i]);
        rc = fn(ctx, "msg", k, NULL);
    }
    for (size_t i = 0; i < self->ngroups && rc == 0; i++) {
        if (self->groups[i]->dirty) {
            json_t *d = group_json(self->groups[i]);
            rc = d ? fn(ctx, "group", self->groups[i]->key, d) : TC_ENOMEM;
            json_decref(d);
        }
    }
    /* Messages are dirty only while open or just finished; finished ones before first_open
     * were written when they finished... except those finished since: scan all. */
    for (size_t i = 0; i < self->nmsgs && rc == 0; i++) {
        if (self->msgs[i]->dirty) {
            char k[17];
            snprintf(k, sizeof(k), "%016" PRIx64, self->msgs[i]->id);
            json_t *d = msg_state_json(self->msgs[i]);
            rc = d ? fn(ctx, "msg", k, d) : TC_ENOMEM;
            json_decref(d);
        }
    }
    for (size_t i = 0; i < self->nrcv && rc == 0; i++) {
        if (self->rcv[i].dirty) {
            json_t *d = rcv_json(&self->rcv[i]);
            rc = d ? fn(ctx, "rcv", self->rcv[i].name, d) : TC_ENOMEM;
            json_decref(d);
        }
    }
    if (rc == 0) {
        json_t *d = json_pack("{s:I}", "next_id", (json_int_t)self->next_id);
        rc = d ? fn(ctx, "meta", "next_id", d) : TC_ENOMEM;
        json_decref(d);
    }
    return rc;
}

void alr_dispatch_persisted(alr_dispatch_t *self)
{
    for (size_t i = 0; i < self->nremoved_groups; i++) {
        free(self->removed_groups[i]);
    }
    self->nremoved_groups = 0;
    self->nremoved_msgs = 0;
    for (size_t i = 0; i < self->ngroups; i++) {
        self->groups[i]->dirty = false;
    }
    for (size_t i = 0; i < self->nmsgs; i++) {
        self->msgs[i]->dirty = false;
    }
    for (size_t i = 0; i < self->nrcv; i++) {
        self->rcv[i].dirty = false;
    }
    self->meta_dirty = false;
}

static int64_t gi(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static const char *gs(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* A message from its persisted form; NULL when malformed (*bad) or out of memory. */
static alr_msg_t *msg_from_json(const json_t *doc, bool *bad)
{
    *bad = false;
    json_t *payload = json_object_get(doc, "payload");
    uint64_t id = (uint64_t)gi(doc, "id");
    if (!id || !json_is_object(payload)) {
        *bad = true;
        return NULL;
    }
    alr_msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        return NULL;
    }
    m->id = id;
    m->kind = (alr_msg_kind_t)gi(doc, "kind");
    tc_strlcpy(m->receiver, gs(doc, "receiver"), sizeof(m->receiver));
    tc_strlcpy(m->group_key, gs(doc, "group_key"), sizeof(m->group_key));
    tc_strlcpy(m->dedup_key, gs(doc, "dedup_key"), sizeof(m->dedup_key));
    m->tier = (unsigned)gi(doc, "tier");
    m->payload = json_deep_copy(payload);
    m->status = (alr_dlv_t)gi(doc, "status");
    m->attempts = (unsigned)gi(doc, "attempts");
    m->last_status = (int)gi(doc, "last_status");
    tc_strlcpy(m->last_error, gs(doc, "last_error"), sizeof(m->last_error));
    m->created_us = gi(doc, "created_us");
    m->first_attempt_us = gi(doc, "first_attempt_us");
    m->next_attempt_us = gi(doc, "next_attempt_us");
    m->done_us = gi(doc, "done_us");
    m->merged_into = (uint64_t)gi(doc, "merged_into");
    if (!m->payload) {
        msg_free(m);
        return NULL;
    }
    if ((unsigned)m->status > ALR_DLV_PEER || (unsigned)m->kind > ALR_MSG_SELF) {
        msg_free(m);
        *bad = true;
        return NULL;
    }
    return m;
}

static void msg_note_fps(alr_dispatch_t *self, const alr_msg_t *m)
{
    json_t *fps = json_object_get(m->payload, "fingerprints");
    size_t i;
    json_t *v;
    json_array_foreach(fps, i, v)
    {
        map_put(&self->last_msg,
                strtoull(json_string_value(v) ? json_string_value(v) : "0", NULL, 16), m->id);
    }
}

/* A receiver's throttle state from its persisted form, into `r` (name set by the caller). */
static void rcv_from_json(rcv_t *r, const json_t *doc)
{
    r->tokens = json_number_value(json_object_get(doc, "tokens"));
    r->tokens_at = gi(doc, "tokens_at");
    r->paused_until = gi(doc, "paused_until");
    r->breaker = (int)gi(doc, "breaker");
    r->failures = (unsigned)gi(doc, "failures");
    r->open_until = gi(doc, "open_until");
    r->opens = (unsigned)gi(doc, "opens");
    json_decref(r->digests);
    json_t *dg = json_object_get(doc, "digests");
    r->digests = json_is_object(dg) ? json_deep_copy(dg) : NULL;
    r->delivered = (uint64_t)gi(doc, "delivered");
    r->failed = (uint64_t)gi(doc, "failed");
    r->undelivered = (uint64_t)gi(doc, "undelivered");
}

/* A group from its persisted form, added to the dispatcher with its members. Returns 0,
 * TC_EPARSE or TC_ENOMEM. */
static int group_restore(alr_dispatch_t *self, const char *key, const json_t *doc,
                         group_t **out)
{
    json_t *gl = json_object_get(doc, "group_labels");
    json_t *members = json_object_get(doc, "members");
    if (!json_is_object(gl) || !json_is_array(members)) {
        return TC_EPARSE;
    }
    group_t *g = calloc(1, sizeof(*g));
    if (!g) {
        return TC_ENOMEM;
    }
    tc_strlcpy(g->key, key, sizeof(g->key));
    dedup_of(g->key, g->dedup, sizeof(g->dedup));
    tc_strlcpy(g->policy, gs(doc, "policy"), sizeof(g->policy));
    g->pol = -1;
    g->route = -1;
    g->glabels = json_deep_copy(gl);
    json_t *via = json_object_get(doc, "via");
    g->via = json_is_object(via) ? json_deep_copy(via) : json_object();
    g->flush_at = gi(doc, "flush_at");
    g->last_flush = gi(doc, "last_flush");
    g->escalate_at = gi(doc, "escalate_at");
    g->remind_at = gi(doc, "remind_at");
    g->tier = (unsigned)gi(doc, "tier");
    g->cycle = (unsigned)gi(doc, "cycle");
    g->flushed = json_is_true(json_object_get(doc, "flushed"));
    g->acked = json_is_true(json_object_get(doc, "acked"));
    if (!g->glabels || !g->via || groups_add(self, g) != 0) {
        group_free(g);
        return TC_ENOMEM;
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(doc, "told"), i, v)
    {
        if (json_is_string(v) && told_add(g, json_string_value(v)) != 0) {
            return TC_ENOMEM;
        }
    }
    json_array_foreach(members, i, v)
    {
        uint64_t fp = strtoull(gs(v, "fp"), NULL, 16);
        member_t *m = member_add(self, g, fp);
        if (!m) {
            return TC_ENOMEM;
        }
        m->status = (int)gi(v, "status");
        m->silenced = json_is_true(json_object_get(v, "silenced"));
        m->acked = json_is_true(json_object_get(v, "acked"));
        m->flapping = json_is_true(json_object_get(v, "flapping"));
        m->announced = json_is_true(json_object_get(v, "announced"));
        m->changed = json_is_true(json_object_get(v, "changed"));
        m->starts_us = gi(v, "starts_us");
        m->ends_us = gi(v, "ends_us");
    }
    g->dirty = false;
    if (g->n == 0) {
        g->dead = true;
    }
    if (out) {
        *out = g;
    }
    return 0;
}

int alr_dispatch_restore(alr_dispatch_t *self, const char *kind, const char *key,
                         const json_t *doc)
{
    if (strcmp(kind, "meta") == 0) {
        uint64_t id = (uint64_t)gi(doc, "next_id");
        if (id > self->next_id) {
            self->next_id = id;
        }
        return 0;
    }
    if (strcmp(kind, "msg") == 0) {
        bool bad;
        alr_msg_t *m = msg_from_json(doc, &bad);
        if (!m) {
            return bad ? TC_EPARSE : TC_ENOMEM;
        }
        if (alr_dispatch_msg(self, m->id)) {
            msg_free(m);
            return TC_EPARSE;
        }
        if (m->status == ALR_DLV_SENDING) {
            /* In flight when the process stopped: whether it arrived is unknown, so it is
             * sent again (receivers dedupe by dedup_key where they can). */
            m->status = ALR_DLV_QUEUED;
        }
        if (msgs_append(self, m) != 0) {
            msg_free(m);
            return TC_ENOMEM;
        }
        if (m->id >= self->next_id) {
            self->next_id = m->id + 1;
        }
        msg_note_fps(self, m);
        return 0;
    }
    if (strcmp(kind, "rcv") == 0) {
        rcv_t *p = realloc(self->restored, (self->nrestored + 1) * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->restored = p;
        rcv_t *r = &p[self->nrestored++];
        memset(r, 0, sizeof(*r));
        tc_strlcpy(r->name, key, sizeof(r->name));
        rcv_from_json(r, doc);
        return 0;
    }
    if (strcmp(kind, "group") == 0) {
        return group_restore(self, key, doc, NULL);
    }
    return TC_EPARSE;
}

/* ---- HA: mirroring a leader, taking over ------------------------------------------------ */

static int note_removed_group(alr_dispatch_t *self, const char *key)
{
    if (self->nremoved_groups == self->capremoved_groups) {
        size_t next = self->capremoved_groups ? self->capremoved_groups * 2 : 16;
        char **p = realloc(self->removed_groups, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->removed_groups = p;
        self->capremoved_groups = next;
    }
    char *k = strdup(key);
    if (!k) {
        return TC_ENOMEM;
    }
    self->removed_groups[self->nremoved_groups++] = k;
    return 0;
}

static int note_removed_msg(alr_dispatch_t *self, uint64_t id)
{
    if (self->nremoved_msgs == self->capremoved_msgs) {
        size_t next = self->capremoved_msgs ? self->capremoved_msgs * 2 : 256;
        uint64_t *p = realloc(self->removed_msgs, next * sizeof(*p));
        if (!p) {
            return TC_ENOMEM;
        }
        self->removed_msgs = p;
        self->capremoved_msgs = next;
    }
    self->removed_msgs[self->nremoved_msgs++] = id;
    return 0;
}

/* Takes group `g` out of the dispatcher and frees it. */
static void group_drop(alr_dispatch_t *self, group_t *g)
{
    group_unindex(self, g);
    for (size_t j = 0; j < g->n; j++) {
        uint64_t v;
        if (map_get(&self->by_fp, g->m[j].fp, &v) && (group_t *)(uintptr_t)v == g) {
            map_del(&self->by_fp, g->m[j].fp);
        }
    }
    for (size_t i = 0; i < self->ngroups; i++) {
        if (self->groups[i] == g) {
            memmove(&self->groups[i], &self->groups[i + 1],
                    (self->ngroups - i - 1) * sizeof(*self->groups));
            self->ngroups--;
            break;
        }
    }
    group_free(g);
}

int alr_dispatch_mirror(alr_dispatch_t *self, const char *kind, const char *key,
                        const json_t *doc, alr_evaluator_t *ev)
{
    if (strcmp(kind, "meta") == 0) {
        uint64_t id = doc ? (uint64_t)gi(doc, "next_id") : 0;
        if (id > self->next_id) {
            self->next_id = id;
            self->meta_dirty = true;
        }
        return 0;
    }
    if (strcmp(kind, "group") == 0) {
        group_t *old = group_find(self, key);
        if (old) {
            group_drop(self, old);
        }
        if (!doc) {
            return old ? note_removed_group(self, key) : 0;
        }
        group_t *g = NULL;
        int rc = group_restore(self, key, doc, &g);
        if (rc != 0) {
            return rc;
        }
        if (g->n == 0) {
            group_drop(self, g);
            return note_removed_group(self, key);
        }
        if (self->rules) {
            group_bind(self, g, ev);
        }
        g->dirty = true;
        return 0;
    }
    if (strcmp(kind, "msg") == 0) {
        char *end = NULL;
        uint64_t id = strtoull(key, &end, 16);
        if (!end || *end || id == 0) {
            return TC_EPARSE;
        }
        size_t at = msg_index(self, id);
        if (!doc) {
            if (at != SIZE_MAX) {
                msg_free(self->msgs[at]);
                memmove(&self->msgs[at], &self->msgs[at + 1],
                        (self->nmsgs - at - 1) * sizeof(*self->msgs));
                self->nmsgs--;
                self->first_open = 0;
                return note_removed_msg(self, id);
            }
            return 0;
        }
        bool bad;
        alr_msg_t *m = msg_from_json(doc, &bad);
        if (!m) {
            return bad ? TC_EPARSE : TC_ENOMEM;
        }
        if (m->id != id) {
            msg_free(m);
            return TC_EPARSE;
        }
        m->dirty = true;
        if (at != SIZE_MAX) {
            msg_free(self->msgs[at]);
            self->msgs[at] = m;
            self->first_open = 0;
        } else if (msgs_append(self, m) != 0) {
            msg_free(m);
            return TC_ENOMEM;
        }
        if (m->id >= self->next_id) {
            self->next_id = m->id + 1;
            self->meta_dirty = true;
        }
        msg_note_fps(self, m);
        return 0;
    }
    if (strcmp(kind, "rcv") == 0) {
        rcv_t *r = rcv_of(self, key);
        if (r && doc) {
            rcv_from_json(r, doc);
            r->in_flight = 0;
            r->dirty = true;
        }
        return 0;
    }
    return TC_EPARSE;
}

/* The events that bring the groups in line with the evaluator's alerts: what a leader that
 * died between deciding and publishing left undone, or what happened while this instance
 * only mirrored. */
static int reconcile(alr_dispatch_t *self, alr_evaluator_t *ev, const alr_silences_t *sil,
                     int64_t now_us)
{
    alr_events_t evs = {0};
    int rc = 0;
    for (size_t i = 0; i < self->ngroups && rc == 0; i++) {
        group_t *g = self->groups[i];
        for (size_t k = g->n; k > 0 && rc == 0; k--) {
            member_t *m = &g->m[k - 1];
            const alr_alert_t *a = alr_evaluator_get(ev, m->fp);
            if (!a) {
                /* Its alert is gone (rule removed and forgotten): nothing can describe it. */
                member_remove(self, g, k - 1);
                g->dirty = true;
                continue;
            }
            bool firing = a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED;
            bool acked = a->state == ALR_STATE_ACKNOWLEDGED;
            if (m->status == M_FIRING && !firing) {
                rc = alr_events_add(&evs, ALR_EV_RESOLVED, a->fp, now_us);
            } else if (m->status == M_RESOLVED && firing) {
                rc = alr_events_add(&evs, ALR_EV_FIRING, a->fp, now_us);
            } else if (firing && acked && !m->acked) {
                rc = alr_events_add(&evs, ALR_EV_ACKED, a->fp, now_us);
            } else if (firing && !acked && m->acked) {
                rc = alr_events_add(&evs, ALR_EV_UNACKED, a->fp, now_us);
            }
        }
        if (g->n == 0) {
            g->dead = true;
        }
    }
    size_t n = alr_evaluator_alert_count(ev);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const alr_alert_t *a = alr_evaluator_alert(ev, i);
        uint64_t v;
        if ((a->state == ALR_STATE_FIRING || a->state == ALR_STATE_ACKNOWLEDGED) &&
            !map_get(&self->by_fp, a->fp, &v)) {
            rc = alr_events_add(&evs, a->flapping ? ALR_EV_FLAP_START : ALR_EV_FIRING, a->fp,
                                now_us);
        }
    }
    if (rc == 0) {
        rc = alr_dispatch_events(self, ev, sil, &evs, now_us);
    }
    alr_events_fini(&evs);
    return rc;
}

int alr_dispatch_set_active(alr_dispatch_t *self, bool active, alr_evaluator_t *ev,
                            const alr_silences_t *sil, int64_t now_us)
{
    if (active == !self->passive) {
        return 0;
    }
    self->passive = !active;
    if (!active) {
        return 0;
    }
    /* Attempts the last leader had started are owed again: whether they arrived is not
     * known (at least once at the takeover instant). */
    for (size_t i = 0; i < self->nmsgs; i++) {
        alr_msg_t *m = self->msgs[i];
        if (m->status == ALR_DLV_SENDING) {
            m->status = ALR_DLV_QUEUED;
            m->dirty = true;
        }
    }
    for (size_t i = 0; i < self->nrcv; i++) {
        self->rcv[i].in_flight = 0;
    }
    self->first_open = 0;
    self->silences_changed = true;
    return self->rules ? reconcile(self, ev, sil, now_us) : 0;
}

bool alr_dispatch_active(const alr_dispatch_t *self)
{
    return !self->passive;
}

int alr_dispatch_restore_done(alr_dispatch_t *self)
{
    self->first_open = 0;
    for (size_t i = 0; i < self->nmsgs; i++) {
        self->msgs[i]->dirty = false;
    }
    self->meta_dirty = false;
    return 0;
}
