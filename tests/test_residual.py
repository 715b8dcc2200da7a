"""Residual stacks: the forward Euler map of Gaedke-Merzhäuser et al. (2021, eqs 3-8), config and saving."""

import keras
import numpy as np
import pytest

import keras_multilevel as kml


def euler_reference(x, kernel, bias, final_time, linear):
    """y_{k+1} = y_k + h relu(W_k y_k + b_k), written out block by block."""
    step = final_time / kernel.shape[0]
    state = x
    for k in range(kernel.shape[0]):
        state = state + step * np.maximum(linear(state, kernel[k]) + bias[k], 0.0)
    return state


def test_dense_stack_is_forward_euler(float64):
    layer = kml.DenseResidualStack(blocks=7, final_time=2.0, bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(5, 4))
    y = keras.ops.convert_to_numpy(layer(x))
    expected = euler_reference(x, layer.kernel.numpy(), layer.bias.numpy(), 2.0, lambda s, w: s @ w)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert layer.step_size == pytest.approx(2.0 / 7)


def test_conv_stack_is_forward_euler_with_same_padding(float64):
    layer = kml.ConvResidualStack(blocks=3, kernel_size=3, bias_initializer="random_normal")
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 2))

    def convolve(state, kernel):
        padded = np.pad(state, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros(state.shape[:3] + (kernel.shape[-1],))
        for i in range(3):
            for j in range(3):
                out += padded[:, i : i + state.shape[1], j : j + state.shape[2], :] @ kernel[i, j]
        return out

    y = keras.ops.convert_to_numpy(layer(x))
    expected = euler_reference(x, layer.kernel.numpy(), layer.bias.numpy(), 1.0, convolve)
    np.testing.assert_allclose(y, expected, rtol=1e-10)
    assert y.shape == x.shape


def test_weights_are_stacked_on_the_block_axis():
    layer = kml.ConvResidualStack(blocks=16, kernel_size=(3, 5))
    layer.build((None, 8, 8, 4))
    assert tuple(layer.kernel.shape) == (16, 3, 5, 4, 4)
    assert tuple(layer.bias.shape) == (16, 4)


def test_variance_scaling_initializer_uses_fans_of_one_block():
    layer = kml.DenseResidualStack(blocks=512, kernel_initializer="glorot_uniform")
    layer.build((None, 10))
    # Glorot uniform for a 10 x 10 matrix: variance 2 / (10 + 10).
    assert np.var(layer.kernel.numpy()) == pytest.approx(0.1, rel=0.05)


def test_sequential_functional_config_and_keras_file_round_trip(tmp_path):
    sequential = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(3), kml.DenseResidualStack(8, final_time=0.5), keras.layers.Dense(1)]
    )
    inputs = keras.Input((6, 6, 2))
    outputs = kml.ConvResidualStack(4, kernel_size=3, activation="tanh")(inputs)
    functional = keras.Model(inputs, outputs)
    for model, shape in ((sequential, (3, 2)), (functional, (3, 6, 6, 2))):
        x = np.random.default_rng(2).normal(size=shape).astype("float32")
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
        stacks = [layer for layer in loaded.layers if isinstance(layer, kml.layers.ResidualStack)]
        original = [layer for layer in model.layers if isinstance(layer, kml.layers.ResidualStack)]
        assert stacks[0].get_config() == original[0].get_config()


def test_from_config_round_trip():
    layer = kml.ConvResidualStack(6, kernel_size=(3, 1), final_time=3.0, activation="tanh", name="stack")
    clone = kml.ConvResidualStack.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.step_size == pytest.approx(0.5)


@pytest.mark.slow
def test_a_2048_block_network_builds_traces_and_trains():
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    x, y = kml.datasets.concentric_circles(64)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"blocks": 0}, "`blocks` must be a positive integer"),
        ({"blocks": 2.5}, "`blocks` must be a positive integer"),
        ({"blocks": 4, "final_time": 0}, "`final_time` must be positive"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kml.DenseResidualStack(**kwargs)


def test_bad_conv_arguments():
    with pytest.raises(ValueError, match="`kernel_size` must be a positive integer"):
        kml.ConvResidualStack(4, kernel_size=0)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        kml.ConvResidualStack(4)(np.zeros((2, 3), "float32"))
