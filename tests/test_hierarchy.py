"""Depth hierarchies: coarse networks, printed summary, and bad input."""

import keras
import numpy as np
import pytest

import keras_multilevel as kml
from keras_multilevel.layers import ResidualStack


def small_network(blocks=16, **kwargs):
    return kml.models.residual_network((2,), outputs=2, width=3, blocks=blocks, **kwargs)


def stacks(model):
    return [layer for layer in model.layers if isinstance(layer, ResidualStack)]


def test_each_level_halves_the_blocks_and_doubles_the_time_step():
    hierarchy = kml.Hierarchy.from_model(small_network(16), levels=4)
    assert len(hierarchy) == 4
    for index, level in enumerate(hierarchy):
        (stack,) = stacks(level.model)
        assert stack.blocks == 16 // 2**index
        assert stack.step_size == pytest.approx(2**index / 16)
        assert stack.final_time == 1.0
        assert level.relative_cost == 2.0**-index
    assert hierarchy[0].model is hierarchy.levels[0].model
    assert hierarchy[-1].transfer is None


def test_coarse_weights_start_as_the_restricted_fine_weights():
    model = small_network(8)
    hierarchy = kml.Hierarchy.from_model(model, levels=2, interpolation="constant")
    fine, coarse = hierarchy[0].model, hierarchy[1].model
    fine_kernel = stacks(fine)[0].kernel.numpy()
    np.testing.assert_allclose(stacks(coarse)[0].kernel.numpy(), 0.5 * (fine_kernel[0::2] + fine_kernel[1::2]))
    np.testing.assert_array_equal(coarse.get_layer("head").kernel.numpy(), fine.get_layer("head").kernel.numpy())
    np.testing.assert_array_equal(coarse.get_layer("opening").kernel.numpy(), fine.get_layer("opening").kernel.numpy())


def test_a_coarse_network_is_a_usable_keras_model():
    model = small_network(8)
    hierarchy = kml.Hierarchy.from_model(model, levels=3)
    x = np.random.default_rng(0).normal(size=(4, 2)).astype("float32")
    assert hierarchy[2].model.predict(x, verbose=0).shape == (4, 2)


def test_summary_table_lists_levels_and_operator_complexity():
    hierarchy = kml.Hierarchy.from_model(small_network(64), levels=3)
    text = repr(hierarchy)
    assert "number of levels:    3" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "1", "2"]
    assert [int(row[1]) for row in rows] == [64, 32, 16]
    parameters = [int(row[2].replace(",", "")) for row in rows]
    assert parameters == [level.parameters for level in hierarchy]
    assert hierarchy.operator_complexity == pytest.approx(sum(parameters) / parameters[0])
    assert f"{hierarchy.operator_complexity:.3f}" in text


def test_nested_models_are_coarsened():
    inner = keras.Sequential([keras.Input((3,)), kml.DenseResidualStack(8, name="inner_stack")], name="inner")
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(1)(inner(keras.layers.Dense(3)(inputs)))
    hierarchy = kml.Hierarchy.from_model(keras.Model(inputs, outputs), levels=3)
    coarse_inner = hierarchy[2].model.get_layer("inner")
    assert coarse_inner.get_layer("inner_stack").blocks == 2


def test_linear_interpolation_hierarchy():
    hierarchy = kml.Hierarchy.from_model(small_network(8), levels=2, interpolation="linear")
    assert "linear interpolation" in repr(hierarchy)


@pytest.mark.parametrize(
    "levels, message",
    [
        (0, "`levels` must be an integer >= 1"),
        (2.0, "`levels` must be an integer >= 1"),
        (5, r"levels=5 needs .* divisible by 2\*\*4 = 16.*has 12 blocks: use levels <= 3"),
    ],
)
def test_bad_levels(levels, message):
    with pytest.raises(ValueError, match=message):
        kml.Hierarchy.from_model(small_network(12), levels=levels)


def test_odd_block_count_allows_only_one_level():
    with pytest.raises(ValueError, match="has 5 blocks: use levels <= 1"):
        kml.Hierarchy.from_model(small_network(5), levels=2)


def test_model_without_coarsenable_layer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="no coarsenable layer.*DenseResidualStack"):
        kml.Hierarchy.from_model(model, levels=2)


def test_subclassed_model_is_rejected():
    class Custom(keras.Model):
        def __init__(self):
            super().__init__()
            self.stack = kml.DenseResidualStack(4)

        def call(self, x):
            return self.stack(x)

    with pytest.raises(ValueError, match="subclassed model"):
        kml.Hierarchy.from_model(Custom(), levels=2)


def test_unbuilt_model_is_rejected():
    model = keras.Sequential([keras.layers.Dense(3), kml.DenseResidualStack(4)])
    with pytest.raises(ValueError, match="must be built"):
        kml.Hierarchy.from_model(model, levels=2)


def test_unknown_names():
    with pytest.raises(ValueError, match=r"Unknown coarsening 'breadth'.*\['depth', 'pyramid', 'resolution', 'width'\]"):
        kml.Hierarchy.from_model(small_network(8), levels=2, coarsening="breadth")
    with pytest.raises(ValueError, match="Unknown interpolation 'spline'"):
        kml.Hierarchy.from_model(small_network(8), levels=2, interpolation="spline")


def test_a_new_coarsening_is_one_subclass_and_works_by_name():
    """The coarsening protocol: a subclass of kml.hierarchy.Coarsening with a name registers itself, trains
    through the optimizer by that name, prints in the table and round-trips through get_config; a method
    it leaves out is named when the hierarchy needs it."""
    from keras_multilevel.hierarchy.coarsening import COARSENINGS

    class EveryOtherBlock(kml.hierarchy.Coarsening):
        name = "test_every_other_block"
        size_label = "blocks"

        def __init__(self):
            self.depth = kml.hierarchy.DepthCoarsening()

        def check(self, model, levels):
            self.depth.check(model, levels)

        def coarsen(self, model):
            return self.depth.coarsen(model)

        def relative_cost(self, model, finest):
            return self.depth.relative_cost(model, finest)

        def size(self, model):
            return self.depth.size(model)

    class Incomplete(kml.hierarchy.Coarsening):
        def check(self, model, levels):
            pass

    try:
        assert COARSENINGS["test_every_other_block"] is EveryOtherBlock and "Incomplete" not in str(COARSENINGS)
        x, y = kml.datasets.concentric_circles(32, seed=0)
        keras.utils.set_random_seed(0)
        model = small_network(blocks=8)
        optimizer = kml.MultilevelOptimizer(levels=3, coarsening="test_every_other_block")
        model.compile(optimizer=optimizer, loss="categorical_crossentropy")
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        assert [optimizer.hierarchy.coarsening.size(level.model) for level in optimizer.hierarchy.levels] == [8, 4, 2]
        assert "test_every_other_block" in str(optimizer.hierarchy)
        again = kml.MultilevelOptimizer.from_config(optimizer.get_config())
        assert isinstance(again.coarsening, EveryOtherBlock)
        with pytest.raises(NotImplementedError, match="Incomplete must implement coarsen"):
            kml.hierarchy.Hierarchy.from_model(small_network(blocks=8), levels=2, coarsening=Incomplete())
    finally:
        COARSENINGS.pop("test_every_other_block", None)
