/*
 * col_keys.h — API keys per service, and each service's quota as a token bucket.
 *
 * Pure: the time is passed in. The keys file holds one key per line:
 *
 *     # service    api key                            events/s   burst
 *     checkout     ck_live_4f9a0c2e7b1d44e2a1f0       5000       20000
 *     search       sr_live_77aa1c0de3b54a8f9e21       -
 *
 * Fields are separated by spaces or tabs; '#' starts a comment line. The rate is events per
 * second ("-" or 0: no quota); the burst (default: one second's worth, at least 1) is how
 * many events the bucket holds. A service may have several keys (rotation); its keys share
 * one bucket, so every line of a service must give the same quota. Keys are 8 to 256
 * printable ASCII bytes and unique.
 *
 * A batch is charged its event count. It is taken when the bucket holds at least
 * min(events, burst) tokens — a batch larger than the burst is allowed when the bucket is
 * full and leaves it in debt, so no batch is refused for ever — and otherwise the answer is
 * how many milliseconds until enough tokens have come back.
 */
#ifndef COL_KEYS_H
#define COL_KEYS_H

#include <stddef.h>
#include <stdint.h>

typedef struct col_keys col_keys_t;

/*
 * Parses the text of a keys file. Returns 0 with *out set (free with col_keys_destroy), or
 * TC_EPARSE (a line without service and key, a bad rate or burst, a key of the wrong size
 * or with bad bytes, the same key twice, quotas that differ for one service, a line over
 * 4096 bytes) or TC_ENOMEM, with `err` naming the line.
 */
int col_keys_parse(const char *text, size_t len, col_keys_t **out, char *err, size_t errlen);

void col_keys_destroy(col_keys_t **self_p);

/* Number of keys, and of services. */
size_t col_keys_count(const col_keys_t *self);
size_t col_keys_services(const col_keys_t *self);

/* Carries the buckets' state from `old` into `fresh` for every service in both (after a
 * reload), so reloading never refills a bucket. Tokens above the new burst are cut. */
void col_keys_carry(col_keys_t *fresh, const col_keys_t *old);

/* The service `api_key` belongs to (borrowed from `self`), or NULL when the key is unknown. */
const char *col_keys_service(const col_keys_t *self, const char *api_key);

/*
 * Charges `events` to the quota of `service` at `now_us` (monotonic microseconds). Returns 0
 * when taken (always, for a service without a quota or unknown to `self`), else the
 * milliseconds after which the same batch would be taken (at least 1).
 */
uint32_t col_keys_take(col_keys_t *self, const char *service, uint32_t events, int64_t now_us);

#endif
