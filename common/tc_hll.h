/*
 * tc_hll.h — HyperLogLog: a mergeable estimate of how many distinct values (user ids) a set
 * holds, in at most 12 KiB whatever the set's size (Flajolet et al., with Ertl's improved
 * estimator as Redis uses it).
 *
 * 2^TC_HLL_P = 16,384 registers give a standard error of 1.04 / sqrt(16384) = 0.81 %. A value
 * is hashed to 64 bits (MurmurHash64A, seed 0xadc83b19, as Redis); the low P bits choose a
 * register, and the register keeps the largest rank (position of the lowest set bit of the
 * remaining bits, 1 to TC_HLL_MAX_RANK) seen. Two HyperLogLogs merge by taking the larger
 * rank of each register: exact, idempotent and independent of order, so a 1 h window merged
 * from 360 buckets estimates the users of the hour, not the sum of the buckets' users.
 *
 * Small sets are sparse: a sorted array of (register << 6 | rank) entries, 4 bytes each in
 * memory and about 2 serialized. Past TC_HLL_SPARSE_MEM entries a set turns dense in memory
 * (one byte per register); it is serialized sparse while at most TC_HLL_SPARSE_MAX registers
 * are set (a dense set that came from merges may have fewer), and densely (6 bits per
 * register) beyond.
 *
 * Serialized form (what LMDB and tocsin.rollups carry; an empty set serializes to 0 bytes):
 *   byte 0   encoding: 1 sparse, 2 dense
 *   byte 1   precision: TC_HLL_P
 *   sparse:  varint n (1 .. 2^P), then n varints: the first entry, then the difference to
 *            the previous entry; entries ascend by register, ranks 1 .. TC_HLL_MAX_RANK
 *   dense:   TC_HLL_DENSE_BYTES bytes: register i in bits [6i, 6i + 6) little-endian
 *            (bit 0 is the lowest bit of byte 0); ranks 0 .. TC_HLL_MAX_RANK
 * Varints are protobuf's (7 bits per byte, low group first).
 *
 * A pure module: no I/O, no clock, no global state. Not thread-safe per set.
 */
#ifndef TC_HLL_H
#define TC_HLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TC_HLL_P 14
#define TC_HLL_REGISTERS (1u << TC_HLL_P)
#define TC_HLL_MAX_RANK (64 - TC_HLL_P + 1)
#define TC_HLL_SPARSE_MEM 3072
#define TC_HLL_SPARSE_MAX 3072
#define TC_HLL_DENSE_BYTES (TC_HLL_REGISTERS * 6 / 8)
#define TC_HLL_ENC_SPARSE 1
#define TC_HLL_ENC_DENSE 2
/* The largest serialized form: a dense set. */
#define TC_HLL_MAX_ENCODED (2 + TC_HLL_DENSE_BYTES)

typedef struct {
    uint8_t *regs;    /* dense: TC_HLL_REGISTERS ranks, or NULL while sparse */
    uint32_t *sparse; /* sparse entries (register << 6 | rank), ascending by register */
    uint32_t nsparse;
    uint32_t sparse_cap;
    uint32_t nnz; /* dense: registers set */
} tc_hll_t;

/* An empty set (sparse, nothing allocated). */
void tc_hll_init(tc_hll_t *h);

/* Frees what the set holds; it may be initialised again. Safe twice. */
void tc_hll_fini(tc_hll_t *h);

/* Empties the set, keeping its memory (a dense set stays dense). */
void tc_hll_reset(tc_hll_t *h);

/* True when nothing was added. */
bool tc_hll_empty(const tc_hll_t *h);

/* The 64-bit hash of a value (MurmurHash64A, seed 0xadc83b19). */
uint64_t tc_hll_hash(const void *data, size_t len);

/* Adds a value by its tc_hll_hash. Returns 0 or TC_ENOMEM (the set is then unchanged). */
int tc_hll_add_hash(tc_hll_t *h, uint64_t hash);

/* Adds a value. Returns 0 or TC_ENOMEM. */
int tc_hll_add(tc_hll_t *h, const void *data, size_t len);

/* Merges `src` into `dst` (register-wise maximum). Returns 0 or TC_ENOMEM (`dst` is then
 * unchanged or a valid superset of its old content). */
int tc_hll_merge(tc_hll_t *dst, const tc_hll_t *src);

/* Turns the set dense (for accumulators that merge many sets). Returns 0 or TC_ENOMEM. */
int tc_hll_make_dense(tc_hll_t *h);

/* The estimated number of distinct values added; 0 for an empty set. */
double tc_hll_count(const tc_hll_t *h);

/* The size of the serialized form, at most TC_HLL_MAX_ENCODED (0 for an empty set). */
size_t tc_hll_encoded_size(const tc_hll_t *h);

/* Writes the serialized form into `out` (tc_hll_encoded_size bytes); returns its size. */
size_t tc_hll_encode(const tc_hll_t *h, uint8_t *out);

/*
 * Replaces `h` with the set serialized in `data` (0 bytes: the empty set), after checking
 * everything the format promises: encoding, precision, lengths, ascending registers, ranks
 * in range, nothing after the end. Returns 0, TC_EPARSE for bytes that are not a serialized
 * set (`h` is then empty), or TC_ENOMEM.
 */
int tc_hll_decode(tc_hll_t *h, const uint8_t *data, size_t len);

/* Merges a serialized set into `dst` without building it (checks as tc_hll_decode; on
 * TC_EPARSE `dst` may hold part of it, still a valid set). Returns 0, TC_EPARSE or
 * TC_ENOMEM. */
int tc_hll_merge_encoded(tc_hll_t *dst, const uint8_t *data, size_t len);

/* Checks a serialized set as tc_hll_decode does, without building it. Returns 0 or
 * TC_EPARSE. */
int tc_hll_check_encoded(const uint8_t *data, size_t len);

#endif
