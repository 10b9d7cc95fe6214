/*
 * tc_kafka.h — what every daemon does the same way with librdkafka: finding the brokers,
 * building a configuration with pass-through settings, and logging through tc_log.
 */
#ifndef TC_KAFKA_H
#define TC_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

#include "tc_config.h"

/*
 * Resolves the bootstrap servers: `brokers` when not empty, otherwise the first line of
 * `brokers_file` (as written by tocsin-bus), waiting up to `wait_ms` for that file to
 * appear. Returns 0 with *out set (the caller frees it), TC_EINVAL when neither is given,
 * or TC_ETIMEDOUT.
 */
int tc_kafka_bootstrap(const char *brokers, const char *brokers_file, int64_t wait_ms,
                       char **out);

/*
 * A configuration with bootstrap.servers, client.id, a logger writing through tc_log, and
 * then every pass-through setting in `extra` (librdkafka names: "security.protocol", ...),
 * which win over the defaults the caller sets afterwards only if the caller checks them
 * (use tc_kafka_conf_set_default). Returns NULL with `err` filled when a setting is refused.
 */
rd_kafka_conf_t *tc_kafka_conf_new(const char *bootstrap, const char *client_id,
                                   const tc_cfg_kvs_t *extra, char *err, size_t errlen);

/* Sets `name` to `value` unless the pass-through list `extra` sets it. Returns 0 or
 * TC_EINVAL with `err` filled. */
int tc_kafka_conf_set_default(rd_kafka_conf_t *conf, const tc_cfg_kvs_t *extra,
                              const char *name, const char *value, char *err, size_t errlen);

#endif
