"""The documentation site builds with warnings as errors and documents every public name."""

import pathlib
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_the_site_builds_without_warnings_and_documents_every_public_name(tmp_path):
    import keras_multilevel as kml
    from sphinx.util.inventory import InventoryFile

    out = tmp_path / "html"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                             str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(out / "objects.inv", "rb") as stream:
        inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
    documented = {name for kind in inventory.values() for name in kind} if isinstance(inventory, dict) else {
        item.name for item in inventory}
    flat = ["MultilevelOptimizer", "MultilevelSolver", "CycleSteps", "Hierarchy", "DenseResidualStack",
            "ConvResidualStack"]
    for name in flat:
        value = getattr(kml, name)
        assert f"{value.__module__}.{value.__qualname__}" in documented, name
    for module in ("hierarchy", "layers", "models", "optimizers", "datasets", "zoo"):
        assert f"keras_multilevel.{module}" in documented, module
