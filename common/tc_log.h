/*
 * tc_log.h — structured JSON-lines logging to stderr.
 *
 * Each call writes one line: {"ts":"...","level":"info","daemon":"collector","pid":1,
 * "event":"kafka.up","msg":"...", ...fields}. A line is written with a single write(2),
 * so lines from several threads never interleave. Safe to call from any thread.
 */
#ifndef TC_LOG_H
#define TC_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    TC_LOG_DEBUG = 0,
    TC_LOG_INFO = 1,
    TC_LOG_WARN = 2,
    TC_LOG_ERROR = 3,
} tc_log_level_t;

/* Sets the daemon name put on every line and the lowest level written. Call once at start;
 * before it, lines carry daemon "tocsin" and level INFO and above are written. */
void tc_log_init(const char *daemon, tc_log_level_t min_level);

/* Parses "debug", "info", "warn"/"warning", "error". Returns 0 or TC_EINVAL. */
int tc_log_level_parse(const char *s, tc_log_level_t *out);

/* Writes one line. `event` is a short dotted name that scripts can match on. */
void tc_log(tc_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same with extra structured fields: `fields` is a JSON object whose members are added
 * to the line; the call takes the reference (steals it), NULL is allowed. */
void tc_logj(tc_log_level_t level, const char *event, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * A rate limit for lines caused by outside input (bad batches, failing receivers), so a
 * flood of bad input cannot flood the log. Allows `per_window` lines per `window_us`;
 * the lines it held back are counted and reported by the next allowed call.
 * Initialise with TC_LOG_LIMIT_INIT(per_window, window_us). Not thread-safe: one per thread.
 */
typedef struct {
    int64_t window_start_us;
    int64_t window_us;
    uint32_t per_window;
    uint32_t used;
    uint64_t suppressed;
} tc_log_limit_t;

#define TC_LOG_LIMIT_INIT(n, window_us) {0, (window_us), (n), 0, 0}

/* Returns true when a line may be written now; then *suppressed_out (if not NULL) holds the
 * number of lines held back since the last allowed one, and the count restarts. */
bool tc_log_limit_allow(tc_log_limit_t *limit, int64_t now_us, uint64_t *suppressed_out);

#endif
