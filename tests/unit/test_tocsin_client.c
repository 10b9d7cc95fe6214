/*
 * Delivery tests for libtocsin against real ZeroMQ: a ROUTER inside the test acts as a
 * collector on an ephemeral 127.0.0.1 port, decodes each Batch and answers with an Ack as
 * the test tells it (store, retry-after first, reject, hold, or never answer).
 *
 * The collector "stores" a batch when it acks it STORED, and stores each batch sequence
 * once (a resend of a stored batch is the same bytes), so counting stored events by their
 * route index shows loss or duplication by the client.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "tocsin.h"
#include "tocsin/v1/transport.pb-c.h"

extern char **environ;

/* ------------------------------------------------------------------------------------ */
/* The test collector. */

typedef enum {
    MODE_STORE,       /* ack every batch STORED */
    MODE_RETRY_FIRST, /* answer a sequence's first arrival with RETRY_AFTER, then STORED */
    MODE_REJECT,      /* ack every batch REJECTED */
    MODE_SILENT,      /* never answer */
    MODE_HOLD,        /* keep batches unanswered until released, then store them */
} mode_t_;

enum { MAX_INDEX = 20000, MAX_SEQ = 4096, MAX_HELD = 256, MAX_PEERS = 8, MAX_KEPT = 256 };

typedef struct {
    mode_t_ mode;
    void *ctx;
    void *router;
    void *monitor; /* PAIR receiving the ROUTER's handshake events */
    char endpoint[128];
    pthread_t thread;
    _Atomic bool stop;
    _Atomic bool release; /* MODE_HOLD: answer what is held, and store from now on */

    pthread_mutex_t lock; /* guards everything below */
    uint64_t connections; /* ZMTP handshakes completed with clients */
    uint64_t batches_received;
    uint64_t events_stored;
    uint32_t index_count[MAX_INDEX]; /* stored requests per route index "/r/<i>" */
    /* Sequences are per client connection: a forked child's client counts from 1 again. */
    uint8_t peers[MAX_PEERS][16];
    size_t peer_len[MAX_PEERS];
    int n_peers;
    bool seq_seen[MAX_PEERS][MAX_SEQ];
    bool seq_stored[MAX_PEERS][MAX_SEQ];
    uint64_t dropped_queue_full; /* sums of ClientCounters over stored batches */
    uint64_t carried_drops;      /* sum of the tocsin.client.dropped metric events */
    uint64_t largest_batch;      /* most events in one batch, carriers included */
    uint64_t sampled_out;        /* more sums of ClientCounters */
    uint64_t dropped_oversize;
    uint64_t dropped_before_send;
    uint8_t *kept[MAX_KEPT]; /* every stored event that is not a /r/<i> request, packed */
    size_t kept_len[MAX_KEPT];
    uint64_t n_kept;
    uint64_t retried;
    uint64_t bad_batches;
    char sdk[64];
    char api_key[64];
    Tocsin__V1__Event *sample_error; /* copies of the last error and metric stored */
    Tocsin__V1__Event *sample_metric;
    Tocsin__V1__Batch *sample_owner[2];

    /* MODE_HOLD: the messages held (identity and batch), answered on release. */
    zmq_msg_t held_id[MAX_HELD];
    zmq_msg_t held_body[MAX_HELD];
    int n_held;
} collector_t;

static void reply(collector_t *col, zmq_msg_t *id, uint64_t seq, Tocsin__V1__Ack__Status st,
                  uint32_t retry_after_ms, const char *reason)
{
    Tocsin__V1__Ack ack = TOCSIN__V1__ACK__INIT;
    ack.sequence = seq;
    ack.status = st;
    ack.retry_after_ms = retry_after_ms;
    ack.reason = (char *)reason;
    uint8_t buf[512];
    size_t len = protobuf_c_message_pack(&ack.base, buf);
    zmq_msg_send(id, col->router, ZMQ_SNDMORE);
    zmq_send(col->router, buf, len, 0);
}

/* The index of the client connection a message came from (under the lock). */
static int peer_of(collector_t *col, zmq_msg_t *id)
{
    size_t len = zmq_msg_size(id) < 16 ? zmq_msg_size(id) : 16;
    for (int i = 0; i < col->n_peers; i++) {
        if (col->peer_len[i] == len && memcmp(col->peers[i], zmq_msg_data(id), len) == 0) {
            return i;
        }
    }
    assert_true(col->n_peers < MAX_PEERS);
    memcpy(col->peers[col->n_peers], zmq_msg_data(id), len);
    col->peer_len[col->n_peers] = len;
    return col->n_peers++;
}

/* Stores a decoded batch (under the lock). Takes ownership of b. */
static void store(collector_t *col, int peer, Tocsin__V1__Batch *b)
{
    bool keep = false;
    if (b->sequence < MAX_SEQ && !col->seq_stored[peer][b->sequence]) {
        col->seq_stored[peer][b->sequence] = true;
        if (b->counters) {
            col->dropped_queue_full += b->counters->dropped_queue_full;
            col->retried += b->counters->retried;
            col->sampled_out += b->counters->sampled_out;
            col->dropped_oversize += b->counters->dropped_oversize;
            col->dropped_before_send += b->counters->dropped_before_send;
        }
        if (b->n_events > col->largest_batch) {
            col->largest_batch = b->n_events;
        }
        snprintf(col->sdk, sizeof(col->sdk), "%s", b->sdk);
        snprintf(col->api_key, sizeof(col->api_key), "%s", b->api_key);
        for (size_t i = 0; i < b->n_events; i++) {
            Tocsin__V1__Event *e = b->events[i];
            if (e->body_case == TOCSIN__V1__EVENT__BODY_METRIC &&
                strcmp(e->metric->name, "tocsin.client.dropped") == 0) {
                col->carried_drops += (uint64_t)e->metric->value; /* not a recorded event */
                continue;
            }
            col->events_stored++;
            unsigned idx;
            bool indexed = e->body_case == TOCSIN__V1__EVENT__BODY_REQUEST &&
                           sscanf(e->request->route, "/r/%u", &idx) == 1;
            if (!indexed && col->n_kept < MAX_KEPT) {
                size_t n = protobuf_c_message_get_packed_size(&e->base);
                col->kept[col->n_kept] = malloc(n);
                col->kept_len[col->n_kept] =
                    protobuf_c_message_pack(&e->base, col->kept[col->n_kept]);
                col->n_kept++;
            }
            if (e->body_case == TOCSIN__V1__EVENT__BODY_REQUEST &&
                sscanf(e->request->route, "/r/%u", &idx) == 1 && idx < MAX_INDEX) {
                col->index_count[idx]++;
            } else if (e->body_case == TOCSIN__V1__EVENT__BODY_ERROR) {
                col->sample_error = e;
                keep = true;
            } else if (e->body_case == TOCSIN__V1__EVENT__BODY_METRIC) {
                col->sample_metric = e;
                keep = true;
            }
        }
    }
    if (keep) {
        /* Keep this batch alive while it holds a sample; free the one it replaces. */
        if (col->sample_owner[1]) {
            tocsin__v1__batch__free_unpacked(col->sample_owner[1], NULL);
        }
        col->sample_owner[1] = col->sample_owner[0];
        col->sample_owner[0] = b;
    } else {
        tocsin__v1__batch__free_unpacked(b, NULL);
    }
}

/* Handles one batch; returns false when it was held (MODE_HOLD). */
static void handle(collector_t *col, zmq_msg_t *id, zmq_msg_t *body)
{
    Tocsin__V1__Batch *b = tocsin__v1__batch__unpack(NULL, zmq_msg_size(body), zmq_msg_data(body));
    pthread_mutex_lock(&col->lock);
    col->batches_received++;
    if (!b) {
        col->bad_batches++;
        pthread_mutex_unlock(&col->lock);
        return;
    }
    uint64_t seq = b->sequence;
    int peer = peer_of(col, id);
    bool first = seq < MAX_SEQ && !col->seq_seen[peer][seq];
    if (seq < MAX_SEQ) {
        col->seq_seen[peer][seq] = true;
    }
    switch (col->mode) {
    case MODE_STORE:
    case MODE_HOLD:
        store(col, peer, b);
        pthread_mutex_unlock(&col->lock);
        reply(col, id, seq, TOCSIN__V1__ACK__STATUS__STATUS_STORED, 0, "");
        return;
    case MODE_RETRY_FIRST:
        if (first) {
            tocsin__v1__batch__free_unpacked(b, NULL);
            pthread_mutex_unlock(&col->lock);
            reply(col, id, seq, TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER, 30, "busy");
        } else {
            store(col, peer, b);
            pthread_mutex_unlock(&col->lock);
            reply(col, id, seq, TOCSIN__V1__ACK__STATUS__STATUS_STORED, 0, "");
        }
        return;
    case MODE_REJECT:
        tocsin__v1__batch__free_unpacked(b, NULL);
        pthread_mutex_unlock(&col->lock);
        reply(col, id, seq, TOCSIN__V1__ACK__STATUS__STATUS_REJECTED, 0, "unknown api key");
        return;
    case MODE_SILENT:
        tocsin__v1__batch__free_unpacked(b, NULL);
        pthread_mutex_unlock(&col->lock);
        return;
    }
}

static void *collector_run(void *arg)
{
    collector_t *col = arg;
    while (!atomic_load(&col->stop)) {
        if (col->mode == MODE_HOLD && atomic_load(&col->release) && col->n_held > 0) {
            for (int i = 0; i < col->n_held; i++) {
                handle(col, &col->held_id[i], &col->held_body[i]);
                zmq_msg_close(&col->held_id[i]);
                zmq_msg_close(&col->held_body[i]);
            }
            col->n_held = 0;
        }
        zmq_pollitem_t items[2] = {{.socket = col->router, .events = ZMQ_POLLIN},
                                   {.socket = col->monitor, .events = ZMQ_POLLIN}};
        if (zmq_poll(items, 2, 20) <= 0) {
            continue;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            /* A monitor event: a frame with the event number, then one with the address. */
            zmq_msg_t ev;
            zmq_msg_init(&ev);
            int more = 1;
            while (more && zmq_msg_recv(&ev, col->monitor, 0) >= 0) {
                more = zmq_msg_more(&ev);
            }
            zmq_msg_close(&ev);
            pthread_mutex_lock(&col->lock);
            col->connections++;
            pthread_mutex_unlock(&col->lock);
        }
        if (!(items[0].revents & ZMQ_POLLIN)) {
            continue;
        }
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, col->router, 0) < 0 || !zmq_msg_more(&id) ||
            zmq_msg_recv(&body, col->router, 0) < 0 || zmq_msg_more(&body)) {
            zmq_msg_close(&id);
            zmq_msg_close(&body);
            continue;
        }
        if (col->mode == MODE_HOLD && !atomic_load(&col->release) && col->n_held < MAX_HELD) {
            pthread_mutex_lock(&col->lock);
            col->batches_received++;
            pthread_mutex_unlock(&col->lock);
            zmq_msg_init(&col->held_id[col->n_held]);
            zmq_msg_init(&col->held_body[col->n_held]);
            zmq_msg_move(&col->held_id[col->n_held], &id);
            zmq_msg_move(&col->held_body[col->n_held], &body);
            col->n_held++;
        } else {
            handle(col, &id, &body);
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

/* When set, the next collector_start makes a CURVE server with this secret key (Z85). */
static const char *curve_secret_for_next;

static collector_t *collector_start(mode_t_ mode)
{
    collector_t *col = calloc(1, sizeof(*col));
    assert_non_null(col);
    col->mode = mode;
    pthread_mutex_init(&col->lock, NULL);
    col->ctx = zmq_ctx_new();
    col->router = zmq_socket(col->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(col->router, ZMQ_LINGER, &linger, sizeof(linger));
    if (curve_secret_for_next) {
        int one = 1;
        assert_int_equal(zmq_setsockopt(col->router, ZMQ_CURVE_SERVER, &one, sizeof(one)), 0);
        assert_int_equal(
            zmq_setsockopt(col->router, ZMQ_CURVE_SECRETKEY, curve_secret_for_next, 40), 0);
        curve_secret_for_next = NULL;
    }
    assert_int_equal(zmq_bind(col->router, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof(col->endpoint);
    assert_int_equal(zmq_getsockopt(col->router, ZMQ_LAST_ENDPOINT, col->endpoint, &len), 0);
    char mon[64];
    snprintf(mon, sizeof(mon), "inproc://monitor-%p", (void *)col);
    assert_int_equal(zmq_socket_monitor(col->router, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED), 0);
    col->monitor = zmq_socket(col->ctx, ZMQ_PAIR);
    zmq_setsockopt(col->monitor, ZMQ_LINGER, &linger, sizeof(linger));
    assert_int_equal(zmq_connect(col->monitor, mon), 0);
    assert_int_equal(pthread_create(&col->thread, NULL, collector_run, col), 0);
    return col;
}

static void collector_stop(collector_t **col_p)
{
    collector_t *col = *col_p;
    atomic_store(&col->stop, true);
    pthread_join(col->thread, NULL);
    for (int i = 0; i < col->n_held; i++) {
        zmq_msg_close(&col->held_id[i]);
        zmq_msg_close(&col->held_body[i]);
    }
    zmq_socket_monitor(col->router, NULL, 0);
    zmq_close(col->monitor);
    zmq_close(col->router);
    zmq_ctx_term(col->ctx);
    for (uint64_t i = 0; i < col->n_kept; i++) {
        free(col->kept[i]);
    }
    for (int i = 0; i < 2; i++) {
        if (col->sample_owner[i]) {
            tocsin__v1__batch__free_unpacked(col->sample_owner[i], NULL);
        }
    }
    pthread_mutex_destroy(&col->lock);
    free(col);
    *col_p = NULL;
}

static uint64_t collector_get(collector_t *col, const uint64_t *field)
{
    pthread_mutex_lock(&col->lock);
    uint64_t v = *field;
    pthread_mutex_unlock(&col->lock);
    return v;
}

/* Waits (bounded: 20 s) until *field reaches `min`; returns whether it did. */
static bool collector_wait(collector_t *col, const uint64_t *field, uint64_t min)
{
    struct timespec ts = {0, 5 * 1000000L};
    for (int i = 0; i < 4000; i++) {
        if (collector_get(col, field) >= min) {
            return true;
        }
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Stored event i of those kept (not /r/<i> requests), decoded; free with
 * tocsin__v1__event__free_unpacked. NULL when there is no such event. */
static Tocsin__V1__Event *collector_kept(collector_t *col, uint64_t i)
{
    pthread_mutex_lock(&col->lock);
    Tocsin__V1__Event *e =
        i < col->n_kept ? tocsin__v1__event__unpack(NULL, col->kept_len[i], col->kept[i]) : NULL;
    pthread_mutex_unlock(&col->lock);
    return e;
}

/* The first kept event for which pred holds (decoded, the caller frees), or NULL. */
static Tocsin__V1__Event *collector_find(collector_t *col, bool (*pred)(const Tocsin__V1__Event *))
{
    uint64_t n = collector_get(col, &col->n_kept);
    for (uint64_t i = 0; i < n; i++) {
        Tocsin__V1__Event *e = collector_kept(col, i);
        if (e && pred(e)) {
            return e;
        }
        if (e) {
            tocsin__v1__event__free_unpacked(e, NULL);
        }
    }
    return NULL;
}

/* An endpoint on which nothing listens: bound once to get a free port, then closed. */
static void dead_endpoint(char *out, size_t len)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    assert_int_equal(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, out, &len), 0);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* ------------------------------------------------------------------------------------ */
/* Helpers. */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded: 20 s) until the client's stats satisfy `pred`. */
static bool wait_stats(tocsin_t *c, bool (*pred)(const tocsin_stats_t *), tocsin_stats_t *out)
{
    int64_t deadline = now_ms() + 20000;
    do {
        tocsin_stats(c, out);
        if (pred(out)) {
            return true;
        }
        sleep_ms(5);
    } while (now_ms() < deadline);
    return false;
}

static void options_for(tocsin_options_t *o, const char *collectors)
{
    tocsin_options_init(o);
    o->service = "checkout";
    o->environment = "test";
    o->release = "9.9.9";
    o->host = "test-host";
    o->api_key = "key-abc";
    o->collectors = collectors;
}

static int record_requests(tocsin_t *c, int from, int to, uint64_t *full)
{
    char route[32];
    int ok = 0;
    for (int i = from; i < to; i++) {
        snprintf(route, sizeof(route), "/r/%d", i);
        int rc = tocsin_request(c, route, "GET", 200 + i % 400, (uint64_t)i);
        if (rc == TOCSIN_OK) {
            ok++;
        } else {
            assert_int_equal(rc, TOCSIN_EFULL);
            (*full)++;
        }
    }
    return ok;
}

static void assert_each_index_once(collector_t *col, int from, int to)
{
    pthread_mutex_lock(&col->lock);
    for (int i = from; i < to; i++) {
        if (col->index_count[i] != 1) {
            pthread_mutex_unlock(&col->lock);
            fail_msg("event /r/%d stored %u times", i, col->index_count[i]);
        }
    }
    pthread_mutex_unlock(&col->lock);
}

/* ------------------------------------------------------------------------------------ */
/* Tests. */

/* Every event arrives exactly once, with every field, and the stats agree. */
static void test_delivery_exactly_once(void **state)
{
    (void)state;
    enum { N = 5000 };
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.batch_max_events = 100;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);

    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, N, &full), N); /* the queue holds all N */
    assert_int_equal(tocsin_error(c, "PaymentDeclined", "card declined", TOCSIN_LEVEL_ERROR), 0);
    assert_int_equal(tocsin_metric(c, "cart.items", TOCSIN_GAUGE, 3.5, "items"), 0);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);

    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.recorded, N + 2);
    assert_int_equal(st.events_acked, N + 2);
    assert_int_equal(st.dropped_queue_full, 0);
    assert_int_equal(st.batches_acked, st.batches_sent);
    assert_true(st.batches_sent >= (N + 2) / 100);
    assert_int_equal(st.events_rejected, 0);
    assert_int_equal(st.acks_invalid, 0);

    assert_int_equal(collector_get(col, &col->events_stored), N + 2);
    assert_int_equal(collector_get(col, &col->bad_batches), 0);
    assert_each_index_once(col, 0, N);
    pthread_mutex_lock(&col->lock);
    assert_string_equal(col->sdk, "libtocsin/" TOCSIN_VERSION);
    assert_string_equal(col->api_key, "key-abc");
    Tocsin__V1__Event *e = col->sample_error;
    assert_non_null(e);
    assert_string_equal(e->service, "checkout");
    assert_string_equal(e->environment, "test");
    assert_string_equal(e->release, "9.9.9");
    assert_string_equal(e->host, "test-host");
    assert_int_equal(e->event_id.len, 16);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t wall_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    assert_true(e->time_us <= wall_us && e->time_us > wall_us - 600 * 1000000LL);
    assert_string_equal(e->error->type, "PaymentDeclined");
    assert_string_equal(e->error->message, "card declined");
    assert_int_equal(e->error->level, TOCSIN__V1__LEVEL__LEVEL_ERROR);
    e = col->sample_metric;
    assert_non_null(e);
    assert_string_equal(e->metric->name, "cart.items");
    assert_int_equal(e->metric->kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE);
    assert_true(e->metric->value == 3.5);
    assert_string_equal(e->metric->unit, "items");
    pthread_mutex_unlock(&col->lock);

    /* A second round on the same client. */
    assert_int_equal(record_requests(c, N, N + 100, &full), 100);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    assert_each_index_once(col, 0, N + 100);

    tocsin_destroy(&c);
    assert_null(c);
    collector_stop(&col);
}

/* Several threads record at once; each of their events arrives exactly once. */
typedef struct {
    tocsin_t *c;
    int from;
    int to;
    uint64_t full;
    int ok;
} recorder_t;

static void *recorder_run(void *arg)
{
    recorder_t *r = arg;
    char route[32];
    for (int i = r->from; i < r->to; i++) {
        snprintf(route, sizeof(route), "/r/%d", i);
        int rc;
        /* Retry on a full queue so that every event gets in: loss is tested elsewhere. */
        while ((rc = tocsin_request(r->c, route, "GET", 200, 1)) == TOCSIN_EFULL) {
            r->full++;
            sched_yield();
        }
        if (rc == TOCSIN_OK) {
            r->ok++;
        }
    }
    return NULL;
}

static void test_threads_exactly_once(void **state)
{
    (void)state;
    enum { THREADS = 4, PER = 4000 };
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.queue_capacity = 256; /* small, so that the threads meet a full queue */
    o.batch_max_events = 64;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    recorder_t r[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        r[i] = (recorder_t){.c = c, .from = i * PER, .to = (i + 1) * PER};
        assert_int_equal(pthread_create(&t[i], NULL, recorder_run, &r[i]), 0);
    }
    uint64_t full = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].ok, PER);
        full += r[i].full;
    }
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.recorded, THREADS * PER);
    assert_int_equal(st.dropped_queue_full, full);
    assert_int_equal(st.events_acked, THREADS * PER);
    assert_each_index_once(col, 0, THREADS * PER);
    tocsin_destroy(&c);
    collector_stop(&col);
}

static bool retried_and_acked(const tocsin_stats_t *st)
{
    return st->batches_retried >= 1 && st->events_acked == st->recorded;
}

/* A collector that answers RETRY_AFTER first: the events still arrive, once each, and the
 * resends are counted. */
static void test_retry_after(void **state)
{
    (void)state;
    enum { N = 300 };
    collector_t *col = collector_start(MODE_RETRY_FIRST);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.batch_max_events = 50;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, N, &full), N);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    assert_true(wait_stats(c, retried_and_acked, &st));
    assert_int_equal(st.events_acked, N);
    /* Every batch was turned away once, so each was resent at least once. */
    assert_true(st.batches_retried >= st.batches_sent);
    assert_int_equal(collector_get(col, &col->events_stored), N);
    assert_each_index_once(col, 0, N);
    tocsin_destroy(&c);
    collector_stop(&col);
}

/* A collector that never answers: recording never waits (a full queue answers EFULL at
 * once, and every drop is counted), flush and destroy return within their bounds, and the
 * batch is resent after its ack time-out. */
static bool retried(const tocsin_stats_t *st)
{
    return st->batches_retried >= 1;
}

static void test_silent_collector(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_SILENT);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.queue_capacity = 64;
    o.batch_max_events = 16;
    o.max_inflight_batches = 2;
    o.ack_timeout_ms = 100;
    o.shutdown_timeout_ms = 300;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);

    uint64_t full = 0;
    int ok = record_requests(c, 0, 10000, &full);
    assert_true(full > 0); /* 2 batches in flight + one pending + 64 queued < 10000 */
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.recorded, (uint64_t)ok);
    assert_int_equal(st.dropped_queue_full, full);

    int64_t t0 = now_ms();
    assert_int_equal(tocsin_flush(c, 200), TOCSIN_ETIMEDOUT);
    assert_true(now_ms() - t0 < 200 + 5000);

    assert_true(wait_stats(c, retried, &st));
    assert_int_equal(st.events_acked, 0);
    assert_true(collector_wait(col, &col->batches_received, 2)); /* a batch and its resend */

    /* Still non-blocking: the queue is full, so each call is refused at once. */
    uint64_t more_full = 0;
    record_requests(c, 0, 1000, &more_full);
    tocsin_stats(c, &st);
    assert_int_equal(st.dropped_queue_full, full + more_full);

    t0 = now_ms();
    tocsin_destroy(&c);
    int64_t took = now_ms() - t0;
    assert_null(c);
    /* The bound is 300 ms; the margin covers thread joins on a loaded, sanitised machine. */
    assert_true(took < 300 + 5000);
    collector_stop(&col);
}

/* Two endpoints, the first dead: the traffic goes to the second, all of it, once. */
static void test_failover_dead_first(void **state)
{
    (void)state;
    enum { N = 1000 };
    char dead[128];
    dead_endpoint(dead, sizeof(dead));
    collector_t *col = collector_start(MODE_STORE);
    char collectors[300];
    snprintf(collectors, sizeof(collectors), "%s,%s", dead, col->endpoint);
    tocsin_options_t o;
    options_for(&o, collectors);
    o.batch_max_events = 100;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, N, &full), N);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.events_acked, N);
    assert_int_equal(collector_get(col, &col->events_stored), N);
    assert_each_index_once(col, 0, N);
    tocsin_destroy(&c);
    collector_stop(&col);
}

/* Two endpoints, the first alive but silent: after the ack time-out the batches move to
 * the second, and everything arrives there once. */
static void test_failover_silent_first(void **state)
{
    (void)state;
    enum { N = 500 };
    collector_t *silent = collector_start(MODE_SILENT);
    collector_t *col = collector_start(MODE_STORE);
    char collectors[300];
    snprintf(collectors, sizeof(collectors), "%s,%s", silent->endpoint, col->endpoint);
    tocsin_options_t o;
    options_for(&o, collectors);
    o.batch_max_events = 100;
    o.ack_timeout_ms = 200;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    /* Once the client is connected to both, the first batches go to the silent one
     * (a send to an endpoint not yet connected would be refused and fail over at once,
     * which is the other test). */
    assert_true(collector_wait(silent, &silent->connections, 1));
    assert_true(collector_wait(col, &col->connections, 1));
    sleep_ms(100); /* the client's side of the handshake finishes a moment later */
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, N, &full), N);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.events_acked, N);
    assert_true(collector_wait(silent, &silent->batches_received, 1));
    assert_true(st.batches_retried >= 1);
    assert_each_index_once(col, 0, N);
    tocsin_destroy(&c);
    collector_stop(&col);
    collector_stop(&silent);
}

/* A collector that rejects: nothing is retried, the events are counted as rejected, and a
 * flush counts them as settled. */
static void test_rejected(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_REJECT);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, 10, &full), 10);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_true(st.batches_rejected >= 1);
    assert_int_equal(st.events_rejected, 10);
    assert_int_equal(st.events_acked, 0);
    assert_int_equal(st.batches_retried, 0);
    tocsin_destroy(&c);
    collector_stop(&col);
}

static bool one_sent(const tocsin_stats_t *st)
{
    return st->batches_sent >= 1;
}

/* A full queue: drops are counted exactly, by the client and in the ClientCounters the
 * collector receives; the memory stays bounded because the client stops draining while
 * its in-flight batches wait. */
static void test_queue_full_reported(void **state)
{
    (void)state;
    enum { CAPACITY = 50, BATCH = 10, N = 1000 };
    collector_t *col = collector_start(MODE_HOLD);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.queue_capacity = CAPACITY;
    o.batch_max_events = BATCH;
    o.max_inflight_batches = 1;
    o.ack_timeout_ms = 600000; /* no resend: the held batch stays the only one in flight */
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);

    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, 1, &full), 1);
    assert_int_equal(tocsin_flush(c, 0), TOCSIN_ETIMEDOUT); /* sends the first batch now */
    tocsin_stats_t st;
    assert_true(wait_stats(c, one_sent, &st));
    int64_t deadline = now_ms() + 20000;
    while (collector_get(col, &col->batches_received) == 0 && now_ms() < deadline) {
        sleep_ms(5);
    }
    assert_int_equal(collector_get(col, &col->batches_received), 1);

    /* The one batch in flight is held: the client can take CAPACITY events into the queue
     * and at most BATCH more into the next batch; the rest are dropped. */
    int ok = record_requests(c, 1, N, &full);
    assert_true(ok >= CAPACITY && ok <= CAPACITY + BATCH);
    assert_int_equal((uint64_t)ok + full, N - 1);
    tocsin_stats(c, &st);
    assert_int_equal(st.dropped_queue_full, full);
    assert_int_equal(st.recorded, (uint64_t)ok + 1);

    atomic_store(&col->release, true);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    /* Drops are reported in the batch after them: one more event carries the rest. */
    assert_int_equal(tocsin_request(c, "/r/19999", "GET", 200, 1), TOCSIN_OK);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats(c, &st);
    assert_int_equal(st.events_acked, st.recorded);
    assert_int_equal(collector_get(col, &col->events_stored), st.recorded);
    assert_int_equal(collector_get(col, &col->dropped_queue_full), full);
    assert_int_equal(collector_get(col, &col->carried_drops), full);
    /* The carrier of the drop counts takes a place of the batch, never one more. */
    assert_true(collector_get(col, &col->largest_batch) <= BATCH);
    tocsin_destroy(&c);
    collector_stop(&col);
}

/* tocsin_destroy sends what was recorded, without a flush. */
static void test_destroy_sends_pending(void **state)
{
    (void)state;
    enum { N = 200 };
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.batch_interval_ms = 60000; /* nothing would be sent before destroy otherwise */
    o.shutdown_timeout_ms = 20000;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, N, &full), N);
    tocsin_destroy(&c);
    assert_int_equal(collector_get(col, &col->events_stored), N);
    assert_each_index_once(col, 0, N);
    collector_stop(&col);
}

/* After fork(), the child gets a working client of its own: it starts empty (the events
 * queued before fork() are the parent's to send), sends its own events once, and the
 * parent's client keeps working. Nothing is sent twice. */
static void test_forked_child(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.batch_interval_ms = 60000; /* events stay queued until flush */
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, 10, &full), 10);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    assert_int_equal(record_requests(c, 10, 15, &full), 5); /* queued at fork time */

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20); /* a hang kills the child, and the parent sees it */
        tocsin_stats_t st;
        tocsin_stats(c, &st);
        int ok = st.recorded == 0 && st.events_acked == 0;
        char route[32];
        for (int i = 100; i < 110; i++) {
            snprintf(route, sizeof(route), "/r/%d", i);
            ok = ok && tocsin_request(c, route, "GET", 200, 1) == TOCSIN_OK;
        }
        int frc = tocsin_flush(c, 10000);
        tocsin_stats(c, &st);
        if (!ok || frc != 0 || st.recorded != 10 || st.events_acked != 10) {
            fprintf(stderr, "child: ok %d flush %d recorded %llu acked %llu\n", ok, frc,
                    (unsigned long long)st.recorded, (unsigned long long)st.events_acked);
            ok = 0;
        }
        tocsin_destroy(&c);
        ok = ok && c == NULL;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    assert_int_equal(record_requests(c, 15, 20, &full), 5);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_destroy(&c);
    assert_int_equal(collector_get(col, &col->events_stored), 30);
    assert_each_index_once(col, 0, 20);
    assert_each_index_once(col, 100, 110);

    /* A child that never uses the client frees it without starting anything. */
    c = tocsin_new(&o);
    assert_non_null(c);
    pid = fork();
    if (pid == 0) {
        alarm(20);
        tocsin_destroy(&c);
        _exit(c == NULL ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    tocsin_destroy(&c);
    collector_stop(&col);
}

/* The example program exits 0 against a collector that stores, and its events arrive. */
static void test_example_program(void **state)
{
    (void)state;
    const char *path = getenv("TOCSIN_EXAMPLE");
    if (!path) {
        skip(); /* run through ctest, which sets it */
    }
    collector_t *col = collector_start(MODE_STORE);
    char *argv[] = {(char *)path, col->endpoint, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, path, NULL, NULL, argv, environ), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(collector_get(col, &col->events_stored), 6);
    collector_stop(&col);
}

/* ------------------------------------------------------------------------------------ */
/* Events beyond requests: logs, scope, tags, fingerprints, frames, stacks, hooks,
 * sampling, CURVE. */

static bool is_log(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_LOG;
}

static bool is_heartbeat(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_METRIC &&
           strcmp(e->metric->name, "heartbeat") == 0;
}

static bool is_bound_error(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_ERROR &&
           strcmp(e->error->type, "BindingError") == 0;
}

static const char *tag_of(const Tocsin__V1__Event *e, const char *key)
{
    for (size_t i = 0; i < e->n_tags; i++) {
        if (strcmp(e->tags[i]->key, key) == 0) {
            return e->tags[i]->value;
        }
    }
    return NULL;
}

typedef struct {
    tocsin_t *c;
    const char *trace;
    const char *route;
} scoped_t;

static void *scoped_run(void *arg)
{
    scoped_t *x = arg;
    assert_int_equal(tocsin_scope_set_trace_id(x->trace), TOCSIN_OK);
    assert_int_equal(tocsin_scope_set_tag("worker", x->trace), TOCSIN_OK);
    assert_int_equal(tocsin_request(x->c, x->route, "GET", 200, 5), TOCSIN_OK);
    return NULL;
}

static bool is_route_a(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_REQUEST && strcmp(e->request->route, "/a") == 0;
}

static bool is_route_b(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_REQUEST && strcmp(e->request->route, "/b") == 0;
}

/* Logs with fields, heartbeats, client tags merged with each thread's own scope, explicit
 * fingerprints and frames passed in by a binding, and a long message over chained slots:
 * everything arrives as given. */
static void test_logs_scope_and_bindings(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    tocsin_tag_t tags[] = {{"region", "eu-1"}, {"worker", "main"}};
    o.tags = tags;
    o.n_tags = 2;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);

    tocsin_tag_t fields[] = {{"table", "users"}, {"rows", "42"}};
    assert_int_equal(tocsin_log(c, TOCSIN_LEVEL_WARNING, "db.pool", "slow query", fields, 2), 0);
    assert_int_equal(tocsin_heartbeat(c), 0);
    scoped_t x[2] = {{c, "trace-a", "/a"}, {c, "trace-b", "/b"}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, scoped_run, &x[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    /* This thread's scope is untouched by the others'. */
    assert_string_equal(tocsin_scope_trace_id(), "");

    char *message = malloc(TOCSIN_MESSAGE_MAX + 1);
    for (int i = 0; i < TOCSIN_MESSAGE_MAX; i++) {
        message[i] = (char)('a' + i % 26);
    }
    message[TOCSIN_MESSAGE_MAX] = '\0';
    tocsin_frame_t frames[3] = {
        {"handler", "app.views", "app/views.py", 31, true, 0},
        {"dispatch", "framework", "framework/core.py", 210, false, 0},
        {NULL, NULL, NULL, 0, false, 0xdeadbeef},
    };
    const char *fp[] = {"db", "timeout"};
    tocsin_error_t err = {.type = "BindingError",
                          .message = message,
                          .level = TOCSIN_LEVEL_WARNING,
                          .frames = frames,
                          .n_frames = 3,
                          .fingerprint = fp,
                          .n_fingerprint = 2,
                          .mechanism = "exception"};
    assert_int_equal(tocsin_scope_set_user("u-77"), TOCSIN_OK);
    assert_int_equal(tocsin_error_ex(c, &err), TOCSIN_OK);
    tocsin_scope_clear();
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.recorded, 5);
    assert_int_equal(st.events_acked, 5);
    assert_int_equal(st.events_truncated, 0);

    Tocsin__V1__Event *e = collector_find(col, is_log);
    assert_non_null(e);
    assert_int_equal(e->log->level, TOCSIN__V1__LEVEL__LEVEL_WARNING);
    assert_string_equal(e->log->message, "slow query");
    assert_string_equal(e->log->logger, "db.pool");
    assert_int_equal(e->log->n_fields, 2);
    assert_string_equal(e->log->fields[1]->key, "rows");
    assert_string_equal(e->log->fields[1]->value, "42");
    assert_string_equal(tag_of(e, "region"), "eu-1");
    assert_string_equal(tag_of(e, "worker"), "main");
    assert_string_equal(e->trace_id, "");
    tocsin__v1__event__free_unpacked(e, NULL);

    e = collector_find(col, is_heartbeat);
    assert_non_null(e);
    assert_int_equal(e->metric->kind, TOCSIN__V1__METRIC_KIND__METRIC_KIND_COUNTER);
    assert_true(e->metric->value == 1);
    tocsin__v1__event__free_unpacked(e, NULL);

    bool (*routes[2])(const Tocsin__V1__Event *) = {is_route_a, is_route_b};
    for (int i = 0; i < 2; i++) {
        e = collector_find(col, routes[i]);
        assert_non_null(e);
        assert_string_equal(e->trace_id, x[i].trace);
        assert_string_equal(tag_of(e, "worker"), x[i].trace); /* the thread's tag wins */
        assert_string_equal(tag_of(e, "region"), "eu-1");
        tocsin__v1__event__free_unpacked(e, NULL);
    }

    e = collector_find(col, is_bound_error);
    assert_non_null(e);
    assert_string_equal(e->error->message, message);
    assert_string_equal(e->error->mechanism, "exception");
    assert_string_equal(e->user_id, "u-77");
    assert_int_equal(e->error->level, TOCSIN__V1__LEVEL__LEVEL_WARNING);
    assert_int_equal(e->error->n_fingerprint, 2);
    assert_string_equal(e->error->fingerprint[0], "db");
    assert_int_equal(e->error->n_frames, 3);
    assert_string_equal(e->error->frames[0]->function, "handler");
    assert_string_equal(e->error->frames[0]->file, "app/views.py");
    assert_int_equal(e->error->frames[0]->line, 31);
    assert_true(e->error->frames[0]->in_app);
    assert_false(e->error->frames[1]->in_app);
    assert_int_equal(e->error->frames[2]->instruction_addr, 0xdeadbeef);
    tocsin__v1__event__free_unpacked(e, NULL);
    free(message);
    tocsin_destroy(&c);
    collector_stop(&col);
}

static bool is_captured_error(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_ERROR && strcmp(e->error->type, "Captured") == 0;
}

/* Recorded from a function of this file, so the first frame names it. */
__attribute__((noinline)) static int report_from_here(tocsin_t *c)
{
    int rc = tocsin_error(c, "Captured", "with a stack", TOCSIN_LEVEL_ERROR);
    __asm__ volatile("" ::: "memory"); /* not a tail call: this frame stays on the stack */
    return rc;
}

/* tocsin_error captures the calling thread's stack; the background thread symbolises it:
 * the first frame is the caller (libtocsin's own frames left out), with this file and a
 * line, marked in-app; the C library's frames are not in-app. */
static void test_captured_stack(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    assert_int_equal(report_from_here(c), TOCSIN_OK);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    Tocsin__V1__Event *e = collector_find(col, is_captured_error);
    assert_non_null(e);
    assert_true(e->error->n_frames >= 3);
    Tocsin__V1__Frame *f = e->error->frames[0];
    assert_string_equal(f->function, "report_from_here");
    assert_non_null(strstr(f->file, "test_tocsin_client.c"));
    assert_true(f->line > 0);
    assert_true(f->in_app);
    assert_string_equal(f->module, "test_tocsin_client");
    assert_true(f->instruction_addr != 0);
    bool libc_seen = false;
    for (size_t i = 0; i < e->error->n_frames; i++) {
        if (strncmp(e->error->frames[i]->module, "libc.so", 7) == 0) {
            libc_seen = true;
            assert_false(e->error->frames[i]->in_app);
        }
    }
    assert_true(libc_seen);
    tocsin__v1__event__free_unpacked(e, NULL);
    tocsin_destroy(&c);
    collector_stop(&col);
}

/* The before_send hook: sees every event, edits some, drops others (counted and reported). */
static bool hook(tocsin_event_t *ev, void *data)
{
    int *calls = data;
    (*calls)++;
    if (tocsin_event_kind(ev) != TOCSIN_EVENT_ERROR) {
        return true;
    }
    if (strcmp(tocsin_event_get(ev, TOCSIN_FIELD_TYPE), "Drop") == 0) {
        return false;
    }
    assert_int_equal(tocsin_event_set(ev, TOCSIN_FIELD_MESSAGE, "[scrubbed]"), TOCSIN_OK);
    assert_int_equal(tocsin_event_set_tag(ev, "scrubbed", "yes"), TOCSIN_OK);
    assert_int_equal(tocsin_event_set(ev, TOCSIN_FIELD_ROUTE, "/x"), TOCSIN_EINVAL);
    assert_int_equal(tocsin_event_set_level(ev, TOCSIN_LEVEL_FATAL), TOCSIN_OK);
    return true;
}

static bool is_scrubbed(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_ERROR && strcmp(e->error->type, "Keep") == 0;
}

static void test_before_send(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    int calls = 0;
    o.before_send = hook;
    o.before_send_data = &calls;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    assert_int_equal(tocsin_error(c, "Keep", "password=hunter2", TOCSIN_LEVEL_ERROR), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tocsin_error(c, "Drop", "noise", TOCSIN_LEVEL_ERROR), 0);
    }
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, 2, &full), 2);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(calls, 6);
    assert_int_equal(st.dropped_before_send, 3);
    assert_int_equal(st.events_acked, 3);
    Tocsin__V1__Event *e = collector_find(col, is_scrubbed);
    assert_non_null(e);
    assert_string_equal(e->error->message, "[scrubbed]");
    assert_string_equal(tag_of(e, "scrubbed"), "yes");
    assert_int_equal(e->error->level, TOCSIN__V1__LEVEL__LEVEL_FATAL);
    tocsin__v1__event__free_unpacked(e, NULL);
    assert_int_equal(collector_get(col, &col->events_stored), 3);
    assert_int_equal(collector_get(col, &col->dropped_before_send), 3);
    assert_int_equal(collector_get(col, &col->carried_drops), 3);
    tocsin_destroy(&c);
    collector_stop(&col);
}

static bool is_sampled(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_REQUEST && e->sample_rate == 0.25f;
}

/* Sampling: about a quarter of the requests are kept, each says its rate, every other one is
 * counted as sampled out (and reported), and other kinds are not sampled. */
static void test_sampling(void **state)
{
    (void)state;
    enum { N = 4000 };
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.sample_rate_requests = 0.25;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    for (int i = 0; i < N; i++) {
        assert_int_equal(tocsin_request(c, "/sampled", "GET", 200, 1), TOCSIN_OK);
    }
    assert_int_equal(tocsin_metric(c, "m", TOCSIN_GAUGE, 1, NULL), TOCSIN_OK);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.recorded + st.sampled_out, N + 1);
    assert_true(st.sampled_out > N * 65 / 100 && st.sampled_out < N * 85 / 100);
    assert_int_equal(st.events_acked, st.recorded);
    assert_int_equal(collector_get(col, &col->sampled_out), st.sampled_out);
    Tocsin__V1__Event *e = collector_find(col, is_sampled);
    assert_non_null(e);
    tocsin__v1__event__free_unpacked(e, NULL);
    tocsin_destroy(&c);
    collector_stop(&col);
}

static bool drops_reported(const tocsin_stats_t *st)
{
    return st->events_acked == 0 && st->batches_acked >= 1;
}

/* Drops are reported even when nothing else is ever queued: a batch that carries only the
 * tocsin.client.dropped metric goes out within a batch interval. */
static void test_drops_reported_alone(void **state)
{
    (void)state;
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    char name[TOCSIN_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tocsin_request(c, name, "GET", 200, 1), TOCSIN_ETOOBIG);
    }
    tocsin_stats_t st;
    assert_true(wait_stats(c, drops_reported, &st));
    assert_true(collector_wait(col, &col->carried_drops, 3));
    assert_int_equal(collector_get(col, &col->dropped_oversize), 3);
    assert_int_equal(collector_get(col, &col->events_stored), 0);
    tocsin_destroy(&c);
    collector_stop(&col);
}

/* No collector at all: recording only ever answers OK or EFULL (it never waits), every drop
 * is counted, and destroy gives up soon after it sees no collector connected — far within
 * its 30 s bound. */
static void test_no_collector(void **state)
{
    (void)state;
    char dead[128];
    dead_endpoint(dead, sizeof(dead));
    tocsin_options_t o;
    options_for(&o, dead);
    o.queue_capacity = 1024;
    o.shutdown_timeout_ms = 30000;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    int ok = record_requests(c, 0, 20000, &full); /* asserts OK or EFULL for each call */
    assert_int_equal((uint64_t)ok + full, 20000);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.dropped_queue_full, full);
    assert_int_equal(st.recorded, (uint64_t)ok);
    assert_true(full > 0);
    assert_int_equal(tocsin_flush(c, 100), TOCSIN_ETIMEDOUT);
    int64_t t0 = now_ms();
    tocsin_destroy(&c);
    assert_true(now_ms() - t0 < 10000);
}

/* CURVE: with the collector's key the client's batches are encrypted and arrive; with the
 * wrong key, or none, nothing arrives (and recording still never blocks). */
static void test_curve(void **state)
{
    (void)state;
    char server_pub[41], server_sec[41], other_pub[41], other_sec[41];
    assert_int_equal(zmq_curve_keypair(server_pub, server_sec), 0);
    assert_int_equal(zmq_curve_keypair(other_pub, other_sec), 0);
    curve_secret_for_next = server_sec;
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.curve_server_key = server_pub;
    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    uint64_t full = 0;
    assert_int_equal(record_requests(c, 0, 50, &full), 50);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_destroy(&c);
    assert_each_index_once(col, 0, 50);

    /* Our own key pair works too. */
    o.curve_public_key = other_pub;
    o.curve_secret_key = other_sec;
    c = tocsin_new(&o);
    assert_non_null(c);
    assert_int_equal(record_requests(c, 50, 60, &full), 10);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_destroy(&c);

    /* The wrong server key, then plain TCP: no handshake, nothing stored. */
    o.curve_server_key = other_pub;
    o.curve_public_key = o.curve_secret_key = NULL;
    o.shutdown_timeout_ms = 200;
    c = tocsin_new(&o);
    assert_non_null(c);
    assert_int_equal(record_requests(c, 60, 70, &full), 10);
    assert_int_equal(tocsin_flush(c, 500), TOCSIN_ETIMEDOUT);
    tocsin_destroy(&c);
    o.curve_server_key = NULL;
    c = tocsin_new(&o);
    assert_non_null(c);
    assert_int_equal(record_requests(c, 70, 80, &full), 10);
    assert_int_equal(tocsin_flush(c, 500), TOCSIN_ETIMEDOUT);
    tocsin_destroy(&c);
    assert_int_equal(collector_get(col, &col->events_stored), 60);

    /* Malformed keys are refused up front. */
    const char *reason = NULL;
    o.curve_server_key = "too-short";
    assert_int_equal(tocsin_options_validate(&o, &reason), TOCSIN_EINVAL);
    assert_non_null(strstr(reason, "curve_server_key"));
    assert_null(tocsin_new(&o));
    o.curve_server_key = server_pub;
    o.curve_public_key = other_pub; /* without its secret */
    assert_int_equal(tocsin_options_validate(&o, &reason), TOCSIN_EINVAL);
    collector_stop(&col);
}

static bool is_crash(const Tocsin__V1__Event *e)
{
    return e->body_case == TOCSIN__V1__EVENT__BODY_ERROR && strcmp(e->error->type, "SIGSEGV") == 0;
}

/* An address in the unmapped first page, hidden from the optimiser. */
static volatile uintptr_t bad_address = 16;

__attribute__((noinline)) static void crash_here(void)
{
    *(volatile int *)bad_address = 42; /* SIGSEGV */
    __asm__ volatile("" ::: "memory");
}

/* Crash capture: a child that segfaults leaves a crash report (and still dies of SIGSEGV:
 * the previous handler runs); the next client with the same crash_dir sends it as a fatal
 * error of the crashed service, with the crashing function as first frame, and deletes the
 * file once stored. */
static void test_crash_capture(void **state)
{
    (void)state;
    char dir[] = "/tmp/tocsin-crash-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    collector_t *col = collector_start(MODE_STORE);
    tocsin_options_t o;
    options_for(&o, col->endpoint);
    o.crash_dir = dir;

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(20);
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would catch it: the default kills */
        o.service = "crasher";
        o.release = "6.6.6";
        tocsin_t *c = tocsin_new(&o);
        if (!c) {
            _exit(3);
        }
        crash_here();
        _exit(4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);

    tocsin_t *c = tocsin_new(&o);
    assert_non_null(c);
    assert_int_equal(tocsin_flush(c, 20000), TOCSIN_OK);
    tocsin_stats_t st;
    tocsin_stats(c, &st);
    assert_int_equal(st.crashes_found, 1);
    assert_int_equal(st.crashes_sent, 1);
    assert_int_equal(st.recorded, 0);
    Tocsin__V1__Event *e = collector_find(col, is_crash);
    assert_non_null(e);
    assert_string_equal(e->service, "crasher");
    assert_string_equal(e->release, "6.6.6");
    assert_int_equal(e->error->level, TOCSIN__V1__LEVEL__LEVEL_FATAL);
    assert_string_equal(e->error->mechanism, "signal");
    assert_non_null(strstr(e->error->message, "address not mapped"));
    assert_non_null(strstr(e->error->message, "0x10"));
    assert_true(e->error->n_frames >= 2);
    assert_string_equal(e->error->frames[0]->function, "crash_here");
    assert_non_null(strstr(e->error->frames[0]->file, "test_tocsin_client.c"));
    assert_true(e->error->frames[0]->in_app);
    assert_string_equal(e->error->frames[1]->function, "test_crash_capture");
    tocsin__v1__event__free_unpacked(e, NULL);
    tocsin_destroy(&c);

    /* The file is gone: a second start sends nothing. */
    c = tocsin_new(&o);
    assert_non_null(c);
    tocsin_stats(c, &st);
    assert_int_equal(st.crashes_found, 0);
    tocsin_destroy(&c);
    assert_int_equal(rmdir(dir), 0);
    collector_stop(&col);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivery_exactly_once),
        cmocka_unit_test(test_threads_exactly_once),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_silent_collector),
        cmocka_unit_test(test_failover_dead_first),
        cmocka_unit_test(test_failover_silent_first),
        cmocka_unit_test(test_rejected),
        cmocka_unit_test(test_queue_full_reported),
        cmocka_unit_test(test_destroy_sends_pending),
        cmocka_unit_test(test_forked_child),
        cmocka_unit_test(test_example_program),
        cmocka_unit_test(test_logs_scope_and_bindings),
        cmocka_unit_test(test_captured_stack),
        cmocka_unit_test(test_before_send),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_drops_reported_alone),
        cmocka_unit_test(test_no_collector),
        cmocka_unit_test(test_curve),
        cmocka_unit_test(test_crash_capture),
    };
    return cmocka_run_group_tests_name("tocsin_client", tests, NULL, NULL);
}
