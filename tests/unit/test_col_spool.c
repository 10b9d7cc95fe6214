/*
 * Unit tests for collector/col_spool on real LMDB files: appends in order, reads from a key,
 * deletions (in any order, missing ones ignored), the byte bound keeping order, figures kept
 * across a reopen, and keys continuing after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "col_spool.h"
#include "tc_error.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_col_spool.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void read_expect(col_spool_t *s, uint64_t from, uint64_t key, const char *value)
{
    uint64_t k = 0;
    uint8_t *v = NULL;
    size_t len = 0;
    assert_int_equal(col_spool_read(s, from, &k, &v, &len), 0);
    assert_int_equal(k, key);
    assert_int_equal(len, strlen(value));
    assert_memory_equal(v, value, len);
    free(v);
}

static void test_append_read_delete(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof(path), "%s/a", dir);
    int err = -1;
    col_spool_t *s = col_spool_open(path, 1 << 20, &err);
    assert_non_null(s);
    assert_int_equal(err, 0);
    assert_int_equal(col_spool_entries(s), 0);
    uint64_t k;
    uint8_t *v;
    size_t len;
    assert_int_equal(col_spool_read(s, 0, &k, &v, &len), TC_ENOTFOUND);

    const uint8_t *vals[3] = {(const uint8_t *)"first", (const uint8_t *)"second",
                              (const uint8_t *)"third"};
    size_t lens[3] = {5, 6, 5};
    uint64_t keys[3];
    size_t n = 0;
    assert_int_equal(col_spool_commit(s, NULL, 0, NULL, 0, vals, lens, 3, &n, keys), 0);
    assert_int_equal(n, 3);
    assert_true(keys[0] < keys[1] && keys[1] < keys[2]);
    assert_int_equal(col_spool_entries(s), 3);
    assert_int_equal(col_spool_bytes(s), 16);
    assert_true(col_spool_file_bytes(s) > 0);
    read_expect(s, 0, keys[0], "first");
    read_expect(s, keys[0] + 1, keys[1], "second");
    read_expect(s, keys[2], keys[2], "third");
    assert_int_equal(col_spool_read(s, keys[2] + 1, &k, &v, &len), TC_ENOTFOUND);

    /* Delete the middle one and a key that is not there, append one more, in one commit. */
    uint64_t del[2] = {keys[1], 999999};
    const uint8_t *more[1] = {(const uint8_t *)"fourth"};
    size_t more_len[1] = {6};
    uint64_t key4;
    assert_int_equal(col_spool_commit(s, del, 2, NULL, 0, more, more_len, 1, &n, &key4), 0);
    assert_int_equal(n, 1);
    assert_true(key4 > keys[2]);
    assert_int_equal(col_spool_entries(s), 3);
    assert_int_equal(col_spool_bytes(s), 16);
    read_expect(s, keys[0] + 1, keys[2], "third");
    /* Nothing to do is fine. */
    assert_int_equal(col_spool_commit(s, NULL, 0, NULL, 0, NULL, NULL, 0, &n, NULL), 0);
    col_spool_close(&s);
    col_spool_close(&s);

    /* Reopened: the same entries and bytes, and new keys after the old ones. */
    s = col_spool_open(path, 1 << 20, &err);
    assert_non_null(s);
    assert_int_equal(col_spool_entries(s), 3);
    assert_int_equal(col_spool_bytes(s), 16);
    read_expect(s, 0, keys[0], "first");
    uint64_t key5;
    assert_int_equal(col_spool_commit(s, NULL, 0, NULL, 0, more, more_len, 1, &n, &key5), 0);
    assert_true(key5 > key4);
    uint64_t all[4] = {keys[0], keys[2], key4, key5};
    assert_int_equal(col_spool_commit(s, all, 4, NULL, 0, NULL, NULL, 0, &n, NULL), 0);
    assert_int_equal(col_spool_entries(s), 0);
    assert_int_equal(col_spool_bytes(s), 0);
    col_spool_close(&s);
}

static void test_bound_keeps_order(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof(path), "%s/b", dir);
    int err;
    uint64_t max = 1 << 20;
    col_spool_t *s = col_spool_open(path, max, &err);
    assert_non_null(s);
    size_t big = 300 * 1024;
    uint8_t *buf = malloc(big);
    memset(buf, 7, big);
    const uint8_t *vals[5] = {buf, buf, buf, (const uint8_t *)"tiny", buf};
    size_t lens[5] = {big, big, big, 4, big};
    size_t n = 0;
    /* Three fit (900 KiB of 1 MiB); the fourth (300 KiB) does not, so neither does the small
     * one after it: the order is kept, the caller refuses the rest. */
    assert_int_equal(col_spool_commit(s, NULL, 0, NULL, 0, vals + 0, lens + 0, 2, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(col_spool_commit(s, NULL, 0, NULL, 0, vals + 1, lens + 1, 4, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(col_spool_bytes(s), 3 * big);
    assert_true(col_spool_bytes(s) <= col_spool_max_bytes(s));
    /* Deleting in the same commit makes the room first. */
    uint64_t first = 0;
    uint8_t *v;
    size_t len;
    assert_int_equal(col_spool_read(s, 0, &first, &v, &len), 0);
    free(v);
    assert_int_equal(col_spool_commit(s, &first, 1, NULL, 0, vals + 3, lens + 3, 2, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(col_spool_bytes(s), 3 * big + 4);
    free(buf);
    col_spool_close(&s);
    /* A bound of 0 is refused; so is a path that cannot be a directory. */
    assert_null(col_spool_open(path, 0, &err));
    assert_int_equal(err, TC_EINVAL);
    assert_null(col_spool_open("/proc/version/spool", max, &err));
    assert_int_not_equal(err, 0);
}

/* Entries Kafka will never take move to the dead entries: out of the replay, still on disk
 * and counted against the bound, across a reopen. */
static void test_dead_entries(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof(path), "%s/c", dir);
    int err;
    col_spool_t *s = col_spool_open(path, 1 << 20, &err);
    assert_non_null(s);
    const uint8_t *vals[3] = {(const uint8_t *)"aaaa", (const uint8_t *)"bbbbbb",
                              (const uint8_t *)"cc"};
    size_t lens[3] = {4, 6, 2};
    uint64_t keys[3];
    size_t n;
    assert_int_equal(col_spool_commit(s, NULL, 0, NULL, 0, vals, lens, 3, &n, keys), 0);
    uint64_t dead[2] = {keys[1], 424242}; /* the second one is not there: ignored */
    assert_int_equal(col_spool_commit(s, NULL, 0, dead, 2, NULL, NULL, 0, &n, NULL), 0);
    assert_int_equal(col_spool_entries(s), 2);
    assert_int_equal(col_spool_dead_entries(s), 1);
    assert_int_equal(col_spool_bytes(s), 12);
    read_expect(s, keys[0] + 1, keys[2], "cc"); /* the replay passes it by */
    col_spool_close(&s);
    s = col_spool_open(path, 1 << 20, &err);
    assert_non_null(s);
    assert_int_equal(col_spool_entries(s), 2);
    assert_int_equal(col_spool_dead_entries(s), 1);
    assert_int_equal(col_spool_bytes(s), 12);
    col_spool_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_delete),
        cmocka_unit_test(test_bound_keeps_order),
        cmocka_unit_test(test_dead_entries),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
