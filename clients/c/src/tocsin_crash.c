/*
 * tocsin_crash.c — the crash handler and the crash report format. Everything reachable
 * from on_signal is async-signal-safe: no malloc, no stdio, no locks; only syscalls
 * (open, read, write, fsync, close, rename, getpid, getrandom, clock_gettime, sigaction,
 * raise) and backtrace(), whose first call (loading libgcc_s) tocsin_new has made already.
 */
#include "tocsin_crash.h"

#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "tocsin_record.h"
#include "tocsin_stack.h"

#define DIR_MAX 200
#define ALTSTACK_BYTES (64 * 1024)

static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define N_SIGNALS (sizeof(crash_signals) / sizeof(crash_signals[0]))

/* ---------------------------------------------------------------------------------- */
/* Formatting without stdio. */

typedef struct {
    char *p;
    char *end;
    bool full;
} out_t;

static void out_bytes(out_t *o, const char *s, size_t n)
{
    if (o->full || (size_t)(o->end - o->p) < n) {
        o->full = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void out_str(out_t *o, const char *s)
{
    out_bytes(o, s, strlen(s));
}

static void out_u64(out_t *o, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    char rev[24];
    for (size_t i = 0; i < n; i++) {
        rev[i] = tmp[n - 1 - i];
    }
    out_bytes(o, rev, n);
}

static void out_i64(out_t *o, int64_t v)
{
    if (v < 0) {
        out_bytes(o, "-", 1);
        out_u64(o, (uint64_t)0 - (uint64_t)v, 10);
    } else {
        out_u64(o, (uint64_t)v, 10);
    }
}

/* Text with '\\' and '\n' escaped, so one value stays on one line. */
static void out_text(out_t *o, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') {
            out_bytes(o, "\\\\", 2);
        } else if (*s == '\n') {
            out_bytes(o, "\\n", 2);
        } else {
            out_bytes(o, s, 1);
        }
    }
}

size_t tocsin_crash_format(const tocsin_crash_t *c, char *buf, size_t cap)
{
    out_t o = {buf, buf + cap, false};
    char *line_start = o.p;
#define LINE_END()                                                                                 \
    do {                                                                                           \
        out_bytes(&o, "\n", 1);                                                                    \
        if (o.full) {                                                                              \
            return (size_t)(line_start - buf);                                                     \
        }                                                                                          \
        line_start = o.p;                                                                          \
    } while (0)
    out_str(&o, "tocsin-crash 1");
    LINE_END();
    out_str(&o, "event_id ");
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        char h[2] = {hex[c->event_id[i] >> 4], hex[c->event_id[i] & 15]};
        out_bytes(&o, h, 2);
    }
    LINE_END();
    out_str(&o, "time_us ");
    out_i64(&o, c->time_us);
    LINE_END();
    out_str(&o, "signal ");
    out_i64(&o, c->signo);
    LINE_END();
    out_str(&o, "code ");
    out_i64(&o, c->code);
    LINE_END();
    out_str(&o, "addr ");
    out_u64(&o, c->addr, 16);
    LINE_END();
    out_str(&o, "pid ");
    out_i64(&o, c->pid);
    LINE_END();
    const char *keys[] = {"service ", "environment ", "release ", "host "};
    const char *vals[] = {c->service, c->environment, c->release, c->host};
    for (int i = 0; i < 4; i++) {
        out_str(&o, keys[i]);
        out_text(&o, vals[i]);
        LINE_END();
    }
    for (size_t i = 0; i < c->n_frames && i < TOCSIN_FRAMES_MAX; i++) {
        const tocsin_crash_frame_rec_t *f = &c->frames[i];
        out_str(&o, "frame ");
        out_u64(&o, f->pc, 16);
        out_bytes(&o, " ", 1);
        out_u64(&o, f->map_start, 16);
        out_bytes(&o, " ", 1);
        out_u64(&o, f->map_offset, 16);
        out_bytes(&o, " ", 1);
        out_u64(&o, f->inode, 10);
        out_bytes(&o, " ", 1);
        out_text(&o, f->path);
        LINE_END();
    }
    out_str(&o, "end");
    LINE_END();
#undef LINE_END
    return (size_t)(o.p - buf);
}

/* ---------------------------------------------------------------------------------- */
/* Parsing. */

static bool parse_u64(const char *s, size_t n, unsigned base, uint64_t *out)
{
    if (n == 0 || n > 20) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        char ch = s[i];
        if (ch >= '0' && ch <= '9') {
            d = (unsigned)(ch - '0');
        } else if (base == 16 && ch >= 'a' && ch <= 'f') {
            d = (unsigned)(ch - 'a' + 10);
        } else {
            return false;
        }
        if (d >= base || v > (UINT64_MAX - d) / base) {
            return false;
        }
        v = v * base + d;
    }
    *out = v;
    return true;
}

static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    bool neg = n > 0 && s[0] == '-';
    uint64_t v;
    if (!parse_u64(s + neg, n - neg, 10, &v) || v > (uint64_t)INT64_MAX) {
        return false;
    }
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

/* Unescapes s[0..n) into dst (cap bytes with the NUL), cutting at a character boundary. */
static void parse_text(const char *s, size_t n, char *dst, size_t cap)
{
    char tmp[TOCSIN_CRASH_PATH_MAX + TOCSIN_IDENTITY_MAX];
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof(tmp); i++) {
        if (s[i] == '\\' && i + 1 < n) {
            i++;
            tmp[o++] = s[i] == 'n' ? '\n' : s[i];
        } else {
            tmp[o++] = s[i];
        }
    }
    bool cut = false;
    size_t k = tocsin_utf8_copy(dst, cap - 1, tmp, o, &cut);
    dst[k] = '\0';
}

/* The next space-separated word of [*p, end), consumed. */
static bool next_word(const char **p, const char *end, const char **w, size_t *n)
{
    const char *s = *p;
    while (s < end && *s == ' ') {
        s++;
    }
    const char *e = s;
    while (e < end && *e != ' ') {
        e++;
    }
    *w = s;
    *n = (size_t)(e - s);
    *p = e;
    return *n > 0;
}

int tocsin_crash_parse(const char *buf, size_t len, tocsin_crash_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *p = buf, *end = buf + len;
    bool first = true, have_signal = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *sp = memchr(p, ' ', (size_t)(le - p));
        const char *key = p;
        size_t klen = sp ? (size_t)(sp - p) : (size_t)(le - p);
        const char *val = sp ? sp + 1 : le;
        size_t vlen = (size_t)(le - val);
        p = nl ? nl + 1 : end;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
        if (first) {
            if (!KEY("tocsin-crash") || vlen != 1 || val[0] != '1') {
                return TOCSIN_EINVAL;
            }
            first = false;
            continue;
        }
        int64_t i64;
        uint64_t u64;
        if (KEY("end")) {
            out->complete = true;
            break;
        } else if (KEY("event_id")) {
            if (vlen != 32) {
                return TOCSIN_EINVAL;
            }
            for (int i = 0; i < 16; i++) {
                if (!parse_u64(val + 2 * i, 2, 16, &u64)) {
                    return TOCSIN_EINVAL;
                }
                out->event_id[i] = (uint8_t)u64;
            }
        } else if (KEY("time_us")) {
            if (!parse_i64(val, vlen, &out->time_us)) {
                return TOCSIN_EINVAL;
            }
        } else if (KEY("signal") || KEY("code")) {
            if (!parse_i64(val, vlen, &i64) || i64 < INT32_MIN || i64 > INT32_MAX) {
                return TOCSIN_EINVAL;
            }
            if (KEY("signal")) {
                out->signo = (int32_t)i64;
                have_signal = i64 > 0;
            } else {
                out->code = (int32_t)i64;
            }
        } else if (KEY("addr")) {
            if (!parse_u64(val, vlen, 16, &out->addr)) {
                return TOCSIN_EINVAL;
            }
        } else if (KEY("pid")) {
            if (!parse_i64(val, vlen, &out->pid)) {
                return TOCSIN_EINVAL;
            }
        } else if (KEY("service")) {
            parse_text(val, vlen, out->service, sizeof(out->service));
        } else if (KEY("environment")) {
            parse_text(val, vlen, out->environment, sizeof(out->environment));
        } else if (KEY("release")) {
            parse_text(val, vlen, out->release, sizeof(out->release));
        } else if (KEY("host")) {
            parse_text(val, vlen, out->host, sizeof(out->host));
        } else if (KEY("frame")) {
            if (out->n_frames >= TOCSIN_FRAMES_MAX) {
                continue;
            }
            tocsin_crash_frame_rec_t *f = &out->frames[out->n_frames];
            const char *w, *q = val;
            size_t wn;
            if (!next_word(&q, le, &w, &wn) || !parse_u64(w, wn, 16, &f->pc) ||
                !next_word(&q, le, &w, &wn) || !parse_u64(w, wn, 16, &f->map_start) ||
                !next_word(&q, le, &w, &wn) || !parse_u64(w, wn, 16, &f->map_offset) ||
                !next_word(&q, le, &w, &wn) || !parse_u64(w, wn, 10, &f->inode)) {
                return TOCSIN_EINVAL;
            }
            if (q < le) {
                q++; /* the space before the path */
            }
            parse_text(q, (size_t)(le - q), f->path, sizeof(f->path));
            out->n_frames++;
        }
#undef KEY
    }
    if (first || !have_signal || !out->service[0]) {
        return TOCSIN_EINVAL;
    }
    return 0;
}

const char *tocsin_crash_signal_name(int signo)
{
    switch (signo) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGABRT:
        return "SIGABRT";
    default:
        return "SIGNAL";
    }
}

const char *tocsin_crash_signal_text(int signo, int code)
{
    switch (signo) {
    case SIGSEGV:
        return code == SEGV_MAPERR   ? "segmentation fault: address not mapped"
               : code == SEGV_ACCERR ? "segmentation fault: invalid permissions for the address"
                                     : "segmentation fault";
    case SIGBUS:
        return code == BUS_ADRALN   ? "bus error: invalid address alignment"
               : code == BUS_ADRERR ? "bus error: nonexistent physical address"
               : code == BUS_OBJERR ? "bus error: object-specific hardware error"
                                    : "bus error";
    case SIGFPE:
        return code == FPE_INTDIV   ? "arithmetic exception: integer divide by zero"
               : code == FPE_INTOVF ? "arithmetic exception: integer overflow"
               : code == FPE_FLTDIV ? "arithmetic exception: floating-point divide by zero"
                                    : "arithmetic exception";
    case SIGILL:
        return code == ILL_ILLOPC ? "illegal instruction: illegal opcode" : "illegal instruction";
    case SIGABRT:
        return "aborted";
    default:
        return "fatal signal";
    }
}

/* ---------------------------------------------------------------------------------- */
/* The handler. Its state is static: nothing is allocated when a crash happens. */

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static int install_count;
static struct sigaction previous[N_SIGNALS];
static char crash_dir[DIR_MAX + 1];
static tocsin_crash_t report; /* filled by the handler */
static char report_text[TOCSIN_FRAMES_MAX * (TOCSIN_CRASH_PATH_MAX + 80) + 4096];
static char maps_buf[8192];
static atomic_flag in_handler = ATOMIC_FLAG_INIT;

/* Fills each frame's mapping from /proc/self/maps, read in pieces. */
static void find_mappings(tocsin_crash_t *c)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    size_t have = 0;
    for (;;) {
        ssize_t n = read(fd, maps_buf + have, sizeof(maps_buf) - have);
        if (n <= 0) {
            break;
        }
        have += (size_t)n;
        size_t used = 0;
        for (;;) {
            char *line = maps_buf + used;
            char *nl = memchr(line, '\n', have - used);
            if (!nl) {
                break;
            }
            /* start-end perms offset dev inode path */
            const char *q = line, *e = nl, *w;
            size_t wn;
            uint64_t start = 0, stop = 0, off = 0, inode = 0;
            const char *dash = memchr(line, '-', (size_t)(nl - line));
            if (dash && parse_u64(line, (size_t)(dash - line), 16, &start)) {
                q = dash + 1;
                bool ok = next_word(&q, e, &w, &wn) && parse_u64(w, wn, 16, &stop) &&
                          next_word(&q, e, &w, &wn) && /* perms */
                          next_word(&q, e, &w, &wn) && parse_u64(w, wn, 16, &off) &&
                          next_word(&q, e, &w, &wn) && /* dev */
                          next_word(&q, e, &w, &wn) && parse_u64(w, wn, 10, &inode);
                while (ok && q < e && *q == ' ') {
                    q++;
                }
                for (size_t i = 0; ok && i < c->n_frames; i++) {
                    tocsin_crash_frame_rec_t *f = &c->frames[i];
                    if (f->pc >= start && f->pc < stop && f->map_start == 0) {
                        f->map_start = start;
                        f->map_offset = off;
                        f->inode = inode;
                        size_t plen = (size_t)(e - q);
                        if (plen >= sizeof(f->path)) {
                            plen = sizeof(f->path) - 1;
                        }
                        memcpy(f->path, q, plen);
                        f->path[plen] = '\0';
                    }
                }
            }
            used = (size_t)(nl - maps_buf) + 1;
        }
        if (used == 0 && have == sizeof(maps_buf)) {
            used = have; /* a line longer than the buffer: skipped */
        }
        memmove(maps_buf, maps_buf + used, have - used);
        have -= used;
    }
    close(fd);
}

static void write_report(void)
{
    size_t len = tocsin_crash_format(&report, report_text, sizeof(report_text));
    char path[DIR_MAX + 64], tmp[DIR_MAX + 80];
    out_t o = {path, path + sizeof(path) - 1, false};
    out_str(&o, crash_dir);
    out_str(&o, "/tocsin-crash-");
    out_i64(&o, report.pid);
    out_str(&o, "-");
    out_i64(&o, report.time_us);
    out_str(&o, ".crash");
    *o.p = '\0';
    size_t plen = (size_t)(o.p - path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, report_text + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        done += (size_t)n;
    }
    fsync(fd);
    close(fd);
    if (done == len) {
        rename(tmp, path);
    } else {
        unlink(tmp);
    }
}

void tocsin_crash_write_report(int sig, int code, uint64_t addr, const void *fault_pc)
{
    int saved_errno = errno;
    report.signo = sig;
    report.code = code;
    report.addr = addr;
    report.pid = getpid();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    report.time_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (getrandom(report.event_id, sizeof(report.event_id), GRND_NONBLOCK) !=
        (ssize_t)sizeof(report.event_id)) {
        uint64_t a = (uint64_t)report.time_us, b = (uint64_t)report.pid * 0x9e3779b97f4a7c15ULL;
        memcpy(report.event_id, &a, 8);
        memcpy(report.event_id + 8, &b, 8);
    }
    /* The crashing thread's frames: from the faulting instruction outwards. backtrace() in
     * the handler starts with the handler's own frames and the signal trampoline. */
    void *raw[TOCSIN_FRAMES_MAX + 16];
    int n = backtrace(raw, (int)(sizeof(raw) / sizeof(raw[0])));
    int start = -1;
    for (int i = 0; i < n && fault_pc; i++) {
        if (raw[i] == fault_pc) {
            start = i;
            break;
        }
    }
    report.n_frames = 0;
    if (start < 0 && fault_pc) {
        report.frames[report.n_frames++] = (tocsin_crash_frame_rec_t){.pc = (uintptr_t)fault_pc};
        start = n; /* nothing else we can trust to be the crashing thread's */
    } else if (start < 0) {
        start = 0;
    }
    for (int i = start; i < n && report.n_frames < TOCSIN_FRAMES_MAX; i++) {
        report.frames[report.n_frames++] = (tocsin_crash_frame_rec_t){.pc = (uintptr_t)raw[i]};
    }
    find_mappings(&report);
    write_report();
    errno = saved_errno;
}

static const void *fault_pc_of(const void *ucontext)
{
    const ucontext_t *uc = ucontext;
    if (!uc) {
        return NULL;
    }
#if defined(__x86_64__)
    return (const void *)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (const void *)uc->uc_mcontext.pc;
#else
    return NULL;
#endif
}

static void restore_previous(void)
{
    for (size_t i = 0; i < N_SIGNALS; i++) {
        sigaction(crash_signals[i], &previous[i], NULL);
    }
}

static void on_signal(int sig, siginfo_t *info, void *ucontext)
{
    if (!atomic_flag_test_and_set(&in_handler)) {
        const void *pc = fault_pc_of(ucontext);
        /* SIGABRT and sent signals have no faulting instruction: start at our caller. */
        bool sent = !info || info->si_code <= 0 || sig == SIGABRT;
        tocsin_crash_write_report(sig, info ? info->si_code : 0,
                                  info ? (uint64_t)(uintptr_t)info->si_addr : 0, sent ? NULL : pc);
    }
    /* Chain: the previous handlers take over. A fault happens again when the instruction
     * is retried; a sent signal is sent again (it stays pending until we return). */
    restore_previous();
    bool sent = !info || info->si_code <= 0 || sig == SIGABRT;
    if (sent) {
        raise(sig);
    }
}

/* Alternate signal stacks given to threads (freed when the thread exits). */
static pthread_key_t altstack_key;
static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;

static void altstack_free(void *mem)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == mem) {
        sigaltstack(&ss, NULL);
    }
    free(mem);
}

static void altstack_key_init(void)
{
    pthread_key_create(&altstack_key, altstack_free);
}

int tocsin_crash_thread_init(void)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
        return TOCSIN_OK; /* the thread has one already */
    }
    pthread_once(&altstack_once, altstack_key_init);
    void *mem = malloc(ALTSTACK_BYTES);
    if (!mem) {
        return TOCSIN_ENOMEM;
    }
    stack_t ss = {.ss_sp = mem, .ss_size = ALTSTACK_BYTES, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        free(mem);
        return TOCSIN_EIO;
    }
    pthread_setspecific(altstack_key, mem);
    return TOCSIN_OK;
}

static void copy_field(char *dst, size_t cap, const char *s)
{
    bool cut = false;
    s = s ? s : "";
    size_t n = tocsin_utf8_copy(dst, cap - 1, s, strlen(s), &cut);
    dst[n] = '\0';
}

int tocsin_crash_install(const char *dir, const char *service, const char *environment,
                         const char *release, const char *host)
{
    if (!dir || strlen(dir) > DIR_MAX) {
        return TOCSIN_EINVAL;
    }
    tocsin_stack_warm();
    pthread_mutex_lock(&install_lock);
    /* The handler may read these at any moment; a torn identity is the worst outcome. */
    copy_field(crash_dir, sizeof(crash_dir), dir);
    copy_field(report.service, sizeof(report.service), service);
    copy_field(report.environment, sizeof(report.environment), environment);
    copy_field(report.release, sizeof(report.release), release);
    copy_field(report.host, sizeof(report.host), host);
    int rc = TOCSIN_OK;
    if (install_count == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < N_SIGNALS && rc == 0; i++) {
            if (sigaction(crash_signals[i], &sa, &previous[i]) != 0) {
                for (size_t k = 0; k < i; k++) {
                    sigaction(crash_signals[k], &previous[k], NULL);
                }
                rc = TOCSIN_EIO;
            }
        }
    }
    if (rc == 0) {
        install_count++;
    }
    pthread_mutex_unlock(&install_lock);
    if (rc == 0) {
        tocsin_crash_thread_init(); /* best effort: without it a stack overflow is not caught */
    }
    return rc;
}

void tocsin_crash_uninstall(void)
{
    pthread_mutex_lock(&install_lock);
    if (install_count > 0 && --install_count == 0) {
        for (size_t i = 0; i < N_SIGNALS; i++) {
            struct sigaction cur;
            if (sigaction(crash_signals[i], NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
                cur.sa_sigaction == on_signal) {
                sigaction(crash_signals[i], &previous[i], NULL);
            }
        }
    }
    pthread_mutex_unlock(&install_lock);
}
