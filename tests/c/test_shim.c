/* Unit tests of the C shim alone (no Python): names, metadata rules, calls,
 * the registry, sync and async dispatch, payload ownership, cancellation,
 * unregistering and freeing registries with calls in flight, and a bounded
 * multi-threaded stress of dispatch against register/unregister.  Every
 * PGF_LIVE_* counter must be back to zero at the end.
 *
 * Build: make -C tests/c test (or test-asan, with leak detection on). */
#define _GNU_SOURCE /* RTLD_NEXT, for the pthread_mutex_unlock interposer */

#include "pygrpc_ffi.h"
#include "check.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* ------------------------------------------------------------ helpers */

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#define NKINDS 6
static const char *const kind_names[NKINDS] = {"names", "handlers", "calls",
                                               "registries", "buffers",
                                               "messages"};

static void live_snapshot(int64_t out[NKINDS]) {
    for (int k = 0; k < NKINDS; k++)
        out[k] = pgf_live_count(k);
}

/* Every counter equals its value in `base`, plus delta[k] if given. */
static void check_live_(const int64_t base[NKINDS], const int64_t *delta,
                        const char *file, int line) {
    for (int k = 0; k < NKINDS; k++) {
        int64_t want = base[k] + (delta ? delta[k] : 0);
        int64_t got = pgf_live_count(k);
        if (got != want) {
            fprintf(stderr, "%s:%d: CHECK failed: live %s: %lld != %lld\n",
                    file, line, kind_names[k], (long long)got,
                    (long long)want);
            fflush(stderr);
            _Exit(1);
        }
        CHECK_PASS_();
    }
}
#define CHECK_LIVE(base) check_live_((base), NULL, __FILE__, __LINE__)
#define CHECK_LIVE_DELTA(base, ...)                                        \
    do {                                                                   \
        const int64_t d_[NKINDS] = {__VA_ARGS__};                          \
        check_live_((base), d_, __FILE__, __LINE__);                       \
    } while (0)

static pgf_call *new_call(const char *path) {
    pgf_call *c = pgf_call_new(path, strlen(path));
    if (c == NULL)
        CHECK_FAIL_("pgf_call_new(\"%s\") returned NULL", path);
    return c;
}

static const char *status_message(const pgf_call *c) {
    size_t len = 0;
    const char *m = pgf_call_status_message(c, &len);
    if (m == NULL || strlen(m) != len)
        CHECK_FAIL_("status message length mismatch");
    return m;
}

static int reg_service(pgf_registry *reg, const char *svc, pgf_handler_fn fn,
                       void *data, pgf_release_fn release) {
    return pgf_registry_register_service(reg, svc, strlen(svc), fn, data,
                                         release);
}

static int reg_method(pgf_registry *reg, const char *svc, const char *m,
                      pgf_handler_fn fn, void *data, pgf_release_fn release) {
    return pgf_registry_register_method(reg, svc, strlen(svc), m, strlen(m),
                                        fn, data, release);
}

static int unreg_service(pgf_registry *reg, const char *svc) {
    return pgf_registry_unregister_service(reg, svc, strlen(svc));
}

static int unreg_method(pgf_registry *reg, const char *svc, const char *m) {
    return pgf_registry_unregister_method(reg, svc, strlen(svc), m,
                                          strlen(m));
}

static int has_service(pgf_registry *reg, const char *svc) {
    return pgf_registry_has_service(reg, svc, strlen(svc));
}

static int has_method(pgf_registry *reg, const char *svc, const char *m) {
    return pgf_registry_has_method(reg, svc, strlen(svc), m, strlen(m));
}

static void finish_str(pgf_call *c, int code, const char *msg) {
    CHECK_INT(pgf_call_finish(c, code, msg, strlen(msg)), PGF_OK);
}

/* A release function that counts, and remembers its thread and whether a
 * watched call was finished when it ran. */
typedef struct tracker {
    int released;
    pthread_t thread;
    pgf_call *watch;
    int watch_finished;
} tracker;

static void tracker_release(void *p) {
    tracker *t = p;
    t->thread = pthread_self();
    if (t->watch)
        t->watch_finished = pgf_call_is_finished(t->watch);
    __atomic_fetch_add(&t->released, 1, __ATOMIC_SEQ_CST);
}

static int released(tracker *t) {
    return __atomic_load_n(&t->released, __ATOMIC_SEQ_CST);
}

/* A done callback record: how often, on which thread, with what status. */
typedef struct done_rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
    int status;
    int finished;
    pthread_t thread;
    char message[256];
    int take;                   /* take the response in the callback */
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    int unref;                  /* drop the host's reference in the callback */
} done_rec;

static void done_init(done_rec *d) {
    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
}

static void done_destroy(done_rec *d) {
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
}

static void on_done(pgf_call *call, void *ud) {
    done_rec *d = ud;
    pthread_mutex_lock(&d->mu);
    d->count++;
    d->status = pgf_call_status(call);
    d->finished = pgf_call_is_finished(call);
    d->thread = pthread_self();
    snprintf(d->message, sizeof(d->message), "%s", status_message(call));
    if (d->take)
        CHECK_INT(pgf_call_take_response(call, &d->data, &d->len, &d->release,
                                         &d->ctx),
                  PGF_OK);
    if (d->unref)
        pgf_call_unref(call);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Waits (at most 10 s) until the done callback ran n times. */
static void done_wait(done_rec *d, int n) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&d->mu);
    while (d->count < n)
        if (pthread_cond_timedwait(&d->cv, &d->mu, &until) == ETIMEDOUT)
            CHECK_FAIL_("done callback ran %d times, waited for %d", d->count,
                        n);
    pthread_mutex_unlock(&d->mu);
}

static int done_count(done_rec *d) {
    pthread_mutex_lock(&d->mu);
    int n = d->count;
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* A handler that only holds its calls: the test finishes them later. */
typedef struct holder {
    pthread_mutex_t mu;
    pgf_call *held[64];
    int nheld;
    int invocations;
    tracker rel;
} holder;

static void holder_init(holder *h) {
    memset(h, 0, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
}

static void h_hold(void *data, pgf_call *call) {
    holder *h = data;
    pthread_mutex_lock(&h->mu);
    if (h->nheld >= 64)
        CHECK_FAIL_("holder full");
    h->held[h->nheld++] = pgf_call_ref(call);
    h->invocations++;
    pthread_mutex_unlock(&h->mu);
}

static void holder_release(void *data) {
    holder *h = data;
    tracker_release(&h->rel);
}

/* Finishes (and unrefs) a held call on a new thread. */
typedef struct finisher {
    pthread_t thread;
    pgf_call *call;
    int code;
    const char *msg;
    int rc;
} finisher;

static void *finisher_main(void *p) {
    finisher *f = p;
    f->rc = pgf_call_finish(f->call, f->code, f->msg, strlen(f->msg));
    pgf_call_unref(f->call);
    return NULL;
}

static void finish_on_thread(pgf_call *call, int code, const char *msg,
                             pthread_t *thread_out) {
    finisher f = {0};
    f.call = call;
    f.code = code;
    f.msg = msg;
    CHECK_INT(pthread_create(&f.thread, NULL, finisher_main, &f), 0);
    if (thread_out)
        *thread_out = f.thread;
    CHECK_INT(pthread_join(f.thread, NULL), 0);
    CHECK_INT(f.rc, PGF_OK);
}

/* Handler finishing OK at once with handler_data (a string) as message. */
static void h_tag(void *data, pgf_call *call) {
    finish_str(call, PGF_STATUS_OK, (const char *)data);
}

/* Counts buffers freed through buf_free. */
static int64_t bufs_freed;
static void buf_free(void *p) {
    free(p);
    __atomic_fetch_add(&bufs_freed, 1, __ATOMIC_SEQ_CST);
}

/* Echo: a heap copy of the request as response (freed with buf_free),
 * request metadata mirrored into trailing metadata, and "x-handler" =
 * handler data as initial metadata. */
static void h_echo(void *data, pgf_call *call) {
    const uint8_t *req;
    size_t len;
    pgf_call_request(call, &req, &len);
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    if (len)
        memcpy(copy, req, len);
    CHECK_INT(pgf_call_set_response(call, copy, len, buf_free, copy), PGF_OK);
    if (data) {
        const char *tag = data;
        CHECK_INT(pgf_call_add_initial_metadata(call, "x-handler", 9,
                                                (const uint8_t *)tag,
                                                strlen(tag)),
                  PGF_OK);
    }
    const pgf_metadata *md = pgf_call_request_metadata(call);
    for (size_t i = 0; i < pgf_metadata_count(md); i++) {
        const char *k;
        const uint8_t *v;
        size_t kl, vl;
        CHECK_INT(pgf_metadata_get(md, i, &k, &kl, &v, &vl), PGF_OK);
        CHECK_INT(pgf_call_add_trailing_metadata(call, k, kl, v, vl), PGF_OK);
    }
    finish_str(call, PGF_STATUS_OK, "echoed");
}

/* Takes and releases a finished call's response; checks its bytes. */
static void take_and_check(pgf_call *call, const void *want, size_t want_len) {
    const uint8_t *data;
    size_t len;
    pgf_release_fn rel;
    void *ctx;
    CHECK_INT(pgf_call_take_response(call, &data, &len, &rel, &ctx), PGF_OK);
    CHECK_MEM(data, len, want, want_len);
    CHECK(rel != NULL);
    rel(ctx);
}

/* ------------------------------------------------------------- tests */

static void test_abi(void) {
    CHECK(pgf_abi_version() >= 1);
    CHECK_INT(pgf_abi_version(), PGF_ABI_VERSION);
    const int codes[] = {PGF_OK, PGF_EINVAL, PGF_ENOMEM, PGF_EEXIST,
                         PGF_ENOTFOUND, PGF_EMETADATA, PGF_ESTATE,
                         PGF_EPYTHON, PGF_EOF, PGF_ECANCELLED,
                         PGF_EWOULDBLOCK, PGF_EVERSION};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        CHECK(pgf_strerror(codes[i]) != NULL);
        CHECK(strlen(pgf_strerror(codes[i])) > 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(pgf_strerror(codes[i]), pgf_strerror(codes[j])) != 0);
    }
    CHECK(pgf_strerror(12345) != NULL);
    CHECK_INT(pgf_live_count(-1), -1);
    CHECK_INT(pgf_live_count(NKINDS), -1);
    CHECK_INT(pgf_version_number(), PGF_VERSION_NUMBER);
    CHECK_INT(PGF_VERSION_NUMBER, PGF_VERSION_MAJOR * 10000 +
                                      PGF_VERSION_MINOR * 100 +
                                      PGF_VERSION_PATCH);
    /* Status numbers are gRPC's. */
    CHECK_INT(PGF_STATUS_INVALID_ARGUMENT, 3);
    CHECK_INT(PGF_STATUS_UNIMPLEMENTED, 12);
    CHECK_INT(PGF_STATUS_UNAUTHENTICATED, 16);
}

typedef struct name_thread_arg {
    pgf_name *name;
    int rounds;
} name_thread_arg;

static void *name_churn(void *p) {
    name_thread_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        pgf_name *r = pgf_name_ref(a->name);
        CHECK(r == a->name);
        if (strcmp(pgf_name_str(r), "shared.Name") != 0)
            CHECK_FAIL_("name changed under refcounting");
        pgf_name_unref(r);
    }
    return NULL;
}

static void test_names(void) {
    int64_t base[NKINDS];
    live_snapshot(base);

    char src[] = "pkg.Service";
    pgf_name *n = pgf_name_new(src, 11);
    CHECK(n != NULL);
    CHECK_LIVE_DELTA(base, 1, 0, 0, 0, 0);
    src[0] = 'X'; /* the name holds its own copy */
    CHECK_STR(pgf_name_str(n), "pkg.Service");
    CHECK_INT(pgf_name_len(n), 11);

    CHECK(pgf_name_ref(n) == n);
    CHECK(pgf_name_ref(n) == n);
    pgf_name_unref(n);
    pgf_name_unref(n);
    CHECK_LIVE_DELTA(base, 1, 0, 0, 0, 0); /* one reference left */
    CHECK_STR(pgf_name_str(n), "pkg.Service");
    pgf_name_unref(n);
    CHECK_LIVE(base);

    /* Not NUL-terminated input, embedded NUL, empty, NULL. */
    pgf_name *part = pgf_name_new("abcdef", 3);
    CHECK_STR(pgf_name_str(part), "abc");
    CHECK_INT(pgf_name_len(part), 3);
    pgf_name *nul = pgf_name_new("a\0b", 3);
    CHECK_INT(pgf_name_len(nul), 3);
    CHECK_MEM(pgf_name_str(nul), 4, "a\0b", 4);
    pgf_name *empty = pgf_name_new(NULL, 0);
    CHECK(empty != NULL);
    CHECK_STR(pgf_name_str(empty), "");
    CHECK_INT(pgf_name_len(empty), 0);
    CHECK(pgf_name_new(NULL, 3) == NULL);
    CHECK_LIVE_DELTA(base, 3, 0, 0, 0, 0);
    pgf_name_unref(part);
    pgf_name_unref(nul);
    pgf_name_unref(empty);
    pgf_name_unref(NULL);
    CHECK(pgf_name_ref(NULL) == NULL);
    CHECK_LIVE(base);

    /* References taken and dropped from many threads at once. */
    pgf_name *shared = pgf_name_new("shared.Name", 11);
    pthread_t th[4];
    name_thread_arg arg = {shared, 20000};
    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_create(&th[i], NULL, name_churn, &arg), 0);
    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_join(th[i], NULL), 0);
    CHECK_LIVE_DELTA(base, 1, 0, 0, 0, 0);
    pgf_name_unref(shared);
    CHECK_LIVE(base);
}

typedef struct md_case {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    int want;
} md_case;

#define MD(k, v, want) {k, sizeof(k) - 1, v, sizeof(v) - 1, want}

static void test_metadata_validate(void) {
    static const md_case cases[] = {
        /* keys: [0-9a-z_.-]+ */
        MD("x-key", "value", PGF_OK),
        MD("a", "", PGF_OK),
        MD("0123456789abcdefghijklmnopqrstuvwxyz_.-", "v", PGF_OK),
        MD("-", "v", PGF_OK),
        MD("", "v", PGF_EMETADATA),
        MD("X-Key", "v", PGF_EMETADATA),
        MD("x-kEy", "v", PGF_EMETADATA),
        MD("x key", "v", PGF_EMETADATA),
        MD("x:key", "v", PGF_EMETADATA),
        MD(":path", "v", PGF_EMETADATA),
        MD("x/key", "v", PGF_EMETADATA),
        MD("x+key", "v", PGF_EMETADATA),
        MD("x\0key", "v", PGF_EMETADATA),
        MD("x\xc3\xa9", "v", PGF_EMETADATA),
        MD("x\tkey", "v", PGF_EMETADATA),
        MD("key\n", "v", PGF_EMETADATA),
        /* the grpc- keys the transport or the call owns are refused; other
         * grpc- keys pass, as gRPC core passes them */
        MD("grpc-status", "0", PGF_EMETADATA),
        MD("grpc-message", "hi", PGF_EMETADATA),
        MD("grpc-status-details-bin", "\x01\x02", PGF_EMETADATA),
        MD("grpc-timeout", "1S", PGF_EMETADATA),
        MD("grpc-encoding", "gzip", PGF_EMETADATA),
        MD("grpc-accept-encoding", "gzip", PGF_EMETADATA),
        MD("grpc-internal-encoding-request", "gzip", PGF_EMETADATA),
        MD("grpc-retry-pushback-ms", "1000", PGF_OK),
        MD("grpc-retry-delay-ms", "1000", PGF_OK),
        MD("grpc-retry-pushback-ms", "0", PGF_OK),
        MD("grpc-retry-pushback-ms", "-1", PGF_EMETADATA),
        MD("grpc-retry-pushback-ms", "", PGF_EMETADATA),
        MD("grpc-retry-pushback-ms", "1s", PGF_EMETADATA),
        MD("grpc-retry-pushback-ms", "999999999999999999", PGF_OK),
        MD("grpc-retry-pushback-ms", "9999999999999999999", PGF_EMETADATA),
        MD("grpc-", "", PGF_OK),
        MD("grpc-statusx", "v", PGF_OK),
        MD("grpc", "v", PGF_OK),
        MD("grpcx-status", "v", PGF_OK),
        MD("x-grpc-status", "v", PGF_OK),
        MD("Grpc-status", "v", PGF_EMETADATA),
        /* keys HTTP/2 or gRPC's framing reserve; their look-alikes are fine */
        MD("content-type", "text/plain", PGF_EMETADATA),
        MD("te", "trailers", PGF_EMETADATA),
        MD("connection", "close", PGF_EMETADATA),
        MD("transfer-encoding", "chunked", PGF_EMETADATA),
        MD("content-length", "3", PGF_EMETADATA),
        MD("keep-alive", "1", PGF_EMETADATA),
        MD("proxy-connection", "x", PGF_EMETADATA),
        MD("upgrade", "h2c", PGF_EMETADATA),
        MD("tee", "v", PGF_OK),
        MD("x-content-type", "v", PGF_OK),
        MD("user-agent", "v", PGF_OK),
        /* -bin values are any bytes */
        MD("x-bin", "\0\x01\xff\r\n \t", PGF_OK),
        MD("x-bin", " leading and trailing ", PGF_OK),
        MD("x-bin", "", PGF_OK),
        /* gRPC core: binary only if 5+ characters end in "-bin" */
        MD("-bin", "\x80", PGF_EMETADATA),
        MD("-bin", "\x01", PGF_EMETADATA),
        MD("-bin", "", PGF_OK),
        MD("-bin", "text", PGF_OK),
        MD("a-bin", "\x80", PGF_OK),
        MD("--bin", "\x00", PGF_OK),
        MD("x-BIN", "v", PGF_EMETADATA),
        MD("xbin", "\x01", PGF_EMETADATA),
        MD("x-bi", "\x01", PGF_EMETADATA),
        MD("x-bin-not", "\x01", PGF_EMETADATA),
        /* other values: printable ASCII, no leading/trailing space */
        MD("k", "a b", PGF_OK),
        MD("k", "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~", PGF_OK),
        MD("k", "a  b", PGF_OK),
        MD("k", " a", PGF_EMETADATA),
        MD("k", "a ", PGF_EMETADATA),
        MD("k", " ", PGF_EMETADATA),
        MD("k", "a\rb", PGF_EMETADATA),
        MD("k", "a\nb", PGF_EMETADATA),
        MD("k", "a\r\nx-evil: 1", PGF_EMETADATA),
        MD("k", "\r", PGF_EMETADATA),
        MD("k", "\n", PGF_EMETADATA),
        MD("k", "a\tb", PGF_EMETADATA),
        MD("k", "a\0b", PGF_EMETADATA),
        MD("k", "\x7f", PGF_EMETADATA),
        MD("k", "caf\xc3\xa9", PGF_EMETADATA),
        MD("k", "\xff", PGF_EMETADATA),
        MD("k", "\x1f", PGF_EMETADATA),
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const md_case *c = &cases[i];
        int rc = pgf_metadata_validate(c->key, c->key_len,
                                       (const uint8_t *)c->value,
                                       c->value_len);
        if (rc != c->want)
            CHECK_FAIL_("metadata case %zu (key \"%s\"): %d, want %d", i,
                        c->key, rc, c->want);
        CHECK_PASS_();
    }
    CHECK_INT(pgf_metadata_key_owned("grpc-status", 11), 1);
    CHECK_INT(pgf_metadata_key_owned("te", 2), 1);
    CHECK_INT(pgf_metadata_key_owned("grpc-retry-pushback-ms", 22), 0);
    CHECK_INT(pgf_metadata_key_owned("Grpc-status", 11), 0);
    CHECK_INT(pgf_metadata_key_owned(NULL, 0), 0);
    CHECK_INT(pgf_metadata_validate(NULL, 0, NULL, 0), PGF_EMETADATA);
    CHECK_INT(pgf_metadata_validate(NULL, 3, NULL, 0), PGF_EMETADATA);
    CHECK_INT(pgf_metadata_validate("k", 1, NULL, 0), PGF_OK);
    CHECK_INT(pgf_metadata_validate("k", 1, NULL, 2), PGF_EMETADATA);
    CHECK_INT(pgf_metadata_validate("x-bin", 5, NULL, 0), PGF_OK);
    /* Every single byte as a one-byte non-binary value. */
    for (int b = 0; b < 256; b++) {
        uint8_t v = (uint8_t)b;
        int want = (b > 0x20 && b <= 0x7e) ? PGF_OK : PGF_EMETADATA;
        CHECK_INT(pgf_metadata_validate("k", 1, &v, 1), want);
        CHECK_INT(pgf_metadata_validate("k-bin", 5, &v, 1), PGF_OK);
        char key = (char)b;
        int key_ok = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') ||
                     b == '_' || b == '.' || b == '-';
        CHECK_INT(pgf_metadata_validate(&key, 1, (const uint8_t *)"v", 1),
                  key_ok ? PGF_OK : PGF_EMETADATA);
    }
}

static void check_md_entry(const pgf_metadata *md, size_t i, const char *key,
                           const void *value, size_t value_len) {
    const char *k;
    const uint8_t *v;
    size_t kl, vl;
    CHECK_INT(pgf_metadata_get(md, i, &k, &kl, &v, &vl), PGF_OK);
    CHECK_MEM(k, kl, key, strlen(key));
    CHECK_INT(k[kl], '\0');
    CHECK_MEM(v, vl, value, value_len);
}

static void test_call_metadata(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_call *c = new_call("/pkg.Svc/Method");

    /* Request metadata: copied, in order, multi-valued; host input is taken
     * as delivered (only an empty key is refused). */
    char key[] = "x-multi";
    CHECK_INT(pgf_call_add_request_metadata(c, key, 7, (const uint8_t *)"1", 1),
              PGF_OK);
    key[0] = 'y'; /* copied */
    CHECK_INT(pgf_call_add_request_metadata(c, "x-multi", 7,
                                            (const uint8_t *)"2", 1),
              PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata(c, "data-bin", 8,
                                            (const uint8_t *)"\0\xff", 2),
              PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata(c, "", 0, (const uint8_t *)"v", 1),
              PGF_EINVAL);
    CHECK_INT(pgf_call_add_request_metadata(c, NULL, 0, NULL, 0), PGF_EINVAL);
    CHECK_INT(pgf_call_add_request_metadata(NULL, "k", 1, NULL, 0),
              PGF_EINVAL);
    for (int i = 0; i < 20; i++) /* growth */
        CHECK_INT(pgf_call_add_request_metadata(c, "n", 1,
                                                (const uint8_t *)"v", 1),
                  PGF_OK);
    const pgf_metadata *rmd = pgf_call_request_metadata(c);
    CHECK_INT(pgf_metadata_count(rmd), 23);
    check_md_entry(rmd, 0, "x-multi", "1", 1);
    check_md_entry(rmd, 1, "x-multi", "2", 1);
    check_md_entry(rmd, 2, "data-bin", "\0\xff", 2);
    check_md_entry(rmd, 22, "n", "v", 1);
    CHECK_INT(pgf_metadata_get(rmd, 23, NULL, NULL, NULL, NULL), PGF_EINVAL);
    CHECK_INT(pgf_metadata_count(NULL), 0);
    CHECK_INT(pgf_metadata_get(NULL, 0, NULL, NULL, NULL, NULL), PGF_EINVAL);

    /* Response metadata: validated; a rejected entry leaves the call as it
     * was. */
    const pgf_metadata *imd = pgf_call_initial_metadata(c);
    const pgf_metadata *tmd = pgf_call_trailing_metadata(c);
    CHECK_INT(pgf_metadata_count(imd), 0);
    CHECK_INT(pgf_call_add_initial_metadata(c, "x-a", 3,
                                            (const uint8_t *)"1", 1),
              PGF_OK);
    CHECK_INT(pgf_call_add_initial_metadata(c, "X-A", 3,
                                            (const uint8_t *)"1", 1),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_add_initial_metadata(c, "grpc-status", 11,
                                            (const uint8_t *)"0", 1),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_add_initial_metadata(c, "x-a", 3,
                                            (const uint8_t *)"a\r\n", 3),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_add_initial_metadata(c, "x-bin", 5,
                                            (const uint8_t *)"\r\n\0", 3),
              PGF_OK);
    CHECK_INT(pgf_metadata_count(imd), 2);
    check_md_entry(imd, 0, "x-a", "1", 1);
    check_md_entry(imd, 1, "x-bin", "\r\n\0", 3);

    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-t", 3,
                                             (const uint8_t *)" v", 2),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-t", 3,
                                             (const uint8_t *)"v", 1),
              PGF_OK);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-t", 3,
                                             (const uint8_t *)"w", 1),
              PGF_OK);
    CHECK_INT(pgf_metadata_count(tmd), 2);
    check_md_entry(tmd, 0, "x-t", "v", 1);
    check_md_entry(tmd, 1, "x-t", "w", 1);
    CHECK_INT(pgf_call_add_trailing_metadata(NULL, "x-t", 3, NULL, 0),
              PGF_EINVAL);

    /* After finish: nothing can be added. */
    finish_str(c, PGF_STATUS_OK, "");
    CHECK_INT(pgf_call_add_initial_metadata(c, "x-late", 6, NULL, 0),
              PGF_ESTATE);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-late", 6, NULL, 0),
              PGF_ESTATE);
    CHECK_INT(pgf_metadata_count(imd), 2);
    CHECK_INT(pgf_metadata_count(tmd), 2);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

static void test_call_basics(void) {
    int64_t base[NKINDS];
    live_snapshot(base);

    static const char *const bad[] = {"", "/", "//", "/a", "/a/", "//b",
                                      "a/b", "/a/b/", "/a/b/c", "a//b",
                                      "/a//b", " /a/b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pgf_call_new(bad[i], strlen(bad[i])) != NULL)
            CHECK_FAIL_("pgf_call_new accepted \"%s\"", bad[i]);
    CHECK(pgf_call_new("/a\0/b", 6) == NULL);
    CHECK(pgf_call_new(NULL, 4) == NULL);
    CHECK_LIVE(base); /* failures leak nothing */

    /* The path need not be NUL-terminated. */
    pgf_call *c = pgf_call_new("/pkg.Svc/Method/trailing", 15);
    CHECK(c != NULL);
    CHECK_LIVE_DELTA(base, 2, 0, 1, 0, 0);
    CHECK_STR(pgf_name_str(pgf_call_service(c)), "pkg.Svc");
    CHECK_INT(pgf_name_len(pgf_call_service(c)), 7);
    CHECK_STR(pgf_name_str(pgf_call_method(c)), "Method");
    CHECK_INT(pgf_name_len(pgf_call_method(c)), 6);

    /* Defaults. */
    size_t len = 99;
    CHECK_STR(pgf_call_peer(c, &len), "");
    CHECK_INT(len, 0);
    CHECK_INT(pgf_call_deadline(c), INT64_MAX);
    const uint8_t *data = (const uint8_t *)"x";
    pgf_call_request(c, &data, &len);
    CHECK(data == NULL);
    CHECK_INT(len, 0);
    CHECK_INT(pgf_call_is_finished(c), 0);
    CHECK_INT(pgf_call_is_cancelled(c), 0);
    CHECK_INT(pgf_call_compress_response(c), 0);
    CHECK_INT(pgf_metadata_count(pgf_call_request_metadata(c)), 0);
    CHECK_STR(status_message(c), "");
    pgf_call_response(c, &data, &len);
    CHECK_INT(len, 0);
    pgf_call_status_details(c, &data, &len);
    CHECK_INT(len, 0);

    /* Request fields: the payload is borrowed, the peer copied. */
    static const uint8_t payload[] = {1, 2, 3, 0, 5};
    CHECK_INT(pgf_call_set_request(c, payload, sizeof(payload)), PGF_OK);
    pgf_call_request(c, &data, &len);
    CHECK(data == payload);
    CHECK_INT(len, 5);
    CHECK_INT(pgf_call_set_request(c, NULL, 3), PGF_EINVAL);
    CHECK_INT(pgf_call_set_request(NULL, payload, 1), PGF_EINVAL);
    char peer[] = "ipv4:127.0.0.1:5123";
    CHECK_INT(pgf_call_set_peer(c, peer, strlen(peer)), PGF_OK);
    peer[0] = 'X';
    CHECK_STR(pgf_call_peer(c, &len), "ipv4:127.0.0.1:5123");
    CHECK_INT(len, 19);
    CHECK_INT(pgf_call_set_peer(c, "ipv6:[::1]:1", 12), PGF_OK); /* replaces */
    CHECK_STR(pgf_call_peer(c, NULL), "ipv6:[::1]:1");
    CHECK_INT(pgf_call_set_peer(c, NULL, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_set_deadline(c, 1700000000123456789LL), PGF_OK);
    CHECK_INT(pgf_call_deadline(c), 1700000000123456789LL);

    /* Names outlive the call for whoever holds a reference. */
    pgf_name *svc = pgf_name_ref((pgf_name *)pgf_call_service(c));
    CHECK(pgf_call_ref(c) == c);
    pgf_call_unref(c);
    CHECK_LIVE_DELTA(base, 2, 0, 1, 0, 0);
    pgf_call_unref(c);
    CHECK_LIVE_DELTA(base, 1, 0, 0, 0, 0);
    CHECK_STR(pgf_name_str(svc), "pkg.Svc");
    pgf_name_unref(svc);
    CHECK_LIVE(base);
    pgf_call_unref(NULL);
    CHECK(pgf_call_ref(NULL) == NULL);

    /* Finishing: once; codes outside 0..16 become UNKNOWN. */
    static const int codes[] = {0, 16, 17, 99, -1, -100};
    static const int sent[] = {0, 16, PGF_STATUS_UNKNOWN, PGF_STATUS_UNKNOWN,
                               PGF_STATUS_UNKNOWN, PGF_STATUS_UNKNOWN};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        c = new_call("/a/b");
        CHECK_INT(pgf_call_status(c), PGF_STATUS_UNKNOWN); /* not finished */
        CHECK_INT(pgf_call_finish(c, codes[i], "msg\0tail", 8), PGF_OK);
        CHECK_INT(pgf_call_is_finished(c), 1);
        CHECK_INT(pgf_call_status(c), sent[i]);
        CHECK_INT(pgf_call_finish(c, PGF_STATUS_OK, "again", 5), PGF_ESTATE);
        CHECK_INT(pgf_call_status(c), sent[i]);
        const char *m = pgf_call_status_message(c, &len);
        CHECK_MEM(m, len, "msg\0tail", 8);
        CHECK_INT(m[len], '\0');
        pgf_call_unref(c);
    }
    c = new_call("/a/b");
    /* A NULL message with a length is no message: the call still ends. */
    CHECK_INT(pgf_call_finish(c, 0, NULL, 3), PGF_OK);
    CHECK_INT(pgf_call_is_finished(c), 1);
    CHECK_STR(status_message(c), "");
    pgf_call_unref(c);
    CHECK_INT(pgf_call_finish(NULL, 0, NULL, 0), PGF_EINVAL);

    /* Status details: copied, replaced, cleared by reset. */
    c = new_call("/a/b");
    uint8_t det[] = {8, 3, 18, 2, 'h', 'i'};
    CHECK_INT(pgf_call_set_status_details(c, det, sizeof(det)), PGF_OK);
    det[0] = 0;
    pgf_call_status_details(c, &data, &len);
    CHECK_MEM(data, len, "\x08\x03\x12\x02hi", 6);
    CHECK_INT(pgf_call_set_status_details(c, (const uint8_t *)"\x08\x05", 2),
              PGF_OK);
    pgf_call_status_details(c, &data, &len);
    CHECK_MEM(data, len, "\x08\x05", 2);
    CHECK_INT(pgf_call_set_status_details(c, NULL, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_set_compress_response(c, 7), PGF_OK);
    CHECK_INT(pgf_call_compress_response(c), 1);
    CHECK_INT(pgf_call_set_compress_response(c, 0), PGF_OK);
    CHECK_INT(pgf_call_compress_response(c), 0);
    CHECK_INT(pgf_call_set_compress_response(c, 1), PGF_OK);
    finish_str(c, PGF_STATUS_NOT_FOUND, "gone");
    CHECK_INT(pgf_call_status(c), PGF_STATUS_NOT_FOUND);
    CHECK_INT(pgf_call_set_status_details(c, det, 1), PGF_ESTATE);
    CHECK_INT(pgf_call_set_compress_response(c, 0), PGF_ESTATE);
    CHECK_INT(pgf_call_compress_response(c), 1);
    pgf_call_status_details(c, &data, &len);
    CHECK_MEM(data, len, "\x08\x05", 2);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

typedef struct rel_arg {
    pgf_release_fn rel;
    void *ctx;
} rel_arg;

static void *release_on_thread(void *p) {
    rel_arg *a = p;
    a->rel(a->ctx);
    return NULL;
}

static void test_response_ownership(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    static const uint8_t bytes[] = "response bytes";
    const uint8_t *data;
    size_t len;
    pgf_release_fn rel;
    void *ctx;

    /* Taken by the host, released by the host (on another thread, after
     * the call is gone): exactly once, never by the call. */
    tracker t = {0};
    pgf_call *c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, bytes, 14, tracker_release, &t),
              PGF_OK);
    CHECK_LIVE_DELTA(base, 2, 0, 1, 0, 1);
    finish_str(c, PGF_STATUS_OK, "");
    pgf_call_response(c, &data, &len);
    CHECK(data == bytes); /* no copy */
    CHECK_INT(len, 14);
    CHECK_INT(pgf_call_take_response(c, &data, &len, &rel, &ctx), PGF_OK);
    CHECK(data == bytes);
    CHECK_INT(len, 14);
    CHECK(rel != NULL);
    pgf_call_response(c, &data, &len); /* no longer the call's */
    CHECK_INT(len, 0);
    const uint8_t *d2;
    pgf_release_fn rel2;
    void *ctx2;
    CHECK_INT(pgf_call_take_response(c, &d2, &len, &rel2, &ctx2), PGF_OK);
    CHECK(rel2 == NULL); /* nothing more owed */
    CHECK_INT(len, 0);
    pgf_call_unref(c);
    CHECK_INT(released(&t), 0);
    CHECK_LIVE_DELTA(base, 0, 0, 0, 0, 1);
    /* released from another thread: any thread may release */
    {
        pthread_t th;
        rel_arg ra = {rel, ctx};
        CHECK_INT(pthread_create(&th, NULL, release_on_thread, &ra), 0);
        CHECK_INT(pthread_join(th, NULL), 0);
        CHECK(!pthread_equal(t.thread, pthread_self()));
    }
    CHECK_INT(released(&t), 1);
    CHECK_LIVE(base);

    /* Not taken: released once when the call is freed (not at finish). */
    memset(&t, 0, sizeof(t));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, bytes, 14, tracker_release, &t),
              PGF_OK);
    finish_str(c, PGF_STATUS_OK, "");
    CHECK_INT(released(&t), 0);
    pgf_call_ref(c);
    pgf_call_unref(c);
    CHECK_INT(released(&t), 0);
    pgf_call_unref(c);
    CHECK_INT(released(&t), 1);
    CHECK_LIVE(base);

    /* Replaced: the earlier payload is released at once, the later one at
     * unref. */
    tracker t1 = {0}, t2 = {0};
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, bytes, 3, tracker_release, &t1), PGF_OK);
    CHECK_INT(pgf_call_set_response(c, bytes + 3, 4, tracker_release, &t2),
              PGF_OK);
    CHECK_INT(released(&t1), 1);
    CHECK_INT(released(&t2), 0);
    CHECK_LIVE_DELTA(base, 2, 0, 1, 0, 1);
    pgf_call_response(c, &data, &len);
    CHECK(data == bytes + 3);
    CHECK_INT(len, 4);
    pgf_call_unref(c);
    CHECK_INT(released(&t1), 1);
    CHECK_INT(released(&t2), 1);
    CHECK_LIVE(base);

    /* Errors: release has already run. */
    memset(&t, 0, sizeof(t));
    CHECK_INT(pgf_call_set_response(NULL, bytes, 1, tracker_release, &t),
              PGF_EINVAL);
    CHECK_INT(released(&t), 1);
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, NULL, 5, tracker_release, &t),
              PGF_EINVAL);
    CHECK_INT(released(&t), 2);
    finish_str(c, PGF_STATUS_OK, "");
    CHECK_INT(pgf_call_set_response(c, bytes, 1, tracker_release, &t),
              PGF_ESTATE);
    CHECK_INT(released(&t), 3);
    CHECK_INT(pgf_call_take_response(c, &data, &len, &rel, &ctx), PGF_OK);
    CHECK(rel == NULL); /* nothing was set */
    CHECK_INT(pgf_call_take_response(c, NULL, &len, &rel, &ctx), PGF_EINVAL);
    CHECK_INT(pgf_call_take_response(c, &data, NULL, &rel, &ctx), PGF_EINVAL);
    CHECK_INT(pgf_call_take_response(c, &data, &len, NULL, &ctx), PGF_EINVAL);
    CHECK_INT(pgf_call_take_response(c, &data, &len, &rel, NULL), PGF_EINVAL);
    CHECK_INT(pgf_call_take_response(NULL, &data, &len, &rel, &ctx),
              PGF_EINVAL);
    pgf_call_unref(c);
    CHECK_INT(released(&t), 3);
    CHECK_LIVE(base);

    /* A NULL release function is allowed; an empty payload too.  Whatever
     * take returns, the release runs once overall. */
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, bytes, 2, NULL, NULL), PGF_OK);
    pgf_call_unref(c);
    memset(&t, 0, sizeof(t));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, NULL, 0, tracker_release, &t), PGF_OK);
    CHECK_INT(pgf_call_take_response(c, &data, &len, &rel, &ctx), PGF_OK);
    CHECK_INT(len, 0);
    if (rel)
        rel(ctx);
    pgf_call_unref(c);
    CHECK_INT(released(&t), 1);
    CHECK_LIVE(base);

    /* reset_response drops the payload, metadata, details, compression. */
    memset(&t, 0, sizeof(t));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, bytes, 5, tracker_release, &t), PGF_OK);
    CHECK_INT(pgf_call_add_initial_metadata(c, "x-i", 3, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-t", 3, NULL, 0), PGF_OK);
    CHECK_INT(pgf_call_set_status_details(c, bytes, 4), PGF_OK);
    CHECK_INT(pgf_call_set_compress_response(c, 1), PGF_OK);
    CHECK_INT(pgf_call_reset_response(c), PGF_OK);
    CHECK_INT(released(&t), 1);
    CHECK_LIVE_DELTA(base, 2, 0, 1, 0, 0);
    pgf_call_response(c, &data, &len);
    CHECK_INT(len, 0);
    CHECK_INT(pgf_metadata_count(pgf_call_initial_metadata(c)), 0);
    CHECK_INT(pgf_metadata_count(pgf_call_trailing_metadata(c)), 0);
    pgf_call_status_details(c, &data, &len);
    CHECK_INT(len, 0);
    CHECK_INT(pgf_call_compress_response(c), 0);
    CHECK_INT(pgf_call_reset_response(c), PGF_OK); /* twice is fine */
    /* the call can still answer */
    tracker t3 = {0};
    CHECK_INT(pgf_call_set_response(c, bytes, 2, tracker_release, &t3),
              PGF_OK);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-after", 7, NULL, 0),
              PGF_OK);
    finish_str(c, PGF_STATUS_INTERNAL, "failed late");
    CHECK_INT(pgf_call_reset_response(c), PGF_ESTATE); /* too late */
    CHECK_INT(released(&t3), 0);
    CHECK_INT(pgf_metadata_count(pgf_call_trailing_metadata(c)), 1);
    CHECK_INT(pgf_call_reset_response(NULL), PGF_EINVAL);
    pgf_call_unref(c);
    CHECK_INT(released(&t), 1);
    CHECK_INT(released(&t3), 1);
    CHECK_LIVE(base);
}

/* A handler that finishes twice and records what the second finish said. */
static int double_finish_rc;
static void h_double(void *data, pgf_call *call) {
    (void)data;
    finish_str(call, PGF_STATUS_OK, "first");
    double_finish_rc = pgf_call_finish(call, PGF_STATUS_INTERNAL, "second", 6);
}

/* A response the call copies: the caller's bytes may change or go at once;
 * the host's release of the copy only frees memory (it may run on an event
 * thread), unlike a handler's own release; and nothing is left behind. */
static void test_response_copy_never_blocks(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    uint8_t bytes[] = "copied bytes";
    const uint8_t *data;
    size_t len;
    pgf_release_fn rel;
    void *ctx;

    pgf_call *c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response_copy(c, bytes, 12), PGF_OK);
    memset(bytes, 'x', sizeof(bytes) - 1); /* the caller's bytes are free */
    finish_str(c, PGF_STATUS_OK, "");
    CHECK_INT(pgf_call_take_response(c, &data, &len, &rel, &ctx), PGF_OK);
    CHECK(data != bytes);
    CHECK_INT(len, 12);
    CHECK(memcmp(data, "copied bytes", 12) == 0);
    CHECK(rel != NULL);
    CHECK_INT(pgf_release_never_blocks(rel, ctx), 1);
    pgf_call_unref(c);
    CHECK(memcmp(data, "copied bytes", 12) == 0); /* the host's until released */
    rel(ctx);
    CHECK_LIVE(base);

    /* A handler's release may block: never said otherwise. */
    tracker t = {0};
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response(c, bytes, 3, tracker_release, &t), PGF_OK);
    finish_str(c, PGF_STATUS_OK, "");
    CHECK_INT(pgf_call_take_response(c, &data, &len, &rel, &ctx), PGF_OK);
    CHECK_INT(pgf_release_never_blocks(rel, ctx), 0);
    CHECK_INT(pgf_release_never_blocks(tracker_release, &t), 0);
    CHECK_INT(pgf_release_never_blocks(NULL, NULL), 0);
    rel(ctx);
    CHECK_INT(released(&t), 1);
    pgf_call_unref(c);

    /* A copy replaced by another response is freed with it; an empty copy
     * is a response of no bytes; a finished call refuses a copy; bad
     * arguments change nothing. */
    c = new_call("/a/b");
    CHECK_INT(pgf_call_set_response_copy(c, bytes, 5), PGF_OK);
    CHECK_INT(pgf_call_set_response_copy(c, NULL, 0), PGF_OK);
    pgf_call_response(c, &data, &len);
    CHECK_INT(len, 0);
    CHECK_INT(pgf_call_set_response_copy(c, NULL, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_set_response_copy(NULL, bytes, 1), PGF_EINVAL);
    CHECK_INT(pgf_call_set_response_copy(c, bytes, SIZE_MAX), PGF_EINVAL);
    finish_str(c, PGF_STATUS_OK, "");
    CHECK_INT(pgf_call_set_response_copy(c, bytes, 5), PGF_ESTATE);
    pgf_call_unref(c); /* the untaken empty copy goes with the call */
    CHECK_LIVE(base);
}

static void test_dispatch_sync(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    int64_t freed0 = __atomic_load_n(&bufs_freed, __ATOMIC_SEQ_CST);
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_LIVE_DELTA(base, 0, 0, 0, 1, 0);

    CHECK_INT(reg_service(reg, "pkg.Echo", h_echo, "svc", NULL), PGF_OK);
    CHECK_INT(reg_method(reg, "pkg.Echo", "Special", h_tag, "method", NULL),
              PGF_OK);
    CHECK_INT(reg_method(reg, "pkg.Only", "Known", h_tag, "only-known", NULL),
              PGF_OK);
    CHECK_INT(reg_service(reg, "pkg.Double", h_double, NULL, NULL), PGF_OK);
    CHECK_LIVE_DELTA(base, 8, 4, 0, 1, 0);

    /* Echo through the service registration. */
    static const uint8_t req[] = "hello\0world";
    pgf_call *c = new_call("/pkg.Echo/Anything");
    CHECK_INT(pgf_call_set_request(c, req, sizeof(req)), PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata(c, "x-req", 5,
                                            (const uint8_t *)"abc", 3),
              PGF_OK);
    CHECK_INT(pgf_call_add_request_metadata(c, "x-req-bin", 9,
                                            (const uint8_t *)"\0\1", 2),
              PGF_OK);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_is_finished(c), 1);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_OK);
    CHECK_STR(status_message(c), "echoed");
    check_md_entry(pgf_call_initial_metadata(c), 0, "x-handler", "svc", 3);
    CHECK_INT(pgf_metadata_count(pgf_call_trailing_metadata(c)), 2);
    check_md_entry(pgf_call_trailing_metadata(c), 0, "x-req", "abc", 3);
    check_md_entry(pgf_call_trailing_metadata(c), 1, "x-req-bin", "\0\1", 2);
    CHECK_LIVE_DELTA(base, 10, 4, 1, 1, 1);
    take_and_check(c, req, sizeof(req));
    CHECK_INT(__atomic_load_n(&bufs_freed, __ATOMIC_SEQ_CST), freed0 + 1);

    /* A dispatched call cannot be dispatched or changed again. */
    CHECK_INT(pgf_dispatch(reg, c), PGF_ESTATE);
    done_rec d;
    done_init(&d);
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, &d), PGF_ESTATE);
    CHECK_INT(done_count(&d), 0);
    CHECK_INT(pgf_call_set_request(c, req, 1), PGF_ESTATE);
    CHECK_INT(pgf_call_add_request_metadata(c, "k", 1, NULL, 0), PGF_ESTATE);
    CHECK_INT(pgf_call_set_deadline(c, 1), PGF_ESTATE);
    CHECK_INT(pgf_call_set_peer(c, "p", 1), PGF_ESTATE);
    pgf_call_unref(c);

    /* Method registration wins over the service's. */
    c = new_call("/pkg.Echo/Special");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_OK);
    CHECK_STR(status_message(c), "method");
    pgf_call_unref(c);
    c = new_call("/pkg.Echo/Specia"); /* not a prefix match */
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_STR(status_message(c), "echoed");
    take_and_check(c, "", 0);
    pgf_call_unref(c);
    c = new_call("/pkg.Only/Known");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_STR(status_message(c), "only-known");
    pgf_call_unref(c);

    /* UNIMPLEMENTED, named. */
    c = new_call("/pkg.Only/Other");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    CHECK_STR(status_message(c), "unknown method Other for service pkg.Only");
    pgf_call_unref(c);
    c = new_call("/pkg.None/Method");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    CHECK_STR(status_message(c), "unknown service pkg.None");
    pgf_call_unref(c);
    c = new_call("/pkg.echo/Anything"); /* names are case-sensitive */
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    pgf_call_unref(c);
    /* A very long unknown name is cut, not overflowed. */
    char path[1200];
    path[0] = '/';
    memset(path + 1, 's', 700);
    memcpy(path + 701, "/m", 2);
    c = pgf_call_new(path, 703);
    CHECK(c != NULL);
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    const char *msg = status_message(c);
    CHECK(strncmp(msg, "unknown service sss", 19) == 0);
    CHECK(strlen(msg) < 700);
    pgf_call_unref(c);
    /* UNIMPLEMENTED through dispatch_async: done runs inline. */
    c = new_call("/pkg.None/M");
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, &d), PGF_OK);
    CHECK_INT(done_count(&d), 1);
    CHECK(pthread_equal(d.thread, pthread_self()));
    CHECK_INT(d.status, PGF_STATUS_UNIMPLEMENTED);
    CHECK_INT(d.finished, 1);
    CHECK_STR(d.message, "unknown service pkg.None");
    pgf_call_unref(c);

    /* Finishing twice: PGF_ESTATE, the first answer stands. */
    c = new_call("/pkg.Double/X");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(double_finish_rc, PGF_ESTATE);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_OK);
    CHECK_STR(status_message(c), "first");
    pgf_call_unref(c);

    /* A call finished before dispatch cannot be dispatched. */
    c = new_call("/pkg.Echo/X");
    finish_str(c, PGF_STATUS_ABORTED, "early");
    CHECK_INT(pgf_dispatch(reg, c), PGF_ESTATE);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_ABORTED);
    pgf_call_unref(c);

    CHECK_INT(pgf_dispatch(NULL, NULL), PGF_EINVAL);
    c = new_call("/pkg.Echo/X");
    CHECK_INT(pgf_dispatch(NULL, c), PGF_EINVAL);
    CHECK_INT(pgf_dispatch(reg, NULL), PGF_EINVAL);
    CHECK_INT(pgf_dispatch_async(NULL, c, on_done, &d), PGF_EINVAL);
    CHECK_INT(pgf_call_is_finished(c), 0);
    pgf_call_unref(c);

    done_destroy(&d);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

typedef struct sync_arg {
    pgf_registry *reg;
    pgf_call *call;
    int rc;
} sync_arg;

static void *dispatch_main(void *p) {
    sync_arg *a = p;
    int rc = pgf_dispatch(a->reg, a->call);
    __atomic_store_n(&a->rc, rc, __ATOMIC_SEQ_CST);
    return NULL;
}

/* Async handlers: the handler keeps a reference and the call finishes later
 * on another thread. */
static void test_dispatch_async(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    holder h;
    holder_init(&h);
    CHECK_INT(reg_service(reg, "pkg.Later", h_hold, &h, holder_release),
              PGF_OK);

    /* dispatch_async returns before the handler finishes; done runs once,
     * on the finishing thread, and the host's reference may go first. */
    done_rec d;
    done_init(&d);
    d.take = 1;
    static const uint8_t req[] = "later";
    pgf_call *c = new_call("/pkg.Later/Do");
    CHECK_INT(pgf_call_set_request(c, req, 5), PGF_OK);
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, &d), PGF_OK);
    CHECK_INT(h.nheld, 1);
    CHECK_INT(pgf_call_is_finished(c), 0);
    CHECK_INT(done_count(&d), 0);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNKNOWN);
    pgf_call_unref(c); /* host drops its reference early */
    CHECK_LIVE_DELTA(base, 4, 1, 1, 1, 0);
    tracker t = {0};
    pgf_call *held = h.held[0];
    CHECK_INT(pgf_call_set_response(held, req, 5, tracker_release, &t),
              PGF_OK);
    pthread_t fin;
    finish_on_thread(held, PGF_STATUS_OK, "done later", &fin);
    CHECK_INT(done_count(&d), 1);
    CHECK(pthread_equal(d.thread, fin));
    CHECK_INT(d.status, PGF_STATUS_OK);
    CHECK_INT(d.finished, 1);
    CHECK_STR(d.message, "done later");
    CHECK_MEM(d.data, d.len, req, 5);
    CHECK(d.release != NULL);
    CHECK_LIVE_DELTA(base, 2, 1, 0, 1, 1); /* call gone, buffer taken */
    CHECK_INT(released(&t), 0);
    d.release(d.ctx);
    CHECK_INT(released(&t), 1);
    CHECK_LIVE_DELTA(base, 2, 1, 0, 1, 0);

    /* Synchronous pgf_dispatch waits for a handler that finishes later. */
    c = new_call("/pkg.Later/Sync");
    h.nheld = 0;
    pthread_t waiter;
    sync_arg sa = {reg, c, -100};
    CHECK_INT(pthread_create(&waiter, NULL, dispatch_main, &sa), 0);
    for (int i = 0; i < 10000; i++) { /* until the handler holds the call */
        pthread_mutex_lock(&h.mu);
        int n = h.nheld;
        pthread_mutex_unlock(&h.mu);
        if (n)
            break;
        sleep_us(1000);
    }
    CHECK_INT(h.nheld, 1);
    sleep_us(20000);
    CHECK_INT(__atomic_load_n(&sa.rc, __ATOMIC_SEQ_CST), -100); /* blocked */
    finish_on_thread(h.held[0], PGF_STATUS_DATA_LOSS, "sync later", NULL);
    CHECK_INT(pthread_join(waiter, NULL), 0);
    CHECK_INT(sa.rc, PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_DATA_LOSS);
    CHECK_STR(status_message(c), "sync later");
    pgf_call_unref(c);

    /* A synchronous handler under dispatch_async: done runs inside it, on
     * this thread. */
    CHECK_INT(reg_service(reg, "pkg.Now", h_tag, "now", NULL), PGF_OK);
    done_rec d2;
    done_init(&d2);
    d2.unref = 1; /* the host drops its reference in the callback */
    c = new_call("/pkg.Now/X");
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, &d2), PGF_OK);
    CHECK_INT(done_count(&d2), 1);
    CHECK(pthread_equal(d2.thread, pthread_self()));
    CHECK_STR(d2.message, "now");
    /* NULL done function: allowed, nothing to run. */
    c = new_call("/pkg.Now/X");
    CHECK_INT(pgf_dispatch_async(reg, c, NULL, NULL), PGF_OK);
    CHECK_INT(pgf_call_is_finished(c), 1);
    pgf_call_unref(c);

    done_destroy(&d);
    done_destroy(&d2);
    CHECK_INT(released(&h.rel), 0);
    pgf_registry_free(reg);
    CHECK_INT(released(&h.rel), 1);
    pthread_mutex_destroy(&h.mu);
    CHECK_LIVE(base);
}

/* ------------------------------------------------------ cancellation */

typedef struct cancel_rec {
    int count;
    pthread_t thread;
    int finished_during;
    int cancelled_during;
    long delay_us;
    int finish_inside;          /* finish the call from the callback */
} cancel_rec;

static void on_cancel_fn(pgf_call *call, void *ud) {
    cancel_rec *r = ud;
    r->thread = pthread_self();
    r->cancelled_during = pgf_call_is_cancelled(call);
    if (r->delay_us)
        sleep_us(r->delay_us);
    r->finished_during = pgf_call_is_finished(call);
    if (r->finish_inside) {
        finish_str(call, PGF_STATUS_CANCELLED, "cancelled inside");
        pgf_call_unref(call); /* the handler's reference */
    }
    __atomic_fetch_add(&r->count, 1, __ATOMIC_SEQ_CST);
}

/* Handler: registers handler_data (a cancel_rec) as cancel callback and
 * keeps the call for the callback to finish. */
static void h_cancellable(void *data, pgf_call *call) {
    pgf_call_ref(call);
    CHECK_INT(pgf_call_on_cancel(call, on_cancel_fn, data), PGF_OK);
}

typedef struct race_arg {
    pgf_call *call;
    int do_finish;
} race_arg;

static void *race_main(void *p) {
    race_arg *a = p;
    if (a->do_finish) {
        CHECK_INT(pgf_call_finish(a->call, PGF_STATUS_OK, "raced", 5), PGF_OK);
        pgf_call_unref(a->call);
    } else {
        pgf_call_cancel(a->call);
    }
    return NULL;
}

static void test_cancel(void) {
    int64_t base[NKINDS];
    live_snapshot(base);

    /* cancel runs the callback once, here; cancel is idempotent. */
    cancel_rec r = {0}, r2 = {0};
    pgf_call *c = new_call("/a/b");
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r), PGF_OK);
    CHECK_INT(r.count, 0);
    pgf_call_cancel(c);
    CHECK_INT(r.count, 1);
    CHECK(pthread_equal(r.thread, pthread_self()));
    CHECK_INT(r.cancelled_during, 1);
    CHECK_INT(pgf_call_is_cancelled(c), 1);
    CHECK_INT(pgf_call_is_finished(c), 0); /* cancel does not finish */
    pgf_call_cancel(c);
    CHECK_INT(r.count, 1);
    /* on_cancel once cancelled: runs at once. */
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r2), PGF_OK);
    CHECK_INT(r2.count, 1);
    CHECK(pthread_equal(r2.thread, pthread_self()));
    pgf_call_cancel(c);
    CHECK_INT(r.count, 1);
    CHECK_INT(r2.count, 1);
    finish_str(c, PGF_STATUS_CANCELLED, "");
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r2), PGF_ESTATE);
    CHECK_INT(r2.count, 1);
    pgf_call_unref(c);

    /* Replacing and removing. */
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r), PGF_OK);
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r2), PGF_OK);
    pgf_call_cancel(c);
    CHECK_INT(r.count, 0);
    CHECK_INT(r2.count, 1);
    pgf_call_unref(c);
    memset(&r, 0, sizeof(r));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r), PGF_OK);
    CHECK_INT(pgf_call_on_cancel(c, NULL, NULL), PGF_OK);
    pgf_call_cancel(c);
    CHECK_INT(r.count, 0);
    CHECK_INT(pgf_call_is_cancelled(c), 1);
    CHECK_INT(pgf_call_on_cancel(c, NULL, NULL), PGF_OK); /* nothing runs */
    pgf_call_unref(c);

    /* No callback after finish. */
    memset(&r, 0, sizeof(r));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r), PGF_OK);
    finish_str(c, PGF_STATUS_OK, "");
    pgf_call_cancel(c);
    CHECK_INT(r.count, 0);
    CHECK_INT(pgf_call_on_cancel(c, on_cancel_fn, &r), PGF_ESTATE);
    CHECK_INT(r.count, 0);
    pgf_call_unref(c);
    pgf_call_cancel(NULL);
    CHECK_INT(pgf_call_is_cancelled(NULL), 0);
    CHECK_INT(pgf_call_on_cancel(NULL, on_cancel_fn, &r), PGF_EINVAL);

    /* A dispatched call whose cancel callback finishes it, on the
     * cancelling thread: no deadlock, done runs once with CANCELLED. */
    pgf_registry *reg = pgf_registry_new();
    memset(&r, 0, sizeof(r));
    r.finish_inside = 1;
    CHECK_INT(reg_service(reg, "pkg.Cancel", h_cancellable, &r, NULL),
              PGF_OK);
    done_rec d;
    done_init(&d);
    c = new_call("/pkg.Cancel/Wait");
    CHECK_INT(pgf_dispatch_async(reg, c, on_done, &d), PGF_OK);
    CHECK_INT(done_count(&d), 0);
    pgf_call_cancel(c);
    CHECK_INT(r.count, 1);
    CHECK_INT(r.finished_during, 0);
    CHECK_INT(done_count(&d), 1);
    CHECK(pthread_equal(d.thread, pthread_self()));
    CHECK_INT(d.status, PGF_STATUS_CANCELLED);
    CHECK_STR(d.message, "cancelled inside");
    pgf_call_cancel(c);
    CHECK_INT(r.count, 1);
    pgf_call_unref(c);
    CHECK_INT(unreg_service(reg, "pkg.Cancel"), PGF_OK);

    /* Cancel racing finish on two threads: the callback runs at most once,
     * and never sees a finished call (finish waits for it). */
    holder h;
    holder_init(&h);
    CHECK_INT(reg_service(reg, "pkg.Race", h_hold, &h, NULL), PGF_OK);
    int ran = 0;
    for (int i = 0; i < 300; i++) {
        cancel_rec rr = {0};
        rr.delay_us = (i % 3) * 50;
        done_rec dd;
        done_init(&dd);
        h.nheld = 0;
        c = new_call("/pkg.Race/R");
        CHECK_INT(pgf_dispatch_async(reg, c, on_done, &dd), PGF_OK);
        CHECK_INT(h.nheld, 1);
        CHECK_INT(pgf_call_on_cancel(h.held[0], on_cancel_fn, &rr), PGF_OK);
        race_arg fa = {h.held[0], 1}, ca = {c, 0};
        pthread_t t1, t2;
        CHECK_INT(pthread_create(&t1, NULL, race_main, (i & 1) ? &fa : &ca),
                  0);
        CHECK_INT(pthread_create(&t2, NULL, race_main, (i & 1) ? &ca : &fa),
                  0);
        CHECK_INT(pthread_join(t1, NULL), 0);
        CHECK_INT(pthread_join(t2, NULL), 0);
        CHECK(rr.count == 0 || rr.count == 1);
        if (rr.count)
            CHECK_INT(rr.finished_during, 0);
        ran += rr.count;
        CHECK_INT(done_count(&dd), 1);
        CHECK_INT(dd.status, PGF_STATUS_OK);
        CHECK_STR(dd.message, "raced");
        done_destroy(&dd);
        pgf_call_unref(c);
    }
    (void)ran; /* how often cancel won varies; both outcomes are checked */
    done_destroy(&d);
    pgf_registry_free(reg);
    pthread_mutex_destroy(&h.mu);
    CHECK_LIVE(base);
}

/* A host may finish a call itself (say, when its deadline passes) while
 * another thread is dispatching it.  To hit the narrow window inside
 * pgf_dispatch_async deterministically, this program interposes
 * pthread_mutex_unlock: on a thread that sets slow_unlock, every unlock is
 * followed by a pause, during which the other thread finishes the call. */
static __thread int slow_unlock;
static int unlock_pauses; /* how many paused unlocks began */

/* Under ThreadSanitizer, the unlock goes through its interceptor (the next
 * definition would be libc's, and TSan would never see an unlock). */
#if defined(__SANITIZE_THREAD__)
#define PGF_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PGF_TEST_TSAN 1
#endif
#endif
#ifdef PGF_TEST_TSAN
int __interceptor_pthread_mutex_unlock(pthread_mutex_t *m);
#endif

int pthread_mutex_unlock(pthread_mutex_t *m) {
    static int (*real)(pthread_mutex_t *);
    int (*fn)(pthread_mutex_t *) = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
    if (fn == NULL) {
#ifdef PGF_TEST_TSAN
        fn = __interceptor_pthread_mutex_unlock;
#else
        *(void **)&fn = dlsym(RTLD_NEXT, "pthread_mutex_unlock");
#endif
        if (fn == NULL)
            abort();
        __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
    }
    int rc = fn(m);
    if (slow_unlock) {
        __atomic_fetch_add(&unlock_pauses, 1, __ATOMIC_SEQ_CST);
        sleep_us(10000);
    }
    return rc;
}

typedef struct host_finish_arg {
    pgf_call *call;
    int pauses;
    int rc;
} host_finish_arg;

static void *host_finisher(void *p) {
    host_finish_arg *a = p;
    /* Wait until the dispatching thread pauses after its first unlock (the
     * call is marked dispatched then), and finish the call with the host's
     * one reference. */
    while (__atomic_load_n(&unlock_pauses, __ATOMIC_SEQ_CST) == a->pauses)
        sleep_us(100);
    a->rc = pgf_call_finish(a->call, PGF_STATUS_DEADLINE_EXCEEDED,
                            "deadline", 8);
    return NULL;
}

static int handler_finish_rc;
static void h_finish_record(void *data, pgf_call *call) {
    (void)data;
    handler_finish_rc = pgf_call_finish(call, PGF_STATUS_OK, "handler", 7);
}

static void test_host_finish_during_dispatch(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    CHECK_INT(reg_service(reg, "pkg.H", h_finish_record, NULL, NULL), PGF_OK);
    done_rec d;
    done_init(&d);
    pgf_call *c = new_call("/pkg.H/M"); /* the host's only reference */
    host_finish_arg a = {c, __atomic_load_n(&unlock_pauses, __ATOMIC_SEQ_CST),
                         -100};
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, host_finisher, &a), 0);
    slow_unlock = 1;
    int rc = pgf_dispatch_async(reg, c, on_done, &d);
    slow_unlock = 0;
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(rc, PGF_OK);
    CHECK_INT(a.rc, PGF_OK);                 /* the host finished first */
    CHECK_INT(handler_finish_rc, PGF_ESTATE); /* the handler came too late */
    CHECK_INT(done_count(&d), 1);
    CHECK_INT(d.status, PGF_STATUS_DEADLINE_EXCEEDED);
    CHECK_LIVE_DELTA(base, 4, 1, 1, 1, 0);   /* the host's call is alive */
    CHECK_INT(pgf_call_status(c), PGF_STATUS_DEADLINE_EXCEEDED);
    pgf_call_unref(c);
    done_destroy(&d);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

/* A cancel callback set on an already cancelled call runs at once; a finish
 * racing it (the host's deadline, say) must not complete before it has run:
 * "never if the call finishes first" means never after the finish. */
typedef struct late_on_cancel_arg {
    pgf_call *call;
    cancel_rec *rec;
    int rc;
} late_on_cancel_arg;

static void *late_on_cancel(void *p) {
    late_on_cancel_arg *a = p;
    slow_unlock = 1;
    a->rc = pgf_call_on_cancel(a->call, on_cancel_fn, a->rec);
    slow_unlock = 0;
    pgf_call_unref(a->call);
    return NULL;
}

static void test_on_cancel_racing_finish(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    cancel_rec r = {0};
    pgf_call *c = new_call("/a/b");
    pgf_call_cancel(c); /* the client went away */
    late_on_cancel_arg a = {pgf_call_ref(c), &r, -100};
    int pauses = __atomic_load_n(&unlock_pauses, __ATOMIC_SEQ_CST);
    pthread_t th;
    CHECK_INT(pthread_create(&th, NULL, late_on_cancel, &a), 0);
    /* Finish while the other thread is between its check and its call. */
    while (__atomic_load_n(&unlock_pauses, __ATOMIC_SEQ_CST) == pauses)
        sleep_us(100);
    finish_str(c, PGF_STATUS_DEADLINE_EXCEEDED, "deadline");
    CHECK_INT(pthread_join(th, NULL), 0);
    CHECK_INT(a.rc, PGF_OK);
    CHECK_INT(r.count, 1);
    CHECK_INT(r.finished_during, 0);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

/* Two late on_cancel callbacks at once, and a finish racing them: no
 * callback may run on a finished call (one runs at a time, finish waits). */
static int slow_cb_running;
static int slow_cb_started;
static int slow_cb_saw_finished;

static void slow_cancel_cb(pgf_call *c, void *ud) {
    (void)ud;
    __atomic_fetch_add(&slow_cb_running, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&slow_cb_started, 1, __ATOMIC_SEQ_CST);
    sleep_us(300);
    if (pgf_call_is_finished(c))
        __atomic_store_n(&slow_cb_saw_finished, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_sub(&slow_cb_running, 1, __ATOMIC_SEQ_CST);
}

static void *late_slow_on_cancel(void *arg) {
    pgf_call *c = arg;
    int rc = pgf_call_on_cancel(c, slow_cancel_cb, NULL);
    CHECK(rc == PGF_OK || rc == PGF_ESTATE);
    pgf_call_unref(c);
    return NULL;
}

static void test_two_late_on_cancels_racing_finish(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    for (int i = 0; i < 50; i++) {
        pgf_call *c = new_call("/a/b");
        pgf_call_cancel(c);
        int started = __atomic_load_n(&slow_cb_started, __ATOMIC_SEQ_CST);
        pthread_t th[2];
        for (int t = 0; t < 2; t++)
            CHECK_INT(pthread_create(&th[t], NULL, late_slow_on_cancel,
                                     pgf_call_ref(c)), 0);
        /* Until a callback has started (the first always runs: the call is
         * not finished yet).  Not "until one is running": on a loaded
         * machine both may be over before this thread looks, and it would
         * wait forever. */
        while (__atomic_load_n(&slow_cb_started, __ATOMIC_SEQ_CST) == started)
            sleep_us(20);
        finish_str(c, PGF_STATUS_CANCELLED, "cancelled");
        for (int t = 0; t < 2; t++)
            CHECK_INT(pthread_join(th[t], NULL), 0);
        pgf_call_unref(c);
    }
    CHECK_INT(__atomic_load_n(&slow_cb_saw_finished, __ATOMIC_SEQ_CST), 0);
    CHECK_LIVE(base);
}

/* -------------------------------------------------------- the registry */

static void test_registry(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    tracker t1 = {0}, t2 = {0}, t3 = {0};

    CHECK_INT(reg_service(reg, "pkg.A", h_tag, &t1, tracker_release), PGF_OK);
    CHECK_INT(has_service(reg, "pkg.A"), 1);
    CHECK_INT(has_method(reg, "pkg.A", "Any"), 1);
    /* Duplicate: PGF_EEXIST, the duplicate's data released, the original
     * kept. */
    CHECK_INT(reg_service(reg, "pkg.A", h_tag, &t2, tracker_release),
              PGF_EEXIST);
    CHECK_INT(released(&t2), 1);
    CHECK_INT(released(&t1), 0);
    CHECK_LIVE_DELTA(base, 2, 1, 0, 1, 0);
    CHECK_INT(reg_method(reg, "pkg.A", "M", h_tag, &t3, tracker_release),
              PGF_OK);
    memset(&t2, 0, sizeof(t2));
    CHECK_INT(reg_method(reg, "pkg.A", "M", h_tag, &t2, tracker_release),
              PGF_EEXIST);
    CHECK_INT(released(&t2), 1);
    CHECK_INT(released(&t3), 0);

    /* Bad arguments: PGF_EINVAL, and release has run. */
    memset(&t2, 0, sizeof(t2));
    CHECK_INT(reg_service(reg, "", h_tag, &t2, tracker_release), PGF_EINVAL);
    CHECK_INT(reg_service(reg, "a/b", h_tag, &t2, tracker_release),
              PGF_EINVAL);
    CHECK_INT(pgf_registry_register_service(reg, "a\0b", 3, h_tag, &t2,
                                            tracker_release),
              PGF_EINVAL);
    CHECK_INT(pgf_registry_register_service(reg, NULL, 3, h_tag, &t2,
                                            tracker_release),
              PGF_EINVAL);
    CHECK_INT(reg_service(reg, "pkg.B", NULL, &t2, tracker_release),
              PGF_EINVAL);
    CHECK_INT(reg_service(NULL, "pkg.B", h_tag, &t2, tracker_release),
              PGF_EINVAL);
    CHECK_INT(reg_method(reg, "pkg.B", "", h_tag, &t2, tracker_release),
              PGF_EINVAL);
    CHECK_INT(reg_method(reg, "pkg.B", "m/n", h_tag, &t2, tracker_release),
              PGF_EINVAL);
    CHECK_INT(pgf_registry_register_method(reg, "pkg.B", 5, NULL, 0, h_tag,
                                           &t2, tracker_release),
              PGF_EINVAL);
    CHECK_INT(released(&t2), 9);
    CHECK_INT(reg_service(reg, "pkg.B", NULL, NULL, NULL), PGF_EINVAL);
    CHECK_LIVE_DELTA(base, 4, 2, 0, 1, 0);

    /* Method-only services. */
    CHECK_INT(reg_method(reg, "pkg.C", "X", h_tag, "c.x", NULL), PGF_OK);
    CHECK_INT(has_service(reg, "pkg.C"), 1);
    CHECK_INT(has_method(reg, "pkg.C", "X"), 1);
    CHECK_INT(has_method(reg, "pkg.C", "Y"), 0);
    CHECK_INT(has_service(reg, "pkg.D"), 0);
    CHECK_INT(has_method(reg, "pkg.D", "X"), 0);
    CHECK_INT(has_service(reg, "pkg"), 0);
    CHECK_INT(has_service(reg, "pkg.A/M"), 0);
    CHECK_INT(has_service(reg, ""), 0);
    CHECK_INT(has_method(reg, "pkg.C", ""), 0);
    CHECK_INT(pgf_registry_has_service(NULL, "pkg.A", 5), 0);
    CHECK_INT(pgf_registry_has_method(reg, NULL, 0, "X", 1), 0);

    /* Unregistering: unknown -> PGF_ENOTFOUND; a service registration's
     * removal keeps the service's method registrations. */
    CHECK_INT(unreg_service(reg, "pkg.Nope"), PGF_ENOTFOUND);
    CHECK_INT(unreg_method(reg, "pkg.A", "Nope"), PGF_ENOTFOUND);
    CHECK_INT(unreg_service(reg, "pkg.C"), PGF_ENOTFOUND); /* methods only */
    CHECK_INT(unreg_method(reg, "pkg.Nope", "X"), PGF_ENOTFOUND);
    CHECK_INT(unreg_service(reg, ""), PGF_EINVAL);
    CHECK_INT(pgf_registry_unregister_method(reg, "pkg.A", 5, NULL, 0),
              PGF_EINVAL);
    CHECK_INT(unreg_service(NULL, "pkg.A"), PGF_EINVAL);
    CHECK_INT(unreg_service(reg, "pkg.A"), PGF_OK);
    CHECK_INT(released(&t1), 1); /* no call in flight: at once */
    CHECK(pthread_equal(t1.thread, pthread_self()));
    CHECK_INT(unreg_service(reg, "pkg.A"), PGF_ENOTFOUND);
    CHECK_INT(has_service(reg, "pkg.A"), 1); /* pkg.A/M remains */
    CHECK_INT(has_method(reg, "pkg.A", "M"), 1);
    CHECK_INT(has_method(reg, "pkg.A", "Any"), 0);
    pgf_call *c = new_call("/pkg.A/Any");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    CHECK_STR(status_message(c), "unknown method Any for service pkg.A");
    pgf_call_unref(c);
    CHECK_INT(unreg_method(reg, "pkg.A", "M"), PGF_OK);
    CHECK_INT(released(&t3), 1);
    CHECK_INT(has_service(reg, "pkg.A"), 0);
    c = new_call("/pkg.A/M");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_STR(status_message(c), "unknown service pkg.A");
    pgf_call_unref(c);
    /* Re-registering after unregistering works. */
    memset(&t1, 0, sizeof(t1));
    CHECK_INT(reg_service(reg, "pkg.A", h_tag, "again", NULL), PGF_OK);
    c = new_call("/pkg.A/M");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_STR(status_message(c), "again");
    pgf_call_unref(c);

    /* list_services: sorted, deduplicated, capped; the rest is not leaked. */
    CHECK_INT(reg_service(reg, "zeta", h_tag, "z", NULL), PGF_OK);
    CHECK_INT(reg_service(reg, "alpha", h_tag, "a", NULL), PGF_OK);
    CHECK_INT(reg_method(reg, "alpha", "x", h_tag, "a", NULL), PGF_OK);
    CHECK_INT(reg_method(reg, "beta", "y", h_tag, "b", NULL), PGF_OK);
    CHECK_INT(reg_method(reg, "beta", "z", h_tag, "b", NULL), PGF_OK);
    CHECK_INT(reg_service(reg, "mid", h_tag, "m", NULL), PGF_OK);
    static const char *const want[] = {"alpha", "beta", "mid", "pkg.A",
                                       "pkg.C", "zeta"};
    int64_t names_before = pgf_live_count(PGF_LIVE_NAMES);
    CHECK_INT(pgf_registry_list_services(reg, NULL, 0), 6);
    CHECK_INT(pgf_live_count(PGF_LIVE_NAMES), names_before);
    pgf_name *out[8] = {0};
    CHECK_INT(pgf_registry_list_services(reg, out, 8), 6);
    for (int i = 0; i < 6; i++) {
        CHECK_STR(pgf_name_str(out[i]), want[i]);
        pgf_name_unref(out[i]);
    }
    CHECK(out[6] == NULL);
    CHECK_INT(pgf_registry_list_services(reg, out, 2), 6);
    CHECK_STR(pgf_name_str(out[0]), "alpha");
    CHECK_STR(pgf_name_str(out[1]), "beta");
    pgf_name_unref(out[0]);
    pgf_name_unref(out[1]);
    CHECK_INT(pgf_live_count(PGF_LIVE_NAMES), names_before);
    CHECK_INT(pgf_registry_list_services(NULL, out, 8), 0);
    pgf_registry *empty = pgf_registry_new();
    CHECK_INT(pgf_registry_list_services(empty, out, 8), 0);
    pgf_registry_free(empty);
    pgf_registry_free(reg);
    pgf_registry_free(NULL);
    CHECK_LIVE(base);

    /* Growth: many registrations are all found, listed in order. */
    reg = pgf_registry_new();
    char svc[32], m[32];
    for (int i = 0; i < 300; i++) {
        snprintf(svc, sizeof(svc), "grow.S%03d", i);
        if (i % 2)
            CHECK_INT(reg_service(reg, svc, h_tag, "s", NULL), PGF_OK);
        snprintf(m, sizeof(m), "M%d", i);
        CHECK_INT(reg_method(reg, svc, m, h_tag, "m", NULL), PGF_OK);
    }
    CHECK_LIVE_DELTA(base, 2 * 450, 450, 0, 1, 0);
    for (int i = 0; i < 300; i++) {
        snprintf(svc, sizeof(svc), "grow.S%03d", i);
        snprintf(m, sizeof(m), "M%d", i);
        CHECK_INT(has_method(reg, svc, m), 1);
        CHECK_INT(has_method(reg, svc, "Other"), i % 2);
    }
    pgf_name *all[300];
    CHECK_INT(pgf_registry_list_services(reg, all, 300), 300);
    for (int i = 0; i < 300; i++) {
        snprintf(svc, sizeof(svc), "grow.S%03d", i);
        CHECK_STR(pgf_name_str(all[i]), svc);
        pgf_name_unref(all[i]);
    }
    for (int i = 0; i < 300; i += 3) {
        snprintf(svc, sizeof(svc), "grow.S%03d", i);
        snprintf(m, sizeof(m), "M%d", i);
        CHECK_INT(unreg_method(reg, svc, m), PGF_OK);
        CHECK_INT(has_method(reg, svc, m), i % 2);
    }
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

static void test_default_registry(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *def = pgf_default_registry();
    CHECK(def != NULL);
    CHECK(pgf_default_registry() == def);
    CHECK_LIVE(base); /* not counted among registries */
    CHECK_INT(pgf_registry_list_services(def, NULL, 0), 0);
    CHECK_INT(reg_service(def, "def.Svc", h_tag, "default", NULL), PGF_OK);
    pgf_call *c = new_call("/def.Svc/M");
    CHECK_INT(pgf_dispatch(def, c), PGF_OK);
    CHECK_STR(status_message(c), "default");
    pgf_call_unref(c);
    CHECK_INT(unreg_service(def, "def.Svc"), PGF_OK);
    CHECK_LIVE(base);
}

/* Unregistering while a call is in flight: the call finishes normally, its
 * handler's data is released once, after it finished, on the thread that
 * finished it; new calls do not find the handler. */
static void test_unregister_in_flight(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    holder h;
    holder_init(&h);
    CHECK_INT(reg_service(reg, "pkg.Slow", h_hold, &h, holder_release),
              PGF_OK);
    done_rec d;
    done_init(&d);
    pgf_call *calls[3];
    for (int i = 0; i < 3; i++) {
        calls[i] = new_call("/pkg.Slow/Work");
        CHECK_INT(pgf_dispatch_async(reg, calls[i], on_done, &d), PGF_OK);
    }
    CHECK_INT(h.nheld, 3);
    h.rel.watch = calls[2];
    CHECK_INT(unreg_service(reg, "pkg.Slow"), PGF_OK);
    CHECK_INT(released(&h.rel), 0);
    CHECK_INT(has_service(reg, "pkg.Slow"), 0);
    CHECK_LIVE_DELTA(base, 2 * 3, 1, 3, 1, 0); /* registration names gone */

    /* New calls: UNIMPLEMENTED; a new registration may take the name. */
    pgf_call *c = new_call("/pkg.Slow/Work");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_UNIMPLEMENTED);
    pgf_call_unref(c);
    CHECK_INT(reg_service(reg, "pkg.Slow", h_tag, "new", NULL), PGF_OK);
    c = new_call("/pkg.Slow/Work");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_STR(status_message(c), "new");
    pgf_call_unref(c);
    CHECK_INT(h.invocations, 3);

    /* The old calls finish normally; release waits for the last one. */
    finish_on_thread(h.held[0], PGF_STATUS_OK, "old 0", NULL);
    finish_on_thread(h.held[1], PGF_STATUS_OK, "old 1", NULL);
    CHECK_INT(done_count(&d), 2);
    CHECK_INT(released(&h.rel), 0);
    pthread_t last;
    finish_on_thread(h.held[2], PGF_STATUS_OK, "old 2", &last);
    CHECK_INT(done_count(&d), 3);
    CHECK_INT(d.status, PGF_STATUS_OK);
    CHECK_INT(released(&h.rel), 1);
    CHECK_INT(h.rel.watch_finished, 1);
    CHECK(pthread_equal(h.rel.thread, last));
    for (int i = 0; i < 3; i++) {
        CHECK_INT(pgf_call_status(calls[i]), PGF_STATUS_OK);
        pgf_call_unref(calls[i]);
    }

    done_destroy(&d);
    pgf_registry_free(reg);
    CHECK_INT(released(&h.rel), 1);
    pthread_mutex_destroy(&h.mu);
    CHECK_LIVE(base);
}

/* A handler unregistering itself while it runs: its data stays valid until
 * it returns. */
static tracker self_unreg_tracker;
static void h_self_unregister(void *data, pgf_call *call) {
    pgf_registry *reg = data;
    CHECK_INT(unreg_service(reg, "pkg.Self"), PGF_OK);
    CHECK_INT(released(&self_unreg_tracker), 0); /* still in use by me */
    finish_str(call, PGF_STATUS_OK, "bye");
    CHECK_INT(released(&self_unreg_tracker), 0); /* until fn returns */
}

static void self_unreg_release(void *data) {
    (void)data;
    tracker_release(&self_unreg_tracker);
}

static void test_unregister_from_handler(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    CHECK_INT(reg_service(reg, "pkg.Self", h_self_unregister, reg,
                          self_unreg_release),
              PGF_OK);
    pgf_call *c = new_call("/pkg.Self/M");
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK_STR(status_message(c), "bye");
    CHECK_INT(released(&self_unreg_tracker), 1);
    CHECK(pthread_equal(self_unreg_tracker.thread, pthread_self()));
    pgf_call_unref(c);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

/* Freeing a registry with calls in flight: they finish normally; the data
 * goes after the last one. */
static void test_registry_free_in_flight(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    holder h;
    holder_init(&h);
    tracker other = {0};
    CHECK_INT(reg_service(reg, "pkg.Held", h_hold, &h, holder_release),
              PGF_OK);
    CHECK_INT(reg_service(reg, "pkg.Idle", h_tag, &other, tracker_release),
              PGF_OK);
    done_rec d;
    done_init(&d);
    pgf_call *calls[4];
    for (int i = 0; i < 4; i++) {
        calls[i] = new_call("/pkg.Held/M");
        CHECK_INT(pgf_dispatch_async(reg, calls[i], on_done, &d), PGF_OK);
        if (i % 2) { /* the host may let go of some at once */
            pgf_call_unref(calls[i]);
            calls[i] = NULL;
        }
    }
    pgf_registry_free(reg);
    CHECK_INT(released(&other), 1);
    CHECK_INT(released(&h.rel), 0);
    CHECK_LIVE_DELTA(base, 2 * 4, 1, 4, 0, 0);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(done_count(&d), i);
        CHECK_INT(released(&h.rel), 0);
        finish_on_thread(h.held[i], PGF_STATUS_UNAVAILABLE, "drained", NULL);
    }
    CHECK_INT(done_count(&d), 4);
    CHECK_INT(d.status, PGF_STATUS_UNAVAILABLE);
    CHECK_INT(released(&h.rel), 1);
    for (int i = 0; i < 4; i++)
        pgf_call_unref(calls[i]);
    done_destroy(&d);
    pthread_mutex_destroy(&h.mu);
    CHECK_LIVE(base);
}

/* -------------------------------------------------------------- stress */

#define STRESS_DISPATCHERS 4
#define STRESS_CALLS 2500
#define STRESS_CHURNERS 2
#define STRESS_ROUNDS 1500      /* at least; more while dispatchers run */
#define STRESS_MAX_ROUNDS 200000
#define STRESS_CHURN_SERVICES 4

static pgf_registry *stress_reg;
static int64_t stress_allocated, stress_released;
static int stress_stop;
static int64_t stress_churn_ok, stress_churn_unimpl;

/* A queue of calls finished by a separate thread. */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static pgf_call *q_items[256];
static int q_head, q_len, q_stop;

static void q_push(pgf_call *c) {
    pthread_mutex_lock(&q_mu);
    if (q_len == 256)
        CHECK_FAIL_("queue full");
    q_items[(q_head + q_len++) % 256] = c;
    pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);
}

static void *q_finisher(void *p) {
    (void)p;
    pthread_mutex_lock(&q_mu);
    for (;;) {
        while (q_len == 0 && !q_stop)
            pthread_cond_wait(&q_cv, &q_mu);
        if (q_len == 0)
            break;
        pgf_call *c = q_items[q_head];
        q_head = (q_head + 1) % 256;
        q_len--;
        pthread_mutex_unlock(&q_mu);
        const uint8_t *req;
        size_t len;
        pgf_call_request(c, &req, &len);
        uint8_t *copy = malloc(len + 1);
        CHECK(copy != NULL);
        memcpy(copy, req, len);
        CHECK_INT(pgf_call_set_response(c, copy, len, buf_free, copy), PGF_OK);
        finish_str(c, PGF_STATUS_OK, "queued");
        pgf_call_unref(c);
        pthread_mutex_lock(&q_mu);
    }
    pthread_mutex_unlock(&q_mu);
    return NULL;
}

typedef struct churn_data {
    int kind;                   /* 0 service, 1 method */
    int64_t calls;
} churn_data;

static void churn_release(void *p) {
    free(p);
    __atomic_fetch_add(&stress_released, 1, __ATOMIC_SEQ_CST);
}

static void h_churn(void *data, pgf_call *call) {
    churn_data *cd = data;
    int64_t n = __atomic_fetch_add(&cd->calls, 1, __ATOMIC_RELAXED);
    if (n % 2) {
        q_push(pgf_call_ref(call));
        return;
    }
    finish_str(call, PGF_STATUS_OK, cd->kind ? "method" : "service");
}

static void h_queue(void *data, pgf_call *call) {
    (void)data;
    q_push(pgf_call_ref(call));
}

static void *stress_churner(void *p) {
    int id = (int)(intptr_t)p;
    char svc[32];
    for (int i = 0; i < STRESS_MAX_ROUNDS &&
                    (i < STRESS_ROUNDS ||
                     !__atomic_load_n(&stress_stop, __ATOMIC_SEQ_CST));
         i++) {
        int k = (i + id) % STRESS_CHURN_SERVICES;
        snprintf(svc, sizeof(svc), "s.Churn%d", k);
        int op = (i / STRESS_CHURN_SERVICES + id) % 4;
        churn_data *cd;
        int rc;
        switch (op) {
        case 0:
        case 1:
            cd = calloc(1, sizeof(*cd));
            CHECK(cd != NULL);
            cd->kind = op;
            __atomic_fetch_add(&stress_allocated, 1, __ATOMIC_SEQ_CST);
            rc = op ? reg_method(stress_reg, svc, "M", h_churn, cd,
                                 churn_release)
                    : reg_service(stress_reg, svc, h_churn, cd,
                                  churn_release);
            CHECK(rc == PGF_OK || rc == PGF_EEXIST);
            break;
        case 2:
            rc = unreg_service(stress_reg, svc);
            CHECK(rc == PGF_OK || rc == PGF_ENOTFOUND);
            break;
        default:
            rc = unreg_method(stress_reg, svc, "M");
            CHECK(rc == PGF_OK || rc == PGF_ENOTFOUND);
            break;
        }
        if (i % 64 == 0) {
            pgf_name *out[16];
            size_t n = pgf_registry_list_services(stress_reg, out, 16);
            CHECK(n >= 2 && n <= 2 + STRESS_CHURN_SERVICES);
            for (size_t j = 0; j < n; j++) {
                if (j)
                    CHECK(strcmp(pgf_name_str(out[j - 1]),
                                 pgf_name_str(out[j])) < 0);
                CHECK(strncmp(pgf_name_str(out[j]), "s.", 2) == 0);
            }
            for (size_t j = 0; j < n; j++) /* ours until unreferenced */
                pgf_name_unref(out[j]);
            (void)has_service(stress_reg, svc);
        }
    }
    return NULL;
}

static void *stress_dispatcher(void *p) {
    int id = (int)(intptr_t)p;
    char path[64], payload[64];
    done_rec d;
    done_init(&d);
    d.take = 1;
    for (int i = 0; i < STRESS_CALLS; i++) {
        int len = snprintf(payload, sizeof(payload), "d%d-i%d", id, i);
        int kind = i % 3;
        int k = (i / 3 + id) % STRESS_CHURN_SERVICES;
        const char *method = (i % 2) ? "M" : "X";
        if (kind == 0)
            snprintf(path, sizeof(path), "/s.Stable/Echo");
        else if (kind == 1)
            snprintf(path, sizeof(path), "/s.Churn%d/%s", k, method);
        else
            snprintf(path, sizeof(path), "/s.Queue/Q");
        pgf_call *c = new_call(path);
        CHECK_INT(pgf_call_set_request(c, (const uint8_t *)payload,
                                       (size_t)len),
                  PGF_OK);
        if (kind == 2) { /* async, finished by the queue thread */
            int before = done_count(&d);
            CHECK_INT(pgf_dispatch_async(stress_reg, c, on_done, &d), PGF_OK);
            pgf_call_unref(c);
            done_wait(&d, before + 1);
            CHECK_INT(d.status, PGF_STATUS_OK);
            CHECK_MEM(d.data, d.len, payload, (size_t)len);
            CHECK(d.release != NULL);
            d.release(d.ctx);
            continue;
        }
        CHECK_INT(pgf_dispatch(stress_reg, c), PGF_OK);
        int st = pgf_call_status(c);
        const char *msg = status_message(c);
        if (kind == 0) {
            CHECK_INT(st, PGF_STATUS_OK);
            take_and_check(c, payload, (size_t)len);
        } else if (st == PGF_STATUS_OK) {
            __atomic_fetch_add(&stress_churn_ok, 1, __ATOMIC_RELAXED);
            /* the method registration, if it answered, only for "M" */
            if (strcmp(msg, "method") == 0)
                CHECK(method[0] == 'M');
            else if (strcmp(msg, "queued") == 0)
                take_and_check(c, payload, (size_t)len);
            else
                CHECK_STR(msg, "service");
        } else {
            CHECK_INT(st, PGF_STATUS_UNIMPLEMENTED);
            CHECK_CONTAINS(msg, "s.Churn");
            __atomic_fetch_add(&stress_churn_unimpl, 1, __ATOMIC_RELAXED);
        }
        pgf_call_unref(c);
    }
    CHECK_INT(done_count(&d), STRESS_CALLS / 3);
    done_destroy(&d);
    return NULL;
}

static void test_stress(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    int64_t freed0 = __atomic_load_n(&bufs_freed, __ATOMIC_SEQ_CST);
    stress_reg = pgf_registry_new();
    stress_allocated = stress_released = 0;
    stress_stop = 0;
    stress_churn_ok = stress_churn_unimpl = 0;
    q_stop = 0;
    CHECK_INT(reg_service(stress_reg, "s.Stable", h_echo, NULL, NULL),
              PGF_OK);
    CHECK_INT(reg_service(stress_reg, "s.Queue", h_queue, NULL, NULL),
              PGF_OK);
    pthread_t fin, churn[STRESS_CHURNERS], disp[STRESS_DISPATCHERS];
    CHECK_INT(pthread_create(&fin, NULL, q_finisher, NULL), 0);
    for (int i = 0; i < STRESS_CHURNERS; i++)
        CHECK_INT(pthread_create(&churn[i], NULL, stress_churner,
                                 (void *)(intptr_t)i),
                  0);
    for (int i = 0; i < STRESS_DISPATCHERS; i++)
        CHECK_INT(pthread_create(&disp[i], NULL, stress_dispatcher,
                                 (void *)(intptr_t)i),
                  0);
    for (int i = 0; i < STRESS_DISPATCHERS; i++)
        CHECK_INT(pthread_join(disp[i], NULL), 0);
    __atomic_store_n(&stress_stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < STRESS_CHURNERS; i++)
        CHECK_INT(pthread_join(churn[i], NULL), 0);
    pthread_mutex_lock(&q_mu);
    q_stop = 1;
    pthread_cond_broadcast(&q_cv);
    pthread_mutex_unlock(&q_mu);
    CHECK_INT(pthread_join(fin, NULL), 0);

    /* registrations really came and went under the dispatchers */
    CHECK(stress_churn_ok > 0);
    CHECK(stress_churn_unimpl > 0);
    pgf_registry_free(stress_reg);
    CHECK(stress_allocated > 0);
    CHECK_INT(stress_released, stress_allocated);
    /* every response buffer made was freed exactly once (ASan would see a
     * second free; the counter sees a missing one) */
    CHECK(__atomic_load_n(&bufs_freed, __ATOMIC_SEQ_CST) > freed0);
    CHECK_LIVE(base);
}

/* A C handler whose only finish passes a NULL message with a length. */
static void finish_null_message_handler(void *data, pgf_call *call) {
    (void)data;
    CHECK_INT(pgf_call_finish(call, PGF_STATUS_NOT_FOUND, NULL, 5), PGF_OK);
}

static void test_finish_with_null_message_still_finishes(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_INT(pgf_registry_register_service(reg, "pkg.Svc", 7,
                                            finish_null_message_handler, NULL,
                                            NULL),
              PGF_OK);
    pgf_call *c = new_call("/pkg.Svc/M");
    /* Before the fix, the finish failed with EINVAL and this never returned. */
    CHECK_INT(pgf_dispatch(reg, c), PGF_OK);
    CHECK(pgf_call_is_finished(c));
    CHECK_INT(pgf_call_status(c), PGF_STATUS_NOT_FOUND);
    size_t len = 99;
    CHECK_STR(pgf_call_status_message(c, &len), "");
    CHECK_INT(len, 0);
    pgf_call_unref(c);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

/* Every public function with NULL outputs and lengths near SIZE_MAX: defined
 * results (PGF_EINVAL / NULL / no effect), never a crash or a wrapped size. */
static void test_null_outputs_and_huge_lengths(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, (size_t)PTRDIFF_MAX + 1};
    static const char bytes[8] = "abcdefg";
    pgf_call *c = new_call("/pkg.Svc/M");

    /* NULL output pointers are skipped, whichever of the pair is NULL. */
    const uint8_t *data = (const uint8_t *)"x";
    size_t len = 42;
    pgf_call_request(c, NULL, NULL);
    pgf_call_request(c, &data, NULL);
    CHECK(data == NULL);
    pgf_call_request(c, NULL, &len);
    CHECK_INT(len, 0);
    pgf_call_response(c, NULL, NULL);
    pgf_call_response(c, NULL, &len);
    pgf_call_status_details(c, NULL, NULL);
    pgf_call_status_details(c, &data, NULL);
    pgf_call_status_details(NULL, NULL, NULL);
    pgf_call_response(NULL, NULL, NULL);
    pgf_call_request(NULL, NULL, NULL);

    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        size_t n = huge[i];
        CHECK(pgf_name_new(bytes, n) == NULL);
        CHECK(pgf_call_new("/a/b", n) == NULL);
        CHECK_INT(pgf_call_set_peer(c, bytes, n), PGF_EINVAL);
        CHECK_INT(pgf_call_set_request(c, (const uint8_t *)bytes, n), PGF_EINVAL);
        CHECK_INT(pgf_call_add_request_metadata(c, "k", 1,
                                                (const uint8_t *)bytes, n),
                  PGF_EINVAL);
        CHECK_INT(pgf_call_add_request_metadata(c, bytes, n,
                                                (const uint8_t *)"v", 1),
                  PGF_EINVAL);
        CHECK_INT(pgf_metadata_validate("k-bin", 5, (const uint8_t *)bytes, n),
                  PGF_EMETADATA);
        CHECK_INT(pgf_metadata_validate(bytes, n, (const uint8_t *)"v", 1),
                  PGF_EMETADATA);
        CHECK_INT(pgf_call_add_trailing_metadata(c, "k-bin", 5,
                                                 (const uint8_t *)bytes, n),
                  PGF_EMETADATA);
        CHECK_INT(pgf_call_set_status_details(c, (const uint8_t *)bytes, n),
                  PGF_EINVAL);
        CHECK_INT(pgf_call_set_response(c, (const uint8_t *)bytes, n, NULL,
                                        NULL),
                  PGF_EINVAL);
        CHECK_INT(pgf_registry_has_service(pgf_default_registry(), bytes, n), 0);
        CHECK_INT(pgf_registry_has_method(pgf_default_registry(), "s", 1, bytes,
                                          n),
                  0);
    }
    CHECK_INT(pgf_metadata_count(pgf_call_request_metadata(c)), 0);
    CHECK_INT(pgf_metadata_count(pgf_call_trailing_metadata(c)), 0);
    size_t peer_len = 1;
    CHECK_STR(pgf_call_peer(c, &peer_len), "");
    CHECK_INT(peer_len, 0);

    /* A huge message length on finish: the call finishes, without message. */
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_ABORTED, bytes, SIZE_MAX), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_ABORTED);
    CHECK_STR(pgf_call_status_message(c, &len), "");
    CHECK_INT(len, 0);
    pgf_call_unref(c);

    pgf_registry *reg = pgf_registry_new();
    CHECK(reg != NULL);
    CHECK_INT(pgf_registry_register_service(reg, bytes, SIZE_MAX,
                                            finish_null_message_handler, NULL,
                                            NULL),
              PGF_EINVAL);
    CHECK_INT(pgf_registry_register_method(reg, "s", 1, bytes, SIZE_MAX - 1,
                                           finish_null_message_handler, NULL,
                                           NULL),
              PGF_EINVAL);
    CHECK_INT(pgf_registry_unregister_service(reg, bytes, SIZE_MAX), PGF_EINVAL);
    pgf_registry_free(reg);
    CHECK_LIVE(base);
}

/* Status message and response metadata are bounded as gRPC sends them. */
static void test_response_limits(void) {
    int64_t base[NKINDS];
    live_snapshot(base);
    static char big[3 * PGF_MAX_STATUS_MESSAGE];
    size_t len;

    /* Plain ASCII: cut at the limit. */
    memset(big, 'a', sizeof(big));
    pgf_call *c = new_call("/a/b");
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_NOT_FOUND, big, sizeof(big)), PGF_OK);
    CHECK_INT(pgf_call_status(c), PGF_STATUS_NOT_FOUND);
    pgf_call_status_message(c, &len);
    CHECK_INT(len, PGF_MAX_STATUS_MESSAGE);
    pgf_call_unref(c);

    /* Bytes gRPC percent-encodes count three times. */
    memset(big, '%', sizeof(big));
    c = new_call("/a/b");
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_ABORTED, big, sizeof(big)), PGF_OK);
    pgf_call_status_message(c, &len);
    CHECK_INT(len, PGF_MAX_STATUS_MESSAGE / 3);
    pgf_call_unref(c);

    /* Never inside a UTF-8 character: "é" is 2 bytes, 6 as sent. */
    for (size_t i = 0; i + 1 < sizeof(big); i += 2) {
        big[i] = (char)0xc3;
        big[i + 1] = (char)0xa9;
    }
    big[0] = 'x'; /* the characters now start at odd offsets */
    c = new_call("/a/b");
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_ABORTED, big, sizeof(big)), PGF_OK);
    const char *m = pgf_call_status_message(c, &len);
    /* 'x' and 682 more bytes fit in 2048 as sent (1 + 3 * 682); they end
     * inside an "é", so the cut moves back one byte, to 682. */
    CHECK_INT(PGF_MAX_STATUS_MESSAGE, 2048);
    CHECK_INT(len, 682);
    CHECK_INT((unsigned char)m[len - 1], 0xa9);
    pgf_call_unref(c);

    /* Short messages are untouched. */
    c = new_call("/a/b");
    CHECK_INT(pgf_call_finish(c, PGF_STATUS_ABORTED, "100% fine", 9), PGF_OK);
    CHECK_STR(pgf_call_status_message(c, &len), "100% fine");
    pgf_call_unref(c);

    /* Trailers: entries up to the budget, then PGF_EMETADATA; the status
     * details share the budget. */
    memset(big, 'v', sizeof(big));
    c = new_call("/a/b");
    size_t used = 0, entry = 5 + 1000 + 32;
    while (used + entry <= PGF_MAX_RESPONSE_METADATA) {
        CHECK_INT(pgf_call_add_trailing_metadata(c, "x-big", 5,
                                                 (const uint8_t *)big, 1000),
                  PGF_OK);
        used += entry;
    }
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-big", 5,
                                             (const uint8_t *)big, 1000),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_set_status_details(c, (const uint8_t *)big, 1000),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_set_status_details(c, (const uint8_t *)big, 3), PGF_OK);
    CHECK_INT(pgf_metadata_count(pgf_call_trailing_metadata(c)), used / entry);
    /* Initial metadata has a budget of its own. */
    CHECK_INT(pgf_call_add_initial_metadata(c, "x-big", 5,
                                            (const uint8_t *)big, 1000),
              PGF_OK);
    CHECK_INT(pgf_call_add_initial_metadata(c, "x", 1, (const uint8_t *)big,
                                            PGF_MAX_RESPONSE_METADATA),
              PGF_EMETADATA);
    /* Binary values count base64-encoded; reset gives the budget back. */
    CHECK_INT(pgf_call_reset_response(c), PGF_OK);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-bin", 5,
                                             (const uint8_t *)big, 3900),
              PGF_EMETADATA);
    CHECK_INT(pgf_call_add_trailing_metadata(c, "x-bin", 5,
                                             (const uint8_t *)big, 3700),
              PGF_OK);
    CHECK_INT(pgf_call_finish(c, 0, NULL, 0), PGF_OK);
    pgf_call_unref(c);
    CHECK_LIVE(base);
}

int main(void) {
    int passed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("test_shim: ABI %d\n", pgf_abi_version());
    RUN_TEST(test_abi, passed);
    RUN_TEST(test_names, passed);
    RUN_TEST(test_metadata_validate, passed);
    RUN_TEST(test_call_metadata, passed);
    RUN_TEST(test_call_basics, passed);
    RUN_TEST(test_response_ownership, passed);
    RUN_TEST(test_response_copy_never_blocks, passed);
    RUN_TEST(test_dispatch_sync, passed);
    RUN_TEST(test_dispatch_async, passed);
    RUN_TEST(test_cancel, passed);
    RUN_TEST(test_host_finish_during_dispatch, passed);
    RUN_TEST(test_on_cancel_racing_finish, passed);
    RUN_TEST(test_two_late_on_cancels_racing_finish, passed);
    RUN_TEST(test_registry, passed);
    RUN_TEST(test_default_registry, passed);
    RUN_TEST(test_unregister_in_flight, passed);
    RUN_TEST(test_unregister_from_handler, passed);
    RUN_TEST(test_registry_free_in_flight, passed);
    RUN_TEST(test_stress, passed);
    RUN_TEST(test_finish_with_null_message_still_finishes, passed);
    RUN_TEST(test_null_outputs_and_huge_lengths, passed);
    RUN_TEST(test_response_limits, passed);

    for (int k = 0; k < NKINDS; k++)
        if (pgf_live_count(k) != 0)
            CHECK_FAIL_("live %s = %lld at exit", kind_names[k],
                        (long long)pgf_live_count(k));
    CHECK_PASS_();
    printf("test_shim: %d passed, 0 failed (%ld checks)\n", passed,
           check_count);
    return 0;
}
