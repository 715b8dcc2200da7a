"""The zoo's error metrics, one definition for training records, cards and ``evaluate``.

``l2`` is the mean squared error over all pixels, the L2 loss that Ponce et
al. (2022) train and report for their Poisson and Darcy regressions (§8,
eqs 41-43). ``relative_l2`` (the mean of
``||u_pred - u||_2 / ||u||_2`` over examples) and ``linf`` (the largest pointwise
error) are the usual operator-learning errors beside it: the first does not
depend on the scale of the solution, the second shows the worst pixel.
"""

import numpy as np

NAMES = ("l2", "relative_l2", "linf")


def metrics(predictions, targets):
    """Errors of ``predictions`` against ``targets``, both of shape ``(examples, ...)``.

    Targets of shape ``(examples, N, N)`` and predictions ``(examples, N, N, 1)``
    are compared pixel by pixel (any shapes with the same number of values per
    example are).

    Returns:
        dict of floats: ``l2`` (mean squared error over all pixels),
        ``relative_l2`` (mean over examples of ``||e||_2 / ||u||_2``),
        ``relative_l2_std`` (the standard deviation of that ratio over the
        examples, which sizes the standard error ``std / sqrt(examples)`` of
        ``relative_l2``), ``linf`` (largest ``|e|`` over examples and pixels)
        and ``examples``.
    """
    predictions = np.asarray(predictions, dtype="float64")
    targets = np.asarray(targets, dtype="float64")
    if len(predictions) != len(targets) or not len(targets):
        raise ValueError(
            f"`predictions` and `targets` must hold the same number (> 0) of examples, got "
            f"{len(predictions)} and {len(targets)}."
        )
    errors = predictions.reshape(len(predictions), -1) - targets.reshape(len(targets), -1)
    norms = np.linalg.norm(targets.reshape(len(targets), -1), axis=1)
    if not np.all(norms > 0):
        raise ValueError("`targets` has an example that is zero everywhere: its relative L2 error is undefined.")
    relative = np.linalg.norm(errors, axis=1) / norms
    return {
        "l2": float(np.mean(errors**2)),
        "relative_l2": float(np.mean(relative)),
        "relative_l2_std": float(np.std(relative)),
        "linf": float(np.max(np.abs(errors))),
        "examples": len(targets),
    }


def with_channel(dataset):
    """``(inputs, u)`` batches with ``u`` of shape ``(N, N)`` as ``(inputs, u[..., None])``: the U-Net's output shape."""
    return dataset.map(lambda inputs, target: (inputs, target[..., None]))


def measure(model, dataset):
    """:func:`metrics` of ``model`` on every ``(inputs, target)`` batch of ``dataset``."""
    predictions, targets = [], []
    for inputs, target in dataset:
        predictions.append(model(inputs, training=False))
        targets.append(target)
    if not targets:
        raise ValueError("`dataset` is empty: there is nothing to measure.")
    return metrics(np.concatenate(predictions), np.concatenate(targets))
