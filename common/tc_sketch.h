/*
 * tc_sketch.h — a mergeable quantile sketch with a proven relative-error bound
 * (DDSketch with the logarithmic mapping of Prometheus native histograms).
 *
 * A value v > 0 goes to bin i = ceil(log2(v) * 2^schema); bin i covers
 * (gamma^(i-1), gamma^i] with gamma = 2^(2^-schema). Every quantile the sketch returns is
 * within a relative error alpha = (gamma-1)/(gamma+1) of the exact value of the same rank:
 * 0.54 % at the default schema 6. Two sketches of one schema merge by adding bins, which is
 * exact and independent of order, so a 1 h window merged from 360 buckets is as accurate
 * as one bucket.
 *
 * Values at or below TC_SKETCH_MIN_VALUE (and 0) are counted in the zero bin and answered
 * as 0; values above TC_SKETCH_MAX_VALUE are counted in the top bin. Dense storage is
 * therefore bounded by TC_SKETCH_MAX_BINS bins (8 bytes each).
 *
 * A pure module: no I/O, no clock, no global state. Not thread-safe per sketch.
 */
#ifndef TC_SKETCH_H
#define TC_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#define TC_SKETCH_SCHEMA 6
#define TC_SKETCH_MIN_VALUE 1e-9
#define TC_SKETCH_MAX_VALUE 1e18
/* The index range from TC_SKETCH_MIN_VALUE to TC_SKETCH_MAX_VALUE: 5,741 bins at schema 6,
 * 22,962 at schema 8 (the widest). */
#define TC_SKETCH_MAX_BINS 32768

typedef struct {
    int schema;
    uint64_t zero_count;
    int32_t offset;   /* bin index of counts[0] */
    uint32_t len;     /* bins in use from offset */
    uint32_t cap;
    uint64_t *counts;
    uint64_t count;   /* every value added, zero bin included */
} tc_sketch_t;

/* Initialises an empty sketch; `schema` from 0 to 8 (TC_SKETCH_SCHEMA by default). */
void tc_sketch_init(tc_sketch_t *s, int schema);

/* Frees the bins; the sketch may be initialised again. */
void tc_sketch_fini(tc_sketch_t *s);

/* Empties the sketch, keeping its memory. */
void tc_sketch_reset(tc_sketch_t *s);

/* Adds `n` occurrences of `v`. Returns 0, TC_EINVAL for a negative or NaN value,
 * or TC_ENOMEM. */
int tc_sketch_add(tc_sketch_t *s, double v, uint64_t n);

/* Adds every bin of `src` to `dst`. Returns 0, TC_EINVAL when the schemas differ,
 * or TC_ENOMEM. */
int tc_sketch_merge(tc_sketch_t *dst, const tc_sketch_t *src);

/* The value at quantile q (0 <= q <= 1): the bin holding rank floor(q * (count - 1)),
 * answered as the bin's centre. NAN when the sketch is empty or q is out of range. */
double tc_sketch_quantile(const tc_sketch_t *s, double q);

/* The largest relative error of a quantile for `schema`. */
double tc_sketch_relative_accuracy(int schema);

/* Bin index of a value (> TC_SKETCH_MIN_VALUE) and the value that stands for a bin. */
int32_t tc_sketch_index(int schema, double v);
double tc_sketch_bin_value(int schema, int32_t index);

/* Adds `n` occurrences to bin `index` directly (the bin tc_sketch_index gives; for decoders
 * that keep bins by index). Returns 0, TC_EINVAL for an index outside the schema's bounds,
 * or TC_ENOMEM. */
int tc_sketch_add_bin(tc_sketch_t *s, int32_t index, uint64_t n);

/*
 * Sets the bins from raw parts (as decoded from the wire or from LMDB), after checking
 * them: `schema` 0..8, `len` at most TC_SKETCH_MAX_BINS, the index range inside the
 * sketch's bounds. Replaces what `s` held. Returns 0, TC_EINVAL or TC_ENOMEM.
 */
int tc_sketch_load(tc_sketch_t *s, int schema, uint64_t zero_count, int32_t offset,
                   const uint64_t *counts, size_t len);

#endif
