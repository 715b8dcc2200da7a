"""Every paper is cited so that a user can find it: authors, title, year, arXiv id or venue.

No shipped file, model card, data-set description, document or test may point
at files that exist only beside the repository (the plain-text copies of the
papers, a design note, anything under shared/), nor cite a paper by a short
number ("002 §8.1", "paper 004") that means nothing to a reader; citations are
by authors and year ("Ponce et al. (2022, §8.1)", "(Ponce et al., 2022, §8.1)")
and resolve to an entry of :mod:`keras_multilevel.references`.
"""

import pathlib
import re

import pytest

from keras_multilevel import references
from keras_multilevel.pde import builders

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What users get or read: the four packages, the cards, the documentation and the benchmarks; and the tests.
FOLDERS = ("keras_multilevel", "datasets", "cli", "zoo", "docs", "benchmarks", "tests")
SUFFIXES = {".py", ".md", ".json", ".cfg", ".toml", ".rst", ".txt"}
# Built from pieces so that this file does not match itself (it is skipped all the same).
FORBIDDEN = [
    re.compile(r"(?<![\w.-])" + re.escape("shared" + "/")),
    re.compile(re.escape("DESIGN" + ".md")),
    re.compile(r"\b00\d_[0-9a-f]{16}" + re.escape(".txt")),  # a paper's plain-text copy
]
# The surnames of the first authors; a year after one of them must be its entry's:
# "Ponce et al. (2022", "Ponce et al.'s (2022", "Ponce et al., 2022".
FIRST_AUTHORS = {key.split(" ")[0]: entry["year"] for key, entry in references.REFERENCES.items()}
AUTHOR_YEAR = re.compile(
    r"\b(" + "|".join(map(re.escape, FIRST_AUTHORS)) + r")\b[^()\n]{0,40}?(?:\(|, )(\d{4})\b"
)
# A paper's short number: "002 §8.1", "(000 Table 1)", "(000, 001 §3)", "004 Algorithm 1", "002's", "paper 004",
# but not 0.004, 1,000, 10 000, lr0.004/ or "000" as a literal.
NUMBER = re.compile(
    r"(?<![\w.,/\-'`\[=%\"])(?<!\d )(?:[Pp]apers?\s+0" + r"0\d\b|0" + r"0\d(?![\w/]|[.,\-]\d)"
    r"(?=\s?(?:§|eqs?\b|Eqs?\b|equations?\b|Tables?\b|Fig|Alg|Sections?\b|Appendix|'s\b|\)|,|;|:|\sand\b)))"
)


def shipped_files():
    files = [ROOT / "README.md", ROOT / "setup.cfg", ROOT / "pyproject.toml"]
    for folder in FOLDERS:
        files += sorted(
            path for path in (ROOT / folder).rglob("*")
            if path.suffix in SUFFIXES and path.is_file() and path != pathlib.Path(__file__).resolve()
            and not (folder == "benchmarks" and path.suffix == ".json")  # measured data
            and not any(part.startswith(".venv") for part in path.relative_to(ROOT).parts)  # a peer's environment
        )
    return files


def test_the_files_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in shipped_files()}
    assert {"README.md", "docs/references.md", "datasets/README.md", "zoo/poisson_unet_n32/README.md",
            "keras_multilevel/references.py", "datasets/builders.py"} <= names


@pytest.mark.parametrize("pattern", FORBIDDEN, ids=lambda pattern: pattern.pattern)
def test_no_file_points_at_the_papers_copies_or_a_design_note(pattern):
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for path in shipped_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("key", references.REFERENCES)
def test_every_entry_has_authors_title_year_and_an_arxiv_id_or_venue(key):
    entry = references.entry(key)
    assert entry["authors"] and all(name.strip() for name in entry["authors"])
    assert entry["title"] and isinstance(entry["year"], int) and 1990 < entry["year"] < 2100
    assert entry["arxiv"] or entry["venue"]
    if entry["arxiv"]:
        assert re.fullmatch(r"\d{4}\.\d{4,5}", entry["arxiv"])
    surname = entry["authors"][0].split(" ")[-1]
    expected = f"{surname} et al. ({entry['year']})" if len(entry["authors"]) > 2 else None
    if len(entry["authors"]) == 2:
        expected = f"{surname} and {entry['authors'][1].split(' ')[-1]} ({entry['year']})"
    if len(entry["authors"]) == 1:
        expected = f"{surname} ({entry['year']})"
    assert key == expected


def test_an_unknown_key_is_refused():
    with pytest.raises(KeyError, match="Ponce et al. \\(2022\\)"):
        references.entry("Smith (1999)")


def test_every_citation_in_the_shipped_files_resolves_to_an_entry():
    """An author-year citation of a first author carries that paper's year."""
    wrong, seen = [], 0
    for path in shipped_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in AUTHOR_YEAR.finditer(text):
            seen += 1
            if int(match.group(2)) != FIRST_AUTHORS[match.group(1)]:
                wrong.append(f"{path.relative_to(ROOT)}: {match.group(0)!r}")
    assert not wrong, "\n".join(wrong)
    assert seen > 300  # the pattern finds the citations


def test_no_file_cites_a_paper_by_a_short_number():
    """"002 §8.1", "(000 Table 1)", "paper 004" mean nothing to a reader: "Ponce et al. (2022, §8.1)"."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
        for path in shipped_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if NUMBER.search(line)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("text", [
    "002 §8.1", "(000 Table 1)", "(000, 001 §3)", "004 Algorithm 1", "see 003 Alg. 2", "002's data", "paper 004",
    "(002 eq 36)", "Papers 000 and 001", "(scheme rmtr, 003)",
])
def test_the_short_number_pattern_finds_each_form(text):
    assert NUMBER.search(text)


@pytest.mark.parametrize("text", [
    "lr 0.004, decay", "2,000 / 1,000 split", "10 000 examples", "lr0.004/n16", 'bibtex("002")', "U_c 1.000; per",
    "n16_s200_seed0", "12:00:04", "sha 1a2b004c", "Ponce et al. (2022, §8.1)",
])
def test_the_short_number_pattern_leaves_numbers_alone(text):
    assert not NUMBER.search(text)


def test_cite_writes_both_forms_and_cited_finds_them():
    assert references.cite("Ponce et al. (2022)", "§8.1") == "Ponce et al. (2022, §8.1)"
    assert references.cite("Ponce et al. (2022)", "§8.1", parenthetical=True) == "Ponce et al., 2022, §8.1"
    assert references.cite("Jacob (2024)", possessive=True) == "Jacob's (2024)"
    assert references.cite("Haber et al. (2018)", parenthetical=True) == "Haber et al., 2018"
    text = "(Gaedke-Merzhäuser et al., 2021, eq 10; Jacob, 2024, §3.2) and Haber et al.'s (2018, §3.2) inverse"
    assert references.cited(text) == ["Gaedke-Merzhäuser et al. (2021)", "Jacob (2024)", "Haber et al. (2018)"]
    assert references.cited("Ponce et al. (2021)") == []  # the wrong year


def test_the_references_page_lists_every_paper_with_its_identifier():
    page = (ROOT / "docs" / "references.md").read_text()
    for key, entry in references.REFERENCES.items():
        assert f"\n## {key}\n" in page
        assert entry["title"] in page.replace("\n", " ")
        assert (f"arXiv:{entry['arxiv']}" if entry["arxiv"] else entry["venue"].split(" (")[0]) in page.replace("\n", " ")


CARDS = sorted((ROOT / "zoo").glob("*/README.md"))


@pytest.mark.parametrize("card", CARDS, ids=lambda card: card.parent.name)
def test_every_card_ends_with_the_references_it_cites(card):
    text = card.read_text()
    body, _, cited = text.partition("\n## References\n")
    assert cited, "no References section"
    assert "Ponce et al. (2022)" in references.cited(body) and "arXiv:2211.06515" in cited  # the data set
    for key, entry in references.REFERENCES.items():
        if key in references.cited(body):
            assert f"- {key}: " in cited and (entry["arxiv"] is None or f"arXiv:{entry['arxiv']}" in cited)
    assert not NUMBER.search(text), "a card cites by author and year, not by number"


def test_there_are_six_shipped_cards():
    assert len(CARDS) == 6


def bibtex_entries(text):
    """``[(type, key, {field: value})]`` of BibTeX-like text: ``@type{key, name = {value}, ...}``."""
    entries = []
    for kind, key, body in re.findall(r"@(\w+)\{([^,\s]+),\n(.*?)\n\}", text, flags=re.S):
        fields = dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", body, flags=re.M))
        assert len(fields) == body.count("\n") + 1, body  # every line is a field
        entries.append((kind, key, fields))
    return entries


def test_the_data_sets_citation_is_bibtex_with_the_arxiv_id():
    entries = bibtex_entries(builders.CITATION)
    assert len(entries) == 1
    kind, key, fields = entries[0]
    assert kind == "misc" and key == "ponce2022multilevel"
    assert {"title", "author", "year", "eprint"} <= set(fields)
    assert fields["eprint"] == "2211.06515" and fields["year"] == "2022" and fields["author"].startswith("Ponce, Colin")


@pytest.mark.parametrize("key", references.REFERENCES)
def test_every_entry_writes_bibtex(key):
    entry = references.entry(key)
    [(kind, bibtex_key, fields)] = bibtex_entries(references.bibtex(key))
    assert kind == entry["bibtex_type"] and bibtex_key == entry["bibtex_key"]
    assert fields["year"] == str(entry["year"]) and fields["title"].strip("{}") == entry["title"]
    assert fields.get("eprint") == entry["arxiv"]
