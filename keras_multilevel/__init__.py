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

__version__ = "0.1.0"

# Names that cannot be had in this installation, with the reason: kml.<name> raises it.
_MISSING = {}

try:  # importing the data sets registers their TFDS builders: tfds.load("poisson/n48")
    from keras_multilevel import datasets  # noqa: E402
except ModuleNotFoundError as error:
    if error.name != "tensorflow_datasets":
        raise
    _MISSING["datasets"] = (
        "kml.datasets needs TensorFlow Datasets and FEniCSx, which this installation lacks: "
        "pip install 'keras-multilevel[datasets]'."
    )
from keras_multilevel import zoo  # noqa: E402

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
    for _name in _TENSORFLOW_ONLY:
        _MISSING[_name] = (
            f"kml.{_name} needs Keras' TensorFlow backend (the V-cycle is TensorFlow code), but Keras runs on "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before the first `import keras`. "
            "kml.datasets and kml.zoo work on any backend."
        )


def __getattr__(name):
    if name in _MISSING:
        error = ImportError(_MISSING[name])
        error.unavailable = True  # the command line prints it in one line (exit 69)
        raise error
    raise AttributeError(f"module 'keras_multilevel' has no attribute {name!r}")
