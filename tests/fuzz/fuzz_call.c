/* libFuzzer harness: a call's lifecycle driven by a byte string.
 *
 * A small interpreter plays host and handler on one call, one opcode per
 * input byte, in any order: set request (lent or as a message), request
 * metadata, stream, reads (callback and blocking), pushes, writes (owned and
 * borrowed, callback and blocking), take write, write done, cancel, finish,
 * response set/take/reset, on_cancel, extra references, initial metadata,
 * dispatch.  The fake host may answer reads and writes inline, from inside
 * the call's event, or later through the push / take / done opcodes.
 *
 * Properties, whatever the order:
 *   - every read and write the call accepted (PGF_OK) gets exactly one
 *     callback, a refused one none; at most one read and PGF_MAX_WRITES
 *     writes are outstanding; a read's message is there iff it is PGF_OK;
 *   - every release function runs exactly once (never twice, none left at
 *     the end), never while its bytes can still be used;
 *   - the done callback runs exactly once for a dispatched call, the cancel
 *     callback at most once and never after the finish;
 *   - every live counter (pgf_live_count kinds 0..5) returns to its start. */
#include "fuzz_common.h"

#define MAX_TOKENS 512
#define MAX_OPS 256

typedef struct token {
    int released;     /* release callbacks run */
    int used;         /* handed to the shim */
} token;

typedef struct op_track {
    int accepted;     /* the call returned PGF_OK */
    int callbacks;
    int result;
} op_track;

typedef struct state {
    pgf_call *call;
    fuzz_input *in;
    token tokens[MAX_TOKENS];
    size_t ntokens;
    op_track reads[MAX_OPS], writes[MAX_OPS];
    size_t nreads, nwrites;
    int reads_out, writes_out;   /* accepted, callback not yet run */
    pgf_message *kept[8];        /* request messages the handler keeps */
    size_t nkept;
    /* Host side. */
    int stream;
    int inline_host;             /* answer reads/writes inside the event */
    int in_event;
    int write_taken;             /* the host holds a taken write */
    pgf_release_fn taken_release[MAX_OPS];
    void *taken_ctx[MAX_OPS];
    size_t ntaken;
    int extra_refs;
    size_t init_wire, trail_wire, details_len; /* the metadata budget */
    int finishing;               /* inside pgf_call_finish or a dispatch */
    int teardown;                /* the last references are being dropped */
    int handler_refs;            /* references the fake handler holds */
    int dispatched, finished, cancelled;
    int done_calls;
    int cancel_calls;            /* cancel callbacks run */
    int cancel_armed;
} state;

static state S;

static void token_release(void *ctx) {
    token *t = ctx;
    FUZZ_CHECK(t->used);
    t->released++;
    FUZZ_CHECK(t->released == 1); /* never twice */
}

static token *new_token(void) {
    if (S.ntokens == MAX_TOKENS)
        return NULL;
    token *t = &S.tokens[S.ntokens++];
    t->released = 0;
    t->used = 1;
    return t;
}

/* A message over input bytes, released through a token (or static). */
static pgf_message *new_message(void) {
    size_t len;
    const uint8_t *p = fuzz_slice(S.in, 16, &len);
    if (fuzz_byte(S.in) & 1)
        return pgf_message_new(p, len, NULL, NULL);
    token *t = new_token();
    if (t == NULL)
        return pgf_message_new(p, len, NULL, NULL);
    pgf_message *m = pgf_message_new(p, len, token_release, t);
    FUZZ_CHECK(m != NULL);
    size_t got;
    FUZZ_CHECK(pgf_message_data(m, &got) == p && got == len);
    return m;
}

static void keep_or_drop(pgf_message *msg) {
    if (msg == NULL)
        return;
    size_t len;
    (void)pgf_message_data(msg, &len);
    if (S.nkept < sizeof(S.kept) / sizeof(*S.kept))
        S.kept[S.nkept++] = msg;
    else
        pgf_message_unref(msg);
}

/* ---------------------------------------------------------- callbacks */

/* A handler may finish its call from a read or write callback. */
static void maybe_finish_in_callback(void) {
    if (S.teardown || S.finishing || (fuzz_byte(S.in) & 7) != 0)
        return;
    S.finishing = 1;
    int rc = pgf_call_finish(S.call, PGF_STATUS_OK, "cb", 2);
    S.finishing = 0;
    FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE : PGF_OK));
    if (rc == PGF_OK) {
        S.finished = 1;
        S.cancel_armed = 0;
    }
}

static void on_read(pgf_call *call, int result, pgf_message *msg, void *ud) {
    (void)call;
    op_track *r = ud;
    r->callbacks++;
    r->result = result;
    FUZZ_CHECK(r->callbacks == 1);
    FUZZ_CHECK(result == PGF_OK || result == PGF_EOF ||
               result == PGF_ECANCELLED);
    FUZZ_CHECK((msg != NULL) == (result == PGF_OK));
    if (S.reads_out > 0 && r->accepted)
        S.reads_out--;
    keep_or_drop(msg);
    maybe_finish_in_callback();
}

static void on_write(pgf_call *call, int result, void *ud) {
    (void)call;
    op_track *w = ud;
    w->callbacks++;
    w->result = result;
    FUZZ_CHECK(w->callbacks == 1);
    FUZZ_CHECK(result == PGF_OK || result == PGF_ECANCELLED);
    if (S.writes_out > 0 && w->accepted)
        S.writes_out--;
    maybe_finish_in_callback();
}

static void on_done(pgf_call *call, void *ud) {
    (void)call;
    (void)ud;
    S.done_calls++;
    FUZZ_CHECK(S.done_calls == 1);
}

static void on_cancel(pgf_call *call, void *ud) {
    (void)call;
    (void)ud;
    FUZZ_CHECK(!S.finished);
    FUZZ_CHECK(S.cancel_armed);
    S.cancel_armed = 0;
    S.cancel_calls++;
}

/* The host takes a queued write, keeps its release, completes it. */
static void host_take_write(void) {
    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    unsigned flags = 7;
    int rc = pgf_call_take_write(S.call, &data, &len, &release, &ctx, &flags);
    FUZZ_CHECK(rc == PGF_OK || rc == PGF_ENOTFOUND);
    if (rc != PGF_OK) {
        FUZZ_CHECK(data == NULL && len == 0 && release == NULL);
        return;
    }
    FUZZ_CHECK(flags == 0);
    FUZZ_CHECK(!S.write_taken);
    S.write_taken = 1;
    if (release) {
        FUZZ_CHECK(S.ntaken < MAX_OPS);
        S.taken_release[S.ntaken] = release;
        S.taken_ctx[S.ntaken++] = ctx;
    }
}

static void host_write_done(int ok) {
    int taken = S.write_taken;
    S.write_taken = 0;
    if (fuzz_byte(S.in) & 1) {
        /* The event-thread form: refused (nothing changed) unless the
         * callback may run anywhere (a nonblocking handler's). */
        int rc = pgf_call_write_done_nonblocking(S.call, ok);
        if (rc == PGF_EWOULDBLOCK)
            FUZZ_CHECK(taken && !pgf_call_nonblocking(S.call));
        else
            FUZZ_CHECK(rc == (taken ? PGF_OK : PGF_ESTATE));
        if (rc != PGF_EWOULDBLOCK)
            return;
    }
    int rc = pgf_call_write_done(S.call, ok);
    FUZZ_CHECK(rc == (taken ? PGF_OK : PGF_ESTATE));
}

static void host_events(pgf_call *call, int event, void *host_data) {
    FUZZ_CHECK(call == S.call && host_data == &S);
    FUZZ_CHECK(event == PGF_EVENT_READ || event == PGF_EVENT_WRITE ||
               event == PGF_EVENT_INITIAL_METADATA);
    if (!S.inline_host || S.in_event)
        return;
    S.in_event = 1;
    if (event == PGF_EVENT_READ) {
        pgf_message *m = (fuzz_byte(S.in) & 3) ? new_message() : NULL;
        int rc = pgf_call_push_request(call, m);
        FUZZ_CHECK(rc == PGF_OK);
    } else if (event == PGF_EVENT_WRITE) {
        host_take_write();
        host_write_done(fuzz_byte(S.in) & 1);
    }
    S.in_event = 0;
}

/* The fake handler keeps a reference; opcodes finish the call. */
static void handler(void *data, pgf_call *call) {
    FUZZ_CHECK(data == &S && call == S.call);
    pgf_call_ref(call);
    S.handler_refs++;
}

/* ------------------------------------------------------------ opcodes */

static void op_read(void) {
    if (S.nreads == MAX_OPS)
        return;
    op_track *r = &S.reads[S.nreads++];
    int had_out = S.reads_out;
    int was_over = S.finished || S.cancelled;
    int rc = pgf_call_read(S.call, on_read, r);
    FUZZ_CHECK(rc == PGF_OK || rc == PGF_ESTATE || rc == PGF_ECANCELLED);
    if (rc == PGF_OK) {
        FUZZ_CHECK(!had_out); /* at most one read outstanding */
        FUZZ_CHECK(!was_over);
        r->accepted = 1;
        if (r->callbacks == 0)
            S.reads_out++;
    } else {
        FUZZ_CHECK(r->callbacks == 0);
        if (rc == PGF_ESTATE)
            FUZZ_CHECK(had_out);
    }
}

/* Blocking read: only where it cannot wait for a host that never comes. */
static void op_read_wait(void) {
    if (S.stream && !S.inline_host && !S.finished && !S.cancelled)
        return;
    pgf_message *msg = (pgf_message *)1;
    int rc = pgf_call_read_wait(S.call, &msg);
    FUZZ_CHECK(rc == PGF_OK || rc == PGF_EOF || rc == PGF_ECANCELLED ||
               rc == PGF_ESTATE);
    FUZZ_CHECK((msg != NULL) == (rc == PGF_OK));
    keep_or_drop(msg);
}

static void op_write(int owned, int wait) {
    if (S.nwrites == MAX_OPS)
        return;
    size_t len;
    const uint8_t *p = fuzz_slice(S.in, 16, &len);
    token *t = owned ? new_token() : NULL;
    if (wait) {
        /* Blocking write: only where it returns at once or the host
         * completes it inline, inside the write event. */
        int at_once = !S.stream || S.finished || S.cancelled || S.writes_out;
        if (!at_once && !S.inline_host) {
            if (t)
                token_release(t);
            return;
        }
        int rc = pgf_call_write_wait(S.call, p, len, t ? token_release : NULL, t);
        FUZZ_CHECK(rc == PGF_OK || rc == PGF_ECANCELLED || rc == PGF_ESTATE);
        FUZZ_CHECK(S.writes_out == 0 || rc != PGF_OK);
        return;
    }
    op_track *w = &S.writes[S.nwrites++];
    int had_out = S.writes_out;
    int was_over = S.finished || S.cancelled;
    int rc = pgf_call_write(S.call, p, len, t ? token_release : NULL, t,
                            on_write, w);
    FUZZ_CHECK(rc == PGF_OK || rc == PGF_ESTATE || rc == PGF_ECANCELLED);
    if (rc == PGF_OK) {
        FUZZ_CHECK(had_out < PGF_MAX_WRITES);
        FUZZ_CHECK(S.stream && !was_over);
        w->accepted = 1;
        if (w->callbacks == 0)
            S.writes_out++;
    } else {
        FUZZ_CHECK(w->callbacks == 0);
        if (t)
            FUZZ_CHECK(t->released == 1); /* refused: released at once */
    }
}

static void op_finish(void) {
    size_t len;
    const uint8_t *msg = fuzz_slice(S.in, 24, &len);
    int code = (int)(int8_t)fuzz_byte(S.in);
    S.finishing = 1;
    int rc = pgf_call_finish(S.call, code, (const char *)msg, len);
    S.finishing = 0;
    FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE : PGF_OK));
    if (rc == PGF_OK) {
        S.finished = 1;
        S.cancel_armed = 0;
        FUZZ_CHECK(S.reads_out == 0); /* finish completes a read */
        FUZZ_CHECK(pgf_call_is_finished(S.call));
        int expect = (code < 0 || code > 16) ? PGF_STATUS_UNKNOWN : code;
        FUZZ_CHECK(pgf_call_status(S.call) == expect);
        size_t got;
        const char *m = pgf_call_status_message(S.call, &got);
        FUZZ_CHECK(got == len && memcmp(m, msg, len) == 0 && m[len] == '\0');
        FUZZ_CHECK(S.done_calls == (S.dispatched ? 1 : 0));
        FUZZ_CHECK(pgf_call_initial_metadata_ready(S.call));
    }
}

static void op_set_response(void) {
    size_t len;
    const uint8_t *p = fuzz_slice(S.in, 16, &len);
    token *t = new_token();
    int rc = pgf_call_set_response(S.call, p, len, t ? token_release : NULL, t);
    FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE : PGF_OK));
    if (rc != PGF_OK && t)
        FUZZ_CHECK(t->released == 1);
    if (rc == PGF_OK) {
        const uint8_t *d;
        size_t n;
        pgf_call_response(S.call, &d, &n);
        FUZZ_CHECK(d == p && n == len);
    }
}

static void op_take_response(void) {
    const uint8_t *d;
    size_t n;
    pgf_release_fn release;
    void *ctx;
    FUZZ_CHECK(pgf_call_take_response(S.call, &d, &n, &release, &ctx) == PGF_OK);
    if (release) {
        FUZZ_CHECK(S.ntaken < MAX_OPS);
        S.taken_release[S.ntaken] = release;
        S.taken_ctx[S.ntaken++] = ctx;
    }
    pgf_call_response(S.call, &d, &n);
    FUZZ_CHECK(d == NULL && n == 0);
}

static void host_release_one(void) {
    if (S.ntaken == 0)
        return;
    S.ntaken--;
    S.taken_release[S.ntaken](S.taken_ctx[S.ntaken]);
}

static void op_metadata(int which) {
    size_t kn, vn;
    const uint8_t *k = fuzz_slice(S.in, 12, &kn);
    const uint8_t *v = fuzz_slice(S.in, 12, &vn);
    int ok = pgf_metadata_validate((const char *)k, kn, v, vn) == PGF_OK;
    int rc;
    switch (which) {
    case 0:
        rc = pgf_call_add_request_metadata(S.call, (const char *)k, kn, v, vn);
        FUZZ_CHECK(rc == PGF_OK || rc == PGF_EINVAL || rc == PGF_ESTATE);
        break;
    case 1: {
        int frozen = pgf_call_initial_metadata_ready(S.call) || S.finished;
        size_t w = fuzz_md_wire(k, kn, vn);
        int fits = S.init_wire + w <= PGF_MAX_RESPONSE_METADATA;
        rc = pgf_call_add_initial_metadata(S.call, (const char *)k, kn, v, vn);
        FUZZ_CHECK(rc == (!ok       ? PGF_EMETADATA
                          : frozen  ? PGF_ESTATE
                          : !fits   ? PGF_EMETADATA
                                    : PGF_OK));
        if (rc == PGF_OK)
            S.init_wire += w;
        break;
    }
    default: {
        size_t w = fuzz_md_wire(k, kn, vn);
        int fits = S.trail_wire + fuzz_details_wire(S.details_len) + w <=
                   PGF_MAX_RESPONSE_METADATA;
        rc = pgf_call_add_trailing_metadata(S.call, (const char *)k, kn, v, vn);
        FUZZ_CHECK(rc == (!ok          ? PGF_EMETADATA
                          : S.finished ? PGF_ESTATE
                          : !fits      ? PGF_EMETADATA
                                       : PGF_OK));
        if (rc == PGF_OK)
            S.trail_wire += w;
        break;
    }
    }
}

static void op_set_request(int as_message) {
    int rc;
    if (as_message) {
        pgf_message *m = new_message();
        rc = pgf_call_set_request_message(S.call, m);
    } else {
        size_t len;
        const uint8_t *p = fuzz_slice(S.in, 16, &len);
        rc = pgf_call_set_request(S.call, p, len);
    }
    FUZZ_CHECK(rc == (S.dispatched ? PGF_ESTATE : PGF_OK));
}

static void op_getters(void) {
    const uint8_t *d;
    size_t n;
    pgf_call_request(S.call, &d, &n);
    pgf_call_request(S.call, NULL, NULL);
    pgf_message *m = pgf_call_request_message(S.call);
    if (m) {
        size_t mn;
        FUZZ_CHECK(pgf_message_data(m, &mn) == d && mn == n);
        pgf_message_unref(m);
    }
    pgf_call_status_details(S.call, &d, &n);
    (void)pgf_call_peer(S.call, &n);
    (void)pgf_call_deadline(S.call);
    (void)pgf_call_is_cancelled(S.call);
    (void)pgf_call_compress_response(S.call);
    const pgf_metadata *md = pgf_call_request_metadata(S.call);
    for (size_t i = 0; i < pgf_metadata_count(md); i++) {
        const char *k;
        size_t kn;
        FUZZ_CHECK(pgf_metadata_get(md, i, &k, &kn, NULL, NULL) == PGF_OK);
        FUZZ_CHECK(k[kn] == '\0');
    }
    /* Kept request messages are still whole. */
    for (size_t i = 0; i < S.nkept; i++)
        (void)pgf_message_data(S.kept[i], &n);
}

static void step(uint8_t op) {
    switch (op % 30) {
    case 0: op_set_request(0); break;
    case 1: op_set_request(1); break;
    case 2: op_metadata(0); break;
    case 3: {
        int rc = pgf_call_set_stream(S.call, host_events, &S);
        FUZZ_CHECK(rc == (S.dispatched ? PGF_ESTATE : PGF_OK));
        if (rc == PGF_OK)
            S.stream = 1;
        break;
    }
    case 4: case 5: op_read(); break;
    case 6: op_read_wait(); break;
    case 7: {
        pgf_message *m = (fuzz_byte(S.in) & 3) ? new_message() : NULL;
        int out = S.reads_out;
        int rc = PGF_EWOULDBLOCK;
        if (fuzz_byte(S.in) & 1) {
            /* Refused only with a read outstanding whose callback may
             * block (the fuzzer's own, of a handler not nonblocking);
             * m is still ours then. */
            rc = pgf_call_push_request_nonblocking(S.call, m);
            if (rc == PGF_EWOULDBLOCK)
                FUZZ_CHECK(out == 1 && S.reads_out == 1 &&
                           !pgf_call_nonblocking(S.call));
        }
        if (rc == PGF_EWOULDBLOCK)
            rc = pgf_call_push_request(S.call, m);
        FUZZ_CHECK(rc == PGF_OK || rc == PGF_ESTATE);
        if (rc == PGF_OK)
            FUZZ_CHECK(out == 1 && S.reads_out == 0);
        break;
    }
    case 8: op_write(1, 0); break;
    case 9: op_write(0, 0); break;
    case 10: op_write(fuzz_byte(S.in) & 1, 1); break;
    case 11: host_take_write(); break;
    case 12: host_write_done(fuzz_byte(S.in) & 1); break;
    case 13:
        pgf_call_cancel(S.call);
        if (!S.finished) {
            S.cancelled = 1;
            FUZZ_CHECK(S.reads_out == 0); /* cancel completes a read */
            FUZZ_CHECK(pgf_call_is_cancelled(S.call));
            FUZZ_CHECK(!S.cancel_armed);
        }
        break;
    case 14: op_finish(); break;
    case 15: op_set_response(); break;
    case 16: op_take_response(); break;
    case 17: {
        int rc = pgf_call_reset_response(S.call);
        FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE : PGF_OK));
        if (rc == PGF_OK) {
            if (!pgf_call_initial_metadata_ready(S.call))
                S.init_wire = 0; /* else it is on its way already */
            S.trail_wire = S.details_len = 0;
        }
        break;
    }
    case 18: {
        int remove = fuzz_byte(S.in) % 4 == 0;
        int before = S.cancel_calls;
        if (!remove && !S.finished)
            S.cancel_armed = 1;
        int rc = pgf_call_on_cancel(S.call, remove ? NULL : on_cancel, &S);
        FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE : PGF_OK));
        if (remove || rc != PGF_OK)
            S.cancel_armed = 0;
        if (S.cancelled && !remove && rc == PGF_OK)
            FUZZ_CHECK(S.cancel_calls == before + 1); /* ran at once */
        break;
    }
    case 19:
        if (S.extra_refs < 8) {
            FUZZ_CHECK(pgf_call_ref(S.call) == S.call);
            S.extra_refs++;
        }
        break;
    case 20:
        if (S.extra_refs > 0) {
            pgf_call_unref(S.call);
            S.extra_refs--;
        }
        break;
    case 21:
        FUZZ_CHECK(pgf_call_send_initial_metadata(S.call) == PGF_OK);
        FUZZ_CHECK(pgf_call_initial_metadata_ready(S.call));
        break;
    case 22: op_metadata(1); break;
    case 23: op_metadata(2); break;
    case 24: {
        pgf_registry *reg = pgf_registry_new();
        FUZZ_CHECK(reg != NULL);
        uint8_t how = fuzz_byte(S.in);
        int known = how & 1;
        int flag = (how & 2) ? PGF_FLAG_NONBLOCKING : 0;
        if (known)
            FUZZ_CHECK(pgf_registry_register(reg, "fuzz.Call", 9, NULL, 0,
                                             PGF_KIND_BIDI_STREAMING | flag,
                                             handler, &S, NULL) == PGF_OK);
        S.finishing = 1;
        int rc = (how & 4) ? pgf_dispatch_nonblocking(reg, S.call, on_done, NULL)
                           : pgf_dispatch_async(reg, S.call, on_done, NULL);
        S.finishing = 0;
        if ((how & 4) && known && !flag) {
            FUZZ_CHECK(rc == PGF_EWOULDBLOCK); /* a blocking handler */
        } else if (S.dispatched || S.finished) {
            FUZZ_CHECK(rc == PGF_ESTATE);
        } else {
            FUZZ_CHECK(rc == PGF_OK);
            S.dispatched = 1;
            FUZZ_CHECK(pgf_call_nonblocking(S.call) == (known && flag));
            if (!known) {
                /* Finished at once with UNIMPLEMENTED. */
                S.finished = 1;
                S.cancel_armed = 0;
                FUZZ_CHECK(pgf_call_status(S.call) == PGF_STATUS_UNIMPLEMENTED);
                FUZZ_CHECK(S.done_calls == 1);
            }
        }
        pgf_registry_free(reg); /* calls in flight keep the handler */
        break;
    }
    case 25: host_release_one(); break;
    case 26:
        if (S.nkept)
            pgf_message_unref(S.kept[--S.nkept]);
        break;
    case 27: S.inline_host = !S.inline_host; break;
    case 28: {
        size_t len;
        const uint8_t *p = fuzz_slice(S.in, 16, &len);
        int fits = S.trail_wire + fuzz_details_wire(len) <=
                   PGF_MAX_RESPONSE_METADATA;
        int rc = pgf_call_set_status_details(S.call, p, len);
        FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE
                          : !fits    ? PGF_EMETADATA
                                     : PGF_OK));
        if (rc == PGF_OK)
            S.details_len = len;
        rc = pgf_call_set_peer(S.call, (const char *)p, len);
        FUZZ_CHECK(rc == (S.dispatched ? PGF_ESTATE : PGF_OK));
        rc = pgf_call_set_deadline(S.call, (int64_t)len << 40);
        FUZZ_CHECK(rc == (S.dispatched ? PGF_ESTATE : PGF_OK));
        rc = pgf_call_set_compress_response(S.call, (int)len);
        FUZZ_CHECK(rc == (S.finished ? PGF_ESTATE : PGF_OK));
        break;
    }
    default: op_getters(); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t base[FUZZ_LIVE_KINDS];
    fuzz_live_snapshot(base);
    fuzz_input in = {data, size, 0};
    memset(&S, 0, sizeof(S));
    S.in = &in;
    S.call = pgf_call_new("/fuzz.Call/Run", 14);
    FUZZ_CHECK(S.call != NULL);

    for (int ops = 0; !fuzz_done(&in) && ops < MAX_OPS; ops++)
        step(fuzz_byte(&in));

    /* The end: the handler finishes, the host completes what it took,
     * releases what it holds and drops every reference. */
    S.inline_host = 0;
    S.teardown = 1;
    if (S.dispatched && !S.finished) {
        FUZZ_CHECK(pgf_call_finish(S.call, PGF_STATUS_OK, NULL, 0) == PGF_OK);
        S.finished = 1;
    }
    FUZZ_CHECK(S.done_calls == (S.dispatched ? 1 : 0));
    FUZZ_CHECK(S.reads_out == 0 || !S.finished);
    if (S.write_taken)
        host_write_done(1);
    host_take_write(); /* a write queued just before the finish */
    if (S.write_taken)
        host_write_done(0);
    while (S.ntaken)
        host_release_one();
    for (; S.handler_refs > 0; S.handler_refs--)
        pgf_call_unref(S.call);
    for (; S.extra_refs > 0; S.extra_refs--)
        pgf_call_unref(S.call);
    pgf_call_unref(S.call); /* the host's: frees the call */
    while (S.nkept)
        pgf_message_unref(S.kept[--S.nkept]);

    for (size_t i = 0; i < S.nreads; i++)
        FUZZ_CHECK(S.reads[i].callbacks == S.reads[i].accepted);
    for (size_t i = 0; i < S.nwrites; i++)
        FUZZ_CHECK(S.writes[i].callbacks == S.writes[i].accepted);
    for (size_t i = 0; i < S.ntokens; i++)
        FUZZ_CHECK(S.tokens[i].released == 1);
    fuzz_check_live(base);
    return 0;
}
