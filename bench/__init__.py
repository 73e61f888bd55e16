"""Benchmarks: ``python -m bench.<name>``; each writes ``bench/results/<name>.json``.

Figures are ratios against a peer or a limit measured in the same run on the same
machine, never absolute timings asserted in tests.
"""
