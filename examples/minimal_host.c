/* A minimal C host: runs a Python handler through the pygrpc_ffi C ABI.
 *   cc -Icsrc examples/minimal_host.c -Lpygrpc_ffi -lpygrpc_ffi \
 *      -Wl,-rpath,$PWD/pygrpc_ffi -o build/minimal_host && build/minimal_host */
#include <stdio.h>
#include <string.h>

#include "pygrpc_ffi.h"

int main(void) {
    /* Python is loaded at run time; the module registers its handlers. */
    if (pgf_python_start(".venv", ".") != PGF_OK ||
        pgf_python_import("examples.greeter") != PGF_OK) {
        fprintf(stderr, "python: %s\n", pgf_python_error());
        return 1;
    }
    const char *path = "/demo.Greeter/SayHello";
    pgf_call *call = pgf_call_new(path, strlen(path));
    pgf_call_set_request(call, (const uint8_t *)"C host", 6); /* borrowed */
    pgf_dispatch(pgf_default_registry(), call); /* any thread may do this */

    const uint8_t *data;
    size_t len;
    pgf_release_fn release;
    void *ctx;
    pgf_call_take_response(call, &data, &len, &release, &ctx); /* no copy */
    printf("status %d: %.*s\n", pgf_call_status(call), (int)len, (const char *)data);
    if (release)
        release(ctx); /* done sending: hand the bytes back */
    pgf_call_unref(call);
    return pgf_python_stop() == PGF_OK ? 0 : 1;
}
