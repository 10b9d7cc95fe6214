#include "tc_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "tc_error.h"

static int sig_pipe[2] = {-1, -1};
static atomic_int stop_flag;
static atomic_int reload_flag;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP) {
        atomic_store(&reload_flag, 1);
    } else {
        atomic_store(&stop_flag, 1);
    }
    if (sig_pipe[1] >= 0) {
        char c = (char)sig;
        ssize_t n = write(sig_pipe[1], &c, 1);
        (void)n; /* a full pipe already wakes the reader */
    }
    errno = saved;
}

int tc_signal_init(void)
{
    if (sig_pipe[0] < 0 && pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        return TC_EIO;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 ||
        sigaction(SIGHUP, &sa, NULL) != 0) {
        return TC_EIO;
    }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int tc_signal_fd(void)
{
    return sig_pipe[0];
}

void tc_signal_drain(void)
{
    char buf[64];
    while (sig_pipe[0] >= 0 && read(sig_pipe[0], buf, sizeof(buf)) > 0) {
    }
}

bool tc_signal_stop_requested(void)
{
    return atomic_load(&stop_flag) != 0;
}

bool tc_signal_take_reload(void)
{
    return atomic_exchange(&reload_flag, 0) != 0;
}

void tc_signal_request_stop(void)
{
    on_signal(SIGTERM);
}
