#include "tc_error.h"

const char *tc_strerror(int err)
{
    switch (err) {
    case TC_OK: return "success";
    case TC_EINVAL: return "invalid argument";
    case TC_ENOMEM: return "out of memory";
    case TC_EIO: return "input/output error";
    case TC_ENOTFOUND: return "not found";
    case TC_ETOOBIG: return "size above limit";
    case TC_EPARSE: return "parse error";
    case TC_ETIMEDOUT: return "timed out";
    case TC_EFULL: return "full";
    case TC_EAGAIN: return "try again";
    case TC_EUNAVAIL: return "dependency unavailable";
    case TC_ESTATE: return "not allowed in current state";
    case TC_EEXIST: return "already exists";
    case TC_EKAFKA: return "kafka error";
    case TC_ELMDB: return "lmdb error";
    case TC_EZMQ: return "zeromq error";
    case TC_EHTTP: return "http error";
    case TC_EUTF8: return "invalid utf-8";
    case TC_EUNKNOWNKEY: return "unknown configuration key";
    default: return "unknown error";
    }
}
