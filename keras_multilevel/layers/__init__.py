"""Coarsenable Keras layers."""

from keras_multilevel.layers.residual import ConvResidualStack, DenseResidualStack, ResidualStack
