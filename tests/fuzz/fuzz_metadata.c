/* libFuzzer harness: metadata validation and the metadata lists of a call.
 *
 * Property: pgf_metadata_validate accepts exactly what gRPC core accepts
 * from a server (a reference checker below, written from gRPC core's
 * rules), narrowed only by the shim's documented extra rules (keys HTTP/2
 * reserves, no leading or trailing space in text values).  Above all, the
 * shim never accepts what gRPC core rejects: gRPC C++ aborts the process on
 * an invalid trailer.
 *
 * Then every entry goes through a call: request metadata takes any
 * non-empty key; initial and trailing metadata take exactly what validate
 * accepts; pgf_metadata_get gives the same bytes back, NUL-terminated; a
 * reset clears the response side; each list stays within
 * PGF_MAX_RESPONSE_METADATA; the live counters return to their start. */
#include "fuzz_common.h"

/* gRPC core: a key is legal if it is non-empty and every byte is in
 * [0-9a-z_.-]; grpc-retry-pushback-ms is parsed as milliseconds (decimal
 * digits; the shim allows 18, which never overflow); a key is binary if it
 * is at least 5 bytes long and ends in "-bin" (grpc_key_is_binary_header);
 * a text value is printable ASCII 0x20-0x7e; a binary value is any bytes. */
static int grpc_key_char(uint8_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_' ||
           c == '.' || c == '-';
}

static int grpc_is_binary(const uint8_t *k, size_t n) {
    return n >= 5 && memcmp(k + n - 4, "-bin", 4) == 0;
}

static int grpc_core_accepts(const uint8_t *k, size_t kn, const uint8_t *v,
                             size_t vn) {
    if (kn == 0)
        return 0;
    for (size_t i = 0; i < kn; i++)
        if (!grpc_key_char(k[i]))
            return 0;
    if (kn == 22 && memcmp(k, "grpc-retry-pushback-ms", 22) == 0) {
        if (vn == 0 || vn > 18)
            return 0;
        for (size_t i = 0; i < vn; i++)
            if (v[i] < '0' || v[i] > '9')
                return 0;
        return 1;
    }
    if (grpc_is_binary(k, kn))
        return 1;
    for (size_t i = 0; i < vn; i++)
        if (v[i] < 0x20 || v[i] > 0x7e)
            return 0;
    return 1;
}

/* The shim's own narrowing, as pygrpc_ffi.h documents it. */
static int shim_extra_ok(const uint8_t *k, size_t kn, const uint8_t *v,
                         size_t vn) {
    static const char *const reserved[] = {
        "connection", "content-length", "content-type", "keep-alive",
        "proxy-connection", "te", "transfer-encoding", "upgrade",
        "grpc-status", "grpc-message", "grpc-status-details-bin",
        "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "grpc-internal-encoding-request", "grpc-internal-stream-encoding-request",
        "grpc-previous-rpc-attempts", "grpc-trace-bin", "grpc-tags-bin",
        "grpc-server-stats-bin", "grpclb_client_stats"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
        if (strlen(reserved[i]) == kn && memcmp(reserved[i], k, kn) == 0) {
            FUZZ_CHECK(pgf_metadata_key_owned((const char *)k, kn) == 1);
            return 0;
        }
    FUZZ_CHECK(pgf_metadata_key_owned((const char *)k, kn) == 0);
    if (!grpc_is_binary(k, kn) && vn > 0 && (v[0] == ' ' || v[vn - 1] == ' '))
        return 0;
    return 1;
}

static void check_entry(const pgf_metadata *md, size_t i, const uint8_t *k,
                        size_t kn, const uint8_t *v, size_t vn) {
    const char *key = NULL;
    const uint8_t *value = NULL;
    size_t key_len = 0, value_len = 0;
    FUZZ_CHECK(pgf_metadata_get(md, i, &key, &key_len, &value, &value_len) ==
               PGF_OK);
    FUZZ_CHECK(key_len == kn && memcmp(key, k, kn) == 0 && key[kn] == '\0');
    FUZZ_CHECK(value_len == vn && (vn == 0 || memcmp(value, v, vn) == 0));
    FUZZ_CHECK(value[vn] == '\0');
    FUZZ_CHECK(pgf_metadata_get(md, i, NULL, NULL, NULL, NULL) == PGF_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t base[FUZZ_LIVE_KINDS];
    fuzz_live_snapshot(base);
    fuzz_input in = {data, size, 0};
    pgf_call *call = pgf_call_new("/fuzz.Md/Check", 14);
    FUZZ_CHECK(call != NULL);
    size_t n_req = 0, n_init = 0, n_trail = 0;
    size_t init_wire = 0, trail_wire = 0; /* against PGF_MAX_RESPONSE_METADATA */

    while (!fuzz_done(&in)) {
        size_t kn, vn;
        const uint8_t *k = fuzz_slice(&in, 40, &kn);
        const uint8_t *v = fuzz_slice(&in, 64, &vn);
        uint8_t where = fuzz_byte(&in);

        int core = grpc_core_accepts(k, kn, v, vn);
        int expect = core && shim_extra_ok(k, kn, v, vn);
        int rc = pgf_metadata_validate((const char *)k, kn, v, vn);
        FUZZ_CHECK(rc == PGF_OK || rc == PGF_EMETADATA);
        if (rc == PGF_OK && !core) {
            fprintf(stderr, "shim accepts what gRPC core rejects: key "
                            "\"%.*s\" (%zu bytes)\n", (int)kn, k, kn);
            abort();
        }
        FUZZ_CHECK((rc == PGF_OK) == expect);
        /* NULL with a length is never valid; NULL empty value is. */
        FUZZ_CHECK(pgf_metadata_validate(NULL, kn, v, vn) == PGF_EMETADATA);
        FUZZ_CHECK(pgf_metadata_validate((const char *)k, kn, NULL,
                                         vn ? vn : 1) == PGF_EMETADATA);

        /* Request metadata: the transport's bytes, any non-empty key. */
        rc = pgf_call_add_request_metadata(call, (const char *)k, kn, v, vn);
        FUZZ_CHECK(rc == (kn ? PGF_OK : PGF_EINVAL));
        if (rc == PGF_OK)
            check_entry(pgf_call_request_metadata(call), n_req++, k, kn, v, vn);

        /* Response metadata: only what validate accepts, within the
         * response metadata budget. */
        size_t w = fuzz_md_wire(k, kn, vn);
        if (where & 1) {
            int fits = trail_wire + w <= PGF_MAX_RESPONSE_METADATA;
            rc = pgf_call_add_trailing_metadata(call, (const char *)k, kn, v, vn);
            FUZZ_CHECK(rc == (expect && fits ? PGF_OK : PGF_EMETADATA));
            if (rc == PGF_OK) {
                check_entry(pgf_call_trailing_metadata(call), n_trail++, k,
                            kn, v, vn);
                trail_wire += w;
            }
        } else {
            int fits = init_wire + w <= PGF_MAX_RESPONSE_METADATA;
            rc = pgf_call_add_initial_metadata(call, (const char *)k, kn, v, vn);
            FUZZ_CHECK(rc == (expect && fits ? PGF_OK : PGF_EMETADATA));
            if (rc == PGF_OK) {
                check_entry(pgf_call_initial_metadata(call), n_init++, k, kn,
                            v, vn);
                init_wire += w;
            }
        }
        if ((where & 0x3e) == 0x3e) {
            FUZZ_CHECK(pgf_call_reset_response(call) == PGF_OK);
            n_init = n_trail = 0;
            init_wire = trail_wire = 0;
        }
        FUZZ_CHECK(pgf_metadata_count(pgf_call_request_metadata(call)) == n_req);
        FUZZ_CHECK(pgf_metadata_count(pgf_call_initial_metadata(call)) == n_init);
        FUZZ_CHECK(pgf_metadata_count(pgf_call_trailing_metadata(call)) ==
                   n_trail);
    }
    FUZZ_CHECK(pgf_metadata_get(pgf_call_request_metadata(call), n_req, NULL,
                                NULL, NULL, NULL) == PGF_EINVAL);
    /* After the finish, response metadata is frozen. */
    FUZZ_CHECK(pgf_call_finish(call, PGF_STATUS_OK, NULL, 0) == PGF_OK);
    FUZZ_CHECK(pgf_call_add_trailing_metadata(call, "k", 1,
                                              (const uint8_t *)"v", 1) ==
               PGF_ESTATE);
    pgf_call_unref(call);
    fuzz_check_live(base);
    return 0;
}
