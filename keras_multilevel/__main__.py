"""``python -m keras_multilevel``: the ``keras-multilevel`` command (:mod:`keras_multilevel.cli`)."""

import sys

from keras_multilevel.cli import main

sys.exit(main())
