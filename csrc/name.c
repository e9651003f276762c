/* Immutable refcounted strings for service and method names. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct pgf_name {
    int64_t refs;
    size_t len;
    char str[];
};

pgf_name *pgf_name_new(const char *s, size_t len) {
    if ((s == NULL && len != 0) || !pgf__len_ok(len))
        return NULL;
    pgf_name *n = malloc(sizeof(*n) + len + 1);
    if (n == NULL)
        return NULL;
    n->refs = 1;
    n->len = len;
    if (len)
        memcpy(n->str, s, len);
    n->str[len] = '\0';
    pgf__live_add(PGF_LIVE_NAMES, 1);
    return n;
}

pgf_name *pgf_name_ref(pgf_name *name) {
    if (name)
        pgf__ref(&name->refs);
    return name;
}

void pgf_name_unref(pgf_name *name) {
    if (name && pgf__unref(&name->refs)) {
        free(name);
        pgf__live_add(PGF_LIVE_NAMES, -1);
    }
}

const char *pgf_name_str(const pgf_name *name) { return name ? name->str : ""; }

size_t pgf_name_len(const pgf_name *name) { return name ? name->len : 0; }
