/* The registry: a thread-safe map from service and method names to
 * handler registrations (handler.c). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Keys: "service" for a service registration, "service/method" for a
 * method registration ('/' cannot occur in a service name). */
typedef struct entry {
    struct entry *next;
    pgf_name *key;
    pgf_name *service;     /* the service part of key, for listing */
    pgf_handler *handler;
} entry;

struct pgf_registry {
    pthread_rwlock_t lock;
    entry **buckets;
    size_t nbuckets;
    size_t count;
    int is_default;
};

/* ------------------------------------------------------------ the table */

static uint64_t hash2(const char *a, size_t alen, const char *b, size_t blen) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < alen; i++)
        h = (h ^ (unsigned char)a[i]) * 1099511628211ULL;
    if (b) {
        h = (h ^ (unsigned char)'/') * 1099511628211ULL;
        for (size_t i = 0; i < blen; i++)
            h = (h ^ (unsigned char)b[i]) * 1099511628211ULL;
    }
    return h;
}

static int key_equals(const pgf_name *key, const char *a, size_t alen,
                      const char *b, size_t blen) {
    const char *k = pgf_name_str(key);
    size_t klen = pgf_name_len(key);
    if (b == NULL)
        return klen == alen && memcmp(k, a, alen) == 0;
    return klen == alen + 1 + blen && memcmp(k, a, alen) == 0 &&
           k[alen] == '/' && memcmp(k + alen + 1, b, blen) == 0;
}

static entry **find_slot(pgf_registry *reg, const char *a, size_t alen,
                         const char *b, size_t blen) {
    entry **slot = &reg->buckets[hash2(a, alen, b, blen) % reg->nbuckets];
    while (*slot && !key_equals((*slot)->key, a, alen, b, blen))
        slot = &(*slot)->next;
    return slot;
}

static int grow(pgf_registry *reg) {
    size_t n = reg->nbuckets * 2;
    entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return PGF_ENOMEM;
    for (size_t i = 0; i < reg->nbuckets; i++) {
        entry *e = reg->buckets[i];
        while (e) {
            entry *next = e->next;
            uint64_t h = hash2(pgf_name_str(e->key), pgf_name_len(e->key),
                               NULL, 0);
            e->next = b[h % n];
            b[h % n] = e;
            e = next;
        }
    }
    free(reg->buckets);
    reg->buckets = b;
    reg->nbuckets = n;
    return PGF_OK;
}

static int valid_part(const char *s, size_t len) {
    return s != NULL && len > 0 && pgf__len_ok(len) &&
           memchr(s, '/', len) == NULL &&
           memchr(s, '\0', len) == NULL;
}

static pgf_registry *registry_create(int is_default) {
    pgf_registry *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return NULL;
    reg->nbuckets = 16;
    reg->buckets = calloc(reg->nbuckets, sizeof(*reg->buckets));
    if (reg->buckets == NULL) {
        free(reg);
        return NULL;
    }
    pthread_rwlock_init(&reg->lock, NULL);
    reg->is_default = is_default;
    if (!is_default)
        pgf__live_add(PGF_LIVE_REGISTRIES, 1);
    return reg;
}

pgf_registry *pgf_registry_new(void) { return registry_create(0); }

static void free_entry(entry *e) {
    pgf__handler_unref(e->handler);
    pgf_name_unref(e->key);
    pgf_name_unref(e->service);
    free(e);
}

void pgf_registry_free(pgf_registry *reg) {
    if (reg == NULL || reg->is_default)
        return;
    for (size_t i = 0; i < reg->nbuckets; i++) {
        entry *e = reg->buckets[i];
        while (e) {
            entry *next = e->next;
            free_entry(e);
            e = next;
        }
    }
    free(reg->buckets);
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
    pgf__live_add(PGF_LIVE_REGISTRIES, -1);
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static pgf_registry *default_registry;

static void make_default(void) { default_registry = registry_create(1); }

pgf_registry *pgf_default_registry(void) {
    pthread_once(&default_once, make_default);
    return default_registry;
}

static int add(pgf_registry *reg, const char *svc, size_t svc_len,
               const char *method, size_t method_len, int kind,
               pgf_handler_fn fn, void *data, pgf_release_fn release) {
    /* Lengths first: a key of both parts must be computable. */
    if (svc_len > ((size_t)-1 - 2) / 2 || method_len > ((size_t)-1 - 2) / 2 ||
        reg == NULL || fn == NULL || !valid_part(svc, svc_len) ||
        (method != NULL && !valid_part(method, method_len)) ||
        (kind & ~PGF_FLAG_NONBLOCKING) < PGF_KIND_UNARY ||
        (kind & ~PGF_FLAG_NONBLOCKING) > PGF_KIND_BIDI_STREAMING) {
        if (release)
            release(data);
        return PGF_EINVAL;
    }
    entry *e = calloc(1, sizeof(*e));
    char *key = malloc(svc_len + 1 + method_len + 1);
    pgf_handler *h = pgf__handler_new(fn, data, release, kind);
    if (e == NULL || key == NULL || h == NULL) {
        free(e);
        free(key);
        if (h)
            pgf__handler_unref(h); /* runs release */
        else if (release)
            release(data);
        return PGF_ENOMEM;
    }
    size_t key_len = svc_len;
    memcpy(key, svc, svc_len);
    if (method) {
        key[svc_len] = '/';
        memcpy(key + svc_len + 1, method, method_len);
        key_len += 1 + method_len;
    }
    e->key = pgf_name_new(key, key_len);
    e->service = pgf_name_new(svc, svc_len);
    free(key);
    e->handler = h;
    h->by_name = method != NULL;
    if (e->key == NULL || e->service == NULL) {
        free_entry(e);
        return PGF_ENOMEM;
    }

    pthread_rwlock_wrlock(&reg->lock);
    entry **slot = find_slot(reg, svc, svc_len, method, method_len);
    if (*slot) {
        pthread_rwlock_unlock(&reg->lock);
        free_entry(e);
        return PGF_EEXIST;
    }
    if (reg->count + 1 > reg->nbuckets && grow(reg) == PGF_OK)
        slot = find_slot(reg, svc, svc_len, method, method_len);
    *slot = e;
    reg->count++;
    pthread_rwlock_unlock(&reg->lock);
    return PGF_OK;
}

int pgf_registry_register_service(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  pgf_handler_fn fn, void *handler_data,
                                  pgf_release_fn release) {
    return add(reg, service, service_len, NULL, 0, PGF_KIND_UNARY, fn,
               handler_data, release);
}

int pgf_registry_register_method(pgf_registry *reg,
                                 const char *service, size_t service_len,
                                 const char *method, size_t method_len,
                                 pgf_handler_fn fn, void *handler_data,
                                 pgf_release_fn release) {
    if (method == NULL) {
        if (release)
            release(handler_data);
        return PGF_EINVAL;
    }
    return add(reg, service, service_len, method, method_len, PGF_KIND_UNARY,
               fn, handler_data, release);
}

int pgf_registry_register(pgf_registry *reg,
                          const char *service, size_t service_len,
                          const char *method, size_t method_len, int kind,
                          pgf_handler_fn fn, void *handler_data,
                          pgf_release_fn release) {
    return add(reg, service, service_len, method, method_len, kind, fn,
               handler_data, release);
}

static int remove_entry(pgf_registry *reg, const char *svc, size_t svc_len,
                        const char *method, size_t method_len) {
    if (reg == NULL || !valid_part(svc, svc_len) ||
        (method != NULL && !valid_part(method, method_len)))
        return PGF_EINVAL;
    pthread_rwlock_wrlock(&reg->lock);
    entry **slot = find_slot(reg, svc, svc_len, method, method_len);
    entry *e = *slot;
    if (e) {
        *slot = e->next;
        reg->count--;
    }
    pthread_rwlock_unlock(&reg->lock);
    if (e == NULL)
        return PGF_ENOTFOUND;
    free_entry(e); /* release runs outside the lock */
    return PGF_OK;
}

int pgf_registry_unregister_service(pgf_registry *reg,
                                    const char *service, size_t service_len) {
    return remove_entry(reg, service, service_len, NULL, 0);
}

int pgf_registry_unregister_method(pgf_registry *reg,
                                   const char *service, size_t service_len,
                                   const char *method, size_t method_len) {
    if (method == NULL)
        return PGF_EINVAL;
    return remove_entry(reg, service, service_len, method, method_len);
}

/* Caller holds the lock. */
static int service_known(pgf_registry *reg, const char *svc, size_t len) {
    if (*find_slot(reg, svc, len, NULL, 0))
        return 1;
    for (size_t i = 0; i < reg->nbuckets; i++)
        for (entry *e = reg->buckets[i]; e; e = e->next)
            if (pgf_name_len(e->service) == len &&
                memcmp(pgf_name_str(e->service), svc, len) == 0)
                return 1;
    return 0;
}

int pgf_registry_has_service(pgf_registry *reg,
                             const char *service, size_t service_len) {
    if (reg == NULL || !valid_part(service, service_len))
        return 0;
    pthread_rwlock_rdlock(&reg->lock);
    int known = service_known(reg, service, service_len);
    pthread_rwlock_unlock(&reg->lock);
    return known;
}

pgf_handler *pgf__registry_lookup(pgf_registry *reg,
                                  const char *service, size_t service_len,
                                  const char *method, size_t method_len,
                                  int *known) {
    pthread_rwlock_rdlock(&reg->lock);
    entry *e = *find_slot(reg, service, service_len, method, method_len);
    if (e == NULL)
        e = *find_slot(reg, service, service_len, NULL, 0);
    pgf_handler *h = NULL;
    if (e) {
        h = e->handler;
        pgf__handler_ref(h);
    }
    if (known)
        *known = e != NULL || service_known(reg, service, service_len);
    pthread_rwlock_unlock(&reg->lock);
    return h;
}

int pgf_registry_has_method(pgf_registry *reg,
                            const char *service, size_t service_len,
                            const char *method, size_t method_len) {
    if (reg == NULL || !valid_part(service, service_len) ||
        !valid_part(method, method_len))
        return 0;
    pgf_handler *h = pgf__registry_lookup(reg, service, service_len, method,
                                          method_len, NULL);
    pgf__handler_unref(h);
    return h != NULL;
}

int pgf_registry_method_kind(pgf_registry *reg,
                             const char *service, size_t service_len,
                             const char *method, size_t method_len) {
    if (reg == NULL || !valid_part(service, service_len) ||
        !valid_part(method, method_len))
        return PGF_ENOTFOUND;
    pgf_handler *h = pgf__registry_lookup(reg, service, service_len, method,
                                          method_len, NULL);
    if (h == NULL)
        return PGF_ENOTFOUND;
    int kind = h->kind;
    pgf__handler_unref(h);
    return kind;
}

static int cmp_names(const void *a, const void *b) {
    const pgf_name *x = *(pgf_name *const *)a;
    const pgf_name *y = *(pgf_name *const *)b;
    return strcmp(pgf_name_str(x), pgf_name_str(y));
}

size_t pgf_registry_list_services(pgf_registry *reg,
                                  pgf_name **out, size_t cap) {
    if (reg == NULL)
        return 0;
    pthread_rwlock_rdlock(&reg->lock);
    pgf_name **all = malloc((reg->count ? reg->count : 1) * sizeof(*all));
    size_t n = 0;
    if (all) {
        for (size_t i = 0; i < reg->nbuckets; i++)
            for (entry *e = reg->buckets[i]; e; e = e->next)
                all[n++] = pgf_name_ref(e->service);
    }
    pthread_rwlock_unlock(&reg->lock);
    if (all == NULL)
        return 0;
    qsort(all, n, sizeof(*all), cmp_names);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (unique && cmp_names(&all[unique - 1], &all[i]) == 0) {
            pgf_name_unref(all[i]);
            continue;
        }
        all[unique++] = all[i];
    }
    for (size_t i = 0; i < unique; i++) {
        if (out && i < cap)
            out[i] = all[i];
        else
            pgf_name_unref(all[i]);
    }
    free(all);
    return unique;
}
