"""The "At scale" GPU edition (issue 14), on a CPU stand-in: the smoke preset, one seed, one notebook."""
import gzip
import json
import re
import subprocess
from pathlib import Path

import papermill
import pytest
import yaml

from coded_lib.companion import at_scale, reproduce
from coded_lib.companion import notebook as nb
from coded_lib.train import data
from coded_lib.train.presets import get_config

REPO = Path(__file__).resolve().parents[1]
STAND_IN = at_scale.Plan(preset="smoke", seeds=(0,), parameters={"early": {"n_val": 64}}, analysis=(("early",),),
                         jobs=2)


def test_edition_end_to_end_writes_manifest_and_only_small_files(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, runs = tmp_path / "out", tmp_path / "runs"
    state = at_scale.run(out, runs, STAND_IN, command="python -m coded_lib.companion.at_scale run (test)")
    assert list(state) == ["train-coded", "train-baseline", "analysis-1"]
    assert all(s["done"] and s["wall_s"] > 0 for s in state.values())

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "python -m coded_lib.companion.at_scale run (test)"
    assert re.fullmatch(r"[0-9a-f]{40}( \+ uncommitted changes)?", manifest["source_commit"])
    assert manifest["device"].startswith(("CPU: ", "GPU: "))
    import torch

    assert manifest["torch"] == torch.__version__
    for name in ("torch", "torchvision", "timm", "pandas", "scikit-learn", "matplotlib", "papermill", "ipykernel"):
        assert manifest["packages"][name], name
    assert [s["name"] for s in manifest["stages"]] == list(state)
    assert [s["wall_s"] for s in manifest["stages"]] == [state[n]["wall_s"] for n in state]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d", manifest["date"])

    # the notebooks found the runs the training stages made (seed 0 of the coded preset in runs/smoke)
    assert (runs / "smoke" / "checkpoint.pt").exists()
    assert (out / "run_files" / "smoke" / "metrics.csv").read_bytes() == (runs / "smoke" / "metrics.csv").read_bytes()
    assert (out / "run_files" / "smoke" / "tables" / "early_decoders.csv").exists()  # written by the notebook
    assert (out / "run_files" / "smoke" / "results.csv").exists()
    assert (out / "run_files" / "linear_reference.json").exists()  # what the early chapter's verdicts were weighed by
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    allowed = re.compile(r"(index\.md|manifest\.json|early\.ipynb|weights/[^/]+\.safetensors|run_files/linear_reference\.json|"
                         r"run_files/[^/]+/(config\.json|metrics\.csv|results\.csv|tables/[^/]+\.csv))")
    assert [f for f in files if not allowed.fullmatch(f)] == []
    assert all((out / f).stat().st_size < 1_000_000 for f in files)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *(f"book/at_scale/{f}" for f in files)],
                             cwd=REPO, capture_output=True, text=True).stdout
    assert ignored == ""  # under book/at_scale/, git would commit every one of them
    executed = json.loads((out / "early.ipynb").read_text())
    assert any(o.get("output_type") == "display_data" for c in executed["cells"] for o in c.get("outputs", []))
    page = (out / "index.md").read_text()
    assert at_scale.NOT_RUN_TEXT not in page and manifest["device"] in page

    # a second call skips every finished stage; a stage not done is run again, and only that one
    def fail(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(at_scale, "train_stage", fail)
    monkeypatch.setattr(at_scale, "notebook_stage", fail)
    assert at_scale.run(out, runs, STAND_IN) == state
    saved = json.loads((runs / at_scale.STATE).read_text())
    saved["analysis-1"]["done"] = False
    (runs / at_scale.STATE).write_text(json.dumps(saved))
    ran = []
    monkeypatch.setattr(at_scale, "notebook_stage", lambda stage, plan, executed: ran.append(stage.name) or [])
    at_scale.run(out, runs, STAND_IN)
    assert ran == ["analysis-1"]


def test_unknown_stage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="allowed: .*train-coded"):
        at_scale.run(tmp_path / "out", tmp_path / "runs", STAND_IN, only=["train-everything"])


def test_gpu_plan_budget_and_notebook_parameters():
    stages = at_scale.stages(at_scale.PLAN)
    runs = [r for s in stages for r in s.runs]
    # the preset's comment: 6 runs x 5 epochs = 30 run-epochs, the ablation grids in the CPU edition
    assert get_config("fashion_mnist_at_scale").epochs == 5
    assert sum(get_config(p, **o).epochs for p, o in runs) == 6 * 5
    assert len({at_scale.folder_name(p, o) for p, o in runs}) == len(runs) == 6
    assert all(s.planned_s <= 8 * 60 for s in stages)
    assert sum(s.planned_s for s in stages) <= 10 * 60  # of the 15 minutes a lent GPU gives
    # every chapter but the ablations (a CPU-edition part now), the part "Beyond the paper" only as the
    # optional last stage (run --beyond)
    assert sorted(s for s_ in stages for s in s_.notebooks) == sorted(
        set(reproduce.NOTEBOOKS) - set(at_scale.BEYOND) - {"ablations"})
    assert at_scale.stages(at_scale.with_beyond(at_scale.PLAN))[-1].notebooks == at_scale.BEYOND
    for plan in at_scale.EDITIONS.values():
        for stem, params in plan.parameters.items():
            declared = papermill.inspect_notebook(str(REPO / "notebooks" / f"{stem}.ipynb"))
            assert set(params) <= set(declared), (plan.name, stem)


def test_prepare_gathers_wheels_and_the_four_gz_files(tmp_path, monkeypatch):
    source = tmp_path / "fashion"
    source.mkdir()
    stems = [s for pair in data.FASHION_FILES.values() for s in pair]
    for i, stem in enumerate(stems):  # two packed, two unpacked: prepare packs the latter
        payload = bytes([0, 0, 8, 1, 0, 0, 0, 1, i])
        if i % 2:
            (source / stem).write_bytes(payload)
        else:
            with gzip.open(source / f"{stem}.gz", "wb") as f:
                f.write(payload)
    calls = []

    def fake_pip(args):
        calls.append(args)
        dest = Path(args[args.index("--dest") + 1])
        for name in args[args.index("--dest") + 2:]:
            if name[0].isalpha():  # a requirement, not an option or the version after --python-version
                (dest / f"{re.match(r'[a-z_]+', name).group(0)}-1.0-py3-none-any.whl").write_text("")

    monkeypatch.setattr(at_scale, "_pip", fake_pip)
    files = at_scale.prepare(tmp_path / "to", data_dir=str(source), python_version="3.12")
    names = [p.relative_to(tmp_path / "to").as_posix() for p in files]
    assert names == sorted([f"fashion-mnist/{s}.gz" for s in stems]
                           + [f"wheels/{w}-1.0-py3-none-any.whl" for w in
                              ("papermill", "ipykernel", "setuptools", "wheel", "seaborn")])
    for i, stem in enumerate(stems):
        with gzip.open(tmp_path / "to" / "fashion-mnist" / f"{stem}.gz") as f:
            assert f.read()[-1] == i
    assert all(c[0] == "download" and "--only-binary=:all:" in c and c[c.index("--python-version") + 1] == "3.12"
               for c in calls)
    assert {"papermill", "ipykernel"} <= set(calls[0]) and "--no-deps" not in calls[0]
    assert "--no-deps" in calls[1] and "seaborn" in calls[1]


def test_book_part_says_not_run_without_a_manifest(tmp_path):
    book = REPO / "book"
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    captions = [p["caption"] for p in toc["parts"]]
    assert captions.index("At scale") == captions.index("Beyond the paper") + 1 == captions.index("Experiments") + 2
    assert captions.index("Full data (CPU)") == captions.index("At scale") + 1
    for plan in at_scale.EDITIONS.values():
        title = at_scale.PAGES[plan.name][0]
        files = [c["file"] for c in toc["parts"][captions.index(title)]["chapters"]]
        folder = Path(plan.out).name
        assert files[0] == f"{folder}/index"
        # the part lists the plan's chapters (the optional stage "Beyond the paper", run --beyond, is not in it)
        assert sorted(files[1:]) == sorted(f"{folder}/{s}" for group in plan.analysis for s in group)
    committed = (book / "at_scale" / "index.md").read_text()
    if not (book / "at_scale" / "manifest.json").exists():
        assert "has not been run yet" in committed
        assert not re.search(r"\d+\.\d+ ?%", committed)  # no numbers
    else:
        assert "has not been run yet" not in committed
    assert "has not been run yet" in at_scale.write_page(tmp_path).read_text()


def test_dashboard_edition_columns(tmp_path):
    """An edition gets a column of the claims table (with its verdict counts) only once it has been run."""
    from coded_lib.companion import paper, report

    def claims_table(text):
        return text.split("## The paper's claims")[1].split("## ")[0]

    without = report.comparison_markdown([], editions={"at scale (GPU)": None, "full data (CPU)": None})
    assert "  - at scale (GPU)" not in claims_table(without) and "not run yet" not in claims_table(without)
    assert "get a column here once they have been run" in without

    edition = tmp_path / "full"
    assert report.edition_results(edition) is None
    report.record(edition / "run_files" / "r", "T-acc", paper.GAIN, "+0.50 ± 0.10 (SE, 5 seeds each)",
                  "Fashion-MNIST", "coded_resnext_mini", verdict=paper.HOLDS, seeds=5)
    assert report.edition_results(edition) is None  # results without a manifest: not an edition yet
    (edition / "manifest.json").write_text("{}")
    rows = report.edition_results(edition)
    assert [r["ours"] for r in rows] == ["+0.50 ± 0.10 (SE, 5 seeds each)"]
    page = report.comparison_markdown([], editions={"full data (CPU)": rows, "at scale (GPU)": None})
    table = claims_table(page)
    assert "  - full data (CPU)\n" in table and "at scale (GPU)" not in table
    assert "  - +0.50 ± 0.10 (SE, 5 seeds each) {bdg-success}`holds`\n" in table
    glance = page.split("## At a glance")[1].split("## ")[0]
    assert ("In the full data (CPU) edition: 1 holds, 0 does not hold, 0 inconclusive, 0 inconclusive at this scale, "
            "15 not run here.") in glance
    assert "  - default edition\n  - full data (CPU)\n" in glance
    assert report.editions_results(tmp_path) == {"full data (CPU)": rows, "at scale (GPU)": None}


def test_the_plan_trains_the_ablation_variants_the_notebook_opens():
    """The full edition trains ahead exactly the run folders the ablations chapter opens for its fixed
    variants (once the GPU edition trained T-detach without mu = 0, folders the chapter never read)."""
    from coded_lib.companion import notebook as nb

    plan = at_scale.FULL
    p = plan.parameters["ablations"]
    planned = {at_scale.folder_name(pr, o) for s in at_scale.stages(plan) for pr, o in s.runs}
    opened = {nb.run_folder(plan.preset, **p["ablation_overrides"], **v, seed=seed).name
              for v in nb.ABLATION_VARIANTS.values() for seed in p["seeds"]}
    assert opened <= planned
    assert {"fashion_mnist_full-coding=detach_epochs=1_mu=0.0",
            "fashion_mnist_full-coding=detach_epochs=1_mu=0.0_seed=2_skip=False"} <= planned


def test_the_full_plan_on_smoke_values_resumes_after_a_kill_and_publishes(tmp_path):
    """The full edition's Plan (at_scale.full_plan) with only the preset, epochs and seeds swapped for smoke
    values: every stage in order, a kill of the runner (and its trainings) mid-way, the same call resuming
    without retraining what was done, the manifest, the weights' checksums and the dashboard's column."""
    import os
    import signal
    import sys
    import time

    from safetensors.torch import load_file

    from coded_lib.companion import report
    from coded_lib.train import load_run

    plan = at_scale.full_plan(preset="smoke", seeds=(0, 1), grid_epochs=1, grid_seeds=(0,), scale_sizes=(128,),
                              scale_seeds=(0, 1))
    assert [s.name for s in at_scale.stages(plan)] == list(plan.order)  # every group small enough to be one stage
    out, runs = tmp_path / "out", tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CODED_COMPILE_BACKEND": "aot_eager"}
    args = "preset='smoke', seeds=(0, 1), grid_epochs=1, grid_seeds=(0,), scale_sizes=(128,), scale_seeds=(0, 1)"
    code = f"from coded_lib.companion import at_scale; at_scale.run({str(out)!r}, {str(runs)!r}, at_scale.full_plan({args}))"
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path = runs / at_scale.STATE
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        if state.get("train-baseline", {}).get("done"):
            break
        time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL)  # the runner and every training it started
    p.wait()
    state = json.loads(state_path.read_text())
    assert state["train-coded"]["done"] and state["train-baseline"]["done"] and "analysis-1" not in state
    done_before = {f: (runs / f / "checkpoint.pt").stat().st_mtime_ns for f in ("smoke", "smoke-seed=1")}

    os.environ.update({"OMP_NUM_THREADS": "1", "CODED_COMPILE_BACKEND": "aot_eager"})
    try:
        state = at_scale.run(out, runs, plan, command="make edition EDITION=full (smoke values)")
    finally:
        os.environ.pop("CODED_COMPILE_BACKEND")
    assert list(state) == list(plan.order) and all(s["done"] for s in state.values())
    assert {f: (runs / f / "checkpoint.pt").stat().st_mtime_ns for f in done_before} == done_before  # not retrained

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["edition"] == "full" and manifest["cpu"]["cores"] >= 1 and manifest["cpu"]["model"]
    assert [s["name"] for s in manifest["stages"]] == list(plan.order)
    assert [s["wall_s"] for s in manifest["stages"]] == [state[n]["wall_s"] for n in plan.order]
    for rel, digest in manifest["weights"].items():
        assert at_scale.sha256(out / rel) == digest
        model, _ = load_run(runs / Path(rel).stem)
        weights = load_file(str(out / rel))
        assert weights.keys() == model.state_dict().keys()
        assert all(weights[k].equal(v) for k, v in model.state_dict().items())
    assert sorted(Path(r).stem for r in manifest["weights"]) == ["smoke", "smoke-model=resnext_mini_mu=0.0_p_drop=0.0"]
    assert sorted(p.name for p in out.glob("*.ipynb")) == sorted(f"{s}.ipynb" for g in plan.analysis for s in g)
    assert (out / "run_files" / "smoke" / "tables" / "scale.csv").exists()

    rows = report.edition_results(out)
    page = report.comparison_markdown([], editions={"full data (CPU)": rows})
    assert "  - full data (CPU)\n" in page and "In the full data (CPU) edition: " in page
    judged = {r["id"] for r in rows if r["verdict"]}
    assert {"T-acc", "F-mu", "F-pdrop", "T-exp", "T-concat", "T-detach", "T-ratios", "F-removal"} <= judged


def test_snapshot_for_a_second_sitting_and_restore(tmp_path, monkeypatch):
    """What resuming needs, committed between two sittings: state, small files and last checkpoints (a
    finished run's without its optimizer state), restored into an empty runs folder by the next run."""
    import torch

    from coded_lib.train import is_finished, load_run, train
    from coded_lib.train.checkpoint import load_checkpoint

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs, out = tmp_path / "runs", tmp_path / "out"
    train("smoke", runs / "smoke", progress=False, epochs=1)
    (runs / "smoke" / "checkpoint.prev.pt").write_bytes(b"old")  # never committed
    (runs / at_scale.STATE).write_text(json.dumps({"train-coded": {"done": True, "wall_s": 1.0}}))
    files = at_scale.snapshot(out, runs, STAND_IN)
    names = sorted(p.relative_to(out / at_scale.RESUME).as_posix() for p in files)
    assert names == [at_scale.STATE, "smoke/checkpoint.pt", "smoke/config.json", "smoke/metrics.csv"]
    slim = load_checkpoint(out / at_scale.RESUME / "smoke" / "checkpoint.pt")
    assert slim["optimizer"] == {} and slim["epoch"] == 1  # finished: weights only
    # what is done is published meanwhile: a manifest marked incomplete, the page says what is pending
    manifest = json.loads(at_scale.finish(out, runs, STAND_IN, json.loads((runs / at_scale.STATE).read_text())).read_text())
    assert manifest["complete"] is False
    assert [s["wall_s"] for s in manifest["stages"]] == [1.0, None, None]
    assert list(manifest["weights"]) == ["weights/smoke.safetensors"]  # the plain run is not trained yet
    page = (out / "index.md").read_text()
    assert "1 of 3 stages are done" in page and "Pending: train-baseline, analysis-1" in page
    assert "| train-baseline | pending |" in page
    fresh = tmp_path / "elsewhere"
    assert at_scale.restore(out, fresh) and not at_scale.restore(out, fresh)  # once, into an empty folder
    assert is_finished(fresh / "smoke")
    a, _ = load_run(runs / "smoke")
    b, _ = load_run(fresh / "smoke")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_stage_names_the_epochs_trained_before_it_ran(tmp_path, monkeypatch):
    """A training stage finished in a later sitting than some of its runs: its wall time covers only that
    sitting, and the state (then the manifest) names the epochs trained before it, so that the stage's time
    can be checked against the runs' own epoch times (tests/test_full_edition.py)."""
    from coded_lib.train import train

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    import dataclasses

    plan = at_scale.full_plan(preset="smoke", seeds=(0, 1), grid_seeds=(0,), scale_sizes=(128,), scale_seeds=(0,))
    plan = dataclasses.replace(plan, runtime={})  # eager: what is checked here is the bookkeeping
    runs = tmp_path / "runs"
    train("smoke", runs / "smoke", progress=False)  # seed 0's run, trained "in an earlier sitting"
    epochs = len((runs / "smoke" / "metrics.csv").read_text().splitlines()) - 1
    state = at_scale.run(tmp_path / "out", runs, plan, only=["train-coded"])
    assert epochs >= 1 and state["train-coded"]["resumed"] == {"smoke": epochs}
    assert (runs / "smoke-seed=1" / "metrics.csv").exists()  # the other run was trained by the stage


def test_the_default_plan_trains_what_the_chapters_open_with_their_own_parameters():
    """make reproduce trains the paper chapters' runs first (at_scale.default_plan): the seeds of the accuracy
    chapter and the grids of the ablations chapter, as their parameters cells say (read here by executing
    the cells themselves), and every ablation run folder the chapter's grid would open."""
    import nbformat

    def cell_values(stem):
        cell = next(c for c in nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        values = {}
        exec(cell.source, {}, values)
        return values

    plan = at_scale.default_plan()
    trained = {at_scale.folder_name(*r) for s in at_scale.stages(plan) for r in s.runs}
    acc, abl = cell_values("accuracy"), cell_values("ablations")
    assert plan.seeds == tuple(acc["seeds"]) and all(not s.notebooks for s in at_scale.stages(plan))
    base = abl["ablation_overrides"]
    for s in abl["seeds"]:
        for mu in abl["mu_values"]:
            assert at_scale.folder_name("fashion_mnist", {**base, "seed": s, "mu": mu}) in trained
        for e in abl["exponents"]:
            assert at_scale.folder_name("fashion_mnist", {**base, "seed": s, "loss_exponent": e}) in trained
        for change in nb.ABLATION_VARIANTS.values():
            assert at_scale.folder_name("fashion_mnist", {**base, "seed": s, **change}) in trained
    for s in acc["seeds"]:
        assert at_scale.folder_name("fashion_mnist", {"seed": s}) in trained
        base_preset, base_overrides = nb.baseline("fashion_mnist")
        assert at_scale.folder_name(base_preset, {**base_overrides, "seed": s}) in trained
    assert plan.jobs == 2 and plan.threads == 1 and plan.runtime == {"channels_last": True}
