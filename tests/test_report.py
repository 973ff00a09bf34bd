"""coded_lib.companion.report and .paper on hand-made results files."""
import csv
import html
import importlib.util
import itertools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from coded_lib.companion import paper, report

REPO = Path(__file__).resolve().parents[1]
# SPEC §2, copied by hand: the page must list exactly these, in this order.
SPEC_IDS = ["T-acc", "T-arch", "T-codes", "T-cost", "F-removal", "F-binary", "F-bindist", "F-act", "F-early",
            "T-agree", "T-calib", "F-mu", "F-pdrop", "T-exp", "T-concat", "T-ratios", "T-detach"]
FM = ("Fashion-MNIST, 8000 train / 2000 test", "coded_resnext_mini, 4 epochs, CPU")


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "quantity", "ours", "data", "scale", "verdict", "claim_holds"])
        w.writerows(rows)


# ------------------------------------------------------------------ paper.py

def test_paper_lists_every_id_of_the_spec_in_order():
    assert paper.IDS == SPEC_IDS
    assert [i for i in dict.fromkeys(r["id"] for r in paper.PAPER)] == SPEC_IDS
    for r in paper.PAPER:
        assert set(r) == {"id", "quantity", "paper", "value", "data", "scale", "claim"}
        assert all(isinstance(r[k], str) and r[k] for k in ("quantity", "paper", "data", "scale")), r
    assert {i for i, _, _ in paper.claims()} == set(SPEC_IDS)  # every experiment states a claim


def test_paper_accuracy_gains_match_the_accuracies():
    acc = {r["data"] + r["scale"]: r["value"] for r in paper.rows("T-acc") if r["quantity"] == paper.ACC}
    gains = sorted(round(v["coded"] - v["resnext"], 2) for v in acc.values())
    (gain_row,) = [r for r in paper.rows("T-acc") if r["quantity"] == paper.GAIN]
    assert gains == sorted(gain_row["value"].values()) == [0.07, 0.74, 0.75, 1.42]


def test_paper_scheme_balance_is_possible():
    # S_min <= rK <= S_max: the K * N_act ones spread over N columns
    for r in paper.rows("T-codes"):
        m = re.search(r"of the (\d+)/(\d+) scheme \(K = (\d+), N = (\d+)\)", r["quantity"])
        if not m:
            continue
        n_act, n, k, n2 = map(int, m.groups())
        assert n == n2
        assert r["value"]["s_min"] <= k * n_act / n <= r["value"]["s_max"], r


def test_paper_cifar10_schemes_agree_with_the_printed_tables():
    # the introduction's figure holds the printed tables: count H_min and columns there
    spec = importlib.util.spec_from_file_location("make_figures", REPO / "book" / "figures" / "make_figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    for name, words in figures.SCHEMES.items():
        ratio = name.split("= ")[1]
        (row,) = [r for r in paper.rows("T-codes") if r["quantity"].startswith(f"H_min; S_min–S_max of the {ratio} ")]
        h_min = min(sum(a != b for a, b in zip(u, v)) for u, v in itertools.combinations(words, 2))
        columns = [sum(w[j] == "1" for w in words) for j in range(10)]
        assert (h_min, min(columns), max(columns)) == (row["value"]["h_min"], row["value"]["s_min"],
                                                       row["value"]["s_max"])


def test_paper_rows_rejects_unknown_id():
    with pytest.raises(ValueError, match="T-nope"):
        paper.rows("T-nope")


# ------------------------------------------------------------------ record / read

def test_record_writes_the_documented_columns_and_upserts(tmp_path):
    run = tmp_path / "runs" / "fashion_mnist"
    report.record(run, "T-acc", paper.ACC, "88.10 vs 87.50", *FM)
    report.record(run, "F-removal", "accuracy vs k removed subNNs, active vs inactive", [0.8, 0.7], *FM,
                  claim_holds=np.bool_(True))
    report.record(run, "T-acc", paper.ACC, "88.20 vs 87.40", *FM, verdict="gap of 0.8 points")
    rows = _csv_rows(run / "results.csv")
    assert rows[0] == ["id", "quantity", "ours", "data", "scale", "verdict", "claim_holds"]
    assert rows[1:] == [
        ["T-acc", paper.ACC, "88.20 vs 87.40", FM[0], FM[1], "gap of 0.8 points", ""],
        ["F-removal", "accuracy vs k removed subNNs, active vs inactive", "0.8, 0.7", FM[0], FM[1], "", "True"],
    ]
    back = report.read_results(run / "results.csv")
    assert back[1]["claim_holds"] is True and back[0]["claim_holds"] is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(id="T-foo"), "T-foo"),
    (dict(data=""), "data"),
    (dict(scale=None), "scale"),
    (dict(ours=None), "ours"),
    (dict(claim_holds="False"), "claim_holds"),
])
def test_record_rejects_bad_rows(tmp_path, kwargs, match):
    args = dict(run_dir=tmp_path, id="T-acc", quantity=paper.ACC, ours=1.0, data=FM[0], scale=FM[1])
    with pytest.raises(ValueError, match=match):
        report.record(**{**args, **kwargs})
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize("value, text", [
    (94.41234, "94.41"), (0.3812, "0.3812"), (12345.6, "12,346"), (7, "7"), (np.float32(0.5), "0.5"),
    ([1, 2.25, "x"], "1, 2.25, x"), ({"coded": 91.0, "plain": 90.5}, "coded: 91; plain: 90.5"), (False, "no"),
])
def test_format_value(value, text):
    assert report.format_value(value) == text


def test_read_results_rejects_bad_files(tmp_path):
    bad = tmp_path / "results.csv"
    bad.write_text("id,quantity,ours\nT-acc,x,1\n")
    with pytest.raises(ValueError, match="missing columns"):
        report.read_results(bad)
    _write_csv(bad, [["T-acc", "q", "1", "d", "s", "", "maybe"]])
    with pytest.raises(ValueError, match="maybe"):
        report.read_results(bad)


# ------------------------------------------------------------------ gather and join

def test_gather_reads_every_run_and_skips_unknown_ids(tmp_path):
    _write_csv(tmp_path / "a" / "results.csv", [["T-acc", paper.ACC, "1", "d", "s", "", ""]])
    _write_csv(tmp_path / "b" / "sweep" / "results.csv", [["F-mu", "x", "2", "d", "s", "", "True"],
                                                         ["Z-9", "x", "3", "d", "s", "", ""]])
    with pytest.warns(UserWarning, match="Z-9"):
        rows = report.gather(tmp_path)
    assert [(r["id"], r["source"]) for r in rows] == [("T-acc", "a/results.csv"), ("F-mu", "b/sweep/results.csv")]


def test_lines_without_results_say_not_run_for_every_paper_quantity():
    lines = report.comparison_lines([])
    firsts = [(l["id"], l["quantity"]) for l in lines if l["first"]]
    expected = list(dict.fromkeys((r["id"], r["quantity"]) for r in paper.PAPER))
    assert firsts == expected
    assert all(l["ours"] == "not run" and l["verdict"] == "not run" for l in lines if l["first"])
    # every paper row appears once, with its data
    assert sum(l["paper"] not in ("", "—") for l in lines) == len(paper.PAPER)


def test_results_join_the_paper_by_quantity_or_prefix(tmp_path):
    q_params = "binary classifier parameters (% of the full model)"
    _write_csv(tmp_path / "fm" / "results.csv", [
        ["F-binary", q_params + " — residual paths only", "41.0", "FM", "mini", "", ""],
        ["F-binary", "  Binary classifier parameters   (% of the full model)", "55.0", "FM", "mini", "", "False"],
        ["F-binary", "our own quantity", "0.9", "FM", "mini", "", ""],
    ])
    lines = [l for l in report.comparison_lines(report.gather(tmp_path)) if l["id"] == "F-binary"]
    by_quantity = {}
    for l in lines:
        if l["first"]:
            current = l["quantity"]
        by_quantity.setdefault(current, []).append(l)
    assert [l["ours"] for l in by_quantity[q_params]] == ["41.0", "55.0", ""]  # 3 paper rows, 2 of ours
    assert by_quantity[q_params][1]["verdict"] == "claim does not hold"
    assert by_quantity[q_params][0]["verdict"] == "—"
    assert [(l["paper"], l["ours"]) for l in by_quantity["our own quantity"]] == [("—", "0.9")]
    assert by_quantity[q_params][0]["paper"].startswith("38 (CIFAR-10;")


def test_claims_are_aggregated_over_runs(tmp_path):
    q = "accuracy vs k removed subNNs, active vs inactive"
    _write_csv(tmp_path / "a" / "results.csv", [["F-removal", q, "x", "FM", "mini", "", "True"],
                                               ["T-acc", paper.GAIN, "0.4", "FM", "mini", "", "True"],
                                               ["F-act", paper.quantities("F-act")[0], "x", "FM", "mini", "", ""]])
    _write_csv(tmp_path / "b" / "results.csv", [["F-removal", q, "y", "C10", "29", "", "False"],
                                               ["T-acc", paper.GAIN, "0.2", "C10", "29", "", "True"]])
    claims = {c["claim"]: c for c in report.claim_lines(report.gather(tmp_path))}
    removal = claims[next(r["claim"] for r in paper.rows("F-removal") if r["quantity"] == q)]
    assert (removal["status"], removal["holds"]) == ("partly", "partly (1 of 2 runs)")
    gain = claims[next(r["claim"] for r in paper.rows("T-acc") if r["claim"])]
    assert (gain["status"], gain["holds"], gain["ours_where"]) == ("yes", "yes (2 of 2 runs)", "FM, mini; C10, 29")
    act = claims[paper.rows("F-act")[0]["claim"]]
    assert act["status"] == "not judged"
    assert sum(c["status"] == "not run" for c in claims.values()) == len(paper.claims()) - 3


# ------------------------------------------------------------------ the page

def test_markdown_escaping_round_trips():
    md = MarkdownIt("commonmark")
    for text in ["a|b", "x*y*z", "H_min and S_max_", "[not a link](x)", "$5 and $6", "<b>", "#1", "a\\b"]:
        rendered = md.renderInline(report._md(text))
        assert rendered == html.escape(text, quote=False), text


def test_page_lists_every_id_and_links_only_existing_chapters(tmp_path):
    book = tmp_path / "book"
    (book / "notebooks").mkdir(parents=True)
    (book / "notebooks" / "removal.ipynb").write_text("{}")
    runs = tmp_path / "runs"
    report.record(runs / "fm", "F-removal", "accuracy vs k removed subNNs, active vs inactive", "drops", "FM", "mini",
                  claim_holds=True)
    page = report.write_comparison(runs, book / "comparison.md", generated="2024-01-01 00:00")
    text = page.read_text()
    for id in SPEC_IDS:
        assert f"* - {id}" in text or f"* - [{id}](" in text, id
    assert "[F-removal](notebooks/removal.ipynb)" in text
    assert "](notebooks/accuracy.ipynb)" not in text
    assert text.count("```{list-table}") == 2
    assert "`runs/fm/results.csv`" in text
    assert f"1 of {len(SPEC_IDS)} experiments have results" in text


def test_page_without_runs_folder(tmp_path):
    page = report.write_comparison(tmp_path / "nothing", tmp_path / "comparison.md")
    assert f"0 of {len(SPEC_IDS)} experiments" in page.read_text()


def test_side_by_side_frame(tmp_path):
    report.record(tmp_path, "T-exp", paper.quantities("T-exp")[0], {"4": 90.1, "2": 89.0}, "FM", "mini")
    df = report.side_by_side(tmp_path, ids="T-exp")
    assert list(df.columns) == ["id", "quantity", "paper (data; scale)", "ours", "our data & scale", "verdict"]
    assert df.iloc[0]["ours"] == "4: 90.1; 2: 89" and df.iloc[0]["paper (data; scale)"].startswith("4: 94.4")
    assert len(report.side_by_side(tmp_path / "none")) == len(report.comparison_lines([]))
