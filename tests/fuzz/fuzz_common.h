/* Shared helpers of the libFuzzer harnesses (tests/fuzz/fuzz_*.c): a failed
 * property prints what failed and aborts, so libFuzzer records the input as
 * a crash; live-object snapshots prove that every input frees what it made.
 *
 * Build: make -C tests/fuzz; run: bash tests/fuzz/run.sh. */
#ifndef PGF_FUZZ_COMMON_H
#define PGF_FUZZ_COMMON_H

#include "pygrpc_ffi.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_LIVE_KINDS 6

#define FUZZ_CHECK(cond)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__,     \
                    __LINE__, #cond);                                     \
            abort();                                                      \
        }                                                                 \
    } while (0)

static inline void fuzz_live_snapshot(int64_t out[FUZZ_LIVE_KINDS]) {
    for (int k = 0; k < FUZZ_LIVE_KINDS; k++)
        out[k] = pgf_live_count(k);
}

static inline void fuzz_check_live(const int64_t base[FUZZ_LIVE_KINDS]) {
    for (int k = 0; k < FUZZ_LIVE_KINDS; k++) {
        if (pgf_live_count(k) != base[k]) {
            fprintf(stderr, "live kind %d: %lld at the end, %lld at the start\n",
                    k, (long long)pgf_live_count(k), (long long)base[k]);
            abort();
        }
    }
}

/* The size the shim counts for one response metadata entry against
 * PGF_MAX_RESPONSE_METADATA: key + value + 32 (HPACK), a binary value
 * (5+ byte key ending in "-bin") at its base64 bound n / 3 * 4 + 4. */
static inline size_t fuzz_md_wire(const uint8_t *key, size_t key_len,
                                  size_t value_len) {
    int binary = key_len >= 5 && memcmp(key + key_len - 4, "-bin", 4) == 0;
    return key_len + (binary ? value_len / 3 * 4 + 4 : value_len) + 32;
}

/* The status details count as the trailer grpc-status-details-bin. */
static inline size_t fuzz_details_wire(size_t details_len) {
    return details_len ? fuzz_md_wire((const uint8_t *)"grpc-status-details-bin",
                                      23, details_len)
                       : 0;
}

/* Reads the input as a stream of bytes; past the end everything is 0. */
typedef struct fuzz_input {
    const uint8_t *data;
    size_t size;
    size_t pos;
} fuzz_input;

static inline int fuzz_done(const fuzz_input *in) { return in->pos >= in->size; }

static inline uint8_t fuzz_byte(fuzz_input *in) {
    return in->pos < in->size ? in->data[in->pos++] : 0;
}

/* A slice of at most max bytes of the input (length from one byte). */
static inline const uint8_t *fuzz_slice(fuzz_input *in, size_t max,
                                        size_t *len) {
    size_t want = fuzz_byte(in) % (max + 1);
    size_t left = in->size - (in->pos < in->size ? in->pos : in->size);
    if (want > left)
        want = left;
    const uint8_t *p = in->data + (in->pos < in->size ? in->pos : in->size);
    in->pos += want;
    *len = want;
    return p;
}

#endif
