"""Serve MathJax from the book itself, so that the math renders offline.

Sphinx links MathJax from a CDN by default; ``_config.yml`` points ``mathjax_path`` at
``_static/mathjax/tex-svg-full.js`` instead, and this extension copies that one file there from
the PyPI package ``django-static-mathjax`` (MathJax 3.2.2, a dev dependency) when the build has
finished. The ``tex-svg-full`` component carries its SVG glyphs and every TeX extension, so no
font files or further requests are needed. (Not in ``_static/`` itself: jupyter-book would add
every ``.js`` file there to every page.)
"""
import importlib.resources
import shutil
from pathlib import Path

SOURCE = ("static", "mathjax", "es5", "tex-svg-full.js")
TARGET = Path("_static") / "mathjax" / "tex-svg-full.js"


def copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    try:
        source = importlib.resources.files("mathjax").joinpath(*SOURCE)
    except ModuleNotFoundError:
        raise RuntimeError("the book's math needs the package django-static-mathjax "
                           "(pip install -e '.[dev]' installs it)") from None
    target = Path(app.outdir) / TARGET
    target.parent.mkdir(parents=True, exist_ok=True)
    with importlib.resources.as_file(source) as path:
        shutil.copyfile(path, target)


def setup(app):
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
