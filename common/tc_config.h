/*
 * tc_config.h — every daemon's configuration, declared once as a table.
 *
 * A daemon describes its settings in a tc_cfg_entry_t array (key, type, default, offset
 * into its config struct, description), ending with TC_CFG_END. Values come from, in
 * order: the defaults, one config file (`--config FILE`), and `--set key=value` options.
 * Keys not in the table are errors. `--help-config` prints the table.
 *
 * File format: one `key = value` per line; `#` starts a comment line; blank lines are
 * ignored; a value may be wrapped in double quotes to keep leading or trailing spaces.
 * Lines are at most TC_CFG_LINE_MAX bytes.
 */
#ifndef TC_CONFIG_H
#define TC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TC_CFG_LINE_MAX 4096

typedef enum {
    TC_CFG_STRING,      /* char * (owned by the config; freed by tc_config_free) */
    TC_CFG_INT,         /* int64_t, bounded by min/max when they differ */
    TC_CFG_DOUBLE,      /* double */
    TC_CFG_BOOL,        /* bool: true/false, yes/no, on/off, 1/0 */
    TC_CFG_DURATION,    /* int64_t milliseconds: "250ms", "10s", "5m", "1h" */
    TC_CFG_SIZE,        /* uint64_t bytes: "4096", "64KiB", "1GiB" */
    TC_CFG_PASSTHROUGH, /* tc_cfg_kvs_t: every key starting with `key` (a prefix such as
                           "kafka."), stored with the prefix removed */
} tc_cfg_type_t;

typedef struct {
    char *key;
    char *value;
} tc_cfg_kv_t;

/* Key/value pairs collected by a TC_CFG_PASSTHROUGH entry, in the order they were set;
 * a key set twice keeps its last value. */
typedef struct {
    tc_cfg_kv_t *items;
    size_t len;
} tc_cfg_kvs_t;

typedef struct {
    const char *key;
    tc_cfg_type_t type;
    const char *def;  /* default, written as in a config file; NULL: empty string / 0 */
    size_t offset;    /* offsetof(the daemon's struct, field) */
    const char *help; /* one line for --help-config */
    int64_t min;      /* TC_CFG_INT only: inclusive bounds, checked when min < max */
    int64_t max;
} tc_cfg_entry_t;

#define TC_CFG_END {NULL, TC_CFG_STRING, NULL, 0, NULL, 0, 0}

/* Sets every entry of `cfg` to its default. Returns 0, or TC_EINVAL with `err` filled
 * when a default does not parse (a programmer error, reported rather than asserted).
 * Either way `cfg` may then be passed to tc_config_free. */
int tc_config_defaults(const tc_cfg_entry_t *table, void *cfg, char *err, size_t errlen);

/* Sets one key from text. Returns 0, TC_EUNKNOWNKEY, or TC_EINVAL with `err` filled. */
int tc_config_set(const tc_cfg_entry_t *table, void *cfg, const char *key, const char *value,
                  char *err, size_t errlen);

/* Reads a config file. Stops at the first bad line and returns its error (TC_EIO,
 * TC_EPARSE, TC_EUNKNOWNKEY, TC_EINVAL, TC_ETOOBIG) with `err` naming file and line. */
int tc_config_load_file(const tc_cfg_entry_t *table, void *cfg, const char *path, char *err,
                        size_t errlen);

/* Frees the strings and pass-through lists held by `cfg`; the struct itself stays. */
void tc_config_free(const tc_cfg_entry_t *table, void *cfg);

/* Prints the table: key, type, default and description, one entry per line. */
void tc_config_help(const tc_cfg_entry_t *table, FILE *out);

/* Prints the effective configuration as a config file would hold it. */
void tc_config_print(const tc_cfg_entry_t *table, const void *cfg, FILE *out);

/*
 * Handles a daemon's command line: --config FILE (or -c), --set KEY=VALUE (repeatable),
 * --help-config, --print-config, --version, --help. `usage` is printed by --help.
 * Returns 0 to go on, 1 when a help or version text was printed (exit 0), or a negative
 * code after printing the error to stderr (exit 2). On 0 the caller owns `cfg` and frees
 * it with tc_config_free.
 */
int tc_config_cli(const tc_cfg_entry_t *table, void *cfg, int argc, char **argv,
                  const char *usage);

/* Looks up a key in a pass-through list; NULL when absent. */
const char *tc_cfg_kvs_get(const tc_cfg_kvs_t *kvs, const char *key);

#endif
