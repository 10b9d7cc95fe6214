#include "tc_kafka.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

static int read_first_line(const char *path, char **out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return TC_ENOTFOUND;
    }
    char line[4096];
    int rc = TC_ENOTFOUND;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) {
            *out = strdup(line);
            rc = *out ? 0 : TC_ENOMEM;
        }
    }
    fclose(f);
    return rc;
}

int tc_kafka_bootstrap(const char *brokers, const char *brokers_file, int64_t wait_ms,
                       char **out)
{
    if (brokers && *brokers) {
        *out = strdup(brokers);
        return *out ? 0 : TC_ENOMEM;
    }
    if (!brokers_file || !*brokers_file) {
        return TC_EINVAL;
    }
    /* Saturate: a duration setting can hold waits whose microseconds overflow int64_t. */
    int64_t now = tc_mono_us();
    int64_t deadline = wait_ms <= 0 ? now
                       : wait_ms >= (INT64_MAX - now) / 1000 ? INT64_MAX
                                                             : now + wait_ms * 1000;
    for (;;) {
        int rc = read_first_line(brokers_file, out);
        if (rc != TC_ENOTFOUND) {
            return rc;
        }
        if (tc_mono_us() >= deadline) {
            return TC_ETIMEDOUT;
        }
        usleep(50 * 1000);
    }
}

static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    tc_log_level_t l = level <= 3 ? TC_LOG_ERROR : (level <= 5 ? TC_LOG_WARN : TC_LOG_INFO);
    if (level >= 7) {
        l = TC_LOG_DEBUG;
    }
    tc_logj(l, "kafka.log", json_pack("{s:s, s:s}", "client", rd_kafka_name(rk), "facility",
                                      fac),
            "%s", buf);
}

rd_kafka_conf_t *tc_kafka_conf_new(const char *bootstrap, const char *client_id,
                                   const tc_cfg_kvs_t *extra, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", client_id, err, errlen) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; extra && i < extra->len; i++) {
        char why[256];
        if (rd_kafka_conf_set(conf, extra->items[i].key, extra->items[i].value, why,
                              sizeof(why)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka.%s: %s", extra->items[i].key, why);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

int tc_kafka_conf_set_default(rd_kafka_conf_t *conf, const tc_cfg_kvs_t *extra,
                              const char *name, const char *value, char *err, size_t errlen)
{
    if (extra && tc_cfg_kvs_get(extra, name)) {
        return 0;
    }
    if (rd_kafka_conf_set(conf, name, value, err, errlen) != RD_KAFKA_CONF_OK) {
        return TC_EINVAL;
    }
    return 0;
}
