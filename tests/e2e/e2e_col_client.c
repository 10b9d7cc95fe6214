/*
 * e2e_col_client — a raw ZeroMQ client of tocsin-collector for its end-to-end tests: sends
 * hand-made batches (good ones with known sequence numbers, bad ones from files, samples
 * with secrets to scrub) and prints every Ack it gets as one JSON line, then a summary line.
 *
 * usage: e2e_col_client ENDPOINT [options] COMMAND ARGS...
 * options:
 *   --curve-server Z85 --curve-public Z85 --curve-secret Z85   CURVE client keys
 *   --api-key KEY          put in every batch
 *   --timeout-ms N         wait this long for each Ack (default 5000)
 *   --retries N            resend a batch answered retry-after at most N times (default 100)
 *   --pause-ms N           wait this long between two batches of `seq` (default 0)
 * commands:
 *   seq SERVICE[,SERVICE...] COUNT BATCH [KIND]
 *        COUNT events per service, BATCH events per batch, one batch per service in turn,
 *        each a metric (KIND metric, the default; name "seq", value 1..COUNT) or a log record
 *        (KIND log; field seq). A batch is resent, identical, until it is STORED, so the
 *        collector takes the events in order. Exit 0 when every batch was stored.
 *   corpus DIR SERVICE
 *        for each file of DIR in name order: one good batch of 10 events of SERVICE, then the
 *        file's bytes as one message; then a last good batch. Prints the Ack of each file.
 *   samples SERVICE
 *        one batch of events carrying secrets, an e-mail user id, errors without grouping id,
 *        a time far in the future; prints its Ack.
 *   raw FILE
 *        the file's bytes as one message; prints the Ack.
 *   twice SERVICE GATE_FILE
 *        one good batch; then, once GATE_FILE exists, another on the same connection.
 *        Prints both Acks.
 *   keypair
 *        prints a new CURVE key pair, public then secret (Z85), and nothing else.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "tc_util.h"
#include "tocsin/v1/transport.pb-c.h"

static void *sock;
static int timeout_ms = 5000;
static int max_retries = 100;
static int pause_ms = 0;
static const char *api_key = "";
static uint64_t next_sequence = 1;

/* Counts for the summary line. */
static struct {
    long sent, stored, rejected, retry_after, timeouts, events_stored;
} totals;

static int64_t now_us(void)
{
    return tc_now_us();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *status_name(int s)
{
    switch (s) {
    case TOCSIN__V1__ACK__STATUS__STATUS_STORED:
        return "stored";
    case TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER:
        return "retry_after";
    case TOCSIN__V1__ACK__STATUS__STATUS_REJECTED:
        return "rejected";
    default:
        return "unspecified";
    }
}

/* Prints a JSON string (the reasons are UTF-8 from the collector). */
static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

/*
 * Sends `len` bytes and waits for the Ack with `sequence`. Returns the Ack (free with
 * tocsin__v1__ack__free_unpacked) or NULL on time-out.
 */
static Tocsin__V1__Ack *send_and_wait(const void *buf, size_t len, uint64_t sequence)
{
    totals.sent++;
    if (zmq_send(sock, buf, len, 0) < 0) {
        fprintf(stderr, "send: %s\n", zmq_strerror(errno));
        return NULL;
    }
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        int64_t left = (deadline - now_us()) / 1000;
        if (left <= 0) {
            totals.timeouts++;
            return NULL;
        }
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, (long)left) <= 0) {
            continue;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        Tocsin__V1__Ack *ack = tocsin__v1__ack__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        zmq_msg_close(&m);
        if (!ack) {
            continue;
        }
        if (ack->sequence == sequence) {
            return ack;
        }
        tocsin__v1__ack__free_unpacked(ack, NULL); /* a late answer to an earlier send */
    }
}

static void print_ack(const char *what, const Tocsin__V1__Ack *ack)
{
    printf("{\"what\":");
    print_json_string(what);
    if (!ack) {
        printf(",\"status\":\"timeout\"}\n");
        return;
    }
    printf(",\"sequence\":%" PRIu64 ",\"status\":\"%s\",\"retry_after_ms\":%u,\"accepted\":%u,"
           "\"reason\":",
           ack->sequence, status_name(ack->status), ack->retry_after_ms, ack->accepted);
    print_json_string(ack->reason ? ack->reason : "");
    printf("}\n");
    fflush(stdout);
}

static void count_ack(const Tocsin__V1__Ack *ack)
{
    if (!ack) {
        return;
    }
    if (ack->status == TOCSIN__V1__ACK__STATUS__STATUS_STORED) {
        totals.stored++;
        totals.events_stored += ack->accepted;
    } else if (ack->status == TOCSIN__V1__ACK__STATUS__STATUS_REJECTED) {
        totals.rejected++;
    } else if (ack->status == TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER) {
        totals.retry_after++;
    }
}

/* ---- building batches ---- */

#define MAX_BATCH 2000

typedef struct {
    Tocsin__V1__Batch batch;
    Tocsin__V1__Event ev[MAX_BATCH];
    Tocsin__V1__Event *evp[MAX_BATCH];
    Tocsin__V1__Metric met[MAX_BATCH];
    Tocsin__V1__LogRecord log[MAX_BATCH];
    Tocsin__V1__LogRecord__FieldsEntry field[MAX_BATCH];
    Tocsin__V1__LogRecord__FieldsEntry *fieldp[MAX_BATCH];
    char seqtext[MAX_BATCH][24];
    uint8_t ids[MAX_BATCH][16];
} batch_t;

static batch_t scratch;

static void batch_begin(batch_t *b)
{
    tocsin__v1__batch__init(&b->batch);
    b->batch.sequence = next_sequence++;
    b->batch.api_key = (char *)api_key;
    b->batch.sdk = "e2e_col_client/1";
    b->batch.events = b->evp;
    b->batch.n_events = 0;
}

static Tocsin__V1__Event *batch_add(batch_t *b, const char *service)
{
    size_t i = b->batch.n_events++;
    Tocsin__V1__Event *ev = &b->ev[i];
    tocsin__v1__event__init(ev);
    tc_random_bytes(b->ids[i], 16);
    ev->event_id.data = b->ids[i];
    ev->event_id.len = 16;
    ev->time_us = now_us();
    ev->service = (char *)service;
    ev->environment = "e2e";
    ev->host = "e2e-host";
    b->evp[i] = ev;
    return ev;
}

static void add_seq_metric(batch_t *b, const char *service, long seq)
{
    Tocsin__V1__Event *ev = batch_add(b, service);
    size_t i = b->batch.n_events - 1;
    tocsin__v1__metric__init(&b->met[i]);
    b->met[i].name = "seq";
    b->met[i].kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
    b->met[i].value = (double)seq;
    ev->body_case = TOCSIN__V1__EVENT__BODY_METRIC;
    ev->metric = &b->met[i];
}

static void add_seq_log(batch_t *b, const char *service, long seq)
{
    Tocsin__V1__Event *ev = batch_add(b, service);
    size_t i = b->batch.n_events - 1;
    tocsin__v1__log_record__init(&b->log[i]);
    tocsin__v1__log_record__fields_entry__init(&b->field[i]);
    snprintf(b->seqtext[i], sizeof(b->seqtext[i]), "%ld", seq);
    b->field[i].key = "seq";
    b->field[i].value = b->seqtext[i];
    b->fieldp[i] = &b->field[i];
    b->log[i].message = "sequenced log line";
    b->log[i].n_fields = 1;
    b->log[i].fields = &b->fieldp[i];
    b->log[i].level = TOCSIN__V1__LEVEL__LEVEL_INFO;
    ev->body_case = TOCSIN__V1__EVENT__BODY_LOG;
    ev->log = &b->log[i];
}

static uint8_t *pack(const Tocsin__V1__Batch *batch, size_t *len)
{
    *len = tocsin__v1__batch__get_packed_size(batch);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf) {
        tocsin__v1__batch__pack(batch, buf);
    }
    return buf;
}

/* Sends a packed batch until it is stored or rejected (retry-after: wait and resend it
 * identical). Returns the final status, -1 on time-out after the retries. */
static int send_until_final(const uint8_t *buf, size_t len, uint64_t seq, const char *what,
                            bool print_each)
{
    for (int attempt = 0; attempt <= max_retries; attempt++) {
        Tocsin__V1__Ack *ack = send_and_wait(buf, len, seq);
        count_ack(ack);
        if (print_each || (ack && ack->status != TOCSIN__V1__ACK__STATUS__STATUS_STORED)) {
            print_ack(what, ack);
        }
        if (!ack) {
            continue; /* resend, as a client does after its ack time-out */
        }
        int status = ack->status;
        uint32_t wait = ack->retry_after_ms;
        tocsin__v1__ack__free_unpacked(ack, NULL);
        if (status != TOCSIN__V1__ACK__STATUS__STATUS_RETRY_AFTER || attempt == max_retries) {
            return status;
        }
        sleep_ms(wait > 0 ? (wait > 2000 ? 2000 : wait) : 100);
    }
    return -1;
}

/* ---- commands ---- */

static int cmd_seq(char *services, long count, long per_batch, const char *kind)
{
    char *names[64];
    int n = 0;
    for (char *save = NULL, *s = strtok_r(services, ",", &save); s && n < 64;
         s = strtok_r(NULL, ",", &save)) {
        names[n++] = s;
    }
    bool logs = kind && strcmp(kind, "log") == 0;
    if (per_batch < 1 || per_batch > MAX_BATCH || count < 1 || n == 0) {
        fprintf(stderr, "seq: bad arguments\n");
        return 2;
    }
    int failed = 0;
    for (long start = 1; start <= count; start += per_batch) {
        for (int s = 0; s < n; s++) {
            batch_begin(&scratch);
            for (long q = start; q < start + per_batch && q <= count; q++) {
                if (logs) {
                    add_seq_log(&scratch, names[s], q);
                } else {
                    add_seq_metric(&scratch, names[s], q);
                }
            }
            size_t len;
            uint8_t *buf = pack(&scratch.batch, &len);
            if (!buf) {
                return 1;
            }
            int st = send_until_final(buf, len, scratch.batch.sequence, names[s], false);
            free(buf);
            if (st != TOCSIN__V1__ACK__STATUS__STATUS_STORED) {
                failed++;
            }
            if (pause_ms > 0) {
                sleep_ms(pause_ms);
            }
        }
    }
    return failed ? 1 : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            uint8_t *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* The sequence a refused batch is answered with: field 1 at the top level, if readable. */
static uint64_t top_sequence(const uint8_t *p, size_t len)
{
    if (len >= 2 && p[0] == 0x08) {
        uint64_t v = 0;
        for (size_t i = 1; i < len && i < 11; i++) {
            v |= (uint64_t)(p[i] & 0x7f) << (7 * (i - 1));
            if (!(p[i] & 0x80)) {
                return v;
            }
        }
    }
    return 0;
}

static int send_good(const char *service, long *seq, int n)
{
    batch_begin(&scratch);
    for (int i = 0; i < n; i++) {
        add_seq_metric(&scratch, service, ++*seq);
    }
    size_t len;
    uint8_t *buf = pack(&scratch.batch, &len);
    int st = send_until_final(buf, len, scratch.batch.sequence, "good", false);
    free(buf);
    return st == TOCSIN__V1__ACK__STATUS__STATUS_STORED ? 0 : 1;
}

static int cmd_corpus(const char *dir, const char *service)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "corpus: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512) {
        if (e->d_name[0] != '.') {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    long seq = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        bad += send_good(service, &seq, 10);
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        size_t len = 0;
        uint8_t *buf = read_all(path, &len);
        if (!buf) {
            fprintf(stderr, "corpus: cannot read %s\n", path);
            bad++;
        } else {
            Tocsin__V1__Ack *ack = send_and_wait(buf, len, top_sequence(buf, len));
            count_ack(ack);
            print_ack(names[i], ack);
            if (ack) {
                tocsin__v1__ack__free_unpacked(ack, NULL);
            }
            free(buf);
        }
        free(names[i]);
    }
    bad += send_good(service, &seq, 10);
    printf("{\"good_events\":%ld}\n", seq);
    return bad ? 1 : 0;
}

static int cmd_samples(const char *service)
{
    static Tocsin__V1__Event__TagsEntry tags[3], *tagp[3];
    static Tocsin__V1__ErrorEvent errs[3];
    static Tocsin__V1__Frame frames[4], *framep[4];
    static Tocsin__V1__Request req;
    static Tocsin__V1__LogRecord log;
    static Tocsin__V1__LogRecord__FieldsEntry fields[2], *fieldp[2];
    batch_begin(&scratch);

    /* 0: an error with frames, secret tags, an e-mail user, time a day ahead */
    Tocsin__V1__Event *ev = batch_add(&scratch, service);
    for (int i = 0; i < 3; i++) {
        tocsin__v1__event__tags_entry__init(&tags[i]);
        tagp[i] = &tags[i];
    }
    tags[0].key = "password";
    tags[0].value = "hunter2";
    tags[1].key = "region";
    tags[1].value = "eu-west-1";
    tags[2].key = "note";
    tags[2].value = "card 4111 1111 1111 1111 used";
    ev->n_tags = 3;
    ev->tags = tagp;
    ev->user_id = "alice@example.com";
    ev->time_us = now_us() + 86400LL * 1000000;
    tocsin__v1__error_event__init(&errs[0]);
    errs[0].type = "KeyError";
    errs[0].message = "missing key 'id' for Authorization: Bearer abcdef0123456789xyz";
    for (int i = 0; i < 4; i++) {
        tocsin__v1__frame__init(&frames[i]);
        framep[i] = &frames[i];
    }
    frames[0].function = "handle";
    frames[0].module = "app.orders";
    frames[0].line = 10;
    frames[0].in_app = true;
    frames[1].function = "dispatch";
    frames[1].module = "framework";
    frames[1].line = 99;
    errs[0].n_frames = 2;
    errs[0].frames = framep;
    ev->body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    ev->error = &errs[0];

    /* 1: the same error from other lines: the same grouping id */
    ev = batch_add(&scratch, service);
    tocsin__v1__error_event__init(&errs[1]);
    errs[1].type = "KeyError";
    errs[1].message = "missing key 'sku'";
    frames[2].function = "handle";
    frames[2].module = "app.orders";
    frames[2].line = 42;
    frames[2].in_app = true;
    frames[3].function = "dispatch";
    frames[3].module = "framework";
    frames[3].line = 7;
    errs[1].n_frames = 2;
    errs[1].frames = framep + 2;
    ev->body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    ev->error = &errs[1];

    /* 2: an error with a client's own grouping id: kept */
    ev = batch_add(&scratch, service);
    tocsin__v1__error_event__init(&errs[2]);
    errs[2].type = "Timeout";
    errs[2].message = "upstream 10.1.2.3 timed out after 30s";
    errs[2].grouping_hash = "client-chosen-id";
    ev->body_case = TOCSIN__V1__EVENT__BODY_ERROR;
    ev->error = &errs[2];

    /* 3: a request whose route carries a token in its query */
    ev = batch_add(&scratch, service);
    tocsin__v1__request__init(&req);
    req.route = "/login?user=bob&token=s3cr3tT0k3n";
    req.method = "POST";
    req.status = 200;
    req.duration_us = 1500;
    ev->body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
    ev->request = &req;

    /* 4: a log record with a secret field and a PEM key in its message */
    ev = batch_add(&scratch, service);
    tocsin__v1__log_record__init(&log);
    log.message = "loaded -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- "
                  "from db://admin:pa55word@db.internal:5432";
    log.logger = "config";
    for (int i = 0; i < 2; i++) {
        tocsin__v1__log_record__fields_entry__init(&fields[i]);
        fieldp[i] = &fields[i];
    }
    fields[0].key = "api_key";
    fields[0].value = "AKIA1234567890";
    fields[1].key = "attempt";
    fields[1].value = "3";
    log.n_fields = 2;
    log.fields = fieldp;
    ev->body_case = TOCSIN__V1__EVENT__BODY_LOG;
    ev->log = &log;

    size_t len;
    uint8_t *buf = pack(&scratch.batch, &len);
    int st = send_until_final(buf, len, scratch.batch.sequence, "samples", true);
    free(buf);
    return st == TOCSIN__V1__ACK__STATUS__STATUS_STORED ? 0 : 1;
}

static int cmd_raw(const char *path)
{
    size_t len = 0;
    uint8_t *buf = read_all(path, &len);
    if (!buf) {
        fprintf(stderr, "raw: cannot read %s\n", path);
        return 2;
    }
    Tocsin__V1__Ack *ack = send_and_wait(buf, len, top_sequence(buf, len));
    count_ack(ack);
    print_ack(path, ack);
    int rc = ack ? 0 : 1;
    if (ack) {
        tocsin__v1__ack__free_unpacked(ack, NULL);
    }
    free(buf);
    return rc;
}

static int cmd_twice(const char *service, const char *gate)
{
    long seq = 0;
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            int64_t deadline = now_us() + 30 * 1000000LL;
            while (access(gate, F_OK) != 0 && now_us() < deadline) {
                sleep_ms(20);
            }
        }
        batch_begin(&scratch);
        for (int i = 0; i < 5; i++) {
            add_seq_metric(&scratch, service, ++seq);
        }
        size_t len;
        uint8_t *buf = pack(&scratch.batch, &len);
        Tocsin__V1__Ack *ack = send_and_wait(buf, len, scratch.batch.sequence);
        count_ack(ack);
        print_ack(round == 0 ? "first" : "second", ack);
        if (ack) {
            tocsin__v1__ack__free_unpacked(ack, NULL);
        }
        free(buf);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "keypair") == 0) {
        char pub[41], sec[41];
        if (zmq_curve_keypair(pub, sec) != 0) {
            return 1;
        }
        printf("%s\n%s\n", pub, sec);
        return 0;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: e2e_col_client ENDPOINT [options] COMMAND ARGS...\n");
        return 2;
    }
    const char *endpoint = argv[1];
    const char *server = NULL, *pub = NULL, *sec = NULL;
    int i = 2;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (!strcmp(argv[i], "--curve-server")) {
            server = argv[i + 1];
        } else if (!strcmp(argv[i], "--curve-public")) {
            pub = argv[i + 1];
        } else if (!strcmp(argv[i], "--curve-secret")) {
            sec = argv[i + 1];
        } else if (!strcmp(argv[i], "--api-key")) {
            api_key = argv[i + 1];
        } else if (!strcmp(argv[i], "--timeout-ms")) {
            timeout_ms = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--retries")) {
            max_retries = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--pause-ms")) {
            pause_ms = atoi(argv[i + 1]);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "no command\n");
        return 2;
    }
    tc_random_bytes(&next_sequence, sizeof(next_sequence));
    next_sequence = (next_sequence >> 16) + 1;
    void *ctx = zmq_ctx_new();
    sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (server && pub && sec) {
        zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, strlen(server));
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, strlen(pub));
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, strlen(sec));
    }
    if (zmq_connect(sock, endpoint) != 0) {
        fprintf(stderr, "connect %s: %s\n", endpoint, zmq_strerror(errno));
        return 2;
    }
    const char *cmd = argv[i];
    int rc = 2;
    if (!strcmp(cmd, "seq") && argc - i >= 4) {
        rc = cmd_seq(argv[i + 1], atol(argv[i + 2]), atol(argv[i + 3]),
                     argc - i >= 5 ? argv[i + 4] : NULL);
    } else if (!strcmp(cmd, "corpus") && argc - i == 3) {
        rc = cmd_corpus(argv[i + 1], argv[i + 2]);
    } else if (!strcmp(cmd, "samples") && argc - i == 2) {
        rc = cmd_samples(argv[i + 1]);
    } else if (!strcmp(cmd, "raw") && argc - i == 2) {
        rc = cmd_raw(argv[i + 1]);
    } else if (!strcmp(cmd, "twice") && argc - i == 3) {
        rc = cmd_twice(argv[i + 1], argv[i + 2]);
    } else {
        fprintf(stderr, "bad command\n");
    }
    printf("{\"summary\":true,\"sent\":%ld,\"stored\":%ld,\"rejected\":%ld,\"retry_after\":%ld,"
           "\"timeouts\":%ld,\"events_stored\":%ld,\"exit\":%d}\n",
           totals.sent, totals.stored, totals.rejected, totals.retry_after, totals.timeouts,
           totals.events_stored, rc);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}
