/*
 * col_spool.h — the collector's disk spool: batches of Kafka records kept in LMDB while
 * Kafka cannot take them, in the order they were taken, until their replay is delivered.
 *
 * One named database "entries": key = 8-byte big-endian sequence number (so keys sort in
 * arrival order), value = a col_records_t buffer as it is. A second one, "dead", keeps
 * entries Kafka can never take (a record too large, or refused for good): they leave the
 * replay but not the disk, and count against the bound until an operator removes them
 * (`mdb_drop -s dead <spool.dir>` from lmdb-utils, after looking at them with mdb_dump). Each
 * commit is durable (LMDB syncs on commit) before the collector acks the batches it holds. The
 * spool is bounded by the bytes of its values (`max_bytes`); the LMDB map is sized well above that
 * for LMDB's own pages, and grows when it must.
 *
 * Used from one thread (the collector's loop). An environment must not cross fork().
 */
#ifndef COL_SPOOL_H
#define COL_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct col_spool col_spool_t;

/*
 * Opens (creating `dir` when missing) the spool, finds its next sequence number and adds up
 * the bytes it holds. Returns NULL with *err set: TC_EIO, TC_ELMDB (logged), TC_EINVAL for
 * max_bytes 0, TC_ENOMEM.
 */
col_spool_t *col_spool_open(const char *dir, uint64_t max_bytes, int *err);

/* Closes the environment. Safe to call twice; sets *self_p to NULL. */
void col_spool_close(col_spool_t **self_p);

/* Entries held, the bytes of their values, and the bound. Bytes include the dead entries'. */
uint64_t col_spool_entries(const col_spool_t *self);
uint64_t col_spool_bytes(const col_spool_t *self);
uint64_t col_spool_dead_entries(const col_spool_t *self);
uint64_t col_spool_max_bytes(const col_spool_t *self);

/* Bytes the LMDB file uses (pages), for metrics. */
uint64_t col_spool_file_bytes(const col_spool_t *self);

/*
 * In one durable transaction: deletes the entries with the keys in `del` (missing ones are
 * ignored), moves those with the keys in `dead` to the dead entries, then appends
 * values[0..n) in order while they fit under max_bytes (the first
 * that does not fit stops the appending: order is kept, the rest is the caller's to refuse).
 * *appended says how many were appended; keys_out (when not NULL, n entries) receives their
 * keys. Nothing is changed when the call fails.
 * Returns 0, TC_EFULL when LMDB's map cannot grow (nothing written), or TC_ELMDB.
 */
int col_spool_commit(col_spool_t *self, const uint64_t *del, size_t n_del, const uint64_t *dead,
                     size_t n_dead, const uint8_t *const *values, const size_t *lens, size_t n,
                     size_t *appended, uint64_t *keys_out);

/*
 * Reads the first entry with key >= `from` into a new buffer (the caller frees it with
 * free). Returns 0 with *key, *value, *len set; TC_ENOTFOUND when there is none; TC_ENOMEM;
 * TC_ELMDB.
 */
int col_spool_read(col_spool_t *self, uint64_t from, uint64_t *key, uint8_t **value, size_t *len);

#endif
