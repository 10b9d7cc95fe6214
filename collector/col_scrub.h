/*
 * col_scrub.h — scrubbing of secrets and personal data before an event leaves the collector.
 *
 * Pure: no I/O, no clock. The rules follow Sentry Relay's defaults (relay-pii):
 *   - values under secret-looking keys — in tags, log fields, `key=value` / `key: value` /
 *     `"key": "value"` pairs inside text, and URL query strings. A key is secret when its
 *     normalised form (lower case, without '-', '_', '.' and spaces) contains one of the
 *     secret patterns: password, passwd, secret, apikey, auth, credential, privatekey,
 *     token, cookie, sessionid, csrf, xsrf, mysqlpwd, and is not one of the safe keys;
 *   - bearer tokens ("Bearer abc…"), PEM private keys ("-----BEGIN … PRIVATE KEY-----" to its
 *     END line), passwords in URLs ("https://user:pw@host" keeps the user), and credit card
 *     numbers: 13 to 19 digits, optionally grouped by single spaces or dashes, starting with
 *     2-6 (the card networks' ranges, which keeps millisecond timestamps out) and passing
 *     the Luhn check;
 *   - when enabled, e-mail addresses and IP addresses (IPv4, and IPv6 with two or more
 *     colons and a decimal digit), masked or hashed;
 *   - user ids: kept, hashed or removed; a kept user id that is an e-mail or IP address is
 *     hashed when those are scrubbed, because the aggregator counts distinct users and a
 *     hash keeps them distinct where a mask would make them one.
 * Where it looks: error and log messages, tag keys and values, log field keys and values,
 * the request route, and the user id. Replacements: "[Filtered]" for secrets (or
 * "[hash:<16 hex>]" with `secrets = hash`, or the entry removed with `secrets = remove`),
 * "Bearer [Filtered]", "[creditcard]", "[email]", "[ip]", or "[email:<16 hex>]" /
 * "[ip:<16 hex>]" when hashed; a hashed user id becomes 32 hex digits.
 *
 * Hashes are XXH3 seeded from `hash_key`: a pseudonym that keeps equal values equal (give
 * every collector of a fleet the same key), not a cryptographic commitment.
 */
#ifndef COL_SCRUB_H
#define COL_SCRUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "col_arena.h"
#include "tocsin/v1/event.pb-c.h"

/* What was scrubbed: the `kind` label of tocsin_collector_scrubbed_total. */
typedef enum {
    COL_SCRUB_SECRET_KEY = 0,  /* secret_key: a value under a secret-looking key */
    COL_SCRUB_BEARER,          /* bearer_token */
    COL_SCRUB_CREDIT_CARD,     /* credit_card */
    COL_SCRUB_PEM_KEY,         /* pem_key */
    COL_SCRUB_URL_CREDENTIALS, /* url_credentials */
    COL_SCRUB_EMAIL,           /* email */
    COL_SCRUB_IP,              /* ip */
    COL_SCRUB_USER_ID,         /* user_id: hashed or removed */
    COL_SCRUB_KIND_COUNT
} col_scrub_kind_t;

/* The kind's stable snake_case name; "unknown" out of range. */
const char *col_scrub_kind_name(col_scrub_kind_t kind);

/* Counts of replacements, by kind; callers add them to their metrics. */
typedef struct {
    uint64_t counts[COL_SCRUB_KIND_COUNT];
} col_scrub_stats_t;

typedef struct col_scrub_rules col_scrub_rules_t;

/* Relay's defaults: secret keys, bearer tokens, PEM keys, URL credentials and credit cards
 * masked; e-mail and IP addresses left; user ids kept. NULL when out of memory. */
col_scrub_rules_t *col_scrub_rules_default(void);

/*
 * Parses a rules file's text (`key = value` lines, '#' comments, blank lines ignored) on top
 * of the defaults:
 *   secret_keys = a, b, …        replaces the list of secret patterns ("" for none)
 *   extra_secret_keys = a, b, …  adds to it
 *   safe_keys = a, b, …          keys never treated as secret (compared normalised, whole)
 *   secrets = mask | hash | remove
 *   bearer_tokens, pem_keys, url_credentials, credit_cards = on | off
 *   emails, ips = off | mask | hash
 *   user_ids = keep | hash | remove
 *   hash_key = text              seeds every hash
 * Returns 0 with *out set (free with col_scrub_rules_destroy), TC_EPARSE with `err` naming the
 * line for a line that is not `key = value`, TC_EUNKNOWNKEY for an unknown key, TC_EINVAL for
 * a bad value or a pattern that normalises to nothing, TC_ETOOBIG past 256 patterns or a line
 * over 4096 bytes, TC_ENOMEM.
 */
int col_scrub_rules_parse(const char *text, size_t len, col_scrub_rules_t **out, char *err,
                          size_t errlen);

void col_scrub_rules_destroy(col_scrub_rules_t **self_p);

/* True when `key` (any case and punctuation) is secret under `rules`. */
bool col_scrub_key_is_secret(const col_scrub_rules_t *rules, const char *key);

/*
 * Scrubs the NUL-terminated `text`. Sets *out to `text` itself when nothing matched, or to a
 * new string allocated from `arena`. Adds what it replaced to `stats`.
 * Returns 0, or TC_ENOMEM when the arena is exhausted (*out is then `text`).
 */
int col_scrub_text(const col_scrub_rules_t *rules, const char *text, col_arena_t *arena, char **out,
                   col_scrub_stats_t *stats);

/*
 * Scrubs one decoded event in place: strings that change are replaced by strings from
 * `arena` (the event must have been decoded into an arena too, so nothing is freed), removed
 * tags and fields leave their arrays. Returns 0 or TC_ENOMEM (the event is then partly
 * scrubbed and must not leave the collector).
 */
int col_scrub_event(const col_scrub_rules_t *rules, Tocsin__V1__Event *ev, col_arena_t *arena,
                    col_scrub_stats_t *stats);

/*
 * The same rules as questions, for strings still in the payload (not NUL-terminated): true
 * when col_scrub_text / col_scrub_event would leave the string, the tag or log field
 * (`key` = `value`), or the user id as it is. An event for which every answer is true can
 * leave the collector as the client encoded it.
 */
bool col_scrub_span_clean(const col_scrub_rules_t *rules, const char *text, size_t len);
bool col_scrub_pair_clean(const col_scrub_rules_t *rules, const char *key, size_t key_len,
                          const char *value, size_t value_len);
bool col_scrub_user_id_clean(const col_scrub_rules_t *rules, const char *user_id, size_t len);

#endif
