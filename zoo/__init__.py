"""The model zoo's presets: data only, one folder per preset (keras-hub layout).

Installed as ``keras_multilevel.presets`` so that the presets ship in the wheel;
``kml.zoo`` (``keras_multilevel/zoo/``) reads, verifies, loads, trains and
writes them. Each ``<name>/`` holds ``config.json``, ``model.weights.h5``,
``metadata.json`` (recipe, data set, metrics, tolerance, versions, sha256 of
the other files) and the model card ``README.md``.
"""
