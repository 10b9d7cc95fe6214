#include "col_track.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

struct col_track {
    col_track_t *prev, *next; /* the set's list, oldest first */
    col_peer_t peer;
    uint64_t sequence;
    uint32_t events;   /* events in the batch */
    uint32_t enqueued; /* handed to the producer */
    uint32_t reported; /* delivery reports received */
    uint32_t failures; /* failed delivery reports */
    bool sealed;
    bool aborted;
    int64_t received_us;
    col_client_counters_t counters;
    char reason[COL_ACK_REASON_MAX + 1]; /* first failure or the abort's reason */
};

struct col_inflight {
    col_track_t *head, *tail;
    size_t count;
    uint32_t max;
};

col_inflight_t *col_inflight_new(uint32_t max)
{
    assert(max > 0);
    col_inflight_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->max = max;
    return self;
}

void col_inflight_destroy(col_inflight_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    col_inflight_t *self = *self_p;
    while (self->head) {
        col_track_t *t = self->head;
        col_inflight_close(self, &t);
    }
    free(self);
    *self_p = NULL;
}

size_t col_inflight_count(const col_inflight_t *self)
{
    assert(self);
    return self->count;
}

col_track_t *col_inflight_open(col_inflight_t *self, const col_peer_t *peer, uint64_t sequence,
                               uint32_t events, const col_client_counters_t *counters,
                               int64_t received_us, int *err)
{
    assert(self && peer && err);
    if (self->count >= self->max) {
        *err = TC_EFULL;
        return NULL;
    }
    col_track_t *t = calloc(1, sizeof(*t));
    if (!t) {
        *err = TC_ENOMEM;
        return NULL;
    }
    t->peer = *peer;
    t->sequence = sequence;
    t->events = events;
    t->received_us = received_us;
    if (counters) {
        t->counters = *counters;
    }
    t->prev = self->tail;
    if (self->tail) {
        self->tail->next = t;
    } else {
        self->head = t;
    }
    self->tail = t;
    self->count++;
    *err = 0;
    return t;
}

void col_inflight_close(col_inflight_t *self, col_track_t **track_p)
{
    assert(self);
    if (!track_p || !*track_p) {
        return;
    }
    col_track_t *t = *track_p;
    if (t->prev) {
        t->prev->next = t->next;
    } else {
        self->head = t->next;
    }
    if (t->next) {
        t->next->prev = t->prev;
    } else {
        self->tail = t->prev;
    }
    assert(self->count > 0);
    self->count--;
    free(t);
    *track_p = NULL;
}

col_track_t *col_inflight_first(col_inflight_t *self)
{
    assert(self);
    return self->head;
}

void col_track_enqueued(col_track_t *self)
{
    assert(self && !self->sealed && !self->aborted);
    assert(self->enqueued < self->events);
    self->enqueued++;
}

void col_track_seal(col_track_t *self)
{
    assert(self && !self->aborted);
    assert(self->enqueued == self->events);
    self->sealed = true;
}

static void keep_reason(col_track_t *self, const char *reason)
{
    if (self->reason[0] == '\0') {
        tc_strlcpy(self->reason, reason ? reason : "unknown", sizeof(self->reason));
    }
}

void col_track_abort(col_track_t *self, const char *reason)
{
    assert(self && !self->sealed);
    self->aborted = true;
    keep_reason(self, reason);
}

bool col_track_report(col_track_t *self, bool ok, const char *error)
{
    assert(self);
    assert(self->reported < self->enqueued);
    self->reported++;
    if (!ok) {
        self->failures++;
        keep_reason(self, error);
    }
    return col_track_done(self);
}

bool col_track_done(const col_track_t *self)
{
    assert(self);
    return (self->sealed || self->aborted) && self->reported == self->enqueued;
}

void col_track_ack(const col_track_t *self, uint32_t retry_after_ms, col_ack_t *ack)
{
    assert(self && ack && col_track_done(self));
    memset(ack, 0, sizeof(*ack));
    ack->sequence = self->sequence;
    if (self->sealed && self->failures == 0) {
        ack->status = TOCSIN__V1__ACK__STATUS__STATUS_STORED;
        ack->accepted = self->events;
        return;
    }
    ack->status = TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER;
    ack->retry_after_ms = retry_after_ms;
    ack->reason = self->reason;
}

const col_peer_t *col_track_peer(const col_track_t *self)
{
    assert(self);
    return &self->peer;
}

uint64_t col_track_sequence(const col_track_t *self)
{
    assert(self);
    return self->sequence;
}

uint32_t col_track_events(const col_track_t *self)
{
    assert(self);
    return self->events;
}

uint32_t col_track_failures(const col_track_t *self)
{
    assert(self);
    return self->failures;
}

int64_t col_track_received_us(const col_track_t *self)
{
    assert(self);
    return self->received_us;
}

const col_client_counters_t *col_track_counters(const col_track_t *self)
{
    assert(self);
    return &self->counters;
}
