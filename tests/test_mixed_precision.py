"""``mixed_float16`` models: each level scales its own loss (issue 12, item 2)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.optimizers import level_gradient


@pytest.fixture
def mixed_float16():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy(previous)


def data(samples=96):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 8)).astype("float32")
    return x, np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.abs(x[:, 3])], axis=1).astype("float32")


def fas(**kwargs):
    return kml.MultilevelOptimizer(
        levels=2, scheme="fas", coarsening="width", smoother=keras.optimizers.SGD(0.05, momentum=0.9), **kwargs
    )


@pytest.mark.slow
def test_mixed_float16_model_trains_with_a_loss_scale_per_level(mixed_float16):
    keras.utils.set_random_seed(0)
    model = kml.models.feedforward_network((8,), 3, hidden=(16, 16))
    model.compile(optimizer=fas(), loss="mse")
    optimizer = model.optimizer
    # Keras' LossScaleOptimizer wrapper is taken off; each level scales its own loss.
    assert isinstance(optimizer, kml.MultilevelOptimizer)
    assert all(isinstance(level, keras.optimizers.LossScaleOptimizer) for level in optimizer._smoothers)
    x, y = data()
    history = model.fit(x, y, batch_size=8 * optimizer.minibatches, epochs=6, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
    assert model.layers[0].compute_dtype == "float16" and model.layers[0].kernel.dtype == "float32"


def test_scaled_gradient_is_the_gradient():
    keras.utils.set_random_seed(0)
    model = kml.models.feedforward_network((8,), 3, hidden=(16,))
    model.compile(loss="mse")
    x, y = data(16)
    _, _, plain = level_gradient(model, (x, y, None), regularization=1e-3)
    _, _, scaled = level_gradient(model, (x, y, None), regularization=1e-3, loss_scale=tf.constant(2.0**12))
    for g, s in zip(plain, scaled):
        np.testing.assert_allclose(s.numpy(), g.numpy(), rtol=1e-6, atol=1e-9)


def test_overflowing_scale_skips_each_level_step_and_halves_that_level_scale(mixed_float16):
    keras.utils.set_random_seed(0)
    model = kml.models.feedforward_network((8,), 3, hidden=(16, 16))
    # A scale of 2^40 overflows float16 (largest 65504) in every backward pass.
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(fas(steps=[1, 1]), initial_scale=2.0**40), loss="mse")
    optimizer = model.optimizer
    x, y = data(8 * optimizer.minibatches)
    before = [v.numpy() for v in model.trainable_variables]
    model.train_on_batch(x, y)
    # One step down and one up on the fine level, one on the coarse level: all skipped.
    assert [float(level.dynamic_scale) for level in optimizer._smoothers] == [2.0**38, 2.0**39]
    for value, variable in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), value)
    # With a finite scale the next cycles train.
    for _ in range(12):
        model.train_on_batch(x, y)
    assert any(not np.array_equal(v.numpy(), b) for v, b in zip(model.trainable_variables, before))
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)


@pytest.mark.slow
def test_mixed_float16_pyramid_u_net_grows_a_grid(mixed_float16):
    """coarsening="pyramid" builds its coarse U-Net under the model's policy; the grown network trains on."""
    keras.utils.set_random_seed(0)
    model = kml.models.unet(16, filters=(4, 8), pyramid=True)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=2, coarsening="pyramid", schedule=[4],
                                                    smoother=keras.optimizers.Adam(3e-3)), loss="mse")
    coarse = model.optimizer.hierarchy[1].model
    assert coarse.get_layer("down_0_conv_0").compute_dtype == "float16"
    x = np.random.default_rng(0).normal(size=(32, 16, 16, 3)).astype("float32")
    history = model.fit(x, x[..., :1] * x[..., 1:2], batch_size=8, epochs=4, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][1]
