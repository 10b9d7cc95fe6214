#include "alr_render.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc_error.h"
#include "tc_util.h"

#define ZERO_TIME "0001-01-01T00:00:00Z"

typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} buf_t;

static void bprintf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(buf_t *b, const char *fmt, ...)
{
    if (b->oom) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t next = b->cap ? b->cap : 256;
        while (next < b->len + (size_t)n + 1) {
            next *= 2;
        }
        char *p = realloc(b->s, next);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = next;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static json_t *time_json(int64_t us)
{
    if (us <= 0) {
        return json_string(ZERO_TIME);
    }
    char buf[32];
    tc_time_format_rfc3339(us, buf);
    return json_string(buf);
}

static const char *kind_tag(const alr_msg_t *m, char *buf, size_t len)
{
    json_int_t firing = json_integer_value(json_object_get(m->payload, "firing"));
    json_int_t resolved = json_integer_value(json_object_get(m->payload, "resolved"));
    switch (m->kind) {
    case ALR_MSG_RESOLVED:
        snprintf(buf, len, "RESOLVED");
        break;
    case ALR_MSG_ESCALATION:
        snprintf(buf, len, "ESCALATED:tier %u:%lld", m->tier + 1, (long long)firing);
        break;
    case ALR_MSG_REMINDER:
        snprintf(buf, len, "STILL FIRING:%lld", (long long)firing);
        break;
    case ALR_MSG_ACK:
        snprintf(buf, len, "ACKNOWLEDGED");
        break;
    case ALR_MSG_ACK_EXPIRED:
        snprintf(buf, len, "ACK EXPIRED:%lld", (long long)firing);
        break;
    case ALR_MSG_FLAPPING:
        snprintf(buf, len, "FLAPPING");
        break;
    case ALR_MSG_DIGEST:
        snprintf(buf, len, "STORM:%lld firing, %lld resolved", (long long)firing,
                 (long long)resolved);
        break;
    case ALR_MSG_SELF:
        snprintf(buf, len, "UNDELIVERED");
        break;
    default:
        if (resolved > 0) {
            snprintf(buf, len, "FIRING:%lld, RESOLVED:%lld", (long long)firing,
                     (long long)resolved);
        } else {
            snprintf(buf, len, "FIRING:%lld", (long long)firing);
        }
        break;
    }
    return buf;
}

/* One line per alert, at most `max`; then "... and N more". */
static void alert_lines(buf_t *b, const alr_msg_t *m, size_t max, bool slack)
{
    json_t *alerts = json_object_get(m->payload, "alerts");
    size_t shown = 0, total = json_array_size(alerts);
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        if (shown >= max) {
            break;
        }
        json_t *labels = json_object_get(a, "labels");
        json_t *ann = json_object_get(a, "annotations");
        const char *summary = str(ann, "summary");
        bool resolved = strcmp(str(a, "status"), "resolved") == 0;
        bprintf(b, "%s%s%s%s", slack ? "• " : "- ", slack ? "*" : "", str(labels, "alertname"),
                slack ? "*" : "");
        const char *svc = str(labels, "service");
        if (svc[0]) {
            bprintf(b, " service=%s", svc);
        }
        const char *sev = str(labels, "severity");
        if (sev[0]) {
            bprintf(b, " severity=%s", sev);
        }
        if (resolved) {
            bprintf(b, " (resolved)");
        }
        if (summary[0]) {
            bprintf(b, ": %s", summary);
        }
        json_t *v = json_object_get(a, "value");
        if (json_is_number(v) && !summary[0]) {
            bprintf(b, " (value %.6g)", json_number_value(v));
        }
        bprintf(b, "\n");
        if (!slack) {
            const char *k;
            json_t *lv;
            json_object_foreach(labels, k, lv)
            {
                bprintf(b, "    %s = %s\n", k, json_string_value(lv) ? json_string_value(lv) : "");
            }
            json_object_foreach(ann, k, lv)
            {
                if (strcmp(k, "summary") != 0) {
                    bprintf(b, "    %s: %s\n", k,
                            json_string_value(lv) ? json_string_value(lv) : "");
                }
            }
        }
        shown++;
    }
    json_int_t more = json_integer_value(json_object_get(m->payload, "more"));
    size_t rest = total - shown + (size_t)(more > 0 ? more : 0);
    if (rest > 0) {
        bprintf(b, "%sand %zu more%s\n", slack ? "_… " : "... ", rest, slack ? "_" : "");
    }
}

static void text_body(buf_t *b, const alr_msg_t *m, size_t max, bool slack,
                      const char *external_url)
{
    char tag[96];
    const char *title = str(m->payload, "title");
    const char *icon = "";
    if (slack) {
        switch (m->kind) {
        case ALR_MSG_RESOLVED:
            icon = ":white_check_mark: ";
            break;
        case ALR_MSG_ACK:
            icon = ":eyes: ";
            break;
        case ALR_MSG_FLAPPING:
            icon = ":warning: ";
            break;
        case ALR_MSG_SELF:
            icon = ":x: ";
            break;
        default:
            icon = ":rotating_light: ";
            break;
        }
    }
    bprintf(b, "%s%s[%s] %s%s\n", icon, slack ? "*" : "", kind_tag(m, tag, sizeof(tag)), title,
            slack ? "*" : "");
    if (m->kind == ALR_MSG_ACK) {
        const char *cm = str(m->payload, "comment");
        bprintf(b, "Acknowledged by %s%s%s\n", str(m->payload, "by"), cm[0] ? ": " : "", cm);
    }
    alert_lines(b, m, max, slack);
    if (external_url && external_url[0]) {
        bprintf(b, "%s%s/api/v1/alerts%s\n", slack ? "<" : "", external_url, slack ? "|alerts>" : "");
    }
}

static json_t *am_alerts(const alr_msg_t *m, const char *external_url, size_t *truncated)
{
    json_t *out = json_array();
    json_t *alerts = json_object_get(m->payload, "alerts");
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        char *gen = NULL;
        if (asprintf(&gen, "%s/api/v1/alerts/%s", external_url, str(a, "fingerprint")) < 0) {
            gen = NULL;
        }
        json_t *v = json_object_get(a, "value");
        json_t *it = json_pack("{s:s, s:O, s:O, s:o, s:o, s:s, s:s, s:O}", "status",
                               str(a, "status"), "labels", json_object_get(a, "labels"),
                               "annotations", json_object_get(a, "annotations"), "startsAt",
                               time_json(json_integer_value(json_object_get(a, "starts_us"))),
                               "endsAt",
                               time_json(json_integer_value(json_object_get(a, "ends_us"))),
                               "generatorURL", gen ? gen : "", "fingerprint",
                               str(a, "fingerprint"), "value", v ? v : json_null());
        free(gen);
        if (it) {
            json_array_append_new(out, it);
        }
    }
    *truncated = (size_t)json_integer_value(json_object_get(m->payload, "more"));
    return out;
}

static char *render_webhook(const alr_msg_t *m, const alr_receiver_t *rc, const char *ext)
{
    size_t truncated = 0;
    json_t *alerts = am_alerts(m, ext, &truncated);
    const char *status = strcmp(str(m->payload, "status"), "resolved") == 0 ? "resolved"
                                                                              : "firing";
    json_t *gl = json_object_get(m->payload, "group_labels");
    json_t *doc = json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:o, s:O, s:O, s:s, s:o, s:{s:s, s:I, s:i, s:s, s:I, s:I, "
        "s:s}}",
        "version", "4", "groupKey", m->group_key[0] ? m->group_key : m->dedup_key,
        "truncatedAlerts", (json_int_t)truncated, "status", status, "receiver", rc->name,
        "groupLabels", gl ? json_incref(gl) : json_object(), "commonLabels",
        json_object_get(m->payload, "common_labels"), "commonAnnotations",
        json_object_get(m->payload, "common_annotations"), "externalURL", ext, "alerts", alerts,
        "tocsin", "kind", alr_msg_kind_name(m->kind), "id", (json_int_t)m->id, "tier",
        (int)m->tier + 1, "title", str(m->payload, "title"), "firing",
        json_integer_value(json_object_get(m->payload, "firing")), "resolved",
        json_integer_value(json_object_get(m->payload, "resolved")), "dedup_key", m->dedup_key);
    char *out = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return out;
}

static char *render_slack(const alr_msg_t *m, size_t max, const char *ext)
{
    buf_t b = {0};
    text_body(&b, m, max, true, ext);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    json_t *doc = json_pack("{s:s}", "text", b.s ? b.s : "");
    free(b.s);
    char *out = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return out;
}

static const char *pd_severity(const alr_msg_t *m)
{
    static const char *const order[] = {"critical", "error", "warning", "info"};
    int best = 3;
    json_t *alerts = json_object_get(m->payload, "alerts");
    size_t i;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        const char *s = str(json_object_get(a, "labels"), "severity");
        for (int k = 0; k < 4; k++) {
            if (strcmp(s, order[k]) == 0 && k < best) {
                best = k;
            }
        }
    }
    if (m->kind == ALR_MSG_SELF || m->kind == ALR_MSG_DIGEST) {
        best = best < 1 ? best : 1;
    }
    return order[best];
}

static char *render_pagerduty(const alr_msg_t *m, const alr_receiver_t *rc, size_t max,
                              const char *ext)
{
    const char *action = "trigger";
    if (m->kind == ALR_MSG_RESOLVED ||
        (m->kind == ALR_MSG_DIGEST && strcmp(str(m->payload, "status"), "resolved") == 0)) {
        action = "resolve";
    } else if (m->kind == ALR_MSG_ACK) {
        action = "acknowledge";
    }
    char tag[96], summary[1025];
    snprintf(summary, sizeof(summary), "[%s] %s", kind_tag(m, tag, sizeof(tag)),
             str(m->payload, "title"));
    json_t *details = json_array();
    json_t *alerts = json_object_get(m->payload, "alerts");
    size_t i, listed = 0;
    json_t *a;
    json_array_foreach(alerts, i, a)
    {
        if (listed >= max) {
            break;
        }
        json_array_append_new(details, json_pack("{s:s, s:s, s:O, s:O, s:O}", "fingerprint",
                                                 str(a, "fingerprint"), "status",
                                                 str(a, "status"), "labels",
                                                 json_object_get(a, "labels"), "annotations",
                                                 json_object_get(a, "annotations"), "value",
                                                 json_object_get(a, "value") ? json_object_get(a, "value") : json_null()));
        listed++;
    }
    size_t more = json_array_size(alerts) - listed +
                  (size_t)json_integer_value(json_object_get(m->payload, "more"));
    json_t *cl = json_object_get(m->payload, "common_labels");
    const char *service = str(cl, "service");
    const char *alertname = str(cl, "alertname");
    char ts[32];
    tc_time_format_rfc3339(m->created_us, ts);
    char *link = NULL;
    if (asprintf(&link, "%s/api/v1/alerts", ext) < 0) {
        link = NULL;
    }
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:o, s:I, s:I, s:I, s:s, "
        "s:s}}, s:[{s:s, s:s}], s:s, s:s}",
        "routing_key", rc->routing_key ? rc->routing_key : "", "event_action", action,
        "dedup_key", m->dedup_key, "payload", "summary", summary, "source",
        service[0] ? service : "tocsin-alerter", "severity", pd_severity(m), "timestamp", ts,
        "component", service[0] ? service : "tocsin", "group", alertname[0] ? alertname : "tocsin",
        "class", alr_msg_kind_name(m->kind), "custom_details", "alerts", details, "firing",
        json_integer_value(json_object_get(m->payload, "firing")), "resolved",
        json_integer_value(json_object_get(m->payload, "resolved")), "more", (json_int_t)more,
        "group_key", m->group_key, "notification",
        alr_msg_kind_name(m->kind), "links", "href", link ? link : ext, "text",
        "Tocsin alerts", "client", "Tocsin", "client_url", ext);
    free(link);
    char *out = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return out;
}

/* Header values must not carry line breaks (header injection). */
static void header_safe(char *s)
{
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') {
            *s = ' ';
        }
    }
}

static char *render_email(const alr_msg_t *m, const alr_receiver_t *rc, size_t max,
                          const char *ext, int64_t now_us, size_t *len)
{
    buf_t b = {0};
    char tag[96], subject[600], date[64];
    snprintf(subject, sizeof(subject), "[%s] %s", kind_tag(m, tag, sizeof(tag)),
             str(m->payload, "title"));
    header_safe(subject);
    time_t t = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    bprintf(&b, "From: %s\r\n", rc->from);
    bprintf(&b, "To: ");
    for (size_t i = 0; i < rc->nto; i++) {
        bprintf(&b, "%s%s", i ? ", " : "", rc->to[i]);
    }
    bprintf(&b, "\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%" PRIu64 ".%s@tocsin>\r\n", subject,
            date, m->id, m->dedup_key[0] ? m->dedup_key : "tocsin");
    bprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\nX-Tocsin-Kind: %s\r\n\r\n",
            alr_msg_kind_name(m->kind));
    buf_t body = {0};
    text_body(&body, m, max, false, ext);
    /* Lines end in CRLF, and a line that is a lone "." would end the DATA early (libcurl
     * dot-stuffs, but a bare LF must still become CRLF). */
    for (size_t i = 0; body.s && i < body.len; i++) {
        if (body.s[i] == '\n') {
            bprintf(&b, "\r\n");
        } else if (body.s[i] != '\r') {
            bprintf(&b, "%c", body.s[i]);
        }
    }
    free(body.s);
    if (b.oom || body.oom) {
        free(b.s);
        return NULL;
    }
    *len = b.len;
    return b.s;
}

int alr_render(const alr_msg_t *m, const alr_receiver_t *rc, const char *external_url,
               size_t max_listed, int64_t now_us, alr_request_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *ext = external_url ? external_url : "";
    out->url = strdup(rc->url);
    out->timeout_ms = rc->timeout_ms;
    switch (rc->type) {
    case ALR_RCV_SLACK:
        out->body = render_slack(m, max_listed, ext);
        out->content_type = "application/json";
        break;
    case ALR_RCV_PAGERDUTY:
        out->body = render_pagerduty(m, rc, max_listed, ext);
        out->content_type = "application/json";
        break;
    case ALR_RCV_EMAIL:
        out->body = render_email(m, rc, 100, ext, now_us, &out->body_len);
        out->smtp = true;
        out->mail_from = rc->from;
        out->rcpt = rc->to;
        out->nrcpt = rc->nto;
        out->username = rc->username;
        out->password = rc->password;
        out->starttls = rc->starttls;
        break;
    default:
        out->body = render_webhook(m, rc, ext);
        out->content_type = "application/json";
        break;
    }
    if (!out->url || !out->body) {
        alr_request_fini(out);
        return TC_ENOMEM;
    }
    if (!out->smtp) {
        out->body_len = strlen(out->body);
    }
    return 0;
}

void alr_request_fini(alr_request_t *r)
{
    free(r->url);
    free(r->body);
    memset(r, 0, sizeof(*r));
}
