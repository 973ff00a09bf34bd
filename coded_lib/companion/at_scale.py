"""The runner of the book's editions: one :class:`Plan` per edition, run in resumable stages.

    make edition EDITION=full                                     # all of Fashion-MNIST on this CPU (FULL)
    python -m coded_lib.companion.at_scale list --edition full    # the stages and their planned time
    python -m coded_lib.companion.at_scale prepare --to dist/at_scale  # with internet: wheels + data for a GPU host
    python -m coded_lib.companion.at_scale run --edition gpu --data dist/at_scale  # the paper's network (PLAN)

``run`` goes through the plan's stages (``Plan.order``), each planned within ``Plan.stage_limit_s``, and
skips those done (state in ``<runs>/at_scale_state.json``: a killed command is simply run again, and its
trainings resume from their checkpoints). One runner holds a runs folder at a time. Training stages run
``python -m coded_lib.train`` processes, ``Plan.jobs`` at once, with a progress bar and the time left of the
stage and of the whole; analysis stages execute ``notebooks/`` with papermill on those runs (``CODED_RUNS``).
After the last stage, ``finish`` writes into ``<out>`` the executed chapters, the runs' small files, the seed-0
networks' weights and ``manifest.json``; until then the part's page says that it has not been run.
Between two sittings, ``snapshot`` puts what resuming needs into ``<out>/resume/`` and ``run`` restores it.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import gzip
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from ..analysis.reference import CACHE_FILE
from ..train import load_run
from ..train.checkpoint import load_checkpoint, save_checkpoint
from ..train.data import FASHION_FILES, _idx_file, find_fashion_mnist
from ..train.lock import FolderBusy, FolderLock
from ..train.loop import CHECKPOINT, CHECKPOINT_KEYS, _atomic_write_text
from ..train.presets import get_config
from . import edition, notebook as nb
from .edition import MANIFEST, RUN_FILES, SOURCE, STATE, cpu_info, device_name, execute, sha256, source_commit

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "book" / "at_scale"
# Files of a run folder that the edition keeps (small text files); checkpoints and figures stay behind
# (the figures are in the executed notebooks).
KEPT = ("config.json", "metrics.csv", "results.csv", "tables/*.csv")
MAX_KEPT_BYTES = 1_000_000
# Installed on the GPU host from the prepared folder; the host brings torch, torchvision, timm, pandas,
# scikit-learn and matplotlib itself. seaborn comes without its dependencies (numpy, pandas, matplotlib).
WHEELS = ("papermill", "ipykernel", "setuptools>=64", "wheel")
WHEELS_NO_DEPS = ("seaborn",)


@dataclass(frozen=True)
class Stage:
    name: str
    runs: tuple = ()       # (preset, overrides) pairs trained by this stage
    notebooks: tuple = ()  # notebook stems executed by this stage
    planned_s: float = 0.0  # planned seconds on the edition's machine


@dataclass(frozen=True)
class Plan:
    """What an edition trains and executes, and the time planned for it."""
    name: str = "gpu"
    preset: str = "fashion_mnist_at_scale"
    seeds: tuple = (0, 1, 2)
    parameters: dict = field(default_factory=dict)  # papermill parameters per notebook (also the ablations' runs)
    analysis: tuple = ()  # groups of notebook stems, one stage each
    jobs: int = 3         # training processes at once
    seconds_per_run_epoch: float = 10.0  # planned: one run-epoch, ``jobs`` runs at once
    seconds_per_run: float = 0.0  # planned: a process start, compilation
    notebook_s: dict = field(default_factory=dict)  # planned: each notebook
    runtime: dict = field(default_factory=dict)  # Config fields that change neither result nor folder (compile)
    threads: int | None = None  # OMP threads per training
    extra: tuple = ()  # more (stage name, runs) trainings
    # a training stage planned over it is cut into parts, so that a kill loses at most one stage's work
    stage_limit_s: float = 8 * 60
    order: tuple = ()  # stage names (a cut training stage by its name) in the order to run; () = trainings first
    out: str = "book/at_scale"
    runs: str = "runs/at_scale"


# The GPU edition, planned within 10 of the 15 minutes a lent GPU gives (start and install included): the main
# comparison (3 seeds a side, 5 epochs: 30 run-epochs x 10 s) and the analysis chapters; the grids stay with FULL.
PLAN = Plan(
    parameters={
        "removal": {"blocks": None, "n_val": 2000}, "early": {"n_val": None}, "codes": {"regenerate": ["cifar10"]},
        # the cost chapter's GPU row: the recipe's batch on the GPU
        "cost": {"device": "cuda", "batch_size": 512, "steps": 20},
    },
    analysis=(("train", "accuracy", "removal", "binary", "early"),
              ("activations", "calibration", "cost", "codes", "architecture")),
    # planned CPU time of the GPU host's 16 cores (the notebooks' analyses run on the CPU)
    notebook_s={"train": 15, "accuracy": 15, "removal": 60, "binary": 70, "early": 25, "activations": 15,
                "calibration": 40, "cost": 20, "codes": 5, "architecture": 10},
)


# Optional (``run --beyond``): the part "Beyond the paper" (issue 15) as one more analysis stage; its
# notebooks train their own few runs (3 epochs, as the ablations, whose coded run they share). Its chapters
# are copied into the edition's folder but the book's "At scale" part does not list them.
BEYOND = ("semantic_codes", "anytime", "conditional")
BEYOND_PARAMETERS = {stem: {"beyond_overrides": {"epochs": 3}} for stem in ("semantic_codes", "anytime")}
BEYOND_S = {"semantic_codes": 120, "anytime": 90, "conditional": 40}


def with_beyond(plan: Plan) -> Plan:
    """``plan`` with the part "Beyond the paper" as its last analysis stage."""
    return replace(plan, analysis=plan.analysis + (BEYOND,), parameters={**plan.parameters, **BEYOND_PARAMETERS},
                   notebook_s={**plan.notebook_s, **BEYOND_S})


def _ablation_runs(plan: Plan) -> tuple[list, list]:
    """(mu and p_drop grids, other ablations) as (preset, overrides) pairs, as notebooks/ablations.ipynb asks
    for them (``nb.sweep`` / ``nb.ensure`` with ``ablation_overrides`` as the base)."""
    p = plan.parameters.get("ablations")
    if p is None:
        return [], []
    bases = [{**p.get("ablation_overrides", {}), "seed": s} for s in p.get("seeds", [0])]
    grids = [{**b, "mu": v} for b in bases for v in p["mu_values"]]
    grids += [{**b, "p_drop": v} for b in bases for v in p["pdrop_values"]]
    other = ([{**b, "loss_exponent": v} for b in bases for v in p["exponents"]]
             + [{**b, **v} for b in bases for v in nb.ABLATION_VARIANTS.values()]
             + [{**b, "ratios": v} for b in bases for v in p["ratios"]])
    return _unique(plan.preset, grids), _unique(plan.preset, other, exclude=grids)


def _unique(preset, overrides: list, exclude=()) -> list:
    """(preset, overrides) pairs, one per run folder (values equal to the preset's share one folder)."""
    out = {}
    for o in overrides:
        o = {k: v for k, v in o.items() if v is not None}
        out.setdefault(folder_name(preset, o), (preset, o))
    excluded = {folder_name(preset, o) for o in exclude}
    return [run for name, run in out.items() if name not in excluded]


def folder_name(preset: str, overrides: dict) -> str:
    """The run folder's name the notebooks use for ``preset`` with ``overrides`` (``nb.run_folder``)."""
    return nb.run_folder(preset, **overrides).name


# The full CPU edition: the default network and recipe on all 60,000 training images (preset fashion_mnist_full,
# whose comment has the measurements), two 1-thread compiled processes, stages of at most 30 minutes.
SCALE_SIZES = [2000, 8000, 20000]  # training images of the scale chapter's points, below the full 60,000


def _scale_runs(preset: str, sizes, seeds) -> tuple:
    """The scale chapter's trainings: coded and plain at each training-set size and seed, in pairs."""
    base_preset, base_overrides = nb.baseline(preset)
    coded = _unique(preset, [{"train_subset": n, "seed": s} for n in sizes for s in seeds])
    plain = _unique(base_preset, [{**base_overrides, "train_subset": n, "seed": s} for n in sizes for s in seeds])
    return tuple(run for pair in zip(coded, plain) for run in pair)


def full_plan(preset: str = "fashion_mnist_full", seeds=(0, 1, 2, 3, 4), grid_epochs: int = 1,
              grid_seeds=(0, 1, 2), scale_sizes=tuple(SCALE_SIZES), scale_seeds=(0, 1, 2)) -> Plan:
    """The full edition's plan (``FULL``: T-acc on 5 seeds, the grids and the scale points on 3), or the same
    plan with another preset, epochs and seeds (the test runs it on the smoke preset)."""
    return Plan(
        name="full", preset=preset, seeds=tuple(seeds), jobs=2, threads=1,
        runtime={"compile": True, "channels_last": True},
        parameters={
            "removal": {"blocks": None, "n_val": None}, "early": {"n_val": None}, "calibration": {"n_val": None},
            "binary": {"n_train": 5000, "n_val": None, "n_ood": None}, "activations": {"n_val": 2000},
            "ablations": {"ablation_overrides": {"epochs": grid_epochs}, "seeds": list(grid_seeds), "n_binary": 1000,
                          "mu_values": [0.0, 2.0, 6.0, 20.0], "pdrop_values": [0.0, 0.1, 0.2],
                          "exponents": [4, 2, "abs"], "ratios": [None, {"c2": "7/10"}]},
            "scale": {"train_sizes": list(scale_sizes) + [None], "seeds": list(scale_seeds), "n_binary": 1000},
        },
        # the removal chapter (every coded block on 10,000 images: 34 min in the first sitting) is a stage
        # of its own, so that no analysis stage is planned over the 30-minute limit
        analysis=(("train", "accuracy", "binary", "early", "activations", "calibration", "codes", "architecture",
                   "cost"), ("ablations",), ("scale",), ("removal",)),
        extra=(("train-scale", _scale_runs(preset, scale_sizes, scale_seeds)),),
        # the main comparison and its chapters first, then the scale chapter (the result the smaller editions
        # cannot give), then the ablation grids
        order=("train-coded", "train-baseline", "analysis-1", "analysis-4", "train-scale", "analysis-3",
               "train-ablations-mu-pdrop", "train-ablations-other", "analysis-2"),
        stage_limit_s=30 * 60, seconds_per_run_epoch=45.0, seconds_per_run=25.0,
        notebook_s={"train": 20, "accuracy": 15, "removal": 1500, "binary": 180, "early": 40, "activations": 30,
                    "calibration": 180, "codes": 60, "architecture": 10, "cost": 60, "ablations": 240, "scale": 480},
        out="book/full", runs="runs/full",
    )


FULL = full_plan()
EDITIONS = {"gpu": PLAN, "full": FULL}


def notebook_defaults(stem: str) -> dict:
    """The values of a source notebook's parameters cell: what its chapter uses when nothing is passed."""
    import papermill

    declared = papermill.inspect_notebook(str(SOURCE / f"{stem}.ipynb"))
    return {k: ast.literal_eval(v["default"]) for k, v in declared.items()}


def default_plan(preset: str = "fashion_mnist") -> Plan:
    """The default edition's trainings (``make reproduce``, 2-core CPU; no analysis stage): the runs its paper
    chapters open, read from their parameters (accuracy's seeds, the ablations' grids), two 1-thread processes
    at once in channels-last (2.3x and 1.4x over one 2-thread kernel in eager: benchmarks/results.md, section
    10). Planning: a run-epoch of all 60,000 images ~56 s with two at once, ~8 s a run to start."""
    return Plan(name="default", preset=preset, seeds=tuple(notebook_defaults("accuracy")["seeds"]), jobs=2, threads=1,
                runtime={"channels_last": True}, parameters={"ablations": notebook_defaults("ablations")},
                seconds_per_run_epoch=56.0, seconds_per_run=8.0, out="book", runs="runs")


def train_all(plan: Plan, runs_dir: Path) -> list[str]:
    """Every training stage of ``plan`` into ``runs_dir`` (finished runs are skipped); returns the failures."""
    todo = [s for s in stages(plan) if s.runs]
    failed = []
    for i, stage in enumerate(todo):
        failed += train_stage(stage, runs_dir, plan, sum(s.planned_s for s in todo[i + 1:]))
    return failed


def _image_epochs(preset, overrides) -> float:
    """A run's epochs in units of its data set's full training set (a 2,000-image run's epoch is 1/30 of one)."""
    cfg = get_config(preset, **overrides)
    full = nb.DATA_SIZES.get(cfg.dataset, (None,))[0]
    return cfg.epochs * (min(cfg.train_subset, full) / full if cfg.train_subset and full else 1.0)


def _planned_s(plan: Plan, runs) -> float:
    """Planned wall seconds of training ``runs``, ``plan.jobs`` at a time."""
    return (sum(_image_epochs(p, o) for p, o in runs) * plan.seconds_per_run_epoch
            + len(runs) * plan.seconds_per_run / plan.jobs)


def _parts(plan: Plan, name: str, runs: list) -> list[Stage]:
    """``runs`` as one stage, or as few parts of about equal planned time as keep each within the stage limit."""
    for k in range(1, len(runs) + 1):  # at most one run a part
        cuts = [round(i * len(runs) / k) for i in range(k + 1)]
        parts = [runs[a:b] for a, b in zip(cuts, cuts[1:])]
        if all(_planned_s(plan, p) <= plan.stage_limit_s for p in parts):
            break
    names = [name] if k == 1 else [f"{name}-{i}" for i in range(1, k + 1)]
    return [Stage(n, runs=tuple(r), planned_s=_planned_s(plan, r)) for n, r in zip(names, parts)]


def stages(plan: Plan = PLAN) -> list[Stage]:
    """The edition's stages in ``plan.order`` (by default the trainings, then the analysis notebooks)."""
    base_preset, base_overrides = nb.baseline(plan.preset)
    grids, other = _ablation_runs(plan)
    trainings = {"train-coded": [(plan.preset, {"seed": s}) for s in plan.seeds],
                 "train-baseline": [(base_preset, {**base_overrides, "seed": s}) for s in plan.seeds],
                 "train-ablations-mu-pdrop": grids, "train-ablations-other": other,
                 **{name: list(runs) for name, runs in plan.extra}}
    groups = {name: _parts(plan, name, runs) for name, runs in trainings.items() if runs}
    for i, group in enumerate(plan.analysis, 1):
        groups[f"analysis-{i}"] = [Stage(f"analysis-{i}", notebooks=tuple(group),
                                         planned_s=sum(plan.notebook_s.get(s, 0) for s in group))]
    order = list(plan.order) or list(groups)
    if sorted(order) != sorted(groups):
        raise ValueError(f"the plan's order {order} must name each of its stages once: {list(groups)}")
    return [stage for name in order for stage in groups[name]]


# --- running -------------------------------------------------------------------------------------

@contextmanager
def _environ(**values):
    """``os.environ`` with ``values`` set (None: left as it is) for the notebooks' kernels, restored after."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        os.environ.update({k: v for k, v in old.items() if v is not None})
        for k in [k for k, v in old.items() if v is None]:
            os.environ.pop(k, None)


def _epochs_done(run_dir: Path) -> int:
    """Epochs in a run folder's metrics.csv (0 before its first epoch)."""
    try:
        return max(0, len((run_dir / "metrics.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def train_stage(stage: Stage, runs_dir: Path, plan: Plan, left_after_s: float = 0.0) -> list[str]:
    """Train the stage's runs, ``plan.jobs`` at a time; returns the failures (with their logs). The progress bar
    counts the epochs in the runs' metrics.csv (a resumed stage starts where it stopped) and shows the time left
    of the stage and, with the ``left_after_s`` planned after it, of the edition."""
    logs = runs_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(plan.threads)} if plan.threads else {})}
    folders = {folder_name(p, o): get_config(p, **o).epochs for p, o in stage.runs}
    total = sum(folders.values())
    done = lambda: sum(min(_epochs_done(runs_dir / n), e) for n, e in folders.items())  # noqa: E731
    # a log file (not a terminal) gets one line a minute, not one a second (the postfix does not redraw it)
    bar = tqdm(total=total, initial=done(), desc=stage.name, unit="run-epoch", file=sys.stderr,
               mininterval=1 if sys.stderr.isatty() else 60,
               bar_format="{desc}: {n_fmt}/{total_fmt} run-epochs [{elapsed}<{remaining}]{postfix}")
    # a finished run is not started again (a process start costs seconds, a compiled one a minute)
    pending = [r for r in stage.runs if _epochs_done(runs_dir / folder_name(*r)) < folders[folder_name(*r)]]
    running, failed = [], []
    while pending or running:
        while pending and len(running) < plan.jobs:
            preset, overrides = pending.pop(0)
            name = folder_name(preset, overrides)
            log = open(logs / f"{name}.log", "a")
            cmd = [sys.executable, "-m", "coded_lib.train", "--preset", preset, "--run-dir", str(runs_dir / name)]
            for k, v in {**overrides, **plan.runtime}.items():
                cmd += ["--set", f"{k}={json.dumps(v) if isinstance(v, dict) else v}"]
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env), name, log))
        time.sleep(1.0)
        bar.update(done() - bar.n)
        if rate := bar.format_dict.get("rate"):
            bar.set_postfix_str(f"edition ~{((total - bar.n) / rate + left_after_s) / 60:.0f} min left", refresh=False)
        for proc, name, log in [r for r in running if r[0].poll() is not None]:
            running.remove((proc, name, log))
            log.close()
            if proc.returncode:
                failed.append(f"{name} (exit {proc.returncode}; log: {log.name})")
    bar.close()
    return failed


def notebook_stage(stage: Stage, plan: Plan, executed: Path) -> list[str]:
    """Execute the stage's notebooks with papermill into ``executed``; returns the failures."""
    import papermill

    failed = []
    for stem in stage.notebooks:
        path = SOURCE / f"{stem}.ipynb"
        params = dict(plan.parameters.get(stem, {}))
        declared = papermill.inspect_notebook(str(path))
        if "seeds" in declared and "seeds" not in params:  # a notebook that averages over seeds
            params["seeds"] = list(plan.seeds)
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ValueError(f"the plan passes {unknown} to notebooks/{stem}.ipynb, which has no such parameter; "
                             f"its parameters: {sorted(declared)}")
        ok, seconds = execute(path, executed, plan.preset, params)
        print(f"  {stem}: {'done' if ok else 'FAILED'} in {seconds:.0f} s", flush=True)
        if not ok:
            failed.append(stem)
    return failed


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run(out=OUT, runs=None, plan: Plan = PLAN, only=None, next_only: bool = False, data=None,
        command: str | None = None) -> dict:
    """Run the stages not done yet (``only``: these names; ``next_only``: the first pending one), then,
    once every stage is done, write the edition into ``out``. Returns the state (stage -> record)."""
    out, runs_dir = Path(out), Path(runs if runs is not None else REPO / "runs" / "at_scale")
    runs_dir.mkdir(parents=True, exist_ok=True)
    all_stages = stages(plan)
    names = [s.name for s in all_stages]
    bad = sorted(set(only or ()) - set(names))
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; allowed: {names}")
    if restore(out, runs_dir):
        print(f"resuming from {out / RESUME} (a sitting before this one)", flush=True)
    state_path = runs_dir / STATE
    state = _read_json(state_path)
    todo = [s for s in all_stages if not state.get(s.name, {}).get("done") and (not only or s.name in only)]
    todo = todo[:1] if next_only else todo
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MANIFEST).exists():
        write_page(out, plan)
    failed = []
    with FolderLock(runs_dir, f"the {plan.name} edition's runner"), \
            _environ(CODED_RUNS=runs_dir.resolve(), CODED_DATA=Path(data).resolve() if data else None,
                     MPLBACKEND="Agg"):
        for stage in todo:
            print(f"[{stage.name}] planned {stage.planned_s / 60:.1f} min", flush=True)
            start = time.perf_counter()
            # epochs trained before this attempt (an earlier sitting, or a killed run of this command): their
            # time is not in this stage's wall time, and the manifest says so
            resumed = {n: e for n in (folder_name(*r) for r in stage.runs) if (e := _epochs_done(runs_dir / n))}
            if stage.runs:
                errors = train_stage(stage, runs_dir, plan, sum(s.planned_s for s in todo[todo.index(stage) + 1:]))
            else:
                errors = notebook_stage(stage, plan, runs_dir / "executed")
            wall = time.perf_counter() - start
            # an edition may take two sittings on two machines: each stage keeps the CPU it ran on
            state[stage.name] = {"done": not errors, "wall_s": round(wall, 1), "planned_s": stage.planned_s,
                                 "date": _now(), "cpu": cpu_info()["model"], "resumed": resumed, "failed": errors}
            _atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")
            print(f"[{stage.name}] {'done' if not errors else 'FAILED: ' + '; '.join(errors)} in {wall / 60:.1f} min",
                  flush=True)
            failed += errors
    if all(state.get(n, {}).get("done") for n in names):
        finish(out, runs_dir, plan, state, command)
        shutil.rmtree(out / RESUME, ignore_errors=True)  # done: the checkpoints leave the commit
    if failed:
        raise RuntimeError("stages failed: " + "; ".join(failed))
    return state


def _now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


# --- the edition's files -------------------------------------------------------------------------

def _metadata(get, name):
    """``get(name)`` of importlib.metadata (``requires``, ``version``); None if the package is not installed."""
    try:
        return get(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions() -> dict:
    """Versions of this package's requirements (not its extras) and of the notebook tools; None if missing."""
    reqs = _metadata(importlib.metadata.requires, "coded_lib") or []
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in reqs if "extra ==" not in r]
    names += ["coded_lib", "papermill", "ipykernel", "nbclient", "nbformat", "jupyter_client", "pillow"]
    return {name: _metadata(importlib.metadata.version, name) for name in dict.fromkeys(names)}


def small_files(runs_dir: Path) -> list[Path]:
    """The kept files of every run folder under ``runs_dir`` (see KEPT), relative to it."""
    return [p.relative_to(runs_dir) for config in sorted(runs_dir.glob("*/config.json")) for pattern in KEPT
            for p in sorted(config.parent.glob(pattern)) if p.stat().st_size <= MAX_KEPT_BYTES]


WEIGHTS = "weights"  # <out>/weights/<run>.safetensors: the seed-0 coded and plain networks' final weights


def weight_runs(plan: Plan) -> list[str]:
    """The run folders whose final weights an edition publishes: seed 0 of the coded and the plain network."""
    base_preset, base_overrides = nb.baseline(plan.preset)
    return [folder_name(plan.preset, {"seed": plan.seeds[0]}),
            folder_name(base_preset, {**base_overrides, "seed": plan.seeds[0]})]


def export_weights(runs_dir: Path, names, to: Path) -> dict:
    """``<to>/<run>.safetensors`` (the model's state dict, float32) of each run; returns file -> SHA-256."""
    from safetensors.torch import save_file

    to.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        model, _ = load_run(runs_dir / name)
        path = to / f"{name}.safetensors"
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
        out[f"{WEIGHTS}/{path.name}"] = sha256(path)
    return out


def finish(out, runs_dir, plan: Plan, state: dict, command: str | None = None) -> Path:
    """Copy the executed chapters, the runs' small files and the published weights of the stages done into
    ``out``; write the manifest (``"complete": false`` while stages are pending, as in ``snapshot``) and the page."""
    out, runs_dir = Path(out), Path(runs_dir)
    all_stages = stages(plan)
    done = [s for s in all_stages if state.get(s.name, {}).get("done")]
    for old in out.glob("*.ipynb"):
        old.unlink()
    prov = edition.provenance(plan.preset)  # the note under each chapter's title, as in the default edition
    for stage in done:
        for stem in stage.notebooks:
            shutil.copyfile(runs_dir / "executed" / f"{stem}.ipynb", out / f"{stem}.ipynb")
            edition.finish(out / f"{stem}.ipynb", {**prov, "date": state[stage.name].get("date", "")})
    trained = {folder_name(*r) for s in done for r in s.runs}
    shutil.rmtree(out / RUN_FILES, ignore_errors=True)
    for rel in small_files(runs_dir):
        if rel.parts[0] in trained:
            (out / RUN_FILES / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(runs_dir / rel, out / RUN_FILES / rel)
    if (runs_dir / CACHE_FILE).exists():  # the linear classifier the verdicts were weighed against (its accuracy)
        shutil.copyfile(runs_dir / CACHE_FILE, out / RUN_FILES / CACHE_FILE)
    shutil.rmtree(out / WEIGHTS, ignore_errors=True)
    published = [n for n in weight_runs(plan) if n in trained]
    weights = export_weights(runs_dir, published, out / WEIGHTS) if published else {}
    manifest = {
        "edition": plan.name, "preset": plan.preset, "complete": len(done) == len(all_stages),
        "source_commit": source_commit(short=False), "device": device_name(), "cpu": cpu_info(),
        "threads_per_training": plan.threads, "jobs": plan.jobs, "runtime": plan.runtime,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "packages": package_versions(),
        "command": command or f"python -m coded_lib.companion.at_scale run --edition {plan.name}", "date": _now(),
        # a pending stage (between two sittings) has no wall time, date, CPU or resumed epochs
        "stages": [{"name": s.name, "wall_s": rec.get("wall_s"), "planned_s": s.planned_s, "date": rec.get("date"),
                    "cpu": rec.get("cpu"), "resumed": rec.get("resumed", {}), "runs": [folder_name(*r) for r in s.runs],
                    "notebooks": list(s.notebooks)} for s in all_stages for rec in [state[s.name] if s in done else {}]],
        "total_wall_s": round(sum(state[s.name]["wall_s"] for s in done), 1),
        "notebooks": [stem for s in done for stem in s.notebooks], "weights": weights,
    }
    _atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    write_page(out, plan)
    return out / MANIFEST


NOT_RUN_TEXT = "has not been run yet"
# The part's page of each edition: title and what it is (the manifest adds where, when and how long)
PAGES = {
    "gpu": ("At scale", "The GPU edition", "Every experiment again with the paper's CIFAR-10 network (Coded ResNeXt-29 "
            "10×11d, 4.6 M parameters) and its CIFAR-10 recipe, trained on all 60,000 Fashion-MNIST images and "
            "evaluated on the 10,000 test images, on one GPU (preset `fashion_mnist_at_scale`: 7 epochs instead of "
            "the paper's 300, coded and plain ResNeXt with 3 seeds each). The ablation grids stay with the full CPU "
            "edition.", "in about 10 minutes of one GPU, is in {ref}`the-gpu-edition` of the chapter {doc}`How to run </how_to_run>`"),
    "full": ("Full data (CPU)", "The full-data edition", "Every experiment of the paper again with the default "
             "edition's network and recipe (`coded_resnext_mini`, 0.09 M parameters; batch 64, lr 0.1, μ = 6, "
             "p_drop = 0.1, unchanged) on all 60,000 Fashion-MNIST training images, every number measured on the "
             "10,000 test images: 5 epochs per run (the default edition: 4 on 8,000 images), coded and plain "
             "with 5 seeds each, the ablation grids at 1 epoch per point with 3 seeds, and a chapter on how the "
             "verdicts move with the number of training images. Trained on a 2-core CPU (preset "
             "`fashion_mnist_full`, `make edition EDITION=full`); the chapters are the notebooks as they ran there, "
             "committed with the runs' small files and the seed-0 networks' weights.",
             "in about 2.5 hours of a 2-core CPU, is `make edition EDITION=full`"),
}


def page_markdown(manifest: dict | None, plan: Plan = PLAN) -> str:
    """The part's page: "not run yet" without a manifest, else where, when and how long the edition ran."""
    title, what, about, how = PAGES[plan.name]
    folder = f"book/{Path(plan.out).name}"
    head = [f"# {title}", "", about, ""]
    if manifest is None:
        return "\n".join(head + [
            "```{admonition} Not run yet", ":class: warning",
            f"{what} {NOT_RUN_TEXT}: this part shows no numbers. The command that makes it, {how}.", "```", ""])
    rows = ["| stage | wall time (min) | planned (min) | CPU |", "|---|---|---|---|"]
    for s in manifest["stages"]:
        wall = "pending" if s["wall_s"] is None else f"{s['wall_s'] / 60:.1f}"
        resumed = f" (+ {len(s['resumed'])} runs of an earlier sitting)" if s.get("resumed") else ""
        rows.append(f"| {s['name']} | {wall}{resumed} | {s['planned_s'] / 60:.1f} | {s.get('cpu') or ''} |")
    pending = [s["name"] for s in manifest["stages"] if s["wall_s"] is None]
    if pending:
        head += ["```{admonition} In progress", ":class: warning",
                 f"{what} is not complete: {len(manifest['stages']) - len(pending)} of {len(manifest['stages'])} "
                 f"stages are done, and this part shows their chapters only. Pending: {', '.join(pending)}. "
                 f"`make edition EDITION={plan.name}` resumes it where it stopped (what resuming needs is committed in "
                 f"`{folder}/{RESUME}/`).", "```", ""]
    cpu = manifest.get("cpu") or {}
    where = manifest["device"] + (f" ({cpu['model']}; {', '.join(cpu['flags'])})" if cpu else "")
    weights = manifest.get("weights") or {}
    return "\n".join(head + [
        f"Made on {manifest['date']} on {where} with torch {manifest['torch']} from source commit "
        f"`{manifest['source_commit']}` by `{manifest['command']}`, in {manifest['total_wall_s'] / 60:.1f} "
        f"minutes{' so far' if pending else ''} (versions of every package in `{folder}/manifest.json`).",
        "", *rows, "",
        *([f"The final weights of the seed-0 coded and plain networks: "
           + ", ".join(f"`{folder}/{k}` (SHA-256 `{v[:16]}…`)" for k, v in weights.items())
           + f"; `papermill notebooks/<chapter>.ipynb out.ipynb -p edition {plan.name}` runs a chapter on them."]
          if weights else []), ""])


def write_page(out=OUT, plan: Plan = PLAN) -> Path:
    page = Path(out) / "index.md"
    page.write_text(page_markdown(_read_json(page.parent / MANIFEST) or None, plan))
    return page


# --- a second sitting: what resuming needs, committed ----------------------------------------------
RESUME = "resume"  # <out>/resume/: the runs folder's state, small files, executed chapters and checkpoints
RESUME_LIMIT = 30_000_000


def snapshot(out, runs_dir, plan: Plan) -> list[Path]:
    """Copy into ``<out>/resume/`` what the next sitting needs (``run`` restores it): the stages' state, the runs'
    small files and last checkpoints and the chapters executed so far, within RESUME_LIMIT bytes; returns the files."""
    to, runs_dir = Path(out) / RESUME, Path(runs_dir)
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)
    shutil.copyfile(runs_dir / STATE, to / STATE)
    for rel in small_files(runs_dir):
        (to / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runs_dir / rel, to / rel)
    if (runs_dir / "executed").exists():
        shutil.copytree(runs_dir / "executed", to / "executed")
    for ckpt_path in sorted(runs_dir.glob(f"*/{CHECKPOINT}")):
        ckpt = load_checkpoint(ckpt_path, CHECKPOINT_KEYS)
        if ckpt["epoch"] >= ckpt["config"]["epochs"]:
            ckpt = {**ckpt, "optimizer": {}}  # finished: never resumed, only loaded
        target = to / ckpt_path.parent.name / CHECKPOINT
        target.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint({k: v for k, v in ckpt.items() if k in CHECKPOINT_KEYS}, target)
    files = sorted(p for p in to.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    if total > RESUME_LIMIT:
        raise RuntimeError(f"{to} holds {total / 1e6:.1f} MB, more than the {RESUME_LIMIT / 1e6:.0f} MB a commit may")
    return files


def restore(out, runs_dir) -> bool:
    """Put a committed ``<out>/resume/`` back into an empty ``runs_dir``; True if there was one."""
    src, runs_dir = Path(out) / RESUME, Path(runs_dir)
    if not (src / STATE).exists() or (runs_dir / STATE).exists():
        return False
    shutil.copytree(src, runs_dir, dirs_exist_ok=True)
    return True


# --- prepare: what the offline GPU host needs ------------------------------------------------------

def _pip(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def prepare(to, data_dir=None, python_version: str | None = None, platform_tag: str | None = None) -> list[Path]:
    """Gather into ``to`` the wheels the GPU host lacks (``to/wheels``: WHEELS, WHEELS_NO_DEPS) and Fashion-MNIST's
    four .gz files (``to/fashion-mnist``); returns the files there."""
    to = Path(to)
    wheels, fashion = to / "wheels", to / "fashion-mnist"
    wheels.mkdir(parents=True, exist_ok=True)
    fashion.mkdir(parents=True, exist_ok=True)
    target = ["--only-binary=:all:", *(["--python-version", python_version] if python_version else []),
              *(["--platform", platform_tag] if platform_tag else [])]
    _pip(["download", "--dest", str(wheels), *target, *WHEELS])
    _pip(["download", "--dest", str(wheels), "--no-deps", *target, *WHEELS_NO_DEPS])
    source = find_fashion_mnist(data_dir)
    for stem in (s for pair in FASHION_FILES.values() for s in pair):
        src = _idx_file(source, stem)
        packed = src.read_bytes() if src.suffix == ".gz" else gzip.compress(src.read_bytes())
        (fashion / f"{stem}.gz").write_bytes(packed)
    return sorted(p for p in to.rglob("*") if p.is_file())


# --- command line ----------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m coded_lib.companion.at_scale", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the stages not done yet, then write the edition")
    ls = sub.add_parser("list", help="the stages and their planned time")
    sn = sub.add_parser("snapshot", help="copy what resuming needs into <out>/resume/ (to commit between sittings)")
    for p, default in ((r, "gpu"), (ls, "gpu"), (sn, "full")):
        p.add_argument("--edition", choices=sorted(EDITIONS), default=default,
                       help="gpu: the paper's network on one GPU (book/at_scale); full: Fashion-MNIST on the CPU (book/full)")
    r.add_argument("--out", default=None, help="the edition's folder (default: the edition's, e.g. book/at_scale)")
    r.add_argument("--runs", default=None, help="run folders, checkpoints included (default: the edition's, e.g. runs/at_scale)")
    r.add_argument("--data", default=None, help="folder holding fashion-mnist/ (from prepare); sets CODED_DATA")
    r.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages (see `list`)")
    r.add_argument("--next", action="store_true", help="run only the first stage not done yet")
    r.add_argument("--jobs", type=int, default=None, help="training processes at once (default: the edition's)")
    r.add_argument("--preset", default=None, help="a preset with a _baseline twin (default: the edition's)")
    r.add_argument("--beyond", action="store_true", help="also the part 'Beyond the paper' (one more stage, ~4 min)")
    p = sub.add_parser("prepare", help="gather wheels and Fashion-MNIST for an offline GPU host")
    p.add_argument("--to", default="dist/at_scale")
    p.add_argument("--data", default=None, help="where Fashion-MNIST is read from (default: as coded_lib.train)")
    p.add_argument("--python-version", default=None, help="the GPU host's Python, e.g. 3.12 (default: this one)")
    p.add_argument("--platform", default=None, help="the GPU host's wheel platform, e.g. manylinux2014_x86_64")
    sub.add_parser("page", help="rewrite <out>/index.md from the manifest (or 'not run yet')")
    args = ap.parse_args(argv)
    plan = EDITIONS.get(getattr(args, "edition", None))
    if args.cmd == "list":
        for s in stages(plan):
            print(f"{s.name:28s} planned {s.planned_s / 60:5.1f} min  {f'{len(s.runs)} runs' if s.runs else ' '.join(s.notebooks)}")
        print(f"{'total':28s} planned {sum(s.planned_s for s in stages(plan)) / 60:5.1f} min")
    elif args.cmd == "page":
        for plan in EDITIONS.values():
            print(write_page(REPO / plan.out, plan))
    elif args.cmd == "snapshot":
        files = snapshot(REPO / plan.out, REPO / plan.runs, plan)
        print(finish(REPO / plan.out, REPO / plan.runs, plan, _read_json(REPO / plan.runs / STATE),
                     f"python -m coded_lib.companion.at_scale run --edition {plan.name} (in progress)"))
        print(f"{len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {REPO / plan.out / RESUME}")
    elif args.cmd == "prepare":
        for path in prepare(args.to, args.data, args.python_version, args.platform):
            print(path)
    else:
        if args.jobs is not None and args.jobs < 1:
            ap.error(f"--jobs {args.jobs}: need at least 1")
        plan = replace(plan, jobs=args.jobs or plan.jobs, preset=args.preset or plan.preset)
        plan = with_beyond(plan) if args.beyond else plan
        command = "python -m coded_lib.companion.at_scale " + " ".join(argv if argv is not None else sys.argv[1:])
        try:
            run(args.out or REPO / plan.out, args.runs or REPO / plan.runs, plan, args.only, args.next, args.data,
                command)
        except FolderBusy as e:
            ap.exit(3, f"{ap.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
