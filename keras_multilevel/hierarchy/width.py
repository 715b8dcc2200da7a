"""Coarsening in width: pairs of similar neurons (or channels) become one.

Ponce et al. (2022, §5) (fully connected layers) and §7 (convolutional layers). Layer
``k`` maps ``y_k`` (width ``n_k``) to ``y_{k+1} = phi(W_k y_k + b_k)``. Each
hidden width ``n_k`` is coarsened to ``n_k^c`` by heavy edge matching
(Algorithm 1, :mod:`~keras_multilevel.hierarchy.matching`); the network's
input and output keep their size (``pi_in = P_in = I``, ``pi_out = P_out = I``).
On an aggregated axis, with ``zeta`` the aggregate of each neuron and ``d``
its scaling,

* ``P~ x_c = d * x_c[zeta]``: piecewise constant prolongation (eq 32 with
  ``d = 1``; eq 34 with ``d`` the norms of the neurons' parameter vectors);
* ``pi~ x = segment_sum(x) / segment_sum(d)``, that is
  ``(P^T D P)^{-1} P^T`` (eq 34; the pairwise average of eq 32 for ``d = 1``),

so ``pi~ P~ = I`` (eq 17). A neuron's parameter vector, used for the strength
of connection (§5.5, "cosine angles of the rows of ``W_k``") and for ``d``,
is its row of ``W_k`` together with its bias: for a convolution, the whole
filter of the output channel (§7: a channel is the analogue of a neuron, one
block row of eq 39) and the channel's bias. Including the bias makes two
neurons similar only if they would produce the same pre-activation up to
scale, which is what makes eq 22 accurate.

The parameters map layer by layer (eqs 25, 27, 28):

* ``Pi``: ``W_k^c = pi~_{k+1} W_k P~_k``, ``b_k^c = pi~_{k+1} b_k``;
* ``P``: ``W_k = P~_{k+1} W_k^c pi~_k``, ``b_k = P~_{k+1} b_k^c``;
* ``R = P^T``: ``P~_{k+1}^T W_k pi~_k^T``, ``P~_{k+1}^T b_k`` (eq 28 prints
  ``P_k^T b_k``; the transpose of eq 27's ``P_{k+1} b_k^c`` is
  ``P_{k+1}^T b_k``, Lemma 5.1).

Keras stores a kernel as ``W_k^T`` (Dense: ``(in, out)``; ConvND:
``(*kernel_size, in, out)``), so the input axis is ``-2`` and the output
axis ``-1``; every operator acts along one axis with ``tf.gather`` and
``tf.math.unsorted_segment_sum``, never with a matrix (Remark 5.2).
"""

import math

import keras
import tensorflow as tf

from keras_multilevel.hierarchy.coarsening import Coarsening
from keras_multilevel.hierarchy.transfer import TransferMaps, check_correspondence
from keras_multilevel.hierarchy.matching import (
    aggregates,
    heavy_edge_matching,
    strength_of_connection,
)

WEIGHTED = (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
"""Layers whose output units / channels width coarsening aggregates."""

PARAMETER_FREE = (
    keras.layers.InputLayer,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.Dropout,
    keras.layers.Flatten,
) + tuple(
    getattr(keras.layers, f"{kind}Pooling{dim}D")
    for kind in ("Max", "Average", "GlobalMax", "GlobalAverage")
    for dim in (1, 2, 3)
)
"""Layers that may sit between weighted layers: no parameters, channels kept."""

_RELATIVE_FLOOR = 1e-6
"""``d`` is at least this fraction of the layer's largest norm (eq 34 guard)."""


def _along(x, axis, operation):
    """Applies ``operation`` (which acts on the leading axis) along ``axis`` of ``x``."""
    rank = x.shape.rank
    axis %= rank
    order = [axis] + [a for a in range(rank) if a != axis]
    inverse = sorted(range(rank), key=order.__getitem__)
    return tf.transpose(operation(tf.transpose(x, order)), inverse)


def neuron_vectors(kernel, bias=None):
    """The ``(n, p)`` parameter vectors of a layer's ``n`` output neurons.

    Row ``r`` is ``kernel[..., r]`` flattened (for a convolution the whole
    filter of output channel ``r``) followed by ``bias[r]`` when there is one.
    """
    kernel = tf.convert_to_tensor(kernel)
    vectors = tf.transpose(tf.reshape(kernel, [-1, kernel.shape[-1]]))
    if bias is None:
        return vectors
    return tf.concat([vectors, tf.convert_to_tensor(bias)[:, None]], axis=1)


class Aggregation:
    """The aggregation of one hidden axis: ``zeta``, ``d`` and ``n_c``.

    Built by heavy edge matching of the neurons' parameter ``vectors``
    (Algorithm 1 with threshold ``threshold``), which fixes the coarse size
    ``n_c`` (unless ``pairs`` fixes it, ``n_c = n - pairs``); :meth:`rematch`
    recomputes ``zeta`` and ``d`` later with the same ``n_c``.

    Args:
        vectors: ``(n, p)`` parameter vectors (:func:`neuron_vectors`).
        threshold: strength threshold ``theta`` of Algorithm 1.
        scaled: ``False`` for ``P`` of eq 32 (``d = 1``), ``True`` for the
            scaled ``P~`` of eq 34 (``d`` = the vectors' norms).
        pairs: the number of pairs to form (see
            :func:`~keras_multilevel.hierarchy.matching.heavy_edge_matching`),
            ``None`` for as many as the threshold allows.
    """

    def __init__(self, vectors, threshold, scaled, pairs=None):
        self.threshold = threshold
        self.scaled = scaled
        vectors = tf.convert_to_tensor(vectors)
        zeta, scaling = self._zeta_and_scaling(vectors, pairs=pairs)
        self.fine_size = int(vectors.shape[0])
        self.coarse_size = int(tf.reduce_max(zeta)) + 1
        self.zeta = tf.Variable(zeta, trainable=False, name="zeta")
        self.scaling = tf.Variable(scaling, trainable=False, name="scaling")

    def _zeta_and_scaling(self, vectors, pairs):
        match = heavy_edge_matching(strength_of_connection(vectors), self.threshold, pairs)
        if not self.scaled:
            return aggregates(match), tf.ones_like(vectors[:, 0])
        norms = tf.norm(vectors, axis=1)
        # A neuron with (nearly) zero parameters would make segment_sum(d)
        # vanish: floor d relative to the layer, and use d = 1 if all are 0.
        scaling = tf.maximum(norms, _RELATIVE_FLOOR * tf.reduce_max(norms))
        return aggregates(match), tf.where(scaling > 0, scaling, tf.ones_like(scaling))

    def rematch(self, vectors):
        """Re-matches from new parameter ``vectors``, keeping ``n_c`` (graph-safe)."""
        pairs = self.fine_size - self.coarse_size
        zeta, scaling = self._zeta_and_scaling(tf.convert_to_tensor(vectors), pairs)
        self.zeta.assign(zeta)
        self.scaling.assign(tf.cast(scaling, self.scaling.dtype))

    def _scale(self, x):
        shape = [-1] + [1] * (x.shape.rank - 1)
        return tf.reshape(tf.cast(self.scaling, x.dtype), shape)

    def _mass(self, x):
        """``segment_sum(d)``: the diagonal of ``P^T D P``, shaped to divide ``x``."""
        total = tf.math.unsorted_segment_sum(self.scaling, self.zeta, self.coarse_size)
        return tf.reshape(tf.cast(total, x.dtype), [-1] + [1] * (x.shape.rank - 1))

    # Each operator acts on the leading axis of x; use _along for another axis.

    def prolong(self, x):
        """``P~ x_c = d * x_c[zeta]``: ``(n_c, ...) -> (n, ...)``."""
        return self._scale(x) * tf.gather(x, self.zeta)

    def restrict(self, x):
        """``pi~ x = segment_sum(x) / segment_sum(d)``: ``(n, ...) -> (n_c, ...)``."""
        return tf.math.unsorted_segment_sum(x, self.zeta, self.coarse_size) / self._mass(x)

    def prolong_transpose(self, x):
        """``P~^T x = segment_sum(d * x)``: ``(n, ...) -> (n_c, ...)``."""
        return tf.math.unsorted_segment_sum(self._scale(x) * x, self.zeta, self.coarse_size)

    def restrict_transpose(self, x):
        """``pi~^T y = (y / segment_sum(d))[zeta]``: ``(n_c, ...) -> (n, ...)``."""
        return tf.gather(x / self._mass(x), self.zeta)

    def __repr__(self):
        return f"Aggregation({self.fine_size} -> {self.coarse_size})"


_DIRECTIONS = {
    # map: (operator on the kernel's input axis, operator on the output axis)
    "restrict": ("prolong_transpose", "restrict"),  # eq 25
    "prolong": ("restrict_transpose", "prolong"),  # eq 27
    "restrict_gradient": ("restrict", "prolong_transpose"),  # eq 28
}


class LayerTransfer:
    """The maps of one Dense / Conv layer's kernel and bias.

    Args:
        kernel_index, bias_index: positions of the layer's kernel and bias
            (``None`` without bias) among the trainable variables.
        inputs, outputs: the :class:`Aggregation` of the layer's input and
            output channels, ``None`` where the width is kept.
        fine_shape, coarse_shape: the kernel's shape on both levels.

    A Dense layer after ``Flatten`` sees ``positions * channels`` inputs with
    the channel fastest (channels last); the kernel is viewed as
    ``(positions, channels, out)`` so the input aggregation acts on the
    channels. A convolution kernel ``(*kernel_size, channels, out)`` is viewed
    the same way, with the kernel taps as positions.
    """

    def __init__(self, kernel_index, bias_index, inputs, outputs, fine_shape, coarse_shape):
        self.kernel_index = kernel_index
        self.bias_index = bias_index
        self.inputs = inputs
        self.outputs = outputs
        self.fine_shape = tuple(fine_shape)
        self.coarse_shape = tuple(coarse_shape)
        channels = inputs.fine_size if inputs is not None else fine_shape[-2]
        self.positions = fine_shape[-2] // channels

    def apply(self, direction, kernel, bias):
        """Maps ``(kernel, bias)`` in ``direction``; returns the mapped pair."""
        input_operator, output_operator = _DIRECTIONS[direction]
        target = self.fine_shape if direction == "prolong" else self.coarse_shape
        kernel = tf.convert_to_tensor(kernel)
        view = tf.reshape(kernel, [-1, kernel.shape[-2] // self.positions, kernel.shape[-1]])
        if self.inputs is not None:
            view = _along(view, 1, getattr(self.inputs, input_operator))
        if self.outputs is not None:
            view = _along(view, 2, getattr(self.outputs, output_operator))
            if bias is not None:
                bias = getattr(self.outputs, output_operator)(tf.convert_to_tensor(bias))
        return tf.reshape(view, target), bias

    def vectors(self, variables):
        """The parameter vectors of this layer's output neurons in ``variables``."""
        bias = None if self.bias_index is None else variables[self.bias_index]
        return neuron_vectors(variables[self.kernel_index], bias)


class WidthTransfer(TransferMaps):
    """``Pi``, ``P`` and ``R = P^T`` between a model and its width-coarsened clone.

    The same list-in, list-out interface as
    :class:`~keras_multilevel.hierarchy.transfer.Transfer` (one tensor per
    trainable variable, in ``model.trainable_variables`` order), but the
    variables of a layer map jointly: a hidden axis is shared by the output
    of one layer and the input of the next. ``restrict`` is ``Pi`` of eq 25,
    ``prolong`` is ``P`` of eq 27 and ``restrict_gradient`` is ``R = P^T`` of
    eq 28.

    Args:
        layers: one :class:`LayerTransfer` per weighted layer, in order.
        count: the number of trainable variables.
    """

    def __init__(self, layers, count):
        self.layers = list(layers)
        self.count = count

    @property
    def aggregations(self):
        """The :class:`Aggregation` of every hidden axis, first layer first."""
        return [layer.outputs for layer in self.layers if layer.outputs is not None]

    @property
    def state_variables(self):
        """The matching (``zeta`` and ``d`` of every hidden axis), saved with the optimizer."""
        return [variable for a in self.aggregations for variable in (a.zeta, a.scaling)]

    def _map(self, direction, tensors):
        mapped = list(tensors)
        for layer in self.layers:
            bias = None if layer.bias_index is None else tensors[layer.bias_index]
            kernel, bias = layer.apply(direction, tensors[layer.kernel_index], bias)
            mapped[layer.kernel_index] = kernel
            if layer.bias_index is not None:
                mapped[layer.bias_index] = bias
        return mapped

    def rematch(self, fine_variables):
        """Recomputes every aggregation from the current fine weights (§6.1.3).

        Each hidden axis keeps its coarse width (heavy edge matching with
        ``pairs = n - n_c``), so the coarse model still fits. Only TensorFlow
        ops and variable assignments: it can run inside ``tf.cond`` in a
        compiled train step.
        """
        for layer in self.layers:
            if layer.outputs is not None:
                layer.outputs.rematch(layer.vectors(fine_variables))

    def __repr__(self):
        return f"WidthTransfer({self.aggregations!r})"


def _is_functional(model):
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


def _chain_layers(model):
    """The layers of a Sequential or chain functional ``model``, in order."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model to coarsen, got {type(model).__name__}.")
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    if not _is_functional(model):
        raise ValueError(
            f"Width coarsening clones the model, which needs a Sequential or functional model; "
            f"{type(model).__name__} is a subclassed model. Build it with keras.Sequential or "
            "the functional API."
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Width coarsening needs a chain of layers (one input, one output); model "
            f"{model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    previous = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.input is not previous:
            raise ValueError(
                f"Width coarsening needs a chain of layers, each applied once to the previous "
                f"one's output; layer {layer.name!r} of model {model.name!r} breaks the chain "
                "(a branch or a shared layer)."
            )
        previous = layer.output
    if model.outputs[0] is not previous:
        raise ValueError(
            f"Width coarsening needs a chain of layers ending in the model's output; the "
            f"output of model {model.name!r} is not that of its last layer {previous.name!r}."
        )
    return list(model.layers)


def weighted_layers(model):
    """The Dense / Conv layers of ``model``; ``ValueError`` if it cannot be coarsened."""
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} must be built before it is coarsened: give it a "
            "keras.Input or call it once on data."
        )
    weighted = []
    for layer in _chain_layers(model):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(
                f"Layer {layer.name!r} uses data_format={layer.data_format!r}: width coarsening "
                "aggregates the last axis, so use data_format='channels_last'."
            )
        if isinstance(layer, PARAMETER_FREE):
            continue
        if not isinstance(layer, WEIGHTED):
            raise ValueError(
                f"Width coarsening cannot coarsen layer {layer.name!r} "
                f"({type(layer).__name__}): it supports Dense and Conv1D/2D/3D layers with, "
                "in between, only parameter-free layers that keep the channels (pooling, "
                "Activation, ReLU, LeakyReLU, Dropout, Flatten)."
            )
        if getattr(layer, "groups", 1) != 1:
            raise ValueError(
                f"Layer {layer.name!r} is a grouped convolution (groups={layer.groups}): width "
                "coarsening needs groups=1, every output channel seeing every input channel."
            )
        own = [layer.kernel] + ([layer.bias] if layer.use_bias else [])
        if [id(v) for v in layer.trainable_variables] != [id(v) for v in own]:
            raise ValueError(
                f"Layer {layer.name!r} must train exactly its kernel and bias to be "
                "width-coarsened; it is frozen (trainable=False), quantized or has LoRA "
                "weights."
            )
        weighted.append(layer)
    if len(weighted) < 2:
        raise ValueError(
            f"Model {model.name!r} has {len(weighted)} Dense/Conv layer(s): width coarsening "
            "needs at least 2, since the output width is kept and only hidden widths shrink."
        )
    return weighted


def _width(layer):
    return int(layer.kernel.shape[-1])


def multiply_adds(layers):
    """Forward multiply-adds per sample of Dense/Conv ``layers``: kernel size times output positions, summed."""
    total = 0
    for layer in layers:
        positions = layer.output.shape[1:-1]
        if None in positions:
            raise ValueError(
                f"Layer {layer.name!r} has output shape {layer.output.shape}: the cost of a "
                "level needs static spatial sizes; give keras.Input a full shape."
            )
        total += math.prod(layer.kernel.shape) * math.prod(positions)
    return total


class WidthCoarsening(Coarsening):
    """Builds coarser networks with about half the hidden neurons / channels (Ponce et al., 2022, §5, §7).

    Args:
        threshold: strength threshold ``theta`` in ``[-1, 1]`` of heavy edge
            matching: only neurons whose parameter vectors have cosine
            similarity above ``theta`` are paired.
        scaled: ``False`` for the piecewise constant ``P`` and averaging
            ``pi`` of eq 32, ``True`` for their variant scaled by the
            neurons' norms, eq 34.
        rematch_every: re-match every this many cycles (§6.1.3), or ``None``
            to keep the first matching.
        widths: the hidden widths of every level, finest first, as
            :meth:`coarsen` records them (and ``get_config`` saves them):
            given, a model with the widths of one entry is coarsened to the
            next entry's widths (matching with a fixed number of pairs), so a
            saved model reloads into the same hierarchy. ``None`` lets the
            threshold decide.
    """

    name = "width"
    size_label = "widths"

    def __init__(self, threshold=0.0, scaled=False, rematch_every=50, widths=None):
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not -1.0 <= threshold <= 1.0
        ):
            raise ValueError(
                f"`threshold` must be a number in [-1, 1] (a cosine similarity), got {threshold!r}."
            )
        if not isinstance(scaled, bool):
            raise ValueError(
                f"`scaled` must be True (eq 34) or False (eq 32), got {scaled!r}."
            )
        if rematch_every is not None and (
            isinstance(rematch_every, bool)
            or not isinstance(rematch_every, int)
            or rematch_every < 1
        ):
            raise ValueError(
                f"`rematch_every` must be a positive number of cycles or None (never re-match), "
                f"got {rematch_every!r}."
            )
        if widths is not None and not (
            isinstance(widths, (list, tuple))
            and all(isinstance(level, (list, tuple)) for level in widths)
            and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for level in widths for w in level)
        ):
            raise ValueError(
                f"`widths` must be None or a list of lists of positive integers (the hidden "
                f"widths of each level, finest first), got {widths!r}."
            )
        self.threshold = float(threshold)
        self.scaled = scaled
        self.rematch_every = rematch_every
        self.widths = None if widths is None else [list(level) for level in widths]

    def check(self, model, levels):
        """Raises ``ValueError`` unless ``model`` can be coarsened ``levels - 1`` times.

        Each coarsening at most halves a width, so every hidden width must be
        at least ``2**(levels - 1)``.
        """
        for layer in weighted_layers(model)[:-1]:
            width = _width(layer)
            most = width.bit_length()  # 1 + floor(log2(width))
            if levels > most:
                raise ValueError(
                    f"levels={levels} needs every hidden width to be at least "
                    f"2**{levels - 1} = {2 ** (levels - 1)}, but layer {layer.name!r} has width "
                    f"{width}: use levels <= {most}, or a wider layer."
                )

    def coarsen(self, model):
        """Returns ``(coarse_model, transfer)`` for the next coarser level.

        Heavy edge matching of the current fine weights fixes each hidden
        width ``n_c``; the coarse model is a clone of ``model`` with those
        widths (``units`` / ``filters``). Its weights are fresh: set them with
        ``transfer.restrict(model.trainable_variables)``.
        """
        layers = weighted_layers(model)
        fine_widths = [_width(layer) for layer in layers[:-1]]
        known = self.widths is not None and fine_widths in self.widths[:-1]
        targets = self.widths[self.widths.index(fine_widths) + 1] if known else [None] * len(fine_widths)
        if len(targets) != len(fine_widths):
            raise ValueError(
                f"`widths` {self.widths} lists {len(targets)} hidden widths per level, but model "
                f"{model.name!r} has {len(fine_widths)} hidden layers."
            )
        aggregations = []
        for layer, width, target in zip(layers[:-1], fine_widths, targets):
            if target is not None and not width / 2 <= target < width:
                raise ValueError(
                    f"`widths` asks for layer {layer.name!r} to go from {width} to {target} "
                    f"neurons; pairwise matching gives between {-(-width // 2)} and {width - 1}."
                )
            aggregation = Aggregation(
                neuron_vectors(layer.kernel, layer.bias),
                self.threshold,
                self.scaled,
                pairs=None if target is None else width - target,
            )
            if aggregation.coarse_size == aggregation.fine_size:
                raise ValueError(
                    f"Heavy edge matching paired no neurons of layer {layer.name!r} (width "
                    f"{aggregation.fine_size}) at threshold {self.threshold}: no two of its "
                    "neurons have cosine similarity above it. Lower the threshold."
                )
            aggregations.append(aggregation)
        widths = {id(layer): a.coarse_size for layer, a in zip(layers[:-1], aggregations)}
        coarse_widths = [a.coarse_size for a in aggregations]
        if not known:  # record the hierarchy, so that a saved model reloads into it
            if self.widths is None or self.widths[-1] != fine_widths:
                self.widths = [fine_widths]
            self.widths.append(coarse_widths)

        def clone(layer):
            config = layer.get_config()
            if id(layer) in widths:
                key = "units" if isinstance(layer, keras.layers.Dense) else "filters"
                config[key] = widths[id(layer)]
            return layer.__class__.from_config(config)

        coarse = keras.models.clone_model(model, clone_function=clone)
        check_correspondence(model, coarse)
        index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        inputs = [None] + aggregations
        outputs = aggregations + [None]
        transfers = [
            LayerTransfer(
                index[id(fine.kernel)],
                index[id(fine.bias)] if fine.use_bias else None,
                into,
                out,
                fine.kernel.shape,
                coarse_layer.kernel.shape,
            )
            for fine, coarse_layer, into, out in zip(
                layers, weighted_layers(coarse), inputs, outputs, strict=True
            )
        ]
        return coarse, WidthTransfer(transfers, len(model.trainable_variables))

    def relative_cost(self, model, finest):
        """Cost of one gradient of ``model`` per gradient of ``finest``.

        The ratio of their forward multiply-adds (Dense: ``in * out`` per
        position; Conv: kernel size times output positions). Ponce et al. (2022, §8)
        count 1/4 per level, the rule of thumb for halving every width; the
        first and last layers keep one side (input, output) fine, so this
        real ratio is larger, markedly for narrow networks.
        """
        return multiply_adds(weighted_layers(model)) / multiply_adds(weighted_layers(finest))

    def size(self, model):
        """What a level's row of the hierarchy table shows: the hidden widths."""
        return "-".join(str(_width(layer)) for layer in weighted_layers(model)[:-1])

    def describe(self):
        """One line naming the coarsening and its settings."""
        operator = "scaled P of eq 34" if self.scaled else "P of eq 32"
        every = (
            "never re-matched"
            if self.rematch_every is None
            else f"re-matched every {self.rematch_every} cycles"
        )
        return f"width (heavy edge matching, threshold {self.threshold}, {operator}, {every})"

    def get_config(self):
        return {
            "threshold": self.threshold,
            "scaled": self.scaled,
            "rematch_every": self.rematch_every,
            "widths": self.widths,
        }
