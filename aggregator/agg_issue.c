#include "agg_issue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_grouping.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

#define SAMPLE_MAX (256u * 1024)
#define CHANGE_MESSAGE_MAX 1024

const char *agg_status_name(agg_status_t s)
{
    switch (s) {
    case AGG_STATUS_RESOLVED:
        return "resolved";
    case AGG_STATUS_IGNORED:
        return "ignored";
    default:
        return "unresolved";
    }
}

int agg_status_parse(const char *s, agg_status_t *out)
{
    if (!s) {
        return TC_EINVAL;
    }
    if (strcmp(s, "unresolved") == 0) {
        *out = AGG_STATUS_UNRESOLVED;
    } else if (strcmp(s, "resolved") == 0) {
        *out = AGG_STATUS_RESOLVED;
    } else if (strcmp(s, "ignored") == 0) {
        *out = AGG_STATUS_IGNORED;
    } else {
        return TC_EINVAL;
    }
    return 0;
}

static const char *const level_names[] = {"error",   "trace", "debug", "info",
                                          "warning", "error", "fatal"};

const char *agg_level_name(int level)
{
    return level >= 0 && level <= 6 ? level_names[level] : "error";
}

int agg_level_parse(const char *s, int *out)
{
    if (!s) {
        return TC_EINVAL;
    }
    for (int i = 1; i <= 6; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    if (strcmp(s, "warn") == 0) {
        *out = TOCSIN__V1__LEVEL__LEVEL_WARNING;
        return 0;
    }
    return TC_EINVAL;
}

void agg_issue_init(agg_issue_t *is)
{
    memset(is, 0, sizeof(*is));
    tc_hll_init(&is->users);
}

void agg_issue_fini(agg_issue_t *is)
{
    free(is->service);
    free(is->id);
    free(is->type);
    free(is->message);
    free(is->culprit);
    free(is->last_release);
    for (uint32_t i = 0; i < is->nreleases; i++) {
        free(is->releases[i]);
    }
    for (uint32_t i = 0; i < is->nenvs; i++) {
        free(is->envs[i]);
    }
    free(is->sample);
    tc_hll_fini(&is->users);
    memset(is, 0, sizeof(*is));
    tc_hll_init(&is->users);
}

/* ---- grouping ------------------------------------------------------------------------------ */

_Static_assert(AGG_ISSUE_ID_HEX == TC_GROUPING_HASH_LEN, "issue ids are tc_grouping ids");

void agg_issue_fingerprint(const Tocsin__V1__ErrorEvent *e, char out[AGG_ISSUE_ID_HEX + 1])
{
    tc_grouping_hash(e, out);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    const char *b = strrchr(path, '\\');
    if (b && (!s || b > s)) {
        s = b;
    }
    return s ? s + 1 : path;
}

void agg_issue_culprit(const Tocsin__V1__ErrorEvent *e, char *out, size_t cap)
{
    out[0] = '\0';
    const Tocsin__V1__Frame *pick = NULL;
    for (size_t i = 0; i < e->n_frames && !pick; i++) {
        if (e->frames[i]->in_app) {
            pick = e->frames[i];
        }
    }
    if (!pick && e->n_frames > 0) {
        pick = e->frames[0];
    }
    if (!pick) {
        return;
    }
    const char *mod =
        pick->module && pick->module[0] ? pick->module : base_name(pick->file ? pick->file : "");
    const char *fn = pick->function && pick->function[0] ? pick->function : "?";
    snprintf(out, cap, "%s in %s", mod[0] ? mod : "?", fn);
}

/* ---- applying events --------------------------------------------------------------------------
 */

/* A copy of at most `max` bytes of `s`, cut on a UTF-8 character boundary. */
static char *dup_bounded(const char *s, size_t n, size_t max)
{
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int add_string(char **list, uint32_t *n, uint32_t max, const char *s, size_t len,
                      bool *truncated)
{
    for (uint32_t i = 0; i < *n; i++) {
        if (strlen(list[i]) == len && memcmp(list[i], s, len) == 0) {
            return 0;
        }
    }
    if (*n >= max) {
        if (truncated) {
            *truncated = true;
        }
        return 0;
    }
    char *d = dup_bounded(s, len, AGG_MAX_SHORT);
    if (!d) {
        return TC_ENOMEM;
    }
    list[(*n)++] = d;
    return 0;
}

/* Encodes the sample: the event with at most AGG_ISSUE_FRAMES_MAX frames and a bounded
 * message; without its tags when still too large. */
static int make_sample(const Tocsin__V1__Event *full, uint8_t **out, size_t *len)
{
    Tocsin__V1__Event ev = *full;
    Tocsin__V1__ErrorEvent er;
    if (full->body_case == TOCSIN__V1__EVENT__BODY_ERROR && full->error) {
        er = *full->error;
        if (er.n_frames > AGG_ISSUE_FRAMES_MAX) {
            er.n_frames = AGG_ISSUE_FRAMES_MAX;
        }
        ev.error = &er;
    }
    char *msg = NULL;
    if (ev.error && ev.error->message && strlen(ev.error->message) > AGG_ISSUE_MESSAGE_MAX) {
        msg = dup_bounded(ev.error->message, strlen(ev.error->message), AGG_ISSUE_MESSAGE_MAX);
        if (!msg) {
            return TC_ENOMEM;
        }
        er.message = msg;
    }
    size_t n = tocsin__v1__event__get_packed_size(&ev);
    if (n > SAMPLE_MAX) {
        ev.n_tags = 0;
        if (ev.error) {
            er.n_frames = er.n_frames > 8 ? 8 : er.n_frames;
        }
        n = tocsin__v1__event__get_packed_size(&ev);
    }
    uint8_t *buf = n <= SAMPLE_MAX ? malloc(n ? n : 1) : NULL;
    if (!buf) {
        free(msg);
        *out = NULL;
        *len = 0;
        return n <= SAMPLE_MAX ? TC_ENOMEM : 0;
    }
    tocsin__v1__event__pack(&ev, buf);
    free(msg);
    *out = buf;
    *len = n;
    return 0;
}

static int first_event(agg_issue_t *is, const agg_event_t *ev, const Tocsin__V1__Event *full,
                       const char *id)
{
    char culprit[512];
    const Tocsin__V1__ErrorEvent *er = full && full->error ? full->error : NULL;
    if (er) {
        agg_issue_culprit(er, culprit, sizeof(culprit));
    } else {
        culprit[0] = '\0';
    }
    is->service = dup_bounded(ev->service.p, ev->service.n, AGG_MAX_SERVICE);
    is->id = strdup(id);
    is->type = dup_bounded(ev->error_type.p ? ev->error_type.p : "", ev->error_type.n,
                           AGG_ISSUE_MESSAGE_MAX);
    is->message = dup_bounded(ev->error_message.p ? ev->error_message.p : "", ev->error_message.n,
                              AGG_ISSUE_MESSAGE_MAX);
    is->culprit = strdup(culprit);
    if (!is->service || !is->id || !is->type || !is->message || !is->culprit) {
        return TC_ENOMEM;
    }
    if (full) {
        int rc = make_sample(full, &is->sample, &is->sample_len);
        if (rc != 0) {
            return rc;
        }
    }
    is->first_seen_us = is->last_seen_us = ev->time_us;
    return 0;
}

int agg_issue_apply(agg_issue_t *is, const agg_event_t *ev, const Tocsin__V1__Event *full,
                    const char *id, uint32_t partition, int64_t offset)
{
    bool first = is->count == 0 && !is->id;
    if (first) {
        int rc = first_event(is, ev, full, id);
        if (rc != 0) {
            return rc;
        }
        is->partition = partition;
    }
    int level = ev->level ? ev->level : TOCSIN__V1__LEVEL__LEVEL_ERROR;
    if (level > is->level) {
        is->level = level;
    }
    if (ev->time_us < is->first_seen_us) {
        is->first_seen_us = ev->time_us;
    }
    bool latest = ev->time_us >= is->last_seen_us;
    if (latest) {
        is->last_seen_us = ev->time_us;
    }
    if (ev->received_us > is->last_received_us) {
        is->last_received_us = ev->received_us;
    }
    if (ev->release.n > 0) {
        int rc = add_string(is->releases, &is->nreleases, AGG_ISSUE_RELEASES_MAX, ev->release.p,
                            ev->release.n, &is->releases_truncated);
        if (rc != 0) {
            return rc;
        }
        if (latest || !is->last_release) {
            char *r = dup_bounded(ev->release.p, ev->release.n, AGG_MAX_SHORT);
            if (!r) {
                return TC_ENOMEM;
            }
            free(is->last_release);
            is->last_release = r;
        }
    }
    int rc = add_string(is->envs, &is->nenvs, AGG_ISSUE_ENVS_MAX, ev->environment.p,
                        ev->environment.n, NULL);
    if (rc == 0 && ev->user_id.n > 0) {
        rc = tc_hll_add(&is->users, ev->user_id.p, ev->user_id.n);
    }
    if (rc != 0) {
        return rc;
    }
    is->count += ev->weight ? ev->weight : 1;
    is->source_offset = offset + 1;
    return 0;
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int agg_issue_merge(agg_issue_t *dst, const agg_issue_t *src)
{
    if (!src->id) {
        return 0;
    }
    bool take_first = !dst->id || src->first_seen_us < dst->first_seen_us;
    if (take_first) {
        char *svc = strdup(src->service), *id = strdup(src->id), *type = dup_or_empty(src->type);
        char *msg = dup_or_empty(src->message), *cul = dup_or_empty(src->culprit);
        uint8_t *sample = src->sample ? malloc(src->sample_len ? src->sample_len : 1) : NULL;
        if (!svc || !id || !type || !msg || !cul || (src->sample && !sample)) {
            free(svc);
            free(id);
            free(type);
            free(msg);
            free(cul);
            free(sample);
            return TC_ENOMEM;
        }
        if (sample) {
            memcpy(sample, src->sample, src->sample_len);
        }
        free(dst->service);
        free(dst->id);
        free(dst->type);
        free(dst->message);
        free(dst->culprit);
        free(dst->sample);
        dst->service = svc;
        dst->id = id;
        dst->type = type;
        dst->message = msg;
        dst->culprit = cul;
        dst->sample = sample;
        dst->sample_len = src->sample ? src->sample_len : 0;
        dst->partition = src->partition;
    }
    if (dst->count == 0 || src->first_seen_us < dst->first_seen_us) {
        dst->first_seen_us = src->first_seen_us;
    }
    if (src->last_seen_us >= dst->last_seen_us || dst->count == 0) {
        if (src->last_release) {
            char *r = strdup(src->last_release);
            if (!r) {
                return TC_ENOMEM;
            }
            free(dst->last_release);
            dst->last_release = r;
        }
        dst->last_seen_us = src->last_seen_us;
    }
    if (src->last_received_us > dst->last_received_us) {
        dst->last_received_us = src->last_received_us;
    }
    if (src->level > dst->level) {
        dst->level = src->level;
    }
    for (uint32_t i = 0; i < src->nreleases; i++) {
        int rc = add_string(dst->releases, &dst->nreleases, AGG_ISSUE_RELEASES_MAX,
                            src->releases[i], strlen(src->releases[i]), &dst->releases_truncated);
        if (rc != 0) {
            return rc;
        }
    }
    dst->releases_truncated |= src->releases_truncated;
    for (uint32_t i = 0; i < src->nenvs; i++) {
        int rc = add_string(dst->envs, &dst->nenvs, AGG_ISSUE_ENVS_MAX, src->envs[i],
                            strlen(src->envs[i]), NULL);
        if (rc != 0) {
            return rc;
        }
    }
    int rc = tc_hll_merge(&dst->users, &src->users);
    if (rc != 0) {
        return rc;
    }
    dst->count += src->count;
    if (src->source_offset > dst->source_offset) {
        dst->source_offset = src->source_offset;
    }
    return 0;
}

/* ---- encoding -----------------------------------------------------------------------------------
 */

/* Appends field 16 (the sample, length-delimited) to a packed IssueState. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

int agg_issue_encode(const agg_issue_t *is, uint8_t **out, size_t *len)
{
    Tocsin__V1__IssueState pb = TOCSIN__V1__ISSUE_STATE__INIT;
    pb.service = is->service ? is->service : "";
    pb.issue_id = is->id ? is->id : "";
    pb.source_partition = is->partition;
    pb.source_offset = is->source_offset;
    pb.type = is->type ? is->type : "";
    pb.message = is->message ? is->message : "";
    pb.culprit = is->culprit ? is->culprit : "";
    pb.level = (Tocsin__V1__Level)is->level;
    pb.count = is->count;
    pb.first_seen_us = is->first_seen_us;
    pb.last_seen_us = is->last_seen_us;
    pb.last_received_us = is->last_received_us;
    pb.n_releases = is->nreleases;
    pb.releases = (char **)is->releases;
    pb.releases_truncated = is->releases_truncated;
    pb.last_release = is->last_release ? is->last_release : "";
    pb.n_environments = is->nenvs;
    pb.environments = (char **)is->envs;
    size_t hn = tc_hll_encoded_size(&is->users);
    uint8_t *users = hn ? malloc(hn) : NULL;
    if (hn && !users) {
        return TC_ENOMEM;
    }
    if (hn) {
        tc_hll_encode(&is->users, users);
        pb.users.data = users;
        pb.users.len = hn;
    }
    size_t n = tocsin__v1__issue_state__get_packed_size(&pb);
    size_t extra = is->sample ? 2 + 10 + is->sample_len : 0;
    uint8_t *buf = malloc(n + extra + 1);
    if (!buf) {
        free(users);
        return TC_ENOMEM;
    }
    tocsin__v1__issue_state__pack(&pb, buf);
    free(users);
    if (is->sample) {
        buf[n++] = 0x82; /* field 16, length-delimited */
        buf[n++] = 0x01;
        n += put_varint(buf + n, is->sample_len);
        memcpy(buf + n, is->sample, is->sample_len);
        n += is->sample_len;
    }
    *out = buf;
    *len = n;
    return 0;
}

static bool str_ok(const char *s, size_t max)
{
    return s && agg_text_ok(s, strlen(s), max);
}

int agg_issue_decode(const uint8_t *data, size_t len, agg_issue_t *is)
{
    agg_issue_fini(is);
    if (len > AGG_ISSUE_STORED_MAX) {
        return TC_ETOOBIG;
    }
    Tocsin__V1__IssueState *pb = tocsin__v1__issue_state__unpack(NULL, len, data);
    if (!pb) {
        return TC_EPARSE;
    }
    int rc = TC_EINVAL;
    if (!pb->service || !pb->service[0] || !str_ok(pb->service, AGG_MAX_SERVICE) || !pb->issue_id ||
        !pb->issue_id[0] || !str_ok(pb->issue_id, AGG_ISSUE_ID_MAX) ||
        !str_ok(pb->type, AGG_ISSUE_MESSAGE_MAX) || !str_ok(pb->message, AGG_ISSUE_MESSAGE_MAX) ||
        !str_ok(pb->culprit, AGG_ISSUE_MESSAGE_MAX) || !str_ok(pb->last_release, AGG_MAX_SHORT) ||
        pb->n_releases > AGG_ISSUE_RELEASES_MAX || pb->n_environments > AGG_ISSUE_ENVS_MAX ||
        pb->count == 0 || pb->first_seen_us > pb->last_seen_us || pb->source_offset < 0 ||
        (int)pb->level < 0 || pb->level > TOCSIN__V1__LEVEL__LEVEL_FATAL) {
        goto out;
    }
    for (size_t i = 0; i < pb->n_releases; i++) {
        if (!str_ok(pb->releases[i], AGG_MAX_SHORT) || !pb->releases[i][0]) {
            goto out;
        }
    }
    for (size_t i = 0; i < pb->n_environments; i++) {
        if (!str_ok(pb->environments[i], AGG_MAX_ENVIRONMENT) || !pb->environments[i][0]) {
            goto out;
        }
    }
    rc = tc_hll_decode(&is->users, pb->users.data, pb->users.len);
    if (rc != 0) {
        goto out;
    }
    rc = TC_ENOMEM;
    is->service = strdup(pb->service);
    is->id = strdup(pb->issue_id);
    is->type = strdup(pb->type);
    is->message = strdup(pb->message);
    is->culprit = strdup(pb->culprit);
    is->last_release = pb->last_release[0] ? strdup(pb->last_release) : NULL;
    if (!is->service || !is->id || !is->type || !is->message || !is->culprit ||
        (pb->last_release[0] && !is->last_release)) {
        goto out;
    }
    for (size_t i = 0; i < pb->n_releases; i++) {
        if (add_string(is->releases, &is->nreleases, AGG_ISSUE_RELEASES_MAX, pb->releases[i],
                       strlen(pb->releases[i]), NULL) != 0) {
            goto out;
        }
    }
    for (size_t i = 0; i < pb->n_environments; i++) {
        if (add_string(is->envs, &is->nenvs, AGG_ISSUE_ENVS_MAX, pb->environments[i],
                       strlen(pb->environments[i]), NULL) != 0) {
            goto out;
        }
    }
    if (pb->sample) {
        size_t n = tocsin__v1__event__get_packed_size(pb->sample);
        if (n > SAMPLE_MAX) {
            rc = TC_EINVAL;
            goto out;
        }
        is->sample = malloc(n ? n : 1);
        if (!is->sample) {
            goto out;
        }
        tocsin__v1__event__pack(pb->sample, is->sample);
        is->sample_len = n;
        /* protobuf-c re-packs what it kept of the input (unknown fields too, even those it
         * should have refused): the sample must still be an event we would accept. */
        agg_event_t scanned;
        if (agg_wire_scan(is->sample, is->sample_len, &scanned, NULL) != 0 ||
            scanned.body != AGG_BODY_ERROR) {
            rc = TC_EINVAL;
            goto out;
        }
    }
    is->releases_truncated = pb->releases_truncated;
    is->level = (int)pb->level;
    is->count = pb->count;
    is->first_seen_us = pb->first_seen_us;
    is->last_seen_us = pb->last_seen_us;
    is->last_received_us = pb->last_received_us;
    is->partition = pb->source_partition;
    is->source_offset = pb->source_offset;
    rc = 0;
out:
    tocsin__v1__issue_state__free_unpacked(pb, NULL);
    if (rc != 0) {
        agg_issue_fini(is);
    }
    return rc;
}

/* Wraps an already packed body (field `field` of Rollup) with producer and revision. */
static int wrap_rollup(uint32_t field, const uint8_t *body, size_t blen, const char *producer,
                       uint64_t revision, uint8_t **out, size_t *len)
{
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = (char *)(producer ? producer : "");
    r.revision = revision;
    size_t head = tocsin__v1__rollup__get_packed_size(&r);
    uint8_t *buf = malloc(head + 10 + 10 + blen);
    if (!buf) {
        return TC_ENOMEM;
    }
    size_t n = tocsin__v1__rollup__pack(&r, buf);
    n += put_varint(buf + n, ((uint64_t)field << 3) | 2);
    n += put_varint(buf + n, blen);
    memcpy(buf + n, body, blen);
    n += blen;
    *out = buf;
    *len = n;
    return 0;
}

int agg_issue_rollup_encode(const agg_issue_t *is, const char *producer, uint8_t **out, size_t *len)
{
    uint8_t *body = NULL;
    size_t blen = 0;
    int rc = agg_issue_encode(is, &body, &blen);
    if (rc != 0) {
        return rc;
    }
    rc = wrap_rollup(12, body, blen, producer, 2 * (uint64_t)is->source_offset, out, len);
    free(body);
    return rc;
}

size_t agg_issue_key(const char *service, const char *id, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s%c%c$issue:%s", service, 0, 0, id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

bool agg_issue_status_newer(const agg_issue_status_t *a, const agg_issue_status_t *b)
{
    if (a->updated_us != b->updated_us) {
        return a->updated_us > b->updated_us;
    }
    return strcmp(a->updated_by, b->updated_by) > 0;
}

int agg_issue_status_rollup_encode(const char *service, const char *id,
                                   const agg_issue_status_t *st, const char *producer,
                                   uint8_t **out, size_t *len)
{
    Tocsin__V1__IssueStatus pb = TOCSIN__V1__ISSUE_STATUS__INIT;
    pb.service = (char *)service;
    pb.issue_id = (char *)id;
    pb.status = (Tocsin__V1__IssueStatus__Status)st->status;
    pb.updated_us = st->updated_us;
    pb.updated_by = (char *)st->updated_by;
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = (char *)(producer ? producer : "");
    r.revision = (uint64_t)(st->updated_us > 0 ? st->updated_us : 0);
    r.body_case = TOCSIN__V1__ROLLUP__BODY_ISSUE_STATUS;
    r.issue_status = &pb;
    size_t n = tocsin__v1__rollup__get_packed_size(&r);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        return TC_ENOMEM;
    }
    tocsin__v1__rollup__pack(&r, buf);
    *out = buf;
    *len = n;
    return 0;
}

int agg_issue_change_encode(const agg_issue_t *is, int kind, const agg_event_t *ev,
                            const char *producer, uint8_t **out, size_t *len)
{
    Tocsin__V1__IssueChange pb = TOCSIN__V1__ISSUE_CHANGE__INIT;
    char *env = dup_bounded(ev->environment.p, ev->environment.n, AGG_MAX_ENVIRONMENT);
    char *rel = dup_bounded(ev->release.p ? ev->release.p : "", ev->release.n, AGG_MAX_SHORT);
    char *msg = dup_bounded(is->message ? is->message : "", is->message ? strlen(is->message) : 0,
                            CHANGE_MESSAGE_MAX);
    int rc = TC_ENOMEM;
    if (!env || !rel || !msg) {
        goto out;
    }
    pb.kind = (Tocsin__V1__IssueChange__Kind)kind;
    pb.service = is->service;
    pb.environment = env;
    pb.issue_id = is->id;
    pb.type = is->type ? is->type : "";
    pb.message = msg;
    pb.level = (Tocsin__V1__Level)(ev->level ? ev->level : TOCSIN__V1__LEVEL__LEVEL_ERROR);
    pb.culprit = is->culprit ? is->culprit : "";
    pb.release = rel;
    pb.first_seen_us = is->first_seen_us;
    pb.time_us = ev->time_us;
    pb.count = is->count;
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = (char *)(producer ? producer : "");
    r.revision = 2 * (uint64_t)is->source_offset;
    r.body_case = TOCSIN__V1__ROLLUP__BODY_ISSUE;
    r.issue = &pb;
    size_t n = tocsin__v1__rollup__get_packed_size(&r);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        goto out;
    }
    tocsin__v1__rollup__pack(&r, buf);
    *out = buf;
    *len = n;
    rc = 0;
out:
    free(env);
    free(rel);
    free(msg);
    return rc;
}
