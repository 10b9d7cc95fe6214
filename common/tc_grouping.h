/*
 * tc_grouping.h — the error fingerprint: which issue an ErrorEvent joins.
 *
 * A pure function of the event's ErrorEvent body (no clock, no I/O, no allocation), so the
 * collector (which sets ErrorEvent.grouping_hash when the client gave none) and the
 * aggregator (for events that reach it without a hash) compute the very same id.
 *
 * The rules follow Sentry's grouping strategies, in order of precedence:
 *   1. Explicit fingerprint: the client's `fingerprint` parts, verbatim. A part that reads
 *      "{{ default }}" (spaces optional) stands for what rules 2-3 would hash, so a client
 *      can split a default group further ("{{ default }}", "tenant-a").
 *   2. Stack: the exception type plus, for each frame that is used, its module (else the
 *      basename of its file, without "?query" or "#fragment") and its function (trimmed,
 *      without a trailing "+0x1f" offset). Only in-app frames are used when any frame is
 *      in-app; else every frame. Line numbers and instruction addresses never count. A
 *      frame with neither function nor module nor file contributes nothing; when no frame
 *      contributes, rule 3 applies.
 *   3. Message: the exception type plus the message normalised by
 *      tc_grouping_message_normalize().
 *
 * The id is the XXH3 128-bit hash of the chosen parts (each part followed by a NUL byte,
 * behind a tag naming the rule), written as 32 lowercase hex digits. The service is not
 * part of it: Kafka keys and the aggregator's issue keys pair it with the service.
 *
 * Changing anything here regroups every issue: treat the algorithm as a wire format.
 */
#ifndef TC_GROUPING_H
#define TC_GROUPING_H

#include <stddef.h>

#include "tocsin/v1/event.pb-c.h"

/* Length of the hex id, without its terminating NUL. */
#define TC_GROUPING_HASH_LEN 32

/* Which rule produced an id. */
typedef enum {
    TC_GROUPING_FINGERPRINT = 1, /* the client's explicit fingerprint */
    TC_GROUPING_STACK = 2,       /* exception type and stack frames */
    TC_GROUPING_MESSAGE = 3,     /* exception type and normalised message */
} tc_grouping_basis_t;

/*
 * Computes the grouping id of `error` into `out` (32 hex digits and a NUL) and returns the
 * rule used. Strings of `error` may be NULL (protobuf-c leaves empty strings as "" or the
 * shared empty default); repeated fields are read up to their n_ counts. Never fails and
 * allocates nothing; the time taken is linear in the size of the strings.
 * `error` and `out` must not be NULL (programmer error).
 */
tc_grouping_basis_t tc_grouping_hash(const Tocsin__V1__ErrorEvent *error,
                                     char out[TC_GROUPING_HASH_LEN + 1]);

/*
 * Returns the normalised form of the first `len` bytes of `message` (NUL bytes inside are
 * kept as text), as used by rule 3, in a new string the caller frees; NULL when out of
 * memory. Tokens are replaced by placeholders, checked in this order at each word start:
 *   <url>    scheme://... up to whitespace, quote or bracket
 *   <email>  local@domain.tld
 *   <uuid>   8-4-4-4-12 hex digits
 *   <date>   2024-05-01, 2024-05-01T10:20:30.123+02:00, 10:20:30(.123)
 *   <ip>     IPv4 (with an optional :port) and IPv6 (with at least two colons)
 *   <hex>    0x1f2e, and bare hex words of 8 or more digits holding a decimal digit
 *            (32, 40 and 64 digits are <hash>)
 *   <host>   dotted names ending in a common top-level domain (db1.example.com)
 *   <float>  1.5, 2.0e-3
 *   <int>    42
 * Numbers count at a word start only ("utf8" and "user2" stay), and a unit glued to one
 * stays text ("30s" becomes "<int>s"), so "after 30s" and "after 45s" group together.
 * Everything else is copied unchanged. Linear time.
 */
char *tc_grouping_message_normalize(const char *message, size_t len);

/* Returns a static name for `basis`: "fingerprint", "stack", "message" or "unknown". */
const char *tc_grouping_basis_name(tc_grouping_basis_t basis);

#endif
