/* Bytes crossing the ABI, never copied unless asked: refcounted messages
 * over a host's bytes, and the owned buffers a call hands its host (a
 * payload with its release, or a copy). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct pgf_message {
    int64_t refs;
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
};

pgf_message *pgf_message_new(const uint8_t *data, size_t len,
                             pgf_release_fn release, void *ctx) {
    pgf_message *m = NULL;
    if ((data != NULL || len == 0) && pgf__len_ok(len))
        m = malloc(sizeof(*m));
    if (m == NULL) {
        if (release)
            release(ctx);
        return NULL;
    }
    m->refs = 1;
    m->data = data;
    m->len = len;
    m->release = release;
    m->ctx = ctx;
    pgf__live_add(PGF_LIVE_MESSAGES, 1);
    return m;
}

pgf_message *pgf_message_ref(pgf_message *m) {
    if (m)
        pgf__ref(&m->refs);
    return m;
}

void pgf_message_unref(pgf_message *m) {
    if (m == NULL || !pgf__unref(&m->refs))
        return;
    if (m->release)
        m->release(m->ctx);
    free(m);
    pgf__live_add(PGF_LIVE_MESSAGES, -1);
}

const uint8_t *pgf_message_data(const pgf_message *m, size_t *len) {
    if (len)
        *len = m ? m->len : 0;
    return m ? m->data : NULL;
}

/* ------------------------------------------------------- owned buffers */

pgf_owned_buffer *pgf__owned_buffer_new(pgf_release_fn release, void *ctx) {
    pgf_owned_buffer *b = malloc(sizeof(*b));
    if (b == NULL) {
        if (release)
            release(ctx);
        return NULL;
    }
    b->release = release;
    b->ctx = ctx;
    pgf__live_add(PGF_LIVE_BUFFERS, 1);
    return b;
}

pgf_owned_buffer *pgf__owned_copy_new(const uint8_t *data, size_t len) {
    pgf_owned_buffer *b = malloc(sizeof(*b) + len);
    if (b == NULL)
        return NULL;
    b->release = NULL;
    b->ctx = NULL;
    if (len)
        memcpy(b->copy, data, len);
    pgf__live_add(PGF_LIVE_BUFFERS, 1);
    return b;
}

int pgf_release_never_blocks(pgf_release_fn release, void *ctx) {
    return release == pgf__owned_buffer_release && ctx != NULL &&
           ((const pgf_owned_buffer *)ctx)->release == NULL;
}

void pgf__owned_buffer_release(void *p) {
    pgf_owned_buffer *b = p;
    if (b->release)
        b->release(b->ctx);
    free(b);
    pgf__live_add(PGF_LIVE_BUFFERS, -1);
}
