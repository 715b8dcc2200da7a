"""``python -m keras_multilevel_cli``: the ``keras-multilevel`` command."""

import sys

from keras_multilevel_cli import main

sys.exit(main())
