"""keras-multilevel: multilevel optimization for Keras 3 models.

The public API is flat::

    import keras_multilevel as kml
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.1)),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20)          # one V-cycle per batch
    print(model.optimizer.hierarchy)    # the levels, PyAMG style

The V-cycles run on the TensorFlow backend (the default). Under another Keras
backend (``KERAS_BACKEND=jax``, ...) the data sets (``kml.datasets``, plain
``tf.data``) and the zoo (``kml.zoo.load``, plain Keras models) work; the
optimizer, hierarchies, layers and model builders say that they need TensorFlow.
"""

from keras_multilevel import _env  # noqa: F401  (must run before TensorFlow is imported)

import keras  # noqa: E402

from keras_multilevel import datasets, zoo  # noqa: E402

__version__ = "0.1.0"

_TENSORFLOW_ONLY = (
    "ConvResidualStack", "CycleSteps", "DenseResidualStack", "Hierarchy", "MultilevelOptimizer", "MultilevelSolver",
    "hierarchy", "layers", "models", "optimizers",
)

if keras.backend.backend() == "tensorflow":
    from keras_multilevel import _keras_hooks, hierarchy, layers, models, optimizers
    from keras_multilevel.hierarchy import Hierarchy
    from keras_multilevel.layers import ConvResidualStack, DenseResidualStack
    from keras_multilevel.optimizers import CycleSteps, MultilevelOptimizer, MultilevelSolver

    _keras_hooks.install()
else:

    def __getattr__(name):
        if name in _TENSORFLOW_ONLY:
            raise ImportError(
                f"kml.{name} needs Keras' TensorFlow backend (the V-cycle is TensorFlow code), but Keras runs on "
                f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before the first `import keras`. "
                "kml.datasets and kml.zoo work on any backend."
            )
        raise AttributeError(f"module 'keras_multilevel' has no attribute {name!r}")
