"""The committed edition (issue 10): one repository URL, badges and install cells generated from it,
executed notebooks that match their sources, provenance on every chapter, a dashboard in step
with its committed results."""
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
import yaml

from coded_lib.companion import edition, report, reproduce

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"


def _notebook(path, title="# T\n\n[![Open In Colab](x)](y)\n\nText", code="x = 1"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(title),
                nbformat.v4.new_code_cell(edition.install_source(), metadata={"tags": ["install", "remove-cell"]}),
                nbformat.v4.new_code_cell('preset = "smoke"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)
    return nb


# ---------------------------------------------------------------- one repository URL

def test_book_config_names_the_one_repository():
    cfg = yaml.safe_load((BOOK / "_config.yml").read_text())
    assert cfg["repository"]["url"].rstrip("/") == edition.REPOSITORY
    assert cfg["repository"]["branch"] == edition.BRANCH


def test_every_source_notebook_badge_and_install_cell_use_the_repository():
    assert edition.sync_sources() == []
    org_repo = edition.REPOSITORY.split("github.com/")[1]
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        text = path.read_text()
        assert f"colab.research.google.com/github/{org_repo}/blob/{edition.BRANCH}/notebooks/{path.name}" in text
        assert f"git+{edition.REPOSITORY}" in text


def test_sync_reports_and_repairs_a_wrong_badge_and_install_cell(tmp_path):
    nb = _notebook(tmp_path / "removal.ipynb")
    nb.cells[1].source = nb.cells[1].source.replace(edition.REPOSITORY, "https://github.com/someone/else")
    nbformat.write(nb, tmp_path / "removal.ipynb")
    problems = edition.sync_sources(tmp_path)
    assert len(problems) == 2 and "badge" in problems[0] and "install" in problems[1]
    edition.sync_sources(tmp_path, write=True)
    assert edition.sync_sources(tmp_path) == []
    fixed = nbformat.read(tmp_path / "removal.ipynb", as_version=4)
    assert f"({edition.colab_url('removal')})" in fixed.cells[0].source
    assert fixed.cells[0].source.endswith("Text")


def test_badge_image_is_a_local_svg():
    root = ET.parse(BOOK / "_static" / "colab-badge.svg").getroot()
    assert root.tag.endswith("svg") and "Colab" in "".join(root.itertext())
    assert edition.BOOK_BADGE == "../_static/colab-badge.svg"  # relative to book/notebooks/


# ---------------------------------------------------------------- executed copies

def test_finish_adds_provenance_and_hides_the_injected_parameters(tmp_path):
    import papermill

    _notebook(tmp_path / "early.ipynb")
    papermill.execute_notebook(str(tmp_path / "early.ipynb"), str(tmp_path / "out.ipynb"), parameters={"preset": "x"},
                               kernel_name="python3", progress_bar=False)
    prov = {"commit": "abc1234", "date": "2024-05-01 10:00", "device": "CPU: 2 cores", "torch": "2.9.0",
            "preset": "x", "seconds": 30.0}
    edition.finish(tmp_path / "out.ipynb", prov)
    edition.finish(tmp_path / "out.ipynb", prov)  # twice: still one provenance cell
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "Open In Colab" not in nb.cells[0].source
    provenance = [c for c in nb.cells if "provenance" in c.metadata.get("tags", [])]
    assert len(provenance) == 1 and nb.cells[1] is provenance[0]
    text = provenance[0].source
    for piece in ("abc1234", "2024-05-01 10:00", "CPU: 2 cores", "torch 2.9.0", "`x`", "0.5 min", "../_static/colab-badge.svg"):
        assert piece in text, piece
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata["tags"]
    assert nb.metadata["coded_lib"] == prov
    # the executed copy's code is the source's: not stale
    (tmp_path / "edition").mkdir()
    (tmp_path / "out.ipynb").rename(tmp_path / "edition" / "early.ipynb")
    assert edition.stale(tmp_path / "edition", tmp_path) == []


def test_stale_names_missing_and_changed_chapters(tmp_path):
    source, executed = tmp_path / "src", tmp_path / "ed"
    source.mkdir(), executed.mkdir()
    _notebook(source / "train.ipynb")
    _notebook(source / "codes.ipynb", code="x = 2")
    _notebook(executed / "codes.ipynb", code="x = 1")
    problems = edition.stale(executed, source)
    assert len(problems) == 2
    assert problems[0].startswith("codes: code cell 3 differs")
    assert problems[1].startswith("train: not executed")


def test_the_committed_edition_matches_the_source_notebooks():
    """Fails when a notebook changed after `make reproduce` wrote book/notebooks/ (stale outputs),
    or when the edition is missing: run `make reproduce` and commit book/notebooks, book/results.csv
    and book/comparison.md."""
    assert edition.stale() == []
    for stem in reproduce.NOTEBOOKS:
        prov = edition.read_provenance(stem)
        assert {"commit", "date", "device", "torch", "preset"} <= set(prov), stem


def test_the_committed_dashboard_is_written_from_the_committed_results(tmp_path):
    page = BOOK / "comparison.md"
    assert page.exists() and (BOOK / "results.csv").exists(), "run `make reproduce` and commit its outputs"
    # the page reads the chapters' provenance from book/notebooks, beside it
    (tmp_path / "notebooks").symlink_to(BOOK / "notebooks")
    for name in report.EDITIONS.values():  # and the other editions' columns from their folders
        (tmp_path / name).symlink_to(BOOK / name)
    again = report.write_from_results(BOOK / "results.csv", tmp_path / "comparison.md")
    assert again.read_text() == page.read_text()


def test_a_chapter_runs_on_a_committed_edition_after_checking_its_weights(tmp_path, monkeypatch):
    """``-p edition full``: the chapter opens the committed edition's runs (run files + checksummed
    safetensors weights), trains nothing, and says so clearly where the edition lacks a run or its weights."""
    import json

    import pytest
    import torch

    from coded_lib.companion import at_scale
    from coded_lib.companion import notebook as nb
    from coded_lib.train import load_run, train

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("CODED_SMOKE", raising=False)
    trained = tmp_path / "trained"
    for seed in (0, 1):  # what an edition's runner leaves: two finished runs of the smoke preset
        train("smoke", trained / ("smoke" if seed == 0 else "smoke-seed=1"), progress=False, seed=seed, epochs=1)
    book = tmp_path / "book"
    folder = book / edition.EDITIONS["full"]
    for run in ("smoke", "smoke-seed=1"):
        for f in ("config.json", "metrics.csv"):
            (folder / edition.RUN_FILES / run).mkdir(parents=True, exist_ok=True)
            (folder / edition.RUN_FILES / run / f).write_bytes((trained / run / f).read_bytes())
    weights = at_scale.export_weights(trained, ["smoke"], folder / at_scale.WEIGHTS)  # seed 0's only
    (folder / edition.MANIFEST).write_text(json.dumps({"preset": "smoke", "weights": weights}))
    reference = {"smoke: train_subset 64": 0.5}  # the edition's linear classifier, fitted when it ran
    (folder / edition.RUN_FILES / "linear_reference.json").write_text(json.dumps(reference))
    monkeypatch.setattr(edition, "BOOK", book)

    namespace = {"preset": "fashion_mnist", "run_dir": None, "edition": "full"}
    monkeypatch.setenv("CODED_RUNS", str(tmp_path / "elsewhere"))
    nb.setup(namespace)
    try:
        assert namespace["preset"] == "smoke" and nb.EDITION == "full"
        run = nb.open_run(namespace["preset"])
        expected, _ = load_run(trained / "smoke")
        assert all(torch.equal(a, b) for a, b in zip(run.model.state_dict().values(), expected.state_dict().values()))
        assert json.loads((run.dir.parent / "linear_reference.json").read_text()) == reference  # not fitted again
        other = nb.open_run("smoke", seed=1)  # its metrics are there, its weights are not published
        assert (other.dir / "metrics.csv").exists()
        with pytest.raises(ValueError, match="publishes the weights of seed 0"):
            other.model.coded_blocks
        with pytest.raises(ValueError, match="holds no run smoke-seed=2"):
            nb.open_run("smoke", seed=2)  # not trained: an edition never trains
        assert not (tmp_path / "elsewhere").exists()
    finally:
        nb.EDITION = None

    # a changed weights file is refused before anything runs
    path = folder / next(iter(weights))
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ValueError, match="SHA-256 .* is not the manifest's"):
        edition.open_edition("full")
    with pytest.raises(ValueError, match="allowed: \\['full', 'gpu'\\]"):
        edition.open_edition("fulll")
