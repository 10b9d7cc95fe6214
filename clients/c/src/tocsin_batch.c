#include "tocsin_batch.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tocsin/v1/transport.pb-c.h"

/* Per event: the Event, its body (one of three) and its id, all preallocated. */
typedef struct {
    Tocsin__V1__Event event;
    union {
        Tocsin__V1__Request request;
        Tocsin__V1__ErrorEvent error;
        Tocsin__V1__Metric metric;
    } body;
    uint8_t id[16];
} event_scratch_t;

struct tocsin_encoder {
    tocsin_identity_t identity;
    uint32_t max_events;
    size_t max_bytes;
    event_scratch_t *scratch;
    Tocsin__V1__Event **events;
};

tocsin_encoder_t *tocsin_encoder_new(const tocsin_identity_t *identity, uint32_t max_events,
                                     size_t max_bytes)
{
    assert(identity);
    if (max_events == 0 || max_bytes < 4096) {
        return NULL;
    }
    tocsin_encoder_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->identity = *identity;
    self->max_events = max_events;
    self->max_bytes = max_bytes;
    self->scratch = calloc(max_events, sizeof(*self->scratch));
    self->events = calloc(max_events, sizeof(*self->events));
    if (!self->scratch || !self->events) {
        tocsin_encoder_destroy(&self);
        return NULL;
    }
    return self;
}

void tocsin_encoder_destroy(tocsin_encoder_t **self_p)
{
    assert(self_p);
    tocsin_encoder_t *self = *self_p;
    if (self) {
        free(self->scratch);
        free(self->events);
        free(self);
        *self_p = NULL;
    }
}

/* protobuf-c's message structs hold `char *`; it never writes through them when packing. */
static char *str(const char *s)
{
    return (char *)(s ? s : "");
}

static void event_fill(tocsin_encoder_t *self, event_scratch_t *x, const tocsin_record_t *rec,
                       tocsin_rng_t *rng)
{
    Tocsin__V1__Event *ev = &x->event;
    tocsin__v1__event__init(ev);
    tocsin_rng_fill(rng, x->id, sizeof(x->id));
    ev->event_id.data = x->id;
    ev->event_id.len = sizeof(x->id);
    ev->time_us = rec->time_us;
    ev->service = str(self->identity.service);
    ev->environment = str(self->identity.environment);
    ev->release = str(self->identity.release);
    ev->host = str(self->identity.host);
    switch (rec->kind) {
    case TOCSIN_RECORD_REQUEST:
        tocsin__v1__request__init(&x->body.request);
        x->body.request.route = str(tocsin_record_str(rec, 0));
        x->body.request.method = str(tocsin_record_str(rec, 1));
        x->body.request.status = rec->status;
        x->body.request.duration_us = rec->num.u64;
        ev->body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
        ev->request = &x->body.request;
        break;
    case TOCSIN_RECORD_ERROR:
        tocsin__v1__error_event__init(&x->body.error);
        x->body.error.type = str(tocsin_record_str(rec, 0));
        x->body.error.message = str(tocsin_record_str(rec, 1));
        x->body.error.level = (Tocsin__V1__Level)rec->sub;
        x->body.error.mechanism = str("manual");
        ev->body_case = TOCSIN__V1__EVENT__BODY_ERROR;
        ev->error = &x->body.error;
        break;
    case TOCSIN_RECORD_METRIC:
        tocsin__v1__metric__init(&x->body.metric);
        x->body.metric.name = str(tocsin_record_str(rec, 0));
        x->body.metric.unit = str(tocsin_record_str(rec, 1));
        x->body.metric.kind = (Tocsin__V1__MetricKind)rec->sub;
        x->body.metric.value = rec->num.f64;
        ev->body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        ev->metric = &x->body.metric;
        break;
    default:
        /* Only tocsin.c writes records, with the kinds above. */
        assert(!"unknown record kind");
        break;
    }
}

/* Bytes a length-delimited field of `len` bytes takes in its parent: tag, length, body. */
static size_t field_size(size_t len)
{
    size_t varint = 1;
    for (size_t v = len; v >= 0x80; v >>= 7) {
        varint++;
    }
    return 1 + varint + len;
}

int tocsin_encoder_encode(tocsin_encoder_t *self, uint64_t sequence, const tocsin_loss_t *loss,
                          const tocsin_record_t *recs, size_t n, tocsin_rng_t *rng, uint8_t **out,
                          size_t *out_len, size_t *n_used)
{
    assert(self && loss && recs && rng && out && out_len && n_used);
    if (n == 0 || n > self->max_events) {
        return TOCSIN_EINVAL;
    }

    Tocsin__V1__ClientCounters counters = TOCSIN__V1__CLIENT_COUNTERS__INIT;
    counters.dropped_queue_full = loss->dropped_queue_full;
    counters.dropped_oversize = loss->dropped_oversize;
    counters.retried = loss->retried;
    counters.rejected = loss->rejected;

    Tocsin__V1__Batch batch = TOCSIN__V1__BATCH__INIT;
    batch.sequence = sequence;
    batch.api_key = str(self->identity.api_key);
    batch.sdk = str(self->identity.sdk);
    batch.counters = &counters;
    batch.events = self->events;
    batch.n_events = 0;

    size_t total = protobuf_c_message_get_packed_size(&batch.base);
    for (size_t i = 0; i < n; i++) {
        event_scratch_t *x = &self->scratch[i];
        event_fill(self, x, &recs[i], rng);
        size_t add = field_size(protobuf_c_message_get_packed_size(&x->event.base));
        if (i > 0 && total + add > self->max_bytes) {
            break;
        }
        self->events[i] = &x->event;
        batch.n_events++;
        total += add;
    }

    /* `total` is the packed size already: sizing the whole batch again would cost a pass. */
    size_t len = total;
    assert(len == protobuf_c_message_get_packed_size(&batch.base));
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        return TOCSIN_ENOMEM;
    }
    size_t packed = protobuf_c_message_pack(&batch.base, buf);
    assert(packed == len);
    (void)packed;
    *out = buf;
    *out_len = len;
    *n_used = batch.n_events;
    return 0;
}

int tocsin_ack_decode(const void *data, size_t len, tocsin_ack_t *out)
{
    assert(out);
    if (!data || len > TOCSIN_ACK_MAX_BYTES) {
        return TOCSIN_EINVAL;
    }
    Tocsin__V1__Ack *ack = tocsin__v1__ack__unpack(NULL, len, data);
    if (!ack) {
        return TOCSIN_EINVAL;
    }
    int rc = 0;
    switch (ack->status) {
    case TOCSIN__V1__ACK__STATUS__STATUS_STORED:
        out->status = TOCSIN_ACK_STORED;
        break;
    case TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER:
        out->status = TOCSIN_ACK_RETRY_AFTER;
        break;
    case TOCSIN__V1__ACK__STATUS__STATUS_REJECTED:
        out->status = TOCSIN_ACK_REJECTED;
        break;
    default:
        rc = TOCSIN_EINVAL;
        break;
    }
    if (rc == 0) {
        out->sequence = ack->sequence;
        out->retry_after_ms = ack->retry_after_ms;
        out->accepted = ack->accepted;
        bool cut = false;
        const char *reason = ack->reason ? ack->reason : "";
        size_t n =
            tocsin_utf8_copy(out->reason, sizeof(out->reason) - 1, reason, strlen(reason), &cut);
        out->reason[n] = '\0';
    }
    tocsin__v1__ack__free_unpacked(ack, NULL);
    return rc;
}
