/* Refcounted messages over a host's bytes, released once, zero copy. */
#include "internal.h"

#include <stdlib.h>

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
