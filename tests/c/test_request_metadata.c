/* Unit tests of pgf_call_add_request_metadata_list (since ABI 2): a host's
 * whole request header list copied in one block.  Entries read back as they
 * were given (binary values with NULs, empty values), interleave with
 * entries added one by one, are copies (the host's buffers may go at once),
 * and an invalid list appends nothing.  Every PGF_LIVE_* counter returns to
 * its start value; under ASan the block is freed exactly once.
 *
 * Also the auth properties and peer identity key (since ABI 4), which reuse
 * the metadata list: set, read back, refused once dispatched, and bad
 * arguments refused without a change.
 *
 * Build: make -C tests/c test (or test-asan). */
#include "pygrpc_ffi.h"
#include "check.h"

#include <stdint.h>

#define NKINDS 6

static void live_snapshot(int64_t out[NKINDS]) {
    for (int k = 0; k < NKINDS; k++)
        out[k] = pgf_live_count(k);
}

static void check_live(const int64_t base[NKINDS]) {
    for (int k = 0; k < NKINDS; k++)
        CHECK_INT(pgf_live_count(k), base[k]);
}

static pgf_call *new_call(void) {
    pgf_call *c = pgf_call_new("/pkg.Svc/M", 10);
    if (c == NULL)
        CHECK_FAIL_("pgf_call_new returned NULL");
    return c;
}

static void check_entry(const pgf_metadata *md, size_t i, const char *key,
                        const void *value, size_t value_len) {
    const char *k;
    size_t kl;
    const uint8_t *v;
    size_t vl;
    CHECK_INT(pgf_metadata_get(md, i, &k, &kl, &v, &vl), PGF_OK);
    CHECK_MEM(k, kl, key, strlen(key));
    CHECK_INT(k[kl], '\0');
    CHECK_MEM(v, vl, value, value_len);
    CHECK_INT(v[vl], '\0');
}

static pgf_metadata_entry entry(const char *key, const void *value,
                                size_t value_len) {
    pgf_metadata_entry e = {key, strlen(key), (const uint8_t *)value,
                            value_len};
    return e;
}

static void test_list_reads_back_in_order(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call();
    pgf_metadata_entry in[4] = {
        entry("x-a", "one", 3),
        entry("x-b-bin", "\0\1\0", 3),
        entry("x-empty", NULL, 0),
        entry("x-a", "two", 3),
    };
    CHECK_INT(pgf_call_add_request_metadata_list(c, in, 4), PGF_OK);
    const pgf_metadata *md = pgf_call_request_metadata(c);
    CHECK_INT(pgf_metadata_count(md), 4);
    check_entry(md, 0, "x-a", "one", 3);
    check_entry(md, 1, "x-b-bin", "\0\1\0", 3);
    check_entry(md, 2, "x-empty", "", 0);
    check_entry(md, 3, "x-a", "two", 3);
    pgf_call_unref(c);
    check_live(base);
}

static void test_list_mixes_with_single_entries(void) {
    pgf_call *c = new_call();
    pgf_metadata_entry first[2] = {entry("k1", "v1", 2), entry("k2", "v2", 2)};
    pgf_metadata_entry second[1] = {entry("k4", "v4", 2)};
    CHECK_INT(pgf_call_add_request_metadata_list(c, first, 2), PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata(c, "k3", 2,
                                            (const uint8_t *)"v3", 2),
              PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata_list(c, second, 1), PGF_OK);
    const pgf_metadata *md = pgf_call_request_metadata(c);
    CHECK_INT(pgf_metadata_count(md), 4);
    check_entry(md, 0, "k1", "v1", 2);
    check_entry(md, 1, "k2", "v2", 2);
    check_entry(md, 2, "k3", "v3", 2);
    check_entry(md, 3, "k4", "v4", 2);
    pgf_call_unref(c); /* ASan: three blocks, each freed once */
}

static void test_list_is_a_copy(void) {
    pgf_call *c = new_call();
    char key[8] = "x-key";
    char value[4096];
    memset(value, 'a', sizeof(value));
    /* Many entries over the same host buffer (an HPACK-indexed header). */
    enum { N = 300 };
    static pgf_metadata_entry in[N];
    for (size_t i = 0; i < N; i++)
        in[i] = entry(key, value, sizeof(value));
    CHECK_INT(pgf_call_add_request_metadata_list(c, in, N), PGF_OK);
    memset(value, 'b', sizeof(value));
    key[0] = 'y';
    const pgf_metadata *md = pgf_call_request_metadata(c);
    CHECK_INT(pgf_metadata_count(md), N);
    char expect[4096];
    memset(expect, 'a', sizeof(expect));
    check_entry(md, 0, "x-key", expect, sizeof(expect));
    check_entry(md, N - 1, "x-key", expect, sizeof(expect));
    pgf_call_unref(c);
}

static void test_invalid_list_appends_nothing(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call();
    CHECK_INT(pgf_call_add_request_metadata(c, "k0", 2,
                                            (const uint8_t *)"v0", 2),
              PGF_OK);
    const pgf_metadata *md = pgf_call_request_metadata(c);

    pgf_metadata_entry empty_key[2] = {entry("k1", "v1", 2), entry("", "v", 1)};
    CHECK_INT(pgf_call_add_request_metadata_list(c, empty_key, 2), PGF_EINVAL);
    pgf_metadata_entry null_key[2] = {entry("k1", "v1", 2), {NULL, 2, NULL, 0}};
    CHECK_INT(pgf_call_add_request_metadata_list(c, null_key, 2), PGF_EINVAL);
    pgf_metadata_entry null_value[1] = {{"k1", 2, NULL, 3}};
    CHECK_INT(pgf_call_add_request_metadata_list(c, null_value, 1), PGF_EINVAL);
    pgf_metadata_entry huge_value[2] = {entry("k1", "v1", 2),
                                        {"k2", 2, (const uint8_t *)"v", SIZE_MAX}};
    CHECK_INT(pgf_call_add_request_metadata_list(c, huge_value, 2), PGF_EINVAL);
    pgf_metadata_entry huge_key[1] = {{"k", SIZE_MAX / 2 + 1, (const uint8_t *)"v", 1}};
    CHECK_INT(pgf_call_add_request_metadata_list(c, huge_key, 1), PGF_EINVAL);
    /* A count no array can hold is refused before entries is read. */
    pgf_metadata_entry one[1] = {entry("k1", "v1", 2)};
    CHECK_INT(pgf_call_add_request_metadata_list(c, one, SIZE_MAX), PGF_EINVAL);
    CHECK_INT(pgf_call_add_request_metadata_list(c, one, SIZE_MAX / 2), PGF_EINVAL);
    CHECK_INT(pgf_call_add_request_metadata_list(c, NULL, 3), PGF_EINVAL);
    CHECK_INT(pgf_metadata_count(md), 1);
    check_entry(md, 0, "k0", "v0", 2);

    /* Nothing to append is fine, with or without an array. */
    CHECK_INT(pgf_call_add_request_metadata_list(c, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata_list(c, one, 0), PGF_OK);
    CHECK_INT(pgf_metadata_count(md), 1);
    CHECK_INT(pgf_call_add_request_metadata_list(NULL, one, 1), PGF_EINVAL);
    pgf_call_unref(c);
    check_live(base);
}

/* A registry with fn as the unary handler of new_call's method. */
static pgf_registry *registry_with(pgf_handler_fn fn) {
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_INT(pgf_registry_register(reg, "pkg.Svc", 7, "M", 1, PGF_KIND_UNARY,
                                    fn, NULL, NULL),
              PGF_OK);
    return reg;
}

static void h_count(void *data, pgf_call *call) {
    (void)data;
    size_t n = pgf_metadata_count(pgf_call_request_metadata(call));
    char text[32];
    int len = snprintf(text, sizeof(text), "%zu", n);
    pgf_call_finish(call, PGF_STATUS_OK, text, (size_t)len);
}

static void test_dispatched_call_refuses_a_list(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = registry_with(h_count);
    pgf_call *c = new_call();
    pgf_metadata_entry in[3] = {entry("a", "1", 1), entry("b", "2", 1),
                                entry("c", "3", 1)};
    CHECK_INT(pgf_call_add_request_metadata_list(c, in, 3), PGF_OK);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    size_t len;
    const char *msg = pgf_call_status_message(c, &len);
    CHECK_MEM(msg, len, "3", 1);
    CHECK_INT(pgf_call_add_request_metadata_list(c, in, 3), PGF_ESTATE);
    CHECK_INT(pgf_metadata_count(pgf_call_request_metadata(c)), 3);
    pgf_call_unref(c);
    pgf_registry_free(reg);
    check_live(base);
}

static void test_auth_properties_read_back(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call();
    const pgf_metadata *auth = pgf_call_auth_properties(c);
    CHECK(auth != NULL);
    CHECK_INT(pgf_metadata_count(auth), 0);
    size_t len = 99;
    const char *key = pgf_call_peer_identity_key(c, &len);
    CHECK_MEM(key, len, "", 0);
    CHECK_INT(pgf_call_add_auth_property(c, "transport_security_type", 23,
                                         (const uint8_t *)"ssl", 3),
              PGF_OK);
    pgf_metadata_entry sans[2] = {
        entry("x509_subject_alternative_name", "a.example", 9),
        entry("x509_subject_alternative_name", "\0bin", 4)};
    CHECK_INT(pgf_call_add_auth_properties(c, sans, 2), PGF_OK);
    CHECK_INT(pgf_call_set_peer_identity_key(c, "x509_common_name", 16),
              PGF_OK);
    CHECK_INT(pgf_call_set_peer_identity_key(
                  c, "x509_subject_alternative_name", 29),
              PGF_OK);
    CHECK_INT(pgf_metadata_count(auth), 3);
    check_entry(auth, 0, "transport_security_type", "ssl", 3);
    check_entry(auth, 1, "x509_subject_alternative_name", "a.example", 9);
    check_entry(auth, 2, "x509_subject_alternative_name", "\0bin", 4);
    key = pgf_call_peer_identity_key(c, &len);
    CHECK_MEM(key, len, "x509_subject_alternative_name", 29);
    CHECK_INT(key[len], '\0');
    CHECK_INT(pgf_call_set_peer_identity_key(c, NULL, 0), PGF_OK);
    key = pgf_call_peer_identity_key(c, &len);
    CHECK_MEM(key, len, "", 0);
    /* Separate from the request metadata. */
    CHECK_INT(pgf_metadata_count(pgf_call_request_metadata(c)), 0);
    pgf_call_unref(c);
    check_live(base);
}

static void test_auth_bad_arguments(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call();
    const uint8_t *v = (const uint8_t *)"v";
    size_t huge = (size_t)PTRDIFF_MAX + 1;
    CHECK_INT(pgf_call_add_auth_property(NULL, "n", 1, v, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_property(c, NULL, 1, v, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_property(c, "", 0, v, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_property(c, "n", 1, NULL, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_property(c, "n", huge, v, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_property(c, "n", 1, v, huge), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_properties(NULL, NULL, 0), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_properties(c, NULL, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_add_auth_properties(c, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_set_peer_identity_key(NULL, "n", 1), PGF_EINVAL);
    CHECK_INT(pgf_call_set_peer_identity_key(c, NULL, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_set_peer_identity_key(c, "n", huge), PGF_EINVAL);
    CHECK_INT(pgf_metadata_count(pgf_call_auth_properties(c)), 0);
    CHECK(pgf_call_auth_properties(NULL) == NULL);
    size_t len = 99;
    const char *key = pgf_call_peer_identity_key(NULL, &len);
    CHECK_MEM(key, len, "", 0);
    CHECK(pgf_call_peer_identity_key(NULL, NULL) != NULL);
    pgf_call_unref(c);
    check_live(base);
}

static void h_auth(void *data, pgf_call *call) {
    (void)data;
    size_t n = pgf_metadata_count(pgf_call_auth_properties(call));
    size_t key_len;
    pgf_call_peer_identity_key(call, &key_len);
    char text[32];
    int len = snprintf(text, sizeof(text), "%zu/%zu", n, key_len);
    pgf_call_finish(call, PGF_STATUS_OK, text, (size_t)len);
}

static void test_dispatched_call_refuses_auth(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = registry_with(h_auth);
    pgf_call *c = new_call();
    pgf_metadata_entry in[1] = {entry("x509_common_name", "cn", 2)};
    CHECK_INT(pgf_call_add_auth_properties(c, in, 1), PGF_OK);
    CHECK_INT(pgf_call_set_peer_identity_key(c, "x509_common_name", 16),
              PGF_OK);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    size_t len;
    const char *msg = pgf_call_status_message(c, &len);
    CHECK_MEM(msg, len, "1/16", 4);
    CHECK_INT(pgf_call_add_auth_properties(c, in, 1), PGF_ESTATE);
    CHECK_INT(pgf_call_add_auth_property(c, "n", 1, NULL, 0), PGF_ESTATE);
    CHECK_INT(pgf_call_set_peer_identity_key(c, "n", 1), PGF_ESTATE);
    CHECK_INT(pgf_call_set_peer_identity_key(c, NULL, 0), PGF_ESTATE);
    CHECK_INT(pgf_metadata_count(pgf_call_auth_properties(c)), 1);
    const char *key = pgf_call_peer_identity_key(c, &len);
    CHECK_MEM(key, len, "x509_common_name", 16);
    pgf_call_unref(c);
    pgf_registry_free(reg);
    check_live(base);
}

int main(void) {
    int passed = 0;
    printf("test_request_metadata: ABI %d\n", pgf_abi_version());
    RUN_TEST(test_list_reads_back_in_order, passed);
    RUN_TEST(test_list_mixes_with_single_entries, passed);
    RUN_TEST(test_list_is_a_copy, passed);
    RUN_TEST(test_invalid_list_appends_nothing, passed);
    RUN_TEST(test_dispatched_call_refuses_a_list, passed);
    RUN_TEST(test_auth_properties_read_back, passed);
    RUN_TEST(test_auth_bad_arguments, passed);
    RUN_TEST(test_dispatched_call_refuses_auth, passed);
    printf("test_request_metadata: %d passed (%ld checks)\n", passed,
           check_count);
    return 0;
}
