/*
 * tocsin_stack.c — capture (calling thread) and symbolisation (background thread).
 *
 * Symbolisation uses libdw's Dwfl: for this process, the modules listed in
 * /proc/self/maps (reported again when an address falls outside every known module, as a
 * library loaded later would); for a crash report, each module file opened on its own and
 * placed at the load bias the crashed process had. Function names come from the symbol
 * tables (static functions too), file and line from DWARF when the module has it (or its
 * separate debug file in /usr/lib/debug).
 */
#include "tocsin_stack.h"

#include "tocsin_record.h"

#include <assert.h>
#include <elfutils/libdwfl.h>
#include <execinfo.h>
#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Frames of libtocsin itself a capture may start inside, at most, plus room for skips. */
#define CAPTURE_EXTRA 32
#define CACHE_SIZE 256 /* symbolised addresses kept (direct-mapped) */
#define REPORT_MIN_INTERVAL_S 1

void tocsin_stack_warm(void)
{
    void *pcs[4];
    (void)backtrace(pcs, 4);
}

size_t tocsin_stack_capture(uint64_t *pcs, size_t max, const void *caller, uint32_t skip,
                            uint32_t fallback_skip, bool *truncated)
{
    void *raw[TOCSIN_FRAMES_MAX + CAPTURE_EXTRA];
    size_t want = max + CAPTURE_EXTRA;
    if (want > sizeof(raw) / sizeof(raw[0])) {
        want = sizeof(raw) / sizeof(raw[0]);
    }
    int n = backtrace(raw, (int)want);
    size_t start = fallback_skip;
    for (int i = 0; i < n; i++) {
        if (raw[i] == caller) {
            start = (size_t)i;
            break;
        }
    }
    start += skip;
    size_t got = 0;
    for (size_t i = start; i < (size_t)(n > 0 ? n : 0) && got < max; i++) {
        pcs[got++] = (uint64_t)(uintptr_t)raw[i];
    }
    *truncated = (size_t)n == want && got == max;
    return got;
}

/* ---------------------------------------------------------------------------------- */
/* In-app rules. */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Whether `name` starts with one of the comma-separated prefixes in `list`. */
static bool matches_prefix(const char *name, const char *list)
{
    const char *p = list;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && (*p == ' ')) {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ') {
            n--;
        }
        if (n > 0 && strncmp(name, p, n) == 0) {
            return true;
        }
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static bool is_system_path(const char *path)
{
    static const char *const dirs[] = {"/lib/",       "/lib64/",         "/usr/lib/",
                                       "/usr/lib64/", "/usr/local/lib/", "/usr/libexec/"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        if (strncmp(path, dirs[i], strlen(dirs[i])) == 0) {
            return true;
        }
    }
    return false;
}

bool tocsin_stack_in_app(const char *path, bool is_main, const char *include, const char *exclude)
{
    if (!path || !path[0]) {
        return false;
    }
    const char *name = base_name(path);
    if (strncmp(name, "libtocsin.so", 12) == 0) {
        return false;
    }
    if (exclude && matches_prefix(name, exclude)) {
        return false;
    }
    if (include) {
        return matches_prefix(name, include);
    }
    return is_main || !is_system_path(path);
}

/* ---------------------------------------------------------------------------------- */
/* Symbolisation. */

typedef struct {
    uint64_t pc;
    bool used;
    bool in_app;
    uint32_t line;
    char function[TOCSIN_NAME_MAX + 1];
    char module[TOCSIN_NAME_MAX + 1];
    char file[TOCSIN_NAME_MAX + 1];
} cache_entry_t;

struct tocsin_symbolizer {
    char *include;
    char *exclude;
    char exe[PATH_MAX]; /* /proc/self/exe, resolved */
    Dwfl *self_dwfl;
    time_t reported_at;
    cache_entry_t *cache; /* CACHE_SIZE entries, allocated on first use */
};

static char *debuginfo_path;

static const Dwfl_Callbacks proc_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .debuginfo_path = &debuginfo_path,
};

static const Dwfl_Callbacks file_callbacks = {
    .find_elf = NULL,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

tocsin_symbolizer_t *tocsin_symbolizer_new(const char *in_app_include, const char *in_app_exclude)
{
    tocsin_symbolizer_t *self = calloc(1, sizeof(*self));
    if (!self) {
        return NULL;
    }
    self->include = in_app_include ? strdup(in_app_include) : NULL;
    self->exclude = in_app_exclude ? strdup(in_app_exclude) : NULL;
    if ((in_app_include && !self->include) || (in_app_exclude && !self->exclude)) {
        tocsin_symbolizer_destroy(&self);
        return NULL;
    }
    elf_version(EV_CURRENT);
    ssize_t n = readlink("/proc/self/exe", self->exe, sizeof(self->exe) - 1);
    self->exe[n > 0 ? n : 0] = '\0';
    return self;
}

void tocsin_symbolizer_destroy(tocsin_symbolizer_t **self_p)
{
    assert(self_p);
    tocsin_symbolizer_t *self = *self_p;
    if (self) {
        if (self->self_dwfl) {
            dwfl_end(self->self_dwfl);
        }
        free(self->cache);
        free(self->include);
        free(self->exclude);
        free(self);
        *self_p = NULL;
    }
}

/* (Re)reads this process's module list, at most once a second. */
static void report_self(tocsin_symbolizer_t *self)
{
    time_t now = time(NULL);
    if (self->self_dwfl && now - self->reported_at < REPORT_MIN_INTERVAL_S) {
        return;
    }
    self->reported_at = now;
    if (!self->self_dwfl) {
        self->self_dwfl = dwfl_begin(&proc_callbacks);
        if (!self->self_dwfl) {
            return;
        }
    }
    dwfl_report_begin(self->self_dwfl);
    dwfl_linux_proc_report(self->self_dwfl, getpid());
    dwfl_report_end(self->self_dwfl, NULL, NULL);
}

/* Copies at most TOCSIN_NAME_MAX bytes of s (whole characters) into a cache field. */
static void put_name(char *dst, const char *s)
{
    bool cut = false;
    s = s ? s : "";
    size_t n = tocsin_utf8_copy(dst, TOCSIN_NAME_MAX, s, strlen(s), &cut);
    dst[n] = '\0';
}

/* Looks up `addr` (a call site or a faulting instruction) in `mod` into entry e. */
static void lookup(Dwfl_Module *mod, Dwarf_Addr addr, cache_entry_t *e)
{
    GElf_Off off;
    GElf_Sym sym;
    const char *fn = dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL, NULL);
    put_name(e->function, fn);
    Dwfl_Line *line = dwfl_module_getsrc(mod, addr);
    int lineno = 0;
    const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
    put_name(e->file, file);
    e->line = lineno > 0 ? (uint32_t)lineno : 0;
}

/* Puts a frame made from cache entry e into ev (strings into the arena). */
static void push_frame(tocsin_event_t *ev, const cache_entry_t *e, uint64_t addr)
{
    tocsin_frame_t *f = &ev->frames[ev->n_frames];
    const char *fn = tocsin_event_strdup(ev, e->function, strlen(e->function));
    const char *mod = tocsin_event_strdup(ev, e->module, strlen(e->module));
    const char *file = tocsin_event_strdup(ev, e->file, strlen(e->file));
    *f = (tocsin_frame_t){
        .function = fn ? fn : "",
        .module = mod ? mod : "",
        .file = file ? file : "",
        .line = e->line,
        .in_app = e->in_app,
        .instruction_addr = addr,
    };
    ev->n_frames++;
}

void tocsin_symbolize_live(tocsin_symbolizer_t *self, tocsin_event_t *ev)
{
    assert(self && ev);
    if (!self->cache) {
        self->cache = calloc(CACHE_SIZE, sizeof(*self->cache));
    }
    for (size_t i = 0; i < ev->n_pcs && ev->n_frames < TOCSIN_FRAMES_MAX; i++) {
        uint64_t pc = ev->pcs[i];
        cache_entry_t local, *e = &local;
        if (self->cache) {
            e = &self->cache[(pc >> 2) % CACHE_SIZE];
        }
        if (!e->used || e->pc != pc) {
            memset(e, 0, sizeof(*e));
            e->pc = pc;
            e->used = true;
            if (!self->self_dwfl) {
                report_self(self);
            }
            /* A return address: the call is the instruction before it. */
            Dwarf_Addr addr = pc > 0 ? pc - 1 : 0;
            Dwfl_Module *mod = self->self_dwfl ? dwfl_addrmodule(self->self_dwfl, addr) : NULL;
            if (!mod) {
                report_self(self);
                mod = self->self_dwfl ? dwfl_addrmodule(self->self_dwfl, addr) : NULL;
            }
            if (mod) {
                const char *path = NULL;
                const char *name = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, &path, NULL);
                const char *where = path ? path : (name ? name : "");
                put_name(e->module, base_name(where));
                e->in_app = tocsin_stack_in_app(where, strcmp(where, self->exe) == 0, self->include,
                                                self->exclude);
                lookup(mod, addr, e);
            }
        }
        push_frame(ev, e, pc);
    }
}

/* Whether an ELF file is a program (it names a program interpreter) rather than a library. */
static bool has_interp(Elf *elf)
{
    size_t n = 0;
    if (elf_getphdrnum(elf, &n) != 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_INTERP) {
            return true;
        }
    }
    return false;
}

/* The load bias a module had in the crashed process: the address of its vaddr 0. */
static bool crash_bias(Elf *elf, const tocsin_crash_frame_t *cf, GElf_Addr *bias, GElf_Addr *vaddr)
{
    size_t n = 0;
    if (elf_getphdrnum(elf, &n) != 0) {
        return false;
    }
    uint64_t off = cf->pc - cf->map_start + cf->map_offset; /* file offset of pc */
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD) {
            continue;
        }
        if (off >= ph.p_offset && off < ph.p_offset + ph.p_filesz) {
            *vaddr = off - ph.p_offset + ph.p_vaddr;
            *bias = cf->pc - *vaddr;
            return true;
        }
    }
    return false;
}

void tocsin_symbolize_crash(tocsin_symbolizer_t *self, tocsin_event_t *ev)
{
    assert(self && ev);
    for (size_t i = 0; i < ev->n_crash_frames && ev->n_frames < TOCSIN_FRAMES_MAX; i++) {
        const tocsin_crash_frame_t *cf = &ev->crash_frames[i];
        cache_entry_t e = {.pc = cf->pc};
        uint64_t addr = cf->pc;
        put_name(e.module, base_name(cf->path));
        struct stat st;
        bool same =
            cf->path[0] == '/' && stat(cf->path, &st) == 0 && (uint64_t)st.st_ino == cf->inode;
        int fd = same ? open(cf->path, O_RDONLY | O_CLOEXEC) : -1;
        Elf *elf = fd >= 0 ? elf_begin(fd, ELF_C_READ, NULL) : NULL;
        GElf_Addr bias = 0, vaddr = 0;
        if (elf && crash_bias(elf, cf, &bias, &vaddr)) {
            GElf_Ehdr eh;
            bool is_exec = gelf_getehdr(elf, &eh) && eh.e_type == ET_EXEC;
            addr = vaddr; /* without symbols, the module-relative address helps addr2line */
            Dwfl *dwfl = dwfl_begin(&file_callbacks);
            Dwfl_Module *mod = NULL;
            if (dwfl) {
                /* An ET_DYN module is placed at its bias plus its p_vaddrs, as it was. */
                mod = dwfl_report_elf(dwfl, e.module, cf->path, -1, is_exec ? 0 : bias, true);
                dwfl_report_end(dwfl, NULL, NULL);
            }
            if (mod) {
                /* Frame 0 is the faulting instruction itself; the others return addresses. */
                GElf_Addr at = is_exec ? vaddr : cf->pc;
                lookup(mod, i == 0 ? at : at - 1, &e);
            }
            if (dwfl) {
                dwfl_end(dwfl);
            }
            e.in_app = tocsin_stack_in_app(cf->path, is_exec || has_interp(elf), self->include,
                                           self->exclude);
        } else {
            e.in_app = tocsin_stack_in_app(cf->path, false, self->include, self->exclude);
        }
        if (elf) {
            elf_end(elf);
        }
        if (fd >= 0) {
            close(fd);
        }
        push_frame(ev, &e, addr);
    }
}
