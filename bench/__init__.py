"""pygrpc_ffi benchmarks: ``bash bench/run.sh`` (see bench/README_SECTION.md)."""
