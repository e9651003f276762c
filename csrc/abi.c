/* The library's versions and the texts of its error codes. */
#include "internal.h"

int pgf_abi_version(void) { return PGF_ABI_VERSION; }

unsigned pgf_version_number(void) { return PGF_VERSION_NUMBER; }

const char *pgf_strerror(int rc) {
    switch (rc) {
    case PGF_OK: return "ok";
    case PGF_EINVAL: return "invalid argument";
    case PGF_ENOMEM: return "out of memory";
    case PGF_EEXIST: return "already registered";
    case PGF_ENOTFOUND: return "not registered";
    case PGF_EMETADATA: return "invalid metadata";
    case PGF_ESTATE: return "not allowed in the current state";
    case PGF_EPYTHON: return "python error";
    case PGF_EOF: return "end of stream";
    case PGF_ECANCELLED: return "cancelled";
    case PGF_EWOULDBLOCK: return "the handler may block";
    case PGF_EVERSION: return "written by another version of the library";
    default: return "unknown error";
    }
}
