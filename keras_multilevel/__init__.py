"""keras-multilevel: multilevel optimization for Keras 3 models.

The public API is flat::

    import keras_multilevel as kml
    model.compile(optimizer=kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.1)),
                  loss="mse")
"""

from keras_multilevel import _env  # noqa: F401  (must run before TensorFlow is imported)

__version__ = "0.1.0"
