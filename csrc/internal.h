/* Shared internals of the shim; not part of the ABI. */
#ifndef PGF_INTERNAL_H
#define PGF_INTERNAL_H

#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* rwlocks */
#endif

#include "pygrpc_ffi.h"

#include <pthread.h>

#define PGF_LIVE_KINDS 5

/* No object is larger than PTRDIFF_MAX bytes: a longer (pointer, length)
 * argument is rejected before any size arithmetic or memory access, so
 * len + 1 and the like never wrap around. */
static inline int pgf__len_ok(size_t len) { return len <= (size_t)PTRDIFF_MAX; }

void pgf__live_add(int kind, int64_t delta);

/* Atomic refcount helpers (GCC/Clang builtins keep the code C99). */
static inline void pgf__ref(int64_t *refs) {
    __atomic_fetch_add(refs, 1, __ATOMIC_RELAXED);
}
/* Returns 1 when the last reference went. */
static inline int pgf__unref(int64_t *refs) {
    return __atomic_sub_fetch(refs, 1, __ATOMIC_ACQ_REL) == 0;
}

typedef struct pgf_md_entry {
    char *key;          /* NUL-terminated; value follows in the same block */
    size_t key_len;
    uint8_t *value;     /* NUL-terminated for convenience, may hold NULs */
    size_t value_len;
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

/* A registration: refcounted so that unregistering during calls is safe. */
typedef struct pgf_handler {
    int64_t refs;
    pgf_handler_fn fn;
    void *data;
    pgf_release_fn release;
} pgf_handler;

pgf_handler *pgf__handler_new(pgf_handler_fn fn, void *data,
                              pgf_release_fn release);
void pgf__handler_ref(pgf_handler *h);
void pgf__handler_unref(pgf_handler *h);

/* Looks up the handler for a call; returns a new reference or NULL.
 * *service_known tells whether anything is registered for the service. */
pgf_handler *pgf__registry_lookup(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  const char *method, size_t method_len,
                                  int *service_known);

/* Starts a call on handler h (reference transferred to the call). */
void pgf__call_run(pgf_call *call, pgf_handler *h);
int pgf__call_begin_dispatch(pgf_call *call, pgf_done_fn done, void *ud);
void pgf__call_wait(pgf_call *call);
const char *pgf__call_path(const pgf_call *call, size_t *len);

#endif
