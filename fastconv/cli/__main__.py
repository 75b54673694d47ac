"""``python -m fastconv.cli``: the ``fastconv`` command, without the quiet start.

By the time this runs, ``import fastconv`` has imported TensorFlow, so its
start-up lines are already printed; the ``fastconv`` console script
(`fastconv_launch.main`) keeps them out. A KERAS_BACKEND that Keras cannot
start on was refused even earlier, by `fastconv_launch.python_m`.
"""

import sys

from fastconv.cli import main

sys.exit(main())
