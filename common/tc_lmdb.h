/*
 * tc_lmdb.h — opening LMDB environments and running write transactions the way LMDB's
 * documentation asks: a large sparse map up front, stale readers cleared at open and on
 * demand, MDB_MAP_FULL answered by growing the map and running the transaction again.
 *
 * An environment must not be used across fork(): open it in the process that uses it.
 */
#ifndef TC_LMDB_H
#define TC_LMDB_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Opens (creating `dir` when missing) an environment with `max_dbs` named databases and
 * an initial map of `map_size` bytes. `flags` are extra mdb_env_open flags (MDB_NOSYNC...).
 * Returns 0 with *env_out set, or TC_EIO / TC_ELMDB after logging why.
 */
int tc_lmdb_open(MDB_env **env_out, const char *dir, size_t map_size, unsigned max_dbs,
                 unsigned flags);

/* The body of a write transaction. It may run more than once (after the map grew), each
 * time on a fresh transaction, so it must not keep side effects outside `txn` before it
 * returns 0. Returns 0 to commit, or a TC_E* code or an MDB error code (as LMDB returned
 * it) to abort; it returns MDB_MAP_FULL as it got it from LMDB so that the map grows. */
typedef int (*tc_lmdb_txn_fn)(MDB_txn *txn, void *ctx);

/*
 * Runs `fn` in a write transaction and commits it. On MDB_MAP_FULL (from `fn` or from the
 * commit) aborts, doubles the map (up to `max_map`, 0 for no limit) and runs it again.
 * Must be called with no transaction of this environment open in the calling thread.
 * Returns 0, TC_EFULL when the map cannot grow further, the TC_E* code `fn` returned, or
 * an MDB error (from `fn` or the commit) mapped by tc_lmdb_err: TC_ENOTFOUND or TC_ELMDB.
 */
int tc_lmdb_write(MDB_env *env, size_t max_map, tc_lmdb_txn_fn fn, void *ctx);

/* Maps an MDB error code to a TC_E* code (MDB_NOTFOUND -> TC_ENOTFOUND, MDB_MAP_FULL ->
 * TC_EFULL, anything else -> TC_ELMDB). */
int tc_lmdb_err(int mdb_rc);

/* Opens (creating) a named database in `txn`. Returns 0 or TC_ELMDB. */
int tc_lmdb_dbi(MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi);

/* Clears reader slots left by dead processes; returns how many were cleared. */
int tc_lmdb_reader_check(MDB_env *env);

/* Current map size in bytes and bytes used by pages (for /metrics). */
size_t tc_lmdb_map_size(MDB_env *env);
size_t tc_lmdb_used_bytes(MDB_env *env);

#endif
