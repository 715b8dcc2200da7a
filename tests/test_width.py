"""Width coarsening (Ponce et al., 2022, §5 and §7): HEM aggregates, Pi, P, R = P^T."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_multilevel.hierarchy.matching import aggregates, heavy_edge_matching
from keras_multilevel.hierarchy.width import Aggregation, WidthCoarsening, WidthTransfer

layers = keras.layers


def mlp():
    return keras.Sequential(
        [
            keras.Input((6,)),
            layers.Dense(16, activation="relu", name="hidden_1"),
            layers.Dropout(0.3),
            layers.Dense(12, activation="relu", name="hidden_2"),
            layers.Dense(3, name="head"),
        ],
        name="mlp",
    )


def cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(6, 2, padding="same"),
            layers.LeakyReLU(0.1),
            layers.Flatten(),
            layers.Dense(10, activation="relu"),
            layers.Dense(2),
        ],
        name="cnn",
    )


def functional_cnn():
    inputs = keras.Input((12, 2))
    x = layers.Conv1D(8, 3, activation="relu")(inputs)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.ReLU()(layers.Dense(6)(x))
    return keras.Model(inputs, layers.Dense(2)(x), name="functional_cnn")


BUILDERS = {"mlp": mlp, "cnn": cnn, "functional_cnn": functional_cnn}


def random_like(variables, seed):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.standard_normal(v.shape)) for v in variables]


def assign(variables, values):
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def dot(xs, ys):
    return sum(float(tf.reduce_sum(x * y)) for x, y in zip(xs, ys, strict=True))


def assert_all_close(xs, ys):
    for x, y in zip(xs, ys, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


@pytest.fixture(params=[False, True], ids=["eq32", "eq34"])
def scaled(request):
    return request.param


@pytest.fixture(params=sorted(BUILDERS))
def coarsened(request, scaled, float64):
    model = BUILDERS[request.param]()
    coarse, transfer = WidthCoarsening(scaled=scaled).coarsen(model)
    return model, coarse, transfer


def test_restrict_after_prolong_is_the_identity(coarsened):
    model, coarse, transfer = coarsened
    coarse_values = random_like(coarse.trainable_variables, seed=1)
    assert_all_close(transfer.restrict(transfer.prolong(coarse_values)), coarse_values)


def test_restrict_gradient_is_the_transpose_of_prolong(coarsened):
    model, coarse, transfer = coarsened
    x_c = random_like(coarse.trainable_variables, seed=1)
    x = random_like(model.trainable_variables, seed=2)
    np.testing.assert_allclose(
        dot(transfer.prolong(x_c), x), dot(x_c, transfer.restrict_gradient(x))
    )


def test_prolongated_coarse_network_computes_the_same_function(coarsened):
    model, coarse, transfer = coarsened
    assign(coarse.trainable_variables, random_like(coarse.trainable_variables, seed=1))
    assign(model.trainable_variables, transfer.prolong(coarse.trainable_variables))
    data = np.random.default_rng(3).standard_normal((5, *model.input_shape[1:]))
    np.testing.assert_allclose(model(data), coarse(data), rtol=1e-10, atol=1e-12)


def test_widths_shrink_and_the_coarse_model_is_a_usable_keras_model(float64):
    model = cnn()
    strategy = WidthCoarsening()
    coarse, transfer = strategy.coarsen(model)
    assert isinstance(transfer, WidthTransfer)
    for aggregation in transfer.aggregations:
        assert aggregation.fine_size / 2 <= aggregation.coarse_size < aggregation.fine_size
    assert strategy.size(model) == "8-6-10"
    assert strategy.size(coarse) == "-".join(str(a.coarse_size) for a in transfer.aggregations)
    assign(coarse.trainable_variables, transfer.restrict(model.trainable_variables))
    data = np.random.default_rng(0).standard_normal((4, 8, 8, 3))
    assert coarse.predict(data, verbose=0).shape == (4, 2)
    rebuilt = keras.Sequential.from_config(coarse.get_config())
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in coarse.weights]
    # The next coarser level coarsens the coarse model the same way.
    coarser, _ = strategy.coarsen(coarse)
    widths = zip(strategy.size(coarse).split("-"), strategy.size(coarser).split("-"))
    for fine_width, coarse_width in widths:
        assert int(fine_width) / 2 <= int(coarse_width) < int(fine_width)


def test_pointwise_convolution_coarsens_like_dense_layers(float64):
    dense = keras.Sequential(
        [keras.Input((5,)), layers.Dense(8, activation="relu"), layers.Dense(6), layers.Dense(2)]
    )
    conv = keras.Sequential(
        [
            keras.Input((1, 1, 5)),
            layers.Conv2D(8, 1, activation="relu"),
            layers.Conv2D(6, 1),
            layers.Conv2D(2, 1),
        ]
    )
    pairs = zip(conv.trainable_variables, dense.trainable_variables)
    assign(conv.trainable_variables, [tf.reshape(d, c.shape) for c, d in pairs])
    strategy = WidthCoarsening(scaled=True)
    _, dense_transfer = strategy.coarsen(dense)
    _, conv_transfer = strategy.coarsen(conv)
    for a, b in zip(dense_transfer.aggregations, conv_transfer.aggregations, strict=True):
        np.testing.assert_array_equal(a.zeta, b.zeta)
        np.testing.assert_allclose(a.scaling, b.scaling)
    for a, b in zip(
        dense_transfer.restrict(dense.trainable_variables),
        conv_transfer.restrict(conv.trainable_variables),
        strict=True,
    ):
        np.testing.assert_allclose(tf.reshape(a, [-1]), tf.reshape(b, [-1]))


def test_rematch_in_a_compiled_step_keeps_the_widths_and_follows_the_weights(scaled, float64):
    model = mlp()
    coarse, transfer = WidthCoarsening(threshold=0.2, scaled=scaled).coarsen(model)
    before = [a.zeta.numpy() for a in transfer.aggregations]
    assign(model.trainable_variables, random_like(model.trainable_variables, seed=7))

    @tf.function(jit_compile=True)  # as Keras compiles a train step where it can
    def step(every_k_cycles):
        tf.cond(every_k_cycles, lambda: transfer.rematch(model.trainable_variables), lambda: None)

    step(tf.constant(False))
    assert all(np.array_equal(a.zeta, z) for a, z in zip(transfer.aggregations, before))
    step(tf.constant(True))
    assert any(not np.array_equal(a.zeta, z) for a, z in zip(transfer.aggregations, before))
    for aggregation, layer in zip(transfer.aggregations, [model.layers[0], model.layers[2]]):
        n, n_c = aggregation.fine_size, aggregation.coarse_size
        kernel, bias = layer.kernel, layer.bias
        vectors = tf.concat([tf.transpose(kernel), bias[:, None]], axis=1)
        unit = vectors / tf.norm(vectors, axis=1, keepdims=True)
        match = heavy_edge_matching(unit @ tf.transpose(unit), 0.2, pairs=n - n_c)
        np.testing.assert_array_equal(aggregation.zeta, aggregates(match))
        assert np.bincount(aggregation.zeta.numpy()).size == n_c
        expected = tf.norm(vectors, axis=1) if scaled else tf.ones(n, tf.float64)
        np.testing.assert_allclose(aggregation.scaling, expected)
    coarse_values = random_like(coarse.trainable_variables, seed=1)
    assert_all_close(transfer.restrict(transfer.prolong(coarse_values)), coarse_values)


@pytest.mark.parametrize("live", [True, False], ids=["some_dead", "all_dead"])
def test_dead_neurons_keep_the_scaled_operators_exact(live, float64):
    vectors = np.zeros((6, 3))
    if live:
        vectors[3:] = np.random.default_rng(0).standard_normal((3, 3))  # 0 pairs with 1
    aggregation = Aggregation(tf.constant(vectors), threshold=-1.0, scaled=True)
    assert np.all(np.isfinite(aggregation.scaling)) and np.all(aggregation.scaling.numpy() > 0)
    coarse = tf.constant(np.random.default_rng(1).standard_normal((aggregation.coarse_size, 2)))
    np.testing.assert_allclose(aggregation.restrict(aggregation.prolong(coarse)), coarse)


def test_relative_cost_is_the_ratio_of_multiply_adds():
    strategy = WidthCoarsening()
    model = cnn()
    coarse, _ = strategy.coarsen(model)
    c1, c2, d1 = (int(w) for w in strategy.size(coarse).split("-"))

    def multiply_adds(w1, w2, w3):
        # conv 3x3x3->w1 on 6x6 outputs, conv 2x2xw1->w2 on 3x3, dense 9*w2->w3, dense w3->2
        return 27 * w1 * 36 + 4 * w1 * w2 * 9 + 9 * w2 * w3 + w3 * 2

    assert strategy.relative_cost(model, model) == 1.0
    assert strategy.relative_cost(coarse, model) == pytest.approx(
        multiply_adds(c1, c2, d1) / multiply_adds(8, 6, 10)
    )


def test_describe_and_config():
    strategy = WidthCoarsening(threshold=0.25, scaled=True, rematch_every=10)
    assert strategy.name == "width" and strategy.size_label == "widths"
    assert strategy.describe() == (
        "width (heavy edge matching, threshold 0.25, scaled P of eq 34, re-matched every 10 cycles)"
    )
    assert WidthCoarsening(rematch_every=None).describe() == (
        "width (heavy edge matching, threshold 0.0, P of eq 32, never re-matched)"
    )
    assert WidthCoarsening(**strategy.get_config()).get_config() == strategy.get_config()


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"threshold": 1.5}, r"threshold.*\[-1, 1\]"),
        ({"threshold": "0.1"}, r"threshold.*\[-1, 1\]"),
        ({"rematch_every": 0}, "rematch_every.*positive"),
        ({"rematch_every": -3}, "rematch_every.*positive"),
        ({"scaled": "yes"}, "scaled"),
    ],
)
def test_bad_arguments_are_explained(arguments, message):
    with pytest.raises(ValueError, match=message):
        WidthCoarsening(**arguments)


def test_levels_are_limited_by_the_narrowest_hidden_layer():
    strategy = WidthCoarsening()
    strategy.check(mlp(), 4)  # widths 16 and 12 >= 2**3
    with pytest.raises(ValueError, match=r"'hidden_2'.*width 12.*levels <= 4"):
        strategy.check(mlp(), 5)
    narrow = keras.Sequential(
        [keras.Input((3,)), layers.Dense(1, name="bottleneck"), layers.Dense(2)]
    )
    with pytest.raises(ValueError, match=r"'bottleneck'.*width 1.*levels <= 1"):
        strategy.check(narrow, 2)


def test_threshold_that_pairs_nothing_is_explained():
    with pytest.raises(ValueError, match=r"paired no neurons.*Lower the threshold"):
        WidthCoarsening(threshold=1.0).coarsen(mlp())


def sequential(*middle):
    return keras.Sequential([keras.Input((4, 4, 2)), *middle, layers.Flatten(), layers.Dense(2)])


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: sequential(layers.Conv2D(4, 1), layers.BatchNormalization(name="bn")),
            r"'bn' \(BatchNormalization\)",
        ),
        (
            lambda: keras.Sequential(
                [keras.Input((2, 4, 4)), layers.Conv2D(4, 1, data_format="channels_first"),
                 layers.Flatten(), layers.Dense(2)]
            ),
            "channels_last",
        ),
        (lambda: sequential(layers.Conv2D(4, 1, trainable=False, name="frozen")), "'frozen'"),
        (lambda: sequential(), "at least 2"),
        (lambda: keras.Sequential([layers.Dense(4), layers.Dense(2)]), "must be built"),
    ],
    ids=["batch_norm", "channels_first", "frozen", "one_layer", "unbuilt"],
)
def test_unsupported_models_are_explained(build, message):
    with pytest.raises(ValueError, match=message):
        WidthCoarsening().check(build(), 2)


def test_non_chain_models_are_explained():
    inputs = keras.Input((4,))
    shared = layers.Dense(4, name="shared")
    branching = keras.Model(inputs, layers.Dense(2)(shared(shared(inputs))))
    with pytest.raises(ValueError, match="chain"):
        WidthCoarsening().check(branching, 2)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden, self.head = layers.Dense(4), layers.Dense(2)

        def call(self, x):
            return self.head(self.hidden(x))

    subclassed = Subclassed()
    subclassed(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="subclassed"):
        WidthCoarsening().check(subclassed, 2)
