/*
 * Unit tests for aggregator/agg_store against real LMDB files in a temporary directory:
 * a batch applied and queried, the same records applied again (skipped by offset), a
 * duplicated event_id counted once, offsets kept across close and reopen, the map grown from
 * a tiny start (and a full map rolling the batch back), owed rollups and their revisions,
 * late events, series listing and "*" queries, kind conflicts, corrupt stored values, and
 * pruning of the dedupe set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lmdb.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agg_store.h"
#include "tc_error.h"
#include "tc_util.h"

#define T0_S 1795000000LL
#define T0 (T0_S * 1000000)
#define TOPIC "tocsin.events"

typedef struct {
    char dir[64];
    agg_store_t *store;
    agg_store_opts_t opts;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_agg_store.XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    f->opts.dir = f->dir;
    f->opts.map_size = 16u << 20;
    f->opts.max_map = 256u << 20;
    f->opts.grace_ms = 2000;
    f->opts.dedupe_window_ms = 600000;
    f->store = agg_store_open(&f->opts);
    *state = f;
    return f->store ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    agg_store_destroy(&f->store);
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(fixture_t *f)
{
    agg_store_destroy(&f->store);
    agg_store_destroy(&f->store); /* safe twice */
    f->store = agg_store_open(&f->opts);
    assert_non_null(f->store);
}

/* What one test event is made of. */
typedef struct {
    uint32_t id; /* becomes the 16-byte event_id */
    const char *service;
    const char *env;
    const char *route;  /* a request unless metric is set */
    const char *metric; /* a gauge with this name */
    int64_t time_us;
    int64_t received_us; /* 0: unset */
    uint32_t status;
    uint64_t duration_us;
} ev_spec_t;

static uint8_t *pack_event(const ev_spec_t *s, size_t *len)
{
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    Tocsin__V1__Request req = TOCSIN__V1__REQUEST__INIT;
    Tocsin__V1__Metric met = TOCSIN__V1__METRIC__INIT;
    uint8_t id[16];
    memset(id, 0, sizeof(id));
    tc_be32_put(id, s->id);
    memcpy(id + 8, "tocsin!!", 8);
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.service = (char *)(s->service ? s->service : "checkout");
    ev.environment = (char *)(s->env ? s->env : "production");
    ev.time_us = s->time_us ? s->time_us : T0 + 1000;
    ev.received_us = s->received_us;
    if (s->metric) {
        met.name = (char *)s->metric;
        met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
        met.value = 1;
        ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        ev.metric = &met;
    } else {
        req.route = (char *)(s->route ? s->route : "/pay");
        req.status = s->status ? s->status : 200;
        req.duration_us = s->duration_us ? s->duration_us : 1000;
        ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
        ev.request = &req;
    }
    *len = tocsin__v1__event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    tocsin__v1__event__pack(&ev, buf);
    return buf;
}

/* A batch of records built from specs; frees its values on batch_free. */
typedef struct {
    agg_msg_t *m;
    size_t n;
} batch_t;

static batch_t batch_make(const ev_spec_t *specs, size_t n, int32_t partition, int64_t first_offset)
{
    batch_t b = {calloc(n ? n : 1, sizeof(agg_msg_t)), n};
    for (size_t i = 0; i < n; i++) {
        b.m[i].topic = TOPIC;
        b.m[i].partition = partition;
        b.m[i].offset = first_offset + (int64_t)i;
        b.m[i].value = pack_event(&specs[i], &b.m[i].len);
    }
    return b;
}

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free((void *)b->m[i].value);
    }
    free(b->m);
}

/* Query result for service/name over a window ending at T0 + 1 h. */
static uint64_t count_of(agg_store_t *s, const char *service, const char *name, const char *env,
                         uint64_t *errors)
{
    agg_query_params_t p;
    const char *param = NULL;
    char err[128];
    assert_int_equal(agg_query_params_parse(&p, service, name, "2h", env, NULL, T0 + 3600000000LL,
                                            &param, err, sizeof(err)),
                     0);
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    assert_int_equal(agg_store_query(s, &p, &acc, NULL), 0);
    uint64_t n = acc.total.count;
    if (errors) {
        *errors = acc.total.errors;
    }
    agg_query_acc_fini(&acc);
    return n;
}

static void test_apply_and_reapply(void **state)
{
    fixture_t *f = *state;
    enum { N = 1000 };
    ev_spec_t specs[N];
    memset(specs, 0, sizeof(specs));
    for (int i = 0; i < N; i++) {
        specs[i].id = (uint32_t)i + 1;
        specs[i].time_us = T0 + (int64_t)i * 37000; /* spread over 4 buckets */
        specs[i].status = i % 50 == 0 ? 500 : 200;
        specs[i].duration_us = 1000 + (uint64_t)i;
    }
    batch_t b = batch_make(specs, N, 0, 100);
    agg_batch_stats_t st;
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0 + 5000000, &st), 0);
    assert_int_equal(st.consumed, N);
    assert_int_equal(st.applied, N);
    assert_int_equal(st.buckets_written, 4);
    for (int i = 0; i < N; i++) {
        assert_int_equal(b.m[i].result, AGG_MSG_APPLIED);
    }
    uint64_t errors = 0;
    assert_int_equal(count_of(f->store, "checkout", "/pay", NULL, &errors), N);
    assert_int_equal(errors, N / 50);
    int64_t next = 0;
    assert_int_equal(agg_store_offset_get(f->store, TOPIC, 0, &next), 0);
    assert_int_equal(next, 100 + N);
    assert_int_equal(agg_store_offset_get(f->store, TOPIC, 1, &next), TC_ENOTFOUND);

    /* The same records again, as after a crash between the LMDB commit and the consumer's
     * progress: all skipped by offset, nothing counted twice. */
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0 + 6000000, &st), 0);
    assert_int_equal(st.stale, N);
    assert_int_equal(st.applied, 0);
    assert_int_equal(b.m[0].result, AGG_MSG_STALE);
    assert_int_equal(count_of(f->store, "checkout", "/pay", NULL, NULL), N);

    /* The offsets outlive the process. */
    reopen(f);
    assert_int_equal(agg_store_offset_get(f->store, TOPIC, 0, &next), 0);
    assert_int_equal(next, 100 + N);
    assert_int_equal(count_of(f->store, "checkout", "/pay", NULL, NULL), N);
    batch_free(&b);
}

static void test_duplicates(void **state)
{
    fixture_t *f = *state;
    /* Ids 1..10 once, then ids 5..14: 5..10 are client resends at new offsets. */
    ev_spec_t specs[20];
    memset(specs, 0, sizeof(specs));
    for (int i = 0; i < 10; i++) {
        specs[i].id = (uint32_t)i + 1;
        specs[10 + i].id = (uint32_t)i + 5;
    }
    batch_t a = batch_make(specs, 10, 3, 0);
    batch_t b = batch_make(specs + 10, 10, 3, 10);
    agg_batch_stats_t st;
    assert_int_equal(agg_store_apply(f->store, a.m, a.n, NULL, 0, T0 + 5000000, &st), 0);
    assert_int_equal(st.applied, 10);
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0 + 5000000, &st), 0);
    assert_int_equal(st.applied, 4);
    assert_int_equal(st.duplicates, 6);
    assert_int_equal(b.m[0].result, AGG_MSG_DUPLICATE);
    assert_int_equal(b.m[9].result, AGG_MSG_APPLIED);
    assert_int_equal(count_of(f->store, "checkout", "/pay", NULL, NULL), 14);

    /* Duplicates inside one batch count once too. */
    ev_spec_t same[3] = {{.id = 99}, {.id = 99}, {.id = 99}};
    batch_t c = batch_make(same, 3, 3, 20);
    assert_int_equal(agg_store_apply(f->store, c.m, c.n, NULL, 0, T0 + 5000000, &st), 0);
    assert_int_equal(st.applied, 1);
    assert_int_equal(st.duplicates, 2);
    assert_int_equal(count_of(f->store, "checkout", "/pay", NULL, NULL), 15);
    batch_free(&a);
    batch_free(&b);
    batch_free(&c);
}

static void test_dedupe_window(void **state)
{
    fixture_t *f = *state;
    agg_batch_stats_t st;
    /* id 1 received at T0; id 2 received 11 minutes later prunes it (window 10 min). */
    ev_spec_t s1[1] = {{.id = 1, .received_us = T0}};
    ev_spec_t s2[1] = {{.id = 2, .received_us = T0 + 660000000LL}};
    ev_spec_t s3[1] = {{.id = 1, .received_us = T0 + 661000000LL}};
    batch_t a = batch_make(s1, 1, 0, 0), b = batch_make(s2, 1, 0, 1), c = batch_make(s3, 1, 0, 2);
    int64_t now = T0 + 700000000LL;
    assert_int_equal(agg_store_apply(f->store, a.m, 1, NULL, 0, now, &st), 0);
    assert_int_equal(st.applied, 1);
    assert_int_equal(agg_store_apply(f->store, b.m, 1, NULL, 0, now, &st), 0);
    assert_int_equal(st.dedupe_pruned, 1);
    /* id 1 again, long after the window: counted as a new event. */
    assert_int_equal(agg_store_apply(f->store, c.m, 1, NULL, 0, now, &st), 0);
    assert_int_equal(st.applied, 1);
    assert_int_equal(st.duplicates, 0);
    batch_free(&a);
    batch_free(&b);
    batch_free(&c);
}

static void test_invalid_and_ignored(void **state)
{
    fixture_t *f = *state;
    static const uint8_t junk[] = {0xde, 0xad, 0xbe, 0xef};
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    Tocsin__V1__LogRecord log = TOCSIN__V1__LOG_RECORD__INIT;
    uint8_t id[16] = {1};
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.service = "checkout";
    ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
    ev.log = &log;
    uint8_t logbuf[128];
    size_t loglen = tocsin__v1__event__pack(&ev, logbuf);
    agg_msg_t m[2] = {
        {.topic = TOPIC, .partition = 1, .offset = 7, .value = junk, .len = sizeof(junk)},
        {.topic = TOPIC, .partition = 1, .offset = 8, .value = logbuf, .len = loglen}};
    agg_batch_stats_t st;
    assert_int_equal(agg_store_apply(f->store, m, 2, NULL, 0, T0, &st), 0);
    assert_int_equal(m[0].result, AGG_MSG_INVALID);
    assert_string_equal(m[0].reason, "protobuf");
    assert_int_equal(m[1].result, AGG_MSG_IGNORED);
    assert_int_equal(st.invalid, 1);
    assert_int_equal(st.ignored, 1);
    /* The offset moves past bad records too: they are not read again. */
    int64_t next = 0;
    assert_int_equal(agg_store_offset_get(f->store, TOPIC, 1, &next), 0);
    assert_int_equal(next, 9);
}

static void test_map_growth(void **state)
{
    fixture_t *f = *state;
    agg_store_destroy(&f->store);
    f->opts.map_size = 64 * 1024; /* 16 pages */
    f->opts.max_map = 256u << 20;
    char dir[96];
    snprintf(dir, sizeof(dir), "%s/grow", f->dir);
    f->opts.dir = dir;
    f->store = agg_store_open(&f->opts);
    assert_non_null(f->store);
    size_t before = agg_store_map_bytes(f->store);
    /* 20,000 events over 2,000 buckets: megabytes, far beyond the first map. */
    enum { N = 20000 };
    ev_spec_t *specs = calloc(N, sizeof(*specs));
    for (int i = 0; i < N; i++) {
        specs[i].id = (uint32_t)i + 1;
        specs[i].time_us = T0 + (int64_t)(i % 2000) * 10000000;
        specs[i].duration_us = 100 + (uint64_t)i * 7;
    }
    for (int k = 0; k < 4; k++) {
        batch_t b = batch_make(specs + k * (N / 4), N / 4, 0, k * (N / 4));
        agg_batch_stats_t st;
        assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0, &st), 0);
        assert_int_equal(st.applied, N / 4);
        batch_free(&b);
    }
    size_t after = agg_store_map_bytes(f->store);
    assert_true(after > before);
    assert_true(agg_store_used_bytes(f->store) <= after);
    agg_query_params_t p;
    const char *param = NULL;
    char err[128];
    assert_int_equal(agg_query_params_parse(&p, "checkout", "/pay", "30d", NULL, NULL,
                                            T0 + 20000000000LL, &param, err, sizeof(err)),
                     0);
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    assert_int_equal(agg_store_query(f->store, &p, &acc, NULL), 0);
    assert_int_equal(acc.total.count, N);
    assert_int_equal(acc.buckets, 2000);
    agg_query_acc_fini(&acc);

    /* A map that may not grow any further: the batch is refused whole and can be retried. */
    agg_store_destroy(&f->store);
    snprintf(dir, sizeof(dir), "%s/full", f->dir);
    f->opts.map_size = 64 * 1024;
    f->opts.max_map = 128 * 1024;
    f->store = agg_store_open(&f->opts);
    assert_non_null(f->store);
    batch_t b = batch_make(specs, N, 1, 0);
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0, NULL), TC_EFULL);
    int64_t next = 0;
    assert_int_equal(agg_store_offset_get(f->store, TOPIC, 1, &next), TC_ENOTFOUND);
    batch_free(&b);
    free(specs);

    agg_store_destroy(&f->store);
    const char *subs[] = {"grow", "full"};
    for (int i = 0; i < 2; i++) {
        char path[160];
        snprintf(path, sizeof(path), "%s/%s/data.mdb", f->dir, subs[i]);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s/lock.mdb", f->dir, subs[i]);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s", f->dir, subs[i]);
        rmdir(path);
    }
    f->opts.dir = f->dir;
    f->store = agg_store_open(&f->opts);
}

typedef struct {
    agg_owed_ref_t refs[16];
    uint64_t counts[16];
    bool have[16];
    size_t n;
} owed_t;

static int collect_owed(void *ctx, const agg_owed_ref_t *ref, const agg_bucket_t *b)
{
    owed_t *o = ctx;
    if (o->n < 16) {
        o->refs[o->n] = *ref;
        o->have[o->n] = b != NULL;
        o->counts[o->n] = b ? b->count : 0;
        o->n++;
    }
    return 0;
}

static void test_owed_rollups_and_late(void **state)
{
    fixture_t *f = *state;
    ev_spec_t specs[3] = {{.id = 1, .received_us = T0 + 2000000},
                          {.id = 2, .received_us = T0 + 3000000},
                          {.id = 3, .time_us = T0 + 10000000, .received_us = T0 + 11000000}};
    batch_t b = batch_make(specs, 3, 0, 0);
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0 + 11000000, NULL), 0);
    owed_t o = {0};
    /* At T0 + 11 s nothing is closed yet (end 10 s + grace 2 s). */
    assert_int_equal(agg_store_owed(f->store, T0 + 11000000, collect_owed, &o), 0);
    assert_int_equal(o.n, 0);
    assert_int_equal(agg_store_owed_count(f->store), 2);
    /* At T0 + 12 s the first bucket is, and only it. */
    assert_int_equal(agg_store_owed(f->store, T0 + 12000000, collect_owed, &o), 0);
    assert_int_equal(o.n, 1);
    assert_true(o.have[0]);
    assert_int_equal(o.counts[0], 2);
    assert_int_equal(o.refs[0].revision, 1);

    /* Delivered: no longer owed. A second clear of the same ref is harmless. */
    agg_batch_stats_t st;
    assert_int_equal(agg_store_apply(f->store, NULL, 0, o.refs, 1, T0 + 12000000, &st), 0);
    assert_int_equal(st.owed_cleared, 1);
    assert_int_equal(agg_store_apply(f->store, NULL, 0, o.refs, 1, T0 + 12000000, &st), 0);
    assert_int_equal(st.owed_cleared, 0);
    memset(&o, 0, sizeof(o));
    assert_int_equal(agg_store_owed(f->store, T0 + 13000000, collect_owed, &o), 0);
    assert_int_equal(o.n, 0);

    /* A late event (received after end + grace) still counts, is marked late, and makes
     * the bucket owed again with a higher revision. */
    ev_spec_t late[1] = {{.id = 4, .received_us = T0 + 30000000}};
    batch_t l = batch_make(late, 1, 0, 3);
    assert_int_equal(agg_store_apply(f->store, l.m, 1, NULL, 0, T0 + 30000000, &st), 0);
    assert_int_equal(st.late, 1);
    assert_true(l.m[0].late);
    memset(&o, 0, sizeof(o));
    assert_int_equal(agg_store_owed(f->store, T0 + 30000000, collect_owed, &o), 0);
    assert_int_equal(o.n, 2); /* both buckets are closed now */
    assert_int_equal(o.counts[0], 3);
    assert_int_equal(o.refs[0].revision, 2);

    /* A delivery report for an older revision does not clear the newer one. */
    agg_owed_ref_t old = o.refs[0];
    old.revision = 1;
    assert_int_equal(agg_store_apply(f->store, NULL, 0, &old, 1, T0 + 30000000, &st), 0);
    assert_int_equal(st.owed_cleared, 0);
    assert_int_equal(agg_store_owed_count(f->store), 2);

    /* A late event arriving without received_us is judged by `now`. */
    ev_spec_t late2[1] = {{.id = 5}};
    batch_t l2 = batch_make(late2, 1, 0, 4);
    assert_int_equal(agg_store_apply(f->store, l2.m, 1, NULL, 0, T0 + 30000000, &st), 0);
    assert_int_equal(st.late, 1);
    batch_free(&b);
    batch_free(&l);
    batch_free(&l2);
}

typedef struct {
    int n;
    char names[8][32];
    agg_kind_t kinds[8];
} series_list_t;

static int collect_series(void *ctx, const agg_series_info_t *s)
{
    series_list_t *l = ctx;
    if (l->n < 8) {
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s@%s", s->name, s->environment);
        l->kinds[l->n] = s->kind;
        l->n++;
    }
    return 0;
}

static void test_series_star_and_conflicts(void **state)
{
    fixture_t *f = *state;
    ev_spec_t specs[] = {
        {.id = 1, .route = "/a"},
        {.id = 2, .route = "/a"},
        {.id = 3, .route = "/b", .status = 503},
        {.id = 4, .route = "/b", .env = "staging"},
        {.id = 5, .metric = "queue.depth"},
        {.id = 6, .route = "/a", .service = "search"},
        {.id = 7, .route = "queue.depth", .env = "staging"}, /* a gauge's name as a route */
    };
    size_t n = sizeof(specs) / sizeof(specs[0]);
    batch_t b = batch_make(specs, n, 2, 0);
    agg_batch_stats_t st;
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0, &st), 0);
    assert_int_equal(st.applied, 6);
    assert_int_equal(st.conflicts, 1);
    assert_int_equal(b.m[6].result, AGG_MSG_CONFLICT);
    assert_string_equal(b.m[6].reason, "kind");

    uint64_t errors = 0;
    assert_int_equal(count_of(f->store, "checkout", "*", NULL, &errors), 4);
    assert_int_equal(errors, 1);
    assert_int_equal(count_of(f->store, "checkout", "*", "production", NULL), 3);
    assert_int_equal(count_of(f->store, "checkout", "*", "staging", NULL), 1);
    assert_int_equal(count_of(f->store, "checkout", "/a", NULL, NULL), 2);
    assert_int_equal(count_of(f->store, "checkout", "queue.depth", NULL, NULL), 1);
    assert_int_equal(count_of(f->store, "search", "*", NULL, NULL), 1);
    assert_int_equal(count_of(f->store, "nobody", "*", NULL, NULL), 0);

    series_list_t l = {0};
    assert_int_equal(agg_store_series(f->store, "checkout", collect_series, &l), 0);
    assert_int_equal(l.n, 4);
    int seen = 0;
    for (int i = 0; i < l.n; i++) {
        if (strcmp(l.names[i], "queue.depth@production") == 0) {
            assert_int_equal(l.kinds[i], AGG_KIND_GAUGE);
            seen++;
        }
        if (strcmp(l.names[i], "/b@staging") == 0) {
            assert_int_equal(l.kinds[i], AGG_KIND_REQUESTS);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    memset(&l, 0, sizeof(l));
    assert_int_equal(agg_store_series(f->store, NULL, collect_series, &l), 0);
    assert_int_equal(l.n, 5);
    batch_free(&b);
}

/* Overwrites every value of a named database of the store's files with `junk`. */
static void corrupt_db(const char *dir, const char *name, const void *junk, size_t len)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 16u << 20), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        MDB_val nv = {len, (void *)junk};
        assert_int_equal(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT), 0);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_corrupt_values(void **state)
{
    fixture_t *f = *state;
    ev_spec_t specs[2] = {{.id = 1}, {.id = 2}};
    batch_t b = batch_make(specs, 2, 0, 0);
    assert_int_equal(agg_store_apply(f->store, b.m, b.n, NULL, 0, T0, NULL), 0);
    agg_store_destroy(&f->store);
    /* Garbage of the right revision width, then a bucket value that does not parse. */
    static const uint8_t junk[] = {0, 0, 0, 0, 0, 0, 0, 4, 0x0a, 0xff, 0xff};
    corrupt_db(f->dir, "buckets", junk, sizeof(junk));
    f->store = agg_store_open(&f->opts);
    assert_non_null(f->store);

    /* Queries skip it and say so. */
    agg_query_params_t p;
    const char *param = NULL;
    char err[128];
    assert_int_equal(agg_query_params_parse(&p, "checkout", "/pay", "1h", NULL, NULL, T0 + 60000000,
                                            &param, err, sizeof(err)),
                     0);
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    uint64_t corrupt = 0;
    assert_int_equal(agg_store_query(f->store, &p, &acc, &corrupt), 0);
    assert_int_equal(acc.total.count, 0);
    assert_int_equal(corrupt, 1);
    agg_query_acc_fini(&acc);

    /* The owed rollup of a corrupt bucket is handed back without a bucket. */
    owed_t o = {0};
    assert_int_equal(agg_store_owed(f->store, T0 + 60000000, collect_owed, &o), 0);
    assert_int_equal(o.n, 1);
    assert_false(o.have[0]);

    /* New events start the bucket afresh; the revision keeps climbing past the stored 4. */
    ev_spec_t more[1] = {{.id = 3}};
    batch_t m = batch_make(more, 1, 0, 2);
    agg_batch_stats_t st;
    assert_int_equal(agg_store_apply(f->store, m.m, 1, NULL, 0, T0, &st), 0);
    assert_int_equal(st.corrupt, 1);
    assert_int_equal(count_of(f->store, "checkout", "/pay", NULL, NULL), 1);
    memset(&o, 0, sizeof(o));
    assert_int_equal(agg_store_owed(f->store, T0 + 60000000, collect_owed, &o), 0);
    assert_int_equal(o.n, 1);
    assert_true(o.have[0]);
    assert_int_equal(o.refs[0].revision, 5);

    /* A corrupt series value is rewritten, and a corrupt offset starts the partition over. */
    agg_store_destroy(&f->store);
    corrupt_db(f->dir, "series", "x", 1);
    corrupt_db(f->dir, "offsets", "y", 1);
    f->store = agg_store_open(&f->opts);
    int64_t next = 0;
    assert_int_equal(agg_store_offset_get(f->store, TOPIC, 0, &next), TC_ENOTFOUND);
    ev_spec_t again[1] = {{.id = 4}};
    batch_t a = batch_make(again, 1, 0, 3);
    assert_int_equal(agg_store_apply(f->store, a.m, 1, NULL, 0, T0, &st), 0);
    assert_int_equal(st.applied, 1);
    assert_int_equal(st.corrupt, 1);
    series_list_t l = {0};
    assert_int_equal(agg_store_series(f->store, "checkout", collect_series, &l), 0);
    assert_int_equal(l.n, 1);
    batch_free(&b);
    batch_free(&m);
    batch_free(&a);
}

static void test_closed(void **state)
{
    static const struct {
        int64_t start_s, now_us, grace_us;
        bool closed;
    } cases[] = {
        {T0_S, T0 + 11999999, 2000000, false},
        {T0_S, T0 + 12000000, 2000000, true},
        {T0_S, T0 + 10000000, 0, true},
        {-10, -1, 0, false},
        {-10, 0, 0, true},
        {INT64_MAX / 1000000, INT64_MAX, 0, false},
        {(INT64_MIN / 10000000 - 1) * 10, 0, 0, true},
        {(INT64_MIN / 10000000 - 1) * 10, INT64_MIN, 0, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(
            agg_store_bucket_closed(cases[i].start_s, cases[i].now_us, cases[i].grace_us),
            cases[i].closed);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apply_and_reapply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_and_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owed_rollups_and_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_series_star_and_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_values, setup, teardown),
        cmocka_unit_test(test_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
