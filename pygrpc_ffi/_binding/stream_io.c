/* Blocking reads and writes of sync streaming handlers, as CPython builtins
 * compiled into the cffi module: one call per message from Python, the GIL
 * released while the host delivers, and no cffi objects made per message.
 *
 *   read_message(call_address) -> memoryview | int
 *       The next request message as a read-only view that owns it (the
 *       exporter of unary.c), or the pgf_call_read_wait code that ended the
 *       read (PGF_EOF, PGF_ECANCELLED, ...).
 *   write_message(call_address, payload) -> int
 *       Writes one response message (any object with the buffer protocol)
 *       and waits until the host completed it; the pgf_call_write_wait code.
 *       The bytes stay exported until the host is done with them (lent up
 *       to 1 KiB, owned with a release callback beyond).
 *
 * The address is the handler's pgf_call, which the caller keeps referenced.
 * Included by cffi's set_source after unary.c (build.py). */
#include "stream_io.h"

#include <stdlib.h>

static PyObject *stream_read_message(PyObject *self, PyObject *arg) {
    (void)self;
    pgf_call *call = call_at_address(arg);
    if (call == NULL)
        return NULL;
    pgf_message *msg = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pgf_call_read_wait(call, &msg);
    Py_END_ALLOW_THREADS
    if (rc != PGF_OK)
        return PyLong_FromLong(rc);
    return message_view(msg);
}

/* Small messages are lent (the host copies them as it takes them); larger
 * ones are handed over with a release callback, so that a write the
 * transport holds (a client that stopped reading) never pins the
 * handler: a cancel completes it at once, the host releases later. */
enum { LEND_AT_MOST = 1024 };

typedef struct {
    Py_buffer view;
} owned_payload;

static void release_owned(void *ctx) {
    owned_payload *owned = ctx;
    if (Py_IsInitialized()) {
        PyGILState_STATE gil = PyGILState_Ensure();
        PyBuffer_Release(&owned->view);
        PyGILState_Release(gil);
    }
    free(owned);
}

static PyObject *write_owned(pgf_call *call, PyObject *payload) {
    owned_payload *owned = malloc(sizeof(*owned));
    if (owned == NULL)
        return PyErr_NoMemory();
    if (PyObject_GetBuffer(payload, &owned->view, PyBUF_SIMPLE) != 0) {
        free(owned);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pgf_call_write_wait(call, (const uint8_t *)owned->view.buf,
                             (size_t)owned->view.len, release_owned, owned);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(rc);
}

static PyObject *stream_write_message(PyObject *self, PyObject *const *args,
                                      Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write_message(call_address, payload)");
        return NULL;
    }
    pgf_call *call = call_at_address(args[0]);
    if (call == NULL)
        return NULL;
    if ((size_t)PyObject_Length(args[1]) > LEND_AT_MOST) {
        PyErr_Clear();
        return write_owned(call, args[1]);
    }
    PyErr_Clear();
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) != 0)
        return NULL;
    if ((size_t)view.len > LEND_AT_MOST) {  /* its len() was not its size */
        PyBuffer_Release(&view);
        return write_owned(call, args[1]);
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pgf_call_write_wait(call, (const uint8_t *)view.buf, (size_t)view.len,
                             NULL, NULL);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromLong(rc);
}

static PyMethodDef stream_io_methods[] = {
    {"read_message", stream_read_message, METH_O,
     "The next request message (a view that owns it), or the code that ended "
     "the read."},
    {"write_message", (PyCFunction)(void (*)(void))stream_write_message,
     METH_FASTCALL, "Writes one response message and waits for the host; the "
     "pgf_call_write_wait code."},
    {NULL, NULL, 0, NULL},
};

static int _pgf_stream_io_install(void *namespace) {
    return install_methods(namespace, stream_io_methods);
}
