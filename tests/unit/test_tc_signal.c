/*
 * Unit tests for common/tc_signal: SIGHUP sets the reload flag once and wakes the pipe;
 * SIGTERM, SIGINT and tc_signal_request_stop set the stop flag (each in a child process,
 * since the stop flag never clears); SIGPIPE is ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_signal.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* True when the signal descriptor is readable within `ms`. */
static bool fd_readable(int ms)
{
    struct pollfd p = {tc_signal_fd(), POLLIN, 0};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Runs first: before tc_signal_init there is no descriptor and no flag. */
static void test_before_init(void **state)
{
    assert_int_equal(tc_signal_fd(), -1);
    assert_false(tc_signal_stop_requested());
    assert_false(tc_signal_take_reload());
    tc_signal_drain(); /* harmless without a pipe */
}

static void test_init(void **state)
{
    assert_int_equal(tc_signal_init(), 0);
    int fd = tc_signal_fd();
    assert_true(fd >= 0);
    assert_int_equal(tc_signal_init(), 0); /* again: same pipe */
    assert_int_equal(tc_signal_fd(), fd);
    assert_false(fd_readable(0));

    /* SIGPIPE is ignored: writing to a closed pipe gives EPIPE instead of death. */
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_IGN);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    assert_int_equal(write(p[1], "x", 1), -1);
    close(p[1]);
}

static void test_sighup_reload(void **state)
{
    assert_false(tc_signal_take_reload());
    assert_int_equal(raise(SIGHUP), 0);
    assert_true(fd_readable(1000));
    assert_true(tc_signal_take_reload());
    assert_false(tc_signal_take_reload()); /* once */
    assert_false(tc_signal_stop_requested());
    tc_signal_drain();
    assert_false(fd_readable(0));

    /* Several before anyone looks: one reload, and the pipe empties in one drain. */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(raise(SIGHUP), 0);
    }
    assert_true(fd_readable(1000));
    assert_true(tc_signal_take_reload());
    assert_false(tc_signal_take_reload());
    tc_signal_drain();
    assert_false(fd_readable(0));

    /* Many more than the pipe holds never block the handler. */
    for (int i = 0; i < 70000; i++) { /* the pipe holds 65536 bytes */
        raise(SIGHUP);
    }
    assert_true(tc_signal_take_reload());
    tc_signal_drain();
    assert_false(fd_readable(0));
    assert_false(tc_signal_stop_requested());
}

static void *send_hup(void *arg)
{
    kill(getpid(), SIGHUP);
    return NULL;
}

static void test_sighup_from_another_thread(void **state)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_hup, NULL), 0);
    pthread_join(t, NULL);
    assert_true(fd_readable(5000));
    assert_true(tc_signal_take_reload());
    tc_signal_drain();
}

/* In a child: init, check no stop, trigger `how`, check stop and the pipe. Returns the
 * child's exit status: 0 when every check held. */
static int stop_in_child(int how)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = 0;
        if (tc_signal_init() != 0) {
            _exit(10);
        }
        if (tc_signal_stop_requested()) {
            _exit(11);
        }
        if (how == 0) {
            tc_signal_request_stop();
        } else if (raise(how) != 0) {
            _exit(12);
        }
        if (!tc_signal_stop_requested()) {
            code = 13;
        } else if (!fd_readable(1000)) {
            code = 14;
        } else if (tc_signal_take_reload()) {
            code = 15; /* a stop is not a reload */
        }
        tc_signal_drain();
        if (!code && !tc_signal_stop_requested()) {
            code = 16; /* the stop flag stays */
        }
        _exit(code);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        return 100 + WTERMSIG(status); /* the handler was missing: the signal killed it */
    }
    return WEXITSTATUS(status);
}

static void test_stop(void **state)
{
    static const struct {
        int how; /* a signal, or 0 for tc_signal_request_stop */
        const char *what;
    } cases[] = {{SIGTERM, "SIGTERM"}, {SIGINT, "SIGINT"}, {0, "tc_signal_request_stop"}};
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int rc = stop_in_child(cases[i].how);
        if (rc != 0) {
            fail_msg("%s: child check %d failed", cases[i].what, rc);
        }
    }
    /* None of that touched this process. */
    assert_false(tc_signal_stop_requested());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_init),   cmocka_unit_test(test_init),
        cmocka_unit_test(test_sighup_reload), cmocka_unit_test(test_sighup_from_another_thread),
        cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
