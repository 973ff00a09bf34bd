"""`make reproduce`: run every notebook, write the comparison page, build the book.

    python -m coded_lib.companion.reproduce --preset fashion_mnist

0. The editions' runner trains the runs the paper's chapters open (``at_scale.default_plan``), two
   1-thread processes at once, with a progress bar and the time left; finished runs are kept.
1. Papermill runs each notebook of ``NOTEBOOKS`` with ``preset`` from the repository root into
   ``book/notebooks/<stem>.ipynb`` with its provenance (``edition.finish``); the book never executes
   anything itself. A missing notebook is skipped with a warning; finished runs under ``runs/`` are reused.
2. ``coded_lib.companion.report`` gathers ``runs/**/results.csv`` into ``book/results.csv`` and writes the
   claims dashboard ``book/comparison.md`` from it.
3. ``jupyter-book build book/`` renders the book to ``book/_build/html``.

The outputs are the committed default edition (a fresh clone builds the book from them: ``edition``). A failed
notebook is kept (with its error) in the book, the other steps still run, and the command exits 1 naming it.
"""
import argparse
import logging
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from . import at_scale, edition, notebook, report
from .edition import BOOK, REPO, SOURCE, execute

# The one list of notebooks, in the book's order (book/_toc.yml lists the same stems; the ids each checks:
# report.NOTEBOOK_OF); the last three are the part "Beyond the paper" (issue 15).
NOTEBOOKS = ["train", "codes", "architecture", "accuracy", "removal", "binary", "activations", "early",
             "calibration", "ablations", "cost", "semantic_codes", "anytime", "conditional"]


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
    """Copy source notebooks into the book where no executed copy exists yet, so that the book shows every
    chapter (code without outputs) before anything ran; returns the stems copied."""
    target = Path(book) / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    copied = [path for path in available(source=source) if not (target / path.name).exists()]
    for path in copied:
        shutil.copyfile(path, target / path.name)
    return [path.stem for path in copied]


def build_book(book=BOOK, quiet=False):
    """``jupyter-book build book/``; returns the path of index.html."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(book), "--builder", "html"] + (["--quiet"] if quiet else [])
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
    if args.no_execute:  # nothing runs: the committed results stay as they are
        stage_unexecuted()
        page = report.write_from_results(BOOK / report.RESULTS_CSV, BOOK / "comparison.md")
    else:
        paths = available(args.only)
        if not args.no_pretrain and not args.only:
            plan = at_scale.default_plan(args.preset)
            print(f"training the chapters' runs, {plan.jobs} at once, into runs/ (or $CODED_RUNS)", flush=True)
            failed += [f"training {f}" for f in at_scale.train_all(plan, notebook.run_folder(args.preset).parent)]
        prov = {**edition.provenance(args.preset), "training_s": round(time.time() - start, 1)}
        # the plan: each chapter's wall time in the committed edition, scaled by how this machine compares so far
        planned = {p.stem: float(edition.read_provenance(p.stem).get("seconds") or 60) for p in paths}
        spent = done_planned = 0.0
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] {path.relative_to(REPO)} (preset {args.preset})", flush=True)
            ok, seconds = execute(path, BOOK / "notebooks", args.preset, log_output=args.log_output,
                                  provenance={**prov, "date": edition.provenance(args.preset)["date"]})  # its start
            spent, done_planned = spent + seconds, done_planned + planned[path.stem]
            left = sum(planned[p.stem] for p in paths[i:]) * spent / max(done_planned, 1.0)
            print(f"[{i}/{len(paths)}] {path.stem}: {'done' if ok else 'FAILED'} in {seconds:.0f} s "
                  f"({time.time() - start:.0f} s so far, about {left / 60:.0f} min left)", flush=True)
            if not ok:
                failed.append(path.stem)
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
