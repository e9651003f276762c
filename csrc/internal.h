/* Shared internals of the shim; not part of the ABI (hidden symbols).
 *
 * One file per concept, in layers: a file calls only files on lower lines,
 * never one on its own line or above (tests/c/check_layering.py reads the
 * block below and fails on any other call, and on any cycle).
 *
 * LAYERS (top first)
 *   dispatch.c embed.c
 *   stream.c cancel.c finish.c request.c response.c
 *   call.c registry.c
 *   handler.c
 *   name.c message.c metadata.c metrics.c
 *   live.c abi.c
 * END LAYERS
 *
 *   dispatch   pgf_dispatch*: looks the handler up, starts the call, runs it
 *   embed      starting an embedded Python interpreter (stands alone)
 *   stream     reads and writes of a call: handler side and host side
 *   cancel     pgf_call_cancel and the cancellation callback
 *   finish     pgf_call_finish: the one completion of a call
 *   request    what the host sets before dispatch, read by the handler
 *   response   what the handler answers, read or taken by the host
 *   call       the call object: lifetime, its lock, the operations still
 *              outstanding on it (taken when it is cancelled, finished or
 *              freed), and the host's stream function
 *   registry   the map from service and method names to registrations
 *   handler    a refcounted handler registration
 *   name       immutable refcounted strings
 *   message    bytes crossing the ABI: refcounted messages, owned buffers
 *   metadata   metadata lists and the rules for what a server may send
 *   metrics    per-method call statistics and the host's gauges
 *   live       counts of live objects
 *   abi        versions and error texts
 */
#ifndef PGF_INTERNAL_H
#define PGF_INTERNAL_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* rwlocks */
#endif

#include "pygrpc_ffi.h"

#include <pthread.h>

/* No object is larger than PTRDIFF_MAX bytes: a longer (pointer, length)
 * argument is rejected before any size arithmetic or memory access, so
 * len + 1 and the like never wrap around. */
static inline int pgf__len_ok(size_t len) { return len <= (size_t)PTRDIFF_MAX; }

/* Atomic refcount helpers (GCC/Clang builtins keep the code C99). */
static inline void pgf__ref(int64_t *refs) {
    __atomic_fetch_add(refs, 1, __ATOMIC_RELAXED);
}
/* Returns 1 when the last reference went. */
static inline int pgf__unref(int64_t *refs) {
    return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL) == 0;
}

/* a + b, or 0 with *ok cleared when it overflows. */
static inline size_t pgf__add_size(size_t a, size_t b, int *ok) {
    if (a > (size_t)-1 - b) {
        *ok = 0;
        return 0;
    }
    return a + b;
}

/* A stored string, or "" when there is none; *len (if not NULL) its length. */
static inline const char *pgf__string_or_empty(const char *s, size_t s_len,
                                               size_t *len) {
    if (len)
        *len = s ? s_len : 0;
    return s ? s : "";
}

/* ---------------------------------------------------------------- live.c */

#define PGF_LIVE_KINDS 6

void pgf__live_add(int kind, int64_t delta);

/* ------------------------------------------------------------ metadata.c */

typedef struct pgf_md_entry {
    char *key;          /* NUL-terminated; value follows in the same block */
    size_t key_len;
    uint8_t *value;     /* NUL-terminated for convenience, may hold NULs */
    size_t value_len;
    int owns_block;     /* key points at a block to free with the list: its
                           own, or that of a list copied at once */
} pgf_md_entry;

struct pgf_metadata {
    pgf_md_entry *entries;
    size_t count;
    size_t cap;
    size_t wire_size;   /* HPACK size as sent, see pgf__md_wire_size */
};

void pgf__metadata_init(pgf_metadata *md);
void pgf__metadata_clear(pgf_metadata *md);
int pgf__metadata_append(pgf_metadata *md, const char *key, size_t key_len,
                         const uint8_t *value, size_t value_len);
/* Appends count entries copied into one block (owned by the first entry):
 * all or nothing.  PGF_EINVAL for an invalid entry or count, PGF_ENOMEM. */
int pgf__metadata_append_list(pgf_metadata *md,
                              const pgf_metadata_entry *entries, size_t count);
/* The HPACK size (RFC 7541 4.1) of an entry as gRPC sends it: key, value
 * (base64 for a binary key), 32 bytes of overhead.  Lengths <= PTRDIFF_MAX. */
size_t pgf__md_wire_size(const char *key, size_t key_len, size_t value_len);
/* pgf__metadata_append for response metadata: PGF_EMETADATA if the list's
 * wire size plus `reserved` would exceed PGF_MAX_RESPONSE_METADATA. */
int pgf__metadata_append_bounded(pgf_metadata *md, size_t reserved,
                                 const char *key, size_t key_len,
                                 const uint8_t *value, size_t value_len);
/* The length of the longest prefix of msg[0..len) whose percent-encoded form
 * (grpc-message) fits PGF_MAX_STATUS_MESSAGE bytes, cut between UTF-8
 * characters. */
size_t pgf__status_message_fit(const char *msg, size_t len);

/* ------------------------------------------------------------- message.c */

/* A response payload or message owned by a call, then by its host. */
typedef struct pgf_owned_buffer {
    pgf_release_fn release; /* NULL: a copy, its bytes follow in `copy` */
    void *ctx;
    uint8_t copy[];
} pgf_owned_buffer;

/* A new wrapper of (release, ctx) that owns it, counted in
 * PGF_LIVE_BUFFERS; NULL on allocation failure (release has run then). */
pgf_owned_buffer *pgf__owned_buffer_new(pgf_release_fn release, void *ctx);
/* A new copy of data[0..len), in the same allocation as its wrapper (its
 * release frees memory only); NULL on allocation failure. */
pgf_owned_buffer *pgf__owned_copy_new(const uint8_t *data, size_t len);
/* A pgf_release_fn: runs the wrapped release and frees the wrapper. */
void pgf__owned_buffer_release(void *owned_buffer);

/* ------------------------------------------------------------- metrics.c */

/* Where a dispatched call is counted: its table entry (NULL: not counted)
 * and when it was dispatched. */
typedef struct pgf__metrics_mark {
    void *entry; /* read and written atomically */
    int64_t start_ns;
} pgf__metrics_mark;

/* A call to path is dispatched (kind -1: no handler; registered: its
 * handler is registered for its method by name, so it may take any free
 * slot of the table, where other paths have only
 * PGF_METRICS_MAX_UNREGISTERED; request_received: its one request message
 * is there already).  Fills in *mark for the two functions below. */
void pgf__metrics_begin(pgf__metrics_mark *mark, const char *path,
                        size_t path_len, int kind, int registered,
                        int request_received);
/* The call finished with code (response_set: with a unary response). */
void pgf__metrics_finish(pgf__metrics_mark *mark, int code, int response_set);
/* The call delivered a request message (sent 0) or sent a response
 * message (sent 1). */
void pgf__metrics_message(pgf__metrics_mark *mark, int sent);

/* ------------------------------------------------------------- handler.c */

/* A registration: refcounted so that unregistering during calls is safe. */
typedef struct pgf_handler {
    int64_t refs;
    pgf_handler_fn fn;
    void *data;
    pgf_release_fn release;
    int kind;
    int nonblocking; /* registered with PGF_FLAG_NONBLOCKING */
    int by_name;     /* registered for one method, not a whole service */
} pgf_handler;

/* A new registration with one reference; NULL on allocation failure
 * (release has not run then). */
pgf_handler *pgf__handler_new(pgf_handler_fn fn, void *data,
                              pgf_release_fn release, int kind);
void pgf__handler_ref(pgf_handler *h);
/* Drops a reference; the last one runs release(data).  NULL is ok. */
void pgf__handler_unref(pgf_handler *h);

/* ------------------------------------------------------------ registry.c */

/* Looks up the handler for a call; returns a new reference or NULL.
 * *service_known tells whether anything is registered for the service. */
pgf_handler *pgf__registry_lookup(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  const char *method, size_t method_len,
                                  int *service_known);

/* ---------------------------------------------------------------- call.c */

/* An outstanding write: queued by the handler, then taken by the host. */
enum { PGF__WRITE_NONE, PGF__WRITE_QUEUED, PGF__WRITE_TAKEN };

struct pgf_call {
    int64_t refs;
    pgf_name *service;
    pgf_name *method;
    char *path;                 /* "/service/method", NUL-terminated */
    size_t path_len;

    /* Request (request.c): set by the host before dispatch. */
    const uint8_t *request;
    size_t request_len;
    pgf_message *request_msg;   /* owned request, or NULL (borrowed) */
    int request_set;
    pgf_metadata request_md;
    int64_t deadline;
    char *peer;
    size_t peer_len;
    pgf_metadata auth_md;       /* the transport's auth properties */
    char *identity_key;         /* an auth property name, or NULL */
    size_t identity_key_len;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int dispatched;
    int finished;               /* also read without mu: atomic */
    int cancelled;              /* also read without mu: atomic */
    int cancel_running;
    pthread_t cancel_thread;
    pgf_cancel_fn cancel_fn;
    void *cancel_data;
    pgf_done_fn done;
    void *done_data;
    pgf_handler *handler;

    /* Streams (stream.c). */
    pgf_stream_fn stream_fn;
    void *stream_data;
    int request_read;           /* the one request message was read */
    int requests_ended;         /* the host pushed the end of the stream */
    int read_pending;
    pgf_read_fn read_cb;
    void *read_ud;
    int write_state;            /* PGF__WRITE_* */
    const uint8_t *write_data;
    size_t write_len;
    pgf_owned_buffer *write_owner; /* NULL: borrowed bytes */
    pgf_write_fn write_cb;
    void *write_ud;
    int initial_md_ready;       /* also read without mu: atomic */
    int stream_fn_running;      /* stream_fn calls in progress (finish waits) */
    int nonblocking;            /* the handler is PGF_FLAG_NONBLOCKING */

    /* Response (response.c): set by the handler. */
    int status;
    char *message;
    size_t message_len;
    uint8_t *details;
    size_t details_len;
    pgf_metadata initial_md;
    pgf_metadata trailing_md;
    const uint8_t *response;
    size_t response_len;
    pgf_owned_buffer *response_owner;
    int compress;

    /* Metrics: counted once dispatched. */
    pgf__metrics_mark metrics;
};

static inline int pgf__call_is_finished(const pgf_call *c) {
    return __atomic_load_n(&c->finished, __ATOMIC_ACQUIRE);
}

/* Locks mu and returns PGF_OK unless *state (&c->dispatched for the
 * request side, &c->finished for the response side) is set; then returns
 * PGF_ESTATE with mu not held. */
static inline int pgf__call_lock_unless(pgf_call *c, const int *state) {
    pthread_mutex_lock(&c->mu);
    if (!*state)
        return PGF_OK;
    pthread_mutex_unlock(&c->mu);
    return PGF_ESTATE;
}

/* Runs fn(call, event, host_data) counted as in progress (see
 * pgf__call_stream_fn_elsewhere); mu is held on entry and released here.
 * Holds a reference: what fn completes on this thread may drop the
 * caller's last one. */
void pgf__call_run_stream_fn(pgf_call *call, pgf_stream_fn fn,
                             void *host_data, int event);
/* With mu held: stream_fn calls in progress on threads other than this one.
 * pgf_call_finish waits until there is none, so that hosts may free their
 * host_data once the done callback ran. */
int pgf__call_stream_fn_elsewhere(const pgf_call *call);
/* With mu held: takes an outstanding read to complete it with
 * PGF_ECANCELLED; returns its callback (NULL: none). */
pgf_read_fn pgf__call_take_read(pgf_call *call, void **ud);

/* What a cancellation completes: taken with mu held, run without it. */
typedef struct pgf__cancelled_ops {
    pgf_read_fn read_cb;
    void *read_ud;
    pgf_write_fn write_cb;
    void *write_ud;
    pgf_owned_buffer *write_owner;
} pgf__cancelled_ops;

/* With mu held: takes the outstanding read and a write the host has not
 * taken yet. */
void pgf__call_take_cancelled(pgf_call *call, pgf__cancelled_ops *ops);
/* Without mu: completes what pgf__call_take_cancelled took with
 * PGF_ECANCELLED. */
void pgf__call_run_cancelled(pgf_call *call, pgf__cancelled_ops *ops);

/* Dispatch: marks the call dispatched (PGF_ESTATE if it was, or is
 * finished) and takes the reference pgf_call_finish drops. */
int pgf__call_begin_dispatch(pgf_call *call, pgf_done_fn done, void *ud);
/* Hands the call the lookup's reference to its registration, dropped at
 * finish. */
void pgf__call_set_handler(pgf_call *call, pgf_handler *h);
/* Waits until the call is finished. */
void pgf__call_wait(pgf_call *call);

#endif
