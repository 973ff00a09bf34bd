"""`make reproduce`: run every notebook, write the comparison page, build the book.

    python -m coded_lib.companion.reproduce --preset fashion_mnist

0. The runs the paper's chapters open (``at_scale.default_plan``: read from the chapters' parameters) are
   trained first by the editions' runner, two 1-thread processes at once, with a progress bar and the
   time left; finished runs are kept.
1. Each notebook of ``NOTEBOOKS`` (``notebooks/<stem>.ipynb``) runs through
   papermill with ``preset`` as parameter, from the repository root (the terminal shows
   papermill's progress per cell); the executed copy goes to ``book/notebooks/<stem>.ipynb``,
   where the book reads it (the book never executes anything itself), with its provenance
   (``coded_lib.companion.edition.finish``). A notebook not written yet is skipped with a
   warning. Training is not repeated: the notebooks reuse finished runs under ``runs/``
   (``coded_lib.train.ensure_run``).
2. ``coded_lib.companion.report`` gathers ``runs/**/results.csv`` into ``book/results.csv``
   and writes the claims dashboard ``book/comparison.md`` from it.
3. ``jupyter-book build book/`` renders the book to ``book/_build/html``.

``book/notebooks/``, ``book/results.csv`` and ``book/comparison.md`` are the default edition,
committed, so that ``jupyter-book build book/`` on a fresh clone builds the whole book.

A notebook that fails is kept (with its error) in the book, the other steps
still run, and the command exits with status 1 naming it.
"""
import argparse
import logging
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from . import at_scale, edition, report
from .edition import execute

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "notebooks"
BOOK = REPO / "book"

# The one list of notebooks, in the book's order (book/_toc.yml lists the same stems).
NOTEBOOKS = [
    "train",         # training a Coded ResNeXt and its ResNeXt twin
    "codes",         # T-codes
    "architecture",  # T-arch
    "accuracy",      # T-acc
    "removal",       # F-removal
    "binary",        # F-binary, F-bindist
    "activations",   # F-act
    "early",         # F-early, T-agree
    "calibration",   # T-calib
    "ablations",     # F-mu, F-pdrop, T-exp, T-concat, T-detach, T-ratios
    "cost",          # T-cost
    # part "Beyond the paper" (issue 15)
    "semantic_codes",  # B-semantic
    "anytime",         # B-anytime
    "conditional",     # B-conditional
]


def available(stems=None, source=SOURCE):
    """The source notebooks that exist, in order; warns about the missing ones."""
    found = []
    for stem in stems or NOTEBOOKS:
        if stem not in NOTEBOOKS:
            raise ValueError(f"unknown notebook {stem!r}; allowed: {', '.join(NOTEBOOKS)}")
        path = Path(source) / f"{stem}.ipynb"
        if path.exists():
            found.append(path)
        else:
            warnings.warn(f"{path} does not exist yet: skipped", stacklevel=2)
    return found


def stage_unexecuted(book=BOOK, source=SOURCE):
    """Copy source notebooks into the book where no executed copy exists yet.

    Lets the book show every chapter (code without outputs) before anything ran.
    Returns the stems copied.
    """
    copied = []
    target = Path(book) / "notebooks"
    for path in available(source=source):
        out = target / path.name
        if not out.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
            copied.append(path.stem)
    return copied


def nb_runs_root(preset):
    """The folder holding the chapters' run folders (``runs/``, or ``$CODED_RUNS``)."""
    from .notebook import run_folder

    return run_folder(preset).parent


def build_book(book=BOOK, quiet=False):
    """``jupyter-book build book/``; returns the path of index.html."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(book), "--builder", "html"]
    if quiet:
        cmd.append("--quiet")
    subprocess.run(cmd, check=True)
    return Path(book) / "_build" / "html" / "index.html"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m coded_lib.companion.reproduce",
                                 description="Run every notebook, write the comparison page, build the book.")
    ap.add_argument("--preset", default="fashion_mnist", help="preset passed to every notebook")
    ap.add_argument("--only", nargs="+", metavar="STEM", help=f"run only these of: {' '.join(NOTEBOOKS)}")
    ap.add_argument("--no-execute", action="store_true",
                    help="do not run notebooks (copy unexecuted ones where none ran yet)")
    ap.add_argument("--no-build", action="store_true", help="skip jupyter-book build")
    ap.add_argument("--log-output", action="store_true", help="also print what the notebooks' cells print")
    ap.add_argument("--no-pretrain", action="store_true",
                    help="let each chapter train its runs itself (one 2-thread kernel) instead of step 0")
    args = ap.parse_args(argv)
    if args.log_output:
        logging.basicConfig(level=logging.INFO, format="%(message)s")

    start = time.time()
    failed = []
    if args.no_execute:
        stage_unexecuted()
    else:
        paths = available(args.only)
        if not args.no_pretrain and not args.only:
            plan = at_scale.default_plan(args.preset)
            print(f"training the chapters' runs ({sum(len(s.runs) for s in at_scale.stages(plan))}, "
                  f"{plan.jobs} at once)", flush=True)
            failed += [f"training {f}" for f in at_scale.train_all(plan, nb_runs_root(args.preset))]
        prov = edition.provenance(args.preset)
        # the plan: each chapter's wall time in the committed edition (its provenance), scaled by how this
        # machine compares so far
        planned = {p.stem: float(edition.read_provenance(p.stem).get("seconds") or 60) for p in paths}
        spent = done_planned = 0.0
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.relative_to(REPO)} (preset {args.preset})", flush=True)
            ok, seconds = execute(path, BOOK / "notebooks", args.preset, log_output=args.log_output,
                                  provenance=prov)
            spent, done_planned = spent + seconds, done_planned + planned[path.stem]
            left = sum(planned[p.stem] for p in paths[i:]) * spent / max(done_planned, 1.0)
            print(f"[{i}/{len(paths)}] {path.stem}: {'done' if ok else 'FAILED'} in {seconds:.0f} s "
                  f"({time.time() - start:.0f} s so far, about {left / 60:.0f} min left)", flush=True)
            if not ok:
                failed.append(path.stem)

    if args.no_execute:  # nothing ran: the committed results stay as they are
        page = report.write_from_results(BOOK / report.RESULTS_CSV, BOOK / "comparison.md")
    else:
        page = report.write_comparison(None, BOOK / "comparison.md", only=args.only)
    print(f"wrote {page.relative_to(REPO)}", flush=True)
    for line in edition.stale():
        print(f"warning: {line}", file=sys.stderr)

    if not args.no_build:
        index = build_book(BOOK)
        print(f"\nThe book is at {index}\n  open file://{index}", flush=True)
    print(f"reproduce took {time.time() - start:.0f} s", flush=True)
    if failed:
        print(f"notebooks that failed: {', '.join(failed)} (their errors are in the book)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
