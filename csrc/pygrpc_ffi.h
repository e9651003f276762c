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
 *   - A pointer argument is BORROWED unless the comment says OWNED: the
 *     callee copies what it keeps.  An OWNED result comes with the function
 *     that releases it; call that exactly once.
 *   - Strings are (pointer, length) pairs and need not be NUL-terminated.
 *   - Every argument has defined behaviour.  A NULL object (call, registry,
 *     name, metadata) gives PGF_EINVAL, NULL, 0 or "" and changes nothing;
 *     a NULL output pointer is skipped (the other outputs are still set);
 *     a NULL data pointer with a non-zero length is PGF_EINVAL (except in
 *     pgf_call_finish, see there).  A length above PTRDIFF_MAX (no object is
 *     that large) is PGF_EINVAL (PGF_EMETADATA for metadata, NULL for
 *     constructors) before any memory is read or size computed; sizes are
 *     computed without overflow, and an allocation that cannot be made is
 *     PGF_ENOMEM.  (Since ABI 1, this release.)
 *   - A call carries one request message and one response message (unary).
 *     Streaming will add read/write functions on the same pgf_call object;
 *     nothing here changes meaning when it does.
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

/* The version of this ABI.  Grows only; compare with >= . */
#define PGF_ABI_VERSION 1

/* The ABI version the loaded library implements. */
int pgf_abi_version(void);

/* ---------------------------------------------------------------- errors */

#define PGF_OK 0
#define PGF_EINVAL (-1)     /* an argument is NULL, out of range or malformed */
#define PGF_ENOMEM (-2)     /* allocation failed; nothing was changed */
#define PGF_EEXIST (-3)     /* already registered */
#define PGF_ENOTFOUND (-4)  /* not registered */
#define PGF_EMETADATA (-5)  /* metadata key or value breaks the gRPC rules */
#define PGF_ESTATE (-6)     /* not allowed in the object's current state */
#define PGF_EPYTHON (-7)    /* the embedded interpreter reported an error */

/* ---------------------------------------------------------------- limits */

/* What a call sends back is bounded so that a client with gRPC's default
 * limit (8 KiB of metadata per header block) receives the handler's status
 * rather than RESOURCE_EXHAUSTED.  Sizes count as gRPC sends and clients
 * account them (HPACK, RFC 7541 4.1): key + value + 32 per entry, binary
 * values base64-encoded, the status message percent-encoded.  (Since ABI 1,
 * this release.) */
/* Status message: longer messages are truncated (between UTF-8 characters). */
#define PGF_MAX_STATUS_MESSAGE 2048
/* Initial metadata, and trailing metadata together with the status details:
 * an entry that would exceed it is refused with PGF_EMETADATA. */
#define PGF_MAX_RESPONSE_METADATA 5120

/* A static, human-readable description of an error code. */
const char *pgf_strerror(int rc);

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

/* OWNED: a new name holding a copy of s[0..len); NULL on allocation failure,
 * if s is NULL with len > 0, or if len > PTRDIFF_MAX.
 * Release with pgf_name_unref. */
pgf_name *pgf_name_new(const char *s, size_t len);
/* Adds a reference; returns name.  Each reference needs one pgf_name_unref. */
pgf_name *pgf_name_ref(pgf_name *name);
/* Drops a reference; the name is freed when the last one goes.  NULL is ok. */
void pgf_name_unref(pgf_name *name);
/* BORROWED, NUL-terminated, valid while the caller holds a reference. */
const char *pgf_name_str(const pgf_name *name);
size_t pgf_name_len(const pgf_name *name);

/* -------------------------------------------------------------- metadata */

/* An ordered, multi-valued list of (key, value) entries owned by a call.
 * Keys are lowercase; values of binary keys (at least 5 characters, ending in
 * "-bin", as in gRPC core: the key "-bin" alone is not binary) are raw
 * bytes. */
typedef struct pgf_metadata pgf_metadata;

size_t pgf_metadata_count(const pgf_metadata *md);
/* Entry i (0-based).  Outputs are BORROWED from md and stay valid until the
 * call that owns md is freed (response metadata: or reset by
 * pgf_call_reset_response).  Returns PGF_EINVAL if i is out of range. */
int pgf_metadata_get(const pgf_metadata *md, size_t i,
                     const char **key, size_t *key_len,
                     const uint8_t **value, size_t *value_len);

/* PGF_OK if (key, value) may be sent by a server, else PGF_EMETADATA:
 * key matches [0-9a-z_.-]+, does not start with "grpc-", and is not one that
 * HTTP/2 or gRPC's framing reserves (connection, content-length,
 * content-type, keep-alive, proxy-connection, te, transfer-encoding,
 * upgrade); unless the key is binary (5 or more characters ending in "-bin",
 * gRPC core's rule), value is printable ASCII
 * (0x20-0x7e) with no leading or trailing space.  Every entry of a call's
 * initial and trailing metadata passed this, so hosts can send them as is. */
int pgf_metadata_validate(const char *key, size_t key_len,
                          const uint8_t *value, size_t value_len);

/* ----------------------------------------------------------------- calls */

/* One RPC.  Created by the host, refcounted: the host's reference, the
 * dispatch in progress and the handler each hold one while they use it. */
typedef struct pgf_call pgf_call;

/* Releases a buffer handed across the ABI; ctx is the pointer given with it. */
typedef void (*pgf_release_fn)(void *ctx);

/* Completion callback for pgf_dispatch_async.  Runs once, on the thread on
 * which the handler finished (possibly inside pgf_dispatch_async itself).
 * call is BORROWED for the duration of the callback. */
typedef void (*pgf_done_fn)(pgf_call *call, void *user_data);

/* Cancellation callback, see pgf_call_on_cancel. */
typedef void (*pgf_cancel_fn)(pgf_call *call, void *user_data);

/* OWNED: a new call for the method path "/package.Service/Method".
 * Returns NULL if the path is malformed or on allocation failure.
 * Release with pgf_call_unref. */
pgf_call *pgf_call_new(const char *path, size_t path_len);
pgf_call *pgf_call_ref(pgf_call *call);
/* Drops a reference.  On the last one, a response payload that nobody took
 * is released (its release function may enter Python: see
 * pgf_call_take_response) and the names are unreferenced.  The handler's
 * registration is not touched here: a call drops it when it finishes. */
void pgf_call_unref(pgf_call *call);

/* BORROWED names, valid while the caller holds a reference to the call. */
const pgf_name *pgf_call_service(const pgf_call *call);
const pgf_name *pgf_call_method(const pgf_call *call);

/* --- request side: set by the host before dispatch ---------------------- */

/* The request payload.  BORROWED: data must stay valid and unchanged until
 * the call is finished (pgf_dispatch returned or the done callback ran). */
int pgf_call_set_request(pgf_call *call, const uint8_t *data, size_t len);
/* Appends one request metadata entry (copied).  The key must be non-empty;
 * host input is otherwise taken as the transport delivered it. */
int pgf_call_add_request_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len);
/* Absolute deadline, nanoseconds since the Unix epoch (CLOCK_REALTIME);
 * INT64_MAX (the default) means none. */
int pgf_call_set_deadline(pgf_call *call, int64_t deadline_unix_ns);
/* The client's address, copied, for example "ipv4:127.0.0.1:5123". */
int pgf_call_set_peer(pgf_call *call, const char *peer, size_t len);

/* --- request side: read by the handler ---------------------------------- */

/* BORROWED request payload (as set by the host); len may be 0.  Either
 * output may be NULL; a NULL call gives NULL, 0. */
void pgf_call_request(const pgf_call *call, const uint8_t **data, size_t *len);
/* BORROWED request metadata, valid while a reference to the call is held. */
const pgf_metadata *pgf_call_request_metadata(const pgf_call *call);
int64_t pgf_call_deadline(const pgf_call *call);
/* BORROWED peer string; "" if the host set none. */
const char *pgf_call_peer(const pgf_call *call, size_t *len);

/* --- cancellation -------------------------------------------------------- */

/* Marks the call cancelled (the client went away or the deadline passed) and
 * runs the cancellation callback, if any, on this thread.  Idempotent.
 * The callback of a Python handler takes the GIL, so this may block: hosts
 * with event threads that must not block call it from a thread of their own. */
void pgf_call_cancel(pgf_call *call);
int pgf_call_is_cancelled(const pgf_call *call);
/* Sets the function run once when the call is cancelled: at once (on this
 * thread) if it already is, never if the call finishes first.  Replaces an
 * earlier one; fn NULL removes it.  Returns PGF_ESTATE once finished. */
int pgf_call_on_cancel(pgf_call *call, pgf_cancel_fn fn, void *user_data);

/* --- response side: set by the handler, before pgf_call_finish ------------ */

/* The response payload, passed without a copy.  OWNED by the call from now
 * on: release(ctx) runs exactly once, when the host is done with the bytes,
 * or when the call is freed if nobody took them.  Replaces (and releases) an
 * earlier payload.  On error, release(ctx) has already run. */
int pgf_call_set_response(pgf_call *call, const uint8_t *data, size_t len,
                          pgf_release_fn release, void *ctx);
/* Append response metadata (copied) sent before the payload (initial) or
 * with the status (trailing).  PGF_EMETADATA if pgf_metadata_validate
 * rejects the entry, or if the list would exceed PGF_MAX_RESPONSE_METADATA
 * (trailing: with the status details); the call is unchanged then. */
int pgf_call_add_initial_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len);
int pgf_call_add_trailing_metadata(pgf_call *call,
                                   const char *key, size_t key_len,
                                   const uint8_t *value, size_t value_len);
/* Serialized google.rpc.Status (copied), sent by the host as the trailer
 * "grpc-status-details-bin".  PGF_EMETADATA if it and the trailing metadata
 * would exceed PGF_MAX_RESPONSE_METADATA; the call is unchanged then. */
int pgf_call_set_status_details(pgf_call *call,
                                const uint8_t *data, size_t len);
/* Asks the host to compress the response payload (enable != 0) with its
 * default algorithm, or to send it uncompressed (the default). */
int pgf_call_set_compress_response(pgf_call *call, int enable);
int pgf_call_compress_response(const pgf_call *call);
/* Drops every response field set so far (payload released, metadata and
 * details cleared), for a handler that fails after it started answering. */
int pgf_call_reset_response(pgf_call *call);

/* Completes the call with a status code and message (copied).  Exactly once
 * per call, from any thread; a second finish returns PGF_ESTATE.  A code
 * outside 0..16 is sent as UNKNOWN.  A message longer than
 * PGF_MAX_STATUS_MESSAGE (as sent) is truncated.  A valid call always finishes, whatever
 * the other arguments: msg NULL (whatever len) or len > PTRDIFF_MAX means no
 * message, and if the message cannot be copied (out of memory) the call
 * finishes without it; only call NULL is PGF_EINVAL.  Wakes pgf_dispatch, or runs the done
 * callback of pgf_dispatch_async, on this thread; then drops the call's
 * reference to its registration (which may release the handler data).  If a
 * cancellation callback is running on another thread, waits for it first, so
 * that no callback runs after finish. */
int pgf_call_finish(pgf_call *call, int code, const char *msg, size_t len);
int pgf_call_is_finished(const pgf_call *call);

/* --- response side: read by the host once the call is finished ---------- */

int pgf_call_status(const pgf_call *call);
/* BORROWED, NUL-terminated message; "" if none. */
const char *pgf_call_status_message(const pgf_call *call, size_t *len);
/* BORROWED serialized google.rpc.Status; *len 0 if none.  Either output may
 * be NULL. */
void pgf_call_status_details(const pgf_call *call,
                             const uint8_t **data, size_t *len);
const pgf_metadata *pgf_call_initial_metadata(const pgf_call *call);
const pgf_metadata *pgf_call_trailing_metadata(const pgf_call *call);
/* BORROWED view of the response payload, valid until the payload is taken or
 * the call is freed; *len 0 if none.  Either output may be NULL. */
void pgf_call_response(const pgf_call *call, const uint8_t **data, size_t *len);
/* Takes ownership of the response payload: afterwards the host must call
 * release(ctx) exactly once (from any thread) when it is done with data.
 * *release is NULL, and nothing is owed, if there is no payload. */
int pgf_call_take_response(pgf_call *call, const uint8_t **data, size_t *len,
                           pgf_release_fn *release, void **ctx);

/* -------------------------------------------------------------- registry */

/* A thread-safe map from service names and full method paths to handlers. */
typedef struct pgf_registry pgf_registry;

/* A handler runs the call: it must call pgf_call_finish exactly once, before
 * returning or later from any thread (async).  To finish later, it takes its
 * own reference with pgf_call_ref.  handler_data is the pointer registered
 * with it. */
typedef void (*pgf_handler_fn)(void *handler_data, pgf_call *call);

/* OWNED: a new, empty registry; NULL on allocation failure. */
pgf_registry *pgf_registry_new(void);
/* Unregisters everything and frees the registry.  Calls in flight finish
 * normally.  Must not be called on pgf_default_registry(). */
void pgf_registry_free(pgf_registry *reg);
/* BORROWED: the process-wide registry that embedded hosts dispatch into and
 * that pygrpc_ffi.default_service() registers into.  Never freed. */
pgf_registry *pgf_default_registry(void);

/* Registers fn for every method of service ("package.Service").
 * handler_data is OWNED by the registry from now on: release(handler_data),
 * if release is not NULL, runs exactly once, after the handler is
 * unregistered and the last call using it has finished -- on the thread that
 * dropped the last reference.  On error, release has already run.
 * PGF_EEXIST if the service is already registered. */
int pgf_registry_register_service(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  pgf_handler_fn fn, void *handler_data,
                                  pgf_release_fn release);
/* Same, for one method; a method registration wins over its service's. */
int pgf_registry_register_method(pgf_registry *reg,
                                 const char *service, size_t service_len,
                                 const char *method, size_t method_len,
                                 pgf_handler_fn fn, void *handler_data,
                                 pgf_release_fn release);
/* Removes a registration (method registrations of the service stay).
 * Calls in flight finish normally.  PGF_ENOTFOUND if not registered. */
int pgf_registry_unregister_service(pgf_registry *reg,
                                    const char *service, size_t service_len);
int pgf_registry_unregister_method(pgf_registry *reg,
                                   const char *service, size_t service_len,
                                   const char *method, size_t method_len);
/* 1 if the service has a service-level or any method-level registration. */
int pgf_registry_has_service(pgf_registry *reg,
                             const char *service, size_t service_len);
/* 1 if a call to service/method would find a handler. */
int pgf_registry_has_method(pgf_registry *reg,
                            const char *service, size_t service_len,
                            const char *method, size_t method_len);
/* Lists the services (service-level or with a method-level registration),
 * sorted.  Fills out[0..min(n, cap)) with OWNED name references (release
 * each with pgf_name_unref) and returns n, the number of services. */
size_t pgf_registry_list_services(pgf_registry *reg,
                                  pgf_name **out, size_t cap);

/* -------------------------------------------------------------- dispatch */

/* Runs call on its handler and returns when the call is finished, whether
 * the handler finished it before returning or later on another thread.
 * With no handler, finishes the call with UNIMPLEMENTED and the message
 * "unknown service S" or "unknown method M for service S".
 * Returns PGF_OK once finished; PGF_ESTATE if call was already dispatched.
 * Read the answer with the pgf_call_status... functions. */
int pgf_dispatch(pgf_registry *reg, pgf_call *call);
/* Starts call on its handler and returns at once; done(call, user_data)
 * runs exactly once when the call is finished.  The call holds its own
 * reference until done returns, so the host may unref its one at any time. */
int pgf_dispatch_async(pgf_registry *reg, pgf_call *call,
                       pgf_done_fn done, void *user_data);

/* ---------------------------------------------------------- live objects */

#define PGF_LIVE_NAMES 0     /* pgf_name objects */
#define PGF_LIVE_HANDLERS 1  /* registrations not yet released */
#define PGF_LIVE_CALLS 2     /* pgf_call objects */
#define PGF_LIVE_REGISTRIES 3 /* registries from pgf_registry_new */
#define PGF_LIVE_BUFFERS 4   /* response payloads not yet released */

/* How many objects of a kind are alive in the process; -1 for an unknown
 * kind.  Tests use it to prove that nothing leaks. */
int64_t pgf_live_count(int kind);

/* ---------------------------------------------------- embedded Python */

/* Starts the Python interpreter in this process (loading libpython at run
 * time: the host does not link it) unless one is already running.
 * venv: a virtualenv directory whose site-packages is added, or NULL.
 * sys_path: extra entries for sys.path, separated by ':', or NULL.
 * On return the calling thread does not hold the GIL.  Call it once, before
 * pgf_python_import.  On error, pgf_python_error() says why. */
int pgf_python_start(const char *venv, const char *sys_path);
/* Imports a module by name (it registers its handlers, normally into the
 * default registry).  PGF_EPYTHON if the import raised. */
int pgf_python_import(const char *module);
/* Stops the interpreter started by pgf_python_start.  Call it from the same
 * thread, after every host thread that dispatches into Python has stopped. */
int pgf_python_stop(void);
/* BORROWED: the message of the last failed pgf_python_* call on this
 * thread; "" if none. Valid until the next pgf_python_* call. */
const char *pgf_python_error(void);

#ifdef __cplusplus
}
#endif

#endif /* PYGRPC_FFI_H */
