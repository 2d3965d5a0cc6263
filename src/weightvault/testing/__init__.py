"""Tooling for tests and benchmarks (throwaway servers); never imported by runtime code."""
