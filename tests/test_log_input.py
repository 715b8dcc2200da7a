"""The log κ input: the LogCoefficient layer (math, config, saving, bad input) and the U-Net option
``log_input=True`` under the resolution and pyramid hierarchies and the zoo."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel import zoo
from keras_multilevel.hierarchy import at_resolution
from keras_multilevel.hierarchy.pyramid import unet_arguments
from keras_multilevel.hierarchy.stencil import prolong_image, restrict_image
from keras_multilevel.layers import LogCoefficient


def coefficients(samples=8, n=16, seed=0):
    """Poisson-like inputs: a positive coefficient in [0.1, 2.1] and the cell-centre coordinates."""
    rng = np.random.default_rng(seed)
    kappa = rng.uniform(0.1, 2.1, size=(samples, n, n, 1))
    centres = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(centres, centres)
    grid = np.broadcast_to(np.stack([x, y], -1), (samples, n, n, 2))
    return np.concatenate([kappa, grid], -1).astype("float32")


def test_the_output_is_the_log_of_the_coefficient_channel_and_the_rest_unchanged():
    x = coefficients()
    out = LogCoefficient()(x).numpy()
    np.testing.assert_allclose(out[..., 0], np.log(x[..., 0]), rtol=1e-6)
    np.testing.assert_array_equal(out[..., 1:], x[..., 1:])
    both = LogCoefficient(channels=(0, 2))(x).numpy()
    np.testing.assert_allclose(both[..., [0, 2]], np.log(x[..., [0, 2]]), rtol=1e-6)
    np.testing.assert_array_equal(both[..., 1], x[..., 1])


def test_config_round_trip_and_keras_file(tmp_path):
    layer = LogCoefficient(channels=(0, 1), check_positive=False, name="log")
    again = LogCoefficient.from_config(layer.get_config())
    assert again.channels == (0, 1) and again.check_positive is False and again.name == "log"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer), safe_mode=True)
    assert isinstance(restored, LogCoefficient) and restored.get_config() == layer.get_config()
    model = kml.models.unet(16, filters=(4, 8), pyramid=True, log_input=True)
    x = coefficients()
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.get_layer("down_0_log"), LogCoefficient)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_non_positive_coefficients_are_refused_by_name_eagerly_and_in_a_graph():
    layer = LogCoefficient(name="log_kappa")
    for value in (0.0, -1.0):
        x = coefficients()
        x[1, 3, 4, 0] = value
        with pytest.raises(tf.errors.InvalidArgumentError, match="log_kappa.*must be positive"):
            layer(x)
        with pytest.raises(tf.errors.InvalidArgumentError, match="must be positive"):
            tf.function(layer)(tf.constant(x))
    x = coefficients()
    x[..., 1] = -1.0  # another channel may be anything
    assert np.all(np.isfinite(layer(x).numpy()))
    unchecked = LogCoefficient(check_positive=False)(np.array([[0.0, 1.0], [-1.0, 1.0]], "float32")).numpy()
    assert unchecked[0, 0] == -np.inf and np.isnan(unchecked[1, 0])


def test_bad_arguments_are_refused():
    for channels in ((), (-1,), (0, 0), (True,), "0", (1.0,)):
        with pytest.raises(ValueError, match="channels"):
            LogCoefficient(channels=channels)
    with pytest.raises(ValueError, match="check_positive"):
        LogCoefficient(check_positive=1)
    with pytest.raises(ValueError, match=r"channels \[3\].*1 channel"):
        LogCoefficient(channels=3)(np.ones((2, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match="log_input"):
        kml.models.unet(16, log_input="yes")


@pytest.mark.parametrize("pyramid", [False, True])
def test_the_unet_reads_log_kappa_on_every_grid(pyramid):
    """The network fed κ with ``log_input=True`` is the network fed log κ without it (same weights)."""
    keras.utils.set_random_seed(0)
    logged = kml.models.unet(16, filters=(4, 8, 16), pyramid=pyramid, log_input=True)
    plain = kml.models.unet(16, filters=(4, 8, 16), pyramid=pyramid)
    plain.set_weights(logged.get_weights())
    logs = [layer.name for layer in logged.layers if isinstance(layer, LogCoefficient)]
    assert logs == (["down_0_log", "down_1_log", "down_2_log"] if pyramid else ["down_0_log"])
    assert logged.count_params() == plain.count_params()
    x = coefficients()
    if not pyramid:
        np.testing.assert_allclose(logged(x), plain(LogCoefficient()(x)), atol=1e-5)
    else:  # the coarser grids read the log of the averaged coefficient: not plain's log-then-average
        coarse = logged.get_layer("down_1_concat").input[0]
        probe = keras.Model(logged.inputs, coarse)
        np.testing.assert_allclose(probe(x), LogCoefficient()(restrict_image(x)), rtol=1e-5)


def test_the_resolution_hierarchy_and_at_resolution_accept_it():
    keras.utils.set_random_seed(0)
    model = kml.models.unet(16, filters=(4, 8), pyramid=True, log_input=True)
    x = coefficients()
    for resolution in (8, 32):
        moved = at_resolution(model, resolution)
        assert moved.input_shape == (None, resolution, resolution, 3)
        assert isinstance(moved.get_layer("down_0_log"), LogCoefficient)
        assert np.all(np.isfinite(moved(coefficients(n=resolution)).numpy()))
    np.testing.assert_allclose(at_resolution(model, 16)(x), model(x), atol=1e-6)
    model.compile(kml.MultilevelOptimizer(levels=2, coarsening="resolution", schedule=[2],
                                          smoother=keras.optimizers.Adam(1e-3)), "mse")
    history = model.fit(x, x[..., :1] * x[..., 1:2], batch_size=4, epochs=2, verbose=0).history
    assert "16x16" in str(model.optimizer.hierarchy) and "8x8" in str(model.optimizer.hierarchy)
    assert np.all(np.isfinite(history["loss"]))


def test_the_pyramid_hierarchy_grows_it_and_keeps_the_coarse_prediction():
    """Growing a grid (coarsening="pyramid", zero rate) starts from the coarse network's prediction on R x,
    prolongated: the coarse network reads log(R κ), as the grown network's second grid does."""
    keras.utils.set_random_seed(0)
    model = kml.models.unet(16, filters=(4, 8, 16), pyramid=True, log_input=True)
    assert unet_arguments(model)["log_input"] is True
    optimizer = kml.MultilevelOptimizer(levels=3, coarsening="pyramid", schedule=[2, 2],
                                        smoother=keras.optimizers.SGD(0.0))
    model.compile(optimizer, "mse")
    x = coefficients(20)  # 5 batches: 2 on the coarsest network, 2 on the middle one, the first of the finest
    model.fit(x, x[..., :1], batch_size=4, epochs=1, verbose=0, shuffle=False)
    levels = [level.model for level in optimizer.hierarchy]
    assert [unet_arguments(level)["log_input"] for level in levels] == [True, True, True]
    expected = prolong_image(levels[1](restrict_image(x)), "linear")
    np.testing.assert_allclose(model(x), expected, atol=1e-5)


def test_a_preset_with_it_loads_and_moves(tmp_path):
    keras.utils.set_random_seed(0)
    model = kml.models.unet(8, filters=(4, 8), pyramid=True, log_input=True)
    recipe = {"problem": "poisson", "resolution": 8,
              "architecture": {"filters": [4, 8], "pyramid": True, "log_input": True},
              "smoother": {"class_name": "Adam", "config": {"learning_rate": 0.003}}, "levels": 1, "epochs": 2,
              "batch_size": 8, "seed": 0, "dataset_seed": 0, "samples": 40,
              "why": "log κ measured more accurate than κ."}
    metrics = {"l2": 0.5, "relative_l2": 0.5, "relative_l2_std": 0.1, "linf": 1.0, "examples": 4}
    record = {"wall_time_s": 1.0, "cpu_time_s": 2.0, "work_units": 0.0, "epochs": []}
    zoo.save_preset(model, tmp_path / "poisson_unet_n8", recipe, record, {"validation": metrics, "test": metrics})
    config = json.loads((tmp_path / "poisson_unet_n8" / "config.json").read_text())
    assert "keras_multilevel>LogCoefficient" in json.dumps(config)
    x = coefficients(n=8)
    loaded = zoo.load("poisson_unet_n8", presets_dir=tmp_path)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    assert zoo.load("poisson_unet_n8", resolution=4, presets_dir=tmp_path).input_shape == (None, 4, 4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a pyramid U-Net grows a grid: nothing to warn about
        finer = zoo.load("poisson_unet_n8", resolution=16, presets_dir=tmp_path)
    x16 = coefficients(n=16)
    np.testing.assert_allclose(finer(x16), prolong_image(model(restrict_image(x16)), "linear"), atol=1e-5)
    card = (tmp_path / "poisson_unet_n8" / "README.md").read_text()
    assert "LogCoefficient" in card and "log κ measured more accurate than κ." in card
