"""A realistic synthetic archive for tests and benchmarks (`python -m pipeline generate`);
not on the run's path."""
