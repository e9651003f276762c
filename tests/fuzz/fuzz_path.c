/* libFuzzer harness: method path parsing and names.
 *
 * pgf_call_new takes arbitrary bytes as a path; it must accept exactly the
 * paths "/service/method" with both parts non-empty, no further '/' and no
 * NUL (a reference parser here says which), and then give back the two
 * parts as names.  pgf_name_new copies any bytes.  Everything made is freed:
 * the live counters return to their start. */
#include "fuzz_common.h"

/* The reference: 1 and the split if path is "/S/M" as above. */
static int ref_parse(const uint8_t *p, size_t n, size_t *svc_len) {
    if (n == 0 || p[0] != '/')
        return 0;
    size_t slashes = 0, second = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\0')
            return 0;
        if (p[i] == '/' && i > 0) {
            slashes++;
            second = i;
        }
    }
    if (slashes != 1 || second == 1 || second == n - 1)
        return 0;
    *svc_len = second - 1;
    return 1;
}

static void check_name(const pgf_name *name, const uint8_t *s, size_t len) {
    FUZZ_CHECK(name != NULL);
    FUZZ_CHECK(pgf_name_len(name) == len);
    const char *str = pgf_name_str(name);
    FUZZ_CHECK(len == 0 || memcmp(str, s, len) == 0);
    FUZZ_CHECK(str[len] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t base[FUZZ_LIVE_KINDS];
    fuzz_live_snapshot(base);

    /* Names: any bytes, any length (including 0 and embedded NULs). */
    pgf_name *name = pgf_name_new((const char *)data, size);
    check_name(name, data, size);
    FUZZ_CHECK(pgf_name_ref(name) == name);
    pgf_name_unref(name);
    check_name(name, data, size);
    pgf_name_unref(name);
    FUZZ_CHECK(pgf_name_new(NULL, size ? size : 1) == NULL);

    /* Paths. */
    size_t svc_len = 0;
    int valid = ref_parse(data, size, &svc_len);
    pgf_call *call = pgf_call_new((const char *)data, size);
    FUZZ_CHECK((call != NULL) == valid);
    if (call) {
        check_name(pgf_call_service(call), data + 1, svc_len);
        check_name(pgf_call_method(call), data + 2 + svc_len,
                   size - svc_len - 2);
        /* The names outlive the call while referenced. */
        pgf_name *svc = pgf_name_ref((pgf_name *)pgf_call_service(call));
        pgf_call_unref(call);
        check_name(svc, data + 1, svc_len);
        pgf_name_unref(svc);
    }
    /* Every prefix length of the same bytes, parsed the same way. */
    if (size > 0) {
        size_t cut = data[size - 1] % size;
        valid = ref_parse(data, cut, &svc_len);
        call = pgf_call_new((const char *)data, cut);
        FUZZ_CHECK((call != NULL) == valid);
        pgf_call_unref(call);
    }
    FUZZ_CHECK(pgf_call_new(NULL, size) == NULL);
    fuzz_check_live(base);
    return 0;
}
