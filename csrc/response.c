/* The response side of a call: what the handler answers (payload,
 * metadata, status details, compression), read or taken by the host once
 * the call is finished. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Makes owner's bytes data[0..len) the call's response, releasing an
 * earlier one; PGF_ESTATE (owner released) once the call is finished. */
static int install_response(pgf_call *call, const uint8_t *data, size_t len,
                            pgf_owned_buffer *owner) {
    if (pgf__call_lock_unless(call, &call->finished) != PGF_OK) {
        pgf__owned_buffer_release(owner);
        return PGF_ESTATE;
    }
    pgf_owned_buffer *old = call->response_owner;
    call->response = data;
    call->response_len = len;
    call->response_owner = owner;
    pthread_mutex_unlock(&call->mu);
    if (old)
        pgf__owned_buffer_release(old);
    return PGF_OK;
}

int pgf_call_set_response(pgf_call *call, const uint8_t *data, size_t len,
                          pgf_release_fn release, void *ctx) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len)) {
        if (release)
            release(ctx);
        return PGF_EINVAL;
    }
    pgf_owned_buffer *owner = pgf__owned_buffer_new(release, ctx);
    if (owner == NULL)
        return PGF_ENOMEM;
    return install_response(call, data, len, owner);
}

int pgf_call_set_response_copy(pgf_call *call, const uint8_t *data,
                               size_t len) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    pgf_owned_buffer *owner = pgf__owned_copy_new(data, len);
    if (owner == NULL)
        return PGF_ENOMEM;
    return install_response(call, owner->copy, len, owner);
}

#define DETAILS_KEY "grpc-status-details-bin"
#define DETAILS_KEY_LEN (sizeof(DETAILS_KEY) - 1)

static int add_response_md(pgf_call *call, pgf_metadata *md,
                           const char *key, size_t key_len,
                           const uint8_t *value, size_t value_len) {
    if (call == NULL)
        return PGF_EINVAL;
    int rc = pgf_metadata_validate(key, key_len, value, value_len);
    if (rc != PGF_OK)
        return rc;
    pthread_mutex_lock(&call->mu);
    /* Initial metadata is frozen once the host may be sending it. */
    int frozen = call->finished ||
                 (md == &call->initial_md && call->initial_md_ready);
    /* Trailers share their budget with the status details. */
    size_t reserved = md == &call->trailing_md && call->details_len
                          ? pgf__md_wire_size(DETAILS_KEY, DETAILS_KEY_LEN,
                                              call->details_len)
                          : 0;
    rc = frozen ? PGF_ESTATE
                : pgf__metadata_append_bounded(md, reserved, key, key_len,
                                               value, value_len);
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_add_initial_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len) {
    return add_response_md(call, call ? &call->initial_md : NULL, key,
                           key_len, value, value_len);
}

int pgf_call_add_trailing_metadata(pgf_call *call,
                                   const char *key, size_t key_len,
                                   const uint8_t *value, size_t value_len) {
    return add_response_md(call, call ? &call->trailing_md : NULL, key,
                           key_len, value, value_len);
}

int pgf_call_set_status_details(pgf_call *call,
                                const uint8_t *data, size_t len) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (copy == NULL)
            return PGF_ENOMEM;
        memcpy(copy, data, len);
    }
    if (pgf__call_lock_unless(call, &call->finished) != PGF_OK) {
        free(copy);
        return PGF_ESTATE;
    }
    size_t have = call->trailing_md.wire_size;
    if (len && (have > PGF_MAX_RESPONSE_METADATA ||
                pgf__md_wire_size(DETAILS_KEY, DETAILS_KEY_LEN, len) >
                    PGF_MAX_RESPONSE_METADATA - have)) {
        pthread_mutex_unlock(&call->mu);
        free(copy);
        return PGF_EMETADATA; /* the trailers would not reach the client */
    }
    free(call->details);
    call->details = copy;
    call->details_len = len;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

int pgf_call_set_compress_response(pgf_call *call, int enable) {
    if (call == NULL)
        return PGF_EINVAL;
    if (pgf__call_lock_unless(call, &call->finished) != PGF_OK)
        return PGF_ESTATE;
    call->compress = enable != 0;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

int pgf_call_compress_response(const pgf_call *call) {
    return call ? call->compress : 0;
}

int pgf_call_reset_response(pgf_call *call) {
    if (call == NULL)
        return PGF_EINVAL;
    if (pgf__call_lock_unless(call, &call->finished) != PGF_OK)
        return PGF_ESTATE;
    pgf_owned_buffer *old = call->response_owner;
    call->response_owner = NULL;
    call->response = NULL;
    call->response_len = 0;
    if (!call->initial_md_ready) /* else it is on its way already */
        pgf__metadata_clear(&call->initial_md);
    pgf__metadata_clear(&call->trailing_md);
    free(call->details);
    call->details = NULL;
    call->details_len = 0;
    call->compress = 0;
    pthread_mutex_unlock(&call->mu);
    if (old)
        pgf__owned_buffer_release(old);
    return PGF_OK;
}

/* ------------------------------------------------ read by the host */

int pgf_call_status(const pgf_call *call) {
    return call && pgf__call_is_finished(call) ? call->status
                                                : PGF_STATUS_UNKNOWN;
}

const char *pgf_call_status_message(const pgf_call *call, size_t *len) {
    return call ? pgf__string_or_empty(call->message, call->message_len, len)
                : pgf__string_or_empty(NULL, 0, len);
}

void pgf_call_status_details(const pgf_call *call,
                             const uint8_t **data, size_t *len) {
    if (data)
        *data = call ? call->details : NULL;
    if (len)
        *len = call ? call->details_len : 0;
}

const pgf_metadata *pgf_call_initial_metadata(const pgf_call *call) {
    return call ? &call->initial_md : NULL;
}

const pgf_metadata *pgf_call_trailing_metadata(const pgf_call *call) {
    return call ? &call->trailing_md : NULL;
}

void pgf_call_response(const pgf_call *call, const uint8_t **data,
                       size_t *len) {
    if (data)
        *data = call ? call->response : NULL;
    if (len)
        *len = call ? call->response_len : 0;
}

int pgf_call_take_response(pgf_call *call, const uint8_t **data, size_t *len,
                           pgf_release_fn *release, void **ctx) {
    if (call == NULL || data == NULL || len == NULL || release == NULL ||
        ctx == NULL)
        return PGF_EINVAL;
    pthread_mutex_lock(&call->mu);
    *data = call->response;
    *len = call->response_len;
    if (call->response_owner) {
        *release = pgf__owned_buffer_release;
        *ctx = call->response_owner;
    } else {
        *release = NULL;
        *ctx = NULL;
    }
    call->response_owner = NULL;
    call->response = NULL;
    call->response_len = 0;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}
