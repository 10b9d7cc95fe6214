/*
 * tocsin_stack.h — stack traces: capturing program counters on the calling thread (cheap,
 * no allocation, no system call once warmed up), and turning them into frames (function,
 * module, file, line, in-app) on the background thread with libdw.
 *
 * Capture uses glibc's backtrace(), which walks the unwind tables through libgcc and finds
 * them with _dl_find_object (lock-free); tocsin_stack_warm makes its first call, which
 * loads libgcc_s, happen in tocsin_new rather than on a recording thread or in a signal
 * handler.
 */
#ifndef TOCSIN_STACK_H
#define TOCSIN_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tocsin_event.h"

/* Makes the first backtrace() call (loading libgcc_s). Call before capturing. */
void tocsin_stack_warm(void);

/*
 * Captures the calling thread's return addresses into pcs[0..max), innermost first,
 * starting at the frame that returns to `caller` (the return address of the public
 * function that was called, so libtocsin's own frames are left out), then skipping `skip`
 * more. When `caller` is not found on the stack, starts after `fallback_skip` frames.
 * Returns how many it stored; sets *truncated when the stack had more.
 */
size_t tocsin_stack_capture(uint64_t *pcs, size_t max, const void *caller, uint32_t skip,
                            uint32_t fallback_skip, bool *truncated);

/*
 * Whether a module is the service's own code. `path` is the module's file; `is_main` says
 * it is the program itself. Rules in tocsin.h (in_app_include, in_app_exclude). Pure.
 */
bool tocsin_stack_in_app(const char *path, bool is_main, const char *include, const char *exclude);

typedef struct tocsin_symbolizer tocsin_symbolizer_t;

/* Creates a symbolizer for this process (lazy: libdw looks at the process on first use).
 * The strings are copied. Returns NULL when memory runs out. */
tocsin_symbolizer_t *tocsin_symbolizer_new(const char *in_app_include, const char *in_app_exclude);
void tocsin_symbolizer_destroy(tocsin_symbolizer_t **self_p);

/*
 * Fills ev->frames from ev->pcs (addresses in this process), copying the strings into the
 * event's arena. A frame that cannot be symbolised keeps its instruction_addr and the
 * module when known. Results are cached per address (a bounded cache).
 */
void tocsin_symbolize_live(tocsin_symbolizer_t *self, tocsin_event_t *ev);

/*
 * Fills ev->frames from ev->crash_frames (addresses in a crashed process): each module is
 * opened from its path and symbolised when its inode is still the one the crash saw;
 * otherwise the frame keeps the module's name and its offset in the module as
 * instruction_addr.
 */
void tocsin_symbolize_crash(tocsin_symbolizer_t *self, tocsin_event_t *ev);

#endif
