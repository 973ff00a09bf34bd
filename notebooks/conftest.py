"""nbval runs every notebook here as a test (`pytest notebooks --nbval-lax`), in smoke mode.

The stored notebooks keep their real defaults; ``CODED_SMOKE=1`` makes their
``coded_lib.companion.notebook.setup(globals(), ...)`` cell switch to the ``smoke`` preset and to the small
values each notebook names, and ``CODED_RUNS`` sends every run to one temporary folder for the
session, so the ``smoke`` run trained by the first notebook is reused by the others and nothing
lands in ``runs/``. The variables are set just before a notebook's kernel starts (the kernel
inherits them) and only for the items of this folder.
"""
import os
import shutil
import tempfile

import pytest

_CREATED = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    os.environ["CODED_SMOKE"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not os.environ.get("CODED_RUNS"):
        _CREATED.append(tempfile.mkdtemp(prefix="coded_nbval_runs_"))
        os.environ["CODED_RUNS"] = _CREATED[-1]


def pytest_unconfigure(config):
    for path in _CREATED:
        shutil.rmtree(path, ignore_errors=True)
