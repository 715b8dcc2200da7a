"""Rewrites the model card (``README.md``) of every preset from its ``metadata.json``, and its sha256 there.

A card is written from the metadata (:func:`keras_multilevel.zoo.card.card`)
when the preset is saved; after a change to the card's text this writes the
shipped cards again without retraining anything, and records each new
``README.md``'s sha256 in ``metadata.json`` so that ``kml.zoo.load`` still
verifies the preset. Weights, configuration and metrics are left as they are.

Usage::

    python benchmarks/zoo_cards.py                    # the shipped presets (the repository's zoo/)
    python benchmarks/zoo_cards.py --presets-dir DIR  # the presets in DIR
"""

import argparse
import json
import sys

from keras_multilevel import zoo
from keras_multilevel.zoo import store


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets-dir", default=None, help="folder of presets (default: the shipped ones)")
    args = parser.parse_args(argv)
    for name in zoo.names(args.presets_dir):
        folder = store.preset_folder(name, args.presets_dir)
        metadata = json.loads((folder / "metadata.json").read_text())
        files = metadata.pop("files")
        (folder / "README.md").write_text(zoo.card.card(metadata))
        files["README.md"] = store.sha256(folder / "README.md")
        metadata["files"] = files
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        print(f"{name}: README.md {files['README.md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
