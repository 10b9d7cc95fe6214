/*
 * tc_util.h — small helpers every daemon needs: clocks, byte order, UTF-8 checks,
 * duration and size parsing, random bytes.
 */
#ifndef TC_UTIL_H
#define TC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall-clock time in microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t tc_now_us(void);

/* Monotonic time in microseconds (CLOCK_MONOTONIC); for time-outs and latencies. */
int64_t tc_mono_us(void);

/* Writes `v` big-endian into 8 bytes at `p`; keys built this way sort like the numbers. */
void tc_be64_put(uint8_t *p, uint64_t v);
uint64_t tc_be64_get(const uint8_t *p);
void tc_be32_put(uint8_t *p, uint32_t v);
uint32_t tc_be32_get(const uint8_t *p);

/* True when the `len` bytes at `s` are well-formed UTF-8 (no overlongs, no surrogates). */
bool tc_utf8_valid(const char *s, size_t len);

/*
 * Parses a duration such as "250ms", "10s", "5m", "1h", "1d" or "1h30m" into milliseconds.
 * A bare number is seconds. Returns 0, or TC_EINVAL for anything else (negative, overflow).
 */
int tc_duration_parse(const char *s, int64_t *out_ms);

/* Formats `ms` as the shortest exact duration ("5m", "1500ms") into `buf`. */
void tc_duration_format(int64_t ms, char *buf, size_t len);

/* Parses a size such as "512", "64KiB", "10MiB", "1GiB" (also K, M, G, KB, MB, GB as
 * powers of 1024) into bytes. Returns 0 or TC_EINVAL. */
int tc_size_parse(const char *s, uint64_t *out);

/* Fills `buf` with `len` bytes from the kernel's random source. Returns 0 or TC_EIO. */
int tc_random_bytes(void *buf, size_t len);

/* Writes the lowercase hex of `len` bytes into `out`, which must hold 2*len+1 bytes. */
void tc_hex(const void *bytes, size_t len, char *out);

/* Copies at most len-1 bytes of `src` into `dst`, always terminates; returns strlen(src). */
size_t tc_strlcpy(char *dst, const char *src, size_t len);

/* Formats `us` (since the epoch) as RFC 3339 UTC with milliseconds into a 32-byte buffer. */
void tc_time_format_rfc3339(int64_t us, char buf[32]);

/* Creates `path` and its parents as directories (mode 0750). Returns 0 (also when it is
 * already a directory), TC_EINVAL for an empty path or one of PATH_MAX bytes or more, or
 * TC_EIO (errno says why; a non-directory already at `path` is TC_EIO too). */
int tc_mkdir_p(const char *path);

#endif
