"""Sphinx configuration of fastnn's documentation site.

Build it with ``pip install ".[docs]"`` and ``sphinx-build -W -b html docs docs/_build/html`` (warnings are
errors). The example gallery runs ``examples/`` at build time in quick mode (``FASTNN_DOCS_QUICK=1``: fewer
epochs); ``FASTNN_DOCS_QUICK=0`` runs them in full.
"""
import glob
import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# A working tree built with tools/dev-build has its extension modules in python/fastnn/: document that tree.
# Otherwise (a fresh clone after `pip install .`) the installed fastnn is documented.
if glob.glob(os.path.join(ROOT, "python", "fastnn", "_core*.so")):
    sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)
os.environ.setdefault("FASTNN_DOCS_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import fastnn  # noqa: E402
import api_pages  # noqa: E402

api_pages.write_pages(os.path.join(HERE, "api"))

project = "fastnn"
author = "the fastnn developers"
copyright = "2026, the fastnn developers"
version = release = fastnn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from the site itself: formulas render offline too
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "api/generated/*.examples", "**/GALLERY_HEADER.rst", "README.md"]
templates_path = ["_templates"]

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True}  # documented public methods on their class's page
autodoc_typehints = "none"
numpydoc_show_class_members = False     # the methods are rendered in full below the class (autodoc members)
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = f"fastnn {release}"
html_theme_options = {
    "navbar_start": ["navbar-logo", "version-label"],
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "icon_links": [],
}
html_static_path = []
html_sidebars = {"changelog": [], "index": []}

sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": "auto_examples",
    # Run every example, not only plot_*.py, except the MPI one: it is started by mpiexec (shown, not run).
    "filename_pattern": r"/(?!train_digits_mpi\.py$)[^/]+$",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "reset_modules": ("matplotlib",),
    "min_reported_time": 1,
}

def _teach_numpydoc_shape_sections():
    """Layers document their array shapes in a "Shape" section (input, output, parameters), as PyTorch's docs
    do. numpydoc knows no such section: teach its parser the name, and render it right after "Parameters".
    (Called from setup(), so that importing this file needs no Sphinx package: tests/test_docs.py does.)"""
    from numpydoc import docscrape, docscrape_sphinx
    docscrape.NumpyDocString.sections.setdefault("Shape", [])
    render_params = docscrape_sphinx.SphinxDocString._str_param_list
    if getattr(render_params, "renders_shape", False):
        return

    def with_shape(self, name, *args, **kwargs):
        out = render_params(self, name, *args, **kwargs)
        if name == "Parameters":
            out = out + self._str_section("Shape")
        return out

    with_shape.renders_shape = True
    docscrape_sphinx.SphinxDocString._str_param_list = with_shape


def _class_signature(app, what, name, obj, options, signature, return_annotation):
    """Module.__new__(klass, *args, **kwargs) records constructor arguments for fastnn.save; autodoc would
    show that generic signature for every layer. Show the class's __init__ signature instead."""
    if what != "class" or signature not in ("(*args, **kwargs)", "(klass, *args, **kwargs)"):
        return None
    init = getattr(obj, "__init__", None)
    if not inspect.isfunction(init):
        return None
    sig = inspect.signature(init)
    return str(sig.replace(parameters=list(sig.parameters.values())[1:])), return_annotation


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Class pages list the class's own public methods (Trainer.fit, Sequential.train_step, ...), not the
    set_*_request methods scikit-learn generates on every estimator subclass (its docs, not fastnn's)."""
    if str(getattr(obj, "__module__", "") or "").startswith("sklearn."):
        return True
    return None


def setup(app):
    _teach_numpydoc_shape_sections()
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-signature", _class_signature)
