"""keras-multilevel: multilevel optimization for Keras 3 models.

The public API is flat::

    import keras_multilevel as kml
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
    model.compile(optimizer=kml.MultilevelOptimizer(levels=4, smoother=keras.optimizers.SGD(0.1)),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20)          # one V-cycle per batch
    print(model.optimizer.hierarchy)    # the levels, PyAMG style

The V-cycles run on the TensorFlow backend (the default). Under another Keras
backend (``KERAS_BACKEND=jax``, ...) the data sets (``kml.datasets``, plain
``tf.data``) and the zoo (``kml.zoo.load``, plain Keras models) work; the
optimizer, hierarchies, layers and model builders say that they need TensorFlow.

Imports are lazy (PEP 562): ``import keras_multilevel`` itself imports
neither TensorFlow nor Keras, so that the ``keras-multilevel`` command line
(:mod:`keras_multilevel.cli`, inside this package) parses, ``--help`` and
``--version`` at once; ``kml.<name>`` imports what that name needs on first
access. Importing the package changes nothing in the process (no environment
variable, no file descriptor): the Keras backend is whatever Keras would pick
(TensorFlow unless ``KERAS_BACKEND`` or ``~/.keras/keras.json`` says
otherwise), and TensorFlow logs as it always does.

Two registrations happen on import, so that what users rely on keeps working:

* Keras' ``keras.models.load_model("x.keras")`` of a model holding this
  library's layers or optimizers needs their classes registered
  (``keras.saving.register_keras_serializable``), and the Keras compile hook
  (:mod:`keras_multilevel._keras_hooks`) must be installed before a
  ``MultilevelOptimizer`` is compiled. When Keras is already imported at
  ``import keras_multilevel`` (a Keras program: laziness only serves the
  command line), the package loads its TensorFlow side at once, as it always
  did: data sets, zoo, layers, optimizers (which install the hook),
  hierarchies and models. Otherwise it does so on the first access of any of
  those names (``kml.models``, ``kml.MultilevelOptimizer``, ...); to load a
  saved model without touching ``kml`` first, import Keras before
  ``keras_multilevel`` or import the submodules of those classes (``keras_multilevel.layers``,
  ``keras_multilevel.optimizers``) explicitly.
* ``tfds.load("poisson/n48")`` needs the TFDS builders ``poisson`` and
  ``darcy`` registered. ``import keras_multilevel.datasets`` (and
  ``kml.datasets``) always registers them; ``import keras_multilevel``
  registers them at once when TensorFlow Datasets or Keras is already imported.
"""

import sys

from keras_multilevel._version import __version__


def _map_source_folders():
    """In a source checkout, maps the top-level ``datasets/`` and ``zoo/`` to ``keras_multilevel.pde`` and
    ``keras_multilevel.presets``, as setup.cfg's ``package_dir`` does in the wheel.

    ``python -c`` or ``python -m`` started in the repository's root imports this folder rather than the installed
    package, and the folder has neither subpackage. Only their ``__init__`` (docstrings) is run here; what they
    hold is imported on demand, from the top-level folders. An installed package has both: nothing happens.
    """
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.isfile(os.path.join(os.path.dirname(here), "setup.cfg")):
        return  # not this repository (next to an installed package may be, e.g., HuggingFace's `datasets`)
    for name, folder in (("pde", "datasets"), ("presets", "zoo")):
        source = os.path.join(os.path.dirname(here), folder)
        if os.path.isdir(os.path.join(here, name)) or not os.path.isfile(os.path.join(source, "__init__.py")):
            continue
        spec = importlib.util.spec_from_file_location(
            f"{__name__}.{name}", os.path.join(source, "__init__.py"), submodule_search_locations=[source]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        globals()[name] = module


_map_source_folders()

# The public names: each is an attribute of the submodule that defines it (None: the submodule itself).
_PUBLIC = {
    "datasets": None,
    "zoo": None,
    "hierarchy": None,
    "layers": None,
    "models": None,
    "optimizers": None,
    "Hierarchy": "hierarchy",
    "ConvResidualStack": "layers",
    "DenseResidualStack": "layers",
    "CycleSteps": "optimizers",
    "MultilevelOptimizer": "optimizers",
    "MultilevelSolver": "optimizers",
}
_TENSORFLOW_ONLY = (
    "ConvResidualStack", "CycleSteps", "DenseResidualStack", "Hierarchy", "MultilevelOptimizer", "MultilevelSolver",
    "hierarchy", "layers", "models", "optimizers",
)
__all__ = sorted(_PUBLIC) + ["__version__"]


def _unavailable(name):
    """The reason ``kml.<name>`` cannot be had in this installation, or ``None``."""
    if name in _TENSORFLOW_ONLY:
        import keras

        if keras.backend.backend() != "tensorflow":
            return (
                f"kml.{name} needs Keras' TensorFlow backend (the V-cycle is TensorFlow code), but Keras runs on "
                f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before the first `import keras`. "
                "kml.datasets and kml.zoo work on any backend."
            )
    return None


def _load(name):
    """Imports the submodule behind public ``name``; a missing part raises ImportError with ``.unavailable``."""
    import importlib

    reason = _unavailable(name)
    if reason is None and name == "datasets":
        try:
            return importlib.import_module("keras_multilevel.datasets")
        except ModuleNotFoundError as error:
            if error.name != "tensorflow_datasets":
                raise
            reason = (
                "kml.datasets needs TensorFlow Datasets and FEniCSx, which this installation lacks: "
                "pip install 'keras-multilevel[datasets]'."
            )
    if reason is not None:
        error = ImportError(reason)
        error.unavailable = True  # the command line prints it in one line (exit 69)
        raise error
    module = importlib.import_module(f"keras_multilevel.{_PUBLIC[name] or name}")
    if name in _TENSORFLOW_ONLY:
        _load_tensorflow_side()
    return module if _PUBLIC[name] is None else getattr(module, name)


def _load_tensorflow_side():
    """Imports the TensorFlow-only submodules together: every layer and optimizer class is then registered with
    Keras' serialization and the compile hook is installed (by :mod:`keras_multilevel.optimizers`)."""
    import importlib

    for name in ("layers", "optimizers", "hierarchy", "models"):
        importlib.import_module(f"keras_multilevel.{name}")


def __getattr__(name):
    if name in _PUBLIC:
        value = _load(name)
        globals()[name] = value  # later accesses are plain attribute look-ups
        return value
    raise AttributeError(f"module 'keras_multilevel' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


def _load_eagerly():
    """What ``import keras_multilevel`` did before its imports were lazy, for programs that already use Keras
    (or TensorFlow Datasets): see the module's docstring."""
    for name in ("datasets", "zoo", *_TENSORFLOW_ONLY):
        try:
            __getattr__(name)
        except ImportError as error:
            if not getattr(error, "unavailable", False):
                raise  # a real failure; a part this installation lacks stays an error of kml.<name> only


if "keras" in sys.modules:
    _load_eagerly()
elif "tensorflow_datasets" in sys.modules:
    try:
        __getattr__("datasets")
    except ImportError as error:
        if not getattr(error, "unavailable", False):
            raise
