"""The papers keras-multilevel implements, as data.

One entry per paper: ``REFERENCES[key]`` holds its authors, title, year,
venue and arXiv identifier (``None`` where it has none). The key is the
paper's author-year citation. The docstrings, comments, model cards and
documentation cite by authors and year with the section, equation or
algorithm: "Ponce et al. (2022, §8.1)" in running text, "(Ponce et al.,
2022, §8.1)" inside parentheses (:func:`cite` writes both, :func:`cited`
finds them). The model cards (:mod:`keras_multilevel.zoo.card`) take their
References section from here and the TFDS builders their BibTeX ``CITATION``; the
references page of the documentation (``docs/references.md``) says what the
library takes from each paper.

Only the standard library is imported, so that this module loads without
TensorFlow.
"""

import re

REFERENCES = {
    "Gaedke-Merzhäuser et al. (2021)": {
        "bibtex_key": "gaedkemerzhauser2021multilevel",
        "bibtex_type": "article",
        "authors": ("Lisa Gaedke-Merzhäuser", "Alena Kopaničáková", "Rolf Krause"),
        "bibtex_authors": ("Gaedke-Merzh{\\\"a}user, Lisa", "Kopani{\\v{c}}{\\'a}kov{\\'a}, Alena", "Krause, Rolf"),
        "title": "Multilevel minimization for deep residual networks",
        "year": 2021,
        "venue": "ESAIM: Proceedings and Surveys, 71, 131-144",
        "journal": "ESAIM: Proceedings and Surveys",
        "volume": "71",
        "pages": "131--144",
        "arxiv": "2004.06196",
    },
    "Jacob (2024)": {
        "bibtex_key": "jacob2024stochastic",
        "bibtex_type": "phdthesis",
        "authors": ("Isabel Jacob",),
        "bibtex_authors": ("Jacob, Isabel",),
        "title": "Stochastic multilevel methods for deep learning",
        "year": 2024,
        "venue": "Dissertation, Technische Universität Darmstadt (Verlag Dr. Hut, ISBN 978-3-8439-5599-7)",
        "school": "Technische Universit{\\\"a}t Darmstadt",
        "arxiv": None,
    },
    "Ponce et al. (2022)": {
        "bibtex_key": "ponce2022multilevel",
        "bibtex_type": "misc",
        "authors": ("Colin Ponce", "Christina Mao", "Ruipeng Li", "Panayot Vassilevski"),
        "bibtex_authors": ("Ponce, Colin", "Mao, Christina", "Li, Ruipeng", "Vassilevski, Panayot"),
        "title": "Multilevel-in-layer training for deep neural network regression",
        "year": 2022,
        "venue": "arXiv preprint",
        "arxiv": "2211.06515",
    },
    "Kopaničáková and Krause (2023)": {
        "bibtex_key": "kopanicakova2023globally",
        "bibtex_type": "article",
        "authors": ("Alena Kopaničáková", "Rolf Krause"),
        "bibtex_authors": ("Kopani{\\v{c}}{\\'a}kov{\\'a}, Alena", "Krause, Rolf"),
        "title": "Globally convergent multilevel training of deep residual networks",
        "year": 2023,
        "venue": "SIAM Journal on Scientific Computing, 45(3)",
        "journal": "SIAM Journal on Scientific Computing",
        "volume": "45",
        "number_": "3",
        "arxiv": "2107.07572",
    },
    "Haber et al. (2018)": {
        "bibtex_key": "haber2018learning",
        "bibtex_type": "inproceedings",
        "authors": ("Eldad Haber", "Lars Ruthotto", "Elliot Holtham", "Seong-Hwan Jun"),
        "bibtex_authors": ("Haber, Eldad", "Ruthotto, Lars", "Holtham, Elliot", "Jun, Seong-Hwan"),
        "title": "Learning across scales: multiscale methods for convolution neural networks",
        "year": 2018,
        "venue": "Proceedings of the AAAI Conference on Artificial Intelligence (AAAI-18)",
        "booktitle": "Proceedings of the Thirty-Second AAAI Conference on Artificial Intelligence",
        "arxiv": "1703.02009",
    },
}


def entry(key):
    """The entry of ``key``, an author-year key ("Ponce et al. (2022)").

    Raises:
        KeyError: no paper has that key.
    """
    if key not in REFERENCES:
        raise KeyError(f"No reference {key!r}; known: {', '.join(REFERENCES)}.")
    return REFERENCES[key]


def cite(key, where=None, parenthetical=False, possessive=False):
    """The citation of ``key`` at ``where`` (a section, equation or algorithm: "§8.1", "eq 10").

    ``cite("Ponce et al. (2022)", "§8.1")`` is "Ponce et al. (2022, §8.1)", for running text;
    with ``parenthetical=True`` it is "Ponce et al., 2022, §8.1", for inside parentheses;
    with ``possessive=True`` "Ponce et al.'s (2022, §8.1)".
    """
    year = str(entry(key)["year"])
    authors = key[: -len(f" ({year})")] + ("'s" if possessive else "")
    if parenthetical:
        return ", ".join([authors, year] + ([where] if where else []))
    return f"{authors} ({year}{', ' + where if where else ''})"


def cited(text):
    """The keys of the papers that ``text`` cites in either form of :func:`cite`, in the order of ``REFERENCES``."""
    found = []
    for key, paper in REFERENCES.items():
        authors = re.escape(key[: -len(f" ({paper['year']})")])
        if re.search(authors + r"(?:'s)? \(" + str(paper["year"]) + r"\b|" + authors + r", " + str(paper["year"]) + r"\b", text):
            found.append(key)
    return found


def _authors(names):
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def markdown(key):
    """One line of a reference list: authors, *title*, venue, year, arXiv link."""
    paper = entry(key)
    arxiv = f", [arXiv:{paper['arxiv']}](https://arxiv.org/abs/{paper['arxiv']})" if paper["arxiv"] else ""
    return f"{_authors(paper['authors'])}. *{paper['title']}*. {paper['venue']}, {paper['year']}{arxiv}."


def bibtex(key, note=None):
    """The BibTeX entry of ``key``; ``note`` (which sections are used) is added as its ``note`` field."""
    paper = entry(key)
    fields = [
        ("title", "{" + paper["title"] + "}"),
        ("author", " and ".join(paper["bibtex_authors"])),
    ]
    for field in ("journal", "booktitle", "school", "volume"):
        if field in paper:
            fields.append((field, paper[field]))
    if "number_" in paper:
        fields.append(("number", paper["number_"]))
    if "pages" in paper:
        fields.append(("pages", paper["pages"]))
    fields.append(("year", str(paper["year"])))
    if paper["arxiv"]:
        fields += [("eprint", paper["arxiv"]), ("archivePrefix", "arXiv")]
    if note:
        fields.append(("note", note))
    width = max(len(name) for name, _ in fields)
    body = ",\n".join(f"  {name.ljust(width)} = {{{value}}}" for name, value in fields)
    return f"@{paper['bibtex_type']}{{{paper['bibtex_key']},\n{body}\n}}"
