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
 *   write_message_async(call_address, payload, loop) -> int | Future
 *       An async handler's write: the code if it ended at once (a small
 *       message the host copied as it took it: no future, no hop), else a
 *       future of `loop` that the completion resolves with the code, through
 *       the function given to set_resolver.
 *   read_message_async(call_address, loop) -> memoryview | int | Future
 *       An async handler's read: the message's view, or the code that ended
 *       the read (PGF_EOF, ...), if the host delivered at once; else a
 *       future of `loop` for either.
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

/* ------------------------------------------ writes of async handlers */

/* An async handler's write: completed inline (the host copied a small
 * message as it took it, on the writer's thread) it costs no future; else
 * the writer awaits a future the completion resolves later, from a host
 * thread, through `late_resolver`.  Whichever of the writer and the
 * completion comes second ends the write (`phase`). */
enum { WRITE_IN_CALL = 0, WRITE_COMPLETED = 1, WRITE_AWAITED = 2 };

typedef struct {
    int phase;          /* atomic: one of the three above */
    int result;         /* the completion's, read after `phase` */
    int lent;           /* view holds the handler's bytes until completion */
    Py_buffer view;
    PyObject *future;   /* WRITE_AWAITED: the writer's, resolved later */
} async_write;

static PyObject *late_resolver;  /* resolver(future, result), set once */

static void async_write_free(async_write *w) {  /* with the GIL */
    if (w->lent)
        PyBuffer_Release(&w->view);
    Py_XDECREF(w->future);
    free(w);
}

static void async_write_done(pgf_call *call, int result, void *user_data) {
    (void)call;
    async_write *w = user_data;
    w->result = result;
    int expected = WRITE_IN_CALL;
    if (__atomic_compare_exchange_n(&w->phase, &expected, WRITE_COMPLETED, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;  /* the writer has not looked yet: it ends the write */
    if (!Py_IsInitialized())
        return;  /* Python is gone: so is everything that waited */
    PyGILState_STATE gil = PyGILState_Ensure();
    if (w->future != NULL && late_resolver != NULL) {
        PyObject *code = PyLong_FromLong(result);
        PyObject *r = code ? PyObject_CallFunctionObjArgs(late_resolver, w->future,
                                                          code, NULL)
                           : NULL;
        if (r == NULL)
            PyErr_WriteUnraisable(late_resolver);
        Py_XDECREF(r);
        Py_XDECREF(code);
    }
    async_write_free(w);
    PyGILState_Release(gil);
}

static PyObject *stream_write_message_async(PyObject *self, PyObject *const *args,
                                            Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "write_message_async(call_address, payload, loop)");
        return NULL;
    }
    pgf_call *call = call_at_address(args[0]);
    if (call == NULL)
        return NULL;
    async_write *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return PyErr_NoMemory();
    if (PyObject_GetBuffer(args[1], &w->view, PyBUF_SIMPLE) != 0) {
        free(w);
        return NULL;
    }
    int rc;
    if ((size_t)w->view.len <= LEND_AT_MOST) {
        /* Lent: the host copies a message this small as it takes it; one it
         * holds (sent later) keeps the view until the completion. */
        w->lent = 1;
        rc = pgf_call_write(call, (const uint8_t *)w->view.buf, (size_t)w->view.len,
                            NULL, NULL, async_write_done, w);
    } else {
        /* Owned, with a release the host runs when it is done with the
         * bytes: a write held by the transport never pins the handler. */
        owned_payload *owned = malloc(sizeof(*owned));
        if (owned == NULL) {
            PyBuffer_Release(&w->view);
            free(w);
            return PyErr_NoMemory();
        }
        owned->view = w->view;  /* the export moves to `owned` */
        rc = pgf_call_write(call, (const uint8_t *)owned->view.buf,
                            (size_t)owned->view.len, release_owned, owned,
                            async_write_done, w);
    }
    if (rc != PGF_OK) {  /* no completion will come; the release ran */
        async_write_free(w);
        return PyLong_FromLong(rc);
    }
    if (__atomic_load_n(&w->phase, __ATOMIC_ACQUIRE) == WRITE_IN_CALL) {
        /* Not completed yet: the future to await, made before the write is
         * handed to its completion (which may run on a host thread now). */
        PyObject *future = PyObject_CallMethod(args[2], "create_future", NULL);
        w->future = future;  /* NULL: the completion only frees the write */
        int expected = WRITE_IN_CALL;
        if (__atomic_compare_exchange_n(&w->phase, &expected, WRITE_AWAITED, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if (future != NULL)
                Py_INCREF(future);  /* one for the caller, one for w */
            return future;
        }
        w->future = NULL;
        Py_XDECREF(future);
        PyErr_Clear();  /* completed meanwhile: no future needed after all */
    }
    rc = w->result;
    async_write_free(w);
    return PyLong_FromLong(rc);
}

/* ------------------------------------------- reads of async handlers */

/* An async handler's read, ended as its writes are: a message the host
 * hands over inside pgf_call_read (one it had received already) costs no
 * future; else the reader awaits a future resolved later, from the thread
 * that delivered, through `late_resolver`. */
typedef struct {
    int phase;          /* atomic: WRITE_IN_CALL, WRITE_COMPLETED, WRITE_AWAITED */
    int result;         /* read after `phase` */
    pgf_message *msg;   /* OWNED, NULL unless result is PGF_OK */
    PyObject *future;
} async_read;

/* NEW: what a read ended with: the message's view (taking msg over), or
 * the code (PGF_EOF, PGF_ECANCELLED, ...); NULL with an exception set. */
static PyObject *read_outcome(int result, pgf_message *msg) {
    if (msg != NULL) {
        if (result == PGF_OK)
            return message_view(msg);
        pgf_message_unref(msg);
    }
    return PyLong_FromLong(result);
}

static void async_read_done(pgf_call *call, int result, pgf_message *msg,
                            void *user_data) {
    (void)call;
    async_read *r = user_data;
    r->result = result;
    r->msg = msg;
    int expected = WRITE_IN_CALL;
    if (__atomic_compare_exchange_n(&r->phase, &expected, WRITE_COMPLETED, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;  /* the reader has not looked yet: it takes the outcome */
    if (!Py_IsInitialized()) {
        pgf_message_unref(msg);
        return;
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *outcome = read_outcome(result, msg);
    if (outcome != NULL && r->future != NULL && late_resolver != NULL) {
        PyObject *ok = PyObject_CallFunctionObjArgs(late_resolver, r->future,
                                                    outcome, NULL);
        if (ok == NULL)
            PyErr_WriteUnraisable(late_resolver);
        Py_XDECREF(ok);
    } else if (outcome == NULL) {
        PyErr_WriteUnraisable(NULL);
    }
    Py_XDECREF(outcome);
    Py_XDECREF(r->future);
    free(r);
    PyGILState_Release(gil);
}

static PyObject *stream_read_message_async(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_message_async(call_address, loop)");
        return NULL;
    }
    pgf_call *call = call_at_address(args[0]);
    if (call == NULL)
        return NULL;
    async_read *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return PyErr_NoMemory();
    int rc = pgf_call_read(call, async_read_done, r);
    if (rc != PGF_OK) {  /* no completion will come */
        free(r);
        return PyLong_FromLong(rc);
    }
    if (__atomic_load_n(&r->phase, __ATOMIC_ACQUIRE) == WRITE_IN_CALL) {
        PyObject *future = PyObject_CallMethod(args[1], "create_future", NULL);
        r->future = future;  /* NULL: the completion only frees the read */
        int expected = WRITE_IN_CALL;
        if (__atomic_compare_exchange_n(&r->phase, &expected, WRITE_AWAITED, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if (future != NULL)
                Py_INCREF(future);  /* one for the caller, one for r */
            return future;
        }
        r->future = NULL;
        Py_XDECREF(future);
        PyErr_Clear();  /* delivered meanwhile: no future needed after all */
    }
    PyObject *outcome = read_outcome(r->result, r->msg);
    free(r);
    return outcome;
}

/* set_resolver(fn): fn(future, outcome) resolves the future of an
 * async read or write from the host thread that ended it (with the GIL). */
static PyObject *stream_set_resolver(PyObject *self, PyObject *fn) {
    (void)self;
    PyObject *old = late_resolver;
    Py_INCREF(fn);
    late_resolver = fn;
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyMethodDef stream_io_methods[] = {
    {"read_message", stream_read_message, METH_O,
     "The next request message (a view that owns it), or the code that ended "
     "the read."},
    {"write_message", (PyCFunction)(void (*)(void))stream_write_message,
     METH_FASTCALL, "Writes one response message and waits for the host; the "
     "pgf_call_write_wait code."},
    {"write_message_async", (PyCFunction)(void (*)(void))stream_write_message_async,
     METH_FASTCALL, "Writes one response message of an async handler: the "
     "code if the write ended at once, else a future of the loop for it."},
    {"read_message_async", (PyCFunction)(void (*)(void))stream_read_message_async,
     METH_FASTCALL, "Reads one request message for an async handler: its "
     "view or the code that ended the read if it ended at once, else a "
     "future of the loop for either."},
    {"set_resolver", stream_set_resolver, METH_O,
     "Sets fn(future, outcome), which resolves the future of an async read "
     "or write from the thread that ended it."},
    {NULL, NULL, 0, NULL},
};

static int _pgf_stream_io_install(void *namespace) {
    return install_methods(namespace, stream_io_methods);
}
