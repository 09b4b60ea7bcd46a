"""Benchmarks: ``python -m tests.bench`` (or ``make bench``). Not collected by pytest.

Every figure is printed as a ratio against a baseline measured in the same run on
the same machine, so a noisy shared box still gives comparable numbers.
"""
