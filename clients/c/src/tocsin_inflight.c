#include "tocsin_inflight.h"

#include <assert.h>
#include <stdlib.h>

/* A collector answering "retry after 0 ms" again and again must not make the client spin. */
#define RETRY_AFTER_MIN_MS 10

struct tocsin_inflight {
    tocsin_inflight_config_t config;
    tocsin_rng_t *rng;
    uint32_t count;
    uint32_t current;
    int64_t offline_since;            /* INT64_MAX: some endpoint took the last send */
    tocsin_inflight_entry_t *entries; /* config.max_batches of them; `used` marks a batch */
};

tocsin_inflight_t *tocsin_inflight_new(const tocsin_inflight_config_t *config, tocsin_rng_t *rng)
{
    assert(config && rng);
    if (config->max_batches == 0 || config->n_endpoints == 0 || config->ack_timeout_ms == 0 ||
        config->backoff_base_ms == 0 || config->backoff_max_ms < config->backoff_base_ms) {
        return NULL;
    }
    tocsin_inflight_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->config = *config;
    self->rng = rng;
    self->offline_since = INT64_MAX;
    self->entries = calloc(config->max_batches, sizeof(*self->entries));
    if (!self->entries) {
        free(self);
        return NULL;
    }
    return self;
}

static void entry_free(tocsin_inflight_t *self, tocsin_inflight_entry_t *e)
{
    free(e->data);
    *e = (tocsin_inflight_entry_t){0};
    self->count--;
}

void tocsin_inflight_destroy(tocsin_inflight_t **self_p)
{
    assert(self_p);
    tocsin_inflight_t *self = *self_p;
    if (self) {
        for (uint32_t i = 0; i < self->config.max_batches; i++) {
            if (self->entries[i].used) {
                entry_free(self, &self->entries[i]);
            }
        }
        free(self->entries);
        free(self);
        *self_p = NULL;
    }
}

uint32_t tocsin_inflight_count(const tocsin_inflight_t *self)
{
    assert(self);
    return self->count;
}

bool tocsin_inflight_full(const tocsin_inflight_t *self)
{
    assert(self);
    return self->count >= self->config.max_batches;
}

uint32_t tocsin_inflight_current(const tocsin_inflight_t *self)
{
    assert(self);
    return self->current;
}

int tocsin_inflight_add(tocsin_inflight_t *self, uint64_t sequence, uint8_t *data, size_t len,
                        uint64_t first_pos, uint64_t end_pos, uint32_t events, int64_t now_ms)
{
    assert(self && data);
    if (tocsin_inflight_full(self)) {
        return TOCSIN_EFULL;
    }
    for (uint32_t i = 0; i < self->config.max_batches; i++) {
        tocsin_inflight_entry_t *e = &self->entries[i];
        if (!e->used) {
            *e = (tocsin_inflight_entry_t){
                .sequence = sequence,
                .data = data, /* the table owns data now */
                .len = len,
                .first_pos = first_pos,
                .end_pos = end_pos,
                .events = events,
                .endpoint = self->current,
                .state = TOCSIN_INFLIGHT_SEND,
                .due_ms = now_ms,
                .used = true,
            };
            self->count++;
            return 0;
        }
    }
    assert(!"count and entries disagree");
    return TOCSIN_EFULL;
}

/* Moves a batch off endpoint e; the current endpoint follows when it was e, so new batches
 * stop going where this one failed. */
static void move_on(tocsin_inflight_t *self, tocsin_inflight_entry_t *e)
{
    uint32_t next = (e->endpoint + 1) % self->config.n_endpoints;
    if (self->current == e->endpoint) {
        self->current = next;
    }
    e->endpoint = next;
}

/* Exponential back-off with "equal jitter": a random wait in [d/2, d]. */
static int64_t backoff_ms(tocsin_inflight_t *self, uint32_t timeouts)
{
    uint64_t d = self->config.backoff_base_ms;
    for (uint32_t i = 1; i < timeouts && d < self->config.backoff_max_ms; i++) {
        d *= 2;
    }
    if (d > self->config.backoff_max_ms) {
        d = self->config.backoff_max_ms;
    }
    return (int64_t)(d / 2 + tocsin_rng_below(self->rng, d - d / 2 + 1));
}

tocsin_inflight_entry_t *tocsin_inflight_next_send(tocsin_inflight_t *self, int64_t now_ms)
{
    assert(self);
    tocsin_inflight_entry_t *best = NULL;
    for (uint32_t i = 0; i < self->config.max_batches; i++) {
        tocsin_inflight_entry_t *e = &self->entries[i];
        if (!e->used) {
            continue;
        }
        if (e->state == TOCSIN_INFLIGHT_AWAIT && e->due_ms <= now_ms) {
            e->timeouts++;
            move_on(self, e);
            e->refused = 0;
            e->state = TOCSIN_INFLIGHT_SEND;
            e->due_ms = now_ms + backoff_ms(self, e->timeouts);
        }
        if (e->state == TOCSIN_INFLIGHT_SEND && e->due_ms <= now_ms &&
            (!best || e->sequence < best->sequence)) {
            best = e;
        }
    }
    return best;
}

bool tocsin_inflight_sent(tocsin_inflight_t *self, tocsin_inflight_entry_t *e, int64_t now_ms)
{
    assert(self && e && e->used);
    bool resend = e->sends > 0;
    self->offline_since = INT64_MAX;
    e->sends++;
    e->refused = 0;
    e->state = TOCSIN_INFLIGHT_AWAIT;
    e->due_ms = now_ms + self->config.ack_timeout_ms;
    return resend;
}

void tocsin_inflight_refused(tocsin_inflight_t *self, tocsin_inflight_entry_t *e, int64_t now_ms)
{
    assert(self && e && e->used);
    move_on(self, e);
    e->refused++;
    if (e->refused >= self->config.n_endpoints) {
        if (self->offline_since == INT64_MAX) {
            self->offline_since = now_ms;
        }
        e->refused = 0;
        e->due_ms = now_ms + self->config.refused_retry_ms;
    }
}

tocsin_acked_t tocsin_inflight_ack(tocsin_inflight_t *self, const tocsin_ack_t *ack,
                                   uint32_t endpoint, int64_t now_ms, tocsin_acked_batch_t *batch)
{
    assert(self && ack);
    tocsin_inflight_entry_t *e = NULL;
    for (uint32_t i = 0; i < self->config.max_batches; i++) {
        if (self->entries[i].used && self->entries[i].sequence == ack->sequence) {
            e = &self->entries[i];
            break;
        }
    }
    if (!e) {
        return TOCSIN_ACKED_UNKNOWN;
    }
    if (batch) {
        *batch = (tocsin_acked_batch_t){e->first_pos, e->end_pos, e->events};
    }
    switch (ack->status) {
    case TOCSIN_ACK_STORED:
        if (endpoint < self->config.n_endpoints) {
            self->current = endpoint;
        }
        entry_free(self, e);
        return TOCSIN_ACKED_STORED;
    case TOCSIN_ACK_REJECTED:
        entry_free(self, e);
        return TOCSIN_ACKED_REJECTED;
    case TOCSIN_ACK_RETRY_AFTER: {
        uint32_t wait = ack->retry_after_ms;
        if (wait < RETRY_AFTER_MIN_MS) {
            wait = RETRY_AFTER_MIN_MS;
        }
        if (wait > self->config.retry_after_max_ms) {
            wait = self->config.retry_after_max_ms;
        }
        e->state = TOCSIN_INFLIGHT_SEND;
        e->refused = 0;
        e->due_ms = now_ms + wait;
        return TOCSIN_ACKED_RETRY;
    }
    }
    return TOCSIN_ACKED_UNKNOWN;
}

int64_t tocsin_inflight_next_due(const tocsin_inflight_t *self)
{
    assert(self);
    int64_t due = INT64_MAX;
    for (uint32_t i = 0; i < self->config.max_batches; i++) {
        if (self->entries[i].used && self->entries[i].due_ms < due) {
            due = self->entries[i].due_ms;
        }
    }
    return due;
}

uint64_t tocsin_inflight_oldest_pos(const tocsin_inflight_t *self)
{
    assert(self);
    uint64_t pos = UINT64_MAX;
    for (uint32_t i = 0; i < self->config.max_batches; i++) {
        if (self->entries[i].used && self->entries[i].first_pos < pos) {
            pos = self->entries[i].first_pos;
        }
    }
    return pos;
}

int64_t tocsin_inflight_offline_since(const tocsin_inflight_t *self)
{
    assert(self);
    return self->offline_since;
}

uint64_t tocsin_inflight_events(const tocsin_inflight_t *self)
{
    assert(self);
    uint64_t n = 0;
    for (uint32_t i = 0; i < self->config.max_batches; i++) {
        if (self->entries[i].used) {
            n += self->entries[i].events;
        }
    }
    return n;
}
