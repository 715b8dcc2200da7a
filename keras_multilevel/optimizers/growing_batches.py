"""Hybrid stochastic-deterministic RMTR: minibatches that grow up to the full set (Kopaničáková and Krause, 2023).

Kopaničáková and Krause (2023) (whose full text was not reachable here; the abstract says its RMTR
"operates in hybrid (stochastic-deterministic) settings by adaptively
adjusting mini-batch sizes during the training") starts on small minibatches
and enlarges them when the sampled objective stops being a trustworthy model
of the full one. Inside one ``model.fit`` the batch size is fixed by the
dataset, so this is a loop around ``fit``, one epoch per call, with this
rule (ours, stated here because Kopaničáková and Krause's (2023) exact rule could not be read):

* after each epoch, if the finest level's trust-region radius has fallen
  below ``min_radius`` (the ratio tests on the sampled objective kept
  rejecting or shrinking: the sampled reduction no longer predicts the
  actual one), the batch size is multiplied by ``growth`` (at most the whole
  set) and the finest radius starts again from its initial value;
* once the batch is the whole set, every cycle is deterministic (monotone
  RMTR).

Each new batch size traces the train step once more.
"""

import keras
import numpy as np


def fit_with_growing_batches(model, x, y, batch_size, epochs, min_radius=1e-2, growth=2, **fit_kwargs):
    """Trains ``model`` (compiled with ``MultilevelOptimizer(scheme="rmtr")``) with growing minibatches.

    Args:
        model: the compiled model.
        x, y: the whole training set (arrays; each epoch shuffles it).
        batch_size: the first batch size.
        epochs: epochs in all.
        min_radius: the finest radius below which the batch grows.
        growth: the factor by which it grows (> 1).
        **fit_kwargs: passed to every ``model.fit`` call (``validation_data``,
            ``callbacks``, ...); not ``batch_size``, ``epochs`` or ``initial_epoch``.

    Returns:
        A ``keras.callbacks.History`` with every epoch's logs and
        ``history["batch_size"]``, the batch size of each epoch.
    """
    optimizer = model.optimizer
    if not getattr(getattr(optimizer, "scheme", None), "trust_region", False):
        raise ValueError(
            "fit_with_growing_batches needs a model compiled with MultilevelOptimizer(scheme='rmtr'): "
            "its batch grows when the finest trust region shrinks."
        )
    taken = sorted({"batch_size", "epochs", "initial_epoch", "x", "y"} & set(fit_kwargs))
    if taken:
        raise ValueError(f"fit_with_growing_batches sets {taken} itself: leave them out.")
    if isinstance(growth, bool) or not isinstance(growth, (int, float)) or growth <= 1:
        raise ValueError(f"`growth` must be a number > 1, got {growth!r}.")
    if isinstance(min_radius, bool) or not isinstance(min_radius, (int, float)) or min_radius < 0:
        raise ValueError(f"`min_radius` must be a number >= 0, got {min_radius!r}.")
    for name, value, least in (("batch_size", batch_size, 1), ("epochs", epochs, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"`{name}` must be an integer >= {least}, got {value!r}.")
    samples = len(x)
    if len(y) != samples:
        raise ValueError(f"`x` and `y` must have the same number of rows, got {samples} and {len(y)}.")
    size = min(int(batch_size), samples)
    history = keras.callbacks.History()
    history.history = {}
    for epoch in range(epochs):
        logs = model.fit(x, y, batch_size=size, epochs=epoch + 1, initial_epoch=epoch, **fit_kwargs).history
        for key, values in {**logs, "batch_size": [size]}.items():
            history.history.setdefault(key, []).extend(values)
        finest = optimizer.trust_region_levels[0]
        if size < samples and float(finest.radius.numpy()) < min_radius:
            size = min(samples, int(np.ceil(growth * size)))
            finest.radius.assign(optimizer.trust_region.radius)
    return history
