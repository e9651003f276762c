/* The hand-off of async unary calls to the package's event loop, without
 * Python on the host's thread.
 *
 * An `async def` unary handler is registered with _pgf_loop_queue_handle,
 * which only queues the call (a mutex, and a byte into a pipe when the queue
 * was empty) -- so hosts may run it on their event threads, and no worker
 * thread and no GIL are involved.  The loop watches the pipe and takes
 * every waiting call in one crossing into C (_pgf_loop_queue_take), so one
 * wake-up of the loop serves all calls that arrived meanwhile.
 * Cancellations reach the loop through the same queue, in order: a cancel
 * queued after its call is taken after it.  So do the reads and writes of
 * async stream handlers that a host's thread ended (stream_io.c): the loop
 * resolves their futures as it takes them.
 *
 * Included by cffi's set_source (build.py). */
#include "loop_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pgf_call *call;
    void *handler_data;  /* NULL: a cancel */
    async_op *op;        /* else: an async stream's read or write ended */
} queue_entry;

static struct {
    pthread_mutex_t lock;
    queue_entry *items;
    size_t head, len, cap;  /* items[head .. head+len) */
    int fds[2];             /* the pipe; fds[0] is watched by the loop */
    int signalled;          /* the loop is woken: a byte is in the pipe or
                             * on its way, or the loop is taking entries */
    int open;
    size_t limit;           /* calls that may wait; beyond: refused */
    size_t waiting;         /* calls (not cancels) in the queue */
    pthread_once_t once;
} queue = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, {-1, -1}, 0, 0, 1000, 0,
           PTHREAD_ONCE_INIT};

static void make_pipe(void) {
    int fds[2];
    if (pipe(fds) != 0)
        return;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    queue.fds[0] = fds[0];
    queue.fds[1] = fds[1];
}

static int _pgf_loop_queue_fd(void) {
    pthread_once(&queue.once, make_pipe);
    return queue.fds[0];
}

/* With the lock held: appends an entry; 0, or -1 if it cannot grow. */
static int push_locked(pgf_call *call, void *handler_data) {
    if (queue.head + queue.len == queue.cap) {
        if (queue.head > 0) {  /* reuse the taken front first */
            memmove(queue.items, queue.items + queue.head,
                    queue.len * sizeof(queue_entry));
            queue.head = 0;
        } else {
            size_t cap = queue.cap ? queue.cap * 2 : 64;
            queue_entry *items = realloc(queue.items, cap * sizeof(queue_entry));
            if (items == NULL)
                return -1;
            queue.items = items;
            queue.cap = cap;
        }
    }
    queue.items[queue.head + queue.len] = (queue_entry){call, handler_data, NULL};
    queue.len++;
    return 0;
}

/* With the lock held: whether the pusher of the entry just queued must
 * wake the loop (signal_loop, after unlocking: a syscall under the lock made
 * the loop and other pushers sleep on it). */
static int must_signal_locked(void) {
    if (queue.signalled)
        return 0;
    queue.signalled = 1;
    return 1;
}

/* A byte into the pipe.  One per wake-up the loop has not taken yet, plus
 * at most one per pusher racing a take: the pipe never fills and the write
 * never blocks. */
static void signal_loop(void) {
    static const char byte = 1;
    ssize_t n = write(queue.fds[1], &byte, 1);
    (void)n;  /* a full pipe is already readable */
}

static int queue_async_op(async_op *op) {
    int queued = 0, signal = 0;
    pthread_mutex_lock(&queue.lock);
    if (queue.open && push_locked(NULL, NULL) == 0) {
        queue.items[queue.head + queue.len - 1].op = op;
        queued = 1;
        signal = must_signal_locked();
    }
    pthread_mutex_unlock(&queue.lock);
    if (signal)
        signal_loop();
    return queued;
}

static void on_cancel(pgf_call *call, void *unused) {
    (void)unused;
    int signal = 0;
    pthread_mutex_lock(&queue.lock);
    if (queue.open && push_locked(call, NULL) == 0)  /* else the call runs on */
        signal = must_signal_locked();
    pthread_mutex_unlock(&queue.lock);
    if (signal)
        signal_loop();
}

static void finish_unavailable(pgf_call *call) {
    static const char msg[] = "the event loop of async handlers is not running";
    pgf_call_finish(call, PGF_STATUS_UNAVAILABLE, msg, sizeof(msg) - 1);
}

static void _pgf_loop_queue_handle(void *handler_data, pgf_call *call) {
    if (_pgf_loop_queue_fd() < 0) {
        finish_unavailable(call);
        return;
    }
    /* Before the call is queued: once it is, the loop may finish it (and
     * the host free it) at any moment. */
    pgf_call_on_cancel(call, on_cancel, NULL);
    pthread_mutex_lock(&queue.lock);
    int open = queue.open;
    int full = queue.waiting >= queue.limit;
    int queued = open && !full && push_locked(call, handler_data) == 0;
    int signal = 0;
    if (queued) {
        queue.waiting++;
        signal = must_signal_locked();
    }
    size_t limit = queue.limit;
    pthread_mutex_unlock(&queue.lock);
    if (signal)
        signal_loop();
    if (queued)
        return;
    if (!open) {
        finish_unavailable(call);
    } else if (full) {
        char msg[128];
        int n = snprintf(msg, sizeof(msg),
                         "server overloaded: %zu calls already wait for the "
                         "event loop", limit);
        pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, msg,
                        n > 0 && (size_t)n < sizeof(msg) ? (size_t)n : 0);
    } else {
        static const char msg[] = "out of memory";
        pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, msg,
                        sizeof(msg) - 1);
    }
}

static void _pgf_loop_queue_set_limit(size_t limit) {
    pthread_mutex_lock(&queue.lock);
    queue.limit = limit;
    pthread_mutex_unlock(&queue.lock);
}

static size_t _pgf_loop_queue_take(_pgf_queued *out, size_t cap) {
    size_t n = 0;
    /* The pipe is emptied before the queue, outside the lock: a byte written
     * from now on is for an entry this take may miss, and stays to wake the
     * loop again (at worst once for nothing). */
    char buf[64];
    while (read(queue.fds[0], buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&queue.lock);
    while (n < cap && queue.len > 0) {
        queue_entry e = queue.items[queue.head++];
        queue.len--;
        _pgf_queued *q = &out[n++];
        memset(q, 0, sizeof(*q));
        q->call = e.call;
        q->handler_data = e.handler_data;
        q->op = e.op;
        if (e.handler_data != NULL) {  /* not started: alive and ours */
            queue.waiting--;
            pgf_call_ref(e.call);  /* Python's, dropped once it finished */
            q->cancelled = pgf_call_is_cancelled(e.call);
            pgf_call_request(e.call, &q->data, &q->len);
            q->msg = pgf_call_request_message(e.call);
        }
    }
    if (queue.len == 0) {
        queue.head = 0;
        queue.signalled = 0;  /* the next entry wakes the loop */
    }
    pthread_mutex_unlock(&queue.lock);
    return n;
}

static void _pgf_loop_queue_set_open(int open) {
    pthread_mutex_lock(&queue.lock);
    queue.open = open;
    if (open) {
        pthread_mutex_unlock(&queue.lock);
        return;
    }
    /* Closed: nothing will take the waiting calls; answer them here. */
    queue_entry *items = queue.items;
    size_t head = queue.head, len = queue.len;
    queue.items = NULL;
    queue.head = queue.len = queue.cap = queue.waiting = 0;
    pthread_mutex_unlock(&queue.lock);
    for (size_t i = head; i < head + len; i++) {
        if (items[i].op != NULL) {  /* its waiter learns the outcome yet */
            PyGILState_STATE gil = PyGILState_Ensure();
            _pgf_async_op_resolve(items[i].op);
            PyGILState_Release(gil);
        } else if (items[i].handler_data != NULL) {
            finish_unavailable(items[i].call);
        }
    }
    free(items);
}

/* ------------------------------------------------ the loop's side, builtin */

enum { TAKE_AT_ONCE = 64 };

/* NEW: the item for one taken entry, or NULL with an exception set (the
 * entry's call reference and message are released then). */
static PyObject *taken_item(_pgf_queued *q) {
    PyObject *address = PyLong_FromVoidPtr(q->call);
    if (address == NULL) {
        pgf_message_unref(q->msg);
        return NULL;
    }
    if (q->handler_data == NULL) {  /* a cancel */
        PyObject *item = PyTuple_Pack(4, address, Py_None, Py_True, Py_None);
        Py_DECREF(address);
        return item;
    }
    PyObject *payload = payload_view(q->msg, q->data, q->len);
    if (payload == NULL) {
        Py_DECREF(address);
        return NULL;
    }
    PyObject *binding = ((unary_binding *)q->handler_data)->binding;
    PyObject *item = PyTuple_Pack(4, address, binding,
                                  q->cancelled ? Py_True : Py_False, payload);
    Py_DECREF(address);
    Py_DECREF(payload);
    return item;
}

/* take_calls() -> list of (call address, binding | None, cancelled, payload
 * view | None): up to TAKE_AT_ONCE entries, oldest first; the ended reads
 * and writes of async streams among them are resolved here instead.  A call's
 * reference is the caller's (finish_taken or pgf_call_unref ends it); a
 * cancel has binding None.  An entry that cannot become an item has its call
 * answered INTERNAL here. */
static PyObject *queue_take_calls(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    _pgf_queued batch[TAKE_AT_ONCE];
    PyObject *list = PyList_New(0);
    if (list == NULL)
        PyErr_Clear();  /* resolving below calls Python; a list is made at the end */
    size_t items = 0, n;
    /* Until the queue is empty or TAKE_AT_ONCE items are made: the caller
     * takes again only after a full list, and ended reads and writes make
     * no item. */
    do {
        n = _pgf_loop_queue_take(batch, TAKE_AT_ONCE);
        for (size_t i = 0; i < n; i++) {
            if (batch[i].op != NULL) {  /* resolved here, on the loop */
                _pgf_async_op_resolve(batch[i].op);
                continue;
            }
            items++;
            PyObject *item = list ? taken_item(&batch[i]) : NULL;
            if (item == NULL || PyList_Append(list, item) != 0) {
                PyErr_Clear();
                if (batch[i].handler_data != NULL) {
                    static const char msg[] = "Internal server error";
                    pgf_call_finish(batch[i].call, PGF_STATUS_INTERNAL, msg,
                                    sizeof(msg) - 1);
                    pgf_call_unref(batch[i].call);
                }
            }
            Py_XDECREF(item);
        }
    } while (n == TAKE_AT_ONCE && items < TAKE_AT_ONCE);
    if (list == NULL)
        list = PyList_New(0);
    return list;
}

/* ---------------------------------------------------- the finisher */

/* One C thread (no Python) ends the calls the loop answered: the host's
 * work for an answer -- its done callback, gRPC's write and status -- runs
 * there, beside the loop's next handlers, rather than between them on the
 * loop's thread, which held every call waiting behind it.  Calls are
 * finished in the order the loop answered them. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t idle;  /* broadcast when nothing is left to finish */
    pgf_call **calls;   /* answered, each with the reference the loop had */
    size_t len, cap;
    int state;          /* 0 not started, 1 running, -1 cannot start */
    int sleeping;       /* waits for `wake`, and nobody signalled it yet */
    int busy;           /* finishing calls taken off `calls` */
} finisher = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
              PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0, 0};

static void *finisher_main(void *unused) {
    (void)unused;
    pgf_call *batch[64];
    pthread_mutex_lock(&finisher.lock);
    for (;;) {
        while (finisher.len == 0) {
            finisher.sleeping = 1;
            pthread_cond_wait(&finisher.wake, &finisher.lock);
        }
        size_t n = finisher.len < 64 ? finisher.len : 64;
        memcpy(batch, finisher.calls, n * sizeof(*batch));
        finisher.len -= n;
        memmove(finisher.calls, finisher.calls + n,
                finisher.len * sizeof(*batch));
        finisher.busy = 1;
        pthread_mutex_unlock(&finisher.lock);
        for (size_t i = 0; i < n; i++) {
            pgf_call_finish(batch[i], PGF_STATUS_OK, NULL, 0);
            pgf_call_unref(batch[i]);
        }
        pthread_mutex_lock(&finisher.lock);
        finisher.busy = 0;
        if (finisher.len == 0)
            pthread_cond_broadcast(&finisher.idle);
    }
    return NULL;
}

/* Finishes call OK (its response set) and drops the caller's reference:
 * on the finisher, or here if it cannot take the call.  Without the GIL. */
static void finish_later(pgf_call *call) {
    int queued = 0, signal = 0;
    pthread_mutex_lock(&finisher.lock);
    if (finisher.state == 0) {
        pthread_t thread;
        pthread_attr_t attr;
        finisher.state = -1;
        if (pthread_attr_init(&attr) == 0) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&thread, &attr, finisher_main, NULL) == 0)
                finisher.state = 1;
            pthread_attr_destroy(&attr);
        }
    }
    if (finisher.state == 1 && finisher.len == finisher.cap) {
        size_t cap = finisher.cap ? finisher.cap * 2 : 64;
        pgf_call **calls = realloc(finisher.calls, cap * sizeof(*calls));
        if (calls != NULL) {
            finisher.calls = calls;
            finisher.cap = cap;
        }
    }
    if (finisher.state == 1 && finisher.len < finisher.cap) {
        finisher.calls[finisher.len++] = call;
        queued = 1;
        signal = finisher.sleeping;
        finisher.sleeping = 0;  /* one signal per sleep */
    }
    pthread_mutex_unlock(&finisher.lock);
    if (signal)
        pthread_cond_signal(&finisher.wake);
    if (!queued) {
        pgf_call_finish(call, PGF_STATUS_OK, NULL, 0);
        pgf_call_unref(call);
    }
}

static int _pgf_loop_queue_wait_finished(int timeout_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&finisher.lock);
    while ((finisher.len > 0 || finisher.busy) &&
           pthread_cond_timedwait(&finisher.idle, &finisher.lock, &until) == 0)
        ;
    int done = finisher.len == 0 && !finisher.busy;
    pthread_mutex_unlock(&finisher.lock);
    return done;
}

/* finish_taken(call address, answer) -> None: answers a taken call with a
 * bytes answer (copied up to PGF_COPY_AT_MOST, else sent from the object);
 * the finisher then finishes it OK and drops the caller's reference. */
static PyObject *queue_finish_taken(PyObject *self, PyObject *const *args,
                                    Py_ssize_t nargs) {
    (void)self;
    static const char usage[] = "finish_taken(call_address, bytes)";
    pgf_call *call = call_of_args(args, nargs, 2, usage);
    if (call == NULL)
        return NULL;
    if (!PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    char *data;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(args[1], &data, &len) != 0)
        return NULL;
    int small = (size_t)len <= PGF_COPY_AT_MOST;
    PyObject *answer = args[1];
    if (!small)
        Py_INCREF(answer);  /* released by the host, with release_bytes */
    Py_BEGIN_ALLOW_THREADS
    /* A small answer is copied without the GIL: the caller's reference
     * keeps the bytes alive until this returns. */
    int rc = PGF_OK;
    if (small && len > 0)
        rc = pgf_call_set_response_copy(call, (const uint8_t *)data, (size_t)len);
    else if (!small)  /* on failure released already, by the shim */
        rc = pgf_call_set_response(call, (const uint8_t *)data, (size_t)len,
                                   release_bytes, answer);
    if (rc == PGF_OK) {
        finish_later(call);
    } else {
        static const char msg[] = "cannot keep the response";
        pgf_call_reset_response(call);
        pgf_call_finish(call, PGF_STATUS_RESOURCE_EXHAUSTED, msg,
                        sizeof(msg) - 1);
        pgf_call_unref(call);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ---------------------------------------------------- fork() */

/* The child of a fork() has none of the parent's threads (the finisher, the
 * loop, a host's) and must not touch the parent's calls.  The locks are
 * held across fork(), so the child gets them consistent; the child then
 * forgets the parent's entries (they are the parent's to end), leaves the
 * queue closed until its own loop opens it, starts a finisher of its own on
 * first use, and gets a pipe of its own: the inherited one is shared with
 * the parent, whose loop would take the child's wake-ups and the child's
 * loop the parent's. */
static void before_fork(void) {
    pthread_mutex_lock(&queue.lock);
    pthread_mutex_lock(&finisher.lock);
}

static void parent_after_fork(void) {
    pthread_mutex_unlock(&finisher.lock);
    pthread_mutex_unlock(&queue.lock);
}

static void child_after_fork(void) {
    free(queue.items);
    queue.items = NULL;
    queue.head = queue.len = queue.cap = queue.waiting = 0;
    queue.signalled = 0;
    queue.open = 0;
    if (queue.fds[0] >= 0) {
        close(queue.fds[0]);
        close(queue.fds[1]);
        queue.fds[0] = queue.fds[1] = -1;
        make_pipe();  /* on failure async handlers answer UNAVAILABLE */
    }
    free(finisher.calls);
    finisher.calls = NULL;
    finisher.len = finisher.cap = 0;
    finisher.state = 0;
    finisher.sleeping = 0;
    finisher.busy = 0;
    /* Waited on by threads that are not in this process. */
    pthread_cond_init(&finisher.wake, NULL);
    pthread_cond_init(&finisher.idle, NULL);
    pthread_mutex_unlock(&finisher.lock);
    pthread_mutex_unlock(&queue.lock);
}

static PyMethodDef loop_queue_methods[] = {
    {"take_calls", queue_take_calls, METH_NOARGS,
     "Up to 64 queued entries: (call address, binding or None for a cancel, "
     "cancelled, payload view)."},
    {"finish_taken", (PyCFunction)(void (*)(void))queue_finish_taken,
     METH_FASTCALL, "Finishes a taken call OK with a bytes answer and drops "
     "its reference."},
    {NULL, NULL, 0, NULL},
};

static void register_fork_handlers(void) {
    pthread_atfork(before_fork, parent_after_fork, child_after_fork);
}

static int _pgf_loop_queue_install(void *namespace) {
    static pthread_once_t fork_handlers = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handlers, register_fork_handlers);
    return install_methods(namespace, loop_queue_methods);
}
