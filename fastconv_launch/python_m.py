"""``python -m fastconv.cli``: the KERAS_BACKEND check before Keras starts.

Python imports the package ``fastconv``, which imports Keras, before any code
of ``fastconv.cli`` runs, so ``fastconv/__init__.py`` imports this module
first. While Python looks for the module that ``-m`` names, ``sys.argv[0]``
is ``"-m"`` and ``sys.orig_argv`` holds the module's name: only then, and only
for ``fastconv.cli``, a KERAS_BACKEND that Keras cannot start on ends the
process here with the console script's one-line error and exit code 2.
``import fastconv`` from a program is unchanged.
"""

import sys

from fastconv_launch import refuse_unusable_backend

if sys.argv[:1] == ["-m"] and "fastconv.cli" in sys.orig_argv:
    if refuse_unusable_backend():
        raise SystemExit(2)
