/*
 * Unit tests for common/tc_lmdb on real LMDB files in a temporary directory: opening,
 * committing writes, growing a full map and retrying, the map limit, aborts, and
 * clearing the reader slot of a dead process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_lmdb.h"
#include "tc_util.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static char root[64];

static int setup_root(void **state)
{
    snprintf(root, sizeof(root), "/tmp/tc_lmdb_test.XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown_root(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void env_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", root, name);
}

/* ---- a write transaction body ---- */

typedef struct {
    const char *db;
    uint64_t first; /* keys first .. first + n - 1, big-endian */
    uint64_t n;
    size_t value_len;
    int runs;      /* how many times the body ran */
    int fail_with; /* return this instead of committing, when not 0 */
} put_job_t;

static int put_many(MDB_txn *txn, void *ctx)
{
    put_job_t *job = ctx;
    job->runs++;
    MDB_dbi dbi;
    int rc = tc_lmdb_dbi(txn, job->db, 0, &dbi);
    if (rc != 0) {
        return rc;
    }
    char *value = malloc(job->value_len);
    if (!value) {
        return TC_ENOMEM;
    }
    for (uint64_t i = 0; i < job->n; i++) {
        uint8_t kb[8];
        tc_be64_put(kb, job->first + i);
        memset(value, (int)('a' + (job->first + i) % 26), job->value_len);
        MDB_val k = {sizeof(kb), kb};
        MDB_val v = {job->value_len, value};
        int mrc = mdb_put(txn, dbi, &k, &v, 0);
        if (mrc != 0) {
            free(value);
            return mrc; /* MDB_MAP_FULL as LMDB gave it, so the map grows */
        }
    }
    free(value);
    return job->fail_with;
}

/* Counts the records of `db` and checks their values; -1 when the db does not exist. */
static long count_records(MDB_env *env, const char *db, size_t value_len)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    MDB_dbi dbi;
    int mrc = mdb_dbi_open(txn, db, 0, &dbi);
    if (mrc == MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return -1;
    }
    assert_int_equal(mrc, 0);
    MDB_cursor *cur;
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    MDB_val k, v;
    long n = 0;
    uint64_t prev = 0;
    for (int op = MDB_FIRST; mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op) == 0; op = MDB_NEXT) {
        assert_int_equal(k.mv_size, 8);
        uint64_t key = tc_be64_get(k.mv_data);
        if (n > 0) {
            assert_true(key > prev); /* big-endian keys sort numerically */
        }
        prev = key;
        assert_int_equal(v.mv_size, value_len);
        assert_int_equal(((char *)v.mv_data)[0], (char)('a' + key % 26));
        n++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return n;
}

/* ---- tests ---- */

static void test_open_and_write(void **state)
{
    char dir[128];
    env_path(dir, sizeof(dir), "basic/nested/env"); /* parents are created */
    MDB_env *env = NULL;
    assert_int_equal(tc_lmdb_open(&env, dir, 16 << 20, 4, 0), 0);
    assert_non_null(env);
    assert_int_equal(tc_lmdb_map_size(env), 16 << 20);

    put_job_t job = {"events", 1, 100, 64, 0, 0};
    assert_int_equal(tc_lmdb_write(env, 0, put_many, &job), 0);
    assert_int_equal(job.runs, 1);
    assert_int_equal(count_records(env, "events", 64), 100);
    assert_true(tc_lmdb_used_bytes(env) > 0);
    assert_true(tc_lmdb_used_bytes(env) <= tc_lmdb_map_size(env));

    /* A body that fails aborts: nothing of it is stored, its code comes back. */
    put_job_t bad = {"events", 1000, 10, 64, 0, TC_EINVAL};
    assert_int_equal(tc_lmdb_write(env, 0, put_many, &bad), TC_EINVAL);
    assert_int_equal(count_records(env, "events", 64), 100);
    put_job_t bad_db = {"other", 1, 10, 64, 0, TC_EPARSE};
    assert_int_equal(tc_lmdb_write(env, 0, put_many, &bad_db), TC_EPARSE);
    assert_int_equal(count_records(env, "other", 64), -1); /* not even the db */

    /* MDB codes other than MAP_FULL (negative, like LMDB's own, or positive errno values)
     * come back as TC_E* codes, never raw. */
    static const struct {
        int mdb, tc;
    } mdb_cases[] = {
        {MDB_BAD_VALSIZE, TC_ELMDB},  {MDB_KEYEXIST, TC_ELMDB}, {MDB_TXN_FULL, TC_ELMDB},
        {MDB_NOTFOUND, TC_ENOTFOUND}, {EIO, TC_ELMDB},
    };
    for (size_t i = 0; i < N_ELEMS(mdb_cases); i++) {
        put_job_t mdb_err = {"events", 2000, 1, 64, 0, mdb_cases[i].mdb};
        assert_int_equal(tc_lmdb_write(env, 0, put_many, &mdb_err), mdb_cases[i].tc);
        assert_int_equal(count_records(env, "events", 64), 100);
    }

    mdb_env_close(env);

    /* Reopening sees the data. */
    env = NULL;
    assert_int_equal(tc_lmdb_open(&env, dir, 16 << 20, 4, 0), 0);
    assert_int_equal(count_records(env, "events", 64), 100);
    mdb_env_close(env);
}

static void test_map_full_grows(void **state)
{
    char dir[128];
    env_path(dir, sizeof(dir), "grow");
    MDB_env *env = NULL;
    const size_t initial = 64 * 1024;
    assert_int_equal(tc_lmdb_open(&env, dir, initial, 2, MDB_NOSYNC), 0);
    size_t before = tc_lmdb_map_size(env);
    assert_true(before >= initial);

    /* About 1 MiB in one transaction: far more than the 64 KiB map. */
    put_job_t job = {"big", 0, 1000, 1000, 0, 0};
    assert_int_equal(tc_lmdb_write(env, 0, put_many, &job), 0);
    assert_true(job.runs > 1);                               /* it ran again after growing */
    assert_true(tc_lmdb_map_size(env) > before);             /* the map grew */
    assert_int_equal(count_records(env, "big", 1000), 1000); /* exactly once each */

    /* Later writes keep working in the grown map. */
    put_job_t more = {"big", 1000, 10, 1000, 0, 0};
    assert_int_equal(tc_lmdb_write(env, 0, put_many, &more), 0);
    assert_int_equal(count_records(env, "big", 1000), 1010);
    mdb_env_close(env);
}

static void test_map_limit(void **state)
{
    char dir[128];
    env_path(dir, sizeof(dir), "limit");
    MDB_env *env = NULL;
    const size_t initial = 64 * 1024, limit = 256 * 1024;
    assert_int_equal(tc_lmdb_open(&env, dir, initial, 2, MDB_NOSYNC), 0);

    /* Fits once grown to the limit. */
    put_job_t small = {"d", 0, 100, 1000, 0, 0};
    assert_int_equal(tc_lmdb_write(env, limit, put_many, &small), 0);
    assert_true(tc_lmdb_map_size(env) <= limit);

    /* Does not fit under the limit: TC_EFULL, nothing of it stored, the map at most the
     * limit, and the environment still usable. */
    put_job_t big = {"d", 1000, 2000, 1000, 0, 0};
    assert_int_equal(tc_lmdb_write(env, limit, put_many, &big), TC_EFULL);
    assert_true(tc_lmdb_map_size(env) <= limit);
    assert_int_equal(count_records(env, "d", 1000), 100);
    put_job_t after = {"d", 100, 5, 1000, 0, 0};
    assert_int_equal(tc_lmdb_write(env, limit, put_many, &after), 0);
    assert_int_equal(count_records(env, "d", 1000), 105);

    /* A limit that is not a multiple of the current size is reached exactly. */
    put_job_t again = {"d", 5000, 2000, 1000, 0, 0};
    const size_t odd_limit = 300 * 1024;
    assert_int_equal(tc_lmdb_write(env, odd_limit, put_many, &again), TC_EFULL);
    assert_int_equal(tc_lmdb_map_size(env), odd_limit);
    mdb_env_close(env);
}

static void test_err_mapping(void **state)
{
    static const struct {
        int mdb, tc;
    } cases[] = {
        {0, 0},
        {MDB_NOTFOUND, TC_ENOTFOUND},
        {MDB_MAP_FULL, TC_EFULL},
        {MDB_KEYEXIST, TC_ELMDB},
        {MDB_CORRUPTED, TC_ELMDB},
        {MDB_TXN_FULL, TC_ELMDB},
        {EINVAL, TC_ELMDB},
    };
    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        assert_int_equal(tc_lmdb_err(cases[i].mdb), cases[i].tc);
    }
}

static void test_open_errors(void **state)
{
    /* A regular file where the directory should be. */
    char file[128];
    env_path(file, sizeof(file), "a-file");
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    MDB_env *env = NULL;
    assert_int_equal(tc_lmdb_open(&env, file, 1 << 20, 1, 0), TC_EIO);
    assert_null(env);

    char sub[160];
    snprintf(sub, sizeof(sub), "%s/sub", file);
    assert_int_equal(tc_lmdb_open(&env, sub, 1 << 20, 1, 0), TC_EIO);
    assert_null(env);

    /* A data file that is not LMDB. */
    char dir[128];
    env_path(dir, sizeof(dir), "garbage");
    assert_int_equal(tc_mkdir_p(dir), 0);
    char data[160];
    snprintf(data, sizeof(data), "%s/data.mdb", dir);
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++) {
        fputc(0x5a, f);
    }
    fclose(f);
    assert_int_equal(tc_lmdb_open(&env, dir, 1 << 20, 1, 0), TC_ELMDB);
    assert_null(env);
}

/* A child process opens the environment, starts a read transaction and dies without
 * ending it; its reader slot stays until tc_lmdb_reader_check clears it. */
static void test_reader_check(void **state)
{
    char dir[128];
    env_path(dir, sizeof(dir), "readers");
    MDB_env *env = NULL;
    assert_int_equal(tc_lmdb_open(&env, dir, 1 << 20, 2, 0), 0);
    put_job_t job = {"r", 0, 10, 16, 0, 0};
    assert_int_equal(tc_lmdb_write(env, 0, put_many, &job), 0);
    assert_int_equal(tc_lmdb_reader_check(env), 0);

    for (int round = 0; round < 2; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* The child uses an environment of its own, never the parent's. */
            MDB_env *cenv;
            MDB_txn *txn;
            if (mdb_env_create(&cenv) != 0 || mdb_env_set_maxdbs(cenv, 2) != 0 ||
                mdb_env_open(cenv, dir, MDB_NOTLS, 0640) != 0 ||
                mdb_txn_begin(cenv, NULL, MDB_RDONLY, &txn) != 0) {
                _exit(1);
            }
            _exit(0); /* dies holding the read transaction */
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(tc_lmdb_reader_check(env), 1);
        assert_int_equal(tc_lmdb_reader_check(env), 0); /* cleared once */
    }
    mdb_env_close(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_write), cmocka_unit_test(test_map_full_grows),
        cmocka_unit_test(test_map_limit),      cmocka_unit_test(test_err_mapping),
        cmocka_unit_test(test_open_errors),    cmocka_unit_test(test_reader_check),
    };
    return cmocka_run_group_tests(tests, setup_root, teardown_root);
}
