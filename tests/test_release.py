"""A paper companion's release conventions: licence, citation file, the Pages workflow that publishes the
committed book without training, and the README's results table written from book/results.csv."""
import re
import tomllib
from pathlib import Path

import yaml

from coded_lib.companion import report

REPO = Path(__file__).resolve().parents[1]


def test_mit_licence_as_pyproject_says():
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_citation_file_cites_the_paper_and_the_companion():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["type"] == "software"
    assert cff["preferred-citation"]["title"] == "Towards Disentangling Information Paths with Coded ResNeXt"
    assert [a["family-names"] for a in cff["preferred-citation"]["authors"]] == ["Avranas", "Kountouris"]
    assert any("2202.05343" in str(r) for r in cff["references"])
    from coded_lib.companion.edition import REPOSITORY

    assert cff["repository-code"] == REPOSITORY


def test_pages_workflow_builds_the_committed_edition_and_uploads_it():
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "book.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = [s.get("run", "") for s in steps]
    assert "jupyter-book build book/" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "book/_build/html"
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in steps)
    assert not re.search(r"reproduce|papermill|coded_lib\.train|make ", " ".join(runs))  # renders, never trains
    assert wf["permissions"]["pages"] == "write"


def test_readme_results_table_is_written_from_book_results(tmp_path):
    results = report.read_results(REPO / "book" / "results.csv")
    text = (REPO / "README.md").read_text()
    table = text.split(report.README_START)[1].split(report.README_END)[0].strip()
    assert table == report.readme_table(results, report.editions_results()).strip()
    # one row per claim of the paper; each verdict read from the rows (an independent count)
    from coded_lib.companion import paper

    claims = {r["id"] for r in results if r["verdict"] and r["id"] in paper.TITLES}
    assert claims <= {line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[4:]}
    copy = tmp_path / "README.md"
    copy.write_text("# x\n" + report.README_START + "\nstale table\n" + report.README_END + "\nrest\n")
    report.write_readme(results, None, copy)
    assert copy.read_text().endswith(report.README_END + "\nrest\n") and "stale table" not in copy.read_text()
