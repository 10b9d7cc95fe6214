#include "tc_lmdb.h"

#include "tc_error.h"
#include "tc_log.h"
#include "tc_util.h"

int tc_lmdb_err(int mdb_rc)
{
    switch (mdb_rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return TC_ENOTFOUND;
    case MDB_MAP_FULL:
        return TC_EFULL;
    default:
        return TC_ELMDB;
    }
}

int tc_lmdb_open(MDB_env **env_out, const char *dir, size_t map_size, unsigned max_dbs,
                 unsigned flags)
{
    MDB_env *env = NULL;
    int rc = tc_mkdir_p(dir);
    if (rc != 0) {
        tc_log(TC_LOG_ERROR, "lmdb.open", "cannot create %s", dir);
        return rc;
    }
    int mrc = mdb_env_create(&env);
    if (mrc == 0) {
        mrc = mdb_env_set_maxdbs(env, max_dbs);
    }
    if (mrc == 0) {
        mrc = mdb_env_set_mapsize(env, map_size);
    }
    if (mrc == 0) {
        mrc = mdb_env_set_maxreaders(env, 256);
    }
    if (mrc == 0) {
        /* NOTLS: read transactions may be opened by the HTTP thread and reset across calls. */
        mrc = mdb_env_open(env, dir, flags | MDB_NOTLS, 0640);
    }
    if (mrc != 0) {
        tc_log(TC_LOG_ERROR, "lmdb.open", "%s: %s", dir, mdb_strerror(mrc));
        if (env) {
            mdb_env_close(env);
        }
        return TC_ELMDB;
    }
    int dead = 0;
    mdb_reader_check(env, &dead);
    if (dead > 0) {
        tc_log(TC_LOG_WARN, "lmdb.stale_readers", "%s: cleared %d stale reader slots", dir,
               dead);
    }
    *env_out = env;
    return 0;
}

int tc_lmdb_dbi(MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi)
{
    int mrc = mdb_dbi_open(txn, name, flags | MDB_CREATE, dbi);
    if (mrc != 0) {
        tc_log(TC_LOG_ERROR, "lmdb.dbi", "%s: %s", name, mdb_strerror(mrc));
        return TC_ELMDB;
    }
    return 0;
}

static int grow(MDB_env *env, size_t max_map)
{
    MDB_envinfo info;
    mdb_env_info(env, &info);
    size_t next = info.me_mapsize * 2;
    if (max_map && next > max_map) {
        if (info.me_mapsize >= max_map) {
            return TC_EFULL;
        }
        next = max_map;
    }
    int mrc = mdb_env_set_mapsize(env, next);
    if (mrc != 0) {
        tc_log(TC_LOG_ERROR, "lmdb.grow", "cannot grow map to %zu: %s", next,
               mdb_strerror(mrc));
        return TC_ELMDB;
    }
    tc_log(TC_LOG_INFO, "lmdb.grow", "map grown from %zu to %zu bytes", info.me_mapsize,
           next);
    return 0;
}

int tc_lmdb_write(MDB_env *env, size_t max_map, tc_lmdb_txn_fn fn, void *ctx)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        MDB_txn *txn = NULL;
        int mrc = mdb_txn_begin(env, NULL, 0, &txn);
        if (mrc == MDB_MAP_RESIZED) {
            /* Another process grew the map: adopt its size and try again. */
            mdb_env_set_mapsize(env, 0);
            continue;
        }
        if (mrc != 0) {
            tc_log(TC_LOG_ERROR, "lmdb.txn", "begin: %s", mdb_strerror(mrc));
            return TC_ELMDB;
        }
        int rc = fn(txn, ctx);
        if (rc == 0) {
            rc = mdb_txn_commit(txn);
        } else {
            mdb_txn_abort(txn);
        }
        if (rc == MDB_MAP_FULL) {
            int grc = grow(env, max_map);
            if (grc != 0) {
                return grc;
            }
            continue;
        }
        /* LMDB's own codes are negative (MDB_KEYEXIST..MDB_LAST_ERRCODE) and system errors
         * positive; neither may reach the caller looking like a TC_E* code. */
        if (rc > 0 || (rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE)) {
            tc_log(TC_LOG_ERROR, "lmdb.txn", "%s", mdb_strerror(rc));
            return tc_lmdb_err(rc);
        }
        return rc;
    }
    return TC_ELMDB;
}

int tc_lmdb_reader_check(MDB_env *env)
{
    int dead = 0;
    mdb_reader_check(env, &dead);
    return dead;
}

size_t tc_lmdb_map_size(MDB_env *env)
{
    MDB_envinfo info;
    mdb_env_info(env, &info);
    return info.me_mapsize;
}

size_t tc_lmdb_used_bytes(MDB_env *env)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(env, &info);
    mdb_env_stat(env, &st);
    return (size_t)(info.me_last_pgno + 1) * st.ms_psize;
}
