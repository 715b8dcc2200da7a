"""README.md's code runs as written and prints what the README shows.

Every ```python block of the repository's README.md runs, in order, in one
namespace, in a fresh Python process (the installed wheel, TFDS' data folder
in a temporary directory, so nothing is written to the user's). A ```text
block right after a python block is that block's output: it must appear,
verbatim, in what the block prints. ```sh blocks are not run.

To keep the run short, SUBSTITUTIONS shrinks the slow calls; each names the
text it replaces and how often it occurs, and the test fails if the README
no longer holds it that often, so the README and the test cannot drift apart
silently.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"

# (text in README.md, its replacement, occurrences, why)
SUBSTITUTIONS = [
    ("epochs=20", "epochs=2", 1, "two V-cycles of the 256-block circles network are enough to run the code"),
    ("range(3)", "range(1)", 1, "the solver's training loop: one epoch"),
    ("epochs=10", "epochs=1", 1, "the fine-tuning example: one epoch"),
    (
        'kml.datasets.load("poisson", resolution=32, split="train"',
        'kml.datasets.load("poisson", resolution=32, samples=40, split="train"',
        2,
        "40 Poisson examples at N = 32 instead of the default 10,000 (about a minute to generate)",
    ),
    ('tfds.load("poisson/n32"', 'tfds.load("poisson/n32_s40_seed0"', 1, "the same 40 examples, through TFDS"),
]

RUNNER = """
import contextlib, io, json, sys

blocks = json.loads(open(sys.argv[1]).read())
namespace, printed = {"__name__": "__main__"}, []
for number, code in enumerate(blocks, 1):
    with contextlib.redirect_stdout(io.StringIO()) as output:
        exec(compile(code, f"README.md, python block {number}", "exec"), namespace)
    printed.append(output.getvalue())
open(sys.argv[2], "w").write(json.dumps(printed))
"""


def fenced_blocks(text):
    """``(language, code)`` of every fenced block of a Markdown text, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def shrunk(text):
    """``text`` with every substitution applied; fails if one's target does not occur as often as stated."""
    for old, new, count, why in SUBSTITUTIONS:
        assert text.count(old) == count, f"README.md holds {old!r} {text.count(old)} times, not {count} ({why})"
        text = text.replace(old, new)
    return text


def python_blocks():
    """``(code, expected)``: the shrunk python blocks, and each one's ```text output by block index."""
    blocks = fenced_blocks(shrunk(README.read_text()))
    code, expected = [], {}
    for (language, text), previous in zip(blocks, [("", "")] + blocks):
        if language == "python":
            code.append(text)
        elif language == "text":
            assert previous[0] == "python", f"a ```text output block must follow a ```python block:\n{text}"
            expected[len(code) - 1] = text
    assert len(code) >= 5 and expected, "README.md lost its python blocks or their printed output"
    return code, expected


def test_the_readme_holds_its_python_blocks_their_output_and_every_shrunk_call():
    """The quick half (the run below is marked slow): the blocks parse and every substitution finds its text."""
    code, _ = python_blocks()
    for number, text in enumerate(code, 1):
        compile(text, f"README.md, python block {number}", "exec")


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs_and_prints_what_the_readme_shows(tmp_path):
    code, expected = python_blocks()
    (tmp_path / "blocks.json").write_text(json.dumps(code))
    environment = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tensorflow_datasets")}
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json"), str(tmp_path / "printed.json")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    printed = json.loads((tmp_path / "printed.json").read_text())
    for number, text in expected.items():
        assert text in printed[number], f"python block {number + 1} printed\n{printed[number]}\nnot\n{text}"


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", ["README.md", "benchmarks/README.md"])
def test_every_relative_link_points_at_a_file_and_every_anchor_at_a_heading(name):
    path = README.parent / name
    text = path.read_text()
    anchors = {github_anchor(heading) for heading in re.findall(r"^#+ (.*)$", text, flags=re.MULTILINE)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("#"):
            assert target[1:] in anchors, f"{name}: no heading for {target}"
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{name}: {target} does not exist"
