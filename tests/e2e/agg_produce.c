/*
 * agg_produce — writes encoded tocsin.v1.Events straight into the bus, as collectors would
 * (keyed by service; received_us, collector_id and errors' grouping_hash set), for the
 * aggregator's end-to-end tests and benchmark. Prints what it wrote as one JSON line: the
 * unique events per service and kind, so a test can compare the aggregator's answers
 * against the truth.
 *
 * usage: agg_produce --bootstrap-file FILE [options]
 *   --topic T          tocsin.events (logs go to --logs-topic, default tocsin.logs)
 *   --count N          events to write (unique ones; duplicates come on top)
 *   --services N       services "svc-0" .. "svc-N-1" (default 1), or --service NAME
 *   --prefix P         service names "P-0" .. instead of "svc-0" ..
 *   --kind K           request, error, log or mix (default request)
 *   --dup-rate F       this fraction of events is written a second time, same event_id
 *   --rate N           events per second (0: as fast as possible)
 *   --time-us T        event time of the first event (default: each event's time is the
 *                      moment it is written, as a live client's)
 *   --spread-s S       with --time-us: event times spread evenly over S seconds after it
 *   --received-delay-ms M  received_us = event time + M (default 0: received when written)
 *   --users N          user ids drawn from a pool of N (default 0: none)
 *   --error-every K    every K-th request has status 500 (default 0: none)
 *   --seed S           random seed
 *   --batch N          events per produce call loop before polling (default 1000)
 *   --pack N           write records as collectors do since packing: the events of one
 *                      service and topic go into one tocsin.v1.EventPack record (header
 *                      tocsin.format), N events per record (default 0: one Event per record,
 *                      no header, the format before packing)
 *   --sample-rate R    every event carries Event.sample_rate R (default 0: not sampled)
 *   --format NAME      with --pack: the tocsin.format header says NAME instead (a format
 *                      aggregators do not know, for tests of its refusal)
 * Exits 0 when every record was delivered, 1 otherwise, 2 on bad usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tc_grouping.h"
#include "tocsin/v1/event.pb-c.h"

#define MAX_SERVICES 256

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform(void)
{
    return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
    uint64_t requests, request_errors, errors, logs, metrics;
} truth_t;

static long delivered, failed, produced;
static const char *format_name = "tocsin.v1.EventPack";

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (msg->err) {
        failed++;
        fprintf(stderr, "agg_produce: delivery failed: %s\n", rd_kafka_err2str(msg->err));
    } else {
        delivered++;
    }
}

static char *read_first_line(const char *path)
{
    for (int i = 0; i < 300; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            char buf[1024];
            char *line = fgets(buf, sizeof(buf), f);
            fclose(f);
            if (line) {
                buf[strcspn(buf, "\r\n")] = '\0';
                if (buf[0]) {
                    return strdup(buf);
                }
            }
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *key, const uint8_t *buf,
                   size_t len, bool packed)
{
    for (;;) {
        rd_kafka_vu_t vu[6];
        memset(vu, 0, sizeof(vu));
        vu[0].vtype = RD_KAFKA_VTYPE_RKT;
        vu[0].u.rkt = rkt;
        vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
        vu[1].u.i32 = RD_KAFKA_PARTITION_UA;
        vu[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
        vu[2].u.i = RD_KAFKA_MSG_F_COPY;
        vu[3].vtype = RD_KAFKA_VTYPE_VALUE;
        vu[3].u.mem.ptr = (void *)buf;
        vu[3].u.mem.size = len;
        vu[4].vtype = RD_KAFKA_VTYPE_KEY;
        vu[4].u.mem.ptr = (void *)key;
        vu[4].u.mem.size = strlen(key);
        vu[5].vtype = RD_KAFKA_VTYPE_HEADER;
        vu[5].u.header.name = "tocsin.format";
        vu[5].u.header.val = format_name;
        vu[5].u.header.size = (ssize_t)strlen(format_name);
        rd_kafka_error_t *err = rd_kafka_produceva(rk, vu, packed ? 6 : 5);
        if (!err) {
            produced++;
            return 0;
        }
        rd_kafka_resp_err_t code = rd_kafka_error_code(err);
        rd_kafka_error_destroy(err);
        if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "agg_produce: produce: %s\n", rd_kafka_err2str(code));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
}

/* The events of one (service, topic) waiting for their record (--pack). */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    long n;
} pack_t;

/* Adds an encoded event to a pack as one entry (tag 0x0a, varint length, bytes). */
static int pack_add(pack_t *p, const uint8_t *ev, size_t len)
{
    if (p->len + len + 16 > p->cap) {
        size_t cap = (p->len + len + 16) * 2;
        uint8_t *b = realloc(p->buf, cap);
        if (!b) {
            return -1;
        }
        p->buf = b;
        p->cap = cap;
    }
    p->buf[p->len++] = 0x0a;
    size_t v = len;
    while (v >= 0x80) {
        p->buf[p->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p->buf[p->len++] = (uint8_t)v;
    memcpy(p->buf + p->len, ev, len);
    p->len += len;
    p->n++;
    return 0;
}

/* Writes one event: as its own record, or into its pack (written when it holds `pack`). */
static int emit(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *key, const uint8_t *buf,
                size_t len, pack_t *p, long pack)
{
    if (pack <= 0) {
        return produce(rk, rkt, key, buf, len, false);
    }
    if (pack_add(p, buf, len) != 0) {
        return -1;
    }
    if (p->n < pack) {
        return 0;
    }
    int rc = produce(rk, rkt, key, p->buf, p->len, true);
    p->len = 0;
    p->n = 0;
    return rc;
}

int main(int argc, char **argv)
{
    const char *bootstrap_file = NULL, *topic = "tocsin.events", *logs_topic = "tocsin.logs";
    const char *kind = "request", *one_service = NULL, *prefix = "svc";
    long count = 1000, services = 1, users = 0, error_every = 0, batch = 1000, pack = 0;
    double dup_rate = 0, rate = 0, spread_s = 0, sample_rate = 0;
    int64_t time_us = 0, received_delay_ms = 0;
    rng_state = 42;
    static const struct option opts[] = {
        {"bootstrap-file", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"logs-topic", required_argument, NULL, 'L'},
        {"count", required_argument, NULL, 'n'},
        {"services", required_argument, NULL, 's'},
        {"service", required_argument, NULL, 'S'},
        {"kind", required_argument, NULL, 'k'},
        {"dup-rate", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},
        {"time-us", required_argument, NULL, 'T'},
        {"spread-s", required_argument, NULL, 'p'},
        {"received-delay-ms", required_argument, NULL, 'D'},
        {"users", required_argument, NULL, 'u'},
        {"error-every", required_argument, NULL, 'e'},
        {"seed", required_argument, NULL, 'x'},
        {"batch", required_argument, NULL, 'B'},
        {"prefix", required_argument, NULL, 'P'},
        {"pack", required_argument, NULL, 'K'},
        {"sample-rate", required_argument, NULL, 'R'},
        {"format", required_argument, NULL, 'F'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            bootstrap_file = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'L':
            logs_topic = optarg;
            break;
        case 'n':
            count = strtol(optarg, NULL, 10);
            break;
        case 's':
            services = strtol(optarg, NULL, 10);
            break;
        case 'S':
            one_service = optarg;
            break;
        case 'k':
            kind = optarg;
            break;
        case 'd':
            dup_rate = strtod(optarg, NULL);
            break;
        case 'r':
            rate = strtod(optarg, NULL);
            break;
        case 'T':
            time_us = strtoll(optarg, NULL, 10);
            break;
        case 'p':
            spread_s = strtod(optarg, NULL);
            break;
        case 'D':
            received_delay_ms = strtoll(optarg, NULL, 10);
            break;
        case 'u':
            users = strtol(optarg, NULL, 10);
            break;
        case 'e':
            error_every = strtol(optarg, NULL, 10);
            break;
        case 'x':
            rng_state = strtoull(optarg, NULL, 10);
            break;
        case 'B':
            batch = strtol(optarg, NULL, 10);
            break;
        case 'P':
            prefix = optarg;
            break;
        case 'K':
            pack = strtol(optarg, NULL, 10);
            break;
        case 'R':
            sample_rate = strtod(optarg, NULL);
            break;
        case 'F':
            format_name = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!bootstrap_file || count < 0 || services < 1 || services > MAX_SERVICES || batch < 1 ||
        dup_rate < 0 || dup_rate > 1 || pack < 0 || sample_rate < 0 || sample_rate > 1) {
        fprintf(stderr, "usage: agg_produce --bootstrap-file FILE [--count N] [--services N] "
                        "[--kind request|error|log|mix] [--dup-rate F] [--rate N] ...\n");
        return 2;
    }
    char *bootstrap = read_first_line(bootstrap_file);
    if (!bootstrap) {
        fprintf(stderr, "agg_produce: no bootstrap in %s\n", bootstrap_file);
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "compression.type", "lz4", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof(err))) {
        fprintf(stderr, "agg_produce: %s\n", err);
        return 2;
    }
    free(bootstrap);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "agg_produce: %s\n", err);
        return 2;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_topic_t *lrkt = rd_kafka_topic_new(rk, logs_topic, NULL);
    static truth_t truth[MAX_SERVICES];
    char names[MAX_SERVICES][64];
    for (long s = 0; s < services; s++) {
        if (one_service) {
            snprintf(names[s], sizeof(names[s]), "%s", one_service);
        } else {
            snprintf(names[s], sizeof(names[s]), "%.40s-%ld", prefix, s);
        }
    }
    static const char *routes[] = {"/a", "/b", "/c"};
    static const char *types[] = {"KeyError", "ValueError", "TimeoutError"};
    int64_t t0 = time_us ? time_us : now_us();
    int64_t start_mono = mono_us();
    long written = 0, dups = 0;
    static pack_t packs[MAX_SERVICES][2];
    uint8_t *buf = malloc(4096);
    for (long i = 0; i < count; i++) {
        long s = (long)(rng_next() % (uint64_t)services);
        const char *k = kind;
        if (strcmp(kind, "mix") == 0) {
            uint64_t r = rng_next() % 10;
            k = r < 7 ? "request" : (r < 9 ? "error" : "log");
        }
        Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
        Tocsin__V1__Request req = TOCSIN__V1__REQUEST__INIT;
        Tocsin__V1__ErrorEvent er = TOCSIN__V1__ERROR_EVENT__INIT;
        Tocsin__V1__LogRecord lr = TOCSIN__V1__LOG_RECORD__INIT;
        Tocsin__V1__Frame fr = TOCSIN__V1__FRAME__INIT;
        Tocsin__V1__Frame *frames[1] = {&fr};
        uint8_t id[16];
        for (int j = 0; j < 2; j++) {
            uint64_t v = rng_next();
            memcpy(id + 8 * j, &v, 8);
        }
        ev.event_id.data = id;
        ev.event_id.len = 16;
        int64_t t =
            time_us
                ? t0 + (spread_s > 0 ? (int64_t)((double)i * spread_s * 1e6 / (double)count) : 0)
                : now_us();
        ev.time_us = t;
        ev.service = names[s];
        ev.environment = "production";
        ev.release = "1.0.0";
        ev.host = "host-1";
        ev.collector_id = "agg_produce";
        ev.sample_rate = (float)sample_rate;
        char user[32];
        if (users > 0) {
            snprintf(user, sizeof(user), "user-%llu",
                     (unsigned long long)(rng_next() % (uint64_t)users));
            ev.user_id = user;
        }
        rd_kafka_topic_t *target = rkt;
        char msg[128];
        char grouping[TC_GROUPING_HASH_LEN + 1];
        if (strcmp(k, "request") == 0) {
            req.route = (char *)routes[rng_next() % 3];
            req.method = "GET";
            double z = sqrt(-2.0 * log(uniform())) * cos(2.0 * M_PI * uniform());
            req.duration_us = (uint64_t)(20000.0 * exp(0.8 * z));
            truth[s].requests++;
            req.status = 200;
            if (error_every > 0 && truth[s].requests % (uint64_t)error_every == 0) {
                req.status = 500;
                truth[s].request_errors++;
            }
            ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
            ev.request = &req;
        } else if (strcmp(k, "error") == 0) {
            er.type = (char *)types[rng_next() % 3];
            snprintf(msg, sizeof(msg), "order %llu failed",
                     (unsigned long long)(rng_next() % 100000));
            er.message = msg;
            er.level = TOCSIN__V1__LEVEL__LEVEL_ERROR;
            fr.function = "handle";
            fr.module = "app.orders";
            fr.line = (uint32_t)(10 + rng_next() % 5);
            fr.in_app = true;
            er.n_frames = 1;
            er.frames = frames;
            /* Set by a collector: the issue the event joins. */
            tc_grouping_hash(&er, grouping);
            er.grouping_hash = grouping;
            ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
            ev.error = &er;
            truth[s].errors++;
        } else {
            lr.level = TOCSIN__V1__LEVEL__LEVEL_INFO;
            snprintf(msg, sizeof(msg), "log line %ld", i);
            lr.message = msg;
            lr.logger = "app";
            ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
            ev.log = &lr;
            target = lrkt;
            truth[s].logs++;
        }
        ev.received_us = received_delay_ms ? t + received_delay_ms * 1000 : now_us();
        size_t len = tocsin__v1__event__get_packed_size(&ev);
        if (len > 4096) {
            return 2;
        }
        tocsin__v1__event__pack(&ev, buf);
        pack_t *pk = &packs[s][target == lrkt];
        if (emit(rk, target, names[s], buf, len, pk, pack) != 0) {
            return 1;
        }
        written++;
        if (dup_rate > 0 && uniform() < dup_rate) {
            /* A resend: same event, received a little later. */
            ev.received_us += 1000;
            len = tocsin__v1__event__get_packed_size(&ev);
            tocsin__v1__event__pack(&ev, buf);
            if (emit(rk, target, names[s], buf, len, pk, pack) != 0) {
                return 1;
            }
            written++;
            dups++;
        }
        if ((i + 1) % batch == 0) {
            rd_kafka_poll(rk, 0);
        }
        if (rate > 0) {
            int64_t due = start_mono + (int64_t)((double)(i + 1) * 1e6 / rate);
            int64_t wait = due - mono_us();
            if (wait > 0) {
                rd_kafka_poll(rk, (int)(wait / 1000));
                while (mono_us() < due) {
                    struct timespec ts = {0, 200000};
                    nanosleep(&ts, NULL);
                }
            }
        }
    }
    free(buf);
    for (long s = 0; s < services; s++) {
        for (int t = 0; t < 2; t++) {
            pack_t *pk = &packs[s][t];
            if (pk->n > 0 && produce(rk, t ? lrkt : rkt, names[s], pk->buf, pk->len, true) != 0) {
                return 1;
            }
            free(pk->buf);
        }
    }
    rd_kafka_flush(rk, 60000);
    rd_kafka_poll(rk, 0);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_topic_destroy(lrkt);
    rd_kafka_destroy(rk);
    printf("{\"written\":%ld,\"records\":%ld,\"unique\":%ld,\"duplicates\":%ld,"
           "\"delivered\":%ld,\"failed\":%ld,\"seconds\":%.3f,\"services\":{",
           written, produced, count, dups, delivered, failed,
           (double)(mono_us() - start_mono) / 1e6);
    for (long s = 0; s < services; s++) {
        printf("%s\"%s\":{\"requests\":%" PRIu64 ",\"request_errors\":%" PRIu64
               ",\"errors\":%" PRIu64 ",\"logs\":%" PRIu64 "}",
               s ? "," : "", names[s], truth[s].requests, truth[s].request_errors, truth[s].errors,
               truth[s].logs);
    }
    printf("}}\n");
    return failed == 0 && delivered == produced ? 0 : 1;
}
