/* Blocking reads and writes of sync streaming handlers, as CPython builtins
 * compiled into the cffi module: one call per message from Python, the GIL
 * released only while one has to wait for the host, and no cffi objects
 * made per message.
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

/* The GIL is released only if a read or write has to wait: one the host
 * ends at once (a message it had received, a small one it copies) hands
 * the GIL to no other thread, which under load meant a thread switch per
 * message between the handlers' threads. */
typedef struct {
    PyThreadState *state;
} released_gil;

static void release_gil(void *arg) { ((released_gil *)arg)->state = PyEval_SaveThread(); }

static void take_gil(void *arg) { PyEval_RestoreThread(((released_gil *)arg)->state); }

static PyObject *stream_read_message(PyObject *self, PyObject *arg) {
    (void)self;
    pgf_call *call = call_at_address(arg);
    if (call == NULL)
        return NULL;
    pgf_message *msg = NULL;
    released_gil gil;
    pgf_wait_hooks hooks = {release_gil, take_gil, &gil};
    int rc = pgf_call_read_wait_hooked(call, &msg, &hooks);
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
    released_gil gil;
    pgf_wait_hooks hooks = {release_gil, take_gil, &gil};
    int rc = pgf_call_write_wait_hooked(call, (const uint8_t *)owned->view.buf,
                                        (size_t)owned->view.len, release_owned,
                                        owned, &hooks);
    return PyLong_FromLong(rc);
}

static PyObject *stream_write_message(PyObject *self, PyObject *const *args,
                                      Py_ssize_t nargs) {
    (void)self;
    pgf_call *call = call_of_args(args, nargs, 2,
                                  "write_message(call_address, payload)");
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
    released_gil gil;
    pgf_wait_hooks hooks = {release_gil, take_gil, &gil};
    int rc = pgf_call_write_wait_hooked(call, (const uint8_t *)view.buf,
                                        (size_t)view.len, NULL, NULL, &hooks);
    PyBuffer_Release(&view);
    return PyLong_FromLong(rc);
}

/* ------------------------------- reads and writes of async handlers */

/* An async handler's read or write.  One the host ends inside the call (a
 * small message copied as the host took it; a message it had received
 * already) costs no future and no thread hop.  Else the handler awaits a
 * future that the loop resolves: the host's thread that ends the operation
 * queues it for the loop (loop_queue.c: no GIL there, and one wake-up of
 * the loop for all that ended meanwhile), or, while that queue is closed,
 * resolves it through `late_resolver` with the GIL.  Whichever of the
 * caller and the completion comes second ends the operation (`phase`). */
enum { OP_IN_CALL = 0, OP_ENDED = 1, OP_AWAITED = 2 };

typedef struct {
    int phase;          /* atomic: one of the three above */
    int is_read;
    int result;         /* the completion's, read after `phase` */
    pgf_message *msg;   /* a read's: OWNED, NULL unless result is PGF_OK */
    int lent;           /* a write's: view holds the handler's bytes */
    Py_buffer view;
    PyObject *future;   /* OP_AWAITED: the caller's, resolved later */
} async_op;

static PyObject *late_resolver;  /* resolver(future, outcome), set once */

/* loop_queue.c: queues an ended operation for the loop, which then calls
 * _pgf_async_op_resolve; 0 if the queue is closed (nothing was queued). */
static int queue_async_op(async_op *op);

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

/* NEW: the operation's outcome (a read's message taken over); frees op.
 * With the GIL; NULL with an exception set. */
static PyObject *async_op_end(async_op *op) {
    PyObject *outcome = op->is_read ? read_outcome(op->result, op->msg)
                                    : PyLong_FromLong(op->result);
    if (op->lent)
        PyBuffer_Release(&op->view);
    Py_XDECREF(op->future);
    free(op);
    return outcome;
}

/* With the GIL: resolves an awaited operation's future with its outcome
 * (late_resolver runs on any thread) and frees op. */
static void _pgf_async_op_resolve(async_op *op) {
    PyObject *future = op->future;
    op->future = NULL;
    PyObject *outcome = async_op_end(op);
    if (outcome != NULL && future != NULL && late_resolver != NULL) {
        PyObject *ok = PyObject_CallFunctionObjArgs(late_resolver, future, outcome, NULL);
        if (ok == NULL)
            PyErr_WriteUnraisable(late_resolver);
        Py_XDECREF(ok);
    } else if (outcome == NULL) {
        PyErr_WriteUnraisable(NULL);
    }
    Py_XDECREF(outcome);
    Py_XDECREF(future);
}

/* The completion of both kinds, on whatever thread the host ends them. */
static void async_op_ended(async_op *op, int result, pgf_message *msg) {
    op->result = result;
    op->msg = msg;
    int expected = OP_IN_CALL;
    if (__atomic_compare_exchange_n(&op->phase, &expected, OP_ENDED, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;  /* the caller has not looked yet: it takes the outcome */
    if (queue_async_op(op))
        return;
    if (!Py_IsInitialized()) {
        pgf_message_unref(msg);
        return;  /* Python is gone: so is everything that waited */
    }
    PyGILState_STATE gil = PyGILState_Ensure();
    _pgf_async_op_resolve(op);
    PyGILState_Release(gil);
}

static void async_read_done(pgf_call *call, int result, pgf_message *msg,
                            void *user_data) {
    (void)call;
    async_op_ended(user_data, result, msg);
}

static void async_write_done(pgf_call *call, int result, void *user_data) {
    (void)call;
    async_op_ended(user_data, result, NULL);
}

/* NEW: after the read or write was accepted: its outcome if it ended
 * already, else a future of loop (made before the completion may use it)
 * that will be resolved with it. */
static PyObject *async_op_outcome(async_op *op, PyObject *loop) {
    if (__atomic_load_n(&op->phase, __ATOMIC_ACQUIRE) == OP_IN_CALL) {
        PyObject *future = PyObject_CallMethod(loop, "create_future", NULL);
        op->future = future;  /* NULL: the completion only frees op */
        int expected = OP_IN_CALL;
        if (__atomic_compare_exchange_n(&op->phase, &expected, OP_AWAITED, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if (future != NULL)
                Py_INCREF(future);  /* one for the caller, one for op */
            return future;
        }
        op->future = NULL;
        Py_XDECREF(future);
        PyErr_Clear();  /* ended meanwhile: no future needed after all */
    }
    return async_op_end(op);
}

static PyObject *stream_write_message_async(PyObject *self, PyObject *const *args,
                                            Py_ssize_t nargs) {
    (void)self;
    pgf_call *call = call_of_args(args, nargs, 3,
                                  "write_message_async(call_address, payload, loop)");
    if (call == NULL)
        return NULL;
    async_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return PyErr_NoMemory();
    if (PyObject_GetBuffer(args[1], &op->view, PyBUF_SIMPLE) != 0) {
        free(op);
        return NULL;
    }
    int rc;
    if ((size_t)op->view.len <= LEND_AT_MOST) {
        /* Lent: the host copies a message this small as it takes it; one it
         * holds (sent later) keeps the view until the completion. */
        op->lent = 1;
        rc = pgf_call_write(call, (const uint8_t *)op->view.buf, (size_t)op->view.len,
                            NULL, NULL, async_write_done, op);
    } else {
        /* Owned, with a release the host runs when it is done with the
         * bytes: a write held by the transport never pins the handler. */
        owned_payload *owned = malloc(sizeof(*owned));
        if (owned == NULL) {
            PyBuffer_Release(&op->view);
            free(op);
            return PyErr_NoMemory();
        }
        owned->view = op->view;  /* the export moves to `owned` */
        rc = pgf_call_write(call, (const uint8_t *)owned->view.buf,
                            (size_t)owned->view.len, release_owned, owned,
                            async_write_done, op);
    }
    if (rc != PGF_OK) {  /* no completion will come; the release ran */
        if (op->lent)  /* else moved to `owned`, released by the shim */
            PyBuffer_Release(&op->view);
        free(op);
        return PyLong_FromLong(rc);
    }
    return async_op_outcome(op, args[2]);
}

static PyObject *stream_read_message_async(PyObject *self, PyObject *const *args,
                                           Py_ssize_t nargs) {
    (void)self;
    pgf_call *call = call_of_args(args, nargs, 2,
                                  "read_message_async(call_address, loop)");
    if (call == NULL)
        return NULL;
    async_op *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return PyErr_NoMemory();
    op->is_read = 1;
    int rc = pgf_call_read(call, async_read_done, op);
    if (rc != PGF_OK) {  /* no completion will come */
        free(op);
        return PyLong_FromLong(rc);
    }
    return async_op_outcome(op, args[1]);
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
