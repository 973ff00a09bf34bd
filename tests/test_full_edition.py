"""The committed full-data edition (book/full, issue 20), read from its own files: every run on all
60,000 training images (the scale chapter's on its stated subsets), epochs as configured, seed counts as
the claims need, and the manifest's stage times consistent with the runs' own epoch times. Skipped until
the edition is committed (its manifest.json exists)."""
import csv
import json
from pathlib import Path

import pytest

from coded_lib.companion import at_scale
from coded_lib.companion.at_scale import sha256

REPO = Path(__file__).resolve().parents[1]
FULL = REPO / at_scale.FULL.out
pytestmark = pytest.mark.skipif(not (FULL / "manifest.json").exists(), reason="the full edition is not committed yet")


def manifest():
    return json.loads((FULL / "manifest.json").read_text())


def runs():
    return {p.parent.name: json.loads(p.read_text()) for p in sorted((FULL / "run_files").glob("*/config.json"))}


def metrics(name):
    with open(FULL / "run_files" / name / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def done_stages():
    """The stages the committed manifest has a wall time for (all of them once the edition is complete)."""
    return [s for s in manifest()["stages"] if s["wall_s"] is not None]


def test_every_run_on_all_training_images_and_the_test_set_with_its_epochs():
    stages = {s["name"]: s for s in done_stages()}
    scale_runs = {r for name, s in stages.items() if name.startswith("train-scale") for r in s["runs"]}
    configs = runs()
    planned = {r for s in stages.values() for r in s["runs"]}
    assert planned <= set(configs)
    for name, cfg in configs.items():
        assert cfg["dataset"] == "fashion_mnist" and cfg["val_subset"] is None, name  # the 10,000 test images
        if name in scale_runs:
            assert cfg["train_subset"] in at_scale.SCALE_SIZES, name
        else:
            assert cfg["train_subset"] is None, name  # all 60,000
        assert [int(r["epoch"]) for r in metrics(name)] == list(range(1, cfg["epochs"] + 1)), name


def test_seed_counts_of_the_verdicts():
    rows = [r for p in (FULL / "run_files").glob("*/results.csv") for r in csv.DictReader(open(p))]
    seeds = {r["id"]: int(r["seeds"]) for r in rows if r["verdict"] and r["seeds"]}
    chapters = set(manifest()["notebooks"])
    if "accuracy" in chapters:
        assert seeds["T-acc"] >= 5
    if "ablations" in chapters:
        for id in ("F-mu", "F-pdrop", "T-exp", "T-concat", "T-detach", "T-ratios"):
            assert seeds[id] >= 3, id
    assert manifest().get("complete", True) == (len(done_stages()) == len(manifest()["stages"]))


def test_manifest_stage_times_match_the_runs_epoch_times():
    m = manifest()
    for stage in done_stages():
        if not stage["runs"]:
            continue
        # epochs trained before the attempt that finished the stage (an earlier sitting) are not in its wall time
        resumed = stage.get("resumed", {})
        epoch_s = sum(float(r["epoch_time_s"]) for name in stage["runs"] for r in metrics(name)[resumed.get(name, 0):])
        # the stage ran its runs m["jobs"] at a time: its wall time is at least their time shared out, and
        # at most their time one after the other plus a minute per run (start, compilation)
        assert epoch_s / m["jobs"] <= stage["wall_s"] * 1.02, stage["name"]
        assert stage["wall_s"] <= epoch_s + 60 * len(stage["runs"]), stage["name"]
    assert m["total_wall_s"] == pytest.approx(sum(s["wall_s"] for s in done_stages()), abs=1)
    assert m["cpu"]["model"] and m["cpu"]["cores"] >= 1


def test_weights_match_their_checksums_and_stay_small():
    weights = manifest()["weights"]
    assert len(weights) == 2
    assert sum((FULL / rel).stat().st_size for rel in weights) < 10_000_000
    for rel, digest in weights.items():
        assert sha256(FULL / rel) == digest
