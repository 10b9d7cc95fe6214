/*
 * tc_error.h — error codes shared by every Tocsin component.
 *
 * Functions that can fail return 0 on success or one of the negative TC_E* codes below;
 * constructors return NULL instead. tc_strerror() names a code for logs and replies.
 */
#ifndef TC_ERROR_H
#define TC_ERROR_H

enum {
    TC_OK = 0,
    TC_EINVAL = -1,     /* an argument or a value read from outside is invalid */
    TC_ENOMEM = -2,     /* an allocation failed */
    TC_EIO = -3,        /* a system call on a file or socket failed; errno says more */
    TC_ENOTFOUND = -4,  /* the thing asked for does not exist */
    TC_ETOOBIG = -5,    /* a size read from outside is above its limit */
    TC_EPARSE = -6,     /* a file, a protobuf or a JSON document could not be parsed */
    TC_ETIMEDOUT = -7,  /* a deadline passed */
    TC_EFULL = -8,      /* a bounded queue, spool or map is full */
    TC_EAGAIN = -9,     /* try again later */
    TC_EUNAVAIL = -10,  /* a dependency (Kafka, a receiver) is unreachable */
    TC_ESTATE = -11,    /* the call is not allowed in the object's current state */
    TC_EEXIST = -12,    /* the thing already exists */
    TC_EKAFKA = -13,    /* librdkafka reported an error */
    TC_ELMDB = -14,     /* LMDB reported an error */
    TC_EZMQ = -15,      /* ZeroMQ reported an error */
    TC_EHTTP = -16,     /* an HTTP exchange failed */
    TC_EUTF8 = -17,     /* a string is not valid UTF-8 */
    TC_EUNKNOWNKEY = -18, /* a configuration key is not in the daemon's table */
};

/* Returns a static, human-readable name for `err` (a TC_E* code). Never NULL. */
const char *tc_strerror(int err);

#endif
