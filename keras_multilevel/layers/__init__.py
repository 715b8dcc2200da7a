"""Coarsenable Keras layers, and the input transform :class:`LogCoefficient`."""

from keras_multilevel.layers.residual import ConvResidualStack, DenseResidualStack, ResidualStack
from keras_multilevel.layers.transforms import LogCoefficient
