"""The documentation stays true (issue 17): the API reference lists every public name, public names have
numpydoc docstrings, and every docstring example and user-guide snippet runs.

- Every public name (each module's __all__) of the documented modules appears in its API page's autosummary
  source (docs/api_pages.py writes those pages at every site build) and has a docstring.
- In NUMPYDOC_MODULES, every public class and function that takes parameters has a numpydoc ``Parameters``
  section naming exactly the parameters of its signature, and an ``Examples`` section (which runs, below).
  (The modules not listed there have docstrings, not yet all in numpydoc form.)
- Every ``>>>`` example in fastnn's docstrings and in docs/guide/*.rst runs as a doctest and passes.
"""
import doctest
import glob
import importlib
import inspect
import os
import pkgutil
import re
import sys

import numpy as np
import pytest

import fastnn
import fastnn.ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
sys.path.insert(0, DOCS)
import api_pages  # noqa: E402

# Modules whose public names all have full numpydoc docstrings (summary, Parameters, Returns, ...).
NUMPYDOC_MODULES = ["fastnn", "fastnn.nn.functional", "fastnn.optim", "fastnn.data", "fastnn.data.transforms",
                    "fastnn.callbacks", "fastnn.schedules", "fastnn.init", "fastnn.metrics", "fastnn.regularizers",
                    "fastnn.tune", "fastnn.utils", "fastnn.sklearn", "fastnn.pretraining", "fastnn.plot"]
# fastnn.nn: the public names defined in these of its files are complete too.
NUMPYDOC_NN_FILES = ["fastnn.nn.module", "fastnn.nn.sequential", "fastnn.nn.linear", "fastnn.nn.dropout",
                     "fastnn.nn.shape", "fastnn.nn.center_loss", "fastnn.nn.interaction", "fastnn.nn.conv",
                     "fastnn.nn.pooling", "fastnn.nn.normalization", "fastnn.nn.embedding", "fastnn.nn.containers",
                     "fastnn.nn.graph", "fastnn.nn.attention", "fastnn.nn.seq2seq", "fastnn.nn.tracing",
                     "fastnn.nn.activations", "fastnn.nn.losses", "fastnn.nn.recurrent", "fastnn.nn.transformer"]
# Public names of those modules whose numpydoc docstring is not written yet, with the reason.
NUMPYDOC_PENDING = {}

# The modules issue 17 names; each has an API page.
REQUIRED_PAGES = ["fastnn", "fastnn.nn", "fastnn.nn.functional", "fastnn.optim", "fastnn.data", "fastnn.callbacks",
                  "fastnn.schedules", "fastnn.init", "fastnn.metrics", "fastnn.regularizers", "fastnn.tune",
                  "fastnn.utils", "fastnn.sklearn"]

PAGES = [m for m, _ in api_pages.MODULES]


def _autosummary_entries(text):
    """The names listed under the page's autosummary directive."""
    body = text.split(".. autosummary::", 1)[1]
    return [line.strip() for line in body.splitlines()
            if line.startswith("   ") and line.strip() and not line.strip().startswith(":")]


def test_every_required_module_has_a_page_in_the_index():
    assert set(REQUIRED_PAGES) <= set(PAGES)
    with open(os.path.join(DOCS, "api", "index.rst"), encoding="utf-8") as f:
        index = f.read()
    toctree = [line.strip() for line in index.split(".. toctree::", 1)[1].splitlines()
               if line.startswith("   ") and not line.strip().startswith(":")]
    assert toctree == PAGES


@pytest.mark.parametrize("module_name", PAGES)
def test_api_page_lists_every_public_name(module_name):
    module = importlib.import_module(module_name)
    entries = _autosummary_entries(api_pages.page(module_name, "description"))
    expected = [n for n in getattr(module, "__all__", api_pages.public_names(module_name))
                if n != "__version__" and not inspect.ismodule(getattr(module, n))]
    assert entries == expected
    assert len(entries) == len(set(entries)) > 0
    for name in entries:  # each entry resolves, and has a docstring of its own
        obj = getattr(module, name)
        doc = obj.__doc__  # its own, not one inherited from a base class
        assert doc and doc.strip(), f"{module_name}.{name} has no docstring"


def test_submodules_listed_in_all_have_pages():
    """Every public submodule named in fastnn.__all__ has a page (fastnn.ops too: the C++ kernels, whose
    docstrings come from the pybind11 bindings)."""
    submodules = {f"fastnn.{n}" for n in fastnn.__all__ if inspect.ismodule(getattr(fastnn, n))}
    assert "fastnn.ops" in submodules
    assert submodules <= set(PAGES)


def _binding_signature(name, func):
    """Argument names of a pybind11 function, from the signature line pybind11 puts first in __doc__."""
    first = func.__doc__.split("\n", 1)[0]
    assert first.startswith(name + "(") and ") -> " in first, f"fastnn.ops.{name}: no signature line: {first!r}"
    inner = first[len(name) + 1:first.rindex(") -> ")]
    depth, parts, current = 0, [], ""
    for ch in inner:  # split at top-level commas (types hold brackets with commas)
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.split(":", 1)[0].strip() for p in parts if p.strip()]


OPS_FUNCTIONS = [n for n in api_pages.public_names("fastnn.ops") if not inspect.isclass(getattr(fastnn.ops, n))]


@pytest.mark.parametrize("name", OPS_FUNCTIONS)
def test_ops_docstring_names_every_argument(name):
    """Every fastnn.ops kernel has a docstring beyond pybind11's signature line: a one-line summary and, when
    it takes arguments, a numpydoc Parameters section naming each of them; and every kernel has named
    arguments (no pybind11 'arg0')."""
    func = getattr(fastnn.ops, name)
    doc = func.__doc__ or ""
    if func.__module__ == "fastnn._dispatch":  # the CPU-dispatch module's functions: no arguments, plain C
        assert doc.strip() and not doc.startswith(name + "("), name
        return
    args = _binding_signature(name, func)
    assert not [a for a in args if re.fullmatch(r"arg\d+", a)], f"fastnn.ops.{name}: unnamed arguments {args}"
    body = doc.split("\n", 1)[1].strip() if "\n" in doc else ""
    assert body, f"fastnn.ops.{name}: no docstring beyond the signature"
    assert "\n" not in body.split("\n\n", 1)[0], f"fastnn.ops.{name}: the summary must be one line"
    sections = _sections(body)
    if args:
        assert "Parameters" in sections, f"fastnn.ops.{name}: no Parameters section for {args}"
        documented = _documented_params(sections["Parameters"])
        assert sorted(documented) == sorted(args), f"fastnn.ops.{name}: documents {documented}, takes {args}"
    assert "Returns" in sections, f"fastnn.ops.{name}: no Returns section"


def test_ops_classes_have_docstrings():
    """The kernel classes (Activation's kinds, DenseStackPlan) document themselves and their methods."""
    assert "Members:" in fastnn.ops.Activation.__doc__ and "relu" in fastnn.ops.Activation.__doc__
    plan = fastnn.ops.DenseStackPlan
    assert "Parameters" in plan.__doc__ and "weights" in plan.__doc__
    assert "Returns" in plan.forward.__doc__


def test_the_docs_configuration_imports_and_writes_the_pages(tmp_path, monkeypatch):
    """docs/conf.py runs (it needs only fastnn; Sphinx reads the names it sets) and writes the API pages."""
    spec = importlib.util.spec_from_file_location("fastnn_docs_conf", os.path.join(DOCS, "conf.py"))
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf.release == fastnn.__version__
    assert {"numpydoc", "sphinx_gallery.gen_gallery", "sphinx.ext.autosummary", "sphinx_copybutton"} <= \
        set(conf.extensions)
    assert conf.html_theme == "pydata_sphinx_theme"
    written = api_pages.write_pages(str(tmp_path))
    assert written == PAGES
    for name in PAGES:
        assert (tmp_path / f"{name}.rst").read_text() == api_pages.page(name, dict(api_pages.MODULES)[name])


# -- numpydoc sections --------------------------------------------------------------------------------------
_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\n", re.M)


def _sections(doc):
    """{title: text} of a numpydoc docstring's sections."""
    marks = list(_SECTION.finditer(doc))
    return {m.group("title"): doc[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(doc)]
            for i, m in enumerate(marks)}


def _documented_params(section):
    """Names in a Parameters section: lines 'name : type' or 'a, b : type' at the section's indentation."""
    names = []
    for line in section.splitlines():
        if line and not line.startswith(" "):
            head = line.split(" : ", 1)[0].strip()
            names += [n.strip().lstrip("*") for n in head.split(",")]
    return names


def _signature_params(obj):
    """The parameters a user passes: a class's constructor arguments (its __init__'s, less self; none when
    __init__ is a builtin's, e.g. an exception class), a function's arguments."""
    if inspect.isclass(obj):
        if not inspect.isfunction(obj.__init__):
            return []
        return [p.name for p in list(inspect.signature(obj.__init__).parameters.values())[1:]]
    try:
        return [p.name for p in inspect.signature(obj).parameters.values()]
    except (TypeError, ValueError):
        return []


def _numpydoc_names():
    for module_name in NUMPYDOC_MODULES:
        module = importlib.import_module(module_name)
        for name in api_pages.public_names(module_name):
            if f"{module_name}.{name}" not in NUMPYDOC_PENDING:
                yield f"{module_name}.{name}", getattr(module, name)
    import fastnn.nn
    for name in api_pages.public_names("fastnn.nn"):
        obj = getattr(fastnn.nn, name)
        if obj.__module__ in NUMPYDOC_NN_FILES:
            yield f"fastnn.nn.{name}", obj


@pytest.mark.parametrize("qualname,obj", list(_numpydoc_names()), ids=lambda v: v if isinstance(v, str) else "")
def test_numpydoc_docstring(qualname, obj):
    doc = inspect.getdoc(obj)
    assert doc, f"{qualname}: no docstring"
    summary = doc.split("\n\n", 1)[0]
    assert "\n" not in summary.strip() and summary.strip(), f"{qualname}: the summary must be one line"
    sections = _sections(doc)
    params = _signature_params(obj)
    if params:
        assert "Parameters" in sections, f"{qualname}: no Parameters section for {params}"
        documented = _documented_params(sections["Parameters"])
        missing = [p for p in params if p not in documented]
        assert not missing, f"{qualname}: parameters not documented: {missing}"
        unknown = [p for p in documented if p not in params]
        assert not unknown, f"{qualname}: documented parameters not in the signature: {unknown}"
    assert "Examples" in sections and ">>>" in sections["Examples"], f"{qualname}: no Examples section"


# -- docstring examples and user-guide snippets run --------------------------------------------------------
def _fastnn_modules():
    names = ["fastnn"]
    for info in pkgutil.walk_packages(fastnn.__path__, "fastnn."):
        spec = info.module_finder.find_spec(info.name.rsplit(".", 1)[-1])
        if info.name.endswith(".__main__") or spec is None or not str(spec.origin).endswith(".py"):
            continue  # the extension modules (their functions are documented by fastnn.ops) and `python -m fastnn`
        names.append(info.name)
    return sorted(names)


_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture
def _doctest_state():
    """Doctests see the thread count, seed and working directory they would in a fresh session."""
    threads = fastnn.get_num_threads()
    cwd = os.getcwd()
    np_state = np.get_printoptions()
    yield
    fastnn.set_num_threads(threads)
    os.chdir(cwd)
    np.set_printoptions(**np_state)


@pytest.mark.parametrize("module_name", _fastnn_modules())
def test_docstring_examples_run(module_name, _doctest_state):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    for test in finder.find(module, module_name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {module_name} failed"


GUIDE_PAGES = sorted(p for p in glob.glob(os.path.join(DOCS, "guide", "*.rst")) if not p.endswith("index.rst"))
GUIDE_PAGES.append(os.path.join(DOCS, "index.rst"))  # the landing page's example


@pytest.mark.parametrize("page", GUIDE_PAGES, ids=os.path.basename)
def test_user_guide_snippets_run(page, _doctest_state, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(page, module_relative=False, optionflags=_FLAGS, verbose=False, report=True)
    assert result.attempted > 0, f"{page} has no runnable snippet"
    assert result.failed == 0, f"{result.failed} of {result.attempted} snippets in {page} failed"
