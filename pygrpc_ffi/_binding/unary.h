/* The unary fast path of pygrpc_ffi._native (see unary.c): what Python and
 * the registry call.  build.py reads the cdef from this file. */
#ifndef PGF_PYSRC_UNARY_H
#define PGF_PYSRC_UNARY_H

#include <Python.h>

#include "pygrpc_ffi.h"

/* Once per process, before any other function here: keeps runner (a new
 * reference), the callable that runs a unary handler, run_unary(binding,
 * call address, payload) -> bytes to answer with, or None once it answered
 * itself.  PGF_OK or PGF_ENOMEM. */
static int _pgf_unary_setup(void *runner);

/* OWNED: handler data for pgf_registry_register*: handle is the cffi handle
 * of a Binding, binding the Binding object itself (borrowed: the handle keeps
 * it).  Release with _pgf_unary_release, which also gives the handle back.
 * NULL on allocation failure. */
static void *_pgf_unary_binding_new(void *handle, void *binding);
static void _pgf_unary_release(void *handler_data);

/* The pgf_handler_fn of unary Python registrations; any thread, without the
 * GIL.  The call is finished when it returns, or owned by Python (async). */
static void _pgf_unary_handle(void *handler_data, pgf_call *call);

/* Once per process: puts the builtin add_text_metadata into namespace (a
 * dict, borrowed).  PGF_OK or PGF_ENOMEM. */
static int _pgf_unary_install(void *namespace);

#endif
