/* Starting an embedded Python interpreter for hosts that do not link it.
 *
 * libpython is loaded with dlopen and used through a handful of symbols,
 * so neither the host nor this library depends on Python at link time, and
 * a Python process that imports pygrpc_ffi loads no second interpreter. */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#ifndef PGF_LIBPYTHON
#define PGF_LIBPYTHON "libpython3.so"
#endif
#ifndef PGF_PYTHON_EXE
#define PGF_PYTHON_EXE ""
#endif

typedef struct PyObject PyObject;
typedef struct PyThreadState PyThreadState;

#define PY_FILE_INPUT 257

static struct {
    int (*Py_IsInitialized)(void);
    void (*Py_InitializeEx)(int);
    int (*Py_FinalizeEx)(void);
    void (*Py_SetProgramName)(const wchar_t *);
    wchar_t *(*Py_DecodeLocale)(const char *, size_t *);
    PyThreadState *(*PyEval_SaveThread)(void);
    void (*PyEval_RestoreThread)(PyThreadState *);
    int (*PyGILState_Ensure)(void);
    void (*PyGILState_Release)(int);
    PyObject *(*PyRun_StringFlags)(const char *, int, PyObject *, PyObject *,
                                   void *);
    PyObject *(*PyDict_New)(void);
    int (*PyDict_SetItemString)(PyObject *, const char *, PyObject *);
    PyObject *(*PyDict_GetItemString)(PyObject *, const char *);
    PyObject *(*PyEval_GetBuiltins)(void);
    PyObject *(*PyUnicode_FromString)(const char *);
    const char *(*PyUnicode_AsUTF8)(PyObject *);
    void (*Py_DecRef)(PyObject *);
    void (*PyErr_Print)(void);
} py;

static pthread_mutex_t embed_lock = PTHREAD_MUTEX_INITIALIZER;
static int symbols_loaded;
static int started_here;        /* this library initialized Python */
static PyThreadState *main_state;
static pthread_t start_thread;
static __thread char error_text[2048];

static int fail(int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof(error_text), fmt, ap);
    va_end(ap);
    return rc;
}

const char *pgf_python_error(void) { return error_text; }

/* Reads `key = value` from VENV/pyvenv.cfg into out; 1 if found. */
static int venv_cfg(const char *venv, const char *key, char *out, size_t n) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/pyvenv.cfg", venv) >= (int)sizeof(path))
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    size_t klen = strlen(key);
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, key, klen) != 0)
            continue;
        p += klen;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p++ != '=')
            continue;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strcspn(p, "\r\n");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0 && len < n) {
            memcpy(out, p, len);
            out[len] = '\0';
            found = 1;
        }
    }
    fclose(f);
    return found;
}

/* The venv this library is installed in, when it is: pip puts it at
 * VENV/lib/pythonX.Y/site-packages/pygrpc_ffi/libpygrpc_ffi.so. */
static int own_venv(char *out, size_t n) {
    Dl_info info;
    if (dladdr((const void *)&embed_lock, &info) == 0 || info.dli_fname == NULL)
        return 0;
    char path[4096];
    if (snprintf(path, sizeof(path), "%s", info.dli_fname) >= (int)sizeof(path))
        return 0;
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(path, '/');
        if (slash == NULL || slash == path)
            return 0;
        *slash = '\0';
    }
    char cfg[64];
    if (!venv_cfg(path, "home", cfg, sizeof(cfg)) && !venv_cfg(path, "version", cfg, sizeof(cfg)))
        return 0;
    if (strlen(path) >= n)
        return 0;
    memcpy(out, path, strlen(path) + 1);
    return 1;
}

/* Appends one tried path to a ", "-separated list (cut if it is long). */
static void note_tried(char *tried, size_t n, const char *path) {
    size_t used = strlen(tried); /* < n */
    if (used > 0 && used + 2 < n) {
        memcpy(tried + used, ", ", 2);
        used += 2;
    }
    size_t len = strlen(path);
    if (len > n - 1 - used)
        len = n - 1 - used;
    memcpy(tried + used, path, len);
    tried[used + len] = '\0';
}

/* Loads libpython, first found of: $PGF_LIBPYTHON; the one of VENV's base
 * interpreter (pyvenv.cfg's `home` and `version`), in HOME/../lib or on the
 * loader's path; the build's default (PGF_LIBPYTHON). */
static void *open_libpython(const char *venv, char *tried, size_t n) {
    const char *path = getenv("PGF_LIBPYTHON");
    if (path != NULL && *path != '\0') {
        snprintf(tried, n, "%s", path);
        return dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    }
    tried[0] = '\0';
    char home[4096], version[64];
    int major, minor;
    if (venv != NULL && *venv != '\0' && venv_cfg(venv, "home", home, sizeof(home)) &&
        (venv_cfg(venv, "version", version, sizeof(version)) ||
         venv_cfg(venv, "version_info", version, sizeof(version))) &&
        sscanf(version, "%d.%d", &major, &minor) == 2) {
        const char *patterns[] = {"%s/../lib/libpython%d.%d.so.1.0",
                                  "%s/../lib/libpython%d.%d.so", NULL};
        char candidate[4300];
        for (int i = 0; patterns[i]; i++) {
            snprintf(candidate, sizeof(candidate), patterns[i], home, major, minor);
            note_tried(tried, n, candidate);
            void *lib = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL);
            if (lib)
                return lib;
        }
        snprintf(candidate, sizeof(candidate), "libpython%d.%d.so.1.0", major, minor);
        note_tried(tried, n, candidate);
        void *lib = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL);
        if (lib)
            return lib;
    }
    note_tried(tried, n, PGF_LIBPYTHON);
    return dlopen(PGF_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL);
}

static int load_symbols(const char *venv) {
    if (symbols_loaded)
        return PGF_OK;
    void *lib = RTLD_DEFAULT;
    /* A Python process (or a host linking libpython) already has them. */
    if (dlsym(RTLD_DEFAULT, "Py_IsInitialized") == NULL) {
        char tried[1024];
        lib = open_libpython(venv, tried, sizeof(tried));
        if (lib == NULL)
            return fail(PGF_EPYTHON, "cannot load libpython (tried %s; set PGF_LIBPYTHON): %s",
                        tried, dlerror());
    }
#define LOAD(name)                                                      \
    do {                                                                \
        *(void **)(&py.name) = dlsym(lib, #name);                       \
        if (py.name == NULL)                                            \
            return fail(PGF_EPYTHON, "libpython lacks %s", #name);      \
    } while (0)
    LOAD(Py_IsInitialized);
    LOAD(Py_InitializeEx);
    LOAD(Py_FinalizeEx);
    LOAD(Py_SetProgramName);
    LOAD(Py_DecodeLocale);
    LOAD(PyEval_SaveThread);
    LOAD(PyEval_RestoreThread);
    LOAD(PyGILState_Ensure);
    LOAD(PyGILState_Release);
    LOAD(PyRun_StringFlags);
    LOAD(PyDict_New);
    LOAD(PyDict_SetItemString);
    LOAD(PyDict_GetItemString);
    LOAD(PyEval_GetBuiltins);
    LOAD(PyUnicode_FromString);
    LOAD(PyUnicode_AsUTF8);
    LOAD(Py_DecRef);
    LOAD(PyErr_Print);
#undef LOAD
    symbols_loaded = 1;
    return PGF_OK;
}

/* Runs code with the GIL held; its string arguments are bound to the names
 * arg0 and arg1.  The code reports failure by setting `error` to a str. */
static int run(const char *code, const char *arg0, const char *arg1) {
    int rc = PGF_OK;
    int gil = py.PyGILState_Ensure();
    PyObject *globals = py.PyDict_New();
    PyObject *a0 = py.PyUnicode_FromString(arg0 ? arg0 : "");
    PyObject *a1 = py.PyUnicode_FromString(arg1 ? arg1 : "");
    if (globals == NULL || a0 == NULL || a1 == NULL ||
        py.PyDict_SetItemString(globals, "__builtins__",
                                py.PyEval_GetBuiltins()) != 0 ||
        py.PyDict_SetItemString(globals, "arg0", a0) != 0 ||
        py.PyDict_SetItemString(globals, "arg1", a1) != 0) {
        py.PyErr_Print();
        rc = fail(PGF_EPYTHON, "out of memory in the interpreter");
        goto out;
    }
    PyObject *result = py.PyRun_StringFlags(code, PY_FILE_INPUT, globals,
                                            globals, NULL);
    if (result == NULL) {
        py.PyErr_Print();
        rc = fail(PGF_EPYTHON, "internal error running start-up code");
        goto out;
    }
    py.Py_DecRef(result);
    PyObject *err = py.PyDict_GetItemString(globals, "error"); /* borrowed */
    if (err) {
        const char *text = py.PyUnicode_AsUTF8(err);
        rc = fail(PGF_EPYTHON, "%s", text ? text : "unknown Python error");
    }
out:
    if (a0)
        py.Py_DecRef(a0);
    if (a1)
        py.Py_DecRef(a1);
    if (globals)
        py.Py_DecRef(globals);
    py.PyGILState_Release(gil);
    return rc;
}

static const char setup_paths[] =
    "import os, site, sys\n"
    "try:\n"
    "    if arg0:\n"
    "        lib = 'python%d.%d' % sys.version_info[:2]\n"
    "        sp = os.path.join(arg0, 'lib', lib, 'site-packages')\n"
    "        if not os.path.isdir(sp):\n"
    "            raise FileNotFoundError('no site-packages in venv ' + arg0)\n"
    "        site.addsitedir(sp)\n"
    "    extra = [p for p in arg1.split(':') if p]\n"
    "    sys.path[0:0] = [p for p in extra if p not in sys.path]\n"
    "except BaseException as exc:\n"
    "    error = '%s: %s' % (type(exc).__name__, exc)\n";

static const char import_module[] =
    "import importlib, logging\n"
    "try:\n"
    "    importlib.import_module(arg0)\n"
    "except BaseException as exc:\n"
    "    logging.getLogger('pygrpc_ffi').exception('importing %s', arg0)\n"
    "    error = 'cannot import %s: %s: %s' % (arg0, type(exc).__name__,"
    " exc)\n";

/* Lets Python code release what the registry holds while it can still run. */
static const char shutdown_package[] =
    "import sys\n"
    "m = sys.modules.get('pygrpc_ffi._runtime')\n"
    "if m is not None:\n"
    "    m.shutdown()\n";

int pgf_python_start(const char *venv, const char *sys_path) {
    pthread_mutex_lock(&embed_lock);
    error_text[0] = '\0';
    /* No venv given: the one this library is installed in, if any. */
    static char default_venv[4096];
    if ((venv == NULL || *venv == '\0') && PGF_PYTHON_EXE[0] == '\0' &&
        own_venv(default_venv, sizeof(default_venv)))
        venv = default_venv;
    int rc = load_symbols(venv);
    if (rc != PGF_OK)
        goto out;
    if (!py.Py_IsInitialized()) {
        /* The program name decides sys.prefix: a venv's python makes the
         * interpreter find the venv, the build's python finds the stdlib. */
        char exe[4096];
        if (venv && *venv)
            snprintf(exe, sizeof(exe), "%s/bin/python3", venv);
        else
            snprintf(exe, sizeof(exe), "%s", PGF_PYTHON_EXE);
        if (exe[0]) {
            /* Kept for the interpreter's lifetime, as it requires. */
            static wchar_t *program;
            program = py.Py_DecodeLocale(exe, NULL);
            if (program)
                py.Py_SetProgramName(program);
        }
        py.Py_InitializeEx(0); /* the host keeps its signal handlers */
        main_state = py.PyEval_SaveThread();
        start_thread = pthread_self();
        started_here = 1;
    }
    rc = run(setup_paths, venv, sys_path);
out:
    pthread_mutex_unlock(&embed_lock);
    return rc;
}

int pgf_python_import(const char *module) {
    error_text[0] = '\0';
    if (module == NULL || *module == '\0')
        return fail(PGF_EINVAL, "no module name given");
    pthread_mutex_lock(&embed_lock);
    int ready = symbols_loaded && py.Py_IsInitialized();
    pthread_mutex_unlock(&embed_lock);
    if (!ready)
        return fail(PGF_ESTATE, "Python is not started: call pgf_python_start");
    return run(import_module, module, NULL);
}

int pgf_python_stop(void) {
    error_text[0] = '\0';
    pthread_mutex_lock(&embed_lock);
    int rc = PGF_OK;
    if (!started_here) {
        rc = fail(PGF_ESTATE, "Python was not started by pgf_python_start");
    } else if (!pthread_equal(start_thread, pthread_self())) {
        rc = fail(PGF_ESTATE, "pgf_python_stop must run on the start thread");
    } else {
        run(shutdown_package, NULL, NULL);
        py.PyEval_RestoreThread(main_state);
        if (py.Py_FinalizeEx() != 0)
            rc = fail(PGF_EPYTHON, "errors while finalizing Python");
        started_here = 0;
        main_state = NULL;
    }
    pthread_mutex_unlock(&embed_lock);
    return rc;
}
