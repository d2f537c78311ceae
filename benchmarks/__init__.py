"""Benchmarks: ``python -m benchmarks [NAME ...] [--quick]`` runs them and rewrites BENCHMARKS.md."""
