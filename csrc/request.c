/* The request side of a call: what the host sets before dispatch (payload,
 * metadata, deadline, peer, auth properties), read by the handler. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Request setters run before dispatch, under the lock like everything else
 * (a host may fill a call from several threads). */
int pgf_call_set_request(pgf_call *call, const uint8_t *data, size_t len) {
    if (call == NULL || (data == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK)
        return PGF_ESTATE;
    pgf_message *old = call->request_msg;
    call->request_msg = NULL;
    call->request = data;
    call->request_len = len;
    call->request_set = 1;
    pthread_mutex_unlock(&call->mu);
    pgf_message_unref(old);
    return PGF_OK;
}

int pgf_call_set_request_message(pgf_call *call, pgf_message *msg) {
    if (call == NULL || msg == NULL) {
        pgf_message_unref(msg);
        return PGF_EINVAL;
    }
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK) {
        pgf_message_unref(msg);
        return PGF_ESTATE;
    }
    pgf_message *old = call->request_msg;
    call->request_msg = msg;
    call->request = pgf_message_data(msg, &call->request_len);
    call->request_set = 1;
    pthread_mutex_unlock(&call->mu);
    pgf_message_unref(old);
    return PGF_OK;
}

pgf_message *pgf_call_request_message(const pgf_call *call) {
    return call ? pgf_message_ref(call->request_msg) : NULL;
}

/* Appends to a request-side list of a not yet dispatched call. */
static int append_entry(pgf_call *call, pgf_metadata *md,
                        const char *key, size_t key_len,
                        const uint8_t *value, size_t value_len) {
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK)
        return PGF_ESTATE;
    int rc = pgf__metadata_append(md, key, key_len, value, value_len);
    pthread_mutex_unlock(&call->mu);
    return rc;
}

static int append_list(pgf_call *call, pgf_metadata *md,
                       const pgf_metadata_entry *entries, size_t count) {
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK)
        return PGF_ESTATE;
    int rc = pgf__metadata_append_list(md, entries, count);
    pthread_mutex_unlock(&call->mu);
    return rc;
}

int pgf_call_add_request_metadata(pgf_call *call,
                                  const char *key, size_t key_len,
                                  const uint8_t *value, size_t value_len) {
    return call ? append_entry(call, &call->request_md, key, key_len, value,
                               value_len)
                : PGF_EINVAL;
}

int pgf_call_add_request_metadata_list(pgf_call *call,
                                       const pgf_metadata_entry *entries,
                                       size_t count) {
    return call ? append_list(call, &call->request_md, entries, count)
                : PGF_EINVAL;
}

int pgf_call_set_deadline(pgf_call *call, int64_t deadline_unix_ns) {
    if (call == NULL)
        return PGF_EINVAL;
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK)
        return PGF_ESTATE;
    call->deadline = deadline_unix_ns;
    pthread_mutex_unlock(&call->mu);
    return PGF_OK;
}

/* Replaces a string field of a not yet dispatched call with a copy of
 * s[0..len); len 0 clears it when clear_empty is set. */
static int set_string(pgf_call *call, char **field, size_t *field_len,
                      const char *s, size_t len, int clear_empty) {
    if (call == NULL || (s == NULL && len != 0) || !pgf__len_ok(len))
        return PGF_EINVAL;
    char *p = NULL;
    if (len != 0 || !clear_empty) {
        p = malloc(len + 1);
        if (p == NULL)
            return PGF_ENOMEM;
        if (len)
            memcpy(p, s, len);
        p[len] = '\0';
    }
    if (pgf__call_lock_unless(call, &call->dispatched) != PGF_OK) {
        free(p);
        return PGF_ESTATE;
    }
    char *old = *field;
    *field = p;
    *field_len = len;
    pthread_mutex_unlock(&call->mu);
    free(old);
    return PGF_OK;
}

int pgf_call_set_peer(pgf_call *call, const char *peer, size_t len) {
    return call ? set_string(call, &call->peer, &call->peer_len, peer, len, 0)
                : PGF_EINVAL;
}

int pgf_call_set_peer_identity_key(pgf_call *call, const char *name,
                                   size_t len) {
    return call ? set_string(call, &call->identity_key,
                             &call->identity_key_len, name, len, 1)
                : PGF_EINVAL;
}

int pgf_call_add_auth_properties(pgf_call *call,
                                 const pgf_metadata_entry *props,
                                 size_t count) {
    return call ? append_list(call, &call->auth_md, props, count)
                : PGF_EINVAL;
}

/* A list of one: same rules, one allocation. */
int pgf_call_add_auth_property(pgf_call *call,
                               const char *name, size_t name_len,
                               const uint8_t *value, size_t value_len) {
    pgf_metadata_entry one = {name, name_len, value, value_len};
    return pgf_call_add_auth_properties(call, &one, 1);
}

void pgf_call_request(const pgf_call *call, const uint8_t **data, size_t *len) {
    if (data)
        *data = call ? call->request : NULL;
    if (len)
        *len = call ? call->request_len : 0;
}

const pgf_metadata *pgf_call_request_metadata(const pgf_call *call) {
    return call ? &call->request_md : NULL;
}

int64_t pgf_call_deadline(const pgf_call *call) {
    return call ? call->deadline : INT64_MAX;
}

const char *pgf_call_peer(const pgf_call *call, size_t *len) {
    return call ? pgf__string_or_empty(call->peer, call->peer_len, len)
                : pgf__string_or_empty(NULL, 0, len);
}

const pgf_metadata *pgf_call_auth_properties(const pgf_call *call) {
    return call ? &call->auth_md : NULL;
}

const char *pgf_call_peer_identity_key(const pgf_call *call, size_t *len) {
    return call ? pgf__string_or_empty(call->identity_key,
                                       call->identity_key_len, len)
                : pgf__string_or_empty(NULL, 0, len);
}
