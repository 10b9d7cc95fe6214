/*
 * bench_collector — the load side of the collector benchmark (driven by bench_collector.py).
 *
 *   bench_collector send ENDPOINT EVENTS BATCH SIZE [options]
 *       Sends EVENTS events in batches of BATCH over DEALER sockets as fast as the collector
 *       acks them (a window of batches in flight per socket), each event about SIZE bytes
 *       encoded, and prints one JSON line: events acked STORED, seconds, events/s, batch ack
 *       latency percentiles, retry-afters, and this process's CPU seconds. Batches are encoded
 *       once up front; each send patches the batch's sequence and its events' ids, so the
 *       generator spends its CPU on ZeroMQ, not on protobuf — it shares the 2 cores with the
 *       collector and the broker, and the less it takes the more the figure is the
 *       collector's.
 *       options: --window N (default 8) --sockets N (default 2) --curve-server Z85
 *                --curve-public Z85 --curve-secret Z85 --pid PID (a process whose CPU
 *                seconds and peak RSS are measured over the run: the collector)
 *   bench_collector lines HOST PORT LINES SIZE
 *       Writes LINES syslog lines (RFC 3164 style, about SIZE bytes each, newline-framed)
 *       over one TCP connection as fast as the peer reads them: the feed for rsyslog.
 *   bench_collector watermark BOOTSTRAP_FILE TOPIC TARGET TIMEOUT_S [--pid PID]
 *       Waits until the high watermarks of TOPIC's partitions add up to TARGET records and
 *       prints the seconds that took (from the call), with --pid that process's CPU seconds
 *       and peak RSS over the same span.
 *   bench_collector keypair
 *       Prints a CURVE key pair (public and secret, Z85) on two lines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <zmq.h>

#include "tc_util.h"
#include "tocsin/v1/transport.pb-c.h"

/* ---- process figures from /proc ---- */

typedef struct {
    double cpu_s;
    long hwm_kb;
} procstat_t;

static bool proc_read(long pid, procstat_t *out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) {
        return false;
    }
    /* Fields after the command: state is field 3; utime and stime are 14 and 15. */
    unsigned long utime = 0, stime = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        field++;
        if (field == 14) {
            utime = strtoul(tok, NULL, 10);
        } else if (field == 15) {
            stime = strtoul(tok, NULL, 10);
            break;
        }
    }
    out->cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    out->hwm_kb = 0;
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "VmHWM:", 6) == 0) {
                out->hwm_kb = strtol(line + 6, NULL, 10);
            }
        }
        fclose(f);
    }
    return true;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- send ---- */

#define SEQ_FIELD_BYTES 11 /* tag + a 10-byte varint, so it can be patched in place */
#define TEMPLATES 8

typedef struct {
    uint8_t *buf;
    size_t len;
    size_t *id_off; /* where each event's 16-byte id sits */
    size_t n_ids;
} template_t;

typedef struct {
    void *sock;
    int template_idx;
    uint64_t sequence;
    int64_t sent_us;
    bool busy;
    uint32_t events;
    uint8_t *buf; /* the bytes sent, kept for a resend */
    size_t len;
    int64_t resend_at_us; /* > 0: waiting for a retry-after */
} slot_t;

static void put_padded_varint(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 10; i++) {
        p[i] = (uint8_t)((v & 0x7f) | (i < 9 ? 0x80 : 0));
        v >>= 7;
    }
}

/* A batch of `n` events of about `size` bytes each, with the sequence field in front. */
static int build_template(template_t *t, uint32_t n, size_t size, uint32_t salt)
{
    Tocsin__V1__Batch b = TOCSIN__V1__BATCH__INIT;
    Tocsin__V1__Event *evs = calloc(n, sizeof(*evs));
    Tocsin__V1__Event **evp = calloc(n, sizeof(*evp));
    Tocsin__V1__Request *reqs = calloc(n, sizeof(*reqs));
    Tocsin__V1__LogRecord *logs = calloc(n, sizeof(*logs));
    Tocsin__V1__Event__TagsEntry *tags = calloc(n * 2, sizeof(*tags));
    Tocsin__V1__Event__TagsEntry **tagp = calloc(n * 2, sizeof(*tagp));
    uint8_t(*ids)[16] = calloc(n, 16);
    if (!evs || !evp || !reqs || !logs || !tags || !tagp || !ids) {
        return -1;
    }
    static char filler[4096];
    memset(filler, 'x', sizeof(filler) - 1);
    static const char *const services[] = {"checkout", "search", "payments", "catalog"};
    static const char *const routes[] = {"/cart/:id",  "/search", "/pay",
                                         "/items/:id", "/login",  "/health"};
    for (uint32_t i = 0; i < n; i++) {
        Tocsin__V1__Event *ev = &evs[i];
        tocsin__v1__event__init(ev);
        tc_random_bytes(ids[i], 16);
        ev->event_id.data = ids[i];
        ev->event_id.len = 16;
        ev->time_us = tc_now_us();
        ev->service = (char *)services[(i + salt) % 4];
        ev->environment = "production";
        ev->release = "2.14.1";
        ev->host = "web-7f9c-12";
        ev->trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        tocsin__v1__event__tags_entry__init(&tags[2 * i]);
        tags[2 * i].key = "region";
        tags[2 * i].value = "eu-west-1";
        tocsin__v1__event__tags_entry__init(&tags[2 * i + 1]);
        tags[2 * i + 1].key = "az";
        tags[2 * i + 1].value = "eu-west-1b";
        tagp[2 * i] = &tags[2 * i];
        tagp[2 * i + 1] = &tags[2 * i + 1];
        ev->n_tags = 2;
        ev->tags = &tagp[2 * i];
        if (size < 600) {
            tocsin__v1__request__init(&reqs[i]);
            reqs[i].route = (char *)routes[(i * 7 + salt) % 6];
            reqs[i].method = "GET";
            reqs[i].status = (i % 50 == 0) ? 500 : 200;
            reqs[i].duration_us = 1000 + (i * 7919) % 50000;
            ev->body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
            ev->request = &reqs[i];
        } else {
            tocsin__v1__log_record__init(&logs[i]);
            logs[i].level = TOCSIN__V1__LEVEL__LEVEL_INFO;
            logs[i].logger = "http.access";
            ev->body_case = TOCSIN__V1__EVENT__BODY_LOG;
            ev->log = &logs[i];
        }
        size_t now = tocsin__v1__event__get_packed_size(ev);
        if (size > now + 8 && ev->body_case == TOCSIN__V1__EVENT__BODY_LOG) {
            size_t pad = size - now - 8;
            if (pad >= sizeof(filler)) {
                pad = sizeof(filler) - 1;
            }
            logs[i].message = strndup(filler, pad);
        } else if (size > now + 4) {
            size_t pad = size - now - 4;
            if (pad > 250) {
                pad = 250;
            }
            ev->user_id = strndup(filler, pad);
        }
        evp[i] = ev;
    }
    b.n_events = n;
    b.events = evp;
    b.sdk = "bench_collector/1";
    size_t len = tocsin__v1__batch__get_packed_size(&b);
    t->buf = malloc(SEQ_FIELD_BYTES + len);
    t->id_off = calloc(n, sizeof(size_t));
    if (!t->buf || !t->id_off) {
        return -1;
    }
    t->buf[0] = 0x08;
    put_padded_varint(t->buf + 1, 0);
    tocsin__v1__batch__pack(&b, t->buf + SEQ_FIELD_BYTES);
    t->len = SEQ_FIELD_BYTES + len;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *at = memmem(t->buf, t->len, ids[i], 16);
        if (!at) {
            return -1;
        }
        t->id_off[i] = (size_t)(at - t->buf);
    }
    t->n_ids = n;
    for (uint32_t i = 0; i < n; i++) {
        free(evs[i].user_id == NULL || evs[i].user_id == protobuf_c_empty_string ? NULL
                                                                                 : evs[i].user_id);
        if (logs[i].message && logs[i].message != protobuf_c_empty_string) {
            free(logs[i].message);
        }
    }
    free(evs);
    free(evp);
    free(reqs);
    free(logs);
    free(tags);
    free(tagp);
    free(ids);
    return 0;
}

static uint64_t id_counter;
static uint64_t run_nonce;

/* Fills the slot's buffer from its template with a new sequence and new event ids. */
static void prepare(slot_t *s, const template_t *t, uint64_t sequence)
{
    if (!s->buf) {
        s->buf = malloc(t->len);
    }
    memcpy(s->buf, t->buf, t->len);
    s->len = t->len;
    put_padded_varint(s->buf + 1, sequence);
    for (size_t i = 0; i < t->n_ids; i++) {
        uint64_t c = ++id_counter;
        memcpy(s->buf + t->id_off[i], &run_nonce, 8);
        memcpy(s->buf + t->id_off[i] + 8, &c, 8);
    }
    s->sequence = sequence;
}

static int cmd_send(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "send ENDPOINT EVENTS BATCH SIZE [options]\n");
        return 2;
    }
    const char *endpoint = argv[2];
    long total = atol(argv[3]);
    uint32_t per_batch = (uint32_t)atol(argv[4]);
    size_t size = (size_t)atol(argv[5]);
    int window = 8, nsock = 2;
    long pid = 0;
    const char *server = NULL, *pub = NULL, *sec = NULL;
    for (int i = 6; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--window")) {
            window = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--sockets")) {
            nsock = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--pid")) {
            pid = atol(argv[i + 1]);
        } else if (!strcmp(argv[i], "--curve-server")) {
            server = argv[i + 1];
        } else if (!strcmp(argv[i], "--curve-public")) {
            pub = argv[i + 1];
        } else if (!strcmp(argv[i], "--curve-secret")) {
            sec = argv[i + 1];
        }
    }
    if (total <= 0 || per_batch == 0 || per_batch > 2000 || window < 1 || nsock < 1 || nsock > 64) {
        fprintf(stderr, "send: bad arguments\n");
        return 2;
    }
    tc_random_bytes(&run_nonce, sizeof(run_nonce));
    template_t templates[TEMPLATES];
    for (int i = 0; i < TEMPLATES; i++) {
        if (build_template(&templates[i], per_batch, size, (uint32_t)i) != 0) {
            fprintf(stderr, "send: cannot build batches\n");
            return 1;
        }
    }
    double event_bytes = (double)(templates[0].len - SEQ_FIELD_BYTES) / per_batch;
    void *ctx = zmq_ctx_new();
    int nslots = window * nsock;
    slot_t *slots = calloc((size_t)nslots, sizeof(slot_t));
    void **socks = calloc((size_t)nsock, sizeof(void *));
    for (int s = 0; s < nsock; s++) {
        socks[s] = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0, hwm = 100000;
        zmq_setsockopt(socks[s], ZMQ_LINGER, &linger, sizeof(linger));
        zmq_setsockopt(socks[s], ZMQ_SNDHWM, &hwm, sizeof(hwm));
        if (server && pub && sec) {
            zmq_setsockopt(socks[s], ZMQ_CURVE_SERVERKEY, server, 40);
            zmq_setsockopt(socks[s], ZMQ_CURVE_PUBLICKEY, pub, 40);
            zmq_setsockopt(socks[s], ZMQ_CURVE_SECRETKEY, sec, 40);
        }
        if (zmq_connect(socks[s], endpoint) != 0) {
            fprintf(stderr, "connect: %s\n", zmq_strerror(errno));
            return 2;
        }
    }
    for (int i = 0; i < nslots; i++) {
        slots[i].sock = socks[i % nsock];
    }
    size_t max_batches = (size_t)(total / per_batch) + 2;
    double *lat = calloc(max_batches, sizeof(double));
    size_t n_lat = 0;
    procstat_t p0 = {0}, p1 = {0};
    if (pid) {
        proc_read(pid, &p0);
    }
    double cpu0 = self_cpu_s();
    int64_t t0 = tc_mono_us();
    long queued = 0, stored_events = 0, retry_after = 0, rejected = 0;
    uint64_t seq = 1;
    zmq_pollitem_t *items = calloc((size_t)nsock, sizeof(zmq_pollitem_t));
    for (int s = 0; s < nsock; s++) {
        items[s].socket = socks[s];
        items[s].events = ZMQ_POLLIN;
    }
    int64_t last_progress = tc_mono_us();
    while (stored_events < total) {
        int64_t now = tc_mono_us();
        for (int i = 0; i < nslots; i++) {
            slot_t *sl = &slots[i];
            if (sl->busy && sl->resend_at_us > 0 && now >= sl->resend_at_us) {
                sl->resend_at_us = 0;
                sl->sent_us = now;
                zmq_send(sl->sock, sl->buf, sl->len, 0);
            } else if (!sl->busy && queued < total) {
                const template_t *t = &templates[seq % TEMPLATES];
                prepare(sl, t, seq++);
                sl->events = (uint32_t)t->n_ids;
                sl->busy = true;
                sl->sent_us = now;
                queued += per_batch;
                zmq_send(sl->sock, sl->buf, sl->len, 0);
            }
        }
        if (zmq_poll(items, nsock, 100) <= 0) {
            if (tc_mono_us() - last_progress > 60 * 1000000LL) {
                fprintf(stderr, "send: no progress for 60 s\n");
                break;
            }
            continue;
        }
        for (int s = 0; s < nsock; s++) {
            while (true) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, socks[s], ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                Tocsin__V1__Ack *ack =
                    tocsin__v1__ack__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
                zmq_msg_close(&m);
                if (!ack) {
                    continue;
                }
                for (int i = 0; i < nslots; i++) {
                    slot_t *sl = &slots[i];
                    if (!sl->busy || sl->sequence != ack->sequence) {
                        continue;
                    }
                    int64_t t = tc_mono_us();
                    if (ack->status == TOCSIN__V1__ACK__STATUS__STATUS_STORED) {
                        stored_events += ack->accepted;
                        if (n_lat < max_batches) {
                            lat[n_lat++] = (double)(t - sl->sent_us) / 1000.0;
                        }
                        sl->busy = false;
                    } else if (ack->status == TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER) {
                        retry_after++;
                        sl->resend_at_us = t + (int64_t)ack->retry_after_ms * 1000;
                    } else {
                        rejected++;
                        fprintf(stderr, "rejected: %s\n", ack->reason);
                        sl->busy = false;
                        stored_events += sl->events; /* never comes: do not wait for it */
                    }
                    last_progress = t;
                    break;
                }
                tocsin__v1__ack__free_unpacked(ack, NULL);
            }
        }
    }
    double secs = (double)(tc_mono_us() - t0) / 1e6;
    double cpu = self_cpu_s() - cpu0;
    if (pid) {
        proc_read(pid, &p1);
    }
    qsort(lat, n_lat, sizeof(double), cmp_double);
    double p50 = n_lat ? lat[n_lat / 2] : 0;
    double p99 = n_lat ? lat[(size_t)((double)n_lat * 0.99)] : 0;
    printf("{\"events\":%ld,\"seconds\":%.3f,\"events_per_s\":%.0f,\"event_bytes\":%.0f,"
           "\"batch\":%u,\"ack_ms_p50\":%.2f,\"ack_ms_p99\":%.2f,\"retry_after\":%ld,"
           "\"rejected\":%ld,\"sender_cpu_s\":%.3f,\"target_cpu_s\":%.3f,"
           "\"target_peak_rss_kb\":%ld}\n",
           stored_events, secs, (double)stored_events / secs, event_bytes, per_batch, p50, p99,
           retry_after, rejected, cpu, pid ? p1.cpu_s - p0.cpu_s : 0.0, pid ? p1.hwm_kb : 0);
    for (int s = 0; s < nsock; s++) {
        zmq_close(socks[s]);
    }
    zmq_ctx_term(ctx);
    return rejected ? 1 : 0;
}

/* ---- lines (rsyslog's feed) ---- */

static int cmd_lines(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "lines HOST PORT LINES SIZE\n");
        return 2;
    }
    long lines = atol(argv[4]);
    size_t size = (size_t)atol(argv[5]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    inet_pton(AF_INET, argv[2], &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        return 2;
    }
    /* The same fields an event carries: service, route, status, duration, host, trace. */
    size_t chunk = 1 << 20;
    char *buf = malloc(chunk + 8192);
    size_t used = 0;
    double cpu0 = self_cpu_s();
    int64_t t0 = tc_mono_us();
    for (long i = 0; i < lines; i++) {
        char *p = buf + used;
        int n = snprintf(p, 8192,
                         "<134>Nov 22 10:00:00 web-7f9c-12 checkout[%ld]: service=checkout "
                         "env=production release=2.14.1 route=/cart/:id method=GET status=200 "
                         "duration_us=%ld trace=4bf92f3577b34da6a3ce929d0e0e4736 region=eu-west-1 ",
                         i % 100000, 1000 + (i * 7919) % 50000);
        while ((size_t)n + 1 < size && n < 8000) {
            p[n++] = 'x';
        }
        p[n++] = '\n';
        used += (size_t)n;
        if (used >= chunk || i + 1 == lines) {
            size_t off = 0;
            while (off < used) {
                ssize_t w = write(fd, buf + off, used - off);
                if (w < 0) {
                    if (errno == EINTR) {
                        continue;
                    }
                    fprintf(stderr, "write: %s\n", strerror(errno));
                    return 1;
                }
                off += (size_t)w;
            }
            used = 0;
        }
    }
    close(fd);
    printf("{\"lines\":%ld,\"seconds\":%.3f,\"sender_cpu_s\":%.3f}\n", lines,
           (double)(tc_mono_us() - t0) / 1e6, self_cpu_s() - cpu0);
    free(buf);
    return 0;
}

/* ---- watermark ---- */

static int cmd_watermark(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "watermark BOOTSTRAP_FILE TOPIC TARGET TIMEOUT_S [--pid PID]\n");
        return 2;
    }
    long target = atol(argv[4]);
    double timeout = atof(argv[5]);
    long pid = argc >= 8 && !strcmp(argv[6], "--pid") ? atol(argv[7]) : 0;
    procstat_t p0 = {0}, p1 = {0};
    if (pid) {
        proc_read(pid, &p0);
    }
    int64_t t0 = tc_mono_us();
    char bootstrap[1024] = "";
    FILE *f = fopen(argv[2], "r");
    if (!f || !fgets(bootstrap, sizeof(bootstrap), f)) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 2;
    }
    fclose(f);
    bootstrap[strcspn(bootstrap, "\r\n")] = '\0';
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[3], NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || !md || md->topic_cnt != 1) {
        fprintf(stderr, "no metadata for %s\n", argv[3]);
        return 2;
    }
    int np = md->topics[0].partition_cnt;
    long sum = 0;
    while ((double)(tc_mono_us() - t0) / 1e6 < timeout) {
        sum = 0;
        for (int p = 0; p < np; p++) {
            int64_t lo = 0, hi = 0;
            rd_kafka_query_watermark_offsets(rk, argv[3], md->topics[0].partitions[p].id, &lo, &hi,
                                             5000);
            sum += (long)hi;
        }
        if (sum >= target) {
            break;
        }
        usleep(20000);
    }
    double secs = (double)(tc_mono_us() - t0) / 1e6;
    if (pid) {
        proc_read(pid, &p1);
    }
    printf("{\"records\":%ld,\"seconds\":%.3f,\"target_cpu_s\":%.3f,\"target_peak_rss_kb\":%ld,"
           "\"reached\":%s}\n",
           sum, secs, pid ? p1.cpu_s - p0.cpu_s : 0.0, pid ? p1.hwm_kb : 0,
           sum >= target ? "true" : "false");
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return sum >= target ? 0 : 1;
}

static int cmd_keypair(void)
{
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        return 1;
    }
    printf("%s\n%s\n", pub, sec);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "send")) {
        return cmd_send(argc, argv);
    }
    if (argc >= 2 && !strcmp(argv[1], "lines")) {
        return cmd_lines(argc, argv);
    }
    if (argc >= 2 && !strcmp(argv[1], "watermark")) {
        return cmd_watermark(argc, argv);
    }
    if (argc >= 2 && !strcmp(argv[1], "keypair")) {
        return cmd_keypair();
    }
    fprintf(stderr, "usage: bench_collector send|lines|watermark|keypair ...\n");
    return 2;
}
