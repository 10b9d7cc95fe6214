/*
 * ctl_keygen.c — CURVE key pairs through czmq's zcert, so the files are exactly what
 * zauth's certificate directory and zcert_load expect: a ZPL text file with a `curve`
 * section holding `public-key` (and `secret-key` in the _secret file), both Z85.
 */
#include "ctl_keygen.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tc_error.h"
#include "tc_util.h"

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

int ctl_keygen(const char *dir, const char *name, bool force, char public_z85[41], char *err,
               size_t errlen)
{
    if (!name_ok(name)) {
        snprintf(err, errlen,
                 "key name \"%s\": use 1 to 64 letters, digits, '.', '_' or '-' (not starting "
                 "with '.')",
                 name);
        return TC_EINVAL;
    }
    if (tc_mkdir_p(dir) != 0) {
        snprintf(err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
        return TC_EIO;
    }
    char pub[4096], sec[4200];
    if ((size_t)snprintf(pub, sizeof(pub), "%s/%s.key", dir, name) >= sizeof(pub)) {
        snprintf(err, errlen, "directory path too long");
        return TC_EINVAL;
    }
    snprintf(sec, sizeof(sec), "%s_secret", pub);
    if (!force && (access(pub, F_OK) == 0 || access(sec, F_OK) == 0)) {
        snprintf(err, errlen, "%s or its _secret file exists; use --force to replace them", pub);
        return TC_EEXIST;
    }
    zcert_t *cert = zcert_new();
    if (!cert) {
        snprintf(err, errlen, "cannot make a key pair (out of memory or no CURVE support)");
        return TC_ENOMEM;
    }
    zcert_set_meta(cert, "name", "%s", name);
    zcert_set_meta(cert, "created-by", "tocsinctl keygen %s", TOCSIN_VERSION);
    /* zcert_save writes the secret file with the process umask; make it private first. */
    mode_t old = umask(077);
    int rc = zcert_save(cert, pub);
    umask(old);
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s: %s", pub, strerror(errno));
        zcert_destroy(&cert);
        return TC_EIO;
    }
    if (chmod(sec, 0600) != 0 || chmod(pub, 0644) != 0) {
        snprintf(err, errlen, "cannot set the mode of %s: %s", sec, strerror(errno));
        zcert_destroy(&cert);
        return TC_EIO;
    }
    tc_strlcpy(public_z85, zcert_public_txt(cert), 41);
    zcert_destroy(&cert);
    return 0;
}
