"""Benchmarks: what claude-wrap costs against the real binary (run them with bench/run)."""
