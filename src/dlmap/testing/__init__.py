"""Helpers for tests and benchmarks that patch third-party internals or build
fakes (random prior weights, a fake experiment); never used by the science code."""
