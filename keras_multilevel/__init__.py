"""keras-multilevel: multilevel optimization for Keras 3 models.

The public API is flat::

    import keras_multilevel as kml
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.1)),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20)          # one V-cycle per batch
    print(model.optimizer.hierarchy)    # the levels, PyAMG style
"""

from keras_multilevel import _env  # noqa: F401  (must run before TensorFlow is imported)
from keras_multilevel import _keras_hooks, datasets, hierarchy, layers, models, optimizers, zoo
from keras_multilevel.hierarchy import Hierarchy
from keras_multilevel.layers import ConvResidualStack, DenseResidualStack
from keras_multilevel.optimizers import CycleSteps, MultilevelOptimizer

_keras_hooks.install()

__version__ = "0.1.0"
