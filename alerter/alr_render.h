/*
 * alr_render.h — what a notification looks like on the wire for each receiver type. Pure.
 *
 *   webhook:   an Alertmanager webhook body, version "4" (version, groupKey,
 *              truncatedAlerts, status, receiver, groupLabels, commonLabels,
 *              commonAnnotations, externalURL, alerts[] with status, labels, annotations,
 *              startsAt, endsAt, generatorURL, fingerprint), plus "value" per alert and a
 *              "tocsin" object (kind, id, tier, title, firing, resolved, more);
 *   slack:     an incoming-webhook body {"text": ...} in Slack's mrkdwn;
 *   pagerduty: an Events API v2 event (routing_key, event_action trigger / acknowledge /
 *              resolve, dedup_key, payload {summary, source, severity, timestamp,
 *              component, group, class, custom_details}, links, client, client_url);
 *   email:     an RFC 5322 text message with its envelope (sender, recipients).
 */
#ifndef ALR_RENDER_H
#define ALR_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alr_dispatch.h"
#include "alr_rules.h"

typedef struct {
    char *url;
    char *body;              /* HTTP body, or the whole e-mail message */
    size_t body_len;
    const char *content_type; /* static; NULL for e-mail */
    bool smtp;
    const char *mail_from;   /* borrowed from the receiver */
    char *const *rcpt;       /* borrowed */
    size_t nrcpt;
    const char *username;    /* borrowed, may be NULL */
    const char *password;
    bool starttls;
    int64_t timeout_ms;
} alr_request_t;

/*
 * Renders message `m` for receiver `rc`. `external_url` is this alerter's URL for links;
 * `now_us` dates e-mails. Returns 0 with `out` filled (free with alr_request_fini), or
 * TC_ENOMEM.
 */
int alr_render(const alr_msg_t *m, const alr_receiver_t *rc, const char *external_url,
               size_t max_listed, int64_t now_us, alr_request_t *out);

void alr_request_fini(alr_request_t *r);

#endif
