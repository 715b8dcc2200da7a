"""``python -m keras_multilevel.cli``: the ``keras-multilevel`` command."""

import sys

from keras_multilevel.cli import main

sys.exit(main())
