"""The model card (``README.md``) of a preset, written from its metadata."""

import statistics

from keras_multilevel import references
from keras_multilevel.pde import problems
from keras_multilevel.zoo.recipe import OPTIMIZER_KEYS

# The papers a card cites, by author and year; its References section lists them in full.
WORK_UNITS = "Gaedke-Merzhäuser et al. (2021)"  # work units, eq 10
DATA = "Ponce et al. (2022)"  # the Poisson and Darcy data, §8
MULTISCALE = "Haber et al. (2018)"  # the resolution hierarchy, coarse to fine
cite = references.cite


def _stencil_prolongation(recipe):
    """How the recipe's coarse-to-fine phases move the stencils to the finer grid."""
    from keras_multilevel.hierarchy import get_coarsening

    if get_coarsening(recipe["coarsening"]).stencil_prolongation == "inverse":
        return (
            "the stencils are prolongated by the inverse of the Galerkin restriction `K_H = R K_h P` "
            f"({cite(MULTISCALE, 'eq 10, §3.2', parenthetical=True)})"
        )
    return (
        f"the stencils keep their values on the finer grid ({cite(MULTISCALE, '§4.1', possessive=True)} original kernels; the inverse of "
        "§3.2 makes trained U-Nets worse than random weights, `benchmarks/results/stencil_prolongations_*.md`)"
    )


def _coarsening_name(recipe):
    from keras_multilevel.hierarchy import get_coarsening

    return get_coarsening(recipe["coarsening"]).name


def _grown(recipe):
    """The scheme of a recipe with ``coarsening="pyramid"``: V-cycles, or coarse to fine growing a grid a phase."""
    total = len(recipe["architecture"]["filters"])
    networks = ", ".join(
        f"{total - level} grid{'s' if total - level > 1 else ''} on {recipe['resolution'] >> level}×"
        f"{recipe['resolution'] >> level}"
        for level in range(recipe["levels"])
    )
    if "schedule" not in recipe:
        return (
            "MG/OPT V-cycles through the pyramid hierarchy (`coarsening='pyramid'`: each coarser level is the "
            f"U-Net without its finest grid, on the 2×2-averaged batches): {networks}; one cycle per batch, "
            f"steps per level `{recipe.get('steps', 'the default')}`."
        )
    return (
        f"Coarse to fine by growing the U-Net a grid at a time ({cite(MULTISCALE, 'Algorithm 1', parenthetical=True)}, with "
        "`coarsening='pyramid'`): training starts with the U-Net without its finest grid(s), on the batches "
        f"averaged to its input grid ({networks}). At the start of each finer level's phase the network grows the "
        "next finer grid: the coarser grids keep their trained weights (their stencils keep their physical "
        "scale), the new grid's own convolutions keep their initial weights, and its output layer starts at "
        "zero, so the grown network first predicts exactly the coarser one's prediction, bilinearly "
        "prolongated; the finest grid trains from there. Measured against one level from the same initial "
        "weights in `benchmarks/results/zoo/budget/grown/` of the repository. "
        f"Schedule (batches per coarse level, coarsest first): `{recipe.get('schedule')}`; every later batch "
        "trains the full network."
    )


def _scheme(recipe):
    if recipe["levels"] == 1:
        return (
            "Single-level training: every batch is one step of the optimizer below on the N×N network "
            f"(`kml.MultilevelOptimizer(levels=1)`, which counts the work units). Coarse to fine ({cite(MULTISCALE, 'Algorithm 1', parenthetical=True)}), "
            "through the resolution hierarchy or growing the U-Net a grid (`coarsening='pyramid'`), was measured "
            "against it from the same initial weights in `benchmarks/results/zoo/budget/` of the repository (the "
            "README's \"Multilevel in resolution\" says where it pays off and where not)."
        )
    if _coarsening_name(recipe) == "pyramid":
        return _grown(recipe)
    grids = ", ".join(f"{recipe['resolution'] >> level}×{recipe['resolution'] >> level}" for level in range(recipe["levels"]))
    if "schedule" not in recipe:
        return (
            f"MG/OPT V-cycles through the resolution hierarchy ({cite(MULTISCALE, '§3.1-3.2', parenthetical=True)}): the same U-Net on the "
            f"grids {grids}, one cycle per batch, steps per level `{recipe.get('steps', 'the default')}`."
        )
    return (
        f"Coarse to fine through the resolution hierarchy, {cite(MULTISCALE, '§3.2 and Algorithm 1')}: the same U-Net "
        f"on the grids {grids}. Training starts on the coarsest grid, on the 2×2-averaged batches, where "
        "every convolution is 4 times cheaper per halving; at the start of each finer level's phase "
        f"{_stencil_prolongation(recipe)}, and the finest grid trains from there. Why this scheme: it is the training method of the "
        f"resolution hierarchy ({cite(MULTISCALE, parenthetical=True)}), and MG/OPT V-cycles over the same hierarchy did not train these "
        "networks, with Adam or SGD (`benchmarks/results/resolution_schemes.md`). Whether it pays off against training the N×N network alone is measured, from the same "
        "initial weights, in `benchmarks/results/zoo/` of the repository. "
        f"Schedule (batches per coarse level, coarsest first): `{recipe.get('schedule')}`; every later "
        "batch trains the finest grid."
    )


def _call(serialized, module="keras.optimizers"):
    """A serialized Keras object (``{"class_name", "config"[, "module"]}``) as the Python call that builds it;
    nested objects (a learning-rate schedule) likewise, ``None`` settings and names left out."""
    settings = ", ".join(
        f"{key}={_call(value) if isinstance(value, dict) and 'class_name' in value else repr(value)}"
        for key, value in serialized.get("config", {}).items()
        if value is not None and key != "name"
    )
    return f"{serialized.get('module', module)}.{serialized['class_name']}({settings})"


def _optimizer(recipe):
    """The recipe's optimizer as the Python call that builds it."""
    arguments = [f"{key}={recipe[key]!r}" for key in OPTIMIZER_KEYS if key in recipe]
    return f"kml.MultilevelOptimizer({', '.join(arguments)}, smoother={_call(recipe['smoother'])})"


def _recipe_sections(metadata):
    """Architecture and Training of a preset made from a recipe (:func:`keras_multilevel.zoo.create`)."""
    recipe, dataset, training, n = metadata["recipe"], metadata["dataset"], metadata["training"], metadata["resolution"]
    architecture = "".join(f", {key}={value!r}" for key, value in recipe["architecture"].items())
    splits = " / ".join(f"{size:,}" for size in dataset["splits"].values())
    pyramid = (
        " In its pyramid form each coarser grid also reads the input averaged to it, and each grid adds its own "
        "pointwise prediction to the coarser grid's, bilinearly prolongated."
        if recipe["architecture"].get("pyramid") else ""
    )
    logged = (
        " Its first layer on each grid, `kml.layers.LogCoefficient` (`down_i_log`, no weights), replaces the "
        "coefficient channel by its logarithm (the model still takes the coefficient itself, which must be positive): "
        "the solution depends on the coefficient through `grad log` of it, and the U-Net learns it more accurately "
        "from the logarithm (measured in `benchmarks/results/zoo/logk/` of the repository)."
        if recipe["architecture"].get("log_input") else ""
    )
    why = f"\n\nWhy this recipe: {recipe['why']}" if recipe.get("why") else ""
    cpu = f" ({training['cpu_time_s']:,.0f} CPU s)" if "cpu_time_s" in training else ""
    return f"""## Architecture

`kml.models.unet({n}{architecture})`: stride-1 same-padded convolutions on
each grid, 2×2 average pooling down and nearest-neighbour upsampling up with skip connections,
a pointwise linear output.{pyramid}{logged} Every weight is a stencil or a pointwise map, so the network can
move to another resolution ({cite(MULTISCALE, '§3.2', parenthetical=True)}).

## Training

{_scheme(recipe)}{why}

- Data: `{dataset['name']}` at N = {n}, {dataset['samples']:,} examples generated with seed {dataset['seed']}
  (train / validation / test = {splits}), target `{dataset['target']}`.
- Loss: mean squared error. Optimizer: `{_optimizer(recipe)}`.
- {recipe['epochs']} epochs of batches of {recipe['batch_size']}, seed {recipe['seed']}: {training['work_units']:,.0f} work units
  (fine gradient evaluations, {cite(WORK_UNITS, 'eq 10', parenthetical=True)}) in {training['wall_time_s']:,.0f} s{cpu}.

The full recipe is `recipe` in `metadata.json`."""


def _own_sections(metadata):
    """Architecture and Training of a model its author trained (:func:`keras_multilevel.zoo.save_to_preset`)."""
    dataset, n = metadata["dataset"], metadata["resolution"]
    splits = " / ".join(f"{size:,}" for size in dataset["splits"].values())
    said = "".join(f"\n- {key}: {value}" for key, value in metadata["training"].items()) or "\n- (nothing recorded)"
    return f"""## Architecture

A Keras model of {metadata["parameter_count"]:,} parameters; `config.json` holds it.

## Training

Trained by its author, not from a recipe (`kml.zoo.save_to_preset`): it cannot be retrained with
`keras-multilevel zoo train`. Data: `{dataset['name']}` at N = {n}, {dataset['samples']:,} examples generated
with seed {dataset['seed']} (train / validation / test = {splits}), target `{dataset['target']}`.
What its author recorded of the training:
{said}"""


def _spread(values, fmt=".4f"):
    """``median [min-max]`` of ``values`` (one value: itself)."""
    middle = statistics.median(values)
    return f"{middle:{fmt}}" if len(values) == 1 else f"{middle:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def _compared_section(metadata):
    """What the repository's benchmarks measured of this preset beside others (``metadata["comparisons"]``,
    written by its ``benchmarks/zoo_cards.py``): a neural operator on the same data, the recipe over seeds, and
    the preset at N/2 and 2N. Empty when nothing was measured."""
    compared, n = metadata.get("comparisons") or {}, metadata["resolution"]
    parts = []
    if "fno" in compared or "recipe" in compared:
        at_2n, cpu = compared.get("resolutions", {}).get("2N pyramid"), metadata["training"].get("cpu_time_s")
        rows = [f"| this preset (seed {metadata['recipe']['seed'] if metadata['recipe'] else '-'}) | "
                f"{metadata['parameter_count']:,} | {'-' if cpu is None else f'{cpu:,.0f}'} | "
                f"{metadata['metrics']['test']['relative_l2']:.4f} | {'-' if at_2n is None else f'{at_2n:.4f}'} |"]
        commands = []
        for key, label in (("recipe", "its recipe, seeds {seeds}"), ("fno", "FNO (`neuraloperator`), seeds {seeds}")):
            if key in compared:
                entry = compared[key]
                rows.append(
                    f"| {label.format(seeds=', '.join(map(str, entry['seeds'])))} | {entry['parameters']:,} | "
                    f"{_spread(entry['cpu_time_s'], fmt=',.0f')} | {_spread(entry['relative_l2'])} | "
                    f"{_spread(entry['relative_l2_2n']) if 'relative_l2_2n' in entry else '-'} |"
                )
                commands.append(f"`{entry['command']}`")
        parts.append(
            "On this preset's data set and test split (relative L2; median [min-max] over seeds; CPU seconds of "
            "training: Keras on 2 shared cores, the FNO on one torch thread):\n\n"
            f"| model | parameters | training CPU s | test relative L2 at N = {n} | at 2N = {2 * n} (fresh examples) |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows)
            + "\n\nMeasured by " + " and ".join(commands) + " in the repository."
        )
    if "resolutions" in compared:
        moved = compared["resolutions"]
        grids = (("N/2", n // 2), ("N", n), ("2N", 2 * n))
        rows = [
            ("`kml.zoo.load(name, resolution=M)` (the pyramid's grids)", ("N/2 pyramid", "N (fresh)", "2N pyramid")),
            ("stencils transferred (Galerkin down, unchanged up)", ("N/2 Galerkin", "N (fresh)", "2N stencils unchanged")),
            ("the weights unchanged", ("N/2 unchanged", "N (fresh)", None)),
            ("the exact solution averaged to N, prolongated bilinearly", (None, None, "2N floor")),
        ]
        table = "\n".join(
            f"| {label} | " + " | ".join("-" if key is None else f"{moved[key]:.4f}" for key in keys) + " |"
            for label, keys in rows
        )
        parts.append(
            f"At other resolutions, without retraining ({cite(MULTISCALE, '§4.1', parenthetical=True)}; relative L2 on "
            f"{moved['samples']} freshly generated examples per grid, seed {moved['seed']}):\n\n"
            "| moved by | " + " | ".join(f"{label} = {m}" for label, m in grids) + " |\n|---|---|---|---|\n" + table
            + f"\n\nMeasured by `{moved['command']}` in the repository. At 2N the pyramid's network predicts the N "
            "network's output on the averaged input, prolongated bilinearly: it adds no detail finer than N, and the "
            "last row is what prolongating the exact solution's average alone loses."
        )
    return "\n\n## Compared\n\n" + "\n\n".join(parts) if parts else ""


def card(metadata):
    """The markdown model card of a preset from its metadata (everything but ``files``)."""
    dataset, metrics = metadata["dataset"], metadata["metrics"]
    name, n = metadata["name"], metadata["resolution"]
    problem = problems.get(metadata["problem"])  # what the card says about the problem: the registry's
    output, inputs, symbol = problem.card_output.format(data=cite(DATA, parenthetical=True)), problem.card_input, problem.card_symbol
    tolerance = metadata["tolerance"]
    bound = metrics["test"][tolerance["metric"]] * (1 + tolerance["relative"])
    sections = _recipe_sections(metadata) if metadata["recipe"] is not None else _own_sections(metadata)
    retrain = (
        f"keras-multilevel zoo train {name} --out retrained/               # the recipe again, compared with this card\n"
        if metadata["recipe"] is not None else ""
    )
    rows = "\n".join(
        f"| {split} | {values['examples']:,} | {values['l2']:.4e} | {values['relative_l2']:.4f} "
        f"(± {values['relative_l2_std']:.4f}) | {values['linf']:.4e} |"
        for split, values in metrics.items()
    )
    coarser = f'\ncoarse = kml.zoo.load("{name}", resolution={n // 2})   # N/2, without retraining' if n % 2 == 0 else ""
    text = f"""# {name}

A {"U-Net " if metadata["recipe"] is not None else ""}surrogate of a PDE solver: from {inputs} on the {n}×{n} grid of cell centres, it predicts
{output}, at the same {n}×{n} points. Data set: {cite(DATA, '§8')}, regenerated with FEniCSx
(`kml.datasets.load("{dataset['name']}", resolution={n})`).

- **Input** `(batch, {n}, {n}, 3)`: channel 0 the coefficient ({symbol}),
  channels 1 and 2 the `x` and `y` coordinates of the cell centres (row = y, column = x).
- **Output** `(batch, {n}, {n}, 1)`: the prediction of `{metadata["target"]}` (the data set's target).
- **Task**: {metadata["task"]}, {metadata["parameter_count"]:,} parameters.

{sections}

## Metrics

| split | examples | L2 (MSE) | relative L2 (± std over examples) | L∞ |
|---|---|---|---|---|
{rows}

L2 is the mean squared error over all pixels (the loss of {cite(DATA, '§8', parenthetical=True)}); relative L2 the mean over
examples of `‖u_pred − u‖₂ / ‖u‖₂`; L∞ the largest pointwise error over all examples (it grows
with the number of examples, so it is only compared on samples of the same size).{_compared_section(metadata)}

## Tolerance

A retrained model or a fresh sample of data should reach test {tolerance['metric']} ≤
{metrics['test'][tolerance['metric']]:.4f} × (1 + {tolerance['relative']}) = {bound:.4f}. Retraining on other hardware or
library versions does not give the same weights bit for bit, and a sample of n examples measures
the mean only to within about std/√n: this is the margin within which the card is reproduced.

## Use

```python
import keras_multilevel as kml

model = kml.zoo.load("{name}")    # sha256-verified, rebuilt in Keras' safe mode, compiled (mse, Adam)
u = model.predict(inputs)         # (batch, {n}, {n}, 3) -> (batch, {n}, {n}, 1){coarser}
```

At another resolution `M = N·2^k` the weights are transferred without retraining
(`kml.hierarchy.at_resolution`: a pyramid U-Net loses or gains grids, another U-Net has its
stencils transferred); its accuracy is not the one above: measure it
(`keras-multilevel zoo evaluate {name} --resolution M`), or train there from these weights.

```sh
keras-multilevel zoo show {name}
keras-multilevel zoo evaluate {name} --samples 200 --seed 777    # fresh data, never seen in training
{retrain}```

## Files

`config.json` (architecture), `model.weights.h5` (weights), this `README.md`, and
`metadata.json`, which records the sha256 of the three others: `kml.zoo.load` refuses a file
that does not match. `metadata.json` cannot contain its own hash; it is only read as JSON.

## Limitations

- Trained on the coefficient distribution of {cite(DATA, '§8')} only (the fixed source, domain and boundary
  conditions above); other coefficients, sources or domains are outside what it learned.
- It is a surrogate: its error is the one measured above, not a discretization error bound.
- At resolutions other than {n} the error is not the one above; the repository's
  `benchmarks/results/resolution_transfer.md` measures every preset at N/2 and 2N.

## Versions

Trained {metadata['date']} with {", ".join(f"{key} {value}" for key, value in metadata['versions'].items())}.
"""
    return text + _references_section(text)


def _references_section(text):
    """The References section of a card: every paper that ``text`` cites by author and year, in full."""
    cited = references.cited(text)
    return "\n## References\n\n" + "".join(f"- {key}: {references.markdown(key)}\n" for key in cited)
