"""Process set-up done once, before TensorFlow or Keras is imported.

Selects the TensorFlow backend and keeps TensorFlow's C++ start-up logging
out of users' faces. Both are defaults: a user's own environment wins.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_multilevel runs on the TensorFlow backend, but Keras was started "
        f"with KERAS_BACKEND={keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow "
        "before the first `import keras`."
    )
