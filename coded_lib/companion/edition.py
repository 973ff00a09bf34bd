"""The book's edition: the executed notebooks committed in ``book/notebooks/`` (a fresh clone builds the
whole book from them, ``book/results.csv`` and ``book/comparison.md``), their provenance, and the one
place that names the repository. Every executed copy carries its provenance in ``metadata["coded_lib"]``
(commit, date, device, torch, preset, wall time) and shows it under the chapter's title; ``stale()``
lists the chapters whose code no longer matches their source notebook.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "notebooks"
BOOK = REPO / "book"
EDITION = BOOK / "notebooks"

# The one place that names the repository, a placeholder until the project is published: change it here, run
# `python -m coded_lib.companion.edition --write` (the notebooks' badges and install cells) and set
# book/_config.yml's repository.url; tests/test_edition.py fails on any disagreement.
REPOSITORY = "https://github.com/coded-resnext/coded-resnext-companion"
BRANCH = "main"

COLAB = "https://colab.research.google.com/github/"
ONLINE_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"  # on GitHub and in Colab
BOOK_BADGE = "../_static/colab-badge.svg"  # in the book, relative to book/notebooks/: works offline
BADGE_LINE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\n?\n?", re.MULTILINE)

# An edition's folder (book/full, book/at_scale; coded_lib.companion.at_scale writes it, the report reads it)
MANIFEST = "manifest.json"
STATE = "at_scale_state.json"  # in an edition's runs folder (runs/full, runs/at_scale): its stages' state
RUN_FILES = "run_files"  # <edition>/run_files/<run>/...: not "runs", which .gitignore keeps out of git

# The committed editions a notebook can run on without training (``-p edition full``): name -> folder under book/
# (coded_lib.companion.at_scale.EDITIONS writes them there; a test checks the two agree)
EDITIONS = {"full": "full", "gpu": "at_scale"}
WEIGHTS_FILE = "weights.safetensors"  # in a run folder opened from an edition: the published final weights
EDITION_ONLY = ("scale",)  # source notebooks only the full edition executes (not chapters of the default edition)

INSTALL_TAG = "install"          # the Colab install cell of a source notebook
PROVENANCE_TAG = "provenance"    # the generated cell of an executed copy
INJECTED_TAG = "injected-parameters"  # papermill's copy of the parameters
META = "coded_lib"


def colab_url(stem: str) -> str:
    """Colab's link that opens the source notebook ``notebooks/<stem>.ipynb`` of REPOSITORY."""
    org_repo = urlsplit(REPOSITORY).path.strip("/")
    return f"{COLAB}{org_repo}/blob/{BRANCH}/notebooks/{stem}.ipynb"


def badge(stem: str, image: str = ONLINE_BADGE) -> str:
    return f"[![Open In Colab]({image})]({colab_url(stem)})"


def install_source() -> str:
    """The install cell of every source notebook (it does nothing outside Colab)."""
    return f'''# On Colab only: install coded_lib from its repository, and torch_xla on a TPU runtime.
# (If pip replaced an already imported torch, restart the runtime and run the notebook again.)
import glob, os, subprocess, sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+{REPOSITORY}"], check=True)
    if os.environ.get("COLAB_TPU_ADDR") or glob.glob("/dev/accel*"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torch==2.9.0", "torch_xla[tpu]==2.9.0",
                        "-f", "https://storage.googleapis.com/libtpu-releases/index.html"], check=True)'''


def _tags(cell) -> list:
    return cell.metadata.get("tags", [])


def sync_sources(source=SOURCE, write: bool = False) -> list[str]:
    """Problems of the source notebooks against REPOSITORY: the first cell must hold ``badge(stem)``, the one
    cell tagged ``install`` ``install_source()``. ``write`` rewrites wrong badges and install cells (a
    missing one is reported, not repaired)."""
    import nbformat

    problems = []
    for path in sorted(Path(source).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = copy.deepcopy(nb)
        title = nb.cells[0]
        lines = BADGE_LINE.findall(title.source)
        if len(lines) != 1:
            problems.append(f"{path.name}: {len(lines)} Colab badge lines in the first cell, expected 1")
        elif lines[0].strip() != badge(path.stem):
            problems.append(f"{path.name}: Colab badge {lines[0].strip()} is not {badge(path.stem)}")
            title.source = BADGE_LINE.sub(badge(path.stem) + "\n\n", title.source, count=1)
        installs = [c for c in nb.cells if INSTALL_TAG in _tags(c)]
        if len(installs) != 1:
            problems.append(f"{path.name}: {len(installs)} cells tagged {INSTALL_TAG!r}, expected 1")
        elif installs[0].source != install_source():
            problems.append(f"{path.name}: the install cell does not install {REPOSITORY}")
            installs[0].source = install_source()
        if write and nb != before:
            nbformat.write(nb, path)
    return problems


# --- provenance ----------------------------------------------------------------------------------

def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def source_commit(short: bool = True) -> str:
    """The commit the notebooks run from; '+ changes' when coded_lib/ or notebooks/ differ from it."""
    commit = _git("rev-parse", *(["--short=10"] if short else []), "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = _git("status", "--porcelain", "--", "coded_lib", "notebooks")
    return commit + (" + uncommitted changes" if dirty else "")


def device_name() -> str:
    """What the notebooks' runs train on with device "auto": the GPU's name, else the CPU's cores."""
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {cpu_info()['cores']} cores ({platform.machine()})"


def cpu_info() -> dict:
    """This machine's CPU as the benchmarks and manifests record it: model, the vector flags that set
    its speed here (avx2, avx512f, avx512_bf16, amx_bf16), and the cores this process may use."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in text.split()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "flags": flags, "cores": cores}


def provenance(preset: str) -> dict:
    import torch

    return {"commit": source_commit(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "device": device_name(), "torch": torch.__version__, "preset": preset}


def provenance_markdown(stem: str, prov: dict) -> str:
    seconds = prov.get("seconds")
    took = f", in {seconds / 60:.1f} min" if seconds is not None else ""
    return (f"{badge(stem, BOOK_BADGE)}\n\n"
            f"```{{admonition}} Where these outputs come from\n:class: note provenance\n"
            f"Executed with the preset `{prov['preset']}` on {prov['date']}{took}: {prov['device']}, "
            f"torch {prov['torch']}, source commit `{prov['commit']}`. If `coded_lib` has changed since, "
            f"`make reproduce` executes the chapter again.\n```")


def finish(path, prov: dict) -> None:
    """Turn papermill's output ``path`` into a chapter of the edition: ``prov`` in its metadata, papermill's
    injected parameters hidden, the Colab badge moved from the title into a provenance cell under it."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if PROVENANCE_TAG not in _tags(c)]
    for cell in nb.cells:
        if INJECTED_TAG in _tags(cell) and "remove-cell" not in _tags(cell):
            cell.metadata["tags"] = _tags(cell) + ["remove-cell"]
    nb.cells[0].source = BADGE_LINE.sub("", nb.cells[0].source, count=1)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(provenance_markdown(Path(path).stem, prov),
                                                     metadata={"tags": [PROVENANCE_TAG]}))
    nb.metadata[META] = dict(prov)
    nbformat.write(nb, path)


def read_provenance(stem: str, edition=EDITION) -> dict:
    """The provenance of the executed chapter ``stem`` ({} if it is missing or has none)."""
    import nbformat

    path = Path(edition) / f"{stem}.ipynb"
    return dict(nbformat.read(path, as_version=4).metadata.get(META, {})) if path.exists() else {}


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code" and INJECTED_TAG not in _tags(c)]


def stale(edition=EDITION, source=SOURCE) -> list[str]:
    """Chapters of the edition that are missing, or whose code cells differ from their source notebook."""
    import nbformat

    out = []
    for path in sorted(Path(source).glob("*.ipynb")):
        if path.stem in EDITION_ONLY:
            continue
        executed = Path(edition) / path.name
        if not executed.exists():
            out.append(f"{path.stem}: not executed ({executed} is missing)")
            continue
        a, b = _code(nbformat.read(path, as_version=4)), _code(nbformat.read(executed, as_version=4))
        if a != b:
            changed = next(i for i, (x, y) in enumerate(zip(a + [None] * len(b), b + [None] * len(a))) if x != y)
            out.append(f"{path.stem}: code cell {changed + 1} differs from notebooks/{path.name} "
                       f"(executed from {read_provenance(path.stem, edition).get('commit', '?')})")
    return out


def execute(path, out_dir, preset, parameters=None, log_output=False, provenance=None):
    """Run one notebook with papermill into ``out_dir``; returns (ok, seconds). ``log_output`` also streams
    the cells' output to the terminal; ``provenance`` (``provenance(preset)``), when given, is written into
    the executed copy with the time it took (``finish``)."""
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start, ok = time.time(), False
    try:
        papermill.execute_notebook(
            str(path), str(out_dir / path.name), parameters={"preset": preset, **(parameters or {})},
            cwd=str(REPO), kernel_name="python3", progress_bar=True, log_output=log_output)
        ok = True
    except papermill.PapermillExecutionError as e:
        print(f"  {path.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue}", file=sys.stderr)
    except Exception as e:  # a dead kernel or a timeout: keep going with the other notebooks
        print(f"  {path.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
    seconds = time.time() - start
    if provenance is not None and (out_dir / path.name).exists():
        finish(out_dir / path.name, {**provenance, "seconds": round(seconds, 1)})
    return ok, seconds


def sha256(path) -> str:
    """The SHA-256 of a file (the editions' published weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_edition(name: str, runs=None, book=None) -> tuple[Path, str]:
    """A runs folder (``runs``, default: a new temporary one) holding a committed edition's run files and
    published weights, checked against the manifest's SHA-256 (the UvA DL tutorials' convention for pretrained
    checkpoints), and the edition's preset; nothing is trained."""
    if name not in EDITIONS:
        raise ValueError(f"edition={name!r} is not known; allowed: {sorted(EDITIONS)} (or None: train or reuse runs)")
    folder = Path(book if book is not None else BOOK) / EDITIONS[name]
    if not (folder / MANIFEST).exists():
        raise ValueError(f"the {name} edition is not committed: {folder / MANIFEST} does not exist "
                         f"(make edition EDITION={name} makes it)")
    manifest = json.loads((folder / MANIFEST).read_text())
    runs = Path(runs) if runs is not None else Path(tempfile.mkdtemp(prefix=f"coded_edition_{name}_"))
    for config in sorted((folder / RUN_FILES).glob("*/config.json")):
        shutil.copytree(config.parent, runs / config.parent.name, dirs_exist_ok=True)
    from ..analysis.reference import CACHE_FILE

    if (folder / RUN_FILES / CACHE_FILE).exists():  # the linear classifier of analysis.reference, fitted once
        shutil.copyfile(folder / RUN_FILES / CACHE_FILE, runs / CACHE_FILE)
    for rel, digest in (manifest.get("weights") or {}).items():
        path = folder / rel
        actual = sha256(path) if path.exists() else "missing"
        if actual != digest:
            raise ValueError(f"{path}: SHA-256 {actual} is not the manifest's {digest}: the weights are damaged or "
                             f"were changed; restore them (git checkout {folder}) or remake the edition")
        shutil.copyfile(path, runs / path.stem / WEIGHTS_FILE)
    return runs, manifest["preset"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m coded_lib.companion.edition",
                                 description="Check the notebooks' Colab badges and install cells against "
                                             "REPOSITORY, and the executed edition against its sources.")
    ap.add_argument("--write", action="store_true", help="rewrite the badges and install cells from REPOSITORY")
    args = ap.parse_args(argv)
    problems = sync_sources(write=args.write)
    for p in problems + stale():
        print(p)
    if args.write and problems:
        print("rewritten from", REPOSITORY)


if __name__ == "__main__":
    main()
