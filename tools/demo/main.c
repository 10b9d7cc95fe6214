/*
 * tocsin-demo — traffic for local mode: a small web service's requests with a realistic
 * latency distribution, its metrics and errors, and after a while a burst of failures
 * that the demo alert rule (deploy/local/rules.yaml) fires on.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tocsin.h"

static const char usage[] =
    "usage: tocsin-demo [options]\n"
    "\n"
    "Emits the traffic of a small web service named \"demo\" through libtocsin: requests\n"
    "on four routes with log-normal latencies, a queue-depth gauge, a timing metric, and\n"
    "after --burst-after seconds a burst of failing requests and errors lasting\n"
    "--burst-for seconds. Stops on Ctrl-C.\n"
    "\n"
    "Options:\n"
    "  --collector EP     collector endpoint(s), comma-separated (default tcp://127.0.0.1:7420)\n"
    "  --service NAME     service name (default demo)\n"
    "  --rate N           requests per second (default 200)\n"
    "  --burst-after S    seconds before the error burst (default 60)\n"
    "  --burst-for S      length of the burst in seconds (default 60)\n"
    "  --burst-errors F   fraction of requests failing during the burst (default 0.15)\n"
    "  --duration S       stop after S seconds (default: run until Ctrl-C)\n";

static atomic_int stop;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop, 1);
}

/* xorshift64*: deterministic and cheap; the demo needs variety, not secrecy. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dULL) >> 11) / 9007199254740992.0;
}

static double normal(void)
{
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) {
        u1 = 1e-300;
    }
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

typedef struct {
    const char *route;
    const char *method;
    double median_ms;
    double sigma;
    double share;
} route_t;

static const route_t routes[] = {
    {"/", "GET", 12.0, 0.5, 0.40},
    {"/api/items", "GET", 35.0, 0.7, 0.30},
    {"/api/checkout", "POST", 120.0, 0.6, 0.20},
    {"/login", "POST", 60.0, 0.4, 0.10},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *collector = "tcp://127.0.0.1:7420";
    const char *service = "demo";
    double rate = 200, burst_after = 60, burst_for = 60, burst_errors = 0.15, duration = 0;
    static const struct option opts[] = {{"collector", required_argument, NULL, 'c'},
                                         {"service", required_argument, NULL, 's'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"burst-after", required_argument, NULL, 'a'},
                                         {"burst-for", required_argument, NULL, 'f'},
                                         {"burst-errors", required_argument, NULL, 'e'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'c':
            collector = optarg;
            break;
        case 's':
            service = optarg;
            break;
        case 'r':
            bad = parse_num(optarg, 1, 100000, &rate);
            break;
        case 'a':
            bad = parse_num(optarg, 0, 1e6, &burst_after);
            break;
        case 'f':
            bad = parse_num(optarg, 0, 1e6, &burst_for);
            break;
        case 'e':
            bad = parse_num(optarg, 0, 1, &burst_errors);
            break;
        case 'd':
            bad = parse_num(optarg, 0, 1e7, &duration);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "tocsin-demo: bad option (see --help)\n");
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    tocsin_options_t o;
    tocsin_options_init(&o);
    o.service = service;
    o.environment = "local";
    o.release = "demo@" TOCSIN_VERSION;
    o.collectors = collector;
    tocsin_t *t = tocsin_new(&o);
    if (!t) {
        fprintf(stderr, "tocsin-demo: cannot create the client\n");
        return 1;
    }
    printf("tocsin-demo: %s sending %.0f requests/s to %s; error burst in %.0f s for %.0f s\n",
           service, rate, collector, burst_after, burst_for);
    fflush(stdout);

    double start = now_s(), next = start, last_report = start;
    uint64_t sent = 0, failed = 0;
    int in_burst = 0;
    while (!atomic_load(&stop)) {
        double t_now = now_s();
        double elapsed = t_now - start;
        if (duration > 0 && elapsed >= duration) {
            break;
        }
        int burst = elapsed >= burst_after && elapsed < burst_after + burst_for;
        if (burst != in_burst) {
            printf("tocsin-demo: error burst %s\n", burst ? "STARTS" : "ends");
            fflush(stdout);
            in_burst = burst;
        }
        /* Catch up on the requests that were due since the last round. */
        while (next <= t_now) {
            double pick = uniform(), acc = 0;
            const route_t *r = &routes[0];
            for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
                acc += routes[i].share;
                if (pick <= acc) {
                    r = &routes[i];
                    break;
                }
            }
            double ms = r->median_ms * exp(r->sigma * normal());
            double p_fail = burst ? burst_errors : 0.005;
            int status = uniform() < p_fail ? 500 : (uniform() < 0.03 ? 404 : 200);
            if (status == 500) {
                ms *= 3; /* failing requests mostly time out */
                failed++;
                if (uniform() < 0.2) {
                    tocsin_error(t, burst ? "PaymentGatewayTimeout" : "ConnectionReset",
                                 burst ? "payment gateway did not answer within 5000 ms"
                                       : "connection reset by peer",
                                 TOCSIN_LEVEL_ERROR);
                }
            }
            tocsin_request(t, r->route, r->method, status, (uint64_t)(ms * 1000.0));
            sent++;
            next += 1.0 / rate;
        }
        if (t_now - last_report >= 10.0) {
            tocsin_metric(t, "queue.depth", TOCSIN_GAUGE, 20 + 10 * uniform(), "jobs");
            tocsin_metric(t, "db.query", TOCSIN_TIMING, 3.0 * exp(0.5 * normal()), "ms");
            tocsin_stats_t st;
            tocsin_stats(t, &st);
            printf("tocsin-demo: %llu requests (%llu failed), %llu events acked, %llu dropped\n",
                   (unsigned long long)sent, (unsigned long long)failed,
                   (unsigned long long)st.events_acked,
                   (unsigned long long)(st.dropped_queue_full + st.dropped_oversize));
            fflush(stdout);
            last_report = t_now;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int frc = tocsin_flush(t, 3000);
    tocsin_destroy(&t);
    printf("tocsin-demo: stopped after %llu requests%s\n", (unsigned long long)sent,
           frc == 0 ? "" : " (some events were not acknowledged)");
    return 0;
}
