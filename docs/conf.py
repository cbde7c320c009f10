"""Sphinx configuration for the nnpk documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (nnpk must be installed:
autodoc imports it).
"""

from importlib.metadata import PackageNotFoundError, version

project = "nnpk"
author = "the nnpk authors"
copyright = "the nnpk authors"
try:
    release = version("nnpk")
except PackageNotFoundError:  # building from a source tree without the package installed
    release = "0+unknown"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

# numpydoc-style docstrings only; parameter types are written in the docstrings themselves.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_typehints = "none"
autodoc_member_order = "bysource"
nitpicky = False

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "Kernels of randomly initialised neural networks", "fixed_sidebar": True}
html_static_path = []

