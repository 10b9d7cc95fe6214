#include "alr_rollup.h"

#include <stdbool.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

/* The last second of year 9999: bucket starts beyond it are nonsense. */
#define START_MAX 253402300799LL

/* Copies a protobuf string into `dst` after checking it is UTF-8, holds no NUL and fits. */
static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src); /* protobuf-c strings are NUL-terminated; an inner NUL ends it */
    if (n >= cap || !tc_utf8_valid(src, n)) {
        return TC_EINVAL;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* Checks that `key` is exactly service \0 environment \0 name. */
static bool key_matches(const uint8_t *key, size_t len, const alr_rollup_t *r)
{
    size_t a = strlen(r->service), b = strlen(r->environment), c = strlen(r->name);
    if (len != a + 1 + b + 1 + c) {
        return false;
    }
    return memcmp(key, r->service, a) == 0 && key[a] == 0 &&
           memcmp(key + a + 1, r->environment, b) == 0 && key[a + 1 + b] == 0 &&
           memcmp(key + a + 2 + b, r->name, c) == 0;
}

int alr_rollup_decode(const void *key, size_t key_len, const void *value, size_t value_len,
                      alr_rollup_t *out, const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    memset(out, 0, sizeof(*out));
    if (value_len > ALR_ROLLUP_VALUE_MAX) {
        *why = "too_big";
        return TC_ETOOBIG;
    }
    Tocsin__V1__Rollup *msg = tocsin__v1__rollup__unpack(NULL, value_len, value);
    if (!msg) {
        *why = "protobuf";
        return TC_EPARSE;
    }
    int rc = TC_EINVAL;
    const Tocsin__V1__Bucket *b = msg->body_case == TOCSIN__V1__ROLLUP__BODY_BUCKET
                                      ? msg->bucket
                                      : NULL;
    if (!b) {
        *why = "no_bucket";
        goto out;
    }
    if (copy_str(out->service, sizeof(out->service), b->service) != 0 || !out->service[0] ||
        copy_str(out->environment, sizeof(out->environment), b->environment) != 0 ||
        copy_str(out->name, sizeof(out->name), b->name) != 0) {
        *why = "string";
        goto out;
    }
    if ((int)b->kind < 0) {
        *why = "kind";
        goto out;
    }
    if (b->width_s == 0 || b->width_s > ALR_BUCKET_WIDTH_MAX) {
        *why = "width";
        goto out;
    }
    if (b->start_s < 0 || b->start_s > START_MAX || b->start_s % b->width_s != 0) {
        *why = "alignment";
        goto out;
    }
    if (b->errors > b->count) {
        *why = "errors_above_count";
        goto out;
    }
    out->kind = (int)b->kind;
    out->start_s = b->start_s;
    out->width_s = b->width_s;
    out->count = b->count;
    out->errors = b->errors;
    out->revision = msg->revision;
    if (key && !key_matches(key, key_len, out)) {
        *why = "key_mismatch";
        goto out;
    }
    rc = 0;
out:
    tocsin__v1__rollup__free_unpacked(msg, NULL);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}
