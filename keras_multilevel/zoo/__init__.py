"""The model zoo: pretrained multilevel U-Nets for the PDE data sets, keras-hub style.

Each preset (``{problem}_unet_n{N}``, e.g. ``poisson_unet_n32``) is a folder
of ``config.json``, ``model.weights.h5``, a model card ``README.md`` and
``metadata.json`` (recipe, data set, metrics, tolerance, versions, sha256 of
the other files) in the repository's top-level ``zoo/`` folder (installed as
``keras_multilevel.presets``)::

    import keras_multilevel as kml

    print(kml.zoo.table())                          # the presets and their test errors
    model = kml.zoo.load("poisson_unet_n32")        # verified, rebuilt safely, compiled
    mine = kml.zoo.load("retrained/poisson_unet_n32")   # or a preset folder, keras-hub's from_preset(path)
    coarse = kml.zoo.load("poisson_unet_n32", resolution=16)   # the pyramid without its finest grid
    finer = kml.zoo.load("poisson_unet_n32", resolution=64)    # a grid added (Haber et al., 2018, Algorithm 1)
    print(kml.zoo.show("poisson_unet_n32"))         # the card
    kml.zoo.evaluate("poisson_unet_n32")            # errors on freshly generated data
    metadata, comparison = kml.zoo.train("poisson_unet_n32", "retrained/")   # the recipe again

The presets are pyramid U-Nets trained coarse to fine, growing a grid at a
time (Haber et al., 2018, Algorithm 1), on the Poisson and Darcy data of
Ponce et al. (2022, §8).
Every function taking ``presets_dir`` reads presets from that folder instead
of the shipped ones (``keras_multilevel.zoo.store.PRESETS``).
"""

from keras_multilevel.zoo.metrics import measure, metrics
from keras_multilevel.zoo.recipe import check_recipe
from keras_multilevel.zoo.store import (
    IntegrityError, list_presets, load, metadata, names, preset_name, save_preset, show, table, verify,
)
from keras_multilevel.zoo.training import Comparison, compare, create, evaluate, save_to_preset, train, train_recipe
