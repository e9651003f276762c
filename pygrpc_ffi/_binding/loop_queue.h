/* The hand-off of async unary calls to the package's event loop (see
 * loop_queue.c): what Python and the registry call.  build.py reads the
 * cdef from this file. */
#ifndef PGF_PYSRC_LOOP_QUEUE_H
#define PGF_PYSRC_LOOP_QUEUE_H

#include <stddef.h>

#include "pygrpc_ffi.h"

/* One entry taken from the queue: a call to start (a reference OWNED by the
 * taker, cancelled 0 or 1, with its request), or, with handler_data NULL,
 * word that a call was cancelled after it was queued (the call may be gone
 * by then: only compare it), or, with op set, an async stream's read or
 * write that ended (stream_io.c's, OWNED by the taker). */
typedef struct {
    pgf_call *call;
    void *handler_data;
    void *op;
    int cancelled;
    const uint8_t *data;
    size_t len;
    pgf_message *msg;  /* OWNED reference, NULL if the host lent the bytes */
} _pgf_queued;

/* The file descriptor that becomes readable while entries wait; -1 if it
 * cannot be made.  The same for the whole process. */
static int _pgf_loop_queue_fd(void);

/* The pgf_handler_fn of async unary Python registrations (registered with
 * PGF_FLAG_NONBLOCKING: it never blocks and takes no GIL).  The call is
 * queued for the loop, or answered UNAVAILABLE while the queue is closed,
 * RESOURCE_EXHAUSTED when it is full. */
static void _pgf_loop_queue_handle(void *handler_data, pgf_call *call);

/* Moves up to cap entries into out, oldest first; returns how many.  When
 * it empties the queue, the file descriptor stops being readable. */
static size_t _pgf_loop_queue_take(_pgf_queued *out, size_t cap);

/* At most limit calls wait to be taken (default 1000); beyond it, a call is
 * answered RESOURCE_EXHAUSTED at once (a loop blocked by a handler must not
 * let calls pile up without bound). */
static void _pgf_loop_queue_set_limit(size_t limit);

/* open 1: accept calls (the loop runs).  open 0: answer every queued call
 * and every later one UNAVAILABLE (the loop stopped). */
static void _pgf_loop_queue_set_open(int open);

/* Waits until every call the loop answered has been finished by the
 * finisher thread (their done callbacks, which may enter Python, have
 * returned), at most timeout_ms; 1 if so, 0 on timeout.  For the loop's
 * stop, before the interpreter may finalize. */
static int _pgf_loop_queue_wait_finished(int timeout_ms);

/* Once per process, after _pgf_unary_setup: puts the builtins take_calls
 * and finish_taken into namespace (a dict, borrowed).  PGF_OK or
 * PGF_ENOMEM.  Registrations that queue calls use the handler data of
 * _pgf_unary_binding_new. */
static int _pgf_loop_queue_install(void *namespace);

#endif
