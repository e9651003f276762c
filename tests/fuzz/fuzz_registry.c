/* libFuzzer harness: the registry, against a model.
 *
 * Opcodes register and unregister services and methods (arbitrary names
 * from a small alphabet that includes '/', NUL and the empty name, and
 * arbitrary kinds), look them up (has_service, has_method, method_kind),
 * list the services, and dispatch calls into the registry (pgf_dispatch and
 * pgf_dispatch_nonblocking, registrations with and without
 * PGF_FLAG_NONBLOCKING); a handler may unregister its own registration
 * while it runs.  After each step the
 * registry must agree with a plain list of what is registered: return
 * codes, kinds, the listing (sorted, unique), which handler a dispatch
 * reaches (a method registration wins over its service's) and UNIMPLEMENTED
 * otherwise.  Every registration's release runs exactly once, after it was
 * unregistered and its last call finished; the live counters return to
 * their start. */
#include "fuzz_common.h"

#define MAX_REGS 64
#define NAME_MAX_LEN 3

typedef struct name {
    char s[NAME_MAX_LEN];
    size_t len;
} name;

typedef struct reg_entry {
    int live;            /* registered */
    name svc, method;
    int has_method;
    int kind;            /* without PGF_FLAG_NONBLOCKING */
    int nonblocking;
    int released;        /* release callbacks run */
    int in_handler;      /* its handler is running */
} reg_entry;

static reg_entry regs[MAX_REGS];
static size_t nregs;
static pgf_registry *R;
static fuzz_input *IN;

static void release_entry(void *data) {
    reg_entry *e = data;
    FUZZ_CHECK(!e->live && !e->in_handler);
    e->released++;
    FUZZ_CHECK(e->released == 1);
}

static name read_name(void) {
    static const char alphabet[] = "ab.c/\0Z";
    name n;
    uint8_t b = fuzz_byte(IN);
    n.len = b % (NAME_MAX_LEN + 1);
    for (size_t i = 0; i < n.len; i++)
        n.s[i] = alphabet[fuzz_byte(IN) % (sizeof(alphabet) - 1)];
    return n;
}

static int valid(const name *n) {
    return n->len > 0 && memchr(n->s, '/', n->len) == NULL &&
           memchr(n->s, '\0', n->len) == NULL;
}

static int name_eq(const name *a, const name *b) {
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

static reg_entry *model_find(const name *svc, const name *method) {
    for (size_t i = 0; i < nregs; i++) {
        reg_entry *e = &regs[i];
        if (e->live && name_eq(&e->svc, svc) &&
            (method ? e->has_method && name_eq(&e->method, method)
                    : !e->has_method))
            return e;
    }
    return NULL;
}

static reg_entry *model_route(const name *svc, const name *method) {
    reg_entry *e = model_find(svc, method);
    return e ? e : model_find(svc, NULL);
}

static int model_has_service(const name *svc) {
    for (size_t i = 0; i < nregs; i++)
        if (regs[i].live && name_eq(&regs[i].svc, svc))
            return 1;
    return 0;
}

/* The handler: finishes with its registration's index as the message, and
 * may first unregister itself. */
static void handler(void *data, pgf_call *call) {
    reg_entry *e = data;
    FUZZ_CHECK(e->released == 0);
    e->in_handler = 1;
    if (fuzz_byte(IN) % 4 == 0 && e->live) {
        e->live = 0;
        int rc = e->has_method
                     ? pgf_registry_unregister_method(R, e->svc.s, e->svc.len,
                                                      e->method.s,
                                                      e->method.len)
                     : pgf_registry_unregister_service(R, e->svc.s,
                                                       e->svc.len);
        FUZZ_CHECK(rc == PGF_OK);
        FUZZ_CHECK(e->released == 0); /* the running call holds it */
    }
    char msg[16];
    int n = snprintf(msg, sizeof(msg), "%zu", (size_t)(e - regs));
    e->in_handler = 0;
    FUZZ_CHECK(pgf_call_finish(call, PGF_STATUS_OK, msg, (size_t)n) == PGF_OK);
}

static void op_register(void) {
    name svc = read_name();
    int with_method = fuzz_byte(IN) & 1;
    name method = read_name();
    uint8_t kb = fuzz_byte(IN);
    int kind = (int)(kb % 7) - 1;
    int flag = (kb & 0x80) ? PGF_FLAG_NONBLOCKING : 0;
    int api = fuzz_byte(IN) % 3; /* register / register_service|method */
    if (api) {
        kind = PGF_KIND_UNARY;
        flag = 0;
    }
    int expect;
    if (!valid(&svc) || (with_method && !valid(&method)) || kind < 0 ||
        kind > PGF_KIND_BIDI_STREAMING)
        expect = PGF_EINVAL;
    else if (model_find(&svc, with_method ? &method : NULL))
        expect = PGF_EEXIST;
    else
        expect = PGF_OK;
    if (nregs == MAX_REGS)
        return;
    reg_entry *e = &regs[nregs++];
    memset(e, 0, sizeof(*e));
    e->svc = svc;
    e->method = method;
    e->has_method = with_method;
    e->kind = kind;
    e->nonblocking = flag != 0;
    int rc;
    if (api == 0)
        rc = pgf_registry_register(R, svc.s, svc.len,
                                   with_method ? method.s : NULL, method.len,
                                   kind | flag, handler, e, release_entry);
    else if (with_method)
        rc = pgf_registry_register_method(R, svc.s, svc.len, method.s,
                                          method.len, handler, e,
                                          release_entry);
    else
        rc = pgf_registry_register_service(R, svc.s, svc.len, handler, e,
                                           release_entry);
    FUZZ_CHECK(rc == expect);
    if (rc == PGF_OK)
        e->live = 1;
    else
        FUZZ_CHECK(e->released == 1); /* refused: released at once */
}

static void op_unregister(void) {
    name svc = read_name();
    int with_method = fuzz_byte(IN) & 1;
    name method = read_name();
    reg_entry *e = model_find(&svc, with_method ? &method : NULL);
    int expect = (!valid(&svc) || (with_method && !valid(&method)))
                     ? PGF_EINVAL
                     : e ? PGF_OK : PGF_ENOTFOUND;
    if (expect == PGF_OK)
        e->live = 0; /* its release may run inside the call */
    int rc = with_method
                 ? pgf_registry_unregister_method(R, svc.s, svc.len, method.s,
                                                  method.len)
                 : pgf_registry_unregister_service(R, svc.s, svc.len);
    FUZZ_CHECK(rc == expect);
    if (rc == PGF_OK)
        FUZZ_CHECK(e->released == 1); /* no call in flight */
}

static void op_lookup(void) {
    name svc = read_name();
    name method = read_name();
    int ok = valid(&svc) && valid(&method);
    FUZZ_CHECK(pgf_registry_has_service(R, svc.s, svc.len) ==
               (valid(&svc) && model_has_service(&svc)));
    reg_entry *e = ok ? model_route(&svc, &method) : NULL;
    FUZZ_CHECK(pgf_registry_has_method(R, svc.s, svc.len, method.s,
                                       method.len) == (e != NULL));
    FUZZ_CHECK(pgf_registry_method_kind(R, svc.s, svc.len, method.s,
                                        method.len) ==
               (e ? e->kind : PGF_ENOTFOUND));
}

static int cmp_name(const void *a, const void *b) {
    const name *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void op_list(void) {
    name want[MAX_REGS];
    size_t n = 0;
    for (size_t i = 0; i < nregs; i++)
        if (regs[i].live)
            want[n++] = regs[i].svc;
    qsort(want, n, sizeof(*want), cmp_name);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (!unique || cmp_name(&want[unique - 1], &want[i]) != 0)
            want[unique++] = want[i];
    size_t cap = fuzz_byte(IN) % (MAX_REGS + 1);
    pgf_name *out[MAX_REGS];
    size_t got = pgf_registry_list_services(R, out, cap);
    FUZZ_CHECK(got == unique);
    for (size_t i = 0; i < got && i < cap; i++) {
        FUZZ_CHECK(pgf_name_len(out[i]) == want[i].len);
        FUZZ_CHECK(memcmp(pgf_name_str(out[i]), want[i].s, want[i].len) == 0);
        pgf_name_unref(out[i]);
    }
    FUZZ_CHECK(pgf_registry_list_services(R, NULL, 0) == unique);
}

static void op_dispatch(void) {
    name svc = read_name();
    name method = read_name();
    char path[2 * NAME_MAX_LEN + 2];
    path[0] = '/';
    memcpy(path + 1, svc.s, svc.len);
    path[1 + svc.len] = '/';
    memcpy(path + 2 + svc.len, method.s, method.len);
    size_t len = svc.len + method.len + 2;
    pgf_call *call = pgf_call_new(path, len);
    int ok = valid(&svc) && valid(&method);
    FUZZ_CHECK((call != NULL) == ok);
    if (call == NULL)
        return;
    reg_entry *e = model_route(&svc, &method);
    int known = model_has_service(&svc);
    if (fuzz_byte(IN) & 1) {
        /* Only to a handler that never blocks (or none); else nothing
         * happens and the call can still be dispatched. */
        int rc = pgf_dispatch_nonblocking(R, call, NULL, NULL);
        if (e && !e->nonblocking) {
            FUZZ_CHECK(rc == PGF_EWOULDBLOCK);
            FUZZ_CHECK(!pgf_call_is_finished(call));
            FUZZ_CHECK(pgf_dispatch(R, call) == PGF_OK);
        } else {
            FUZZ_CHECK(rc == PGF_OK);
            FUZZ_CHECK(pgf_call_is_finished(call)); /* the handler finished it */
        }
    } else {
        FUZZ_CHECK(pgf_dispatch(R, call) == PGF_OK);
    }
    FUZZ_CHECK(pgf_call_nonblocking(call) == (e && e->nonblocking));
    FUZZ_CHECK(pgf_dispatch(R, call) == PGF_ESTATE);
    reg_entry *now = model_route(&svc, &method); /* e may be gone */
    FUZZ_CHECK(pgf_dispatch_nonblocking(R, call, NULL, NULL) ==
               (now && !now->nonblocking ? PGF_EWOULDBLOCK : PGF_ESTATE));
    size_t mlen;
    const char *msg = pgf_call_status_message(call, &mlen);
    if (e) {
        FUZZ_CHECK(pgf_call_status(call) == PGF_STATUS_OK);
        FUZZ_CHECK((size_t)strtoul(msg, NULL, 10) == (size_t)(e - regs));
        if (!e->live)
            FUZZ_CHECK(e->released == 1); /* unregistered by its handler */
    } else {
        FUZZ_CHECK(pgf_call_status(call) == PGF_STATUS_UNIMPLEMENTED);
        FUZZ_CHECK(strstr(msg, known ? "unknown method" : "unknown service") ==
                   msg);
    }
    pgf_call_unref(call);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t base[FUZZ_LIVE_KINDS];
    fuzz_live_snapshot(base);
    fuzz_input in = {data, size, 0};
    IN = &in;
    nregs = 0;
    R = pgf_registry_new();
    FUZZ_CHECK(R != NULL);
    for (int ops = 0; !fuzz_done(&in) && ops < 512; ops++) {
        switch (fuzz_byte(&in) % 6) {
        case 0: case 1: op_register(); break;
        case 2: op_unregister(); break;
        case 3: op_lookup(); break;
        case 4: op_list(); break;
        default: op_dispatch(); break;
        }
    }
    for (size_t i = 0; i < nregs; i++)
        regs[i].live = 0;
    pgf_registry_free(R);
    for (size_t i = 0; i < nregs; i++)
        FUZZ_CHECK(regs[i].released == 1);
    fuzz_check_live(base);
    return 0;
}
