/*
 * bench_latency_client — the service side of the latency benchmark (bench_latency.py):
 * records errors through libtocsin, with the client's default options, when told to, and
 * prints the wall-clock time of each tocsin_error call so the driver can time what follows
 * (the error counted in an aggregator's query answer, a page at the webhook).
 *
 * usage: bench_latency_client COLLECTORS ENVIRONMENT
 * Reads commands, one per line, on stdin, and answers each with one line on stdout:
 *   open SERVICE   creates a client for SERVICE (connecting ahead of the measurement);
 *                  answers "ok" or "error ..."
 *   err SERVICE    records one error (type BenchLatencyError) through SERVICE's client;
 *                  answers the CLOCK_REALTIME microseconds read just before the call, or
 *                  "error ..." when the call failed
 *   quit           flushes every client (5 s at most each) and exits 0
 * Exits 1 on a malformed command or end of input without quit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tocsin.h"

/* At most this many services (clients) at once. */
#define MAX_CLIENTS 512

typedef struct {
    char *service;
    tocsin_t *t;
} client_t;

static client_t clients[MAX_CLIENTS];
static size_t nclients;

static int64_t realtime_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static tocsin_t *find(const char *service)
{
    for (size_t i = 0; i < nclients; i++) {
        if (strcmp(clients[i].service, service) == 0) {
            return clients[i].t;
        }
    }
    return NULL;
}

static int open_client(const char *collectors, const char *environment, const char *service)
{
    if (find(service)) {
        return 0;
    }
    if (nclients == MAX_CLIENTS) {
        return -1;
    }
    tocsin_options_t o;
    tocsin_options_init(&o); /* the defaults: batch_interval_ms 50, stack traces on */
    o.service = service;
    o.environment = environment;
    o.collectors = collectors;
    char *copy = strdup(service);
    tocsin_t *t = copy ? tocsin_new(&o) : NULL;
    if (!t) {
        free(copy);
        return -1;
    }
    clients[nclients].service = copy;
    clients[nclients].t = t;
    nclients++;
    return 0;
}

static void close_all(void)
{
    for (size_t i = 0; i < nclients; i++) {
        (void)tocsin_flush(clients[i].t, 5000);
        tocsin_destroy(&clients[i].t);
        free(clients[i].service);
    }
    nclients = 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_latency_client COLLECTORS ENVIRONMENT\n");
        return 2;
    }
    char line[512];
    int rc = 1;
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "quit") == 0) {
            rc = 0;
            break;
        }
        if (strncmp(line, "open ", 5) == 0 && line[5] != '\0') {
            int orc = open_client(argv[1], argv[2], line + 5);
            printf(orc == 0 ? "ok\n" : "error cannot create a client\n");
        } else if (strncmp(line, "err ", 4) == 0) {
            tocsin_t *t = find(line + 4);
            if (!t) {
                printf("error no client for %s\n", line + 4);
            } else {
                int64_t at = realtime_us();
                int erc = tocsin_error(t, "BenchLatencyError", "measured", TOCSIN_LEVEL_ERROR);
                if (erc == TOCSIN_OK) {
                    printf("%lld\n", (long long)at);
                } else {
                    printf("error %s\n", tocsin_strerror(erc));
                }
            }
        } else {
            fprintf(stderr, "bench_latency_client: bad command: %s\n", line);
            break;
        }
        fflush(stdout);
    }
    close_all();
    return rc;
}
