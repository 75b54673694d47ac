"""The benchmark scripts, importable as modules (``benchmarks.layers``,
``benchmarks.parts``, ``benchmarks.decomposition_speed``, ``benchmarks.references``,
``benchmarks.gpu``).

Run them from the repository root as ``python -m benchmarks.<name>``;
``python benchmarks/<name>.py`` works too. They are not part of the installed
``fastconv`` package.
"""
