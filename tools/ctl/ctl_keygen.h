/*
 * ctl_keygen.h — `tocsinctl keygen`: a CURVE key pair in czmq's certificate format
 * (zcert), the files czmq's zauth reads from a certificate directory.
 */
#ifndef CTL_KEYGEN_H
#define CTL_KEYGEN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Writes DIR/NAME.key (public certificate) and DIR/NAME.key_secret (secret certificate,
 * mode 0600), creating DIR (0750) when missing. NAME is 1 to 64 of [A-Za-z0-9._-] and does
 * not start with '.'. Without `force`, existing files are kept and TC_EEXIST returned.
 * On success `public_z85` (41 bytes) holds the public key in Z85. Returns 0, TC_EINVAL,
 * TC_EEXIST, TC_EIO or TC_ENOMEM, with `err` filled.
 */
int ctl_keygen(const char *dir, const char *name, bool force, char public_z85[41], char *err,
               size_t errlen);

#endif
