/*
 * tc_signal.h — the signals every daemon answers: SIGTERM and SIGINT drain and exit,
 * SIGHUP reloads. Handlers only set flags and write a byte to a pipe, so the main loop can
 * poll tc_signal_fd() next to its sockets. SIGPIPE is ignored.
 */
#ifndef TC_SIGNAL_H
#define TC_SIGNAL_H

#include <stdbool.h>

/* Installs the handlers. Returns 0 or TC_EIO. Call once, from the main thread, before
 * starting other threads. */
int tc_signal_init(void);

/* A descriptor that becomes readable when a signal arrives; -1 before tc_signal_init. */
int tc_signal_fd(void);

/* Empties the pipe behind tc_signal_fd. */
void tc_signal_drain(void);

/* True once SIGTERM or SIGINT has arrived. */
bool tc_signal_stop_requested(void);

/* True when SIGHUP arrived since the last call (the flag is cleared). */
bool tc_signal_take_reload(void);

/* Asks the process to stop as if SIGTERM had arrived (for tests and fatal errors). */
void tc_signal_request_stop(void);

#endif
