/*
 * Fuzz target col_batch: collector decode-and-validate (col_batch_decode) over arbitrary
 * bytes, with the default limits and with tight ones. For a batch that passes, every event
 * is encoded as the collector writes it to Kafka and must decode again with the collector's
 * fields set — what is accepted can always be produced.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "col_validate.h"
#include "col_wire.h"
#include "tc_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checked in every build type (assert is compiled out under NDEBUG). */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_accepted(Tocsin__V1__Batch *b, const col_limits_t *lim)
{
    CHECK(b->n_events >= 1 && b->n_events <= lim->max_events);
    for (size_t i = 0; i < b->n_events; i++) {
        Tocsin__V1__Event *ev = b->events[i];
        CHECK(ev->event_id.len == 16);
        CHECK(ev->service && ev->service[0]);
        CHECK(ev->body_case != TOCSIN__V1__EVENT__BODY__NOT_SET);
        uint8_t *out = NULL;
        size_t len = 0;
        if (col_event_encode(ev, 1795000000000000LL, "fuzz-collector", &out, &len) != 0) {
            continue; /* out of memory: nothing to check */
        }
        Tocsin__V1__Event *back = tocsin__v1__event__unpack(NULL, len, out);
        free(out);
        CHECK(back);
        CHECK(back->received_us == 1795000000000000LL);
        CHECK(strcmp(back->collector_id, "fuzz-collector") == 0);
        CHECK(strcmp(back->service, ev->service) == 0);
        CHECK(back->body_case == ev->body_case);
        tocsin__v1__event__free_unpacked(back, NULL);
    }
}

static void run(const uint8_t *data, size_t size, const col_limits_t *lim)
{
    Tocsin__V1__Batch *b = NULL;
    col_reject_t rej;
    int rc = col_batch_decode(size ? data : NULL, size, lim, &b, &rej);
    if (rc == 0) {
        CHECK(b && rej.reason == COL_REASON_NONE);
        check_accepted(b, lim);
        col_batch_free(b);
        return;
    }
    CHECK(rc == TC_EINVAL && !b);
    CHECK(rej.reason > COL_REASON_NONE && rej.reason < COL_REASON_COUNT);
    CHECK(rej.message[0] != '\0');
    CHECK(memchr(rej.message, '\0', sizeof(rej.message)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    col_limits_t lim = col_limits_default();
    run(data, size, &lim);
    col_limits_t tight = {
        .max_frame_bytes = 512,
        .max_events = 2,
        .max_short_string = 8,
        .max_long_string = 32,
        .max_tags = 1,
        .max_frames = 1,
        .max_log_fields = 1,
        .max_fingerprint_parts = 1,
    };
    run(data, size, &tight);
    return 0;
}
