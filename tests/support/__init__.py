"""Helpers shared by the tests and the benchmarks (``bench/`` imports them on purpose).

Nothing here is a test: the modules are named for what they provide (a broker, a
gateway subprocess, fake clocks), so pytest never collects them.
"""
