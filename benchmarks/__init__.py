"""Reproducible performance scripts, one per measured claim: ``python -m benchmarks.bench_<topic>``."""
