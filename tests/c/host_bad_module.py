"""Imported by tests/c/test_embed_host.c: a module that fails at import, whose
error the host must get back from pgf_python_import without crashing."""

raise RuntimeError("host_bad_module refuses to load")
