/*
 * Unit tests for common/tc_selfmon: the pure helpers (collector lists with "self", the
 * loopback form of a bound endpoint, czmq certificates, samples from Prometheus text),
 * a self-monitoring that is off, bad configurations refused at start, the events sent to a
 * real ZeroMQ ROUTER playing a collector (heartbeat, gauges from callbacks and from the
 * registry, the service, environment and instance tag of the naming convention, the
 * selfmon metrics following the acks), and the Kafka lag helper against librdkafka's mock
 * cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <zmq.h>

#include "tc_error.h"
#include "tc_log.h"
#include "tc_metrics.h"
#include "tc_selfmon.h"
#include "tc_util.h"
#include "tocsin/v1/transport.pb-c.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- collector lists ---- */

static void test_endpoints(void **state)
{
    static const struct {
        const char *list, *self, *want; /* want NULL: TC_EINVAL */
    } cases[] = {
        {"", NULL, ""},
        {"  ,  , ", NULL, ""},
        {"self", "tcp://127.0.0.1:7420", "tcp://127.0.0.1:7420"},
        {" self , tcp://10.0.0.2:7420", "tcp://127.0.0.1:9", "tcp://127.0.0.1:9,tcp://10.0.0.2:7420"},
        {"self,tcp://127.0.0.1:9", "tcp://127.0.0.1:9", "tcp://127.0.0.1:9"},
        {"tcp://a:1,tcp://a:1,ipc:///run/c", NULL, "tcp://a:1,ipc:///run/c"},
        {"self", NULL, NULL},
        {"self", "", NULL},
        {"udp://a:1", NULL, NULL},
        {"tcp://", NULL, NULL},
        {"a:7420", NULL, NULL},
        {"tcp://a b:1", NULL, NULL},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        char *out = NULL;
        int rc = tc_selfmon_endpoints(cases[i].list, cases[i].self, &out);
        if (!cases[i].want) {
            assert_int_equal(rc, TC_EINVAL);
            assert_null(out);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].want);
            free(out);
        }
    }
    assert_int_equal(tc_selfmon_endpoints("x", NULL, NULL), TC_EINVAL);
}

static void test_loopback(void **state)
{
    static const struct {
        const char *bound, *want;
    } cases[] = {
        {"tcp://0.0.0.0:7420", "tcp://127.0.0.1:7420"},
        {"tcp://*:7420", "tcp://127.0.0.1:7420"},
        {"tcp://[::]:7420", "tcp://[::1]:7420"},
        {"tcp://10.1.2.3:7420", "tcp://10.1.2.3:7420"},
        {"tcp://127.0.0.1:41234", "tcp://127.0.0.1:41234"},
        {"ipc:///run/tocsin/collector", "ipc:///run/tocsin/collector"},
        {"tcp://127.0.0.1:*", NULL},
        {"tcp://127.0.0.1", NULL},
        {"tcp://:7420", NULL},
        {"inproc://x", NULL},
        {"", NULL},
    };
    char out[64];
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int rc = tc_selfmon_loopback(cases[i].bound, out, sizeof(out));
        if (cases[i].want) {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].want);
        } else {
            assert_int_equal(rc, TC_EINVAL);
        }
    }
    char tiny[8];
    assert_int_equal(tc_selfmon_loopback("tcp://0.0.0.0:7420", tiny, sizeof(tiny)), TC_ETOOBIG);
}

/* ---- certificates ---- */

#define PUB "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define SEC "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"

static void test_cert_parse(void **state)
{
    const char *secret_cert = "#   ****  Generated on 2026-11-22 by CZMQ  ****\n"
                              "#   ZeroMQ CURVE **Secret** Certificate\n"
                              "metadata\n    name = \"tocsin-selfmon\"\n"
                              "curve\n    public-key = \"" PUB "\"\n"
                              "    secret-key = \"" SEC "\"\n";
    char pub[41], sec[41];
    assert_int_equal(tc_selfmon_cert_parse(secret_cert, strlen(secret_cert), pub, sec), 0);
    assert_string_equal(pub, PUB);
    assert_string_equal(sec, SEC);

    const char *public_cert = "curve\n    public-key = \"" PUB "\"\n";
    assert_int_equal(tc_selfmon_cert_parse(public_cert, strlen(public_cert), pub, NULL), 0);
    assert_string_equal(pub, PUB);
    assert_int_equal(tc_selfmon_cert_parse(public_cert, strlen(public_cert), pub, sec),
                     TC_ENOTFOUND);

    static const char *const bad[] = {
        "curve\n    public-key = \"short\"\n",
        "curve\n    public-key = \"" PUB "\n",             /* no closing quote */
        "curve\n    public-key = \"" PUB "x\"\n",          /* 41 characters */
        "curve\n    public-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf~\"\n", /* not Z85 */
    };
    for (size_t i = 0; i < N_ELEMS(bad); i++) {
        assert_int_equal(tc_selfmon_cert_parse(bad[i], strlen(bad[i]), pub, NULL), TC_EPARSE);
    }
    const char *none = "metadata\n    public-keys = \"" PUB "\"\n";
    assert_int_equal(tc_selfmon_cert_parse(none, strlen(none), pub, NULL), TC_ENOTFOUND);
    /* A bare value, and the length bound: text past `len` is not read. */
    const char *bare = "    public-key = " PUB "\n";
    assert_int_equal(tc_selfmon_cert_parse(bare, strlen(bare), pub, NULL), 0);
    assert_string_equal(pub, PUB);
    assert_int_equal(tc_selfmon_cert_parse(bare, 20, pub, NULL), TC_EPARSE);
}

/* ---- Prometheus samples ---- */

static void test_prom_value(void **state)
{
    const char *text = "# HELP tocsin_x_lag Lag\n"
                       "# TYPE tocsin_x_lag gauge\n"
                       "tocsin_x_lag 12\n"
                       "tocsin_x_lag_seconds 3.5\n"
                       "tocsin_x_spool{reason=\"a}b\",k=\"v\"} 4\n"
                       "tocsin_x_spool{reason=\"c\"} 6\n"
                       "tocsin_x_nan NaN\n"
                       "tocsin_x_bad 12abc\n"
                       "tocsin_x_last 7";
    double v = 0;
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_lag", &v), 0);
    assert_true(v == 12);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_lag_seconds", &v), 0);
    assert_true(v == 3.5);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_spool", &v), 0);
    assert_true(v == 10);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_spool{reason=\"c\"}", &v), 0);
    assert_true(v == 6);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_nan", &v), 0);
    assert_true(isnan(v));
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_last", &v), 0);
    assert_true(v == 7);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_bad", &v), TC_ENOTFOUND);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x", &v), TC_ENOTFOUND);
    assert_int_equal(tc_selfmon_prom_value(text, "tocsin_x_spool{reason=\"z\"}", &v),
                     TC_ENOTFOUND);
    assert_int_equal(tc_selfmon_prom_value(text, "", &v), TC_EINVAL);
}

/* ---- the object: off, and refused configurations ---- */

static tc_selfmon_config_t config(const char *collectors)
{
    tc_selfmon_config_t c = {(char *)collectors, 10000, "production", "", "", ""};
    return c;
}

static void test_off(void **state)
{
    tc_metrics_t *reg = tc_metrics_new();
    tc_selfmon_config_t c = config("");
    tc_selfmon_t *sm = tc_selfmon_new("aggregator", "agg-1", &c, reg, "tocsin_aggregator_");
    assert_non_null(sm);
    assert_int_equal(tc_selfmon_start(sm), 0);
    assert_false(tc_selfmon_running(sm));
    assert_int_equal(tc_selfmon_start(sm), TC_ESTATE);
    char *text = tc_metrics_render(reg);
    assert_non_null(strstr(text, "tocsin_aggregator_selfmon_enabled 0\n"));
    free(text);
    tc_selfmon_destroy(&sm);
    assert_null(sm);
    tc_selfmon_destroy(&sm);
    tc_metrics_destroy(&reg);

    assert_null(tc_selfmon_new("", "x", &c, NULL, NULL));
    assert_null(tc_selfmon_new("alerter", "", &c, NULL, NULL));
    assert_null(tc_selfmon_new("alerter", "x", NULL, NULL, NULL));
}

static void test_refused(void **state)
{
    char cert[] = "/tmp/tc_selfmon_cert.XXXXXX";
    int fd = mkstemp(cert);
    assert_true(fd >= 0);
    const char *pub_only = "curve\n    public-key = \"" PUB "\"\n";
    assert_int_equal(write(fd, pub_only, strlen(pub_only)), (ssize_t)strlen(pub_only));
    close(fd);
    struct {
        const char *collectors;
        int64_t interval_ms;
        const char *server_cert, *client_cert;
    } cases[] = {
        {"self", 10000, "", ""},                          /* self outside a collector */
        {"udp://127.0.0.1:1", 10000, "", ""},             /* not ZeroMQ */
        {"tcp://127.0.0.1:1", 50, "", ""},                /* interval too short */
        {"tcp://127.0.0.1:1", 7200000, "", ""},           /* too long */
        {"tcp://127.0.0.1:1", 10000, "/nonexistent/cert", ""},
        {"tcp://127.0.0.1:1", 10000, "", cert},           /* client key without server key */
        {"tcp://127.0.0.1:1", 10000, cert, cert},         /* no secret key in it */
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        tc_selfmon_config_t c = config(cases[i].collectors);
        c.interval_ms = cases[i].interval_ms;
        c.curve_server_cert = (char *)cases[i].server_cert;
        c.curve_cert = (char *)cases[i].client_cert;
        tc_selfmon_t *sm = tc_selfmon_new("alerter", "a-1", &c, NULL, NULL);
        assert_non_null(sm);
        assert_int_equal(tc_selfmon_start(sm), TC_EINVAL);
        assert_false(tc_selfmon_running(sm));
        tc_selfmon_destroy(&sm);
    }
    unlink(cert);

    tc_selfmon_config_t c = config("self");
    tc_selfmon_t *sm = tc_selfmon_new("collector", "c-1", &c, NULL, NULL);
    assert_int_equal(tc_selfmon_set_self(sm, "tcp://127.0.0.1:*", NULL), TC_EINVAL);
    assert_int_equal(tc_selfmon_gauge_metric(sm, "x", NULL, "tocsin_x"), TC_EINVAL); /* no reg */
    assert_int_equal(tc_selfmon_gauge_fn(sm, "x", NULL, NULL, NULL), TC_EINVAL);
    assert_int_equal(tc_selfmon_gauge_fn(sm, "", NULL, NULL, NULL), TC_EINVAL);
    tc_selfmon_destroy(&sm);
}

/* ---- against a ZeroMQ ROUTER playing the collector ---- */

static int fill_gauge(void *ctx, double *out)
{
    *out = *(const double *)ctx;
    return 0;
}

static int no_gauge(void *ctx, double *out)
{
    return TC_ENOTFOUND;
}

typedef struct {
    int heartbeats;
    int fills;
    int lags;
    int absent;
    double fill, lag;
    bool identity_ok;
} seen_t;

static void take_event(const Tocsin__V1__Event *e, seen_t *s)
{
    assert_string_equal(e->service, "tocsin-collector");
    assert_string_equal(e->environment, "staging");
    bool tagged = false;
    for (size_t i = 0; i < e->n_tags; i++) {
        if (strcmp(e->tags[i]->key, "instance") == 0 && strcmp(e->tags[i]->value, "col-7") == 0) {
            tagged = true;
        }
    }
    assert_true(tagged);
    assert_int_equal(e->body_case, TOCSIN__V1__EVENT__BODY_METRIC);
    const Tocsin__V1__Metric *m = e->metric;
    if (strcmp(m->name, "heartbeat") == 0) {
        assert_int_equal(m->kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER);
        assert_true(m->value == 1);
        s->heartbeats++;
    } else if (strcmp(m->name, "spool.fill") == 0) {
        assert_int_equal(m->kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE);
        s->fills++;
        s->fill = m->value;
    } else if (strcmp(m->name, "consumer.lag") == 0) {
        assert_string_equal(m->unit, "records");
        s->lags++;
        s->lag = m->value;
    } else {
        s->absent++; /* a gauge that had no value must not be sent */
    }
}

static void test_router(void **state)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0, timeout = 200;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(router, ZMQ_RCVTIMEO, &timeout, sizeof(timeout));
    assert_int_equal(zmq_bind(router, "tcp://127.0.0.1:*"), 0);
    char bound[128];
    size_t blen = sizeof(bound);
    assert_int_equal(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, bound, &blen), 0);

    tc_metrics_t *reg = tc_metrics_new();
    tc_gauge_t *lag = tc_metrics_gauge(reg, "tocsin_collector_test_lag", NULL, "a lag");
    tc_gauge_set(lag, 1234);
    double fill = 0.25;
    tc_selfmon_config_t c = config("self");
    c.interval_ms = 100;
    c.environment = "staging";
    tc_selfmon_t *sm = tc_selfmon_new("collector", "col-7", &c, reg, "tocsin_collector_");
    assert_non_null(sm);
    assert_int_equal(tc_selfmon_set_self(sm, bound, NULL), 0);
    assert_int_equal(tc_selfmon_gauge_fn(sm, "spool.fill", "ratio", fill_gauge, &fill), 0);
    assert_int_equal(tc_selfmon_gauge_fn(sm, "never", NULL, no_gauge, NULL), 0);
    assert_int_equal(tc_selfmon_gauge_metric(sm, "consumer.lag", "records",
                                             "tocsin_collector_test_lag"),
                     0);
    assert_int_equal(tc_selfmon_gauge_metric(sm, "missing", NULL, "tocsin_no_such_metric"), 0);
    assert_int_equal(tc_selfmon_start(sm), 0);
    assert_true(tc_selfmon_running(sm));
    assert_int_equal(tc_selfmon_gauge_fn(sm, "late", NULL, fill_gauge, &fill), TC_ESTATE);

    /* Take batches for up to 5 s, acking each, until 3 heartbeats came. */
    seen_t s = {0};
    int64_t deadline = tc_mono_us() + 5000000;
    while (s.heartbeats < 3 && tc_mono_us() < deadline) {
        zmq_msg_t parts[4];
        size_t n = 0;
        int more = 1;
        while (more && n < 4) {
            zmq_msg_init(&parts[n]);
            if (zmq_msg_recv(&parts[n], router, 0) < 0) {
                zmq_msg_close(&parts[n]);
                break;
            }
            more = zmq_msg_more(&parts[n]);
            n++;
        }
        if (n < 2) {
            for (size_t i = 0; i < n; i++) {
                zmq_msg_close(&parts[i]);
            }
            continue;
        }
        Tocsin__V1__Batch *b = tocsin__v1__batch__unpack(NULL, zmq_msg_size(&parts[n - 1]),
                                                         zmq_msg_data(&parts[n - 1]));
        assert_non_null(b);
        for (size_t i = 0; i < b->n_events; i++) {
            take_event(b->events[i], &s);
        }
        Tocsin__V1__Ack ack = TOCSIN__V1__ACK__INIT;
        ack.sequence = b->sequence;
        ack.status = TOCSIN__V1__ACK__STATUS__STATUS_STORED;
        ack.accepted = (uint32_t)b->n_events;
        uint8_t buf[64];
        size_t alen = tocsin__v1__ack__pack(&ack, buf);
        tocsin__v1__batch__free_unpacked(b, NULL);
        for (size_t i = 0; i + 1 < n; i++) {
            zmq_msg_send(&parts[i], router, ZMQ_SNDMORE);
        }
        zmq_send(router, buf, alen, 0);
        zmq_msg_close(&parts[n - 1]);
    }
    assert_true(s.heartbeats >= 3);
    assert_true(s.fills >= 2 && s.fill == 0.25);
    assert_true(s.lags >= 2 && s.lag == 1234);
    assert_int_equal(s.absent, 0);

    /* The selfmon metrics follow: heartbeats recorded, events acked. */
    double hb = 0, acked = 0, enabled = 0;
    deadline = tc_mono_us() + 3000000;
    do {
        usleep(50000);
        char *text = tc_metrics_render(reg);
        assert_int_equal(tc_selfmon_prom_value(text, "tocsin_collector_selfmon_heartbeats_total",
                                               &hb),
                         0);
        assert_int_equal(
            tc_selfmon_prom_value(text, "tocsin_collector_selfmon_events_total{outcome=\"acked\"}",
                                  &acked),
            0);
        assert_int_equal(tc_selfmon_prom_value(text, "tocsin_collector_selfmon_enabled", &enabled),
                         0);
        free(text);
    } while (acked < 3 && tc_mono_us() < deadline);
    assert_true(hb >= 3);
    assert_true(acked >= 3);
    assert_true(enabled == 1);

    int64_t t0 = tc_mono_us();
    tc_selfmon_destroy(&sm);
    assert_null(sm);
    assert_true(tc_mono_us() - t0 < 2000000); /* bounded: at most the client's 500 ms */
    char *text = tc_metrics_render(reg);
    assert_non_null(strstr(text, "tocsin_collector_selfmon_enabled 0\n"));
    free(text);
    tc_metrics_destroy(&reg);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

/* ---- the Kafka lag helper ---- */

static void test_kafka_lag(void **state)
{
    assert_int_equal(tc_selfmon_kafka_lag(NULL, NULL), TC_EINVAL);
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    rd_kafka_t *base = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(base);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(base, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "lag.test", 1, 1), 0);
    const char *boot = rd_kafka_mock_cluster_bootstraps(mc);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", boot, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(prod);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("lag.test"),
                                           RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE("x", 1),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(prod, 10000), 0);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", boot, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "lag-test", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(cons);
    rd_kafka_poll_set_consumer(cons);
    double lag = -1;
    assert_int_equal(tc_selfmon_kafka_lag(cons, &lag), 0); /* nothing assigned */
    assert_true(lag == 0);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "lag.test", 0)->offset = 0;
    assert_int_equal(rd_kafka_assign(cons, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    int got = 0;
    int64_t deadline = tc_mono_us() + 10000000;
    while (got < 3 && tc_mono_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 100);
        if (m) {
            got += m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
            rd_kafka_message_destroy(m);
        }
    }
    assert_int_equal(got, 3);
    /* 10 records, 3 taken by the application: 7 behind (the rest may sit prefetched). */
    int rc;
    do {
        rc = tc_selfmon_kafka_lag(cons, &lag);
        if (rc == 0 && lag == 7) {
            break;
        }
        usleep(20000);
    } while (tc_mono_us() < deadline);
    assert_int_equal(rc, 0);
    assert_true(lag == 7);

    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(prod);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(base);
}

int main(void)
{
    tc_log_init("test", TC_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints), cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_cert_parse), cmocka_unit_test(test_prom_value),
        cmocka_unit_test(test_off),        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_router),     cmocka_unit_test(test_kafka_lag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
