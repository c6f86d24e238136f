"""Benchmarks (`make bench`): side-by-side comparisons against the baselines the issues name.

Each benchmark is a module here with a `main() -> None` that prints its figures and ratios.
They measure; they never assert timing (the machines are noisy).
"""
