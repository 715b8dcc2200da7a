"""Sphinx configuration: the documentation is built from the package's docstrings (``make docs``)."""

import os
import pathlib
import sys

# autodoc imports the package: TensorFlow backend (the V-cycle is TensorFlow code), quiet TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

project = "keras-multilevel"
author = "keras-multilevel authors"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_typehints = "none"
# Keras and TensorFlow are not documented here; their names in signatures stay plain text.
nitpicky = False

html_theme = "alabaster"
html_title = "keras-multilevel"
