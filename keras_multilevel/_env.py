"""Process set-up done once, before TensorFlow or Keras is imported.

Selects the TensorFlow backend and keeps TensorFlow's C++ start-up logging
(absl's "All log messages before absl::InitializeLog()" and the oneDNN
notice, which no environment variable silences) out of users' faces. Both
are defaults: a user's own environment wins. TensorFlow is imported under
every backend: the data sets are ``tf.data`` pipelines.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    """Imports TensorFlow with the C-level stderr silenced (Python errors still raise)."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()
