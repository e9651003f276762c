/* Metadata lists and the gRPC rules for metadata a server may send. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

void pgf__metadata_init(pgf_metadata *md) {
    md->entries = NULL;
    md->count = 0;
    md->cap = 0;
    md->wire_size = 0;
}

void pgf__metadata_clear(pgf_metadata *md) {
    for (size_t i = 0; i < md->count; i++)
        if (md->entries[i].owns_block)
            free(md->entries[i].key);
    free(md->entries);
    pgf__metadata_init(md);
}

int pgf__metadata_append(pgf_metadata *md, const char *key, size_t key_len,
                         const uint8_t *value, size_t value_len) {
    if (key == NULL || key_len == 0 || (value == NULL && value_len != 0) ||
        !pgf__len_ok(key_len) || !pgf__len_ok(value_len))
        return PGF_EINVAL;
    /* The block below holds key_len + value_len + 2 bytes: no wrap-around. */
    if (key_len > (size_t)PTRDIFF_MAX - 2 ||
        value_len > (size_t)PTRDIFF_MAX - 2 - key_len)
        return PGF_ENOMEM;
    if (md->count == md->cap) {
        if (md->cap > ((size_t)PTRDIFF_MAX / sizeof(pgf_md_entry)) / 2)
            return PGF_ENOMEM;
        size_t cap = md->cap ? md->cap * 2 : 4;
        pgf_md_entry *e = realloc(md->entries, cap * sizeof(*e));
        if (e == NULL)
            return PGF_ENOMEM;
        md->entries = e;
        md->cap = cap;
    }
    /* One block: key NUL value NUL. */
    char *block = malloc(key_len + value_len + 2);
    if (block == NULL)
        return PGF_ENOMEM;
    memcpy(block, key, key_len);
    block[key_len] = '\0';
    uint8_t *v = (uint8_t *)block + key_len + 1;
    if (value_len)
        memcpy(v, value, value_len);
    v[value_len] = '\0';
    pgf_md_entry *e = &md->entries[md->count++];
    e->key = block;
    e->key_len = key_len;
    e->value = v;
    e->value_len = value_len;
    e->owns_block = 1;
    size_t w = pgf__md_wire_size(key, key_len, value_len);
    md->wire_size = md->wire_size > SIZE_MAX - w ? SIZE_MAX : md->wire_size + w;
    return PGF_OK;
}

/* Room for n more entries: PGF_OK or PGF_ENOMEM, md unchanged on failure. */
static int reserve(pgf_metadata *md, size_t n) {
    if (n > (size_t)PTRDIFF_MAX / sizeof(pgf_md_entry) - md->count)
        return PGF_ENOMEM;
    size_t need = md->count + n;
    if (need <= md->cap)
        return PGF_OK;
    size_t cap = md->cap ? md->cap : 4;
    while (cap < need)
        cap = cap > (size_t)PTRDIFF_MAX / sizeof(pgf_md_entry) / 2
                  ? need : cap * 2;
    pgf_md_entry *e = realloc(md->entries, cap * sizeof(*e));
    if (e == NULL)
        return PGF_ENOMEM;
    md->entries = e;
    md->cap = cap;
    return PGF_OK;
}

int pgf__metadata_append_list(pgf_metadata *md,
                              const pgf_metadata_entry *entries, size_t count) {
    if (count == 0)
        return PGF_OK;
    if (entries == NULL || count > (size_t)PTRDIFF_MAX / sizeof(*entries))
        return PGF_EINVAL;
    /* Every entry is checked, and the block's size summed without
     * wrap-around, before anything is allocated or copied. */
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const pgf_metadata_entry *in = &entries[i];
        if (in->key == NULL || in->key_len == 0 ||
            (in->value == NULL && in->value_len != 0) ||
            !pgf__len_ok(in->key_len) || !pgf__len_ok(in->value_len))
            return PGF_EINVAL;
        size_t room = (size_t)PTRDIFF_MAX - total;
        if (in->key_len > room || in->value_len > room - in->key_len ||
            2 > room - in->key_len - in->value_len)
            return PGF_ENOMEM;
        total += in->key_len + in->value_len + 2;
    }
    if (reserve(md, count) != PGF_OK)
        return PGF_ENOMEM;
    char *block = malloc(total);
    if (block == NULL)
        return PGF_ENOMEM;
    /* Each entry: key NUL value NUL, one after the other. */
    char *p = block;
    size_t wire = md->wire_size;
    for (size_t i = 0; i < count; i++) {
        const pgf_metadata_entry *in = &entries[i];
        pgf_md_entry *e = &md->entries[md->count + i];
        memcpy(p, in->key, in->key_len);
        p[in->key_len] = '\0';
        e->key = p;
        e->key_len = in->key_len;
        e->owns_block = i == 0;
        p += in->key_len + 1;
        if (in->value_len)
            memcpy(p, in->value, in->value_len);
        p[in->value_len] = '\0';
        e->value = (uint8_t *)p;
        e->value_len = in->value_len;
        p += in->value_len + 1;
        size_t w = pgf__md_wire_size(in->key, in->key_len, in->value_len);
        wire = wire > SIZE_MAX - w ? SIZE_MAX : wire + w;
    }
    md->count += count;
    md->wire_size = wire;
    return PGF_OK;
}

static int is_binary_key(const char *key, size_t key_len) {
    /* gRPC core's rule (grpc_key_is_binary_header): binary only if at least
     * 5 characters long and ending in "-bin"; "-bin" alone is a text key. */
    return key_len >= 5 && memcmp(key + key_len - 4, "-bin", 4) == 0;
}

size_t pgf__md_wire_size(const char *key, size_t key_len, size_t value_len) {
    size_t value = is_binary_key(key, key_len) ? value_len / 3 * 4 + 4 : value_len;
    return key_len + value + 32; /* each at most PTRDIFF_MAX * 4/3: no wrap */
}

int pgf__metadata_append_bounded(pgf_metadata *md, size_t reserved,
                                 const char *key, size_t key_len,
                                 const uint8_t *value, size_t value_len) {
    if (key == NULL || !pgf__len_ok(key_len) || !pgf__len_ok(value_len))
        return PGF_EMETADATA;
    size_t w = pgf__md_wire_size(key, key_len, value_len);
    if (w > PGF_MAX_RESPONSE_METADATA ||
        reserved > PGF_MAX_RESPONSE_METADATA - w ||
        md->wire_size > PGF_MAX_RESPONSE_METADATA - w - reserved)
        return PGF_EMETADATA;
    return pgf__metadata_append(md, key, key_len, value, value_len);
}

size_t pgf__status_message_fit(const char *msg, size_t len) {
    size_t sent = 0, i = 0;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        size_t n = (c < 0x20 || c > 0x7e || c == '%') ? 3 : 1;
        if (sent + n > PGF_MAX_STATUS_MESSAGE)
            break;
        sent += n;
    }
    if (i < len) /* cut: never inside a UTF-8 character */
        while (i > 0 && ((unsigned char)msg[i] & 0xC0) == 0x80)
            i--;
    return i;
}

size_t pgf_metadata_count(const pgf_metadata *md) { return md ? md->count : 0; }

int pgf_metadata_get(const pgf_metadata *md, size_t i,
                     const char **key, size_t *key_len,
                     const uint8_t **value, size_t *value_len) {
    if (md == NULL || i >= md->count)
        return PGF_EINVAL;
    const pgf_md_entry *e = &md->entries[i];
    if (key)
        *key = e->key;
    if (key_len)
        *key_len = e->key_len;
    if (value)
        *value = e->value;
    if (value_len)
        *value_len = e->value_len;
    return PGF_OK;
}

static int is_key_char(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' ||
           c == '.' || c == '-';
}

/* Keys a handler may not send: those HTTP/2 forbids in a response
 * (connection-specific, RFC 9113 8.2.2), those gRPC's framing or the call
 * itself writes (status, message, details, compression, deadline), and the
 * request-side grpc- ones gRPC core parses into its own slots
 * (metadata_batch.h).
 * Any other grpc- key passes, as gRPC core passes it (grpc-retry-pushback-ms,
 * gRFC A6). */
static const char *const reserved_keys[] = {
    "connection", "content-length", "content-type", "keep-alive",
    "proxy-connection", "te", "transfer-encoding", "upgrade",
    "grpc-status", "grpc-message", "grpc-status-details-bin",
    "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
    "grpc-internal-encoding-request", "grpc-internal-stream-encoding-request",
    "grpc-previous-rpc-attempts", "grpc-trace-bin", "grpc-tags-bin",
    "grpc-server-stats-bin", "grpclb_client_stats",
};

static int is_reserved(const char *key, size_t key_len) {
    for (size_t i = 0; i < sizeof(reserved_keys) / sizeof(*reserved_keys); i++)
        if (strlen(reserved_keys[i]) == key_len &&
            memcmp(reserved_keys[i], key, key_len) == 0)
            return 1;
    return 0;
}

/* gRPC core parses grpc-retry-pushback-ms as an integer of milliseconds and
 * sends what it parsed: anything else reaches the client as a value it
 * cannot parse, failing the call there.  18 digits never overflow int64. */
static int pushback_ok(const char *key, size_t key_len, const uint8_t *value,
                       size_t value_len) {
    static const char pushback[] = "grpc-retry-pushback-ms";
    if (key_len != sizeof(pushback) - 1 || memcmp(key, pushback, key_len) != 0)
        return 1;
    if (value_len == 0 || value_len > 18)
        return 0;
    for (size_t i = 0; i < value_len; i++)
        if (value[i] < '0' || value[i] > '9')
            return 0;
    return 1;
}

int pgf_metadata_key_owned(const char *key, size_t key_len) {
    return key != NULL && is_reserved(key, key_len);
}

int pgf_metadata_validate(const char *key, size_t key_len,
                          const uint8_t *value, size_t value_len) {
    if (key == NULL || key_len == 0 || (value == NULL && value_len != 0) ||
        !pgf__len_ok(key_len) || !pgf__len_ok(value_len))
        return PGF_EMETADATA;
    for (size_t i = 0; i < key_len; i++)
        if (!is_key_char((unsigned char)key[i]))
            return PGF_EMETADATA;
    if (is_reserved(key, key_len) || !pushback_ok(key, key_len, value, value_len))
        return PGF_EMETADATA;
    if (is_binary_key(key, key_len))
        return PGF_OK;
    for (size_t i = 0; i < value_len; i++)
        if (value[i] < 0x20 || value[i] > 0x7e)
            return PGF_EMETADATA;
    if (value_len && (value[0] == ' ' || value[value_len - 1] == ' '))
        return PGF_EMETADATA;
    return PGF_OK;
}
