"""Coarsenable residual stacks: a ResNet as forward Euler of an ODE.

Gaedke-Merzhäuser et al. (2021, eqs 3-8): a stack of
``K`` residual blocks

    y_{k+1} = y_k + h * sigma(W_k y_k + b_k),    h = T / K,    k = 0 .. K-1,

is the explicit Euler discretization of ``dy/dt = sigma(W(t) y + b(t))`` on
``[0, T]``. The parameters of all blocks are stacked along a leading axis of
length ``K`` (``kernel[k] = W_k``, ``bias[k] = b_k``), so coarsening in depth
is an operation on that axis (see :mod:`keras_multilevel.hierarchy`) and the
forward pass is one loop in the graph (``tf.scan``, a ``while`` loop with a
static trip count, which XLA compiles), not ``K`` layers. Each iteration of
the loop takes up to ``BLOCKS_PER_ITERATION`` blocks, unrolled: on a CPU the
per-iteration overhead of a graph loop dominates narrow blocks, and 16 blocks
per iteration made a 2,048-block step about 4x faster than one.

Inside :func:`shared_depth_traces` (which the multilevel optimizer enters
for its V-cycles) the loop is one traced ``tf.function`` shared by every
stack of the same kind, with the number of blocks left open: the levels of a
depth hierarchy (2,048, 1,024, ..., 16 blocks) then trace the loop and its
gradient once instead of once per level, which was half of the start-up time
of an 8-level V-cycle. XLA needs the number of blocks at compile time, so
the sharing is off under ``jit_compile=True``.
"""

import contextlib
import functools
import math
import threading

import keras
import tensorflow as tf
from keras import ops

BLOCKS_PER_ITERATION = 16

_sharing = threading.local()


@contextlib.contextmanager
def shared_depth_traces(enabled=True):
    """Inside a ``tf.function``, stacks that differ only in their number of blocks share one traced loop."""
    previous = getattr(_sharing, "enabled", False)
    _sharing.enabled = enabled
    try:
        yield
    finally:
        _sharing.enabled = previous


class ResidualStack(keras.layers.Layer):
    """Base class: ``blocks`` residual blocks sharing one stacked kernel and bias.

    Subclasses say what the linear map ``W_k`` is (``_kernel_shape`` and
    ``_linear``); everything else (time step, loop, config, initialization of
    the stacked weights) lives here.

    Args:
        blocks: number of residual blocks ``K`` (a positive integer).
        final_time: the final time ``T``; the time step is ``h = T / K``.
        activation: the activation ``sigma`` (Gaedke-Merzhäuser et al. (2021) use ReLU).
        kernel_initializer: initializer of one block's kernel. Variance-scaling
            initializers (Glorot, He, LeCun) use the fans of a single block, not
            of the stacked array.
        bias_initializer: initializer of the biases (Gaedke-Merzhäuser et al., 2021: zeros).
        kernel_regularizer, bias_regularizer: optional Keras regularizers of
            the stacked weights.
    """

    def __init__(
        self,
        blocks,
        final_time=1.0,
        activation="relu",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"`blocks` must be a positive integer, got {blocks!r}.")
        final_time = float(final_time)
        if not final_time > 0:
            raise ValueError(f"`final_time` must be positive, got {final_time!r}.")
        self.blocks = blocks
        self.final_time = final_time
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    @property
    def unroll(self):
        """Blocks per iteration of the forward loop, ``gcd(K, BLOCKS_PER_ITERATION)``."""
        return math.gcd(self.blocks, BLOCKS_PER_ITERATION)

    @property
    def step_size(self):
        """The time step ``h = T / K`` of the forward Euler scheme (Gaedke-Merzhäuser et al., 2021, eq 5)."""
        return self.final_time / self.blocks

    def _kernel_shape(self, input_shape):
        raise NotImplementedError

    @staticmethod
    def _linear(state, kernel):
        """The block's linear map ``W_k y`` (a function of the state and one block's kernel only)."""
        raise NotImplementedError

    def _block_initializer(self):
        initializer = self.kernel_initializer
        if isinstance(initializer, keras.initializers.VarianceScaling):
            # Keras counts the leading block axis into the fans of a stacked
            # array; scaling by K restores the variance of one block.
            initializer = keras.initializers.VarianceScaling(
                scale=initializer.scale * self.blocks,
                mode=initializer.mode,
                distribution=initializer.distribution,
                seed=initializer.seed,
            )
        return initializer

    def build(self, input_shape):
        width = input_shape[-1]
        if width is None:
            raise ValueError(
                f"{self.__class__.__name__} needs a known last dimension (the width), "
                f"got input shape {input_shape}."
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.blocks, *self._kernel_shape(input_shape)),
            initializer=self._block_initializer(),
            regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.blocks, width),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
        )

    def call(self, inputs):
        kernel = ops.cast(self.kernel.value, inputs.dtype)
        bias = ops.cast(self.bias.value, inputs.dtype)
        # The time step T / K follows the kernel's length: a coarser level's
        # weights standing in for these (one traced evaluation for every level
        # of a depth hierarchy) take twice the step with half the blocks.
        blocks = kernel.shape[0]
        if blocks is None:
            step_size = self.final_time / ops.cast(ops.shape(kernel)[0], inputs.dtype)
            unroll = self.unroll  # the same on every level sharing the evaluation (DepthCoarsening.trace_key)
        else:
            step_size = ops.convert_to_tensor(self.final_time / blocks, dtype=inputs.dtype)
            unroll = math.gcd(blocks, BLOCKS_PER_ITERATION)  # self.unroll, or a substituted level's
        if not (tf.inside_function() and getattr(_sharing, "enabled", False)):
            return _euler(self._linear, self.activation, unroll, inputs, kernel, bias, step_size)
        # What fixes the traced loop: the block's map, its activation, ``unroll``, every shape but ``K``.
        key = (self._linear, self.activation, unroll, inputs.dtype.name, tuple(inputs.shape), tuple(kernel.shape[1:]))
        return _traced_euler(*key)(inputs, kernel, bias, step_size)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            blocks=self.blocks,
            final_time=self.final_time,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config


def _euler(linear, activation, unroll, inputs, kernel, bias, step_size):
    """``K`` forward Euler steps ``y <- y + h sigma(W_k y + b_k)``, ``unroll`` per loop iteration (Gaedke-Merzhäuser et al., 2021, eq 5)."""
    kernels = tf.reshape(kernel, (-1, unroll, *kernel.shape[1:]))
    biases = tf.reshape(bias, (-1, unroll, *bias.shape[1:]))

    def euler_steps(state, chunk):
        chunk_kernels, chunk_biases = chunk
        for k in range(unroll):
            state = state + step_size * activation(linear(state, chunk_kernels[k]) + chunk_biases[k])
        return state

    states = tf.scan(euler_steps, (kernels, biases), initializer=inputs)
    return states[-1]


@functools.lru_cache(maxsize=None)
def _traced_euler(linear, activation, unroll, dtype, input_shape, kernel_shape):
    """The shared ``tf.function`` of :func:`_euler` for stacks with these arguments (any ``K``).

    The batch size stays in the key, so the loop's state has static shapes.
    """
    signature = [
        tf.TensorSpec(input_shape, dtype),
        tf.TensorSpec((None, *kernel_shape), dtype),
        tf.TensorSpec((None, kernel_shape[-1]), dtype),
        tf.TensorSpec((), dtype),
    ]
    return tf.function(
        functools.partial(_euler, linear, activation, unroll), input_signature=signature, autograph=False
    )


@keras.saving.register_keras_serializable(package="keras_multilevel")
class DenseResidualStack(ResidualStack):
    """Residual stack with fully connected blocks, ``W_k`` a ``v x v`` matrix (Gaedke-Merzhäuser et al., 2021, eq 4).

    Input shape ``(..., v)``; output shape the same.

    Example::

        x = keras.Input((3,))
        y = kml.layers.DenseResidualStack(blocks=2048)(x)
    """

    def _kernel_shape(self, input_shape):
        width = input_shape[-1]
        return (width, width)

    @staticmethod
    def _linear(state, kernel):
        return ops.matmul(state, kernel)


@keras.saving.register_keras_serializable(package="keras_multilevel")
class ConvResidualStack(ResidualStack):
    """Residual stack with convolutional blocks, ``W_k`` a same-padded convolution.

    Input shape ``(batch, height, width, channels)`` (channels last); output
    shape the same. Each block maps ``channels`` to ``channels`` with a
    ``kernel_size`` convolution, stride 1 and "same" padding.

    Args:
        kernel_size: an odd positive integer or a pair of them.
        **kwargs: the other arguments of :class:`ResidualStack`.
    """

    def __init__(self, blocks, kernel_size=3, **kwargs):
        size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(
                f"`kernel_size` must be a positive integer or a pair of them, got {kernel_size!r}."
            )
        super().__init__(blocks, **kwargs)
        self.kernel_size = size

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "ConvResidualStack expects inputs of shape (batch, height, width, channels), "
                f"got {input_shape}."
            )
        super().build(input_shape)

    def _kernel_shape(self, input_shape):
        channels = input_shape[-1]
        return (*self.kernel_size, channels, channels)

    @staticmethod
    def _linear(state, kernel):
        return ops.conv(state, kernel, strides=1, padding="same")

    def get_config(self):
        config = super().get_config()
        config["kernel_size"] = self.kernel_size
        return config
