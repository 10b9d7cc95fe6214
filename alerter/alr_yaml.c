#include "alr_yaml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/*
 * The tree is built from libyaml's events with an explicit stack, so a deeply nested
 * document cannot exhaust the C stack; the depth and the node count are bounded.
 */

typedef struct {
    yaml_parser_t parser;
    char *err;
    size_t errlen;
    int *err_line;
    size_t nodes;
} builder_t;

static void set_err(builder_t *b, int line, const char *msg)
{
    *b->err_line = line;
    snprintf(b->err, b->errlen, "%s", msg);
}

void alr_yaml_free(alr_yaml_t *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->len; i++) {
        alr_yaml_free(n->items[i]);
        if (n->keys) {
            free(n->keys[i]);
        }
    }
    free(n->items);
    free(n->keys);
    free(n->key_lines);
    free(n->str);
    free(n);
}

static alr_yaml_t *node_new(builder_t *b, alr_yaml_kind_t kind, int line)
{
    if (++b->nodes > ALR_YAML_NODES_MAX) {
        set_err(b, line, "document too large (too many nodes)");
        return NULL;
    }
    alr_yaml_t *n = calloc(1, sizeof(*n));
    if (!n) {
        set_err(b, line, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = line;
    return n;
}

/* Appends `child` to `parent` (a SEQ, or a MAP whose pending key is `key`). */
static int append(builder_t *b, alr_yaml_t *parent, char *key, int key_line, alr_yaml_t *child)
{
    if (parent->len == parent->cap) {
        size_t next = parent->cap ? parent->cap * 2 : 4;
        alr_yaml_t **items = realloc(parent->items, next * sizeof(*items));
        if (!items) {
            set_err(b, child->line, "out of memory");
            return -1;
        }
        parent->items = items;
        if (parent->kind == ALR_YAML_MAP) {
            char **keys = realloc(parent->keys, next * sizeof(*keys));
            if (!keys) {
                set_err(b, child->line, "out of memory");
                return -1;
            }
            parent->keys = keys;
            int *kl = realloc(parent->key_lines, next * sizeof(*kl));
            if (!kl) {
                set_err(b, child->line, "out of memory");
                return -1;
            }
            parent->key_lines = kl;
        }
        parent->cap = next;
    }
    parent->items[parent->len] = child;
    if (parent->kind == ALR_YAML_MAP) {
        parent->keys[parent->len] = key;
        parent->key_lines[parent->len] = key_line;
    }
    parent->len++;
    return 0;
}

typedef struct {
    alr_yaml_t *node;
    char *pending_key; /* MAP: key read, value not yet */
    int pending_line;
} frame_t;

alr_yaml_t *alr_yaml_parse(const char *data, size_t len, int *err_line, char *err,
                           size_t errlen)
{
    builder_t b = {.err = err, .errlen = errlen, .err_line = err_line};
    *err_line = 0;
    err[0] = '\0';
    if (!yaml_parser_initialize(&b.parser)) {
        set_err(&b, 0, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)data, len);
    frame_t stack[ALR_YAML_DEPTH_MAX + 1];
    int depth = 0;
    alr_yaml_t *root = NULL;
    bool done = false, failed = false;
    while (!done && !failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&b.parser, &ev)) {
            char msg[256];
            snprintf(msg, sizeof(msg), "YAML syntax error: %s%s%s",
                     b.parser.problem ? b.parser.problem : "unknown",
                     b.parser.context ? " " : "", b.parser.context ? b.parser.context : "");
            set_err(&b, (int)b.parser.problem_mark.line + 1, msg);
            failed = true;
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        alr_yaml_t *node = NULL;
        switch (ev.type) {
        case YAML_ALIAS_EVENT:
            set_err(&b, line, "YAML aliases are not supported in rule files");
            failed = true;
            break;
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_SCALAR_EVENT:
            if (ev.data.scalar.anchor) {
                set_err(&b, line, "YAML anchors are not supported in rule files");
                failed = true;
                break;
            }
            if (depth > 0 && stack[depth - 1].node->kind == ALR_YAML_MAP &&
                !stack[depth - 1].pending_key) {
                /* A key. */
                if (strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length) {
                    set_err(&b, line, "a key holds a NUL byte");
                    failed = true;
                    break;
                }
                alr_yaml_t *map = stack[depth - 1].node;
                for (size_t i = 0; i < map->len; i++) {
                    if (strcmp(map->keys[i], (const char *)ev.data.scalar.value) == 0) {
                        char msg[300];
                        snprintf(msg, sizeof(msg), "key \"%.200s\" appears twice (first on line %d)",
                                 (const char *)ev.data.scalar.value, map->key_lines[i]);
                        set_err(&b, line, msg);
                        failed = true;
                        break;
                    }
                }
                if (failed) {
                    break;
                }
                stack[depth - 1].pending_key = strdup((const char *)ev.data.scalar.value);
                stack[depth - 1].pending_line = line;
                if (!stack[depth - 1].pending_key) {
                    set_err(&b, line, "out of memory");
                    failed = true;
                }
                break;
            }
            node = node_new(&b, ALR_YAML_SCALAR, line);
            if (!node) {
                failed = true;
                break;
            }
            if (strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length) {
                set_err(&b, line, "a value holds a NUL byte");
                free(node);
                node = NULL;
                failed = true;
                break;
            }
            node->str = strdup((const char *)ev.data.scalar.value);
            node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            if (!node->str) {
                set_err(&b, line, "out of memory");
                free(node);
                node = NULL;
                failed = true;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            const yaml_char_t *anchor = ev.type == YAML_SEQUENCE_START_EVENT
                                            ? ev.data.sequence_start.anchor
                                            : ev.data.mapping_start.anchor;
            if (anchor) {
                set_err(&b, line, "YAML anchors are not supported in rule files");
                failed = true;
                break;
            }
            if (depth > 0 && stack[depth - 1].node->kind == ALR_YAML_MAP &&
                !stack[depth - 1].pending_key) {
                set_err(&b, line, "keys must be plain strings, not lists or maps");
                failed = true;
                break;
            }
            if (depth >= ALR_YAML_DEPTH_MAX) {
                set_err(&b, line, "nested too deeply");
                failed = true;
                break;
            }
            alr_yaml_t *n = node_new(&b, ev.type == YAML_SEQUENCE_START_EVENT ? ALR_YAML_SEQ
                                                                              : ALR_YAML_MAP,
                                     line);
            if (!n) {
                failed = true;
                break;
            }
            if (depth == 0) {
                root = n;
            } else {
                frame_t *f = &stack[depth - 1];
                if (append(&b, f->node, f->pending_key, f->pending_line, n) != 0) {
                    alr_yaml_free(n);
                    failed = true;
                    break;
                }
                f->pending_key = NULL;
            }
            stack[depth].node = n;
            stack[depth].pending_key = NULL;
            depth++;
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        if (node) {
            if (depth == 0) {
                root = node; /* a document that is one scalar */
            } else {
                frame_t *f = &stack[depth - 1];
                if (append(&b, f->node, f->pending_key, f->pending_line, node) != 0) {
                    alr_yaml_free(node);
                    failed = true;
                } else {
                    f->pending_key = NULL;
                }
            }
        }
        yaml_event_delete(&ev);
    }
    for (int i = 0; i < depth; i++) {
        free(stack[i].pending_key);
    }
    yaml_parser_delete(&b.parser);
    if (failed) {
        alr_yaml_free(root);
        return NULL;
    }
    return root;
}

const alr_yaml_t *alr_yaml_get(const alr_yaml_t *map, const char *key)
{
    if (!map || map->kind != ALR_YAML_MAP) {
        return NULL;
    }
    for (size_t i = 0; i < map->len; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            return map->items[i];
        }
    }
    return NULL;
}

int alr_yaml_key_line(const alr_yaml_t *map, const char *key)
{
    if (!map) {
        return 0;
    }
    for (size_t i = 0; map->kind == ALR_YAML_MAP && i < map->len; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            return map->key_lines[i];
        }
    }
    return map->line;
}

bool alr_yaml_is_null(const alr_yaml_t *n)
{
    return n && n->kind == ALR_YAML_SCALAR && n->plain &&
           (n->str[0] == '\0' || strcmp(n->str, "null") == 0 || strcmp(n->str, "~") == 0);
}
