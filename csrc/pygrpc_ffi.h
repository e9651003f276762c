/*
 * pygrpc_ffi.h -- C ABI between RPC servers (hosts) and request handlers.
 *
 * A host (for example a gRPC C++ server) creates one pgf_call per incoming
 * RPC, fills in the request, and dispatches it into a pgf_registry.  The
 * registry finds the handler registered for the call's service or method and
 * runs it.  The handler answers through the same pgf_call: response payload,
 * initial and trailing metadata, status.  Python handlers are registered by
 * the pygrpc_ffi Python package; C handlers may be registered directly.
 *
 * Conventions
 *   - Every function whose name does not say otherwise is thread-safe.
 *   - Functions that can fail return int: PGF_OK (0) or a negative PGF_E*
 *     code.  errno is never used.
 *   - Strings are (pointer, length) pairs and need not be NUL-terminated.
 *   - Every RPC is a stream of request messages and a stream of response
 *     messages; a unary call is a stream of one each way and keeps its own
 *     fast functions (pgf_call_set_request / pgf_call_set_response).  See
 *     "streams" below for reads, writes, flow control and half-close.
 *   - "since N" marks what version N of the ABI added; what has no such
 *     note is in every version (since 1).
 *   - Every argument has defined behaviour.  A NULL object (call, registry,
 *     name, metadata) gives PGF_EINVAL, NULL, 0 or "" and changes nothing;
 *     a NULL output pointer is skipped (the other outputs are still set);
 *     a NULL data pointer with a non-zero length is PGF_EINVAL (except in
 *     pgf_call_finish, see there).  A length above PTRDIFF_MAX (no object is
 *     that large) is PGF_EINVAL (PGF_EMETADATA for metadata, NULL for
 *     constructors) before any memory is read or size computed; sizes are
 *     computed without overflow, and an allocation that cannot be made is
 *     PGF_ENOMEM.
 *
 * Ownership: every pointer that crosses the ABI is one of three things, and
 * each function's comment says which, with these words:
 *   OWNED     the receiver owns it and gives it back exactly once: with the
 *             release function that came with it, or with the function the
 *             comment names (pgf_..._unref for refcounted objects).
 *   BORROWED  the owner keeps it; the receiver may use it until the moment
 *             the comment names ("until the call is finished"), and not
 *             after.  An argument BORROWED without a named moment is used
 *             during the function only.
 *   COPIED    the library copies the bytes before the function returns; the
 *             caller's bytes stay the caller's.
 * Pointer arguments are BORROWED for the function's duration, and what the
 * library keeps of them is COPIED, unless the comment says otherwise.  Bytes
 * handed over without a copy come with a release argument, as sqlite3's
 * destructor argument does:
 *   release a function  OWNED: the library takes the bytes over and runs
 *                       release(ctx) exactly once, when they are no longer
 *                       used -- also when the function fails (then before
 *                       it returns);
 *   release NULL        BORROWED until the moment the function names.
 * The same rule runs the other way: an output release (pgf_call_take_response,
 * pgf_call_take_write) is a function the host runs once, or NULL when
 * nothing is owed.  A function ending in _copy (pgf_call_set_response_copy)
 * takes the bytes COPIED instead.  A refcounted object (pgf_name,
 * pgf_message, pgf_call) returned OWNED is one reference: drop it with its
 * _unref; a reference passed OWNED is the callee's from then on, also when
 * the function fails (pgf_call_push_request_nonblocking's PGF_EWOULDBLOCK
 * is the one exception, and says so).
 *
 * C99.  Includes no Python header.  All names start with pgf_ / PGF_.
 */
#ifndef PYGRPC_FFI_H
#define PYGRPC_FFI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks every public function: exported from libpygrpc_ffi.so, which is
 * built with -fvisibility=hidden so that nothing else is. */
#ifndef PGF_API
#if defined(__GNUC__) && __GNUC__ >= 4
#define PGF_API __attribute__((visibility("default")))
#else
#define PGF_API
#endif
#endif

/* The library's version: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define PGF_VERSION_MAJOR 0
#define PGF_VERSION_MINOR 4
#define PGF_VERSION_PATCH 0
#define PGF_VERSION_NUMBER \
    (PGF_VERSION_MAJOR * 10000 + PGF_VERSION_MINOR * 100 + PGF_VERSION_PATCH)

/* The version of this ABI.  Grows only; compare with >= . */
#define PGF_ABI_VERSION 5

/* The ABI version the loaded library implements. */
PGF_API int pgf_abi_version(void);
/* PGF_VERSION_NUMBER of the loaded library (since 2). */
PGF_API unsigned pgf_version_number(void);

/* ---------------------------------------------------------------- errors */

#define PGF_OK 0
#define PGF_EINVAL (-1)     /* an argument is NULL, out of range or malformed */
#define PGF_ENOMEM (-2)     /* allocation failed; nothing was changed */
#define PGF_EEXIST (-3)     /* already registered */
#define PGF_ENOTFOUND (-4)  /* not registered */
#define PGF_EMETADATA (-5)  /* metadata key or value breaks the gRPC rules */
#define PGF_ESTATE (-6)     /* not allowed in the object's current state */
#define PGF_EPYTHON (-7)    /* the embedded interpreter reported an error */
#define PGF_EOF (-8)        /* since 2: the request stream has ended */
#define PGF_ECANCELLED (-9) /* since 2: the call was cancelled, or a stream
                               operation cannot complete: a read once the
                               call is finished, a write the host could
                               not send (pgf_call_write on a finished call
                               is PGF_ESTATE) */
#define PGF_EWOULDBLOCK (-10) /* since 2: the handler may block (see
                                 pgf_dispatch_nonblocking) */
#define PGF_EVERSION (-11)  /* since 2: a file written by another version of
                               the library, in a layout this one does not
                               read (see pgf_metrics_snapshot_file) */

/* ---------------------------------------------------------------- limits */

/* What a call sends back is bounded so that a client with gRPC's default
 * limit (8 KiB of metadata per header block) receives the handler's status
 * rather than RESOURCE_EXHAUSTED.  Sizes count as gRPC sends and clients
 * account them (HPACK, RFC 7541 4.1): key + value + 32 per entry, binary
 * values base64-encoded, the status message percent-encoded. */
/* Status message: longer messages are truncated (between UTF-8 characters). */
#define PGF_MAX_STATUS_MESSAGE 2048
/* Initial metadata, and trailing metadata together with the status details:
 * an entry that would exceed it is refused with PGF_EMETADATA. */
#define PGF_MAX_RESPONSE_METADATA 5120

/* A static, human-readable description of an error code. */
PGF_API const char *pgf_strerror(int rc);

/* ---------------------------------------------------------- status codes */

/* gRPC status codes, same numbers as grpc/status.h. */
#define PGF_STATUS_OK 0
#define PGF_STATUS_CANCELLED 1
#define PGF_STATUS_UNKNOWN 2
#define PGF_STATUS_INVALID_ARGUMENT 3
#define PGF_STATUS_DEADLINE_EXCEEDED 4
#define PGF_STATUS_NOT_FOUND 5
#define PGF_STATUS_ALREADY_EXISTS 6
#define PGF_STATUS_PERMISSION_DENIED 7
#define PGF_STATUS_RESOURCE_EXHAUSTED 8
#define PGF_STATUS_FAILED_PRECONDITION 9
#define PGF_STATUS_ABORTED 10
#define PGF_STATUS_OUT_OF_RANGE 11
#define PGF_STATUS_UNIMPLEMENTED 12
#define PGF_STATUS_INTERNAL 13
#define PGF_STATUS_UNAVAILABLE 14
#define PGF_STATUS_DATA_LOSS 15
#define PGF_STATUS_UNAUTHENTICATED 16

/* ----------------------------------------------------------------- names */

/* An immutable, refcounted string (service or method name). */
typedef struct pgf_name pgf_name;

/* OWNED: a new name of s[0..len), COPIED; NULL on allocation failure, if s
 * is NULL with len > 0, or if len > PTRDIFF_MAX.  Release with
 * pgf_name_unref. */
PGF_API pgf_name *pgf_name_new(const char *s, size_t len);
/* Adds a reference; returns name.  Each reference needs one pgf_name_unref. */
PGF_API pgf_name *pgf_name_ref(pgf_name *name);
/* Drops a reference; the name is freed when the last one goes.  NULL is ok. */
PGF_API void pgf_name_unref(pgf_name *name);
/* BORROWED until the caller's reference goes; NUL-terminated. */
PGF_API const char *pgf_name_str(const pgf_name *name);
/* The length of pgf_name_str, without its NUL; 0 for NULL. */
PGF_API size_t pgf_name_len(const pgf_name *name);

/* -------------------------------------------------------------- metadata */

/* An ordered, multi-valued list of (key, value) entries owned by a call.
 * Response metadata (initial, trailing) passed pgf_metadata_validate, so its
 * keys are lowercase.  Request metadata holds the keys as the host added
 * them, not checked nor lowercased (HTTP/2 transports deliver lowercase
 * keys; a host of another kind lowercases them itself if it must).  Values
 * of binary keys (at least 5 characters, ending in "-bin", as in gRPC core:
 * the key "-bin" alone is not binary) are raw bytes. */
typedef struct pgf_metadata pgf_metadata;

/* The number of entries; 0 for NULL. */
PGF_API size_t pgf_metadata_count(const pgf_metadata *md);
/* Entry i (0-based).  Outputs are BORROWED until the call that owns md is
 * freed (response metadata: or reset by pgf_call_reset_response).  Returns
 * PGF_EINVAL if i is out of range. */
PGF_API int pgf_metadata_get(const pgf_metadata *md, size_t i,
                     const char **key, size_t *key_len,
                     const uint8_t **value, size_t *value_len);

/* PGF_OK if (key, value) may be sent by a server, else PGF_EMETADATA:
 * key matches [0-9a-z_.-]+ and is not one that HTTP/2, gRPC's framing or the
 * call owns (connection, content-length, content-type, keep-alive,
 * proxy-connection, te, transfer-encoding, upgrade, grpc-status,
 * grpc-message, grpc-status-details-bin (sent by pgf_call_set_status_details),
 * grpc-timeout, grpc-encoding, grpc-accept-encoding,
 * grpc-internal-encoding-request, grpc-internal-stream-encoding-request,
 * grpc-previous-rpc-attempts, grpc-trace-bin, grpc-tags-bin,
 * grpc-server-stats-bin, grpclb_client_stats); other "grpc-" keys pass (grpc-retry-pushback-ms,
 * whose value must be 1 to 18 decimal digits, as gRPC parses it, ...).  Unless the key is binary (5 or more characters ending in "-bin",
 * gRPC core's rule), value is printable ASCII (0x20-0x7e) with no leading or
 * trailing space.  Every entry of a call's
 * initial and trailing metadata passed this, so hosts can send them as is. */
PGF_API int pgf_metadata_validate(const char *key, size_t key_len,
                          const uint8_t *value, size_t value_len);
/* 1 if pgf_metadata_validate refuses key because HTTP/2, gRPC or the call
 * owns it (the list above), else 0 (since 4).  A handler's entry with such a
 * key can be dropped and the call still end as the handler chose; any other
 * refusal is a malformed entry. */
PGF_API int pgf_metadata_key_owned(const char *key, size_t key_len);

/* -------------------------------------------------------------- messages */

/* One message's bytes, passed without a copy and refcounted (since 2).  The
 * host wraps the bytes it received; the call and every reader that wants
 * them hold a reference, so the bytes stay valid as long as anything still
 * uses them (a Python view, slice or export of a request payload holds one
 * until it is garbage-collected). */
typedef struct pgf_message pgf_message;

/* Releases a buffer handed across the ABI; ctx is the pointer given with it. */
typedef void (*pgf_release_fn)(void *ctx);

/* OWNED: a new message over data[0..len), not copied.  release a function:
 * the bytes are OWNED by the message, and release(ctx) runs exactly once,
 * on the thread that drops the last reference.  release NULL: the bytes
 * are BORROWED until the last reference goes (static bytes, for example).
 * NULL if data is NULL with len > 0 or len > PTRDIFF_MAX, or on allocation
 * failure; release has run then.  Release with pgf_message_unref. */
PGF_API pgf_message *pgf_message_new(const uint8_t *data, size_t len,
                                     pgf_release_fn release, void *ctx);
/* Adds a reference; returns m.  NULL is ok. */
PGF_API pgf_message *pgf_message_ref(pgf_message *m);
/* Drops a reference; the last one runs the release.  NULL is ok. */
PGF_API void pgf_message_unref(pgf_message *m);
/* BORROWED until the caller's reference goes; *len may be 0.  NULL m gives
 * NULL and 0.  len may be NULL. */
PGF_API const uint8_t *pgf_message_data(const pgf_message *m, size_t *len);

/* ----------------------------------------------------------------- calls */

/* One RPC.  Created by the host, refcounted: the host's reference, the
 * dispatch in progress and the handler each hold one while they use it. */
typedef struct pgf_call pgf_call;

/* Completion callback for pgf_dispatch_async.  Runs once, on the thread on
 * which the handler finished (possibly inside pgf_dispatch_async itself).
 * call is BORROWED for the duration of the callback. */
typedef void (*pgf_done_fn)(pgf_call *call, void *user_data);

/* Cancellation callback, see pgf_call_on_cancel. */
typedef void (*pgf_cancel_fn)(pgf_call *call, void *user_data);

/* OWNED: a new call for the method path "/package.Service/Method".
 * Returns NULL if the path is malformed or on allocation failure.
 * Release with pgf_call_unref. */
PGF_API pgf_call *pgf_call_new(const char *path, size_t path_len);
/* Adds a reference; returns call.  Each reference needs one pgf_call_unref.
 * NULL is ok. */
PGF_API pgf_call *pgf_call_ref(pgf_call *call);
/* Drops a reference.  On the last one, a response payload or message that
 * nobody took is released (its release function may enter Python: see
 * pgf_call_take_response), a write still outstanding gets its callback with
 * PGF_ECANCELLED (call must not be used in it), and the request message and
 * the names are unreferenced.  The handler's registration is not touched:
 * a dispatched call holds a reference to its call until it finishes, and
 * drops the registration then. */
PGF_API void pgf_call_unref(pgf_call *call);

/* BORROWED until the caller's reference to the call goes. */
PGF_API const pgf_name *pgf_call_service(const pgf_call *call);
PGF_API const pgf_name *pgf_call_method(const pgf_call *call);

/* --- request side: set by the host before dispatch ---------------------- */

/* Each of these returns PGF_ESTATE, and changes nothing, once the call is
 * dispatched (pgf_call_set_request_message releases msg then, as on any
 * error). */

/* The request payload, BORROWED until the call is finished (pgf_dispatch
 * returned or the done callback ran): data must stay valid and unchanged
 * until then.  Python handlers get a copy of borrowed bytes (a view could
 * outlive them); hosts that want zero copy to Python use
 * pgf_call_set_request_message.  Replaces an earlier request. */
PGF_API int pgf_call_set_request(pgf_call *call, const uint8_t *data, size_t len);
/* The request payload as a message (since 2): msg is an OWNED reference,
 * the call's from now on, also on error.  The bytes live as long as the call
 * or any reference taken with pgf_call_request_message, whichever is longer:
 * a handler, or a Python view of them, may keep them past the call.
 * Replaces an earlier request.  PGF_ESTATE once dispatched. */
PGF_API int pgf_call_set_request_message(pgf_call *call, pgf_message *msg);
/* Appends one request metadata entry, COPIED.  The key must be non-empty
 * (PGF_EINVAL); host input is otherwise taken as the transport delivered
 * it: neither checked nor lowercased. */
PGF_API int pgf_call_add_request_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len);
/* One request metadata entry as a host received it (since 2). */
typedef struct pgf_metadata_entry {
    const char *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
} pgf_metadata_entry;
/* Appends count request metadata entries (since 2), COPIED together into
 * one allocation: a host that copies a whole header list this way makes one
 * malloc per call, not one per entry.  All or nothing: PGF_EINVAL (nothing
 * appended) if an entry breaks the rule of pgf_call_add_request_metadata, if
 * entries is NULL with count > 0, or if count exceeds what memory can hold;
 * PGF_ENOMEM; PGF_ESTATE once dispatched.  count 0 appends nothing (PGF_OK).
 * entries is BORROWED for the function's duration only.  Bounding what a
 * client may send is the host's job: this copies whatever it is given. */
PGF_API int pgf_call_add_request_metadata_list(pgf_call *call,
                                  const pgf_metadata_entry *entries,
                                  size_t count);
/* Absolute deadline, nanoseconds since the Unix epoch (CLOCK_REALTIME);
 * INT64_MAX (the default) means none. */
PGF_API int pgf_call_set_deadline(pgf_call *call, int64_t deadline_unix_ns);
/* The client's address, COPIED, for example "ipv4:127.0.0.1:5123". */
PGF_API int pgf_call_set_peer(pgf_call *call, const char *peer, size_t len);
/* Appends one auth property of the caller's transport (since 4), COPIED:
 * what grpc's AuthContext holds, for example "transport_security_type" =
 * "ssl" or one "x509_subject_alternative_name" per SAN of a client
 * certificate.  A name may repeat.  The name must be non-empty (PGF_EINVAL);
 * values are bytes.  Hosts add them in the order grpc lists them. */
PGF_API int pgf_call_add_auth_property(pgf_call *call,
                                       const char *name, size_t name_len,
                                       const uint8_t *value, size_t value_len);
/* Appends count auth properties (since 4), COPIED together into one
 * allocation (a host adds a connection's properties to each of its calls
 * this way); all or nothing, with the rules of
 * pgf_call_add_request_metadata_list. */
PGF_API int pgf_call_add_auth_properties(pgf_call *call,
                                         const pgf_metadata_entry *props,
                                         size_t count);
/* The name of the auth property that holds the caller's identity (since 4),
 * COPIED, as grpc's peer_identity_property_name: for example
 * "x509_subject_alternative_name" or "x509_common_name".  len 0 clears it
 * (no authenticated caller, the default).  Replaces an earlier one. */
PGF_API int pgf_call_set_peer_identity_key(pgf_call *call, const char *name,
                                           size_t len);

/* --- request side: read by the handler ---------------------------------- */

/* The request payload as set by the host, BORROWED until the call is
 * finished; *len may be 0.  Either output may be NULL; a NULL call gives
 * NULL, 0. */
PGF_API void pgf_call_request(const pgf_call *call, const uint8_t **data, size_t *len);
/* OWNED: a new reference to the request set with
 * pgf_call_set_request_message (since 2), or NULL if there is none or the
 * host lent its bytes with pgf_call_set_request.  Release with
 * pgf_message_unref. */
PGF_API pgf_message *pgf_call_request_message(const pgf_call *call);
/* Request metadata, BORROWED until the caller's reference to the call goes. */
PGF_API const pgf_metadata *pgf_call_request_metadata(const pgf_call *call);
/* The deadline the host set; INT64_MAX if none. */
PGF_API int64_t pgf_call_deadline(const pgf_call *call);
/* The peer, BORROWED until the caller's reference to the call goes; "" if
 * the host set none. */
PGF_API const char *pgf_call_peer(const pgf_call *call, size_t *len);
/* The auth properties the host added (since 4), in order, BORROWED until the
 * caller's reference to the call goes; empty (not NULL) for a valid call
 * without any (plaintext, or an in-process call). */
PGF_API const pgf_metadata *pgf_call_auth_properties(const pgf_call *call);
/* The peer identity key (since 4), BORROWED until the caller's reference to
 * the call goes; NUL-terminated, "" (len 0) if the caller is not
 * authenticated. */
PGF_API const char *pgf_call_peer_identity_key(const pgf_call *call,
                                               size_t *len);

/* --- cancellation -------------------------------------------------------- */

/* Marks the call cancelled (the client went away or the deadline passed) and
 * runs the cancellation callback, if any, on this thread.  Idempotent.
 * The callback of a Python handler takes the GIL, so this may block: hosts
 * with event threads that must not block call it from a thread of their own. */
PGF_API void pgf_call_cancel(pgf_call *call);
/* 1 once the call is cancelled, else 0. */
PGF_API int pgf_call_is_cancelled(const pgf_call *call);
/* Sets the function run once when the call is cancelled: at once (on this
 * thread) if it already is, never if the call finishes first.  Replaces an
 * earlier one; fn NULL removes it.  Returns PGF_ESTATE once finished. */
PGF_API int pgf_call_on_cancel(pgf_call *call, pgf_cancel_fn fn, void *user_data);

/* --- response side: set by the handler, before pgf_call_finish ------------ */

/* Each function here that changes the call returns PGF_ESTATE, and changes
 * nothing, once the call is finished (a release given has run then, as on
 * any error). */

/* The response payload, not copied.  release a function: the bytes are
 * OWNED by the call from now on, and release(ctx) runs exactly once, when
 * the host is done with them, or when the call is freed if nobody took
 * them; on error, before this returns.  release NULL: BORROWED until the
 * host is done with them (it runs the release it took with
 * pgf_call_take_response) or the call is freed.  Replaces (and releases) an
 * earlier payload.  PGF_ESTATE once the call is finished. */
PGF_API int pgf_call_set_response(pgf_call *call, const uint8_t *data, size_t len,
                          pgf_release_fn release, void *ctx);
/* Like pgf_call_set_response, but data[0..len) is COPIED (since 3): the
 * bytes stay the caller's.  The release a host takes with the copy never
 * blocks (pgf_release_never_blocks).  PGF_EINVAL for bad
 * arguments, PGF_ESTATE once the call is finished, PGF_ENOMEM if the copy
 * cannot be made; on any error the call is unchanged. */
PGF_API int pgf_call_set_response_copy(pgf_call *call, const uint8_t *data,
                                       size_t len);
/* Append response metadata, COPIED, sent before the payload (initial) or
 * with the status (trailing).  PGF_EMETADATA if pgf_metadata_validate
 * rejects the entry, or if the list would exceed PGF_MAX_RESPONSE_METADATA
 * (trailing: with the status details); the call is unchanged then.  Initial
 * metadata is PGF_ESTATE also once it is sent or queued to be (see
 * "streams"). */
PGF_API int pgf_call_add_initial_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len);
PGF_API int pgf_call_add_trailing_metadata(pgf_call *call,
                                   const char *key, size_t key_len,
                                   const uint8_t *value, size_t value_len);
/* Serialized google.rpc.Status, COPIED, sent by the host as the trailer
 * "grpc-status-details-bin".  PGF_EMETADATA if it and the trailing metadata
 * would exceed PGF_MAX_RESPONSE_METADATA; the call is unchanged then. */
PGF_API int pgf_call_set_status_details(pgf_call *call,
                                const uint8_t *data, size_t len);
/* Asks the host to compress the response payload (enable != 0) with its
 * default algorithm, or to send it uncompressed (the default). */
PGF_API int pgf_call_set_compress_response(pgf_call *call, int enable);
/* 1 if the handler asked for a compressed response, else 0. */
PGF_API int pgf_call_compress_response(const pgf_call *call);
/* Drops every response field set so far (payload released, metadata and
 * details cleared), for a handler that fails after it started answering. */
PGF_API int pgf_call_reset_response(pgf_call *call);

/* Completes the call with a status code and message (COPIED).  Exactly once
 * per call, from any thread; a second finish returns PGF_ESTATE.  A code
 * outside 0..16 is sent as UNKNOWN.  A message longer than
 * PGF_MAX_STATUS_MESSAGE (as sent) is truncated.  A valid call always
 * finishes, whatever the other arguments: msg NULL (whatever len) or len >
 * PTRDIFF_MAX means no message, and if the message cannot be copied (out of
 * memory) the call finishes without it; only call NULL is PGF_EINVAL.
 * Wakes pgf_dispatch, or runs the done callback of pgf_dispatch_async, on
 * this thread; then drops the call's reference to its registration (which
 * may release the handler data).  If a cancellation callback is running on
 * another thread, waits for it first, so that no callback runs after
 * finish. */
PGF_API int pgf_call_finish(pgf_call *call, int code, const char *msg, size_t len);
/* 1 once the call is finished, else 0. */
PGF_API int pgf_call_is_finished(const pgf_call *call);

/* --- response side: read by the host once the call is finished ---------- */

/* The status code the call finished with; PGF_STATUS_UNKNOWN until then. */
PGF_API int pgf_call_status(const pgf_call *call);
/* The status message, BORROWED until the caller's reference to the call
 * goes; NUL-terminated, "" if none. */
PGF_API const char *pgf_call_status_message(const pgf_call *call, size_t *len);
/* The serialized google.rpc.Status, BORROWED until the caller's reference
 * to the call goes; *len 0 if none.  Either output may be NULL. */
PGF_API void pgf_call_status_details(const pgf_call *call,
                             const uint8_t **data, size_t *len);
/* Response metadata, BORROWED until the caller's reference to the call
 * goes. */
PGF_API const pgf_metadata *pgf_call_initial_metadata(const pgf_call *call);
PGF_API const pgf_metadata *pgf_call_trailing_metadata(const pgf_call *call);
/* The response payload, BORROWED until it is taken or the call is freed;
 * *len 0 if none.  Either output may be NULL. */
PGF_API void pgf_call_response(const pgf_call *call, const uint8_t **data, size_t *len);
/* Takes the response payload OWNED: the host runs *release(*ctx) exactly
 * once (from any thread) when it is done with *data.  *release is NULL, and
 * nothing is owed, if there is no payload.  PGF_EINVAL if an output is
 * NULL. */
PGF_API int pgf_call_take_response(pgf_call *call, const uint8_t **data, size_t *len,
                           pgf_release_fn *release, void **ctx);
/* 1 if release(ctx), as taken with pgf_call_take_response or
 * pgf_call_take_write, only frees memory (since 3): the bytes are the
 * call's own copy (or BORROWED from the handler), and a host may release
 * them on any thread, an event thread included.  0 otherwise: the release
 * may block (it may take the GIL) and belongs on a thread that may. */
PGF_API int pgf_release_never_blocks(pgf_release_fn release, void *ctx);

/* --------------------------------------------------------------- streams */

/* Since 2.  Every call is a stream of request messages and a stream of
 * response messages, driven by the handler and served by the host:
 *
 *   Reads are pulled.  The handler asks for the next request message with
 *   pgf_call_read (callback) or pgf_call_read_wait (blocking); the call then
 *   reports PGF_EVENT_READ to its host, which reads one message from the
 *   network and hands it over with pgf_call_push_request.  At most one read
 *   is outstanding, so the host never holds more than one unread message and
 *   a client that sends faster than the handler reads is slowed by the
 *   transport's flow control.  A call whose request was set with
 *   pgf_call_set_request(_message) has a request stream of exactly that one
 *   message: reads return it, then PGF_EOF, and never involve the host.
 *
 *   Writes are pushed with back-pressure.  pgf_call_write (callback) or
 *   pgf_call_write_wait (blocking) queues one response message; the call
 *   reports PGF_EVENT_WRITE; the host takes it with pgf_call_take_write,
 *   hands it to its transport and completes it with pgf_call_write_done.  At
 *   most PGF_MAX_WRITES (1) write is outstanding: a handler that produces
 *   faster than the client reads waits, it is never buffered.  A host may
 *   complete a write as soon as it has handed the message to its transport,
 *   before the transport is done with the bytes (the gRPC C++ host does so
 *   for OWNED messages, which it releases later, and for small ones it
 *   copies): the handler's next write then waits until the transport takes
 *   the one before it, so a stream holds at most two response messages in
 *   the host.  A failure to send a message completed so shows as the
 *   cancellation of the call.
 *
 *   Ownership per message follows the release rule (see the top): a
 *   request message is an OWNED pgf_message reference the reader releases;
 *   a response message is OWNED with a release function, or BORROWED with
 *   release NULL until its write completes (the callback ran, or
 *   pgf_call_write_wait returned).
 *
 *   Half-close: the end of the request stream reads as PGF_EOF; the handler
 *   ends the response stream by finishing the call (status and trailers
 *   follow the last message).  Initial metadata goes before the first
 *   message, or alone when the handler calls pgf_call_send_initial_metadata,
 *   or with the status if no message was sent; once sent (or queued to be),
 *   pgf_call_add_initial_metadata returns PGF_ESTATE.
 *
 *   Cancellation (pgf_call_cancel) completes an outstanding read, and a write
 *   the host has not taken, with PGF_ECANCELLED at once; later reads and
 *   writes return PGF_ECANCELLED.  A write the host has taken completes when
 *   the host says so.
 *
 *   Finishing with a read outstanding completes the read with PGF_ECANCELLED
 *   (its callback runs inside pgf_call_finish).  Finishing with a write
 *   outstanding is allowed: the message is still sent, before the status,
 *   and its callback runs when the host completes it, after the finish.
 *   Every read or write that returned PGF_OK gets exactly one callback.
 *
 * Callbacks run on the thread that completes the operation (the host's, in
 * pgf_call_push_request / pgf_call_write_done / pgf_call_cancel, or the
 * handler's own when the result is at hand) with no lock held; they may call
 * any pgf_call_* function.  A callback may enter Python: hosts whose event
 * threads must not block call the completing functions from threads of
 * their own, as for pgf_call_cancel, unless the _nonblocking forms (since
 * 2) say the callback may run on the event thread. */

/* Method kinds, as gRPC names them (since 2). */
#define PGF_KIND_UNARY 0            /* one request, one response */
#define PGF_KIND_CLIENT_STREAMING 1 /* request stream, one response */
#define PGF_KIND_SERVER_STREAMING 2 /* one request, response stream */
#define PGF_KIND_BIDI_STREAMING 3   /* both streams */

/* Or'ed into the kind given to pgf_registry_register (since 2): the handler
 * and every callback and release function it gives its calls (through
 * pgf_call_read, pgf_call_write, pgf_call_on_cancel, pgf_call_set_response)
 * never block and never enter Python, so a host may run them on its event
 * threads: it dispatches with pgf_dispatch_nonblocking, and completes the
 * call's operations inline when pgf_call_nonblocking says so.  C handlers
 * only. */
#define PGF_FLAG_NONBLOCKING 0x100

/* Writes a handler may have outstanding on one call. */
#define PGF_MAX_WRITES 1

/* What a call reports to its host (since 2), see pgf_stream_fn. */
#define PGF_EVENT_READ 1             /* read one request message, then push it */
#define PGF_EVENT_WRITE 2            /* a response message waits: take it */
#define PGF_EVENT_INITIAL_METADATA 3 /* send the initial metadata now */

/* The host's side of a stream.  Runs on the handler's thread, inside the
 * handler's pgf_call_read / pgf_call_write / pgf_call_send_initial_metadata,
 * with none of the library's locks held (the handler's own may be: see
 * pgf_wait_hooks); must not block (start the network operation and
 * return).  call is BORROWED for the duration. */
typedef void (*pgf_stream_fn)(pgf_call *call, int event, void *host_data);

/* Handler callbacks: result is PGF_OK, PGF_EOF (reads: the client
 * half-closed) or PGF_ECANCELLED.  msg is OWNED by the callback (release it
 * with pgf_message_unref), NULL unless result is PGF_OK. */
typedef void (*pgf_read_fn)(pgf_call *call, int result, pgf_message *msg,
                            void *user_data);
typedef void (*pgf_write_fn)(pgf_call *call, int result, void *user_data);

/* --- host side ----------------------------------------------------------- */

/* Makes the call a stream served by fn (before dispatch; PGF_ESTATE after).
 * Without it, reads give the request set with pgf_call_set_request(_message)
 * and writes return PGF_ESTATE.  host_data must stay valid until the done
 * callback of pgf_dispatch_async has run: fn is never called once the call
 * is finished, and pgf_call_finish waits for a call of fn in progress on
 * another thread to return before it runs the done callback (one on its own
 * thread -- fn completed an operation whose callback finished the call --
 * is not waited for). */
PGF_API int pgf_call_set_stream(pgf_call *call, pgf_stream_fn fn,
                                void *host_data);
/* After PGF_EVENT_READ: hands over the next request message (an OWNED
 * reference, the call's from now on, also on error), or msg NULL for the end
 * of the request stream (the client half-closed, or the read failed).
 * Completes the handler's read on this thread.  PGF_ESTATE if no read was
 * asked (the call was cancelled or finished meanwhile): msg is released. */
PGF_API int pgf_call_push_request(pgf_call *call, pgf_message *msg);
/* After PGF_EVENT_WRITE (or in the done callback, for a write queued just
 * before the finish): takes the queued response message.  Like
 * pgf_call_take_response: OWNED bytes come with *release, which the host
 * runs once when done with them; *release NULL means the bytes are BORROWED
 * until the host calls pgf_call_write_done.  PGF_ENOTFOUND (outputs NULL/0)
 * if no write is queued.  *flags is reserved (0); flags may be NULL. */
PGF_API int pgf_call_take_write(pgf_call *call, const uint8_t **data,
                                size_t *len, pgf_release_fn *release,
                                void **ctx, unsigned *flags);
/* The message taken has been handed to the transport (ok != 0) or cannot be
 * sent (ok == 0: the stream is broken).  Completes the handler's write on
 * this thread.  PGF_ESTATE if no write was taken. */
PGF_API int pgf_call_write_done(pgf_call *call, int ok);
/* For a host's event thread (since 2): pgf_call_push_request if the
 * outstanding read's callback may run there -- the handler waits in
 * pgf_call_read_wait (whose callback only wakes it), or is
 * PGF_FLAG_NONBLOCKING -- or if no read is outstanding; else
 * PGF_EWOULDBLOCK and nothing changes (msg is still the caller's): push it
 * with pgf_call_push_request from a thread that may block.  Saves a hop
 * through a thread of the host's for every message of a blocking reader. */
PGF_API int pgf_call_push_request_nonblocking(pgf_call *call,
                                              pgf_message *msg);
/* For a host's event thread (since 2): pgf_call_write_done if the taken
 * write's callback may run there (the handler waits in pgf_call_write_wait,
 * or is PGF_FLAG_NONBLOCKING) or no write is taken; else PGF_EWOULDBLOCK and
 * nothing changes. */
PGF_API int pgf_call_write_done_nonblocking(pgf_call *call, int ok);
/* 1 if the call was dispatched to a handler registered with
 * PGF_FLAG_NONBLOCKING (since 2): the host may then push requests, complete
 * writes and cancel on any thread, its event threads included. */
PGF_API int pgf_call_nonblocking(const pgf_call *call);
/* 1 if the initial metadata is to be sent now (the handler asked for it,
 * queued a write, or finished), else 0.  Hosts read pgf_call_initial_metadata
 * once this is 1: it does not change any more. */
PGF_API int pgf_call_initial_metadata_ready(const pgf_call *call);

/* --- handler side -------------------------------------------------------- */

/* Asks for the next request message; cb(call, result, msg, user_data) runs
 * exactly once: at once on this thread if the result is at hand (the unary
 * request, the end of the stream, cancellation), else when the host pushes
 * it.  PGF_ESTATE if a read is outstanding (cb does not run then),
 * PGF_ECANCELLED if the call is cancelled or finished (nor then). */
PGF_API int pgf_call_read(pgf_call *call, pgf_read_fn cb, void *user_data);
/* Blocking form: waits for the next request message.  PGF_OK with *msg
 * OWNED, PGF_EOF or PGF_ECANCELLED (*msg NULL), PGF_ESTATE if another read
 * is outstanding.  The caller's reference must be valid on entry; the wait
 * holds one of its own, so the call may finish and its other references
 * go meanwhile (since 3).  Never call it on a thread the host needs to
 * push the message. */
PGF_API int pgf_call_read_wait(pgf_call *call, pgf_message **msg);
/* Queues one response message, not copied, and returns.  release a
 * function: data[0..len) is OWNED by the call from now on, and release(ctx)
 * runs exactly once, when the host is done with the bytes; release NULL:
 * BORROWED until the write completes.  cb(call, result, user_data) runs
 * exactly once when the host completed it (PGF_OK) or it failed
 * (PGF_ECANCELLED).  On error (PGF_EINVAL, also for len >
 * PTRDIFF_MAX; PGF_ESTATE if a write is outstanding, the call has no stream
 * or is finished; PGF_ECANCELLED), release has run, cb does not. */
PGF_API int pgf_call_write(pgf_call *call, const uint8_t *data, size_t len,
                           pgf_release_fn release, void *ctx,
                           pgf_write_fn cb, void *user_data);
/* Blocking form: queues the message and waits until the host completed the
 * write.  PGF_OK, PGF_ECANCELLED if it was not delivered, or an error of
 * pgf_call_write (release has run then).  References as in
 * pgf_call_read_wait. */
PGF_API int pgf_call_write_wait(pgf_call *call, const uint8_t *data,
                                size_t len, pgf_release_fn release, void *ctx);
/* What pgf_call_read_wait_hooked and pgf_call_write_wait_hooked run
 * around their wait, on the caller's thread, only if they have to wait
 * (since 5): before(arg) just before blocking, after(arg) once woken.  For
 * a caller that holds a lock other threads need while it waits -- Python's
 * GIL (PyEval_SaveThread / PyEval_RestoreThread) -- so that a read or write
 * the host ends at once costs it no release.  The host's stream event runs
 * with that lock held: hosts never block in it. */
typedef struct pgf_wait_hooks {
    void (*before)(void *arg);
    void (*after)(void *arg);
    void *arg;
} pgf_wait_hooks;
/* pgf_call_read_wait with hooks (NULL: none), since 5. */
PGF_API int pgf_call_read_wait_hooked(pgf_call *call, pgf_message **msg,
                                      const pgf_wait_hooks *hooks);
/* pgf_call_write_wait with hooks (NULL: none), since 5. */
PGF_API int pgf_call_write_wait_hooked(pgf_call *call, const uint8_t *data,
                                       size_t len, pgf_release_fn release,
                                       void *ctx, const pgf_wait_hooks *hooks);
/* Sends the initial metadata now, before any message (at most once; later
 * calls and calls after the first write return PGF_OK and do nothing). */
PGF_API int pgf_call_send_initial_metadata(pgf_call *call);

/* -------------------------------------------------------------- registry */

/* A thread-safe map from service names and full method paths to handlers. */
typedef struct pgf_registry pgf_registry;

/* A handler runs the call: it must call pgf_call_finish exactly once, before
 * returning or later from any thread (async).  To finish later, it takes its
 * own reference with pgf_call_ref.  handler_data is the pointer registered
 * with it. */
typedef void (*pgf_handler_fn)(void *handler_data, pgf_call *call);

/* OWNED: a new, empty registry; NULL on allocation failure. */
PGF_API pgf_registry *pgf_registry_new(void);
/* Unregisters everything and frees the registry.  Calls in flight finish
 * normally.  On pgf_default_registry() it does nothing: that one is never
 * freed. */
PGF_API void pgf_registry_free(pgf_registry *reg);
/* BORROWED: the process-wide registry that embedded hosts dispatch into and
 * that pygrpc_ffi.default_service() registers into.  Never freed. */
PGF_API pgf_registry *pgf_default_registry(void);

/* Registers fn for every method of service ("package.Service").  release a
 * function: handler_data is OWNED by the registry from now on, and
 * release(handler_data) runs exactly once, after the handler is
 * unregistered and the last call using it has finished -- on the thread
 * that dropped the last reference; on error, before this returns.  release
 * NULL: handler_data is BORROWED until then.  PGF_EEXIST if the service is
 * already registered. */
PGF_API int pgf_registry_register_service(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  pgf_handler_fn fn, void *handler_data,
                                  pgf_release_fn release);
/* Same, for one method; a method registration wins over its service's. */
PGF_API int pgf_registry_register_method(pgf_registry *reg,
                                 const char *service, size_t service_len,
                                 const char *method, size_t method_len,
                                 pgf_handler_fn fn, void *handler_data,
                                 pgf_release_fn release);
/* Registers fn for a method (method not NULL) or for every method of a
 * service (method NULL), served as a stream of the given PGF_KIND_* (since
 * 2; the two functions above register PGF_KIND_UNARY).  Ownership and
 * errors as above; PGF_EINVAL for an unknown kind. */
PGF_API int pgf_registry_register(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  const char *method, size_t method_len,
                                  int kind, pgf_handler_fn fn,
                                  void *handler_data, pgf_release_fn release);
/* The PGF_KIND_* (without PGF_FLAG_NONBLOCKING) a call to service/method
 * would be served as, or
 * PGF_ENOTFOUND if no handler would take it (since 2).  Hosts ask before
 * reading the request, to know how to drive the call. */
PGF_API int pgf_registry_method_kind(pgf_registry *reg,
                                     const char *service, size_t service_len,
                                     const char *method, size_t method_len);

/* Removes a registration (method registrations of the service stay).
 * Calls in flight finish normally.  PGF_ENOTFOUND if not registered. */
PGF_API int pgf_registry_unregister_service(pgf_registry *reg,
                                    const char *service, size_t service_len);
PGF_API int pgf_registry_unregister_method(pgf_registry *reg,
                                   const char *service, size_t service_len,
                                   const char *method, size_t method_len);
/* 1 if the service has a service-level or any method-level registration. */
PGF_API int pgf_registry_has_service(pgf_registry *reg,
                             const char *service, size_t service_len);
/* 1 if a call to service/method would find a handler. */
PGF_API int pgf_registry_has_method(pgf_registry *reg,
                            const char *service, size_t service_len,
                            const char *method, size_t method_len);
/* Lists the services (service-level or with a method-level registration),
 * sorted.  Fills out[0..min(n, cap)) with OWNED name references (release
 * each with pgf_name_unref) and returns n, the number of services. */
PGF_API size_t pgf_registry_list_services(pgf_registry *reg,
                                  pgf_name **out, size_t cap);

/* -------------------------------------------------------------- dispatch */

/* Runs call on its handler and returns when the call is finished, whether
 * the handler finished it before returning or later on another thread.
 * With no handler, finishes the call with UNIMPLEMENTED and the message
 * "unknown service S" or "unknown method M for service S".
 * Returns PGF_OK once finished; PGF_ESTATE if call was already dispatched.
 * Read the answer with the pgf_call_status... functions. */
PGF_API int pgf_dispatch(pgf_registry *reg, pgf_call *call);
/* Starts call on its handler, on this thread (it returns when the handler
 * returns, which an async handler does before it finishes); done(call,
 * user_data) runs exactly once when the call is finished.  The call holds its own
 * reference until done returns, so the host may unref its one at any time. */
PGF_API int pgf_dispatch_async(pgf_registry *reg, pgf_call *call,
                       pgf_done_fn done, void *user_data);
/* For a host's event thread (since 2): pgf_dispatch_async if the handler
 * was registered with PGF_FLAG_NONBLOCKING, or if there is none (the call
 * finishes with UNIMPLEMENTED here, without Python).  Otherwise returns
 * PGF_EWOULDBLOCK and changes nothing: dispatch the call from a thread that
 * may block.  The handler is looked up once, so a registration racing with
 * the call cannot make a blocking handler run here. */
PGF_API int pgf_dispatch_nonblocking(pgf_registry *reg, pgf_call *call,
                                     pgf_done_fn done, void *user_data);

/* ---------------------------------------------------------- live objects */

#define PGF_LIVE_NAMES 0     /* pgf_name objects */
#define PGF_LIVE_HANDLERS 1  /* registrations not yet released */
#define PGF_LIVE_CALLS 2     /* pgf_call objects */
#define PGF_LIVE_REGISTRIES 3 /* registries from pgf_registry_new */
#define PGF_LIVE_BUFFERS 4   /* response payloads not yet released */
#define PGF_LIVE_MESSAGES 5  /* pgf_message objects (since 2) */

/* How many objects of a kind are alive in the process; -1 for an unknown
 * kind.  Tests use it to prove that nothing leaks. */
PGF_API int64_t pgf_live_count(int kind);

/* --------------------------------------------------------------- metrics */

/* Per-method call statistics (since 2), counted by the shim itself as calls
 * pass through it -- without the GIL, for C and Python handlers alike --
 * with the names go-grpc-prometheus exports:
 *   started       pgf_dispatch / pgf_dispatch_async began the call
 *   handled[c]    the call finished with status c (pgf_call_finish)
 *   msg_received  request messages delivered (the unary request at
 *                 dispatch, then each message pgf_call_push_request hands
 *                 to a waiting read)
 *   msg_sent      response messages sent (pgf_call_set_response of a call
 *                 that finished OK, each pgf_call_write_done with ok != 0)
 *   in_flight     started and not yet finished
 *   duration      seconds from dispatch to finish, as a histogram
 *
 * The table is bounded (PGF_METRICS_MAX_METHODS entries, keyed by method
 * path): calls to unknown methods (UNIMPLEMENTED), paths longer than
 * PGF_METRICS_PATH_MAX - 1 bytes, and methods beyond the bound are counted
 * in one overflow entry whose path is "" and kind -1, so clients cannot grow
 * it.  Entries are never removed.  Paths with no handler registered for
 * them by name (served by a whole-service handler, or answered by the host
 * itself through pgf_metrics_count_refused) get entries of their own only
 * up to PGF_METRICS_MAX_UNREGISTERED of them (since 3): whatever method
 * names clients send, methods registered by name keep the other
 * PGF_METRICS_MAX_METHODS - PGF_METRICS_MAX_UNREGISTERED slots.
 *
 * If the environment variable PGF_METRICS_FILE names a file when the first
 * call is counted (or a host gauge published, see below), the table lives
 * in that file (shared mapping, created anew), so that a supervisor can
 * read the numbers of several server processes with
 * pgf_metrics_snapshot_file.  PGF_METRICS=0 in the environment starts with
 * counting off. */

#define PGF_METRICS_MAX_METHODS 512
#define PGF_METRICS_MAX_UNREGISTERED 128 /* since 3 */
#define PGF_METRICS_PATH_MAX 192
/* Upper bounds (seconds) of the duration histogram's finite buckets:
 * 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 (Prometheus' defaults). */
#define PGF_METRICS_BUCKETS 11

/* One method's numbers, copied out of the table.  (Array sizes are
 * literals so that binding generators such as cffi can parse them.) */
typedef struct pgf_method_stats {
    char path[192];                  /* PGF_METRICS_PATH_MAX bytes:
                                        "/pkg.Service/Method", NUL-ended;
                                        "" for the overflow entry */
    int kind;                        /* PGF_KIND_*, -1 for the overflow */
    uint64_t started;
    uint64_t handled[17];            /* by status code */
    uint64_t msg_received;
    uint64_t msg_sent;
    int64_t in_flight;
    uint64_t duration_buckets[12];   /* PGF_METRICS_BUCKETS + 1: per
                                        bucket, not cumulative; the last
                                        is +Inf */
    uint64_t duration_sum_ns;
} pgf_method_stats;

/* BORROWED, static: the PGF_METRICS_BUCKETS finite upper bounds, seconds. */
PGF_API const double *pgf_metrics_bucket_bounds(void);
/* Counting on (enable != 0, the default) or off.  A call counts as a whole
 * or not at all: the switch applies to calls dispatched afterwards. */
PGF_API void pgf_metrics_set_enabled(int enable);
PGF_API int pgf_metrics_enabled(void);
/* Copies this process's entries into out[0..min(*n, cap)), the overflow
 * entry first, and sets *n to the number of entries.  stats_size is
 * sizeof(pgf_method_stats) as the caller knows it (a smaller, older struct
 * gets its prefix).  out may be NULL with cap 0 to ask for *n.  PGF_EINVAL
 * if n is NULL or stats_size is 0 or larger than this library's struct. */
PGF_API int pgf_metrics_snapshot(pgf_method_stats *out, size_t cap,
                                 size_t stats_size, size_t *n);
/* The same for the table in a PGF_METRICS_FILE of another process (or this
 * one).  PGF_ENOTFOUND if the file cannot be opened, PGF_EINVAL if it holds
 * no table (yet: a process creates its file when it first counts a call or
 * publishes a gauge), PGF_EVERSION if it holds a table in another layout
 * (written by another version of the library: refused, never misread). */
PGF_API int pgf_metrics_snapshot_file(const char *file, pgf_method_stats *out,
                                      size_t cap, size_t stats_size,
                                      size_t *n);
/* Counts a call that the host answered itself, without dispatching it
 * (refused by a limit, cancelled while queued): started and handled with
 * code, duration 0.  kind is the PGF_KIND_* or -1. */
PGF_API void pgf_metrics_count_refused(const char *path, size_t path_len,
                                       int kind, int code);

/* Host gauges (since 2): for each of a host's thread pools, how many tasks
 * wait for a thread and how many threads it has, busy and at most.  The
 * host publishes them as they change; they live in the same table as the
 * call metrics (so in the PGF_METRICS_FILE too, where a supervisor adds up
 * the processes' numbers) and are read with pgf_metrics_pool_snapshot.
 *
 * Pools are named by role.  Several pools of one role add up: each pool
 * publishes its own changes with pgf_metrics_gauge_add (+1 when a task is
 * queued, -1 when a thread takes it, ...), so a host with two handler pools
 * reports their sum.  A role is listed once a host has published a gauge
 * for it; the grpcio engine, which has no host pool, publishes none.
 *
 * Gauges are kept whether counting is on or off (pgf_metrics_set_enabled
 * switches the call counters only): a gauge skipped while off would be
 * wrong forever after.  Updates are relaxed atomic additions, no lock: each
 * number is exact by itself, but numbers changed together (a task leaving
 * the queue for a thread) are not read as one snapshot. */
#define PGF_POOL_HANDLERS 0 /* threads that run handlers; its queued tasks
                               are calls waiting for a worker */
#define PGF_POOL_STREAMS 1  /* threads that complete stream reads/writes */
#define PGF_POOL_SERVICE 2  /* threads for a host's housekeeping
                               (cancellations, response buffer releases) */
/* Roles the table has room for (PGF_POOL_* above are 0..2; a later version
 * may define more without changing the file layout). */
#define PGF_METRICS_MAX_POOLS 8

#define PGF_GAUGE_QUEUED 0      /* tasks waiting for a thread */
#define PGF_GAUGE_THREADS 1     /* threads alive */
#define PGF_GAUGE_BUSY 2        /* threads running a task */
#define PGF_GAUGE_MAX_THREADS 3 /* the most threads the pool may have */

/* One pool role's gauges, copied out of the table. */
typedef struct pgf_pool_stats {
    int pool;            /* PGF_POOL_* */
    int64_t queued;      /* PGF_GAUGE_QUEUED */
    int64_t threads;     /* PGF_GAUGE_THREADS */
    int64_t busy;        /* PGF_GAUGE_BUSY */
    int64_t max_threads; /* PGF_GAUGE_MAX_THREADS */
} pgf_pool_stats;

/* Adds delta (may be negative) to a gauge of a pool role, atomically and
 * without a lock; any thread.  PGF_EINVAL, and nothing changes, for an
 * unknown pool or gauge. */
PGF_API int pgf_metrics_gauge_add(int pool, int gauge, int64_t delta);
/* Sets a gauge to value: for a host that computes its numbers itself (one
 * pool of the role, read from its own state).  Errors as above. */
PGF_API int pgf_metrics_gauge_set(int pool, int gauge, int64_t value);
/* Copies the published roles' gauges of this process into
 * out[0..min(*n, cap)), in PGF_POOL_* order, and sets *n to their number
 * (at most PGF_METRICS_MAX_POOLS).  stats_size, out, cap and errors as for
 * pgf_metrics_snapshot. */
PGF_API int pgf_metrics_pool_snapshot(pgf_pool_stats *out, size_t cap,
                                      size_t stats_size, size_t *n);
/* The same for the table in a PGF_METRICS_FILE; errors as for
 * pgf_metrics_snapshot_file. */
PGF_API int pgf_metrics_pool_snapshot_file(const char *file,
                                           pgf_pool_stats *out, size_t cap,
                                           size_t stats_size, size_t *n);

/* ---------------------------------------------------- embedded Python */

/* Starts the Python interpreter in this process (loading libpython at run
 * time: the host does not link it) unless one is already running.
 * venv: a virtualenv directory whose site-packages is added, or NULL.
 * sys_path: extra entries for sys.path, separated by ':', or NULL.
 * On return the calling thread does not hold the GIL.  Call it once, before
 * pgf_python_import.  On error, pgf_python_error() says why. */
PGF_API int pgf_python_start(const char *venv, const char *sys_path);
/* Imports a module by name (it registers its handlers, normally into the
 * default registry).  PGF_EPYTHON if the import raised. */
PGF_API int pgf_python_import(const char *module);
/* Stops the interpreter started by pgf_python_start.  Call it from the same
 * thread, after every host thread that dispatches into Python has stopped. */
PGF_API int pgf_python_stop(void);
/* BORROWED: the message of the last failed pgf_python_* call on this
 * thread; "" if none. Valid until the next pgf_python_* call. */
PGF_API const char *pgf_python_error(void);

#ifdef __cplusplus
}
#endif

#endif /* PYGRPC_FFI_H */
