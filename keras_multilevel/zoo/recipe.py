"""Training recipes: the JSON dict from which a preset is retrained exactly.

Example (the U-Net of :func:`kml.models.unet` on Poisson at N = 32, trained
coarse to fine through the resolution hierarchy, Haber et al., 2018, Algorithm 1)::

    {
        "problem": "poisson",               # "poisson" (Ponce et al., 2022, §8.1) or "darcy" (Ponce et al., 2022, §8.2)
        "target": "target",                 # optional: the data set's target (Darcy: "pressure")
        "resolution": 32,                   # N of the preset
        "architecture": {"filters": [16, 32, 64], "convolutions": 2,
                         "kernel_size": 3, "activation": "gelu"},   # kml.models.unet(N, **architecture)
        "smoother": {"class_name": "Adam", "config": {"learning_rate": 0.001}},  # keras.optimizers.deserialize
        "levels": 3,                        # MultilevelOptimizer(levels=...)
        "coarsening": "resolution",         # optional, MultilevelOptimizer(coarsening=...)
        "schedule": [400, 400],             # optional, MultilevelOptimizer(schedule=...)
                                            # (without it, V-cycles; "steps": "[(1),1,{1}]" optional)
        "learning_rate_divisor": [2, 1, 1], # optional, MultilevelOptimizer(learning_rate_divisor=...),
                                            # finest first: here the finest grid at half the rate
        "epochs": 20,
        "batch_size": 32,                   # the Keras batch size given to fit
        "seed": 0,                          # keras.utils.set_random_seed: initialization and dropout
        "dataset_seed": 0,                  # generation (and shuffling) seed of the training data
        "samples": 10000,                   # optional: examples in all splits (default 10,000)
        "why": "..."                        # optional: why this recipe was chosen (the card says it)
    }
"""

REQUIRED = ("problem", "resolution", "architecture", "smoother", "levels", "epochs", "batch_size", "seed", "dataset_seed")
OPTIONAL = ("target", "samples", "coarsening", "schedule", "steps", "learning_rate_divisor", "why")
OPTIMIZER_KEYS = ("levels", "coarsening", "schedule", "steps", "learning_rate_divisor")  # passed to MultilevelOptimizer as given


def check_recipe(recipe):
    """``recipe`` if it has every required key and no unknown one, else a ``ValueError`` naming them.

    The values are checked where they are used (``kml.models.unet``,
    ``kml.MultilevelOptimizer``, ``kml.datasets.load``), whose errors name
    the argument.
    """
    if not isinstance(recipe, dict):
        raise ValueError(f"`recipe` must be a dict (see keras_multilevel.zoo.recipe), got {type(recipe).__name__}.")
    missing = [key for key in REQUIRED if key not in recipe]
    unknown = sorted(set(recipe) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise ValueError(
            f"`recipe` is missing {missing} and has unknown keys {unknown}. Required keys: {list(REQUIRED)}; "
            f"optional: {list(OPTIONAL)} (see keras_multilevel.zoo.recipe for an example)."
        )
    return recipe


def batches_per_epoch(recipe):
    """How many batches of ``recipe["batch_size"]`` an epoch of its training split makes (the last one may be short)."""
    return -(-dataset_description(recipe)["splits"]["train"] // recipe["batch_size"])


def dataset_description(recipe):
    """The data set a recipe trains on: name, target, resolution, samples, generation seed and split sizes."""
    from keras_multilevel.pde import builders, problems

    problem = recipe["problem"]
    samples = problems.get(problem).default_samples if recipe.get("samples") is None else recipe["samples"]
    return {
        "name": problem,
        "target": recipe.get("target") or problems.get(problem).default_target,
        "resolution": recipe["resolution"],
        "samples": samples,
        "seed": recipe["dataset_seed"],
        "splits": builders.split_sizes(samples),
    }
