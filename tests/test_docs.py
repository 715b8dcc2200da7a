"""The documentation site builds with warnings as errors and documents every public name.

The quick tests check what the build does not: every concept page is in the
index's table of contents, and every ```python block of the pages parses
(the README's blocks run in tests/test_readme.py; these are compiled only).
"""

import pathlib
import re
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


def test_every_concept_page_is_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text()
    for page in sorted((DOCS / "concepts").glob("*.md")):
        assert f"concepts/{page.stem}\n" in index, page.name


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda page: page.relative_to(DOCS).as_posix())
def test_every_python_block_of_the_pages_parses(page):
    blocks = re.findall(r"^```python\n(.*?)^```$", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for number, code in enumerate(blocks, 1):
        compile(code, f"{page.name}, python block {number}", "exec")
