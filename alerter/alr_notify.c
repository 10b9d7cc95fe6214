#include "alr_notify.h"

#include <assert.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

/* ---- body ---------------------------------------------------------------------------- */

static json_t *time_json(int64_t us)
{
    char buf[32];
    tc_time_format_rfc3339(us, buf);
    return json_string(buf);
}

const char *alr_notify_url(const alr_transition_t *t)
{
    return json_string_value(json_object_get(t->snapshot, "webhook"));
}

char *alr_notify_body(const alr_transition_t *t, const char *external_url)
{
    json_t *labels = json_object_get(t->snapshot, "labels");
    json_t *annotations = json_object_get(t->snapshot, "annotations");
    const char *receiver = json_string_value(json_object_get(t->snapshot, "receiver"));
    const char *alertname = json_string_value(json_object_get(labels, "alertname"));
    if (!json_is_object(labels) || !receiver || !alertname) {
        return NULL;
    }
    if (!json_is_object(annotations)) {
        annotations = NULL;
    }
    char fp[17];
    snprintf(fp, sizeof(fp), "%016" PRIx64, t->fingerprint);
    char *group_key = NULL, *generator = NULL;
    char *out = NULL;
    json_t *doc = NULL;
    /* json_dumps escapes the name inside the key the way Alertmanager prints it. */
    json_t *quoted = json_string(alertname);
    char *q = quoted ? json_dumps(quoted, JSON_ENCODE_ANY) : NULL;
    json_decref(quoted);
    if (!q || asprintf(&group_key, "{}:{alertname=%s}", q) < 0) {
        group_key = NULL;
        goto out;
    }
    if (asprintf(&generator, "%s/api/v1/alerts?fingerprint=%s", external_url, fp) < 0) {
        generator = NULL;
        goto out;
    }
    const char *status = alr_notify_status_name(t->status);
    json_t *alert = json_pack(
        "{s:s, s:O, s:o, s:o, s:o, s:s, s:s, s:o}", "status", status, "labels", labels,
        "annotations", annotations ? json_incref(annotations) : json_object(), "startsAt",
        time_json(t->starts_at_us), "endsAt",
        t->ends_at_us ? time_json(t->ends_at_us) : json_string(ALR_ZERO_TIME), "generatorURL",
        generator, "fingerprint", fp, "value",
        t->has_value ? json_real(t->value) : json_null());
    if (!alert) {
        goto out;
    }
    doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:{s:s}, s:O, s:o, s:s, s:[o]}", "version", "4",
                    "groupKey", group_key, "truncatedAlerts", 0, "status", status, "receiver",
                    receiver, "groupLabels", "alertname", alertname, "commonLabels", labels,
                    "commonAnnotations",
                    annotations ? json_incref(annotations) : json_object(), "externalURL",
                    external_url, "alerts", alert);
    if (doc) {
        out = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
out:
    json_decref(doc);
    free(q);
    free(group_key);
    free(generator);
    return out;
}

int64_t alr_backoff_us(unsigned attempt, int64_t base_us, int64_t max_us, uint32_t rnd)
{
    if (attempt < 1) {
        attempt = 1;
    }
    int64_t d = base_us;
    for (unsigned i = 1; i < attempt && d < max_us; i++) {
        d *= 2;
    }
    if (d > max_us) {
        d = max_us;
    }
    int64_t jitter = (int64_t)((double)(d / 2) * ((double)rnd / 4294967296.0));
    d += jitter;
    return d > max_us ? max_us : d;
}

/* ---- sender -------------------------------------------------------------------------- */

typedef struct entry {
    uint64_t id;
    uint64_t fingerprint;
    uint64_t blocked_by; /* id of an earlier notification of the same alert, 0 when none */
    char *url;
    char *body;
    unsigned attempts;
    int64_t next_at;    /* monotonic us */
    int last_status;
    char last_error[160];
    CURL *easy;         /* non-NULL while in flight */
    char curl_err[CURL_ERROR_SIZE];
} entry_t;

struct alr_sender {
    alr_sender_opts_t o;
    pthread_mutex_t lock;
    pthread_t thread;
    bool thread_started;
    CURLM *multi;
    struct curl_slist *headers;
    entry_t **q; /* sorted by id */
    size_t n, cap;
    size_t in_flight;
    bool stopping;
    int64_t drain_deadline; /* monotonic us, when stopping */
    uint64_t rng;
};

static uint32_t next_rand(alr_sender_t *self)
{
    /* xorshift64*: jitter only needs to be spread, not secret. */
    self->rng ^= self->rng >> 12;
    self->rng ^= self->rng << 25;
    self->rng ^= self->rng >> 27;
    return (uint32_t)((self->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

static void entry_free(entry_t *e)
{
    free(e->url);
    free(e->body);
    free(e);
}

/* Index of `id` in the queue, or self->n. Called with the lock held. */
static size_t find(const alr_sender_t *self, uint64_t id)
{
    size_t lo = 0, hi = self->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (self->q[mid]->id == id) {
            return mid;
        }
        if (self->q[mid]->id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return self->n;
}

static int start_transfer(alr_sender_t *self, entry_t *e)
{
    CURL *c = curl_easy_init();
    if (!c) {
        return TC_ENOMEM;
    }
    e->curl_err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, e->url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, e->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(e->body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, self->headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)self->o.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)self->o.total_timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->curl_err);
    curl_easy_setopt(c, CURLOPT_PRIVATE, e);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tocsin-alerter/" TOCSIN_VERSION);
    if (curl_multi_add_handle(self->multi, c) != CURLM_OK) {
        curl_easy_cleanup(c);
        return TC_EHTTP;
    }
    e->easy = c;
    e->attempts++;
    self->in_flight++;
    if (e->attempts > 1 && self->o.retries) {
        tc_counter_inc(self->o.retries);
    }
    return 0;
}

/* Starts every due, unblocked notification while there is room. Returns the wait in ms
 * until the next one becomes due (capped at one second). Called with the lock held. */
static long start_due(alr_sender_t *self, int64_t now)
{
    int64_t next = now + 1000000;
    for (size_t i = 0; i < self->n; i++) {
        entry_t *e = self->q[i];
        if (e->easy || e->blocked_by) {
            continue;
        }
        if (e->next_at > now) {
            if (e->next_at < next) {
                next = e->next_at;
            }
            continue;
        }
        if (self->stopping || self->in_flight >= self->o.max_in_flight) {
            continue;
        }
        if (start_transfer(self, e) != 0) {
            e->next_at = now + 100000; /* try again shortly */
        }
    }
    long ms = (long)((next - now + 999) / 1000);
    return ms < 1 ? 1 : ms;
}

/* A transfer ended: decide delivered or retry. Called with the lock held; may drop it
 * around the delivery callback. */
static void finish(alr_sender_t *self, CURL *c, CURLcode res)
{
    entry_t *e = NULL;
    curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&e);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(self->multi, c);
    curl_easy_cleanup(c);
    self->in_flight--;
    if (!e) {
        return;
    }
    e->easy = NULL;
    e->last_status = (int)code;
    if (res == CURLE_OK && code >= 200 && code < 300) {
        uint64_t id = e->id;
        if (self->o.on_delivered) {
            pthread_mutex_unlock(&self->lock);
            self->o.on_delivered(self->o.ctx, id);
            pthread_mutex_lock(&self->lock);
        }
        if (self->o.delivered) {
            tc_counter_inc(self->o.delivered);
        }
        tc_log(TC_LOG_INFO, "notify.delivered", "notification %" PRIu64 " delivered to %s "
               "(HTTP %ld, attempt %u)", id, e->url, code, e->attempts);
        size_t i = find(self, id);
        if (i < self->n) {
            for (size_t j = i + 1; j < self->n; j++) {
                if (self->q[j]->blocked_by == id) {
                    self->q[j]->blocked_by = 0;
                }
            }
            memmove(&self->q[i], &self->q[i + 1], (self->n - i - 1) * sizeof(*self->q));
            self->n--;
            entry_free(e);
        }
        return;
    }
    if (res != CURLE_OK) {
        tc_strlcpy(e->last_error, e->curl_err[0] ? e->curl_err : curl_easy_strerror(res),
                   sizeof(e->last_error));
    } else {
        snprintf(e->last_error, sizeof(e->last_error), "HTTP %ld", code);
    }
    if (self->o.failed) {
        tc_counter_inc(self->o.failed);
    }
    int64_t wait = alr_backoff_us(e->attempts, self->o.backoff_base_ms * 1000,
                                  self->o.backoff_max_ms * 1000, next_rand(self));
    e->next_at = tc_mono_us() + wait;
    tc_log(TC_LOG_WARN, "notify.retry",
           "notification %" PRIu64 " to %s failed (%s, attempt %u); retry in %" PRId64 " ms",
           e->id, e->url, e->last_error, e->attempts, wait / 1000);
}

/* Reads the transfers that ended. Called with the lock held. Returns how many ended. */
static int drain_done(alr_sender_t *self)
{
    CURLMsg *m;
    int left = 0, done = 0;
    while ((m = curl_multi_info_read(self->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            finish(self, m->easy_handle, m->data.result);
            done++;
        }
    }
    return done;
}

static void *sender_main(void *arg)
{
    alr_sender_t *self = arg;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        int64_t now = tc_mono_us();
        if (self->stopping && (self->in_flight == 0 || now >= self->drain_deadline)) {
            break;
        }
        long wait_ms = start_due(self, now);
        if (self->stopping) {
            long left = (long)((self->drain_deadline - now) / 1000) + 1;
            wait_ms = left < wait_ms ? left : wait_ms;
        }
        pthread_mutex_unlock(&self->lock);
        int running = 0;
        curl_multi_perform(self->multi, &running);
        pthread_mutex_lock(&self->lock);
        /* A fast receiver can answer within one perform: look at what ended before
         * sleeping, or the poll below would wait for activity that already happened. */
        if (drain_done(self) > 0) {
            continue;
        }
        pthread_mutex_unlock(&self->lock);
        curl_multi_poll(self->multi, NULL, 0, (int)wait_ms, NULL);
        pthread_mutex_lock(&self->lock);
    }
    /* Transfers still running at the drain deadline are abandoned, undelivered. */
    for (size_t i = 0; i < self->n; i++) {
        entry_t *e = self->q[i];
        if (e->easy) {
            curl_multi_remove_handle(self->multi, e->easy);
            curl_easy_cleanup(e->easy);
            e->easy = NULL;
            self->in_flight--;
            tc_log(TC_LOG_WARN, "notify.abandoned",
                   "notification %" PRIu64 " to %s still in flight at shutdown; it stays owed",
                   e->id, e->url);
        }
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

alr_sender_t *alr_sender_new(const alr_sender_opts_t *opts)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return NULL;
    }
    alr_sender_t *self = calloc(1, sizeof(*self));
    if (!self) {
        curl_global_cleanup();
        return NULL;
    }
    self->o = *opts;
    if (self->o.connect_timeout_ms <= 0) {
        self->o.connect_timeout_ms = 2000;
    }
    if (self->o.total_timeout_ms <= 0) {
        self->o.total_timeout_ms = 5000;
    }
    if (self->o.backoff_base_ms <= 0) {
        self->o.backoff_base_ms = 1000;
    }
    if (self->o.backoff_max_ms <= 0) {
        self->o.backoff_max_ms = 60000;
    }
    if (self->o.max_queue == 0) {
        self->o.max_queue = 100000;
    }
    if (self->o.max_in_flight == 0) {
        self->o.max_in_flight = 8;
    }
    if (tc_random_bytes(&self->rng, sizeof(self->rng)) != 0 || self->rng == 0) {
        self->rng = (uint64_t)tc_mono_us() | 1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->multi = curl_multi_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    self->headers = h ? curl_slist_append(h, "Expect:") : NULL; /* no 100-continue wait */
    if (!self->headers && h) {
        curl_slist_free_all(h);
    }
    if (!self->multi || !self->headers ||
        pthread_create(&self->thread, NULL, sender_main, self) != 0) {
        alr_sender_destroy(&self);
        return NULL;
    }
    self->thread_started = true;
    return self;
}

int alr_sender_submit(alr_sender_t *self, uint64_t id, uint64_t fingerprint, const char *url,
                      const char *body)
{
    assert(self && url && body);
    entry_t *e = calloc(1, sizeof(*e));
    if (!e || !(e->url = strdup(url)) || !(e->body = strdup(body))) {
        if (e) {
            entry_free(e);
        }
        return TC_ENOMEM;
    }
    e->id = id;
    e->fingerprint = fingerprint;
    e->next_at = 0;
    pthread_mutex_lock(&self->lock);
    int rc = 0;
    if (self->stopping) {
        rc = TC_ESTATE;
    } else if (self->n >= self->o.max_queue) {
        rc = TC_EFULL;
    } else if (find(self, id) < self->n) {
        rc = TC_EEXIST;
    } else if (self->n == self->cap) {
        size_t next = self->cap ? self->cap * 2 : 16;
        entry_t **q = realloc(self->q, next * sizeof(*q));
        if (!q) {
            rc = TC_ENOMEM;
        } else {
            self->q = q;
            self->cap = next;
        }
    }
    if (rc == 0) {
        /* Keep the queue sorted by id; submissions normally come in id order. */
        size_t pos = self->n;
        while (pos > 0 && self->q[pos - 1]->id > id) {
            pos--;
        }
        for (size_t i = pos; i > 0; i--) {
            if (self->q[i - 1]->fingerprint == fingerprint) {
                e->blocked_by = self->q[i - 1]->id;
                break;
            }
        }
        memmove(&self->q[pos + 1], &self->q[pos], (self->n - pos) * sizeof(*self->q));
        self->q[pos] = e;
        self->n++;
        e = NULL;
        curl_multi_wakeup(self->multi);
    }
    pthread_mutex_unlock(&self->lock);
    if (e) {
        entry_free(e);
    }
    return rc;
}

bool alr_sender_pending(alr_sender_t *self, uint64_t id, alr_delivery_t *out)
{
    pthread_mutex_lock(&self->lock);
    size_t i = find(self, id);
    bool held = i < self->n;
    if (held && out) {
        const entry_t *e = self->q[i];
        out->attempts = e->attempts;
        out->last_status = e->last_status;
        tc_strlcpy(out->last_error, e->last_error, sizeof(out->last_error));
        out->next_attempt_mono_us = e->next_at;
        out->in_flight = e->easy != NULL;
    }
    pthread_mutex_unlock(&self->lock);
    return held;
}

size_t alr_sender_queued(alr_sender_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->n;
    pthread_mutex_unlock(&self->lock);
    return n;
}

void alr_sender_stop(alr_sender_t *self, int64_t drain_ms)
{
    if (!self) {
        return;
    }
    pthread_mutex_lock(&self->lock);
    if (!self->stopping) {
        self->stopping = true;
        self->drain_deadline = tc_mono_us() + drain_ms * 1000;
    }
    pthread_mutex_unlock(&self->lock);
    if (self->multi) {
        curl_multi_wakeup(self->multi);
    }
    if (self->thread_started) {
        pthread_join(self->thread, NULL);
        self->thread_started = false;
    }
}

void alr_sender_destroy(alr_sender_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_sender_t *self = *self_p;
    alr_sender_stop(self, self->o.total_timeout_ms);
    for (size_t i = 0; i < self->n; i++) {
        entry_free(self->q[i]);
    }
    free(self->q);
    if (self->multi) {
        curl_multi_cleanup(self->multi);
    }
    curl_slist_free_all(self->headers);
    pthread_mutex_destroy(&self->lock);
    free(self);
    curl_global_cleanup();
    *self_p = NULL;
}
