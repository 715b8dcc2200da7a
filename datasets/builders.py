"""TensorFlow Datasets builders ``poisson`` and ``darcy``: Ponce et al. (2022, §8.1 and §8.2).

One builder per problem, one config per resolution: ``n16``, ``n32``,
``n64`` are listed; any N >= 4 (and other sizes or seeds) is a config made
by :func:`config`, named ``n<N>`` or ``n<N>_s<samples>_seed<seed>``, and
TFDS finds it by that name too (``tfds.load("poisson/n48")``,
``tfds.builder("darcy/n8_s30_seed7")``): importing ``keras_multilevel.datasets``
registers both builders. ``as_supervised=True`` gives ``(inputs, target)``
for Poisson and ``(inputs, pressure)`` for Darcy. Each
config holds ``samples`` examples with seed ``seed``; examples are indexed
``0 .. samples-1`` and the splits are contiguous index ranges: validation
and test get ``max(1, samples // 10)`` each, train the rest (10,000 →
8,000 / 1,000 / 1,000). Preparing a config first generates (or completes)
the FEniCSx shards of :mod:`.generation` under ``<data_dir>/raw`` and then
writes the TFDS records from them.

Features (grids N×N, convention of :mod:`.fem`: row = y, column = x, values
at cell centres):

``poisson``
    ``inputs`` float32 (N, N, 3): channels κ, x, y (f, the same for every
    example, is left out: a deviation from Ponce et al., 2022, see ``datasets/README.md``);
    ``target`` float32 (N, N): the P1 solution u at the cell centres;
    ``parameters`` float64 (5,): the sampled (k_x, k_y, a_x, a_y, α);
    ``index`` int64.
``darcy``
    ``inputs`` float32 (N, N, 3): channels log-permeability u (k = exp(u)),
    x, y; ``pressure`` float32 (N, N): the DG0 pressure of each cell;
    ``outflow_flux`` float64: Q of eq 43; ``index`` int64.
"""

import dataclasses
import pathlib
import re
import shutil
import sys

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from keras_multilevel import references

from . import fem_grid, generation, integrity, locks, problems


# The data sets' paper, Ponce et al. (2022), as BibTeX (TFDS' ``info.citation``).
CITATION = references.bibtex("Ponce et al. (2022)", note="Section 8.1 (Poisson) and 8.2 (Darcy)")
SPLITS = ("train", "validation", "test")
# TFDS writes float64 tensors through float32 lists unless they are stored as bytes.
_EXACT = tfds.features.Encoding.BYTES
NAMED_RESOLUTIONS = (16, 32, 64)


@dataclasses.dataclass
class PDEConfig(tfds.core.BuilderConfig):
    """A resolution N, a number of examples and a seed."""

    resolution: int = 32
    samples: int = 10_000
    seed: int = 0


def split_sizes(samples):
    """``{"train": ..., "validation": ..., "test": ...}`` for ``samples`` examples."""
    if samples < 3:
        raise ValueError(f"`samples` must be an integer >= 3 (one example per split), got {samples!r}.")
    held_out = max(1, samples // 10)
    return {"train": samples - 2 * held_out, "validation": held_out, "test": held_out}


def split_ranges(samples):
    """The contiguous index range ``(start, stop)`` of each split."""
    sizes, start, ranges = split_sizes(samples), 0, {}
    for split in SPLITS:
        ranges[split] = (start, start + sizes[split])
        start += sizes[split]
    return ranges


_CONFIG_NAME = re.compile(r"^n(\d+)(?:_s(\d+)_seed(\d+))?$")


def config_from_name(problem, name):
    """The config named ``n<N>`` or ``n<N>_s<samples>_seed<seed>`` (:func:`config`'s names), or ``None``."""
    match = _CONFIG_NAME.match(name)
    if match is None:
        return None
    resolution, samples, seed = match.groups()
    cfg = config(problem, int(resolution), None if samples is None else int(samples), 0 if seed is None else int(seed))
    if cfg.name != name:  # e.g. "n32_s10000_seed0", whose canonical name is "n32"
        raise ValueError(f"Config {name!r} of {problem} is called {cfg.name!r}: use that name.")
    return cfg


def config(name, resolution=32, samples=None, seed=0):
    """The config of problem ``name`` for N, samples and seed (validated; ValueErrors name the argument)."""
    problem = problems.get(name)
    resolution = problems.check_resolution(resolution)
    samples = problem.default_samples if samples is None else problems.check_positive(samples, "samples")
    seed = problems.check_seed(seed)
    sizes = split_sizes(samples)
    default = samples == problem.default_samples and seed == 0
    label = f"n{resolution}" if default else f"n{resolution}_s{samples}_seed{seed}"
    return PDEConfig(
        name=label,
        description=f"N = {resolution}, {samples} examples (train/validation/test {sizes['train']}/"
        f"{sizes['validation']}/{sizes['test']}), seed {seed}",
        resolution=resolution,
        samples=samples,
        seed=seed,
    )


class _PDEBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared machinery; subclasses name the problem and its features."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Regenerated with DOLFINx 0.11 (Ponce et al., 2022, §8)."}
    PROBLEM = None
    # Explicit, so that TFDS need not resolve the package's resources (it cannot
    # for the editable install of the `datasets/` folder as another package name).
    code_path = epath.Path(__file__)
    pkg_dir_path = epath.Path(__file__).parent
    # Set by keras_multilevel.datasets.load / the CLI before download_and_prepare.
    workers = 1
    progress = True

    @classmethod
    def get_builder_config(cls, name, version=None):
        """A listed config, or any config by :func:`config`'s name (so that TFDS finds every resolution)."""
        listed = super().get_builder_config(name, version)
        return listed if listed is not None else config_from_name(cls.PROBLEM, name)

    def _features(self, n):
        """The record's features, as the problem's registry entry (:mod:`.problems`) declares them."""
        problem = problems.get(self.PROBLEM)
        features = {"inputs": tfds.features.Tensor(shape=(n, n, 3), dtype=np.float32, doc=problem.input_doc)}
        for feature in problem.features:
            features[feature.name] = tfds.features.Tensor(
                shape=(n, n) if feature.shape is None else feature.shape, dtype=np.dtype(feature.dtype),
                doc=feature.doc, **({"encoding": _EXACT} if feature.exact else {}),
            )
        features["index"] = tfds.features.Scalar(dtype=np.int64, doc="example index (its seed)")
        return features

    def download_and_prepare(self, *args, **kwargs):
        """TFDS' ``download_and_prepare`` holding the data set's lock, then seals the records (:mod:`.integrity`).

        Holding the lock (:mod:`.locks`; :class:`~.locks.Busy` if another run
        has it), it first removes the ``incomplete.*`` folders of killed runs.
        Records without a manifest (just written, or by an older version) are
        read back and sealed.
        """
        folder = pathlib.Path(self.data_dir)
        with locks.holding(folder.parent):
            _remove_interrupted_writes(folder.parent)
            super().download_and_prepare(*args, **kwargs)
            if not (folder / integrity.MANIFEST).exists():
                integrity.seal(folder, split_sizes(self.builder_config.samples))

    def _log_download_bytes(self):
        # TFDS prints download sizes here; nothing is downloaded, say what is computed.
        if self.progress:
            cfg = self.builder_config
            print(f"Generating {self.PROBLEM} (N = {cfg.resolution}, {cfg.samples} examples, seed {cfg.seed}) "
                  f"with FEniCSx into {self.data_dir}")

    def _example(self, record, coordinates):
        problem = problems.get(self.PROBLEM)
        example = {"inputs": _inputs(record[problem.input_field], coordinates)}
        example.update({feature.name: record[feature.field] for feature in problem.features})
        example["index"] = record["index"]
        return example

    def _info(self):
        n = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description=problems.get(self.PROBLEM).description,
            features=tfds.features.FeaturesDict(self._features(n)),
            homepage="https://github.com/FEniCS/dolfinx",
            citation=CITATION,
            supervised_keys=("inputs", problems.get(self.PROBLEM).default_target),
            disable_shuffling=True,  # records in index order
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is computed here, nothing is downloaded
        cfg = self.builder_config
        generation.generate(
            self.PROBLEM,
            cfg.resolution,
            cfg.samples,
            seed=cfg.seed,
            workers=self.workers,
            root=self.data_dir_root,
            progress=self.progress,
            use_mpi=False,  # the CLI has the ranks generate first; TFDS records are written by one process
        )
        return {split: self._generate_examples(*bounds) for split, bounds in split_ranges(cfg.samples).items()}

    def _generate_examples(self, start, stop):
        cfg = self.builder_config
        coordinates = fem_grid.cell_centres(cfg.resolution)
        for record in generation.read_examples(
            self.PROBLEM, cfg.resolution, cfg.seed, cfg.samples, start, stop, self.data_dir_root
        ):
            yield int(record["index"]), self._example(record, coordinates)


def version_folder(name, cfg, data_dir=None):
    """TFDS' folder of a config's records, ``<data_dir>/<name>/<config>/<version>``, found without reading it.

    ``data_dir`` None is TFDS' default folder (``$TFDS_DATA_DIR``, else
    ``~/tensorflow_datasets``), as for the builders.
    """
    root = pathlib.Path(tfds.core.constants.DATA_DIR if data_dir is None else data_dir).expanduser()
    return root / name / cfg.name / str(_PDEBuilder.VERSION)


def _remove_interrupted_writes(folder):
    """Deletes the ``incomplete.*`` folders TFDS leaves in a data set's folder when a run dies while writing.

    Call it holding the folder's lock (:mod:`.locks`): then no other run is
    writing them. Prints one line per folder removed.
    """
    for leftover in sorted(pathlib.Path(folder).glob(tfds.core.constants.INCOMPLETE_PREFIX + "*")):
        shutil.rmtree(leftover)
        print(f"removed {leftover}, records left half-written by an interrupted run", file=sys.stderr)


def _inputs(field, coordinates):
    x, y = coordinates
    return np.stack([field, x, y], axis=-1).astype(np.float32)


class Poisson(_PDEBuilder):
    """Ponce et al. (2022, §8.1): -div(κ grad u) = f on the unit square, u = 0 on the boundary (P1, DOLFINx)."""

    PROBLEM = "poisson"
    BUILDER_CONFIGS = [config("poisson", n) for n in NAMED_RESOLUTIONS]
    DEFAULT_BUILDER_CONFIG_NAME = "n32"  # the attribute TFDS reads


class Darcy(_PDEBuilder):
    """Ponce et al. (2022, §8.2): mixed RT/DG0 Darcy flow with log-normal permeability; cell pressures and Q (eq 43)."""

    PROBLEM = "darcy"
    BUILDER_CONFIGS = [config("darcy", n) for n in NAMED_RESOLUTIONS]
    DEFAULT_BUILDER_CONFIG_NAME = "n32"  # the attribute TFDS reads


BUILDERS = {"poisson": Poisson, "darcy": Darcy}
