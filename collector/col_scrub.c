#include "col_scrub.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "tc_error.h"

#define MAX_PATTERNS 256
#define KEY_NORM_MAX 256 /* normalised keys are compared on at most this many bytes */
#define TEXT_KEY_MAX 64  /* how far back a key before '=' or ':' is looked for */
#define LINE_MAX_BYTES 4096

typedef enum { ACT_OFF = 0, ACT_MASK, ACT_HASH, ACT_REMOVE, ACT_KEEP } action_t;

struct col_scrub_rules {
    char *secret[MAX_PATTERNS];
    size_t n_secret;
    bool first[256]; /* first bytes of the secret patterns, to skip most positions at once */
    char *safe[MAX_PATTERNS];
    size_t n_safe;
    action_t secrets; /* MASK, HASH or REMOVE */
    bool bearer;
    bool pem;
    bool url_credentials;
    bool credit_cards;
    action_t emails;   /* OFF, MASK or HASH */
    action_t ips;      /* OFF, MASK or HASH */
    action_t user_ids; /* KEEP, HASH or REMOVE */
    uint64_t seed;
};

static const char *const kind_names[COL_SCRUB_KIND_COUNT] = {
    [COL_SCRUB_SECRET_KEY] = "secret_key",
    [COL_SCRUB_BEARER] = "bearer_token",
    [COL_SCRUB_CREDIT_CARD] = "credit_card",
    [COL_SCRUB_PEM_KEY] = "pem_key",
    [COL_SCRUB_URL_CREDENTIALS] = "url_credentials",
    [COL_SCRUB_EMAIL] = "email",
    [COL_SCRUB_IP] = "ip",
    [COL_SCRUB_USER_ID] = "user_id",
};

static const char *const default_secrets[] = {
    "password", "passwd", "secret",    "apikey", "auth", "credential", "privatekey",
    "token",    "cookie", "sessionid", "csrf",   "xsrf", "mysqlpwd",
};

const char *col_scrub_kind_name(col_scrub_kind_t kind)
{
    if ((int)kind < 0 || kind >= COL_SCRUB_KIND_COUNT) {
        return "unknown";
    }
    return kind_names[kind];
}

/* ---- character classes ---- */

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

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A byte that can be part of a word: letters, digits, '_' and non-ASCII bytes. */
/* Word bytes: letters, digits, '_' and every byte of a multi-byte UTF-8 character. A table,
 * because the scanner asks this of every byte of every message. */
static const bool word_bytes[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static bool is_word(char c)
{
    return word_bytes[(unsigned char)c];
}

static bool is_key_char(char c)
{
    return is_alnum(c) || c == '_' || c == '-' || c == '.';
}

/* ---- rules ---- */

/* Lower case without '-', '_', '.' and white space; at most `cap - 1` bytes. */
static size_t normalize_key(const char *key, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        char c = key[i];
        if (c == '-' || c == '_' || c == '.' || is_space(c)) {
            continue;
        }
        out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[n] = '\0';
    return n;
}

static void free_list(char **list, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free(list[i]);
        list[i] = NULL;
    }
    *n = 0;
}

void col_scrub_rules_destroy(col_scrub_rules_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    col_scrub_rules_t *self = *self_p;
    free_list(self->secret, &self->n_secret);
    free_list(self->safe, &self->n_safe);
    free(self);
    *self_p = NULL;
}

/* Adds the normalised form of [s, s+len) to `list`. */
static int list_add(char **list, size_t *n, const char *s, size_t len)
{
    char norm[KEY_NORM_MAX];
    if (normalize_key(s, len, norm, sizeof(norm)) == 0) {
        return TC_EINVAL;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(list[i], norm) == 0) {
            return 0;
        }
    }
    if (*n >= MAX_PATTERNS) {
        return TC_ETOOBIG;
    }
    list[*n] = strdup(norm);
    if (!list[*n]) {
        return TC_ENOMEM;
    }
    (*n)++;
    return 0;
}

/* Called after the patterns change: the first-byte table of norm_is_secret. */
static void index_patterns(col_scrub_rules_t *r)
{
    memset(r->first, 0, sizeof(r->first));
    for (size_t i = 0; i < r->n_secret; i++) {
        r->first[(unsigned char)r->secret[i][0]] = true;
    }
}

col_scrub_rules_t *col_scrub_rules_default(void)
{
    col_scrub_rules_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(default_secrets) / sizeof(default_secrets[0]); i++) {
        if (list_add(self->secret, &self->n_secret, default_secrets[i],
                     strlen(default_secrets[i])) != 0) {
            col_scrub_rules_destroy(&self);
            return NULL;
        }
    }
    self->secrets = ACT_MASK;
    self->bearer = true;
    self->pem = true;
    self->url_credentials = true;
    self->credit_cards = true;
    self->emails = ACT_OFF;
    self->ips = ACT_OFF;
    self->user_ids = ACT_KEEP;
    self->seed = XXH3_64bits("tocsin", 6);
    index_patterns(self);
    return self;
}

/* Splits a comma-separated list into `list`. */
static int parse_list(const char *v, char **list, size_t *n)
{
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *s = p;
        size_t slen = len;
        while (slen > 0 && is_space(*s)) {
            s++;
            slen--;
        }
        while (slen > 0 && is_space(s[slen - 1])) {
            slen--;
        }
        if (slen > 0) {
            int rc = list_add(list, n, s, slen);
            if (rc != 0) {
                return rc;
            }
        }
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "on") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
        !strcmp(v, "1")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(v, "off") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
        !strcmp(v, "0")) {
        *out = false;
        return 0;
    }
    return TC_EINVAL;
}

static int parse_action(const char *v, action_t *out, const action_t *allowed, size_t n_allowed)
{
    static const char *const names[] = {
        [ACT_OFF] = "off",       [ACT_MASK] = "mask", [ACT_HASH] = "hash",
        [ACT_REMOVE] = "remove", [ACT_KEEP] = "keep",
    };
    for (size_t i = 0; i < n_allowed; i++) {
        if (strcasecmp(v, names[allowed[i]]) == 0) {
            *out = allowed[i];
            return 0;
        }
    }
    return TC_EINVAL;
}

static int set_rule(col_scrub_rules_t *r, const char *key, const char *v)
{
    static const action_t secret_acts[] = {ACT_MASK, ACT_HASH, ACT_REMOVE};
    static const action_t pii_acts[] = {ACT_OFF, ACT_MASK, ACT_HASH};
    static const action_t user_acts[] = {ACT_KEEP, ACT_HASH, ACT_REMOVE};
    if (strcmp(key, "secret_keys") == 0) {
        free_list(r->secret, &r->n_secret);
        return parse_list(v, r->secret, &r->n_secret);
    }
    if (strcmp(key, "extra_secret_keys") == 0) {
        return parse_list(v, r->secret, &r->n_secret);
    }
    if (strcmp(key, "safe_keys") == 0) {
        return parse_list(v, r->safe, &r->n_safe);
    }
    if (strcmp(key, "secrets") == 0) {
        return parse_action(v, &r->secrets, secret_acts, 3);
    }
    if (strcmp(key, "bearer_tokens") == 0) {
        return parse_bool(v, &r->bearer);
    }
    if (strcmp(key, "pem_keys") == 0) {
        return parse_bool(v, &r->pem);
    }
    if (strcmp(key, "url_credentials") == 0) {
        return parse_bool(v, &r->url_credentials);
    }
    if (strcmp(key, "credit_cards") == 0) {
        return parse_bool(v, &r->credit_cards);
    }
    if (strcmp(key, "emails") == 0) {
        return parse_action(v, &r->emails, pii_acts, 3);
    }
    if (strcmp(key, "ips") == 0) {
        return parse_action(v, &r->ips, pii_acts, 3);
    }
    if (strcmp(key, "user_ids") == 0) {
        return parse_action(v, &r->user_ids, user_acts, 3);
    }
    if (strcmp(key, "hash_key") == 0) {
        r->seed = XXH3_64bits(v, strlen(v));
        return 0;
    }
    return TC_EUNKNOWNKEY;
}

static char *trim(char *s)
{
    while (is_space(*s)) {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) {
        s[--n] = '\0';
    }
    return s;
}

int col_scrub_rules_parse(const char *text, size_t len, col_scrub_rules_t **out, char *err,
                          size_t errlen)
{
    assert(out && err);
    *out = NULL;
    col_scrub_rules_t *r = col_scrub_rules_default();
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return TC_ENOMEM;
    }
    size_t pos = 0;
    int lineno = 0;
    int rc = 0;
    char line[LINE_MAX_BYTES + 1];
    while (pos < len && rc == 0) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (n > LINE_MAX_BYTES) {
            snprintf(err, errlen, "line %d: longer than %d bytes", lineno, LINE_MAX_BYTES);
            rc = TC_ETOOBIG;
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl ? 1 : 0);
        if (memchr(line, '\0', n)) {
            snprintf(err, errlen, "line %d: NUL byte", lineno);
            rc = TC_EPARSE;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "line %d: expected key = value", lineno);
            rc = TC_EPARSE;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        rc = set_rule(r, key, value);
        if (rc == TC_EUNKNOWNKEY) {
            snprintf(err, errlen, "line %d: unknown key \"%s\"", lineno, key);
        } else if (rc == TC_ETOOBIG) {
            snprintf(err, errlen, "line %d: %s: more than %d patterns", lineno, key, MAX_PATTERNS);
        } else if (rc == TC_ENOMEM) {
            snprintf(err, errlen, "out of memory");
        } else if (rc != 0) {
            snprintf(err, errlen, "line %d: %s: bad value \"%s\"", lineno, key, value);
        }
    }
    if (rc != 0) {
        col_scrub_rules_destroy(&r);
        return rc;
    }
    index_patterns(r);
    *out = r;
    return 0;
}

/* Every tag key of every event comes through here: a position whose byte starts no pattern
 * is passed over without comparing. */
static bool norm_is_secret(const col_scrub_rules_t *rules, const char *norm, size_t len)
{
    bool hit = false;
    for (size_t p = 0; p < len && !hit; p++) {
        if (!rules->first[(unsigned char)norm[p]]) {
            continue;
        }
        for (size_t i = 0; i < rules->n_secret; i++) {
            const char *pat = rules->secret[i];
            if (pat[0] == norm[p] && strncmp(norm + p, pat, strlen(pat)) == 0) {
                hit = true;
                break;
            }
        }
    }
    if (!hit) {
        return false;
    }
    for (size_t i = 0; i < rules->n_safe; i++) {
        if (strcmp(rules->safe[i], norm) == 0) {
            return false;
        }
    }
    return true;
}

static bool key_is_secret(const col_scrub_rules_t *rules, const char *key, size_t len)
{
    if (rules->n_secret == 0) {
        return false;
    }
    char norm[KEY_NORM_MAX];
    size_t n = normalize_key(key, len, norm, sizeof(norm));
    return n > 0 && norm_is_secret(rules, norm, n);
}

bool col_scrub_key_is_secret(const col_scrub_rules_t *rules, const char *key)
{
    assert(rules);
    return key && key_is_secret(rules, key, strlen(key));
}

/* ---- the output of one text: copied lazily, only once something is replaced ---- */

typedef struct {
    const char *in;
    size_t len;
    size_t copied; /* input bytes accounted for in `out` */
    char *out;     /* malloc'd; NULL until the first replacement */
    size_t olen;
    size_t ocap;
    bool oom;
    bool dry;     /* only find out whether anything would be replaced */
    bool changed; /* (dry) something would be */
    col_scrub_stats_t *stats;
    uint64_t seed;
} builder_t;

static void out_put(builder_t *b, const char *s, size_t n)
{
    if (b->oom || n == 0) {
        return;
    }
    if (b->olen + n + 1 > b->ocap) {
        size_t cap = b->ocap ? b->ocap : b->len + 64;
        while (cap < b->olen + n + 1) {
            cap *= 2;
        }
        char *grown = realloc(b->out, cap);
        if (!grown) {
            b->oom = true;
            return;
        }
        b->out = grown;
        b->ocap = cap;
    }
    memcpy(b->out + b->olen, s, n);
    b->olen += n;
    b->out[b->olen] = '\0';
}

/* Replaces input [start, end) with `repl` (not empty); start must not precede what was
 * copied. */
static void replace(builder_t *b, size_t start, size_t end, const char *repl, col_scrub_kind_t k)
{
    assert(start >= b->copied && end >= start && end <= b->len && repl[0]);
    if (b->dry) {
        b->changed = true;
        b->copied = end;
        return;
    }
    out_put(b, b->in + b->copied, start - b->copied);
    out_put(b, repl, strlen(repl));
    b->copied = end;
    b->stats->counts[k]++;
}

/* "[<label>:<16 hex>]" of the value's seeded hash. */
static void hashed_label(const char *label, const char *v, size_t n, uint64_t seed, char *out,
                         size_t cap)
{
    snprintf(out, cap, "[%s:%016llx]", label, (unsigned long long)XXH3_64bits_withSeed(v, n, seed));
}

/* ---- matchers over the input; each returns the end of its match or 0 ---- */

/* A domain of labels with at least one dot, ending in two or more letters; its length. */
static size_t domain_len(const char *s, size_t n)
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
    return i;
}

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
        size_t d = 0;
        int v = 0;
        while (i + d < n && d < 4 && is_digit(s[i + d])) {
            v = v * 10 + (s[i + d] - '0');
            d++;
        }
        if (d == 0 || d > 3 || v > 255) {
            return 0;
        }
        i += d;
    }
    return i;
}

/* A dotted quad not followed by more of a version number or a word. */
static size_t match_ipv4(const char *s, size_t n)
{
    size_t i = ipv4_len(s, n);
    if (i == 0) {
        return 0;
    }
    if (i + 1 < n && s[i] == '.' && is_digit(s[i + 1])) {
        return 0;
    }
    if (i < n && is_word(s[i])) {
        return 0;
    }
    return i;
}

/* IPv6 as tc_grouping reads it: hex groups, two or more colons, a decimal digit. */
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
        size_t h = 0;
        while (i + h < n && h < 5 && is_hex(s[i + h])) {
            h++;
        }
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
    if (s[i - 1] == ':' && !(i >= 2 && s[i - 2] == ':')) {
        return 0;
    }
    if (double_colon ? groups > 7 : groups != 8) {
        return 0;
    }
    if (i < n && is_word(s[i])) {
        return 0;
    }
    return i;
}

/* 13-19 digits starting with 2-6, single spaces or dashes between digits, Luhn-valid, not
 * inside a longer run of digits or a word. */
static size_t match_card(const char *s, size_t n)
{
    int d[19];
    int nd = 0;
    size_t i = 0;
    size_t end = 0;
    while (i < n) {
        if (is_digit(s[i])) {
            if (nd == 19) {
                return 0; /* a longer run of digits is not a card */
            }
            d[nd++] = s[i] - '0';
            i++;
            end = i;
            continue;
        }
        if ((s[i] == ' ' || s[i] == '-') && i + 1 < n && is_digit(s[i + 1]) && nd > 0 &&
            is_digit(s[i - 1])) {
            i++;
            continue;
        }
        break;
    }
    if (nd < 13 || d[0] < 2 || d[0] > 6) {
        return 0;
    }
    if (end < n && is_word(s[end])) {
        return 0;
    }
    int sum = 0;
    for (int k = 0; k < nd; k++) {
        int v = d[nd - 1 - k];
        if (k % 2 == 1) {
            v *= 2;
            if (v > 9) {
                v -= 9;
            }
        }
        sum += v;
    }
    return sum % 10 == 0 ? end : 0;
}

static bool starts_with_ci(const char *s, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    return n >= p && strncasecmp(s, prefix, p) == 0;
}

static bool is_token_char(char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
           c == '=';
}

/* At "-----BEGIN … PRIVATE KEY-----": the end of the block (after the END line's dashes, or
 * the end of the text when it has none). */
static size_t match_pem(const char *s, size_t n)
{
    if (!starts_with_ci(s, n, "-----BEGIN ")) {
        return 0;
    }
    size_t i = 11;
    while (i < n && i < 80 && s[i] != '-' && s[i] != '\n') {
        i++;
    }
    if (i < 19 || i + 5 > n || strncmp(s + i, "-----", 5) != 0 ||
        strncmp(s + i - 11, "PRIVATE KEY", 11) != 0) {
        return 0;
    }
    i += 5;
    while (i + 8 <= n) {
        if (strncmp(s + i, "-----END", 8) == 0) {
            i += 8;
            while (i < n && s[i] != '-' && s[i] != '\n') {
                i++;
            }
            while (i < n && s[i] == '-') {
                i++;
            }
            return i;
        }
        i++;
    }
    return n;
}

/* ---- the text scanner ---- */

static void mask_value(builder_t *b, const col_scrub_rules_t *rules, size_t start, size_t end)
{
    if (rules->secrets == ACT_HASH) {
        char repl[40];
        hashed_label("hash", b->in + start, end - start, b->seed, repl, sizeof(repl));
        replace(b, start, end, repl, COL_SCRUB_SECRET_KEY);
    } else {
        replace(b, start, end, "[Filtered]", COL_SCRUB_SECRET_KEY);
    }
}

/*
 * At a '=' or ':' at `i`: when a secret key stands right before it, masks the value after
 * it and returns where the value ends; otherwise returns 0.
 */
static size_t scrub_pair(builder_t *b, const col_scrub_rules_t *rules, size_t i)
{
    const char *s = b->in;
    size_t k = i;
    /* "key = v", "key: v": a little white space before the separator */
    while (k > 0 && i - k < 4 && (s[k - 1] == ' ' || s[k - 1] == '\t')) {
        k--;
    }
    if (k > 0 && (s[k - 1] == '"' || s[k - 1] == '\'')) {
        k--;
    }
    size_t key_end = k;
    while (k > 0 && key_end - k < TEXT_KEY_MAX && is_key_char(s[k - 1])) {
        k--;
    }
    if (k == key_end || k < b->copied || (k > 0 && is_key_char(s[k - 1]))) {
        return 0;
    }
    if (!key_is_secret(rules, s + k, key_end - k)) {
        return 0;
    }
    size_t j = i + 1;
    while (j < b->len && (s[j] == ' ' || s[j] == '\t')) {
        j++;
    }
    size_t start = j;
    size_t end;
    if (j < b->len && (s[j] == '"' || s[j] == '\'')) {
        char q = s[j];
        start = j + 1;
        end = start;
        while (end < b->len && s[end] != q) {
            end += (s[end] == '\\' && end + 1 < b->len) ? 2 : 1;
        }
        if (end > b->len) {
            end = b->len;
        }
    } else {
        end = start;
        while (end < b->len && !is_space(s[end]) && !strchr("&;,)]}>\"'", s[end])) {
            end++;
        }
        /* "Authorization: Bearer abc": the scheme word alone is not the secret. */
        static const char *const schemes[] = {"bearer", "basic", "token", "digest", "negotiate"};
        for (size_t m = 0; m < sizeof(schemes) / sizeof(schemes[0]); m++) {
            size_t sl = strlen(schemes[m]);
            if (end - start == sl && strncasecmp(s + start, schemes[m], sl) == 0 && end < b->len &&
                s[end] == ' ') {
                size_t t = end;
                while (t < b->len && s[t] == ' ') {
                    t++;
                }
                size_t te = t;
                while (te < b->len && !is_space(s[te]) && !strchr("&;,)]}>\"'", s[te])) {
                    te++;
                }
                if (te > t) {
                    start = t;
                    end = te;
                }
                break;
            }
        }
    }
    if (end == start) {
        return 0;
    }
    mask_value(b, rules, start, end);
    return end;
}

static void scan(builder_t *b, const col_scrub_rules_t *rules)
{
    const char *s = b->in;
    size_t n = b->len;
    size_t i = 0;
    while (i < n && !b->oom && !b->changed) {
        char c = s[i];
        bool word_start = i == 0 || !is_word(s[i - 1]);
        size_t m;
        if (c == '-' && rules->pem && (m = match_pem(s + i, n - i)) > 0) {
            replace(b, i, i + m, "[Filtered]", COL_SCRUB_PEM_KEY);
            i += m;
            continue;
        }
        if (word_start && rules->bearer && (c == 'b' || c == 'B') &&
            starts_with_ci(s + i, n - i, "bearer") && i + 6 < n && is_space(s[i + 6])) {
            size_t t = i + 6;
            while (t < n && (s[t] == ' ' || s[t] == '\t')) {
                t++;
            }
            size_t te = t;
            while (te < n && is_token_char(s[te])) {
                te++;
            }
            if (te - t >= 8 && (te == n || !is_word(s[te]))) {
                replace(b, t, te, "[Filtered]", COL_SCRUB_BEARER);
                i = te;
                continue;
            }
        }
        if (c == ':' && i + 2 < n && s[i + 1] == '/' && s[i + 2] == '/') {
            size_t a = i + 3;
            size_t at = 0;
            size_t colon = 0;
            while (a < n && !is_space(s[a]) && !strchr("/?#\"'<>", s[a])) {
                if (s[a] == '@') {
                    at = a;
                } else if (s[a] == ':' && !at && !colon) {
                    colon = a;
                }
                a++;
            }
            if (rules->url_credentials && at && colon && colon < at && colon + 1 < at) {
                replace(b, colon + 1, at, "[Filtered]", COL_SCRUB_URL_CREDENTIALS);
                i = at + 1;
                continue;
            }
            if (at) {
                i = at + 1; /* a user name alone: not an e-mail address either */
                continue;
            }
        }
        if ((c == '=' || c == ':') && rules->n_secret > 0 && (m = scrub_pair(b, rules, i)) > 0) {
            i = m;
            continue;
        }
        if (c == '@' && rules->emails != ACT_OFF) {
            size_t k = i;
            while (k > b->copied && i - k <= 64 &&
                   (is_alnum(s[k - 1]) || strchr("._%+-", s[k - 1]))) {
                k--;
            }
            size_t d = domain_len(s + i + 1, n - i - 1);
            if (k < i && i - k <= 64 && d > 0 && (i + 1 + d == n || !is_word(s[i + 1 + d]))) {
                size_t end = i + 1 + d;
                if (rules->emails == ACT_HASH) {
                    char repl[40];
                    hashed_label("email", s + k, end - k, b->seed, repl, sizeof(repl));
                    replace(b, k, end, repl, COL_SCRUB_EMAIL);
                } else {
                    replace(b, k, end, "[email]", COL_SCRUB_EMAIL);
                }
                i = end;
                continue;
            }
        }
        if (word_start && is_digit(c) && rules->credit_cards &&
            (m = match_card(s + i, n - i)) > 0) {
            replace(b, i, i + m, "[creditcard]", COL_SCRUB_CREDIT_CARD);
            i += m;
            continue;
        }
        /* Not inside a dotted run: "1.2.3.4.5" is a version, and so is its tail. */
        if (word_start && rules->ips != ACT_OFF && (is_hex(c) || c == ':') &&
            (i == 0 || s[i - 1] != '.')) {
            m = is_digit(c) ? match_ipv4(s + i, n - i) : 0;
            if (m == 0) {
                m = match_ipv6(s + i, n - i);
            }
            if (m > 0) {
                if (rules->ips == ACT_HASH) {
                    char repl[40];
                    hashed_label("ip", s + i, m, b->seed, repl, sizeof(repl));
                    replace(b, i, i + m, repl, COL_SCRUB_IP);
                } else {
                    replace(b, i, i + m, "[ip]", COL_SCRUB_IP);
                }
                i += m;
                continue;
            }
        }
        /* Skip the rest of a word at once: no rule starts inside one but at '=', ':', '@'
         * and '-', which are not word bytes. */
        if (is_word(c)) {
            size_t j = i + 1;
            while (j < n && is_word(s[j])) {
                j++;
            }
            i = j;
        } else {
            i++;
        }
    }
}

/* Scrubs [text, text+len); *out is text or a new arena string. */
static int scrub_span(const col_scrub_rules_t *rules, const char *text, size_t len,
                      col_arena_t *arena, char **out, col_scrub_stats_t *stats)
{
    builder_t b = {.in = text, .len = len, .stats = stats, .seed = rules->seed};
    *out = (char *)text;
    scan(&b, rules);
    if (b.oom) {
        free(b.out);
        return TC_ENOMEM;
    }
    if (!b.out) {
        return 0;
    }
    out_put(&b, text + b.copied, len - b.copied);
    if (b.oom) {
        free(b.out);
        return TC_ENOMEM;
    }
    char *copy = col_arena_strndup(arena, b.out, b.olen);
    free(b.out);
    if (!copy) {
        return TC_ENOMEM;
    }
    *out = copy;
    return 0;
}

int col_scrub_text(const col_scrub_rules_t *rules, const char *text, col_arena_t *arena, char **out,
                   col_scrub_stats_t *stats)
{
    assert(rules && text && arena && out && stats);
    return scrub_span(rules, text, strlen(text), arena, out, stats);
}

/* ---- events ---- */

static int scrub_string(const col_scrub_rules_t *rules, char **field, col_arena_t *arena,
                        col_scrub_stats_t *stats)
{
    if (!*field || !**field) {
        return 0;
    }
    char *out;
    int rc = col_scrub_text(rules, *field, arena, &out, stats);
    if (rc == 0) {
        *field = out;
    }
    return rc;
}

/*
 * A value under a secret key: masked, hashed or marked for removal (returns 1 then). An
 * empty value stays as it is.
 */
static int scrub_secret_value(const col_scrub_rules_t *rules, char **value, col_arena_t *arena,
                              col_scrub_stats_t *stats)
{
    if (rules->secrets == ACT_REMOVE) {
        stats->counts[COL_SCRUB_SECRET_KEY]++;
        return 1;
    }
    if (!*value || !**value) {
        return 0;
    }
    char repl[40];
    if (rules->secrets == ACT_HASH) {
        hashed_label("hash", *value, strlen(*value), rules->seed, repl, sizeof(repl));
    } else {
        snprintf(repl, sizeof(repl), "[Filtered]");
    }
    char *copy = col_arena_strndup(arena, repl, strlen(repl));
    if (!copy) {
        return TC_ENOMEM;
    }
    *value = copy;
    stats->counts[COL_SCRUB_SECRET_KEY]++;
    return 0;
}

/* Tags and log fields share one shape: a key, a value, and an array that may shrink. */
#define SCRUB_PAIRS(entries, count)                                                                \
    do {                                                                                           \
        size_t kept_ = 0;                                                                          \
        for (size_t i_ = 0; i_ < (count); i_++) {                                                  \
            int rc_ = 0;                                                                           \
            if (col_scrub_key_is_secret(rules, (entries)[i_]->key)) {                              \
                rc_ = scrub_secret_value(rules, &(entries)[i_]->value, arena, stats);              \
            } else {                                                                               \
                rc_ = scrub_string(rules, &(entries)[i_]->value, arena, stats);                    \
            }                                                                                      \
            if (rc_ < 0) {                                                                         \
                return rc_;                                                                        \
            }                                                                                      \
            if (rc_ == 0) {                                                                        \
                (entries)[kept_++] = (entries)[i_];                                                \
            }                                                                                      \
        }                                                                                          \
        (count) = kept_;                                                                           \
    } while (0)

/* True when the whole of `s` is an e-mail or IP address the rules scrub. */
static bool is_scrubbed_identity(const col_scrub_rules_t *rules, const char *s, size_t n)
{
    if (rules->emails != ACT_OFF) {
        const char *at = memchr(s, '@', n);
        if (at && at > s && (size_t)(at - s) <= 64) {
            size_t d = domain_len(at + 1, n - (size_t)(at - s) - 1);
            if (d > 0 && at + 1 + d == s + n) {
                return true;
            }
        }
    }
    if (rules->ips != ACT_OFF) {
        if ((n > 0 && is_digit(s[0]) && match_ipv4(s, n) == n) || match_ipv6(s, n) == n) {
            return true;
        }
    }
    return false;
}

static int scrub_user_id(const col_scrub_rules_t *rules, Tocsin__V1__Event *ev, col_arena_t *arena,
                         col_scrub_stats_t *stats)
{
    if (!ev->user_id || !ev->user_id[0]) {
        return 0;
    }
    action_t act = rules->user_ids;
    if (act == ACT_KEEP && is_scrubbed_identity(rules, ev->user_id, strlen(ev->user_id))) {
        act = ACT_HASH;
    }
    if (act == ACT_KEEP) {
        return 0;
    }
    if (act == ACT_REMOVE) {
        ev->user_id = (char *)"";
        stats->counts[COL_SCRUB_USER_ID]++;
        return 0;
    }
    XXH128_hash_t h = XXH3_128bits_withSeed(ev->user_id, strlen(ev->user_id), rules->seed);
    char *hex = col_arena_alloc(arena, 33);
    if (!hex) {
        return TC_ENOMEM;
    }
    snprintf(hex, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    ev->user_id = hex;
    stats->counts[COL_SCRUB_USER_ID]++;
    return 0;
}

int col_scrub_event(const col_scrub_rules_t *rules, Tocsin__V1__Event *ev, col_arena_t *arena,
                    col_scrub_stats_t *stats)
{
    assert(rules && ev && arena && stats);
    int rc;
    SCRUB_PAIRS(ev->tags, ev->n_tags);
    if ((rc = scrub_user_id(rules, ev, arena, stats)) != 0) {
        return rc;
    }
    switch (ev->body_case) {
    case TOCSIN__V1__EVENT__BODY_ERROR:
        if (ev->error) {
            return scrub_string(rules, &ev->error->message, arena, stats);
        }
        return 0;
    case TOCSIN__V1__EVENT__BODY_LOG:
        if (ev->log) {
            SCRUB_PAIRS(ev->log->fields, ev->log->n_fields);
            return scrub_string(rules, &ev->log->message, arena, stats);
        }
        return 0;
    case TOCSIN__V1__EVENT__BODY_REQUEST:
        if (ev->request) {
            return scrub_string(rules, &ev->request->route, arena, stats);
        }
        return 0;
    default:
        return 0;
    }
}

/* ---- checks without changing anything: does an event need scrubbing at all? ---- */

bool col_scrub_span_clean(const col_scrub_rules_t *rules, const char *text, size_t len)
{
    assert(rules && (text || len == 0));
    if (len == 0) {
        return true;
    }
    col_scrub_stats_t ignored = {0};
    builder_t b = {.in = text, .len = len, .stats = &ignored, .seed = rules->seed, .dry = true};
    scan(&b, rules);
    return !b.changed;
}

bool col_scrub_pair_clean(const col_scrub_rules_t *rules, const char *key, size_t key_len,
                          const char *value, size_t value_len)
{
    assert(rules);
    if (key_is_secret(rules, key, key_len)) {
        return rules->secrets != ACT_REMOVE && value_len == 0;
    }
    return col_scrub_span_clean(rules, value, value_len);
}

bool col_scrub_user_id_clean(const col_scrub_rules_t *rules, const char *user_id, size_t len)
{
    assert(rules && (user_id || len == 0));
    if (len == 0) {
        return true;
    }
    if (rules->user_ids != ACT_KEEP) {
        return false;
    }
    return !is_scrubbed_identity(rules, user_id, len);
}
