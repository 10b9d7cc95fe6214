/*
 * Fuzz target agg_log: the decoding of a stored log record (agg_log_decode) over arbitrary
 * bytes, and the query's match over what passes: every string it hands out lies inside the
 * input and is UTF-8, and matching never reads past them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_log.h"
#include "tc_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void inside(agg_str_t s, const uint8_t *data, size_t size)
{
    CHECK(s.n == 0 || ((const uint8_t *)s.p >= data && (const uint8_t *)s.p + s.n <= data + size));
    CHECK(s.n == 0 || tc_utf8_valid(s.p, s.n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agg_log_t *l = malloc(sizeof(*l));
    if (!l) {
        return 0;
    }
    if (agg_log_decode(data, size, l) == 0) {
        CHECK(l->level >= 1 && l->level <= 6 && l->nfields <= AGG_LOG_FIELDS_MAX);
        inside(l->message, data, size);
        inside(l->logger, data, size);
        inside(l->environment, data, size);
        for (uint32_t i = 0; i < l->nfields; i++) {
            inside(l->keys[i], data, size);
            inside(l->values[i], data, size);
        }
        (void)agg_log_match(l, 3, "a");
        (void)agg_log_match(l, 0, "");
    }
    free(l);
    return 0;
}
