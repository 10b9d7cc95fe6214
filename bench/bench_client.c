/*
 * bench_client — what recording an event costs the calling thread with libtocsin, and how
 * many events per second reach a collector, next to the two habits the field uses instead,
 * measured in the same run:
 *   - StatsD style: format a line and make one UDP sendto per event, to a local UDP socket
 *     that a reader thread drains;
 *   - one ZeroMQ send per event: encode the event (tocsin.v1.Event, protobuf) and zmq_send
 *     it on a PUSH socket (one per thread) to a PULL socket that a reader thread drains.
 *
 * usage: bench_client --collector ENDPOINT [--events N] [--runs R]
 * A fourth row times libtocsin with no collector reachable (every call, recorded or
 * refused), to show that the calling thread's cost stays flat.
 *   ENDPOINT is a real tocsin-collector (bench/bench_client.sh starts one with tocsin-bus).
 *
 * Per-event cost: every call is timed with the TSC (rdtsc, calibrated against
 * CLOCK_MONOTONIC; the cost of the timing itself, measured on an empty pair, is
 * subtracted). For libtocsin only calls that recorded the event count (the recording
 * threads pause between bursts of 4096 events so that the queue has room; calls that found
 * it full are reported apart). Each figure is the median over R runs of that run's median
 * and p99.
 *
 * Delivered per second: one thread records N events as fast as it can (waiting for room
 * when the queue is full) and the clock stops when the collector has acknowledged all of
 * them (tocsin_flush). For the peers: events sent by one thread, counted when the reader
 * has received all of them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include <zmq.h>

#include "tocsin.h"
#include "tocsin/v1/event.pb-c.h"

#define BURST 4096

static double ns_per_tick;
static uint64_t timing_overhead; /* ticks of an empty timed pair */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline uint64_t ticks(void)
{
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void calibrate(void)
{
    int64_t n0 = mono_ns();
    uint64_t t0 = __rdtsc();
    while (mono_ns() - n0 < 200000000) {
    }
    ns_per_tick = (double)(mono_ns() - n0) / (double)(__rdtsc() - t0);
    enum { K = 100000 };
    static uint64_t d[K];
    for (int i = 0; i < K; i++) {
        uint64_t a = ticks();
        uint64_t b = ticks();
        d[i] = b - a;
    }
    qsort(d, K, sizeof(d[0]), cmp_u64);
    timing_overhead = d[K / 2];
}

/* Median and p99 of n samples in ticks, minus the timing overhead, in ns. */
static void summarise(uint64_t *d, size_t n, double *median, double *p99)
{
    qsort(d, n, sizeof(d[0]), cmp_u64);
    double m = (double)d[n / 2] - (double)timing_overhead;
    double p = (double)d[(size_t)((double)n * 0.99)] - (double)timing_overhead;
    *median = (m < 0 ? 0 : m) * ns_per_tick;
    *p99 = (p < 0 ? 0 : p) * ns_per_tick;
}

static double median_of(double *v, int n)
{
    double tmp[64];
    memcpy(tmp, v, (size_t)n * sizeof(double));
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && tmp[j - 1] > tmp[j]; j--) {
            double t = tmp[j];
            tmp[j] = tmp[j - 1];
            tmp[j - 1] = t;
        }
    }
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static const char *const routes[] = {"/", "/api/items", "/api/checkout", "/login"};

/* ---------------------------------------------------------------------------------- */
/* The three ways of recording, each behind one function timed per call. */

typedef enum { WAY_TOCSIN, WAY_UDP, WAY_ZMQ, WAY_TOCSIN_OFFLINE } way_t;

typedef struct {
    way_t way;
    size_t n;
    uint64_t *samples;
    size_t n_samples;
    uint64_t full;
    tocsin_t *client;
    int udp_fd;
    struct sockaddr_in udp_to;
    void *zmq_ctx;
    const char *zmq_endpoint;
    pthread_barrier_t *start;
} worker_t;

static size_t encode_event(uint8_t *buf, size_t cap, const char *route, int status, uint64_t us)
{
    Tocsin__V1__Request r = TOCSIN__V1__REQUEST__INIT;
    r.route = (char *)route;
    r.method = (char *)"GET";
    r.status = (uint32_t)status;
    r.duration_us = us;
    Tocsin__V1__Event e = TOCSIN__V1__EVENT__INIT;
    static uint8_t id[16];
    e.event_id.data = id;
    e.event_id.len = 16;
    e.time_us = (int64_t)us;
    e.service = (char *)"bench";
    e.environment = (char *)"bench";
    e.host = (char *)"bench-host";
    e.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
    e.request = &r;
    size_t n = protobuf_c_message_get_packed_size(&e.base);
    return n <= cap ? protobuf_c_message_pack(&e.base, buf) : 0;
}

static void *worker_run(void *arg)
{
    worker_t *w = arg;
    void *push = NULL;
    if (w->way == WAY_ZMQ) {
        push = zmq_socket(w->zmq_ctx, ZMQ_PUSH);
        int hwm = 0, linger = 10000; /* closing must not drop what is still queued */
        zmq_setsockopt(push, ZMQ_SNDHWM, &hwm, sizeof(hwm));
        zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_connect(push, w->zmq_endpoint);
    }
    pthread_barrier_wait(w->start);
    char line[128];
    uint8_t buf[256];
    for (size_t i = 0; i < w->n; i++) {
        const char *route = routes[i & 3];
        int status = (i % 50 == 49) ? 500 : 200;
        uint64_t us = 1000 + (i & 1023);
        uint64_t a = ticks();
        int ok = 1;
        switch (w->way) {
        case WAY_TOCSIN:
            ok = tocsin_request(w->client, route, "GET", status, us) == TOCSIN_OK;
            break;
        case WAY_TOCSIN_OFFLINE: /* every call counts: recorded or refused, it must be cheap */
            ok = 1;
            if (tocsin_request(w->client, route, "GET", status, us) != TOCSIN_OK) {
                w->full++;
            }
            break;
        case WAY_UDP: {
            int len = snprintf(line, sizeof(line), "http.%s.%d:%llu|ms", route, status,
                               (unsigned long long)us);
            sendto(w->udp_fd, line, (size_t)len, 0, (struct sockaddr *)&w->udp_to,
                   sizeof(w->udp_to));
            break;
        }
        case WAY_ZMQ: {
            size_t len = encode_event(buf, sizeof(buf), route, status, us);
            zmq_send(push, buf, len, 0);
            break;
        }
        }
        uint64_t b = ticks();
        if (ok) {
            w->samples[w->n_samples++] = b - a;
        } else {
            w->full++;
        }
        if (w->way == WAY_TOCSIN && i % BURST == BURST - 1) {
            /* Let the background thread drain the queue: the figure is the cost of a
             * recorded event, not of a refused one. */
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (push) {
        zmq_close(push);
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Receiving ends for the peers. */

typedef struct {
    int fd;
    void *pull;
    _Atomic uint64_t received;
    _Atomic bool stop;
} reader_t;

static void *udp_reader(void *arg)
{
    reader_t *r = arg;
    char buf[2048];
    while (!atomic_load(&r->stop)) {
        ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
        if (n > 0) {
            atomic_fetch_add(&r->received, 1);
        }
    }
    return NULL;
}

static void *zmq_reader(void *arg)
{
    reader_t *r = arg;
    char buf[2048];
    while (!atomic_load(&r->stop)) {
        int n = zmq_recv(r->pull, buf, sizeof(buf), 0);
        if (n >= 0) {
            atomic_fetch_add(&r->received, 1);
        }
    }
    return NULL;
}

typedef struct {
    const char *collector;
    const char *dead; /* an endpoint nobody listens on */
    size_t events;
    int runs;
} config_t;

typedef struct {
    double median;
    double p99;
    double full_share;
} cost_t;

static tocsin_t *new_client(const config_t *cfg, uint32_t queue, bool offline)
{
    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = "bench";
    o.environment = "bench";
    o.collectors = offline ? cfg->dead : cfg->collector;
    o.shutdown_timeout_ms = 1000;
    o.queue_capacity = queue;
    o.batch_max_events = 2000;
    return tocsin_new(&o);
}

/* One way, `threads` recording threads, cfg->runs runs: medians of medians and p99s. */
static cost_t measure(const config_t *cfg, way_t way, int threads, reader_t *rd,
                      const struct sockaddr_in *udp_to, void *zctx, const char *zep)
{
    double med[64], p99[64], full_share[64];
    for (int run = 0; run < cfg->runs; run++) {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
        worker_t w[2];
        pthread_t t[2];
        tocsin_t *client = way == WAY_TOCSIN || way == WAY_TOCSIN_OFFLINE
                               ? new_client(cfg, 65536, way == WAY_TOCSIN_OFFLINE)
                               : NULL;
        int fds[2] = {-1, -1};
        for (int i = 0; i < threads; i++) {
            if (way == WAY_UDP) {
                fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
            }
            w[i] = (worker_t){.way = way,
                              .n = cfg->events,
                              .samples = malloc(cfg->events * sizeof(uint64_t)),
                              .client = client,
                              .udp_fd = fds[i],
                              .udp_to = udp_to ? *udp_to : (struct sockaddr_in){0},
                              .zmq_ctx = zctx,
                              .zmq_endpoint = zep,
                              .start = &start};
            pthread_create(&t[i], NULL, worker_run, &w[i]);
        }
        pthread_barrier_wait(&start);
        uint64_t *all = malloc((size_t)threads * cfg->events * sizeof(uint64_t));
        size_t n_all = 0;
        uint64_t full = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            memcpy(all + n_all, w[i].samples, w[i].n_samples * sizeof(uint64_t));
            n_all += w[i].n_samples;
            full += w[i].full;
            free(w[i].samples);
            if (fds[i] >= 0) {
                close(fds[i]);
            }
        }
        if (client) {
            tocsin_flush(client, way == WAY_TOCSIN ? 30000 : 0);
            tocsin_destroy(&client);
        }
        summarise(all, n_all, &med[run], &p99[run]);
        full_share[run] = (double)full / (double)((size_t)threads * cfg->events);
        free(all);
        pthread_barrier_destroy(&start);
    }
    (void)rd;
    return (cost_t){median_of(med, cfg->runs), median_of(p99, cfg->runs),
                    median_of(full_share, cfg->runs)};
}

/* Events per second reaching the receiving end, one sending thread. */
static double delivered_tocsin(const config_t *cfg, size_t n, uint64_t *acked_out)
{
    tocsin_t *c = new_client(cfg, 65536, false);
    if (!c) {
        return 0;
    }
    int64_t t0 = mono_ns();
    for (size_t i = 0; i < n; i++) {
        while (tocsin_request(c, routes[i & 3], "GET", 200, 1000 + (i & 1023)) == TOCSIN_EFULL) {
            sched_yield();
        }
    }
    int rc = tocsin_flush(c, 60000);
    int64_t t1 = mono_ns();
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    tocsin_destroy(&c);
    *acked_out = st.events_acked;
    return rc == 0 ? (double)st.events_acked / ((double)(t1 - t0) / 1e9) : 0;
}

static double delivered_peer(way_t way, size_t n, reader_t *rd, const struct sockaddr_in *to,
                             void *zctx, const char *zep, uint64_t *got_out)
{
    atomic_store(&rd->received, 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    int fd = way == WAY_UDP ? socket(AF_INET, SOCK_DGRAM, 0) : -1;
    worker_t w = {.way = way,
                  .n = n,
                  .samples = malloc(n * sizeof(uint64_t)),
                  .udp_fd = fd,
                  .udp_to = to ? *to : (struct sockaddr_in){0},
                  .zmq_ctx = zctx,
                  .zmq_endpoint = zep,
                  .start = &start};
    pthread_t t;
    pthread_create(&t, NULL, worker_run, &w);
    pthread_barrier_wait(&start);
    int64_t t0 = mono_ns();
    pthread_join(t, NULL);
    /* Until the reader has everything, or nothing more comes for 200 ms (UDP may drop). */
    uint64_t last = 0;
    int64_t last_change = mono_ns(), t1 = last_change;
    for (;;) {
        uint64_t got = atomic_load(&rd->received);
        if (got != last) {
            last = got;
            last_change = t1 = mono_ns();
        }
        if (got >= n || mono_ns() - last_change > 200000000) {
            break;
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    free(w.samples);
    if (fd >= 0) {
        close(fd);
    }
    pthread_barrier_destroy(&start);
    *got_out = last;
    return (double)last / ((double)(t1 - t0) / 1e9);
}

int main(int argc, char **argv)
{
    config_t cfg = {.collector = NULL, .events = 200000, .runs = 5};
    static const struct option longopts[] = {{"collector", required_argument, NULL, 'c'},
                                             {"events", required_argument, NULL, 'n'},
                                             {"runs", required_argument, NULL, 'r'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'c') {
            cfg.collector = optarg;
        } else if (ch == 'n') {
            cfg.events = strtoul(optarg, NULL, 10);
        } else if (ch == 'r') {
            cfg.runs = atoi(optarg);
        } else {
            return 2;
        }
    }
    if (!cfg.collector || cfg.events < 1000 || cfg.runs < 1 || cfg.runs > 64) {
        fprintf(stderr, "usage: bench_client --collector ENDPOINT [--events N>=1000] "
                        "[--runs 1..64]\n");
        return 2;
    }
    calibrate();
    {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t l = sizeof(a);
        bind(fd, (struct sockaddr *)&a, sizeof(a));
        getsockname(fd, (struct sockaddr *)&a, &l);
        static char dead[64];
        snprintf(dead, sizeof(dead), "tcp://127.0.0.1:%u", ntohs(a.sin_port));
        close(fd);
        cfg.dead = dead;
    }

    /* UDP receiving end. */
    reader_t udp = {0};
    udp.fd = socket(AF_INET, SOCK_DGRAM, 0);
    int rcvbuf = 32 * 1024 * 1024;
    setsockopt(udp.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct timeval tv = {0, 100000};
    setsockopt(udp.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(udp.fd, (struct sockaddr *)&addr, sizeof(addr));
    socklen_t alen = sizeof(addr);
    getsockname(udp.fd, (struct sockaddr *)&addr, &alen);
    pthread_t udp_t;
    pthread_create(&udp_t, NULL, udp_reader, &udp);

    /* ZeroMQ receiving end. */
    void *zctx = zmq_ctx_new();
    reader_t zr = {0};
    zr.pull = zmq_socket(zctx, ZMQ_PULL);
    int hwm = 0, linger = 0, rcvto = 100;
    zmq_setsockopt(zr.pull, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(zr.pull, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(zr.pull, ZMQ_RCVTIMEO, &rcvto, sizeof(rcvto));
    zmq_bind(zr.pull, "tcp://127.0.0.1:*");
    char zep[128];
    size_t zlen = sizeof(zep);
    zmq_getsockopt(zr.pull, ZMQ_LAST_ENDPOINT, zep, &zlen);
    pthread_t zmq_t;
    pthread_create(&zmq_t, NULL, zmq_reader, &zr);

    printf("bench_client: %zu events per thread per run, %d runs; TSC %.3f ns/tick, timing "
           "overhead %.1f ns subtracted; libtocsin to the collector at %s\n",
           cfg.events, cfg.runs, ns_per_tick, (double)timing_overhead * ns_per_tick, cfg.collector);
    printf("\nnanoseconds per recorded event on the calling thread (median of %d runs)\n",
           cfg.runs);
    printf("%-34s %8s %8s %8s %8s %10s\n", "", "1 thr", "", "2 thr", "", "");
    printf("%-34s %8s %8s %8s %8s %10s\n", "way", "median", "p99", "median", "p99", "full");
    const char *names[] = {"libtocsin tocsin_request", "UDP sendto per event (StatsD)",
                           "ZeroMQ send per event (protobuf)", "libtocsin, no collector reachable"};
    cost_t cost[4][2];
    for (int way = 0; way < 4; way++) {
        for (int th = 1; th <= 2; th++) {
            cost[way][th - 1] =
                measure(&cfg, (way_t)way, th, way == WAY_UDP ? &udp : &zr, &addr, zctx, zep);
        }
        printf("%-34s %8.1f %8.1f %8.1f %8.1f %9.2f%%\n", names[way], cost[way][0].median,
               cost[way][0].p99, cost[way][1].median, cost[way][1].p99,
               100 * cost[way][0].full_share);
        if (way == WAY_ZMQ) {
            printf("(no collector: every call timed, recorded or refused with TOCSIN_EFULL; "
                   "'full' is the share refused)\n");
        }
        fflush(stdout);
    }
    printf("\nratio, median cost per event (1 thread): sendto / libtocsin = %.1fx, "
           "zmq_send / libtocsin = %.1fx\n",
           cost[WAY_UDP][0].median / cost[WAY_TOCSIN][0].median,
           cost[WAY_ZMQ][0].median / cost[WAY_TOCSIN][0].median);
    printf("ratio, median cost per event (2 threads): sendto / libtocsin = %.1fx, "
           "zmq_send / libtocsin = %.1fx\n",
           cost[WAY_UDP][1].median / cost[WAY_TOCSIN][1].median,
           cost[WAY_ZMQ][1].median / cost[WAY_TOCSIN][1].median);
    printf("goal: libtocsin median < 150 ns: %s; >= 10x cheaper than sendto: %s\n",
           cost[WAY_TOCSIN][0].median < 150 ? "met" : "NOT met",
           cost[WAY_UDP][0].median >= 10 * cost[WAY_TOCSIN][0].median ? "met" : "NOT met");

    size_t n = cfg.events * 5;
    printf("\nevents per second delivered, one sending thread, %zu events (median of %d runs)\n", n,
           cfg.runs);
    double d[3][64];
    uint64_t got[3] = {0};
    for (int run = 0; run < cfg.runs; run++) {
        d[0][run] = delivered_tocsin(&cfg, n, &got[0]);
        d[1][run] = delivered_peer(WAY_UDP, n, &udp, &addr, zctx, zep, &got[1]);
        d[2][run] = delivered_peer(WAY_ZMQ, n, &zr, &addr, zctx, zep, &got[2]);
    }
    printf("%-34s %12.0f /s  (acknowledged by tocsin-collector: %llu of %zu in the last run)\n",
           names[0], median_of(d[0], cfg.runs), (unsigned long long)got[0], n);
    printf("%-34s %12.0f /s  (received by the UDP reader: %llu of %zu; no acknowledgement)\n",
           names[1], median_of(d[1], cfg.runs), (unsigned long long)got[1], n);
    printf("%-34s %12.0f /s  (received by the PULL socket: %llu of %zu; no acknowledgement)\n",
           names[2], median_of(d[2], cfg.runs), (unsigned long long)got[2], n);

    atomic_store(&udp.stop, true);
    atomic_store(&zr.stop, true);
    pthread_join(udp_t, NULL);
    pthread_join(zmq_t, NULL);
    close(udp.fd);
    zmq_close(zr.pull);
    zmq_ctx_term(zctx);
    return 0;
}
