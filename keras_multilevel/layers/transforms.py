"""Pointwise input transforms that a network can carry as its first layer.

:class:`LogCoefficient` replaces the PDE coefficient channel of the input by
its logarithm. Why: divided by κ, ``-div(κ grad u) = f`` reads
``-Δu - grad(log κ) · grad u = f / κ``: the solution depends on κ through
``grad log κ`` and ``1/κ = exp(-log κ)``, both smooth in ``log κ``, while
the Poisson coefficient of Ponce et al. (2022, §8.1), ``1.1 + cos cos``,
spans 0.1 to 2.1, so that a linear first convolution of κ sees its small
values, where ``u`` changes most, squeezed together. Measured on the zoo's
Poisson data (benchmarks/results/zoo/logk/poisson_n16.md, the commands in
benchmarks/README.md): the pyramid U-Net at N = 16 fed log κ reaches test
relative L2 0.0173 against 0.0274 fed κ (10 epochs, seed 0). The Darcy
data set already holds ``log k`` (a Gaussian field, negative values
included): it needs no such layer, and this one refuses its input.

The layer is weightless and pointwise, so the resolution and pyramid
hierarchies (``coarsening="resolution"`` / ``"pyramid"``, ``kml.zoo.load(...,
resolution=M)``) move it unchanged to any grid. It imports no TensorFlow at
module level and uses ``keras.ops``, so a preset holding it loads under any
Keras backend.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_multilevel")
class LogCoefficient(keras.layers.Layer):
    """``x[..., c] -> log x[..., c]`` for the coefficient channels ``c``; every other channel unchanged.

    Input shape ``(..., channels)`` (channels last); output shape the same.
    Use it as the first layer of a network whose input holds a positive
    coefficient, e.g. κ of the Poisson data set (channel 0; channels 1 and 2
    are the coordinates): ``kml.models.unet(N, log_input=True)`` builds one.
    See the module docstring for why a network learns better from ``log κ``.

    Non-positive values in a coefficient channel have no logarithm. Under
    the TensorFlow backend (eager or in a ``tf.function``, as in ``fit``)
    they raise ``tf.errors.InvalidArgumentError`` naming the layer and the
    channels (``check_positive=False`` skips the check, and the output then
    holds ``-inf`` or ``nan`` there); under other backends, which cannot
    raise from compiled code, the output holds ``-inf`` or ``nan``.

    Args:
        channels: the indices of the channels to take the logarithm of
            (non-negative integers; default ``(0,)``, the coefficient).
        check_positive: check (TensorFlow backend) that those channels are
            positive before taking the logarithm.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Example::

        inputs = keras.Input((16, 16, 3))
        x = kml.layers.LogCoefficient(channels=(0,))(inputs)   # log κ, x, y
    """

    def __init__(self, channels=(0,), check_positive=True, **kwargs):
        super().__init__(**kwargs)
        channels = [channels] if isinstance(channels, int) and not isinstance(channels, bool) else channels
        try:
            channels = tuple(channels)
        except TypeError:
            raise ValueError(f"`channels` must be a channel index or a sequence of them, got {channels!r}.") from None
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in channels) \
                or len(set(channels)) != len(channels):
            raise ValueError(
                f"`channels` must be distinct non-negative channel indices (at least one), got {channels!r}."
            )
        if not isinstance(check_positive, bool):
            raise ValueError(f"`check_positive` must be True or False, got {check_positive!r}.")
        self.channels, self.check_positive = channels, check_positive
        self.supports_masking = True

    def build(self, input_shape):
        count = input_shape[-1]
        if count is not None and max(self.channels) >= count:
            raise ValueError(
                f"Layer {self.name!r} takes the logarithm of channels {list(self.channels)}, but its input has "
                f"{count} channel(s) (shape {tuple(input_shape)})."
            )
        self.built = True

    def _selected(self, inputs):
        """A boolean mask of the input's shape: True on the coefficient channels."""
        count = ops.shape(inputs)[-1]
        mask = ops.sum(ops.one_hot(ops.convert_to_tensor(list(self.channels)), count, dtype="int32"), axis=0) > 0
        return ops.broadcast_to(mask, ops.shape(inputs))

    def _check(self, inputs, selected):
        if not self.check_positive or keras.backend.backend() != "tensorflow":
            return []
        import tensorflow as tf

        values = tf.boolean_mask(inputs, selected)
        return [
            tf.debugging.assert_positive(
                values,
                message=f"Layer {self.name!r} (LogCoefficient) takes the logarithm of channels {list(self.channels)}, "
                "which must be positive (a coefficient such as the Poisson data's κ; the Darcy data's channel 0 is "
                "already log k and needs no logarithm)",
            )
        ]

    def call(self, inputs):
        selected = self._selected(inputs)
        checks = self._check(inputs, selected)
        if checks:
            import tensorflow as tf

            with tf.control_dependencies(checks):
                inputs = tf.identity(inputs)
        safe = ops.where(selected, inputs, ops.ones_like(inputs))  # no log of the other channels, even unused
        return ops.where(selected, ops.log(safe), inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": list(self.channels), "check_positive": self.check_positive}
