/*
 * Fuzz target tocsin_crash: the two decoders of libtocsin that read bytes it did not write
 * in this process — a crash report file (tocsin_crash_parse; the next tocsin_new reads
 * whatever is in crash_dir) and a collector's Ack (tocsin_ack_decode). Checked:
 *   - a report that parses has a service, a signal, at most TOCSIN_FRAMES_MAX frames and
 *     NUL-terminated fields; formatting it and parsing the result gives the same report;
 *   - an Ack that decodes has a known status and a NUL-terminated reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tocsin_batch.h"
#include "tocsin_crash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static tocsin_crash_t a, b;
static char text[TOCSIN_FRAMES_MAX * 600 + 8192];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (tocsin_crash_parse((const char *)data, size, &a) == 0) {
        CHECK(a.service[0] != '\0' && a.signo > 0);
        CHECK(a.n_frames <= TOCSIN_FRAMES_MAX);
        CHECK(memchr(a.service, 0, sizeof(a.service)) && memchr(a.host, 0, sizeof(a.host)));
        for (size_t i = 0; i < a.n_frames; i++) {
            CHECK(memchr(a.frames[i].path, 0, sizeof(a.frames[i].path)));
        }
        size_t n = tocsin_crash_format(&a, text, sizeof(text));
        CHECK(tocsin_crash_parse(text, n, &b) == 0);
        CHECK(b.complete);
        CHECK(strcmp(a.service, b.service) == 0 && strcmp(a.environment, b.environment) == 0);
        CHECK(strcmp(a.release, b.release) == 0 && strcmp(a.host, b.host) == 0);
        CHECK(a.signo == b.signo && a.code == b.code && a.addr == b.addr && a.pid == b.pid);
        CHECK(a.time_us == b.time_us && memcmp(a.event_id, b.event_id, 16) == 0);
        CHECK(a.n_frames == b.n_frames);
        for (size_t i = 0; i < a.n_frames; i++) {
            CHECK(a.frames[i].pc == b.frames[i].pc && a.frames[i].inode == b.frames[i].inode);
            CHECK(strcmp(a.frames[i].path, b.frames[i].path) == 0);
        }
    }
    tocsin_ack_t ack;
    if (tocsin_ack_decode(data, size, &ack) == 0) {
        CHECK(ack.status >= TOCSIN_ACK_STORED && ack.status <= TOCSIN_ACK_REJECTED);
        CHECK(memchr(ack.reason, 0, sizeof(ack.reason)));
    }
    return 0;
}
