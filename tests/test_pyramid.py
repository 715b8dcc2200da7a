"""Coarsening a pyramid U-Net by its finest grid: hierarchy, transfers, coherence, growing a grid."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_multilevel as kml
from keras_multilevel.hierarchy.pyramid import unet_arguments
from keras_multilevel.hierarchy.stencil import prolong_image, restrict_image
from keras_multilevel.optimizers import add_coupling, level_gradient, tau_correction
from test_resolution import smooth_task  # tests/, beside this module


def pyramid_unet(n=16, filters=(4, 8, 16)):
    keras.utils.set_random_seed(0)
    return kml.models.unet(n, filters=filters, pyramid=True)


def task(samples=16, n=16, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, n, n, 3)).astype(dtype)
    return x, (x[..., :1] * x[..., 1:2]).astype(dtype)


def random_like(shapes, seed):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=shape), dtype="float32") for shape in shapes]


def test_hierarchy_is_the_unet_without_its_finest_grid():
    model = pyramid_unet()
    hierarchy = kml.Hierarchy.from_model(model, 3, coarsening="pyramid")
    for index, (resolution, filters) in enumerate([(16, (4, 8, 16)), (8, (8, 16)), (4, (16,))]):
        level = hierarchy[index].model
        assert unet_arguments(level)["resolution"] == resolution and unet_arguments(level)["filters"] == filters
    coarse = hierarchy[1].model
    pairs = {"down_0_conv_0": "down_1_conv_0", "down_1_conv_1": "down_2_conv_1", "up_0_conv_1": "up_1_conv_1",
             "output": "output_1", "output_1": "output_2"}
    for name, deeper in pairs.items():  # Pi: the same layer one grid deeper (its leading block)
        kernel = coarse.get_layer(name).kernel.numpy()
        np.testing.assert_array_equal(kernel, model.get_layer(deeper).kernel.numpy()[:, :, : kernel.shape[2], :])
    assert model.get_layer("down_1_conv_0").kernel.shape[2] == 3 + 4 and coarse.get_layer("down_0_conv_0").kernel.shape[2] == 3
    table = str(hierarchy)
    assert "16x16, 3" in table and "8x8, 2" in table and "4x4, 1" in table
    costs = [level.relative_cost for level in hierarchy]
    assert costs[0] == 1 and 0.3 < costs[1] < 0.7 and costs[2] < costs[1] / 2


def test_restriction_inverts_prolongation_and_gradient_restriction_is_its_adjoint():
    """Pi P = I, R = P^T (<P c, f> = <c, R f>), and P leaves every variable of the finest grid alone."""
    model = pyramid_unet()
    hierarchy = kml.Hierarchy.from_model(model, 2, coarsening="pyramid")
    transfer = hierarchy[0].transfer
    coarse = random_like([v.shape for v in hierarchy[1].variables], 1)
    fine = random_like([v.shape for v in hierarchy[0].variables], 2)
    prolonged = transfer.prolong(coarse)
    for a, b in zip(transfer.restrict(prolonged), coarse, strict=True):
        np.testing.assert_array_equal(a, b)
    left = sum(float(tf.reduce_sum(p * f)) for p, f in zip(prolonged, fine))
    right = sum(float(tf.reduce_sum(c * r)) for c, r in zip(coarse, transfer.restrict_gradient(fine)))
    assert left == pytest.approx(right, rel=1e-5)
    layer_of = [variable.path.split("/")[-2] for variable in model.trainable_variables]
    finest = [p for name, p in zip(layer_of, prolonged) if name.startswith(("down_0_", "up_0_")) or name == "output"]
    assert len(finest) == 10 and not any(np.any(p) for p in finest)
    by_path = dict(zip(["/".join(v.path.split("/")[-2:]) for v in model.trainable_variables], prolonged))
    rows = by_path["down_1_conv_0/kernel"]
    assert not np.any(rows[:, :, 3:, :]) and np.any(rows[:, :, :3, :])  # the pooled fine features' rows: zero


def test_first_order_coherence(float64):
    """grad H_c(Pi theta) = R grad H(theta) (Gaedke-Merzhäuser et al., 2021, eq 9): the coarse network sees the averaged batch."""
    keras.utils.set_random_seed(0)
    model = kml.models.unet(8, filters=(2, 4), pyramid=True)
    model.compile(kml.MultilevelOptimizer(levels=2, coarsening="pyramid"), "mse")
    hierarchy = model.optimizer.hierarchy
    x, y = task(4, 8, dtype="float64")
    data = (tf.constant(x), tf.constant(y), None)
    fine, coarse = hierarchy
    _, _, gradient = level_gradient(fine.model, data, 0.0)
    coarse_data = fine.transfer.restrict_data(data)
    restricted = fine.transfer.restrict_gradient(gradient)
    _, _, coarse_gradient = level_gradient(coarse.model, coarse_data, 0.0)
    shift = [-t for t in tau_correction(coarse_gradient, restricted)]
    corrected = add_coupling(level_gradient(coarse.model, coarse_data, 0.0)[2], shift)
    for got, expected in zip(corrected, restricted, strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12, atol=1e-14)
    assert not all(np.allclose(a, b) for a, b in zip(coarse_gradient, restricted))  # tau is not zero


def test_growing_a_grid_starts_as_the_coarse_prediction_prolongated():
    """Haber et al. (2018, Algorithm 1) with coarsening="pyramid" and a zero rate: after the coarse phase the fine network's
    prediction is the coarse network's on R x, prolongated bilinearly; the finest grid keeps its weights."""
    model = pyramid_unet()
    initial = {"/".join(v.path.split("/")[-2:]): v.numpy() for v in model.trainable_variables}
    optimizer = kml.MultilevelOptimizer(levels=2, coarsening="pyramid", schedule=[2], smoother=keras.optimizers.SGD(0.0))
    model.compile(optimizer, "mse")
    x, y = task(12)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False).history
    coarse = optimizer.hierarchy[1].model
    expected = prolong_image(coarse(restrict_image(x)), "linear")
    np.testing.assert_allclose(model(x), expected, atol=1e-5)
    assert not np.any(model.get_layer("output").kernel.numpy())
    assert not np.any(model.get_layer("down_1_conv_0").kernel.numpy()[:, :, 3:, :])
    for name in ("down_0_conv_0/kernel", "up_0_conv_1/kernel"):
        np.testing.assert_array_equal(model.get_layer(name.split("/")[0]).kernel.numpy(), initial[name])
    assert history["work_units"][-1] == pytest.approx(2 * optimizer.hierarchy[1].relative_cost + 1)


def test_during_a_coarse_phase_the_model_is_the_grown_network():
    """While the coarse level trains (here two of its three batches, at a nonzero rate), the user's model holds its
    weights grown to the fine grid: it predicts the trained coarse network's prediction prolongated, so validation
    and callbacks in the coarse phase see a trained network, not the untouched initial one."""
    model = pyramid_unet()
    optimizer = kml.MultilevelOptimizer(levels=2, coarsening="pyramid", schedule=[3], smoother=keras.optimizers.SGD(0.05))
    model.compile(optimizer, "mse")
    x, y = task(8)
    before = model(x).numpy()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    coarse = optimizer.hierarchy[1].model
    expected = prolong_image(coarse(restrict_image(x)), "linear")
    np.testing.assert_allclose(model(x), expected, atol=1e-5)
    assert not np.allclose(model(x), before, atol=1e-3)


@pytest.mark.slow
def test_coarse_to_fine_and_v_cycles_train_and_reload(tmp_path):
    x, y = smooth_task(32)
    for schedule, steps in (([4, 4], None), (None, "[(1),1,{2}]")):
        model = pyramid_unet()
        optimizer = kml.MultilevelOptimizer(levels=3, coarsening="pyramid", schedule=schedule,
                                            steps=steps, smoother=keras.optimizers.Adam(3e-3))
        model.compile(optimizer, "mse")
        history = model.fit(x, y, batch_size=8, epochs=6, verbose=0).history
        assert history["loss"][-1] < 0.9 * history["loss"][2]  # from the first epoch on the finest level
        model.save(tmp_path / "model.keras")
        loaded = keras.models.load_model(tmp_path / "model.keras")
        assert loaded.optimizer.get_config()["coarsening"] == {"name": "pyramid"}
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_models_that_are_not_pyramid_unets_are_refused():
    with pytest.raises(ValueError, match="pyramid U-Net"):
        kml.Hierarchy.from_model(kml.models.unet(16, filters=(4, 8)), 2, coarsening="pyramid")
    with pytest.raises(ValueError, match="pyramid U-Net"):
        kml.MultilevelOptimizer(levels=2, coarsening="pyramid").attach(kml.models.residual_network((2,), 2, 3, 2))
    with pytest.raises(ValueError, match=r"levels=3 removes 2 grid\(s\).*which has 2"):
        kml.Hierarchy.from_model(pyramid_unet(filters=(4, 8)), 3, coarsening="pyramid")

    def relu_in_one_layer(layer):
        config = layer.get_config()
        if layer.name == "up_0_conv_1":
            config["activation"] = "relu"
        return layer.__class__.from_config(config)

    edited = keras.models.clone_model(pyramid_unet(), clone_function=relu_in_one_layer)
    with pytest.raises(ValueError, match="differs from kml.models.unet.*at layer 'up_0_conv_1'"):
        kml.Hierarchy.from_model(edited, 2, coarsening="pyramid")


def test_at_resolution_by_the_pyramid_adds_and_removes_grids():
    """At 2N the grown network predicts P_lin of the N network on R x; at N/2 the network without its finest grid
    predicts what the N network's coarser grids do (y_1 of ``y = output_0(d_0) + P_lin y_1``) once the second grid
    stops reading the pooled finest features (Pi keeps its rows for R x); up and down again gives the weights back
    (Pi P = I on the shared variables)."""
    model = pyramid_unet()
    x = task(4, 32)[0]
    up = kml.hierarchy.at_resolution(model, 32, coarsening="pyramid")
    assert unet_arguments(up)["filters"] == (4, 4, 8, 16) and unet_arguments(up)["resolution"] == 32
    np.testing.assert_allclose(up(x), prolong_image(model(restrict_image(x)), "linear"), atol=1e-5)
    for a, b in zip(kml.hierarchy.at_resolution(up, 16, coarsening="pyramid").get_weights(), model.get_weights(),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    down = kml.hierarchy.at_resolution(model, 8, coarsening="pyramid")
    assert unet_arguments(down)["filters"] == (8, 16)
    kernel = model.get_layer("down_1_conv_0").kernel
    kernel.assign(tf.concat([kernel[:, :, :3], tf.zeros_like(kernel[:, :, 3:])], axis=2))
    coarse_prediction = keras.Model(model.inputs, model.get_layer("up_0_prolong").input)
    x16 = x[:, :16, :16]
    np.testing.assert_allclose(down(restrict_image(x16)), coarse_prediction(x16), atol=1e-5)
    assert not np.allclose(down(restrict_image(x16)), restrict_image(model(x16)), atol=1e-3)  # not a resampling


def test_at_resolution_by_the_pyramid_refuses_what_it_cannot_move():
    with pytest.raises(ValueError, match="stencil_prolongation"):
        kml.hierarchy.at_resolution(pyramid_unet(), 32, stencil_prolongation="inverse", coarsening="pyramid")
    with pytest.raises(ValueError, match="pyramid U-Net"):
        kml.hierarchy.at_resolution(kml.models.unet(16, filters=(4, 8)), 32, coarsening="pyramid")
    with pytest.raises(ValueError, match="levels=4 removes 3 grid"):
        kml.hierarchy.at_resolution(pyramid_unet(), 2, coarsening="pyramid")
    with pytest.raises(ValueError, match="`coarsening` must be one of"):
        kml.hierarchy.at_resolution(pyramid_unet(), 32, coarsening="depth")
