#include "tocsin_batch.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "tocsin/v1/transport.pb-c.h"
#include "tocsin_record.h"

#define BUF_INITIAL (64 * 1024)

struct tocsin_encoder {
    tocsin_identity_t identity;
    size_t max_bytes;
    uint64_t sequence; /* of the batch under construction */
    uint8_t *buf;
    size_t len;
    size_t cap;
    uint32_t events;

    /* Scratch for one event's protobuf-c structs. */
    Tocsin__V1__Event__TagsEntry tag_entries[TOCSIN_EVENT_TAGS_MAX];
    Tocsin__V1__Event__TagsEntry *tag_ptrs[TOCSIN_EVENT_TAGS_MAX];
    Tocsin__V1__LogRecord__FieldsEntry field_entries[TOCSIN_FIELDS_MAX];
    Tocsin__V1__LogRecord__FieldsEntry *field_ptrs[TOCSIN_FIELDS_MAX];
    Tocsin__V1__Frame frames[TOCSIN_FRAMES_MAX];
    Tocsin__V1__Frame *frame_ptrs[TOCSIN_FRAMES_MAX];
    char *fingerprint[TOCSIN_FINGERPRINT_MAX];
};

tocsin_encoder_t *tocsin_encoder_new(const tocsin_identity_t *identity, size_t max_bytes,
                                     uint64_t first_sequence)
{
    assert(identity);
    if (max_bytes < 2 * TOCSIN_EVENT_RESERVE) {
        return NULL;
    }
    tocsin_encoder_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->identity = *identity;
    self->max_bytes = max_bytes;
    self->sequence = first_sequence;
    return self;
}

void tocsin_encoder_destroy(tocsin_encoder_t **self_p)
{
    assert(self_p);
    tocsin_encoder_t *self = *self_p;
    if (self) {
        free(self->buf);
        free(self);
        *self_p = NULL;
    }
}

uint32_t tocsin_encoder_events(const tocsin_encoder_t *self)
{
    assert(self);
    return self->events;
}

bool tocsin_encoder_has_room(const tocsin_encoder_t *self)
{
    assert(self);
    return self->len + TOCSIN_EVENT_RESERVE <= self->max_bytes;
}

/* protobuf-c's message structs hold `char *`; it never writes through them when packing. */
static char *str(const char *s)
{
    return (char *)(s ? s : "");
}

static size_t varint_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static int reserve(tocsin_encoder_t *self, size_t more)
{
    if (self->len + more <= self->cap) {
        return 0;
    }
    size_t cap = self->cap ? self->cap : BUF_INITIAL;
    while (cap < self->len + more) {
        cap *= 2;
    }
    uint8_t *b = realloc(self->buf, cap);
    if (!b) {
        return TOCSIN_ENOMEM;
    }
    self->buf = b;
    self->cap = cap;
    return 0;
}

int tocsin_encoder_add(tocsin_encoder_t *self, const tocsin_event_t *ev, const uint8_t id[16])
{
    assert(self && ev && id);
    Tocsin__V1__Event e = TOCSIN__V1__EVENT__INIT;
    Tocsin__V1__ErrorEvent error = TOCSIN__V1__ERROR_EVENT__INIT;
    Tocsin__V1__Request request = TOCSIN__V1__REQUEST__INIT;
    Tocsin__V1__Metric metric = TOCSIN__V1__METRIC__INIT;
    Tocsin__V1__LogRecord log = TOCSIN__V1__LOG_RECORD__INIT;

    e.event_id.data = (uint8_t *)(ev->has_event_id ? ev->event_id : id);
    e.event_id.len = 16;
    e.time_us = ev->time_us;
    e.service = str(ev->service ? ev->service : self->identity.service);
    e.environment = str(ev->environment ? ev->environment : self->identity.environment);
    e.release = str(ev->release ? ev->release : self->identity.release);
    e.host = str(ev->host ? ev->host : self->identity.host);
    e.trace_id = str(ev->str[TOCSIN_FIELD_TRACE_ID]);
    e.user_id = str(ev->str[TOCSIN_FIELD_USER_ID]);
    e.sample_rate = ev->sample_rate;
    for (size_t i = 0; i < ev->n_tags; i++) {
        Tocsin__V1__Event__TagsEntry *t = &self->tag_entries[i];
        tocsin__v1__event__tags_entry__init(t);
        t->key = str(ev->tags[i].key);
        t->value = str(ev->tags[i].value);
        self->tag_ptrs[i] = t;
    }
    e.n_tags = ev->n_tags;
    e.tags = self->tag_ptrs;

    switch (ev->kind) {
    case TOCSIN_EVENT_ERROR:
        error.type = str(ev->str[TOCSIN_FIELD_TYPE]);
        error.message = str(ev->str[TOCSIN_FIELD_MESSAGE]);
        error.level = (Tocsin__V1__Level)ev->sub;
        error.mechanism =
            str(ev->str[TOCSIN_FIELD_MECHANISM] ? ev->str[TOCSIN_FIELD_MECHANISM] : "manual");
        for (size_t i = 0; i < ev->n_frames; i++) {
            Tocsin__V1__Frame *f = &self->frames[i];
            const tocsin_frame_t *src = &ev->frames[i];
            tocsin__v1__frame__init(f);
            f->function = str(src->function);
            f->module = str(src->module);
            f->file = str(src->file);
            f->line = src->line;
            f->in_app = src->in_app;
            f->instruction_addr = src->instruction_addr;
            self->frame_ptrs[i] = f;
        }
        error.n_frames = ev->n_frames;
        error.frames = self->frame_ptrs;
        for (size_t i = 0; i < ev->n_fingerprint; i++) {
            self->fingerprint[i] = str(ev->fingerprint[i]);
        }
        error.n_fingerprint = ev->n_fingerprint;
        error.fingerprint = self->fingerprint;
        e.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
        e.error = &error;
        break;
    case TOCSIN_EVENT_REQUEST:
        request.route = str(ev->str[TOCSIN_FIELD_ROUTE]);
        request.method = str(ev->str[TOCSIN_FIELD_METHOD]);
        request.status = ev->status;
        request.duration_us = ev->duration_us;
        e.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
        e.request = &request;
        break;
    case TOCSIN_EVENT_METRIC:
        metric.name = str(ev->str[TOCSIN_FIELD_NAME]);
        metric.unit = str(ev->str[TOCSIN_FIELD_UNIT]);
        metric.kind = (Tocsin__V1__MetricKind)ev->sub;
        metric.value = ev->value;
        e.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        e.metric = &metric;
        break;
    case TOCSIN_EVENT_LOG:
        log.level = (Tocsin__V1__Level)ev->sub;
        log.message = str(ev->str[TOCSIN_FIELD_MESSAGE]);
        log.logger = str(ev->str[TOCSIN_FIELD_LOGGER]);
        for (size_t i = 0; i < ev->n_fields; i++) {
            Tocsin__V1__LogRecord__FieldsEntry *f = &self->field_entries[i];
            tocsin__v1__log_record__fields_entry__init(f);
            f->key = str(ev->fields[i].key);
            f->value = str(ev->fields[i].value);
            self->field_ptrs[i] = f;
        }
        log.n_fields = ev->n_fields;
        log.fields = self->field_ptrs;
        e.body_case = TOCSIN__V1__EVENT__BODY_LOG;
        e.log = &log;
        break;
    default:
        return TOCSIN_EINVAL;
    }

    size_t size = protobuf_c_message_get_packed_size(&e.base);
    if (size + 16 > TOCSIN_EVENT_RESERVE) {
        return TOCSIN_ETOOBIG;
    }
    if (self->len == 0) {
        /* The batch's own fields first: sequence, API key, SDK. */
        Tocsin__V1__Batch head = TOCSIN__V1__BATCH__INIT;
        head.sequence = self->sequence;
        head.api_key = str(self->identity.api_key);
        head.sdk = str(self->identity.sdk);
        size_t hsize = protobuf_c_message_get_packed_size(&head.base);
        if (reserve(self, hsize + size + 16) != 0) {
            return TOCSIN_ENOMEM;
        }
        self->len = protobuf_c_message_pack(&head.base, self->buf);
    }
    if (reserve(self, size + 16) != 0) {
        return TOCSIN_ENOMEM;
    }
    /* Batch.events is field 3, length-delimited: tag 0x1a, the length, the event. */
    uint8_t *p = self->buf + self->len;
    size_t n = 0;
    p[n++] = 0x1a;
    n += varint_put(p + n, size);
    size_t packed = protobuf_c_message_pack(&e.base, p + n);
    assert(packed == size);
    self->len += n + packed;
    self->events++;
    return 0;
}

int tocsin_encoder_seal(tocsin_encoder_t *self, const tocsin_loss_t *loss, uint8_t **out,
                        size_t *out_len, uint64_t *sequence)
{
    assert(self && loss && out && out_len && sequence);
    if (self->events == 0) {
        return TOCSIN_EINVAL;
    }
    Tocsin__V1__ClientCounters counters = TOCSIN__V1__CLIENT_COUNTERS__INIT;
    counters.dropped_queue_full = loss->dropped_queue_full;
    counters.dropped_oversize = loss->dropped_oversize;
    counters.sampled_out = loss->sampled_out;
    counters.retried = loss->retried;
    counters.rejected = loss->rejected;
    counters.dropped_before_send = loss->dropped_before_send;

    Tocsin__V1__Batch batch = TOCSIN__V1__BATCH__INIT;
    batch.counters = &counters;
    size_t size = protobuf_c_message_get_packed_size(&batch.base);
    if (reserve(self, size) != 0) {
        return TOCSIN_ENOMEM;
    }
    self->len += protobuf_c_message_pack(&batch.base, self->buf + self->len);
    /* Hand the buffer over, trimmed to size. */
    uint8_t *b = realloc(self->buf, self->len);
    *out = b ? b : self->buf;
    *out_len = self->len;
    *sequence = self->sequence++;
    self->buf = NULL;
    self->len = 0;
    self->cap = 0;
    self->events = 0;
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
