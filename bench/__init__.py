"""pygrpc_ffi benchmarks: ``bash bench/run.sh`` (see docs/benchmarks.md)."""
