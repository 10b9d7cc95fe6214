/*
 * alr_match.h — label matchers as Alertmanager has them: `name op value` with op one of
 * `=`, `!=`, `=~`, `!~`; regular expressions are POSIX extended and anchored at both ends.
 * Used by routes (which policy an alert goes to) and by silences. Pure.
 *
 * A label that is absent counts as the empty string, as in Alertmanager: `team=""` matches
 * alerts without a team, `team!~".+"` too.
 */
#ifndef ALR_MATCH_H
#define ALR_MATCH_H

#include <jansson.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#define ALR_MATCHERS_MAX 32
#define ALR_MATCH_VALUE_MAX 1024

typedef enum {
    ALR_MATCH_EQ = 0,
    ALR_MATCH_NE = 1,
    ALR_MATCH_RE = 2,
    ALR_MATCH_NRE = 3,
} alr_match_op_t;

typedef struct {
    char *name;
    alr_match_op_t op;
    char *value;
    regex_t re; /* compiled when op is RE or NRE */
} alr_matcher_t;

typedef struct {
    alr_matcher_t *items;
    size_t len;
} alr_matchers_t;

/* "=", "!=", "=~", "!~". */
const char *alr_match_op_name(alr_match_op_t op);

/* Parses an op name. Returns 0 or TC_EINVAL. */
int alr_match_op_parse(const char *s, alr_match_op_t *out);

/*
 * Appends one matcher (name, op, value are copied; a regex is compiled). Returns 0,
 * TC_EINVAL with `err` filled (bad label name, bad regex, value too long, too many
 * matchers), or TC_ENOMEM.
 */
int alr_matchers_add(alr_matchers_t *m, const char *name, alr_match_op_t op, const char *value,
                     char *err, size_t errlen);

/* Parses "name=value", "name!=value", "name=~re", "name!~re" (value may be in double
 * quotes) and appends it. Returns as alr_matchers_add. */
int alr_matchers_add_string(alr_matchers_t *m, const char *text, char *err, size_t errlen);

/* Frees every matcher; `m` is empty and reusable afterwards. */
void alr_matchers_fini(alr_matchers_t *m);

/* True when every matcher matches `labels` (a JSON object of strings). Empty: true. */
bool alr_matchers_match(const alr_matchers_t *m, const json_t *labels);

/* True when one matcher at least does not match the empty string (so the set cannot match
 * every alert by accident). */
bool alr_matchers_selective(const alr_matchers_t *m);

/* [{"name","op","value"}...]. New reference; NULL when out of memory. */
json_t *alr_matchers_json(const alr_matchers_t *m);

/* Reads the JSON form (objects, or strings as alr_matchers_add_string takes). Returns 0 or
 * TC_EINVAL / TC_ENOMEM with `err` filled. */
int alr_matchers_from_json(alr_matchers_t *m, const json_t *arr, char *err, size_t errlen);

/* True for a Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*. */
bool alr_label_name_ok(const char *s);

#endif
