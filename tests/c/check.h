/* A tiny assertion kit for the C tests: a failed check prints file:line and
 * what failed, then ends the process with status 1 at once (_Exit: no atexit
 * handler and no other thread gets a chance to hang the failing run). */
#ifndef PGF_TEST_CHECK_H
#define PGF_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long check_count; /* checks passed, updated atomically */

#define CHECK_FAIL_(...)                                                  \
    do {                                                                  \
        fprintf(stderr, "%s:%d: CHECK failed: ", __FILE__, __LINE__);     \
        fprintf(stderr, __VA_ARGS__);                                     \
        fputc('\n', stderr);                                              \
        fflush(stdout);                                                   \
        fflush(stderr);                                                   \
        _Exit(1);                                                         \
    } while (0)

#define CHECK_PASS_() __atomic_fetch_add(&check_count, 1, __ATOMIC_RELAXED)

/* CHECK(cond): cond must be true. */
#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond))                                                      \
            CHECK_FAIL_("%s", #cond);                                     \
        CHECK_PASS_();                                                    \
    } while (0)

/* CHECK_INT(a, b): two integers must be equal; both values are printed. */
#define CHECK_INT(a, b)                                                   \
    do {                                                                  \
        long long a_ = (long long)(a), b_ = (long long)(b);               \
        if (a_ != b_)                                                     \
            CHECK_FAIL_("%s == %s (%lld != %lld)", #a, #b, a_, b_);        \
        CHECK_PASS_();                                                    \
    } while (0)

/* CHECK_MEM(p, n, q, m): the byte strings p[0..n) and q[0..m) are equal. */
#define CHECK_MEM(p, n, q, m)                                             \
    do {                                                                  \
        size_t n_ = (size_t)(n), m_ = (size_t)(m);                        \
        if (n_ != m_ || (n_ && memcmp((p), (q), n_) != 0))                \
            CHECK_FAIL_("%s[0..%zu) == %s[0..%zu)", #p, n_, #q, m_);      \
        CHECK_PASS_();                                                    \
    } while (0)

/* CHECK_STR(s, lit): the NUL-terminated string s equals lit. */
#define CHECK_STR(s, lit)                                                 \
    do {                                                                  \
        const char *s_ = (s), *l_ = (lit);                                \
        if (s_ == NULL || strcmp(s_, l_) != 0)                            \
            CHECK_FAIL_("%s == \"%s\" (got \"%s\")", #s, l_,              \
                        s_ ? s_ : "(null)");                              \
        CHECK_PASS_();                                                    \
    } while (0)

/* CHECK_CONTAINS(s, part): the NUL-terminated string s contains part. */
#define CHECK_CONTAINS(s, part)                                           \
    do {                                                                  \
        const char *s_ = (s), *p_ = (part);                               \
        if (s_ == NULL || strstr(s_, p_) == NULL)                         \
            CHECK_FAIL_("%s contains \"%s\" (got \"%s\")", #s, p_,        \
                        s_ ? s_ : "(null)");                              \
        CHECK_PASS_();                                                    \
    } while (0)

/* Runs one test function and counts it. */
#define RUN_TEST(fn, counter)                                             \
    do {                                                                  \
        printf("  %-40s", #fn);                                           \
        fflush(stdout);                                                   \
        fn();                                                             \
        printf("ok\n");                                                   \
        (counter)++;                                                      \
    } while (0)

#endif
