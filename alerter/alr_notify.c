#include "alr_notify.h"

#include <assert.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_util.h"

typedef struct job {
    uint64_t id;
    alr_request_t req;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *rcpt;
    size_t read_pos;
    int64_t retry_after_ms;
    int64_t started_us;
    char err[CURL_ERROR_SIZE];
    struct job *next;
} job_t;

struct alr_sender {
    pthread_mutex_t lock;
    pthread_t thread;
    bool started;
    CURLM *multi;
    size_t max_in_flight;
    int64_t connect_ms;
    job_t *queue_head, *queue_tail; /* waiting */
    job_t *running;                 /* in the multi handle */
    size_t nqueued;
    size_t nrunning;
    alr_result_t *done;
    size_t ndone, capdone;
    int wake_fd; /* eventfd: readable while results wait */
    bool stopping;
    int64_t drain_deadline;
};

int64_t alr_retry_after_ms(const char *v, int64_t now_us)
{
    while (*v == ' ' || *v == '\t') {
        v++;
    }
    char *end = NULL;
    long long secs = strtoll(v, &end, 10);
    if (end != v) {
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') {
            end++;
        }
        if (*end == '\0' && secs >= 0) {
            return secs > 86400 ? 86400000 : secs * 1000;
        }
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!p) {
        return -1;
    }
    int64_t at = (int64_t)timegm(&tm) * 1000000;
    int64_t ms = (at - now_us) / 1000;
    if (ms < 0) {
        ms = 0;
    }
    return ms > 86400000 ? 86400000 : ms;
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
    job_t *j = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(buf, "retry-after:", 12) == 0) {
        char v[128];
        size_t vl = len - 12 < sizeof(v) - 1 ? len - 12 : sizeof(v) - 1;
        memcpy(v, buf + 12, vl);
        v[vl] = '\0';
        j->retry_after_ms = alr_retry_after_ms(v, tc_now_us());
    }
    return len;
}

static size_t discard(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

static size_t read_body(char *buf, size_t size, size_t n, void *ud)
{
    job_t *j = ud;
    size_t room = size * n;
    size_t left = j->req.body_len - j->read_pos;
    size_t k = left < room ? left : room;
    memcpy(buf, j->req.body + j->read_pos, k);
    j->read_pos += k;
    return k;
}

static void job_free(job_t *j)
{
    if (!j) {
        return;
    }
    curl_slist_free_all(j->headers);
    curl_slist_free_all(j->rcpt);
    alr_request_fini(&j->req);
    free(j);
}

static int job_start(alr_sender_t *self, job_t *j)
{
    CURL *c = curl_easy_init();
    if (!c) {
        return TC_ENOMEM;
    }
    j->err[0] = '\0';
    j->retry_after_ms = -1;
    j->started_us = tc_mono_us();
    curl_easy_setopt(c, CURLOPT_URL, j->req.url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)self->connect_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(j->req.timeout_ms > 0 ? j->req.timeout_ms : 10000));
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, j->err);
    curl_easy_setopt(c, CURLOPT_PRIVATE, j);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (j->req.smtp) {
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
        curl_easy_setopt(c, CURLOPT_MAIL_FROM, j->req.mail_from);
        for (size_t i = 0; i < j->req.nrcpt; i++) {
            struct curl_slist *l = curl_slist_append(j->rcpt, j->req.rcpt[i]);
            if (!l) {
                curl_easy_cleanup(c);
                return TC_ENOMEM;
            }
            j->rcpt = l;
        }
        curl_easy_setopt(c, CURLOPT_MAIL_RCPT, j->rcpt);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(c, CURLOPT_READDATA, j);
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->req.body_len);
        if (j->req.starttls) {
            curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
        }
        if (j->req.username) {
            curl_easy_setopt(c, CURLOPT_USERNAME, j->req.username);
        }
        if (j->req.password) {
            curl_easy_setopt(c, CURLOPT_PASSWORD, j->req.password);
        }
    } else {
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->req.body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)j->req.body_len);
        char ct[128];
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 j->req.content_type ? j->req.content_type : "application/json");
        struct curl_slist *h = curl_slist_append(NULL, ct);
        struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
        if (!h2) {
            curl_slist_free_all(h);
            curl_easy_cleanup(c);
            return TC_ENOMEM;
        }
        j->headers = h2;
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->headers);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, j);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "tocsin-alerter/" TOCSIN_VERSION);
    }
    if (curl_multi_add_handle(self->multi, c) != CURLM_OK) {
        curl_easy_cleanup(c);
        return TC_EHTTP;
    }
    j->easy = c;
    j->next = self->running;
    self->running = j;
    self->nrunning++;
    return 0;
}

static void add_result(alr_sender_t *self, const alr_result_t *r)
{
    if (self->ndone == self->capdone) {
        size_t next = self->capdone ? self->capdone * 2 : 64;
        alr_result_t *p = realloc(self->done, next * sizeof(*p));
        if (!p) {
            return; /* the attempt stays "sending" in the dispatcher until a restart */
        }
        self->done = p;
        self->capdone = next;
    }
    self->done[self->ndone++] = *r;
    uint64_t one = 1;
    ssize_t w = write(self->wake_fd, &one, sizeof(one)); /* cannot block: EFD_NONBLOCK */
    (void)w;
}

/* A transfer ended. Called with the lock held. */
static void finish(alr_sender_t *self, CURL *c, CURLcode res)
{
    job_t *j = NULL;
    curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&j);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(self->multi, c);
    curl_easy_cleanup(c);
    self->nrunning--;
    if (!j) {
        return;
    }
    for (job_t **pp = &self->running; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    alr_result_t r;
    memset(&r, 0, sizeof(r));
    r.id = j->id;
    r.retry_after_ms = j->retry_after_ms;
    r.duration_us = tc_mono_us() - j->started_us;
    if (j->req.smtp) {
        if (res == CURLE_OK) {
            r.transport_ok = true;
            r.status = 200;
        } else if (code >= 400 && code < 500) {
            r.transport_ok = true;
            r.status = 503;
            snprintf(r.error, sizeof(r.error), "SMTP %ld (transient): %.120s", code,
                     j->err[0] ? j->err : curl_easy_strerror(res));
        } else if (code >= 500) {
            r.transport_ok = true;
            r.status = 400;
            snprintf(r.error, sizeof(r.error), "SMTP %ld (refused): %.120s", code,
                     j->err[0] ? j->err : curl_easy_strerror(res));
        } else {
            snprintf(r.error, sizeof(r.error), "%.150s", j->err[0] ? j->err : curl_easy_strerror(res));
        }
    } else if (res == CURLE_OK) {
        r.transport_ok = true;
        r.status = (int)code;
        if (code < 200 || code >= 300) {
            snprintf(r.error, sizeof(r.error), "HTTP %ld", code);
        }
    } else {
        snprintf(r.error, sizeof(r.error), "%.150s", j->err[0] ? j->err : curl_easy_strerror(res));
    }
    add_result(self, &r);
    job_free(j);
}

static void *sender_main(void *arg)
{
    alr_sender_t *self = arg;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        int64_t now = tc_mono_us();
        if (self->stopping && (self->nrunning == 0 || now >= self->drain_deadline)) {
            break;
        }
        while (!self->stopping && self->queue_head && self->nrunning < self->max_in_flight) {
            job_t *j = self->queue_head;
            self->queue_head = j->next;
            if (!self->queue_head) {
                self->queue_tail = NULL;
            }
            self->nqueued--;
            j->next = NULL;
            if (job_start(self, j) != 0) {
                alr_result_t r;
                memset(&r, 0, sizeof(r));
                r.id = j->id;
                r.retry_after_ms = -1;
                snprintf(r.error, sizeof(r.error), "could not start the transfer");
                add_result(self, &r);
                job_free(j);
            }
        }
        pthread_mutex_unlock(&self->lock);
        int running = 0;
        curl_multi_perform(self->multi, &running);
        pthread_mutex_lock(&self->lock);
        CURLMsg *m;
        int left = 0, ended = 0;
        while ((m = curl_multi_info_read(self->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE) {
                finish(self, m->easy_handle, m->data.result);
                ended++;
            }
        }
        if (ended > 0) {
            continue;
        }
        pthread_mutex_unlock(&self->lock);
        curl_multi_poll(self->multi, NULL, 0, 200, NULL);
        pthread_mutex_lock(&self->lock);
    }
    /* Transfers still running at the drain deadline are abandoned: the dispatcher keeps
     * them as sending, and a restart sends them again. */
    while (self->running) {
        job_t *j = self->running;
        self->running = j->next;
        curl_multi_remove_handle(self->multi, j->easy);
        curl_easy_cleanup(j->easy);
        self->nrunning--;
        job_free(j);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

alr_sender_t *alr_sender_new(size_t max_in_flight, int64_t connect_ms)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return NULL;
    }
    alr_sender_t *self = calloc(1, sizeof(*self));
    if (!self) {
        curl_global_cleanup();
        return NULL;
    }
    self->max_in_flight = max_in_flight ? max_in_flight : 16;
    self->connect_ms = connect_ms > 0 ? connect_ms : 3000;
    pthread_mutex_init(&self->lock, NULL);
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->multi = curl_multi_init();
    if (self->wake_fd < 0 || !self->multi ||
        pthread_create(&self->thread, NULL, sender_main, self) != 0) {
        alr_sender_destroy(&self);
        return NULL;
    }
    self->started = true;
    return self;
}

int alr_sender_submit(alr_sender_t *self, uint64_t id, alr_request_t *req)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j) {
        return TC_ENOMEM;
    }
    pthread_mutex_lock(&self->lock);
    if (self->stopping) {
        pthread_mutex_unlock(&self->lock);
        free(j);
        return TC_ESTATE;
    }
    j->id = id;
    j->req = *req;
    memset(req, 0, sizeof(*req));
    if (self->queue_tail) {
        self->queue_tail->next = j;
    } else {
        self->queue_head = j;
    }
    self->queue_tail = j;
    self->nqueued++;
    pthread_mutex_unlock(&self->lock);
    curl_multi_wakeup(self->multi);
    return 0;
}

size_t alr_sender_results(alr_sender_t *self, alr_result_t *out, size_t max)
{
    pthread_mutex_lock(&self->lock);
    uint64_t drained;
    ssize_t r = read(self->wake_fd, &drained, sizeof(drained)); /* EAGAIN when empty */
    (void)r;
    size_t n = self->ndone < max ? self->ndone : max;
    if (n < self->ndone) {
        uint64_t one = 1; /* more left than taken: stay readable */
        r = write(self->wake_fd, &one, sizeof(one));
        (void)r;
    }
    if (n == 0) {
        pthread_mutex_unlock(&self->lock);
        return 0;
    }
    memcpy(out, self->done, n * sizeof(*out));
    memmove(self->done, self->done + n, (self->ndone - n) * sizeof(*out));
    self->ndone -= n;
    pthread_mutex_unlock(&self->lock);
    return n;
}

int alr_sender_fd(const alr_sender_t *self)
{
    return self->wake_fd;
}

size_t alr_sender_busy(alr_sender_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->nqueued + self->nrunning;
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
    if (self->started) {
        pthread_join(self->thread, NULL);
        self->started = false;
    }
}

void alr_sender_destroy(alr_sender_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    alr_sender_t *self = *self_p;
    alr_sender_stop(self, 5000);
    while (self->queue_head) {
        job_t *j = self->queue_head;
        self->queue_head = j->next;
        job_free(j);
    }
    if (self->multi) {
        curl_multi_cleanup(self->multi);
    }
    free(self->done);
    if (self->wake_fd >= 0) {
        close(self->wake_fd);
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
    curl_global_cleanup();
    *self_p = NULL;
}
