"""Benchmarks: this project's detection measured against the straightforward published procedure.

Run ``python -m benchmarks.run`` from the repository root; see ``benchmarks/README.md``.
Timings live here only, never in unit tests (``tests/test_benchmarks.py`` runs every case
once on a tiny model so that this code cannot rot).
"""
