/* Blocking reads and writes of sync streaming handlers as CPython builtins
 * (see stream_io.c).  build.py reads the cdef from this file. */
#ifndef PGF_PYSRC_STREAM_IO_H
#define PGF_PYSRC_STREAM_IO_H

#include "pygrpc_ffi.h"

/* Once per process, after _pgf_unary_setup: puts the builtins read_message,
 * write_message, read_message_async, write_message_async and set_resolver
 * into namespace (a dict, borrowed).  PGF_OK, or
 * PGF_ENOMEM. */
static int _pgf_stream_io_install(void *namespace);

#endif
