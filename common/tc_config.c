#include "tc_config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_util.h"

#define FIELD(cfg, e, type) ((type *)((char *)(cfg) + (e)->offset))

static const char *type_names[] = {"string", "int", "double", "bool",
                                   "duration", "size", "prefix"};

/* Exact keys win over pass-through prefixes, so "kafka.x" can be a key of its own. */
static const tc_cfg_entry_t *find_entry(const tc_cfg_entry_t *table, const char *key)
{
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        if (e->type != TC_CFG_PASSTHROUGH && strcmp(e->key, key) == 0) {
            return e;
        }
    }
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        size_t plen = strlen(e->key);
        if (e->type == TC_CFG_PASSTHROUGH && strncmp(key, e->key, plen) == 0 &&
            key[plen] != '\0') {
            return e;
        }
    }
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1")) {
        *out = true;
    } else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") ||
               !strcmp(v, "0")) {
        *out = false;
    } else {
        return TC_EINVAL;
    }
    return 0;
}

static int kvs_set(tc_cfg_kvs_t *kvs, const char *key, const char *value)
{
    for (size_t i = 0; i < kvs->len; i++) {
        if (strcmp(kvs->items[i].key, key) == 0) {
            char *v = strdup(value);
            if (!v) {
                return TC_ENOMEM;
            }
            free(kvs->items[i].value);
            kvs->items[i].value = v;
            return 0;
        }
    }
    tc_cfg_kv_t *items = realloc(kvs->items, (kvs->len + 1) * sizeof(*items));
    if (!items) {
        return TC_ENOMEM;
    }
    kvs->items = items;
    items[kvs->len].key = strdup(key);
    items[kvs->len].value = strdup(value);
    if (!items[kvs->len].key || !items[kvs->len].value) {
        free(items[kvs->len].key);
        free(items[kvs->len].value);
        return TC_ENOMEM;
    }
    kvs->len++;
    return 0;
}

static int set_entry(const tc_cfg_entry_t *e, void *cfg, const char *key, const char *v,
                     char *err, size_t errlen)
{
    switch (e->type) {
    case TC_CFG_STRING: {
        char *copy = strdup(v);
        if (!copy) {
            return TC_ENOMEM;
        }
        char **field = FIELD(cfg, e, char *);
        free(*field);
        *field = copy;
        return 0;
    }
    case TC_CFG_INT: {
        errno = 0;
        char *end;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end != '\0') {
            snprintf(err, errlen, "%s: \"%s\" is not an integer", e->key, v);
            return TC_EINVAL;
        }
        if (e->min < e->max && (n < e->min || n > e->max)) {
            snprintf(err, errlen, "%s: %lld is outside %" PRId64 "..%" PRId64, e->key, n,
                     e->min, e->max);
            return TC_EINVAL;
        }
        *FIELD(cfg, e, int64_t) = n;
        return 0;
    }
    case TC_CFG_DOUBLE: {
        errno = 0;
        char *end;
        double d = strtod(v, &end);
        if (errno || end == v || *end != '\0' || !isfinite(d)) {
            snprintf(err, errlen, "%s: \"%s\" is not a number", e->key, v);
            return TC_EINVAL;
        }
        *FIELD(cfg, e, double) = d;
        return 0;
    }
    case TC_CFG_BOOL:
        if (parse_bool(v, FIELD(cfg, e, bool)) != 0) {
            snprintf(err, errlen, "%s: \"%s\" is not true or false", e->key, v);
            return TC_EINVAL;
        }
        return 0;
    case TC_CFG_DURATION:
        if (tc_duration_parse(v, FIELD(cfg, e, int64_t)) != 0) {
            snprintf(err, errlen, "%s: \"%s\" is not a duration (like 500ms, 10s, 5m, 1h)",
                     e->key, v);
            return TC_EINVAL;
        }
        return 0;
    case TC_CFG_SIZE:
        if (tc_size_parse(v, FIELD(cfg, e, uint64_t)) != 0) {
            snprintf(err, errlen, "%s: \"%s\" is not a size (like 4096, 64KiB, 1GiB)", e->key,
                     v);
            return TC_EINVAL;
        }
        return 0;
    case TC_CFG_PASSTHROUGH:
        return kvs_set(FIELD(cfg, e, tc_cfg_kvs_t), key + strlen(e->key), v);
    }
    return TC_EINVAL;
}

int tc_config_set(const tc_cfg_entry_t *table, void *cfg, const char *key, const char *value,
                  char *err, size_t errlen)
{
    const tc_cfg_entry_t *e = find_entry(table, key);
    if (!e) {
        snprintf(err, errlen, "unknown key \"%s\" (see --help-config)", key);
        return TC_EUNKNOWNKEY;
    }
    return set_entry(e, cfg, key, value, err, errlen);
}

int tc_config_defaults(const tc_cfg_entry_t *table, void *cfg, char *err, size_t errlen)
{
    /* Every pointer first, so that tc_config_free is safe even when a default below fails
     * and leaves later entries unset. */
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        if (e->type == TC_CFG_PASSTHROUGH) {
            FIELD(cfg, e, tc_cfg_kvs_t)->items = NULL;
            FIELD(cfg, e, tc_cfg_kvs_t)->len = 0;
        } else if (e->type == TC_CFG_STRING) {
            *FIELD(cfg, e, char *) = NULL;
        }
    }
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        if (e->type == TC_CFG_PASSTHROUGH) {
            continue;
        }
        const char *def = e->def;
        if (!def) {
            def = e->type == TC_CFG_STRING ? "" : (e->type == TC_CFG_BOOL ? "false" : "0");
        }
        int rc = set_entry(e, cfg, e->key, def, err, errlen);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                     s[n - 1] == '\n')) {
        s[--n] = '\0';
    }
    return s;
}

int tc_config_load_file(const tc_cfg_entry_t *table, void *cfg, const char *path, char *err,
                        size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return TC_EIO;
    }
    char line[TC_CFG_LINE_MAX + 2];
    int lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        /* The limit is on the line's bytes; its newline does not count, so a line of
         * TC_CFG_LINE_MAX bytes is read the same in the middle of the file and at its end. */
        size_t len = strcspn(line, "\n");
        if (len > TC_CFG_LINE_MAX) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lineno,
                     TC_CFG_LINE_MAX);
            rc = TC_ETOOBIG;
            goto out;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#') {
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected \"key = value\"", path, lineno);
            rc = TC_EPARSE;
            goto out;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        char why[512];
        rc = tc_config_set(table, cfg, key, value, why, sizeof(why));
        if (rc != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = TC_EIO;
    }
out:
    fclose(f);
    return rc;
}

void tc_config_free(const tc_cfg_entry_t *table, void *cfg)
{
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        if (e->type == TC_CFG_STRING) {
            char **field = FIELD(cfg, e, char *);
            free(*field);
            *field = NULL;
        } else if (e->type == TC_CFG_PASSTHROUGH) {
            tc_cfg_kvs_t *kvs = FIELD(cfg, e, tc_cfg_kvs_t);
            for (size_t i = 0; i < kvs->len; i++) {
                free(kvs->items[i].key);
                free(kvs->items[i].value);
            }
            free(kvs->items);
            kvs->items = NULL;
            kvs->len = 0;
        }
    }
}

void tc_config_help(const tc_cfg_entry_t *table, FILE *out)
{
    fprintf(out, "%-34s %-9s %-24s %s\n", "KEY", "TYPE", "DEFAULT", "DESCRIPTION");
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        char key[128];
        snprintf(key, sizeof(key), "%s%s", e->key, e->type == TC_CFG_PASSTHROUGH ? "*" : "");
        fprintf(out, "%-34s %-9s %-24s %s\n", key, type_names[e->type],
                e->def && *e->def ? e->def : "-", e->help ? e->help : "");
    }
}

/* The shortest of %.15g..%.17g that reads back as the same double, so that a printed
 * configuration loads back unchanged and 0.1 still prints as 0.1. */
static const char *format_double(double d, char buf[32])
{
    for (int prec = 15; prec < 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) {
            return buf;
        }
    }
    snprintf(buf, 32, "%.17g", d);
    return buf;
}

void tc_config_print(const tc_cfg_entry_t *table, const void *cfg, FILE *out)
{
    for (const tc_cfg_entry_t *e = table; e->key; e++) {
        const void *p = (const char *)cfg + e->offset;
        switch (e->type) {
        case TC_CFG_STRING: {
            const char *s = *(char *const *)p;
            fprintf(out, "%s = \"%s\"\n", e->key, s ? s : "");
            break;
        }
        case TC_CFG_INT:
            fprintf(out, "%s = %" PRId64 "\n", e->key, *(const int64_t *)p);
            break;
        case TC_CFG_DOUBLE: {
            char buf[32];
            fprintf(out, "%s = %s\n", e->key, format_double(*(const double *)p, buf));
            break;
        }
        case TC_CFG_BOOL:
            fprintf(out, "%s = %s\n", e->key, *(const bool *)p ? "true" : "false");
            break;
        case TC_CFG_DURATION: {
            char buf[32];
            tc_duration_format(*(const int64_t *)p, buf, sizeof(buf));
            fprintf(out, "%s = %s\n", e->key, buf);
            break;
        }
        case TC_CFG_SIZE:
            fprintf(out, "%s = %" PRIu64 "\n", e->key, *(const uint64_t *)p);
            break;
        case TC_CFG_PASSTHROUGH: {
            const tc_cfg_kvs_t *kvs = p;
            for (size_t i = 0; i < kvs->len; i++) {
                fprintf(out, "%s%s = \"%s\"\n", e->key, kvs->items[i].key,
                        kvs->items[i].value);
            }
            break;
        }
        }
    }
}

const char *tc_cfg_kvs_get(const tc_cfg_kvs_t *kvs, const char *key)
{
    for (size_t i = 0; i < kvs->len; i++) {
        if (strcmp(kvs->items[i].key, key) == 0) {
            return kvs->items[i].value;
        }
    }
    return NULL;
}

int tc_config_cli(const tc_cfg_entry_t *table, void *cfg, int argc, char **argv,
                  const char *usage)
{
    char err[1024];
    const char *config_path = NULL;
    bool print = false;
    int rc = tc_config_defaults(table, cfg, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "%s: bad default: %s\n", argv[0], err);
        goto fail;
    }
    /* First pass: options that print and exit, and the config file's path. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            fputs("\nOptions:\n"
                  "  -c, --config FILE     read settings from FILE (key = value lines)\n"
                  "  --set KEY=VALUE       override one setting (repeatable; wins over FILE)\n"
                  "  --help-config         list every setting with its default\n"
                  "  --print-config        print the effective settings and exit\n"
                  "  --version             print the version\n",
                  stdout);
            tc_config_free(table, cfg);
            return 1;
        }
        if (!strcmp(a, "--help-config")) {
            tc_config_help(table, stdout);
            tc_config_free(table, cfg);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("%s %s\n", argv[0], TOCSIN_VERSION);
            tc_config_free(table, cfg);
            return 1;
        }
        if (!strcmp(a, "--print-config")) {
            print = true;
        } else if (!strcmp(a, "--config") || !strcmp(a, "-c")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a file\n", argv[0], a);
                rc = TC_EINVAL;
                goto fail;
            }
            config_path = argv[++i];
        } else if (!strcmp(a, "--set")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: --set needs KEY=VALUE\n", argv[0]);
                rc = TC_EINVAL;
                goto fail;
            }
            i++;
        } else {
            fprintf(stderr, "%s: unknown option \"%s\" (see --help)\n", argv[0], a);
            rc = TC_EINVAL;
            goto fail;
        }
    }
    if (config_path) {
        rc = tc_config_load_file(table, cfg, config_path, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "%s: %s\n", argv[0], err);
            goto fail;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") != 0) {
            if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) {
                i++;
            }
            continue;
        }
        const char *kv = argv[++i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            fprintf(stderr, "%s: --set \"%s\": expected KEY=VALUE\n", argv[0], kv);
            rc = TC_EINVAL;
            goto fail;
        }
        char key[256];
        size_t klen = (size_t)(eq - kv);
        if (klen >= sizeof(key)) {
            fprintf(stderr, "%s: --set: key too long\n", argv[0]);
            rc = TC_ETOOBIG;
            goto fail;
        }
        memcpy(key, kv, klen);
        key[klen] = '\0';
        rc = tc_config_set(table, cfg, key, eq + 1, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "%s: --set: %s\n", argv[0], err);
            goto fail;
        }
    }
    if (print) {
        tc_config_print(table, cfg, stdout);
        tc_config_free(table, cfg);
        return 1;
    }
    return 0;
fail:
    tc_config_free(table, cfg);
    return rc;
}
