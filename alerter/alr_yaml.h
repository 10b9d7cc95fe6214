/*
 * alr_yaml.h — a YAML document as a small tree that remembers the line of every node,
 * built with libyaml's event parser. The rule loader walks it to validate a rule file and
 * names the exact line of every error.
 *
 * Limits: anchors and aliases are refused (a rule file has no use for them and they open
 * the door to "billion laughs" documents); nesting deeper than ALR_YAML_DEPTH_MAX and more
 * than ALR_YAML_NODES_MAX nodes are refused. Only the first document of a stream is read.
 */
#ifndef ALR_YAML_H
#define ALR_YAML_H

#include <stdbool.h>
#include <stddef.h>

#define ALR_YAML_DEPTH_MAX 32
#define ALR_YAML_NODES_MAX 2000000

typedef enum {
    ALR_YAML_SCALAR = 0,
    ALR_YAML_SEQ = 1,
    ALR_YAML_MAP = 2,
} alr_yaml_kind_t;

typedef struct alr_yaml alr_yaml_t;

struct alr_yaml {
    alr_yaml_kind_t kind;
    int line;            /* 1-based */
    char *str;           /* SCALAR: the value (NUL-terminated) */
    bool plain;          /* SCALAR: written without quotes (so `null`, `~` mean nothing) */
    /* SEQ: items; MAP: keys[i] -> items[i] (keys are scalars' text) */
    alr_yaml_t **items;
    char **keys;
    int *key_lines;
    size_t len, cap;
};

/*
 * Parses `len` bytes. Returns the root node (NULL for an empty document, with err "") or
 * NULL with `err` holding "LINE: reason" ... as "line N: reason" text when the document is
 * malformed. The caller frees the tree with alr_yaml_free.
 */
alr_yaml_t *alr_yaml_parse(const char *data, size_t len, int *err_line, char *err,
                           size_t errlen);

/* Frees a tree (NULL is fine). */
void alr_yaml_free(alr_yaml_t *node);

/* MAP: the value of `key`, or NULL. */
const alr_yaml_t *alr_yaml_get(const alr_yaml_t *map, const char *key);

/* MAP: the line of `key`, or the map's line when the key is absent. */
int alr_yaml_key_line(const alr_yaml_t *map, const char *key);

/* True for a plain scalar `null`, `~` or empty. */
bool alr_yaml_is_null(const alr_yaml_t *node);

#endif
