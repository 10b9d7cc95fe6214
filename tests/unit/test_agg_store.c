/*
 * Unit tests for aggregator/agg_store against real LMDB files in temporary directories:
 * batches applied, queried and given again (stale, not counted twice); duplicated event ids
 * counted once, also across a reopen (the dedupe set refills from the records the partition
 * start says to read again); late and out-of-order events in the right buckets and too-late
 * ones counted as late; owed states, their publication and the checkpoint they allow; a
 * takeover: a second store seeded from the first one's published states and checkpoint ends
 * with exactly the totals of one store that saw everything, duplicates across the boundary
 * included, and a stale owner's older states never overwrite newer ones; issues (new,
 * regressed after a resolve, statuses, lists); logs (query by level, time and text, dedupe,
 * retention by age and size); retention rolling 10 s buckets into 1 min ones and deleting old
 * ones, and the view refusing states below the rolled-up horizon; kind conflicts; corrupt
 * stored values; the map grown from a tiny start; packed records (events decided one by one,
 * unreadable records refused whole with the offset moving on, dedupe inside and across packs
 * and after a restart, log records of one pack each stored); sampled events counted with
 * their weights.
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
#include <xxhash.h>

#include "agg_store.h"
#include "tc_error.h"
#include "tc_util.h"
#include "tocsin/v1/rollup.pb-c.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define SEC 1000000LL
#define T0_S 1795000000LL
#define T0 (T0_S * SEC)
#define EVENTS "tocsin.events"
#define ROLLUPS "tocsin.rollups"
#define LOGS "tocsin.logs"

/* ---- fixtures ---------------------------------------------------------------------------- */

typedef struct {
    char dir[64];
    agg_store_t *store;
    agg_store_opts_t opts;
} db_t;

static void db_open(db_t *d, size_t map)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/test_agg_store.XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    memset(&d->opts, 0, sizeof(d->opts));
    d->opts.dir = d->dir;
    d->opts.map_size = map;
    d->opts.max_map = 512u << 20;
    d->opts.grace_ms = 2000;
    d->opts.dedupe_window_ms = 600000;
    d->opts.dedupe_max_ids = 100000;
    assert_int_equal(agg_slo_parse("100ms,1s", &d->opts.slo), 0);
    d->opts.raw_retention_ms = 86400000LL;
    d->opts.max_retention_ms = 30 * 86400000LL;
    d->opts.logs_retention_ms = 7 * 86400000LL;
    d->opts.logs_max_bytes = 0;
    d->opts.group = "tocsin-aggregator";
    d->opts.events_topic = EVENTS;
    d->store = agg_store_open(&d->opts);
    assert_non_null(d->store);
}

static void db_reopen(db_t *d)
{
    agg_store_destroy(&d->store);
    agg_store_destroy(&d->store); /* safe twice */
    d->store = agg_store_open(&d->opts);
    assert_non_null(d->store);
}

static void db_close(db_t *d)
{
    agg_store_destroy(&d->store);
    char path[128];
    snprintf(path, sizeof(path), "%s/data.mdb", d->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", d->dir);
    unlink(path);
    rmdir(d->dir);
}

/* ---- events ------------------------------------------------------------------------------ */

typedef enum { REQ, ERR, GAUGE, LOG } body_t;

typedef struct {
    uint32_t id; /* becomes the 16-byte event id */
    const char *service;
    body_t body;
    int64_t time_us;
    int64_t received_us; /* 0: received at the event time */
    double value;
    bool error;
    const char *type; /* errors */
    const char *message;
    int level;
    const char *user;
    float sample_rate; /* 0: not sampled */
    const char *route; /* requests; NULL: "/pay" */
} ev_t;

typedef struct {
    uint8_t *bytes;
    size_t len;
} rec_t;

static rec_t encode(const ev_t *e)
{
    Tocsin__V1__Event ev = TOCSIN__V1__EVENT__INIT;
    Tocsin__V1__Request req = TOCSIN__V1__REQUEST__INIT;
    Tocsin__V1__ErrorEvent er = TOCSIN__V1__ERROR_EVENT__INIT;
    Tocsin__V1__Metric met = TOCSIN__V1__METRIC__INIT;
    Tocsin__V1__LogRecord lr = TOCSIN__V1__LOG_RECORD__INIT;
    Tocsin__V1__Frame fr = TOCSIN__V1__FRAME__INIT;
    Tocsin__V1__Frame *frames[1] = {&fr};
    uint8_t id[16] = {0};
    memcpy(id, &e->id, sizeof(e->id));
    id[15] = 0x42;
    ev.event_id.data = id;
    ev.event_id.len = 16;
    ev.time_us = e->time_us;
    ev.received_us = e->received_us ? e->received_us : e->time_us;
    ev.service = (char *)(e->service ? e->service : "checkout");
    ev.environment = "production";
    ev.release = "1.0";
    ev.user_id = (char *)(e->user ? e->user : "");
    ev.sample_rate = e->sample_rate;
    switch (e->body) {
    case REQ:
        req.route = (char *)(e->route ? e->route : "/pay");
        req.status = e->error ? 500 : 200;
        req.duration_us = (uint64_t)(e->value > 0 ? e->value : 1000);
        ev.body_case = TOCSIN__V1__EVENT__BODY_REQUEST;
        ev.request = &req;
        break;
    case ERR:
        er.type = (char *)(e->type ? e->type : "KeyError");
        er.message = (char *)(e->message ? e->message : "boom");
        er.level = (Tocsin__V1__Level)(e->level ? e->level : 5);
        fr.function = "charge";
        fr.module = "app";
        fr.in_app = true;
        fr.line = e->id; /* another line each time: still one issue */
        er.n_frames = 1;
        er.frames = frames;
        ev.body_case = TOCSIN__V1__EVENT__BODY_ERROR;
        ev.error = &er;
        break;
    case GAUGE:
        met.name = "/pay"; /* the request series' name with another kind */
        met.kind = TOCSIN__V1__METRIC_KIND__METRIC_KIND_GAUGE;
        met.value = e->value;
        ev.body_case = TOCSIN__V1__EVENT__BODY_METRIC;
        ev.metric = &met;
        break;
    case LOG:
        lr.level = (Tocsin__V1__Level)(e->level ? e->level : 3);
        lr.message = (char *)(e->message ? e->message : "hello");
        lr.logger = "app";
        ev.body_case = TOCSIN__V1__EVENT__BODY_LOG;
        ev.log = &lr;
        break;
    }
    rec_t r;
    r.len = tocsin__v1__event__get_packed_size(&ev);
    r.bytes = malloc(r.len);
    assert_non_null(r.bytes);
    tocsin__v1__event__pack(&ev, r.bytes);
    return r;
}

/* Commits `n` owned records of `partition` at offsets first.. (records[i] at first + i). */
static agg_batch_stats_t commit_events(agg_store_t *s, int32_t partition, int64_t first,
                                       const ev_t *evs, size_t n, agg_msg_result_t *results)
{
    rec_t *recs = calloc(n ? n : 1, sizeof(*recs));
    agg_msg_t *msgs = calloc(n ? n : 1, sizeof(*msgs));
    for (size_t i = 0; i < n; i++) {
        recs[i] = encode(&evs[i]);
        msgs[i].partition = partition;
        msgs[i].offset = first + (int64_t)i;
        msgs[i].value = recs[i].bytes;
        msgs[i].len = recs[i].len;
        msgs[i].format = AGG_FORMAT_EVENT;
    }
    agg_commit_t c = {.events_topic = EVENTS,
                      .events = msgs,
                      .nevents = n,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .now_us = T0 + 3600 * SEC};
    agg_batch_stats_t st;
    assert_int_equal(agg_store_commit(s, &c, &st), 0);
    for (size_t i = 0; i < n; i++) {
        if (results) {
            results[i] = msgs[i].result;
        }
        free(recs[i].bytes);
    }
    free(recs);
    free(msgs);
    return st;
}

static uint64_t query_count(agg_store_t *s, const char *service, const char *name, int64_t from_s,
                            int64_t to_s, agg_bucket_t *out)
{
    agg_query_params_t p;
    const char *param = NULL;
    char err[128];
    assert_int_equal(
        agg_query_params_parse(&p, service, name, "1h", NULL, NULL, T0, &param, err, sizeof(err)),
        0);
    p.from_s = from_s;
    p.to_s = to_s;
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    uint64_t corrupt = 0;
    assert_int_equal(agg_store_query(s, &p, &acc, &corrupt), 0);
    uint64_t n = acc.total.count;
    if (out) {
        agg_bucket_copy(out, &acc.total);
    }
    agg_query_acc_fini(&acc);
    return n;
}

static uint64_t total(agg_store_t *s, const char *name)
{
    return query_count(s, "checkout", name, T0_S - 86400, T0_S + 86400, NULL);
}

/* ---- publishing, as the daemon does it --------------------------------------------------------
 */

typedef struct {
    rec_t recs[4096];
    agg_owed_ref_t refs[4096];
    size_t n;
} published_t;

static int collect(void *ctx, const agg_publish_item_t *item)
{
    published_t *p = ctx;
    assert_true(p->n < N_ELEMS(p->recs));
    p->refs[p->n] = item->ref;
    if (item->value) {
        p->recs[p->n].bytes = malloc(item->vlen);
        memcpy(p->recs[p->n].bytes, item->value, item->vlen);
        p->recs[p->n].len = item->vlen;
    } else {
        p->recs[p->n].bytes = NULL;
        p->recs[p->n].len = 0;
    }
    p->n++;
    return 0;
}

static void published_free(published_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->recs[i].bytes);
    }
    p->n = 0;
}

/* Walks the owed states at `now`, returns the checkpoint of partition 0. */
static agg_checkpoint_t publish(agg_store_t *s, int64_t now, published_t *out)
{
    int32_t owned[1] = {0};
    agg_checkpoint_t cps[1];
    assert_int_equal(agg_store_owed(s, now, "test", NULL, collect, out, owned, 1, cps), 0);
    return cps[0];
}

/* Confirms the delivery of everything in `p` (the next commit clears it). */
static void deliver(agg_store_t *s, const published_t *p)
{
    agg_commit_t c = {.events_topic = EVENTS,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .delivered = p->refs,
                      .ndelivered = p->n,
                      .now_us = T0};
    assert_int_equal(agg_store_commit(s, &c, NULL), 0);
}

/* Gives records of tocsin.rollups to a store's view, at offsets first.. of partition 0. */
static agg_batch_stats_t view_apply(agg_store_t *s, int64_t first, rec_t *recs, size_t n)
{
    agg_msg_t *msgs = calloc(n ? n : 1, sizeof(*msgs));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!recs[i].bytes) {
            continue;
        }
        msgs[k].partition = 0;
        msgs[k].offset = first + (int64_t)k;
        msgs[k].value = recs[i].bytes;
        msgs[k].len = recs[i].len;
        msgs[k].format = AGG_FORMAT_EVENT;
        k++;
    }
    agg_commit_t c = {.events_topic = EVENTS,
                      .rollups_topic = ROLLUPS,
                      .rollups = msgs,
                      .nrollups = k,
                      .logs_topic = LOGS,
                      .now_us = T0};
    agg_batch_stats_t st;
    assert_int_equal(agg_store_commit(s, &c, &st), 0);
    free(msgs);
    return st;
}

static rec_t checkpoint_rec(const agg_checkpoint_t *cp)
{
    Tocsin__V1__Checkpoint pb = TOCSIN__V1__CHECKPOINT__INIT;
    pb.group = "tocsin-aggregator";
    pb.topic = EVENTS;
    pb.partition = (uint32_t)cp->partition;
    pb.offset = cp->offset;
    pb.dedupe_from = cp->dedupe_from;
    pb.time_us = T0;
    Tocsin__V1__Rollup r = TOCSIN__V1__ROLLUP__INIT;
    r.producer = "a";
    r.body_case = TOCSIN__V1__ROLLUP__BODY_CHECKPOINT;
    r.checkpoint = &pb;
    rec_t out;
    out.len = tocsin__v1__rollup__get_packed_size(&r);
    out.bytes = malloc(out.len);
    tocsin__v1__rollup__pack(&r, out.bytes);
    return out;
}

/* ---- tests ------------------------------------------------------------------------------ */

static ev_t req(uint32_t id, int64_t t, double us, bool error)
{
    ev_t e = {.id = id, .body = REQ, .time_us = t, .value = us, .error = error};
    return e;
}

/* ---- the service-wide series ------------------------------------------------------------ */

static const char *const ROUTES[] = {"/pay", "/cart", "/search", "/login"};

/* Asserts that name=* answers what merging the answers of every route gives, over
 * [from_s, to_s): counts, late and slow exact, the same sketch (so the same quantiles) and
 * the same users estimate. Returns the count. */
static uint64_t assert_star_is_merge(agg_store_t *s, int64_t from_s, int64_t to_s)
{
    agg_bucket_t star, one;
    agg_bucket_init(&star);
    agg_bucket_init(&one);
    query_count(s, "checkout", "*", from_s, to_s, &star);
    agg_query_acc_t merged;
    agg_query_acc_init(&merged);
    for (size_t i = 0; i < N_ELEMS(ROUTES); i++) {
        agg_bucket_reset(&one);
        if (query_count(s, "checkout", ROUTES[i], from_s, to_s, &one) > 0 || one.late > 0) {
            assert_int_equal(agg_query_add(&merged, &one), 0);
        }
    }
    const agg_bucket_t *m = &merged.total;
    assert_int_equal(star.count, m->count);
    assert_int_equal(star.errors, m->errors);
    assert_int_equal(star.late, m->late);
    assert_int_equal(star.sampled_events, m->sampled_events);
    assert_int_equal(star.sampled_count, m->sampled_count);
    assert_int_equal(star.nslo, m->nslo);
    for (uint32_t i = 0; i < star.nslo; i++) {
        assert_int_equal(star.slow[i], m->slow[i]);
    }
    assert_int_equal(star.sketch.count, m->sketch.count);
    const double qs[] = {0.0, 0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < N_ELEMS(qs); i++) {
        double a = tc_sketch_quantile(&star.sketch, qs[i]);
        double b = tc_sketch_quantile(&m->sketch, qs[i]);
        assert_true(a == b || (isnan(a) && isnan(b)));
    }
    assert_true(tc_hll_count(&star.users) == tc_hll_count(&m->users));
    uint64_t n = star.count;
    agg_query_acc_fini(&merged);
    agg_bucket_fini(&star);
    agg_bucket_fini(&one);
    return n;
}

#define WIDE_FROM (T0_S - 40 * 86400)
#define WIDE_TO (T0_S + 86400)

/* Request events of several routes over two minutes: errors, users, sampled ones, and some
 * duplicated ids. */
static void service_events(ev_t *evs, size_t n, uint32_t first_id)
{
    static const char *const users[] = {"u1", "u2", "u3", "u4", "u5"};
    for (size_t i = 0; i < n; i++) {
        uint32_t id = first_id + (uint32_t)i;
        if (i % 17 == 16) {
            id -= 5; /* a resend */
        }
        evs[i] = req(id, T0 + (int64_t)(i % 120) * SEC, 500.0 * (double)(1 + (i * 37) % 400),
                     i % 9 == 0);
        evs[i].route = ROUTES[i % N_ELEMS(ROUTES)];
        evs[i].user = users[i % N_ELEMS(users)];
        if (i % 23 == 0) {
            evs[i].sample_rate = 0.25f;
        }
    }
}

/* The service-wide series: name=* equals the merge of the routes with events in several
 * partitions, late ones (in their bucket and counted late), one too old for any bucket,
 * duplicates, records given twice, another service's events, and after retention merged the
 * 10 s buckets into 1 min ones; it is published with its own kind and read back by a view. */
static void test_service_wide(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 32u << 20);
    enum { N = 600 };
    static ev_t evs[N];
    service_events(evs, N, 1);
    commit_events(d.store, 0, 0, evs, N / 2, NULL);
    commit_events(d.store, 1, 0, evs + N / 2, N / 2, NULL);
    commit_events(d.store, 1, 0, evs + N / 2, N / 2, NULL); /* given again: stale */
    /* Late: received a minute after their bucket closed; too old: before retention.max. */
    ev_t late[4];
    for (int i = 0; i < 3; i++) {
        late[i] = req(5000 + (uint32_t)i, T0 + i * SEC, 2500, i == 1);
        late[i].route = ROUTES[i];
        late[i].received_us = T0 + 70 * SEC;
    }
    late[3] = req(5003, T0 - 31 * 86400 * SEC, 900, false);
    late[3].received_us = T0 + 70 * SEC;
    late[3].route = "/cart";
    agg_batch_stats_t st = commit_events(d.store, 2, 0, late, 4, NULL);
    assert_int_equal(st.late, 4);
    ev_t other = req(6000, T0, 1000, false);
    other.service = "search";
    commit_events(d.store, 2, 4, &other, 1, NULL);

    uint64_t n = assert_star_is_merge(d.store, WIDE_FROM, WIDE_TO);
    assert_true(n > N); /* sampled events count with their weight */
    agg_bucket_t b;
    agg_bucket_init(&b);
    query_count(d.store, "checkout", "*", WIDE_FROM, WIDE_TO, &b);
    assert_int_equal(b.late, 4);
    /* Each 10 s bucket alone, windows that cut minutes, and range queries whose steps cut
     * minutes (their minute totals cannot serve) or hold them whole. */
    for (int64_t t = T0_S; t < T0_S + 130; t += 10) {
        assert_star_is_merge(d.store, t, t + 10);
        assert_star_is_merge(d.store, t, t + 70);
    }
    const int64_t steps[] = {10, 30, 60, 120};
    for (size_t si = 0; si < N_ELEMS(steps); si++) {
        agg_query_params_t rp;
        const char *param = NULL;
        char err[128];
        enum { PTS = 32 };
        agg_query_acc_t star[PTS], routes[PTS];
        assert_int_equal(agg_range_params_parse(&rp, "checkout", "*", "1795000000", "1795000240",
                                                steps[si] == 10    ? "10s"
                                                : steps[si] == 30  ? "30s"
                                                : steps[si] == 60  ? "1m"
                                                                   : "2m",
                                                NULL, NULL, T0 + 3600 * SEC, &param, err,
                                                sizeof(err)),
                         0);
        assert_true(rp.npoints <= PTS);
        for (size_t i = 0; i < PTS; i++) {
            agg_query_acc_init(&star[i]);
            agg_query_acc_init(&routes[i]);
        }
        assert_int_equal(agg_store_range(d.store, &rp, star, NULL), 0);
        for (size_t r = 0; r < N_ELEMS(ROUTES); r++) {
            agg_query_params_t one = rp;
            one.name = ROUTES[r];
            assert_int_equal(agg_store_range(d.store, &one, routes, NULL), 0);
        }
        uint64_t sum = 0;
        for (size_t i = 0; i < rp.npoints; i++) {
            assert_int_equal(star[i].total.count, routes[i].total.count);
            assert_int_equal(star[i].total.errors, routes[i].total.errors);
            assert_true(tc_sketch_quantile(&star[i].total.sketch, 0.9) ==
                            tc_sketch_quantile(&routes[i].total.sketch, 0.9) ||
                        star[i].total.count == 0);
            sum += star[i].total.count;
        }
        assert_true(sum > N);
        for (size_t i = 0; i < PTS; i++) {
            agg_query_acc_fini(&star[i]);
            agg_query_acc_fini(&routes[i]);
        }
    }
    /* Published: the routes' states only; a view rebuilds the totals from them. */
    static published_t p;
    int32_t owned[3] = {0, 1, 2};
    agg_checkpoint_t cps[3];
    assert_int_equal(agg_store_owed(d.store, T0, "test", NULL, collect, &p, owned, 3, cps), 0);
    size_t wide = 0;
    for (size_t i = 0; i < p.n; i++) {
        Tocsin__V1__Rollup *r = tocsin__v1__rollup__unpack(NULL, p.recs[i].len, p.recs[i].bytes);
        assert_non_null(r);
        if (r->bucket) {
            assert_true(r->bucket->name[0] != '$' || strcmp(r->bucket->name, "$errors") == 0);
            wide += r->bucket->kind == TOCSIN__V1__SERIES_KIND__SERIES_KIND_REQUESTS;
        }
        tocsin__v1__rollup__free_unpacked(r, NULL);
    }
    assert_true(wide > 0);
    db_t v;
    db_open(&v, 32u << 20);
    view_apply(v.store, 0, p.recs, p.n);
    assert_int_equal(assert_star_is_merge(v.store, WIDE_FROM, WIDE_TO), n);
    query_count(v.store, "checkout", "*", WIDE_FROM, WIDE_TO, &b);
    assert_int_equal(b.late, 4);
    published_free(&p);
    db_close(&v);

    /* Retention: 10 s buckets become 1 min ones; the answers stay. */
    int64_t later = T0 + 3 * 86400 * SEC;
    for (int i = 0; i < 100 && agg_store_maintain(d.store, later, later, 1000) > 0; i++) {
    }
    assert_int_equal(assert_star_is_merge(d.store, WIDE_FROM, WIDE_TO), n);
    assert_int_equal(query_count(d.store, "search", "*", WIDE_FROM, WIDE_TO, NULL), 1);
    agg_bucket_fini(&b);
    db_close(&d);
}

static int count_series(void *ctx, const agg_series_info_t *si)
{
    assert_string_not_equal(si->name, "$requests");
    (*(int *)ctx)++;
    return 0;
}

/* A store of format 2 (before the service-wide series) is migrated when opened: name=*
 * answers as before, from the routes' buckets, 10 s and 1 min ones. */
static void test_service_wide_migration(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 32u << 20);
    enum { N = 400 };
    static ev_t evs[N];
    service_events(evs, N, 1);
    commit_events(d.store, 0, 0, evs, N / 2, NULL);
    commit_events(d.store, 3, 0, evs + N / 2, N / 2, NULL);
    /* An older minute, rolled up to 1 min buckets. */
    static ev_t old[40];
    service_events(old, 40, 10000);
    for (size_t i = 0; i < 40; i++) {
        old[i].time_us -= 2 * 86400 * SEC;
        old[i].received_us = old[i].time_us;
    }
    commit_events(d.store, 0, N / 2, old, 40, NULL);
    assert_star_is_merge(d.store, T0_S - 2 * 86400 - 100, T0_S - 2 * 86400 + 100);
    for (int i = 0; i < 100 && agg_store_maintain(d.store, T0, T0, 1000) > 0; i++) {
    }
    assert_star_is_merge(d.store, T0_S - 2 * 86400 - 100, T0_S - 2 * 86400 + 100);
    agg_bucket_t before;
    agg_bucket_init(&before);
    uint64_t n = assert_star_is_merge(d.store, WIDE_FROM, WIDE_TO);
    query_count(d.store, "checkout", "*", WIDE_FROM, WIDE_TO, &before);
    int nseries = 0;
    assert_int_equal(agg_store_series(d.store, "checkout", count_series, &nseries), 0);
    assert_int_equal(nseries, (int)N_ELEMS(ROUTES));
    agg_store_destroy(&d.store);

    /* Make it a store of format 2, behind the store's back: no service-wide series. */
    uint64_t hname = XXH3_64bits("$requests", 9), htotal = XXH3_64bits("$requests:total", 15);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbs[3];
    const char *names[3] = {"buckets", "series", "meta"};
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, 32u << 20);
    assert_int_equal(mdb_env_open(env, d.dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    int deleted = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mdb_dbi_open(txn, names[i], 0, &dbs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        MDB_cursor *cur;
        mdb_cursor_open(txn, dbs[i], &cur);
        MDB_val k, v;
        int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (rc == 0) {
            uint64_t h = tc_be64_get((const uint8_t *)k.mv_data + 8);
            if (h == hname || h == htotal) {
                assert_int_equal(mdb_cursor_del(cur, 0), 0);
                deleted++;
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT); /* the one after it */
            } else {
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            }
        }
        mdb_cursor_close(cur);
    }
    uint8_t two[4];
    tc_be32_put(two, 2);
    MDB_val fk = {6, "format"}, fv = {4, two};
    assert_int_equal(mdb_put(txn, dbs[2], &fk, &fv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_true(deleted > 3);

    d.store = agg_store_open(&d.opts);
    assert_non_null(d.store);
    agg_bucket_t after;
    agg_bucket_init(&after);
    assert_int_equal(assert_star_is_merge(d.store, WIDE_FROM, WIDE_TO), n);
    query_count(d.store, "checkout", "*", WIDE_FROM, WIDE_TO, &after);
    assert_int_equal(after.errors, before.errors);
    assert_true(tc_sketch_quantile(&after.sketch, 0.99) ==
                tc_sketch_quantile(&before.sketch, 0.99));
    assert_true(tc_hll_count(&after.users) == tc_hll_count(&before.users));
    /* New events go on from the migrated state (a minute without a stored total gets one
     * from its 10 s totals first). */
    ev_t more = req(90000, T0 + 5 * SEC, 700, true);
    more.route = "/login";
    commit_events(d.store, 3, N / 2, &more, 1, NULL);
    assert_int_equal(assert_star_is_merge(d.store, WIDE_FROM, WIDE_TO), n + 1);
    /* Opened again: already format 3, nothing to do. */
    db_reopen(&d);
    assert_int_equal(assert_star_is_merge(d.store, WIDE_FROM, WIDE_TO), n + 1);
    agg_bucket_fini(&before);
    agg_bucket_fini(&after);
    db_close(&d);
}

static void test_apply_and_reapply(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[100];
    for (uint32_t i = 0; i < 100; i++) {
        evs[i] = req(i, T0 + i * 100000, 1000.0 * (i + 1), i % 10 == 0);
    }
    agg_batch_stats_t st = commit_events(d.store, 0, 0, evs, 100, NULL);
    assert_int_equal(st.applied, 100);
    agg_bucket_t b;
    agg_bucket_init(&b);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S, T0_S + 10, &b), 100);
    assert_int_equal(b.errors, 10);
    assert_int_equal(b.slow[0], 0); /* nothing above 100 ms */
    /* The same records again: below the stored offset, not counted. */
    st = commit_events(d.store, 0, 0, evs, 100, NULL);
    assert_int_equal(st.stale, 100);
    assert_int_equal(st.applied, 0);
    assert_int_equal(total(d.store, "/pay"), 100);
    int64_t next = 0;
    assert_int_equal(agg_store_offset_get(d.store, EVENTS, 0, &next), 0);
    assert_int_equal(next, 100);
    assert_int_equal(agg_store_offset_get(d.store, EVENTS, 1, &next), TC_ENOTFOUND);
    /* Kept across a reopen. */
    db_reopen(&d);
    assert_int_equal(total(d.store, "/pay"), 100);
    assert_int_equal(agg_store_offset_get(d.store, EVENTS, 0, &next), 0);
    assert_int_equal(next, 100);
    agg_bucket_fini(&b);
    db_close(&d);
}

static void test_duplicates_and_restart(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[60];
    for (uint32_t i = 0; i < 60; i++) {
        evs[i] = req(i % 50, T0 + i * 1000, 1000, false); /* ids 0..9 come twice */
    }
    agg_msg_result_t res[60];
    agg_batch_stats_t st = commit_events(d.store, 0, 0, evs, 60, res);
    assert_int_equal(st.applied, 50);
    assert_int_equal(st.duplicates, 10);
    assert_int_equal(res[55], AGG_MSG_DUPLICATE);
    assert_int_equal(total(d.store, "/pay"), 50);
    /* A restart: the dedupe set is empty until the partition's records are read again from
     * where the partition start says. */
    db_reopen(&d);
    int64_t start = 0, from = 0;
    const char *source = NULL;
    assert_int_equal(agg_store_partition_start(d.store, 0, &start, &from, &source), 0);
    assert_int_equal(start, 60);
    assert_string_equal(source, "our stored offset");
    assert_true(from >= 0 && from <= 0); /* everything is inside the 10 min window */
    commit_events(d.store, 0, from, evs + from, (size_t)(60 - from), NULL); /* all stale */
    ev_t more[10];
    for (uint32_t i = 0; i < 10; i++) {
        more[i] = req(i < 5 ? 20 + i : 100 + i, T0 + 100000, 1000, false);
    }
    st = commit_events(d.store, 0, 60, more, 10, NULL);
    assert_int_equal(st.duplicates, 5);
    assert_int_equal(st.applied, 5);
    assert_int_equal(total(d.store, "/pay"), 55);
    db_close(&d);
}

static void test_late_and_out_of_order(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    /* Buckets [T0, T0+10) and [T0+10, T0+20); grace 2 s. */
    ev_t evs[] = {
        req(1, T0 + 15 * SEC, 1000, false), /* second bucket first */
        req(2, T0 + 3 * SEC, 1000, false),  /* out of order: first bucket */
        {.id = 3,
         .body = REQ,
         .time_us = T0 + 9 * SEC,
         .value = 1000,
         .received_us = T0 + 11 * SEC}, /* within grace: its bucket */
        {.id = 4,
         .body = REQ,
         .time_us = T0 + 1 * SEC,
         .value = 1000,
         .received_us = T0 + 25 * SEC}, /* after its bucket closed: its bucket, as late */
        req(5, T0 + 19 * SEC, 1000, false),
    };
    agg_msg_result_t res[N_ELEMS(evs)];
    agg_batch_stats_t st = commit_events(d.store, 0, 0, evs, N_ELEMS(evs), res);
    assert_int_equal(st.applied, 5);
    assert_int_equal(st.late, 1);
    assert_int_equal(res[3], AGG_MSG_APPLIED);
    agg_bucket_t b;
    agg_bucket_init(&b);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S, T0_S + 10, &b), 3);
    assert_int_equal(b.late, 1);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S + 10, T0_S + 20, &b), 2);
    assert_int_equal(b.late, 0);
    /* A range query sees each bucket at its own step. */
    agg_query_params_t p;
    const char *param = NULL;
    char err[128];
    assert_int_equal(agg_range_params_parse(&p, "checkout", "*", "1795000000", "1795000030", "10s",
                                            NULL, NULL, T0 + 60 * SEC, &param, err, sizeof(err)),
                     0);
    agg_query_acc_t accs[3];
    for (int i = 0; i < 3; i++) {
        agg_query_acc_init(&accs[i]);
    }
    assert_int_equal(agg_store_range(d.store, &p, accs, NULL), 0);
    assert_int_equal(accs[0].total.count, 3);
    assert_int_equal(accs[0].total.late, 1);
    assert_int_equal(accs[1].total.count, 2);
    assert_int_equal(accs[2].total.count, 0);
    for (int i = 0; i < 3; i++) {
        agg_query_acc_fini(&accs[i]);
    }
    /* Too old: its bucket is older than retention.max: counted as late only, in the bucket
     * of its arrival (commit_events' now is T0 + 1 h). */
    ev_t old = {.id = 6,
                .body = REQ,
                .time_us = T0 - 40 * 86400 * SEC,
                .value = 1000,
                .received_us = T0 + 3600 * SEC - 5 * SEC};
    st = commit_events(d.store, 0, 5, &old, 1, res);
    assert_int_equal(res[0], AGG_MSG_LATE);
    assert_int_equal(st.applied, 0);
    assert_int_equal(st.late, 1);
    int64_t arrival_s = agg_bucket_align(T0 + 3595 * SEC, AGG_BUCKET_WIDTH_S);
    assert_int_equal(query_count(d.store, "checkout", "/pay", arrival_s, arrival_s + 10, &b), 0);
    assert_int_equal(b.late, 1);
    assert_int_equal(total(d.store, "/pay"), 5);
    agg_bucket_fini(&b);
    db_close(&d);
}

/* Owed states: every change is published; a mark stays until its bucket's closed revision is
 * delivered; the checkpoint never passes an undelivered change. */
static void test_owed_and_checkpoint(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[20];
    for (uint32_t i = 0; i < 20; i++) {
        evs[i] = req(i, T0 + i * SEC, 1000, false); /* buckets T0 and T0+10 */
    }
    commit_events(d.store, 0, 0, evs, 20, NULL);
    static published_t p;
    agg_checkpoint_t cp = publish(d.store, T0 + 5 * SEC, &p);
    assert_int_equal(p.n, 2); /* two buckets of /pay: the request totals are not published */
    assert_int_equal(cp.offset, 0); /* nothing delivered yet */
    assert_false(p.refs[0].closed || p.refs[1].closed);
    deliver(d.store, &p);
    published_free(&p);
    cp = publish(d.store, T0 + 5 * SEC, &p);
    assert_int_equal(p.n, 0); /* delivered; the buckets are still open */
    assert_int_equal(cp.offset, 20);
    /* The first bucket closes at T0 + 12 s: published once more, closed. */
    cp = publish(d.store, T0 + 13 * SEC, &p);
    assert_int_equal(p.n, 1);
    assert_true(p.refs[0].closed);
    deliver(d.store, &p);
    published_free(&p);
    cp = publish(d.store, T0 + 13 * SEC, &p);
    assert_int_equal(p.n, 0);
    /* A new change: the checkpoint stays below it until it is delivered. */
    ev_t one = req(100, T0 + 15 * SEC, 1000, false);
    commit_events(d.store, 0, 20, &one, 1, NULL);
    cp = publish(d.store, T0 + 16 * SEC, &p);
    assert_int_equal(p.n, 1);
    assert_int_equal(cp.offset, 20);
    deliver(d.store, &p);
    published_free(&p);
    cp = publish(d.store, T0 + 16 * SEC, &p);
    assert_int_equal(cp.offset, 21);
    assert_int_equal(agg_store_owed_count(d.store), 1); /* the open second bucket */
    /* A revoked partition's marks go. */
    assert_int_equal(agg_store_partition_revoked(d.store, 0), 0);
    assert_int_equal(agg_store_owed_count(d.store), 0);
    db_close(&d);
}

/* A takes partition 0, publishes and checkpoints part of it, applies more and dies. B starts
 * from A's checkpoint with A's published states in its view, reads on, and ends with the
 * totals of one store that saw everything. */
static void test_takeover(void **state)
{
    (void)state;
    enum { N = 300 };
    static ev_t evs[N];
    for (uint32_t i = 0; i < N; i++) {
        /* ids repeat: record 120 + k resends record 90 + k (k < 10), across the boundary. */
        uint32_t id = i >= 120 && i < 130 ? i - 30 : i;
        evs[i] = req(id, T0 + (int64_t)i * 100000, 1000.0 * (1 + i % 50), i % 7 == 0);
        if (i % 3 == 0) {
            evs[i].body = ERR;
            evs[i].type = i % 2 ? "KeyError" : "ValueError";
        }
        evs[i].user = i % 2 ? "u1" : "u2";
    }
    db_t ref, a, b;
    db_open(&ref, 16u << 20);
    db_open(&a, 16u << 20);
    db_open(&b, 16u << 20);
    commit_events(ref.store, 0, 0, evs, N, NULL);

    /* A: 0..99, published and delivered, checkpoint 100; then 100..149 never published. */
    static published_t pa;
    commit_events(a.store, 0, 0, evs, 100, NULL);
    publish(a.store, T0, &pa);
    deliver(a.store, &pa);
    static published_t pa2;
    agg_checkpoint_t cp = publish(a.store, T0, &pa2);
    assert_int_equal(cp.offset, 100);
    assert_int_equal(pa2.n, 0);
    commit_events(a.store, 0, 100, evs + 100, 50, NULL);

    /* B's view reads A's states and checkpoint. */
    rec_t cpr = checkpoint_rec(&cp);
    view_apply(b.store, 0, pa.recs, pa.n);
    view_apply(b.store, (int64_t)pa.n, &cpr, 1);
    int64_t start = 0, from = 0;
    const char *source = NULL;
    assert_int_equal(agg_store_partition_start(b.store, 0, &start, &from, &source), 0);
    assert_int_equal(start, 100);
    assert_string_equal(source, "a checkpoint");
    assert_true(from <= 90); /* the dedupe window reaches back before the resends' originals */
    agg_batch_stats_t st = commit_events(b.store, 0, from, evs + from, (size_t)(N - from), NULL);
    assert_int_equal(st.stale, (uint64_t)(100 - from));
    assert_int_equal(st.duplicates, 10);
    assert_int_equal(total(b.store, "/pay"), total(ref.store, "/pay"));
    assert_int_equal(total(b.store, "$errors"), total(ref.store, "$errors"));
    /* name=* too: B's service-wide series (A's published states, then its own) equals the
     * reference's and the merge of B's routes. */
    assert_int_equal(total(b.store, "*"), total(ref.store, "*"));
    assert_int_equal(assert_star_is_merge(b.store, WIDE_FROM, WIDE_TO), total(ref.store, "*"));
    agg_bucket_t x, y;
    agg_bucket_init(&x);
    agg_bucket_init(&y);
    query_count(b.store, "checkout", "/pay", T0_S - 60, T0_S + 60, &x);
    query_count(ref.store, "checkout", "/pay", T0_S - 60, T0_S + 60, &y);
    assert_int_equal(x.errors, y.errors);
    assert_int_equal(x.sketch.count, y.sketch.count);
    assert_true(tc_sketch_quantile(&x.sketch, 0.99) == tc_sketch_quantile(&y.sketch, 0.99));
    assert_true(tc_hll_count(&x.users) == tc_hll_count(&y.users));

    /* A's stale states (from before B took over) reach B's view late: B keeps its own. */
    static published_t pa3;
    publish(a.store, T0, &pa3);
    assert_true(pa3.n > 0);
    st = view_apply(b.store, (int64_t)pa.n + 1, pa3.recs, pa3.n);
    assert_int_equal(st.view_applied, 0);
    assert_int_equal(total(b.store, "/pay"), total(ref.store, "/pay"));
    /* And B's newer states replace A's in A's view. */
    static published_t pb;
    int32_t owned[1] = {0};
    agg_checkpoint_t cps[1];
    assert_int_equal(agg_store_owed(b.store, T0, "b", NULL, collect, &pb, owned, 1, cps), 0);
    st = view_apply(a.store, 0, pb.recs, pb.n);
    assert_true(st.view_applied > 0);
    assert_int_equal(total(a.store, "/pay"), total(ref.store, "/pay"));
    assert_int_equal(total(a.store, "*"), total(ref.store, "*"));
    assert_int_equal(assert_star_is_merge(a.store, WIDE_FROM, WIDE_TO), total(ref.store, "*"));

    /* The issues too: B's merged issues equal the reference's. */
    uint64_t counts[3] = {0};
    (void)counts;
    agg_bucket_fini(&x);
    agg_bucket_fini(&y);
    free(cpr.bytes);
    published_free(&pa);
    published_free(&pa2);
    published_free(&pa3);
    published_free(&pb);
    db_close(&ref);
    db_close(&a);
    db_close(&b);
}

typedef struct {
    char ids[8][40];
    uint64_t counts[8];
    agg_status_t status[8];
    size_t n;
} issues_t;

static int take_issue(void *ctx, const agg_issue_t *is, const agg_issue_status_t *st)
{
    issues_t *l = ctx;
    if (l->n < 8) {
        snprintf(l->ids[l->n], sizeof(l->ids[l->n]), "%s", is->id);
        l->counts[l->n] = is->count;
        l->status[l->n] = st->status;
        l->n++;
    }
    return 0;
}

typedef struct {
    int kinds[16];
    size_t n;
    uint64_t last;
} changes_t;

static int take_change(void *ctx, uint64_t seq, const uint8_t *key, size_t klen,
                       const uint8_t *value, size_t vlen)
{
    changes_t *c = ctx;
    Tocsin__V1__Rollup *r = tocsin__v1__rollup__unpack(NULL, vlen, value);
    assert_non_null(r);
    if (c->n < 16) {
        c->kinds[c->n++] = r->body_case == TOCSIN__V1__ROLLUP__BODY_ISSUE ? (int)r->issue->kind
                                                                          : 100 + (int)r->body_case;
    }
    c->last = seq;
    tocsin__v1__rollup__free_unpacked(r, NULL);
    return 0;
}

static void test_issues(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[] = {
        {.id = 1, .body = ERR, .time_us = T0, .type = "KeyError", .message = "missing 1"},
        {.id = 2, .body = ERR, .time_us = T0 + SEC, .type = "KeyError", .message = "missing 2"},
        {.id = 3, .body = ERR, .time_us = T0 + SEC, .type = "ValueError", .message = "bad"},
    };
    commit_events(d.store, 0, 0, evs, 3, NULL);
    changes_t ch = {{0}, 0, 0};
    assert_int_equal(agg_store_changes(d.store, 0, take_change, &ch), 0);
    assert_int_equal(ch.n, 2); /* two new issues: KeyError (lines differ) and ValueError */
    assert_int_equal(ch.kinds[0], 1);
    assert_int_equal(ch.kinds[1], 1);
    issues_t l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(agg_store_issues(d.store, "checkout", take_issue, &l), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.counts[0] + l.counts[1], 3);
    assert_int_equal(total(d.store, "$errors"), 3);
    /* The published changes are forgotten after their delivery. */
    uint64_t done[2] = {1, 2};
    agg_commit_t c = {.events_topic = EVENTS,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .changes_done = done,
                      .nchanges_done = 2,
                      .now_us = T0};
    assert_int_equal(agg_store_commit(d.store, &c, NULL), 0);
    memset(&ch, 0, sizeof(ch));
    assert_int_equal(agg_store_changes(d.store, 0, take_change, &ch), 0);
    assert_int_equal(ch.n, 0);

    /* Resolve the KeyError issue at T0 + 10 s. */
    char key_id[40];
    snprintf(key_id, sizeof(key_id), "%s", l.counts[0] == 2 ? l.ids[0] : l.ids[1]);
    assert_int_equal(agg_store_status_set(d.store, "checkout", key_id, AGG_STATUS_RESOLVED,
                                          "api:test", T0 + 10 * SEC),
                     0);
    assert_int_equal(agg_store_status_set(d.store, "checkout", "nope", AGG_STATUS_RESOLVED,
                                          "api:test", T0 + 10 * SEC),
                     TC_ENOTFOUND);
    memset(&ch, 0, sizeof(ch));
    agg_store_changes(d.store, 0, take_change, &ch);
    assert_int_equal(ch.n, 1); /* the status, to publish */
    assert_int_equal(ch.kinds[0], 100 + TOCSIN__V1__ROLLUP__BODY_ISSUE_STATUS);
    /* An event received before the resolve: no regression. One after: regressed. */
    ev_t later[] = {
        {.id = 4,
         .body = ERR,
         .time_us = T0 + 5 * SEC,
         .received_us = T0 + 9 * SEC,
         .type = "KeyError",
         .message = "missing 4"},
        {.id = 5,
         .body = ERR,
         .time_us = T0 + 20 * SEC,
         .type = "KeyError",
         .message = "missing 5"},
        {.id = 6,
         .body = ERR,
         .time_us = T0 + 21 * SEC,
         .type = "KeyError",
         .message = "missing 6"},
    };
    agg_batch_stats_t st = commit_events(d.store, 0, 3, later, 3, NULL);
    assert_int_equal(st.issues_regressed, 1);
    assert_int_equal(st.issues_new, 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(agg_store_issues(d.store, "checkout", take_issue, &l), 0);
    for (size_t i = 0; i < l.n; i++) {
        if (strcmp(l.ids[i], key_id) == 0) {
            assert_int_equal(l.counts[i], 5);
            assert_int_equal(l.status[i], AGG_STATUS_UNRESOLVED); /* reset by the regression */
        }
    }
    memset(&ch, 0, sizeof(ch));
    agg_store_changes(d.store, 0, take_change, &ch);
    assert_int_equal(ch.n, 3); /* the resolve, the regressed status, the REGRESSED change */
    assert_int_equal(ch.kinds[2], 2);
    /* A resolve made on another instance at T0 + 30 s reaches this owner only after it
     * applied an event received at T0 + 40 s: the issue regresses when the resolve arrives. */
    ev_t after_resolve = {
        .id = 7, .body = ERR, .time_us = T0 + 40 * SEC, .type = "KeyError", .message = "missing 7"};
    commit_events(d.store, 0, 6, &after_resolve, 1, NULL);
    agg_issue_status_t resolved = {AGG_STATUS_RESOLVED, T0 + 30 * SEC, "api:other"};
    uint8_t *sv = NULL;
    size_t svlen = 0;
    assert_int_equal(
        agg_issue_status_rollup_encode("checkout", key_id, &resolved, "other", &sv, &svlen), 0);
    agg_msg_t sm = {
        .partition = 0, .offset = 0, .value = sv, .len = svlen, .format = AGG_FORMAT_EVENT};
    int32_t owned[1] = {0};
    agg_commit_t vc = {.events_topic = EVENTS,
                       .rollups_topic = ROLLUPS,
                       .rollups = &sm,
                       .nrollups = 1,
                       .logs_topic = LOGS,
                       .now_us = T0 + 50 * SEC,
                       .owned = owned,
                       .nowned = 1};
    assert_int_equal(agg_store_commit(d.store, &vc, &st), 0);
    assert_int_equal(st.issues_regressed, 1);
    free(sv);
    memset(&l, 0, sizeof(l));
    assert_int_equal(agg_store_issue_get(d.store, key_id, "checkout", take_issue, &l), 0);
    assert_int_equal(l.status[0], AGG_STATUS_UNRESOLVED);
    memset(&ch, 0, sizeof(ch));
    agg_store_changes(d.store, 0, take_change, &ch);
    assert_int_equal(ch.kinds[ch.n - 1], 2); /* REGRESSED */
    /* Finding an issue by id. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(agg_store_issue_get(d.store, key_id, NULL, take_issue, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(agg_store_issue_get(d.store, "nope", NULL, take_issue, &l), TC_ENOTFOUND);
    db_close(&d);
}

typedef struct {
    char messages[16][32];
    size_t n;
    int min_level;
    const char *q;
} logs_t;

static int take_log(void *ctx, int64_t t, const agg_log_t *lg)
{
    logs_t *l = ctx;
    if (agg_log_match(lg, l->min_level, l->q) && l->n < 16) {
        snprintf(l->messages[l->n++], 32, "%.*s", (int)lg->message.n, lg->message.p);
    }
    return 0;
}

static void view_logs(agg_store_t *s, int32_t partition, int64_t first, const ev_t *evs, size_t n)
{
    rec_t recs[16];
    agg_msg_t msgs[16];
    for (size_t i = 0; i < n; i++) {
        recs[i] = encode(&evs[i]);
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].partition = partition;
        msgs[i].offset = first + (int64_t)i;
        msgs[i].value = recs[i].bytes;
        msgs[i].len = recs[i].len;
        msgs[i].format = AGG_FORMAT_EVENT;
    }
    agg_commit_t c = {.events_topic = EVENTS,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .logs = msgs,
                      .nlogs = n,
                      .now_us = T0 + 100 * SEC};
    assert_int_equal(agg_store_commit(s, &c, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        free(recs[i].bytes);
    }
}

static void test_logs(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[] = {
        {.id = 1, .body = LOG, .time_us = T0, .level = 3, .message = "started"},
        {.id = 2, .body = LOG, .time_us = T0 + SEC, .level = 4, .message = "payment retried"},
        {.id = 3, .body = LOG, .time_us = T0 + 2 * SEC, .level = 5, .message = "payment failed"},
        {.id = 2, .body = LOG, .time_us = T0 + SEC, .level = 4, .message = "payment retried"},
        {.id = 4,
         .body = LOG,
         .time_us = T0 + 3 * SEC,
         .level = 3,
         .service = "other",
         .message = "elsewhere"},
    };
    view_logs(d.store, 0, 0, evs, N_ELEMS(evs));
    logs_t l = {{{0}}, 0, 0, NULL};
    assert_int_equal(
        agg_store_logs(d.store, "checkout", T0 - SEC, T0 + 60 * SEC, take_log, &l, NULL), 0);
    assert_int_equal(l.n, 3); /* the duplicate dropped, the other service not shown */
    assert_string_equal(l.messages[0], "payment failed"); /* newest first */
    l = (logs_t){{{0}}, 0, 4, "payment"};
    agg_store_logs(d.store, "checkout", T0 - SEC, T0 + 60 * SEC, take_log, &l, NULL);
    assert_int_equal(l.n, 2);
    l = (logs_t){{{0}}, 0, 0, NULL};
    agg_store_logs(d.store, "checkout", T0 + SEC, T0 + 2 * SEC, take_log, &l, NULL);
    assert_int_equal(l.n, 1); /* [since, until) */
    assert_true(agg_store_logs_bytes(d.store) > 0);
    /* Retention by age: 7 days later everything goes. */
    int work = agg_store_maintain(d.store, T0 + 8 * 86400 * SEC, T0 + 8 * 86400 * SEC, 1000);
    assert_true(work >= 4);
    l = (logs_t){{{0}}, 0, 0, NULL};
    agg_store_logs(d.store, "checkout", T0 - SEC, T0 + 60 * SEC, take_log, &l, NULL);
    assert_int_equal(l.n, 0);
    assert_int_equal(agg_store_logs_bytes(d.store), 0);
    db_close(&d);

    /* Retention by size: the oldest go first. */
    db_t s;
    snprintf(s.dir, sizeof(s.dir), "x");
    db_open(&s, 16u << 20);
    agg_store_destroy(&s.store);
    s.opts.logs_max_bytes = 300;
    s.store = agg_store_open(&s.opts);
    ev_t many[10];
    for (uint32_t i = 0; i < 10; i++) {
        many[i] = (ev_t){.id = 10 + i,
                         .body = LOG,
                         .time_us = T0 + i * SEC,
                         .level = 3,
                         .message = "a log line of some length"};
    }
    view_logs(s.store, 1, 0, many, 10);
    assert_true(agg_store_logs_bytes(s.store) > 300);
    agg_store_maintain(s.store, T0 + 20 * SEC, T0 + 20 * SEC, 1000);
    assert_true(agg_store_logs_bytes(s.store) <= 300);
    l = (logs_t){{{0}}, 0, 0, NULL};
    agg_store_logs(s.store, "checkout", T0 - SEC, T0 + 60 * SEC, take_log, &l, NULL);
    assert_true(l.n > 0 && l.n < 10);
    db_close(&s);
}

static void test_retention(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[120];
    for (uint32_t i = 0; i < 120; i++) {
        evs[i] = req(i, T0 + i * SEC, 1000.0 * (1 + i % 10), i % 4 == 0); /* two minutes */
    }
    commit_events(d.store, 0, 0, evs, 120, NULL);
    agg_bucket_t before, after;
    agg_bucket_init(&before);
    agg_bucket_init(&after);
    query_count(d.store, "checkout", "/pay", T0_S - 600, T0_S + 600, &before);
    assert_int_equal(before.count, 120);
    /* Two days later the 10 s buckets are merged into 1 min buckets, counts unchanged. */
    int64_t now = T0 + 2 * 86400 * SEC;
    int work = 0;
    for (int i = 0; i < 10; i++) {
        work += agg_store_maintain(d.store, now, now, 5); /* small slices */
    }
    assert_true(work >= 12);
    query_count(d.store, "checkout", "/pay", T0_S - 600, T0_S + 600, &after);
    assert_int_equal(after.count, 120);
    assert_int_equal(after.errors, before.errors);
    assert_int_equal(after.sketch.count, 120);
    assert_true(tc_sketch_quantile(&after.sketch, 0.5) == tc_sketch_quantile(&before.sketch, 0.5));
    /* A rollup of one of those 10 s buckets arriving now is refused as too old. */
    static published_t p;
    db_t o;
    db_open(&o, 16u << 20);
    ev_t one = req(999, T0 + 5 * SEC, 1000, false);
    commit_events(o.store, 0, 0, &one, 1, NULL);
    publish(o.store, T0, &p);
    assert_int_equal(p.n, 1);
    agg_batch_stats_t st = view_apply(d.store, 0, p.recs, p.n);
    assert_int_equal(st.old, 1);
    assert_int_equal(total(d.store, "/pay"), 120);
    published_free(&p);
    db_close(&o);
    /* Forty days later everything is deleted. */
    now = T0 + 40 * 86400 * SEC;
    for (int i = 0; i < 10; i++) {
        agg_store_maintain(d.store, now, now, 100);
    }
    assert_int_equal(total(d.store, "/pay"), 0);
    agg_bucket_fini(&before);
    agg_bucket_fini(&after);
    db_close(&d);
}

static void test_conflicts(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[] = {req(1, T0, 1000, false),
                  {.id = 2, .body = GAUGE, .time_us = T0, .value = 3},
                  req(3, T0, 1000, false)};
    agg_msg_result_t res[3];
    agg_batch_stats_t st = commit_events(d.store, 0, 0, evs, 3, res);
    assert_int_equal(st.conflicts, 1);
    assert_int_equal(res[1], AGG_MSG_CONFLICT);
    assert_int_equal(total(d.store, "/pay"), 2);
    /* Garbage records are refused and counted, the rest goes on. */
    rec_t good = encode(&evs[2]);
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    agg_msg_t msgs[2] = {{.partition = 0,
                          .offset = 3,
                          .value = junk,
                          .len = sizeof(junk),
                          .format = AGG_FORMAT_EVENT},
                         {.partition = 0,
                          .offset = 4,
                          .value = good.bytes,
                          .len = good.len,
                          .format = AGG_FORMAT_EVENT}};
    /* id 3 is a duplicate by now; make it another id. */
    good.bytes[4] ^= 1;
    agg_commit_t c = {.events_topic = EVENTS,
                      .events = msgs,
                      .nevents = 2,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .now_us = T0};
    assert_int_equal(agg_store_commit(d.store, &c, &st), 0);
    assert_int_equal(msgs[0].result, AGG_MSG_INVALID);
    assert_non_null(msgs[0].reason);
    assert_int_equal(st.invalid, 1);
    free(good.bytes);
    db_close(&d);
}

static void test_corrupt_values(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t e = req(1, T0, 1000, false);
    commit_events(d.store, 0, 0, &e, 1, NULL);
    agg_store_destroy(&d.store);
    /* Overwrite every stored bucket with garbage, behind the store's back. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, 16u << 20);
    assert_int_equal(mdb_env_open(env, d.dir, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "buckets", 0, &dbi), 0);
    MDB_cursor *cur;
    mdb_cursor_open(txn, dbi, &cur);
    MDB_val k, v;
    int n = 0;
    uint8_t keys[8][64];
    size_t klens[8];
    while (n < 8 && mdb_cursor_get(cur, &k, &v, n ? MDB_NEXT : MDB_FIRST) == 0) {
        assert_true(k.mv_size <= sizeof(keys[0]));
        memcpy(keys[n], k.mv_data, k.mv_size);
        klens[n] = k.mv_size;
        n++;
    }
    mdb_cursor_close(cur);
    for (int i = 0; i < n; i++) {
        MDB_val key = {klens[i], keys[i]}, junk = {3, "xyz"};
        assert_int_equal(mdb_put(txn, dbi, &key, &junk, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(n, 3); /* /pay, the request totals of 10 s and of the minute */
    d.store = agg_store_open(&d.opts);
    assert_non_null(d.store);
    /* A query skips and counts it; a new event starts the bucket afresh. */
    agg_query_params_t p;
    const char *param = NULL;
    char err[64];
    agg_query_params_parse(&p, "checkout", "/pay", "1h", NULL, NULL, T0 + 60 * SEC, &param, err,
                           sizeof(err));
    agg_query_acc_t acc;
    agg_query_acc_init(&acc);
    uint64_t corrupt = 0;
    assert_int_equal(agg_store_query(d.store, &p, &acc, &corrupt), 0);
    assert_int_equal(corrupt, 1);
    assert_int_equal(acc.total.count, 0);
    agg_query_acc_fini(&acc);
    ev_t e2 = req(2, T0, 1000, false);
    agg_batch_stats_t st = commit_events(d.store, 0, 1, &e2, 1, NULL);
    assert_true(st.corrupt >= 1);
    assert_int_equal(total(d.store, "/pay"), 1);
    assert_int_equal(total(d.store, "*"), 1);
    db_close(&d);
}

static void test_map_growth(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 1u << 20); /* 1 MiB: grows while the batches come */
    size_t before = agg_store_map_bytes(d.store);
    static ev_t evs[2000];
    for (int round = 0; round < 10; round++) {
        for (uint32_t i = 0; i < 2000; i++) {
            uint32_t n = (uint32_t)round * 2000 + i;
            evs[i] = req(n, T0 + (int64_t)n * 10 * SEC, 1000.0 + n, false);
            evs[i].user = "u";
        }
        commit_events(d.store, 0, round * 2000, evs, 2000, NULL);
    }
    assert_true(agg_store_map_bytes(d.store) > before);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S, T0_S + 300000, NULL), 20000);
    char detail[200];
    assert_int_equal(agg_store_check(d.store, detail, sizeof(detail)), 0);
    assert_non_null(strstr(detail, "buckets"));
    db_close(&d);
}

static void test_closed(void **state)
{
    (void)state;
    assert_false(agg_store_bucket_closed(T0_S, 10, T0 + 11 * SEC, 2 * SEC));
    assert_true(agg_store_bucket_closed(T0_S, 10, T0 + 12 * SEC, 2 * SEC));
    assert_true(agg_store_bucket_closed(-10, 10, 0, 0));
    assert_false(agg_store_bucket_closed(INT64_MAX / 2, 10, 0, 0));
}


/* ---- packed records ---------------------------------------------------------------------- */

/* One record of several events, as collectors write them: a tocsin.v1.EventPack. */
typedef struct {
    uint8_t *bytes;
    size_t len, cap;
} packbuf_t;

static void pack_add_bytes(packbuf_t *p, const uint8_t *ev, size_t len)
{
    if (p->len + len + 16 > p->cap) {
        p->cap = (p->len + len + 16) * 2;
        p->bytes = realloc(p->bytes, p->cap);
        assert_non_null(p->bytes);
    }
    p->bytes[p->len++] = 0x0a;
    size_t v = len;
    while (v >= 0x80) {
        p->bytes[p->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p->bytes[p->len++] = (uint8_t)v;
    memcpy(p->bytes + p->len, ev, len);
    p->len += len;
}

static void pack_add(packbuf_t *p, const ev_t *e)
{
    rec_t r = encode(e);
    pack_add_bytes(p, r.bytes, r.len);
    free(r.bytes);
}

/* Commits records given as they are (format and bytes) at offsets first.. of `partition`. */
static agg_batch_stats_t commit_msgs(agg_store_t *s, int32_t partition, int64_t first,
                                     agg_msg_t *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        msgs[i].partition = partition;
        msgs[i].offset = first + (int64_t)i;
    }
    agg_commit_t c = {.events_topic = EVENTS,
                      .events = msgs,
                      .nevents = n,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .now_us = T0 + 3600 * SEC};
    agg_batch_stats_t st;
    assert_int_equal(agg_store_commit(s, &c, &st), 0);
    return st;
}

static void test_packs(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    /* Record 0: a pack of ids 1..5 of one series, then a bad event (its route reserved), a
     * duplicate of id 3 inside the pack, and an error event (issue) with id 6. */
    packbuf_t p0 = {0}, p1 = {0}, p3 = {0}, p6 = {0};
    for (uint32_t i = 1; i <= 5; i++) {
        ev_t e = req(i, T0 + i * 1000, 1000.0 * i, i == 2);
        pack_add(&p0, &e);
    }
    uint8_t junk[] = {0x0a, 0x03, 'a', 'b', 'c'}; /* an event id of 3 bytes */
    pack_add_bytes(&p0, junk, sizeof(junk));
    ev_t again = req(3, T0 + 3000, 3000, false);
    pack_add(&p0, &again);
    ev_t err = {.id = 6, .body = ERR, .time_us = T0 + 6000};
    pack_add(&p0, &err);
    /* Record 1: a pack of id 4 (seen in record 0), 7 and 8. */
    uint32_t ids1[] = {4, 7, 8};
    for (size_t i = 0; i < N_ELEMS(ids1); i++) {
        ev_t e = req(ids1[i], T0 + 8000, 500, false);
        pack_add(&p1, &e);
    }
    /* Record 2: a format this aggregator does not know (its bytes would read as a pack). */
    /* Record 3: a pack cut in its last entry. */
    ev_t e9 = req(9, T0 + 9000, 500, false);
    pack_add(&p3, &e9);
    ev_t e10 = req(10, T0 + 9000, 500, false);
    pack_add(&p3, &e10);
    /* Record 4: one event the old way (no header). */
    rec_t single = encode(&(ev_t){.id = 11, .body = REQ, .time_us = T0 + 9500, .value = 700});
    /* Record 5: an empty pack. */
    agg_msg_t msgs[6] = {
        {.value = p0.bytes, .len = p0.len, .format = AGG_FORMAT_PACK},
        {.value = p1.bytes, .len = p1.len, .format = AGG_FORMAT_PACK},
        {.value = p1.bytes, .len = p1.len, .format = AGG_FORMAT_UNKNOWN},
        {.value = p3.bytes, .len = p3.len - 1, .format = AGG_FORMAT_PACK},
        {.value = single.bytes, .len = single.len, .format = AGG_FORMAT_EVENT},
        {.value = p1.bytes, .len = 0, .format = AGG_FORMAT_PACK},
    };
    agg_batch_stats_t st = commit_msgs(d.store, 0, 0, msgs, 6);
    assert_int_equal(st.records, 6);
    /* 8 + 3 events; the unknown, cut and empty records count one invalid event each. */
    assert_int_equal(st.consumed, 8 + 3 + 1 + 1 + 1 + 1);
    assert_int_equal(st.applied, 6 + 2 + 1);
    assert_int_equal(st.duplicates, 2);
    assert_int_equal(st.invalid, 1 + 3);
    assert_int_equal(st.unreadable, 3);
    assert_int_equal(msgs[0].result, AGG_MSG_INVALID); /* one of its events was refused */
    assert_string_equal(msgs[0].reason, "event_id");
    assert_int_equal(msgs[0].events, 8);
    assert_int_equal(msgs[1].result, AGG_MSG_APPLIED);
    assert_int_equal(msgs[1].events, 3);
    assert_int_equal(msgs[2].result, AGG_MSG_INVALID);
    assert_string_equal(msgs[2].reason, "format");
    assert_int_equal(msgs[2].events, 0);
    assert_int_equal(msgs[3].result, AGG_MSG_INVALID);
    assert_string_equal(msgs[3].reason, "pack");
    assert_int_equal(msgs[4].result, AGG_MSG_APPLIED);
    assert_int_equal(msgs[5].result, AGG_MSG_INVALID);
    assert_string_equal(msgs[5].reason, "pack");
    /* Ids 1..5, 7, 8, 11 in the request series; 2 was an error. */
    agg_bucket_t b;
    agg_bucket_init(&b);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S - 10, T0_S + 20, &b), 8);
    assert_int_equal(b.errors, 1);
    assert_int_equal(b.sketch.count, 8);
    assert_int_equal(query_count(d.store, "checkout", "$errors", T0_S - 10, T0_S + 20, NULL), 1);
    /* Every record moved the offset, the unreadable ones too: nothing blocks the partition. */
    int64_t next = 0;
    assert_int_equal(agg_store_offset_get(d.store, EVENTS, 0, &next), 0);
    assert_int_equal(next, 6);
    /* Given again: stale, nothing counted twice. */
    st = commit_msgs(d.store, 0, 0, msgs, 6);
    assert_int_equal(st.applied, 0);
    assert_int_equal(st.stale, 8 + 3 + 0 + 0 + 1 + 0);
    assert_int_equal(total(d.store, "/pay"), 8);
    /* A restart: the stale packs refill the dedupe set, event by event. */
    db_reopen(&d);
    int64_t start = 0, from = 0;
    const char *source = NULL;
    assert_int_equal(agg_store_partition_start(d.store, 0, &start, &from, &source), 0);
    assert_int_equal(start, 6);
    assert_int_equal(from, 0);
    st = commit_msgs(d.store, 0, 0, msgs, 6);
    assert_int_equal(st.applied, 0);
    /* Record 6: ids 7 (in record 1) and 1 (in record 0) again, 12 new, 12 twice. */
    uint32_t ids6[] = {7, 1, 12, 12};
    for (size_t i = 0; i < N_ELEMS(ids6); i++) {
        ev_t e = req(ids6[i], T0 + 9000, 500, false);
        pack_add(&p6, &e);
    }
    agg_msg_t m6 = {.value = p6.bytes, .len = p6.len, .format = AGG_FORMAT_PACK};
    st = commit_msgs(d.store, 0, 6, &m6, 1);
    assert_int_equal(st.applied, 1);
    assert_int_equal(st.duplicates, 3);
    assert_int_equal(m6.result, AGG_MSG_APPLIED);
    assert_int_equal(total(d.store, "/pay"), 9);
    agg_bucket_fini(&b);
    free(p0.bytes);
    free(p1.bytes);
    free(p3.bytes);
    free(p6.bytes);
    free(single.bytes);
    db_close(&d);
}

/* A pack of log records: each stored under its own key (its place in the pack). */
static void test_pack_logs(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    packbuf_t p = {0};
    for (uint32_t i = 0; i < 5; i++) {
        ev_t e = {.id = 100 + i, .body = LOG, .time_us = T0 + 1000, .message = "same time"};
        pack_add(&p, &e);
    }
    ev_t dup = {.id = 101, .body = LOG, .time_us = T0 + 1000, .message = "same time"};
    pack_add(&p, &dup);
    agg_msg_t m = {.partition = 0, .offset = 0, .value = p.bytes, .len = p.len,
                   .format = AGG_FORMAT_PACK};
    agg_commit_t c = {.events_topic = EVENTS,
                      .rollups_topic = ROLLUPS,
                      .logs_topic = LOGS,
                      .logs = &m,
                      .nlogs = 1,
                      .now_us = T0 + 3600 * SEC};
    agg_batch_stats_t st;
    assert_int_equal(agg_store_commit(d.store, &c, &st), 0);
    assert_int_equal(st.logs_stored, 5);
    assert_int_equal(st.duplicates, 1);
    logs_t l = {{{0}}, 0, 0, NULL};
    assert_int_equal(agg_store_logs(d.store, "checkout", T0 - SEC, T0 + SEC, take_log, &l, NULL),
                     0);
    assert_int_equal(l.n, 5);
    /* Again: stale, still five. */
    assert_int_equal(agg_store_commit(d.store, &c, &st), 0);
    assert_int_equal(st.logs_stored, 0);
    l = (logs_t){{{0}}, 0, 0, NULL};
    assert_int_equal(agg_store_logs(d.store, "checkout", T0 - SEC, T0 + SEC, take_log, &l, NULL),
                     0);
    assert_int_equal(l.n, 5);
    /* Retention deletes them by their time keys. */
    assert_true(agg_store_maintain(d.store, T0 + 8 * 86400 * SEC, T0 + 8 * 86400 * SEC, 1000) >=
                5);
    l = (logs_t){{{0}}, 0, 0, NULL};
    agg_store_logs(d.store, "checkout", T0 - SEC, T0 + SEC, take_log, &l, NULL);
    assert_int_equal(l.n, 0);
    assert_int_equal(agg_store_logs_bytes(d.store), 0);
    free(p.bytes);
    db_close(&d);
}

/* Sampled events count with their weights; sampled_events and sampled_count say how much of
 * the count is estimated. */
static void test_sampled(void **state)
{
    (void)state;
    db_t d;
    db_open(&d, 16u << 20);
    ev_t evs[6] = {
        req(1, T0 + 1000, 1000, false),
        req(2, T0 + 2000, 200000, true),
        req(3, T0 + 3000, 1000, false),
        req(4, T0 + 4000, 1000, false),
        {.id = 5, .body = ERR, .time_us = T0 + 5000},
        req(6, T0 + 6000, 1000, false),
    };
    evs[1].sample_rate = 0.1f; /* an error, slow: stands for 10 */
    evs[2].sample_rate = 0.5f;
    evs[3].sample_rate = 1.0f; /* not sampled */
    evs[4].sample_rate = 0.25f;
    evs[5].sample_rate = 2.0f; /* refused */
    agg_msg_result_t res[6];
    agg_batch_stats_t st = commit_events(d.store, 0, 0, evs, 6, res);
    assert_int_equal(st.applied, 5);
    assert_int_equal(res[5], AGG_MSG_INVALID);
    agg_bucket_t b;
    agg_bucket_init(&b);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S - 10, T0_S + 20, &b),
                     1 + 10 + 2 + 1);
    assert_int_equal(b.errors, 10);
    assert_int_equal(b.slow[0], 10);
    assert_int_equal(b.sketch.count, 14);
    assert_int_equal(b.sampled_events, 2);
    assert_int_equal(b.sampled_count, 12);
    assert_true(fabs(b.sum - (1000 + 10 * 200000.0 + 2 * 1000 + 1000)) < 1e-6);
    agg_bucket_reset(&b);
    assert_int_equal(query_count(d.store, "checkout", "$errors", T0_S - 10, T0_S + 20, &b), 4);
    assert_int_equal(b.sampled_events, 1);
    assert_int_equal(b.sampled_count, 4);
    /* The stored form keeps them across a reopen. */
    db_reopen(&d);
    agg_bucket_reset(&b);
    assert_int_equal(query_count(d.store, "checkout", "/pay", T0_S - 10, T0_S + 20, &b), 14);
    assert_int_equal(b.sampled_count, 12);
    agg_bucket_fini(&b);
    db_close(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_reapply),
        cmocka_unit_test(test_duplicates_and_restart),
        cmocka_unit_test(test_late_and_out_of_order),
        cmocka_unit_test(test_owed_and_checkpoint),
        cmocka_unit_test(test_takeover),
        cmocka_unit_test(test_issues),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_retention),
        cmocka_unit_test(test_conflicts),
        cmocka_unit_test(test_corrupt_values),
        cmocka_unit_test(test_map_growth),
        cmocka_unit_test(test_closed),
        cmocka_unit_test(test_packs),
        cmocka_unit_test(test_pack_logs),
        cmocka_unit_test(test_sampled),
        cmocka_unit_test(test_service_wide),
        cmocka_unit_test(test_service_wide_migration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
