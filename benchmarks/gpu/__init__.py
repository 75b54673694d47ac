"""The prepared GPU run (``run.sh``, ``make bench-gpu``) and its CPU rehearsal.

See docs/benchmarks.md, "On a GPU".
"""
