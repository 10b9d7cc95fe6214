/* Unit tests for clients/c/src/tocsin_crash.c: the report format (round trip, escaping,
 * refused inputs) and the handler itself in child processes — SIGABRT and SIGFPE write a
 * report and the process still dies of its signal; a handler installed before ours still
 * runs (chaining); uninstalling restores it. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "tocsin_crash.h"

static tocsin_crash_t a, b;
static char text[64 * 1024];

static void test_round_trip(void **state)
{
    (void)state;
    memset(&a, 0, sizeof(a));
    for (int i = 0; i < 16; i++) {
        a.event_id[i] = (uint8_t)(i * 17);
    }
    a.time_us = 1795000000123456;
    a.signo = SIGSEGV;
    a.code = SEGV_MAPERR;
    a.addr = 0xdeadbeef;
    a.pid = 4242;
    strcpy(a.service, "svc with\nnewline and \\ backslash");
    strcpy(a.environment, "prod");
    strcpy(a.release, "");
    strcpy(a.host, "h\xc3\xa9");
    a.n_frames = 3;
    a.frames[0] = (tocsin_crash_frame_rec_t){0x5555, 0x5000, 0x1000, 77, "/usr/bin/a b"};
    a.frames[1] = (tocsin_crash_frame_rec_t){0x7f00, 0x7000, 0, 78, "/lib/libc.so.6"};
    a.frames[2] = (tocsin_crash_frame_rec_t){0x1, 0, 0, 0, ""};
    size_t n = tocsin_crash_format(&a, text, sizeof(text));
    assert_true(n > 0 && n < sizeof(text));
    assert_int_equal(tocsin_crash_parse(text, n, &b), 0);
    assert_true(b.complete);
    assert_memory_equal(b.event_id, a.event_id, 16);
    assert_int_equal(b.time_us, a.time_us);
    assert_int_equal(b.signo, SIGSEGV);
    assert_int_equal(b.code, SEGV_MAPERR);
    assert_int_equal(b.addr, 0xdeadbeef);
    assert_int_equal(b.pid, 4242);
    assert_string_equal(b.service, a.service);
    assert_string_equal(b.host, a.host);
    assert_int_equal(b.n_frames, 3);
    assert_string_equal(b.frames[0].path, "/usr/bin/a b");
    assert_int_equal(b.frames[0].map_offset, 0x1000);
    assert_int_equal(b.frames[1].inode, 78);
    assert_string_equal(b.frames[2].path, "");

    /* A report cut short (no room for all of it) ends at a line boundary, without "end":
     * still readable, and marked incomplete. */
    size_t cut = tocsin_crash_format(&a, text, n - 10);
    assert_true(cut < n - 10 && text[cut - 1] == '\n');
    assert_int_equal(tocsin_crash_parse(text, cut, &b), 0);
    assert_false(b.complete);
    assert_int_equal(b.n_frames, 2);
}

typedef struct {
    const char *name;
    const char *text;
} bad_t;

static void test_refused(void **state)
{
    (void)state;
    static const bad_t cases[] = {
        {"empty", ""},
        {"other magic", "crash 1\nsignal 11\nservice s\n"},
        {"other version", "tocsin-crash 2\nsignal 11\nservice s\n"},
        {"no service", "tocsin-crash 1\nsignal 11\nend\n"},
        {"no signal", "tocsin-crash 1\nservice s\nend\n"},
        {"negative signal", "tocsin-crash 1\nsignal -1\nservice s\n"},
        {"bad event id", "tocsin-crash 1\nevent_id 12\nsignal 11\nservice s\n"},
        {"hex in event id", "tocsin-crash 1\nevent_id zz112233445566778899aabbccddeeff\n"
                            "signal 11\nservice s\n"},
        {"bad time", "tocsin-crash 1\ntime_us 12x\nsignal 11\nservice s\n"},
        {"huge signal", "tocsin-crash 1\nsignal 99999999999\nservice s\n"},
        {"bad addr", "tocsin-crash 1\naddr 0x10\nsignal 11\nservice s\n"},
        {"frame missing fields", "tocsin-crash 1\nsignal 11\nservice s\nframe 1 2\n"},
        {"frame overflow", "tocsin-crash 1\nsignal 11\nservice s\n"
                           "frame 11111111111111111111 0 0 0 /x\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (tocsin_crash_parse(cases[i].text, strlen(cases[i].text), &b) != TOCSIN_EINVAL) {
            fail_msg("case %s was accepted", cases[i].name);
        }
    }
    /* Unknown keys are skipped; frames past the limit are left out. */
    char *many = malloc(200 * 40 + 100);
    size_t len = (size_t)sprintf(many, "tocsin-crash 1\nsignal 6\nservice s\nfuture 1\n");
    for (int i = 0; i < 200; i++) {
        len += (size_t)sprintf(many + len, "frame %x 0 0 0 /p\n", i + 1);
    }
    assert_int_equal(tocsin_crash_parse(many, len, &b), 0);
    assert_int_equal(b.n_frames, TOCSIN_FRAMES_MAX);
    free(many);
    assert_string_equal(tocsin_crash_signal_name(SIGBUS), "SIGBUS");
    assert_non_null(strstr(tocsin_crash_signal_text(SIGFPE, FPE_INTDIV), "divide by zero"));
    assert_string_equal(tocsin_crash_signal_text(SIGABRT, 0), "aborted");
}

/* Reads the one report in dir into *out (removing it); returns how many there were. */
static int read_report(const char *dir, tocsin_crash_t *out)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        assert_non_null(strstr(de->d_name, ".crash"));
        assert_null(strstr(de->d_name, ".tmp"));
        FILE *f = fopen(path, "rb");
        size_t len = fread(text, 1, sizeof(text), f);
        fclose(f);
        assert_int_equal(tocsin_crash_parse(text, len, out), 0);
        unlink(path);
        n++;
    }
    closedir(d);
    return n;
}

static volatile int zero = 0;
static volatile int seven = 7;
static char marker[256];

static void own_handler(int sig)
{
    (void)sig;
    int fd = open(marker, O_WRONLY | O_CREAT, 0600);
    close(fd);
    _exit(42);
}

typedef enum { DIE_ABORT, DIE_FPE, DIE_CHAINED } how_t;

static void crash_child(const char *dir, how_t how)
{
    alarm(20);
    signal(SIGABRT, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    if (how == DIE_CHAINED) {
        signal(SIGABRT, own_handler);
    }
    if (tocsin_crash_install(dir, "child-svc", "test", "1.0", "h") != 0) {
        _exit(5);
    }
    if (how == DIE_FPE) {
        /* A real trap (not a sent signal), out of UBSan's sight: idiv by zero. */
#if defined(__x86_64__)
        int q, d = zero;
        __asm__ volatile("cltd; idivl %1" : "=a"(q) : "r"(d), "a"(seven) : "edx");
        (void)q;
#else
        raise(SIGFPE);
#endif
    } else {
        abort();
    }
    _exit(6);
}

static void test_handler_in_children(void **state)
{
    (void)state;
    char dir[] = "/tmp/tocsin-crash-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(marker, sizeof(marker), "%s/marker", dir);
    static const struct {
        how_t how;
        int signo;
    } cases[] = {{DIE_ABORT, SIGABRT}, {DIE_FPE, SIGFPE}, {DIE_CHAINED, SIGABRT}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            crash_child(dir, cases[i].how);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (cases[i].how == DIE_CHAINED) {
            /* Our report first, then the program's own handler, which exits 42. */
            assert_true(WIFEXITED(status));
            assert_int_equal(WEXITSTATUS(status), 42);
            assert_int_equal(access(marker, F_OK), 0);
            unlink(marker);
        } else {
            if (!WIFSIGNALED(status)) {
                fail_msg("case %zu: child exited %d", i, WEXITSTATUS(status));
            }
            assert_int_equal(WTERMSIG(status), cases[i].signo);
        }
        assert_int_equal(read_report(dir, &b), 1);
        assert_int_equal(b.signo, cases[i].signo);
        assert_int_equal(b.pid, pid);
        assert_string_equal(b.service, "child-svc");
        assert_string_equal(b.release, "1.0");
        assert_true(b.complete);
        assert_true(b.n_frames >= 1);
        assert_true(b.frames[0].path[0] == '/');
    }
    /* Installing twice and uninstalling twice gives back the handler that was there. */
    struct sigaction before, after;
    sigaction(SIGBUS, NULL, &before);
    assert_int_equal(tocsin_crash_install(dir, "s", "e", "r", "h"), 0);
    assert_int_equal(tocsin_crash_install(dir, "s", "e", "r", "h"), 0);
    tocsin_crash_uninstall();
    sigaction(SIGBUS, NULL, &after);
    assert_true(after.sa_flags & SA_SIGINFO); /* still ours: one install left */
    tocsin_crash_uninstall();
    sigaction(SIGBUS, NULL, &after);
    assert_true(after.sa_handler == before.sa_handler);
    char longdir[300];
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[sizeof(longdir) - 1] = '\0';
    assert_int_equal(tocsin_crash_install(longdir, "s", "e", "r", "h"), TOCSIN_EINVAL);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_handler_in_children),
    };
    return cmocka_run_group_tests_name("tocsin_crash", tests, NULL, NULL);
}
