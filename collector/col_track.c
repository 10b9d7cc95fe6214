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
    uint64_t tag;
    uint32_t events;    /* events in the batch */
    uint32_t produced;  /* records handed to the producer */
    uint32_t reported;  /* delivery reports received */
    uint32_t retriable; /* failed reports a later attempt can fix */
    uint32_t permanent; /* failed reports no attempt can fix */
    uint32_t too_large; /* records Kafka never takes */
    bool sealed;
    bool aborted;
    bool diverted;
    int64_t received_us;
    col_client_counters_t counters;
    col_records_t records;
    char reason[COL_ACK_REASON_MAX + 1]; /* first failure, or the abort's reason */
};

struct col_inflight {
    col_track_t *head, *tail;
    size_t count;
    uint64_t events;
    uint64_t bytes;
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

uint64_t col_inflight_events(const col_inflight_t *self)
{
    assert(self);
    return self->events;
}

uint64_t col_inflight_bytes(const col_inflight_t *self)
{
    assert(self);
    return self->bytes;
}

col_track_t *col_inflight_open(col_inflight_t *self, const col_peer_t *peer, uint64_t sequence,
                               uint32_t events, const col_client_counters_t *counters,
                               int64_t received_us, col_records_t *records, int *err)
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
    if (records) {
        t->records = *records; /* the tracker owns the buffer now */
        col_records_init(records);
    }
    t->prev = self->tail;
    if (self->tail) {
        self->tail->next = t;
    } else {
        self->head = t;
    }
    self->tail = t;
    self->count++;
    self->events += events;
    self->bytes += t->records.len;
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
    self->events -= t->events;
    self->bytes -= t->records.len;
    col_records_fini(&t->records);
    free(t);
    *track_p = NULL;
}

col_track_t *col_inflight_first(col_inflight_t *self)
{
    assert(self);
    return self->head;
}

col_track_t *col_track_next(col_track_t *self)
{
    assert(self);
    return self->next;
}

void col_track_produced(col_track_t *self)
{
    assert(self && !self->sealed && !self->aborted && !self->diverted);
    assert(self->produced < self->records.count);
    self->produced++;
}

void col_track_seal(col_track_t *self)
{
    assert(self && !self->aborted && !self->diverted);
    assert(self->produced == self->records.count);
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
    assert(self && !self->sealed && !self->diverted);
    self->aborted = true;
    keep_reason(self, reason);
}

void col_track_refuse(col_track_t *self, col_delivery_t why, const char *reason)
{
    assert(self && !self->sealed && !self->diverted);
    assert(why == COL_DELIVERY_PERMANENT || why == COL_DELIVERY_TOO_LARGE);
    self->aborted = true;
    if (why == COL_DELIVERY_TOO_LARGE) {
        self->too_large++;
    } else {
        self->permanent++;
    }
    self->reason[0] = '\0';
    keep_reason(self, reason);
}

void col_track_divert(col_track_t *self, const char *reason)
{
    assert(self && self->produced == 0 && !self->sealed && !self->aborted);
    self->diverted = true;
    keep_reason(self, reason);
}

bool col_track_report(col_track_t *self, col_delivery_t result, const char *error)
{
    assert(self);
    assert(self->reported < self->produced);
    self->reported++;
    if (result == COL_DELIVERY_RETRIABLE) {
        self->retriable++;
        keep_reason(self, error);
    } else if (result == COL_DELIVERY_PERMANENT || result == COL_DELIVERY_TOO_LARGE) {
        /* A failure no retry fixes is the one worth telling the client. */
        if (self->permanent + self->too_large == 0) {
            self->reason[0] = '\0';
        }
        if (result == COL_DELIVERY_TOO_LARGE) {
            self->too_large++;
        } else {
            self->permanent++;
        }
        keep_reason(self, error);
    }
    return col_track_done(self);
}

bool col_track_done(const col_track_t *self)
{
    assert(self);
    return (self->sealed || self->aborted || self->diverted) && self->reported == self->produced;
}

bool col_track_producing(const col_track_t *self)
{
    assert(self);
    return !col_track_done(self);
}

col_outcome_t col_track_outcome(const col_track_t *self)
{
    assert(self);
    if (!col_track_done(self)) {
        return COL_OUTCOME_PENDING;
    }
    if (self->too_large > 0) {
        return COL_OUTCOME_REJECT;
    }
    if (self->permanent > 0) {
        return COL_OUTCOME_RETRY;
    }
    if (self->aborted || self->diverted || self->retriable > 0) {
        return COL_OUTCOME_SPOOL;
    }
    return COL_OUTCOME_STORED;
}

void col_track_ack_stored(const col_track_t *self, col_ack_t *ack)
{
    assert(self && ack);
    memset(ack, 0, sizeof(*ack));
    ack->sequence = self->sequence;
    ack->status = TOCSIN__V1__ACK__STATUS__STATUS_STORED;
    ack->accepted = self->events;
}

void col_track_ack_retry(const col_track_t *self, uint32_t retry_after_ms, const char *reason,
                         col_ack_t *ack)
{
    assert(self && ack);
    memset(ack, 0, sizeof(*ack));
    ack->sequence = self->sequence;
    ack->status = TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER;
    ack->retry_after_ms = retry_after_ms;
    ack->reason = reason ? reason : self->reason;
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
    return self->retriable + self->permanent + self->too_large;
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

const col_records_t *col_track_records(const col_track_t *self)
{
    assert(self);
    return &self->records;
}

const char *col_track_reason(const col_track_t *self)
{
    assert(self);
    return self->reason;
}

void col_track_set_tag(col_track_t *self, uint64_t tag)
{
    assert(self);
    self->tag = tag;
}

uint64_t col_track_tag(const col_track_t *self)
{
    assert(self);
    return self->tag;
}
