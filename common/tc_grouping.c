#include "tc_grouping.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: no allocation */
#include <xxhash.h>

#include "tc_util.h"

/*
 * Output of the normaliser and of the part writer: either a running hash or a growing
 * string. Both take the same bytes, so tc_grouping_message_normalize() shows exactly what
 * rule 3 hashes.
 */
typedef struct {
    XXH3_state_t *hash; /* when hashing */
    char *buf;          /* when building a string */
    size_t len;
    size_t cap;
    bool oom;
} sink_t;

static void sink_put(sink_t *sink, const char *bytes, size_t n)
{
    if (n == 0) {
        return;
    }
    if (sink->hash) {
        XXH3_128bits_update(sink->hash, bytes, n);
        return;
    }
    if (sink->oom) {
        return;
    }
    if (sink->len + n + 1 > sink->cap) {
        size_t cap = sink->cap ? sink->cap : 64;
        while (cap < sink->len + n + 1) {
            cap *= 2;
        }
        char *grown = realloc(sink->buf, cap);
        if (!grown) {
            sink->oom = true;
            return;
        }
        sink->buf = grown;
        sink->cap = cap;
    }
    memcpy(sink->buf + sink->len, bytes, n);
    sink->len += n;
    sink->buf[sink->len] = '\0';
}

static void sink_puts(sink_t *sink, const char *s)
{
    sink_put(sink, s, strlen(s));
}

/* One part of the hashed input: its bytes and the NUL that ends it. */
static void sink_part(sink_t *sink, const char *bytes, size_t n)
{
    sink_put(sink, bytes, n);
    sink_put(sink, "", 1);
}

/* ---- character classes (ASCII only; bytes of multi-byte UTF-8 count as word bytes) ---- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
    return is_digit(c) || is_alpha(c);
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_word(char c)
{
    return is_alnum(c) || c == '_' || (unsigned char)c >= 0x80;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* True when a match of `m` bytes at `s` (of `n`) ends at a word boundary. */
static bool ends_word(const char *s, size_t n, size_t m)
{
    return m == n || !is_word(s[m]);
}

/* Counts the decimal digits at `s`, at most `max`. */
static size_t digits(const char *s, size_t n, size_t max)
{
    size_t i = 0;
    while (i < n && i < max && is_digit(s[i])) {
        i++;
    }
    return i;
}

static size_t hex_digits(const char *s, size_t n, size_t max)
{
    size_t i = 0;
    while (i < n && i < max && is_hex(s[i])) {
        i++;
    }
    return i;
}

/* Exactly `count` decimal digits at s[at]. */
static bool digits_at(const char *s, size_t n, size_t at, size_t count)
{
    return at + count <= n && digits(s + at, n - at, count + 1) == count;
}

/* ---- token matchers: each returns the length matched at `s` (0: no match) ---- */

static size_t match_url(const char *s, size_t n)
{
    if (n == 0 || !is_alpha(s[0])) {
        return 0;
    }
    size_t i = 1;
    while (i < n && i < 32 && (is_alnum(s[i]) || s[i] == '+' || s[i] == '.' || s[i] == '-')) {
        i++;
    }
    if (i + 3 > n || memcmp(s + i, "://", 3) != 0) {
        return 0;
    }
    i += 3;
    size_t start = i;
    while (i < n && !is_space(s[i]) && !strchr("\"'<>()[]{}`", s[i])) {
        i++;
    }
    /* A sentence's closing punctuation is not part of the URL. */
    while (i > start && strchr(".,;:!?", s[i - 1])) {
        i--;
    }
    return i > start ? i : 0;
}

/* Length of a domain name at `s`: labels of letters, digits and '-', at least one dot,
 * ending in a label of two or more letters; at most 253 bytes. */
static size_t domain_len(const char *s, size_t n, size_t *last_label)
{
    size_t i = 0;
    while (i < n && i < 254 && (is_alnum(s[i]) || s[i] == '-' || s[i] == '.')) {
        i++;
    }
    if (i == 254) {
        return 0;
    }
    while (i > 0 && (s[i - 1] == '.' || s[i - 1] == '-')) {
        i--;
    }
    if (i == 0 || !is_alnum(s[0])) {
        return 0;
    }
    size_t dot = i;
    while (dot > 0 && s[dot - 1] != '.') {
        dot--;
    }
    if (dot == 0 || i - dot < 2) {
        return 0;
    }
    for (size_t k = dot; k < i; k++) {
        if (!is_alpha(s[k])) {
            return 0;
        }
    }
    for (size_t k = 1; k < i; k++) {
        if (s[k] == '.' && s[k - 1] == '.') {
            return 0;
        }
    }
    *last_label = dot;
    return i;
}

static size_t match_email(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i <= 64 &&
           (is_alnum(s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '%' || s[i] == '+' ||
            s[i] == '-')) {
        i++;
    }
    if (i == 0 || i > 64 || i >= n || s[i] != '@') {
        return 0;
    }
    size_t last;
    size_t d = domain_len(s + i + 1, n - i - 1, &last);
    if (d == 0 || !ends_word(s, n, i + 1 + d)) {
        return 0;
    }
    return i + 1 + d;
}

static size_t match_uuid(const char *s, size_t n)
{
    static const size_t groups[] = {8, 4, 4, 4, 12};
    size_t i = 0;
    for (size_t g = 0; g < 5; g++) {
        if (g > 0) {
            if (i >= n || s[i] != '-') {
                return 0;
            }
            i++;
        }
        if (i + groups[g] > n || hex_digits(s + i, n - i, groups[g] + 1) != groups[g]) {
            return 0;
        }
        i += groups[g];
    }
    return ends_word(s, n, i) ? i : 0;
}

/* HH:MM[:SS[.frac]]; with `need_seconds`, the seconds are required. */
static size_t time_len(const char *s, size_t n, bool need_seconds)
{
    if (!digits_at(s, n, 0, 2) || n < 5 || s[2] != ':' || !digits_at(s, n, 3, 2)) {
        return 0;
    }
    size_t i = 5;
    if (i < n && s[i] == ':' && digits_at(s, n, i + 1, 2)) {
        i += 3;
        if (i + 1 < n && (s[i] == '.' || s[i] == ',') && is_digit(s[i + 1])) {
            i += 1 + digits(s + i + 1, n - i - 1, 9);
        }
    } else if (need_seconds) {
        return 0;
    }
    return i;
}

/* Z, +HH, +HHMM or +HH:MM after a time. */
static size_t zone_len(const char *s, size_t n)
{
    if (n >= 1 && (s[0] == 'Z' || s[0] == 'z')) {
        return 1;
    }
    if (n >= 3 && (s[0] == '+' || s[0] == '-') && digits_at(s, n, 1, 2)) {
        if (n >= 6 && s[3] == ':' && digits_at(s, n, 4, 2)) {
            return 6;
        }
        if (digits_at(s, n, 3, 2)) {
            return 5;
        }
        return 3;
    }
    return 0;
}

static size_t match_date(const char *s, size_t n)
{
    size_t i = 0;
    if (digits_at(s, n, 0, 4) && n >= 10 && s[4] == '-' && digits_at(s, n, 5, 2) && s[7] == '-' &&
        digits_at(s, n, 8, 2)) {
        i = 10;
        if (i < n && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
            size_t t = time_len(s + i + 1, n - i - 1, false);
            if (t > 0) {
                i += 1 + t;
                i += zone_len(s + i, n - i);
            }
        }
    } else {
        i = time_len(s, n, true);
        if (i == 0) {
            return 0;
        }
        i += zone_len(s + i, n - i);
    }
    return ends_word(s, n, i) ? i : 0;
}

/* Dotted quad with each part at most 255, and an optional :port. */
static size_t ipv4_len(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.') {
                return 0;
            }
            i++;
        }
        size_t d = digits(s + i, n - i, 4);
        if (d == 0 || d > 3) {
            return 0;
        }
        int v = 0;
        for (size_t k = 0; k < d; k++) {
            v = v * 10 + (s[i + k] - '0');
        }
        if (v > 255) {
            return 0;
        }
        i += d;
    }
    return i;
}

static size_t match_ipv4(const char *s, size_t n)
{
    size_t i = ipv4_len(s, n);
    if (i == 0) {
        return 0;
    }
    if (i + 1 < n && s[i] == '.' && is_digit(s[i + 1])) {
        return 0; /* 1.2.3.4.5 is a version, not an address */
    }
    if (i + 1 < n && s[i] == ':' && is_digit(s[i + 1])) {
        size_t port = digits(s + i + 1, n - i - 1, 6);
        if (port <= 5) {
            i += 1 + port;
        }
    }
    return ends_word(s, n, i) ? i : 0;
}

/* IPv6: groups of up to 4 hex digits, at least two colons, at most one "::", eight
 * groups unless "::" stands for some, an optional dotted-quad tail, and at least one
 * decimal digit (so C++'s "abc::def" stays a name). */
static size_t match_ipv6(const char *s, size_t n)
{
    size_t i = 0;
    int colons = 0;
    int groups = 0;
    bool double_colon = false;
    bool digit = false;
    while (i < n && i <= 45) {
        if (s[i] == ':') {
            if (i + 1 < n && s[i + 1] == ':') {
                if (double_colon) {
                    return 0;
                }
                double_colon = true;
                colons += 2;
                i += 2;
                continue;
            }
            colons++;
            i++;
            continue;
        }
        size_t h = hex_digits(s + i, n - i, 5);
        if (h == 0) {
            break;
        }
        if (i + h < n && s[i + h] == '.' && colons >= 2) {
            size_t q = ipv4_len(s + i, n - i);
            if (q == 0) {
                return 0;
            }
            i += q;
            groups += 2;
            digit = true;
            break;
        }
        if (h > 4) {
            return 0;
        }
        for (size_t k = 0; k < h; k++) {
            digit = digit || is_digit(s[i + k]);
        }
        groups++;
        i += h;
    }
    if (i > 45 || colons < 2 || !digit) {
        return 0;
    }
    if (i > 0 && s[i - 1] == ':' && !(i >= 2 && s[i - 2] == ':')) {
        return 0; /* a lone trailing colon: "a:1:" is not an address */
    }
    if (double_colon ? groups > 7 : groups != 8) {
        return 0;
    }
    return ends_word(s, n, i) ? i : 0;
}

static size_t match_hex(const char *s, size_t n, const char **placeholder)
{
    if (n >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && is_hex(s[2])) {
        size_t i = 2 + hex_digits(s + 2, n - 2, SIZE_MAX);
        *placeholder = "<hex>";
        return ends_word(s, n, i) ? i : 0;
    }
    size_t i = hex_digits(s, n, SIZE_MAX);
    if (i < 8 || !ends_word(s, n, i)) {
        return 0;
    }
    bool digit = false;
    bool letter = false;
    for (size_t k = 0; k < i; k++) {
        digit = digit || is_digit(s[k]);
        letter = letter || !is_digit(s[k]);
    }
    if (!digit || !letter) {
        return 0;
    }
    *placeholder = (i == 32 || i == 40 || i == 64) ? "<hash>" : "<hex>";
    return i;
}

static size_t match_host(const char *s, size_t n)
{
    static const char *tlds[] = {
        "com",  "net",      "org",     "io",  "dev", "app", "cloud", "local", "lan",
        "corp", "internal", "cluster", "svc", "edu", "gov", "info",  "biz",   "co",
        "us",   "uk",       "de",      "fr",  "nl",  "eu",  "arpa",  "home",  "localdomain",
    };
    if (n == 0 || !is_alnum(s[0])) {
        return 0;
    }
    size_t last;
    size_t d = domain_len(s, n, &last);
    if (d == 0 || !ends_word(s, n, d)) {
        return 0;
    }
    if (d + 1 < n && s[d] == '.' && is_alnum(s[d + 1])) {
        return 0;
    }
    size_t tld_len = d - last;
    for (size_t k = 0; k < sizeof(tlds) / sizeof(tlds[0]); k++) {
        if (strlen(tlds[k]) == tld_len && strncasecmp(s + last, tlds[k], tld_len) == 0) {
            return d;
        }
    }
    return 0;
}

/* Numbers are replaced with any unit glued to them left in place ("30s" is "<int>s"), so
 * "timed out after 30s" and "... after 45s" group together. */
static size_t match_float(const char *s, size_t n)
{
    size_t i = digits(s, n, SIZE_MAX);
    if (i == 0 || i + 1 >= n || s[i] != '.' || !is_digit(s[i + 1])) {
        return 0;
    }
    i += 1 + digits(s + i + 1, n - i - 1, SIZE_MAX);
    if (i + 1 < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) {
            j++;
        }
        size_t e = digits(s + j, n - j, SIZE_MAX);
        if (e > 0) {
            i = j + e;
        }
    }
    return i;
}

static size_t match_int(const char *s, size_t n)
{
    return digits(s, n, SIZE_MAX);
}

/* Tries every matcher at a word start; returns the length and sets the placeholder. */
static size_t match_token(const char *s, size_t n, const char **placeholder)
{
    size_t m;
    if ((m = match_url(s, n)) > 0) {
        *placeholder = "<url>";
    } else if ((m = match_email(s, n)) > 0) {
        *placeholder = "<email>";
    } else if ((m = match_uuid(s, n)) > 0) {
        *placeholder = "<uuid>";
    } else if ((m = match_date(s, n)) > 0) {
        *placeholder = "<date>";
    } else if ((m = match_ipv4(s, n)) > 0 || (m = match_ipv6(s, n)) > 0) {
        *placeholder = "<ip>";
    } else if ((m = match_hex(s, n, placeholder)) > 0) {
        /* placeholder set by match_hex */
    } else if ((m = match_host(s, n)) > 0) {
        *placeholder = "<host>";
    } else if ((m = match_float(s, n)) > 0) {
        *placeholder = "<float>";
    } else if ((m = match_int(s, n)) > 0) {
        *placeholder = "<int>";
    }
    return m;
}

/*
 * Writes the normalised message to `sink`. Matchers run only where a word starts (at the
 * beginning or after a non-word byte); a word no matcher takes is copied whole, so digits
 * inside identifiers stay. Every matcher scans a bounded distance unless it succeeds and
 * consumes what it scanned, which keeps the whole pass linear.
 */
static void normalize_into(sink_t *sink, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i == 0 || !is_word(s[i - 1])) {
            const char *placeholder = NULL;
            size_t m = match_token(s + i, n - i, &placeholder);
            if (m > 0) {
                sink_puts(sink, placeholder);
                i += m;
                continue;
            }
        }
        size_t j = i + 1;
        if (is_word(s[i])) {
            while (j < n && is_word(s[j])) {
                j++;
            }
        }
        sink_put(sink, s + i, j - i);
        i = j;
    }
}

char *tc_grouping_message_normalize(const char *message, size_t len)
{
    sink_t sink = {0};
    sink_put(&sink, "", 0);
    normalize_into(&sink, message ? message : "", message ? len : 0);
    if (sink.oom) {
        free(sink.buf);
        return NULL;
    }
    if (!sink.buf) {
        return strdup("");
    }
    return sink.buf;
}

/* ---- frames ---- */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* Trims ASCII white space at both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1])) {
        (*n)--;
    }
}

/* The function name without surrounding space and without a "+0x1f" offset. */
static void frame_function(const Tocsin__V1__Frame *frame, const char **s, size_t *n)
{
    *s = str_or_empty(frame->function);
    *n = strlen(*s);
    trim(s, n);
    size_t plus = *n;
    while (plus > 0 && (*s)[plus - 1] != '+') {
        plus--;
    }
    if (plus > 0 && *n - plus >= 3 && (*s)[plus] == '0' &&
        ((*s)[plus + 1] == 'x' || (*s)[plus + 1] == 'X') &&
        hex_digits(*s + plus + 2, *n - plus - 2, SIZE_MAX) == *n - plus - 2) {
        *n = plus - 1;
        trim(s, n);
    }
}

/* The module, else the file's basename without a query or fragment. */
static void frame_module(const Tocsin__V1__Frame *frame, const char **s, size_t *n)
{
    *s = str_or_empty(frame->module);
    *n = strlen(*s);
    trim(s, n);
    if (*n > 0) {
        return;
    }
    const char *file = str_or_empty(frame->file);
    size_t len = strcspn(file, "?#");
    size_t base = len;
    while (base > 0 && file[base - 1] != '/' && file[base - 1] != '\\') {
        base--;
    }
    *s = file + base;
    *n = len - base;
    trim(s, n);
}

static bool frame_counts(const Tocsin__V1__Frame *frame)
{
    const char *s;
    size_t n;
    frame_function(frame, &s, &n);
    if (n > 0) {
        return true;
    }
    frame_module(frame, &s, &n);
    return n > 0;
}

/* True when the stack rule applies: some used frame contributes. */
static bool stack_usable(const Tocsin__V1__ErrorEvent *error, bool *in_app_only)
{
    *in_app_only = false;
    for (size_t i = 0; i < error->n_frames; i++) {
        if (error->frames[i] && error->frames[i]->in_app) {
            *in_app_only = true;
            break;
        }
    }
    for (size_t i = 0; i < error->n_frames; i++) {
        const Tocsin__V1__Frame *frame = error->frames[i];
        if (frame && (!*in_app_only || frame->in_app) && frame_counts(frame)) {
            return true;
        }
    }
    return false;
}

/* Feeds rules 2 or 3 to the sink and returns which one applied. */
static tc_grouping_basis_t default_parts(sink_t *sink, const Tocsin__V1__ErrorEvent *error)
{
    const char *type = str_or_empty(error->type);
    size_t type_len = strlen(type);
    trim(&type, &type_len);
    bool in_app_only;
    if (stack_usable(error, &in_app_only)) {
        sink_part(sink, "stack", 5);
        sink_part(sink, type, type_len);
        for (size_t i = 0; i < error->n_frames; i++) {
            const Tocsin__V1__Frame *frame = error->frames[i];
            if (!frame || (in_app_only && !frame->in_app) || !frame_counts(frame)) {
                continue;
            }
            const char *s;
            size_t n;
            frame_module(frame, &s, &n);
            sink_part(sink, s, n);
            frame_function(frame, &s, &n);
            sink_part(sink, s, n);
        }
        return TC_GROUPING_STACK;
    }
    sink_part(sink, "message", 7);
    sink_part(sink, type, type_len);
    const char *message = str_or_empty(error->message);
    normalize_into(sink, message, strlen(message));
    sink_put(sink, "", 1);
    return TC_GROUPING_MESSAGE;
}

/* "{{ default }}" with any spaces inside the braces. */
static bool is_default_marker(const char *part)
{
    if (strncmp(part, "{{", 2) != 0) {
        return false;
    }
    const char *p = part + 2;
    while (*p == ' ') {
        p++;
    }
    if (strncmp(p, "default", 7) != 0) {
        return false;
    }
    p += 7;
    while (*p == ' ') {
        p++;
    }
    return strcmp(p, "}}") == 0;
}

tc_grouping_basis_t tc_grouping_hash(const Tocsin__V1__ErrorEvent *error,
                                     char out[TC_GROUPING_HASH_LEN + 1])
{
    assert(error);
    assert(out);
    XXH3_state_t state;
    XXH3_128bits_reset(&state);
    sink_t sink = {.hash = &state};
    tc_grouping_basis_t basis;
    if (error->n_fingerprint > 0) {
        basis = TC_GROUPING_FINGERPRINT;
        sink_part(&sink, "fingerprint", 11);
        for (size_t i = 0; i < error->n_fingerprint; i++) {
            const char *part = str_or_empty(error->fingerprint[i]);
            if (is_default_marker(part)) {
                sink_part(&sink, "{{default}}", 11);
                default_parts(&sink, error);
            } else {
                sink_part(&sink, part, strlen(part));
            }
        }
    } else {
        basis = default_parts(&sink, error);
    }
    XXH128_hash_t h = XXH3_128bits_digest(&state);
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, h);
    tc_hex(canonical.digest, sizeof(canonical.digest), out);
    return basis;
}

const char *tc_grouping_basis_name(tc_grouping_basis_t basis)
{
    switch (basis) {
    case TC_GROUPING_FINGERPRINT:
        return "fingerprint";
    case TC_GROUPING_STACK:
        return "stack";
    case TC_GROUPING_MESSAGE:
        return "message";
    }
    return "unknown";
}
