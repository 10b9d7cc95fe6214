/*
 * Unit tests for tools/ctl/ctl_lag's pure part: summing a group's lag over partitions
 * (committed, without a commit, empty, ahead of a truncated log), the JSON and the table;
 * and that a cluster nobody answers at is reported as unreachable within the time-out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl_lag.h"
#include "tc_error.h"

static ctl_lag_t fresh(void)
{
    ctl_lag_t l;
    memset(&l, 0, sizeof(l));
    l.lag = -1;
    snprintf(l.group, sizeof(l.group), "tocsin-aggregator");
    snprintf(l.topic, sizeof(l.topic), "tocsin.events");
    return l;
}

static void test_sums(void **state)
{
    (void)state;
    ctl_lag_t l = fresh();
    ctl_lag_add_partition(&l, 100, 0, 150); /* 50 behind */
    ctl_lag_add_partition(&l, 70, 0, 70);   /* caught up */
    ctl_lag_add_partition(&l, -1, 0, 0);    /* empty, never committed */
    ctl_lag_add_partition(&l, -1, 10, 40);  /* 30 records nobody committed */
    ctl_lag_add_partition(&l, 90, 0, 80);   /* committed past a truncated end: not negative */
    assert_int_equal(l.partitions, 5);
    assert_int_equal(l.committed, 3);
    assert_int_equal(l.lag, 50);
    assert_int_equal(l.uncommitted, 30);
    assert_int_equal(l.end, 150 + 70 + 40 + 80);

    ctl_lag_t none = fresh();
    ctl_lag_add_partition(&none, -1, 0, 10);
    assert_int_equal(none.lag, -1); /* unknown, not 0 */

    ctl_lag_t both[2] = {l, none};
    snprintf(both[1].error, sizeof(both[1].error), "no offsets committed to Kafka");
    json_t *j = ctl_lag_json(both, 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "lag")), 50);
    assert_true(json_is_null(json_object_get(json_array_get(j, 1), "lag")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "error")),
                        "no offsets committed to Kafka");
    json_decref(j);
    char *text = ctl_lag_render(both, 2, 0);
    assert_non_null(strstr(text, "tocsin-aggregator  tocsin.events           5          3   50"));
    assert_non_null(strstr(text, "-  no offsets committed to Kafka"));
    free(text);
}

static void test_nobody_answers(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd); /* nothing listens there now */
    char bootstrap[64], err[512] = "";
    snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    static const char *const topics[] = {"tocsin.events"};
    ctl_lag_t out[1];
    assert_int_equal(ctl_lag_query(bootstrap, NULL, "g", topics, 1, 500, out, err, sizeof(err)),
                     TC_EUNAVAIL);
    assert_non_null(strstr(err, "no Kafka broker answered"));
    /* A refused librdkafka setting is a usage error. */
    tc_cfg_kv_t kv = {"no.such.setting", "1"};
    tc_cfg_kvs_t kvs = {&kv, 1};
    assert_int_equal(ctl_lag_query(bootstrap, &kvs, "g", topics, 1, 500, out, err, sizeof(err)),
                     TC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_nobody_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
