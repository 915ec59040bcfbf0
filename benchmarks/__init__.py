"""Benchmarks: run apart from the tests; they print figures and ratios."""
