"""Ready-made networks of the papers: opening map ``Q``, a residual stack, a head.

Gaedke-Merzhäuser et al. (2021, §2.1 eqs 2-4): ``y_0 = Q x``, ``K`` residual blocks, then a
classifier ``P(W_K y_K + b_K)`` (softmax) or, for regression, a linear head.
"""

import keras

from keras_multilevel.layers.residual import ConvResidualStack, DenseResidualStack
from keras_multilevel.layers.transforms import LogCoefficient

HEADS = ("dense", "pixelwise")


def residual_network(
    input_shape,
    outputs,
    width,
    blocks,
    kind="dense",
    head="dense",
    output_activation="softmax",
    final_time=1.0,
    activation="relu",
    kernel_size=3,
    name="residual_network",
):
    """Builds ``Q -> ResidualStack(blocks) -> head`` as a functional model.

    Args:
        input_shape: shape of one sample, e.g. ``(2,)`` or ``(32, 32, 3)``.
        outputs: number of classes or regression outputs (per pixel for the
            ``"pixelwise"`` head).
        width: the network width ``v`` (neurons, or channels for ``kind="conv"``).
        blocks: number of residual blocks ``K``.
        kind: ``"dense"`` (fully connected blocks) or ``"conv"`` (same-padded
            convolutions; inputs are images, channels last).
        head: ``"dense"`` flattens and applies ``Dense(outputs)``;
            ``"pixelwise"`` (conv only) applies a 1x1 convolution, giving an
            output field on the input grid.
        output_activation: activation of the head (``"softmax"`` for the
            classifiers of Gaedke-Merzhäuser et al., 2021, ``None`` for regression).
        final_time, activation, kernel_size: see :class:`ResidualStack`.
        name: the model's name.

    The opening map ``Q`` is learned (Gaedke-Merzhäuser et al., 2021, §4): a ``Dense(width)`` or a
    same-padded ``Conv2D(width, kernel_size)`` without activation.
    """
    if kind not in ("dense", "conv"):
        raise ValueError(f"`kind` must be 'dense' or 'conv', got {kind!r}.")
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {HEADS}, got {head!r}.")
    if head == "pixelwise" and kind != "conv":
        raise ValueError("`head='pixelwise'` needs `kind='conv'` (an output field on the image grid).")
    for argument, value in (("outputs", outputs), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    inputs = keras.Input(tuple(input_shape), name="inputs")
    if kind == "dense":
        state = keras.layers.Dense(width, name="opening")(inputs)
        state = DenseResidualStack(
            blocks, final_time=final_time, activation=activation, name="residual_stack"
        )(state)
    else:
        state = keras.layers.Conv2D(width, kernel_size, padding="same", name="opening")(inputs)
        state = ConvResidualStack(
            blocks,
            kernel_size=kernel_size,
            final_time=final_time,
            activation=activation,
            name="residual_stack",
        )(state)
    if head == "pixelwise":
        result = keras.layers.Conv2D(outputs, 1, activation=output_activation, name="head")(state)
    else:
        if len(state.shape) > 2:
            state = keras.layers.Flatten(name="flatten")(state)
        result = keras.layers.Dense(outputs, activation=output_activation, name="head")(state)
    return keras.Model(inputs, result, name=name)


def feedforward_network(input_shape, outputs, hidden=(400, 400), conv=(), activation="relu", name="feedforward_network"):
    """The plain networks of Ponce et al. (2022, §8), which width coarsening halves.

    ``[Conv2D(filters, kernel, strides) ->] ... Flatten -> Dense(hidden) ... -> Dense(outputs)``,
    all hidden layers with ``activation`` (ReLU in the paper) and a linear
    output layer, as a Sequential model.

    Args:
        input_shape: shape of one sample, e.g. ``(32, 32, 3)``.
        outputs: size of the (flat) output, e.g. ``32 * 32`` for a field.
        hidden: neurons of each fully connected hidden layer.
        conv: ``(filters, kernel_size, strides)`` of each same-padded
            convolution before them (Ponce et al., 2022, §8.1: ``((200, 7, 2), (200, 7, 2))``).
        activation: the hidden layers' activation.
        name: the model's name.

    Example: the Poisson networks of Ponce et al. (2022, §8.1) are
    ``feedforward_network((32, 32, 3), 1024)`` and
    ``feedforward_network((32, 32, 3), 1024, conv=((200, 7, 2), (200, 7, 2)))``.
    """
    if any(not isinstance(c, (tuple, list)) or len(c) != 3 for c in conv):
        raise ValueError(f"`conv` must list (filters, kernel_size, strides) triples, got {conv!r}.")
    for argument, values in (("hidden", hidden), ("conv", [c[0] for c in conv])):
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"`{argument}` widths must be positive integers, got {values!r}.")
    if isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1:
        raise ValueError(f"`outputs` must be a positive integer, got {outputs!r}.")
    layers = [keras.Input(tuple(input_shape), name="inputs")]
    for index, (filters, kernel_size, strides) in enumerate(conv):
        layers.append(
            keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", activation=activation, name=f"conv_{index}")
        )
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers += [keras.layers.Dense(units, activation=activation, name=f"dense_{index}") for index, units in enumerate(hidden)]
    layers.append(keras.layers.Dense(outputs, name="output"))
    return keras.Sequential(layers, name=name)


def unet(resolution, channels=3, outputs=1, filters=(16, 32, 64), convolutions=2, kernel_size=3, activation="gelu",
         pyramid=False, log_input=False, name="unet"):
    """A U-Net of stride-1 convolutions that coarsening in resolution transfers (Haber et al., 2018, §3.1-3.2).

    ``filters[i]`` channels on the grid ``resolution / 2^i``: an encoder of
    ``convolutions`` same-padded ``kernel_size`` convolutions per grid, 2x2
    average pooling (the image restriction ``R``) between grids, a decoder
    that upsamples by repetition (the constant prolongation ``P``) and
    concatenates the encoder's map of the same grid, and a pointwise linear
    output layer: ``(N, N, channels) -> (N, N, outputs)``. Every weight is a
    stencil or a pointwise map, so the same network runs at ``N/2`` or ``2N``
    once its stencils are transferred (:func:`kml.hierarchy.at_resolution`).

    With ``pyramid=True`` the network is multiscale at both ends, in the
    manner of a multigrid cycle (Haber et al.'s (2018, §3.1) image pyramid ``R^i x`` on the
    way down, a correction per grid on the way up):

    * every coarser grid's encoder also reads the input restricted to it,
      ``R^i x`` (layer ``down_i_input``), concatenated before the pooled
      features of the grid above (``down_i_concat``);
    * every grid has its own pointwise output layer, and the prediction is
      built coarsest first, ``y_i = output_i(d_i) + P_lin y_{i+1}``
      (``up_i_sum``), with ``P_lin`` the cell-centred bilinear image
      prolongation: each finer grid adds a correction to the coarser grid's
      prediction, interpolated.

    It costs 2.4 % more multiply-adds per batch than the plain U-Net; on
    the zoo's PDE data, trained by the same recipe from the same seeds, its
    validation error is 1.13-1.43x lower (medians over 3 seeds, Poisson and
    Darcy at N = 16 and 32, one level or coarse to fine:
    benchmarks/results/zoo/budget/pyramid/architecture.md).

    With ``log_input=True`` every grid reads the logarithm of the input's
    channel 0 (the PDE coefficient; the coordinates unchanged) through a
    weightless :class:`~keras_multilevel.layers.LogCoefficient` layer
    (``down_i_log``), applied to the input of each grid: to ``x`` on the
    finest one and, in the pyramid, to ``R^i x`` on the coarser ones (the
    average of the coefficient, then its logarithm: what the same network
    without its finest grid reads from the 2x2-averaged data, so growing
    the pyramid a grid keeps its prediction exactly). The model still takes
    the coefficient itself, which must be positive (Poisson's κ; Darcy's
    input already is ``log k``). Measured on the zoo's Poisson data: a lower
    test error than the same U-Net fed κ (benchmarks/results/zoo/logk/).

    Args:
        resolution: ``N``, divisible by ``2^(len(filters) - 1)``.
        channels: input channels (3 for the PDE data: the coefficient and x, y).
        outputs: output channels.
        filters: channels per grid, finest first.
        convolutions: convolutions per grid on each side.
        kernel_size: odd stencil size.
        activation: hidden activation.
        pyramid: feed ``R^i x`` to every grid and sum a prediction from every grid.
        log_input: feed every grid ``log`` of the coefficient channel 0 instead of the coefficient.
        name: the model's name.
    """
    for argument, values in (("filters", filters), ("channels", [channels]), ("outputs", [outputs]), ("convolutions", [convolutions])):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"`{argument}` must be positive integers, got {values!r}.")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be an odd positive integer, got {kernel_size!r}.")
    for argument, value in (("pyramid", pyramid), ("log_input", log_input)):
        if not isinstance(value, bool):
            raise ValueError(f"`{argument}` must be True or False, got {value!r}.")
    factor = 2 ** (len(filters) - 1)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < factor or resolution % factor:
        raise ValueError(
            f"`resolution` must be a positive multiple of 2**(len(filters) - 1) = {factor} (the U-Net "
            f"pools {len(filters) - 1} times), got {resolution!r}."
        )

    def block(x, width, prefix):
        for index in range(convolutions):
            x = keras.layers.Conv2D(width, kernel_size, padding="same", activation=activation, name=f"{prefix}_conv_{index}")(x)
        return x

    def output(x, depth):
        return keras.layers.Conv2D(outputs, 1, name="output" if depth == 0 else f"output_{depth}")(x)

    def transform(x, depth):
        return LogCoefficient(channels=(0,), name=f"down_{depth}_log")(x) if log_input else x

    inputs = keras.Input((resolution, resolution, channels), name="inputs")
    x, restricted, skips = transform(inputs, 0), inputs, []
    for depth, width in enumerate(filters):
        if depth:
            x = keras.layers.AveragePooling2D(2, name=f"down_{depth}_pool")(x)
            if pyramid:
                restricted = keras.layers.AveragePooling2D(2, name=f"down_{depth}_input")(restricted)
                x = keras.layers.Concatenate(name=f"down_{depth}_concat")([transform(restricted, depth), x])
        x = block(x, width, f"down_{depth}")
        skips.append(x)
    y = output(x, len(filters) - 1) if pyramid and len(filters) > 1 else None
    for depth in reversed(range(len(filters) - 1)):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up_{depth}_upsample")(x)
        x = keras.layers.Concatenate(name=f"up_{depth}_concat")([x, skips[depth]])
        x = block(x, filters[depth], f"up_{depth}")
        if y is not None:
            coarse = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"up_{depth}_prolong")(y)
            y = keras.layers.Add(name=f"up_{depth}_sum")([output(x, depth), coarse])
    return keras.Model(inputs, output(x, 0) if y is None else y, name=name)
