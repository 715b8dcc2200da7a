"""Rewrites the model card (``README.md``) of every preset from its ``metadata.json``, and its sha256 there.

A card is written from the metadata (:func:`keras_multilevel.zoo.card.card`)
when the preset is saved; after a change to the card's text this writes the
shipped cards again without retraining anything, and records each new
``README.md``'s sha256 in ``metadata.json`` so that ``kml.zoo.load`` still
verifies the preset. Weights, configuration and metrics are left as they are.

Given the committed results of the comparison benchmarks, it first puts what
they measured of each preset into its metadata (``comparisons``), which the
card's "Compared" section shows:

* ``--fno``: ``benchmarks/peers/fno_against_zoo.py``'s JSON files (the FNO on
  the preset's data set: parameters, training CPU seconds, test relative L2
  per seed);
* ``--recipes``: ``benchmarks/zoo_recipes.py``'s JSON files; a recipe whose
  seed-0 run is the preset's own (the same test relative L2 as its card) gives
  the preset's recipe over seeds;
* ``--resolutions``: ``benchmarks/resolution_transfer.py``'s JSON file (the
  preset at N/2 and 2N, moved by each hierarchy).

A kind of comparison not given keeps what the metadata already holds.

Usage::

    python benchmarks/zoo_cards.py                    # the shipped presets (the repository's zoo/)
    python benchmarks/zoo_cards.py --presets-dir DIR  # the presets in DIR
    python benchmarks/zoo_cards.py --fno benchmarks/results/peers/fno_zoo_n*.json \\
        --recipes benchmarks/results/zoo/logk/*.json --resolutions benchmarks/results/resolution_transfer.json
"""

import argparse
import json
import pathlib
import sys

from keras_multilevel import zoo
from keras_multilevel.zoo import store


def _read(paths):
    return [json.loads(pathlib.Path(path).read_text()) for path in paths]


def fno_comparison(results, metadata):
    """The FNO's runs on ``metadata``'s data set from ``fno_against_zoo.py`` results, or ``None``."""
    for result in results:
        runs = result["fno"].get(metadata["problem"], [])
        if result["arguments"]["resolution"] == metadata["resolution"] and runs:
            return {
                "command": result["command"],
                "seeds": [run["arguments"]["seed"] for run in runs],
                "parameters": runs[0]["parameters"],
                "cpu_time_s": [run["train_cpu_s"] for run in runs],
                "relative_l2": [run["test"]["relative_l2"] for run in runs],
                "relative_l2_2n": [run["fresh_2n"]["relative_l2"] for run in runs],
            }
    return None


def recipe_comparison(results, metadata):
    """The preset's recipe over seeds from ``zoo_recipes.py`` results (its seed-0 run is the preset's), or ``None``."""
    card = metadata["metrics"]["test"]["relative_l2"]
    for entries in results:
        for entry in entries:
            runs = entry["runs"]
            if entry["recipe"]["problem"] == metadata["problem"] and entry["recipe"]["resolution"] == metadata["resolution"] \
                    and any(run["seed"] == 0 and run["test"]["relative_l2"] == card for run in runs):
                return {
                    "command": entry["command"],
                    "seeds": [run["seed"] for run in runs],
                    "parameters": runs[0]["parameters"],
                    "cpu_time_s": [run["cpu_time_s"] for run in runs],
                    "relative_l2": [run["test"]["relative_l2"] for run in runs],
                }
    return None


def resolution_comparison(results, metadata):
    """The preset at N/2, N and 2N from ``resolution_transfer.py``'s results, or ``None``."""
    for result in results:
        row = result["presets"].get(metadata["name"])
        if row is not None and row["card"] == metadata["metrics"]["test"]["relative_l2"]:  # not an older preset's
            return {"command": result["command"], "samples": result["samples"], "seed": result["seed"], **row}
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets-dir", default=None, help="folder of presets (default: the shipped ones)")
    parser.add_argument("--fno", nargs="*", help="fno_against_zoo.py JSON results")
    parser.add_argument("--recipes", nargs="*", help="zoo_recipes.py JSON results")
    parser.add_argument("--resolutions", nargs="*", help="resolution_transfer.py JSON results")
    args = parser.parse_args(argv)
    sources = {
        "fno": (args.fno, fno_comparison), "recipe": (args.recipes, recipe_comparison),
        "resolutions": (args.resolutions, resolution_comparison),
    }
    for name in zoo.names(args.presets_dir):
        folder = store.preset_folder(name, args.presets_dir)
        metadata = json.loads((folder / "metadata.json").read_text())
        files = metadata.pop("files")
        comparisons = metadata.get("comparisons", {})
        for key, (paths, measured) in sources.items():
            if paths is None:
                continue
            found = measured(_read(paths), metadata)
            if found is None:
                comparisons.pop(key, None)
            else:
                comparisons[key] = found
        if comparisons:
            metadata["comparisons"] = comparisons
        else:
            metadata.pop("comparisons", None)
        (folder / "README.md").write_text(zoo.card.card(metadata))
        files["README.md"] = store.sha256(folder / "README.md")
        metadata["files"] = files
        (folder / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        print(f"{name}: README.md {files['README.md']}; compared: {', '.join(comparisons) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
