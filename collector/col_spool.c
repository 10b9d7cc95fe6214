#include "col_spool.h"

#include <assert.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tc_error.h"
#include "tc_lmdb.h"
#include "tc_log.h"
#include "tc_util.h"

struct col_spool {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_dbi dead_dbi;
    uint64_t next_key;
    uint64_t entries;
    uint64_t dead_entries;
    uint64_t bytes; /* entries and dead entries */
    uint64_t max_bytes;
    size_t max_map;
};

/* LMDB needs room beyond the values: branch pages, overflow pages rounded to whole pages,
 * free pages of old transactions. Twice the values plus 64 MiB covers it; the map is sparse,
 * so the size costs nothing until used. */
static size_t map_size_for(uint64_t max_bytes)
{
    uint64_t m = max_bytes * 2 + ((uint64_t)64 << 20);
    return (size_t)m;
}

static int open_dbi(MDB_txn *txn, void *ctx)
{
    col_spool_t *self = ctx;
    int rc = tc_lmdb_dbi(txn, "entries", 0, &self->dbi);
    return rc ? rc : tc_lmdb_dbi(txn, "dead", 0, &self->dead_dbi);
}

/* Adds up the dead entries. */
static int scan_dead(col_spool_t *self)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    MDB_cursor *cur = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0) {
        mrc = mdb_stat(txn, self->dead_dbi, &st);
    }
    if (mrc == 0) {
        self->dead_entries = st.ms_entries;
        mrc = mdb_cursor_open(txn, self->dead_dbi, &cur);
    }
    MDB_val k, v;
    int op = MDB_FIRST;
    while (mrc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        self->bytes += v.mv_size;
    }
    if (cur) {
        mdb_cursor_close(cur);
    }
    if (txn) {
        mdb_txn_abort(txn);
    }
    return mrc == MDB_NOTFOUND ? 0 : TC_ELMDB;
}

/* Finds the last key and adds up the values. */
static int scan(col_spool_t *self)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc == 0) {
        mrc = mdb_cursor_open(txn, self->dbi, &cur);
    }
    MDB_val k, v;
    int op = MDB_FIRST;
    while (mrc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        if (k.mv_size != 8) {
            tc_log(TC_LOG_WARN, "spool.bad_key", "an entry with a %zu-byte key is ignored",
                   k.mv_size);
            continue;
        }
        uint64_t key = tc_be64_get(k.mv_data);
        if (key >= self->next_key) {
            self->next_key = key + 1;
        }
        self->entries++;
        self->bytes += v.mv_size;
    }
    if (cur) {
        mdb_cursor_close(cur);
    }
    if (txn) {
        mdb_txn_abort(txn);
    }
    if (mrc != MDB_NOTFOUND) {
        tc_log(TC_LOG_ERROR, "spool.open", "scan: %s", mdb_strerror(mrc));
        return TC_ELMDB;
    }
    return 0;
}

col_spool_t *col_spool_open(const char *dir, uint64_t max_bytes, int *err)
{
    assert(dir && err);
    if (max_bytes == 0) {
        *err = TC_EINVAL;
        return NULL;
    }
    col_spool_t *self = calloc(1, sizeof(*self));
    if (!self) {
        *err = TC_ENOMEM;
        return NULL;
    }
    self->max_bytes = max_bytes;
    self->max_map = map_size_for(max_bytes);
    self->next_key = 1;
    int rc = tc_lmdb_open(&self->env, dir, self->max_map, 2, 0);
    if (rc == 0) {
        /* A map already larger (an earlier run with a larger bound) is kept. */
        if (tc_lmdb_map_size(self->env) > self->max_map) {
            self->max_map = tc_lmdb_map_size(self->env);
        }
        rc = tc_lmdb_write(self->env, self->max_map, open_dbi, self);
    }
    if (rc == 0) {
        rc = scan(self);
    }
    if (rc == 0) {
        rc = scan_dead(self);
    }
    if (rc != 0) {
        col_spool_close(&self);
        *err = rc;
        return NULL;
    }
    *err = 0;
    return self;
}

void col_spool_close(col_spool_t **self_p)
{
    if (!self_p || !*self_p) {
        return;
    }
    col_spool_t *self = *self_p;
    if (self->env) {
        mdb_env_close(self->env);
    }
    free(self);
    *self_p = NULL;
}

uint64_t col_spool_entries(const col_spool_t *self)
{
    assert(self);
    return self->entries;
}

uint64_t col_spool_bytes(const col_spool_t *self)
{
    assert(self);
    return self->bytes;
}

uint64_t col_spool_dead_entries(const col_spool_t *self)
{
    assert(self);
    return self->dead_entries;
}

uint64_t col_spool_max_bytes(const col_spool_t *self)
{
    assert(self);
    return self->max_bytes;
}

uint64_t col_spool_file_bytes(const col_spool_t *self)
{
    assert(self);
    return tc_lmdb_used_bytes(self->env);
}

typedef struct {
    col_spool_t *self;
    const uint64_t *del;
    size_t n_del;
    const uint64_t *dead;
    size_t n_dead;
    const uint8_t *const *values;
    const size_t *lens;
    size_t n;
    /* results, valid after a committed run */
    size_t appended;
    uint64_t deleted_entries;
    uint64_t deleted_bytes;
    uint64_t added_bytes;
    uint64_t moved;
} commit_ctx_t;

static int commit_txn(MDB_txn *txn, void *arg)
{
    commit_ctx_t *c = arg;
    col_spool_t *self = c->self;
    c->appended = 0;
    c->deleted_entries = 0;
    c->deleted_bytes = 0;
    c->added_bytes = 0;
    c->moved = 0;
    for (size_t i = 0; i < c->n_dead; i++) {
        uint8_t kb[8];
        tc_be64_put(kb, c->dead[i]);
        MDB_val k = {8, kb};
        MDB_val v;
        int mrc = mdb_get(txn, self->dbi, &k, &v);
        if (mrc == MDB_NOTFOUND) {
            continue;
        }
        if (mrc != 0) {
            return mrc;
        }
        /* A value from the database is valid only until the next update: copy it. */
        void *copy = malloc(v.mv_size ? v.mv_size : 1);
        if (!copy) {
            return TC_ENOMEM;
        }
        memcpy(copy, v.mv_data, v.mv_size);
        MDB_val cv = {v.mv_size, copy};
        mrc = mdb_put(txn, self->dead_dbi, &k, &cv, 0);
        free(copy);
        if (mrc == 0) {
            mrc = mdb_del(txn, self->dbi, &k, NULL);
        }
        if (mrc != 0) {
            return mrc;
        }
        c->moved++;
    }
    for (size_t i = 0; i < c->n_del; i++) {
        uint8_t kb[8];
        tc_be64_put(kb, c->del[i]);
        MDB_val k = {8, kb};
        MDB_val v;
        int mrc = mdb_get(txn, self->dbi, &k, &v);
        if (mrc == MDB_NOTFOUND) {
            continue;
        }
        if (mrc != 0) {
            return mrc;
        }
        size_t size = v.mv_size;
        mrc = mdb_del(txn, self->dbi, &k, NULL);
        if (mrc != 0) {
            return mrc;
        }
        c->deleted_entries++;
        c->deleted_bytes += size;
    }
    uint64_t bytes = self->bytes - c->deleted_bytes;
    for (size_t i = 0; i < c->n; i++) {
        if (bytes + c->lens[i] > self->max_bytes) {
            break;
        }
        uint8_t kb[8];
        tc_be64_put(kb, self->next_key + i);
        MDB_val k = {8, kb};
        MDB_val v = {c->lens[i], (void *)c->values[i]};
        int mrc = mdb_put(txn, self->dbi, &k, &v, MDB_APPEND);
        if (mrc != 0) {
            return mrc;
        }
        bytes += c->lens[i];
        c->added_bytes += c->lens[i];
        c->appended++;
    }
    return 0;
}

int col_spool_commit(col_spool_t *self, const uint64_t *del, size_t n_del, const uint64_t *dead,
                     size_t n_dead, const uint8_t *const *values, const size_t *lens, size_t n,
                     size_t *appended, uint64_t *keys_out)
{
    assert(self && appended && (del || n_del == 0) && (dead || n_dead == 0) &&
           ((values && lens) || n == 0));
    *appended = 0;
    if (n_del == 0 && n_dead == 0 && n == 0) {
        return 0;
    }
    commit_ctx_t c = {.self = self,
                      .del = del,
                      .n_del = n_del,
                      .dead = dead,
                      .n_dead = n_dead,
                      .values = values,
                      .lens = lens,
                      .n = n};
    int rc = tc_lmdb_write(self->env, self->max_map, commit_txn, &c);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; keys_out && i < c.appended; i++) {
        keys_out[i] = self->next_key + i;
    }
    self->next_key += c.appended;
    self->entries = self->entries - c.deleted_entries - c.moved + c.appended;
    self->dead_entries += c.moved;
    self->bytes = self->bytes - c.deleted_bytes + c.added_bytes;
    *appended = c.appended;
    return 0;
}

int col_spool_read(col_spool_t *self, uint64_t from, uint64_t *key, uint8_t **value, size_t *len)
{
    assert(self && key && value && len);
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = 0;
    int mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (mrc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(self->env, 0);
        mrc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    }
    if (mrc == 0) {
        mrc = mdb_cursor_open(txn, self->dbi, &cur);
    }
    uint8_t kb[8];
    tc_be64_put(kb, from);
    MDB_val k = {8, kb};
    MDB_val v;
    if (mrc == 0) {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    /* Keys of another size (never written by us) are passed over. */
    while (mrc == 0 && k.mv_size != 8) {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (mrc == MDB_NOTFOUND) {
        rc = TC_ENOTFOUND;
    } else if (mrc != 0) {
        tc_log(TC_LOG_ERROR, "spool.read", "%s", mdb_strerror(mrc));
        rc = TC_ELMDB;
    } else {
        uint8_t *copy = malloc(v.mv_size ? v.mv_size : 1);
        if (!copy) {
            rc = TC_ENOMEM;
        } else {
            memcpy(copy, v.mv_data, v.mv_size);
            *key = tc_be64_get(k.mv_data);
            *value = copy;
            *len = v.mv_size;
        }
    }
    if (cur) {
        mdb_cursor_close(cur);
    }
    if (txn) {
        mdb_txn_abort(txn);
    }
    return rc;
}
