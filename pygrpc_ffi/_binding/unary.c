/* The unary fast path of pygrpc_ffi._native: C that uses the CPython API,
 * compiled into the cffi module only (the shim in csrc/ knows no Python).
 *
 * A unary Python registration's handler function is _pgf_unary_handle.  It
 * takes the GIL itself, makes the request payload -- a read-only memoryview
 * whose exporter owns a reference to the request's pgf_message, so the view,
 * its slices and its exports keep the bytes alive, as the Python path's
 * views do -- and calls pygrpc_ffi._runtime.run_unary(binding, call address,
 * payload).  run_unary runs the handler and answers everything but a plain
 * bytes answer itself; a bytes answer comes back here and is set without a
 * copy, owned by the host until it releases it (a Py_DECREF), and the call
 * is finished with the GIL released.  What this saves, per call: the cffi
 * trampoline's argument objects, five Python objects for the payload view,
 * a handle for the answer and a second trampoline for its release.
 *
 * Included by cffi's set_source (build.py), after the declarations of
 * the extern "Python" functions it calls. */
#include "unary.h"

#include <stdlib.h>
#include <string.h>

/* Set once by _pgf_unary_setup; alive for the process. */
static PyObject *unary_runner;      /* pygrpc_ffi._runtime.run_unary */
static PyObject *message_buffer_type;

/* ------------------------------------------------ the payload's exporter */

/* Exports one pgf_message's bytes, read-only, and owns a reference to it. */
typedef struct {
    PyObject_HEAD
    pgf_message *msg;
    const uint8_t *data;
    Py_ssize_t len;
} message_buffer;

static int message_buffer_get(PyObject *self, Py_buffer *view, int flags) {
    message_buffer *mb = (message_buffer *)self;
    return PyBuffer_FillInfo(view, self, (void *)mb->data, mb->len, 1, flags);
}

static void message_buffer_dealloc(PyObject *self) {
    message_buffer *mb = (message_buffer *)self;
    PyTypeObject *type = Py_TYPE(self);
    pgf_message_unref(mb->msg);
    freefunc free_fn = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_fn(self);
    Py_DECREF(type);
}

static PyType_Slot message_buffer_slots[] = {
    {Py_tp_dealloc, (void *)message_buffer_dealloc},
    {Py_bf_getbuffer, (void *)message_buffer_get},
    {Py_tp_doc, (void *)"The bytes of one request message, owned until the "
                        "last view of them is gone."},
    {0, NULL},
};

static PyType_Spec message_buffer_spec = {
    "pygrpc_ffi._native.MessageBuffer",
    sizeof(message_buffer),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    message_buffer_slots,
};

/* NEW: a read-only view of msg's bytes that owns the reference msg (taken
 * over, also on failure); NULL with an exception set. */
static PyObject *message_view(pgf_message *msg) {
    size_t len = 0;
    const uint8_t *data = pgf_message_data(msg, &len);
    if (len > (size_t)PY_SSIZE_T_MAX) {
        pgf_message_unref(msg);
        return PyErr_NoMemory();
    }
    message_buffer *mb = (message_buffer *)PyType_GenericAlloc(
        (PyTypeObject *)message_buffer_type, 0);
    if (mb == NULL) {
        pgf_message_unref(msg);
        return NULL;
    }
    mb->msg = msg;
    mb->data = data;
    mb->len = (Py_ssize_t)len;
    PyObject *view = PyMemoryView_FromObject((PyObject *)mb);
    Py_DECREF(mb);  /* the view's own reference keeps it */
    return view;
}

/* NEW: a read-only view of a copy of data[0..len) (bytes a host only lent,
 * which end with the call); NULL with an exception set. */
static PyObject *copied_view(const uint8_t *data, size_t len) {
    if (len > (size_t)PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    PyObject *copy = PyBytes_FromStringAndSize((const char *)data,
                                               (Py_ssize_t)len);
    if (copy == NULL)
        return NULL;
    PyObject *view = PyMemoryView_FromObject(copy);
    Py_DECREF(copy);
    return view;
}

/* NEW: the payload view of a request: of msg (a reference taken over) if
 * the host handed a message over, else of a copy of data[0..len); NULL with
 * an exception set. */
static PyObject *payload_view(pgf_message *msg, const uint8_t *data,
                              size_t len) {
    if (msg == NULL || len == 0) {
        pgf_message_unref(msg);
        return copied_view(data, len);
    }
    return message_view(msg);
}

/* NEW: the payload view of a call's request; NULL with an exception set. */
static PyObject *request_payload(const pgf_call *call) {
    const uint8_t *data;
    size_t len;
    pgf_call_request(call, &data, &len);
    return payload_view(pgf_call_request_message(call), data, len);
}

/* The call at the address a builtin was given (an int), or NULL with an
 * exception set. */
static pgf_call *call_at_address(PyObject *address) {
    pgf_call *call = PyLong_AsVoidPtr(address);
    if (call == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "no call");
    return call;
}

/* The call at args[0] of a METH_FASTCALL builtin that takes `want`
 * arguments, or NULL with an exception set (TypeError(usage) for another
 * count). */
static pgf_call *call_of_args(PyObject *const *args, Py_ssize_t nargs,
                              Py_ssize_t want, const char *usage) {
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    return call_at_address(args[0]);
}

/* ------------------------------------------------------------ the answer */

/* A bytes answer's release: the host is done with its bytes. */
static void release_bytes(void *obj) {
    if (!Py_IsInitialized())
        return;  /* the interpreter is gone, and its objects with it */
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_DECREF((PyObject *)obj);
    PyGILState_Release(gil);
}

/* Answers of at most this many bytes are copied into the call: cheaper
 * than a release that must take the GIL on the host's thread later (which
 * contends with the thread running Python), and gRPC copies messages this
 * small into its frames anyway.  Larger ones are sent from the object. */
#define PGF_COPY_AT_MOST 1024

/* Sets data[0..len) as the response, owned with release(ctx) (which runs
 * at once for an empty answer, or if the call cannot keep it), and
 * finishes the call OK; called without the GIL. */
static void finish_with(pgf_call *call, const void *data, size_t len,
                        pgf_release_fn release, void *ctx) {
    if (len == 0) {
        release(ctx);
    } else if (pgf_call_set_response(call, data, len, release, ctx) !=
               PGF_OK) {  /* released already by the shim */
        static const char msg[] = "cannot keep the response";
        pgf_call_reset_response(call);
        pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, msg,
                        sizeof(msg) - 1);
        return;
    }
    pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
}

/* A bytes object's own buffer as the response, `answer` a reference owned
 * from here and dropped with release_bytes; see finish_with. */
static void finish_with_bytes(pgf_call *call, PyObject *answer,
                              const char *data, Py_ssize_t len) {
    finish_with(call, data, (size_t)len, release_bytes, answer);
}

/* ----------------------------------------------------------- the handler */

typedef struct {
    void *handle;       /* the cffi handle that keeps the Binding alive */
    PyObject *binding;  /* BORROWED from that handle */
} unary_binding;

static void *_pgf_unary_binding_new(void *handle, void *binding) {
    unary_binding *ub = malloc(sizeof(*ub));
    if (ub != NULL) {
        ub->handle = handle;
        ub->binding = (PyObject *)binding;
    }
    return ub;
}

static void _pgf_unary_release(void *handler_data) {
    unary_binding *ub = handler_data;
    _pgf_py_release_handler(ub->handle);
    free(ub);
}

static void _pgf_unary_handle(void *handler_data, pgf_call *call) {
    /* cffi keeps a Python thread state per foreign thread once an extern
     * "Python" function ran on it; entering through one first makes every
     * PyGILState_Ensure below reuse that state instead of creating one. */
    static _Thread_local int thread_known;
    if (!thread_known) {
        _pgf_py_enter_thread();
        thread_known = 1;
    }
    unary_binding *ub = handler_data;
    PyObject *answer = NULL;
    char *data = NULL;
    Py_ssize_t len = 0;
    int copied = 0;
    int failed = 0;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *payload = request_payload(call);
    PyObject *address = payload ? PyLong_FromVoidPtr(call) : NULL;
    if (address != NULL) {
        answer = PyObject_CallFunctionObjArgs(unary_runner, ub->binding,
                                              address, payload, NULL);
        Py_DECREF(address);
    }
    Py_XDECREF(payload);
    if (answer == NULL) {
        failed = 1;
        PyErr_WriteUnraisable(unary_runner);
    } else if (answer == Py_None) {
        Py_CLEAR(answer);  /* answered by run_unary */
    } else if (!PyBytes_CheckExact(answer) ||
               PyBytes_AsStringAndSize(answer, &data, &len) != 0) {
        PyErr_Clear();
        Py_CLEAR(answer);
        failed = 1;
    } else if ((size_t)len <= PGF_COPY_AT_MOST) {
        /* Small: copied into the call, the object dropped here, under the
         * GIL; the call is finished below, without it. */
        if (len == 0 || pgf_call_set_response_copy(call, (const uint8_t *)data,
                                                   (size_t)len) == PGF_OK) {
            Py_CLEAR(answer);
            copied = 1;
        }
    }
    PyGILState_Release(gil);
    if (copied) {
        pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
    } else if (answer != NULL) {
        finish_with_bytes(call, answer, data, len);
    } else if (failed && !pgf_call_is_finished(call)) {
        static const char msg[] = "Internal server error";
        pgf_call_reset_response(call);
        pgf_call_finish(call, PGF_STATUS_INTERNAL, msg, sizeof(msg) - 1);
    }
}

/* Puts builtins made from methods into namespace (a dict, borrowed).
 * PGF_OK or PGF_ENOMEM. */
static int install_methods(void *namespace, PyMethodDef *methods) {
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = PGF_OK;
    for (PyMethodDef *def = methods; def->ml_name != NULL; def++) {
        PyObject *fn = PyCFunction_New(def, NULL);
        int failed = fn == NULL || PyDict_SetItemString((PyObject *)namespace,
                                                        def->ml_name, fn) != 0;
        Py_XDECREF(fn);
        if (failed) {
            PyErr_Clear();
            rc = PGF_ENOMEM;
            break;
        }
    }
    PyGILState_Release(gil);
    return rc;
}

/* The UTF-8 of an ASCII str (borrowed, alive as long as s), or NULL (no
 * exception set) when s is not an exact str or not ASCII. */
static const char *ascii_of(PyObject *s, Py_ssize_t *len) {
    if (!PyUnicode_CheckExact(s))
        return NULL;
    const char *utf8 = PyUnicode_AsUTF8AndSize(s, len);
    if (utf8 == NULL) {
        PyErr_Clear();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *len; i++)
        if ((unsigned char)utf8[i] >= 0x80)
            return NULL;
    return utf8;
}

/* add_text_metadata(call address, dict, trailing) -> how many of the dict's
 * leading entries were added to the call's initial (or, trailing true,
 * trailing) metadata: those whose key and value are ASCII str and whose key
 * does not end in "-bin".  Stops at the first other entry, or the first the
 * shim refuses, for Python to handle (and report) from there. */
static PyObject *unary_add_text_metadata(PyObject *self, PyObject *const *args,
                                         Py_ssize_t nargs) {
    (void)self;
    static const char usage[] = "add_text_metadata(call address, dict, trailing)";
    pgf_call *call = call_of_args(args, nargs, 3, usage);
    if (call == NULL)
        return NULL;
    if (!PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    int trailing = PyObject_IsTrue(args[2]);
    if (trailing < 0)
        return NULL;
    Py_ssize_t pos = 0, added = 0;
    PyObject *key, *value;
    while (PyDict_Next(args[1], &pos, &key, &value)) {
        Py_ssize_t klen, vlen;
        const char *k = ascii_of(key, &klen);
        const char *v = k == NULL ? NULL : ascii_of(value, &vlen);
        if (v == NULL || (klen >= 4 && memcmp(k + klen - 4, "-bin", 4) == 0))
            break;
        int rc = trailing
            ? pgf_call_add_trailing_metadata(call, k, (size_t)klen, (const uint8_t *)v,
                                             (size_t)vlen)
            : pgf_call_add_initial_metadata(call, k, (size_t)klen, (const uint8_t *)v,
                                            (size_t)vlen);
        if (rc != PGF_OK)
            break;
        added++;
    }
    return PyLong_FromSsize_t(added);
}

static PyMethodDef unary_methods[] = {
    {"add_text_metadata", (PyCFunction)(void (*)(void))unary_add_text_metadata,
     METH_FASTCALL, "Adds the leading ASCII str entries of a dict to a call's "
     "metadata; how many."},
    {NULL, NULL, 0, NULL},
};

static int _pgf_unary_install(void *namespace) {
    return install_methods(namespace, unary_methods);
}

static int _pgf_unary_setup(void *runner) {
    if (unary_runner != NULL)
        return PGF_OK;
    PyGILState_STATE gil = PyGILState_Ensure();
    int rc = PGF_ENOMEM;
    message_buffer_type = PyType_FromSpec(&message_buffer_spec);
    if (message_buffer_type != NULL) {
        Py_INCREF((PyObject *)runner);
        unary_runner = (PyObject *)runner;
        rc = PGF_OK;
    } else {
        PyErr_Clear();
    }
    PyGILState_Release(gil);
    return rc;
}
