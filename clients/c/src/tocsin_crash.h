/*
 * tocsin_crash.h — crash capture: a signal handler that writes a crash report file, and
 * the reading of those files by the next client.
 *
 * The handler (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT; on an alternate signal stack)
 * only calls async-signal-safe functions: it takes the crashing thread's return addresses
 * (backtrace(), warmed up in tocsin_new), finds each one's mapping in /proc/self/maps
 * (open/read: no loader lock), formats the report with its own number formatting into a
 * static buffer, writes it to a temporary file, renames it into place, restores the
 * handlers that were there before and lets the signal reach them (re-raising it when it
 * was sent rather than caused by the faulting instruction).
 *
 * A report is text, one "key value" per line, so a person can read it too:
 *   tocsin-crash 1
 *   event_id <32 hex digits>
 *   time_us <decimal>      signal <decimal>      code <decimal>      addr <hex>
 *   pid <decimal>
 *   service|environment|release|host <text; \n and \\ escaped>
 *   frame <pc hex> <map_start hex> <map_offset hex> <inode decimal> <path>   (innermost first)
 *   end
 */
#ifndef TOCSIN_CRASH_H
#define TOCSIN_CRASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin.h"

#define TOCSIN_CRASH_PATH_MAX 256         /* a module path, with its NUL (longer ones are cut) */
#define TOCSIN_CRASH_FILE_MAX (64 * 1024) /* largest report file read */

typedef struct {
    uint64_t pc;
    uint64_t map_start;
    uint64_t map_offset;
    uint64_t inode;
    char path[TOCSIN_CRASH_PATH_MAX];
} tocsin_crash_frame_rec_t;

typedef struct {
    uint8_t event_id[16];
    int64_t time_us;
    int32_t signo;
    int32_t code;
    uint64_t addr;
    int64_t pid;
    char service[TOCSIN_IDENTITY_MAX + 1];
    char environment[TOCSIN_IDENTITY_MAX + 1];
    char release[TOCSIN_IDENTITY_MAX + 1];
    char host[TOCSIN_IDENTITY_MAX + 1];
    size_t n_frames;
    tocsin_crash_frame_rec_t frames[TOCSIN_FRAMES_MAX];
    bool complete; /* the "end" line was there */
} tocsin_crash_t;

/*
 * Formats a report into buf (at most cap bytes, no NUL). Async-signal-safe (no locale, no
 * allocation). Returns the bytes written; a report that does not fit is cut at a line
 * boundary and has no "end" line.
 */
size_t tocsin_crash_format(const tocsin_crash_t *c, char *buf, size_t cap);

/*
 * Parses a report. Returns 0 with *out filled; TOCSIN_EINVAL when the first line is not
 * "tocsin-crash 1", a known key has a malformed value, the service is missing or the
 * report has no signal. Unknown keys are skipped; frames past TOCSIN_FRAMES_MAX and long
 * values are cut. Pure; `buf` need not be NUL-terminated.
 */
int tocsin_crash_parse(const char *buf, size_t len, tocsin_crash_t *out);

/* A short name and a sentence for a signal and its si_code ("SIGSEGV",
 * "segmentation fault: address not mapped"). Static strings. */
const char *tocsin_crash_signal_name(int signo);
const char *tocsin_crash_signal_text(int signo, int code);

/*
 * Installs the handlers (process-wide; counted, so several clients may install), writing
 * reports to `dir` with the identity given (the latest install's directory and identity
 * win). Gives the calling thread an alternate signal stack when it has none. Returns 0,
 * TOCSIN_EINVAL (dir too long), TOCSIN_ENOMEM, or TOCSIN_EIO (sigaction failed).
 */
int tocsin_crash_install(const char *dir, const char *service, const char *environment,
                         const char *release, const char *host);

/* Drops one install; the last one restores the previous handlers (where ours are still the
 * ones installed). */
void tocsin_crash_uninstall(void);

/* For tests: makes the handler behave as if `sig` arrived with `info`/`uc` (writes the
 * report, then returns without chaining). */
void tocsin_crash_write_report(int sig, int code, uint64_t addr, const void *fault_pc);

#endif
